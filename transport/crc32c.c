/* CRC32C (Castagnoli): a table-driven version, and on x86-64 the crc32
 * instruction (three chains at once) and, for large buffers on CPUs with
 * AVX-512 and VPCLMULQDQ, folding by carry-less multiplication. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <string.h>

#include <glib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "frame.h"

/* Buffers from this size on are folded (where the CPU can): below, the
 * crc32 instruction's three chains are as fast. */
#define CRC_FOLD_MIN 1024

static bool crc_fold_off; /* tests: the crc32 instruction only */

void ndfs_crc32c_allow_fold(bool allow)
{
    crc_fold_off = !allow;
}

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli */

static uint32_t crc_table[8][256];
static gsize crc_table_ready;

static void crc_table_init(void)
{
    if (!g_once_init_enter(&crc_table_ready))
        return;
    for (unsigned i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (unsigned i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++)
            crc_table[s][i] = (crc_table[s - 1][i] >> 8) ^ crc_table[0][crc_table[s - 1][i] & 0xff];
    g_once_init_leave(&crc_table_ready, 1);
}

uint32_t ndfs_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    crc_table_init();
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w = GUINT64_FROM_LE(w) ^ crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* a(x) * b(x) mod P(x), registers in the CRC's reflected order (bit 31 is
 * the coefficient of x^0, bit 0 that of x^31). */
static uint32_t crc_mulmod(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
        if (a & bit)
            product ^= b;
        b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1; /* b *= x */
    }
    return product;
}

/* x^(2^k) mod P for k = 0..63: the powers that x^n is a product of. */
static uint32_t crc_x2k[64];
static gsize crc_x2k_ready;

/* x^n mod P, in the CRC's reflected order */
static uint32_t crc_xpow(uint64_t n)
{
    if (g_once_init_enter(&crc_x2k_ready)) {
        uint32_t power = 1u << 30; /* x^1 */
        for (int k = 0; k < 64; k++) {
            crc_x2k[k] = power;
            power = crc_mulmod(power, power);
        }
        g_once_init_leave(&crc_x2k_ready, 1);
    }
    uint32_t r = 1u << 31; /* x^0 */
    for (int k = 0; n != 0; k++, n >>= 1)
        if (n & 1)
            r = crc_mulmod(r, crc_x2k[k]);
    return r;
}

#if defined(__x86_64__)
/* Three independent crc32 instructions at a time (the instruction's latency
 * is three times its throughput) over three consecutive blocks A, B, C of
 * n bytes, B and C started from a zero register; then crc(AB) is crc(A)
 * advanced over n zero bytes, xor crc(B) (the CRC is linear), and likewise
 * for C. Advancing a register over n zero bytes multiplies it by x^(8n)
 * modulo the polynomial, a linear map of the register's four bytes, kept
 * as four tables of 256 per block size: about three times the speed of one
 * chain on large buffers. */
#define CRC_LONG  8192
#define CRC_SHORT 256

static uint32_t crc_long[4][256], crc_short[4][256];
static gsize crc_zeros_ready;

/* The tables that advance a register over len zero bytes: a product by
 * x^(8 len). */
static void zeros_table(uint32_t zeros[4][256], size_t len)
{
    uint32_t power = crc_xpow(8 * (uint64_t)len);
    for (uint32_t n = 0; n < 256; n++)
        for (int byte = 0; byte < 4; byte++)
            zeros[byte][n] = crc_mulmod(n << (8 * byte), power);
}

static void crc_zeros_init(void)
{
    if (!g_once_init_enter(&crc_zeros_ready))
        return;
    zeros_table(crc_long, CRC_LONG);
    zeros_table(crc_short, CRC_SHORT);
    g_once_init_leave(&crc_zeros_ready, 1);
}

