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

static struct drv_slot *slot_of(struct ndfs_driver *d, uint64_t vdisk_id)
{
    return &d->slots[vdisk_id % DRV_SLOTS];
}

bool drv_suspended(struct ndfs_driver *d, uint64_t vdisk_id)
{
    if (suspend_set_size(d->susp) == 0 || suspend_set_count(d->susp, vdisk_id) == 0)
        return false;
    /* Removed by the change that suspended it (vdisk.removed comes before
     * the resume): nothing is held for it any more, its requests fail now
     * (EIO, as any of a removed vdisk). Held until the resume they could
     * deadlock: a held direct write keeps its inode locked in the kernel,
     * and the link thread, which would pass the resume on, waits for that
     * lock to tell the kernel the file is gone. */
    struct vdisk_master m;
    return d->route(d->route_data, vdisk_id, &m) == 0;
}

static void suspend(struct ndfs_driver *d, struct drv_susp_cmd *c)
{
    /* a repeated id counts once, in the set and in the slots */
    size_t n = 0;
    for (size_t i = 0; i < c->n_ids; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = c->ids[j] == c->ids[i];
        if (!seen)
            c->ids[n++] = c->ids[i];
    }
    c->n_ids = n;
    if (!suspend_set_add(d->susp, c->txid, c->ids, c->n_ids, g_get_monotonic_time())) {
        g_debug("vdisk.suspend: txid %" G_GUINT64_FORMAT " again; ignored", c->txid);
        return;
    }
    for (size_t i = 0; i < c->n_ids; i++) {
        /* seq_cst: a FUSE thread that did not see it is counted in
         * inflight before drv_suspend_check reads it */
        atomic_fetch_add(&slot_of(d, c->ids[i])->suspended, 1);
    }
    g_debug("txid %" G_GUINT64_FORMAT ": %zu vdisk(s) suspended", c->txid, c->n_ids);
}

/* Ends txid's suspension (its vdisks are held no more unless another txid
 * holds them); false when it is unknown. */
static bool end_suspension(struct ndfs_driver *d, uint64_t txid)
{
    g_autofree uint64_t *ids = NULL;
    size_t n_ids = 0;
    if (!suspend_set_remove(d->susp, txid, &ids, &n_ids))
        return false;
    for (size_t i = 0; i < n_ids; i++) {
        struct drv_vdisk *vs = drv_vdisk_state(d, ids[i]);
        if (!drv_suspended(d, ids[i]) && vs->hold == HOLD_SUSPENDED)
            drv_set_hold(vs, HOLD_NONE, NULL, 0);
        atomic_fetch_sub(&slot_of(d, ids[i])->suspended, 1);
    }
    return true;
}

static void resume(struct ndfs_driver *d, uint64_t txid, bool committed)
{
    if (!end_suspension(d, txid)) {
        g_debug("vdisk.resume: txid %" G_GUINT64_FORMAT " is not suspended here; ignored", txid);
        return;
    }
    g_debug("txid %" G_GUINT64_FORMAT ": resumed (%s)", txid,
            committed ? "committed: the new mapping" : "cancelled: the old mapping");
}

static void resume_all(struct ndfs_driver *d)
{
    size_t n = suspend_set_size(d->susp);
    if (n > 0)
        g_message("the connection to ndfsd dropped: %zu suspension(s) end, held I/O goes on", n);
    uint64_t txid;
    while (suspend_set_oldest(d->susp, 0, &txid))
        end_suspension(d, txid);
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

/* Something of vdisk_id in flight: a sent entry, local I/O. */
static bool busy(uint64_t vdisk_id, void *data)
{
    struct ndfs_driver *d = data;
    return pending_table_count_sent_vdisk(d->pending, vdisk_id) > 0 ||
           atomic_load(&slot_of(d, vdisk_id)->inflight) > 0;
}

void drv_suspend_check(struct ndfs_driver *d)
{
    if (suspend_set_size(d->susp) == 0)
        return;
    uint64_t txids[16];
    size_t n, total = 0;
    while ((n = suspend_set_take_drained(d->susp, busy, d, txids, G_N_ELEMENTS(txids))) > 0) {
        g_array_append_vals(d->acks, txids, (guint)n);
        for (size_t i = 0; i < n; i++)
            g_debug("txid %" G_GUINT64_FORMAT ": drained, acking", txids[i]);
        total += n;
    }
    if (total > 0)
        start_acks(d);
}

void drv_suspend_tick(struct ndfs_driver *d)
{
    int64_t cutoff = g_get_monotonic_time() - SUSPEND_MAX_US;
    bool resumed = false;
    uint64_t txid;
    while (suspend_set_oldest(d->susp, cutoff, &txid)) {
        g_warning("txid %" G_GUINT64_FORMAT ": no resume came within %d s of the suspension: "
                  "its I/O goes on by the mapping of now",
                  txid, (int)(SUSPEND_MAX_US / G_USEC_PER_SEC));
        end_suspension(d, txid);
        resumed = true;
    }
    if (resumed)
        drv_flush_unsent(d);
}

void drv_suspend_release(struct ndfs_driver *d)
{
    suspend_set_free(d->susp);
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
