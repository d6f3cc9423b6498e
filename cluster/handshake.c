/*
 * handshake.c — the distribution handshake (docs/protocol.md 3) as a pure state
 * machine: bytes in, bytes out, no sockets, no clock, no allocation.  The
 * caller (node.c, the fuzz harness, the unit tests) moves the bytes and
 * applies net_setuptime to each step.
 *
 * One function per message received, as dist_util.erl has: recv_name,
 * recv_alive_answer, recv_complement, recv_reply (acceptor) and
 * recv_status, recv_challenge, recv_ack (initiator).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Fixed parts of the messages (after the 2-byte length). */
#define NAME_V6_FIXED 15   /* 'N' Flags:64 Creation:32 Nlen:16 */
#define NAME_V5_FIXED 7    /* 'n' Version:16 Flags:32 */
#define CHALLENGE_FIXED 19 /* 'N' Flags:64 Challenge:32 Creation:32 Nlen:16 */
#define REPLY_LEN 21       /* 'r' Challenge:32 Digest:16 */
#define ACK_LEN 17         /* 'a' Digest:16 */
#define COMPLEMENT_LEN 9   /* 'c' FlagsHigh:32 Creation:32 */

const char *dist_strerror(int code)
{
    switch (code) {
    case DIST_EPROTO:
        return "malformed distribution message";
    case DIST_ETOO_LARGE:
        return "length over its cap";
    case DIST_EFLAGS:
        return "peer lacks mandatory distribution flags";
    case DIST_ENAME:
        return "bad or unexpected node name";
    case DIST_EDIGEST:
        return "invalid challenge reply (wrong cookie)";
    case DIST_ENOT_ALLOWED:
        return "connection not allowed";
    case DIST_ENOK:
        return "simultaneous connect: the other attempt wins";
    case DIST_EALIVE:
        return "peer keeps its existing connection";
    case DIST_EATOM_QUOTA:
        return "peer over its atom quota";
    case DIST_ECACHE:
        return "atom cache reference to an empty slot";
    case DIST_EFRAGMENT:
        return "fragment for an unknown or duplicate sequence";
    case DIST_ECLOSED:
        return "connection closed";
    case DIST_ENOCONNECTION:
        return "no connection to node";
    default:
        return etf_strerror(code);
    }
}

/* Computes the digest with OpenSSL's MD5.  The challenge is printed as an
 * unsigned decimal: a challenge >= 2^31 must not turn negative (pitfall
 * 10).  EVP_Digest cannot fail for MD5 on valid arguments short of memory
 * exhaustion inside OpenSSL; the digest is zeroed first so such a failure
 * yields a digest no peer matches (the handshake then fails, it does not
 * pass). */
void dist_digest(const char *cookie, size_t cookie_len, uint32_t challenge, uint8_t digest[16])
{
    char text[DIST_NAME_MAX + 16];
    memset(digest, 0, 16);
    if (cookie_len > DIST_NAME_MAX)
        return;
    memcpy(text, cookie, cookie_len);
    int n = snprintf(text + cookie_len, 16, "%u", challenge);
    unsigned int out_len = 0;
    if (EVP_Digest(text, cookie_len + (size_t)n, digest, &out_len, EVP_md5(), NULL) != 1)
        memset(digest, 0, 16);
}

/* Constant-time digest comparison: the time taken reveals nothing about
 * how many leading bytes matched. */
