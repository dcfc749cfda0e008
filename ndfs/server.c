/* ndfsd's control socket: listener, connections, framing. */
#define G_LOG_DOMAIN "ndfs-server"

#include "server.h"

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ndfs/membership.h>

#include "cluster.h"
#include "commands.h"
#include "control.h"
#include "reconfig.h"

/* A client that does not read its events is dropped rather than letting
 * ndfsd's memory grow without bound. */
#define CONN_MAX_WRITE_QUEUE (16u << 20)

struct conn_write {
    uv_write_t req;
    struct ndfs_conn *conn;
    GBytes *frame;
};

void ndfs_conn_ref(struct ndfs_conn *c)
{
    c->refs++;
}

void ndfs_conn_unref(struct ndfs_conn *c)
{
    g_assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    /* not closing: the server has not stopped, so it is still there */
    if (c->remote_peer != NULL && !c->closing)
        c->server->remote_conns = g_list_remove(c->server->remote_conns, c);
    g_byte_array_unref(c->inbuf);
    g_hash_table_unref(c->open_counts);
    g_hash_table_unref(c->io_states);
    g_free(c->remote_peer);
    g_free(c);
}

static void conn_on_close(uv_handle_t *handle)
{
    struct ndfs_conn *c = handle->data;
    ndfs_conn_unref(c);
}

static void conn_close(struct ndfs_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->server->conns = g_list_remove(c->server->conns, c);
    /* a mount that goes acks nothing any more */
    if (c->server->reconfig != NULL)
        ndfs_reconfig_conn_closed(c->server->reconfig, c);
    /* its opens and I/O states end with it */
    g_hash_table_remove_all(c->open_counts);
    g_hash_table_remove_all(c->io_states);
    uv_close((uv_handle_t *)&c->pipe, conn_on_close);
}

static void conn_on_write(uv_write_t *req, int status)
{
    struct conn_write *w = req->data;
    struct ndfs_conn *c = w->conn;

    if (status < 0 && status != UV_ECANCELED && !c->closing) {
        g_debug("control: write to client pid %d failed: %s", (int)c->peer.pid,
                uv_strerror(status));
        conn_close(c);
    }
    g_bytes_unref(w->frame);
    g_free(w);
    ndfs_conn_unref(c);
}

/* Takes ownership of frame. */
static void conn_send(struct ndfs_conn *c, GBytes *frame)
{
    if (c->closing) {
        g_bytes_unref(frame);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > CONN_MAX_WRITE_QUEUE) {
        g_warning("control: dropped client pid %d uid %u: it does not read its messages",
                  (int)c->peer.pid, (unsigned)c->peer.uid);
        g_bytes_unref(frame);
        conn_close(c);
        return;
    }
    struct conn_write *w = g_new0(struct conn_write, 1);
    gsize size;
    const void *data = g_bytes_get_data(frame, &size);
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)size);
    w->conn = c;
    w->frame = frame;
    w->req.data = w;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, conn_on_write);
    if (rc < 0) {
        g_debug("control: write to client pid %d failed: %s", (int)c->peer.pid, uv_strerror(rc));
        g_bytes_unref(frame);
        g_free(w);
        conn_close(c);
        return;
    }
    ndfs_conn_ref(c);
}

void ndfs_conn_reply(struct ndfs_conn *c, uint64_t id, int status, const char *message,
                     GVariant *result)
{
    if (result == NULL)
        result = g_variant_new("a{sv}", NULL);
    g_variant_ref_sink(result);
    if (c->remote_peer != NULL) {
        if (!c->closing && c->server->cluster != NULL)
            ndfs_cluster_reply(c->server->cluster, c->remote_peer, id, status, message, result);
        g_variant_unref(result);
        return;
    }
    if (c->closing) {
        g_variant_unref(result);
        return;
    }
    GBytes *frame =
        ndfs_control_frame(NDFS_CONTROL_RESPONSE, g_variant_new("(tis@a{sv})", id, (gint32)status,
                                                                message ? message : "", result));
    g_variant_unref(result);
    if (frame == NULL) {
        /* only a result can be this large, e.g. a very long vdisk list */
        frame = ndfs_control_frame(NDFS_CONTROL_RESPONSE,
                                   g_variant_new("(tis@a{sv})", id, (gint32)-EMSGSIZE,
                                                 "the response is larger than the protocol allows",
                                                 g_variant_new("a{sv}", NULL)));
        g_assert(frame != NULL);
    }
    conn_send(c, frame);
}

