/* The driver's internals, shared by driver.c (requests, sends, answers),
 * driver_report.c (I/O states and io-timeouts, reports to ndfsd) and
 * driver_suspend.c (online reconfiguration: suspend, drain, ack, resume).
 * Everything here runs on the driver's loop thread unless said otherwise.
 * Private to the driver. */
#ifndef NDFS_DRIVER_PRIV_H
#define NDFS_DRIVER_PRIV_H

#include <glib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/transport.h>

#include "driver.h"
#include "pending.h"
#include "suspend_set.h"
#include "spin.h"
#include "wakeup.h"

/* Unsent requests (no address yet, queue full) are retried, states
 * reported and io-timeouts checked this often. */
#define TICK_MS 200
/* node.list is asked at most this often. */
#define REFRESH_INTERVAL_US (1000 * 1000)
/* Resends after a NACK: -EAGAIN (the master is behind our epoch), -ESTALE
 * (no lease), -ENXIO/-ENOENT when no epoch or mapping event comes. */
#define RETRY_AGAIN_US  (30 * 1000)
#define RETRY_LEASE_US  (200 * 1000)
#define RETRY_CHANGE_US (1000 * 1000)
/* A vdisk's I/O state goes to ndfsd at most this often while it has pending
 * requests (and at once when its blocked reason changes). */
#define REPORT_INTERVAL_US (1000 * 1000)
#define REASON_MAX         160

/* Local disk I/O in FUSE threads, counted per slot (vdisk id modulo
 * DRV_SLOTS) so that a suspension can wait for it: suspended is written on
 * the loop thread only; both are read and written with sequentially
 * consistent atomics (see ndfs_driver_local_enter). */
#define DRV_SLOTS 1024
struct drv_slot {
    /* one cache line each: FUSE threads of different vdisks do not share it */
    _Alignas(64) atomic_uint suspended; /* suspensions of vdisks of this slot */
    atomic_uint inflight;               /* local requests in progress */
};

/* A suspension command from another thread, for the loop. */
enum drv_susp_kind { DRV_SUSPEND, DRV_RESUME, DRV_RESUME_ALL };
struct drv_susp_cmd {
    enum drv_susp_kind kind;
    uint64_t txid;
    bool committed;
    uint64_t *ids; /* g_malloc'd */
    size_t n_ids;
};

/* One request of a FUSE thread; its parts are pending entries. */
struct drv_request {
    uint8_t op;
    uint16_t flags;
    uint64_t vdisk_id;
    uint64_t offset;
    size_t length;
    int64_t submitted_us;
    /* write: the bytes to write; read in parts: the bytes read (malloc'd);
     * read in one part: NULL (the reply's data is handed on as it is) */
    void *data;
    /* a write's data not malloc'd nor ndfs_iobuf_alloc'd: given back with
     * release(release_arg) */
    void (*release)(void *arg);
    void *release_arg;
    bool has_crc; /* data_crc: the write data's CRC32C, from the submitter */
    uint32_t data_crc;
    unsigned parts_left;
    /* 1 until it is answered, + 1 per send of a part's write data that the
     * transport still holds (sent without a copy); freed at 0 */
    unsigned refs;
    int status;       /* the first error, or 0 */
    size_t done_upto; /* bytes transferred from offset on: a short part ends it */
    ndfs_driver_done_cb done;
    void *opaque;
};

struct node_addrs {
    char *name;
    char **addresses;
};

/* Why a vdisk's requests wait. */
enum hold_reason {
    HOLD_NONE = 0,
    HOLD_QUEUE_FULL,  /* flow control, not blocked */
    HOLD_NO_ADDRESS,  /* the master's addresses are not known yet */
    HOLD_UNREACHABLE, /* sent, the master's links are down */
    HOLD_NO_MASTER,   /* the mapping's master path is marked failed */
    HOLD_PATH_FAILED, /* the master NACKed -EIO: until the mapping changes */
    HOLD_NO_LEASE,    /* -ESTALE */
    HOLD_EPOCH,       /* -EREMCHG: waiting for a newer epoch */
    HOLD_MAPPING,     /* -ENXIO: the master says it is not */
    HOLD_BEHIND,      /* -EAGAIN: the master is behind our epoch */
    HOLD_SUSPENDED,   /* vdisk.suspend: a reconfiguration changes its mapping */
};

/* The driver's view of one vdisk. */
struct drv_vdisk {
    uint64_t id;
    char name[NDFS_VDISK_NAME_MAX + 1];
    /* a NACK -EIO: (vdisk, failed_node) is not used while the mapping's
     * generation is failed_gen */
    bool failed;
    char failed_node[NDFS_NODE_NAME_MAX + 1];
    uint64_t failed_gen;
    /* the last hold, by the send rounds and NACKs */
    enum hold_reason hold;
    char hold_node[NDFS_NODE_NAME_MAX + 1];
    uint64_t hold_epoch;
    int64_t blocked_since_us; /* 0: not blocked */
    /* reports */
    char reported[REASON_MAX]; /* the blocked text last sent */
    bool report_owed;          /* a non-clear state was sent: an all-clear is due */
    bool report_again;         /* the last report failed */
    int64_t reported_us;
};

