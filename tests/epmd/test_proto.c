/*
 * test_proto.c — epmd/ without sockets: framing, request parsing, the
 * registry (creation rotation, old-name cap, limits, invariants), the
 * protocol core for every request type and error path, the client's
 * response parsers and the local-peer rule.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cunit_main.h"
#include "epmd_test_util.h"
#include "internal.h"

#define T_NOW 1000000u
#define T_PORT 4369

/* ---- helpers -------------------------------------------------------------------- */

typedef struct harness {
    epmd_registry_t *reg;
    epmd_core_ctx_t ctx;
    epmd_buf_t out;
    epmd_outcome_t res;
} harness_t;

static void h_init(harness_t *h, bool relaxed)
{
    memset(h, 0, sizeof *h);
    CU_ASSERT_FATAL(epmd_registry_new(EPMD_MAX_UNREG_COUNT, 100, 42, &h->reg) == 0);
    h->ctx.reg = h->reg;
    h->ctx.epmd_port = T_PORT;
    h->ctx.relaxed = relaxed;
    h->ctx.local_peer = true;
    h->ctx.owner = (void *)(uintptr_t)1;
    h->ctx.fd = 7;
    h->ctx.now = T_NOW;
}

static void h_run(harness_t *h, const uint8_t *body, size_t len)
{
    h->out.len = 0;
    CU_ASSERT_FATAL(epmd_core_handle(&h->ctx, body, len, &h->out, &h->res) == 0);
    CU_ASSERT(epmd_registry_check(h->reg) == 0);
}

static void h_free(harness_t *h)
{
    epmd_buf_free(&h->out);
    epmd_registry_free(h->reg);
}

static bool out_is(const harness_t *h, const void *bytes, size_t n)
{
    return h->out.len == n && (n == 0 || memcmp(h->out.data, bytes, n) == 0);
}

/* register_name registers name with owner id and returns the creation. */
static uint32_t register_name(harness_t *h, const char *name, uintptr_t owner, uint16_t hi)
{
    uint8_t b[2048];
    size_t n = et_alive_body(b, name, strlen(name), 5000, hi, 5, NULL, 0);
    h->ctx.owner = (void *)owner;
    h_run(h, b, n);
    CU_ASSERT_EQUAL(h->res.action, EPMD_ACT_KEEP);
    CU_ASSERT_FATAL(h->out.len >= 4);
    return hi >= 6 ? epmd_get32(h->out.data + 2) : epmd_get16(h->out.data + 2);
}

/* ---- framing ------------------------------------------------------------------- */

static void test_frame(void)
{
    size_t want, body;
    const uint8_t one[] = {0};
    CU_ASSERT_EQUAL(epmd_frame_check(one, 0, &want, &body), EPMD_FRAME_NEED_MORE);
    CU_ASSERT_EQUAL(epmd_frame_check(one, 1, &want, &body), EPMD_FRAME_NEED_MORE);
    const uint8_t zero[] = {0, 0};
    CU_ASSERT_EQUAL(epmd_frame_check(zero, 2, &want, &body), EPMD_EPROTO);
    const uint8_t names[] = {0, 1, 'n'};
    CU_ASSERT_EQUAL(epmd_frame_check(names, 2, &want, &body), EPMD_FRAME_NEED_MORE);
    CU_ASSERT_EQUAL(want, 3);
    CU_ASSERT_EQUAL(epmd_frame_check(names, 3, &want, &body), EPMD_FRAME_COMPLETE);
    CU_ASSERT_EQUAL(body, 1);
    const uint8_t two[] = {0, 1, 'n', 0, 1, 'n'};
    CU_ASSERT_EQUAL(epmd_frame_check(two, 6, &want, &body), EPMD_EPROTO);
    uint8_t big[2];
    epmd_put16(big, EPMD_MAX_REQUEST_BODY);
    CU_ASSERT_EQUAL(epmd_frame_check(big, 2, &want, &body), EPMD_FRAME_NEED_MORE);
    epmd_put16(big, EPMD_MAX_REQUEST_BODY + 1);
    CU_ASSERT_EQUAL(epmd_frame_check(big, 2, &want, &body), EPMD_EPROTO);
    epmd_put16(big, 0xFFFF);
    CU_ASSERT_EQUAL(epmd_frame_check(big, 2, &want, &body), EPMD_EPROTO);
}

