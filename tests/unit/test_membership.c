/* The membership state machine (membership/view.c) driven by a fake clock,
 * then the wired module (membership.c) on real CCDs and a real loop. */
#include <criterion/criterion.h>
#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "membership/view.h"
#include "ndfs/membership.h"
#include "ndfs/transport.h"

#define MS         1000000ull
#define FAILURE_NS (1500 * MS)
#define LEASE_NS   (1000 * MS)
#define HB_NS      (200 * MS)
#define T0         (1000000 * MS) /* the fake clock never reads 0 */

static struct mview *view_new(const char *self)
{
    struct mview_config cfg = {.failure_timeout_ns = FAILURE_NS, .lease_ns = LEASE_NS};
    struct mview *v = mview_new(self, &cfg);
    cr_assert_not_null(v);
    return v;
}

/* Three voters n1..n3, committed members n1..n3 at epoch 5. */
static struct mview *three_nodes(const char *self, bool leader, uint64_t now)
{
    struct mview *v = view_new(self);
    struct mview_node_row rows[] = {{"n1", true}, {"n2", true}, {"n3", true}};
    mview_set_nodes(v, rows, 3, now);
    const char *members[] = {"n1", "n2", "n3", NULL};
    mview_set_committed(v, 5, members);
    mview_set_leader(v, leader, now);
    return v;
}

static bool strv_eq(char **got, const char *const *want)
{
    if (got == NULL || want == NULL)
        return got == NULL && want == NULL;
    return g_strv_equal((const gchar *const *)got, (const gchar *const *)want);
}

/* Applies a commit as the CCD would: next epoch, these members. */
static void land(struct mview *v, char **members)
{
    mview_set_committed(v, mview_epoch(v) + 1, (const char *const *)members);
    mview_commit_done(v);
    g_strfreev(members);
}

Test(membership, config_needs_lease_shorter_than_failure_timeout)
{
    struct mview_config eq = {.failure_timeout_ns = FAILURE_NS, .lease_ns = FAILURE_NS};
    struct mview_config zero = {.failure_timeout_ns = 0, .lease_ns = 0};
    cr_assert_null(mview_new("n1", &eq));
    cr_assert_null(mview_new("n1", &zero));
}

Test(membership, heartbeats_keep_a_node_up)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n1", true, now);
    for (int i = 0; i < 100; i++) {
        uint64_t lease;
        mview_on_heartbeat(v, "n2", now, &lease);
        mview_on_heartbeat(v, "n3", now, &lease);
        cr_assert(mview_node_up(v, "n2", now));
        cr_assert_null(mview_commit_next(v, now), "no change while heartbeats flow");
        now += HB_NS;
    }
    cr_assert_eq(mview_epoch(v), 5);
    mview_free(v);
}

Test(membership, silence_past_failure_timeout_marks_down_exactly_once)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    now += FAILURE_NS; /* past the takeover grace */
    mview_on_heartbeat(v, "n2", now, &lease);
    mview_on_heartbeat(v, "n3", now, &lease);
    uint64_t last_n3 = now;
    int commits = 0;
    for (int i = 0; i < 50; i++) {
        now += HB_NS;
        mview_on_heartbeat(v, "n2", now, &lease);
        char **m = mview_commit_next(v, now);
        if (m == NULL)
            continue;
        commits++;
        const char *want[] = {"n1", "n2", NULL};
        cr_assert(strv_eq(m, want));
        cr_assert_geq(now - last_n3, FAILURE_NS, "declared down too early");
        cr_assert_lt(now - last_n3, FAILURE_NS + HB_NS, "declared down too late");
        land(v, m);
    }
    cr_assert_eq(commits, 1);
    cr_assert_eq(mview_epoch(v), 6);
    cr_assert_not(mview_is_member(v, "n3"));
    mview_free(v);
}

Test(membership, a_node_that_returns_is_committed_again)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    now += FAILURE_NS + HB_NS;
    mview_on_heartbeat(v, "n2", now, &lease);
    char **m = mview_commit_next(v, now); /* n3 never heard: down */
    const char *two[] = {"n1", "n2", NULL};
    cr_assert(strv_eq(m, two));
    land(v, m);
    cr_assert_not(mview_on_heartbeat(v, "n3", now, &lease), "no lease for a node declared down");
    m = mview_commit_next(v, now);
    const char *three[] = {"n1", "n2", "n3", NULL};
    cr_assert(strv_eq(m, three));
    land(v, m);
    cr_assert_eq(mview_epoch(v), 7);
    cr_assert(mview_on_heartbeat(v, "n3", now + HB_NS, &lease));
    cr_assert_eq(lease, LEASE_NS);
    mview_free(v);
}

Test(membership, grant_gives_expiry_send_time_plus_lease)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n2", false, now);
    cr_assert_eq(mview_lease_expiry(v), 0);
    cr_assert_not(mview_lease_valid(v, now));
    uint64_t sent = now;
    now += 300 * MS; /* a slow network changes nothing */
    mview_on_grant(v, sent, LEASE_NS, 5, now);
    cr_assert_eq(mview_lease_expiry(v), sent + LEASE_NS);
    cr_assert(mview_lease_valid(v, now));
    cr_assert_not(mview_lease_valid(v, sent + LEASE_NS));
    /* an older grant arriving late does not shorten it */
    mview_on_grant(v, sent - HB_NS, LEASE_NS, 5, now);
    cr_assert_eq(mview_lease_expiry(v), sent + LEASE_NS);
    /* a send time from the future is bogus */
    mview_on_grant(v, now + HB_NS, LEASE_NS, 5, now);
    cr_assert_eq(mview_lease_expiry(v), sent + LEASE_NS);
    mview_free(v);
}

