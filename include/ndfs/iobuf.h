/* Buffers for large direct I/O, in transparent huge pages.
 *
 * An O_DIRECT transfer hands the disk one segment per physically contiguous
 * piece of its buffer. Ordinary memory comes in 4 KiB pages, so a 1 MiB
 * transfer from malloc'd memory is 256 pieces: more than a virtio disk
 * takes in one request (max_segments 254), and every piece costs the host
 * work of its own. On the 2 vCPU VM these figures come from, fio 1M QD8
 * O_DIRECT on a file wrote 1535-1677 MB/s and read 937-968 from malloc'd
 * buffers, 2997-3204 and 2371-2454 from huge pages (--iomem=shmhuge); the
 * disk saw 512 KiB requests, then 1 MiB ones.
 *
 * Buffers of NDFS_IOBUF_MIN bytes or more come from arenas of
 * NDFS_IOBUF_ARENA bytes, 2 MiB aligned and advised MADV_HUGEPAGE, carved
 * into slots of a multiple of 64 KiB; a freed slot waits on the free list
 * of its size for the next buffer of that size. Arena memory is kept for
 * reuse: it grows to the most large buffers in use at once, up to
 * NDFS_IOBUF_ARENAS arenas. Smaller buffers, larger ones (over
 * NDFS_IOBUF_MAX), those past the last arena and all of them when the
 * kernel has no transparent huge pages (or NDFS_IOBUF_HUGE=0 is in the
 * environment at the first call) come from malloc.
 *
 * Thread-safe. */
#ifndef NDFS_IOBUF_H
#define NDFS_IOBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NDFS_IOBUF_ALIGN  4096
#define NDFS_IOBUF_MIN    (64u << 10)
#define NDFS_IOBUF_MAX    (2u << 20)
#define NDFS_IOBUF_ARENA  (32u << 20)
#define NDFS_IOBUF_ARENAS 8

/* len bytes (at least 1) aligned to NDFS_IOBUF_ALIGN, not zeroed; NULL
 * without memory. Give it back with ndfs_iobuf_free(), never free(). */
void *ndfs_iobuf_alloc(size_t len);
/* Frees a buffer of ndfs_iobuf_alloc() or any block of malloc(); NULL is
 * fine. */
void ndfs_iobuf_free(void *p);

struct ndfs_iobuf_stats {
    bool huge;            /* arenas in use (false: everything is malloc'd) */
    unsigned arenas;      /* arenas mapped */
    size_t carved;        /* bytes of them carved into slots */
    size_t in_use;        /* bytes of slots handed out and not freed */
    uint64_t fallbacks;   /* buffers of NDFS_IOBUF_MIN..MAX malloc'd for want of arena room */
    size_t huge_resident; /* bytes of the arenas in huge pages (AnonHugePages), when asked */
};
/* The pool's counters; with smaps, also huge_resident (reads
 * /proc/self/smaps: for tests and diagnostics, not the data path). */
void ndfs_iobuf_get_stats(struct ndfs_iobuf_stats *s, bool smaps);

#endif
