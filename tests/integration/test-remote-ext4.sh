#!/usr/bin/env bash
# ext4 on a loop device over a vdisk attached to n1, mounted on n3: mkfs,
# mount, write, sync, umount, mount again: the data is there.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_loop
requires_cmd mkfs.ext4 jq ss

start_cluster 3 2
adm_on 1 vdisk create e --size 64M --primary "n1:$TESTDIR/e.img"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show e || fail "n3 does not see vdisk e"
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"

attach_loop --direct-io=on "$MP/e"
LOOP=$LOOP_DEV
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 on $LOOP failed"
EXT=$TESTDIR/ext4
mkdir -p "$EXT"
mount "$LOOP" "$EXT" || fail "mount $LOOP failed"
on_cleanup "unmount_if_mounted '$EXT'"
head -c 8M /dev/urandom >"$TESTDIR/data"
cp "$TESTDIR/data" "$EXT/data"
mkdir "$EXT/dir"
echo hello >"$EXT/dir/hello"
sync
umount "$EXT" || fail "umount $EXT failed"
# Drop the loop device's buffers: the second mount reads through n1.
blockdev --flushbufs "$LOOP"
fsck.ext4 -n -f "$LOOP" >"$TESTDIR/fsck.log" 2>&1 || { cat "$TESTDIR/fsck.log" >&2; fail "fsck found errors"; }
mount "$LOOP" "$EXT" || fail "second mount of $LOOP failed"
cmp "$TESTDIR/data" "$EXT/data" || fail "data differs after remount"
[ "$(cat "$EXT/dir/hello")" = hello ] || fail "dir/hello differs after remount"
umount "$EXT"
# And the file system is in n1's disk file.
fsck.ext4 -n -f "$TESTDIR/e.img" >"$TESTDIR/fsck-n1.log" 2>&1 ||
    { cat "$TESTDIR/fsck-n1.log" >&2; fail "fsck of n1's disk file found errors"; }
