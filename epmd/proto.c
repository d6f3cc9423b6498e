/*
 * proto.c — the socket-free half of epmd: framing, request parsing, the
 * protocol core that answers one request, and the client's response
 * parsers.  Everything here is a pure function of its arguments (plus the
 * registry it is handed), so the unit tests and fuzzers call it directly.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Bytes of an ALIVE2 request before the name: op, port, type, protocol,
 * high, low, name length. */
#define ALIVE2_FIXED_BYTES 11
/* ALIVE2 fixed part plus the extra length field. */
#define ALIVE2_MIN_BYTES (ALIVE2_FIXED_BYTES + 2)
/* PORT2_RESP bytes before the name: op, result, port, type, protocol,
 * high, low, name length. */
#define PORT2_RESP_FIXED_BYTES 12
/* NAMES/DUMP answers start with the epmd port as 32 bits. */
#define NAMES_PORT_BYTES 4
#define ALIVE2_RESP_BYTES 4
#define ALIVE2_X_RESP_BYTES 6

const char *epmd_strerror(int err)
{
    switch (err) {
    case EPMD_OK:
        return "success";
    case EPMD_ENOMEM:
        return "out of memory";
    case EPMD_EINVAL:
        return "invalid argument";
    case EPMD_EADDRINUSE:
        return "address already in use (another epmd is running)";
    case EPMD_ECONNREFUSED:
        return "no epmd answers";
    case EPMD_ETIMEDOUT:
        return "timed out";
    case EPMD_EIO:
        return "connection error";
    case EPMD_EPROTO:
        return "malformed epmd answer";
    case EPMD_ENOTFOUND:
        return "name not registered";
    case EPMD_EREFUSED:
        return "registration refused";
    case EPMD_ERESOLVE:
        return "host name does not resolve";
    case EPMD_ENOTALLOWED:
        return "not allowed (live nodes)";
    case EPMD_ECLOSED:
        return "registration connection closed";
    case EPMD_ESYS:
        return "system call failed";
    case EPMD_EAGAIN:
        return "incomplete";
    default:
        return "unknown error";
    }
}

int epmd_buf_append(epmd_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->borrowed ? NULL : b->data, cap);
        if (d == NULL)
            return EPMD_ENOMEM;
        if (b->borrowed && b->len > 0)
            memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = cap;
        b->borrowed = false;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void epmd_buf_free(epmd_buf_t *b)
{
    if (!b->borrowed)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->borrowed = false;
}

int epmd_utf8_chars(const uint8_t *s, size_t n)
{
    size_t i = 0;
    int chars = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        if (c < 0x80) {
            need = 1;
        } else if ((c & 0xE0) == 0xC0) {
            if (c < 0xC2) /* overlong */
                return -1;
            need = 2;
        } else if ((c & 0xF0) == 0xE0) {
            need = 3;
        } else if ((c & 0xF8) == 0xF0) {
            if (c > 0xF4) /* past U+10FFFF */
                return -1;
            need = 4;
        } else {
            return -1;
        }
        if (n - i < need)
            return -1;
        for (size_t k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return -1;
        if (need == 3) {
            if (c == 0xE0 && s[i + 1] < 0xA0) /* overlong */
                return -1;
            if (c == 0xED && s[i + 1] >= 0xA0) /* surrogate */
                return -1;
        } else if (need == 4) {
            if (c == 0xF0 && s[i + 1] < 0x90) /* overlong */
                return -1;
            if (c == 0xF4 && s[i + 1] >= 0x90) /* past U+10FFFF */
                return -1;
        }
        i += need;
        chars++;
    }
    return chars;
}

int epmd_frame_check(const uint8_t *buf, size_t got, size_t *want, size_t *body_len)
{
    *want = 0;
    *body_len = 0;
    if (got < 2)
        return EPMD_FRAME_NEED_MORE;
    size_t total = (size_t)epmd_get16(buf) + 2;
    /* OTP: (want < 3) || (want >= INBUF_SIZE) closes. */
    if (total < 3 || total >= EPMD_INBUF_SIZE)
        return EPMD_EPROTO;
    *want = total;
    if (got > total) /* more than one request: OTP closes without a reply */
        return EPMD_EPROTO;
    if (got < total)
        return EPMD_FRAME_NEED_MORE;
    *body_len = total - 2;
    return EPMD_FRAME_COMPLETE;
}

/* parse_alive2 checks the ALIVE2 layout; the name's content limits that
 * OTP answers with an error reply are left to the registry. */
