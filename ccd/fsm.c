/* The Raft state machine: commands are decoded strictly and each one is
 * applied to LMDB in one write transaction. Its status (0 or -errno) goes
 * back to the proposer through raft's result pointer; apply itself never
 * fails, so a bad entry cannot stall the log on any replica. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <string.h>

#include "ccd_private.h"

#define CMD_VERSION 1

/* raft_uv's segment format needs entry sizes that are multiples of 8: it
 * pads on write but not on read. So commands carry up to 7 zero bytes. */
#define ENTRY_ALIGN 8

int ccd_entry_alloc(const void *data, size_t len, struct raft_buffer *out)
{
    size_t padded = (len + ENTRY_ALIGN - 1) / ENTRY_ALIGN * ENTRY_ALIGN;
    out->base = raft_malloc(padded);
    if (out->base == NULL)
        return -ENOMEM;
    memcpy(out->base, data, len);
    memset((uint8_t *)out->base + len, 0, padded - len);
    out->len = padded;
    return 0;
}

/* The command was read completely; what is left is padding. */
static bool cmd_done(const struct ccd_reader *r)
{
    if (r->bad || r->left >= ENTRY_ALIGN)
        return false;
    for (size_t i = 0; i < r->left; i++)
        if (r->p[i] != 0)
            return false;
    return true;
}

static int finish_cmd(GByteArray *b, struct raft_buffer *out)
{
    int rc = ccd_entry_alloc(b->data, b->len, out);
    g_byte_array_free(b, TRUE);
    return rc;
}

static GByteArray *start_cmd(enum ccd_op op)
{
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, CMD_VERSION);
    ccd_put_u8(b, (uint8_t)op);
    return b;
}

int ccd_cmd_bootstrap(const char *cluster_id, const struct ndfs_node *node,
                      const struct ccd_membership *m, struct raft_buffer *out)
{
    g_autofree uint8_t *node_row = NULL, *member_row = NULL;
    size_t node_len, member_len;
    int rc = ndfs_node_encode(node, &node_row, &node_len);
    if (rc == 0)
        rc = ccd_membership_encode(m, &member_row, &member_len);
    if (rc != 0)
        return rc;
    GByteArray *b = start_cmd(CCD_OP_BOOTSTRAP);
    ccd_put_str(b, cluster_id);
    ccd_put_blob16(b, node_row, node_len);
    ccd_put_blob16(b, member_row, member_len);
    return finish_cmd(b, out);
}

int ccd_cmd_vdisk(enum ccd_op op, const struct ndfs_vdisk *v, struct raft_buffer *out)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    int rc = ndfs_vdisk_encode(v, &row, &len);
    if (rc != 0)
        return rc;
    GByteArray *b = start_cmd(op);
    ccd_put_blob16(b, row, len);
    return finish_cmd(b, out);
}

int ccd_cmd_vdisk_remove(const char *name, struct raft_buffer *out)
{
    if (!ccd_valid_vdisk_name(name))
        return -EINVAL;
    GByteArray *b = start_cmd(CCD_OP_VDISK_REMOVE);
    ccd_put_str(b, name);
    return finish_cmd(b, out);
}

int ccd_cmd_node_put(const struct ndfs_node *n, struct raft_buffer *out)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    int rc = ndfs_node_encode(n, &row, &len);
    if (rc != 0)
        return rc;
    GByteArray *b = start_cmd(CCD_OP_NODE_PUT);
    ccd_put_blob16(b, row, len);
    return finish_cmd(b, out);
}

int ccd_cmd_node_add(const struct ndfs_node *n, struct raft_buffer *out)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    struct ndfs_node placeholder = *n;
    placeholder.id = 1; /* a valid row needs an id; the FSM assigns the real one */
    int rc = ndfs_node_encode(&placeholder, &row, &len);
    if (rc != 0)
        return rc;
    GByteArray *b = start_cmd(CCD_OP_NODE_ADD);
    ccd_put_blob16(b, row, len);
    return finish_cmd(b, out);
}

