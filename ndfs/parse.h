/* Parsing and validation of the values people type: sizes, modes, names,
 * NODE:PATH pairs. Pure functions; 0 or -EINVAL (-ERANGE for overflow). */
#ifndef NDFS_PARSE_H
#define NDFS_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "512", "64K", "64M", "10G", "1T", "2P" (binary units, case-insensitive,
 * optional trailing "iB" or "B"). No sign, no fraction, no whitespace.
 * -ERANGE when the value does not fit 64 bits. */
int ndfs_parse_size(const char *s, uint64_t *out);
/* Human form of a size: "512", "64K", "1.5G" (binary units). g_malloc'd. */
char *ndfs_format_size(uint64_t bytes);
/* Octal permission bits "0660", "660", "4755"; at most 07777. */
int ndfs_parse_mode(const char *s, uint32_t *out);
/* [A-Za-z0-9._-]{1,64}, not "." or "..". */
bool ndfs_vdisk_name_valid(const char *name);
/* [a-z0-9-]{1,32} */
bool ndfs_node_name_valid(const char *name);
/* "NODE:PATH": a valid node name, ':' and an absolute path (at most PATH_MAX,
 * no NUL). *node and *path are g_malloc'd on success. */
int ndfs_parse_node_path(const char *s, char **node, char **path);
/* A user or group name as stored in the CCD: 1..32 chars of
 * [A-Za-z0-9._-], not starting with '-'. */
bool ndfs_account_name_valid(const char *name);

#endif
