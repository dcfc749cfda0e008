/* The CCD on a real data directory under /tmp with a real libuv loop: the
 * loop runs until the awaited callback has set its flag (with a deadline). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "ccd/ccd_private.h"
#include "ndfs/ccd.h"
#include "ndfs/transport.h"

#define NODE        "n1"
#define DEADLINE_MS 30000

struct event {
    enum ndfs_ccd_table table;
    char *key;
    bool removed;
};

struct env {
    uv_loop_t loop;
    char *dir;
    struct ndfs_ccd *ccd;
    GArray *events;   /* struct event */
    int64_t start_us; /* from ndfs_ccd_start to ready_cb */
};

static struct env E;

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void run_until(bool *flag)
{
    uv_timer_t deadline;
    bool expired = false;
    uv_timer_init(&E.loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, DEADLINE_MS, 0);
    while (!*flag && !expired)
        uv_run(&E.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&E.loop, UV_RUN_NOWAIT);
    cr_assert(*flag, "timed out waiting for the CCD");
}

struct wait {
    bool done;
    int status;
};

static void ready_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct wait *w = data;
    w->done = true;
    w->status = status;
}

static void done_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    ready_cb(ccd, status, data);
}

static void closed_cb(void *data)
{
    *(bool *)data = true;
}

static void watch_cb(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key, bool removed,
                     void *data)
{
    (void)ccd;
    (void)data;
    struct event ev = {table, g_strdup(key), removed};
    g_array_append_val(E.events, ev);
}

static int open_ccd(unsigned threshold, unsigned trailing, char **errmsg, struct ndfs_ccd **out)
{
    struct ndfs_ccd_config cfg = {.data_dir = E.dir,
                                  .node_name = NODE,
                                  .snapshot_threshold = threshold,
                                  .snapshot_trailing = trailing};
    return ndfs_ccd_open(&E.loop, &cfg, out, errmsg);
}

static void start_ccd(unsigned threshold, unsigned trailing)
{
    g_autofree char *errmsg = NULL;
    cr_assert_eq(open_ccd(threshold, trailing, &errmsg, &E.ccd), 0, "open: %s", errmsg);
    ndfs_ccd_set_watch(E.ccd, watch_cb, NULL);
    struct wait w = {0};
    int64_t t0 = g_get_monotonic_time();
    cr_assert_eq(ndfs_ccd_start(E.ccd, ready_cb, &w), 0, "start: %s", ndfs_ccd_errmsg(E.ccd));
    run_until(&w.done);
    E.start_us = g_get_monotonic_time() - t0;
    cr_assert_eq(w.status, 0, "ready: %s", ndfs_ccd_errmsg(E.ccd));
}

static void close_ccd(void)
{
    bool closed = false;
    ndfs_ccd_close(E.ccd, closed_cb, &closed);
    run_until(&closed);
    E.ccd = NULL;
}

static void clear_events(void)
{
    for (guint i = 0; i < E.events->len; i++)
        g_free(g_array_index(E.events, struct event, i).key);
    g_array_set_size(E.events, 0);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as ndfsd does */
    cr_assert_eq(uv_loop_init(&E.loop), 0);
    E.dir = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(E.dir);
    E.events = g_array_new(FALSE, TRUE, sizeof(struct event));
    start_ccd(0, 0);
}

static void teardown(void)
{
    if (E.ccd)
        close_ccd();
    clear_events();
    g_array_free(E.events, TRUE);
    cr_assert_eq(uv_loop_close(&E.loop), 0, "every handle is closed");
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", E.dir);
    cr_assert_eq(system(cmd), 0);
    g_free(E.dir);
}

static struct ndfs_vdisk make_vdisk(const char *name)
{
    return (struct ndfs_vdisk){.size = 1 << 20,
                               .mode = 0660,
                               .version = 1,
                               .name = (char *)name,
                               .owner = "root",
                               .group = "disk",
                               .primary_node = NODE,
                               .primary_path = "/var/lib/ndfs/disk.img"};
}

