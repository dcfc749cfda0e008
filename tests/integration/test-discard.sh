#!/usr/bin/env bash
# Discard and zeroing (fallocate PUNCH_HOLE / ZERO_RANGE, what a loop
# device sends for blkdiscard and fstrim) on a vdisk whose disk is on
# another node go over the IO channel to its master: the range reads zeros
# afterwards, a punched range is deallocated in the master's file, a zeroed
# one stays allocated, the rest keeps its data, nothing passes the vdisk's
# end. The same on the master's own node (local path), and through a loop
# device's blkdiscard.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_loop
requires_cmd fallocate blkdiscard cmp

start_cluster 2 2
IMG=$TESTDIR/d.img
adm_on 1 vdisk create d --size 16M --primary "n1:$IMG" >/dev/null
wait_until "$NDFS_TEST_DEADLINE" adm_on 2 vdisk show d || fail "n2 does not see vdisk d"
MP2=$TESTDIR/mnt2
mount_ndfs "${NODE_SOCK[2]}" "$MP2"
MP1=$TESTDIR/mnt1
mount_ndfs "${NODE_SOCK[1]}" "$MP1"

# Every byte 0xab, written through n2.
head -c $((16 << 20)) /dev/zero | tr '\0' '\253' |
    dd of="$MP2/d" bs=1M iflag=fullblock oflag=direct status=none || fail "filling d through n2 failed"
sync "$IMG"
blocks_full=$(stat -c %b "$IMG")

# is_zero FILE MIB-OFFSET MIB-COUNT / is_ab ...: the range holds zeros / 0xab.
is_zero()
{
    cmp -s <(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none) \
        <(head -c $(($3 << 20)) /dev/zero)
}
is_ab()
{
    cmp -s <(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none) \
        <(head -c $(($3 << 20)) /dev/zero | tr '\0' '\253')
}

# remote punch hole: 1M..3M
fallocate --punch-hole --keep-size --offset 1M --length 2M "$MP2/d" ||
    fail "punch hole through n2 failed"
is_zero "$MP2/d" 1 2 || fail "the punched range does not read zeros through n2"
is_zero "$IMG" 1 2 || fail "the punched range is not zero in n1's file"
is_ab "$MP2/d" 0 1 && is_ab "$MP2/d" 3 13 || fail "data outside the punched range changed"
blocks_punched=$(stat -c %b "$IMG")
[ "$blocks_punched" -lt "$blocks_full" ] ||
    fail "n1's file did not give blocks back ($blocks_full -> $blocks_punched 512-byte blocks)"
echo "punch hole through n2: $blocks_full -> $blocks_punched blocks in n1's file"

# remote zero range: 4M..5M stays allocated
fallocate --zero-range --keep-size --offset 4M --length 1M "$MP2/d" ||
    fail "zero range through n2 failed"
is_zero "$MP2/d" 4 1 || fail "the zeroed range does not read zeros"
is_ab "$MP2/d" 3 1 && is_ab "$MP2/d" 5 11 || fail "data outside the zeroed range changed"
# (the file system may add a block of extent metadata: it must not free any)
[ "$(stat -c %b "$IMG")" -ge "$blocks_punched" ] ||
    fail "zero range deallocated blocks ($blocks_punched -> $(stat -c %b "$IMG"))"

# past the end: clipped to the vdisk, which keeps its size
fallocate --punch-hole --keep-size --offset 15M --length 8M "$MP2/d" ||
    fail "punch hole across the end failed"
is_zero "$MP2/d" 15 1 || fail "the last MiB is not zero"
fallocate --punch-hole --keep-size --offset 32M --length 1M "$MP2/d" ||
    fail "punch hole past the end failed"
[ "$(stat -c %s "$IMG")" -eq $((16 << 20)) ] || fail "n1's file size changed: $(stat -c %s "$IMG")"
[ "$(stat -c %s "$MP2/d")" -eq $((16 << 20)) ] || fail "the vdisk's size changed"
expect_error 1 "Operation not supported" fallocate --collapse-range --offset 0 --length 1M "$MP2/d"

# local path on n1
fallocate --punch-hole --keep-size --offset 6M --length 1M "$MP1/d" || fail "punch hole on n1 failed"
is_zero "$MP2/d" 6 1 || fail "n1's local punch does not read zeros through n2"
is_ab "$MP2/d" 7 8 || fail "n1's local punch changed more"

# a loop device on n2's mount: blkdiscard goes through the same path
attach_loop --direct-io=on "$MP2/d"
blkdiscard -o $((8 << 20)) -l $((4 << 20)) "$LOOP_DEV" || fail "blkdiscard on $LOOP_DEV failed"
is_zero "$MP2/d" 8 4 || fail "blkdiscard's range does not read zeros"
is_ab "$MP2/d" 7 1 && is_ab "$MP2/d" 12 3 || fail "blkdiscard changed more than its range"
blkdiscard -z -o $((12 << 20)) -l $((1 << 20)) "$LOOP_DEV" || fail "blkdiscard -z failed"
is_zero "$MP2/d" 12 1 || fail "blkdiscard -z's range does not read zeros"
is_ab "$MP2/d" 13 2 || fail "blkdiscard -z changed more than its range"
echo "ok"
