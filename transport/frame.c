/* Frame codec. Decoders trust nothing: every field is checked before a
 * length is used. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <string.h>

#include <glib.h>

#include "frame.h"

static void put16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_LE(v);
    memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, 8);
}
static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return GUINT16_FROM_LE(v);
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

void ndfs_frame_encode(const struct ndfs_frame_header *h, uint32_t payload_crc,
                       uint8_t out[NDFS_FRAME_HEADER_SIZE])
{
    memset(out, 0, NDFS_FRAME_HEADER_SIZE);
    put32(out, NDFS_FRAME_MAGIC);
    out[4] = NDFS_FRAME_VERSION;
    out[5] = h->type;
    out[6] = h->flags;
    put16(out + 8, h->channel);
    put16(out + 10, h->link);
    put32(out + 12, h->control_len);
    put32(out + 16, h->data_len);
    put32(out + 20, h->msg_data_len);
    put64(out + 24, h->seq);
    put64(out + 32, h->ack);
    put64(out + 40, h->request_id);
    put64(out + 48, h->epoch);
    put32(out + 56, ndfs_crc32c(payload_crc, out, NDFS_FRAME_HEADER_SIZE));
}

static long bad(const char **reason, const char *why)
{
    if (reason)
        *reason = why;
    return -EBADMSG;
}

long ndfs_frame_decode_header(const uint8_t *buf, size_t len, size_t max_payload,
                              struct ndfs_frame_header *h, const char **reason)
{
    /* check what is there as soon as it is there: garbage fails fast */
    if (len >= 4 && get32(buf) != NDFS_FRAME_MAGIC)
        return bad(reason, "bad magic");
    if (len >= 5 && buf[4] != NDFS_FRAME_VERSION)
        return bad(reason, "unknown version");
    if (len < NDFS_FRAME_HEADER_SIZE)
        return -EAGAIN;
    h->type = buf[5];
    h->flags = buf[6];
    h->channel = get16(buf + 8);
    h->link = get16(buf + 10);
    h->control_len = get32(buf + 12);
    h->data_len = get32(buf + 16);
    h->msg_data_len = get32(buf + 20);
    h->seq = get64(buf + 24);
    h->ack = get64(buf + 32);
    h->request_id = get64(buf + 40);
    h->epoch = get64(buf + 48);
    h->checksum = get32(buf + 56);
    if (h->type < 1 || h->type > NDFS_FRAME_TYPE_MAX)
        return bad(reason, "unknown frame type");
    if (h->flags & ~(NDFS_FRAME_FIRST | NDFS_FRAME_LAST))
        return bad(reason, "unknown flags");
    if (buf[7] != 0 || get32(buf + 60) != 0)
        return bad(reason, "reserved bits set");
    if ((uint64_t)h->control_len + h->data_len > max_payload ||
        (uint64_t)h->control_len + h->msg_data_len > max_payload)
        return bad(reason, "length over the limit");
    if (h->type == NDFS_FRAME_DATA) {
        if (h->seq == 0)
            return bad(reason, "data frame without sequence number");
        if (h->data_len > h->msg_data_len)
            return bad(reason, "fragment longer than its message");
        if ((h->flags & NDFS_FRAME_FIRST) && (h->flags & NDFS_FRAME_LAST) &&
            h->data_len != h->msg_data_len)
            return bad(reason, "whole message with a wrong length");
        if (!(h->flags & NDFS_FRAME_FIRST) && h->control_len)
            return bad(reason, "control part in a later fragment");
    } else {
        if (h->flags || h->seq || h->msg_data_len || h->channel)
            return bad(reason, "fields set on a non-data frame");
        if (h->type != NDFS_FRAME_AUTH_CHALLENGE && h->type != NDFS_FRAME_AUTH_RESPONSE &&
            h->type != NDFS_FRAME_AUTH_OK && (h->control_len || h->data_len))
            return bad(reason, "payload on a control frame");
    }
    return NDFS_FRAME_HEADER_SIZE + (long)h->control_len + (long)h->data_len;
}

int ndfs_frame_verify_parts(const uint8_t *header, const struct ndfs_frame_header *h,
                            const uint8_t *control, const uint8_t *data, const char **reason)
{
    uint8_t hdr[NDFS_FRAME_HEADER_SIZE];
    memcpy(hdr, header, sizeof hdr);
    memset(hdr + 56, 0, 4);
    uint32_t crc = ndfs_crc32c(0, control, h->control_len);
    crc = ndfs_crc32c(crc, data, h->data_len);
    crc = ndfs_crc32c(crc, hdr, sizeof hdr);
    if (crc != h->checksum)
        return (int)bad(reason, "bad checksum");
    return 0;
}

int ndfs_frame_verify(const uint8_t *frame, const struct ndfs_frame_header *h, const char **reason)
{
    const uint8_t *control = frame + NDFS_FRAME_HEADER_SIZE;
    return ndfs_frame_verify_parts(frame, h, control, control + h->control_len, reason);
}

long ndfs_frame_decode(const uint8_t *buf, size_t len, size_t max_payload,
                       struct ndfs_frame_header *h, const char **reason)
{
    long size = ndfs_frame_decode_header(buf, len, max_payload, h, reason);
    if (size < 0)
        return size;
    if (len < (size_t)size)
        return -EAGAIN;
    int rc = ndfs_frame_verify(buf, h, reason);
    return rc < 0 ? rc : size;
}

const char *ndfs_frame_type_name(unsigned type)
{
    static const char *const names[] = {
        [NDFS_FRAME_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
        [NDFS_FRAME_AUTH_RESPONSE] = "AUTH_RESPONSE",
        [NDFS_FRAME_AUTH_OK] = "AUTH_OK",
        [NDFS_FRAME_DATA] = "DATA",
        [NDFS_FRAME_ACK] = "ACK",
        [NDFS_FRAME_PING] = "PING",
        [NDFS_FRAME_PONG] = "PONG",
    };
    return type >= 1 && type <= NDFS_FRAME_TYPE_MAX ? names[type] : "unknown";
}
