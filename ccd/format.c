/* The format row of each CCD table (ndfs/ccd.h): its LMDB name, the
 * version its rows are written with, and the synchronisation action a
 * change to it needs. The store opens its sub-databases by these names;
 * ndfsd's reconfiguration (ndfs/reconfig.h) runs a change as its table's
 * row says. */
#include "ccd_private.h"

/* meta holds bare u64 values and links no rows of its own yet (a node's
 * link addresses are in its nodes row): version 1, as the other tables'
 * first version. */
#define CCD_META_ROW_VERSION  1
#define CCD_LINKS_ROW_VERSION 1

static const struct ndfs_ccd_format formats[CCD_NTABLES] = {
    [NDFS_CCD_NODES] = {NDFS_CCD_NODES, "nodes", CCD_NODE_ROW_VERSION, NDFS_CCD_SYNC_NONE},
    [NDFS_CCD_LINKS] = {NDFS_CCD_LINKS, "links", CCD_LINKS_ROW_VERSION, NDFS_CCD_SYNC_SUSPEND},
    [NDFS_CCD_VDISKS] = {NDFS_CCD_VDISKS, "vdisks", CCD_ROW_VERSION, NDFS_CCD_SYNC_SUSPEND},
    [NDFS_CCD_MEMBERSHIP] = {NDFS_CCD_MEMBERSHIP, "membership", CCD_ROW_VERSION,
                             NDFS_CCD_SYNC_NONE},
    [NDFS_CCD_META] = {NDFS_CCD_META, "meta", CCD_META_ROW_VERSION, NDFS_CCD_SYNC_NONE},
};

const struct ndfs_ccd_format *ndfs_ccd_table_format(enum ndfs_ccd_table table)
{
    if ((int)table < NDFS_CCD_NODES || (int)table >= CCD_NTABLES)
        return NULL;
    return &formats[table];
}
