/* The frame codec and CRC32C: round trips, every truncation, every bit flip. */
#include <criterion/criterion.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "transport/frame.h"

#define MAXP (1u << 20)

Test(crc32c, known_vectors_in_software_and_hardware)
{
    static const struct {
        const char *what;
        uint8_t buf[32];
        size_t len;
        uint32_t crc;
    } v[] = {
        {"123456789", "123456789", 9, 0xe3069283},
        {"32 zeros", {0}, 32, 0x8a9136aa},
        {"32 x ff",
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         32,
         0x62a8ab43},
        {"0..31",
         {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
          16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31},
         32,
         0x46dd794e},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cr_assert_eq(ndfs_crc32c_sw(0, v[i].buf, v[i].len), v[i].crc, "%s (table)", v[i].what);
        cr_assert_eq(ndfs_crc32c(0, v[i].buf, v[i].len), v[i].crc, "%s", v[i].what);
        uint32_t hw;
        if (ndfs_crc32c_hw(0, v[i].buf, v[i].len, &hw))
            cr_assert_eq(hw, v[i].crc, "%s (sse4.2)", v[i].what);
    }
}

Test(crc32c, chained_equals_whole_and_hardware_equals_table)
{
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)g_random_int();
    for (size_t len = 0; len < sizeof buf; len += 7) {
        uint32_t whole = ndfs_crc32c_sw(0, buf, len), hw;
        for (size_t cut = 0; cut <= len; cut += 13)
            cr_assert_eq(ndfs_crc32c(ndfs_crc32c(0, buf, cut), buf + cut, len - cut), whole);
        if (ndfs_crc32c_hw(0, buf, len, &hw))
            cr_assert_eq(hw, whole, "length %zu", len);
    }
}

/* The CRC of A then B from the CRCs of A and B, for lengths of B from 0 to
 * 1 MiB (the transport's whole-message frames). */
Test(crc32c, combine_equals_whole)
{
    size_t size = (1u << 20) + 64;
    uint8_t *buf = g_malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)g_random_int();
    const size_t heads[] = {0, 1, 24, 64, 4095};
    const size_t tails[] = {0, 1, 7, 4096, 65536 + 3, 1u << 20};
    for (size_t h = 0; h < G_N_ELEMENTS(heads); h++) {
        for (size_t t = 0; t < G_N_ELEMENTS(tails); t++) {
            size_t a = heads[h], b = MIN(tails[t], size - a);
            uint32_t whole = ndfs_crc32c(0, buf, a + b);
            uint32_t combined =
                ndfs_crc32c_combine(ndfs_crc32c(0, buf, a), ndfs_crc32c(0, buf + a, b), b);
            cr_assert_eq(combined, whole, "A %zu bytes, B %zu bytes", a, b);
        }
    }
    g_free(buf);
}

/* Large buffers take the three-block paths (3 x 8 KiB, 3 x 256 B): every
 * length around their edges, from unaligned starts, against the table. */
Test(crc32c, large_buffers_hardware_equals_table)
{
    size_t size = 3 * 3 * 8192 + 4096;
    uint8_t *buf = g_malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)g_random_int();
    const size_t lens[] = {767,
                           768,
                           769,
                           1535,
                           1536,
                           3 * 8192 - 1,
                           3 * 8192,
                           3 * 8192 + 1,
                           3 * 8192 + 768 + 5,
                           2 * 3 * 8192 + 3 * 256 * 2 + 17,
                           3 * 3 * 8192};
    for (size_t i = 0; i < G_N_ELEMENTS(lens); i++)
        for (size_t off = 0; off < 9; off++) {
            uint32_t whole = ndfs_crc32c_sw(0, buf + off, lens[i]), hw;
            cr_assert_eq(ndfs_crc32c(0, buf + off, lens[i]), whole, "length %zu at +%zu", lens[i],
                         off);
            if (ndfs_crc32c_hw(0xdeadbeef, buf + off, lens[i], &hw))
                cr_assert_eq(hw, ndfs_crc32c_sw(0xdeadbeef, buf + off, lens[i]),
                             "seeded, length %zu at +%zu", lens[i], off);
        }
    for (int k = 0; k < 200; k++) {
        size_t off = g_random_int_range(0, 4096), len = g_random_int_range(0, 3 * 3 * 8192);
        cr_assert_eq(ndfs_crc32c(0, buf + off, len), ndfs_crc32c_sw(0, buf + off, len),
                     "length %zu at +%zu", len, off);
    }
    g_free(buf);
}

/* Large buffers fold with VPCLMULQDQ where the CPU has it: every length
 * around the fold's steps (256-byte blocks, then 64, then 16, then bytes),
 * at every alignment, seeded or not, against the crc32 instruction alone
 * and the table. */
