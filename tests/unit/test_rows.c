#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "ccd/codec.h"
#include "ndfs/ccd.h"

static struct ndfs_vdisk sample_vdisk(bool secondary)
{
    struct ndfs_vdisk v = {
        .id = 7,
        .size = 10ull << 30,
        .mode = 0660,
        .mtime_ns = 1700000000123456789ull,
        .version = 3,
        .name = "db-1.img_A",
        .owner = "root",
        .group = "disk",
        .primary_node = "n1",
        .primary_path = "/dev/sdb",
    };
    if (secondary) {
        v.secondary_node = "node-2";
        v.secondary_path = "/var/lib/ndfs/disk.img";
    }
    return v;
}

static struct ndfs_node sample_node(void)
{
    static char *addresses[] = {"127.0.1.3:7400", "127.0.2.3:7400", NULL};
    return (struct ndfs_node){.id = 3,
                              .role = NDFS_NODE_STANDBY,
                              .name = "n3",
                              .address = "127.0.0.1:7001",
                              .addresses = addresses};
}

/* Writes a vdisk row without validating it, to build malformed records. */
static GByteArray *raw_vdisk(uint8_t version, const struct ndfs_vdisk *v, uint8_t flags)
{
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, version);
    ccd_put_u64(b, v->id);
    ccd_put_u64(b, v->size);
    ccd_put_u32(b, v->mode);
    ccd_put_u64(b, v->mtime_ns);
    ccd_put_u64(b, v->version);
    ccd_put_u8(b, flags);
    ccd_put_str(b, v->name);
    ccd_put_str(b, v->owner);
    ccd_put_str(b, v->group);
    ccd_put_str(b, v->primary_node);
    ccd_put_str(b, v->primary_path);
    if (flags & 1) {
        ccd_put_str(b, v->secondary_node);
        ccd_put_str(b, v->secondary_path);
    }
    return b;
}

static void assert_vdisk_eq(const struct ndfs_vdisk *a, const struct ndfs_vdisk *b)
{
    cr_assert_eq(a->id, b->id);
    cr_assert_eq(a->size, b->size);
    cr_assert_eq(a->mode, b->mode);
    cr_assert_eq(a->mtime_ns, b->mtime_ns);
    cr_assert_eq(a->version, b->version);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_str_eq(a->owner, b->owner);
    cr_assert_str_eq(a->group, b->group);
    cr_assert_str_eq(a->primary_node, b->primary_node);
    cr_assert_str_eq(a->primary_path, b->primary_path);
    cr_assert_eq(a->secondary_node == NULL, b->secondary_node == NULL);
    if (a->secondary_node) {
        cr_assert_str_eq(a->secondary_node, b->secondary_node);
        cr_assert_str_eq(a->secondary_path, b->secondary_path);
    }
}

static void expect_vdisk_rejected(const uint8_t *buf, size_t len)
{
    struct ndfs_vdisk out;
    cr_assert_eq(ndfs_vdisk_decode(buf, len, &out), -EBADMSG);
    cr_assert_null(out.name);
    cr_assert_null(out.secondary_path);
}

static void expect_raw_rejected(uint8_t version, const struct ndfs_vdisk *v, uint8_t flags)
{
    g_autoptr(GByteArray) b = raw_vdisk(version, v, flags);
    expect_vdisk_rejected(b->data, b->len);
}

Test(vdisk_row, round_trip_with_and_without_secondary)
{
    for (int secondary = 0; secondary <= 1; secondary++) {
        struct ndfs_vdisk v = sample_vdisk(secondary), out;
        g_autofree uint8_t *buf = NULL;
        size_t len;
        cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), 0);
        cr_assert_eq(ndfs_vdisk_decode(buf, len, &out), 0);
        assert_vdisk_eq(&v, &out);
        if (!secondary)
            cr_assert_null(out.secondary_path);

        struct ndfs_vdisk copy = {0};
        ndfs_vdisk_copy(&copy, &out);
        ndfs_vdisk_clear(&out);
        assert_vdisk_eq(&v, &copy);
        ndfs_vdisk_clear(&copy);
        cr_assert_null(copy.name);
    }
}

Test(vdisk_row, matches_raw_layout)
{
    struct ndfs_vdisk v = sample_vdisk(true);
    g_autofree uint8_t *buf = NULL;
    size_t len;
    g_autoptr(GByteArray) raw = raw_vdisk(1, &v, 1);
    cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), 0);
    cr_assert_eq(len, raw->len);
    cr_assert_eq(memcmp(buf, raw->data, len), 0);
}

