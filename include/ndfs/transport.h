/* The cluster transport (CTI): reliable, ordered, authenticated messages
 * between named endpoints over one or more links per peer.
 *
 * A link is one address pair (our listen address i, the peer's address i);
 * each link carries at most one TCP connection. The links to one peer form
 * its logical link: a message goes over any link that is up, is resent over
 * another when its link fails before the peer acknowledged it, and is
 * delivered exactly once and in order (per peer). Large messages are striped
 * across the up links. Every connection starts with an HMAC challenge-
 * response keyed with the cluster key; nothing else is accepted before it.
 * Nodes with listen addresses also send UDP heartbeats on every link to
 * their configured peers; a link is up while its connection is open and the
 * peer was heard from (heartbeat or frame) within the failure timeout.
 *
 * Endpoints without listen addresses (ndfs mounts) only connect out.
 * An authenticated peer that is not configured (a mount, a joining node) is
 * a dynamic peer: it can be answered over the connections it opened.
 *
 * Messages are a control part and a data part, tagged with a channel (which
 * client of the transport gets it), a request id and an epoch. Everything
 * runs on the loop thread given at creation; no function may be called from
 * another thread. Functions return 0 or -errno. transport/ knows nothing of
 * disks, FUSE or the CCD. The process must ignore SIGPIPE (libuv writes to
 * sockets with write(2); a peer that vanished would kill it otherwise). */
#ifndef NDFS_TRANSPORT_H
#define NDFS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NDFS_TRANSPORT_MAX_LINKS 8
#define NDFS_TRANSPORT_NAME_MAX  64 /* endpoint names: [A-Za-z0-9._-]{1,64} */
#define NDFS_TRANSPORT_KEY_MIN   32 /* bytes of cluster key at least */

/* Channels: who receives a message. */
enum ndfs_channel {
    NDFS_CHANNEL_RAFT = 1,       /* CCD replication (libraft streams) */
    NDFS_CHANNEL_MEMBERSHIP = 2, /* membership and leases */
    NDFS_CHANNEL_CONTROL = 3,    /* node-to-node requests: join, forwarded changes */
    NDFS_CHANNEL_IO = 4,         /* driver <-> master data requests */
    NDFS_CHANNEL_MAX = 16,
};

struct ndfs_transport;

struct ndfs_transport_config {
    const char *name;          /* our endpoint name: a node name, or e.g. "n3.mount-1234" */
    const char *const *listen; /* NULL-terminated "IPv4:port" per link; NULL or {NULL}:
                                  connect out only */
    const uint8_t *key;        /* cluster key, key_len >= NDFS_TRANSPORT_KEY_MIN; copied */
    size_t key_len;
    unsigned heartbeat_interval_ms; /* 0: 200 */
    unsigned failure_timeout_ms;    /* 0: 1500; no sign of life on a link this long: down */
    size_t max_message;             /* largest control+data accepted or sent; 0: 16 MiB */
    size_t stripe_size;             /* data parts larger than this are striped across the
                                       up links in pieces of this size; 0: 256 KiB */
    size_t max_queued;              /* bytes queued unacknowledged per peer; 0: 64 MiB */
};

/* Creates a transport (nothing listens yet). On error *errmsg (g_malloc'd)
 * says why: bad address, key too short, bad name. */
int ndfs_transport_new(uv_loop_t *loop, const struct ndfs_transport_config *cfg,
                       struct ndfs_transport **out, char **errmsg);
/* Binds TCP and UDP on every listen address. -EADDRINUSE etc. with errmsg
 * naming the address. */
int ndfs_transport_start(struct ndfs_transport *t, char **errmsg);
/* Changes our addresses while running (ndfsadm link add / remove):
 * listen[i] is our end of link i, "" for none (the link is gone here; the
 * others keep their index), NULL-terminated. The new addresses are bound
 * first: if one cannot be, nothing changes and errmsg names it. Then the
 * sockets and connections of the addresses removed or changed close, and
 * links over new addresses are dialled. An endpoint with addresses keeps
 * at least one. Before ndfs_transport_start it only records them. */
