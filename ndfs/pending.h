/* The driver's pending table: every data request sent (or waiting to be
 * sent) to a master, until its answer came. A pure data structure, not
 * thread-safe: the driver uses it on its loop thread only.
 *
 * Entries are found by request id and visited in the order they were added,
 * over all of them or over one vdisk's (replay in order: a later write may
 * overlap an earlier one). An entry is sent (handed to the transport, its
 * answer awaited from peer) or unsent (waiting to be sent, or sent again);
 * the table counts both, per vdisk too. */
#ifndef NDFS_PENDING_H
#define NDFS_PENDING_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why an unsent entry waits before it is sent again (a NACK's meaning). */
enum pending_wait {
    PENDING_WAIT_NONE = 0,
    PENDING_WAIT_MAPPING, /* -ENXIO: until the mapping (or the epoch) changes, or not_before_us */
    PENDING_WAIT_DELAY,   /* -EAGAIN, -ESTALE: until not_before_us */
};

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
    char *peer;       /* where it was (last) sent (g_malloc'd, owned by the entry); NULL: nowhere */
    bool sent;        /* handed to the transport, answer awaited: change with _set_sent */
    uint64_t map_gen; /* the mapping generation it was (last) sent under */
    int64_t submitted_us;  /* monotonic µs: when the request came */
    int64_t not_before_us; /* unsent: not sent again before this, unless wait is over */
    uint8_t wait;          /* enum pending_wait */

    /* private */
    GList all_link;
    GList vdisk_link;
    struct pending_vdisk *vq;
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

/* Sets e's peer (copied; NULL: none); no copy when it is the same name. */
void pending_entry_set_peer(struct pending_entry *e, const char *peer);
/* Marks e sent or unsent (keeps the counts). */
void pending_table_set_sent(struct pending_table *t, struct pending_entry *e, bool sent);

size_t pending_table_count(struct pending_table *t);
size_t pending_table_count_vdisk(struct pending_table *t, uint64_t vdisk_id);
/* Entries not sent; sent ones of vdisk_id (its in-flight requests). */
size_t pending_table_count_unsent(struct pending_table *t);
size_t pending_table_count_sent_vdisk(struct pending_table *t, uint64_t vdisk_id);
/* The vdisks that have entries, g_malloc'd, *count of them. */
uint64_t *pending_table_vdisks(struct pending_table *t, size_t *count);

/* Calls fn on every entry (or on vdisk_id's), oldest first; stops and
 * returns fn's value when it is non-zero. fn may remove the entry it was
 * given (pending_table_remove, _complete), no other. */
typedef int (*pending_fn)(struct pending_entry *e, void *data);
int pending_table_foreach(struct pending_table *t, pending_fn fn, void *data);
int pending_table_foreach_vdisk(struct pending_table *t, uint64_t vdisk_id, pending_fn fn,
                                void *data);

/* One round of sending, in order: fn is called on every unsent entry,
 * oldest first, except that once fn answered PENDING_HOLD for an entry, the
 * later entries of its vdisk are skipped until the next round (a later
 * write never overtakes an earlier one of the same vdisk). fn may remove the
 * entry it was given, and then answers PENDING_GONE. Returns how many fn
 * answered PENDING_SENT. */
enum pending_step { PENDING_SENT, PENDING_HOLD, PENDING_GONE };
typedef enum pending_step (*pending_send_fn)(struct pending_entry *e, void *data);
size_t pending_table_send_round(struct pending_table *t, pending_send_fn fn, void *data);

/* Replay selection after a change of the mapping: every sent entry whose
 * peer is not the node that masters its vdisk now (master() answers it, or
 * NULL when there is none) is marked unsent, to be sent again in order to
 * whoever the mapping names. master is called once per vdisk that has sent
 * entries. Returns how many entries it marked. */
typedef const char *(*pending_master_fn)(uint64_t vdisk_id, void *data);
size_t pending_table_reroute(struct pending_table *t, pending_master_fn master, void *data);

#endif
