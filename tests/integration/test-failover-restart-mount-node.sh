#!/usr/bin/env bash
# The ndfsd of the node that hosts the mount (n3) is restarted during fio,
# twice: kill -9 then SIGTERM. The mount reconnects, refetches the mapping
# and replays what was pending: fio exits 0 and its verify passes.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# written_or_done FILE MTIME PID: FILE was written since MTIME, or PID ended.
written_or_done()
{
    [ "$(mtime_ns "$1")" != "$2" ] || ! kill -0 "$3" 2>/dev/null
}

before=$(mtime_ns "$TESTDIR/v.img")
# About 15 s of writes (48 MiB at 800 writes/s).
fio_start restart "$MP/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=48M --rate_iops=,800
fio=$FIO_PID
wait_written "$TESTDIR/v.img" "$before" 20
sleep 1 # about a second of I/O first

for how in KILL TERM; do
    kill -0 "$fio" 2>/dev/null || fail "fio ended before the SIG$how restart: the test proves nothing"
    echo "SIG$how n3's ndfsd (the mount's node)"
    t0=$(ms_now)
    if [ "$how" = KILL ]; then
        kill_node 3
    else
        stop_ndfsd "${NODE_CONF[3]}"
    fi
    restart_node 3
    wait_converged 3 1 2 3
    echo "n3 back after $(($(ms_now) - t0)) ms"
    # The mount writes again (through n1) after the restart, unless fio
    # finished meanwhile (after a pause fio catches up with its rate at full
    # speed): its exit status and verify are checked below either way.
    m=$(mtime_ns "$TESTDIR/v.img")
    wait_until 20 written_or_done "$TESTDIR/v.img" "$m" "$fio" ||
        fail "fio runs but nothing wrote to v.img within 20 s of n3's return"
    if kill -0 "$fio" 2>/dev/null; then
        echo "I/O flows again $(($(ms_now) - t0)) ms after the SIG$how"
    else
        echo "fio finished its writes by $(($(ms_now) - t0)) ms after the SIG$how"
    fi
done
fio_finish restart "$fio" 60
echo "pause across the restarts of the mount's ndfsd: ${FIO_PAUSE_MS} ms"
# Not a failure (a loaded machine may stall a node past its failure
# timeout), but worth seeing: a restart of n3 alone should not move it.
masters_are v n1 1 2 3 || echo "note: the vdisk left n1: $(vdisk_json 3 v | jq -c .)"
# The mount still works for new opens and I/O.
fio_start after "$MP/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --offset=32M --size=4M
fio_finish after "$FIO_PID" 60
wait_io_idle 3 v
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
