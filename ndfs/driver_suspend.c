#define G_LOG_DOMAIN "ndfs-driver"

/* Online reconfiguration, the mount's side (reconfig.h, control.h):
 * vdisk.suspend {txid, ids} holds the requests of those vdisks (in the
 * pending table, in order: the send rounds skip them) and counts what was
 * already sent (sent, unanswered entries) and the local disk I/O in
 * progress in FUSE threads (the slots); once none is left the ack
 * (vdisk.suspended {txid}) goes to ndfsd from a worker thread. vdisk.resume
 * ends the suspension: what was held is sent at once by the mapping in the
 * table then (committed: the new one, whose vdisk.changed events came
 * first; cancelled: the old one, unchanged). No timer is on this path: a
 * suspension is acked from the answer (or the end of the local I/O) that
 * drained it, and held requests go out from the resume event. */
#include "driver_priv.h"

#include <errno.h>
#include <string.h>

#include "control_link.h"

/* A suspension that no resume ended after this long ends on its own (ndfsd
 * resumes its mounts itself after 2 x its ack timeout; this only guards
 * against a lost event). */
#define SUSPEND_MAX_US (30 * G_USEC_PER_SEC)

void drv_susp_cmd_free(struct drv_susp_cmd *c)
{
    if (!c)
        return;
    g_free(c->ids);
    g_free(c);
}

static void suspension_free(struct drv_suspension *s)
{
    g_free(s->ids);
    g_free(s);
}

static struct drv_slot *slot_of(struct ndfs_driver *d, uint64_t vdisk_id)
{
    return &d->slots[vdisk_id % DRV_SLOTS];
}

static struct drv_suspension *find_suspension(struct ndfs_driver *d, uint64_t txid, guint *index)
{
    for (guint i = 0; i < d->suspensions->len; i++) {
        struct drv_suspension *s = d->suspensions->pdata[i];
        if (s->txid == txid) {
            if (index)
                *index = i;
            return s;
        }
    }
    return NULL;
}

static void suspend(struct ndfs_driver *d, struct drv_susp_cmd *c)
{
    if (find_suspension(d, c->txid, NULL)) {
        g_debug("vdisk.suspend: txid %" G_GUINT64_FORMAT " again; ignored", c->txid);
        return;
    }
    struct drv_suspension *s = g_new0(struct drv_suspension, 1);
    s->txid = c->txid;
    s->ids = g_steal_pointer(&c->ids);
    s->n_ids = c->n_ids;
    s->since_us = g_get_monotonic_time();
    for (size_t i = 0; i < s->n_ids; i++) {
        drv_vdisk_state(d, s->ids[i])->suspended++;
        /* seq_cst: a FUSE thread that did not see it is counted in
         * inflight before drv_suspend_check reads it */
        atomic_fetch_add(&slot_of(d, s->ids[i])->suspended, 1);
    }
    g_ptr_array_add(d->suspensions, s);
    g_debug("txid %" G_GUINT64_FORMAT ": %zu vdisk(s) suspended", s->txid, s->n_ids);
}

/* Ends suspension index (its vdisks are held no more if no other holds them). */
static void end_suspension(struct ndfs_driver *d, guint index)
{
    struct drv_suspension *s = g_ptr_array_steal_index(d->suspensions, index);
    for (size_t i = 0; i < s->n_ids; i++) {
        struct drv_vdisk *vs = drv_vdisk_state(d, s->ids[i]);
        if (vs->suspended > 0)
            vs->suspended--;
        if (vs->suspended == 0 && vs->hold == HOLD_SUSPENDED)
            drv_set_hold(vs, HOLD_NONE, NULL, 0);
        atomic_fetch_sub(&slot_of(d, s->ids[i])->suspended, 1);
    }
    suspension_free(s);
}

