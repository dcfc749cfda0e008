#!/usr/bin/env bash
# ext4 on a loop device over a dual-ported vdisk mounted on n3, across
# kills of the master: each cycle writes files of known content and syncs,
# kills -9 the current master, writes and syncs more files while the other
# path takes over, restarts the killed node. Then: umount, fsck -n clean,
# mount again, every file's checksum matches (nothing synced was lost).
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-50}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-600}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1000}
source "$(dirname "$0")/functions.sh"
requires_fuse
requires_loop
requires_cmd mkfs.ext4 fsck.ext4 sha256sum jq ss

CYCLES=${NDFS_FAILOVER_EXT4_CYCLES:-4}

start_cluster 3 2
dual_vdisk e 128M
wait_master e n1 "$NDFS_TEST_DEADLINE" 1 2 3
MP=$TESTDIR/mnt3
mount_ndfs "${NODE_SOCK[3]}" "$MP"
attach_loop --direct-io=on "$MP/e"
LOOP=$LOOP_DEV
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 on $LOOP failed"
EXT=$TESTDIR/ext4
mkdir -p "$EXT"
mount "$LOOP" "$EXT" || fail "mount $LOOP failed"
on_cleanup "unmount_if_mounted '$EXT'"
cd "$TESTDIR"
: >"$TESTDIR/sums"

# write_files TAG COUNT: COUNT files of random size (512 B to 512 KiB) and
# content under $EXT/TAG/, their checksums in $TESTDIR/sums; then sync. About
# 25 MiB in all: the sparse image takes that much of /tmp, not its 128 MiB.
write_files()
{
    local tag=$1 count=$2 f k
    mkdir -p "$EXT/$tag"
    for ((k = 1; k <= count; k++)); do
        f=$EXT/$tag/f$k
        head -c $((RANDOM * 16 + 512)) /dev/urandom >"$f" || fail "writing $f failed"
        (cd "$EXT" && sha256sum "$tag/f$k") >>"$TESTDIR/sums"
    done
    sync -f "$EXT" || fail "sync of $EXT after writing $tag failed"
}

write_files before 20
for ((c = 1; c <= CYCLES; c++)); do
    m=$(vdisk_field 3 e .master) || fail "vdisk show e on n3 failed"
    case $m in
    n1) k=1 o=2 ;;
    n2) k=2 o=1 ;;
    *) fail "cycle $c: unexpected master '$m'" ;;
    esac
    write_files "c$c-synced" 10
    echo "cycle $c: kill -9 n$k (the master)"
    t0=$(ms_now)
    kill_node "$k"
    # Written and synced while the master is gone: the sync waits for the
    # takeover.
    write_files "c$c-during" 10
    echo "cycle $c: files written and synced $(($(ms_now) - t0)) ms after the kill"
    wait_master e "n$o" 30 "$o" 3
    restart_node "$k"
    wait_converged 3 1 2 3
done
umount "$EXT" || fail "umount $EXT failed"
# Drop the loop device's buffers: the checks read through the vdisk.
blockdev --flushbufs "$LOOP"
fsck.ext4 -n -f "$LOOP" >"$TESTDIR/fsck.log" 2>&1 || { cat "$TESTDIR/fsck.log" >&2; fail "fsck -n found errors"; }
mount "$LOOP" "$EXT" || fail "second mount of $LOOP failed"
(cd "$EXT" && sha256sum --quiet -c "$TESTDIR/sums") >"$TESTDIR/sums.log" 2>&1 ||
    { cat "$TESTDIR/sums.log" >&2; fail "files differ after the failovers and a remount"; }
echo "$(wc -l <"$TESTDIR/sums") files intact after $CYCLES kills of the master"
umount "$EXT"
# The image itself (both paths) holds a clean file system.
fsck.ext4 -n -f "$TESTDIR/e.img" >"$TESTDIR/fsck-img.log" 2>&1 ||
    { cat "$TESTDIR/fsck-img.log" >&2; fail "fsck of the disk file found errors"; }
