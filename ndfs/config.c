/* ndfsd.conf loading and validation. */
#define G_LOG_DOMAIN "ndfs-config"

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "parse.h"

#define CONFIG_MAX_SIZE            (1 << 20)
#define SNAPSHOT_THRESHOLD_MIN     16
#define SNAPSHOT_THRESHOLD_MAX     1000000
#define SNAPSHOT_THRESHOLD_DEFAULT 1024
#define ELECTION_TIMEOUT_DEFAULT   1000
#define HEARTBEAT_DEFAULT          200
#define FAILURE_TIMEOUT_DEFAULT    1500
#define INTERVAL_MIN               10
#define INTERVAL_MAX               600000
#define IO_TIMEOUT_MAX_MS          (24ull * 3600 * 1000)
#define ACK_TIMEOUT_DEFAULT        2000
#define ACK_TIMEOUT_MIN            100

struct known_group {
    const char *name;
    const char *const *keys;
};

static const char *const node_keys[] = {"name", "data-dir", "control-socket", "admin-group", NULL};
static const char *const cluster_keys[] = {"listen", "join", "key-file", "stripe-size", NULL};
static const char *const ccd_keys[] = {"snapshot-threshold", "election-timeout-ms", NULL};
static const char *const membership_keys[] = {"heartbeat-interval-ms", "failure-timeout-ms",
                                              "fence-command", NULL};
static const char *const vdisk_keys[] = {"io-timeout", "poll-us", "master-read-inflight", NULL};
static const char *const reconfig_keys[] = {"ack-timeout-ms", NULL};
static const struct known_group known_groups[] = {
    {"node", node_keys},   {"cluster", cluster_keys},       {"ccd", ccd_keys},
    {"vdisk", vdisk_keys}, {"membership", membership_keys}, {"reconfig", reconfig_keys},
};

static const struct known_group *find_group(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(known_groups); i++)
        if (strcmp(known_groups[i].name, name) == 0)
            return &known_groups[i];
    return NULL;
}

static bool key_known(const struct known_group *g, const char *key)
{
    for (const char *const *k = g->keys; *k; k++)
        if (strcmp(*k, key) == 0)
            return true;
    return false;
}

/* Reports a problem with one key: "FILE: [group] key: reason". */
G_GNUC_PRINTF(6, 7)
static int key_error(GError **error, GKeyFileError code, const char *label, const char *group,
                     const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *reason = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, G_KEY_FILE_ERROR, code, "%s: [%s] %s: %s", label, group, key, reason);
    return -EINVAL;
}

/* GKeyFile keeps everything after '=' as the value, but our files (and the
 * examples people copy) put comments after values: "name = n1   # ...".
 * A '#' at the start of a value or after whitespace starts a comment; it is
 * removed with the whitespace around it. A '#' inside a word ("/srv/a#1")
 * stays. */
static void strip_inline_comments(GKeyFile *kf)
{
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (char **g = groups; *g; g++) {
        g_auto(GStrv) keys = g_key_file_get_keys(kf, *g, NULL, NULL);
        for (char **k = keys; keys && *k; k++) {
            g_autofree char *raw = g_key_file_get_value(kf, *g, *k, NULL);
            if (!raw)
                continue;
            char *hash = NULL;
            for (char *p = raw; *p; p++) {
                if (*p == '#' && (p == raw || g_ascii_isspace(p[-1]))) {
                    hash = p;
                    break;
                }
            }
            if (hash)
                *hash = '\0';
            g_strchomp(raw);
            g_key_file_set_value(kf, *g, *k, raw);
        }
    }
}

/* The unescaped string value, or NULL when the key is absent. */
static char *get_string(GKeyFile *kf, const char *group, const char *key)
{
    if (!g_key_file_has_key(kf, group, key, NULL))
        return NULL;
    return g_key_file_get_string(kf, group, key, NULL);
}

