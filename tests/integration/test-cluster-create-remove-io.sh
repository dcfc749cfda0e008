#!/usr/bin/env bash
# vdisks are created, removed and resized while every node's mount does
# I/O on other vdisks (issue 6): three nodes, each mounting every vdisk;
# io1, io2 and io3 (on n1, n2, n3) are under fio --verify=crc32c from
# another node's mount each (n1 -> io2, n2 -> io3, n3 -> io1) for the
# whole test. Meanwhile vdisks are created from each node, on each node
# (one by one, then three at once), appear on every mount and are usable
# there, and are removed again (from another node) and disappear from
# every mount; a name used again at once shows the new vdisk. io1, under
# I/O and mounted everywhere, grows: every mount sees the new size and the
# new region holds data. No fio run sees an error or a verify failure, nor
# a completion longer than NDFS_TEST_SHOW_MS (nothing paused the I/O).
# Each delay (command start -> seen on every mount) is printed.
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_cmd fio jq ss

# How long a created/removed/resized vdisk may take to show on every mount
# (twice that in the suite's sanitizer run, ASAN_OPTIONS set).
if [ -n "${ASAN_OPTIONS:-}" ]; then
    NDFS_TEST_SHOW_MS=${NDFS_TEST_SHOW_MS:-4000}
else
    NDFS_TEST_SHOW_MS=${NDFS_TEST_SHOW_MS:-2000}
fi

