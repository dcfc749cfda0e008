/* The master: serves data requests (NDFS_CHANNEL_IO) for the vdisks whose
 * disk is attached to this node, on a thread pool, and answers each one with
 * ACK (and data) or NACK (an errno). Runs inside ndfsd; the loop thread only
 * moves messages, disk I/O runs on worker threads. Private to ndfsd. */
#ifndef NDFS_MASTER_H
#define NDFS_MASTER_H

#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/membership.h>
#include <ndfs/transport.h>

struct ndfs_master;

/* Registers the IO channel on t. membership may be NULL (no lease checks). */
int ndfs_master_new(uv_loop_t *loop, struct ndfs_transport *t, struct ndfs_ccd *ccd,
                    struct ndfs_membership *membership, const char *node_name,
                    struct ndfs_master **out, char **errmsg);
/* Tells the master a vdisk row changed or was removed (from the CCD watch):
 * it closes or reopens its disk as needed. */
void ndfs_master_vdisk_changed(struct ndfs_master *m, const char *name, bool removed);
/* Stops taking requests, waits for the workers, closes disks, frees m;
 * cb runs when done. */
void ndfs_master_close(struct ndfs_master *m, void (*cb)(void *data), void *data);

#endif
