#!/usr/bin/env bash
# A node with a different cluster key cannot join: it exits non-zero or
# keeps failing, never becomes a member; n1 logs the failed authentication
# once, with the address; the cluster keeps working.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
epoch=$CLUSTER_EPOCH
make_key "$TESTDIR/other.key"
write_node_config 4 "$TESTDIR/other.key"
spawn_node 4
pid4=$NDFSD_PID

auth_logged()
{
    grep -iE 'auth' "$TESTDIR/n1.log" | grep -qE '127\.0\.[0-9]+\.[0-9]+'
}
wait_until "$NDFS_TEST_DEADLINE" auth_logged ||
    fail "n1 did not log the failed authentication with an address"
grep -iE 'auth' "$TESTDIR/n1.log" | grep -E '127\.0\.' | head -n3

# Give n4 time to retry (several failure timeouts), then count: once.
sleep $((3 * NDFS_TEST_FAILURE_MS / 1000 + 1))
n=$(grep -iE 'auth' "$TESTDIR/n1.log" | grep -cE '127\.0\.')
[ "$n" -eq 1 ] || fail "n1 logged the failed authentication $n times, expected once"

if ! kill -0 "$pid4" 2>/dev/null; then
    reap_pid "$pid4"
    rc=$REAP_STATUS
    [ "$rc" -ne 0 ] || fail "n4 with the wrong key exited with status 0"
    echo "n4 exited with status $rc"
    grep -iE 'auth|key' "$TESTDIR/n4.log" | tail -n2 || fail "n4 exited without saying why"
fi
# n4 is never a member, anywhere, and the cluster did not change.
converged 3 1 2 3 || fail "the cluster lost its agreement"
[ "$CLUSTER_MEMBERS" = "n1,n2,n3" ] || fail "members are '$CLUSTER_MEMBERS'"
[ "$CLUSTER_EPOCH" = "$epoch" ] || fail "epoch changed ($epoch -> $CLUSTER_EPOCH)"
for i in 1 2 3; do
    node_list "$i" | jq -e 'all(.[]; .name != "n4")' >/dev/null || fail "n$i lists n4"
done
adm_on 2 vdisk create w --size 1M --primary "n2:$TESTDIR/w.img" || fail "no change after the intruder"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show w || fail "n3 does not see w"