static inline uint32_t crc_shift(const uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Three chains over the blocks of n bytes at p, p + n, p + 2n, the first
 * continuing from c0; the CRC register after all three. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc3(uint64_t c0, const uint8_t *p, size_t n, const uint32_t zeros[4][256])
{
    uint64_t c1 = 0, c2 = 0;
    for (const uint8_t *end = p + n; p < end; p += 8) {
        c0 = __builtin_ia32_crc32di(c0, load64(p));
        c1 = __builtin_ia32_crc32di(c1, load64(p + n));
        c2 = __builtin_ia32_crc32di(c2, load64(p + 2 * n));
    }
    c0 = crc_shift(zeros, (uint32_t)c0) ^ c1;
    return crc_shift(zeros, (uint32_t)c0) ^ c2;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                               size_t len)
{
    uint64_t c0 = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7) != 0) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        len--;
    }
    if (len >= 3 * CRC_SHORT)
        crc_zeros_init();
    for (; len >= 3 * CRC_LONG; p += 3 * CRC_LONG, len -= 3 * CRC_LONG)
        c0 = crc3(c0, p, CRC_LONG, crc_long);
    for (; len >= 3 * CRC_SHORT; p += 3 * CRC_SHORT, len -= 3 * CRC_SHORT)
        c0 = crc3(c0, p, CRC_SHORT, crc_short);
    while (len >= 8) {
        c0 = __builtin_ia32_crc32di(c0, load64(p));
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c0;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

/* Folding with carry-less multiplication, 512 bits at a time (VPCLMULQDQ):
 * four times the crc32 instruction's bytes per cycle on large buffers.
 *
 * A 128-bit lane holds 16 bytes of the message as they lie in memory, its
 * bit k (of the little-endian 128-bit value) being the coefficient of
 * x^(127-k): the reflected order of the CRC. Such a lane R, followed by D
 * more bits of message, stands for R(x) * x^D; modulo P(x) that is
 * R_hi(x) * (x^(64+D) mod P) + R_lo(x) * (x^D mod P), where R_hi is the
 * lane's low quadword (the first 64 bits of the message) and R_lo its high
 * one. A carry-less product of two quadwords in this order comes out
 * multiplied by x (its bit k stands for x^(126-k), read as x^(127-k)), so
 * the constants are x^(63+D) mod P and x^(D-1) mod P, each in the high half
 * of its quadword. Folding a lane forward D bits onto the lane there keeps
 * the whole message congruent modulo P, and the degree below 128.
 *
 * The register's initial value is xored into the first 32 bits (that is
 * what a CRC register does), and the last lane left is a 16-byte message
 * whose plain CRC (crc32 instruction from 0, no inversion) is the CRC of
 * everything folded into it. */
#define FOLD_BYTES 256 /* four 512-bit accumulators */

struct fold_keys {
    uint64_t k[2]; /* x^(63+D) mod P, x^(D-1) mod P: a lane's low, high quadword */
};
static struct fold_keys fold_256, fold_64, fold_48, fold_32, fold_16;
static gsize fold_keys_ready;

static struct fold_keys fold_keys(unsigned bytes)
{
    unsigned d = 8 * bytes;
    /* a 32-bit reflected value in the high half of a reflected quadword */
    return (struct fold_keys){{(uint64_t)crc_xpow(63 + d) << 32, (uint64_t)crc_xpow(d - 1) << 32}};
}

static void fold_keys_init(void)
{
    if (!g_once_init_enter(&fold_keys_ready))
        return;
    fold_256 = fold_keys(256);
    fold_64 = fold_keys(64);
    fold_48 = fold_keys(48);
    fold_32 = fold_keys(32);
    fold_16 = fold_keys(16);
    g_once_init_leave(&fold_keys_ready, 1);
}

#define FOLD_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))

FOLD_TARGET static inline __m512i fold512(__m512i x, __m512i keys, __m512i next)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, keys, 0x00),
                                     _mm512_clmulepi64_epi128(x, keys, 0x11), next, 0x96);
}