/* ---- parsing -------------------------------------------------------------------- */

static void test_parse_alive2(void)
{
    uint8_t b[4096];
    epmd_request_t r;
    const uint8_t ex[] = {'X', 0, 'Y'};
    size_t n = et_alive_body(b, "node", 4, 20000, 6, 5, ex, sizeof ex);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), 0);
    CU_ASSERT_EQUAL(r.op, EPMD_ALIVE2_REQ);
    CU_ASSERT_EQUAL(r.port, 20000);
    CU_ASSERT_EQUAL(r.high_vsn, 6);
    CU_ASSERT_EQUAL(r.low_vsn, 5);
    CU_ASSERT_EQUAL(r.name_len, 4);
    CU_ASSERT(memcmp(r.name, "node", 4) == 0);
    CU_ASSERT_EQUAL(r.extra_len, 3);
    CU_ASSERT(memcmp(r.extra, ex, 3) == 0);
    /* trailing bytes after the extra are ignored, as OTP */
    b[n] = 0xAA;
    CU_ASSERT_EQUAL(epmd_parse_request(b, n + 1, &r), 0);
    /* missing extra length / name length / truncated name or extra */
    CU_ASSERT_EQUAL(epmd_parse_request(b, 13 + 4 - 2, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request(b, 9, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request(b, 13, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n - 1, &r), EPMD_EPROTO);
    /* name with NUL inside and NUL-terminated name */
    n = et_alive_body(b, "foo\0bar", 7, 1, 6, 5, NULL, 0);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), EPMD_EPROTO);
    n = et_alive_body(b, "foo\0", 4, 1, 6, 5, NULL, 0);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), EPMD_EPROTO);
    /* empty name (closed by girder; OTP would register "") */
    n = et_alive_body(b, "", 0, 1, 6, 5, ex, 1);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), EPMD_EPROTO);
    /* extra length claimed beyond the packet */
    n = et_alive_body(b, "a", 1, 1, 6, 5, NULL, 0);
    epmd_put16(b + 12, 1000);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), EPMD_EPROTO);
    /* name length claimed beyond the packet */
    n = et_alive_body(b, "abc", 3, 1, 6, 5, NULL, 0);
    epmd_put16(b + 9, 0xFFFF);
    CU_ASSERT_EQUAL(epmd_parse_request(b, n, &r), EPMD_EPROTO);
}

static void test_parse_port2_and_others(void)
{
    epmd_request_t r;
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"zfoo", 4, &r), 0);
    CU_ASSERT_EQUAL(r.name_len, 3);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"zfoo\0", 5, &r), 0);
    CU_ASSERT_EQUAL(r.name_len, 3);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"z", 1, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"z\0", 2, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"zf\0o", 4, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"z\xff\xfe", 3, &r), EPMD_EPROTO);
    uint8_t b[600];
    b[0] = 'z';
    memset(b + 1, 'a', 254);
    CU_ASSERT_EQUAL(epmd_parse_request(b, 255, &r), 0);
    memset(b + 1, 'a', 255);
    CU_ASSERT_EQUAL(epmd_parse_request(b, 256, &r), EPMD_EPROTO); /* as OTP */
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"n", 1, &r), 0);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"d", 1, &r), 0);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"k", 1, &r), 0);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"sfoo", 4, &r), 0);
    CU_ASSERT_EQUAL(r.name_len, 3);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"sfo\0o", 5, &r), 0);
    CU_ASSERT_EQUAL(r.name_len, 2);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"s", 1, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"Q", 1, &r), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_request((const uint8_t *)"", 0, &r), EPMD_EPROTO);
}

static void test_utf8(void)
{
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"abc", 3), 3);
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xc3\xb1", 2), 1);
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xe2\x82\xac", 3), 1);
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xf0\x9f\x98\x80", 4), 1);
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xc0\x80", 2), -1);     /* overlong */
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xe0\x80\x80", 3), -1); /* overlong */
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xed\xa0\x80", 3), -1); /* surrogate */
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xf4\x90\x80\x80", 4), -1);
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\xc3", 1), -1); /* truncated */
    CU_ASSERT_EQUAL(epmd_utf8_chars((const uint8_t *)"\x80", 1), -1);
}

/* ---- core: every request ------------------------------------------------------------- */

