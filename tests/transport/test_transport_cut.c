/* A silent cut of one of two links (bytes stop, the socket stays open)
 * while messages stream both ways, over real loopback TCP: every message
 * arrives once and in order, the longest pause between deliveries stays
 * under half the failure timeout (frames are resent on the other link after
 * an RTO), the link is reported down only after the failure timeout, and a
 * link that works again carries traffic again. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "ndfs/transport.h"
#include "transport/transport_private.h"

#define DEADLINE_MS 30000
#define HB_MS       50
#define FAIL_MS     1000

struct node {
    struct ndfs_transport *t;
    char name[8];
    char addr[2][32];
    uint64_t sent, next, received; /* message ids, to and from the other node */
    uint64_t last_us, max_gap_us;  /* deliveries */
    char bad[256];
    int link_down[2], peer_down;
    uint64_t down_us[2];
    bool closed;
};

static uv_loop_t loop;
static struct node N[3];
static uint8_t key[32];

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until cond(arg) holds; false on the deadline. */
static bool run_until(bool (*cond)(void *), void *arg, unsigned ms)
{
    uv_timer_t deadline;
    bool expired = false;
    uv_timer_init(&loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, ms, 0);
    while (!cond(arg) && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return cond(arg);
}

static size_t msg_len(uint64_t id)
{
    /* every 25th is striped over both links */
    return id % 25 == 24 ? 600u << 10 : 1000 + (size_t)(id % 7) * 3000;
}

static void on_message(struct ndfs_transport *t, struct ndfs_message *m, void *data)
{
    struct node *n = data;
    uint64_t id = m->request_id, now = now_us();
    if (!n->bad[0] && id != n->next)
        snprintf(n->bad, sizeof n->bad, "%s: got id %llu, expected %llu", n->name,
                 (unsigned long long)id, (unsigned long long)n->next);
    if (!n->bad[0] && m->data_len != msg_len(id))
        snprintf(n->bad, sizeof n->bad, "%s: message %llu has %zu bytes", n->name,
                 (unsigned long long)id, m->data_len);
    for (size_t i = 0; !n->bad[0] && i < m->data_len; i += 997)
        if (m->data[i] != (uint8_t)(id + i))
            snprintf(n->bad, sizeof n->bad, "%s: message %llu corrupt", n->name,
                     (unsigned long long)id);
    if (n->last_us && now - n->last_us > n->max_gap_us)
        n->max_gap_us = now - n->last_us;
    n->last_us = now;
    n->next = id + 1;
    n->received++;
    ndfs_transport_release(t, m);
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)peer;
    struct node *n = data;
    if (ev == NDFS_LINK_DOWN && link >= 0 && link < 2) {
        n->link_down[link]++;
        n->down_us[link] = now_us();
    }
    if (ev == NDFS_PEER_DOWN)
        n->peer_down++;
}

static void send_one(int from)
{
    struct node *n = &N[from];
    uint64_t id = n->sent;
    size_t len = msg_len(id);
    uint8_t *buf = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(id + i);
    int rc = ndfs_transport_send(n->t, N[3 - from].name, NDFS_CHANNEL_IO, id, 0, &id, 8, buf, len);
    g_free(buf);
    cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
    n->sent++;
}

static uv_timer_t stream_timer;
static void stream_cb(uv_timer_t *timer)
{
    (void)timer;
    send_one(1);
    send_one(2);
}

static void node_closed(void *data)
{
    ((struct node *)data)->closed = true;
}
static bool is_closed(void *arg)
{
    return ((struct node *)arg)->closed;
}

