#!/usr/bin/env bash
# A vdisk attached to n1, mounted on n3: fio --verify=crc32c passes with
# direct I/O at queue depth 16, and with large requests (split by the
# driver); the data reaches n1's disk file, through AIO on n1's master.
# 1 MiB reads at queue depth 8 wait their turn on n1's master (1 MiB of
# large reads in flight per disk, the default) and read back what was
# written.
# Large writes travel in the buffer the kernel wrote them to (ndfs's FUSE
# loop); libfuse's loop (-o clone_fd) serves the same I/O.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

start_cluster 3 2
adm_on 1 vdisk create r --size 64M --primary "n1:$TESTDIR/r.img"
# Every node sees it, wherever it was created.
wait_until "$NDFS_TEST_DEADLINE" adm_on 3 vdisk show r || fail "n3 does not see vdisk r"
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
MP_PID=$MOUNT_PID
cd "$TESTDIR"

run_fio()
{
    local name=$1
    shift
    fio --name="$name" --filename="$MP/r" --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --direct=1 --group_reporting --output="$TESTDIR/fio-$name.log" "$@" ||
        { cat "$TESTDIR/fio-$name.log" >&2; fail "fio $name failed"; }
    grep -q 'err= 0' "$TESTDIR/fio-$name.log" || { cat "$TESTDIR/fio-$name.log" >&2; fail "fio $name: errors"; }
}
run_fio randwrite-qd16 --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k --size=16M
run_fio large-seq --ioengine=libaio --iodepth=4 --rw=write --bs=4M --size=32M --offset=16M
run_fio mixed-bs --ioengine=libaio --iodepth=8 --rw=randwrite --bsrange=512-256k --size=8M \
    --offset=48M
# fio writes, then reads back and checks, 1 MiB at a time, 8 at once
run_fio large-qd8 --ioengine=libaio --iodepth=8 --rw=write --bs=1M --size=16M --offset=16M
waited=$(adm_on 1 --json status | jq -e '.disk_jobs.reads_waited') ||
    fail "n1's status has no disk_jobs.reads_waited"
echo "n1: $waited large reads waited their turn"
[ "$waited" -gt 0 ] || fail "no 1 MiB read waited for another on n1's master"
adm_on 1 status | grep -Eq "^large reads waited: +$waited\$" ||
    fail "n1's status does not say how many large reads waited: $(adm_on 1 status)"

# The bytes are in n1's backing file, not somewhere on n3.
cmp <(dd if="$MP/r" bs=1M skip=16 count=32 iflag=direct status=none) \
    <(dd if="$TESTDIR/r.img" bs=1M skip=16 count=32 status=none) ||
    fail "n1's disk file differs from what n3 reads"
# n1's master took O_DIRECT I/O to the disk through AIO on its loop, not
# (only) through its disk threads; n3 masters nothing and did no disk job.
jobs=$(adm_on 1 --json status | jq -c '.disk_jobs') || fail "n1's status fails"
echo "n1 disk jobs: $jobs"
jq -e '.aio > 0' <<<"$jobs" >/dev/null ||
    fail "n1's master did no disk job through AIO: $jobs"
jq -e '.disk_jobs == {"aio": 0, "threads": 0, "reads_waited": 0}' <<<"$(adm_on 3 --json status)" >/dev/null ||
    fail "n3 reports disk jobs: $(adm_on 3 --json status)"
adm_on 1 status | grep -Eq '^disk jobs: +[1-9][0-9]* through AIO, [0-9]+ on threads$' ||
    fail "n1's status does not say its disk jobs: $(adm_on 1 status)"

# At its end the loop says how many writes went out of their receive
# buffer: the 1 MiB pieces of the 4M writes at least (32), and without a
# buffer allocated per request.
unmount_ndfs "$MP" "$MP_PID"
line=$(grep -E 'served [0-9]+ FUSE requests' "$MP.log") || fail "the mount's log has no FUSE loop summary"
echo "$line"
taken=$(sed -nE 's/.* ([0-9]+) writes kept their receive buffer.*/\1/p' <<<"$line")
allocated=$(sed -nE 's/.*, ([0-9]+) buffers allocated.*/\1/p' <<<"$line")
[ "${taken:-0}" -ge 32 ] || fail "only ${taken:-0} writes kept their receive buffer"
[ "${allocated:-999}" -le 40 ] || fail "$allocated receive buffers were allocated: not reused"

# libfuse's loop, one /dev/fuse descriptor per thread: the same checks.
mount_ndfs "${NODE_SOCK[3]}" "$MP" -o clone_fd
run_fio clone-fd --ioengine=libaio --iodepth=8 --rw=randwrite --bsrange=4k-1m --size=16M
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
