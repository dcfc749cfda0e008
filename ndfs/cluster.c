/* Node-to-node control of ndfsd: transport endpoint, join, calls to other
 * nodes, quorum, node join/leave and leader/epoch log lines. */
#define G_LOG_DOMAIN "ndfs-cluster"

#include "cluster.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "control.h"
#include "parse.h"
#include "server.h"

/* A call to another node gives up after this; ndfsadm waits 30 s. */
#define CALL_TIMEOUT_MS 20000
#define TICK_MS         250

struct call {
    uint64_t id;
    char *peer;
    ndfs_cluster_reply_cb cb;
    void *data;
    uint64_t deadline_ms;
};

struct ndfs_cluster {
    uv_loop_t *loop;
    char *node_name;
    char *data_dir;
    char **listen;
    char *join_address;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct ndfs_server *server;
    struct ndfs_membership *membership;
    GHashTable *calls; /* id -> struct call * */
    uint64_t next_id;
    GHashTable *known; /* node names seen in the nodes table, to log joins */
    uv_timer_t *tick;  /* call deadlines, leader changes */
    char *last_leader;
    void (*removed_cb)(struct ndfs_cluster *c, void *data);
    void *removed_data;
    ndfs_cluster_join_cb join_cb;
    void *join_data;
    bool closing;
    void (*closed_cb)(void *data);
    void *closed_data;
};

char *ndfs_cluster_addresses_join(const char *const *addresses)
{
    return g_strjoinv(";", (char **)addresses);
}

static void call_free(gpointer p)
{
    struct call *call = p;
    g_free(call->peer);
    g_free(call);
}

/* Removes the call and runs its callback once. */
static void call_finish(struct ndfs_cluster *c, uint64_t id, int status, const char *message,
                        GVariant *result)
{
    struct call *call = g_hash_table_lookup(c->calls, &id);
    if (call == NULL)
        return;
    g_hash_table_steal(c->calls, &id);
    call->cb(status, message, result, call->data);
    call_free(call);
}

/* Fails every call to peer (NULL: every call). */
static void calls_fail(struct ndfs_cluster *c, const char *peer, int status, const char *message)
{
    GList *ids = NULL;
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, c->calls);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        struct call *call = value;
        if (peer == NULL || strcmp(call->peer, peer) == 0)
            ids = g_list_prepend(ids, g_memdup2(&call->id, sizeof(call->id)));
    }
    for (GList *l = ids; l != NULL; l = l->next)
        call_finish(c, *(uint64_t *)l->data, status, message, NULL);
    g_list_free_full(ids, g_free);
}

static int send_frame(struct ndfs_cluster *c, const char *peer, uint64_t id,
                      enum ndfs_control_kind kind, GVariant *body)
{
    g_autoptr(GBytes) frame = ndfs_control_frame(kind, body);
    if (frame == NULL)
        return -EMSGSIZE;
    gsize len;
    const void *data = g_bytes_get_data(frame, &len);
    return ndfs_transport_send(c->t, peer, NDFS_CHANNEL_CONTROL, id, 0, data, len, NULL, 0);
}

int ndfs_cluster_call(struct ndfs_cluster *c, const char *peer, const char *command, GVariant *args,
                      ndfs_cluster_reply_cb cb, void *data)
{
    return ndfs_cluster_call_timeout(c, peer, command, args, CALL_TIMEOUT_MS, cb, data);
}

int ndfs_cluster_call_timeout(struct ndfs_cluster *c, const char *peer, const char *command,
                              GVariant *args, unsigned timeout_ms, ndfs_cluster_reply_cb cb,
                              void *data)
{
    if (c->closing) {
        if (args != NULL)
            g_variant_unref(g_variant_ref_sink(args));
        return -ECANCELED;
    }
    if (args == NULL)
        args = g_variant_new("a{sv}", NULL);
    uint64_t id = ++c->next_id;
    int rc = send_frame(c, peer, id, NDFS_CONTROL_REQUEST,
                        g_variant_new("(ts@a{sv})", (guint64)id, command, args));
    if (rc < 0)
        return rc;
    struct call *call = g_new0(struct call, 1);
    call->id = id;
    call->peer = g_strdup(peer);
    call->cb = cb;
    call->data = data;
    call->deadline_ms = uv_now(c->loop) + timeout_ms;
    g_hash_table_insert(c->calls, &call->id, call);
    return 0;
}

