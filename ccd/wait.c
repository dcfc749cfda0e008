/* The applied index.
 *
 * Waiting until the local replica has applied a Raft index: a node that
 * relays a change made on the leader answers only once it can read it.
 * Applying happens in Raft's I/O callbacks; a check handle looks at the
 * applied index after each loop iteration while someone waits, a timer
 * ends the wait at the earliest deadline.
 *
 * Keeping it across a restart (with a cluster transport): libraft 0.15 does
 * not store the commit index, so a restarted follower would apply only its
 * snapshot until a leader tells it the commit index, and a node restarted
 * without a majority would serve an old (or empty) replica. The CCD keeps
 * the last index it applied that is also in its own log on disk in
 * <data_dir>/applied (on a worker thread, at most once a tick, and at close;
 * not synced: a lost write only makes the next start lag). At start the
 * entries of the loaded log up to that index are applied again after the
 * snapshot, and Raft's commit and applied indexes are moved there: those
 * entries were committed, so Raft's rules still hold. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ccd_private.h"

struct ccd_waiter {
    uint64_t index;
    uint64_t deadline_ms; /* uv_now */
    ndfs_ccd_applied_cb cb;
    void *data;
};

uint64_t ndfs_ccd_applied_index(struct ndfs_ccd *ccd)
{
    if (!ccd->started)
        return 0;
    uint64_t applied = raft_last_applied(&ccd->raft);
    return applied > ccd->applied_floor ? applied : ccd->applied_floor;
}

uint64_t ndfs_ccd_change_index(struct ndfs_ccd *ccd)
{
    if (!ccd->started)
        return 0;
    return ccd->applied_floor ? ccd->applied_floor : raft_last_applied(&ccd->raft);
}

static void wait_timer_cb(uv_timer_t *timer);

/* Takes the finished waiters out, rearms the handles, then runs the
 * callbacks (which may wait again). */
static void waiters_run(struct ndfs_ccd *ccd, bool cancel)
{
    uint64_t applied = ndfs_ccd_applied_index(ccd);
    uint64_t now = uv_now(ccd->loop);
    uint64_t next = UINT64_MAX;
    GList *done = NULL;
    for (GList *l = ccd->waiters; l != NULL;) {
        GList *following = l->next;
        struct ccd_waiter *w = l->data;
        if (cancel || w->index <= applied || w->deadline_ms <= now) {
            ccd->waiters = g_list_remove_link(ccd->waiters, l);
            done = g_list_concat(l, done);
        } else if (w->deadline_ms < next) {
            next = w->deadline_ms;
        }
        l = following;
    }
    if (ccd->waiters == NULL) {
        uv_check_stop(&ccd->wait_check);
        uv_timer_stop(&ccd->wait_timer);
    } else {
        uv_timer_start(&ccd->wait_timer, wait_timer_cb, next - now, 0);
    }
    for (GList *l = done; l != NULL; l = l->next) {
        struct ccd_waiter *w = l->data;
        int status = cancel ? -ECANCELED : w->index <= applied ? 0 : -ETIMEDOUT;
        w->cb(ccd, status, w->data);
        g_free(w);
    }
    g_list_free(done);
}

static void wait_timer_cb(uv_timer_t *timer)
{
    waiters_run(timer->data, false);
}

static void wait_check_cb(uv_check_t *check)
{
    struct ndfs_ccd *ccd = check->data;
    /* cheap: nothing to do until the applied index moved */
    uint64_t applied = ndfs_ccd_applied_index(ccd);
    for (GList *l = ccd->waiters; l != NULL; l = l->next) {
        struct ccd_waiter *w = l->data;
        if (w->index <= applied) {
            waiters_run(ccd, false);
            return;
        }
    }
}

int ndfs_ccd_wait_applied(struct ndfs_ccd *ccd, uint64_t index, unsigned timeout_ms,
                          ndfs_ccd_applied_cb cb, void *data)
{
    if (ccd->closing) {
        ccd_set_errmsg(ccd, "the CCD is closing");
        return -ECANCELED;
    }
    if (!ccd->started) {
        ccd_set_errmsg(ccd, "the CCD is not started");
        return -EAGAIN;
    }
    struct ccd_waiter *w = g_new0(struct ccd_waiter, 1);
    uint64_t now = uv_now(ccd->loop);
    w->index = index;
    w->deadline_ms = now + timeout_ms;
    w->cb = cb;
    w->data = data;
    ccd->waiters = g_list_append(ccd->waiters, w);
    /* never call back from here: an applied index goes on the next turn */
    uint64_t next = index <= ndfs_ccd_applied_index(ccd) ? 0 : timeout_ms;
    uint64_t due = uv_timer_get_due_in(&ccd->wait_timer);
    if (!uv_is_active((uv_handle_t *)&ccd->wait_timer) || next < due)
        uv_timer_start(&ccd->wait_timer, wait_timer_cb, next, 0);
    uv_check_start(&ccd->wait_check, wait_check_cb);
    return 0;
}

