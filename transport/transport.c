/* The transport: peers, their links and logical link (window), channels,
 * events and the public API. Connections are link.c's. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <string.h>

#include "transport_private.h"

#define DEFAULT_HB_MS       200
#define DEFAULT_FAIL_MS     1500
#define DEFAULT_MAX_MESSAGE (16u << 20)
#define DEFAULT_STRIPE      (256u << 10)
#define DEFAULT_MAX_QUEUED  (64u << 20)

void tp_emit(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev, int link)
{
    if (t->event_cb && !t->closing)
        t->event_cb(t, peer, ev, link, t->event_data);
}

struct tp_peer *tp_peer_find(struct ndfs_transport *t, const char *name)
{
    return name ? g_hash_table_lookup(t->peers, name) : NULL;
}

static void peer_handle_closed(uv_handle_t *h)
{
    struct tp_peer *p = h->data;
    struct ndfs_transport *t = p->t;
    t->handles--;
    if (--p->handles == 0) {
        ndfs_window_clear(&p->win);
        g_free(p);
    }
    tp_maybe_finish(t);
}

static void retry_cb(uv_timer_t *timer)
{
    tp_link_dial(timer->data);
}

static struct tp_peer *peer_new(struct ndfs_transport *t, const char *name, bool configured)
{
    struct tp_peer *p = g_new0(struct tp_peer, 1);
    p->t = t;
    g_strlcpy(p->name, name, sizeof p->name);
    p->configured = configured;
    /* unique in this process; the random incarnation sets processes apart */
    p->session = t->incarnation + 2 * ++t->sessions;
    if (!p->session)
        p->session = t->incarnation + 2 * ++t->sessions;
    ndfs_window_init(&p->win, t->max_message, t->stripe_size, t->max_queued);
    uv_timer_init(t->loop, &p->ack_timer);
    p->ack_timer.data = p;
    uv_timer_init(t->loop, &p->rto_timer);
    p->rto_timer.data = p;
    p->handles = 2;
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        struct tp_link *l = &p->links[i];
        l->peer = p;
        l->index = i;
        l->backoff_ms = TP_BACKOFF_MIN_MS;
        if (i < t->nlisten)
            g_strlcpy(l->local, t->listen_str[i], sizeof l->local);
        uv_timer_init(t->loop, &l->retry);
        l->retry.data = l;
        p->handles++;
    }
    t->handles += p->handles;
    p->down_since = uv_now(t->loop);
    g_hash_table_insert(t->peers, p->name, p);
    return p;
}

/* Closes every connection of p; the caller made sure detaching is quiet
 * (p->removed) or wanted. */
struct tp_peer *tp_peer_get(struct ndfs_transport *t, const char *name)
{
    struct tp_peer *p = tp_peer_find(t, name);
    return p ? p : peer_new(t, name, false);
}

static void peer_close_conns(struct tp_peer *p)
{
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        struct tp_link *l = &p->links[i];
        if (l->conn)
            tp_conn_close(l->conn, -ECONNABORTED, NULL);
        if (l->dialing)
            tp_conn_close(l->dialing, -ECONNABORTED, NULL);
    }
}

static void peer_destroy(struct tp_peer *p)
{
    p->removed = true;
    peer_close_conns(p);
    uv_close((uv_handle_t *)&p->ack_timer, peer_handle_closed);
    uv_close((uv_handle_t *)&p->rto_timer, peer_handle_closed);
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        p->links[i].retry.data = p; /* peer_handle_closed wants the peer */
        uv_close((uv_handle_t *)&p->links[i].retry, peer_handle_closed);
    }
}

static void link_set_up(struct tp_link *l, bool up)
{
    struct tp_peer *p = l->peer;
    struct ndfs_transport *t = p->t;
    if (l->up == up)
        return;
    l->up = up;
    p->up_links += up ? 1 : -1;
    g_message("link %d to %s %s (%s - %s)", l->index, p->name, up ? "up" : "down",
              l->local[0] ? l->local : "any", l->remote);
    tp_emit(t, p->name, up ? NDFS_LINK_UP : NDFS_LINK_DOWN, l->index);
    if (p->removed || t->closing)
        return;
    if (up && p->up_links == 1)
        tp_emit(t, p->name, NDFS_PEER_UP, -1);
    else if (!up && p->up_links == 0)
        tp_emit(t, p->name, NDFS_PEER_DOWN, -1);
}

