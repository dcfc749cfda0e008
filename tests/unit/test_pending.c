/* The driver's pending table. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "ndfs/io_proto.h"
#include "ndfs/pending.h"

static struct pending_entry entry(uint64_t id, uint64_t vdisk, uint8_t op, uint64_t offset)
{
    struct pending_entry e = {
        .id = id,
        .vdisk_id = vdisk,
        .op = op,
        .offset = offset,
        .length = 4096,
        .epoch = 3,
        .peer = "n1",
    };
    return e;
}

Test(pending, add_find_complete)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry e = entry(1, 10, NDFS_IO_WRITE, 8192), *stored = NULL;
    int owner;
    e.owner = &owner;
    cr_assert_eq(pending_table_add(t, &e, &stored), 0);
    cr_assert_neq(stored, &e, "the table keeps a copy");
    cr_assert_neq(stored->peer, e.peer, "and its own peer string");
    cr_assert_eq(pending_table_find(t, 1), stored);
    cr_assert_null(pending_table_find(t, 2));
    cr_assert_eq(pending_table_count(t), 1);

    struct pending_entry done;
    cr_assert_eq(pending_table_complete(t, 1, &done), 0);
    cr_assert_eq(done.id, 1);
    cr_assert_eq(done.vdisk_id, 10);
    cr_assert_eq(done.offset, 8192);
    cr_assert_eq(done.owner, &owner);
    cr_assert_str_eq(done.peer, "n1");
    g_free(done.peer);
    cr_assert_null(pending_table_find(t, 1), "an answered entry is gone");
    cr_assert_eq(pending_table_count(t), 0);
    cr_assert_eq(pending_table_count_vdisk(t, 10), 0);
    cr_assert_eq(pending_table_complete(t, 1, NULL), -ENOENT, "a duplicate answer");
    pending_table_free(t);
}

Test(pending, duplicate_id_refused)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry e = entry(5, 1, NDFS_IO_READ, 0);
    cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    e.vdisk_id = 2;
    cr_assert_eq(pending_table_add(t, &e, NULL), -EEXIST);
    cr_assert_eq(pending_table_count(t), 1);
    cr_assert_eq(pending_table_count_vdisk(t, 2), 0);
    pending_table_free(t);
}

struct collected {
    uint64_t ids[64];
    size_t n;
    size_t stop_after;
};

static int collect(struct pending_entry *e, void *data)
{
    struct collected *c = data;
    c->ids[c->n++] = e->id;
    return c->stop_after && c->n == c->stop_after ? 42 : 0;
}

Test(pending, iterate_by_vdisk_in_order_of_adding)
{
    struct pending_table *t = pending_table_new();
    /* ids not sorted: order is that of adding, not of ids */
    const uint64_t ids[] = {9, 3, 7, 1, 20, 4, 11};
    const uint64_t vdisks[] = {1, 2, 1, 1, 2, 1, 3};
    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        struct pending_entry e = entry(ids[i], vdisks[i], NDFS_IO_WRITE, i * 4096);
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    struct collected c = {0};
    cr_assert_eq(pending_table_foreach_vdisk(t, 1, collect, &c), 0);
    cr_assert_eq(c.n, 4);
    const uint64_t want1[] = {9, 7, 1, 4};
    cr_assert_arr_eq(c.ids, want1, sizeof(want1));

    /* completing one in the middle keeps the others in order */
    cr_assert_eq(pending_table_complete(t, 7, NULL), 0);
    memset(&c, 0, sizeof(c));
    pending_table_foreach_vdisk(t, 1, collect, &c);
    const uint64_t want2[] = {9, 1, 4};
    cr_assert_eq(c.n, 3);
    cr_assert_arr_eq(c.ids, want2, sizeof(want2));

    memset(&c, 0, sizeof(c));
    pending_table_foreach(t, collect, &c);
    const uint64_t want_all[] = {9, 3, 1, 20, 4, 11};
    cr_assert_eq(c.n, 6);
    cr_assert_arr_eq(c.ids, want_all, sizeof(want_all));

    memset(&c, 0, sizeof(c));
    cr_assert_eq(pending_table_foreach_vdisk(t, 99, collect, &c), 0);
    cr_assert_eq(c.n, 0, "an unknown vdisk has nothing pending");

    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    cr_assert_eq(pending_table_foreach(t, collect, &c), 42, "fn's value stops the walk");
    cr_assert_eq(c.n, 2);
    pending_table_free(t);
}

