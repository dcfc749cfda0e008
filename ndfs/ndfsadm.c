/* ndfsadm: the administration command. Parses the command line, finds the
 * control socket, sends one request to ndfsd and prints its answer; see
 * ndfsadm(8). */
#define G_LOG_DOMAIN "ndfs-adm"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adm.h"
#include "config.h"

#define ADM_DEFAULT_CONFIG "/etc/ndfs/ndfsd.conf"
#define ADM_DEFAULT_SOCKET "/run/ndfs/ndfsd.sock"

static const char usage_text[] =
    "Usage: ndfsadm [-s SOCKET] [--json] COMMAND [ARGUMENT...]\n"
    "\n"
    "Administer an NDFS cluster through a node's ndfsd control socket.\n"
    "\n"
    "Commands:\n"
    "  status                          cluster id, node, epoch, leader, members, quorum,\n"
    "                                  vdisks\n"
    "  vdisk create NAME --size SIZE --primary NODE:PATH [--secondary NODE:PATH]\n"
    "               [--owner USER] [--group GROUP] [--mode MODE]\n"
    "                                  create a virtual disk\n"
    "  vdisk list                      list the virtual disks and their masters\n"
    "  vdisk show NAME                 show a virtual disk: its master, failed paths,\n"
    "                                  open mounts and their I/O (pending, blocked)\n"
    "  vdisk remove NAME [--force]     remove a virtual disk (--force: even if open)\n"
    "  vdisk chmod NAME MODE           change its permission bits (octal, e.g. 0660)\n"
    "  vdisk chown NAME USER[:GROUP]   change its owner and/or group (\":GROUP\": group only)\n"
    "  vdisk resize NAME SIZE          grow it to SIZE\n"
    "  vdisk fail-path NAME NODE       mark NODE's path of the vdisk failed (the other\n"
    "                                  path takes over if NODE masters it)\n"
    "  vdisk restore-path NAME NODE    mark NODE's path of the vdisk good again\n"
    "  vdisk failback NAME             make the primary master the vdisk again (live:\n"
    "                                  I/O pauses, no error)\n"
    "  vdisk move NAME --primary NODE:PATH [--secondary NODE:PATH]\n"
    "                                  live switchover: NODE:PATH masters the vdisk\n"
    "  cluster init-key FILE           write a new cluster key (mode 0600; needs no ndfsd)\n"
    "  node list                       the nodes: up/down, links up, voter/standby, leader\n"
    "  node remove NAME                remove a node from the cluster\n"
    "  node drain NAME                 move every vdisk NAME masters to its other path\n"
    "                                  (live), so that the node can be stopped\n"
    "  link list                       this node's links: addresses, state, RTT, traffic\n"
    "  link add NODE ADDR              give NODE a link address (a new link to every node\n"
    "                                  with an address of that index)\n"
    "  link remove NODE ADDR           take a link address from NODE (its other links keep\n"
    "                                  their index)\n"
    "  help                            show this help\n"
    "\n"
    "Options:\n"
    "  -s, --socket=SOCKET  ndfsd's control socket (default: $NDFS_SOCKET, else the\n"
    "                       control-socket of " ADM_DEFAULT_CONFIG ",\n"
    "                       else " ADM_DEFAULT_SOCKET ")\n"
    "      --json           print one JSON document instead of text\n"
    "  -h, --help           show this help\n"
    "  -V, --version        show the version\n"
    "\n"
    "SIZE: 512, 64K, 64M, 10G, 1T (binary units), a multiple of 512.\n"
    "Exit status: 0 success, 1 error, 2 usage error. See ndfsadm(8).\n";

int adm_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "ndfsadm: %s\nTry 'ndfsadm --help' for more information.\n", msg);
    return ADM_EXIT_USAGE;
}

int adm_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "ndfsadm: %s\n", msg);
    return ADM_EXIT_ERROR;
}

