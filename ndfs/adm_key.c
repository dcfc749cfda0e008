/* ndfsadm's "cluster" commands. They work on local files and need no
 * running ndfsd. */
#define G_LOG_DOMAIN "ndfs-adm"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ndfs/transport.h>

#include "adm.h"

static int cmd_init_key(struct adm *adm, int argc, char **argv)
{
    const char *cmd = "cluster init-key";
    const char *const names[] = {"FILE", NULL};
    const char *path = NULL;
    int rc = adm_parse_args(cmd, argc, argv, NULL, names, &path);
    if (rc != ADM_EXIT_OK)
        return rc;
    if (!path[0])
        return adm_usage_error("%s: the file name is empty", cmd);

    g_autofree char *errmsg = NULL;
    rc = ndfs_transport_key_create(path, &errmsg);
    /* never replace a key: the nodes that hold it would stop trusting us */
    if (rc == -EEXIST)
        return adm_error("%s: \"%s\" already exists; a key is never overwritten (every node "
                         "must hold the same one): copy that file, or remove it first",
                         cmd, path);
    /* the transport's message names the file */
    if (rc < 0 && errmsg && errmsg[0])
        return adm_error("%s: %s", cmd, errmsg);
    if (rc < 0)
        return adm_error("%s: cannot create \"%s\": %s", cmd, path, g_strerror(-rc));

    if (adm->json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "key_file");
        json_builder_add_string_value(b, path);
        json_builder_end_object(b);
        adm_print_json(b);
    } else {
        printf("wrote a new cluster key to %s (mode 0600): copy it to every node and name it "
               "in [cluster] key-file\n",
               path);
    }
    return ADM_EXIT_OK;
}

int adm_cmd_cluster(struct adm *adm, int argc, char **argv)
{
    int first = 0;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first == argc)
        return adm_usage_error("cluster: missing subcommand (init-key)");
    if (strcmp(argv[first], "init-key") == 0)
        return cmd_init_key(adm, argc - first - 1, argv + first + 1);
    return adm_usage_error("cluster: unknown subcommand '%s'", argv[first]);
}