Test(membership, lease_has_expired_when_the_leader_declares_down)
{
    uint64_t now = T0, lease = 0;
    struct mview *leader = three_nodes("n1", true, now);
    struct mview *node = three_nodes("n3", false, now);
    now += FAILURE_NS;
    /* n2 keeps the leader's majority; n3 is heard once then falls silent,
     * its grant arriving after 400 ms of network delay */
    mview_on_heartbeat(leader, "n2", now, &lease);
    uint64_t sent = now - 400 * MS;
    cr_assert(mview_on_heartbeat(leader, "n3", now, &lease));
    mview_on_grant(node, sent, lease, 5, now + 400 * MS);
    for (;; now += MS) {
        mview_on_heartbeat(leader, "n2", now, &lease);
        char **m = mview_commit_next(leader, now);
        if (m != NULL) {
            cr_assert_not(mview_lease_valid(node, now),
                          "n3 still holds a lease when declared down");
            g_strfreev(m);
            break;
        }
    }
    mview_free(leader);
    mview_free(node);
}

Test(membership, leader_lease_needs_a_majority)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    cr_assert_not(mview_lease_valid(v, now), "no voter heard yet");
    mview_on_heartbeat(v, "n2", now, &lease);
    cr_assert(mview_lease_valid(v, now), "n1 + n2 are 2 of 3");
    cr_assert_eq(mview_lease_expiry(v), now + LEASE_NS);
    now += LEASE_NS;
    cr_assert_not(mview_lease_valid(v, now), "majority not heard within the lease");
    mview_free(v);

    /* five voters: two others needed, the second most recent counts */
    now = T0;
    v = view_new("a");
    struct mview_node_row rows[] = {{"a", true}, {"b", true}, {"c", true},
                                    {"d", true}, {"e", true}, {"s", false}};
    mview_set_nodes(v, rows, 6, now);
    mview_set_leader(v, true, now);
    mview_on_heartbeat(v, "s", now, &lease); /* a standby does not count */
    mview_on_heartbeat(v, "b", now, &lease);
    cr_assert_not(mview_lease_valid(v, now));
    mview_on_heartbeat(v, "c", now + 10 * MS, &lease);
    mview_on_heartbeat(v, "d", now + 20 * MS, &lease);
    cr_assert_eq(mview_lease_expiry(v), now + 10 * MS + LEASE_NS);
    /* no grant from a leader without its own lease */
    const char *members[] = {"a", "b", "c", "d", "e", NULL};
    mview_set_committed(v, 1, members);
    cr_assert(mview_on_heartbeat(v, "e", now + 30 * MS, &lease));
    cr_assert_not(mview_on_heartbeat(v, "e", now + 20 * MS + LEASE_NS, &lease));
    mview_free(v);
}

Test(membership, single_voter_lease_never_runs_out)
{
    struct mview *v = view_new("n1");
    struct mview_node_row rows[] = {{"n1", true}};
    mview_set_nodes(v, rows, 1, T0);
    const char *members[] = {"n1", NULL};
    mview_set_committed(v, 1, members);
    mview_set_leader(v, true, T0);
    cr_assert_eq(mview_lease_expiry(v), UINT64_MAX);
    cr_assert_null(mview_commit_next(v, T0 + 100 * FAILURE_NS));
    mview_free(v);
}

Test(membership, new_leader_waits_before_declaring_anyone_down)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n2", false, now);
    now += 10 * FAILURE_NS; /* n1 and n3 silent for ages: but we were not leader */
    mview_set_leader(v, true, now);
    uint64_t takeover = now;
    for (; now < takeover + FAILURE_NS; now += HB_NS)
        cr_assert_null(mview_commit_next(v, now), "down before the takeover grace ended");
    char **m = mview_commit_next(v, now);
    const char *want[] = {"n2", NULL};
    cr_assert(strv_eq(m, want));
    g_strfreev(m);
    mview_free(v);
}

Test(membership, one_commit_in_flight_then_recompute)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    now += FAILURE_NS + HB_NS;
    mview_on_heartbeat(v, "n2", now, &lease);
    mview_on_heartbeat(v, "n3", now, &lease);
    now += FAILURE_NS - HB_NS; /* n2 silent, n3 heard */
    mview_on_heartbeat(v, "n3", now, &lease);
    now += 2 * HB_NS;
    char **m = mview_commit_next(v, now);
    const char *want1[] = {"n1", "n3", NULL};
    cr_assert(strv_eq(m, want1));
    cr_assert(mview_commit_in_flight(v));
    /* n3 falls silent too while the first commit is in flight */
    now += FAILURE_NS;
    cr_assert_null(mview_commit_next(v, now));
    cr_assert_null(mview_commit_next(v, now));
    land(v, m);
    m = mview_commit_next(v, now);
    const char *want2[] = {"n1", NULL};
    cr_assert(strv_eq(m, want2));
    /* a failed commit (no quorum) is retried */
    mview_commit_done(v);
    char **again = mview_commit_next(v, now);
    cr_assert(strv_eq(again, want2));
    g_strfreev(again);
    g_strfreev(m);
    mview_free(v);
}

