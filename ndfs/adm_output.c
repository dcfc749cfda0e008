/* ndfsadm's output: "key: value" lines and aligned columns for people, one
 * JSON document (json-glib) for scripts. */
#define G_LOG_DOMAIN "ndfs-adm"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "adm.h"
#include "parse.h"

int adm_malformed_answer(const char *what)
{
    return adm_error("malformed answer from ndfsd: %s", what);
}

void adm_print_json(JsonBuilder *b)
{
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_pretty(gen, TRUE);
    json_generator_set_indent(gen, 2);
    json_generator_set_root(gen, root);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    fputs(text, stdout);
    fputc('\n', stdout);
}

/* Lines of "key:" padded to the longest key, then the value. */
struct kv_lines {
    GPtrArray *keys;
    GPtrArray *values;
};

static void kv_add(struct kv_lines *kv, const char *key, char *value_owned)
{
    g_ptr_array_add(kv->keys, (char *)key);
    g_ptr_array_add(kv->values, value_owned);
}

static void kv_print_and_clear(struct kv_lines *kv)
{
    size_t width = 0;
    for (guint i = 0; i < kv->keys->len; i++)
        width = MAX(width, strlen(kv->keys->pdata[i]) + 1);
    for (guint i = 0; i < kv->keys->len; i++) {
        g_autofree char *key = g_strconcat(kv->keys->pdata[i], ":", NULL);
        printf("%-*s %s\n", (int)width, key, (const char *)kv->values->pdata[i]);
    }
    g_ptr_array_unref(kv->keys);
    g_ptr_array_unref(kv->values);
}

static char *format_mode(uint32_t mode)
{
    return g_strdup_printf("%04o", mode);
}

static char *format_node_path(const char *node, const char *path)
{
    return g_strconcat(node, ":", path, NULL);
}

/* ISO 8601 in UTC, to the second. */
static char *format_mtime(uint64_t mtime_ns)
{
    time_t secs = (time_t)(mtime_ns / 1000000000u);
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&secs, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return g_strdup("?");
    return g_strdup(buf);
}

/* The I/O state of a vdisk on the answering node (vdisk show only); an
 * ndfsd older than the HA release does not send it: known is false. */
struct io_state {
    bool known;
    uint32_t pending;
    uint32_t in_flight;
    const char *blocked; /* "" when nothing waits */
    uint64_t waiting_ms;
};

static void io_state_lookup(GVariant *result, struct io_state *io)
{
    *io = (struct io_state){.blocked = ""};
    io->known = g_variant_lookup(result, "pending", "u", &io->pending) &&
                g_variant_lookup(result, "in-flight", "u", &io->in_flight) &&
                g_variant_lookup(result, "blocked", "&s", &io->blocked) &&
                g_variant_lookup(result, "waiting-ms", "t", &io->waiting_ms);
    if (!io->known)
        *io = (struct io_state){.blocked = ""};
}

/* The nodes whose path is marked failed, in the dict's order (primary first). */
static void failed_nodes(const struct ndfs_vdisk *v, const char *out[2])
{
    int n = 0;
    out[0] = out[1] = NULL;
    if (v->primary_failed)
        out[n++] = v->primary_node;
    if (v->secondary_failed && v->secondary_node)
        out[n++] = v->secondary_node;
}

/* paused_ms: the pause of a change under the reconfiguration protocol (a
 * move, failback, create, resize, chmod, chown), NULL: none. */
