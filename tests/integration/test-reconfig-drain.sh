#!/usr/bin/env bash
# node drain under load, then stop the drained node. n1 masters v
# (secondary n2) and w (secondary n3), each over one file; n2 masters x
# (secondary n1), which stays. A vdisk z on n1 alone (no other path) makes
# "ndfsadm node drain n1" fail (exit 1, naming z); z removed, the drain
# runs under verified fio on v and w through n2's and n3's mounts and on x
# through n3's: it exits 0, reports the moved vdisks (v and w, not x) and
# its pause, and every node names n2 the master of v and n3 of w. Then n1's
# ndfsd stops (SIGTERM, exit 0; it was the CCD leader that bootstrapped the
# cluster): I/O goes on without a takeover (the masters stay), fio passes.
# Prints the drain's pause and the longest completion fio saw.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

start_cluster 3 2
pair_vdisk v 32M 1 2
pair_vdisk w 32M 1 3
pair_vdisk x 32M 2 1
truncate -s 16M "$TESTDIR/z.img"
adm_on 1 vdisk create z --size 16M --primary "n1:$TESTDIR/z.img" >/dev/null ||
    fail "vdisk create z failed"
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show z || fail "n3 does not see z"
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
wait_master w n1 "$NDFS_TEST_DEADLINE" 1 2 3
wait_master x n2 "$NDFS_TEST_DEADLINE" 1 2 3

# z has no other path: the drain refuses, naming it.
rc=0
adm_on 3 node drain n1 >/dev/null 2>"$TESTDIR/drain-z.err" || rc=$?
echo "node drain n1 with z on n1 alone: exit $rc: $(cat "$TESTDIR/drain-z.err")"
[ "$rc" -eq 1 ] || fail "node drain n1 exited $rc with z mastered by n1 alone, expected 1"
grep -q '\bz\b' "$TESTDIR/drain-z.err" || fail "the refused drain does not name z: $(cat "$TESTDIR/drain-z.err")"
for d in v w; do
    echo "after the refused drain, $d is mastered by $(vdisk_field 3 "$d" .master)"
done
adm_on 1 vdisk remove z >/dev/null || fail "vdisk remove z failed"
# Back to n1 if the refused drain moved any (it may move none or some).
for d in v w; do
    [ "$(vdisk_field 3 "$d" .master)" = n1 ] || adm_on 3 vdisk failback "$d" >/dev/null ||
        fail "failback $d failed"
    wait_master "$d" n1 10 1 2 3
done

mount_ndfs "${NODE_SOCK[2]}" "$TESTDIR/mnt2"
mount_ndfs "${NODE_SOCK[3]}" "$TESTDIR/mnt3"
cd "$TESTDIR"
before_v=$(mtime_ns "$TESTDIR/v.img")
before_w=$(mtime_ns "$TESTDIR/w.img")
fio_loop_start iov "$TESTDIR/mnt2/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
fio_loop_start iow "$TESTDIR/mnt3/w" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
fio_loop_start iox "$TESTDIR/mnt3/x" --ioengine=libaio --iodepth=4 --rw=randwrite --bs=4k \
    --offset=0 --size=2M --rate_iops=,500
wait_written "$TESTDIR/v.img" "$before_v" 20
wait_written "$TESTDIR/w.img" "$before_w" 20

t0=$(ms_now)
out=$(adm_on 3 --json node drain n1 2>"$TESTDIR/drain.err") ||
    fail "node drain n1 failed after $(($(ms_now) - t0)) ms: $(cat "$TESTDIR/drain.err")"
took=$(($(ms_now) - t0))
moved=$(jq -er '.moved | sort | join(",")' <<<"$out") || fail "node drain: no moved list: $out"
paused=$(jq -er '.paused_ms | numbers' <<<"$out") || fail "node drain: no paused_ms: $out"
echo "node drain n1: moved $moved, I/O paused $paused ms, the command took $took ms"
[ "$moved" = v,w ] || fail "node drain n1 moved '$moved', expected v,w"
for i in 1 2 3; do
    masters_are v n2 "$i" && masters_are w n3 "$i" && masters_are x n2 "$i" ||
        fail "n$i names $(vdisk_field "$i" v .master), $(vdisk_field "$i" w .master), $(vdisk_field "$i" x .master) the masters of v, w, x after the drain returned (want n2, n3, n2)"
done
fio_loop_check iov
fio_loop_check iow
fio_loop_check iox

# n1 masters nothing: stop it under load.
stop_ndfsd "${NODE_CONF[1]}"
reaped_pids[$(node_pid 1)]=1
t1=$(ms_now)
wait_converged 2 2 3
echo "n2 and n3 agree on 2 members $(($(ms_now) - t1)) ms after n1 stopped"
for d in v w; do
    m=$(mtime_ns "$TESTDIR/$d.img")
    wait_written "$TESTDIR/$d.img" "$m" 20
done
fio_loop_stop iov 60
echo "longest completion on v (n2's mount): $FIO_PAUSE_MS ms"
fio_loop_stop iow 60
echo "longest completion on w (n3's mount): $FIO_PAUSE_MS ms"
fio_loop_stop iox 60
echo "longest completion on x (n3's mount): $FIO_PAUSE_MS ms"
for i in 2 3; do
    masters_are v n2 "$i" && masters_are w n3 "$i" ||
        fail "n$i: a vdisk moved after n1 stopped: v $(vdisk_field "$i" v .master), w $(vdisk_field "$i" w .master)"
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