static bool digest_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t diff = 0;
    for (int i = 0; i < 16; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

/* Checks UTF-8 validity, at most 255 characters and no NUL. */
static bool text_ok(const char *s, size_t len)
{
    size_t chars = 0;
    bool latin1;
    if (len == 0 || len > DIST_NAME_MAX || memchr(s, 0, len) != NULL)
        return false;
    return heap_utf8_validate((const uint8_t *)s, len, &chars, &latin1) && chars <= 255;
}

bool dist_name_valid(const char *name, size_t len)
{
    if (!text_ok(name, len))
        return false;
    const char *at = memchr(name, '@', len);
    if (at == NULL || at == name || at == name + len - 1)
        return false;
    return memchr(at + 1, '@', len - (size_t)(at + 1 - name)) == NULL;
}

/* A host part for a dynamic name: non-empty, valid, no '@'. */
static bool host_valid(const char *host, size_t len)
{
    return text_ok(host, len) && memchr(host, '@', len) == NULL;
}

/* Room-checked start of an outgoing message: returns the body pointer
 * (after the 2-byte length), or NULL when body_len does not fit. */
static uint8_t *out_begin(dist_hs_t *hs, size_t body_len)
{
    if (body_len > DIST_HS_MSG_MAX || hs->out_len + 2 + body_len > sizeof hs->out)
        return NULL;
    uint8_t *p = hs->out + hs->out_len;
    put16(p, (uint16_t)body_len);
    hs->out_len += 2 + body_len;
    return p + 2;
}

/* 's' + status text. */
static int send_status(dist_hs_t *hs, const char *status)
{
    size_t n = strlen(status);
    uint8_t *p = out_begin(hs, 1 + n);
    if (p == NULL)
        return DIST_ETOO_LARGE;
    p[0] = 's';
    memcpy(p + 1, status, n);
    return 0;
}

/* The initiator's 'N' name message. */
static int send_name(dist_hs_t *hs)
{
    const dist_hs_config_t *c = &hs->cfg;
    uint8_t *p = out_begin(hs, NAME_V6_FIXED + c->name_len);
    if (p == NULL)
        return DIST_ETOO_LARGE;
    *p++ = 'N';
    p = put64(p, c->flags);
    p = put32(p, c->creation);
    p = put16(p, (uint16_t)c->name_len);
    memcpy(p, c->name, c->name_len);
    return 0;
}

/* The acceptor's 'N' challenge message (also to v5 peers: they announced
 * HANDSHAKE_23 and answer with the complement). */
static int send_challenge(dist_hs_t *hs)
{
    const dist_hs_config_t *c = &hs->cfg;
    uint8_t *p = out_begin(hs, CHALLENGE_FIXED + c->name_len);
    if (p == NULL)
        return DIST_ETOO_LARGE;
    *p++ = 'N';
    p = put64(p, c->flags);
    p = put32(p, c->challenge);
    p = put32(p, c->creation);
    p = put16(p, (uint16_t)c->name_len);
    memcpy(p, c->name, c->name_len);
    return 0;
}

/* The peer's flags as the mandatory check sees them: MANDATORY_25_DIGEST
 * stands for the whole OTP 25 set (erts dist.h). */
static uint64_t effective_flags(uint64_t f)
{
    return (f & DFLAG_MANDATORY_25_DIGEST) ? f | DFLAG_MANDATORY_25 : f;
}

static bool has_mandatory(uint64_t f)
{
    return (effective_flags(f) & DFLAG_MANDATORY_25) == DFLAG_MANDATORY_25;
}

static int fail(dist_hs_t *hs, int code)
{
    hs->state = DIST_HS_FAILED;
    return code;
}

/* Makes the dynamic name "<base36 random>@Host" and a non-zero creation for
 * a peer that sent NAME_ME with its host name, as net_kernel's
 * generate_node_name does. */
static int make_dynamic_name(dist_hs_t *hs, const char *host, size_t host_len)
{
    char name[16];
    size_t n = 0;
    uint64_t v = hs->cfg.dynamic_seed;
    do {
        unsigned d = (unsigned)(v % 36);
        name[n++] = (char)(d < 10 ? '0' + d : 'A' + d - 10);
        v /= 36;
    } while (v != 0 && n < sizeof name);
    if (n + 1 + host_len > DIST_NAME_MAX)
        return DIST_ENAME;
    for (size_t i = 0; i < n; i++)
        hs->peer_name[i] = name[n - 1 - i];
    hs->peer_name[n] = '@';
    memcpy(hs->peer_name + n + 1, host, host_len);
    hs->peer_name_len = n + 1 + host_len;
    hs->peer_name[hs->peer_name_len] = 0;
    hs->peer_creation = (uint32_t)(hs->cfg.dynamic_seed >> 32) | 1;
    return 0;
}

/* B: 's' "named:" Nlen:16 Name Creation:32. */
static int send_named(dist_hs_t *hs)
{
    uint8_t *p = out_begin(hs, 7 + 2 + hs->peer_name_len + 4);
    if (p == NULL)
        return DIST_ETOO_LARGE;
    memcpy(p, "snamed:", 7);
    p = put16(p + 7, (uint16_t)hs->peer_name_len);
    memcpy(p, hs->peer_name, hs->peer_name_len);
    put32(p + hs->peer_name_len, hs->peer_creation);
    return 0;
}

/* B: the first message, 'N' (v6) or 'n' (v5).  Trailing bytes after the
 * name are ignored, as OTP does. */
static int recv_name(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    const char *name;
    size_t name_len;
    if (n >= NAME_V6_FIXED && m[0] == 'N') {
        hs->peer_flags = get64(m + 1);
        hs->peer_creation = get32(m + 9);
        name_len = get16(m + 13);
        if (name_len > n - NAME_V6_FIXED)
            return fail(hs, DIST_EPROTO);
        name = (const char *)m + NAME_V6_FIXED;
    } else if (n >= NAME_V5_FIXED && m[0] == 'n') {
        if (get16(m + 1) != 5)
            return fail(hs, DIST_EPROTO);
        hs->v5 = true;
        hs->peer_flags = get32(m + 3);
        name = (const char *)m + NAME_V5_FIXED;
        name_len = n - NAME_V5_FIXED;
    } else {
        return fail(hs, DIST_EPROTO);
    }
    bool dynamic = !hs->v5 && (hs->peer_flags & DFLAG_NAME_ME);
    if (dynamic ? !host_valid(name, name_len) : !dist_name_valid(name, name_len))
        return fail(hs, DIST_ENAME);
    if (!has_mandatory(hs->peer_flags)) {
        /* As dist_util's check_dflags: tell the peer, then close. */
        int rc = send_status(hs, "not_allowed");
        return fail(hs, rc < 0 ? rc : DIST_EFLAGS);
    }
    int rc;
    if (dynamic) {
        rc = make_dynamic_name(hs, name, name_len);
        if (rc < 0)
            return fail(hs, rc);
    } else {
        memcpy(hs->peer_name, name, name_len);
        hs->peer_name[name_len] = 0;
        hs->peer_name_len = name_len;
    }
    enum dist_status st = DIST_STATUS_OK;
    if (hs->cfg.decide != NULL)
        st = hs->cfg.decide(hs->cfg.decide_ud, hs->peer_name, hs->peer_name_len);
    switch (st) {
    case DIST_STATUS_OK:
        rc = dynamic ? send_named(hs) : send_status(hs, "ok");
        break;
    case DIST_STATUS_OK_SIMULTANEOUS:
        rc = send_status(hs, "ok_simultaneous");
        break;
    case DIST_STATUS_NOK:
        rc = send_status(hs, "nok");
        return fail(hs, rc < 0 ? rc : DIST_ENOK);
    case DIST_STATUS_ALIVE:
        rc = send_status(hs, "alive");
        if (rc < 0)
            return fail(hs, rc);
        hs->state = DIST_HS_RECV_ALIVE;
        return 0;
    default:
        rc = send_status(hs, "not_allowed");
        return fail(hs, rc < 0 ? rc : DIST_ENOT_ALLOWED);
    }
    if (rc == 0)
        rc = send_challenge(hs);
    if (rc < 0)
        return fail(hs, rc);
    hs->state = hs->v5 ? DIST_HS_RECV_COMPLEMENT : DIST_HS_RECV_REPLY;
    return 0;
}

/* B: after `alive`, 's' "true" (the old connection is a dead incarnation:
 * continue) or "false" (abort). */
static int recv_alive_answer(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n == 5 && memcmp(m, "strue", 5) == 0) {
        hs->replaces_old = true;
        int rc = send_challenge(hs);
        if (rc < 0)
            return fail(hs, rc);
        hs->state = hs->v5 ? DIST_HS_RECV_COMPLEMENT : DIST_HS_RECV_REPLY;
        return 0;
    }
    if (n == 6 && memcmp(m, "sfalse", 6) == 0)
        return fail(hs, DIST_EALIVE);
    return fail(hs, DIST_EPROTO);
}

