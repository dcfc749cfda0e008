#define G_LOG_DOMAIN "ndfs-master"

#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io_proto.h"
#include "localio.h"
#include "wakeup.h"

/* Disk I/O threads: enough for an application's queue depth to reach the disk. */
#define MASTER_WORKERS 16

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
    bool open_failed;      /* logged once; protected by open_lock */
};

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
    struct ndfs_wakeup wake; /* jobs done, refusals to log */
    GPtrArray *refusals;     /* disks with lease refusals to log (a reference each) */
    unsigned in_flight;
    GHashTable *busy; /* uint64_t *id -> GUINT_TO_POINTER(jobs in flight); loop thread */
    GList *drains;    /* struct drain *, waiting for vdisks to have no job in flight */
    bool closing;
    ndfs_master_path_failed_cb path_failed_cb;
    void *path_failed_data;
    void (*close_cb)(void *data);
    void *close_data;
};

/* A reconfiguration waiting for the jobs of some vdisks (ndfs_master_drain). */
struct drain {
    uint64_t *ids;
    size_t n_ids;
    void (*cb)(int status, void *data);
    void *data;
};

static void disk_unref(struct master_disk *d)
{
    if (--d->refs > 0)
        return;
    if (d->fd >= 0)
        close(d->fd);
    if (d->fd_direct >= 0)
        close(d->fd_direct);
    g_mutex_clear(&d->open_lock);
    g_free(d->name);
    g_free(d->path);
    g_free(d);
}

/* The map lets go of d: jobs still queued for it are NACKed -ENXIO. */
static void unlist_disk(gpointer p)
{
    struct master_disk *d = p;
    atomic_store(&d->revoked, true);
    disk_unref(d);
}

/* Logs msg once per key (a vdisk and a reason), not once per request. */
static void say_once(struct ndfs_master *m, const char *key, GLogLevelFlags level, const char *msg)
{
    if (g_hash_table_contains(m->said, key))
        return;
    g_hash_table_add(m->said, g_strdup(key));
    g_log(G_LOG_DOMAIN, level, "%s", msg);
}

static void add_disk(struct ndfs_master *m, const struct ndfs_vdisk *v)
{
    struct master_disk *old = g_hash_table_lookup(m->by_id, &v->id);
    const char *path = ndfs_vdisk_master_path(v);
    bool mine = g_strcmp0(ndfs_vdisk_master_node(v), m->node) == 0;
    bool on_secondary = v->on_secondary && v->secondary_node != NULL;
    bool failed = on_secondary ? v->secondary_failed : v->primary_failed;
    if (old && old->mine == mine && old->failed == failed && g_strcmp0(old->path, path) == 0 &&
        strcmp(old->name, v->name) == 0) {
        /* the same mapping: the open disk and its queued jobs carry on */
        old->size = v->size;
        if (old->version != v->version) {
            old->version = v->version;
            old->reported = false;
        }
        return;
    }
    struct master_disk *d = g_new0(struct master_disk, 1);
    d->refs = 1;
    d->id = v->id;
    d->name = g_strdup(v->name);
    d->path = g_strdup(path);
    d->size = v->size;
    d->version = v->version;
    d->mine = mine;
    d->failed = failed;
    atomic_init(&d->revoked, false);
    d->fd = d->fd_direct = -1;
    g_mutex_init(&d->open_lock);
    /* the old disk (another path or master) is revoked, and closes when its
     * last job ends */
    g_hash_table_replace(m->by_id, g_memdup2(&d->id, sizeof(d->id)), d);
}

struct reload {
    struct ndfs_master *m;
    GHashTable *seen; /* ids listed now */
};

static int add_one(const struct ndfs_vdisk *v, void *data)
{
    struct reload *r = data;
    add_disk(r->m, v);
    g_hash_table_add(r->seen, g_memdup2(&v->id, sizeof(v->id)));
    return 0;
}

static gboolean not_seen(gpointer key, gpointer value, gpointer data)
{
    (void)value;
    return !g_hash_table_contains(data, key);
}