static void test_core_alive2_forms(void)
{
    harness_t h;
    h_init(&h, false);
    uint8_t b[4096];
    size_t n = et_alive_body(b, "b", 1, 20000, 6, 5, NULL, 0);
    h_run(&h, b, n);
    const uint8_t ok_x[] = {EPMD_ALIVE2_X_RESP, 0, 0, 0x0F, 0x42, 0x41}; /* T_NOW + 1 */
    CU_ASSERT(out_is(&h, ok_x, sizeof ok_x));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KEEP);
    CU_ASSERT_PTR_NOT_NULL(h.res.node);
    /* duplicate: error with creation 99, connection closed */
    h.ctx.owner = (void *)2;
    h_run(&h, b, n);
    const uint8_t dup_x[] = {EPMD_ALIVE2_X_RESP, 1, 0, 0, 0, 99};
    CU_ASSERT(out_is(&h, dup_x, sizeof dup_x));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_CLOSE);
    /* old 16-bit form for HighestVersion 5 */
    n = et_alive_body(b, "old", 3, 20001, 5, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT_EQUAL(h.out.len, 4);
    CU_ASSERT_EQUAL(h.out.data[0], EPMD_ALIVE2_RESP);
    CU_ASSERT_EQUAL(h.out.data[1], 0);
    uint16_t cr = epmd_get16(h.out.data + 2);
    CU_ASSERT(cr >= 1 && cr <= 3);
    /* 600-byte name: error in the form the version asks for (y 01 0063) */
    char longname[600];
    memset(longname, 'a', sizeof longname);
    n = et_alive_body(b, longname, sizeof longname, 1, 5, 5, NULL, 0);
    h_run(&h, b, n);
    const uint8_t err_y[] = {EPMD_ALIVE2_RESP, 1, 0, 99};
    CU_ASSERT(out_is(&h, err_y, sizeof err_y));
    /* 1021-byte name, invalid UTF-8, too long extra: errors */
    char huge[1021];
    memset(huge, 'a', sizeof huge);
    n = et_alive_body(b, huge, sizeof huge, 1, 6, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT(out_is(&h, dup_x, sizeof dup_x));
    n = et_alive_body(b, "\xff\xfe", 2, 1, 6, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT(out_is(&h, dup_x, sizeof dup_x));
    uint8_t extra[1021];
    memset(extra, 0xFF, sizeof extra);
    n = et_alive_body(b, "ex", 2, 1, 6, 5, extra, 1020);
    h_run(&h, b, n);
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KEEP);
    n = et_alive_body(b, "ex2", 3, 1, 6, 5, extra, 1021);
    h_run(&h, b, n);
    CU_ASSERT(out_is(&h, dup_x, sizeof dup_x));
    /* 255 four-byte characters (1020 bytes) are fine; 256 characters are not */
    char uni[1024];
    for (int i = 0; i < 255; i++)
        memcpy(uni + 4 * i, "\xf0\x9f\x98\x80", 4);
    n = et_alive_body(b, uni, 1020, 1, 6, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KEEP);
    memset(longname, 'q', 256);
    n = et_alive_body(b, longname, 256, 1, 6, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT(out_is(&h, dup_x, sizeof dup_x));
    /* node type / protocol / versions are not checked, as OTP (erl_interface
     * registers with other type bytes) */
    n = et_alive_body(b, "odd", 3, 1, 3, 9, NULL, 0);
    b[3] = 104;
    b[4] = 7;
    h_run(&h, b, n);
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KEEP);
    /* malformed ALIVE2: closed without reply */
    h_run(&h, b, 12);
    CU_ASSERT(out_is(&h, "", 0));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_CLOSE);
    /* non-local peers cannot register */
    h.ctx.local_peer = false;
    n = et_alive_body(b, "remote", 6, 1, 6, 5, NULL, 0);
    h_run(&h, b, n);
    CU_ASSERT(out_is(&h, "", 0));
    CU_ASSERT_PTR_NULL(epmd_registry_lookup(h.reg, (const uint8_t *)"remote", 6));
    h_free(&h);
}