Test(vdisk_row, every_truncation_rejected)
{
    for (int secondary = 0; secondary <= 1; secondary++) {
        struct ndfs_vdisk v = sample_vdisk(secondary);
        g_autofree uint8_t *buf = NULL;
        size_t len;
        cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), 0);
        for (size_t n = 0; n < len; n++) {
            /* a fresh heap copy of exactly n bytes, so ASan sees any over-read */
            g_autofree uint8_t *part = g_memdup2(buf, n);
            expect_vdisk_rejected(part, n);
        }
    }
}

Test(vdisk_row, every_bit_flip_rejected_or_valid)
{
    unsigned accepted = 0;
    for (int secondary = 0; secondary <= 1; secondary++) {
        struct ndfs_vdisk v = sample_vdisk(secondary);
        g_autofree uint8_t *buf = NULL;
        size_t len;
        cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), 0);
        for (size_t bit = 0; bit < len * 8; bit++) {
            g_autofree uint8_t *flipped = g_memdup2(buf, len);
            flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct ndfs_vdisk out;
            if (ndfs_vdisk_decode(flipped, len, &out) != 0) {
                cr_assert_null(out.name);
                continue;
            }
            accepted++;
            cr_assert(ccd_vdisk_valid(&out));
            g_autofree uint8_t *again = NULL;
            size_t again_len;
            cr_assert_eq(ndfs_vdisk_encode(&out, &again, &again_len), 0);
            cr_assert_eq(again_len, len);
            cr_assert_eq(memcmp(again, flipped, len), 0, "bit %zu", bit);
            ndfs_vdisk_clear(&out);
        }
    }
    cr_assert_gt(accepted, 0, "flips of the numeric fields decode");
}

Test(vdisk_row, trailing_bytes_rejected)
{
    struct ndfs_vdisk v = sample_vdisk(false);
    g_autoptr(GByteArray) b = raw_vdisk(1, &v, 0);
    ccd_put_u8(b, 0);
    expect_vdisk_rejected(b->data, b->len);
}

Test(vdisk_row, unknown_version_and_flags_rejected)
{
    struct ndfs_vdisk v = sample_vdisk(true);
    expect_raw_rejected(0, &v, 1);
    expect_raw_rejected(2, &v, 1);
    expect_raw_rejected(1, &v, 0x11);
    expect_raw_rejected(1, &v, 0x80);
    /* the secondary's state without a secondary */
    struct ndfs_vdisk one = sample_vdisk(false);
    expect_raw_rejected(1, &one, 0x02);
    expect_raw_rejected(1, &one, 0x08);
}

Test(vdisk_row, mapping_state_round_trips)
{
    for (unsigned bits = 0; bits < 8; bits++) {
        struct ndfs_vdisk v = sample_vdisk(true), out;
        v.on_secondary = bits & 1;
        v.primary_failed = (bits & 2) != 0;
        v.secondary_failed = (bits & 4) != 0;
        g_autofree uint8_t *buf = NULL;
        size_t len;
        cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), 0);
        g_autoptr(GByteArray) raw = raw_vdisk(1, &v, (uint8_t)(1 | bits << 1));
        cr_assert_eq(len, raw->len);
        cr_assert_eq(memcmp(buf, raw->data, len), 0);
        cr_assert_eq(ndfs_vdisk_decode(buf, len, &out), 0);
        cr_assert_eq(out.on_secondary, v.on_secondary);
        cr_assert_eq(out.primary_failed, v.primary_failed);
        cr_assert_eq(out.secondary_failed, v.secondary_failed);
        cr_assert_str_eq(ndfs_vdisk_master_node(&out), bits & 1 ? "node-2" : "n1");
        ndfs_vdisk_clear(&out);
    }
}

Test(vdisk_row, out_of_range_fields_rejected)
{
    struct ndfs_vdisk v = sample_vdisk(false);
    v.mode = 010000;
    expect_raw_rejected(1, &v, 0);
    v = sample_vdisk(false);
    v.size = 0;
    expect_raw_rejected(1, &v, 0);
    v.size = 4096 + 100;
    expect_raw_rejected(1, &v, 0);
    v = sample_vdisk(false);
    v.version = 0;
    expect_raw_rejected(1, &v, 0);
}