/* Rereads every vdisk (at start, after a snapshot, on an unknown id); an
 * unchanged disk keeps its open descriptors. */
static void reload_all(struct ndfs_master *m)
{
    struct reload r = {m, g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL)};
    int rc = ndfs_ccd_vdisk_foreach(m->ccd, add_one, &r);
    if (rc < 0)
        g_warning("cannot read the vdisks from the CCD: %s", g_strerror(-rc));
    else
        g_hash_table_foreach_remove(m->by_id, not_seen, r.seen);
    g_hash_table_destroy(r.seen);
}

void ndfs_master_vdisk_changed(struct ndfs_master *m, const char *name, bool removed)
{
    if (!name) {
        reload_all(m);
        return;
    }
    struct ndfs_vdisk v = {0};
    if (!removed && ndfs_ccd_vdisk_get(m->ccd, name, &v) == 0) {
        add_disk(m, &v); /* keeps the open disk unless its path or master changed */
        ndfs_vdisk_clear(&v);
        return;
    }
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, m->by_id);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        struct master_disk *d = value;
        if (strcmp(d->name, name) == 0) {
            g_hash_table_iter_remove(&it);
            break;
        }
    }
}

/* The descriptor for a job, opening the disk the first time. Worker thread. */
static int disk_fd(struct master_disk *d, bool direct, int *fd)
{
    g_mutex_lock(&d->open_lock);
    int *slot = direct ? &d->fd_direct : &d->fd;
    int rc = 0;
    if (*slot < 0) {
        rc = localio_open(d->path, true, direct, 0, slot);
        if (rc < 0) {
            *slot = -1;
            if (!d->open_failed)
                g_warning("vdisk \"%s\": cannot open its disk %s%s: %s", d->name, d->path,
                          direct ? " (O_DIRECT)" : "", g_strerror(-rc));
            d->open_failed = true;
        }
    }
    *fd = *slot;
    g_mutex_unlock(&d->open_lock);
    return rc;
}

/* Is this error of the disk's open a failure of the path (the device or
 * file gone or unusable here), rather than of this request or of this
 * process (O_DIRECT not supported: -EINVAL, as before; out of memory or
 * descriptors)? */
static bool open_error_fails_path(int err)
{
    return err != -EINVAL && err != -ENOMEM && err != -EMFILE && err != -ENFILE && err != -EINTR &&
           err != -EAGAIN;
}

/* Is this error of a read, write or fsync a failure of the path? -ENOSPC,
 * -EINVAL and the like stay the request's. */
