/* ndfsd.conf: a GKeyFile (see ndfsd.conf(5)). Loading validates every key;
 * an unknown group or key, or a bad value, is an error that names the file,
 * the key and the reason. */
#ifndef NDFS_CONFIG_H
#define NDFS_CONFIG_H

#include <glib.h>
#include <stdint.h>

struct ndfs_config {
    char *file;                     /* the file it was loaded from */
    char *node_name;                /* [node] name, required */
    char *data_dir;                 /* [node] data-dir, required, absolute */
    char *control_socket;           /* [node] control-socket, default /run/ndfs/<name>.sock */
    char *admin_group;              /* [node] admin-group, NULL: only root may change */
    char *listen;                   /* [cluster] listen, "" when absent */
    char **listen_addrs;            /* listen split: "IPv4:port" per link, NULL-terminated,
                                       empty when there is no network */
    char *join;                     /* [cluster] join, "" when absent */
    char *key_file;                 /* [cluster] key-file, "" when absent; required with listen */
    uint64_t stripe_size;           /* [cluster] stripe-size in bytes, default 256K; 0: "off",
                                       every message goes whole over one link */
    unsigned snapshot_threshold;    /* [ccd] snapshot-threshold, default 1024 */
    unsigned election_timeout_ms;   /* [ccd] election-timeout-ms, default 1000 */
    unsigned heartbeat_interval_ms; /* [membership] heartbeat-interval-ms, default 200 */
    unsigned failure_timeout_ms;    /* [membership] failure-timeout-ms, default 1500 */
    char *fence_command;            /* [membership] fence-command, NULL when absent: an
                                       absolute path, run by the leader as
                                       "fence-command NODE" before a takeover */
    uint64_t io_timeout_ms;         /* [vdisk] io-timeout ("30s", "500ms", "2m", a number of
                                       seconds; 0 or "forever": the default) */
    unsigned poll_us;               /* [vdisk] poll-us, default 100 (0 to 10000): how long the
                                       master's loop and the mounts' drivers poll after I/O
                                       before they sleep; 0: never */
    uint64_t read_inflight;         /* [vdisk] master-read-inflight in bytes, default 1M (64K
                                       to 1G); 0: "off", no limit */
    unsigned ack_timeout_ms;        /* [reconfig] ack-timeout-ms, default 2000 (100 to
                                       600000): a reconfiguration is cancelled when a
                                       member has not answered "update pending" by then */
};

#define NDFS_CONFIG_MAX_LINKS 8
/* [cluster] stripe-size bounds (besides 0/off): smaller pieces would cost a
 * frame header per few bytes; the transport sends at most 16 MiB at once. */
#define NDFS_CONFIG_STRIPE_DEFAULT (256u << 10)
#define NDFS_CONFIG_STRIPE_MIN     (4u << 10)
#define NDFS_CONFIG_STRIPE_MAX     (16u << 20)

#define NDFS_CONFIG_READ_INFLIGHT_DEFAULT (1u << 20)
#define NDFS_CONFIG_READ_INFLIGHT_MIN     (64u << 10)
#define NDFS_CONFIG_READ_INFLIGHT_MAX     (1u << 30)

#define NDFS_CONFIG_POLL_US_DEFAULT 100u
#define NDFS_CONFIG_POLL_US_MAX     10000u

/* "A.B.C.D:PORT" with a port from 1 to 65535. */
gboolean ndfs_config_address_valid(const char *address);

/* Returns 0, or -errno with *error set (G_KEY_FILE_ERROR or G_FILE_ERROR). */
int ndfs_config_load(const char *file, struct ndfs_config *out, GError **error);
/* The same from memory; label names the source in messages. */
int ndfs_config_load_data(const char *data, gsize len, const char *label, struct ndfs_config *out,
                          GError **error);
void ndfs_config_clear(struct ndfs_config *c);

#endif
