/* ndfsadm's "vdisk" commands: every value is checked here, before any
 * connection, so that a typo is a usage error and never reaches ndfsd. */
#define G_LOG_DOMAIN "ndfs-adm"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#include "adm.h"
#include "parse.h"

static int check_name(const char *command, const char *name)
{
    if (!ndfs_vdisk_name_valid(name))
        return adm_usage_error("%s: invalid vdisk name \"%s\": use 1 to 64 of A-Z a-z 0-9 . _ -, "
                               "not \".\" or \"..\"",
                               command, name);
    return ADM_EXIT_OK;
}

static int check_size(const char *command, const char *text, uint64_t *size)
{
    int rc = ndfs_parse_size(text, size);
    if (rc == -ERANGE)
        return adm_usage_error("%s: size \"%s\" is too large", command, text);
    if (rc < 0)
        return adm_usage_error("%s: invalid size \"%s\": use a number of bytes with an optional "
                               "K, M, G, T or P suffix, e.g. 10G",
                               command, text);
    if (*size == 0 || *size % 512 != 0)
        return adm_usage_error("%s: invalid size \"%s\": it must be a positive multiple of 512",
                               command, text);
    return ADM_EXIT_OK;
}

static int check_mode(const char *command, const char *text, uint32_t *mode)
{
    if (ndfs_parse_mode(text, mode) < 0)
        return adm_usage_error("%s: invalid mode \"%s\": use octal permission bits, e.g. 0660",
                               command, text);
    return ADM_EXIT_OK;
}

static int check_node_path(const char *command, const char *option, const char *text)
{
    g_autofree char *node = NULL;
    g_autofree char *path = NULL;
    if (ndfs_parse_node_path(text, &node, &path) < 0)
        return adm_usage_error("%s: invalid %s \"%s\": use NODE:PATH, a node name "
                               "([a-z0-9-]{1,32}) and an absolute path",
                               command, option, text);
    return ADM_EXIT_OK;
}

static int check_account(const char *command, const char *what, const char *name)
{
    if (!ndfs_account_name_valid(name))
        return adm_usage_error("%s: invalid %s name \"%s\": use 1 to 32 of A-Z a-z 0-9 . _ -, "
                               "not starting with -",
                               command, what, name);
    return ADM_EXIT_OK;
}

/* Calls a command that changes a vdisk (under the reconfiguration
 * protocol) and prints the vdisk it answers with, then "I/O paused N ms"
 * (--json: paused_ms) when the answer says (an older ndfsd does not). */
static int call_and_print_changed(struct adm *adm, const char *command, GVariant *args)
{
    g_autoptr(GVariant) result = NULL;
    int rc = adm_call(adm, command, args, &result);
    if (rc != ADM_EXIT_OK)
        return rc;
    guint64 paused_ms = 0;
    if (result != NULL && g_variant_is_of_type(result, G_VARIANT_TYPE_VARDICT) &&
        g_variant_lookup(result, "paused-ms", "t", &paused_ms))
        return adm_print_remapped(adm, result);
    return adm_print_vdisk(adm, result, false);
}

/* Calls command and prints the vdisk it answers with. */
static int call_and_print_vdisk(struct adm *adm, const char *command, GVariant *args, bool is_show)
{
    g_autoptr(GVariant) result = NULL;
    int rc = adm_call(adm, command, args, &result);
    if (rc != ADM_EXIT_OK)
        return rc;
    return adm_print_vdisk(adm, result, is_show);
}

