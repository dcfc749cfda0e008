/* The control commands that change a node's row: node.remove, and
 * link.add and link.remove (ndfsadm link add / remove NODE ADDR), which
 * change a node's link addresses while the cluster runs. The link changes
 * runs on the CCD leader (commands.c forwards it there) as its table's
 * format row says (the links: under the reconfiguration protocol, for the
 * vdisks the node masters, whose I/O crosses its links). The address is
 * kept in the node's row at the first free link index (link i pairs the
 * address i of two nodes, so a new network needs an address on every node
 * that should use it); every node's transport follows the row, and the
 * node itself listens on it once its replica applied it. Adding first
 * asks the node whether it can listen on the address at all. */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ndfs/transport.h>

#include "cluster.h"
#include "commands.h"
#include "config.h"
#include "control.h"
#include "failover.h"
#include "parse.h"
#include "reconfig.h"

#define LINK_CHECK_TIMEOUT_MS 5000

struct link_change {
    unsigned refs; /* the run's callback, the apply in flight, a check in flight */
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *node;
    char *address;
    bool add;
    int index; /* the link's index, from the CCD */
    ndfs_reconfig_apply_done done;
    void *done_ctx;
};

static void lc_unref(struct link_change *lc)
{
    if (--lc->refs > 0)
        return;
    ndfs_conn_unref(lc->c);
    g_free(lc->node);
    g_free(lc->address);
    g_free(lc);
}

/* The CCD's refusals, for people. */
static char *lc_refusal(const struct link_change *lc, int status)
{
    switch (status) {
    case -EEXIST:
        return g_strdup_printf("node %s has the link address %s already", lc->node, lc->address);
    case -EADDRINUSE:
        return g_strdup_printf("another node has the link address %s", lc->address);
    case -ENOENT:
        return lc->add
                   ? g_strdup_printf("node %s does not exist", lc->node)
                   : g_strdup_printf("%s is not a link address of node %s", lc->address, lc->node);
    case -ENOSPC:
        return g_strdup_printf("node %s has %d link addresses, the most it can have", lc->node,
                               NDFS_NODE_ADDRESSES_MAX);
    case -EINVAL:
        return g_strdup_printf("%s is the last link address of node %s: add another first",
                               lc->address, lc->node);
    default:
        return g_strdup_printf("cannot change the links of node %s: %s", lc->node,
                               g_strerror(-status));
    }
}

static void lc_applied(struct ndfs_ccd *ccd, int status, void *data)
{
    (void)ccd;
    struct link_change *lc = data;
    ndfs_reconfig_apply_done done = lc->done;
    lc->done = NULL;
    if (status >= 0) {
        lc->index = status;
        done(0, NULL, lc->done_ctx);
    } else {
        g_autofree char *why = lc_refusal(lc, status);
        done(status, why, lc->done_ctx);
    }
    lc_unref(lc);
}

static void lc_apply(void *data, ndfs_reconfig_apply_done done, void *ctx)
{
    struct link_change *lc = data;
    lc->done = done;
    lc->done_ctx = ctx;
    lc->refs++;
    int rc = ndfs_ccd_node_link(lc->s->ccd, lc->node, lc->address, lc->add, lc_applied, lc);
    if (rc < 0) {
        lc->done = NULL;
        done(rc, ndfs_ccd_errmsg(lc->s->ccd), ctx);
        lc_unref(lc);
    }
}

static void lc_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct link_change *lc = data;
    if (status < 0) {
        ndfs_conn_reply_error(lc->c, lc->id, status, "%s", message ? message : g_strerror(-status));
    } else {
        g_message("link %d of node %s: %s %s (I/O paused %" PRIu64 " ms)", lc->index, lc->node,
                  lc->add ? "added" : "removed", lc->address, paused_ms);
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "node", "s", lc->node);
        g_variant_dict_insert(&d, "address", "s", lc->address);
        g_variant_dict_insert(&d, "index", "u", (guint32)lc->index);
        g_variant_dict_insert(&d, "paused-ms", "t", (guint64)paused_ms);
        ndfs_conn_reply(lc->c, lc->id, 0, NULL, g_variant_dict_end(&d));
    }
    lc_unref(lc);
}

struct mastered {
    const char *node;
    GArray *ids; /* uint64_t */
};

