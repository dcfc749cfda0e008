/* The control commands that change vdisks: create, remove, chmod, chown,
 * resize. Each checks its arguments and the disks, then proposes the change
 * to the CCD as the vdisks table's format row says (ndfs_reconfig_change:
 * under the reconfiguration protocol, reconfig.h: every member's mounts hold
 * the vdisk's I/O while the row changes) and answers once the CCD applied
 * it, with how long I/O was paused (paused-ms). */
#define G_LOG_DOMAIN "ndfs-commands"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "commands.h"
#include "control.h"
#include "parse.h"
#include "reconfig.h"

/* An -ESTALE update means someone changed the row meanwhile: read it again. */
#define UPDATE_ATTEMPTS 5

/* A message for a failed CCD change. */
static char *ccd_failure(const char *name, const char *verb, int status)
{
    switch (status) {
    case -ENOENT:
        return g_strdup_printf("vdisk \"%s\" does not exist", name);
    case -EEXIST:
        return g_strdup_printf("vdisk \"%s\" already exists", name);
    case -ENOTCONN:
        return g_strdup_printf("cannot %s vdisk \"%s\": this node is not the cluster leader", verb,
                               name);
    case -ECANCELED:
        return g_strdup_printf("cannot %s vdisk \"%s\": ndfsd is stopping", verb, name);
    case -ESTALE:
        return g_strdup_printf("cannot %s vdisk \"%s\": it kept changing meanwhile, try again",
                               verb, name);
    default:
        return g_strdup_printf("cannot %s vdisk \"%s\": %s", verb, name, g_strerror(-status));
    }
}

enum change_kind { CHANGE_CREATE, CHANGE_REMOVE, CHANGE_CHMOD, CHANGE_CHOWN, CHANGE_RESIZE };

/* A change in flight: who asked, and what, until the CCD answers. Held by
 * the command (until it is answered) and by the apply of its run in flight
 * (ndfs_reconfig_change): the run may answer (ndfsd stopping) before the
 * CCD answers the apply. */
struct change {
    unsigned refs;
    struct ndfs_server *s;
    struct ndfs_conn *c; /* holds a ref */
    uint64_t id;
    enum change_kind kind;
    char *name;
    struct ndfs_vdisk v; /* create: the new row; updates: the row proposed */
    uint32_t mode;       /* chmod */
    char *owner, *group; /* chown; NULL: unchanged */
    uint64_t size;       /* resize: asked */
    uint64_t old_size;   /* resize: before */
    unsigned attempts;
    char *created_path;            /* create: the sparse file made for it (on the primary node) */
    char *pending_keys[2];         /* create: its "node:path" in s->pending_paths */
    unsigned step;                 /* create: disks prepared so far (primary, secondary) */
    uint64_t vdisk_id;             /* the vdisk its run suspends; create: none (0) */
    ndfs_reconfig_apply_done done; /* the apply in flight: its answer; NULL: none */
    void *done_ctx;
    bool over;      /* the run's callback ran: the command is answered */
    bool applied;   /* the apply answered: a failure's message is its own */
    bool changed;   /* updates: the row was changed (not already so) */
    char *prepared; /* resize: the disks grown before the run ("p-node:path s-node:path") */
};

static struct change *change_new(struct cmd_request *r, enum change_kind kind, const char *name)
{
    struct change *ch = g_new0(struct change, 1);
    ch->refs = 1;
    ch->s = r->s;
    ch->c = r->c;
    ndfs_conn_ref(r->c);
    ch->id = r->id;
    ch->kind = kind;
    ch->name = g_strdup(name);
    return ch;
}

/* Drops a reference: the command's or the apply's. */
static void change_free(struct change *ch)
{
    if (--ch->refs > 0)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(ch->pending_keys); i++) {
        if (ch->pending_keys[i] != NULL && !ch->s->stopping)
            g_hash_table_remove(ch->s->pending_paths, ch->pending_keys[i]);
        g_free(ch->pending_keys[i]);
    }
    ndfs_conn_unref(ch->c);
    ndfs_vdisk_clear(&ch->v);
    g_free(ch->name);
    g_free(ch->owner);
    g_free(ch->group);
    g_free(ch->created_path);
    g_free(ch->prepared);
    g_free(ch);
}

/* The apply of ch's run is over: status and message go to the run (and
 * from it to change_over). */