Test(membership, commits_are_minimal)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n1", true, now);
    const char *members[] = {"n3", "n1", "n2", NULL}; /* same set, other order */
    cr_assert_not(mview_set_committed(v, 5, members));
    cr_assert_null(mview_commit_next(v, now));
    cr_assert_eq(mview_epoch(v), 5);
    cr_assert(mview_set_committed(v, 6, members), "an epoch bump is a change");
    mview_free(v);
}

Test(membership, new_node_is_committed_once_heard_and_dropped_when_silent)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    now += FAILURE_NS;
    mview_on_heartbeat(v, "n2", now, &lease);
    mview_on_heartbeat(v, "n3", now, &lease);
    struct mview_node_row rows[] = {{"n1", true}, {"n2", true}, {"n3", true}, {"n4", false}};
    cr_assert(mview_set_nodes(v, rows, 4, now));
    /* a node still joining (catching up, not heartbeating yet) is not
     * committed, so it never flaps in and out of the members */
    for (int i = 0; i < 20; i++) {
        now += HB_NS;
        mview_on_heartbeat(v, "n2", now, &lease);
        mview_on_heartbeat(v, "n3", now, &lease);
        cr_assert_null(mview_commit_next(v, now));
    }
    cr_assert_not(mview_on_heartbeat(v, "n4", now, &lease), "no lease before it is committed");
    char **m = mview_commit_next(v, now);
    const char *four[] = {"n1", "n2", "n3", "n4", NULL};
    cr_assert(strv_eq(m, four));
    land(v, m);
    cr_assert(mview_on_heartbeat(v, "n4", now, &lease));
    for (int i = 0; i < 7; i++) {
        now += HB_NS;
        mview_on_heartbeat(v, "n2", now, &lease);
        mview_on_heartbeat(v, "n3", now, &lease);
        cr_assert_null(mview_commit_next(v, now));
    }
    m = mview_commit_next(v, now + FAILURE_NS - 7 * HB_NS);
    const char *three[] = {"n1", "n2", "n3", NULL};
    cr_assert(strv_eq(m, three));
    land(v, m);
    /* removing a node from the table drops it from the members */
    struct mview_node_row two[] = {{"n1", true}, {"n2", true}};
    mview_set_nodes(v, two, 2, now);
    m = mview_commit_next(v, now);
    const char *want[] = {"n1", "n2", NULL};
    cr_assert(strv_eq(m, want));
    g_strfreev(m);
    mview_free(v);
}

Test(membership, a_follower_never_commits)
{
    struct mview *v = three_nodes("n2", false, T0);
    cr_assert_null(mview_commit_next(v, T0 + 10 * FAILURE_NS));
    uint64_t lease;
    cr_assert_not(mview_on_heartbeat(v, "n3", T0, &lease));
    mview_free(v);
}

Test(membership, message_codec_round_trip_and_rejects)
{
    struct mview_msg in = {.type = MVIEW_GRANT,
                           .send_ns = 0x0102030405060708ull,
                           .lease_ns = LEASE_NS,
                           .epoch = 42},
                     out;
    uint8_t buf[MVIEW_MSG_LEN];
    mview_msg_encode(&in, buf);
    cr_assert_eq(mview_msg_decode(buf, sizeof(buf), &out), 0);
    cr_assert_eq(out.type, in.type);
    cr_assert_eq(out.send_ns, in.send_ns);
    cr_assert_eq(out.lease_ns, in.lease_ns);
    cr_assert_eq(out.epoch, in.epoch);
    for (size_t len = 0; len < sizeof(buf); len++)
        cr_assert_eq(mview_msg_decode(buf, len, &out), -EBADMSG);
    uint8_t bad[MVIEW_MSG_LEN];
    memcpy(bad, buf, sizeof(bad));
    bad[0] = 2;
    cr_assert_eq(mview_msg_decode(bad, sizeof(bad), &out), -EBADMSG);
    memcpy(bad, buf, sizeof(bad));
    bad[1] = 4;
    cr_assert_eq(mview_msg_decode(bad, sizeof(bad), &out), -EBADMSG);
    in.type = MVIEW_NOT_MEMBER;
    mview_msg_encode(&in, buf);
    cr_assert_eq(mview_msg_decode(buf, sizeof(buf), &out), 0);
    cr_assert_eq(out.type, MVIEW_NOT_MEMBER);
}

Test(membership, only_a_settled_leader_disowns_a_node_gone_from_the_table)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n1", true, now);
    struct mview_node_row two[] = {{"n1", true}, {"n2", true}};
    uint64_t lease;
    for (; now < T0 + FAILURE_NS; now += HB_NS) {
        mview_on_heartbeat(v, "n2", now, &lease);
        mview_on_heartbeat(v, "n3", now, &lease);
    }
    /* n3 is in the table: silent or not, never disowned */
    cr_assert_not(mview_disowns(v, "n3", now));
    mview_set_nodes(v, two, 2, now);
    /* removed, but a fresh leader may not have applied a join yet */
    struct mview *fresh = three_nodes("n2", false, T0);
    mview_set_nodes(fresh, two, 2, now);
    mview_set_leader(fresh, true, now);
    mview_on_heartbeat(fresh, "n1", now, &lease);
    cr_assert_not(mview_disowns(fresh, "n3", now));
    mview_free(fresh);
    /* the settled leader with its lease disowns n3, not itself or n2 */
    cr_assert(mview_disowns(v, "n3", now));
    cr_assert_not(mview_disowns(v, "n1", now));
    cr_assert_not(mview_disowns(v, "n2", now));
    /* a follower never does */
    mview_set_leader(v, false, now);
    cr_assert_not(mview_disowns(v, "n3", now));
    /* nor a leader without a lease (n2 silent) */
    mview_set_leader(v, true, T0);
    cr_assert_not(mview_disowns(v, "n3", now + 2 * FAILURE_NS));
    mview_free(v);
}

