#define G_LOG_DOMAIN "ndfs-fuse"

#include "control_link.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "control.h"

#define CALL_TIMEOUT_MS      10000
#define BACKOFF_FIRST_MS     100
#define BACKOFF_MAX_MS       1000
#define OPEN_CALL_TIMEOUT_MS 5000

enum link_msg_kind { LINK_MSG_EVENT, LINK_MSG_CLOSED, LINK_MSG_STOP };

struct link_msg {
    enum link_msg_kind kind;
    uint64_t gen; /* connection the message came from */
    char *event;
    GVariant *args;
};

/* The data of one connection's callbacks: which generation it is. */
struct link_conn {
    struct control_link *link;
    uint64_t gen;
};

struct control_link_open {
    char *name;
    uint64_t announced_gen; /* 0: not yet; protected by link->opens_lock */
};

struct control_link {
    char *socket_path;
    struct vdisk_table *table;
    struct fuse_session *se; /* set by _start, before the thread runs */
    GAsyncQueue *queue;      /* struct link_msg *, to the link's thread */
    GThread *thread;
    char *node_name;                  /* set by the first hello, then read-only */
    GMutex cb_lock;                   /* held while a callback runs */
    struct control_link_callbacks cb; /* protected by cb_lock */
    void *cb_data;                    /* protected by cb_lock */
    /* CLOCK_MONOTONIC ns: this node's lease (hello, lease events; 0 while
     * disconnected), read by every local I/O */
    _Atomic uint64_t lease_expiry_ns;
    _Atomic uint64_t io_timeout_ms;
    atomic_uint poll_us;

    GMutex lock;
    GCond changed;
    struct ndfs_control_client *client; /* NULL while disconnected; protected by lock */
    struct link_conn *conn;             /* callbacks' data of client; protected by lock */
    uint64_t gen;                       /* generation of client; protected by lock */
    unsigned users;                     /* callers using client; protected by lock */
    bool stopping;                      /* protected by lock */
    char *key_file;                     /* from the last hello; protected by lock */
    uint64_t epoch; /* the highest of hello and epoch events; protected by lock */

    GMutex opens_lock;
    GPtrArray *opens; /* struct control_link_open *; protected by opens_lock */
};

static void link_msg_free(struct link_msg *m)
{
    g_free(m->event);
    if (m->args)
        g_variant_unref(m->args);
    g_free(m);
}

static void push_msg(struct control_link *link, enum link_msg_kind kind, uint64_t gen,
                     const char *event, GVariant *args)
{
    struct link_msg *m = g_new0(struct link_msg, 1);
    m->kind = kind;
    m->gen = gen;
    m->event = g_strdup(event);
    m->args = args ? g_variant_ref(args) : NULL;
    g_async_queue_push(link->queue, m);
}

static void on_event(struct ndfs_control_client *c, const char *event, GVariant *args, void *data)
{
    (void)c;
    struct link_conn *conn = data;
    push_msg(conn->link, LINK_MSG_EVENT, conn->gen, event, args);
}

static void on_closed(struct ndfs_control_client *c, void *data)
{
    (void)c;
    struct link_conn *conn = data;
    push_msg(conn->link, LINK_MSG_CLOSED, conn->gen, NULL, NULL);
}

struct control_link *control_link_new(const char *socket_path, struct vdisk_table *table)
{
    struct control_link *link = g_new0(struct control_link, 1);
    link->socket_path = g_strdup(socket_path);
    link->table = table;
    link->queue = g_async_queue_new_full((GDestroyNotify)link_msg_free);
    g_mutex_init(&link->lock);
    g_cond_init(&link->changed);
    g_mutex_init(&link->opens_lock);
    g_mutex_init(&link->cb_lock);
    link->opens = g_ptr_array_new();
    return link;
}

const char *control_link_node_name(struct control_link *link)
{
    return link->node_name;
}