int ndfs_transport_listen_set(struct ndfs_transport *t, const char *const *listen, char **errmsg);
/* Could this process listen on address (TCP and UDP)? 0, or -errno with
 * errmsg naming the address and the reason. Nothing stays bound. */
int ndfs_transport_listen_check(const char *address, char **errmsg);
/* Closes every connection and socket; frees t; cb (may be NULL) runs when
 * every handle is closed. Queued messages are dropped. */
void ndfs_transport_close(struct ndfs_transport *t, void (*cb)(void *data), void *data);
const char *ndfs_transport_name(const struct ndfs_transport *t);

/* Adds or updates a configured peer: addresses[i] ("IPv4:port") is the
 * peer's end of link i (NULL-terminated, at most NDFS_TRANSPORT_MAX_LINKS;
 * "" for a link index the peer has no address for, at least one not "").
 * Links are (our listen[i], addresses[i]): an endpoint with listen
 * addresses dials only links it has an address for; one without connects
 * to each of them. The transport keeps every link of a
 * configured peer connected (reconnecting with backoff). */
int ndfs_transport_peer_set(struct ndfs_transport *t, const char *name,
                            const char *const *addresses);
/* Forgets a peer: closes its connections, drops what is queued for it. */
int ndfs_transport_peer_remove(struct ndfs_transport *t, const char *name);

/* Connects once to address (link 0), authenticates and calls cb with the
 * name the peer proved; the peer then stays known as a peer with that one
 * address until ndfs_transport_peer_set() or _remove(). Used to join a
 * cluster through any member's address. status < 0: could not connect or
 * authenticate within the failure timeout (-ETIMEDOUT, -ECONNREFUSED,
 * -EACCES for a failed authentication; -ECANCELED when the transport is
 * closed first). */
typedef void (*ndfs_transport_probe_cb)(struct ndfs_transport *t, int status, const char *peer,
                                        void *data);
int ndfs_transport_probe(struct ndfs_transport *t, const char *address, ndfs_transport_probe_cb cb,
                         void *data);

/* A received message. The transport owns it (and its buffers) until the
 * client calls ndfs_transport_release(); the client may keep it past the
 * callback. Data of NDFS_MESSAGE_DATA_ALIGN bytes or more starts on an
 * NDFS_MESSAGE_DATA_ALIGN boundary (a disk opened O_DIRECT takes it as it
 * is). */
#define NDFS_MESSAGE_DATA_ALIGN 4096
struct ndfs_message {
    char peer[NDFS_TRANSPORT_NAME_MAX + 1];
    uint16_t channel;
    uint64_t request_id;
    uint64_t epoch;
    uint8_t *control;
    size_t control_len;
    uint8_t *data;
    size_t data_len;
};
typedef void (*ndfs_transport_recv_cb)(struct ndfs_transport *t, struct ndfs_message *msg,
                                       void *data);
/* One receiver per channel; -EEXIST if the channel has one. Messages for a
 * channel without a receiver are released and logged once. */
int ndfs_transport_register(struct ndfs_transport *t, uint16_t channel, ndfs_transport_recv_cb cb,
                            void *data);
void ndfs_transport_release(struct ndfs_transport *t, struct ndfs_message *msg);
/* Removes the channel's receiver (its data is not used after this returns;
 * messages it still holds stay valid until released). Messages for the
 * channel afterwards are released and logged once; a receiver may register
 * again. -ENOENT if the channel has no receiver, -EINVAL for a bad one. */
int ndfs_transport_unregister(struct ndfs_transport *t, uint16_t channel);

/* Queues a message for peer: control and data are copied. It is delivered
 * once, in order with the other messages to that peer, as soon as a link is
 * up, surviving the failure of links. -ENOENT: unknown peer; -EMSGSIZE:
 * larger than max_message; -ENOBUFS: max_queued reached. If the peer
 * restarts (a new incarnation), messages not yet acknowledged are dropped
 * and NDFS_PEER_RESET is reported. */