static bool io_error_fails_path(int err)
{
    switch (-err) {
    case EIO:
    case ENXIO:
    case ENODEV:
    case ENOMEDIUM:
    case EROFS:
    case ESTALE: /* a stale handle of the backing file system, not our lease */
    case EBADF:
    case ENOTCONN:
    case EREMOTEIO:
        return true;
    default:
        return false;
    }
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The membership's lease, as published: valid until the word's expiry. Any
 * thread. */
static bool lease_ok(const struct ndfs_master *m)
{
    if (m->lease == NULL)
        return true;
    uint64_t expiry = atomic_load_explicit(m->lease, memory_order_acquire);
    return expiry == UINT64_MAX || mono_ns() < expiry;
}

/* Checked by the worker right before every disk operation: the mapping
 * still names this disk here, and this node's lease runs. 0 or the NACK. */
static int32_t may_touch_disk(struct master_job *j)
{
    if (atomic_load(&j->disk->revoked)) {
        j->revoked = true;
        return -ENXIO;
    }
    if (!lease_ok(j->m)) {
        j->fenced = true;
        return -ESTALE;
    }
    return 0;
}

static int32_t do_read(struct master_job *j, int fd)
{
    j->buf = localio_alloc(j->len);
    if (!j->buf)
        return -ENOMEM;
    int32_t rc = may_touch_disk(j);
    if (rc < 0)
        return rc;
    ssize_t n = localio_pread(fd, j->buf, j->len, j->req.offset);
    return (int32_t)n;
}

static int32_t do_write(struct master_job *j, int fd, bool direct)
{
    const void *src = j->msg->data;
    void *bounce = NULL;
    /* O_DIRECT wants aligned memory; the transport's buffer need not be */
    if (direct && ((uintptr_t)src % LOCALIO_BUFFER_ALIGN) != 0) {
        bounce = localio_alloc(j->len);
        if (!bounce)
            return -ENOMEM;
        memcpy(bounce, src, j->len);
        src = bounce;
    }
    int32_t rc = may_touch_disk(j);
    if (rc < 0) {
        free(bounce);
        return rc;
    }
    ssize_t n = localio_pwrite(fd, src, j->len, j->req.offset);
    free(bounce);
    return (int32_t)n;
}

static int32_t do_discard(struct master_job *j, int fd)
{
    int mode = FALLOC_FL_KEEP_SIZE |
               ((j->req.flags & NDFS_IO_FLAG_ZERO) ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
    int32_t rc = may_touch_disk(j);
    if (rc == 0)
        rc = localio_fallocate(fd, mode, j->req.offset, j->len);
    return rc < 0 ? rc : (int32_t)j->len;
}

static void worker(gpointer data, gpointer user_data)
{
    (void)user_data;
    struct master_job *j = data;
    bool direct = (j->req.flags & NDFS_IO_FLAG_DIRECT) != 0;
    int fd;
    int rc = may_touch_disk(j);
    if (rc == 0) {
        rc = disk_fd(j->disk, direct, &fd);
        if (rc < 0 && open_error_fails_path(rc)) {
            j->path_err = rc;
            rc = -EIO;
        }
    }
    /* and again right before the I/O itself (opening may have taken a while) */
    if (rc < 0) {
        j->status = rc;
    } else {
        switch (j->req.op) {
        case NDFS_IO_READ:
            j->status = do_read(j, fd);
            break;
        case NDFS_IO_WRITE:
            j->status = do_write(j, fd, direct);
            break;
        case NDFS_IO_FSYNC:
            j->status = may_touch_disk(j);
            if (j->status == 0)
                j->status = localio_sync(fd, (j->req.flags & NDFS_IO_FLAG_DATASYNC) != 0);
            break;
        case NDFS_IO_DISCARD:
            j->status = do_discard(j, fd);
            break;
        }
        if (j->status < 0 && !j->fenced && !j->revoked && io_error_fails_path(j->status)) {
            j->path_err = j->status;
            j->status = -EIO;
        }
    }
    /* j may be answered and freed as soon as it is queued */
    struct ndfs_master *m = j->m;
    g_async_queue_push(m->done, j);
    ndfs_wakeup_send(&m->wake);
}

static void buf_release(void *buf)
{
    free(buf);
}

/* Answers msg (and releases it); buf (malloc'd, may be NULL) is the
 * reply's: data_len bytes of it are sent without a copy, then freed. */
static gpointer pool_thread(gpointer data)
{
    struct ndfs_master *m = data;
    g_mutex_lock(&m->pool_lock);
    for (;;) {
        struct master_job *j = g_queue_pop_head(&m->pool_jobs);
        if (!j) {
            if (m->pool_stop)
                break;
            m->pool_idle++;
            g_cond_wait(&m->pool_cond, &m->pool_lock);
            m->pool_idle--;
            continue;
        }
        g_mutex_unlock(&m->pool_lock);
        worker(j, NULL);
        g_mutex_lock(&m->pool_lock);
    }
    g_mutex_unlock(&m->pool_lock);
    return NULL;
}

static void pool_push(struct ndfs_master *m, struct master_job *j)
{
    g_mutex_lock(&m->pool_lock);
    g_queue_push_tail(&m->pool_jobs, j);
    if (m->pool_idle > 0)
        g_cond_signal(&m->pool_cond);
    g_mutex_unlock(&m->pool_lock);
}

/* Stops and joins the threads (their queue is empty). */
static void pool_stop(struct ndfs_master *m)
{
    g_mutex_lock(&m->pool_lock);
    m->pool_stop = true;
    g_cond_broadcast(&m->pool_cond);
    g_mutex_unlock(&m->pool_lock);
    for (unsigned i = 0; i < m->n_threads; i++)
        g_thread_join(m->threads[i]);
    m->n_threads = 0;
    m->pool_running = false;
    g_mutex_clear(&m->pool_lock);
    g_cond_clear(&m->pool_cond);
}

static int pool_start(struct ndfs_master *m, char **errmsg)
{
    g_mutex_init(&m->pool_lock);
    g_cond_init(&m->pool_cond);
    g_queue_init(&m->pool_jobs);
    m->pool_running = true;
    for (unsigned i = 0; i < MASTER_WORKERS; i++) {
        GError *err = NULL;
        GThread *th = g_thread_try_new("ndfs-disk", pool_thread, m, &err);
        if (!th) {
            *errmsg = g_strdup_printf("cannot start the disk I/O threads: %s", err->message);
            g_error_free(err);
            pool_stop(m);
            return -EAGAIN;
        }
        m->threads[m->n_threads++] = th;
    }
    return 0;
}

static void reply(struct ndfs_master *m, struct ndfs_message *msg, int32_t status, void *buf,
                  size_t data_len)
{
    struct ndfs_io_reply r = {.status = status};
    uint8_t ctl[NDFS_IO_REPLY_SIZE];
    ndfs_io_reply_encode(&r, ctl);
    int rc;
    if (data_len > 0) {
        rc = ndfs_transport_send_borrowed(m->t, msg->peer, NDFS_CHANNEL_IO, msg->request_id,
                                          msg->epoch, ctl, sizeof(ctl), buf, data_len,
                                          NDFS_SEND_WHOLE, buf_release, buf);
        if (rc < 0)
            free(buf);
    } else {
        free(buf);
        rc = ndfs_transport_send(m->t, msg->peer, NDFS_CHANNEL_IO, msg->request_id, msg->epoch, ctl,
                                 sizeof(ctl), NULL, 0);
    }
    if (rc < 0) {
        g_autofree char *key = g_strdup_printf("send:%s", msg->peer);
        g_autofree char *text = g_strdup_printf("cannot answer %s: %s", msg->peer, g_strerror(-rc));
        say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
    }
    ndfs_transport_release(m->t, msg);
}

static void nack(struct ndfs_master *m, struct ndfs_message *msg, int err)
{
    reply(m, msg, err, NULL, 0);
}

static void finish_close(struct ndfs_master *m);

/* A request for d refused because the lease had run out: counted, and
 * logged once per loss (after this loop turn, with the count so far). */
static void count_refusal(struct ndfs_master *m, struct master_disk *d)
{
    d->refused++;
    if (d->refused_said == 0 && !d->refused_queued) {
        d->refused_queued = true;
        d->refs++;
        g_ptr_array_add(m->refusals, d);
        ndfs_wakeup_send(&m->wake); /* logs on the next turn, the burst counted */
    }
}

static void log_refusals(struct ndfs_master *m)
{
    for (guint i = 0; i < m->refusals->len; i++) {
        struct master_disk *d = g_ptr_array_index(m->refusals, i);
        d->refused_queued = false;
        if (d->refused_said == 0 && d->refused > 0) {
            g_warning("vdisk \"%s\": refused %u requests: this node's lease ran out (fenced)",
                      d->name, d->refused);
            d->refused_said = d->refused;
        }
        disk_unref(d);
    }
    g_ptr_array_set_size(m->refusals, 0);
}

/* d served a request with the lease valid: a loss, if any, is over. */
static void lease_back(struct master_disk *d)
{
    if (d->refused == 0 || d->refused_queued)
        return;
    if (d->refused > d->refused_said)
        g_message("vdisk \"%s\": refused %u requests in all while this node's lease had run "
                  "out (fenced); serving again",
                  d->name, d->refused);
    else
        g_message("vdisk \"%s\": this node holds a lease again: serving", d->name);
    d->refused = d->refused_said = 0;
}

static bool drain_done(struct ndfs_master *m, const struct drain *dr)
{
    for (size_t i = 0; i < dr->n_ids; i++)
        if (g_hash_table_contains(m->busy, &dr->ids[i]))
            return false;
    return true;
}

/* Runs the drains whose vdisks have nothing in flight any more. */
static void drains_check(struct ndfs_master *m)
{
    GList *ready = NULL;
    for (GList *l = m->drains; l != NULL;) {
        GList *next = l->next;
        if (drain_done(m, l->data)) {
            m->drains = g_list_remove_link(m->drains, l);
            ready = g_list_concat(ready, l);
        }
        l = next;
    }
    for (GList *l = ready; l != NULL; l = l->next) {
        struct drain *dr = l->data;
        dr->cb(0, dr->data);
        g_free(dr->ids);
        g_free(dr);
    }
    g_list_free(ready);
}

static void busy_add(struct ndfs_master *m, uint64_t id)
{
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(m->busy, &id));
    g_hash_table_replace(m->busy, g_memdup2(&id, sizeof(id)), GUINT_TO_POINTER(n + 1));
}

static void busy_sub(struct ndfs_master *m, uint64_t id)
{
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(m->busy, &id));
    if (n > 1) {
        g_hash_table_replace(m->busy, g_memdup2(&id, sizeof(id)), GUINT_TO_POINTER(n - 1));
        return;
    }
    g_hash_table_remove(m->busy, &id);
    if (m->drains != NULL)
        drains_check(m);
}

