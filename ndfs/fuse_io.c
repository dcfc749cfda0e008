#define G_LOG_DOMAIN "ndfs-fuse"

/* Reads and writes of a vdisk file: on the local disk when this node masters
 * the vdisk (ndfs__fuse_route), through the driver otherwise. O_DIRECT
 * transfers on the local disk go through AIO (aio_thread.h) when the mount
 * has it: the FUSE thread submits and goes back to the kernel, and the
 * completion thread answers. */
#include "fuse_loop.h"
#include "fuse_ops.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "localio.h"

static struct ndfs_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct ndfs_handle *handle_of(struct fuse_file_info *fi)
{
    return (struct ndfs_handle *)(uintptr_t)fi->fh;
}

/* A local error that says the disk (path) is bad, not the request: with a
 * driver the request goes to the master, which fails the path. */
bool ndfs__fuse_path_error(struct ndfs_fs *fs, struct ndfs_handle *h, int rc)
{
    if (!fs->driver || (rc != -EIO && rc != -ENXIO && rc != -ENODEV && rc != -ENOMEDIUM))
        return false;
    if (!atomic_exchange(&h->local_failed_logged, true))
        g_warning("vdisk of inode %" G_GUINT64_FORMAT ": its local disk failed (%s): its I/O "
                  "goes through its master",
                  h->ino, g_strerror(-rc));
    return true;
}

/* Larger reads stay on the FUSE threads: their answer is a copy of the data
 * into the application's buffer, which the one completion thread would make
 * for all of them, while the FUSE threads make it on every CPU. */
#define AIO_READ_MAX (32u * 1024)

/* A local O_DIRECT transfer in flight through the mount's AIO: what its
 * completion needs to answer the kernel, or to send it to the master. */
struct local_aio {
    fuse_req_t req;
    struct ndfs_fs *fs;
    struct ndfs_handle *h;
    uint64_t id;
    uint64_t vsize;
    void *data; /* aligned, len bytes */
    size_t len;
    size_t size; /* a read: what the kernel asked, for the master */
    off_t off;
    struct ndfs_rx_buf *rx; /* a write whose data is in its receive buffer */
};

/* Gives a write's data back: its receive buffer, or the copy. */
static void release_data(struct ndfs_rx_buf *rx, void *data)
{
    if (rx)
        ndfs_rx_buf_release(rx);
    else
        localio_free(data);
}

/* The rest of a transfer AIO did only part of (the kernel may stop short,
 * rarely), done the blocking way on the completion thread: the count. */
static int64_t finish_short(struct local_aio *la, bool write, int64_t res)
{
    if (res < 0 || (size_t)res >= la->len)
        return res;
    int fd = atomic_load(&la->h->fd);
    uint64_t at = (uint64_t)la->off + (uint64_t)res;
    char *from = (char *)la->data + res;
    size_t left = la->len - (size_t)res;
    ssize_t more = write ? localio_pwrite(fd, from, left, at) : localio_pread(fd, from, left, at);
    return more < 0 ? more : res + more;
}

/* Whether a local transfer should go through AIO: when another one is in
 * progress. Alone (an application at queue depth 1) the FUSE thread's own
 * pread or pwrite answers sooner: the disk's interrupt wakes the thread
 * that waits on the CPU it ran on, while a completion thread woken there
 * would often have to wake another, idle CPU first. Counted in
 * fs->local_busy until busy_exit. */
static bool busy_enter(struct ndfs_fs *fs)
{
    return atomic_fetch_add(&fs->local_busy, 1) > 0 && fs->aio;
}

static void busy_exit(struct ndfs_fs *fs)
{
    atomic_fetch_sub(&fs->local_busy, 1);
}

/* Submits la's transfer: true once its completion will answer. */
static bool local_aio_submit(struct local_aio *la, bool write, ndfs_aio_thread_cb done)
{
    return ndfs_aio_thread_submit(la->fs->aio, atomic_load(&la->h->fd), write, la->data, la->len,
                                  (uint64_t)la->off, done, la) == 0;
}

static void read_done(void *data, int64_t res)
{
    struct local_aio *la = data;
    int64_t n = finish_short(la, false, res);
    busy_exit(la->fs);
    ndfs__fuse_local_done(la->fs, la->id);
    if (n < 0 && ndfs__fuse_path_error(la->fs, la->h, (int)n))
        ndfs__fuse_remote_read(la->req, la->fs, la->h, la->id, la->vsize, la->size, la->off);
    else if (n < 0)
        ndfs__fuse_reply_err(la->req, (int)n);
    else
        fuse_reply_buf(la->req, la->data, (size_t)n);
    localio_free(la->data);
    g_free(la);
}

