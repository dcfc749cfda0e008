/* The CCD object: the data-directory lock, the LMDB store, Raft (raft_uv on
 * <data_dir>/raft) and the public API of include/ndfs/ccd.h.
 *
 * Durability: the Raft log (with its snapshots) is the only durable record.
 * LMDB is opened with MDB_NOSYNC | MDB_NOMETASYNC and is rebuilt at every
 * start: ndfs_ccd_open() starts from new LMDB files (an unsynced file may be
 * corrupt after a crash), ndfs_ccd_start() empties every table in one
 * transaction all the same, raft_start()
 * restores the latest snapshot through fsm->restore, and the entries after it
 * are applied again once they are known to be committed. This keeps LMDB and
 * the log consistent after any crash without storing the last applied index
 * next to the tables.
 *
 * Readiness. Without a transport, and for a node whose replica does not yet
 * hold the cluster and its own row (the first start, a node that joins),
 * ready_cb runs only once the replica is current: after a barrier of the
 * leader's term has been applied (on the leader), or once the commit index
 * the leader reported has been applied (on a follower). A node of a cluster
 * that restarts on its data dir is ready as soon as its replica is loaded:
 * the snapshot, then its log up to the index it had applied before (kept in
 * <data_dir>/applied, see wait.c; libraft alone would apply nothing past the
 * snapshot until a leader is reachable). Until a leader is reachable, that
 * replica may lag behind what the cluster committed since; it catches up in
 * the background (tick_cb), the watch reporting each change as usual. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ccd_private.h"

#define RAFT_SERVER_ID      1
#define ELECTION_TIMEOUT_MS 1000
#define HEARTBEAT_MS        100
#define BARRIER_RETRY_MS    100
#define TICK_MS             100
#define DEFAULT_THRESHOLD   1024
#define DEFAULT_TRAILING    128

/* A change proposed to Raft, freed when its callback has run. */
struct proposal {
    struct raft_apply req;
    struct ndfs_ccd *ccd;
    ndfs_ccd_done_cb cb;
    void *data;
};

static void commit_reply_cb(void *data, const char *peer, uint64_t commit_index);

