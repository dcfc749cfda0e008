/* The control commands that change a vdisk's mapping state (issue 5):
 * vdisk.fail-path, vdisk.restore-path and vdisk.failback (see control.h).
 * Like chmod, each runs on the CCD leader (commands.c forwards it there),
 * reads the row, applies the rule (ndfs_vdisk_path_apply, shared with the
 * failover module) and proposes the row with its version, reading it again
 * when someone changed it meanwhile (-ESTALE). vdisk.failback does so under
 * the reconfiguration protocol (issue 6, reconfig.h): the mounts hold the
 * vdisk's I/O while its master moves. fail-path does not: the path it
 * marks is failing, its requests could not drain. */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <string.h>

#include <ndfs/membership.h>

#include "commands.h"
#include "control.h"
#include "failover.h"
#include "parse.h"
#include "reconfig.h"

/* An -ESTALE update means someone changed the row meanwhile: read it again. */
#define UPDATE_ATTEMPTS 5

bool ndfs_vdisk_path_member(const char *node, void *data)
{
    struct ndfs_membership *m = data;
    /* no membership: a single node, which is always a member */
    if (m == NULL)
        return true;
    return ndfs_membership_is_member(m, node);
}

static bool node_is_member(ndfs_vdisk_member_fn is_member, void *data, const char *node)
{
    return is_member == NULL || is_member(node, data);
}

const char *ndfs_vdisk_path_op_verb(enum ndfs_path_op op)
{
    switch (op) {
    case NDFS_PATH_FAIL:
        return "fail a path of";
    case NDFS_PATH_RESTORE:
        return "restore a path of";
    case NDFS_PATH_FAILBACK:
        return "fail back";
    }
    return "change";
}

int ndfs_vdisk_path_apply(struct ndfs_vdisk *v, enum ndfs_path_op op, const char *node,
                          ndfs_vdisk_member_fn is_member, void *data, bool *changed, char **reason)
{
    const bool was_on_secondary = v->on_secondary, was_pf = v->primary_failed,
               was_sf = v->secondary_failed;
    const bool has_secondary = v->secondary_node != NULL;

    *changed = false;
    *reason = NULL;
    if (op == NDFS_PATH_FAILBACK) {
        if (!v->on_secondary)
            return 0; /* the primary masters it already */
        if (v->primary_failed) {
            *reason =
                g_strdup_printf("cannot fail back vdisk \"%s\": the path of its primary %s is "
                                "marked failed (ndfsadm vdisk restore-path %s %s)",
                                v->name, v->primary_node, v->name, v->primary_node);
            return -EBUSY;
        }
        if (!node_is_member(is_member, data, v->primary_node)) {
            *reason = g_strdup_printf("cannot fail back vdisk \"%s\": its primary %s is not a "
                                      "member of the cluster (down or not reachable)",
                                      v->name, v->primary_node);
            return -EBUSY;
        }
        v->on_secondary = false;
        *changed = true;
        return 0;
    }

    bool is_primary = strcmp(node, v->primary_node) == 0;
    bool is_secondary = has_secondary && strcmp(node, v->secondary_node) == 0;
    if (!is_primary && !is_secondary) {
        if (has_secondary)
            *reason = g_strdup_printf("node \"%s\" is neither the primary (%s) nor the secondary "
                                      "(%s) of vdisk \"%s\"",
                                      node, v->primary_node, v->secondary_node, v->name);
        else
            *reason = g_strdup_printf("node \"%s\" is not the primary (%s) of vdisk \"%s\", which "
                                      "has no secondary",
                                      node, v->primary_node, v->name);
        return -EINVAL;
    }
    /* node's path is the one the vdisk is mastered through now */
    bool node_masters = is_primary ? !v->on_secondary : v->on_secondary;
    if (op == NDFS_PATH_FAIL) {
        if (is_primary)
            v->primary_failed = true;
        else
            v->secondary_failed = true;
        if (node_masters && has_secondary) {
            const char *other = is_primary ? v->secondary_node : v->primary_node;
            bool other_failed = is_primary ? v->secondary_failed : v->primary_failed;
            if (!other_failed && node_is_member(is_member, data, other))
                v->on_secondary = is_primary;
        }
    } else {
        if (is_primary)
            v->primary_failed = false;
        else
            v->secondary_failed = false;
        bool master_failed = v->on_secondary ? v->secondary_failed : v->primary_failed;
        if (!node_masters && master_failed)
            v->on_secondary = is_secondary;
    }
    *changed = v->on_secondary != was_on_secondary || v->primary_failed != was_pf ||
               v->secondary_failed != was_sf;
    return 0;
}

/* A command in flight: who asked, and what, until the CCD answers. */
struct path_change {
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    enum ndfs_path_op op;
    char *name;
    char *node;          /* fail-path, restore-path */
    char *master_before; /* the master node before the change */
    struct ndfs_vdisk v; /* the row proposed */
    unsigned attempts;
};