static int create(const struct ndfs_vdisk *v)
{
    struct wait w = {0};
    int rc = ndfs_ccd_vdisk_create(E.ccd, v, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static int update(const struct ndfs_vdisk *v)
{
    struct wait w = {0};
    int rc = ndfs_ccd_vdisk_update(E.ccd, v, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static int remove_vdisk(const char *name)
{
    struct wait w = {0};
    int rc = ndfs_ccd_vdisk_remove(E.ccd, name, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static uint64_t epoch(void)
{
    struct ndfs_ccd_status st;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &st), 0);
    uint64_t e = st.epoch;
    ndfs_ccd_status_clear(&st);
    return e;
}

TestSuite(ccd, .init = setup, .fini = teardown, .timeout = 90);

Test(ccd, bootstrap_fresh_dir_makes_one_voter_cluster)
{
    struct ndfs_ccd_status st;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &st), 0);
    cr_assert_eq(st.epoch, 1);
    cr_assert_str_eq(st.leader, NODE);
    cr_assert_eq(g_strv_length(st.members), 1);
    cr_assert_str_eq(st.members[0], NODE);
    cr_assert(g_uuid_string_is_valid(st.cluster_id), "cluster id %s", st.cluster_id);
    cr_assert_eq(st.vdisks, 0);
    cr_assert_gt(st.applied_index, 0);
    ndfs_ccd_status_clear(&st);
    /* a single voter elects itself at once, without an election timeout */
    cr_assert_lt(E.start_us, 900 * 1000, "ready after %lld us", (long long)E.start_us);

    struct ndfs_node n;
    cr_assert_eq(ndfs_ccd_node_get(E.ccd, NODE, &n), 0);
    cr_assert_eq(n.id, 1);
    cr_assert_eq(n.role, NDFS_NODE_VOTER);
    cr_assert_str_eq(n.address, "");
    ndfs_node_clear(&n);
    cr_assert_eq(ndfs_ccd_node_get(E.ccd, "n2", &n), -ENOENT);
}

static int collect_name(const struct ndfs_vdisk *v, void *data)
{
    g_ptr_array_add(data, g_strdup(v->name));
    return 0;
}

static int stop_at_first(const struct ndfs_vdisk *v, void *data)
{
    (void)v;
    (*(int *)data)++;
    return 42;
}

Test(ccd, create_get_list)
{
    struct ndfs_vdisk b = make_vdisk("b-disk"), a = make_vdisk("a.disk");
    b.secondary_node = "n2";
    b.secondary_path = "/dev/sdc";
    b.owner = "alice";
    b.mode = 0640;
    a.mtime_ns = 12345; /* the proposer's clock, kept as given */
    cr_assert_eq(create(&b), 0, "%s", ndfs_ccd_errmsg(E.ccd));
    cr_assert_eq(create(&a), 0);

    struct ndfs_vdisk got;
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "b-disk", &got), 0);
    cr_assert_eq(got.id, 1);
    cr_assert_eq(got.version, 1);
    cr_assert_eq(got.size, 1 << 20);
    cr_assert_eq(got.mode, 0640);
    cr_assert_str_eq(got.owner, "alice");
    cr_assert_str_eq(got.secondary_node, "n2");
    cr_assert_str_eq(got.secondary_path, "/dev/sdc");
    cr_assert_gt(got.mtime_ns, 1600000000ull * 1000000000ull);
    ndfs_vdisk_clear(&got);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "a.disk", &got), 0);
    cr_assert_eq(got.id, 2);
    cr_assert_eq(got.mtime_ns, 12345);
    cr_assert_null(got.secondary_node);
    ndfs_vdisk_clear(&got);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "nope", &got), -ENOENT);

    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    cr_assert_eq(ndfs_ccd_vdisk_foreach(E.ccd, collect_name, names), 0);
    cr_assert_eq(names->len, 2);
    cr_assert_str_eq(g_ptr_array_index(names, 0), "a.disk");
    cr_assert_str_eq(g_ptr_array_index(names, 1), "b-disk");
    int calls = 0;
    cr_assert_eq(ndfs_ccd_vdisk_foreach(E.ccd, stop_at_first, &calls), 42);
    cr_assert_eq(calls, 1);

    struct ndfs_ccd_status st;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &st), 0);
    cr_assert_eq(st.vdisks, 2);
    cr_assert_eq(st.epoch, 3, "each create bumps the epoch");
    ndfs_ccd_status_clear(&st);
}

Test(ccd, duplicate_name_is_eexist_and_changes_nothing)
{
    struct ndfs_vdisk v = make_vdisk("db1");
    cr_assert_eq(create(&v), 0);
    uint64_t before = epoch();
    v.size = 4096;
    cr_assert_eq(create(&v), -EEXIST);
    cr_assert_eq(epoch(), before);
    struct ndfs_vdisk got;
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "db1", &got), 0);
    cr_assert_eq(got.size, 1 << 20);
    ndfs_vdisk_clear(&got);
}

Test(ccd, update_checks_version_and_keeps_id)
{
    struct ndfs_vdisk v = make_vdisk("db1"), got;
    cr_assert_eq(create(&v), 0);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "db1", &got), 0);
    uint64_t id = got.id, before = epoch();

    got.mode = 0600;
    got.version = 7;
    cr_assert_eq(update(&got), -ESTALE);
    got.version = 1;
    got.id = 999; /* the id cannot change */
    cr_assert_eq(update(&got), 0);
    ndfs_vdisk_clear(&got);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "db1", &got), 0);
    cr_assert_eq(got.mode, 0600);
    cr_assert_eq(got.version, 2);
    cr_assert_eq(got.id, id);
    cr_assert_eq(epoch(), before, "a permission change is not a mapping change");
    got.version = 1; /* someone else's change made it 2 */
    cr_assert_eq(update(&got), -ESTALE);
    ndfs_vdisk_clear(&got);

    struct ndfs_vdisk missing = make_vdisk("missing");
    cr_assert_eq(update(&missing), -ENOENT);
}

Test(ccd, remove_deletes_and_bumps_epoch)
{
    struct ndfs_vdisk v = make_vdisk("db1"), got;
    uint64_t e0 = epoch();
    cr_assert_eq(create(&v), 0);
    cr_assert_eq(epoch(), e0 + 1);
    cr_assert_eq(remove_vdisk("db1"), 0);
    cr_assert_eq(epoch(), e0 + 2);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "db1", &got), -ENOENT);
    cr_assert_eq(remove_vdisk("db1"), -ENOENT);
    cr_assert_eq(epoch(), e0 + 2);

    /* ids are never reused */
    cr_assert_eq(create(&v), 0);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "db1", &got), 0);
    cr_assert_eq(got.id, 2);
    ndfs_vdisk_clear(&got);
}

static bool has_event(enum ndfs_ccd_table table, const char *key, bool removed)
{
    for (guint i = 0; i < E.events->len; i++) {
        struct event *ev = &g_array_index(E.events, struct event, i);
        if (ev->table == table && g_strcmp0(ev->key, key) == 0 && ev->removed == removed)
            return true;
    }
    return false;
}

Test(ccd, watch_reports_table_key_and_removal)
{
    clear_events();
    struct ndfs_vdisk v = make_vdisk("db1");
    cr_assert_eq(create(&v), 0);
    cr_assert(has_event(NDFS_CCD_VDISKS, "db1", false));
    cr_assert(has_event(NDFS_CCD_META, "epoch", false));
    cr_assert_not(has_event(NDFS_CCD_VDISKS, "db1", true));
    clear_events();
    cr_assert_eq(create(&v), -EEXIST);
    cr_assert_eq(E.events->len, 0, "a refused change reports nothing");
    cr_assert_eq(remove_vdisk("db1"), 0);
    cr_assert(has_event(NDFS_CCD_VDISKS, "db1", true));
}

