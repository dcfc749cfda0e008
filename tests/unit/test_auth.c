/* The challenge-response, heartbeat tags and the key file. */
#include <criterion/criterion.h>
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "transport/auth.h"

static uint8_t key[32], other_key[32];
static uint8_t nonce_a[NDFS_AUTH_NONCE_LEN], nonce_c[NDFS_AUTH_NONCE_LEN];

static void setup(void)
{
    cr_assert_eq(ndfs_auth_random(key, sizeof key), 0);
    memcpy(other_key, key, sizeof key);
    other_key[31] ^= 0x80;
    cr_assert_eq(ndfs_auth_random(nonce_a, sizeof nonce_a), 0);
    cr_assert_eq(ndfs_auth_random(nonce_c, sizeof nonce_c), 0);
}

TestSuite(auth, .init = setup);

/* n1 (incarnation 111) accepted n2 (incarnation 222) on link 1 */
static struct ndfs_auth_ends ends(void)
{
    return (struct ndfs_auth_ends){"n1", "n2", 111, 222, nonce_a, nonce_c, 1};
}

/* The connector n2's response on link 1 to n1's challenge. */
static size_t respond(const uint8_t *k, const uint8_t *na, uint8_t *out)
{
    uint8_t ch[NDFS_AUTH_MAX_LEN];
    size_t n = ndfs_auth_challenge_encode("n1", 111, na, ch);
    struct ndfs_auth_hello hello;
    cr_assert_eq(ndfs_auth_challenge_decode(ch, n, &hello), 0);
    cr_assert_str_eq(hello.name, "n1");
    cr_assert_eq(hello.incarnation, 111);
    return ndfs_auth_response_encode(k, 32, &hello, "n2", 222, 1, nonce_c, out);
}

Test(auth, a_correct_response_and_ok_are_accepted)
{
    uint8_t resp[NDFS_AUTH_MAX_LEN];
    size_t n = respond(key, nonce_a, resp);
    struct ndfs_auth_hello r;
    cr_assert_eq(ndfs_auth_response_verify(key, 32, "n1", 111, nonce_a, resp, n, &r), 0);
    cr_assert_str_eq(r.name, "n2");
    cr_assert_eq(r.incarnation, 222);
    cr_assert_eq(r.link, 1);
    cr_assert_eq(memcmp(r.nonce, nonce_c, sizeof nonce_c), 0);
    uint8_t ok[NDFS_AUTH_MAX_LEN];
    struct ndfs_auth_ends e = ends();
    size_t m = ndfs_auth_ok_encode(key, 32, &e, ok);
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &e, ok, m), 0);
}

Test(auth, a_wrong_key_is_rejected_both_ways)
{
    uint8_t resp[NDFS_AUTH_MAX_LEN];
    size_t n = respond(other_key, nonce_a, resp);
    struct ndfs_auth_hello r;
    cr_assert_eq(ndfs_auth_response_verify(key, 32, "n1", 111, nonce_a, resp, n, &r), -EACCES);
    uint8_t ok[NDFS_AUTH_MAX_LEN];
    struct ndfs_auth_ends e = ends();
    size_t m = ndfs_auth_ok_encode(other_key, 32, &e, ok);
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &e, ok, m), -EACCES);
}

Test(auth, every_flipped_byte_of_a_response_is_rejected)
{
    uint8_t resp[NDFS_AUTH_MAX_LEN];
    size_t n = respond(key, nonce_a, resp);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t x[NDFS_AUTH_MAX_LEN];
            memcpy(x, resp, n);
            x[i] ^= (uint8_t)(1 << bit);
            struct ndfs_auth_hello r;
            int rc = ndfs_auth_response_verify(key, 32, "n1", 111, nonce_a, x, n, &r);
            cr_assert(rc == -EACCES || rc == -EBADMSG, "byte %zu bit %d: %d", i, bit, rc);
        }
    }
    for (size_t len = 0; len < n; len++) {
        struct ndfs_auth_hello r;
        cr_assert_eq(ndfs_auth_response_verify(key, 32, "n1", 111, nonce_a, resp, len, &r),
                     -EBADMSG);
    }
}

