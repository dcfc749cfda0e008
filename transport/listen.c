/* Our end of each link: the TCP listener and UDP socket bound to each of
 * our addresses, the heartbeats sent and received on them, and changing
 * those addresses while the transport runs (ndfsadm link add / remove). */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport_private.h"

#define LISTEN_BACKLOG 128

bool tp_link_local_ok(const struct tp_link *l)
{
    const struct ndfs_transport *t = l->peer->t;
    if (t->nlisten == 0)
        return true; /* a mount: connects out from anywhere */
    return l->index < t->nlisten && t->listen_str[l->index][0] != '\0';
}

static void listener_handle_closed(uv_handle_t *h)
{
    struct tp_listener *ls = h->data;
    struct ndfs_transport *t = ls->t;
    t->handles--;
    if (--ls->handles == 0)
        g_free(ls);
    tp_maybe_finish(t);
}

static void listener_close(struct tp_listener *ls)
{
    /* both handles were initialised when the listener was made */
    uv_close((uv_handle_t *)&ls->tcp, listener_handle_closed);
    uv_close((uv_handle_t *)&ls->udp, listener_handle_closed);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct tp_listener *ls = server->data;
    struct ndfs_transport *t = ls->t;
    if (t->closing || t->listeners[ls->index] != ls)
        return; /* closing: the connection is refused with the socket */
    if (status < 0) {
        g_warning("accept on %s: %s", t->listen_str[ls->index], uv_strerror(status));
        return;
    }
    tp_conn_accept(t, server, ls->index);
}

static void udp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct tp_listener *ls = handle->data;
    *buf = uv_buf_init((char *)ls->t->udp_buf, sizeof ls->t->udp_buf);
}

static void udp_recv(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf,
                     const struct sockaddr *from, unsigned flags)
{
    struct tp_listener *ls = handle->data;
    struct ndfs_transport *t = ls->t;
    if (nread <= 0 || !from || t->closing || t->frozen || (flags & UV_UDP_PARTIAL))
        return;
    struct ndfs_heartbeat hb;
    int rc =
        ndfs_heartbeat_decode(t->key, t->key_len, (const uint8_t *)buf->base, (size_t)nread, &hb);
    if (rc < 0) {
        char addr[TP_ADDR_MAX];
        tp_sa_to_str((const struct sockaddr_storage *)from, addr, sizeof addr);
        tp_warn(t, addr, "heartbeat dropped: %s", rc == -EACCES ? "bad tag" : "malformed");
        return;
    }
    struct tp_peer *p = tp_peer_find(t, hb.name);
    if (!p || hb.link >= p->nlinks)
        return;
    struct tp_link *l = &p->links[hb.link];
    if (l->cut)
        return;
    if (hb.incarnation == l->udp_incarnation && hb.counter <= l->udp_counter)
        return; /* replayed */
    l->udp_incarnation = hb.incarnation;
    l->udp_counter = hb.counter;
    l->last_udp = uv_now(t->loop);
}

void tp_heartbeat_send(struct ndfs_transport *t)
{
    GHashTableIter it;
    gpointer v;
    struct ndfs_heartbeat hb = {.incarnation = t->incarnation};
    g_strlcpy(hb.name, t->name, sizeof hb.name);
    g_hash_table_iter_init(&it, t->peers);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        struct tp_peer *p = v;
        for (int i = 0; i < p->nlinks && i < t->nlisten; i++) {
            struct tp_link *l = &p->links[i];
            struct tp_listener *ls = t->listeners[i];
            if (!l->has_remote || !ls || l->blocked || l->cut)
                continue;
            uint8_t buf[NDFS_HEARTBEAT_MAX_LEN];
            hb.link = (uint8_t)i;
            hb.counter = ++t->hb_counter;
            size_t n = ndfs_heartbeat_encode(t->key, t->key_len, &hb, buf);
            uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
            /* lossy by nature: a full socket buffer just skips one beat */
            (void)uv_udp_try_send(&ls->udp, &b, 1, (const struct sockaddr *)&l->remote_sa);
        }
    }
}

/* Binds TCP and UDP on sa for link index; on error errmsg names the
 * address and what failed, and nothing stays open. */
static int listener_open(struct ndfs_transport *t, int index, const struct sockaddr_in *sa,
                         const char *str, struct tp_listener **out, char **errmsg)
{
    struct tp_listener *ls = g_new0(struct tp_listener, 1);
    ls->t = t;
    ls->index = index;
    /* init cannot fail on a valid loop; from here both are closed on error */
    uv_tcp_init(t->loop, &ls->tcp);
    uv_udp_init(t->loop, &ls->udp);
    ls->tcp.data = ls;
    ls->udp.data = ls;
    ls->handles = 2;
    t->handles += 2;
    const char *what = "TCP";
    int rc = uv_tcp_bind(&ls->tcp, (const struct sockaddr *)sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ls->tcp, LISTEN_BACKLOG, on_accept);
    if (rc == 0) {
        what = "UDP";
        rc = uv_udp_bind(&ls->udp, (const struct sockaddr *)sa, 0);
    }
    if (rc == 0)
        rc = uv_udp_recv_start(&ls->udp, udp_alloc, udp_recv);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot listen on %s (%s): %s", str, what, uv_strerror(rc));
        listener_close(ls);
        return rc;
    }
    *out = ls;
    return 0;
}

