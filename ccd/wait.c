/* Waiting until the local replica has applied a Raft index: a node that
 * relays a change made on the leader answers only once it can read it.
 * Applying happens in Raft's I/O callbacks; a check handle looks at the
 * applied index after each loop iteration while someone waits, a timer
 * ends the wait at the earliest deadline. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>

#include "ccd_private.h"

struct ccd_waiter {
    uint64_t index;
    uint64_t deadline_ms; /* uv_now */
    ndfs_ccd_applied_cb cb;
    void *data;
};

uint64_t ndfs_ccd_applied_index(struct ndfs_ccd *ccd)
{
    if (!ccd->started)
        return 0;
    uint64_t applied = raft_last_applied(&ccd->raft);
    return applied > ccd->applied_floor ? applied : ccd->applied_floor;
}

static void wait_timer_cb(uv_timer_t *timer);

/* Takes the finished waiters out, rearms the handles, then runs the
 * callbacks (which may wait again). */
static void waiters_run(struct ndfs_ccd *ccd, bool cancel)
{
    uint64_t applied = ndfs_ccd_applied_index(ccd);
    uint64_t now = uv_now(ccd->loop);
    uint64_t next = UINT64_MAX;
    GList *done = NULL;
    for (GList *l = ccd->waiters; l != NULL;) {
        GList *following = l->next;
        struct ccd_waiter *w = l->data;
        if (cancel || w->index <= applied || w->deadline_ms <= now) {
            ccd->waiters = g_list_remove_link(ccd->waiters, l);
            done = g_list_concat(l, done);
        } else if (w->deadline_ms < next) {
            next = w->deadline_ms;
        }
        l = following;
    }
    if (ccd->waiters == NULL) {
        uv_check_stop(&ccd->wait_check);
        uv_timer_stop(&ccd->wait_timer);
    } else {
        uv_timer_start(&ccd->wait_timer, wait_timer_cb, next - now, 0);
    }
    for (GList *l = done; l != NULL; l = l->next) {
        struct ccd_waiter *w = l->data;
        int status = cancel ? -ECANCELED : w->index <= applied ? 0 : -ETIMEDOUT;
        w->cb(ccd, status, w->data);
        g_free(w);
    }
    g_list_free(done);
}

static void wait_timer_cb(uv_timer_t *timer)
{
    waiters_run(timer->data, false);
}

static void wait_check_cb(uv_check_t *check)
{
    struct ndfs_ccd *ccd = check->data;
    /* cheap: nothing to do until the applied index moved */
    uint64_t applied = ndfs_ccd_applied_index(ccd);
    for (GList *l = ccd->waiters; l != NULL; l = l->next) {
        struct ccd_waiter *w = l->data;
        if (w->index <= applied) {
            waiters_run(ccd, false);
            return;
        }
    }
}

int ndfs_ccd_wait_applied(struct ndfs_ccd *ccd, uint64_t index, unsigned timeout_ms,
                          ndfs_ccd_applied_cb cb, void *data)
{
    if (ccd->closing) {
        ccd_set_errmsg(ccd, "the CCD is closing");
        return -ECANCELED;
    }
    if (!ccd->started) {
        ccd_set_errmsg(ccd, "the CCD is not started");
        return -EAGAIN;
    }
    struct ccd_waiter *w = g_new0(struct ccd_waiter, 1);
    uint64_t now = uv_now(ccd->loop);
    w->index = index;
    w->deadline_ms = now + timeout_ms;
    w->cb = cb;
    w->data = data;
    ccd->waiters = g_list_append(ccd->waiters, w);
    /* never call back from here: an applied index goes on the next turn */
    uint64_t next = index <= ndfs_ccd_applied_index(ccd) ? 0 : timeout_ms;
    uint64_t due = uv_timer_get_due_in(&ccd->wait_timer);
    if (!uv_is_active((uv_handle_t *)&ccd->wait_timer) || next < due)
        uv_timer_start(&ccd->wait_timer, wait_timer_cb, next, 0);
    uv_check_start(&ccd->wait_check, wait_check_cb);
    return 0;
}

void ccd_wait_init(struct ndfs_ccd *ccd)
{
    uv_check_init(ccd->loop, &ccd->wait_check);
    ccd->wait_check.data = ccd;
    /* the waiters' timer keeps the loop alive; the check need not */
    uv_unref((uv_handle_t *)&ccd->wait_check);
    uv_timer_init(ccd->loop, &ccd->wait_timer);
    ccd->wait_timer.data = ccd;
}

void ccd_wait_cancel(struct ndfs_ccd *ccd)
{
    if (ccd->started)
        waiters_run(ccd, true);
}

static void wait_check_closed(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    ccd->wait_closed_cb(ccd);
}

static void wait_timer_closed(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    uv_close((uv_handle_t *)&ccd->wait_check, wait_check_closed);
}

void ccd_wait_close(struct ndfs_ccd *ccd, void (*cb)(struct ndfs_ccd *ccd))
{
    g_assert(ccd->waiters == NULL);
    ccd->wait_closed_cb = cb;
    uv_close((uv_handle_t *)&ccd->wait_timer, wait_timer_closed);
}