static int check_known(GKeyFile *kf, const char *label, GError **error)
{
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (char **g = groups; *g; g++) {
        const struct known_group *known = find_group(*g);
        if (!known) {
            g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                        "%s: [%s]: unknown group", label, *g);
            return -EINVAL;
        }
        g_auto(GStrv) keys = g_key_file_get_keys(kf, *g, NULL, NULL);
        for (char **k = keys; keys && *k; k++) {
            if (!key_known(known, *k))
                return key_error(error, G_KEY_FILE_ERROR_KEY_NOT_FOUND, label, *g, *k,
                                 "unknown key");
            /* so that get_string() below only fails for absent keys */
            g_autoptr(GError) bad = NULL;
            g_autofree char *value = g_key_file_get_string(kf, *g, *k, &bad);
            /* a bad escape sets bad but still returns a value */
            if (!value || bad)
                return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, *g, *k,
                                 "the value is not UTF-8 or has a bad escape sequence");
        }
    }
    return 0;
}

static int load_node(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;

    out->node_name = get_string(kf, "node", "name");
    if (!out->node_name)
        return key_error(error, G_KEY_FILE_ERROR_KEY_NOT_FOUND, label, "node", "name", "missing");
    if (!ndfs_node_name_valid(out->node_name))
        return key_error(error, invalid, label, "node", "name",
                         "\"%s\" is not a valid node name ([a-z0-9-]{1,32})", out->node_name);

    out->data_dir = get_string(kf, "node", "data-dir");
    if (!out->data_dir)
        return key_error(error, G_KEY_FILE_ERROR_KEY_NOT_FOUND, label, "node", "data-dir",
                         "missing");
    if (!g_path_is_absolute(out->data_dir))
        return key_error(error, invalid, label, "node", "data-dir",
                         "\"%s\" is not an absolute path", out->data_dir);

    out->control_socket = get_string(kf, "node", "control-socket");
    if (!out->control_socket)
        out->control_socket = g_strdup_printf("/run/ndfs/%s.sock", out->node_name);
    if (!g_path_is_absolute(out->control_socket))
        return key_error(error, invalid, label, "node", "control-socket",
                         "\"%s\" is not an absolute path", out->control_socket);
    if (strlen(out->control_socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
        return key_error(error, invalid, label, "node", "control-socket",
                         "\"%s\" is too long for a unix socket (at most %zu bytes)",
                         out->control_socket, sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);

    /* the group need not exist yet: ndfsd looks it up when it starts */
    out->admin_group = get_string(kf, "node", "admin-group");
    if (out->admin_group && out->admin_group[0] == '\0')
        g_clear_pointer(&out->admin_group, g_free);
    if (out->admin_group && !ndfs_account_name_valid(out->admin_group))
        return key_error(error, invalid, label, "node", "admin-group",
                         "\"%s\" is not a valid group name", out->admin_group);
    return 0;
}

gboolean ndfs_config_address_valid(const char *address)
{
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || colon - address > 15)
        return FALSE;
    char host[16];
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    struct in_addr in;
    guint64 port;
    return inet_pton(AF_INET, host, &in) == 1 &&
           g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &port, NULL);
}

/* [cluster] stripe-size: a size with K/M units, or 0/"off" for no striping. */
/* A size from min to max (range names them, as "4K to 16M (e.g. 256K)"),
 * or 0 or "off" (0); def when the key is absent. */
static int get_size_or_off(GKeyFile *kf, const char *label, const char *group, const char *key,
                           uint64_t min, uint64_t max, const char *range, uint64_t def,
                           uint64_t *out, GError **error)
{
    g_autofree char *text = get_string(kf, group, key);
    uint64_t value = 0;

    *out = def;
    if (!text)
        return 0;
    g_strstrip(text);
    int rc = g_ascii_strcasecmp(text, "off") == 0 ? 0 : ndfs_parse_size(text, &value);
    if (rc == 0 && value == 0) {
        *out = 0;
        return 0;
    }
    if (rc < 0 || value < min || value > max)
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, group, key,
                         "\"%s\" is not a size from %s, 0 or \"off\"", text, range);
    *out = value;
    return 0;
}

static int load_stripe_size(GKeyFile *kf, const char *label, struct ndfs_config *out,
                            GError **error)
{
    return get_size_or_off(kf, label, "cluster", "stripe-size", NDFS_CONFIG_STRIPE_MIN,
                           NDFS_CONFIG_STRIPE_MAX, "4K to 16M (e.g. 256K)",
                           NDFS_CONFIG_STRIPE_DEFAULT, &out->stripe_size, error);
}

