#define G_LOG_DOMAIN "ndfs-master"

/* How the master's jobs reach the disk: O_DIRECT reads and writes through
 * AIO on the loop (aio.h) when that cannot block it, everything else on the
 * disk threads, which check the lease and the mapping right before each
 * pread, pwrite, fsync or fallocate and hand the job back to the loop. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/falloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io_proto.h"
#include "clock.h"
#include "localio.h"
#include "master_priv.h"

/* The descriptor for a job, opening the disk the first time. Worker thread. */
static int disk_fd(struct master_disk *d, bool direct, int *fd)
{
    g_mutex_lock(&d->open_lock);
    int *slot = direct ? &d->fd_direct : &d->fd;
    int rc = 0;
    if (*slot < 0) {
        rc = localio_open(d->path, true, direct, 0, slot);
        if (rc < 0) {
            *slot = -1;
            if (!d->open_failed)
                g_warning("vdisk \"%s\": cannot open its disk %s%s: %s", d->name, d->path,
                          direct ? " (O_DIRECT)" : "", g_strerror(-rc));
            d->open_failed = true;
        } else if (direct) {
            atomic_store(&d->aio_fd, *slot);
        }
    }
    *fd = *slot;
    g_mutex_unlock(&d->open_lock);
    return rc;
}

/* Is this error of the disk's open a failure of the path (the device or
 * file gone or unusable here), rather than of this request or of this
 * process (O_DIRECT not supported: -EINVAL, as before; out of memory or
 * descriptors)? */
static bool open_error_fails_path(int err)
{
    return err != -EINVAL && err != -ENOMEM && err != -EMFILE && err != -ENFILE && err != -EINTR &&
           err != -EAGAIN;
}

/* Is this error of a read, write or fsync a failure of the path? -ENOSPC,
 * -EINVAL and the like stay the request's. */
static bool io_error_fails_path(int err)
{
    switch (-err) {
    case EIO:
    case ENXIO:
    case ENODEV:
    case ENOMEDIUM:
    case EROFS:
    case ESTALE: /* a stale handle of the backing file system, not our lease */
    case EBADF:
    case ENOTCONN:
    case EREMOTEIO:
        return true;
    default:
        return false;
    }
}

/* The membership's lease, as published: valid until the word's expiry. Any
 * thread. */
bool master_lease_ok(const struct ndfs_master *m)
{
    if (m->lease == NULL)
        return true;
    uint64_t expiry = atomic_load_explicit(m->lease, memory_order_acquire);
    return expiry == UINT64_MAX || ndfs_mono_ns() < expiry;
}

/* Checked by the worker right before every disk operation: the mapping
 * still names this disk here, and this node's lease runs. 0 or the NACK. */
static int32_t may_touch_disk(struct master_job *j)
{
    if (atomic_load(&j->disk->revoked)) {
        j->revoked = true;
        return -ENXIO;
    }
    if (!master_lease_ok(j->m)) {
        j->fenced = true;
        return -ESTALE;
    }
    return 0;
}

static int32_t do_read(struct master_job *j, int fd)
{
    if (!j->buf) /* AIO, which gave the job back, may have allocated it */
        j->buf = localio_alloc(j->len);
    if (!j->buf)
        return -ENOMEM;
    int32_t rc = may_touch_disk(j);
    if (rc < 0)
        return rc;
    ssize_t n = localio_pread(fd, j->buf, j->len, j->req.offset);
    return (int32_t)n;
}

static int32_t do_write(struct master_job *j, int fd, bool direct)
{
    const void *src = j->msg->data;
    void *bounce = NULL;
    /* O_DIRECT wants aligned memory; the transport's buffer need not be */
    if (direct && ((uintptr_t)src % LOCALIO_BUFFER_ALIGN) != 0) {
        bounce = localio_alloc(j->len);
        if (!bounce)
            return -ENOMEM;
        memcpy(bounce, src, j->len);
        src = bounce;
    }
    int32_t rc = may_touch_disk(j);
    if (rc < 0) {
        localio_free(bounce);
        return rc;
    }
    ssize_t n = localio_pwrite(fd, src, j->len, j->req.offset);
    localio_free(bounce);
    return (int32_t)n;
}

