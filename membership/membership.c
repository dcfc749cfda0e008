/* Membership wiring: a heartbeat timer, the membership channel of the
 * transport and the CCD around the pure state machine of view.c.
 *
 * The CCD keeps one watcher, which ndfsd uses; so every tick rereads the
 * nodes table and the membership row from the local replica (two LMDB
 * read transactions) and reports a changed row to change_cb. */
#define G_LOG_DOMAIN "ndfs-membership"

#include <ndfs/membership.h>

#include <errno.h>
#include <glib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "membership/view.h"

#define DEFAULT_HEARTBEAT_MS 200
#define DEFAULT_FAILURE_MS   1500

struct ndfs_membership {
    uv_loop_t *loop;
    struct ndfs_transport *transport; /* NULL: no network, always leader and member */
    struct ndfs_ccd *ccd;
    char *self;
    unsigned heartbeat_ms;
    uint64_t lease_ns;
    struct mview *view;
    uv_timer_t tick;
    bool started;
    bool closing;
    bool tick_closed;
    char leader[NDFS_NODE_NAME_MAX + 1]; /* as last read from the CCD; "" if none */
    char **members;                      /* last reported to change_cb */
    ndfs_membership_change_cb change_cb;
    void *change_data;
    ndfs_membership_removed_cb removed_cb;
    void *removed_data;
    bool removed; /* the leader said we are not in the nodes table */
    /* the lease expiry as published for other threads (see publish()) */
    _Atomic uint64_t lease_word;
    bool lease_was_valid; /* at the last publish */
    ndfs_membership_lease_cb lease_cb;
    void *lease_data;
    /* the replica's epoch as ndfs_membership_epoch() last read it, at the
     * replica's applied index epoch_index */
    uint64_t replica_epoch;
    uint64_t epoch_index;
    bool epoch_read;
    uint64_t last_run_ns; /* the last tick or message: a stall shows as a gap */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer; the lease is on this
     * clock */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ndfs_membership_new(uv_loop_t *loop, const struct ndfs_membership_config *cfg,
                        struct ndfs_transport *transport, struct ndfs_ccd *ccd,
                        struct ndfs_membership **out, char **errmsg)
{
    *out = NULL;
    unsigned hb = cfg->heartbeat_interval_ms ? cfg->heartbeat_interval_ms : DEFAULT_HEARTBEAT_MS;
    unsigned failure = cfg->failure_timeout_ms ? cfg->failure_timeout_ms : DEFAULT_FAILURE_MS;
    unsigned lease = cfg->lease_ms ? cfg->lease_ms : failure * 2 / 3;
    if (cfg->node_name == NULL || cfg->node_name[0] == '\0') {
        *errmsg = g_strdup("membership: no node name");
        return -EINVAL;
    }
    if (lease == 0 || lease >= failure) {
        *errmsg = g_strdup_printf("membership: the lease (%u ms) must be shorter than the failure "
                                  "timeout (%u ms)",
                                  lease, failure);
        return -EINVAL;
    }
    if (hb >= lease) {
        *errmsg = g_strdup_printf("membership: the heartbeat interval (%u ms) must be shorter "
                                  "than the lease (%u ms)",
                                  hb, lease);
        return -EINVAL;
    }
    struct mview_config vc = {
        .failure_timeout_ns = (uint64_t)failure * 1000000ull,
        .lease_ns = (uint64_t)lease * 1000000ull,
    };
    struct ndfs_membership *m = g_new0(struct ndfs_membership, 1);
    m->view = mview_new(cfg->node_name, &vc);
    if (m->view == NULL) {
        g_free(m);
        *errmsg = g_strdup("membership: invalid timeouts");
        return -EINVAL;
    }
    int rc = uv_timer_init(loop, &m->tick);
    if (rc < 0) {
        mview_free(m->view);
        g_free(m);
        *errmsg = g_strdup_printf("membership: timer: %s", uv_strerror(rc));
        return rc;
    }
    m->tick.data = m;
    m->loop = loop;
    m->transport = transport;
    m->ccd = ccd;
    m->self = g_strdup(cfg->node_name);
    m->heartbeat_ms = hb;
    m->lease_ns = vc.lease_ns;
    /* a single node's lease never runs out; others have none until a grant */
    atomic_init(&m->lease_word, transport == NULL ? UINT64_MAX : 0);
    m->lease_was_valid = transport == NULL;
    *out = m;
    return 0;
}

/* Commits members with the next epoch through the CCD (we lead). */
static void commit_done(struct ndfs_ccd *ccd, int status, void *data);
static void maybe_free(struct ndfs_membership *m);
static void on_tick(uv_timer_t *timer);
static void on_message(struct ndfs_transport *t, struct ndfs_message *msg, void *data);
static int ccd_commit_members(struct ndfs_membership *m, char **members)
{
    return ndfs_ccd_membership_set(m->ccd, (const char *const *)members, commit_done, m);
}

struct node_rows {
    GArray *rows; /* struct mview_node_row, names g_strdup'd */
};

static int collect_node(const struct ndfs_node *n, void *data)
{
    struct node_rows *nr = data;
    struct mview_node_row row = {.name = g_strdup(n->name), .voter = n->role == NDFS_NODE_VOTER};
    g_array_append_val(nr->rows, row);
    return 0;
}

static void report_change(struct ndfs_membership *m, char **members)
{
    g_strfreev(m->members);
    m->members = g_strdupv(members);
    g_autofree char *list = g_strjoinv(",", members);
    g_message("epoch %" G_GUINT64_FORMAT ": members %s", mview_epoch(m->view), list);
    if (m->change_cb)
        m->change_cb(m, mview_epoch(m->view), (const char *const *)members, m->change_data);
}

/* Publishes the lease expiry for other threads (the master's workers read
 * it before every disk operation) and tells lease_cb when it moved or ran
 * out. Called after everything that may change it: a grant, a heartbeat
 * (the leader's majority), a refresh (leadership, the applied epoch), and
 * every tick (time passing). The value is the expiry the view computes now,
 * so it never runs ahead of it (it moves back when the view's does). */
static void publish(struct ndfs_membership *m)
{
    uint64_t exp = ndfs_membership_lease_expiry_ns(m);
    uint64_t old = atomic_load_explicit(&m->lease_word, memory_order_relaxed);
    bool valid = now_ns() < exp;
    bool lost = m->lease_was_valid && !valid;
    if (exp != old)
        atomic_store_explicit(&m->lease_word, exp, memory_order_release);
    if (valid != m->lease_was_valid) {
        if (valid)
            g_debug("lease held (epoch %" G_GUINT64_FORMAT ")", mview_epoch(m->view));
        else if (exp == 0 && mview_epoch(m->view) < mview_grant_epoch(m->view))
            g_message("no lease until this replica applies epoch %" G_GUINT64_FORMAT
                      " (it has %" G_GUINT64_FORMAT ")",
                      mview_grant_epoch(m->view), mview_epoch(m->view));
        else
            g_message("this node's lease ran out");
    }
    m->lease_was_valid = valid;
    if ((exp != old || lost) && m->lease_cb != NULL && !m->closing)
        m->lease_cb(m, exp, m->lease_data);
}

/* Rereads the nodes table, the membership row and the leader from the
 * local replica into the view. */
static void refresh(struct ndfs_membership *m)
{
    uint64_t now = now_ns();
    struct node_rows nr = {.rows = g_array_new(FALSE, FALSE, sizeof(struct mview_node_row))};
    int rc = ndfs_ccd_node_foreach(m->ccd, collect_node, &nr);
    /* voters as Raft has them now: the table says what they should become */
    unsigned nvoters = 0;
    g_auto(GStrv) voters = m->transport ? ndfs_ccd_voters(m->ccd, &nvoters) : NULL;
    for (guint i = 0; voters && i < nr.rows->len; i++) {
        struct mview_node_row *row = &g_array_index(nr.rows, struct mview_node_row, i);
        row->voter = g_strv_contains((const gchar *const *)voters, row->name);
    }
    if (rc == 0)
        mview_set_nodes(m->view, (struct mview_node_row *)(void *)nr.rows->data, nr.rows->len, now);
    else
        g_debug("cannot read the nodes table: %s", g_strerror(-rc));
    for (guint i = 0; i < nr.rows->len; i++)
        g_free((char *)g_array_index(nr.rows, struct mview_node_row, i).name);
    g_array_free(nr.rows, TRUE);

    struct ndfs_ccd_status st = {0};
    rc = ndfs_ccd_status(m->ccd, &st);
    if (rc < 0) {
        g_debug("cannot read the membership row: %s", g_strerror(-rc));
        publish(m); /* time passed all the same */
        return;
    }
    ndfs_ccd_leader(m->ccd, m->leader);
    mview_set_leader(m->view, m->transport == NULL || ndfs_ccd_is_leader(m->ccd), now);
    if (mview_set_committed(m->view, st.epoch, (const char *const *)st.members))
        report_change(m, st.members);
    ndfs_ccd_status_clear(&st);
    publish(m);
}

static void maybe_commit(struct ndfs_membership *m)
{
    if (m->transport == NULL || m->closing)
        return;
    char **members = mview_commit_next(m->view, now_ns());
    if (members == NULL)
        return;
    g_autofree char *list = g_strjoinv(",", members);
    int rc = ccd_commit_members(m, members);
    if (rc < 0) {
        g_debug("cannot commit members %s: %s", list, g_strerror(-rc));
        mview_commit_done(m->view);
    } else {
        g_message("committing members %s (epoch %" G_GUINT64_FORMAT " + 1)", list,
                  mview_epoch(m->view));
    }
    g_strfreev(members);
}

/* Runs the tick on the next loop turn, not inside the CCD's callback. */
static void kick(struct ndfs_membership *m)
{
    int rc = uv_timer_start(&m->tick, on_tick, 0, m->heartbeat_ms);
    if (rc < 0)
        g_debug("cannot restart the tick: %s", uv_strerror(rc));
}

static void commit_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct ndfs_membership *m = data;
    (void)ccd;
    if (status < 0)
        g_message("membership commit failed: %s", g_strerror(-status));
    mview_commit_done(m->view);
    if (m->closing) {
        maybe_free(m);
        return;
    }
    kick(m);
}

