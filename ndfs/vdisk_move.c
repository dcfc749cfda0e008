/* The control commands that move a vdisk's master under the
 * reconfiguration protocol (reconfig.h): vdisk.move and node.drain, and the
 * helper that vdisk.failback shares with them (cmd_remap). Each runs on the
 * CCD leader (commands.c forwards it there): it checks the request, then
 * every member suspends the vdisk's I/O, the row is changed, and the
 * members resume; the answer says how long I/O was paused. */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cluster.h"
#include "commands.h"
#include "control.h"
#include "failover.h"
#include "parse.h"
#include "reconfig.h"

/* An -ESTALE update means someone changed the row meanwhile: read it again. */
#define UPDATE_ATTEMPTS 5

/* ---- cmd_remap: one vdisk's mapping change run through the protocol ---- */

struct remap {
    unsigned refs; /* the run's callback and the apply in flight */
    struct ndfs_server *s;
    char *name;
    uint64_t id;
    cmd_remap_fn fn;
    void *fn_data;
    cmd_remap_cb cb;
    void *data;
    bool over; /* cb ran: fn_data may be gone */
    ndfs_reconfig_apply_done done;
    void *done_ctx;
    struct ndfs_vdisk v; /* the row proposed */
    unsigned attempts;
};

static void remap_unref(struct remap *rm)
{
    if (--rm->refs > 0)
        return;
    ndfs_vdisk_clear(&rm->v);
    g_free(rm->name);
    g_free(rm);
}

static void remap_applied(struct remap *rm, int status, const char *message)
{
    ndfs_reconfig_apply_done done = rm->done;
    rm->done = NULL;
    done(status, message, rm->done_ctx);
    remap_unref(rm);
}

static void remap_attempt(struct remap *rm);

static void remap_updated(struct ndfs_ccd *ccd, int status, void *data)
{
    struct remap *rm = data;
    (void)ccd;
    if (status == -ESTALE && rm->attempts < UPDATE_ATTEMPTS && !rm->over) {
        remap_attempt(rm);
        return;
    }
    if (status < 0) {
        g_autofree char *msg =
            status == -ESTALE
                ? g_strdup_printf("vdisk \"%s\" kept changing meanwhile, try again: nothing "
                                  "changed",
                                  rm->name)
            : status == -ENOTCONN
                ? g_strdup("this node stopped leading the cluster meanwhile: nothing changed")
                : g_strdup_printf("the change of vdisk \"%s\" failed: %s", rm->name,
                                  g_strerror(-status));
        remap_applied(rm, status, msg);
        return;
    }
    remap_applied(rm, 0, NULL);
}

/* Reads the row as it is now, asks fn for the new one and proposes it. */
static void remap_attempt(struct remap *rm)
{
    struct ndfs_server *s = rm->s;
    rm->attempts++;
    ndfs_vdisk_clear(&rm->v);
    int rc = ndfs_ccd_vdisk_get(s->ccd, rm->name, &rm->v);
    if (rc == 0 && rm->v.id != rm->id)
        rc = -ENOENT;
    if (rc < 0) {
        g_autofree char *msg = rc == -ENOENT
                                   ? g_strdup_printf("vdisk \"%s\" was removed meanwhile", rm->name)
                                   : g_strdup_printf("cannot read vdisk \"%s\": %s", rm->name,
                                                     ndfs_ccd_errmsg(s->ccd));
        remap_applied(rm, rc, msg);
        return;
    }
    bool changed = false;
    g_autofree char *reason = NULL;
    rc = rm->fn(&rm->v, rm->fn_data, &changed, &reason);
    if (rc < 0 || !changed) {
        remap_applied(rm, rc < 0 ? rc : 0, reason);
        return;
    }
    rm->v.mtime_ns = cmd_now_ns();
    rc = ndfs_ccd_vdisk_update(s->ccd, &rm->v, remap_updated, rm);
    if (rc < 0)
        remap_updated(s->ccd, rc, rm);
}

static void remap_apply(void *data, ndfs_reconfig_apply_done done, void *ctx)
{
    struct remap *rm = data;
    rm->refs++;
    rm->done = done;
    rm->done_ctx = ctx;
    rm->attempts = 0;
    if (rm->over) {
        remap_applied(rm, -ECANCELED, "ndfsd is stopping");
        return;
    }
    remap_attempt(rm);
}

