#define G_LOG_DOMAIN "ndfs-driver"

#include "driver.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/transport.h>

#include "io_proto.h"
#include "localio.h"
#include "pending.h"

/* Unsent requests (no route yet, queue full, master without lease) are
 * retried this often. */
#define TICK_MS 200
/* node.list is asked at most this often. */
#define REFRESH_INTERVAL_US (1000 * 1000)

/* One request of a FUSE thread; its parts are pending entries. */
struct drv_request {
    uint8_t op;
    uint16_t flags;
    uint64_t vdisk_id;
    char node[NDFS_NODE_NAME_MAX + 1];
    uint64_t offset;
    size_t length;
    /* write: the bytes to write; read in parts: the bytes read (malloc'd);
     * read in one part: NULL (the reply's data is handed on as it is) */
    void *data;
    unsigned parts_left;
    int status;       /* the first error, or 0 */
    size_t done_upto; /* bytes transferred from offset on: a short part ends it */
    ndfs_driver_done_cb done;
    void *opaque;
};

struct node_addrs {
    char *name;
    char **addresses;
};

struct ndfs_driver {
    char *node;
    uint8_t *key;
    size_t key_len;
    struct control_link *link;
    uint64_t epoch;
    size_t part_size;
    GThread *thread;

    GMutex lock;
    GCond started_cond;
    bool started;       /* protected by lock */
    int start_status;   /* protected by lock */
    char *start_errmsg; /* protected by lock */
    GQueue incoming;    /* struct drv_request *; protected by lock */
    bool stopping;      /* protected by lock */
    bool refresh_asked; /* protected by lock */

    /* the loop thread's */
    uv_loop_t loop;
    /* Other threads send it only under lock and only while !stopping: the
     * loop closes it after it saw stopping, and ndfs_driver_free() frees d
     * right after, so a send outside the lock could touch freed memory. */
    uv_async_t wake;
    uv_timer_t tick;
    struct ndfs_transport *t;
    struct pending_table *pending;
    uint64_t next_id;
    size_t unsent;
    bool closing;
    bool flushing; /* in flush_unsent: a nested call (from an event) only asks again */
    bool flush_again;
    bool refresh_wanted;
    bool refreshing;
    gint64 last_refresh_us;
    uv_work_t refresh_req;
    GPtrArray *refresh_nodes; /* struct node_addrs *, from the worker */
    int refresh_status;
    char *refresh_errmsg;
    bool refresh_logged;
    GHashTable *peers;   /* names given to the transport */
    GHashTable *waiting; /* nodes logged as unreachable */
};

static void node_addrs_free(gpointer p)
{
    struct node_addrs *n = p;
    g_free(n->name);
    g_strfreev(n->addresses);
    g_free(n);
}

/* read: what was read (r->data, or the only part's reply data). */
static void finish_request(struct ndfs_driver *d, struct drv_request *r, const void *read)
{
    (void)d;
    int status = r->status;
    if (status == 0 && r->op != NDFS_IO_FSYNC)
        status = (int)r->done_upto;
    r->done(r->opaque, status, r->op == NDFS_IO_READ && status > 0 ? read : NULL);
    free(r->data);
    g_free(r);
}

/* A part was answered with status (bytes or -errno) and, for a read, data. */
static void part_done(struct ndfs_driver *d, const struct pending_entry *e, int status,
                      const void *data)
{
    struct drv_request *r = e->owner;
    if (status < 0) {
        if (r->status == 0)
            r->status = status;
    } else if (r->op != NDFS_IO_FSYNC) {
        size_t at = (size_t)(e->offset - r->offset);
        if (r->op == NDFS_IO_READ && status > 0 && r->data)
            memcpy((char *)r->data + at, data, (size_t)status);
        if ((uint32_t)status < e->length)
            r->done_upto = MIN(r->done_upto, at + (size_t)status);
    }
    if (--r->parts_left == 0)
        finish_request(d, r, r->data ? r->data : data);
}