Test(pending, remove_and_set_peer)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry e = entry(1, 1, NDFS_IO_READ, 0), *stored;
    e.peer = NULL;
    cr_assert_eq(pending_table_add(t, &e, &stored), 0);
    cr_assert_null(stored->peer);
    pending_entry_set_peer(stored, "n2");
    cr_assert_str_eq(stored->peer, "n2");
    pending_entry_set_peer(stored, stored->peer);
    cr_assert_str_eq(stored->peer, "n2");
    pending_table_remove(t, stored);
    cr_assert_null(pending_table_find(t, 1));
    cr_assert_eq(pending_table_count_vdisk(t, 1), 0);
    /* the vdisk's list is made again after it emptied */
    e.id = 2;
    cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    cr_assert_eq(pending_table_count_vdisk(t, 1), 1);
    pending_table_free(t); /* frees what is left */
}

Test(pending, many_entries)
{
    struct pending_table *t = pending_table_new();
    for (uint64_t id = 1; id <= 10000; id++) {
        struct pending_entry e = entry(id, id % 7, NDFS_IO_READ, id * 512);
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    for (uint64_t id = 2; id <= 10000; id += 2)
        cr_assert_eq(pending_table_complete(t, id, NULL), 0);
    cr_assert_eq(pending_table_count(t), 5000);
    for (uint64_t id = 1; id <= 10000; id += 2)
        cr_assert_not_null(pending_table_find(t, id));
    pending_table_free(t);
}

Test(pending, sent_counts)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry *a, *b;
    struct pending_entry e = entry(1, 4, NDFS_IO_WRITE, 0);
    cr_assert_eq(pending_table_add(t, &e, &a), 0);
    e = entry(2, 4, NDFS_IO_WRITE, 4096);
    cr_assert_eq(pending_table_add(t, &e, &b), 0);
    cr_assert_eq(pending_table_count_unsent(t), 2);
    cr_assert_eq(pending_table_count_sent_vdisk(t, 4), 0);
    pending_table_set_sent(t, a, true);
    pending_table_set_sent(t, a, true); /* twice: counted once */
    cr_assert_eq(pending_table_count_unsent(t), 1);
    cr_assert_eq(pending_table_count_sent_vdisk(t, 4), 1);
    cr_assert_eq(pending_table_complete(t, 1, NULL), 0);
    cr_assert_eq(pending_table_count_sent_vdisk(t, 4), 0, "an answered sent entry is gone");
    cr_assert_eq(pending_table_count_unsent(t), 1);
    pending_table_remove(t, b);
    cr_assert_eq(pending_table_count_unsent(t), 0);
    size_t n;
    uint64_t *v = pending_table_vdisks(t, &n);
    cr_assert_eq(n, 0);
    g_free(v);
    pending_table_free(t);
}

/* A send round's callback: holds what its list says, sends the rest. */
struct round {
    struct pending_table *t;
    uint64_t hold[8];
    size_t nhold;
    uint64_t gone;
    uint64_t seen[64];
    size_t nseen;
};

static enum pending_step round_fn(struct pending_entry *e, void *data)
{
    struct round *r = data;
    r->seen[r->nseen++] = e->id;
    for (size_t i = 0; i < r->nhold; i++)
        if (r->hold[i] == e->id)
            return PENDING_HOLD;
    if (e->id == r->gone) {
        pending_table_remove(r->t, e);
        return PENDING_GONE;
    }
    pending_table_set_sent(r->t, e, true);
    return PENDING_SENT;
}

