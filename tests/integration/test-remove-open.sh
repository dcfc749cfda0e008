#!/usr/bin/env bash
# ndfsadm vdisk remove is refused while the vdisk file is open on a mount,
# works with --force, and works without once the file is closed.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd jq

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img"
adm vdisk create b --size 1M --primary "n1:$TESTDIR/b.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"

exec 7<"$MP/a"
exec 8<"$MP/b"
[ "$(json_get "$(adm --json vdisk show a)" .open_count)" = 1 ] ||
    fail "open_count while open: $(adm --json vdisk show a)"
expect_error 1 'a.*(open|in use|busy)' adm vdisk remove a
adm vdisk show a >/dev/null || fail "a refused remove removed a"
adm vdisk remove b --force || fail "remove --force of an open vdisk failed"
adm vdisk show b >/dev/null 2>&1 && fail "b is still there after remove --force"
exec 8<&-

exec 7<&-
# The close reaches ndfsd after release: wait for it.
wait_until 10 adm vdisk remove a || fail "remove after close refused: $(adm vdisk remove a 2>&1)"
wait_until 10 eval "! test -e '$MP/a'" || fail "a is still in the mount"
ndfsd_alive "$CONF"
