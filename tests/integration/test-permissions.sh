#!/usr/bin/env bash
# The mount enforces the vdisk's owner, group and mode for every user: nobody
# gets EACCES on a root:disk 0660 vdisk, and can read and write once it owns
# the vdisk (or the mode is 0666).
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd setpriv

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img"
adm vdisk create b --size 1M --primary "n1:$TESTDIR/b.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"
cd "$TESTDIR"

expect_eacces()
{
    local err
    if err=$(as_nobody "$@" 2>&1); then
        fail "nobody: '$*' succeeded"
    fi
    grep -q 'Permission denied' <<<"$err" || fail "nobody: '$*': '$err', expected EACCES"
}
expect_eacces dd if="$MP/a" of=/dev/null bs=4k count=1 status=none
expect_eacces dd if=/dev/zero of="$MP/a" bs=4k count=1 conv=notrunc status=none
# chmod by someone who is not the owner: EPERM, as on any file.
if err=$(as_nobody chmod 0666 "$MP/a" 2>&1); then
    fail "nobody could chmod a vdisk it does not own"
fi
grep -q 'Operation not permitted' <<<"$err" || fail "nobody chmod: '$err', expected EPERM"
# ... while root (the owner's peer) may, and the mount is visible to nobody.
dd if="$MP/a" of=/dev/null bs=4k count=1 status=none
as_nobody ls -l "$MP" >/dev/null || fail "nobody cannot list the mount (allow_other?)"

# Owner nobody: read and write work, and reach the backing file.
owner_is()
{
    [ "$(stat -c %U "$1")" = "$2" ]
}
adm vdisk chown a nobody
wait_until 10 owner_is "$MP/a" nobody || fail "owner did not become nobody"
printf 'written by nobody' | as_nobody dd of="$MP/a" bs=512 seek=8 conv=notrunc status=none ||
    fail "nobody cannot write a vdisk it owns"
got=$(as_nobody dd if="$MP/a" bs=512 skip=8 count=1 status=none | tr -d '\0')
[ "$got" = "written by nobody" ] || fail "nobody read back '$got'"
got=$(dd if="$TESTDIR/a.img" bs=512 skip=8 count=1 status=none | tr -d '\0')
[ "$got" = "written by nobody" ] || fail "backing file holds '$got'"

# Mode 0666: everyone.
mode_is()
{
    [ "$(stat -c %a "$1")" = "$2" ]
}
expect_eacces dd if="$MP/b" of=/dev/null bs=4k count=1 status=none
adm vdisk chmod b 0666
wait_until 10 mode_is "$MP/b" 666 || fail "mode did not become 666"
printf 'world' | as_nobody dd of="$MP/b" conv=notrunc status=none || fail "nobody cannot write a 0666 vdisk"
got=$(as_nobody dd if="$MP/b" bs=5 count=1 status=none)
[ "$got" = world ] || fail "nobody read back '$got' from b"

# And taking the permission away works again without a remount.
adm vdisk chmod b 0600
wait_until 10 mode_is "$MP/b" 600 || fail "mode did not become 600"
expect_eacces dd if="$MP/b" of=/dev/null bs=4k count=1 status=none
ndfsd_alive "$CONF"