/* Says once per node that its I/O waits. */
static void log_waiting(struct ndfs_driver *d, const char *node, const char *why)
{
    if (g_hash_table_contains(d->waiting, node))
        return;
    g_hash_table_add(d->waiting, g_strdup(node));
    g_warning("node \"%s\" is not reachable (%s): I/O to the vdisks it masters waits", node, why);
}

static void maybe_refresh(struct ndfs_driver *d);

struct flush_state {
    struct ndfs_driver *d;
    GHashTable *blocked; /* peers that refused this round: later entries wait (order) */
    GPtrArray *failed;   /* ids of entries that can never be sent */
};

static int send_entry(struct pending_entry *e, void *data)
{
    struct flush_state *st = data;
    struct ndfs_driver *d = st->d;
    if (e->sent || g_hash_table_contains(st->blocked, e->peer))
        return 0;
    struct ndfs_io_request req = {
        .op = e->op,
        .flags = e->flags,
        .length = e->length,
        .vdisk_id = e->vdisk_id,
        .offset = e->offset,
    };
    uint8_t ctl[NDFS_IO_REQUEST_SIZE];
    ndfs_io_request_encode(&req, ctl);
    bool write = e->op == NDFS_IO_WRITE;
    e->epoch = d->epoch;
    int rc = ndfs_transport_send(d->t, e->peer, NDFS_CHANNEL_IO, e->id, e->epoch, ctl, sizeof(ctl),
                                 write ? e->data : NULL, write ? e->length : 0);
    if (rc == 0) {
        e->sent = true;
        d->unsent--;
        return 0;
    }
    if (rc == -ENOENT) {
        log_waiting(d, e->peer, "no address known yet");
        d->refresh_wanted = true;
    } else if (rc == -EMSGSIZE || rc == -EINVAL) {
        g_warning("vdisk %" G_GUINT64_FORMAT ": cannot send a %s to \"%s\": %s", e->vdisk_id,
                  ndfs_io_op_name(e->op), e->peer, g_strerror(-rc));
        g_ptr_array_add(st->failed, g_memdup2(&e->id, sizeof(e->id)));
        return 0;
    }
    /* -ENOBUFS and the like: try again at the next tick, in order */
    g_hash_table_add(st->blocked, g_strdup(e->peer));
    return 0;
}

static void flush_once(struct ndfs_driver *d)
{
    struct flush_state st = {d, g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL),
                             g_ptr_array_new_with_free_func(g_free)};
    pending_table_foreach(d->pending, send_entry, &st);
    for (guint i = 0; i < st.failed->len; i++) {
        struct pending_entry e;
        if (pending_table_complete(d->pending, *(uint64_t *)st.failed->pdata[i], &e) == 0) {
            d->unsent--;
            part_done(d, &e, -EIO, NULL);
            g_free(e.peer);
        }
    }
    g_hash_table_destroy(st.blocked);
    g_ptr_array_free(st.failed, TRUE);
}

/* Sends every unsent entry, oldest first. */
static void flush_unsent(struct ndfs_driver *d)
{
    if (d->flushing) {
        d->flush_again = true; /* the transport called back while we send */
        return;
    }
    d->flushing = true;
    do {
        d->flush_again = false;
        if (d->unsent > 0 && !d->closing)
            flush_once(d);
    } while (d->flush_again);
    d->flushing = false;
    if (d->refresh_wanted)
        maybe_refresh(d);
}

