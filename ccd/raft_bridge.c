/* A raft_uv transport over the cluster transport. raft_uv wants a uv_stream
 * per connection; each one is one end of a socketpair (a uv_pipe), and the
 * bridge pumps the other end to and from messages on NDFS_CHANNEL_RAFT. The
 * transport authenticates peers and keeps messages in order per peer, so a
 * stream is just a tagged byte flow:
 *
 *   control: u8 version, u8 op, u8 flags, u32 stream id, then per op:
 *     OPEN          u64 Raft id of the opener (its address is its peer name)
 *     OPEN_OK, CLOSE, COMMIT_QUERY  nothing
 *     DATA          nothing (the bytes are the data part)
 *     COMMIT_REPLY  u8 is-leader, u64 commit index
 *
 * A stream is named by (peer, id, who opened it): flags bit 0 says the
 * sender opened it. Stream ids start at a random value so that a restarted
 * peer does not reuse the ids of streams we still hold. A raft_uv address is
 * a node name, which is the peer name in the transport. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ccd_private.h"
#include "ndfs/transport.h"

#define BRIDGE_VERSION     1
#define FROM_OPENER        0x01u
#define CONNECT_TIMEOUT_MS 2000
#define READ_CHUNK         (64 * 1024)

enum bridge_op {
    OP_OPEN = 1,
    OP_OPEN_OK,
    OP_DATA,
    OP_CLOSE,
    OP_COMMIT_QUERY,
    OP_COMMIT_REPLY,
};

struct bridge {
    struct raft_uv_transport *rt;
    uv_loop_t *loop;
    struct ndfs_transport *net;
    raft_id id;
    raft_uv_accept_cb accept_cb;
    GHashTable *streams; /* key "peer/id/o" (we opened) or "peer/id/a" -> struct bstream */
    uint32_t next_sid;
    bool closing;
    uv_timer_t *close_timer; /* closed last: makes the close callback asynchronous */
    raft_uv_transport_close_cb close_cb;
    struct raft *raft;
    ccd_commit_cb commit_cb;
    void *commit_data;
};

struct bstream {
    struct bridge *b;
    char *key;
    char peer[NDFS_TRANSPORT_NAME_MAX + 1];
    uint32_t sid;
    bool ours;
    bool closing;
    uv_pipe_t pipe;      /* our end */
    uv_timer_t timer;    /* connect timeout */
    uv_pipe_t *raft_end; /* until handed to raft (raft frees it with raft_free) */
    struct raft_uv_connect *req;
    raft_uv_connect_cb cb;
    int open_handles;
};

/* A DATA message being written into our end; released when written. */
struct bwrite {
    uv_write_t req;
    struct bstream *s;
    struct ndfs_transport *net;
    struct ndfs_message *msg;
};

static char *stream_key(const char *peer, uint32_t sid, bool ours)
{
    return g_strdup_printf("%s/%u/%c", peer, sid, ours ? 'o' : 'a');
}

static int send_op(struct bridge *b, const char *peer, uint8_t op, uint8_t flags, uint32_t sid,
                   GByteArray *extra, const void *data, size_t data_len)
{
    g_autoptr(GByteArray) c = g_byte_array_new();
    ccd_put_u8(c, BRIDGE_VERSION);
    ccd_put_u8(c, op);
    ccd_put_u8(c, flags);
    ccd_put_u32(c, sid);
    if (extra)
        g_byte_array_append(c, extra->data, extra->len);
    return ndfs_transport_send(b->net, peer, NDFS_CHANNEL_RAFT, sid, 0, c->data, c->len, data,
                               data_len);
}

static uint8_t stream_flags(const struct bstream *s)
{
    return s->ours ? FROM_OPENER : 0;
}

static void free_raft_handle(uv_handle_t *h)
{
    raft_free(h);
}

static void stream_handle_closed(uv_handle_t *h)
{
    struct bstream *s = h->data;
    if (--s->open_handles > 0)
        return;
    g_free(s->key);
    g_free(s);
}

/* Closes our end (raft sees EOF or a write error on its end and reconnects);
 * tells the peer unless it told us. */
