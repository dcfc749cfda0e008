#!/usr/bin/env bash
# Three nodes in network namespaces, two link networks (a bridge each). Cut
# n1's link 1: n1's link list shows it down, no node is lost (same epoch),
# changes still commit. Bring it back: it is up again; with link 2 cut, link
# 1 alone carries the cluster's traffic (its byte counters grow). No node's
# log shows a membership without all three nodes meanwhile.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ip nsenter

netns_setup 3 2
start_cluster 3 2
epoch=$CLUSTER_EPOCH

# no_member_lost: since the mark, no node's log shows a committed
# membership without all three nodes.
log_mark()
{
    local i
    for i in 1 2 3; do
        mark[$i]=$(wc -l <"$TESTDIR/n$i.log")
    done
}
no_member_lost()
{
    local i bad
    for i in 1 2 3; do
        bad=$(tail -n +"$((mark[$i] + 1))" "$TESTDIR/n$i.log" |
            grep -E 'epoch [0-9]+: members' | grep -vE 'members n1,n2,n3$' || true)
        [ -z "$bad" ] || fail "n$i committed a membership without every node: $bad"
    done
}
declare -A mark=()

log_mark
link_down 1 1
start=$(date +%s%N)
wait_until "$NDFS_TEST_DEADLINE" link_state 1 1 down || fail "n1's link 1 not down: $(link_list 1)"
echo "n1 saw link 1 down after $((($(date +%s%N) - start) / 1000000)) ms"
link_state 1 2 up || fail "n1's link 2 went down too: $(link_list 1)"
# Raft traffic may stall until the transport moved it to link 2, and an
# election may follow: changes may be refused for a moment, not for long.
start=$(date +%s%N)
wait_until 10 adm_on 3 vdisk create a --size 1M --primary "n1:$TESTDIR/a.img" ||
    fail "no change with link 1 down: $(adm_on 3 vdisk create a --size 1M --primary "n1:$TESTDIR/a.img" 2>&1)"
echo "a change committed $((($(date +%s%N) - start) / 1000000)) ms after n1 saw link 1 down"
wait_until "$NDFS_TEST_DEADLINE" adm_on 1 vdisk show a || fail "n1 does not see a"
wait_converged 3 1 2 3
no_member_lost
[ "$CLUSTER_EPOCH" = "$epoch" ] || echo "note: epoch $epoch -> $CLUSTER_EPOCH with the same members"

link_up 1 1
wait_until "$NDFS_TEST_DEADLINE" link_state 1 1 up || fail "n1's link 1 not up again: $(link_list 1)"
for i in 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" link_state "$i" 1 up || fail "n$i's link 1 not up again: $(link_list "$i")"
done

log_mark
link_down 1 2
wait_until "$NDFS_TEST_DEADLINE" link_state 1 2 down || fail "n1's link 2 not down: $(link_list 1)"
before=$(link_bytes 1 1)
for k in 1 2 3 4 5; do
    adm_on 2 vdisk create "b$k" --size 1M --primary "n2:$TESTDIR/b$k.img" || fail "no change over link 1 alone"
done
wait_until "$NDFS_TEST_DEADLINE" adm_on 1 vdisk show b5 || fail "n1 does not see b5"
after=$(link_bytes 1 1)
echo "link 1 carried $((after - before)) bytes for 5 changes"
[ "$after" -gt "$before" ] || fail "link 1 carried nothing: $(link_list 1)"
link_up 1 2
wait_until "$NDFS_TEST_DEADLINE" link_state 1 2 up || fail "n1's link 2 not up again: $(link_list 1)"
wait_converged 3 1 2 3
no_member_lost
