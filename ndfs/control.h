/* The control protocol between ndfsd and its clients (ndfsadm, ndfs mounts)
 * over the node's unix control socket.
 *
 * A frame is a 12-byte header followed by a body:
 *   u32 magic   "NDFC" (0x4346444e, little endian)
 *   u8  version NDFS_CONTROL_VERSION
 *   u8  kind    enum ndfs_control_kind
 *   u16 flags   0
 *   u32 length  body length, at most NDFS_CONTROL_MAX_BODY
 * The body is a serialized GVariant (little endian, normal form enforced on
 * decode) whose type depends on the kind:
 *   request  "(tsa{sv})"   request id, command, arguments
 *   response "(tisa{sv})"  request id, status (0 or -errno), error message
 *                          ("" on success), result
 *   event    "(sa{sv})"    event name, arguments
 *
 * Commands (arguments -> result; see ndfsd(8) for the list of errors):
 *   hello        {client s}                -> {node s, cluster-id s, epoch t}
 *   status       {}                        -> {node s, cluster-id s, epoch t,
 *                                              leader s, members as, vdisks t}
 *   vdisk.create {name s, size t, primary s, secondary s?, owner s?,
 *                 group s?, mode u?}        -> vdisk
 *   vdisk.list   {}                        -> {vdisks aa{sv}}
 *   vdisk.show   {name s}                  -> vdisk + {open-count u}
 *   vdisk.remove {name s, force b?}        -> {}
 *   vdisk.chmod  {name s, mode u}          -> vdisk
 *   vdisk.chown  {name s, owner s?, group s?} -> vdisk
 *   vdisk.resize {name s, size t}          -> vdisk
 *   watch        {}                        -> {}  then events on this connection
 *   vdisk.open   {name s}                  -> {}  a mount opened the vdisk file
 *   vdisk.close  {name s}                  -> {}  ... and closed it
 *   node.list    {}                        -> {nodes aa{sv}}: name s, id t,
 *                                              addresses as, role s ("voter" |
 *                                              "standby"), up b, leader b,
 *                                              links-up u, links-total u
 *   node.remove  {name s}                  -> {}
 *   link.list    {}                        -> {links aa{sv}}: peer s, index u,
 *                                              local s, remote s, up b, rtt-us u,
 *                                              bytes-sent t, bytes-received t
 *   link.add     {node s, address s}       -> {node s, address s, index u,
 *                                              paused-ms t}: the node gets the link
 *                                              address at the first free index (the
 *                                              node is asked first whether it can
 *                                              listen on it: "node n2: cannot listen
 *                                              on A (TCP): ..."); -EADDRINUSE another
 *                                              node has it, -EEXIST it has it, -ENOSPC
 *                                              8 in use, -EBUSY the node is not a member
 *   link.remove  {node s, address s}       -> the same: the index is left empty
 *                                              (the other links keep theirs); -ENOENT
 *                                              not its address, -EINVAL its last one
 *                (both run the protocol for the vdisks the node masters)
 *   (cluster nodes) hello also returns {key-file s} ("" without network):
 *   a mount on this node reads the cluster key from it to reach masters.
 * Changes sent to a node that is not the CCD leader are forwarded to the
 * leader; without a majority they fail at once with -EAGAIN
 * "no quorum: 1 of 3 voters reachable". status also returns {quorum b}.
 *
 * High availability (issue 5):
 *   vdisk.fail-path    {name s, node s}    -> vdisk  marks node's path of the vdisk
 *                      failed; if node masters it and the other path is good and
 *                      its node a member, the other path becomes the master
 *                      (-EINVAL: node is neither primary nor secondary)
 *   vdisk.restore-path {name s, node s}    -> vdisk  marks it good again; if the
 *                      current master's path is failed, node's path becomes master
 *   vdisk.failback     {name s}            -> vdisk  the primary masters the vdisk
 *                      again (-EBUSY with a reason when the primary's path is
 *                      failed or its node is not a member; a no-op when it does)
 *   vdisk.io-state     {name s, id t, pending u, in-flight u, blocked s,
 *                       waiting-ms t}      -> {}  a mount's I/O state of one
 *                      vdisk: requests in its pending table, of which sent and
 *                      unanswered, and why the others wait ("" when nothing
 *                      waits; e.g. "master n1 not reachable", "no master: every
 *                      path failed", "master n1 has no lease", "waiting for
 *                      epoch 7"), the oldest wait. Sent on every change of blocked,
 *                      and at most once a second while requests are pending; a
 *                      state with pending 0 and blocked "" ends it. Any client.
 *   vdisk.show answers also {pending u, in-flight u, blocked s, waiting-ms t}: the
 *   sums over this node's mounts (blocked: the first non-empty reason).
 *   hello answers also {lease-expiry-ns t, io-timeout-ms t, poll-us u}: this
 *   node's lease (CLOCK_MONOTONIC ns; G_MAXUINT64: never runs out, a single
 *   node; 0: none), [vdisk] io-timeout (0: wait forever) and [vdisk] poll-us
 *   (how long the mount's driver polls after I/O; absent: 0).
 * Changes of the mapping are vdisk.changed events whose dict has a new
 * master or failed list, and an epoch event.
 *
 * Online reconfiguration (issue 6; the suspend / drain / ack / update /
 * resume protocol, see reconfig.h):
 *   vdisk.move     {name s, primary s ("node:path"), secondary s?}
 *                                         -> vdisk + {paused-ms t}  live switchover:
 *                      the new primary masters the vdisk (on_secondary false;
 *                      failed flags stay with their path). Secondary absent: a new
 *                      primary that is the current secondary swaps the two; one on
 *                      the secondary's node with another path is refused until
 *                      secondary is given; otherwise the secondary is kept.
 *                      -EBUSY when the new primary's node is not a member or its
 *                      path is marked failed. Nothing to change: paused-ms 0 at
 *                      once, unless a change of the vdisk is queued or running:
 *                      then it waits its turn (commands on one vdisk take effect
 *                      in the order they reach the leader)
 *   vdisk.failback {name s}               -> vdisk + {paused-ms t}  (runs the protocol)
 *   node.drain     {name s}               -> {moved as (vdisk names), paused-ms t}:
 *                      every vdisk the node masters moves to its other path, each
 *                      in its own concurrent run (paused-ms: the longest); -EBUSY
 *                      naming the vdisk, before anything moves, when one has no
 *                      usable other path; a run that fails names its vdisk and
 *                      "(moved meanwhile: ...)"
 *   vdisk.suspended {txid t}              -> {}  a mount's ack of vdisk.suspend, on
 *                      the watching connection
 * A protocol run that fails answers -ETIMEDOUT "node n2 did not answer within
 * 2000 ms: nothing changed" ("nodes n2, n3" when several are late), or -EAGAIN
 * "node n2 failed meanwhile (...): nothing changed", about one ack timeout after
 * it started, and changes nothing. The mounts that must ack are the watchers
 * connected when prepare arrives.
 *
 * Events (only after "watch"):
 *   vdisk.suspend {txid t, ids at} stop issuing new requests for these vdisk ids
 *                              (hold them), wait until every request already sent
 *                              for them is answered, then send vdisk.suspended
 *                              {txid}; a mount with nothing in flight acks at once
 *   vdisk.resume {txid t, committed b}  go on; committed: the mapping changed (its
 *                              vdisk.changed events came before this event), send
 *                              what was held by the new mapping; not committed: the
 *                              change was cancelled, send by the old mapping. A mount
 *                              whose ndfsd connection drops resumes everything
 *                              it held (a new hello starts clean).
 *   vdisk.changed {vdisk...}   a vdisk was created or its row changed
 *   vdisk.removed {name s, id t}
 *   node.changed {name s, removed b}  a node's row changed (joined, its link
 *                              addresses changed, removed): read node.list again
 *   epoch {epoch t}            this node's CCD replica applied a new epoch
 *   lease {expiry-ns t}        this node's lease moved (renewed, lost: 0); sent
 *                              on every renewal, so a mount on a master node does
 *                              local disk I/O only while now < expiry-ns (the same
 *                              CLOCK_MONOTONIC on one machine) and a stopped
 *                              ndfsd stops its node's local I/O too
 *
 * A vdisk is the dict {name s, id t, size t, owner s, group s, mode u,
 * primary s ("node:path"), secondary s (absent when none), master s (the node
 * that masters it now: the primary's, or the secondary's after a takeover),
 * failed as (nodes whose path is marked failed), mtime t (ns), version t}. */
