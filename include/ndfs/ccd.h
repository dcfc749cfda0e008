/* The cluster configuration database (CCD): replicated tables of nodes,
 * vdisks, membership and cluster metadata. State lives in LMDB (one
 * sub-database per table); every change is a Raft log entry (libraft,
 * raft_uv on <data-dir>/raft) that the FSM applies to LMDB in one write
 * transaction. Every node holds a full replica and reads locally.
 *
 * All functions must be called on the loop thread the CCD was opened on.
 * Functions return 0 or a negative errno; a short message for people is
 * kept in ndfs_ccd_errmsg(). */
#ifndef NDFS_CCD_H
#define NDFS_CCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NDFS_VDISK_NAME_MAX 64
#define NDFS_NODE_NAME_MAX  32

/* A virtual disk: one row of the "vdisks" table, keyed by name.
 * Strings are owned by the struct (g_malloc'd); ndfs_vdisk_clear() frees them. */
struct ndfs_vdisk {
    uint64_t id;       /* cluster-unique, assigned by the FSM, never reused */
    uint64_t size;     /* bytes, a multiple of 512 */
    uint32_t mode;     /* permission bits, at most 07777 */
    uint64_t mtime_ns; /* last change of the row, ns since 1970 (set by the proposer) */
    uint64_t version;  /* 1 at creation, +1 on every change of the row */
    char *name;
    char *owner; /* user name */
    char *group; /* group name */
    char *primary_node;
    char *primary_path;
    char *secondary_node; /* NULL when the vdisk has no secondary */
    char *secondary_path; /* NULL when the vdisk has no secondary */
    /* The mapping's state (HA): which path masters the vdisk now, and which
     * paths are marked failed. Only with a secondary may on_secondary or
     * secondary_failed be set. A change of any of them is a mapping change
     * (the epoch moves). */
    bool on_secondary;     /* the secondary is the current master (after a takeover) */
    bool primary_failed;   /* the primary's path is marked failed (a NACK, fail-path) */
    bool secondary_failed; /* the secondary's path is marked failed */
};

/* The node and path that master v now (the secondary's when on_secondary). */
static inline const char *ndfs_vdisk_master_node(const struct ndfs_vdisk *v)
{
    return v->on_secondary && v->secondary_node ? v->secondary_node : v->primary_node;
}
static inline const char *ndfs_vdisk_master_path(const struct ndfs_vdisk *v)
{
    return v->on_secondary && v->secondary_path ? v->secondary_path : v->primary_path;
}

/* A node: one row of the "nodes" table, keyed by name. */
enum ndfs_node_role { NDFS_NODE_VOTER = 1, NDFS_NODE_STANDBY = 2 };
#define NDFS_NODE_ADDRESSES_MAX 8
struct ndfs_node {
    uint64_t id;  /* Raft server id */
    uint8_t role; /* enum ndfs_node_role: the role it should have in Raft */
    char *name;
    char *address;    /* Raft address; "" when the node has no network (unused by now: Raft
                         addresses are node names) */
    char **addresses; /* "IPv4:port" per link, NULL-terminated; NULL or {NULL}: none (row v1) */
};

/* Row codecs. A row is a version byte, fixed-width little-endian fields, then
 * length-prefixed strings. encode: *buf is g_malloc'd, the caller frees it.
 * decode: returns -EBADMSG for anything malformed (truncated, trailing bytes,
 * unknown version, out-of-range field, invalid name); on error *out is left
 * cleared. The decoder never reads past len. */
int ndfs_vdisk_encode(const struct ndfs_vdisk *v, uint8_t **buf, size_t *len);
int ndfs_vdisk_decode(const uint8_t *buf, size_t len, struct ndfs_vdisk *out);
void ndfs_vdisk_clear(struct ndfs_vdisk *v);
/* Deep copy; dst must be cleared or zeroed. */
void ndfs_vdisk_copy(struct ndfs_vdisk *dst, const struct ndfs_vdisk *src);

int ndfs_node_encode(const struct ndfs_node *n, uint8_t **buf, size_t *len);
int ndfs_node_decode(const uint8_t *buf, size_t len, struct ndfs_node *out);
void ndfs_node_clear(struct ndfs_node *n);
/* Deep copy; dst must be cleared or zeroed. */
void ndfs_node_copy(struct ndfs_node *dst, const struct ndfs_node *src);

/* The tables, for change notifications. */
enum ndfs_ccd_table {
    NDFS_CCD_NODES = 1,
    NDFS_CCD_LINKS,
    NDFS_CCD_VDISKS,
    NDFS_CCD_MEMBERSHIP,
    NDFS_CCD_META,
};