static void test_core_creation_rotation(void)
{
    harness_t h;
    h_init(&h, false);
    uint32_t c1 = register_name(&h, "foo", 10, 6);
    CU_ASSERT_EQUAL(c1, T_NOW + 1);
    h.ctx.now = T_NOW + 5;
    uint32_t c2 = register_name(&h, "baz", 11, 6);
    CU_ASSERT_EQUAL(c2, T_NOW + 6);
    /* unregister foo (its connection closed) and register again: +1 */
    const epmd_node_t *n = epmd_registry_lookup(h.reg, (const uint8_t *)"foo", 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    epmd_registry_unregister(h.reg, (epmd_node_t *)n);
    CU_ASSERT_EQUAL(epmd_registry_unused_count(h.reg), 1);
    uint32_t c3 = register_name(&h, "foo", 12, 6);
    CU_ASSERT_EQUAL(c3, c1 + 1);
    CU_ASSERT_EQUAL(epmd_registry_unused_count(h.reg), 0);
    /* the 16-bit form rotates 1..3 */
    uint32_t seen[4];
    for (int i = 0; i < 4; i++) {
        seen[i] = register_name(&h, "five", 20 + (uintptr_t)i, 5);
        CU_ASSERT(seen[i] >= 1 && seen[i] <= 3);
        n = epmd_registry_lookup(h.reg, (const uint8_t *)"five", 4);
        epmd_registry_unregister(h.reg, (epmd_node_t *)n);
    }
    CU_ASSERT_NOT_EQUAL(seen[0], seen[1]);
    CU_ASSERT_NOT_EQUAL(seen[1], seen[2]);
    CU_ASSERT_EQUAL(seen[0], seen[3]);
    /* a counter near the top wraps to 4, never 0..3 */
    h.ctx.now = UINT32_MAX;
    CU_ASSERT_EQUAL(register_name(&h, "wrap", 30, 6), 4);
    CU_ASSERT(epmd_registry_check(h.reg) == 0);
    h_free(&h);
}

static void test_registry_limits(void)
{
    epmd_registry_t *r = NULL;
    CU_ASSERT_FATAL(epmd_registry_new(5, 3, 1, &r) == 0);
    uint8_t b[64];
    epmd_node_t *nodes[3];
    uint32_t cr;
    char name[24];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "n%d", i);
        size_t n = et_alive_body(b, name, strlen(name), 1, 6, 5, NULL, 0);
        epmd_request_t req;
        CU_ASSERT_FATAL(epmd_parse_request(b, n, &req) == 0);
        CU_ASSERT_EQUAL(epmd_registry_register(r, &req, NULL, 0, 1, &nodes[i], &cr), 0);
    }
    /* full: the fourth is refused */
    size_t n = et_alive_body(b, "n3", 2, 1, 6, 5, NULL, 0);
    epmd_request_t req;
    epmd_node_t *node;
    CU_ASSERT_FATAL(epmd_parse_request(b, n, &req) == 0);
    CU_ASSERT_EQUAL(epmd_registry_register(r, &req, NULL, 0, 1, &node, &cr), EPMD_EREFUSED);
    /* old-name memory is capped (max_unreg + 1, as OTP) */
    for (int round = 0; round < 20; round++) {
        epmd_registry_unregister(r, nodes[0]);
        snprintf(name, sizeof name, "cycle%d", round);
        n = et_alive_body(b, name, strlen(name), 1, 6, 5, NULL, 0);
        CU_ASSERT_FATAL(epmd_parse_request(b, n, &req) == 0);
        CU_ASSERT_EQUAL(epmd_registry_register(r, &req, NULL, 0, 1, &nodes[0], &cr), 0);
        CU_ASSERT(epmd_registry_unused_count(r) <= 6);
        CU_ASSERT(epmd_registry_check(r) == 0);
    }
    CU_ASSERT_EQUAL(epmd_registry_count(r), 3);
    /* unregistering twice is harmless */
    epmd_registry_unregister(r, nodes[1]);
    epmd_registry_unregister(r, nodes[1]);
    CU_ASSERT_EQUAL(epmd_registry_count(r), 2);
    CU_ASSERT(epmd_registry_check(r) == 0);
    epmd_registry_free(r);
}

/* Many live nodes going away at once (no registration in between) keep the
 * old-name list within max_unreg + 1 (fuzzer regression: it grew to the
 * number of live nodes). */