static void change_applied(struct change *ch, int status, const char *message)
{
    ndfs_reconfig_apply_done done = ch->done;
    ch->done = NULL;
    ch->applied = true;
    done(status, message, ch->done_ctx);
    change_free(ch);
}

/* A failure: within the apply of the run, its answer; before the run, the
 * command's. */
static void change_fail_msg(struct change *ch, int status, const char *msg)
{
    if (ch->done != NULL) {
        change_applied(ch, status, msg);
        return;
    }
    ndfs_conn_reply(ch->c, ch->id, status, msg, NULL);
    change_free(ch);
}

static void change_fail(struct change *ch, int status, const char *verb)
{
    g_autofree char *msg = ccd_failure(ch->name, verb, status);
    change_fail_msg(ch, status, msg);
}

static void change_run(struct change *ch);

static const char *change_verb(enum change_kind kind)
{
    switch (kind) {
    case CHANGE_CREATE:
        return "create";
    case CHANGE_REMOVE:
        return "remove";
    case CHANGE_CHMOD:
        return "chmod";
    case CHANGE_CHOWN:
        return "chown";
    case CHANGE_RESIZE:
        return "resize";
    }
    return "change";
}

static void discard_answered(int status, const char *message, GVariant *result, void *data)
{
    char *what = data;
    (void)result;
    if (status < 0 && status != -ECANCELED)
        g_warning("cannot remove %s, made for a vdisk that was not created: %s", what,
                  message ? message : g_strerror(-status));
    g_free(what);
}

/* Removes the sparse file made for ch, here or on its node. */
static void discard_created(struct change *ch)
{
    if (ch->created_path == NULL)
        return;
    if (strcmp(ch->v.primary_node, ch->s->node_name) == 0) {
        if (unlink(ch->created_path) < 0)
            g_warning("cannot remove %s, made for vdisk \"%s\" that was not created: %s",
                      ch->created_path, ch->name, g_strerror(errno));
        return;
    }
    if (ch->s->cluster == NULL)
        return;
    char *what = g_strdup_printf("%s:%s", ch->v.primary_node, ch->created_path);
    if (ndfs_cluster_call(ch->s->cluster, ch->v.primary_node, "disk.discard",
                          g_variant_new_parsed("{'path': <%s>}", ch->created_path),
                          discard_answered, what) < 0) {
        g_warning("cannot remove %s, made for vdisk \"%s\" that was not created", what, ch->name);
        g_free(what);
    }
}

/* The CCD refused the vdisk: remove the file made for it. Not when ndfsd is
 * stopping: the entry may still be committed from the log on restart. */
static void create_undo(struct change *ch, int status)
{
    if (ch->created_path == NULL || status == -ECANCELED)
        return;
    struct ndfs_vdisk now = {0};
    bool kept = ndfs_ccd_vdisk_get(ch->s->ccd, ch->name, &now) == 0 &&
                cmd_same_node_path(now.primary_node, now.primary_path, ch->v.primary_node,
                                   ch->v.primary_path);
    ndfs_vdisk_clear(&now);
    if (kept)
        return;
    discard_created(ch);
}

static void create_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct change *ch = data;
    (void)ccd;

    if (status < 0) {
        change_fail(ch, status, "create"); /* change_over undoes the disk */
        return;
    }
    change_applied(ch, 0, NULL);
}

/* The apply of a create's run: proposes the row (the FSM gives it its id). */
static void create_propose(struct change *ch)
{
    int rc = ndfs_ccd_vdisk_create(ch->s->ccd, &ch->v, create_done, ch);
    if (rc < 0)
        change_fail(ch, rc, "create");
}

static void create_succeeded(struct change *ch, uint64_t paused_ms)
{
    g_autofree char *size = ndfs_format_size(ch->v.size);
    g_message("vdisk \"%s\" created by uid %u: %s, primary %s:%s%s%s%s%s%s, %s:%s 0%o (I/O paused "
              "%" G_GUINT64_FORMAT " ms)",
              ch->name, (unsigned)ch->c->peer.uid, size, ch->v.primary_node, ch->v.primary_path,
              ch->created_path ? " (made sparse)" : "", ch->v.secondary_node ? ", secondary " : "",
              ch->v.secondary_node ? ch->v.secondary_node : "", ch->v.secondary_node ? ":" : "",
              ch->v.secondary_path ? ch->v.secondary_path : "", ch->v.owner, ch->v.group,
              ch->v.mode, (guint64)paused_ms);
    cmd_reply_remapped(ch->s, ch->c, ch->id, ch->name, paused_ms);
}