int ccd_cmd_node_remove(const char *name, struct raft_buffer *out)
{
    if (!ccd_valid_node_name(name))
        return -EINVAL;
    GByteArray *b = start_cmd(CCD_OP_NODE_REMOVE);
    ccd_put_str(b, name);
    return finish_cmd(b, out);
}

int ccd_cmd_node_link(const char *name, const char *address, bool add, struct raft_buffer *out)
{
    if (!ccd_valid_node_name(name) || !address || !*address || !ccd_valid_address(address))
        return -EINVAL;
    GByteArray *b = start_cmd(CCD_OP_NODE_LINK);
    ccd_put_u8(b, add ? 1 : 0);
    ccd_put_str(b, name);
    ccd_put_str(b, address);
    return finish_cmd(b, out);
}

int ccd_cmd_membership_set(const char *const *members, struct raft_buffer *out)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    /* the epoch is a placeholder: the FSM sets it */
    struct ccd_membership m = {.epoch = 1, .members = (char **)members};
    int rc = ccd_membership_encode(&m, &row, &len);
    if (rc != 0)
        return rc;
    GByteArray *b = start_cmd(CCD_OP_MEMBERSHIP_SET);
    ccd_put_blob16(b, row, len);
    return finish_cmd(b, out);
}

/* One change to report once the transaction has committed. */
struct change {
    enum ndfs_ccd_table table;
    char *key;
    bool removed;
};

struct apply_ctx {
    struct ndfs_ccd *ccd;
    struct ccd_store *s;
    MDB_txn *txn;
    struct change changes[4];
    unsigned n_changes;
    intptr_t value; /* result on success (a node id), else 0 */
};

static void record(struct apply_ctx *a, enum ndfs_ccd_table table, const char *key, bool removed)
{
    g_assert(a->n_changes < G_N_ELEMENTS(a->changes));
    a->changes[a->n_changes++] = (struct change){table, g_strdup(key), removed};
}

/* Epoch: the configuration number, in meta and in the membership row. */
static int bump_epoch(struct apply_ctx *a)
{
    uint64_t epoch;
    MDB_val val;
    int rc = ccd_meta_get_u64(a->txn, a->s, CCD_META_EPOCH, &epoch);
    if (rc == 0)
        rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_EPOCH, epoch + 1);
    if (rc != 0)
        return rc;
    record(a, NDFS_CCD_META, CCD_META_EPOCH, false);

    rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, &val);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    struct ccd_membership m;
    g_autofree uint8_t *row = NULL;
    size_t len;
    rc = ccd_membership_decode(val.mv_data, val.mv_size, &m);
    if (rc != 0)
        return rc;
    m.epoch = epoch + 1;
    rc = ccd_membership_encode(&m, &row, &len);
    ccd_membership_clear(&m);
    if (rc == 0)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, row, len);
    if (rc == 0)
        record(a, NDFS_CCD_MEMBERSHIP, CCD_MEMBERSHIP_KEY, false);
    return rc;
}

static int put_vdisk(struct apply_ctx *a, const struct ndfs_vdisk *v)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    int rc = ndfs_vdisk_encode(v, &row, &len);
    if (rc == 0)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_VDISKS], v->name, row, len);
    if (rc == 0)
        record(a, NDFS_CCD_VDISKS, v->name, false);
    return rc;
}

