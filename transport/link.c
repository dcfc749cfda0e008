/* Connections: TCP dial/accept, the authentication handshake, frame
 * reading and writing. Listeners and UDP heartbeats are listen.c's, peers
 * and windows transport.c's. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "transport_private.h"

#define WARN_INTERVAL_MS 10000

int tp_parse_addr(const char *s, struct sockaddr_in *sa)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || strlen(colon + 1) == 0 || colon - s >= INET_ADDRSTRLEN)
        return -EINVAL;
    char ip[INET_ADDRSTRLEN];
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || errno || port == 0 || port > 65535)
        return -EINVAL;
    if (uv_ip4_addr(ip, (int)port, sa) != 0)
        return -EINVAL;
    return 0;
}

void tp_sa_to_str(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        uv_ip4_name(s4, ip, sizeof ip);
        port = ntohs(s4->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(s6, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
    }
    g_snprintf(out, len, "%s:%d", ip, port);
}

/* true when key (an IP, or '@' and a peer name) may log now */
static bool warn_allowed(struct ndfs_transport *t, const char *key)
{
    uint64_t now = uv_now(t->loop);
    gpointer last;
    if (g_hash_table_lookup_extended(t->warned, key, NULL, &last) &&
        now - GPOINTER_TO_SIZE(last) < WARN_INTERVAL_MS)
        return false;
    if (g_hash_table_size(t->warned) > 4096)
        g_hash_table_remove_all(t->warned); /* bounded, whoever knocks */
    g_hash_table_insert(t->warned, g_strdup(key), GSIZE_TO_POINTER((gsize)now));
    return true;
}

void tp_warn(struct ndfs_transport *t, const char *addr, const char *fmt, ...)
{
    /* one warning per remote IP per interval: a flood of bad connections
     * from one address must not flood the log */
    char ip[TP_ADDR_MAX];
    g_strlcpy(ip, addr, sizeof ip);
    char *colon = strrchr(ip, ':');
    if (colon)
        *colon = '\0';
    if (!warn_allowed(t, ip))
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_warning("%s: %s", addr, msg);
}

void tp_warn_peer(struct ndfs_transport *t, const char *peer, const char *fmt, ...)
{
    /* peers on one IP (loopback clusters) are told apart */
    g_autofree char *key = g_strconcat("@", peer, NULL);
    if (!warn_allowed(t, key))
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_warning("%s", msg);
}

void tp_maybe_finish(struct ndfs_transport *t)
{
    if (!t->closing || t->handles > 0)
        return;
    void (*cb)(void *) = t->close_cb;
    void *data = t->close_data;
    g_hash_table_destroy(t->peers);
    g_hash_table_destroy(t->conns);
    g_hash_table_destroy(t->warned);
    explicit_bzero(t->key, t->key_len);
    g_free(t->key);
    g_free(t);
    if (cb)
        cb(data);
}

void tp_handle_closed(uv_handle_t *h)
{
    struct ndfs_transport *t = h->data;
    t->handles--;
    tp_maybe_finish(t);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct tp_conn *c = h->data;
    struct ndfs_transport *t = c->t;
    t->handles--;
    if (--c->handles == 0) {
        ndfs_message_free(c->dmsg);
        g_free(c->rbuf);
        g_free(c);
    }
    tp_maybe_finish(t);
}

