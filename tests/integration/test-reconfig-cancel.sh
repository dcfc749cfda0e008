#!/usr/bin/env bash
# A move while a member is frozen is cancelled. [reconfig] ack-timeout-ms
# is 1000; the failure timeout (5 s) is longer, so the frozen node stays a
# member and the leader's ack timer is what fires. A vdisk with primary
# n1:FILE and secondary n2:FILE, mounted on every node; verified fio runs
# on the two mounts whose ndfsd stays up. The node F to freeze is neither
# the CCD leader nor n1 (the master). With F stopped (SIGSTOP),
# "ndfsadm vdisk move v --primary n2:FILE" exits 1 after about the ack
# timeout (at most 2 s later, not when F would be declared failed) with
# "node nF did not answer within 1000 ms: nothing changed" on stderr, and
# nothing else. The leader logs the cancel at the ack timeout; from then,
# F still frozen, every other node names n1 the master with the same row
# version, and I/O resumes on the old mapping (the file is written again,
# fio goes on). After SIGCONT:
# the cluster agrees again, F's vdisk row is unchanged and its mount holds
# nothing, a move now succeeds, and I/O through F's mount works. Both fio
# loops pass their verify. Prints what the user saw.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-100}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-5000}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-6000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

ACK_MS=1000
CLUSTER_EXTRA="[reconfig]
ack-timeout-ms = $ACK_MS"

start_cluster 3 2
dual_vdisk v 64M
wait_master v n1 "$NDFS_TEST_DEADLINE" 1 2 3
# F: not the leader (it coordinates), not n1 (the master).
leader=${CLUSTER_LEADER#n}
if [ "$leader" != 3 ]; then F=3; else F=2; fi
others=()
for i in 1 2 3; do
    [ "$i" -eq "$F" ] || others+=("$i")
done
echo "leader n$leader; freezing n$F; fio on n${others[0]} and n${others[1]}"
for i in 1 2 3; do
    mount_ndfs "${NODE_SOCK[$i]}" "$TESTDIR/mnt$i"
done
cd "$TESTDIR"
version=$(vdisk_field 1 v .version)

before=$(mtime_ns "$TESTDIR/v.img")
a=${others[0]} b=${others[1]}
fio_loop_start io$a "$TESTDIR/mnt$a/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=0 --size=4M --rate_iops=,1000
fio_loop_start io$b "$TESTDIR/mnt$b/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=16M --size=4M --rate_iops=,1000
wait_written "$TESTDIR/v.img" "$before" 20

freeze_node "$F"
off=$(log_size "$leader")
t0=$(ms_now)
(
    rc=0
    adm_on "$leader" vdisk move v --primary "n2:$TESTDIR/v.img" --secondary "n1:$TESTDIR/v.img" \
        >"$TESTDIR/cancel.out" 2>"$TESTDIR/cancel.err" || rc=$?
    echo "$rc $(ms_now)" >"$TESTDIR/cancel.rc"
) &
mvpid=$!
on_cleanup "wait $mvpid 2>/dev/null"
# The leader gives up at the ack timeout...
wait_until 15 eval "log_since $leader $off | grep -q 'cancelled: node n$F did not answer'" ||
    fail "the leader n$leader did not log the cancel of the move: $(log_since "$leader" "$off")"
cancelled=$(($(ms_now) - t0))
# ... and I/O resumes on the old mapping on the others, F still frozen.
m=$(mtime_ns "$TESTDIR/v.img")
wait_written "$TESTDIR/v.img" "$m" 3
resumed=$(($(ms_now) - t0))
for i in "${others[@]}"; do
    j=$(vdisk_json "$i" v) || fail "n$i: vdisk show v failed"
    [ "$(jq -r .master <<<"$j")" = n1 ] && [ "$(jq -r .version <<<"$j")" = "$version" ] &&
        [ "$(jq -r .primary <<<"$j")" = "n1:$TESTDIR/v.img" ] ||
        fail "n$i: the cancelled move changed v: $(jq -c . <<<"$j") (version was $version)"
done
fio_loop_check "io$a"
fio_loop_check "io$b"
echo "the leader cancelled after $cancelled ms; I/O went on by the old mapping $resumed ms after the move started, n$F still frozen"

# The command's answer.
wait_until 30 test -s "$TESTDIR/cancel.rc" || fail "the cancelled move did not answer in 30 s"
wait "$mvpid" || true
read -r rc t1 <"$TESTDIR/cancel.rc"
took=$((t1 - t0))
echo "what the user sees (exit $rc after $took ms):"
sed 's/^/  stdout: /' "$TESTDIR/cancel.out"
sed 's/^/  stderr: /' "$TESTDIR/cancel.err"
[ "$rc" -eq 1 ] || fail "the move with n$F frozen exited $rc, expected 1"
[ ! -s "$TESTDIR/cancel.out" ] || fail "a cancelled move printed on stdout: $(cat "$TESTDIR/cancel.out")"
[ "$(wc -l <"$TESTDIR/cancel.err")" -eq 1 ] || fail "a cancelled move should say why in one line"
grep -qE "node n$F did not answer within $ACK_MS ms: nothing changed" "$TESTDIR/cancel.err" ||
    fail "the cancelled move does not say that n$F did not answer within $ACK_MS ms: $(cat "$TESTDIR/cancel.err")"
[ "$took" -ge "$ACK_MS" ] || fail "the move gave up after $took ms, before the ack timeout ($ACK_MS ms)"
# The user gets the answer at the ack timeout, not once the silent node is
# declared failed (failure timeout): checked at the end, after the rest.
late=0
[ "$took" -le $((ACK_MS + 2000)) ] || late=1
is_member "$leader" "$F" || echo "note: n$F was dropped from the membership before SIGCONT"
thaw_node "$F"

wait_converged 3 1 2 3
for i in 1 2 3; do
    masters_are v n1 "$i" && [ "$(vdisk_field "$i" v .version)" = "$version" ] ||
        fail "n$i: v changed after the cancel: $(vdisk_json "$i" v | jq -c .)"
done
# F's mount got the suspension late (and its cancel after it): it holds
# nothing now.
wait_io_idle "$F" v

# The cluster is fine: a move succeeds, every node sees it, I/O through F.
vdisk_move "$F" v 2 1
echo "a move after SIGCONT: I/O paused $MOVE_PAUSED_MS ms (the command took $MOVE_MS ms)"
for i in 1 2 3; do
    masters_are v n2 "$i" || fail "n$i does not name n2 the master after the move returned"
done
fio_start after "$TESTDIR/mnt$F/v" --ioengine=libaio --iodepth=8 --rw=randwrite --bs=4k \
    --offset=32M --size=2M
fio_finish after "$FIO_PID" 60

fio_loop_stop "io$a" 60
echo "longest completion on n$a's mount: $FIO_PAUSE_MS ms"
fio_loop_stop "io$b" 60
echo "longest completion on n$b's mount: $FIO_PAUSE_MS ms"
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
[ "$late" -eq 0 ] ||
    fail "the cancelled move answered after $took ms, not at the ack timeout ($ACK_MS ms): it waited for the frozen n$F (failure timeout $NDFS_TEST_FAILURE_MS ms)"
