/* ndfsd.conf validation: defaults, inline comments, and every error with
 * the message people will read. */
#include <criterion/criterion.h>

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ndfs/config.h"

#define LABEL "/etc/ndfs/ndfsd.conf"

static int load(const char *text, struct ndfs_config *out, GError **error)
{
    return ndfs_config_load_data(text, strlen(text), LABEL, out, error);
}

static void assert_error(const char *text, GQuark domain, int code, const char *message)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(load(text, &c, &error), -EINVAL, "accepted:\n%s", text);
    cr_assert_not_null(error);
    cr_assert(g_error_matches(error, domain, code), "error %s/%d: %s",
              g_quark_to_string(error->domain), error->code, error->message);
    cr_assert_str_eq(error->message, message);
    cr_assert_null(c.node_name, "*out not cleared on error");
    cr_assert_null(c.file);
}

Test(config, minimal_file_gets_defaults)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(load("[node]\nname=n1\ndata-dir=/var/lib/ndfs/n1\n", &c, &error), 0, "%s",
                 error ? error->message : "");
    cr_assert_str_eq(c.file, LABEL);
    cr_assert_str_eq(c.node_name, "n1");
    cr_assert_str_eq(c.data_dir, "/var/lib/ndfs/n1");
    cr_assert_str_eq(c.control_socket, "/run/ndfs/n1.sock");
    cr_assert_null(c.admin_group);
    cr_assert_str_eq(c.listen, "");
    cr_assert_str_eq(c.key_file, "");
    cr_assert_eq(c.snapshot_threshold, 1024);
    cr_assert_null(c.listen_addrs[0]);
    cr_assert_str_eq(c.join, "");
    cr_assert_eq(c.heartbeat_interval_ms, 200);
    cr_assert_eq(c.failure_timeout_ms, 1500);
    cr_assert_eq(c.election_timeout_ms, 1000);
    cr_assert_eq(c.stripe_size, 256 * 1024);
    cr_assert_null(c.fence_command);
    cr_assert_eq(c.io_timeout_ms, 0);
    cr_assert_eq(c.poll_us, 100);
    cr_assert_eq(c.read_inflight, 1024 * 1024);
    cr_assert_eq(c.ack_timeout_ms, 2000);
    ndfs_config_clear(&c);
    cr_assert_null(c.node_name);
}

/* The example, comments and all. */
static const char full_example[] =
    "# an ndfsd configuration\n"
    "[node]\n"
    "name = n1                           # [a-z0-9-]{1,32}, unique in the cluster\n"
    "data-dir = /var/lib/ndfs/n1         # LMDB tables, Raft log and snapshots\n"
    "control-socket = /run/ndfs/n1.sock  # unix socket for ndfsadm and for ndfs mounts\n"
    "admin-group = ndfs-admin\t# who may change things\n"
    "[cluster]\n"
    "listen =                            # empty: no network (the next issue fills it)\n"
    "key-file =\n"
    "\n"
    "[ccd]\n"
    "snapshot-threshold = 4096 # entries\n";

Test(config, full_file_with_inline_comments)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(load(full_example, &c, &error), 0, "%s", error ? error->message : "");
    cr_assert_str_eq(c.node_name, "n1");
    cr_assert_str_eq(c.data_dir, "/var/lib/ndfs/n1");
    cr_assert_str_eq(c.control_socket, "/run/ndfs/n1.sock");
    cr_assert_str_eq(c.admin_group, "ndfs-admin");
    cr_assert_str_eq(c.listen, "");
    cr_assert_str_eq(c.key_file, "");
    cr_assert_eq(c.snapshot_threshold, 4096);
    ndfs_config_clear(&c);
}

