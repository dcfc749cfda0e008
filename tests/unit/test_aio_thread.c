/* ndfs/aio_thread.c: O_DIRECT reads and writes through Linux AIO, completed
 * on a thread of their own, on a real file in a temporary directory. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ndfs/aio_thread.h"
#include "odirect_file.h"

struct fixture {
    char *dir;
    char *path;
    int fd; /* O_DIRECT */
    struct ndfs_aio_thread *aio;
};

/* What a callback saw; the test thread waits on cond. */
static GMutex lock;
static GCond cond;

struct result {
    int calls;
    int64_t res;
    GThread *thread; /* where the callback ran */
    /* a gate: the callback waits while closed (entered says it got there) */
    bool gated;
    bool entered;
    bool open;
};

static void on_done(void *data, int64_t res)
{
    struct result *r = data;
    g_mutex_lock(&lock);
    r->entered = true;
    g_cond_broadcast(&cond);
    while (r->gated && !r->open)
        g_cond_wait(&cond, &lock);
    r->calls++;
    r->res = res;
    r->thread = g_thread_self();
    g_cond_broadcast(&cond);
    g_mutex_unlock(&lock);
}

/* Waits until *flag (under lock), or fails after a few seconds. */
static void wait_flag(const bool *flag)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    g_mutex_lock(&lock);
    while (!*flag)
        cr_assert(g_cond_wait_until(&cond, &lock, deadline) || *flag, "no callback");
    g_mutex_unlock(&lock);
}

static void wait_calls(const struct result *r, int calls)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    g_mutex_lock(&lock);
    while (r->calls < calls)
        cr_assert(g_cond_wait_until(&cond, &lock, deadline) || r->calls >= calls, "no completion");
    g_mutex_unlock(&lock);
}

static int calls_of(const struct result *r)
{
    g_mutex_lock(&lock);
    int n = r->calls;
    g_mutex_unlock(&lock);
    return n;
}

/* Sets f up; false (the test is skipped) when the file system takes no
 * O_DIRECT or the kernel no AIO. */
static bool setup(struct fixture *f, unsigned depth, unsigned poll_us)
{
    memset(f, 0, sizeof(*f));
    f->path = odirect_file_new(&f->dir, 16);
    f->fd = open(f->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (f->fd < 0)
        return false;
    char *msg = NULL;
    int rc = ndfs_aio_thread_new(depth, poll_us, &f->aio, &msg);
    if (rc == -ENOSYS) {
        g_free(msg);
        return false;
    }
    cr_assert_eq(rc, 0, "ndfs_aio_thread_new: %s", msg ? msg : "");
    return true;
}

static void teardown(struct fixture *f)
{
    ndfs_aio_thread_free(f->aio);
    if (f->fd >= 0)
        close(f->fd);
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static void write_then_read_back(unsigned poll_us)
{
    struct fixture f;
    if (!setup(&f, 8, poll_us))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *out = aligned(2 * BLK, 0xa5);
    memset((char *)out + BLK, 0x3c, BLK);
    struct result w = {0};
    int rc = ndfs_aio_thread_submit(f.aio, f.fd, true, out, 2 * BLK, 4 * BLK, on_done, &w);
    cr_assert_eq(rc, 0, "submit: %s", g_strerror(-rc));
    wait_calls(&w, 1);
    cr_assert_eq(w.res, 2 * BLK, "res %" PRId64, w.res);
    cr_assert_neq(w.thread, g_thread_self(), "completed on the completion thread");

    void *in = aligned(2 * BLK, 0);
    struct result r = {0};
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, false, in, 2 * BLK, 4 * BLK, on_done, &r), 0);
    wait_calls(&r, 1);
    cr_assert_eq(r.res, 2 * BLK);
    cr_assert_eq(memcmp(in, out, 2 * BLK), 0, "read back what was written");

    assert_file_holds(f.path, 5 * BLK, (char *)out + BLK, BLK);
    free(in);
    free(out);
    teardown(&f);
}