static void remap_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct remap *rm = data;
    rm->over = true;
    rm->cb(status, message, paused_ms, rm->data);
    remap_unref(rm);
}

void cmd_remap(struct ndfs_server *s, const char *name, uint64_t id, cmd_remap_fn fn, void *fn_data,
               cmd_remap_cb cb, void *data)
{
    if (s->reconfig == NULL) {
        cb(-EAGAIN, "ndfsd is starting or stopping", 0, data);
        return;
    }
    struct remap *rm = g_new0(struct remap, 1);
    rm->refs = 1;
    rm->s = s;
    rm->name = g_strdup(name);
    rm->id = id;
    rm->fn = fn;
    rm->fn_data = fn_data;
    rm->cb = cb;
    rm->data = data;
    ndfs_reconfig_change(s->reconfig, NDFS_CCD_VDISKS, &id, 1, remap_apply, rm, remap_over, rm);
}

/* ---- shared checks ---- */

static bool node_member(struct ndfs_server *s, const char *node)
{
    return ndfs_vdisk_path_member(node, s->membership);
}

/* The vdisk's row with paused-ms added, as every vdisk change run under
 * the protocol answers (create, chmod, chown, resize, move, failback). */
void cmd_reply_remapped(struct ndfs_server *s, struct ndfs_conn *c, uint64_t id, const char *name,
                        uint64_t paused_ms)
{
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(s->ccd, name, &v);
    if (rc < 0) {
        if (rc == -ENOENT)
            ndfs_conn_reply_error(c, id, rc, "vdisk \"%s\" does not exist", name);
        else
            ndfs_conn_reply_error(c, id, rc, "cannot read vdisk \"%s\": %s", name,
                                  ndfs_ccd_errmsg(s->ccd));
        return;
    }
    g_autoptr(GVariant) dict = g_variant_ref_sink(ndfs_vdisk_to_dict(&v));
    ndfs_vdisk_clear(&v);
    GVariantDict d;
    g_variant_dict_init(&d, dict);
    g_variant_dict_insert(&d, "paused-ms", "t", (guint64)paused_ms);
    ndfs_conn_reply(c, id, 0, NULL, g_variant_dict_end(&d));
}

/* ---- vdisk.move ---- */

/* The target mapping of a move; the failed flags follow each path. */
struct move {
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *name;
    char *pnode, *ppath;
    char *snode, *spath; /* NULL: no secondary */
    char *pending[2];    /* the new pairs reserved in s->pending_paths */
    bool changed;        /* move_fn changed the row */
};

static void move_free(struct move *mv)
{
    for (size_t i = 0; i < G_N_ELEMENTS(mv->pending); i++) {
        if (mv->pending[i] != NULL && !mv->s->stopping)
            g_hash_table_remove(mv->s->pending_paths, mv->pending[i]);
        g_free(mv->pending[i]);
    }
    ndfs_conn_unref(mv->c);
    g_free(mv->name);
    g_free(mv->pnode);
    g_free(mv->ppath);
    g_free(mv->snode);
    g_free(mv->spath);
    g_free(mv);
}

/* Whether node:path is marked failed in v (false for a path v has not). */
static bool pair_failed(const struct ndfs_vdisk *v, const char *node, const char *path)
{
    if (cmd_same_node_path(v->primary_node, v->primary_path, node, path))
        return v->primary_failed;
    if (cmd_same_node_path(v->secondary_node, v->secondary_path, node, path))
        return v->secondary_failed;
    return false;
}

