/* ndfsadm's "node" and "link" commands: the cluster's nodes as the CCD and
 * the membership see them, and the transport's links from the answering
 * node. */
#define G_LOG_DOMAIN "ndfs-adm"

#include <string.h>

#include "adm.h"
#include "config.h"
#include "parse.h"

/* A node.list entry, checked: name and role are borrowed from its dict,
 * which the caller keeps alive. */
struct node_row {
    const char *name;
    guint64 id;
    const char *role;
    gboolean up;
    gboolean leader;
    guint32 links_up;
    guint32 links_total;
    char **addresses; /* owned */
};

struct link_row {
    const char *peer;
    guint32 index;
    const char *local;
    const char *remote;
    gboolean up;
    guint32 rtt_us;
    guint64 bytes_sent;
    guint64 bytes_received;
};

static void node_row_free(gpointer p)
{
    struct node_row *n = p;
    g_strfreev(n->addresses);
    g_free(n);
}

static struct node_row *node_row_decode(GVariant *dict)
{
    struct node_row n = {0};
    g_autoptr(GVariant) addresses =
        g_variant_lookup_value(dict, "addresses", G_VARIANT_TYPE_STRING_ARRAY);
    if (!addresses || !g_variant_lookup(dict, "name", "&s", &n.name) ||
        !g_variant_lookup(dict, "id", "t", &n.id) ||
        !g_variant_lookup(dict, "role", "&s", &n.role) ||
        !g_variant_lookup(dict, "up", "b", &n.up) ||
        !g_variant_lookup(dict, "leader", "b", &n.leader) ||
        !g_variant_lookup(dict, "links-up", "u", &n.links_up) ||
        !g_variant_lookup(dict, "links-total", "u", &n.links_total))
        return NULL;
    n.addresses = g_variant_dup_strv(addresses, NULL);
    return g_memdup2(&n, sizeof n);
}

static bool link_row_decode(GVariant *dict, struct link_row *l)
{
    return g_variant_lookup(dict, "peer", "&s", &l->peer) &&
           g_variant_lookup(dict, "index", "u", &l->index) &&
           g_variant_lookup(dict, "local", "&s", &l->local) &&
           g_variant_lookup(dict, "remote", "&s", &l->remote) &&
           g_variant_lookup(dict, "up", "b", &l->up) &&
           g_variant_lookup(dict, "rtt-us", "u", &l->rtt_us) &&
           g_variant_lookup(dict, "bytes-sent", "t", &l->bytes_sent) &&
           g_variant_lookup(dict, "bytes-received", "t", &l->bytes_received);
}

static gint compare_nodes(gconstpointer a, gconstpointer b)
{
    const struct node_row *na = *(struct node_row *const *)a;
    const struct node_row *nb = *(struct node_row *const *)b;
    return strcmp(na->name, nb->name);
}

static gint compare_links(gconstpointer a, gconstpointer b)
{
    const struct link_row *la = a;
    const struct link_row *lb = b;
    int c = strcmp(la->peer, lb->peer);
    if (c)
        return c;
    return la->index < lb->index ? -1 : la->index > lb->index;
}

enum { NODE_COLUMNS = 6, LINK_COLUMNS = 8 };

/* The ADDRESSES cell: one per link index, "-" where the node has none (a
 * removed link) or for a node without any. */
static char *addresses_cell(char **addresses)
{
    if (addresses[0] == NULL)
        return g_strdup("-");
    GString *out = g_string_new(NULL);
    for (char **a = addresses; *a; a++)
        g_string_append_printf(out, "%s%s", a == addresses ? "" : ",", **a ? *a : "-");
    return g_string_free(out, FALSE);
}

static void print_nodes_table(GPtrArray *nodes)
{
    static const char *const header[NODE_COLUMNS] = {"NAME", "STATE",  "LINKS",
                                                     "ROLE", "LEADER", "ADDRESSES"};
    g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);
    for (int c = 0; c < NODE_COLUMNS; c++)
        g_ptr_array_add(cells, g_strdup(header[c]));
    for (guint i = 0; i < nodes->len; i++) {
        const struct node_row *n = nodes->pdata[i];
        g_ptr_array_add(cells, g_strdup(n->name));
        g_ptr_array_add(cells, g_strdup(n->up ? "up" : "down"));
        /* no links: the answering node itself, or a node without network */
        g_ptr_array_add(cells, n->links_total
                                   ? g_strdup_printf("%u/%u", n->links_up, n->links_total)
                                   : g_strdup("-"));
        g_ptr_array_add(cells, g_strdup(n->role));
        g_ptr_array_add(cells, g_strdup(n->leader ? "*" : ""));
        g_ptr_array_add(cells, addresses_cell(n->addresses));
    }
    adm_print_table(NODE_COLUMNS, cells);
}

