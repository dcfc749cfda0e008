/* Linux native AIO system calls (glibc has no wrappers; libaio is not
 * needed for four calls). Header only: aio.c and aio_thread.c. Each
 * returns what the system call does: -1 and errno on failure. */
#ifndef NDFS_AIO_SYS_H
#define NDFS_AIO_SYS_H

#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline long ndfs_io_setup(unsigned nr, aio_context_t *ctx)
{
    return syscall(SYS_io_setup, nr, ctx);
}

static inline long ndfs_io_destroy(aio_context_t ctx)
{
    return syscall(SYS_io_destroy, ctx);
}

static inline long ndfs_io_submit(aio_context_t ctx, long n, struct iocb **iocbs)
{
    return syscall(SYS_io_submit, ctx, n, iocbs);
}

/* timeout NULL: wait for min events. */
static inline long ndfs_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
                                     struct timespec *timeout)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, timeout);
}

#endif