int tp_listen_start(struct ndfs_transport *t, char **errmsg)
{
    for (int i = 0; i < t->nlisten; i++) {
        if (!t->listen_str[i][0] || t->listeners[i])
            continue;
        int rc = listener_open(t, i, &t->listen_sa[i], t->listen_str[i], &t->listeners[i], errmsg);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void tp_listen_close_all(struct ndfs_transport *t)
{
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        if (t->listeners[i])
            listener_close(t->listeners[i]);
        t->listeners[i] = NULL;
    }
}

int ndfs_transport_listen_check(const char *address, char **errmsg)
{
    struct sockaddr_in sa;
    if (!address || strlen(address) >= TP_ADDR_MAX || tp_parse_addr(address, &sa) < 0) {
        *errmsg = g_strdup_printf("bad address \"%s\": expected IPv4:port", address ? address : "");
        return -EINVAL;
    }
    static const struct {
        int type;
        const char *name;
    } kinds[] = {{SOCK_STREAM, "TCP"}, {SOCK_DGRAM, "UDP"}};
    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
        int fd = socket(AF_INET, kinds[k].type | SOCK_CLOEXEC, 0);
        int rc = 0;
        if (fd < 0) {
            rc = -errno;
        } else {
            /* as libuv binds a listener: a port in TIME_WAIT is no obstacle */
            int on = 1;
            if (kinds[k].type == SOCK_STREAM &&
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
                rc = -errno;
            else if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) < 0)
                rc = -errno;
            close(fd);
        }
        if (rc < 0) {
            *errmsg = g_strdup_printf("cannot listen on %s (%s): %s", address, kinds[k].name,
                                      g_strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Link index of every peer now leaves from our address str (maybe ""):
 * its connections went over the old address, which is gone. */
static void links_readdress(struct ndfs_transport *t, int index)
{
    GList *peers = g_hash_table_get_values(t->peers);
    for (GList *it = peers; it && !t->closing; it = it->next) {
        struct tp_peer *p = it->data;
        if (p->removed)
            continue;
        struct tp_link *l = &p->links[index];
        g_strlcpy(l->local, t->listen_str[index], sizeof l->local);
        if (l->dialing)
            tp_conn_close(l->dialing, -ECONNABORTED, NULL);
        if (!p->removed && !t->closing && l->conn)
            tp_conn_close(l->conn, -ECONNABORTED, "our address of this link changed");
        if (p->removed || t->closing)
            continue;
        uv_timer_stop(&l->retry);
        l->backoff_ms = TP_BACKOFF_MIN_MS;
        tp_link_dial(l);
    }
    g_list_free(peers);
}

int ndfs_transport_listen_set(struct ndfs_transport *t, const char *const *listen, char **errmsg)
{
    char want[NDFS_TRANSPORT_MAX_LINKS][TP_ADDR_MAX] = {{0}};
    struct sockaddr_in sa[NDFS_TRANSPORT_MAX_LINKS] = {{0}};
    int n = 0, any = 0;
    for (; listen && listen[n]; n++) {
        if (n >= NDFS_TRANSPORT_MAX_LINKS) {
            *errmsg = g_strdup_printf("more than %d listen addresses", NDFS_TRANSPORT_MAX_LINKS);
            return -EINVAL;
        }
        if (!listen[n][0])
            continue; /* no address for this link */
        if (strlen(listen[n]) >= TP_ADDR_MAX || tp_parse_addr(listen[n], &sa[n]) < 0) {
            *errmsg = g_strdup_printf("bad listen address \"%s\": expected IPv4:port", listen[n]);
            return -EINVAL;
        }
        for (int j = 0; j < n; j++)
            if (strcmp(want[j], listen[n]) == 0) {
                *errmsg = g_strdup_printf("listen address %s given twice", listen[n]);
                return -EINVAL;
            }
        g_strlcpy(want[n], listen[n], TP_ADDR_MAX);
        any++;
    }
    if (t->closing)
        return -ECANCELED;
    if (!any && t->nlisten > 0) {
        *errmsg = g_strdup("an endpoint with listen addresses keeps at least one");
        return -EINVAL;
    }
    /* bind what is new first: on failure nothing changes */
    struct tp_listener *fresh[NDFS_TRANSPORT_MAX_LINKS] = {0};
    bool changed[NDFS_TRANSPORT_MAX_LINKS] = {0};
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        changed[i] = strcmp(want[i], t->listen_str[i]) != 0;
        if (!changed[i] || !want[i][0] || !t->started)
            continue;
        int rc = listener_open(t, i, &sa[i], want[i], &fresh[i], errmsg);
        if (rc < 0) {
            for (int j = 0; j < i; j++)
                if (fresh[j])
                    listener_close(fresh[j]);
            return rc;
        }
    }
    int nlisten = 0;
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS; i++) {
        if (changed[i]) {
            if (t->listeners[i])
                listener_close(t->listeners[i]);
            t->listeners[i] = fresh[i];
            if (t->listen_str[i][0] || want[i][0])
                g_message("link %d: our address %s -> %s", i,
                          t->listen_str[i][0] ? t->listen_str[i] : "none",
                          want[i][0] ? want[i] : "none");
            g_strlcpy(t->listen_str[i], want[i], TP_ADDR_MAX);
            t->listen_sa[i] = sa[i];
        }
        if (t->listen_str[i][0])
            nlisten = i + 1;
    }
    t->nlisten = nlisten;
    for (int i = 0; i < NDFS_TRANSPORT_MAX_LINKS && !t->closing; i++)
        if (changed[i])
            links_readdress(t, i);
    return 0;
}