static void schedule_dial(struct tp_link *l)
{
    struct tp_peer *p = l->peer;
    if (p->removed || p->t->closing || !p->configured || !l->has_remote || l->blocked || l->cut)
        return;
    uv_timer_start(&l->retry, retry_cb, l->backoff_ms, 0);
    l->backoff_ms = MIN(l->backoff_ms * 2, TP_BACKOFF_MAX_MS);
}

void tp_link_dial(struct tp_link *l)
{
    struct tp_peer *p = l->peer;
    struct ndfs_transport *t = p->t;
    if (t->closing || p->removed || !p->configured || !l->has_remote || l->conn || l->dialing ||
        l->blocked || l->cut || l->index >= p->nlinks || !tp_link_local_ok(l))
        return;
    int rc = tp_conn_dial(t, l, NULL, &l->remote_sa, l->remote);
    if (rc < 0) {
        tp_warn(t, l->remote, "cannot connect link %d to %s: %s", l->index, p->name,
                g_strerror(-rc));
        schedule_dial(l);
    }
}

void tp_dial_failed(struct tp_link *l, int status)
{
    (void)status;
    schedule_dial(l);
}

/* Every frame we send carries the cumulative ack. */
static int peer_write(struct tp_peer *p, struct tp_conn *c, struct ndfs_frame_header *h,
                      uint32_t payload_crc, const uint8_t *control, const uint8_t *data,
                      struct ndfs_tx_msg *ref)
{
    h->ack = ndfs_window_rx_ack(&p->win);
    h->link = (uint16_t)c->link;
    p->win.rx_unacked = 0;
    return tp_conn_write(c, h, payload_crc, control, data, ref);
}

static struct tp_conn *peer_any_conn(struct tp_peer *p)
{
    for (int i = 0; i < p->nlinks; i++) {
        struct tp_conn *c = p->links[(p->rr + (unsigned)i) % (unsigned)p->nlinks].conn;
        if (c && c->state == TP_CONN_OPEN)
            return c;
    }
    return NULL;
}

static void send_ack(struct tp_peer *p, struct tp_conn *c)
{
    uv_timer_stop(&p->ack_timer);
    if (!c || c->state != TP_CONN_OPEN || p->links[c->link].suspect)
        c = tp_peer_pick_conn(p, true);
    if (!c)
        return;
    struct ndfs_frame_header h = {.type = NDFS_FRAME_ACK};
    peer_write(p, c, &h, 0, NULL, NULL, NULL);
}

static void ack_timer_cb(uv_timer_t *timer)
{
    struct tp_peer *p = timer->data;
    if (p->win.rx_unacked)
        send_ack(p, NULL);
}

void tp_peer_pump(struct tp_peer *p)
{
    struct ndfs_transport *t = p->t;
    while (!p->removed && !t->closing && ndfs_window_has_pending(&p->win)) {
        struct tp_conn *best = tp_peer_pick_conn(p, false);
        if (!best)
            return;
        p->rr++;
        struct ndfs_tx_frag *f = ndfs_window_next(&p->win);
        f->link = best->link;
        f->sent_ms = uv_now(t->loop);
        tp_rto_sent(p, best->link);
        struct ndfs_frame_header h = f->h;
        /* on failure the connection closed and its frames, f too, were requeued */
        peer_write(p, best, &h, f->payload_crc, f->control, f->data, f->msg);
    }
}

static void peer_reset(struct tp_peer *p, struct tp_conn *keep)
{
    struct ndfs_transport *t = p->t;
    g_message("peer %s restarted or forgot us: dropping what was queued for it", p->name);
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        struct tp_link *l = &p->links[i];
        if (l->conn && l->conn != keep) {
            struct tp_conn *c = l->conn;
            l->conn = NULL;
            tp_conn_close(c, -ECONNRESET, NULL);
            link_set_up(l, false);
            if (p->removed || t->closing)
                return;
        }
    }
    ndfs_window_reset(&p->win);
    tp_emit(t, p->name, NDFS_PEER_RESET, -1);
}

