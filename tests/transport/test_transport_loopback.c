/* The transport for real: two or three endpoints in one process on one libuv
 * loop, each with two links on distinct 127.x addresses, real TCP and UDP.
 * The loop runs until a condition holds, with a deadline. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ndfs/transport.h"
#include "transport/frame.h"
#include "transport/transport_private.h"

#define DEADLINE_MS 30000
#define NNODES      3

struct node {
    struct ndfs_transport *t;
    char name[16];
    char addr[2][32];
    uint8_t key[32];
    /* received, per sender index */
    uint64_t next_id[NNODES + 1];
    uint64_t count[NNODES + 1];
    uint64_t bytes;
    char bad[256];
    int events[NDFS_AUTH_FAILED + 1];
    int link_up[2], link_down[2];
    bool closed;
};

static uv_loop_t loop;
static struct node N[NNODES + 1]; /* N[3] may be a mount without links */
static int port;
static uint8_t good_key[32];

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

static int node_index(const char *name)
{
    for (int i = 0; i <= NNODES; i++)
        if (strcmp(N[i].name, name) == 0)
            return i;
    return 0;
}

static uint8_t pattern(uint64_t id, size_t i)
{
    return (uint8_t)(id * 131 + i * 7 + (i >> 9));
}

static void on_message(struct ndfs_transport *t, struct ndfs_message *m, void *data)
{
    struct node *n = data;
    int from = node_index(m->peer);
    uint64_t id = m->request_id;
    if (!n->bad[0] && id != n->next_id[from])
        snprintf(n->bad, sizeof n->bad, "%s: from %s got id %llu, expected %llu", n->name, m->peer,
                 (unsigned long long)id, (unsigned long long)n->next_id[from]);
    if (!n->bad[0] && (m->control_len != 8 || memcmp(m->control, &id, 8) != 0))
        snprintf(n->bad, sizeof n->bad, "%s: bad control in message %llu", n->name,
                 (unsigned long long)id);
    if (!n->bad[0] && m->data_len != m->epoch)
        snprintf(n->bad, sizeof n->bad, "%s: message %llu has %zu bytes, sent %llu", n->name,
                 (unsigned long long)id, m->data_len, (unsigned long long)m->epoch);
    for (size_t i = 0; !n->bad[0] && i < m->data_len; i++)
        if (m->data[i] != pattern(id, i))
            snprintf(n->bad, sizeof n->bad, "%s: message %llu corrupt at byte %zu", n->name,
                     (unsigned long long)id, i);
    n->next_id[from] = id + 1;
    n->count[from]++;
    n->bytes += m->data_len;
    ndfs_transport_release(t, m);
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)peer;
    struct node *n = data;
    n->events[ev]++;
    if (ev == NDFS_LINK_UP && link >= 0 && link < 2)
        n->link_up[link]++;
    if (ev == NDFS_LINK_DOWN && link >= 0 && link < 2)
        n->link_down[link]++;
}

static int node_create(int i, const uint8_t *key, bool listen, char **err)
{
    struct node *n = &N[i];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, i == NNODES ? "n%d.mount-1" : "n%d", i);
    const char *listen_addrs[3] = {NULL, NULL, NULL};
    if (listen) {
        for (int l = 0; l < 2; l++) {
            snprintf(n->addr[l], sizeof n->addr[l], "127.0.%d.%d:%d", l + 1, i, port);
            listen_addrs[l] = n->addr[l];
        }
    }
    memcpy(n->key, key, 32);
    struct ndfs_transport_config cfg = {
        .name = n->name,
        .listen = listen_addrs,
        .key = n->key,
        .key_len = 32,
        .heartbeat_interval_ms = 50,
        .failure_timeout_ms = 1000,
    };
    int rc = ndfs_transport_new(&loop, &cfg, &n->t, err);
    if (rc < 0)
        return rc;
    ndfs_transport_set_event_cb(n->t, on_event, n);
    cr_assert_eq(ndfs_transport_register(n->t, NDFS_CHANNEL_IO, on_message, n), 0);
    return listen ? ndfs_transport_start(n->t, err) : 0;
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

/* Starts n1..count, choosing a port free on every address. */
static void start_nodes(int count)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        port = 20000 + (int)((getpid() * 7 + attempt * 977) % 30000);
        int i;
        char *err = NULL;
        for (i = 1; i <= count; i++) {
            int rc = node_create(i, good_key, true, &err);
            if (rc < 0) {
                g_free(err);
                err = NULL;
                if (N[i].t)
                    node_close(i);
                break;
            }
        }
        if (i > count)
            return;
        for (int j = 1; j < i; j++)
            node_close(j);
    }
    cr_assert_fail("no free port");
}

static void connect_pair(int a, int b)
{
    const char *aa[3] = {N[a].addr[0], N[a].addr[1], NULL};
    const char *bb[3] = {N[b].addr[0], N[b].addr[1], NULL};
    cr_assert_eq(ndfs_transport_peer_set(N[a].t, N[b].name, bb), 0);
    cr_assert_eq(ndfs_transport_peer_set(N[b].t, N[a].name, aa), 0);
}

