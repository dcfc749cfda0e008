/* Failover of vdisk masters (see failover.h). The CCD leader scans the
 * vdisks whenever the membership or the vdisks change, on a deadline timer
 * (a lease that runs out, a fence to retry) and once a second: for each
 * vdisk whose master's node is not a committed member while its other path
 * is good and that node is a member, it fences the old master (the fence
 * command, or the wait for its lease) and then proposes the flip. Path
 * failures a master on this node reports become vdisk.fail-path changes,
 * made here on the leader or forwarded to it. */
#define G_LOG_DOMAIN "ndfs-failover"

#include "failover.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cluster.h"

#define TICK_MS            1000  /* the periodic check (the leadership may move) */
#define FENCE_RETRY_MS     1000  /* a failed fence command runs again after this */
#define FENCE_TIMEOUT_MS   60000 /* a fence command still running then is killed (a failure) */
#define REPORT_RETRY_MS    1000  /* a path failure not yet recorded is sent again after this */
#define REPORT_CALL_MS     5000  /* the leader answers a forwarded report within this */
#define REPORT_LOG_EVERY   30    /* a report failing again and again is logged this seldom */
#define UPDATE_ATTEMPTS    5     /* -ESTALE: the row changed meanwhile, read it again */
#define FENCE_EOF_GRACE_MS 200   /* after the exit, the rest of its stderr (a child may keep it) */
#define FENCE_LOG_LINES    20    /* lines of a fence command's stderr logged at most */

/* What the leader knows about a node that masters vdisks and is down. */
struct down_node {
    char *name;
    bool fenced;          /* the fence command succeeded; forgotten once it is a member again */
    bool running;         /* a fence command runs for it */
    uint64_t retry_at_ns; /* no fence command before this (after a failure) */
    unsigned failures;    /* fence commands that failed in a row */
};

/* A fence command running: "COMMAND NODE". Its standard error is read
 * into the log, line by line. */
struct fence_run {
    struct ndfs_failover *f; /* counts it in f->open until every handle closed */
    char *node;
    uint64_t started_ns;
    uv_process_t proc;
    uv_pipe_t err;      /* its standard error */
    uv_timer_t timeout; /* FENCE_TIMEOUT_MS, then FENCE_EOF_GRACE_MS after the exit */
    GString *line;      /* a line of its standard error not complete yet */
    unsigned lines;     /* logged so far */
    unsigned open;      /* handles not closed yet */
    bool exited, eof, done;
    uint64_t took_ms; /* from the start to the exit */
    int64_t exit_status;
    int term_signal;
};

/* A flip of a vdisk's master proposed to the CCD. */
struct flip {
    struct ndfs_failover *f; /* NULL once f closed: the answer is dropped */
    char *vdisk;
    char *from, *to;
    char *how; /* "fenced by ...", "lease expired at ...", "its path failed" */
};

/* A path failure of this node's disk to record in the CCD. */
struct report {
    struct ndfs_failover *f; /* NULL once f closed while in flight */
    char *vdisk;
    int err;
    bool in_flight;
    uint64_t retry_at_ns;
    unsigned attempts; /* in a row, failed */
    char *from;        /* the master before (leader-local proposal) */
    struct ndfs_vdisk v;
};

struct ndfs_failover {
    uv_loop_t *loop;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *m;
    struct ndfs_cluster *cluster;
    char *node_name;
    char *fence_command; /* NULL: wait for the lease */
    uv_timer_t tick;     /* TICK_MS, repeating */
    uv_timer_t kick;     /* 0 ms: a scan outside of the CCD's callbacks */
    uv_timer_t deadline; /* the next lease expiry or retry */
    unsigned open;       /* handles (timers and fence runs) not closed yet */
    bool was_leader;
    bool closing;
    GHashTable *down;     /* node name -> struct down_node */
    GHashTable *flipping; /* vdisk name -> struct flip, proposed */
    GHashTable *said;     /* vdisk name -> the last waiting line logged for it */
    GHashTable *reports;  /* vdisk name -> struct report */
    GList *runs;          /* struct fence_run * */
    void (*closed_cb)(void *data);
    void *closed_data;
};

