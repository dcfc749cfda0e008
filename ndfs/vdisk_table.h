/* The mount's inode table: one entry per vdisk, fed by ndfsd's vdisk.list
 * and vdisk.changed / vdisk.removed events, read by the FUSE op handlers.
 *
 * A vdisk's inode number is its cluster-unique id + 1 (ids are never reused,
 * so inode numbers are stable and need no lookup counting); inode 1 is the
 * root directory. Readers get copies, so they never hold the table's lock
 * while replying to the kernel. All functions are thread-safe. */
#ifndef NDFS_VDISK_TABLE_H
#define NDFS_VDISK_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <ndfs/ccd.h>

#define VDISK_TABLE_ROOT_INO 1

/* A copy of one entry, usable without the table's lock. */
struct vdisk_attr {
    uint64_t ino;
    uint64_t id;
    uint64_t size;
    uint64_t mtime_ns;
    uint64_t version;
    uint32_t mode; /* permission bits only */
    uid_t uid;     /* owner name resolved locally; 65534 when unknown */
    gid_t gid;     /* group name resolved locally; 65534 when unknown */
    char name[NDFS_VDISK_NAME_MAX + 1];
    char primary_node[NDFS_NODE_NAME_MAX + 1];
    char master_node[NDFS_NODE_NAME_MAX + 1]; /* the mapping's current master */
};

/* Where the driver sends a vdisk's requests now. */
struct vdisk_master {
    char node[NDFS_NODE_NAME_MAX + 1]; /* ndfs_vdisk_master_node() */
    char name[NDFS_VDISK_NAME_MAX + 1];
    uint64_t map_gen; /* changes with every change of the mapping (master, paths, failed) */
    bool failed;      /* the master's path is marked failed: no master */
    bool alternate;   /* the vdisk has another path (a secondary) to fail over to */
};

/* What a FUSE request on a vdisk needs. */
struct vdisk_io {
    uint64_t id;
    uint64_t size;
    bool local; /* the mapping names node as master, with path (when not NULL), not failed */
};

/* What vdisk_table_upsert() did (a change of the mapping: CHANGED too). */
enum vdisk_table_change {
    VDISK_TABLE_UNCHANGED = 0, /* same or older version: nothing to tell the kernel */
    VDISK_TABLE_ADDED,
    VDISK_TABLE_CHANGED,
};

struct vdisk_table;

struct vdisk_table *vdisk_table_new(void);
void vdisk_table_free(struct vdisk_table *t);

static inline uint64_t vdisk_table_ino(uint64_t vdisk_id)
{
    return vdisk_id + 1;
}

/* Inserts or replaces the entry of v->id (a deep copy; the caller keeps v).
 * An update whose version is older than the stored one is ignored (events
 * may trail a fresher vdisk.list). When the name changed, *old_name (if not
 * NULL) receives the previous name, g_malloc'd; otherwise NULL. */
enum vdisk_table_change vdisk_table_upsert(struct vdisk_table *t, const struct ndfs_vdisk *v,
                                           char **old_name);
/* Removes the entry of id. 0 and *name (g_malloc'd, may be NULL to ignore),
 * or -ENOENT. */
int vdisk_table_remove(struct vdisk_table *t, uint64_t id, char **name);

/* Copies of one entry. -ENOENT when there is none. */
int vdisk_table_get(struct vdisk_table *t, uint64_t ino, struct vdisk_attr *out);
int vdisk_table_find(struct vdisk_table *t, const char *name, struct vdisk_attr *out);
/* The current size of ino (cheaper than _get, for every I/O). -ENOENT. */
int vdisk_table_size(struct vdisk_table *t, uint64_t ino, uint64_t *size);
/* What a request on ino needs: the vdisk's id, size and the node that
 * masters it now (ndfs_vdisk_master_node; node has NDFS_NODE_NAME_MAX + 1
 * bytes). -ENOENT. */
int vdisk_table_route(struct vdisk_table *t, uint64_t ino, uint64_t *id, uint64_t *size,
                      char *node);
/* The current master of a vdisk, by id (the driver, at send time). -ENOENT. */
int vdisk_table_master(struct vdisk_table *t, uint64_t vdisk_id, struct vdisk_master *out);
/* id, size, and whether node masters ino now through path (NULL: any path)
 * with that path not marked failed. -ENOENT. */
int vdisk_table_io(struct vdisk_table *t, uint64_t ino, const char *node, const char *path,
                   struct vdisk_io *out);
/* The master node and path of ino, g_malloc'd. -ENOENT. */
int vdisk_table_master_path(struct vdisk_table *t, uint64_t ino, char **node, char **path);

/* Copies of the entries whose inode number is >= first_ino, in inode order,
 * at most max of them (readdir: offsets stay stable across changes).
 * Returns the count; *out is g_malloc'd (g_free it) or NULL when 0. */
size_t vdisk_table_list_from(struct vdisk_table *t, uint64_t first_ino, size_t max,
                             struct vdisk_attr **out);
/* All vdisk ids, g_malloc'd, *count of them. */
uint64_t *vdisk_table_ids(struct vdisk_table *t, size_t *count);

/* Totals for statfs: number of vdisks and the sum of their sizes. */
void vdisk_table_totals(struct vdisk_table *t, uint64_t *count, uint64_t *bytes);
/* Time of the last change of the set of entries (ns), the root's mtime. */
uint64_t vdisk_table_root_mtime(struct vdisk_table *t);

/* Local uid/gid of an account name; 65534 (nobody/nogroup) when unknown. */
uid_t vdisk_table_resolve_user(const char *name);
gid_t vdisk_table_resolve_group(const char *name);

#endif
