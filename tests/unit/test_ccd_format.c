/* The format row of each CCD table (ndfs_ccd_table_format): its name, row
 * version and synchronisation action. */
#include <criterion/criterion.h>
#include <stddef.h>

#include "ccd/codec.h"
#include "ndfs/ccd.h"

/* ---- the format row of each table ---- */

Test(ccd_format, every_table_has_its_row)
{
    const struct {
        enum ndfs_ccd_table table;
        const char *name;
        enum ndfs_ccd_sync sync;
    } want[] = {
        {NDFS_CCD_NODES, "nodes", NDFS_CCD_SYNC_NONE},
        {NDFS_CCD_LINKS, "links", NDFS_CCD_SYNC_SUSPEND},
        {NDFS_CCD_VDISKS, "vdisks", NDFS_CCD_SYNC_SUSPEND},
        {NDFS_CCD_MEMBERSHIP, "membership", NDFS_CCD_SYNC_NONE},
        {NDFS_CCD_META, "meta", NDFS_CCD_SYNC_NONE},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct ndfs_ccd_format *f = ndfs_ccd_table_format(want[i].table);
        cr_assert_not_null(f, "table %d has no format row", (int)want[i].table);
        cr_assert_eq(f->table, want[i].table);
        cr_assert_str_eq(f->name, want[i].name);
        cr_assert_eq(f->sync, want[i].sync, "table %s: sync %d", f->name, (int)f->sync);
        cr_assert_geq(f->row_version, 1, "table %s: row version %u", f->name,
                      (unsigned)f->row_version);
    }
}

Test(ccd_format, row_versions_are_the_codecs)
{
    cr_assert_eq(ndfs_ccd_table_format(NDFS_CCD_VDISKS)->row_version, CCD_ROW_VERSION);
    cr_assert_eq(ndfs_ccd_table_format(NDFS_CCD_NODES)->row_version, CCD_NODE_ROW_VERSION);
    cr_assert_eq(ndfs_ccd_table_format(NDFS_CCD_MEMBERSHIP)->row_version, CCD_ROW_VERSION);
    cr_assert_eq(ndfs_ccd_table_format(NDFS_CCD_META)->row_version, 1);
    cr_assert_eq(ndfs_ccd_table_format(NDFS_CCD_LINKS)->row_version, 1);
}

Test(ccd_format, out_of_range_is_null)
{
    cr_assert_null(ndfs_ccd_table_format((enum ndfs_ccd_table)0));
    cr_assert_null(ndfs_ccd_table_format((enum ndfs_ccd_table)(NDFS_CCD_META + 1)));
    cr_assert_null(ndfs_ccd_table_format((enum ndfs_ccd_table) - 1));
    cr_assert_null(ndfs_ccd_table_format((enum ndfs_ccd_table)1000));
}
