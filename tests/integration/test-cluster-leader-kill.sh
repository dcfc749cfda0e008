#!/usr/bin/env bash
# kill -9 the Raft leader: the survivors elect a new leader within seconds
# and take changes through any of them; the old leader, restarted, catches
# up: same epoch, members, and the vdisk created while it was down.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
old=${CLUSTER_LEADER#n}
survivors=()
for i in 1 2 3; do
    [ "$i" = "$old" ] || survivors+=("$i")
done
epoch=$CLUSTER_EPOCH
echo "leader n$old, epoch $epoch"

kill_node "$old"
start=$(date +%s%N)
# Both survivors name the same new leader.
new_leader()
{
    local a b
    a=$(adm_on "${survivors[0]}" --json status | jq -r .leader) || return 1
    b=$(adm_on "${survivors[1]}" --json status | jq -r .leader) || return 1
    [ "$a" = "$b" ] && [ "$a" != null ] && [ "$a" != "n$old" ]
}
wait_until 10 new_leader || fail "no new leader among n${survivors[0]} n${survivors[1]} within 10 s: $(cluster_view "${survivors[0]}") / $(cluster_view "${survivors[1]}")"
echo "new leader after $((($(date +%s%N) - start) / 1000000)) ms"
wait_converged 2 "${survivors[@]}"
echo "members $CLUSTER_MEMBERS, leader $CLUSTER_LEADER, epoch $CLUSTER_EPOCH, after $((($(date +%s%N) - start) / 1000000)) ms"
[ "$CLUSTER_EPOCH" -gt "$epoch" ] || fail "epoch did not grow when n$old went down"

# Changes work through both survivors (one of them forwards to the leader).
for i in "${survivors[@]}"; do
    adm_on "$i" vdisk create "k$i" --size 1M --primary "n$i:$TESTDIR/k$i.img" ||
        fail "vdisk create through n$i failed"
done

start_cluster_node "$old"
wait_converged 3 1 2 3
for i in "${survivors[@]}"; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$old" vdisk show "k$i" ||
        fail "restarted n$old does not see vdisk k$i"
done
echo "n$old caught up: epoch $CLUSTER_EPOCH, leader $CLUSTER_LEADER"
