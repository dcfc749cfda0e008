/* The control socket of ndfsd: accepts ndfsadm and ndfs mounts on a unix
 * socket, splits their byte streams into control frames (ndfs/control.h),
 * hands requests to the command handlers (commands.c) and sends responses
 * and events back. Everything runs on the loop thread. Private to ndfsd. */
#ifndef NDFS_SERVER_H
#define NDFS_SERVER_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include <ndfs/ccd.h>

#include "perm.h"

struct ndfs_cluster;
struct ndfs_master;
struct ndfs_membership;
struct ndfs_reconfig;

struct ndfs_server {
    uv_loop_t *loop;
    struct ndfs_ccd *ccd;
    char *node_name;
    char *socket_path;
    char *admin_group;   /* NULL: only root may change */
    gid_t admin_gid;     /* (gid_t)-1 when admin_group is NULL */
    uv_pipe_t *listener; /* NULL once closing; frees itself on close */
    bool socket_created; /* we bound socket_path: unlink it on stop */
    bool stopping;
    int last_accept_error;              /* logged once until an accept succeeds */
    GList *conns;                       /* struct ndfs_conn *, open ones only */
    GList *remote_conns;                /* forwarded changes not closing: stop closes them */
    GHashTable *vdisk_ids;              /* name -> uint64_t id, to announce removals */
    GHashTable *pending_paths;          /* "node:path" of vdisk creates in flight */
    struct ndfs_cluster *cluster;       /* NULL: a single node without network */
    struct ndfs_membership *membership; /* NULL until started, or without network */
    struct ndfs_reconfig *reconfig;     /* the reconfiguration protocol; NULL until ready */
    char *key_file;                     /* for hello; "" without network */
    ndfs_ccd_watch_cb watch_chain;      /* also told every CCD change (ndfsd's) */
    void *watch_chain_data;
    /* High availability: the latest values ndfsd told (for hello) */
    uint64_t epoch;             /* last epoch announced; 0: none yet */
    bool lease_known;           /* ndfs_server_lease_changed was called */
    uint64_t lease_expiry_ns;   /* CLOCK_MONOTONIC; UINT64_MAX never, 0 none */
    uint64_t io_timeout_ms;     /* [vdisk] io-timeout; 0: wait forever */
    unsigned poll_us;           /* [vdisk] poll-us, for the mounts */
    struct ndfs_master *master; /* for status; NULL: none (yet, or any more) */
};

/* A mount's I/O state of one vdisk (vdisk.io-state), kept per connection. */
struct ndfs_io_state {
    uint64_t id;         /* the vdisk's id, so a later vdisk of the name is not confused */
    uint32_t pending;    /* requests in the mount's pending table */
    uint32_t in_flight;  /* of which sent and unanswered */
    char *blocked;       /* why the others wait; "" when nothing waits */
    uint64_t waiting_ms; /* the oldest wait, when reported */
    int64_t reported_us; /* g_get_monotonic_time() when reported */
};

/* The sums of the I/O states of one vdisk over this node's connections. */
struct ndfs_io_summary {
    uint32_t pending; /* sums, saturated at UINT32_MAX */
    uint32_t in_flight;
    const char *blocked; /* the first non-empty reason, borrowed; "" when none */
    uint64_t waiting_ms; /* the longest, aged since reported while blocked */
};

/* One client connection. Refcounted: the open handle holds one reference,
 * each CCD proposal or write in flight holds another, so an answer that
 * arrives after the client went away is dropped safely. */
struct ndfs_conn {
    struct ndfs_server *server;
    uv_pipe_t pipe;
    unsigned refs;
    bool closing;      /* uv_close called: send nothing more */
    bool watcher;      /* sent "watch": gets vdisk events */
    char *remote_peer; /* a change forwarded by node remote_peer: answers go back to it
                          through server->cluster; no pipe, never in server->conns */
    struct ndfs_peer peer;
    GByteArray *inbuf;       /* bytes of an incomplete frame */
    GHashTable *open_counts; /* vdisk name -> GUINT_TO_POINTER(opens) */
    GHashTable *io_states;   /* vdisk name -> struct ndfs_io_state * */
    char readbuf[64 * 1024];
};

/* Prepares the control socket at socket_path: checks that admin_group
 * exists, creates the parent directory (0755), refuses a path a live server
 * listens on and removes a stale socket. Listens on nothing yet. On error
 * *errmsg (g_malloc'd) says what failed. */
