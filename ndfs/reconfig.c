/* The suspend / drain / ack / update / resume protocol (see reconfig.h):
 * the leader's runs and each member's suspensions. Loop thread only. */
#define G_LOG_DOMAIN "ndfs-reconfig"

#include "reconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cluster.h"
#include "master.h"
#include "server.h"

/* A member that was told "update complete" waits at most this long for its
 * replica to apply the change before it resumes its mounts anyway (they
 * refetch the mapping when the vdisk.changed events come). */
#define APPLIED_WAIT_MS 5000
/* The node calls of a run get this much beyond the ack timeout: the run's
 * own deadline decides, the call's is only a backstop. */
#define CALL_SLACK_MS 5000

enum run_state { RUN_QUEUED, RUN_PREPARING, RUN_APPLYING, RUN_FINISHING, RUN_DONE };

/* One change run by the leader. Referenced by r->runs while queued or
 * running, and by each node call and local member in flight. */
struct run {
    unsigned refs;
    struct ndfs_reconfig *r;
    enum run_state state;
    uint64_t txid;
    uint64_t *ids;
    size_t n_ids;
    ndfs_reconfig_apply_fn apply;
    void *apply_data;
    ndfs_reconfig_cb cb;
    void *data;
    GPtrArray *members;     /* char *: the nodes asked to prepare */
    GHashTable *unanswered; /* node names whose prepare answer is missing */
    GHashTable *finishing;  /* node names whose finish answer is awaited */
    uint64_t started_ns;    /* uv_hrtime() when the first prepare went out */
    uint64_t deadline_ms;   /* uv_now() by which every prepare must be answered */
    bool committed;
    uint64_t applied_index;
    int status;
    char *message;
};

/* A node call of a run (prepare or finish). */
struct run_call {
    struct run *run;
    char *node;
};

/* This node's part of a run (prepare received, finish not yet). */
struct member_tx {
    struct ndfs_reconfig *r;
    uint64_t txid;
    char *leader;          /* the node that asked; NULL: this node leads */
    uint64_t prepare_id;   /* its request to answer */
    struct run *local_run; /* this node leads: the run to tell (a reference) */
    uint64_t *ids;
    size_t n_ids;
    GHashTable *acks; /* struct ndfs_conn * that have to ack */
    bool drained;
    bool answered;
    bool local_due;              /* the local run is to be told on the next timer turn */
    uint64_t resume_deadline_ms; /* remote: resume alone after this (uv_now) */
    bool finishing;              /* finish came: waiting for the replica */
    bool committed;
    uint64_t finish_id;
};

/* A callback that only needs r and a txid (drain, applied index). */
struct tx_ref {
    struct ndfs_reconfig *r;
    uint64_t txid;
};

struct ndfs_reconfig {
    unsigned refs; /* the owner's + one per run, call and callback in flight */
    uv_loop_t *loop;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *membership;
    struct ndfs_cluster *cluster;
    struct ndfs_server *server;
    struct ndfs_master *master;
    char *node;
    unsigned ack_timeout_ms;
    uint64_t next_txid;
    GList *runs;     /* struct run *: running and queued, oldest first */
    GHashTable *txs; /* uint64_t *txid -> struct member_tx * */
    uv_timer_t *timer;
    bool closing;
    void (*closed_cb)(void *data);
    void *closed_data;
};

static void rearm(struct ndfs_reconfig *r);

