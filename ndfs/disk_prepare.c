/* The disk of a vdisk: checked, created or grown before the CCD records
 * the vdisk (create, resize, move), on this node or through a disk.prepare
 * call to the disk's node (which runs ndfs_disk_prepare there). */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "commands.h"
#include "parse.h"

static char *too_small(const char *vdisk, const char *path, uint64_t has, uint64_t needs)
{
    g_autofree char *has_h = ndfs_format_size(has);
    g_autofree char *needs_h = ndfs_format_size(needs);
    return g_strdup_printf("%s holds %s, vdisk \"%s\" needs %s", path, has_h, vdisk, needs_h);
}

int ndfs_disk_prepare(const char *vdisk, const char *path, uint64_t size, bool may_create,
                      bool may_grow, bool *created, char **errmsg)
{
    struct stat st;
    int fd, err;

    *created = false;
    *errmsg = NULL;
    if (size > (uint64_t)INT64_MAX) {
        *errmsg = g_strdup_printf("size of vdisk \"%s\" is too large", vdisk);
        return -EFBIG;
    }
    if (stat(path, &st) < 0) {
        err = errno;
        if (err != ENOENT || !may_create) {
            *errmsg = g_strdup_printf("%s: %s", path, g_strerror(err));
            return -err;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            err = errno;
            *errmsg = g_strdup_printf("cannot create %s: %s", path, g_strerror(err));
            return -err;
        }
        if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
            err = errno;
            close(fd);
            unlink(path);
            *errmsg = g_strdup_printf("cannot make %s hold %" G_GUINT64_FORMAT " bytes: %s", path,
                                      size, g_strerror(err));
            return -err;
        }
        if (close(fd) < 0) {
            err = errno;
            unlink(path);
            *errmsg = g_strdup_printf("cannot create %s: %s", path, g_strerror(err));
            return -err;
        }
        *created = true;
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size >= size)
            return 0;
        if (!may_grow) {
            *errmsg = too_small(vdisk, path, (uint64_t)st.st_size, size);
            return -ENOSPC;
        }
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
            err = errno;
            if (fd >= 0)
                close(fd);
            *errmsg = g_strdup_printf("cannot grow %s to %" G_GUINT64_FORMAT " bytes: %s", path,
                                      size, g_strerror(err));
            return -err;
        }
        close(fd);
        return 0;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t dev_size = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ioctl(fd, BLKGETSIZE64, &dev_size) < 0) {
            err = errno;
            if (fd >= 0)
                close(fd);
            *errmsg = g_strdup_printf("cannot read the size of %s: %s", path, g_strerror(err));
            return -err;
        }
        close(fd);
        if (dev_size < size) {
            *errmsg = too_small(vdisk, path, dev_size, size);
            return -ENOSPC;
        }
        return 0;
    }
    *errmsg = g_strdup_printf("%s: not a regular file or block device", path);
    return -EINVAL;
}

struct prepare_call {
    char *node;
    ndfs_disk_prepared_cb cb;
    void *data;
};

static void prepared_remote(int status, const char *message, GVariant *result, void *data)
{
    struct prepare_call *pc = data;
    gboolean created = FALSE;
    if (status == 0 && result != NULL)
        g_variant_lookup(result, "created", "b", &created);
    g_autofree char *msg =
        status < 0 && message == NULL
            ? g_strdup_printf("node %s did not check the disk: %s", pc->node, g_strerror(-status))
            : g_strdup(message);
    pc->cb(status, msg, created, pc->data);
    g_free(pc->node);
    g_free(pc);
}

void ndfs_disk_prepare_on(struct ndfs_server *s, const char *node, const char *vdisk,
                          const char *path, uint64_t size, bool may_create, bool may_grow,
                          ndfs_disk_prepared_cb cb, void *data)
{
    if (strcmp(node, s->node_name) == 0) {
        bool created = false;
        g_autofree char *msg = NULL;
        int rc = ndfs_disk_prepare(vdisk, path, size, may_create, may_grow, &created, &msg);
        cb(rc, msg, created, data);
        return;
    }
    if (s->cluster == NULL) {
        cb(0, NULL, false, data);
        return;
    }
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "vdisk", "s", vdisk);
    g_variant_dict_insert(&d, "path", "s", path);
    g_variant_dict_insert(&d, "size", "t", (guint64)size);
    g_variant_dict_insert(&d, "create", "b", (gboolean)may_create);
    g_variant_dict_insert(&d, "grow", "b", (gboolean)may_grow);
    struct prepare_call *pc = g_new0(struct prepare_call, 1);
    pc->node = g_strdup(node);
    pc->cb = cb;
    pc->data = data;
    int rc = ndfs_cluster_call(s->cluster, node, "disk.prepare", g_variant_dict_end(&d),
                               prepared_remote, pc);
    if (rc < 0) {
        g_free(pc->node);
        g_free(pc);
        g_autofree char *msg =
            g_strdup_printf("cannot reach node %s to check %s: %s", node, path, g_strerror(-rc));
        cb(rc, msg, false, data);
    }
}
