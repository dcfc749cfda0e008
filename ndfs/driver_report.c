#define G_LOG_DOMAIN "ndfs-driver"

/* The driver's I/O states: why each vdisk's requests wait, the io-timeout
 * that fails them, and the reports to ndfsd (vdisk.io-state, sent by a
 * worker thread). On the driver's loop thread. */
#include "driver_priv.h"

#include <errno.h>
#include <string.h>

#include "control_link.h"

static void format_reason(const struct drv_vdisk *vs, char *out, size_t size)
{
    switch (vs->hold) {
    case HOLD_NONE:
    case HOLD_QUEUE_FULL:
        out[0] = '\0';
        break;
    case HOLD_NO_ADDRESS:
        g_snprintf(out, size, "master %s not reachable (no address known)", vs->hold_node);
        break;
    case HOLD_UNREACHABLE:
        g_snprintf(out, size, "master %s not reachable", vs->hold_node);
        break;
    case HOLD_NO_MASTER:
        g_snprintf(out, size, "no master: every path failed");
        break;
    case HOLD_PATH_FAILED:
        g_snprintf(out, size, "the path of master %s failed: waiting for a new mapping",
                   vs->hold_node);
        break;
    case HOLD_NO_LEASE:
        g_snprintf(out, size, "master %s has no lease", vs->hold_node);
        break;
    case HOLD_EPOCH:
        g_snprintf(out, size, "waiting for epoch %" G_GUINT64_FORMAT, vs->hold_epoch);
        break;
    case HOLD_MAPPING:
        g_snprintf(out, size, "%s is not the master: waiting for a new mapping", vs->hold_node);
        break;
    case HOLD_SUSPENDED:
        g_snprintf(out, size, "suspended by a reconfiguration of its mapping");
        break;
    case HOLD_BEHIND:
        g_snprintf(out, size, "master %s is behind epoch %" G_GUINT64_FORMAT, vs->hold_node,
                   vs->hold_epoch);
        break;
    }
}

struct vdisk_scan {
    uint32_t pending, in_flight;
    int64_t oldest_us;
    int64_t cutoff_us; /* io-timeout: entries submitted before fail; 0: none */
    int64_t blocked_since_us;
    size_t expired;
    struct ndfs_driver *d;
};

static int scan_entry(struct pending_entry *e, void *data)
{
    struct vdisk_scan *sc = data;
    if (sc->cutoff_us && MAX(e->submitted_us, sc->blocked_since_us) < sc->cutoff_us) {
        sc->expired++;
        drv_fail_entry(sc->d, e, -EIO);
        return 0;
    }
    sc->pending++;
    if (e->sent)
        sc->in_flight++;
    if (!sc->oldest_us || e->submitted_us < sc->oldest_us)
        sc->oldest_us = e->submitted_us;
    return 0;
}

static void start_reports(struct ndfs_driver *d);

static void queue_report(struct ndfs_driver *d, struct drv_vdisk *vs, const struct vdisk_scan *sc,
                         const char *blocked, int64_t now)
{
    struct io_report *r = NULL;
    for (guint i = 0; i < d->reports->len && !r; i++)
        if (((struct io_report *)d->reports->pdata[i])->id == vs->id)
            r = d->reports->pdata[i];
    if (!r) {
        r = g_new0(struct io_report, 1);
        g_ptr_array_add(d->reports, r);
    }
    g_strlcpy(r->name, vs->name, sizeof(r->name));
    r->id = vs->id;
    r->pending = sc->pending;
    r->in_flight = sc->in_flight;
    g_strlcpy(r->blocked, blocked, sizeof(r->blocked));
    r->waiting_ms =
        sc->oldest_us && now > sc->oldest_us ? (uint64_t)(now - sc->oldest_us) / 1000 : 0;
    g_strlcpy(vs->reported, blocked, sizeof(vs->reported));
    vs->reported_us = now;
    vs->report_again = false;
    vs->report_owed = sc->pending > 0 || blocked[0];
}

/* Looks at every vdisk with requests (or a report owed): why they wait,
 * io-timeouts, reports to ndfsd. */