static void reconfig_unref(struct ndfs_reconfig *r)
{
    g_assert(r->refs > 0);
    if (--r->refs > 0)
        return;
    g_hash_table_unref(r->txs);
    g_free(r->node);
    g_free(r);
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- member side ---- */

static void tx_free(struct member_tx *tx)
{
    if (tx->acks != NULL)
        g_hash_table_unref(tx->acks);
    g_free(tx->ids);
    g_free(tx->leader);
    g_free(tx);
}

static GVariant *ids_variant(const uint64_t *ids, size_t n)
{
    return g_variant_new_fixed_array(G_VARIANT_TYPE_UINT64, ids, n, sizeof(uint64_t));
}

static void run_prepare_answered(struct run *run, const char *node, int status,
                                 const char *message);
static void run_finish_answered(struct run *run, const char *node, int status, const char *message);
static void run_unref(struct run *run);

/* Answers the prepare of tx once every mount acked and the master drained. */
static void tx_check(struct member_tx *tx)
{
    if (tx->answered || !tx->drained || g_hash_table_size(tx->acks) > 0)
        return;
    tx->answered = true;
    if (tx->leader == NULL) {
        /* the leader's own run is told on the next timer turn, out of this stack */
        tx->local_due = true;
        rearm(tx->r);
        return;
    }
    if (tx->r->cluster != NULL)
        ndfs_cluster_reply(tx->r->cluster, tx->leader, tx->prepare_id, 0, NULL, NULL);
}

static void tx_drained(int status, void *data)
{
    struct tx_ref *ref = data;
    struct ndfs_reconfig *r = ref->r;
    if (!r->closing) {
        struct member_tx *tx = g_hash_table_lookup(r->txs, &ref->txid);
        if (tx != NULL && !tx->drained) {
            if (status < 0)
                g_debug("transaction %" PRIu64 ": the master's drain ended: %s", ref->txid,
                        g_strerror(-status));
            tx->drained = true;
            tx_check(tx);
        }
    }
    g_free(ref);
    reconfig_unref(r);
}

static void broadcast_resume(struct ndfs_reconfig *r, uint64_t txid, bool committed)
{
    if (r->server == NULL || r->server->stopping)
        return;
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "txid", "t", (guint64)txid);
    g_variant_dict_insert(&d, "committed", "b", (gboolean)committed);
    ndfs_server_broadcast(r->server, "vdisk.resume", g_variant_dict_end(&d));
}

/* Starts this node's suspension for txid (the caller checked it is new). */
static struct member_tx *tx_start(struct ndfs_reconfig *r, uint64_t txid, const char *leader,
                                  uint64_t prepare_id, const uint64_t *ids, size_t n_ids)
{
    struct member_tx *tx = g_new0(struct member_tx, 1);
    tx->r = r;
    tx->txid = txid;
    tx->leader = g_strdup(leader);
    tx->prepare_id = prepare_id;
    tx->ids = g_memdup2(ids, n_ids * sizeof(uint64_t));
    tx->n_ids = n_ids;
    tx->acks = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (leader != NULL)
        tx->resume_deadline_ms = uv_now(r->loop) + 2ull * r->ack_timeout_ms;
    g_hash_table_insert(r->txs, &tx->txid, tx);

    /* the mounts watching now are the ones that must ack */
    if (r->server != NULL && !r->server->stopping) {
        for (GList *l = r->server->conns; l != NULL; l = l->next) {
            struct ndfs_conn *c = l->data;
            if (c->watcher && !c->closing)
                g_hash_table_add(tx->acks, c);
        }
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "txid", "t", (guint64)txid);
        g_variant_dict_insert_value(&d, "ids", ids_variant(ids, n_ids));
        ndfs_server_broadcast(r->server, "vdisk.suspend", g_variant_dict_end(&d));
        /* a watcher dropped by the broadcast (it did not read) acks nothing */
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, tx->acks);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
            if (((struct ndfs_conn *)key)->closing)
                g_hash_table_iter_remove(&it);
        }
    }
    if (r->master != NULL) {
        struct tx_ref *ref = g_new0(struct tx_ref, 1);
        ref->r = r;
        ref->txid = txid;
        r->refs++;
        ndfs_master_drain(r->master, ids, n_ids, tx_drained, ref);
    } else {
        tx->drained = true;
    }
    rearm(r);
    /* the drain may have ended within the call */
    tx = g_hash_table_lookup(r->txs, &txid);
    if (tx != NULL)
        tx_check(tx);
    return tx;
}

void ndfs_reconfig_handle_prepare(struct ndfs_reconfig *r, const char *peer, uint64_t id,
                                  GVariant *args)
{
    guint64 txid = 0;
    g_autoptr(GVariant) ids = NULL;
    if (r->cluster == NULL)
        return;
    if (r->closing) {
        ndfs_cluster_reply(r->cluster, peer, id, -ECANCELED, "ndfsd is stopping", NULL);
        return;
    }
    if (!g_variant_lookup(args, "txid", "t", &txid) || txid == 0 ||
        !g_variant_lookup(args, "ids", "@at", &ids)) {
        ndfs_cluster_reply(r->cluster, peer, id, -EINVAL, "malformed reconfig.prepare request",
                           NULL);
        return;
    }
    if (g_hash_table_contains(r->txs, &txid)) {
        ndfs_cluster_reply(r->cluster, peer, id, -EEXIST, "transaction already under way", NULL);
        return;
    }
    gsize n = 0;
    const uint64_t *v = g_variant_get_fixed_array(ids, &n, sizeof(uint64_t));
    g_debug("transaction %" PRIu64 " from %s: suspending I/O of %zu vdisks", (uint64_t)txid, peer,
            (size_t)n);
    tx_start(r, txid, peer, id, v, n);
}