void ndfs_master_drain(struct ndfs_master *m, const uint64_t *ids, size_t n_ids,
                       void (*cb)(int status, void *data), void *data)
{
    struct drain *dr = g_new0(struct drain, 1);
    dr->ids = g_memdup2(ids, n_ids * sizeof(uint64_t));
    dr->n_ids = n_ids;
    dr->cb = cb;
    dr->data = data;
    if (m->closing) {
        cb(-ECANCELED, data);
    } else if (drain_done(m, dr)) {
        cb(0, data);
    } else {
        m->drains = g_list_append(m->drains, dr);
        return;
    }
    g_free(dr->ids);
    g_free(dr);
}

/* The master closes: nobody waits for its jobs any more. */
static void drains_cancel(struct ndfs_master *m)
{
    GList *drains = m->drains;
    m->drains = NULL;
    for (GList *l = drains; l != NULL; l = l->next) {
        struct drain *dr = l->data;
        dr->cb(-ECANCELED, dr->data);
        g_free(dr->ids);
        g_free(dr);
    }
    g_list_free(drains);
}

static void job_done(struct ndfs_master *m, struct master_job *j)
{
    struct master_disk *d = j->disk;
    size_t data_len = j->req.op == NDFS_IO_READ && j->status > 0 ? (size_t)j->status : 0;
    int err = j->path_err ? j->path_err : j->status;
    if (j->fenced)
        count_refusal(m, d);
    else if (!j->revoked)
        lease_back(d);
    if (err < 0 && err != -EINVAL && !j->fenced && !j->revoked) {
        g_autofree char *key = g_strdup_printf("io:%" G_GUINT64_FORMAT ":%d", d->id, err);
        g_autofree char *text =
            g_strdup_printf("vdisk \"%s\": %s on %s failed: %s", d->name,
                            ndfs_io_op_name(j->req.op), d->path, g_strerror(-err));
        say_once(m, key, G_LOG_LEVEL_WARNING, text);
    }
    reply(m, j->msg, j->status, j->buf, data_len);
    j->buf = NULL; /* the reply's now */
    /* a disk error fails the path, once per row version; not when the
     * mapping moved on meanwhile (it no longer names this disk) */
    if (j->path_err && !d->reported && !atomic_load(&d->revoked) && !m->closing) {
        d->reported = true;
        g_warning("vdisk \"%s\": its disk %s failed on this node (%s): I/O is NACKed EIO, "
                  "the path to be marked failed",
                  d->name, d->path, g_strerror(-j->path_err));
        if (m->path_failed_cb)
            m->path_failed_cb(m, d->name, j->path_err, m->path_failed_data);
    }
    busy_sub(m, d->id);
    disk_unref(d);
    g_free(j);
    m->in_flight--;
}

