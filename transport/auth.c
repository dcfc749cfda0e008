/* Challenge-response, heartbeat tags and the cluster key file. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "auth.h"

#define AUTH_LABEL "ndfs-auth-1"
#define HB_LABEL   "ndfs-hb-1"
#define HB_MAGIC   "NDFH"
#define HB_VERSION 1
#define HB_MAC_LEN 16

bool ndfs_auth_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > NDFS_TRANSPORT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

bool ndfs_auth_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    uint8_t d = 0;
    for (size_t i = 0; i < len; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

int ndfs_auth_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void hmac_name(GHmac *h, const char *name)
{
    uint8_t n = (uint8_t)strlen(name);
    g_hmac_update(h, &n, 1);
    g_hmac_update(h, (const guchar *)name, n);
}

/* HMAC(key, label role n1 n2 name1 inc1 name2 inc2 link) */
static void auth_mac(const uint8_t *key, size_t key_len, char role, const uint8_t *n1,
                     const uint8_t *n2, const char *name1, uint64_t inc1, const char *name2,
                     uint64_t inc2, uint16_t link, uint8_t out[NDFS_AUTH_MAC_LEN])
{
    uint64_t i1 = GUINT64_TO_LE(inc1), i2 = GUINT64_TO_LE(inc2);
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, key_len);
    uint8_t r = (uint8_t)role;
    uint8_t l[2] = {(uint8_t)link, (uint8_t)(link >> 8)};
    g_hmac_update(h, (const guchar *)AUTH_LABEL, strlen(AUTH_LABEL));
    g_hmac_update(h, &r, 1);
    g_hmac_update(h, n1, NDFS_AUTH_NONCE_LEN);
    g_hmac_update(h, n2, NDFS_AUTH_NONCE_LEN);
    hmac_name(h, name1);
    g_hmac_update(h, (const guchar *)&i1, 8);
    hmac_name(h, name2);
    g_hmac_update(h, (const guchar *)&i2, 8);
    g_hmac_update(h, l, 2);
    gsize len = NDFS_AUTH_MAC_LEN;
    g_hmac_get_digest(h, out, &len);
    g_hmac_unref(h);
}

static size_t put_name(uint8_t *out, const char *name)
{
    size_t n = strlen(name);
    out[0] = (uint8_t)n;
    memcpy(out + 1, name, n);
    return 1 + n;
}

static size_t put_u64(uint8_t *out, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(out, &v, 8);
    return 8;
}