Test(aio_thread, write_then_read_back)
{
    write_then_read_back(0);
}

Test(aio_thread, write_then_read_back_polling)
{
    /* the completion thread polls the ring after each completion */
    write_then_read_back(200);
}

Test(aio_thread, depth_is_a_limit)
{
    struct fixture f;
    if (!setup(&f, 2, 0))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *bufs[4];
    for (int i = 0; i < 4; i++)
        bufs[i] = aligned(BLK, i + 1);
    /* a's callback holds the completion thread until its gate opens */
    struct result a = {.gated = true};
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, true, bufs[0], BLK, 0, on_done, &a), 0);
    wait_flag(&a.entered);
    /* a's slot is free (its callback runs after), and nothing completes */
    struct result b = {0}, c = {0}, d = {0};
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, true, bufs[1], BLK, BLK, on_done, &b), 0);
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, true, bufs[2], BLK, 2 * BLK, on_done, &c), 0);
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, true, bufs[3], BLK, 3 * BLK, on_done, &d),
                 -EAGAIN, "a third request past depth 2");
    g_mutex_lock(&lock);
    a.open = true;
    g_cond_broadcast(&cond);
    g_mutex_unlock(&lock);
    wait_calls(&a, 1);
    wait_calls(&b, 1);
    wait_calls(&c, 1);
    cr_assert_eq(a.res, BLK);
    cr_assert_eq(b.res, BLK);
    cr_assert_eq(c.res, BLK);
    cr_assert_eq(calls_of(&d), 0, "the refused request's callback never runs");
    /* a slot is free again */
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, false, bufs[3], BLK, 2 * BLK, on_done, &d), 0);
    wait_calls(&d, 1);
    cr_assert_eq(((unsigned char *)bufs[3])[0], 3, "block 2 holds request c's bytes");
    for (int i = 0; i < 4; i++)
        free(bufs[i]);
    teardown(&f);
}

Test(aio_thread, errors_come_back)
{
    struct fixture f;
    if (!setup(&f, 4, 0))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *buf = aligned(2 * BLK, 0);
    /* O_DIRECT refuses a misaligned buffer: at submission or in the event */
    struct result r = {0};
    int rc = ndfs_aio_thread_submit(f.aio, f.fd, false, (char *)buf + 1, BLK, 0, on_done, &r);
    if (rc == 0) {
        wait_calls(&r, 1);
        cr_assert_eq(r.res, -EINVAL);
    } else {
        cr_assert_eq(rc, -EINVAL);
    }
    /* a closed descriptor: refused, no callback */
    struct result b = {0};
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, 9999, false, buf, BLK, 0, on_done, &b), -EBADF);
    /* a read past the end is short, as pread is */
    struct result e = {0};
    cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, false, buf, 2 * BLK, 15 * BLK, on_done, &e),
                 0);
    wait_calls(&e, 1);
    cr_assert_eq(e.res, BLK, "one block before the end");
    cr_assert_eq(calls_of(&b), 0);
    free(buf);
    teardown(&f);
}

Test(aio_thread, free_waits_for_what_is_in_flight)
{
    struct fixture f;
    if (!setup(&f, 16, 0))
        cr_skip_test("no O_DIRECT or no AIO here");
    enum { N = 16 };
    void *bufs[N];
    struct result rs[N] = {{0}};
    for (int i = 0; i < N; i++) {
        bufs[i] = aligned(BLK, i + 1);
        cr_assert_eq(ndfs_aio_thread_submit(f.aio, f.fd, true, bufs[i], BLK, (uint64_t)i * BLK,
                                            on_done, &rs[i]),
                     0);
    }
    /* at once: every callback has run when free returns */
    teardown(&f);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rs[i].calls, 1, "request %d", i);
        cr_assert_eq(rs[i].res, BLK, "request %d", i);
        free(bufs[i]);
    }
}

Test(aio_thread, free_when_idle)
{
    struct fixture f;
    if (!setup(&f, 1, 100))
        cr_skip_test("no O_DIRECT or no AIO here");
    teardown(&f);
}
