#!/usr/bin/env bash
# 20 kills and restarts of alternating masters under fio: each cycle kills
# -9 the vdisk's current master (n1 or n2), waits for the other to take
# over, restarts the killed one and waits until it is a member again; every
# fifth cycle fails the vdisk back to n1. Meanwhile fio runs back to back
# on n3 (each run writes 8 MiB at random and verifies it, crc32c, fatal):
# every run exits 0, so no acknowledged write was lost. Bounded: the
# cycles stop after LOOP_BUDGET_S (and fail if fewer than 20 fit).
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-500}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

CYCLES=${NDFS_FAILOVER_CYCLES:-20}
LOOP_BUDGET_S=${NDFS_FAILOVER_BUDGET_S:-150}

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
cd "$TESTDIR"

# The writer: fio runs back to back until $TESTDIR/stop exists; the first
# failing run stops it with that run's status.
writer()
{
    local n=0 rc
    while [ ! -e "$TESTDIR/stop" ]; do
        n=$((n + 1))
        rc=0
        fio --name="loop$n" --filename="$MP/v" --direct=1 --ioengine=libaio --iodepth=16 \
            --rw=randwrite --bs=4k --offset=0 --size=8M --rate_iops=,2000 \
            --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 --output-format=json \
            --output="$TESTDIR/loop$n.json" 2>"$TESTDIR/loop$n.err" &
        echo $! >"$TESTDIR/writer.fio"
        wait $! || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "$n $rc" >"$TESTDIR/writer.failed"
            return "$rc"
        fi
        echo "$n" >"$TESTDIR/writer.runs"
    done
}
before=$(mtime_ns "$TESTDIR/v.img")
writer &
writer_pid=$!
stop_writer()
{
    local p
    touch "$TESTDIR/stop"
    p=$(cat "$TESTDIR/writer.fio" 2>/dev/null) || p=
    # Only our fio (a stuck one); the pid may be gone already.
    [ -z "$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != fio ] || kill -KILL "$p" 2>/dev/null
    wait "$writer_pid" 2>/dev/null
    return 0
}
on_cleanup stop_writer
wait_written "$TESTDIR/v.img" "$before" 20

t_start=$(ms_now)
takeovers=()
for ((c = 1; c <= CYCLES; c++)); do
    [ ! -e "$TESTDIR/writer.failed" ] || break
    if [ $(($(ms_now) - t_start)) -gt $((LOOP_BUDGET_S * 1000)) ]; then
        fail "only $((c - 1)) of $CYCLES cycles in ${LOOP_BUDGET_S} s"
    fi
    m=$(vdisk_field 3 v .master) || fail "vdisk show v on n3 failed"
    case $m in
    n1) k=1 o=2 ;;
    n2) k=2 o=1 ;;
    *) fail "cycle $c: unexpected master '$m'" ;;
    esac
    t0=$(ms_now)
    kill_node "$k"
    wait_master v "n$o" 30 "$o" 3
    took=$(($(ms_now) - t0))
    takeovers+=("$took")
    restart_node "$k"
    wait_converged 3 1 2 3
    extra=
    if [ $((c % 5)) -eq 0 ] && [ "$o" = 2 ]; then
        adm_on 3 vdisk failback v >/dev/null || fail "cycle $c: vdisk failback v failed"
        wait_master v n1 10 1 2 3
        extra=", failback to n1"
    fi
    echo "cycle $c: killed n$k, n$o took over in ${took} ms, n$k a member again after $(($(ms_now) - t0)) ms$extra"
done
touch "$TESTDIR/stop"
rc=0
wait_until 120 eval "! kill -0 $writer_pid" || fail "the writer did not stop within 120 s"
wait "$writer_pid" || rc=$?
if [ -e "$TESTDIR/writer.failed" ] || [ "$rc" -ne 0 ]; then
    n=? frc=$rc
    [ ! -e "$TESTDIR/writer.failed" ] || read -r n frc <"$TESTDIR/writer.failed"
    cat "$TESTDIR/loop$n.err" >&2
    sed -n '/^{/,$!p' "$TESTDIR/loop$n.json" >&2
    fail "fio run $n failed with status $frc (an I/O error or a verify failure) during cycle $c"
fi
[ "$c" -gt "$CYCLES" ] || fail "stopped after $((c - 1)) cycles"
runs=$(cat "$TESTDIR/writer.runs")
pause=0
for ((n = 1; n <= runs; n++)); do
    p=$(sed -n '/^{/,$p' "$TESTDIR/loop$n.json" |
        jq -r '[.jobs[] | .write.clat_ns.max, .read.clat_ns.max] | max / 1e6 | floor')
    [ "$p" -le "$pause" ] || pause=$p
done
sorted=$(printf '%s\n' "${takeovers[@]}" | sort -n)
echo "$CYCLES cycles in $((($(ms_now) - t_start) / 1000)) s; $runs fio runs, all verified"
echo "takeover ms: median $(sed -n "$(((CYCLES + 1) / 2))p" <<<"$sorted"), max $(tail -n1 <<<"$sorted")"
echo "longest application I/O pause: ${pause} ms"
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
