/* Until the cluster transport module lands: opening a CCD with a transport
 * fails with -ENOSYS. raft_bridge.c replaces this file then. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <errno.h>

#include "ccd_private.h"

int ccd_bridge_init(struct raft_uv_transport *rt, uv_loop_t *loop, struct ndfs_transport *t)
{
    (void)rt;
    (void)loop;
    (void)t;
    return -ENOSYS;
}

void ccd_bridge_close(struct raft_uv_transport *rt)
{
    (void)rt;
}

int ccd_bridge_query_commit(struct raft_uv_transport *rt, const char *peer)
{
    (void)rt;
    (void)peer;
    return -ENOSYS;
}

void ccd_bridge_set_commit_handlers(struct raft_uv_transport *rt, struct raft *raft,
                                    ccd_commit_cb cb, void *data)
{
    (void)rt;
    (void)raft;
    (void)cb;
    (void)data;
}

void ccd_bridge_peer_lost(struct raft_uv_transport *rt, const char *peer)
{
    (void)rt;
    (void)peer;
}

int ccd_bridge_peer_set(struct ndfs_transport *t, const char *name, const char *const *addresses)
{
    (void)t;
    (void)name;
    (void)addresses;
    return -ENOSYS;
}

int ccd_bridge_peer_remove(struct ndfs_transport *t, const char *name)
{
    (void)t;
    (void)name;
    return -ENOSYS;
}