void drv_update_states(struct ndfs_driver *d)
{
    if (d->closing)
        return;
    int64_t now = g_get_monotonic_time();
    uint64_t timeout_ms = control_link_io_timeout_ms(d->link);
    GHashTableIter it;
    gpointer value;
    GPtrArray *gone = NULL;
    g_hash_table_iter_init(&it, d->vdisks);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct drv_vdisk *vs = value;
        size_t count = pending_table_count_vdisk(d->pending, vs->id);
        size_t sent = pending_table_count_sent_vdisk(d->pending, vs->id);
        if (count == 0 && vs->hold != HOLD_PATH_FAILED)
            drv_set_hold(vs, HOLD_NONE, NULL, 0);
        else if (count > 0 && sent == count && drv_send_hold(vs->hold))
            drv_set_hold(vs, HOLD_NONE, NULL, 0); /* everything went out */
        /* sent to a master whose links are down? */
        if (count > 0 && (vs->hold == HOLD_NONE || vs->hold == HOLD_UNREACHABLE)) {
            struct vdisk_master m;
            bool down = sent > 0 && d->route(d->route_data, vs->id, &m) == 0 && m.node[0] &&
                        !ndfs_transport_peer_up(d->t, m.node);
            if (down)
                drv_set_hold(vs, HOLD_UNREACHABLE, m.node, 0);
            else if (vs->hold == HOLD_UNREACHABLE)
                drv_set_hold(vs, HOLD_NONE, NULL, 0);
        }
        char blocked[REASON_MAX];
        format_reason(vs, blocked, sizeof(blocked));
        if (count == 0)
            blocked[0] = '\0'; /* a failed path alone blocks nothing */
        if (!blocked[0])
            vs->blocked_since_us = 0;
        else if (!vs->blocked_since_us)
            vs->blocked_since_us = now;
        struct vdisk_scan sc = {.d = d, .blocked_since_us = vs->blocked_since_us};
        /* a suspension is short (ndfsd's ack timeout): it does not count */
        if (timeout_ms && blocked[0] && !drv_suspended(d, vs->id))
            sc.cutoff_us = now - (int64_t)timeout_ms * 1000;
        if (count > 0)
            pending_table_foreach_vdisk(d->pending, vs->id, scan_entry, &sc);
        if (sc.expired)
            g_warning(
                "vdisk \"%s\": %zu request(s) waited longer than the io-timeout (%" G_GUINT64_FORMAT
                " ms) for a master (%s): failed with EIO",
                vs->name, sc.expired, timeout_ms, blocked);
        if (!d->reports_off && vs->name[0]) {
            bool changed = strcmp(blocked, vs->reported) != 0 || vs->report_again;
            bool periodic = sc.pending > 0 && now - vs->reported_us >= REPORT_INTERVAL_US;
            bool clear = sc.pending == 0 && !blocked[0] && vs->report_owed;
            if (changed || periodic || clear)
                queue_report(d, vs, &sc, blocked, now);
        }
        if (sc.pending == 0 && !vs->failed && !vs->report_owed && !vs->report_again &&
            !drv_suspended(d, vs->id)) {
            if (!gone)
                gone = g_ptr_array_new();
            g_ptr_array_add(gone, vs);
        }
    }
    for (guint i = 0; gone && i < gone->len; i++)
        g_hash_table_remove(d->vdisks, &((struct drv_vdisk *)gone->pdata[i])->id);
    if (gone)
        g_ptr_array_free(gone, TRUE);
    start_reports(d);
}

static void report_work(uv_work_t *req)
{
    struct ndfs_driver *d = req->data;
    for (guint i = 0; i < d->reports_sending->len; i++) {
        struct io_report *r = d->reports_sending->pdata[i];
        GVariantDict args;
        g_variant_dict_init(&args, NULL);
        g_variant_dict_insert(&args, "name", "s", r->name);
        g_variant_dict_insert(&args, "id", "t", (guint64)r->id);
        g_variant_dict_insert(&args, "pending", "u", (guint32)r->pending);
        g_variant_dict_insert(&args, "in-flight", "u", (guint32)r->in_flight);
        g_variant_dict_insert(&args, "blocked", "s", r->blocked);
        g_variant_dict_insert(&args, "waiting-ms", "t", (guint64)r->waiting_ms);
        /* never waits for a lost ndfsd: the next report goes after the reconnection */
        r->status =
            control_link_call(d->link, "vdisk.io-state", g_variant_dict_end(&args), 0, NULL, NULL);
    }
}

static void report_done(uv_work_t *req, int status)
{
    (void)status;
    struct ndfs_driver *d = req->data;
    d->reporting = false;
    for (guint i = 0; i < d->reports_sending->len; i++) {
        struct io_report *r = d->reports_sending->pdata[i];
        if (r->status == -EOPNOTSUPP && !d->reports_off) {
            g_message("ndfsd does not take vdisk.io-state: the mount's I/O state is not reported");
            d->reports_off = true;
        } else if (r->status < 0 && r->status != -ENOENT) {
            struct drv_vdisk *vs = g_hash_table_lookup(d->vdisks, &r->id);
            if (vs)
                vs->report_again = true; /* at the next tick */
        }
    }
    g_ptr_array_set_size(d->reports_sending, 0);
    if (!d->closing)
        start_reports(d);
}

static void start_reports(struct ndfs_driver *d)
{
    if (d->reporting || d->closing || d->reports->len == 0)
        return;
    GPtrArray *swap = d->reports_sending;
    d->reports_sending = d->reports;
    d->reports = swap;
    d->report_req.data = d;
    if (uv_queue_work(&d->loop, &d->report_req, report_work, report_done) < 0) {
        g_ptr_array_set_size(d->reports_sending, 0);
        return;
    }
    d->reporting = true;
}
