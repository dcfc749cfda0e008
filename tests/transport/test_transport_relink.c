/* Links added and removed while the transport runs (ndfsadm link add /
 * remove), over real loopback sockets: a third address on both nodes
 * makes a third link that comes up and carries traffic; removing link 0
 * closes its listener and connection while the others keep their index
 * and nothing sent is lost; an address that cannot be bound changes
 * nothing. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ndfs/transport.h"

#define DEADLINE_MS 30000

struct node {
    struct ndfs_transport *t;
    char name[8];
    char addr[3][32]; /* 127.0.(l+1).i:port */
    uint64_t sent, next, received;
    char bad[256];
    bool closed;
};

static uv_loop_t loop;
static struct node N[3];
static uint8_t key[32];
static int port;

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

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

static void on_message(struct ndfs_transport *t, struct ndfs_message *m, void *data)
{
    struct node *n = data;
    if (!n->bad[0] && m->request_id != n->next)
        snprintf(n->bad, sizeof n->bad, "%s: got id %llu, expected %llu", n->name,
                 (unsigned long long)m->request_id, (unsigned long long)n->next);
    for (size_t i = 0; !n->bad[0] && i < m->data_len; i += 251)
        if (m->data[i] != (uint8_t)(m->request_id + i))
            snprintf(n->bad, sizeof n->bad, "%s: message %llu corrupt", n->name,
                     (unsigned long long)m->request_id);
    n->next = m->request_id + 1;
    n->received++;
    ndfs_transport_release(t, m);
}

static int node_create(int i)
{
    struct node *n = &N[i];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "n%d", i);
    for (int l = 0; l < 3; l++)
        snprintf(n->addr[l], sizeof n->addr[l], "127.0.%d.%d:%d", l + 1, i, port);
    const char *listen[3] = {n->addr[0], n->addr[1], NULL};
    struct ndfs_transport_config cfg = {
        .name = n->name,
        .listen = listen,
        .key = key,
        .key_len = sizeof key,
        .heartbeat_interval_ms = 50,
        .failure_timeout_ms = 1000,
    };
    char *err = NULL;
    int rc = ndfs_transport_new(&loop, &cfg, &n->t, &err);
    if (rc == 0) {
        cr_assert_eq(ndfs_transport_register(n->t, NDFS_CHANNEL_IO, on_message, n), 0);
        rc = ndfs_transport_start(n->t, &err);
    }
    g_free(err);
    return rc;
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
    ndfs_transport_close(N[i].t, node_closed, &N[i]);
    N[i].t = NULL;
    cr_assert(run_until(is_closed, &N[i], DEADLINE_MS), "transport %d did not close", i);
}

static void start_nodes(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        port = 20000 + (int)((getpid() * 13 + attempt * 977) % 30000);
        if (node_create(1) == 0 && node_create(2) == 0)
            return;
        node_close(1);
        node_close(2);
    }
    cr_assert_fail("no free port");
}

/* peer_set both ways with the addresses whose bit is set in mask ("" for
 * the others, trailing ones left out). */
static void peers_set(unsigned mask)
{
    for (int i = 1; i <= 2; i++) {
        struct node *other = &N[3 - i];
        const char *a[4] = {NULL};
        int n = 0;
        for (int l = 0; l < 3; l++)
            if (mask >> l)
                a[n++] = (mask >> l) & 1 ? other->addr[l] : "";
        cr_assert_eq(ndfs_transport_peer_set(N[i].t, other->name, a), 0);
    }
}

static void listen_set(int i, unsigned mask)
{
    const char *a[4] = {NULL};
    int n = 0;
    for (int l = 0; l < 3; l++)
        if (mask >> l)
            a[n++] = (mask >> l) & 1 ? N[i].addr[l] : "";
    char *err = NULL;
    int rc = ndfs_transport_listen_set(N[i].t, a, &err);
    cr_assert_eq(rc, 0, "listen_set: %s", err ? err : "");
}

struct links {
    unsigned up; /* bit per link index that is up */
    int count;
    char local[3][32];
};
static int collect(const struct ndfs_link_info *li, void *data)
{
    struct links *ls = data;
    ls->count++;
    if (li->up && li->index < 3) {
        ls->up |= 1u << li->index;
        g_strlcpy(ls->local[li->index], li->local, sizeof ls->local[0]);
    }
    return 0;
}

struct want_up {
    unsigned mask;
};
static bool links_are(void *arg)
{
    unsigned mask = ((struct want_up *)arg)->mask;
    for (int i = 1; i <= 2; i++) {
        struct links ls = {0};
        ndfs_transport_foreach_link(N[i].t, collect, &ls);
        if (ls.up != mask)
            return false;
    }
    return true;
}

static void wait_links(unsigned mask)
{
    struct want_up w = {mask};
    cr_assert(run_until(links_are, &w, DEADLINE_MS), "links up are not 0x%x", mask);
}

