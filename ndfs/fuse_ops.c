#define G_LOG_DOMAIN "ndfs-fuse"

#include "fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "control.h"
#include "io_proto.h"
#include "localio.h"
#include "parse.h"

static struct ndfs_fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct ndfs_handle *handle_of(struct fuse_file_info *fi)
{
    return (struct ndfs_handle *)(uintptr_t)fi->fh;
}

void ndfs_fs_init(struct ndfs_fs *fs, struct vdisk_table *table, struct control_link *link)
{
    memset(fs, 0, sizeof(*fs));
    fs->table = table;
    fs->link = link;
    g_mutex_init(&fs->warn_lock);
    fs->warned_remote = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    g_mutex_init(&fs->handles_lock);
    fs->handles = g_hash_table_new(g_direct_hash, g_direct_equal);
}

static void handle_free(struct ndfs_fs *fs, struct ndfs_handle *h);

void ndfs_fs_release_all(struct ndfs_fs *fs)
{
    g_mutex_lock(&fs->handles_lock);
    GList *left = g_hash_table_get_keys(fs->handles);
    g_mutex_unlock(&fs->handles_lock);
    if (left)
        g_message("releasing %u vdisk file(s) still open when the mount ended",
                  g_list_length(left));
    for (GList *l = left; l; l = l->next)
        handle_free(fs, l->data);
    g_list_free(left);
}

void ndfs_fs_clear(struct ndfs_fs *fs)
{
    g_hash_table_destroy(fs->handles);
    g_mutex_clear(&fs->handles_lock);
    g_hash_table_destroy(fs->warned_remote);
    g_mutex_clear(&fs->warn_lock);
}

static void set_time(struct timespec *ts, uint64_t ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

static void root_stat(struct ndfs_fs *fs, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = VDISK_TABLE_ROOT_INO;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_blksize = 4096;
    uint64_t mtime = vdisk_table_root_mtime(fs->table);
    set_time(&st->st_atim, mtime);
    set_time(&st->st_mtim, mtime);
    set_time(&st->st_ctim, mtime);
}

static void vdisk_stat(const struct vdisk_attr *a, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = a->ino;
    st->st_mode = S_IFREG | (a->mode & 07777);
    st->st_nlink = 1;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_size = (off_t)a->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)(a->size / 512);
    set_time(&st->st_atim, a->mtime_ns);
    set_time(&st->st_mtim, a->mtime_ns);
    set_time(&st->st_ctim, a->mtime_ns);
}

static void fill_entry(const struct vdisk_attr *a, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = a->ino;
    e->attr_timeout = NDFS_FUSE_TIMEOUT;
    e->entry_timeout = NDFS_FUSE_TIMEOUT;
    vdisk_stat(a, &e->attr);
}

void ndfs__fuse_reply_err(fuse_req_t req, int rc)
{
    fuse_reply_err(req, rc < 0 ? -rc : rc);
}

static void ndfs_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* O_TRUNC arrives with open (and is ignored) instead of as a setattr */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_DIO)
        conn->want |= FUSE_CAP_ASYNC_DIO;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    /* libfuse lowers this to what its buffers and the kernel allow */
    conn->max_write = NDFS_FUSE_MAX_IO;
    /* deep queues (libaio QD32) reach the threads instead of waiting in the kernel */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    conn->time_gran = 1;
}

static void ndfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct ndfs_fs *fs = fs_of(req);
    struct vdisk_attr a;
    int rc = parent == VDISK_TABLE_ROOT_INO ? vdisk_table_find(fs->table, name, &a) : -ENOENT;
    /* created a moment ago, its event still on the way? */
    if (rc == -ENOENT && parent == VDISK_TABLE_ROOT_INO && ndfs_vdisk_name_valid(name) &&
        control_link_fetch_vdisk(fs->link, name) == 0)
        rc = vdisk_table_find(fs->table, name, &a);
    if (rc < 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    fill_entry(&a, &e);
    fuse_reply_entry(req, &e);
}