static void reply(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                  const char *message, GVariant *result)
{
    if (result == NULL)
        result = g_variant_new("a{sv}", NULL);
    int rc = send_frame(
        c, peer, id, NDFS_CONTROL_RESPONSE,
        g_variant_new("(tis@a{sv})", (guint64)id, (gint32)status, message ? message : "", result));
    if (rc < 0)
        g_warning("cannot answer node %s: %s", peer, g_strerror(-rc));
}

G_GNUC_PRINTF(5, 6)
static void reply_error(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply(c, peer, id, status, message, NULL);
}

/* Answers a request of peer with whatever another node answered. */
struct relay {
    struct ndfs_cluster *c;
    char *peer;
    uint64_t id;
};

static void relay_reply(int status, const char *message, GVariant *result, void *data)
{
    struct relay *r = data;
    if (status != -ECANCELED)
        reply(r->c, r->peer, r->id, status, message, result);
    g_free(r->peer);
    g_free(r);
}

static int relay_to(struct ndfs_cluster *c, const char *to, const char *peer, uint64_t id,
                    const char *command, GVariant *args)
{
    struct relay *r = g_new0(struct relay, 1);
    r->c = c;
    r->peer = g_strdup(peer);
    r->id = id;
    int rc = ndfs_cluster_call(c, to, command, g_variant_ref(args), relay_reply, r);
    if (rc < 0) {
        g_free(r->peer);
        g_free(r);
    }
    return rc;
}

bool ndfs_cluster_is_leader(struct ndfs_cluster *c)
{
    return c->ccd != NULL && ndfs_ccd_is_leader(c->ccd);
}

static bool voter_reachable(const char *name, void *data)
{
    struct ndfs_cluster *c = data;
    return strcmp(name, c->node_name) == 0 || ndfs_transport_peer_up(c->t, name);
}

int ndfs_cluster_quorum(struct ndfs_cluster *c, char **errmsg)
{
    *errmsg = NULL;
    if (c->ccd == NULL) {
        *errmsg = g_strdup("no quorum: this node is starting");
        return -EAGAIN;
    }
    unsigned up = 0, total = 0;
    bool majority = ndfs_ccd_quorum(c->ccd, voter_reachable, c, &up, &total);
    char leader[NDFS_NODE_NAME_MAX + 1];
    ndfs_ccd_leader(c->ccd, leader);
    if (!majority) {
        *errmsg = g_strdup_printf("no quorum: %u of %u voters reachable", up, total);
        return -EAGAIN;
    }
    if (leader[0] == '\0') {
        *errmsg = g_strdup_printf("no quorum: no leader elected yet (%u of %u voters reachable)",
                                  up, total);
        return -EAGAIN;
    }
    /* the CCD still names a leader that just failed until the election */
    if (strcmp(leader, c->node_name) != 0 && !ndfs_transport_peer_up(c->t, leader)) {
        *errmsg = g_strdup_printf("no quorum: the leader %s is not reachable (%u of %u voters "
                                  "reachable)",
                                  leader, up, total);
        return -EAGAIN;
    }
    return 0;
}

bool ndfs_cluster_has_quorum(struct ndfs_cluster *c)
{
    g_autofree char *errmsg = NULL;
    return ndfs_cluster_quorum(c, &errmsg) == 0;
}

struct link_count {
    const char *peer;
    unsigned up, total;
};

static int count_link(const struct ndfs_link_info *li, void *data)
{
    struct link_count *lc = data;
    if (strcmp(li->peer, lc->peer) == 0) {
        lc->total++;
        lc->up += li->up;
    }
    return 0;
}