/* Tells the kernel; errors only mean it had nothing cached. */
static void notify_root_changed(struct control_link *link)
{
    if (link->se)
        fuse_lowlevel_notify_inval_inode(link->se, VDISK_TABLE_ROOT_INO, 0, 0);
}

static void notify_entry(struct control_link *link, const char *name)
{
    if (link->se)
        fuse_lowlevel_notify_inval_entry(link->se, VDISK_TABLE_ROOT_INO, name, strlen(name));
}

static void mapping_changed(struct control_link *link);

static void apply_vdisk(struct control_link *link, const struct ndfs_vdisk *v)
{
    g_autofree char *old_name = NULL;
    enum vdisk_table_change change = vdisk_table_upsert(link->table, v, &old_name);
    if (change == VDISK_TABLE_UNCHANGED)
        return;
    mapping_changed(link);
    g_debug("vdisk \"%s\" (id %" G_GUINT64_FORMAT ") %s, version %" G_GUINT64_FORMAT, v->name,
            v->id, change == VDISK_TABLE_ADDED ? "added" : "changed", v->version);
    if (!link->se)
        return;
    if (change == VDISK_TABLE_CHANGED)
        fuse_lowlevel_notify_inval_inode(link->se, vdisk_table_ino(v->id), 0, 0);
    if (old_name)
        notify_entry(link, old_name);
    if (change == VDISK_TABLE_ADDED || old_name) {
        notify_entry(link, v->name); /* a cached negative entry */
        notify_root_changed(link);
    }
}

static void drop_vdisk(struct control_link *link, uint64_t id)
{
    g_autofree char *name = NULL;
    if (vdisk_table_remove(link->table, id, &name) < 0)
        return;
    mapping_changed(link);
    g_debug("vdisk \"%s\" (id %" G_GUINT64_FORMAT ") removed", name, id);
    if (!link->se)
        return;
    int rc = fuse_lowlevel_notify_delete(link->se, VDISK_TABLE_ROOT_INO, vdisk_table_ino(id), name,
                                         strlen(name));
    if (rc < 0)
        notify_entry(link, name);
    notify_root_changed(link);
}

static void nodes_changed(struct control_link *link)
{
    g_mutex_lock(&link->cb_lock);
    if (link->cb.nodes)
        link->cb.nodes(link->cb_data);
    g_mutex_unlock(&link->cb_lock);
}

static void mapping_changed(struct control_link *link)
{
    g_mutex_lock(&link->cb_lock);
    if (link->cb.mapping)
        link->cb.mapping(link->cb_data);
    g_mutex_unlock(&link->cb_lock);
}

/* Keeps the highest epoch seen and tells the driver. */
static void set_epoch(struct control_link *link, uint64_t epoch)
{
    g_mutex_lock(&link->lock);
    if (epoch > link->epoch)
        link->epoch = epoch;
    epoch = link->epoch;
    g_mutex_unlock(&link->lock);
    g_mutex_lock(&link->cb_lock);
    if (link->cb.epoch)
        link->cb.epoch(link->cb_data, epoch);
    g_mutex_unlock(&link->cb_lock);
}

/* vdisk.suspend: the driver holds and drains, then acks. */
static void suspend_event(struct control_link *link, GVariant *args)
{
    guint64 txid;
    g_autoptr(GVariant) ids = g_variant_lookup_value(args, "ids", G_VARIANT_TYPE("at"));
    if (!g_variant_lookup(args, "txid", "t", &txid) || !ids) {
        g_warning("ndfsd sent a malformed vdisk.suspend event; ignored");
        return;
    }
    gsize n = 0;
    const guint64 *v = g_variant_get_fixed_array(ids, &n, sizeof(guint64));
    g_mutex_lock(&link->cb_lock);
    bool taken = link->cb.suspend != NULL;
    if (taken)
        link->cb.suspend(link->cb_data, txid, (const uint64_t *)v, n);
    g_mutex_unlock(&link->cb_lock);
    if (taken)
        return;
    /* no driver (no network): nothing is sent anywhere to wait for */
    GVariantDict ack;
    g_variant_dict_init(&ack, NULL);
    g_variant_dict_insert(&ack, "txid", "t", txid);
    g_autofree char *errmsg = NULL;
    int rc = control_link_call(link, "vdisk.suspended", g_variant_dict_end(&ack), 0, NULL, &errmsg);
    if (rc < 0)
        g_message("txid %" G_GUINT64_FORMAT ": ndfsd did not take the ack of the suspension: %s",
                  txid, errmsg ? errmsg : g_strerror(-rc));
}

