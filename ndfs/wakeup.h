/* Waking a libuv loop from other threads: an eventfd watched by a
 * uv_poll_t. It does what uv_async_t does, except that the loop never
 * waits for a sender: libuv 1.44's loop spins, then sched_yield()s, until a
 * sender that is half-way through uv_async_send() finishes, and on two
 * CPUs the sender's eventfd write wakes the loop thread, which preempts it
 * (1.3 sched_yield per remote 4k QD1 write in the mount). Header only:
 * used by the mount's driver and by ndfsd's master. */
#ifndef NDFS_WAKEUP_H
#define NDFS_WAKEUP_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

struct ndfs_wakeup {
    uv_poll_t poll; /* first: a close callback gets &poll */
    int fd;
    atomic_bool armed; /* a wakeup is on its way: senders need not write */
    void (*cb)(struct ndfs_wakeup *w);
    void *data;
};

static inline void ndfs_wakeup_io(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct ndfs_wakeup *w = p->data;
    uint64_t v;
    /* non-blocking: nothing there is fine */
    if (read(w->fd, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    /* before cb looks at the work: what is sent from now on wakes again */
    atomic_store(&w->armed, false);
    w->cb(w);
}

/* 0 or -errno; on error nothing is left to close. */
static inline int ndfs_wakeup_init(uv_loop_t *loop, struct ndfs_wakeup *w,
                                   void (*cb)(struct ndfs_wakeup *w), void *data)
{
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0)
        return -errno;
    atomic_init(&w->armed, false);
    w->cb = cb;
    w->data = data;
    int rc = uv_poll_init(loop, &w->poll, w->fd);
    if (rc < 0) {
        close(w->fd);
        return rc;
    }
    w->poll.data = w;
    /* cannot fail on an initialised poll handle of an eventfd */
    (void)uv_poll_start(&w->poll, UV_READABLE, ndfs_wakeup_io);
    return 0;
}

/* Any thread, also the loop's: cb runs on the loop thread soon after
 * (once for several sends). Not after ndfs_wakeup_close(). */
static inline void ndfs_wakeup_send(struct ndfs_wakeup *w)
{
    if (atomic_exchange(&w->armed, true))
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(w->fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    /* an eventfd write fails only when its counter would overflow: then
     * a wakeup is pending anyway */
}

/* Loop thread; cb gets (uv_handle_t *)&w->poll. */
static inline void ndfs_wakeup_close(struct ndfs_wakeup *w, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&w->poll, cb); /* stops watching the fd at once */
    close(w->fd);
    w->fd = -1;
}

#endif
