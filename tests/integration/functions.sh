# Helpers for the integration tests, sourced by every test-*.sh.
#
# Each test gets its own temp dir, config, data dir, control socket and mount
# points, so tests can run in parallel. Everything a test starts or creates is
# registered with on_cleanup and undone by the EXIT trap, even on failure.
# A test fails if a daemon it started logged a sanitizer report or crashed.
#
# Exit status 77 means "skipped" to meson.

set -euo pipefail

: "${NDFS_BUILD_DIR:?NDFS_BUILD_DIR must point at the meson build dir}"
NDFSD=$NDFS_BUILD_DIR/ndfs/ndfsd
NDFSADM=$NDFS_BUILD_DIR/ndfs/ndfsadm
NDFS=$NDFS_BUILD_DIR/ndfs/ndfs
# mount -t fuse.ndfs finds the ndfs helper through PATH.
export PATH=$NDFS_BUILD_DIR/ndfs:/usr/local/sbin:/usr/sbin:/sbin:$PATH

# The system python (with python3-gi), not one from a user's PATH.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

# Deadline for a daemon or mount to become ready; sanitizer builds are slower.
NDFS_TEST_DEADLINE=${NDFS_TEST_DEADLINE:-30}

test_name=$(basename "$0" .sh)

fail()
{
    echo "FAIL: $test_name: $*" >&2
    exit 1
}

skip()
{
    echo "SKIP: $test_name: $*" >&2
    exit 77
}

requires_root()
{
    [ "$(id -u)" -eq 0 ] || skip "needs root"
}

requires_fuse()
{
    requires_root
    [ -c /dev/fuse ] || skip "no /dev/fuse"
    command -v fusermount3 >/dev/null || skip "fusermount3 not installed"
}

requires_cmd()
{
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || skip "$c not installed"
    done
}

requires_loop()
{
    requires_root
    [ -e /dev/loop-control ] || skip "no loop devices"
}

# --- cleanup ---------------------------------------------------------------

cleanup_cmds=()
daemon_logs=()

# on_cleanup CMD...: run CMD (a string, eval'd) at exit, last registered first.
on_cleanup()
{
    cleanup_cmds+=("$*")
}