static void json_add_node(JsonBuilder *b, const struct node_row *n)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, n->name);
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, (gint64)n->id);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, n->up ? "up" : "down");
    json_builder_set_member_name(b, "links_up");
    json_builder_add_int_value(b, n->links_up);
    json_builder_set_member_name(b, "links_total");
    json_builder_add_int_value(b, n->links_total);
    json_builder_set_member_name(b, "role");
    json_builder_add_string_value(b, n->role);
    json_builder_set_member_name(b, "leader");
    json_builder_add_boolean_value(b, n->leader);
    json_builder_set_member_name(b, "addresses");
    json_builder_begin_array(b);
    for (char **a = n->addresses; *a; a++)
        json_builder_add_string_value(b, *a);
    json_builder_end_array(b);
    json_builder_end_object(b);
}

static int print_node_list(const struct adm *adm, GVariant *result)
{
    g_autoptr(GVariant) list = g_variant_lookup_value(result, "nodes", G_VARIANT_TYPE("aa{sv}"));
    if (!list)
        return adm_malformed_answer("no nodes list");
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(node_row_free);
    g_autoptr(GPtrArray) dicts = g_ptr_array_new_with_free_func((GDestroyNotify)g_variant_unref);
    GVariantIter iter;
    g_variant_iter_init(&iter, list);
    for (GVariant *dict; (dict = g_variant_iter_next_value(&iter));) {
        g_ptr_array_add(dicts, dict);
        struct node_row *n = node_row_decode(dict);
        if (!n)
            return adm_malformed_answer("a node in the list is incomplete");
        g_ptr_array_add(nodes, n);
    }
    g_ptr_array_sort(nodes, compare_nodes);

    if (!adm->json) {
        print_nodes_table(nodes);
        return ADM_EXIT_OK;
    }
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "nodes");
    json_builder_begin_array(b);
    for (guint i = 0; i < nodes->len; i++)
        json_add_node(b, nodes->pdata[i]);
    json_builder_end_array(b);
    json_builder_end_object(b);
    adm_print_json(b);
    return ADM_EXIT_OK;
}

static char *format_rtt(guint32 rtt_us)
{
    if (rtt_us == 0)
        return g_strdup("-");
    if (rtt_us < 1000)
        return g_strdup_printf("%uus", rtt_us);
    return g_strdup_printf("%.1fms", rtt_us / 1000.0);
}

static void print_links_table(GArray *links)
{
    static const char *const header[LINK_COLUMNS] = {"PEER",  "LINK", "LOCAL", "REMOTE",
                                                     "STATE", "RTT",  "SENT",  "RECEIVED"};
    g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func(g_free);
    for (int c = 0; c < LINK_COLUMNS; c++)
        g_ptr_array_add(cells, g_strdup(header[c]));
    for (guint i = 0; i < links->len; i++) {
        const struct link_row *l = &g_array_index(links, struct link_row, i);
        g_ptr_array_add(cells, g_strdup(l->peer));
        g_ptr_array_add(cells, g_strdup_printf("%u", l->index));
        g_ptr_array_add(cells, g_strdup(l->local[0] ? l->local : "-"));
        g_ptr_array_add(cells, g_strdup(l->remote[0] ? l->remote : "-"));
        g_ptr_array_add(cells, g_strdup(l->up ? "up" : "down"));
        g_ptr_array_add(cells, format_rtt(l->rtt_us));
        g_ptr_array_add(cells, ndfs_format_size(l->bytes_sent));
        g_ptr_array_add(cells, ndfs_format_size(l->bytes_received));
    }
    adm_print_table(LINK_COLUMNS, cells);
}