/* Resumes the mounts of tx and answers its finish; frees tx. */
static void tx_finish_done(struct ndfs_reconfig *r, struct member_tx *tx)
{
    g_hash_table_steal(r->txs, &tx->txid);
    broadcast_resume(r, tx->txid, tx->committed);
    if (tx->leader == NULL) {
        struct run *run = tx->local_run;
        tx->local_run = NULL;
        run_finish_answered(run, r->node, 0, NULL);
        run_unref(run);
    } else if (r->cluster != NULL) {
        ndfs_cluster_reply(r->cluster, tx->leader, tx->finish_id, 0, NULL, NULL);
    }
    tx_free(tx);
    rearm(r);
}

static void tx_applied(struct ndfs_ccd *ccd, int status, void *data)
{
    struct tx_ref *ref = data;
    struct ndfs_reconfig *r = ref->r;
    (void)ccd;
    if (!r->closing) {
        struct member_tx *tx = g_hash_table_lookup(r->txs, &ref->txid);
        if (tx != NULL) {
            if (status < 0)
                g_warning("transaction %" PRIu64 ": resuming I/O before this node applied the "
                          "change (%s): the mounts refetch the mapping when it comes",
                          ref->txid, g_strerror(-status));
            tx_finish_done(r, tx);
        }
    }
    g_free(ref);
    reconfig_unref(r);
}

/* "update complete" (or cancelled) for tx. */
static void tx_finish(struct ndfs_reconfig *r, struct member_tx *tx, bool committed,
                      uint64_t applied_index, uint64_t finish_id)
{
    tx->finishing = true;
    tx->committed = committed;
    tx->finish_id = finish_id;
    tx->local_due = false;
    if (!tx->answered) {
        /* cancelled before this node was ready: its prepare answers nothing more */
        tx->answered = true;
        if (tx->leader != NULL && r->cluster != NULL)
            ndfs_cluster_reply(r->cluster, tx->leader, tx->prepare_id, -ECANCELED,
                               "cancelled meanwhile", NULL);
    }
    if (committed && applied_index > ndfs_ccd_applied_index(r->ccd)) {
        struct tx_ref *ref = g_new0(struct tx_ref, 1);
        ref->r = r;
        ref->txid = tx->txid;
        int rc = ndfs_ccd_wait_applied(r->ccd, applied_index, APPLIED_WAIT_MS, tx_applied, ref);
        if (rc == 0) {
            r->refs++;
            return;
        }
        g_free(ref);
        g_warning("transaction %" PRIu64 ": cannot wait for Raft index %" PRIu64 ": %s", tx->txid,
                  applied_index, g_strerror(-rc));
    }
    tx_finish_done(r, tx);
}

void ndfs_reconfig_handle_finish(struct ndfs_reconfig *r, const char *peer, uint64_t id,
                                 GVariant *args)
{
    guint64 txid = 0, applied_index = 0;
    gboolean committed = FALSE;
    if (r->cluster == NULL)
        return;
    if (!g_variant_lookup(args, "txid", "t", &txid) ||
        !g_variant_lookup(args, "committed", "b", &committed)) {
        ndfs_cluster_reply(r->cluster, peer, id, -EINVAL, "malformed reconfig.finish request",
                           NULL);
        return;
    }
    g_variant_lookup(args, "applied-index", "t", &applied_index);
    struct member_tx *tx = r->closing ? NULL : g_hash_table_lookup(r->txs, &txid);
    if (tx == NULL || tx->finishing || g_strcmp0(tx->leader, peer) != 0) {
        /* never prepared here, or resumed alone already: nothing held */
        ndfs_cluster_reply(r->cluster, peer, id, 0, NULL, NULL);
        return;
    }
    tx_finish(r, tx, committed, applied_index, id);
}