static int cmd_create(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk create";
    const char *size_text = NULL, *primary = NULL, *secondary = NULL;
    const char *owner = NULL, *group = NULL, *mode_text = NULL;
    const struct adm_option options[] = {
        {"size", &size_text, NULL}, {"primary", &primary, NULL}, {"secondary", &secondary, NULL},
        {"owner", &owner, NULL},    {"group", &group, NULL},     {"mode", &mode_text, NULL},
        {NULL, NULL, NULL},
    };
    const char *const names[] = {"NAME", NULL};
    const char *name = NULL;
    int rc = adm_parse_args(cmd, argc, argv, options, names, &name);
    if (rc != ADM_EXIT_OK)
        return rc;

    uint64_t size = 0;
    uint32_t mode = 0;
    if ((rc = check_name(cmd, name)) != ADM_EXIT_OK)
        return rc;
    if (!size_text)
        return adm_usage_error("%s: --size SIZE is required", cmd);
    if ((rc = check_size(cmd, size_text, &size)) != ADM_EXIT_OK)
        return rc;
    if (!primary)
        return adm_usage_error("%s: --primary NODE:PATH is required", cmd);
    if ((rc = check_node_path(cmd, "--primary", primary)) != ADM_EXIT_OK)
        return rc;
    if (secondary && (rc = check_node_path(cmd, "--secondary", secondary)) != ADM_EXIT_OK)
        return rc;
    if (owner && (rc = check_account(cmd, "owner", owner)) != ADM_EXIT_OK)
        return rc;
    if (group && (rc = check_account(cmd, "group", group)) != ADM_EXIT_OK)
        return rc;
    if (mode_text && (rc = check_mode(cmd, mode_text, &mode)) != ADM_EXIT_OK)
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(name));
    g_variant_builder_add(&b, "{sv}", "size", g_variant_new_uint64(size));
    g_variant_builder_add(&b, "{sv}", "primary", g_variant_new_string(primary));
    if (secondary)
        g_variant_builder_add(&b, "{sv}", "secondary", g_variant_new_string(secondary));
    if (owner)
        g_variant_builder_add(&b, "{sv}", "owner", g_variant_new_string(owner));
    if (group)
        g_variant_builder_add(&b, "{sv}", "group", g_variant_new_string(group));
    if (mode_text)
        g_variant_builder_add(&b, "{sv}", "mode", g_variant_new_uint32(mode));
    return call_and_print_changed(adm, "vdisk.create", g_variant_builder_end(&b));
}

static int cmd_list(struct adm *adm, int argc, char **argv)
{
    int rc = adm_parse_args("vdisk list", argc, argv, NULL, NULL, NULL);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    rc = adm_call(adm, "vdisk.list", NULL, &result);
    if (rc != ADM_EXIT_OK)
        return rc;
    return adm_print_vdisk_list(adm, result);
}

static GVariant *name_args(const char *name)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(name));
    return g_variant_builder_end(&b);
}

static int cmd_show(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk show";
    const char *const names[] = {"NAME", NULL};
    const char *name = NULL;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, &name);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, name)) != ADM_EXIT_OK)
        return rc;
    return call_and_print_vdisk(adm, "vdisk.show", name_args(name), true);
}

static int cmd_remove(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk remove";
    bool force = false;
    const struct adm_option options[] = {{"force", NULL, &force}, {NULL, NULL, NULL}};
    const char *const names[] = {"NAME", NULL};
    const char *name = NULL;
    int rc = adm_parse_args(cmd, argc, argv, options, names, &name);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, name)) != ADM_EXIT_OK)
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(name));
    if (force)
        g_variant_builder_add(&b, "{sv}", "force", g_variant_new_boolean(true));
    g_autoptr(GVariant) result = NULL;
    rc = adm_call(adm, "vdisk.remove", g_variant_builder_end(&b), &result);
    if (rc != ADM_EXIT_OK)
        return rc;
    /* the pause, when the answer says (an older ndfsd does not) */
    guint64 paused_ms = 0;
    if (result == NULL || !g_variant_is_of_type(result, G_VARIANT_TYPE_VARDICT) ||
        !g_variant_lookup(result, "paused-ms", "t", &paused_ms))
        return adm_print_removed(adm, name);
    if (adm->json) {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        json_builder_begin_object(jb);
        json_builder_set_member_name(jb, "removed");
        json_builder_add_string_value(jb, name);
        json_builder_set_member_name(jb, "paused_ms");
        json_builder_add_int_value(jb, (gint64)MIN(paused_ms, (guint64)G_MAXINT64));
        json_builder_end_object(jb);
        adm_print_json(jb);
        return ADM_EXIT_OK;
    }
    rc = adm_print_removed(adm, name);
    printf("I/O paused %" G_GUINT64_FORMAT " ms\n", paused_ms);
    return rc;
}