Test(config, hash_inside_a_word_is_kept)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(load("[node]\nname=n1\ndata-dir=/srv/ndfs#1   \n"
                      "[cluster]\nkey-file=/etc/ndfs/key#a # the key\n",
                      &c, &error),
                 0, "%s", error ? error->message : "");
    cr_assert_str_eq(c.data_dir, "/srv/ndfs#1");
    cr_assert_str_eq(c.key_file, "/etc/ndfs/key#a");
    ndfs_config_clear(&c);
}

Test(config, empty_admin_group_means_none)
{
    struct ndfs_config c;
    cr_assert_eq(load("[node]\nname=n1\ndata-dir=/d\nadmin-group=\n", &c, NULL), 0);
    cr_assert_null(c.admin_group);
    ndfs_config_clear(&c);
}

Test(config, unknown_group_and_key)
{
    assert_error("[node]\nname=n1\nnmae=n1\ndata-dir=/d\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [node] nmae: unknown key");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[clutser]\nlisten=\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_GROUP_NOT_FOUND, LABEL ": [clutser]: unknown group");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[cluster]\njion=n2\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [cluster] jion: unknown key");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[membership]\nheartbeat=1\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [membership] heartbeat: unknown key");
    assert_error("[node]\nname=n1\ndata-dir=/d\nname[de]=n2\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [node] name[de]: unknown key");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[vdisk]\ntimeout=1s\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [vdisk] timeout: unknown key");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[vdisks]\nio-timeout=1s\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_GROUP_NOT_FOUND, LABEL ": [vdisks]: unknown group");
}

Test(config, missing_required_keys)
{
    assert_error("[node]\ndata-dir=/d\n", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [node] name: missing");
    assert_error("[node]\nname=n1\n", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [node] data-dir: missing");
    assert_error("", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [node] name: missing");
    assert_error("[cluster]\nlisten=\n", G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [node] name: missing");
}

Test(config, bad_values)
{
    const int code = G_KEY_FILE_ERROR_INVALID_VALUE;
    assert_error("[node]\nname=N1\ndata-dir=/d\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] name: \"N1\" is not a valid node name ([a-z0-9-]{1,32})");
    assert_error("[node]\nname = # nothing\ndata-dir=/d\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] name: \"\" is not a valid node name ([a-z0-9-]{1,32})");
    assert_error("[node]\nname=n1\ndata-dir=var/lib\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] data-dir: \"var/lib\" is not an absolute path");
    assert_error("[node]\nname=n1\ndata-dir=/d\ncontrol-socket=n1.sock\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] control-socket: \"n1.sock\" is not an absolute path");
    assert_error("[node]\nname=n1\ndata-dir=/d\nadmin-group=ndfs admins\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] admin-group: \"ndfs admins\" is not a valid group name");
    assert_error("[node]\nname=n1\ndata-dir=/d\nadmin-group=-x\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] admin-group: \"-x\" is not a valid group name");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[cluster]\nkey-file=key\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [cluster] key-file: \"key\" is not an absolute path");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=15\n", G_KEY_FILE_ERROR,
                 code,
                 LABEL ": [ccd] snapshot-threshold: \"15\" is not a number from 16 to 1000000");
    assert_error(
        "[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=1000001\n", G_KEY_FILE_ERROR, code,
        LABEL ": [ccd] snapshot-threshold: \"1000001\" is not a number from 16 to 1000000");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=-20\n", G_KEY_FILE_ERROR,
                 code,
                 LABEL ": [ccd] snapshot-threshold: \"-20\" is not a number from 16 to 1000000");
    assert_error("[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=lots\n", G_KEY_FILE_ERROR,
                 code,
                 LABEL ": [ccd] snapshot-threshold: \"lots\" is not a number from 16 to 1000000");

    assert_error("[node]\nname=n\xff\ndata-dir=/d\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] name: the value is not UTF-8 or has a bad escape sequence");
    assert_error("[node]\nname=n1\ndata-dir=/d\\q\n", G_KEY_FILE_ERROR, code,
                 LABEL ": [node] data-dir: the value is not UTF-8 or has a bad escape sequence");

    g_autofree char *long_socket =
        g_strdup_printf("[node]\nname=n1\ndata-dir=/d\ncontrol-socket=/%0120d\n", 0);
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;
    cr_assert_eq(load(long_socket, &c, &error), -EINVAL);
    cr_assert(strstr(error->message, "too long for a unix socket"), "%s", error->message);
}

Test(config, threshold_bounds_are_inclusive)
{
    struct ndfs_config c;
    cr_assert_eq(load("[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=16\n", &c, NULL), 0);
    cr_assert_eq(c.snapshot_threshold, 16);
    ndfs_config_clear(&c);
    cr_assert_eq(
        load("[node]\nname=n1\ndata-dir=/d\n[ccd]\nsnapshot-threshold=1000000\n", &c, NULL), 0);
    cr_assert_eq(c.snapshot_threshold, 1000000);
    ndfs_config_clear(&c);
}

Test(config, syntax_error_names_the_file)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;
    cr_assert_eq(load("[node\nname=n1\n", &c, &error), -EINVAL);
    cr_assert_eq(error->domain, G_KEY_FILE_ERROR);
    cr_assert(g_str_has_prefix(error->message, LABEL ": "), "%s", error->message);

    g_clear_error(&error);
    cr_assert_eq(load("name=n1\n", &c, &error), -EINVAL);
    cr_assert(g_str_has_prefix(error->message, LABEL ": "), "%s", error->message);
}

