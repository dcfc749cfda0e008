/* Row codecs: a version byte, fixed-width little-endian fields, then
 * u16-length-prefixed strings. Decoders trust nothing: every length is
 * checked before use and every field is validated. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>
#include <string.h>

#include "codec.h"

#define VDISK_HAS_SECONDARY 0x01u
/* The mapping's state; rows written before HA have none of these bits. */
#define VDISK_ON_SECONDARY     0x02u
#define VDISK_PRIMARY_FAILED   0x04u
#define VDISK_SECONDARY_FAILED 0x08u
#define VDISK_FLAGS                                                                                \
    (VDISK_HAS_SECONDARY | VDISK_ON_SECONDARY | VDISK_PRIMARY_FAILED | VDISK_SECONDARY_FAILED)
#define MAX_MEMBERS 64

void ccd_put_u8(GByteArray *b, uint8_t v)
{
    g_byte_array_append(b, &v, 1);
}

void ccd_put_u16(GByteArray *b, uint16_t v)
{
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    g_byte_array_append(b, le, sizeof le);
}

void ccd_put_u32(GByteArray *b, uint32_t v)
{
    uint8_t le[4];
    for (unsigned i = 0; i < sizeof le; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    g_byte_array_append(b, le, sizeof le);
}

void ccd_put_u64(GByteArray *b, uint64_t v)
{
    uint8_t le[8];
    for (unsigned i = 0; i < sizeof le; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    g_byte_array_append(b, le, sizeof le);
}

void ccd_put_blob16(GByteArray *b, const uint8_t *p, size_t len)
{
    g_assert(len <= UINT16_MAX);
    ccd_put_u16(b, (uint16_t)len);
    if (len > 0)
        g_byte_array_append(b, p, (guint)len);
}

void ccd_put_blob32(GByteArray *b, const uint8_t *p, size_t len)
{
    g_assert(len <= UINT32_MAX);
    ccd_put_u32(b, (uint32_t)len);
    if (len > 0)
        g_byte_array_append(b, p, (guint)len);
}

void ccd_put_str(GByteArray *b, const char *s)
{
    ccd_put_blob16(b, (const uint8_t *)s, strlen(s));
}

void ccd_reader_init(struct ccd_reader *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->left = p ? len : 0;
    r->bad = false;
}

static const uint8_t *take(struct ccd_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t read_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

bool ccd_get_u8(struct ccd_reader *r, uint8_t *v)
{
    const uint8_t *p = take(r, 1);
    if (p)
        *v = p[0];
    return p != NULL;
}

bool ccd_get_u16(struct ccd_reader *r, uint16_t *v)
{
    const uint8_t *p = take(r, 2);
    if (p)
        *v = (uint16_t)read_le(p, 2);
    return p != NULL;
}

bool ccd_get_u32(struct ccd_reader *r, uint32_t *v)
{
    const uint8_t *p = take(r, 4);
    if (p)
        *v = (uint32_t)read_le(p, 4);
    return p != NULL;
}

bool ccd_get_u64(struct ccd_reader *r, uint64_t *v)
{
    const uint8_t *p = take(r, 8);
    if (p)
        *v = read_le(p, 8);
    return p != NULL;
}

bool ccd_get_blob16(struct ccd_reader *r, const uint8_t **p, size_t *len)
{
    uint16_t n;
    if (!ccd_get_u16(r, &n))
        return false;
    *p = take(r, n);
    *len = n;
    return *p != NULL;
}

bool ccd_get_blob32(struct ccd_reader *r, const uint8_t **p, size_t *len)
{
    uint32_t n;
    if (!ccd_get_u32(r, &n))
        return false;
    *p = take(r, n);
    *len = n;
    return *p != NULL;
}

bool ccd_get_str(struct ccd_reader *r, char **s)
{
    const uint8_t *p;
    size_t len;
    *s = NULL;
    if (!ccd_get_blob16(r, &p, &len))
        return false;
    if (memchr(p, '\0', len) != NULL) {
        r->bad = true;
        return false;
    }
    *s = g_strndup((const char *)p, len);
    return true;
}

bool ccd_reader_done(const struct ccd_reader *r)
{
    return !r->bad && r->left == 0;
}

static bool chars_in(const char *s, const char *allowed_extra, bool upper)
{
    for (const char *c = s; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
            continue;
        if (upper && *c >= 'A' && *c <= 'Z')
            continue;
        if (strchr(allowed_extra, *c) == NULL)
            return false;
    }
    return true;
}

bool ccd_valid_vdisk_name(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len < 1 || len > NDFS_VDISK_NAME_MAX)
        return false;
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    return chars_in(s, "._-", true);
}

bool ccd_valid_node_name(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    return len >= 1 && len <= NDFS_NODE_NAME_MAX && chars_in(s, "-", false);
}

/* Portable user/group names (POSIX), plus a trailing '$' as Samba machine
 * accounts use; never starting with '-' so they cannot look like options. */
bool ccd_valid_user_name(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len < 1 || len > CCD_USERNAME_MAX || s[0] == '-')
        return false;
    if (s[len - 1] == '$') {
        if (len == 1)
            return false;
        g_autofree char *head = g_strndup(s, len - 1);
        return chars_in(head, "._-", true);
    }
    return chars_in(s, "._-", true);
}

bool ccd_valid_path(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    return len >= 1 && len <= CCD_PATH_MAX && s[0] == '/';
}

bool ccd_valid_address(const char *s)
{
    if (s == NULL || strlen(s) > CCD_ADDRESS_MAX)
        return false;
    for (const char *c = s; *c; c++)
        if (!g_ascii_isgraph(*c))
            return false;
    return true;
}

bool ccd_vdisk_valid(const struct ndfs_vdisk *v)
{
    if (v->size == 0 || v->size % 512 != 0 || v->mode > 07777 || v->version < 1)
        return false;
    if (!ccd_valid_vdisk_name(v->name) || !ccd_valid_user_name(v->owner) ||
        !ccd_valid_user_name(v->group))
        return false;
    if (!ccd_valid_node_name(v->primary_node) || !ccd_valid_path(v->primary_path))
        return false;
    if ((v->secondary_node == NULL) != (v->secondary_path == NULL))
        return false;
    if (!v->secondary_node && (v->on_secondary || v->secondary_failed))
        return false;
    if (v->secondary_node &&
        (!ccd_valid_node_name(v->secondary_node) || !ccd_valid_path(v->secondary_path)))
        return false;
    return true;
}

bool ccd_node_valid(const struct ndfs_node *n)
{
    if (!(n->id >= 1 && (n->role == NDFS_NODE_VOTER || n->role == NDFS_NODE_STANDBY) &&
          ccd_valid_node_name(n->name) && ccd_valid_address(n->address)))
        return false;
    guint count = n->addresses ? g_strv_length(n->addresses) : 0;
    if (count > NDFS_NODE_ADDRESSES_MAX)
        return false;
    /* "": an index without a link (removed); never the last, and a node
     * with addresses keeps at least one */
    guint used = 0;
    for (guint i = 0; i < count; i++) {
        if (*n->addresses[i] == '\0')
            continue;
        if (!ccd_valid_address(n->addresses[i]))
            return false;
        used++;
    }
    return count == 0 || (used > 0 && *n->addresses[count - 1] != '\0');
}

static void finish(GByteArray *b, uint8_t **buf, size_t *len)
{
    *len = b->len;
    *buf = g_byte_array_free(b, FALSE);
}

int ndfs_vdisk_encode(const struct ndfs_vdisk *v, uint8_t **buf, size_t *len)
{
    if (!ccd_vdisk_valid(v))
        return -EINVAL;
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, CCD_ROW_VERSION);
    ccd_put_u64(b, v->id);
    ccd_put_u64(b, v->size);
    ccd_put_u32(b, v->mode);
    ccd_put_u64(b, v->mtime_ns);
    ccd_put_u64(b, v->version);
    uint8_t flags = 0;
    if (v->secondary_node)
        flags |= VDISK_HAS_SECONDARY;
    if (v->on_secondary)
        flags |= VDISK_ON_SECONDARY;
    if (v->primary_failed)
        flags |= VDISK_PRIMARY_FAILED;
    if (v->secondary_failed)
        flags |= VDISK_SECONDARY_FAILED;
    ccd_put_u8(b, flags);
    ccd_put_str(b, v->name);
    ccd_put_str(b, v->owner);
    ccd_put_str(b, v->group);
    ccd_put_str(b, v->primary_node);
    ccd_put_str(b, v->primary_path);
    if (v->secondary_node) {
        ccd_put_str(b, v->secondary_node);
        ccd_put_str(b, v->secondary_path);
    }
    finish(b, buf, len);
    return 0;
}