/* Makes v's mapping the move's target. */
static int move_fn(struct ndfs_vdisk *v, void *data, bool *changed, char **reason)
{
    struct move *mv = data;
    bool pf = pair_failed(v, mv->pnode, mv->ppath);
    bool sf = mv->snode != NULL && pair_failed(v, mv->snode, mv->spath);
    if (pf) {
        *reason = g_strdup_printf("the path %s:%s of vdisk \"%s\" is marked failed (ndfsadm vdisk "
                                  "restore-path %s %s): nothing changed",
                                  mv->pnode, mv->ppath, v->name, v->name, mv->pnode);
        return -EBUSY;
    }
    bool same = !v->on_secondary && !v->primary_failed &&
                cmd_same_node_path(v->primary_node, v->primary_path, mv->pnode, mv->ppath) &&
                (mv->snode == NULL ? v->secondary_node == NULL
                                   : cmd_same_node_path(v->secondary_node, v->secondary_path,
                                                        mv->snode, mv->spath) &&
                                         v->secondary_failed == sf);
    *changed = !same;
    mv->changed = !same;
    if (same)
        return 0;
    g_free(v->primary_node);
    g_free(v->primary_path);
    g_free(v->secondary_node);
    g_free(v->secondary_path);
    v->primary_node = g_strdup(mv->pnode);
    v->primary_path = g_strdup(mv->ppath);
    v->secondary_node = g_strdup(mv->snode);
    v->secondary_path = g_strdup(mv->spath);
    v->on_secondary = false;
    v->primary_failed = false;
    v->secondary_failed = sf;
    return 0;
}

static void move_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct move *mv = data;
    if (status < 0) {
        ndfs_conn_reply(mv->c, mv->id, status, message, NULL);
    } else if (!mv->changed) {
        cmd_reply_remapped(mv->s, mv->c, mv->id, mv->name, paused_ms);
    } else {
        g_message("vdisk %s: moved to %s:%s%s%s%s%s (I/O paused %" PRIu64 " ms)", mv->name,
                  mv->pnode, mv->ppath, mv->snode ? ", secondary " : "", mv->snode ? mv->snode : "",
                  mv->snode ? ":" : "", mv->spath ? mv->spath : "", paused_ms);
        cmd_reply_remapped(mv->s, mv->c, mv->id, mv->name, paused_ms);
    }
    move_free(mv);
}

static void move_run(struct move *mv, uint64_t vdisk_id)
{
    cmd_remap(mv->s, mv->name, vdisk_id, move_fn, mv, move_over, mv);
}

/* Checking the disk on each new node: its answer. */
struct move_check {
    struct move *mv;
    uint64_t vdisk_id;
    uint64_t size;
    bool check_secondary; /* then the secondary's disk */
};

static void move_checked(struct move_check *mc, int status, const char *message);

static void move_check_next(struct move_check *mc);

static void move_checked_cb(int status, const char *message, bool created, void *data)
{
    (void)created; /* nothing is made: the disk must be there */
    move_checked(data, status, message);
}

static void move_checked(struct move_check *mc, int status, const char *message)
{
    struct move *mv = mc->mv;
    if (status < 0) {
        const char *node = mc->check_secondary ? mv->snode : mv->pnode;
        if (message != NULL)
            ndfs_conn_reply_error(mv->c, mv->id, status, "%s", message);
        else
            ndfs_conn_reply_error(mv->c, mv->id, status, "node %s did not check the disk: %s", node,
                                  g_strerror(-status));
        move_free(mv);
        g_free(mc);
        return;
    }
    if (mc->check_secondary) {
        mc->check_secondary = false;
        move_check_next(mc);
        return;
    }
    uint64_t vdisk_id = mc->vdisk_id;
    g_free(mc);
    move_run(mv, vdisk_id);
}

/* The disk must exist on its node and hold the vdisk (disk.prepare, no
 * create): the new primary's, then a new secondary's. */
static void move_check_next(struct move_check *mc)
{
    struct move *mv = mc->mv;
    const char *node = mc->check_secondary ? mv->snode : mv->pnode;
    const char *path = mc->check_secondary ? mv->spath : mv->ppath;
    ndfs_disk_prepare_on(mv->s, node, mv->name, path, mc->size, false, false, move_checked_cb, mc);
}