static int collect_mastered(const struct ndfs_vdisk *v, void *data)
{
    struct mastered *m = data;
    if (strcmp(ndfs_vdisk_master_node(v), m->node) == 0)
        g_array_append_val(m->ids, v->id);
    return 0;
}

static void lc_run(struct link_change *lc)
{
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    struct mastered m = {lc->node, ids};
    int rc = ndfs_ccd_vdisk_foreach(lc->s->ccd, collect_mastered, &m);
    if (rc < 0) {
        ndfs_conn_reply_error(lc->c, lc->id, rc, "cannot read the vdisks: %s",
                              ndfs_ccd_errmsg(lc->s->ccd));
        lc_unref(lc);
        return;
    }
    ndfs_reconfig_change(lc->s->reconfig, NDFS_CCD_LINKS, (const uint64_t *)(void *)ids->data,
                         ids->len, lc_apply, lc, lc_over, lc);
}

static void lc_checked(int status, const char *message, GVariant *result, void *data)
{
    (void)result;
    struct link_change *lc = data;
    if (status < 0) {
        if (status == -ETIMEDOUT || status == -ECONNRESET || status == -ENOTCONN)
            ndfs_conn_reply_error(lc->c, lc->id, -EAGAIN,
                                  "node %s did not answer whether it can listen on %s: %s",
                                  lc->node, lc->address, message ? message : g_strerror(-status));
        else
            ndfs_conn_reply_error(lc->c, lc->id, status, "%s",
                                  message ? message : g_strerror(-status));
        lc_unref(lc);
        return;
    }
    lc_run(lc);
}

struct address_owner {
    const char *address;
    char *node; /* g_malloc'd */
};

static int find_owner(const struct ndfs_node *n, void *data)
{
    struct address_owner *o = data;
    for (char **a = n->addresses; a && *a; a++)
        if (strcmp(*a, o->address) == 0) {
            o->node = g_strdup(n->name);
            return 1;
        }
    return 0;
}

static void link_change(struct cmd_request *r, bool add)
{
    struct ndfs_server *s = r->s;
    g_autofree char *node = NULL, *address = NULL;
    if (cmd_arg_string(r, "node", true, &node) < 0 ||
        cmd_arg_string(r, "address", true, &address) < 0)
        return;
    if (!ndfs_node_name_valid(node)) {
        cmd_reply_error(r, -EINVAL, "invalid node name \"%s\"", node);
        return;
    }
    if (!ndfs_config_address_valid(address)) {
        cmd_reply_error(r, -EINVAL, "\"%s\" is not an IPv4 address and port (A.B.C.D:PORT)",
                        address);
        return;
    }
    if (s->cluster == NULL) {
        cmd_reply_error(r, -EOPNOTSUPP,
                        "this node runs without network ([cluster] listen is empty): it has no "
                        "links to change");
        return;
    }
    if (cmd_check_node(r, node) < 0)
        return;
    struct address_owner o = {.address = address};
    int rc = ndfs_ccd_node_foreach(s->ccd, find_owner, &o);
    g_autofree char *owner = o.node;
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read the nodes: %s", ndfs_ccd_errmsg(s->ccd));
        return;
    }
    if (add && owner != NULL) {
        if (strcmp(owner, node) == 0)
            cmd_reply_error(r, -EEXIST, "node %s has the link address %s already", node, address);
        else
            cmd_reply_error(r, -EADDRINUSE, "%s is a link address of node %s", address, owner);
        return;
    }
    if (!add && (owner == NULL || strcmp(owner, node) != 0)) {
        cmd_reply_error(r, -ENOENT, "%s is not a link address of node %s", address, node);
        return;
    }
    if (add && !ndfs_vdisk_path_member(node, s->membership)) {
        cmd_reply_error(r, -EBUSY,
                        "node %s is not a member of the cluster (down or not reachable): it "
                        "cannot be asked whether it can listen on %s",
                        node, address);
        return;
    }

    struct link_change *lc = g_new0(struct link_change, 1);
    lc->refs = 1;
    lc->s = s;
    lc->c = r->c;
    ndfs_conn_ref(r->c);
    lc->id = r->id;
    lc->node = g_steal_pointer(&node);
    lc->address = g_steal_pointer(&address);
    lc->add = add;
    lc->index = -1;
    if (!add) {
        lc_run(lc);
        return;
    }
    if (strcmp(lc->node, s->node_name) == 0) {
        g_autofree char *why = NULL;
        rc = ndfs_transport_listen_check(lc->address, &why);
        g_autofree char *message = rc < 0 ? g_strdup_printf("node %s: %s", lc->node, why) : NULL;
        lc_checked(rc, message, NULL, lc);
        return;
    }
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "address", "s", lc->address);
    rc = ndfs_cluster_call_timeout(s->cluster, lc->node, NDFS_CLUSTER_LINK_CHECK,
                                   g_variant_dict_end(&d), LINK_CHECK_TIMEOUT_MS, lc_checked, lc);
    if (rc < 0) {
        ndfs_conn_reply_error(lc->c, lc->id, -EAGAIN, "cannot reach node %s: %s", lc->node,
                              g_strerror(-rc));
        lc_unref(lc);
    }
}

