#!/usr/bin/env bash
# ndfsadm link add / link remove while fio --verify runs. Three nodes in
# network namespaces with three link networks, started on two. Adding each
# node's address on network 3 makes a third link between every pair, up
# in link list; with networks 1 and 2 cut at n1, the cluster and the I/O
# of a vdisk mastered by n1 go on over link 3 alone (its byte counters
# grow). Removing n1's address on network 1 closes its listener, and the
# other links keep their index. Bad requests are refused with a clear
# message and change nothing. A restarted n1 listens on what the CCD
# holds (networks 2 and 3), not on its config's listen (1 and 2). Each
# command reports how long I/O was paused.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ip nsenter ss

netns_setup 3 3
start_cluster 3 2
adm_on 1 vdisk create c --size 64M --primary "n1:$TESTDIR/c.img" >/dev/null
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show c || fail "n3 does not see vdisk c"
MP=$TESTDIR/mnt3
MOUNT_WRAPPER=(nsenter --net="/run/netns/${NODE_NS[3]}")
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# listening I L: node I has a TCP listener on its network-L address.
listening()
{
    in_node "$1" ss -Hltn "src 10.201.$2.$1 and sport = :$CLUSTER_PORT" | grep -q .
}
# link_cmd I ARGS...: ndfsadm link ARGS on node I; checks the pause line.
link_cmd()
{
    local i=$1 out
    shift
    out=$(adm_on "$i" link "$@") || fail "ndfsadm link $* failed"
    echo "$out"
    grep -qE '^I/O paused [0-9]+ ms$' <<<"$out" || fail "link $*: no pause reported: $out"
}

# back-to-back verified runs of 16 MiB through the whole test
fio_loop_start io "$MP/c" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --size=16M
wait_written "$TESTDIR/c.img" "$(mtime_ns "$TESTDIR/c.img")" 20

# --- add a third link network ---
listening 1 3 && fail "n1 listens on network 3 before link add"
for i in 1 2 3; do
    out=$(link_cmd "$i" add "n$i" "$(node_addr "$i" 3)")
    echo "$out"
    grep -qx "link 2 of node n$i: $(node_addr "$i" 3) added" <<<"$out" ||
        fail "link add n$i: unexpected output: $out"
done
json=$(adm_on 1 --json node list)
jq -e --arg a "$(node_addr 2 3)" '.nodes[] | select(.name == "n2") | .addresses[2] == $a' \
    <<<"$json" >/dev/null || fail "n2's addresses in node list: $json"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" link_state "$i" 3 up ||
        fail "n$i's links on network 3 not up: $(link_list "$i")"
done
listening 1 3 || fail "n1 does not listen on network 3"
jq -e --arg a "$(node_addr 1 3)" '[.[] | select(.local == $a) | .index] | all(. == 2)' \
    <<<"$(link_list 1)" >/dev/null || fail "link 2 is not the one on network 3: $(link_list 1)"

# --- networks 1 and 2 cut at n1: link 3 carries everything ---
epoch=$(cluster_view 3 | cut -d' ' -f1)
before=$(link_bytes 1 3)
link_down 1 1
link_down 1 2
wait_until "$NDFS_TEST_DEADLINE" link_state 1 1 down || fail "n1's network-1 links not down: $(link_list 1)"
wait_until "$NDFS_TEST_DEADLINE" link_state 1 2 down || fail "n1's network-2 links not down: $(link_list 1)"
is_member 3 1 || fail "n1 is no member with links 1 and 2 down: $(adm_on 3 --json status)"
wait_until 10 adm_on 3 vdisk create d --size 1M --primary "n3:$TESTDIR/d.img" ||
    fail "no change with only link 3: $(adm_on 3 vdisk create d --size 1M --primary "n3:$TESTDIR/d.img" 2>&1)"