static void resume(struct ndfs_driver *d, uint64_t txid, bool committed)
{
    guint index;
    if (!find_suspension(d, txid, &index)) {
        g_debug("vdisk.resume: txid %" G_GUINT64_FORMAT " is not suspended here; ignored", txid);
        return;
    }
    g_debug("txid %" G_GUINT64_FORMAT ": resumed (%s)", txid,
            committed ? "committed: the new mapping" : "cancelled: the old mapping");
    end_suspension(d, index);
}

static void resume_all(struct ndfs_driver *d)
{
    if (d->suspensions->len > 0)
        g_message("the connection to ndfsd dropped: %u suspension(s) end, held I/O goes on",
                  d->suspensions->len);
    while (d->suspensions->len > 0)
        end_suspension(d, d->suspensions->len - 1);
    g_array_set_size(d->acks, 0); /* a new connection starts clean */
}

void drv_suspend_run(struct ndfs_driver *d, GQueue *cmds)
{
    bool resumed = false;
    struct drv_susp_cmd *c;
    while ((c = g_queue_pop_head(cmds))) {
        switch (c->kind) {
        case DRV_SUSPEND:
            suspend(d, c);
            break;
        case DRV_RESUME:
            resume(d, c->txid, c->committed);
            resumed = true;
            break;
        case DRV_RESUME_ALL:
            resume_all(d);
            resumed = true;
            break;
        }
        drv_susp_cmd_free(c);
    }
    if (resumed) {
        /* what was held goes now, in order, by the mapping of now */
        drv_flush_unsent(d);
        drv_update_states(d);
    }
}

static void start_acks(struct ndfs_driver *d);

static void ack_work(uv_work_t *req)
{
    struct ndfs_driver *d = req->data;
    for (guint i = 0; i < d->acks_sending->len; i++) {
        uint64_t txid = g_array_index(d->acks_sending, uint64_t, i);
        GVariantDict args;
        g_variant_dict_init(&args, NULL);
        g_variant_dict_insert(&args, "txid", "t", (guint64)txid);
        g_autofree char *errmsg = NULL;
        /* never waits for a lost ndfsd: the drop resumes everything */
        int rc = control_link_call(d->link, "vdisk.suspended", g_variant_dict_end(&args), 0, NULL,
                                   &errmsg);
        if (rc < 0)
            g_message("txid %" G_GUINT64_FORMAT ": ndfsd did not take the ack of the "
                      "suspension: %s",
                      txid, errmsg ? errmsg : g_strerror(-rc));
    }
}

static void ack_done(uv_work_t *req, int status)
{
    (void)status;
    struct ndfs_driver *d = req->data;
    d->acking = false;
    g_array_set_size(d->acks_sending, 0);
    if (!d->closing)
        start_acks(d);
}

static void start_acks(struct ndfs_driver *d)
{
    if (d->acking || d->closing || d->acks->len == 0)
        return;
    GArray *swap = d->acks_sending;
    d->acks_sending = d->acks;
    d->acks = swap;
    d->ack_req.data = d;
    int rc = uv_queue_work(&d->loop, &d->ack_req, ack_work, ack_done);
    if (rc < 0) {
        g_warning("cannot queue the ack of a suspension: %s", uv_strerror(rc));
        g_array_set_size(d->acks_sending, 0);
        return;
    }
    d->acking = true;
}

/* Nothing of s's vdisks in flight: no sent entry, no local I/O. */
static bool drained(struct ndfs_driver *d, const struct drv_suspension *s)
{
    for (size_t i = 0; i < s->n_ids; i++)
        if (pending_table_count_sent_vdisk(d->pending, s->ids[i]) > 0 ||
            atomic_load(&slot_of(d, s->ids[i])->inflight) > 0)
            return false;
    return true;
}