Test(crc32c, folded_equals_instruction_and_table)
{
    size_t size = (1 << 20) + 4096;
    uint8_t *buf = g_malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)g_random_int();
    const uint32_t seeds[] = {0, 0xdeadbeef, 0xffffffff};
    size_t lens[64];
    size_t n = 0;
    for (size_t len = 1000; len < 1400; len += 23)
        lens[n++] = len;
    const size_t more[] = {1024,       1024 + 255,    1024 + 256, 4096 + 64 + 16 + 1,
                           65536 + 13, (1 << 20) - 1, 1 << 20,    (1 << 20) + 7};
    for (size_t i = 0; i < G_N_ELEMENTS(more); i++)
        lens[n++] = more[i];
    for (size_t i = 0; i < n; i++)
        for (size_t off = 0; off < 64; off += (lens[i] > 100000 ? 21 : 1))
            for (size_t s = 0; s < G_N_ELEMENTS(seeds); s++) {
                uint32_t table = ndfs_crc32c_sw(seeds[s], buf + off, lens[i]), folded, plain;
                if (!ndfs_crc32c_hw(seeds[s], buf + off, lens[i], &folded))
                    continue; /* no crc32 instruction: nothing to compare */
                ndfs_crc32c_allow_fold(false);
                cr_assert(ndfs_crc32c_hw(seeds[s], buf + off, lens[i], &plain));
                ndfs_crc32c_allow_fold(true);
                cr_assert_eq(plain, table, "crc32 instruction, length %zu at +%zu", lens[i], off);
                cr_assert_eq(folded, table, "folded, length %zu at +%zu, seed %x", lens[i], off,
                             seeds[s]);
            }
    g_free(buf);
}

static size_t make_frame(uint8_t *out, const struct ndfs_frame_header *h, const uint8_t *control,
                         const uint8_t *data)
{
    uint32_t crc = ndfs_crc32c(ndfs_crc32c(0, control, h->control_len), data, h->data_len);
    ndfs_frame_encode(h, crc, out);
    memcpy(out + NDFS_FRAME_HEADER_SIZE, control, h->control_len);
    memcpy(out + NDFS_FRAME_HEADER_SIZE + h->control_len, data, h->data_len);
    return NDFS_FRAME_HEADER_SIZE + h->control_len + h->data_len;
}

static const struct ndfs_frame_header sample = {
    .type = NDFS_FRAME_DATA,
    .flags = NDFS_FRAME_FIRST | NDFS_FRAME_LAST,
    .channel = 4,
    .link = 1,
    .control_len = 11,
    .data_len = 29,
    .msg_data_len = 29,
    .seq = 0x0102030405060708ull,
    .ack = 77,
    .request_id = 0xdeadbeefcafeull,
    .epoch = 9,
};

static size_t sample_frame(uint8_t *buf)
{
    uint8_t control[11], data[29];
    for (size_t i = 0; i < sizeof control; i++)
        control[i] = (uint8_t)(i + 1);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(200 - i);
    return make_frame(buf, &sample, control, data);
}

Test(frame, round_trip)
{
    uint8_t buf[256];
    size_t len = sample_frame(buf);
    struct ndfs_frame_header h;
    const char *reason = NULL;
    cr_assert_eq(ndfs_frame_decode(buf, len, MAXP, &h, &reason), (long)len, "%s", reason);
    cr_assert_eq(h.type, sample.type);
    cr_assert_eq(h.flags, sample.flags);
    cr_assert_eq(h.channel, sample.channel);
    cr_assert_eq(h.link, sample.link);
    cr_assert_eq(h.control_len, sample.control_len);
    cr_assert_eq(h.data_len, sample.data_len);
    cr_assert_eq(h.msg_data_len, sample.msg_data_len);
    cr_assert_eq(h.seq, sample.seq);
    cr_assert_eq(h.ack, sample.ack);
    cr_assert_eq(h.request_id, sample.request_id);
    cr_assert_eq(h.epoch, sample.epoch);
    cr_assert_eq(memcmp(buf, "NDFT", 4), 0, "magic on the wire");
    /* a frame followed by more bytes decodes to its own size */
    cr_assert_eq(ndfs_frame_decode(buf, len + 5, MAXP, &h, &reason), (long)len);
}

Test(frame, every_truncation_is_incomplete)
{
    uint8_t buf[256];
    size_t len = sample_frame(buf);
    for (size_t n = 0; n < len; n++) {
        struct ndfs_frame_header h;
        cr_assert_eq(ndfs_frame_decode(buf, n, MAXP, &h, NULL), -EAGAIN, "length %zu", n);
    }
}