void ndfs_reconfig_mount_acked(struct ndfs_reconfig *r, void *conn, uint64_t txid)
{
    if (r->closing)
        return;
    struct member_tx *tx = g_hash_table_lookup(r->txs, &txid);
    if (tx == NULL || !g_hash_table_remove(tx->acks, conn))
        return;
    tx_check(tx);
}

void ndfs_reconfig_conn_closed(struct ndfs_reconfig *r, void *conn)
{
    if (r->closing)
        return;
    GList *txs = g_hash_table_get_values(r->txs);
    GList *to_check = NULL;
    for (GList *l = txs; l != NULL; l = l->next) {
        struct member_tx *tx = l->data;
        if (g_hash_table_remove(tx->acks, conn))
            to_check = g_list_prepend(to_check, g_memdup2(&tx->txid, sizeof(tx->txid)));
    }
    g_list_free(txs);
    for (GList *l = to_check; l != NULL; l = l->next) {
        struct member_tx *tx = g_hash_table_lookup(r->txs, l->data);
        if (tx != NULL)
            tx_check(tx);
    }
    g_list_free_full(to_check, g_free);
}

/* ---- leader side ---- */

static void run_unref(struct run *run)
{
    g_assert(run->refs > 0);
    if (--run->refs > 0)
        return;
    struct ndfs_reconfig *r = run->r;
    g_free(run->ids);
    if (run->members != NULL)
        g_ptr_array_unref(run->members);
    if (run->unanswered != NULL)
        g_hash_table_unref(run->unanswered);
    if (run->finishing != NULL)
        g_hash_table_unref(run->finishing);
    g_free(run->message);
    g_free(run);
    reconfig_unref(r);
}

static bool runs_overlap(const struct run *a, const struct run *b)
{
    for (size_t i = 0; i < a->n_ids; i++)
        for (size_t j = 0; j < b->n_ids; j++)
            if (a->ids[i] == b->ids[j])
                return true;
    return false;
}

static void run_start(struct run *run);

/* Starts every queued run that no earlier run holds back. */
static void start_queued(struct ndfs_reconfig *r)
{
    if (r->closing)
        return;
    GList *ready = NULL;
    for (GList *l = r->runs; l != NULL; l = l->next) {
        struct run *run = l->data;
        if (run->state != RUN_QUEUED)
            continue;
        bool blocked = false;
        for (GList *e = r->runs; e != l && !blocked; e = e->next)
            blocked = runs_overlap(e->data, run);
        if (!blocked) {
            /* started below: mark it so that later ones see it as running */
            run->state = RUN_PREPARING;
            run->refs++;
            ready = g_list_append(ready, run);
        }
    }
    for (GList *l = ready; l != NULL; l = l->next) {
        run_start(l->data);
        run_unref(l->data);
    }
    g_list_free(ready);
}

/* The run is over: tells its caller and lets the runs behind it go. */
static void run_complete(struct run *run)
{
    struct ndfs_reconfig *r = run->r;
    if (run->state == RUN_DONE)
        return;
    run->state = RUN_DONE;
    uint64_t paused_ms = run->started_ns ? (now_ns() - run->started_ns) / 1000000u : 0;
    GList *link = g_list_find(r->runs, run);
    if (link != NULL)
        r->runs = g_list_delete_link(r->runs, link);
    run->cb(run->status, run->status < 0 ? run->message : NULL, paused_ms, run->data);
    start_queued(r);
    if (link != NULL)
        run_unref(run); /* r->runs' reference */
}

static void finish_call_done(int status, const char *message, GVariant *result, void *data)
{
    struct run_call *call = data;
    (void)result;
    if (status < 0 && status != -ECANCELED)
        g_message("transaction %" PRIu64 ": node %s did not confirm the end of the suspension: "
                  "%s (it resumes alone)",
                  call->run->txid, call->node, message ? message : g_strerror(-status));
    run_finish_answered(call->run, call->node, status, message);
    run_unref(call->run);
    g_free(call->node);
    g_free(call);
}

static void run_finish_answered(struct run *run, const char *node, int status, const char *message)
{
    (void)status;
    (void)message;
    if (run->state != RUN_FINISHING || !g_hash_table_remove(run->finishing, node))
        return;
    if (g_hash_table_size(run->finishing) == 0)
        run_complete(run);
}

