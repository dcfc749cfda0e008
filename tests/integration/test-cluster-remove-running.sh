#!/usr/bin/env bash
# A node removed while its ndfsd runs learns it from the leader's answer to
# its heartbeat and stops with status 0 and a clear log line; the others
# drop its links, agree on 2 members and still take changes.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
epoch3=$CLUSTER_EPOCH
# Remove a node that does not lead the CCD (a leader removing itself is
# another story); ask one of the two that stay.
for i in 3 2 1; do
    [ "n$i" = "$CLUSTER_LEADER" ] || break
done
victim=$i
stay=()
for j in 1 2 3; do
    [ "$j" = "$victim" ] || stay+=("$j")
done
vpid=$(node_pid "$victim")
vlog="${NODE_CONF[$victim]%.conf}.log"

adm_on "${stay[0]}" node remove "n$victim" || fail "node remove n$victim failed"

wait_until "$NDFS_TEST_DEADLINE" bash -c "! kill -0 $vpid 2>/dev/null" ||
    fail "n$victim (pid $vpid) still runs ${NDFS_TEST_DEADLINE}s after its removal"
reap_pid "$vpid"
[ "$REAP_STATUS" -eq 0 ] || fail "n$victim exited with status $REAP_STATUS, expected 0"
grep "this node (n$victim) was removed from the cluster" "$vlog" ||
    fail "n$victim's log does not say it was removed: $(tail -n 20 "$vlog")"

no_link_to_victim()
{
    local i
    for i in "${stay[@]}"; do
        link_list "$i" | jq -e --arg v "n$victim" 'all(.[]; .peer != $v)' >/dev/null || return 1
    done
}
wait_until "$NDFS_TEST_DEADLINE" no_link_to_victim ||
    fail "links to n$victim remain: $(link_list "${stay[0]}") $(link_list "${stay[1]}")"

wait_converged 2 "${stay[@]}"
[ "$CLUSTER_EPOCH" -gt "$epoch3" ] || fail "epoch $CLUSTER_EPOCH did not grow from $epoch3"
[ "$(tr ',' '\n' <<<"$CLUSTER_MEMBERS" | grep -c "^n$victim\$")" -eq 0 ] ||
    fail "members are '$CLUSTER_MEMBERS'"
for i in "${stay[@]}"; do
    node_list "$i" | jq -e --arg v "n$victim" 'length == 2 and all(.[]; .name != $v)' >/dev/null ||
        fail "n$i's node list: $(node_list "$i")"
done

# The cluster still takes changes.
adm_on "${stay[1]}" vdisk create r --size 1M --primary "n${stay[1]}:$TESTDIR/r.img" ||
    fail "vdisk create after the removal failed"
wait_until "$NDFS_TEST_DEADLINE" adm_on "${stay[0]}" vdisk show r >/dev/null ||
    fail "n${stay[0]} does not see vdisk r"
