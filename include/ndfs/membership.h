/* Cluster membership (CMM): who is up, the epoch, and leases.
 *
 * Every node sends a heartbeat to the CCD's Raft leader on the membership
 * channel every heartbeat interval (the transport's UDP heartbeats keep the
 * links alive underneath). The leader answers each with a lease grant: the
 * sender may act as a master until (its own send time + lease). A node
 * whose heartbeats stop for the failure timeout is declared down by the
 * leader, which commits {epoch + 1, members} to the CCD; a node that comes
 * back (or joins) is committed as a member again with a new epoch. The
 * failure timeout is longer than the lease, so a node the leader declares
 * down has already stopped serving I/O. The leader's own lease is renewed by
 * heartbeat replies from a majority of voters (always, for a single voter).
 *
 * Runs on the loop thread; functions return 0 or -errno. */
#ifndef NDFS_MEMBERSHIP_H
#define NDFS_MEMBERSHIP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/transport.h>

struct ndfs_membership;

struct ndfs_membership_config {
    const char *node_name;
    unsigned heartbeat_interval_ms; /* 0: 200 */
    unsigned failure_timeout_ms;    /* 0: 1500 */
    unsigned lease_ms;              /* 0: failure_timeout_ms * 2 / 3; must be < failure timeout */
};

/* transport may be NULL for a node without network (single node: it is
 * always the leader, always a member, its lease never runs out). */
int ndfs_membership_new(uv_loop_t *loop, const struct ndfs_membership_config *cfg,
                        struct ndfs_transport *transport, struct ndfs_ccd *ccd,
                        struct ndfs_membership **out, char **errmsg);
/* Registers the membership channel and starts the timers. */
int ndfs_membership_start(struct ndfs_membership *m);
/* Stops the timers; m is freed once they are closed (run the loop). Close
 * it before its transport and CCD (messages that arrive afterwards are
 * dropped); a new membership may then start on the same transport. */
void ndfs_membership_close(struct ndfs_membership *m);

/* Is this node's lease valid now? A master serves I/O only while it is. */
bool ndfs_membership_lease_valid(struct ndfs_membership *m);
/* CLOCK_MONOTONIC time (ns) at which our lease runs out; 0: no lease;
 * UINT64_MAX: never (single node). */
uint64_t ndfs_membership_lease_expiry_ns(struct ndfs_membership *m);

/* High availability. A grant counts (from its own send time) only once
 * this node's CCD replica has applied the epoch the grant carries; until
 * then the lease of earlier grants keeps running, and a node that comes
 * back from a freeze or a partition serves nothing until it knows the
 * mapping the cluster committed meanwhile. A leader whose membership tick
 * stood still for half a lease forgets the heartbeats that waited in its
 * sockets for its majority lease and starts a fresh takeover grace. */

/* Any thread: the lease expiry as ndfs_membership_lease_expiry_ns() gives
 * it, published by the loop
 * thread after every grant, heartbeat and tick; it never runs ahead of the
 * true expiry. A master's workers read it right before each disk
 * operation. The pointer is valid until ndfs_membership_close(). */
const _Atomic uint64_t *ndfs_membership_lease_word(struct ndfs_membership *m);
/* The committed epoch this node's replica applied (loop thread; cheap). */
uint64_t ndfs_membership_epoch(struct ndfs_membership *m);
/* cb runs on the loop thread when the published expiry moved: every
 * renewal, and when the lease is lost (expiry 0 or in the past). */
typedef void (*ndfs_membership_lease_cb)(struct ndfs_membership *m, uint64_t expiry_ns, void *data);
void ndfs_membership_set_lease_cb(struct ndfs_membership *m, ndfs_membership_lease_cb cb,
                                  void *data);
/* Leader: the CLOCK_MONOTONIC ns after which node's lease has certainly
 * run out: its last heartbeat we heard + the lease, and no sooner than two
 * leases after we became leader (an earlier leader may have granted one
 * then); plus a margin of 10 % for clock rates. A takeover of the vdisks
 * node masters waits for it (without a fence command). */
uint64_t ndfs_membership_lease_over_ns(struct ndfs_membership *m, const char *node);
/* Leader: is node a committed member now? */
bool ndfs_membership_is_member(struct ndfs_membership *m, const char *node);

/* This node's view of another node (from the leader's committed members and
 * from its own links): up is true when the node is a committed member. */
struct ndfs_member_info {
    const char *name;
    bool up;
    bool reachable; /* a link to it is up (always true for ourselves) */
    uint64_t last_heard_ms_ago;
};
int ndfs_membership_foreach(struct ndfs_membership *m,
                            int (*fn)(const struct ndfs_member_info *mi, void *data), void *data);

/* Called when the committed epoch/members change (after the CCD applied them). */
typedef void (*ndfs_membership_change_cb)(struct ndfs_membership *m, uint64_t epoch,
                                          const char *const *members, void *data);
void ndfs_membership_set_change_cb(struct ndfs_membership *m, ndfs_membership_change_cb cb,
                                   void *data);

/* Called once when the membership leader answers our heartbeat that this
 * node is not in the nodes table (ndfsadm node remove while it ran: its
 * replica no longer gets the CCD's updates, so it would not see its row go).
 * leader: the node that said so. Losing contact never calls it. */
typedef void (*ndfs_membership_removed_cb)(struct ndfs_membership *m, const char *leader,
                                           void *data);
void ndfs_membership_set_removed_cb(struct ndfs_membership *m, ndfs_membership_removed_cb cb,
                                    void *data);

/* Optional: the owner of the CCD watch forwards every change here, so the
 * membership row and the nodes table are reread at once rather than on the
 * next heartbeat tick (which rereads them anyway). */
void ndfs_membership_ccd_changed(struct ndfs_membership *m, enum ndfs_ccd_table table);

#endif