/* A CLOCK_MONOTONIC time as local wall-clock time, "HH:MM:SS.mmm". */
static char *format_mono(uint64_t t)
{
    uint64_t mono = ndfs_mono_ns(), real = ndfs_real_ns();
    uint64_t wall = t <= mono ? real - (mono - t) : real + (t - mono);
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local((gint64)(wall / 1000000000ull));
    if (dt == NULL)
        return g_strdup("?");
    g_autofree char *hms = g_date_time_format(dt, "%H:%M:%S");
    return g_strdup_printf("%s.%03u", hms, (unsigned)(wall / 1000000ull % 1000));
}

static bool member(struct ndfs_failover *f, const char *node)
{
    return ndfs_vdisk_path_member(node, f->m);
}

static bool is_leader(struct ndfs_failover *f)
{
    return f->cluster == NULL ? true : ndfs_cluster_is_leader(f->cluster);
}

static void down_node_free(void *p)
{
    struct down_node *dn = p;
    g_free(dn->name);
    g_free(dn);
}

static struct down_node *down_node_get(struct ndfs_failover *f, const char *name)
{
    struct down_node *dn = g_hash_table_lookup(f->down, name);
    if (dn == NULL) {
        dn = g_new0(struct down_node, 1);
        dn->name = g_strdup(name);
        g_hash_table_insert(f->down, dn->name, dn);
    }
    return dn;
}

static void flip_free(struct flip *fl)
{
    g_free(fl->vdisk);
    g_free(fl->from);
    g_free(fl->to);
    g_free(fl->how);
    g_free(fl);
}

static void report_free(struct report *r)
{
    g_free(r->vdisk);
    g_free(r->from);
    ndfs_vdisk_clear(&r->v);
    g_free(r);
}

static void maybe_free(struct ndfs_failover *f)
{
    if (!f->closing || f->open > 0)
        return;
    void (*cb)(void *) = f->closed_cb;
    void *data = f->closed_data;
    g_hash_table_unref(f->down);
    g_hash_table_unref(f->flipping);
    g_hash_table_unref(f->said);
    g_hash_table_unref(f->reports);
    g_free(f->node_name);
    g_free(f->fence_command);
    g_free(f);
    if (cb != NULL)
        cb(data);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct ndfs_failover *f = h->data;
    f->open--;
    maybe_free(f);
}

/* Logs line for vdisk once (until another line or nothing is said). */
static void say_once(struct ndfs_failover *f, const char *vdisk, char *line)
{
    const char *last = g_hash_table_lookup(f->said, vdisk);
    if (last != NULL && strcmp(last, line) == 0) {
        g_free(line);
        return;
    }
    g_message("%s", line);
    g_hash_table_replace(f->said, g_strdup(vdisk), line);
}

static void scan(struct ndfs_failover *f);
static void on_timer(uv_timer_t *t);

static void schedule_scan(struct ndfs_failover *f)
{
    if (!f->closing && !uv_is_active((uv_handle_t *)&f->kick))
        uv_timer_start(&f->kick, on_timer, 0, 0);
}

/* ---- fencing ---- */

static void fence_run_closed(uv_handle_t *h)
{
    struct fence_run *run = h->data;
    if (--run->open > 0)
        return;
    struct ndfs_failover *f = run->f;
    g_free(run->node);
    g_string_free(run->line, TRUE);
    g_free(run);
    f->open--;
    maybe_free(f);
}

static void fence_run_close(struct fence_run *run)
{
    run->f->runs = g_list_remove(run->f->runs, run);
    run->open = 3;
    uv_close((uv_handle_t *)&run->proc, fence_run_closed);
    uv_close((uv_handle_t *)&run->err, fence_run_closed);
    uv_close((uv_handle_t *)&run->timeout, fence_run_closed);
}

static void fence_log_line(struct fence_run *run, const char *text, size_t len)
{
    if (len == 0)
        return;
    if (++run->lines <= FENCE_LOG_LINES)
        g_message("fence command for node %s: %.*s", run->node, (int)MIN(len, 1000), text);
    else if (run->lines == FENCE_LOG_LINES + 1)
        g_message("fence command for node %s: (more lines not logged)", run->node);
}

/* Logs the complete lines of run->line; all of it when flush. */
static void fence_log_lines(struct fence_run *run, bool flush)
{
    char *start = run->line->str, *nl;
    while ((nl = memchr(start, '\n', run->line->len - (size_t)(start - run->line->str))) != NULL) {
        fence_log_line(run, start, (size_t)(nl - start));
        start = nl + 1;
    }
    g_string_erase(run->line, 0, start - run->line->str);
    if (flush || run->line->len > 4096) {
        fence_log_line(run, run->line->str, run->line->len);
        g_string_truncate(run->line, 0);
    }
}

