/* A mount's connection to its local ndfsd: hello, watch and vdisk.list
 * fill the vdisk table; vdisk.changed / vdisk.removed events keep it up to
 * date and tell the kernel (inode and entry invalidations) and the driver
 * (the mapping); epoch and lease events keep the epoch and this node's
 * lease. When ndfsd goes away the mount keeps serving I/O from the table
 * (the local disk only on a node without network: the lease counts as run
 * out) while a background thread reconnects (100 ms doubling to 1 s),
 * lists again, drops what was removed meanwhile, takes the epoch and lease
 * of the new hello and announces the open files again (vdisk.open).
 *
 * Events and reconnection run on the link's own thread, never on the
 * client's reader thread (a FUSE handler may be waiting for a response
 * there while the kernel holds an inode lock that an invalidation needs). */
#ifndef NDFS_CONTROL_LINK_H
#define NDFS_CONTROL_LINK_H

#include <fuse_lowlevel.h>
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "vdisk_table.h"

struct control_link;
struct control_link_open;

/* A link to the ndfsd at socket_path feeding table (both kept by the caller
 * and outliving the link). Nothing happens until _connect or _start. */
struct control_link *control_link_new(const char *socket_path, struct vdisk_table *table);
/* Stops the thread if it runs, closes the connection, frees link. */
void control_link_free(struct control_link *link);

/* Connects, says hello, watches and fills the table, on the calling thread
 * (the check before the mount goes ahead). On error *errmsg (g_malloc'd)
 * says what failed: -errno of connect(2) or the server's status. */
int control_link_connect(struct control_link *link, char **errmsg);
/* Closes the connection without reconnecting (before fork(): the client's
 * reader thread would not survive it); _start connects again. */
void control_link_disconnect(struct control_link *link);
/* This node's name, as the first hello answered; NULL before. */
const char *control_link_node_name(struct control_link *link);

/* The cluster key file ndfsd named in its last hello ("" without network),
 * g_malloc'd; and the epoch: the highest that hello or an epoch event
 * reported. */
char *control_link_key_file(struct control_link *link);
uint64_t control_link_epoch(struct control_link *link);

/* The driver's callbacks, on the link's thread; none may block.
 * nodes: after every reconnection and on a node.* event (the addresses of
 * masters may have changed). mapping: a vdisk was added, changed (its
 * mapping maybe) or removed, and after every reconnection (the table was
 * refetched). epoch: the epoch grew (events, hello after a reconnection).
 * Once _set_callbacks returns, the previous ones run no more; NULL: none. */
struct control_link_callbacks {
    void (*nodes)(void *data);
    void (*mapping)(void *data);
    void (*epoch)(void *data, uint64_t epoch);
    /* Online reconfiguration: vdisk.suspend {txid, ids} (the callee acks
     * with vdisk.suspended once drained), vdisk.resume {txid, committed}
     * (after the vdisk.changed events of the change), and resume_all when
     * the connection to ndfsd dropped (a new one starts clean). Without a
     * suspend callback the link acks a suspension at once itself. */
    void (*suspend)(void *data, uint64_t txid, const uint64_t *ids, size_t n_ids);
    void (*resume)(void *data, uint64_t txid, bool committed);
    void (*resume_all)(void *data);
};
void control_link_set_callbacks(struct control_link *link, const struct control_link_callbacks *cb,
                                void *data);

/* Is this node's lease valid now (CLOCK_MONOTONIC before the expiry that
 * hello and the lease events reported)? False while disconnected from
 * ndfsd; always true with an ndfsd that has no leases (a single node).
 * Cheap: one atomic load and a clock read, for every local I/O. */
bool control_link_lease_valid(struct control_link *link);
/* [vdisk] io-timeout from the last hello, ms; 0: wait forever. */
uint64_t control_link_io_timeout_ms(struct control_link *link);
/* [vdisk] poll-us from the last hello; 0 when ndfsd did not say. */
unsigned control_link_poll_us(struct control_link *link);

/* Starts the link's thread: it processes events, tells se's kernel about
 * changes, and reconnects when needed. */
int control_link_start(struct control_link *link, struct fuse_session *se);

/* A call to ndfsd (see control.h). While the mount is disconnected it waits
 * up to wait_ms for the link to come back (and retries a call that the loss
 * of the connection interrupted), then returns -EIO. Otherwise the server's
 * status. args: floating refs are consumed, NULL means {}. */
int control_link_call(struct control_link *link, const char *command, GVariant *args, int wait_ms,
                      GVariant **result, char **errmsg);

/* Asks ndfsd for the vdisk called name (vdisk.show) and adds it to the
 * table without telling the kernel, for a lookup that missed it (the event
 * of a vdisk created just now may still be on its way). Does not wait while
 * disconnected. -ENOENT when ndfsd does not know it either. */
int control_link_fetch_vdisk(struct control_link *link, const char *name);

/* Announces that a vdisk file was opened (vdisk.open), and remembers it to
 * announce it again after a reconnection. While disconnected it does not
 * wait: the reconnection announces it. -errno when ndfsd refuses. */
int control_link_open_vdisk(struct control_link *link, const char *name,
                            struct control_link_open **out);
/* vdisk.close for an open announced by _open_vdisk; frees o. */
void control_link_close_vdisk(struct control_link *link, struct control_link_open *o);

#endif
