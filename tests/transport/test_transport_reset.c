/* A peer's new state (a restart, or a peer that removed us and took us back)
 * against queued, unacknowledged frames: one NDFS_PEER_RESET, then the links
 * stay up; and channels that unregister. Two endpoints in one process, two
 * links each on 127.0.x.y, real TCP and UDP. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "ndfs/transport.h"
#include "transport/transport_private.h"

#define DEADLINE_MS 30000
#define HB_MS       50
#define STABLE_HBS  40 /* heartbeat intervals the links must stay up */

struct node {
    struct ndfs_transport *t;
    char name[8];
    char addr[2][32];
    uint64_t received, last_id;
    int events[NDFS_AUTH_FAILED + 1];
    bool closed;
};

static uv_loop_t loop;
static struct node N[3];
static int port;
static uint8_t key[32];

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until cond(arg) holds (NULL: for ms); false on the deadline. */
static bool run_until(bool (*cond)(void *), void *arg, unsigned ms)
{
    uv_timer_t deadline;
    bool expired = false;
    uv_timer_init(&loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, ms, 0);
    while (!(cond && cond(arg)) && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return cond && cond(arg);
}

static void on_message(struct ndfs_transport *t, struct ndfs_message *m, void *data)
{
    struct node *n = data;
    n->received++;
    n->last_id = m->request_id;
    ndfs_transport_release(t, m);
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)peer;
    (void)link;
    ((struct node *)data)->events[ev]++;
}

static int node_create(int i, char **err)
{
    struct node *n = &N[i];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "n%d", i);
    const char *listen[3] = {n->addr[0], n->addr[1], NULL};
    for (int l = 0; l < 2; l++)
        snprintf(n->addr[l], sizeof n->addr[l], "127.0.%d.%d:%d", l + 11, i, port);
    struct ndfs_transport_config cfg = {
        .name = n->name,
        .listen = listen,
        .key = key,
        .key_len = sizeof key,
        .heartbeat_interval_ms = HB_MS,
        .failure_timeout_ms = 1000,
    };
    int rc = ndfs_transport_new(&loop, &cfg, &n->t, err);
    if (rc < 0)
        return rc;
    ndfs_transport_set_event_cb(n->t, on_event, n);
    cr_assert_eq(ndfs_transport_register(n->t, NDFS_CHANNEL_IO, on_message, n), 0);
    return ndfs_transport_start(n->t, err);
}

static void node_closed(void *data)
{
    ((struct node *)data)->closed = true;
}

static bool is_closed(void *arg)
{
    return ((struct node *)arg)->closed;
}

static void node_close(int i)
{
    if (!N[i].t)
        return;
    N[i].closed = false;
    ndfs_transport_close(N[i].t, node_closed, &N[i]);
    N[i].t = NULL;
    cr_assert(run_until(is_closed, &N[i], DEADLINE_MS), "transport %d did not close", i);
}

static void start_nodes(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        port = 20000 + (int)((getpid() * 13 + attempt * 991) % 30000);
        char *err = NULL;
        int rc = node_create(1, &err);
        if (rc == 0)
            rc = node_create(2, &err);
        g_free(err);
        if (rc == 0)
            return;
        node_close(1);
        node_close(2);
    }
    cr_assert_fail("no free port");
}

static void set_peer(int a, int b)
{
    const char *bb[3] = {N[b].addr[0], N[b].addr[1], NULL};
    cr_assert_eq(ndfs_transport_peer_set(N[a].t, N[b].name, bb), 0);
}

struct up_want {
    int a, b, want;
};
static int count_up(const struct ndfs_link_info *li, void *data)
{
    struct up_want *w = data;
    if (strcmp(li->peer, N[w->b].name) == 0 && li->up)
        w->want--;
    return 0;
}
static int links_up(int a, int b)
{
    struct up_want w = {a, b, 0};
    ndfs_transport_foreach_link(N[a].t, count_up, &w);
    return -w.want;
}
static bool both_up(void *arg)
{
    (void)arg;
    return links_up(1, 2) == 2 && links_up(2, 1) == 2;
}

