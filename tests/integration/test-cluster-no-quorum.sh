#!/usr/bin/env bash
# Without a majority a change fails at once with "no quorum" (exit 1) and
# reads still work; with the majority back, changes work again.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
adm_on 1 vdisk create q --size 1M --primary "n1:$TESTDIR/q.img"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show q || fail "n3 does not see q"

# Keep n3; stop the other two.
kill_node 1
kill_node 2
# n3 notices it is alone (failure timeout), then refuses at once.
no_quorum()
{
    adm_on 3 --json status | jq -e '.quorum == false' >/dev/null
}
wait_until "$NDFS_TEST_DEADLINE" no_quorum || fail "n3 still reports a quorum: $(adm_on 3 --json status)"
start=$SECONDS
expect_error 1 'no quorum: 1 of 3 voters reachable' adm_on 3 vdisk create q2 --size 1M --primary "n3:$TESTDIR/q2.img"
[ $((SECONDS - start)) -le 2 ] || fail "the refused change took $((SECONDS - start)) s, not at once"
# Reads still work.
adm_on 3 status >/dev/null || fail "status fails without quorum"
adm_on 3 vdisk show q >/dev/null || fail "vdisk show fails without quorum"
adm_on 3 vdisk list | grep -qw q || fail "vdisk list fails without quorum"
adm_on 3 node list >/dev/null || fail "node list fails without quorum"

start_cluster_node 1
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk create q3 --size 1M --primary "n3:$TESTDIR/q3.img" ||
    fail "no change possible with n1 back"
