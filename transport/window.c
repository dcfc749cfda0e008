/* Sequence numbers, resend queue and reassembly of one logical link. */
#define G_LOG_DOMAIN "ndfs-transport"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ndfs/iobuf.h"
#include "window.h"

/* how far ahead of the next expected frame a peer may run */
#define RX_MAX_AHEAD (1u << 22)

struct rx_frag {
    uint64_t seq;
    struct ndfs_frame_header h;
    struct ndfs_message *msg; /* a whole message received in place; NULL: bytes */
    uint8_t bytes[];          /* control then data */
};

static void rx_frag_free(gpointer p)
{
    struct rx_frag *r = p;
    ndfs_message_free(r->msg);
    g_free(r);
}

struct ndfs_tx_msg *ndfs_tx_msg_ref(struct ndfs_tx_msg *m)
{
    m->refs++;
    return m;
}

void ndfs_tx_msg_unref(struct ndfs_tx_msg *m)
{
    if (!m || --m->refs > 0)
        return;
    if (m->release)
        m->release(m->release_arg);
    g_free(m);
}

static int seq_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    (void)unused;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void ndfs_window_init(struct ndfs_window *w, size_t max_message, size_t stripe_size,
                      size_t max_queued)
{
    memset(w, 0, sizeof *w);
    w->max_message = max_message;
    w->stripe_size = stripe_size;
    w->max_queued = max_queued;
    w->tx_next = 1;
    w->rx_next = 1;
    g_queue_init(&w->tx_unacked);
    g_queue_init(&w->tx_pending);
    w->rx_early = g_tree_new_full(seq_cmp, NULL, NULL, rx_frag_free);
}

static void frag_free(struct ndfs_tx_frag *f)
{
    ndfs_tx_msg_unref(f->msg);
    g_free(f);
}

static void window_drop_all(struct ndfs_window *w)
{
    struct ndfs_tx_frag *f;
    /* a frag is in tx_unacked until acked, and maybe also in tx_pending */
    while ((f = g_queue_pop_head(&w->tx_unacked))) {
        f->acked = true;
        if (!f->in_pending)
            frag_free(f);
    }
    while ((f = g_queue_pop_head(&w->tx_pending)))
        frag_free(f);
    w->tx_queued = 0;
    g_tree_remove_all(w->rx_early);
    w->rx_early_bytes = 0;
    ndfs_message_free(w->rx_msg);
    w->rx_msg = NULL;
    w->rx_fill = 0;
    w->rx_unacked = 0;
}

void ndfs_window_clear(struct ndfs_window *w)
{
    window_drop_all(w);
    g_tree_destroy(w->rx_early);
    w->rx_early = NULL;
}

void ndfs_window_reset(struct ndfs_window *w)
{
    window_drop_all(w);
    w->tx_next = 1;
    w->tx_sent_max = 0;
    w->tx_acked = 0;
    w->rx_next = 1;
}

