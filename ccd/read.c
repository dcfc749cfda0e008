/* Reads of the CCD's replica: vdisk and node rows, one at a time or all in
 * key order, and the cluster status; each in its own LMDB read transaction. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <string.h>

#include "ccd_private.h"

static int read_begin(struct ndfs_ccd *ccd, MDB_txn **txn)
{
    int rc = ccd_mdb_errno(mdb_txn_begin(ccd->store.env, NULL, MDB_RDONLY, txn));
    if (rc != 0)
        ccd_set_errmsg(ccd, "LMDB read transaction: %s", g_strerror(-rc));
    return rc;
}

int ndfs_ccd_vdisk_get(struct ndfs_ccd *ccd, const char *name, struct ndfs_vdisk *out)
{
    MDB_txn *txn;
    MDB_val val;
    memset(out, 0, sizeof *out);
    if (!ccd_valid_vdisk_name(name))
        return -ENOENT;
    int rc = read_begin(ccd, &txn);
    if (rc != 0)
        return rc;
    rc = ccd_txn_get(txn, ccd->store.dbi[NDFS_CCD_VDISKS], name, &val);
    if (rc == 0 && ndfs_vdisk_decode(val.mv_data, val.mv_size, out) != 0) {
        ccd_set_errmsg(ccd, "vdisk \"%s\": the stored row is corrupt", name);
        rc = -EIO;
    }
    mdb_txn_abort(txn);
    return rc;
}

int ndfs_ccd_node_get(struct ndfs_ccd *ccd, const char *name, struct ndfs_node *out)
{
    MDB_txn *txn;
    MDB_val val;
    memset(out, 0, sizeof *out);
    if (!ccd_valid_node_name(name))
        return -ENOENT;
    int rc = read_begin(ccd, &txn);
    if (rc != 0)
        return rc;
    rc = ccd_txn_get(txn, ccd->store.dbi[NDFS_CCD_NODES], name, &val);
    if (rc == 0 && ndfs_node_decode(val.mv_data, val.mv_size, out) != 0) {
        ccd_set_errmsg(ccd, "node \"%s\": the stored row is corrupt", name);
        rc = -EIO;
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Calls row_fn for every value of a table, in key order, inside one read
 * transaction (the env uses MDB_NOTLS, so row_fn may read again). */
static int foreach_row(struct ndfs_ccd *ccd, enum ndfs_ccd_table table,
                       int (*row_fn)(const MDB_val *val, void *ctx), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = read_begin(ccd, &txn);
    if (rc != 0)
        return rc;
    int mrc = mdb_cursor_open(txn, ccd->store.dbi[table], &cur);
    if (mrc != 0) {
        mdb_txn_abort(txn);
        return ccd_mdb_errno(mrc);
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        rc = row_fn(&v, ctx);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = ccd_mdb_errno(mrc);
    return rc;
}

struct vdisk_visit {
    int (*fn)(const struct ndfs_vdisk *v, void *data);
    void *data;
};

static int visit_vdisk(const MDB_val *val, void *ctx)
{
    struct vdisk_visit *visit = ctx;
    struct ndfs_vdisk v;
    if (ndfs_vdisk_decode(val->mv_data, val->mv_size, &v) != 0) {
        g_warning("skipping a corrupt row of the vdisks table");
        return 0;
    }
    int rc = visit->fn(&v, visit->data);
    ndfs_vdisk_clear(&v);
    return rc;
}

int ndfs_ccd_vdisk_foreach(struct ndfs_ccd *ccd, int (*fn)(const struct ndfs_vdisk *v, void *data),
                           void *data)
{
    struct vdisk_visit visit = {fn, data};
    return foreach_row(ccd, NDFS_CCD_VDISKS, visit_vdisk, &visit);
}

struct node_visit {
    int (*fn)(const struct ndfs_node *n, void *data);
    void *data;
};

static int visit_node(const MDB_val *val, void *ctx)
{
    struct node_visit *visit = ctx;
    struct ndfs_node n;
    if (ndfs_node_decode(val->mv_data, val->mv_size, &n) != 0) {
        g_warning("skipping a corrupt row of the nodes table");
        return 0;
    }
    int rc = visit->fn(&n, visit->data);
    ndfs_node_clear(&n);
    return rc;
}

int ndfs_ccd_node_foreach(struct ndfs_ccd *ccd, int (*fn)(const struct ndfs_node *n, void *data),
                          void *data)
{
    struct node_visit visit = {fn, data};
    return foreach_row(ccd, NDFS_CCD_NODES, visit_node, &visit);
}

int ndfs_ccd_status(struct ndfs_ccd *ccd, struct ndfs_ccd_status *out)
{
    MDB_txn *txn;
    MDB_val val;
    MDB_stat st;
    memset(out, 0, sizeof *out);
    int rc = read_begin(ccd, &txn);
    if (rc != 0)
        return rc;
    if (ccd_txn_get(txn, ccd->store.dbi[NDFS_CCD_META], CCD_META_CLUSTER_ID, &val) == 0 &&
        val.mv_size < sizeof out->cluster_id)
        memcpy(out->cluster_id, val.mv_data, val.mv_size);
    rc = ccd_meta_get_u64(txn, &ccd->store, CCD_META_EPOCH, &out->epoch);
    if (rc == 0 &&
        ccd_txn_get(txn, ccd->store.dbi[NDFS_CCD_MEMBERSHIP], CCD_MEMBERSHIP_KEY, &val) == 0) {
        struct ccd_membership m;
        if (ccd_membership_decode(val.mv_data, val.mv_size, &m) == 0)
            out->members = g_steal_pointer(&m.members);
        ccd_membership_clear(&m);
    }
    if (rc == 0)
        rc = ccd_mdb_errno(mdb_stat(txn, ccd->store.dbi[NDFS_CCD_VDISKS], &st));
    if (rc == 0)
        out->vdisks = st.ms_entries;
    mdb_txn_abort(txn);
    if (rc != 0) {
        ccd_set_errmsg(ccd, "read the cluster status: %s", g_strerror(-rc));
        ndfs_ccd_status_clear(out);
        return rc;
    }
    if (out->members == NULL)
        out->members = g_new0(char *, 1);
    out->applied_index = ndfs_ccd_applied_index(ccd);
    ndfs_ccd_leader(ccd, out->leader); /* mapped to the node row's name */
    return 0;
}

void ndfs_ccd_status_clear(struct ndfs_ccd_status *st)
{
    g_strfreev(st->members);
    memset(st, 0, sizeof *st);
}