void cmd_link_add(struct cmd_request *r)
{
    link_change(r, true);
}

void cmd_link_remove(struct cmd_request *r)
{
    link_change(r, false);
}

/* ---- node.remove ---- */

struct node_remove {
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *name;
};

struct node_use {
    const char *node;
    char *vdisk;
};

static int node_use_cb(const struct ndfs_vdisk *v, void *data)
{
    struct node_use *u = data;
    if (strcmp(v->primary_node, u->node) == 0 ||
        (v->secondary_node != NULL && strcmp(v->secondary_node, u->node) == 0)) {
        u->vdisk = g_strdup(v->name);
        return 1;
    }
    return 0;
}

static void node_remove_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct node_remove *nr = data;
    (void)ccd;
    if (status == -ENOENT)
        ndfs_conn_reply_error(nr->c, nr->id, status, "node \"%s\" is not a member of the cluster",
                              nr->name);
    else if (status == -EINVAL)
        ndfs_conn_reply_error(nr->c, nr->id, status,
                              "cannot remove node \"%s\": it is the last voter", nr->name);
    else if (status < 0)
        ndfs_conn_reply_error(nr->c, nr->id, status, "cannot remove node \"%s\": %s", nr->name,
                              ndfs_ccd_errmsg(nr->s->ccd));
    if (status < 0)
        goto out;
    g_message("node %s removed from the cluster by uid %u", nr->name, (unsigned)nr->c->peer.uid);
    ndfs_conn_reply(nr->c, nr->id, 0, NULL, NULL);
out:
    ndfs_conn_unref(nr->c);
    g_free(nr->name);
    g_free(nr);
}

void cmd_node_remove(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    if (cmd_arg_string(r, "name", true, &name) < 0)
        return;
    if (!ndfs_node_name_valid(name)) {
        cmd_reply_error(r, -EINVAL, "invalid node name \"%s\"", name);
        return;
    }
    /* the answer could not reach a node that is no longer a peer */
    const char *asker = r->c->remote_peer ? r->c->remote_peer : r->s->node_name;
    if (strcmp(name, asker) == 0 && r->s->cluster != NULL) {
        cmd_reply_error(r, -EINVAL,
                        "node \"%s\" cannot remove itself: ask another node (ndfsadm -s ... "
                        "node remove %s)",
                        name, name);
        return;
    }
    struct ndfs_node n = {0};
    int rc = ndfs_ccd_node_get(r->s->ccd, name, &n);
    ndfs_node_clear(&n);
    if (rc == -ENOENT) {
        cmd_reply_error(r, rc, "node \"%s\" is not a member of the cluster", name);
        return;
    }
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read node \"%s\": %s", name, ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    struct node_use u = {.node = name};
    rc = ndfs_ccd_vdisk_foreach(r->s->ccd, node_use_cb, &u);
    if (rc == 1) {
        cmd_reply_error(r, -EBUSY, "node \"%s\" masters vdisk \"%s\"", name, u.vdisk);
        g_free(u.vdisk);
        return;
    }
    struct node_remove *nr = g_new0(struct node_remove, 1);
    nr->s = r->s;
    nr->c = r->c;
    ndfs_conn_ref(r->c);
    nr->id = r->id;
    nr->name = g_steal_pointer(&name);
    rc = ndfs_ccd_node_remove(r->s->ccd, nr->name, node_remove_done, nr);
    if (rc < 0)
        node_remove_done(r->s->ccd, rc, nr);
}
