#!/usr/bin/env bash
# mount -t fuse.ndfs SOCKET MOUNTPOINT (the fstab form) mounts the cluster's
# vdisks with allow_other, and umount unmounts it.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd mount.fuse3 setpriv

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img" --mode 0644
MP=$TESTDIR/mnt
mkdir "$MP"
on_cleanup "unmount_if_mounted '$MP'"
daemon_logs+=("$MP.log")

# mount.fuse3 runs "ndfs SOCKET MP -o ..." found through PATH; it daemonises.
mount -t fuse.ndfs "$SOCK" "$MP" -o defaults,_netdev
wait_until "$NDFS_TEST_DEADLINE" is_mounted "$MP" || fail "not mounted"
awk -v mp="$MP" '$5 == mp' /proc/self/mountinfo | grep -q 'fuse.ndfs' ||
    fail "mount type is not fuse.ndfs: $(awk -v mp="$MP" '$5 == mp' /proc/self/mountinfo)"
[ "$(stat -c '%s %a' "$MP/a")" = "1048576 644" ] || fail "stat: $(stat -c '%s %a' "$MP/a")"
as_nobody cat "$MP/a" >/dev/null || fail "nobody cannot read a 0644 vdisk: allow_other missing?"
findmnt -n -o SOURCE "$MP" | grep -qF "$SOCK" || fail "source is not the socket: $(findmnt -n -o SOURCE "$MP")"

umount "$MP"
is_mounted "$MP" && fail "still mounted after umount"
ndfsd_alive "$CONF"