static int load_cluster(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;

    out->listen = get_string(kf, "cluster", "listen");
    if (!out->listen)
        out->listen = g_strdup("");
    g_strstrip(out->listen);
    GPtrArray *addrs = g_ptr_array_new();
    if (out->listen[0] != '\0') {
        g_auto(GStrv) parts = g_strsplit(out->listen, ";", -1);
        for (char **p = parts; *p; p++) {
            g_strstrip(*p);
            if (!ndfs_config_address_valid(*p)) {
                g_ptr_array_add(addrs, NULL);
                g_strfreev((char **)g_ptr_array_free(addrs, FALSE));
                return key_error(error, invalid, label, "cluster", "listen",
                                 "\"%s\" is not an IPv4 address and port (A.B.C.D:PORT; "
                                 "one per link, separated by ';')",
                                 *p);
            }
            for (guint i = 0; i < addrs->len; i++) {
                if (strcmp(addrs->pdata[i], *p) == 0) {
                    g_ptr_array_add(addrs, NULL);
                    g_strfreev((char **)g_ptr_array_free(addrs, FALSE));
                    return key_error(error, invalid, label, "cluster", "listen",
                                     "\"%s\" is given twice", *p);
                }
            }
            g_ptr_array_add(addrs, g_strdup(*p));
        }
    }
    g_ptr_array_add(addrs, NULL);
    out->listen_addrs = (char **)g_ptr_array_free(addrs, FALSE);
    if (g_strv_length(out->listen_addrs) > NDFS_CONFIG_MAX_LINKS)
        return key_error(error, invalid, label, "cluster", "listen",
                         "%u addresses, at most %d (one per link)",
                         g_strv_length(out->listen_addrs), NDFS_CONFIG_MAX_LINKS);
    bool network = out->listen_addrs[0] != NULL;

    out->join = get_string(kf, "cluster", "join");
    if (!out->join)
        out->join = g_strdup("");
    g_strstrip(out->join);
    if (out->join[0] != '\0') {
        if (!ndfs_config_address_valid(out->join))
            return key_error(error, invalid, label, "cluster", "join",
                             "\"%s\" is not an IPv4 address and port (A.B.C.D:PORT)", out->join);
        if (!network)
            return key_error(error, invalid, label, "cluster", "join",
                             "needs [cluster] listen: a node joins with its own addresses");
        for (char **a = out->listen_addrs; *a; a++)
            if (strcmp(*a, out->join) == 0)
                return key_error(error, invalid, label, "cluster", "join",
                                 "\"%s\" is one of this node's own listen addresses", out->join);
    }

    out->key_file = get_string(kf, "cluster", "key-file");
    if (!out->key_file)
        out->key_file = g_strdup("");
    if (out->key_file[0] != '\0' && !g_path_is_absolute(out->key_file))
        return key_error(error, invalid, label, "cluster", "key-file",
                         "\"%s\" is not an absolute path", out->key_file);
    if (network && out->key_file[0] == '\0')
        return key_error(error, G_KEY_FILE_ERROR_KEY_NOT_FOUND, label, "cluster", "key-file",
                         "missing: required when [cluster] listen is set");
    return load_stripe_size(kf, label, out, error);
}

/* An optional number of units ("milliseconds") in [min, max]; absent: def. */
static int get_count(GKeyFile *kf, const char *label, const char *group, const char *key,
                     const char *units, unsigned min, unsigned max, unsigned def, unsigned *out,
                     GError **error)
{
    g_autofree char *text = get_string(kf, group, key);
    guint64 value;

    *out = def;
    if (!text)
        return 0;
    if (!g_ascii_string_to_unsigned(text, 10, min, max, &value, NULL))
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, group, key,
                         "\"%s\" is not a number of %s from %u to %u", text, units, min, max);
    *out = (unsigned)value;
    return 0;
}

static int get_ms(GKeyFile *kf, const char *label, const char *group, const char *key, unsigned min,
                  unsigned max, unsigned def, unsigned *out, GError **error)
{
    return get_count(kf, label, group, key, "milliseconds", min, max, def, out, error);
}

/* [membership] fence-command: an absolute path to an executable file, run
 * by the leader as "COMMAND NODE"; empty or absent: none. It is checked
 * here so that a typo stops ndfsd at once rather than blocking a takeover. */