static void test_registry_mass_unregister(void)
{
    epmd_registry_t *r = NULL;
    CU_ASSERT_FATAL(epmd_registry_new(2, 16, 3, &r) == 0);
    epmd_node_t *nodes[16];
    uint8_t b[64];
    char name[24];
    uint32_t cr;
    for (int i = 0; i < 16; i++) {
        snprintf(name, sizeof name, "m%d", i);
        size_t n = et_alive_body(b, name, strlen(name), 1, 6, 5, NULL, 0);
        epmd_request_t req;
        CU_ASSERT_FATAL(epmd_parse_request(b, n, &req) == 0);
        CU_ASSERT_FATAL(epmd_registry_register(r, &req, NULL, 0, 1, &nodes[i], &cr) == 0);
    }
    for (int i = 0; i < 16; i++) {
        epmd_registry_unregister(r, nodes[i]);
        CU_ASSERT(epmd_registry_unused_count(r) <= 3);
        CU_ASSERT(epmd_registry_check(r) == 0);
    }
    CU_ASSERT_EQUAL(epmd_registry_count(r), 0);
    CU_ASSERT_EQUAL(epmd_registry_unused_count(r), 3);
    epmd_registry_free(r);
}

static void test_registry_many(void)
{
    epmd_registry_t *r = NULL;
    CU_ASSERT_FATAL(epmd_registry_new(EPMD_MAX_UNREG_COUNT, 20000, 7, &r) == 0);
    uint8_t b[64];
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof name, "node%d", i);
        size_t n = et_alive_body(b, name, strlen(name), (uint16_t)i, 6, 5, NULL, 0);
        epmd_request_t req;
        epmd_node_t *node;
        uint32_t cr;
        CU_ASSERT_FATAL(epmd_parse_request(b, n, &req) == 0);
        CU_ASSERT_FATAL(epmd_registry_register(r, &req, NULL, 0, 1, &node, &cr) == 0);
    }
    CU_ASSERT_EQUAL(epmd_registry_count(r), 10000);
    CU_ASSERT(epmd_registry_check(r) == 0);
    epmd_node_info_t info;
    const epmd_node_t *n = epmd_registry_lookup(r, (const uint8_t *)"node4242", 8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    epmd_node_info(n, &info);
    CU_ASSERT_EQUAL(info.port, 4242);
    CU_ASSERT_STRING_EQUAL(info.name, "node4242");
    CU_ASSERT_PTR_NULL(epmd_registry_lookup(r, (const uint8_t *)"node10000", 9));
    epmd_registry_free(r);
}

static void test_core_port2(void)
{
    harness_t h;
    h_init(&h, false);
    uint8_t b[128];
    const uint8_t ex[] = {'X', 0, 'Z'};
    size_t n = et_alive_body(b, "baz", 3, 30003, 6, 5, ex, sizeof ex);
    b[3] = EPMD_NODE_HIDDEN;
    h_run(&h, b, n);
    h_run(&h, (const uint8_t *)"zbaz", 4);
    const uint8_t found[] = {119, 0, 0x75, 0x33, 72,  0, 0, 6,   0, 5,
                             0,   3, 'b',  'a',  'z', 0, 3, 'X', 0, 'Z'};
    CU_ASSERT(out_is(&h, found, sizeof found));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_CLOSE);
    h_run(&h, (const uint8_t *)"zbaz\0", 5);
    CU_ASSERT(out_is(&h, found, sizeof found));
    h_run(&h, (const uint8_t *)"zzz", 3);
    const uint8_t notfound[] = {119, 1};
    CU_ASSERT(out_is(&h, notfound, sizeof notfound));
    h_run(&h, (const uint8_t *)"z", 1);
    CU_ASSERT(out_is(&h, "", 0));
    /* lookups are allowed from anywhere */
    h.ctx.local_peer = false;
    h_run(&h, (const uint8_t *)"zbaz", 4);
    CU_ASSERT(out_is(&h, found, sizeof found));
    h_free(&h);
}

