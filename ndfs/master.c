#define G_LOG_DOMAIN "ndfs-master"

#include "master.h"

#include <errno.h>
#include <glib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_proto.h"
#include "localio.h"
#include "master_priv.h"

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
    g_assert(g_queue_is_empty(&d->reads_waiting)); /* each job holds a reference */
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
void master_say_once(struct ndfs_master *m, const char *key, GLogLevelFlags level, const char *msg)
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
    atomic_init(&d->aio_fd, -1);
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

static void buf_release(void *buf)
{
    localio_free(buf);
}

/* Answers msg (and releases it); buf (localio_alloc'd, may be NULL) is the
 * reply's: data_len bytes of it are sent without a copy, then freed. */
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
            localio_free(buf);
    } else {
        localio_free(buf);
        rc = ndfs_transport_send(m->t, msg->peer, NDFS_CHANNEL_IO, msg->request_id, msg->epoch, ctl,
                                 sizeof(ctl), NULL, 0);
    }
    if (rc < 0) {
        g_autofree char *key = g_strdup_printf("send:%s", msg->peer);
        g_autofree char *text = g_strdup_printf("cannot answer %s: %s", msg->peer, g_strerror(-rc));
        master_say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
    }
    ndfs_transport_release(m->t, msg);
}

static void nack(struct ndfs_master *m, struct ndfs_message *msg, int err)
{
    reply(m, msg, err, NULL, 0);
}

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

void master_job_done(struct ndfs_master *m, struct master_job *j)
{
    struct master_disk *d = j->disk;
    master_io_done(m, j);
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
        master_say_once(m, key, G_LOG_LEVEL_WARNING, text);
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
    if (j->via_aio)
        m->jobs_aio++;
    else
        m->jobs_threads++;
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
        master_job_done(m, j);
    log_refusals(m);
    if (m->closing && m->in_flight == 0)
        master_finish_close(m);
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
        master_say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
        return -ENXIO;
    }
    if (d->failed) {
        g_autofree char *key = g_strdup_printf("failed:%" G_GUINT64_FORMAT, d->id);
        g_autofree char *text = g_strdup_printf(
            "vdisk \"%s\": %s sent I/O, but its path %s on this node is marked failed (ENXIO)",
            d->name, msg->peer, d->path);
        master_say_once(m, key, G_LOG_LEVEL_MESSAGE, text);
        return -ENXIO;
    }
    if (!master_lease_ok(m)) {
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
    ndfs_spin_kick(&m->spin);
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
        master_say_once(m, key, G_LOG_LEVEL_WARNING, text);
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
    master_io_start(m, j);
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
    int rc = master_pool_start(m, errmsg);
    if (rc < 0)
        goto fail;
    if ((rc = ndfs_wakeup_init(loop, &m->wake, on_wake, m)) < 0) {
        *errmsg = g_strdup_printf("cannot wake the loop from the disk threads: %s",
                                  g_strerror(-rc)); /* libuv errors are -errno here */
        master_pool_stop(m);
        goto fail;
    }
    /* cannot fail for an idle handle on an initialised loop; polls once
     * ndfs_master_set_poll_us says how long */
    (void)ndfs_spin_init(loop, &m->spin, 0);
    m->spin.idle.data = m;
    rc = ndfs_transport_register(t, NDFS_CHANNEL_IO, on_message, m);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot register the I/O channel: %s", g_strerror(-rc));
        /* the handle must close before m goes */
        m->closing = true;
        master_finish_close(m);
        return rc;
    }
    char *aio_err = NULL;
    if ((rc = ndfs_aio_new(loop, MASTER_AIO_DEPTH, &m->aio, &aio_err)) < 0) {
        g_message("no AIO for the disks (%s): all their I/O goes through the disk threads",
                  aio_err);
        g_free(aio_err);
        m->aio = NULL;
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

/* then the wakeup, whose close frees m */
static void on_spin_closed(uv_handle_t *h)
{
    struct ndfs_master *m = h->data;
    ndfs_wakeup_close(&m->wake, on_wake_closed);
}

void master_finish_close(struct ndfs_master *m)
{
    if (!m->pool_running)
        return; /* already finishing */
    /* every job came back: the workers are idle, nothing is in AIO */
    master_pool_stop(m);
    if (m->aio) {
        ndfs_aio_close(m->aio, NULL, NULL);
        m->aio = NULL;
    }
    ndfs_spin_close(&m->spin, on_spin_closed);
}

void ndfs_master_disk_jobs(const struct ndfs_master *m, uint64_t *aio, uint64_t *threads)
{
    *aio = m->jobs_aio;
    *threads = m->jobs_threads;
}

void ndfs_master_set_poll_us(struct ndfs_master *m, unsigned poll_us)
{
    ndfs_spin_set_budget(&m->spin, poll_us);
}

void ndfs_master_set_read_inflight(struct ndfs_master *m, uint64_t bytes)
{
    m->read_inflight_max = bytes;
}

uint64_t ndfs_master_reads_waited(const struct ndfs_master *m)
{
    return m->reads_waited;
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
        master_finish_close(m);
    /* else on_wake finishes once the last job is answered */
}