static void on_wake(struct ndfs_wakeup *w)
{
    struct ndfs_master *m = w->data;
    struct master_job *j;
    while ((j = g_async_queue_try_pop(m->done)))
        job_done(m, j);
    log_refusals(m);
    if (m->closing && m->in_flight == 0)
        finish_close(m);
}

static struct master_disk *find_disk(struct ndfs_master *m, uint64_t id)
{
    struct master_disk *d = g_hash_table_lookup(m->by_id, &id);
    if (!d) {
        /* created a moment ago and its watch still on the way? */
        reload_all(m);
        d = g_hash_table_lookup(m->by_id, &id);
    }
    return d;
}

/* Checks a request against the epoch and the disk; 0 and the length to
 * transfer, or the NACK. The same rules as the mount's local path (localio). */
static int check_request(struct ndfs_master *m, const struct ndfs_io_request *req,
                         const struct ndfs_message *msg, struct master_disk **disk, uint32_t *len)
{
    if (m->membership) {
        uint64_t epoch = ndfs_membership_epoch(m->membership);
        if (msg->epoch > epoch)
            return -EAGAIN; /* this replica lags: the driver retries shortly */
        if (msg->epoch < epoch)
            return -EREMCHG; /* the driver refetches the mapping and resends */
    }
    struct master_disk *d = find_disk(m, req->vdisk_id);
    if (!d)
        return -ENOENT;
    if (!d->mine) {
        g_autofree char *key = g_strdup_printf("notmine:%" G_GUINT64_FORMAT, d->id);
        g_autofree char *text =
            g_strdup_printf("vdisk \"%s\": %s sent I/O, but this node is not its master (ENXIO)",
                            d->name, msg->peer);
        say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
        return -ENXIO;
    }
    if (d->failed) {
        g_autofree char *key = g_strdup_printf("failed:%" G_GUINT64_FORMAT, d->id);
        g_autofree char *text = g_strdup_printf(
            "vdisk \"%s\": %s sent I/O, but its path %s on this node is marked failed (ENXIO)",
            d->name, msg->peer, d->path);
        say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
        return -ENXIO;
    }
    if (!lease_ok(m)) {
        count_refusal(m, d);
        return -ESTALE;
    }
    if ((req->op == NDFS_IO_WRITE) != (msg->data_len > 0) ||
        (req->op == NDFS_IO_WRITE && msg->data_len != req->length))
        return -EPROTO;
    *disk = d;
    *len = 0;
    if (req->op == NDFS_IO_FSYNC)
        return 0;
    if (req->offset >= d->size)
        return req->op == NDFS_IO_WRITE ? -ENOSPC : 0;
    if (req->op == NDFS_IO_DISCARD) {
        /* a discard stays within the vdisk and needs no alignment */
        *len = (uint32_t)MIN((uint64_t)req->length, d->size - req->offset);
        return 0;
    }
    /* past the end a block device reads short and takes what fits */
    *len = (uint32_t)MIN((uint64_t)req->length, d->size - req->offset);
    if ((req->flags & NDFS_IO_FLAG_DIRECT) && !localio_direct_aligned(req->offset, *len))
        return -EINVAL;
    return 0;
}