#ifndef NDFS_CONTROL_H
#define NDFS_CONTROL_H

#include <glib.h>
#include <stdint.h>

#include <ndfs/ccd.h>

#define NDFS_CONTROL_MAGIC       0x4346444eu
#define NDFS_CONTROL_VERSION     1
#define NDFS_CONTROL_HEADER_SIZE 12
#define NDFS_CONTROL_MAX_BODY    (1u << 20)

enum ndfs_control_kind {
    NDFS_CONTROL_REQUEST = 1,
    NDFS_CONTROL_RESPONSE = 2,
    NDFS_CONTROL_EVENT = 3,
};

struct ndfs_control_header {
    uint32_t magic;
    uint8_t version;
    uint8_t kind;
    uint16_t flags;
    uint32_t length;
};

void ndfs_control_header_encode(const struct ndfs_control_header *h,
                                uint8_t out[NDFS_CONTROL_HEADER_SIZE]);
/* -EPROTO: bad magic, kind or flags; -EPROTONOSUPPORT: other version;
 * -EMSGSIZE: length over NDFS_CONTROL_MAX_BODY. */
int ndfs_control_header_decode(const uint8_t in[NDFS_CONTROL_HEADER_SIZE],
                               struct ndfs_control_header *out);

/* The GVariant type of a body of that kind. */
const GVariantType *ndfs_control_body_type(enum ndfs_control_kind kind);
/* A whole frame (header + serialized body). body is consumed if floating.
 * Returns NULL if the body is not of the kind's type or too large. */
