/* Private to ccd/: the CCD object, the LMDB store, the Raft FSM and its
 * commands, and the null transport. */
#ifndef NDFS_CCD_PRIVATE_H
#define NDFS_CCD_PRIVATE_H

#include <lmdb.h>
#include <raft.h>
#include <raft/uv.h>

#include "codec.h"
#include "ndfs/ccd.h"

#define CCD_NTABLES (NDFS_CCD_META + 1)

/* Keys of the "meta" and "membership" tables. */
#define CCD_META_CLUSTER_ID    "cluster-id"
#define CCD_META_EPOCH         "epoch"
#define CCD_META_NEXT_VDISK_ID "next-vdisk-id"
#define CCD_MEMBERSHIP_KEY     "current"

/* LMDB environment with one sub-database per table (index: enum ndfs_ccd_table). */
struct ccd_store {
    MDB_env *env;
    MDB_dbi dbi[CCD_NTABLES];
};

/* Opens new, empty tables in dir (LMDB files left from before are removed). */
int ccd_store_open(struct ccd_store *s, const char *dir, char **errmsg);
void ccd_store_close(struct ccd_store *s);
/* Maps an LMDB return code to 0 or -errno. */
int ccd_mdb_errno(int rc);
int ccd_store_clear(struct ccd_store *s);
int ccd_txn_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *val); /* -ENOENT */
int ccd_txn_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *data, size_t len);
int ccd_txn_del(MDB_txn *txn, MDB_dbi dbi, const char *key); /* -ENOENT */
/* 0 (and *v = 0) when the key is missing; -EBADMSG when it is not 8 bytes. */
int ccd_meta_get_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t *v);
int ccd_meta_put_u64(MDB_txn *txn, struct ccd_store *s, const char *key, uint64_t v);
/* Every key/value of every table; *buf is g_malloc'd, the caller frees it. */
int ccd_store_dump(struct ccd_store *s, uint8_t **buf, size_t *len);
/* Replaces every table with a dump, in one transaction; -EBADMSG if malformed
 * (then nothing changes). */
int ccd_store_load(struct ccd_store *s, const uint8_t *buf, size_t len);

/* Raft log commands: version byte, op byte, then the op's fields. */
enum ccd_op {
    CCD_OP_BOOTSTRAP = 1,
    CCD_OP_VDISK_CREATE = 2,
    CCD_OP_VDISK_UPDATE = 3,
    CCD_OP_VDISK_REMOVE = 4,
    CCD_OP_NODE_PUT = 5,
};

/* A log entry holding len bytes of data, zero-padded to a multiple of 8
 * bytes; out->base is raft_malloc'd. */
int ccd_entry_alloc(const void *data, size_t len, struct raft_buffer *out);
/* Command encoders; out->base is raft_malloc'd (raft_apply takes it). */
int ccd_cmd_bootstrap(const char *cluster_id, const struct ndfs_node *node,
                      const struct ccd_membership *m, struct raft_buffer *out);
int ccd_cmd_vdisk(enum ccd_op op, const struct ndfs_vdisk *v, struct raft_buffer *out);
int ccd_cmd_vdisk_remove(const char *name, struct raft_buffer *out);
int ccd_cmd_node_put(const struct ndfs_node *n, struct raft_buffer *out);

/* Proposes an arbitrary log entry (copied); for tests of the FSM's decoder. */
int ccd_propose_raw(struct ndfs_ccd *ccd, const void *entry, size_t len, ndfs_ccd_done_cb cb,
                    void *data);

/* Change notification from the FSM, after its transaction committed. */
void ccd_notify(struct ndfs_ccd *ccd, enum ndfs_ccd_table table, const char *key, bool removed);

/* The FSM applies commands to ccd's store; fsm->data is ccd. */
void ccd_fsm_init(struct raft_fsm *fsm, struct ndfs_ccd *ccd);
struct ccd_store *ccd_get_store(struct ndfs_ccd *ccd);

/* A transport that has no network: listening succeeds, connecting fails. */
int ccd_null_transport_init(struct raft_uv_transport *t);
void ccd_null_transport_close(struct raft_uv_transport *t);

#endif
