/* The join of a new node: the leader's side (the join request, relayed to
 * the leader by any member) and the joining node's (probe, ask, learn the
 * members). */
#define G_LOG_DOMAIN "ndfs-cluster"

#include "cluster.h"

#include <errno.h>
#include <string.h>

#include "parse.h"

static int add_member(const struct ndfs_node *n, void *data)
{
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "name", "s", n->name);
    g_variant_dict_insert(&d, "id", "t", (guint64)n->id);
    const char *const none[] = {NULL};
    g_variant_dict_insert_value(
        &d, "addresses",
        g_variant_new_strv(n->addresses ? (const char *const *)n->addresses : none, -1));
    g_variant_builder_add_value(data, g_variant_dict_end(&d));
    return 0;
}

static void reply_joined(struct ndfs_cluster *c, const char *peer, uint64_t id, const char *name)
{
    struct ndfs_node n = {0};
    int rc = ndfs_ccd_node_get(c->ccd, name, &n);
    if (rc < 0) {
        ndfs__cluster_reply_error(c, peer, id, rc, "cannot read node \"%s\": %s", name,
                                  ndfs_ccd_errmsg(c->ccd));
        return;
    }
    GVariantBuilder members;
    g_variant_builder_init(&members, G_VARIANT_TYPE("aa{sv}"));
    ndfs_ccd_node_foreach(c->ccd, add_member, &members);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "id", "t", (guint64)n.id);
    g_variant_dict_insert_value(&d, "members", g_variant_builder_end(&members));
    ndfs_node_clear(&n);
    ndfs__cluster_reply(c, peer, id, 0, NULL, g_variant_dict_end(&d));
}

struct join_req {
    struct ndfs_cluster *c;
    char *peer;
    uint64_t id;
    char *name;
};

static void join_added(struct ndfs_ccd *ccd, int status, uint64_t node_id, void *data)
{
    struct join_req *j = data;
    (void)ccd;
    if (status == 0)
        g_message("added node %s (id %" G_GUINT64_FORMAT ") at the request of %s", j->name, node_id,
                  j->peer);
    if (status == 0)
        reply_joined(j->c, j->peer, j->id, j->name);
    else if (status != -ECANCELED)
        ndfs__cluster_reply_error(j->c, j->peer, j->id, status, "cannot add node \"%s\": %s",
                                  j->name, ndfs_ccd_errmsg(j->c->ccd));
    g_free(j->peer);
    g_free(j->name);
    g_free(j);
}

void ndfs__cluster_handle_join(struct ndfs_cluster *c, const char *peer, uint64_t id,
                               GVariant *args)
{
    const char *name = NULL;
    g_autofree const char **addrs = NULL;
    if (!g_variant_lookup(args, "name", "&s", &name) || !ndfs_node_name_valid(name) ||
        !g_variant_lookup(args, "addresses", "^a&s", &addrs) || addrs[0] == NULL ||
        g_strv_length((char **)addrs) > NDFS_TRANSPORT_MAX_LINKS) {
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed join request");
        return;
    }
    for (const char **a = addrs; *a; a++) {
        if (!ndfs_config_address_valid(*a)) {
            ndfs__cluster_reply_error(c, peer, id, -EINVAL,
                                      "node \"%s\": \"%s\" is not an IPv4 address and port", name,
                                      *a);
            return;
        }
    }
    g_autofree char *errmsg = NULL;
    int rc = ndfs_cluster_quorum(c, &errmsg);
    if (rc < 0) {
        ndfs__cluster_reply(c, peer, id, rc, errmsg, NULL);
        return;
    }
    if (!ndfs_cluster_is_leader(c)) {
        char leader[NDFS_NODE_NAME_MAX + 1];
        ndfs_ccd_leader(c->ccd, leader);
        rc = ndfs__cluster_relay_to(c, leader, peer, id, "join", args);
        if (rc < 0)
            ndfs__cluster_reply_error(c, peer, id, -EAGAIN, "cannot reach the leader %s: %s",
                                      leader, g_strerror(-rc));
        return;
    }
    g_autofree char *joined = ndfs_cluster_addresses_join(addrs);
    struct ndfs_node n = {0};
    rc = ndfs_ccd_node_get(c->ccd, name, &n);
    if (rc == 0) {
        g_autofree char *had = ndfs_cluster_addresses_join((const char *const *)n.addresses);
        bool same = strcmp(had, joined) == 0;
        ndfs_node_clear(&n);
        if (same) {
            /* it joined before and lost the answer, or lost its data-dir */
            reply_joined(c, peer, id, name);
            return;
        }
        ndfs__cluster_reply_error(
            c, peer, id, -EEXIST,
            "node \"%s\" is already in the cluster with addresses %s (asked: %s); "
            "remove it first (ndfsadm node remove %s)",
            name, had[0] ? had : "(none)", joined, name);
        return;
    }
    if (rc != -ENOENT) {
        ndfs__cluster_reply_error(c, peer, id, rc, "cannot read node \"%s\": %s", name,
                                  ndfs_ccd_errmsg(c->ccd));
        return;
    }
    struct join_req *j = g_new0(struct join_req, 1);
    j->c = c;
    j->peer = g_strdup(peer);
    j->id = id;
    j->name = g_strdup(name);
    /* VOTER: the CCD makes it a standby once there are five voters */
    struct ndfs_node row = {
        .name = (char *)name, .role = NDFS_NODE_VOTER, .address = "", .addresses = (char **)addrs};
    rc = ndfs_ccd_node_add(c->ccd, &row, join_added, j);
    if (rc < 0) {
        ndfs__cluster_reply_error(c, peer, id, rc, "cannot add node \"%s\": %s", name,
                                  ndfs_ccd_errmsg(c->ccd));
        g_free(j->peer);
        g_free(j->name);
        g_free(j);
    }
}