/* The command exited and its stderr is read (or the grace ran out). */
static void fence_done(struct fence_run *run)
{
    struct ndfs_failover *f = run->f;
    uint64_t took_ms = run->took_ms;

    if (run->done)
        return;
    run->done = true;
    uv_timer_stop(&run->timeout);
    uv_read_stop((uv_stream_t *)&run->err);
    fence_log_lines(run, true);
    if (f->closing) {
        fence_run_close(run);
        return;
    }
    struct down_node *dn = down_node_get(f, run->node);
    dn->running = false;
    if (run->exit_status == 0 && run->term_signal == 0) {
        g_message("node %s fenced: \"%s %s\" exited 0 after %" G_GUINT64_FORMAT " ms", run->node,
                  f->fence_command, run->node, took_ms);
        /* a fence done while another node led says nothing about now */
        dn->fenced = f->was_leader && is_leader(f);
        dn->failures = 0;
    } else {
        dn->failures++;
        dn->retry_at_ns = ndfs_mono_ns() + FENCE_RETRY_MS * 1000000ull;
        g_autofree char *how =
            run->term_signal != 0
                ? g_strdup_printf("was killed by signal %d", run->term_signal)
                : g_strdup_printf("exited with status %" G_GINT64_FORMAT, run->exit_status);
        g_warning("cannot fence node %s: \"%s %s\" %s after %" G_GUINT64_FORMAT
                  " ms (failure %u): the takeover waits, retrying in %d s",
                  run->node, f->fence_command, run->node, how, took_ms, dn->failures,
                  FENCE_RETRY_MS / 1000);
    }
    fence_run_close(run);
    schedule_scan(f);
}

static void fence_timer(uv_timer_t *t);

/* Kills the command and whatever it started (its own process group). */
static void fence_kill(struct fence_run *run)
{
    if (run->exited)
        return;
    if (kill(-run->proc.pid, SIGKILL) < 0)
        uv_process_kill(&run->proc, SIGKILL);
}

static void fence_exited(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    struct fence_run *run = proc->data;
    run->exited = true;
    run->took_ms = (ndfs_mono_ns() - run->started_ns) / 1000000ull;
    run->exit_status = exit_status;
    run->term_signal = term_signal;
    if (run->eof) {
        fence_done(run);
        return;
    }
    /* the rest of its stderr, unless a child of it keeps the pipe open */
    uv_timer_stop(&run->timeout);
    uv_timer_start(&run->timeout, fence_timer, FENCE_EOF_GRACE_MS, 0);
}

static void fence_timer(uv_timer_t *t)
{
    struct fence_run *run = t->data;
    if (run->exited) {
        fence_done(run);
        return;
    }
    g_warning("fence command \"%s %s\" still runs after %d s: killing it", run->f->fence_command,
              run->node, FENCE_TIMEOUT_MS / 1000);
    fence_kill(run);
}

static void fence_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char chunk[4096];
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void fence_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct fence_run *run = stream->data;
    if (nread > 0) {
        g_string_append_len(run->line, buf->base, nread);
        fence_log_lines(run, false);
        return;
    }
    if (nread == 0)
        return;
    /* EOF or an error: nothing more comes */
    uv_read_stop(stream);
    run->eof = true;
    if (run->exited)
        fence_done(run);
}

