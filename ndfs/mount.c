/* ndfs SOCKET MOUNTPOINT [-o OPTIONS] [-f] [-d]: mounts the vdisks of the
 * cluster whose local ndfsd listens on SOCKET. Also started by mount.fuse3
 * for `mount -t fuse.ndfs SOCKET MOUNTPOINT` and fstab lines. */
#define G_LOG_DOMAIN "ndfs-fuse"

#include <errno.h>
#include <signal.h>
#include <fuse_lowlevel.h>
#include <glib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <ndfs/transport.h>

#include "control_link.h"
#include "driver.h"
#include "fuse_loop.h"
#include "fuse_ops.h"
#include "localio.h"
#include "vdisk_table.h"

#define EXIT_USAGE 2
/* AIO requests in flight on local disks: above what the kernel sends at once
 * (max_background, plus the FUSE threads' synchronous requests) */
#define NDFS_MOUNT_AIO_DEPTH 256

struct mount_options {
    char *socket;
    char *mountpoint;
    int foreground;
    int debug;
    int single_thread;
    int help;
    int version;
    int allow_other; /* -1: by default, when root mounts */
    int has_fsname;
    int clone_fd;
    unsigned max_threads;
    unsigned max_idle_threads;
    int extra_nonopts;
};

enum {
    KEY_DISCARD,
    KEY_KEEP,
    KEY_FOREGROUND,
    KEY_DEBUG,
    KEY_SINGLE,
    KEY_HELP,
    KEY_VERSION,
    KEY_ALLOW_OTHER,
    KEY_NOALLOW_OTHER,
    KEY_FSNAME,
    KEY_CLONE_FD,
    KEY_NOCLONE_FD,
};

#define NDFS_OPT(t, p)                                                                             \
    {                                                                                              \
        t, offsetof(struct mount_options, p), 1                                                    \
    }

static const struct fuse_opt ndfs_opts[] = {
    NDFS_OPT("max_threads=%u", max_threads),
    NDFS_OPT("max_idle_threads=%u", max_idle_threads),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("-s", KEY_SINGLE),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("noallow_other", KEY_NOALLOW_OTHER),
    FUSE_OPT_KEY("fsname=", KEY_FSNAME),
    FUSE_OPT_KEY("clone_fd", KEY_CLONE_FD),
    FUSE_OPT_KEY("noclone_fd", KEY_NOCLONE_FD),
    /* always on */
    FUSE_OPT_KEY("default_permissions", KEY_DISCARD),
    /* for mount(8) and fstab only, unknown to the kernel and to libfuse */
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("nouser", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("owner", KEY_DISCARD),
    FUSE_OPT_KEY("group", KEY_DISCARD),
    FUSE_OPT_KEY("comment=", KEY_DISCARD),
    FUSE_OPT_END,
};

static int parse_one(void *data, const char *arg, int key, struct fuse_args *out)
{
    (void)out;
    struct mount_options *o = data;
    switch (key) {
    case FUSE_OPT_KEY_NONOPT:
        if (!o->socket)
            o->socket = g_strdup(arg);
        else if (!o->mountpoint)
            o->mountpoint = g_strdup(arg);
        else
            o->extra_nonopts++;
        return 0;
    case FUSE_OPT_KEY_OPT:
        /* x-systemd.*, x-gvfs-* and the like are for other programs */
        return strncmp(arg, "x-", 2) == 0 ? 0 : 1;
    case KEY_FOREGROUND:
        o->foreground = 1;
        return 0;
    case KEY_DEBUG:
        o->debug = 1;
        o->foreground = 1;
        return 1; /* libfuse prints each request */
    case KEY_SINGLE:
        o->single_thread = 1;
        return 0;
    case KEY_HELP:
        o->help = 1;
        return 0;
    case KEY_VERSION:
        o->version = 1;
        return 0;
    case KEY_ALLOW_OTHER:
        o->allow_other = 1;
        return 0;
    case KEY_NOALLOW_OTHER:
        o->allow_other = 0;
        return 0;
    case KEY_FSNAME:
        o->has_fsname = 1;
        return 1;
    case KEY_CLONE_FD:
        o->clone_fd = 1;
        return 0;
    case KEY_NOCLONE_FD:
        o->clone_fd = 0;
        return 0;
    case KEY_DISCARD:
        return 0;
    }
    return 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ndfs SOCKET MOUNTPOINT [-o OPTION[,OPTION...]] [-f] [-d] [-s]\n"
                 "       mount -t fuse.ndfs SOCKET MOUNTPOINT [-o OPTIONS]\n"
                 "\n"
                 "Mounts the vdisks of the NDFS cluster whose local ndfsd listens on SOCKET.\n"
                 "\n"
                 "  -f                     stay in the foreground\n"
                 "  -d, -o debug           print every FUSE request (implies -f)\n"
                 "  -s                     one thread only\n"
                 "  -h, --help             this text\n"
                 "  -V, --version          versions of ndfs and libfuse\n"
                 "  -o allow_other         all users may use the mount (default when root mounts)\n"
                 "  -o noallow_other       only the mounting user may use the mount\n"
                 "  -o max_threads=N       N threads serve requests (default 8)\n"
                 "  -o clone_fd            libfuse's loop: a /dev/fuse descriptor per thread,\n"
                 "                         up to max_threads of them, remote writes copied\n"
                 "  -o noclone_fd          ndfs's loop, the default: one descriptor, large\n"
                 "                         writes sent from the buffer the kernel filled\n"
                 "  -o max_idle_threads=N  with clone_fd: keep at most N idle threads\n"
                 "  -o fsname=NAME         source shown in the mount table (default SOCKET)\n"
                 "Also the generic mount options (ro, nosuid, nodev, noexec, noatime...) and\n"
                 "the FUSE mount options of fuse(8). defaults, _netdev, nofail, auto, noauto,\n"
                 "user, users, nouser and x-* are for mount(8) and ignored here.\n");
}

