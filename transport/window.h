/* Private to transport/: the logical link's sequence numbers, resend queue
 * and in-order reassembly, as a pure state machine (no I/O, no clock).
 *
 * Sender: ndfs_window_queue() cuts a message into fragments with consecutive
 * sequence numbers; the transport takes them with ndfs_window_next(), writes
 * them on a link and records the link in frag->link. They stay until a
 * cumulative ack covers them; ndfs_window_requeue_link() puts those sent on a
 * failed link back in front of the queue.
 * Receiver: ndfs_window_receive() takes frames in any order, drops
 * duplicates, keeps early ones, and hands out whole messages in order. */
#ifndef NDFS_TRANSPORT_WINDOW_H
#define NDFS_TRANSPORT_WINDOW_H

#include <glib.h>
#include <stdint.h>

#include "frame.h"
#include "ndfs/transport.h"

/* A queued message: control then data, shared by its fragments and by the
 * writes in flight (refcounted; freed by the last ndfs_tx_msg_unref). */
struct ndfs_tx_msg {
    int refs;
    size_t len;
    /* data not copied (ndfs_window_queue_borrowed): given back with
     * release(release_arg) when the last reference goes; NULL: none */
    void (*release)(void *arg);
    void *release_arg;
    uint8_t bytes[];
};
struct ndfs_tx_msg *ndfs_tx_msg_ref(struct ndfs_tx_msg *m);
void ndfs_tx_msg_unref(struct ndfs_tx_msg *m);

struct ndfs_tx_frag {
    struct ndfs_frame_header h; /* type, flags, channel, lengths, seq, request id, epoch */
    struct ndfs_tx_msg *msg;
    const uint8_t *control;
    const uint8_t *data;
    uint32_t payload_crc;
    int link;         /* link it went out on; -1 while queued */
    uint64_t sent_ms; /* when it went out (the caller's clock), set with link */
    bool in_pending;  /* in tx_pending */
    bool acked;
};

struct ndfs_window {
    size_t max_message, stripe_size, max_queued;
    uint64_t tx_next;     /* next sequence number, from 1 */
    uint64_t tx_acked;    /* highest cumulative ack from the peer */
    GQueue tx_unacked;    /* struct ndfs_tx_frag *, in seq order */
    GQueue tx_pending;    /* to (re)send, in seq order; may hold acked ones */
    size_t tx_queued;     /* bytes not yet acknowledged */
    uint64_t tx_sent_max; /* highest sequence number handed out by ndfs_window_next */
    uint64_t rx_next;     /* next sequence number expected */
    GTree *rx_early;      /* uint64_t *seq -> struct rx_frag *: arrived early */
    size_t rx_early_bytes;
    struct ndfs_message *rx_msg; /* message being reassembled */
    size_t rx_fill;              /* data bytes of rx_msg received */
    uint64_t rx_unacked;         /* frames received since the last ack we sent */
};

void ndfs_window_init(struct ndfs_window *w, size_t max_message, size_t stripe_size,
                      size_t max_queued);
void ndfs_window_clear(struct ndfs_window *w);
/* Drops everything queued and received: a peer restarted. */
void ndfs_window_reset(struct ndfs_window *w);

/* Copies a message in: 0, -EMSGSIZE or -ENOBUFS. */
int ndfs_window_queue(struct ndfs_window *w, uint16_t channel, uint64_t request_id, uint64_t epoch,
                      const void *control, size_t control_len, const void *data, size_t data_len);
/* The same, but data is not copied: the window uses it in place until
 * release(release_arg), once, when its last fragment is acknowledged (or
 * dropped) and no write holds it. On an error release is not called.
 * whole: one fragment whatever stripe_size. data_crc (whole only; may be
 * NULL): ndfs_crc32c(0, data, data_len), computed by the caller. */
int ndfs_window_queue_borrowed(struct ndfs_window *w, uint16_t channel, uint64_t request_id,
                               uint64_t epoch, const void *control, size_t control_len,
                               const void *data, size_t data_len, bool whole,
                               const uint32_t *data_crc, void (*release)(void *arg),
                               void *release_arg);
/* The next fragment to send, or NULL; the caller sets frag->link. */
struct ndfs_tx_frag *ndfs_window_next(struct ndfs_window *w);
bool ndfs_window_has_pending(struct ndfs_window *w);
/* Applies a cumulative ack: 0, or -EBADMSG for an ack of what was never sent. */
int ndfs_window_ack(struct ndfs_window *w, uint64_t ack);
/* Queues again what went out on link and is not acknowledged; returns how
 * many fragments. */
unsigned ndfs_window_requeue_link(struct ndfs_window *w, int link);

/* For links 0..nlinks-1 (at most NDFS_TRANSPORT_MAX_LINKS), the sent_ms of
 * the first unacknowledged fragment in flight on it (in sequence order), or
 * UINT64_MAX when none is. Returns how many links have one. */
int ndfs_window_oldest_in_flight(const struct ndfs_window *w, int nlinks, uint64_t *oldest);

/* A received message in one block (ndfs_message_free() it): the struct,
 * control_len bytes of control, then data_len bytes of data, which start
 * on an NDFS_MESSAGE_DATA_ALIGN boundary when there are that many or more
 * (an ndfs_iobuf_alloc() buffer then). NULL when out of memory. */
struct ndfs_message *ndfs_message_alloc(size_t control_len, size_t data_len);
/* Frees a message of ndfs_message_alloc(); NULL is fine. */
void ndfs_message_free(struct ndfs_message *m);

/* A DATA frame: 0 (whole messages, blocks of ndfs_message_alloc, appended
 * to delivered in order), -EBADMSG for a frame that breaks the fragment
 * rules, -ENOBUFS when too much arrived early, -ENOMEM. */
int ndfs_window_receive(struct ndfs_window *w, const struct ndfs_frame_header *h,
                        const uint8_t *control, const uint8_t *data, GQueue *delivered);
/* A DATA frame that is a whole message (FIRST and LAST), received in place
 * into m (of ndfs_message_alloc(h->control_len, h->data_len), control and
 * data filled in): the window takes m (delivers, keeps or frees it). The
 * same results as ndfs_window_receive. */
int ndfs_window_receive_msg(struct ndfs_window *w, const struct ndfs_frame_header *h,
                            struct ndfs_message *m, GQueue *delivered);
/* The cumulative ack to send (last in-order sequence number received). */
static inline uint64_t ndfs_window_rx_ack(const struct ndfs_window *w)
{
    return w->rx_next - 1;
}

#endif
