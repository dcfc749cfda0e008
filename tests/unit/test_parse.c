/* SIZE, MODE, NODE:PATH and name parsing. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <glib.h>
#include <limits.h>
#include <string.h>

#include "ndfs/parse.h"

static void assert_size(const char *s, uint64_t want)
{
    uint64_t got = 0;
    cr_assert_eq(ndfs_parse_size(s, &got), 0, "\"%s\" rejected", s);
    cr_assert_eq(got, want, "\"%s\" gave %" PRIu64 ", want %" PRIu64, s, got, want);
}

static void assert_size_error(const char *s, int err)
{
    uint64_t got = 12345;
    cr_assert_eq(ndfs_parse_size(s, &got), err, "\"%s\" not rejected with %d", s ? s : "NULL", err);
    cr_assert_eq(got, 12345, "\"%s\" changed *out on error", s ? s : "NULL");
}

Test(parse_size, accepts_plain_bytes_and_binary_units)
{
    assert_size("0", 0);
    assert_size("512", 512);
    assert_size("512B", 512);
    assert_size("512b", 512);
    assert_size("64K", 64ull << 10);
    assert_size("64k", 64ull << 10);
    assert_size("64KiB", 64ull << 10);
    assert_size("64kib", 64ull << 10);
    assert_size("64KB", 64ull << 10);
    assert_size("64M", 64ull << 20);
    assert_size("64MiB", 64ull << 20);
    assert_size("10G", 10ull << 30);
    assert_size("10g", 10ull << 30);
    assert_size("10GiB", 10ull << 30);
    assert_size("1T", 1ull << 40);
    assert_size("1TB", 1ull << 40);
    assert_size("2P", 2ull << 50);
    assert_size("2PiB", 2ull << 50);
    assert_size("007", 7);
    assert_size("18446744073709551615", UINT64_MAX);
    assert_size("16383P", 16383ull << 50);
}

Test(parse_size, rejects_malformed)
{
    static const char *bad[] = {"",   "-1",  "+1",  "1.5G",  " 1G",   "1G ",  "1X",
                                "G",  "1GG", "1iB", "1Gi",   "1GiBB", "0x10", "1 G",
                                "1E", "K1",  "1e3", "1KiB ", "1\n",   "B"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        assert_size_error(bad[i], -EINVAL);
    assert_size_error(NULL, -EINVAL);
}

Test(parse_size, overflow_is_erange)
{
    assert_size_error("18446744073709551616", -ERANGE);
    assert_size_error("99999999999999999999999999", -ERANGE);
    assert_size_error("16384P", -ERANGE);
    assert_size_error("17179869184T", -ERANGE);
    assert_size_error("18014398509481984K", -ERANGE);
    /* a malformed suffix wins over overflow */
    assert_size_error("99999999999999999999999X", -EINVAL);
}

static void assert_format(uint64_t bytes, const char *want)
{
    g_autofree char *got = ndfs_format_size(bytes);
    cr_assert_str_eq(got, want, "%" PRIu64 " bytes", bytes);
}

Test(format_size, exact_units_or_one_decimal)
{
    assert_format(0, "0");
    assert_format(512, "512");
    assert_format(1023, "1023");
    assert_format(1024, "1K");
    assert_format(1025, "1.0K");
    assert_format(1536, "1.5K");
    assert_format(64ull << 20, "64M");
    assert_format(3ull << 29, "1.5G");
    assert_format(10ull << 30, "10G");
    assert_format(1ull << 40, "1T");
    assert_format(2ull << 50, "2P");
    assert_format((1ull << 20) - 1, "1.0M");
    assert_format(UINT64_MAX, "16384.0P");
}

Test(format_size, exact_sizes_round_trip)
{
    const uint64_t sizes[] = {0,           1,          512,        4096, 1ull << 20,  3ull << 20,
                              10ull << 30, 1ull << 40, 7ull << 50, 1000, 123ull << 30};
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *text = ndfs_format_size(sizes[i]);
        uint64_t back;
        cr_assert_eq(ndfs_parse_size(text, &back), 0, "\"%s\"", text);
        cr_assert_eq(back, sizes[i], "\"%s\"", text);
    }
}

