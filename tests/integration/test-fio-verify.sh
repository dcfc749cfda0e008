#!/usr/bin/env bash
# fio --verify=crc32c passes on a mounted vdisk: direct and buffered,
# synchronous and libaio at depth, several jobs (FUSE threads) at once.
# Large local writes at depth go to the disk from their receive buffer.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio

start_node n1
adm vdisk create f --size 64M --primary "n1:$TESTDIR/f.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"
# fio saves its verify state files in the working directory
cd "$TESTDIR"

run_fio()
{
    local name=$1
    shift
    fio --name="$name" --filename="$MP/f" --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --group_reporting --output="$TESTDIR/fio-$name.log" "$@" ||
        { cat "$TESTDIR/fio-$name.log" >&2; fail "fio $name failed"; }
    grep -q 'err= 0' "$TESTDIR/fio-$name.log" || { cat "$TESTDIR/fio-$name.log" >&2; fail "fio $name: errors"; }
}
run_fio direct-psync --direct=1 --ioengine=psync --rw=randwrite --bs=4k --size=8M
# How often the mount's local AIO completion thread woke: it sleeps until
# a completion (or the end) wakes it, and polls for at most 100 us after.
aio_wakeups()
{
    local t
    for t in /proc/"$MOUNT_PID"/task/*; do
        if [ "$(cat "$t/comm")" = ndfs-aio ]; then
            awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status"
            return
        fi
    done
    fail "the mount has no ndfs-aio thread"
}
before=$(aio_wakeups)
run_fio direct-libaio --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
    --size=8M --numjobs=4 --offset_increment=8M
after=$(aio_wakeups)
# the deep queue's writes went through AIO (a lone request does not)
[ "$after" -gt "$before" ] || fail "no local AIO completion during libaio QD16 ($before -> $after)"
echo "ndfs-aio woke $((after - before)) times during libaio QD16"
# Large writes at depth: AIO writes them from the buffer the kernel wrote
# them to (ndfs's FUSE loop).
run_fio direct-libaio-large --direct=1 --ioengine=libaio --iodepth=8 --rw=randwrite \
    --bsrange=64k-1m --size=16M
run_fio buffered --direct=0 --ioengine=psync --rw=write --bs=64k --size=16M --fsync=32
run_fio buffered-mixed --direct=0 --ioengine=psync --rw=randwrite --bs=512 --size=2M \
    --numjobs=2 --offset_increment=16M --offset=32M

# Data written by one process is read back by another (after the first
# closed the file): write without verifying, then verify only.
run_fio write-only --direct=1 --ioengine=psync --rw=randwrite --bs=16k --size=8M --offset=48M \
    --do_verify=0
run_fio verify-only --direct=1 --ioengine=psync --rw=randwrite --bs=16k --size=8M --offset=48M \
    --verify_only=1
ndfsd_alive "$CONF"
unmount_ndfs "$MP" "$MOUNT_PID"
line=$(grep -E 'served [0-9]+ FUSE requests' "$MP.log") || fail "the mount's log has no FUSE loop summary"
echo "$line"
taken=$(sed -nE 's/.* ([0-9]+) writes kept their receive buffer.*/\1/p' <<<"$line")
[ "${taken:-0}" -gt 0 ] || fail "no local write kept its receive buffer"