static void resume_event(struct control_link *link, GVariant *args)
{
    guint64 txid;
    gboolean committed = FALSE;
    if (!g_variant_lookup(args, "txid", "t", &txid)) {
        g_warning("ndfsd sent a vdisk.resume event without a txid; ignored");
        return;
    }
    g_variant_lookup(args, "committed", "b", &committed);
    g_mutex_lock(&link->cb_lock);
    if (link->cb.resume)
        link->cb.resume(link->cb_data, txid, committed);
    g_mutex_unlock(&link->cb_lock);
}

static void resume_all(struct control_link *link)
{
    g_mutex_lock(&link->cb_lock);
    if (link->cb.resume_all)
        link->cb.resume_all(link->cb_data);
    g_mutex_unlock(&link->cb_lock);
}

static void handle_event(struct control_link *link, const char *event, GVariant *args)
{
    if (strcmp(event, "vdisk.changed") == 0) {
        struct ndfs_vdisk v;
        if (ndfs_vdisk_from_dict(args, &v) < 0) {
            g_warning("ndfsd sent a malformed vdisk.changed event; ignored");
            return;
        }
        apply_vdisk(link, &v);
        ndfs_vdisk_clear(&v);
    } else if (strcmp(event, "vdisk.removed") == 0) {
        guint64 id;
        if (!g_variant_lookup(args, "id", "t", &id)) {
            g_warning("ndfsd sent a vdisk.removed event without an id; ignored");
            return;
        }
        drop_vdisk(link, id);
    } else if (strcmp(event, "epoch") == 0) {
        guint64 epoch;
        if (g_variant_lookup(args, "epoch", "t", &epoch))
            set_epoch(link, epoch);
    } else if (strcmp(event, "lease") == 0) {
        guint64 expiry;
        if (g_variant_lookup(args, "expiry-ns", "t", &expiry))
            atomic_store(&link->lease_expiry_ns, expiry);
    } else if (strcmp(event, "vdisk.suspend") == 0) {
        suspend_event(link, args);
    } else if (strcmp(event, "vdisk.resume") == 0) {
        resume_event(link, args);
    } else if (g_str_has_prefix(event, "node.")) {
        nodes_changed(link);
    }
}

static bool id_listed(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Makes the table what the list says: applies each vdisk, drops the others. */
static int apply_list(struct control_link *link, GVariant *result, char **errmsg)
{
    g_autoptr(GVariant) vdisks = g_variant_lookup_value(result, "vdisks", G_VARIANT_TYPE("aa{sv}"));
    if (!vdisks) {
        *errmsg = g_strdup("ndfsd answered vdisk.list without a vdisks array");
        return -EPROTO;
    }
    size_t n = g_variant_n_children(vdisks);
    g_autofree uint64_t *listed = g_new0(uint64_t, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        g_autoptr(GVariant) dict = g_variant_get_child_value(vdisks, i);
        struct ndfs_vdisk v;
        if (ndfs_vdisk_from_dict(dict, &v) < 0) {
            *errmsg = g_strdup("ndfsd answered vdisk.list with a malformed vdisk");
            return -EPROTO;
        }
        listed[i] = v.id;
        apply_vdisk(link, &v);
        ndfs_vdisk_clear(&v);
    }
    size_t count;
    g_autofree uint64_t *known = vdisk_table_ids(link->table, &count);
    for (size_t i = 0; i < count; i++)
        if (!id_listed(listed, n, known[i]))
            drop_vdisk(link, known[i]);
    return 0;
}

static int sync_call(struct ndfs_control_client *c, const char *command, GVariant *args,
                     GVariant **result, char **errmsg)
{
    g_autofree char *msg = NULL;
    int rc = ndfs_control_client_call(c, command, args, CALL_TIMEOUT_MS, result, &msg);
    if (rc < 0)
        *errmsg = g_strdup_printf("%s: %s", command, msg && *msg ? msg : g_strerror(-rc));
    return rc;
}

static GVariant *args_with_name(const char *name)
{
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "name", "s", name);
    return g_variant_dict_end(&d);
}