Test(config, load_reads_a_file)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp(NULL, &error);
    cr_assert_not_null(dir);
    g_autofree char *path = g_build_filename(dir, "ndfsd.conf", NULL);
    cr_assert(g_file_set_contents(path, full_example, -1, &error));

    struct ndfs_config c;
    cr_assert_eq(ndfs_config_load(path, &c, &error), 0);
    cr_assert_str_eq(c.file, path);
    cr_assert_str_eq(c.node_name, "n1");
    ndfs_config_clear(&c);

    cr_assert(g_file_set_contents(path, "[node]\nnmae=x\n", -1, &error));
    cr_assert_eq(ndfs_config_load(path, &c, &error), -EINVAL);
    g_autofree char *want = g_strdup_printf("%s: [node] nmae: unknown key", path);
    cr_assert_str_eq(error->message, want);
    g_clear_error(&error);

    g_autofree char *missing = g_build_filename(dir, "nope.conf", NULL);
    cr_assert_eq(ndfs_config_load(missing, &c, &error), -ENOENT);
    cr_assert(g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT));
    cr_assert(strstr(error->message, missing), "%s", error->message);
    g_clear_error(&error);

    cr_assert_eq(ndfs_config_load(dir, &c, &error), -EISDIR);
    g_clear_error(&error);

    if (geteuid() != 0) {
        cr_assert_eq(chmod(path, 0), 0);
        cr_assert_eq(ndfs_config_load(path, &c, &error), -EACCES);
        cr_assert(g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_ACCES));
        g_clear_error(&error);
    }

    g_unlink(path);
    g_rmdir(dir);
}

/* Mutations of a valid file are accepted or rejected with a message that
 * names the file, never a crash. */
Test(config, mutated_files_never_crash)
{
    GRand *rand = g_rand_new_with_seed(4242);
    const size_t len = strlen(full_example);
    for (int i = 0; i < 5000; i++) {
        g_autofree char *text = g_strdup(full_example);
        int flips = g_rand_int_range(rand, 1, 4);
        for (int f = 0; f < flips; f++)
            text[g_rand_int_range(rand, 0, (gint32)len)] = (char)g_rand_int_range(rand, 1, 256);
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        int r = ndfs_config_load_data(text, len, LABEL, &c, &error);
        if (r == 0) {
            cr_assert_not_null(c.node_name);
            cr_assert_not_null(c.data_dir);
            ndfs_config_clear(&c);
        } else {
            cr_assert_eq(r, -EINVAL);
            cr_assert(g_str_has_prefix(error->message, LABEL ": "), "%s", error->message);
        }
    }
    g_rand_free(rand);
}

