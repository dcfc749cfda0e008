#define G_LOG_DOMAIN "ndfs-membership"

#include "membership/view.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#define MSG_VERSION 1

struct node_state {
    bool in_table; /* in the nodes table (else only heard of) */
    bool voter;
    uint64_t added_ns; /* appeared in the nodes table while we watched; 0: at load */
    uint64_t heard_ns; /* last sign of life; 0: never */
    uint64_t hb_ns;    /* last heartbeat received (leader's majority lease); 0: never */
};

struct mview {
    char *self;
    struct mview_config cfg;
    GHashTable *nodes; /* name -> struct node_state */
    bool nodes_loaded;
    uint64_t epoch;
    GHashTable *members; /* committed members: name -> name (a set) */
    bool leader;
    uint64_t takeover_ns;
    uint64_t granted_expiry; /* from grants of an epoch we applied; 0: none */
    uint64_t grant_epoch;    /* the highest epoch a grant carried; 0: none */
    /* grants of an epoch we have not applied yet: the latest expiry among
     * them and the highest epoch; they count once we applied pending_epoch */
    uint64_t pending_expiry;
    uint64_t pending_epoch; /* 0: none */
    /* after a stall of our own, heartbeats received before this time do not
     * count toward the leader's majority (they may have waited in a buffer) */
    uint64_t distrust_until;
    bool commit_in_flight;
};

struct mview *mview_new(const char *self, const struct mview_config *cfg)
{
    if (self == NULL || cfg->failure_timeout_ns == 0 || cfg->lease_ns == 0 ||
        cfg->lease_ns >= cfg->failure_timeout_ns)
        return NULL;
    struct mview *v = g_new0(struct mview, 1);
    v->self = g_strdup(self);
    v->cfg = *cfg;
    v->nodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    v->members = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    return v;
}

void mview_free(struct mview *v)
{
    if (v == NULL)
        return;
    g_hash_table_destroy(v->nodes);
    g_hash_table_destroy(v->members);
    g_free(v->self);
    g_free(v);
}

static struct node_state *node_lookup_or_add(struct mview *v, const char *name)
{
    struct node_state *ns = g_hash_table_lookup(v->nodes, name);
    if (ns == NULL) {
        ns = g_new0(struct node_state, 1);
        g_hash_table_insert(v->nodes, g_strdup(name), ns);
    }
    return ns;
}

bool mview_set_nodes(struct mview *v, const struct mview_node_row *rows, size_t n, uint64_t now)
{
    bool changed = false;
    GHashTableIter it;
    gpointer key, val;
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (size_t i = 0; i < n; i++) {
        struct node_state *ns = node_lookup_or_add(v, rows[i].name);
        g_hash_table_add(seen, (gpointer)rows[i].name);
        if (!ns->in_table) {
            changed = true;
            ns->in_table = true;
            ns->added_ns = v->nodes_loaded ? now : 0;
        }
        if (ns->voter != rows[i].voter)
            changed = true;
        ns->voter = rows[i].voter;
    }
    /* a node gone from the table is forgotten, history and all: if it comes
     * back it is a new node */
    g_hash_table_iter_init(&it, v->nodes);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        if (!g_hash_table_contains(seen, key)) {
            changed = changed || ((struct node_state *)val)->in_table;
            g_hash_table_iter_remove(&it);
        }
    }
    v->nodes_loaded = true;
    return changed;
}

bool mview_is_node(const struct mview *v, const char *name)
{
    const struct node_state *ns = g_hash_table_lookup(v->nodes, name);
    return ns != NULL && ns->in_table;
}

bool mview_set_committed(struct mview *v, uint64_t epoch, const char *const *members)
{
    guint n = members ? g_strv_length((gchar **)members) : 0;
    bool changed = epoch != v->epoch || n != g_hash_table_size(v->members);
    for (guint i = 0; !changed && i < n; i++)
        changed = !g_hash_table_contains(v->members, members[i]);
    if (!changed)
        return false;
    v->epoch = epoch;
    if (v->pending_epoch != 0 && epoch >= v->pending_epoch) {
        if (v->pending_expiry > v->granted_expiry)
            v->granted_expiry = v->pending_expiry;
        v->pending_epoch = v->pending_expiry = 0;
    }
    g_hash_table_remove_all(v->members);
    for (guint i = 0; i < n; i++)
        g_hash_table_add(v->members, g_strdup(members[i]));
    return true;
}