static int load_fence_command(GKeyFile *kf, const char *label, struct ndfs_config *out,
                              GError **error)
{
    const int invalid = G_KEY_FILE_ERROR_INVALID_VALUE;
    char *text = get_string(kf, "membership", "fence-command");
    struct stat st;

    out->fence_command = NULL;
    if (text == NULL)
        return 0;
    g_strstrip(text);
    if (text[0] == '\0') {
        g_free(text);
        return 0;
    }
    out->fence_command = text;
    if (!g_path_is_absolute(text))
        return key_error(error, invalid, label, "membership", "fence-command",
                         "\"%s\" is not an absolute path", text);
    if (stat(text, &st) < 0)
        return key_error(error, invalid, label, "membership", "fence-command", "\"%s\": %s", text,
                         g_strerror(errno));
    if (!S_ISREG(st.st_mode) || access(text, X_OK) < 0)
        return key_error(error, invalid, label, "membership", "fence-command",
                         "\"%s\" is not an executable file", text);
    return 0;
}

static int load_membership(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    int r;
    if ((r = get_ms(kf, label, "membership", "heartbeat-interval-ms", INTERVAL_MIN, INTERVAL_MAX,
                    HEARTBEAT_DEFAULT, &out->heartbeat_interval_ms, error)) < 0 ||
        (r = get_ms(kf, label, "membership", "failure-timeout-ms", INTERVAL_MIN, INTERVAL_MAX,
                    FAILURE_TIMEOUT_DEFAULT, &out->failure_timeout_ms, error)) < 0)
        return r;
    /* one lost heartbeat must not make a node look down */
    if (out->failure_timeout_ms <= 2 * out->heartbeat_interval_ms)
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, "membership",
                         "failure-timeout-ms",
                         "%u must be more than twice heartbeat-interval-ms (%u)",
                         out->failure_timeout_ms, out->heartbeat_interval_ms);
    return load_fence_command(kf, label, out, error);
}

static int load_ccd(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    g_autofree char *threshold = get_string(kf, "ccd", "snapshot-threshold");
    guint64 value;

    out->snapshot_threshold = SNAPSHOT_THRESHOLD_DEFAULT;
    if (!threshold)
        return 0;
    if (!g_ascii_string_to_unsigned(threshold, 10, SNAPSHOT_THRESHOLD_MIN, SNAPSHOT_THRESHOLD_MAX,
                                    &value, NULL))
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, "ccd", "snapshot-threshold",
                         "\"%s\" is not a number from %d to %d", threshold, SNAPSHOT_THRESHOLD_MIN,
                         SNAPSHOT_THRESHOLD_MAX);
    out->snapshot_threshold = (unsigned)value;
    return 0;
}

static int load_election(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    return get_ms(kf, label, "ccd", "election-timeout-ms", 100, INTERVAL_MAX,
                  ELECTION_TIMEOUT_DEFAULT, &out->election_timeout_ms, error);
}

/* [vdisk] io-timeout: how long I/O waits for a reachable master before it
 * fails with EIO. A number with ms, s, m or h ("30s", "500ms", "2m"), a
 * number alone is seconds; 0 or "forever": wait forever (the default). */
static int load_vdisk(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    g_autofree char *text = get_string(kf, "vdisk", "io-timeout");
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}};

    out->io_timeout_ms = 0;
    if (text == NULL)
        return 0;
    g_strstrip(text);
    if (g_ascii_strcasecmp(text, "forever") == 0)
        return 0;
    size_t digits = strspn(text, "0123456789");
    const char *suffix = text + digits;
    uint64_t scale = 0;
    if (*suffix == '\0') {
        scale = 1000;
    } else {
        for (size_t i = 0; i < G_N_ELEMENTS(units); i++)
            if (g_ascii_strcasecmp(suffix, units[i].suffix) == 0)
                scale = units[i].ms;
    }
    guint64 value = 0;
    g_autofree char *number = g_strndup(text, digits);
    /* the bound keeps value * scale from overflowing */
    if (digits == 0 || scale == 0 ||
        !g_ascii_string_to_unsigned(number, 10, 0, IO_TIMEOUT_MAX_MS, &value, NULL) ||
        value * scale > IO_TIMEOUT_MAX_MS)
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, "vdisk", "io-timeout",
                         "\"%s\" is not a duration up to 24h (e.g. 30s, 500ms, 2m; a number "
                         "alone is seconds), 0 or \"forever\"",
                         text);
    out->io_timeout_ms = value * scale;
    return 0;
}

/* [vdisk] poll-us: microseconds that the master's loop and the mounts'
 * drivers keep polling after I/O before they sleep (spin.h); 0: never. */
