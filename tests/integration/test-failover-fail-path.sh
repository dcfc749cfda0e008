#!/usr/bin/env bash
# A vdisk's path fails. 1) ndfsadm vdisk fail-path during fio: no I/O
# error, n2 masters the vdisk, n1's path is listed failed; restore-path,
# failback, and the refusals (a node with no path; failback while the
# primary's path is failed). 2) A real disk failure: n1's path is a file
# served by nbdkit (error filter) through nbdfuse, n2's the image itself;
# mid-fio every read and write of n1's path fails with EIO: n1's master
# NACKs, the path is marked failed, the requests go to n2, fio sees no
# error. (Device-mapper's error target would do as well but is not
# available in every container; the nbd part is skipped without nbdkit.)
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

failed_list()
{
    vdisk_field "$1" "$2" '.failed // [] | sort | join(",")'
}

failed_is()
{
    local name=$1 want=$2 i
    shift 2
    for i in "$@"; do
        [ "$(failed_list "$i" "$name")" = "$want" ] || return 1
    done
}

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# --- 1: fail-path by hand ----------------------------------------------------
before=$(mtime_ns "$TESTDIR/v.img")
fio_start failpath "$MP/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=16M --rate_iops=,1000
fio=$FIO_PID
wait_written "$TESTDIR/v.img" "$before" 20
sleep 1 # about a second of I/O first
kill -0 "$fio" 2>/dev/null || fail "fio ended before fail-path: the test proves nothing"
t0=$(ms_now)
adm_on 3 vdisk fail-path v n1 >/dev/null || fail "vdisk fail-path v n1 failed"
wait_master v n2 10 1 2 3
wait_until 10 failed_is v n1 1 2 3 || fail "n1's path not listed failed: $(vdisk_json 3 v | jq -c .)"
echo "fail-path n1: n2 masters v after $(($(ms_now) - t0)) ms"
fio_finish failpath "$fio" 60
echo "pause across fail-path: ${FIO_PAUSE_MS} ms"

# Failback refused while the primary's path is failed.
expect_error 1 . adm_on 3 vdisk failback v
# A node that is neither path.
expect_error 1 . adm_on 3 vdisk fail-path v n3
expect_error 1 . adm_on 3 vdisk restore-path v n3
# Restore: the path is good again, the vdisk stays on n2 (its path is good).
adm_on 2 vdisk restore-path v n1 >/dev/null || fail "vdisk restore-path v n1 failed"
wait_until 10 failed_is v "" 1 2 3 || fail "n1's path still failed: $(vdisk_json 3 v | jq -c .)"
masters_are v n2 1 2 3 || fail "restore-path moved the master: $(vdisk_json 3 v | jq -c .)"
adm_on 1 vdisk failback v >/dev/null || fail "vdisk failback v failed"
wait_master v n1 10 1 2 3
# The secondary's path failing does not move the master; both failed: no
# master, I/O waits; one restored: it masters.
adm_on 3 vdisk fail-path v n2 >/dev/null || fail "vdisk fail-path v n2 failed"
wait_until 10 failed_is v n2 1 2 3 || fail "n2's path not listed failed: $(vdisk_json 3 v | jq -c .)"
masters_are v n1 1 2 3 || fail "failing the secondary's path moved the master: $(vdisk_json 3 v | jq -c .)"
adm_on 3 vdisk restore-path v n2 >/dev/null || fail "vdisk restore-path v n2 failed"
wait_until 10 failed_is v "" 1 2 3 || fail "n2's path still failed: $(vdisk_json 3 v | jq -c .)"
fio_start after "$MP/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --offset=16M --size=4M
fio_finish after "$FIO_PID" 60

# --- 2: a disk that fails: EIO from n1's path ----------------------------
if ! have_nbd; then
    echo "SKIP part 2 (a real disk failure): nbdkit with the error filter or nbdfuse not installed"
    exit 0
fi
truncate -s 64M "$TESTDIR/d.img"
TRIGGER=$TESTDIR/eio
nbd_disk d "$TESTDIR/d.img" --filter=error error=EIO error-rate=100% error-file="$TRIGGER"
adm_on 1 vdisk create d --size 64M --primary "n1:$NBD_DISK" --secondary "n2:$TESTDIR/d.img" \
    >/dev/null || fail "vdisk create d (n1 through nbd) failed"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show d || fail "n$i does not see vdisk d"
done
wait_master d n1 10 1 2 3

before=$(mtime_ns "$TESTDIR/d.img")
fio_start diskfail "$MP/d" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=0 --size=16M --rate_iops=,1000
fio=$FIO_PID
wait_written "$TESTDIR/d.img" "$before" 20
sleep 1
kill -0 "$fio" 2>/dev/null || fail "fio ended before the disk failure: the test proves nothing"
off=$(log_size 1)
echo "n1's disk fails (EIO on every request)"
touch "$TRIGGER"
t0=$(ms_now)
wait_master d n2 20 1 2 3
wait_until 10 failed_is d n1 1 2 3 || fail "n1's path of d not listed failed: $(vdisk_json 3 d | jq -c .)"
echo "n2 masters d $(($(ms_now) - t0)) ms after the disk failed"
fio_finish diskfail "$fio" 60
echo "pause across the disk failure: ${FIO_PAUSE_MS} ms"
log_since 1 "$off" | grep -iE 'EIO|Input/output|fail' | head -n 5
# The data fio wrote and verified is in the image (n2's path).
rm -f "$TRIGGER"
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done

# --- 3: a disk without a secondary that fails: the application gets EIO --
# There is no other path to fail over to: the error reaches the application
# as from a local disk (no endless wait), the path is not marked failed, and
# I/O works again once the disk does.
truncate -s 16M "$TESTDIR/s.img"
STRIGGER=$TESTDIR/seio
nbd_disk s "$TESTDIR/s.img" --filter=error error=EIO error-rate=100% error-file="$STRIGGER"
adm_on 1 vdisk create s --size 16M --primary "n1:$NBD_DISK" >/dev/null ||
    fail "vdisk create s (n1 through nbd, no secondary) failed"
wait_until "$NDFS_TEST_DEADLINE" test -e "$MP/s" || fail "n3's mount does not show s"
dd if=/dev/zero of="$MP/s" bs=4k count=16 oflag=direct conv=notrunc status=none ||
    fail "a write to s failed before its disk did"
touch "$STRIGGER"
t0=$(ms_now)
rc=0
timeout 20 dd if=/dev/zero of="$MP/s" bs=4k count=1 oflag=direct conv=notrunc status=none \
    2>"$TESTDIR/s.dd.err" || rc=$?
[ "$rc" -ne 0 ] || fail "a write to s succeeded while its only disk fails"
[ "$rc" -ne 124 ] || fail "a write to s still waits after 20 s: it should fail with EIO"
grep -q "Input/output error" "$TESTDIR/s.dd.err" || fail "not EIO: $(cat "$TESTDIR/s.dd.err")"
echo "a write to the failing disk without a secondary failed with EIO in $(($(ms_now) - t0)) ms"
[ "$(failed_list 3 s)" = "" ] || fail "the only path of s was marked failed: $(vdisk_json 3 s | jq -c .)"
rm -f "$STRIGGER"
dd if=/dev/zero of="$MP/s" bs=4k count=16 oflag=direct conv=notrunc status=none ||
    fail "a write to s fails after its disk recovered"