void ndfs_cluster_links(struct ndfs_cluster *c, const char *peer, unsigned *up, unsigned *total)
{
    struct link_count lc = {.peer = peer};
    ndfs_transport_foreach_link(c->t, count_link, &lc);
    *up = lc.up;
    *total = lc.total;
}

/* ---- the open counts of a vdisk on every other node ---- */

struct open_counts {
    struct ndfs_cluster *c;
    unsigned pending;
    bool asking; /* still sending: answers must not finish it yet */
    bool cancelled;
    GHashTable *mounts; /* node name -> GUINT_TO_POINTER(mounts) */
    char *failed_node;  /* the first by name that did not answer */
    char *why;
    ndfs_cluster_open_counts_cb cb;
    void *data;
};

struct open_count_call {
    struct open_counts *oc;
    char *node;
};

static void open_counts_failed(struct open_counts *oc, const char *node, const char *why)
{
    if (oc->failed_node != NULL && strcmp(node, oc->failed_node) >= 0)
        return;
    g_free(oc->failed_node);
    g_free(oc->why);
    oc->failed_node = g_strdup(node);
    oc->why = g_strdup(why);
}

static void open_counts_maybe_done(struct open_counts *oc)
{
    if (oc->asking || oc->pending > 0)
        return;
    oc->cb(oc->cancelled ? -ECANCELED : 0, oc->mounts, oc->failed_node, oc->why, oc->data);
    g_hash_table_unref(oc->mounts);
    g_free(oc->failed_node);
    g_free(oc->why);
    g_free(oc);
}

static void open_count_answered(int status, const char *message, GVariant *result, void *data)
{
    struct open_count_call *q = data;
    struct open_counts *oc = q->oc;
    guint32 mounts = 0;
    if (status == -ECANCELED)
        oc->cancelled = true;
    else if (status == -ETIMEDOUT || status == -ECONNRESET)
        open_counts_failed(oc, q->node, "not reachable");
    else if (status < 0)
        open_counts_failed(oc, q->node, message ? message : g_strerror(-status));
    else if (!g_variant_lookup(result, "mounts", "u", &mounts))
        open_counts_failed(oc, q->node, "malformed answer");
    else if (mounts > 0)
        g_hash_table_replace(oc->mounts, g_strdup(q->node), GUINT_TO_POINTER(mounts));
    g_free(q->node);
    g_free(q);
    oc->pending--;
    open_counts_maybe_done(oc);
}

static int note_node_name(const struct ndfs_node *n, void *data)
{
    g_ptr_array_add(data, g_strdup(n->name));
    return 0;
}

void ndfs_cluster_open_counts(struct ndfs_cluster *c, const char *vdisk, unsigned timeout_ms,
                              ndfs_cluster_open_counts_cb cb, void *data)
{
    struct open_counts *oc = g_new0(struct open_counts, 1);
    oc->c = c;
    oc->asking = true;
    oc->mounts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    oc->cb = cb;
    oc->data = data;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    int rc = c->ccd != NULL && !c->closing ? ndfs_ccd_node_foreach(c->ccd, note_node_name, names)
                                           : -ECANCELED;
    if (rc == -ECANCELED)
        oc->cancelled = true;
    else if (rc < 0)
        open_counts_failed(oc, c->node_name, "cannot read the nodes");
    for (guint i = 0; rc == 0 && i < names->len; i++) {
        const char *node = names->pdata[i];
        if (strcmp(node, c->node_name) == 0)
            continue;
        /* a node that is down may still have mounts: it cannot say */
        if (!ndfs_transport_peer_up(c->t, node)) {
            open_counts_failed(oc, node, "not reachable");
            continue;
        }
        struct open_count_call *q = g_new0(struct open_count_call, 1);
        q->oc = oc;
        q->node = g_strdup(node);
        int crc = ndfs_cluster_call_timeout(c, node, NDFS_CLUSTER_OPEN_COUNT,
                                            g_variant_new_parsed("{'name': <%s>}", vdisk),
                                            timeout_ms, open_count_answered, q);
        if (crc < 0) {
            open_counts_failed(oc, node, "not reachable");
            g_free(q->node);
            g_free(q);
            continue;
        }
        oc->pending++;
    }
    oc->asking = false;
    open_counts_maybe_done(oc);
}