Test(ccd, invalid_changes_are_refused_without_callback)
{
    struct ndfs_vdisk v = make_vdisk("..");
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(E.ccd, &v, done_cb, &w), -EINVAL);
    v = make_vdisk("ok");
    v.size = 1000;
    cr_assert_eq(ndfs_ccd_vdisk_create(E.ccd, &v, done_cb, &w), -EINVAL);
    cr_assert_eq(ndfs_ccd_vdisk_remove(E.ccd, "a/b", done_cb, &w), -EINVAL);
    cr_assert_str_neq(ndfs_ccd_errmsg(E.ccd), "");
    cr_assert_not(w.done);
}

Test(ccd, undecodable_entry_yields_ebadmsg)
{
    const uint8_t garbage[][4] = {{1, 99, 0, 0}, {9, 2, 0, 0}, {1, 2, 0xff, 0xff}};
    for (size_t i = 0; i < G_N_ELEMENTS(garbage); i++) {
        struct wait w = {0};
        cr_assert_eq(ccd_propose_raw(E.ccd, garbage[i], sizeof garbage[i], done_cb, &w), 0);
        run_until(&w.done);
        cr_assert_eq(w.status, -EBADMSG);
    }
    struct ndfs_vdisk v = make_vdisk("after");
    cr_assert_eq(create(&v), 0, "the log goes on");
}

static bool known_result(int status)
{
    return status == 0 || status == -EBADMSG || status == -EEXIST || status == -ENOENT ||
           status == -ESTALE;
}

Test(ccd, every_bit_flip_of_a_command_is_applied_or_refused)
{
    struct ndfs_vdisk v = make_vdisk("db1");
    struct raft_buffer cmd;
    cr_assert_eq(ccd_cmd_vdisk(CCD_OP_VDISK_CREATE, &v, &cmd), 0);
    g_autofree uint8_t *bytes = g_memdup2(cmd.base, cmd.len);
    size_t len = cmd.len;
    raft_free(cmd.base);

    unsigned applied = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        g_autofree uint8_t *flipped = g_memdup2(bytes, len);
        flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct wait w = {0};
        cr_assert_eq(ccd_propose_raw(E.ccd, flipped, len, done_cb, &w), 0);
        run_until(&w.done);
        cr_assert(known_result(w.status), "bit %zu: %d", bit, w.status);
        applied += w.status == 0;
    }
    cr_assert_gt(applied, 0);

    /* the replica rebuilt from that log is the same */
    struct ndfs_ccd_status before, after;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &before), 0);
    close_ccd();
    start_ccd(0, 0);
    cr_assert_eq(ndfs_ccd_status(E.ccd, &after), 0);
    cr_assert_eq(after.epoch, before.epoch);
    cr_assert_eq(after.vdisks, before.vdisks);
    ndfs_ccd_status_clear(&before);
    ndfs_ccd_status_clear(&after);
}

Test(ccd, second_open_is_ebusy_with_pid)
{
    struct ndfs_ccd *other = NULL;
    g_autofree char *errmsg = NULL;
    cr_assert_eq(open_ccd(0, 0, &errmsg, &other), -EBUSY);
    cr_assert_null(other);
    g_autofree char *pid = g_strdup_printf("(pid %ld)", (long)getpid());
    cr_assert_not_null(strstr(errmsg, "is in use by another ndfsd"), "%s", errmsg);
    cr_assert_not_null(strstr(errmsg, pid), "%s", errmsg);
    cr_assert_not_null(strstr(errmsg, E.dir), "%s", errmsg);
}

Test(ccd, close_cancels_pending_proposals)
{
    struct ndfs_vdisk v = make_vdisk("db1");
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(E.ccd, &v, done_cb, &w), 0);
    bool closed = false;
    ndfs_ccd_close(E.ccd, closed_cb, &closed);
    E.ccd = NULL;
    run_until(&closed);
    cr_assert(w.done, "the proposal's callback ran before close completed");
    cr_assert_eq(w.status, -ECANCELED);
}

/* name -> encoded row, to compare replicas byte for byte */
static int dump_vdisk(const struct ndfs_vdisk *v, void *data)
{
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ndfs_vdisk_encode(v, &buf, &len), 0);
    g_hash_table_insert(data, g_strdup(v->name), g_bytes_new_take(buf, len));
    return 0;
}

static GHashTable *dump_vdisks(void)
{
    GHashTable *t =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    cr_assert_eq(ndfs_ccd_vdisk_foreach(E.ccd, dump_vdisk, t), 0);
    return t;
}

static bool has_snapshot_file(const char *dir)
{
    g_autofree char *raft_dir = g_build_filename(dir, "raft", NULL);
    g_autoptr(GDir) d = g_dir_open(raft_dir, 0, NULL);
    cr_assert_not_null(d);
    const char *name;
    while ((name = g_dir_read_name(d)) != NULL)
        if (g_str_has_prefix(name, "snapshot-"))
            return true;
    return false;
}