void tp_conn_close(struct tp_conn *c, int status, const char *reason)
{
    if (c->state == TP_CONN_CLOSING)
        return;
    struct ndfs_transport *t = c->t;
    enum tp_conn_state prev = c->state;
    struct tp_peer *p = c->peer;
    int link = c->link;
    c->state = TP_CONN_CLOSING;
    if (reason && !t->closing && prev == TP_CONN_OPEN)
        tp_warn_peer(t, c->hello.name, "%s connection %s of %s dropped: %s",
                     c->outgoing ? "outgoing" : "incoming", c->addr, c->hello.name, reason);
    else if (reason && !t->closing)
        tp_warn(t, c->addr, "%s connection%s%s dropped: %s", c->outgoing ? "outgoing" : "incoming",
                c->hello.name[0] ? " of " : "", c->hello.name, reason);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    g_hash_table_remove(t->conns, c);
    c->peer = NULL;
    if (c->probe) {
        struct tp_probe *probe = c->probe;
        c->probe = NULL;
        tp_probe_done(probe, t->closing ? -ECANCELED : status < 0 ? status : -ECONNRESET, NULL);
    }
    if (t->closing)
        return;
    if (prev == TP_CONN_OPEN && p) {
        tp_conn_detached(c, p, link);
    } else if (c->outgoing && p && link >= 0 && p->links[link].dialing == c) {
        p->links[link].dialing = NULL;
        tp_dial_failed(&p->links[link], status);
    }
}

static void auth_failed(struct tp_conn *c, const char *reason)
{
    struct ndfs_transport *t = c->t;
    char addr[TP_ADDR_MAX];
    g_strlcpy(addr, c->addr, sizeof addr);
    tp_conn_close(c, -EACCES, reason);
    if (!t->closing)
        tp_emit(t, addr, NDFS_AUTH_FAILED, -1);
}

static void handshake_timeout(uv_timer_t *timer)
{
    struct tp_conn *c = timer->data;
    tp_conn_close(c, -ETIMEDOUT,
                  c->state == TP_CONN_CONNECTING ? "connect timed out" : "handshake timed out");
}

static struct tp_conn *conn_new(struct ndfs_transport *t, bool outgoing)
{
    struct tp_conn *c = g_new0(struct tp_conn, 1);
    c->t = t;
    c->outgoing = outgoing;
    c->listen_index = -1;
    c->link = -1;
    c->state = outgoing ? TP_CONN_CONNECTING : TP_CONN_AUTH;
    c->last_rx = c->last_tx = uv_now(t->loop);
    /* uv_tcp_init and uv_timer_init cannot fail on a valid loop */
    uv_tcp_init(t->loop, &c->tcp);
    uv_timer_init(t->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect_req.data = c;
    c->handles = 2;
    t->handles += 2;
    g_hash_table_add(t->conns, c);
    uv_timer_start(&c->timer, handshake_timeout, t->fail_ms, 0);
    return c;
}

struct tp_write {
    uv_write_t req;
    struct tp_conn *c;
    struct ndfs_tx_msg *ref;
    size_t len;
    uint8_t hdr[NDFS_FRAME_HEADER_SIZE];
};

static void write_done(uv_write_t *req, int status)
{
    struct tp_write *w = req->data;
    struct tp_conn *c = w->c;
    c->inflight -= w->len;
    ndfs_tx_msg_unref(w->ref);
    g_free(w);
    if (c->state == TP_CONN_CLOSING)
        return;
    if (status < 0) {
        tp_conn_close(c, status, uv_strerror(status));
        return;
    }
    if (c->state == TP_CONN_OPEN && c->peer)
        tp_peer_pump(c->peer);
}

int tp_conn_write(struct tp_conn *c, struct ndfs_frame_header *h, uint32_t payload_crc,
                  const uint8_t *control, const uint8_t *data, struct ndfs_tx_msg *ref)
{
    if (c->state == TP_CONN_CLOSING || c->state == TP_CONN_CONNECTING)
        return -ENOTCONN;
    if (c->state == TP_CONN_OPEN && c->peer && c->link >= 0 && c->peer->links[c->link].cut)
        return 0; /* test hook: lost on the way */
    uint8_t hdr[NDFS_FRAME_HEADER_SIZE];
    ndfs_frame_encode(h, payload_crc, hdr);
    const uint8_t *part[3] = {hdr, control, data};
    size_t part_len[3] = {NDFS_FRAME_HEADER_SIZE, h->control_len, h->data_len};
    size_t len = NDFS_FRAME_HEADER_SIZE + (size_t)h->control_len + h->data_len;
    uv_buf_t bufs[3];
    unsigned n = 0;
    for (int i = 0; i < 3; i++)
        if (part_len[i])
            bufs[n++] = uv_buf_init((char *)part[i], (unsigned)part_len[i]);
    /* Nothing queued: straight to the socket (uv_try_write), without a
     * request, its callback on the next turn and libuv's epoll_ctl after
     * it; only what the socket did not take goes through uv_write. */
    size_t done = 0;
    if (c->inflight == 0) {
        int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (rc < 0 && rc != UV_EAGAIN) {
            tp_conn_close(c, rc, uv_strerror(rc));
            return rc;
        }
        done = rc > 0 ? (size_t)rc : 0;
    }
    c->last_tx = uv_now(c->t->loop);
    if (c->state == TP_CONN_OPEN && c->peer && c->link >= 0)
        c->peer->links[c->link].bytes_sent += len;
    if (done == len)
        return 0;
    struct tp_write *w = g_new(struct tp_write, 1);
    w->req.data = w;
    w->c = c;
    w->ref = ref ? ndfs_tx_msg_ref(ref) : NULL;
    memcpy(w->hdr, hdr, sizeof hdr);
    part[0] = w->hdr;
    n = 0;
    size_t skip = done;
    for (int i = 0; i < 3; i++) {
        if (skip >= part_len[i]) {
            skip -= part_len[i];
            continue;
        }
        bufs[n++] = uv_buf_init((char *)part[i] + skip, (unsigned)(part_len[i] - skip));
        skip = 0;
    }
    w->len = len - done;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, write_done);
    if (rc < 0) {
        ndfs_tx_msg_unref(w->ref);
        g_free(w);
        tp_conn_close(c, rc, uv_strerror(rc));
        return rc;
    }
    c->inflight += w->len;
    return 0;
}

