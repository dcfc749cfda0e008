#!/usr/bin/env bash
# Malformed frames sent to a listening port (random bytes, a bad checksum, a
# huge length, an unknown version or type, data before authentication, UDP
# garbage) are dropped with the connection, logged with the address, and the
# cluster keeps working: same members, a change still succeeds.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq ss

start_cluster 3 2
epoch=$CLUSTER_EPOCH
n1_addr=$(node_addr 1 1)
"$PYTHON" "$(dirname "$0")/bad-frames.py" "${n1_addr%:*}" "${n1_addr##*:}" ||
    fail "ndfsd kept a connection that sent a malformed frame"
# Again on the second link, while the first round is in the logs.
n1_addr=$(node_addr 1 2)
"$PYTHON" "$(dirname "$0")/bad-frames.py" "${n1_addr%:*}" "${n1_addr##*:}" >/dev/null ||
    fail "ndfsd kept a connection that sent a malformed frame (link 2)"

grep -qE '127\.0\.0\.1' "$TESTDIR/n1.log" || fail "n1 did not log the dropped peers' address"
kill -0 "$(node_pid 1)" || fail "n1 died"
converged 3 1 2 3 || fail "the cluster lost its agreement"
[ "$CLUSTER_EPOCH" = "$epoch" ] || fail "epoch changed ($epoch -> $CLUSTER_EPOCH): a node was dropped"
adm_on 1 vdisk create b --size 1M --primary "n1:$TESTDIR/b.img" || fail "no change after the garbage"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show b || fail "n3 does not see b"