void drv_suspend_check(struct ndfs_driver *d)
{
    bool queued = false;
    for (guint i = 0; i < d->suspensions->len; i++) {
        struct drv_suspension *s = d->suspensions->pdata[i];
        if (s->acked || !drained(d, s))
            continue;
        s->acked = true;
        g_array_append_val(d->acks, s->txid);
        queued = true;
        g_debug("txid %" G_GUINT64_FORMAT ": drained in %" G_GINT64_FORMAT " µs", s->txid,
                g_get_monotonic_time() - s->since_us);
    }
    if (queued)
        start_acks(d);
}

void drv_suspend_tick(struct ndfs_driver *d)
{
    int64_t now = g_get_monotonic_time();
    bool resumed = false;
    for (guint i = d->suspensions->len; i-- > 0;) {
        struct drv_suspension *s = d->suspensions->pdata[i];
        if (now - s->since_us < SUSPEND_MAX_US)
            continue;
        g_warning("txid %" G_GUINT64_FORMAT ": no resume came within %d s of the suspension: "
                  "its I/O goes on by the mapping of now",
                  s->txid, (int)(SUSPEND_MAX_US / G_USEC_PER_SEC));
        end_suspension(d, i);
        resumed = true;
    }
    if (resumed)
        drv_flush_unsent(d);
}

void drv_suspend_release(struct ndfs_driver *d)
{
    if (d->suspensions) {
        while (d->suspensions->len > 0)
            suspension_free(g_ptr_array_steal_index(d->suspensions, d->suspensions->len - 1));
        g_ptr_array_free(d->suspensions, TRUE);
    }
    if (d->acks)
        g_array_free(d->acks, TRUE);
    if (d->acks_sending)
        g_array_free(d->acks_sending, TRUE);
}

/* ---- any thread ---- */

static void push_cmd(struct ndfs_driver *d, struct drv_susp_cmd *c)
{
    g_mutex_lock(&d->lock);
    bool stopping = d->stopping;
    if (!stopping) {
        g_queue_push_tail(&d->susp_cmds, c);
        uv_async_send(&d->wake); /* under the lock: see wake */
    }
    g_mutex_unlock(&d->lock);
    if (stopping)
        drv_susp_cmd_free(c);
}

void ndfs_driver_suspend(struct ndfs_driver *d, uint64_t txid, const uint64_t *ids, size_t n_ids)
{
    struct drv_susp_cmd *c = g_new0(struct drv_susp_cmd, 1);
    c->kind = DRV_SUSPEND;
    c->txid = txid;
    c->ids = g_memdup2(ids, n_ids * sizeof(*ids));
    c->n_ids = n_ids;
    push_cmd(d, c);
}

void ndfs_driver_resume(struct ndfs_driver *d, uint64_t txid, bool committed)
{
    struct drv_susp_cmd *c = g_new0(struct drv_susp_cmd, 1);
    c->kind = DRV_RESUME;
    c->txid = txid;
    c->committed = committed;
    push_cmd(d, c);
}

void ndfs_driver_resume_all(struct ndfs_driver *d)
{
    struct drv_susp_cmd *c = g_new0(struct drv_susp_cmd, 1);
    c->kind = DRV_RESUME_ALL;
    push_cmd(d, c);
}

bool ndfs_driver_local_enter(struct ndfs_driver *d, uint64_t vdisk_id)
{
    struct drv_slot *s = slot_of(d, vdisk_id);
    /* counted first, then looked: with the suspender's order (suspended
     * first, then the count) one of the two sees the other (both seq_cst) */
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->suspended) == 0)
        return true;
    ndfs_driver_local_exit(d, vdisk_id);
    return false;
}

void ndfs_driver_local_exit(struct ndfs_driver *d, uint64_t vdisk_id)
{
    struct drv_slot *s = slot_of(d, vdisk_id);
    if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&s->suspended) > 0) {
        /* the last local request of a suspended slot: the loop looks */
        g_mutex_lock(&d->lock);
        d->drain_asked = true;
        if (!d->stopping)
            uv_async_send(&d->wake); /* under the lock: see wake */
        g_mutex_unlock(&d->lock);
    }
}