static int node_create(int i, int port, char **err)
{
    struct node *n = &N[i];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "n%d", i);
    const char *listen[3] = {n->addr[0], n->addr[1], NULL};
    for (int l = 0; l < 2; l++)
        snprintf(n->addr[l], sizeof n->addr[l], "127.0.%d.%d:%d", l + 1, i, port);
    struct ndfs_transport_config cfg = {
        .name = n->name,
        .listen = listen,
        .key = key,
        .key_len = sizeof key,
        .heartbeat_interval_ms = HB_MS,
        .failure_timeout_ms = FAIL_MS,
    };
    int rc = ndfs_transport_new(&loop, &cfg, &n->t, err);
    if (rc < 0)
        return rc;
    ndfs_transport_set_event_cb(n->t, on_event, n);
    cr_assert_eq(ndfs_transport_register(n->t, NDFS_CHANNEL_IO, on_message, n), 0);
    rc = ndfs_transport_start(n->t, err);
    if (rc < 0) {
        ndfs_transport_close(n->t, node_closed, n);
        cr_assert(run_until(is_closed, n, DEADLINE_MS));
        n->t = NULL;
    }
    return rc;
}

struct link_q {
    int node, link;
    bool up;
    uint32_t rtt_us;
    uint64_t sent;
};
static int find_link(const struct ndfs_link_info *li, void *data)
{
    struct link_q *q = data;
    if (li->index == q->link) {
        q->up = li->up;
        q->rtt_us = li->rtt_us;
        q->sent = li->bytes_sent;
    }
    return 0;
}
static struct link_q link_query(int node, int link)
{
    struct link_q q = {node, link, false, 0, 0};
    ndfs_transport_foreach_link(N[node].t, find_link, &q);
    return q;
}
static bool links_up(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 2; i++)
        for (int l = 0; l < 2; l++)
            if (!link_query(i, l).up)
                return false;
    return true;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    memset(key, 0x5a, sizeof key);
    cr_assert_eq(uv_loop_init(&loop), 0);
    for (int attempt = 0;; attempt++) {
        cr_assert_lt(attempt, 20, "no free port");
        int port = 20000 + (int)((getpid() * 11 + attempt * 977) % 30000);
        char *err = NULL;
        if (node_create(1, port, &err) < 0) {
            g_free(err);
            continue;
        }
        if (node_create(2, port, &err) == 0)
            break;
        g_free(err);
        ndfs_transport_close(N[1].t, node_closed, &N[1]);
        cr_assert(run_until(is_closed, &N[1], DEADLINE_MS));
    }
    const char *a1[3] = {N[1].addr[0], N[1].addr[1], NULL};
    const char *a2[3] = {N[2].addr[0], N[2].addr[1], NULL};
    cr_assert_eq(ndfs_transport_peer_set(N[1].t, "n2", a2), 0);
    cr_assert_eq(ndfs_transport_peer_set(N[2].t, "n1", a1), 0);
    cr_assert(run_until(links_up, NULL, DEADLINE_MS), "links not up");
    uv_timer_init(&loop, &stream_timer);
}