void ccd_set_errmsg(struct ndfs_ccd *ccd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(ccd->errmsg);
    ccd->errmsg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

static int raft_errno(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return -ENOTCONN;
    case RAFT_CANCELED:
    case RAFT_SHUTDOWN:
        return -ECANCELED;
    case RAFT_NOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Maps a Raft error and keeps raft's own words in errmsg. */
int ccd_raft_fail(struct ndfs_ccd *ccd, int rv, const char *what)
{
    const char *detail = raft_errmsg(&ccd->raft);
    if (detail == NULL || *detail == '\0')
        detail = raft_strerror(rv);
    ccd_set_errmsg(ccd, "%s: %s", what, detail);
    return raft_errno(rv);
}

struct ccd_store *ccd_get_store(struct ndfs_ccd *ccd)
{
    return &ccd->store;
}

void ccd_notify(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key, bool removed)
{
    /* while the tables are rebuilt at start, readers wait for ready_cb */
    if (ccd->ready && ccd->watch_cb)
        ccd->watch_cb(ccd, table, key, removed, ccd->watch_data);
}

static int take_lock(const char *data_dir, int *fd_out, char **errmsg)
{
    g_autofree char *path = g_build_filename(data_dir, "lock", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        *errmsg = g_strdup_printf("%s: %s", path, g_strerror(err));
        return -err;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        if (n > 0)
            pid[n] = '\0';
        g_strstrip(pid);
        close(fd);
        if (err == EWOULDBLOCK) {
            *errmsg = g_strdup_printf("data-dir %s is in use by another ndfsd (pid %s)", data_dir,
                                      *pid ? pid : "unknown");
            return -EBUSY;
        }
        *errmsg = g_strdup_printf("lock %s: %s", path, g_strerror(err));
        return -err;
    }
    g_autofree char *mine = g_strdup_printf("%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, mine, strlen(mine), 0) != (ssize_t)strlen(mine)) {
        int err = errno ? errno : EIO;
        *errmsg = g_strdup_printf("%s: %s", path, g_strerror(err));
        close(fd);
        return -err;
    }
    *fd_out = fd;
    return 0;
}

static int make_dir(const char *path, char **errmsg)
{
    if (g_mkdir_with_parents(path, 0700) != 0) {
        int err = errno;
        *errmsg = g_strdup_printf("cannot create %s: %s", path, g_strerror(err));
        return -err;
    }
    return 0;
}

static void ccd_free(struct ndfs_ccd *ccd)
{
    ccd_applied_free(ccd);
    ccd_store_close(&ccd->store);
    if (ccd->lock_fd >= 0)
        close(ccd->lock_fd); /* releases the flock */
    g_free(ccd->data_dir);
    g_free(ccd->node_name);
    g_strfreev(ccd->addresses);
    if (ccd->peers)
        g_hash_table_destroy(ccd->peers);
    g_free(ccd->errmsg);
    g_free(ccd);
}

int ndfs_ccd_open(uv_loop_t *loop, const struct ndfs_ccd_config *cfg, struct ndfs_ccd **out,
                  char **errmsg)
{
    *out = NULL;
    *errmsg = NULL;
    if (cfg->data_dir == NULL || *cfg->data_dir == '\0') {
        *errmsg = g_strdup("no data directory");
        return -EINVAL;
    }
    if (!ccd_valid_node_name(cfg->node_name)) {
        *errmsg = g_strdup_printf("invalid node name \"%s\"", cfg->node_name ? cfg->node_name : "");
        return -EINVAL;
    }

    struct ndfs_ccd *ccd = g_new0(struct ndfs_ccd, 1);
    ccd->loop = loop;
    ccd->lock_fd = -1;
    ccd->applied_fd = -1;
    ccd->data_dir = g_strdup(cfg->data_dir);
    ccd->node_name = g_strdup(cfg->node_name);
    ccd->snapshot_threshold = cfg->snapshot_threshold ? cfg->snapshot_threshold : DEFAULT_THRESHOLD;
    ccd->snapshot_trailing = cfg->snapshot_trailing ? cfg->snapshot_trailing : DEFAULT_TRAILING;
    ccd->election_timeout_ms =
        cfg->election_timeout_ms ? cfg->election_timeout_ms : ELECTION_TIMEOUT_MS;
    ccd->heartbeat_timeout_ms =
        cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : HEARTBEAT_MS;
    ccd->net = cfg->transport;
    ccd->join = cfg->join;
    ccd->addresses = cfg->addresses ? g_strdupv((char **)cfg->addresses) : g_new0(char *, 1);
    ccd->peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

    g_autofree char *lmdb_dir = g_build_filename(cfg->data_dir, "ccd", NULL);
    g_autofree char *raft_dir = g_build_filename(cfg->data_dir, "raft", NULL);
    int rc = make_dir(cfg->data_dir, errmsg);
    if (rc == 0)
        rc = take_lock(cfg->data_dir, &ccd->lock_fd, errmsg);
    if (rc == 0)
        rc = ccd_node_id_load(ccd, cfg, errmsg);
    if (rc == 0)
        rc = make_dir(lmdb_dir, errmsg);
    if (rc == 0)
        rc = make_dir(raft_dir, errmsg);
    if (rc == 0)
        rc = ccd_store_open(&ccd->store, lmdb_dir, errmsg);
    if (rc != 0) {
        ccd_free(ccd);
        return rc;
    }

    if (ccd->net)
        rc = ccd_bridge_init(&ccd->transport, loop, ccd->net);
    else
        rc = ccd_null_transport_init(&ccd->transport);
    if (rc != 0) {
        *errmsg = g_strdup_printf("Raft over the cluster transport: %s", g_strerror(-rc));
        ccd_free(ccd);
        return rc;
    }
    ccd_fsm_init(&ccd->fsm, ccd);
    int rv = raft_uv_init(&ccd->io, loop, raft_dir, &ccd->transport);
    if (rv != 0) {
        *errmsg = g_strdup_printf("raft log %s: %s", raft_dir,
                                  *ccd->io.errmsg ? ccd->io.errmsg : raft_strerror(rv));
        if (ccd->net)
            ccd_bridge_close(&ccd->transport);
        ccd_free(ccd);
        return raft_errno(rv);
    }
    rc = ccd->net ? ccd_applied_open(ccd, errmsg) : 0;
    if (rc != 0) {
        raft_uv_close(&ccd->io);
        ccd_bridge_close(&ccd->transport);
        ccd_free(ccd);
        return rc;
    }
    rv = raft_init(&ccd->raft, &ccd->io, &ccd->fsm, ccd->node_id, ccd->node_name);
    if (rv != 0) {
        *errmsg = g_strdup_printf("raft log %s: %s", raft_dir, raft_errmsg(&ccd->raft));
        raft_uv_close(&ccd->io);
        if (ccd->net)
            ccd_bridge_close(&ccd->transport);
        ccd_free(ccd);
        return raft_errno(rv);
    }
    ccd->raft.data = ccd;
    raft_set_election_timeout(&ccd->raft, ccd->election_timeout_ms);
    raft_set_heartbeat_timeout(&ccd->raft, ccd->heartbeat_timeout_ms);
    /* a node that restarts, or comes back from a freeze or a partition,
     * asks first whether it could win before it raises the term: it does
     * not depose a leader the others still hear (which would cost every
     * master its lease for an election) */
    raft_set_pre_vote(&ccd->raft, true);
    if (ccd->net)
        ccd_bridge_set_commit_handlers(&ccd->transport, &ccd->raft, commit_reply_cb, ccd);
    raft_set_snapshot_threshold(&ccd->raft, ccd->snapshot_threshold);
    raft_set_snapshot_trailing(&ccd->raft, ccd->snapshot_trailing);
    *out = ccd;
    return 0;
}

static void finish_ready(struct ndfs_ccd *ccd, int status)
{
    ndfs_ccd_ready_cb cb = ccd->ready_cb;
    if (cb == NULL)
        return;
    ccd->ready_cb = NULL;
    ccd->ready = status == 0;
    if (status == 0)
        ccd_nodes_changed(ccd, NULL, false); /* the tables are current: save the peers */
    if (status == 0)
        g_info("CCD ready: node %s, Raft index %llu applied%s", ccd->node_name,
               raft_last_applied(&ccd->raft),
               ccd->current ? "" : " from the local log (catching up once a leader is reachable)");
    cb(ccd, status, ccd->ready_data);
}

static void nudge_followers(struct ndfs_ccd *ccd);

static void nudge_cb(struct raft_barrier *req, int status)
{
    struct ndfs_ccd *ccd = req->data;
    (void)status; /* nothing waits for it: a lost leadership ends it */
    ccd->nudge_pending = false;
    if (ccd->nudge_again && !ccd->closing) {
        ccd->nudge_again = false;
        nudge_followers(ccd);
    }
}

static void nudge_followers(struct ndfs_ccd *ccd)
{
    if (ccd->net == NULL || ccd->closing || raft_state(&ccd->raft) != RAFT_LEADER)
        return;
    if (ccd->nudge_pending) {
        ccd->nudge_again = true; /* its append may have left before this commit */
        return;
    }
    ccd->nudge.data = ccd;
    if (raft_barrier(&ccd->raft, &ccd->nudge, nudge_cb) == 0)
        ccd->nudge_pending = true;
}

static void proposal_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    struct ndfs_ccd *ccd = p->ccd;
    int rc;
    if (ccd->closing)
        rc = -ECANCELED;
    else if (status != 0)
        rc = ccd_raft_fail(ccd, status, "apply a change");
    else
        rc = (int)(intptr_t)result;
    /* libraft moves last_applied past this entry only after this callback,
     * yet the entry is applied: an answer given from here covers it */
    if (!ccd->closing && status == 0 && req->index > ccd->applied_floor)
        ccd->applied_floor = req->index;
    if (!ccd->closing && status == 0)
        nudge_followers(ccd);
    p->cb(ccd, rc, p->data);
    g_free(p);
}

int ccd_propose(struct ndfs_ccd *ccd, struct raft_buffer buf, ndfs_ccd_done_cb cb, void *data)
{
    if (ccd->closing || !ccd->started) {
        raft_free(buf.base);
        ccd_set_errmsg(ccd, "the CCD is %s", ccd->closing ? "shutting down" : "not started");
        return ccd->closing ? -ECANCELED : -ENOTCONN;
    }
    struct proposal *p = g_new0(struct proposal, 1);
    p->req.data = p;
    p->ccd = ccd;
    p->cb = cb;
    p->data = data;
    int rv = raft_apply(&ccd->raft, &p->req, &buf, 1, proposal_cb);
    if (rv != 0) {
        /* on failure the buffer stays ours */
        raft_free(buf.base);
        g_free(p);
        return ccd_raft_fail(ccd, rv, "propose a change");
    }
    return 0;
}

static void became_current(struct ndfs_ccd *ccd, const char *how)
{
    if (ccd->current)
        return;
    ccd->current = true;
    if (ccd->ready)
        g_info("CCD caught up (%s): Raft index %llu applied", how, raft_last_applied(&ccd->raft));
}

static void bootstrap_done(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)data;
    if (status == 0)
        g_info("bootstrapped a new one-voter cluster with node %s", ccd->node_name);
    else if (status != -EEXIST && status != -ECANCELED)
        ccd_set_errmsg(ccd, "bootstrap a new cluster: %s", g_strerror(-status));
    /* -EEXIST: an earlier bootstrap entry was applied first; fine */
    if (status == 0 || status == -EEXIST)
        became_current(ccd, "leader");
    finish_ready(ccd, status == -EEXIST ? 0 : status);
}

