#define G_LOG_DOMAIN "ndfs-driver"

#include "driver_priv.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/iobuf.h>
#include <ndfs/transport.h>

#include "config.h"
#include "io_proto.h"
#include "localio.h"
#include "pending.h"
#include "wakeup.h"

static void node_addrs_free(gpointer p)
{
    struct node_addrs *n = p;
    g_free(n->name);
    g_strfreev(n->addresses);
    g_free(n);
}

struct drv_vdisk *drv_vdisk_state(struct ndfs_driver *d, uint64_t id)
{
    struct drv_vdisk *vs = g_hash_table_lookup(d->vdisks, &id);
    if (!vs) {
        vs = g_new0(struct drv_vdisk, 1);
        vs->id = id;
        g_hash_table_insert(d->vdisks, &vs->id, vs);
    }
    return vs;
}

/* Gives data back: through release, or ndfs_iobuf_free(). */
static void drop_data(void *data, void (*release)(void *arg), void *release_arg)
{
    if (release)
        release(release_arg);
    else
        ndfs_iobuf_free(data);
}

static void request_unref(struct drv_request *r)
{
    if (--r->refs > 0)
        return;
    drop_data(r->data, r->release, r->release_arg);
    g_free(r);
}

/* The transport is done with the write data of one send. */
static void send_released(void *arg)
{
    request_unref(arg);
}

/* read: what was read (r->data, or the only part's reply data). */
static void finish_request(struct ndfs_driver *d, struct drv_request *r, const void *read)
{
    (void)d;
    int status = r->status;
    if (status == 0 && r->op != NDFS_IO_FSYNC)
        status = (int)r->done_upto;
    r->done(r->opaque, status, r->op == NDFS_IO_READ && status > 0 ? read : NULL);
    request_unref(r);
}

/* A part was answered with status (bytes or -errno) and, for a read, data. */
static void part_done(struct ndfs_driver *d, const struct pending_entry *e, int status,
                      const void *data)
{
    struct drv_request *r = e->owner;
    if (status < 0) {
        if (r->status == 0)
            r->status = status;
    } else if (r->op != NDFS_IO_FSYNC) {
        size_t at = (size_t)(e->offset - r->offset);
        if (r->op == NDFS_IO_READ && status > 0 && r->data && data)
            memcpy((char *)r->data + at, data, (size_t)status);
        if ((uint32_t)status < e->length)
            r->done_upto = MIN(r->done_upto, at + (size_t)status);
    }
    if (--r->parts_left == 0)
        finish_request(d, r, r->data ? r->data : data);
}

/* Removes e from the table and answers its part with status. */
void drv_fail_entry(struct ndfs_driver *d, struct pending_entry *e, int status)
{
    struct pending_entry done;
    pending_table_complete(d->pending, e->id, &done);
    part_done(d, &done, status, NULL);
    g_free(done.peer);
}

/* Says once per node that its I/O waits. */
static void log_waiting(struct ndfs_driver *d, const char *node, const char *why)
{
    if (g_hash_table_contains(d->waiting, node))
        return;
    g_hash_table_add(d->waiting, g_strdup(node));
    g_warning("node \"%s\" is not reachable (%s): I/O to the vdisks it masters waits", node, why);
}

static void maybe_refresh(struct ndfs_driver *d);

void drv_set_hold(struct drv_vdisk *vs, enum hold_reason why, const char *node, uint64_t epoch)
{
    vs->hold = why;
    g_strlcpy(vs->hold_node, node ? node : "", sizeof(vs->hold_node));
    vs->hold_epoch = epoch;
}

/* A reason that ends once the entry could be sent (the others, a NACK's,
 * end when an answer comes). */
bool drv_send_hold(enum hold_reason why)
{
    return why == HOLD_QUEUE_FULL || why == HOLD_NO_ADDRESS || why == HOLD_NO_MASTER ||
           why == HOLD_PATH_FAILED || why == HOLD_SUSPENDED;
}

static bool round_blocked(struct ndfs_driver *d, const char *peer)
{
    for (guint i = 0; i < d->round_blocked->len; i++)
        if (strcmp(d->round_blocked->pdata[i], peer) == 0)
            return true;
    return false;
}

/* Holds e until not_before_us unless what it waits for came already. */
static bool still_waiting(struct ndfs_driver *d, const struct pending_entry *e,
                          const struct vdisk_master *m)
{
    if (e->wait == PENDING_WAIT_NONE || d->round_now_us >= e->not_before_us)
        return false;
    if (e->wait == PENDING_WAIT_MAPPING && (d->epoch > e->epoch || m->map_gen != e->map_gen))
        return false;
    if (!d->round_next_us || e->not_before_us < d->round_next_us)
        d->round_next_us = e->not_before_us;
    return true;
}

