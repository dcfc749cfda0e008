/* Private to ccd/: little-endian byte writer/reader and the validation
 * helpers shared by the row codecs, the Raft commands and the snapshots. */
#ifndef NDFS_CCD_CODEC_H
#define NDFS_CCD_CODEC_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ndfs/ccd.h"

#define CCD_ROW_VERSION      1
#define CCD_NODE_ROW_VERSION 2
#define CCD_PATH_MAX         4095
#define CCD_ADDRESS_MAX      255
#define CCD_USERNAME_MAX     32

void ccd_put_u8(GByteArray *b, uint8_t v);
void ccd_put_u16(GByteArray *b, uint16_t v);
void ccd_put_u32(GByteArray *b, uint32_t v);
void ccd_put_u64(GByteArray *b, uint64_t v);
/* u16 length, then the bytes (no NUL); the caller checks len <= UINT16_MAX. */
void ccd_put_str(GByteArray *b, const char *s);
void ccd_put_blob16(GByteArray *b, const uint8_t *p, size_t len);
void ccd_put_blob32(GByteArray *b, const uint8_t *p, size_t len);

/* A reader never reads past its end; after the first failure every get fails. */
struct ccd_reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};
void ccd_reader_init(struct ccd_reader *r, const uint8_t *p, size_t len);
bool ccd_get_u8(struct ccd_reader *r, uint8_t *v);
bool ccd_get_u16(struct ccd_reader *r, uint16_t *v);
bool ccd_get_u32(struct ccd_reader *r, uint32_t *v);
bool ccd_get_u64(struct ccd_reader *r, uint64_t *v);
/* A u16-prefixed string without NUL bytes; *s is g_malloc'd. */
bool ccd_get_str(struct ccd_reader *r, char **s);
/* Points into the reader's buffer; nothing is copied. */
bool ccd_get_blob16(struct ccd_reader *r, const uint8_t **p, size_t *len);
bool ccd_get_blob32(struct ccd_reader *r, const uint8_t **p, size_t *len);
/* True when everything was read and nothing is left over. */
bool ccd_reader_done(const struct ccd_reader *r);

bool ccd_valid_vdisk_name(const char *s);
bool ccd_valid_node_name(const char *s);
bool ccd_valid_user_name(const char *s);
bool ccd_valid_path(const char *s);
bool ccd_valid_address(const char *s);
bool ccd_vdisk_valid(const struct ndfs_vdisk *v);
bool ccd_node_valid(const struct ndfs_node *n);

/* The single row of the "membership" table (key "current"). */
struct ccd_membership {
    uint64_t epoch;
    char **members; /* NULL-terminated, g_strfreev */
};
int ccd_membership_encode(const struct ccd_membership *m, uint8_t **buf, size_t *len);
int ccd_membership_decode(const uint8_t *buf, size_t len, struct ccd_membership *out);
void ccd_membership_clear(struct ccd_membership *m);

#endif