/* Step 3 or 4: "update complete" (committed) or cancel, to every member.
 * The run ends once every member that suspended confirmed its resume, at
 * most an ack timeout later: a member that did not answer prepare (the
 * reason of a cancel) is told, not waited for. */
static void run_finish(struct run *run)
{
    struct ndfs_reconfig *r = run->r;
    run->state = RUN_FINISHING;
    run->deadline_ms = uv_now(r->loop) + r->ack_timeout_ms;
    run->finishing = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < run->members->len; i++) {
        const char *node = run->members->pdata[i];
        if (!g_hash_table_contains(run->unanswered, node))
            g_hash_table_add(run->finishing, g_strdup(node));
    }
    run->refs++; /* the loop's */
    for (guint i = 0; i < run->members->len; i++) {
        const char *node = run->members->pdata[i];
        if (strcmp(node, r->node) == 0) {
            struct member_tx *tx = g_hash_table_lookup(r->txs, &run->txid);
            if (tx != NULL && !tx->finishing)
                tx_finish(r, tx, run->committed, run->applied_index, 0);
            else
                run_finish_answered(run, node, 0, NULL);
            continue;
        }
        struct run_call *call = g_new0(struct run_call, 1);
        call->run = run;
        call->node = g_strdup(node);
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "txid", "t", (guint64)run->txid);
        g_variant_dict_insert(&d, "committed", "b", (gboolean)run->committed);
        g_variant_dict_insert(&d, "applied-index", "t", (guint64)run->applied_index);
        /* only this node is a member without a cluster */
        int rc = ndfs_cluster_call_timeout(
            r->cluster, node, NDFS_CLUSTER_RECONFIG_FINISH, g_variant_dict_end(&d),
            r->ack_timeout_ms + CALL_SLACK_MS, finish_call_done, call);
        if (rc < 0) {
            g_message("transaction %" PRIu64 ": cannot tell node %s the end of the suspension: "
                      "%s (it resumes alone)",
                      run->txid, node, g_strerror(-rc));
            g_free(call->node);
            g_free(call);
            run_finish_answered(run, node, rc, NULL);
            continue;
        }
        run->refs++;
    }
    if (run->state == RUN_FINISHING && g_hash_table_size(run->finishing) == 0)
        run_complete(run);
    rearm(r);
    run_unref(run);
}

/* Cancels a run before its change: nothing changes, members resume. */
static void run_cancel(struct run *run, int status, char *message)
{
    if (run->state != RUN_PREPARING) {
        g_free(message);
        return;
    }
    run->status = status;
    g_free(run->message);
    run->message = message;
    run->committed = false;
    g_warning("transaction %" PRIu64 " cancelled: %s", run->txid, message);
    run_finish(run);
    rearm(run->r);
}

static void apply_done(int status, const char *message, void *ctx)
{
    struct run *run = ctx;
    struct ndfs_reconfig *r = run->r;
    if (run->state == RUN_APPLYING) {
        run->status = status;
        if (status < 0)
            run->message = g_strdup(message ? message : g_strerror(-status));
        run->committed = status == 0;
        run->applied_index = r->closing ? 0 : ndfs_ccd_applied_index(r->ccd);
        g_debug("transaction %" PRIu64 ": %s after %" PRIu64 " us (Raft index %" PRIu64 ")",
                run->txid, status == 0 ? "applied" : "not applied",
                (now_ns() - run->started_ns) / 1000u, run->applied_index);
        run_finish(run);
    }
    run_unref(run);
}

static void run_prepare_answered(struct run *run, const char *node, int status, const char *message)
{
    struct ndfs_reconfig *r = run->r;
    if (run->state != RUN_PREPARING || !g_hash_table_contains(run->unanswered, node))
        return;
    if (status < 0) {
        char *why;
        if (status == -ECONNRESET || status == -ETIMEDOUT)
            why = g_strdup_printf("node %s failed meanwhile (%s): nothing changed", node,
                                  message ? message : g_strerror(-status));
        else
            why = g_strdup_printf("node %s could not suspend I/O (%s): nothing changed", node,
                                  message ? message : g_strerror(-status));
        run_cancel(run, -EAGAIN, why);
        return;
    }
    g_hash_table_remove(run->unanswered, node);
    if (g_hash_table_size(run->unanswered) > 0)
        return;
    /* every member holds its I/O: make the change */
    g_debug("transaction %" PRIu64 ": %u members suspended after %" PRIu64 " us", run->txid,
            run->members->len, (now_ns() - run->started_ns) / 1000u);
    run->state = RUN_APPLYING;
    rearm(r);
    run->refs++;
    run->apply(run->apply_data, apply_done, run);
}