static void json_add_link(JsonBuilder *b, const struct link_row *l)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "peer");
    json_builder_add_string_value(b, l->peer);
    json_builder_set_member_name(b, "index");
    json_builder_add_int_value(b, l->index);
    json_builder_set_member_name(b, "local");
    json_builder_add_string_value(b, l->local);
    json_builder_set_member_name(b, "remote");
    json_builder_add_string_value(b, l->remote);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, l->up ? "up" : "down");
    json_builder_set_member_name(b, "rtt_us");
    json_builder_add_int_value(b, l->rtt_us);
    json_builder_set_member_name(b, "bytes_sent");
    json_builder_add_int_value(b, (gint64)l->bytes_sent);
    json_builder_set_member_name(b, "bytes_received");
    json_builder_add_int_value(b, (gint64)l->bytes_received);
    json_builder_end_object(b);
}

static int print_link_list(const struct adm *adm, GVariant *result)
{
    g_autoptr(GVariant) list = g_variant_lookup_value(result, "links", G_VARIANT_TYPE("aa{sv}"));
    if (!list)
        return adm_malformed_answer("no links list");
    g_autoptr(GArray) links = g_array_new(FALSE, TRUE, sizeof(struct link_row));
    /* the rows borrow their strings from these */
    g_autoptr(GPtrArray) dicts = g_ptr_array_new_with_free_func((GDestroyNotify)g_variant_unref);
    GVariantIter iter;
    g_variant_iter_init(&iter, list);
    for (GVariant *dict; (dict = g_variant_iter_next_value(&iter));) {
        g_ptr_array_add(dicts, dict);
        struct link_row l = {0};
        if (!link_row_decode(dict, &l))
            return adm_malformed_answer("a link in the list is incomplete");
        g_array_append_val(links, l);
    }
    g_array_sort(links, compare_links);

    if (!adm->json) {
        print_links_table(links);
        return ADM_EXIT_OK;
    }
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "links");
    json_builder_begin_array(b);
    for (guint i = 0; i < links->len; i++)
        json_add_link(b, &g_array_index(links, struct link_row, i));
    json_builder_end_array(b);
    json_builder_end_object(b);
    adm_print_json(b);
    return ADM_EXIT_OK;
}

static int cmd_node_list(struct adm *adm, int argc, char **argv)
{
    int rc = adm_parse_args("node list", argc, argv, NULL, NULL, NULL);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    if ((rc = adm_call(adm, "node.list", NULL, &result)) != ADM_EXIT_OK)
        return rc;
    return print_node_list(adm, result);
}

/* The NAME argument of "node remove" and "node drain": a valid node name,
 * and the request's {name s}. */
static int node_name_arg(const char *cmd, int argc, char **argv, const char **name, GVariant **args)
{
    const char *const names[] = {"NAME", NULL};
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, name);
    if (rc != ADM_EXIT_OK)
        return rc;
    if (!ndfs_node_name_valid(*name))
        return adm_usage_error("%s: invalid node name \"%s\": use 1 to 32 of a-z 0-9 -", cmd,
                               *name);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(*name));
    *args = g_variant_builder_end(&b);
    return ADM_EXIT_OK;
}

static int cmd_node_remove(struct adm *adm, int argc, char **argv)
{
    const char *name = NULL;
    GVariant *args = NULL;
    int rc = node_name_arg("node remove", argc, argv, &name, &args);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    if ((rc = adm_call(adm, "node.remove", args, &result)) != ADM_EXIT_OK)
        return rc;
    if (adm->json) {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        json_builder_begin_object(jb);
        json_builder_set_member_name(jb, "removed");
        json_builder_add_string_value(jb, name);
        json_builder_end_object(jb);
        adm_print_json(jb);
    } else {
        printf("node \"%s\" removed\n", name);
    }
    return ADM_EXIT_OK;
}

static int cmd_node_drain(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "node drain";
    const char *name = NULL;
    GVariant *args = NULL;
    int rc = node_name_arg(cmd, argc, argv, &name, &args);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    g_autofree char *prefix = g_strdup_printf("%s %s", cmd, name);
    adm->error_prefix = prefix;
    rc = adm_call(adm, "node.drain", args, &result);
    adm->error_prefix = NULL;
    if (rc != ADM_EXIT_OK)
        return rc;
    return adm_print_drained(adm, name, result);
}

static int cmd_link_list(struct adm *adm, int argc, char **argv)
{
    int rc = adm_parse_args("link list", argc, argv, NULL, NULL, NULL);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    if ((rc = adm_call(adm, "link.list", NULL, &result)) != ADM_EXIT_OK)
        return rc;
    return print_link_list(adm, result);
}

