#!/usr/bin/env bash
# ndfsadm vdisk create, list, show (human and --json) and remove work, and a
# new backing file is created sparse at the requested size.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq

start_node n1

adm vdisk create vd0 --size 64M --primary "n1:$TESTDIR/vd0.img"
[ "$(stat -c %s "$TESTDIR/vd0.img")" -eq $((64 << 20)) ] || fail "vd0.img is not 64 MiB"
[ "$(stat -c %b "$TESTDIR/vd0.img")" -lt 1024 ] || fail "vd0.img is not sparse"

adm vdisk create data.1 --size 1G --primary "n1:$TESTDIR/data.1.img" \
    --owner nobody --group nogroup --mode 640

# Human output names both vdisks.
list=$(adm vdisk list)
grep -qw vd0 <<<"$list" || fail "vdisk list does not show vd0: $list"
grep -q 'data\.1' <<<"$list" || fail "vdisk list does not show data.1: $list"
show=$(adm vdisk show vd0)
grep -qw vd0 <<<"$show" || fail "vdisk show vd0 does not name it: $show"

json=$(adm --json vdisk show vd0)
jq -e . >/dev/null <<<"$json" || fail "vdisk show --json is not JSON: $json"
for key in name size owner group mode primary secondary; do
    jq -e --arg k "$key" 'has($k)' >/dev/null <<<"$json" || fail "vdisk show --json lacks '$key': $json"
done
[ "$(json_get "$json" .name)" = vd0 ] || fail "name: $json"
[ "$(json_get "$json" '.size | tostring')" = $((64 << 20)) ] || fail "size: $json"
[ "$(json_get "$json" '.size | type')" = number ] || fail "size is not a number: $json"
[ "$(json_get "$json" .owner)" = root ] || fail "default owner: $json"
[ "$(json_get "$json" .group)" = disk ] || fail "default group: $json"
[ "$(json_get "$json" .mode)" = 0660 ] || fail "default mode: $json"
[ "$(json_get "$json" .primary)" = "n1:$TESTDIR/vd0.img" ] || fail "primary: $json"
[ "$(json_get "$json" '.secondary | type')" = null ] || fail "secondary is not null: $json"

json=$(adm --json vdisk show data.1)
[ "$(json_get "$json" .owner)" = nobody ] || fail "owner: $json"
[ "$(json_get "$json" .group)" = nogroup ] || fail "group: $json"
[ "$(json_get "$json" .mode)" = 0640 ] || fail "mode: $json"
[ "$(json_get "$json" .size)" = $((1 << 30)) ] || fail "size: $json"

# list --json: an array, or an object holding one under "vdisks".
names=$(adm --json vdisk list | jq -r '(if type == "object" then .vdisks else . end) | .[].name' | sort | xargs)
[ "$names" = "data.1 vd0" ] || fail "vdisk list --json names '$names'"

adm vdisk remove vd0
expect_error 1 'vd0.*(does not exist|not found)' adm vdisk show vd0
names=$(adm --json vdisk list | jq -r '(if type == "object" then .vdisks else . end) | .[].name' | xargs)
[ "$names" = "data.1" ] || fail "after remove, vdisk list --json names '$names'"

# status counts them.
status=$(adm --json status)
[ "$(json_get "$status" '.vdisks')" = 1 ] || fail "status does not count 1 vdisk: $status"
ndfsd_alive "$CONF"
