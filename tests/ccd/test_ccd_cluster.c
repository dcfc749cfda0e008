/* Three (then four) CCDs in one process on one libuv loop, each with its own
 * real cluster transport on its own 127.0.1.x address, replicating over
 * Raft: join, replication to every node, leader loss and election, catch-up
 * of a restarted node, and catch-up of a late node through a snapshot. The
 * loop runs until a condition holds, with a deadline. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <glib.h>
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "ndfs/ccd.h"
#include "ndfs/transport.h"

#define NODES        4
#define DEADLINE_MS  30000
#define ELECTION_MS  1000
#define HEARTBEAT_MS 100
#define THRESHOLD    32
#define TRAILING     8

struct node {
    char name[8];
    char address[32];
    char *dir;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    bool ready;
    int ready_status;
    GHashTable *seen; /* vdisk names the watch reported (not removed) */
    unsigned snapshot_events;
};

static struct {
    uv_loop_t loop;
    char *root;
    uint8_t key[32];
    unsigned port;
    struct node n[NODES];
} C;

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until cond() holds; returns the time it took (ms). */
static int64_t run_until(bool (*cond)(void *), void *arg, const char *what)
{
    uv_timer_t deadline;
    bool expired = false;
    int64_t t0 = g_get_monotonic_time();
    uv_timer_init(&C.loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, DEADLINE_MS, 0);
    while (!cond(arg) && !expired)
        uv_run(&C.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert(cond(arg), "timed out waiting for %s", what);
    return (g_get_monotonic_time() - t0) / 1000;
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

static void watch_cb(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key, bool removed,
                     void *data)
{
    (void)ccd;
    struct node *n = data;
    if (table != NDFS_CCD_VDISKS)
        return;
    if (key == NULL)
        n->snapshot_events++;
    else if (removed)
        g_hash_table_remove(n->seen, key);
    else
        g_hash_table_add(n->seen, g_strdup(key));
}

static void event_cb(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)link;
    struct node *n = data;
    if (n->ccd)
        ndfs_ccd_transport_event(n->ccd, peer, ev);
}

static void ready_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct node *n = data;
    n->ready = true;
    n->ready_status = status;
}

static void start_node(int i, bool join, uint64_t id)
{
    struct node *n = &C.n[i];
    const char *listen[] = {n->address, NULL};
    struct ndfs_transport_config tc = {.name = n->name,
                                       .listen = listen,
                                       .key = C.key,
                                       .key_len = sizeof C.key,
                                       .heartbeat_interval_ms = 100,
                                       .failure_timeout_ms = 1000};
    g_autofree char *errmsg = NULL;
    cr_assert_eq(ndfs_transport_new(&C.loop, &tc, &n->t, &errmsg), 0, "transport: %s", errmsg);
    ndfs_transport_set_event_cb(n->t, event_cb, n);
    cr_assert_eq(ndfs_transport_start(n->t, &errmsg), 0, "transport start: %s", errmsg);
    struct ndfs_ccd_config cfg = {.data_dir = n->dir,
                                  .node_name = n->name,
                                  .snapshot_threshold = THRESHOLD,
                                  .snapshot_trailing = TRAILING,
                                  .transport = n->t,
                                  .addresses = listen,
                                  .join = join,
                                  .node_id = id,
                                  .election_timeout_ms = ELECTION_MS,
                                  .heartbeat_timeout_ms = HEARTBEAT_MS};
    cr_assert_eq(ndfs_ccd_open(&C.loop, &cfg, &n->ccd, &errmsg), 0, "open %s: %s", n->name, errmsg);
    ndfs_ccd_set_watch(n->ccd, watch_cb, n);
    n->ready = false;
    cr_assert_eq(ndfs_ccd_start(n->ccd, ready_cb, n), 0, "start: %s", ndfs_ccd_errmsg(n->ccd));
}

static void wait_ready(int i)
{
    struct node *n = &C.n[i];
    int64_t ms = run_until(flag_set, &n->ready, n->name);
    cr_assert_eq(n->ready_status, 0, "%s ready: %s", n->name, ndfs_ccd_errmsg(n->ccd));
    cr_log_info("%s ready after %lld ms", n->name, (long long)ms);
}

static void transport_closed(void *data)
{
    *(bool *)data = true;
}

static void ccd_closed(void *data)
{
    struct node *n = data;
    n->ccd = NULL;
}

static bool node_stopped(void *arg)
{
    struct node *n = arg;
    return n->ccd == NULL;
}