static int send_msg(int from, int to, uint64_t id)
{
    uint8_t buf[3000];
    memset(buf, (int)id, sizeof buf);
    return ndfs_transport_send(N[from].t, N[to].name, NDFS_CHANNEL_IO, id, 0, &id, sizeof id, buf,
                               sizeof buf);
}

struct rx_want {
    int node;
    uint64_t count, last;
};
static bool received(void *arg)
{
    struct rx_want *w = arg;
    return N[w->node].received >= w->count && N[w->node].last_id == w->last;
}
static void exchange(uint64_t first, uint64_t count)
{
    uint64_t r1 = N[1].received, r2 = N[2].received;
    for (uint64_t id = first; id < first + count; id++) {
        cr_assert_eq(send_msg(1, 2, id), 0);
        cr_assert_eq(send_msg(2, 1, id), 0);
    }
    struct rx_want w2 = {2, r2 + count, first + count - 1}, w1 = {1, r1 + count, first + count - 1};
    cr_assert(run_until(received, &w2, DEADLINE_MS), "n2 got %llu of %llu",
              (unsigned long long)(N[2].received - r2), (unsigned long long)count);
    cr_assert(run_until(received, &w1, DEADLINE_MS), "n1 got %llu of %llu",
              (unsigned long long)(N[1].received - r1), (unsigned long long)count);
}

static bool reset_seen(void *arg)
{
    return N[*(int *)arg].events[NDFS_PEER_RESET] > 0;
}

/* The links stay up for STABLE_HBS heartbeat intervals: no LINK_DOWN on
 * either side, and no second reset. */
static void assert_stable(void)
{
    int down1 = N[1].events[NDFS_LINK_DOWN], down2 = N[2].events[NDFS_LINK_DOWN];
    int reset1 = N[1].events[NDFS_PEER_RESET], reset2 = N[2].events[NDFS_PEER_RESET];
    run_until(NULL, NULL, STABLE_HBS * HB_MS); /* an observation window, not a wait */
    cr_assert_eq(N[1].events[NDFS_LINK_DOWN], down1, "n1's links to n2 flapped");
    cr_assert_eq(N[2].events[NDFS_LINK_DOWN], down2, "n2's links to n1 flapped");
    cr_assert_eq(N[1].events[NDFS_PEER_RESET], reset1, "n1 reset again");
    cr_assert_eq(N[2].events[NDFS_PEER_RESET], reset2, "n2 reset again");
    cr_assert(both_up(NULL), "links not up after %d heartbeats", STABLE_HBS);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(N, 0, sizeof N);
    memset(key, 0x6b, sizeof key);
}

