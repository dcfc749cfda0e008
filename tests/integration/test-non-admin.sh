#!/usr/bin/env bash
# The control socket is 0660. A user who may open it but is neither root nor
# in the admin-group can read (status, list, show) but every change is
# refused (exit 1, permission denied) and changes nothing. A member of the
# admin-group may change.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd setpriv jq

start_node n1
adm vdisk create vd0 --size 1M --primary "n1:$TESTDIR/vd0.img"
[ "$(stat -c %a "$SOCK")" = 660 ] || fail "control socket mode $(stat -c %a "$SOCK"), expected 660"
before=$(adm --json vdisk list)
cd "$TESTDIR"

# nobody, with the socket's group as its gid so it can connect.
sock_gid=$(stat -c %g "$SOCK")
user()
{
    setpriv --reuid=nobody --regid="$sock_gid" --clear-groups "$NDFSADM" -s "$SOCK" "$@"
}
# nobody without the group cannot even connect.
expect_error 1 '.' as_nobody "$NDFSADM" -s "$SOCK" status

user status >/dev/null || fail "a reader cannot run status"
user vdisk list >/dev/null || fail "a reader cannot list"
user --json vdisk show vd0 >/dev/null || fail "a reader cannot show"
denied='[Pp]ermission denied|not permitted|[Oo]nly root'
expect_error 1 "$denied" user vdisk create x --size 1M --primary "n1:$TESTDIR/x.img"
expect_error 1 "$denied" user vdisk chmod vd0 0666
expect_error 1 "$denied" user vdisk chown vd0 nobody
expect_error 1 "$denied" user vdisk resize vd0 2M
expect_error 1 "$denied" user vdisk remove vd0
expect_error 1 "$denied" user vdisk remove vd0 --force
[ -e "$TESTDIR/x.img" ] && fail "a refused create made x.img"
[ "$(adm --json vdisk list)" = "$before" ] || fail "the CCD changed"
ndfsd_alive "$CONF"

# With admin-group = nogroup, nobody (gid nogroup) may change, and the socket
# belongs to that group.
conf2=$(write_config n2 "")
sed -i 's/^\[node\]$/[node]\nadmin-group = nogroup/' "$conf2"
sock2=$(socket_of "$conf2")
start_ndfsd "$conf2"
[ "$(stat -c %G "$sock2")" = nogroup ] || fail "socket group $(stat -c %G "$sock2"), expected the admin-group"
as_nobody "$NDFSADM" -s "$sock2" vdisk create y --size 1M --primary "n2:$TESTDIR/y.img" ||
    fail "an admin-group member cannot create a vdisk"
as_nobody "$NDFSADM" -s "$sock2" vdisk chmod y 0600 || fail "an admin-group member cannot chmod"
[ "$(json_get "$("$NDFSADM" -s "$sock2" --json vdisk show y)" .mode)" = 0600 ] || fail "chmod by admin did not apply"
