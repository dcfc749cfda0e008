#define G_LOG_DOMAIN "ndfs-fuse"

/* Reads, writes and syncs through the driver to the vdisk's current master
 * (another node, or this node's ndfsd when the local path may not be
 * used), answered to the kernel from the driver's callbacks. */
#include "fuse_loop.h"
#include "fuse_ops.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <ndfs/transport.h>

#include "io_proto.h"
#include "localio.h"

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

void ndfs__fuse_remote_read(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                            uint64_t vsize, size_t size, off_t off)
{
    if (off < 0) {
        ndfs__fuse_reply_err(req, -EINVAL);
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
    int rc = ndfs_driver_submit(fs->driver, id, NDFS_IO_READ, h->direct ? NDFS_IO_FLAG_DIRECT : 0,
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

static void release_rx(void *rx)
{
    ndfs_rx_buf_release(rx);
}

void ndfs__fuse_remote_write_data(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h,
                                  uint64_t id, struct ndfs_rx_buf *rx, void *data, size_t len,
                                  off_t off)
{
    atomic_store(&h->dirty, true);
    /* the CRC the transport sends, here where the bytes were just written
     * (by the kernel, or our copy) and by one of several threads, instead of
     * on the driver's one thread */
    struct ndfs_driver_data bytes = {
        .bytes = data,
        .release = rx ? release_rx : NULL,
        .release_arg = rx,
        .has_crc = true,
        .crc = ndfs_transport_data_crc(data, len),
    };
    int rc =
        ndfs_driver_submit_data(fs->driver, id, NDFS_IO_WRITE, h->direct ? NDFS_IO_FLAG_DIRECT : 0,
                                (uint64_t)off, len, &bytes, remote_write_done, req);
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
void ndfs__fuse_remote_sync(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                            bool datasync, bool only_if_dirty)
{
    if (!h->writable) {
        fuse_reply_err(req, 0);
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
    int rc = ndfs_driver_submit(fs->driver, id, NDFS_IO_FSYNC, datasync ? NDFS_IO_FLAG_DATASYNC : 0,
                                0, 0, NULL, remote_sync_done, call);
    if (rc < 0) {
        g_free(call);
        atomic_store(&h->dirty, true);
        ndfs__fuse_reply_err(req, rc);
    }
}

/* A discard of more than the driver takes at once goes in pieces; the
 * kernel is answered once every piece is, with the first error. */
struct discard_call {
    fuse_req_t req;
    atomic_int left;
    atomic_int status;
};

static void discard_piece_done(struct discard_call *call, int status, int pieces)
{
    if (status < 0) {
        int none = 0;
        atomic_compare_exchange_strong(&call->status, &none, status);
    }
    if (atomic_fetch_sub(&call->left, pieces) == pieces) {
        ndfs__fuse_reply_err(call->req, atomic_load(&call->status));
        g_free(call);
    }
}

static void remote_discard_done(void *opaque, int status, const void *data)
{
    (void)data;
    discard_piece_done(opaque, status, 1);
}

void ndfs__fuse_remote_discard(fuse_req_t req, struct ndfs_fs *fs, uint64_t id, bool zero,
                               uint64_t off, uint64_t len)
{
    /* the driver splits a request into parts of NDFS_IO_MAX_LENGTH and
     * takes at most INT32_MAX bytes: larger ranges go in pieces of 1 GiB */
    const uint64_t piece = 1u << 30;
    int pieces = (int)((len + piece - 1) / piece);
    struct discard_call *call = g_new0(struct discard_call, 1);
    call->req = req;
    atomic_init(&call->left, pieces);
    atomic_init(&call->status, 0);
    for (int i = 0; i < pieces; i++) {
        uint64_t at = (uint64_t)i * piece;
        int rc =
            ndfs_driver_submit(fs->driver, id, NDFS_IO_DISCARD, zero ? NDFS_IO_FLAG_ZERO : 0,
                               off + at, MIN(piece, len - at), NULL, remote_discard_done, call);
        if (rc < 0) {
            /* this piece and the ones not sent fail; call may be gone after */
            discard_piece_done(call, rc, pieces - i);
            return;
        }
    }
}