/* ---- the peers: the CCD keeps the transport's peers in step with the nodes
 * table; we set them from a join answer (before the CCD runs) and log who
 * joins and leaves ---- */

/* Tells the transport about a node before the CCD runs (from a join answer). */
static void peer_set(struct ndfs_cluster *c, const char *name, const char *const *addresses)
{
    if (strcmp(name, c->node_name) == 0 || addresses == NULL || addresses[0] == NULL)
        return;
    int rc = ndfs_transport_peer_set(c->t, name, addresses);
    if (rc < 0) {
        g_autofree char *joined = ndfs_cluster_addresses_join(addresses);
        g_warning("node %s: cannot use addresses %s: %s", name, joined, g_strerror(-rc));
    }
}

static int note_node(const struct ndfs_node *n, void *data)
{
    struct ndfs_cluster *c = data;
    g_hash_table_add(c->known, g_strdup(n->name));
    return 0;
}

static void known_reread(struct ndfs_cluster *c)
{
    g_hash_table_remove_all(c->known);
    ndfs_ccd_node_foreach(c->ccd, note_node, c);
}

void ndfs_cluster_ccd_changed(struct ndfs_cluster *c, enum ndfs_ccd_table table, const char *key,
                              bool removed)
{
    if (c->closing || c->ccd == NULL || table != NDFS_CCD_NODES)
        return;
    if (key == NULL) {
        known_reread(c);
        return;
    }
    if (removed) {
        g_hash_table_remove(c->known, key);
        if (strcmp(key, c->node_name) != 0) {
            g_message("node %s removed", key);
            return;
        }
        g_warning("this node (%s) was removed from the cluster: stopping", key);
        if (c->removed_cb != NULL)
            c->removed_cb(c, c->removed_data);
        return;
    }
    struct ndfs_node n = {0};
    if (ndfs_ccd_node_get(c->ccd, key, &n) < 0)
        return;
    if (!g_hash_table_contains(c->known, key)) {
        g_autofree char *joined = ndfs_cluster_addresses_join((const char *const *)n.addresses);
        g_message("node %s joined (id %" G_GUINT64_FORMAT ", %s, addresses %s)", n.name, n.id,
                  n.role == NDFS_NODE_VOTER ? "voter" : "standby", joined);
        g_hash_table_add(c->known, g_strdup(key));
    }
    ndfs_node_clear(&n);
}

/* The CCD is ready: the nodes it holds are not news. */
void ndfs_cluster_ccd_ready(struct ndfs_cluster *c)
{
    known_reread(c);
}

/* ---- requests from other nodes ---- */

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
        reply_error(c, peer, id, rc, "cannot read node \"%s\": %s", name, ndfs_ccd_errmsg(c->ccd));
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
    reply(c, peer, id, 0, NULL, g_variant_dict_end(&d));
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
        reply_error(j->c, j->peer, j->id, status, "cannot add node \"%s\": %s", j->name,
                    ndfs_ccd_errmsg(j->c->ccd));
    g_free(j->peer);
    g_free(j->name);
    g_free(j);
}

