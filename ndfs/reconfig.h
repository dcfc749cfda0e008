/* Online reconfiguration (issue 6, figure 12, claims 49-71): the suspend /
 * drain / ack / update / resume protocol that changes a vdisk's mapping
 * while applications keep doing I/O. Runs in ndfsd on the loop thread.
 * Private to ndfsd.
 *
 * The coordinator is the CCD leader (a change is forwarded there, as any
 * change). For one change of the mapping of vdisks ids:
 *  1. "update pending": the leader calls reconfig.prepare {txid t, ids at,
 *     timeout-ms u} on every committed member (itself included, locally).
 *     A member tells its mounts (vdisk.suspend event) and its master: the
 *     mounts hold new requests of those vdisks and ack (vdisk.suspended)
 *     once what they sent is answered; the master answers prepare once its
 *     mounts acked and its own disk jobs of those vdisks are done.
 *  2. The leader waits for every member's answer, at most
 *     [reconfig] ack-timeout-ms (default 2000).
 *  3. All answered: the leader commits the change (one CCD update), then
 *     calls reconfig.finish {txid t, committed true, applied-index t} on every
 *     member; a member waits until its replica applied that index (its mounts
 *     got the vdisk.changed events) and sends vdisk.resume {committed true}.
 *  4. An answer missing at the deadline, an error, or a member that leaves
 *     the membership meanwhile: the leader sends reconfig.finish {committed
 *     false} to every member (mounts resume on the old mapping), changes
 *     nothing, and the command fails naming the node and why.
 * The run ends when every member that suspended answered finish (a silent
 * member is told, not waited for), at most ack-timeout after finish went out.
 * A member that got prepare but no finish within 2 x ack-timeout resumes on
 * its own (the leader died): nothing was committed, or the change arrives
 * through the CCD and the driver replays as after a failover.
 *
 * The synchronisation action of each CCD table is its format row
 * (ndfs_ccd_table_format, the patent's "format row"): a change runs as its
 * table's row says (ndfs_reconfig_change). vdisks and links: SUSPEND, every
 * change runs this protocol for the vdisks concerned: vdisk create (its id
 * exists only once committed: the run names no vdisk, nothing is held),
 * remove, resize, chmod, chown (from ndfsadm or through a mount), move,
 * failback and drain. nodes, membership and meta: NONE, committed at once.
 * Outside the protocol by exception: the takeover of a dead master
 * (failover.c; its mounts cannot drain requests to a dead node: they
 * replay, issue 5) and the marking of a path failed or restored
 * (vdisk.fail-path: the path is failing, its requests cannot drain;
 * vdisk.restore-path: the master does not move). Changes
 * of different vdisks run concurrently; changes of the same vdisk are
 * serialised (queued).
 * Each run reports how long I/O was paused: from the first prepare sent to
 * the last finish answered (paused-ms). */
#ifndef NDFS_RECONFIG_H
#define NDFS_RECONFIG_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/membership.h>

struct ndfs_reconfig;
struct ndfs_cluster;
struct ndfs_master;
struct ndfs_server;

#define NDFS_RECONFIG_ACK_TIMEOUT_DEFAULT_MS 2000

int ndfs_reconfig_new(uv_loop_t *loop, struct ndfs_ccd *ccd, struct ndfs_membership *m,
                      struct ndfs_cluster *cluster, struct ndfs_server *server,
                      const char *node_name, unsigned ack_timeout_ms, struct ndfs_reconfig **out,
                      char **errmsg);
/* cluster and m are NULL on a single node without network: it is the only
 * member. Close before the server stops serving, the master and the CCD
 * close: runs in flight fail -ECANCELED (members are told to resume), and
 * cb runs once the timer is closed; what is still in flight (node calls,
 * waits) only drops its reference when it ends. */
void ndfs_reconfig_close(struct ndfs_reconfig *r, void (*cb)(void *data), void *data);
/* The master whose disk jobs a prepare waits for (NULL: none). */
void ndfs_reconfig_set_master(struct ndfs_reconfig *r, struct ndfs_master *master);
unsigned ndfs_reconfig_ack_timeout_ms(const struct ndfs_reconfig *r);

/* Leader: runs the protocol around apply (which proposes the CCD change and
 * calls its done with the status once applied). cb runs once, maybe before
 * this returns (ndfsd stopping, a member that cannot be sent to): status 0
 * and paused_ms, or
 * -errno with message (for people; NULL on success). apply is called at
 * most once, with every member suspended; it must call done exactly once,
 * even after cb ran with -ECANCELED (ndfsd stopping). Runs sharing a
 * vdisk id run one after the other, in the order asked. */
typedef void (*ndfs_reconfig_apply_done)(int status, const char *message, void *ctx);
typedef void (*ndfs_reconfig_apply_fn)(void *data, ndfs_reconfig_apply_done done, void *ctx);
typedef void (*ndfs_reconfig_cb)(int status, const char *message, uint64_t paused_ms, void *data);
void ndfs_reconfig_run(struct ndfs_reconfig *r, const uint64_t *ids, size_t n_ids,
                       ndfs_reconfig_apply_fn apply, void *apply_data, ndfs_reconfig_cb cb,
                       void *data);

/* Runs a change of CCD table `table` as its format row says
 * (ndfs_ccd_table_format): with NDFS_CCD_SYNC_SUSPEND, as
 * ndfs_reconfig_run for ids (on the leader; r NULL: apply at once); with
 * NDFS_CCD_SYNC_NONE, apply at once. Either way cb runs once with the
 * status, the message and paused_ms (0 when nothing was suspended). */
void ndfs_reconfig_change(struct ndfs_reconfig *r, enum ndfs_ccd_table table, const uint64_t *ids,
                          size_t n_ids, ndfs_reconfig_apply_fn apply, void *apply_data,
                          ndfs_reconfig_cb cb, void *data);

/* Is a run of vdisk id queued or under way? A command that finds nothing to
 * change then runs anyway (queued behind it), so that commands on one vdisk
 * take effect in the order they came. */
bool ndfs_reconfig_busy(struct ndfs_reconfig *r, uint64_t id);

/* Member side, from cluster.c's CONTROL channel dispatch and commands.c. */
void ndfs_reconfig_handle_prepare(struct ndfs_reconfig *r, const char *peer, uint64_t id,
                                  GVariant *args);
void ndfs_reconfig_handle_finish(struct ndfs_reconfig *r, const char *peer, uint64_t id,
                                 GVariant *args);
/* A mount (control connection conn) acked txid. */
void ndfs_reconfig_mount_acked(struct ndfs_reconfig *r, void *conn, uint64_t txid);
/* A control connection closed: it acks nothing any more. */
void ndfs_reconfig_conn_closed(struct ndfs_reconfig *r, void *conn);

#endif