static int apply_bootstrap(struct apply_ctx *a, struct ccd_reader *r)
{
    g_autofree char *cluster_id = NULL;
    const uint8_t *node_row, *member_row;
    size_t node_len, member_len;
    struct ndfs_node node;
    struct ccd_membership m;
    MDB_val val;

    if (!ccd_get_str(r, &cluster_id) || !ccd_get_blob16(r, &node_row, &node_len) ||
        !ccd_get_blob16(r, &member_row, &member_len) || !cmd_done(r) ||
        !g_uuid_string_is_valid(cluster_id))
        return -EBADMSG;
    if (ndfs_node_decode(node_row, node_len, &node) != 0)
        return -EBADMSG;
    if (ccd_membership_decode(member_row, member_len, &m) != 0) {
        ndfs_node_clear(&node);
        return -EBADMSG;
    }
    int rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_META], CCD_META_CLUSTER_ID, &val);
    if (rc == 0)
        rc = -EEXIST; /* bootstrapped already */
    else if (rc == -ENOENT)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_META], CCD_META_CLUSTER_ID, cluster_id,
                         strlen(cluster_id));
    if (rc == 0)
        rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_EPOCH, m.epoch);
    if (rc == 0)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_NODES], node.name, node_row, node_len);
    if (rc == 0)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, member_row,
                         member_len);
    if (rc == 0) {
        record(a, NDFS_CCD_META, CCD_META_CLUSTER_ID, false);
        record(a, NDFS_CCD_NODES, node.name, false);
        record(a, NDFS_CCD_MEMBERSHIP, CCD_MEMBERSHIP_KEY, false);
    }
    ndfs_node_clear(&node);
    ccd_membership_clear(&m);
    return rc;
}

static bool same_str(const char *x, const char *y)
{
    return g_strcmp0(x, y) == 0;
}

static bool mapping_changed(const struct ndfs_vdisk *old, const struct ndfs_vdisk *new)
{
    return !same_str(old->primary_node, new->primary_node) ||
           !same_str(old->primary_path, new->primary_path) ||
           !same_str(old->secondary_node, new->secondary_node) ||
           !same_str(old->secondary_path, new->secondary_path) ||
           old->on_secondary != new->on_secondary || old->primary_failed != new->primary_failed ||
           old->secondary_failed != new->secondary_failed;
}

static int apply_vdisk_write(struct apply_ctx *a, enum ccd_op op, struct ccd_reader *r)
{
    const uint8_t *row;
    size_t len;
    struct ndfs_vdisk v, old = {0};
    MDB_val val;
    int rc;

    if (!ccd_get_blob16(r, &row, &len) || !cmd_done(r))
        return -EBADMSG;
    if (ndfs_vdisk_decode(row, len, &v) != 0)
        return -EBADMSG;
    rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_VDISKS], v.name, &val);
    if (rc == 0 && ndfs_vdisk_decode(val.mv_data, val.mv_size, &old) != 0)
        rc = -EIO; /* a stored row is corrupt: refuse to build on it */
    if (op == CCD_OP_VDISK_CREATE) {
        uint64_t next_id;
        if (rc == 0)
            rc = -EEXIST;
        else if (rc == -ENOENT)
            rc = ccd_meta_get_u64(a->txn, a->s, CCD_META_NEXT_VDISK_ID, &next_id);
        if (rc == 0) {
            v.id = next_id ? next_id : 1;
            v.version = 1;
            rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_NEXT_VDISK_ID, v.id + 1);
        }
        if (rc == 0)
            rc = put_vdisk(a, &v);
        if (rc == 0)
            rc = bump_epoch(a);
    } else {
        if (rc == 0 && old.version != v.version)
            rc = -ESTALE;
        if (rc == 0) {
            v.id = old.id;
            v.version = old.version + 1;
            rc = put_vdisk(a, &v);
        }
        if (rc == 0 && mapping_changed(&old, &v))
            rc = bump_epoch(a);
    }
    ndfs_vdisk_clear(&v);
    ndfs_vdisk_clear(&old);
    return rc;
}

static int apply_vdisk_remove(struct apply_ctx *a, struct ccd_reader *r)
{
    g_autofree char *name = NULL;
    if (!ccd_get_str(r, &name) || !cmd_done(r) || !ccd_valid_vdisk_name(name))
        return -EBADMSG;
    int rc = ccd_txn_del(a->txn, a->s->dbi[NDFS_CCD_VDISKS], name);
    if (rc == 0) {
        record(a, NDFS_CCD_VDISKS, name, true);
        rc = bump_epoch(a);
    }
    return rc;
}