static int propose_bootstrap(struct ndfs_ccd *ccd)
{
    g_autofree char *cluster_id = g_uuid_string_random();
    char *members[] = {ccd->node_name, NULL};
    struct ndfs_node node = {.id = ccd->node_id,
                             .role = NDFS_NODE_VOTER,
                             .name = ccd->node_name,
                             .address = "",
                             .addresses = ccd->addresses};
    struct ccd_membership m = {.epoch = 1, .members = members};
    struct raft_buffer buf;
    int rc = ccd_cmd_bootstrap(cluster_id, &node, &m, &buf);
    if (rc != 0)
        return rc;
    return ccd_propose(ccd, buf, bootstrap_done, NULL);
}

static bool is_bootstrapped(struct ndfs_ccd *ccd)
{
    MDB_txn *txn;
    MDB_val val;
    if (mdb_txn_begin(ccd->store.env, NULL, MDB_RDONLY, &txn) != 0)
        return false;
    bool found = ccd_txn_get(txn, ccd->store.dbi[NDFS_CCD_META], CCD_META_CLUSTER_ID, &val) == 0;
    mdb_txn_abort(txn);
    return found;
}

static void retry_timer_cb(uv_timer_t *timer);

/* Only the first node of a cluster creates it; a node that joined (or may
 * join) never does, even with an empty log. */