/* An auth frame: its payload copied into a message the write holds. */
static int write_auth(struct tp_conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
    struct ndfs_tx_msg *m = g_malloc(sizeof *m + len);
    m->refs = 1;
    m->len = len;
    m->release = NULL;
    m->release_arg = NULL;
    memcpy(m->bytes, payload, len);
    struct ndfs_frame_header h = {.type = type, .control_len = (uint32_t)len};
    int rc = tp_conn_write(c, &h, ndfs_crc32c(0, m->bytes, len), m->bytes, NULL, m);
    ndfs_tx_msg_unref(m);
    return rc;
}

static void send_challenge(struct tp_conn *c)
{
    struct ndfs_transport *t = c->t;
    uint8_t buf[NDFS_AUTH_MAX_LEN];
    int rc = ndfs_auth_random(c->nonce_a, sizeof c->nonce_a);
    if (rc < 0) {
        tp_conn_close(c, rc, "no random bytes for the challenge");
        return;
    }
    size_t n = ndfs_auth_challenge_encode(t->name, t->incarnation, c->nonce_a, buf);
    write_auth(c, NDFS_FRAME_AUTH_CHALLENGE, buf, n);
}

static void on_challenge(struct tp_conn *c, const uint8_t *p, size_t len)
{
    struct ndfs_transport *t = c->t;
    struct ndfs_auth_hello ch;
    if (ndfs_auth_challenge_decode(p, len, &ch) < 0) {
        auth_failed(c, "malformed challenge");
        return;
    }
    if (strcmp(ch.name, t->name) == 0) {
        tp_conn_close(c, -ELOOP, "connected to an endpoint with our own name");
        return;
    }
    if (c->expect[0] && strcmp(ch.name, c->expect) != 0) {
        g_autofree char *why =
            g_strdup_printf("expected endpoint %s, found %s", c->expect, ch.name);
        tp_conn_close(c, -EHOSTUNREACH, why);
        return;
    }
    int rc = ndfs_auth_random(c->nonce_c, sizeof c->nonce_c);
    if (rc < 0) {
        tp_conn_close(c, rc, "no random bytes for the response");
        return;
    }
    /* our incarnation for this peer is the session of our state for it */
    c->sent_session = tp_peer_get(t, ch.name)->session;
    uint8_t buf[NDFS_AUTH_MAX_LEN];
    size_t n = ndfs_auth_response_encode(t->key, t->key_len, &ch, t->name, c->sent_session,
                                         (uint16_t)c->link, c->nonce_c, buf);
    memcpy(c->nonce_a, ch.nonce, sizeof c->nonce_a);
    c->hello = ch;
    c->hello.link = (uint16_t)c->link;
    c->challenged = true;
    write_auth(c, NDFS_FRAME_AUTH_RESPONSE, buf, n);
}

