/* The multi-node parts of the CCD: the node id file, the transport's peers
 * (kept in step with the nodes table and saved in <data_dir>/peers, so that a
 * whole cluster can restart before any log entry is applied), the leader's
 * reconciliation of the Raft configuration with the nodes table, and the
 * cluster API of include/ndfs/ccd.h.
 *
 * Why reconcile instead of raft_add + raft_assign in ndfs_ccd_node_add: the
 * promotion of a voter waits until the new server has caught up, which needs
 * it running, which needs its id. So node_add commits the row (the id), and
 * the leader drives Raft towards the rows one change at a time: add (spare),
 * assign standby, promote to voter once its log matches ours, remove servers
 * whose row is gone. A new leader picks up where the last one stopped. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ccd_private.h"
#include "ndfs/transport.h"

#define NODE_ID_FILE "node-id"
#define PEERS_FILE   "peers"
/* a standby is promoted once its log is this close to ours */
#define PROMOTE_SLACK 8

int ccd_node_id_load(struct ndfs_ccd *ccd, const struct ndfs_ccd_config *cfg, char **errmsg)
{
    g_autofree char *path = g_build_filename(ccd->data_dir, NODE_ID_FILE, NULL);
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;

    if (g_file_get_contents(path, &text, NULL, &err)) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(g_strstrip(text), &end, 10);
        if (errno != 0 || *end != '\0' || id == 0) {
            *errmsg = g_strdup_printf("%s: not a node id", path);
            return -EINVAL;
        }
        if (cfg->node_id != 0 && cfg->node_id != id) {
            *errmsg = g_strdup_printf("%s says node id %llu, not %llu: this data dir belongs to "
                                      "another node",
                                      path, id, (unsigned long long)cfg->node_id);
            return -EINVAL;
        }
        ccd->node_id = id;
        return 0;
    }
    if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        *errmsg = g_strdup_printf("%s: %s", path, err->message);
        return -EIO;
    }
    if (cfg->join && cfg->node_id == 0) {
        *errmsg = g_strdup("joining a cluster needs the node id the leader assigned");
        return -EINVAL;
    }
    /* data dirs from before node ids were stored belong to node 1 */
    ccd->node_id = cfg->join ? cfg->node_id : 1;
    g_autofree char *line = g_strdup_printf("%llu\n", (unsigned long long)ccd->node_id);
    g_clear_error(&err);
    if (!g_file_set_contents(path, line, -1, &err)) {
        *errmsg = g_strdup_printf("%s: %s", path, err->message);
        return -EIO;
    }
    return 0;
}

uint64_t ndfs_ccd_node_id(const struct ndfs_ccd *ccd)
{
    return ccd->node_id;
}

/* Tells the transport about peer name (never ourselves); skips what it knows. */
static void peer_set(struct ndfs_ccd *ccd, const char *name, char **addresses)
{
    if (strcmp(name, ccd->node_name) == 0 || addresses == NULL || addresses[0] == NULL)
        return;
    g_autofree char *joined = g_strjoinv(";", addresses);
    const char *known = g_hash_table_lookup(ccd->peers, name);
    if (known && strcmp(known, joined) == 0)
        return;
    int rc = ccd_bridge_peer_set(ccd->net, name, (const char *const *)addresses);
    if (rc != 0) {
        g_warning("node %s (%s): cannot configure the transport peer: %s", name, joined,
                  g_strerror(-rc));
        return;
    }
    g_hash_table_replace(ccd->peers, g_strdup(name), g_steal_pointer(&joined));
}

void ccd_peers_load(struct ndfs_ccd *ccd)
{
    if (ccd->net == NULL)
        return;
    g_autofree char *path = g_build_filename(ccd->data_dir, PEERS_FILE, NULL);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return; /* none yet */
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        g_auto(GStrv) f = g_strsplit(g_strstrip(*l), " ", 2);
        if (f[0] == NULL || f[1] == NULL || !ccd_valid_node_name(f[0]))
            continue;
        g_auto(GStrv) addresses = g_strsplit(f[1], ";", NDFS_NODE_ADDRESSES_MAX + 1);
        if (g_strv_length(addresses) <= NDFS_NODE_ADDRESSES_MAX)
            peer_set(ccd, f[0], addresses);
    }
}

static int save_peer_line(const struct ndfs_node *n, void *data)
{
    if (n->addresses && n->addresses[0]) {
        g_autofree char *joined = g_strjoinv(";", n->addresses);
        g_string_append_printf(data, "%s %s\n", n->name, joined);
    }
    return 0;
}

