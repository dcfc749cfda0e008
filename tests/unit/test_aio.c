/* ndfs/aio.c: O_DIRECT reads and writes through Linux AIO on a libuv loop,
 * on a real file in a temporary directory. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ndfs/aio.h"
#include "odirect_file.h"

struct fixture {
    uv_loop_t loop;
    char *dir;
    char *path;
    int fd; /* O_DIRECT */
    struct ndfs_aio *aio;
};

struct result {
    int calls;
    int64_t res;
};

static void on_done(void *data, int64_t res)
{
    struct result *r = data;
    r->calls++;
    r->res = res;
}

/* Sets f up; false (the test is skipped) when the file system takes no
 * O_DIRECT or the kernel no AIO. */
static bool setup(struct fixture *f, unsigned depth)
{
    memset(f, 0, sizeof(*f));
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    f->path = odirect_file_new(&f->dir, 16);
    f->fd = open(f->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (f->fd < 0)
        return false;
    char *msg = NULL;
    int rc = ndfs_aio_new(&f->loop, depth, &f->aio, &msg);
    if (rc == -ENOSYS) {
        g_free(msg);
        return false;
    }
    cr_assert_eq(rc, 0, "ndfs_aio_new: %s", msg ? msg : "");
    return true;
}

static void teardown(struct fixture *f)
{
    if (f->aio)
        ndfs_aio_close(f->aio, NULL, NULL);
    cr_assert_eq(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    if (f->fd >= 0)
        close(f->fd);
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
    cr_assert_eq(uv_loop_close(&f->loop), 0);
}

/* Runs the loop until r was called, or fails after a few seconds. */
static void wait_for(struct fixture *f, const struct result *r, int calls)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (r->calls < calls) {
        cr_assert_lt(g_get_monotonic_time(), deadline, "no completion");
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

Test(aio, write_then_read_back)
{
    struct fixture f;
    if (!setup(&f, 8))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *out = aligned(2 * BLK, 0xa5);
    memset((char *)out + BLK, 0x3c, BLK);
    struct result w = {0};
    int rc = ndfs_aio_submit(f.aio, f.fd, true, out, 2 * BLK, 4 * BLK, on_done, &w);
    if (rc == -EAGAIN || rc == -EOPNOTSUPP) {
        free(out);
        teardown(&f);
        cr_skip_test("this file system takes no RWF_NOWAIT AIO (%d)", rc);
    }
    cr_assert_eq(rc, 0, "submit: %s", g_strerror(-rc));
    cr_assert_eq(ndfs_aio_in_flight(f.aio), 1);
    wait_for(&f, &w, 1);
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.res, 2 * BLK, "res %" PRId64, w.res);
    cr_assert_eq(ndfs_aio_in_flight(f.aio), 0);

    void *in = aligned(2 * BLK, 0);
    struct result r = {0};
    cr_assert_eq(ndfs_aio_submit(f.aio, f.fd, false, in, 2 * BLK, 4 * BLK, on_done, &r), 0);
    wait_for(&f, &r, 1);
    cr_assert_eq(r.res, 2 * BLK);
    cr_assert_eq(memcmp(in, out, 2 * BLK), 0, "read back what was written");

    assert_file_holds(f.path, 5 * BLK, (char *)out + BLK, BLK);
    free(in);
    free(out);
    teardown(&f);
}

Test(aio, many_in_flight_and_depth)
{
    struct fixture f;
    if (!setup(&f, 4))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *bufs[5];
    struct result rs[5] = {{0}};
    int submitted = 0;
    for (int i = 0; i < 5; i++) {
        bufs[i] = aligned(BLK, i + 1);
        int rc =
            ndfs_aio_submit(f.aio, f.fd, true, bufs[i], BLK, (uint64_t)i * BLK, on_done, &rs[i]);
        if (i == 0 && (rc == -EAGAIN || rc == -EOPNOTSUPP)) {
            free(bufs[0]);
            teardown(&f);
            cr_skip_test("this file system takes no RWF_NOWAIT AIO (%d)", rc);
        }
        if (i < 4) {
            cr_assert_eq(rc, 0, "request %d: %s", i, g_strerror(-rc));
            submitted++;
        } else {
            /* the loop did not turn: all four slots are still taken */
            cr_assert_eq(rc, -EAGAIN, "a fifth request past depth 4");
            cr_assert_eq(rs[i].calls, 0, "and its callback never runs");
        }
    }
    cr_assert_eq(ndfs_aio_in_flight(f.aio), 4);
    for (int i = 0; i < submitted; i++) {
        wait_for(&f, &rs[i], 1);
        cr_assert_eq(rs[i].res, BLK);
    }
    cr_assert_eq(rs[4].calls, 0);
    cr_assert_eq(ndfs_aio_in_flight(f.aio), 0);
    /* a slot is free again */
    struct result again = {0};
    cr_assert_eq(ndfs_aio_submit(f.aio, f.fd, false, bufs[4], BLK, 2 * BLK, on_done, &again), 0);
    wait_for(&f, &again, 1);
    cr_assert_eq(again.res, BLK);
    cr_assert_eq(((unsigned char *)bufs[4])[0], 3, "block 2 holds request 2's bytes");
    for (int i = 0; i < 5; i++)
        free(bufs[i]);
    teardown(&f);
}

Test(aio, errors_come_back)
{
    struct fixture f;
    if (!setup(&f, 4))
        cr_skip_test("no O_DIRECT or no AIO here");
    void *buf = aligned(2 * BLK, 0);
    /* O_DIRECT refuses a misaligned buffer: at submission or in the event */
    struct result r = {0};
    int rc = ndfs_aio_submit(f.aio, f.fd, false, (char *)buf + 1, BLK, 0, on_done, &r);
    if (rc == 0) {
        wait_for(&f, &r, 1);
        cr_assert_eq(r.res, -EINVAL);
    } else {
        cr_assert_eq(rc, -EINVAL);
        cr_assert_eq(r.calls, 0);
    }
    /* a closed descriptor */
    struct result b = {0};
    rc = ndfs_aio_submit(f.aio, 9999, false, buf, BLK, 0, on_done, &b);
    cr_assert_eq(rc, -EBADF);
    cr_assert_eq(b.calls, 0);
    /* a read past the end is short, as pread is */
    struct result e = {0};
    rc = ndfs_aio_submit(f.aio, f.fd, false, buf, 2 * BLK, 15 * BLK, on_done, &e);
    if (rc == 0) {
        wait_for(&f, &e, 1);
        cr_assert_eq(e.res, BLK, "one block before the end");
    }
    cr_assert_eq(ndfs_aio_in_flight(f.aio), 0);
    free(buf);
    teardown(&f);
}

static void closed_cb(void *data)
{
    (*(int *)data)++;
}

Test(aio, close_runs_callback)
{
    struct fixture f;
    if (!setup(&f, 2))
        cr_skip_test("no O_DIRECT or no AIO here");
    int closed = 0;
    ndfs_aio_close(f.aio, closed_cb, &closed);
    f.aio = NULL;
    cr_assert_eq(closed, 0, "not before the loop turns");
    cr_assert_eq(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(closed, 1);
    teardown(&f);
}
