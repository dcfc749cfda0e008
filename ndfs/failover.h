/* Failover of vdisk masters (issue 5), run by ndfsd on the CCD leader.
 *
 * When a vdisk's current master (ndfs_vdisk_master_node) is not a
 * committed member, and its other path exists, is not marked failed and
 * its node is a member, the leader makes that path the master through the
 * CCD (a vdisk update flipping on_secondary; the epoch moves, every node
 * agrees). Before it does, the old master is fenced: with
 * [membership] fence-command the leader runs "COMMAND NODE" and waits for
 * it to exit 0 (retrying every second, logging each failure); without it,
 * the leader waits until ndfs_membership_lease_over_ns(NODE). A vdisk stays
 * on the path it was moved to when the old one comes back (ndfsadm vdisk
 * failback). A master whose node is a member but whose path is marked
 * failed (a fail-path while the other node was away) is moved, without
 * fencing, once the other path is good and its node a member. Checks run
 * on every membership change, every vdisks change, when a lease runs out or
 * a fence is to be retried, and every second, so a leader elected after
 * the old one died finishes the work.
 *
 * It also proposes the path failures a master reports
 * (ndfs_master_set_path_failed_cb): on the leader directly, otherwise as a
 * vdisk.fail-path change forwarded to the leader. Runs on the loop thread.
 * Private to ndfsd. */
#ifndef NDFS_FAILOVER_H
#define NDFS_FAILOVER_H

#include <stdbool.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/membership.h>

struct ndfs_failover;
struct ndfs_cluster;

/* fence_command: NULL or an absolute path (copied). */
int ndfs_failover_new(uv_loop_t *loop, struct ndfs_ccd *ccd, struct ndfs_membership *m,
                      struct ndfs_cluster *cluster, const char *node_name,
                      const char *fence_command, struct ndfs_failover **out, char **errmsg);
/* From ndfsd's CCD watch and membership change callback. */
void ndfs_failover_ccd_changed(struct ndfs_failover *f, enum ndfs_ccd_table table);
void ndfs_failover_membership_changed(struct ndfs_failover *f);
/* A master on this node saw vdisk's disk fail (err: -errno). */
void ndfs_failover_path_failed(struct ndfs_failover *f, const char *vdisk, int err);
/* Kills a fence command still running, stops the timers; cb runs when f
 * is freed. */
void ndfs_failover_close(struct ndfs_failover *f, void (*cb)(void *data), void *data);

/* The rules of the mapping's changes (vdisk_path.c), shared by the control
 * commands and the failover:
 *   FAIL node:     marks node's path failed; if node masters v and the other
 *                  path exists, is not failed and its node is a member, the
 *                  other path becomes the master.
 *   RESTORE node:  marks node's path good; if the current master's path is
 *                  failed, node's path becomes the master.
 *   FAILBACK:      the primary masters v (-EBUSY when its path is failed or
 *                  its node is not a member).
 * Applies op to v in place; *changed says whether the row changed (false:
 * nothing to propose). -EINVAL (node is neither primary nor secondary) or
 * -EBUSY with *reason (g_malloc'd, for people). is_member(node, data) says
 * whether node is a committed member (the leader's view: call it there);
 * NULL: every node is (a single node). */
enum ndfs_path_op { NDFS_PATH_FAIL, NDFS_PATH_RESTORE, NDFS_PATH_FAILBACK };
typedef bool (*ndfs_vdisk_member_fn)(const char *node, void *data);
int ndfs_vdisk_path_apply(struct ndfs_vdisk *v, enum ndfs_path_op op, const char *node,
                          ndfs_vdisk_member_fn is_member, void *data, bool *changed, char **reason);
/* The is_member of ndfsd: ndfs_membership_is_member(data), every node when
 * data (the membership) is NULL. */
bool ndfs_vdisk_path_member(const char *node, void *data);
/* "fail a path of", "restore a path of", "fail back": for messages. */
const char *ndfs_vdisk_path_op_verb(enum ndfs_path_op op);

#endif