/* One unsent entry of a send round: route it by the mapping now, send it. */
static enum pending_step send_entry(struct pending_entry *e, void *data)
{
    struct ndfs_driver *d = data;
    struct drv_vdisk *vs = drv_vdisk_state(d, e->vdisk_id);
    if (drv_suspended(d, e->vdisk_id)) {
        /* a reconfiguration changes its mapping: held until the resume,
         * then sent by the mapping of then */
        if (vs->hold == HOLD_NONE || drv_send_hold(vs->hold))
            drv_set_hold(vs, HOLD_SUSPENDED, NULL, 0);
        return PENDING_HOLD;
    }
    struct vdisk_master m;
    if (d->route(d->route_data, e->vdisk_id, &m) < 0) {
        g_warning("vdisk %" G_GUINT64_FORMAT " is gone: a %s of it fails with EIO", e->vdisk_id,
                  ndfs_io_op_name(e->op));
        drv_fail_entry(d, e, -EIO);
        return PENDING_GONE;
    }
    if (!vs->name[0])
        g_strlcpy(vs->name, m.name, sizeof(vs->name));
    if (still_waiting(d, e, &m))
        return PENDING_HOLD; /* the NACK set the hold */
    if (!m.node[0] || m.failed) {
        drv_set_hold(vs, HOLD_NO_MASTER, m.node, 0);
        return PENDING_HOLD;
    }
    if (vs->failed && vs->failed_gen == m.map_gen && strcmp(vs->failed_node, m.node) == 0) {
        drv_set_hold(vs, HOLD_PATH_FAILED, m.node, 0);
        return PENDING_HOLD;
    }
    if (vs->failed) /* the mapping changed since: that path may be good again */
        vs->failed = false;
    if (round_blocked(d, m.node)) {
        drv_set_hold(vs, HOLD_QUEUE_FULL, m.node, 0);
        return PENDING_HOLD;
    }
    struct ndfs_io_request req = {
        .op = e->op,
        .flags = e->flags,
        .length = e->length,
        .vdisk_id = e->vdisk_id,
        .offset = e->offset,
    };
    uint8_t ctl[NDFS_IO_REQUEST_SIZE];
    ndfs_io_request_encode(&req, ctl);
    int rc;
    if (e->op == NDFS_IO_WRITE) {
        /* the request's bytes go out as they are: it lives until the
         * transport gives them back */
        struct drv_request *r = e->owner;
        r->refs++;
        if (r->has_crc && e->length == r->length) /* the whole request: its CRC is the part's */
            rc = ndfs_transport_send_borrowed_crc(d->t, m.node, NDFS_CHANNEL_IO, e->id, d->epoch,
                                                  ctl, sizeof(ctl), e->data, e->length, r->data_crc,
                                                  NDFS_SEND_WHOLE, send_released, r);
        else
            rc = ndfs_transport_send_borrowed(d->t, m.node, NDFS_CHANNEL_IO, e->id, d->epoch, ctl,
                                              sizeof(ctl), e->data, e->length, NDFS_SEND_WHOLE,
                                              send_released, r);
        if (rc < 0)
            r->refs--;
    } else {
        rc = ndfs_transport_send(d->t, m.node, NDFS_CHANNEL_IO, e->id, d->epoch, ctl, sizeof(ctl),
                                 NULL, 0);
    }
    if (rc == 0) {
        e->epoch = d->epoch;
        e->map_gen = m.map_gen;
        e->wait = PENDING_WAIT_NONE;
        pending_entry_set_peer(e, m.node);
        pending_table_set_sent(d->pending, e, true);
        /* a NACK's reason stays until an answer comes */
        if (drv_send_hold(vs->hold))
            drv_set_hold(vs, HOLD_NONE, NULL, 0);
        return PENDING_SENT;
    }
    if (rc == -ENOENT) {
        log_waiting(d, m.node, "no address known yet");
        d->refresh_wanted = true;
        drv_set_hold(vs, HOLD_NO_ADDRESS, m.node, 0);
        return PENDING_HOLD;
    }
    if (rc == -EMSGSIZE || rc == -EINVAL) {
        g_warning("vdisk %" G_GUINT64_FORMAT ": cannot send a %s to \"%s\": %s", e->vdisk_id,
                  ndfs_io_op_name(e->op), m.node, g_strerror(-rc));
        drv_fail_entry(d, e, -EIO);
        return PENDING_GONE;
    }
    /* -ENOBUFS and the like: try again at the next tick, in order */
    g_ptr_array_add(d->round_blocked, g_strdup(m.node));
    drv_set_hold(vs, HOLD_QUEUE_FULL, m.node, 0);
    return PENDING_HOLD;
}