/* Runs "COMMAND NODE" (stdin and stdout /dev/null, stderr into the log). */
static void fence_start(struct ndfs_failover *f, struct down_node *dn, const char *vdisk)
{
    struct fence_run *run = g_new0(struct fence_run, 1);
    run->f = f;
    run->node = g_strdup(dn->name);
    run->line = g_string_new(NULL);
    run->proc.data = run;
    run->err.data = run;
    run->timeout.data = run;
    f->open++;
    f->runs = g_list_prepend(f->runs, run);
    uv_timer_init(f->loop, &run->timeout);
    uv_pipe_init(f->loop, &run->err, 0);
    char *args[] = {f->fence_command, dn->name, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&run->err},
    };
    uv_process_options_t opt = {
        .exit_cb = fence_exited,
        .file = f->fence_command,
        .args = args,
        .stdio_count = 3,
        .stdio = stdio,
        /* a process group of its own: a timeout kills what it started too */
        .flags = UV_PROCESS_DETACHED,
    };
    int rc = uv_spawn(f->loop, &run->proc, &opt);
    if (rc < 0) {
        dn->failures++;
        dn->retry_at_ns = ndfs_mono_ns() + FENCE_RETRY_MS * 1000000ull;
        g_warning("cannot fence node %s: cannot run \"%s %s\": %s (failure %u): the takeover "
                  "waits, retrying in %d s",
                  dn->name, f->fence_command, dn->name, uv_strerror(rc), dn->failures,
                  FENCE_RETRY_MS / 1000);
        /* the handles must be closed even when the spawn failed */
        run->done = true;
        fence_run_close(run);
        return;
    }
    run->started_ns = ndfs_mono_ns();
    uv_read_start((uv_stream_t *)&run->err, fence_alloc, fence_read);
    uv_timer_start(&run->timeout, fence_timer, FENCE_TIMEOUT_MS, 0);
    dn->running = true;
    g_message("node %s is down and masters vdisk \"%s\": fencing it: %s %s (pid %d)", dn->name,
              vdisk, f->fence_command, dn->name, run->proc.pid);
}

/* ---- the flip of a master ---- */

static void flip_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct flip *fl = data;
    struct ndfs_failover *f = fl->f;
    (void)ccd;

    if (f == NULL) {
        flip_free(fl);
        return;
    }
    if (status == 0) {
        g_message("vdisk \"%s\": master %s %s: %s takes over (%s)", fl->vdisk, fl->from,
                  g_str_has_prefix(fl->how, "its path") ? "cannot do I/O" : "is down", fl->to,
                  fl->how);
        g_hash_table_remove(f->said, fl->vdisk);
    } else if (status != -ESTALE && status != -ENOENT) {
        g_warning("vdisk \"%s\": cannot move its master from %s to %s: %s", fl->vdisk, fl->from,
                  fl->to, g_strerror(-status));
    }
    /* frees fl; what changed meanwhile is looked at again */
    g_hash_table_remove(f->flipping, fl->vdisk);
    schedule_scan(f);
}

static void flip_propose(struct ndfs_failover *f, const struct ndfs_vdisk *v, char *how)
{
    struct ndfs_vdisk nv = {0};
    ndfs_vdisk_copy(&nv, v);
    nv.on_secondary = !v->on_secondary;
    nv.mtime_ns = ndfs_real_ns();
    struct flip *fl = g_new0(struct flip, 1);
    fl->f = f;
    fl->vdisk = g_strdup(v->name);
    fl->from = g_strdup(ndfs_vdisk_master_node(v));
    fl->to = g_strdup(ndfs_vdisk_master_node(&nv));
    fl->how = how;
    int rc = ndfs_ccd_vdisk_update(f->ccd, &nv, flip_done, fl);
    ndfs_vdisk_clear(&nv);
    if (rc < 0) {
        g_warning("vdisk \"%s\": cannot move its master from %s to %s: %s", fl->vdisk, fl->from,
                  fl->to, g_strerror(-rc));
        flip_free(fl);
        return;
    }
    g_hash_table_replace(f->flipping, fl->vdisk, fl);
}

/* ---- the scan ---- */

struct scan_ctx {
    struct ndfs_failover *f;
    uint64_t now;
    uint64_t next; /* the earliest deadline, UINT64_MAX: none */
};

