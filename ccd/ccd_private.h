/* Private to ccd/: the CCD object, the LMDB store, the Raft FSM and its
 * commands, and the null transport. */
#ifndef NDFS_CCD_PRIVATE_H
#define NDFS_CCD_PRIVATE_H

#include <lmdb.h>
#include <raft.h>
#include <raft/uv.h>

#include "codec.h"
#include "ndfs/ccd.h"

#define CCD_NTABLES (NDFS_CCD_META + 1)

/* Keys of the "meta" and "membership" tables. */
#define CCD_META_CLUSTER_ID    "cluster-id"
#define CCD_META_EPOCH         "epoch"
#define CCD_META_NEXT_VDISK_ID "next-vdisk-id"
#define CCD_META_NEXT_NODE_ID  "next-node-id"
#define CCD_MAX_VOTERS         5
#define CCD_MEMBERSHIP_KEY     "current"
#define CCD_APPLIED_LEN        42 /* <data_dir>/applied: "%020llu %020llu\n" */

/* LMDB environment with one sub-database per table (index: enum ndfs_ccd_table). */
struct ccd_store {
    MDB_env *env;
    MDB_dbi dbi[CCD_NTABLES];
};

struct ndfs_ccd {
    uv_loop_t *loop;
    char *data_dir;
    char *node_name;
    uint64_t node_id; /* Raft server id */
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    int lock_fd;
    struct ccd_store store;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_barrier barrier;
    uv_timer_t retry_timer; /* retries the start barrier until we lead */
    bool started;
    bool ready;
    bool closing;
    ndfs_ccd_ready_cb ready_cb;
    void *ready_data;
    ndfs_ccd_closed_cb closed_cb;
    void *closed_data;
    ndfs_ccd_watch_cb watch_cb;
    void *watch_data;
    char *errmsg;

    /* cluster (net != NULL) */
    struct ndfs_transport *net;
    char **addresses; /* ours, for the bootstrap row */
    bool join;
    bool barrier_pending;
    /* Leader: an empty entry appended after each applied change, so the
     * followers learn the new commit index at once (libraft sends it with
     * the next append) instead of at the next heartbeat: a change is seen
     * on every node within a round trip, not up to a heartbeat later. */
    struct raft_barrier nudge;
    bool nudge_pending;
    bool nudge_again;
    /* Closing as the leader of a cluster: leadership is handed to another
     * voter first (at most an election timeout), so the cluster has a
     * leader at once rather than after an election. */
    struct raft_transfer handover;
    bool handing_over;
    uint64_t ready_target; /* follower: the leader's commit index to reach; 0: not known */
    uv_timer_t tick_timer; /* ready polling, then the leader's Raft reconfiguration */
    bool change_pending;   /* a raft_add/assign/remove/transfer is in flight */
    GHashTable *peers;     /* name -> addresses as given to ndfs_transport_peer_set */

    uint64_t applied_floor; /* index of the last proposal seen applied (see proposal_cb) */
    /* wait.c: ndfs_ccd_wait_applied */
    GList *waiters;        /* struct ccd_waiter * */
    uv_check_t wait_check; /* after each loop iteration while waiters exist */
    uv_timer_t wait_timer; /* the earliest deadline, or 0 ms for one already applied */
    void (*wait_closed_cb)(struct ndfs_ccd *ccd);

    /* Restart (cluster only): a node whose replica, loaded from its own
     * disk, holds the cluster and its row is ready at once; it is current
     * once caught up with a leader (see tick_cb in ccd.c). */
    bool local_ready;
    bool current;
    raft_term barrier_term;     /* a barrier of this term has been applied (leader) */
    raft_term barrier_req_term; /* the term of the barrier in flight */
    /* wait.c: the applied index kept in <data_dir>/applied */
    int applied_fd;           /* -1: not kept (no transport) */
    uint64_t saved_applied;   /* read at open: what the last run applied */
    uint64_t applied_written; /* the value in the file */
    uint64_t applied_writing;
    bool applied_busy; /* applied_req in flight */
    bool applied_warned;
    bool applied_final;
    uv_fs_t applied_req;
    char applied_text[CCD_APPLIED_LEN + 1];
    void (*applied_closed_cb)(struct ndfs_ccd *ccd);
    int (*io_load)(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries); /* raft_uv's */
    GArray *replay;          /* loaded entries to apply again; struct replay_entry */
    raft_index replay_first; /* index of replay[0] */
};