static int window_queue(struct ndfs_window *w, uint16_t channel, uint64_t request_id,
                        uint64_t epoch, const void *control, size_t control_len, const void *data,
                        size_t data_len, bool borrowed, bool whole, const uint32_t *data_crc,
                        void (*release)(void *arg), void *release_arg)
{
    if (data_crc && !whole)
        return -EINVAL; /* a CRC of the whole data is no fragment's */
    size_t stripe = whole ? SIZE_MAX : w->stripe_size;
    size_t len = control_len + data_len;
    if (control_len > w->max_message || data_len > w->max_message || len > w->max_message)
        return -EMSGSIZE;
    if (w->tx_queued + len > w->max_queued && w->tx_queued > 0)
        return -ENOBUFS;
    size_t copied = borrowed ? control_len : len;
    struct ndfs_tx_msg *m = g_malloc(sizeof *m + copied);
    m->refs = 0;
    m->len = copied;
    m->release = NULL;
    m->release_arg = NULL;
    if (control_len)
        memcpy(m->bytes, control, control_len);
    const uint8_t *dbytes = m->bytes + control_len;
    if (borrowed) {
        dbytes = data;
        m->release = release;
        m->release_arg = release_arg;
    } else if (data_len) {
        memcpy(m->bytes + control_len, data, data_len);
    }
    size_t off = 0;
    do {
        size_t piece = MIN(data_len - off, stripe);
        struct ndfs_tx_frag *f = g_new0(struct ndfs_tx_frag, 1);
        f->msg = ndfs_tx_msg_ref(m);
        f->h.type = NDFS_FRAME_DATA;
        f->h.channel = channel;
        f->h.request_id = request_id;
        f->h.epoch = epoch;
        f->h.seq = w->tx_next++;
        f->h.msg_data_len = (uint32_t)data_len;
        f->h.data_len = (uint32_t)piece;
        if (off == 0) {
            f->h.flags |= NDFS_FRAME_FIRST;
            f->h.control_len = (uint32_t)control_len;
            f->control = m->bytes;
        }
        f->data = dbytes + off;
        off += piece;
        if (off == data_len)
            f->h.flags |= NDFS_FRAME_LAST;
        uint32_t control_crc = ndfs_crc32c(0, f->control, f->h.control_len);
        if (data_crc) {
            /* the caller's, computed while the bytes were in its cache */
#ifdef NDFS_DEBUG_CHECKS
            g_assert(ndfs_crc32c(0, f->data, f->h.data_len) == *data_crc);
#endif
            f->payload_crc = ndfs_crc32c_combine(control_crc, *data_crc, f->h.data_len);
        } else {
            f->payload_crc = ndfs_crc32c(control_crc, f->data, f->h.data_len);
        }
        f->link = -1;
        f->in_pending = true;
        g_queue_push_tail(&w->tx_unacked, f);
        g_queue_push_tail(&w->tx_pending, f);
    } while (off < data_len);
    w->tx_queued += len;
    return 0;
}

int ndfs_window_queue(struct ndfs_window *w, uint16_t channel, uint64_t request_id, uint64_t epoch,
                      const void *control, size_t control_len, const void *data, size_t data_len)
{
    return window_queue(w, channel, request_id, epoch, control, control_len, data, data_len, false,
                        false, NULL, NULL, NULL);
}

int ndfs_window_queue_borrowed(struct ndfs_window *w, uint16_t channel, uint64_t request_id,
                               uint64_t epoch, const void *control, size_t control_len,
                               const void *data, size_t data_len, bool whole,
                               const uint32_t *data_crc, void (*release)(void *arg),
                               void *release_arg)
{
    return window_queue(w, channel, request_id, epoch, control, control_len, data, data_len, true,
                        whole, data_crc, release, release_arg);
}

bool ndfs_window_has_pending(struct ndfs_window *w)
{
    struct ndfs_tx_frag *f;
    while ((f = g_queue_peek_head(&w->tx_pending)) && f->acked) {
        g_queue_pop_head(&w->tx_pending);
        frag_free(f);
    }
    return f != NULL;
}

struct ndfs_tx_frag *ndfs_window_next(struct ndfs_window *w)
{
    if (!ndfs_window_has_pending(w))
        return NULL;
    struct ndfs_tx_frag *f = g_queue_pop_head(&w->tx_pending);
    f->in_pending = false;
    if (f->h.seq > w->tx_sent_max)
        w->tx_sent_max = f->h.seq;
    return f;
}

int ndfs_window_ack(struct ndfs_window *w, uint64_t ack)
{
    if (ack >= w->tx_next)
        return -EBADMSG;
    struct ndfs_tx_frag *f;
    while ((f = g_queue_peek_head(&w->tx_unacked)) && f->h.seq <= ack) {
        g_queue_pop_head(&w->tx_unacked);
        f->acked = true;
        w->tx_queued -= f->h.control_len + f->h.data_len;
        if (!f->in_pending)
            frag_free(f);
    }
    if (ack > w->tx_acked)
        w->tx_acked = ack;
    return 0;
}