/* An O_DIRECT read of the local disk through AIO, once busy_enter said so:
 * true when submitted (its completion answers and ends the local I/O);
 * false: do it the blocking way, which also answers what AIO leaves out
 * (errors, the end). */
static bool read_aio(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                     uint64_t vsize, size_t size, off_t off)
{
    if (!h->direct || off < 0 || (uint64_t)off >= vsize || size == 0)
        return false;
    size_t want = (size_t)MIN((uint64_t)size, vsize - (uint64_t)off);
    if (want > AIO_READ_MAX || !localio_direct_aligned((uint64_t)off, want))
        return false;
    struct local_aio *la = g_try_new(struct local_aio, 1);
    void *buf = la ? localio_alloc(want) : NULL;
    if (buf) {
        *la = (struct local_aio){req, fs, h, id, vsize, buf, want, size, off, NULL};
        if (local_aio_submit(la, false, read_done))
            return true;
    }
    localio_free(buf);
    g_free(la);
    return false;
}

static void write_done(void *data, int64_t res)
{
    struct local_aio *la = data;
    int64_t n = finish_short(la, true, res);
    busy_exit(la->fs);
    ndfs__fuse_local_done(la->fs, la->id);
    if (n < 0 && ndfs__fuse_path_error(la->fs, la->h, (int)n)) {
        /* the data goes to the driver */
        ndfs__fuse_remote_write_data(la->req, la->fs, la->h, la->id, la->rx, la->data, la->len,
                                     la->off);
        g_free(la);
        return;
    }
    release_data(la->rx, la->data);
    if (n < 0) {
        ndfs__fuse_reply_err(la->req, (int)n);
    } else {
        atomic_store(&la->h->dirty, true);
        fuse_reply_write(la->req, (size_t)n);
    }
    g_free(la);
}

/* An O_DIRECT write of data (aligned, len bytes, checked; in rx when not
 * NULL) through AIO, once busy_enter said so: true when submitted; its
 * completion then owns data, answers and ends the local I/O. */
static bool write_aio(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                      struct ndfs_rx_buf *rx, void *data, size_t len, off_t off)
{
    struct local_aio *la = g_try_new(struct local_aio, 1);
    if (!la)
        return false;
    *la = (struct local_aio){req, fs, h, id, 0, data, len, len, off, rx};
    if (local_aio_submit(la, true, write_done))
        return true;
    g_free(la);
    return false;
}

static int do_read(struct ndfs_handle *h, uint64_t vsize, size_t size, off_t off, void **buf,
                   size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off >= vsize || size == 0)
        return 0;
    size_t want = (size_t)MIN((uint64_t)size, vsize - (uint64_t)off);
    if (h->direct && !localio_direct_aligned((uint64_t)off, want))
        return -EINVAL;
    void *data = localio_alloc(want);
    if (!data)
        return -ENOMEM;
    ssize_t n = localio_pread(atomic_load(&h->fd), data, want, (uint64_t)off);
    if (n < 0) {
        localio_free(data);
        return (int)n;
    }
    *buf = data;
    *len = (size_t)n;
    return 0;
}

void ndfs__fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino;
    struct ndfs_fs *fs = fs_of(req);
    struct ndfs_handle *h = handle_of(fi);
    uint64_t id = 0, vsize = 0;
    int rc = ndfs__fuse_route(fs, h, &id, &vsize);
    if (rc == 0) {
        ndfs__fuse_remote_read(req, fs, h, id, vsize, size, off);
        return;
    }
    void *buf = NULL;
    size_t len = 0;
    if (rc > 0) {
        if (busy_enter(fs) && read_aio(req, fs, h, id, vsize, size, off))
            return;
        rc = do_read(h, vsize, size, off, &buf, &len);
        busy_exit(fs);
        ndfs__fuse_local_done(fs, id);
    }
    if (rc < 0 && ndfs__fuse_path_error(fs, h, rc)) {
        ndfs__fuse_remote_read(req, fs, h, id, vsize, size, off);
        return;
    }
    if (rc < 0) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    fuse_reply_buf(req, buf, len);
    localio_free(buf);
}

/* Checks a write of size bytes at off: the length to write (what fits). */
static int write_length(struct ndfs_handle *h, uint64_t vsize, size_t size, off_t off, size_t *len)
{
    if (off < 0)
        return -EINVAL;
    *len = 0;
    if (size == 0)
        return 0;
    if ((uint64_t)off >= vsize)
        return -ENOSPC;
    /* past the end a block device takes what fits */
    *len = (size_t)MIN((uint64_t)size, vsize - (uint64_t)off);
    if (h->direct && !localio_direct_aligned((uint64_t)off, *len))
        return -EINVAL;
    return 0;
}

