/* The mount's suspensions (online reconfiguration). */
#include <criterion/criterion.h>

#include <glib.h>

#include "ndfs/suspend_set.h"

struct busy_ids {
    uint64_t ids[8];
    size_t n;
};

static bool is_busy(uint64_t vdisk_id, void *data)
{
    struct busy_ids *b = data;
    for (size_t i = 0; i < b->n; i++)
        if (b->ids[i] == vdisk_id)
            return true;
    return false;
}

Test(suspend_set, add_count_remove)
{
    struct suspend_set *s = suspend_set_new();
    uint64_t ids[] = {3, 5};
    cr_assert(suspend_set_add(s, 10, ids, 2, 100));
    cr_assert_eq(suspend_set_size(s), 1);
    cr_assert_eq(suspend_set_count(s, 3), 1);
    cr_assert_eq(suspend_set_count(s, 5), 1);
    cr_assert_eq(suspend_set_count(s, 4), 0);
    cr_assert_not(suspend_set_add(s, 10, ids, 1, 200), "a txid suspends once");
    cr_assert_eq(suspend_set_count(s, 3), 1);

    uint64_t *out = NULL;
    size_t n = 0;
    cr_assert_not(suspend_set_remove(s, 11, &out, &n), "an unknown txid");
    cr_assert(suspend_set_remove(s, 10, &out, &n));
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], 3);
    cr_assert_eq(out[1], 5);
    g_free(out);
    cr_assert_eq(suspend_set_size(s), 0);
    cr_assert_eq(suspend_set_count(s, 3), 0);
    cr_assert_not(suspend_set_remove(s, 10, NULL, NULL), "resumed already");
    suspend_set_free(s);
}

Test(suspend_set, same_vdisk_by_two_txids)
{
    struct suspend_set *s = suspend_set_new();
    uint64_t a[] = {7}, b[] = {7, 8};
    cr_assert(suspend_set_add(s, 1, a, 1, 0));
    cr_assert(suspend_set_add(s, 2, b, 2, 0));
    cr_assert_eq(suspend_set_count(s, 7), 2);
    cr_assert(suspend_set_remove(s, 1, NULL, NULL));
    cr_assert_eq(suspend_set_count(s, 7), 1, "still held by txid 2");
    cr_assert_eq(suspend_set_count(s, 8), 1);
    cr_assert(suspend_set_remove(s, 2, NULL, NULL));
    cr_assert_eq(suspend_set_count(s, 7), 0);
    cr_assert_eq(suspend_set_count(s, 8), 0);
    suspend_set_free(s);
}

Test(suspend_set, repeated_id_counts_once)
{
    struct suspend_set *s = suspend_set_new();
    uint64_t ids[] = {4, 4, 4};
    cr_assert(suspend_set_add(s, 1, ids, 3, 0));
    cr_assert_eq(suspend_set_count(s, 4), 1);
    size_t n = 0;
    cr_assert(suspend_set_remove(s, 1, NULL, &n));
    cr_assert_eq(n, 1);
    cr_assert_eq(suspend_set_count(s, 4), 0);
    suspend_set_free(s);
}

Test(suspend_set, drained_acked_once_when_nothing_busy)
{
    struct suspend_set *s = suspend_set_new();
    uint64_t a[] = {1, 2}, b[] = {3}, none[1] = {0};
    cr_assert(suspend_set_add(s, 100, a, 2, 0));
    cr_assert(suspend_set_add(s, 200, b, 1, 0));
    cr_assert(suspend_set_add(s, 300, none, 0, 0));
    struct busy_ids busy = {.ids = {2, 3}, .n = 2};
    uint64_t out[4];
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 4), 1,
                 "a suspension of no vdisk acks at once");
    cr_assert_eq(out[0], 300);
    busy.ids[0] = 9; /* vdisk 2 answered */
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 4), 1);
    cr_assert_eq(out[0], 100);
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 4), 0, "acked once");
    busy.n = 0;
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 4), 1);
    cr_assert_eq(out[0], 200);
    cr_assert_eq(suspend_set_size(s), 3, "acked is not resumed");
    cr_assert_eq(suspend_set_count(s, 1), 1);
    suspend_set_free(s);
}

Test(suspend_set, take_drained_at_most_max)
{
    struct suspend_set *s = suspend_set_new();
    for (uint64_t t = 1; t <= 5; t++)
        cr_assert(suspend_set_add(s, t, &t, 1, 0));
    struct busy_ids busy = {.n = 0};
    uint64_t out[2];
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 2), 2);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 2);
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 2), 2);
    cr_assert_eq(out[0], 3);
    cr_assert_eq(suspend_set_take_drained(s, is_busy, &busy, out, 2), 1);
    cr_assert_eq(out[0], 5);
    suspend_set_free(s);
}

Test(suspend_set, oldest_and_expiry)
{
    struct suspend_set *s = suspend_set_new();
    uint64_t a[] = {1}, b[] = {2};
    uint64_t txid = 0;
    cr_assert_not(suspend_set_oldest(s, 0, &txid));
    cr_assert(suspend_set_add(s, 20, a, 1, 1000));
    cr_assert(suspend_set_add(s, 10, b, 1, 5000));
    cr_assert(suspend_set_oldest(s, 0, &txid));
    cr_assert_eq(txid, 20, "the first added, not the lowest txid");
    cr_assert_not(suspend_set_oldest(s, 1000, &txid), "none began before 1000");
    cr_assert(suspend_set_oldest(s, 1001, &txid));
    cr_assert_eq(txid, 20);
    cr_assert(suspend_set_remove(s, 20, NULL, NULL));
    cr_assert_not(suspend_set_oldest(s, 4000, &txid));
    cr_assert(suspend_set_oldest(s, 6000, &txid));
    cr_assert_eq(txid, 10);
    suspend_set_free(s);
}
