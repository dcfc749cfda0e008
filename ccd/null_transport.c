/* A raft_uv transport without a network, for a node whose cluster has no
 * other server: listening succeeds and accepts nothing, connecting fails.
 * The cluster transport replaces it once nodes can join. */
#define G_LOG_DOMAIN "ndfs-ccd"

#include <string.h>

#include "ccd_private.h"

static int null_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    (void)t;
    (void)id;
    (void)address;
    return 0;
}

static int null_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    (void)t;
    (void)cb;
    return 0;
}

static int null_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                        const char *address, raft_uv_connect_cb cb)
{
    (void)req;
    (void)cb;
    g_snprintf(t->errmsg, sizeof t->errmsg, "no network: cannot connect to server %llu (%s)", id,
               address);
    return RAFT_NOCONNECTION;
}

/* Nothing is pending, so it is safe to release the transport at once. */
static void null_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    if (cb)
        cb(t);
}

int ccd_null_transport_init(struct raft_uv_transport *t)
{
    memset(t, 0, sizeof *t);
    t->init = null_init;
    t->listen = null_listen;
    t->connect = null_connect;
    t->close = null_close;
    return 0;
}

void ccd_null_transport_close(struct raft_uv_transport *t)
{
    t->impl = NULL;
}
