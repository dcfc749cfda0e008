#!/usr/bin/env bash
# A node restarts from a snapshot plus the log after it: with
# snapshot-threshold = 16, ~60 changes take several snapshots, and after a
# restart every vdisk is there with its last attributes.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq

start_node n1 "[ccd]
snapshot-threshold = 16"

for i in $(seq 1 20); do
    adm vdisk create "v$i" --size 1M --primary "n1:$TESTDIR/v$i.img"
done
for i in $(seq 1 20); do
    adm vdisk chmod "v$i" 0600
done
for i in $(seq 1 10); do
    adm vdisk resize "v$i" 2M
done
for i in $(seq 11 15); do
    adm vdisk remove "v$i"
done
for i in $(seq 16 20); do
    adm vdisk chown "v$i" nobody:nogroup
done
before=$(adm --json vdisk list)
epoch=$(json_get "$(adm --json status)" .epoch)
[ "$(jq '(if type == "object" then .vdisks else . end) | length' <<<"$before")" -eq 15 ] ||
    fail "expected 15 vdisks: $before"

# Snapshots were taken (libraft's raft_uv names them snapshot-*).
ls "$TESTDIR/n1.data" -R | grep -q '^snapshot-' || fail "no snapshot in $TESTDIR/n1.data: $(ls -R "$TESTDIR/n1.data")"

stop_ndfsd "$CONF"
start_ndfsd "$CONF"
after=$(adm --json vdisk list)
[ "$after" = "$before" ] || fail "after restart: $after, before: $before"
[ "$(json_get "$(adm --json status)" .epoch)" -ge "$epoch" ] || fail "epoch went back"

# And it keeps working: more changes, another restart.
for i in $(seq 21 30); do
    adm vdisk create "v$i" --size 1M --primary "n1:$TESTDIR/v$i.img"
done
before=$(adm --json vdisk list)
stop_ndfsd "$CONF"
start_ndfsd "$CONF"
[ "$(adm --json vdisk list)" = "$before" ] || fail "after second restart: $(adm --json vdisk list)"