static int parse_alive2(const uint8_t *body, size_t len, epmd_request_t *req)
{
    /* OTP: "at least one character for the node name" means bsize > 13. */
    if (len <= ALIVE2_MIN_BYTES)
        return EPMD_EPROTO;
    req->port = epmd_get16(body + 1);
    req->node_type = body[3];
    req->protocol = body[4];
    req->high_vsn = epmd_get16(body + 5);
    req->low_vsn = epmd_get16(body + 7);
    size_t nlen = epmd_get16(body + 9);
    if (nlen + ALIVE2_MIN_BYTES > len)
        return EPMD_EPROTO;
    size_t elen = epmd_get16(body + ALIVE2_FIXED_BYTES + nlen);
    if (elen + nlen + ALIVE2_MIN_BYTES > len)
        return EPMD_EPROTO;
    /* OTP registers an empty name; nobody can look it up, so girder closes. */
    if (nlen == 0)
        return EPMD_EPROTO;
    req->name = body + ALIVE2_FIXED_BYTES;
    req->name_len = nlen;
    if (memchr(req->name, 0, nlen) != NULL)
        return EPMD_EPROTO;
    req->extra = body + ALIVE2_MIN_BYTES + nlen;
    req->extra_len = elen;
    return 0;
}

/* parse_port2 takes the rest of a PORT2 request as the node name. */
static int parse_port2(const uint8_t *body, size_t len, epmd_request_t *req)
{
    if (body[len - 1] == 0) /* skip one NUL terminator, as OTP */
        len--;
    if (len <= 1)
        return EPMD_EPROTO;
    req->name = body + 1;
    req->name_len = len - 1;
    if (memchr(req->name, 0, req->name_len) != NULL)
        return EPMD_EPROTO;
    /* OTP counts the terminating NUL as a character here, so a lookup of
     * a 255-character name is closed; girder answers identically. */
    int chars = epmd_utf8_chars(req->name, req->name_len);
    if (chars < 1 || chars + 1 > EPMD_MAX_NAME_CHARS)
        return EPMD_EPROTO;
    return 0;
}

size_t epmd_alive2_frame(const epmd_node_info_t *n, size_t nlen, uint8_t *out)
{
    epmd_put16(out, (uint16_t)(13 + nlen + n->extra_len));
    out[2] = EPMD_ALIVE2_REQ;
    epmd_put16(out + 3, n->port);
    out[5] = n->node_type;
    out[6] = n->protocol;
    epmd_put16(out + 7, n->high_vsn);
    epmd_put16(out + 9, n->low_vsn);
    epmd_put16(out + 11, (uint16_t)nlen);
    memcpy(out + 13, n->name, nlen);
    epmd_put16(out + 13 + nlen, n->extra_len);
    memcpy(out + EPMD_ALIVE2_FRAME_FIXED + nlen, n->extra, n->extra_len);
    return EPMD_ALIVE2_FRAME_FIXED + nlen + n->extra_len;
}

int epmd_parse_request(const uint8_t *body, size_t len, epmd_request_t *req)
{
    memset(req, 0, sizeof *req);
    if (len == 0)
        return EPMD_EPROTO;
    req->op = body[0];
    switch (req->op) {
    case EPMD_ALIVE2_REQ:
        return parse_alive2(body, len, req);
    case EPMD_PORT2_REQ:
        return parse_port2(body, len, req);
    case EPMD_NAMES_REQ:
    case EPMD_DUMP_REQ:
    case EPMD_KILL_REQ:
        return 0;
    case EPMD_STOP_REQ: {
        if (len <= 1)
            return EPMD_EPROTO;
        /* OTP NUL-terminates the body and compares as a C string. */
        const uint8_t *nul = memchr(body + 1, 0, len - 1);
        req->name = body + 1;
        req->name_len = nul ? (size_t)(nul - (body + 1)) : len - 1;
        return 0;
    }
    default:
        return EPMD_EPROTO;
    }
}

/* answer_alive2 registers and writes the answer in the form the client's
 * HighestVersion asks for. */