static bool log_to_syslog;
static bool log_debug;

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                   gpointer data)
{
    if (!log_to_syslog)
        return g_log_writer_default(level, fields, n_fields, data);
    if ((level & G_LOG_LEVEL_DEBUG) && !log_debug)
        return G_LOG_WRITER_HANDLED;
    int priority = LOG_INFO;
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
        priority = LOG_ERR;
    else if (level & G_LOG_LEVEL_WARNING)
        priority = LOG_WARNING;
    else if (level & G_LOG_LEVEL_MESSAGE)
        priority = LOG_NOTICE;
    else if (level & G_LOG_LEVEL_DEBUG)
        priority = LOG_DEBUG;
    for (gsize i = 0; i < n_fields; i++)
        if (strcmp(fields[i].key, "MESSAGE") == 0) {
            syslog(priority, "%s", (const char *)fields[i].value);
            break;
        }
    return G_LOG_WRITER_HANDLED;
}

/* Adds "-oNAME=VALUE" with VALUE's commas escaped for fuse_opt. */
static int add_escaped_opt(struct fuse_args *args, const char *name, const char *value)
{
    char *escaped = NULL;
    if (fuse_opt_add_opt_escaped(&escaped, value) < 0)
        return -ENOMEM;
    g_autofree char *opt = g_strdup_printf("-o%s=%s", name, escaped);
    free(escaped);
    return fuse_opt_add_arg(args, opt) < 0 ? -ENOMEM : 0;
}

static int add_mount_args(struct fuse_args *args, const struct mount_options *o)
{
    if (fuse_opt_add_arg(args, "-odefault_permissions") < 0)
        return -ENOMEM;
    if (o->allow_other == 1 || (o->allow_other < 0 && geteuid() == 0))
        if (fuse_opt_add_arg(args, "-oallow_other") < 0)
            return -ENOMEM;
    if (!o->has_fsname && add_escaped_opt(args, "fsname", o->socket) < 0)
        return -ENOMEM;
    return add_escaped_opt(args, "subtype", "ndfs");
}

/* Local O_DIRECT I/O without holding a FUSE thread; without it (an old
 * kernel, fs.aio-max-nr reached) each FUSE thread does its own pread and
 * pwrite, as before. */
static void start_aio(struct ndfs_fs *fs, struct control_link *link)
{
    g_autofree char *errmsg = NULL;
    if (ndfs_aio_thread_new(NDFS_MOUNT_AIO_DEPTH, control_link_poll_us(link), &fs->aio, &errmsg) <
        0)
        g_warning("no AIO for local disks (%s): FUSE threads do their I/O themselves", errmsg);
}

