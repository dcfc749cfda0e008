/* ndfsd.conf loading and validation. */
#define G_LOG_DOMAIN "ndfs-config"

#include "config.h"

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

struct known_group {
    const char *name;
    const char *const *keys;
};

static const char *const node_keys[] = {"name", "data-dir", "control-socket", "admin-group", NULL};
static const char *const cluster_keys[] = {"listen", "key-file", NULL};
static const char *const ccd_keys[] = {"snapshot-threshold", NULL};
static const struct known_group known_groups[] = {
    {"node", node_keys},
    {"cluster", cluster_keys},
    {"ccd", ccd_keys},
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

static int load_cluster(GKeyFile *kf, const char *label, struct ndfs_config *out, GError **error)
{
    out->listen = get_string(kf, "cluster", "listen");
    if (!out->listen)
        out->listen = g_strdup("");
    out->key_file = get_string(kf, "cluster", "key-file");
    if (!out->key_file)
        out->key_file = g_strdup("");
    if (out->key_file[0] != '\0' && !g_path_is_absolute(out->key_file))
        return key_error(error, G_KEY_FILE_ERROR_INVALID_VALUE, label, "cluster", "key-file",
                         "\"%s\" is not an absolute path", out->key_file);
    return 0;
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
        (r = load_ccd(kf, label, out, error)) < 0) {
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
    g_free(c->key_file);
    memset(c, 0, sizeof(*c));
}