Test(membership, a_grant_counts_only_once_its_epoch_is_applied)
{
    uint64_t now = T0;
    struct mview *v = three_nodes("n2", false, now); /* applied epoch 5 */
    cr_assert_eq(mview_grant_epoch(v), 0);
    /* back from a freeze: the leader committed epoch 6 (a takeover, say)
     * that we have not applied */
    mview_on_grant(v, now, LEASE_NS, 6, now + MS);
    cr_assert_eq(mview_grant_epoch(v), 6);
    cr_assert_eq(mview_lease_expiry(v), 0, "no lease while the replica lags");
    cr_assert_not(mview_lease_valid(v, now + MS));
    /* a late grant of an older epoch counts, but only for itself */
    mview_on_grant(v, now - HB_NS, LEASE_NS, 5, now + 2 * MS);
    cr_assert_eq(mview_grant_epoch(v), 6);
    cr_assert_eq(mview_lease_expiry(v), now - HB_NS + LEASE_NS);
    /* a bogus grant (send time in the future) changes nothing */
    mview_on_grant(v, now + HB_NS, LEASE_NS, 9, now + 2 * MS);
    cr_assert_eq(mview_grant_epoch(v), 6);
    /* epoch 6 applied: the waiting grant counts from its send time */
    const char *members[] = {"n1", "n2", NULL};
    mview_set_committed(v, 6, members);
    cr_assert_eq(mview_lease_expiry(v), now + LEASE_NS);
    cr_assert(mview_lease_valid(v, now + 2 * MS));
    /* a follower a moment behind the leader keeps its lease without a gap:
     * the new grant waits for epoch 7, the one before runs on */
    now += HB_NS;
    mview_on_grant(v, now, LEASE_NS, 7, now + MS);
    cr_assert_eq(mview_lease_expiry(v), now - HB_NS + LEASE_NS);
    /* a grant waiting for 8 is not released by applying 7 */
    now += HB_NS;
    mview_on_grant(v, now, LEASE_NS, 8, now + MS);
    mview_set_committed(v, 7, members);
    cr_assert_eq(mview_lease_expiry(v), now - 2 * HB_NS + LEASE_NS);
    mview_set_committed(v, 9, members);
    cr_assert_eq(mview_lease_expiry(v), now + LEASE_NS);
    mview_free(v);

    /* a follower that becomes leader before it applied a grant's epoch
     * holds no majority lease and grants none */
    now = T0;
    v = three_nodes("n2", false, now);
    mview_on_grant(v, now, LEASE_NS, 6, now);
    mview_set_leader(v, true, now);
    uint64_t lease;
    mview_on_heartbeat(v, "n1", now, &lease);
    cr_assert_eq(mview_lease_expiry(v), 0);
    cr_assert_not(mview_on_heartbeat(v, "n3", now, &lease));
    const char *three[] = {"n1", "n2", "n3", NULL};
    mview_set_committed(v, 6, three);
    cr_assert(mview_lease_valid(v, now));
    cr_assert(mview_on_heartbeat(v, "n3", now, &lease));
    mview_free(v);
}

Test(membership, heartbeats_that_waited_out_a_stall_do_not_renew_the_leaders_lease)
{
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", true, now);
    mview_on_heartbeat(v, "n2", now, &lease);
    cr_assert_eq(mview_lease_expiry(v), now + LEASE_NS);
    /* SIGSTOP for 5 s; n2 kept sending until it followed a new leader, and
     * its heartbeats waited in our socket */
    now += 5000 * MS;
    mview_stalled(v, now);
    cr_assert_not(mview_lease_valid(v, now));
    /* silence during our own stall declares nobody down: a fresh grace */
    cr_assert_null(mview_commit_next(v, now));
    cr_assert_null(mview_commit_next(v, now + FAILURE_NS - MS));
    cr_assert_eq(mview_leader_since(v), now);
    mview_on_heartbeat(v, "n2", now, &lease);
    mview_on_heartbeat(v, "n3", now + MS, &lease);
    cr_assert_not(mview_lease_valid(v, now + MS), "a stale heartbeat renewed the lease");
    cr_assert_not(mview_on_heartbeat(v, "n3", now + 2 * MS, &lease), "no grant without a lease");
    /* they still count as signs of life (no one is declared down for it) */
    cr_assert(mview_node_up(v, "n2", now + MS));
    cr_assert_eq(mview_last_heard(v, "n3"), now + 2 * MS);
    /* once the buffers are surely drained, a heartbeat renews it again */
    now += LEASE_NS / 2;
    cr_assert(mview_on_heartbeat(v, "n2", now, &lease));
    cr_assert_eq(mview_lease_expiry(v), now + LEASE_NS);
    cr_assert(mview_on_heartbeat(v, "n3", now, &lease));
    mview_free(v);
}