static void test_core_names_dump(void)
{
    harness_t h;
    h_init(&h, false);
    h_run(&h, (const uint8_t *)"n", 1);
    const uint8_t empty[] = {0, 0, 0x11, 0x11};
    CU_ASSERT(out_is(&h, empty, sizeof empty));
    register_name(&h, "a", 1, 6);
    register_name(&h, "b", 2, 6);
    h.ctx.owner = (void *)3;
    h_run(&h, (const uint8_t *)"n", 1);
    const char names[] = "\0\0\x11\x11name b at port 5000\nname a at port 5000\n";
    CU_ASSERT(out_is(&h, names, sizeof names - 1));
    /* NAMES from a non-local peer is answered; DUMP is not */
    h.ctx.local_peer = false;
    h_run(&h, (const uint8_t *)"n", 1);
    CU_ASSERT(out_is(&h, names, sizeof names - 1));
    h_run(&h, (const uint8_t *)"d", 1);
    CU_ASSERT(out_is(&h, "", 0));
    h.ctx.local_peer = true;
    const epmd_node_t *a = epmd_registry_lookup(h.reg, (const uint8_t *)"a", 1);
    epmd_registry_unregister(h.reg, (epmd_node_t *)a);
    h_run(&h, (const uint8_t *)"d", 1);
    const char dump[] = "\0\0\x11\x11"
                        "active name     <b> at port 5000, fd = 7\n\0"
                        "old/unused name <a>, port = 5000, fd = 7 \n\0";
    CU_ASSERT(out_is(&h, dump, sizeof dump - 1));
    h_free(&h);
}

static void test_core_kill_stop(void)
{
    harness_t h;
    h_init(&h, false);
    h_run(&h, (const uint8_t *)"k", 1);
    CU_ASSERT(out_is(&h, "OK", 2));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KILL);
    register_name(&h, "live", 5, 6);
    h_run(&h, (const uint8_t *)"k", 1);
    CU_ASSERT(out_is(&h, "NO", 2));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_CLOSE);
    /* STOP without relaxed: closed silently, name stays */
    h_run(&h, (const uint8_t *)"slive", 5);
    CU_ASSERT(out_is(&h, "", 0));
    CU_ASSERT_PTR_NOT_NULL(epmd_registry_lookup(h.reg, (const uint8_t *)"live", 4));
    /* non-local KILL: closed */
    h.ctx.local_peer = false;
    h_run(&h, (const uint8_t *)"k", 1);
    CU_ASSERT(out_is(&h, "", 0));
    h_free(&h);

    h_init(&h, true);
    register_name(&h, "live", 5, 6);
    h.ctx.owner = (void *)9;
    h_run(&h, (const uint8_t *)"slive", 5);
    CU_ASSERT(out_is(&h, "STOPPED", 7));
    CU_ASSERT_PTR_EQUAL(h.res.stop_owner, (void *)5);
    CU_ASSERT_PTR_NULL(epmd_registry_lookup(h.reg, (const uint8_t *)"live", 4));
    h_run(&h, (const uint8_t *)"slive", 5);
    CU_ASSERT(out_is(&h, "NOEXISTSTOPPED", 14));
    CU_ASSERT_PTR_NULL(h.res.stop_owner);
    h_run(&h, (const uint8_t *)"s", 1);
    CU_ASSERT(out_is(&h, "", 0));
    register_name(&h, "x", 6, 6);
    h.ctx.owner = (void *)9;
    h_run(&h, (const uint8_t *)"k", 1); /* relaxed: OK with live nodes */
    CU_ASSERT(out_is(&h, "OK", 2));
    CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_KILL);
    h.ctx.local_peer = false;
    h_run(&h, (const uint8_t *)"sx", 2);
    CU_ASSERT(out_is(&h, "", 0));
    h_free(&h);
}

static void test_core_garbage(void)
{
    harness_t h;
    h_init(&h, true);
    const char *junk[] = {"Q", "\x00", "a", "p", "\xff"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        h_run(&h, (const uint8_t *)junk[i], 1);
        CU_ASSERT(out_is(&h, "", 0));
        CU_ASSERT_EQUAL(h.res.action, EPMD_ACT_CLOSE);
    }
    h_run(&h, (const uint8_t *)"", 0);
    CU_ASSERT(out_is(&h, "", 0));
    h_free(&h);
}

/* ---- response parsers -------------------------------------------------------------------- */

