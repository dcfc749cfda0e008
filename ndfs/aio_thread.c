#define G_LOG_DOMAIN "ndfs-aio"

#include "aio_thread.h"

#include <errno.h>
#include <glib.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio_sys.h"
#include "clock.h"

struct ndfs_aio_thread {
    aio_context_t ctx;
    unsigned depth;
    GMutex lock; /* free and in_flight */
    struct ndfs_aio_slot *slots;
    struct ndfs_aio_slot *free;
    unsigned in_flight;
    /* ndfs_aio_thread_free writes stop_fd; the completion thread learns it
     * from stop_iocb, a poll of stop_fd in flight on ctx from the start, so
     * that it never waits for anything but io_getevents */
    int stop_fd;
    struct iocb stop_iocb;
    struct io_event *events; /* depth + 1 */
    GThread *thread;
    uint64_t poll_ns; /* after completions, poll this long before sleeping */
};

/* The kernel's completion ring, mapped at the context's address (a stable
 * layout since Linux 2.6: fs/aio.c's struct aio_ring). */
struct aio_ring {
    unsigned id;
    unsigned nr;
    unsigned head;
    unsigned tail;
    unsigned magic;
};
#define AIO_RING_MAGIC 0xa10a10a1u

/* Whether completions may be waiting, without a system call. */
static bool ring_ready(struct ndfs_aio_thread *a)
{
    const struct aio_ring *r = (const struct aio_ring *)(uintptr_t)a->ctx;
    if (r->magic != AIO_RING_MAGIC)
        return true; /* not a layout we know: ask the kernel */
    return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE) !=
           __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}

static gpointer completion_thread(gpointer data)
{
    struct ndfs_aio_thread *a = data;
    bool stopping = false;
    uint64_t spin_until = 0;
    for (;;) {
        if (stopping) {
            /* the lock only once told to stop, not on every turn */
            g_mutex_lock(&a->lock);
            bool idle = a->in_flight == 0;
            g_mutex_unlock(&a->lock);
            if (idle)
                return NULL;
        }
        long n;
        if (spin_until) {
            /* polling: a look at the ring, no system call while it is empty */
            if (!ring_ready(a)) {
                if (ndfs_mono_ns() >= spin_until)
                    spin_until = 0;
                else
                    sched_yield();
                continue;
            }
            n = ndfs_io_getevents(a->ctx, 0, a->depth + 1, a->events, &(struct timespec){0, 0});
        } else {
            n = ndfs_io_getevents(a->ctx, 1, a->depth + 1, a->events, NULL);
        }
        if (n > 0 && a->poll_ns)
            spin_until = ndfs_mono_ns() + a->poll_ns;
        if (n < 0) {
            if (errno != EINTR)
                /* cannot happen on a valid context with valid buffers */
                g_error("io_getevents: %s", g_strerror(errno));
            continue;
        }
        for (long i = 0; i < n; i++) {
            if (a->events[i].obj == (uint64_t)(uintptr_t)&a->stop_iocb) {
                stopping = true;
                continue;
            }
            struct ndfs_aio_slot *s = (struct ndfs_aio_slot *)(uintptr_t)a->events[i].data;
            ndfs_aio_thread_cb done = s->done;
            void *cb_data = s->data;
            g_mutex_lock(&a->lock);
            s->next_free = a->free;
            a->free = s;
            a->in_flight--;
            g_mutex_unlock(&a->lock);
            done(cb_data, a->events[i].res);
        }
    }
}

int ndfs_aio_thread_new(unsigned depth, unsigned poll_us, struct ndfs_aio_thread **out,
                        char **errmsg)
{
    if (depth == 0)
        depth = 1;
    struct ndfs_aio_thread *a = g_try_new0(struct ndfs_aio_thread, 1);
    if (!a) {
        *errmsg = g_strdup("out of memory");
        return -ENOMEM;
    }
    a->depth = depth;
    a->poll_ns = (uint64_t)poll_us * 1000u;
    a->stop_fd = -1;
    g_mutex_init(&a->lock);
    a->slots = ndfs_aio_slots_new(depth, &a->free);
    a->events = g_try_new0(struct io_event, depth + 1);
    int rc;
    if (!a->slots || !a->events) {
        *errmsg = g_strdup("out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    a->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (a->stop_fd < 0) {
        rc = -errno;
        *errmsg = g_strdup_printf("eventfd: %s", g_strerror(-rc));
        goto fail;
    }
    if (ndfs_io_setup(depth + 1, &a->ctx) < 0) {
        rc = -errno;
        *errmsg = g_strdup_printf("io_setup(%u): %s%s", depth + 1, g_strerror(-rc),
                                  rc == -EAGAIN ? " (fs.aio-max-nr reached)" : "");
        goto fail;
    }
    a->stop_iocb.aio_lio_opcode = IOCB_CMD_POLL;
    a->stop_iocb.aio_fildes = (uint32_t)a->stop_fd;
    a->stop_iocb.aio_buf = POLLIN;
    if ((rc = ndfs_io_submit_one(a->ctx, &a->stop_iocb)) < 0) {
        *errmsg = g_strdup_printf("AIO poll (Linux 4.18 or later): %s", g_strerror(-rc));
        ndfs_io_destroy(a->ctx);
        goto fail;
    }
    a->thread = g_thread_try_new("ndfs-aio", completion_thread, a, NULL);
    if (!a->thread) {
        *errmsg = g_strdup("cannot start the AIO completion thread");
        rc = -EAGAIN;
        ndfs_io_destroy(a->ctx); /* cancels the poll */
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    g_free(a->events);
    g_free(a->slots);
    g_mutex_clear(&a->lock);
    g_free(a);
    return rc;
}

int ndfs_aio_thread_submit(struct ndfs_aio_thread *a, int fd, bool write, void *buf, size_t len,
                           uint64_t off, ndfs_aio_thread_cb cb, void *data)
{
    g_mutex_lock(&a->lock);
    struct ndfs_aio_slot *s = a->free;
    if (s) {
        a->free = s->next_free;
        a->in_flight++;
    }
    g_mutex_unlock(&a->lock);
    if (!s)
        return -EAGAIN;
    ndfs_aio_slot_prep(s, fd, write, buf, len, off);
    s->done = cb;
    s->data = data;
    int rc = ndfs_io_submit_one(a->ctx, &s->iocb);
    if (rc < 0) {
        g_mutex_lock(&a->lock);
        s->next_free = a->free;
        a->free = s;
        a->in_flight--;
        g_mutex_unlock(&a->lock);
    }
    return rc;
}

void ndfs_aio_thread_free(struct ndfs_aio_thread *a)
{
    if (!a)
        return;
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(a->stop_fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        /* an eventfd below its maximum always takes 1 */
        g_error("cannot stop the AIO completion thread: %s", g_strerror(errno));
    g_thread_join(a->thread);
    ndfs_io_destroy(a->ctx);
    close(a->stop_fd);
    g_free(a->events);
    g_free(a->slots);
    g_mutex_clear(&a->lock);
    g_free(a);
}
