/* ndfsd: the node daemon. Loads the configuration, opens the CCD, serves
 * the control socket, and stops cleanly on SIGTERM/SIGINT. See ndfsd(8). */
#define G_LOG_DOMAIN "ndfsd"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <uv.h>

#include <ndfs/ccd.h>
#include <ndfs/membership.h>
#include <ndfs/transport.h>

#include "cluster.h"
#include "config.h"
#include "failover.h"
#include "master.h"
#include "reconfig.h"
#include "server.h"

#define JOURNALD_SOCKET "/run/systemd/journal/socket"

/* Where log lines go; set up once in main before the loop runs. */
static struct {
    bool to_stderr;
    bool to_journald;
    int fd; /* log file, -1 when none (yet) */
} log_target = {.fd = -1};

struct daemon {
    uv_loop_t loop;
    struct ndfs_config cfg;
    struct ndfs_ccd *ccd;
    struct ndfs_server *server;
    struct ndfs_cluster *cluster;       /* NULL without [cluster] listen */
    struct ndfs_membership *membership; /* with cluster, once the CCD is ready */
    struct ndfs_master *master;         /* with cluster, once the CCD is ready */
    struct ndfs_failover *failover;     /* with cluster, once the CCD is ready */
    struct ndfs_reconfig *reconfig;     /* once the CCD is ready */
    const char *log_file;
    uv_signal_t sigterm, sigint;
    uv_idle_t stopper; /* runs the shutdown outside of the callback that asked for it */
    int ready_fd;      /* daemonised: pipe to the waiting parent, -1 once told */
    bool foreground;
    bool started; /* past the data-dir lock: "stopped" is worth a log line */
    bool ready;
    bool joining; /* waiting for the answer to a join request */
    bool stopping;
    int exit_status;
};

static const char *level_name(GLogLevelFlags level)
{
    if (level & G_LOG_LEVEL_ERROR)
        return "error";
    if (level & G_LOG_LEVEL_CRITICAL)
        return "critical";
    if (level & G_LOG_LEVEL_WARNING)
        return "warning";
    if (level & G_LOG_LEVEL_DEBUG)
        return "debug";
    if (level & G_LOG_LEVEL_INFO)
        return "info";
    return "message";
}

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                   gpointer data)
{
    const char *domain = NULL, *message = "";
    gssize message_len = -1;

    for (gsize i = 0; i < n_fields; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0) {
            domain = fields[i].value;
        } else if (strcmp(fields[i].key, "MESSAGE") == 0) {
            message = fields[i].value;
            message_len = fields[i].length;
        }
    }
    if (g_log_writer_default_would_drop(level, domain))
        return G_LOG_WRITER_HANDLED;
    if (log_target.to_journald &&
        g_log_writer_journald(level, fields, n_fields, data) == G_LOG_WRITER_HANDLED)
        return G_LOG_WRITER_HANDLED;
    int fd = log_target.to_stderr ? STDERR_FILENO : log_target.fd;
    if (fd < 0)
        return G_LOG_WRITER_HANDLED;

    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%f");
    g_autofree char *line =
        g_strdup_printf("%.23s ndfsd[%d] %s %s: %.*s\n", stamp, (int)getpid(), level_name(level),
                        domain ? domain : "ndfsd",
                        message_len < 0 ? (int)strlen(message) : (int)message_len, message);
    /* one write per line: lines of concurrent writers do not interleave */
    ssize_t len = (ssize_t)strlen(line);
    if (write(fd, line, (size_t)len) != len)
        return G_LOG_WRITER_UNHANDLED;
    return G_LOG_WRITER_HANDLED;
}

static int open_log_file(const char *path, char **errmsg)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        *errmsg = g_strdup_printf("cannot open log file %s: %s", path, g_strerror(errno));
        return -1;
    }
    return fd;
}

/* Forks; the parent waits until the child reports ready (exit 0) or an
 * error (printed, exit 1) and never returns. Returns the pipe's write end
 * in the child. */
