/* Polling a libuv loop for a short while after I/O instead of sleeping at
 * once. While the spin runs, the loop polls without waiting (an active
 * uv_idle_t) and yields the CPU to any other runnable thread on every turn;
 * it stops budget microseconds after the last kick.
 *
 * Why: on a virtual machine a thread that sleeps lets its virtual CPU halt,
 * and waking a halted virtual CPU (an answer arriving on its socket, a disk
 * completion) costs the hypervisor tens of microseconds, several times per
 * request. A loop that expects an answer within the budget keeps its CPU
 * awake instead and sees the answer on its next turn. The price is CPU time
 * while waiting; 0 turns it off. Header only: used by the mount's driver and
 * by ndfsd's master. */
#ifndef NDFS_SPIN_H
#define NDFS_SPIN_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"

struct ndfs_spin {
    uv_idle_t idle; /* first: a close callback gets &idle */
    uint64_t budget_ns;
    uint64_t until_ns;
    bool active;
};

static inline void ndfs_spin_turn(uv_idle_t *h)
{
    struct ndfs_spin *s = (struct ndfs_spin *)h;
    if (ndfs_mono_ns() >= s->until_ns) {
        uv_idle_stop(h);
        s->active = false;
        return;
    }
    /* anything else runnable on this CPU goes first */
    sched_yield();
}

/* A new budget, from the next kick on; 0: never poll. */
static inline void ndfs_spin_set_budget(struct ndfs_spin *s, unsigned budget_us)
{
    s->budget_ns = (uint64_t)budget_us * 1000u;
}

/* 0 or a libuv error; the handle never keeps the loop alive by itself. */
static inline int ndfs_spin_init(uv_loop_t *loop, struct ndfs_spin *s, unsigned budget_us)
{
    int rc = uv_idle_init(loop, &s->idle);
    if (rc < 0)
        return rc;
    uv_unref((uv_handle_t *)&s->idle);
    ndfs_spin_set_budget(s, budget_us);
    s->until_ns = 0;
    s->active = false;
    return 0;
}

/* I/O happened or an answer is expected: poll for the budget from now. */
static inline void ndfs_spin_kick(struct ndfs_spin *s)
{
    if (s->budget_ns == 0)
        return;
    s->until_ns = ndfs_mono_ns() + s->budget_ns;
    if (!s->active) {
        s->active = true;
        (void)uv_idle_start(&s->idle, ndfs_spin_turn); /* cannot fail when initialised */
    }
}

static inline void ndfs_spin_close(struct ndfs_spin *s, uv_close_cb cb)
{
    ndfs_spin_set_budget(s, 0);
    uv_close((uv_handle_t *)&s->idle, cb);
}

#endif