static bool may_bootstrap(const struct ndfs_ccd *ccd)
{
    return !ccd->join && ccd->node_id == RAFT_SERVER_ID;
}

/* A startup error before ready fails the start; after it, it is logged. */
static void start_error(struct ndfs_ccd *ccd, int rc)
{
    if (ccd->ready_cb)
        finish_ready(ccd, rc);
    else
        g_warning("%s", ndfs_ccd_errmsg(ccd));
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct ndfs_ccd *ccd = req->data;
    ccd->barrier_pending = false;
    if (ccd->closing) {
        finish_ready(ccd, -ECANCELED);
        return;
    }
    if (status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST) {
        if (ccd->net == NULL) /* with a network the tick timer tries again */
            uv_timer_start(&ccd->retry_timer, retry_timer_cb, BARRIER_RETRY_MS, 0);
        return;
    }
    if (status != 0) {
        start_error(ccd, ccd_raft_fail(ccd, status, "wait for the Raft log"));
        return;
    }
    ccd->barrier_term = ccd->barrier_req_term;
    if (ccd->ready_cb == NULL) { /* ready from the local log: now current */
        became_current(ccd, "leader");
        return;
    }
    if (is_bootstrapped(ccd)) {
        became_current(ccd, "leader");
        finish_ready(ccd, 0);
        return;
    }
    if (!may_bootstrap(ccd))
        return; /* cannot happen: a leader has the log that made it a voter */
    int rc = propose_bootstrap(ccd);
    if (rc != 0)
        finish_ready(ccd, rc);
}