static void on_auth_ok(struct tp_conn *c, const uint8_t *p, size_t len)
{
    struct ndfs_transport *t = c->t;
    struct ndfs_auth_ends e = {
        .acceptor = c->hello.name,
        .connector = t->name,
        .acceptor_inc = c->hello.incarnation,
        .connector_inc = c->sent_session,
        .nonce_a = c->nonce_a,
        .nonce_c = c->nonce_c,
        .link = (uint16_t)c->link,
    };
    uint64_t session = ndfs_auth_ok_session(p, len);
    if (ndfs_auth_ok_verify(t->key, t->key_len, &e, p, len) < 0) {
        auth_failed(c, "the peer does not know the cluster key");
        return;
    }
    if (!session) {
        auth_failed(c, "the peer gave no session (an older version?)");
        return;
    }
    c->hello.incarnation = session; /* from now on: the peer's session */
    tp_conn_authenticated(c);
}

static void on_response(struct tp_conn *c, const uint8_t *p, size_t len)
{
    struct ndfs_transport *t = c->t;
    struct ndfs_auth_hello r;
    int rc = ndfs_auth_response_verify(t->key, t->key_len, t->name, t->incarnation, c->nonce_a, p,
                                       len, &r);
    if (rc == -EBADMSG) {
        auth_failed(c, "malformed authentication response");
        return;
    }
    if (rc < 0) {
        g_autofree char *why = g_strdup_printf("authentication failed for %s (wrong key)", r.name);
        auth_failed(c, why);
        return;
    }
    if (strcmp(r.name, t->name) == 0) {
        tp_conn_close(c, -ELOOP, "the peer claims our own name");
        return;
    }
    struct tp_peer *known = tp_peer_find(t, r.name);
    if (known && c->listen_index < known->nlinks && known->links[c->listen_index].cut) {
        /* test hook: a cut link answers nothing; the handshake times out */
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    uint8_t buf[NDFS_AUTH_MAX_LEN];
    struct ndfs_auth_ends e = {
        .acceptor = t->name,
        .connector = r.name,
        .acceptor_inc = t->incarnation,
        .connector_inc = r.incarnation,
        .nonce_a = c->nonce_a,
        .nonce_c = r.nonce,
        .link = r.link,
    };
    size_t n =
        ndfs_auth_ok_encode_session(t->key, t->key_len, &e, tp_peer_get(t, r.name)->session, buf);
    c->hello = r;
    c->link = c->listen_index;
    if (write_auth(c, NDFS_FRAME_AUTH_OK, buf, n) < 0)
        return;
    tp_conn_authenticated(c);
}

static void conn_frame(struct tp_conn *c, const struct ndfs_frame_header *h, const uint8_t *frame)
{
    const uint8_t *control = frame + NDFS_FRAME_HEADER_SIZE;
    const uint8_t *data = control + h->control_len;
    if (c->state == TP_CONN_OPEN) {
        if (h->type <= NDFS_FRAME_AUTH_OK) {
            tp_conn_close(c, -EPROTO, "authentication frame on an open connection");
            return;
        }
        tp_conn_frame(c, h, control, data);
        return;
    }
    /* before authentication only the next handshake step is accepted */
    if (c->outgoing && !c->challenged && h->type == NDFS_FRAME_AUTH_CHALLENGE)
        on_challenge(c, control, h->control_len);
    else if (c->outgoing && c->challenged && h->type == NDFS_FRAME_AUTH_OK)
        on_auth_ok(c, control, h->control_len);
    else if (!c->outgoing && h->type == NDFS_FRAME_AUTH_RESPONSE)
        on_response(c, control, h->control_len);
    else
        auth_failed(c, "frame before authentication");
}

static void conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct tp_conn *c = handle->data;
    if (c->dmsg) {
        /* exactly the rest of its data: the next frame goes to rbuf */
        *buf = uv_buf_init((char *)c->dmsg->data + c->dfill, (unsigned)(c->dh.data_len - c->dfill));
        return;
    }
    size_t want = MAX(c->rlen + 65536, c->rneed);
    if (c->rcap < want) {
        c->rbuf = g_realloc(c->rbuf, want);
        c->rcap = want;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, c->rcap - c->rlen);
}

