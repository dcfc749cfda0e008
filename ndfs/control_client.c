/* A blocking, thread-safe control protocol client: callers send requests
 * under a write lock and wait on their own condition; one reader thread
 * matches responses by request id and delivers events. */
#define G_LOG_DOMAIN "ndfs-control"

#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A call waiting for its response. Lives on the caller's stack; the reader
 * touches it only under c->lock and only while it is in c->pending. */
struct pending_call {
    GCond cond;
    bool done;
    int status;
    GVariant *response; /* owned; the "(tisa{sv})" body */
};

struct ndfs_control_client {
    int fd;
    GThread *reader;
    ndfs_control_event_cb event_cb;
    ndfs_control_closed_cb closed_cb;
    void *data;
    atomic_uint_fast64_t next_id;

    GMutex write_lock; /* serializes whole frames on fd */

    GMutex lock;
    GHashTable *pending; /* request id -> struct pending_call *; protected by lock */
    bool closed;         /* connection lost; protected by lock */
    bool closing;        /* _close() started; protected by lock */
};

static guint id_hash(gconstpointer key)
{
    return g_int64_hash(key);
}

static gboolean id_equal(gconstpointer a, gconstpointer b)
{
    return g_int64_equal(a, b);
}

/* 0 on a full read, -ECONNRESET at EOF, -errno on error. */
static int read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Milliseconds left until deadline (monotonic us), -1 for none. */
static int remaining_ms(gint64 deadline)
{
    if (deadline <= 0)
        return -1;
    gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0)
        return 0;
    return (int)MIN((left + 999) / 1000, G_MAXINT);
}

/* Writes all of buf. -ETIMEDOUT when the deadline passes; *sent says how
 * much went out, so the caller knows whether the stream is now torn. */
static int write_full(int fd, const uint8_t *buf, size_t len, gint64 deadline, size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int r = poll(&pfd, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = send(fd, buf + *sent, len - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return errno == EPIPE ? -ECONNRESET : -errno;
        *sent += (size_t)n;
    }
    return 0;
}

/* Marks the connection lost and wakes every waiting call. Caller holds c->lock. */
static void fail_pending_locked(struct ndfs_control_client *c)
{
    GHashTableIter iter;
    gpointer value;

    c->closed = true;
    g_hash_table_iter_init(&iter, c->pending);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        struct pending_call *call = value;
        call->done = true;
        call->status = -ECONNRESET;
        g_cond_signal(&call->cond);
        g_hash_table_iter_remove(&iter);
    }
}

static void deliver_response(struct ndfs_control_client *c, GVariant *body)
{
    guint64 id;
    gint32 status;

    g_variant_get_child(body, 0, "t", &id);
    g_variant_get_child(body, 1, "i", &status);
    g_mutex_lock(&c->lock);
    struct pending_call *call = g_hash_table_lookup(c->pending, &id);
    if (call) {
        g_hash_table_remove(c->pending, &id);
        call->done = true;
        call->status = status;
        call->response = g_variant_ref(body);
        g_cond_signal(&call->cond);
    } else {
        /* the caller timed out and left */
        g_debug("response to request %" G_GUINT64_FORMAT " that nobody waits for", id);
    }
    g_mutex_unlock(&c->lock);
}

static void deliver_event(struct ndfs_control_client *c, GVariant *body)
{
    const char *name;
    g_autoptr(GVariant) args = NULL;

    g_variant_get(body, "(&s@a{sv})", &name, &args);
    if (c->event_cb)
        c->event_cb(c, name, args, c->data);
}

/* Reads one frame and handles it. < 0 when the connection must close. */
static int read_frame(struct ndfs_control_client *c)
{
    uint8_t raw[NDFS_CONTROL_HEADER_SIZE];
    struct ndfs_control_header h;
    int r;

    if ((r = read_full(c->fd, raw, sizeof(raw))) < 0)
        return r;
    if ((r = ndfs_control_header_decode(raw, &h)) < 0) {
        g_warning("control connection: bad frame header: %s", g_strerror(-r));
        return r;
    }
    g_autofree uint8_t *buf = g_malloc(h.length ? h.length : 1);
    if ((r = read_full(c->fd, buf, h.length)) < 0)
        return r;
    g_autoptr(GVariant) body = ndfs_control_body_decode(h.kind, buf, h.length);
    if (!body) {
        g_warning("control connection: malformed body of kind %u", h.kind);
        return -EBADMSG;
    }
    switch (h.kind) {
    case NDFS_CONTROL_RESPONSE: {
        gint32 status;
        g_variant_get_child(body, 1, "i", &status);
        if (status > 0) {
            g_warning("control connection: response with positive status %d", status);
            return -EBADMSG;
        }
        deliver_response(c, body);
        return 0;
    }
    case NDFS_CONTROL_EVENT:
        deliver_event(c, body);
        return 0;
    default:
        g_warning("control connection: the server sent a request");
        return -EBADMSG;
    }
}

static gpointer reader_main(gpointer data)
{
    struct ndfs_control_client *c = data;
    int r;

    while ((r = read_frame(c)) == 0)
        ;
    /* unblock writers too: the stream is unusable from here on */
    shutdown(c->fd, SHUT_RDWR);
    g_mutex_lock(&c->lock);
    fail_pending_locked(c);
    bool notify = !c->closing;
    g_mutex_unlock(&c->lock);
    if (notify) {
        g_debug("control connection lost: %s", g_strerror(-r));
        if (c->closed_cb)
            c->closed_cb(c, c->data);
    }
    return NULL;
}