/* Connects a new client and brings the table up to date; on success it is
 * the link's client. Runs on the link's thread (or before it starts). */
static int connect_and_sync(struct control_link *link, char **errmsg)
{
    g_mutex_lock(&link->lock);
    struct link_conn *conn = g_new0(struct link_conn, 1);
    conn->link = link;
    conn->gen = link->gen + 1;
    g_mutex_unlock(&link->lock);

    struct ndfs_control_client *c = NULL;
    int rc = ndfs_control_client_connect(link->socket_path, on_event, on_closed, conn, &c);
    if (rc < 0) {
        *errmsg = g_strdup(g_strerror(-rc));
        g_free(conn);
        return rc;
    }
    GVariantDict hello;
    g_variant_dict_init(&hello, NULL);
    g_variant_dict_insert(&hello, "client", "s", "ndfs");
    g_autoptr(GVariant) hello_result = NULL, list_result = NULL;
    rc = sync_call(c, "hello", g_variant_dict_end(&hello), &hello_result, errmsg);
    if (rc == 0)
        rc = sync_call(c, "watch", NULL, NULL, errmsg);
    if (rc == 0)
        rc = sync_call(c, "vdisk.list", NULL, &list_result, errmsg);
    const char *node = NULL;
    if (rc == 0 && !g_variant_lookup(hello_result, "node", "&s", &node)) {
        *errmsg = g_strdup("ndfsd answered hello without a node name");
        rc = -EPROTO;
    }
    if (rc == 0)
        rc = apply_list(link, list_result, errmsg);
    if (rc < 0) {
        ndfs_control_client_close(c);
        g_free(conn);
        return rc;
    }
    if (!link->node_name)
        link->node_name = g_strdup(node);
    else if (strcmp(link->node_name, node) != 0)
        g_warning("ndfsd now says this node is \"%s\", not \"%s\"; keeping \"%s\"", node,
                  link->node_name, link->node_name);

    const char *key_file = "";
    guint64 epoch = 0, lease = G_MAXUINT64, io_timeout = 0;
    guint32 poll_us = 0;
    g_variant_lookup(hello_result, "key-file", "&s", &key_file);
    g_variant_lookup(hello_result, "epoch", "t", &epoch);
    /* an ndfsd older than HA says neither: no lease to respect, wait forever */
    g_variant_lookup(hello_result, "lease-expiry-ns", "t", &lease);
    g_variant_lookup(hello_result, "io-timeout-ms", "t", &io_timeout);
    g_variant_lookup(hello_result, "poll-us", "u", &poll_us);
    atomic_store(&link->lease_expiry_ns, lease);
    atomic_store(&link->io_timeout_ms, io_timeout);
    atomic_store(&link->poll_us, poll_us);

    g_mutex_lock(&link->lock);
    link->client = c;
    link->conn = conn;
    link->gen = conn->gen;
    g_free(link->key_file);
    link->key_file = g_strdup(key_file);
    g_cond_broadcast(&link->changed);
    g_mutex_unlock(&link->lock);
    set_epoch(link, epoch);
    return 0;
}