/* The bytes of in, len of them, in a new (aligned) buffer; NULL and *rc. */
static void *copy_in(struct fuse_bufvec *in, size_t len, int *rc)
{
    void *data = localio_alloc(len);
    if (!data) {
        *rc = -ENOMEM;
        return NULL;
    }
    struct fuse_bufvec mem = FUSE_BUFVEC_INIT(len);
    mem.buf[0].mem = data;
    ssize_t n = fuse_buf_copy(&mem, in, 0);
    if (n < 0 || (size_t)n != len) {
        localio_free(data);
        *rc = n < 0 ? (int)n : -EIO;
        return NULL;
    }
    return data;
}

/* Writes len bytes at off to h's local disk: from data when not NULL (an
 * aligned copy of in, or in's receive buffer), else from in. The count or
 * -errno. */
static ssize_t local_write(struct fuse_bufvec *in, bool mem_in, int fd, const void *data, off_t off,
                           size_t len)
{
    if (data)
        return localio_pwrite(fd, data, len, (uint64_t)off);
    if (mem_in) /* the kernel's buffer in memory (aligned, for O_DIRECT) */
        return localio_pwrite(fd, in->buf[0].mem, len, (uint64_t)off);
    /* spliced, without network (nothing resends it): straight from the pipe */
    struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
    dst.buf[0].fd = fd;
    dst.buf[0].pos = off;
    return fuse_buf_copy(&dst, in, 0);
}

void ndfs__fuse_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                          struct fuse_file_info *fi)
{
    (void)ino;
    struct ndfs_fs *fs = fs_of(req);
    struct ndfs_handle *h = handle_of(fi);
    uint64_t id = 0, vsize = 0;
    size_t len = 0;
    int route = ndfs__fuse_route(fs, h, &id, &vsize);
    int rc = route < 0 ? route : write_length(h, vsize, fuse_buf_size(in), off, &len);
    if (route > 0 && (rc < 0 || len == 0))
        ndfs__fuse_local_done(fs, id);
    if (rc < 0 || len == 0) {
        if (rc < 0)
            ndfs__fuse_reply_err(req, rc);
        else
            fuse_reply_write(req, 0);
        return;
    }
    void *data = NULL;
    bool mem_in =
        in->count == 1 && in->idx == 0 && in->off == 0 && !(in->buf[0].flags & FUSE_BUF_IS_FD);
    if (route == 0) {
        /* a large write travels in the buffer the kernel wrote it to */
        struct ndfs_rx_buf *rx =
            mem_in && len >= NDFS_FUSE_RX_TAKE_MIN ? ndfs_fuse_rx_take(in->buf[0].mem, len) : NULL;
        if (rx)
            ndfs__fuse_remote_write_data(req, fs, h, id, rx, in->buf[0].mem, len, off);
        else if (!(data = copy_in(in, len, &rc)))
            ndfs__fuse_reply_err(req, rc);
        else
            ndfs__fuse_remote_write_data(req, fs, h, id, NULL, data, len, off);
        return;
    }
    /* ndfs's FUSE loop put the data on a page boundary */
    bool aligned = mem_in && ((uintptr_t)in->buf[0].mem % LOCALIO_BUFFER_ALIGN) == 0;
    bool aio = busy_enter(fs) && h->direct;
    struct ndfs_rx_buf *rx = NULL;
    /* AIO's bytes outlive this call: a large write keeps its buffer */
    if (aio && aligned && len >= NDFS_FUSE_RX_TAKE_MIN)
        rx = ndfs_fuse_rx_take(in->buf[0].mem, len);
    if (rx) {
        data = in->buf[0].mem;
    } else if (((h->direct && (aio || !aligned)) || (fs->driver && !mem_in)) &&
               !(data = copy_in(in, len, &rc))) {
        /* O_DIRECT wants aligned memory; a resend wants the bytes in memory */
        busy_exit(fs);
        ndfs__fuse_local_done(fs, id);
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    if (aio && write_aio(req, fs, h, id, rx, data, len, off))
        return;
    ssize_t n = local_write(in, mem_in, atomic_load(&h->fd), data, off, len);
    busy_exit(fs);
    ndfs__fuse_local_done(fs, id);
    if (n < 0 && ndfs__fuse_path_error(fs, h, (int)n)) {
        if (!data && !(data = copy_in(in, len, &rc))) {
            ndfs__fuse_reply_err(req, rc);
            return;
        }
        ndfs__fuse_remote_write_data(req, fs, h, id, rx, data, len, off);
        return;
    }
    release_data(rx, data);
    if (n < 0) {
        ndfs__fuse_reply_err(req, (int)n);
        return;
    }
    atomic_store(&h->dirty, true);
    fuse_reply_write(req, (size_t)n);
}