static int load_poll(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    return get_count(kf, label, "vdisk", "poll-us", "microseconds", 0, NDFS_CONFIG_POLL_US_MAX,
                     NDFS_CONFIG_POLL_US_DEFAULT, &out->poll_us, error);
}

/* [vdisk] master-read-inflight: the bytes of large reads a master lets one
 * disk have in flight (master.h); 0 or "off": no limit. */
static int load_read_inflight(GKeyFile *kf, const char *label, struct ndfs_config *out,
                              GError **error)
{
    return get_size_or_off(kf, label, "vdisk", "master-read-inflight",
                           NDFS_CONFIG_READ_INFLIGHT_MIN, NDFS_CONFIG_READ_INFLIGHT_MAX,
                           "64K to 1G (e.g. 1M)", NDFS_CONFIG_READ_INFLIGHT_DEFAULT,
                           &out->read_inflight, error);
}

/* [reconfig] ack-timeout-ms: how long the leader waits for every member's
 * answer to "update pending" before it cancels a reconfiguration. */
static int load_reconfig(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    return get_ms(kf, label, "reconfig", "ack-timeout-ms", ACK_TIMEOUT_MIN, INTERVAL_MAX,
                  ACK_TIMEOUT_DEFAULT, &out->ack_timeout_ms, error);
}

int ndfs_config_load_data(const char *data, gsize len, const char *label, struct ndfs_config *out,
                          GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    int r;

    memset(out, 0, sizeof(*out));
    if (!label)
        label = "(configuration)";
    /* keep translations so that "name[de]=" is reported as an unknown key
     * instead of being dropped silently */
    if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_KEEP_TRANSLATIONS, error)) {
        g_prefix_error(error, "%s: ", label);
        return -EINVAL;
    }
    strip_inline_comments(kf);
    out->file = g_strdup(label);
    if ((r = check_known(kf, label, error)) < 0 || (r = load_node(kf, label, out, error)) < 0 ||
        (r = load_cluster(kf, label, out, error)) < 0 ||
        (r = load_ccd(kf, label, out, error)) < 0 ||
        (r = load_election(kf, label, out, error)) < 0 ||
        (r = load_membership(kf, label, out, error)) < 0 ||
        (r = load_vdisk(kf, label, out, error)) < 0 || (r = load_poll(kf, label, out, error)) < 0 ||
        (r = load_read_inflight(kf, label, out, error)) < 0 ||
        (r = load_reconfig(kf, label, out, error)) < 0) {
        ndfs_config_clear(out);
        return r;
    }
    return 0;
}

/* Reads the whole file; -errno with *error (G_FILE_ERROR) set. */
static int read_file(const char *file, char **data, gsize *len, GError **error)
{
    g_autoptr(GByteArray) buf = NULL;
    struct stat st;
    int err;
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        goto fail;
    if (fstat(fd, &st) < 0)
        goto fail_close;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto fail_close;
    }
    buf = g_byte_array_new();
    uint8_t chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail_close;
        if (n == 0)
            break;
        if (buf->len + (gsize)n > CONFIG_MAX_SIZE) {
            errno = EFBIG;
            goto fail_close;
        }
        g_byte_array_append(buf, chunk, (guint)n);
    }
    close(fd);
    *len = buf->len;
    g_byte_array_append(buf, (const uint8_t *)"", 1);
    *data = (char *)g_byte_array_free(g_steal_pointer(&buf), FALSE);
    return 0;

fail_close:
    err = errno;
    close(fd);
    errno = err;
fail:
    err = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(err), "%s: %s", file, g_strerror(err));
    return -err;
}

int ndfs_config_load(const char *file, struct ndfs_config *out, GError **error)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    int r;

    memset(out, 0, sizeof(*out));
    if ((r = read_file(file, &data, &len, error)) < 0)
        return r;
    return ndfs_config_load_data(data, len, file, out, error);
}

void ndfs_config_clear(struct ndfs_config *c)
{
    if (!c)
        return;
    g_free(c->file);
    g_free(c->node_name);
    g_free(c->data_dir);
    g_free(c->control_socket);
    g_free(c->admin_group);
    g_free(c->listen);
    g_strfreev(c->listen_addrs);
    g_free(c->join);
    g_free(c->key_file);
    g_free(c->fence_command);
    memset(c, 0, sizeof(*c));
}