/* Closes the current client once no caller uses it any more. */
static void drop_client(struct control_link *link)
{
    g_mutex_lock(&link->lock);
    struct ndfs_control_client *c = link->client;
    struct link_conn *conn = link->conn;
    link->client = NULL;
    link->conn = NULL;
    /* nobody renews what we know of the lease now: local I/O stops */
    atomic_store(&link->lease_expiry_ns, 0);
    g_cond_broadcast(&link->changed);
    while (link->users > 0)
        g_cond_wait(&link->changed, &link->lock);
    g_mutex_unlock(&link->lock);
    if (c)
        ndfs_control_client_close(c);
    g_free(conn);
}

int control_link_connect(struct control_link *link, char **errmsg)
{
    return connect_and_sync(link, errmsg);
}

void control_link_disconnect(struct control_link *link)
{
    drop_client(link);
    struct link_msg *m;
    while ((m = g_async_queue_try_pop(link->queue)))
        link_msg_free(m);
}

/* A client of a generation newer than bad_gen, counted as used; NULL when
 * none came before deadline (monotonic µs) or the link stops. */
static struct ndfs_control_client *get_client(struct control_link *link, uint64_t bad_gen,
                                              gint64 deadline, uint64_t *gen)
{
    g_mutex_lock(&link->lock);
    while (!link->stopping && (!link->client || link->gen <= bad_gen))
        if (!g_cond_wait_until(&link->changed, &link->lock, deadline))
            break;
    struct ndfs_control_client *c = NULL;
    if (!link->stopping && link->client && link->gen > bad_gen) {
        c = link->client;
        *gen = link->gen;
        link->users++;
    }
    g_mutex_unlock(&link->lock);
    return c;
}

static void put_client(struct control_link *link)
{
    g_mutex_lock(&link->lock);
    if (--link->users == 0)
        g_cond_broadcast(&link->changed);
    g_mutex_unlock(&link->lock);
}

static bool connection_lost(int rc)
{
    return rc == -ECONNRESET || rc == -EPIPE || rc == -ENOTCONN || rc == -ESHUTDOWN;
}

int control_link_call(struct control_link *link, const char *command, GVariant *args, int wait_ms,
                      GVariant **result, char **errmsg)
{
    g_autoptr(GVariant) owned = args ? g_variant_ref_sink(args) : NULL;
    gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms * 1000;
    uint64_t bad_gen = 0, gen;
    for (;;) {
        struct ndfs_control_client *c = get_client(link, bad_gen, deadline, &gen);
        if (!c) {
            if (errmsg)
                *errmsg = g_strdup("not connected to ndfsd");
            return -EIO;
        }
        int rc = ndfs_control_client_call(c, command, owned, CALL_TIMEOUT_MS, result, errmsg);
        put_client(link);
        if (!connection_lost(rc))
            return rc == -ETIMEDOUT ? -EIO : rc;
        if (errmsg)
            g_clear_pointer(errmsg, g_free);
        bad_gen = gen;
    }
}

int control_link_fetch_vdisk(struct control_link *link, const char *name)
{
    g_autoptr(GVariant) result = NULL;
    int rc = control_link_call(link, "vdisk.show", args_with_name(name), 0, &result, NULL);
    if (rc < 0)
        return rc == -EIO ? -ENOENT : rc;
    struct ndfs_vdisk v;
    if (ndfs_vdisk_from_dict(result, &v) < 0)
        return -EIO;
    /* no invalidation: a lookup holds the root's lock, and the kernel has
     * nothing of a vdisk it never saw */
    vdisk_table_upsert(link->table, &v, NULL);
    ndfs_vdisk_clear(&v);
    return 0;
}

/* Sends vdisk.open for o unless it was already sent on this connection. */
static int announce_open(struct control_link *link, struct control_link_open *o, int wait_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms * 1000;
    uint64_t gen;
    struct ndfs_control_client *c = get_client(link, 0, deadline, &gen);
    if (!c)
        return 0; /* the reconnection announces it */
    g_mutex_lock(&link->opens_lock);
    bool mine = o->announced_gen != gen;
    o->announced_gen = gen;
    g_mutex_unlock(&link->opens_lock);
    int rc = 0;
    if (mine) {
        g_autofree char *msg = NULL;
        rc = ndfs_control_client_call(c, "vdisk.open", args_with_name(o->name),
                                      OPEN_CALL_TIMEOUT_MS, NULL, &msg);
        if (connection_lost(rc) || rc == -ETIMEDOUT)
            rc = 0;
        else if (rc < 0)
            g_message("vdisk \"%s\": ndfsd refused vdisk.open: %s", o->name, msg);
    }
    put_client(link);
    return rc;
}

