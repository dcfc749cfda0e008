#!/usr/bin/env bash
# Nodes join and leave: a 4th node joins and every member reports the same
# epoch and 4 members; removing a node that masters a vdisk is refused;
# removing an idle node leaves 3 members, the same epoch everywhere.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
epoch3=$CLUSTER_EPOCH
adm_on 1 vdisk create j --size 16M --primary "n1:$TESTDIR/j.img"

write_node_config 4
start_cluster_node 4
wait_converged 4 1 2 3 4
[ "$CLUSTER_MEMBERS" = "n1,n2,n3,n4" ] || fail "members are '$CLUSTER_MEMBERS'"
[ "$CLUSTER_EPOCH" -gt "$epoch3" ] || fail "epoch $CLUSTER_EPOCH did not grow from $epoch3 when n4 joined"
epoch4=$CLUSTER_EPOCH
# The new node received the CCD: it sees the vdisk created before it joined.
adm_on 4 vdisk show j >/dev/null || fail "n4 does not see vdisk j"
node_list 4 | jq -e '[.[].name] | sort == ["n1", "n2", "n3", "n4"]' >/dev/null ||
    fail "n4's node list: $(node_list 4)"

# n1 masters vdisk j: refused, from any node, and nothing changes.
expect_error 1 'n1' adm_on 2 node remove n1
converged 4 1 2 3 4 || fail "cluster changed after a refused node remove"
[ "$CLUSTER_EPOCH" = "$epoch4" ] || fail "epoch changed ($epoch4 -> $CLUSTER_EPOCH) after a refused remove"

# n4 masters nothing: stop it and remove it (asked on n3, forwarded).
stop_ndfsd "${NODE_CONF[4]}"
adm_on 3 node remove n4 || fail "node remove n4 failed"
wait_converged 3 1 2 3
[ "$CLUSTER_MEMBERS" = "n1,n2,n3" ] || fail "members after remove are '$CLUSTER_MEMBERS'"
[ "$CLUSTER_EPOCH" -gt "$epoch4" ] || fail "epoch $CLUSTER_EPOCH did not grow after n4 left"
for i in 1 2 3; do
    node_list "$i" | jq -e '[.[].name] | sort == ["n1", "n2", "n3"]' >/dev/null ||
        fail "n$i still lists n4: $(node_list "$i")"
done
# The cluster still takes changes.
adm_on 2 vdisk create j2 --size 1M --primary "n2:$TESTDIR/j2.img"
wait_until "$NDFS_TEST_DEADLINE" adm_on 1 vdisk show j2 || fail "n1 does not see j2"
