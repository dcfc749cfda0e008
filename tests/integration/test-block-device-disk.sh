#!/usr/bin/env bash
# A vdisk whose disk is a block device (as an LVM logical volume or an md
# array would be): a loop device over a file in $TESTDIR, used as a
# dual-ported disk (primary n1:/dev/loopX, secondary n2:/dev/loopX).
# A vdisk bigger than the device is refused, on its primary and on its
# secondary, when created from the node itself or from another; so is a
# resize past the device's end. The vdisk as big as the device is shown
# with that size on every node and in the mount on n3. fio direct=1
# --verify=crc32c --verify_fatal=1 writes to it through n3; n1's ndfsd is
# killed mid-run, n2 takes over, fio exits 0 with its verify passing.
# n1 comes back, failback moves the vdisk home, I/O works there, and the
# vdisk's bytes are the block device's. The device grows (as an LV after
# lvextend): a resize to its new size works, and so does I/O there.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_loop
requires_cmd fio jq ss losetup blockdev cmp

# The disks: loop devices (real block devices), detached at exit.
truncate -s 64M "$TESTDIR/disk.img"
attach_loop "$TESTDIR/disk.img"
DEV=$LOOP_DEV
truncate -s 32M "$TESTDIR/small.img"
attach_loop "$TESTDIR/small.img"
SMALL=$LOOP_DEV
[ -b "$DEV" ] && [ -b "$SMALL" ] || fail "$DEV or $SMALL is not a block device"
DEV_SIZE=$(blockdev --getsize64 "$DEV")
[ "$DEV_SIZE" -eq $((64 << 20)) ] || fail "$DEV holds $DEV_SIZE bytes, expected 64 MiB"

start_cluster 3 2

# Bigger than the device: refused with what it holds and what is needed,
# whether the node checking the device is the one asked or another.
for i in 1 3; do
    expect_error 1 "$DEV holds 64M, vdisk \"big\" needs 65M" \
        adm_on "$i" vdisk create big --size 65M --primary "n1:$DEV"
    expect_error 1 "$DEV holds 64M, vdisk \"big\" needs 65M" \
        adm_on "$i" vdisk create big --size 65M --primary "n1:$DEV" --secondary "n2:$DEV"
done
# The secondary's device is checked too: n2's is smaller.
expect_error 1 "$SMALL holds 32M, vdisk \"big\" needs 64M" \
    adm_on 3 vdisk create big --size 64M --primary "n1:$DEV" --secondary "n2:$SMALL"
for i in 1 2 3; do
    if adm_on "$i" vdisk show big >/dev/null 2>&1; then
        fail "n$i shows vdisk big, which was refused"
    fi
done

# As big as the device: created, with the device's size everywhere.
adm_on 3 vdisk create v --size "$DEV_SIZE" --primary "n1:$DEV" --secondary "n2:$DEV" >/dev/null ||
    fail "vdisk create v --size $DEV_SIZE --primary n1:$DEV --secondary n2:$DEV failed"
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show v || fail "n$i does not see vdisk v"
    s=$(vdisk_field "$i" v .size) || fail "n$i: vdisk show v failed"
    [ "$s" -eq "$DEV_SIZE" ] || fail "n$i: vdisk v has size $s, expected $DEV_SIZE"
    p=$(vdisk_field "$i" v .primary) && [ "$p" = "n1:$DEV" ] || fail "n$i: primary is '$p', expected n1:$DEV"
    p=$(vdisk_field "$i" v .secondary) && [ "$p" = "n2:$DEV" ] || fail "n$i: secondary is '$p', expected n2:$DEV"
done
adm_on 3 vdisk show v | grep -qE '^size: +64M' || fail "vdisk show v (text) does not say 64M: $(adm_on 3 vdisk show v)"
# A resize past the device's end is refused; the size stays.
expect_error 1 "$DEV holds 64M, vdisk \"v\" needs 65M" adm_on 3 vdisk resize v 65M
[ "$(vdisk_field 1 v .size)" -eq "$DEV_SIZE" ] || fail "a refused resize changed the size"
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3