/* Reads a length-prefixed valid name; returns bytes used or 0. */
static size_t get_name(const uint8_t *buf, size_t len, char *name)
{
    if (len < 1 || buf[0] < 1 || buf[0] > NDFS_TRANSPORT_NAME_MAX || len < 1u + buf[0])
        return 0;
    memcpy(name, buf + 1, buf[0]);
    name[buf[0]] = '\0';
    return ndfs_auth_name_valid(name) ? 1u + buf[0] : 0;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

size_t ndfs_auth_challenge_encode(const char *name, uint64_t incarnation,
                                  const uint8_t nonce_a[NDFS_AUTH_NONCE_LEN], uint8_t *out)
{
    size_t n = put_name(out, name);
    n += put_u64(out + n, incarnation);
    memcpy(out + n, nonce_a, NDFS_AUTH_NONCE_LEN);
    return n + NDFS_AUTH_NONCE_LEN;
}

int ndfs_auth_challenge_decode(const uint8_t *buf, size_t len, struct ndfs_auth_hello *out)
{
    memset(out, 0, sizeof *out);
    size_t n = get_name(buf, len, out->name);
    if (!n || len != n + 8 + NDFS_AUTH_NONCE_LEN)
        return -EBADMSG;
    out->incarnation = get_u64(buf + n);
    memcpy(out->nonce, buf + n + 8, NDFS_AUTH_NONCE_LEN);
    return 0;
}

size_t ndfs_auth_response_encode(const uint8_t *key, size_t key_len,
                                 const struct ndfs_auth_hello *challenge, const char *name,
                                 uint64_t incarnation, uint16_t link,
                                 const uint8_t nonce_c[NDFS_AUTH_NONCE_LEN], uint8_t *out)
{
    size_t n = put_name(out, name);
    n += put_u64(out + n, incarnation);
    out[n++] = (uint8_t)link;
    out[n++] = (uint8_t)(link >> 8);
    memcpy(out + n, nonce_c, NDFS_AUTH_NONCE_LEN);
    n += NDFS_AUTH_NONCE_LEN;
    auth_mac(key, key_len, 'C', challenge->nonce, nonce_c, name, incarnation, challenge->name,
             challenge->incarnation, link, out + n);
    return n + NDFS_AUTH_MAC_LEN;
}

int ndfs_auth_response_verify(const uint8_t *key, size_t key_len, const char *name,
                              uint64_t incarnation, const uint8_t nonce_a[NDFS_AUTH_NONCE_LEN],
                              const uint8_t *buf, size_t len, struct ndfs_auth_hello *out)
{
    memset(out, 0, sizeof *out);
    size_t n = get_name(buf, len, out->name);
    if (!n || len != n + 8 + 2 + NDFS_AUTH_NONCE_LEN + NDFS_AUTH_MAC_LEN)
        return -EBADMSG;
    out->incarnation = get_u64(buf + n);
    n += 8;
    out->link = (uint16_t)(buf[n] | buf[n + 1] << 8);
    n += 2;
    memcpy(out->nonce, buf + n, NDFS_AUTH_NONCE_LEN);
    n += NDFS_AUTH_NONCE_LEN;
    memcpy(out->mac, buf + n, NDFS_AUTH_MAC_LEN);
    uint8_t want[NDFS_AUTH_MAC_LEN];
    auth_mac(key, key_len, 'C', nonce_a, out->nonce, out->name, out->incarnation, name, incarnation,
             out->link, want);
    return ndfs_auth_equal(want, out->mac, NDFS_AUTH_MAC_LEN) ? 0 : -EACCES;
}

size_t ndfs_auth_ok_encode(const uint8_t *key, size_t key_len, const struct ndfs_auth_ends *e,
                           uint8_t *out)
{
    return ndfs_auth_ok_encode_session(key, key_len, e, 0, out);
}

size_t ndfs_auth_ok_encode_session(const uint8_t *key, size_t key_len,
                                   const struct ndfs_auth_ends *e, uint64_t session, uint8_t *out)
{
    if (!session) {
        auth_mac(key, key_len, 'A', e->nonce_c, e->nonce_a, e->acceptor, e->acceptor_inc,
                 e->connector, e->connector_inc, e->link, out);
        return NDFS_AUTH_MAC_LEN;
    }
    /* the session follows the MAC, which covers it (as the inner MAC's key) */
    uint8_t inner[NDFS_AUTH_MAC_LEN];
    auth_mac(key, key_len, 'A', e->nonce_c, e->nonce_a, e->acceptor, e->acceptor_inc, e->connector,
             e->connector_inc, e->link, inner);
    uint8_t s[8];
    put_u64(s, session);
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, inner, sizeof inner);
    g_hmac_update(h, (const guchar *)AUTH_LABEL, strlen(AUTH_LABEL));
    g_hmac_update(h, s, sizeof s);
    gsize len = NDFS_AUTH_MAC_LEN;
    g_hmac_get_digest(h, out, &len);
    g_hmac_unref(h);
    explicit_bzero(inner, sizeof inner);
    memcpy(out + NDFS_AUTH_MAC_LEN, s, sizeof s);
    return NDFS_AUTH_MAC_LEN + sizeof s;
}

uint64_t ndfs_auth_ok_session(const uint8_t *buf, size_t len)
{
    return len == NDFS_AUTH_MAC_LEN + 8 ? get_u64(buf + NDFS_AUTH_MAC_LEN) : 0;
}

int ndfs_auth_ok_verify(const uint8_t *key, size_t key_len, const struct ndfs_auth_ends *e,
                        const uint8_t *buf, size_t len)
{
    if (len != NDFS_AUTH_MAC_LEN && len != NDFS_AUTH_MAC_LEN + 8)
        return -EBADMSG;
    uint8_t want[NDFS_AUTH_MAC_LEN + 8];
    size_t n = ndfs_auth_ok_encode_session(key, key_len, e, ndfs_auth_ok_session(buf, len), want);
    return n == len && ndfs_auth_equal(want, buf, len) ? 0 : -EACCES;
}

static void hb_mac(const uint8_t *key, size_t key_len, const uint8_t *buf, size_t len,
                   uint8_t out[HB_MAC_LEN])
{
    uint8_t full[NDFS_AUTH_MAC_LEN];
    gsize flen = sizeof full;
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, key_len);
    g_hmac_update(h, (const guchar *)HB_LABEL, strlen(HB_LABEL));
    g_hmac_update(h, buf, len);
    g_hmac_get_digest(h, full, &flen);
    g_hmac_unref(h);
    memcpy(out, full, HB_MAC_LEN);
}