static void on_retry(uv_timer_t *timer);

static void flush_once(struct ndfs_driver *d)
{
    d->round_now_us = g_get_monotonic_time();
    d->round_next_us = 0;
    g_ptr_array_set_size(d->round_blocked, 0);
    pending_table_send_round(d->pending, send_entry, d);
    if (d->round_next_us && !d->closing) {
        int64_t wait_ms = (d->round_next_us - d->round_now_us + 999) / 1000;
        if (wait_ms < TICK_MS)
            uv_timer_start(&d->retry, on_retry, (uint64_t)MAX(wait_ms, 1), 0);
    }
}

/* Sends every unsent entry that may go, oldest first. */
void drv_flush_unsent(struct ndfs_driver *d)
{
    if (d->flushing) {
        d->flush_again = true; /* the transport called back while we send */
        return;
    }
    d->flushing = true;
    do {
        d->flush_again = false;
        if (pending_table_count_unsent(d->pending) > 0 && !d->closing)
            flush_once(d);
    } while (d->flush_again);
    d->flushing = false;
    if (d->refresh_wanted)
        maybe_refresh(d);
}

static void on_retry(uv_timer_t *timer)
{
    drv_flush_unsent(timer->data);
}

static void start_request(struct ndfs_driver *d, struct drv_request *r)
{
    /* one part (the usual case) answers with the reply's own bytes */
    if (r->op == NDFS_IO_READ && r->length > d->part_size && !(r->data = malloc(r->length))) {
        r->status = -ENOMEM;
        finish_request(d, r, NULL);
        return;
    }
    r->done_upto = r->length;
    size_t at = 0;
    do {
        size_t len = r->op == NDFS_IO_FSYNC ? 0 : MIN(d->part_size, r->length - at);
        struct pending_entry e = {
            .id = ++d->next_id,
            .vdisk_id = r->vdisk_id,
            .op = r->op,
            .flags = r->flags,
            .offset = r->op == NDFS_IO_FSYNC ? 0 : r->offset + at,
            .length = (uint32_t)len,
            .data = r->op == NDFS_IO_WRITE ? (const char *)r->data + at : NULL,
            .owner = r,
            .submitted_us = r->submitted_us,
        };
        pending_table_add(d->pending, &e, NULL);
        r->parts_left++;
        at += len;
    } while (at < r->length);
    drv_flush_unsent(d);
}

/* A NACK that means "not now": e waits to be sent again. */
static void requeue(struct ndfs_driver *d, struct pending_entry *e, enum pending_wait wait,
                    int64_t delay_us)
{
    pending_table_set_sent(d->pending, e, false);
    e->wait = wait;
    e->not_before_us = g_get_monotonic_time() + delay_us;
}

/* Handles a NACK that is about the path, not the request; false for the
 * others (they answer the application). */
static bool handle_nack(struct ndfs_driver *d, struct pending_entry *e, int status)
{
    struct drv_vdisk *vs = drv_vdisk_state(d, e->vdisk_id);
    switch (status) {
    case -ESTALE:
        /* the master has no lease now: wait for it, as for a lost path */
        log_waiting(d, e->peer, "its lease ran out");
        drv_set_hold(vs, HOLD_NO_LEASE, e->peer, 0);
        requeue(d, e, PENDING_WAIT_DELAY, RETRY_LEASE_US);
        return true;
    case -EAGAIN:
        drv_set_hold(vs, HOLD_BEHIND, e->peer, e->epoch);
        requeue(d, e, PENDING_WAIT_DELAY, RETRY_AGAIN_US);
        return true;
    case -EREMCHG:
        /* The master's epoch is past the one e carried, so the cluster has
         * reached e->epoch + 1 at least: send again stamped with that,
         * without waiting for ndfsd's epoch event (ndfsd may be down or
         * restarting: the master still checks it masters the vdisk). One
         * step at a time never gets ahead of the master's epoch. */
        if (d->epoch < e->epoch + 1)
            d->epoch = e->epoch + 1;
        drv_set_hold(vs, HOLD_EPOCH, e->peer, e->epoch + 1);
        requeue(d, e, PENDING_WAIT_NONE, 0);
        return true;
    case -ENXIO:
    case -ENOENT:
        drv_set_hold(vs, HOLD_MAPPING, e->peer, 0);
        requeue(d, e, PENDING_WAIT_MAPPING, RETRY_CHANGE_US);
        return true;
    case -EIO: {
        /* a disk with no other path: nowhere to go, the application sees
         * the error as from a local disk */
        struct vdisk_master m;
        if (d->route(d->route_data, e->vdisk_id, &m) < 0 || !m.alternate)
            return false;
        if (!vs->failed || vs->failed_gen != e->map_gen || strcmp(vs->failed_node, e->peer) != 0)
            g_warning("vdisk %s%s%" G_GUINT64_FORMAT ": node \"%s\" cannot do its I/O (EIO): its "
                      "requests wait for a new master",
                      vs->name[0] ? vs->name : "", vs->name[0] ? " id " : "", e->vdisk_id, e->peer);
        vs->failed = true;
        g_strlcpy(vs->failed_node, e->peer, sizeof(vs->failed_node));
        vs->failed_gen = e->map_gen;
        drv_set_hold(vs, HOLD_PATH_FAILED, e->peer, 0);
        requeue(d, e, PENDING_WAIT_NONE, 0);
        return true;
    }
    default:
        return false;
    }
}