Test(ccd, restart_from_snapshot_plus_log)
{
    close_ccd();
    start_ccd(16, 4);

    /* 100 changes: 40 creates, 40 updates, 20 removes */
    for (int i = 0; i < 40; i++) {
        g_autofree char *name = g_strdup_printf("vd%02d", i);
        struct ndfs_vdisk v = make_vdisk(name);
        v.size = (uint64_t)(i + 1) * 512;
        cr_assert_eq(create(&v), 0);
    }
    for (int i = 0; i < 40; i++) {
        g_autofree char *name = g_strdup_printf("vd%02d", i);
        struct ndfs_vdisk v;
        cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, name, &v), 0);
        v.mode = 0600 + (uint32_t)i;
        cr_assert_eq(update(&v), 0);
        ndfs_vdisk_clear(&v);
    }
    for (int i = 0; i < 40; i += 2) {
        g_autofree char *name = g_strdup_printf("vd%02d", i);
        cr_assert_eq(remove_vdisk(name), 0);
    }

    struct ndfs_ccd_status before, after;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &before), 0);
    cr_assert_eq(before.vdisks, 20);
    cr_assert_eq(before.epoch, 1 + 40 + 20);
    g_autoptr(GHashTable) rows_before = dump_vdisks();
    close_ccd();
    cr_assert(has_snapshot_file(E.dir), "Raft took snapshots");
    /* LMDB is not synced, so it may be garbage after a crash: only Raft counts */
    g_autofree char *lmdb_file = g_build_filename(E.dir, "ccd", "data.mdb", NULL);
    cr_assert(g_file_set_contents(lmdb_file, "garbage", -1, NULL));

    start_ccd(16, 4);
    cr_assert_eq(ndfs_ccd_status(E.ccd, &after), 0);
    cr_assert_str_eq(after.cluster_id, before.cluster_id);
    cr_assert_eq(after.epoch, before.epoch);
    cr_assert_eq(after.vdisks, before.vdisks);
    cr_assert_str_eq(after.leader, NODE);
    cr_assert_eq(g_strv_length(after.members), 1);
    cr_assert_str_eq(after.members[0], NODE);
    cr_assert_geq(after.applied_index, before.applied_index);
    g_autoptr(GHashTable) rows_after = dump_vdisks();
    cr_assert_eq(g_hash_table_size(rows_after), g_hash_table_size(rows_before));
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, rows_before);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        GBytes *now = g_hash_table_lookup(rows_after, key);
        cr_assert_not_null(now, "%s survived", (char *)key);
        cr_assert(g_bytes_equal(now, value), "%s is unchanged", (char *)key);
    }

    struct ndfs_vdisk v = make_vdisk("new-after-restart"), got;
    cr_assert_eq(create(&v), 0);
    cr_assert_eq(ndfs_ccd_vdisk_get(E.ccd, "new-after-restart", &got), 0);
    cr_assert_eq(got.id, 41, "ids continue after a restart");
    ndfs_vdisk_clear(&got);
    cr_assert_eq(epoch(), before.epoch + 1);
    cr_assert_eq(remove_vdisk("vd01"), 0);
    ndfs_ccd_status_clear(&before);
    ndfs_ccd_status_clear(&after);
}

struct close_later {
    uv_idle_t idle;
    int status;
    bool done;
    bool closed;
};

static void close_now(uv_idle_t *h)
{
    struct close_later *c = h->data;
    uv_close((uv_handle_t *)h, NULL);
    ndfs_ccd_close(E.ccd, closed_cb, &c->closed);
    E.ccd = NULL;
}

/* the change is being applied (Raft may take a snapshot right after it):
 * close on the loop's next turn, before the thread pool's work for that
 * snapshot is reported back */
static void close_on_apply(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key,
                           bool removed, void *data)
{
    (void)ccd;
    (void)table;
    (void)key;
    (void)removed;
    struct close_later *c = data;
    uv_idle_start(&c->idle, close_now);
}

static void close_later_done(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct close_later *c = data;
    c->done = true;
    c->status = status;
}

/* Raft takes a snapshot right after applying every third change here, and
 * stores it on the thread pool. Closing on the next turn of the loop closes
 * while that store is in flight (libraft reports it back after its io close
 * began), which is the path where ndfsd once died with SIGSEGV at shutdown,
 * inside libraft, with a freed io state. Every close must complete, and
 * nothing acknowledged may be lost. */
Test(ccd, close_right_after_changes_that_start_snapshots)
{
    close_ccd();
    start_ccd(3, 1);
    for (int i = 0; i < 12; i++) {
        g_autofree char *name = g_strdup_printf("vd%02d", i);
        struct ndfs_vdisk v = make_vdisk(name);
        struct close_later c = {0};
        cr_assert_eq(uv_idle_init(&E.loop, &c.idle), 0);
        c.idle.data = &c;
        ndfs_ccd_set_watch(E.ccd, close_on_apply, &c);
        cr_assert_eq(ndfs_ccd_vdisk_create(E.ccd, &v, close_later_done, &c), 0);
        run_until(&c.closed);
        cr_assert(c.done);
        start_ccd(3, 1);
        struct ndfs_ccd_status st;
        cr_assert_eq(ndfs_ccd_status(E.ccd, &st), 0);
        cr_assert_eq(st.vdisks, (uint64_t)i + 1, "vd%02d: status %d", i, c.status);
        ndfs_ccd_status_clear(&st);
    }
    cr_assert(has_snapshot_file(E.dir), "Raft took snapshots");
}

static void count_ready(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct wait *w = data;
    cr_assert_not(w->done, "ready_cb runs once");
    w->done = true;
    w->status = status;
}

Test(ccd, close_before_ready_reports_ecanceled_once)
{
    close_ccd();
    g_autofree char *errmsg = NULL;
    cr_assert_eq(open_ccd(0, 0, &errmsg, &E.ccd), 0, "%s", errmsg);
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_start(E.ccd, count_ready, &w), 0);
    bool closed = false;
    ndfs_ccd_close(E.ccd, closed_cb, &closed);
    E.ccd = NULL;
    run_until(&closed);
    cr_assert(w.done);
    cr_assert_eq(w.status, -ECANCELED);
}