/* The frame of header h, whose first avail bytes are at bytes, is large and
 * a whole message: its message is allocated and the rest of its data will
 * be read straight into it. false: read it into rbuf as usual. */
static bool direct_start(struct tp_conn *c, const struct ndfs_frame_header *h, const uint8_t *bytes,
                         size_t avail)
{
    size_t head = NDFS_FRAME_HEADER_SIZE + (size_t)h->control_len;
    if (c->state != TP_CONN_OPEN || h->type != NDFS_FRAME_DATA ||
        (h->flags & (NDFS_FRAME_FIRST | NDFS_FRAME_LAST)) != (NDFS_FRAME_FIRST | NDFS_FRAME_LAST) ||
        h->data_len < TP_DIRECT_MIN || avail < head || avail - head >= h->data_len)
        return false;
    struct ndfs_message *m = ndfs_message_alloc(h->control_len, h->data_len);
    if (!m)
        return false;
    memcpy(c->dhdr, bytes, NDFS_FRAME_HEADER_SIZE);
    if (h->control_len)
        memcpy(m->control, bytes + NDFS_FRAME_HEADER_SIZE, h->control_len);
    memcpy(m->data, bytes + head, avail - head);
    c->dh = *h;
    c->dfill = avail - head;
    c->dmsg = m;
    return true;
}

