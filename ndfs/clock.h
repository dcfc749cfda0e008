/* Clock readings in nanoseconds, for deadlines and durations (monotonic)
 * and for timestamps (real time). Header only. */
#ifndef NDFS_CLOCK_H
#define NDFS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ndfs_clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC: never jumps, stops while the machine is suspended. */
static inline uint64_t ndfs_mono_ns(void)
{
    return ndfs_clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_REALTIME: wall-clock time since the epoch. */
static inline uint64_t ndfs_real_ns(void)
{
    return ndfs_clock_ns(CLOCK_REALTIME);
}

#endif