size_t ndfs_heartbeat_encode(const uint8_t *key, size_t key_len, const struct ndfs_heartbeat *hb,
                             uint8_t *out)
{
    size_t n = 0;
    memcpy(out, HB_MAGIC, 4);
    n += 4;
    out[n++] = HB_VERSION;
    out[n++] = hb->link;
    n += put_name(out + n, hb->name);
    n += put_u64(out + n, hb->incarnation);
    n += put_u64(out + n, hb->counter);
    hb_mac(key, key_len, out, n, out + n);
    return n + HB_MAC_LEN;
}

int ndfs_heartbeat_decode(const uint8_t *key, size_t key_len, const uint8_t *buf, size_t len,
                          struct ndfs_heartbeat *out)
{
    memset(out, 0, sizeof *out);
    if (len < 6 || memcmp(buf, HB_MAGIC, 4) != 0 || buf[4] != HB_VERSION)
        return -EBADMSG;
    out->link = buf[5];
    size_t n = get_name(buf + 6, len - 6, out->name);
    if (!n || len != 6 + n + 16 + HB_MAC_LEN)
        return -EBADMSG;
    n += 6;
    out->incarnation = get_u64(buf + n);
    out->counter = get_u64(buf + n + 8);
    n += 16;
    uint8_t want[HB_MAC_LEN];
    hb_mac(key, key_len, buf, n, want);
    return ndfs_auth_equal(want, buf + n, HB_MAC_LEN) ? 0 : -EACCES;
}

#define KEY_FILE_BYTES 32

int ndfs_transport_key_load(const char *path, uint8_t **key, size_t *key_len, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        *errmsg = g_strdup_printf("cannot open key file %s: %s", path, g_strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        *errmsg = g_strdup_printf("cannot stat key file %s: %s", path, g_strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        *errmsg = g_strdup_printf("key file %s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        *errmsg = g_strdup_printf("key file %s is readable by others (mode %04o); chmod 600 it",
                                  path, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    char buf[256];
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (n < 0) {
        *errmsg = g_strdup_printf("cannot read key file %s: %s", path, g_strerror(e));
        return -e;
    }
    buf[n] = '\0';
    size_t len = (size_t)n;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (len < 2 * NDFS_TRANSPORT_KEY_MIN || len % 2 || len > 2 * 64) {
        *errmsg = g_strdup_printf("key file %s: expected %d hex digits, found %zu characters", path,
                                  2 * KEY_FILE_BYTES, len);
        return -EINVAL;
    }
    uint8_t *k = g_malloc(len / 2);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = g_ascii_xdigit_value(buf[2 * i]), lo = g_ascii_xdigit_value(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            explicit_bzero(k, len / 2);
            g_free(k);
            explicit_bzero(buf, sizeof buf);
            *errmsg = g_strdup_printf("key file %s: not hex digits", path);
            return -EINVAL;
        }
        k[i] = (uint8_t)(hi << 4 | lo);
    }
    explicit_bzero(buf, sizeof buf);
    *key = k;
    *key_len = len / 2;
    return 0;
}

int ndfs_transport_key_create(const char *path, char **errmsg)
{
    uint8_t k[KEY_FILE_BYTES];
    char hex[2 * KEY_FILE_BYTES + 1];
    int rc = ndfs_auth_random(k, sizeof k);
    if (rc < 0) {
        *errmsg = g_strdup_printf("cannot get random bytes: %s", g_strerror(-rc));
        return rc;
    }
    for (size_t i = 0; i < sizeof k; i++)
        g_snprintf(hex + 2 * i, 3, "%02x", k[i]);
    explicit_bzero(k, sizeof k);
    hex[2 * KEY_FILE_BYTES] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        explicit_bzero(hex, sizeof hex);
        *errmsg = g_strdup_printf("cannot create key file %s: %s", path, g_strerror(e));
        return -e;
    }
    /* the umask may have left fewer bits; never more than 0600 */
    size_t off = 0;
    while (off < sizeof hex) {
        ssize_t n = write(fd, hex + off, sizeof hex - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            explicit_bzero(hex, sizeof hex);
            close(fd);
            unlink(path);
            *errmsg = g_strdup_printf("cannot write key file %s: %s", path, g_strerror(e));
            return -e;
        }
        off += (size_t)n;
    }
    explicit_bzero(hex, sizeof hex);
    int rc2 = fsync(fd), e = errno;
    if (close(fd) < 0 && rc2 == 0) {
        rc2 = -1;
        e = errno;
    }
    if (rc2 < 0) {
        unlink(path);
        *errmsg = g_strdup_printf("cannot write key file %s: %s", path, g_strerror(e));
        return -e;
    }
    return 0;
}