static void start_request(struct ndfs_driver *d, struct drv_request *r)
{
    /* one part (the usual case) answers with the reply's own bytes */
    if (r->op == NDFS_IO_READ && r->length > d->part_size && !(r->data = malloc(r->length))) {
        r->status = -ENOMEM;
        finish_request(d, r, NULL);
        return;
    }
    r->done_upto = r->length;
    size_t at = 0;
    do {
        size_t len = r->op == NDFS_IO_FSYNC ? 0 : MIN(d->part_size, r->length - at);
        struct pending_entry e = {
            .id = ++d->next_id,
            .vdisk_id = r->vdisk_id,
            .op = r->op,
            .flags = r->flags,
            .offset = r->op == NDFS_IO_FSYNC ? 0 : r->offset + at,
            .length = (uint32_t)len,
            .data = r->op == NDFS_IO_WRITE ? (const char *)r->data + at : NULL,
            .owner = r,
            .peer = r->node,
        };
        pending_table_add(d->pending, &e, NULL);
        r->parts_left++;
        d->unsent++;
        at += len;
    } while (at < r->length);
    flush_unsent(d);
}

/* A reply from a master. */
static void on_message(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    struct ndfs_driver *d = data;
    struct pending_entry *e = pending_table_find(d->pending, msg->request_id);
    struct ndfs_io_reply reply;
    if (!e || !e->sent || strcmp(e->peer, msg->peer) != 0) {
        /* an answer to a request that was answered (or resent) already */
        ndfs_transport_release(t, msg);
        return;
    }
    int status;
    int rc = ndfs_io_reply_decode(msg->control, msg->control_len, &reply);
    if (rc < 0) {
        g_warning("node \"%s\" sent a malformed I/O reply (%s)", msg->peer, g_strerror(-rc));
        status = -EIO;
    } else {
        status = reply.status;
    }
    if (status == -ESTALE) {
        /* the master has no lease now: wait for it, as for a lost path */
        e->sent = false;
        d->unsent++;
        log_waiting(d, msg->peer, "its lease ran out");
        ndfs_transport_release(t, msg);
        return;
    }
    bool read = e->op == NDFS_IO_READ;
    if (status >= 0 && ((uint32_t)status > e->length || (e->op == NDFS_IO_FSYNC && status) ||
                        msg->data_len != (read ? (size_t)status : 0))) {
        g_warning("node \"%s\" answered a %s of %u bytes with %d and %zu bytes of data", msg->peer,
                  ndfs_io_op_name(e->op), e->length, status, msg->data_len);
        status = -EIO;
    }
    struct pending_entry done;
    pending_table_complete(d->pending, msg->request_id, &done);
    part_done(d, &done, status, msg->data);
    g_free(done.peer);
    ndfs_transport_release(t, msg);
}

static int mark_unsent(struct pending_entry *e, void *data)
{
    struct ndfs_driver *d = ((void **)data)[0];
    const char *peer = ((void **)data)[1];
    if (e->sent && strcmp(e->peer, peer) == 0) {
        e->sent = false;
        d->unsent++;
    }
    return 0;
}

static int has_peer(struct pending_entry *e, void *data)
{
    return strcmp(e->peer, data) == 0;
}

static void on_event(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev,
                     int link, void *data)
{
    (void)t;
    (void)link;
    struct ndfs_driver *d = data;
    switch (ev) {
    case NDFS_PEER_RESET: {
        /* it restarted and dropped what it had not acknowledged: send again */
        void *args[] = {d, (void *)peer};
        pending_table_foreach(d->pending, mark_unsent, args);
        flush_unsent(d);
        break;
    }
    case NDFS_PEER_UP:
        if (g_hash_table_remove(d->waiting, peer))
            g_message("node \"%s\" is reachable again: its I/O goes on", peer);
        flush_unsent(d);
        break;
    case NDFS_PEER_DOWN:
        if (pending_table_foreach(d->pending, has_peer, (void *)peer))
            log_waiting(d, peer, "its links are down");
        break;
    default:
        break;
    }
}