Test(ccd, close_without_start)
{
    close_ccd();
    g_autofree char *errmsg = NULL;
    cr_assert_eq(open_ccd(0, 0, &errmsg, &E.ccd), 0, "%s", errmsg);
    close_ccd();
    /* the lock is released: the directory opens again */
    cr_assert_eq(open_ccd(0, 0, &errmsg, &E.ccd), 0, "%s", errmsg);
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

static int add_node(const char *name, enum ndfs_node_role role, uint64_t *id)
{
    char *addresses[] = {"127.0.1.9:7400", NULL};
    struct ndfs_node n = {
        .role = role, .name = (char *)name, .address = "", .addresses = addresses};
    struct added a = {0};
    int rc = ndfs_ccd_node_add(E.ccd, &n, added_cb, &a);
    if (rc != 0)
        return rc;
    run_until(&a.done);
    *id = a.id;
    return a.status;
}

static int remove_node(const char *name)
{
    struct wait w = {0};
    int rc = ndfs_ccd_node_remove(E.ccd, name, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static int set_members(const char *const *members)
{
    struct wait w = {0};
    int rc = ndfs_ccd_membership_set(E.ccd, members, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static enum ndfs_node_role role_of(const char *name)
{
    struct ndfs_node n;
    cr_assert_eq(ndfs_ccd_node_get(E.ccd, name, &n), 0, "node %s", name);
    enum ndfs_node_role role = n.role;
    ndfs_node_clear(&n);
    return role;
}

Test(ccd, node_add_assigns_ids_and_five_voters_at_most)
{
    uint64_t id = 0;
    const char *names[] = {"n2", "n3", "n4", "n5", "n6", "n7"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        cr_assert_eq(add_node(names[i], NDFS_NODE_VOTER, &id), 0);
        cr_assert_eq(id, i + 2);
        cr_assert(has_event(NDFS_CCD_NODES, names[i], false));
    }
    cr_assert_eq(role_of("n5"), NDFS_NODE_VOTER);
    cr_assert_eq(role_of("n6"), NDFS_NODE_STANDBY);
    cr_assert_eq(role_of("n7"), NDFS_NODE_STANDBY);
    cr_assert_eq(add_node("n3", NDFS_NODE_VOTER, &id), -EEXIST);

    struct ndfs_node n;
    cr_assert_eq(ndfs_ccd_node_get(E.ccd, "n2", &n), 0);
    cr_assert_str_eq(n.addresses[0], "127.0.1.9:7400");
    ndfs_node_clear(&n);

    /* removing a voter promotes the standby with the lowest id; ids are not reused */
    cr_assert_eq(remove_node("n3"), 0);
    cr_assert(has_event(NDFS_CCD_NODES, "n3", true));
    cr_assert_eq(role_of("n6"), NDFS_NODE_VOTER);
    cr_assert_eq(role_of("n7"), NDFS_NODE_STANDBY);
    cr_assert_eq(remove_node("n3"), -ENOENT);
    cr_assert_eq(add_node("n3", NDFS_NODE_VOTER, &id), 0);
    cr_assert_eq(id, 8);
    cr_assert_eq(role_of("n3"), NDFS_NODE_STANDBY);

    /* without a transport, Raft keeps its one voter */
    unsigned total = 0;
    g_auto(GStrv) voters = ndfs_ccd_voters(E.ccd, &total);
    cr_assert_eq(total, 1);
    cr_assert_str_eq(voters[0], NODE);
    cr_assert_eq(ndfs_ccd_server_role(E.ccd, NODE), NDFS_NODE_VOTER);
    cr_assert_eq(ndfs_ccd_server_role(E.ccd, "n2"), 0);
    cr_assert(ndfs_ccd_quorum(E.ccd, NULL, NULL, NULL, NULL));
    cr_assert(ndfs_ccd_is_leader(E.ccd));
    char leader[NDFS_NODE_NAME_MAX + 1];
    ndfs_ccd_leader(E.ccd, leader);
    cr_assert_str_eq(leader, NODE);
    cr_assert_eq(ndfs_ccd_node_id(E.ccd), 1);
}

Test(ccd, node_remove_refuses_a_vdisk_node_and_the_last_voter)
{
    uint64_t id;
    cr_assert_eq(add_node("n2", NDFS_NODE_STANDBY, &id), 0);
    cr_assert_eq(role_of("n2"), NDFS_NODE_STANDBY);
    struct ndfs_vdisk v = make_vdisk("db1");
    v.secondary_node = "n2";
    v.secondary_path = "/dev/sdb";
    cr_assert_eq(create(&v), 0);
    cr_assert_eq(remove_node("n2"), -EBUSY);
    cr_assert_eq(remove_vdisk("db1"), 0);
    cr_assert_eq(remove_node("n2"), 0);
    cr_assert_eq(remove_node(NODE), -EINVAL);
    cr_assert_eq(ndfs_ccd_node_remove(E.ccd, "Bad Name", done_cb, NULL), -EINVAL);
}

static int node_link(const char *name, const char *address, bool add)
{
    struct wait w = {0};
    int rc = ndfs_ccd_node_link(E.ccd, name, address, add, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

/* n2's addresses joined with ';' ("" entries show as empty fields). */
static char *addresses_of(const char *name)
{
    struct ndfs_node n;
    cr_assert_eq(ndfs_ccd_node_get(E.ccd, name, &n), 0);
    char *joined = g_strjoinv(";", n.addresses);
    ndfs_node_clear(&n);
    return joined;
}

Test(ccd, node_link_adds_into_free_indexes_and_removes_keeping_the_others)
{
    uint64_t id;
    cr_assert_eq(add_node("n2", NDFS_NODE_VOTER, &id), 0);
    cr_assert_eq(add_node("n3", NDFS_NODE_VOTER, &id), 0); /* has 127.0.1.9:7400 too: fine */
    g_free(addresses_of("n2"));

    cr_assert_eq(node_link("n2", "10.0.2.2:7400", true), 1, "a new index");
    cr_assert_eq(node_link("n2", "10.0.3.2:7400", true), 2);
    cr_assert(has_event(NDFS_CCD_NODES, "n2", false));
    g_autofree char *a = addresses_of("n2");
    cr_assert_str_eq(a, "127.0.1.9:7400;10.0.2.2:7400;10.0.3.2:7400");

    cr_assert_eq(node_link("n2", "10.0.2.2:7400", true), -EEXIST);
    cr_assert_eq(node_link("n4", "10.0.4.2:7400", true), -ENOENT);
    cr_assert_eq(node_link("n3", "10.0.2.2:7400", true), -EADDRINUSE);

    /* removing the first leaves its index empty; the others keep theirs */
    cr_assert_eq(node_link("n2", "127.0.1.9:7400", false), 0);
    g_autofree char *b = addresses_of("n2");
    cr_assert_str_eq(b, ";10.0.2.2:7400;10.0.3.2:7400");
    cr_assert_eq(node_link("n2", "127.0.1.9:7400", false), -ENOENT);
    /* the next address takes the empty index */
    cr_assert_eq(node_link("n2", "10.0.1.2:7400", true), 0);
    /* removing the last drops it (and empty indexes before it) */
    cr_assert_eq(node_link("n2", "10.0.3.2:7400", false), 2);
    g_autofree char *c = addresses_of("n2");
    cr_assert_str_eq(c, "10.0.1.2:7400;10.0.2.2:7400");
    cr_assert_eq(node_link("n2", "10.0.1.2:7400", false), 0);
    cr_assert_eq(node_link("n2", "10.0.2.2:7400", false), -EINVAL, "its last address stays");
    g_autofree char *d = addresses_of("n2");
    cr_assert_str_eq(d, ";10.0.2.2:7400");

    for (int i = 3; i <= 9; i++) {
        g_autofree char *addr = g_strdup_printf("10.0.%d.2:7400", i);
        cr_assert_eq(node_link("n2", addr, true), i == 3 ? 0 : i - 2, "%s", addr);
    }
    cr_assert_eq(node_link("n2", "10.0.10.2:7400", true), -ENOSPC);
    cr_assert_eq(ndfs_ccd_node_link(E.ccd, "n2", "", true, done_cb, NULL), -EINVAL);
    cr_assert_eq(ndfs_ccd_node_link(E.ccd, "Bad Name", "10.0.9.2:7400", true, done_cb, NULL),
                 -EINVAL);
}

Test(ccd, membership_set_bumps_the_epoch_only_on_a_change)
{
    uint64_t e0 = epoch();
    const char *three[] = {"n1", "n2", "n3", NULL};
    cr_assert_eq(set_members(three), 0);
    cr_assert_eq(epoch(), e0 + 1);
    cr_assert(has_event(NDFS_CCD_MEMBERSHIP, CCD_MEMBERSHIP_KEY, false));
    cr_assert_eq(set_members(three), 0);
    cr_assert_eq(epoch(), e0 + 1);
    const char *two[] = {"n1", "n3", NULL};
    cr_assert_eq(set_members(two), 0);
    struct ndfs_ccd_status st;
    cr_assert_eq(ndfs_ccd_status(E.ccd, &st), 0);
    cr_assert_eq(st.epoch, e0 + 2);
    cr_assert_eq(g_strv_length(st.members), 2);
    cr_assert_str_eq(st.members[1], "n3");
    ndfs_ccd_status_clear(&st);
    const char *bad[] = {"N1", NULL};
    cr_assert_eq(ndfs_ccd_membership_set(E.ccd, bad, done_cb, NULL), -EINVAL);

    /* the log replays to the same state */
    close_ccd();
    start_ccd(0, 0);
    cr_assert_eq(epoch(), e0 + 2);
    cr_assert_eq(ndfs_ccd_node_id(E.ccd), 1);
}

/* ndfs_ccd_wait_applied: read your writes for changes relayed from the leader. */
struct applied_wait {
    bool done;
    int status;
    int get_rc; /* the vdisk "w" read in the callback */
    int64_t at_us;
};

static void applied_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    struct applied_wait *w = data;
    struct ndfs_vdisk v = {0};
    w->done = true;
    w->status = status;
    w->at_us = g_get_monotonic_time();
    w->get_rc = ndfs_ccd_vdisk_get(ccd, "w", &v);
    ndfs_vdisk_clear(&v);
}

Test(ccd, wait_applied_for_an_applied_index_calls_back_later_with_0)
{
    uint64_t applied = ndfs_ccd_applied_index(E.ccd);
    cr_assert_gt(applied, 0);
    struct applied_wait w = {0};
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied, 1000, applied_cb, &w), 0);
    cr_assert_not(w.done, "never called back from within the call");
    run_until(&w.done);
    cr_assert_eq(w.status, 0);
}

Test(ccd, wait_applied_ends_when_the_entry_is_applied)
{
    uint64_t applied = ndfs_ccd_applied_index(E.ccd);
    struct applied_wait w = {0};
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied + 1, 20000, applied_cb, &w), 0);
    struct ndfs_vdisk v = make_vdisk("w");
    struct wait c = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(E.ccd, &v, done_cb, &c), 0);
    run_until(&w.done);
    cr_assert_eq(w.status, 0);
    cr_assert_eq(w.get_rc, 0, "the change is readable when the wait ends");
    cr_assert_geq(ndfs_ccd_applied_index(E.ccd), applied + 1);
    run_until(&c.done);
    cr_assert_eq(c.status, 0);
}

Test(ccd, wait_applied_times_out_for_an_index_never_reached)
{
    uint64_t applied = ndfs_ccd_applied_index(E.ccd);
    struct applied_wait slow = {0}, fast = {0}, now = {0};
    int64_t t0 = g_get_monotonic_time();
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied + 1000, 300, applied_cb, &slow), 0);
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied + 1000, 100, applied_cb, &fast), 0);
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied, 5000, applied_cb, &now), 0);
    run_until(&now.done);
    cr_assert_eq(now.status, 0);
    cr_assert_not(fast.done);
    run_until(&fast.done);
    cr_assert_eq(fast.status, -ETIMEDOUT);
    cr_assert_geq(fast.at_us - t0, 90 * 1000, "timed out after %lld us",
                  (long long)(fast.at_us - t0));
    cr_assert_not(slow.done);
    run_until(&slow.done);
    cr_assert_eq(slow.status, -ETIMEDOUT);
    cr_assert_geq(slow.at_us - t0, 290 * 1000);
}