static void test_parse_responses(void)
{
    uint8_t res;
    uint32_t cr;
    size_t used;
    const uint8_t x[] = {118, 0, 0x6b, 0x06, 0x2f, 0xe0};
    CU_ASSERT_EQUAL(epmd_parse_alive2_resp(x, sizeof x, &res, &cr, &used), 0);
    CU_ASSERT_EQUAL(cr, 0x6b062fe0);
    CU_ASSERT_EQUAL(res, 0);
    CU_ASSERT_EQUAL(used, 6);
    for (size_t i = 0; i < sizeof x; i++)
        CU_ASSERT_EQUAL(epmd_parse_alive2_resp(x, i, &res, &cr, &used), EPMD_EAGAIN);
    const uint8_t y[] = {121, 1, 0, 99};
    CU_ASSERT_EQUAL(epmd_parse_alive2_resp(y, sizeof y, &res, &cr, &used), 0);
    CU_ASSERT_EQUAL(res, 1);
    CU_ASSERT_EQUAL(cr, 99);
    const uint8_t bad[] = {119, 0, 0, 0};
    CU_ASSERT_EQUAL(epmd_parse_alive2_resp(bad, sizeof bad, &res, &cr, &used), EPMD_EPROTO);
    const uint8_t badres[] = {118, 7, 0, 0, 0, 0};
    CU_ASSERT_EQUAL(epmd_parse_alive2_resp(badres, 6, &res, &cr, &used), EPMD_EPROTO);

    epmd_node_info_t info;
    const uint8_t p2[] = {0x77, 0x00, 0x75, 0x33, 0x48, 0x00, 0x00, 0x06, 0x00, 0x05,
                          0x00, 0x03, 0x62, 0x61, 0x7a, 0x00, 0x03, 0x58, 0x59, 0x5a};
    CU_ASSERT_EQUAL(epmd_parse_port2_resp(p2, sizeof p2, &info), 0);
    CU_ASSERT_EQUAL(info.port, 30003);
    CU_ASSERT_EQUAL(info.node_type, 72);
    CU_ASSERT_STRING_EQUAL(info.name, "baz");
    CU_ASSERT_EQUAL(info.extra_len, 3);
    CU_ASSERT(memcmp(info.extra, "XYZ", 3) == 0);
    for (size_t i = 0; i < sizeof p2; i++)
        CU_ASSERT_EQUAL(epmd_parse_port2_resp(p2, i, &info), EPMD_EPROTO);
    uint8_t longer[sizeof p2 + 1];
    memcpy(longer, p2, sizeof p2);
    longer[sizeof p2] = 0;
    CU_ASSERT_EQUAL(epmd_parse_port2_resp(longer, sizeof longer, &info), EPMD_EPROTO);
    const uint8_t nf[] = {0x77, 0x01};
    CU_ASSERT_EQUAL(epmd_parse_port2_resp(nf, 2, &info), EPMD_ENOTFOUND);

    epmd_names_t names;
    const char txt[] = "\0\0\x11\x11name b at port 20000\nname a b at port 1\ngarbage\n"
                       "name c at port 99999\nname d at port 7";
    CU_ASSERT_EQUAL(epmd_parse_names_resp((const uint8_t *)txt, sizeof txt - 1, &names), 0);
    CU_ASSERT_EQUAL(names.epmd_port, 0x1111);
    CU_ASSERT_EQUAL_FATAL(names.count, 2);
    CU_ASSERT_STRING_EQUAL(names.entries[0].name, "b");
    CU_ASSERT_EQUAL(names.entries[0].port, 20000);
    CU_ASSERT_STRING_EQUAL(names.entries[1].name, "a b");
    epmd_names_free(&names);
    CU_ASSERT_EQUAL(epmd_parse_names_resp((const uint8_t *)txt, 3, &names), EPMD_EPROTO);
    CU_ASSERT_EQUAL(epmd_parse_names_resp((const uint8_t *)txt, 4, &names), 0);
    CU_ASSERT_EQUAL(names.count, 0);
    epmd_names_free(&names);
    CU_ASSERT_STRING_EQUAL(epmd_strerror(EPMD_ENOTFOUND), "name not registered");
}