static int serve(struct fuse_session *se, const struct mount_options *o)
{
    if (o->single_thread)
        return fuse_session_loop(se);
    if (!o->clone_fd) {
        struct ndfs_fuse_loop_stats st = {0};
        int rc = ndfs_fuse_loop(se, o->max_threads, NDFS_FUSE_REQUEST_MAX, &st);
        g_message("served %lu FUSE requests: %lu writes kept their receive buffer, %lu "
                  "buffers allocated",
                  st.requests, st.taken, st.allocated);
        return rc;
    }
    /* libfuse's loop: a /dev/fuse descriptor per thread, writes copied */
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg)
        return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(cfg, (unsigned)o->clone_fd);
    fuse_loop_cfg_set_idle_threads(cfg, o->max_idle_threads == UINT_MAX ? o->max_threads
                                                                        : o->max_idle_threads);
    fuse_loop_cfg_set_max_threads(cfg, o->max_threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

static void refresh_nodes(void *data)
{
    ndfs_driver_refresh_nodes(data);
}

static void mapping_changed(void *data)
{
    ndfs_driver_mapping_changed(data);
}

static void epoch_changed(void *data, uint64_t epoch)
{
    ndfs_driver_set_epoch(data, epoch);
}

static void suspend_vdisks(void *data, uint64_t txid, const uint64_t *ids, size_t n_ids)
{
    ndfs_driver_suspend(data, txid, ids, n_ids);
}

static void resume_vdisks(void *data, uint64_t txid, bool committed)
{
    ndfs_driver_resume(data, txid, committed);
}

static void resume_all(void *data)
{
    ndfs_driver_resume_all(data);
}

/* The driver's route: the vdisk's master in the table now. */
static int route_vdisk(void *data, uint64_t vdisk_id, struct vdisk_master *out)
{
    return vdisk_table_master(data, vdisk_id, out);
}

/* The driver for vdisks other nodes master, when ndfsd is in a cluster
 * (its hello names the key file). 0 and NULL without network. */
static int start_driver(struct control_link *link, struct vdisk_table *table, const char *node,
                        struct ndfs_driver **out)
{
    *out = NULL;
    g_autofree char *key_file = control_link_key_file(link);
    if (!key_file[0])
        return 0;
    uint8_t *key = NULL;
    size_t key_len = 0;
    g_autofree char *errmsg = NULL;
    int rc = ndfs_transport_key_load(key_file, &key, &key_len, &errmsg);
    if (rc < 0) {
        g_warning("cannot read the cluster key %s: %s; vdisks of other nodes are out of reach",
                  key_file, errmsg ? errmsg : g_strerror(-rc));
        return 0;
    }
    struct ndfs_driver_config cfg = {
        .node_name = node,
        .key = key,
        .key_len = key_len,
        .link = link,
        .epoch = control_link_epoch(link),
        .poll_us = control_link_poll_us(link),
        .route = route_vdisk,
        .route_data = table,
    };
    const char *part = g_getenv("NDFS_DRIVER_PART_SIZE"); /* tests: split small requests */
    if (part)
        cfg.part_size = (size_t)g_ascii_strtoull(part, NULL, 10);
    rc = ndfs_driver_new(&cfg, out, &errmsg);
    memset(key, 0, key_len);
    g_free(key);
    if (rc < 0) {
        g_warning("cannot start remote I/O: %s", errmsg);
        return rc;
    }
    static const struct control_link_callbacks cbs = {
        .nodes = refresh_nodes,
        .mapping = mapping_changed,
        .epoch = epoch_changed,
        .suspend = suspend_vdisks,
        .resume = resume_vdisks,
        .resume_all = resume_all,
    };
    control_link_set_callbacks(link, &cbs, *out);
    /* what changed between the hello and now */
    ndfs_driver_set_epoch(*out, control_link_epoch(link));
    ndfs_driver_mapping_changed(*out);
    return 0;
}

static int run(struct mount_options *o, struct fuse_args *args)
{
    struct vdisk_table *table = vdisk_table_new();
    struct control_link *link = control_link_new(o->socket, table);
    struct fuse_session *se = NULL;
    struct ndfs_driver *driver = NULL;
    struct ndfs_fs fs;
    bool mounted = false, signals = false;
    int status = 1;

    /* fail at once, before the mount, when ndfsd is not there */
    g_autofree char *errmsg = NULL;
    if (control_link_connect(link, &errmsg) < 0) {
        fprintf(stderr, "ndfs: cannot connect to %s: %s (is ndfsd running?)\n", o->socket, errmsg);
        control_link_free(link);
        vdisk_table_free(table);
        return 1;
    }
    ndfs_fs_init(&fs, table, link);
    fs.node_name = control_link_node_name(link);

    se = fuse_session_new(args, &ndfs_fuse_ops, sizeof(ndfs_fuse_ops), &fs);
    if (!se)
        goto out; /* libfuse said why */
    if (fuse_set_signal_handlers(se) < 0)
        goto out;
    signals = true;
    if (fuse_session_mount(se, o->mountpoint) < 0)
        goto out;
    mounted = true;
    if (!o->foreground) {
        /* the client's reader thread would not survive fork() */
        control_link_disconnect(link);
        if (fuse_daemonize(0) < 0)
            goto out;
        openlog("ndfs", LOG_PID, LOG_DAEMON);
        log_to_syslog = true;
    }
    if (control_link_start(link, se) < 0)
        goto out;
    /* after fuse_daemonize(): its thread would not survive the fork */
    if (start_driver(link, table, fs.node_name, &driver) < 0)
        goto out;
    fs.driver = driver;
    /* the network path on one node, to test and measure it */
    fs.force_remote = g_strcmp0(g_getenv("NDFS_FORCE_REMOTE"), "1") == 0;
    start_aio(&fs, link);
    g_message("mounted %s on %s as node \"%s\"", o->socket, o->mountpoint, fs.node_name);
    int rc = serve(se, o);
    /* > 0: ended by that signal, which is how SIGTERM unmounts */
    status = rc < 0 ? 1 : 0;
    if (rc < 0)
        g_warning("the FUSE session ended: %s", g_strerror(-rc));
out:
    if (mounted)
        fuse_session_unmount(se);
    if (signals)
        fuse_remove_signal_handlers(se);
    /* libfuse put SIGPIPE back to its default: the driver's transport and
     * the control link still write to sockets a peer may have closed */
    signal(SIGPIPE, SIG_IGN);
    /* the driver answers what is left and uses the link: stop it first */
    control_link_set_callbacks(link, NULL, NULL);
    /* AIO completions end local I/O in the driver, or resend through it */
    ndfs_aio_thread_free(fs.aio);
    ndfs_driver_free(driver);
    /* remote handles send through the driver: it is gone, and they only
     * close their disks and tell ndfsd now */
    ndfs_fs_release_all(&fs);
    /* the link's thread uses the session: stop it first */
    control_link_free(link);
    if (se)
        fuse_session_destroy(se);
    ndfs_fs_clear(&fs);
    vdisk_table_free(table);
    return status;
}

int main(int argc, char *argv[])
{
    /* as ndfsd: libuv writes with write(2); a closed peer is an error code */
    signal(SIGPIPE, SIG_IGN);
    localio_tune_malloc(); /* before any thread starts */
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct mount_options o = {
        .allow_other = -1,
        .clone_fd = 0,
        /* Local O_DIRECT transfers go through AIO and remote ones through
         * the driver, so a FUSE thread rarely waits: more threads only mean
         * more of them asleep, and each queued request then wakes one
         * (libaio QD32 writes on a local vdisk, medians of 3: 61.9k IOPS
         * with 8, 52.1k with 16, 44.6k with 32) */
        .max_threads = 8,
        /* UINT_MAX: max_threads. Fewer made libfuse end and start threads
         * (each with its /dev/fuse clone and buffer) all the time under
         * libaio QD32 on a local vdisk: 322 thread starts per 20000 writes */
        .max_idle_threads = UINT_MAX,
    };
    g_log_set_writer_func(log_writer, NULL, NULL);
    if (fuse_opt_parse(&args, &o, ndfs_opts, parse_one) < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    int status = 0;
    if (o.help) {
        usage(stdout);
    } else if (o.version) {
        printf("ndfs %s\nlibfuse %s\n", NDFS_VERSION, fuse_pkgversion());
    } else if (!o.socket || !o.mountpoint || o.extra_nonopts) {
        fprintf(stderr, "ndfs: %s\n",
                o.extra_nonopts ? "too many arguments" : "SOCKET and MOUNTPOINT are needed");
        usage(stderr);
        status = EXIT_USAGE;
    } else if (o.max_threads < 1) {
        fprintf(stderr, "ndfs: max_threads must be at least 1\n");
        status = EXIT_USAGE;
    } else {
        log_debug = o.debug;
        if (o.debug)
            g_log_set_debug_enabled(TRUE);
        /* fuse_daemonize() changes to /: keep the paths meaningful */
        char *socket = g_canonicalize_filename(o.socket, NULL);
        g_free(o.socket);
        o.socket = socket;
        char real_mp[PATH_MAX];
        if (realpath(o.mountpoint, real_mp)) {
            g_free(o.mountpoint);
            o.mountpoint = g_strdup(real_mp);
        }
        if (add_mount_args(&args, &o) < 0) {
            fprintf(stderr, "ndfs: out of memory\n");
            status = 1;
        } else {
            status = run(&o, &args);
        }
    }
    fuse_opt_free_args(&args);
    g_free(o.socket);
    g_free(o.mountpoint);
    return status;
}