static void json_add_vdisk(JsonBuilder *b, const struct ndfs_vdisk *v, bool is_show,
                           uint32_t open_count, const struct io_state *io,
                           const uint64_t *paused_ms)
{
    g_autofree char *mode = format_mode(v->mode);
    g_autofree char *primary = format_node_path(v->primary_node, v->primary_path);
    g_autofree char *mtime = format_mtime(v->mtime_ns);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, v->name);
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, (gint64)v->id);
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, (gint64)v->size);
    json_builder_set_member_name(b, "owner");
    json_builder_add_string_value(b, v->owner);
    json_builder_set_member_name(b, "group");
    json_builder_add_string_value(b, v->group);
    json_builder_set_member_name(b, "mode");
    json_builder_add_string_value(b, mode);
    json_builder_set_member_name(b, "primary");
    json_builder_add_string_value(b, primary);
    json_builder_set_member_name(b, "secondary");
    if (v->secondary_node) {
        g_autofree char *secondary = format_node_path(v->secondary_node, v->secondary_path);
        json_builder_add_string_value(b, secondary);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "master");
    json_builder_add_string_value(b, ndfs_vdisk_master_node(v));
    json_builder_set_member_name(b, "failed");
    json_builder_begin_array(b);
    const char *failed[2];
    failed_nodes(v, failed);
    for (int i = 0; i < 2 && failed[i]; i++)
        json_builder_add_string_value(b, failed[i]);
    json_builder_end_array(b);
    json_builder_set_member_name(b, "mtime");
    json_builder_add_string_value(b, mtime);
    json_builder_set_member_name(b, "version");
    json_builder_add_int_value(b, (gint64)v->version);
    if (is_show) {
        json_builder_set_member_name(b, "open_count");
        json_builder_add_int_value(b, open_count);
        /* null: the answering ndfsd does not report it (older than HA) */
        json_builder_set_member_name(b, "pending");
        if (io->known)
            json_builder_add_int_value(b, io->pending);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "in_flight");
        if (io->known)
            json_builder_add_int_value(b, io->in_flight);
        else
            json_builder_add_null_value(b);
        /* null when I/O is not blocked */
        json_builder_set_member_name(b, "blocked");
        if (io->blocked[0])
            json_builder_add_string_value(b, io->blocked);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "waiting_ms");
        if (io->known)
            json_builder_add_int_value(b, (gint64)MIN(io->waiting_ms, (uint64_t)G_MAXINT64));
        else
            json_builder_add_null_value(b);
    }
    if (paused_ms != NULL) {
        json_builder_set_member_name(b, "paused_ms");
        json_builder_add_int_value(b, (gint64)MIN(*paused_ms, (uint64_t)G_MAXINT64));
    }
    json_builder_end_object(b);
}

/* "n1:/dev/sdb" of each failed path, or "-". */
static char *format_failed(const struct ndfs_vdisk *v)
{
    if (!v->primary_failed && !(v->secondary_failed && v->secondary_node))
        return g_strdup("-");
    GString *out = g_string_new(NULL);
    if (v->primary_failed)
        g_string_append_printf(out, "%s:%s", v->primary_node, v->primary_path);
    if (v->secondary_failed && v->secondary_node)
        g_string_append_printf(out, "%s%s:%s", out->len ? ", " : "", v->secondary_node,
                               v->secondary_path);
    return g_string_free(out, FALSE);
}

/* The master's node, and which path it is when there are two. */
static char *format_master(const struct ndfs_vdisk *v)
{
    if (!v->secondary_node)
        return g_strdup(v->primary_node);
    return g_strdup_printf("%s (%s)", ndfs_vdisk_master_node(v),
                           v->on_secondary ? "secondary" : "primary");
}

/* A wait in seconds for people: "0.4s", "12s", "3m20s". */
static char *format_wait(uint64_t ms)
{
    if (ms < 10000)
        return g_strdup_printf("%.1fs", (double)ms / 1000.0);
    uint64_t secs = ms / 1000;
    if (secs < 600)
        return g_strdup_printf("%" G_GUINT64_FORMAT "s", secs);
    if (secs < 2 * 3600)
        return g_strdup_printf("%" G_GUINT64_FORMAT "m%02" G_GUINT64_FORMAT "s", secs / 60,
                               secs % 60);
    return g_strdup_printf("%" G_GUINT64_FORMAT "h%02" G_GUINT64_FORMAT "m", secs / 3600,
                           secs / 60 % 60);
}

