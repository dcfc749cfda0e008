/* The mount's multi-threaded FUSE request loop, with receive buffers that a
 * write can keep.
 *
 * libfuse's loop reads every request into one buffer per thread and reads
 * the next request into the same buffer, so a write sent to a remote master
 * had its bytes copied out (the driver holds them until the master answers,
 * and sends them again after a failover). Here each thread reads into a
 * buffer of a pool, laid out so that a WRITE's data starts on a page
 * boundary; a write handler may take the buffer over (ndfs_fuse_rx_take) and
 * the thread reads on into another one. The bytes the kernel wrote are the
 * ones that travel: no copy, no allocation per request.
 *
 * One /dev/fuse descriptor serves all threads (the public libfuse API
 * answers on the session's descriptor, so a thread cannot read from a
 * clone of its own). */
#ifndef NDFS_FUSE_LOOP_H
#define NDFS_FUSE_LOOP_H

#include <stddef.h>

#include <fuse_lowlevel.h>

/* Writes smaller than this are copied (cheaper than holding a buffer). */
#define NDFS_FUSE_RX_TAKE_MIN (64u * 1024)

struct ndfs_rx_buf;

/* Counters of one run of the loop. */
struct ndfs_fuse_loop_stats {
    unsigned long requests;  /* requests read */
    unsigned long taken;     /* buffers taken over by a handler */
    unsigned long allocated; /* buffers allocated (the rest came from the pool) */
};

/* Serves se with threads worker threads (at least 1) until the session
 * ends: unmounted, or fuse_session_exit (a signal). Each buffer holds
 * request_max bytes (the largest request the kernel may send). 0, or
 * -errno of the failure that ended it; *stats (may be NULL) the counters.
 * The buffers still taken live on until released. */
int ndfs_fuse_loop(struct fuse_session *se, unsigned threads, size_t request_max,
                   struct ndfs_fuse_loop_stats *stats);

/* For a request handler running on an ndfs_fuse_loop thread: when
 * [mem, mem + len) lies in the buffer the current request was read into,
 * the handler takes that buffer over (mem stays valid until
 * ndfs_rx_buf_release) and gets it; NULL when it does not (another loop,
 * a copy of libfuse's), and the handler copies. */
struct ndfs_rx_buf *ndfs_fuse_rx_take(const void *mem, size_t len);

/* Gives a taken buffer back (any thread). */
void ndfs_rx_buf_release(struct ndfs_rx_buf *b);

#endif
