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
/* The rules (issue 5): a request is served only when the vdisk's current
 * master (ndfs_vdisk_master_node) is this node and its path here is not
 * marked failed (else NACK -ENXIO), when the request's epoch is the
 * replica's (older: -EREMCHG, the driver refetches and resends; newer:
 * -EAGAIN, it retries shortly), and, checked by the worker right before
 * every disk operation including queued ones, while the lease is valid
 * (else -ESTALE). A disk error (EIO, the device gone, an open that fails)
 * is NACKed -EIO and reported once per vdisk and mapping to path_failed
 * (on the loop thread), which ndfsd turns into vdisk.fail-path. Requests
 * refused for the lease are counted and logged once per loss. */
typedef void (*ndfs_master_path_failed_cb)(struct ndfs_master *m, const char *vdisk, int err,
                                           void *data);
/* Disk jobs (reads, writes, syncs, discards that reached the disk or were
 * refused right before it) answered since the start: through AIO on the
 * loop, or on the disk threads. Loop thread. */
void ndfs_master_disk_jobs(const struct ndfs_master *m, uint64_t *aio, uint64_t *threads);
/* [vdisk] poll-us: the loop polls this long after the master's I/O before it
 * sleeps (spin.h); 0 (the default here): never. Loop thread. */
void ndfs_master_set_poll_us(struct ndfs_master *m, unsigned poll_us);
/* [vdisk] master-read-inflight: the bytes of large reads (128 KiB or more)
 * one disk may have in flight; later ones wait their turn, in order (one
 * always goes). 0 (the default here): no limit. Loop thread. */
void ndfs_master_set_read_inflight(struct ndfs_master *m, uint64_t bytes);
/* Large reads that waited for their turn since the start. Loop thread. */
uint64_t ndfs_master_reads_waited(const struct ndfs_master *m);
void ndfs_master_set_path_failed_cb(struct ndfs_master *m, ndfs_master_path_failed_cb cb,
                                    void *data);

/* Reconfiguration: cb runs once no disk job of any of the vdisk ids is in
 * flight (status 0; maybe before this returns), or with -ECANCELED when the
 * master closes first. Jobs that arrive meanwhile are waited for too. */
void ndfs_master_drain(struct ndfs_master *m, const uint64_t *ids, size_t n_ids,
                       void (*cb)(int status, void *data), void *data);

/* Stops taking requests, waits for the workers, closes disks, frees m;
 * cb runs when done. */
void ndfs_master_close(struct ndfs_master *m, void (*cb)(void *data), void *data);

#endif
