/* The suspend / drain / ack / update / resume protocol (see reconfig.h):
 * the leader's runs, the timer and the life of the module; the member side
 * is reconfig_member.c. Loop thread only. */
#define G_LOG_DOMAIN "ndfs-reconfig"

#include "reconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cluster.h"
#include "master.h"
#include "reconfig_priv.h"
#include "server.h"

/* The node calls of a run get this much beyond the ack timeout: the run's
 * own deadline decides, the call's is only a backstop. */
#define CALL_SLACK_MS 5000

/* A node call of a run (prepare or finish). */
struct run_call {
    struct run *run;
    char *node;
};

void reconfig__unref(struct ndfs_reconfig *r)
{
    g_assert(r->refs > 0);
    if (--r->refs > 0)
        return;
    g_hash_table_unref(r->txs);
    g_free(r->node);
    g_free(r);
}

uint64_t reconfig__now_ns(void)
{
    return uv_hrtime();
}

/* ---- leader side ---- */

void reconfig__run_unref(struct run *run)
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
    reconfig__unref(r);
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
        reconfig__run_unref(l->data);
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
    uint64_t paused_ms = run->started_ns ? (reconfig__now_ns() - run->started_ns) / 1000000u : 0;
    GList *link = g_list_find(r->runs, run);
    if (link != NULL)
        r->runs = g_list_delete_link(r->runs, link);
    run->cb(run->status, run->status < 0 ? run->message : NULL, paused_ms, run->data);
    start_queued(r);
    if (link != NULL)
        reconfig__run_unref(run); /* r->runs' reference */
}

static void finish_call_done(int status, const char *message, GVariant *result, void *data)
{
    struct run_call *call = data;
    (void)result;
    if (status < 0 && status != -ECANCELED)
        g_message("transaction %" PRIu64 ": node %s did not confirm the end of the suspension: "
                  "%s (it resumes alone)",
                  call->run->txid, call->node, message ? message : g_strerror(-status));
    reconfig__run_finish_answered(call->run, call->node, status, message);
    reconfig__run_unref(call->run);
    g_free(call->node);
    g_free(call);
}

void reconfig__run_finish_answered(struct run *run, const char *node, int status,
                                   const char *message)
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
                reconfig__tx_finish(r, tx, run->committed, run->applied_index, 0);
            else
                reconfig__run_finish_answered(run, node, 0, NULL);
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
            reconfig__run_finish_answered(run, node, rc, NULL);
            continue;
        }
        run->refs++;
    }
    if (run->state == RUN_FINISHING && g_hash_table_size(run->finishing) == 0)
        run_complete(run);
    reconfig__rearm(r);
    reconfig__run_unref(run);
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
    reconfig__rearm(run->r);
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
                (reconfig__now_ns() - run->started_ns) / 1000u, run->applied_index);
        run_finish(run);
    }
    reconfig__run_unref(run);
}

void reconfig__run_prepare_answered(struct run *run, const char *node, int status,
                                    const char *message)
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
            run->members->len, (reconfig__now_ns() - run->started_ns) / 1000u);
    run->state = RUN_APPLYING;
    reconfig__rearm(r);
    run->refs++;
    run->apply(run->apply_data, apply_done, run);
}

static void prepare_call_done(int status, const char *message, GVariant *result, void *data)
{
    struct run_call *call = data;
    (void)result;
    reconfig__run_prepare_answered(call->run, call->node, status, message);
    reconfig__run_unref(call->run);
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
    run->started_ns = reconfig__now_ns();
    run->deadline_ms = uv_now(r->loop) + r->ack_timeout_ms;
    run->refs++; /* the loop's */
    for (guint i = 0; i < run->members->len && run->state == RUN_PREPARING; i++) {
        const char *node = run->members->pdata[i];
        if (strcmp(node, r->node) == 0) {
            struct member_tx *tx = reconfig__tx_start(r, run->txid, NULL, 0, run->ids, run->n_ids);
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
        g_variant_dict_insert_value(&d, "ids", reconfig__ids_variant(run->ids, run->n_ids));
        g_variant_dict_insert(&d, "timeout-ms", "u", (guint32)r->ack_timeout_ms);
        int rc = ndfs_cluster_call_timeout(
            r->cluster, node, NDFS_CLUSTER_RECONFIG_PREPARE, g_variant_dict_end(&d),
            r->ack_timeout_ms + CALL_SLACK_MS, prepare_call_done, call);
        if (rc < 0) {
            g_free(call->node);
            g_free(call);
            g_autofree char *why = g_strdup_printf("cannot send to it: %s", g_strerror(-rc));
            reconfig__run_prepare_answered(run, node, -ECONNRESET, why);
            continue;
        }
        run->refs++;
    }
    reconfig__rearm(r);
    reconfig__run_unref(run);
}

bool ndfs_reconfig_busy(struct ndfs_reconfig *r, uint64_t id)
{
    for (GList *l = r->runs; l != NULL; l = l->next) {
        const struct run *run = l->data;
        for (size_t i = 0; i < run->n_ids; i++)
            if (run->ids[i] == id)
                return true;
    }
    return false;
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

/* A change applied at once (no suspension): its caller's callback. */
struct direct_change {
    ndfs_reconfig_cb cb;
    void *data;
};

static void direct_done(int status, const char *message, void *ctx)
{
    struct direct_change *dc = ctx;
    if (status < 0 && message == NULL)
        message = g_strerror(-status);
    dc->cb(status, status < 0 ? message : NULL, 0, dc->data);
    g_free(dc);
}

void ndfs_reconfig_change(struct ndfs_reconfig *r, enum ndfs_ccd_table table, const uint64_t *ids,
                          size_t n_ids, ndfs_reconfig_apply_fn apply, void *apply_data,
                          ndfs_reconfig_cb cb, void *data)
{
    const struct ndfs_ccd_format *f = ndfs_ccd_table_format(table);
    if (f == NULL) {
        cb(-EINVAL, "no such CCD table", 0, data);
        return;
    }
    if (f->sync == NDFS_CCD_SYNC_SUSPEND && r != NULL) {
        g_debug("a change of table %s: suspending I/O of %zu vdisks", f->name, n_ids);
        ndfs_reconfig_run(r, ids, n_ids, apply, apply_data, cb, data);
        return;
    }
    /* NONE, or nothing to run the protocol with: the change goes at once */
    struct direct_change *dc = g_new0(struct direct_change, 1);
    dc->cb = cb;
    dc->data = data;
    apply(apply_data, direct_done, dc);
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

    reconfig__member_tick(r, now);

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
        reconfig__run_unref(run);
    }
    g_list_free(late);
    reconfig__rearm(r);
    reconfig__unref(r);
}

/* Sets the timer to the earliest thing due. */
void reconfig__rearm(struct ndfs_reconfig *r)
{
    if (r->closing || r->timer == NULL)
        return;
    uint64_t now = uv_now(r->loop);
    uint64_t next = reconfig__member_next(r, now);
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
        reconfig__unref(r);
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
    reconfig__unref(r); /* the owner's: what is still in flight holds its own */
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
        reconfig__run_unref(run);
    }
    g_list_free(runs);
    GList *txs = g_hash_table_get_values(r->txs);
    g_hash_table_steal_all(r->txs);
    for (GList *l = txs; l != NULL; l = l->next) {
        struct member_tx *tx = l->data;
        if (tx->local_run != NULL)
            reconfig__run_unref(tx->local_run);
        reconfig__tx_free(tx);
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
    reconfig__unref(r);
    if (cb != NULL)
        cb(data);
}
