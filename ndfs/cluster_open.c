/* The open counts of a vdisk on every other node, asked all at once before
 * a vdisk is removed. */
#define G_LOG_DOMAIN "ndfs-cluster"

#include "cluster.h"

#include <errno.h>
#include <string.h>

struct open_counts {
    struct ndfs_cluster *c;
    unsigned pending;
    bool asking; /* still sending: answers must not finish it yet */
    bool cancelled;
    GHashTable *mounts; /* node name -> GUINT_TO_POINTER(mounts) */
    char *failed_node;  /* the first by name that did not answer */
    char *why;
    ndfs_cluster_open_counts_cb cb;
    void *data;
};

struct open_count_call {
    struct open_counts *oc;
    char *node;
};

static void open_counts_failed(struct open_counts *oc, const char *node, const char *why)
{
    if (oc->failed_node != NULL && strcmp(node, oc->failed_node) >= 0)
        return;
    g_free(oc->failed_node);
    g_free(oc->why);
    oc->failed_node = g_strdup(node);
    oc->why = g_strdup(why);
}

static void open_counts_maybe_done(struct open_counts *oc)
{
    if (oc->asking || oc->pending > 0)
        return;
    oc->cb(oc->cancelled ? -ECANCELED : 0, oc->mounts, oc->failed_node, oc->why, oc->data);
    g_hash_table_unref(oc->mounts);
    g_free(oc->failed_node);
    g_free(oc->why);
    g_free(oc);
}

static void open_count_answered(int status, const char *message, GVariant *result, void *data)
{
    struct open_count_call *q = data;
    struct open_counts *oc = q->oc;
    guint32 mounts = 0;
    if (status == -ECANCELED)
        oc->cancelled = true;
    else if (status == -ETIMEDOUT || status == -ECONNRESET)
        open_counts_failed(oc, q->node, "not reachable");
    else if (status < 0)
        open_counts_failed(oc, q->node, message ? message : g_strerror(-status));
    else if (!g_variant_lookup(result, "mounts", "u", &mounts))
        open_counts_failed(oc, q->node, "malformed answer");
    else if (mounts > 0)
        g_hash_table_replace(oc->mounts, g_strdup(q->node), GUINT_TO_POINTER(mounts));
    g_free(q->node);
    g_free(q);
    oc->pending--;
    open_counts_maybe_done(oc);
}

static int note_node_name(const struct ndfs_node *n, void *data)
{
    g_ptr_array_add(data, g_strdup(n->name));
    return 0;
}

void ndfs_cluster_open_counts(struct ndfs_cluster *c, const char *vdisk, unsigned timeout_ms,
                              ndfs_cluster_open_counts_cb cb, void *data)
{
    struct open_counts *oc = g_new0(struct open_counts, 1);
    oc->c = c;
    oc->asking = true;
    oc->mounts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    oc->cb = cb;
    oc->data = data;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    int rc = c->ccd != NULL && !c->closing ? ndfs_ccd_node_foreach(c->ccd, note_node_name, names)
                                           : -ECANCELED;
    if (rc == -ECANCELED)
        oc->cancelled = true;
    else if (rc < 0)
        open_counts_failed(oc, c->node_name, "cannot read the nodes");
    for (guint i = 0; rc == 0 && i < names->len; i++) {
        const char *node = names->pdata[i];
        if (strcmp(node, c->node_name) == 0)
            continue;
        /* a node that is down may still have mounts: it cannot say */
        if (!ndfs_transport_peer_up(c->t, node)) {
            open_counts_failed(oc, node, "not reachable");
            continue;
        }
        struct open_count_call *q = g_new0(struct open_count_call, 1);
        q->oc = oc;
        q->node = g_strdup(node);
        int crc = ndfs_cluster_call_timeout(c, node, NDFS_CLUSTER_OPEN_COUNT,
                                            g_variant_new_parsed("{'name': <%s>}", vdisk),
                                            timeout_ms, open_count_answered, q);
        if (crc < 0) {
            open_counts_failed(oc, node, "not reachable");
            g_free(q->node);
            g_free(q);
            continue;
        }
        oc->pending++;
    }
    oc->asking = false;
    open_counts_maybe_done(oc);
}
