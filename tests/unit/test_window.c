/* The logical link's window: ordering, duplicates, acks, resend, fragments. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "transport/frame.h"
#include "ndfs/iobuf.h"
#include "transport/window.h"

#define MAXMSG (4u << 20)
#define STRIPE (64u << 10)

static struct ndfs_window tx, rx;
static GQueue got;

static void setup(void)
{
    ndfs_window_init(&tx, MAXMSG, STRIPE, 16u << 20);
    ndfs_window_init(&rx, MAXMSG, STRIPE, 16u << 20);
    g_queue_init(&got);
}

static void teardown(void)
{
    struct ndfs_message *m;
    while ((m = g_queue_pop_head(&got)))
        ndfs_message_free(m);
    ndfs_window_clear(&tx);
    ndfs_window_clear(&rx);
}

TestSuite(window, .init = setup, .fini = teardown);

static void queue_msg(uint64_t id, size_t len)
{
    uint8_t *data = g_malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(id * 13 + i);
    uint64_t control = id;
    cr_assert_eq(ndfs_window_queue(&tx, 4, id, 1, &control, 8, data, len), 0);
    g_free(data);
}

static void check_msg(struct ndfs_message *m, uint64_t id, size_t len)
{
    cr_assert_eq(m->request_id, id);
    cr_assert_eq(m->channel, 4);
    cr_assert_eq(m->control_len, 8);
    cr_assert_eq(memcmp(m->control, &id, 8), 0);
    cr_assert_eq(m->data_len, len);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(m->data[i], (uint8_t)(id * 13 + i), "message %llu byte %zu",
                     (unsigned long long)id, i);
}

/* Takes every pending fragment, marking it sent on link (or alternating). */
static GPtrArray *take_all(int link)
{
    GPtrArray *a = g_ptr_array_new();
    struct ndfs_tx_frag *f;
    int n = 0;
    while ((f = ndfs_window_next(&tx))) {
        f->link = link >= 0 ? link : n++ % 2;
        g_ptr_array_add(a, f);
    }
    return a;
}

static int deliver(struct ndfs_tx_frag *f)
{
    return ndfs_window_receive(&rx, &f->h, f->control, f->data, &got);
}

Test(window, in_order_delivery_with_reordering_and_duplicates)
{
    for (uint64_t id = 0; id < 20; id++)
        queue_msg(id, id * 100);
    GPtrArray *a = take_all(-1);
    cr_assert_eq(a->len, 20);
    /* reversed, each twice */
    for (int i = (int)a->len - 1; i >= 0; i--) {
        cr_assert_eq(deliver(a->pdata[i]), 0);
        cr_assert_eq(deliver(a->pdata[i]), 0);
        cr_assert_eq(g_queue_get_length(&got), i == 0 ? 20u : 0u);
    }
    for (uint64_t id = 0; id < 20; id++)
        check_msg(g_queue_peek_nth(&got, (guint)id), id, id * 100);
    for (guint i = 0; i < a->len; i++)
        cr_assert_eq(deliver(a->pdata[i]), 0, "late duplicates are dropped");
    cr_assert_eq(g_queue_get_length(&got), 20u);
    cr_assert_eq(ndfs_window_rx_ack(&rx), 20);
    g_ptr_array_free(a, true);
}

Test(window, cumulative_acks_free_what_they_cover)
{
    for (uint64_t id = 0; id < 10; id++)
        queue_msg(id, 1000);
    cr_assert_eq(tx.tx_queued, 10u * 1008);
    GPtrArray *a = take_all(0);
    cr_assert_eq(ndfs_window_ack(&tx, 4), 0);
    cr_assert_eq(tx.tx_queued, 6u * 1008);
    cr_assert_eq(g_queue_get_length(&tx.tx_unacked), 6u);
    cr_assert_eq(ndfs_window_ack(&tx, 2), 0, "an older ack is harmless");
    cr_assert_eq(ndfs_window_ack(&tx, 11), -EBADMSG, "an ack of what was never sent");
    cr_assert_eq(ndfs_window_ack(&tx, 10), 0);
    cr_assert_eq(tx.tx_queued, 0u);
    cr_assert_eq(ndfs_window_requeue_link(&tx, 0), 0u, "nothing left to resend");
    g_ptr_array_free(a, true);
}

