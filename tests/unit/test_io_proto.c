/* The IO channel codec: round trips, and nothing malformed gets through. */
#include <criterion/criterion.h>

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "ndfs/io_proto.h"

static const struct ndfs_io_request some_requests[] = {
    {.op = NDFS_IO_READ, .flags = 0, .length = 4096, .vdisk_id = 7, .offset = 1 << 20},
    {.op = NDFS_IO_WRITE,
     .flags = NDFS_IO_FLAG_DIRECT,
     .length = NDFS_IO_MAX_LENGTH,
     .vdisk_id = UINT64_MAX,
     .offset = UINT64_MAX - NDFS_IO_MAX_LENGTH},
    {.op = NDFS_IO_FSYNC, .flags = NDFS_IO_FLAG_DATASYNC, .vdisk_id = 1},
    {.op = NDFS_IO_FSYNC, .flags = 0, .vdisk_id = 0},
    {.op = NDFS_IO_READ, .flags = NDFS_IO_FLAG_DIRECT, .length = 1, .vdisk_id = 3, .offset = 0},
    {.op = NDFS_IO_DISCARD,
     .flags = 0,
     .length = NDFS_IO_MAX_LENGTH,
     .vdisk_id = 4,
     .offset = 8192},
    {.op = NDFS_IO_DISCARD, .flags = NDFS_IO_FLAG_ZERO, .length = 1, .vdisk_id = 4, .offset = 3},
};

static bool same_request(const struct ndfs_io_request *a, const struct ndfs_io_request *b)
{
    return a->op == b->op && a->flags == b->flags && a->length == b->length &&
           a->vdisk_id == b->vdisk_id && a->offset == b->offset;
}

Test(io_proto, request_round_trip)
{
    for (size_t i = 0; i < G_N_ELEMENTS(some_requests); i++) {
        uint8_t buf[NDFS_IO_REQUEST_SIZE];
        ndfs_io_request_encode(&some_requests[i], buf);
        struct ndfs_io_request out;
        cr_assert_eq(ndfs_io_request_decode(buf, sizeof(buf), &out), 0, "request %zu", i);
        cr_assert(same_request(&out, &some_requests[i]), "request %zu", i);
    }
}

Test(io_proto, request_every_truncation_rejected)
{
    uint8_t buf[NDFS_IO_REQUEST_SIZE + 1] = {0};
    ndfs_io_request_encode(&some_requests[0], buf);
    struct ndfs_io_request out;
    for (size_t len = 0; len < NDFS_IO_REQUEST_SIZE; len++)
        cr_assert_eq(ndfs_io_request_decode(buf, len, &out), -EBADMSG, "len %zu", len);
    cr_assert_eq(ndfs_io_request_decode(buf, sizeof(buf), &out), -EBADMSG, "trailing byte");
    cr_assert_eq(ndfs_io_request_decode(NULL, NDFS_IO_REQUEST_SIZE, &out), -EBADMSG);
}

/* Every single-bit flip is rejected or decodes to a request that encodes
 * back to exactly the flipped bytes (no field is silently ignored). */
Test(io_proto, request_every_bit_flip_rejected_or_canonical)
{
    for (size_t i = 0; i < G_N_ELEMENTS(some_requests); i++) {
        uint8_t good[NDFS_IO_REQUEST_SIZE];
        ndfs_io_request_encode(&some_requests[i], good);
        for (size_t bit = 0; bit < 8 * sizeof(good); bit++) {
            uint8_t bad[NDFS_IO_REQUEST_SIZE];
            memcpy(bad, good, sizeof(bad));
            bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct ndfs_io_request out;
            int rc = ndfs_io_request_decode(bad, sizeof(bad), &out);
            if (rc < 0) {
                cr_assert(rc == -EBADMSG || rc == -EPROTONOSUPPORT, "rc %d", rc);
                continue;
            }
            uint8_t again[NDFS_IO_REQUEST_SIZE];
            ndfs_io_request_encode(&out, again);
            cr_assert_arr_eq(again, bad, sizeof(bad), "request %zu bit %zu", i, bit);
        }
    }
}