void cmd_vdisk_move(struct cmd_request *r)
{
    struct ndfs_server *s = r->s;
    g_autofree char *name = NULL, *primary = NULL, *secondary = NULL;
    g_autofree char *pnode = NULL, *ppath = NULL, *snode = NULL, *spath = NULL;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_string(r, "primary", true, &primary) < 0 ||
        cmd_arg_string(r, "secondary", false, &secondary) < 0)
        return;
    if (ndfs_parse_node_path(primary, &pnode, &ppath) < 0) {
        cmd_reply_error(r, -EINVAL, "primary \"%s\" is not NODE:PATH with an absolute PATH",
                        primary);
        return;
    }
    if (secondary != NULL && secondary[0] != '\0' &&
        ndfs_parse_node_path(secondary, &snode, &spath) < 0) {
        cmd_reply_error(r, -EINVAL, "secondary \"%s\" is not NODE:PATH with an absolute PATH",
                        secondary);
        return;
    }
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(s->ccd, name, &v);
    if (rc < 0) {
        if (rc == -ENOENT)
            cmd_reply_error(r, rc, "vdisk \"%s\" does not exist", name);
        else
            cmd_reply_error(r, rc, "cannot read vdisk \"%s\": %s", name, ndfs_ccd_errmsg(s->ccd));
        return;
    }
    if (snode == NULL && v.secondary_node != NULL) {
        if (cmd_same_node_path(v.secondary_node, v.secondary_path, pnode, ppath)) {
            /* the secondary becomes the primary: the old primary its secondary */
            snode = g_strdup(v.primary_node);
            spath = g_strdup(v.primary_path);
        } else if (strcmp(v.secondary_node, pnode) == 0) {
            cmd_reply_error(r, -EINVAL,
                            "the secondary of vdisk \"%s\" (%s:%s) is on node %s, the new "
                            "primary's: give --secondary NODE:PATH on another node",
                            name, v.secondary_node, v.secondary_path, pnode);
            ndfs_vdisk_clear(&v);
            return;
        } else {
            snode = g_strdup(v.secondary_node);
            spath = g_strdup(v.secondary_path);
        }
    }
    bool unchanged =
        !v.on_secondary && !v.primary_failed &&
        cmd_same_node_path(v.primary_node, v.primary_path, pnode, ppath) &&
        (snode == NULL ? v.secondary_node == NULL
                       : cmd_same_node_path(v.secondary_node, v.secondary_path, snode, spath));
    uint64_t vdisk_id = v.id, size = v.size;
    bool new_primary = !cmd_same_node_path(v.primary_node, v.primary_path, pnode, ppath) &&
                       !cmd_same_node_path(v.secondary_node, v.secondary_path, pnode, ppath);
    bool new_secondary = snode != NULL &&
                         !cmd_same_node_path(v.primary_node, v.primary_path, snode, spath) &&
                         !cmd_same_node_path(v.secondary_node, v.secondary_path, snode, spath);
    bool primary_failed = pair_failed(&v, pnode, ppath);
    ndfs_vdisk_clear(&v);
    /* a change of it queued or under way: the mapping checks wait for it */
    bool busy = s->reconfig != NULL && ndfs_reconfig_busy(s->reconfig, vdisk_id);
    if (unchanged && !busy) {
        /* already so, and no change of it waits: nothing to suspend */
        cmd_reply_remapped(s, r->c, r->id, name, 0);
        return;
    }
    if (snode != NULL && strcmp(snode, pnode) == 0) {
        cmd_reply_error(r, -EINVAL,
                        "the secondary must be on another node than the primary (both on \"%s\")",
                        pnode);
        return;
    }
    if (cmd_check_node(r, pnode) < 0 || (snode != NULL && cmd_check_node(r, snode) < 0))
        return;
    if (!node_member(s, pnode)) {
        cmd_reply_error(r, -EBUSY, "node %s is not a member of the cluster (down or not reachable)",
                        pnode);
        return;
    }
    if (primary_failed && !busy) {
        cmd_reply_error(r, -EBUSY,
                        "the path %s:%s of vdisk \"%s\" is marked failed (ndfsadm vdisk "
                        "restore-path %s %s)",
                        pnode, ppath, name, name, pnode);
        return;
    }
    if ((new_primary && cmd_check_path_free(r, name, pnode, ppath) < 0) ||
        (new_secondary && cmd_check_path_free(r, name, snode, spath) < 0))
        return;

    struct move *mv = g_new0(struct move, 1);
    mv->s = s;
    mv->c = r->c;
    ndfs_conn_ref(r->c);
    mv->id = r->id;
    mv->name = g_steal_pointer(&name);
    mv->pnode = g_steal_pointer(&pnode);
    mv->ppath = g_steal_pointer(&ppath);
    mv->snode = g_steal_pointer(&snode);
    mv->spath = g_steal_pointer(&spath);
    /* held while the disks are checked and the change runs */
    if (new_primary) {
        mv->pending[0] = g_strdup_printf("%s:%s", mv->pnode, mv->ppath);
        g_hash_table_add(s->pending_paths, g_strdup(mv->pending[0]));
    }
    if (new_secondary) {
        mv->pending[1] = g_strdup_printf("%s:%s", mv->snode, mv->spath);
        g_hash_table_add(s->pending_paths, g_strdup(mv->pending[1]));
    }
    struct move_check *mc = g_new0(struct move_check, 1);
    mc->mv = mv;
    mc->vdisk_id = vdisk_id;
    mc->size = size;
    if (new_secondary) {
        /* the secondary's disk first, then the primary's (below, always) */
        mc->check_secondary = true;
    }
    move_check_next(mc);
}

