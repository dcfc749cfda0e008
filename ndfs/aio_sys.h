/* Linux native AIO system calls (glibc has no wrappers; libaio is not
 * needed for four calls), and the request slots that aio.c and
 * aio_thread.c hand out. Header only. The calls return what the system
 * call does: -1 and errno on failure. */
#ifndef NDFS_AIO_SYS_H
#define NDFS_AIO_SYS_H

#include <errno.h>
#include <glib.h>
#include <linux/aio_abi.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
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

/* Submits one iocb, again after EINTR: 0, or -errno (-EAGAIN when the
 * kernel took none). */
static inline int ndfs_io_submit_one(aio_context_t ctx, struct iocb *iocb)
{
    struct iocb *list[1] = {iocb};
    long n;
    do
        n = ndfs_io_submit(ctx, 1, list);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : n < 0 ? -errno : -EAGAIN;
}

/* timeout NULL: wait for min events. */
static inline long ndfs_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
                                     struct timespec *timeout)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, timeout);
}

/* One request in flight and whom to tell: allocated once, depth of them,
 * handed out by a free list. */
struct ndfs_aio_slot {
    struct iocb iocb;
    void (*done)(void *data, int64_t res);
    void *data;
    struct ndfs_aio_slot *next_free;
};

/* depth slots (g_free them), all on *free_list; NULL when out of memory. */
static inline struct ndfs_aio_slot *ndfs_aio_slots_new(unsigned depth,
                                                       struct ndfs_aio_slot **free_list)
{
    struct ndfs_aio_slot *slots = g_try_new0(struct ndfs_aio_slot, depth);
    *free_list = NULL;
    for (unsigned i = 0; slots && i < depth; i++) {
        slots[i].next_free = *free_list;
        *free_list = &slots[i];
    }
    return slots;
}

/* s's iocb for a read (write false) or a write of len bytes at off on fd;
 * its event's data is s. */
static inline void ndfs_aio_slot_prep(struct ndfs_aio_slot *s, int fd, bool write, void *buf,
                                      size_t len, uint64_t off)
{
    memset(&s->iocb, 0, sizeof(s->iocb));
    s->iocb.aio_data = (uint64_t)(uintptr_t)s;
    s->iocb.aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    s->iocb.aio_fildes = (uint32_t)fd;
    s->iocb.aio_buf = (uint64_t)(uintptr_t)buf;
    s->iocb.aio_nbytes = len;
    s->iocb.aio_offset = (int64_t)off;
}

#endif
