/* Frame codec and CRC32C. Decoders trust nothing: every field is checked
 * before a length is used. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <string.h>

#include <glib.h>

#include "frame.h"

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli */

static uint32_t crc_table[8][256];
static gsize crc_table_ready;

static void crc_table_init(void)
{
    if (!g_once_init_enter(&crc_table_ready))
        return;
    for (unsigned i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (unsigned i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++)
            crc_table[s][i] = (crc_table[s - 1][i] >> 8) ^ crc_table[0][crc_table[s - 1][i] & 0xff];
    g_once_init_leave(&crc_table_ready, 1);
}

uint32_t ndfs_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    crc_table_init();
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w = GUINT64_FROM_LE(w) ^ crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
/* Three independent crc32 instructions at a time (the instruction's latency
 * is three times its throughput) over three consecutive blocks A, B, C of
 * n bytes, B and C started from a zero register; then crc(AB) is crc(A)
 * advanced over n zero bytes, xor crc(B) (the CRC is linear), and likewise
 * for C. Advancing a register over n zero bytes multiplies it by x^(8n)
 * modulo the polynomial, a linear map of the register's four bytes, kept
 * as four tables of 256 per block size: about three times the speed of one
 * chain on large buffers. */
#define CRC_LONG  8192
#define CRC_SHORT 256

static uint32_t crc_long[4][256], crc_short[4][256];
static gsize crc_zeros_ready;

/* a(x) * b(x) mod P(x), registers in the CRC's reflected order (bit 31 is
 * the coefficient of x^0, bit 0 that of x^31). */
static uint32_t crc_mulmod(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
        if (a & bit)
            product ^= b;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1; /* b *= x */
    }
    return product;
}

/* The tables that advance a register over len zero bytes (len a power of
 * two): x^(8 len) is x squared log2(8 len) times. */
static void zeros_table(uint32_t zeros[4][256], size_t len)
{
    uint32_t power = 1u << 30; /* x^1 */
    for (size_t bits = 8 * len; bits > 1; bits >>= 1)
        power = crc_mulmod(power, power);
    for (uint32_t n = 0; n < 256; n++)
        for (int byte = 0; byte < 4; byte++)
            zeros[byte][n] = crc_mulmod(n << (8 * byte), power);
}

static void crc_zeros_init(void)
{
    if (!g_once_init_enter(&crc_zeros_ready))
        return;
    zeros_table(crc_long, CRC_LONG);
    zeros_table(crc_short, CRC_SHORT);
    g_once_init_leave(&crc_zeros_ready, 1);
}

static inline uint32_t crc_shift(const uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                               size_t len)
{
    uint64_t c0 = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7) != 0) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        len--;
    }
    if (len >= 3 * CRC_SHORT)
        crc_zeros_init();
    while (len >= 3 * CRC_LONG) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + CRC_LONG;
        do {
            c0 = __builtin_ia32_crc32di(c0, load64(p));
            c1 = __builtin_ia32_crc32di(c1, load64(p + CRC_LONG));
            c2 = __builtin_ia32_crc32di(c2, load64(p + 2 * CRC_LONG));
            p += 8;
        } while (p < end);
        c0 = crc_shift(crc_long, (uint32_t)c0) ^ c1;
        c0 = crc_shift(crc_long, (uint32_t)c0) ^ c2;
        p += 2 * CRC_LONG;
        len -= 3 * CRC_LONG;
    }
    while (len >= 3 * CRC_SHORT) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + CRC_SHORT;
        do {
            c0 = __builtin_ia32_crc32di(c0, load64(p));
            c1 = __builtin_ia32_crc32di(c1, load64(p + CRC_SHORT));
            c2 = __builtin_ia32_crc32di(c2, load64(p + 2 * CRC_SHORT));
            p += 8;
        } while (p < end);
        c0 = crc_shift(crc_short, (uint32_t)c0) ^ c1;
        c0 = crc_shift(crc_short, (uint32_t)c0) ^ c2;
        p += 2 * CRC_SHORT;
        len -= 3 * CRC_SHORT;
    }
    while (len >= 8) {
        c0 = __builtin_ia32_crc32di(c0, load64(p));
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c0;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

static bool have_sse42(void)
{
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    }
    return have;
}
#endif

bool ndfs_crc32c_hw(uint32_t crc, const void *buf, size_t len, uint32_t *out)
{
#if defined(__x86_64__)
    if (have_sse42()) {
        *out = crc32c_sse42(crc, buf, len);
        return true;
    }
#else
    (void)crc;
    (void)buf;
    (void)len;
    (void)out;
#endif
    return false;
}

/* x^(2^k) mod P for k = 0..63: the powers that x^(8 len) is a product of. */
static uint32_t crc_x2k[64];
static gsize crc_x2k_ready;

uint32_t ndfs_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2)
{
    if (g_once_init_enter(&crc_x2k_ready)) {
        uint32_t power = 1u << 30; /* x^1 */
        for (int k = 0; k < 64; k++) {
            crc_x2k[k] = power;
            power = crc_mulmod(power, power);
        }
        g_once_init_leave(&crc_x2k_ready, 1);
    }
    /* crc1 followed by len2 bytes is crc1 * x^(8 len2), plus crc2: the
     * pre- and post-inversions of the two cancel out */
    uint64_t bits = (uint64_t)len2 * 8;
    uint32_t shift = 1u << 31; /* x^0 */
    for (int k = 0; bits != 0; k++, bits >>= 1)
        if (bits & 1)
            shift = crc_mulmod(shift, crc_x2k[k]);
    return crc_mulmod(shift, crc1) ^ crc2;
}

uint32_t ndfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    uint32_t out;
    if (len && ndfs_crc32c_hw(crc, buf, len, &out))
        return out;
    return len ? ndfs_crc32c_sw(crc, buf, len) : crc;
}

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