int ndfs_transport_send(struct ndfs_transport *t, const char *peer, uint16_t channel,
                        uint64_t request_id, uint64_t epoch, const void *control,
                        size_t control_len, const void *data, size_t data_len);

/* The same, but data is not copied (control is): the transport uses it in
 * place until the peer acknowledged it and no write holds it any more,
 * then calls release(release_arg) on the loop thread, once (also when the
 * message is dropped: peer reset or removed, transport closed, maybe from
 * within those calls). The caller must not change or free data before
 * that. When it returns an error, release is not called: data is still
 * the caller's. flags: 0 or NDFS_SEND_WHOLE. */
int ndfs_transport_send_borrowed(struct ndfs_transport *t, const char *peer, uint16_t channel,
                                 uint64_t request_id, uint64_t epoch, const void *control,
                                 size_t control_len, const void *data, size_t data_len,
                                 unsigned flags, void (*release)(void *arg), void *release_arg);
/* One frame whatever the stripe size, on one link: the peer reads its data
 * (64 KiB or more) from the socket straight into the message it delivers
 * instead of copying the stripes together (I/O messages, at most 1 MiB). */
#define NDFS_SEND_WHOLE 0x1u

/* The CRC32C that frames carry, of data_len bytes of data: a sender that
 * has the bytes in its CPU's cache (it just received or wrote them)
 * computes it there, on its own thread, for ..._send_borrowed_crc. */
uint32_t ndfs_transport_data_crc(const void *data, size_t data_len);

/* ndfs_transport_send_borrowed with flags NDFS_SEND_WHOLE (required:
 * -EINVAL without it) and data_crc = ndfs_transport_data_crc(data,
 * data_len): the transport checksums only the control and the header. */
int ndfs_transport_send_borrowed_crc(struct ndfs_transport *t, const char *peer, uint16_t channel,
                                     uint64_t request_id, uint64_t epoch, const void *control,
                                     size_t control_len, const void *data, size_t data_len,
                                     uint32_t data_crc, unsigned flags, void (*release)(void *arg),
                                     void *release_arg);

enum ndfs_transport_event {
    NDFS_PEER_UP = 1, /* the first link to the peer came up */
    NDFS_PEER_DOWN,   /* its last link went down */
    NDFS_PEER_RESET,  /* the peer restarted: unacknowledged messages were dropped */
    NDFS_LINK_UP,     /* link index went up */
    NDFS_LINK_DOWN,   /* link index went down */
    NDFS_AUTH_FAILED, /* a connection failed authentication (peer: its address) */
};
typedef void (*ndfs_transport_event_cb)(struct ndfs_transport *t, const char *peer,
                                        enum ndfs_transport_event ev, int link, void *data);
void ndfs_transport_set_event_cb(struct ndfs_transport *t, ndfs_transport_event_cb cb, void *data);

/* Is any link to peer up? */
bool ndfs_transport_peer_up(struct ndfs_transport *t, const char *peer);

/* Link statistics, for `ndfsadm link list`. */
struct ndfs_link_info {
    const char *peer;
    int index;
    const char *local;  /* our address ("" for an outgoing link without listen address) */
    const char *remote; /* the peer's address (for an accepted dynamic link: as seen) */
    bool up;
    bool connected;
    uint32_t rtt_us; /* smoothed, 0 when unknown */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t last_heard_ms_ago;
};
/* Calls fn for every link of every peer; stops when fn returns non-zero. */
int ndfs_transport_foreach_link(struct ndfs_transport *t,
                                int (*fn)(const struct ndfs_link_info *li, void *data), void *data);

/* Reads a cluster key file: at least NDFS_TRANSPORT_KEY_MIN bytes after
 * hex-decoding (the file holds 64 hex digits and a newline, mode 0600).
 * -EINVAL with errmsg for a bad file, -EPERM when it is readable by others. */
int ndfs_transport_key_load(const char *path, uint8_t **key, size_t *key_len, char **errmsg);
/* Writes a new random key to path (O_EXCL, mode 0600). */
int ndfs_transport_key_create(const char *path, char **errmsg);

#endif
