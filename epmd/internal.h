/*
 * internal.h — shared only inside epmd/ (and by its tests and fuzzers):
 * the byte buffer, the request framer and parser, the registry and the
 * socket-free protocol core that turns one request into one answer.
 *
 * The core is pure over bytes: the server feeds it what a connection sent
 * and writes back what it produced, so the fuzzer and the unit tests drive
 * every request path without sockets.
 */
#ifndef GIRDER_EPMD_INTERNAL_H
#define GIRDER_EPMD_INTERNAL_H

#include "epmd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer ------------------------------------------------ */

/* A zero-initialised buffer starts empty and allocates on first append.
 * One started with epmd_buf_init_borrowed writes into the caller's storage
 * first (the server answers a lookup without touching the heap) and moves
 * to heap memory only when that storage is outgrown. */
typedef struct epmd_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool borrowed; /* data is the caller's storage: never freed or realloc'd */
} epmd_buf_t;

/* epmd_buf_init_borrowed makes b an empty buffer over storage[0..cap),
 * which the caller owns and keeps alive for as long as b is used. */
static inline void epmd_buf_init_borrowed(epmd_buf_t *b, uint8_t *storage, size_t cap)
{
    b->data = storage;
    b->len = 0;
    b->cap = cap;
    b->borrowed = true;
}

/* epmd_buf_append copies n bytes to the end of b, growing it. */
EPMD_MUST_CHECK int epmd_buf_append(epmd_buf_t *b, const void *p, size_t n);

/* epmd_buf_free releases b's heap storage (never borrowed storage) and
 * zeroes it. */
void epmd_buf_free(epmd_buf_t *b);

/* ---- byte helpers ----------------------------------------------------------- */

