#!/usr/bin/env bash
# Three nodes in network namespaces, two link networks (a bridge each). A
# vdisk attached to n1 is mounted on n3. During fio --verify, n1's link 1
# goes down for a few failure timeouts: no I/O error, fio's verify passes;
# prints the longest I/O pause (fio's largest completion latency). Brought
# back, link 1 is up again in link list, and with link 2 down it carries
# all the traffic (its byte counters grow by at least what fio wrote).
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ip nsenter

netns_setup 3 2
start_cluster 3 2
adm_on 1 vdisk create c --size 64M --primary "n1:$TESTDIR/c.img"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show c || fail "n3 does not see vdisk c"
MP=$TESTDIR/mnt3
MOUNT_WRAPPER=(nsenter --net="/run/netns/${NODE_NS[3]}")
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# fio_job NAME ARGS...: randwrite + verify on the vdisk, JSON to NAME.json.
fio_job()
{
    local name=$1
    shift
    fio --name="$name" --filename="$MP/c" --direct=1 --ioengine=libaio --iodepth=16 \
        --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --output-format=json --output="$TESTDIR/$name.json" "$@"
}

# links_up I L: node I's links with local address on link network L are up
# (at least one per peer node).
links_up()
{
    link_list "$1" | jq -e --arg a "10.201.$2.$1:" '
        [.[] | select((.local | startswith($a)) and (.peer | test("^n[0-9]+$")))] as $l
        | ($l | length >= 2) and all($l[]; .state == "up")' >/dev/null
}

# About 7 s of writes at a bounded rate, so the cut falls inside them.
fio_job cut --size=16M --rate_iops=600 &
fio_pid=$!
sleep 1.5
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the link cut: the test proves nothing"
echo "cutting n1 link 1"
link_down 1 1
# Longer than the failure timeout: the link is declared down, traffic moves.
sleep $((2 * NDFS_TEST_FAILURE_MS / 1000 + 1))
kill -0 "$fio_pid" 2>/dev/null || echo "note: fio ended while link 1 was down"
link_up 1 1
echo "n1 link 1 back"
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$TESTDIR/cut.json" >&2; fail "fio failed across the link cut (status $rc)"; }
jq -e '.jobs[0].error == 0' "$TESTDIR/cut.json" >/dev/null || fail "fio reported an error"
pause=$(jq -r '[.jobs[0].write.clat_ns.max, .jobs[0].read.clat_ns.max] | max / 1e6' "$TESTDIR/cut.json")
echo "longest I/O pause across the link cut: ${pause} ms (fio clat max)"

wait_until "$NDFS_TEST_DEADLINE" links_up 1 1 || fail "link 1 not up again on n1: $(link_list 1)"
for i in 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" links_up "$i" 1 || fail "link 1 not up again on n$i: $(link_list "$i")"
done

# Link 2 down: everything goes over link 1 again.
link_down 1 2
on_cleanup "link_up 1 2"
before=$(link_bytes 1 1)
fio_job only-link1 --size=4M || fail "fio with only link 1 up failed"
after=$(link_bytes 1 1)
echo "link 1 carried $((after - before)) bytes during a 4 MiB write + verify"
[ $((after - before)) -ge $((4 * 1024 * 1024)) ] ||
    fail "link 1 carried $((after - before)) bytes, less than fio wrote: $(link_list 1)"
link_up 1 2
wait_until "$NDFS_TEST_DEADLINE" links_up 1 2 || fail "link 2 not up again on n1: $(link_list 1)"
converged 3 1 2 3 || fail "the cluster lost its agreement"