static int print_vdisk(const struct adm *adm, GVariant *result, bool is_show,
                       const uint64_t *paused_ms)
{
    struct ndfs_vdisk v;
    uint32_t open_count = 0;
    struct io_state io;
    if (ndfs_vdisk_from_dict(result, &v) < 0)
        return adm_malformed_answer("not a vdisk");
    if (is_show && !g_variant_lookup(result, "open-count", "u", &open_count)) {
        ndfs_vdisk_clear(&v);
        return adm_malformed_answer("no open-count");
    }
    io_state_lookup(result, &io);

    if (adm->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_add_vdisk(b, &v, is_show, open_count, &io, paused_ms);
        adm_print_json(b);
        ndfs_vdisk_clear(&v);
        return ADM_EXIT_OK;
    }

    g_autofree char *size = ndfs_format_size(v.size);
    struct kv_lines kv = {g_ptr_array_new(), g_ptr_array_new_with_free_func(g_free)};
    kv_add(&kv, "name", g_strdup(v.name));
    kv_add(&kv, "id", g_strdup_printf("%" G_GUINT64_FORMAT, v.id));
    kv_add(&kv, "size", g_strdup_printf("%s (%" G_GUINT64_FORMAT " bytes)", size, v.size));
    kv_add(&kv, "owner", g_strdup(v.owner));
    kv_add(&kv, "group", g_strdup(v.group));
    kv_add(&kv, "mode", format_mode(v.mode));
    kv_add(&kv, "primary", format_node_path(v.primary_node, v.primary_path));
    kv_add(&kv, "secondary",
           v.secondary_node ? format_node_path(v.secondary_node, v.secondary_path) : g_strdup("-"));
    kv_add(&kv, "master", format_master(&v));
    kv_add(&kv, "failed paths", format_failed(&v));
    kv_add(&kv, "mtime", format_mtime(v.mtime_ns));
    kv_add(&kv, "version", g_strdup_printf("%" G_GUINT64_FORMAT, v.version));
    if (is_show) {
        kv_add(&kv, "open mounts", g_strdup_printf("%u", open_count));
        kv_add(&kv, "pending", io.known ? g_strdup_printf("%u", io.pending) : g_strdup("-"));
        kv_add(&kv, "in flight", io.known ? g_strdup_printf("%u", io.in_flight) : g_strdup("-"));
    }
    kv_print_and_clear(&kv);
    if (is_show && io.blocked[0]) {
        g_autofree char *wait = format_wait(io.waiting_ms);
        printf("I/O blocked: %s (%u request%s waiting, oldest %s)\n", io.blocked, io.pending,
               io.pending == 1 ? "" : "s", wait);
    }
    if (paused_ms != NULL)
        printf("I/O paused %" G_GUINT64_FORMAT " ms\n", (guint64)*paused_ms);
    ndfs_vdisk_clear(&v);
    return ADM_EXIT_OK;
}

int adm_print_vdisk(const struct adm *adm, GVariant *result, bool is_show)
{
    return print_vdisk(adm, result, is_show, NULL);
}

int adm_print_remapped(const struct adm *adm, GVariant *result)
{
    guint64 paused_ms = 0;
    if (!g_variant_lookup(result, "paused-ms", "t", &paused_ms))
        return adm_malformed_answer("no paused-ms");
    uint64_t paused = paused_ms;
    return print_vdisk(adm, result, false, &paused);
}

int adm_print_drained(const struct adm *adm, const char *node, GVariant *result)
{
    g_autofree const char **moved = NULL;
    guint64 paused_ms = 0;
    if (!g_variant_lookup(result, "moved", "^a&s", &moved))
        return adm_malformed_answer("no moved");
    if (!g_variant_lookup(result, "paused-ms", "t", &paused_ms))
        return adm_malformed_answer("no paused-ms");
    if (adm->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "node");
        json_builder_add_string_value(b, node);
        json_builder_set_member_name(b, "moved");
        json_builder_begin_array(b);
        for (const char **m = moved; *m != NULL; m++)
            json_builder_add_string_value(b, *m);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "paused_ms");
        json_builder_add_int_value(b, (gint64)MIN(paused_ms, (guint64)G_MAXINT64));
        json_builder_end_object(b);
        adm_print_json(b);
        return ADM_EXIT_OK;
    }
    if (moved[0] == NULL) {
        printf("node %s drained: it masters no vdisk\n", node);
        return ADM_EXIT_OK;
    }
    g_autofree char *list = g_strjoinv(", ", (char **)moved);
    printf("node %s drained: moved %s\n", node, list);
    printf("I/O paused %" G_GUINT64_FORMAT " ms\n", paused_ms);
    return ADM_EXIT_OK;
}