/* B, v5 peer: 'c' FlagsHigh:32 Creation:32. */
static int recv_complement(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n < COMPLEMENT_LEN || m[0] != 'c')
        return fail(hs, DIST_EPROTO);
    hs->peer_flags |= (uint64_t)get32(m + 1) << 32;
    hs->peer_creation = get32(m + 5);
    hs->state = DIST_HS_RECV_REPLY;
    return 0;
}

/* B: 'r' ChallengeA:32 Digest:16; answers 'a' Digest(ChallengeA). */
static int recv_reply(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n != REPLY_LEN || m[0] != 'r')
        return fail(hs, DIST_EPROTO);
    uint8_t want[16];
    dist_digest(hs->cfg.cookie, hs->cfg.cookie_len, hs->cfg.challenge, want);
    if (!digest_equal(want, m + 5))
        return fail(hs, DIST_EDIGEST);
    hs->peer_challenge = get32(m + 1);
    uint8_t *p = out_begin(hs, ACK_LEN);
    if (p == NULL)
        return fail(hs, DIST_ETOO_LARGE);
    p[0] = 'a';
    dist_digest(hs->cfg.cookie, hs->cfg.cookie_len, hs->peer_challenge, p + 1);
    hs->flags = hs->cfg.flags & effective_flags(hs->peer_flags);
    hs->state = DIST_HS_UP;
    return 1;
}

/* A: 's' Status. */
static int recv_status(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n < 1 || m[0] != 's')
        return fail(hs, DIST_EPROTO);
    const char *s = (const char *)m + 1;
    size_t len = n - 1;
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
    if (IS("ok") || IS("ok_simultaneous")) {
        hs->state = DIST_HS_RECV_CHALLENGE;
        return 0;
    }
    if (IS("nok"))
        return fail(hs, DIST_ENOK);
    if (IS("not_allowed"))
        return fail(hs, DIST_ENOT_ALLOWED);
    if (IS("alive")) {
        /* We are dialling, so we hold no connection to the peer: the one it
         * remembers is a dead incarnation of ours (dist_util's do_alive). */
        int rc = send_status(hs, "true");
        if (rc < 0)
            return fail(hs, rc);
        hs->state = DIST_HS_RECV_CHALLENGE;
        return 0;
    }