static void handle_join(struct ndfs_cluster *c, const char *peer, uint64_t id, GVariant *args)
{
    const char *name = NULL;
    g_autofree const char **addrs = NULL;
    if (!g_variant_lookup(args, "name", "&s", &name) || !ndfs_node_name_valid(name) ||
        !g_variant_lookup(args, "addresses", "^a&s", &addrs) || addrs[0] == NULL ||
        g_strv_length((char **)addrs) > NDFS_TRANSPORT_MAX_LINKS) {
        reply_error(c, peer, id, -EINVAL, "malformed join request");
        return;
    }
    for (const char **a = addrs; *a; a++) {
        if (!ndfs_config_address_valid(*a)) {
            reply_error(c, peer, id, -EINVAL, "node \"%s\": \"%s\" is not an IPv4 address and port",
                        name, *a);
            return;
        }
    }
    g_autofree char *errmsg = NULL;
    int rc = ndfs_cluster_quorum(c, &errmsg);
    if (rc < 0) {
        reply(c, peer, id, rc, errmsg, NULL);
        return;
    }
    if (!ndfs_cluster_is_leader(c)) {
        char leader[NDFS_NODE_NAME_MAX + 1];
        ndfs_ccd_leader(c->ccd, leader);
        rc = relay_to(c, leader, peer, id, "join", args);
        if (rc < 0)
            reply_error(c, peer, id, -EAGAIN, "cannot reach the leader %s: %s", leader,
                        g_strerror(-rc));
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
        reply_error(c, peer, id, -EEXIST,
                    "node \"%s\" is already in the cluster with addresses %s (asked: %s); "
                    "remove it first (ndfsadm node remove %s)",
                    name, had[0] ? had : "(none)", joined, name);
        return;
    }
    if (rc != -ENOENT) {
        reply_error(c, peer, id, rc, "cannot read node \"%s\": %s", name, ndfs_ccd_errmsg(c->ccd));
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
        reply_error(c, peer, id, rc, "cannot add node \"%s\": %s", name, ndfs_ccd_errmsg(c->ccd));
        g_free(j->peer);
        g_free(j->name);
        g_free(j);
    }
}

static void handle_disk_prepare(struct ndfs_cluster *c, const char *peer, uint64_t id,
                                GVariant *args)
{
    const char *vdisk = NULL, *path = NULL;
    guint64 size = 0;
    gboolean create = FALSE, grow = FALSE;
    if (!g_variant_lookup(args, "vdisk", "&s", &vdisk) ||
        !g_variant_lookup(args, "path", "&s", &path) || !g_path_is_absolute(path) ||
        !g_variant_lookup(args, "size", "t", &size)) {
        reply_error(c, peer, id, -EINVAL, "malformed disk.prepare request");
        return;
    }
    g_variant_lookup(args, "create", "b", &create);
    g_variant_lookup(args, "grow", "b", &grow);
    bool created = false;
    g_autofree char *errmsg = NULL;
    int rc = ndfs_disk_prepare(vdisk, path, size, create, grow, &created, &errmsg);
    if (rc < 0) {
        reply_error(c, peer, id, rc, "node %s: %s", c->node_name, errmsg);
        return;
    }
    reply(c, peer, id, 0, NULL, g_variant_new_parsed("{'created': <%b>}", (gboolean)created));
}

static void handle_disk_discard(struct ndfs_cluster *c, const char *peer, uint64_t id,
                                GVariant *args)
{
    const char *path = NULL;
    if (!g_variant_lookup(args, "path", "&s", &path) || !g_path_is_absolute(path)) {
        reply_error(c, peer, id, -EINVAL, "malformed disk.discard request");
        return;
    }
    if (unlink(path) < 0) {
        int err = errno;
        reply_error(c, peer, id, -err, "node %s: cannot remove %s: %s", c->node_name, path,
                    g_strerror(err));
        return;
    }
    g_message("removed %s, made for a vdisk that was not created", path);
    reply(c, peer, id, 0, NULL, NULL);
}

static void handle_change(struct ndfs_cluster *c, const char *peer, uint64_t id, GVariant *args)
{
    const char *command = NULL;
    g_autoptr(GVariant) cargs = NULL;
    guint32 uid = 0, gid = 0;
    gint32 pid = -1;
    if (!g_variant_lookup(args, "command", "&s", &command) ||
        !g_variant_lookup(args, "args", "@a{sv}", &cargs) ||
        !g_variant_lookup(args, "uid", "u", &uid) || !g_variant_lookup(args, "gid", "u", &gid)) {
        reply_error(c, peer, id, -EINVAL, "malformed change request");
        return;
    }
    g_variant_lookup(args, "pid", "i", &pid);
    if (c->server == NULL || c->ccd == NULL) {
        reply_error(c, peer, id, -EAGAIN, "node %s is starting or stopping", c->node_name);
        return;
    }
    ndfs_server_remote_request(c->server, peer, id, command, cargs, (uid_t)uid, (gid_t)gid,
                               (pid_t)pid);
}

