/* Buffers for large direct I/O, in transparent huge pages (iobuf.h says
 * why). */
#define G_LOG_DOMAIN "ndfs-transport"

#include "ndfs/iobuf.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <glib.h>

#if defined(__SANITIZE_ADDRESS__)
#define IOBUF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IOBUF_ASAN 1
#endif
#endif
#ifdef IOBUF_ASAN
/* a slot on a free list is poisoned but for its link, so that ASan reports
 * a use after ndfs_iobuf_free() as it would one after free() */
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define UNIT            (64u << 10) /* slots are multiples of this */
#define UNITS_PER_ARENA (NDFS_IOBUF_ARENA / UNIT)
#define MAX_UNITS       (NDFS_IOBUF_MAX / UNIT)
#define HUGE_PAGE       (2u << 20)
#define SLOT_FREE       0x80u /* in units[]: the slot is on a free list */

G_STATIC_ASSERT(NDFS_IOBUF_ARENA % HUGE_PAGE == 0);
G_STATIC_ASSERT(MAX_UNITS < SLOT_FREE);
G_STATIC_ASSERT(UNIT % NDFS_IOBUF_ALIGN == 0);

struct arena {
    uint8_t *base;
    size_t used; /* bytes carved from the start; under lock */
    /* at a slot's first unit: its size in units (| SLOT_FREE when free);
     * 0 elsewhere. Under lock. */
    uint8_t units[UNITS_PER_ARENA];
};

static GMutex lock;
static struct arena arenas[NDFS_IOBUF_ARENAS];
/* arenas[0..n_arenas) are mapped; their base never changes, so
 * ndfs_iobuf_free() finds a pointer's arena without the lock */
static atomic_uint n_arenas;
static uint8_t *free_lists[MAX_UNITS + 1]; /* by size in units; under lock */
static size_t in_use;                      /* under lock */
static uint64_t fallbacks;                 /* under lock */
static bool broken;                        /* an arena could not be advised; under lock */

static gsize setup_done;
static bool enabled;

/* True when the kernel hands out transparent huge pages to a region
 * advised MADV_HUGEPAGE ("always" or "madvise"). */
static bool thp_available(void)
{
    g_autofree gchar *s = NULL;
    if (!g_file_get_contents("/sys/kernel/mm/transparent_hugepage/enabled", &s, NULL, NULL))
        return false;
    return strstr(s, "[always]") || strstr(s, "[madvise]");
}

static void setup(void)
{
    if (!g_once_init_enter(&setup_done))
        return;
    const char *env = getenv("NDFS_IOBUF_HUGE");
    enabled = !(env && strcmp(env, "0") == 0) && thp_available();
    g_once_init_leave(&setup_done, 1);
}

/* Maps arena a: NDFS_IOBUF_ARENA bytes on a huge page boundary, advised
 * MADV_HUGEPAGE. Under lock. */
static bool arena_map(struct arena *a)
{
    size_t len = NDFS_IOBUF_ARENA + HUGE_PAGE;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    uint8_t *base = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    size_t head = (size_t)(base - p), tail = len - head - NDFS_IOBUF_ARENA;
    if (head)
        munmap(p, head);
    if (tail)
        munmap(base + NDFS_IOBUF_ARENA, tail);
    if (madvise(base, NDFS_IOBUF_ARENA, MADV_HUGEPAGE) != 0) {
        g_message("I/O buffers: madvise(MADV_HUGEPAGE) failed (%s): they stay in ordinary "
                  "pages",
                  g_strerror(errno));
        munmap(base, NDFS_IOBUF_ARENA);
        broken = true;
        return false;
    }
    a->base = base;
    a->used = 0;
    memset(a->units, 0, sizeof a->units);
    POISON(base, NDFS_IOBUF_ARENA);
    return true;
}

/* The arena of arenas[0, n) that holds p, or NULL. */
static struct arena *arena_of(const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (p >= arenas[i].base && p < arenas[i].base + NDFS_IOBUF_ARENA)
            return &arenas[i];
    return NULL;
}