static gint compare_vdisk_names(gconstpointer a, gconstpointer b)
{
    const struct ndfs_vdisk *va = *(struct ndfs_vdisk *const *)a;
    const struct ndfs_vdisk *vb = *(struct ndfs_vdisk *const *)b;
    return strcmp(va->name, vb->name);
}

static void free_vdisk(gpointer p)
{
    ndfs_vdisk_clear(p);
    g_free(p);
}

void adm_print_table(int n_columns, GPtrArray *cells)
{
    g_autofree size_t *width = g_new0(size_t, (gsize)n_columns);
    for (guint i = 0; i < cells->len; i++) {
        size_t *w = &width[i % (guint)n_columns];
        *w = MAX(*w, strlen(cells->pdata[i]));
    }
    for (guint i = 0; i < cells->len; i++) {
        int c = (int)(i % (guint)n_columns);
        const char *cell = cells->pdata[i];
        if (c == n_columns - 1)
            printf("%s\n", cell);
        else
            printf("%-*s  ", (int)width[c], cell);
    }
}

enum { LIST_COLUMNS = 8 };

static void print_list_table(GPtrArray *vdisks)
{
    static const char *const header[LIST_COLUMNS] = {"NAME", "SIZE",    "OWNER",     "GROUP",
                                                     "MODE", "PRIMARY", "SECONDARY", "MASTER"};
    g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);
    for (int c = 0; c < LIST_COLUMNS; c++)
        g_ptr_array_add(cells, g_strdup(header[c]));
    for (guint i = 0; i < vdisks->len; i++) {
        const struct ndfs_vdisk *v = vdisks->pdata[i];
        g_ptr_array_add(cells, g_strdup(v->name));
        g_ptr_array_add(cells, ndfs_format_size(v->size));
        g_ptr_array_add(cells, g_strdup(v->owner));
        g_ptr_array_add(cells, g_strdup(v->group));
        g_ptr_array_add(cells, format_mode(v->mode));
        g_ptr_array_add(cells, format_node_path(v->primary_node, v->primary_path));
        g_ptr_array_add(cells, v->secondary_node
                                   ? format_node_path(v->secondary_node, v->secondary_path)
                                   : g_strdup("-"));
        g_ptr_array_add(cells, g_strdup(ndfs_vdisk_master_node(v)));
    }
    adm_print_table(LIST_COLUMNS, cells);
}

int adm_print_vdisk_list(const struct adm *adm, GVariant *result)
{
    g_autoptr(GVariant) list = g_variant_lookup_value(result, "vdisks", G_VARIANT_TYPE("aa{sv}"));
    if (!list)
        return adm_malformed_answer("no vdisks list");

    g_autoptr(GPtrArray) vdisks = g_ptr_array_new_with_free_func(free_vdisk);
    GVariantIter iter;
    GVariant *dict;
    g_variant_iter_init(&iter, list);
    while ((dict = g_variant_iter_next_value(&iter))) {
        struct ndfs_vdisk *v = g_new0(struct ndfs_vdisk, 1);
        int rc = ndfs_vdisk_from_dict(dict, v);
        g_variant_unref(dict);
        if (rc < 0) {
            g_free(v);
            return adm_malformed_answer("a vdisk in the list is not a vdisk");
        }
        g_ptr_array_add(vdisks, v);
    }
    g_ptr_array_sort(vdisks, compare_vdisk_names);

    if (!adm->json) {
        print_list_table(vdisks);
        return ADM_EXIT_OK;
    }
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "vdisks");
    json_builder_begin_array(b);
    for (guint i = 0; i < vdisks->len; i++)
        json_add_vdisk(b, vdisks->pdata[i], false, 0, NULL, NULL);
    json_builder_end_array(b);
    json_builder_end_object(b);
    adm_print_json(b);
    return ADM_EXIT_OK;
}