#define NODE "[node]\nname=n2\ndata-dir=/d\n"

Test(config, cluster_keys)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(load(NODE "[cluster]\n"
                           "listen = 127.0.1.2:7400; 127.0.2.2:7401  # two links\n"
                           "join = 127.0.1.1:7400\n"
                           "key-file = /etc/ndfs/cluster.key\n"
                           "[membership]\n"
                           "heartbeat-interval-ms = 100\n"
                           "failure-timeout-ms = 201\n"
                           "[ccd]\n"
                           "election-timeout-ms = 300\n",
                      &c, &error),
                 0, "%s", error ? error->message : "");
    cr_assert_eq(g_strv_length(c.listen_addrs), 2);
    cr_assert_str_eq(c.listen_addrs[0], "127.0.1.2:7400");
    cr_assert_str_eq(c.listen_addrs[1], "127.0.2.2:7401");
    cr_assert_str_eq(c.join, "127.0.1.1:7400");
    cr_assert_str_eq(c.key_file, "/etc/ndfs/cluster.key");
    cr_assert_eq(c.heartbeat_interval_ms, 100);
    cr_assert_eq(c.failure_timeout_ms, 201);
    cr_assert_eq(c.election_timeout_ms, 300);
    ndfs_config_clear(&c);

    /* the first node: listen without join */
    cr_assert_eq(load(NODE "[cluster]\nlisten=10.0.0.1:1\nkey-file=/k\n", &c, &error), 0, "%s",
                 error ? error->message : "");
    cr_assert_eq(g_strv_length(c.listen_addrs), 1);
    cr_assert_str_eq(c.join, "");
    ndfs_config_clear(&c);

    /* eight links is the most */
    cr_assert_eq(load(NODE "[cluster]\nkey-file=/k\nlisten=127.0.0.1:1;127.0.0.1:2;127.0.0.1:3;"
                           "127.0.0.1:4;127.0.0.1:5;127.0.0.1:6;127.0.0.1:7;127.0.0.1:8\n",
                      &c, &error),
                 0, "%s", error ? error->message : "");
    cr_assert_eq(g_strv_length(c.listen_addrs), 8);
    ndfs_config_clear(&c);
}