/* ---- node.drain ---- */

struct drain_item {
    struct drain *dr;
    char *vdisk;
    uint64_t id;
    char *to; /* "node:path" it moves to */
};

struct drain {
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *node;
    GPtrArray *items;   /* struct drain_item * */
    unsigned left;      /* runs not over */
    GPtrArray *moved;   /* char *: vdisks moved */
    int status;         /* the first failure */
    char *message;      /* its message */
    uint64_t paused_ms; /* the longest pause */
};

static void drain_item_free(gpointer p)
{
    struct drain_item *it = p;
    g_free(it->vdisk);
    g_free(it->to);
    g_free(it);
}

static void drain_free(struct drain *dr)
{
    ndfs_conn_unref(dr->c);
    g_free(dr->node);
    g_ptr_array_unref(dr->items);
    g_ptr_array_unref(dr->moved);
    g_free(dr->message);
    g_free(dr);
}

/* Why v (mastered by node) cannot move to its other path; NULL if it can. */
static char *drain_refusal(struct ndfs_server *s, const struct ndfs_vdisk *v, const char *node)
{
    if (v->secondary_node == NULL)
        return g_strdup_printf("vdisk \"%s\" has no secondary to take it over from %s", v->name,
                               node);
    const char *other = v->on_secondary ? v->primary_node : v->secondary_node;
    const char *other_path = v->on_secondary ? v->primary_path : v->secondary_path;
    bool other_failed = v->on_secondary ? v->primary_failed : v->secondary_failed;
    if (other_failed)
        return g_strdup_printf("the other path %s:%s of vdisk \"%s\" is marked failed (ndfsadm "
                               "vdisk restore-path %s %s)",
                               other, other_path, v->name, v->name, other);
    if (!node_member(s, other))
        return g_strdup_printf("the other node %s of vdisk \"%s\" is not a member of the cluster "
                               "(down or not reachable)",
                               other, v->name);
    return NULL;
}

/* Flips the vdisk to its other path if node still masters it. */
static int drain_fn(struct ndfs_vdisk *v, void *data, bool *changed, char **reason)
{
    struct drain_item *it = data;
    *changed = false;
    if (strcmp(ndfs_vdisk_master_node(v), it->dr->node) != 0)
        return 0; /* moved off it meanwhile */
    *reason = drain_refusal(it->dr->s, v, it->dr->node);
    if (*reason != NULL)
        return -EBUSY;
    v->on_secondary = !v->on_secondary;
    *changed = true;
    return 0;
}