static int set_peer_row(const struct ndfs_node *n, void *data)
{
    peer_set(data, n->name, n->addresses);
    return 0;
}

/* This node listens on the addresses its row holds: the row is the
 * cluster's record (ndfsadm link add / remove change it), config listen
 * only its start. */
static void own_listen_sync(struct ndfs_ccd *ccd)
{
    struct ndfs_node n;
    if (ndfs_ccd_node_get(ccd, ccd->node_name, &n) != 0)
        return;
    if (n.addresses && n.addresses[0]) {
        g_autofree char *errmsg = NULL;
        int rc = ccd_bridge_listen_set(ccd->net, (const char *const *)n.addresses, &errmsg);
        if (rc < 0) {
            g_autofree char *joined = g_strjoinv(";", n.addresses);
            g_warning("cannot listen on this node's link addresses %s: %s", joined,
                      errmsg ? errmsg : g_strerror(-rc));
        }
    }
    ndfs_node_clear(&n);
}

void ccd_nodes_changed(struct ndfs_ccd *ccd, const char *name, bool removed)
{
    if (ccd->net == NULL)
        return;
    if (ccd->ready && !removed && (name == NULL || strcmp(name, ccd->node_name) == 0))
        own_listen_sync(ccd);
    if (name == NULL) {
        ndfs_ccd_node_foreach(ccd, set_peer_row, ccd);
    } else if (removed) {
        /* only an explicit removal forgets a peer: while the log is replayed
         * at start a row may simply not be there yet */
        if (strcmp(name, ccd->node_name) != 0 && g_hash_table_remove(ccd->peers, name))
            ccd_bridge_peer_remove(ccd->net, name);
    } else {
        struct ndfs_node n;
        if (ndfs_ccd_node_get(ccd, name, &n) == 0) {
            peer_set(ccd, n.name, n.addresses);
            ndfs_node_clear(&n);
        }
    }
    if (!ccd->ready)
        return; /* the tables are being rebuilt: keep the file of the last run */
    g_autoptr(GString) text = g_string_new(NULL);
    ndfs_ccd_node_foreach(ccd, save_peer_line, text);
    g_autofree char *path = g_build_filename(ccd->data_dir, PEERS_FILE, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_file_set_contents(path, text->str, (gssize)text->len, &err))
        g_warning("%s: %s", path, err->message);
}

bool ccd_has_own_row(struct ndfs_ccd *ccd)
{
    struct ndfs_node n;
    if (ndfs_ccd_node_get(ccd, ccd->node_name, &n) != 0)
        return false;
    bool mine = n.id == ccd->node_id;
    ndfs_node_clear(&n);
    return mine;
}

/* Reconciliation. */

struct change_req {
    struct raft_change req;
    struct raft_transfer transfer;
    struct ndfs_ccd *ccd;
    char what[96];
};

static void change_done(struct change_req *c, int status)
{
    struct ndfs_ccd *ccd = c->ccd;
    ccd->change_pending = false;
    if (status != 0 && !ccd->closing)
        g_message("%s: %s", c->what, raft_strerror(status));
    else if (status == 0)
        g_info("%s", c->what);
    g_free(c);
}

static void change_cb(struct raft_change *req, int status)
{
    change_done(req->data, status);
}

static void transfer_cb(struct raft_transfer *req)
{
    change_done(req->data, 0);
}

struct row_lookup {
    raft_id id;
    struct ndfs_node row;
};

static int match_id(const struct ndfs_node *n, void *data)
{
    struct row_lookup *l = data;
    if (n->id != l->id)
        return 0;
    ndfs_node_copy(&l->row, n);
    return 1;
}

static int start_change(struct ndfs_ccd *ccd, struct change_req *c, int rv)
{
    if (rv != 0) {
        if (rv != RAFT_CANTCHANGE && rv != RAFT_NOTLEADER)
            g_message("%s: %s", c->what, raft_errmsg(&ccd->raft));
        g_free(c);
        return 1;
    }
    ccd->change_pending = true;
    return 1;
}

static struct change_req *new_change(struct ndfs_ccd *ccd)
{
    struct change_req *c = g_new0(struct change_req, 1);
    c->ccd = ccd;
    c->req.data = c;
    c->transfer.data = c;
    return c;
}