static void scan_vdisk(struct scan_ctx *sc, const struct ndfs_vdisk *v)
{
    struct ndfs_failover *f = sc->f;

    if (v->secondary_node == NULL || g_hash_table_contains(f->flipping, v->name))
        return;
    const char *master = ndfs_vdisk_master_node(v);
    const char *other = v->on_secondary ? v->primary_node : v->secondary_node;
    bool master_failed = v->on_secondary ? v->secondary_failed : v->primary_failed;
    bool other_failed = v->on_secondary ? v->primary_failed : v->secondary_failed;

    if (member(f, master)) {
        /* its path was marked failed while the other node was away: the
         * master refuses every request already, no fencing needed */
        if (master_failed && !other_failed && member(f, other))
            flip_propose(f, v, g_strdup_printf("its path failed, %s is back", other));
        else
            g_hash_table_remove(f->said, v->name);
        return;
    }
    if (other_failed || !member(f, other)) {
        say_once(f, v->name,
                 g_strdup_printf("vdisk \"%s\": master %s is down and %s cannot take over (%s): "
                                 "its I/O waits",
                                 v->name, master, other,
                                 other_failed ? "its path is marked failed" : "it is down too"));
        return;
    }
    if (f->fence_command != NULL) {
        struct down_node *dn = down_node_get(f, master);
        if (dn->fenced) {
            flip_propose(f, v, g_strdup_printf("fenced by %s", f->fence_command));
        } else if (!dn->running) {
            if (sc->now >= dn->retry_at_ns)
                fence_start(f, dn, v->name);
            else if (dn->retry_at_ns < sc->next)
                sc->next = dn->retry_at_ns;
        }
        return;
    }
    uint64_t over = ndfs_membership_lease_over_ns(f->m, master);
    if (over == UINT64_MAX)
        return; /* the membership does not lead (yet): the tick looks again */
    if (sc->now >= over) {
        g_autofree char *at = format_mono(over);
        flip_propose(f, v, g_strdup_printf("lease expired at %s", at));
        return;
    }
    if (over < sc->next)
        sc->next = over;
    g_autofree char *at = format_mono(over);
    say_once(f, v->name,
             g_strdup_printf("vdisk \"%s\": master %s is down: %s takes over once its lease has "
                             "certainly expired, at %s",
                             v->name, master, other, at));
    return;
}

static int collect_vdisk(const struct ndfs_vdisk *v, void *data)
{
    struct ndfs_vdisk *copy = g_new0(struct ndfs_vdisk, 1);
    ndfs_vdisk_copy(copy, v);
    g_ptr_array_add(data, copy);
    return 0;
}

static void vdisk_free(void *p)
{
    ndfs_vdisk_clear(p);
    g_free(p);
}

static void report_try(struct report *r);

static void scan_reports(struct ndfs_failover *f, uint64_t now, uint64_t *next)
{
    GHashTableIter it;
    gpointer value;
    g_autoptr(GPtrArray) due = g_ptr_array_new();
    g_hash_table_iter_init(&it, f->reports);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct report *r = value;
        if (r->in_flight)
            continue;
        if (now >= r->retry_at_ns)
            g_ptr_array_add(due, r);
        else if (r->retry_at_ns < *next)
            *next = r->retry_at_ns;
    }
    /* report_try may drop reports: not while iterating the table */
    for (guint i = 0; i < due->len; i++)
        report_try(due->pdata[i]);
}

static void scan(struct ndfs_failover *f)
{
    if (f->closing)
        return;
    struct scan_ctx sc = {.f = f, .now = ndfs_mono_ns(), .next = UINT64_MAX};
    scan_reports(f, sc.now, &sc.next);

    bool leader = is_leader(f);
    if (!leader) {
        if (f->was_leader) {
            /* another leader decides now; a fence remembered from here
             * would hide a node that came back meanwhile */
            g_hash_table_remove_all(f->down);
            g_hash_table_remove_all(f->said);
        }
        f->was_leader = false;
    } else {
        f->was_leader = true;
        /* read first, act after: nothing is proposed from inside a read */
        g_autoptr(GPtrArray) vdisks = g_ptr_array_new_with_free_func(vdisk_free);
        int rc = ndfs_ccd_vdisk_foreach(f->ccd, collect_vdisk, vdisks);
        if (rc < 0)
            g_debug("cannot read the vdisks: %s", g_strerror(-rc));
        for (guint i = 0; rc >= 0 && i < vdisks->len; i++)
            scan_vdisk(&sc, vdisks->pdata[i]);
        /* a node fenced and back is fenced again if it goes down again */
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, f->down);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            struct down_node *dn = value;
            if (!dn->running && member(f, dn->name))
                g_hash_table_iter_remove(&it);
        }
    }
    uv_timer_stop(&f->deadline);
    if (sc.next != UINT64_MAX) {
        uint64_t now = ndfs_mono_ns();
        uint64_t ms = sc.next > now ? (sc.next - now + 999999ull) / 1000000ull : 0;
        uv_timer_start(&f->deadline, on_timer, ms, 0);
    }
}

static void on_timer(uv_timer_t *t)
{
    scan(t->data);
}

/* ---- path failures reported by this node's master ---- */

static void report_drop(struct report *r)
{
    g_hash_table_remove(r->f->reports, r->vdisk); /* frees r */
}

