/* Private to transport/: peers, links, connections, and what link.c and
 * transport.c call of each other. Lifetimes: a connection detaches from its
 * link and peer when it starts closing; peers and connections are freed
 * only from libuv close callbacks, so a pointer held on the stack stays
 * valid until the loop turns (check ->closing / ->removed after calling out
 * to a client). */
#ifndef NDFS_TRANSPORT_PRIVATE_H
#define NDFS_TRANSPORT_PRIVATE_H

#include <netinet/in.h>
#include <uv.h>

#include "auth.h"
#include "frame.h"
#include "ndfs/transport.h"
#include "window.h"

#define TP_ADDR_MAX       64
#define TP_BACKOFF_MIN_MS 100
#define TP_BACKOFF_MAX_MS 2000
#define TP_ACK_DELAY_MS   2
#define TP_ACK_EVERY      32          /* frames received before an ack goes out at once */
#define TP_LINK_INFLIGHT  (1 << 20)   /* bytes written on a link and not yet completed */
#define TP_DYNAMIC_TTL_MS 60000       /* a dynamic peer without connections is forgotten */
#define TP_DIAL_DEFER_MS  200         /* the larger name's first dial waits this long */
#define TP_RTO_MIN_MS     50          /* retransmission timeout floor */
#define TP_DIRECT_MIN     (64u << 10) /* whole-message frames this large are read in place */

enum tp_conn_state {
    TP_CONN_CONNECTING,
    TP_CONN_AUTH, /* handshake in progress */
    TP_CONN_OPEN, /* authenticated, attached to a link */
    TP_CONN_CLOSING,
};

struct tp_probe;
struct tp_peer;

struct tp_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake deadline */
    uv_connect_t connect_req;
    int handles; /* open uv handles; freed at 0 */
    struct ndfs_transport *t;
    enum tp_conn_state state;
    bool outgoing;
    int listen_index;                         /* accepted on listener i; -1: outgoing */
    int link;                                 /* link index (outgoing: from the start) */
    struct tp_peer *peer;                     /* the peer (outgoing: the target) */
    char expect[NDFS_TRANSPORT_NAME_MAX + 1]; /* outgoing: the name we dialled; "" probe */
    char addr[TP_ADDR_MAX];                   /* the remote address */
    struct tp_probe *probe;
    uint8_t nonce_a[NDFS_AUTH_NONCE_LEN], nonce_c[NDFS_AUTH_NONCE_LEN];
    struct ndfs_auth_hello hello; /* what the peer said of itself */
    bool challenged;              /* connector: the challenge came, waiting for AUTH_OK */
    uint64_t sent_session;        /* connector: the session its RESPONSE gave */
    uint8_t *rbuf;
    size_t rlen, rcap, rneed;
    /* A large DATA frame that is a whole message, read straight into its
     * message (no copy out of rbuf): NULL when none is in progress. */
    struct ndfs_message *dmsg;
    struct ndfs_frame_header dh;          /* its header */
    uint8_t dhdr[NDFS_FRAME_HEADER_SIZE]; /* its header's bytes, for the checksum */
    size_t dfill;                         /* data bytes in dmsg so far */
    size_t inflight;                      /* bytes in uv_write, not completed */
    uint64_t last_rx, last_tx;            /* uv_now() */
};

struct tp_link {
    struct tp_peer *peer;
    int index;
    char local[TP_ADDR_MAX];
    char remote[TP_ADDR_MAX];
    struct sockaddr_in remote_sa;
    bool has_remote;         /* we can dial it */
    struct tp_conn *conn;    /* the authenticated connection */
    struct tp_conn *dialing; /* our connection attempt */
    uv_timer_t retry;
    unsigned backoff_ms;
    bool up;
    bool blocked; /* test hook: no connection allowed */
    bool cut;     /* test hook: bytes stop flowing, the socket stays open */
    /* A frame on it went unacknowledged past the RTO and was resent on
     * another link: no new frames go here until a PONG for a PING sent
     * after suspect_us comes back (the link still goes down only after the
     * failure timeout). */
    bool suspect;
    uint64_t suspect_us;           /* uv_hrtime() / 1000 when it became suspect */
    uint64_t last_frame, last_udp; /* uv_now() */
    uint64_t udp_incarnation, udp_counter;
    uint32_t srtt_us;
    uint64_t bytes_sent, bytes_received;
};