int ndfs_control_client_connect(const char *path, ndfs_control_event_cb event_cb,
                                ndfs_control_closed_cb closed_cb, void *data,
                                struct ndfs_control_client **out)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    g_autoptr(GError) error = NULL;

    *out = NULL;
    if (!path || strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }

    struct ndfs_control_client *c = g_new0(struct ndfs_control_client, 1);
    c->fd = fd;
    c->event_cb = event_cb;
    c->closed_cb = closed_cb;
    c->data = data;
    g_mutex_init(&c->write_lock);
    g_mutex_init(&c->lock);
    c->pending = g_hash_table_new_full(id_hash, id_equal, g_free, NULL);
    c->reader = g_thread_try_new("ndfs-control", reader_main, c, &error);
    if (!c->reader) {
        g_warning("cannot start the control reader thread: %s", error->message);
        close(fd);
        g_hash_table_unref(c->pending);
        g_mutex_clear(&c->lock);
        g_mutex_clear(&c->write_lock);
        g_free(c);
        return -EAGAIN;
    }
    *out = c;
    return 0;
}

static int local_error(int err, char **errmsg, const char *what)
{
    if (errmsg)
        *errmsg = g_strdup(what ? what : g_strerror(-err));
    return err;
}

/* Sends one request frame. On a torn write the connection is shut down so
 * the reader fails every call, including this one. */
static int send_request(struct ndfs_control_client *c, GBytes *frame, gint64 deadline)
{
    gsize len;
    const uint8_t *buf = g_bytes_get_data(frame, &len);
    size_t sent = 0;

    g_mutex_lock(&c->write_lock);
    int r = write_full(c->fd, buf, len, deadline, &sent);
    if (r < 0 && sent > 0)
        shutdown(c->fd, SHUT_RDWR);
    g_mutex_unlock(&c->write_lock);
    return r;
}

int ndfs_control_client_call(struct ndfs_control_client *c, const char *command, GVariant *args,
                             int timeout_ms, GVariant **result, char **errmsg)
{
    g_autoptr(GVariant) owned_args =
        args ? g_variant_ref_sink(args)
             : g_variant_ref_sink(g_variant_new_array(G_VARIANT_TYPE("{sv}"), NULL, 0));
    gint64 deadline = timeout_ms > 0 ? g_get_monotonic_time() + (gint64)timeout_ms * 1000 : 0;
    struct pending_call call = {.done = false};
    int r;

    if (result)
        *result = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (!command || !g_variant_is_of_type(owned_args, G_VARIANT_TYPE_VARDICT))
        return local_error(-EINVAL, errmsg, "invalid request arguments");
    if (g_thread_self() == c->reader)
        return local_error(-EDEADLK, errmsg, "control call from the event callback");

    guint64 id = (guint64)atomic_fetch_add(&c->next_id, 1) + 1;
    g_autoptr(GBytes) frame = ndfs_control_frame(
        NDFS_CONTROL_REQUEST, g_variant_new("(ts@a{sv})", id, command, owned_args));
    if (!frame)
        return local_error(-EMSGSIZE, errmsg, "request too large");

    g_cond_init(&call.cond);
    g_mutex_lock(&c->lock);
    if (c->closed) {
        g_mutex_unlock(&c->lock);
        g_cond_clear(&call.cond);
        return local_error(-ECONNRESET, errmsg, "connection to ndfsd lost");
    }
    guint64 *key = g_new(guint64, 1);
    *key = id;
    g_hash_table_insert(c->pending, key, &call);
    g_mutex_unlock(&c->lock);

    r = send_request(c, frame, deadline);

    g_mutex_lock(&c->lock);
    if (r == 0) {
        while (!call.done) {
            if (deadline <= 0) {
                g_cond_wait(&call.cond, &c->lock);
            } else if (!g_cond_wait_until(&call.cond, &c->lock, deadline) && !call.done) {
                r = -ETIMEDOUT;
                break;
            }
        }
    }
    if (!call.done)
        g_hash_table_remove(c->pending, &id);
    g_mutex_unlock(&c->lock);
    g_cond_clear(&call.cond);

    /* a failed send wins over the reset it may have caused meanwhile */
    if (r < 0) {
        g_clear_pointer(&call.response, g_variant_unref);
        return local_error(r, errmsg,
                           r == -ETIMEDOUT    ? "timed out waiting for ndfsd"
                           : r == -ECONNRESET ? "connection to ndfsd lost"
                                              : NULL);
    }
    if (!call.response)
        return local_error(call.status, errmsg, "connection to ndfsd lost");

    g_autoptr(GVariant) response = call.response;
    const char *message;
    g_autoptr(GVariant) dict = NULL;
    g_variant_get(response, "(ti&s@a{sv})", NULL, &r, &message, &dict);
    if (r < 0) {
        if (errmsg)
            *errmsg = g_strdup(message[0] ? message : g_strerror(-r));
        return r;
    }
    if (result)
        *result = g_steal_pointer(&dict);
    return 0;
}

void ndfs_control_client_close(struct ndfs_control_client *c)
{
    if (!c)
        return;
    g_mutex_lock(&c->lock);
    c->closing = true;
    g_mutex_unlock(&c->lock);
    /* wakes the reader's recv with EOF */
    shutdown(c->fd, SHUT_RDWR);
    g_thread_join(c->reader);
    close(c->fd);
    g_hash_table_unref(c->pending);
    g_mutex_clear(&c->lock);
    g_mutex_clear(&c->write_lock);
    g_free(c);
}