m=$(mtime_ns "$TESTDIR/c.img")
wait_written "$TESTDIR/c.img" "$m" 10
after=$(link_bytes 1 3)
[ "$((after - before))" -gt 1000000 ] ||
    fail "link 3 carried only $((after - before)) bytes with links 1 and 2 down"
echo "link 3 alone: $((after - before)) bytes; epoch $epoch -> $(cluster_view 3 | cut -d' ' -f1)"
fio_loop_check io
link_up 1 1
link_up 1 2
wait_until "$NDFS_TEST_DEADLINE" link_state 1 1 up || fail "n1's network-1 links not up again"

# --- refusals change nothing ---
expect_error 1 "already" adm_on 2 link add n1 "$(node_addr 1 3)"
expect_error 1 "link address of node n1" adm_on 2 link add n2 "$(node_addr 1 3)"
expect_error 1 "cannot listen on 10.201.9.2:$CLUSTER_PORT" adm_on 3 link add n2 "10.201.9.2:$CLUSTER_PORT"
expect_error 1 "not a link address of node n2" adm_on 1 link remove n2 "$(node_addr 1 1)"
expect_error 1 "node .n9. is not" adm_on 1 link add n9 "10.201.3.9:$CLUSTER_PORT"
expect_error 2 "not an IPv4 address" adm_on 1 link add n1 "nonsense"
listening 2 3 || fail "n2 stopped listening on network 3 after refused requests"

# --- remove n1's address on network 1 ---
json=$(adm_on 3 --json link remove n1 "$(node_addr 1 1)") || fail "link remove failed"
jq -e '.index == 0 and .removed and (.paused_ms | type == "number")' <<<"$json" >/dev/null ||
    fail "link remove --json: $json"
wait_until "$NDFS_TEST_DEADLINE" eval '! listening 1 1' || fail "n1 still listens on network 1"
wait_until "$NDFS_TEST_DEADLINE" eval "link_list 1 | jq -e '[.[] | select(.index == 0 and (.peer | test(\"^n[0-9]+\$\")))] | length == 0' >/dev/null" ||
    fail "n1 still has a link 0: $(link_list 1)"
link_state 1 3 up || fail "n1's network-3 links went down: $(link_list 1)"
json=$(adm_on 2 --json node list)
jq -e --arg b "$(node_addr 1 2)" --arg c "$(node_addr 1 3)" \
    '.nodes[] | select(.name == "n1") | .addresses == ["", $b, $c]' <<<"$json" >/dev/null ||
    fail "n1's addresses after remove: $json"
adm_on 2 node list | grep -qE "^n1 .* -,$(node_addr 1 2),$(node_addr 1 3)\$" ||
    fail "node list does not show n1's empty link 0: $(adm_on 2 node list)"
# n3 down to one address: its last cannot go
link_cmd 1 remove n3 "$(node_addr 3 1)" >/dev/null
link_cmd 1 remove n3 "$(node_addr 3 2)" >/dev/null
expect_error 1 "last link address of node n3" adm_on 1 link remove n3 "$(node_addr 3 3)"
wait_until "$NDFS_TEST_DEADLINE" link_state 3 3 up || fail "n3's network-3 links not up: $(link_list 3)"

# --- a restarted n1 listens on the CCD's addresses, not its config's ---
stop_ndfsd "${NODE_CONF[1]}"
restart_node 1
wait_converged 3 1 2 3
wait_until "$NDFS_TEST_DEADLINE" listening 1 3 || fail "restarted n1 does not listen on network 3"
wait_until "$NDFS_TEST_DEADLINE" eval '! listening 1 1' || fail "restarted n1 listens on network 1"
wait_until "$NDFS_TEST_DEADLINE" link_state 1 3 up || fail "restarted n1's network-3 links not up"

m=$(mtime_ns "$TESTDIR/c.img")
wait_written "$TESTDIR/c.img" "$m" 20
fio_loop_stop io 60
echo "fio: $FIO_RUNS verified runs, longest completion $FIO_PAUSE_MS ms"
echo "ok"