Test(vdisk_row, bad_names_and_paths_rejected)
{
    const char *bad_vdisk_names[] = {
        "",
        ".",
        "..",
        "a/b",
        "a b",
        "é",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad_vdisk_names); i++) {
        struct ndfs_vdisk v = sample_vdisk(false);
        v.name = (char *)bad_vdisk_names[i];
        expect_raw_rejected(1, &v, 0);
    }
    const char *bad_node_names[] = {"", "N1", "n_1", "n.1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad_node_names); i++) {
        struct ndfs_vdisk v = sample_vdisk(true);
        v.primary_node = (char *)bad_node_names[i];
        expect_raw_rejected(1, &v, 1);
        v = sample_vdisk(true);
        v.secondary_node = (char *)bad_node_names[i];
        expect_raw_rejected(1, &v, 1);
    }
    const char *bad_paths[] = {"", "dev/sdb", "relative"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad_paths); i++) {
        struct ndfs_vdisk v = sample_vdisk(true);
        v.primary_path = (char *)bad_paths[i];
        expect_raw_rejected(1, &v, 1);
        v = sample_vdisk(true);
        v.secondary_path = (char *)bad_paths[i];
        expect_raw_rejected(1, &v, 1);
    }
    struct ndfs_vdisk v = sample_vdisk(false);
    v.owner = "";
    expect_raw_rejected(1, &v, 0);
    v.owner = "-root";
    expect_raw_rejected(1, &v, 0);
    v = sample_vdisk(false);
    v.group = "a:b";
    expect_raw_rejected(1, &v, 0);
}

Test(vdisk_row, embedded_nul_rejected)
{
    struct ndfs_vdisk v = sample_vdisk(false);
    g_autoptr(GByteArray) b = raw_vdisk(1, &v, 0);
    /* the name starts after the 38 fixed bytes and its u16 length */
    cr_assert_eq(b->data[40], 'd');
    b->data[41] = '\0';
    expect_vdisk_rejected(b->data, b->len);
}

Test(vdisk_row, encode_refuses_invalid_records)
{
    struct ndfs_vdisk v = sample_vdisk(false);
    g_autofree uint8_t *buf = NULL;
    size_t len;
    v.secondary_node = "n2"; /* without a path */
    cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), -EINVAL);
    v = sample_vdisk(false);
    v.name = "..";
    cr_assert_eq(ndfs_vdisk_encode(&v, &buf, &len), -EINVAL);
    cr_assert_null(buf);
}

Test(node_row, round_trip)
{
    struct ndfs_node n = sample_node(), out;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(ndfs_node_encode(&n, &buf, &len), 0);
    cr_assert_eq(ndfs_node_decode(buf, len, &out), 0);
    cr_assert_eq(out.id, n.id);
    cr_assert_eq(out.role, n.role);
    cr_assert_str_eq(out.name, n.name);
    cr_assert_str_eq(out.address, n.address);
    cr_assert_eq(g_strv_length(out.addresses), 2);
    cr_assert_str_eq(out.addresses[0], "127.0.1.3:7400");
    cr_assert_str_eq(out.addresses[1], "127.0.2.3:7400");
    struct ndfs_node copy;
    ndfs_node_copy(&copy, &out);
    cr_assert_str_eq(copy.addresses[1], "127.0.2.3:7400");
    ndfs_node_clear(&copy);
    ndfs_node_clear(&out);

    n.addresses = NULL;
    n.address = "";
    g_free(g_steal_pointer(&buf));
    cr_assert_eq(ndfs_node_encode(&n, &buf, &len), 0);
    cr_assert_eq(ndfs_node_decode(buf, len, &out), 0);
    cr_assert_str_eq(out.address, "");
    cr_assert_not_null(out.addresses);
    cr_assert_null(out.addresses[0]);
    ndfs_node_clear(&out);
}

Test(node_row, version_1_rows_still_decode)
{
    g_autoptr(GByteArray) b = g_byte_array_new();
    ccd_put_u8(b, 1);
    ccd_put_u64(b, 7);
    ccd_put_u8(b, NDFS_NODE_VOTER);
    ccd_put_str(b, "n7");
    ccd_put_str(b, "");
    struct ndfs_node out;
    cr_assert_eq(ndfs_node_decode(b->data, b->len, &out), 0);
    cr_assert_eq(out.id, 7);
    cr_assert_str_eq(out.name, "n7");
    cr_assert_null(out.addresses[0]);
    ndfs_node_clear(&out);
    /* a version 1 row with the address list of version 2 has trailing bytes */
    ccd_put_u8(b, 0);
    cr_assert_eq(ndfs_node_decode(b->data, b->len, &out), -EBADMSG);
}

