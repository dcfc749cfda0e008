#!/usr/bin/env bash
# A second ndfsd on the same data-dir fails at once with an error naming the
# lock (or the holder's pid); the first one is unharmed and its data intact.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq timeout

start_node n1
adm vdisk create vd0 --size 1M --primary "n1:$TESTDIR/vd0.img"
before=$(adm --json vdisk list)

# The same config, and one that differs only in the socket.
conf2=$TESTDIR/n1-other-socket.conf
sed "s|^control-socket = .*|control-socket = $TESTDIR/other.sock|" "$CONF" >"$conf2"
for c in "$CONF" "$conf2"; do
    for fg in -f ""; do
        rc=0
        err=$(timeout 20 "$NDFSD" -c "$c" $fg 2>&1 >/dev/null) || rc=$?
        [ "$rc" -ne 124 ] || fail "ndfsd -c $c $fg did not fail at once (still running after 20 s)"
        [ "$rc" -ne 0 ] || fail "a second ndfsd -c $c $fg started"
        [ "$rc" -lt 128 ] || fail "the second ndfsd -c $c $fg crashed (status $rc): $err"
        grep -qiE "lock|in use|$NDFSD_PID|running" <<<"$err" ||
            fail "second ndfsd -c $c $fg: '$err' does not name the lock or pid $NDFSD_PID"
    done
done
[ -e "$TESTDIR/other.sock" ] && fail "the refused ndfsd left a socket behind"

ndfsd_alive "$CONF"
[ "$(adm --json vdisk list)" = "$before" ] || fail "the CCD changed"
adm vdisk create vd1 --size 1M --primary "n1:$TESTDIR/vd1.img"

# Nothing was corrupted: a restart finds both vdisks.
stop_ndfsd "$CONF"
start_ndfsd "$CONF"
names=$(adm --json vdisk list | jq -r '(if type == "object" then .vdisks else . end) | .[].name' | xargs)
[ "$names" = "vd0 vd1" ] || fail "after restart: '$names'"
