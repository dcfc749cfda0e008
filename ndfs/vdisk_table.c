#define G_LOG_DOMAIN "ndfs-fuse"

#include "vdisk_table.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#define UNKNOWN_ID 65534

struct vdisk_entry {
    uint64_t ino;
    uint64_t map_gen; /* grows with every change of the mapping */
    struct ndfs_vdisk v;
    uid_t uid;
    gid_t gid;
};

struct vdisk_table {
    GRWLock lock;
    GTree *by_ino;       /* uint64_t *ino -> struct vdisk_entry *; owns; protected by lock */
    GHashTable *by_name; /* name -> struct vdisk_entry * (borrowed); protected by lock */
    uint64_t root_mtime; /* ns; protected by lock */
    uint64_t next_gen;   /* mapping generations; protected by lock */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int ino_compare(gconstpointer a, gconstpointer b, gpointer unused)
{
    (void)unused;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void entry_free(gpointer p)
{
    struct vdisk_entry *e = p;
    ndfs_vdisk_clear(&e->v);
    g_free(e);
}

struct vdisk_table *vdisk_table_new(void)
{
    struct vdisk_table *t = g_new0(struct vdisk_table, 1);
    g_rw_lock_init(&t->lock);
    t->by_ino = g_tree_new_full(ino_compare, NULL, NULL, entry_free);
    t->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    t->root_mtime = now_ns();
    return t;
}

void vdisk_table_free(struct vdisk_table *t)
{
    if (!t)
        return;
    g_hash_table_destroy(t->by_name);
    g_tree_destroy(t->by_ino);
    g_rw_lock_clear(&t->lock);
    g_free(t);
}

/* The buffer size the *_r lookups want, with a sane floor. */
static size_t lookup_buffer_size(int name)
{
    long n = sysconf(name);
    return n > 0 ? (size_t)n : 16384;
}

uid_t vdisk_table_resolve_user(const char *name)
{
    size_t len = lookup_buffer_size(_SC_GETPW_R_SIZE_MAX);
    for (int tries = 0; tries < 8; tries++, len *= 2) {
        g_autofree char *buf = g_malloc(len);
        struct passwd pw, *found = NULL;
        int rc = getpwnam_r(name, &pw, buf, len, &found);
        if (rc == ERANGE)
            continue;
        return rc == 0 && found ? found->pw_uid : UNKNOWN_ID;
    }
    return UNKNOWN_ID;
}

gid_t vdisk_table_resolve_group(const char *name)
{
    size_t len = lookup_buffer_size(_SC_GETGR_R_SIZE_MAX);
    for (int tries = 0; tries < 8; tries++, len *= 2) {
        g_autofree char *buf = g_malloc(len);
        struct group gr, *found = NULL;
        int rc = getgrnam_r(name, &gr, buf, len, &found);
        if (rc == ERANGE)
            continue;
        return rc == 0 && found ? found->gr_gid : UNKNOWN_ID;
    }
    return UNKNOWN_ID;
}

static bool same_string(const char *a, const char *b)
{
    return g_strcmp0(a, b) == 0;
}

static bool same_vdisk(const struct ndfs_vdisk *a, const struct ndfs_vdisk *b)
{
    return a->size == b->size && a->mode == b->mode && a->mtime_ns == b->mtime_ns &&
           a->version == b->version && same_string(a->name, b->name) &&
           same_string(a->owner, b->owner) && same_string(a->group, b->group) &&
           same_string(a->primary_node, b->primary_node) &&
           same_string(a->primary_path, b->primary_path) &&
           same_string(a->secondary_node, b->secondary_node) &&
           same_string(a->secondary_path, b->secondary_path) &&
           a->on_secondary == b->on_secondary && a->primary_failed == b->primary_failed &&
           a->secondary_failed == b->secondary_failed;
}

/* The mapping: where I/O goes (master, its path, failed paths). */
static bool same_mapping(const struct ndfs_vdisk *a, const struct ndfs_vdisk *b)
{
    return same_string(a->primary_node, b->primary_node) &&
           same_string(a->primary_path, b->primary_path) &&
           same_string(a->secondary_node, b->secondary_node) &&
           same_string(a->secondary_path, b->secondary_path) &&
           a->on_secondary == b->on_secondary && a->primary_failed == b->primary_failed &&
           a->secondary_failed == b->secondary_failed;
}

/* Is the path that masters v marked failed? */
static bool master_failed(const struct ndfs_vdisk *v)
{
    return v->on_secondary && v->secondary_node ? v->secondary_failed : v->primary_failed;
}

enum vdisk_table_change vdisk_table_upsert(struct vdisk_table *t, const struct ndfs_vdisk *v,
                                           char **old_name)
{
    if (old_name)
        *old_name = NULL;
    /* name service lookups may be slow: never under the lock */
    struct vdisk_entry *fresh = g_new0(struct vdisk_entry, 1);
    fresh->ino = vdisk_table_ino(v->id);
    ndfs_vdisk_copy(&fresh->v, v);
    fresh->uid = vdisk_table_resolve_user(v->owner);
    fresh->gid = vdisk_table_resolve_group(v->group);

    enum vdisk_table_change change;
    g_rw_lock_writer_lock(&t->lock);
    struct vdisk_entry *old = g_tree_lookup(t->by_ino, &fresh->ino);
    if (old && (old->v.version > v->version ||
                (same_vdisk(&old->v, v) && old->uid == fresh->uid && old->gid == fresh->gid))) {
        g_rw_lock_writer_unlock(&t->lock);
        entry_free(fresh);
        return VDISK_TABLE_UNCHANGED;
    }
    if (old && same_mapping(&old->v, v))
        fresh->map_gen = old->map_gen;
    else
        fresh->map_gen = ++t->next_gen;
    if (old) {
        if (old_name && strcmp(old->v.name, v->name) != 0)
            *old_name = g_strdup(old->v.name);
        g_hash_table_remove(t->by_name, old->v.name);
        change = VDISK_TABLE_CHANGED;
    } else {
        change = VDISK_TABLE_ADDED;
    }
    /* a name now used by another id: the old holder is gone (removed and recreated) */
    struct vdisk_entry *holder = g_hash_table_lookup(t->by_name, v->name);
    if (holder) {
        g_hash_table_remove(t->by_name, v->name);
        g_tree_remove(t->by_ino, &holder->ino);
    }
    /* replace() frees the old entry, whose key the tree may still point to */
    g_tree_replace(t->by_ino, &fresh->ino, fresh);
    g_hash_table_insert(t->by_name, fresh->v.name, fresh);
    if (change == VDISK_TABLE_ADDED || (old_name && *old_name))
        t->root_mtime = now_ns();
    g_rw_lock_writer_unlock(&t->lock);
    return change;
}

int vdisk_table_remove(struct vdisk_table *t, uint64_t id, char **name)
{
    uint64_t ino = vdisk_table_ino(id);
    if (name)
        *name = NULL;
    g_rw_lock_writer_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (!e) {
        g_rw_lock_writer_unlock(&t->lock);
        return -ENOENT;
    }
    if (name)
        *name = g_strdup(e->v.name);
    g_hash_table_remove(t->by_name, e->v.name);
    g_tree_remove(t->by_ino, &ino);
    t->root_mtime = now_ns();
    g_rw_lock_writer_unlock(&t->lock);
    return 0;
}

static void entry_to_attr(const struct vdisk_entry *e, struct vdisk_attr *out)
{
    memset(out, 0, sizeof(*out));
    out->ino = e->ino;
    out->id = e->v.id;
    out->size = e->v.size;
    out->mtime_ns = e->v.mtime_ns;
    out->version = e->v.version;
    out->mode = e->v.mode & 07777;
    out->uid = e->uid;
    out->gid = e->gid;
    g_strlcpy(out->name, e->v.name, sizeof(out->name));
    g_strlcpy(out->primary_node, e->v.primary_node ? e->v.primary_node : "",
              sizeof(out->primary_node));
    const char *master = ndfs_vdisk_master_node(&e->v);
    g_strlcpy(out->master_node, master ? master : "", sizeof(out->master_node));
}

int vdisk_table_get(struct vdisk_table *t, uint64_t ino, struct vdisk_attr *out)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e)
        entry_to_attr(e, out);
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_find(struct vdisk_table *t, const char *name, struct vdisk_attr *out)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_hash_table_lookup(t->by_name, name);
    if (e)
        entry_to_attr(e, out);
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_size(struct vdisk_table *t, uint64_t ino, uint64_t *size)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e)
        *size = e->v.size;
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_route(struct vdisk_table *t, uint64_t ino, uint64_t *id, uint64_t *size, char *node)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e) {
        *id = e->v.id;
        *size = e->v.size;
        const char *master = ndfs_vdisk_master_node(&e->v);
        g_strlcpy(node, master ? master : "", NDFS_NODE_NAME_MAX + 1);
    }
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_master(struct vdisk_table *t, uint64_t vdisk_id, struct vdisk_master *out)
{
    uint64_t ino = vdisk_table_ino(vdisk_id);
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e) {
        const char *master = ndfs_vdisk_master_node(&e->v);
        g_strlcpy(out->node, master ? master : "", sizeof(out->node));
        g_strlcpy(out->name, e->v.name, sizeof(out->name));
        out->map_gen = e->map_gen;
        out->failed = master_failed(&e->v);
        out->alternate = e->v.secondary_node != NULL;
    }
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_io(struct vdisk_table *t, uint64_t ino, const char *node, const char *path,
                   struct vdisk_io *out)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e) {
        out->id = e->v.id;
        out->size = e->v.size;
        const char *mnode = ndfs_vdisk_master_node(&e->v);
        const char *mpath = ndfs_vdisk_master_path(&e->v);
        out->local = node && mnode && mpath && strcmp(mnode, node) == 0 && !master_failed(&e->v) &&
                     (!path || strcmp(path, mpath) == 0);
    }
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

