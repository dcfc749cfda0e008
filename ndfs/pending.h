/* The driver's pending table: every data request sent (or waiting to be
 * sent) to a master, until its answer came. A pure data structure, not
 * thread-safe: the driver uses it on its loop thread only.
 *
 * Entries are found by request id and visited in the order they were added,
 * over all of them or over one vdisk's (replay in order: a later write may
 * overlap an earlier one). */
#ifndef NDFS_PENDING_H
#define NDFS_PENDING_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

struct pending_entry {
    uint64_t id; /* the transport request id; unique in the table */
    uint64_t vdisk_id;
    uint8_t op; /* enum ndfs_io_op */
    uint16_t flags;
    uint64_t offset;
    uint32_t length;
    const void *data; /* write data, borrowed from owner */
    uint64_t epoch;   /* when it was (last) sent */
    void *owner;      /* the caller's request this entry is a part of */
    char *peer;       /* where it was routed (g_malloc'd, owned by the entry); NULL: nowhere yet */
    bool sent;        /* handed to the transport */

    /* private */
    GList all_link;
    GList vdisk_link;
};

struct pending_table;

struct pending_table *pending_table_new(void);
/* Frees the table and every entry still in it (not their data or owner). */
void pending_table_free(struct pending_table *t);

/* Adds a copy of *e (its links ignored, peer duplicated); *out (may be NULL)
 * points at the stored entry. -EEXIST when e->id is in the table. */
int pending_table_add(struct pending_table *t, const struct pending_entry *e,
                      struct pending_entry **out);
/* The entry of id, or NULL. */
struct pending_entry *pending_table_find(struct pending_table *t, uint64_t id);
/* Removes the entry of id (its answer came) and copies it to *out if not
 * NULL (out->peer then belongs to the caller); -ENOENT when there is none
 * (a late or duplicate answer). */
int pending_table_complete(struct pending_table *t, uint64_t id, struct pending_entry *out);
/* Removes and frees e. */
void pending_table_remove(struct pending_table *t, struct pending_entry *e);

/* Sets e's peer (copied; NULL: none). */
void pending_entry_set_peer(struct pending_entry *e, const char *peer);

size_t pending_table_count(struct pending_table *t);
size_t pending_table_count_vdisk(struct pending_table *t, uint64_t vdisk_id);

/* Calls fn on every entry (or on vdisk_id's), oldest first; stops and
 * returns fn's value when it is non-zero. fn must not add or remove
 * entries. */
typedef int (*pending_fn)(struct pending_entry *e, void *data);
int pending_table_foreach(struct pending_table *t, pending_fn fn, void *data);
int pending_table_foreach_vdisk(struct pending_table *t, uint64_t vdisk_id, pending_fn fn,
                                void *data);

#endif