static int cmd_chmod(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk chmod";
    const char *const names[] = {"NAME", "MODE", NULL};
    const char *positional[2] = {NULL, NULL};
    uint32_t mode = 0;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, positional);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, positional[0])) != ADM_EXIT_OK ||
        (rc = check_mode(cmd, positional[1], &mode)) != ADM_EXIT_OK)
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(positional[0]));
    g_variant_builder_add(&b, "{sv}", "mode", g_variant_new_uint32(mode));
    return call_and_print_changed(adm, "vdisk.chmod", g_variant_builder_end(&b));
}

/* "USER", "USER:GROUP" or ":GROUP"; *owner and *group are g_malloc'd or NULL. */
static int parse_owner_group(const char *cmd, const char *text, char **owner, char **group)
{
    const char *colon = strchr(text, ':');
    g_autofree char *user = colon ? g_strndup(text, (gsize)(colon - text)) : g_strdup(text);
    g_autofree char *grp = colon ? g_strdup(colon + 1) : NULL;
    int rc;

    if (!user[0] && !grp)
        return adm_usage_error("%s: missing USER[:GROUP]", cmd);
    if (grp && !grp[0])
        return adm_usage_error("%s: missing group after ':' in \"%s\"", cmd, text);
    if (user[0] && (rc = check_account(cmd, "user", user)) != ADM_EXIT_OK)
        return rc;
    if (grp && (rc = check_account(cmd, "group", grp)) != ADM_EXIT_OK)
        return rc;
    *owner = user[0] ? g_steal_pointer(&user) : NULL;
    *group = g_steal_pointer(&grp);
    return ADM_EXIT_OK;
}

static int cmd_chown(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk chown";
    const char *const names[] = {"NAME", "USER[:GROUP]", NULL};
    const char *positional[2] = {NULL, NULL};
    g_autofree char *owner = NULL;
    g_autofree char *group = NULL;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, positional);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, positional[0])) != ADM_EXIT_OK ||
        (rc = parse_owner_group(cmd, positional[1], &owner, &group)) != ADM_EXIT_OK)
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(positional[0]));
    if (owner)
        g_variant_builder_add(&b, "{sv}", "owner", g_variant_new_string(owner));
    if (group)
        g_variant_builder_add(&b, "{sv}", "group", g_variant_new_string(group));
    return call_and_print_changed(adm, "vdisk.chown", g_variant_builder_end(&b));
}

static int cmd_resize(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk resize";
    const char *const names[] = {"NAME", "SIZE", NULL};
    const char *positional[2] = {NULL, NULL};
    uint64_t size = 0;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, positional);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, positional[0])) != ADM_EXIT_OK ||
        (rc = check_size(cmd, positional[1], &size)) != ADM_EXIT_OK)
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(positional[0]));
    g_variant_builder_add(&b, "{sv}", "size", g_variant_new_uint64(size));
    return call_and_print_changed(adm, "vdisk.resize", g_variant_builder_end(&b));
}

/* "vdisk fail-path|restore-path NAME NODE". */
static int cmd_path(struct adm *adm, const char *cmd, const char *command, int argc, char **argv)
{
    const char *const names[] = {"NAME", "NODE", NULL};
    const char *positional[2] = {NULL, NULL};
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, positional);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, positional[0])) != ADM_EXIT_OK)
        return rc;
    if (!ndfs_node_name_valid(positional[1]))
        return adm_usage_error("%s: invalid node name \"%s\": use 1 to 32 of a-z 0-9 -", cmd,
                               positional[1]);

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(positional[0]));
    g_variant_builder_add(&b, "{sv}", "node", g_variant_new_string(positional[1]));
    return call_and_print_vdisk(adm, command, g_variant_builder_end(&b), false);
}

