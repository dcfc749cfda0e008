#!/usr/bin/env bash
# SIGSTOP a vdisk's master for ~5 s during fio (its TCP connections stay
# open, its heartbeats stop): n2 takes over (no fence command: the leader
# waits until n1's lease has certainly run out), and fio on n3 exits 0 with
# its verify passing. The thawed master must write nothing: while n1 is
# frozen it holds requests of pattern A (fio's writes, sent to it before the
# freeze); after the takeover the whole region is overwritten with pattern
# B through n3's mount; then n1 is continued, rejoins, and logs that it
# refused requests for its lease. The region of the disk file is still all
# B: one stale write of A would show.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss cmp

FREEZE_S=5
start_cluster 3 2
# n1's path is the image through nbd with 20 ms per write (nbdkit's delay
# filter), n2's the image itself: n1's disk queue is never empty, so that
# it holds requests queued for its disk when it stops.
truncate -s 64M "$TESTDIR/v.img"
have_nbd || skip "nbdkit (delay filter) or nbdfuse not installed"
nbd_disk v "$TESTDIR/v.img" --filter=delay delay-write=20ms
adm_on 1 vdisk create v --size 64M --primary "n1:$NBD_DISK" --secondary "n2:$TESTDIR/v.img" \
    >/dev/null || fail "vdisk create v failed"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show v || fail "n$i does not see vdisk v"
done
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# Pattern A: fio's writes, throttled, over the first 4 MiB (the pause is
# measured there, and its verify proves nothing acknowledged was lost) ...
before=$(mtime_ns "$TESTDIR/v.img")
fio_start stopA "$MP/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,400
fio=$FIO_PID
# ... and a load over the next 8 MiB, flat out at queue depth 32, so that n1
# has requests queued for its disk when it stops, and more sent to it
# before anyone notices (random data, no verify: it stops on SIGINT).
fio --name=loadA --filename="$MP/v" --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite \
    --bs=16k --offset=8M --size=8M --time_based --runtime=600 --output-format=json \
    --output="$TESTDIR/loadA.json" 2>"$TESTDIR/loadA.err" &
load=$!
on_cleanup "kill_fio $load"
wait_written "$TESTDIR/v.img" "$before" 20
sleep 1 # about a second of I/O before the freeze
kill -0 "$fio" 2>/dev/null || fail "fio ended before the freeze: the test proves nothing"

echo "SIGSTOP n1 (the master)"
freeze_node 1
on_cleanup "thaw_node 1 2>/dev/null"
t0=$(ms_now)
wait_master v n2 30 2 3
echo "n2 masters v $(($(ms_now) - t0)) ms after the freeze"
fio_finish stopA "$fio" 60
echo "pause seen by the application across SIGSTOP of the master: ${FIO_PAUSE_MS} ms"
kill -INT "$load"
rc=0
wait "$load" || rc=$?
# fio stopped by SIGINT may exit 128; an I/O error shows in its report.
[ "$rc" -eq 0 ] || [ "$rc" -eq 128 ] || { cat "$TESTDIR/loadA.err" >&2; fail "the load fio failed (status $rc)"; }
sed -n '/^{/,$p' "$TESTDIR/loadA.json" | jq -e '[.jobs[].error] | all(. == 0)' >/dev/null ||
    { cat "$TESTDIR/loadA.err" "$TESTDIR/loadA.json" >&2; fail "the load fio reported an I/O error"; }
grep -h 'sent again' "$MP.log" || true
wait_io_idle 3 v

# Pattern B over the whole region, acknowledged through n2.
head -c 16M /dev/urandom >"$TESTDIR/B"
dd if="$TESTDIR/B" of="$MP/v" bs=1M count=16 oflag=direct conv=notrunc status=none ||
    fail "writing pattern B through n3's mount failed"
cmp <(dd if="$TESTDIR/v.img" bs=1M count=16 iflag=direct status=none) "$TESTDIR/B" ||
    fail "the disk file does not hold pattern B right after writing it"

# Keep n1 frozen for FREEZE_S in all (the scenario: a master stopped for
# seconds, far past its lease).
left=$((FREEZE_S * 1000 - ($(ms_now) - t0)))
[ "$left" -le 0 ] || sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
off=$(log_size 1)
echo "SIGCONT n1 after $(($(ms_now) - t0)) ms"
thaw_node 1
wait_converged 3 1 2 3
echo "n1 is a member again $(($(ms_now) - t0)) ms after the freeze"
masters_are v n2 1 2 3 || fail "the master moved after the thaw: $(vdisk_json 1 v | jq -c .)"

# It says that it refused requests for its lease (once it has, whatever
# it had queued is through).
refused=1
wait_until 10 eval "log_since 1 $off | grep -qiE 'refus.*lease|lease.*refus'" || refused=0

# No stale write: the region is still all B, read from the disk file.
if ! cmp <(dd if="$TESTDIR/v.img" bs=1M count=16 iflag=direct status=none) "$TESTDIR/B" >/dev/null; then
    n=$(cmp -l <(dd if="$TESTDIR/v.img" bs=1M count=16 iflag=direct status=none) "$TESTDIR/B" |
        awk '{ print int(($1 - 1) / 4096) }' | sort -u | wc -l)
    fail "STALE WRITE: $n 4 KiB blocks of the region no longer hold pattern B after n1 was continued"
fi
if [ "$refused" = 0 ]; then
    log_since 1 "$off" >&2
    fail "n1's log does not mention refusing requests for its lease after the thaw"
fi
log_since 1 "$off" | grep -iE 'refus.*lease|lease.*refus' | head -n 5
# And through the mount (n2 reads the same file).
cmp <(dd if="$MP/v" bs=1M count=16 iflag=direct status=none) "$TESTDIR/B" ||
    fail "n3's mount reads something else than pattern B"
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