FOLD_TARGET static inline __m128i fold128(__m128i x, const struct fold_keys *k, __m128i next)
{
    __m128i keys = _mm_loadu_si128((const __m128i *)k->k);
    return _mm_xor_si128(
        _mm_xor_si128(_mm_clmulepi64_si128(x, keys, 0x00), _mm_clmulepi64_si128(x, keys, 0x11)),
        next);
}

FOLD_TARGET static inline __m512i broadcast_keys(const struct fold_keys *k)
{
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k->k));
}

/* len >= FOLD_BYTES */
FOLD_TARGET static uint32_t crc32c_fold(uint32_t crc, const uint8_t *p, size_t len)
{
    fold_keys_init();
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64),
            x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    p += FOLD_BYTES;
    len -= FOLD_BYTES;
    __m512i k = broadcast_keys(&fold_256);
    while (len >= FOLD_BYTES) {
        x0 = fold512(x0, k, _mm512_loadu_si512(p));
        x1 = fold512(x1, k, _mm512_loadu_si512(p + 64));
        x2 = fold512(x2, k, _mm512_loadu_si512(p + 128));
        x3 = fold512(x3, k, _mm512_loadu_si512(p + 192));
        p += FOLD_BYTES;
        len -= FOLD_BYTES;
    }
    k = broadcast_keys(&fold_64);
    x0 = fold512(x0, k, x1);
    x0 = fold512(x0, k, x2);
    x0 = fold512(x0, k, x3);
    while (len >= 64) {
        x0 = fold512(x0, k, _mm512_loadu_si512(p));
        p += 64;
        len -= 64;
    }
    /* four lanes, in message order, into the last */
    __m128i r = _mm512_extracti32x4_epi32(x0, 3);
    r = _mm_xor_si128(r, fold128(_mm512_extracti32x4_epi32(x0, 0), &fold_48, _mm_setzero_si128()));
    r = _mm_xor_si128(r, fold128(_mm512_extracti32x4_epi32(x0, 1), &fold_32, _mm_setzero_si128()));
    r = fold128(_mm512_extracti32x4_epi32(x0, 2), &fold_16, r);
    while (len >= 16) {
        r = fold128(r, &fold_16, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    uint64_t c = __builtin_ia32_crc32di(0, (uint64_t)_mm_cvtsi128_si64(r));
    c = __builtin_ia32_crc32di(c, (uint64_t)_mm_extract_epi64(r, 1));
    return crc32c_sse42(~(uint32_t)c, p, len); /* the last bytes */
}

enum { CPU_SSE42 = 1, CPU_FOLD = 2 };

static int cpu_crc_features(void)
{
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        bool sse42 = __builtin_cpu_supports("sse4.2");
        bool fold = sse42 && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("pclmul");
        have = (sse42 ? CPU_SSE42 : 0) | (fold ? CPU_FOLD : 0);
    }
    return have;
}
#endif

bool ndfs_crc32c_hw(uint32_t crc, const void *buf, size_t len, uint32_t *out)
{
#if defined(__x86_64__)
    if (len >= CRC_FOLD_MIN && (cpu_crc_features() & CPU_FOLD) && !crc_fold_off) {
        *out = crc32c_fold(crc, buf, len);
        return true;
    }
    if (cpu_crc_features() & CPU_SSE42) {
        *out = crc32c_sse42(crc, buf, len);
        return true;
    }
#else
    (void)crc;
    (void)buf;
    (void)len;
    (void)out;
#endif
    return false;
}

uint32_t ndfs_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2)
{
    /* crc1 followed by len2 bytes is crc1 * x^(8 len2), plus crc2: the
     * pre- and post-inversions of the two cancel out */
    return crc_mulmod(crc_xpow(8 * (uint64_t)len2), crc1) ^ crc2;
}

uint32_t ndfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    uint32_t out;
    if (len && ndfs_crc32c_hw(crc, buf, len, &out))
        return out;
    return len ? ndfs_crc32c_sw(crc, buf, len) : crc;
}