Test(config, cluster_errors)
{
    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;
    const char *bad_listen = "is not an IPv4 address and port (A.B.C.D:PORT; one per link, "
                             "separated by ';')";
    const char *bad[] = {"localhost:7400", "127.0.0.1", "127.0.0.1:0",   "127.0.0.1:65536",
                         "127.0.0.1:x",    "::1:7400",  "127.0.0.256:1", ":7400"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[cluster]\nkey-file=/k\nlisten=%s\n", bad[i]);
        g_autofree char *want =
            g_strdup_printf(LABEL ": [cluster] listen: \"%s\" %s", bad[i], bad_listen);
        assert_error(text, G_KEY_FILE_ERROR, invalid, want);
    }
    g_autofree char *empty = g_strdup_printf(LABEL ": [cluster] listen: \"\" %s", bad_listen);
    assert_error(NODE "[cluster]\nkey-file=/k\nlisten=127.0.0.1:1;;127.0.0.1:2\n", G_KEY_FILE_ERROR,
                 invalid, empty);
    assert_error(NODE "[cluster]\nkey-file=/k\nlisten=127.0.0.1:1;127.0.0.1:1\n", G_KEY_FILE_ERROR,
                 invalid, LABEL ": [cluster] listen: \"127.0.0.1:1\" is given twice");
    assert_error(NODE "[cluster]\nkey-file=/k\nlisten=127.0.0.1:1;127.0.0.1:2;127.0.0.1:3;"
                      "127.0.0.1:4;127.0.0.1:5;127.0.0.1:6;127.0.0.1:7;127.0.0.1:8;127.0.0.1:9\n",
                 G_KEY_FILE_ERROR, invalid,
                 LABEL ": [cluster] listen: 9 addresses, at most 8 (one per link)");
    assert_error(NODE "[cluster]\nlisten=127.0.0.1:7400\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [cluster] key-file: missing: required when [cluster] listen is set");
    assert_error(NODE "[cluster]\nlisten=127.0.0.1:7400\nkey-file=\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                 LABEL ": [cluster] key-file: missing: required when [cluster] listen is set");
    assert_error(NODE "[cluster]\njoin=127.0.0.1:7400\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [cluster] join: needs [cluster] listen: a node joins with its own "
                       "addresses");
    assert_error(NODE "[cluster]\nlisten=127.0.0.1:7400\nkey-file=/k\njoin=n1\n", G_KEY_FILE_ERROR,
                 invalid,
                 LABEL ": [cluster] join: \"n1\" is not an IPv4 address and port (A.B.C.D:PORT)");
    assert_error(NODE "[cluster]\nlisten=127.0.0.1:7400\nkey-file=/k\njoin=127.0.0.1:7400\n",
                 G_KEY_FILE_ERROR, invalid,
                 LABEL ": [cluster] join: \"127.0.0.1:7400\" is one of this node's own listen "
                       "addresses");
}

Test(config, membership_errors)
{
    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;
    assert_error(NODE "[membership]\nheartbeat-interval-ms=fast\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] heartbeat-interval-ms: \"fast\" is not a number of "
                       "milliseconds from 10 to 600000");
    assert_error(NODE "[membership]\nfailure-timeout-ms=0\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] failure-timeout-ms: \"0\" is not a number of "
                       "milliseconds from 10 to 600000");
    assert_error(NODE "[membership]\nfailure-timeout-ms=400\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] failure-timeout-ms: 400 must be more than twice "
                       "heartbeat-interval-ms (200)");
    assert_error(NODE "[membership]\nheartbeat-interval-ms=1000\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] failure-timeout-ms: 1500 must be more than twice "
                       "heartbeat-interval-ms (1000)");
    assert_error(NODE "[ccd]\nelection-timeout-ms=99\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [ccd] election-timeout-ms: \"99\" is not a number of milliseconds "
                       "from 100 to 600000");
}

Test(config, stripe_size)
{
    static const struct {
        const char *text;
        uint64_t want;
    } good[] = {
        {"256K", 256 * 1024},
        {"4K", 4096},
        {"16M", 16 << 20},
        {"1m", 1 << 20},
        {"65536", 65536},
        {"128KiB", 131072},
        {"0", 0},
        {"off", 0},
        {"OFF", 0},
        {"0K", 0},
        {"64K  # comment", 65536},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = g_strdup_printf(NODE "[cluster]\nstripe-size = %s\n", good[i].text);
        cr_assert_eq(load(text, &c, &error), 0, "%s: %s", good[i].text,
                     error ? error->message : "");
        cr_assert_eq(c.stripe_size, good[i].want, "%s: %llu", good[i].text,
                     (unsigned long long)c.stripe_size);
        ndfs_config_clear(&c);
    }
    const char *bad[] = {
        "4095", "3K", "17M", "1G", "-1", "256 K", "1.5M", "on", "", "256X", "99999999999999999999"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[cluster]\nstripe-size=%s\n", bad[i]);
        g_autofree char *want = g_strdup_printf(
            LABEL ": [cluster] stripe-size: \"%s\" is not a size from 4K to 16M (e.g. 256K), 0 or "
                  "\"off\"",
            bad[i]);
        assert_error(text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, want);
    }
}

Test(config, fence_command)
{
    struct ndfs_config c;
    g_autoptr(GError) error = NULL;

    cr_assert_eq(
        load(NODE "[membership]\nfence-command = /bin/true   # power it off\n", &c, &error), 0,
        "%s", error ? error->message : "");
    cr_assert_str_eq(c.fence_command, "/bin/true");
    ndfs_config_clear(&c);
    cr_assert_null(c.fence_command);
    /* empty: none */
    cr_assert_eq(load(NODE "[membership]\nfence-command =\n", &c, &error), 0, "%s",
                 error ? error->message : "");
    cr_assert_null(c.fence_command);
    ndfs_config_clear(&c);

    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;
    assert_error(NODE "[membership]\nfence-command=fence.sh\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] fence-command: \"fence.sh\" is not an absolute path");
    assert_error(NODE "[membership]\nfence-command=/nonexistent/fence.sh\n", G_KEY_FILE_ERROR,
                 invalid,
                 LABEL ": [membership] fence-command: \"/nonexistent/fence.sh\": No such file or "
                       "directory");
    assert_error(NODE "[membership]\nfence-command=/\n", G_KEY_FILE_ERROR, invalid,
                 LABEL ": [membership] fence-command: \"/\" is not an executable file");

    /* a regular file without execute permission */
    g_autofree char *dir = g_dir_make_tmp(NULL, NULL);
    cr_assert_not_null(dir);
    g_autofree char *script = g_build_filename(dir, "fence", NULL);
    cr_assert(g_file_set_contents(script, "#!/bin/sh\nexit 0\n", -1, NULL));
    cr_assert_eq(chmod(script, 0644), 0);
    g_autofree char *text = g_strdup_printf(NODE "[membership]\nfence-command=%s\n", script);
    g_autofree char *want = g_strdup_printf(
        LABEL ": [membership] fence-command: \"%s\" is not an executable file", script);
    /* root may execute nothing without an x bit either: access(X_OK) says so */
    assert_error(text, G_KEY_FILE_ERROR, invalid, want);
    cr_assert_eq(chmod(script, 0755), 0);
    cr_assert_eq(load(text, &c, &error), 0, "%s", error ? error->message : "");
    cr_assert_str_eq(c.fence_command, script);
    ndfs_config_clear(&c);
    g_unlink(script);
    g_rmdir(dir);
}

Test(config, io_timeout)
{
    static const struct {
        const char *text;
        uint64_t want_ms;
    } good[] = {
        {"30s", 30000},    {"500ms", 500},           {"2m", 120000},   {"45", 45000},
        {"0", 0},          {"forever", 0},           {"FOREVER", 0},   {"1h", 3600000},
        {"24h", 86400000}, {"86400", 86400000},      {"10S", 10000},   {"250MS", 250},
        {"0s", 0},         {"5s   # comment", 5000}, {"  7s  ", 7000},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = g_strdup_printf(NODE "[vdisk]\nio-timeout = %s\n", good[i].text);
        cr_assert_eq(load(text, &c, &error), 0, "%s: %s", good[i].text,
                     error ? error->message : "");
        cr_assert_eq(c.io_timeout_ms, good[i].want_ms, "%s: %llu", good[i].text,
                     (unsigned long long)c.io_timeout_ms);
        ndfs_config_clear(&c);
    }
    const char *bad[] = {"",
                         "s",
                         "ms",
                         "-1",
                         "1.5s",
                         "30 s",
                         "30sec",
                         "never",
                         "2d",
                         "25h",
                         "86401",
                         "1441m",
                         "99999999999999999999",
                         "99999999999999999999ms",
                         "0x10",
                         "+5"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[vdisk]\nio-timeout=%s\n", bad[i]);
        g_autofree char *want =
            g_strdup_printf(LABEL ": [vdisk] io-timeout: \"%s\" is not a duration up to 24h "
                                  "(e.g. 30s, 500ms, 2m; a number alone is seconds), 0 or "
                                  "\"forever\"",
                            bad[i]);
        assert_error(text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, want);
    }
}

Test(config, poll_us)
{
    static const struct {
        const char *text;
        unsigned want;
    } good[] = {{"0", 0}, {"100", 100}, {" 250 ", 250}, {"10000", 10000}, {"50 # comment", 50}};
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = g_strdup_printf(NODE "[vdisk]\npoll-us = %s\n", good[i].text);
        cr_assert_eq(load(text, &c, &error), 0, "%s: %s", good[i].text,
                     error ? error->message : "");
        cr_assert_eq(c.poll_us, good[i].want, "%s: %u", good[i].text, c.poll_us);
        ndfs_config_clear(&c);
    }
    const char *bad[] = {"", "-1", "10001", "1.5", "100us", "0x10", "+5", "99999999999999999999"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[vdisk]\npoll-us=%s\n", bad[i]);
        g_autofree char *want = g_strdup_printf(
            LABEL ": [vdisk] poll-us: \"%s\" is not a number of microseconds from 0 to 10000",
            bad[i]);
        assert_error(text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, want);
    }
}