static const struct adm_option *find_option(const struct adm_option *options, const char *name,
                                            size_t len)
{
    for (const struct adm_option *o = options; o && o->name; o++) {
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

int adm_parse_args(const char *command, int argc, char **argv, const struct adm_option *options,
                   const char *const *names, const char **positional)
{
    int wanted = 0;
    while (names && names[wanted])
        wanted++;
    int count = 0;
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            if (arg[1] != '-')
                return adm_usage_error("%s: unknown option '%s'", command, arg);
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const struct adm_option *o = find_option(options, name, len);
            if (!o)
                return adm_usage_error("%s: unknown option '--%.*s'", command, (int)len, name);
            if (o->flag) {
                if (eq)
                    return adm_usage_error("%s: option '--%s' takes no value", command, o->name);
                *o->flag = true;
                continue;
            }
            if (*o->value)
                return adm_usage_error("%s: option '--%s' given twice", command, o->name);
            if (eq)
                *o->value = eq + 1;
            else if (i + 1 < argc)
                *o->value = argv[++i];
            else
                return adm_usage_error("%s: option '--%s' needs a value", command, o->name);
            continue;
        }
        if (count == wanted)
            return adm_usage_error("%s: unexpected argument '%s'", command, arg);
        positional[count++] = arg;
    }
    if (count < wanted)
        return adm_usage_error("%s: missing %s", command, names[count]);
    return ADM_EXIT_OK;
}

/* The client's own descriptions of a local timeout or a lost connection
 * (control_client.c); a server may answer -ETIMEDOUT or -ECONNRESET too (a
 * change forwarded to a leader that did not answer), with its own message. */
static bool is_local_failure(int rc, const char *errmsg)
{
    if (rc != -ETIMEDOUT && rc != -ECONNRESET)
        return false;
    return !errmsg || !errmsg[0] || strcmp(errmsg, "timed out waiting for ndfsd") == 0 ||
           strcmp(errmsg, "connection to ndfsd lost") == 0;
}

static int report_call_failure(const struct adm *adm, int rc, const char *errmsg)
{
    if (!is_local_failure(rc, errmsg) && adm->error_prefix != NULL)
        return adm_error("%s: %s", adm->error_prefix,
                         errmsg && errmsg[0] ? errmsg : g_strerror(-rc));
    if (!is_local_failure(rc, errmsg))
        return adm_error("%s", errmsg && errmsg[0] ? errmsg : g_strerror(-rc));
    if (rc == -ETIMEDOUT)
        return adm_error("no answer from ndfsd at %s within %d seconds", adm->socket_path,
                         ADM_CALL_TIMEOUT_MS / 1000);
    return adm_error("lost the connection to ndfsd at %s", adm->socket_path);
}

int adm_call(struct adm *adm, const char *command, GVariant *args, GVariant **result)
{
    if (!args)
        args = g_variant_new("a{sv}", NULL);
    /* hold our own reference so args is freed on every path, sent or not */
    g_autoptr(GVariant) owned_args = g_variant_ref_sink(args);

    if (!adm->client) {
        int rc = ndfs_control_client_connect(adm->socket_path, NULL, NULL, NULL, &adm->client);
        if (rc < 0) {
            adm->client = NULL;
            const char *hint = rc == -ENOENT || rc == -ECONNREFUSED ? " (is ndfsd running?)" : "";
            return adm_error("cannot connect to %s: %s%s", adm->socket_path, g_strerror(-rc), hint);
        }
    }
    g_autofree char *errmsg = NULL;
    int rc = ndfs_control_client_call(adm->client, command, owned_args, ADM_CALL_TIMEOUT_MS, result,
                                      &errmsg);
    if (rc < 0)
        return report_call_failure(adm, rc, errmsg);
    return ADM_EXIT_OK;
}

static int cmd_status(struct adm *adm, int argc, char **argv)
{
    int rc = adm_parse_args("status", argc, argv, NULL, NULL, NULL);
    if (rc != ADM_EXIT_OK)
        return rc;
    g_autoptr(GVariant) result = NULL;
    rc = adm_call(adm, "status", NULL, &result);
    if (rc != ADM_EXIT_OK)
        return rc;
    return adm_print_status(adm, result);
}