static void send_msg(struct ndfs_membership *m, const char *peer, const struct mview_msg *msg)
{
    /* the transport would queue it for a peer without links: stale by then */
    if (!ndfs_transport_peer_up(m->transport, peer))
        return;
    uint8_t buf[MVIEW_MSG_LEN];
    mview_msg_encode(msg, buf);
    int rc = ndfs_transport_send(m->transport, peer, NDFS_CHANNEL_MEMBERSHIP, 0,
                                 mview_epoch(m->view), buf, sizeof buf, NULL, 0);
    if (rc < 0)
        g_debug("cannot send to %s: %s", peer, g_strerror(-rc));
}

/* The tick runs every heartbeat interval, so a gap of half a lease since we
 * last ran means this process stood still: see mview_stalled(). */
static void check_stall(struct ndfs_membership *m)
{
    uint64_t now = now_ns();
    if (m->transport != NULL && m->last_run_ns != 0 && now > m->last_run_ns + m->lease_ns / 2) {
        g_warning("this node stood still for %" G_GUINT64_FORMAT
                  " ms: the heartbeats that waited meanwhile do not renew the leader's lease",
                  (guint64)((now - m->last_run_ns) / 1000000u));
        mview_stalled(m->view, now);
    }
    m->last_run_ns = now;
}