static void join_answered(int status, const char *message, GVariant *result, void *data)
{
    struct ndfs_cluster *c = data;
    ndfs_cluster_join_cb cb = c->join_cb;
    c->join_cb = NULL;
    if (status < 0) {
        g_autofree char *why =
            g_strdup_printf("cannot join the cluster through %s: %s", c->join_address,
                            message ? message : g_strerror(-status));
        cb(c, status, 0, why, c->join_data);
        return;
    }
    guint64 id = 0;
    g_autoptr(GVariant) members = NULL;
    if (!g_variant_lookup(result, "id", "t", &id) ||
        !g_variant_lookup(result, "members", "@aa{sv}", &members)) {
        g_autofree char *why = g_strdup_printf(
            "cannot join the cluster through %s: malformed answer", c->join_address);
        cb(c, -EPROTO, 0, why, c->join_data);
        return;
    }
    GVariantIter it;
    GVariant *m;
    g_variant_iter_init(&it, members);
    while ((m = g_variant_iter_next_value(&it)) != NULL) {
        const char *name = NULL;
        g_autofree const char **addrs = NULL;
        if (g_variant_lookup(m, "name", "&s", &name) &&
            g_variant_lookup(m, "addresses", "^a&s", &addrs) && ndfs_node_name_valid(name))
            ndfs__cluster_peer_set(c, name, addrs);
        g_variant_unref(m);
    }
    g_message("joined the cluster through %s as node id %" G_GUINT64_FORMAT, c->join_address, id);
    cb(c, 0, id, NULL, c->join_data);
}

static void join_probed(struct ndfs_transport *t, int status, const char *peer, void *data)
{
    struct ndfs_cluster *c = data;
    (void)t;
    if (c->closing || c->join_cb == NULL)
        return;
    if (status < 0) {
        ndfs_cluster_join_cb cb = c->join_cb;
        c->join_cb = NULL;
        g_autofree char *why =
            g_strdup_printf("cannot join the cluster through %s: %s", c->join_address,
                            status == -EACCES ? "authentication failed (not the same cluster key?)"
                                              : g_strerror(-status));
        cb(c, status, 0, why, c->join_data);
        return;
    }
    g_message("asking %s (%s) to join the cluster", peer, c->join_address);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "name", "s", c->node_name);
    g_variant_dict_insert_value(&d, "addresses",
                                g_variant_new_strv((const char *const *)c->listen, -1));
    int rc = ndfs_cluster_call(c, peer, "join", g_variant_dict_end(&d), join_answered, c);
    if (rc < 0)
        join_answered(rc, NULL, NULL, c);
}

int ndfs_cluster_join(struct ndfs_cluster *c, ndfs_cluster_join_cb cb, void *data)
{
    c->join_cb = cb;
    c->join_data = data;
    int rc = ndfs_transport_probe(c->t, c->join_address, join_probed, c);
    if (rc < 0)
        c->join_cb = NULL;
    return rc;
}