static inline uint16_t epmd_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t epmd_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void epmd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void epmd_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* epmd_utf8_chars counts the characters of the strict UTF-8 string
 * s[0..n) (no overlong forms, surrogates or code points past U+10FFFF, as
 * OTP's verify_utf8) and returns -1 when it is not valid.  O(n). */
int epmd_utf8_chars(const uint8_t *s, size_t n);

/* ---- framing --------------------------------------------------------------- */

#define EPMD_FRAME_NEED_MORE 1
#define EPMD_FRAME_COMPLETE 0

/* epmd_frame_check looks at the got bytes a connection has sent so far
 * (length prefix included).  Returns EPMD_FRAME_NEED_MORE, or
 * EPMD_FRAME_COMPLETE with the request body at buf + 2 of *body_len bytes,
 * or EPMD_EPROTO when OTP's epmd would close: a length of 0 or one that
 * reaches EPMD_INBUF_SIZE, or more bytes than the length announced (two
 * requests on one connection).  *want is the total frame size once the
 * prefix is known, else 0.  O(1). */
EPMD_MUST_CHECK int epmd_frame_check(const uint8_t *buf, size_t got, size_t *want,
                                     size_t *body_len);

/* ---- request parsing --------------------------------------------------------- */

/* A parsed request; name/extra point into the caller's body bytes. */
typedef struct epmd_request {
    uint8_t op;
    /* ALIVE2 */
    uint16_t port;
    uint8_t node_type;
    uint8_t protocol;
    uint16_t high_vsn;
    uint16_t low_vsn;
    const uint8_t *extra;
    size_t extra_len;
    /* ALIVE2, PORT2 and STOP */
    const uint8_t *name;
    size_t name_len;
} epmd_request_t;

/* Bytes of an ALIVE2 frame before the name: length prefix + 13 fixed. */
#define EPMD_ALIVE2_FRAME_FIXED 15
/* Largest ALIVE2 frame epmd_alive2_frame writes. */
#define EPMD_ALIVE2_FRAME_MAX (EPMD_ALIVE2_FRAME_FIXED + EPMD_MAX_NAME_BYTES + EPMD_MAX_EXTRA_BYTES)

/* epmd_alive2_frame writes the length-prefixed ALIVE2 request registering
 * n (name length nlen, already checked <= EPMD_MAX_NAME_BYTES, extra <=
 * EPMD_MAX_EXTRA_BYTES) into out (EPMD_ALIVE2_FRAME_MAX bytes) and returns
 * its length. */
size_t epmd_alive2_frame(const epmd_node_info_t *n, size_t nlen, uint8_t *out);

/* epmd_parse_request parses one request body (the bytes after the length
 * prefix) into *req.  Returns 0, or EPMD_EPROTO for anything OTP's epmd
 * answers by closing without a reply: unknown opcode, ALIVE2 shorter than
 * its name/extra lengths or with a NUL or an empty name, PORT2 with an
 * empty name (one trailing NUL is dropped, as OTP), NUL inside, invalid
 * UTF-8 or more than 255 characters, STOP without a name.  Reads nothing
 * past len; O(len). */
EPMD_MUST_CHECK int epmd_parse_request(const uint8_t *body, size_t len, epmd_request_t *req);

/* ---- registry ------------------------------------------------------------------- */

typedef struct epmd_registry epmd_registry_t;
typedef struct epmd_node epmd_node_t;

/* epmd_registry_new creates an empty registry remembering at most
 * max_unreg old names (for creation rotation) and holding at most
 * max_nodes live ones; seed randomises its hash.  Freed with
 * epmd_registry_free. */
EPMD_MUST_CHECK int epmd_registry_new(unsigned max_unreg, unsigned max_nodes, uint64_t seed,
                                      epmd_registry_t **out);

/* epmd_registry_free frees r and every node in it.  NULL is fine. */
void epmd_registry_free(epmd_registry_t *r);

/* epmd_registry_register registers the ALIVE2 request req for the
 * connection owner (opaque to the registry; fd is only printed by DUMP) and
 * returns the node in *node and its creation in *creation.  now (seconds)
 * seeds the creation counter of a name never seen, as OTP's epmd does; a
 * name seen before gets its old counter plus one.  EPMD_EREFUSED when the
 * name is live already, too long (bytes or characters), not UTF-8, the
 * extra is too long or the registry is full; EPMD_ENOMEM.  O(name). */
EPMD_MUST_CHECK int epmd_registry_register(epmd_registry_t *r, const epmd_request_t *req,
                                           void *owner, int fd, uint32_t now, epmd_node_t **node,
                                           uint32_t *creation);

/* epmd_registry_unregister moves the live node to the old-names list (its
 * connection closed), forgetting the oldest names beyond max_unreg + 1 -- which
 * may free `node` itself, so the caller must drop its pointer.  O(1)
 * amortised. */
void epmd_registry_unregister(epmd_registry_t *r, epmd_node_t *node);

/* epmd_registry_unregister_name unregisters the live node called
 * name[0..len) (STOP) and returns its owner in *owner; EPMD_ENOTFOUND. */
EPMD_MUST_CHECK int epmd_registry_unregister_name(epmd_registry_t *r, const uint8_t *name,
                                                  size_t len, void **owner);

/* epmd_registry_lookup returns the live node called name[0..len) or NULL. */
const epmd_node_t *epmd_registry_lookup(const epmd_registry_t *r, const uint8_t *name, size_t len);

/* epmd_registry_count returns the number of live registrations. */
unsigned epmd_registry_count(const epmd_registry_t *r);

/* epmd_registry_unused_count returns the number of remembered old names. */
unsigned epmd_registry_unused_count(const epmd_registry_t *r);

/* epmd_registry_check verifies every invariant (hash and lists agree,
 * names unique, counts and limits hold) and returns 0 or EPMD_EPROTO.
 * O(nodes); for tests and the fuzzer. */
EPMD_MUST_CHECK int epmd_registry_check(const epmd_registry_t *r);

/* epmd_node_info copies what PORT2_RESP reports about node into *info. */
void epmd_node_info(const epmd_node_t *node, epmd_node_info_t *info);

/* epmd_registry_write_port2 appends the PORT2_RESP for name[0..len)
 * (found or not) to out. */
EPMD_MUST_CHECK int epmd_registry_write_port2(const epmd_registry_t *r, const uint8_t *name,
                                              size_t len, epmd_buf_t *out);

/* epmd_registry_write_names appends one "name N at port P\n" line per live
 * node, newest first, to out.  O(nodes). */
EPMD_MUST_CHECK int epmd_registry_write_names(const epmd_registry_t *r, epmd_buf_t *out);

/* epmd_registry_write_dump appends the DUMP_REQ text (live nodes newest
 * first, then old names oldest first, each entry NUL-terminated). */
EPMD_MUST_CHECK int epmd_registry_write_dump(const epmd_registry_t *r, epmd_buf_t *out);

/* ---- protocol core ---------------------------------------------------------------- */

/* What the server must do with the connection after the answer. */
typedef enum epmd_action {
    EPMD_ACT_CLOSE = 0, /* send the answer (maybe empty), then close */
    EPMD_ACT_KEEP,      /* ALIVE2 accepted: keep the connection as the registration */
    EPMD_ACT_KILL,      /* KILL accepted: send "OK", close, stop the server */
} epmd_action_t;

/* Per-request context the core needs from the server. */
typedef struct epmd_core_ctx {
    epmd_registry_t *reg;
    uint16_t epmd_port; /* reported by NAMES and DUMP */
    bool relaxed;       /* -relaxed_command_check */
    bool local_peer;    /* loopback or own address */
    void *owner;        /* the requesting connection */
    int fd;             /* its descriptor, for DUMP */
    uint32_t now;       /* seconds, for creation seeds */
} epmd_core_ctx_t;

/* The core's verdict on one request. */
typedef struct epmd_outcome {
    epmd_action_t action;
    epmd_node_t *node; /* EPMD_ACT_KEEP: the registration */
    void *stop_owner;  /* STOP: connection of the node stopped, or NULL */
} epmd_outcome_t;

/* epmd_core_handle answers the request body[0..len) the way OTP 25's epmd
 * does: appends the answer bytes to out and reports the action.  It never
 * touches sockets; requests OTP answers by closing produce no bytes and
 * EPMD_ACT_CLOSE.  Returns 0 or EPMD_ENOMEM (close the connection).
 * O(len + answer). */
EPMD_MUST_CHECK int epmd_core_handle(const epmd_core_ctx_t *ctx, const uint8_t *body, size_t len,
                                     epmd_buf_t *out, epmd_outcome_t *res);

/* ---- addresses --------------------------------------------------------------------- */

struct sockaddr;

/* epmd_addr_is_local says whether a peer counts as local the way OTP's
 * conn_local_peer_check decides: IPv4 127/8, IPv6 ::1 (or ::ffff:127/104),
 * or the same address as the socket's own end.  Pure. */
bool epmd_addr_is_local(const struct sockaddr *peer, const struct sockaddr *self);

#endif