static void on_tick(uv_timer_t *timer)
{
    struct ndfs_membership *m = timer->data;
    check_stall(m);
    refresh(m);
    if (m->transport && m->leader[0] != '\0' && strcmp(m->leader, m->self) != 0) {
        struct mview_msg hb = {
            .type = MVIEW_HEARTBEAT, .send_ns = now_ns(), .epoch = mview_epoch(m->view)};
        send_msg(m, m->leader, &hb);
    }
    maybe_commit(m);
}

/* The channel is ours from start to close: -EBUSY while another membership
 * runs on this transport. */
static int attach(struct ndfs_membership *m)
{
    int rc = ndfs_transport_register(m->transport, NDFS_CHANNEL_MEMBERSHIP, on_message, m);
    return rc == -EEXIST ? -EBUSY : rc;
}

/* Messages that come after this are released by the transport. */
static void detach(struct ndfs_membership *m)
{
    int rc = ndfs_transport_unregister(m->transport, NDFS_CHANNEL_MEMBERSHIP);
    if (rc < 0)
        g_warning("membership channel: cannot unregister: %s", g_strerror(-rc));
}

static void on_message(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    struct ndfs_membership *m = data;
    struct mview_msg in;
    if (m->closing) {
        ndfs_transport_release(t, msg);
        return;
    }
    if (mview_msg_decode(msg->control, msg->control_len, &in) < 0) {
        g_debug("dropped a malformed membership message from %s", msg->peer);
        ndfs_transport_release(t, msg);
        return;
    }
    check_stall(m);
    uint64_t now = now_ns();
    if (in.type == MVIEW_HEARTBEAT) {
        uint64_t lease;
        if (mview_disowns(m->view, msg->peer, now)) {
            /* removed while it ran: it no longer gets the CCD's updates */
            g_message("%s is not in the nodes table: telling it it was removed", msg->peer);
            struct mview_msg no = {
                .type = MVIEW_NOT_MEMBER, .send_ns = in.send_ns, .epoch = mview_epoch(m->view)};
            send_msg(m, msg->peer, &no);
        } else if (mview_on_heartbeat(m->view, msg->peer, now, &lease)) {
            struct mview_msg grant = {.type = MVIEW_GRANT,
                                      .send_ns = in.send_ns,
                                      .lease_ns = lease,
                                      .epoch = mview_epoch(m->view)};
            send_msg(m, msg->peer, &grant);
        }
        publish(m);      /* a voter's heartbeat renews the leader's own lease */
        maybe_commit(m); /* a node heard again is committed without waiting for a tick */
    } else if (in.type == MVIEW_NOT_MEMBER) {
        /* only the node we heartbeat (the leader) may say so */
        if (strcmp(msg->peer, m->leader) == 0 && !m->removed) {
            m->removed = true;
            g_warning("this node (%s) was removed from the cluster (leader %s): stopping", m->self,
                      msg->peer);
            if (m->removed_cb)
                m->removed_cb(m, msg->peer, m->removed_data);
        }
    } else {
        mview_heard(m->view, msg->peer, now);
        mview_on_grant(m->view, in.send_ns, in.lease_ns, in.epoch, now);
        /* the replica may have applied the grant's epoch since the last
         * tick: reread it rather than drop the lease until the next one */
        if (in.epoch > mview_epoch(m->view))
            refresh(m);
        else
            publish(m);
    }
    ndfs_transport_release(t, msg);
}

