#!/usr/bin/env bash
# The first five nodes are Raft voters, later ones standbys: six nodes (one
# link each) list 5 voters and 1 standby, all up, on every node, with the same
# epoch. Removing a voter (stopped first, masters nothing) promotes the
# standby: 5 voters again, on every node, and the Raft configuration really
# has 5 voters (a change still commits with two of the others stopped, which
# 2 of 4 voters could not do).
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 6 1
all=(1 2 3 4 5 6)
epoch6=$CLUSTER_EPOCH

# roles I: "voters standbys up" as node I's node list says.
roles()
{
    node_list "$1" | jq -er '"\([.[] | select(.role == "voter")] | length) \([.[] | select(.role == "standby")] | length) \([.[] | select(.state == "up")] | length)"'
}

# roles_are WANT I...: every node I lists WANT ("voters standbys up").
roles_are()
{
    local want=$1 i
    shift
    for i in "$@"; do
        [ "$(roles "$i")" = "$want" ] || return 1
    done
}

if ! wait_until "$NDFS_TEST_DEADLINE" roles_are "5 1 6" "${all[@]}"; then
    for i in "${all[@]}"; do
        echo "n$i: $(roles "$i" 2>&1) $(node_list "$i" | jq -c '[.[] | [.name, .role, .state]]')" >&2
    done
    fail "six nodes do not list 5 voters, 1 standby, 6 up everywhere"
fi
converged 6 "${all[@]}" || fail "nodes disagree on the epoch or members"
[ "$CLUSTER_EPOCH" = "$epoch6" ] || echo "note: epoch moved $epoch6 -> $CLUSTER_EPOCH meanwhile"
epoch6=$CLUSTER_EPOCH
# Every node names the same standby (the nodes joined at once: any may be it).
standby=$(node_list 1 | jq -er '.[] | select(.role == "standby") | .name')
for i in "${all[@]}"; do
    s=$(node_list "$i" | jq -er '.[] | select(.role == "standby") | .name')
    [ "$s" = "$standby" ] || fail "n$i names standby $s, n1 names $standby"
done
leader=$CLUSTER_LEADER
echo "standby: $standby, leader: $leader, epoch: $epoch6"

# A vdisk on n1, so that n1 masters something; the voter to remove is
# neither n1, nor the leader, nor the standby.
adm_on 1 vdisk create sb --size 1M --primary "n1:$TESTDIR/sb.img" >/dev/null
victim=""
for i in 2 3 4 5 6; do
    if [ "n$i" != "$leader" ] && [ "n$i" != "$standby" ]; then
        victim=$i
        break
    fi
done
[ -n "$victim" ] || fail "no voter to remove"
stop_ndfsd "${NODE_CONF[$victim]}"
# a follower asks: the remove is forwarded to the leader
for ask in "${all[@]}"; do
    [ "$ask" -eq "$victim" ] || [ "n$ask" = "$leader" ] || break
done
adm_on "$ask" node remove "n$victim" || fail "node remove n$victim (asked on n$ask) failed"

rest=()
for i in "${all[@]}"; do
    [ "$i" -eq "$victim" ] || rest+=("$i")
done
wait_converged 5 "${rest[@]}"
[ "$CLUSTER_EPOCH" -gt "$epoch6" ] || fail "epoch $CLUSTER_EPOCH did not grow after n$victim left"
if ! wait_until "$NDFS_TEST_DEADLINE" roles_are "5 0 5" "${rest[@]}"; then
    for i in "${rest[@]}"; do
        echo "n$i: $(roles "$i" 2>&1) $(node_list "$i" | jq -c '[.[] | [.name, .role, .state]]')" >&2
    done
    fail "after removing voter n$victim, the nodes do not list 5 voters and no standby"
fi
for i in "${rest[@]}"; do
    node_list "$i" | jq -e --arg s "$standby" '.[] | select(.name == $s) | .role == "voter"' \
        >/dev/null || fail "n$i does not list $standby as a voter"
done

# Raft itself has five voters: stop two that are neither the leader nor the
# promoted node; 3 of 5 voters still commit a change (2 of 4 would not).
converged 5 "${rest[@]}" || fail "nodes disagree after the promotion"
leader=$CLUSTER_LEADER
stopped=()
for i in "${rest[@]}"; do
    [ "${#stopped[@]}" -lt 2 ] || break
    if [ "n$i" != "$leader" ] && [ "n$i" != "$standby" ]; then
        stopped+=("$i")
    fi
done
[ "${#stopped[@]}" -eq 2 ] || fail "no two voters to stop"
for i in "${stopped[@]}"; do
    stop_ndfsd "${NODE_CONF[$i]}"
done
ask=${standby#n}
# The leader learns that two voters are down within the failure timeout; a
# change then must still commit.
if ! wait_until "$NDFS_TEST_DEADLINE" adm_on "$ask" vdisk create sb2 --size 1M \
    --primary "n1:$TESTDIR/sb2.img"; then
    adm_on "$ask" vdisk create sb2 --size 1M --primary "n1:$TESTDIR/sb2.img" || true
    fail "no change commits with 3 of the 5 voters (is $standby a Raft voter?)"
fi
adm_on "$ask" vdisk show sb2 >/dev/null || fail "$standby does not show sb2"
echo "ok: $standby promoted; a change commits with 3 of 5 voters"