static void report_retry(struct report *r, const char *why)
{
    r->attempts++;
    r->retry_at_ns = ndfs_mono_ns() + REPORT_RETRY_MS * 1000000ull;
    if (r->attempts == 1 || r->attempts % REPORT_LOG_EVERY == 0)
        g_warning("vdisk \"%s\": cannot mark the path of %s failed yet (%s): retrying every %d s "
                  "(attempt %u)",
                  r->vdisk, r->f->node_name, why, REPORT_RETRY_MS / 1000, r->attempts);
    /* the tick sends it again */
}

static void report_local_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct report *r = data;
    (void)ccd;
    r->in_flight = false;
    if (r->f == NULL) {
        report_free(r);
        return;
    }
    if (status == -ESTALE && r->attempts < UPDATE_ATTEMPTS) {
        r->attempts++;
        report_try(r);
        return;
    }
    if (status < 0) {
        report_retry(r, g_strerror(-status));
        return;
    }
    const char *now = ndfs_vdisk_master_node(&r->v);
    g_autofree char *move = strcmp(now, r->from) != 0
                                ? g_strdup_printf("%s masters it now (was %s)", now, r->from)
                                : g_strdup_printf("%s still masters it", now);
    g_message("vdisk \"%s\": the path of %s marked failed after a disk error there (%s): %s",
              r->vdisk, r->f->node_name, g_strerror(-r->err), move);
    report_drop(r);
}

static void report_answered(int status, const char *message, GVariant *result, void *data)
{
    struct report *r = data;
    (void)result;
    r->in_flight = false;
    if (r->f == NULL) {
        report_free(r);
        return;
    }
    if (status < 0) {
        g_autofree char *why =
            g_strdup_printf("the leader answered: %s", message ? message : g_strerror(-status));
        report_retry(r, why);
        return;
    }
    g_message("vdisk \"%s\": the path of %s marked failed after a disk error there (%s), by the "
              "leader",
              r->vdisk, r->f->node_name, g_strerror(-r->err));
    report_drop(r);
}

/* Records the failure in the CCD unless it is there already. */
static void report_try(struct report *r)
{
    struct ndfs_failover *f = r->f;
    ndfs_vdisk_clear(&r->v);
    int rc = ndfs_ccd_vdisk_get(f->ccd, r->vdisk, &r->v);
    if (rc < 0) {
        if (rc != -ENOENT) {
            report_retry(r, g_strerror(-rc));
            return;
        }
        report_drop(r); /* removed meanwhile */
        return;
    }
    bool is_primary = strcmp(r->v.primary_node, f->node_name) == 0;
    bool is_secondary = r->v.secondary_node && strcmp(r->v.secondary_node, f->node_name) == 0;
    if ((!is_primary && !is_secondary) || (is_primary && r->v.primary_failed) ||
        (is_secondary && r->v.secondary_failed)) {
        report_drop(r); /* nothing (more) to record */
        return;
    }
    if (r->v.secondary_node == NULL) {
        /* no other path: the error goes to the application as from a local
         * disk, and the path stays in use (a bad sector is not a dead disk) */
        report_drop(r);
        return;
    }
    if (is_leader(f)) {
        bool changed = false;
        g_autofree char *reason = NULL;
        g_free(r->from);
        r->from = g_strdup(ndfs_vdisk_master_node(&r->v));
        rc = ndfs_vdisk_path_apply(&r->v, NDFS_PATH_FAIL, f->node_name, ndfs_vdisk_path_member,
                                   f->m, &changed, &reason);
        if (rc < 0 || !changed) {
            if (rc < 0)
                g_warning("vdisk \"%s\": %s", r->vdisk, reason);
            report_drop(r);
            return;
        }
        r->v.mtime_ns = ndfs_real_ns();
        rc = ndfs_ccd_vdisk_update(f->ccd, &r->v, report_local_done, r);
        if (rc < 0) {
            report_retry(r, g_strerror(-rc));
            return;
        }
        r->in_flight = true;
        return;
    }
    char leader[NDFS_NODE_NAME_MAX + 1];
    ndfs_ccd_leader(f->ccd, leader);
    if (leader[0] == '\0') {
        report_retry(r, "no leader");
        return;
    }
    GVariantDict args;
    g_variant_dict_init(&args, NULL);
    g_variant_dict_insert(&args, "name", "s", r->vdisk);
    g_variant_dict_insert(&args, "node", "s", f->node_name);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "command", "s", "vdisk.fail-path");
    g_variant_dict_insert_value(&d, "args", g_variant_dict_end(&args));
    g_variant_dict_insert(&d, "uid", "u", (guint32)getuid());
    g_variant_dict_insert(&d, "gid", "u", (guint32)getgid());
    g_variant_dict_insert(&d, "pid", "i", (gint32)getpid());
    rc = ndfs_cluster_call_timeout(f->cluster, leader, "change", g_variant_dict_end(&d),
                                   REPORT_CALL_MS, report_answered, r);
    if (rc < 0) {
        g_autofree char *why =
            g_strdup_printf("cannot reach the leader %s: %s", leader, g_strerror(-rc));
        report_retry(r, why);
        return;
    }
    r->in_flight = true;
}

