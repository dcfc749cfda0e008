/* Direct I/O on a disk attached to this node: the backing block device or
 * regular file of a vdisk, opened by the mount itself. All functions return
 * 0 (or a byte count) or -errno, and retry short transfers and EINTR. */
#ifndef NDFS_LOCALIO_H
#define NDFS_LOCALIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Buffers for O_DIRECT transfers are aligned to this. */
#define LOCALIO_BUFFER_ALIGN 4096
/* Offsets and lengths of O_DIRECT transfers must be multiples of this
 * (as on a block device opened O_DIRECT; -EINVAL otherwise). */
#define LOCALIO_SECTOR 512

/* Opens path O_CLOEXEC, O_RDONLY when !writable else O_RDWR, plus O_DIRECT
 * when direct and extra_flags (O_SYNC, O_DSYNC). The fd in *fd. */
int localio_open(const char *path, bool writable, bool direct, int extra_flags, int *fd);
/* Keeps the data path's buffers (1 MiB requests, messages) in malloc's
 * heaps instead of a fresh mmap and page faults for every request: large
 * blocks are not mmap'd, freed memory is kept up to LOCALIO_TRIM bytes
 * per arena. Once per process, before its threads start (ndfsd's master,
 * the mount). */
void localio_tune_malloc(void);
/* An aligned buffer of len bytes (at least 1), in huge pages when it is
 * large (ndfs/iobuf.h); localio_free() it. NULL on ENOMEM. */
void *localio_alloc(size_t len);
/* Frees a buffer of localio_alloc() or any malloc'd block; NULL is fine. */
void localio_free(void *buf);
/* True when an O_DIRECT transfer of len bytes at off may proceed. */
bool localio_direct_aligned(uint64_t off, size_t len);
/* Reads exactly len bytes at off unless the file ends first; the count. */
ssize_t localio_pread(int fd, void *buf, size_t len, uint64_t off);
/* Writes all len bytes at off; len or -errno. */
ssize_t localio_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* fsync(2) or, when datasync, fdatasync(2). */
int localio_sync(int fd, bool datasync);
/* Punches a hole (zeroes, deallocating when it can) or zeroes a range
 * without changing the size. mode is fallocate(2)'s. */
int localio_fallocate(int fd, int mode, uint64_t off, uint64_t len);

#endif