Test(auth, swapped_names_roles_or_links_are_rejected)
{
    uint8_t resp[NDFS_AUTH_MAX_LEN];
    size_t n = respond(key, nonce_a, resp);
    struct ndfs_auth_hello r;
    /* a response meant for another acceptor */
    cr_assert_eq(ndfs_auth_response_verify(key, 32, "n3", 111, nonce_a, resp, n, &r), -EACCES);
    uint8_t ok[NDFS_AUTH_MAX_LEN];
    struct ndfs_auth_ends e = ends();
    size_t m = ndfs_auth_ok_encode(key, 32, &e, ok);
    struct ndfs_auth_ends x = e;
    x.acceptor = "n2";
    x.connector = "n1";
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &x, ok, m), -EACCES, "swapped names");
    x = e;
    x.link = 0;
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &x, ok, m), -EACCES, "another link");
    x = e;
    x.nonce_a = nonce_c;
    x.nonce_c = nonce_a;
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &x, ok, m), -EACCES, "swapped nonces");
    x = e;
    x.acceptor_inc = 112;
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &x, ok, m), -EACCES, "another incarnation");
    /* the connector's own MAC reflected back as the acceptor's proof */
    const uint8_t *their_mac = resp + n - NDFS_AUTH_MAC_LEN;
    cr_assert_eq(ndfs_auth_ok_verify(key, 32, &e, their_mac, NDFS_AUTH_MAC_LEN), -EACCES);
}

Test(auth, a_replayed_response_fails_against_a_new_nonce)
{
    uint8_t resp[NDFS_AUTH_MAX_LEN];
    size_t n = respond(key, nonce_a, resp);
    uint8_t fresh[NDFS_AUTH_NONCE_LEN];
    cr_assert_eq(ndfs_auth_random(fresh, sizeof fresh), 0);
    struct ndfs_auth_hello r;
    cr_assert_eq(ndfs_auth_response_verify(key, 32, "n1", 111, fresh, resp, n, &r), -EACCES);
}

Test(auth, malformed_challenges_are_rejected)
{
    uint8_t ch[NDFS_AUTH_MAX_LEN];
    size_t n = ndfs_auth_challenge_encode("n1", 1, nonce_a, ch);
    struct ndfs_auth_hello h;
    for (size_t len = 0; len < n; len++)
        cr_assert_eq(ndfs_auth_challenge_decode(ch, len, &h), -EBADMSG);
    cr_assert_eq(ndfs_auth_challenge_decode(ch, n + 1, &h), -EBADMSG);
    ch[0] = 0;
    cr_assert_eq(ndfs_auth_challenge_decode(ch, n, &h), -EBADMSG, "empty name");
    ch[0] = 2;
    ch[1] = '/';
    cr_assert_eq(ndfs_auth_challenge_decode(ch, n, &h), -EBADMSG, "bad name character");
}

Test(auth, heartbeats_are_tagged_and_forgeries_ignored)
{
    struct ndfs_heartbeat hb = {.name = "n2", .link = 1, .incarnation = 5, .counter = 42}, out;
    uint8_t buf[NDFS_HEARTBEAT_MAX_LEN];
    size_t n = ndfs_heartbeat_encode(key, 32, &hb, buf);
    cr_assert_eq(ndfs_heartbeat_decode(key, 32, buf, n, &out), 0);
    cr_assert_str_eq(out.name, "n2");
    cr_assert_eq(out.link, 1);
    cr_assert_eq(out.incarnation, 5);
    cr_assert_eq(out.counter, 42);
    cr_assert_eq(ndfs_heartbeat_decode(other_key, 32, buf, n, &out), -EACCES);
    for (size_t i = 0; i < n * 8; i++) {
        uint8_t x[NDFS_HEARTBEAT_MAX_LEN];
        memcpy(x, buf, n);
        x[i / 8] ^= (uint8_t)(1 << (i % 8));
        cr_assert_neq(ndfs_heartbeat_decode(key, 32, x, n, &out), 0, "bit %zu", i);
    }
    for (size_t len = 0; len < n; len++)
        cr_assert_neq(ndfs_heartbeat_decode(key, 32, buf, len, &out), 0);
}

