/* The LMDB side of the CCD: one environment, one sub-database per table,
 * small get/put helpers, and the dump/load used by Raft snapshots. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ccd_private.h"

#define MAP_SIZE     (1ull << 30)
#define DUMP_VERSION 1
#define LMDB_KEY_MAX 511

int ccd_mdb_errno(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
        return -ENOSPC;
    case MDB_KEYEXIST:
        return -EEXIST;
    default:
        /* LMDB passes system errors through as positive errno values */
        return rc > 0 ? -rc : -EIO;
    }
}

int ccd_store_open(struct ccd_store *s, const char *dir, char **errmsg)
{
    MDB_txn *txn = NULL;
    int rc;

    memset(s, 0, sizeof *s);
    /* The tables are derived from the Raft log, and a crash without fsync can
     * leave LMDB's files corrupt: start from new files every time. */
    const char *files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *path = g_build_filename(dir, files[i], NULL);
        if (unlink(path) != 0 && errno != ENOENT) {
            int err = errno;
            *errmsg = g_strdup_printf("cannot remove %s: %s", path, g_strerror(err));
            return -err;
        }
    }
    rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, MAP_SIZE);
    /* No fsync: the Raft log is the durable record and the tables are rebuilt
     * from it at every start (see ccd.c). */
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (int t = NDFS_CCD_NODES; rc == 0 && t < CCD_NTABLES; t++)
        rc = mdb_dbi_open(txn, ndfs_ccd_table_format(t)->name, MDB_CREATE, &s->dbi[t]);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        *errmsg = g_strdup_printf("LMDB %s: %s", dir, mdb_strerror(rc));
        if (txn)
            mdb_txn_abort(txn);
        ccd_store_close(s);
        return ccd_mdb_errno(rc);
    }
    return 0;
}

void ccd_store_close(struct ccd_store *s)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
}

static int drop_all(MDB_txn *txn, struct ccd_store *s)
{
    int rc = 0;
    for (int t = NDFS_CCD_NODES; rc == 0 && t < CCD_NTABLES; t++)
        rc = mdb_drop(txn, s->dbi[t], 0);
    return rc;
}

int ccd_store_clear(struct ccd_store *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return ccd_mdb_errno(rc);
    rc = drop_all(txn, s);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return ccd_mdb_errno(rc);
    }
    return ccd_mdb_errno(mdb_txn_commit(txn));
}

static MDB_val key_of(const char *key)
{
    return (MDB_val){.mv_size = strlen(key), .mv_data = (void *)key};
}

int ccd_txn_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *val)
{
    MDB_val k = key_of(key);
    return ccd_mdb_errno(mdb_get(txn, dbi, &k, val));
}

int ccd_txn_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *data, size_t len)
{
    MDB_val k = key_of(key), v = {.mv_size = len, .mv_data = (void *)data};
    return ccd_mdb_errno(mdb_put(txn, dbi, &k, &v, 0));
}

int ccd_txn_del(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
    MDB_val k = key_of(key);
    return ccd_mdb_errno(mdb_del(txn, dbi, &k, NULL));
}

int ccd_meta_get_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t *v)
{
    MDB_val val;
    struct ccd_reader r;
    int rc = ccd_txn_get(txn, s->dbi[NDFS_CCD_META], key, &val);
    *v = 0;
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    ccd_reader_init(&r, val.mv_data, val.mv_size);
    if (!ccd_get_u64(&r, v) || !ccd_reader_done(&r))
        return -EBADMSG;
    return 0;
}

int ccd_meta_put_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t v)
{
    g_autoptr(GByteArray) b = g_byte_array_new();
    ccd_put_u64(b, v);
    return ccd_txn_put(txn, s->dbi[NDFS_CCD_META], key, b->data, b->len);
}

/* Dump: u8 version, u8 number of tables, then per table: u8 table, u32 count,
 * count x (u32-prefixed key, u32-prefixed value). */
static int dump_table(MDB_txn *txn, MDB_dbi dbi, uint8_t table, GByteArray *b)
{
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_stat st;
    uint32_t n = 0;
    int rc = mdb_stat(txn, dbi, &st);
    if (rc != 0)
        return rc;
    if (st.ms_entries > UINT32_MAX)
        return EOVERFLOW;
    ccd_put_u8(b, table);
    ccd_put_u32(b, (uint32_t)st.ms_entries);
    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ccd_put_blob32(b, k.mv_data, k.mv_size);
        ccd_put_blob32(b, v.mv_data, v.mv_size);
        n++;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    return n == st.ms_entries ? 0 : EIO;
}

int ccd_store_dump(struct ccd_store *s, uint8_t **buf, size_t *len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return ccd_mdb_errno(rc);
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, DUMP_VERSION);
    ccd_put_u8(b, CCD_NTABLES - 1);
    for (int t = NDFS_CCD_NODES; rc == 0 && t < CCD_NTABLES; t++)
        rc = dump_table(txn, s->dbi[t], (uint8_t)t, b);
    mdb_txn_abort(txn);
    if (rc != 0) {
        g_byte_array_free(b, TRUE);
        return ccd_mdb_errno(rc);
    }
    *len = b->len;
    *buf = g_byte_array_free(b, FALSE);
    return 0;
}

static int load_tables(MDB_txn *txn, struct ccd_store *s, struct ccd_reader *r)
{
    uint8_t version = 0, ntables = 0;
    bool seen[CCD_NTABLES] = {false};

    if (!ccd_get_u8(r, &version) || !ccd_get_u8(r, &ntables) || version != DUMP_VERSION ||
        ntables != CCD_NTABLES - 1)
        return -EBADMSG;
    for (unsigned i = 0; i < ntables; i++) {
        uint8_t table = 0;
        uint32_t count = 0;
        if (!ccd_get_u8(r, &table) || !ccd_get_u32(r, &count))
            return -EBADMSG;
        if (table < NDFS_CCD_NODES || table >= CCD_NTABLES || seen[table])
            return -EBADMSG;
        seen[table] = true;
        for (uint32_t j = 0; j < count; j++) {
            MDB_val k, v;
            const uint8_t *kp, *vp;
            if (!ccd_get_blob32(r, &kp, &k.mv_size) || !ccd_get_blob32(r, &vp, &v.mv_size))
                return -EBADMSG;
            if (k.mv_size == 0 || k.mv_size > LMDB_KEY_MAX)
                return -EBADMSG;
            k.mv_data = (void *)kp;
            v.mv_data = (void *)vp;
            /* NOOVERWRITE: a duplicate key means a corrupt dump */
            int rc = mdb_put(txn, s->dbi[table], &k, &v, MDB_NOOVERWRITE);
            if (rc == MDB_KEYEXIST)
                return -EBADMSG;
            if (rc != 0)
                return ccd_mdb_errno(rc);
        }
    }
    return ccd_reader_done(r) ? 0 : -EBADMSG;
}

int ccd_store_load(struct ccd_store *s, const uint8_t *buf, size_t len)
{
    MDB_txn *txn;
    struct ccd_reader r;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return ccd_mdb_errno(rc);
    rc = ccd_mdb_errno(drop_all(txn, s));
    ccd_reader_init(&r, buf, len);
    if (rc == 0)
        rc = load_tables(txn, s, &r);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return ccd_mdb_errno(mdb_txn_commit(txn));
}