static int cmd_fail_path(struct adm *adm, int argc, char **argv)
{
    return cmd_path(adm, "vdisk fail-path", "vdisk.fail-path", argc, argv);
}

static int cmd_restore_path(struct adm *adm, int argc, char **argv)
{
    return cmd_path(adm, "vdisk restore-path", "vdisk.restore-path", argc, argv);
}

/* Calls a command that runs the reconfiguration protocol and prints the
 * vdisk and the pause; a failure says "vdisk move d: why". */
static int call_and_print_remapped(struct adm *adm, const char *cmd, const char *name,
                                   const char *command, GVariant *args)
{
    g_autofree char *prefix = g_strdup_printf("%s %s", cmd, name);
    g_autoptr(GVariant) result = NULL;
    adm->error_prefix = prefix;
    int rc = adm_call(adm, command, args, &result);
    adm->error_prefix = NULL;
    if (rc != ADM_EXIT_OK)
        return rc;
    return adm_print_remapped(adm, result);
}

static int cmd_failback(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk failback";
    const char *const names[] = {"NAME", NULL};
    const char *name = NULL;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, &name);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, name)) != ADM_EXIT_OK)
        return rc;
    return call_and_print_remapped(adm, cmd, name, "vdisk.failback", name_args(name));
}

static int cmd_move(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "vdisk move";
    const char *primary = NULL, *secondary = NULL;
    const struct adm_option options[] = {
        {"primary", &primary, NULL}, {"secondary", &secondary, NULL}, {NULL, NULL, NULL}};
    const char *const names[] = {"NAME", NULL};
    const char *name = NULL;
    int rc = adm_parse_args(cmd, argc, argv, options, names, &name);
    if (rc != ADM_EXIT_OK || (rc = check_name(cmd, name)) != ADM_EXIT_OK)
        return rc;
    if (!primary)
        return adm_usage_error("%s: missing --primary NODE:PATH", cmd);
    if ((rc = check_node_path(cmd, "primary", primary)) != ADM_EXIT_OK ||
        (secondary && (rc = check_node_path(cmd, "secondary", secondary)) != ADM_EXIT_OK))
        return rc;

    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(name));
    g_variant_builder_add(&b, "{sv}", "primary", g_variant_new_string(primary));
    if (secondary)
        g_variant_builder_add(&b, "{sv}", "secondary", g_variant_new_string(secondary));
    return call_and_print_remapped(adm, cmd, name, "vdisk.move", g_variant_builder_end(&b));
}

static const struct {
    const char *name;
    int (*run)(struct adm *adm, int argc, char **argv);
} vdisk_commands[] = {
    {"create", cmd_create},     {"list", cmd_list},           {"show", cmd_show},
    {"remove", cmd_remove},     {"chmod", cmd_chmod},         {"chown", cmd_chown},
    {"resize", cmd_resize},     {"fail-path", cmd_fail_path}, {"restore-path", cmd_restore_path},
    {"failback", cmd_failback}, {"move", cmd_move},
};

int adm_cmd_vdisk(struct adm *adm, int argc, char **argv)
{
    int first = 0;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first == argc)
        return adm_usage_error(
            "vdisk: missing subcommand (create, list, show, remove, chmod, chown, resize, "
            "fail-path, restore-path, failback or move)");
    for (size_t i = 0; i < G_N_ELEMENTS(vdisk_commands); i++) {
        if (strcmp(argv[first], vdisk_commands[i].name) == 0)
            return vdisk_commands[i].run(adm, argc - first - 1, argv + first + 1);
    }
    return adm_usage_error("vdisk: unknown subcommand '%s'", argv[first]);
}
