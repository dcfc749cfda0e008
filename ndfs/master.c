#define G_LOG_DOMAIN "ndfs-master"

#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_proto.h"
#include "localio.h"

/* Disk I/O threads: enough for an application's queue depth to reach the disk. */
#define MASTER_WORKERS 16

/* A vdisk whose disk this node may serve. Owned by the loop thread; a job
 * holds a reference while a worker uses it. */
struct master_disk {
    unsigned refs; /* the map's + one per job; loop thread */
    uint64_t id;
    char *name;
    char *path;
    uint64_t size;    /* loop thread */
    bool mine;        /* the primary node is this node */
    GMutex open_lock; /* opens the disk once, on a worker */
    int fd;           /* -1 until opened; protected by open_lock */
    int fd_direct;    /* O_DIRECT descriptor, -1 until needed; protected by open_lock */
    bool open_failed; /* logged once; protected by open_lock */
};

struct master_job {
    struct ndfs_master *m;
    struct master_disk *disk;
    struct ndfs_message *msg; /* released once answered */
    struct ndfs_io_request req;
    uint32_t len; /* clamped to the disk's end */
    void *buf;    /* read data (localio_alloc'd), sent with the reply */
    int32_t status;
};

struct ndfs_master {
    uv_loop_t *loop;
    struct ndfs_transport *t;
    struct ndfs_ccd *ccd;
    struct ndfs_membership *membership;
    char *node;
    GHashTable *by_id; /* uint64_t *id -> struct master_disk *; loop thread */
    GHashTable *said;  /* log-once keys; loop thread */
    GThreadPool *pool;
    GAsyncQueue *done; /* struct master_job * back to the loop */
    uv_async_t async;
    unsigned in_flight;
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
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

static void unlist_disk(gpointer p)
{
    disk_unref(p);
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
    bool mine = g_strcmp0(v->primary_node, m->node) == 0;
    if (old && old->mine == mine && g_strcmp0(old->path, v->primary_path) == 0 &&
        strcmp(old->name, v->name) == 0) {
        old->size = v->size;
        return;
    }
    struct master_disk *d = g_new0(struct master_disk, 1);
    d->refs = 1;
    d->id = v->id;
    d->name = g_strdup(v->name);
    d->path = g_strdup(v->primary_path);
    d->size = v->size;
    d->mine = mine;
    d->fd = d->fd_direct = -1;
    g_mutex_init(&d->open_lock);
    /* the old disk (another path or master) closes when its last job ends */
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
    return rc == -ENOENT || rc == -ENOTDIR ? -EIO : rc;
}

static int32_t do_read(struct master_job *j, int fd)
{
    j->buf = localio_alloc(j->len);
    if (!j->buf)
        return -ENOMEM;
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
    ssize_t n = localio_pwrite(fd, src, j->len, j->req.offset);
    free(bounce);
    return (int32_t)n;
}

static void worker(gpointer data, gpointer user_data)
{
    (void)user_data;
    struct master_job *j = data;
    bool direct = (j->req.flags & NDFS_IO_FLAG_DIRECT) != 0;
    int fd;
    int rc = disk_fd(j->disk, direct, &fd);
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
            j->status = localio_sync(fd, (j->req.flags & NDFS_IO_FLAG_DATASYNC) != 0);
            break;
        }
    }
    /* j may be answered and freed as soon as it is queued */
    struct ndfs_master *m = j->m;
    g_async_queue_push(m->done, j);
    uv_async_send(&m->async);
}