static int daemonise(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        fprintf(stderr, "ndfsd: cannot create a pipe: %s\n", g_strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ndfsd: cannot fork: %s\n", g_strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        if (setsid() < 0)
            g_warning("setsid failed: %s", g_strerror(errno));
        return fds[1];
    }
    close(fds[1]);
    GString *report = g_string_new(NULL);
    char buf[512];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        g_string_append_len(report, buf, n);
    }
    close(fds[0]);
    if (report->len > 0 && report->str[0] == 'R')
        exit(0);
    if (report->len > 1 && report->str[0] == 'E') {
        fprintf(stderr, "ndfsd: %s\n", report->str + 1);
        exit(1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
        fprintf(stderr, "ndfsd: the daemon was killed by signal %d during startup\n",
                WTERMSIG(status));
    else
        fprintf(stderr, "ndfsd: the daemon exited during startup\n");
    exit(1);
}

/* Tells the parent the outcome of the startup (daemonised only). */
static void report_startup(struct daemon *d, const char *error)
{
    if (d->ready_fd < 0)
        return;
    g_autofree char *msg = error ? g_strconcat("E", error, NULL) : g_strdup("R");
    size_t len = strlen(msg), off = 0;
    while (off < len) {
        ssize_t n = write(d->ready_fd, msg + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(d->ready_fd);
    d->ready_fd = -1;
}

static void on_handle_closed(uv_handle_t *handle)
{
    (void)handle;
}

static void finish_stop(void *data)
{
    struct daemon *d = data;
    d->cluster = NULL;
    uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&d->stopper, on_handle_closed);
    if (d->started)
        g_message("stopped");
}

static void on_ccd_closed(void *data)
{
    struct daemon *d = data;
    d->ccd = NULL;
    ndfs_server_free(d->server);
    d->server = NULL;
    /* the transport outlives the CCD and the membership (which unregisters
     * its channel when it closes) */
    if (d->membership != NULL) {
        ndfs_membership_close(d->membership);
        d->membership = NULL;
    }
    if (d->cluster != NULL)
        ndfs_cluster_close(d->cluster, finish_stop, d);
    else
        finish_stop(d);
}

static void close_ccd(struct daemon *d)
{
    if (d->ccd != NULL)
        ndfs_ccd_close(d->ccd, on_ccd_closed, d);
    else
        on_ccd_closed(d);
}

static void on_master_closed(void *data)
{
    struct daemon *d = data;
    d->master = NULL;
    close_ccd(d);
}

static void close_master(struct daemon *d)
{
    if (d->master != NULL) {
        /* late IO requests are released by the transport (logged once) */
        int rc = d->cluster ? ndfs_transport_unregister(ndfs_cluster_transport(d->cluster),
                                                        NDFS_CHANNEL_IO)
                            : 0;
        if (rc < 0 && rc != -ENOENT)
            g_warning("cannot unregister the IO channel: %s", g_strerror(-rc));
        ndfs_master_close(d->master, on_master_closed, d);
    } else {
        close_ccd(d);
    }
}

static void on_failover_closed(void *data)
{
    struct daemon *d = data;
    d->failover = NULL;
    close_master(d);
}

static void close_failover(struct daemon *d)
{
    if (d->failover != NULL)
        ndfs_failover_close(d->failover, on_failover_closed, d);
    else
        close_master(d);
}

static void on_reconfig_closed(void *data)
{
    close_failover(data);
}

/* Order: control socket, reconfiguration (runs in flight fail, members
 * resume), failover (kills a fence command still running; its
 * CCD proposals and calls in flight are dropped when they answer), master
 * (its requests hold transport messages; its channel goes first so that no
 * message reaches it once it is freed), CCD, then membership and
 * transport. */
static void on_stopper(uv_idle_t *handle)
{
    struct daemon *d = handle->data;
    uv_idle_stop(handle);
    if (d->server != NULL)
        ndfs_server_stop(d->server);
    if (d->ccd != NULL)
        ndfs_ccd_set_watch(d->ccd, NULL, NULL);
    if (d->membership != NULL) {
        ndfs_membership_set_change_cb(d->membership, NULL, NULL);
        ndfs_membership_set_lease_cb(d->membership, NULL, NULL);
    }
    if (d->master != NULL)
        ndfs_master_set_path_failed_cb(d->master, NULL, NULL);
    if (d->server != NULL)
        ndfs_server_set_master(d->server, NULL);
    /* other nodes' requests are answered "stopping" from now on */
    if (d->cluster != NULL) {
        ndfs_cluster_set_server(d->cluster, NULL);
        ndfs_cluster_set_ccd(d->cluster, NULL);
        ndfs_cluster_set_reconfig(d->cluster, NULL);
    }
    if (d->reconfig != NULL) {
        struct ndfs_reconfig *r = d->reconfig;
        d->reconfig = NULL;
        if (d->server != NULL)
            ndfs_server_set_reconfig(d->server, NULL);
        ndfs_reconfig_close(r, on_reconfig_closed, d);
        return;
    }
    close_failover(d);
}

/* The CCD may be inside one of its callbacks: close it on the next turn. */
static void shutdown_daemon(struct daemon *d, int exit_status)
{
    if (d->stopping)
        return;
    d->stopping = true;
    d->exit_status = exit_status;
    uv_idle_start(&d->stopper, on_stopper);
}

static void startup_failed(struct daemon *d, const char *error)
{
    if (d->ready_fd >= 0) {
        g_warning("cannot start: %s", error);
        report_startup(d, error);
    } else {
        fprintf(stderr, "ndfsd: %s\n", error);
    }
    shutdown_daemon(d, 1);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    struct daemon *d = handle->data;
    if (d->stopping)
        return;
    g_message("stopping on %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    if (!d->ready && d->ready_fd >= 0)
        report_startup(d, "stopped by a signal during startup");
    shutdown_daemon(d, 0);
}

static void detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        g_warning("cannot open /dev/null: %s", g_strerror(errno));
        return;
    }
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
}

/* Every CCD change, after the control server has announced it. */
static void on_ccd_change(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key,
                          bool removed, void *data)
{
    struct daemon *d = data;
    (void)ccd;
    if (d->stopping)
        return;
    if (d->cluster != NULL)
        ndfs_cluster_ccd_changed(d->cluster, table, key, removed);
    if (d->membership != NULL)
        ndfs_membership_ccd_changed(d->membership, table);
    if (d->master != NULL && table == NDFS_CCD_VDISKS)
        ndfs_master_vdisk_changed(d->master, key, removed);
    if (d->failover != NULL)
        ndfs_failover_ccd_changed(d->failover, table);
    /* without membership (a single node) the epoch comes from here; the
     * vdisk row of a mapping change was announced before (the FSM records
     * the row before the epoch) */
    if (d->membership == NULL && d->server != NULL &&
        (table == NDFS_CCD_META || table == NDFS_CCD_MEMBERSHIP)) {
        struct ndfs_ccd_status st = {0};
        if (ndfs_ccd_status(d->ccd, &st) == 0)
            ndfs_server_epoch_changed(d->server, st.epoch);
        ndfs_ccd_status_clear(&st);
    }
}

/* A new committed epoch or members: watchers of the control socket (the
 * mounts) hear of the epoch; the failover looks at the masters again. */
static void on_membership_change(struct ndfs_membership *m, uint64_t epoch,
                                 const char *const *members, void *data)
{
    struct daemon *d = data;
    (void)m;
    (void)members;
    if (d->stopping)
        return;
    if (d->server != NULL)
        ndfs_server_epoch_changed(d->server, epoch);
    if (d->failover != NULL)
        ndfs_failover_membership_changed(d->failover);
}

/* This node's lease moved: mounts here do local disk I/O only within it. */
static void on_lease(struct ndfs_membership *m, uint64_t expiry_ns, void *data)
{
    struct daemon *d = data;
    (void)m;
    if (!d->stopping && d->server != NULL)
        ndfs_server_lease_changed(d->server, expiry_ns);
}

/* A master here saw a vdisk's disk fail: the path is marked failed. */
static void on_path_failed(struct ndfs_master *master, const char *vdisk, int err, void *data)
{
    struct daemon *d = data;
    (void)master;
    if (!d->stopping && d->failover != NULL)
        ndfs_failover_path_failed(d->failover, vdisk, err);
}

/* A removed node has no business in the cluster any more. */
static void on_removed(struct ndfs_cluster *c, void *data)
{
    (void)c;
    shutdown_daemon(data, 0);
}

/* The leader says we are not in the nodes table any more. */
static void on_membership_removed(struct ndfs_membership *m, const char *leader, void *data)
{
    (void)m;
    (void)leader;
    shutdown_daemon(data, 0);
}

/* Membership and master, once the CCD replica is caught up. */
static int start_cluster_parts(struct daemon *d, char **errmsg)
{
    struct ndfs_transport *t = ndfs_cluster_transport(d->cluster);
    struct ndfs_membership_config mcfg = {
        .node_name = d->cfg.node_name,
        .heartbeat_interval_ms = d->cfg.heartbeat_interval_ms,
        .failure_timeout_ms = d->cfg.failure_timeout_ms,
    };
    int rc = ndfs_membership_new(&d->loop, &mcfg, t, d->ccd, &d->membership, errmsg);
    if (rc < 0)
        return rc;
    rc = ndfs_membership_start(d->membership);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot start the membership: %s", g_strerror(-rc));
        return rc;
    }
    rc = ndfs_master_new(&d->loop, t, d->ccd, d->membership, d->cfg.node_name, &d->master, errmsg);
    if (rc < 0)
        return rc;
    rc = ndfs_failover_new(&d->loop, d->ccd, d->membership, d->cluster, d->cfg.node_name,
                           d->cfg.fence_command, &d->failover, errmsg);
    if (rc < 0)
        return rc;
    ndfs_membership_set_change_cb(d->membership, on_membership_change, d);
    ndfs_membership_set_lease_cb(d->membership, on_lease, d);
    ndfs_master_set_path_failed_cb(d->master, on_path_failed, d);
    ndfs_master_set_poll_us(d->master, d->cfg.poll_us);
    ndfs_master_set_read_inflight(d->master, d->cfg.read_inflight);
    if (d->server)
        ndfs_server_set_master(d->server, d->master);
    rc = ndfs_reconfig_new(&d->loop, d->ccd, d->membership, d->cluster, d->server, d->cfg.node_name,
                           d->cfg.ack_timeout_ms, &d->reconfig, errmsg);
    if (rc < 0)
        return rc;
    ndfs_reconfig_set_master(d->reconfig, d->master);
    ndfs_server_set_reconfig(d->server, d->reconfig);
    ndfs_cluster_set_reconfig(d->cluster, d->reconfig);
    ndfs_server_epoch_changed(d->server, ndfs_membership_epoch(d->membership));
    ndfs_cluster_set_membership(d->cluster, d->membership);
    ndfs_cluster_set_removed_cb(d->cluster, on_removed, d);
    ndfs_membership_set_removed_cb(d->membership, on_membership_removed, d);
    ndfs_server_set_membership(d->server, d->membership);
    ndfs_cluster_ccd_ready(d->cluster);
    return 0;
}