static void teardown(void)
{
    node_close(1);
    node_close(2);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

TestSuite(reset, .init = setup, .fini = teardown, .timeout = 120);

Test(reset, a_restarted_peer_resets_queued_frames_once_and_the_links_stay_up)
{
    start_nodes();
    set_peer(1, 2);
    set_peer(2, 1);
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up");
    exchange(1, 50);
    /* n1 cannot reach n2 and queues frames n2 will never acknowledge */
    for (int l = 0; l < 2; l++)
        cr_assert_eq(ndfs__transport_block_link(N[1].t, "n2", l, true), 0);
    for (uint64_t id = 100; id < 120; id++)
        cr_assert_eq(send_msg(1, 2, id), 0);
    cr_assert_gt(tp_peer_find(N[1].t, "n2")->win.tx_queued, 0);
    /* n2 restarts with an empty state and a new incarnation */
    node_close(2);
    char *err = NULL;
    cr_assert_eq(node_create(2, &err), 0, "%s", err ? err : "");
    set_peer(2, 1);
    for (int l = 0; l < 2; l++)
        cr_assert_eq(ndfs__transport_block_link(N[1].t, "n2", l, false), 0);
    int one = 1;
    cr_assert(run_until(reset_seen, &one, DEADLINE_MS), "n1 saw no reset");
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up after the restart");
    cr_assert_eq(N[1].events[NDFS_PEER_RESET], 1);
    cr_assert_eq(N[2].events[NDFS_PEER_RESET], 0, "n2 had nothing to reset");
    cr_assert_eq(N[2].received, 0, "frames of the old incarnation reached the new one");
    assert_stable();
    exchange(200, 30);
    cr_assert_eq(N[2].received, 30);
}

Test(reset, a_peer_that_forgot_us_makes_us_reset_once_and_the_links_stay_up)
{
    start_nodes();
    set_peer(1, 2);
    set_peer(2, 1);
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up");
    exchange(1, 50);
    /* n1's frames are in flight or unacknowledged when n2 forgets n1 (a
     * node removed from n2's view) and n1 dials it again as a stranger */
    for (uint64_t id = 100; id < 120; id++)
        cr_assert_eq(send_msg(1, 2, id), 0);
    cr_assert_eq(ndfs_transport_peer_remove(N[2].t, "n1"), 0);
    uint64_t before = N[2].received;
    int one = 1;
    cr_assert(run_until(reset_seen, &one, DEADLINE_MS), "n1 saw no reset");
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up as a dynamic peer");
    cr_assert_eq(N[1].events[NDFS_PEER_RESET], 1);
    cr_assert_eq(N[2].events[NDFS_PEER_RESET], 0, "n2 forgot n1: nothing to reset");
    assert_stable();
    /* and again when n2 takes n1 back as a configured peer */
    set_peer(2, 1);
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up once configured");
    assert_stable();
    cr_assert_eq(N[1].events[NDFS_PEER_RESET], 1, "taking a known peer back is no reset");
    exchange(200, 30);
    cr_assert_eq(N[2].received, before + 30, "n2 got duplicates or frames of its old state");
}

static void never_called(struct ndfs_transport *t, struct ndfs_message *m, void *data)
{
    (void)data;
    ndfs_transport_release(t, m);
    cr_assert_fail("a message reached an unregistered receiver");
}

Test(reset, an_unregistered_channel_drops_its_messages_and_can_register_again)
{
    start_nodes();
    set_peer(1, 2);
    set_peer(2, 1);
    cr_assert(run_until(both_up, NULL, DEADLINE_MS), "links not up");
    cr_assert_eq(ndfs_transport_unregister(N[2].t, 0), -EINVAL);
    cr_assert_eq(ndfs_transport_unregister(N[2].t, NDFS_CHANNEL_MAX), -EINVAL);
    cr_assert_eq(ndfs_transport_unregister(N[2].t, NDFS_CHANNEL_RAFT), -ENOENT);
    cr_assert_eq(ndfs_transport_register(N[2].t, NDFS_CHANNEL_RAFT, never_called, NULL), 0);
    cr_assert_eq(ndfs_transport_unregister(N[2].t, NDFS_CHANNEL_RAFT), 0);
    cr_assert_eq(ndfs_transport_unregister(N[2].t, NDFS_CHANNEL_RAFT), -ENOENT);
    cr_assert_eq(ndfs_transport_unregister(N[2].t, NDFS_CHANNEL_IO), 0);
    for (uint64_t id = 1; id <= 10; id++) {
        cr_assert_eq(ndfs_transport_send(N[1].t, "n2", NDFS_CHANNEL_RAFT, id, 0, &id, 8, NULL, 0),
                     0);
        cr_assert_eq(send_msg(1, 2, id), 0);
    }
    /* the channel is in order after those: once it arrives, they were dropped */
    cr_assert_eq(ndfs_transport_register(N[2].t, NDFS_CHANNEL_MEMBERSHIP, on_message, &N[2]), 0);
    uint64_t id = 11;
    cr_assert_eq(ndfs_transport_send(N[1].t, "n2", NDFS_CHANNEL_MEMBERSHIP, id, 0, &id, 8, NULL, 0),
                 0);
    struct rx_want w = {2, 1, 11};
    cr_assert(run_until(received, &w, DEADLINE_MS), "the registered channel got nothing");
    cr_assert_eq(N[2].received, 1, "an unregistered channel delivered");
    cr_assert_eq(ndfs_transport_register(N[2].t, NDFS_CHANNEL_IO, on_message, &N[2]), 0);
    cr_assert_eq(send_msg(1, 2, 12), 0);
    w = (struct rx_want){2, 2, 12};
    cr_assert(run_until(received, &w, DEADLINE_MS), "a channel registered again gets nothing");
}