int adm_print_status(const struct adm *adm, GVariant *result)
{
    const char *node = NULL, *cluster_id = NULL, *leader = NULL;
    guint64 epoch = 0, vdisks = 0;
    g_autoptr(GVariant) members =
        g_variant_lookup_value(result, "members", G_VARIANT_TYPE_STRING_ARRAY);
    if (!g_variant_lookup(result, "node", "&s", &node) ||
        !g_variant_lookup(result, "cluster-id", "&s", &cluster_id) ||
        !g_variant_lookup(result, "epoch", "t", &epoch) ||
        !g_variant_lookup(result, "leader", "&s", &leader) ||
        !g_variant_lookup(result, "vdisks", "t", &vdisks) || !members)
        return adm_malformed_answer("incomplete status");
    g_autofree const char **member_names = g_variant_get_strv(members, NULL);
    /* an ndfsd older than the cluster release does not say: null / "-" */
    gboolean quorum = FALSE;
    bool quorum_known = g_variant_lookup(result, "quorum", "b", &quorum);
    /* only a node whose master runs says */
    guint64 jobs_aio = 0, jobs_threads = 0;
    bool jobs_known = g_variant_lookup(result, "disk-jobs-aio", "t", &jobs_aio) &&
                      g_variant_lookup(result, "disk-jobs-threads", "t", &jobs_threads);
    guint64 reads_waited = 0;
    bool waited_known = g_variant_lookup(result, "disk-reads-waited", "t", &reads_waited);

    if (adm->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "cluster_id");
        json_builder_add_string_value(b, cluster_id);
        json_builder_set_member_name(b, "node");
        json_builder_add_string_value(b, node);
        json_builder_set_member_name(b, "epoch");
        json_builder_add_int_value(b, (gint64)epoch);
        /* no leader known (an election is running): null */
        json_builder_set_member_name(b, "leader");
        if (leader[0])
            json_builder_add_string_value(b, leader);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "members");
        json_builder_begin_array(b);
        for (const char **m = member_names; *m; m++)
            json_builder_add_string_value(b, *m);
        json_builder_end_array(b);
        json_builder_set_member_name(b, "quorum");
        if (quorum_known)
            json_builder_add_boolean_value(b, quorum);
        else
            json_builder_add_null_value(b);
        json_builder_set_member_name(b, "vdisks");
        json_builder_add_int_value(b, (gint64)vdisks);
        json_builder_set_member_name(b, "disk_jobs");
        if (jobs_known) {
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "aio");
            json_builder_add_int_value(b, (gint64)jobs_aio);
            json_builder_set_member_name(b, "threads");
            json_builder_add_int_value(b, (gint64)jobs_threads);
            if (waited_known) {
                json_builder_set_member_name(b, "reads_waited");
                json_builder_add_int_value(b, (gint64)reads_waited);
            }
            json_builder_end_object(b);
        } else {
            json_builder_add_null_value(b);
        }
        json_builder_end_object(b);
        adm_print_json(b);
        return ADM_EXIT_OK;
    }

    struct kv_lines kv = {g_ptr_array_new(), g_ptr_array_new_with_free_func(g_free)};
    kv_add(&kv, "cluster id", g_strdup(cluster_id));
    kv_add(&kv, "node", g_strdup(node));
    kv_add(&kv, "epoch", g_strdup_printf("%" G_GUINT64_FORMAT, epoch));
    kv_add(&kv, "leader", g_strdup(leader[0] ? leader : "-"));
    kv_add(&kv, "members",
           member_names[0] ? g_strjoinv(" ", (char **)member_names) : g_strdup("-"));
    kv_add(&kv, "quorum",
           g_strdup(!quorum_known ? "-"
                    : quorum      ? "yes"
                                  : "no (changes are refused)"));
    kv_add(&kv, "vdisks", g_strdup_printf("%" G_GUINT64_FORMAT, vdisks));
    if (jobs_known)
        kv_add(&kv, "disk jobs",
               g_strdup_printf("%" G_GUINT64_FORMAT " through AIO, %" G_GUINT64_FORMAT
                               " on threads",
                               jobs_aio, jobs_threads));
    if (jobs_known && waited_known)
        kv_add(&kv, "large reads waited", g_strdup_printf("%" G_GUINT64_FORMAT, reads_waited));
    kv_print_and_clear(&kv);
    return ADM_EXIT_OK;
}

int adm_print_removed(const struct adm *adm, const char *name)
{
    if (adm->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "removed");
        json_builder_add_string_value(b, name);
        json_builder_end_object(b);
        adm_print_json(b);
    } else {
        printf("vdisk \"%s\" removed\n", name);
    }
    return ADM_EXIT_OK;
}