/* Sends a response to a forwarded change (server.c's remote connections). */
void ndfs_cluster_reply(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                        const char *message, GVariant *result)
{
    if (c->closing || c->ccd == NULL) {
        if (result != NULL)
            g_variant_unref(g_variant_ref_sink(result));
        return;
    }
    /* the asking node waits until its replica applied this much (read your
     * writes): here it covers the change, which was applied before its answer */
    g_autoptr(GVariant) held = result ? g_variant_ref_sink(result) : NULL;
    GVariantDict d;
    g_variant_dict_init(&d, held);
    g_variant_dict_insert(&d, NDFS_CLUSTER_APPLIED_INDEX, "t",
                          (guint64)ndfs_ccd_applied_index(c->ccd));
    reply(c, peer, id, status, message, g_variant_dict_end(&d));
}

/* The mounts of this node that hold a vdisk open; none while the control
 * socket is not serving (starting, stopping). */
static void handle_open_count(struct ndfs_cluster *c, const char *peer, uint64_t id, GVariant *args)
{
    const char *name = NULL;
    if (!g_variant_lookup(args, "name", "&s", &name) || !ndfs_vdisk_name_valid(name)) {
        reply_error(c, peer, id, -EINVAL, "malformed vdisk.open-count request");
        return;
    }
    unsigned mounts = 0, count = 0;
    if (c->server != NULL)
        count = ndfs_server_open_count(c->server, name, &mounts);
    reply(c, peer, id, 0, NULL,
          g_variant_new_parsed("{'count': <%u>, 'mounts': <%u>}", (guint32)count, (guint32)mounts));
}

static void handle_request(struct ndfs_cluster *c, const char *peer, GVariant *body)
{
    guint64 id;
    const char *command;
    g_autoptr(GVariant) args = NULL;
    g_variant_get(body, "(t&s@a{sv})", &id, &command, &args);
    if (strcmp(command, "join") == 0)
        handle_join(c, peer, id, args);
    else if (strcmp(command, NDFS_CLUSTER_OPEN_COUNT) == 0)
        handle_open_count(c, peer, id, args);
    else if (c->ccd == NULL)
        reply_error(c, peer, id, -EAGAIN, "node %s is starting or stopping", c->node_name);
    else if (strcmp(command, "disk.prepare") == 0)
        handle_disk_prepare(c, peer, id, args);
    else if (strcmp(command, "disk.discard") == 0)
        handle_disk_discard(c, peer, id, args);
    else if (strcmp(command, "change") == 0)
        handle_change(c, peer, id, args);
    else
        reply_error(c, peer, id, -EOPNOTSUPP, "unknown node command \"%s\"", command);
}

static void handle_response(struct ndfs_cluster *c, const char *peer, GVariant *body)
{
    guint64 id;
    gint32 status;
    const char *message;
    g_autoptr(GVariant) result = NULL;
    g_variant_get(body, "(ti&s@a{sv})", &id, &status, &message, &result);
    struct call *call = g_hash_table_lookup(c->calls, &id);
    if (call == NULL || strcmp(call->peer, peer) != 0)
        return; /* timed out meanwhile, or not ours */
    call_finish(c, id, status, message[0] ? message : NULL, result);
}