static void path_change_free(struct path_change *pc)
{
    ndfs_conn_unref(pc->c);
    ndfs_vdisk_clear(&pc->v);
    g_free(pc->name);
    g_free(pc->node);
    g_free(pc->master_before);
    g_free(pc);
}

static void path_change_fail(struct path_change *pc, int status)
{
    const char *verb = ndfs_vdisk_path_op_verb(pc->op);
    switch (status) {
    case -ENOENT:
        ndfs_conn_reply_error(pc->c, pc->id, status, "vdisk \"%s\" does not exist", pc->name);
        break;
    case -ENOTCONN:
        ndfs_conn_reply_error(pc->c, pc->id, status,
                              "cannot %s vdisk \"%s\": this node is not the cluster leader", verb,
                              pc->name);
        break;
    case -ECANCELED:
        ndfs_conn_reply_error(pc->c, pc->id, status, "cannot %s vdisk \"%s\": ndfsd is stopping",
                              verb, pc->name);
        break;
    case -ESTALE:
        ndfs_conn_reply_error(pc->c, pc->id, status,
                              "cannot %s vdisk \"%s\": it kept changing meanwhile, try again", verb,
                              pc->name);
        break;
    default:
        ndfs_conn_reply_error(pc->c, pc->id, status, "cannot %s vdisk \"%s\": %s", verb, pc->name,
                              g_strerror(-status));
        break;
    }
    path_change_free(pc);
}

/* Answers with the vdisk as the CCD now holds it. */
static void path_change_reply(struct path_change *pc)
{
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(pc->s->ccd, pc->name, &v);
    if (rc < 0) {
        path_change_fail(pc, rc);
        return;
    }
    ndfs_conn_reply(pc->c, pc->id, 0, NULL, ndfs_vdisk_to_dict(&v));
    ndfs_vdisk_clear(&v);
    path_change_free(pc);
}

/* "uid 0" for a local client, "uid 0 on n2" for a change forwarded by n2. */
static char *who(const struct ndfs_conn *c)
{
    if (c->remote_peer != NULL)
        return g_strdup_printf("uid %u on %s", (unsigned)c->peer.uid, c->remote_peer);
    return g_strdup_printf("uid %u", (unsigned)c->peer.uid);
}

static void log_change(const struct path_change *pc)
{
    const struct ndfs_vdisk *v = &pc->v;
    const char *master = ndfs_vdisk_master_node(v);
    bool moved = strcmp(master, pc->master_before) != 0;
    g_autofree char *by = who(pc->c);
    g_autofree char *move =
        moved ? g_strdup_printf(": %s masters it now (was %s)", master, pc->master_before)
              : g_strdup_printf(": %s still masters it", master);

    switch (pc->op) {
    case NDFS_PATH_FAIL:
        g_message("vdisk \"%s\": the path of %s marked failed by %s%s", v->name, pc->node, by,
                  move);
        break;
    case NDFS_PATH_RESTORE:
        g_message("vdisk \"%s\": the path of %s marked good again by %s%s", v->name, pc->node, by,
                  move);
        break;
    case NDFS_PATH_FAILBACK:
        g_message("vdisk \"%s\": failed back by %s%s", v->name, by, move);
        break;
    }
}

static void path_change_attempt(struct path_change *pc);

static void path_change_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct path_change *pc = data;
    (void)ccd;

    if (status == -ESTALE && pc->attempts < UPDATE_ATTEMPTS) {
        path_change_attempt(pc);
        return;
    }
    if (status < 0) {
        path_change_fail(pc, status);
        return;
    }
    log_change(pc);
    path_change_reply(pc);
}

/* Reads the row, applies the rule and proposes it (or answers at once when
 * nothing changes). */
static void path_change_attempt(struct path_change *pc)
{
    struct ndfs_server *s = pc->s;

    pc->attempts++;
    ndfs_vdisk_clear(&pc->v);
    int rc = ndfs_ccd_vdisk_get(s->ccd, pc->name, &pc->v);
    if (rc < 0) {
        path_change_fail(pc, rc);
        return;
    }
    g_free(pc->master_before);
    pc->master_before = g_strdup(ndfs_vdisk_master_node(&pc->v));
    bool changed = false;
    g_autofree char *reason = NULL;
    rc = ndfs_vdisk_path_apply(&pc->v, pc->op, pc->node, ndfs_vdisk_path_member, s->membership,
                               &changed, &reason);
    if (rc < 0) {
        ndfs_conn_reply(pc->c, pc->id, rc, reason, NULL);
        path_change_free(pc);
        return;
    }
    if (!changed) {
        path_change_reply(pc);
        return;
    }
    pc->v.mtime_ns = cmd_now_ns();
    rc = ndfs_ccd_vdisk_update(s->ccd, &pc->v, path_change_done, pc);
    if (rc < 0)
        path_change_fail(pc, rc);
}

