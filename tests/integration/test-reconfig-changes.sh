#!/usr/bin/env bash
# Every change of a vdisk row runs the reconfiguration protocol (issue 6:
# the vdisks table's format row says SUSPEND) and reports how long I/O was
# paused. Three nodes, each mounting every vdisk; io1 (disk on n1) is under
# fio --verify=crc32c from n3's mount and io2 (disk on n2) from n1's, run
# after run, for the whole test. Meanwhile, from each node in turn:
# vdisks are created, grown, chmod'ed, chown'ed and removed (one with
# --force while n1's mount writes it: the writes fail cleanly, nothing
# hangs); io1 itself
# (under fio) is chmod'ed and chown'ed with ndfsadm, chmod'ed and chown'ed
# through n3's mount (the one whose fio writes it: the mount's FUSE thread
# waits for ndfsd while the same mount must suspend io1 and ack, which it
# does from its link thread) and grown. Each ndfsadm command exits 0 and
# prints "I/O paused N ms" (human form) or paused_ms (--json) besides its
# old output; the mount's chmod/chown return at once and show on every
# node. No fio run sees an error or a verify failure, nor a completion
# longer than NDFS_TEST_PAUSE_MS. Prints the pause of each command.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

if [ -n "${ASAN_OPTIONS:-}" ]; then
    NDFS_TEST_PAUSE_MS=${NDFS_TEST_PAUSE_MS:-4000}
else
    NDFS_TEST_PAUSE_MS=${NDFS_TEST_PAUSE_MS:-2000}
fi

start_cluster 3 1
for i in 1 2; do
    adm_on "$i" vdisk create "io$i" --size 32M --primary "n$i:$TESTDIR/io$i.img" >/dev/null ||
        fail "vdisk create io$i failed"
done
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show io2 >/dev/null ||
        fail "n$i does not see io2"
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show io1 >/dev/null ||
        fail "n$i does not see io1"
    mount_ndfs "${NODE_SOCK[$i]}" "$TESTDIR/mnt$i"
done
cd "$TESTDIR"

m1=$(mtime_ns "$TESTDIR/io1.img")
m2=$(mtime_ns "$TESTDIR/io2.img")
fio_loop_start io_n3 "$TESTDIR/mnt3/io1" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --size=4M --rate_iops=,500
fio_loop_start io_n1 "$TESTDIR/mnt1/io2" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --size=4M --rate_iops=,500
wait_written "$TESTDIR/io1.img" "$m1" 20
wait_written "$TESTDIR/io2.img" "$m2" 20

all_loops_running()
{
    fio_loop_check io_n3
    fio_loop_check io_n1
}

