#!/usr/bin/env bash
# A whole cluster restarted one node at a time (after a power cut): a
# restarted node is ready from its own replica without a majority. n2 alone,
# daemonised, starts at once, reports no quorum, serves reads (the vdisk
# created before the stop), refuses a change with "no quorum"; with n1 and
# n3 back a change works and all three agree on epoch and members, and a
# mount on n2 sees the change made after the majority came back.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
adm_on 1 vdisk create r1 --size 1M --primary "n1:$TESTDIR/r1.img"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show r1 || fail "n$i does not see r1"
done

# Power cut, politely: every node stops, n2 last; alone, its epoch cannot
# change any more, and it must read the same after its restart.
stop_ndfsd "${NODE_CONF[1]}"
stop_ndfsd "${NODE_CONF[3]}"
epoch=$(adm_on 2 --json status | jq -r .epoch)
stop_ndfsd "${NODE_CONF[2]}"

# stop_daemon PID: SIGTERM a daemonised ndfsd (not our child) and wait until
# it is gone.
stop_daemon()
{
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid"
    wait_until "$NDFS_TEST_DEADLINE" eval "! kill -0 $pid" ||
        daemon_crashes+=("daemonised ndfsd pid $pid did not stop on SIGTERM")
}

# n2 alone, daemonised: the start returns once it is ready.
log2=$TESTDIR/n2.daemon.log
add_daemon_log "$log2"
start=$(date +%s%N)
rc=0
timeout 60 "$NDFSD" -c "${NODE_CONF[2]}" --log-file "$log2" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
pid2=$(tr -d '[:space:]' <"$TESTDIR/n2.data/lock")
[ -n "$pid2" ] && on_cleanup "stop_daemon $pid2"
[ "$rc" -eq 0 ] || fail "daemonised ndfsd -c n2.conf exited $rc after $ms ms (124: still waiting)"
echo "n2 alone: daemonised start returned after $ms ms"
[ "$ms" -le 10000 ] || fail "the daemonised start of n2 alone took $ms ms"

# It answers at once: no quorum, the replica it had.
j=$(adm_on 2 --json status) || fail "status on n2 alone fails"
jq -e '.quorum == false' <<<"$j" >/dev/null || fail "n2 alone reports a quorum: $j"
echo "n2 alone: $(jq -c '{epoch, leader, members, quorum}' <<<"$j")"
[ "$(jq -r .epoch <<<"$j")" = "$epoch" ] || fail "n2 alone shows epoch $(jq -r .epoch <<<"$j"), had $epoch"
adm_on 2 vdisk list | grep -qw r1 || fail "vdisk list on n2 alone does not show r1: $(adm_on 2 vdisk list 2>&1)"
adm_on 2 vdisk show r1 >/dev/null || fail "vdisk show r1 fails on n2 alone"
adm_on 2 node list >/dev/null || fail "node list fails on n2 alone"
start=$SECONDS
expect_error 1 'no quorum' adm_on 2 vdisk create r2 --size 1M --primary "n2:$TESTDIR/r2.img"
[ $((SECONDS - start)) -le 2 ] || fail "the refused change took $((SECONDS - start)) s, not at once"

# A mount on n2 while it is alone lists r1 (and later sees r2 appear).
mounted=0
if [ -c /dev/fuse ] && command -v fusermount3 >/dev/null; then
    mount_ndfs "${NODE_SOCK[2]}" "$TESTDIR/mnt2"
    [ -e "$TESTDIR/mnt2/r1" ] || fail "the mount on n2 alone does not list r1: $(ls "$TESTDIR/mnt2")"
    mounted=1
fi

# The others come back (restarted, they are ready at once too).
spawn_node 1
spawn_node 3
wait_node_answers 1
wait_node_answers 3
has_quorum()
{
    adm_on "$1" --json status | jq -e '.quorum == true and .leader != "" and .leader != null' >/dev/null
}
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" has_quorum "$i" || fail "n$i has no quorum with all three back: $(adm_on "$i" --json status)"
done
adm_on 2 vdisk create r2 --size 1M --primary "n2:$TESTDIR/r2.img" || fail "no change possible on n2 with all three back"
wait_converged 3 1 2 3
[ "$CLUSTER_MEMBERS" = "n1,n2,n3" ] || fail "members are '$CLUSTER_MEMBERS', expected n1,n2,n3"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show r2 || fail "n$i does not see r2"
    adm_on "$i" vdisk show r1 >/dev/null || fail "n$i does not see r1"
done
echo "all three back: epoch $CLUSTER_EPOCH, leader $CLUSTER_LEADER, members $CLUSTER_MEMBERS"
if [ "$mounted" -eq 1 ]; then
    wait_until "$NDFS_TEST_DEADLINE" test -e "$TESTDIR/mnt2/r2" || fail "the mount on n2 does not show r2"
fi