static void refresh_work(uv_work_t *req)
{
    struct ndfs_driver *d = req->data;
    g_autoptr(GVariant) result = NULL;
    g_autofree char *errmsg = NULL;
    d->refresh_status = control_link_call(d->link, "node.list", NULL, 0, &result, &errmsg);
    d->refresh_nodes = g_ptr_array_new_with_free_func(node_addrs_free);
    if (d->refresh_status < 0) {
        d->refresh_errmsg = g_strdup(errmsg ? errmsg : g_strerror(-d->refresh_status));
        return;
    }
    g_autoptr(GVariant) nodes = g_variant_lookup_value(result, "nodes", G_VARIANT_TYPE("aa{sv}"));
    if (!nodes) {
        d->refresh_status = -EPROTO;
        d->refresh_errmsg = g_strdup("ndfsd answered node.list without a nodes array");
        return;
    }
    for (gsize i = 0; i < g_variant_n_children(nodes); i++) {
        g_autoptr(GVariant) node = g_variant_get_child_value(nodes, i);
        const char *name;
        g_autofree const char **addresses = NULL;
        if (!g_variant_lookup(node, "name", "&s", &name) ||
            !g_variant_lookup(node, "addresses", "^a&s", &addresses) || !addresses[0])
            continue;
        struct node_addrs *n = g_new0(struct node_addrs, 1);
        n->name = g_strdup(name);
        n->addresses = g_strdupv((char **)addresses);
        g_ptr_array_add(d->refresh_nodes, n);
    }
}

static void refresh_done(uv_work_t *req, int status)
{
    (void)status;
    struct ndfs_driver *d = req->data;
    d->refreshing = false;
    if (!d->closing && d->refresh_status < 0) {
        if (!d->refresh_logged)
            g_message("cannot read the cluster's nodes from ndfsd: %s; retrying",
                      d->refresh_errmsg);
        d->refresh_logged = true;
        d->refresh_wanted = true; /* the tick asks again */
    } else if (!d->closing) {
        d->refresh_logged = false;
        for (guint i = 0; i < d->refresh_nodes->len; i++) {
            struct node_addrs *n = d->refresh_nodes->pdata[i];
            int rc = ndfs_transport_peer_set(d->t, n->name, (const char *const *)n->addresses);
            if (rc < 0)
                g_warning("node \"%s\": cannot use its addresses: %s", n->name, g_strerror(-rc));
            else if (!g_hash_table_contains(d->peers, n->name))
                g_hash_table_add(d->peers, g_strdup(n->name));
        }
    }
    g_ptr_array_free(d->refresh_nodes, TRUE);
    d->refresh_nodes = NULL;
    g_clear_pointer(&d->refresh_errmsg, g_free);
    flush_unsent(d);
}

static void maybe_refresh(struct ndfs_driver *d)
{
    if (d->refreshing || d->closing)
        return;
    gint64 now = g_get_monotonic_time();
    if (d->last_refresh_us && now - d->last_refresh_us < REFRESH_INTERVAL_US)
        return; /* refresh_wanted stays set: the tick comes back */
    d->refresh_wanted = false;
    d->last_refresh_us = now;
    d->refreshing = true;
    d->refresh_req.data = d;
    int rc = uv_queue_work(&d->loop, &d->refresh_req, refresh_work, refresh_done);
    if (rc < 0) {
        d->refreshing = false;
        d->refresh_wanted = true;
    }
}

static void on_tick(uv_timer_t *timer)
{
    struct ndfs_driver *d = timer->data;
    flush_unsent(d);
    if (d->refresh_wanted)
        maybe_refresh(d);
}