static void test_addr_local(void)
{
    struct sockaddr_in p4 = {.sin_family = AF_INET}, s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.3.4.5", &p4.sin_addr);
    inet_pton(AF_INET, "192.0.2.2", &s4.sin_addr);
    CU_ASSERT(epmd_addr_is_local((struct sockaddr *)&p4, (struct sockaddr *)&s4));
    inet_pton(AF_INET, "192.0.2.9", &p4.sin_addr);
    CU_ASSERT_FALSE(epmd_addr_is_local((struct sockaddr *)&p4, (struct sockaddr *)&s4));
    inet_pton(AF_INET, "192.0.2.2", &p4.sin_addr);
    CU_ASSERT(epmd_addr_is_local((struct sockaddr *)&p4, (struct sockaddr *)&s4));
    struct sockaddr_in6 p6 = {.sin6_family = AF_INET6}, s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &p6.sin6_addr);
    inet_pton(AF_INET6, "fd00::2", &s6.sin6_addr);
    CU_ASSERT(epmd_addr_is_local((struct sockaddr *)&p6, (struct sockaddr *)&s6));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &p6.sin6_addr);
    CU_ASSERT(epmd_addr_is_local((struct sockaddr *)&p6, (struct sockaddr *)&s6));
    inet_pton(AF_INET6, "fd00::3", &p6.sin6_addr);
    CU_ASSERT_FALSE(epmd_addr_is_local((struct sockaddr *)&p6, (struct sockaddr *)&s6));
    inet_pton(AF_INET6, "fd00::2", &p6.sin6_addr);
    CU_ASSERT(epmd_addr_is_local((struct sockaddr *)&p6, (struct sockaddr *)&s6));
    struct sockaddr other = {.sa_family = AF_UNIX};
    CU_ASSERT_FALSE(epmd_addr_is_local(&other, NULL));
}

/* A buffer over caller storage writes there until it is outgrown, then
 * moves to the heap with its bytes; free never touches the storage. */
static void test_buf_borrowed(void)
{
    uint8_t storage[8];
    memset(storage, 0xAA, sizeof storage);
    epmd_buf_t b;
    epmd_buf_init_borrowed(&b, storage, 4);
    CU_ASSERT_EQUAL(epmd_buf_append(&b, "abc", 3), 0);
    CU_ASSERT_PTR_EQUAL(b.data, storage);
    CU_ASSERT_EQUAL(memcmp(storage, "abc", 3), 0);
    CU_ASSERT_EQUAL(epmd_buf_append(&b, "d", 1), 0); /* exactly full: still borrowed */
    CU_ASSERT_PTR_EQUAL(b.data, storage);
    CU_ASSERT(b.borrowed);
    CU_ASSERT_EQUAL(epmd_buf_append(&b, "efghijklmnop", 12), 0);
    CU_ASSERT_PTR_NOT_EQUAL(b.data, storage);
    CU_ASSERT_FALSE(b.borrowed);
    CU_ASSERT_EQUAL(b.len, 16);
    CU_ASSERT(b.cap >= 16);
    CU_ASSERT_EQUAL(memcmp(b.data, "abcdefghijklmnop", 16), 0);
    CU_ASSERT_EQUAL(storage[4], 0xAA); /* nothing written past the storage's cap */
    epmd_buf_free(&b);
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);

    /* freeing a buffer that never left its storage frees nothing */
    epmd_buf_init_borrowed(&b, storage, sizeof storage);
    CU_ASSERT_EQUAL(epmd_buf_append(&b, "xy", 2), 0);
    epmd_buf_free(&b);
    CU_ASSERT_FALSE(b.borrowed);
    CU_ASSERT_EQUAL(memcmp(storage, "xy", 2), 0);
    /* and a zeroed buffer grows on the heap as before */
    CU_ASSERT_EQUAL(epmd_buf_append(&b, "z", 1), 0);
    CU_ASSERT_PTR_NOT_EQUAL(b.data, storage);
    epmd_buf_free(&b);
}

static const gd_test_case_t gd_tests[] = {
    {"frame", test_frame},
    {"buf_borrowed", test_buf_borrowed},
    {"parse_alive2", test_parse_alive2},
    {"parse_port2_and_others", test_parse_port2_and_others},
    {"utf8", test_utf8},
    {"core_alive2_forms", test_core_alive2_forms},
    {"core_creation_rotation", test_core_creation_rotation},
    {"registry_limits", test_registry_limits},
    {"registry_mass_unregister", test_registry_mass_unregister},
    {"registry_many", test_registry_many},
    {"core_port2", test_core_port2},
    {"core_names_dump", test_core_names_dump},
    {"core_kill_stop", test_core_kill_stop},
    {"core_garbage", test_core_garbage},
    {"parse_responses", test_parse_responses},
    {"addr_local", test_addr_local},
    {NULL, NULL},
};

GD_TEST_MAIN("epmd_proto", gd_tests)