static void path_command(struct cmd_request *r, enum ndfs_path_op op)
{
    g_autofree char *name = NULL, *node = NULL;
    if (cmd_arg_vdisk_name(r, &name) < 0)
        return;
    if (op != NDFS_PATH_FAILBACK) {
        if (cmd_arg_string(r, "node", true, &node) < 0)
            return;
        if (!ndfs_node_name_valid(node)) {
            cmd_reply_error(r, -EINVAL, "invalid node name \"%s\" ([a-z0-9-]{1,32})", node);
            return;
        }
    }
    struct path_change *pc = g_new0(struct path_change, 1);
    pc->s = r->s;
    pc->c = r->c;
    ndfs_conn_ref(r->c);
    pc->id = r->id;
    pc->op = op;
    pc->name = g_steal_pointer(&name);
    pc->node = g_steal_pointer(&node);
    path_change_attempt(pc);
}

void cmd_vdisk_fail_path(struct cmd_request *r)
{
    path_command(r, NDFS_PATH_FAIL);
}

void cmd_vdisk_restore_path(struct cmd_request *r)
{
    path_command(r, NDFS_PATH_RESTORE);
}

/* vdisk.failback runs the reconfiguration protocol (vdisk_move.c's
 * cmd_remap): the mounts hold the vdisk's I/O while its master moves. */
struct failback {
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *name;
    char *master_before; /* the master node when the change was made */
    char *master_after;
};

static void failback_free(struct failback *fb)
{
    ndfs_conn_unref(fb->c);
    g_free(fb->name);
    g_free(fb->master_before);
    g_free(fb->master_after);
    g_free(fb);
}

static int failback_fn(struct ndfs_vdisk *v, void *data, bool *changed, char **reason)
{
    struct failback *fb = data;
    g_free(fb->master_before);
    fb->master_before = g_strdup(ndfs_vdisk_master_node(v));
    int rc = ndfs_vdisk_path_apply(v, NDFS_PATH_FAILBACK, NULL, ndfs_vdisk_path_member,
                                   fb->s->membership, changed, reason);
    if (rc < 0 && *reason != NULL) {
        char *full = g_strdup_printf("%s: nothing changed", *reason);
        g_free(*reason);
        *reason = full;
    }
    g_free(fb->master_after);
    fb->master_after = g_strdup(ndfs_vdisk_master_node(v));
    return rc;
}

static void failback_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct failback *fb = data;
    if (status < 0) {
        ndfs_conn_reply(fb->c, fb->id, status, message, NULL);
    } else {
        g_autofree char *by = who(fb->c);
        if (fb->master_before != NULL && g_strcmp0(fb->master_before, fb->master_after) != 0)
            g_message("vdisk \"%s\": failed back by %s: %s masters it now (was %s) (I/O paused "
                      "%" G_GUINT64_FORMAT " ms)",
                      fb->name, by, fb->master_after, fb->master_before, (guint64)paused_ms);
        else
            g_message("vdisk \"%s\": failed back by %s: its primary masters it already", fb->name,
                      by);
        cmd_reply_remapped(fb->s, fb->c, fb->id, fb->name, paused_ms);
    }
    failback_free(fb);
}

void cmd_vdisk_failback(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    if (cmd_arg_vdisk_name(r, &name) < 0)
        return;
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(r->s->ccd, name, &v);
    if (rc < 0) {
        if (rc == -ENOENT)
            cmd_reply_error(r, rc, "vdisk \"%s\" does not exist", name);
        else
            cmd_reply_error(r, rc, "cannot read vdisk \"%s\": %s", name,
                            ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    /* checked here first: a refusal or nothing to do suspends nothing */
    bool changed = false;
    g_autofree char *reason = NULL;
    uint64_t vdisk_id = v.id;
    rc = ndfs_vdisk_path_apply(&v, NDFS_PATH_FAILBACK, NULL, ndfs_vdisk_path_member,
                               r->s->membership, &changed, &reason);
    ndfs_vdisk_clear(&v);
    /* a change of it queued or under way: decide after it, in turn */
    bool busy = r->s->reconfig != NULL && ndfs_reconfig_busy(r->s->reconfig, vdisk_id);
    if (rc < 0 && !busy) {
        ndfs_conn_reply(r->c, r->id, rc, reason, NULL);
        return;
    }
    if (!changed && !busy) {
        cmd_reply_remapped(r->s, r->c, r->id, name, 0);
        return;
    }
    struct failback *fb = g_new0(struct failback, 1);
    fb->s = r->s;
    fb->c = r->c;
    ndfs_conn_ref(r->c);
    fb->id = r->id;
    fb->name = g_steal_pointer(&name);
    cmd_remap(r->s, fb->name, vdisk_id, failback_fn, fb, failback_over, fb);
}
