/* Disk I/O that does not hold the caller: Linux native AIO (io_submit)
 * completed on a thread of its own. For the mount's local path.
 *
 * A FUSE thread that does its local pread or pwrite itself sleeps until the
 * disk answers, and the next request the kernel queues wakes another FUSE
 * thread: one thread switch per request, each costing tens of microseconds
 * on a virtual machine whose idle CPUs halt. With AIO the FUSE thread
 * submits and goes back to /dev/fuse for the next request, and one
 * completion thread answers every request that completed since it last
 * woke.
 *
 * Unlike aio.h's (which must never block the loop it runs on), submissions
 * here may block: the caller is a thread whose job is to wait.
 *
 * Everything here is thread-safe. */
#ifndef NDFS_AIO_THREAD_H
#define NDFS_AIO_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ndfs_aio_thread;

/* res: bytes transferred, or -errno. Runs on the completion thread; it may
 * submit again. */
typedef void (*ndfs_aio_thread_cb)(void *data, int64_t res);

/* An AIO context of depth requests in flight at most and its completion
 * thread. After completions the thread polls for more for poll_us
 * microseconds before it sleeps (see spin.h for why; 0: never). 0, or -errno (-ENOSYS: no AIO in
 * this kernel; -EAGAIN: fs.aio-max-nr reached); *errmsg then says why. */
int ndfs_aio_thread_new(unsigned depth, unsigned poll_us, struct ndfs_aio_thread **out,
                        char **errmsg);

/* Submits a read (write false) or a write of len bytes at off on fd (opened
 * O_DIRECT; buf aligned as O_DIRECT wants). 0: cb runs once, later, on the
 * completion thread; -EAGAIN: depth requests are in flight; other -errno:
 * the kernel refused it (-EINVAL: e.g. misaligned for the device). Unless
 * 0, cb will not run: do it another way. */
int ndfs_aio_thread_submit(struct ndfs_aio_thread *a, int fd, bool write, void *buf, size_t len,
                           uint64_t off, ndfs_aio_thread_cb cb, void *data);

/* Waits for the requests in flight to complete (their callbacks run), then
 * stops the completion thread and frees a. No submission may race it. */
void ndfs_aio_thread_free(struct ndfs_aio_thread *a);

#endif