static void deliver(struct tp_peer *p, GQueue *q)
{
    struct ndfs_transport *t = p->t;
    struct ndfs_message *m;
    while ((m = g_queue_pop_head(q))) {
        if (p->removed || t->closing) {
            ndfs_message_free(m);
            continue;
        }
        g_strlcpy(m->peer, p->name, sizeof m->peer);
        struct tp_channel *ch = m->channel < NDFS_CHANNEL_MAX ? &t->channels[m->channel] : NULL;
        if (!ch || !ch->cb) {
            if (ch && !ch->warned) {
                ch->warned = true;
                if (ch->unregistered)
                    g_message("message from %s on channel %u, whose receiver left: dropped",
                              p->name, m->channel);
                else
                    g_warning("message from %s on channel %u, which has no receiver: dropped",
                              p->name, m->channel);
            }
            ndfs_message_free(m);
            continue;
        }
        ch->cb(t, m, ch->data);
    }
}

/* A frame's cumulative ack; false when it closed c. */
static bool frame_ack(struct tp_conn *c, struct tp_peer *p, const struct ndfs_frame_header *h)
{
    if (ndfs_window_ack(&p->win, h->ack) < 0) {
        /* within one pair of sessions: a peer's new state came with a reset */
        g_autofree char *why =
            g_strdup_printf("acknowledgement of frames never sent (%llu, sent up to %llu)",
                            (unsigned long long)h->ack, (unsigned long long)(p->win.tx_next - 1));
        tp_conn_close(c, -EPROTO, why);
        return false;
    }
    return true;
}

/* After a DATA frame went into the window (rc): ack, deliver. */
static void data_received(struct tp_conn *c, struct tp_peer *p, int rc, GQueue *q)
{
    if (p->win.rx_unacked >= TP_ACK_EVERY)
        send_ack(p, c);
    else if (!uv_is_active((uv_handle_t *)&p->ack_timer))
        uv_timer_start(&p->ack_timer, ack_timer_cb, TP_ACK_DELAY_MS, 0);
    deliver(p, q);
    if (rc < 0 && c->state == TP_CONN_OPEN)
        tp_conn_close(c, -EPROTO,
                      rc == -ENOBUFS  ? "too much data ahead of a missing frame"
                      : rc == -ENOMEM ? "out of memory for a message"
                                      : "fragments out of order");
}

void tp_conn_frame_msg(struct tp_conn *c, const struct ndfs_frame_header *h, struct ndfs_message *m)
{
    struct tp_peer *p = c->peer;
    if (!p || !frame_ack(c, p, h)) {
        ndfs_message_free(m);
        return;
    }
    GQueue q = G_QUEUE_INIT;
    int rc = ndfs_window_receive_msg(&p->win, h, m, &q);
    data_received(c, p, rc, &q);
}

void tp_conn_frame(struct tp_conn *c, const struct ndfs_frame_header *h, const uint8_t *control,
                   const uint8_t *data)
{
    struct tp_peer *p = c->peer;
    if (!frame_ack(c, p, h))
        return;
    switch (h->type) {
    case NDFS_FRAME_DATA: {
        GQueue q = G_QUEUE_INIT;
        int rc = ndfs_window_receive(&p->win, h, control, data, &q);
        data_received(c, p, rc, &q);
        break;
    }
    case NDFS_FRAME_PING: {
        struct ndfs_frame_header pong = {.type = NDFS_FRAME_PONG, .request_id = h->request_id};
        peer_write(p, c, &pong, 0, NULL, NULL, NULL);
        break;
    }
    case NDFS_FRAME_PONG: {
        uint64_t now_us = uv_hrtime() / 1000;
        struct tp_link *l = &p->links[c->link];
        if (h->request_id <= now_us && now_us - h->request_id < 60000000) {
            uint32_t rtt = (uint32_t)(now_us - h->request_id);
            l->srtt_us = l->srtt_us ? (uint32_t)(((uint64_t)l->srtt_us * 7 + rtt) / 8) : rtt;
        }
        tp_link_pong(l, h->request_id);
        break;
    }
    default:
        break;
    }
}