Test(membership, lease_over_bounds_every_lease_the_node_can_hold)
{
    const uint64_t margin = LEASE_NS / 10;
    uint64_t now = T0, lease;
    struct mview *v = three_nodes("n1", false, now);
    cr_assert_eq(mview_lease_over(v, "n3"), UINT64_MAX, "a follower cannot know");
    cr_assert_eq(mview_leader_since(v), 0);
    uint64_t takeover = now + 10 * FAILURE_NS;
    mview_set_leader(v, true, takeover);
    cr_assert_eq(mview_leader_since(v), takeover);
    /* never heard since: an earlier leader's grant bounds it */
    cr_assert_eq(mview_lease_over(v, "n3"), takeover + 2 * LEASE_NS + margin);
    cr_assert_eq(mview_lease_over(v, "n9"), takeover + 2 * LEASE_NS + margin, "unknown node");
    /* heard (and granted) soon after the takeover: still two leases */
    mview_on_heartbeat(v, "n2", takeover, &lease);
    mview_on_heartbeat(v, "n3", takeover + HB_NS, &lease);
    cr_assert_eq(mview_lease_over(v, "n3"), takeover + 2 * LEASE_NS + margin);
    /* heard long after: its last heartbeat + the lease */
    now = takeover + 5 * LEASE_NS;
    mview_on_heartbeat(v, "n2", now, &lease);
    uint64_t sent = now - 30 * MS; /* n3's send time, on a clock shared here */
    cr_assert(mview_on_heartbeat(v, "n3", now, &lease));
    cr_assert_eq(mview_lease_over(v, "n3"), now + LEASE_NS + margin);
    /* the lease n3 gets from that grant ends before that */
    struct mview *n3 = three_nodes("n3", false, T0);
    mview_on_grant(n3, sent, lease, mview_epoch(v), now + 30 * MS);
    cr_assert_lt(mview_lease_expiry(n3), mview_lease_over(v, "n3"));
    cr_assert_not(mview_lease_valid(n3, mview_lease_over(v, "n3")));
    /* re-elected: the grace starts again from the new takeover */
    mview_set_leader(v, false, now);
    cr_assert_eq(mview_lease_over(v, "n3"), UINT64_MAX);
    mview_set_leader(v, true, now + HB_NS);
    cr_assert_eq(mview_lease_over(v, "n3"), now + HB_NS + 2 * LEASE_NS + margin);
    mview_free(n3);
    mview_free(v);
}

/* The wired module on a real single-node CCD (no network) and a real loop. */

#define DEADLINE_MS 20000

struct node_env {
    uv_loop_t loop;
    char *dir;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *m;
    uint64_t changes;
    uint64_t last_epoch;
    char **last_members;
};

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until *flag (or pred) holds; fails at the deadline. */
static void run_until(uv_loop_t *loop, bool (*pred)(void *data), void *data, const char *what)
{
    uv_timer_t deadline;
    bool expired = false;
    uv_timer_init(loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, deadline_cb, DEADLINE_MS, 0);
    while (!pred(data) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    cr_assert(pred(data), "timed out waiting for %s", what);
}

static bool flag_set(void *data)
{
    return *(bool *)data;
}

struct wait {
    bool done;
    int status;
};

static void wait_ready(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct wait *w = data;
    w->done = true;
    w->status = status;
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static void on_change(struct ndfs_membership *m, uint64_t epoch, const char *const *members,
                      void *data)
{
    (void)m;
    struct node_env *e = data;
    e->changes++;
    e->last_epoch = epoch;
    g_strfreev(e->last_members);
    e->last_members = g_strdupv((char **)members);
}

static struct node_env NE;

static void node_setup(void)
{
    cr_assert_eq(uv_loop_init(&NE.loop), 0);
    NE.dir = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(NE.dir);
    struct ndfs_ccd_config cfg = {.data_dir = NE.dir, .node_name = "n1"};
    g_autofree char *errmsg = NULL;
    cr_assert_eq(ndfs_ccd_open(&NE.loop, &cfg, &NE.ccd, &errmsg), 0, "open: %s", errmsg);
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_start(NE.ccd, wait_ready, &w), 0);
    run_until(&NE.loop, flag_set, &w.done, "the CCD");
    cr_assert_eq(w.status, 0);
    struct ndfs_membership_config mc = {.node_name = "n1", .heartbeat_interval_ms = 20};
    cr_assert_eq(ndfs_membership_new(&NE.loop, &mc, NULL, NE.ccd, &NE.m, &errmsg), 0, "%s", errmsg);
    ndfs_membership_set_change_cb(NE.m, on_change, &NE);
}

static void node_teardown(void)
{
    bool closed = false;
    ndfs_membership_close(NE.m);
    ndfs_ccd_close(NE.ccd, on_closed, &closed);
    run_until(&NE.loop, flag_set, &closed, "the CCD to close");
    cr_assert_eq(uv_loop_close(&NE.loop), 0, "every handle is closed");
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", NE.dir);
    cr_assert_eq(system(cmd), 0);
    g_free(NE.dir);
    g_strfreev(NE.last_members);
    memset(&NE, 0, sizeof(NE));
}

TestSuite(membership_node, .init = node_setup, .fini = node_teardown, .timeout = 60);

Test(membership_node, config_errors_name_the_values)
{
    struct ndfs_membership *m = NULL;
    g_autofree char *errmsg = NULL;
    struct ndfs_membership_config mc = {
        .node_name = "n1", .failure_timeout_ms = 900, .lease_ms = 900};
    cr_assert_eq(ndfs_membership_new(&NE.loop, &mc, NULL, NE.ccd, &m, &errmsg), -EINVAL);
    cr_assert_null(m);
    cr_assert_str_eq(errmsg,
                     "membership: the lease (900 ms) must be shorter than the failure timeout "
                     "(900 ms)");
}

static int count_member(const struct ndfs_member_info *mi, void *data)
{
    cr_assert_str_eq(mi->name, "n1");
    cr_assert(mi->up);
    cr_assert(mi->reachable);
    cr_assert_eq(mi->last_heard_ms_ago, 0);
    (*(int *)data)++;
    return 0;
}

static bool changed_past_first(void *data)
{
    (void)data;
    return NE.last_epoch == 2;
}

Test(membership_node, single_node_leads_holds_an_endless_lease_and_reports_epochs)
{
    cr_assert_eq(ndfs_membership_start(NE.m), 0);
    cr_assert(ndfs_membership_lease_valid(NE.m));
    cr_assert_eq(ndfs_membership_lease_expiry_ns(NE.m), UINT64_MAX);
    cr_assert_eq(NE.changes, 1, "the row read at start is reported");
    cr_assert_eq(NE.last_epoch, 1);
    int n = 0;
    cr_assert_eq(ndfs_membership_foreach(NE.m, count_member, &n), 0);
    cr_assert_eq(n, 1);

    /* a mapping change bumps the epoch: reported on the next tick */
    struct ndfs_vdisk v = {.size = 1 << 20,
                           .mode = 0660,
                           .version = 1,
                           .name = "d1",
                           .owner = "root",
                           .group = "disk",
                           .primary_node = "n1",
                           .primary_path = "/var/lib/ndfs/d1.img"};
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(NE.ccd, &v, wait_ready, &w), 0);
    run_until(&NE.loop, changed_past_first, NULL, "epoch 2");
    cr_assert_eq(NE.changes, 2);
    const char *want[] = {"n1", NULL};
    cr_assert(strv_eq(NE.last_members, want));
}