/* The frame read in place is complete: check it, hand it on. */
static void direct_done(struct tp_conn *c)
{
    struct ndfs_message *m = c->dmsg;
    struct ndfs_frame_header h = c->dh;
    const char *reason = NULL;
    c->dmsg = NULL;
    if (ndfs_frame_verify_parts(c->dhdr, &h, m->control, m->data, &reason) < 0) {
        ndfs_message_free(m);
        tp_conn_close(c, -EPROTO, reason);
        return;
    }
    tp_conn_frame_msg(c, &h, m);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct tp_conn *c = stream->data;
    struct ndfs_transport *t = c->t;
    if (nread == 0 || c->state == TP_CONN_CLOSING)
        return;
    if (nread < 0 && c->outgoing && c->challenged && c->state == TP_CONN_AUTH) {
        /* the acceptor found our proof wrong */
        auth_failed(c, "refused during authentication (not the same cluster key?)");
        return;
    }
    if (nread < 0) {
        tp_conn_close(c, nread == UV_EOF ? -ECONNRESET : (int)nread,
                      nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
        return;
    }
    c->last_rx = uv_now(t->loop);
    if (c->state == TP_CONN_OPEN && c->peer && c->link >= 0) {
        c->peer->links[c->link].bytes_received += (size_t)nread;
        c->peer->links[c->link].last_frame = c->last_rx;
    }
    if (c->dmsg) {
        c->dfill += (size_t)nread;
        if (c->dfill == c->dh.data_len)
            direct_done(c);
        return;
    }
    c->rlen += (size_t)nread;
    size_t off = 0;
    c->rneed = 0;
    while (c->state != TP_CONN_CLOSING) {
        struct ndfs_frame_header h;
        const char *reason = NULL;
        size_t max = c->state == TP_CONN_OPEN ? t->max_message : NDFS_AUTH_MAX_LEN;
        long size = ndfs_frame_decode_header(c->rbuf + off, c->rlen - off, max, &h, &reason);
        if (size == -EAGAIN)
            break;
        if (size < 0) {
            if (c->state == TP_CONN_OPEN)
                tp_conn_close(c, -EPROTO, reason);
            else
                auth_failed(c, reason);
            return;
        }
        if (c->rlen - off < (size_t)size) {
            if (size >= (long)TP_DIRECT_MIN && direct_start(c, &h, c->rbuf + off, c->rlen - off))
                off = c->rlen; /* all of it is the frame's, now in its message */
            else
                c->rneed = (size_t)size;
            break;
        }
        if (ndfs_frame_verify(c->rbuf + off, &h, &reason) < 0) {
            if (c->state == TP_CONN_OPEN)
                tp_conn_close(c, -EPROTO, reason);
            else
                auth_failed(c, reason);
            return;
        }
        conn_frame(c, &h, c->rbuf + off);
        off += (size_t)size;
    }
    if (c->state == TP_CONN_CLOSING)
        return;
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    /* do not keep a big buffer for an idle connection */
    if (c->rlen == 0 && c->rneed == 0 && c->rcap > (1u << 20)) {
        g_free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

static void conn_setup_socket(struct tp_conn *c)
{
    /* best effort: a connection works without them */
    (void)uv_tcp_nodelay(&c->tcp, 1);
    (void)uv_tcp_keepalive(&c->tcp, 1, 10);
}

void tp_conn_start_reading(struct tp_conn *c)
{
    if (c->t->frozen)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
    if (rc < 0)
        tp_conn_close(c, rc, uv_strerror(rc));
}

void tp_conn_accept(struct ndfs_transport *t, uv_stream_t *server, int index)
{
    struct tp_conn *c = conn_new(t, false);
    c->listen_index = index;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        g_strlcpy(c->addr, t->listen_str[index], sizeof c->addr);
        tp_conn_close(c, rc, uv_strerror(rc));
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        tp_sa_to_str(&ss, c->addr, sizeof c->addr);
    else
        g_strlcpy(c->addr, "?", sizeof c->addr);
    conn_setup_socket(c);
    tp_conn_start_reading(c);
    if (c->state != TP_CONN_CLOSING)
        send_challenge(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tp_conn *c = req->data;
    if (c->state == TP_CONN_CLOSING)
        return;
    if (status < 0) {
        tp_conn_close(c, status, uv_strerror(status));
        return;
    }
    c->state = TP_CONN_AUTH;
    conn_setup_socket(c);
    tp_conn_start_reading(c);
}

int tp_conn_dial(struct ndfs_transport *t, struct tp_link *link, struct tp_probe *probe,
                 const struct sockaddr_in *sa, const char *addr)
{
    struct tp_conn *c = conn_new(t, true);
    g_strlcpy(c->addr, addr, sizeof c->addr);
    c->link = link ? link->index : 0;
    if (link) {
        c->peer = link->peer;
        g_strlcpy(c->expect, link->peer->name, sizeof c->expect);
        link->dialing = c;
    }
    c->probe = probe;
    int rc = 0;
    /* leave through our own address of this link, so traffic takes its path */
    if (c->link < t->nlisten && t->listen_str[c->link][0]) {
        struct sockaddr_in src = t->listen_sa[c->link];
        src.sin_port = 0;
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
    }
    if (rc == 0)
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)sa, on_connect);
    if (rc < 0) {
        /* the caller learns it from the return value, not from callbacks */
        c->probe = NULL;
        if (link)
            link->dialing = NULL;
        c->peer = NULL;
        tp_conn_close(c, rc, NULL);
        return rc;
    }
    return 0;
}