void ndfs_conn_reply_error(struct ndfs_conn *c, uint64_t id, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ndfs_conn_reply(c, id, status, message, NULL);
}

void ndfs_server_broadcast(struct ndfs_server *s, const char *event, GVariant *args)
{
    g_variant_ref_sink(args);
    GBytes *frame = ndfs_control_frame(NDFS_CONTROL_EVENT, g_variant_new("(s@a{sv})", event, args));
    g_variant_unref(args);
    if (frame == NULL) {
        g_warning("control: event %s too large to send", event);
        return;
    }
    /* conn_send may drop a slow watcher from the list: walk a copy */
    GList *conns = g_list_copy(s->conns);
    for (GList *l = conns; l != NULL; l = l->next) {
        struct ndfs_conn *c = l->data;
        if (c->watcher)
            conn_send(c, g_bytes_ref(frame));
    }
    g_list_free(conns);
    g_bytes_unref(frame);
}

unsigned ndfs_server_open_count(struct ndfs_server *s, const char *name, unsigned *mounts)
{
    unsigned total = 0, holders = 0;
    for (GList *l = s->conns; l != NULL; l = l->next) {
        struct ndfs_conn *c = l->data;
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(c->open_counts, name));
        total += n;
        holders += n > 0;
    }
    if (mounts != NULL)
        *mounts = holders;
    return total;
}

void ndfs_io_state_free(struct ndfs_io_state *st)
{
    if (st == NULL)
        return;
    g_free(st->blocked);
    g_free(st);
}

static uint32_t add_saturated(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

void ndfs_server_io_summary(struct ndfs_server *s, const char *name, uint64_t id,
                            struct ndfs_io_summary *out)
{
    *out = (struct ndfs_io_summary){.blocked = ""};
    int64_t now_us = g_get_monotonic_time();
    for (GList *l = s->conns; l != NULL; l = l->next) {
        struct ndfs_conn *c = l->data;
        const struct ndfs_io_state *st = g_hash_table_lookup(c->io_states, name);
        if (st == NULL || st->id != id)
            continue;
        out->pending = add_saturated(out->pending, st->pending);
        out->in_flight = add_saturated(out->in_flight, st->in_flight);
        if (out->blocked[0] == '\0' && st->blocked[0] != '\0')
            out->blocked = st->blocked;
        /* a blocked mount reports at most once a second, and again when
         * blocked changes: its oldest request still waits meanwhile */
        uint64_t waiting_ms = st->waiting_ms;
        if (st->blocked[0] != '\0' && now_us > st->reported_us)
            waiting_ms += (uint64_t)(now_us - st->reported_us) / 1000u;
        out->waiting_ms = MAX(out->waiting_ms, waiting_ms);
    }
}

uint64_t ndfs_server_lease_expiry_ns(struct ndfs_server *s)
{
    if (s->lease_known)
        return s->lease_expiry_ns;
    if (s->membership != NULL)
        return ndfs_membership_lease_expiry_ns(s->membership);
    return s->cluster == NULL ? UINT64_MAX : 0;
}

void ndfs_server_epoch_changed(struct ndfs_server *s, uint64_t epoch)
{
    if (s->epoch == epoch)
        return;
    s->epoch = epoch;
    if (s->stopping)
        return;
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "epoch", "t", (guint64)epoch);
    ndfs_server_broadcast(s, "epoch", g_variant_dict_end(&d));
}

