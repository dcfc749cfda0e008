/* The control commands of ndfsd. Reads answer at once from the local CCD
 * replica; changes are proposed to the CCD and answered when applied. */
#define G_LOG_DOMAIN "ndfs-commands"

#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pwd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ndfs/membership.h>
#include <ndfs/transport.h>

#include "clock.h"
#include "cluster.h"
#include "control.h"
#include "master.h"
#include "parse.h"
#include "perm.h"
#include "reconfig.h"

void cmd_reply_error(struct cmd_request *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ndfs_conn_reply(r->c, r->id, status, message, NULL);
}

static int arg_lookup(struct cmd_request *r, const char *key, const GVariantType *type,
                      bool required, GVariant **out)
{
    *out = g_variant_lookup_value(r->args, key, NULL);
    if (*out == NULL) {
        if (!required)
            return 0;
        cmd_reply_error(r, -EINVAL, "missing argument \"%s\"", key);
        return -EINVAL;
    }
    if (!g_variant_is_of_type(*out, type)) {
        cmd_reply_error(r, -EINVAL, "argument \"%s\" must be of type \"%.*s\", not \"%s\"", key,
                        (int)g_variant_type_get_string_length(type),
                        g_variant_type_peek_string(type), g_variant_get_type_string(*out));
        g_variant_unref(*out);
        *out = NULL;
        return -EINVAL;
    }
    return 0;
}

int cmd_arg_string(struct cmd_request *r, const char *key, bool required, char **out)
{
    GVariant *v;
    *out = NULL;
    int rc = arg_lookup(r, key, G_VARIANT_TYPE_STRING, required, &v);
    if (rc == 0 && v != NULL) {
        *out = g_variant_dup_string(v, NULL);
        g_variant_unref(v);
    }
    return rc;
}

int cmd_arg_u64(struct cmd_request *r, const char *key, bool required, uint64_t *out)
{
    GVariant *v;
    int rc = arg_lookup(r, key, G_VARIANT_TYPE_UINT64, required, &v);
    if (rc == 0 && v != NULL) {
        *out = g_variant_get_uint64(v);
        g_variant_unref(v);
    }
    return rc;
}

int cmd_arg_u32(struct cmd_request *r, const char *key, bool required, uint32_t *out)
{
    GVariant *v;
    int rc = arg_lookup(r, key, G_VARIANT_TYPE_UINT32, required, &v);
    if (rc == 0 && v != NULL) {
        *out = g_variant_get_uint32(v);
        g_variant_unref(v);
    }
    return rc;
}

int cmd_arg_bool(struct cmd_request *r, const char *key, bool required, bool *out)
{
    GVariant *v;
    int rc = arg_lookup(r, key, G_VARIANT_TYPE_BOOLEAN, required, &v);
    if (rc == 0 && v != NULL) {
        *out = g_variant_get_boolean(v);
        g_variant_unref(v);
    }
    return rc;
}

int cmd_arg_vdisk_name(struct cmd_request *r, char **out)
{
    int rc = cmd_arg_string(r, "name", true, out);
    if (rc < 0)
        return rc;
    if (!ndfs_vdisk_name_valid(*out)) {
        cmd_reply_error(r, -EINVAL,
                        "invalid vdisk name \"%s\": use 1 to 64 of A-Z a-z 0-9 . _ -, "
                        "not \".\" or \"..\"",
                        *out);
        g_clear_pointer(out, g_free);
        return -EINVAL;
    }
    return 0;
}

int cmd_check_mode(struct cmd_request *r, uint32_t mode)
{
    if (mode > 07777) {
        cmd_reply_error(r, -EINVAL, "mode 0%o is out of range (at most 07777)", mode);
        return -EINVAL;
    }
    return 0;
}

uint64_t cmd_now_ns(void)
{
    return ndfs_real_ns();
}