static void on_control(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    struct ndfs_cluster *c = data;
    struct ndfs_control_header h;

    if (c->closing || msg->control_len < NDFS_CONTROL_HEADER_SIZE ||
        ndfs_control_header_decode(msg->control, &h) < 0 ||
        (size_t)h.length != msg->control_len - NDFS_CONTROL_HEADER_SIZE) {
        if (!c->closing)
            g_warning("node %s sent a malformed control message: dropped", msg->peer);
        ndfs_transport_release(t, msg);
        return;
    }
    g_autoptr(GVariant) body =
        ndfs_control_body_decode(h.kind, msg->control + NDFS_CONTROL_HEADER_SIZE,
                                 msg->control_len - NDFS_CONTROL_HEADER_SIZE);
    char peer[sizeof(msg->peer)];
    memcpy(peer, msg->peer, sizeof(peer));
    ndfs_transport_release(t, msg);
    if (body == NULL) {
        g_warning("node %s sent a malformed control body: dropped", peer);
        return;
    }
    if (h.kind == NDFS_CONTROL_REQUEST)
        handle_request(c, peer, body);
    else if (h.kind == NDFS_CONTROL_RESPONSE)
        handle_response(c, peer, body);
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    struct ndfs_cluster *c = data;
    (void)t;
    switch (ev) {
    case NDFS_PEER_UP:
        g_message("peer %s up", peer);
        break;
    case NDFS_PEER_DOWN:
        g_message("peer %s down", peer);
        /* a change waiting on a lost leader is better retried elsewhere now */
        calls_fail(c, peer, -ECONNRESET, "the node went down before it answered");
        break;
    case NDFS_PEER_RESET:
        g_message("peer %s restarted", peer);
        calls_fail(c, peer, -ECONNRESET, "the node restarted before it answered");
        break;
    /* the transport logs links with their addresses */
    case NDFS_LINK_UP:
        g_debug("link %d to %s up", link, peer);
        break;
    case NDFS_LINK_DOWN:
        g_debug("link %d to %s down", link, peer);
        break;
    case NDFS_AUTH_FAILED:
        /* the transport logged it with the reason, once per address */
        g_debug("a connection from %s failed authentication", peer);
        break;
    }
}

static void on_tick(uv_timer_t *timer)
{
    struct ndfs_cluster *c = timer->data;
    uint64_t now = uv_now(c->loop);

    GList *late = NULL;
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, c->calls);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        struct call *call = value;
        if (call->deadline_ms <= now)
            late = g_list_prepend(late, g_memdup2(&call->id, sizeof(call->id)));
    }
    for (GList *l = late; l != NULL; l = l->next)
        call_finish(c, *(uint64_t *)l->data, -ETIMEDOUT, "the node did not answer in time", NULL);
    g_list_free_full(late, g_free);

    if (c->ccd == NULL)
        return;
    struct ndfs_ccd_status st = {0};
    if (ndfs_ccd_status(c->ccd, &st) < 0)
        return;
    if (g_strcmp0(c->last_leader, st.leader) != 0) {
        if (st.leader[0] != '\0')
            g_message("leader is now %s%s", st.leader,
                      strcmp(st.leader, c->node_name) == 0 ? " (this node)" : "");
        else if (c->last_leader != NULL)
            g_message("no leader");
        g_free(c->last_leader);
        c->last_leader = g_strdup(st.leader);
    }
    ndfs_ccd_status_clear(&st);
}

