/* The membership state machine: who is up, leases, when the leader commits.
 * No I/O and no clock of its own: every input carries the caller's
 * CLOCK_MONOTONIC time in ns (never 0; 0 means "never" below), so it can be
 * driven by a fake clock in tests. membership.c wires it to timers, the
 * transport and the CCD. */
#ifndef NDFS_MEMBERSHIP_VIEW_H
#define NDFS_MEMBERSHIP_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mview_config {
    uint64_t failure_timeout_ns; /* no heartbeat this long: down */
    uint64_t lease_ns;           /* must be < failure_timeout_ns */
};

struct mview;

/* NULL when the config is invalid (zero timeout, lease >= failure timeout).
 * self is copied. */
struct mview *mview_new(const char *self, const struct mview_config *cfg);
void mview_free(struct mview *v);

/* A row of the nodes table, as far as membership cares. */
struct mview_node_row {
    const char *name;
    bool voter;
};
/* Replaces the known nodes. A node is committed as a member once the
 * leader hears it (a node that joins heartbeats once it has caught up, so
 * it does not flap in and out while it catches up), and declared down
 * when it is silent for the failure timeout. Returns true if the set of
 * nodes or voters changed. */
bool mview_set_nodes(struct mview *v, const struct mview_node_row *rows, size_t n, uint64_t now);
bool mview_is_node(const struct mview *v, const char *name);

/* The applied membership row. Returns true if epoch or members changed. */
bool mview_set_committed(struct mview *v, uint64_t epoch, const char *const *members);
uint64_t mview_epoch(const struct mview *v);
bool mview_is_member(const struct mview *v, const char *name);

/* Leadership as the CCD reports it. Becoming leader starts the takeover
 * grace: nobody is declared down before now + failure timeout, since a new
 * leader has no history and the old one may have granted leases. */
void mview_set_leader(struct mview *v, bool leader, uint64_t now);
bool mview_is_leader(const struct mview *v);

/* A sign of life from node (a transport peer event, any message). */
void mview_heard(struct mview *v, const char *node, uint64_t now);
/* CLOCK_MONOTONIC ns when node was last heard; 0: never (self: always now). */
uint64_t mview_last_heard(const struct mview *v, const char *node);

/* Leader: a heartbeat from node, sent at send_ns on its clock. Counts as a
 * sign of life and toward the leader's majority. Returns true and fills
 * *lease_ns when the node gets a grant: we lead, our own lease is valid and
 * node is a committed member (a node declared down gets no lease until it
 * is committed again). */
bool mview_on_heartbeat(struct mview *v, const char *node, uint64_t now, uint64_t *lease_ns);
/* We stood still (a freeze, SIGSTOP, a blocked loop) until now: the
 * heartbeats received now may have waited in a buffer all that time, and
 * the leader's majority lease counts heartbeats from the time they arrive.
 * So the heartbeats heard so far are forgotten for that lease, and those
 * arriving within half a lease from now do not count toward it either (they
 * still count as signs of life). A leader also starts over as if it had just
 * taken over: silence during our own stall declares nobody down before a
 * failure timeout from now. Grants are not affected: they echo our own
 * send time. A stall shorter than the lease is covered anyway by the two
 * leases a new leader waits; the caller reports stalls of half a lease. */
void mview_stalled(struct mview *v, uint64_t now);

/* Leader: is a heartbeat from node to be answered MVIEW_NOT_MEMBER? Only
 * when node is not in the loaded nodes table, we lead with a valid lease
 * and have led for a failure timeout (so we applied what earlier leaders
 * committed: a node that joined is in our table). A node that only lost
 * contact is still in the table and never gets this answer. */
bool mview_disowns(const struct mview *v, const char *node, uint64_t now);
/* Any node: a grant echoing our send time, carrying the leader's epoch.
 * Lease expiry becomes send_ns + lease_ns on our own clock, whatever the
 * network delay (never moves back; a send time in the future is ignored),
 * but only once we applied the grant's epoch (mview_set_committed): a node
 * back from a freeze or a partition gets no lease until it knows the mapping
 * the cluster committed meanwhile. Until then the grant waits, and a lease
 * from earlier grants (of an epoch we applied) runs on: so a follower whose
 * replica applies a new epoch a moment after the leader does keeps its
 * lease without a gap. */
void mview_on_grant(struct mview *v, uint64_t send_ns, uint64_t lease_ns, uint64_t epoch,
                    uint64_t now);
/* The highest epoch a grant carried (applied or not); 0: none yet. */
uint64_t mview_grant_epoch(const struct mview *v);

/* Our lease expiry: the last grant that counts (see mview_on_grant), or as
 * leader the time a majority of voters (ourselves included) was last heard
 * + lease, whichever is later; the majority counts only while no grant
 * waits for an epoch we have not applied. UINT64_MAX for a leader that is
 * the only voter; 0: no lease. */
uint64_t mview_lease_expiry(const struct mview *v);
bool mview_lease_valid(const struct mview *v, uint64_t now);

/* Leader: the time after which node's lease has certainly run out: the
 * last time we heard it + lease, and no sooner than two leases after we
 * became leader (an earlier leader may have granted one then), plus a
 * margin of a tenth of the lease for clock rates. UINT64_MAX when we do
 * not lead (we cannot know). */
uint64_t mview_lease_over(const struct mview *v, const char *node);
/* When we became leader (the current term of our leadership); 0 while we do
 * not lead. */
uint64_t mview_leader_since(const struct mview *v);

/* Leader's opinion of node now: ourselves always; a committed member until
 * it has been silent for the failure timeout (counted from its last sign
 * of life, our takeover, or its addition, whichever is latest); another
 * node once heard (or added) within the failure timeout. */
bool mview_node_up(const struct mview *v, const char *node, uint64_t now);

/* Leader: the members to commit now (sorted, NULL-terminated, g_strfreev),
 * or NULL when we do not lead, a commit is in flight or nothing changed.
 * A non-NULL result marks a commit in flight until mview_commit_done(). */
char **mview_commit_next(struct mview *v, uint64_t now);
void mview_commit_done(struct mview *v);
bool mview_commit_in_flight(const struct mview *v);

/* The membership wire format: a version byte, a type byte, then send time,
 * lease and epoch as little-endian u64 (26 bytes). A heartbeat carries the
 * sender's send time and applied epoch (lease 0); a grant echoes the send
 * time and carries the lease and the leader's epoch; a not-member answer
 * (mview_disowns) echoes the send time and carries the leader's epoch. */
enum mview_msg_type { MVIEW_HEARTBEAT = 1, MVIEW_GRANT = 2, MVIEW_NOT_MEMBER = 3 };
struct mview_msg {
    uint8_t type;
    uint64_t send_ns;
    uint64_t lease_ns;
    uint64_t epoch;
};
#define MVIEW_MSG_LEN 26
void mview_msg_encode(const struct mview_msg *msg, uint8_t out[MVIEW_MSG_LEN]);
/* -EBADMSG for a wrong length, version or type. */
int mview_msg_decode(const uint8_t *buf, size_t len, struct mview_msg *out);

#endif
