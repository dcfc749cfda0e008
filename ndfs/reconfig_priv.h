/* Internals of the reconfiguration protocol shared by reconfig.c (the
 * leader's runs, the timer, life) and reconfig_member.c (this node's
 * suspensions). Loop thread only. Private to ndfsd. */
#ifndef NDFS_RECONFIG_PRIV_H
#define NDFS_RECONFIG_PRIV_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "reconfig.h"

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
    uint64_t deadline_ms;   /* uv_now(): the prepare answers due (preparing), the finish
                               answers waited for at most (finishing) */
    bool committed;
    uint64_t applied_index;
    int status;
    char *message;
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

/* reconfig.c */
void reconfig__unref(struct ndfs_reconfig *r);
uint64_t reconfig__now_ns(void);
/* Sets the timer to the earliest thing due (runs and members). */
void reconfig__rearm(struct ndfs_reconfig *r);
void reconfig__run_unref(struct run *run);
/* The local member answered (prepare) or confirmed its resume (finish). */
void reconfig__run_prepare_answered(struct run *run, const char *node, int status,
                                    const char *message);
void reconfig__run_finish_answered(struct run *run, const char *node, int status,
                                   const char *message);

/* reconfig_member.c */
/* Starts this node's suspension of ids for txid (leader NULL: this node
 * leads, prepare_id unused). The caller checked txid is new. */
struct member_tx *reconfig__tx_start(struct ndfs_reconfig *r, uint64_t txid, const char *leader,
                                     uint64_t prepare_id, const uint64_t *ids, size_t n_ids);
/* "update complete" (committed) or cancel: resumes the mounts once the
 * replica applied applied_index, answers (finish_id, or the local run), frees tx. */
void reconfig__tx_finish(struct ndfs_reconfig *r, struct member_tx *tx, bool committed,
                         uint64_t applied_index, uint64_t finish_id);
void reconfig__tx_free(struct member_tx *tx);
void reconfig__broadcast_resume(struct ndfs_reconfig *r, uint64_t txid, bool committed);
void reconfig__member_tick(struct ndfs_reconfig *r, uint64_t now);
uint64_t reconfig__member_next(struct ndfs_reconfig *r, uint64_t now);
/* The ids of a run as an "at" value (floating). */
GVariant *reconfig__ids_variant(const uint64_t *ids, size_t n);

#endif
