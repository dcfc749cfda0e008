/* Who may change the CCD through the control socket: root and members of
 * the configured admin group. Everyone who can open the socket may read. */
#ifndef NDFS_PERM_H
#define NDFS_PERM_H

#include <stdbool.h>
#include <sys/types.h>

struct ndfs_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* admin_gid is (gid_t)-1 when no admin group is configured. groups are the
 * peer's supplementary groups. Pure: no lookups. */
bool ndfs_perm_may_change(const struct ndfs_peer *peer, gid_t admin_gid, const gid_t *groups,
                          int ngroups);
/* Credentials of a connected unix socket peer (SO_PEERCRED). */
int ndfs_peer_from_socket(int fd, struct ndfs_peer *out);
/* Supplementary groups of uid (looked up by name with getgrouplist).
 * *groups is g_malloc'd. -ENOENT when the uid has no passwd entry (then
 * only the primary gid is returned). */
int ndfs_peer_groups(uid_t uid, gid_t gid, gid_t **groups, int *ngroups);

#endif