Test(pending, send_round_keeps_order_per_vdisk)
{
    struct pending_table *t = pending_table_new();
    /* vdisk 1: 1 3 5 6; vdisk 2: 2 4 7 */
    const uint64_t vdisks[] = {1, 2, 1, 2, 1, 1, 2};
    for (uint64_t id = 1; id <= 7; id++) {
        struct pending_entry e = entry(id, vdisks[id - 1], NDFS_IO_WRITE, id * 4096);
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    struct round r = {.t = t, .hold = {3}, .nhold = 1, .gone = 4};
    cr_assert_eq(pending_table_send_round(t, round_fn, &r), 3);
    /* 3 held: 5 and 6 (later, same vdisk) are not even offered; 4 removed */
    const uint64_t want[] = {1, 2, 3, 4, 7};
    cr_assert_eq(r.nseen, 5);
    cr_assert_arr_eq(r.seen, want, sizeof(want));
    cr_assert_null(pending_table_find(t, 4));
    cr_assert_eq(pending_table_count_unsent(t), 3);

    /* the next round starts again from the oldest unsent one, in order */
    struct round r2 = {.t = t};
    cr_assert_eq(pending_table_send_round(t, round_fn, &r2), 3);
    const uint64_t want2[] = {3, 5, 6};
    cr_assert_eq(r2.nseen, 3);
    cr_assert_arr_eq(r2.seen, want2, sizeof(want2));
    cr_assert_eq(pending_table_count_unsent(t), 0);
    struct round r3 = {.t = t};
    cr_assert_eq(pending_table_send_round(t, round_fn, &r3), 0);
    cr_assert_eq(r3.nseen, 0, "nothing unsent: nothing offered");
    pending_table_free(t);
}

static const char *master_of(uint64_t vdisk_id, void *data)
{
    (void)data;
    return vdisk_id == 1 ? "n2" : vdisk_id == 2 ? "n1" : NULL;
}

Test(pending, reroute_selects_entries_whose_master_changed)
{
    struct pending_table *t = pending_table_new();
    /* vdisk 1 moved n1 -> n2; vdisk 2 stays on n1; vdisk 3 has no master */
    struct {
        uint64_t id, vdisk;
        const char *peer;
        bool sent;
    } rows[] = {
        {1, 1, "n1", true}, {2, 2, "n1", true}, {3, 1, "n2", true},  {4, 1, "n1", false},
        {5, 3, "n1", true}, {6, 1, "n1", true}, {7, 2, NULL, false},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
        struct pending_entry e = entry(rows[i].id, rows[i].vdisk, NDFS_IO_WRITE, i * 4096);
        e.peer = (char *)rows[i].peer;
        e.sent = rows[i].sent;
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    cr_assert_eq(pending_table_count_unsent(t), 2);
    cr_assert_eq(pending_table_reroute(t, master_of, NULL), 3);
    cr_assert_not(pending_table_find(t, 1)->sent, "sent to the old master: replayed");
    cr_assert(pending_table_find(t, 2)->sent, "its master did not change");
    cr_assert(pending_table_find(t, 3)->sent, "sent to the new master already");
    cr_assert_not(pending_table_find(t, 5)->sent, "no master now: waits");
    cr_assert_not(pending_table_find(t, 6)->sent);
    cr_assert_eq(pending_table_count_unsent(t), 5);
    cr_assert_eq(pending_table_count_sent_vdisk(t, 1), 1);

    /* the replay goes oldest first: 1, 4, 6 of vdisk 1 */
    struct round r = {.t = t};
    pending_table_send_round(t, round_fn, &r);
    const uint64_t want[] = {1, 4, 5, 6, 7};
    cr_assert_eq(r.nseen, 5);
    cr_assert_arr_eq(r.seen, want, sizeof(want));
    pending_table_free(t);
}

Test(pending, set_peer_same_name_keeps_string)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry e = entry(1, 1, NDFS_IO_READ, 0), *stored;
    cr_assert_eq(pending_table_add(t, &e, &stored), 0);
    char *before = stored->peer;
    pending_entry_set_peer(stored, "n1");
    cr_assert_eq(stored->peer, before, "same name: no new copy");
    pending_entry_set_peer(stored, NULL);
    cr_assert_null(stored->peer);
    pending_table_free(t);
}

Test(pending, send_round_entry_removed_last_of_its_vdisk)
{
    struct pending_table *t = pending_table_new();
    struct pending_entry e = entry(1, 1, NDFS_IO_WRITE, 0);
    cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    e = entry(2, 2, NDFS_IO_WRITE, 0);
    cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    e = entry(3, 1, NDFS_IO_WRITE, 4096);
    e.sent = true; /* in flight: not offered */
    cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    cr_assert_eq(pending_table_count_unsent(t), 2);
    struct round r = {.t = t, .gone = 2};
    cr_assert_eq(pending_table_send_round(t, round_fn, &r), 1);
    const uint64_t want[] = {1, 2};
    cr_assert_eq(r.nseen, 2);
    cr_assert_arr_eq(r.seen, want, sizeof(want));
    cr_assert_eq(pending_table_count_vdisk(t, 2), 0, "its vdisk's list went with it");
    cr_assert_eq(pending_table_count_sent_vdisk(t, 1), 2);
    size_t n;
    uint64_t *v = pending_table_vdisks(t, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0], 1);
    g_free(v);
    pending_table_free(t);
}

