#!/usr/bin/env bash
# ndfsd refuses a bad configuration at once, with a message naming the file,
# the key and the reason, and touches nothing.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd timeout

# bad_config LABEL KEY-REGEX CONTENT: ndfsd -c must fail, naming file and key.
bad_config()
{
    local label=$1 key=$2 content=$3 conf=$TESTDIR/$1.conf rc=0 err
    printf '%s\n' "$content" >"$conf"
    err=$(timeout 20 "$NDFSD" -c "$conf" -f 2>&1) || rc=$?
    [ "$rc" -ne 124 ] || fail "$label: ndfsd kept running"
    [ "$rc" -ne 0 ] || fail "$label: ndfsd accepted it"
    [ "$rc" -lt 128 ] || fail "$label: ndfsd crashed (status $rc): $err"
    grep -qF "$conf" <<<"$err" || fail "$label: '$err' does not name the file $conf"
    grep -qiE -- "$key" <<<"$err" || fail "$label: '$err' does not match /$key/"
    [ "$(grep -c . <<<"$err")" -le 3 ] || fail "$label: more than a short error: $err"
}
D=$TESTDIR/data
S=$TESTDIR/s.sock
good="[node]
name = n1
data-dir = $D
control-socket = $S"

bad_config unknown-key 'colour' "$good
colour = blue"
bad_config unknown-group 'nodes|group' "[nodes]
name = n1"
bad_config bad-name 'name' "[node]
name = N_1!
data-dir = $D
control-socket = $S"
bad_config long-name 'name' "[node]
name = $(printf 'a%.0s' {1..33})
data-dir = $D"
bad_config no-name 'name' "[node]
data-dir = $D"
bad_config relative-data-dir 'data-dir' "[node]
name = n1
data-dir = relative/dir"
bad_config bad-threshold 'snapshot-threshold' "$good
[ccd]
snapshot-threshold = lots"
bad_config unknown-admin-group "admin-group|no-such-group" "[node]
name = n1
data-dir = $TESTDIR/data-ag
control-socket = $TESTDIR/ag.sock
admin-group = no-such-group-$$"
bad_config not-a-keyfile '.' "this is not a key file"
err=$(timeout 20 "$NDFSD" -c "$TESTDIR/missing.conf" -f 2>&1) && fail "a missing config was accepted"
grep -qF "$TESTDIR/missing.conf" <<<"$err" || fail "missing config: '$err'"

[ -e "$D" ] && [ -n "$(ls -A "$D")" ] && fail "a refused config left data in $D"
[ -e "$S" ] && fail "a refused config left a socket"

# Usage errors.
rc=0
"$NDFSD" --no-such-option >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "ndfsd accepted --no-such-option"
exit 0