static int answer_alive2(const epmd_core_ctx_t *ctx, const epmd_request_t *req, epmd_buf_t *out,
                         epmd_outcome_t *res)
{
    epmd_node_t *node = NULL;
    uint32_t creation = 0;
    int rc = epmd_registry_register(ctx->reg, req, ctx->owner, ctx->fd, ctx->now, &node, &creation);
    if (rc == EPMD_ENOMEM)
        return rc;
    bool ok = rc == 0;
    if (!ok)
        creation = EPMD_ALIVE2_ERROR_CREATION;
    uint8_t resp[ALIVE2_X_RESP_BYTES];
    size_t n;
    resp[1] = ok ? 0 : 1;
    if (req->high_vsn >= 6) {
        resp[0] = EPMD_ALIVE2_X_RESP;
        epmd_put32(resp + 2, creation);
        n = ALIVE2_X_RESP_BYTES;
    } else {
        resp[0] = EPMD_ALIVE2_RESP;
        epmd_put16(resp + 2, (uint16_t)creation);
        n = ALIVE2_RESP_BYTES;
    }
    rc = epmd_buf_append(out, resp, n);
    if (rc != 0) {
        if (ok)
            epmd_registry_unregister(ctx->reg, node);
        return rc;
    }
    if (ok) {
        res->action = EPMD_ACT_KEEP;
        res->node = node;
    }
    return 0;
}

static int answer_port_prefix(const epmd_core_ctx_t *ctx, epmd_buf_t *out)
{
    uint8_t p[NAMES_PORT_BYTES];
    epmd_put32(p, ctx->epmd_port);
    return epmd_buf_append(out, p, sizeof p);
}

int epmd_core_handle(const epmd_core_ctx_t *ctx, const uint8_t *body, size_t len, epmd_buf_t *out,
                     epmd_outcome_t *res)
{
    memset(res, 0, sizeof *res);
    res->action = EPMD_ACT_CLOSE;
    if (len == 0)
        return 0;
    /* Local-only requests from others are closed before any parsing. */
    uint8_t op = body[0];
    if (!ctx->local_peer && (op == EPMD_ALIVE2_REQ || op == EPMD_DUMP_REQ || op == EPMD_KILL_REQ ||
                             op == EPMD_STOP_REQ))
        return 0;
    if (op == EPMD_STOP_REQ && !ctx->relaxed) /* silently closed */
        return 0;
    epmd_request_t req;
    if (epmd_parse_request(body, len, &req) != 0)
        return 0;
    int rc;
    switch (req.op) {
    case EPMD_ALIVE2_REQ:
        return answer_alive2(ctx, &req, out, res);
    case EPMD_PORT2_REQ:
        return epmd_registry_write_port2(ctx->reg, req.name, req.name_len, out);
    case EPMD_NAMES_REQ:
        rc = answer_port_prefix(ctx, out);
        return rc ? rc : epmd_registry_write_names(ctx->reg, out);
    case EPMD_DUMP_REQ:
        rc = answer_port_prefix(ctx, out);
        return rc ? rc : epmd_registry_write_dump(ctx->reg, out);
    case EPMD_KILL_REQ:
        if (!ctx->relaxed && epmd_registry_count(ctx->reg) > 0)
            return epmd_buf_append(out, "NO", 2);
        res->action = EPMD_ACT_KILL;
        return epmd_buf_append(out, "OK", 2);
    case EPMD_STOP_REQ: {
        void *owner = NULL;
        if (epmd_registry_unregister_name(ctx->reg, req.name, req.name_len, &owner) != 0) {
            /* OTP 25 answers NOEXIST and then STOPPED as well. */
            rc = epmd_buf_append(out, "NOEXIST", 7);
            if (rc != 0)
                return rc;
        } else {
            res->stop_owner = owner;
        }
        return epmd_buf_append(out, "STOPPED", 7);
    }
    default:
        return 0;
    }
}

/* ---- response parsers ------------------------------------------------------- */

int epmd_parse_alive2_resp(const uint8_t *buf, size_t len, uint8_t *result, uint32_t *creation,
                           size_t *used)
{
    *used = 0;
    if (len < 1)
        return EPMD_EAGAIN;
    size_t need;
    if (buf[0] == EPMD_ALIVE2_X_RESP)
        need = ALIVE2_X_RESP_BYTES;
    else if (buf[0] == EPMD_ALIVE2_RESP)
        need = ALIVE2_RESP_BYTES;
    else
        return EPMD_EPROTO;
    if (len < 2)
        return EPMD_EAGAIN;
    if (buf[1] > 1)
        return EPMD_EPROTO;
    if (len < need)
        return EPMD_EAGAIN;
    *result = buf[1];
    *creation = need == ALIVE2_X_RESP_BYTES ? epmd_get32(buf + 2) : epmd_get16(buf + 2);
    *used = need;
    return 0;
}

