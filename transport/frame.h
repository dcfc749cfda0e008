/* Private to transport/: the wire format of one frame and CRC32C.
 *
 * A frame is a 64-byte little-endian header, then control_len bytes of
 * control, then data_len bytes of data:
 *
 *   0 u32 magic "NDFT"   4 u8 version (1)   5 u8 type   6 u8 flags   7 u8 0
 *   8 u16 channel       10 u16 link index  12 u32 control_len
 *  16 u32 data_len      20 u32 msg_data_len (data bytes of the whole message)
 *  24 u64 seq           32 u64 ack (cumulative)  40 u64 request id
 *  48 u64 epoch         56 u32 checksum    60 u32 0
 *
 * checksum = CRC32C over control, data, then the header with the checksum
 * field zeroed (payload first, so a resend recomputes only the header's). */
#ifndef NDFS_TRANSPORT_FRAME_H
#define NDFS_TRANSPORT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NDFS_FRAME_MAGIC       0x5446444eu /* "NDFT" */
#define NDFS_FRAME_VERSION     1
#define NDFS_FRAME_HEADER_SIZE 64

enum ndfs_frame_type {
    NDFS_FRAME_AUTH_CHALLENGE = 1,
    NDFS_FRAME_AUTH_RESPONSE,
    NDFS_FRAME_AUTH_OK,
    NDFS_FRAME_DATA,
    NDFS_FRAME_ACK,
    NDFS_FRAME_PING,
    NDFS_FRAME_PONG,
    NDFS_FRAME_TYPE_MAX = NDFS_FRAME_PONG,
};

#define NDFS_FRAME_FIRST 0x01 /* first fragment of a message */
#define NDFS_FRAME_LAST  0x02 /* last fragment of a message */

struct ndfs_frame_header {
    uint8_t type;
    uint8_t flags;
    uint16_t channel;
    uint16_t link;
    uint32_t control_len;
    uint32_t data_len;
    uint32_t msg_data_len;
    uint64_t seq;
    uint64_t ack;
    uint64_t request_id;
    uint64_t epoch;
    uint32_t checksum;
};

/* CRC32C (Castagnoli), zlib-style: start with crc = 0, chain calls
 * (crc32c.c). Uses the SSE4.2 instruction when the CPU has it, and folds
 * buffers of 1 KiB or more with VPCLMULQDQ on CPUs with AVX-512. */
uint32_t ndfs_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t ndfs_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* The CRC32C of A then B from crc1 = CRC32C(A) and crc2 = CRC32C(B), B
 * being len2 bytes long. */
uint32_t ndfs_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2);
/* false when the CPU has no crc32 instruction (then *out is untouched). */
bool ndfs_crc32c_hw(uint32_t crc, const void *buf, size_t len, uint32_t *out);
/* For tests: false keeps ndfs_crc32c_hw to the crc32 instruction, true (the
 * default) lets it fold large buffers with VPCLMULQDQ where the CPU can. */
void ndfs_crc32c_allow_fold(bool allow);

/* Writes h into out with checksum = crc32c(payload_crc, header zeroed), where
 * payload_crc = ndfs_crc32c(ndfs_crc32c(0, control), data). */
void ndfs_frame_encode(const struct ndfs_frame_header *h, uint32_t payload_crc,
                       uint8_t out[NDFS_FRAME_HEADER_SIZE]);

/* Checks a header (len bytes available at buf). Returns the total frame size
 * (header + control + data) when the header is valid, -EAGAIN when fewer than
 * NDFS_FRAME_HEADER_SIZE bytes are there, -EBADMSG (*reason says why) for a
 * bad magic, version, type, flags, reserved bits or a length over
 * max_payload. The checksum is not checked here. */
long ndfs_frame_decode_header(const uint8_t *buf, size_t len, size_t max_payload,
                              struct ndfs_frame_header *h, const char **reason);
/* Checks the checksum of a whole frame whose header decoded to h. 0 or
 * -EBADMSG. */
int ndfs_frame_verify(const uint8_t *frame, const struct ndfs_frame_header *h, const char **reason);
/* The same for a frame whose header (NDFS_FRAME_HEADER_SIZE bytes), control
 * and data lie apart. */
int ndfs_frame_verify_parts(const uint8_t *header, const struct ndfs_frame_header *h,
                            const uint8_t *control, const uint8_t *data, const char **reason);
/* The same for a frame whose header (NDFS_FRAME_HEADER_SIZE bytes), control
 * and data lie apart. */
int ndfs_frame_verify_parts(const uint8_t *header, const struct ndfs_frame_header *h,
                            const uint8_t *control, const uint8_t *data, const char **reason);
/* Both: the frame size (> 0), -EAGAIN while incomplete, -EBADMSG. */
long ndfs_frame_decode(const uint8_t *buf, size_t len, size_t max_payload,
                       struct ndfs_frame_header *h, const char **reason);

const char *ndfs_frame_type_name(unsigned type);

#endif