static void prepare_call_done(int status, const char *message, GVariant *result, void *data)
{
    struct run_call *call = data;
    (void)result;
    run_prepare_answered(call->run, call->node, status, message);
    run_unref(call->run);
    g_free(call->node);
    g_free(call);
}

/* The committed members, with this node among them. */
static GPtrArray *current_members(struct ndfs_reconfig *r)
{
    GPtrArray *members = g_ptr_array_new_with_free_func(g_free);
    struct ndfs_ccd_status st = {0};
    bool self = false;
    if (r->cluster != NULL && ndfs_ccd_status(r->ccd, &st) == 0 && st.members != NULL) {
        for (char **m = st.members; *m != NULL; m++) {
            self = self || strcmp(*m, r->node) == 0;
            g_ptr_array_add(members, g_strdup(*m));
        }
    }
    ndfs_ccd_status_clear(&st);
    if (!self)
        g_ptr_array_add(members, g_strdup(r->node));
    return members;
}

/* Step 1: "update pending" to every member. */
static void run_start(struct run *run)
{
    struct ndfs_reconfig *r = run->r;
    run->state = RUN_PREPARING;
    run->members = current_members(r);
    run->unanswered = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < run->members->len; i++)
        g_hash_table_add(run->unanswered, g_strdup(run->members->pdata[i]));
    run->started_ns = now_ns();
    run->deadline_ms = uv_now(r->loop) + r->ack_timeout_ms;
    run->refs++; /* the loop's */
    for (guint i = 0; i < run->members->len && run->state == RUN_PREPARING; i++) {
        const char *node = run->members->pdata[i];
        if (strcmp(node, r->node) == 0) {
            struct member_tx *tx = tx_start(r, run->txid, NULL, 0, run->ids, run->n_ids);
            if (tx != NULL) {
                tx->local_run = run;
                run->refs++;
            }
            continue;
        }
        struct run_call *call = g_new0(struct run_call, 1);
        call->run = run;
        call->node = g_strdup(node);
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "txid", "t", (guint64)run->txid);
        g_variant_dict_insert_value(&d, "ids", ids_variant(run->ids, run->n_ids));
        g_variant_dict_insert(&d, "timeout-ms", "u", (guint32)r->ack_timeout_ms);
        int rc = ndfs_cluster_call_timeout(
            r->cluster, node, NDFS_CLUSTER_RECONFIG_PREPARE, g_variant_dict_end(&d),
            r->ack_timeout_ms + CALL_SLACK_MS, prepare_call_done, call);
        if (rc < 0) {
            g_free(call->node);
            g_free(call);
            g_autofree char *why = g_strdup_printf("cannot send to it: %s", g_strerror(-rc));
            run_prepare_answered(run, node, -ECONNRESET, why);
            continue;
        }
        run->refs++;
    }
    rearm(r);
    run_unref(run);
}

void ndfs_reconfig_run(struct ndfs_reconfig *r, const uint64_t *ids, size_t n_ids,
                       ndfs_reconfig_apply_fn apply, void *apply_data, ndfs_reconfig_cb cb,
                       void *data)
{
    if (r->closing) {
        cb(-ECANCELED, "ndfsd is stopping", 0, data);
        return;
    }
    struct run *run = g_new0(struct run, 1);
    run->refs = 1; /* r->runs' */
    run->r = r;
    r->refs++;
    run->state = RUN_QUEUED;
    run->txid = r->next_txid++;
    if (r->next_txid == 0)
        r->next_txid = 1;
    run->ids = g_memdup2(ids, n_ids * sizeof(uint64_t));
    run->n_ids = n_ids;
    run->apply = apply;
    run->apply_data = apply_data;
    run->cb = cb;
    run->data = data;
    r->runs = g_list_append(r->runs, run);
    start_queued(r);
}