static int apply_node_put(struct apply_ctx *a, struct ccd_reader *r)
{
    const uint8_t *row;
    size_t len;
    struct ndfs_node n;
    if (!ccd_get_blob16(r, &row, &len) || !cmd_done(r))
        return -EBADMSG;
    if (ndfs_node_decode(row, len, &n) != 0)
        return -EBADMSG;
    int rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_NODES], n.name, row, len);
    if (rc == 0)
        record(a, NDFS_CCD_NODES, n.name, false);
    ndfs_node_clear(&n);
    return rc;
}

/* Calls fn on every decodable node row; stops on a non-zero return. */
static int foreach_node(struct apply_ctx *a,
                        int (*fn)(struct apply_ctx *a, struct ndfs_node *n, void *ctx), void *ctx)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = ccd_mdb_errno(mdb_cursor_open(a->txn, a->s->dbi[NDFS_CCD_NODES], &cur));
    if (rc != 0)
        return rc;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct ndfs_node n;
        if (ndfs_node_decode(v.mv_data, v.mv_size, &n) != 0)
            continue;
        rc = fn(a, &n, ctx);
        ndfs_node_clear(&n);
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = ccd_mdb_errno(mrc);
    return rc;
}

struct node_census {
    uint64_t max_id;
    unsigned voters;
    struct ndfs_node standby; /* the standby with the lowest id, if any */
};

static int count_node(struct apply_ctx *a, struct ndfs_node *n, void *ctx)
{
    (void)a;
    struct node_census *c = ctx;
    if (n->id > c->max_id)
        c->max_id = n->id;
    if (n->role == NDFS_NODE_VOTER)
        c->voters++;
    else if (c->standby.name == NULL || n->id < c->standby.id) {
        ndfs_node_clear(&c->standby);
        ndfs_node_copy(&c->standby, n);
    }
    return 0;
}

static int put_node(struct apply_ctx *a, const struct ndfs_node *n)
{
    g_autofree uint8_t *row = NULL;
    size_t len;
    int rc = ndfs_node_encode(n, &row, &len);
    if (rc == 0)
        rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_NODES], n->name, row, len);
    if (rc == 0)
        record(a, NDFS_CCD_NODES, n->name, false);
    return rc;
}

/* Node ids are never reused: next-node-id, or past the largest id stored. */
static int next_node_id(struct apply_ctx *a, const struct node_census *c, uint64_t *id)
{
    int rc = ccd_meta_get_u64(a->txn, a->s, CCD_META_NEXT_NODE_ID, id);
    if (rc == 0 && *id <= c->max_id)
        *id = c->max_id + 1;
    return rc;
}

static int apply_node_add(struct apply_ctx *a, struct ccd_reader *r)
{
    const uint8_t *row;
    size_t len;
    struct ndfs_node n;
    struct node_census census = {0};
    MDB_val val;
    uint64_t id = 0;

    if (!ccd_get_blob16(r, &row, &len) || !cmd_done(r))
        return -EBADMSG;
    if (ndfs_node_decode(row, len, &n) != 0)
        return -EBADMSG;
    int rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_NODES], n.name, &val);
    if (rc == 0)
        rc = -EEXIST;
    else if (rc == -ENOENT)
        rc = foreach_node(a, count_node, &census);
    if (rc == 0)
        rc = next_node_id(a, &census, &id);
    if (rc == 0) {
        n.id = id;
        if (census.voters >= CCD_MAX_VOTERS)
            n.role = NDFS_NODE_STANDBY;
        rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_NEXT_NODE_ID, id + 1);
    }
    if (rc == 0)
        rc = put_node(a, &n);
    if (rc == 0)
        a->value = (intptr_t)id;
    ndfs_node_clear(&n);
    ndfs_node_clear(&census.standby);
    return rc;
}

struct vdisk_user {
    const char *node;
    bool found;
};