/* Each table's format row (the patent's): what it holds and the
 * synchronisation action a change to it needs before it is committed.
 * SUSPEND: the change runs under the reconfiguration protocol (every
 * member suspends and drains I/O of the vdisks concerned, then the change
 * is committed, then they resume: ndfsd's reconfig.h); NONE: it is
 * committed at once. vdisks: every row change (create, remove, resize,
 * move, chmod, chown) suspends the vdisk concerned; links: a change of a
 * node's link addresses (kept in its nodes row, ndfs_node.addresses)
 * suspends the vdisks that node masters; nodes, membership and meta
 * changes need none. The one exception is the takeover of a vdisk whose
 * master failed (issue 5): its requests cannot drain, they are replayed. */
enum ndfs_ccd_sync {
    NDFS_CCD_SYNC_NONE = 0,
    NDFS_CCD_SYNC_SUSPEND = 1,
};
struct ndfs_ccd_format {
    enum ndfs_ccd_table table;
    const char *name;        /* the LMDB sub-database ("vdisks") */
    uint8_t row_version;     /* the version its rows are written with */
    enum ndfs_ccd_sync sync; /* what a change to it needs */
};
/* The format row of table; NULL for a value that names no table. */
const struct ndfs_ccd_format *ndfs_ccd_table_format(enum ndfs_ccd_table table);

struct ndfs_ccd;
struct ndfs_transport;

struct ndfs_ccd_config {
    const char *data_dir;        /* created if missing; holds lock, node-id, peers, ccd/ (LMDB),
                                    raft/ */
    const char *node_name;       /* this node */
    unsigned snapshot_threshold; /* entries between snapshots; 0: default (1024) */
    unsigned snapshot_trailing;  /* entries kept after a snapshot; 0: default (128) */
    /* The cluster. transport NULL: a single node without network, as before.
     * Otherwise Raft runs over the transport's NDFS_CHANNEL_RAFT (which the CCD
     * registers; the transport must outlive the CCD), a Raft address is a node
     * name, and the CCD keeps the transport's peers in step with the nodes
     * table (ndfs_transport_peer_set for every other node with addresses,
     * remembered in <data_dir>/peers for a restart of the whole cluster). */
    struct ndfs_transport *transport;
    const char *const *addresses; /* this node's link addresses, stored in its node row at
                                     bootstrap; NULL: none */
    /* An empty data dir with join set does not bootstrap: it waits for the
     * leader to send it the log (after ndfs_ccd_node_add on the leader gave
     * node_id). node_id is kept in <data_dir>/node-id; the bootstrap node is 1. */
    bool join;
    uint64_t node_id;              /* with join: the id the leader assigned; else 0 */
    unsigned election_timeout_ms;  /* 0: 1000 */
    unsigned heartbeat_timeout_ms; /* 0: 100 */
};

/* Opens the data directory: takes an exclusive lock on <data_dir>/lock
 * (-EBUSY when another process holds it; the message names its pid), opens
 * LMDB and prepares Raft. Nothing runs until ndfs_ccd_start(). On error *out
 * is NULL and *errmsg (g_malloc'd, caller frees) says what failed. */
int ndfs_ccd_open(uv_loop_t *loop, const struct ndfs_ccd_config *cfg, struct ndfs_ccd **out,
                  char **errmsg);

/* Starts Raft. An empty data dir bootstraps a one-voter cluster of this node
 * (new cluster id, epoch 1, members [node]) unless cfg->join. ready_cb runs
 * once, when the log has been applied to LMDB (status 0) or startup failed
 * (status < 0). If this returns an error, ready_cb is never called.
 * "Applied" means: on the leader, a barrier of its term has been applied; on
 * a follower, everything up to the commit index the leader reported when
 * asked (over the Raft channel) after this start has been applied, and the
 * tables hold the cluster id and this node's row. A node that is not (yet)
 * in the cluster therefore waits until it has been added and caught up. */
typedef void (*ndfs_ccd_ready_cb)(struct ndfs_ccd *ccd, int status, void *data);
int ndfs_ccd_start(struct ndfs_ccd *ccd, ndfs_ccd_ready_cb cb, void *data);
/* Restart: with a transport, a node whose data dir holds a replica with the
 * cluster and this node's row is ready as soon as that replica is loaded
 * (its snapshot, then its log up to the index it had applied before),
 * without a leader. Until a leader is reachable it may lag behind what the
 * cluster committed; it catches up in the background, the watch reporting
 * the changes. ndfs_ccd_current() is true once the replica has caught up
 * with a leader since the start (always, once ready, on the other paths). */