int ndfs_server_new(uv_loop_t *loop, struct ndfs_ccd *ccd, const char *node_name,
                    const char *socket_path, const char *admin_group, struct ndfs_server **out,
                    char **errmsg);
/* Once the CCD is ready: binds the socket (mode 0660, group admin_group),
 * starts the vdisk events and accepts clients. On error *errmsg says what
 * failed and the server is stopped (free it as usual). */
int ndfs_server_listen(struct ndfs_server *s, char **errmsg);
/* Stops accepting, closes every connection and unlinks the socket. The
 * handles finish closing during the next loop iterations; free the server
 * with ndfs_server_free() after the CCD is closed (its cancelled proposals
 * still refer to connections). */
void ndfs_server_stop(struct ndfs_server *s);
void ndfs_server_free(struct ndfs_server *s);

/* The cluster parts, once created (NULL without network). */
void ndfs_server_set_cluster(struct ndfs_server *s, struct ndfs_cluster *cluster,
                             const char *key_file);
void ndfs_server_set_membership(struct ndfs_server *s, struct ndfs_membership *m);
/* The reconfiguration protocol: told of mounts' acks and closed connections
 * (NULL: none, e.g. once it closed). */
void ndfs_server_set_reconfig(struct ndfs_server *s, struct ndfs_reconfig *r);
/* Runs a change that node peer forwarded (its permission check passed
 * there); the answer goes back to peer with request id. args borrowed. */
void ndfs_server_remote_request(struct ndfs_server *s, const char *peer, uint64_t id,
                                const char *command, GVariant *args, uid_t uid, gid_t gid,
                                pid_t pid);

/* High availability: ndfsd tells the server of a new committed epoch and
 * of every move of this node's lease (membership callbacks); the server
 * sends the "epoch" and "lease" events to watchers and answers hello with
 * the latest values. io_timeout_ms ([vdisk] io-timeout, 0: forever) goes
 * to mounts in hello. */
void ndfs_server_epoch_changed(struct ndfs_server *s, uint64_t epoch);
void ndfs_server_lease_changed(struct ndfs_server *s, uint64_t expiry_ns);
void ndfs_server_set_io_timeout(struct ndfs_server *s, uint64_t io_timeout_ms);
/* The master whose disk job counts status reports; NULL: none. */
void ndfs_server_set_master(struct ndfs_server *s, struct ndfs_master *m);
/* [vdisk] poll-us, which hello hands to mounts (their driver polls as long). */
void ndfs_server_set_poll_us(struct ndfs_server *s, unsigned poll_us);

/* Is something listening on path? 1 yes, 0 no (nothing there or a stale
 * socket), -errno when path exists but is not a socket or cannot be probed. */
int ndfs_server_probe_socket(const char *path);

void ndfs_conn_ref(struct ndfs_conn *c);
void ndfs_conn_unref(struct ndfs_conn *c);
/* Sends a response. result is an a{sv} (floating refs consumed; NULL: {}).
 * Does nothing once the connection is closing. */
void ndfs_conn_reply(struct ndfs_conn *c, uint64_t id, int status, const char *message,
                     GVariant *result);
void ndfs_conn_reply_error(struct ndfs_conn *c, uint64_t id, int status, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* Sends an event (args: a{sv}, floating consumed) to every watcher. */
void ndfs_server_broadcast(struct ndfs_server *s, const char *event, GVariant *args);
/* Sum of the open counts of vdisk name over all connections; *mounts (may
 * be NULL) is the number of connections that hold it open. */
unsigned ndfs_server_open_count(struct ndfs_server *s, const char *name, unsigned *mounts);
/* The I/O states that this node's connections reported for vdisk id (of
 * that name); the summary's strings are valid until the loop runs on. */
void ndfs_server_io_summary(struct ndfs_server *s, const char *name, uint64_t id,
                            struct ndfs_io_summary *out);
/* The value hello answers as lease-expiry-ns: the latest one ndfsd told,
 * before that UINT64_MAX without a cluster, else the membership's (0 when
 * there is none yet). */
uint64_t ndfs_server_lease_expiry_ns(struct ndfs_server *s);
void ndfs_io_state_free(struct ndfs_io_state *st);

#endif
