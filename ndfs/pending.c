#define G_LOG_DOMAIN "ndfs-driver"

#include "pending.h"

#include <errno.h>
#include <string.h>

struct pending_table {
    GHashTable *by_id;    /* uint64_t *id -> entry (owned) */
    GHashTable *by_vdisk; /* uint64_t *vdisk id -> GQueue * of entries, oldest first */
    GQueue all;           /* every entry, oldest first */
};

static void entry_free(gpointer p)
{
    struct pending_entry *e = p;
    g_free(e->peer);
    g_free(e);
}

static void queue_free(gpointer p)
{
    g_free(p);
}

struct pending_table *pending_table_new(void)
{
    struct pending_table *t = g_new0(struct pending_table, 1);
    t->by_id = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, entry_free);
    t->by_vdisk = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, queue_free);
    g_queue_init(&t->all);
    return t;
}

void pending_table_free(struct pending_table *t)
{
    if (!t)
        return;
    g_hash_table_destroy(t->by_vdisk);
    g_hash_table_destroy(t->by_id);
    g_free(t);
}

int pending_table_add(struct pending_table *t, const struct pending_entry *e,
                      struct pending_entry **out)
{
    if (g_hash_table_contains(t->by_id, &e->id))
        return -EEXIST;
    struct pending_entry *n = g_new(struct pending_entry, 1);
    *n = *e;
    n->peer = g_strdup(e->peer);
    memset(&n->all_link, 0, sizeof(n->all_link));
    memset(&n->vdisk_link, 0, sizeof(n->vdisk_link));
    n->all_link.data = n;
    n->vdisk_link.data = n;
    GQueue *q = g_hash_table_lookup(t->by_vdisk, &n->vdisk_id);
    if (!q) {
        q = g_new0(GQueue, 1);
        g_queue_init(q);
        g_hash_table_insert(t->by_vdisk, g_memdup2(&n->vdisk_id, sizeof(n->vdisk_id)), q);
    }
    g_queue_push_tail_link(q, &n->vdisk_link);
    g_queue_push_tail_link(&t->all, &n->all_link);
    g_hash_table_insert(t->by_id, &n->id, n);
    if (out)
        *out = n;
    return 0;
}

struct pending_entry *pending_table_find(struct pending_table *t, uint64_t id)
{
    return g_hash_table_lookup(t->by_id, &id);
}

/* Takes e out of the lists and the index without freeing it. */
static void unlink_entry(struct pending_table *t, struct pending_entry *e)
{
    GQueue *q = g_hash_table_lookup(t->by_vdisk, &e->vdisk_id);
    g_queue_unlink(q, &e->vdisk_link);
    if (g_queue_is_empty(q))
        g_hash_table_remove(t->by_vdisk, &e->vdisk_id);
    g_queue_unlink(&t->all, &e->all_link);
    g_hash_table_steal(t->by_id, &e->id);
}

int pending_table_complete(struct pending_table *t, uint64_t id, struct pending_entry *out)
{
    struct pending_entry *e = pending_table_find(t, id);
    if (!e)
        return -ENOENT;
    unlink_entry(t, e);
    if (out) {
        *out = *e;
        memset(&out->all_link, 0, sizeof(out->all_link));
        memset(&out->vdisk_link, 0, sizeof(out->vdisk_link));
        e->peer = NULL;
    }
    entry_free(e);
    return 0;
}

void pending_table_remove(struct pending_table *t, struct pending_entry *e)
{
    unlink_entry(t, e);
    entry_free(e);
}

void pending_entry_set_peer(struct pending_entry *e, const char *peer)
{
    if (e->peer == peer)
        return;
    g_free(e->peer);
    e->peer = g_strdup(peer);
}

size_t pending_table_count(struct pending_table *t)
{
    return g_hash_table_size(t->by_id);
}

size_t pending_table_count_vdisk(struct pending_table *t, uint64_t vdisk_id)
{
    GQueue *q = g_hash_table_lookup(t->by_vdisk, &vdisk_id);
    return q ? q->length : 0;
}

static int walk(GList *l, pending_fn fn, void *data)
{
    while (l) {
        GList *next = l->next;
        int rc = fn(l->data, data);
        if (rc)
            return rc;
        l = next;
    }
    return 0;
}

int pending_table_foreach(struct pending_table *t, pending_fn fn, void *data)
{
    return walk(t->all.head, fn, data);
}

int pending_table_foreach_vdisk(struct pending_table *t, uint64_t vdisk_id, pending_fn fn,
                                void *data)
{
    GQueue *q = g_hash_table_lookup(t->by_vdisk, &vdisk_id);
    return q ? walk(q->head, fn, data) : 0;
}