int vdisk_table_master_path(struct vdisk_table *t, uint64_t ino, char **node, char **path)
{
    g_rw_lock_reader_lock(&t->lock);
    struct vdisk_entry *e = g_tree_lookup(t->by_ino, &ino);
    if (e) {
        *node = g_strdup(ndfs_vdisk_master_node(&e->v));
        *path = g_strdup(ndfs_vdisk_master_path(&e->v));
    }
    g_rw_lock_reader_unlock(&t->lock);
    return e ? 0 : -ENOENT;
}

struct list_state {
    uint64_t first_ino;
    size_t max;
    GArray *out;
};

static gboolean list_one(gpointer key, gpointer value, gpointer data)
{
    (void)key;
    struct list_state *st = data;
    const struct vdisk_entry *e = value;
    if (e->ino < st->first_ino)
        return FALSE;
    struct vdisk_attr a;
    entry_to_attr(e, &a);
    g_array_append_val(st->out, a);
    return st->out->len >= st->max;
}

size_t vdisk_table_list_from(struct vdisk_table *t, uint64_t first_ino, size_t max,
                             struct vdisk_attr **out)
{
    struct list_state st = {first_ino, max, g_array_new(FALSE, FALSE, sizeof(struct vdisk_attr))};
    if (max > 0) {
        g_rw_lock_reader_lock(&t->lock);
        g_tree_foreach(t->by_ino, list_one, &st);
        g_rw_lock_reader_unlock(&t->lock);
    }
    size_t n = st.out->len;
    *out = n ? (struct vdisk_attr *)g_array_free(st.out, FALSE) : NULL;
    if (!n)
        g_array_free(st.out, TRUE);
    return n;
}