struct links_up {
    int a, b, want;
};
static int count_up(const struct ndfs_link_info *li, void *data)
{
    struct links_up *lu = data;
    if (strcmp(li->peer, N[lu->b].name) == 0 && li->up)
        lu->want--;
    return 0;
}
static bool both_links_up(void *arg)
{
    struct links_up *pair = arg;
    struct links_up x = *pair, y = {pair->b, pair->a, pair->want};
    ndfs_transport_foreach_link(N[x.a].t, count_up, &x);
    ndfs_transport_foreach_link(N[y.a].t, count_up, &y);
    return x.want <= 0 && y.want <= 0;
}

static void wait_links(int a, int b, int want)
{
    struct links_up lu = {a, b, want};
    cr_assert(run_until(both_links_up, &lu, DEADLINE_MS), "links %s-%s not up", N[a].name,
              N[b].name);
}

static uint64_t sent_id[NNODES + 1][NNODES + 1];

static int send_msg(int from, int to, size_t len)
{
    uint64_t id = sent_id[from][to];
    uint8_t *buf = g_malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(id, i);
    int rc = ndfs_transport_send(N[from].t, N[to].name, NDFS_CHANNEL_IO, id, len, &id, 8, buf, len);
    g_free(buf);
    if (rc == 0)
        sent_id[from][to]++;
    return rc;
}

struct want {
    int node, from;
    uint64_t count;
};
static bool got(void *arg)
{
    struct want *w = arg;
    return N[w->node].count[w->from] >= w->count || N[w->node].bad[0];
}
static void wait_received(int node, int from, uint64_t count)
{
    struct want w = {node, from, count};
    cr_assert(run_until(got, &w, DEADLINE_MS), "%s got %llu of %llu messages from %s", N[node].name,
              (unsigned long long)N[node].count[from], (unsigned long long)count, N[from].name);
    cr_assert_eq(N[node].bad[0], 0, "%s", N[node].bad);
}

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(N, 0, sizeof N);
    memset(sent_id, 0, sizeof sent_id);
    memset(good_key, 0x5a, sizeof good_key);
    good_key[0] = 1;
}

static void teardown(void)
{
    for (int i = 0; i <= NNODES; i++)
        node_close(i);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

TestSuite(transport, .init = setup, .fini = teardown, .timeout = 120);

Test(transport, messages_of_many_sizes_arrive_intact_in_order_once)
{
    start_nodes(2);
    connect_pair(1, 2);
    static const size_t sizes[] = {0,          1,
                                   100,        4095,
                                   65536,      256 * 1024 - 1,
                                   256 * 1024, 256 * 1024 + 1,
                                   1 << 20,    3 * 1000 * 1000,
                                   8 << 20,    7,
                                   0};
    size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(send_msg(1, 2, sizes[i]), 0);
        cr_assert_eq(send_msg(2, 1, sizes[n - 1 - i]), 0);
    }
    wait_received(2, 1, n);
    wait_received(1, 2, n);
    cr_assert_eq(N[1].events[NDFS_PEER_UP], 1);
    cr_assert_eq(N[2].events[NDFS_PEER_UP], 1);
    cr_assert(ndfs_transport_peer_up(N[1].t, "n2"));
    /* nothing more arrives: exactly once */
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(N[2].count[1], n);
}

struct link_bytes {
    const char *peer;
    uint64_t sent[2], received[2];
    bool up[2];
    uint32_t rtt[2];
};
static int collect(const struct ndfs_link_info *li, void *data)
{
    struct link_bytes *lb = data;
    if (strcmp(li->peer, lb->peer) == 0 && li->index < 2) {
        lb->sent[li->index] = li->bytes_sent;
        lb->received[li->index] = li->bytes_received;
        lb->up[li->index] = li->up;
        lb->rtt[li->index] = li->rtt_us;
    }
    return 0;
}

Test(transport, large_messages_are_striped_over_both_links)
{
    start_nodes(2);
    connect_pair(1, 2);
    wait_links(1, 2, 2);
    struct link_bytes before = {.peer = "n2"};
    ndfs_transport_foreach_link(N[1].t, collect, &before);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(send_msg(1, 2, 8 << 20), 0);
    wait_received(2, 1, 4);
    struct link_bytes after = {.peer = "n2"};
    ndfs_transport_foreach_link(N[1].t, collect, &after);
    for (int l = 0; l < 2; l++)
        cr_assert_gt(after.sent[l] - before.sent[l], 4u << 20, "link %d sent %llu bytes", l,
                     (unsigned long long)(after.sent[l] - before.sent[l]));
    struct link_bytes rx = {.peer = "n1"};
    ndfs_transport_foreach_link(N[2].t, collect, &rx);
    cr_assert_gt(rx.received[0], 4u << 20);
    cr_assert_gt(rx.received[1], 4u << 20);
}