static int find_vdisk_user(struct apply_ctx *a, struct vdisk_user *u)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = ccd_mdb_errno(mdb_cursor_open(a->txn, a->s->dbi[NDFS_CCD_VDISKS], &cur));
    if (rc != 0)
        return rc;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && !u->found;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct ndfs_vdisk vd;
        if (ndfs_vdisk_decode(v.mv_data, v.mv_size, &vd) != 0)
            continue;
        u->found = same_str(vd.primary_node, u->node) || same_str(vd.secondary_node, u->node);
        ndfs_vdisk_clear(&vd);
    }
    mdb_cursor_close(cur);
    return u->found || mrc == MDB_NOTFOUND ? 0 : ccd_mdb_errno(mrc);
}

static int apply_node_remove(struct apply_ctx *a, struct ccd_reader *r)
{
    g_autofree char *name = NULL;
    struct ndfs_node n;
    struct node_census census = {0};
    MDB_val val;
    uint64_t next;

    if (!ccd_get_str(r, &name) || !cmd_done(r) || !ccd_valid_node_name(name))
        return -EBADMSG;
    int rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_NODES], name, &val);
    if (rc != 0)
        return rc;
    if (ndfs_node_decode(val.mv_data, val.mv_size, &n) != 0)
        return -EIO;
    struct vdisk_user user = {.node = name};
    rc = find_vdisk_user(a, &user);
    if (rc == 0 && user.found)
        rc = -EBUSY;
    if (rc == 0)
        rc = foreach_node(a, count_node, &census);
    if (rc == 0 && n.role == NDFS_NODE_VOTER && census.voters <= 1 && census.standby.name == NULL)
        rc = -EINVAL; /* the cluster would have no voter left */
    if (rc == 0)
        rc = next_node_id(a, &census, &next);
    if (rc == 0)
        rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_NEXT_NODE_ID, next);
    if (rc == 0 && n.role == NDFS_NODE_VOTER && census.standby.name != NULL) {
        census.standby.role = NDFS_NODE_VOTER; /* keep the number of voters */
        rc = put_node(a, &census.standby);
    }
    if (rc == 0)
        rc = ccd_txn_del(a->txn, a->s->dbi[NDFS_CCD_NODES], name);
    if (rc == 0)
        record(a, NDFS_CCD_NODES, name, true);
    ndfs_node_clear(&n);
    ndfs_node_clear(&census.standby);
    return rc;
}

static bool same_members(char **x, char **y)
{
    guint n = g_strv_length(x);
    if (n != g_strv_length(y))
        return false;
    for (guint i = 0; i < n; i++)
        if (strcmp(x[i], y[i]) != 0)
            return false;
    return true;
}

static int apply_membership_set(struct apply_ctx *a, struct ccd_reader *r)
{
    const uint8_t *row;
    size_t len;
    struct ccd_membership want, cur = {0};
    MDB_val val;
    uint64_t epoch;
    g_autofree uint8_t *out = NULL;
    size_t out_len;

    if (!ccd_get_blob16(r, &row, &len) || !cmd_done(r))
        return -EBADMSG;
    if (ccd_membership_decode(row, len, &want) != 0)
        return -EBADMSG;
    int rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, &val);
    if (rc == 0 && ccd_membership_decode(val.mv_data, val.mv_size, &cur) != 0)
        rc = -EIO;
    bool unchanged = rc == 0 && same_members(want.members, cur.members);
    if (rc == -ENOENT)
        rc = 0;
    if (rc == 0 && !unchanged) {
        rc = ccd_meta_get_u64(a->txn, a->s, CCD_META_EPOCH, &epoch);
        if (rc == 0) {
            want.epoch = epoch + 1;
            rc = ccd_meta_put_u64(a->txn, a->s, CCD_META_EPOCH, want.epoch);
        }
        if (rc == 0)
            rc = ccd_membership_encode(&want, &out, &out_len);
        if (rc == 0)
            rc = ccd_txn_put(a->txn, a->s->dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, out,
                             out_len);
        if (rc == 0) {
            record(a, NDFS_CCD_META, CCD_META_EPOCH, false);
            record(a, NDFS_CCD_MEMBERSHIP, CCD_MEMBERSHIP_KEY, false);
        }
    }
    ccd_membership_clear(&want);
    ccd_membership_clear(&cur);
    return rc;
}

