/* Private to transport/: the HMAC-SHA256 challenge-response that opens every
 * connection, the UDP heartbeat tag, and the key file.
 *
 *   acceptor -> CHALLENGE {name, incarnation, nonce_a}
 *   connector -> RESPONSE {name, incarnation, link, nonce_c,
 *                          HMAC(key, "ndfs-auth-1" 'C' nonce_a nonce_c
 *                               connector inc_c acceptor inc_a link)}
 *   acceptor -> OK {HMAC(key, "ndfs-auth-1" 'A' nonce_c nonce_a
 *                        acceptor inc_a connector inc_c link)}
 *   or, with a session: OK {HMAC(that HMAC, "ndfs-auth-1" session), session}
 *
 * The transport puts in the connector's incarnation and the OK's session
 * the session of each end's state for the other (see tp_peer.session).
 *
 * Names are length-prefixed; the role byte stops a reflected response from
 * passing as the acceptor's proof. */
#ifndef NDFS_TRANSPORT_AUTH_H
#define NDFS_TRANSPORT_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "ndfs/transport.h"

#define NDFS_AUTH_NONCE_LEN 32
#define NDFS_AUTH_MAC_LEN   32
#define NDFS_AUTH_MAX_LEN   256 /* largest auth payload */

struct ndfs_auth_hello {
    char name[NDFS_TRANSPORT_NAME_MAX + 1];
    uint64_t incarnation;
    uint16_t link;                      /* RESPONSE only */
    uint8_t nonce[NDFS_AUTH_NONCE_LEN]; /* nonce_a or nonce_c */
    uint8_t mac[NDFS_AUTH_MAC_LEN];     /* RESPONSE only */
};

/* [A-Za-z0-9._-]{1,64} */
bool ndfs_auth_name_valid(const char *name);

/* Payload encoders write at most NDFS_AUTH_MAX_LEN bytes into out and return
 * the length. */
size_t ndfs_auth_challenge_encode(const char *name, uint64_t incarnation,
                                  const uint8_t nonce_a[NDFS_AUTH_NONCE_LEN], uint8_t *out);
/* 0 or -EBADMSG. */
int ndfs_auth_challenge_decode(const uint8_t *buf, size_t len, struct ndfs_auth_hello *out);

/* The connector's answer to a decoded challenge. */
size_t ndfs_auth_response_encode(const uint8_t *key, size_t key_len,
                                 const struct ndfs_auth_hello *challenge, const char *name,
                                 uint64_t incarnation, uint16_t link,
                                 const uint8_t nonce_c[NDFS_AUTH_NONCE_LEN], uint8_t *out);
/* The acceptor (name, incarnation, nonce_a) checks a response: 0 and *out
 * filled, -EBADMSG for a malformed one, -EACCES for a wrong MAC. */
int ndfs_auth_response_verify(const uint8_t *key, size_t key_len, const char *name,
                              uint64_t incarnation, const uint8_t nonce_a[NDFS_AUTH_NONCE_LEN],
                              const uint8_t *buf, size_t len, struct ndfs_auth_hello *out);

/* Both ends of a handshake, as the acceptor's proof covers them. */
struct ndfs_auth_ends {
    const char *acceptor, *connector;
    uint64_t acceptor_inc, connector_inc;
    const uint8_t *nonce_a, *nonce_c;
    uint16_t link;
};
/* The acceptor's proof, and its check by the connector (0, -EACCES,
 * -EBADMSG). */
size_t ndfs_auth_ok_encode(const uint8_t *key, size_t key_len, const struct ndfs_auth_ends *e,
                           uint8_t *out);
int ndfs_auth_ok_verify(const uint8_t *key, size_t key_len, const struct ndfs_auth_ends *e,
                        const uint8_t *buf, size_t len);
/* An OK carrying the acceptor's session (0: none, the bare MAC); verify
 * checks either form, and ndfs_auth_ok_session() reads it (0 if none). */
size_t ndfs_auth_ok_encode_session(const uint8_t *key, size_t key_len,
                                   const struct ndfs_auth_ends *e, uint64_t session, uint8_t *out);
uint64_t ndfs_auth_ok_session(const uint8_t *buf, size_t len);

/* UDP heartbeat: "NDFH" u8 version u8 link u8 name_len name u64 incarnation
 * u64 counter, then 16 bytes of HMAC over all of that. */
#define NDFS_HEARTBEAT_MAX_LEN 128
struct ndfs_heartbeat {
    char name[NDFS_TRANSPORT_NAME_MAX + 1];
    uint8_t link;
    uint64_t incarnation;
    uint64_t counter;
};
size_t ndfs_heartbeat_encode(const uint8_t *key, size_t key_len, const struct ndfs_heartbeat *hb,
                             uint8_t *out);
/* 0, -EBADMSG or -EACCES (forged). */
int ndfs_heartbeat_decode(const uint8_t *key, size_t key_len, const uint8_t *buf, size_t len,
                          struct ndfs_heartbeat *out);

/* Constant-time comparison. */
bool ndfs_auth_equal(const uint8_t *a, const uint8_t *b, size_t len);
/* Random bytes from getrandom(); 0 or -errno. */
int ndfs_auth_random(void *buf, size_t len);

#endif
