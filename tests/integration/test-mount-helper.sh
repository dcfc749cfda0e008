#!/usr/bin/env bash
# mount -t fuse.ndfs SOCKET MOUNTPOINT (the fstab form) mounts the cluster's
# vdisks with allow_other, and umount unmounts it.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd mount.fuse3 setpriv unshare

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img" --mode 0644
MP=$TESTDIR/mnt
mkdir "$MP"

# mount(8) runs mount.fuse3 with a fixed PATH (/usr/local/sbin first), and
# mount.fuse3 runs "ndfs SOCKET MP -o ...". To use the ndfs just built
# without installing it, a private mount namespace gets a /usr/local/sbin
# holding only that ndfs. The FUSE mount lives in that namespace; the checks
# run there too, and its trap unmounts it.
mkdir "$TESTDIR/sbin"
ln -s "$NDFS" "$TESTDIR/sbin/ndfs"
export -f is_mounted wait_until as_nobody fail
export test_name NDFS_TEST_DEADLINE
unshare --mount --propagation private bash -euo pipefail -c '
    sbin=$1 MP=$2 SOCK=$3
    mount --bind "$sbin" /usr/local/sbin
    trap "is_mounted \"$MP\" && umount -l \"$MP\"; true" EXIT
    # The fstab form: SOURCE MOUNTPOINT fuse.ndfs defaults,_netdev.
    mount -t fuse.ndfs "$SOCK" "$MP" -o defaults,_netdev
    wait_until "$NDFS_TEST_DEADLINE" is_mounted "$MP" || fail "not mounted"
    awk -v mp="$MP" "\$5 == mp" /proc/self/mountinfo | grep -q "fuse.ndfs" ||
        fail "mount type is not fuse.ndfs: $(awk -v mp="$MP" "\$5 == mp" /proc/self/mountinfo)"
    [ "$(stat -c "%s %a" "$MP/a")" = "1048576 644" ] || fail "stat: $(stat -c "%s %a" "$MP/a")"
    as_nobody cat "$MP/a" >/dev/null || fail "nobody cannot read a 0644 vdisk: allow_other missing?"
    findmnt -n -o SOURCE "$MP" | grep -qF "$SOCK" || fail "source is not the socket: $(findmnt -n -o SOURCE "$MP")"
    umount "$MP"
    ! is_mounted "$MP" || fail "still mounted after umount"
' mount-helper "$TESTDIR/sbin" "$MP" "$SOCK"
ndfsd_alive "$CONF"
