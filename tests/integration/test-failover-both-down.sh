#!/usr/bin/env bash
# Both masters of a vdisk down. 1) n1 and n2 are killed during fio on n3:
# the I/O blocks without an error, and n3's vdisk show says why and how
# many requests wait; n2 restarted, it takes the vdisk over and fio
# finishes with its verify passing. 2) With [vdisk] io-timeout = 2s on n3,
# a write with no master reachable fails with EIO after about 2 s, not
# before.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss dd

IO_TIMEOUT_MS=2000
BLOCKED_S=3

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# --- 1: I/O blocks, and continues when a master returns ---------------------
before=$(mtime_ns "$TESTDIR/v.img")
fio_start both "$MP/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=8M --rate_iops=,800
fio=$FIO_PID
wait_written "$TESTDIR/v.img" "$before" 20
sleep 0.5 # some I/O first
kill -0 "$fio" 2>/dev/null || fail "fio ended before the kills: the test proves nothing"
echo "kill -9 n1 and n2"
kill -KILL "$(node_pid 1)" "$(node_pid 2)"
reap_pid "$(node_pid 1)"
reap_pid "$(node_pid 2)"
t0=$(ms_now)
if ! wait_until 10 io_blocked 3 v; then
    vdisk_json 3 v >&2
    fail "n3 does not report blocked I/O on v within 10 s of losing both masters"
fi
j=$(vdisk_json 3 v)
echo "n3: blocked '$(jq -r .blocked <<<"$j")', $(jq -r .pending <<<"$j") pending, $(jq -r '.in_flight // ."in-flight"' <<<"$j") in flight, oldest $(jq -r '.waiting_ms // ."waiting-ms"' <<<"$j") ms"
# It stays blocked, without an error, for a while.
left=$((BLOCKED_S * 1000 - ($(ms_now) - t0)))
[ "$left" -le 0 ] || sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
kill -0 "$fio" 2>/dev/null || { fio_finish both "$fio" 1; fail "fio ended while no master was up"; }
io_blocked 3 v || fail "n3 no longer reports blocked I/O while no master is up: $(vdisk_json 3 v | jq -c .)"
w=$(vdisk_field 3 v '.waiting_ms // ."waiting-ms"')
[ "$w" -ge $((BLOCKED_S * 1000 / 2)) ] ||
    fail "n3 says the oldest request waits ${w} ms after ${BLOCKED_S} s with no master"

echo "restart n2"
t1=$(ms_now)
restart_node 2
wait_master v n2 30 2 3
echo "n2 masters v $(($(ms_now) - t1)) ms after its restart"
fio_finish both "$fio" 60
echo "fio blocked for ${FIO_PAUSE_MS} ms at most, and finished without an error"
wait_until 10 eval "! io_blocked 3 v" || fail "n3 still reports blocked I/O: $(vdisk_json 3 v | jq -c .)"
restart_node 1
wait_converged 3 1 2 3

# --- 2: io-timeout ----------------------------------------------------------
# n3 restarted with [vdisk] io-timeout = 2s, mounted again.
unmount_ndfs "$MP" "$MOUNT_PID"
stop_ndfsd "${NODE_CONF[3]}"
printf '[vdisk]\nio-timeout = 2s\n' >>"${NODE_CONF[3]}"
restart_node 3
wait_converged 3 1 2 3
MP=$TESTDIR/mnt3b
mount_ndfs "${NODE_SOCK[3]}" "$MP"
dd if=/dev/zero of="$MP/v" bs=4k count=1 seek=5000 oflag=direct conv=notrunc status=none ||
    fail "a write with both masters up failed"
echo "kill -9 n1 and n2 again"
kill -KILL "$(node_pid 1)" "$(node_pid 2)"
reap_pid "$(node_pid 1)"
reap_pid "$(node_pid 2)"
# One O_DIRECT write of 4 KiB, timed around the write(2) alone (a close
# flushes, and waits its own io-timeout).
out=$("$PYTHON" - "$MP/v" <<'PY'
import errno, mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
t = time.monotonic()
try:
    os.pwritev(fd, [buf], 5001 * 4096)
    err = "OK"
except OSError as e:
    err = errno.errorcode.get(e.errno, str(e.errno))
took = int((time.monotonic() - t) * 1000)
try:
    os.close(fd)
except OSError:
    pass
print(err, took)
PY
) || fail "the timed write did not run: $out"
read -r err took <<<"$out"
echo "a write with no master: $err after ${took} ms (io-timeout ${IO_TIMEOUT_MS} ms)"
[ "$err" = EIO ] || fail "the write with no master reachable ended with $err after ${took} ms, expected EIO"
[ "$took" -ge $((IO_TIMEOUT_MS - 100)) ] || fail "the write failed after ${took} ms, before the io-timeout (${IO_TIMEOUT_MS} ms)"
[ "$took" -le $((IO_TIMEOUT_MS + 3000)) ] || fail "the write failed only after ${took} ms (io-timeout ${IO_TIMEOUT_MS} ms)"