struct tp_peer {
    struct ndfs_transport *t;
    char name[NDFS_TRANSPORT_NAME_MAX + 1];
    bool configured; /* by peer_set or probe: we dial it */
    bool removed;
    int nlinks;
    struct tp_link links[NDFS_TRANSPORT_MAX_LINKS];
    /* A window lives as long as both ends keep their state for each other:
     * session names our state for this peer (new with every tp_peer), and
     * the handshake tells it to the peer; peer_session is the peer's state
     * for us as last told (0: never). A session that changed means the peer
     * restarted or forgot us: our window is reset (NDFS_PEER_RESET). */
    uint64_t session;
    uint64_t peer_session;
    uint64_t last_drop_warn; /* uv_now() of the last dropped-connection line; 0: none */
    struct ndfs_window win;
    uv_timer_t ack_timer;
    uv_timer_t rto_timer; /* the oldest frame in flight is due to be acknowledged */
    int handles;
    int up_links;
    unsigned rr;
    uint64_t down_since; /* uv_now() when the last connection went */
};

struct tp_probe {
    struct ndfs_transport *t;
    ndfs_transport_probe_cb cb;
    void *data;
    char address[TP_ADDR_MAX];
};

/* The TCP and UDP sockets bound to our address of one link. Freed when
 * both handles are closed (a link's address can change at runtime while
 * the old sockets are still closing). */
struct tp_listener {
    struct ndfs_transport *t;
    int index;
    uv_tcp_t tcp;
    uv_udp_t udp;
    int handles; /* initialised, not yet closed */
};

struct tp_channel {
    ndfs_transport_recv_cb cb;
    void *data;
    bool warned;
    bool unregistered; /* had a receiver: its late messages are expected */
};