static bool may_change(struct cmd_request *r)
{
    struct ndfs_server *s = r->s;
    const struct ndfs_peer *peer = &r->c->peer;
    gid_t *groups = NULL;
    int ngroups = 0;

    if (peer->uid != 0 && s->admin_gid != (gid_t)-1) {
        /* -ENOENT still yields the primary gid */
        if (ndfs_peer_groups(peer->uid, peer->gid, &groups, &ngroups) < 0 && groups == NULL)
            ngroups = 0;
    }
    bool ok = ndfs_perm_may_change(peer, s->admin_gid, groups, ngroups);
    g_free(groups);
    if (ok)
        return true;
    g_warning("control: refused %s from uid %u pid %d: not root%s", r->command, (unsigned)peer->uid,
              (int)peer->pid, s->admin_group ? " nor in the admin group" : "");
    if (s->admin_group != NULL)
        cmd_reply_error(r, -EPERM,
                        "permission denied: changes need root or membership of group \"%s\"",
                        s->admin_group);
    else
        cmd_reply_error(r, -EPERM, "permission denied: changes need root");
    return false;
}

/* 0, -ENOENT when there is no such account, or another -errno. */
static int account_lookup(const char *name, bool is_group)
{
    size_t size = 16 * 1024;
    for (;;) {
        g_autofree char *buf = g_malloc(size);
        int rc;
        void *found;
        if (is_group) {
            struct group gr, *res;
            rc = getgrnam_r(name, &gr, buf, size, &res);
            found = res;
        } else {
            struct passwd pw, *res;
            rc = getpwnam_r(name, &pw, buf, size, &res);
            found = res;
        }
        if (rc == ERANGE && size < (16u << 20)) {
            size *= 4;
            continue;
        }
        if (rc != 0)
            return -rc;
        return found != NULL ? 0 : -ENOENT;
    }
}

int cmd_check_account(struct cmd_request *r, const char *name, bool is_group)
{
    const char *what = is_group ? "group" : "user";
    if (!ndfs_account_name_valid(name)) {
        cmd_reply_error(r, -EINVAL, "invalid %s name \"%s\"", what, name);
        return -EINVAL;
    }
    int rc = account_lookup(name, is_group);
    if (rc == -ENOENT) {
        cmd_reply_error(r, -EINVAL, "%s \"%s\" does not exist", what, name);
        return -EINVAL;
    }
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot look up %s \"%s\": %s", what, name, g_strerror(-rc));
        return rc;
    }
    return 0;
}

