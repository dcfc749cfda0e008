/* The reconfiguration protocol on a member (see reconfig.h): this node's
 * suspensions, one per transaction: the vdisk.suspend event to the
 * watching mounts, their acks, the master's drain, the answer to
 * reconfig.prepare; then reconfig.finish, the wait for the replica and the
 * vdisk.resume event. Loop thread only. */
#define G_LOG_DOMAIN "ndfs-reconfig"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cluster.h"
#include "master.h"
#include "reconfig_priv.h"
#include "server.h"

/* A member that was told "update complete" waits at most this long for its
 * replica to apply the change before it resumes its mounts anyway (they
 * refetch the mapping when the vdisk.changed events come). */
#define APPLIED_WAIT_MS 5000

void reconfig__tx_free(struct member_tx *tx)
{
    if (tx->acks != NULL)
        g_hash_table_unref(tx->acks);
    g_free(tx->ids);
    g_free(tx->leader);
    g_free(tx);
}

GVariant *reconfig__ids_variant(const uint64_t *ids, size_t n)
{
    return g_variant_new_fixed_array(G_VARIANT_TYPE_UINT64, ids, n, sizeof(uint64_t));
}

/* Answers the prepare of tx once every mount acked and the master drained. */
static void tx_check(struct member_tx *tx)
{
    if (tx->answered || !tx->drained || g_hash_table_size(tx->acks) > 0)
        return;
    tx->answered = true;
    if (tx->leader == NULL) {
        /* the leader's own run is told on the next timer turn, out of this stack */
        tx->local_due = true;
        reconfig__rearm(tx->r);
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
    reconfig__unref(r);
}

void reconfig__broadcast_resume(struct ndfs_reconfig *r, uint64_t txid, bool committed)
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
struct member_tx *reconfig__tx_start(struct ndfs_reconfig *r, uint64_t txid, const char *leader,
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
        g_variant_dict_insert_value(&d, "ids", reconfig__ids_variant(ids, n_ids));
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
    reconfig__rearm(r);
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
    reconfig__tx_start(r, txid, peer, id, v, n);
}

/* Resumes the mounts of tx and answers its finish; frees tx. */
static void tx_finish_done(struct ndfs_reconfig *r, struct member_tx *tx)
{
    g_hash_table_steal(r->txs, &tx->txid);
    reconfig__broadcast_resume(r, tx->txid, tx->committed);
    if (tx->leader == NULL) {
        struct run *run = tx->local_run;
        tx->local_run = NULL;
        reconfig__run_finish_answered(run, r->node, 0, NULL);
        reconfig__run_unref(run);
    } else if (r->cluster != NULL) {
        ndfs_cluster_reply(r->cluster, tx->leader, tx->finish_id, 0, NULL, NULL);
    }
    reconfig__tx_free(tx);
    reconfig__rearm(r);
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
    reconfig__unref(r);
}

/* "update complete" (or cancelled) for tx. */
void reconfig__tx_finish(struct ndfs_reconfig *r, struct member_tx *tx, bool committed,
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
    reconfig__tx_finish(r, tx, committed, applied_index, id);
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

/* The timer's turn: local answers due, and members whose leader went
 * silent resume alone. */
void reconfig__member_tick(struct ndfs_reconfig *r, uint64_t now)
{
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
        reconfig__run_prepare_answered(run, r->node, 0, NULL);
        reconfig__run_unref(run);
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
        reconfig__broadcast_resume(r, tx->txid, false);
        reconfig__tx_free(tx);
    }
    g_list_free_full(due, g_free);
    g_list_free_full(alone, g_free);
}

/* The earliest time the member side needs the timer (UINT64_MAX: never). */
uint64_t reconfig__member_next(struct ndfs_reconfig *r, uint64_t now)
{
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
    return next;
}