void ccd_wait_init(struct ndfs_ccd *ccd)
{
    uv_check_init(ccd->loop, &ccd->wait_check);
    ccd->wait_check.data = ccd;
    /* the waiters' timer keeps the loop alive; the check need not */
    uv_unref((uv_handle_t *)&ccd->wait_check);
    uv_timer_init(ccd->loop, &ccd->wait_timer);
    ccd->wait_timer.data = ccd;
}

void ccd_wait_cancel(struct ndfs_ccd *ccd)
{
    if (ccd->started)
        waiters_run(ccd, true);
}

static void wait_check_closed(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    ccd->wait_closed_cb(ccd);
}

static void wait_timer_closed(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    uv_close((uv_handle_t *)&ccd->wait_check, wait_check_closed);
}

void ccd_wait_close(struct ndfs_ccd *ccd, void (*cb)(struct ndfs_ccd *ccd))
{
    g_assert(ccd->waiters == NULL);
    ccd->wait_closed_cb = cb;
    uv_close((uv_handle_t *)&ccd->wait_timer, wait_timer_closed);
}

/* ---- the applied index across restarts ---- */

#define APPLIED_FILE "applied"
/* the index twice, fixed width: a torn or foreign file reads as 0 */
#define APPLIED_FMT "%020" PRIu64 " %020" PRIu64 "\n"

struct replay_entry {
    unsigned short type;
    struct raft_buffer buf; /* g_malloc'd copy; only for RAFT_COMMAND */
};

