/* The FUSE low-level operations of an ndfs mount: a root directory holding
 * one regular file per vdisk, whose reads and writes go to the vdisk's disk
 * when this node is its primary, and to its master through the driver
 * otherwise. */
#ifndef NDFS_FUSE_OPS_H
#define NDFS_FUSE_OPS_H

#include <fuse_lowlevel.h>
#include <glib.h>

#include "control_link.h"
#include "driver.h"
#include "vdisk_table.h"

/* Entries and attributes are cached this long: ndfsd tells the mount of
 * every change, and the mount tells the kernel. */
#define NDFS_FUSE_TIMEOUT 86400.0
#define NDFS_FUSE_MAX_IO  (1u << 20)
/* How long chmod/chown wait for a lost ndfsd to come back before EIO. */
#define NDFS_FUSE_SETATTR_WAIT_MS 5000

/* The state of one mount, the session's userdata. */
struct ndfs_fs {
    struct vdisk_table *table;
    struct control_link *link;
    const char *node_name;      /* this node, set before the session starts */
    struct ndfs_driver *driver; /* remote I/O; NULL without network; set before serving */
    bool force_remote;          /* tests and benches: local vdisks through the master too */

    GMutex warn_lock;
    GHashTable *warned_remote; /* ids of remote vdisks already logged; protected by warn_lock */
};

void ndfs_fs_init(struct ndfs_fs *fs, struct vdisk_table *table, struct control_link *link);
void ndfs_fs_clear(struct ndfs_fs *fs);

extern const struct fuse_lowlevel_ops ndfs_fuse_ops;

#endif
