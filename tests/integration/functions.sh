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
    # a daemon that crashed or hung in the cleanup fails the test: first,
    # so that the daemons' logs below are printed for it
    for log in "${daemon_crashes[@]}"; do
        echo "FAIL: $test_name: $log" >&2
        status=1
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
    # ENOSPC from a vdisk's image file is a full /tmp, not a bug: say so
    if [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then
        echo "--- free space in /tmp at exit: $(df -h --output=avail /tmp | tail -n 1)" >&2
    fi
    if [ -n "${NDFS_TEST_KEEP:-}" ] && [ -n "${TESTDIR:-}" ]; then
        # For a post-mortem: logs and files stay (mounts are gone).
        echo "NDFS_TEST_KEEP: $TESTDIR kept" >&2
    elif [ -n "${TESTDIR:-}" ] && [ -d "$TESTDIR" ]; then
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

# Per node: pid and log, by config file path; every pid ever spawned for a
# config, for the cleanup.
declare -A ndfsd_pid=()
declare -A ndfsd_pids=()

socket_of()
{
    sed -n 's/^control-socket *= *//p' "$1"
}

# add_daemon_log LOG: checked for sanitizer reports at exit (once).
add_daemon_log()
{
    local l
    for l in "${daemon_logs[@]}"; do
        [ "$l" != "$1" ] || return 0
    done
    daemon_logs+=("$1")
}

# spawn_ndfsd CONF [WRAPPER...]: runs [WRAPPER...] ndfsd -c CONF -f in the
# background, logging to CONF.log, without waiting. Sets NDFSD_PID. The
# wrapper (e.g. nsenter --net=...) must exec ndfsd so that the pid is its.
spawn_ndfsd()
{
    local conf=$1 log
    shift
    log=${conf%.conf}.log
    "$@" "$NDFSD" -c "$conf" -f 2>>"$log" &
    NDFSD_PID=$!
    ndfsd_pid[$conf]=$NDFSD_PID
    add_daemon_log "$log"
    # A node started again keeps its first place in the cleanup order: its
    # mounts, loop devices and file systems go first, while it still serves
    # their I/O (a new hook would stop it before them, leaving their
    # writeback waiting for a master).
    [ -n "${ndfsd_pids[$conf]:-}" ] || on_cleanup "kill_ndfsds '$conf'"
    ndfsd_pids[$conf]+=" $NDFSD_PID"
}

# start_ndfsd CONF [WRAPPER...]: spawn_ndfsd, then waits until its socket
# answers "ndfsadm status". Sets NDFSD_PID.
start_ndfsd()
{
    local conf=$1 sock log
    sock=$(socket_of "$conf")
    log=${conf%.conf}.log
    spawn_ndfsd "$@"
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

# Pids a test killed or saw exit on purpose, and waited for (reap_pid).
declare -A reaped_pids=()

# reap_pid PID: waits for PID and sets REAP_STATUS; cleanup will not count
# its exit as a crash. (bash remembers a reaped child's status, so a second
# wait would report it again.)
reap_pid()
{
    REAP_STATUS=0
    wait "$1" 2>/dev/null || REAP_STATUS=$?
    reaped_pids[$1]=1
}

# Cleanup hook: a daemon still running is stopped; one that died on its own
# (crashed) is a failure.
kill_ndfsd()
{
    local pid=$1 rc=0
    [ -z "${reaped_pids[$pid]:-}" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        # A stopped daemon (SIGSTOP) gets SIGTERM only once continued.
        kill -TERM "$pid" 2>/dev/null
        kill -CONT "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 143 ]; then
            daemon_crashes+=("ndfsd pid $pid exited with status $rc on SIGTERM")
        fi
    else
        wait "$pid" 2>/dev/null || rc=$?
        # 127: reaped by the test in a subshell
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 127 ]; then
            daemon_crashes+=("ndfsd pid $pid died with status $rc")
        fi
    fi
}

# Cleanup hook: kill_ndfsd on every ndfsd spawned for CONF.
kill_ndfsds()
{
    local pid
    for pid in ${ndfsd_pids[$1]}; do
        kill_ndfsd "$pid"
    done
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

# A command prefix for ndfs mounts, e.g. (nsenter --net=/run/netns/NS): the
# mount joins a node's network namespace but stays in ours.
MOUNT_WRAPPER=()

# mount_ndfs SOCKET MOUNTPOINT [OPTIONS...]: runs ndfs in the foreground (its
# log is MOUNTPOINT.log) and waits for the mount to appear.
mount_ndfs()
{
    local sock=$1 mp=$2 log=$2.log pid
    shift 2
    mkdir -p "$mp"
    "${MOUNT_WRAPPER[@]}" "$NDFS" "$sock" "$mp" -f "$@" 2>>"$log" &
    pid=$!
    add_daemon_log "$log"
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
            daemon_crashes+=("ndfs (pid $pid, $mp) still ran 10 s after its unmount: SIGTERM")
            # where its threads wait, into its log (printed below)
            local task
            for task in /proc/"$pid"/task/*; do
                echo "--- thread $(cat "$task/comm" 2>/dev/null) waits in $(cat "$task/wchan" 2>/dev/null):"
                cat "$task/stack" 2>/dev/null
            done >>"$mp.log" 2>&1
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

# attach_loop [LOSETUP-OPTIONS] FILE: sets LOOP_DEV to the new loop device
# (losetup -f --show), detached at exit. Not in $(...): the cleanup would be
# registered in the subshell and lost.
attach_loop()
{
    LOOP_DEV=$(losetup -f --show "$@") || fail "losetup -f $* failed"
    on_cleanup "detach_loop '$LOOP_DEV' '$(readlink -f "${*: -1}")'"
}

# detach_loop DEV FILE: detaches DEV if it still shows FILE (a test may have
# detached it, and a parallel test attached the same device since).
detach_loop()
{
    local back
    back=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 0
    [ "$back" = "$2" ] || return 0
    losetup -d "$1" 2>/dev/null
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

# --- clusters --------------------------------------------------------------
#
# Node i (1, 2, ...) is named n$i, with config $TESTDIR/n$i.conf, socket
# $TESTDIR/n$i.sock and log $TESTDIR/n$i.log. Its link l (1..CLUSTER_LINKS)
# listens on 127.0.$l.$i:$CLUSTER_PORT on loopback, or on
# 10.201.$l.$i:$CLUSTER_PORT inside its network namespace after
# netns_setup. The port is picked per test run so parallel tests never
# clash. Every node but n1 joins through n1's first address.

CLUSTER_LINKS=2
CLUSTER_PORT=
CLUSTER_KEY=$TESTDIR/cluster.key
CLUSTER_NETNS=0
# The election timeout is longer than the failure timeout: a link cut moves
# Raft's traffic to another link before a follower starts an election.
NDFS_TEST_HEARTBEAT_MS=${NDFS_TEST_HEARTBEAT_MS:-100}
NDFS_TEST_FAILURE_MS=${NDFS_TEST_FAILURE_MS:-1000}
NDFS_TEST_ELECTION_MS=${NDFS_TEST_ELECTION_MS:-1500}
declare -A NODE_CONF=() NODE_SOCK=() NODE_NS=()

# pick_port: a random port that nothing uses (TCP or UDP, any address).
pick_port()
{
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! ss -Htuan "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

# make_key FILE: a new cluster key (ndfsadm cluster init-key).
make_key()
{
    "$NDFSADM" cluster init-key "$1" >/dev/null || fail "ndfsadm cluster init-key $1 failed"
    [ "$(stat -c %a "$1")" = 600 ] || fail "cluster key $1 is not mode 0600"
}

# node_addr I LINK: node I's address on link LINK.
node_addr()
{
    if [ "$CLUSTER_NETNS" -eq 1 ]; then
        echo "10.201.$2.$1:$CLUSTER_PORT"
    else
        echo "127.0.$2.$1:$CLUSTER_PORT"
    fi
}

node_listen()
{
    local l out=""
    for ((l = 1; l <= CLUSTER_LINKS; l++)); do
        out+="${out:+;}$(node_addr "$1" "$l")"
    done
    echo "$out"
}

# write_node_config I [KEY-FILE [EXTRA-LINES]]: node I's config; joins
# through n1 unless I is 1.
write_node_config()
{
    local i=$1 key=${2:-$CLUSTER_KEY} extra=${3:-}
    local conf=$TESTDIR/n$i.conf join=""
    # n1 bootstraps the cluster: no join line.
    [ "$i" -eq 1 ] || join="join = $(node_addr 1 1)"
    cat >"$conf" <<EOC
[node]
name = n$i
data-dir = $TESTDIR/n$i.data
control-socket = $TESTDIR/n$i.sock
[cluster]
listen = $(node_listen "$i")
$join
key-file = $key
[membership]
heartbeat-interval-ms = $NDFS_TEST_HEARTBEAT_MS
failure-timeout-ms = $NDFS_TEST_FAILURE_MS
[ccd]
election-timeout-ms = $NDFS_TEST_ELECTION_MS
$extra
EOC
    NODE_CONF[$i]=$conf
    NODE_SOCK[$i]=$TESTDIR/n$i.sock
}

# in_node I CMD...: runs CMD in node I's network namespace (if any), in our
# mount namespace (so mounts stay visible to the test).
in_node()
{
    local i=$1
    shift
    if [ -n "${NODE_NS[$i]:-}" ]; then
        nsenter --net="/run/netns/${NODE_NS[$i]}" "$@"
    else
        "$@"
    fi
}

# spawn_node I: starts node I's ndfsd (in its namespace) without waiting.
spawn_node()
{
    local i=$1
    if [ -n "${NODE_NS[$i]:-}" ]; then
        # Its network namespace only, as in_node: "ip netns exec" would also
        # give it a new mount namespace, a copy of ours, holding every FUSE
        # mount that exists at that moment (ours, and those of a test that
        # runs alongside). With / private, as here, an unmount in our
        # namespace leaves the copy, the kernel keeps the FUSE connection,
        # and that mount's ndfs waits on /dev/fuse until this ndfsd exits.
        spawn_ndfsd "${NODE_CONF[$i]}" nsenter --net="/run/netns/${NODE_NS[$i]}"
    else
        spawn_ndfsd "${NODE_CONF[$i]}"
    fi
}

# wait_node_answers I: until node I's socket answers; fails if it exits.
wait_node_answers()
{
    local i=$1 pid=${ndfsd_pid[${NODE_CONF[$1]}]}
    local deadline=$((SECONDS + NDFS_TEST_DEADLINE))
    until adm_on "$i" status >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            fail "n$i (ndfsd -c ${NODE_CONF[$i]}) exited during startup"
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "n$i not answering in ${NODE_CONF[$i]} ${NDFS_TEST_DEADLINE}s"
        sleep 0.05
    done
}

start_cluster_node()
{
    spawn_node "$1"
    wait_node_answers "$1"
}

# start_cluster N [LINKS]: a key, N configs, n1 first, then the others at
# once; returns when every node reports the same epoch, leader and N members.
start_cluster()
{
    local n=$1 i
    CLUSTER_LINKS=${2:-2}
    [ -n "$CLUSTER_PORT" ] || CLUSTER_PORT=$(pick_port)
    make_key "$CLUSTER_KEY"
    for ((i = 1; i <= n; i++)); do
        write_node_config "$i" "$CLUSTER_KEY" "$(node_extra "$i")"
    done
    start_cluster_node 1
    for ((i = 2; i <= n; i++)); do
        spawn_node "$i"
    done
    for ((i = 2; i <= n; i++)); do
        wait_node_answers "$i"
    done
    wait_converged "$n" $(seq 1 "$n")
}

# Extra config lines for every node (CLUSTER_EXTRA) and for node I
# (NODE_EXTRA[I]), appended to the configs start_cluster writes, e.g.
# NODE_EXTRA[3]=$'[vdisk]\nio-timeout = 2s'.
CLUSTER_EXTRA=
declare -A NODE_EXTRA=()

node_extra()
{
    printf '%s\n%s\n' "$CLUSTER_EXTRA" "${NODE_EXTRA[$1]:-}"
}

# adm_on I ARGS...: ndfsadm on node I.
adm_on()
{
    local i=$1
    shift
    "$NDFSADM" -s "${NODE_SOCK[$i]}" "$@"
}

# cluster_view I: "EPOCH LEADER MEMBERS" (members sorted, comma-separated)
# from node I's status --json.
cluster_view()
{
    local j
    j=$(adm_on "$1" --json status) || return 1
    jq -er '"\(.epoch) \(.leader) \(.members | sort | join(","))"' <<<"$j"
}

# converged N I...: nodes I... report the same epoch, a leader and N members.
# Sets CLUSTER_EPOCH, CLUSTER_LEADER (a name) and CLUSTER_MEMBERS.
converged()
{
    local want=$1 first="" v i e l m
    shift
    for i in "$@"; do
        v=$(cluster_view "$i") || return 1
        read -r e l m <<<"$v"
        [ -n "$l" ] && [ "$l" != null ] || return 1
        [ "$(tr ',' '\n' <<<"$m" | grep -c .)" -eq "$want" ] || return 1
        [ -z "$first" ] || [ "$v" = "$first" ] || return 1
        first=$v
    done
    CLUSTER_EPOCH=$e
    CLUSTER_LEADER=$l
    CLUSTER_MEMBERS=$m
}

# wait_converged N I...: converged within the deadline, or fails showing
# every node's view.
wait_converged()
{
    local want=$1 i
    shift
    if ! wait_until "$NDFS_TEST_DEADLINE" converged "$want" "$@"; then
        for i in "$@"; do
            echo "n$i: $(cluster_view "$i" 2>&1 | tr '\n' ' ')" >&2
        done
        fail "nodes $* do not agree on $want members in ${NDFS_TEST_DEADLINE}s"
    fi
}

node_pid()
{
    echo "${ndfsd_pid[${NODE_CONF[$1]}]}"
}

# kill_node I [SIGNAL]: SIGKILL (default) node I and reap it.
kill_node()
{
    local pid
    pid=$(node_pid "$1")
    kill -"${2:-KILL}" "$pid"
    reap_pid "$pid"
}

# freeze_node I / thaw_node I: SIGSTOP / SIGCONT.
freeze_node()
{
    kill -STOP "$(node_pid "$1")"
}

thaw_node()
{
    kill -CONT "$(node_pid "$1")"
}

# --- network namespaces ----------------------------------------------------
#
# netns_setup N [LINKS]: one namespace per node and a "switch" namespace
# holding a bridge per link network; node I's link L is a veth ethL in its
# namespace, 10.201.L.I/24, plugged into bridge brL. The addresses exist only
# inside these namespaces. Cut a link with link_down I L, restore it with
# link_up I L. Everything goes away with the namespaces at exit.
netns_setup()
{
    local n=$1 i l ns sw
    requires_root
    requires_cmd ip nsenter
    CLUSTER_LINKS=${2:-2}
    CLUSTER_NETNS=1
    CLUSTER_PORT=${CLUSTER_PORT:-7400}
    sw=ndfs-$$-sw
    ip netns add "$sw" 2>/dev/null || skip "cannot create network namespaces"
    on_cleanup "ip netns del '$sw' 2>/dev/null"
    for ((l = 1; l <= CLUSTER_LINKS; l++)); do
        ip -n "$sw" link add "br$l" type bridge || fail "cannot create a bridge"
        ip -n "$sw" link set "br$l" up
    done
    for ((i = 1; i <= n; i++)); do
        ns=ndfs-$$-n$i
        ip netns add "$ns" || fail "ip netns add $ns failed"
        on_cleanup "ip netns del '$ns' 2>/dev/null"
        NODE_NS[$i]=$ns
        ip -n "$ns" link set lo up
        for ((l = 1; l <= CLUSTER_LINKS; l++)); do
            ip -n "$sw" link add "n$i-l$l" type veth peer name "eth$l" netns "$ns" ||
                fail "cannot create a veth pair"
            ip -n "$sw" link set "n$i-l$l" master "br$l" up
            ip -n "$ns" addr add "10.201.$l.$i/24" dev "eth$l"
            ip -n "$ns" link set "eth$l" up
        done
    done
}

link_down()
{
    ip -n "${NODE_NS[$1]}" link set "eth$2" down
}

link_up()
{
    ip -n "${NODE_NS[$1]}" link set "eth$2" up
}

# node_list I / link_list I: node I's node list and link list as JSON arrays.
node_list()
{
    adm_on "$1" --json node list | jq '.nodes? // .'
}

link_list()
{
    adm_on "$1" --json link list | jq '.links? // .'
}

# link_state I L STATE: node I's links from its address on network L to the
# two other nodes (a three-node cluster) are all in STATE (up or down).
link_state()
{
    link_list "$1" | jq -e --arg a "10.201.$2.$1:" --arg s "$3" '
        [.[] | select((.local | startswith($a)) and (.peer | test("^n[0-9]+$")))] as $l
        | ($l | length == 2) and all($l[]; .state == $s)' >/dev/null
}

# link_bytes I L: bytes node I sent and received from its network-L address.
link_bytes()
{
    link_list "$1" | jq --arg a "10.201.$2.$1:" \
        '[.[] | select(.local | startswith($a)) | .bytes_sent + .bytes_received] | add // 0'
}

# --- high availability (issue 5) -------------------------------------------
#
# A "dual-ported" vdisk: primary n1:FILE and secondary n2:FILE name the SAME
# file, as two nodes cabled to one disk would. Its mapping (master, failed
# paths) and the mounts' I/O state come from ndfsadm --json vdisk show.

# ms_now: CLOCK_MONOTONIC-ish wall time in ms (for durations).
ms_now()
{
    echo $(($(date +%s%N) / 1000000))
}

# dual_vdisk NAME SIZE [NODES...]: creates $TESTDIR/NAME.img and the vdisk
# NAME with primary n1 and secondary n2 on it; waits until nodes NODES
# (default 1 2 3) see it.
dual_vdisk()
{
    local name=$1 size=$2
    shift 2
    pair_vdisk "$name" "$size" 1 2 "$@"
}

# pair_vdisk NAME SIZE P S [NODES...]: dual_vdisk with primary nP and
# secondary nS (both on $TESTDIR/NAME.img).
pair_vdisk()
{
    local name=$1 size=$2 p=$3 s=$4 img=$TESTDIR/$1.img i
    shift 4
    truncate -s "$size" "$img"
    adm_on "$p" vdisk create "$name" --size "$size" --primary "n$p:$img" --secondary "n$s:$img" \
        >/dev/null || fail "vdisk create $name (primary n$p:$img, secondary n$s:$img) failed"
    [ "$#" -gt 0 ] || set -- 1 2 3
    for i in "$@"; do
        wait_until "$NDFS_TEST_DEADLINE" adm_on "$i" vdisk show "$name" ||
            fail "n$i does not see vdisk $name"
    done
}

# vdisk_json I NAME: node I's ndfsadm --json vdisk show NAME.
vdisk_json()
{
    adm_on "$1" --json vdisk show "$2"
}

# vdisk_field I NAME JQ-FILTER: one field of it (raw).
vdisk_field()
{
    local j
    j=$(vdisk_json "$1" "$2") || return 1
    jq -er "$3" <<<"$j"
}

# masters_are NAME NODE I...: nodes I... all say NAME's master is NODE (a
# name, e.g. n2).
masters_are()
{
    local name=$1 node=$2 i m
    shift 2
    for i in "$@"; do
        m=$(vdisk_field "$i" "$name" .master) || return 1
        [ "$m" = "$node" ] || return 1
    done
}

# wait_master NAME NODE SECONDS I...: masters_are within SECONDS, or fails
# showing what every node says. Sets WAIT_MS to the time it took.
wait_master()
{
    local name=$1 node=$2 secs=$3 i t0
    shift 3
    t0=$(ms_now)
    if ! wait_until "$secs" masters_are "$name" "$node" "$@"; then
        for i in "$@"; do
            echo "n$i: $(vdisk_json "$i" "$name" 2>&1 | jq -c . 2>/dev/null)" >&2
        done
        fail "vdisk $name: master is not $node on nodes $* within ${secs}s"
    fi
    WAIT_MS=$(($(ms_now) - t0))
}

# is_member I J...: node I's status lists nJ... as members.
is_member()
{
    local i=$1 j m
    shift
    m=$(adm_on "$i" --json status | jq -r '.members | join(" ")') || return 1
    for j in "$@"; do
        [[ " $m " == *" n$j "* ]] || return 1
    done
}

# not_member I J: node I's status does not list nJ.
not_member()
{
    local m
    m=$(adm_on "$1" --json status | jq -r '.members | join(" ")') || return 1
    [[ " $m " != *" n$2 "* ]]
}

# restart_node I: starts node I's ndfsd again (after kill_node) and waits
# until it answers.
restart_node()
{
    start_cluster_node "$1"
}

# log_size I: the current size of node I's log (for log_since).
log_size()
{
    stat -c %s "$TESTDIR/n$1.log"
}

# log_since I OFFSET: node I's log from byte OFFSET on.
log_since()
{
    tail -c +"$(($2 + 1))" "$TESTDIR/n$1.log"
}

# mtime_ns FILE: modification time in ns.
mtime_ns()
{
    stat -c %.9Y "$1" | tr -d .
}

# wait_written FILE MTIME SECONDS: until FILE's mtime differs from MTIME
# (something wrote to it), or fails.
wait_written()
{
    wait_until "$3" eval "[ \"\$(mtime_ns '$1')\" != '$2' ]" ||
        fail "nothing wrote to $1 within $3 s"
}

# fio_start NAME FILE FIO-ARGS...: background fio on FILE, direct, with
# crc32c verify (fatal), JSON to $TESTDIR/NAME.json. Sets FIO_PID. Killed
# at exit if still running.
fio_start()
{
    local name=$1 file=$2
    shift 2
    fio --name="$name" --filename="$file" --direct=1 --verify=crc32c --verify_fatal=1 \
        --verify_state_save=0 --do_verify=1 --output-format=json --output="$TESTDIR/$name.json" "$@" \
        2>"$TESTDIR/$name.err" &
    FIO_PID=$!
    on_cleanup "kill_fio $FIO_PID"
}

# Cleanup hook: a fio still running (stuck on a mount) is killed.
kill_fio()
{
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    return 0
}

# fio_finish NAME PID [SECONDS]: waits for that fio (at most SECONDS,
# default 60: then fails showing where it hangs); fails unless it exits 0
# with no error and no verify failure. Sets FIO_PAUSE_MS to its longest
# completion latency (read or write) in ms.
fio_finish()
{
    local name=$1 pid=$2 secs=${3:-60} rc=0
    if ! wait_until "$secs" eval "! kill -0 $pid"; then
        echo "fio $name still running after ${secs}s; stack:" >&2
        cat "/proc/$pid/stack" >&2 2>/dev/null
        fail "fio $name did not finish within ${secs}s"
    fi
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$TESTDIR/$name.err" >&2
        sed -n '/^{/,$!p' "$TESTDIR/$name.json" >&2
        fail "fio $name exited with status $rc (an application-visible I/O error or a verify failure)"
    fi
    # fio prints notes before the JSON document.
    sed -n '/^{/,$p' "$TESTDIR/$name.json" >"$TESTDIR/$name.clean.json"
    jq -e '[.jobs[].error] | all(. == 0)' "$TESTDIR/$name.clean.json" >/dev/null ||
        fail "fio $name reported an error: $(jq -c '[.jobs[].error]' "$TESTDIR/$name.clean.json")"
    FIO_PAUSE_MS=$(jq -r '[.jobs[] | .write.clat_ns.max, .read.clat_ns.max] | max / 1e6 | floor' \
        "$TESTDIR/$name.clean.json")
    local w r
    w=$(jq '[.jobs[].write.total_ios] | add' "$TESTDIR/$name.clean.json")
    r=$(jq '[.jobs[].read.total_ios] | add' "$TESTDIR/$name.clean.json")
    echo "fio $name: $w writes, $r verified reads, longest completion ${FIO_PAUSE_MS} ms"
}

# io_blocked I NAME: node I's mounts have requests of NAME waiting, and say
# why (blocked non-empty, pending > 0).
io_blocked()
{
    local j
    j=$(vdisk_json "$1" "$2") || return 1
    jq -e '(.blocked // "") != "" and .pending > 0' <<<"$j" >/dev/null
}

# io_idle I NAME: node I's mounts have nothing pending on NAME and nothing
# blocked.
io_idle()
{
    local j
    j=$(vdisk_json "$1" "$2") || return 1
    jq -e '.pending == 0 and (.blocked // "") == ""' <<<"$j" >/dev/null
}

# wait_io_idle I NAME [SECONDS]: io_idle within SECONDS (default 5: a mount
# reports its state at most once a second), or fails showing it.
wait_io_idle()
{
    wait_until "${3:-5}" io_idle "$1" "$2" ||
        fail "n$1 still reports waiting I/O on $2 with no I/O running: $(vdisk_json "$1" "$2" | jq -c .)"
}

# requires_nbd: nbdkit (with its error and delay filters) and nbdfuse.
have_nbd()
{
    command -v nbdkit >/dev/null && command -v nbdfuse >/dev/null &&
        nbdkit --filter=error --filter=delay file --help >/dev/null 2>&1
}

# nbd_disk NAME FILE [NBDKIT-ARGS...]: FILE served by nbdkit's file plugin
# (with NBDKIT-ARGS, e.g. --filter=delay delay-write=20ms) on a unix
# socket, mounted with nbdfuse: sets NBD_DISK to the file that is FILE
# through nbd (a disk whose faults and delays the test controls). Gone at
# exit.
nbd_disk()
{
    local name=$1 file=$2 sock=$TESTDIR/$1.nbd.sock mp=$TESTDIR/$1.nbd pid
    shift 2
    local filters=() params=() a
    for a in "$@"; do
        case $a in
        --filter=*) filters+=("$a") ;;
        *) params+=("$a") ;;
        esac
    done
    nbdkit -f -U "$sock" "${filters[@]}" file file="$file" cache=none "${params[@]}" \
        2>"$TESTDIR/$name.nbdkit.log" &
    pid=$!
    on_cleanup "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    wait_until 10 test -S "$sock" || fail "nbdkit does not listen: $(cat "$TESTDIR/$name.nbdkit.log")"
    mkdir -p "$mp"
    nbdfuse "$mp/disk" --unix "$sock" 2>"$TESTDIR/$name.nbdfuse.log" &
    pid=$!
    on_cleanup "unmount_if_mounted '$mp'; kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    wait_until 10 test -e "$mp/disk" || fail "nbdfuse did not mount: $(cat "$TESTDIR/$name.nbdfuse.log")"
    NBD_DISK=$mp/disk
}

# --- online reconfiguration (issue 6) --------------------------------------
#
# Moves run ndfsadm vdisk move on a dual-ported vdisk (pair_vdisk: both
# paths are $TESTDIR/NAME.img), so a move is named by nodes alone.

# vdisk_move I NAME P [S]: ndfsadm --json vdisk move NAME --primary
# nP:$TESTDIR/NAME.img [--secondary nS:...] on node I; fails unless it
# exits 0 and reports paused_ms. Sets MOVE_PAUSED_MS (what it reports),
# MOVE_MS (how long the command took), MOVE_START and MOVE_END (ms_now).
vdisk_move()
{
    local i=$1 name=$2 p=$3 s=${4:-} img=$TESTDIR/$2.img out rc=0 t0 args
    args=(--primary "n$p:$img")
    [ -z "$s" ] || args+=(--secondary "n$s:$img")
    t0=$(ms_now)
    out=$(adm_on "$i" --json vdisk move "$name" "${args[@]}" 2>"$TESTDIR/move.err") || rc=$?
    MOVE_END=$(ms_now)
    MOVE_START=$t0
    MOVE_MS=$((MOVE_END - t0))
    [ "$rc" -eq 0 ] ||
        fail "n$i: vdisk move $name --primary n$p${s:+ --secondary n$s} exited $rc after $MOVE_MS ms: $(cat "$TESTDIR/move.err")"
    MOVE_PAUSED_MS=$(jq -er '.paused_ms | numbers' <<<"$out") ||
        fail "vdisk move $name: no paused_ms in its --json answer: $out"
}

# ms_stats VALUE...: sets STATS_MEDIAN (the lower middle one for an even
# count) and STATS_MAX.
ms_stats()
{
    local sorted
    sorted=$(printf '%s\n' "$@" | sort -n)
    STATS_MEDIAN=$(awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }' <<<"$sorted")
    STATS_MAX=$(tail -n1 <<<"$sorted")
}

# fio_loop_start NAME FILE FIO-ARGS...: fio_start's verified job (give it a
# fixed size: each run writes its region, then reads it back and checks it)
# run again and again until fio_loop_stop NAME: load for as long as a test
# needs it, every write checked. Run k reports to $TESTDIR/NAME.k.json and
# logs each completion (time in ms since the epoch, as ms_now, and latency)
# to $TESTDIR/NAME.k_clat.1.log. The loop ends at the first failing run.
# Sets FIO_LOOP_PID.
fio_loop_start()
{
    local name=$1 file=$2
    shift 2
    rm -f "$TESTDIR/$name.stop" "$TESTDIR/$name.rc"
    (
        set +e
        k=0
        while [ ! -e "$TESTDIR/$name.stop" ]; do
            k=$((k + 1))
            fio --name="$name" --filename="$file" --direct=1 --verify=crc32c --verify_fatal=1 \
                --verify_state_save=0 --do_verify=1 --output-format=json \
                --output="$TESTDIR/$name.$k.json" --write_lat_log="$TESTDIR/$name.$k" \
                --log_avg_msec=0 --log_unix_epoch=1 "$@" 2>"$TESTDIR/$name.$k.err" &
            echo "$!" >"$TESTDIR/$name.fio-pid"
            wait "$!"
            rc=$?
            echo "$k $rc" >"$TESTDIR/$name.rc"
            [ "$rc" -eq 0 ] || exit "$rc"
        done
        exit 0
    ) &
    FIO_LOOP_PID=$!
    declare -g "fio_loop_pid_$name=$FIO_LOOP_PID"
    on_cleanup "kill_fio_loop $name $FIO_LOOP_PID"
}

# Cleanup hook: a loop still running is stopped, its fio killed.
kill_fio_loop()
{
    local name=$1 pid=$2 fpid
    touch "$TESTDIR/$name.stop"
    if kill -0 "$pid" 2>/dev/null; then
        fpid=$(cat "$TESTDIR/$name.fio-pid" 2>/dev/null) && kill -KILL "$fpid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# fio_loop_running NAME: the loop has not ended (no run failed).
fio_loop_running()
{
    local v=fio_loop_pid_$1
    kill -0 "${!v}" 2>/dev/null
}

# fio_loop_check NAME: fails if a run of the loop failed already.
fio_loop_check()
{
    fio_loop_running "$1" && return 0
    fio_loop_stop "$1" 0
}

# fio_loop_stop NAME [SECONDS]: lets the current run finish (at most
# SECONDS, default 60) and ends the loop; fails unless every run exited 0
# with no error. Sets FIO_PAUSE_MS to the longest completion latency of all
# runs, FIO_RUNS to their number and FIO_SLOW to the three longest
# completions and when they ended (printed).
fio_loop_stop()
{
    local name=$1 secs=${2:-60} v=fio_loop_pid_$1 pid rc=0 k last j w=0 r=0 m
    pid=${!v}
    touch "$TESTDIR/$name.stop"
    if ! wait_until "$secs" eval "! kill -0 $pid"; then
        echo "fio $name still running after ${secs}s; stack:" >&2
        cat "/proc/$(cat "$TESTDIR/$name.fio-pid")/stack" >&2 2>/dev/null
        fail "fio $name did not finish within ${secs}s"
    fi
    wait "$pid" || rc=$?
    read -r last _ <"$TESTDIR/$name.rc" || fail "fio $name never ran"
    if [ "$rc" -ne 0 ]; then
        cat "$TESTDIR/$name.$last.err" >&2
        sed -n '/^{/,$!p' "$TESTDIR/$name.$last.json" >&2
        fail "fio $name (run $last) exited with status $rc (an application-visible I/O error or a verify failure)"
    fi
    FIO_PAUSE_MS=0
    for ((k = 1; k <= last; k++)); do
        j=$TESTDIR/$name.$k.clean.json
        sed -n '/^{/,$p' "$TESTDIR/$name.$k.json" >"$j"
        jq -e '[.jobs[].error] | all(. == 0)' "$j" >/dev/null ||
            fail "fio $name run $k reported an error: $(jq -c '[.jobs[].error]' "$j")"
        m=$(jq -r '[.jobs[] | .write.clat_ns.max, .read.clat_ns.max] | max / 1e6 | floor' "$j")
        [ "$m" -le "$FIO_PAUSE_MS" ] || FIO_PAUSE_MS=$m
        w=$((w + $(jq '[.jobs[].write.total_ios] | add' "$j")))
        r=$((r + $(jq '[.jobs[].read.total_ios] | add' "$j")))
    done
    FIO_RUNS=$last
    echo "fio $name: $last runs, $w writes, $r verified reads, longest completion ${FIO_PAUSE_MS} ms"
    # When the longest completions ended (ms since the epoch, as ms_now).
    FIO_SLOW=$(cat "$TESTDIR/$name".*_clat.*.log 2>/dev/null |
        awk -F', *' '{ print int($2 / 1e6), $1 }' | sort -rn |
        awk 'NR <= 3 { printf "%s%s ms ending at %s", (NR > 1 ? ", " : ""), $1, $2 }')
    [ -z "$FIO_SLOW" ] || echo "fio $name: longest completions: $FIO_SLOW"
}