Test(io_proto, request_bad_version_op_flags_and_ranges)
{
    uint8_t buf[NDFS_IO_REQUEST_SIZE];
    struct ndfs_io_request out;
    ndfs_io_request_encode(&some_requests[0], buf);
    buf[0] = 2;
    cr_assert_eq(ndfs_io_request_decode(buf, sizeof(buf), &out), -EPROTONOSUPPORT);
    buf[0] = 0;
    cr_assert_eq(ndfs_io_request_decode(buf, sizeof(buf), &out), -EPROTONOSUPPORT);

    struct ndfs_io_request bad[] = {
        {.op = 0, .length = 1},
        {.op = 5, .length = 1},
        {.op = 255, .length = 1},
        {.op = NDFS_IO_DISCARD, .length = 0},
        {.op = NDFS_IO_DISCARD, .length = NDFS_IO_MAX_LENGTH + 1},
        {.op = NDFS_IO_DISCARD, .length = 1, .flags = NDFS_IO_FLAG_DIRECT},
        {.op = NDFS_IO_DISCARD, .length = 2, .offset = UINT64_MAX - 1},
        {.op = NDFS_IO_READ, .length = 1, .flags = NDFS_IO_FLAG_ZERO},
        {.op = NDFS_IO_READ, .length = 0},
        {.op = NDFS_IO_READ, .length = NDFS_IO_MAX_LENGTH + 1},
        {.op = NDFS_IO_WRITE, .length = 2, .offset = UINT64_MAX - 1},
        {.op = NDFS_IO_READ, .length = 1, .flags = NDFS_IO_FLAG_DATASYNC},
        {.op = NDFS_IO_WRITE, .length = 1, .flags = 0x8000},
        {.op = NDFS_IO_FSYNC, .flags = NDFS_IO_FLAG_DIRECT},
        {.op = NDFS_IO_FSYNC, .length = 1},
        {.op = NDFS_IO_FSYNC, .offset = 512},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        ndfs_io_request_encode(&bad[i], buf);
        cr_assert_eq(ndfs_io_request_decode(buf, sizeof(buf), &out), -EBADMSG, "case %zu", i);
        cr_assert_eq(out.op, 0, "out is cleared on error");
    }
}

Test(io_proto, reply_round_trip)
{
    const int32_t statuses[] = {0,    1,       4096,    NDFS_IO_MAX_LENGTH,
                                -EIO, -ENOSPC, -ESTALE, -NDFS_IO_MAX_ERRNO};
    for (size_t i = 0; i < G_N_ELEMENTS(statuses); i++) {
        struct ndfs_io_reply r = {.status = statuses[i]}, out;
        uint8_t buf[NDFS_IO_REPLY_SIZE];
        ndfs_io_reply_encode(&r, buf);
        cr_assert_eq(ndfs_io_reply_decode(buf, sizeof(buf), &out), 0);
        cr_assert_eq(out.status, statuses[i]);
    }
}

Test(io_proto, reply_truncation_bad_fields_and_bit_flips)
{
    struct ndfs_io_reply r = {.status = 4096}, out;
    uint8_t buf[NDFS_IO_REPLY_SIZE + 1] = {0};
    ndfs_io_reply_encode(&r, buf);
    for (size_t len = 0; len < NDFS_IO_REPLY_SIZE; len++)
        cr_assert_eq(ndfs_io_reply_decode(buf, len, &out), -EBADMSG, "len %zu", len);
    cr_assert_eq(ndfs_io_reply_decode(buf, sizeof(buf), &out), -EBADMSG);

    const int32_t bad_statuses[] = {NDFS_IO_MAX_LENGTH + 1, INT32_MAX, -NDFS_IO_MAX_ERRNO - 1,
                                    INT32_MIN};
    for (size_t i = 0; i < G_N_ELEMENTS(bad_statuses); i++) {
        struct ndfs_io_reply b = {.status = bad_statuses[i]};
        ndfs_io_reply_encode(&b, buf);
        cr_assert_eq(ndfs_io_reply_decode(buf, NDFS_IO_REPLY_SIZE, &out), -EBADMSG, "case %zu", i);
    }

    uint8_t good[NDFS_IO_REPLY_SIZE];
    ndfs_io_reply_encode(&r, good);
    for (size_t bit = 0; bit < 8 * sizeof(good); bit++) {
        uint8_t bad[NDFS_IO_REPLY_SIZE];
        memcpy(bad, good, sizeof(bad));
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = ndfs_io_reply_decode(bad, sizeof(bad), &out);
        if (rc < 0)
            continue;
        uint8_t again[NDFS_IO_REPLY_SIZE];
        ndfs_io_reply_encode(&out, again);
        cr_assert_arr_eq(again, bad, sizeof(bad), "bit %zu", bit);
    }
    good[0] = 9;
    cr_assert_eq(ndfs_io_reply_decode(good, sizeof(good), &out), -EPROTONOSUPPORT);
}
