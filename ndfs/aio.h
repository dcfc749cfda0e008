/* Disk I/O without a thread: Linux native AIO (io_submit) on a libuv loop.
 *
 * The master's disk threads cost two thread switches per request (the loop
 * wakes a disk thread, which wakes the loop again when its pread or pwrite
 * returns); on a virtual machine each switch to an idle CPU costs tens of
 * microseconds. With AIO the loop submits the I/O and the disk's completion
 * wakes the loop once, through an eventfd it polls.
 *
 * Only what never blocks the loop goes this way: O_DIRECT reads and writes
 * (buffered AIO runs synchronously in io_submit), submitted with RWF_NOWAIT,
 * so that a request the kernel would have to wait for (a file system lock,
 * block allocation, a full device queue) is refused with -EAGAIN instead of
 * sleeping: the caller then gives it to its threads. A disk that hangs
 * leaves its requests in flight; the loop goes on.
 *
 * Everything here runs on the loop's thread. */
#ifndef NDFS_AIO_H
#define NDFS_AIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ndfs_aio;

/* res: bytes transferred, or -errno (-EAGAIN / -EOPNOTSUPP: the kernel
 * would have blocked, or does not take RWF_NOWAIT for this file: do it the
 * blocking way). Runs on the loop's thread. */
typedef void (*ndfs_aio_cb)(void *data, int64_t res);

/* An AIO context of depth requests in flight at most, completed on loop.
 * 0, or -errno (-ENOSYS: no AIO in this kernel; -EAGAIN: fs.aio-max-nr
 * reached); *errmsg then says why. */
int ndfs_aio_new(uv_loop_t *loop, unsigned depth, struct ndfs_aio **out, char **errmsg);

/* Submits a read (write false) or a write of len bytes at off on fd (opened
 * O_DIRECT; buf aligned as O_DIRECT wants). 0: cb runs once, later, with
 * the result; -EAGAIN: not submitted (depth reached, or the kernel would
 * block), cb will not run, do it another way; other -errno: not submitted
 * (-EOPNOTSUPP: this file takes no RWF_NOWAIT AIO; -EINVAL: not this
 * request, e.g. misaligned for the device). */
int ndfs_aio_submit(struct ndfs_aio *a, int fd, bool write, void *buf, size_t len, uint64_t off,
                    ndfs_aio_cb cb, void *data);

/* Requests submitted and not completed yet. */
unsigned ndfs_aio_in_flight(const struct ndfs_aio *a);

/* Closes a: nothing may be in flight. cb (may be NULL) runs on the loop
 * once a is freed. */
void ndfs_aio_close(struct ndfs_aio *a, void (*cb)(void *data), void *data);

#endif
