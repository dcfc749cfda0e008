#define G_LOG_DOMAIN "ndfs-driver"

#include "pending.h"

#include <errno.h>
#include <string.h>

/* One vdisk's entries. */
struct pending_vdisk {
    uint64_t vdisk_id;
    GQueue q;            /* its entries, oldest first */
    size_t sent;         /* of them sent */
    uint64_t held_round; /* send round in which a HOLD stopped it */
};

struct pending_table {
    GHashTable *by_id;    /* uint64_t *id -> entry (owned) */
    GHashTable *by_vdisk; /* uint64_t *vdisk id -> struct pending_vdisk * (owned) */
    GQueue all;           /* every entry, oldest first */
    size_t unsent;
    uint64_t round;
};

static void entry_free(gpointer p)
{
    struct pending_entry *e = p;
    g_free(e->peer);
    g_free(e);
}

struct pending_table *pending_table_new(void)
{
    struct pending_table *t = g_new0(struct pending_table, 1);
    t->by_id = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, entry_free);
    t->by_vdisk = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
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
    struct pending_vdisk *vq = g_hash_table_lookup(t->by_vdisk, &n->vdisk_id);
    if (!vq) {
        vq = g_new0(struct pending_vdisk, 1);
        vq->vdisk_id = n->vdisk_id;
        g_queue_init(&vq->q);
        g_hash_table_insert(t->by_vdisk, &vq->vdisk_id, vq);
    }
    n->vq = vq;
    g_queue_push_tail_link(&vq->q, &n->vdisk_link);
    g_queue_push_tail_link(&t->all, &n->all_link);
    g_hash_table_insert(t->by_id, &n->id, n);
    if (n->sent)
        vq->sent++;
    else
        t->unsent++;
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
    struct pending_vdisk *vq = e->vq;
    g_queue_unlink(&vq->q, &e->vdisk_link);
    if (e->sent)
        vq->sent--;
    else
        t->unsent--;
    e->vq = NULL;
    if (g_queue_is_empty(&vq->q))
        g_hash_table_remove(t->by_vdisk, &vq->vdisk_id);
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
    if (e->peer == peer || (e->peer && peer && strcmp(e->peer, peer) == 0))
        return;
    g_free(e->peer);
    e->peer = g_strdup(peer);
}

void pending_table_set_sent(struct pending_table *t, struct pending_entry *e, bool sent)
{
    if (e->sent == sent)
        return;
    e->sent = sent;
    if (sent) {
        t->unsent--;
        e->vq->sent++;
    } else {
        t->unsent++;
        e->vq->sent--;
    }
}

size_t pending_table_count(struct pending_table *t)
{
    return g_hash_table_size(t->by_id);
}

size_t pending_table_count_vdisk(struct pending_table *t, uint64_t vdisk_id)
{
    struct pending_vdisk *vq = g_hash_table_lookup(t->by_vdisk, &vdisk_id);
    return vq ? vq->q.length : 0;
}

size_t pending_table_count_unsent(struct pending_table *t)
{
    return t->unsent;
}

size_t pending_table_count_sent_vdisk(struct pending_table *t, uint64_t vdisk_id)
{
    struct pending_vdisk *vq = g_hash_table_lookup(t->by_vdisk, &vdisk_id);
    return vq ? vq->sent : 0;
}

uint64_t *pending_table_vdisks(struct pending_table *t, size_t *count)
{
    *count = g_hash_table_size(t->by_vdisk);
    uint64_t *ids = g_new(uint64_t, *count ? *count : 1);
    GHashTableIter it;
    gpointer value;
    size_t i = 0;
    g_hash_table_iter_init(&it, t->by_vdisk);
    while (g_hash_table_iter_next(&it, NULL, &value))
        ids[i++] = ((struct pending_vdisk *)value)->vdisk_id;
    return ids;
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
    struct pending_vdisk *vq = g_hash_table_lookup(t->by_vdisk, &vdisk_id);
    return vq ? walk(vq->q.head, fn, data) : 0;
}

size_t pending_table_send_round(struct pending_table *t, pending_send_fn fn, void *data)
{
    uint64_t round = ++t->round;
    size_t sent = 0;
    GList *l = t->all.head;
    while (l && t->unsent > 0) {
        GList *next = l->next;
        struct pending_entry *e = l->data;
        struct pending_vdisk *vq = e->vq;
        if (!e->sent && vq->held_round != round) {
            switch (fn(e, data)) {
            case PENDING_SENT:
                sent++;
                break;
            case PENDING_HOLD:
                vq->held_round = round;
                break;
            case PENDING_GONE:
                break;
            }
        }
        /* fn may have removed e (only e): next is still in the list */
        l = next;
    }
    return sent;
}

size_t pending_table_reroute(struct pending_table *t, pending_master_fn master, void *data)
{
    size_t marked = 0;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, t->by_vdisk);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        struct pending_vdisk *vq = value;
        if (vq->sent == 0)
            continue;
        const char *now = master(vq->vdisk_id, data);
        for (GList *l = vq->q.head; l; l = l->next) {
            struct pending_entry *e = l->data;
            if (e->sent && (!now || !e->peer || strcmp(e->peer, now) != 0)) {
                pending_table_set_sent(t, e, false);
                marked++;
            }
        }
    }
    return marked;
}