static void create_next(struct change *ch);

static void create_prepared(struct change *ch, int status, const char *msg, bool created)
{
    if (status < 0) {
        discard_created(ch);
        change_fail_msg(ch, status, msg);
        return;
    }
    if (created && ch->step == 0)
        ch->created_path = g_strdup(ch->v.primary_path);
    ch->step++;
    create_next(ch);
}

static void create_prepared_cb(int status, const char *message, bool created, void *data)
{
    create_prepared(data, status, message, created);
}

/* Checks (and for the primary, makes) each disk on its node, then proposes
 * the vdisk. A secondary is a shared disk: it must exist, it is not made. */
static void create_next(struct change *ch)
{
    if (ch->step < 2) {
        bool primary = ch->step == 0;
        const char *node = primary ? ch->v.primary_node : ch->v.secondary_node;
        const char *path = primary ? ch->v.primary_path : ch->v.secondary_path;
        if (node == NULL) {
            ch->step++;
            create_next(ch);
            return;
        }
        ndfs_disk_prepare_on(ch->s, node, ch->name, path, ch->v.size, primary, false,
                             create_prepared_cb, ch);
        return;
    }
    /* the disks are ready: the row under the protocol */
    change_run(ch);
}

void cmd_vdisk_create(struct cmd_request *r)
{
    struct ndfs_server *s = r->s;
    g_autofree char *name = NULL, *primary = NULL, *secondary = NULL, *owner = NULL, *group = NULL;
    g_autofree char *pnode = NULL, *ppath = NULL, *snode = NULL, *spath = NULL;
    uint64_t size = 0;
    uint32_t mode = 0660;

    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_u64(r, "size", true, &size) < 0 ||
        cmd_arg_string(r, "primary", true, &primary) < 0 ||
        cmd_arg_string(r, "secondary", false, &secondary) < 0 ||
        cmd_arg_string(r, "owner", false, &owner) < 0 ||
        cmd_arg_string(r, "group", false, &group) < 0 || cmd_arg_u32(r, "mode", false, &mode) < 0)
        return;
    if (size == 0 || size % 512 != 0) {
        cmd_reply_error(r, -EINVAL, "size must be a positive multiple of 512 bytes");
        return;
    }
    if (cmd_check_mode(r, mode) < 0)
        return;
    if (ndfs_parse_node_path(primary, &pnode, &ppath) < 0) {
        cmd_reply_error(r, -EINVAL, "primary \"%s\" is not NODE:PATH with an absolute PATH",
                        primary);
        return;
    }
    if (secondary != NULL && secondary[0] != '\0') {
        if (ndfs_parse_node_path(secondary, &snode, &spath) < 0) {
            cmd_reply_error(r, -EINVAL, "secondary \"%s\" is not NODE:PATH with an absolute PATH",
                            secondary);
            return;
        }
        if (strcmp(snode, pnode) == 0) {
            cmd_reply_error(r, -EINVAL,
                            "the secondary must be on another node than the primary (both on "
                            "\"%s\")",
                            pnode);
            return;
        }
    }
    if (cmd_check_node(r, pnode) < 0 || (snode != NULL && cmd_check_node(r, snode) < 0))
        return;
    if (owner == NULL)
        owner = g_strdup("root");
    if (group == NULL)
        group = g_strdup("disk");
    if (cmd_check_account(r, owner, false) < 0 || cmd_check_account(r, group, true) < 0)
        return;

    struct ndfs_vdisk existing = {0};
    int rc = ndfs_ccd_vdisk_get(s->ccd, name, &existing);
    ndfs_vdisk_clear(&existing);
    if (rc == 0) {
        cmd_reply_error(r, -EEXIST, "vdisk \"%s\" already exists", name);
        return;
    }
    if (rc != -ENOENT) {
        cmd_reply_error(r, rc, "cannot read vdisk \"%s\": %s", name, ndfs_ccd_errmsg(s->ccd));
        return;
    }
    if (cmd_check_path_free(r, NULL, pnode, ppath) < 0 ||
        (snode != NULL && cmd_check_path_free(r, NULL, snode, spath) < 0))
        return;

    struct change *ch = change_new(r, CHANGE_CREATE, name);
    ch->v.name = g_strdup(name);
    ch->v.size = size;
    ch->v.mode = mode;
    ch->v.mtime_ns = cmd_now_ns();
    ch->v.owner = g_steal_pointer(&owner);
    ch->v.group = g_steal_pointer(&group);
    ch->v.primary_node = g_steal_pointer(&pnode);
    ch->v.primary_path = g_steal_pointer(&ppath);
    ch->v.secondary_node = g_steal_pointer(&snode);
    ch->v.secondary_path = g_steal_pointer(&spath);
    /* held while the disks are prepared and the CCD decides */
    ch->pending_keys[0] = g_strdup_printf("%s:%s", ch->v.primary_node, ch->v.primary_path);
    g_hash_table_add(s->pending_paths, g_strdup(ch->pending_keys[0]));
    if (ch->v.secondary_node != NULL) {
        ch->pending_keys[1] = g_strdup_printf("%s:%s", ch->v.secondary_node, ch->v.secondary_path);
        g_hash_table_add(s->pending_paths, g_strdup(ch->pending_keys[1]));
    }
    create_next(ch);
}