/* The start barrier needs a leader; until this node leads, try again. */
static int try_barrier(struct ndfs_ccd *ccd)
{
    ccd->barrier.data = ccd;
    ccd->barrier_req_term = ccd->raft.current_term;
    int rv = raft_barrier(&ccd->raft, &ccd->barrier, barrier_cb);
    if (rv == RAFT_NOTLEADER) {
        if (ccd->net == NULL)
            uv_timer_start(&ccd->retry_timer, retry_timer_cb, BARRIER_RETRY_MS, 0);
        return 0;
    }
    if (rv == 0)
        ccd->barrier_pending = true;
    return rv == 0 ? 0 : ccd_raft_fail(ccd, rv, "wait for the Raft log");
}

static void retry_timer_cb(uv_timer_t *timer)
{
    struct ndfs_ccd *ccd = timer->data;
    if (ccd->closing)
        return;
    int rc = try_barrier(ccd);
    if (rc != 0)
        finish_ready(ccd, rc);
}

/* Follower: current once the leader's commit index at the time we asked
 * has been applied and the tables hold the cluster and our own row. */
static void check_follower_current(struct ndfs_ccd *ccd)
{
    if (ccd->current || ccd->ready_target == 0)
        return;
    if (raft_last_applied(&ccd->raft) >= ccd->ready_target && is_bootstrapped(ccd) &&
        ccd_has_own_row(ccd)) {
        became_current(ccd, "follower");
        finish_ready(ccd, 0);
    }
}

static void commit_reply_cb(void *data, const char *peer, uint64_t commit_index)
{
    struct ndfs_ccd *ccd = data;
    raft_id id = 0;
    const char *address = NULL;
    if (ccd->closing || ccd->current || ccd->ready_target != 0 || commit_index == 0)
        return;
    raft_leader(&ccd->raft, &id, &address);
    if (address == NULL || strcmp(address, peer) != 0)
        return; /* a stale answer from a former leader */
    ccd->ready_target = commit_index;
    check_follower_current(ccd);
}

/* With a network, every tick: a restarted node becomes ready from its local
 * replica; a leader runs a barrier of its term (older entries commit only
 * with one of the current term, so it and the followers apply everything
 * the cluster committed), a follower not yet current asks the leader for
 * its commit index; the applied index is saved; and once its barrier has
 * been applied, the leader brings the Raft configuration in line with the
 * nodes table (never from a stale table). */
static void tick_cb(uv_timer_t *timer)
{
    struct ndfs_ccd *ccd = timer->data;
    if (ccd->closing)
        return;
    if (!ccd->ready && ccd->ready_cb == NULL)
        return; /* startup failed */
    if (!ccd->ready && ccd->local_ready)
        finish_ready(ccd, 0);
    if (ccd->ready)
        ccd_applied_save(ccd);
    if (raft_state(&ccd->raft) == RAFT_LEADER) {
        if (ccd->barrier_term != ccd->raft.current_term) {
            if (!ccd->barrier_pending) {
                int rc = try_barrier(ccd);
                if (rc != 0)
                    start_error(ccd, rc);
            }
            return;
        }
        if (ccd->ready)
            ccd_reconcile(ccd);
        return;
    }
    if (ccd->current)
        return;
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&ccd->raft, &id, &address);
    if (id == 0 || id == ccd->node_id || address == NULL)
        return;
    if (ccd->ready_target == 0)
        ccd_bridge_query_commit(&ccd->transport, address);
    else
        check_follower_current(ccd);
}

int ndfs_ccd_start(struct ndfs_ccd *ccd, ndfs_ccd_ready_cb cb, void *data)
{
    struct raft_configuration conf;
    int rv = 0;

    if (ccd->started || ccd->closing) {
        ccd_set_errmsg(ccd, "the CCD is already started");
        return -EALREADY;
    }
    if (may_bootstrap(ccd)) {
        raft_configuration_init(&conf);
        rv = raft_configuration_add(&conf, RAFT_SERVER_ID, ccd->node_name, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&ccd->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
            return ccd_raft_fail(ccd, rv, "bootstrap the Raft log");
    }

    int rc = ccd_store_clear(&ccd->store);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "empty the LMDB tables: %s", g_strerror(-rc));
        return rc;
    }
    ccd_peers_load(ccd);
    rv = raft_start(&ccd->raft);
    if (rv != 0)
        return ccd_raft_fail(ccd, rv, "start Raft");
    ccd->started = true;
    uint64_t replayed = ccd_applied_replay(ccd);
    /* a node that was in the cluster before: ready from its own replica */
    ccd->local_ready = ccd->net != NULL && is_bootstrapped(ccd) && ccd_has_own_row(ccd);
    if (ccd->local_ready)
        g_info("CCD replica loaded from the local log: Raft index %llu applied (%" PRIu64
               " by replaying the log)",
               raft_last_applied(&ccd->raft), replayed);
    uv_timer_init(ccd->loop, &ccd->retry_timer);
    ccd->retry_timer.data = ccd;
    uv_timer_init(ccd->loop, &ccd->tick_timer);
    ccd->tick_timer.data = ccd;
    ccd_wait_init(ccd);
    ccd->ready_cb = cb;
    ccd->ready_data = data;

    if (ccd->net) {
        uv_timer_start(&ccd->tick_timer, tick_cb, 0, TICK_MS);
        return 0;
    }
    rc = try_barrier(ccd);
    if (rc != 0)
        ccd->ready_cb = NULL; /* we return the error: the callback never runs */
    return rc;
}