Test(config, master_read_inflight)
{
    static const struct {
        const char *text;
        uint64_t want;
    } good[] = {{"0", 0},          {"off", 0},      {"OFF", 0},       {"64K", 64 << 10},
                {" 2M ", 2 << 20}, {"1G", 1 << 30}, {"65536", 65536}, {"4M # comment", 4 << 20}};
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        g_autofree char *text =
            g_strdup_printf(NODE "[vdisk]\nmaster-read-inflight = %s\n", good[i].text);
        cr_assert_eq(load(text, &c, &error), 0, "%s: %s", good[i].text,
                     error ? error->message : "");
        cr_assert_eq(c.read_inflight, good[i].want, "%s: %" G_GUINT64_FORMAT, good[i].text,
                     c.read_inflight);
        ndfs_config_clear(&c);
    }
    const char *bad[] = {"", "-1", "32K", "65535", "2G", "1.5M", "lots", "99999999999999999999"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[vdisk]\nmaster-read-inflight=%s\n", bad[i]);
        g_autofree char *want =
            g_strdup_printf(LABEL ": [vdisk] master-read-inflight: \"%s\" is "
                                  "not a size from 64K to 1G (e.g. 1M), 0 or \"off\"",
                            bad[i]);
        assert_error(text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, want);
    }
}