/* -s, $NDFS_SOCKET, the config's control-socket, then the built-in path. */
static char *resolve_socket(const char *from_option)
{
    if (from_option)
        return g_strdup(from_option);
    const char *env = g_getenv("NDFS_SOCKET");
    if (env && env[0])
        return g_strdup(env);
    struct ndfs_config config = {0};
    g_autoptr(GError) error = NULL;
    /* an absent, unreadable or invalid config is not ours to report: fall back */
    if (ndfs_config_load(ADM_DEFAULT_CONFIG, &config, &error) == 0 && config.control_socket &&
        config.control_socket[0]) {
        char *path = g_strdup(config.control_socket);
        ndfs_config_clear(&config);
        return path;
    }
    ndfs_config_clear(&config);
    return g_strdup(ADM_DEFAULT_SOCKET);
}

struct global_options {
    const char *socket;
    bool json;
    bool help;
    bool version;
};

/* Global options may stand anywhere before "--"; the other arguments are
 * kept in order in rest (NULL-terminated, borrowed from argv). */
static int parse_global_options(int argc, char **argv, struct global_options *g, GPtrArray *rest)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (; i < argc; i++)
                g_ptr_array_add(rest, argv[i]);
            break;
        }
        const char *socket = NULL;
        if (strcmp(arg, "-s") == 0 || strcmp(arg, "--socket") == 0) {
            if (i + 1 >= argc)
                return adm_usage_error("option '%s' needs a value", arg);
            socket = argv[++i];
        } else if (strncmp(arg, "--socket=", 9) == 0) {
            socket = arg + 9;
        } else if (strncmp(arg, "-s", 2) == 0) {
            socket = arg + 2;
        } else if (strcmp(arg, "--json") == 0) {
            g->json = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            g->help = true;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            g->version = true;
        } else {
            g_ptr_array_add(rest, argv[i]);
        }
        if (socket) {
            if (!socket[0])
                return adm_usage_error("the socket path is empty");
            g->socket = socket;
        }
    }
    g_ptr_array_add(rest, NULL);
    return ADM_EXIT_OK;
}

static int run_command(struct adm *adm, int argc, char **argv)
{
    int first = 0;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first == argc)
        return adm_usage_error("no command given");
    const char *command = argv[first];
    int sub_argc = argc - first - 1;
    char **sub_argv = argv + first + 1;

    if (strcmp(command, "status") == 0)
        return cmd_status(adm, sub_argc, sub_argv);
    if (strcmp(command, "vdisk") == 0)
        return adm_cmd_vdisk(adm, sub_argc, sub_argv);
    if (strcmp(command, "node") == 0)
        return adm_cmd_node(adm, sub_argc, sub_argv);
    if (strcmp(command, "link") == 0)
        return adm_cmd_link(adm, sub_argc, sub_argv);
    if (strcmp(command, "cluster") == 0)
        return adm_cmd_cluster(adm, sub_argc, sub_argv);
    if (command[0] == '-' && first == 0)
        return adm_usage_error("unknown option '%s'", command);
    return adm_usage_error("unknown command '%s'", command);
}

int main(int argc, char **argv)
{
    struct global_options g = {0};
    g_autoptr(GPtrArray) rest = g_ptr_array_new();
    int rc = parse_global_options(argc, argv, &g, rest);
    if (rc != ADM_EXIT_OK)
        return rc;
    int rest_argc = (int)rest->len - 1;
    char **rest_argv = (char **)rest->pdata;

    if (g.help || (rest_argc >= 1 && strcmp(rest_argv[0], "help") == 0)) {
        fputs(usage_text, stdout);
        return fflush(stdout) == 0 ? ADM_EXIT_OK : ADM_EXIT_ERROR;
    }
    if (g.version) {
        printf("ndfsadm %s\n", NDFS_VERSION);
        return fflush(stdout) == 0 ? ADM_EXIT_OK : ADM_EXIT_ERROR;
    }

    g_autofree char *socket_path = resolve_socket(g.socket);
    struct adm adm = {.socket_path = socket_path, .json = g.json};
    rc = run_command(&adm, rest_argc, rest_argv);
    if (adm.client)
        ndfs_control_client_close(adm.client);
    /* a full disk or closed pipe must not pass for success */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (rc == ADM_EXIT_OK)
            rc = adm_error("cannot write the output: %s", g_strerror(errno));
    }
    return rc;
}