Test(node_row, bad_address_lists_rejected)
{
    char *empty[] = {"", NULL};
    char *trailing[] = {"127.0.0.1:1", "", NULL}; /* a removed last link is dropped */
    char *spaced[] = {"127.0.0.1:1 x", NULL};
    char *many[NDFS_NODE_ADDRESSES_MAX + 2];
    for (int i = 0; i <= NDFS_NODE_ADDRESSES_MAX; i++)
        many[i] = "127.0.0.1:1";
    many[NDFS_NODE_ADDRESSES_MAX + 1] = NULL;
    char **lists[] = {empty, trailing, spaced, many};
    for (size_t i = 0; i < G_N_ELEMENTS(lists); i++) {
        struct ndfs_node n = sample_node();
        n.addresses = lists[i];
        g_autofree uint8_t *buf = NULL;
        size_t len;
        cr_assert_eq(ndfs_node_encode(&n, &buf, &len), -EINVAL, "case %zu", i);
    }
}

Test(node_row, an_empty_link_index_round_trips)
{
    char *holes[] = {"", "127.0.2.3:7400", "", "127.0.4.3:7400", NULL};
    struct ndfs_node n = sample_node();
    n.addresses = holes;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(ndfs_node_encode(&n, &buf, &len), 0);
    struct ndfs_node out;
    cr_assert_eq(ndfs_node_decode(buf, len, &out), 0);
    cr_assert_eq(g_strv_length(out.addresses), 4);
    cr_assert_str_eq(out.addresses[0], "");
    cr_assert_str_eq(out.addresses[3], "127.0.4.3:7400");
    ndfs_node_clear(&out);
}

Test(node_row, truncations_and_bit_flips)
{
    struct ndfs_node n = sample_node(), out;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(ndfs_node_encode(&n, &buf, &len), 0);
    for (size_t k = 0; k < len; k++) {
        g_autofree uint8_t *part = g_memdup2(buf, k);
        cr_assert_eq(ndfs_node_decode(part, k, &out), -EBADMSG);
        cr_assert_null(out.name);
    }
    for (size_t bit = 0; bit < len * 8; bit++) {
        g_autofree uint8_t *flipped = g_memdup2(buf, len);
        flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (ndfs_node_decode(flipped, len, &out) != 0)
            continue;
        cr_assert(ccd_node_valid(&out));
        g_autofree uint8_t *again = NULL;
        size_t again_len;
        cr_assert_eq(ndfs_node_encode(&out, &again, &again_len), 0);
        cr_assert_eq(again_len, len);
        cr_assert_eq(memcmp(again, flipped, len), 0);
        ndfs_node_clear(&out);
    }
}

Test(node_row, bad_fields_rejected)
{
    struct ndfs_node bad[] = {
        {.id = 0, .role = NDFS_NODE_VOTER, .name = "n1", .address = ""},
        {.id = 1, .role = 0, .name = "n1", .address = ""},
        {.id = 1, .role = 3, .name = "n1", .address = ""},
        {.id = 1, .role = NDFS_NODE_VOTER, .name = "N1", .address = ""},
        {.id = 1, .role = NDFS_NODE_VOTER, .name = "n1", .address = "a b"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        ccd_put_u8(b, 1);
        ccd_put_u64(b, bad[i].id);
        ccd_put_u8(b, bad[i].role);
        ccd_put_str(b, bad[i].name);
        ccd_put_str(b, bad[i].address);
        struct ndfs_node out;
        cr_assert_eq(ndfs_node_decode(b->data, b->len, &out), -EBADMSG, "case %zu", i);
    }
    struct ndfs_node n = sample_node(), out;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(ndfs_node_encode(&n, &buf, &len), 0);
    buf[0] = 3;
    cr_assert_eq(ndfs_node_decode(buf, len, &out), -EBADMSG);
}

Test(membership_row, round_trip_and_truncation)
{
    char *members[] = {"n1", "n2", NULL};
    struct ccd_membership m = {.epoch = 42, .members = members}, out;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(ccd_membership_encode(&m, &buf, &len), 0);
    cr_assert_eq(ccd_membership_decode(buf, len, &out), 0);
    cr_assert_eq(out.epoch, 42);
    cr_assert_eq(g_strv_length(out.members), 2);
    cr_assert_str_eq(out.members[1], "n2");
    ccd_membership_clear(&out);
    for (size_t k = 0; k < len; k++) {
        g_autofree uint8_t *part = g_memdup2(buf, k);
        cr_assert_eq(ccd_membership_decode(part, k, &out), -EBADMSG);
        cr_assert_null(out.members);
    }
}