static void closed_all(struct ndfs_ccd *ccd)
{
    ndfs_ccd_closed_cb cb = ccd->closed_cb;
    void *data = ccd->closed_data;
    if (ccd->ready_cb)
        ccd_set_errmsg(ccd, "closed before the Raft log was applied");
    finish_ready(ccd, -ECANCELED);
    ccd_free(ccd);
    if (cb)
        cb(data);
}

/* The applied index is written a last time once Raft has stopped. */
static void finish_close(struct ndfs_ccd *ccd)
{
    ccd_applied_close(ccd, closed_all);
}

static void retry_timer_closed(uv_handle_t *handle)
{
    ccd_wait_close(handle->data, finish_close);
}

static void tick_timer_closed(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    uv_close((uv_handle_t *)&ccd->retry_timer, retry_timer_closed);
}

/* The second half of closing Raft, on a later turn of the loop: no libraft
 * frame is left on the stack, so its io state can go. */
static void raft_io_release(uv_handle_t *handle)
{
    struct ndfs_ccd *ccd = handle->data;
    g_free(handle);
    raft_uv_close(&ccd->io);
    if (ccd->net)
        ccd_bridge_close(&ccd->transport);
    else
        ccd_null_transport_close(&ccd->transport);
    if (ccd->started)
        uv_close((uv_handle_t *)&ccd->tick_timer, tick_timer_closed);
    else
        finish_close(ccd);
}

/* libraft 0.15 ends many of its own callbacks by checking whether its io
 * close is complete, and fires this callback when it is; some of them make
 * that check after calling into raft, which may already have fired it. When
 * we freed libraft's io state here, such a late check read freed memory and
 * called the io close callback with a garbage pointer (ndfsd died with
 * SIGSEGV at shutdown, rarely). So the io state is freed later, when no
 * libraft frame is left on the stack, and our transport's data field, the
 * check's second test, is set: a late check finds the close "not complete"
 * and does nothing. */
static void raft_closed(struct raft *r)
{
    struct ndfs_ccd *ccd = r->data;
    ccd->transport.data = ccd;
    uv_idle_t *later = g_new0(uv_idle_t, 1);
    uv_idle_init(ccd->loop, later);
    later->data = ccd;
    /* a close callback never runs before the current one returns */
    uv_close((uv_handle_t *)later, raft_io_release);
}

static void close_raft(struct ndfs_ccd *ccd)
{
    if (ccd->started) {
        uv_timer_stop(&ccd->retry_timer);
        uv_timer_stop(&ccd->tick_timer);
    }
    ccd_wait_cancel(ccd);
    /* pending proposals and the start barrier get their callbacks here */
    raft_close(&ccd->raft, raft_closed);
}

/* The hand-over ended (another voter leads) or took too long: close. */
static void handover_over(struct ndfs_ccd *ccd, bool timed_out)
{
    if (!ccd->handing_over)
        return;
    ccd->handing_over = false;
    if (timed_out)
        g_message("no other voter took over the CCD's leadership within %u ms: stopping anyway",
                  ccd->election_timeout_ms);
    else if (raft_state(&ccd->raft) != RAFT_LEADER)
        g_message("CCD leadership handed over before stopping");
    close_raft(ccd);
}

static void handover_cb(struct raft_transfer *req)
{
    handover_over(req->data, false);
}