/* Also while closing, with -ECANCELED: the caller may own data to free. */
void tp_probe_done(struct tp_probe *probe, int status, const char *peer)
{
    struct ndfs_transport *t = probe->t;
    ndfs_transport_probe_cb cb = probe->cb;
    void *data = probe->data;
    g_free(probe);
    cb(t, status, peer, data);
}

static void set_link_remote(struct tp_link *l, const char *addr, const struct sockaddr_in *sa)
{
    g_strlcpy(l->remote, addr, sizeof l->remote);
    if (sa) {
        l->remote_sa = *sa;
        l->has_remote = true;
    } else {
        l->has_remote = false;
    }
}

void tp_conn_authenticated(struct tp_conn *c)
{
    struct ndfs_transport *t = c->t;
    const char *name = c->hello.name;
    struct tp_probe *probe = c->probe;
    int status = 0;
    c->probe = NULL;
    uv_timer_stop(&c->timer);
    struct tp_peer *p = tp_peer_find(t, name);
    if (!p) {
        p = peer_new(t, name, probe != NULL);
        if (probe) {
            struct sockaddr_in sa;
            if (tp_parse_addr(probe->address, &sa) == 0)
                set_link_remote(&p->links[0], probe->address, &sa);
            p->nlinks = 1;
        }
    } else if (probe && !p->configured) {
        struct sockaddr_in sa;
        p->configured = true;
        if (tp_parse_addr(probe->address, &sa) == 0)
            set_link_remote(&p->links[0], probe->address, &sa);
        p->nlinks = MAX(p->nlinks, 1);
    }
    if (c->link < 0 || c->link >= NDFS_TRANSPORT_MAX_LINKS) {
        status = -EPROTO;
        tp_conn_close(c, status, "no link for this connection");
        goto out;
    }
    if (c->link >= p->nlinks) {
        if (p->configured) {
            status = -EPROTO;
            tp_conn_close(c, status, "link not configured for this peer");
            goto out;
        }
        p->nlinks = c->link + 1;
    }
    struct tp_link *l = &p->links[c->link];
    if (c->outgoing && l->dialing == c)
        l->dialing = NULL;
    if (!l->has_remote)
        g_strlcpy(l->remote, c->addr, sizeof l->remote);
    if (l->blocked || l->cut) {
        status = -ECONNREFUSED;
        tp_conn_close(c, status, NULL);
        goto out;
    }
    if (c->outgoing && c->sent_session != p->session) {
        /* we told the peer a state of ours that is gone since */
        status = -ECONNABORTED;
        tp_conn_close(c, status, NULL);
        if (!p->removed && !t->closing)
            schedule_dial(l);
        goto out;
    }
    if (p->peer_session && p->peer_session != c->hello.incarnation) {
        peer_reset(p, NULL);
        if (p->removed || t->closing || c->state == TP_CONN_CLOSING) {
            status = -ECONNABORTED;
            goto out;
        }
    }
    p->peer_session = c->hello.incarnation;
    if (l->dialing && strcmp(p->name, t->name) < 0) {
        /* the peer's connection wins over ours anyway */
        tp_conn_close(l->dialing, -ECONNABORTED, NULL);
        if (p->removed || t->closing || c->state == TP_CONN_CLOSING) {
            status = -ECONNABORTED;
            goto out;
        }
    }
    struct tp_conn *old = l->conn;
    if (old) {
        /* both ends keep the connection opened by the smaller name (or the
         * newer one when both came from the same end: the old one is stale) */
        const char *opener_new = c->outgoing ? t->name : p->name;
        const char *opener_old = old->outgoing ? t->name : p->name;
        if (strcmp(opener_new, opener_old) > 0) {
            tp_conn_close(c, 0, NULL);
            goto out;
        }
        l->conn = NULL;
        ndfs_window_requeue_link(&p->win, l->index);
        tp_conn_close(old, -ECONNABORTED, NULL);
    }
    c->state = TP_CONN_OPEN;
    c->peer = p;
    l->conn = c;
    l->suspect = false; /* a new connection starts clean */
    l->backoff_ms = TP_BACKOFF_MIN_MS;
    uv_timer_stop(&l->retry);
    l->last_frame = uv_now(t->loop);
    if (!old)
        link_set_up(l, true);
    if (probe) {
        tp_probe_done(probe, 0, p->name);
        probe = NULL;
    }
    if (c->state == TP_CONN_OPEN && c->peer && !c->peer->removed) {
        tp_peer_pump(p);
        if (p->win.rx_unacked)
            send_ack(p, c);
    }
out:
    if (probe)
        tp_probe_done(probe, status, status ? NULL : name);
}

