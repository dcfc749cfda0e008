/* Checks shared by the commands that place a vdisk's disks (vdisk.create in
 * vdisk_change.c, vdisk.move in vdisk_move.c). */
#include <errno.h>
#include <string.h>

#include "commands.h"

bool cmd_same_node_path(const char *node_a, const char *path_a, const char *node_b,
                        const char *path_b)
{
    return node_a && node_b && path_a && path_b && strcmp(node_a, node_b) == 0 &&
           strcmp(path_a, path_b) == 0;
}

int cmd_check_node(struct cmd_request *r, const char *node)
{
    struct ndfs_node n = {0};
    int rc = ndfs_ccd_node_get(r->s->ccd, node, &n);
    if (rc == 0) {
        ndfs_node_clear(&n);
        return 0;
    }
    if (rc == -ENOENT) {
        cmd_reply_error(r, -EINVAL, "node \"%s\" is not a member of the cluster", node);
        return -EINVAL;
    }
    cmd_reply_error(r, rc, "cannot read node \"%s\": %s", node, ndfs_ccd_errmsg(r->s->ccd));
    return rc;
}

struct path_use {
    const char *node, *path, *self;
    char *used_by;
};

static int path_use_cb(const struct ndfs_vdisk *v, void *data)
{
    struct path_use *u = data;
    if (u->self && strcmp(v->name, u->self) == 0)
        return 0;
    if (cmd_same_node_path(v->primary_node, v->primary_path, u->node, u->path) ||
        cmd_same_node_path(v->secondary_node, v->secondary_path, u->node, u->path)) {
        u->used_by = g_strdup(v->name);
        return 1;
    }
    return 0;
}

int cmd_check_path_free(struct cmd_request *r, const char *self, const char *node, const char *path)
{
    g_autofree char *pair = g_strdup_printf("%s:%s", node, path);
    if (g_hash_table_contains(r->s->pending_paths, pair)) {
        cmd_reply_error(r, -EEXIST, "%s is used by a vdisk being created or moved", pair);
        return -EEXIST;
    }
    struct path_use u = {.node = node, .path = path, .self = self};
    int rc = ndfs_ccd_vdisk_foreach(r->s->ccd, path_use_cb, &u);
    if (rc == 1) {
        cmd_reply_error(r, -EEXIST, "%s is already used by vdisk \"%s\"", pair, u.used_by);
        g_free(u.used_by);
        return -EEXIST;
    }
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read the vdisks: %s", ndfs_ccd_errmsg(r->s->ccd));
        return rc;
    }
    return 0;
}
