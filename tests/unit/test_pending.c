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
