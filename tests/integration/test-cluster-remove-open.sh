#!/usr/bin/env bash
# vdisk remove is refused while the vdisk is open on a mount of ANY node,
# whichever node is asked (the leader asks every other node for its mounts);
# a node that cannot answer also refuses it; --force removes anyway.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd jq ss

start_cluster 3 1
leader=${CLUSTER_LEADER#n}
adm_on 1 vdisk create db1 --size 1M --primary "n1:$TESTDIR/db1.img" >/dev/null
adm_on 1 vdisk create db2 --size 1M --primary "n1:$TESTDIR/db2.img" >/dev/null
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show db2 >/dev/null ||
        fail "n$i does not see db2"
    mount_ndfs "${NODE_SOCK[$i]}" "$TESTDIR/mnt$i"
done

# open_count I NAME: node I's own count, as vdisk show says.
open_count()
{
    json_get "$(adm_on "$1" --json vdisk show "$2")" .open_count
}
open_count_is()
{
    [ "$(open_count "$1" "$2")" = "$3" ]
}

exec 6<"$TESTDIR/mnt1/db1"
exec 7<"$TESTDIR/mnt2/db1"
exec 8<"$TESTDIR/mnt3/db1"
exec 9<"$TESTDIR/mnt3/db2"
for i in 1 2 3; do
    wait_until 10 open_count_is "$i" db1 1 || fail "n$i: db1 open_count $(open_count "$i" db1)"
done

# Refused from every node, the same message, nothing removed.
for i in 1 2 3; do
    expect_error 1 '^ndfsadm: vdisk "db1" is open on 3 mounts \(n1: 1, n2: 1, n3: 1\) \(use --force\)$' \
        adm_on "$i" vdisk remove db1
done
adm_on 2 vdisk show db1 >/dev/null || fail "a refused remove removed db1"

# Closed on n1 and n2: only n3's mount holds it (asked on n1, which has no
# mount holding it any more).
exec 6<&- 7<&-
wait_until 10 open_count_is 1 db1 0 || fail "n1 still counts db1 open"
wait_until 10 open_count_is 2 db1 0 || fail "n2 still counts db1 open"
expect_error 1 'vdisk "db1" is open on 1 mount \(n3: 1\) \(use --force\)' adm_on 1 vdisk remove db1
expect_error 1 'vdisk "db1" is open on 1 mount \(n3: 1\) \(use --force\)' adm_on 2 vdisk remove db1

# --force removes a vdisk open on another node.
adm_on 1 vdisk remove db2 --force >/dev/null || fail "remove --force of db2 (open on n3) failed"
wait_until 10 eval "! adm_on 3 vdisk show db2 >/dev/null 2>&1" || fail "n3 still shows db2"
# (closing a file of a vdisk removed meanwhile may report EIO: not checked here)
{ exec 9<&-; } 2>/dev/null || true

exec 8<&-
wait_until 10 open_count_is 3 db1 0 || fail "n3 still counts db1 open"

# A node that does not answer: nothing may be open there, but the leader
# cannot know. Freeze a node that is not the leader.
frozen=2
[ "$frozen" -ne "$leader" ] || frozen=3
freeze_node "$frozen"
on_cleanup "thaw_node $frozen 2>/dev/null"
start=$(date +%s%N)
expect_error 1 "^ndfsadm: cannot check the mounts of node n$frozen: not reachable \(use --force\)$" \
    adm_on "$leader" vdisk remove db1
ms=$((($(date +%s%N) - start) / 1000000))
echo "refused after $ms ms with n$frozen frozen"
[ "$ms" -lt 5000 ] || fail "the refusal took $ms ms"
adm_on "$leader" vdisk show db1 >/dev/null || fail "db1 removed while n$frozen did not answer"
thaw_node "$frozen"
wait_converged 3 1 2 3

# Everyone answers and nothing holds it: removed, and gone everywhere.
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk remove db1 >/dev/null ||
    fail "remove db1 still refused: $(adm_on 3 vdisk remove db1 2>&1)"
for i in 1 2 3; do
    wait_until 10 eval "! adm_on $i vdisk show db1 >/dev/null 2>&1" || fail "n$i still shows db1"
done