static void ndfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    (void)ino;
    (void)nlookup;
    /* inodes are table entries: nothing to free */
    fuse_reply_none(req);
}

static void ndfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    (void)count;
    (void)forgets;
    fuse_reply_none(req);
}

static int get_stat(struct ndfs_fs *fs, fuse_ino_t ino, struct stat *st)
{
    if (ino == VDISK_TABLE_ROOT_INO) {
        root_stat(fs, st);
        return 0;
    }
    struct vdisk_attr a;
    int rc = vdisk_table_get(fs->table, ino, &a);
    if (rc < 0)
        return rc;
    vdisk_stat(&a, st);
    return 0;
}

static void ndfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct stat st;
    int rc = get_stat(fs_of(req), ino, &st);
    if (rc < 0)
        ndfs__fuse_reply_err(req, rc);
    else
        fuse_reply_attr(req, &st, NDFS_FUSE_TIMEOUT);
}

/* The local name of uid (or gid): -EINVAL when there is none. */
static int user_name(uid_t uid, char **out)
{
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t len = hint > 0 ? (size_t)hint : 16384;
    for (int tries = 0; tries < 8; tries++, len *= 2) {
        g_autofree char *buf = g_malloc(len);
        struct passwd pw, *found = NULL;
        int rc = getpwuid_r(uid, &pw, buf, len, &found);
        if (rc == ERANGE)
            continue;
        if (rc != 0 || !found)
            return -EINVAL;
        *out = g_strdup(found->pw_name);
        return 0;
    }
    return -EINVAL;
}

static int group_name(gid_t gid, char **out)
{
    long hint = sysconf(_SC_GETGR_R_SIZE_MAX);
    size_t len = hint > 0 ? (size_t)hint : 16384;
    for (int tries = 0; tries < 8; tries++, len *= 2) {
        g_autofree char *buf = g_malloc(len);
        struct group gr, *found = NULL;
        int rc = getgrgid_r(gid, &gr, buf, len, &found);
        if (rc == ERANGE)
            continue;
        if (rc != 0 || !found)
            return -EINVAL;
        *out = g_strdup(found->gr_name);
        return 0;
    }
    return -EINVAL;
}

/* Sends a change to ndfsd and stores the vdisk it answers with in *a. */
static int change_vdisk(struct ndfs_fs *fs, const char *command, GVariant *args,
                        struct vdisk_attr *a)
{
    g_autoptr(GVariant) result = NULL;
    g_autofree char *errmsg = NULL;
    g_autofree char *name = g_strdup(a->name);
    int rc =
        control_link_call(fs->link, command, args, NDFS_FUSE_SETATTR_WAIT_MS, &result, &errmsg);
    if (rc < 0) {
        g_message("vdisk \"%s\": %s failed: %s", name, command, errmsg ? errmsg : g_strerror(-rc));
        return rc;
    }
    struct ndfs_vdisk v;
    if (ndfs_vdisk_from_dict(result, &v) < 0) {
        g_warning("vdisk \"%s\": ndfsd answered %s with a malformed vdisk", name, command);
        return -EIO;
    }
    /* the reply carries the new attributes: the kernel needs no invalidation */
    vdisk_table_upsert(fs->table, &v, NULL);
    ndfs_vdisk_clear(&v);
    return vdisk_table_get(fs->table, a->ino, a);
}