void tp_conn_detached(struct tp_conn *c, struct tp_peer *p, int link)
{
    struct ndfs_transport *t = p->t;
    struct tp_link *l = &p->links[link];
    if (l->conn != c)
        return;
    l->conn = NULL;
    l->suspect = false;
    if (p->removed || t->closing)
        return;
    ndfs_window_requeue_link(&p->win, link);
    p->down_since = uv_now(t->loop);
    link_set_up(l, false);
    if (p->removed || t->closing)
        return;
    schedule_dial(l);
    tp_peer_pump(p);
}

static void tick_cb(uv_timer_t *timer)
{
    struct ndfs_transport *t = timer->data;
    uint64_t now = uv_now(t->loop);
    if (t->frozen)
        return;
    GList *conns = g_hash_table_get_keys(t->conns);
    for (GList *it = conns; it && !t->closing; it = it->next) {
        struct tp_conn *c = it->data;
        if (c->state != TP_CONN_OPEN)
            continue;
        if (now - c->last_rx > t->fail_ms) {
            g_autofree char *why = g_strdup_printf("nothing heard for %llu ms",
                                                   (unsigned long long)(now - c->last_rx));
            tp_conn_close(c, -ETIMEDOUT, why);
        } else if (c->peer) {
            tp_link_check_silence(&c->peer->links[c->link], now);
            if (c->state != TP_CONN_OPEN || !c->peer)
                continue;
            /* on busy links too: RTT (hence RTO) known everywhere, acks on
             * every link, and a PONG clears a suspect link */
            struct ndfs_frame_header h = {.type = NDFS_FRAME_PING,
                                          .request_id = uv_hrtime() / 1000};
            peer_write(c->peer, c, &h, 0, NULL, NULL, NULL);
        }
    }
    g_list_free(conns);
    if (t->closing)
        return;
    tp_heartbeat_send(t);
    /* forget dynamic peers (mounts) long gone */
    GHashTableIter hi;
    gpointer v;
    g_hash_table_iter_init(&hi, t->peers);
    while (g_hash_table_iter_next(&hi, NULL, &v)) {
        struct tp_peer *p = v;
        if (!p->configured && p->up_links == 0 && now - p->down_since > TP_DYNAMIC_TTL_MS) {
            g_hash_table_iter_steal(&hi);
            peer_destroy(p);
        }
    }
}