int epmd_parse_port2_resp(const uint8_t *buf, size_t len, epmd_node_info_t *info)
{
    memset(info, 0, sizeof *info);
    if (len < 2 || buf[0] != EPMD_PORT2_RESP)
        return EPMD_EPROTO;
    if (buf[1] != 0)
        return len == 2 ? EPMD_ENOTFOUND : EPMD_EPROTO;
    if (len < PORT2_RESP_FIXED_BYTES)
        return EPMD_EPROTO;
    info->port = epmd_get16(buf + 2);
    info->node_type = buf[4];
    info->protocol = buf[5];
    info->high_vsn = epmd_get16(buf + 6);
    info->low_vsn = epmd_get16(buf + 8);
    size_t nlen = epmd_get16(buf + 10);
    size_t off = PORT2_RESP_FIXED_BYTES;
    if (nlen == 0 || nlen > EPMD_MAX_NAME_BYTES || len - off < nlen + 2)
        return EPMD_EPROTO;
    if (memchr(buf + off, 0, nlen) != NULL)
        return EPMD_EPROTO;
    memcpy(info->name, buf + off, nlen);
    info->name[nlen] = '\0';
    off += nlen;
    size_t elen = epmd_get16(buf + off);
    off += 2;
    if (elen > EPMD_MAX_EXTRA_BYTES || len - off != elen)
        return EPMD_EPROTO;
    memcpy(info->extra, buf + off, elen);
    info->extra_len = (uint16_t)elen;
    return 0;
}

/* parse_names_line parses "name <N> at port <P>" (without the newline);
 * the name is everything up to the last " at port ", as in erl_epmd. */
static bool parse_names_line(const uint8_t *s, size_t n, epmd_name_entry_t *e)
{
    static const char prefix[] = "name ";
    static const char mid[] = " at port ";
    const size_t plen = sizeof prefix - 1, mlen = sizeof mid - 1;
    if (n < plen + 1 + mlen + 1 || memcmp(s, prefix, plen) != 0)
        return false;
    size_t at = 0;
    bool found = false;
    for (size_t i = plen + 1; i + mlen < n; i++)
        if (memcmp(s + i, mid, mlen) == 0) {
            at = i;
            found = true;
        }
    if (!found)
        return false;
    size_t nlen = at - plen;
    if (nlen > EPMD_MAX_NAME_BYTES || memchr(s + plen, 0, nlen) != NULL)
        return false;
    uint32_t port = 0;
    size_t digits = 0;
    for (size_t i = at + mlen; i < n; i++, digits++) {
        if (s[i] < '0' || s[i] > '9' || digits >= 5)
            return false;
        port = port * 10 + (uint32_t)(s[i] - '0');
    }
    if (digits == 0 || port > 65535)
        return false;
    memcpy(e->name, s + plen, nlen);
    e->name[nlen] = '\0';
    e->port = port;
    return true;
}

int epmd_parse_names_resp(const uint8_t *buf, size_t len, epmd_names_t *out)
{
    memset(out, 0, sizeof *out);
    if (len < NAMES_PORT_BYTES)
        return EPMD_EPROTO;
    out->epmd_port = epmd_get32(buf);
    size_t lines = 0;
    for (size_t i = NAMES_PORT_BYTES; i < len; i++)
        if (buf[i] == '\n')
            lines++;
    if (lines == 0)
        return 0;
    out->entries = calloc(lines, sizeof *out->entries);
    if (out->entries == NULL)
        return EPMD_ENOMEM;
    size_t start = NAMES_PORT_BYTES;
    for (size_t i = NAMES_PORT_BYTES; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (parse_names_line(buf + start, i - start, &out->entries[out->count]))
            out->count++;
        start = i + 1;
    }
    return 0;
}

void epmd_names_free(epmd_names_t *names)
{
    if (names == NULL)
        return;
    free(names->entries);
    memset(names, 0, sizeof *names);
}

bool epmd_addr_is_local(const struct sockaddr *peer, const struct sockaddr *self)
{
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *p = (const struct sockaddr_in *)peer;
        uint32_t a = ntohl(p->sin_addr.s_addr);
        if ((a & 0xFF000000u) == 0x7F000000u)
            return true;
        if (self != NULL && self->sa_family == AF_INET)
            return p->sin_addr.s_addr == ((const struct sockaddr_in *)self)->sin_addr.s_addr;
        return false;
    }
    if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_LOOPBACK(&p->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&p->sin6_addr) && p->sin6_addr.s6_addr[12] == 127)
            return true;
        if (self != NULL && self->sa_family == AF_INET6)
            return memcmp(&p->sin6_addr, &((const struct sockaddr_in6 *)self)->sin6_addr,
                          sizeof p->sin6_addr) == 0;
        return false;
    }
    return false;
}
