#!/usr/bin/env bash
# chmod and chown on a mounted vdisk file write through to the CCD, and
# ndfsadm chmod/chown show in ls -l on the mount without a remount.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd jq

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"
[ "$(stat -c '%U:%G %a' "$MP/a")" = "root:disk 660" ] || fail "initial: $(stat -c '%U:%G %a' "$MP/a")"

# Through the mount -> CCD.
chmod 0604 "$MP/a"
json=$(adm --json vdisk show a)
[ "$(json_get "$json" .mode)" = 0604 ] || fail "chmod on the mount: $json"
chown nobody:nogroup "$MP/a"
json=$(adm --json vdisk show a)
[ "$(json_get "$json" .owner):$(json_get "$json" .group)" = nobody:nogroup ] || fail "chown on the mount: $json"
chgrp disk "$MP/a"
json=$(adm --json vdisk show a)
[ "$(json_get "$json" .owner):$(json_get "$json" .group)" = nobody:disk ] || fail "chgrp on the mount: $json"
[ "$(stat -c '%U:%G %a' "$MP/a")" = "nobody:disk 604" ] || fail "after chown: $(stat -c '%U:%G %a' "$MP/a")"

# CCD (ndfsadm) -> the mount.
attrs_are()
{
    [ "$(stat -c '%U:%G %a' "$1")" = "$2" ]
}
adm vdisk chmod a 0640
wait_until 10 attrs_are "$MP/a" "nobody:disk 640" || fail "ndfsadm chmod: $(stat -c '%U:%G %a' "$MP/a")"
adm vdisk chown a root:nogroup
wait_until 10 attrs_are "$MP/a" "root:nogroup 640" || fail "ndfsadm chown: $(stat -c '%U:%G %a' "$MP/a")"
adm vdisk chown a daemon
wait_until 10 attrs_are "$MP/a" "daemon:nogroup 640" || fail "ndfsadm chown USER: $(stat -c '%U:%G %a' "$MP/a")"
ls -l "$MP" | grep -qE '^-rw-r----- +1 +daemon +nogroup .* a$' || fail "ls -l: $(ls -l "$MP")"

# Only permission bits are stored: setuid & co are kept, the file type is not.
chmod 2660 "$MP/a"
[ "$(json_get "$(adm --json vdisk show a)" .mode)" = 2660 ] || fail "chmod 2660: $(adm --json vdisk show a)"
ndfsd_alive "$CONF"