int ndfs_transport_new(uv_loop_t *loop, const struct ndfs_transport_config *cfg,
                       struct ndfs_transport **out, char **errmsg)
{
    if (!ndfs_auth_name_valid(cfg->name)) {
        *errmsg = g_strdup_printf("bad endpoint name \"%s\": use 1 to %d of A-Z a-z 0-9 . _ -",
                                  cfg->name ? cfg->name : "", NDFS_TRANSPORT_NAME_MAX);
        return -EINVAL;
    }
    if (!cfg->key || cfg->key_len < NDFS_TRANSPORT_KEY_MIN) {
        *errmsg = g_strdup_printf("cluster key too short: %zu bytes, at least %d needed",
                                  cfg->key ? cfg->key_len : 0, NDFS_TRANSPORT_KEY_MIN);
        return -EINVAL;
    }
    struct ndfs_transport *t = g_new0(struct ndfs_transport, 1);
    for (int i = 0; cfg->listen && cfg->listen[i]; i++) {
        if (i >= NDFS_TRANSPORT_MAX_LINKS) {
            *errmsg = g_strdup_printf("more than %d listen addresses", NDFS_TRANSPORT_MAX_LINKS);
            g_free(t);
            return -EINVAL;
        }
        if (tp_parse_addr(cfg->listen[i], &t->listen_sa[i]) < 0 ||
            strlen(cfg->listen[i]) >= TP_ADDR_MAX) {
            *errmsg =
                g_strdup_printf("bad listen address \"%s\": expected IPv4:port", cfg->listen[i]);
            g_free(t);
            return -EINVAL;
        }
        g_strlcpy(t->listen_str[i], cfg->listen[i], TP_ADDR_MAX);
        t->nlisten = i + 1;
    }
    int rc = ndfs_auth_random(&t->incarnation, sizeof t->incarnation);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot get random bytes: %s", g_strerror(-rc));
        g_free(t);
        return rc;
    }
    t->incarnation |= 1; /* never 0, which means "unknown" */
    t->loop = loop;
    g_strlcpy(t->name, cfg->name, sizeof t->name);
    t->key = g_memdup2(cfg->key, cfg->key_len);
    t->key_len = cfg->key_len;
    t->hb_ms = cfg->heartbeat_interval_ms ? cfg->heartbeat_interval_ms : DEFAULT_HB_MS;
    t->fail_ms = cfg->failure_timeout_ms ? cfg->failure_timeout_ms : DEFAULT_FAIL_MS;
    t->max_message = cfg->max_message ? cfg->max_message : DEFAULT_MAX_MESSAGE;
    t->stripe_size = cfg->stripe_size ? cfg->stripe_size : DEFAULT_STRIPE;
    t->max_queued = cfg->max_queued ? cfg->max_queued : DEFAULT_MAX_QUEUED;
    if (t->max_message > UINT32_MAX / 2)
        t->max_message = UINT32_MAX / 2;
    t->peers = g_hash_table_new(g_str_hash, g_str_equal);
    t->conns = g_hash_table_new(g_direct_hash, g_direct_equal);
    t->warned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    uv_timer_init(loop, &t->tick);
    t->tick.data = t;
    t->handles++;
    uv_timer_start(&t->tick, tick_cb, t->hb_ms, t->hb_ms);
    *out = t;
    return 0;
}

int ndfs_transport_start(struct ndfs_transport *t, char **errmsg)
{
    if (t->started)
        return -EALREADY;
    t->started = true;
    return tp_listen_start(t, errmsg);
}

void ndfs_transport_close(struct ndfs_transport *t, void (*cb)(void *data), void *data)
{
    if (t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_data = data;
    GList *conns = g_hash_table_get_keys(t->conns);
    for (GList *it = conns; it; it = it->next)
        tp_conn_close(it->data, -ECANCELED, NULL);
    g_list_free(conns);
    GHashTableIter hi;
    gpointer v;
    g_hash_table_iter_init(&hi, t->peers);
    while (g_hash_table_iter_next(&hi, NULL, &v)) {
        g_hash_table_iter_steal(&hi);
        peer_destroy(v);
    }
    tp_listen_close_all(t);
    uv_close((uv_handle_t *)&t->tick, tp_handle_closed);
}

const char *ndfs_transport_name(const struct ndfs_transport *t)
{
    return t->name;
}

int ndfs_transport_peer_set(struct ndfs_transport *t, const char *name,
                            const char *const *addresses)
{
    if (!ndfs_auth_name_valid(name) || strcmp(name, t->name) == 0 || !addresses)
        return -EINVAL;
    struct sockaddr_in sa[NDFS_TRANSPORT_MAX_LINKS];
    int n = 0, any = 0;
    for (; addresses[n]; n++) {
        if (n >= NDFS_TRANSPORT_MAX_LINKS)
            return -EINVAL;
        if (!addresses[n][0])
            continue; /* no link with this index */
        if (strlen(addresses[n]) >= TP_ADDR_MAX || tp_parse_addr(addresses[n], &sa[n]) < 0)
            return -EINVAL;
        any++;
    }
    if (any == 0)
        return -EINVAL;
    struct tp_peer *p = tp_peer_find(t, name);
    if (!p)
        p = peer_new(t, name, true);
    p->configured = true;
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        struct tp_link *l = &p->links[i];
        bool has = i < n && addresses[i][0];
        if (has && l->has_remote && strcmp(l->remote, addresses[i]) == 0)
            continue;
        /* a new, changed or removed address: a connection we opened went
         * elsewhere, and a removed link keeps none */
        if (l->dialing)
            tp_conn_close(l->dialing, -ECONNABORTED, NULL);
        if (l->conn && (l->conn->outgoing || !has))
            tp_conn_close(l->conn, -ECONNABORTED, NULL);
        if (p->removed || t->closing)
            return 0;
        uv_timer_stop(&l->retry);
        l->backoff_ms = TP_BACKOFF_MIN_MS;
        if (has)
            set_link_remote(l, addresses[i], &sa[i]);
        else
            set_link_remote(l, "", NULL);
    }
    p->nlinks = n;
    for (int i = 0; i < n; i++) {
        struct tp_link *l = &p->links[i];
        /* both ends keep the connection opened by the smaller name: the
         * larger one waits a little so that one usually comes first */
        if (t->nlisten > 0 && strcmp(t->name, p->name) > 0 && !l->conn && !l->dialing)
            uv_timer_start(&l->retry, retry_cb, TP_DIAL_DEFER_MS, 0);
        else
            tp_link_dial(l);
    }
    return 0;
}

