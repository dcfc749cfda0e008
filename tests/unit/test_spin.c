/* ndfs/spin.h: a loop polls for its budget after a kick, then sleeps. */
#include <criterion/criterion.h>

#include <glib.h>

#include "ndfs/spin.h"

static void closed(uv_handle_t *h)
{
    (*(int *)h->data)++;
}

static void never(uv_timer_t *t)
{
    (void)t;
    cr_assert_fail("an hour passed");
}

/* Turns the loop without waiting until the spin stops; how many turns. */
static unsigned spin_out(uv_loop_t *loop, struct ndfs_spin *s)
{
    uint64_t t0 = ndfs_mono_ns();
    unsigned turns = 0;
    while (s->active) {
        cr_assert_lt(ndfs_mono_ns() - t0, 5000000000ull, "the spin never stops");
        uv_run(loop, UV_RUN_NOWAIT);
        turns++;
    }
    return turns;
}

Test(spin, polls_for_its_budget_after_a_kick)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct ndfs_spin s;
    cr_assert_eq(ndfs_spin_init(&loop, &s, 2000), 0);
    cr_assert_not(s.active, "nothing to poll for before a kick");
    cr_assert_eq(uv_loop_alive(&loop), 0, "an idle spin keeps no loop alive");

    uint64_t kicked = ndfs_mono_ns(); /* the budget counts from the kick, a bit later */
    ndfs_spin_kick(&s);
    cr_assert(s.active);
    cr_assert_eq(uv_loop_alive(&loop), 0, "nor a running one: it is unreferenced");
    /* a loop runs only while something else keeps it alive, as the
     * master's and the driver's sockets and timers do */
    uv_timer_t keep;
    cr_assert_eq(uv_timer_init(&loop, &keep), 0);
    cr_assert_eq(uv_timer_start(&keep, never, 3600 * 1000, 0), 0);
    unsigned turns = spin_out(&loop, &s);
    uint64_t took = ndfs_mono_ns() - kicked;
    cr_assert_geq(took, 2000000ull, "stopped after %llu ns, before its 2 ms",
                  (unsigned long long)took);
    cr_assert_gt(turns, 1, "the loop turned without waiting");

    /* a kick while spinning pushes the end out */
    ndfs_spin_kick(&s);
    uint64_t t0 = ndfs_mono_ns();
    while (ndfs_mono_ns() - t0 < 1000000ull)
        uv_run(&loop, UV_RUN_NOWAIT);
    uint64_t second = ndfs_mono_ns();
    ndfs_spin_kick(&s);
    spin_out(&loop, &s);
    cr_assert_geq(ndfs_mono_ns() - second, 2000000ull, "the second kick's budget counts from it");

    int n = 0;
    s.idle.data = &n;
    keep.data = &n;
    ndfs_spin_close(&s, closed);
    uv_close((uv_handle_t *)&keep, closed);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(spin, zero_never_polls)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct ndfs_spin s;
    cr_assert_eq(ndfs_spin_init(&loop, &s, 0), 0);
    ndfs_spin_kick(&s);
    cr_assert_not(s.active);
    cr_assert_not(uv_is_active((uv_handle_t *)&s.idle));
    int n = 0;
    s.idle.data = &n;
    ndfs_spin_close(&s, closed);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
