/* The FUSE low-level operations of an ndfs mount: a root directory holding
 * one regular file per vdisk, whose reads and writes go to the vdisk's disk
 * when the mapping names this node (and the path it opened) as the master
 * and this node's lease is valid, and to the current master through the
 * driver otherwise. The choice is made for every request. */
#ifndef NDFS_FUSE_OPS_H
#define NDFS_FUSE_OPS_H

#include <fuse_lowlevel.h>
#include <glib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "aio_thread.h"
#include "control_link.h"
#include "driver.h"
#include "vdisk_table.h"

/* Entries and attributes are cached this long: ndfsd tells the mount of
 * every change, and the mount tells the kernel. */
#define NDFS_FUSE_TIMEOUT 86400.0
#define NDFS_FUSE_MAX_IO  (1u << 20)
/* The largest request the kernel sends: a write of NDFS_FUSE_MAX_IO and its
 * headers (libfuse reads with the same room). */
#define NDFS_FUSE_REQUEST_MAX (NDFS_FUSE_MAX_IO + 4096)
/* How long chmod/chown wait for ndfsd's answer before EIO: longer than
 * ndfsd gives a change forwarded to the leader (20 s, plus room for a
 * reconfiguration run cancelled after its ack timeout), so that the
 * application never sees an error for a change that still commits. */
#define NDFS_FUSE_SETATTR_WAIT_MS 30000

/* The state of one mount, the session's userdata. */
struct ndfs_fs {
    struct vdisk_table *table;
    struct control_link *link;
    const char *node_name;       /* this node, set before the session starts */
    struct ndfs_driver *driver;  /* remote I/O; NULL without network; set before serving */
    struct ndfs_aio_thread *aio; /* local O_DIRECT I/O; NULL: pread/pwrite on the FUSE thread */
    atomic_uint local_busy;      /* local reads and writes in progress (fuse_io.c) */
    bool force_remote;           /* tests and benches: local vdisks through the master too */

    GMutex warn_lock;
    GHashTable *warned_remote; /* ids of remote vdisks already logged; protected by warn_lock */

    GMutex handles_lock;
    GHashTable *handles; /* open struct ndfs_handle *; protected by handles_lock */
};

void ndfs_fs_init(struct ndfs_fs *fs, struct vdisk_table *table, struct control_link *link);
/* Frees the handles the kernel never released (a mount torn down while files
 * were open, e.g. by a loop device): closes their disks and tells ndfsd.
 * Call once the session stopped and before the control link is freed. */
void ndfs_fs_release_all(struct ndfs_fs *fs);
void ndfs_fs_clear(struct ndfs_fs *fs);

extern const struct fuse_lowlevel_ops ndfs_fuse_ops;

/* Internal to the mount, shared by fuse_ops.c and fuse_remote.c. */
/* An open vdisk file: fi->fh. */
struct ndfs_handle {
    /* the local disk, opened when this node masters the vdisk (at open or
     * at the first local I/O); -1: not open */
    _Atomic int fd;
    char *local_path; /* what fd opened: set before fd, then read-only */
    GMutex open_lock; /* opening fd */
    int open_flags;
    uint64_t ino;
    bool direct; /* the file was opened O_DIRECT, and so was fd */
    bool writable;
    atomic_bool local_failed_logged; /* "local disk failed, through the master" said once */
    atomic_bool dirty;               /* written since the last flush */
    atomic_bool removed_logged;      /* "removed while open" said once */
    struct control_link_open *announced;
};

void ndfs__fuse_reply_err(fuse_req_t req, int rc);
/* The vdisk's size for I/O on h; -EIO once it was removed under h. */
int ndfs__fuse_handle_size(struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t *size);
/* Where a request on h goes now: 1 local (h->fd is open; call
 * ndfs__fuse_local_done once the local I/O is done), 0 through the driver
 * (also while the vdisk is suspended by a reconfiguration: the driver holds
 * it), or -errno. *id and *size: the vdisk's. */
int ndfs__fuse_route(struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t *id, uint64_t *size);
/* The local I/O that ndfs__fuse_route answered 1 for is over (counted for
 * the drain of a suspension). */
static inline void ndfs__fuse_local_done(struct ndfs_fs *fs, uint64_t id)
{
    if (fs->driver)
        ndfs_driver_local_exit(fs->driver, id);
}
/* A local error that says the disk (path) is bad, not the request (logged
 * once per handle): with a driver the request goes to the master instead,
 * which fails the path. */
bool ndfs__fuse_path_error(struct ndfs_fs *fs, struct ndfs_handle *h, int rc);
/* The read and write_buf operations (fuse_io.c). */
void ndfs__fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi);
void ndfs__fuse_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                          struct fuse_file_info *fi);
struct ndfs_rx_buf;

/* Through the driver to the vdisk's master; each answers req. id and
 * vsize from ndfs__fuse_route. */
void ndfs__fuse_remote_read(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                            uint64_t vsize, size_t size, off_t off);
/* data: len bytes at off, checked already, now the driver's: in rx (a
 * receive buffer taken over) when rx is not NULL, else malloc'd. */
void ndfs__fuse_remote_write_data(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h,
                                  uint64_t id, struct ndfs_rx_buf *rx, void *data, size_t len,
                                  off_t off);
void ndfs__fuse_remote_sync(fuse_req_t req, struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t id,
                            bool datasync, bool only_if_dirty);
/* Deallocates (zero: zeroes) len bytes at off, within the vdisk. */
void ndfs__fuse_remote_discard(fuse_req_t req, struct ndfs_fs *fs, uint64_t id, bool zero,
                               uint64_t off, uint64_t len);

#endif