static void remove_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct change *ch = data;
    (void)ccd;

    if (status < 0) {
        change_fail(ch, status, "remove");
        return;
    }
    change_applied(ch, 0, NULL);
}

/* The apply of a remove's run: the vdisk (still the one asked for) goes.
 * The mounts held its new requests meanwhile: on the resume they find it
 * gone and fail them (EIO), as any I/O of a removed vdisk. */
static void remove_apply(struct change *ch)
{
    struct ndfs_vdisk now = {0};
    int rc = ndfs_ccd_vdisk_get(ch->s->ccd, ch->name, &now);
    if (rc == 0 && now.id != ch->vdisk_id)
        rc = -ENOENT; /* removed meanwhile, and another made under its name */
    ndfs_vdisk_clear(&now);
    if (rc == 0)
        rc = ndfs_ccd_vdisk_remove(ch->s->ccd, ch->name, remove_done, ch);
    if (rc < 0)
        change_fail(ch, rc, "remove");
}

static void remove_succeeded(struct change *ch, uint64_t paused_ms)
{
    g_message("vdisk \"%s\" (id %" G_GUINT64_FORMAT ") removed by uid %u; its disk %s:%s is kept "
              "(I/O paused %" G_GUINT64_FORMAT " ms)",
              ch->name, ch->v.id, (unsigned)ch->c->peer.uid, ch->v.primary_node, ch->v.primary_path,
              (guint64)paused_ms);
    GVariantDict d;
    g_variant_dict_init(&d, NULL);
    g_variant_dict_insert(&d, "paused-ms", "t", (guint64)paused_ms);
    ndfs_conn_reply(ch->c, ch->id, 0, NULL, g_variant_dict_end(&d));
}

/* Every other node answers how many of its mounts hold the vdisk within
 * this (one heartbeat round trip normally); ndfsadm waits 30 s. */
#define OPEN_COUNT_TIMEOUT_MS 2000

static void remove_propose(struct change *ch)
{
    change_run(ch);
}

/* The mounts of every node (this one's are in mounts too) that hold the
 * vdisk; refuses when there are any or a node could not say. */
static void remove_counted(int status, GHashTable *mounts, const char *failed_node, const char *why,
                           void *data)
{
    struct change *ch = data;
    if (status < 0 || ch->s->stopping) {
        change_fail(ch, -ECANCELED, "remove");
        return;
    }
    unsigned here = 0;
    ndfs_server_open_count(ch->s, ch->name, &here);
    if (here > 0)
        g_hash_table_replace(mounts, g_strdup(ch->s->node_name), GUINT_TO_POINTER(here));
    if (g_hash_table_size(mounts) > 0) {
        GList *nodes = g_list_sort(g_hash_table_get_keys(mounts), (GCompareFunc)strcmp);
        g_autoptr(GString) list = g_string_new(NULL);
        unsigned total = 0;
        for (GList *l = nodes; l != NULL; l = l->next) {
            unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(mounts, l->data));
            total += n;
            g_string_append_printf(list, "%s%s: %u", l == nodes ? "" : ", ", (char *)l->data, n);
        }
        g_list_free(nodes);
        g_autofree char *msg =
            g_strdup_printf("vdisk \"%s\" is open on %u mount%s (%s) (use --force)", ch->name,
                            total, total == 1 ? "" : "s", list->str);
        change_fail_msg(ch, -EBUSY, msg);
        return;
    }
    if (failed_node != NULL) {
        g_autofree char *msg = g_strdup_printf(
            "cannot check the mounts of node %s: %s (use --force)", failed_node, why);
        change_fail_msg(ch, -EHOSTUNREACH, msg);
        return;
    }
    /* the vdisk may have gone meanwhile: the CCD answers -ENOENT then */
    remove_propose(ch);
}