Test(auth, names)
{
    cr_assert(ndfs_auth_name_valid("n1"));
    cr_assert(ndfs_auth_name_valid("n3.mount-1234_x"));
    cr_assert_not(ndfs_auth_name_valid(""));
    cr_assert_not(ndfs_auth_name_valid(NULL));
    cr_assert_not(ndfs_auth_name_valid("a b"));
    cr_assert_not(ndfs_auth_name_valid("n1/x"));
    char longname[66];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    cr_assert_not(ndfs_auth_name_valid(longname));
    longname[64] = '\0';
    cr_assert(ndfs_auth_name_valid(longname));
}

static char *tmpdir;

static void key_setup(void)
{
    tmpdir = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(tmpdir);
}

static void key_teardown(void)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
    g_free(tmpdir);
}

TestSuite(keyfile, .init = key_setup, .fini = key_teardown);

static void write_file(const char *path, const char *text, mode_t mode)
{
    cr_assert(g_file_set_contents(path, text, -1, NULL));
    cr_assert_eq(chmod(path, mode), 0);
}

Test(keyfile, create_then_load)
{
    g_autofree char *path = g_build_filename(tmpdir, "cluster.key", NULL);
    char *err = NULL;
    cr_assert_eq(ndfs_transport_key_create(path, &err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(st.st_size, 65);
    uint8_t *k = NULL;
    size_t len = 0;
    cr_assert_eq(ndfs_transport_key_load(path, &k, &len, &err), 0, "%s", err);
    cr_assert_eq(len, 32u);
    g_free(k);
    cr_assert_eq(ndfs_transport_key_create(path, &err), -EEXIST, "never overwrites");
    cr_assert(strstr(err, path));
    g_free(err);
}

Test(keyfile, a_file_readable_by_others_is_refused)
{
    g_autofree char *path = g_build_filename(tmpdir, "k", NULL);
    write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0644);
    uint8_t *k = NULL;
    size_t len = 0;
    char *err = NULL;
    cr_assert_eq(ndfs_transport_key_load(path, &k, &len, &err), -EPERM);
    g_autofree char *want =
        g_strdup_printf("key file %s is readable by others (mode 0644); chmod 600 it", path);
    cr_assert_str_eq(err, want);
    g_free(err);
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(ndfs_transport_key_load(path, &k, &len, &err), 0);
    cr_assert_eq(k[0], 0x00);
    cr_assert_eq(k[31], 0xff);
    g_free(k);
}

Test(keyfile, short_or_garbled_keys_are_refused)
{
    static const char *bad[] = {
        "",
        "\n",
        "0011223344556677\n",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n", /* 63 digits */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeexx\n",
        "00112233445566778899aabbccddeeff 0112233445566778899aabbccddeeff\n",
    };
    g_autofree char *path = g_build_filename(tmpdir, "k", NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i], 0600);
        uint8_t *k = NULL;
        size_t len = 0;
        char *err = NULL;
        cr_assert_eq(ndfs_transport_key_load(path, &k, &len, &err), -EINVAL, "case %zu", i);
        cr_assert(strstr(err, path), "%s", err);
        g_free(err);
    }
    char *err = NULL;
    uint8_t *k = NULL;
    size_t len = 0;
    g_autofree char *missing = g_build_filename(tmpdir, "none", NULL);
    cr_assert_eq(ndfs_transport_key_load(missing, &k, &len, &err), -ENOENT);
    g_free(err);
}