static void forget_open(struct control_link *link, struct control_link_open *o)
{
    g_mutex_lock(&link->opens_lock);
    g_ptr_array_remove_fast(link->opens, o);
    g_mutex_unlock(&link->opens_lock);
    g_free(o->name);
    g_free(o);
}

int control_link_open_vdisk(struct control_link *link, const char *name,
                            struct control_link_open **out)
{
    struct control_link_open *o = g_new0(struct control_link_open, 1);
    o->name = g_strdup(name);
    g_mutex_lock(&link->opens_lock);
    g_ptr_array_add(link->opens, o);
    g_mutex_unlock(&link->opens_lock);
    int rc = announce_open(link, o, 0);
    if (rc < 0) {
        forget_open(link, o);
        return rc;
    }
    *out = o;
    return 0;
}

void control_link_close_vdisk(struct control_link *link, struct control_link_open *o)
{
    g_mutex_lock(&link->opens_lock);
    g_ptr_array_remove_fast(link->opens, o);
    uint64_t announced = o->announced_gen;
    g_mutex_unlock(&link->opens_lock);
    uint64_t gen;
    struct ndfs_control_client *c = get_client(link, 0, g_get_monotonic_time(), &gen);
    if (c) {
        /* an announcement on an older connection died with it */
        if (announced == gen)
            ndfs_control_client_call(c, "vdisk.close", args_with_name(o->name),
                                     OPEN_CALL_TIMEOUT_MS, NULL, NULL);
        put_client(link);
    }
    g_free(o->name);
    g_free(o);
}

static void announce_all_opens(struct control_link *link)
{
    g_mutex_lock(&link->opens_lock);
    GPtrArray *snapshot = g_ptr_array_new();
    for (guint i = 0; i < link->opens->len; i++)
        g_ptr_array_add(snapshot, g_ptr_array_index(link->opens, i));
    g_mutex_unlock(&link->opens_lock);
    /* an open closed meanwhile is freed by its closer: announce by name only */
    g_mutex_lock(&link->lock);
    uint64_t gen = link->gen;
    g_mutex_unlock(&link->lock);
    for (guint i = 0; i < snapshot->len; i++) {
        struct control_link_open *o = g_ptr_array_index(snapshot, i);
        g_mutex_lock(&link->opens_lock);
        bool still_open = false;
        g_autofree char *name = NULL;
        for (guint j = 0; j < link->opens->len && !still_open; j++)
            still_open = g_ptr_array_index(link->opens, j) == o;
        if (still_open && o->announced_gen != gen) {
            o->announced_gen = gen;
            name = g_strdup(o->name);
        }
        g_mutex_unlock(&link->opens_lock);
        if (name)
            control_link_call(link, "vdisk.open", args_with_name(name), 0, NULL, NULL);
    }
    g_ptr_array_free(snapshot, TRUE);
}

/* Handles one message; false when the link is to stop. */
static bool handle_msg(struct control_link *link, struct link_msg *m)
{
    g_mutex_lock(&link->lock);
    bool current = link->client && m->gen == link->gen;
    g_mutex_unlock(&link->lock);
    switch (m->kind) {
    case LINK_MSG_STOP:
        return false;
    case LINK_MSG_EVENT:
        if (current)
            handle_event(link, m->event, m->args);
        return true;
    case LINK_MSG_CLOSED:
        if (current) {
            g_warning("lost the connection to ndfsd at %s; serving I/O and reconnecting",
                      link->socket_path);
            drop_client(link);
            /* nobody will resume what ndfsd suspended */
            resume_all(link);
        }
        return true;
    }
    return true;
}

