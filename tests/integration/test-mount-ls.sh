#!/usr/bin/env bash
# ls -l on the mount shows the CCD's owner, group, mode and size; vdisks
# created, resized and removed while mounted appear, grow and disappear
# without a remount; files cannot be created, renamed or unlinked (EPERM).
source "$(dirname "$0")/functions.sh"
requires_fuse

start_node n1
adm vdisk create a --size 64M --primary "n1:$TESTDIR/a.img" --owner nobody --group nogroup --mode 0640
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"

got=$(stat -c '%U %G %a %s %F' "$MP/a")
[ "$got" = "nobody nogroup 640 67108864 regular file" ] || fail "stat a: '$got'"
ls -l "$MP" | grep -qE '^-rw-r----- +1 +nobody +nogroup +67108864 .* a$' ||
    fail "ls -l: $(ls -l "$MP")"

# Created while mounted: appears (readdir and lookup).
adm vdisk create b --size 1M --primary "n1:$TESTDIR/b.img"
wait_until 10 test -e "$MP/b" || fail "b did not appear in the mount"
ls "$MP" | grep -qx b || fail "readdir does not list b: $(ls "$MP")"
got=$(stat -c '%U %G %a %s' "$MP/b")
[ "$got" = "root disk 660 1048576" ] || fail "stat b: '$got'"

size_is()
{
    [ "$(stat -c %s "$1")" = "$2" ]
}
adm vdisk resize b 3M
wait_until 10 size_is "$MP/b" $((3 << 20)) || fail "b did not grow: $(stat -c %s "$MP/b")"

adm vdisk remove b
wait_until 10 eval "! test -e '$MP/b'" || fail "b did not disappear"
ls "$MP" | grep -qx b && fail "readdir still lists b"

# Only ndfsadm makes vdisks.
expect_eperm()
{
    local err
    if err=$("$@" 2>&1); then
        fail "'$*' succeeded"
    fi
    grep -q 'Operation not permitted' <<<"$err" || fail "'$*': '$err', expected EPERM"
}
expect_eperm touch "$MP/new"
expect_eperm mkdir "$MP/dir"
expect_eperm mv "$MP/a" "$MP/c"
expect_eperm rm -f "$MP/a"
expect_eperm ln -s a "$MP/link"
[ -e "$MP/a" ] || fail "a is gone"
ndfsd_alive "$CONF"