/* ---- timer: prepare deadlines, members resuming alone, local answers ---- */

static int compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "node n2" or "nodes n2, n3": the nodes in set. */
static char *late_nodes(struct run *run, GHashTable *set)
{
    (void)run;
    GPtrArray *names = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, set);
    while (g_hash_table_iter_next(&it, &key, NULL))
        g_ptr_array_add(names, key);
    g_ptr_array_sort(names, compare_names);
    g_ptr_array_add(names, NULL);
    g_autofree char *list = g_strjoinv(", ", (char **)names->pdata);
    char *text = g_strdup_printf("node%s %s", names->len > 2 ? "s" : "", list);
    g_ptr_array_free(names, TRUE);
    return text;
}

static void on_timer(uv_timer_t *timer)
{
    struct ndfs_reconfig *r = timer->data;
    uint64_t now = uv_now(r->loop);
    r->refs++;

    /* members of this node whose leader went silent; local answers */
    GList *txs = g_hash_table_get_values(r->txs);
    GList *due = NULL, *alone = NULL;
    for (GList *l = txs; l != NULL; l = l->next) {
        struct member_tx *tx = l->data;
        if (tx->local_due)
            due = g_list_prepend(due, g_memdup2(&tx->txid, sizeof(tx->txid)));
        else if (tx->leader != NULL && !tx->finishing && tx->resume_deadline_ms <= now)
            alone = g_list_prepend(alone, g_memdup2(&tx->txid, sizeof(tx->txid)));
    }
    g_list_free(txs);
    for (GList *l = due; l != NULL && !r->closing; l = l->next) {
        struct member_tx *tx = g_hash_table_lookup(r->txs, l->data);
        if (tx == NULL || !tx->local_due || tx->local_run == NULL)
            continue;
        tx->local_due = false;
        struct run *run = tx->local_run;
        run->refs++;
        run_prepare_answered(run, r->node, 0, NULL);
        run_unref(run);
    }
    for (GList *l = alone; l != NULL && !r->closing; l = l->next) {
        struct member_tx *tx = g_hash_table_lookup(r->txs, l->data);
        if (tx == NULL || tx->finishing)
            continue;
        g_warning("transaction %" PRIu64 ": no word from the leader %s within %u ms: resuming "
                  "I/O (the mapping comes through the CCD if it changed)",
                  tx->txid, tx->leader, 2 * r->ack_timeout_ms);
        if (!tx->answered) {
            tx->answered = true;
            if (r->cluster != NULL)
                ndfs_cluster_reply(r->cluster, tx->leader, tx->prepare_id, -ECANCELED,
                                   "resumed alone", NULL);
        }
        g_hash_table_steal(r->txs, &tx->txid);
        broadcast_resume(r, tx->txid, false);
        tx_free(tx);
    }
    g_list_free_full(due, g_free);
    g_list_free_full(alone, g_free);

    /* runs whose members did not all answer in time */
    GList *late = NULL;
    for (GList *l = r->runs; l != NULL; l = l->next) {
        struct run *run = l->data;
        if ((run->state == RUN_PREPARING || run->state == RUN_FINISHING) &&
            run->deadline_ms <= now) {
            run->refs++;
            late = g_list_prepend(late, run);
        }
    }
    for (GList *l = late; l != NULL; l = l->next) {
        struct run *run = l->data;
        if (run->state == RUN_PREPARING && !r->closing) {
            g_autofree char *who = late_nodes(run, run->unanswered);
            run_cancel(run, -ETIMEDOUT,
                       g_strdup_printf("%s did not answer within %u ms: nothing changed", who,
                                       r->ack_timeout_ms));
        } else if (run->state == RUN_FINISHING && !r->closing) {
            g_autofree char *who = late_nodes(run, run->finishing);
            g_warning("transaction %" PRIu64 ": %s did not confirm the resume within %u ms "
                      "(resuming alone)",
                      run->txid, who, r->ack_timeout_ms);
            run_complete(run);
        }
        run_unref(run);
    }
    g_list_free(late);
    rearm(r);
    reconfig_unref(r);
}