Test(frame, every_single_bit_flip_is_rejected)
{
    uint8_t good[256];
    size_t len = sample_frame(good);
    for (size_t bit = 0; bit < len * 8; bit++) {
        /* room for what a flipped length may claim (up to MAXP) */
        static uint8_t buf[MAXP + 512];
        memcpy(buf, good, len);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct ndfs_frame_header h;
        const char *reason = NULL;
        long rc = ndfs_frame_decode(buf, len, MAXP, &h, &reason);
        if (rc == -EAGAIN) {
            /* a longer length: the rest arrives, the checksum catches it */
            long need = ndfs_frame_decode_header(buf, len, MAXP, &h, NULL);
            cr_assert_gt(need, (long)len, "bit %zu", bit);
            memset(buf + len, 0, (size_t)need - len);
            rc = ndfs_frame_decode(buf, (size_t)need, MAXP, &h, &reason);
        }
        cr_assert_eq(rc, -EBADMSG, "bit %zu accepted", bit);
        cr_assert_not_null(reason);
    }
}

static long decode_header_of(struct ndfs_frame_header h, const char **reason)
{
    uint8_t buf[NDFS_FRAME_HEADER_SIZE];
    ndfs_frame_encode(&h, 0, buf);
    struct ndfs_frame_header out;
    return ndfs_frame_decode_header(buf, sizeof buf, MAXP, &out, reason);
}

Test(frame, lengths_over_the_limit_are_rejected)
{
    const char *reason = NULL;
    struct ndfs_frame_header h = sample;
    h.control_len = MAXP;
    h.data_len = h.msg_data_len = 1;
    cr_assert_eq(decode_header_of(h, &reason), -EBADMSG);
    cr_assert_str_eq(reason, "length over the limit");
    h = sample;
    h.data_len = 0xffffffffu;
    h.msg_data_len = 0xffffffffu;
    cr_assert_eq(decode_header_of(h, &reason), -EBADMSG);
    h = sample;
    h.flags = NDFS_FRAME_FIRST;
    h.msg_data_len = MAXP; /* the whole message would not fit */
    cr_assert_eq(decode_header_of(h, &reason), -EBADMSG);
    h = sample;
    h.data_len = 30; /* more than the message */
    cr_assert_eq(decode_header_of(h, &reason), -EBADMSG);
    h.control_len = 0;
    h.data_len = MAXP;
    h.msg_data_len = MAXP;
    cr_assert_eq(decode_header_of(h, &reason), (long)(NDFS_FRAME_HEADER_SIZE + MAXP),
                 "exactly the limit is fine");
}

Test(frame, unknown_version_type_flags_and_reserved_bits_are_rejected)
{
    uint8_t buf[NDFS_FRAME_HEADER_SIZE];
    struct ndfs_frame_header h;
    const char *reason = NULL;
    ndfs_frame_encode(&sample, 0, buf);
    buf[4] = 2;
    cr_assert_eq(ndfs_frame_decode_header(buf, 5, MAXP, &h, &reason), -EBADMSG,
                 "a wrong version fails before the header is complete");
    cr_assert_str_eq(reason, "unknown version");
    ndfs_frame_encode(&sample, 0, buf);
    buf[0] = 'X';
    cr_assert_eq(ndfs_frame_decode_header(buf, 1, MAXP, &h, &reason), -EAGAIN);
    cr_assert_eq(ndfs_frame_decode_header(buf, 4, MAXP, &h, &reason), -EBADMSG);
    cr_assert_str_eq(reason, "bad magic");
    struct ndfs_frame_header x = sample;
    x.type = 0;
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
    x.type = NDFS_FRAME_TYPE_MAX + 1;
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
    cr_assert_str_eq(reason, "unknown frame type");
    x = sample;
    x.flags = 0x04;
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
    ndfs_frame_encode(&sample, 0, buf);
    buf[7] = 1;
    cr_assert_eq(ndfs_frame_decode_header(buf, sizeof buf, MAXP, &h, &reason), -EBADMSG);
    cr_assert_str_eq(reason, "reserved bits set");
    x = sample;
    x.seq = 0;
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
    x = sample;
    x.type = NDFS_FRAME_PING; /* control frames carry no payload or sequence */
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
    x = (struct ndfs_frame_header){.type = NDFS_FRAME_PING, .ack = 5, .request_id = 1};
    cr_assert_eq(decode_header_of(x, &reason), NDFS_FRAME_HEADER_SIZE);
    x = sample;
    x.flags = NDFS_FRAME_LAST; /* a later fragment with a control part */
    cr_assert_eq(decode_header_of(x, &reason), -EBADMSG);
}