int ndfs_vdisk_decode(const uint8_t *buf, size_t len, struct ndfs_vdisk *out)
{
    struct ccd_reader r;
    uint8_t version = 0, flags = 0;

    memset(out, 0, sizeof *out);
    ccd_reader_init(&r, buf, len);
    ccd_get_u8(&r, &version);
    ccd_get_u64(&r, &out->id);
    ccd_get_u64(&r, &out->size);
    ccd_get_u32(&r, &out->mode);
    ccd_get_u64(&r, &out->mtime_ns);
    ccd_get_u64(&r, &out->version);
    ccd_get_u8(&r, &flags);
    ccd_get_str(&r, &out->name);
    ccd_get_str(&r, &out->owner);
    ccd_get_str(&r, &out->group);
    ccd_get_str(&r, &out->primary_node);
    ccd_get_str(&r, &out->primary_path);
    if (flags & VDISK_HAS_SECONDARY) {
        ccd_get_str(&r, &out->secondary_node);
        ccd_get_str(&r, &out->secondary_path);
    }
    out->on_secondary = (flags & VDISK_ON_SECONDARY) != 0;
    out->primary_failed = (flags & VDISK_PRIMARY_FAILED) != 0;
    out->secondary_failed = (flags & VDISK_SECONDARY_FAILED) != 0;
    if (!ccd_reader_done(&r) || version != CCD_ROW_VERSION || (flags & ~VDISK_FLAGS) ||
        !ccd_vdisk_valid(out)) {
        ndfs_vdisk_clear(out);
        return -EBADMSG;
    }
    return 0;
}