Test(parse_mode, octal_up_to_four_digits)
{
    struct {
        const char *s;
        uint32_t mode;
    } ok[] = {{"0660", 0660}, {"660", 0660}, {"4755", 04755}, {"7777", 07777},
              {"0", 0},       {"00", 0},     {"7", 07},       {"0000", 0}};
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++) {
        uint32_t mode = 99999;
        cr_assert_eq(ndfs_parse_mode(ok[i].s, &mode), 0, "\"%s\"", ok[i].s);
        cr_assert_eq(mode, ok[i].mode, "\"%s\"", ok[i].s);
    }
    static const char *bad[] = {"",     "8",     "0668", "10000", "07777 ", " 0660",
                                "-660", "0o660", "u+rw", "0x1ff", "12345",  "660\n"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        uint32_t mode = 99999;
        cr_assert_eq(ndfs_parse_mode(bad[i], &mode), -EINVAL, "\"%s\" accepted", bad[i]);
        cr_assert_eq(mode, 99999);
    }
    uint32_t mode;
    cr_assert_eq(ndfs_parse_mode(NULL, &mode), -EINVAL);
}

Test(names, vdisk_names)
{
    static const char *ok[] = {"db1", "a", "A.b_c-d", "...", ".hidden", "-dash", "x..y"};
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
        cr_assert(ndfs_vdisk_name_valid(ok[i]), "\"%s\" rejected", ok[i]);
    char longest[65];
    memset(longest, 'a', 64);
    longest[64] = '\0';
    cr_assert(ndfs_vdisk_name_valid(longest));
    char too_long[66];
    memset(too_long, 'a', 65);
    too_long[65] = '\0';
    cr_assert_not(ndfs_vdisk_name_valid(too_long));
    static const char *bad[] = {"", ".", "..", "a/b", "a b", "db1\n", "é", "a:b", "a*"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        cr_assert_not(ndfs_vdisk_name_valid(bad[i]), "\"%s\" accepted", bad[i]);
    cr_assert_not(ndfs_vdisk_name_valid(NULL));
}

Test(names, node_names)
{
    static const char *ok[] = {"n1", "node-2", "0", "-", "abcdefghijklmnopqrstuvwxyz012345"};
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
        cr_assert(ndfs_node_name_valid(ok[i]), "\"%s\" rejected", ok[i]);
    static const char *bad[] = {
        "", "N1", "n_1", "n.1", "n 1", "n1:", "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        cr_assert_not(ndfs_node_name_valid(bad[i]), "\"%s\" accepted", bad[i]);
    cr_assert_not(ndfs_node_name_valid(NULL));
}

Test(names, account_names)
{
    static const char *ok[] = {"root", "disk", "Alice", "svc.backup", "a_b-c", "_x", "1"};
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
        cr_assert(ndfs_account_name_valid(ok[i]), "\"%s\" rejected", ok[i]);
    static const char *bad[] = {
        "", "-root", "a b", "a:b", "a/b", "a$", "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        cr_assert_not(ndfs_account_name_valid(bad[i]), "\"%s\" accepted", bad[i]);
    cr_assert_not(ndfs_account_name_valid(NULL));
}

Test(node_path, splits_at_first_colon)
{
    char *node = NULL, *path = NULL;
    cr_assert_eq(ndfs_parse_node_path("n1:/dev/sdb", &node, &path), 0);
    cr_assert_str_eq(node, "n1");
    cr_assert_str_eq(path, "/dev/sdb");
    g_free(node);
    g_free(path);

    cr_assert_eq(ndfs_parse_node_path("n2:/srv/a:b.img", &node, &path), 0);
    cr_assert_str_eq(node, "n2");
    cr_assert_str_eq(path, "/srv/a:b.img");
    g_free(node);
    g_free(path);
}

Test(node_path, rejects_bad_node_or_path)
{
    static const char *bad[] = {
        "", "n1", ":/dev/sdb", "N1:/dev/sdb", "n1:", "n1:dev/sdb", "n 1:/x", "n1;/x", "/dev/sdb"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        char *node = NULL, *path = NULL;
        cr_assert_eq(ndfs_parse_node_path(bad[i], &node, &path), -EINVAL, "\"%s\" accepted",
                     bad[i]);
        cr_assert_null(node);
        cr_assert_null(path);
    }
    char *node = NULL, *path = NULL;
    cr_assert_eq(ndfs_parse_node_path(NULL, &node, &path), -EINVAL);

    /* PATH_MAX counts the NUL: the longest path is PATH_MAX - 1 bytes */
    g_autofree char *longest = g_strnfill(PATH_MAX + 3, 'a');
    memcpy(longest, "n1:/", 4);
    longest[3 + PATH_MAX - 1] = '\0';
    cr_assert_eq(ndfs_parse_node_path(longest, &node, &path), 0);
    cr_assert_eq(strlen(path), PATH_MAX - 1);
    g_free(node);
    g_free(path);
    g_autofree char *too_long = g_strnfill(PATH_MAX + 3, 'a');
    memcpy(too_long, "n1:/", 4);
    node = path = NULL;
    cr_assert_eq(ndfs_parse_node_path(too_long, &node, &path), -EINVAL);
    cr_assert_null(node);
}