void cmd_vdisk_remove(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    bool force = false;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_bool(r, "force", false, &force) < 0)
        return;
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(r->s->ccd, name, &v);
    if (rc < 0) {
        g_autofree char *msg = ccd_failure(name, "read", rc);
        ndfs_conn_reply(r->c, r->id, rc, msg, NULL);
        return;
    }
    struct change *ch = change_new(r, CHANGE_REMOVE, name);
    ch->v = v; /* for the log line */
    ch->vdisk_id = v.id;
    if (force) {
        remove_propose(ch);
        return;
    }
    if (r->s->cluster == NULL) {
        GHashTable *none = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        remove_counted(0, none, NULL, NULL, ch);
        g_hash_table_unref(none);
        return;
    }
    /* the leader runs the remove: it asks every other node for its mounts */
    ndfs_cluster_open_counts(r->s->cluster, name, OPEN_COUNT_TIMEOUT_MS, remove_counted, ch);
}

static void update_attempt(struct change *ch);

static void update_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct change *ch = data;
    (void)ccd;

    if (status == -ESTALE && ch->attempts < UPDATE_ATTEMPTS) {
        update_attempt(ch);
        return;
    }
    if (status < 0) {
        change_fail(ch, status, change_verb(ch->kind));
        return;
    }
    ch->changed = true;
    change_applied(ch, 0, NULL);
}

static void update_succeeded(struct change *ch, uint64_t paused_ms)
{
    unsigned uid = (unsigned)ch->c->peer.uid;
    if (!ch->changed) {
        /* already so (a resize to its size): nothing was proposed */
    } else if (ch->kind == CHANGE_CHMOD) {
        g_message("vdisk \"%s\" mode set to 0%o by uid %u (I/O paused %" G_GUINT64_FORMAT " ms)",
                  ch->name, ch->v.mode, uid, (guint64)paused_ms);
    } else if (ch->kind == CHANGE_CHOWN) {
        g_message("vdisk \"%s\" owner set to %s:%s by uid %u (I/O paused %" G_GUINT64_FORMAT " ms)",
                  ch->name, ch->v.owner, ch->v.group, uid, (guint64)paused_ms);
    } else {
        g_autofree char *from = ndfs_format_size(ch->old_size);
        g_autofree char *to = ndfs_format_size(ch->v.size);
        g_message("vdisk \"%s\" resized from %s to %s by uid %u (I/O paused %" G_GUINT64_FORMAT
                  " ms)",
                  ch->name, from, to, uid, (guint64)paused_ms);
    }
    cmd_reply_remapped(ch->s, ch->c, ch->id, ch->name, paused_ms);
}

static void update_propose(struct change *ch)
{
    ch->v.mtime_ns = cmd_now_ns();
    int rc = ndfs_ccd_vdisk_update(ch->s->ccd, &ch->v, update_done, ch);
    if (rc < 0)
        change_fail(ch, rc, change_verb(ch->kind));
}

static void resize_next(struct change *ch);

static void resize_prepared(struct change *ch, int status, const char *msg)
{
    if (status < 0) {
        change_fail_msg(ch, status, msg);
        return;
    }
    ch->step++;
    resize_next(ch);
}

static void resize_prepared_cb(int status, const char *message, bool created, void *data)
{
    (void)created;
    resize_prepared(data, status, message);
}

/* The disks of v, as a resize prepares them. */
static char *disks_key(const struct ndfs_vdisk *v)
{
    return g_strdup_printf("%s:%s %s:%s", v->primary_node, v->primary_path,
                           v->secondary_node ? v->secondary_node : "",
                           v->secondary_path ? v->secondary_path : "");
}

/* Each disk must hold the new size on its node: the primary's file grows,
 * a secondary (shared) disk must already be large enough. Then, before the
 * run (so that I/O is not held while a file grows), the run; within its
 * apply (the disks changed meanwhile), the proposal. */