GBytes *ndfs_control_frame(enum ndfs_control_kind kind, GVariant *body);
/* Checks and copies an untrusted body: returns a new (non-floating) variant
 * of the kind's type in normal form, or NULL when it is malformed. */
GVariant *ndfs_control_body_decode(enum ndfs_control_kind kind, const void *buf, size_t len);

/* Conversions between a vdisk row and its dict form. from_dict returns
 * -EINVAL when a key is missing or of the wrong type; out is zeroed first. */
GVariant *ndfs_vdisk_to_dict(const struct ndfs_vdisk *v);
int ndfs_vdisk_from_dict(GVariant *dict, struct ndfs_vdisk *out);

/* A blocking, thread-safe client. Calls may come from several threads at
 * once; a reader thread matches responses to callers by request id and
 * hands events to event_cb (on the reader thread). When the connection is
 * lost, every waiting call returns -ECONNRESET and closed_cb runs once (on
 * the reader thread); the client must still be freed with _close(). */
struct ndfs_control_client;
typedef void (*ndfs_control_event_cb)(struct ndfs_control_client *c, const char *event,
                                      GVariant *args, void *data);
typedef void (*ndfs_control_closed_cb)(struct ndfs_control_client *c, void *data);

/* Connects to the socket at path. -errno of connect(2) on failure
 * (-ENOENT: no socket, -ECONNREFUSED: nobody listening, -EACCES). */
int ndfs_control_client_connect(const char *path, ndfs_control_event_cb event_cb,
                                ndfs_control_closed_cb closed_cb, void *data,
                                struct ndfs_control_client **out);
/* Sends command with args (an a{sv}; floating refs are consumed, NULL means
 * {}) and waits for the response. Returns the server's status (0 or -errno)
 * or a local -errno. On success *result (may be NULL to ignore) is the result
 * dict, caller unrefs. On a server error *errmsg (may be NULL) is its
 * message, g_malloc'd; on a local error a description of it. timeout_ms <= 0
 * waits forever; -ETIMEDOUT otherwise. */
int ndfs_control_client_call(struct ndfs_control_client *c, const char *command, GVariant *args,
                             int timeout_ms, GVariant **result, char **errmsg);
/* Closes the connection, joins the reader thread, frees c. Safe to call
 * from any thread but the reader thread itself. */
void ndfs_control_client_close(struct ndfs_control_client *c);

#endif