static void on_ccd_ready(struct ndfs_ccd *ccd, int status, void *data)
{
    struct daemon *d = data;

    if (d->stopping)
        return;
    if (status < 0) {
        g_autofree char *error = g_strdup_printf("cannot start the CCD in %s: %s", d->cfg.data_dir,
                                                 ndfs_ccd_errmsg(ccd));
        startup_failed(d, error);
        return;
    }
    g_autofree char *errmsg = NULL;
    int rc = ndfs_server_listen(d->server, &errmsg);
    if (rc < 0) {
        startup_failed(d, errmsg);
        return;
    }
    if (d->cluster != NULL && start_cluster_parts(d, &errmsg) < 0) {
        startup_failed(d, errmsg);
        return;
    }
    /* a single node without network runs the protocol with itself */
    if (d->cluster == NULL) {
        rc = ndfs_reconfig_new(&d->loop, d->ccd, NULL, NULL, d->server, d->cfg.node_name,
                               d->cfg.ack_timeout_ms, &d->reconfig, &errmsg);
        if (rc < 0) {
            startup_failed(d, errmsg);
            return;
        }
        ndfs_server_set_reconfig(d->server, d->reconfig);
    }
    d->server->watch_chain = on_ccd_change;
    d->server->watch_chain_data = d;
    struct ndfs_ccd_status st = {0};
    if (ndfs_ccd_status(ccd, &st) == 0) {
        /* a restarted node is ready from its own replica, leader or not */
        g_message("ready: node %s, cluster %s, epoch %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                  " vdisks, control socket %s%s",
                  d->cfg.node_name, st.cluster_id, st.epoch, st.vdisks, d->cfg.control_socket,
                  ndfs_ccd_current(ccd) ? ""
                                        : " (replica from the local log: it catches up once a "
                                          "leader is reachable)");
        ndfs_ccd_status_clear(&st);
    } else {
        g_message("ready: node %s, control socket %s", d->cfg.node_name, d->cfg.control_socket);
    }
    d->ready = true;
    if (d->ready_fd >= 0) {
        report_startup(d, NULL);
        detach_stdio();
        if (chdir("/") < 0)
            g_warning("cannot chdir to /: %s", g_strerror(errno));
    }
}

