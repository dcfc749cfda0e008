/* Who may change the CCD: root and members of the admin group. */
#define G_LOG_DOMAIN "ndfs-perm"

#include "perm.h"

#include <errno.h>
#include <glib.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

bool ndfs_perm_may_change(const struct ndfs_peer *peer, gid_t admin_gid, const gid_t *groups,
                          int ngroups)
{
    if (peer->uid == 0)
        return true;
    if (admin_gid == (gid_t)-1)
        return false;
    if (peer->gid == admin_gid)
        return true;
    for (int i = 0; groups && i < ngroups; i++)
        if (groups[i] == admin_gid)
            return true;
    return false;
}

int ndfs_peer_from_socket(int fd, struct ndfs_peer *out)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (len != sizeof(cred))
        return -EPROTO;
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

/* The passwd entry's name for uid, g_malloc'd; -ENOENT when there is none. */
static int user_name(uid_t uid, char **name)
{
    long suggested = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = suggested > 0 ? (size_t)suggested : 1024;

    for (;;) {
        g_autofree char *buf = g_malloc(size);
        struct passwd pw, *found = NULL;
        int r = getpwuid_r(uid, &pw, buf, size, &found);
        if (r == ERANGE && size < (1u << 20)) {
            size *= 2;
            continue;
        }
        if (r != 0)
            return -r;
        if (!found)
            return -ENOENT;
        *name = g_strdup(pw.pw_name);
        return 0;
    }
}

int ndfs_peer_groups(uid_t uid, gid_t gid, gid_t **groups, int *ngroups)
{
    g_autofree char *name = NULL;
    int r = user_name(uid, &name);

    *groups = NULL;
    *ngroups = 0;
    if (r < 0) {
        *groups = g_new(gid_t, 1);
        (*groups)[0] = gid;
        *ngroups = 1;
        return r;
    }
    int count = 16;
    for (;;) {
        gid_t *list = g_new(gid_t, count);
        int n = count;
        if (getgrouplist(name, gid, list, &n) >= 0) {
            *groups = list;
            *ngroups = n;
            return 0;
        }
        g_free(list);
        /* n now holds the number needed; grow at least geometrically in
         * case the membership changed in between */
        count = MAX(n, count * 2);
        if (count > 65536)
            return -E2BIG;
    }
}