/* Sets the timer to the earliest thing due. */
static void rearm(struct ndfs_reconfig *r)
{
    if (r->closing || r->timer == NULL)
        return;
    uint64_t now = uv_now(r->loop);
    uint64_t next = UINT64_MAX;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, r->txs);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct member_tx *tx = value;
        if (tx->local_due)
            next = now;
        else if (tx->leader != NULL && !tx->finishing)
            next = MIN(next, tx->resume_deadline_ms);
    }
    for (GList *l = r->runs; l != NULL; l = l->next) {
        struct run *run = l->data;
        if (run->state == RUN_PREPARING || run->state == RUN_FINISHING)
            next = MIN(next, run->deadline_ms);
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(r->timer);
        return;
    }
    uv_timer_start(r->timer, on_timer, next > now ? next - now : 0, 0);
}

/* ---- life ---- */

int ndfs_reconfig_new(uv_loop_t *loop, struct ndfs_ccd *ccd, struct ndfs_membership *m,
                      struct ndfs_cluster *cluster, struct ndfs_server *server,
                      const char *node_name, unsigned ack_timeout_ms, struct ndfs_reconfig **out,
                      char **errmsg)
{
    *out = NULL;
    struct ndfs_reconfig *r = g_new0(struct ndfs_reconfig, 1);
    r->refs = 1;
    r->loop = loop;
    r->ccd = ccd;
    r->membership = m;
    r->cluster = cluster;
    r->server = server;
    r->node = g_strdup(node_name);
    r->ack_timeout_ms = ack_timeout_ms ? ack_timeout_ms : NDFS_RECONFIG_ACK_TIMEOUT_DEFAULT_MS;
    /* a txid a member may still hold from an earlier leader is not reused */
    r->next_txid = ((uint64_t)g_random_int() << 32) | 1u;
    r->txs = g_hash_table_new(g_int64_hash, g_int64_equal);
    r->timer = g_new0(uv_timer_t, 1);
    int rc = uv_timer_init(loop, r->timer);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot create the reconfiguration timer: %s", uv_strerror(rc));
        g_free(r->timer);
        r->timer = NULL;
        reconfig_unref(r);
        return rc;
    }
    r->timer->data = r;
    *out = r;
    return 0;
}

void ndfs_reconfig_set_master(struct ndfs_reconfig *r, struct ndfs_master *master)
{
    r->master = master;
}

unsigned ndfs_reconfig_ack_timeout_ms(const struct ndfs_reconfig *r)
{
    return r->ack_timeout_ms;
}

static void timer_closed(uv_handle_t *handle)
{
    struct ndfs_reconfig *r = handle->data;
    void (*cb)(void *) = r->closed_cb;
    void *data = r->closed_data;
    g_free(handle);
    reconfig_unref(r); /* the owner's: what is still in flight holds its own */
    if (cb != NULL)
        cb(data);
}

void ndfs_reconfig_close(struct ndfs_reconfig *r, void (*cb)(void *data), void *data)
{
    g_assert(!r->closing);
    /* runs in flight fail; members hold nothing more */
    GList *runs = r->runs;
    r->runs = NULL;
    for (GList *l = runs; l != NULL; l = l->next) {
        struct run *run = l->data;
        if (run->state == RUN_PREPARING) {
            /* tell the members at once rather than let them wait 2 x the timeout */
            run_cancel(run, -ECANCELED, g_strdup("ndfsd is stopping: nothing changed"));
        }
    }
    r->closing = true;
    for (GList *l = runs; l != NULL; l = l->next) {
        struct run *run = l->data;
        if (run->state != RUN_DONE) {
            run->state = RUN_DONE;
            run->cb(-ECANCELED, "ndfsd is stopping", 0, run->data);
        }
        run_unref(run);
    }
    g_list_free(runs);
    GList *txs = g_hash_table_get_values(r->txs);
    g_hash_table_steal_all(r->txs);
    for (GList *l = txs; l != NULL; l = l->next) {
        struct member_tx *tx = l->data;
        if (tx->local_run != NULL)
            run_unref(tx->local_run);
        tx_free(tx);
    }
    g_list_free(txs);
    r->closed_cb = cb;
    r->closed_data = data;
    if (r->timer != NULL) {
        uv_timer_stop(r->timer);
        r->timer->data = r;
        uv_close((uv_handle_t *)r->timer, timer_closed);
        r->timer = NULL;
        return;
    }
    reconfig_unref(r);
    if (cb != NULL)
        cb(data);
}