uint64_t mview_epoch(const struct mview *v)
{
    return v->epoch;
}

bool mview_is_member(const struct mview *v, const char *name)
{
    return g_hash_table_contains(v->members, name);
}

void mview_set_leader(struct mview *v, bool leader, uint64_t now)
{
    if (leader && !v->leader)
        v->takeover_ns = now;
    v->leader = leader;
}

bool mview_is_leader(const struct mview *v)
{
    return v->leader;
}

void mview_heard(struct mview *v, const char *node, uint64_t now)
{
    if (strcmp(node, v->self) == 0)
        return;
    struct node_state *ns = node_lookup_or_add(v, node);
    if (now > ns->heard_ns)
        ns->heard_ns = now;
}

uint64_t mview_last_heard(const struct mview *v, const char *node)
{
    const struct node_state *ns = g_hash_table_lookup(v->nodes, node);
    return ns ? ns->heard_ns : 0;
}

bool mview_on_heartbeat(struct mview *v, const char *node, uint64_t now, uint64_t *lease_ns)
{
    if (strcmp(node, v->self) == 0)
        return false;
    mview_heard(v, node, now);
    struct node_state *ns = g_hash_table_lookup(v->nodes, node);
    if (now > ns->hb_ns && now >= v->distrust_until)
        ns->hb_ns = now;
    if (!v->leader || !mview_lease_valid(v, now) || !mview_is_member(v, node))
        return false;
    *lease_ns = v->cfg.lease_ns;
    return true;
}

void mview_stalled(struct mview *v, uint64_t now)
{
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, v->nodes);
    while (g_hash_table_iter_next(&it, &key, &val))
        ((struct node_state *)val)->hb_ns = 0;
    v->distrust_until = now + v->cfg.lease_ns / 2;
    /* nor do we know who stayed up meanwhile: a leader starts over as if
     * it had just taken over (nobody declared down for a failure timeout) */
    if (v->leader)
        v->takeover_ns = now;
}

bool mview_disowns(const struct mview *v, const char *node, uint64_t now)
{
    if (!v->leader || !v->nodes_loaded || strcmp(node, v->self) == 0 || mview_is_node(v, node))
        return false;
    if (v->takeover_ns == 0 || now - v->takeover_ns < v->cfg.failure_timeout_ns)
        return false;
    return mview_lease_valid(v, now);
}

void mview_on_grant(struct mview *v, uint64_t send_ns, uint64_t lease_ns, uint64_t epoch,
                    uint64_t now)
{
    if (send_ns == 0 || send_ns > now || lease_ns > UINT64_MAX - send_ns)
        return;
    uint64_t exp = send_ns + lease_ns;
    if (epoch > v->grant_epoch)
        v->grant_epoch = epoch;
    if (epoch <= v->epoch) {
        if (exp > v->granted_expiry)
            v->granted_expiry = exp;
        return;
    }
    /* the leader committed a mapping we have not applied: this grant waits */
    if (epoch > v->pending_epoch)
        v->pending_epoch = epoch;
    if (exp > v->pending_expiry)
        v->pending_expiry = exp;
}

uint64_t mview_grant_epoch(const struct mview *v)
{
    return v->grant_epoch;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The leader's lease from its majority: the k-th most recent heartbeat among
 * the other voters, k being how many others a majority needs. */
static uint64_t majority_expiry(const struct mview *v)
{
    GHashTableIter it;
    gpointer key, val;
    size_t voters = 0, others = 0;
    bool self_voter = false;
    g_autofree uint64_t *hb = g_new0(uint64_t, g_hash_table_size(v->nodes) + 1);

    g_hash_table_iter_init(&it, v->nodes);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const struct node_state *ns = val;
        if (!ns->in_table || !ns->voter)
            continue;
        voters++;
        if (strcmp(key, v->self) == 0)
            self_voter = true;
        else
            hb[others++] = ns->hb_ns;
    }
    if (!self_voter)
        voters++; /* we lead, so we vote: the table may lag behind Raft */
    size_t need = voters / 2 + 1 - 1;
    if (need == 0)
        return UINT64_MAX;
    if (need > others)
        return 0;
    qsort(hb, others, sizeof(*hb), cmp_desc);
    return hb[need - 1] ? hb[need - 1] + v->cfg.lease_ns : 0;
}