static void stream_close(struct bstream *s, bool tell_peer)
{
    struct bridge *b = s->b;
    if (s->closing)
        return;
    s->closing = true;
    g_hash_table_steal(b->streams, s->key);
    if (tell_peer)
        send_op(b, s->peer, OP_CLOSE, stream_flags(s), s->sid, NULL, NULL, 0);
    if (s->req) {
        struct raft_uv_connect *req = s->req;
        s->req = NULL;
        s->cb(req, NULL, b->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    if (s->raft_end) {
        uv_close((uv_handle_t *)s->raft_end, free_raft_handle);
        s->raft_end = NULL;
    }
    uv_read_stop((uv_stream_t *)&s->pipe);
    uv_close((uv_handle_t *)&s->pipe, stream_handle_closed);
    uv_close((uv_handle_t *)&s->timer, stream_handle_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = g_malloc(READ_CHUNK);
    buf->len = READ_CHUNK;
}

/* Raft wrote on its end: forward the bytes. */
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct bstream *s = stream->data;
    if (nread > 0) {
        int rc = send_op(s->b, s->peer, OP_DATA, stream_flags(s), s->sid, NULL, buf->base,
                         (size_t)nread);
        if (rc != 0) {
            g_message("Raft stream to %s: %s; closing it", s->peer, g_strerror(-rc));
            stream_close(s, true);
        }
    } else if (nread < 0) {
        stream_close(s, true); /* raft closed its end */
    }
    g_free(buf->base);
}

/* A new stream: a socketpair, raft's end and ours as uv_pipes. */
static int stream_new(struct bridge *b, const char *peer, uint32_t sid, bool ours,
                      struct bstream **out)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return -errno;
    uv_pipe_t *raft_end = raft_malloc(sizeof *raft_end);
    if (raft_end == NULL) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    struct bstream *s = g_new0(struct bstream, 1);
    s->b = b;
    g_strlcpy(s->peer, peer, sizeof s->peer);
    s->sid = sid;
    s->ours = ours;
    s->key = stream_key(peer, sid, ours);
    s->raft_end = raft_end;
    uv_pipe_init(b->loop, raft_end, 0);
    uv_pipe_init(b->loop, &s->pipe, 0);
    uv_timer_init(b->loop, &s->timer);
    s->pipe.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    int rc = uv_pipe_open(raft_end, fds[0]);
    if (rc != 0)
        close(fds[0]);
    int rc2 = uv_pipe_open(&s->pipe, fds[1]);
    if (rc2 != 0)
        close(fds[1]);
    g_hash_table_insert(b->streams, s->key, s);
    if (rc != 0 || rc2 != 0) {
        stream_close(s, false);
        return rc ? rc : rc2;
    }
    *out = s;
    return 0;
}

static void connect_timeout_cb(uv_timer_t *timer)
{
    struct bstream *s = timer->data;
    stream_close(s, true);
}

static int bridge_connect(struct raft_uv_transport *rt, struct raft_uv_connect *req, raft_id id,
                          const char *address, raft_uv_connect_cb cb)
{
    struct bridge *b = rt->impl;
    struct bstream *s;
    if (b->closing)
        return RAFT_CANCELED;
    if (!ccd_valid_node_name(address)) {
        g_snprintf(rt->errmsg, sizeof rt->errmsg, "server %llu: bad address \"%s\"", id, address);
        return RAFT_NOCONNECTION;
    }
    uint32_t sid = b->next_sid++;
    int rc = stream_new(b, address, sid, true, &s);
    if (rc != 0) {
        g_snprintf(rt->errmsg, sizeof rt->errmsg, "stream to %s: %s", address, g_strerror(-rc));
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    g_autoptr(GByteArray) open = g_byte_array_new();
    ccd_put_u64(open, b->id);
    rc = send_op(b, address, OP_OPEN, FROM_OPENER, sid, open, NULL, 0);
    if (rc != 0) {
        stream_close(s, false);
        g_snprintf(rt->errmsg, sizeof rt->errmsg, "connect to %s: %s", address, g_strerror(-rc));
        return RAFT_NOCONNECTION;
    }
    s->req = req;
    s->cb = cb;
    uv_timer_start(&s->timer, connect_timeout_cb, CONNECT_TIMEOUT_MS, 0);
    return 0;
}

static void accept_stream(struct bridge *b, struct ndfs_message *msg, uint32_t sid,
                          struct ccd_reader *r)
{
    uint64_t id = 0;
    struct bstream *s;
    if (!ccd_get_u64(r, &id) || !ccd_reader_done(r) || id == 0 || b->accept_cb == NULL ||
        b->closing || !ccd_valid_node_name(msg->peer)) {
        send_op(b, msg->peer, OP_CLOSE, 0, sid, NULL, NULL, 0);
        return;
    }
    g_autofree char *key = stream_key(msg->peer, sid, false);
    if (g_hash_table_contains(b->streams, key))
        return; /* a duplicate */
    if (stream_new(b, msg->peer, sid, false, &s) != 0) {
        send_op(b, msg->peer, OP_CLOSE, 0, sid, NULL, NULL, 0);
        return;
    }
    if (send_op(b, msg->peer, OP_OPEN_OK, 0, sid, NULL, NULL, 0) != 0) {
        stream_close(s, false);
        return;
    }
    uv_read_start((uv_stream_t *)&s->pipe, alloc_cb, read_cb);
    uv_pipe_t *raft_end = s->raft_end;
    s->raft_end = NULL;
    /* raft's address for a server is its node name: the name it proved */
    b->accept_cb(b->rt, id, msg->peer, (uv_stream_t *)raft_end);
}

static void write_cb(uv_write_t *req, int status)
{
    struct bwrite *w = req->data;
    struct bstream *s = w->s;
    ndfs_transport_release(w->net, w->msg);
    if (status != 0 && !s->closing)
        stream_close(s, true);
    stream_handle_closed((uv_handle_t *)&s->pipe); /* drops the write's reference */
    g_free(w);
}

/* Takes msg (released once written). */
static void stream_data(struct bstream *s, struct ndfs_message *msg)
{
    struct bwrite *w = g_new0(struct bwrite, 1);
    w->req.data = w;
    w->s = s;
    w->net = s->b->net;
    w->msg = msg;
    uv_buf_t buf = uv_buf_init((char *)msg->data, (unsigned)msg->data_len);
    int rc = uv_write(&w->req, (uv_stream_t *)&s->pipe, &buf, 1, write_cb);
    if (rc != 0) {
        ndfs_transport_release(s->b->net, msg);
        g_free(w);
        stream_close(s, true);
        return;
    }
    s->open_handles++; /* keeps s alive until write_cb */
}

static void stream_opened(struct bstream *s)
{
    if (s->req == NULL)
        return;
    uv_timer_stop(&s->timer);
    struct raft_uv_connect *req = s->req;
    uv_pipe_t *raft_end = s->raft_end;
    s->req = NULL;
    s->raft_end = NULL;
    uv_read_start((uv_stream_t *)&s->pipe, alloc_cb, read_cb);
    s->cb(req, (uv_stream_t *)raft_end, 0);
}

static void commit_query(struct bridge *b, const char *peer)
{
    if (b->raft == NULL)
        return;
    g_autoptr(GByteArray) reply = g_byte_array_new();
    ccd_put_u8(reply, raft_state(b->raft) == RAFT_LEADER);
    ccd_put_u64(reply, b->raft->commit_index);
    send_op(b, peer, OP_COMMIT_REPLY, 0, 0, reply, NULL, 0);
}

static void commit_reply(struct bridge *b, const char *peer, struct ccd_reader *r)
{
    uint8_t leader = 0;
    uint64_t commit = 0;
    if (!ccd_get_u8(r, &leader) || !ccd_get_u64(r, &commit) || !ccd_reader_done(r))
        return;
    if (leader && b->commit_cb)
        b->commit_cb(b->commit_data, peer, commit);
}

static void recv_cb(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    struct bridge *b = data; /* registered until ccd_bridge_close() frees it */
    struct ccd_reader r;
    uint8_t version = 0, op = 0, flags = 0;
    uint32_t sid = 0;

    ccd_reader_init(&r, msg->control, msg->control_len);
    if (b->closing || !ccd_get_u8(&r, &version) || !ccd_get_u8(&r, &op) ||
        !ccd_get_u8(&r, &flags) || !ccd_get_u32(&r, &sid) || version != BRIDGE_VERSION) {
        ndfs_transport_release(t, msg);
        return;
    }
    if (op == OP_OPEN && (flags & FROM_OPENER)) {
        accept_stream(b, msg, sid, &r);
        ndfs_transport_release(t, msg);
        return;
    }
    if (op == OP_COMMIT_QUERY || op == OP_COMMIT_REPLY) {
        if (op == OP_COMMIT_QUERY)
            commit_query(b, msg->peer);
        else
            commit_reply(b, msg->peer, &r);
        ndfs_transport_release(t, msg);
        return;
    }
    /* the sender opened the stream: it is not ours, and the other way round */
    bool ours = !(flags & FROM_OPENER);
    g_autofree char *key = stream_key(msg->peer, sid, ours);
    struct bstream *s = g_hash_table_lookup(b->streams, key);
    if (s == NULL) {
        if (op == OP_DATA) /* the peer thinks it is open: tell it otherwise */
            send_op(b, msg->peer, OP_CLOSE, ours ? FROM_OPENER : 0, sid, NULL, NULL, 0);
        ndfs_transport_release(t, msg);
        return;
    }
    switch (op) {
    case OP_OPEN_OK:
        if (ours)
            stream_opened(s);
        break;
    case OP_DATA:
        if (msg->data_len > 0 && s->req == NULL) {
            stream_data(s, msg);
            return;
        }
        break;
    case OP_CLOSE:
        stream_close(s, false);
        break;
    default:
        break;
    }
    ndfs_transport_release(t, msg);
}

static int bridge_init_cb(struct raft_uv_transport *rt, raft_id id, const char *address)
{
    struct bridge *b = rt->impl;
    (void)address;
    b->id = id;
    return 0;
}

static int bridge_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb)
{
    struct bridge *b = rt->impl;
    b->accept_cb = cb;
    return 0;
}

static void close_timer_closed(uv_handle_t *h)
{
    struct bridge *b = h->data;
    g_free(h); /* first: the close callback frees b */
    if (b && b->close_cb)
        b->close_cb(b->rt);
}

static void close_streams(struct bridge *b, const char *peer)
{
    GList *all = g_hash_table_get_values(b->streams);
    for (GList *l = all; l; l = l->next) {
        struct bstream *s = l->data;
        if (peer == NULL || strcmp(s->peer, peer) == 0)
            stream_close(s, true);
    }
    g_list_free(all);
}

/* Streams handed to raft are raft's: it closes them. Ours close here. */
static void bridge_close(struct raft_uv_transport *rt, raft_uv_transport_close_cb cb)
{
    struct bridge *b = rt->impl;
    b->closing = true;
    b->accept_cb = NULL;
    b->close_cb = cb;
    close_streams(b, NULL);
    uv_close((uv_handle_t *)b->close_timer, close_timer_closed);
}

void ccd_bridge_peer_lost(struct raft_uv_transport *rt, const char *peer)
{
    struct bridge *b = rt->impl;
    if (b && !b->closing)
        close_streams(b, peer);
}

int ccd_bridge_query_commit(struct raft_uv_transport *rt, const char *peer)
{
    struct bridge *b = rt->impl;
    if (b == NULL || b->closing || !ccd_valid_node_name(peer))
        return -EINVAL;
    return send_op(b, peer, OP_COMMIT_QUERY, 0, 0, NULL, NULL, 0);
}

void ccd_bridge_set_commit_handlers(struct raft_uv_transport *rt, struct raft *raft,
                                    ccd_commit_cb cb, void *data)
{
    struct bridge *b = rt->impl;
    b->raft = raft;
    b->commit_cb = cb;
    b->commit_data = data;
}

int ccd_bridge_init(struct raft_uv_transport *rt, uv_loop_t *loop, struct ndfs_transport *t)
{
    memset(rt, 0, sizeof *rt);
    struct bridge *b = g_new0(struct bridge, 1);
    b->rt = rt;
    b->loop = loop;
    b->net = t;
    b->streams = g_hash_table_new(g_str_hash, g_str_equal);
    b->next_sid = g_random_int();
    int rc = ndfs_transport_register(t, NDFS_CHANNEL_RAFT, recv_cb, b);
    if (rc == -EEXIST)
        rc = -EBUSY; /* another CCD runs on this transport */
    if (rc != 0) {
        g_hash_table_destroy(b->streams);
        g_free(b);
        return rc;
    }
    b->close_timer = g_new0(uv_timer_t, 1);
    uv_timer_init(loop, b->close_timer);
    b->close_timer->data = b;
    rt->impl = b;
    rt->init = bridge_init_cb;
    rt->listen = bridge_listen;
    rt->connect = bridge_connect;
    rt->close = bridge_close;
    return 0;
}

/* After raft closed the transport (or raft_uv_init failed): stops receiving
 * and frees the bridge. */
void ccd_bridge_close(struct raft_uv_transport *rt)
{
    struct bridge *b = rt->impl;
    if (b == NULL)
        return;
    rt->impl = NULL;
    if (!b->closing) { /* raft never used it: only the close timer is open */
        b->close_timer->data = NULL;
        uv_close((uv_handle_t *)b->close_timer, close_timer_closed);
    }
    /* late messages are released by the transport from now on */
    int rc = ndfs_transport_unregister(b->net, NDFS_CHANNEL_RAFT);
    if (rc < 0)
        g_warning("raft channel: cannot unregister: %s", g_strerror(-rc));
    g_hash_table_destroy(b->streams);
    g_free(b);
}

int ccd_bridge_peer_set(struct ndfs_transport *t, const char *name, const char *const *addresses)
{
    return ndfs_transport_peer_set(t, name, addresses);
}

int ccd_bridge_peer_remove(struct ndfs_transport *t, const char *name)
{
    return ndfs_transport_peer_remove(t, name);
}

int ccd_bridge_listen_set(struct ndfs_transport *t, const char *const *addresses, char **errmsg)
{
    return ndfs_transport_listen_set(t, addresses, errmsg);
}