int ndfs_transport_peer_remove(struct ndfs_transport *t, const char *name)
{
    struct tp_peer *p = tp_peer_find(t, name);
    if (!p)
        return -ENOENT;
    g_hash_table_remove(t->peers, name);
    peer_destroy(p);
    return 0;
}

int ndfs_transport_probe(struct ndfs_transport *t, const char *address, ndfs_transport_probe_cb cb,
                         void *data)
{
    struct sockaddr_in sa;
    if (!address || strlen(address) >= TP_ADDR_MAX || tp_parse_addr(address, &sa) < 0 || !cb)
        return -EINVAL;
    struct tp_probe *probe = g_new0(struct tp_probe, 1);
    probe->t = t;
    probe->cb = cb;
    probe->data = data;
    g_strlcpy(probe->address, address, sizeof probe->address);
    int rc = tp_conn_dial(t, NULL, probe, &sa, address);
    if (rc < 0)
        g_free(probe);
    return rc;
}

int ndfs_transport_register(struct ndfs_transport *t, uint16_t channel, ndfs_transport_recv_cb cb,
                            void *data)
{
    if (channel == 0 || channel >= NDFS_CHANNEL_MAX || !cb)
        return -EINVAL;
    if (t->channels[channel].cb)
        return -EEXIST;
    t->channels[channel].cb = cb;
    t->channels[channel].data = data;
    return 0;
}

int ndfs_transport_unregister(struct ndfs_transport *t, uint16_t channel)
{
    if (channel == 0 || channel >= NDFS_CHANNEL_MAX)
        return -EINVAL;
    struct tp_channel *ch = &t->channels[channel];
    if (!ch->cb)
        return -ENOENT;
    *ch = (struct tp_channel){.unregistered = true};
    return 0;
}

void ndfs_transport_release(struct ndfs_transport *t, struct ndfs_message *msg)
{
    (void)t;
    ndfs_message_free(msg); /* one block: the message, its control and data */
}

int ndfs_transport_send(struct ndfs_transport *t, const char *peer, uint16_t channel,
                        uint64_t request_id, uint64_t epoch, const void *control,
                        size_t control_len, const void *data, size_t data_len)
{
    struct tp_peer *p = tp_peer_find(t, peer);
    if (!p)
        return -ENOENT;
    if (channel == 0 || channel >= NDFS_CHANNEL_MAX)
        return -EINVAL;
    int rc = ndfs_window_queue(&p->win, channel, request_id, epoch, control, control_len, data,
                               data_len);
    if (rc < 0)
        return rc;
    tp_peer_pump(p);
    return 0;
}

static int send_borrowed(struct ndfs_transport *t, const char *peer, uint16_t channel,
                         uint64_t request_id, uint64_t epoch, const void *control,
                         size_t control_len, const void *data, size_t data_len,
                         const uint32_t *data_crc, unsigned flags, void (*release)(void *arg),
                         void *release_arg)
{
    struct tp_peer *p = tp_peer_find(t, peer);
    if (!p)
        return -ENOENT;
    if (channel == 0 || channel >= NDFS_CHANNEL_MAX || !release || (flags & ~NDFS_SEND_WHOLE))
        return -EINVAL;
    int rc = ndfs_window_queue_borrowed(&p->win, channel, request_id, epoch, control, control_len,
                                        data, data_len, (flags & NDFS_SEND_WHOLE) != 0, data_crc,
                                        release, release_arg);
    if (rc < 0)
        return rc;
    tp_peer_pump(p);
    return 0;
}

