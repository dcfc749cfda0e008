#!/usr/bin/env bash
# Read your writes through a follower: a change sent to a node that is not
# the CCD leader is forwarded there, and the follower answers only once its
# own replica applied it. So vdisk show on that follower right after a
# create (10 times) finds the vdisk, and right after a chmod shows the new
# mode, without any retry; and the follower never had to give up waiting.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
echo "epoch $CLUSTER_EPOCH, leader $CLUSTER_LEADER"
f=""
for i in 1 2 3; do
    [ "n$i" = "$CLUSTER_LEADER" ] || { f=$i; break; }
done
[ -n "$f" ] || fail "no follower among n1..n3 (leader $CLUSTER_LEADER)"
echo "follower n$f"

for k in $(seq 1 10); do
    adm_on "$f" vdisk create "ryw$k" --size 1M --primary "n$f:$TESTDIR/ryw$k.img" ||
        fail "vdisk create ryw$k through n$f failed"
    j=$(adm_on "$f" --json vdisk show "ryw$k") ||
        fail "n$f does not show ryw$k right after creating it (try $k of 10)"
    [ "$(json_get "$j" .name)" = "ryw$k" ] || fail "n$f shows '$j' for ryw$k"
done

for mode in 0600 0640 0604; do
    adm_on "$f" vdisk chmod ryw1 "$mode" || fail "vdisk chmod ryw1 $mode through n$f failed"
    j=$(adm_on "$f" --json vdisk show ryw1) || fail "n$f cannot show ryw1 after chmod $mode"
    got=$(json_get "$j" .mode)
    [ "$got" = "$mode" ] || fail "n$f shows mode $got right after chmod $mode"
done

n=$(adm_on "$f" --json vdisk list | jq '.vdisks | length')
[ "$n" -eq 10 ] || fail "n$f lists $n vdisks, expected 10"
if grep -q "answered before this node applied" "$TESTDIR/n$f.log"; then
    fail "n$f answered before applying a change: $(grep 'answered before' "$TESTDIR/n$f.log")"
fi