int ndfs_membership_start(struct ndfs_membership *m)
{
    if (m->started)
        return -EALREADY;
    if (m->transport) {
        int rc = attach(m);
        if (rc < 0)
            return rc;
    }
    refresh(m);
    m->last_run_ns = now_ns();
    int rc = uv_timer_start(&m->tick, on_tick, m->heartbeat_ms, m->heartbeat_ms);
    if (rc < 0) {
        if (m->transport)
            detach(m);
        return rc;
    }
    m->started = true;
    return 0;
}

/* Frees m once the timer is closed and no commit holds it. */
static void maybe_free(struct ndfs_membership *m)
{
    if (!m->tick_closed || mview_commit_in_flight(m->view))
        return;
    mview_free(m->view);
    g_strfreev(m->members);
    g_free(m->self);
    g_free(m);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct ndfs_membership *m = h->data;
    m->tick_closed = true;
    maybe_free(m);
}

void ndfs_membership_close(struct ndfs_membership *m)
{
    if (m == NULL)
        return;
    m->closing = true;
    if (m->started && m->transport)
        detach(m);
    uv_close((uv_handle_t *)&m->tick, on_tick_closed);
}

bool ndfs_membership_lease_valid(struct ndfs_membership *m)
{
    return now_ns() < ndfs_membership_lease_expiry_ns(m);
}

const _Atomic uint64_t *ndfs_membership_lease_word(struct ndfs_membership *m)
{
    return &m->lease_word;
}