static gpointer link_thread(gpointer data)
{
    struct control_link *link = data;
    unsigned backoff_ms = BACKOFF_FIRST_MS;
    bool failing = false;
    for (;;) {
        g_mutex_lock(&link->lock);
        bool connected = link->client != NULL;
        g_mutex_unlock(&link->lock);
        struct link_msg *m;
        if (!connected) {
            g_autofree char *errmsg = NULL;
            if (connect_and_sync(link, &errmsg) == 0) {
                if (failing)
                    g_message("reconnected to ndfsd at %s", link->socket_path);
                failing = false;
                backoff_ms = BACKOFF_FIRST_MS;
                announce_all_opens(link);
                nodes_changed(link);
                mapping_changed(link);
                continue;
            }
            if (!failing)
                g_warning("cannot reach ndfsd at %s: %s; retrying", link->socket_path, errmsg);
            failing = true;
            m = g_async_queue_timeout_pop(link->queue, (guint64)backoff_ms * 1000);
            backoff_ms = MIN(backoff_ms * 2, BACKOFF_MAX_MS);
            if (!m)
                continue;
        } else {
            m = g_async_queue_pop(link->queue);
        }
        bool go_on = handle_msg(link, m);
        link_msg_free(m);
        if (!go_on)
            break;
    }
    drop_client(link);
    return NULL;
}

int control_link_start(struct control_link *link, struct fuse_session *se)
{
    link->se = se;
    GError *err = NULL;
    link->thread = g_thread_try_new("ndfs-link", link_thread, link, &err);
    if (!link->thread) {
        g_warning("cannot start the ndfsd link thread: %s", err->message);
        g_error_free(err);
        return -EAGAIN;
    }
    return 0;
}

void control_link_free(struct control_link *link)
{
    if (!link)
        return;
    if (link->thread) {
        g_mutex_lock(&link->lock);
        link->stopping = true;
        g_cond_broadcast(&link->changed);
        g_mutex_unlock(&link->lock);
        push_msg(link, LINK_MSG_STOP, 0, NULL, NULL);
        g_thread_join(link->thread);
    } else {
        drop_client(link);
    }
    g_async_queue_unref(link->queue);
    g_ptr_array_free(link->opens, TRUE);
    g_mutex_clear(&link->opens_lock);
    g_mutex_clear(&link->cb_lock);
    g_cond_clear(&link->changed);
    g_mutex_clear(&link->lock);
    g_free(link->node_name);
    g_free(link->key_file);
    g_free(link->socket_path);
    g_free(link);
}

char *control_link_key_file(struct control_link *link)
{
    g_mutex_lock(&link->lock);
    char *path = g_strdup(link->key_file ? link->key_file : "");
    g_mutex_unlock(&link->lock);
    return path;
}

uint64_t control_link_epoch(struct control_link *link)
{
    g_mutex_lock(&link->lock);
    uint64_t epoch = link->epoch;
    g_mutex_unlock(&link->lock);
    return epoch;
}

void control_link_set_callbacks(struct control_link *link, const struct control_link_callbacks *cb,
                                void *data)
{
    g_mutex_lock(&link->cb_lock);
    if (cb)
        link->cb = *cb;
    else
        memset(&link->cb, 0, sizeof(link->cb));
    link->cb_data = data;
    g_mutex_unlock(&link->cb_lock);
}

bool control_link_lease_valid(struct control_link *link)
{
    uint64_t expiry = atomic_load_explicit(&link->lease_expiry_ns, memory_order_relaxed);
    if (expiry == UINT64_MAX)
        return true;
    return ndfs_mono_ns() < expiry;
}

uint64_t control_link_io_timeout_ms(struct control_link *link)
{
    return atomic_load(&link->io_timeout_ms);
}

unsigned control_link_poll_us(struct control_link *link)
{
    return atomic_load(&link->poll_us);
}