static bool epoch_reaches_2(void *data)
{
    (void)data;
    return ndfs_membership_epoch(NE.m) == 2;
}

Test(membership_node, single_node_publishes_an_endless_lease_and_the_replicas_epoch)
{
    cr_assert_eq(ndfs_membership_start(NE.m), 0);
    const _Atomic uint64_t *word = ndfs_membership_lease_word(NE.m);
    cr_assert_not_null(word);
    cr_assert_eq(*word, UINT64_MAX);
    cr_assert_eq(ndfs_membership_epoch(NE.m), 1);
    cr_assert(ndfs_membership_is_member(NE.m, "n1"));
    cr_assert_not(ndfs_membership_is_member(NE.m, "n2"));
    cr_assert_eq(ndfs_membership_lease_over_ns(NE.m, "n2"), 0, "nobody else holds a lease");

    /* the epoch is the replica's as soon as it applied a change, before the
     * next tick reports it */
    struct ndfs_vdisk v = {.size = 1 << 20,
                           .mode = 0660,
                           .version = 1,
                           .name = "d1",
                           .owner = "root",
                           .group = "disk",
                           .primary_node = "n1",
                           .primary_path = "/var/lib/ndfs/d1.img"};
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_vdisk_create(NE.ccd, &v, wait_ready, &w), 0);
    run_until(&NE.loop, flag_set, &w.done, "the vdisk to be created");
    cr_assert_eq(w.status, 0);
    cr_assert_eq(ndfs_membership_epoch(NE.m), 2);
    run_until(&NE.loop, epoch_reaches_2, NULL, "epoch 2");
    run_until(&NE.loop, changed_past_first, NULL, "epoch 2 reported");
    cr_assert_eq(*word, UINT64_MAX);
}

/* Three nodes in one process, each with a real transport on its own loopback
 * address, a real CCD replicated over it and the membership module. */
#define NODES 3

struct cnode {
    char name[8];
    char address[32];
    char *dir;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *m;
    uint64_t epoch;           /* last reported by change_cb */
    char **members;           /* last reported by change_cb */
    uint64_t changed_ns;      /* CLOCK_MONOTONIC of the last report */
    unsigned lease_calls;     /* lease_cb */
    uint64_t last_lease;      /* its last expiry */
    bool lease_lost_reported; /* lease_cb said the lease ran out */
};

static struct {
    uv_loop_t loop;
    struct cnode n[NODES];
    uint8_t key[NDFS_TRANSPORT_KEY_MIN];
} C;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cluster_lease(struct ndfs_membership *m, uint64_t expiry_ns, void *data)
{
    struct cnode *n = data;
    cr_assert_eq(expiry_ns, *ndfs_membership_lease_word(m), "the cb reports what is published");
    n->lease_calls++;
    n->last_lease = expiry_ns;
    if (expiry_ns <= mono_ns())
        n->lease_lost_reported = true;
}

static void cluster_change(struct ndfs_membership *m, uint64_t epoch, const char *const *members,
                           void *data)
{
    (void)m;
    struct cnode *n = data;
    n->epoch = epoch;
    g_strfreev(n->members);
    n->members = g_strdupv((char **)members);
    n->changed_ns = mono_ns();
}

struct added {
    bool done;
    int status;
    uint64_t id;
};