bool ndfs_ccd_current(struct ndfs_ccd *ccd);

/* Stops Raft, closes LMDB, releases the lock and frees ccd; cb runs when done. */
typedef void (*ndfs_ccd_closed_cb)(void *data);
void ndfs_ccd_close(struct ndfs_ccd *ccd, ndfs_ccd_closed_cb cb, void *data);

const char *ndfs_ccd_errmsg(const struct ndfs_ccd *ccd);

/* Called after a committed change has been applied to LMDB, on every node
 * (leader and followers), once ready. key is the row key (vdisk or node
 * name); removed is true when the row was deleted. key is NULL when a Raft
 * snapshot replaced the whole table: reread it. */
typedef void (*ndfs_ccd_watch_cb)(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key,
                                  bool removed, void *data);
void ndfs_ccd_set_watch(struct ndfs_ccd *ccd, ndfs_ccd_watch_cb cb, void *data);

/* Reads (local replica, synchronous). */
int ndfs_ccd_vdisk_get(struct ndfs_ccd *ccd, const char *name,
                       struct ndfs_vdisk *out); /* -ENOENT */
/* Calls fn for each vdisk in name order; stops and returns fn's value if non-zero. */
int ndfs_ccd_vdisk_foreach(struct ndfs_ccd *ccd, int (*fn)(const struct ndfs_vdisk *v, void *data),
                           void *data);
int ndfs_ccd_node_get(struct ndfs_ccd *ccd, const char *name, struct ndfs_node *out); /* -ENOENT */
int ndfs_ccd_node_foreach(struct ndfs_ccd *ccd, int (*fn)(const struct ndfs_node *n, void *data),
                          void *data);

struct ndfs_ccd_status {
    char cluster_id[37]; /* UUID */
    uint64_t epoch;
    char leader[NDFS_NODE_NAME_MAX + 1]; /* "" when there is no leader */
    char **members;                      /* NULL-terminated, g_strfreev */
    uint64_t vdisks;                     /* number of vdisks */
    uint64_t applied_index;              /* last Raft index applied to LMDB */
};
int ndfs_ccd_status(struct ndfs_ccd *ccd, struct ndfs_ccd_status *out);
void ndfs_ccd_status_clear(struct ndfs_ccd_status *st);

/* The last Raft index applied to LMDB (0 before start); cheap. */
uint64_t ndfs_ccd_applied_index(struct ndfs_ccd *ccd);
/* The index a node must reach to see every change this node proposed and
 * saw applied: the last such change's index (the leader follows each change
 * with an empty entry that followers learn is committed only a Raft
 * heartbeat later, so the applied index would make them wait for it), or
 * the applied index when this node proposed nothing yet. */
uint64_t ndfs_ccd_change_index(struct ndfs_ccd *ccd);
/* Read-your-writes for a change made on another node (whose answer gave its
 * applied index): cb runs once, on a later loop iteration (never from
 * within this call), with 0 when this replica has applied index, -ETIMEDOUT
 * after timeout_ms, or -ECANCELED when the CCD closes. Returns -EAGAIN
 * before start and -ECANCELED while closing; then cb is never called. */
typedef void (*ndfs_ccd_applied_cb)(struct ndfs_ccd *ccd, int status, void *data);
int ndfs_ccd_wait_applied(struct ndfs_ccd *ccd, uint64_t index, unsigned timeout_ms,
                          ndfs_ccd_applied_cb cb, void *data);

/* Changes. Each one is proposed as a Raft log entry; cb runs once with the
 * FSM's result when the entry has been applied (0 or -errno, see each
 * function), or with a Raft error mapped to -errno (-ENOTCONN: not the
 * leader, -ECANCELED: shutting down). If the call returns an error, cb is
 * never called. Strings are copied; the caller keeps ownership of v. */
typedef void (*ndfs_ccd_done_cb)(struct ndfs_ccd *ccd, int status, void *data);

/* -EEXIST if a vdisk of that name exists. v->id and v->version are ignored:
 * the FSM assigns the next id and version 1. Bumps the epoch (mapping change). */
int ndfs_ccd_vdisk_create(struct ndfs_ccd *ccd, const struct ndfs_vdisk *v, ndfs_ccd_done_cb cb,
                          void *data);
/* Replaces the row named v->name. -ENOENT if missing; -ESTALE if the stored
 * version is not v->version (someone changed it meanwhile). The FSM stores
 * version + 1. The id cannot change. */