static int do_setattr(struct ndfs_fs *fs, fuse_ino_t ino, const struct stat *attr, int to_set,
                      struct stat *out)
{
    const int changes =
        FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE;
    if (ino == VDISK_TABLE_ROOT_INO) {
        if (to_set & changes)
            return -EPERM;
        root_stat(fs, out);
        return 0;
    }
    struct vdisk_attr a;
    int rc = vdisk_table_get(fs->table, ino, &a);
    if (rc < 0)
        return rc;
    /* a vdisk's size changes with ndfsadm vdisk resize only */
    if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != a.size)
        return -EPERM;
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        g_autofree char *owner = NULL, *group = NULL;
        if ((to_set & FUSE_SET_ATTR_UID) && (rc = user_name(attr->st_uid, &owner)) < 0)
            return rc;
        if ((to_set & FUSE_SET_ATTR_GID) && (rc = group_name(attr->st_gid, &group)) < 0)
            return rc;
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "name", "s", a.name);
        if (owner)
            g_variant_dict_insert(&d, "owner", "s", owner);
        if (group)
            g_variant_dict_insert(&d, "group", "s", group);
        if ((rc = change_vdisk(fs, "vdisk.chown", g_variant_dict_end(&d), &a)) < 0)
            return rc;
    }
    if ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != a.mode) {
        GVariantDict d;
        g_variant_dict_init(&d, NULL);
        g_variant_dict_insert(&d, "name", "s", a.name);
        g_variant_dict_insert(&d, "mode", "u", (guint32)(attr->st_mode & 07777));
        if ((rc = change_vdisk(fs, "vdisk.chmod", g_variant_dict_end(&d), &a)) < 0)
            return rc;
    }
    /* atime and mtime: the row's mtime is the CCD's, not the data's */
    vdisk_stat(&a, out);
    return 0;
}

static void ndfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                         struct fuse_file_info *fi)
{
    (void)fi;
    struct stat st;
    int rc = do_setattr(fs_of(req), ino, attr, to_set, &st);
    if (rc < 0)
        ndfs__fuse_reply_err(req, rc);
    else
        fuse_reply_attr(req, &st, NDFS_FUSE_TIMEOUT);
}

/* Directory offsets: "." 1, ".." 2, the vdisk of inode i: i + 2 (stable). */
static int fill_dir(fuse_req_t req, struct ndfs_fs *fs, size_t size, off_t off, bool plus,
                    char *buf, size_t *used)
{
    size_t pos = 0;
    struct stat st;
    root_stat(fs, &st);
    const char *dots[] = {".", ".."};
    for (off_t i = off; i < 2; i++) {
        size_t need;
        if (plus) {
            /* the kernel counts no lookup for . and .. */
            struct fuse_entry_param e = {.ino = VDISK_TABLE_ROOT_INO, .attr = st};
            need = fuse_add_direntry_plus(req, buf + pos, size - pos, dots[i], &e, i + 1);
        } else {
            need = fuse_add_direntry(req, buf + pos, size - pos, dots[i], &st, i + 1);
        }
        if (need > size - pos)
            goto done;
        pos += need;
    }
    uint64_t next_ino = off > 2 ? (uint64_t)off - 1 : 2;
    for (;;) {
        g_autofree struct vdisk_attr *batch = NULL;
        size_t n = vdisk_table_list_from(fs->table, next_ino, 64, &batch);
        if (n == 0)
            goto done;
        for (size_t i = 0; i < n; i++) {
            off_t next_off = (off_t)batch[i].ino + 2;
            size_t need;
            if (plus) {
                struct fuse_entry_param e;
                fill_entry(&batch[i], &e);
                need =
                    fuse_add_direntry_plus(req, buf + pos, size - pos, batch[i].name, &e, next_off);
            } else {
                vdisk_stat(&batch[i], &st);
                need = fuse_add_direntry(req, buf + pos, size - pos, batch[i].name, &st, next_off);
            }
            if (need > size - pos)
                goto done;
            pos += need;
            next_ino = batch[i].ino + 1;
        }
    }
done:
    *used = pos;
    return 0;
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
    if (ino != VDISK_TABLE_ROOT_INO) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    g_autofree char *buf = g_malloc(size ? size : 1);
    size_t used = 0;
    fill_dir(req, fs_of(req), size, off, plus, buf, &used);
    fuse_reply_buf(req, buf, used);
}

static void ndfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi)
{
    (void)fi;
    readdir_common(req, ino, size, off, false);
}