static void node_added(struct ndfs_ccd *ccd, int status, uint64_t id, void *data)
{
    (void)ccd;
    struct added *a = data;
    a->done = true;
    a->status = status;
    a->id = id;
}

static void start_cnode(int i, bool join, uint64_t id)
{
    struct cnode *n = &C.n[i];
    g_autofree char *errmsg = NULL;
    const char *listen[] = {n->address, NULL};
    struct ndfs_transport_config tc = {.name = n->name,
                                       .listen = listen,
                                       .key = C.key,
                                       .key_len = sizeof(C.key),
                                       .heartbeat_interval_ms = 50,
                                       .failure_timeout_ms = 600};
    cr_assert_eq(ndfs_transport_new(&C.loop, &tc, &n->t, &errmsg), 0, "%s", errmsg);
    cr_assert_eq(ndfs_transport_start(n->t, &errmsg), 0, "%s", errmsg);
    for (int j = 0; j < NODES; j++) {
        const char *peer[] = {C.n[j].address, NULL};
        if (j != i)
            cr_assert_eq(ndfs_transport_peer_set(n->t, C.n[j].name, peer), 0);
    }
    struct ndfs_ccd_config cc = {.data_dir = n->dir,
                                 .node_name = n->name,
                                 .transport = n->t,
                                 .addresses = listen,
                                 .join = join,
                                 .node_id = id,
                                 .election_timeout_ms = 300,
                                 .heartbeat_timeout_ms = 50};
    cr_assert_eq(ndfs_ccd_open(&C.loop, &cc, &n->ccd, &errmsg), 0, "%s", errmsg);
    struct wait w = {0};
    cr_assert_eq(ndfs_ccd_start(n->ccd, wait_ready, &w), 0, "%s", ndfs_ccd_errmsg(n->ccd));
    run_until(&C.loop, flag_set, &w.done, "a CCD to be ready");
    cr_assert_eq(w.status, 0, "%s: %s", n->name, ndfs_ccd_errmsg(n->ccd));
    struct ndfs_membership_config mc = {
        .node_name = n->name, .heartbeat_interval_ms = 50, .failure_timeout_ms = 600};
    cr_assert_eq(ndfs_membership_new(&C.loop, &mc, n->t, n->ccd, &n->m, &errmsg), 0, "%s", errmsg);
    ndfs_membership_set_change_cb(n->m, cluster_change, n);
    ndfs_membership_set_lease_cb(n->m, cluster_lease, n);
    cr_assert_eq(ndfs_membership_start(n->m), 0);
}

static void stop_cnode(int i)
{
    struct cnode *n = &C.n[i];
    if (n->m)
        ndfs_membership_close(n->m);
    if (n->ccd) {
        bool closed = false;
        ndfs_ccd_close(n->ccd, on_closed, &closed);
        run_until(&C.loop, flag_set, &closed, "a CCD to close");
    }
    if (n->t) {
        bool closed = false;
        ndfs_transport_close(n->t, on_closed, &closed);
        run_until(&C.loop, flag_set, &closed, "a transport to close");
    }
    n->m = NULL;
    n->ccd = NULL;
    n->t = NULL;
}

static void cluster_setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* a peer closing its end is an error code, not a death */
    cr_assert_eq(uv_loop_init(&C.loop), 0);
    for (size_t i = 0; i < sizeof(C.key); i++)
        C.key[i] = (uint8_t)(i * 7 + 1);
    unsigned port = 20000 + (unsigned)getpid() % 20000;
    for (int i = 0; i < NODES; i++) {
        struct cnode *n = &C.n[i];
        g_snprintf(n->name, sizeof n->name, "n%d", i + 1);
        g_snprintf(n->address, sizeof n->address, "127.0.%d.1:%u", 40 + i, port);
        n->dir = g_dir_make_tmp(NULL, NULL);
        cr_assert_not_null(n->dir);
    }
    start_cnode(0, false, 0);
    for (int i = 1; i < NODES; i++) {
        char *addrs[] = {C.n[i].address, NULL};
        struct ndfs_node row = {
            .role = NDFS_NODE_VOTER, .name = C.n[i].name, .address = "", .addresses = addrs};
        struct added a = {0};
        cr_assert_eq(ndfs_ccd_node_add(C.n[0].ccd, &row, node_added, &a), 0, "node add: %s",
                     ndfs_ccd_errmsg(C.n[0].ccd));
        run_until(&C.loop, flag_set, &a.done, "a node to be added");
        cr_assert_eq(a.status, 0);
        start_cnode(i, true, a.id);
    }
}

static void cluster_teardown(void)
{
    for (int i = NODES - 1; i >= 0; i--)
        stop_cnode(i);
    uv_run(&C.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&C.loop), 0, "every handle is closed");
    for (int i = 0; i < NODES; i++) {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", C.n[i].dir);
        cr_assert_eq(system(cmd), 0);
        g_free(C.n[i].dir);
        g_strfreev(C.n[i].members);
    }
    memset(&C, 0, sizeof(C));
}

/* Every running node reports the same epoch and exactly these members. */
static bool all_agree(void *data)
{
    const char *const *want = data;
    uint64_t epoch = 0;
    for (int i = 0; i < NODES; i++) {
        if (C.n[i].m == NULL)
            continue;
        if (!strv_eq(C.n[i].members, want) || (epoch && C.n[i].epoch != epoch))
            return false;
        epoch = C.n[i].epoch;
    }
    return true;
}