Test(ccd, wait_applied_is_cancelled_by_close)
{
    struct applied_wait w = {0};
    uint64_t applied = ndfs_ccd_applied_index(E.ccd);
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied + 1000, 20000, applied_cb, &w), 0);
    bool closed = false;
    ndfs_ccd_close(E.ccd, closed_cb, &closed);
    cr_assert(w.done);
    cr_assert_eq(w.status, -ECANCELED);
    struct applied_wait late = {0};
    cr_assert_eq(ndfs_ccd_wait_applied(E.ccd, applied, 1000, applied_cb, &late), -ECANCELED);
    run_until(&closed);
    E.ccd = NULL;
    cr_assert_not(late.done);
}

/* ---- restart with a transport: ready from the local replica ---- */

struct rnode {
    char name[8];
    char address[32];
    char *dir;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct wait ready;
    bool current_at_ready; /* ndfs_ccd_current() in the ready callback */
    uint64_t vdisks_at_ready;
};

static struct rnode R[2];

static void r_event_cb(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                       int link, void *data)
{
    (void)t;
    (void)link;
    struct rnode *n = data;
    if (n->ccd)
        ndfs_ccd_transport_event(n->ccd, peer, ev);
}

static void r_ready_cb(struct ndfs_ccd *ccd, int status, void *data)
{
    struct rnode *n = data;
    struct ndfs_ccd_status st;
    n->current_at_ready = ndfs_ccd_current(ccd);
    if (status == 0 && ndfs_ccd_status(ccd, &st) == 0) {
        n->vdisks_at_ready = st.vdisks;
        ndfs_ccd_status_clear(&st);
    }
    ready_cb(ccd, status, &n->ready);
}