# now_ms: wall clock in ms without a fork.
now_ms()
{
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

start_cluster 3 1
for i in 1 2 3; do
    adm_on "$i" vdisk create "io$i" --size 32M --primary "n$i:$TESTDIR/io$i.img" >/dev/null ||
        fail "vdisk create io$i failed"
done
for i in 1 2 3; do
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show io3 || fail "n$i does not see io3"
    wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show io1 || fail "n$i does not see io1"
    mount_ndfs "${NODE_SOCK[$i]}" "$TESTDIR/mnt$i"
done
cd "$TESTDIR"

declare -A mtime0=()
for i in 1 2 3; do
    mtime0[$i]=$(mtime_ns "$TESTDIR/io$i.img")
done
# Node i's mount writes and verifies the vdisk on the next node: each run
# 4 MiB of 4 KiB random writes (about 2 s), then reads it all back.
for i in 1 2 3; do
    t=$((i % 3 + 1))
    fio_loop_start "io_n$i" "$TESTDIR/mnt$i/io$t" --ioengine=libaio --iodepth=8 --rw=randwrite \
        --bs=4k --size=4M --rate_iops=,500
done
for i in 1 2 3; do
    wait_written "$TESTDIR/io$i.img" "${mtime0[$i]}" 20
done

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

# wait_mounts WHAT T0 TEST NAME: on_mounts within NDFS_TEST_SHOW_MS of T0
# (the command's start), polled every 20 ms; prints the delay (and the
# command's own time, CMD_MS, if set), or fails showing each mount.
CMD_MS=
wait_mounts()
{
    local what=$1 t0=$2 ts i
    shift 2
    while :; do
        ts=$(now_ms)
        ! on_mounts "$@" || break
        # Only a check that started past the bound fails the test.
        if [ $((ts - t0)) -gt "$NDFS_TEST_SHOW_MS" ]; then
            for i in 1 2 3; do
                echo "n$i: mount: $(ls "$TESTDIR/mnt$i" | xargs); ndfsadm: $(adm_on "$i" --json vdisk list | jq -c '[(if type == "object" then .vdisks else . end) | .[].name]')" >&2
            done
            fail "$what: not seen on every mount within $NDFS_TEST_SHOW_MS ms"
        fi
        sleep 0.02
    done
    echo "$what: on every mount after $((ts - t0)) ms${CMD_MS:+ (command $CMD_MS ms)}"
    CMD_MS=
}

all_loops_running()
{
    local i
    for i in 1 2 3; do
        fio_loop_check "io_n$i"
    done
}

# use_vdisk NAME W R: writes a pattern through node W's mount, reads it back
# through node R's.
use_vdisk()
{
    local name=$1 w=$2 r=$3 got
    printf 'vdisk %s written on n%s' "$name" "$w" |
        dd of="$TESTDIR/mnt$w/$name" bs=4k conv=sync,notrunc oflag=direct status=none ||
        fail "cannot write $name through n$w's mount"
    got=$(dd if="$TESTDIR/mnt$r/$name" bs=4k count=1 iflag=direct status=none | tr -d '\0') ||
        fail "cannot read $name through n$r's mount"
    [ "$got" = "vdisk $name written on n$w" ] || fail "n$r's mount reads '$got' from $name"
}

# One by one: c$k is created from n$a with its disk on n$d, used, and removed
# from n$b.
for k in 1 2 3 4 5 6; do
    a=$(((k - 1) % 3 + 1))
    d=$((k % 3 + 1))
    b=$(((k + 1) % 3 + 1))
    t0=$(now_ms)
    adm_on "$a" vdisk create "c$k" --size 4M --primary "n$d:$TESTDIR/c$k.img" >/dev/null ||
        fail "n$a: vdisk create c$k (disk on n$d) failed"
    CMD_MS=$(($(now_ms) - t0))
    wait_mounts "create c$k (from n$a, disk on n$d)" "$t0" -e "c$k"
    use_vdisk "c$k" "$b" "$a"
    all_loops_running
    t0=$(now_ms)
    adm_on "$b" vdisk remove "c$k" >/dev/null || fail "n$b: vdisk remove c$k failed"
    CMD_MS=$(($(now_ms) - t0))
    wait_mounts "remove c$k (from n$b)" "$t0" ! "c$k"
    all_loops_running
done

# A name used again at once: every mount shows the new vdisk (its size),
# not what it cached of the removed one.
t0=$(now_ms)
adm_on 2 vdisk create c1 --size 8M --primary "n3:$TESTDIR/c1-again.img" >/dev/null ||
    fail "n2: vdisk create c1 again failed"
size_everywhere()
{
    local i
    for i in 1 2 3; do
        [ "$(stat -c %s "$TESTDIR/mnt$i/$1" 2>/dev/null)" = "$2" ] || return 1
    done
}
wait_until 10 size_everywhere c1 $((8 << 20)) ||
    fail "c1 created again (8 MiB): the mounts show sizes $(stat -c %s "$TESTDIR"/mnt{1,2,3}/c1 2>&1 | xargs)"
echo "create c1 again (8M, disk on n3): on every mount after $(($(now_ms) - t0)) ms"
use_vdisk c1 1 2
[ "$(dd if="$TESTDIR/c1-again.img" bs=4k count=1 status=none | tr -d '\0')" = "vdisk c1 written on n1" ] ||
    fail "the write to c1 (again) did not reach its new disk"
t0=$(now_ms)
adm_on 3 vdisk remove c1 >/dev/null || fail "n3: vdisk remove c1 (again) failed"
wait_mounts "remove c1 again" "$t0" ! c1
all_loops_running

# Three at once, one from each node, then removed at once.
t0=$(now_ms)
pids=()
for i in 1 2 3; do
    adm_on "$i" vdisk create "m$i" --size 4M --primary "n$i:$TESTDIR/m$i.img" >/dev/null &
    pids+=($!)
done
for i in 1 2 3; do
    wait "${pids[i - 1]}" || fail "n$i: concurrent vdisk create m$i failed"
done
for i in 1 2 3; do
    wait_mounts "concurrent create m$i" "$t0" -e "m$i"
done
for i in 1 2 3; do
    use_vdisk "m$i" "$i" "$((i % 3 + 1))"
done
all_loops_running
t0=$(now_ms)
pids=()
for i in 1 2 3; do
    adm_on "$(((i + 1) % 3 + 1))" vdisk remove "m$i" >/dev/null &
    pids+=($!)
done
for i in 1 2 3; do
    wait "${pids[i - 1]}" || fail "concurrent vdisk remove m$i failed"
done
for i in 1 2 3; do
    wait_mounts "concurrent remove m$i" "$t0" ! "m$i"
done
all_loops_running

# io1 grows while n3's fio writes it and every node has it mounted.
size_is()
{
    local i
    for i in 1 2 3; do
        [ "$(stat -c %s "$TESTDIR/mnt$i/io1")" = "$1" ] || return 1
    done
}
new=$((48 << 20))
t0=$(now_ms)
adm_on 2 vdisk resize io1 48M >/dev/null || fail "n2: vdisk resize io1 48M failed"
resize_ms=$(($(now_ms) - t0))
while :; do
    ts=$(now_ms)
    ! size_is "$new" || break
    if [ $((ts - t0)) -gt "$NDFS_TEST_SHOW_MS" ]; then
        for i in 1 2 3; do
            echo "n$i: mount size $(stat -c %s "$TESTDIR/mnt$i/io1"), ndfsadm $(vdisk_field "$i" io1 .size)" >&2
        done
        fail "resize io1: the new size is not on every mount within $NDFS_TEST_SHOW_MS ms"
    fi
    sleep 0.02
done
echo "resize io1 32M -> 48M (command ${resize_ms} ms): on every mount after $((ts - t0)) ms"
for i in 1 2 3; do
    [ "$(vdisk_field "$i" io1 .size)" = "$new" ] || fail "n$i: ndfsadm shows io1 size $(vdisk_field "$i" io1 .size)"
done
[ "$(stat -c %s "$TESTDIR/io1.img")" -ge "$new" ] || fail "io1.img was not grown: $(stat -c %s "$TESTDIR/io1.img")"
# The new region, through n2's mount (n1 masters it); n1's and n3's mounts
# and the disk file read it back.
printf 'past the old end' | dd of="$TESTDIR/mnt2/io1" bs=4k seek=$(((40 << 20) / 4096)) \
    conv=sync,notrunc oflag=direct status=none || fail "cannot write io1's new region through n2"
for i in 1 3; do
    got=$(dd if="$TESTDIR/mnt$i/io1" bs=4k skip=$(((40 << 20) / 4096)) count=1 iflag=direct status=none | tr -d '\0')
    [ "$got" = "past the old end" ] || fail "n$i's mount reads '$got' from io1's new region"
done
got=$(dd if="$TESTDIR/io1.img" bs=4k skip=$(((40 << 20) / 4096)) count=1 status=none | tr -d '\0')
[ "$got" = "past the old end" ] || fail "io1.img holds '$got' in the new region"

# The I/O went on the whole time (no loop ended), and every run verified.
all_loops_running
for i in 1 2 3; do
    touch "$TESTDIR/io_n$i.stop" # all loops end their current run together
done
for i in 1 2 3; do
    fio_loop_stop "io_n$i" 60
    # A change of other vdisks does not pause this one (no suspension, no
    # ack timeout): its longest completion stays short.
    [ "$FIO_PAUSE_MS" -le "$NDFS_TEST_SHOW_MS" ] ||
        fail "fio on n$i's mount: a completion took $FIO_PAUSE_MS ms: creating, removing or resizing other vdisks paused its I/O"
done
# Only io1..io3 are left, on every node and every mount.
for i in 1 2 3; do
    names=$(adm_on "$i" --json vdisk list | jq -r '(if type == "object" then .vdisks else . end) | .[].name' | sort | xargs)
    [ "$names" = "io1 io2 io3" ] || fail "n$i lists '$names'"
    names=$(ls "$TESTDIR/mnt$i" | xargs)
    [ "$names" = "io1 io2 io3" ] || fail "n$i's mount lists '$names'"
done
for i in 1 2 3; do
    kill -0 "$(node_pid "$i")" || fail "n$i died"
done