int ndfs_window_oldest_in_flight(const struct ndfs_window *w, int nlinks, uint64_t *oldest)
{
    int found = 0;
    for (int i = 0; i < nlinks; i++)
        oldest[i] = UINT64_MAX;
    /* past tx_sent_max nothing ever went out: the queue's tail is not walked */
    for (GList *u = w->tx_unacked.head; u && found < nlinks; u = u->next) {
        const struct ndfs_tx_frag *f = u->data;
        if (f->h.seq > w->tx_sent_max)
            break;
        if (f->in_pending || f->link < 0 || f->link >= nlinks || oldest[f->link] != UINT64_MAX)
            continue;
        oldest[f->link] = f->sent_ms;
        found++;
    }
    return found;
}

unsigned ndfs_window_requeue_link(struct ndfs_window *w, int link)
{
    GQueue merged = G_QUEUE_INIT;
    GList *u = w->tx_unacked.head;
    unsigned n = 0;
    /* merge the failed link's frags (in seq order) into tx_pending (in seq order) */
    while (u || !g_queue_is_empty(&w->tx_pending)) {
        struct ndfs_tx_frag *f = NULL;
        while (u) {
            struct ndfs_tx_frag *c = u->data;
            u = u->next;
            if (!c->in_pending && c->link == link) {
                f = c;
                break;
            }
        }
        struct ndfs_tx_frag *p;
        while ((p = g_queue_peek_head(&w->tx_pending)) && (!f || p->h.seq < f->h.seq))
            g_queue_push_tail(&merged, g_queue_pop_head(&w->tx_pending));
        if (!f)
            break;
        f->link = -1;
        f->in_pending = true;
        g_queue_push_tail(&merged, f);
        n++;
    }
    while (!g_queue_is_empty(&w->tx_pending))
        g_queue_push_tail(&merged, g_queue_pop_head(&w->tx_pending));
    w->tx_pending = merged;
    return n;
}

struct ndfs_message *ndfs_message_alloc(size_t control_len, size_t data_len)
{
    size_t head = sizeof(struct ndfs_message) + control_len;
    struct ndfs_message *m;
    if (data_len < NDFS_MESSAGE_DATA_ALIGN) {
        m = malloc(head + data_len);
        if (!m)
            return NULL;
    } else {
        /* data on a page boundary, in huge pages from 64 KiB on: a master
         * writes it O_DIRECT as it is */
        head = (head + NDFS_MESSAGE_DATA_ALIGN - 1) / NDFS_MESSAGE_DATA_ALIGN *
               NDFS_MESSAGE_DATA_ALIGN;
        m = ndfs_iobuf_alloc(head + data_len);
        if (!m)
            return NULL;
    }
    memset(m, 0, sizeof *m);
    m->control = (uint8_t *)(m + 1);
    m->control_len = control_len;
    m->data = (uint8_t *)m + head;
    m->data_len = data_len;
    return m;
}

void ndfs_message_free(struct ndfs_message *m)
{
    ndfs_iobuf_free(m);
}

/* Takes one in-order frame into the message being reassembled. */
static int rx_take(struct ndfs_window *w, const struct ndfs_frame_header *h, const uint8_t *control,
                   const uint8_t *data, GQueue *delivered)
{
    if (h->flags & NDFS_FRAME_FIRST) {
        if (w->rx_msg)
            return -EBADMSG;
        if ((size_t)h->control_len + h->msg_data_len > w->max_message)
            return -EBADMSG;
        struct ndfs_message *m = ndfs_message_alloc(h->control_len, h->msg_data_len);
        if (!m)
            return -ENOMEM;
        m->channel = h->channel;
        m->request_id = h->request_id;
        m->epoch = h->epoch;
        if (h->control_len)
            memcpy(m->control, control, h->control_len);
        w->rx_msg = m;
        w->rx_fill = 0;
    } else if (!w->rx_msg || h->channel != w->rx_msg->channel ||
               h->msg_data_len != w->rx_msg->data_len || h->request_id != w->rx_msg->request_id) {
        return -EBADMSG;
    }
    struct ndfs_message *m = w->rx_msg;
    if (h->data_len > m->data_len - w->rx_fill)
        return -EBADMSG;
    if (h->data_len)
        memcpy(m->data + w->rx_fill, data, h->data_len);
    w->rx_fill += h->data_len;
    if (h->flags & NDFS_FRAME_LAST) {
        if (w->rx_fill != m->data_len)
            return -EBADMSG;
        g_queue_push_tail(delivered, m);
        w->rx_msg = NULL;
        w->rx_fill = 0;
    } else if (w->rx_fill == m->data_len && h->data_len == 0) {
        return -EBADMSG; /* empty middle fragments would never end */
    }
    w->rx_next++;
    return 0;
}