struct io_report {
    char name[NDFS_VDISK_NAME_MAX + 1];
    uint64_t id;
    uint32_t pending, in_flight;
    char blocked[REASON_MAX];
    uint64_t waiting_ms;
    int status; /* the call's, from the worker */
};

struct ndfs_driver {
    char *node;
    uint8_t *key;
    size_t key_len;
    struct control_link *link;
    size_t part_size;
    int (*route)(void *data, uint64_t vdisk_id, struct vdisk_master *out);
    void *route_data;
    GThread *thread;

    GMutex lock;
    GCond started_cond;
    bool started;       /* protected by lock */
    int start_status;   /* protected by lock */
    char *start_errmsg; /* protected by lock */
    GQueue incoming;    /* struct drv_request *; protected by lock */
    bool stopping;      /* protected by lock */
    bool refresh_asked; /* protected by lock */
    bool mapping_asked; /* protected by lock */
    uint64_t epoch_in;  /* protected by lock */
    GQueue susp_cmds;   /* struct drv_susp_cmd *; protected by lock */
    bool drain_asked;   /* a slot's local I/O drained; protected by lock */

    /* the loop thread's */
    uv_loop_t loop;
    /* Other threads send it only under lock and only while !stopping: the
     * loop closes it after it saw stopping, and ndfs_driver_free() frees d
     * right after, so a send outside the lock could touch freed memory. */
    uv_async_t wake;
    /* The same for ndfs_driver_submit (every request), under the same
     * rules: an eventfd, so the loop never spins for a preempted sender. */
    struct ndfs_wakeup submit_wake;
    struct ndfs_spin spin; /* polls poll_us after I/O */
    unsigned poll_us;
    uv_timer_t tick;
    uv_timer_t retry; /* the earliest short resend delay */
    struct ndfs_transport *t;
    struct pending_table *pending;
    uint64_t epoch;
    uint64_t next_id;
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
    GHashTable *vdisks;  /* uint64_t *id -> struct drv_vdisk * */
    /* a send round */
    GPtrArray *round_blocked; /* peers that refused this round (queue full): later entries wait */
    int64_t round_now_us;
    int64_t round_next_us; /* the earliest not_before of a held entry, 0: none */
    char route_buf[NDFS_NODE_NAME_MAX + 1];
    /* reports to ndfsd, sent by a worker */
    GPtrArray *reports;         /* struct io_report *, to send */
    GPtrArray *reports_sending; /* struct io_report *, the worker's */
    bool reporting;
    bool reports_off; /* ndfsd does not know vdisk.io-state */
    uv_work_t report_req;
    /* online reconfiguration (driver_suspend.c) */
    struct suspend_set *susp; /* the loop thread's */
    GArray *acks;             /* uint64_t txids to ack, the loop thread's */
    GArray *acks_sending;     /* uint64_t txids, the worker's */
    bool acking;
    uv_work_t ack_req;
    /* local I/O of FUSE threads, by vdisk id modulo DRV_SLOTS */
    struct drv_slot *slots; /* DRV_SLOTS of them, aligned_alloc'd */
};

/* driver.c */
struct drv_vdisk *drv_vdisk_state(struct ndfs_driver *d, uint64_t id);
void drv_set_hold(struct drv_vdisk *vs, enum hold_reason why, const char *node, uint64_t epoch);
/* A reason that ends once the entry could be sent. */
bool drv_send_hold(enum hold_reason why);
/* Removes e from the table and answers its part with status. */
void drv_fail_entry(struct ndfs_driver *d, struct pending_entry *e, int status);
/* Sends every unsent entry that may go, oldest first. */
void drv_flush_unsent(struct ndfs_driver *d);

/* driver_report.c: looks at every vdisk with requests (or a report owed):
 * why they wait, io-timeouts, reports to ndfsd. */
void drv_update_states(struct ndfs_driver *d);

/* driver_suspend.c */
/* Runs the commands other threads queued (cmds: struct drv_susp_cmd *). */
void drv_suspend_run(struct ndfs_driver *d, GQueue *cmds);
/* Acks the suspensions whose vdisks have nothing in flight any more. */
void drv_suspend_check(struct ndfs_driver *d);
/* The tick: a suspension without resume for too long ends here. */
void drv_suspend_tick(struct ndfs_driver *d);
void drv_susp_cmd_free(struct drv_susp_cmd *c);
/* Is a reconfiguration holding vdisk_id's requests? */
bool drv_suspended(struct ndfs_driver *d, uint64_t vdisk_id);
/* Frees what driver_suspend.c keeps (at release). */
void drv_suspend_release(struct ndfs_driver *d);

#endif