static void ndfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                             struct fuse_file_info *fi)
{
    (void)fi;
    readdir_common(req, ino, size, off, true);
}

/* Without network (no cluster key) a remote disk is out of reach: say so
 * once per vdisk. */
static void warn_remote(struct ndfs_fs *fs, const struct vdisk_attr *a)
{
    g_mutex_lock(&fs->warn_lock);
    bool first = !g_hash_table_contains(fs->warned_remote, &a->id);
    if (first)
        g_hash_table_add(fs->warned_remote, g_memdup2(&a->id, sizeof(a->id)));
    g_mutex_unlock(&fs->warn_lock);
    if (first)
        g_warning("vdisk \"%s\": its master is node \"%s\", not this node \"%s\", and this "
                  "mount has no cluster key to reach it (ENXIO)",
                  a->name, a->master_node, fs->node_name);
}

static void handle_free(struct ndfs_fs *fs, struct ndfs_handle *h)
{
    g_mutex_lock(&fs->handles_lock);
    g_hash_table_remove(fs->handles, h);
    g_mutex_unlock(&fs->handles_lock);
    int fd = atomic_load(&h->fd);
    if (fd >= 0)
        close(fd);
    if (h->announced)
        control_link_close_vdisk(fs->link, h->announced);
    g_mutex_clear(&h->open_lock);
    g_free(h->local_path);
    g_free(h);
}

static struct ndfs_handle *handle_new(fuse_ino_t ino, int flags)
{
    struct ndfs_handle *h = g_new0(struct ndfs_handle, 1);
    atomic_init(&h->fd, -1);
    g_mutex_init(&h->open_lock);
    h->ino = ino;
    h->open_flags = flags;
    h->direct = (flags & O_DIRECT) != 0;
    h->writable = (flags & O_ACCMODE) != O_RDONLY;
    return h;
}

/* Opens h's local disk: the path that masters the vdisk now, which must be
 * on this node. 0 when h->fd is open. */
static int local_open(struct ndfs_fs *fs, struct ndfs_handle *h, bool quiet)
{
    int rc = 0;
    g_autofree char *node = NULL, *path = NULL;
    g_mutex_lock(&h->open_lock);
    if (atomic_load(&h->fd) >= 0)
        goto out;
    if ((rc = vdisk_table_master_path(fs->table, h->ino, &node, &path)) < 0)
        goto out;
    if (!node || !path || strcmp(node, fs->node_name) != 0) {
        rc = -ENXIO;
        goto out;
    }
    int fd;
    /* O_TRUNC is ignored, as on a block device */
    rc = localio_open(path, h->writable, h->direct, h->open_flags, &fd);
    if (rc < 0) {
        if (!quiet || !atomic_exchange(&h->local_failed_logged, true))
            g_warning("vdisk of inode %" G_GUINT64_FORMAT ": cannot open its disk %s: %s%s", h->ino,
                      path, g_strerror(-rc), fs->driver ? "; its I/O goes through its master" : "");
        goto out;
    }
    h->local_path = g_steal_pointer(&path);
    atomic_store(&h->fd, fd); /* after local_path: readers load fd first */
out:
    g_mutex_unlock(&h->open_lock);
    return rc;
}

static int do_open(struct ndfs_fs *fs, fuse_ino_t ino, int flags, struct ndfs_handle **out)
{
    if (ino == VDISK_TABLE_ROOT_INO)
        return -EISDIR;
    struct vdisk_attr a;
    int rc = vdisk_table_get(fs->table, ino, &a);
    if (rc < 0)
        return rc;
    bool mine = strcmp(a.master_node, fs->node_name) == 0;
    if (!mine && !fs->driver) {
        warn_remote(fs, &a);
        return -ENXIO;
    }
    struct ndfs_handle *h = handle_new(ino, flags);
    if (mine && !(fs->force_remote && fs->driver)) {
        rc = local_open(fs, h, false);
        /* with a driver, the master (this node's ndfsd) does the I/O and
         * fails the path when the disk is bad */
        if (rc < 0 && !fs->driver) {
            handle_free(fs, h);
            return rc == -ENOENT || rc == -ENOTDIR ? -EIO : rc;
        }
    }
    rc = control_link_open_vdisk(fs->link, a.name, &h->announced);
    if (rc < 0) {
        handle_free(fs, h);
        return rc;
    }
    *out = h;
    return 0;
}

