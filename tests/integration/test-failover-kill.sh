#!/usr/bin/env bash
# kill -9 a vdisk's master during fio: a vdisk with primary n1:FILE and
# secondary n2:FILE (one file: a dual-ported disk), mounted on n3 and n1.
# fio direct=1 --verify=crc32c --verify_fatal=1 writes through both mounts
# (disjoint regions); n1's ndfsd is killed mid-run. The leader runs the
# fence command with n1 (it fails once: the takeover retries it), n2 takes
# over, n3's fio exits 0 with its verify passing (no acknowledged write
# lost), and its longest completion latency is the pause. n1's mount waits
# for its ndfsd: restarted, n1 rejoins, the vdisk stays on n2, n1's fio
# finishes and verifies too. Then failback moves the vdisk home, and I/O
# works there.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

# The fence command: records each call; the first one fails.
FENCE=$TESTDIR/fence.sh
cat >"$FENCE" <<EOF
#!/bin/sh
echo "\$1" >>'$TESTDIR/fence.log'
if [ -e '$TESTDIR/fence-fail-once' ]; then
    rm -f '$TESTDIR/fence-fail-once'
    exit 1
fi
exit 0
EOF
chmod 0755 "$FENCE"
touch "$TESTDIR/fence-fail-once"
CLUSTER_EXTRA="[membership]
fence-command = $FENCE"

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP3=$TESTDIR/mnt3
MP1=$TESTDIR/mnt1
mount_ndfs "${NODE_SOCK[3]}" "$MP3"
mount_ndfs "${NODE_SOCK[1]}" "$MP1"
cd "$TESTDIR"

before=$(mtime_ns "$TESTDIR/v.img")
# About 5 s of writes on n3 (16 MiB at 800 writes/s), 2.5 s on n1.
fio_start kill3 "$MP3/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=16M --rate_iops=,800
fio3=$FIO_PID
fio_start kill1 "$MP1/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=32M --size=8M --rate_iops=,800
fio1=$FIO_PID
wait_written "$TESTDIR/v.img" "$before" 20
sleep 1 # about a second of I/O before the kill
kill -0 "$fio3" 2>/dev/null || fail "fio on n3 ended before the kill: the test proves nothing"

echo "kill -9 n1 (the master)"
kill_node 1
t0=$(ms_now)
wait_master v n2 30 2 3
echo "n2 masters v $(($(ms_now) - t0)) ms after the kill"
fio_finish kill3 "$fio3" 60
echo "pause seen by the application on n3 across kill -9 of the master: ${FIO_PAUSE_MS} ms"
[ "$FIO_PAUSE_MS" -gt 0 ] || fail "no pause measured"

# The fence command ran with n1, failed once, and was retried.
[ -f "$TESTDIR/fence.log" ] || fail "the fence command never ran"
grep -qvx n1 "$TESTDIR/fence.log" && fail "the fence command ran for another node: $(cat "$TESTDIR/fence.log")"
[ "$(grep -cx n1 "$TESTDIR/fence.log")" -ge 2 ] ||
    fail "the fence command was not retried after failing: $(cat "$TESTDIR/fence.log")"
[ ! -e "$TESTDIR/fence-fail-once" ] || fail "the fence command's failure was not seen"

# n1 comes back: the vdisk stays on n2; n1's mount (which waited for its
# ndfsd) finishes its fio against n2.
restart_node 1
wait_converged 3 1 2 3
masters_are v n2 1 2 3 || fail "the vdisk left n2 when n1 came back: $(vdisk_json 1 v | jq -c .)"
fio_finish kill1 "$fio1" 60
echo "n1's mount survived its ndfsd's kill: longest completion ${FIO_PAUSE_MS} ms"

for i in 1 3; do
    wait_io_idle "$i" v
done

# Failback under no I/O: the primary masters it again, I/O goes there.
adm_on 3 vdisk failback v >/dev/null || fail "vdisk failback v failed"
wait_master v n1 10 1 2 3
fio_start after3 "$MP3/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --offset=16M \
    --size=4M
fio_finish after3 "$FIO_PID" 60
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
