#!/usr/bin/env bash
# Two concurrent moves of different vdisks both succeed. Vdisks a (primary
# n1, secondary n2) and b (primary n2, secondary n1), each over one file;
# verified fio on a through n3's mount and on b through n1's. Five rounds:
# a moves to its other node (issued on n3) while b moves to its other node
# (issued on n2) at the same moment; both commands exit 0 and report their
# pause, then every node names the new masters and both files are written
# again. fio passes. Prints how much the two commands overlapped in time
# and their pauses.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

ROUNDS=${NDFS_TEST_ROUNDS:-5}

start_cluster 3 2
pair_vdisk a 32M 1 2
pair_vdisk b 32M 2 1
wait_master a n1 "$NDFS_TEST_DEADLINE" 1 2 3
wait_master b n2 "$NDFS_TEST_DEADLINE" 1 2 3
mount_ndfs "${NODE_SOCK[3]}" "$TESTDIR/mnt3"
mount_ndfs "${NODE_SOCK[1]}" "$TESTDIR/mnt1"
cd "$TESTDIR"

before_a=$(mtime_ns "$TESTDIR/a.img")
before_b=$(mtime_ns "$TESTDIR/b.img")
fio_loop_start ioa "$TESTDIR/mnt3/a" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
fio_loop_start iob "$TESTDIR/mnt1/b" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
wait_written "$TESTDIR/a.img" "$before_a" 20
wait_written "$TESTDIR/b.img" "$before_b" 20

# move_bg NAME I P S: vdisk_move in the background; its result lands in
# $TESTDIR/NAME.move ("rc start-ms end-ms paused-ms", stderr in NAME.move.err).
move_bg()
{
    local name=$1 i=$2 p=$3 s=$4 img=$TESTDIR/$1.img t0 rc=0 out
    t0=$(ms_now)
    out=$(adm_on "$i" --json vdisk move "$name" --primary "n$p:$img" --secondary "n$s:$img" \
        2>"$TESTDIR/$name.move.err") || rc=$?
    echo "$rc $t0 $(ms_now) $(jq -r '.paused_ms // "none"' <<<"$out" 2>/dev/null)" >"$TESTDIR/$name.move"
}

ma=1 mb=2 # current masters
overlaps=0
for ((r = 1; r <= ROUNDS; r++)); do
    ta=$((3 - ma)) tb=$((3 - mb))
    move_bg a 3 "$ta" "$ma" &
    pa=$!
    move_bg b 2 "$tb" "$mb" &
    pb=$!
    wait "$pa" "$pb"
    read -r rca sa ea pza <"$TESTDIR/a.move"
    read -r rcb sb eb pzb <"$TESTDIR/b.move"
    [ "$rca" -eq 0 ] || fail "round $r: move of a to n$ta failed (exit $rca): $(cat "$TESTDIR/a.move.err")"
    [ "$rcb" -eq 0 ] || fail "round $r: move of b to n$tb failed (exit $rcb): $(cat "$TESTDIR/b.move.err")"
    [[ $pza =~ ^[0-9]+$ && $pzb =~ ^[0-9]+$ ]] ||
        fail "round $r: a move did not report paused_ms (a: $pza, b: $pzb)"
    for i in 1 2 3; do
        masters_are a "n$ta" "$i" && masters_are b "n$tb" "$i" ||
            fail "round $r: n$i names $(vdisk_field "$i" a .master) for a and $(vdisk_field "$i" b .master) for b after both moves returned (want n$ta, n$tb)"
    done
    # I/O goes on by the new mappings before the next round.
    for d in a b; do
        w=$(mtime_ns "$TESTDIR/$d.img")
        wait_written "$TESTDIR/$d.img" "$w" 10
    done
    fio_loop_check ioa
    fio_loop_check iob
    # How long both commands ran at once.
    lo=$((sa > sb ? sa : sb)) hi=$((ea < eb ? ea : eb))
    ov=$((hi > lo ? hi - lo : 0))
    [ "$ov" -eq 0 ] || overlaps=$((overlaps + 1))
    echo "round $r: a n$ma -> n$ta ($((ea - sa)) ms, paused $pza ms), b n$mb -> n$tb ($((eb - sb)) ms, paused $pzb ms), overlapping $ov ms"
    ma=$ta mb=$tb
done
[ "$overlaps" -gt 0 ] || fail "the two commands never ran at the same time: the test proves nothing"

fio_loop_stop ioa 60
fio_loop_stop iob 60
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