/* Closes the CCD, then (at once, in its callback's wake) the transport. */
static void stop_node(int i)
{
    struct node *n = &C.n[i];
    if (n->ccd == NULL && n->t == NULL)
        return;
    if (n->ccd) {
        ndfs_ccd_close(n->ccd, ccd_closed, n);
        run_until(node_stopped, n, "the CCD to close");
    }
    bool closed = false;
    ndfs_transport_close(n->t, transport_closed, &closed);
    n->t = NULL;
    run_until(flag_set, &closed, "the transport to close");
}

struct added {
    bool done;
    int status;
    uint64_t id;
};

static void added_cb(struct ndfs_ccd *ccd, int status, uint64_t id, void *data)
{
    (void)ccd;
    struct added *a = data;
    a->done = true;
    a->status = status;
    a->id = id;
}

static uint64_t add_node(int leader, int i)
{
    struct node *n = &C.n[i];
    char *addresses[] = {n->address, NULL};
    struct ndfs_node row = {
        .role = NDFS_NODE_VOTER, .name = n->name, .address = "", .addresses = addresses};
    struct added a = {0};
    cr_assert_eq(ndfs_ccd_node_add(C.n[leader].ccd, &row, added_cb, &a), 0, "node add: %s",
                 ndfs_ccd_errmsg(C.n[leader].ccd));
    run_until(flag_set, &a.done, "node add");
    cr_assert_eq(a.status, 0, "node add %s: %s", n->name, g_strerror(-a.status));
    return a.id;
}

struct done {
    bool done;
    int status;
};

static void done_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct done *d = data;
    d->done = true;
    d->status = status;
}

static void create_vdisk(int leader, const char *name)
{
    struct ndfs_vdisk v = {.size = 1 << 20,
                           .mode = 0660,
                           .version = 1,
                           .name = (char *)name,
                           .owner = "root",
                           .group = "disk",
                           .primary_node = "n1",
                           .primary_path = "/var/lib/ndfs/disk.img"};
    struct done d = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(C.n[leader].ccd, &v, done_cb, &d), 0, "create: %s",
                 ndfs_ccd_errmsg(C.n[leader].ccd));
    run_until(flag_set, &d.done, "vdisk create");
    cr_assert_eq(d.status, 0, "create %s: %s", name, g_strerror(-d.status));
}

static void update_vdisk(int leader, const char *name)
{
    struct ndfs_vdisk v;
    cr_assert_eq(ndfs_ccd_vdisk_get(C.n[leader].ccd, name, &v), 0);
    v.mode ^= 1;
    struct done d = {0};
    cr_assert_eq(ndfs_ccd_vdisk_update(C.n[leader].ccd, &v, done_cb, &d), 0);
    ndfs_vdisk_clear(&v);
    run_until(flag_set, &d.done, "vdisk update");
    cr_assert_eq(d.status, 0);
}

struct has_vdisk {
    int node;
    const char *name;
    bool watched; /* also reported by the watch */
};

static bool node_has_vdisk(void *arg)
{
    struct has_vdisk *h = arg;
    struct node *n = &C.n[h->node];
    struct ndfs_vdisk v;
    if (n->ccd == NULL || ndfs_ccd_vdisk_get(n->ccd, h->name, &v) != 0)
        return false;
    ndfs_vdisk_clear(&v);
    return !h->watched || g_hash_table_contains(n->seen, h->name);
}

static void wait_vdisk(int i, const char *name, bool watched)
{
    struct has_vdisk h = {i, name, watched};
    run_until(node_has_vdisk, &h, name);
}

static bool three_voters(void *arg)
{
    unsigned total = 0;
    g_strfreev(ndfs_ccd_voters(C.n[*(int *)arg].ccd, &total));
    return total == 3;
}

/* Which of the running nodes leads; -1: none. */
static int leader_of(void)
{
    for (int i = 0; i < NODES; i++)
        if (C.n[i].ccd && ndfs_ccd_is_leader(C.n[i].ccd))
            return i;
    return -1;
}

static bool has_leader(void *arg)
{
    (void)arg;
    return leader_of() >= 0;
}

