/* Internals of ndfsadm shared by its files: the session (socket, output
 * mode, connection), argument parsing, calls and output. */
#ifndef NDFS_ADM_H
#define NDFS_ADM_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.h"

enum adm_exit {
    ADM_EXIT_OK = 0,
    ADM_EXIT_ERROR = 1, /* the command failed; one line on stderr says why */
    ADM_EXIT_USAGE = 2, /* the command line is wrong */
};

/* A hung daemon must not hang scripts forever. */
#define ADM_CALL_TIMEOUT_MS 30000

struct adm {
    const char *socket_path;
    bool json;
    struct ndfs_control_client *client; /* connected by the first adm_call */
    const char *error_prefix;           /* "vdisk move d": put before a failed call's reason */
};

/* Print "ndfsadm: <message>" (plus a hint to --help for usage errors) on
 * stderr and return ADM_EXIT_USAGE or ADM_EXIT_ERROR. */
int adm_usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
int adm_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* A long option of a command: "--name VALUE" / "--name=VALUE" sets *value,
 * a flag ("--name") sets *flag. Exactly one of value and flag is set. */
struct adm_option {
    const char *name;
    const char **value;
    bool *flag;
};

/* Parses a command's arguments: options from the NULL-terminated options
 * (may be NULL), then exactly as many positionals as the NULL-terminated
 * names (their labels for messages) into positional[]. "--" ends the
 * options. Returns ADM_EXIT_OK or a usage error (already printed). */
int adm_parse_args(const char *command, int argc, char **argv, const struct adm_option *options,
                   const char *const *names, const char **positional);

/* Sends command with args (a{sv}, floating consumed, NULL for {}) to ndfsd,
 * connecting first if needed. ADM_EXIT_OK with *result (caller unrefs), or
 * ADM_EXIT_ERROR after printing the one-line reason. */
int adm_call(struct adm *adm, const char *command, GVariant *args, GVariant **result);

/* Output of results in the session's format (human or --json). Each returns
 * ADM_EXIT_OK, or ADM_EXIT_ERROR after printing why (a malformed answer). */
int adm_print_status(const struct adm *adm, GVariant *result);
/* is_show: a vdisk.show answer (open mounts, I/O state), else any vdisk. */
int adm_print_vdisk(const struct adm *adm, GVariant *result, bool is_show);
int adm_print_vdisk_list(const struct adm *adm, GVariant *result);
int adm_print_removed(const struct adm *adm, const char *name);
/* An answer of a vdisk change run under the reconfiguration protocol
 * (create, chmod, chown, resize, move, failback): the vdisk, then "I/O
 * paused N ms" (--json: paused_ms in the object). */
int adm_print_remapped(const struct adm *adm, GVariant *result);
/* A node.drain answer: the vdisks moved and the longest pause. */
int adm_print_drained(const struct adm *adm, const char *node, GVariant *result);
/* "malformed answer from ndfsd: <what>"; returns ADM_EXIT_ERROR. */
int adm_malformed_answer(const char *what);
/* Prints b's document, pretty, on stdout. */
void adm_print_json(JsonBuilder *b);
/* Prints cells (strings, row after row, the header first) in n_columns
 * columns padded to their widest cell; the last column is not padded. */
void adm_print_table(int n_columns, GPtrArray *cells);

/* "vdisk SUBCOMMAND ..." with argv[0] the subcommand. */
int adm_cmd_vdisk(struct adm *adm, int argc, char **argv);
/* "node list|remove|drain ...", "link list" (adm_cluster.c). */
int adm_cmd_node(struct adm *adm, int argc, char **argv);
int adm_cmd_link(struct adm *adm, int argc, char **argv);
/* "cluster init-key FILE" (adm_key.c): needs no ndfsd. */
int adm_cmd_cluster(struct adm *adm, int argc, char **argv);

#endif