static void cmd_hello(struct cmd_request *r)
{
    g_autofree char *client = NULL;
    if (cmd_arg_string(r, "client", false, &client) < 0)
        return;
    struct ndfs_ccd_status st = {0};
    int rc = ndfs_ccd_status(r->s->ccd, &st);
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read the cluster status: %s", ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "node", "s", r->s->node_name);
    g_variant_dict_insert(&d, "cluster-id", "s", st.cluster_id);
    g_variant_dict_insert(&d, "epoch", "t", (guint64)st.epoch);
    g_variant_dict_insert(&d, "key-file", "s", r->s->key_file ? r->s->key_file : "");
    g_variant_dict_insert(&d, "lease-expiry-ns", "t", (guint64)ndfs_server_lease_expiry_ns(r->s));
    g_variant_dict_insert(&d, "io-timeout-ms", "t", (guint64)r->s->io_timeout_ms);
    g_variant_dict_insert(&d, "poll-us", "u", (guint32)r->s->poll_us);
    ndfs_ccd_status_clear(&st);
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

static void cmd_status(struct cmd_request *r)
{
    struct ndfs_ccd_status st = {0};
    int rc = ndfs_ccd_status(r->s->ccd, &st);
    if (rc < 0) {
        cmd_reply_error(r, rc, "cannot read the cluster status: %s", ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    const char *const no_members[] = {NULL};
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "node", "s", r->s->node_name);
    g_variant_dict_insert(&d, "cluster-id", "s", st.cluster_id);
    g_variant_dict_insert(&d, "epoch", "t", (guint64)st.epoch);
    g_variant_dict_insert(&d, "leader", "s", st.leader);
    g_variant_dict_insert_value(
        &d, "members",
        g_variant_new_strv(st.members ? (const char *const *)st.members : no_members, -1));
    g_variant_dict_insert(&d, "vdisks", "t", (guint64)st.vdisks);
    g_variant_dict_insert(
        &d, "quorum", "b",
        (gboolean)(r->s->cluster == NULL || ndfs_cluster_has_quorum(r->s->cluster)));
    if (r->s->master) {
        uint64_t aio, threads;
        ndfs_master_disk_jobs(r->s->master, &aio, &threads);
        g_variant_dict_insert(&d, "disk-jobs-aio", "t", (guint64)aio);
        g_variant_dict_insert(&d, "disk-jobs-threads", "t", (guint64)threads);
        g_variant_dict_insert(&d, "disk-reads-waited", "t",
                              (guint64)ndfs_master_reads_waited(r->s->master));
    }
    ndfs_ccd_status_clear(&st);
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

static int list_add(const struct ndfs_vdisk *v, void *data)
{
    g_variant_builder_add_value(data, ndfs_vdisk_to_dict(v));
    return 0;
}

static void cmd_vdisk_list(struct cmd_request *r)
{
    GVariantBuilder list;
    g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
    int rc = ndfs_ccd_vdisk_foreach(r->s->ccd, list_add, &list);
    if (rc < 0) {
        g_variant_builder_clear(&list);
        cmd_reply_error(r, rc, "cannot read the vdisks: %s", ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert_value(&d, "vdisks", g_variant_builder_end(&list));
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

/* Reads vdisk name; answers r and returns -errno when it cannot. */
static int read_vdisk(struct cmd_request *r, const char *name, struct ndfs_vdisk *v)
{
    int rc = ndfs_ccd_vdisk_get(r->s->ccd, name, v);
    if (rc == -ENOENT)
        cmd_reply_error(r, rc, "vdisk \"%s\" does not exist", name);
    else if (rc < 0)
        cmd_reply_error(r, rc, "cannot read vdisk \"%s\": %s", name, ndfs_ccd_errmsg(r->s->ccd));
    return rc;
}

static void cmd_vdisk_show(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    struct ndfs_vdisk v = {0};
    if (cmd_arg_vdisk_name(r, &name) < 0 || read_vdisk(r, name, &v) < 0)
        return;
    /* g_variant_dict_init does not sink a floating ref: hold it here */
    g_autoptr(GVariant) dict = g_variant_ref_sink(ndfs_vdisk_to_dict(&v));
    GVariantDict d;
    g_variant_dict_init(&d, dict);
    g_variant_dict_insert(&d, "open-count", "u", ndfs_server_open_count(r->s, name, NULL));
    struct ndfs_io_summary io;
    ndfs_server_io_summary(r->s, name, v.id, &io);
    g_variant_dict_insert(&d, "pending", "u", io.pending);
    g_variant_dict_insert(&d, "in-flight", "u", io.in_flight);
    g_variant_dict_insert(&d, "blocked", "s", io.blocked);
    g_variant_dict_insert(&d, "waiting-ms", "t", (guint64)io.waiting_ms);
    ndfs_vdisk_clear(&v);
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

static void cmd_watch(struct cmd_request *r)
{
    r->c->watcher = true;
    ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
}

/* A mount's ack of vdisk.suspend (see reconfig.h): what it sent for those
 * vdisks is answered. An ack of an unknown or finished txid is no error. */
static void cmd_vdisk_suspended(struct cmd_request *r)
{
    uint64_t txid = 0;
    if (cmd_arg_u64(r, "txid", true, &txid) < 0)
        return;
    if (r->s->reconfig != NULL)
        ndfs_reconfig_mount_acked(r->s->reconfig, r->c, txid);
    ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
}

static void cmd_vdisk_open(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    struct ndfs_vdisk v = {0};
    if (cmd_arg_vdisk_name(r, &name) < 0 || read_vdisk(r, name, &v) < 0)
        return;
    ndfs_vdisk_clear(&v);
    GHashTable *counts = r->c->open_counts;
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, name));
    g_hash_table_replace(counts, g_steal_pointer(&name), GUINT_TO_POINTER(n + 1));
    ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
}

/* Always succeeds for a valid name: a mount closing a vdisk removed with
 * --force meanwhile has nothing to undo. */
static void cmd_vdisk_close(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    if (cmd_arg_vdisk_name(r, &name) < 0)
        return;
    GHashTable *counts = r->c->open_counts;
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, name));
    if (n > 1)
        g_hash_table_replace(counts, g_steal_pointer(&name), GUINT_TO_POINTER(n - 1));
    else
        g_hash_table_remove(counts, name);
    ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
}

/* A reason is one line of text for ndfsadm vdisk show. */
#define IO_STATE_BLOCKED_MAX 256

static bool blocked_valid(const char *text)
{
    if (strlen(text) > IO_STATE_BLOCKED_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
    }
    return true;
}

/* A mount's I/O state of one vdisk (see control.h). The state that ends it
 * (nothing pending, nothing blocked) always succeeds, as a close does: the
 * vdisk may be gone meanwhile; any other is kept only for an existing
 * vdisk of that id, so a connection holds at most one per vdisk. */
static void cmd_vdisk_io_state(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    g_autofree char *blocked = NULL;
    uint64_t id = 0, waiting_ms = 0;
    uint32_t pending = 0, in_flight = 0;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_u64(r, "id", true, &id) < 0 ||
        cmd_arg_u32(r, "pending", true, &pending) < 0 ||
        cmd_arg_u32(r, "in-flight", true, &in_flight) < 0 ||
        cmd_arg_string(r, "blocked", true, &blocked) < 0 ||
        cmd_arg_u64(r, "waiting-ms", true, &waiting_ms) < 0)
        return;
    if (id == 0) {
        cmd_reply_error(r, -EINVAL, "invalid vdisk id 0");
        return;
    }
    if (in_flight > pending) {
        cmd_reply_error(r, -EINVAL, "in-flight (%" PRIu32 ") cannot exceed pending (%" PRIu32 ")",
                        in_flight, pending);
        return;
    }
    if (!blocked_valid(blocked)) {
        cmd_reply_error(r, -EINVAL,
                        "invalid blocked reason: at most %d bytes of text, no control characters",
                        IO_STATE_BLOCKED_MAX);
        return;
    }
    GHashTable *states = r->c->io_states;
    if (pending == 0 && blocked[0] == '\0') {
        const struct ndfs_io_state *old = g_hash_table_lookup(states, name);
        if (old != NULL && old->id == id)
            g_hash_table_remove(states, name);
        ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
        return;
    }
    struct ndfs_vdisk v = {0};
    if (read_vdisk(r, name, &v) < 0)
        return;
    uint64_t current = v.id;
    ndfs_vdisk_clear(&v);
    if (current != id) {
        cmd_reply_error(r, -ENOENT, "vdisk \"%s\" is not id %" PRIu64 " (it is id %" PRIu64 ")",
                        name, id, current);
        return;
    }
    struct ndfs_io_state *st = g_new0(struct ndfs_io_state, 1);
    st->id = id;
    st->pending = pending;
    st->in_flight = in_flight;
    st->blocked = g_steal_pointer(&blocked);
    st->waiting_ms = waiting_ms;
    st->reported_us = g_get_monotonic_time();
    g_hash_table_replace(states, g_steal_pointer(&name), st);
    ndfs_conn_reply(r->c, r->id, 0, NULL, NULL);
}

struct node_list {
    struct ndfs_server *s;
    GVariantBuilder list;
    GHashTable *up; /* name -> GINT_TO_POINTER(1 + up), from membership */
    char leader[NDFS_NODE_NAME_MAX + 1];
};

static int note_member(const struct ndfs_member_info *mi, void *data)
{
    /* a committed member this node cannot reach is not "up" for people here */
    g_hash_table_replace(data, g_strdup(mi->name), GINT_TO_POINTER(1 + (mi->up && mi->reachable)));
    return 0;
}

static int node_list_add(const struct ndfs_node *n, void *data)
{
    struct node_list *l = data;
    const char *const none[] = {NULL};
    bool self = strcmp(n->name, l->s->node_name) == 0;
    int up = GPOINTER_TO_INT(g_hash_table_lookup(l->up, n->name));
    unsigned links_up = 0, links_total = 0;
    if (!self && l->s->cluster != NULL)
        ndfs_cluster_links(l->s->cluster, n->name, &links_up, &links_total);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "name", "s", n->name);
    g_variant_dict_insert(&d, "id", "t", (guint64)n->id);
    g_variant_dict_insert_value(
        &d, "addresses",
        g_variant_new_strv(n->addresses ? (const char *const *)n->addresses : none, -1));
    g_variant_dict_insert(&d, "role", "s", n->role == NDFS_NODE_VOTER ? "voter" : "standby");
    /* without membership data: this node is up, the others as their links say */
    g_variant_dict_insert(&d, "up", "b", (gboolean)(up ? up == 2 : self || links_up > 0));
    g_variant_dict_insert(&d, "leader", "b", (gboolean)(strcmp(n->name, l->leader) == 0));
    g_variant_dict_insert(&d, "links-up", "u", links_up);
    g_variant_dict_insert(&d, "links-total", "u", links_total);
    g_variant_builder_add_value(&l->list, g_variant_dict_end(&d));
    return 0;
}

static void cmd_node_list(struct cmd_request *r)
{
    struct node_list l = {.s = r->s};
    l.up = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (r->s->membership != NULL)
        ndfs_membership_foreach(r->s->membership, note_member, l.up);
    ndfs_ccd_leader(r->s->ccd, l.leader);
    g_variant_builder_init(&l.list, G_VARIANT_TYPE("aa{sv}"));
    int rc = ndfs_ccd_node_foreach(r->s->ccd, node_list_add, &l);
    g_hash_table_unref(l.up);
    if (rc < 0) {
        g_variant_builder_clear(&l.list);
        cmd_reply_error(r, rc, "cannot read the nodes: %s", ndfs_ccd_errmsg(r->s->ccd));
        return;
    }
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert_value(&d, "nodes", g_variant_builder_end(&l.list));
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

static int link_list_add(const struct ndfs_link_info *li, void *data)
{
    /* an index where this node or the peer has no address (a link removed
     * on one end) is no link */
    if ((!li->local || !li->local[0]) || ((!li->remote || !li->remote[0]) && !li->connected))
        return 0;
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "peer", "s", li->peer);
    g_variant_dict_insert(&d, "index", "u", (guint32)li->index);
    g_variant_dict_insert(&d, "local", "s", li->local ? li->local : "");
    g_variant_dict_insert(&d, "remote", "s", li->remote ? li->remote : "");
    g_variant_dict_insert(&d, "up", "b", (gboolean)li->up);
    g_variant_dict_insert(&d, "connected", "b", (gboolean)li->connected);
    g_variant_dict_insert(&d, "rtt-us", "u", li->rtt_us);
    g_variant_dict_insert(&d, "bytes-sent", "t", (guint64)li->bytes_sent);
    g_variant_dict_insert(&d, "bytes-received", "t", (guint64)li->bytes_received);
    g_variant_dict_insert(&d, "last-heard-ms", "t", (guint64)li->last_heard_ms_ago);
    g_variant_builder_add_value(data, g_variant_dict_end(&d));
    return 0;
}

static void cmd_link_list(struct cmd_request *r)
{
    GVariantBuilder list;
    g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
    if (r->s->cluster != NULL)
        ndfs_transport_foreach_link(ndfs_cluster_transport(r->s->cluster), link_list_add, &list);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert_value(&d, "links", g_variant_builder_end(&list));
    ndfs_conn_reply(r->c, r->id, 0, NULL, g_variant_dict_end(&d));
}

/* The commands that run the reconfiguration protocol wait for it too. */
static bool runs_protocol(const char *command)
{
    return strcmp(command, "vdisk.move") == 0 || strcmp(command, "vdisk.failback") == 0 ||
           strcmp(command, "node.drain") == 0 || strcmp(command, "link.add") == 0 ||
           strcmp(command, "link.remove") == 0 || strcmp(command, "vdisk.create") == 0 ||
           strcmp(command, "vdisk.remove") == 0 || strcmp(command, "vdisk.chmod") == 0 ||
           strcmp(command, "vdisk.chown") == 0 || strcmp(command, "vdisk.resize") == 0;
}

/* A change forwarded to the leader gives up after this (cluster.c's
 * default); one that runs the protocol gets room for a cancelled run on top. */
#define FORWARD_TIMEOUT_MS 20000

/* A relayed answer waits at most this long for this node's replica to
 * apply the change (normally one Raft heartbeat); then it goes anyway. */
#define FORWARD_APPLIED_WAIT_MS 5000

/* A change that the leader must make: forwarded there, its answer relayed
 * once this node's replica has applied it (a show right after sees it). */
struct forward {
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    char *leader;
    char *command;
    uint64_t index; /* the leader's applied index in its answer */
    int status;
    char *message;
    GVariant *result; /* NULL until the leader answered */
};

static void forward_free(struct forward *f)
{
    ndfs_conn_unref(f->c);
    g_free(f->leader);
    g_free(f->command);
    g_free(f->message);
    if (f->result != NULL)
        g_variant_unref(f->result);
    g_free(f);
}

static void forward_relay(struct forward *f)
{
    ndfs_conn_reply(f->c, f->id, f->status, f->message, g_steal_pointer(&f->result));
    forward_free(f);
}

static void forward_applied(struct ndfs_ccd *ccd, int status, void *data)
{
    struct forward *f = data;
    if (status == -ETIMEDOUT)
        g_warning("%s: answered before this node applied Raft index %llu (at %llu after %d ms): "
                  "a read here may not show it yet",
                  f->command, (unsigned long long)f->index,
                  (unsigned long long)ndfs_ccd_applied_index(ccd), FORWARD_APPLIED_WAIT_MS);
    forward_relay(f);
}

static void forward_done(int status, const char *message, GVariant *result, void *data)
{
    struct forward *f = data;
    if (status == -ETIMEDOUT || status == -ECONNRESET) {
        ndfs_conn_reply_error(f->c, f->id, -EAGAIN, "the leader %s did not answer: %s", f->leader,
                              message ? message : g_strerror(-status));
        forward_free(f);
        return;
    }
    f->status = status;
    f->message = g_strdup(message);
    /* the index is between nodes: the client gets the command's result */
    guint64 index = 0;
    GVariantDict d;
    g_variant_dict_init(&d, result);
    if (g_variant_dict_lookup(&d, NDFS_CLUSTER_APPLIED_INDEX, "t", &index))
        g_variant_dict_remove(&d, NDFS_CLUSTER_APPLIED_INDEX);
    f->result = g_variant_ref_sink(g_variant_dict_end(&d));
    f->index = index;
    /* a closing connection may outlive its server (ndfsd stopping) */
    if (index == 0 || f->c->closing) {
        forward_relay(f);
        return;
    }
    struct ndfs_ccd *ccd = f->c->server->ccd;
    if (ndfs_ccd_applied_index(ccd) >= index) {
        forward_relay(f);
        return;
    }
    int rc = ndfs_ccd_wait_applied(ccd, index, FORWARD_APPLIED_WAIT_MS, forward_applied, f);
    if (rc < 0) {
        g_debug("%s: cannot wait for Raft index %llu: %s", f->command, (unsigned long long)index,
                g_strerror(-rc));
        forward_relay(f);
    }
}

static void forward_change(struct cmd_request *r)
{
    char leader[NDFS_NODE_NAME_MAX + 1];
    ndfs_ccd_leader(r->s->ccd, leader);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "command", "s", r->command);
    g_variant_dict_insert_value(&d, "args", r->args);
    g_variant_dict_insert(&d, "uid", "u", (guint32)r->c->peer.uid);
    g_variant_dict_insert(&d, "gid", "u", (guint32)r->c->peer.gid);
    g_variant_dict_insert(&d, "pid", "i", (gint32)r->c->peer.pid);
    struct forward *f = g_new0(struct forward, 1);
    f->c = r->c;
    f->id = r->id;
    f->leader = g_strdup(leader);
    f->command = g_strdup(r->command);
    ndfs_conn_ref(r->c);
    unsigned timeout_ms = FORWARD_TIMEOUT_MS;
    if (runs_protocol(r->command) && r->s->reconfig != NULL)
        timeout_ms += 3 * ndfs_reconfig_ack_timeout_ms(r->s->reconfig);
    int rc = ndfs_cluster_call_timeout(r->s->cluster, leader, "change", g_variant_dict_end(&d),
                                       timeout_ms, forward_done, f);
    if (rc < 0) {
        cmd_reply_error(r, -EAGAIN, "cannot reach the leader %s: %s", leader, g_strerror(-rc));
        forward_free(f);
    }
}

