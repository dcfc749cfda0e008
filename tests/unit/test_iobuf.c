/* The large-buffer pool: alignment, reuse, malloc for what it does not
 * take, huge pages behind its buffers. Criterion runs each test in a
 * process of its own, so each starts with an empty pool. */
#include <criterion/criterion.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "ndfs/iobuf.h"

#define MIB (1u << 20)

static bool thp(void)
{
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, false);
    return s.huge;
}

Test(iobuf, small_buffers_are_malloced_and_aligned)
{
    void *p = ndfs_iobuf_alloc(4096);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % NDFS_IOBUF_ALIGN, 0);
    memset(p, 0xa5, 4096);
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, 0, "a 4 KiB buffer came from the pool");
    cr_assert_eq(s.arenas, 0);
    ndfs_iobuf_free(p);
    ndfs_iobuf_free(NULL);
    /* any malloc'd block may be given back */
    ndfs_iobuf_free(malloc(100));
    void *z = ndfs_iobuf_alloc(0);
    cr_assert_not_null(z);
    ndfs_iobuf_free(z);
}

Test(iobuf, large_buffers_come_from_the_pool_and_are_reused)
{
    if (!thp())
        cr_skip_test("no transparent huge pages on this kernel: everything is malloc'd");
    uint8_t *a = ndfs_iobuf_alloc(MIB + 4096), *b = ndfs_iobuf_alloc(MIB);
    cr_assert(a && b);
    cr_assert_eq((uintptr_t)a % NDFS_IOBUF_ALIGN, 0);
    cr_assert_eq((uintptr_t)b % NDFS_IOBUF_ALIGN, 0);
    /* every byte is theirs, and they do not overlap */
    memset(a, 1, MIB + 4096);
    memset(b, 2, MIB);
    for (size_t i = 0; i < MIB + 4096; i += 512)
        cr_assert_eq(a[i], 1);
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.arenas, 1);
    cr_assert_eq(s.in_use, (MIB + 64 * 1024) + MIB, "slots are 64 KiB multiples");
    cr_assert_eq(s.carved, s.in_use);
    ndfs_iobuf_free(a);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, MIB);
    /* a buffer of the same slot size takes the freed slot */
    uint8_t *c = ndfs_iobuf_alloc(MIB + 8192);
    cr_assert_eq(c, a);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.carved, (MIB + 64 * 1024) + MIB, "a reused slot was carved again");
    /* one of another size does not */
    uint8_t *d = ndfs_iobuf_alloc(128 * 1024);
    cr_assert(d != a && d != b);
    ndfs_iobuf_free(b);
    ndfs_iobuf_free(c);
    ndfs_iobuf_free(d);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.fallbacks, 0);
}

Test(iobuf, buffers_sit_in_huge_pages)
{
    if (!thp())
        cr_skip_test("no transparent huge pages on this kernel");
    /* the first slot starts an arena, on a huge page boundary */
    uint8_t *p = ndfs_iobuf_alloc(NDFS_IOBUF_MAX);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % (2 * MIB), 0);
    memset(p, 7, NDFS_IOBUF_MAX);
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, true);
    cr_assert_geq(s.huge_resident, 2 * MIB,
                  "the buffer's 2 MiB are not in a huge page (AnonHugePages %zu): is memory "
                  "too fragmented?",
                  s.huge_resident);
    ndfs_iobuf_free(p);
}

Test(iobuf, beyond_its_arenas_and_its_largest_size_it_mallocs)
{
    if (!thp())
        cr_skip_test("no transparent huge pages on this kernel");
    unsigned n = NDFS_IOBUF_ARENAS * (NDFS_IOBUF_ARENA / NDFS_IOBUF_MAX);
    void **bufs = g_new(void *, n + 1);
    /* untouched: the arenas are address space, not memory */
    for (unsigned i = 0; i < n; i++)
        cr_assert_not_null(bufs[i] = ndfs_iobuf_alloc(NDFS_IOBUF_MAX));
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.arenas, NDFS_IOBUF_ARENAS);
    cr_assert_eq(s.fallbacks, 0);
    cr_assert_not_null(bufs[n] = ndfs_iobuf_alloc(NDFS_IOBUF_MAX));
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.fallbacks, 1);
    cr_assert_eq(s.in_use, (size_t)n * NDFS_IOBUF_MAX);
    void *big = ndfs_iobuf_alloc(NDFS_IOBUF_MAX + 1);
    cr_assert_not_null(big);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, (size_t)n * NDFS_IOBUF_MAX, "a buffer over the largest slot");
    ndfs_iobuf_free(big);
    for (unsigned i = 0; i <= n; i++)
        ndfs_iobuf_free(bufs[i]);
    g_free(bufs);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, 0);
}

Test(iobuf, the_environment_turns_it_off)
{
    setenv("NDFS_IOBUF_HUGE", "0", 1);
    void *p = ndfs_iobuf_alloc(MIB);
    cr_assert_not_null(p);
    struct ndfs_iobuf_stats s;
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_not(s.huge);
    cr_assert_eq(s.arenas, 0);
    cr_assert_eq(s.in_use, 0);
    ndfs_iobuf_free(p);
}

static void free_twice(void)
{
    void *p = ndfs_iobuf_alloc(MIB);
    ndfs_iobuf_free(p);
    ndfs_iobuf_free(p);
}

Test(iobuf, a_second_free_aborts, .signal = SIGABRT)
{
    if (!thp())
        cr_skip_test("no transparent huge pages on this kernel");
    free_twice();
}