/* A reply from a master. */
static void on_message(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    struct ndfs_driver *d = data;
    ndfs_spin_kick(&d->spin);
    struct pending_entry *e = pending_table_find(d->pending, msg->request_id);
    struct ndfs_io_reply reply;
    if (!e || !e->sent || !e->peer || strcmp(e->peer, msg->peer) != 0 || msg->epoch != e->epoch) {
        /* an answer to a request answered already, or to an earlier attempt */
        ndfs_transport_release(t, msg);
        return;
    }
    int status;
    int rc = ndfs_io_reply_decode(msg->control, msg->control_len, &reply);
    if (rc < 0) {
        g_warning("node \"%s\" sent a malformed I/O reply (%s)", msg->peer, g_strerror(-rc));
        status = -EIO;
    } else {
        status = reply.status;
    }
    if (status < 0 && handle_nack(d, e, status)) {
        ndfs_transport_release(t, msg);
        drv_flush_unsent(d);
        drv_suspend_check(d);
        return;
    }
    bool read = e->op == NDFS_IO_READ;
    if (status >= 0 && ((uint32_t)status > e->length || (e->op == NDFS_IO_FSYNC && status) ||
                        msg->data_len != (read ? (size_t)status : 0))) {
        g_warning("node \"%s\" answered a %s of %u bytes with %d and %zu bytes of data", msg->peer,
                  ndfs_io_op_name(e->op), e->length, status, msg->data_len);
        status = -EIO;
    }
    if (g_hash_table_size(d->waiting) > 0 && g_hash_table_remove(d->waiting, msg->peer))
        g_message("node \"%s\" answers again: its I/O goes on", msg->peer);
    struct drv_vdisk *vs = g_hash_table_lookup(d->vdisks, &e->vdisk_id);
    if (vs && vs->hold != HOLD_NONE &&
        pending_table_count_vdisk(d->pending, e->vdisk_id) ==
            pending_table_count_sent_vdisk(d->pending, e->vdisk_id))
        drv_set_hold(vs, HOLD_NONE, NULL, 0); /* answers come: nothing of it waits */
    struct pending_entry done;
    pending_table_complete(d->pending, msg->request_id, &done);
    part_done(d, &done, status, msg->data);
    g_free(done.peer);
    ndfs_transport_release(t, msg);
    drv_suspend_check(d);
}

static int mark_unsent(struct pending_entry *e, void *data)
{
    struct ndfs_driver *d = ((void **)data)[0];
    const char *peer = ((void **)data)[1];
    if (e->sent && e->peer && strcmp(e->peer, peer) == 0)
        pending_table_set_sent(d->pending, e, false);
    return 0;
}

static int has_peer(struct pending_entry *e, void *data)
{
    return e->sent && e->peer && strcmp(e->peer, data) == 0;
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)link;
    struct ndfs_driver *d = data;
    switch (ev) {
    case NDFS_PEER_RESET: {
        /* it restarted and dropped what it had not answered: send again, by
         * the mapping of now */
        void *args[] = {d, (void *)peer};
        pending_table_foreach(d->pending, mark_unsent, args);
        drv_flush_unsent(d);
        drv_suspend_check(d); /* what it dropped is held now */
        break;
    }
    case NDFS_PEER_UP:
        if (g_hash_table_remove(d->waiting, peer))
            g_message("node \"%s\" is reachable again: its I/O goes on", peer);
        drv_flush_unsent(d);
        break;
    case NDFS_PEER_DOWN:
        if (pending_table_foreach(d->pending, has_peer, (void *)peer))
            log_waiting(d, peer, "its links are down");
        break;
    default:
        break;
    }
}

