/* The ND driver of an ndfs mount: sends data requests on vdisks whose disk
 * another node masters to that node's master over the transport, and hands
 * the answers back.
 *
 * It runs its own thread with a libuv loop and a transport endpoint named
 * "<node>.mount-<pid>" that only connects out, keyed with the cluster key.
 * FUSE threads submit requests (any thread), which go through a queue to the
 * loop thread; each request sits in the pending table until answered. A
 * request larger than the part size is split, and answered when every part
 * is (the first failing part's error wins). When the master is unreachable
 * requests wait (they do not fail) and are sent, or sent again after the
 * peer restarted, once it is back. */
#ifndef NDFS_DRIVER_H
#define NDFS_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "control_link.h"

struct ndfs_driver;

struct ndfs_driver_config {
    const char *node_name; /* this node */
    const uint8_t *key;    /* the cluster key; copied */
    size_t key_len;
    struct control_link *link; /* for node.list; outlives the driver */
    uint64_t epoch;            /* stamped on requests */
    size_t part_size;          /* 0: NDFS_IO_MAX_LENGTH; at most that, a multiple of 4096 */
};

/* Starts the driver's thread and transport. On error *errmsg says why. */
int ndfs_driver_new(const struct ndfs_driver_config *cfg, struct ndfs_driver **out, char **errmsg);
/* Stops the thread: requests still pending are answered -EIO. */
void ndfs_driver_free(struct ndfs_driver *d);

/* Asks the driver to reread node.list (the masters' addresses) soon; any
 * thread, does not block. */
void ndfs_driver_refresh_nodes(struct ndfs_driver *d);

/* done runs exactly once, on the driver's thread: status is bytes (read,
 * write), 0 (fsync) or -errno; for a read, data holds status bytes, valid
 * during the call. */
typedef void (*ndfs_driver_done_cb)(void *opaque, int status, const void *data);

/* Submits a request on vdisk_id to node's master: op is enum ndfs_io_op,
 * flags NDFS_IO_FLAG_*. For a write, data (length bytes, malloc'd) now
 * belongs to the driver. Returns 0 (done will run) or -errno (it will not,
 * and data was freed). */
int ndfs_driver_submit(struct ndfs_driver *d, const char *node, uint64_t vdisk_id, uint8_t op,
                       uint16_t flags, uint64_t offset, size_t length, void *data,
                       ndfs_driver_done_cb done, void *opaque);

#endif
