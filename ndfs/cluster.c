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
#include "reconfig.h"
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

void ndfs__cluster_reply(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
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

void ndfs__cluster_reply_error(struct ndfs_cluster *c, const char *peer, uint64_t id, int status,
                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ndfs__cluster_reply(c, peer, id, status, message, NULL);
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
        ndfs__cluster_reply(r->c, r->peer, r->id, status, message, result);
    g_free(r->peer);
    g_free(r);
}

int ndfs__cluster_relay_to(struct ndfs_cluster *c, const char *to, const char *peer, uint64_t id,
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

/* ---- the peers: the CCD keeps the transport's peers in step with the nodes
 * table; we set them from a join answer (before the CCD runs) and log who
 * joins and leaves ---- */

/* Tells the transport about a node before the CCD runs (from a join answer). */
void ndfs__cluster_peer_set(struct ndfs_cluster *c, const char *name, const char *const *addresses)
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

static void handle_disk_prepare(struct ndfs_cluster *c, const char *peer, uint64_t id,
                                GVariant *args)
{
    const char *vdisk = NULL, *path = NULL;
    guint64 size = 0;
    gboolean create = FALSE, grow = FALSE;
    if (!g_variant_lookup(args, "vdisk", "&s", &vdisk) ||
        !g_variant_lookup(args, "path", "&s", &path) || !g_path_is_absolute(path) ||
        !g_variant_lookup(args, "size", "t", &size)) {
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed disk.prepare request");
        return;
    }
    g_variant_lookup(args, "create", "b", &create);
    g_variant_lookup(args, "grow", "b", &grow);
    bool created = false;
    g_autofree char *errmsg = NULL;
    int rc = ndfs_disk_prepare(vdisk, path, size, create, grow, &created, &errmsg);
    if (rc < 0) {
        ndfs__cluster_reply_error(c, peer, id, rc, "node %s: %s", c->node_name, errmsg);
        return;
    }
    ndfs__cluster_reply(c, peer, id, 0, NULL,
                        g_variant_new_parsed("{'created': <%b>}", (gboolean)created));
}

static void handle_disk_discard(struct ndfs_cluster *c, const char *peer, uint64_t id,
                                GVariant *args)
{
    const char *path = NULL;
    if (!g_variant_lookup(args, "path", "&s", &path) || !g_path_is_absolute(path)) {
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed disk.discard request");
        return;
    }
    if (unlink(path) < 0) {
        int err = errno;
        ndfs__cluster_reply_error(c, peer, id, -err, "node %s: cannot remove %s: %s", c->node_name,
                                  path, g_strerror(err));
        return;
    }
    g_message("removed %s, made for a vdisk that was not created", path);
    ndfs__cluster_reply(c, peer, id, 0, NULL, NULL);
}

static void handle_link_check(struct ndfs_cluster *c, const char *peer, uint64_t id, GVariant *args)
{
    const char *address = NULL;
    if (!g_variant_lookup(args, "address", "&s", &address)) {
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed link.check request");
        return;
    }
    g_autofree char *why = NULL;
    int rc = ndfs_transport_listen_check(address, &why);
    if (rc < 0)
        ndfs__cluster_reply_error(c, peer, id, rc, "node %s: %s", c->node_name, why);
    else
        ndfs__cluster_reply(c, peer, id, 0, NULL, NULL);
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
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed change request");
        return;
    }
    g_variant_lookup(args, "pid", "i", &pid);
    if (c->server == NULL || c->ccd == NULL) {
        ndfs__cluster_reply_error(c, peer, id, -EAGAIN, "node %s is starting or stopping",
                                  c->node_name);
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
     * writes): the change, proposed here and applied before its answer (not
     * the empty entry after it, which followers learn of a heartbeat later) */
    g_autoptr(GVariant) held = result ? g_variant_ref_sink(result) : NULL;
    GVariantDict d;
    g_variant_dict_init(&d, held);
    g_variant_dict_insert(&d, NDFS_CLUSTER_APPLIED_INDEX, "t",
                          (guint64)ndfs_ccd_change_index(c->ccd));
    ndfs__cluster_reply(c, peer, id, status, message, g_variant_dict_end(&d));
}

/* The reconfiguration protocol's calls from the leader (reconfig.h). */
static void handle_reconfig(struct ndfs_cluster *c, const char *peer, uint64_t id,
                            const char *command, GVariant *args)
{
    if (c->reconfig == NULL) {
        ndfs__cluster_reply_error(c, peer, id, -EAGAIN, "node %s is starting or stopping",
                                  c->node_name);
        return;
    }
    if (strcmp(command, NDFS_CLUSTER_RECONFIG_PREPARE) == 0)
        ndfs_reconfig_handle_prepare(c->reconfig, peer, id, args);
    else
        ndfs_reconfig_handle_finish(c->reconfig, peer, id, args);
}

/* The mounts of this node that hold a vdisk open; none while the control
 * socket is not serving (starting, stopping). */
static void handle_open_count(struct ndfs_cluster *c, const char *peer, uint64_t id, GVariant *args)
{
    const char *name = NULL;
    if (!g_variant_lookup(args, "name", "&s", &name) || !ndfs_vdisk_name_valid(name)) {
        ndfs__cluster_reply_error(c, peer, id, -EINVAL, "malformed vdisk.open-count request");
        return;
    }
    unsigned mounts = 0, count = 0;
    if (c->server != NULL)
        count = ndfs_server_open_count(c->server, name, &mounts);
    ndfs__cluster_reply(
        c, peer, id, 0, NULL,
        g_variant_new_parsed("{'count': <%u>, 'mounts': <%u>}", (guint32)count, (guint32)mounts));
}

static void handle_request(struct ndfs_cluster *c, const char *peer, GVariant *body)
{
    guint64 id;
    const char *command;
    g_autoptr(GVariant) args = NULL;
    g_variant_get(body, "(t&s@a{sv})", &id, &command, &args);
    if (strcmp(command, "join") == 0)
        ndfs__cluster_handle_join(c, peer, id, args);
    else if (strcmp(command, NDFS_CLUSTER_OPEN_COUNT) == 0)
        handle_open_count(c, peer, id, args);
    else if (c->ccd == NULL)
        ndfs__cluster_reply_error(c, peer, id, -EAGAIN, "node %s is starting or stopping",
                                  c->node_name);
    else if (strcmp(command, "disk.prepare") == 0)
        handle_disk_prepare(c, peer, id, args);
    else if (strcmp(command, "disk.discard") == 0)
        handle_disk_discard(c, peer, id, args);
    else if (strcmp(command, "change") == 0)
        handle_change(c, peer, id, args);
    else if (strcmp(command, NDFS_CLUSTER_LINK_CHECK) == 0)
        handle_link_check(c, peer, id, args);
    else if (strcmp(command, NDFS_CLUSTER_RECONFIG_PREPARE) == 0 ||
             strcmp(command, NDFS_CLUSTER_RECONFIG_FINISH) == 0)
        handle_reconfig(c, peer, id, command, args);
    else
        ndfs__cluster_reply_error(c, peer, id, -EOPNOTSUPP, "unknown node command \"%s\"", command);
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

void ndfs_cluster_set_reconfig(struct ndfs_cluster *c, struct ndfs_reconfig *r)
{
    c->reconfig = r;
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