void ndfs_failover_path_failed(struct ndfs_failover *f, const char *vdisk, int err)
{
    if (f->closing)
        return;
    struct report *r = g_hash_table_lookup(f->reports, vdisk);
    if (r != NULL) {
        r->err = err; /* one in flight or waiting already */
        return;
    }
    g_message("vdisk \"%s\": disk error on this node's path (%s): marking it failed", vdisk,
              g_strerror(-err));
    r = g_new0(struct report, 1);
    r->f = f;
    r->vdisk = g_strdup(vdisk);
    r->err = err;
    g_hash_table_insert(f->reports, r->vdisk, r);
    report_try(r);
}

/* ---- life cycle ---- */

int ndfs_failover_new(uv_loop_t *loop, struct ndfs_ccd *ccd, struct ndfs_membership *m,
                      struct ndfs_cluster *cluster, const char *node_name,
                      const char *fence_command, struct ndfs_failover **out, char **errmsg)
{
    *out = NULL;
    if (fence_command != NULL && !g_path_is_absolute(fence_command)) {
        *errmsg = g_strdup_printf("fence command \"%s\" is not an absolute path", fence_command);
        return -EINVAL;
    }
    struct ndfs_failover *f = g_new0(struct ndfs_failover, 1);
    f->loop = loop;
    f->ccd = ccd;
    f->m = m;
    f->cluster = cluster;
    f->node_name = g_strdup(node_name);
    f->fence_command = g_strdup(fence_command);
    f->down = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, down_node_free);
    f->flipping = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)flip_free);
    f->said = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    f->reports = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)report_free);
    uv_timer_t *timers[] = {&f->tick, &f->kick, &f->deadline};
    for (size_t i = 0; i < G_N_ELEMENTS(timers); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = f;
        f->open++;
    }
    uv_timer_start(&f->tick, on_timer, TICK_MS, TICK_MS);
    *out = f;
    schedule_scan(f);
    return 0;
}

void ndfs_failover_ccd_changed(struct ndfs_failover *f, enum ndfs_ccd_table table)
{
    if (f->closing)
        return;
    if (table == NDFS_CCD_VDISKS || table == NDFS_CCD_MEMBERSHIP || table == NDFS_CCD_NODES)
        schedule_scan(f);
}

void ndfs_failover_membership_changed(struct ndfs_failover *f)
{
    schedule_scan(f);
}

void ndfs_failover_close(struct ndfs_failover *f, void (*cb)(void *data), void *data)
{
    if (f->closing)
        return;
    f->closing = true;
    f->closed_cb = cb;
    f->closed_data = data;
    /* answers still to come are dropped by their callbacks */
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, f->flipping);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        ((struct flip *)value)->f = NULL;
        g_hash_table_iter_steal(&it);
    }
    g_hash_table_iter_init(&it, f->reports);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct report *r = value;
        if (r->in_flight) {
            r->f = NULL;
            g_hash_table_iter_steal(&it);
        }
    }
    g_hash_table_remove_all(f->reports);
    for (GList *l = f->runs; l != NULL; l = l->next) {
        struct fence_run *run = l->data;
        g_message("stopping: killing the fence command for node %s (pid %d)", run->node,
                  run->proc.pid);
        fence_kill(run);
        /* its exit closes it; f waits for that */
    }
    uv_close((uv_handle_t *)&f->tick, on_timer_closed);
    uv_close((uv_handle_t *)&f->kick, on_timer_closed);
    uv_close((uv_handle_t *)&f->deadline, on_timer_closed);
}