static void r_start(int i, bool join, uint64_t id)
{
    struct rnode *n = &R[i];
    static const uint8_t key[32] = {7, 7, 7};
    const char *listen[] = {n->address, NULL};
    g_autofree char *errmsg = NULL;
    struct ndfs_transport_config tc = {.name = n->name,
                                       .listen = listen,
                                       .key = key,
                                       .key_len = sizeof key,
                                       .heartbeat_interval_ms = 100,
                                       .failure_timeout_ms = 1000};
    cr_assert_eq(ndfs_transport_new(&E.loop, &tc, &n->t, &errmsg), 0, "%s", errmsg);
    ndfs_transport_set_event_cb(n->t, r_event_cb, n);
    cr_assert_eq(ndfs_transport_start(n->t, &errmsg), 0, "%s", errmsg);
    struct ndfs_ccd_config cfg = {.data_dir = n->dir,
                                  .node_name = n->name,
                                  .transport = n->t,
                                  .addresses = listen,
                                  .join = join,
                                  .node_id = id,
                                  .election_timeout_ms = 1000,
                                  .heartbeat_timeout_ms = 100};
    cr_assert_eq(ndfs_ccd_open(&E.loop, &cfg, &n->ccd, &errmsg), 0, "open: %s", errmsg);
    n->ready = (struct wait){0};
    cr_assert_eq(ndfs_ccd_start(n->ccd, r_ready_cb, n), 0, "%s", ndfs_ccd_errmsg(n->ccd));
}

static void r_ready(int i)
{
    run_until(&R[i].ready.done);
    cr_assert_eq(R[i].ready.status, 0, "%s ready: %s", R[i].name, ndfs_ccd_errmsg(R[i].ccd));
}

static void transport_closed(void *data)
{
    *(bool *)data = true;
}

static void r_stop(int i)
{
    struct rnode *n = &R[i];
    if (n->ccd) {
        bool closed = false;
        ndfs_ccd_close(n->ccd, closed_cb, &closed);
        run_until(&closed);
        n->ccd = NULL;
    }
    if (n->t) {
        bool closed = false;
        ndfs_transport_close(n->t, transport_closed, &closed);
        run_until(&closed);
        n->t = NULL;
    }
}

static void restart_setup(void)
{
    /* as ndfsd does: libuv (and raft_uv) write with write(2), and a peer
     * that closed its end must be an error code, not the end of the process */
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(uv_loop_init(&E.loop), 0);
    E.dir = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(E.dir);
    E.events = g_array_new(FALSE, TRUE, sizeof(struct event));
    unsigned port = 20000 + (unsigned)getpid() % 20000;
    for (int i = 0; i < 2; i++) {
        R[i] = (struct rnode){0};
        g_snprintf(R[i].name, sizeof R[i].name, "n%d", i + 1);
        g_snprintf(R[i].address, sizeof R[i].address, "127.0.9.%d:%u", i + 1, port);
        R[i].dir = g_build_filename(E.dir, R[i].name, NULL);
    }
}

