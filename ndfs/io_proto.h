/* The IO channel's messages between an ndfs mount's driver and a master
 * (NDFS_CHANNEL_IO). The transport carries the request id and the epoch;
 * the control part is one of the records below, the data part the bytes of
 * a write (request) or of a read (reply).
 *
 * request (24 bytes, little endian):
 *   u8 version, u8 op, u16 flags, u32 length, u64 vdisk id, u64 offset
 *   (a discard carries no data; its reply's status is the bytes discarded)
 * reply (8 bytes):
 *   u8 version, u8[3] zero, i32 status: bytes read or written, 0 for fsync,
 *   or -errno (NACK)
 *
 * Decoders trust nothing: a wrong size, version, op, flag, reserved byte or
 * range is an error, so every accepted record encodes back to its bytes. */
#ifndef NDFS_IO_PROTO_H
#define NDFS_IO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define NDFS_IO_VERSION      1
#define NDFS_IO_REQUEST_SIZE 24
#define NDFS_IO_REPLY_SIZE   8
/* The most data one request carries; the driver splits larger ones. */
#define NDFS_IO_MAX_LENGTH (1u << 20)
/* errno values fit in this (Linux: MAX_ERRNO). */
#define NDFS_IO_MAX_ERRNO 4095

enum ndfs_io_op {
    NDFS_IO_READ = 1,
    NDFS_IO_WRITE = 2,
    NDFS_IO_FSYNC = 3,
    NDFS_IO_DISCARD = 4, /* the range's blocks are deallocated (reads then give zeros) */
};

#define NDFS_IO_FLAG_DIRECT   0x1u /* read/write: through the disk's O_DIRECT descriptor */
#define NDFS_IO_FLAG_DATASYNC 0x2u /* fsync: fdatasync(2) */
#define NDFS_IO_FLAG_ZERO     0x4u /* discard: zero the range, keeping it allocated */

struct ndfs_io_request {
    uint8_t op; /* enum ndfs_io_op */
    uint16_t flags;
    uint32_t length; /* read/write/discard: 1..NDFS_IO_MAX_LENGTH; fsync: 0 */
    uint64_t vdisk_id;
    uint64_t offset; /* fsync: 0; offset + length does not overflow */
};

struct ndfs_io_reply {
    int32_t status; /* >= 0: bytes (at most NDFS_IO_MAX_LENGTH); < 0: -errno */
};

void ndfs_io_request_encode(const struct ndfs_io_request *r, uint8_t out[NDFS_IO_REQUEST_SIZE]);
/* -EPROTONOSUPPORT: another version; -EBADMSG: anything else malformed. */
int ndfs_io_request_decode(const void *buf, size_t len, struct ndfs_io_request *out);

void ndfs_io_reply_encode(const struct ndfs_io_reply *r, uint8_t out[NDFS_IO_REPLY_SIZE]);
/* -EPROTONOSUPPORT: another version; -EBADMSG: anything else malformed. */
int ndfs_io_reply_decode(const void *buf, size_t len, struct ndfs_io_reply *out);

const char *ndfs_io_op_name(uint8_t op);

#endif
