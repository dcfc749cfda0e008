#!/usr/bin/env bash
# Bad ndfsadm input gets one clear error line and a non-zero status; ndfsd
# keeps running and the CCD is unchanged.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq

start_node n1
adm vdisk create vd0 --size 1M --primary "n1:$TESTDIR/vd0.img"
truncate -s 1M "$TESTDIR/small.img"
before=$(adm --json vdisk list)

# Unknown vdisk: a runtime error (1).
expect_error 1 'nope.*(does not exist|not found)' adm vdisk show nope
expect_error 1 'nope.*(does not exist|not found)' adm vdisk remove nope
expect_error 1 'nope.*(does not exist|not found)' adm vdisk chmod nope 0600
expect_error 1 'nope.*(does not exist|not found)' adm vdisk chown nope nobody
expect_error 1 'nope.*(does not exist|not found)' adm vdisk resize nope 2M
expect_error 1 'nope.*(does not exist|not found)' adm vdisk fail-path nope n1
expect_error 1 'nope.*(does not exist|not found)' adm vdisk restore-path nope n1
expect_error 1 'nope.*(does not exist|not found)' adm vdisk failback nope
# A node that holds no path of the vdisk.
expect_error 1 'n9.*(neither|not the primary)' adm vdisk fail-path vd0 n9
expect_error 1 'n9.*(neither|not the primary)' adm vdisk restore-path vd0 n9

# Values that do not parse, or are out of range.
for size in 12Q 0 1000 -1 1.5G ""; do
    expect_error '[12]' 'size' adm vdisk create x --size "$size" --primary "n1:$TESTDIR/x.img"
done
for name in a/b .. . "" "$(printf 'n%.0s' {1..65})" "a b"; do
    expect_error '[12]' 'name' adm vdisk create "$name" --size 1M --primary "n1:$TESTDIR/x.img"
done
expect_error '[12]' 'mode' adm vdisk chmod vd0 0999
expect_error '[12]' 'mode' adm vdisk create x --size 1M --primary "n1:$TESTDIR/x.img" --mode 12345
expect_error '[12]' 'primary|NODE:PATH|path' adm vdisk create x --size 1M --primary relative.img
for node in N1 "" n1:/x "$(printf 'n%.0s' {1..33})"; do
    expect_error 2 'node name' adm vdisk fail-path vd0 "$node"
    expect_error 2 'node name' adm vdisk restore-path vd0 "$node"
done
expect_error 2 'name' adm vdisk failback a/b
[ -e "$TESTDIR/x.img" ] && fail "a refused create left x.img behind"

# Duplicate name, a path smaller than the size, shrinking.
expect_error 1 'vd0.*exists' adm vdisk create vd0 --size 1M --primary "n1:$TESTDIR/other.img"
expect_error 1 'small\.img|smaller|too small' adm vdisk create y --size 64M --primary "n1:$TESTDIR/small.img"
expect_error 1 'shrink|smaller|grow' adm vdisk resize vd0 512

# Usage errors (2).
expect_error 2 '.' adm vdisk
expect_error 2 '.' adm frobnicate
expect_error 2 '.' adm vdisk create x --primary "n1:$TESTDIR/x.img"
expect_error 2 'missing NODE' adm vdisk fail-path vd0
expect_error 2 'missing NODE' adm vdisk restore-path vd0
expect_error 2 'missing NAME' adm vdisk failback
expect_error 2 'unexpected' adm vdisk failback vd0 n1

after=$(adm --json vdisk list)
[ "$before" = "$after" ] || fail "the CCD changed: before $before after $after"
[ "$(stat -c %s "$TESTDIR/small.img")" -eq $((1 << 20)) ] || fail "small.img was changed"
ndfsd_alive "$CONF"
