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
 * failback). Checks run on every membership change, every vdisks change
 * and every heartbeat interval while something waits, so a leader elected
 * after the old one died finishes the work.
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

#endif
