/* Retransmission timeout per link. A frame not acknowledged within its
 * link's RTO is resent over another link (the receiver drops duplicates)
 * and the link becomes suspect: no new frames go there until a PONG shows
 * it carries traffic both ways again. A silent cut (no FIN, no RST) thus
 * costs about one RTO instead of the failure timeout; the link itself still
 * goes down only after the failure timeout, so `link list` keeps its
 * meaning. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>

#include "transport_private.h"

unsigned tp_link_rto_ms(const struct tp_link *l)
{
    const struct ndfs_transport *t = l->peer->t;
    unsigned srtt4 = (unsigned)MIN(((uint64_t)l->srtt_us * 4 + 999) / 1000, UINT32_MAX);
    unsigned rto = MAX(MAX(2 * t->hb_ms, srtt4), TP_RTO_MIN_MS);
    /* well inside the failure timeout: a resend must beat the peer's verdict */
    return MIN(rto, MAX(t->fail_ms / 3, 1u));
}

static bool conn_open(const struct tp_conn *c)
{
    return c && c->state == TP_CONN_OPEN;
}

struct tp_conn *tp_peer_pick_conn(struct tp_peer *p, bool for_ack)
{
    struct tp_conn *best = NULL;
    bool best_suspect = true;
    for (int k = 0; k < p->nlinks; k++) {
        struct tp_link *l = &p->links[(p->rr + (unsigned)k) % (unsigned)p->nlinks];
        struct tp_conn *c = l->conn;
        if (!conn_open(c) || (!for_ack && c->inflight >= TP_LINK_INFLIGHT))
            continue;
        bool better;
        if (!best || l->suspect != best_suspect)
            better = !best || !l->suspect;
        else if (for_ack)
            better = c->last_rx > best->last_rx;
        else
            better = c->inflight < best->inflight; /* ties go round-robin */
        if (better) {
            best = c;
            best_suspect = l->suspect;
        }
    }
    return best;
}

/* Is there an open link other than skip that is not suspect? */
static bool peer_has_other_link(struct tp_peer *p, int skip)
{
    for (int i = 0; i < p->nlinks; i++)
        if (i != skip && conn_open(p->links[i].conn) && !p->links[i].suspect)
            return true;
    return false;
}

/* Starts the timer for the earliest deadline of what is in flight. */
static void rto_arm(struct tp_peer *p, uint64_t now)
{
    uint64_t oldest[NDFS_TRANSPORT_MAX_LINKS];
    uint64_t delay = UINT64_MAX;
    ndfs_window_oldest_in_flight(&p->win, p->nlinks, oldest);
    for (int i = 0; i < p->nlinks; i++) {
        if (oldest[i] == UINT64_MAX)
            continue;
        unsigned rto = tp_link_rto_ms(&p->links[i]);
        uint64_t due = oldest[i] + rto;
        /* overdue and left where it is (nowhere better): look again later */
        delay = MIN(delay, due > now ? due - now : rto);
    }
    if (delay == UINT64_MAX)
        uv_timer_stop(&p->rto_timer);
    else
        uv_timer_start(&p->rto_timer, tp_rto_timer_cb, delay, 0);
}

void tp_rto_sent(struct tp_peer *p, int link)
{
    if (!uv_is_active((uv_handle_t *)&p->rto_timer))
        uv_timer_start(&p->rto_timer, tp_rto_timer_cb, tp_link_rto_ms(&p->links[link]), 0);
}

/* Makes link i suspect and resends what is in flight on it elsewhere;
 * false when there is nowhere else (resending on it would only add load). */
static bool link_suspect(struct tp_peer *p, int i, const char *why, unsigned long long ms)
{
    struct tp_link *l = &p->links[i];
    if (!peer_has_other_link(p, i))
        return false;
    unsigned n = ndfs_window_requeue_link(&p->win, i);
    if (!l->suspect) {
        l->suspect = true;
        l->suspect_us = uv_hrtime() / 1000;
        g_message("link %d to %s suspect: %s for %llu ms (RTO %u ms), %u frame(s) resent on "
                  "another link",
                  i, p->name, why, ms, tp_link_rto_ms(l), n);
    }
    return n > 0;
}

void tp_link_check_silence(struct tp_link *l, uint64_t now)
{
    struct tp_conn *c = l->conn;
    /* the peer PINGs every heartbeat: silence past the RTO means trouble,
     * also for an end that only acknowledges */
    if (l->suspect || !conn_open(c) || now - c->last_rx < tp_link_rto_ms(l))
        return;
    if (link_suspect(l->peer, l->index, "nothing heard", (unsigned long long)(now - c->last_rx)))
        tp_peer_pump(l->peer);
}

void tp_rto_timer_cb(uv_timer_t *timer)
{
    struct tp_peer *p = timer->data;
    struct ndfs_transport *t = p->t;
    if (p->removed || t->closing)
        return;
    uint64_t now = uv_now(t->loop);
    uint64_t oldest[NDFS_TRANSPORT_MAX_LINKS];
    ndfs_window_oldest_in_flight(&p->win, p->nlinks, oldest);
    bool moved = false;
    for (int i = 0; i < p->nlinks; i++) {
        struct tp_link *l = &p->links[i];
        unsigned rto = tp_link_rto_ms(l);
        if (oldest[i] == UINT64_MAX || now - oldest[i] < rto)
            continue;
        if (link_suspect(p, i, "a frame unacknowledged", (unsigned long long)(now - oldest[i])))
            moved = true;
    }
    if (moved)
        tp_peer_pump(p);
    if (!p->removed && !t->closing)
        rto_arm(p, uv_now(t->loop));
}

void tp_link_pong(struct tp_link *l, uint64_t sent_us)
{
    struct tp_peer *p = l->peer;
    /* a PING from before the link became suspect proves nothing */
    if (!l->suspect || sent_us < l->suspect_us)
        return;
    l->suspect = false;
    g_message("link %d to %s carries traffic again", l->index, p->name);
    tp_peer_pump(p);
}

int ndfs__transport_cut_link(struct ndfs_transport *t, const char *peer, int link, bool cut)
{
    struct tp_peer *p = tp_peer_find(t, peer);
    if (!p || link < 0 || link >= p->nlinks)
        return -ENOENT;
    struct tp_link *l = &p->links[link];
    l->cut = cut;
    if (cut) {
        uv_timer_stop(&l->retry);
        if (l->dialing)
            tp_conn_close(l->dialing, -ECONNABORTED, NULL);
        if (l->conn)
            uv_read_stop((uv_stream_t *)&l->conn->tcp);
    } else if (l->conn) {
        tp_conn_start_reading(l->conn);
    } else {
        l->backoff_ms = TP_BACKOFF_MIN_MS;
        tp_link_dial(l);
    }
    return 0;
}