Test(window, a_failed_link_resends_its_unacked_frames_in_order)
{
    for (uint64_t id = 0; id < 12; id++)
        queue_msg(id, 10);
    GPtrArray *a = take_all(-1); /* seq 1,3,5.. on link 0; 2,4,6.. on link 1 */
    /* link 1 fails: its frames are lost; link 0's arrive */
    for (guint i = 0; i < a->len; i += 2)
        cr_assert_eq(deliver(a->pdata[i]), 0);
    cr_assert_eq(g_queue_get_length(&got), 1u);
    cr_assert_eq(ndfs_window_ack(&tx, ndfs_window_rx_ack(&rx)), 0);
    queue_msg(12, 10); /* queued meanwhile: goes after the resent ones */
    cr_assert_eq(ndfs_window_requeue_link(&tx, 1), 6u);
    g_ptr_array_free(a, true);
    a = take_all(0);
    cr_assert_eq(a->len, 7u);
    for (guint i = 0; i < a->len; i++) {
        struct ndfs_tx_frag *f = a->pdata[i];
        cr_assert_eq(f->h.seq, i < 6 ? 2 * i + 2 : 13, "resend order");
        cr_assert_eq(deliver(f), 0);
    }
    cr_assert_eq(g_queue_get_length(&got), 13u);
    for (uint64_t id = 0; id < 13; id++)
        check_msg(g_queue_peek_nth(&got, (guint)id), id, 10);
    /* link 0 fails too before any ack: everything resent, all duplicates */
    cr_assert_eq(ndfs_window_requeue_link(&tx, 0), 12u);
    g_ptr_array_free(a, true);
    a = take_all(1);
    for (guint i = 0; i < a->len; i++)
        cr_assert_eq(deliver(a->pdata[i]), 0);
    cr_assert_eq(g_queue_get_length(&got), 13u, "no duplicate delivered");
    cr_assert_eq(ndfs_window_ack(&tx, ndfs_window_rx_ack(&rx)), 0);
    cr_assert_eq(tx.tx_queued, 0u);
    g_ptr_array_free(a, true);
}

Test(window, an_ack_covering_requeued_frames_drops_them)
{
    for (uint64_t id = 0; id < 4; id++)
        queue_msg(id, 10);
    GPtrArray *a = take_all(1);
    cr_assert_eq(ndfs_window_requeue_link(&tx, 1), 4u);
    cr_assert_eq(ndfs_window_ack(&tx, 3), 0); /* the first three did arrive */
    g_ptr_array_free(a, true);
    a = take_all(0);
    cr_assert_eq(a->len, 1u);
    cr_assert_eq(((struct ndfs_tx_frag *)a->pdata[0])->h.seq, 4u);
    g_ptr_array_free(a, true);
}

Test(window, large_messages_are_fragmented_and_reassembled)
{
    size_t len = 10 * STRIPE + 123;
    queue_msg(7, len);
    queue_msg(8, STRIPE); /* exactly one stripe: one frame */
    queue_msg(9, 0);      /* empty */
    GPtrArray *a = take_all(-1);
    cr_assert_eq(a->len, 11u + 1 + 1);
    struct ndfs_tx_frag *first = a->pdata[0], *last = a->pdata[10];
    cr_assert_eq(first->h.flags, NDFS_FRAME_FIRST);
    cr_assert_eq(first->h.control_len, 8u);
    cr_assert_eq(last->h.flags, NDFS_FRAME_LAST);
    cr_assert_eq(last->h.data_len, 123u);
    for (guint i = 1; i < 10; i++) {
        struct ndfs_tx_frag *f = a->pdata[i];
        cr_assert_eq(f->h.flags, 0);
        cr_assert_eq(f->h.control_len, 0u);
        cr_assert_eq(f->h.msg_data_len, len);
    }
    /* odd fragments first, then even ones */
    for (guint i = 1; i < a->len; i += 2)
        cr_assert_eq(deliver(a->pdata[i]), 0);
    cr_assert_eq(g_queue_get_length(&got), 0u);
    for (guint i = 0; i < a->len; i += 2)
        cr_assert_eq(deliver(a->pdata[i]), 0);
    cr_assert_eq(g_queue_get_length(&got), 3u);
    check_msg(g_queue_peek_nth(&got, 0), 7, len);
    check_msg(g_queue_peek_nth(&got, 1), 8, STRIPE);
    check_msg(g_queue_peek_nth(&got, 2), 9, 0);
    cr_assert_eq(rx.rx_early_bytes, 0u);
    g_ptr_array_free(a, true);
}