int ndfs_ccd_vdisk_update(struct ndfs_ccd *ccd, const struct ndfs_vdisk *v, ndfs_ccd_done_cb cb,
                          void *data);
/* -ENOENT if missing. Bumps the epoch (mapping change). */
int ndfs_ccd_vdisk_remove(struct ndfs_ccd *ccd, const char *name, ndfs_ccd_done_cb cb, void *data);

/* Cluster. The changes below are leader-only like every change: they fail
 * at once with -ENOTCONN on a node that is not the Raft leader. */

/* Adds node n (name, addresses, role; id ignored): the FSM assigns the next
 * node id and writes the row (role VOTER while there are fewer than five
 * voter rows, STANDBY after, or STANDBY if asked). cb gets the id once the
 * row is committed; -EEXIST if the name exists. The leader then adds the
 * server to Raft in the background: as a standby at once, promoted to voter
 * once it has caught up (so the new node can be started with that id after
 * cb). Any later leader finishes what is left (see ndfs_ccd_server_role). */
typedef void (*ndfs_ccd_node_added_cb)(struct ndfs_ccd *ccd, int status, uint64_t id, void *data);
int ndfs_ccd_node_add(struct ndfs_ccd *ccd, const struct ndfs_node *n, ndfs_ccd_node_added_cb cb,
                      void *data);
/* Deletes the node row (-ENOENT; -EBUSY while a vdisk names it as primary or
 * secondary; -EINVAL for the last voter). A standby row is promoted to voter
 * in its place if it was a voter. The leader removes the server from Raft in
 * the background (handing leadership over first if it is itself). */
int ndfs_ccd_node_remove(struct ndfs_ccd *ccd, const char *name, ndfs_ccd_done_cb cb, void *data);
/* Adds address ("IPv4:port") as a link address of node name, at the first
 * index without one (or a new index), or removes it, leaving its index
 * empty ("") so that the node's other links keep theirs (ndfsadm link add /
 * remove). cb's status: the link's index (>= 0), or -ENOENT (no such node;
 * removing: not one of its addresses), -EEXIST (it has it), -EADDRINUSE
 * (another node has it), -ENOSPC (NDFS_NODE_ADDRESSES_MAX in use), -EINVAL
 * (its last address). The peers of every node follow the row (see
 * ndfs_ccd_config.transport), and the node itself listens on what its row
 * says once it applied it. */
int ndfs_ccd_node_link(struct ndfs_ccd *ccd, const char *name, const char *address, bool add,
                       ndfs_ccd_done_cb cb, void *data);
/* Commits {epoch + 1, members} (NULL-terminated node names); a no-op that
 * keeps the epoch when members are the same, in the same order. */
int ndfs_ccd_membership_set(struct ndfs_ccd *ccd, const char *const *members, ndfs_ccd_done_cb cb,
                            void *data);

/* Is this node the Raft leader now? */
bool ndfs_ccd_is_leader(struct ndfs_ccd *ccd);
/* The leader's node name, "" when unknown. */
void ndfs_ccd_leader(struct ndfs_ccd *ccd, char name[NDFS_NODE_NAME_MAX + 1]);
/* The node names of the Raft voters (current configuration, including
 * uncommitted changes), NULL-terminated (g_strfreev); *total: how many. */
char **ndfs_ccd_voters(struct ndfs_ccd *ccd, unsigned *total);
/* Quorum: counts the voters for which reachable(name) is true (this node
 * counts as reachable); true when they are a majority. up and total may be
 * NULL. Without transport: always true (one voter). */
bool ndfs_ccd_quorum(struct ndfs_ccd *ccd, bool (*reachable)(const char *name, void *data),
                     void *data, unsigned *up, unsigned *total);
/* A node's role in the current Raft configuration: NDFS_NODE_VOTER,
 * NDFS_NODE_STANDBY, or 0 when it is not (yet, or no longer) in it. */
int ndfs_ccd_server_role(struct ndfs_ccd *ccd, const char *name);
/* Passes on an event of the transport (the owner of its event callback, e.g.
 * ndfsd, calls this): NDFS_PEER_RESET and NDFS_PEER_DOWN close the Raft
 * streams to that peer so Raft reconnects at once; others are ignored. */
void ndfs_ccd_transport_event(struct ndfs_ccd *ccd, const char *peer, int event);
/* This node's Raft id. */
uint64_t ndfs_ccd_node_id(const struct ndfs_ccd *ccd);

#endif