/* A suspension as the driver runs it: the send rounds hold every entry of
 * the suspended vdisk (the first one offered answers HOLD), the vdisk's
 * sent entries drain as their answers come, and once resumed its held
 * entries go in the order they were added, behind none of the others. */
struct suspend_round {
    struct pending_table *t;
    uint64_t suspended; /* 0: none */
    uint64_t seen[64];
    size_t nseen;
};

static enum pending_step suspend_fn(struct pending_entry *e, void *data)
{
    struct suspend_round *r = data;
    r->seen[r->nseen++] = e->id;
    if (e->vdisk_id == r->suspended)
        return PENDING_HOLD;
    pending_table_set_sent(r->t, e, true);
    return PENDING_SENT;
}

Test(pending, suspended_vdisk_held_drained_then_sent_in_order)
{
    struct pending_table *t = pending_table_new();
    struct suspend_round r = {.t = t};
    /* sent before the suspension: 1 (vdisk 1), 2 (vdisk 2) */
    for (uint64_t id = 1; id <= 2; id++) {
        struct pending_entry e = entry(id, id, NDFS_IO_WRITE, id * 4096);
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    cr_assert_eq(pending_table_send_round(t, suspend_fn, &r), 2);
    /* vdisk 1 suspended; new requests 3 (v1), 4 (v2), 5 (v1), 6 (v1) */
    r.suspended = 1;
    const uint64_t vdisks[] = {1, 2, 1, 1};
    for (uint64_t id = 3; id <= 6; id++) {
        struct pending_entry e = entry(id, vdisks[id - 3], NDFS_IO_WRITE, id * 4096);
        cr_assert_eq(pending_table_add(t, &e, NULL), 0);
    }
    r.nseen = 0;
    cr_assert_eq(pending_table_send_round(t, suspend_fn, &r), 1, "vdisk 2 goes on");
    const uint64_t want[] = {3, 4};
    cr_assert_eq(r.nseen, 2, "5 and 6 are not even offered");
    cr_assert_arr_eq(r.seen, want, sizeof(want));
    /* the drain: vdisk 1 has one sent entry until its answer comes */
    cr_assert_eq(pending_table_count_sent_vdisk(t, 1), 1);
    cr_assert_eq(pending_table_complete(t, 1, NULL), 0);
    cr_assert_eq(pending_table_count_sent_vdisk(t, 1), 0, "drained: the ack may go");
    cr_assert_eq(pending_table_count_vdisk(t, 1), 3, "the held ones stay");
    /* a round while still suspended sends nothing of it */
    r.nseen = 0;
    cr_assert_eq(pending_table_send_round(t, suspend_fn, &r), 0);
    cr_assert_eq(r.nseen, 1);
    cr_assert_eq(r.seen[0], 3);
    /* resumed: 3 5 6, in order */
    r.suspended = 0;
    r.nseen = 0;
    cr_assert_eq(pending_table_send_round(t, suspend_fn, &r), 3);
    const uint64_t want2[] = {3, 5, 6};
    cr_assert_eq(r.nseen, 3);
    cr_assert_arr_eq(r.seen, want2, sizeof(want2));
    cr_assert_eq(pending_table_count_unsent(t), 0);
    pending_table_free(t);
}