static int first_entry(struct pending_entry *e, void *data)
{
    *(uint64_t *)data = e->id;
    return 1;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_transport_closed(void *data)
{
    struct ndfs_driver *d = data;
    d->t = NULL;
    uv_close((uv_handle_t *)&d->wake, on_closed);
    uv_close((uv_handle_t *)&d->tick, on_closed);
}

/* Answers everything -EIO and closes the loop's handles. */
static void shut_down(struct ndfs_driver *d)
{
    if (d->closing)
        return;
    d->closing = true;
    uv_timer_stop(&d->tick);
    uint64_t id;
    while (pending_table_foreach(d->pending, first_entry, &id)) {
        struct pending_entry e;
        pending_table_complete(d->pending, id, &e);
        part_done(d, &e, -EIO, NULL);
        g_free(e.peer);
    }
    ndfs_transport_close(d->t, on_transport_closed, d);
}

static void on_wake(uv_async_t *async)
{
    struct ndfs_driver *d = async->data;
    GQueue work = G_QUEUE_INIT;
    g_mutex_lock(&d->lock);
    work = d->incoming;
    g_queue_init(&d->incoming);
    bool stop = d->stopping;
    if (d->refresh_asked)
        d->refresh_wanted = true;
    d->refresh_asked = false;
    g_mutex_unlock(&d->lock);
    struct drv_request *r;
    while ((r = g_queue_pop_head(&work))) {
        if (stop) {
            r->status = -EIO;
            finish_request(d, r, NULL);
        } else {
            start_request(d, r);
        }
    }
    if (stop)
        shut_down(d);
    else if (d->refresh_wanted)
        maybe_refresh(d);
}

static void signal_started(struct ndfs_driver *d, int status, char *errmsg)
{
    g_mutex_lock(&d->lock);
    d->started = true;
    d->start_status = status;
    d->start_errmsg = errmsg;
    g_cond_broadcast(&d->started_cond);
    g_mutex_unlock(&d->lock);
}

/* Sets up the transport and the handles on the loop thread. */
static int loop_setup(struct ndfs_driver *d, char **errmsg)
{
    g_autofree char *name = g_strdup_printf("%s.mount-%ld", d->node, (long)getpid());
    const char *const no_listen[] = {NULL};
    struct ndfs_transport_config cfg = {
        .name = name,
        .listen = no_listen,
        .key = d->key,
        .key_len = d->key_len,
    };
    int rc = ndfs_transport_new(&d->loop, &cfg, &d->t, errmsg);
    if (rc < 0)
        return rc;
    if ((rc = ndfs_transport_start(d->t, errmsg)) < 0 ||
        (rc = ndfs_transport_register(d->t, NDFS_CHANNEL_IO, on_message, d)) < 0) {
        if (!*errmsg)
            *errmsg = g_strdup_printf("cannot register the I/O channel: %s", g_strerror(-rc));
        ndfs_transport_close(d->t, NULL, NULL);
        d->t = NULL;
        return rc;
    }
    if ((rc = uv_async_init(&d->loop, &d->wake, on_wake)) < 0) {
        *errmsg = g_strdup_printf("uv_async_init: %s", uv_strerror(rc));
        ndfs_transport_close(d->t, NULL, NULL);
        d->t = NULL;
        return rc;
    }
    ndfs_transport_set_event_cb(d->t, on_event, d);
    d->wake.data = d;
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static gpointer driver_thread(gpointer data)
{
    struct ndfs_driver *d = data;
    char *errmsg = NULL;
    int rc = uv_loop_init(&d->loop);
    if (rc < 0) {
        signal_started(d, rc, g_strdup_printf("uv_loop_init: %s", uv_strerror(rc)));
        return NULL;
    }
    rc = loop_setup(d, &errmsg);
    if (rc < 0) {
        uv_run(&d->loop, UV_RUN_DEFAULT); /* lets the transport close */
        uv_loop_close(&d->loop);
        signal_started(d, rc, errmsg);
        return NULL;
    }
    d->refresh_wanted = true;
    maybe_refresh(d);
    signal_started(d, 0, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&d->loop) < 0)
        g_warning("the driver's loop still had handles at exit");
    return NULL;
}

static void driver_release(struct ndfs_driver *d)
{
    if (d->pending)
        pending_table_free(d->pending);
    if (d->peers)
        g_hash_table_destroy(d->peers);
    if (d->waiting)
        g_hash_table_destroy(d->waiting);
    g_cond_clear(&d->started_cond);
    g_mutex_clear(&d->lock);
    if (d->key)
        memset(d->key, 0, d->key_len);
    g_free(d->key);
    g_free(d->node);
    g_free(d->start_errmsg);
    g_free(d);
}

int ndfs_driver_new(const struct ndfs_driver_config *cfg, struct ndfs_driver **out, char **errmsg)
{
    struct ndfs_driver *d = g_new0(struct ndfs_driver, 1);
    d->node = g_strdup(cfg->node_name);
    d->key = g_memdup2(cfg->key, cfg->key_len);
    d->key_len = cfg->key_len;
    d->link = cfg->link;
    d->epoch = cfg->epoch;
    d->part_size =
        cfg->part_size && cfg->part_size < NDFS_IO_MAX_LENGTH ? cfg->part_size : NDFS_IO_MAX_LENGTH;
    /* parts of an O_DIRECT request must stay aligned for the master */
    d->part_size = MAX(d->part_size / LOCALIO_BUFFER_ALIGN, 1) * LOCALIO_BUFFER_ALIGN;
    g_mutex_init(&d->lock);
    g_cond_init(&d->started_cond);
    g_queue_init(&d->incoming);
    d->pending = pending_table_new();
    d->peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    d->waiting = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GError *err = NULL;
    d->thread = g_thread_try_new("ndfs-driver", driver_thread, d, &err);
    if (!d->thread) {
        *errmsg = g_strdup_printf("cannot start the driver thread: %s", err->message);
        g_error_free(err);
        driver_release(d);
        return -EAGAIN;
    }
    g_mutex_lock(&d->lock);
    while (!d->started)
        g_cond_wait(&d->started_cond, &d->lock);
    int rc = d->start_status;
    g_mutex_unlock(&d->lock);
    if (rc < 0) {
        g_thread_join(d->thread);
        *errmsg = g_steal_pointer(&d->start_errmsg);
        driver_release(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ndfs_driver_free(struct ndfs_driver *d)
{
    if (!d)
        return;
    g_mutex_lock(&d->lock);
    d->stopping = true;
    uv_async_send(&d->wake);
    g_mutex_unlock(&d->lock);
    g_thread_join(d->thread);
    driver_release(d);
}

void ndfs_driver_refresh_nodes(struct ndfs_driver *d)
{
    g_mutex_lock(&d->lock);
    d->refresh_asked = true;
    if (!d->stopping)
        uv_async_send(&d->wake); /* under the lock: see wake */
    g_mutex_unlock(&d->lock);
}

int ndfs_driver_submit(struct ndfs_driver *d, const char *node, uint64_t vdisk_id, uint8_t op,
                       uint16_t flags, uint64_t offset, size_t length, void *data,
                       ndfs_driver_done_cb done, void *opaque)
{
    if ((op != NDFS_IO_FSYNC && length == 0) || (op == NDFS_IO_WRITE) != (data != NULL) ||
        strlen(node) > NDFS_NODE_NAME_MAX || length > INT32_MAX ||
        (op != NDFS_IO_FSYNC && offset > UINT64_MAX - length)) {
        free(data);
        return -EINVAL;
    }
    struct drv_request *r = g_new0(struct drv_request, 1);
    r->op = op;
    r->flags = flags;
    r->vdisk_id = vdisk_id;
    g_strlcpy(r->node, node, sizeof(r->node));
    r->offset = offset;
    r->length = op == NDFS_IO_FSYNC ? 0 : length;
    r->data = data;
    r->done = done;
    r->opaque = opaque;
    g_mutex_lock(&d->lock);
    bool stopping = d->stopping;
    if (!stopping) {
        g_queue_push_tail(&d->incoming, r);
        uv_async_send(&d->wake); /* under the lock: see wake */
    }
    g_mutex_unlock(&d->lock);
    if (stopping) {
        free(data);
        g_free(r);
        return -ESHUTDOWN;
    }
    return 0;
}
