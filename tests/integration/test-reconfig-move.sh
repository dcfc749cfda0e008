#!/usr/bin/env bash
# Live switchover under load: a vdisk with primary n1:FILE and secondary
# n2:FILE (one file: a dual-ported disk), mounted on n1 and n3. A first
# move to n2 without load, in the human form ("I/O paused N ms"); then fio
# direct=1 --verify=crc32c --verify_fatal=1 writes through both mounts
# (disjoint regions), run after run, while the primary moves n2 -> n1 ->
# n2 ... 20 times (ndfsadm vdisk move, issued on n1, n2 and n3 in turn).
# Each move exits 0 and reports its pause; when it returns every node names
# the new master (a member resumes only once its replica applied the
# change) and the file is written again before the next move; no fio run
# sees an error or a verify failure. Prints the pause per move (median,
# max) as ndfsadm reports it and the longest completion fio saw.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

MOVES=${NDFS_TEST_MOVES:-20}

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP1=$TESTDIR/mnt1
MP3=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[1]}" "$MP1"
mount_ndfs "${NODE_SOCK[3]}" "$MP3"
cd "$TESTDIR"

# The first move in the human form, before the load: what a user sees.
out=$(adm_on 3 vdisk move v --primary "n2:$TESTDIR/v.img" --secondary "n1:$TESTDIR/v.img" 2>&1) &&
    rc=0 || rc=$?
echo "ndfsadm vdisk move v --primary n2:FILE --secondary n1:FILE: exit $rc: $out"
[ "$rc" -eq 0 ] || fail "vdisk move v to n2 failed: $out"
grep -qE 'I/O paused [0-9]+ ms' <<<"$out" || fail "vdisk move does not say 'I/O paused N ms': $out"
masters_are v n2 1 2 3 || fail "v is not on n2 on every node after the move returned"

# Each run: 4 MiB of 4 KiB random writes at about 1000/s (4 s), then read
# back and checked.
before=$(mtime_ns "$TESTDIR/v.img")
fio_loop_start io1 "$MP1/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
fio_loop_start io3 "$MP3/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=32M --size=4M --rate_iops=,1000
wait_written "$TESTDIR/v.img" "$before" 20

pauses=()
walls=()
from=2
for ((m = 1; m <= MOVES; m++)); do
    if [ "$from" -eq 1 ]; then to=2; else to=1; fi
    on=$(((m - 1) % 3 + 1))
    vdisk_move "$on" v "$to" "$from"
    # The command returns once every member resumed on the new mapping.
    for i in 1 2 3; do
        masters_are v "n$to" "$i" ||
            fail "move $m: n$i still says $(vdisk_field "$i" v .master) masters v after the move to n$to returned"
    done
    [ "$MOVE_PAUSED_MS" -le $((MOVE_MS + 50)) ] ||
        fail "move $m reports a pause of $MOVE_PAUSED_MS ms, longer than the command ($MOVE_MS ms)"
    # I/O goes on by the new mapping before the next move.
    w=$(mtime_ns "$TESTDIR/v.img")
    wait_written "$TESTDIR/v.img" "$w" 10
    fio_loop_check io1
    fio_loop_check io3
    echo "move $m: n$from -> n$to (on n$on): I/O paused $MOVE_PAUSED_MS ms, the command took $MOVE_MS ms ($MOVE_START-$MOVE_END)"
    pauses+=("$MOVE_PAUSED_MS")
    walls+=("$MOVE_MS")
    from=$to
done

fio_loop_stop io1 60
fio1_pause=$FIO_PAUSE_MS
[ "$FIO_RUNS" -ge 1 ] || fail "fio io1 never ran"
fio_loop_stop io3 60
fio3_pause=$FIO_PAUSE_MS
for i in 1 3; do
    wait_io_idle "$i" v
done
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done

ms_stats "${pauses[@]}"
echo "pause per move (ndfsadm paused_ms) over $MOVES moves: median $STATS_MEDIAN ms, max $STATS_MAX ms"
ms_stats "${walls[@]}"
echo "command time per move: median $STATS_MEDIAN ms, max $STATS_MAX ms"
echo "longest fio completion across the moves: n1's mount $fio1_pause ms, n3's mount $fio3_pause ms"
