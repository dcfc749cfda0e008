#!/usr/bin/env bash
# ext4 on a loop device over a vdisk file: mkfs, mount, write, sync, umount,
# mount again shows the data; it survives an ndfsd restart too (the mount
# reconnects to the new ndfsd), and fsck finds it clean.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_loop
requires_cmd mkfs.ext4 e2fsck sha256sum

start_node n1
adm vdisk create fs --size 64M --primary "n1:$TESTDIR/fs.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"

attach_loop "$MP/fs"
dev=$LOOP_DEV
mkfs.ext4 -q -F "$dev"
FS=$TESTDIR/ext4
mkdir "$FS"
on_cleanup "unmount_if_mounted '$FS'"
mount "$dev" "$FS"
dd if=/dev/urandom of="$FS/random" bs=1M count=8 status=none
echo hello >"$FS/hello"
mkdir "$FS/dir"
for i in $(seq 1 50); do echo "$i" >"$FS/dir/$i"; done
sync
sums=$(cd "$FS" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
umount "$FS"

mount "$dev" "$FS"
[ "$(cd "$FS" && find . -type f -print0 | sort -z | xargs -0 sha256sum)" = "$sums" ] ||
    fail "data differs after umount/mount"
umount "$FS"

# The ndfs mount outlives its ndfsd: restart ndfsd under it.
stop_ndfsd "$CONF"
start_ndfsd "$CONF"
adm vdisk show fs >/dev/null || fail "vdisk fs is gone after the ndfsd restart"
wait_until 10 stat "$MP/fs" || fail "the mount does not answer after the ndfsd restart"
[ "$(stat -c %s "$MP/fs")" -eq $((64 << 20)) ] || fail "size after restart: $(stat -c %s "$MP/fs")"

mount "$dev" "$FS"
[ "$(cd "$FS" && find . -type f -print0 | sort -z | xargs -0 sha256sum)" = "$sums" ] ||
    fail "data differs after the ndfsd restart"
echo after-restart >"$FS/after"
sync
umount "$FS"
e2fsck -fn "$dev" >"$TESTDIR/fsck.log" 2>&1 || { cat "$TESTDIR/fsck.log" >&2; fail "e2fsck found errors"; }

# The same file system read straight from the backing file.
losetup -d "$dev"
e2fsck -fn "$TESTDIR/fs.img" >"$TESTDIR/fsck2.log" 2>&1 ||
    { cat "$TESTDIR/fsck2.log" >&2; fail "e2fsck of the backing file found errors"; }
ndfsd_alive "$CONF"