/* Takes one in-order frame that is a whole message received in place. */
static int rx_take_msg(struct ndfs_window *w, const struct ndfs_frame_header *h,
                       struct ndfs_message *m, GQueue *delivered)
{
    if (w->rx_msg ||
        (h->flags & (NDFS_FRAME_FIRST | NDFS_FRAME_LAST)) != (NDFS_FRAME_FIRST | NDFS_FRAME_LAST)) {
        ndfs_message_free(m);
        return -EBADMSG;
    }
    m->channel = h->channel;
    m->request_id = h->request_id;
    m->epoch = h->epoch;
    g_queue_push_tail(delivered, m);
    w->rx_next++;
    return 0;
}

/* Takes the frames that arrived early and are next now. */
static int rx_take_early(struct ndfs_window *w, GQueue *delivered)
{
    struct rx_frag *r;
    while ((r = g_tree_lookup(w->rx_early, &w->rx_next))) {
        w->rx_early_bytes -= (size_t)r->h.control_len + r->h.data_len;
        int rc;
        if (r->msg) {
            struct ndfs_message *m = r->msg;
            r->msg = NULL;
            rc = rx_take_msg(w, &r->h, m, delivered);
        } else {
            rc = rx_take(w, &r->h, r->bytes, r->bytes + r->h.control_len, delivered);
        }
        g_tree_remove(w->rx_early, &r->h.seq);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ndfs_window_receive(struct ndfs_window *w, const struct ndfs_frame_header *h,
                        const uint8_t *control, const uint8_t *data, GQueue *delivered)
{
    w->rx_unacked++;
    if (h->seq < w->rx_next)
        return 0; /* a duplicate: resent after a link failure */
    if (h->seq > w->rx_next) {
        if (h->seq - w->rx_next > RX_MAX_AHEAD)
            return -EBADMSG;
        if (g_tree_lookup(w->rx_early, &h->seq))
            return 0;
        size_t len = (size_t)h->control_len + h->data_len;
        if (w->rx_early_bytes + len > 2 * w->max_queued + w->max_message)
            return -ENOBUFS;
        struct rx_frag *r = g_malloc(sizeof *r + len);
        r->msg = NULL;
        r->seq = h->seq;
        r->h = *h;
        if (h->control_len)
            memcpy(r->bytes, control, h->control_len);
        if (h->data_len)
            memcpy(r->bytes + h->control_len, data, h->data_len);
        g_tree_insert(w->rx_early, &r->seq, r);
        w->rx_early_bytes += len;
        return 0;
    }
    int rc = rx_take(w, h, control, data, delivered);
    if (rc < 0)
        return rc;
    return rx_take_early(w, delivered);
}

int ndfs_window_receive_msg(struct ndfs_window *w, const struct ndfs_frame_header *h,
                            struct ndfs_message *m, GQueue *delivered)
{
    w->rx_unacked++;
    if (h->seq < w->rx_next) {
        ndfs_message_free(m); /* a duplicate */
        return 0;
    }
    if (h->seq > w->rx_next) {
        if (h->seq - w->rx_next > RX_MAX_AHEAD) {
            ndfs_message_free(m);
            return -EBADMSG;
        }
        if (g_tree_lookup(w->rx_early, &h->seq)) {
            ndfs_message_free(m);
            return 0;
        }
        size_t len = (size_t)h->control_len + h->data_len;
        if (w->rx_early_bytes + len > 2 * w->max_queued + w->max_message) {
            ndfs_message_free(m);
            return -ENOBUFS;
        }
        struct rx_frag *r = g_malloc(sizeof *r);
        r->seq = h->seq;
        r->h = *h;
        r->msg = m;
        g_tree_insert(w->rx_early, &r->seq, r);
        w->rx_early_bytes += len;
        return 0;
    }
    int rc = rx_take_msg(w, h, m, delivered);
    if (rc < 0)
        return rc;
    return rx_take_early(w, delivered);
}
