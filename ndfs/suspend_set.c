#include "suspend_set.h"

#include <glib.h>

struct suspension {
    uint64_t txid;
    uint64_t *ids;
    size_t n_ids;
    bool acked;
    int64_t since_us;
};

struct suspend_set {
    GPtrArray *list;   /* struct suspension *, oldest first */
    GHashTable *count; /* uint64_t *vdisk id -> struct vdisk_count * (owned) */
};

static void suspension_free(gpointer p)
{
    struct suspension *x = p;
    g_free(x->ids);
    g_free(x);
}

struct suspend_set *suspend_set_new(void)
{
    struct suspend_set *s = g_new0(struct suspend_set, 1);
    s->list = g_ptr_array_new_with_free_func(suspension_free);
    s->count = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    return s;
}

void suspend_set_free(struct suspend_set *s)
{
    if (!s)
        return;
    g_ptr_array_free(s->list, TRUE);
    g_hash_table_destroy(s->count);
    g_free(s);
}

static struct suspension *find(const struct suspend_set *s, uint64_t txid, guint *index)
{
    for (guint i = 0; i < s->list->len; i++) {
        struct suspension *x = s->list->pdata[i];
        if (x->txid == txid) {
            if (index)
                *index = i;
            return x;
        }
    }
    return NULL;
}

/* One vdisk's count: the key (id) and the value of s->count. */
struct vdisk_count {
    uint64_t id;
    unsigned n;
};

static void count_add(struct suspend_set *s, uint64_t id, int delta)
{
    struct vdisk_count *c = g_hash_table_lookup(s->count, &id);
    if (!c && delta > 0) {
        c = g_new0(struct vdisk_count, 1);
        c->id = id;
        g_hash_table_insert(s->count, &c->id, c);
    }
    if (!c)
        return;
    c->n = delta > 0 ? c->n + 1 : c->n - 1;
    if (c->n == 0)
        g_hash_table_remove(s->count, &id);
}

bool suspend_set_add(struct suspend_set *s, uint64_t txid, const uint64_t *ids, size_t n_ids,
                     int64_t now_us)
{
    if (find(s, txid, NULL))
        return false;
    struct suspension *x = g_new0(struct suspension, 1);
    x->txid = txid;
    x->since_us = now_us;
    x->ids = g_new(uint64_t, n_ids ? n_ids : 1);
    for (size_t i = 0; i < n_ids; i++) {
        bool seen = false;
        for (size_t j = 0; j < x->n_ids && !seen; j++)
            seen = x->ids[j] == ids[i];
        if (seen)
            continue;
        x->ids[x->n_ids++] = ids[i];
        count_add(s, ids[i], 1);
    }
    g_ptr_array_add(s->list, x);
    return true;
}

bool suspend_set_remove(struct suspend_set *s, uint64_t txid, uint64_t **ids, size_t *n_ids)
{
    guint index;
    struct suspension *x = find(s, txid, &index);
    if (!x)
        return false;
    for (size_t i = 0; i < x->n_ids; i++)
        count_add(s, x->ids[i], -1);
    if (n_ids)
        *n_ids = x->n_ids;
    if (ids)
        *ids = g_steal_pointer(&x->ids);
    g_ptr_array_remove_index(s->list, index); /* keeps the order */
    return true;
}

bool suspend_set_oldest(struct suspend_set *s, int64_t before_us, uint64_t *txid)
{
    for (guint i = 0; i < s->list->len; i++) {
        struct suspension *x = s->list->pdata[i];
        if (before_us <= 0 || x->since_us < before_us) {
            *txid = x->txid;
            return true;
        }
    }
    return false;
}

unsigned suspend_set_count(const struct suspend_set *s, uint64_t vdisk_id)
{
    const struct vdisk_count *c = g_hash_table_lookup(s->count, &vdisk_id);
    return c ? c->n : 0;
}

size_t suspend_set_size(const struct suspend_set *s)
{
    return s->list->len;
}

size_t suspend_set_take_drained(struct suspend_set *s, suspend_busy_fn busy, void *data,
                                uint64_t *out, size_t max)
{
    size_t n = 0;
    for (guint i = 0; i < s->list->len && n < max; i++) {
        struct suspension *x = s->list->pdata[i];
        if (x->acked)
            continue;
        bool idle = true;
        for (size_t j = 0; j < x->n_ids && idle; j++)
            idle = !busy(x->ids[j], data);
        if (!idle)
            continue;
        x->acked = true;
        out[n++] = x->txid;
    }
    return n;
}
