/* The ND driver of an ndfs mount: sends data requests on vdisks to the
 * node that masters each one now over the transport, and hands the answers
 * back.
 *
 * It runs its own thread with a libuv loop and a transport endpoint named
 * "<node>.mount-<pid>" that only connects out, keyed with the cluster key.
 * FUSE threads submit requests (any thread), which go through a queue to the
 * loop thread; each request sits in the pending table until answered. A
 * request larger than the part size is split, and answered when every part
 * is (the first failing part's error wins).
 *
 * High availability: a request's master is looked up when it is SENT (the
 * route callback, i.e. the mapping in the vdisk table), so a request sent
 * again goes to whoever the mapping names then. Requests wait, they do not
 * fail: when the master is unreachable, restarted, refuses (NACK) for its
 * epoch, its lease or its disk, the entry stays and is sent again, in order
 * per vdisk, once the epoch or the mapping moved (ndfs_driver_set_epoch,
 * ndfs_driver_mapping_changed) or after a short delay. A NACK -EIO marks that
 * (vdisk, node) failed here until the mapping changes. Only a request that
 * waited without a reachable master longer than the io-timeout (when not
 * 0) fails, with EIO. The driver reports each vdisk's I/O state to ndfsd
 * (vdisk.io-state) from a worker thread (driver_report.c).
 *
 * Online reconfiguration: a vdisk suspended by ndfsd is held (its new
 * requests wait in the pending table, in order) until resumed; see
 * ndfs_driver_suspend (driver_suspend.c). */
#ifndef NDFS_DRIVER_H
#define NDFS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control_link.h"
#include "vdisk_table.h"

struct ndfs_driver;

struct ndfs_driver_config {
    const char *node_name; /* this node */
    const uint8_t *key;    /* the cluster key; copied */
    size_t key_len;
    struct control_link *link; /* for node.list; outlives the driver */
    uint64_t epoch;            /* stamped on requests, until set_epoch raises it */
    size_t part_size;          /* 0: NDFS_IO_MAX_LENGTH; at most that, a multiple of 4096 */
    unsigned poll_us;          /* the loop polls this long after I/O before it sleeps (spin.h) */
    /* Where vdisk_id's requests go now (called on the driver's thread, at
     * every send; must be cheap and thread-safe): 0, or -ENOENT when the
     * vdisk is gone (its requests then fail with EIO). */
    int (*route)(void *data, uint64_t vdisk_id, struct vdisk_master *out);
    void *route_data;
};

/* Starts the driver's thread and transport. On error *errmsg says why. */
int ndfs_driver_new(const struct ndfs_driver_config *cfg, struct ndfs_driver **out, char **errmsg);
/* Stops the thread: requests still pending are answered -EIO. */
void ndfs_driver_free(struct ndfs_driver *d);

/* Asks the driver to reread node.list (the masters' addresses) soon; any
 * thread, does not block. */
void ndfs_driver_refresh_nodes(struct ndfs_driver *d);
/* The mapping may have changed (a vdisk changed, was removed, the table was
 * refetched): requests whose master changed are sent again, in order, to the
 * new one. Any thread, does not block. */
void ndfs_driver_mapping_changed(struct ndfs_driver *d);
/* The cluster's epoch is now epoch (lower values are ignored): requests are
 * stamped with it, those refused for an older epoch are sent again. Any
 * thread, does not block. */
void ndfs_driver_set_epoch(struct ndfs_driver *d, uint64_t epoch);

/* Online reconfiguration (reconfig.h; vdisk.suspend and vdisk.resume in
 * control.h). Any thread, none blocks.
 * _suspend: the requests of the vdisks ids are held from now on (kept in
 * the pending table, in order, sent by nobody) and local disk I/O on them
 * goes through the driver (ndfs_driver_local_enter answers false), which
 * holds it too; once every request of theirs already sent is answered and
 * the local I/O in progress ended, the driver acks (vdisk.suspended {txid})
 * from a worker thread. Several txids may suspend the same vdisk: it is
 * held until each resumed. A txid suspended already is ignored.
 * _resume: txid's suspension ends; what was held is sent at once by the
 * mapping in the table (committed: the vdisk.changed events came first, so
 * the new one; not committed: the old one). An unknown txid is ignored.
 * _resume_all: every suspension ends (the connection to ndfsd dropped). */
void ndfs_driver_suspend(struct ndfs_driver *d, uint64_t txid, const uint64_t *ids, size_t n_ids);
void ndfs_driver_resume(struct ndfs_driver *d, uint64_t txid, bool committed);
void ndfs_driver_resume_all(struct ndfs_driver *d);

/* Local disk I/O of a FUSE thread on vdisk_id: _enter before it (true: go
 * on, and call _exit once the I/O is done; false: the vdisk is suspended,
 * send the request through the driver instead, which holds it), _exit after.
 * Two atomic operations, no lock (unless a suspension waits for it). */
bool ndfs_driver_local_enter(struct ndfs_driver *d, uint64_t vdisk_id);
void ndfs_driver_local_exit(struct ndfs_driver *d, uint64_t vdisk_id);

/* done runs exactly once, on the driver's thread: status is bytes (read,
 * write, discard), 0 (fsync) or -errno; for a read, data holds status bytes, valid
 * during the call. */
typedef void (*ndfs_driver_done_cb)(void *opaque, int status, const void *data);

/* Submits a request on vdisk_id to its master (the route callback's, when
 * sent): op is enum ndfs_io_op, flags NDFS_IO_FLAG_*. For a write, data
 * (length bytes, malloc'd or of ndfs_iobuf_alloc) now belongs to the driver. Returns 0 (done will
 * run) or -errno (it will not, and data was freed). */
int ndfs_driver_submit(struct ndfs_driver *d, uint64_t vdisk_id, uint8_t op, uint16_t flags,
                       uint64_t offset, size_t length, void *data, ndfs_driver_done_cb done,
                       void *opaque);

/* A write's bytes, for ndfs_driver_submit_data. */
struct ndfs_driver_data {
    void *bytes;
    /* given back with release(release_arg) once the driver no longer needs
     * them (also when it refuses the request); NULL: ndfs_iobuf_free(bytes),
     * which also frees a malloc'd block */
    void (*release)(void *arg);
    void *release_arg;
    /* crc = ndfs_transport_data_crc(bytes, length), computed by the caller
     * where the bytes are in its cache; the driver sends it with a request
     * that goes out in one part */
    bool has_crc;
    uint32_t crc;
};

/* ndfs_driver_submit for a write whose bytes are described by *data. */
int ndfs_driver_submit_data(struct ndfs_driver *d, uint64_t vdisk_id, uint8_t op, uint16_t flags,
                            uint64_t offset, size_t length, const struct ndfs_driver_data *data,
                            ndfs_driver_done_cb done, void *opaque);

#endif