static void handover_timeout_cb(uv_timer_t *t)
{
    handover_over(t->data, true);
}

/* Another voter that could lead? */
static bool has_other_voter(struct ndfs_ccd *ccd)
{
    for (unsigned i = 0; i < ccd->raft.configuration.n; i++) {
        const struct raft_server *srv = &ccd->raft.configuration.servers[i];
        if (srv->id != ccd->node_id && srv->role == RAFT_VOTER)
            return true;
    }
    return false;
}

void ndfs_ccd_close(struct ndfs_ccd *ccd, ndfs_ccd_closed_cb cb, void *data)
{
    g_return_if_fail(!ccd->closing);
    ccd->closing = true;
    ccd->closed_cb = cb;
    ccd->closed_data = data;
    /* a leader that stops hands its leadership over first: the others do
     * not wait an election timeout (and their leases) for a new one */
    if (ccd->net != NULL && ccd->started && ccd->ready && raft_state(&ccd->raft) == RAFT_LEADER &&
        has_other_voter(ccd)) {
        uv_timer_stop(&ccd->tick_timer);
        ccd->handover.data = ccd;
        ccd->retry_timer.data = ccd;
        if (raft_transfer(&ccd->raft, &ccd->handover, 0, handover_cb) == 0 &&
            uv_timer_start(&ccd->retry_timer, handover_timeout_cb, ccd->election_timeout_ms, 0) ==
                0) {
            ccd->handing_over = true;
            return;
        }
    }
    close_raft(ccd);
}

bool ndfs_ccd_current(struct ndfs_ccd *ccd)
{
    return ccd->ready && ccd->current;
}

const char *ndfs_ccd_errmsg(const struct ndfs_ccd *ccd)
{
    return ccd->errmsg ? ccd->errmsg : "";
}

void ndfs_ccd_set_watch(struct ndfs_ccd *ccd, ndfs_ccd_watch_cb cb, void *data)
{
    ccd->watch_cb = cb;
    ccd->watch_data = data;
}

static uint64_t now_ns(void)
{
    return (uint64_t)g_get_real_time() * 1000u;
}

static int propose_vdisk(struct ndfs_ccd *ccd, enum ccd_op op, const struct ndfs_vdisk *v,
                         ndfs_ccd_done_cb cb, void *data)
{
    struct ndfs_vdisk row = *v; /* shallow: the strings stay the caller's */
    struct raft_buffer buf;
    if (row.mtime_ns == 0)
        row.mtime_ns = now_ns(); /* the FSM never reads a clock: replicas stay identical */
    if (op == CCD_OP_VDISK_CREATE) {
        row.id = 0;
        row.version = 1;
    }
    int rc = ccd_cmd_vdisk(op, &row, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "vdisk \"%s\": invalid name, size, mode, owner, group or node:path",
                       v->name ? v->name : "");
        return rc;
    }
    return ccd_propose(ccd, buf, cb, data);
}

int ndfs_ccd_vdisk_create(struct ndfs_ccd *ccd, const struct ndfs_vdisk *v, ndfs_ccd_done_cb cb,
                          void *data)
{
    return propose_vdisk(ccd, CCD_OP_VDISK_CREATE, v, cb, data);
}

int ndfs_ccd_vdisk_update(struct ndfs_ccd *ccd, const struct ndfs_vdisk *v, ndfs_ccd_done_cb cb,
                          void *data)
{
    return propose_vdisk(ccd, CCD_OP_VDISK_UPDATE, v, cb, data);
}

int ndfs_ccd_vdisk_remove(struct ndfs_ccd *ccd, const char *name, ndfs_ccd_done_cb cb, void *data)
{
    struct raft_buffer buf;
    int rc = ccd_cmd_vdisk_remove(name, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "invalid vdisk name \"%s\"", name ? name : "");
        return rc;
    }
    return ccd_propose(ccd, buf, cb, data);
}

int ccd_propose_raw(struct ndfs_ccd *ccd, const void *entry, size_t len, ndfs_ccd_done_cb cb,
                    void *data)
{
    if (len == 0)
        return -EINVAL;
    struct raft_buffer buf;
    if (ccd_entry_alloc(entry, len, &buf) != 0)
        return -ENOMEM;
    return ccd_propose(ccd, buf, cb, data);
}
