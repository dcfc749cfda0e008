#define G_LOG_DOMAIN "ndfs-io"

#include "io_proto.h"

#include <errno.h>
#include <string.h>

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void ndfs_io_request_encode(const struct ndfs_io_request *r, uint8_t out[NDFS_IO_REQUEST_SIZE])
{
    out[0] = NDFS_IO_VERSION;
    out[1] = r->op;
    put_u16(out + 2, r->flags);
    put_u32(out + 4, r->length);
    put_u64(out + 8, r->vdisk_id);
    put_u64(out + 16, r->offset);
}

int ndfs_io_request_decode(const void *buf, size_t len, struct ndfs_io_request *out)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof(*out));
    if (!buf || len != NDFS_IO_REQUEST_SIZE)
        return -EBADMSG;
    if (p[0] != NDFS_IO_VERSION)
        return -EPROTONOSUPPORT;
    struct ndfs_io_request r = {
        .op = p[1],
        .flags = get_u16(p + 2),
        .length = get_u32(p + 4),
        .vdisk_id = get_u64(p + 8),
        .offset = get_u64(p + 16),
    };
    switch (r.op) {
    case NDFS_IO_READ:
    case NDFS_IO_WRITE:
        if (r.flags & ~NDFS_IO_FLAG_DIRECT)
            return -EBADMSG;
        if (r.length == 0 || r.length > NDFS_IO_MAX_LENGTH || r.offset > UINT64_MAX - r.length)
            return -EBADMSG;
        break;
    case NDFS_IO_FSYNC:
        if ((r.flags & ~NDFS_IO_FLAG_DATASYNC) || r.length != 0 || r.offset != 0)
            return -EBADMSG;
        break;
    case NDFS_IO_DISCARD:
        if (r.flags & ~NDFS_IO_FLAG_ZERO)
            return -EBADMSG;
        if (r.length == 0 || r.length > NDFS_IO_MAX_LENGTH || r.offset > UINT64_MAX - r.length)
            return -EBADMSG;
        break;
    default:
        return -EBADMSG;
    }
    *out = r;
    return 0;
}

void ndfs_io_reply_encode(const struct ndfs_io_reply *r, uint8_t out[NDFS_IO_REPLY_SIZE])
{
    out[0] = NDFS_IO_VERSION;
    out[1] = out[2] = out[3] = 0;
    put_u32(out + 4, (uint32_t)r->status);
}

int ndfs_io_reply_decode(const void *buf, size_t len, struct ndfs_io_reply *out)
{
    const uint8_t *p = buf;
    memset(out, 0, sizeof(*out));
    if (!buf || len != NDFS_IO_REPLY_SIZE)
        return -EBADMSG;
    if (p[0] != NDFS_IO_VERSION)
        return -EPROTONOSUPPORT;
    if (p[1] || p[2] || p[3])
        return -EBADMSG;
    int32_t status = (int32_t)get_u32(p + 4);
    if (status < -NDFS_IO_MAX_ERRNO || (status > 0 && (uint32_t)status > NDFS_IO_MAX_LENGTH))
        return -EBADMSG;
    out->status = status;
    return 0;
}

const char *ndfs_io_op_name(uint8_t op)
{
    switch (op) {
    case NDFS_IO_READ:
        return "read";
    case NDFS_IO_WRITE:
        return "write";
    case NDFS_IO_FSYNC:
        return "fsync";
    case NDFS_IO_DISCARD:
        return "discard";
    }
    return "unknown";
}