static void on_message(struct ndfs_transport *t, struct ndfs_message *msg, void *data)
{
    (void)t;
    struct ndfs_master *m = data;
    if (m->closing) {
        /* no answer: the mount resends to whoever masters the disk next */
        ndfs_transport_release(m->t, msg);
        return;
    }
    struct ndfs_io_request req;
    int rc = ndfs_io_request_decode(msg->control, msg->control_len, &req);
    if (rc < 0) {
        g_autofree char *key = g_strdup_printf("bad:%s", msg->peer);
        g_autofree char *text =
            g_strdup_printf("%s sent a malformed I/O request (%s)", msg->peer, g_strerror(-rc));
        say_once(m, key, G_LOG_LEVEL_WARNING, text);
        nack(m, msg, -EPROTO);
        return;
    }
    struct master_disk *d = NULL;
    uint32_t len = 0;
    rc = check_request(m, &req, msg, &d, &len);
    if (rc < 0) {
        nack(m, msg, rc);
        return;
    }
    if (req.op != NDFS_IO_FSYNC && len == 0) {
        reply(m, msg, 0, NULL, 0); /* a read at or past the end */
        return;
    }
    struct master_job *j = g_new0(struct master_job, 1);
    j->m = m;
    j->disk = d;
    d->refs++;
    j->msg = msg;
    j->req = req;
    j->len = len;
    m->in_flight++;
    busy_add(m, d->id);
    pool_push(m, j);
}

