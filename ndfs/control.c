/* The control protocol codec: frame headers, bodies and the vdisk dict. */
#define G_LOG_DOMAIN "ndfs-control"

#include "control.h"

#include <errno.h>
#include <string.h>

#include "parse.h"

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = v & 0xff;
    p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
    p[2] = (v >> 16) & 0xff;
    p[3] = v >> 24;
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void ndfs_control_header_encode(const struct ndfs_control_header *h,
                                uint8_t out[NDFS_CONTROL_HEADER_SIZE])
{
    put_le32(out, h->magic);
    out[4] = h->version;
    out[5] = h->kind;
    put_le16(out + 6, h->flags);
    put_le32(out + 8, h->length);
}

int ndfs_control_header_decode(const uint8_t in[NDFS_CONTROL_HEADER_SIZE],
                               struct ndfs_control_header *out)
{
    struct ndfs_control_header h = {
        .magic = get_le32(in),
        .version = in[4],
        .kind = in[5],
        .flags = get_le16(in + 6),
        .length = get_le32(in + 8),
    };

    memset(out, 0, sizeof(*out));
    if (h.magic != NDFS_CONTROL_MAGIC)
        return -EPROTO;
    if (h.version != NDFS_CONTROL_VERSION)
        return -EPROTONOSUPPORT;
    if (h.kind < NDFS_CONTROL_REQUEST || h.kind > NDFS_CONTROL_EVENT || h.flags != 0)
        return -EPROTO;
    if (h.length > NDFS_CONTROL_MAX_BODY)
        return -EMSGSIZE;
    *out = h;
    return 0;
}

const GVariantType *ndfs_control_body_type(enum ndfs_control_kind kind)
{
    switch (kind) {
    case NDFS_CONTROL_REQUEST:
        return G_VARIANT_TYPE("(tsa{sv})");
    case NDFS_CONTROL_RESPONSE:
        return G_VARIANT_TYPE("(tisa{sv})");
    case NDFS_CONTROL_EVENT:
        return G_VARIANT_TYPE("(sa{sv})");
    }
    return NULL;
}

GBytes *ndfs_control_frame(enum ndfs_control_kind kind, GVariant *body)
{
    const GVariantType *type = ndfs_control_body_type(kind);
    g_autoptr(GVariant) owned = g_variant_ref_sink(body);

    if (!type || !g_variant_is_of_type(owned, type))
        return NULL;
#if G_BYTE_ORDER == G_BIG_ENDIAN
    /* the wire is little endian; GVariant serializes in host order */
    g_autoptr(GVariant) swapped = g_variant_byteswap(owned);
    GVariant *wire = swapped;
#else
    GVariant *wire = owned;
#endif
    gsize size = g_variant_get_size(wire);
    if (size > NDFS_CONTROL_MAX_BODY)
        return NULL;

    uint8_t *buf = g_malloc(NDFS_CONTROL_HEADER_SIZE + size);
    struct ndfs_control_header h = {
        .magic = NDFS_CONTROL_MAGIC,
        .version = NDFS_CONTROL_VERSION,
        .kind = (uint8_t)kind,
        .flags = 0,
        .length = (uint32_t)size,
    };
    ndfs_control_header_encode(&h, buf);
    /* not g_variant_store: it needs a destination aligned to 8 and the body
     * starts at offset 12 */
    if (size > 0)
        memcpy(buf + NDFS_CONTROL_HEADER_SIZE, g_variant_get_data(wire), size);
    return g_bytes_new_take(buf, NDFS_CONTROL_HEADER_SIZE + size);
}

GVariant *ndfs_control_body_decode(enum ndfs_control_kind kind, const void *buf, size_t len)
{
    const GVariantType *type = ndfs_control_body_type(kind);

    if (!type || len > NDFS_CONTROL_MAX_BODY || (len > 0 && !buf))
        return NULL;
    /* a private, aligned copy: the caller's buffer may change or be misaligned */
    g_autoptr(GBytes) copy = g_bytes_new(buf, len);
    g_autoptr(GVariant) v = g_variant_ref_sink(g_variant_new_from_bytes(type, copy, FALSE));

    /* GVariant reads non-normal data as defaults; a peer that sends it is
     * broken or hostile, so refuse it instead of guessing */
    if (!g_variant_is_of_type(v, type) || !g_variant_is_normal_form(v))
        return NULL;
#if G_BYTE_ORDER == G_BIG_ENDIAN
    return g_variant_ref_sink(g_variant_byteswap(v));
#else
    return g_variant_get_normal_form(v);
#endif
}