void ndfs_vdisk_clear(struct ndfs_vdisk *v)
{
    g_free(v->name);
    g_free(v->owner);
    g_free(v->group);
    g_free(v->primary_node);
    g_free(v->primary_path);
    g_free(v->secondary_node);
    g_free(v->secondary_path);
    memset(v, 0, sizeof *v);
}

void ndfs_vdisk_copy(struct ndfs_vdisk *dst, const struct ndfs_vdisk *src)
{
    *dst = *src;
    dst->name = g_strdup(src->name);
    dst->owner = g_strdup(src->owner);
    dst->group = g_strdup(src->group);
    dst->primary_node = g_strdup(src->primary_node);
    dst->primary_path = g_strdup(src->primary_path);
    dst->secondary_node = g_strdup(src->secondary_node);
    dst->secondary_path = g_strdup(src->secondary_path);
}

/* Node rows: version 1 ends after the address; version 2 adds a u8 count of
 * link addresses and the addresses. Both decode; encode writes version 2. */
int ndfs_node_encode(const struct ndfs_node *n, uint8_t **buf, size_t *len)
{
    if (!ccd_node_valid(n))
        return -EINVAL;
    guint count = n->addresses ? g_strv_length(n->addresses) : 0;
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, CCD_NODE_ROW_VERSION);
    ccd_put_u64(b, n->id);
    ccd_put_u8(b, n->role);
    ccd_put_str(b, n->name);
    ccd_put_str(b, n->address);
    ccd_put_u8(b, (uint8_t)count);
    for (guint i = 0; i < count; i++)
        ccd_put_str(b, n->addresses[i]);
    finish(b, buf, len);
    return 0;
}

