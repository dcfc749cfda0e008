/* The commands of the control protocol (see ndfs/control.h), run by ndfsd
 * on the loop thread: commands.c holds the reads, the dispatch and the
 * vdisk events; vdisk_change.c the commands that change vdisks. Private to
 * ndfsd. */
#ifndef NDFS_COMMANDS_H
#define NDFS_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "server.h"

/* Runs one request; answers on c now or, for changes, when the CCD has
 * applied them. args is an a{sv}, borrowed. */
void ndfs_commands_dispatch(struct ndfs_conn *c, uint64_t id, const char *command, GVariant *args);

/* Starts announcing vdisk changes to watchers: remembers the id of every
 * vdisk (a removal event carries it) and installs the CCD watch. */
int ndfs_commands_watch_start(struct ndfs_server *s);
void ndfs_commands_watch_stop(struct ndfs_server *s);

/* One request being handled; lives for the handler call only. */
struct cmd_request {
    struct ndfs_server *s;
    struct ndfs_conn *c;
    uint64_t id;
    const char *command;
    GVariant *args; /* a{sv}, borrowed */
};

void cmd_reply_error(struct cmd_request *r, int status, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Arguments. Each returns 0, or -errno after answering the request (a
 * missing required or mistyped argument: -EINVAL). An absent optional
 * argument leaves *out as it was (strings: NULL). Strings are g_malloc'd. */
int cmd_arg_string(struct cmd_request *r, const char *key, bool required, char **out);
int cmd_arg_u64(struct cmd_request *r, const char *key, bool required, uint64_t *out);
int cmd_arg_u32(struct cmd_request *r, const char *key, bool required, uint32_t *out);
int cmd_arg_bool(struct cmd_request *r, const char *key, bool required, bool *out);
/* The "name" argument, present and a valid vdisk name. */
int cmd_arg_vdisk_name(struct cmd_request *r, char **out);
/* A mode of at most 07777. */
int cmd_check_mode(struct cmd_request *r, uint32_t mode);
/* A user (or group) name that is valid and exists on this node. */
int cmd_check_account(struct cmd_request *r, const char *name, bool is_group);
uint64_t cmd_now_ns(void);

/* cmd_checks.c: placing a vdisk's disks. */
/* Both pairs given and the same node and path. */
bool cmd_same_node_path(const char *node_a, const char *path_a, const char *node_b,
                        const char *path_b);
/* 0, or -errno after answering r when node is not in the nodes table. */
int cmd_check_node(struct cmd_request *r, const char *node);
/* 0, or -EEXIST (-errno) after answering r when node:path backs a vdisk
 * other than self (NULL: any), or one being created or moved there. */
int cmd_check_path_free(struct cmd_request *r, const char *self, const char *node,
                        const char *path);

/* The changing commands (vdisk_change.c); the caller checked permission. */
void cmd_vdisk_create(struct cmd_request *r);
void cmd_vdisk_remove(struct cmd_request *r);
void cmd_vdisk_chmod(struct cmd_request *r);
void cmd_vdisk_chown(struct cmd_request *r);
void cmd_vdisk_resize(struct cmd_request *r);
/* vdisk_path.c: the mapping's state (see control.h). */
void cmd_vdisk_fail_path(struct cmd_request *r);
void cmd_vdisk_restore_path(struct cmd_request *r);
void cmd_vdisk_failback(struct cmd_request *r);
/* vdisk_move.c: under the reconfiguration protocol (reconfig.h). */
void cmd_vdisk_move(struct cmd_request *r);
void cmd_node_drain(struct cmd_request *r);
/* node_change.c: a node's row: its removal, its link addresses (ndfsadm
 * node remove, link add / remove). */
void cmd_node_remove(struct cmd_request *r);
void cmd_link_add(struct cmd_request *r);
void cmd_link_remove(struct cmd_request *r);

/* A change of one vdisk's mapping run through the reconfiguration
 * protocol: once every member suspended the vdisk's I/O, fn gets the row as
 * it is then (it may be called again when the row changed meanwhile) and
 * changes it (*changed) or refuses (-errno, *reason g_malloc'd for people);
 * the row is proposed; cb runs once with the outcome and how long I/O was
 * paused. fn_data must live until cb ran; fn is not called after. */
typedef int (*cmd_remap_fn)(struct ndfs_vdisk *v, void *data, bool *changed, char **reason);
typedef void (*cmd_remap_cb)(int status, const char *message, uint64_t paused_ms, void *data);
void cmd_remap(struct ndfs_server *s, const char *name, uint64_t id, cmd_remap_fn fn, void *fn_data,
               cmd_remap_cb cb, void *data);
/* Answers id on c with the vdisk as the CCD holds it, plus paused-ms. */
void cmd_reply_remapped(struct ndfs_server *s, struct ndfs_conn *c, uint64_t id, const char *name,
                        uint64_t paused_ms);
/* vdisk.remove runs on the leader: unless forced, it asks every node for
 * the mounts that hold the vdisk open (ndfs_cluster_open_counts). */

/* The disk behind a vdisk on this node must hold size bytes. A missing path
 * is created as a sparse file when may_create (*created says so); a smaller
 * regular file is extended when may_grow. -errno with *errmsg (g_malloc'd)
 * for people. Also run for other nodes (cluster.c's disk.prepare). */
int ndfs_disk_prepare(const char *vdisk, const char *path, uint64_t size, bool may_create,
                      bool may_grow, bool *created, char **errmsg);
/* ndfs_disk_prepare on node: here, or by a disk.prepare call to it (a node
 * without network has no other node: nothing to check there). cb runs once,
 * maybe before this returns, with 0 or -errno and a message for people
 * ("node n2: ...", "node n2 did not check the disk: ...", "cannot reach
 * node n2 to check PATH: ..."), and whether the disk was created. */
typedef void (*ndfs_disk_prepared_cb)(int status, const char *message, bool created, void *data);
void ndfs_disk_prepare_on(struct ndfs_server *s, const char *node, const char *vdisk,
                          const char *path, uint64_t size, bool may_create, bool may_grow,
                          ndfs_disk_prepared_cb cb, void *data);

#endif