static void teardown(void)
{
    uv_close((uv_handle_t *)&stream_timer, NULL);
    for (int i = 1; i <= 2; i++) {
        ndfs_transport_close(N[i].t, node_closed, &N[i]);
        cr_assert(run_until(is_closed, &N[i], DEADLINE_MS));
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

TestSuite(cut, .init = setup, .fini = teardown);

struct count_want {
    uint64_t n;
};
static bool received_both(void *arg)
{
    uint64_t n = ((struct count_want *)arg)->n;
    return (N[1].received >= n && N[2].received >= n) || N[1].bad[0] || N[2].bad[0];
}
static void wait_received(uint64_t n)
{
    struct count_want w = {n};
    cr_assert(run_until(received_both, &w, DEADLINE_MS), "n1 got %llu, n2 got %llu of %llu",
              (unsigned long long)N[1].received, (unsigned long long)N[2].received,
              (unsigned long long)n);
    cr_assert_eq(N[1].bad[0], 0, "%s", N[1].bad);
    cr_assert_eq(N[2].bad[0], 0, "%s", N[2].bad);
}

/* Streams until count more messages each way arrived. */
static void stream(uint64_t count)
{
    wait_received(MAX(N[1].received, N[2].received) + count);
}

static void start_stream(void)
{
    uv_timer_start(&stream_timer, stream_cb, 5, 5);
    stream(50);
    N[1].max_gap_us = N[2].max_gap_us = 0; /* from now on */
}

/* Stops streaming; everything sent arrives exactly once, in order, with no
 * pause of half the failure timeout. */
static void finish_stream(void)
{
    uv_timer_stop(&stream_timer);
    wait_received(N[1].sent);
    cr_assert_eq(N[1].received, N[2].sent, "n1 got %llu of %llu", (unsigned long long)N[1].received,
                 (unsigned long long)N[2].sent);
    cr_assert_eq(N[2].received, N[1].sent, "n2 got %llu of %llu", (unsigned long long)N[2].received,
                 (unsigned long long)N[1].sent);
    for (int i = 1; i <= 2; i++) {
        cr_log_info("n%d: %llu messages, longest pause %llu ms", i,
                    (unsigned long long)N[i].received, (unsigned long long)N[i].max_gap_us / 1000);
        cr_assert_lt(N[i].max_gap_us, FAIL_MS * 1000 / 2, "n%d paused %llu ms", i,
                     (unsigned long long)N[i].max_gap_us / 1000);
    }
}

static bool elapsed(void *arg)
{
    return now_us() >= *(uint64_t *)arg;
}

static bool link1_down(void *arg)
{
    (void)arg;
    return N[1].link_down[1] > 0;
}

static bool link1_carries(void *arg)
{
    struct link_q *before = arg;
    return link_query(before->node, 1).sent > before->sent + (1u << 20);
}

/* n1 sends over link 1 again (after it was cut), more than a MiB. */
static void assert_link1_used_again(void)
{
    struct link_q before = link_query(1, 1);
    uv_timer_start(&stream_timer, stream_cb, 5, 5);
    cr_assert(run_until(link1_carries, &before, DEADLINE_MS), "link 1 carries nothing again");
    uv_timer_stop(&stream_timer);
}

Test(cut, a_silent_cut_past_the_failure_timeout_loses_nothing_and_pauses_briefly)
{
    start_stream();
    uint64_t cut_us = now_us();
    cr_assert_eq(ndfs__transport_cut_link(N[1].t, "n2", 1, true), 0);
    cr_assert(run_until(link1_down, NULL, DEADLINE_MS), "link 1 never reported down");
    uint64_t after_ms = (N[1].down_us[1] - cut_us) / 1000;
    cr_log_info("link 1 reported down %llu ms after the cut", (unsigned long long)after_ms);
    cr_assert_geq(after_ms, FAIL_MS - HB_MS, "down %llu ms after the cut: before the timeout",
                  (unsigned long long)after_ms);
    cr_assert(link_query(1, 0).up && link_query(2, 0).up, "link 0 went down too");
    cr_assert_eq(N[1].peer_down + N[2].peer_down, 0, "the peer went down");
    stream(100);
    cr_assert_eq(ndfs__transport_cut_link(N[1].t, "n2", 1, false), 0);
    cr_assert(run_until(links_up, NULL, DEADLINE_MS), "link 1 not up again");
    stream(50);
    finish_stream();
    assert_link1_used_again();
    finish_stream();
    for (int i = 1; i <= 2; i++)
        for (int l = 0; l < 2; l++)
            cr_assert_gt(link_query(i, l).rtt_us, 0, "n%d link %d: no RTT on a busy link", i, l);
}

Test(cut, a_short_silent_cut_keeps_the_link_up_and_it_is_used_again)
{
    start_stream();
    cr_assert_eq(ndfs__transport_cut_link(N[1].t, "n2", 1, true), 0);
    uint64_t until = now_us() + FAIL_MS * 1000 / 2;
    run_until(elapsed, &until, DEADLINE_MS); /* the cut lasts this long */
    cr_assert(tp_peer_find(N[1].t, "n2")->links[1].suspect, "n1 did not suspect link 1");
    cr_assert_eq(ndfs__transport_cut_link(N[1].t, "n2", 1, false), 0);
    stream(100);
    finish_stream();
    cr_assert_eq(N[1].link_down[1] + N[2].link_down[1], 0, "a short cut took the link down");
    assert_link1_used_again();
    finish_stream();
    cr_assert_not(tp_peer_find(N[1].t, "n2")->links[1].suspect, "link 1 still suspect");
    cr_assert_not(tp_peer_find(N[2].t, "n1")->links[1].suspect, "link 1 still suspect at n2");
}