/* The master of a vdisk now, for the replay selection. */
static const char *master_now(uint64_t vdisk_id, void *data)
{
    struct ndfs_driver *d = data;
    struct vdisk_master m;
    if (d->route(d->route_data, vdisk_id, &m) < 0 || !m.node[0] || m.failed)
        return NULL;
    g_strlcpy(d->route_buf, m.node, sizeof(d->route_buf));
    return d->route_buf;
}

/* The epoch or the mapping moved: replay what went to a master that is no
 * longer one, in order; the waiting entries are looked at again. */
static void mapping_changed(struct ndfs_driver *d)
{
    size_t n = pending_table_reroute(d->pending, master_now, d);
    if (n > 0)
        g_message("the mapping changed: %zu request(s) sent again to the new master(s)", n);
    drv_flush_unsent(d);
    drv_update_states(d);
}

static void refresh_work(uv_work_t *req)
{
    struct ndfs_driver *d = req->data;
    g_autoptr(GVariant) result = NULL;
    g_autofree char *errmsg = NULL;
    d->refresh_status = control_link_call(d->link, "node.list", NULL, 0, &result, &errmsg);
    d->refresh_nodes = g_ptr_array_new_with_free_func(node_addrs_free);
    if (d->refresh_status < 0) {
        d->refresh_errmsg = g_strdup(errmsg ? errmsg : g_strerror(-d->refresh_status));
        return;
    }
    g_autoptr(GVariant) nodes = g_variant_lookup_value(result, "nodes", G_VARIANT_TYPE("aa{sv}"));
    if (!nodes) {
        d->refresh_status = -EPROTO;
        d->refresh_errmsg = g_strdup("ndfsd answered node.list without a nodes array");
        return;
    }
    for (gsize i = 0; i < g_variant_n_children(nodes); i++) {
        g_autoptr(GVariant) node = g_variant_get_child_value(nodes, i);
        const char *name;
        g_autofree const char **addresses = NULL;
        if (!g_variant_lookup(node, "name", "&s", &name) ||
            !g_variant_lookup(node, "addresses", "^a&s", &addresses) || !addresses[0])
            continue;
        struct node_addrs *n = g_new0(struct node_addrs, 1);
        n->name = g_strdup(name);
        n->addresses = g_strdupv((char **)addresses);
        g_ptr_array_add(d->refresh_nodes, n);
    }
}

static void refresh_done(uv_work_t *req, int status)
{
    (void)status;
    struct ndfs_driver *d = req->data;
    d->refreshing = false;
    if (!d->closing && d->refresh_status < 0) {
        if (!d->refresh_logged)
            g_message("cannot read the cluster's nodes from ndfsd: %s; retrying",
                      d->refresh_errmsg);
        d->refresh_logged = true;
        d->refresh_wanted = true; /* the tick asks again */
    } else if (!d->closing) {
        d->refresh_logged = false;
        for (guint i = 0; i < d->refresh_nodes->len; i++) {
            struct node_addrs *n = d->refresh_nodes->pdata[i];
            int rc = ndfs_transport_peer_set(d->t, n->name, (const char *const *)n->addresses);
            if (rc < 0)
                g_warning("node \"%s\": cannot use its addresses: %s", n->name, g_strerror(-rc));
            else if (!g_hash_table_contains(d->peers, n->name))
                g_hash_table_add(d->peers, g_strdup(n->name));
        }
    }
    g_ptr_array_free(d->refresh_nodes, TRUE);
    d->refresh_nodes = NULL;
    g_clear_pointer(&d->refresh_errmsg, g_free);
    drv_flush_unsent(d);
}

static void maybe_refresh(struct ndfs_driver *d)
{
    if (d->refreshing || d->closing)
        return;
    gint64 now = g_get_monotonic_time();
    if (d->last_refresh_us && now - d->last_refresh_us < REFRESH_INTERVAL_US)
        return; /* refresh_wanted stays set: the tick comes back */
    d->refresh_wanted = false;
    d->last_refresh_us = now;
    d->refreshing = true;
    d->refresh_req.data = d;
    int rc = uv_queue_work(&d->loop, &d->refresh_req, refresh_work, refresh_done);
    if (rc < 0) {
        d->refreshing = false;
        d->refresh_wanted = true;
    }
}

