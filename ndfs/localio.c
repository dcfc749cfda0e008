#define G_LOG_DOMAIN "ndfs-fuse"

#include "localio.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>

#include "ndfs/iobuf.h"

int localio_open(const char *path, bool writable, bool direct, int extra_flags, int *fd)
{
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (extra_flags & (O_SYNC | O_DSYNC));
    if (direct)
        flags |= O_DIRECT;
    int rc;
    do
        rc = open(path, flags);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -errno;
    *fd = rc;
    return 0;
}

/* Requests are at most 1 MiB and messages at most 16 MiB: below malloc's
 * largest mmap threshold (32 MiB on 64-bit), so none of them is mmap'd and
 * munmap'd (each 1 MiB request paid 256 page faults and the zeroing of its
 * pages otherwise: a third of the master's loop thread in a 1M sequential
 * write profile). */
#define LOCALIO_MMAP_THRESHOLD (32u << 20)
#define LOCALIO_TRIM           (64u << 20)

/* One heap for every thread: with glibc's default of one arena per thread
 * (up to 8 per CPU) the buffers that a request's threads allocate and free
 * land in ever more arenas, each keeping its own freed memory, and the RSS
 * crept up by 30-50 MiB an hour under a steady remote 4k QD32 load (a
 * 4-minute soak: master 14.1 -> 16.7 MiB, mount 30.8 -> 32.3 MiB; with one
 * arena 10.7 -> 10.7 and 13.0 -> 13.5). The threads mostly wait in
 * syscalls, so the one arena's lock costs little. */
#define LOCALIO_ARENAS 1

void localio_tune_malloc(void)
{
    /* best effort: the defaults only cost speed */
    (void)mallopt(M_ARENA_MAX, LOCALIO_ARENAS);
    (void)mallopt(M_MMAP_THRESHOLD, LOCALIO_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, LOCALIO_TRIM);
}

void *localio_alloc(size_t len)
{
    G_STATIC_ASSERT(NDFS_IOBUF_ALIGN % LOCALIO_BUFFER_ALIGN == 0);
    return ndfs_iobuf_alloc(len);
}

void localio_free(void *buf)
{
    ndfs_iobuf_free(buf);
}

bool localio_direct_aligned(uint64_t off, size_t len)
{
    return off % LOCALIO_SECTOR == 0 && len % LOCALIO_SECTOR == 0;
}

ssize_t localio_pread(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t localio_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int localio_sync(int fd, bool datasync)
{
    int rc = datasync ? fdatasync(fd) : fsync(fd);
    return rc < 0 ? -errno : 0;
}

int localio_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    int rc;
    do
        rc = fallocate(fd, mode, (off_t)off, (off_t)len);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}