static void ndfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ndfs_fs *fs = fs_of(req);
    struct ndfs_handle *h = NULL;
    int rc = do_open(fs, ino, fi->flags, &h);
    if (rc < 0) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    g_mutex_lock(&fs->handles_lock);
    g_hash_table_add(fs->handles, h);
    g_mutex_unlock(&fs->handles_lock);
    /* no page cache in the FUSE file: other nodes will write the disk too */
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) < 0)
        handle_free(fs, h); /* interrupted: no release will come */
}

/* The vdisk's size for I/O on h; -EIO once it was removed under h. */
int ndfs__fuse_handle_size(struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t *size)
{
    if (vdisk_table_size(fs->table, h->ino, size) == 0)
        return 0;
    if (!atomic_exchange(&h->removed_logged, true))
        g_warning("vdisk of inode %" G_GUINT64_FORMAT " was removed while open: I/O fails "
                  "with EIO",
                  h->ino);
    return -EIO;
}

int ndfs__fuse_route(struct ndfs_fs *fs, struct ndfs_handle *h, uint64_t *id, uint64_t *size)
{
    int fd = atomic_load(&h->fd);
    struct vdisk_io io;
    if (vdisk_table_io(fs->table, h->ino, fs->node_name, fd >= 0 ? h->local_path : NULL, &io) < 0)
        return ndfs__fuse_handle_size(fs, h, size); /* logs the removal once, -EIO */
    *id = io.id;
    *size = io.size;
    if (!fs->driver)
        return fd >= 0 ? 1 : -ENXIO; /* no network: the local disk is the only path */
    /* local disk I/O only while the mapping names this node and the path it
     * opened, and while this node's lease is valid (fencing) */
    if (fs->force_remote || !io.local || !control_link_lease_valid(fs->link))
        return 0;
    if (fd < 0 && local_open(fs, h, true) < 0)
        return 0;
    /* suspended by a reconfiguration: the driver holds it */
    return ndfs_driver_local_enter(fs->driver, io.id) ? 1 : 0;
}

static void sync_common(fuse_req_t req, struct ndfs_handle *h, bool datasync, bool only_if_dirty)
{
    struct ndfs_fs *fs = fs_of(req);
    uint64_t id = 0, vsize = 0;
    int rc = ndfs__fuse_route(fs, h, &id, &vsize);
    if (rc == 0) {
        ndfs__fuse_remote_sync(req, fs, h, id, datasync, only_if_dirty);
        return;
    }
    if (rc < 0) {
        ndfs__fuse_reply_err(req, rc);
        return;
    }
    bool was_dirty = h->writable && atomic_exchange(&h->dirty, false);
    if (!h->writable || (only_if_dirty && !was_dirty)) {
        ndfs__fuse_local_done(fs, id);
        fuse_reply_err(req, 0);
        return;
    }
    rc = localio_sync(atomic_load(&h->fd), datasync);
    ndfs__fuse_local_done(fs, id);
    if (rc < 0 && ndfs__fuse_path_error(fs, h, rc)) {
        atomic_store(&h->dirty, true);
        ndfs__fuse_remote_sync(req, fs, h, id, datasync, false);
        return;
    }
    if (rc < 0)
        atomic_store(&h->dirty, true);
    ndfs__fuse_reply_err(req, rc);
}

static void ndfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    /* a close(2) after writes reaches the disk, as the design promises */
    sync_common(req, handle_of(fi), true, true);
}

static void ndfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    sync_common(req, handle_of(fi), datasync != 0, false);
}