struct address_user {
    const char *address;
    const char *node; /* the node that has it, NULL: none */
    char *owner;      /* g_malloc'd copy of its name */
};

static int find_address_user(struct apply_ctx *a, struct ndfs_node *n, void *ctx)
{
    (void)a;
    struct address_user *u = ctx;
    for (char **ad = n->addresses; ad && *ad; ad++)
        if (strcmp(*ad, u->address) == 0) {
            u->owner = g_strdup(n->name);
            return 1;
        }
    return 0;
}

/* A link address added to a node takes the first index without one, or a
 * new index; a removed one leaves its index empty (""), so the node's
 * other links keep theirs; trailing empty indexes are dropped. */
static int apply_node_link(struct apply_ctx *a, struct ccd_reader *r)
{
    uint8_t add = 0;
    g_autofree char *name = NULL, *address = NULL;
    if (!ccd_get_u8(r, &add) || add > 1 || !ccd_get_str(r, &name) || !ccd_get_str(r, &address) ||
        !cmd_done(r) || !ccd_valid_node_name(name) || !*address || !ccd_valid_address(address))
        return -EBADMSG;
    MDB_val val;
    int rc = ccd_txn_get(a->txn, a->s->dbi[NDFS_CCD_NODES], name, &val);
    if (rc != 0)
        return rc;
    struct ndfs_node n;
    if (ndfs_node_decode(val.mv_data, val.mv_size, &n) != 0)
        return -EBADMSG;
    guint count = n.addresses ? g_strv_length(n.addresses) : 0;
    int index = -1, used = 0;
    for (guint i = 0; i < count; i++) {
        if (*n.addresses[i])
            used++;
        if (strcmp(n.addresses[i], address) == 0)
            index = (int)i;
    }
    if (add) {
        struct address_user u = {.address = address};
        if (index >= 0) {
            rc = -EEXIST;
        } else if ((rc = foreach_node(a, find_address_user, &u)) > 0) {
            rc = -EADDRINUSE;
        } else if (rc == 0) {
            for (guint i = 0; i < count && index < 0; i++)
                if (!*n.addresses[i])
                    index = (int)i;
            if (index < 0 && count >= NDFS_NODE_ADDRESSES_MAX) {
                rc = -ENOSPC;
            } else if (index < 0) {
                n.addresses = g_renew(char *, n.addresses, count + 2);
                n.addresses[count] = NULL;
                n.addresses[count + 1] = NULL;
                index = (int)count;
            }
        }
        g_free(u.owner);
        if (rc == 0) {
            g_free(n.addresses[index]);
            n.addresses[index] = g_strdup(address);
        }
    } else if (index < 0) {
        rc = -ENOENT;
    } else if (used <= 1) {
        rc = -EINVAL; /* a node without addresses would be cut off */
    } else {
        n.addresses[index][0] = '\0';
        for (guint i = count; i > 0 && !*n.addresses[i - 1]; i--) {
            g_free(n.addresses[i - 1]);
            n.addresses[i - 1] = NULL;
        }
    }
    if (rc == 0)
        rc = put_node(a, &n);
    if (rc == 0)
        a->value = index;
    ndfs_node_clear(&n);
    return rc;
}