pauses=()
# human I WHAT EXPECT ARGS...: ndfsadm ARGS on node I in the human form:
# exits 0, prints a line matching EXPECT (its old output) and then
# "I/O paused N ms" as its last line. Sets PAUSED.
human()
{
    local i=$1 what=$2 expect=$3 out rc=0
    shift 3
    out=$(adm_on "$i" "$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || fail "n$i: ndfsadm $* exited $rc: $out"
    grep -qE "$expect" <<<"$out" || fail "n$i: ndfsadm $* does not print '$expect': $out"
    PAUSED=$(tail -n 1 <<<"$out" | sed -nE 's/^I\/O paused ([0-9]+) ms$/\1/p')
    [ -n "$PAUSED" ] || fail "n$i: ndfsadm $* does not end with 'I/O paused N ms': $out"
    echo "$what (ndfsadm on n$i): I/O paused $PAUSED ms"
    pauses+=("$what $PAUSED")
    all_loops_running
}

# json I WHAT JQ ARGS...: ndfsadm --json ARGS on node I: exits 0, its
# document satisfies JQ (its old keys) and has paused_ms. Sets PAUSED.
json()
{
    local i=$1 what=$2 filter=$3 out rc=0
    shift 3
    out=$(adm_on "$i" --json "$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || fail "n$i: ndfsadm --json $* exited $rc: $out"
    jq -e "$filter" <<<"$out" >/dev/null || fail "n$i: ndfsadm --json $*: not $filter: $out"
    PAUSED=$(jq -er '.paused_ms | numbers' <<<"$out") ||
        fail "n$i: ndfsadm --json $*: no paused_ms: $out"
    echo "$what (ndfsadm --json on n$i): I/O paused $PAUSED ms"
    pauses+=("$what $PAUSED")
    all_loops_running
}

# on_mounts TEST NAME: TEST (-e or ! -e) holds for NAME on every mount.
on_mounts()
{
    local i
    for i in 1 2 3; do
        if [ "$1" = "!" ]; then
            [ ! -e "$TESTDIR/mnt$i/$2" ] || return 1
        else
            [ -e "$TESTDIR/mnt$i/$2" ] || return 1
        fi
    done
}

# mode_everywhere NAME MODE: every node's ndfsadm and every mount show it.
mode_everywhere()
{
    local i
    for i in 1 2 3; do
        [ "$(vdisk_field "$i" "$1" .mode)" = "$2" ] || return 1
        [ "$(stat -c %04a "$TESTDIR/mnt$i/$1")" = "${2#0}" ] ||
            [ "$(stat -c %04a "$TESTDIR/mnt$i/$1")" = "$2" ] || return 1
    done
}

owner_everywhere()
{
    local i
    for i in 1 2 3; do
        [ "$(vdisk_field "$i" "$1" '.owner + ":" + .group')" = "$2" ] || return 1
        [ "$(stat -c %U:%G "$TESTDIR/mnt$i/$1")" = "$2" ] || return 1
    done
}

size_everywhere()
{
    local i
    for i in 1 2 3; do
        [ "$(vdisk_field "$i" "$1" .size)" = "$2" ] || return 1
        [ "$(stat -c %s "$TESTDIR/mnt$i/$1")" = "$2" ] || return 1
    done
}

# --- other vdisks: create, grow, chmod, chown, remove, from each node ---
human 2 "create c1" '^name: +c1$' vdisk create c1 --size 4M --primary "n3:$TESTDIR/c1.img"
wait_until 10 on_mounts -e c1 || fail "c1 is not on every mount"
json 3 "create c2" '.name == "c2" and .size == 4194304' vdisk create c2 --size 4M \
    --primary "n1:$TESTDIR/c2.img"
wait_until 10 on_mounts -e c2 || fail "c2 is not on every mount"
human 1 "resize c1" '^size: +8M \(8388608 bytes\)$' vdisk resize c1 8M
json 2 "resize c2" '.size == 8388608' vdisk resize c2 8M
wait_until 10 size_everywhere c1 8388608 || fail "c1's new size is not everywhere"
wait_until 10 size_everywhere c2 8388608 || fail "c2's new size is not everywhere"
human 3 "chmod c1" '^mode: +0640$' vdisk chmod c1 0640
json 1 "chmod c2" '.mode == "0604"' vdisk chmod c2 0604
human 2 "chown c1" '^owner: +nobody$' vdisk chown c1 nobody:nogroup
json 3 "chown c2" '.owner == "nobody" and .group == "nogroup"' vdisk chown c2 nobody:nogroup
wait_until 10 mode_everywhere c1 0640 || fail "c1's mode is not 0640 everywhere"
wait_until 10 owner_everywhere c2 nobody:nogroup || fail "c2's owner is not everywhere"
# Written through one mount, read through another, after the changes.
printf 'c1 after the changes' | dd of="$TESTDIR/mnt1/c1" bs=4k conv=sync,notrunc oflag=direct \
    status=none || fail "cannot write c1 through n1's mount"
got=$(dd if="$TESTDIR/mnt2/c1" bs=4k count=1 iflag=direct status=none | tr -d '\0')
[ "$got" = "c1 after the changes" ] || fail "n2's mount reads '$got' from c1"
human 1 "remove c1" '^vdisk "c1" removed$' vdisk remove c1
json 2 "remove c2" '.removed == "c2"' vdisk remove c2
wait_until 10 on_mounts ! c1 || fail "c1 is still on a mount"
wait_until 10 on_mounts ! c2 || fail "c2 is still on a mount"

# --- removed with --force while a mount writes it: what that mount held
# during the run fails cleanly once the vdisk is gone (EIO, or ENOENT for
# an open after it), nothing hangs ---
adm_on 3 vdisk create c3 --size 4M --primary "n3:$TESTDIR/c3.img" >/dev/null ||
    fail "vdisk create c3 failed"
wait_until 10 on_mounts -e c3 || fail "c3 is not on every mount"
(
    while dd if=/dev/zero of="$TESTDIR/mnt1/c3" bs=4k count=1024 oflag=direct conv=notrunc         status=none 2>"$TESTDIR/c3-writer.err"; do
        :
    done
) &
writer=$!
on_cleanup "kill $writer 2>/dev/null; true"
m3=$(mtime_ns "$TESTDIR/c3.img")
wait_written "$TESTDIR/c3.img" "$m3" 10
human 2 "remove --force c3 (written from n1)" '^vdisk "c3" removed$' vdisk remove c3 --force
wait_until 10 eval "! kill -0 $writer 2>/dev/null" ||
    fail "the writer of c3 still runs 10 s after its removal: $(cat "$TESTDIR/c3-writer.err")"
wait "$writer" 2>/dev/null || true
grep -qE 'Input/output error|No such file or directory' "$TESTDIR/c3-writer.err" ||
    fail "the writer of c3 ended with: $(cat "$TESTDIR/c3-writer.err")"
echo "the writer of c3 after its removal: $(head -n 1 "$TESTDIR/c3-writer.err")"
wait_until 10 on_mounts ! c3 || fail "c3 is still on a mount"

# --- io1, under fio from n3's mount: ndfsadm chmod, chown, grow ---
human 1 "chmod io1 (under fio)" '^mode: +0600$' vdisk chmod io1 0600
json 2 "chown io1 (under fio)" '.owner == "nobody" and .group == "disk"' vdisk chown io1 nobody
wait_until 10 mode_everywhere io1 0600 || fail "io1's mode is not 0600 everywhere"
wait_until 10 owner_everywhere io1 nobody:disk || fail "io1's owner is not nobody:disk everywhere"

# Through the mount whose fio writes io1: setattr waits for ndfsd, which
# suspends io1 on that same mount first. At most a few seconds (an ack
# timeout would cancel the change and fail the chmod).
t0=$(ms_now)
timeout 20 chmod 0640 "$TESTDIR/mnt3/io1" || fail "chmod 0640 through n3's mount (io1 under fio there) failed"
t1=$(ms_now)
timeout 20 chown root:disk "$TESTDIR/mnt3/io1" ||
    fail "chown root:disk through n3's mount (io1 under fio there) failed"
t2=$(ms_now)
echo "chmod io1 through n3's mount (under fio there): $((t1 - t0)) ms; chown: $((t2 - t1)) ms"
[ $((t2 - t0)) -le $((2 * NDFS_TEST_PAUSE_MS)) ] ||
    fail "chmod + chown through n3's mount took $((t2 - t0)) ms"
wait_until 10 mode_everywhere io1 0640 || fail "io1's mode is not 0640 everywhere"
wait_until 10 owner_everywhere io1 root:disk || fail "io1's owner is not root:disk everywhere"
# The mount's setattr ran the protocol too: the leader logged its pause.
grep -hE 'vdisk "io1" mode set to 0640 by uid 0 \(I/O paused [0-9]+ ms\)' "$TESTDIR"/n*.log ||
    fail "no node logged the chmod of io1 through the mount with its pause"
all_loops_running

human 2 "resize io1 (under fio)" '^size: +48M \(50331648 bytes\)$' vdisk resize io1 48M
wait_until 10 size_everywhere io1 $((48 << 20)) || fail "io1's new size is not everywhere"
[ "$(stat -c %s "$TESTDIR/io1.img")" -ge $((48 << 20)) ] ||
    fail "io1.img was not grown: $(stat -c %s "$TESTDIR/io1.img")"
# The new region, through n2's mount; n3's mount (under fio) reads it back.
printf 'past the old end' | dd of="$TESTDIR/mnt2/io1" bs=4k seek=$(((40 << 20) / 4096)) \
    conv=sync,notrunc oflag=direct status=none || fail "cannot write io1's new region through n2"
got=$(dd if="$TESTDIR/mnt3/io1" bs=4k skip=$(((40 << 20) / 4096)) count=1 iflag=direct status=none | tr -d '\0')
[ "$got" = "past the old end" ] || fail "n3's mount reads '$got' from io1's new region"
# The same size again: nothing to change, no pause.
human 3 "resize io1 to its size" '^size: +48M' vdisk resize io1 48M
[ "$PAUSED" -eq 0 ] || fail "a resize to the same size paused I/O $PAUSED ms"

# --- the I/O went on the whole time, every run verified ---
all_loops_running
touch "$TESTDIR/io_n3.stop" "$TESTDIR/io_n1.stop"
for l in io_n3 io_n1; do
    fio_loop_stop "$l" 60
    [ "$FIO_PAUSE_MS" -le "$NDFS_TEST_PAUSE_MS" ] ||
        fail "fio $l: a completion took $FIO_PAUSE_MS ms (longer than $NDFS_TEST_PAUSE_MS ms)"
done
for i in 1 2 3; do
    names=$(ls "$TESTDIR/mnt$i" | xargs)
    [ "$names" = "io1 io2" ] || fail "n$i's mount lists '$names'"
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
echo "pauses (ms): $(printf '%s; ' "${pauses[@]}")"