/* cluster.c: the multi-node parts of the CCD. */
int ccd_node_id_load(struct ndfs_ccd *ccd, const struct ndfs_ccd_config *cfg, char **errmsg);
void ccd_peers_load(struct ndfs_ccd *ccd);
/* Drives the Raft configuration towards the nodes table (leader only). */
void ccd_reconcile(struct ndfs_ccd *ccd);
bool ccd_has_own_row(struct ndfs_ccd *ccd);
int ccd_propose(struct ndfs_ccd *ccd, struct raft_buffer buf, ndfs_ccd_done_cb cb, void *data);
void ccd_set_errmsg(struct ndfs_ccd *ccd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
int ccd_raft_fail(struct ndfs_ccd *ccd, int rv, const char *what);

/* wait.c: the handles of ndfs_ccd_wait_applied, set up at start; cancel
 * fails every waiter with -ECANCELED; close closes both handles, then cb. */
void ccd_wait_init(struct ndfs_ccd *ccd);
void ccd_wait_cancel(struct ndfs_ccd *ccd);
void ccd_wait_close(struct ndfs_ccd *ccd, void (*cb)(struct ndfs_ccd *ccd));

/* wait.c: the applied index across restarts. open (after raft_uv_init)
 * reads <data_dir>/applied and wraps io.load; replay (after raft_start)
 * applies the loaded entries up to it and returns how many indexes it
 * moved; save writes it (async) when it moved; close writes it a last time,
 * closes the file, then cb; free closes at once (failed open). */
int ccd_applied_open(struct ndfs_ccd *ccd, char **errmsg);
uint64_t ccd_applied_replay(struct ndfs_ccd *ccd);
void ccd_applied_save(struct ndfs_ccd *ccd);
void ccd_applied_close(struct ndfs_ccd *ccd, void (*cb)(struct ndfs_ccd *ccd));
void ccd_applied_free(struct ndfs_ccd *ccd);

/* Opens new, empty tables in dir (LMDB files left from before are removed). */
int ccd_store_open(struct ccd_store *s, const char *dir, char **errmsg);
void ccd_store_close(struct ccd_store *s);
/* Maps an LMDB return code to 0 or -errno. */
int ccd_mdb_errno(int rc);
int ccd_store_clear(struct ccd_store *s);
int ccd_txn_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *val); /* -ENOENT */
int ccd_txn_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *data, size_t len);
int ccd_txn_del(MDB_txn *txn, MDB_dbi dbi, const char *key); /* -ENOENT */
/* 0 (and *v = 0) when the key is missing; -EBADMSG when it is not 8 bytes. */
int ccd_meta_get_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t *v);
int ccd_meta_put_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t v);
/* Every key/value of every table; *buf is g_malloc'd, the caller frees it. */
int ccd_store_dump(struct ccd_store *s, uint8_t **buf, size_t *len);
/* Replaces every table with a dump, in one transaction; -EBADMSG if malformed
 * (then nothing changes). */
int ccd_store_load(struct ccd_store *s, const uint8_t *buf, size_t len);

/* Raft log commands: version byte, op byte, then the op's fields. */
enum ccd_op {
    CCD_OP_BOOTSTRAP = 1,
    CCD_OP_VDISK_CREATE = 2,
    CCD_OP_VDISK_UPDATE = 3,
    CCD_OP_VDISK_REMOVE = 4,
    CCD_OP_NODE_PUT = 5,
    CCD_OP_NODE_ADD = 6,
    CCD_OP_NODE_REMOVE = 7,
    CCD_OP_MEMBERSHIP_SET = 8,
    CCD_OP_NODE_LINK = 9, /* u8 add, node name, address */
};

