/*
 * test_node_codec.c — the codec with a node identity other than the
 * default (set first: it is process-global and frozen at first use): local
 * pids, ports and refs are written with this node's name and creation and
 * come back local, so a reply ref made here and echoed by a peer matches
 * with =:=; this node's identifiers with numbers outside the local ranges
 * are refused, as OTP's binary_to_term does; the printer and parser use
 * OTP's local forms.
 */
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "etf.h"
#include "termgen_util.h"

#define OK(call) CU_ASSERT_EQUAL_FATAL((call), GD_OK)
#define CREATION 0x01020304u

static heap_t heap;

static void test_set_identity(void)
{
    OK(heap_node_identity_set(heap_atom("n@h"), CREATION));
    CU_ASSERT_EQUAL(heap_node_creation(), CREATION);
    OK(heap_init(&heap, 0));
}

static void encode_expect(term_t t, const uint8_t *want, size_t n)
{
    etf_buf_t b = {0};
    OK(etf_encode(t, NULL, &b));
    CU_ASSERT_EQUAL(b.len, n);
    CU_ASSERT(b.len == n && memcmp(b.data, want, n) == 0);
    etf_buf_free(&b);
}

static term_t decode(const uint8_t *bytes, size_t n, int *rc)
{
    etf_decode_opts_t opts = {.no_trailing = true};
    term_t t = TERM_NONE;
    size_t used;
    etf_error_t err;
    *rc = etf_decode(&heap, bytes, n, &opts, &t, &used, &err);
    return t;
}

/* The node atom 'n@h' as SMALL_ATOM_UTF8_EXT (OTP 25 writes ATOM_EXT for
 * Latin-1 atoms: 100, 0, 3). */
#define NODE 100, 0, 3, 'n', '@', 'h'
#define CRE 1, 2, 3, 4

static void test_local_forms_round_trip(void)
{
    int rc;
    /* A reply ref made here, encoded, and echoed back by a peer. */
    uint32_t w[3] = {0x3FFFF, 0xDEADBEEF, 7};
    term_t ref;
    OK(heap_make_local_ref(&heap, w, &ref));
    static const uint8_t ref_bytes[] = {131, 90,   0,    3,    NODE, CRE, 0, 3, 255,
                                        255, 0xDE, 0xAD, 0xBE, 0xEF, 0,   0, 0, 7};
    encode_expect(ref, ref_bytes, sizeof ref_bytes);
    term_t echo = decode(ref_bytes, sizeof ref_bytes, &rc);
    OK(rc);
    CU_ASSERT(term_is_local_ref(echo));
    CU_ASSERT(tg_equal_exact(echo, ref));

    term_t pid = term_make_local_pid(5, 6);
    static const uint8_t pid_bytes[] = {131, 88, NODE, 0, 0, 0, 5, 0, 0, 0, 6, CRE};
    encode_expect(pid, pid_bytes, sizeof pid_bytes);
    CU_ASSERT_EQUAL(decode(pid_bytes, sizeof pid_bytes, &rc), pid);
    OK(rc);

    term_t port = term_make_local_port(0x0FFFFFFF);
    static const uint8_t port_bytes[] = {131, 89, NODE, 0x0F, 0xFF, 0xFF, 0xFF, CRE};
    encode_expect(port, port_bytes, sizeof port_bytes);
    CU_ASSERT_EQUAL(decode(port_bytes, sizeof port_bytes, &rc), port);
    OK(rc);
    /* V4_PORT_EXT naming this node decodes to the local port too. */
    static const uint8_t v4[] = {131, 120, NODE, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 0xFF, CRE};
    CU_ASSERT_EQUAL(decode(v4, sizeof v4, &rc), port);
    OK(rc);

    /* A 2-word ref of this node is widened to 3 words (third 0). */
    static const uint8_t ref2[] = {131, 90, 0, 2, NODE, CRE, 0, 1, 233, 116, 255, 255, 255, 255};
    static const uint8_t ref3[] = {131, 90,  0,   3,   NODE, CRE, 0, 1, 233,
                                   116, 255, 255, 255, 255,  0,   0, 0, 0};
    term_t r = decode(ref2, sizeof ref2, &rc);
    OK(rc);
    CU_ASSERT(term_is_local_ref(r));
    encode_expect(r, ref3, sizeof ref3);
}

static void test_out_of_range_refused(void)
{
    int rc;
    static const uint8_t pid[] = {131, 88, NODE, 255, 255, 255, 255, 0, 0, 0x80, 0, CRE};
    decode(pid, sizeof pid, &rc);
    CU_ASSERT_EQUAL(rc, ETF_ETYPE);
    static const uint8_t port[] = {131, 120, NODE, 0, 0, 0, 0, 0x10, 0, 0, 0, CRE};
    decode(port, sizeof port, &rc);
    CU_ASSERT_EQUAL(rc, ETF_ETYPE);
    static const uint8_t ref[] = {131, 90, 0, 3, NODE, CRE, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    decode(ref, sizeof ref, &rc);
    CU_ASSERT_EQUAL(rc, ETF_ETYPE);
    static const uint8_t ref4[] = {131, 90, 0, 4, NODE, CRE, 0, 0, 0, 1, 0, 0,
                                   0,   0,  0, 0, 0,    0,   0, 0, 0, 0, 0, 0};
    decode(ref4, sizeof ref4, &rc);
    CU_ASSERT_EQUAL(rc, ETF_ETYPE);
    /* The same numbers under creation 0 ('n@h' of another incarnation). */
    static const uint8_t other[] = {131, 88, NODE, 255, 255, 255, 255, 0, 0, 0x80, 0, 0, 0, 0, 0};
    term_t t = decode(other, sizeof other, &rc);
    OK(rc);
    CU_ASSERT(term_is_ext_pid(t));
}

static void test_text_forms(void)
{
    etf_buf_t b = {0};
    uint32_t w[3] = {1, 2, 3};
    term_t ref, t;
    OK(heap_make_local_ref(&heap, w, &ref));
    OK(etf_print(ref, &b));
    CU_ASSERT(b.len == 13 && memcmp(b.data, "#Ref<0.3.2.1>", 13) == 0);
    b.len = 0;
    OK(etf_print(term_make_local_pid(5, 6), &b));
    CU_ASSERT(b.len == 7 && memcmp(b.data, "<0.5.6>", 7) == 0);
    etf_buf_free(&b);
    etf_error_t err;
    OK(etf_parse(&heap, "#Ref<0.3.2.1>", 13, &t, &err));
    CU_ASSERT(tg_equal_exact(t, ref));
    OK(etf_parse(&heap, "<0.5.6>", 7, &t, &err));
    CU_ASSERT_EQUAL(t, term_make_local_pid(5, 6));
    CU_ASSERT(etf_parse(&heap, "<0.32768.0>", 11, &t, &err) != GD_OK);
    heap_destroy(&heap);
}

static const gd_test_case_t cases[] = {
    {"set the identity", test_set_identity}, /* must run first */
    {"local forms round-trip with this node's name", test_local_forms_round_trip},
    {"this node's out-of-range numbers are refused", test_out_of_range_refused},
    {"printed and parsed as OTP's local forms", test_text_forms},
    {NULL, NULL},
};

GD_TEST_MAIN("etf_node_codec", cases)