/* A slot of k units; NULL when there is no room for it. */
static uint8_t *pool_alloc(unsigned k)
{
    g_mutex_lock(&lock);
    uint8_t *p = free_lists[k];
    unsigned n = atomic_load_explicit(&n_arenas, memory_order_relaxed);
    if (p) {
        UNPOISON(p, sizeof(uint8_t *));
        memcpy(&free_lists[k], p, sizeof(uint8_t *));
        struct arena *a = arena_of(p, n);
        a->units[(size_t)(p - a->base) / UNIT] = (uint8_t)k;
    } else if (!broken) {
        struct arena *a = n ? &arenas[n - 1] : NULL;
        if ((!a || a->used + (size_t)k * UNIT > NDFS_IOBUF_ARENA) && n < NDFS_IOBUF_ARENAS &&
            arena_map(&arenas[n])) {
            a = &arenas[n];
            atomic_store_explicit(&n_arenas, n + 1, memory_order_release);
        }
        if (a && a->used + (size_t)k * UNIT <= NDFS_IOBUF_ARENA) {
            p = a->base + a->used;
            a->units[a->used / UNIT] = (uint8_t)k;
            a->used += (size_t)k * UNIT;
        }
    }
    if (p)
        in_use += (size_t)k * UNIT;
    else
        fallbacks++;
    g_mutex_unlock(&lock);
    return p;
}

void *ndfs_iobuf_alloc(size_t len)
{
    if (len == 0)
        len = 1;
    setup();
    if (enabled && len >= NDFS_IOBUF_MIN && len <= NDFS_IOBUF_MAX) {
        uint8_t *p = pool_alloc((unsigned)((len + UNIT - 1) / UNIT));
        if (p) {
            /* the bytes past len stay poisoned: ASan reports an overrun */
            UNPOISON(p, len);
            return p;
        }
    }
    void *p = NULL;
    if (posix_memalign(&p, NDFS_IOBUF_ALIGN, len) != 0)
        return NULL;
    return p;
}

void ndfs_iobuf_free(void *ptr)
{
    if (!ptr)
        return;
    uint8_t *p = ptr;
    struct arena *a = arena_of(p, atomic_load_explicit(&n_arenas, memory_order_acquire));
    if (!a) {
        free(ptr);
        return;
    }
    size_t u = (size_t)(p - a->base) / UNIT;
    g_mutex_lock(&lock);
    unsigned k = a->units[u];
    if (k == 0 || (k & SLOT_FREE) || p != a->base + u * UNIT) {
        /* the caller's memory is in an unknown state: stop here */
        g_critical("ndfs_iobuf_free(%p): %s", ptr,
                   k & SLOT_FREE ? "freed twice" : "not a buffer of ndfs_iobuf_alloc()");
        abort();
    }
    a->units[u] = (uint8_t)(k | SLOT_FREE);
    POISON(p, (size_t)k * UNIT);
    UNPOISON(p, sizeof(uint8_t *));
    memcpy(p, &free_lists[k], sizeof(uint8_t *));
    POISON(p, sizeof(uint8_t *));
    free_lists[k] = p;
    in_use -= (size_t)k * UNIT;
    g_mutex_unlock(&lock);
}

/* Sums AnonHugePages of the mappings of /proc/self/smaps inside arenas
 * [0, n): bytes. */
static size_t smaps_huge(unsigned n)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return 0;
    char line[512];
    bool inside = false;
    size_t total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, kib;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = false;
            for (unsigned i = 0; i < n; i++) {
                uintptr_t b = (uintptr_t)arenas[i].base;
                if (lo < b + NDFS_IOBUF_ARENA && hi > b)
                    inside = true;
            }
        } else if (inside && sscanf(line, "AnonHugePages: %lu kB", &kib) == 1) {
            total += (size_t)kib << 10;
        }
    }
    fclose(f);
    return total;
}

void ndfs_iobuf_get_stats(struct ndfs_iobuf_stats *s, bool smaps)
{
    setup();
    g_mutex_lock(&lock);
    unsigned n = atomic_load_explicit(&n_arenas, memory_order_relaxed);
    *s = (struct ndfs_iobuf_stats){
        .huge = enabled && !broken, .arenas = n, .in_use = in_use, .fallbacks = fallbacks};
    for (unsigned i = 0; i < n; i++)
        s->carved += arenas[i].used;
    g_mutex_unlock(&lock);
    if (smaps)
        s->huge_resident = smaps_huge(n);
}