static int released;
static void count_release(void *arg)
{
    (void)arg;
    released++;
}

/* A whole message whose data CRC the caller computed: its frame carries
 * the same checksum as one the window computes itself; a CRC of the whole
 * data is refused for a message that may be split into stripes. */
Test(window, a_callers_data_crc_gives_the_same_frame_checksum)
{
    size_t len = 3 * STRIPE + 5;
    uint8_t *data = g_malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7);
    uint64_t control = 42;
    uint32_t crc = ndfs_crc32c(0, data, len);
    released = 0;
    cr_assert_eq(ndfs_window_queue_borrowed(&tx, 4, 1, 1, &control, 8, data, len, false, &crc,
                                            count_release, NULL),
                 -EINVAL);
    cr_assert_eq(ndfs_window_queue_borrowed(&tx, 4, 1, 1, &control, 8, data, len, true, &crc,
                                            count_release, NULL),
                 0);
    cr_assert_eq(ndfs_window_queue_borrowed(&tx, 4, 2, 1, &control, 8, data, len, true, NULL,
                                            count_release, NULL),
                 0);
    GPtrArray *a = take_all(0);
    cr_assert_eq(a->len, 2u);
    struct ndfs_tx_frag *given = a->pdata[0], *computed = a->pdata[1];
    cr_assert_eq(given->h.data_len, len);
    cr_assert_eq(given->payload_crc, computed->payload_crc);
    cr_assert_eq(given->payload_crc, ndfs_crc32c(ndfs_crc32c(0, &control, 8), data, len));
    g_ptr_array_free(a, true);
    ndfs_window_clear(&tx);
    ndfs_window_init(&tx, MAXMSG, STRIPE, 16u << 20);
    cr_assert_eq(released, 2);
    g_free(data);
}

Test(window, fragments_breaking_the_rules_are_refused)
{
    queue_msg(1, 3 * STRIPE);
    GPtrArray *a = take_all(0);
    cr_assert_eq(a->len, 3u);
    struct ndfs_tx_frag *f0 = a->pdata[0], *f1 = a->pdata[1];
    /* a middle fragment where a first one is due */
    struct ndfs_frame_header h = f1->h;
    h.seq = 1;
    cr_assert_eq(ndfs_window_receive(&rx, &h, NULL, f1->data, &got), -EBADMSG);
    ndfs_window_reset(&rx);
    cr_assert_eq(deliver(f0), 0);
    /* a new first fragment while one is being reassembled */
    h = f0->h;
    h.seq = 2;
    cr_assert_eq(ndfs_window_receive(&rx, &h, f0->control, f0->data, &got), -EBADMSG);
    ndfs_window_reset(&rx);
    cr_assert_eq(deliver(f0), 0);
    /* more data than the message said */
    h = f1->h;
    h.flags = NDFS_FRAME_LAST;
    h.data_len = (uint32_t)STRIPE;
    cr_assert_eq(ndfs_window_receive(&rx, &h, NULL, f1->data, &got), -EBADMSG);
    /* far ahead of what is expected */
    ndfs_window_reset(&rx);
    h = f0->h;
    h.seq = 1ull << 40;
    cr_assert_eq(ndfs_window_receive(&rx, &h, f0->control, f0->data, &got), -EBADMSG);
    cr_assert_eq(g_queue_get_length(&got), 0u);
    g_ptr_array_free(a, true);
}