run_cleanup()
{
    local status=$? i
    set +e
    for ((i = ${#cleanup_cmds[@]} - 1; i >= 0; i--)); do
        eval "${cleanup_cmds[i]}"
    done
    for log in "${daemon_logs[@]}"; do
        [ -f "$log" ] || continue
        if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ERROR: UndefinedBehaviorSanitizer' "$log"; then
            echo "FAIL: $test_name: sanitizer report in $log:" >&2
            cat "$log" >&2
            status=1
        elif [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then
            echo "--- $log" >&2
            tail -n 50 "$log" >&2
        fi
    done
    for log in "${daemon_crashes[@]}"; do
        echo "FAIL: $test_name: $log" >&2
        status=1
    done
    if [ -n "${TESTDIR:-}" ] && [ -d "$TESTDIR" ]; then
        # Never rm through a mount that refused to go away.
        if grep -q " $TESTDIR" /proc/self/mountinfo; then
            echo "FAIL: $test_name: mounts left under $TESTDIR" >&2
            status=1
        else
            rm -rf "$TESTDIR"
        fi
    fi
    exit "$status"
}
daemon_crashes=()
trap run_cleanup EXIT

TESTDIR=$(mktemp -d /tmp/ndfs-test.XXXXXX)
# Other users (setpriv --reuid=nobody) must reach sockets and mount points.
chmod 0755 "$TESTDIR"

# --- waiting ---------------------------------------------------------------

# wait_until SECONDS CMD...: poll CMD every 50 ms until it succeeds or the
# deadline passes (returns 1 then).
wait_until()
{
    local deadline=$((SECONDS + $1))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

is_mounted()
{
    # mountinfo field 5 is the mount point (spaces escaped as \040).
    awk -v mp="$1" '$5 == mp { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# --- ndfsd -----------------------------------------------------------------

# write_config NAME [EXTRA-LINES]: a config for node NAME under $TESTDIR;
# prints its path. EXTRA-LINES are appended as they are (e.g. a [ccd] group).
write_config()
{
    local name=$1 extra=${2:-}
    local conf=$TESTDIR/$name.conf
    cat >"$conf" <<EOF
[node]
name = $name
data-dir = $TESTDIR/$name.data
control-socket = $TESTDIR/$name.sock
[cluster]
listen =
key-file =
$extra
EOF
    echo "$conf"
}

# Per node: pid and log, by config file path.
declare -A ndfsd_pid=()

socket_of()
{
    sed -n 's/^control-socket *= *//p' "$1"
}

# start_ndfsd CONF: runs ndfsd -f in the background, logs to CONF.log, waits
# until its socket answers "ndfsadm status". Sets NDFSD_PID.
start_ndfsd()
{
    local conf=$1 sock log
    sock=$(socket_of "$conf")
    log=${conf%.conf}.log
    "$NDFSD" -c "$conf" -f 2>>"$log" &
    NDFSD_PID=$!
    ndfsd_pid[$conf]=$NDFSD_PID
    daemon_logs+=("$log")
    on_cleanup "kill_ndfsd $NDFSD_PID"
    local deadline=$((SECONDS + NDFS_TEST_DEADLINE))
    until "$NDFSADM" -s "$sock" status >/dev/null 2>&1; do
        if ! kill -0 "$NDFSD_PID" 2>/dev/null; then
            wait "$NDFSD_PID" || true
            cat "$log" >&2
            fail "ndfsd -c $conf exited during startup"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "ndfsd -c $conf not ready in ${NDFS_TEST_DEADLINE}s"
        sleep 0.05
    done
}

# Cleanup hook: a daemon still running is stopped; one that died on its own
# (crashed) is a failure.
kill_ndfsd()
{
    local pid=$1 rc=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 143 ]; then
            daemon_crashes+=("ndfsd pid $pid exited with status $rc on SIGTERM")
        fi
    else
        wait "$pid" 2>/dev/null || rc=$?
        # 127: already reaped by stop_ndfsd.
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 127 ]; then
            daemon_crashes+=("ndfsd pid $pid died with status $rc")
        fi
    fi
}

# stop_ndfsd CONF: SIGTERM, wait; fails unless it exits with status 0.
stop_ndfsd()
{
    local conf=$1 pid rc=0
    pid=${ndfsd_pid[$conf]}
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "ndfsd (pid $pid) exited with status $rc on SIGTERM, expected 0"
}

# ndfsd_alive CONF: still running and answering.
ndfsd_alive()
{
    local conf=$1
    kill -0 "${ndfsd_pid[$conf]}" 2>/dev/null || fail "ndfsd -c $conf is not running"
    "$NDFSADM" -s "$(socket_of "$conf")" status >/dev/null || fail "ndfsd -c $conf does not answer"
}

# A single node in $TESTDIR: sets CONF and SOCK and starts it.
start_node()
{
    CONF=$(write_config "${1:-n1}" "${2:-}")
    SOCK=$(socket_of "$CONF")
    start_ndfsd "$CONF"
}

adm()
{
    "$NDFSADM" -s "$SOCK" "$@"
}

# --- ndfs mounts -----------------------------------------------------------

# mount_ndfs SOCKET MOUNTPOINT [OPTIONS...]: runs ndfs in the foreground (its
# log is MOUNTPOINT.log) and waits for the mount to appear.
mount_ndfs()
{
    local sock=$1 mp=$2 log=$2.log pid
    shift 2
    mkdir -p "$mp"
    "$NDFS" "$sock" "$mp" -f "$@" 2>>"$log" &
    pid=$!
    daemon_logs+=("$log")
    on_cleanup "unmount_ndfs '$mp' $pid"
    local deadline=$((SECONDS + NDFS_TEST_DEADLINE))
    until is_mounted "$mp"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            cat "$log" >&2
            fail "ndfs $sock $mp exited before mounting"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "$mp not mounted in ${NDFS_TEST_DEADLINE}s"
        sleep 0.05
    done
    MOUNT_PID=$pid
}

# Cleanup hook: lazy unmount, then reap the ndfs process; a crash fails.
unmount_ndfs()
{
    local mp=$1 pid=${2:-} rc=0
    if is_mounted "$mp"; then
        umount "$mp" 2>/dev/null || umount -l "$mp"
    fi
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        # The ndfs process exits once the kernel has dropped the mount.
        if ! wait_until 10 eval "! kill -0 $pid"; then
            kill -TERM "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 127 ]; then
        daemon_crashes+=("ndfs (pid $pid, $mp) exited with status $rc")
    fi
}

# unmount_if_mounted MOUNTPOINT: cleanup hook for kernel mounts (ext4 ...).
unmount_if_mounted()
{
    if is_mounted "$1"; then
        umount "$1" 2>/dev/null || umount -l "$1"
    fi
}

# as_nobody CMD...: runs CMD as nobody:nogroup without supplementary groups.
as_nobody()
{
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}

# --- loop devices ----------------------------------------------------------

# attach_loop FILE: prints the new loop device (losetup -f --show).
attach_loop()
{
    local dev
    dev=$(losetup -f --show "$@")
    on_cleanup "losetup -d '$dev' 2>/dev/null"
    echo "$dev"
}

# --- JSON and error checks -------------------------------------------------

# json_get JSON JQ-FILTER: prints the raw value.
json_get()
{
    jq -r "$2" <<<"$1"
}

# expect_error STATUS REGEX CMD...: CMD must exit with STATUS (an extended
# regex like 1 or [12]) and print a line matching REGEX on stderr.
expect_error()
{
    local want=$1 regex=$2 rc=0 err
    shift 2
    err=$("$@" 2>&1 >/dev/null) || rc=$?
    [[ $rc =~ ^($want)$ ]] || fail "'$*' exited $rc, expected $want (stderr: $err)"
    grep -qE -- "$regex" <<<"$err" || fail "'$*' stderr '$err' does not match /$regex/"
}