static bool dir_has_snapshot(const char *dir)
{
    g_autofree char *raft = g_build_filename(dir, "raft", NULL);
    g_autoptr(GDir) d = g_dir_open(raft, 0, NULL);
    const char *e;
    while (d && (e = g_dir_read_name(d)))
        if (g_str_has_prefix(e, "snapshot-"))
            return true;
    return false;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(uv_loop_init(&C.loop), 0);
    C.root = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(C.root);
    for (size_t i = 0; i < sizeof C.key; i++)
        C.key[i] = (uint8_t)g_random_int();
    C.port = 20000 + (unsigned)getpid() % 20000;
    for (int i = 0; i < NODES; i++) {
        struct node *n = &C.n[i];
        g_snprintf(n->name, sizeof n->name, "n%d", i + 1);
        g_snprintf(n->address, sizeof n->address, "127.0.1.%d:%u", i + 1, C.port);
        n->dir = g_build_filename(C.root, n->name, NULL);
        n->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++) {
        stop_node(i);
        g_hash_table_destroy(C.n[i].seen);
        g_free(C.n[i].dir);
    }
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&C.loop), 0, "every handle is closed");
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", C.root);
    cr_assert_eq(system(cmd), 0);
    g_free(C.root);
}

TestSuite(ccd_cluster, .init = setup, .fini = teardown, .timeout = 240);

Test(ccd_cluster, join_replicate_fail_over_catch_up_and_snapshot)
{
    /* n1 bootstraps; n2 and n3 join with the ids n1 gave them */
    start_node(0, false, 0);
    wait_ready(0);
    cr_assert(ndfs_ccd_is_leader(C.n[0].ccd));
    for (int i = 1; i < 3; i++) {
        uint64_t id = add_node(0, i);
        cr_assert_eq(id, (uint64_t)i + 1);
        start_node(i, true, id);
        wait_ready(i);
        cr_assert_eq(ndfs_ccd_node_id(C.n[i].ccd), id);
    }
    int zero = 0;
    int64_t ms = run_until(three_voters, &zero, "three voters");
    cr_log_info("three voters %lld ms after n3 was ready", (long long)ms);

    /* a change on the leader shows on every node, through get and the watch */
    create_vdisk(0, "v1");
    for (int i = 0; i < 3; i++)
        wait_vdisk(i, "v1", i > 0);
    for (int i = 0; i < 3; i++) {
        char leader[NDFS_NODE_NAME_MAX + 1];
        ndfs_ccd_leader(C.n[i].ccd, leader);
        cr_assert_str_eq(leader, "n1", "leader seen by n%d", i + 1);
        struct ndfs_ccd_status st;
        cr_assert_eq(ndfs_ccd_status(C.n[i].ccd, &st), 0);
        cr_assert_str_eq(st.leader, "n1");
        cr_assert_eq(st.vdisks, 1);
        ndfs_ccd_status_clear(&st);
    }
    struct done d = {0};
    cr_assert_eq(ndfs_ccd_vdisk_remove(C.n[1].ccd, "v1", done_cb, &d), -ENOTCONN,
                 "a follower refuses changes");

    /* the leader stops: n2 or n3 is elected and takes changes */
    stop_node(0);
    ms = run_until(has_leader, NULL, "a new leader");
    int leader = leader_of();
    cr_assert(leader == 1 || leader == 2);
    cr_log_info("new leader %s elected %lld ms after the old one stopped", C.n[leader].name,
                (long long)ms);
    create_vdisk(leader, "v2");
    wait_vdisk(3 - leader, "v2", true);

    /* n1 comes back on its data dir and catches up */
    start_node(0, false, 0);
    wait_ready(0);
    wait_vdisk(0, "v2", false);
    cr_assert_eq(ndfs_ccd_node_id(C.n[0].ccd), 1);

    /* many changes with a small snapshot threshold; a late node gets a snapshot */
    leader = leader_of();
    cr_assert_geq(leader, 0);
    for (int k = 0; k < 4 * THRESHOLD; k++)
        update_vdisk(leader, "v2");
    uint64_t id = add_node(leader, 3);
    cr_assert_eq(id, 4);
    start_node(3, true, id);
    wait_ready(3);
    wait_vdisk(3, "v1", false);
    wait_vdisk(3, "v2", false);
    cr_assert(dir_has_snapshot(C.n[3].dir), "n4 was sent a snapshot");
    struct ndfs_vdisk a, b;
    cr_assert_eq(ndfs_ccd_vdisk_get(C.n[3].ccd, "v2", &a), 0);
    cr_assert_eq(ndfs_ccd_vdisk_get(C.n[leader].ccd, "v2", &b), 0);
    cr_assert_eq(a.version, b.version);
    ndfs_vdisk_clear(&a);
    ndfs_vdisk_clear(&b);
    /* a fourth voter */
    unsigned total = 0;
    g_strfreev(ndfs_ccd_voters(C.n[leader].ccd, &total));
    cr_assert_geq(total, 3);
}