/* A log entry holding len bytes of data, zero-padded to a multiple of 8
 * bytes; out->base is raft_malloc'd. */
int ccd_entry_alloc(const void *data, size_t len, struct raft_buffer *out);
/* Command encoders; out->base is raft_malloc'd (raft_apply takes it). */
int ccd_cmd_bootstrap(const char *cluster_id, const struct ndfs_node *node,
                      const struct ccd_membership *m, struct raft_buffer *out);
int ccd_cmd_vdisk(enum ccd_op op, const struct ndfs_vdisk *v, struct raft_buffer *out);
int ccd_cmd_vdisk_remove(const char *name, struct raft_buffer *out);
int ccd_cmd_node_put(const struct ndfs_node *n, struct raft_buffer *out);
/* n->id is ignored: the FSM assigns it and returns it as the result (> 0). */
int ccd_cmd_node_add(const struct ndfs_node *n, struct raft_buffer *out);
int ccd_cmd_node_remove(const char *name, struct raft_buffer *out);
int ccd_cmd_membership_set(const char *const *members, struct raft_buffer *out);
/* Adds or removes one link address of a node; the FSM's result is the
 * link's index (>= 0) or -errno (see ndfs_ccd_node_link). */
int ccd_cmd_node_link(const char *name, const char *address, bool add, struct raft_buffer *out);

/* Proposes an arbitrary log entry (copied); for tests of the FSM's decoder. */
int ccd_propose_raw(struct ndfs_ccd *ccd, const void *entry, size_t len, ndfs_ccd_done_cb cb,
                    void *data);

/* Change notification from the FSM, after its transaction committed. */
void ccd_notify(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key, bool removed);

/* The FSM applies commands to ccd's store; fsm->data is ccd. */
void ccd_fsm_init(struct raft_fsm *fsm, struct ndfs_ccd *ccd);
struct ccd_store *ccd_get_store(struct ndfs_ccd *ccd);

/* Called by the FSM after a committed change of the nodes table (name NULL:
 * the whole table was replaced): keeps the transport's peers in step. */
void ccd_nodes_changed(struct ndfs_ccd *ccd, const char *name, bool removed);

/* A transport that has no network: listening succeeds, connecting fails. */
int ccd_null_transport_init(struct raft_uv_transport *t);
void ccd_null_transport_close(struct raft_uv_transport *t);

/* The Raft transport over the cluster transport's NDFS_CHANNEL_RAFT: every
 * Raft connection is a socketpair whose far end is pumped into messages. */
struct ndfs_transport;
int ccd_bridge_init(struct raft_uv_transport *rt, uv_loop_t *loop, struct ndfs_transport *t);
/* After raft closed rt: frees what is left (the bridge stops receiving). */
void ccd_bridge_close(struct raft_uv_transport *rt);
/* Asks peer (the leader) for its commit index; cb runs on the answer only
 * (no answer: no call; ask again). */
typedef void (*ccd_commit_cb)(void *data, const char *peer, uint64_t commit_index);
int ccd_bridge_query_commit(struct raft_uv_transport *rt, const char *peer);
/* ndfs_transport_peer_set / _remove, kept here with the rest of the
 * transport's use by the CCD. */
int ccd_bridge_peer_set(struct ndfs_transport *t, const char *name, const char *const *addresses);
int ccd_bridge_peer_remove(struct ndfs_transport *t, const char *name);
/* ndfs_transport_listen_set: this node's own link addresses. */
int ccd_bridge_listen_set(struct ndfs_transport *t, const char *const *addresses, char **errmsg);
/* Closes every stream to peer (it restarted or is down). */
void ccd_bridge_peer_lost(struct raft_uv_transport *rt, const char *peer);
void ccd_bridge_set_commit_handlers(struct raft_uv_transport *rt, struct raft *raft,
                                    ccd_commit_cb cb, void *data);

#endif
