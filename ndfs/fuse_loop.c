/* The mount's FUSE request loop: see fuse_loop.h. */
#include "fuse_loop.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>

#include "ndfs/iobuf.h"

#define PAGE 4096
/* struct fuse_in_header (40 bytes) then struct fuse_write_in (40 bytes since
 * protocol 7.9): where a WRITE's data starts. The buffer puts it on a page
 * boundary, as O_DIRECT wants; other layouts only lose the alignment. */
#define WRITE_DATA_OFFSET 80
#define IN_HEADER_SIZE    40

struct rx_pool;

struct ndfs_rx_buf {
    struct ndfs_rx_buf *next; /* in the pool's free list */
    struct rx_pool *pool;
    uint8_t *mem; /* where a request is read: WRITE_DATA_OFFSET before a page */
    size_t len;   /* bytes of the request read into mem */
};

struct rx_pool {
    GMutex lock;
    struct ndfs_rx_buf *free_list; /* protected by lock */
    unsigned free_count;           /* protected by lock */
    unsigned free_max;
    unsigned refs; /* protected by lock: the loop's 1 + one per buffer taken */
    size_t request_max;
    atomic_ulong taken, allocated;
};

/* The buffer the current request of this thread was read into, and whether
 * its handler took it. */
static _Thread_local struct ndfs_rx_buf *rx_current;
static _Thread_local bool rx_was_taken;

static struct rx_pool *pool_new(size_t request_max, unsigned free_max)
{
    struct rx_pool *p = g_new0(struct rx_pool, 1);
    g_mutex_init(&p->lock);
    p->free_max = free_max;
    p->refs = 1;
    p->request_max = request_max;
    return p;
}

static void pool_free(struct rx_pool *p)
{
    while (p->free_list) {
        struct ndfs_rx_buf *b = p->free_list;
        p->free_list = b->next;
        ndfs_iobuf_free(b);
    }
    g_mutex_clear(&p->lock);
    g_free(p);
}

/* Drops one reference; the last frees the pool. */
static void pool_unref(struct rx_pool *p)
{
    g_mutex_lock(&p->lock);
    bool last = --p->refs == 0;
    g_mutex_unlock(&p->lock);
    if (last)
        pool_free(p);
}

/* A buffer from the pool, or a new one; NULL without memory. Its struct
 * sits in the first page, the request right behind, so that a WRITE's data
 * starts at the second page. */
static struct ndfs_rx_buf *pool_get(struct rx_pool *p)
{
    g_mutex_lock(&p->lock);
    struct ndfs_rx_buf *b = p->free_list;
    if (b) {
        p->free_list = b->next;
        p->free_count--;
    }
    g_mutex_unlock(&p->lock);
    if (b)
        return b;
    /* in huge pages: a local disk takes a WRITE's data in one piece */
    void *mem = ndfs_iobuf_alloc(PAGE + p->request_max);
    if (!mem)
        return NULL;
    G_STATIC_ASSERT(sizeof(struct ndfs_rx_buf) <= PAGE - WRITE_DATA_OFFSET);
    b = mem;
    b->next = NULL;
    b->pool = p;
    b->mem = (uint8_t *)mem + PAGE - WRITE_DATA_OFFSET;
    b->len = 0;
    atomic_fetch_add(&p->allocated, 1);
    return b;
}

/* Back to the free list (or freed, when it is full); with unref, drops the
 * reference a taken buffer held, in the same turn of the lock (the last
 * frees the pool). */
static void pool_put(struct rx_pool *p, struct ndfs_rx_buf *b, bool unref)
{
    g_mutex_lock(&p->lock);
    if (p->free_count < p->free_max) {
        b->next = p->free_list;
        p->free_list = b;
        p->free_count++;
        b = NULL;
    }
    bool last = unref && --p->refs == 0;
    g_mutex_unlock(&p->lock);
    ndfs_iobuf_free(b);
    if (last)
        pool_free(p);
}

struct ndfs_rx_buf *ndfs_fuse_rx_take(const void *mem, size_t len)
{
    struct ndfs_rx_buf *b = rx_current;
    const uint8_t *m = mem;
    if (!b || rx_was_taken || m < b->mem || len > b->len || m - b->mem > (ptrdiff_t)(b->len - len))
        return NULL;
    struct rx_pool *p = b->pool;
    g_mutex_lock(&p->lock);
    p->refs++;
    g_mutex_unlock(&p->lock);
    rx_was_taken = true;
    atomic_fetch_add(&p->taken, 1);
    return b;
}