static void on_tick(uv_timer_t *timer)
{
    struct ndfs_driver *d = timer->data;
    /* a change the table took without telling (a chmod's answer) */
    pending_table_reroute(d->pending, master_now, d);
    drv_flush_unsent(d);
    drv_suspend_tick(d);
    drv_update_states(d);
    if (d->refresh_wanted)
        maybe_refresh(d);
}

static int first_entry(struct pending_entry *e, void *data)
{
    *(uint64_t *)data = e->id;
    return 1;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_transport_closed(void *data)
{
    struct ndfs_driver *d = data;
    d->t = NULL;
    uv_close((uv_handle_t *)&d->wake, on_closed);
    ndfs_wakeup_close(&d->submit_wake, on_closed);
    ndfs_spin_close(&d->spin, on_closed);
    uv_close((uv_handle_t *)&d->tick, on_closed);
    uv_close((uv_handle_t *)&d->retry, on_closed);
}

/* Answers everything -EIO and closes the loop's handles. */
static void shut_down(struct ndfs_driver *d)
{
    if (d->closing)
        return;
    d->closing = true;
    uv_timer_stop(&d->tick);
    uv_timer_stop(&d->retry);
    uint64_t id;
    size_t n = pending_table_count(d->pending);
    if (n > 0)
        g_warning("the mount ends with %zu request(s) still waiting for a master: they fail "
                  "with EIO",
                  n);
    while (pending_table_foreach(d->pending, first_entry, &id)) {
        struct pending_entry e;
        pending_table_complete(d->pending, id, &e);
        part_done(d, &e, -EIO, NULL);
        g_free(e.peer);
    }
    ndfs_transport_close(d->t, on_transport_closed, d);
}

static void wake_run(struct ndfs_driver *d)
{
    GQueue work = G_QUEUE_INIT, cmds = G_QUEUE_INIT;
    g_mutex_lock(&d->lock);
    work = d->incoming;
    g_queue_init(&d->incoming);
    cmds = d->susp_cmds;
    g_queue_init(&d->susp_cmds);
    bool drained = d->drain_asked;
    d->drain_asked = false;
    bool stop = d->stopping;
    if (d->refresh_asked)
        d->refresh_wanted = true;
    d->refresh_asked = false;
    bool remap = d->mapping_asked || d->epoch_in > d->epoch;
    d->mapping_asked = false;
    if (d->epoch_in > d->epoch)
        d->epoch = d->epoch_in;
    g_mutex_unlock(&d->lock);
    /* suspensions first: what comes with them is held, not sent */
    if (!stop && !d->closing)
        drv_suspend_run(d, &cmds);
    g_queue_clear_full(&cmds, (GDestroyNotify)drv_susp_cmd_free);
    struct drv_request *r;
    while ((r = g_queue_pop_head(&work))) {
        if (stop) {
            r->status = -EIO;
            finish_request(d, r, NULL);
        } else {
            start_request(d, r);
        }
    }
    if (stop) {
        shut_down(d);
        return;
    }
    if (remap)
        mapping_changed(d);
    if (drained || suspend_set_size(d->susp) > 0)
        drv_suspend_check(d);
    if (d->refresh_wanted)
        maybe_refresh(d);
}

static void on_wake(uv_async_t *async)
{
    wake_run(async->data);
}

static void on_submit_wake(struct ndfs_wakeup *w)
{
    struct ndfs_driver *d = w->data;
    ndfs_spin_kick(&d->spin);
    wake_run(d);
}

static void signal_started(struct ndfs_driver *d, int status, char *errmsg)
{
    g_mutex_lock(&d->lock);
    d->started = true;
    d->start_status = status;
    d->start_errmsg = errmsg;
    g_cond_broadcast(&d->started_cond);
    g_mutex_unlock(&d->lock);
}

/* Sets up the transport and the handles on the loop thread. */
static int loop_setup(struct ndfs_driver *d, char **errmsg)
{
    g_autofree char *name = g_strdup_printf("%s.mount-%ld", d->node, (long)getpid());
    const char *const no_listen[] = {NULL};
    struct ndfs_transport_config cfg = {
        .name = name,
        .listen = no_listen,
        .key = d->key,
        .key_len = d->key_len,
    };
    int rc = ndfs_transport_new(&d->loop, &cfg, &d->t, errmsg);
    if (rc < 0)
        return rc;
    if ((rc = ndfs_transport_start(d->t, errmsg)) < 0 ||
        (rc = ndfs_transport_register(d->t, NDFS_CHANNEL_IO, on_message, d)) < 0) {
        if (!*errmsg)
            *errmsg = g_strdup_printf("cannot register the I/O channel: %s", g_strerror(-rc));
        ndfs_transport_close(d->t, NULL, NULL);
        d->t = NULL;
        return rc;
    }
    if ((rc = uv_async_init(&d->loop, &d->wake, on_wake)) < 0) {
        *errmsg = g_strdup_printf("uv_async_init: %s", uv_strerror(rc));
        ndfs_transport_close(d->t, NULL, NULL);
        d->t = NULL;
        return rc;
    }
    if ((rc = ndfs_wakeup_init(&d->loop, &d->submit_wake, on_submit_wake, d)) < 0) {
        *errmsg = g_strdup_printf("cannot set up the requests' wakeup: %s", g_strerror(-rc));
        uv_close((uv_handle_t *)&d->wake, on_closed);
        ndfs_transport_close(d->t, NULL, NULL);
        d->t = NULL;
        return rc;
    }
    /* cannot fail for an idle handle on an initialised loop */
    (void)ndfs_spin_init(&d->loop, &d->spin, d->poll_us);
    ndfs_transport_set_event_cb(d->t, on_event, d);
    d->wake.data = d;
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_init(&d->loop, &d->retry);
    d->retry.data = d;
    uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static gpointer driver_thread(gpointer data)
{
    struct ndfs_driver *d = data;
    char *errmsg = NULL;
    int rc = uv_loop_init(&d->loop);
    if (rc < 0) {
        signal_started(d, rc, g_strdup_printf("uv_loop_init: %s", uv_strerror(rc)));
        return NULL;
    }
    rc = loop_setup(d, &errmsg);
    if (rc < 0) {
        uv_run(&d->loop, UV_RUN_DEFAULT); /* lets the transport close */
        uv_loop_close(&d->loop);
        signal_started(d, rc, errmsg);
        return NULL;
    }
    d->refresh_wanted = true;
    maybe_refresh(d);
    signal_started(d, 0, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&d->loop) < 0)
        g_warning("the driver's loop still had handles at exit");
    return NULL;
}

static void driver_release(struct ndfs_driver *d)
{
    if (d->pending)
        pending_table_free(d->pending);
    if (d->peers)
        g_hash_table_destroy(d->peers);
    if (d->waiting)
        g_hash_table_destroy(d->waiting);
    if (d->vdisks)
        g_hash_table_destroy(d->vdisks);
    if (d->round_blocked)
        g_ptr_array_free(d->round_blocked, TRUE);
    if (d->reports)
        g_ptr_array_free(d->reports, TRUE);
    if (d->reports_sending)
        g_ptr_array_free(d->reports_sending, TRUE);
    drv_suspend_release(d);
    free(d->slots);
    g_queue_clear_full(&d->susp_cmds, (GDestroyNotify)drv_susp_cmd_free);
    g_cond_clear(&d->started_cond);
    g_mutex_clear(&d->lock);
    if (d->key)
        memset(d->key, 0, d->key_len);
    g_free(d->key);
    g_free(d->node);
    g_free(d->start_errmsg);
    g_free(d);
}

int ndfs_driver_new(const struct ndfs_driver_config *cfg, struct ndfs_driver **out, char **errmsg)
{
    struct ndfs_driver *d = g_new0(struct ndfs_driver, 1);
    d->node = g_strdup(cfg->node_name);
    d->key = g_memdup2(cfg->key, cfg->key_len);
    d->key_len = cfg->key_len;
    d->link = cfg->link;
    d->epoch = cfg->epoch;
    d->epoch_in = cfg->epoch;
    d->route = cfg->route;
    d->route_data = cfg->route_data;
    d->poll_us = MIN(cfg->poll_us, NDFS_CONFIG_POLL_US_MAX);
    d->part_size =
        cfg->part_size && cfg->part_size < NDFS_IO_MAX_LENGTH ? cfg->part_size : NDFS_IO_MAX_LENGTH;
    /* parts of an O_DIRECT request must stay aligned for the master */
    d->part_size = MAX(d->part_size / LOCALIO_BUFFER_ALIGN, 1) * LOCALIO_BUFFER_ALIGN;
    g_mutex_init(&d->lock);
    g_cond_init(&d->started_cond);
    g_queue_init(&d->incoming);
    d->pending = pending_table_new();
    d->peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    d->waiting = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    d->vdisks = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    d->round_blocked = g_ptr_array_new_with_free_func(g_free);
    d->reports = g_ptr_array_new_with_free_func(g_free);
    d->reports_sending = g_ptr_array_new_with_free_func(g_free);
    g_queue_init(&d->susp_cmds);
    d->susp = suspend_set_new();
    d->acks = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    d->acks_sending = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    d->slots = aligned_alloc(_Alignof(struct drv_slot), DRV_SLOTS * sizeof(struct drv_slot));
    if (!d->slots) {
        *errmsg = g_strdup("cannot allocate the driver's local I/O counters");
        driver_release(d);
        return -ENOMEM;
    }
    for (size_t i = 0; i < DRV_SLOTS; i++) {
        atomic_init(&d->slots[i].suspended, 0);
        atomic_init(&d->slots[i].inflight, 0);
    }
    GError *err = NULL;
    d->thread = g_thread_try_new("ndfs-driver", driver_thread, d, &err);
    if (!d->thread) {
        *errmsg = g_strdup_printf("cannot start the driver thread: %s", err->message);
        g_error_free(err);
        driver_release(d);
        return -EAGAIN;
    }
    g_mutex_lock(&d->lock);
    while (!d->started)
        g_cond_wait(&d->started_cond, &d->lock);
    int rc = d->start_status;
    g_mutex_unlock(&d->lock);
    if (rc < 0) {
        g_thread_join(d->thread);
        *errmsg = g_steal_pointer(&d->start_errmsg);
        driver_release(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ndfs_driver_free(struct ndfs_driver *d)
{
    if (!d)
        return;
    g_mutex_lock(&d->lock);
    d->stopping = true;
    uv_async_send(&d->wake);
    g_mutex_unlock(&d->lock);
    g_thread_join(d->thread);
    driver_release(d);
}

void ndfs_driver_mapping_changed(struct ndfs_driver *d)
{
    g_mutex_lock(&d->lock);
    d->mapping_asked = true;
    if (!d->stopping)
        uv_async_send(&d->wake); /* under the lock: see wake */
    g_mutex_unlock(&d->lock);
}

void ndfs_driver_set_epoch(struct ndfs_driver *d, uint64_t epoch)
{
    g_mutex_lock(&d->lock);
    if (epoch > d->epoch_in) {
        d->epoch_in = epoch;
        if (!d->stopping)
            uv_async_send(&d->wake); /* under the lock: see wake */
    }
    g_mutex_unlock(&d->lock);
}

void ndfs_driver_refresh_nodes(struct ndfs_driver *d)
{
    g_mutex_lock(&d->lock);
    d->refresh_asked = true;
    if (!d->stopping)
        uv_async_send(&d->wake); /* under the lock: see wake */
    g_mutex_unlock(&d->lock);
}

int ndfs_driver_submit_data(struct ndfs_driver *d, uint64_t vdisk_id, uint8_t op, uint16_t flags,
                            uint64_t offset, size_t length, const struct ndfs_driver_data *data,
                            ndfs_driver_done_cb done, void *opaque)
{
    bool has_bytes = data && data->bytes;
    if ((op != NDFS_IO_FSYNC && length == 0) || (op == NDFS_IO_WRITE) != has_bytes ||
        length > INT32_MAX || (op != NDFS_IO_FSYNC && offset > UINT64_MAX - length)) {
        if (data)
            drop_data(data->bytes, data->release, data->release_arg);
        return -EINVAL;
    }
    struct drv_request *r = g_new0(struct drv_request, 1);
    r->refs = 1;
    r->op = op;
    r->flags = flags;
    r->vdisk_id = vdisk_id;
    r->submitted_us = g_get_monotonic_time();
    r->offset = offset;
    r->length = op == NDFS_IO_FSYNC ? 0 : length;
    if (data) {
        r->data = data->bytes;
        r->release = data->release;
        r->release_arg = data->release_arg;
        r->has_crc = data->has_crc;
        r->data_crc = data->crc;
    }
    r->done = done;
    r->opaque = opaque;
    g_mutex_lock(&d->lock);
    bool stopping = d->stopping;
    if (!stopping) {
        g_queue_push_tail(&d->incoming, r);
        ndfs_wakeup_send(&d->submit_wake); /* under the lock: see wake */
    }
    g_mutex_unlock(&d->lock);
    if (stopping) {
        request_unref(r); /* gives the data back */
        return -ESHUTDOWN;
    }
    return 0;
}

int ndfs_driver_submit(struct ndfs_driver *d, uint64_t vdisk_id, uint8_t op, uint16_t flags,
                       uint64_t offset, size_t length, void *data, ndfs_driver_done_cb done,
                       void *opaque)
{
    struct ndfs_driver_data bytes = {.bytes = data};
    return ndfs_driver_submit_data(d, vdisk_id, op, flags, offset, length, data ? &bytes : NULL,
                                   done, opaque);
}
