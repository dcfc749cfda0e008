#!/usr/bin/env bash
# I/O at and past the end of a vdisk behaves as on a block device: reads are
# short (0 bytes at the end), writes past the end fail with ENOSPC, and the
# size never changes.
source "$(dirname "$0")/functions.sh"
requires_fuse

start_node n1
adm vdisk create a --size 1M --primary "n1:$TESTDIR/a.img"
MP=$TESTDIR/mnt
mount_ndfs "$SOCK" "$MP"
SIZE=$((1 << 20))

"$PYTHON" - "$MP/a" "$SIZE" <<'PY'
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])

def check(what, ok):
    if not ok:
        sys.exit(f"FAIL: {what}")

for flags in (os.O_RDWR, os.O_RDWR | os.O_DIRECT):
    name = "O_DIRECT" if flags & os.O_DIRECT else "buffered"
    fd = os.open(path, flags)
    # O_DIRECT needs an aligned buffer: mmap gives one.
    import mmap
    m = mmap.mmap(-1, 4096)
    check(f"{name}: read at the end returns 0 bytes", os.preadv(fd, [m], size) == 0)
    check(f"{name}: read past the end returns 0 bytes", os.preadv(fd, [m], size + 4096) == 0)
    check(f"{name}: read across the end is short", os.preadv(fd, [m], size - 512) == 512)
    m[:] = b"\xab" * 4096
    for off in (size, size + 4096):
        try:
            n = os.pwritev(fd, [m], off)
            check(f"{name}: write at {off} (size {size}) returned {n}, expected ENOSPC", False)
        except OSError as e:
            check(f"{name}: write at {off}: {e}, expected ENOSPC", e.errno == errno.ENOSPC)
    # Across the end: short (as a block device) or ENOSPC; never grows.
    try:
        n = os.pwritev(fd, [m], size - 512)
        check(f"{name}: write across the end returned {n}", n == 512)
    except OSError as e:
        check(f"{name}: write across the end: {e}", e.errno == errno.ENOSPC)
    os.fsync(fd)
    check(f"{name}: size changed to {os.fstat(fd).st_size}", os.fstat(fd).st_size == size)
    os.close(fd)
PY

# What dd users see.
err=$(dd if=/dev/zero of="$MP/a" bs=512 count=1 oflag=seek_bytes seek=$SIZE conv=notrunc 2>&1) &&
    fail "dd past the end succeeded"
grep -q 'No space left on device' <<<"$err" || fail "dd past the end: '$err'"
n=$(dd if="$MP/a" bs=4096 skip=$((SIZE / 4096)) count=1 status=none | wc -c)
[ "$n" -eq 0 ] || fail "dd read at the end got $n bytes"

# Nothing changed the size.
[ "$(stat -c %s "$MP/a")" -eq $SIZE ] || fail "vdisk size is $(stat -c %s "$MP/a")"
[ "$(stat -c %s "$TESTDIR/a.img")" -eq $SIZE ] || fail "backing file size is $(stat -c %s "$TESTDIR/a.img")"
ndfsd_alive "$CONF"
