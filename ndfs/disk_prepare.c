/* The disk of a vdisk on this node: checked, created or grown before the
 * CCD records the vdisk (create, resize, and disk.prepare from other nodes). */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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