void ndfs_rx_buf_release(struct ndfs_rx_buf *b)
{
    if (!b)
        return;
    pool_put(b->pool, b, true);
}

struct loop;

struct worker {
    pthread_t thread;
    bool started;
    struct loop *loop;
    struct ndfs_rx_buf *buf; /* the one the next request is read into */
};

struct loop {
    struct fuse_session *se;
    int fd;
    struct rx_pool *pool;
    sem_t finish; /* a worker saw the end */
    atomic_int error;
    atomic_ulong requests;
};

/* The session is over (rc 0: unmounted) or failed (rc -errno). */
static void loop_end(struct loop *l, int rc)
{
    int none = 0;
    if (rc < 0)
        atomic_compare_exchange_strong(&l->error, &none, rc);
    fuse_session_exit(l->se);
    sem_post(&l->finish);
}

/* Not instrumented by ASan: the loop ends by cancelling the threads in
 * read(), and a cancellation unwinds the stack without clearing the
 * redzones of instrumented frames, which ASan then reports as overflows
 * when the thread exits (a false positive; libfuse's loop, which also
 * cancels, is not instrumented either). */
__attribute__((no_sanitize("address"))) static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct loop *l = w->loop;
    /* cancelled (at the end) only while it waits for a request */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    while (!fuse_session_exited(l->se)) {
        if (!w->buf && !(w->buf = pool_get(l->pool))) {
            loop_end(l, -ENOMEM);
            break;
        }
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        ssize_t n = read(l->fd, w->buf->mem, l->pool->request_max);
        int err = errno;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        if (n < 0) {
            /* ENOENT: the request was interrupted before we read it */
            if (err == EINTR || err == EAGAIN || err == ENOENT)
                continue;
            loop_end(l, err == ENODEV ? 0 : -err); /* ENODEV: unmounted */
            break;
        }
        if ((size_t)n < IN_HEADER_SIZE) {
            g_warning("short read of %zd bytes on /dev/fuse", n);
            loop_end(l, -EIO);
            break;
        }
        atomic_fetch_add(&l->requests, 1);
        w->buf->len = (size_t)n;
        rx_current = w->buf;
        rx_was_taken = false;
        struct fuse_buf fb = {.size = (size_t)n, .mem = w->buf->mem};
        fuse_session_process_buf(l->se, &fb);
        if (rx_was_taken)
            w->buf = NULL; /* the request has it now */
        rx_current = NULL;
    }
    return NULL;
}

int ndfs_fuse_loop(struct fuse_session *se, unsigned threads, size_t request_max,
                   struct ndfs_fuse_loop_stats *stats)
{
    if (threads == 0)
        threads = 1;
    struct loop l = {.se = se, .fd = fuse_session_fd(se)};
    /* each thread's buffer, and as many taken by requests in flight */
    l.pool = pool_new(request_max, 2 * threads + 8);
    if (sem_init(&l.finish, 0, 0) != 0) {
        pool_unref(l.pool);
        return -errno;
    }
    struct worker *w = g_new0(struct worker, threads);
    /* signals go to this thread: its sem_wait returns on them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    unsigned started = 0;
    int rc = 0;
    for (unsigned i = 0; i < threads; i++) {
        w[i].loop = &l;
        rc = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
        if (rc != 0) {
            g_warning("cannot start FUSE thread %u of %u: %s", i + 1, threads, g_strerror(rc));
            break;
        }
        w[i].started = true;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == 0) {
        loop_end(&l, -rc);
    } else {
        /* a signal (libfuse's handler calls fuse_session_exit) or a worker */
        while (!fuse_session_exited(se))
            sem_wait(&l.finish);
    }
    for (unsigned i = 0; i < threads; i++)
        if (w[i].started)
            pthread_cancel(w[i].thread);
    for (unsigned i = 0; i < threads; i++) {
        if (w[i].started)
            pthread_join(w[i].thread, NULL);
        if (w[i].buf)
            pool_put(l.pool, w[i].buf, false);
    }
    g_free(w);
    sem_destroy(&l.finish);
    if (stats) {
        stats->requests = atomic_load(&l.requests);
        stats->taken = atomic_load(&l.pool->taken);
        stats->allocated = atomic_load(&l.pool->allocated);
    }
    pool_unref(l.pool);
    return atomic_load(&l.error);
}