#undef IS
    /* "named:" answers NAME_ME, which girder never sends. */
    return fail(hs, DIST_EPROTO);
}

/* A: 'N' Flags:64 Challenge:32 Creation:32 Nlen:16 Name; answers 'r'. */
static int recv_challenge(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n < CHALLENGE_FIXED || m[0] != 'N')
        return fail(hs, DIST_EPROTO);
    size_t name_len = get16(m + 17);
    if (name_len > n - CHALLENGE_FIXED)
        return fail(hs, DIST_EPROTO);
    const char *name = (const char *)m + CHALLENGE_FIXED;
    if (name_len != hs->cfg.peer_name_len || memcmp(name, hs->cfg.peer_name, name_len) != 0)
        return fail(hs, DIST_ENAME);
    hs->peer_flags = get64(m + 1);
    hs->peer_challenge = get32(m + 9);
    hs->peer_creation = get32(m + 13);
    if (!has_mandatory(hs->peer_flags))
        return fail(hs, DIST_EFLAGS);
    memcpy(hs->peer_name, name, name_len);
    hs->peer_name[name_len] = 0;
    hs->peer_name_len = name_len;
    uint8_t *p = out_begin(hs, REPLY_LEN);
    if (p == NULL)
        return fail(hs, DIST_ETOO_LARGE);
    p[0] = 'r';
    put32(p + 1, hs->cfg.challenge);
    dist_digest(hs->cfg.cookie, hs->cfg.cookie_len, hs->peer_challenge, p + 5);
    hs->state = DIST_HS_RECV_ACK;
    return 0;
}

/* A: 'a' Digest(our challenge). */
static int recv_ack(dist_hs_t *hs, const uint8_t *m, size_t n)
{
    if (n != ACK_LEN || m[0] != 'a')
        return fail(hs, DIST_EPROTO);
    uint8_t want[16];
    dist_digest(hs->cfg.cookie, hs->cfg.cookie_len, hs->cfg.challenge, want);
    if (!digest_equal(want, m + 1))
        return fail(hs, DIST_EDIGEST);
    hs->flags = hs->cfg.flags & effective_flags(hs->peer_flags);
    hs->state = DIST_HS_UP;
    return 1;
}

int dist_hs_init(dist_hs_t *hs, const dist_hs_config_t *cfg)
{
    memset(hs, 0, sizeof *hs);
    hs->cfg = *cfg;
    if (!dist_name_valid(cfg->name, cfg->name_len) || cfg->cookie_len > DIST_NAME_MAX ||
        (cfg->role == DIST_INITIATOR && !dist_name_valid(cfg->peer_name, cfg->peer_name_len))) {
        hs->state = DIST_HS_FAILED;
        return GD_EINVAL;
    }
    if (cfg->role == DIST_ACCEPTOR) {
        hs->state = DIST_HS_RECV_NAME;
        return 0;
    }
    hs->state = DIST_HS_RECV_STATUS;
    return send_name(hs);
}

int dist_hs_feed(dist_hs_t *hs, const uint8_t *in, size_t len, size_t *used)
{
    *used = 0;
    if (hs->state == DIST_HS_FAILED)
        return DIST_EPROTO;
    if (hs->state == DIST_HS_UP)
        return 1;
    if (len < 2)
        return 0;
    size_t n = get16(in);
    if (n > DIST_HS_MSG_MAX)
        return fail(hs, DIST_ETOO_LARGE);
    if (n == 0)
        return fail(hs, DIST_EPROTO);
    if (len - 2 < n)
        return 0;
    *used = 2 + n;
    const uint8_t *m = in + 2;
    switch (hs->state) {
    case DIST_HS_RECV_NAME:
        return recv_name(hs, m, n);
    case DIST_HS_RECV_ALIVE:
        return recv_alive_answer(hs, m, n);
    case DIST_HS_RECV_COMPLEMENT:
        return recv_complement(hs, m, n);
    case DIST_HS_RECV_REPLY:
        return recv_reply(hs, m, n);
    case DIST_HS_RECV_STATUS:
        return recv_status(hs, m, n);
    case DIST_HS_RECV_CHALLENGE:
        return recv_challenge(hs, m, n);
    case DIST_HS_RECV_ACK:
        return recv_ack(hs, m, n);
    default:
        return fail(hs, DIST_EPROTO);
    }
}