static gboolean collect_id(gpointer key, gpointer value, gpointer data)
{
    (void)key;
    const struct vdisk_entry *e = value;
    g_array_append_val((GArray *)data, e->v.id);
    return FALSE;
}

uint64_t *vdisk_table_ids(struct vdisk_table *t, size_t *count)
{
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    g_rw_lock_reader_lock(&t->lock);
    g_tree_foreach(t->by_ino, collect_id, ids);
    g_rw_lock_reader_unlock(&t->lock);
    *count = ids->len;
    return (uint64_t *)g_array_free(ids, FALSE);
}

static gboolean add_size(gpointer key, gpointer value, gpointer data)
{
    (void)key;
    const struct vdisk_entry *e = value;
    *(uint64_t *)data += e->v.size;
    return FALSE;
}

void vdisk_table_totals(struct vdisk_table *t, uint64_t *count, uint64_t *bytes)
{
    *bytes = 0;
    g_rw_lock_reader_lock(&t->lock);
    *count = (uint64_t)g_tree_nnodes(t->by_ino);
    g_tree_foreach(t->by_ino, add_size, bytes);
    g_rw_lock_reader_unlock(&t->lock);
}

uint64_t vdisk_table_root_mtime(struct vdisk_table *t)
{
    g_rw_lock_reader_lock(&t->lock);
    uint64_t m = t->root_mtime;
    g_rw_lock_reader_unlock(&t->lock);
    return m;
}