/* Changes go to the leader; without quorum they fail at once. Returns true
 * when r was answered or forwarded. */
static bool route_change(struct cmd_request *r)
{
    if (r->s->cluster == NULL)
        return false;
    g_autofree char *errmsg = NULL;
    int rc = ndfs_cluster_quorum(r->s->cluster, &errmsg);
    if (rc < 0) {
        cmd_reply_error(r, rc, "%s", errmsg);
        return true;
    }
    if (ndfs_cluster_is_leader(r->s->cluster))
        return false;
    if (r->c->remote_peer != NULL) {
        /* forwarded once already: the leadership moved meanwhile */
        cmd_reply_error(r, -EAGAIN, "node %s is no longer the leader, try again", r->s->node_name);
        return true;
    }
    forward_change(r);
    return true;
}

static const struct command {
    const char *name;
    bool changes; /* needs root or the admin group */
    void (*run)(struct cmd_request *r);
} commands[] = {
    {"hello", false, cmd_hello},
    {"status", false, cmd_status},
    {"vdisk.create", true, cmd_vdisk_create},
    {"vdisk.list", false, cmd_vdisk_list},
    {"vdisk.show", false, cmd_vdisk_show},
    {"vdisk.remove", true, cmd_vdisk_remove},
    {"vdisk.chmod", true, cmd_vdisk_chmod},
    {"vdisk.chown", true, cmd_vdisk_chown},
    {"vdisk.resize", true, cmd_vdisk_resize},
    {"vdisk.fail-path", true, cmd_vdisk_fail_path},
    {"vdisk.restore-path", true, cmd_vdisk_restore_path},
    {"vdisk.failback", true, cmd_vdisk_failback},
    {"vdisk.move", true, cmd_vdisk_move},
    {"vdisk.suspended", false, cmd_vdisk_suspended},
    {"watch", false, cmd_watch},
    {"vdisk.open", false, cmd_vdisk_open},
    {"vdisk.close", false, cmd_vdisk_close},
    {"vdisk.io-state", false, cmd_vdisk_io_state},
    {"node.list", false, cmd_node_list},
    {"node.remove", true, cmd_node_remove},
    {"node.drain", true, cmd_node_drain},
    {"link.list", false, cmd_link_list},
    {"link.add", true, cmd_link_add},
    {"link.remove", true, cmd_link_remove},
};

