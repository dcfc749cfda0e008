/* The suspensions a mount holds (online reconfiguration, reconfig.h): each
 * vdisk.suspend {txid, ids} until its vdisk.resume. A pure data structure,
 * not thread-safe: the driver uses it on its loop thread only.
 *
 * A vdisk is suspended while at least one txid names it (several changes
 * of different vdisks run at once, and a txid may name a vdisk another one
 * holds already). A suspension is acked once, when none of its vdisks is
 * busy (has a request in flight). */
#ifndef NDFS_SUSPEND_SET_H
#define NDFS_SUSPEND_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct suspend_set;

struct suspend_set *suspend_set_new(void);
void suspend_set_free(struct suspend_set *s);

/* Adds txid's suspension of ids (n_ids of them; a repeated id counts once)
 * at now_us. false (nothing changes) when txid is suspended already. */
bool suspend_set_add(struct suspend_set *s, uint64_t txid, const uint64_t *ids, size_t n_ids,
                     int64_t now_us);
/* Ends txid's suspension: true, and *ids (g_malloc'd, g_free it; NULL
 * allowed) and *n_ids its vdisks; false when txid is not suspended. */
bool suspend_set_remove(struct suspend_set *s, uint64_t txid, uint64_t **ids, size_t *n_ids);
/* The txid of a suspension (the oldest), or false when there is none; with
 * before_us > 0 only one that began before it. */
bool suspend_set_oldest(struct suspend_set *s, int64_t before_us, uint64_t *txid);

/* How many suspensions name vdisk_id. */
unsigned suspend_set_count(const struct suspend_set *s, uint64_t vdisk_id);
/* How many suspensions there are. */
size_t suspend_set_size(const struct suspend_set *s);

/* The suspensions not acked yet none of whose vdisks is busy: marked acked,
 * their txids in out (at most max, oldest first). Returns how many. */
typedef bool (*suspend_busy_fn)(uint64_t vdisk_id, void *data);
size_t suspend_set_take_drained(struct suspend_set *s, suspend_busy_fn busy, void *data,
                                uint64_t *out, size_t max);

#endif
