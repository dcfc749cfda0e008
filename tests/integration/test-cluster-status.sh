#!/usr/bin/env bash
# Three nodes on loopback, two links each: every node reports the same
# epoch, leader and members; node list shows three nodes up with 2/2 links
# to the others and one leader; link list shows both links to each peer up.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
[ "$CLUSTER_MEMBERS" = "n1,n2,n3" ] || fail "members are '$CLUSTER_MEMBERS', expected n1,n2,n3"
echo "epoch $CLUSTER_EPOCH, leader $CLUSTER_LEADER"

# Links come up with the first heartbeats, perhaps after membership.
nodes_all_up()
{
    local j
    j=$(node_list "$1") || return 1
    # The answering node has no links to itself.
    jq -e --arg me "n$1" 'length == 3
        and all(.[]; .state == "up" and .role == "voter")
        and all(.[] | select(.name != $me); .links_up == 2 and .links_total == 2)
        and ([.[] | select(.leader)] | length == 1)
        and ([.[].name] | sort == ["n1", "n2", "n3"])' <<<"$j" >/dev/null
}
# Both links to each of the two peers are up, between the right addresses.
links_all_up()
{
    local i=$1 j
    j=$(link_list "$i") || return 1
    jq -e --arg a "127.0.1.$i:" --arg b "127.0.2.$i:" '
        [.[] | select(.peer | test("^n[123]$"))] as $l
        | ($l | length == 4)
          and all($l[]; .state == "up")
          and ([$l[].local | select(startswith($a) or startswith($b))] | length == 4)
          and ([$l[] | .peer] | unique | length == 2)' <<<"$j" >/dev/null
}
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" nodes_all_up "$i" ||
        fail "n$i: node list is not 3 voters up with 2/2 links: $(node_list "$i")"
    wait_until "$NDFS_TEST_DEADLINE" links_all_up "$i" ||
        fail "n$i: link list does not show 2 links up to each peer: $(link_list "$i")"
done
adm_on 1 node list
adm_on 1 link list

# The leader in node list is the one status reports.
leader=$(node_list 2 | jq -r '.[] | select(.leader) | .name')
[ "$leader" = "$CLUSTER_LEADER" ] || fail "node list says leader $leader, status says $CLUSTER_LEADER"
# Plain text output names every node.
out=$(adm_on 3 node list)
for n in n1 n2 n3; do
    grep -qw "$n" <<<"$out" || fail "node list does not show $n: $out"
done