void ndfs_commands_dispatch(struct ndfs_conn *c, uint64_t id, const char *command, GVariant *args)
{
    struct cmd_request r = {.s = c->server, .c = c, .id = id, .command = command, .args = args};

    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(commands[i].name, command) != 0)
            continue;
        if (c->remote_peer != NULL && !commands[i].changes) {
            cmd_reply_error(&r, -EINVAL, "\"%s\" cannot be forwarded", command);
            return;
        }
        /* a forwarded change passed the permission check on its node */
        if (commands[i].changes && c->remote_peer == NULL && !may_change(&r))
            return;
        if (commands[i].changes && route_change(&r))
            return;
        commands[i].run(&r);
        return;
    }
    cmd_reply_error(&r, -EOPNOTSUPP, "unknown command \"%s\"", command);
}

static void remember_id(struct ndfs_server *s, const struct ndfs_vdisk *v)
{
    g_hash_table_replace(s->vdisk_ids, g_strdup(v->name), g_memdup2(&v->id, sizeof(v->id)));
}

static int remember_id_cb(const struct ndfs_vdisk *v, void *data)
{
    remember_id(data, v);
    return 0;
}

static void on_ccd_change(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key,
                          bool removed, void *data)
{
    struct ndfs_server *s = data;

    if (s->watch_chain != NULL)
        s->watch_chain(ccd, table, key, removed, s->watch_chain_data);
    if (table == NDFS_CCD_NODES && !s->stopping) {
        /* mounts reach masters by the nodes' link addresses */
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "name", "s", key ? key : "");
        g_variant_dict_insert(&d, "removed", "b", removed);
        ndfs_server_broadcast(s, "node.changed", g_variant_dict_end(&d));
        return;
    }
    if (table != NDFS_CCD_VDISKS || s->stopping)
        return;
    if (key == NULL) {
        /* the whole table was replaced (a snapshot): relearn the ids */
        g_hash_table_remove_all(s->vdisk_ids);
        ndfs_ccd_vdisk_foreach(ccd, remember_id_cb, s);
        return;
    }
    if (removed) {
        const uint64_t *id = g_hash_table_lookup(s->vdisk_ids, key);
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "name", "s", key);
        g_variant_dict_insert(&d, "id", "t", (guint64)(id ? *id : 0));
        ndfs_server_broadcast(s, "vdisk.removed", g_variant_dict_end(&d));
        g_hash_table_remove(s->vdisk_ids, key);
        /* a later vdisk of the same name is another disk: the opens were of this one */
        for (GList *l = s->conns; l != NULL; l = l->next) {
            struct ndfs_conn *c = l->data;
            g_hash_table_remove(c->open_counts, key);
            g_hash_table_remove(c->io_states, key);
        }
        return;
    }
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(ccd, key, &v);
    if (rc < 0) {
        g_debug("vdisk \"%s\" changed but cannot be read: %s", key, g_strerror(-rc));
        return;
    }
    remember_id(s, &v);
    ndfs_server_broadcast(s, "vdisk.changed", ndfs_vdisk_to_dict(&v));
    ndfs_vdisk_clear(&v);
}

int ndfs_commands_watch_start(struct ndfs_server *s)
{
    g_hash_table_remove_all(s->vdisk_ids);
    int rc = ndfs_ccd_vdisk_foreach(s->ccd, remember_id_cb, s);
    if (rc < 0)
        return rc;
    ndfs_ccd_set_watch(s->ccd, on_ccd_change, s);
    return 0;
}

void ndfs_commands_watch_stop(struct ndfs_server *s)
{
    ndfs_ccd_set_watch(s->ccd, NULL, NULL);
}