struct ndfs_transport {
    uv_loop_t *loop;
    char name[NDFS_TRANSPORT_NAME_MAX + 1];
    uint8_t *key;
    size_t key_len;
    unsigned hb_ms, fail_ms;
    size_t max_message, stripe_size, max_queued;
    uint64_t incarnation;
    /* Our end of each link: listen_str[i] ("" for none: a link that was
     * removed, or never had an address here); nlisten is 1 + the highest
     * index with an address (0: an endpoint that only connects out). */
    int nlisten;
    char listen_str[NDFS_TRANSPORT_MAX_LINKS][TP_ADDR_MAX];
    struct sockaddr_in listen_sa[NDFS_TRANSPORT_MAX_LINKS];
    struct tp_listener *listeners[NDFS_TRANSPORT_MAX_LINKS]; /* bound (after start) */
    bool started;
    bool frozen;       /* test hook: reads nothing, sends no heartbeat */
    GHashTable *peers; /* name -> struct tp_peer * */
    GHashTable *conns; /* struct tp_conn * set: every live connection */
    struct tp_channel channels[NDFS_CHANNEL_MAX];
    ndfs_transport_event_cb event_cb;
    void *event_data;
    uv_timer_t tick;
    GHashTable *warned; /* remote IP -> uv_now() of the last warning */
    uint64_t hb_counter;
    uint64_t sessions; /* sessions handed out */
    uint8_t udp_buf[NDFS_HEARTBEAT_MAX_LEN * 2];
    int handles; /* every open handle of the transport, its peers and connections */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

/* link.c */
/* "a.b.c.d:port" -> sa; 0 or -EINVAL. */
int tp_parse_addr(const char *s, struct sockaddr_in *sa);
void tp_sa_to_str(const struct sockaddr_storage *ss, char *out, size_t len);
/* A connection came to listener index. */
void tp_conn_accept(struct ndfs_transport *t, uv_stream_t *server, int index);
/* Dials link (to its peer's address) or, with probe, address; 0 or -errno. */
int tp_conn_dial(struct ndfs_transport *t, struct tp_link *link, struct tp_probe *probe,
                 const struct sockaddr_in *sa, const char *addr);
/* Starts closing c; status (-errno) goes to a probe; reason (NULL for an
 * orderly close) is logged, rate-limited per address. */
void tp_conn_close(struct tp_conn *c, int status, const char *reason);
/* Writes a frame: ctl/data must stay valid until the write ends, which ref
 * (NULL or a message holding them) guarantees. 0 or -errno (then c closes). */
int tp_conn_write(struct tp_conn *c, struct ndfs_frame_header *h, uint32_t payload_crc,
                  const uint8_t *control, const uint8_t *data, struct ndfs_tx_msg *ref);
void tp_conn_start_reading(struct tp_conn *c);
void tp_warn(struct ndfs_transport *t, const char *addr, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* The same, one line per peer name per interval. */
void tp_warn_peer(struct ndfs_transport *t, const char *peer, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
void tp_handle_closed(uv_handle_t *h); /* close callback of transport-level handles */
void tp_maybe_finish(struct ndfs_transport *t);

/* transport.c */
struct tp_peer *tp_peer_find(struct ndfs_transport *t, const char *name);
/* Finds or creates (as a dynamic peer) the peer name, for its session. */
struct tp_peer *tp_peer_get(struct ndfs_transport *t, const char *name);
/* A connection finished its handshake: attach it (or close it). */
void tp_conn_authenticated(struct tp_conn *c);
/* A connection that was attached (OPEN) is closing. */
void tp_conn_detached(struct tp_conn *c, struct tp_peer *p, int link);
/* An outgoing attempt for link failed or closed before authentication. */
void tp_dial_failed(struct tp_link *link, int status);
/* Frames after authentication. */
void tp_conn_frame(struct tp_conn *c, const struct ndfs_frame_header *h, const uint8_t *control,
                   const uint8_t *data);
/* A DATA frame that is a whole message, read in place into m (taken). */
void tp_conn_frame_msg(struct tp_conn *c, const struct ndfs_frame_header *h,
                       struct ndfs_message *m);
void tp_peer_pump(struct tp_peer *p);
void tp_emit(struct ndfs_transport *t, const char *peer, enum ndfs_transport_event ev, int link);
void tp_probe_done(struct tp_probe *probe, int status, const char *peer);
/* Dials link if it is configured, has an address and no connection. */
void tp_link_dial(struct tp_link *l);

/* listen.c */
/* Binds every address of listen_str (at start). */
int tp_listen_start(struct ndfs_transport *t, char **errmsg);
/* Closes every listener (transport closing). */
void tp_listen_close_all(struct ndfs_transport *t);
void tp_heartbeat_send(struct ndfs_transport *t);
/* May we dial link l: an endpoint with listen addresses dials only the
 * links it has an address for (it leaves through that address). */
bool tp_link_local_ok(const struct tp_link *l);

/* rto.c */
/* The link's retransmission timeout: max(4 x srtt, 2 x heartbeat,
 * TP_RTO_MIN_MS), at most a third of the failure timeout. */
unsigned tp_link_rto_ms(const struct tp_link *l);
/* A frame went out on link: make sure the RTO timer runs. */
void tp_rto_sent(struct tp_peer *p, int link);
void tp_rto_timer_cb(uv_timer_t *timer);
/* From the heartbeat tick: l heard nothing for its RTO: suspect. */
void tp_link_check_silence(struct tp_link *l, uint64_t now);
/* A PONG on l for a PING sent at sent_us: l carries traffic both ways. */
void tp_link_pong(struct tp_link *l, uint64_t sent_us);
/* The connection for new frames (for_ack: for an ack alone): open, not
 * suspect if any is, then the least loaded (for_ack: most recently heard);
 * NULL when none is open (or, for frames, all are full). */
struct tp_conn *tp_peer_pick_conn(struct tp_peer *p, bool for_ack);

/* Test hook: a blocked link drops its connection and makes no other until
 * unblocked. -ENOENT for an unknown peer or link. */
int ndfs__transport_block_link(struct ndfs_transport *t, const char *peer, int link, bool blocked);
/* Test hook: a silent cut of one link, as a cable pulled or packets
 * dropped: nothing is read from or written to its connection (frames sent
 * on it vanish), no heartbeat goes or is taken on it, no new connection for
 * it is accepted or made; the socket stays open, so the link goes down only
 * after the failure timeout. -ENOENT for an unknown peer or link. */
int ndfs__transport_cut_link(struct ndfs_transport *t, const char *peer, int link, bool cut);
/* Test hook: a frozen transport reads nothing and sends no heartbeat, like
 * a stopped process whose sockets stay open. */
int ndfs__transport_freeze(struct ndfs_transport *t, bool frozen);

#endif