static void resize_next(struct change *ch)
{
    if (ch->step >= 2) {
        g_free(ch->prepared);
        ch->prepared = disks_key(&ch->v);
        if (ch->done == NULL)
            change_run(ch);
        else
            update_propose(ch);
        return;
    }
    bool primary = ch->step == 0;
    const char *node = primary ? ch->v.primary_node : ch->v.secondary_node;
    const char *path = primary ? ch->v.primary_path : ch->v.secondary_path;
    if (node == NULL) {
        resize_prepared(ch, 0, NULL);
        return;
    }
    ndfs_disk_prepare_on(ch->s, node, ch->name, path, ch->size, false, primary, resize_prepared_cb,
                         ch);
}

/* "vdisk "d" can only grow (size 8 MiB, asked 4 MiB)". */
static char *shrink_refusal(const char *name, uint64_t has, uint64_t asked)
{
    g_autofree char *has_text = ndfs_format_size(has);
    g_autofree char *asked_text = ndfs_format_size(asked);
    return g_strdup_printf("vdisk \"%s\" can only grow (size %s, asked %s)", name, has_text,
                           asked_text);
}

/* The apply of an update's run: reads the row (still the vdisk asked
 * for), applies the change to it and proposes it; -ESTALE reads again. */
static void update_attempt(struct change *ch)
{
    struct ndfs_server *s = ch->s;

    ch->attempts++;
    ndfs_vdisk_clear(&ch->v);
    int rc = ndfs_ccd_vdisk_get(s->ccd, ch->name, &ch->v);
    if (rc == 0 && ch->v.id != ch->vdisk_id)
        rc = -ENOENT; /* removed meanwhile, and another made under its name */
    if (rc < 0) {
        change_fail(ch, rc, change_verb(ch->kind));
        return;
    }
    switch (ch->kind) {
    case CHANGE_CHMOD:
        ch->v.mode = ch->mode;
        break;
    case CHANGE_CHOWN:
        if (ch->owner != NULL) {
            g_free(ch->v.owner);
            ch->v.owner = g_strdup(ch->owner);
        }
        if (ch->group != NULL) {
            g_free(ch->v.group);
            ch->v.group = g_strdup(ch->group);
        }
        break;
    case CHANGE_RESIZE: {
        if (ch->size < ch->v.size) {
            g_autofree char *msg = shrink_refusal(ch->name, ch->v.size, ch->size);
            change_fail_msg(ch, -EINVAL, msg);
            return;
        }
        if (ch->size == ch->v.size) {
            change_applied(ch, 0, NULL); /* grown meanwhile: nothing to change */
            return;
        }
        ch->old_size = ch->v.size;
        ch->v.size = ch->size;
        g_autofree char *disks = disks_key(&ch->v);
        if (ch->prepared == NULL || strcmp(ch->prepared, disks) != 0) {
            /* moved since its disks grew: the new ones first */
            ch->step = 0;
            resize_next(ch);
            return;
        }
        break;
    }
    case CHANGE_CREATE:
    case CHANGE_REMOVE:
        g_assert_not_reached();
    }
    update_propose(ch);
}

/* ---- the run of a change (ndfs_reconfig_change) ---- */

static void change_apply(void *data, ndfs_reconfig_apply_done done, void *ctx)
{
    struct change *ch = data;
    ch->refs++;
    ch->done = done;
    ch->done_ctx = ctx;
    ch->attempts = 0;
    if (ch->over || ch->s->stopping) {
        change_applied(ch, -ECANCELED, "ndfsd is stopping");
        return;
    }
    switch (ch->kind) {
    case CHANGE_CREATE:
        create_propose(ch);
        break;
    case CHANGE_REMOVE:
        remove_apply(ch);
        break;
    case CHANGE_CHMOD:
    case CHANGE_CHOWN:
    case CHANGE_RESIZE:
        update_attempt(ch);
        break;
    }
}

static void change_over(int status, const char *message, uint64_t paused_ms, void *data)
{
    struct change *ch = data;
    ch->over = true;
    if (status < 0) {
        if (ch->kind == CHANGE_CREATE)
            create_undo(ch, status);
        if (ch->applied) {
            /* the change's own failure, worded as before the protocol */
            ndfs_conn_reply(ch->c, ch->id, status, message, NULL);
        } else {
            /* the protocol's: a member could not suspend, ndfsd stopping */
            ndfs_conn_reply_error(ch->c, ch->id, status, "cannot %s vdisk \"%s\": %s",
                                  change_verb(ch->kind), ch->name,
                                  message ? message : g_strerror(-status));
        }
    } else if (ch->kind == CHANGE_CREATE) {
        create_succeeded(ch, paused_ms);
    } else if (ch->kind == CHANGE_REMOVE) {
        remove_succeeded(ch, paused_ms);
    } else {
        update_succeeded(ch, paused_ms);
    }
    change_free(ch);
}