int ndfs_cluster_new(uv_loop_t *loop, const struct ndfs_config *cfg, struct ndfs_cluster **out,
                     char **errmsg)
{
    *out = NULL;
    *errmsg = NULL;
    uint8_t *key = NULL;
    size_t key_len = 0;
    g_autofree char *keymsg = NULL;
    int rc = ndfs_transport_key_load(cfg->key_file, &key, &key_len, &keymsg);
    if (rc < 0) {
        *errmsg = keymsg && strstr(keymsg, cfg->key_file)
                      ? g_strdup_printf("[cluster] key-file: %s", keymsg)
                      : g_strdup_printf("[cluster] key-file %s: %s", cfg->key_file,
                                        keymsg ? keymsg : g_strerror(-rc));
        return rc;
    }
    struct ndfs_transport_config tcfg = {
        .name = cfg->node_name,
        .listen = (const char *const *)cfg->listen_addrs,
        .key = key,
        .key_len = key_len,
        .heartbeat_interval_ms = cfg->heartbeat_interval_ms,
        .failure_timeout_ms = cfg->failure_timeout_ms,
        /* the transport reads 0 as its default: "off" is one piece of any size */
        .stripe_size = cfg->stripe_size ? (size_t)cfg->stripe_size : SIZE_MAX,
    };
    struct ndfs_transport *t = NULL;
    rc = ndfs_transport_new(loop, &tcfg, &t, errmsg);
    memset(key, 0, key_len);
    g_free(key);
    if (rc < 0)
        return rc;

    struct ndfs_cluster *c = g_new0(struct ndfs_cluster, 1);
    c->loop = loop;
    c->t = t;
    c->node_name = g_strdup(cfg->node_name);
    c->data_dir = g_strdup(cfg->data_dir);
    c->listen = g_strdupv(cfg->listen_addrs);
    c->join_address = g_strdup(cfg->join);
    c->calls = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, call_free);
    c->known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    c->tick = g_new0(uv_timer_t, 1);
    uv_timer_init(loop, c->tick);
    c->tick->data = c;
    ndfs_transport_set_event_cb(t, on_event, c);
    rc = ndfs_transport_register(t, NDFS_CHANNEL_CONTROL, on_control, c);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot register the control channel: %s", g_strerror(-rc));
        c->closing = true;
        ndfs_cluster_close(c, NULL, NULL);
        return rc;
    }
    *out = c;
    return 0;
}

int ndfs_cluster_start(struct ndfs_cluster *c, char **errmsg)
{
    int rc = ndfs_transport_start(c->t, errmsg);
    if (rc < 0)
        return rc;
    g_autofree char *listen = g_strjoinv(", ", c->listen);
    g_message("listening on %s", listen);
    uv_timer_start(c->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

struct ndfs_transport *ndfs_cluster_transport(struct ndfs_cluster *c)
{
    return c->t;
}

void ndfs_cluster_set_ccd(struct ndfs_cluster *c, struct ndfs_ccd *ccd)
{
    c->ccd = ccd;
}

void ndfs_cluster_set_server(struct ndfs_cluster *c, struct ndfs_server *s)
{
    c->server = s;
}

void ndfs_cluster_set_removed_cb(struct ndfs_cluster *c,
                                 void (*cb)(struct ndfs_cluster *c, void *data), void *data)
{
    c->removed_cb = cb;
    c->removed_data = data;
}

void ndfs_cluster_set_membership(struct ndfs_cluster *c, struct ndfs_membership *m)
{
    c->membership = m;
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
            peer_set(c, name, addrs);
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

static void tick_closed(uv_handle_t *handle)
{
    g_free(handle);
}

static void transport_closed(void *data)
{
    struct ndfs_cluster *c = data;
    void (*cb)(void *) = c->closed_cb;
    void *cb_data = c->closed_data;
    g_hash_table_unref(c->calls);
    g_hash_table_unref(c->known);
    g_free(c->node_name);
    g_free(c->data_dir);
    g_strfreev(c->listen);
    g_free(c->join_address);
    g_free(c->last_leader);
    g_free(c);
    if (cb)
        cb(cb_data);
}

void ndfs_cluster_close(struct ndfs_cluster *c, void (*cb)(void *data), void *data)
{
    c->closing = true;
    c->closed_cb = cb;
    c->closed_data = data;
    calls_fail(c, NULL, -ECANCELED, "ndfsd is stopping");
    if (c->join_cb != NULL) {
        ndfs_cluster_join_cb jcb = c->join_cb;
        c->join_cb = NULL;
        jcb(c, -ECANCELED, 0, "stopped while joining", c->join_data);
    }
    uv_close((uv_handle_t *)c->tick, tick_closed);
    ndfs_transport_close(c->t, transport_closed, c);
}