Test(window, reset_on_a_new_incarnation_starts_over)
{
    queue_msg(1, 100);
    queue_msg(2, 100);
    GPtrArray *a = take_all(0);
    cr_assert_eq(deliver(a->pdata[0]), 0);
    g_ptr_array_free(a, true);
    ndfs_window_reset(&tx);
    ndfs_window_reset(&rx);
    cr_assert_eq(tx.tx_queued, 0u);
    cr_assert_null(ndfs_window_next(&tx), "unacked messages are dropped");
    queue_msg(3, 100);
    a = take_all(0);
    cr_assert_eq(((struct ndfs_tx_frag *)a->pdata[0])->h.seq, 1u);
    cr_assert_eq(deliver(a->pdata[0]), 0);
    cr_assert_eq(g_queue_get_length(&got), 2u);
    check_msg(g_queue_peek_nth(&got, 1), 3, 100);
    g_ptr_array_free(a, true);
}

Test(window, max_queued_and_max_message_are_enforced)
{
    ndfs_window_clear(&tx);
    ndfs_window_init(&tx, MAXMSG, STRIPE, 3 * 1000);
    uint8_t data[1000] = {0};
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, data, 1000), 0);
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, data, 1000), 0);
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, data, 1000), 0);
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, data, 1), -ENOBUFS);
    GPtrArray *a = take_all(0);
    cr_assert_eq(ndfs_window_ack(&tx, 1), 0);
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, data, 1000), 0, "an ack makes room");
    cr_assert_eq(ndfs_window_queue(&tx, 4, 0, 0, NULL, 0, NULL, MAXMSG + 1), -EMSGSIZE);
    g_ptr_array_free(a, true);
}

Test(window, oldest_in_flight_per_link_skips_acked_requeued_and_unsent)
{
    uint64_t oldest[3];
    for (uint64_t id = 0; id < 6; id++)
        queue_msg(id, 10);
    cr_assert_eq(ndfs_window_oldest_in_flight(&tx, 3, oldest), 0, "nothing sent yet");
    /* 1..4 go out: 1 and 3 on link 0 at 100 and 300, 2 and 4 on link 1 */
    for (uint64_t t = 1; t <= 4; t++) {
        struct ndfs_tx_frag *f = ndfs_window_next(&tx);
        f->link = (int)((t - 1) % 2);
        f->sent_ms = t * 100;
    }
    cr_assert_eq(ndfs_window_oldest_in_flight(&tx, 3, oldest), 2);
    cr_assert_eq(oldest[0], 100);
    cr_assert_eq(oldest[1], 200);
    cr_assert_eq(oldest[2], UINT64_MAX);
    cr_assert_eq(ndfs_window_ack(&tx, 1), 0);
    ndfs_window_oldest_in_flight(&tx, 3, oldest);
    cr_assert_eq(oldest[0], 300, "acked frames are not in flight");
    /* link 1 timed out: its frames are queued again, not in flight */
    cr_assert_eq(ndfs_window_requeue_link(&tx, 1), 2);
    cr_assert_eq(ndfs_window_oldest_in_flight(&tx, 3, oldest), 1);
    cr_assert_eq(oldest[1], UINT64_MAX);
    /* resent on link 2 */
    struct ndfs_tx_frag *f = ndfs_window_next(&tx);
    cr_assert_eq(f->h.seq, 2);
    f->link = 2;
    f->sent_ms = 700;
    ndfs_window_oldest_in_flight(&tx, 3, oldest);
    cr_assert_eq(oldest[2], 700);
    cr_assert_eq(oldest[0], 300);
}

/* Random frames through the header decoder and, when it takes them, into a
 * receiving window, each payload in a block of exactly the declared size
 * (ASan: no read past it). Whatever comes out is a whole, consistent
 * message. Small sequence numbers and lengths, so the window's paths
 * (early, duplicate, fragments) are reached. */