static void send_some(int from, int count)
{
    struct node *n = &N[from];
    for (int k = 0; k < count; k++) {
        uint64_t id = n->sent;
        size_t len = id % 5 == 4 ? 600u << 10 : 4096; /* some striped */
        uint8_t *buf = g_malloc(len);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(id + i);
        cr_assert_eq(
            ndfs_transport_send(n->t, N[3 - from].name, NDFS_CHANNEL_IO, id, 1, &id, 8, buf, len),
            0);
        g_free(buf);
        n->sent++;
    }
}

static bool all_received(void *arg)
{
    (void)arg;
    return (N[1].received == N[2].sent && N[2].received == N[1].sent) || N[1].bad[0] || N[2].bad[0];
}

static void wait_all_received(void)
{
    cr_assert(run_until(all_received, NULL, DEADLINE_MS), "messages missing: %llu/%llu %llu/%llu",
              (unsigned long long)N[1].received, (unsigned long long)N[2].sent,
              (unsigned long long)N[2].received, (unsigned long long)N[1].sent);
    cr_assert_eq(N[1].bad[0], 0, "%s", N[1].bad);
    cr_assert_eq(N[2].bad[0], 0, "%s", N[2].bad);
}

/* connect(2) to address (of node i, link l): 0 or -errno. */
static int try_connect(int i, int l)
{
    char ip[32];
    snprintf(ip, sizeof ip, "127.0.%d.%d", l + 1, i);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(N, 0, sizeof N);
    memset(key, 0x3c, sizeof key);
}

static void teardown(void)
{
    node_close(1);
    node_close(2);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

TestSuite(relink, .init = setup, .fini = teardown, .timeout = 120);

Test(relink, a_link_added_on_both_ends_comes_up_and_carries_traffic)
{
    start_nodes();
    peers_set(0x3);
    wait_links(0x3);
    send_some(1, 20);
    cr_assert_eq(try_connect(1, 2), -ECONNREFUSED, "nothing listens on the third address yet");

    listen_set(1, 0x7);
    listen_set(2, 0x7);
    peers_set(0x7);
    wait_links(0x7);
    struct links ls = {0};
    ndfs_transport_foreach_link(N[1].t, collect, &ls);
    cr_assert_str_eq(ls.local[2], N[1].addr[2]);
    send_some(1, 40);
    send_some(2, 40);
    wait_all_received();
}

Test(relink, a_removed_link_closes_its_socket_and_the_others_keep_their_index)
{
    start_nodes();
    listen_set(1, 0x7);
    listen_set(2, 0x7);
    peers_set(0x7);
    wait_links(0x7);
    send_some(1, 30); /* in flight while link 0 goes */

    listen_set(1, 0x6);
    listen_set(2, 0x6);
    peers_set(0x6);
    send_some(1, 30);
    send_some(2, 30);
    wait_links(0x6);
    wait_all_received();
    cr_assert_eq(try_connect(1, 0), -ECONNREFUSED, "link 0's listener of n1 is closed");
    cr_assert_eq(try_connect(1, 1), 0);
    struct links ls = {0};
    ndfs_transport_foreach_link(N[2].t, collect, &ls);
    cr_assert_str_eq(ls.local[2], N[2].addr[2], "link 2 kept its index");

    /* and back: the address of link 0 is usable again */
    listen_set(1, 0x7);
    listen_set(2, 0x7);
    peers_set(0x7);
    wait_links(0x7);
    send_some(2, 10);
    wait_all_received();
}

Test(relink, an_address_that_cannot_be_bound_changes_nothing)
{
    start_nodes();
    peers_set(0x3);
    wait_links(0x3);

    /* n2's first address is bound by n2: n1 cannot take it */
    const char *bad[4] = {N[1].addr[0], N[1].addr[1], N[2].addr[0], NULL};
    char *err = NULL;
    int rc = ndfs_transport_listen_set(N[1].t, bad, &err);
    cr_assert_eq(rc, -EADDRINUSE, "rc %d", rc);
    cr_assert_not_null(strstr(err, N[2].addr[0]), "message names the address: %s", err);
    g_free(err);
    err = NULL;
    cr_assert_eq(ndfs_transport_listen_check(N[2].addr[0], &err), -EADDRINUSE);
    g_free(err);
    err = NULL;
    cr_assert_eq(ndfs_transport_listen_check(N[1].addr[2], &err), 0, "%s", err ? err : "");
    cr_assert_eq(ndfs_transport_listen_check("nonsense", &err), -EINVAL);
    g_free(err);
    err = NULL;

    const char *none[3] = {"", "", NULL};
    cr_assert_eq(ndfs_transport_listen_set(N[1].t, none, &err), -EINVAL);
    g_free(err);
    err = NULL;
    const char *twice[3] = {N[1].addr[0], N[1].addr[0], NULL};
    cr_assert_eq(ndfs_transport_listen_set(N[1].t, twice, &err), -EINVAL);
    g_free(err);

    /* still both links, still working */
    send_some(1, 10);
    send_some(2, 10);
    wait_all_received();
    wait_links(0x3);
}