static void restart_teardown(void)
{
    for (int i = 0; i < 2; i++) {
        r_stop(i);
        g_free(R[i].dir);
    }
    teardown();
}

/* Polls cond(i) every 10 ms until it holds (run_until's deadline). */
static bool (*poll_cond)(int i);
static int poll_node;

static void poll_cb(uv_timer_t *t)
{
    if (poll_cond(poll_node))
        *(bool *)t->data = true;
}

static void wait_for(bool (*cond)(int i), int i)
{
    uv_timer_t poll;
    bool done = false;
    poll_cond = cond;
    poll_node = i;
    uv_timer_init(&E.loop, &poll);
    poll.data = &done;
    uv_timer_start(&poll, poll_cb, 0, 10);
    run_until(&done);
    uv_close((uv_handle_t *)&poll, NULL);
    uv_run(&E.loop, UV_RUN_NOWAIT);
}

static bool is_current(int i)
{
    return ndfs_ccd_current(R[i].ccd);
}

static bool two_voters(int i)
{
    unsigned total = 0;
    g_strfreev(ndfs_ccd_voters(R[i].ccd, &total));
    return total == 2 && R[i].ccd->raft.configuration_uncommitted_index == 0;
}

static bool applied_as_n1(int i)
{
    return ndfs_ccd_applied_index(R[i].ccd) >= ndfs_ccd_applied_index(R[0].ccd);
}

static void r_added_cb(struct ndfs_ccd *ccd, int status, uint64_t id, void *data)
{
    (void)ccd;
    struct wait *w = data;
    w->done = true;
    w->status = status < 0 ? status : (int)id;
}

static int r_create(int i, const char *name)
{
    struct ndfs_vdisk v = make_vdisk(name);
    struct wait w = {0};
    int rc = ndfs_ccd_vdisk_create(R[i].ccd, &v, done_cb, &w);
    if (rc != 0)
        return rc;
    run_until(&w.done);
    return w.status;
}

static uint64_t vdisk_count(int i)
{
    struct ndfs_ccd_status st;
    cr_assert_eq(ndfs_ccd_status(R[i].ccd, &st), 0);
    uint64_t n = st.vdisks;
    ndfs_ccd_status_clear(&st);
    return n;
}

TestSuite(ccd_restart, .init = restart_setup, .fini = restart_teardown, .timeout = 120);

/* Two voters stop; n2 restarts alone: ready at once from its own log (no
 * snapshot: libraft alone would apply nothing), reads work, changes fail
 * (-ENOTCONN), not current. n1 back: both current, changes work. With an
 * unreadable <data_dir>/applied, n2 alone waits for the leader instead. */
Test(ccd_restart, a_node_restarted_alone_is_ready_from_its_replica)
{
    r_start(0, false, 0);
    r_ready(0);
    char *addresses[] = {R[1].address, NULL};
    struct ndfs_node row = {
        .role = NDFS_NODE_VOTER, .name = R[1].name, .address = "", .addresses = addresses};
    struct wait added = {0};
    cr_assert_eq(ndfs_ccd_node_add(R[0].ccd, &row, r_added_cb, &added), 0);
    run_until(&added.done);
    cr_assert_eq(added.status, 2, "node add: %d", added.status);
    r_start(1, true, 2);
    r_ready(1);
    cr_assert(R[1].current_at_ready, "a node that joins is ready once current");
    wait_for(two_voters, 0);
    for (int k = 0; k < 3; k++) {
        g_autofree char *name = g_strdup_printf("r%d", k);
        cr_assert_eq(r_create(0, name), 0);
    }
    wait_for(applied_as_n1, 1);
    r_stop(0);
    r_stop(1);

    /* n2 alone */
    r_start(1, true, 0);
    r_ready(1);
    cr_assert_not(R[1].current_at_ready);
    cr_assert_eq(R[1].vdisks_at_ready, 3, "n2 alone was ready with %" PRIu64 " vdisks",
                 R[1].vdisks_at_ready);
    struct ndfs_vdisk v;
    cr_assert_eq(ndfs_ccd_vdisk_get(R[1].ccd, "r2", &v), 0);
    ndfs_vdisk_clear(&v);
    char leader[NDFS_NODE_NAME_MAX + 1];
    ndfs_ccd_leader(R[1].ccd, leader);
    cr_assert_str_eq(leader, "");
    cr_assert_eq(r_create(1, "x"), -ENOTCONN, "a change without a leader");

    /* n1 back: a leader, both current, changes work and reach n2 */
    r_start(0, false, 0);
    r_ready(0);
    wait_for(is_current, 0);
    wait_for(is_current, 1);
    int leader_i = ndfs_ccd_is_leader(R[0].ccd) ? 0 : 1;
    cr_assert_eq(r_create(leader_i, "r3"), 0);
    wait_for(applied_as_n1, 1);
    cr_assert_eq(vdisk_count(1), 4);
    r_stop(0);
    r_stop(1);

    /* an unreadable applied index: n2 alone is not ready without a leader */
    g_autofree char *path = g_build_filename(R[1].dir, "applied", NULL);
    cr_assert(g_file_set_contents(path, "00000000000000000009 00000000000000000008\n", -1, NULL));
    r_start(1, true, 0);
    uv_timer_t wait;
    bool waited = false;
    uv_timer_init(&E.loop, &wait);
    wait.data = &waited;
    uv_timer_start(&wait, deadline_cb, 2000, 0);
    run_until(&waited);
    uv_close((uv_handle_t *)&wait, NULL);
    cr_assert_not(R[1].ready.done, "n2 ready without its applied index nor a leader");
    r_start(0, false, 0);
    r_ready(1);
    cr_assert(R[1].current_at_ready);
    cr_assert_eq(R[1].vdisks_at_ready, 4);
}
