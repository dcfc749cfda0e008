/* Parsing and validation of sizes, modes, names and NODE:PATH pairs. */
#define G_LOG_DOMAIN "ndfs-parse"

#include "parse.h"

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <string.h>

/* Binary units in increasing order; the index + 1 is the power of 1024. */
static const char size_units[] = "KMGTP";

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The power of 1024 a unit suffix stands for, or -1. Accepts "", "B", and
 * for each unit X: "X", "XB", "XiB" (case-insensitive). */
static int unit_power(const char *suffix)
{
    if (suffix[0] == '\0' || g_ascii_strcasecmp(suffix, "B") == 0)
        return 0;
    const char *unit = strchr(size_units, g_ascii_toupper(suffix[0]));
    if (!unit)
        return -1;
    const char *rest = suffix + 1;
    if (rest[0] != '\0' && g_ascii_strcasecmp(rest, "B") != 0 &&
        g_ascii_strcasecmp(rest, "iB") != 0)
        return -1;
    return (int)(unit - size_units) + 1;
}

int ndfs_parse_size(const char *s, uint64_t *out)
{
    uint64_t value = 0;
    bool overflow = false;
    const char *p = s;

    if (!s || !is_digit(*s))
        return -EINVAL;
    for (; is_digit(*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            value = value * 10 + digit;
    }
    int power = unit_power(p);
    if (power < 0)
        return -EINVAL;
    if (overflow)
        return -ERANGE;
    for (int i = 0; i < power; i++) {
        if (value > UINT64_MAX / 1024)
            return -ERANGE;
        value *= 1024;
    }
    *out = value;
    return 0;
}

char *ndfs_format_size(uint64_t bytes)
{
    int power = 0;
    uint64_t unit = 1;

    while (power < (int)strlen(size_units) && bytes / 1024 >= unit) {
        unit *= 1024;
        power++;
    }
    if (power == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT, bytes);

    uint64_t whole = bytes / unit;
    uint64_t rem = bytes % unit;
    if (rem == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT "%c", whole, size_units[power - 1]);
    /* one decimal, rounded to nearest; rem * 10 cannot overflow (unit <= 2^50) */
    uint64_t tenths = (rem * 10 + unit / 2) / unit;
    if (tenths == 10) {
        whole++;
        tenths = 0;
        if (whole == 1024 && power < (int)strlen(size_units)) {
            whole = 1;
            power++;
        }
    }
    return g_strdup_printf("%" G_GUINT64_FORMAT ".%" G_GUINT64_FORMAT "%c", whole, tenths,
                           size_units[power - 1]);
}

int ndfs_parse_mode(const char *s, uint32_t *out)
{
    uint32_t mode = 0;
    size_t len = s ? strlen(s) : 0;

    if (len < 1 || len > 4)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '7')
            return -EINVAL;
        mode = mode * 8 + (uint32_t)(s[i] - '0');
    }
    *out = mode; /* four octal digits cannot exceed 07777 */
    return 0;
}

static bool chars_in(const char *s, size_t max_len, const char *extra, bool upper)
{
    size_t len = 0;

    for (const char *p = s; *p; p++, len++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || is_digit(c) || (upper && c >= 'A' && c <= 'Z') ||
                  strchr(extra, c) != NULL;
        if (!ok || len >= max_len)
            return false;
    }
    return len >= 1;
}

bool ndfs_vdisk_name_valid(const char *name)
{
    if (!name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    return chars_in(name, 64, "._-", true);
}

bool ndfs_node_name_valid(const char *name)
{
    return name && chars_in(name, 32, "-", false);
}

bool ndfs_account_name_valid(const char *name)
{
    return name && name[0] != '-' && chars_in(name, 32, "._-", true);
}

int ndfs_parse_node_path(const char *s, char **node, char **path)
{
    const char *colon = s ? strchr(s, ':') : NULL;

    if (!colon)
        return -EINVAL;
    g_autofree char *node_name = g_strndup(s, (gsize)(colon - s));
    const char *path_part = colon + 1;
    if (!ndfs_node_name_valid(node_name) || path_part[0] != '/' || strlen(path_part) >= PATH_MAX)
        return -EINVAL;
    *node = g_steal_pointer(&node_name);
    *path = g_strdup(path_part);
    return 0;
}
