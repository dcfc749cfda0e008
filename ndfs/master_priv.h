/* Private to the master (master.c: requests, checks, answers, drains;
 * master_io.c: the disk I/O of its jobs, on threads or through AIO). */
#ifndef NDFS_MASTER_PRIV_H
#define NDFS_MASTER_PRIV_H

#include <glib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "aio.h"
#include "io_proto.h"
#include "master.h"
#include "spin.h"
#include "wakeup.h"

/* Disk I/O threads: enough for an application's queue depth to reach the disk. */
#define MASTER_WORKERS 16
/* O_DIRECT reads and writes in flight through AIO at most; more wait for a
 * thread */
#define MASTER_AIO_DEPTH 128

/* A vdisk as the master sees its row: one struct per mapping (which node
 * masters it, through which path, and whether that path is marked failed);
 * a new mapping replaces the struct and revokes the old one. Owned by the
 * loop thread; a job holds a reference while a worker uses it. */
struct master_disk {
    unsigned refs; /* the map's + one per job; loop thread */
    uint64_t id;
    char *name;
    char *path;       /* the current master's path (ndfs_vdisk_master_path) */
    uint64_t size;    /* loop thread */
    uint64_t version; /* the row's; loop thread */
    bool mine;        /* the current master (ndfs_vdisk_master_node) is this node */
    bool failed;      /* that path is marked failed */
    /* set by the loop when the mapping changes (or the vdisk goes): queued
     * jobs are NACKed -ENXIO instead of reaching the disk; workers read it */
    atomic_bool revoked;
    bool reported;         /* path_failed was called for this row version; loop thread */
    unsigned refused;      /* requests refused for the lease in this loss; loop thread */
    unsigned refused_said; /* how many of them were logged; loop thread */
    bool refused_queued;   /* in m->refusals; loop thread */
    GMutex open_lock;      /* opens the disk once, on a worker */
    int fd;                /* -1 until opened; protected by open_lock */
    int fd_direct;         /* O_DIRECT descriptor, -1 until needed; protected by open_lock */
    atomic_int aio_fd;     /* fd_direct once open, for the loop's AIO; -1 before */
    bool aio_off;          /* its file refused RWF_NOWAIT AIO: threads only; loop thread */
    bool open_failed;      /* logged once; protected by open_lock */
    /* large reads (MASTER_LARGE_READ or more) at the disk, their bytes; and
     * those waiting their turn (struct master_job *, FIFO). Loop thread. */
    uint64_t reads_inflight;
    GQueue reads_waiting;
};

/* Reads of this many bytes or more count against [vdisk]
 * master-read-inflight. */
#define MASTER_LARGE_READ (128u << 10)

struct master_job {
    struct ndfs_master *m;
    struct master_disk *disk;
    struct ndfs_message *msg; /* released once answered */
    struct ndfs_io_request req;
    uint32_t len; /* clamped to the disk's end */
    void *buf;    /* read data (localio_alloc'd), sent with the reply */
    int32_t status;
    int path_err; /* the disk's error behind a -EIO status (a path failure); 0: none */
    bool fenced;  /* refused: the lease had run out */
    bool revoked; /* refused: the mapping moved on (-ENXIO) */
    bool via_aio; /* done through AIO, not on a thread */
    bool counted; /* a large read in its disk's reads_inflight */
};

struct ndfs_master {
    uv_loop_t *loop;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *membership;
    const _Atomic uint64_t *lease; /* membership's lease word; NULL: no lease checks */
    char *node;
    GHashTable *by_id; /* uint64_t *id -> struct master_disk *; loop thread */
    GHashTable *said;  /* log-once keys; loop thread */
    /* the disk I/O threads: jobs queued under pool_lock; a push wakes an
     * idle thread (one futex wake) rather than GThreadPool's shared
     * unused-thread queues (4.5 futex calls per request at QD1) */
    GMutex pool_lock;
    GCond pool_cond;
    GQueue pool_jobs; /* struct master_job * */
    unsigned pool_idle;
    bool pool_stop;
    bool pool_running;
    GThread *threads[MASTER_WORKERS];
    unsigned n_threads;
    GAsyncQueue *done;       /* struct master_job * back to the loop */
    struct ndfs_aio *aio;    /* O_DIRECT reads and writes without a thread; NULL: none */
    struct ndfs_wakeup wake; /* jobs done, refusals to log */
    struct ndfs_spin spin;
    GPtrArray *refusals; /* disks with lease refusals to log (a reference each) */
    unsigned in_flight;
    uint64_t jobs_aio, jobs_threads; /* disk jobs answered each way; loop thread */
    uint64_t read_inflight_max;      /* [vdisk] master-read-inflight; 0: no limit */
    uint64_t reads_waited;           /* large reads that waited their turn; loop thread */
    GHashTable *busy; /* uint64_t *id -> GUINT_TO_POINTER(jobs in flight); loop thread */
    GList *drains;    /* struct drain *, waiting for vdisks to have no job in flight */
    bool closing;
    ndfs_master_path_failed_cb path_failed_cb;
    void *path_failed_data;
    void (*close_cb)(void *data);
    void *close_data;
};

/* master.c */
void master_say_once(struct ndfs_master *m, const char *key, GLogLevelFlags level, const char *msg);
/* Answers j and frees it; loop thread. */
void master_job_done(struct ndfs_master *m, struct master_job *j);
/* Once nothing is in flight on a closing master: the threads stop, the
 * loop's handles close. */
void master_finish_close(struct ndfs_master *m);

/* master_io.c */
/* The membership's lease, as published, is valid now. Any thread. */
bool master_lease_ok(const struct ndfs_master *m);
/* Starts j's disk I/O, or queues it behind its disk's large reads; the job
 * comes back to master_job_done on the loop. */
void master_io_start(struct ndfs_master *m, struct master_job *j);
/* j's disk I/O is over (master_job_done): the large reads waiting behind it
 * that now fit start. Loop thread. */
void master_io_done(struct ndfs_master *m, struct master_job *j);
int master_pool_start(struct ndfs_master *m, char **errmsg);
/* Stops and joins the threads (their queue is empty). */
void master_pool_stop(struct ndfs_master *m);

#endif