int ndfs_master_new(uv_loop_t *loop, struct ndfs_transport *t, struct ndfs_ccd *ccd,
                    struct ndfs_membership *membership, const char *node_name,
                    struct ndfs_master **out, char **errmsg)
{
    localio_tune_malloc(); /* before the pool's threads start */
    struct ndfs_master *m = g_new0(struct ndfs_master, 1);
    m->loop = loop;
    m->t = t;
    m->ccd = ccd;
    m->membership = membership;
    m->lease = membership ? ndfs_membership_lease_word(membership) : NULL;
    m->node = g_strdup(node_name);
    m->refusals = g_ptr_array_new();
    m->by_id = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, unlist_disk);
    m->said = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->busy = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->done = g_async_queue_new();
    int rc = pool_start(m, errmsg);
    if (rc < 0)
        goto fail;
    if ((rc = ndfs_wakeup_init(loop, &m->wake, on_wake, m)) < 0) {
        *errmsg = g_strdup_printf("cannot wake the loop from the disk threads: %s",
                                  g_strerror(-rc)); /* libuv errors are -errno here */
        pool_stop(m);
        goto fail;
    }
    rc = ndfs_transport_register(t, NDFS_CHANNEL_IO, on_message, m);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot register the I/O channel: %s", g_strerror(-rc));
        /* the handle must close before m goes */
        m->closing = true;
        finish_close(m);
        return rc;
    }
    reload_all(m);
    *out = m;
    return 0;
fail:
    g_hash_table_destroy(m->busy);
    g_ptr_array_free(m->refusals, TRUE);
    g_async_queue_unref(m->done);
    g_hash_table_destroy(m->said);
    g_hash_table_destroy(m->by_id);
    g_free(m->node);
    g_free(m);
    return rc;
}

static void on_wake_closed(uv_handle_t *h)
{
    struct ndfs_master *m = ((struct ndfs_wakeup *)h)->data;
    for (guint i = 0; i < m->refusals->len; i++)
        disk_unref(g_ptr_array_index(m->refusals, i));
    g_ptr_array_free(m->refusals, TRUE);
    g_hash_table_destroy(m->by_id);
    g_hash_table_destroy(m->said);
    g_hash_table_destroy(m->busy);
    g_async_queue_unref(m->done);
    void (*cb)(void *) = m->close_cb;
    void *cb_data = m->close_data;
    g_free(m->node);
    g_free(m);
    if (cb)
        cb(cb_data);
}

static void finish_close(struct ndfs_master *m)
{
    if (!m->pool_running)
        return; /* already finishing */
    /* every job came back: the workers are idle */
    pool_stop(m);
    ndfs_wakeup_close(&m->wake, on_wake_closed);
}

void ndfs_master_set_path_failed_cb(struct ndfs_master *m, ndfs_master_path_failed_cb cb,
                                    void *data)
{
    m->path_failed_cb = cb;
    m->path_failed_data = data;
}

void ndfs_master_close(struct ndfs_master *m, void (*cb)(void *data), void *data)
{
    m->closing = true;
    m->close_cb = cb;
    m->close_data = data;
    drains_cancel(m);
    /* no message may reach m once it is freed */
    ndfs_transport_unregister(m->t, NDFS_CHANNEL_IO);
    if (m->in_flight == 0)
        finish_close(m);
    /* else on_wake finishes once the last job is answered */
}