uint64_t ndfs_membership_epoch(struct ndfs_membership *m)
{
    /* reread only when the replica applied something since */
    uint64_t index = ndfs_ccd_applied_index(m->ccd);
    if (!m->epoch_read || index != m->epoch_index) {
        struct ndfs_ccd_status st = {0};
        if (ndfs_ccd_status(m->ccd, &st) == 0) {
            m->replica_epoch = st.epoch;
            m->epoch_index = index;
            m->epoch_read = true;
            ndfs_ccd_status_clear(&st);
        } else if (!m->epoch_read) {
            return mview_epoch(m->view);
        }
    }
    return m->replica_epoch;
}

void ndfs_membership_set_lease_cb(struct ndfs_membership *m, ndfs_membership_lease_cb cb,
                                  void *data)
{
    m->lease_cb = cb;
    m->lease_data = data;
}

uint64_t ndfs_membership_lease_over_ns(struct ndfs_membership *m, const char *node)
{
    if (m->transport == NULL)
        return 0; /* nobody else can hold a lease */
    return mview_lease_over(m->view, node);
}

bool ndfs_membership_is_member(struct ndfs_membership *m, const char *node)
{
    if (m->transport == NULL && strcmp(node, m->self) == 0)
        return true;
    return mview_is_member(m->view, node);
}

uint64_t ndfs_membership_lease_expiry_ns(struct ndfs_membership *m)
{
    if (m->transport == NULL)
        return UINT64_MAX;
    return mview_lease_expiry(m->view);
}

struct foreach_ctx {
    struct ndfs_membership *m;
    int (*fn)(const struct ndfs_member_info *mi, void *data);
    void *data;
    uint64_t now;
    const char *peer;       /* link search: this peer */
    uint64_t link_heard_ms; /* smallest last_heard_ms_ago over its links */
};

static int min_link_heard(const struct ndfs_link_info *li, void *data)
{
    struct foreach_ctx *c = data;
    if (strcmp(li->peer, c->peer) == 0 && li->last_heard_ms_ago < c->link_heard_ms)
        c->link_heard_ms = li->last_heard_ms_ago;
    return 0;
}

static int foreach_node(const struct ndfs_node *n, void *data)
{
    struct foreach_ctx *c = data;
    struct ndfs_membership *m = c->m;
    bool self = strcmp(n->name, m->self) == 0;
    struct ndfs_member_info mi = {
        .name = n->name,
        .up = mview_is_member(m->view, n->name),
        .reachable = self || (m->transport && ndfs_transport_peer_up(m->transport, n->name)),
        .last_heard_ms_ago = self ? 0 : UINT64_MAX,
    };
    uint64_t heard = mview_last_heard(m->view, n->name);
    if (!self && heard != 0 && heard <= c->now)
        mi.last_heard_ms_ago = (c->now - heard) / 1000000ull;
    if (!self && m->transport) {
        c->peer = n->name;
        c->link_heard_ms = UINT64_MAX;
        ndfs_transport_foreach_link(m->transport, min_link_heard, c);
        if (c->link_heard_ms < mi.last_heard_ms_ago)
            mi.last_heard_ms_ago = c->link_heard_ms;
    }
    return c->fn(&mi, c->data);
}

int ndfs_membership_foreach(struct ndfs_membership *m,
                            int (*fn)(const struct ndfs_member_info *mi, void *data), void *data)
{
    struct foreach_ctx c = {.m = m, .fn = fn, .data = data, .now = now_ns()};
    return ndfs_ccd_node_foreach(m->ccd, foreach_node, &c);
}

void ndfs_membership_set_change_cb(struct ndfs_membership *m, ndfs_membership_change_cb cb,
                                   void *data)
{
    m->change_cb = cb;
    m->change_data = data;
}

void ndfs_membership_set_removed_cb(struct ndfs_membership *m, ndfs_membership_removed_cb cb,
                                    void *data)
{
    m->removed_cb = cb;
    m->removed_data = data;
}

void ndfs_membership_ccd_changed(struct ndfs_membership *m, enum ndfs_ccd_table table)
{
    if (!m->started || m->closing ||
        (table != NDFS_CCD_NODES && table != NDFS_CCD_MEMBERSHIP && table != NDFS_CCD_META))
        return;
    kick(m);
}