GVariant *ndfs_vdisk_to_dict(const struct ndfs_vdisk *v)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(v->name ? v->name : ""));
    g_variant_builder_add(&b, "{sv}", "id", g_variant_new_uint64(v->id));
    g_variant_builder_add(&b, "{sv}", "size", g_variant_new_uint64(v->size));
    g_variant_builder_add(&b, "{sv}", "owner", g_variant_new_string(v->owner ? v->owner : ""));
    g_variant_builder_add(&b, "{sv}", "group", g_variant_new_string(v->group ? v->group : ""));
    g_variant_builder_add(&b, "{sv}", "mode", g_variant_new_uint32(v->mode));
    g_variant_builder_add(
        &b, "{sv}", "primary",
        g_variant_new_take_string(g_strdup_printf("%s:%s", v->primary_node ? v->primary_node : "",
                                                  v->primary_path ? v->primary_path : "")));
    if (v->secondary_node && v->secondary_path)
        g_variant_builder_add(&b, "{sv}", "secondary",
                              g_variant_new_take_string(
                                  g_strdup_printf("%s:%s", v->secondary_node, v->secondary_path)));
    const char *master = v->on_secondary && v->secondary_node ? v->secondary_node : v->primary_node;
    g_variant_builder_add(&b, "{sv}", "master", g_variant_new_string(master ? master : ""));
    const char *failed[3] = {NULL, NULL, NULL};
    int nfailed = 0;
    if (v->primary_failed && v->primary_node)
        failed[nfailed++] = v->primary_node;
    if (v->secondary_failed && v->secondary_node)
        failed[nfailed++] = v->secondary_node;
    g_variant_builder_add(&b, "{sv}", "failed", g_variant_new_strv(failed, nfailed));
    g_variant_builder_add(&b, "{sv}", "mtime", g_variant_new_uint64(v->mtime_ns));
    g_variant_builder_add(&b, "{sv}", "version", g_variant_new_uint64(v->version));
    return g_variant_builder_end(&b);
}

/* Frees the fields ourselves: the row codecs live in libndfs_ccd, which a
 * client of the control protocol need not link. */
static void vdisk_fields_clear(struct ndfs_vdisk *v)
{
    g_free(v->name);
    g_free(v->owner);
    g_free(v->group);
    g_free(v->primary_node);
    g_free(v->primary_path);
    g_free(v->secondary_node);
    g_free(v->secondary_path);
    memset(v, 0, sizeof(*v));
}

static bool lookup_string(GVariant *dict, const char *key, char **out)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_STRING);
    if (!value)
        return false;
    *out = g_variant_dup_string(value, NULL);
    return true;
}

static bool lookup_u64(GVariant *dict, const char *key, uint64_t *out)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_UINT64);
    if (!value)
        return false;
    *out = g_variant_get_uint64(value);
    return true;
}

int ndfs_vdisk_from_dict(GVariant *dict, struct ndfs_vdisk *out)
{
    g_autofree char *primary = NULL;
    g_autofree char *secondary = NULL;
    g_autoptr(GVariant) mode = NULL;
    g_autoptr(GVariant) any_secondary = NULL;
    g_autofree char *master = NULL;
    g_autoptr(GVariant) failed = NULL;

    memset(out, 0, sizeof(*out));
    if (!dict || !g_variant_is_of_type(dict, G_VARIANT_TYPE_VARDICT))
        return -EINVAL;
    mode = g_variant_lookup_value(dict, "mode", G_VARIANT_TYPE_UINT32);
    if (!mode || !lookup_string(dict, "name", &out->name) || !lookup_u64(dict, "id", &out->id) ||
        !lookup_u64(dict, "size", &out->size) || !lookup_string(dict, "owner", &out->owner) ||
        !lookup_string(dict, "group", &out->group) || !lookup_string(dict, "primary", &primary) ||
        !lookup_u64(dict, "mtime", &out->mtime_ns) || !lookup_u64(dict, "version", &out->version))
        goto invalid;
    out->mode = g_variant_get_uint32(mode);
    if (out->mode > 07777 || !ndfs_vdisk_name_valid(out->name))
        goto invalid;
    if (ndfs_parse_node_path(primary, &out->primary_node, &out->primary_path) < 0)
        goto invalid;
    /* "secondary" is absent when there is none; be lenient about "" too */
    any_secondary = g_variant_lookup_value(dict, "secondary", NULL);
    if (any_secondary) {
        if (!g_variant_is_of_type(any_secondary, G_VARIANT_TYPE_STRING))
            goto invalid;
        secondary = g_variant_dup_string(any_secondary, NULL);
        if (secondary[0] != '\0' &&
            ndfs_parse_node_path(secondary, &out->secondary_node, &out->secondary_path) < 0)
            goto invalid;
    }
    /* the mapping's state; absent from an older ndfsd: the primary, nothing failed */
    if (lookup_string(dict, "master", &master) && master[0] != '\0') {
        if (out->secondary_node && strcmp(master, out->secondary_node) == 0 &&
            strcmp(master, out->primary_node) != 0)
            out->on_secondary = true;
        else if (strcmp(master, out->primary_node) != 0)
            goto invalid;
    }
    failed = g_variant_lookup_value(dict, "failed", G_VARIANT_TYPE_STRING_ARRAY);
    if (failed) {
        for (gsize i = 0; i < g_variant_n_children(failed); i++) {
            const char *node;
            g_variant_get_child(failed, i, "&s", &node);
            if (strcmp(node, out->primary_node) == 0)
                out->primary_failed = true;
            else if (out->secondary_node && strcmp(node, out->secondary_node) == 0)
                out->secondary_failed = true;
            else
                goto invalid;
        }
    }
    return 0;

invalid:
    vdisk_fields_clear(out);
    return -EINVAL;
}