void ndfs_server_lease_changed(struct ndfs_server *s, uint64_t expiry_ns)
{
    s->lease_known = true;
    s->lease_expiry_ns = expiry_ns;
    if (s->stopping)
        return;
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "expiry-ns", "t", (guint64)expiry_ns);
    ndfs_server_broadcast(s, "lease", g_variant_dict_end(&d));
}

void ndfs_server_set_io_timeout(struct ndfs_server *s, uint64_t io_timeout_ms)
{
    s->io_timeout_ms = io_timeout_ms;
}

void ndfs_server_set_master(struct ndfs_server *s, struct ndfs_master *m)
{
    s->master = m;
}

void ndfs_server_set_poll_us(struct ndfs_server *s, unsigned poll_us)
{
    s->poll_us = poll_us;
}

static void conn_protocol_error(struct ndfs_conn *c, const char *what)
{
    g_warning("control: dropped client pid %d uid %u: %s", (int)c->peer.pid, (unsigned)c->peer.uid,
              what);
    conn_close(c);
}

/* Runs every complete frame in c->inbuf. */
static void conn_process(struct ndfs_conn *c)
{
    while (!c->closing && c->inbuf->len >= NDFS_CONTROL_HEADER_SIZE) {
        struct ndfs_control_header h;
        int rc = ndfs_control_header_decode(c->inbuf->data, &h);
        if (rc < 0) {
            g_autofree char *what = g_strdup_printf("bad frame header (%s)", g_strerror(-rc));
            conn_protocol_error(c, what);
            return;
        }
        if (h.kind != NDFS_CONTROL_REQUEST) {
            conn_protocol_error(c, "sent a frame that is not a request");
            return;
        }
        size_t frame_len = NDFS_CONTROL_HEADER_SIZE + (size_t)h.length;
        if (c->inbuf->len < frame_len)
            return;
        GVariant *body = ndfs_control_body_decode(
            NDFS_CONTROL_REQUEST, c->inbuf->data + NDFS_CONTROL_HEADER_SIZE, h.length);
        if (body == NULL) {
            conn_protocol_error(c, "malformed request body");
            return;
        }
        guint64 id;
        const char *command;
        GVariant *args;
        g_variant_get(body, "(t&s@a{sv})", &id, &command, &args);
        ndfs_commands_dispatch(c, id, command, args);
        g_variant_unref(args);
        g_variant_unref(body);
        g_byte_array_remove_range(c->inbuf, 0, (guint)frame_len);
    }
}

static void conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct ndfs_conn *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->readbuf, sizeof(c->readbuf));
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct ndfs_conn *c = stream->data;

    if (nread < 0) {
        if (nread != UV_EOF)
            g_debug("control: read from client pid %d: %s", (int)c->peer.pid,
                    uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    g_byte_array_append(c->inbuf, (const guint8 *)buf->base, (guint)nread);
    /* the header decoder refuses lengths over the maximum, so this only
     * grows to one frame plus one read; the ref keeps c while handlers
     * answer (a failed write closes it) */
    ndfs_conn_ref(c);
    conn_process(c);
    ndfs_conn_unref(c);
}

static void server_on_connection(uv_stream_t *listener, int status)
{
    struct ndfs_server *s = listener->data;

    if (status < 0) {
        /* e.g. out of fds: say it once, not once per client */
        if (status != s->last_accept_error)
            g_warning("control: accept on %s failed: %s", s->socket_path, uv_strerror(status));
        s->last_accept_error = status;
        return;
    }
    s->last_accept_error = 0;
    struct ndfs_conn *c = g_new0(struct ndfs_conn, 1);
    c->server = s;
    c->refs = 1; /* the handle's */
    c->inbuf = g_byte_array_new();
    c->open_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    c->io_states =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)ndfs_io_state_free);
    c->peer.pid = -1;
    c->peer.uid = (uid_t)-1;
    c->peer.gid = (gid_t)-1;
    int rc = uv_pipe_init(s->loop, &c->pipe, 0);
    if (rc < 0) {
        g_warning("control: cannot accept a client: %s", uv_strerror(rc));
        ndfs_conn_unref(c);
        return;
    }
    c->pipe.data = c;
    s->conns = g_list_prepend(s->conns, c);
    rc = uv_accept(listener, (uv_stream_t *)&c->pipe);
    if (rc < 0) {
        g_warning("control: cannot accept a client: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    uv_os_fd_t fd;
    rc = uv_fileno((uv_handle_t *)&c->pipe, &fd);
    if (rc == 0)
        rc = ndfs_peer_from_socket(fd, &c->peer);
    else
        rc = -EBADF;
    if (rc < 0) {
        g_warning("control: rejected a client whose credentials cannot be read: %s",
                  g_strerror(-rc));
        conn_close(c);
        return;
    }
    rc = uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_on_read);
    if (rc < 0) {
        g_warning("control: cannot read from client pid %d: %s", (int)c->peer.pid, uv_strerror(rc));
        conn_close(c);
    }
}