int ndfs_node_decode(const uint8_t *buf, size_t len, struct ndfs_node *out)
{
    struct ccd_reader r;
    uint8_t version = 0, count = 0;
    bool ok = true;

    memset(out, 0, sizeof *out);
    ccd_reader_init(&r, buf, len);
    ccd_get_u8(&r, &version);
    ccd_get_u64(&r, &out->id);
    ccd_get_u8(&r, &out->role);
    ccd_get_str(&r, &out->name);
    ccd_get_str(&r, &out->address);
    if (version == CCD_NODE_ROW_VERSION) {
        ok = ccd_get_u8(&r, &count) && count <= NDFS_NODE_ADDRESSES_MAX;
        out->addresses = g_new0(char *, (ok ? count : 0) + 1u);
        for (uint8_t i = 0; ok && i < count; i++)
            ok = ccd_get_str(&r, &out->addresses[i]);
    } else {
        ok = version == 1;
        out->addresses = g_new0(char *, 1);
    }
    if (!ok || !ccd_reader_done(&r) || !ccd_node_valid(out)) {
        ndfs_node_clear(out);
        return -EBADMSG;
    }
    return 0;
}

void ndfs_node_clear(struct ndfs_node *n)
{
    g_free(n->name);
    g_free(n->address);
    g_strfreev(n->addresses);
    memset(n, 0, sizeof *n);
}

void ndfs_node_copy(struct ndfs_node *dst, const struct ndfs_node *src)
{
    *dst = *src;
    dst->name = g_strdup(src->name);
    dst->address = g_strdup(src->address);
    dst->addresses = src->addresses ? g_strdupv(src->addresses) : g_new0(char *, 1);
}

int ccd_membership_encode(const struct ccd_membership *m, uint8_t **buf, size_t *len)
{
    guint n = m->members ? g_strv_length(m->members) : 0;
    if (m->epoch < 1 || n > MAX_MEMBERS)
        return -EINVAL;
    for (guint i = 0; i < n; i++)
        if (!ccd_valid_node_name(m->members[i]))
            return -EINVAL;
    GByteArray *b = g_byte_array_new();
    ccd_put_u8(b, CCD_ROW_VERSION);
    ccd_put_u64(b, m->epoch);
    ccd_put_u16(b, (uint16_t)n);
    for (guint i = 0; i < n; i++)
        ccd_put_str(b, m->members[i]);
    finish(b, buf, len);
    return 0;
}

int ccd_membership_decode(const uint8_t *buf, size_t len, struct ccd_membership *out)
{
    struct ccd_reader r;
    uint8_t version = 0;
    uint16_t n = 0;
    bool ok = true;

    memset(out, 0, sizeof *out);
    ccd_reader_init(&r, buf, len);
    ccd_get_u8(&r, &version);
    ccd_get_u64(&r, &out->epoch);
    ccd_get_u16(&r, &n);
    if (r.bad || n > MAX_MEMBERS) {
        ok = false;
        n = 0;
    }
    out->members = g_new0(char *, n + 1u);
    for (uint16_t i = 0; ok && i < n; i++) {
        ok = ccd_get_str(&r, &out->members[i]) && ccd_valid_node_name(out->members[i]);
    }
    if (!ok || !ccd_reader_done(&r) || version != CCD_ROW_VERSION || out->epoch < 1) {
        ccd_membership_clear(out);
        return -EBADMSG;
    }
    return 0;
}

void ccd_membership_clear(struct ccd_membership *m)
{
    g_strfreev(m->members);
    memset(m, 0, sizeof *m);
}