/* Runs ch as the vdisks table's format row says: every member suspends
 * the vdisk's I/O, the apply proposes the row, they resume. A create has
 * no vdisk id before its commit (the FSM assigns it): its run names no
 * vdisk, so nothing is held (no mount has I/O of it yet) and only the
 * round is paid. */
static void change_run(struct change *ch)
{
    uint64_t ids[1] = {ch->vdisk_id};
    size_t n_ids = ch->kind == CHANGE_CREATE ? 0 : 1;
    ndfs_reconfig_change(ch->s->reconfig, NDFS_CCD_VDISKS, ids, n_ids, change_apply, ch,
                         change_over, ch);
}

/* chmod, chown, resize: the vdisk must exist (its id is what the run
 * suspends); a resize is checked here too, so that a refused or empty one
 * pauses nothing. */
static void update_start(struct change *ch)
{
    struct ndfs_server *s = ch->s;
    struct ndfs_vdisk v = {0};
    int rc = ndfs_ccd_vdisk_get(s->ccd, ch->name, &v);
    if (rc < 0) {
        change_fail(ch, rc, change_verb(ch->kind));
        return;
    }
    ch->vdisk_id = v.id;
    uint64_t has = v.size;
    ndfs_vdisk_clear(&v);
    if (ch->kind == CHANGE_RESIZE) {
        if (ch->size < has) {
            g_autofree char *msg = shrink_refusal(ch->name, has, ch->size);
            change_fail_msg(ch, -EINVAL, msg);
            return;
        }
        /* a change of it queued or under way may change the size first */
        bool busy = s->reconfig != NULL && ndfs_reconfig_busy(s->reconfig, ch->vdisk_id);
        if (ch->size == has && !busy) {
            cmd_reply_remapped(s, ch->c, ch->id, ch->name, 0);
            change_free(ch);
            return;
        }
        if (ch->size > has) {
            /* its disks grow first, outside the run */
            rc = ndfs_ccd_vdisk_get(s->ccd, ch->name, &ch->v);
            if (rc < 0) {
                change_fail(ch, rc, change_verb(ch->kind));
                return;
            }
            ch->v.size = ch->size;
            ch->step = 0;
            resize_next(ch);
            return;
        }
    }
    change_run(ch);
}

void cmd_vdisk_chmod(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    uint32_t mode = 0;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_u32(r, "mode", true, &mode) < 0 ||
        cmd_check_mode(r, mode) < 0)
        return;
    struct change *ch = change_new(r, CHANGE_CHMOD, name);
    ch->mode = mode;
    update_start(ch);
}

void cmd_vdisk_chown(struct cmd_request *r)
{
    g_autofree char *name = NULL, *owner = NULL, *group = NULL;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_string(r, "owner", false, &owner) < 0 ||
        cmd_arg_string(r, "group", false, &group) < 0)
        return;
    if (owner == NULL && group == NULL) {
        cmd_reply_error(r, -EINVAL, "missing argument \"owner\" (or \"group\")");
        return;
    }
    if ((owner != NULL && cmd_check_account(r, owner, false) < 0) ||
        (group != NULL && cmd_check_account(r, group, true) < 0))
        return;
    struct change *ch = change_new(r, CHANGE_CHOWN, name);
    ch->owner = g_steal_pointer(&owner);
    ch->group = g_steal_pointer(&group);
    update_start(ch);
}

void cmd_vdisk_resize(struct cmd_request *r)
{
    g_autofree char *name = NULL;
    uint64_t size = 0;
    if (cmd_arg_vdisk_name(r, &name) < 0 || cmd_arg_u64(r, "size", true, &size) < 0)
        return;
    if (size == 0 || size % 512 != 0) {
        cmd_reply_error(r, -EINVAL, "size must be a positive multiple of 512 bytes");
        return;
    }
    struct change *ch = change_new(r, CHANGE_RESIZE, name);
    ch->size = size;
    update_start(ch);
}
