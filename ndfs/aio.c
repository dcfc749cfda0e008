#define G_LOG_DOMAIN "ndfs-aio"

#include "aio.h"

#include <errno.h>
#include <glib.h>
#include <linux/aio_abi.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "aio_sys.h"

struct ndfs_aio {
    uv_poll_t poll; /* first: the close callback gets &poll */
    int efd;        /* every completion adds 1 (IOCB_FLAG_RESFD) */
    aio_context_t ctx;
    unsigned depth;
    unsigned in_flight;
    bool closing;
    struct ndfs_aio_slot *slots;
    struct ndfs_aio_slot *free;
    struct io_event *events; /* depth of them, for io_getevents */
    void (*close_cb)(void *data);
    void *close_data;
};

/* Completions: the eventfd counted them; io_getevents without waiting takes
 * them, depth at a time, until none is left. */
static void on_ready(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct ndfs_aio *a = p->data;
    uint64_t v;
    /* non-blocking: nothing there is fine; the events are what counts */
    if (read(a->efd, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR)
        g_warning("cannot read the AIO eventfd: %s", g_strerror(errno));
    while (!a->closing && a->in_flight > 0) {
        struct timespec zero = {0, 0};
        long n = ndfs_io_getevents(a->ctx, 0, a->depth, a->events, &zero);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* cannot happen on a valid context; the next eventfd tick retries */
            g_warning("io_getevents: %s", g_strerror(errno));
            return;
        }
        for (long i = 0; i < n; i++) {
            struct ndfs_aio_slot *s = (struct ndfs_aio_slot *)(uintptr_t)a->events[i].data;
            int64_t res = a->events[i].res;
            ndfs_aio_cb done = s->done;
            void *data = s->data;
            s->next_free = a->free;
            a->free = s;
            a->in_flight--;
            done(data, res); /* may submit again, or close a (then in_flight is 0) */
        }
        if ((unsigned long)n < a->depth)
            return;
    }
}

int ndfs_aio_new(uv_loop_t *loop, unsigned depth, struct ndfs_aio **out, char **errmsg)
{
    if (depth == 0)
        depth = 1;
    struct ndfs_aio *a = g_try_new0(struct ndfs_aio, 1);
    if (!a) {
        *errmsg = g_strdup("out of memory");
        return -ENOMEM;
    }
    a->depth = depth;
    a->slots = ndfs_aio_slots_new(depth, &a->free);
    a->events = g_try_new0(struct io_event, depth);
    int rc;
    if (!a->slots || !a->events) {
        *errmsg = g_strdup("out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0) {
        rc = -errno;
        *errmsg = g_strdup_printf("eventfd: %s", g_strerror(-rc));
        goto fail;
    }
    if (ndfs_io_setup(depth, &a->ctx) < 0) {
        rc = -errno;
        *errmsg = g_strdup_printf("io_setup(%u): %s%s", depth, g_strerror(-rc),
                                  rc == -EAGAIN ? " (fs.aio-max-nr reached)" : "");
        close(a->efd);
        goto fail;
    }
    if ((rc = uv_poll_init(loop, &a->poll, a->efd)) < 0) {
        *errmsg = g_strdup_printf("cannot poll the AIO eventfd: %s", uv_strerror(rc));
        ndfs_io_destroy(a->ctx);
        close(a->efd);
        goto fail;
    }
    a->poll.data = a;
    /* cannot fail on an initialised poll handle of an eventfd */
    (void)uv_poll_start(&a->poll, UV_READABLE, on_ready);
    *out = a;
    return 0;
fail:
    g_free(a->events);
    g_free(a->slots);
    g_free(a);
    return rc;
}

int ndfs_aio_submit(struct ndfs_aio *a, int fd, bool write, void *buf, size_t len, uint64_t off,
                    ndfs_aio_cb cb, void *data)
{
    if (a->closing)
        return -ESHUTDOWN;
    struct ndfs_aio_slot *s = a->free;
    if (!s)
        return -EAGAIN;
    ndfs_aio_slot_prep(s, fd, write, buf, len, off);
    s->iocb.aio_flags = IOCB_FLAG_RESFD;
    s->iocb.aio_resfd = (uint32_t)a->efd;
    s->iocb.aio_rw_flags = RWF_NOWAIT;
    int rc = ndfs_io_submit_one(a->ctx, &s->iocb);
    if (rc < 0)
        return rc;
    a->free = s->next_free;
    s->done = cb;
    s->data = data;
    a->in_flight++;
    return 0;
}

unsigned ndfs_aio_in_flight(const struct ndfs_aio *a)
{
    return a->in_flight;
}

static void on_closed(uv_handle_t *h)
{
    struct ndfs_aio *a = h->data;
    ndfs_io_destroy(a->ctx);
    close(a->efd);
    void (*cb)(void *) = a->close_cb;
    void *data = a->close_data;
    g_free(a->events);
    g_free(a->slots);
    g_free(a);
    if (cb)
        cb(data);
}

void ndfs_aio_close(struct ndfs_aio *a, void (*cb)(void *data), void *data)
{
    g_warn_if_fail(a->in_flight == 0);
    a->closing = true;
    a->close_cb = cb;
    a->close_data = data;
    uv_close((uv_handle_t *)&a->poll, on_closed);
}
