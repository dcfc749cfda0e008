#define G_LOG_DOMAIN "ndfs-fuse"

/* Reads, writes and syncs of a vdisk another node masters: forwarded through
 * the driver, answered to the kernel from the driver's callbacks. */
#include "fuse_ops.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "io_proto.h"
#include "localio.h"

/* A remote request's place: the vdisk's id and master, and its size. */
static int remote_route(struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t *id, uint64_t *size,
                        char *node)
{
    if (vdisk_table_route(fs->table, h->ino, id, size, node) == 0)
        return 0;
    return ndfs__fuse_handle_size(fs, h, size); /* logs the removal once, -EIO */
}

/* What a remote reply needs to answer the kernel. */
struct remote_call {
    fuse_req_t req;
    struct ndfs_handle *h;
};

static void remote_read_done(void *opaque, int status, const void *data)
{
    fuse_req_t req = opaque;
    if (status < 0)
        ndfs__fuse_reply_err(req, status);
    else
        fuse_reply_buf(req, data, (size_t)status);
}

void ndfs__fuse_remote_read(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, size_t size,
                            off_t off)
{
    uint64_t id, vsize;
    char node[NDFS_NODE_NAME_MAX + 1];
    int rc = remote_route(fs, h, &id, &vsize, node);
    if (rc == 0 && off < 0)
        rc = -EINVAL;
    if (rc < 0) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    if ((uint64_t)off >= vsize || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t want = (size_t)MIN((uint64_t)size, vsize - (uint64_t)off);
    if (h->direct && !localio_direct_aligned((uint64_t)off, want)) {
        ndfs__fuse_reply_err(req, -EINVAL);
        return;
    }
    rc = ndfs_driver_submit(fs->driver, node, id, NDFS_IO_READ, h->direct ? NDFS_IO_FLAG_DIRECT : 0,
                            (uint64_t)off, want, NULL, remote_read_done, req);
    if (rc < 0)
        ndfs__fuse_reply_err(req, rc);
}

static void remote_write_done(void *opaque, int status, const void *data)
{
    (void)data;
    fuse_req_t req = opaque;
    if (status < 0)
        ndfs__fuse_reply_err(req, status);
    else
        fuse_reply_write(req, (size_t)status);
}

void ndfs__fuse_remote_write(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h,
                             struct fuse_bufvec *in, off_t off)
{
    uint64_t id, vsize;
    char node[NDFS_NODE_NAME_MAX + 1];
    int rc = remote_route(fs, h, &id, &vsize, node);
    size_t size = fuse_buf_size(in);
    if (rc == 0 && off < 0)
        rc = -EINVAL;
    if (rc == 0 && size > 0 && (uint64_t)off >= vsize)
        rc = -ENOSPC;
    if (rc < 0) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    if (size == 0) {
        fuse_reply_write(req, 0);
        return;
    }
    /* past the end a block device takes what fits */
    size_t len = (size_t)MIN((uint64_t)size, vsize - (uint64_t)off);
    if (h->direct && !localio_direct_aligned((uint64_t)off, len)) {
        ndfs__fuse_reply_err(req, -EINVAL);
        return;
    }
    void *data = malloc(len);
    if (!data) {
        ndfs__fuse_reply_err(req, -ENOMEM);
        return;
    }
    struct fuse_bufvec mem = FUSE_BUFVEC_INIT(len);
    mem.buf[0].mem = data;
    ssize_t n = fuse_buf_copy(&mem, in, 0);
    if (n < 0 || (size_t)n != len) {
        free(data);
        ndfs__fuse_reply_err(req, n < 0 ? (int)n : -EIO);
        return;
    }
    atomic_store(&h->dirty, true);
    rc =
        ndfs_driver_submit(fs->driver, node, id, NDFS_IO_WRITE, h->direct ? NDFS_IO_FLAG_DIRECT : 0,
                           (uint64_t)off, len, data, remote_write_done, req);
    if (rc < 0)
        ndfs__fuse_reply_err(req, rc);
}

static void remote_sync_done(void *opaque, int status, const void *data)
{
    (void)data;
    struct remote_call *call = opaque;
    if (status < 0)
        atomic_store(&call->h->dirty, true);
    ndfs__fuse_reply_err(call->req, status);
    g_free(call);
}

/* Forwards fsync (or a flush after writes) to the master's fsync. */
void ndfs__fuse_remote_sync(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h,
                            bool datasync, bool only_if_dirty)
{
    uint64_t id, vsize;
    char node[NDFS_NODE_NAME_MAX + 1];
    int rc = remote_route(fs, h, &id, &vsize, node);
    if (rc < 0 || !h->writable) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    bool was_dirty = atomic_exchange(&h->dirty, false);
    if (only_if_dirty && !was_dirty) {
        fuse_reply_err(req, 0);
        return;
    }
    struct remote_call *call = g_new(struct remote_call, 1);
    call->req = req;
    call->h = h;
    rc = ndfs_driver_submit(fs->driver, node, id, NDFS_IO_FSYNC,
                            datasync ? NDFS_IO_FLAG_DATASYNC : 0, 0, 0, NULL, remote_sync_done,
                            call);
    if (rc < 0) {
        g_free(call);
        atomic_store(&h->dirty, true);
        ndfs__fuse_reply_err(req, rc);
    }
}