int ndfs_server_probe_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    int err = errno;
    close(fd);
    if (rc == 0)
        return 1;
    if (err == ECONNREFUSED)
        return 0;
    return -err;
}

static void server_on_listener_close(uv_handle_t *handle)
{
    g_free(handle);
}

int ndfs_server_new(uv_loop_t *loop, struct ndfs_ccd *ccd, const char *node_name,
                    const char *socket_path, const char *admin_group, struct ndfs_server **out,
                    char **errmsg)
{
    *out = NULL;
    *errmsg = NULL;

    gid_t admin_gid = (gid_t)-1;
    if (admin_group != NULL && admin_group[0] != '\0') {
        errno = 0;
        struct group *gr = getgrnam(admin_group);
        if (gr == NULL) {
            *errmsg = g_strdup_printf("admin-group \"%s\" does not exist", admin_group);
            return -ENOENT;
        }
        admin_gid = gr->gr_gid;
    }

    struct sockaddr_un addr;
    if (strlen(socket_path) >= sizeof(addr.sun_path)) {
        *errmsg = g_strdup_printf("control socket %s: path too long (at most %zu bytes)",
                                  socket_path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    g_autofree char *dir = g_path_get_dirname(socket_path);
    if (g_mkdir_with_parents(dir, 0755) < 0) {
        int err = errno;
        *errmsg = g_strdup_printf("cannot create %s: %s", dir, g_strerror(err));
        return -err;
    }
    int rc = ndfs_server_probe_socket(socket_path);
    if (rc == 1) {
        *errmsg = g_strdup_printf("control socket %s is in use by another process", socket_path);
        return -EADDRINUSE;
    }
    if (rc < 0) {
        *errmsg = g_strdup_printf("control socket %s: %s", socket_path,
                                  rc == -ENOTSOCK ? "exists and is not a socket" : g_strerror(-rc));
        return rc;
    }
    if (unlink(socket_path) < 0 && errno != ENOENT) {
        int err = errno;
        *errmsg =
            g_strdup_printf("cannot remove stale socket %s: %s", socket_path, g_strerror(err));
        return -err;
    }

    struct ndfs_server *s = g_new0(struct ndfs_server, 1);
    s->loop = loop;
    s->ccd = ccd;
    s->node_name = g_strdup(node_name);
    s->socket_path = g_strdup(socket_path);
    s->admin_group = admin_gid == (gid_t)-1 ? NULL : g_strdup(admin_group);
    s->admin_gid = admin_gid;
    s->vdisk_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    s->pending_paths = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    s->key_file = g_strdup("");
    *out = s;
    return 0;
}

int ndfs_server_listen(struct ndfs_server *s, char **errmsg)
{
    const char *socket_path = s->socket_path;
    const char *step = "";
    int rc;

    *errmsg = NULL;
    s->listener = g_new0(uv_pipe_t, 1);
    rc = uv_pipe_init(s->loop, s->listener, 0);
    if (rc < 0) {
        g_free(s->listener);
        s->listener = NULL;
        step = "cannot create";
        goto fail;
    }
    s->listener->data = s;
    /* bind creates the file: no moment with a wider mode than 0660 */
    mode_t old_umask = umask(0117);
    rc = uv_pipe_bind(s->listener, socket_path);
    umask(old_umask);
    if (rc < 0) {
        step = "cannot bind";
        goto fail;
    }
    s->socket_created = true;
    if (chmod(socket_path, 0660) < 0) {
        rc = -errno;
        step = "cannot chmod";
        goto fail;
    }
    if (s->admin_gid != (gid_t)-1 && chown(socket_path, (uid_t)-1, s->admin_gid) < 0) {
        rc = -errno;
        step = "cannot chgrp";
        goto fail;
    }
    rc = ndfs_commands_watch_start(s);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot read the vdisks table: %s", ndfs_ccd_errmsg(s->ccd));
        goto fail_quiet;
    }
    rc = uv_listen((uv_stream_t *)s->listener, 64, server_on_connection);
    if (rc < 0) {
        step = "cannot listen on";
        goto fail;
    }
    return 0;

fail:
    *errmsg = g_strdup_printf("%s control socket %s: %s", step, socket_path, g_strerror(-rc));
fail_quiet:
    ndfs_server_stop(s);
    return rc;
}

void ndfs_server_stop(struct ndfs_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    ndfs_commands_watch_stop(s);
    if (s->listener != NULL) {
        uv_close((uv_handle_t *)s->listener, server_on_listener_close);
        s->listener = NULL;
    }
    while (s->conns != NULL)
        conn_close(s->conns->data);
    /* a forwarded change still waiting (on other nodes) answers nothing more:
     * its answer would go through this server once it is freed */
    for (GList *l = s->remote_conns; l != NULL; l = l->next)
        ((struct ndfs_conn *)l->data)->closing = true;
    g_clear_pointer(&s->remote_conns, g_list_free);
    if (s->socket_created) {
        s->socket_created = false;
        if (unlink(s->socket_path) < 0 && errno != ENOENT)
            g_warning("cannot remove control socket %s: %s", s->socket_path, g_strerror(errno));
    }
}

void ndfs_server_set_cluster(struct ndfs_server *s, struct ndfs_cluster *cluster,
                             const char *key_file)
{
    s->cluster = cluster;
    g_free(s->key_file);
    s->key_file = g_strdup(key_file ? key_file : "");
}

void ndfs_server_set_membership(struct ndfs_server *s, struct ndfs_membership *m)
{
    s->membership = m;
}

void ndfs_server_set_reconfig(struct ndfs_server *s, struct ndfs_reconfig *r)
{
    s->reconfig = r;
}

void ndfs_server_remote_request(struct ndfs_server *s, const char *peer, uint64_t id,
                                const char *command, GVariant *args, uid_t uid, gid_t gid,
                                pid_t pid)
{
    struct ndfs_conn *c = g_new0(struct ndfs_conn, 1);
    c->server = s;
    c->refs = 1;
    c->inbuf = g_byte_array_new();
    c->open_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    c->io_states =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)ndfs_io_state_free);
    c->remote_peer = g_strdup(peer);
    c->peer.pid = pid;
    c->peer.uid = uid;
    c->peer.gid = gid;
    /* a stopping server answers nothing more: the peer times out */
    c->closing = s->stopping;
    if (!c->closing) {
        s->remote_conns = g_list_prepend(s->remote_conns, c);
        ndfs_commands_dispatch(c, id, command, args);
    }
    ndfs_conn_unref(c);
}

void ndfs_server_free(struct ndfs_server *s)
{
    if (s == NULL)
        return;
    g_assert(s->conns == NULL);
    g_hash_table_unref(s->vdisk_ids);
    g_hash_table_unref(s->pending_paths);
    g_free(s->node_name);
    g_free(s->socket_path);
    g_free(s->admin_group);
    g_free(s->key_file);
    g_free(s);
}