int ndfs_transport_send_borrowed(struct ndfs_transport *t, const char *peer, uint16_t channel,
                                 uint64_t request_id, uint64_t epoch, const void *control,
                                 size_t control_len, const void *data, size_t data_len,
                                 unsigned flags, void (*release)(void *arg), void *release_arg)
{
    return send_borrowed(t, peer, channel, request_id, epoch, control, control_len, data, data_len,
                         NULL, flags, release, release_arg);
}

int ndfs_transport_send_borrowed_crc(struct ndfs_transport *t, const char *peer, uint16_t channel,
                                     uint64_t request_id, uint64_t epoch, const void *control,
                                     size_t control_len, const void *data, size_t data_len,
                                     uint32_t data_crc, unsigned flags, void (*release)(void *arg),
                                     void *release_arg)
{
    if (!(flags & NDFS_SEND_WHOLE))
        return -EINVAL;
    return send_borrowed(t, peer, channel, request_id, epoch, control, control_len, data, data_len,
                         &data_crc, flags, release, release_arg);
}

uint32_t ndfs_transport_data_crc(const void *data, size_t data_len)
{
    return ndfs_crc32c(0, data, data_len);
}

void ndfs_transport_set_event_cb(struct ndfs_transport *t, ndfs_transport_event_cb cb, void *data)
{
    t->event_cb = cb;
    t->event_data = data;
}

bool ndfs_transport_peer_up(struct ndfs_transport *t, const char *peer)
{
    struct tp_peer *p = tp_peer_find(t, peer);
    return p && p->up_links > 0;
}

int ndfs_transport_foreach_link(struct ndfs_transport *t,
                                int (*fn)(const struct ndfs_link_info *li, void *data), void *data)
{
    uint64_t now = uv_now(t->loop);
    GHashTableIter hi;
    gpointer v;
    g_hash_table_iter_init(&hi, t->peers);
    while (g_hash_table_iter_next(&hi, NULL, &v)) {
        struct tp_peer *p = v;
        if (!p->configured && !peer_any_conn(p))
            continue; /* a dynamic peer that left (a mount, a removed node) */
        for (int i = 0; i < p->nlinks; i++) {
            struct tp_link *l = &p->links[i];
            uint64_t heard = MAX(l->last_frame, l->last_udp);
            struct ndfs_link_info li = {
                .peer = p->name,
                .index = i,
                .local = l->local,
                .remote = l->remote,
                .up = l->up,
                .connected = l->conn != NULL,
                .rtt_us = l->srtt_us,
                .bytes_sent = l->bytes_sent,
                .bytes_received = l->bytes_received,
                .last_heard_ms_ago = heard ? now - heard : UINT64_MAX,
            };
            int rc = fn(&li, data);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int ndfs__transport_block_link(struct ndfs_transport *t, const char *peer, int link, bool blocked)
{
    struct tp_peer *p = tp_peer_find(t, peer);
    if (!p || link < 0 || link >= p->nlinks)
        return -ENOENT;
    struct tp_link *l = &p->links[link];
    l->blocked = blocked;
    if (blocked) {
        uv_timer_stop(&l->retry);
        if (l->dialing)
            tp_conn_close(l->dialing, -ECONNABORTED, NULL);
        if (l->conn)
            tp_conn_close(l->conn, -ECONNABORTED, NULL);
    } else {
        l->backoff_ms = TP_BACKOFF_MIN_MS;
        tp_link_dial(l);
    }
    return 0;
}

int ndfs__transport_freeze(struct ndfs_transport *t, bool frozen)
{
    t->frozen = frozen;
    GList *conns = g_hash_table_get_keys(t->conns);
    for (GList *it = conns; it; it = it->next) {
        struct tp_conn *c = it->data;
        if (c->state == TP_CONN_CLOSING || c->state == TP_CONN_CONNECTING)
            continue;
        if (frozen)
            uv_read_stop((uv_stream_t *)&c->tcp);
        else
            tp_conn_start_reading(c);
    }
    g_list_free(conns);
    return 0;
}