static bool all_leases_valid(void *data)
{
    (void)data;
    for (int i = 0; i < NODES; i++)
        if (C.n[i].m && !ndfs_membership_lease_valid(C.n[i].m))
            return false;
    return true;
}

TestSuite(membership_cluster, .init = cluster_setup, .fini = cluster_teardown, .timeout = 60);

Test(membership_cluster, members_agree_and_a_silent_node_is_dropped_after_its_lease)
{
    const char *three[] = {"n1", "n2", "n3", NULL};
    run_until(&C.loop, all_agree, three, "every node to report n1,n2,n3");
    run_until(&C.loop, all_leases_valid, NULL, "every node to hold a lease");
    uint64_t epoch = C.n[0].epoch;

    uint64_t n3_expiry = ndfs_membership_lease_expiry_ns(C.n[2].m);
    uint64_t stopped = mono_ns();
    stop_cnode(2);
    const char *two[] = {"n1", "n2", NULL};
    run_until(&C.loop, all_agree, two, "n1 and n2 to drop n3");
    cr_assert_eq(C.n[0].epoch, epoch + 1, "one membership change, one epoch");
    cr_assert_gt(C.n[0].changed_ns, n3_expiry, "n3 dropped while its lease ran");
    cr_assert_geq(C.n[0].changed_ns - stopped, 500 * MS, "dropped before the failure timeout");
    cr_assert(all_leases_valid(NULL));
}

/* Raft promotes a joined node to voter once it has caught up. */
static bool all_voters(void *data)
{
    (void)data;
    unsigned total = 0;
    g_auto(GStrv) voters = ndfs_ccd_voters(C.n[0].ccd, &total);
    return voters && g_strv_length(voters) == NODES;
}

Test(membership_cluster, a_new_leader_waits_then_drops_the_old_one)
{
    const char *three[] = {"n1", "n2", "n3", NULL};
    run_until(&C.loop, all_agree, three, "every node to report n1,n2,n3");
    run_until(&C.loop, all_voters, NULL, "three Raft voters");
    uint64_t epoch = C.n[1].epoch;
    uint64_t stopped = mono_ns();
    stop_cnode(0); /* the leader: it bootstrapped the cluster */
    const char *two[] = {"n2", "n3", NULL};
    run_until(&C.loop, all_agree, two, "n2 and n3 to drop n1");
    cr_assert_eq(C.n[1].epoch, epoch + 1);
    /* an election (300 ms) then a whole failure timeout without history */
    cr_assert_geq(C.n[1].changed_ns - stopped, 600 * MS, "the new leader did not wait");
    run_until(&C.loop, all_leases_valid, NULL, "n2 and n3 to hold leases");
}

static bool n1_lease_lost(void *data)
{
    (void)data;
    return C.n[0].lease_lost_reported;
}

Test(membership_cluster, leases_are_published_bounded_by_lease_over_and_reported_lost)
{
    const char *three[] = {"n1", "n2", "n3", NULL};
    run_until(&C.loop, all_agree, three, "every node to report n1,n2,n3");
    run_until(&C.loop, all_voters, NULL, "three Raft voters");
    run_until(&C.loop, all_leases_valid, NULL, "every node to hold a lease");
    int leader = -1;
    for (int i = 0; i < NODES; i++) {
        struct cnode *n = &C.n[i];
        if (ndfs_ccd_is_leader(n->ccd))
            leader = i;
        /* between callbacks the word is what the view says */
        cr_assert_eq(*ndfs_membership_lease_word(n->m), ndfs_membership_lease_expiry_ns(n->m));
        cr_assert_gt(n->lease_calls, 0, "%s: renewals are reported", n->name);
        cr_assert_eq(n->last_lease, *ndfs_membership_lease_word(n->m));
        cr_assert_eq(ndfs_membership_epoch(n->m), n->epoch);
    }
    cr_assert_geq(leader, 0);
    /* one clock here: the leader's bound is past every lease it granted */
    struct ndfs_membership *lm = C.n[leader].m;
    for (int i = 0; i < NODES; i++) {
        if (i == leader)
            continue;
        cr_assert(ndfs_membership_is_member(lm, C.n[i].name));
        cr_assert_gt(ndfs_membership_lease_over_ns(lm, C.n[i].name),
                     *ndfs_membership_lease_word(C.n[i].m), "%s", C.n[i].name);
    }
    /* renewals keep coming */
    unsigned calls = C.n[1].lease_calls;
    uint64_t lease = C.n[1].last_lease;
    uv_timer_t pause;
    bool over = false;
    uv_timer_init(&C.loop, &pause);
    pause.data = &over;
    uv_timer_start(&pause, deadline_cb, 300, 0);
    run_until(&C.loop, flag_set, &over, "300 ms");
    uv_close((uv_handle_t *)&pause, NULL);
    cr_assert_gt(C.n[1].lease_calls, calls);
    cr_assert_gt(C.n[1].last_lease, lease);

    /* n1 alone has no majority and no leader: its lease runs out, and says so */
    C.n[0].lease_lost_reported = false;
    stop_cnode(2);
    stop_cnode(1);
    run_until(&C.loop, n1_lease_lost, NULL, "n1 to report its lease lost");
    cr_assert_not(ndfs_membership_lease_valid(C.n[0].m));
    uint64_t word = *ndfs_membership_lease_word(C.n[0].m);
    cr_assert(word == 0 || word <= mono_ns());
}
