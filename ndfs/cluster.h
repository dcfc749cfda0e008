/* Node-to-node control for ndfsd: the transport endpoint of this node, the
 * join of a new node, requests to other nodes (forwarded changes, remote
 * disk checks), the quorum test, and log lines for peers, links, nodes,
 * leader and epoch. Requests and responses travel on
 * NDFS_CHANNEL_CONTROL as control frames (ndfs/control.h: header + GVariant
 * body), the same bodies as on the control socket. Commands between nodes:
 *   join         {name s, addresses as}  -> {id t, members aa{sv}: name s, id t,
 *                                            addresses as}
 *   disk.prepare {vdisk s, path s, size t, create b, grow b} -> {created b}
 *   disk.discard {path s}                -> {}  undo a disk.prepare that created
 *   change       {command s, args a{sv}, uid u, gid u, pid i} -> the command's result
 *                                            + ccd-applied-index t
 *   vdisk.open-count {name s}            -> {count u, mounts u}  this node's opens of
 *                                            the vdisk and the mounts that hold them
 *   reconfig.prepare {txid t, ids at, timeout-ms u} -> {}  "update pending" (reconfig.h):
 *                                            answered once this node's mounts acked
 *                                            and its master drained those vdisks
 *   reconfig.finish  {txid t, committed b, applied-index t} -> {}  answered once
 *                                            the mounts were told vdisk.resume
 * A node answers join and change itself when it leads the CCD, and forwards
 * them to the leader otherwise. Runs on the loop thread. Private to ndfsd. */
#ifndef NDFS_CLUSTER_H
#define NDFS_CLUSTER_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/membership.h>
#include <ndfs/transport.h>

#include "config.h"

struct ndfs_cluster;
struct ndfs_reconfig;
struct ndfs_server;

#define NDFS_CLUSTER_RECONFIG_PREPARE "reconfig.prepare"
/* link.check {address s}: can this node listen on address (TCP and UDP)?
 * Answered 0, or -errno with "node N: cannot listen on A (TCP): ...". */
#define NDFS_CLUSTER_LINK_CHECK      "link.check"
#define NDFS_CLUSTER_RECONFIG_FINISH "reconfig.finish"

/* Loads the key file and creates the transport (nothing bound yet). On
 * error *errmsg (g_malloc'd) names the file or the address. */
int ndfs_cluster_new(uv_loop_t *loop, const struct ndfs_config *cfg, struct ndfs_cluster **out,
                     char **errmsg);
/* Binds every listen address and loads the peers cached in the data dir. */
int ndfs_cluster_start(struct ndfs_cluster *c, char **errmsg);
/* Closes the transport; cb runs when it is closed. Calls in flight get
 * -ECANCELED. */
void ndfs_cluster_close(struct ndfs_cluster *c, void (*cb)(void *data), void *data);

struct ndfs_transport *ndfs_cluster_transport(struct ndfs_cluster *c);
/* Links and helpers that live as long as the cluster; any may be NULL. */
void ndfs_cluster_set_ccd(struct ndfs_cluster *c, struct ndfs_ccd *ccd);
void ndfs_cluster_set_server(struct ndfs_cluster *c, struct ndfs_server *s);
void ndfs_cluster_set_membership(struct ndfs_cluster *c, struct ndfs_membership *m);
void ndfs_cluster_set_reconfig(struct ndfs_cluster *c, struct ndfs_reconfig *r);

/* cb runs when the CCD deleted this node's own row (ndfsadm node remove). */
void ndfs_cluster_set_removed_cb(struct ndfs_cluster *c,
                                 void (*cb)(struct ndfs_cluster *c, void *data), void *data);

/* Joins through address (any member): probes it, asks for membership and
 * calls cb with the id the leader gave this node. errmsg is for people. If
 * this returns an error, cb is never called. */
typedef void (*ndfs_cluster_join_cb)(struct ndfs_cluster *c, int status, uint64_t id,
                                     const char *errmsg, void *data);
int ndfs_cluster_join(struct ndfs_cluster *c, ndfs_cluster_join_cb cb, void *data);

/* The CCD is ready; then every change it applied (ndfsd's watch): logs the
 * nodes that join and leave (the CCD itself keeps the transport's peers in
 * step with the nodes table). */
void ndfs_cluster_ccd_ready(struct ndfs_cluster *c);
void ndfs_cluster_ccd_changed(struct ndfs_cluster *c, enum ndfs_ccd_table table, const char *key,
                              bool removed);