static void drain_reply(struct drain *dr)
{
    if (dr->status < 0) {
        g_autofree char *moved = NULL;
        if (dr->moved->len > 0) {
            g_ptr_array_add(dr->moved, NULL);
            g_autofree char *list = g_strjoinv(", ", (char **)dr->moved->pdata);
            moved = g_strdup_printf(" (moved meanwhile: %s)", list);
        }
        ndfs_conn_reply_error(dr->c, dr->id, dr->status, "%s%s", dr->message, moved ? moved : "");
        drain_free(dr);
        return;
    }
    g_message("node %s drained: %u vdisk%s moved off it (I/O paused %" PRIu64 " ms at most)",
              dr->node, dr->moved->len, dr->moved->len == 1 ? "" : "s", dr->paused_ms);
    g_ptr_array_add(dr->moved, NULL);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert_value(&d, "moved",
                                g_variant_new_strv((const char *const *)dr->moved->pdata, -1));
    g_variant_dict_insert(&d, "paused-ms", "t", (guint64)dr->paused_ms);
    ndfs_conn_reply(dr->c, dr->id, 0, NULL, g_variant_dict_end(&d));
    drain_free(dr);
}

static void drain_item_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct drain_item *it = data;
    struct drain *dr = it->dr;
    if (status < 0) {
        if (dr->status == 0) {
            dr->status = status;
            dr->message =
                g_strdup_printf("vdisk %s: %s", it->vdisk, message ? message : g_strerror(-status));
        }
    } else {
        g_message("vdisk %s: moved to %s (I/O paused %" PRIu64 " ms; node %s drained)", it->vdisk,
                  it->to, paused_ms, dr->node);
        g_ptr_array_add(dr->moved, g_strdup(it->vdisk));
        dr->paused_ms = MAX(dr->paused_ms, paused_ms);
    }
    if (--dr->left == 0)
        drain_reply(dr);
}

struct drain_scan {
    struct ndfs_server *s;
    const char *node;
    GPtrArray *items;
    char *refusal;
};

static int drain_scan_cb(const struct ndfs_vdisk *v, void *data)
{
    struct drain_scan *sc = data;
    if (strcmp(ndfs_vdisk_master_node(v), sc->node) != 0)
        return 0;
    sc->refusal = drain_refusal(sc->s, v, sc->node);
    if (sc->refusal != NULL)
        return 1;
    struct drain_item *it = g_new0(struct drain_item, 1);
    it->vdisk = g_strdup(v->name);
    it->id = v->id;
    it->to = v->on_secondary ? g_strdup_printf("%s:%s", v->primary_node, v->primary_path)
                             : g_strdup_printf("%s:%s", v->secondary_node, v->secondary_path);
    g_ptr_array_add(sc->items, it);
    return 0;
}

void cmd_node_drain(struct cmd_request *r)
{
    g_autofree char *node = NULL;
    if (cmd_arg_string(r, "name", true, &node) < 0)
        return;
    if (!ndfs_node_name_valid(node)) {
        cmd_reply_error(r, -EINVAL, "invalid node name \"%s\" ([a-z0-9-]{1,32})", node);
        return;
    }
    if (cmd_check_node(r, node) < 0)
        return;
    struct drain_scan sc = {.s = r->s, .node = node};
    sc.items = g_ptr_array_new_with_free_func(drain_item_free);
    int rc = ndfs_ccd_vdisk_foreach(r->s->ccd, drain_scan_cb, &sc);
    if (rc == 1) {
        cmd_reply_error(r, -EBUSY, "%s", sc.refusal);
        g_free(sc.refusal);
        g_ptr_array_unref(sc.items);
        return;
    }
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read the vdisks: %s", ndfs_ccd_errmsg(r->s->ccd));
        g_ptr_array_unref(sc.items);
        return;
    }
    struct drain *dr = g_new0(struct drain, 1);
    dr->s = r->s;
    dr->c = r->c;
    ndfs_conn_ref(r->c);
    dr->id = r->id;
    dr->node = g_steal_pointer(&node);
    dr->items = sc.items;
    dr->moved = g_ptr_array_new_with_free_func(g_free);
    if (dr->items->len == 0) {
        drain_reply(dr);
        return;
    }
    /* different vdisks: their runs go at once */
    dr->left = dr->items->len;
    GPtrArray *items = g_ptr_array_ref(dr->items);
    for (guint i = 0; i < items->len; i++) {
        struct drain_item *it = items->pdata[i];
        it->dr = dr;
        cmd_remap(r->s, it->vdisk, it->id, drain_fn, it, drain_item_over, it);
    }
    g_ptr_array_unref(items);
}