static uint64_t parse_applied(const char *text, ssize_t len)
{
    if (len != CCD_APPLIED_LEN || text[20] != ' ' || text[41] != '\n' ||
        memcmp(text, text + 21, 20) != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (text[i] < '0' || text[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    return v;
}

/* raft_io's load, wrapped: keeps copies of the loaded entries after the
 * snapshot up to the index the last run applied (see ccd_applied_replay). */
static int load_and_keep(struct raft_io *io, raft_term *term, raft_id *voted_for,
                         struct raft_snapshot **snapshot, raft_index *start_index,
                         struct raft_entry *entries[], size_t *n_entries)
{
    struct ndfs_ccd *ccd = (struct ndfs_ccd *)((char *)io - offsetof(struct ndfs_ccd, io));
    int rv = ccd->io_load(io, term, voted_for, snapshot, start_index, entries, n_entries);
    if (rv != 0)
        return rv;
    raft_index from = *snapshot != NULL ? (*snapshot)->index + 1 : 1;
    raft_index last = *start_index + *n_entries - 1;
    raft_index to = ccd->saved_applied < last ? ccd->saved_applied : last;
    if (*start_index > from || from > to)
        return 0; /* nothing to replay, or a gap after the snapshot */
    ccd->replay_first = from;
    ccd->replay = g_array_sized_new(FALSE, TRUE, sizeof(struct replay_entry), to - from + 1);
    for (raft_index i = from; i <= to; i++) {
        const struct raft_entry *e = &(*entries)[i - *start_index];
        struct replay_entry r = {.type = e->type};
        if (e->type == RAFT_COMMAND) {
            r.buf.base = g_memdup2(e->buf.base, e->buf.len);
            r.buf.len = e->buf.len;
        }
        g_array_append_val(ccd->replay, r);
    }
    return 0;
}

int ccd_applied_open(struct ndfs_ccd *ccd, char **errmsg)
{
    g_autofree char *path = g_build_filename(ccd->data_dir, APPLIED_FILE, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        *errmsg = g_strdup_printf("%s: %s", path, g_strerror(err));
        return -err;
    }
    char text[CCD_APPLIED_LEN + 1];
    ssize_t n = pread(fd, text, sizeof text, 0);
    if (n < 0) {
        int err = errno;
        *errmsg = g_strdup_printf("%s: %s", path, g_strerror(err));
        close(fd);
        return -err;
    }
    ccd->applied_fd = fd;
    ccd->saved_applied = parse_applied(text, n);
    ccd->applied_written = ccd->saved_applied;
    if (n > 0 && ccd->saved_applied == 0)
        g_warning("%s is not an applied index: ignored", path);
    ccd->io_load = ccd->io.load;
    ccd->io.load = load_and_keep;
    return 0;
}

static void free_replay(struct ndfs_ccd *ccd)
{
    if (ccd->replay == NULL)
        return;
    for (guint i = 0; i < ccd->replay->len; i++)
        g_free(g_array_index(ccd->replay, struct replay_entry, i).buf.base);
    g_array_free(ccd->replay, TRUE);
    ccd->replay = NULL;
}

void ccd_applied_free(struct ndfs_ccd *ccd)
{
    if (ccd->applied_fd >= 0)
        close(ccd->applied_fd);
    ccd->applied_fd = -1;
    free_replay(ccd);
}

uint64_t ccd_applied_replay(struct ndfs_ccd *ccd)
{
    if (ccd->replay == NULL)
        return 0;
    raft_index applied = raft_last_applied(&ccd->raft);
    raft_index index = ccd->replay_first;
    for (guint i = 0; i < ccd->replay->len; i++, index++) {
        struct replay_entry *e = &g_array_index(ccd->replay, struct replay_entry, i);
        if (index <= applied)
            continue; /* raft_start applied it (snapshot, first entry) */
        if (e->type == RAFT_COMMAND) {
            void *result;
            ccd->fsm.apply(&ccd->fsm, &e->buf, &result); /* errors are logged there */
        }
        applied = index;
    }
    free_replay(ccd);
    if (applied <= ccd->raft.last_applied)
        return 0;
    uint64_t from = ccd->raft.last_applied + 1;
    ccd->raft.last_applied = applied;
    if (ccd->raft.commit_index < applied)
        ccd->raft.commit_index = applied;
    return applied - from + 1;
}

/* What may be written: applied, and in our own log on disk. */
static uint64_t durable_applied(struct ndfs_ccd *ccd)
{
    uint64_t applied = raft_last_applied(&ccd->raft);
    return applied < ccd->raft.last_stored ? applied : ccd->raft.last_stored;
}

static void applied_closing(struct ndfs_ccd *ccd);

static void applied_written(uv_fs_t *req)
{
    struct ndfs_ccd *ccd = req->data;
    ssize_t result = req->result;
    uv_fs_req_cleanup(req);
    ccd->applied_busy = false;
    if (result == CCD_APPLIED_LEN) {
        ccd->applied_written = ccd->applied_writing;
    } else if (!ccd->applied_warned) {
        ccd->applied_warned = true;
        g_warning("cannot write %s/%s: %s", ccd->data_dir, APPLIED_FILE,
                  result < 0 ? uv_strerror((int)result) : "short write");
    }
    if (ccd->applied_closed_cb)
        applied_closing(ccd);
}

/* Starts a write of the index if it moved; true if one is in flight. */
static bool applied_write(struct ndfs_ccd *ccd)
{
    if (ccd->applied_fd < 0 || ccd->applied_busy || !ccd->started)
        return ccd->applied_busy;
    uint64_t v = durable_applied(ccd);
    if (v <= ccd->applied_written)
        return false; /* applied entries are committed: the index never goes back */
    g_snprintf(ccd->applied_text, sizeof ccd->applied_text, APPLIED_FMT, v, v);
    uv_buf_t buf = uv_buf_init(ccd->applied_text, CCD_APPLIED_LEN);
    ccd->applied_req.data = ccd;
    int rc =
        uv_fs_write(ccd->loop, &ccd->applied_req, ccd->applied_fd, &buf, 1, 0, applied_written);
    if (rc < 0) {
        if (!ccd->applied_warned)
            g_warning("cannot write %s/%s: %s", ccd->data_dir, APPLIED_FILE, uv_strerror(rc));
        ccd->applied_warned = true;
        return false;
    }
    ccd->applied_writing = v;
    ccd->applied_busy = true;
    return true;
}

void ccd_applied_save(struct ndfs_ccd *ccd)
{
    applied_write(ccd);
}

/* After the write in flight: one last write if the index moved, then cb. */
static void applied_closing(struct ndfs_ccd *ccd)
{
    if (!ccd->applied_final) {
        ccd->applied_final = true;
        if (applied_write(ccd))
            return;
    }
    void (*cb)(struct ndfs_ccd * ccd) = ccd->applied_closed_cb;
    ccd->applied_closed_cb = NULL;
    ccd_applied_free(ccd);
    cb(ccd);
}

void ccd_applied_close(struct ndfs_ccd *ccd, void (*cb)(struct ndfs_ccd *ccd))
{
    ccd->applied_closed_cb = cb;
    if (!ccd->applied_busy)
        applied_closing(ccd);
}