/* Sends command to peer and calls cb once with its answer, or with a local
 * error (-ETIMEDOUT, -ECONNRESET when the peer restarted, -ECANCELED on
 * close). args: a{sv}, floating consumed, NULL: {}. If this returns an
 * error, cb is never called. */
typedef void (*ndfs_cluster_reply_cb)(int status, const char *message, GVariant *result,
                                      void *data);
int ndfs_cluster_call(struct ndfs_cluster *c, const char *peer, const char *command, GVariant *args,
                      ndfs_cluster_reply_cb cb, void *data);
/* The same with its own deadline (ndfs_cluster_call: 20 s). */
int ndfs_cluster_call_timeout(struct ndfs_cluster *c, const char *peer, const char *command,
                              GVariant *args, unsigned timeout_ms, ndfs_cluster_reply_cb cb,
                              void *data);

/* Asks every other node of the nodes table, all at once, how many of its
 * mounts hold vdisk open (NDFS_CLUSTER_OPEN_COUNT), each within timeout_ms.
 * cb runs once, maybe before this returns: mounts (borrowed) maps the nodes
 * that answered with mounts > 0 to GUINT_TO_POINTER(mounts); failed_node is
 * the first node by name that did not answer (down, timed out, or an error:
 * why says which, "not reachable" for the first two), NULL when every node
 * answered. status is -ECANCELED when the cluster is closing, 0 otherwise. */
#define NDFS_CLUSTER_OPEN_COUNT "vdisk.open-count"
typedef void (*ndfs_cluster_open_counts_cb)(int status, GHashTable *mounts, const char *failed_node,
                                            const char *why, void *data);
void ndfs_cluster_open_counts(struct ndfs_cluster *c, const char *vdisk, unsigned timeout_ms,
                              ndfs_cluster_open_counts_cb cb, void *data);

/* Answers request id of peer (a forwarded change run by server.c).
 * result: a{sv}, floating consumed, NULL: {}. The answer also carries
 * NDFS_CLUSTER_APPLIED_INDEX (t): this node's applied Raft index, which
 * the asking node reaches before it answers its client. */
#define NDFS_CLUSTER_APPLIED_INDEX "ccd-applied-index"
void ndfs_cluster_reply(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                        const char *message, GVariant *result);

/* 0 when there is a leader and a majority of the voters (this node and the
 * voters whose transport peer is up) is reachable; -EAGAIN with
 * "no quorum: 1 of 3 voters reachable" (g_malloc'd) otherwise. */
int ndfs_cluster_quorum(struct ndfs_cluster *c, char **errmsg);
bool ndfs_cluster_has_quorum(struct ndfs_cluster *c);
bool ndfs_cluster_is_leader(struct ndfs_cluster *c);
/* Links of peer: up and configured. */
void ndfs_cluster_links(struct ndfs_cluster *c, const char *peer, unsigned *up, unsigned *total);

/* Addresses for people: "a;b". g_malloc'd. */
char *ndfs_cluster_addresses_join(const char *const *addresses);

/* Internal to cluster.c, cluster_join.c and cluster_open.c. */
struct ndfs_cluster {
    uv_loop_t *loop;
    char *node_name;
    char *data_dir;
    char **listen;
    char *join_address;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct ndfs_server *server;
    struct ndfs_membership *membership;
    struct ndfs_reconfig *reconfig;
    GHashTable *calls; /* id -> struct call * */
    uint64_t next_id;
    GHashTable *known; /* node names seen in the nodes table, to log joins */
    uv_timer_t *tick;  /* call deadlines, leader changes */
    char *last_leader;
    void (*removed_cb)(struct ndfs_cluster *c, void *data);
    void *removed_data;
    ndfs_cluster_join_cb join_cb;
    void *join_data;
    bool closing;
    void (*closed_cb)(void *data);
    void *closed_data;
};

/* Answers request id of peer. result: a{sv}, floating consumed, NULL: {}. */
void ndfs__cluster_reply(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                         const char *message, GVariant *result);
G_GNUC_PRINTF(5, 6)
void ndfs__cluster_reply_error(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                               const char *fmt, ...);
/* Answers request id of peer with whatever node to answers to command. */
int ndfs__cluster_relay_to(struct ndfs_cluster *c, const char *to, const char *peer, uint64_t id,
                           const char *command, GVariant *args);
/* Tells the transport about a node before the CCD runs (from a join answer). */
void ndfs__cluster_peer_set(struct ndfs_cluster *c, const char *name, const char *const *addresses);
/* The join request of a new node (cluster_join.c). */
void ndfs__cluster_handle_join(struct ndfs_cluster *c, const char *peer, uint64_t id,
                               GVariant *args);

#endif