Test(window, random_frames_never_read_past_their_payload)
{
    GRand *rnd = g_rand_new_with_seed(4);
    size_t taken = 0, delivered = 0;
    for (int i = 0; i < 200000; i++) {
        struct ndfs_frame_header h = {
            .type = NDFS_FRAME_DATA,
            .flags = (uint8_t)g_rand_int_range(rnd, 0, 4),
            .channel = 4,
            .control_len = (uint32_t)g_rand_int_range(rnd, 0, 3) * 8,
            .data_len = (uint32_t)g_rand_int_range(rnd, 0, 40),
            .msg_data_len = (uint32_t)g_rand_int_range(rnd, 0, 80),
            .seq = rx.rx_next + (uint64_t)g_rand_int_range(rnd, -2, 4),
            .request_id = (uint64_t)g_rand_int_range(rnd, 0, 3),
        };
        if (g_rand_boolean(rnd)) { /* often a whole message or a next fragment of one */
            h.msg_data_len = h.data_len + (uint32_t)g_rand_int_range(rnd, 0, 2) * h.data_len;
            h.flags = h.msg_data_len == h.data_len ? NDFS_FRAME_FIRST | NDFS_FRAME_LAST
                                                   : NDFS_FRAME_FIRST;
            if (rx.rx_msg && g_rand_boolean(rnd)) {
                h.flags = NDFS_FRAME_LAST;
                h.control_len = 0;
                h.msg_data_len = (uint32_t)rx.rx_msg->data_len;
                h.data_len = (uint32_t)(rx.rx_msg->data_len - rx.rx_fill);
                h.request_id = rx.rx_msg->request_id;
            }
        }
        uint8_t wire[NDFS_FRAME_HEADER_SIZE];
        ndfs_frame_encode(&h, 0, wire);
        if (g_rand_int_range(rnd, 0, 8) == 0) /* and now and then a byte of garbage */
            wire[g_rand_int_range(rnd, 0, NDFS_FRAME_HEADER_SIZE)] ^=
                (uint8_t)g_rand_int_range(rnd, 1, 256);
        struct ndfs_frame_header d;
        const char *why;
        long size = ndfs_frame_decode_header(wire, sizeof wire, 4096, &d, &why);
        if (size < 0 || d.type != NDFS_FRAME_DATA)
            continue;
        taken++;
        static uint8_t none;
        size_t plen = (size_t)size - NDFS_FRAME_HEADER_SIZE;
        uint8_t *payload = plen ? g_malloc(plen) : &none;
        memset(payload, 0xab, plen);
        int rc = ndfs_window_receive(&rx, &d, payload, payload + d.control_len, &got);
        cr_assert(rc == 0 || rc == -EBADMSG || rc == -ENOBUFS, "rc %d", rc);
        if (plen)
            g_free(payload);
        struct ndfs_message *m;
        while ((m = g_queue_pop_head(&got))) {
            cr_assert_leq(m->control_len + m->data_len, MAXMSG);
            for (size_t k = 0; k < m->data_len; k++)
                cr_assert_eq(m->data[k], 0xab);
            delivered++;
            ndfs_message_free(m);
        }
        if (rc < 0) /* the transport drops the connection; the peer starts over */
            ndfs_window_reset(&rx);
    }
    g_rand_free(rnd);
    cr_assert_gt(taken, 1000);
    cr_assert_gt(delivered, 100);
}

/* A message with 64 KiB of data or more sits in the huge-page pool (a
 * master hands its data to the disk as it is), aligned; a small one is
 * malloc'd. Both go back with ndfs_message_free. */
Test(window, large_messages_come_from_the_io_buffer_pool)
{
    struct ndfs_iobuf_stats before, s;
    ndfs_iobuf_get_stats(&before, false);
    if (!before.huge)
        cr_skip_test("no transparent huge pages on this kernel: messages are malloc'd");
    struct ndfs_message *big = ndfs_message_alloc(40, 1u << 20);
    struct ndfs_message *small = ndfs_message_alloc(40, 4096 - 1);
    cr_assert(big && small);
    cr_assert_eq((uintptr_t)big->data % NDFS_MESSAGE_DATA_ALIGN, 0);
    memset(big->data, 1, big->data_len);
    memset(small->data, 2, small->data_len);
    ndfs_iobuf_get_stats(&s, false);
    /* one slot: a page of head, then the data, rounded up to 64 KiB */
    size_t slot = ((4096 + (1u << 20)) + (64u << 10) - 1) / (64u << 10) * (64u << 10);
    cr_assert_eq(s.in_use - before.in_use, slot,
                 "pooled: %zu bytes, not one slot for the 1 MiB message alone",
                 s.in_use - before.in_use);
    ndfs_message_free(big);
    ndfs_message_free(small);
    ndfs_iobuf_get_stats(&s, false);
    cr_assert_eq(s.in_use, before.in_use);
}