/* link add / link remove NODE ADDR */
static int link_change(struct adm *adm, bool add, int argc, char **argv)
{
    const char *cmd = add ? "link add" : "link remove";
    const char *const names[] = {"NODE", "ADDR", NULL};
    const char *values[2] = {NULL, NULL};
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, values);
    if (rc != ADM_EXIT_OK)
        return rc;
    if (!ndfs_node_name_valid(values[0]))
        return adm_usage_error("%s: invalid node name \"%s\": use 1 to 32 of a-z 0-9 -", cmd,
                               values[0]);
    if (!ndfs_config_address_valid(values[1]))
        return adm_usage_error("%s: \"%s\" is not an IPv4 address and port (A.B.C.D:PORT)", cmd,
                               values[1]);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "node", g_variant_new_string(values[0]));
    g_variant_builder_add(&b, "{sv}", "address", g_variant_new_string(values[1]));
    g_autoptr(GVariant) result = NULL;
    g_autofree char *prefix = g_strdup_printf("%s %s %s", cmd, values[0], values[1]);
    adm->error_prefix = prefix;
    rc = adm_call(adm, add ? "link.add" : "link.remove", g_variant_builder_end(&b), &result);
    adm->error_prefix = NULL;
    if (rc != ADM_EXIT_OK)
        return rc;
    guint32 index = 0;
    guint64 paused_ms = 0;
    if (!g_variant_lookup(result, "index", "u", &index) ||
        !g_variant_lookup(result, "paused-ms", "t", &paused_ms))
        return adm_malformed_answer("no index or paused-ms");
    if (adm->json) {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        json_builder_begin_object(jb);
        json_builder_set_member_name(jb, "node");
        json_builder_add_string_value(jb, values[0]);
        json_builder_set_member_name(jb, "address");
        json_builder_add_string_value(jb, values[1]);
        json_builder_set_member_name(jb, "index");
        json_builder_add_int_value(jb, index);
        json_builder_set_member_name(jb, add ? "added" : "removed");
        json_builder_add_boolean_value(jb, TRUE);
        json_builder_set_member_name(jb, "paused_ms");
        json_builder_add_int_value(jb, (gint64)MIN(paused_ms, (guint64)G_MAXINT64));
        json_builder_end_object(jb);
        adm_print_json(jb);
    } else {
        printf("link %u of node %s: %s %s\n", index, values[0], values[1],
               add ? "added" : "removed");
        printf("I/O paused %" G_GUINT64_FORMAT " ms\n", paused_ms);
    }
    return ADM_EXIT_OK;
}

static int cmd_link_add(struct adm *adm, int argc, char **argv)
{
    return link_change(adm, true, argc, argv);
}

static int cmd_link_remove(struct adm *adm, int argc, char **argv)
{
    return link_change(adm, false, argc, argv);
}

struct subcommand {
    const char *name;
    int (*run)(struct adm *adm, int argc, char **argv);
};

static int dispatch(struct adm *adm, const char *group, const struct subcommand *subs,
                    size_t n_subs, const char *choices, int argc, char **argv)
{
    int first = 0;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first == argc)
        return adm_usage_error("%s: missing subcommand (%s)", group, choices);
    for (size_t i = 0; i < n_subs; i++) {
        if (strcmp(argv[first], subs[i].name) == 0)
            return subs[i].run(adm, argc - first - 1, argv + first + 1);
    }
    return adm_usage_error("%s: unknown subcommand '%s'", group, argv[first]);
}

int adm_cmd_node(struct adm *adm, int argc, char **argv)
{
    static const struct subcommand subs[] = {
        {"list", cmd_node_list}, {"remove", cmd_node_remove}, {"drain", cmd_node_drain}};
    return dispatch(adm, "node", subs, G_N_ELEMENTS(subs), "list, remove or drain", argc, argv);
}

int adm_cmd_link(struct adm *adm, int argc, char **argv)
{
    static const struct subcommand subs[] = {
        {"list", cmd_link_list}, {"add", cmd_link_add}, {"remove", cmd_link_remove}};
    return dispatch(adm, "link", subs, G_N_ELEMENTS(subs), "list, add or remove", argc, argv);
}