uint64_t mview_lease_expiry(const struct mview *v)
{
    uint64_t exp = v->granted_expiry;
    /* a leader behind the epoch of a grant it got holds no majority lease */
    if (v->leader && v->pending_epoch == 0) {
        uint64_t mine = majority_expiry(v);
        if (mine > exp)
            exp = mine;
    }
    return exp;
}

bool mview_lease_valid(const struct mview *v, uint64_t now)
{
    return now < mview_lease_expiry(v);
}

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t m = a > b ? a : b;
    return m > c ? m : c;
}

uint64_t mview_leader_since(const struct mview *v)
{
    return v->leader ? v->takeover_ns : 0;
}

uint64_t mview_lease_over(const struct mview *v, const char *node)
{
    if (!v->leader)
        return UINT64_MAX;
    uint64_t lease = v->cfg.lease_ns;
    uint64_t heard = mview_last_heard(v, node);
    /* every grant we gave answered a heartbeat we heard, sent before that */
    uint64_t ours = heard ? heard + lease : 0;
    /* a grant from an earlier leader was given before we took over */
    uint64_t earlier = v->takeover_ns + 2 * lease;
    uint64_t over = ours > earlier ? ours : earlier;
    return over + lease / 10;
}

bool mview_node_up(const struct mview *v, const char *node, uint64_t now)
{
    if (strcmp(node, v->self) == 0)
        return true;
    const struct node_state *ns = g_hash_table_lookup(v->nodes, node);
    if (ns == NULL)
        return false;
    uint64_t since;
    if (mview_is_member(v, node))
        since = max3(ns->heard_ns, v->takeover_ns, ns->added_ns);
    else
        since = ns->heard_ns; /* a node not heard yet (one that is still joining and
                                 catching up) is not committed: no flap when it is late */
    return since != 0 && now - since < v->cfg.failure_timeout_ns;
}

static gint cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **mview_commit_next(struct mview *v, uint64_t now)
{
    if (!v->leader || v->commit_in_flight || !v->nodes_loaded)
        return NULL;
    GHashTableIter it;
    gpointer key, val;
    GPtrArray *want = g_ptr_array_new_with_free_func(g_free); /* not freed when returned */
    bool differs = false;

    g_hash_table_iter_init(&it, v->nodes);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        if (!((struct node_state *)val)->in_table || !mview_node_up(v, key, now))
            continue;
        g_ptr_array_add(want, g_strdup(key));
        differs = differs || !mview_is_member(v, key);
    }
    differs = differs || want->len != g_hash_table_size(v->members);
    if (!differs) {
        g_ptr_array_free(want, TRUE);
        return NULL;
    }
    g_ptr_array_sort(want, cmp_str);
    g_ptr_array_add(want, NULL);
    v->commit_in_flight = true;
    return (char **)g_ptr_array_free(want, FALSE);
}

void mview_commit_done(struct mview *v)
{
    v->commit_in_flight = false;
}

bool mview_commit_in_flight(const struct mview *v)
{
    return v->commit_in_flight;
}

static void put_u64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

void mview_msg_encode(const struct mview_msg *msg, uint8_t out[MVIEW_MSG_LEN])
{
    out[0] = MSG_VERSION;
    out[1] = msg->type;
    put_u64(out + 2, msg->send_ns);
    put_u64(out + 10, msg->lease_ns);
    put_u64(out + 18, msg->epoch);
}

int mview_msg_decode(const uint8_t *buf, size_t len, struct mview_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (len != MVIEW_MSG_LEN || buf[0] != MSG_VERSION ||
        (buf[1] != MVIEW_HEARTBEAT && buf[1] != MVIEW_GRANT && buf[1] != MVIEW_NOT_MEMBER))
        return -EBADMSG;
    out->type = buf[1];
    out->send_ns = get_u64(buf + 2);
    out->lease_ns = get_u64(buf + 10);
    out->epoch = get_u64(buf + 18);
    return 0;
}