static void reply(struct ndfs_master *m, struct ndfs_message *msg, int32_t status, const void *data,
                  size_t data_len)
{
    struct ndfs_io_reply r = {.status = status};
    uint8_t ctl[NDFS_IO_REPLY_SIZE];
    ndfs_io_reply_encode(&r, ctl);
    int rc = ndfs_transport_send(m->t, msg->peer, NDFS_CHANNEL_IO, msg->request_id, msg->epoch, ctl,
                                 sizeof(ctl), data, data_len);
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

static void job_done(struct ndfs_master *m, struct master_job *j)
{
    size_t data_len = j->req.op == NDFS_IO_READ && j->status > 0 ? (size_t)j->status : 0;
    if (j->status < 0 && j->status != -EINVAL) {
        g_autofree char *key =
            g_strdup_printf("io:%" G_GUINT64_FORMAT ":%d", j->disk->id, (int)j->status);
        g_autofree char *text =
            g_strdup_printf("vdisk \"%s\": %s on %s failed: %s", j->disk->name,
                            ndfs_io_op_name(j->req.op), j->disk->path, g_strerror(-j->status));
        say_once(m, key, G_LOG_LEVEL_WARNING, text);
    }
    reply(m, j->msg, j->status, j->buf, data_len);
    free(j->buf);
    disk_unref(j->disk);
    g_free(j);
    m->in_flight--;
}

static void on_async(uv_async_t *handle)
{
    struct ndfs_master *m = handle->data;
    struct master_job *j;
    while ((j = g_async_queue_try_pop(m->done)))
        job_done(m, j);
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

/* Checks a request against the disk; 0 and the length to transfer, or the
 * NACK. The same rules as the mount's local path (localio). */
static int check_request(struct ndfs_master *m, const struct ndfs_io_request *req,
                         const struct ndfs_message *msg, struct master_disk **disk, uint32_t *len)
{
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
    if (m->membership && !ndfs_membership_lease_valid(m->membership))
        return -ESTALE;
    if ((req->op == NDFS_IO_WRITE) != (msg->data_len > 0) ||
        (req->op == NDFS_IO_WRITE && msg->data_len != req->length))
        return -EPROTO;
    *disk = d;
    *len = 0;
    if (req->op == NDFS_IO_FSYNC)
        return 0;
    if (req->offset >= d->size)
        return req->op == NDFS_IO_WRITE ? -ENOSPC : 0;
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
    GError *err = NULL;
    if (!g_thread_pool_push(m->pool, j, &err)) {
        g_warning("cannot queue disk I/O: %s", err->message);
        g_error_free(err);
        j->status = -EAGAIN;
        job_done(m, j);
    }
}

int ndfs_master_new(uv_loop_t *loop, struct ndfs_transport *t, struct ndfs_ccd *ccd,
                    struct ndfs_membership *membership, const char *node_name,
                    struct ndfs_master **out, char **errmsg)
{
    struct ndfs_master *m = g_new0(struct ndfs_master, 1);
    m->loop = loop;
    m->t = t;
    m->ccd = ccd;
    m->membership = membership;
    m->node = g_strdup(node_name);
    m->by_id = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, unlist_disk);
    m->said = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->done = g_async_queue_new();
    GError *err = NULL;
    m->pool = g_thread_pool_new(worker, m, MASTER_WORKERS, FALSE, &err);
    int rc = 0;
    if (!m->pool) {
        *errmsg = g_strdup_printf("cannot start the disk I/O threads: %s", err->message);
        g_error_free(err);
        rc = -EAGAIN;
        goto fail;
    }
    if ((rc = uv_async_init(loop, &m->async, on_async)) < 0) {
        *errmsg = g_strdup_printf("uv_async_init: %s", uv_strerror(rc));
        g_thread_pool_free(m->pool, TRUE, TRUE);
        goto fail;
    }
    m->async.data = m;
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
    g_async_queue_unref(m->done);
    g_hash_table_destroy(m->said);
    g_hash_table_destroy(m->by_id);
    g_free(m->node);
    g_free(m);
    return rc;
}

static void on_async_closed(uv_handle_t *h)
{
    struct ndfs_master *m = h->data;
    g_hash_table_destroy(m->by_id);
    g_hash_table_destroy(m->said);
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
    if (!m->pool)
        return; /* already finishing */
    /* every job came back: the workers are idle */
    g_thread_pool_free(m->pool, TRUE, TRUE);
    m->pool = NULL;
    uv_close((uv_handle_t *)&m->async, on_async_closed);
}

void ndfs_master_close(struct ndfs_master *m, void (*cb)(void *data), void *data)
{
    m->closing = true;
    m->close_cb = cb;
    m->close_data = data;
    /* no message may reach m once it is freed */
    ndfs_transport_unregister(m->t, NDFS_CHANNEL_IO);
    if (m->in_flight == 0)
        finish_close(m);
    /* else on_async finishes once the last job is answered */
}