static int32_t do_discard(struct master_job *j, int fd)
{
    int mode = FALLOC_FL_KEEP_SIZE |
               ((j->req.flags & NDFS_IO_FLAG_ZERO) ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
    int32_t rc = may_touch_disk(j);
    if (rc == 0)
        rc = localio_fallocate(fd, mode, j->req.offset, j->len);
    return rc < 0 ? rc : (int32_t)j->len;
}

/* A disk error of j's I/O fails the path: j is NACKed -EIO. */
static void path_error(struct master_job *j)
{
    if (j->status < 0 && !j->fenced && !j->revoked && io_error_fails_path(j->status)) {
        j->path_err = j->status;
        j->status = -EIO;
    }
}

static void worker(gpointer data, gpointer user_data)
{
    (void)user_data;
    struct master_job *j = data;
    bool direct = (j->req.flags & NDFS_IO_FLAG_DIRECT) != 0;
    int fd;
    int rc = may_touch_disk(j);
    if (rc == 0) {
        rc = disk_fd(j->disk, direct, &fd);
        if (rc < 0 && open_error_fails_path(rc)) {
            j->path_err = rc;
            rc = -EIO;
        }
    }
    /* and again right before the I/O itself (opening may have taken a while) */
    if (rc < 0) {
        j->status = rc;
    } else {
        switch (j->req.op) {
        case NDFS_IO_READ:
            j->status = do_read(j, fd);
            break;
        case NDFS_IO_WRITE:
            j->status = do_write(j, fd, direct);
            break;
        case NDFS_IO_FSYNC:
            j->status = may_touch_disk(j);
            if (j->status == 0)
                j->status = localio_sync(fd, (j->req.flags & NDFS_IO_FLAG_DATASYNC) != 0);
            break;
        case NDFS_IO_DISCARD:
            j->status = do_discard(j, fd);
            break;
        }
        path_error(j);
    }
    /* j may be answered and freed as soon as it is queued */
    struct ndfs_master *m = j->m;
    g_async_queue_push(m->done, j);
    ndfs_wakeup_send(&m->wake);
}

static gpointer pool_thread(gpointer data)
{
    struct ndfs_master *m = data;
    g_mutex_lock(&m->pool_lock);
    for (;;) {
        struct master_job *j = g_queue_pop_head(&m->pool_jobs);
        if (!j) {
            if (m->pool_stop)
                break;
            m->pool_idle++;
            g_cond_wait(&m->pool_cond, &m->pool_lock);
            m->pool_idle--;
            continue;
        }
        g_mutex_unlock(&m->pool_lock);
        worker(j, NULL);
        g_mutex_lock(&m->pool_lock);
    }
    g_mutex_unlock(&m->pool_lock);
    return NULL;
}

static void pool_push(struct ndfs_master *m, struct master_job *j)
{
    g_mutex_lock(&m->pool_lock);
    g_queue_push_tail(&m->pool_jobs, j);
    if (m->pool_idle > 0)
        g_cond_signal(&m->pool_cond);
    g_mutex_unlock(&m->pool_lock);
}

/* Stops and joins the threads (their queue is empty). */
void master_pool_stop(struct ndfs_master *m)
{
    g_mutex_lock(&m->pool_lock);
    m->pool_stop = true;
    g_cond_broadcast(&m->pool_cond);
    g_mutex_unlock(&m->pool_lock);
    for (unsigned i = 0; i < m->n_threads; i++)
        g_thread_join(m->threads[i]);
    m->n_threads = 0;
    m->pool_running = false;
    g_mutex_clear(&m->pool_lock);
    g_cond_clear(&m->pool_cond);
}

int master_pool_start(struct ndfs_master *m, char **errmsg)
{
    g_mutex_init(&m->pool_lock);
    g_cond_init(&m->pool_cond);
    g_queue_init(&m->pool_jobs);
    m->pool_running = true;
    for (unsigned i = 0; i < MASTER_WORKERS; i++) {
        GError *err = NULL;
        GThread *th = g_thread_try_new("ndfs-disk", pool_thread, m, &err);
        if (!th) {
            *errmsg = g_strdup_printf("cannot start the disk I/O threads: %s", err->message);
            g_error_free(err);
            master_pool_stop(m);
            return -EAGAIN;
        }
        m->threads[m->n_threads++] = th;
    }
    return 0;
}

/* AIO refused j's disk's file (no RWF_NOWAIT there): its jobs use the
 * threads from now on. */
static void aio_refused(struct ndfs_master *m, struct master_disk *d, int err)
{
    if (d->aio_off)
        return;
    d->aio_off = true;
    g_autofree char *key = g_strdup_printf("aio:%" G_GUINT64_FORMAT, d->id);
    g_autofree char *text =
        g_strdup_printf("vdisk \"%s\": %s takes no non-blocking AIO (%s): its I/O goes through "
                        "the disk threads",
                        d->name, d->path, g_strerror(-err));
    master_say_once(m, key, G_LOG_LEVEL_INFO, text);
}

static void aio_done(void *data, int64_t res)
{
    struct master_job *j = data;
    struct ndfs_master *m = j->m;
    if (res < 0 && (res == -EAGAIN || res == -EOPNOTSUPP || res == -EINVAL)) {
        /* the kernel would have blocked, takes no RWF_NOWAIT here, or
         * refused this request (EINVAL: pwrite tells why, or works): the
         * blocking way, on a thread, which checks the lease again */
        if (res == -EOPNOTSUPP)
            aio_refused(m, j->disk, (int)res);
        pool_push(m, j);
        return;
    }
    if (res >= 0 && (uint64_t)res < j->len) {
        /* short (the file ends early, or a partial transfer): the thread's
         * loop finishes it, as for any request */
        pool_push(m, j);
        return;
    }
    ndfs_spin_kick(&m->spin);
    j->via_aio = true;
    j->status = (int32_t)res;
    path_error(j);
    master_job_done(m, j);
    if (m->closing && m->in_flight == 0)
        master_finish_close(m);
}

/* Starts j through AIO when that cannot block the loop: an O_DIRECT read or
 * write, on a disk whose O_DIRECT descriptor a thread opened already (an
 * open may block), from aligned memory. The lease and the mapping are
 * checked right before the submission, as a thread checks them right before
 * its pread or pwrite. false: j is the threads'. */
static bool aio_start(struct ndfs_master *m, struct master_job *j)
{
    struct master_disk *d = j->disk;
    if (!m->aio || d->aio_off || !(j->req.flags & NDFS_IO_FLAG_DIRECT) ||
        (j->req.op != NDFS_IO_READ && j->req.op != NDFS_IO_WRITE))
        return false;
    int fd = atomic_load(&d->aio_fd);
    if (fd < 0)
        return false;
    bool write = j->req.op == NDFS_IO_WRITE;
    void *buf = write ? j->msg->data : j->buf;
    if (write && ((uintptr_t)buf % LOCALIO_BUFFER_ALIGN) != 0)
        return false;
    if (!write && !buf && !(buf = j->buf = localio_alloc(j->len)))
        return false; /* the thread says ENOMEM */
    /* refusals are the threads' to count and answer */
    if (atomic_load(&d->revoked) || !master_lease_ok(m))
        return false;
    int rc = ndfs_aio_submit(m->aio, fd, write, buf, j->len, j->req.offset, aio_done, j);
    if (rc == -EOPNOTSUPP)
        aio_refused(m, d, rc);
    return rc == 0;
}

/* Large reads of one disk are let through while their bytes in flight stay
 * within [vdisk] master-read-inflight (one is always let through); the rest
 * wait in order. A disk that serves concurrent requests side by side (as a
 * virtio disk does) finishes a batch of them together: the replies then
 * leave in a burst, the disk idles while they are sent, and the next batch
 * arrives in a burst. One or two at a time keep it streaming: remote 1M
 * QD8 reads here gave 977 and 877 MB/s without the limit, 1884 and 1690
 * with 1 MiB (the disk alone reads 2.3 GB/s at QD1 from huge pages). */
static bool read_fits(const struct ndfs_master *m, const struct master_disk *d, uint32_t len)
{
    return d->reads_inflight == 0 || d->reads_inflight + len <= m->read_inflight_max;
}

/* To the disk: through AIO, else on a thread. */
static void io_go(struct ndfs_master *m, struct master_job *j)
{
    if (!aio_start(m, j))
        pool_push(m, j);
}

void master_io_start(struct ndfs_master *m, struct master_job *j)
{
    struct master_disk *d = j->disk;
    if (j->req.op == NDFS_IO_READ && j->len >= MASTER_LARGE_READ && m->read_inflight_max) {
        if (!g_queue_is_empty(&d->reads_waiting) || !read_fits(m, d, j->len)) {
            g_queue_push_tail(&d->reads_waiting, j); /* master_io_done starts it */
            m->reads_waited++;
            return;
        }
        d->reads_inflight += j->len;
        j->counted = true;
    }
    io_go(m, j);
}

void master_io_done(struct ndfs_master *m, struct master_job *j)
{
    if (!j->counted)
        return;
    struct master_disk *d = j->disk;
    d->reads_inflight -= j->len;
    j->counted = false;
    struct master_job *next;
    while ((next = g_queue_peek_head(&d->reads_waiting)) && read_fits(m, d, next->len)) {
        g_queue_pop_head(&d->reads_waiting);
        d->reads_inflight += next->len;
        next->counted = true;
        io_go(m, next);
    }
}