/* Servers without a row leave Raft (ourselves: hand over leadership first). */
static int reconcile_server(struct ndfs_ccd *ccd, unsigned i)
{
    const struct raft_server *srv = &ccd->raft.configuration.servers[i];
    struct row_lookup l = {.id = srv->id};
    ndfs_ccd_node_foreach(ccd, match_id, &l);
    bool has_row = l.row.name != NULL;
    ndfs_node_clear(&l.row);
    if (has_row)
        return 0;
    struct change_req *c = new_change(ccd);
    if (srv->id == ccd->node_id) {
        g_snprintf(c->what, sizeof c->what, "node %s removed: leadership handed over",
                   ccd->node_name);
        return start_change(ccd, c, raft_transfer(&ccd->raft, &c->transfer, 0, transfer_cb));
    }
    g_snprintf(c->what, sizeof c->what, "server %llu (%s) removed from Raft",
               (unsigned long long)srv->id, srv->address);
    return start_change(ccd, c, raft_remove(&ccd->raft, &c->req, srv->id, change_cb));
}

static const struct raft_server *config_server(struct ndfs_ccd *ccd, raft_id id, unsigned *index)
{
    for (unsigned i = 0; i < ccd->raft.configuration.n; i++)
        if (ccd->raft.configuration.servers[i].id == id) {
            *index = i;
            return &ccd->raft.configuration.servers[i];
        }
    return NULL;
}

/* Rows without a server join Raft: spare, then standby, then voter when due. */
static int reconcile_row(const struct ndfs_node *n, void *data)
{
    struct ndfs_ccd *ccd = data;
    unsigned i = 0;
    const struct raft_server *srv = config_server(ccd, n->id, &i);
    struct change_req *c;
    if (srv == NULL) {
        c = new_change(ccd);
        g_snprintf(c->what, sizeof c->what, "node %s added to Raft as server %llu", n->name,
                   (unsigned long long)n->id);
        return start_change(ccd, c, raft_add(&ccd->raft, &c->req, n->id, n->name, change_cb));
    }
    if (srv->id == ccd->node_id)
        return 0;
    int want = n->role == NDFS_NODE_VOTER ? RAFT_VOTER : RAFT_STANDBY;
    if (srv->role == want)
        return 0;
    if (srv->role == RAFT_SPARE || want == RAFT_STANDBY) {
        c = new_change(ccd);
        g_snprintf(c->what, sizeof c->what, "node %s is a Raft standby", n->name);
        return start_change(ccd, c,
                            raft_assign(&ccd->raft, &c->req, n->id, RAFT_STANDBY, change_cb));
    }
    /* promote only a standby that has caught up, so the change commits at once */
    const struct raft_progress *p = &ccd->raft.leader_state.progress[i];
    if (p->match_index + PROMOTE_SLACK < raft_last_index(&ccd->raft))
        return 0;
    c = new_change(ccd);
    g_snprintf(c->what, sizeof c->what, "node %s is a Raft voter", n->name);
    return start_change(ccd, c, raft_assign(&ccd->raft, &c->req, n->id, RAFT_VOTER, change_cb));
}

void ccd_reconcile(struct ndfs_ccd *ccd)
{
    if (ccd->net == NULL || ccd->change_pending || ccd->closing ||
        raft_state(&ccd->raft) != RAFT_LEADER)
        return;
    /* act on a settled configuration and on a replica that is current */
    if (ccd->raft.configuration_uncommitted_index != 0 ||
        raft_last_applied(&ccd->raft) < ccd->raft.commit_index)
        return;
    for (unsigned i = 0; i < ccd->raft.configuration.n; i++)
        if (reconcile_server(ccd, i))
            return;
    ndfs_ccd_node_foreach(ccd, reconcile_row, ccd);
}

/* The cluster API. */

struct node_add_req {
    ndfs_ccd_node_added_cb cb;
    void *data;
};

static void node_add_done(struct ndfs_ccd *ccd, int status, void *data)
{
    struct node_add_req *r = data;
    /* the FSM's result is the new id (> 0) or -errno */
    r->cb(ccd, status > 0 ? 0 : status, status > 0 ? (uint64_t)status : 0, r->data);
    g_free(r);
    if (status > 0)
        ccd_reconcile(ccd);
}

int ndfs_ccd_node_add(struct ndfs_ccd *ccd, const struct ndfs_node *n, ndfs_ccd_node_added_cb cb,
                      void *data)
{
    struct raft_buffer buf;
    int rc = ccd_cmd_node_add(n, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "node \"%s\": invalid name, role or addresses", n->name ? n->name : "");
        return rc;
    }
    struct node_add_req *r = g_new0(struct node_add_req, 1);
    r->cb = cb;
    r->data = data;
    rc = ccd_propose(ccd, buf, node_add_done, r);
    if (rc != 0)
        g_free(r);
    return rc;
}