static void ndfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    handle_free(fs_of(req), handle_of(fi));
    fuse_reply_err(req, 0);
}

/* 1: a discard or zeroing of [off, off + *len) to do (clipped to the
 * vdisk), 0: nothing to do, -errno: refused. */
static int fallocate_check(uint64_t vsize, int mode, off_t off, off_t length, uint64_t *len)
{
    if (off < 0 || length <= 0)
        return -EINVAL;
    uint64_t end = (uint64_t)off + (uint64_t)length;
    int kind = mode & ~FALLOC_FL_KEEP_SIZE;
    if (kind == 0) /* the space of a vdisk exists already */
        return end <= vsize ? 0 : -ENOSPC;
    if (kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE)
        return -EOPNOTSUPP;
    if ((uint64_t)off >= vsize)
        return 0;
    /* discard and zeroing (a loop device's) stay within the vdisk */
    *len = MIN(end, vsize) - (uint64_t)off;
    return 1;
}

static void ndfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t length,
                           struct fuse_file_info *fi)
{
    (void)ino;
    struct ndfs_fs *fs = fs_of(req);
    struct ndfs_handle *h = handle_of(fi);
    uint64_t id = 0, vsize = 0, len = 0;
    int route = ndfs__fuse_route(fs, h, &id, &vsize);
    if (route < 0) {
        ndfs__fuse_reply_err(req, route);
        return;
    }
    int rc = fallocate_check(vsize, mode, off, length, &len);
    bool zero = (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
    if (rc == 1 && route == 0) {
        /* through the driver to the master (another node's, or a suspended vdisk) */
        ndfs__fuse_remote_discard(req, fs, id, zero, (uint64_t)off, len);
        return;
    }
    if (rc == 1)
        rc = localio_fallocate(atomic_load(&h->fd),
                               (zero ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) |
                                   FALLOC_FL_KEEP_SIZE,
                               (uint64_t)off, len);
    if (route > 0)
        ndfs__fuse_local_done(fs, id);
    ndfs__fuse_reply_err(req, rc);
}

static void ndfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    uint64_t count, bytes;
    vdisk_table_totals(fs_of(req)->table, &count, &bytes);
    struct statvfs st = {0};
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_blocks = (fsblkcnt_t)((bytes + 4095) / 4096);
    st.f_files = (fsfilcnt_t)(count + 1);
    st.f_namemax = NDFS_VDISK_NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* vdisks are made and removed with ndfsadm */
static void ndfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    fuse_reply_err(req, EPERM);
}

static void ndfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    fuse_reply_err(req, EPERM);
}

static void ndfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    fuse_reply_err(req, EPERM);
}

static void ndfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    fuse_reply_err(req, EPERM);
}

static void ndfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                        const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    fuse_reply_err(req, EPERM);
}

static void ndfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    fuse_reply_err(req, EPERM);
}

static void ndfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    fuse_reply_err(req, EPERM);
}

const struct fuse_lowlevel_ops ndfs_fuse_ops = {
    .init = ndfs_init,
    .lookup = ndfs_lookup,
    .forget = ndfs_forget,
    .forget_multi = ndfs_forget_multi,
    .getattr = ndfs_getattr,
    .setattr = ndfs_setattr,
    .readdir = ndfs_readdir,
    .readdirplus = ndfs_readdirplus,
    .open = ndfs_open,
    .read = ndfs__fuse_read,
    .write_buf = ndfs__fuse_write_buf,
    .flush = ndfs_flush,
    .fsync = ndfs_fsync,
    .release = ndfs_release,
    .fallocate = ndfs_fallocate,
    .statfs = ndfs_statfs,
    .mknod = ndfs_mknod,
    .mkdir = ndfs_mkdir,
    .unlink = ndfs_unlink,
    .rmdir = ndfs_unlink,
    .symlink = ndfs_symlink,
    .rename = ndfs_rename,
    .link = ndfs_link,
    .create = ndfs_create,
};