static void close_leftover(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

/* A data dir that already belongs to a node (it joined or bootstrapped). */
static bool has_node_id(const char *data_dir)
{
    g_autofree char *path = g_build_filename(data_dir, "node-id", NULL);
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

/* Takes the data dir, prepares the control socket and starts the CCD. */
static void open_ccd(struct daemon *d, uint64_t node_id)
{
    g_autofree char *errmsg = NULL;
    struct ndfs_ccd_config ccd_cfg = {
        .data_dir = d->cfg.data_dir,
        .node_name = d->cfg.node_name,
        .snapshot_threshold = d->cfg.snapshot_threshold,
    };
    if (d->cluster != NULL) {
        ccd_cfg.transport = ndfs_cluster_transport(d->cluster);
        ccd_cfg.addresses = (const char *const *)d->cfg.listen_addrs;
        ccd_cfg.join = d->cfg.join[0] != '\0';
        ccd_cfg.node_id = node_id;
        ccd_cfg.election_timeout_ms = d->cfg.election_timeout_ms;
    }
    int rc = ndfs_ccd_open(&d->loop, &ccd_cfg, &d->ccd, &errmsg);
    if (rc < 0) {
        g_autofree char *error =
            rc == -EBUSY && errmsg != NULL && strstr(errmsg, "data-dir") == NULL
                ? g_strdup_printf("data-dir %s is in use by another ndfsd (%s)", d->cfg.data_dir,
                                  errmsg)
                : g_strdup(errmsg ? errmsg : g_strerror(-rc));
        d->ccd = NULL;
        startup_failed(d, error);
        return;
    }
    if (d->cluster != NULL)
        ndfs_cluster_set_ccd(d->cluster, d->ccd);
    /* before the CCD starts: a refusal here leaves the data-dir untouched */
    g_clear_pointer(&errmsg, g_free);
    rc = ndfs_server_new(&d->loop, d->ccd, d->cfg.node_name, d->cfg.control_socket,
                         d->cfg.admin_group, &d->server, &errmsg);
    if (rc < 0) {
        startup_failed(d, errmsg);
        return;
    }
    ndfs_server_set_io_timeout(d->server, d->cfg.io_timeout_ms);
    ndfs_server_set_poll_us(d->server, d->cfg.poll_us);
    if (d->cluster != NULL) {
        ndfs_server_set_cluster(d->server, d->cluster, d->cfg.key_file);
        ndfs_cluster_set_server(d->cluster, d->server);
    }
    if (!d->foreground && !log_target.to_journald && d->log_file == NULL && log_target.fd < 0) {
        g_autofree char *path = g_build_filename(d->cfg.data_dir, "ndfsd.log", NULL);
        g_clear_pointer(&errmsg, g_free);
        log_target.fd = open_log_file(path, &errmsg);
        if (log_target.fd < 0) {
            startup_failed(d, errmsg);
            return;
        }
    }
    d->started = true;
    g_message("starting node %s, data-dir %s, version %s%s", d->cfg.node_name, d->cfg.data_dir,
              NDFS_VERSION, d->cluster ? ", cluster" : "");

    rc = ndfs_ccd_start(d->ccd, on_ccd_ready, d);
    if (rc < 0) {
        g_autofree char *error = g_strdup_printf("cannot start the CCD in %s: %s", d->cfg.data_dir,
                                                 ndfs_ccd_errmsg(d->ccd));
        startup_failed(d, error);
    }
}

static void on_joined(struct ndfs_cluster *c, int status, uint64_t id, const char *errmsg,
                      void *data)
{
    struct daemon *d = data;
    (void)c;
    d->joining = false;
    if (d->stopping)
        return;
    if (status < 0) {
        startup_failed(d, errmsg);
        return;
    }
    open_ccd(d, id);
}

static int run(struct daemon *d, const char *log_file)
{
    g_autofree char *errmsg = NULL;
    int rc;

    rc = uv_loop_init(&d->loop);
    if (rc < 0) {
        g_autofree char *error =
            g_strdup_printf("cannot create the event loop: %s", uv_strerror(rc));
        if (d->ready_fd >= 0)
            report_startup(d, error);
        else
            fprintf(stderr, "ndfsd: %s\n", error);
        return 1;
    }
    /* from here on, shutdown_daemon() can close everything */
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    d->sigterm.data = d;
    d->sigint.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_idle_init(&d->loop, &d->stopper);
    d->stopper.data = d;
    d->log_file = log_file;

    if (d->cfg.listen_addrs != NULL && d->cfg.listen_addrs[0] != NULL) {
        rc = ndfs_cluster_new(&d->loop, &d->cfg, &d->cluster, &errmsg);
        if (rc < 0) {
            g_autofree char *error = g_strdup_printf("%s: %s", d->cfg.file, errmsg);
            startup_failed(d, error);
            goto run_loop;
        }
        g_clear_pointer(&errmsg, g_free);
        rc = ndfs_cluster_start(d->cluster, &errmsg);
        if (rc < 0) {
            startup_failed(d, errmsg);
            goto run_loop;
        }
        if (d->cfg.join[0] != '\0' && !has_node_id(d->cfg.data_dir)) {
            d->joining = true;
            rc = ndfs_cluster_join(d->cluster, on_joined, d);
            if (rc < 0) {
                d->joining = false;
                g_autofree char *error = g_strdup_printf("cannot join the cluster through %s: %s",
                                                         d->cfg.join, g_strerror(-rc));
                startup_failed(d, error);
            }
            goto run_loop;
        }
    }
    open_ccd(d, 0);

run_loop:
    uv_run(&d->loop, UV_RUN_DEFAULT);
    /* everything should be closed by now; close stragglers so the loop can go */
    uv_walk(&d->loop, close_leftover, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&d->loop);
    if (rc < 0)
        g_warning("event loop still busy at exit: %s", uv_strerror(rc));
    return d->exit_status;
}

int main(int argc, char **argv)
{
    g_autofree char *config_file = NULL;
    g_autofree char *log_file = NULL;
    gboolean foreground = FALSE, version = FALSE;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Configuration file", "FILE"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
         "Stay in the foreground and log to stderr", NULL},
        {"log-file", 0, 0, G_OPTION_ARG_FILENAME, &log_file,
         "Log to FILE when daemonised (default: journald, else <data-dir>/ndfsd.log)", "FILE"},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- NDFS node daemon");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "ndfsd: %s (see ndfsd --help)\n", error->message);
        return 2;
    }
    if (version) {
        printf("ndfsd %s\n", NDFS_VERSION);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "ndfsd: unexpected argument \"%s\" (see ndfsd --help)\n", argv[1]);
        return 2;
    }
    if (config_file == NULL) {
        fprintf(stderr, "ndfsd: missing -c FILE (see ndfsd --help)\n");
        return 2;
    }

    struct daemon d = {.ready_fd = -1, .foreground = foreground};
    if (ndfs_config_load(config_file, &d.cfg, &error) < 0) {
        fprintf(stderr, "ndfsd: %s\n", error->message);
        ndfs_config_clear(&d.cfg);
        return 1;
    }
    /* checked here too, before anything is touched, to name the file */
    if (d.cfg.admin_group != NULL && d.cfg.admin_group[0] != '\0' &&
        getgrnam(d.cfg.admin_group) == NULL) {
        fprintf(stderr, "ndfsd: %s: [node] admin-group: group \"%s\" does not exist\n", config_file,
                d.cfg.admin_group);
        ndfs_config_clear(&d.cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    log_target.to_stderr = foreground;
    if (!foreground) {
        log_target.to_journald =
            log_file == NULL && g_file_test(JOURNALD_SOCKET, G_FILE_TEST_EXISTS);
        if (log_file != NULL) {
            g_autofree char *errmsg = NULL;
            log_target.fd = open_log_file(log_file, &errmsg);
            if (log_target.fd < 0) {
                fprintf(stderr, "ndfsd: %s\n", errmsg);
                ndfs_config_clear(&d.cfg);
                return 1;
            }
        }
    }
    g_log_set_writer_func(log_writer, NULL, NULL);
    if (!foreground)
        d.ready_fd = daemonise();

    int status = run(&d, log_file);
    ndfs_config_clear(&d.cfg);
    if (log_target.fd >= 0)
        close(log_target.fd);
    return status;
}