int ndfs_ccd_node_remove(struct ndfs_ccd *ccd, const char *name, ndfs_ccd_done_cb cb, void *data)
{
    struct raft_buffer buf;
    int rc = ccd_cmd_node_remove(name, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "invalid node name \"%s\"", name ? name : "");
        return rc;
    }
    return ccd_propose(ccd, buf, cb, data);
}

int ndfs_ccd_node_link(struct ndfs_ccd *ccd, const char *name, const char *address, bool add,
                       ndfs_ccd_done_cb cb, void *data)
{
    struct raft_buffer buf;
    int rc = ccd_cmd_node_link(name, address, add, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "invalid node name \"%s\" or address \"%s\"", name ? name : "",
                       address ? address : "");
        return rc;
    }
    return ccd_propose(ccd, buf, cb, data);
}

int ndfs_ccd_membership_set(struct ndfs_ccd *ccd, const char *const *members, ndfs_ccd_done_cb cb,
                            void *data)
{
    struct raft_buffer buf;
    int rc = ccd_cmd_membership_set(members, &buf);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "invalid member list");
        return rc;
    }
    return ccd_propose(ccd, buf, cb, data);
}

bool ndfs_ccd_is_leader(struct ndfs_ccd *ccd)
{
    return ccd->started && !ccd->closing && raft_state(&ccd->raft) == RAFT_LEADER;
}

/* A Raft server's node name: its row's, else its Raft address (= node name). */
static void server_name(struct ndfs_ccd *ccd, raft_id id, const char *address,
                        char name[NDFS_NODE_NAME_MAX + 1])
{
    struct row_lookup l = {.id = id};
    ndfs_ccd_node_foreach(ccd, match_id, &l);
    const char *found = l.row.name ? l.row.name : address;
    name[0] = '\0';
    if (found && ccd_valid_node_name(found))
        g_strlcpy(name, found, NDFS_NODE_NAME_MAX + 1);
    ndfs_node_clear(&l.row);
}

void ndfs_ccd_leader(struct ndfs_ccd *ccd, char name[NDFS_NODE_NAME_MAX + 1])
{
    raft_id id = 0;
    const char *address = NULL;
    name[0] = '\0';
    if (!ccd->started || ccd->closing)
        return;
    raft_leader(&ccd->raft, &id, &address);
    if (id != 0)
        server_name(ccd, id, address, name);
}

char **ndfs_ccd_voters(struct ndfs_ccd *ccd, unsigned *total)
{
    GPtrArray *names = g_ptr_array_new();
    if (ccd->started && !ccd->closing) {
        for (unsigned i = 0; i < ccd->raft.configuration.n; i++) {
            const struct raft_server *srv = &ccd->raft.configuration.servers[i];
            char name[NDFS_NODE_NAME_MAX + 1];
            if (srv->role != RAFT_VOTER)
                continue;
            server_name(ccd, srv->id, srv->address, name);
            if (*name)
                g_ptr_array_add(names, g_strdup(name));
        }
    }
    if (total)
        *total = names->len;
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(names, FALSE);
}

bool ndfs_ccd_quorum(struct ndfs_ccd *ccd, bool (*reachable)(const char *name, void *data),
                     void *data, unsigned *up, unsigned *total)
{
    unsigned n = 0, count = 0;
    g_auto(GStrv) voters = ndfs_ccd_voters(ccd, &n);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(voters[i], ccd->node_name) == 0 || (reachable && reachable(voters[i], data)))
            count++;
    if (ccd->net == NULL && n == 0) {
        n = 1; /* a single node before start: itself */
        count = 1;
    }
    if (up)
        *up = count;
    if (total)
        *total = n;
    return count * 2 > n;
}

int ndfs_ccd_server_role(struct ndfs_ccd *ccd, const char *name)
{
    struct ndfs_node n;
    unsigned i;
    if (!ccd->started || ndfs_ccd_node_get(ccd, name, &n) != 0)
        return 0;
    const struct raft_server *srv = config_server(ccd, n.id, &i);
    ndfs_node_clear(&n);
    if (srv == NULL)
        return 0;
    return srv->role == RAFT_VOTER     ? NDFS_NODE_VOTER
           : srv->role == RAFT_STANDBY ? NDFS_NODE_STANDBY
                                       : 0;
}

void ndfs_ccd_transport_event(struct ndfs_ccd *ccd, const char *peer, int event)
{
    if (ccd->net == NULL || ccd->closing || peer == NULL)
        return;
    if (event == NDFS_PEER_RESET || event == NDFS_PEER_DOWN)
        ccd_bridge_peer_lost(&ccd->transport, peer);
}