MP3=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP3"
[ "$(stat -c %s "$MP3/v")" -eq "$DEV_SIZE" ] || fail "$MP3/v is $(stat -c %s "$MP3/v") bytes, expected $DEV_SIZE"
cd "$TESTDIR"

# The loop device writes through to its file: its mtime shows I/O.
before=$(mtime_ns "$TESTDIR/disk.img")
# About 5 s of writes (16 MiB at 800 writes/s), up to the device's end.
fio_start kill3 "$MP3/v" --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --offset=48M --size=16M --rate_iops=,800
fio3=$FIO_PID
wait_written "$TESTDIR/disk.img" "$before" 20
sleep 1 # about a second of I/O before the kill
kill -0 "$fio3" 2>/dev/null || fail "fio on n3 ended before the kill: the test proves nothing"

echo "kill -9 n1 (the master, primary path n1:$DEV)"
kill_node 1
t0=$(ms_now)
wait_master v n2 30 2 3
echo "n2 masters v (secondary path n2:$DEV) $(($(ms_now) - t0)) ms after the kill"
fio_finish kill3 "$fio3" 60
echo "pause seen by the application on n3 across kill -9 of the master: ${FIO_PAUSE_MS} ms"
[ "$FIO_PAUSE_MS" -gt 0 ] || fail "no pause measured"

# n1 comes back: the vdisk stays on n2 until failback.
restart_node 1
wait_converged 3 1 2 3
masters_are v n2 1 2 3 || fail "the vdisk left n2 when n1 came back: $(vdisk_json 1 v | jq -c .)"
wait_io_idle 3 v
adm_on 3 vdisk failback v >/dev/null || fail "vdisk failback v failed"
wait_master v n1 10 1 2 3
fio_start after3 "$MP3/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --offset=0 \
    --size=8M
fio_finish after3 "$FIO_PID" 60
wait_io_idle 3 v

# The vdisk is the block device, byte for byte.
cmp "$MP3/v" "$DEV" || fail "$MP3/v and $DEV differ"
# The refused creates left nothing behind; the vdisk is still its size.
[ "$(adm_on 2 --json vdisk list | jq '[.vdisks? // . | .[] | .name] | sort | join(" ")' -r)" = v ] ||
    fail "vdisk list is not just v: $(adm_on 2 --json vdisk list | jq -c .)"
[ "$(vdisk_field 2 v .size)" -eq "$DEV_SIZE" ] || fail "vdisk v changed size"

# The device grows (as after lvextend): the vdisk grows to it, and the new
# part works.
truncate -s 80M "$TESTDIR/disk.img"
losetup -c "$DEV" || fail "losetup -c $DEV failed"
[ "$(blockdev --getsize64 "$DEV")" -eq $((80 << 20)) ] || fail "$DEV did not grow to 80 MiB"
expect_error 1 "$DEV holds 80M, vdisk \"v\" needs 81M" adm_on 2 vdisk resize v 81M
adm_on 2 vdisk resize v 80M >/dev/null || fail "vdisk resize v 80M failed once $DEV holds 80 MiB"
for i in 1 2 3; do
    wait_until 10 eval "[ \"\$(vdisk_field $i v .size)\" = $((80 << 20)) ]" ||
        fail "n$i: vdisk v is $(vdisk_field "$i" v .size) bytes after the resize, expected 80 MiB"
done
wait_until 10 eval "[ \"\$(stat -c %s '$MP3/v')\" -eq $((80 << 20)) ]" ||
    fail "$MP3/v is $(stat -c %s "$MP3/v") bytes after the resize, expected 80 MiB"
fio_start grown3 "$MP3/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k --offset=64M \
    --size=16M
fio_finish grown3 "$FIO_PID" 60
wait_io_idle 3 v
cmp "$MP3/v" "$DEV" || fail "$MP3/v and $DEV differ after the resize"
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