static int apply_command(struct apply_ctx *a, const struct raft_buffer *buf)
{
    struct ccd_reader r;
    uint8_t version = 0, op = 0;

    if (buf->len % ENTRY_ALIGN != 0)
        return -EBADMSG;
    ccd_reader_init(&r, buf->base, buf->len);
    if (!ccd_get_u8(&r, &version) || !ccd_get_u8(&r, &op) || version != CMD_VERSION)
        return -EBADMSG;
    switch (op) {
    case CCD_OP_BOOTSTRAP:
        return apply_bootstrap(a, &r);
    case CCD_OP_VDISK_CREATE:
    case CCD_OP_VDISK_UPDATE:
        return apply_vdisk_write(a, op, &r);
    case CCD_OP_VDISK_REMOVE:
        return apply_vdisk_remove(a, &r);
    case CCD_OP_NODE_PUT:
        return apply_node_put(a, &r);
    case CCD_OP_NODE_ADD:
        return apply_node_add(a, &r);
    case CCD_OP_NODE_REMOVE:
        return apply_node_remove(a, &r);
    case CCD_OP_MEMBERSHIP_SET:
        return apply_membership_set(a, &r);
    case CCD_OP_NODE_LINK:
        return apply_node_link(a, &r);
    default:
        return -EBADMSG;
    }
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct apply_ctx a = {.ccd = fsm->data, .s = ccd_get_store(fsm->data)};
    int rc = ccd_mdb_errno(mdb_txn_begin(a.s->env, NULL, 0, &a.txn));
    if (rc == 0) {
        rc = apply_command(&a, buf);
        if (rc == 0)
            rc = ccd_mdb_errno(mdb_txn_commit(a.txn));
        else
            mdb_txn_abort(a.txn);
        if (rc == -EBADMSG)
            g_warning("ignoring an undecodable Raft log entry (%zu bytes)", buf->len);
        else if (rc != 0 && rc != -EEXIST && rc != -ENOENT && rc != -ESTALE && rc != -EBUSY &&
                 rc != -EINVAL)
            g_critical("applying a Raft log entry to LMDB failed: %s", g_strerror(-rc));
    } else {
        g_critical("LMDB write transaction: %s", g_strerror(-rc));
    }
    for (unsigned i = 0; i < a.n_changes; i++) {
        if (rc == 0 && a.changes[i].table == NDFS_CCD_NODES)
            ccd_nodes_changed(a.ccd, a.changes[i].key, a.changes[i].removed);
        if (rc == 0)
            ccd_notify(a.ccd, a.changes[i].table, a.changes[i].key, a.changes[i].removed);
        g_free(a.changes[i].key);
    }
    *result = (void *)(rc == 0 ? a.value : (intptr_t)rc);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    g_autofree uint8_t *dump = NULL;
    size_t len;
    int rc = ccd_store_dump(ccd_get_store(fsm->data), &dump, &len);
    if (rc != 0) {
        g_warning("snapshot of the CCD tables: %s", g_strerror(-rc));
        return rc == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    /* raft frees both the array and the buffer with raft_free */
    struct raft_buffer *out = raft_malloc(sizeof *out);
    void *base = raft_malloc(len);
    if (out == NULL || base == NULL) {
        raft_free(out);
        raft_free(base);
        return RAFT_NOMEM;
    }
    memcpy(base, dump, len);
    out->base = base;
    out->len = len;
    *bufs = out;
    *n_bufs = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    int rc = ccd_store_load(ccd_get_store(fsm->data), buf->base, buf->len);
    if (rc != 0) {
        g_warning("restoring a CCD snapshot (%zu bytes): %s", buf->len, g_strerror(-rc));
        return rc == -EBADMSG ? RAFT_CORRUPT : RAFT_IOERR;
    }
    /* on success the FSM owns the buffer */
    raft_free(buf->base);
    ccd_nodes_changed(fsm->data, NULL, false);
    /* every table was replaced: a NULL key tells watchers to reread it */
    for (int t = NDFS_CCD_NODES; t < CCD_NTABLES; t++)
        ccd_notify(fsm->data, t, NULL, false);
    return 0;
}

void ccd_fsm_init(struct raft_fsm *fsm, struct ndfs_ccd *ccd)
{
    memset(fsm, 0, sizeof *fsm);
    fsm->version = 1;
    fsm->data = ccd;
    fsm->apply = fsm_apply;
    fsm->snapshot = fsm_snapshot;
    fsm->restore = fsm_restore;
}