Test(config, reconfig_ack_timeout)
{
    static const struct {
        const char *text;
        unsigned want_ms;
    } good[] = {{"100", 100}, {"2000", 2000}, {"600000", 600000}, {" 750   # comment", 750}};
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        struct ndfs_config c;
        g_autoptr(GError) error = NULL;
        g_autofree char *text =
            g_strdup_printf(NODE "[reconfig]\nack-timeout-ms = %s\n", good[i].text);
        cr_assert_eq(load(text, &c, &error), 0, "%s: %s", good[i].text,
                     error ? error->message : "");
        cr_assert_eq(c.ack_timeout_ms, good[i].want_ms, "%s: %u", good[i].text, c.ack_timeout_ms);
        ndfs_config_clear(&c);
    }
    const char *bad[] = {"", "99", "0", "600001", "2s", "-5", "1.5", "fast"};
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *text = g_strdup_printf(NODE "[reconfig]\nack-timeout-ms=%s\n", bad[i]);
        g_autofree char *want = g_strdup_printf(LABEL ": [reconfig] ack-timeout-ms: \"%s\" is not "
                                                      "a number of milliseconds from 100 to 600000",
                                                bad[i]);
        assert_error(text, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, want);
    }
    assert_error(NODE "[reconfig]\nack-timeout=2000\n", G_KEY_FILE_ERROR,
                 G_KEY_FILE_ERROR_KEY_NOT_FOUND, LABEL ": [reconfig] ack-timeout: unknown key");
}
