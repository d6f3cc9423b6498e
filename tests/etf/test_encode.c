/*
 * test_encode.c — etf_encode / etf_encode_body / etf_encoded_size: the
 * exact bytes term_to_binary produces on OTP 25 (captured from a live node;
 * tests/interop/etf_interop.sh checks them against OTP) and on OTP 26+ (UTF-8 atoms), the
 * compression rule, deterministic maps, size/write agreement, and random
 * round trips through the decoder.
 */
#include <math.h>
#include <stdlib.h>

#include "codec_util.h"

static term_t flt(double d)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_float(&cu_heap, d, &t) == GD_OK);
    return t;
}
static term_t bits(const uint8_t *p, size_t nbits)
{
    uint8_t *data;
    term_t t;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&cu_heap, nbits, &data, &t) == GD_OK);
    memcpy(data, p, (nbits + 7) / 8);
    return t;
}
static term_t map(size_t n, const term_t *k, const term_t *v)
{
    term_t m;
    CU_ASSERT_FATAL(heap_make_map(&cu_heap, k, v, n, &m) == GD_OK);
    return m;
}
/* Decodes bytes (for terms easier to give as ETF than to build by hand). */
static term_t dec(const uint8_t *b, size_t n)
{
    term_t t = TERM_NONE;
    CU_ASSERT_FATAL(etf_decode(&cu_heap, b, n, NULL, &t, NULL, NULL) == GD_OK);
    return t;
}

#define ENC(t, ...) CU_ASSERT(cu_encodes_to((t), NULL, BYTES(__VA_ARGS__)))
#define ENC_O(t, o, ...) CU_ASSERT(cu_encodes_to((t), (o), BYTES(__VA_ARGS__)))

static etf_encode_opts_t opts_release(int release)
{
    etf_encode_opts_t o;
    etf_encode_opts_init(&o);
    o.otp_release = release;
    return o;
}

static void test_integers(void)
{
    cu_setup();
    ENC(SMALL(0), 131, 97, 0);
    ENC(SMALL(255), 131, 97, 255);
    ENC(SMALL(256), 131, 98, 0, 0, 1, 0);
    ENC(SMALL(-1), 131, 98, 255, 255, 255, 255);
    ENC(SMALL(-256), 131, 98, 255, 255, 255, 0);
    ENC(SMALL((1 << 27) - 1), 131, 98, 7, 255, 255, 255);
    ENC(SMALL(INT32_MAX), 131, 98, 127, 255, 255, 255);
    ENC(SMALL(INT32_MIN), 131, 98, 128, 0, 0, 0);
    ENC(SMALL((int64_t)1 << 31), 131, 110, 4, 0, 0, 0, 0, 128);
    ENC(SMALL(-((int64_t)1 << 31) - 1), 131, 110, 4, 1, 1, 0, 0, 128);
    ENC(SMALL(-((int64_t)1 << 59)), 131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 8);
    ENC(cu_int64(SMALL_MAX + 1), 131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 8);
    term_t t;
    CU_ASSERT_FATAL(heap_make_uint64(&cu_heap, UINT64_MAX, &t) == GD_OK);
    ENC(t, 131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 255);
    uint64_t two64[2] = {0, 1};
    CU_ASSERT_FATAL(heap_make_integer_digits(&cu_heap, false, two64, 2, &t) == GD_OK);
    ENC(t, 131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    CU_ASSERT_FATAL(heap_make_integer_digits(&cu_heap, true, two64, 2, &t) == GD_OK);
    ENC(t, 131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    /* -(2^100) + 12345 */
    uint64_t d[2] = {0 - (uint64_t)12345, ((uint64_t)1 << 36) - 1};
    CU_ASSERT_FATAL(heap_make_integer_digits(&cu_heap, true, d, 2, &t) == GD_OK);
    ENC(t, 131, 110, 13, 1, 199, 207, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 15);
    /* 2^2040: 256 digit bytes, LARGE_BIG_EXT */
    uint64_t dd[32] = {0};
    dd[31] = (uint64_t)1 << 56;
    CU_ASSERT_FATAL(heap_make_integer_digits(&cu_heap, false, dd, 32, &t) == GD_OK);
    uint8_t want[7 + 256] = {131, 111, 0, 0, 1, 0, 0};
    want[7 + 255] = 1;
    CU_ASSERT(cu_encodes_to(t, NULL, want, sizeof want));
    /* 2^2032 still fits SMALL_BIG_EXT (255 bytes) */
    dd[31] = (uint64_t)1 << 48;
    CU_ASSERT_FATAL(heap_make_integer_digits(&cu_heap, false, dd, 32, &t) == GD_OK);
    uint8_t want2[4 + 255] = {131, 110, 255, 0};
    want2[4 + 254] = 1;
    CU_ASSERT(cu_encodes_to(t, NULL, want2, sizeof want2));
    cu_teardown();
}

static void test_floats(void)
{
    cu_setup();
    ENC(flt(1.5), 131, 70, 63, 248, 0, 0, 0, 0, 0, 0);
    ENC(flt(0.0), 131, 70, 0, 0, 0, 0, 0, 0, 0, 0);
    ENC(flt(-0.0), 131, 70, 128, 0, 0, 0, 0, 0, 0, 0);
    ENC(flt(1.0e300), 131, 70, 126, 55, 228, 60, 136, 0, 117, 156);
    /* minor_version 0: FLOAT_EXT "%.20e" text, and Latin-1 atoms */
    etf_encode_opts_t o = opts_release(25);
    o.minor_version = 0;
    ENC_O(flt(1.5), &o, 131, 99, 49, 46, 53, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48,
          48, 48, 48, 48, 48, 101, 43, 48, 48, 0, 0, 0, 0, 0);
    term_t t = TUPLE(flt(1.5), flt(-0.0), flt(1.0e-300), flt(123456789.125), heap_atom("\xc3\xb6"));
    ENC_O(t, &o, 131, 104, 5, 99, 49, 46, 53, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48,
          48, 48, 48, 48, 48, 48, 101, 43, 48, 48, 0, 0, 0, 0, 0, 99, 45, 48, 46, 48, 48, 48, 48,
          48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 101, 43, 48, 48, 0, 0, 0,
          0, 99, 49, 46, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 50, 53, 48,
          54, 101, 45, 51, 48, 48, 0, 0, 0, 0, 99, 49, 46, 50, 51, 52, 53, 54, 55, 56, 57, 49, 50,
          53, 48, 48, 48, 48, 48, 48, 48, 48, 48, 101, 43, 48, 56, 0, 0, 0, 0, 0, 100, 0, 1, 246);
    ENC_O(flt(5e-324), &o, 131, 99, 52, 46, 57, 52, 48, 54, 53, 54, 52, 53, 56, 52, 49, 50, 52, 54,
          53, 52, 52, 49, 55, 55, 101, 45, 51, 50, 52, 0, 0, 0, 0);
    cu_teardown();
}

static void test_atoms_by_release(void)
{
    cu_setup();
    etf_encode_opts_t r25 = opts_release(25), r26 = opts_release(26), r28 = opts_release(28);
    term_t a = heap_atom("a"), o = heap_atom("\xc3\xb6"), alpha = heap_atom("\xce\xb1");
    ENC_O(a, &r25, 131, 100, 0, 1, 97);
    ENC_O(a, &r26, 131, 119, 1, 97);
    ENC_O(o, &r25, 131, 100, 0, 1, 246);
    ENC_O(o, &r26, 131, 119, 2, 195, 182);
    ENC_O(o, &r28, 131, 119, 2, 195, 182);
    ENC_O(alpha, &r25, 131, 119, 2, 206, 177);
    ENC_O(alpha, &r26, 131, 119, 2, 206, 177);
    ENC_O(ATOM_EMPTY, &r25, 131, 100, 0, 0);
    /* minor_version overrides the release default both ways */
    etf_encode_opts_t m = opts_release(25);
    m.minor_version = 2;
    ENC_O(o, &m, 131, 119, 2, 195, 182);
    m = opts_release(26);
    m.minor_version = 1;
    ENC_O(o, &m, 131, 100, 0, 1, 246);
    /* 255 Latin-1 characters: ATOM_EXT on 25; 255 UTF-8 bytes: 119; 510: 118 */
    char text[600];
    memset(text, 'x', 255);
    term_t x255;
    CU_ASSERT_FATAL(heap_atom_put(text, 255, &x255) == GD_OK);
    uint8_t want[4 + 510];
    want[0] = 131;
    want[1] = 100;
    want[2] = 0;
    want[3] = 255;
    memset(want + 4, 'x', 255);
    CU_ASSERT(cu_encodes_to(x255, &r25, want, 4 + 255));
    want[1] = 119;
    want[2] = 255;
    memset(want + 3, 'x', 255);
    CU_ASSERT(cu_encodes_to(x255, &r26, want, 3 + 255));
    for (int i = 0; i < 255; i++) {
        text[2 * i] = (char)0xC3;
        text[2 * i + 1] = (char)0xB6;
    }
    term_t o255; /* 255 x 'ö': Latin-1 on 25 (255 bytes), 510 UTF-8 bytes on 26 */
    CU_ASSERT_FATAL(heap_atom_put(text, 510, &o255) == GD_OK);
    want[1] = 100;
    want[2] = 0;
    want[3] = 255;
    memset(want + 4, 246, 255);
    CU_ASSERT(cu_encodes_to(o255, &r25, want, 4 + 255));
    want[1] = 118;
    want[2] = 1;
    want[3] = 254;
    memcpy(want + 4, text, 510);
    CU_ASSERT(cu_encodes_to(o255, &r26, want, 4 + 510));
    /* a nested term with atoms in every position, OTP 25 and 26 */
    term_t inner[] = {SMALL(2), TUPLE(flt(3.5), cu_binary("x", 1))};
    term_t nested = TUPLE(LIST(SMALL(1), cu_list(2, inner, heap_atom("t"))),
                          map(1, (term_t[]){heap_atom("k")}, (term_t[]){TERM_NIL}), SMALL(-70000),
                          heap_atom("\xce\xa9mega"));
    ENC_O(nested, &r25, 131, 104, 4, 108, 0, 0, 0, 2, 97, 1, 108, 0, 0, 0, 2, 97, 2, 104, 2, 70, 64,
          12, 0, 0, 0, 0, 0, 0, 109, 0, 0, 0, 1, 120, 100, 0, 1, 116, 106, 116, 0, 0, 0, 1, 100, 0,
          1, 107, 106, 98, 255, 254, 238, 144, 119, 6, 206, 169, 109, 101, 103, 97);
    ENC_O(nested, &r26, 131, 104, 4, 108, 0, 0, 0, 2, 97, 1, 108, 0, 0, 0, 2, 97, 2, 104, 2, 70, 64,
          12, 0, 0, 0, 0, 0, 0, 109, 0, 0, 0, 1, 120, 119, 1, 116, 106, 116, 0, 0, 0, 1, 119, 1,
          107, 106, 98, 255, 254, 238, 144, 119, 6, 206, 169, 109, 101, 103, 97);
    cu_teardown();
}

static void test_lists(void)
{
    cu_setup();
    ENC(TERM_NIL, 131, 106);
    ENC(LIST(SMALL('a'), SMALL('b'), SMALL('c')), 131, 107, 0, 3, 97, 98, 99);
    term_t one_two[] = {SMALL(1), SMALL(2)};
    ENC(cu_list(2, one_two, SMALL(3)), 131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3);
    ENC(cu_list(2, one_two, heap_atom("x")), 131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 100, 0, 1, 120);
    ENC(LIST(SMALL(256)), 131, 108, 0, 0, 0, 1, 98, 0, 0, 1, 0, 106);
    ENC(LIST(heap_atom("a")), 131, 108, 0, 0, 0, 1, 100, 0, 1, 97, 106);
    ENC(cu_list(1, (term_t[]){heap_atom("a")}, heap_atom("b")), 131, 108, 0, 0, 0, 1, 100, 0, 1, 97,
        100, 0, 1, 98);
    ENC(LIST(SMALL('a'), SMALL('b'), SMALL(300)), 131, 108, 0, 0, 0, 3, 97, 97, 97, 98, 98, 0, 0, 1,
        44, 106);
    ENC(LIST(SMALL(1), SMALL(-1)), 131, 108, 0, 0, 0, 2, 97, 1, 98, 255, 255, 255, 255, 106);
    term_t three[] = {SMALL(1), SMALL(2), SMALL(3)};
    ENC(cu_list(3, three, cu_binary("", 0)), 131, 108, 0, 0, 0, 3, 97, 1, 97, 2, 97, 3, 109, 0, 0,
        0, 0);
    /* [[1],[2,3]|4] */
    term_t l = cu_list(2, (term_t[]){LIST(SMALL(1)), LIST(SMALL(2), SMALL(3))}, SMALL(4));
    ENC(l, 131, 108, 0, 0, 0, 2, 107, 0, 1, 1, 107, 0, 2, 2, 3, 97, 4);
    /* 65535 bytes: STRING_EXT; 65536: LIST_EXT of SMALL_INTEGER_EXT */
    term_t s = TERM_NIL;
    for (int i = 0; i < 65535; i++)
        CU_ASSERT_FATAL(heap_cons(&cu_heap, SMALL(7), s, &s) == GD_OK);
    etf_buf_t b = {0};
    CU_ASSERT(etf_encode(s, NULL, &b) == GD_OK && b.len == 65539 && b.data[1] == 107 &&
              b.data[2] == 255 && b.data[3] == 255 && b.data[65538] == 7);
    CU_ASSERT_FATAL(heap_cons(&cu_heap, SMALL(7), s, &s) == GD_OK);
    b.len = 0;
    CU_ASSERT(etf_encode(s, NULL, &b) == GD_OK && b.len == 1 + 5 + 2 * 65536 + 1);
    static const uint8_t head[] = {131, 108, 0, 1, 0, 0, 97, 7, 97, 7, 97, 7};
    CU_ASSERT(memcmp(b.data, head, sizeof head) == 0 && b.data[b.len - 1] == 106);
    size_t size;
    CU_ASSERT(etf_encoded_size(s, NULL, &size) == GD_OK && size == b.len - 1);
    etf_buf_free(&b);
    cu_teardown();
}

static void test_tuples(void)
{
    cu_setup();
    ENC(cu_tuple(0, NULL), 131, 104, 0);
    ENC(TUPLE(heap_atom("a"), SMALL(1)), 131, 104, 2, 100, 0, 1, 97, 97, 1);
    term_t items[256];
    uint8_t want[6 + 2 * 256] = {131, 105, 0, 0, 1, 0};
    for (int i = 0; i < 256; i++) {
        items[i] = SMALL(i);
        want[6 + 2 * i] = 97;
        want[7 + 2 * i] = (uint8_t)i;
    }
    CU_ASSERT(cu_encodes_to(cu_tuple(256, items), NULL, want, sizeof want));
    want[1] = 104;
    want[2] = 255;
    for (int i = 0; i < 255; i++) {
        want[3 + 2 * i] = 97;
        want[4 + 2 * i] = (uint8_t)i;
    }
    CU_ASSERT(cu_encodes_to(cu_tuple(255, items), NULL, want, 3 + 2 * 255));
    cu_teardown();
}

static void test_binaries(void)
{
    cu_setup();
    ENC(cu_binary("\1\2\3", 3), 131, 109, 0, 0, 0, 3, 1, 2, 3);
    ENC(cu_binary("", 0), 131, 109, 0, 0, 0, 0);
    ENC(bits((const uint8_t[]){32}, 3), 131, 77, 0, 0, 0, 1, 3, 32);
    ENC(bits((const uint8_t[]){1, 32}, 12), 131, 77, 0, 0, 0, 2, 4, 1, 32);
    ENC(bits((const uint8_t[]){1, 128}, 9), 131, 77, 0, 0, 0, 2, 1, 1, 128);
    /* sub-binaries: <<_:5, X:19/bits, _/bits>> = <<255,1,2,3,4>> */
    term_t whole = cu_binary("\xff\1\2\3\4", 5), sub;
    CU_ASSERT_FATAL(heap_make_sub_binary(&cu_heap, whole, 5, 19, &sub) == GD_OK);
    ENC(sub, 131, 77, 0, 0, 0, 3, 3, 224, 32, 64);
    /* <<_:3, B:13/bitstring, _/bits>> = <<1,2,3,4>> */
    whole = cu_binary("\1\2\3\4", 4);
    CU_ASSERT_FATAL(heap_make_sub_binary(&cu_heap, whole, 3, 13, &sub) == GD_OK);
    ENC(sub, 131, 77, 0, 0, 0, 2, 5, 8, 16);
    /* byte-aligned sub-binary at a bit offset: whole bytes shifted */
    CU_ASSERT_FATAL(heap_make_sub_binary(&cu_heap, whole, 4, 16, &sub) == GD_OK);
    ENC(sub, 131, 109, 0, 0, 0, 2, 0x10, 0x20);
    /* an off-heap (refc) binary, and a sub-binary of it */
    uint8_t big[300];
    for (int i = 0; i < 300; i++)
        big[i] = (uint8_t)(i * 31);
    term_t rb = cu_binary(big, 300);
    CU_ASSERT(term_is_boxed_of(rb, HDR_REFC_BIN));
    uint8_t want[6 + 300] = {131, 109, 0, 0, 1, 44};
    memcpy(want + 6, big, 300);
    CU_ASSERT(cu_encodes_to(rb, NULL, want, sizeof want));
    CU_ASSERT_FATAL(heap_make_sub_binary(&cu_heap, rb, 8 * 100, 8 * 150, &sub) == GD_OK);
    uint8_t want_sub[6 + 150] = {131, 109, 0, 0, 0, 150};
    memcpy(want_sub + 6, big + 100, 150);
    CU_ASSERT(cu_encodes_to(sub, NULL, want_sub, sizeof want_sub));
    cu_teardown();
}

static void test_maps(void)
{
    cu_setup();
    ENC(map(0, NULL, NULL), 131, 116, 0, 0, 0, 0);
    ENC(map(2, (term_t[]){heap_atom("b"), heap_atom("a")}, (term_t[]){SMALL(1), SMALL(2)}), 131,
        116, 0, 0, 0, 2, 100, 0, 1, 97, 97, 2, 100, 0, 1, 98, 97, 1);
    ENC(map(2, (term_t[]){heap_atom("a"), SMALL(1)}, (term_t[]){SMALL(1), heap_atom("a")}), 131,
        116, 0, 0, 0, 2, 97, 1, 100, 0, 1, 97, 100, 0, 1, 97, 97, 1);
    /* keys of every type, in OTP 25's flatmap order (-1 < 1 < 1.0 < atom < ...) */
    term_t k[9] = {SMALL(1),          flt(1.0),         SMALL(-1),
                   heap_atom("a"),    LIST(SMALL('s')), TUPLE(heap_atom("x")),
                   cu_binary("b", 1), TERM_NIL,         map(0, NULL, NULL)};
    term_t v[9] = {heap_atom("a"), heap_atom("b"), heap_atom("c"), heap_atom("d"), heap_atom("e"),
                   heap_atom("f"), heap_atom("g"), heap_atom("h"), heap_atom("i")};
    term_t m = map(9, k, v);
    static const uint8_t mixed[] = {
        131, 116, 0,   0,  0,   9,   98,  255, 255, 255, 255, 100, 0,   1,   99,  97,  1,
        100, 0,   1,   97, 70,  63,  240, 0,   0,   0,   0,   0,   0,   100, 0,   1,   98,
        100, 0,   1,   97, 100, 0,   1,   100, 104, 1,   100, 0,   1,   120, 100, 0,   1,
        102, 116, 0,   0,  0,   0,   100, 0,   1,   105, 106, 100, 0,   1,   104, 107, 0,
        1,   115, 100, 0,  1,   101, 109, 0,   0,   0,   1,   98,  100, 0,   1,   103};
    CU_ASSERT(cu_encodes_to(m, NULL, mixed, sizeof mixed));
    etf_encode_opts_t det = opts_release(25);
    det.deterministic = true;
    CU_ASSERT(cu_encodes_to(m, &det, mixed, sizeof mixed));
    cu_teardown();
}

/* [deterministic] on hash maps (> 32 keys): every key in term order. */
static void test_maps_deterministic(void)
{
    cu_setup();
    term_t k[40], v[40];
    for (int i = 0; i < 40; i++) {
        k[i] = SMALL(40 - i);
        v[i] = SMALL(40 - i);
    }
    term_t m = map(40, k, v);
    uint8_t want[6 + 40 * 4] = {131, 116, 0, 0, 0, 40};
    for (int i = 0; i < 40; i++) {
        want[6 + 4 * i] = 97;
        want[7 + 4 * i] = (uint8_t)(i + 1);
        want[8 + 4 * i] = 97;
        want[9 + 4 * i] = (uint8_t)(i + 1);
    }
    etf_encode_opts_t det = opts_release(25);
    det.deterministic = true;
    CU_ASSERT(cu_encodes_to(m, &det, want, sizeof want));
    /* atom keys k1..k40: sorted by text (k1 < k10 < ... < k9) as OTP 25 emits */
    char name[16];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "k%d", i + 1);
        k[i] = heap_atom(name);
        v[i] = SMALL(i + 1);
    }
    m = map(40, k, v);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(etf_encode(m, &det, &b) == GD_OK);
    static const uint8_t head[] = {131, 116, 0,   0, 0, 40,  100, 0,  2,  107, 49,
                                   97,  1,   100, 0, 3, 107, 49,  48, 97, 10};
    static const uint8_t tail[] = {100, 0, 2, 107, 56, 97, 8, 100, 0, 2, 107, 57, 97, 9};
    CU_ASSERT(memcmp(b.data, head, sizeof head) == 0);
    CU_ASSERT(b.len == 6 + 9 * 7 + 31 * 8 &&
              memcmp(b.data + b.len - sizeof tail, tail, sizeof tail) == 0);
    /* without [deterministic] the hash order differs but decodes to the same map */
    etf_buf_t plain = {0};
    CU_ASSERT_FATAL(etf_encode(m, NULL, &plain) == GD_OK);
    CU_ASSERT(plain.len == b.len);
    term_t back;
    CU_ASSERT(etf_decode(&cu_heap, plain.data, plain.len, NULL, &back, NULL, NULL) == GD_OK &&
              tg_equal_exact(back, m));
    size_t size;
    CU_ASSERT(etf_encoded_size(m, &det, &size) == GD_OK && size == b.len - 1);
    etf_buf_free(&b);
    etf_buf_free(&plain);
    cu_teardown();
}

static void test_pids_ports_refs(void)
{
    cu_setup();
    /* self() on a non-distributed OTP 25 node: <0.9.0> */
    ENC(term_make_local_pid(9, 0), 131, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111,
        104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0);
    term_t t;
    CU_ASSERT_FATAL(heap_make_ext_pid(&cu_heap, ATOM_NONODE, 9, 0, 0, &t) == GD_OK);
    ENC(t, 131, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0,
        0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0);
    CU_ASSERT_FATAL(heap_make_ext_pid(&cu_heap, heap_atom("a"), UINT32_MAX, UINT32_MAX, 3, &t) ==
                    GD_OK);
    ENC(t, 131, 88, 100, 0, 1, 97, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 3);
    /* (A local node and creation other than the default: tests/heap/test_node.c
     * and tests/etf/test_node_codec.c, which set the identity first.) */
    /* ports: NEW_PORT_EXT up to 28 bits, V4_PORT_EXT above (OTP 25) */
    ENC(term_make_local_port(0), 131, 89, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111,
        104, 111, 115, 116, 0, 0, 0, 0, 0, 0, 0, 0);
    CU_ASSERT_FATAL(heap_make_ext_port(&cu_heap, heap_atom("a"), 0x0FFFFFFF, 7, &t) == GD_OK);
    ENC(t, 131, 89, 100, 0, 1, 97, 15, 255, 255, 255, 0, 0, 0, 7);
    CU_ASSERT_FATAL(heap_make_ext_port(&cu_heap, heap_atom("a"), 0x10000000, 7, &t) == GD_OK);
    ENC(t, 131, 120, 100, 0, 1, 97, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 7);
    CU_ASSERT_FATAL(heap_make_ext_port(&cu_heap, heap_atom("a"), UINT64_MAX, 7, &t) == GD_OK);
    ENC(t, 131, 120, 100, 0, 1, 97, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 7);
    ENC(term_make_local_port(LOCAL_PORT_MAX), 131, 89, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64,
        110, 111, 104, 111, 115, 116, 15, 255, 255, 255, 0, 0, 0, 0);
    /* references keep their word count, 0..5 */
    uint32_t w[5] = {0x0003D790, 0xDB7C0002, 0x34FC9F92, 4, 5};
    CU_ASSERT_FATAL(heap_make_ref(&cu_heap, ATOM_NONODE, 0, w, 3, &t) == GD_OK);
    ENC(t, 131, 90, 0, 3, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115,
        116, 0, 0, 0, 0, 0, 3, 215, 144, 219, 124, 0, 2, 52, 252, 159, 146);
    uint32_t w5[5] = {1, 2, 3, 4, 5};
    CU_ASSERT_FATAL(heap_make_ref(&cu_heap, heap_atom("a"), 9, w5, 5, &t) == GD_OK);
    ENC(t, 131, 90, 0, 5, 100, 0, 1, 97, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4,
        0, 0, 0, 5);
    CU_ASSERT_FATAL(heap_make_ref(&cu_heap, heap_atom("a"), 1, w5, 0, &t) == GD_OK);
    ENC(t, 131, 90, 0, 0, 100, 0, 1, 97, 0, 0, 0, 1);
    /* old-format pids/ports/refs re-encode in the new forms, as OTP does */
    CU_ASSERT(cu_encodes_to(dec(BYTES(131, 103, 100, 0, 1, 97, 0, 0, 128, 0, 0, 0, 128, 0, 1)),
                            NULL,
                            BYTES(131, 88, 100, 0, 1, 97, 0, 0, 128, 0, 0, 0, 128, 0, 0, 0, 0, 1)));
    CU_ASSERT(cu_encodes_to(dec(BYTES(131, 101, 100, 0, 1, 97, 0, 3, 255, 255, 1)), NULL,
                            BYTES(131, 90, 0, 1, 100, 0, 1, 97, 0, 0, 0, 1, 0, 3, 255, 255)));
    CU_ASSERT(
        cu_encodes_to(dec(BYTES(131, 102, 100, 0, 1, 97, 255, 255, 255, 255, 3)), NULL,
                      BYTES(131, 120, 100, 0, 1, 97, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 3)));
    cu_teardown();
}

/* Captured funs (see test_decode.c): decode and re-encode byte for byte. */
static void test_funs_exports(void)
{
    cu_setup();
    term_t t;
    CU_ASSERT_FATAL(heap_make_export(&cu_heap, heap_atom("lists"), heap_atom("map"), 2, &t) ==
                    GD_OK);
    ENC(t, 131, 113, 100, 0, 5, 108, 105, 115, 116, 115, 100, 0, 3, 109, 97, 112, 97, 2);
    etf_encode_opts_t r26 = opts_release(26);
    ENC_O(t, &r26, 131, 113, 119, 5, 108, 105, 115, 116, 115, 119, 3, 109, 97, 112, 97, 2);
    CU_ASSERT(cu_roundtrip_bytes(
        BYTES(131, 112, 0, 0, 0, 74, 0, 72, 109, 129, 235, 234, 231, 28, 78, 240, 236, 181, 105,
              119, 255, 33, 13, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 6, 112, 114, 111, 98, 101, 51, 97,
              0, 98, 2, 67, 108, 15, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111,
              104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0)));
    CU_ASSERT(cu_roundtrip_bytes(BYTES(
        131, 112, 0, 0, 0, 103, 0, 125, 196, 28, 99, 126, 23, 171, 151, 232, 120, 250, 148, 116,
        184, 199, 209, 0, 0, 0, 0, 0, 0, 0, 1, 100, 0, 6, 112, 114, 111, 98, 101, 52, 97, 0, 98, 3,
        238, 32, 227, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115,
        116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64,
        110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0)));
    /* OTP re-encodes OldIndex/OldUniq as signed 32-bit values and computes Size:
     * decoded with OldIndex 2^31 and a wrong Size, it comes back as OTP 25 sends it */
    CU_ASSERT(cu_encodes_to(
        dec(BYTES(131, 112, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                  0, 0, 0, 0, 0, 100, 0, 5, 110, 111, 109, 111, 100, 110, 4, 0, 0, 0, 0, 128, 97, 0,
                  88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0,
                  0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0)),
        NULL,
        BYTES(131, 112, 0, 0, 0, 73, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
              0, 0, 0, 0, 100, 0, 5, 110, 111, 109, 111, 100, 98, 128, 0, 0, 0, 97, 0, 88, 100, 0,
              13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0,
              0, 0, 0, 0, 0, 0)));
    /* a fun built in C, with a local creator pid and a nested free variable */
    heap_fun_info_t fi;
    memset(&fi, 0, sizeof fi);
    fi.arity = 2;
    fi.index = 5;
    fi.num_free = 2;
    fi.module = heap_atom("m");
    fi.old_index = SMALL(300);
    fi.old_uniq = SMALL(-2);
    fi.pid = term_make_local_pid(4, 0);
    term_t *fv;
    CU_ASSERT_FATAL(heap_make_fun(&cu_heap, &fi, &fv, &t) == GD_OK);
    fv[0] = TUPLE(SMALL(1));
    fv[1] = heap_atom("z");
    ENC(t, 131, 112, 0, 0, 0, 80, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0,
        0, 0, 2, 100, 0, 1, 109, 98, 0, 0, 1, 44, 98, 255, 255, 255, 254, 88, 100, 0, 13, 110, 111,
        110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        104, 1, 97, 1, 100, 0, 1, 122);
    cu_teardown();
}

/* The 33-byte binary whose compressed form has exactly the plain length. */
static term_t boundary_binary(size_t n)
{
    uint8_t b[64] = {0};
    for (size_t i = 1; i <= n / 2; i++)
        b[i - 1] = (uint8_t)((i * 7919 + (i * i) % 251) % 256);
    return cu_binary(b, n);
}

static void test_compressed(void)
{
    cu_setup();
    term_t zeros = TERM_NIL;
    for (int i = 0; i < 100; i++)
        CU_ASSERT_FATAL(heap_cons(&cu_heap, SMALL(0), zeros, &zeros) == GD_OK);
    etf_encode_opts_t o = opts_release(25);
    o.compressed = 6;
    ENC_O(zeros, &o, 131, 80, 0, 0, 0, 103, 120, 156, 203, 102, 72, 97, 160, 3, 0, 0, 82, 232, 0,
          208);
    o.compressed = 1;
    ENC_O(zeros, &o, 131, 80, 0, 0, 0, 103, 120, 1, 203, 102, 72, 97, 160, 3, 0, 0, 82, 232, 0,
          208);
    o.compressed = 9;
    ENC_O(zeros, &o, 131, 80, 0, 0, 0, 103, 120, 218, 203, 102, 72, 97, 160, 3, 0, 0, 82, 232, 0,
          208);
    /* level 0 and negative: plain */
    o.compressed = 0;
    etf_buf_t b = {0};
    CU_ASSERT(etf_encode(zeros, &o, &b) == GD_OK && b.len == 104 && b.data[1] == 107);
    etf_buf_free(&b);
    /* only if not longer: abc stays plain; equal length compresses (OTP 25) */
    o.compressed = 6;
    ENC_O(heap_atom("abc"), &o, 131, 100, 0, 3, 97, 98, 99);
    ENC_O(boundary_binary(33), &o, 131, 80, 0, 0, 0, 38, 120, 156, 203, 101, 96, 96, 80, 252, 240,
          232, 218, 153, 35, 251, 118, 237, 216, 177, 107, 223, 145, 51, 215, 30, 125, 101, 64, 7,
          0, 91, 215, 13, 100);
    ENC_O(boundary_binary(32), &o, 131, 109, 0, 0, 0, 32, 240, 226, 214, 204, 196, 190, 186, 184,
          184, 186, 190, 196, 204, 214, 226, 245, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* a tuple of 50 'hello' */
    term_t items[50];
    for (int i = 0; i < 50; i++)
        items[i] = heap_atom("hello");
    ENC_O(cu_tuple(50, items), &o, 131, 80, 0, 0, 1, 146, 120, 156, 203, 48, 74, 97, 96, 205, 72,
          205, 201, 201, 31, 165, 7, 7, 13, 0, 15, 212, 125, 5);
    /* and it decodes back */
    CU_ASSERT_FATAL(etf_encode(cu_tuple(50, items), &o, &b) == GD_OK);
    term_t back;
    CU_ASSERT(etf_decode(&cu_heap, b.data, b.len, NULL, &back, NULL, NULL) == GD_OK &&
              tg_equal_exact(back, cu_tuple(50, items)));
    etf_buf_free(&b);
    cu_teardown();
}

static void test_buffers_and_body(void)
{
    cu_setup();
    etf_buf_t b = {0};
    /* etf_encode appends */
    CU_ASSERT(etf_encode(SMALL(1), NULL, &b) == GD_OK);
    CU_ASSERT(etf_encode(heap_atom("a"), NULL, &b) == GD_OK);
    static const uint8_t two[] = {131, 97, 1, 131, 100, 0, 1, 97};
    CU_ASSERT(b.len == sizeof two && memcmp(b.data, two, sizeof two) == 0);
    /* the body has no version byte */
    b.len = 0;
    CU_ASSERT(etf_encode_body(TUPLE(SMALL(1), TERM_NIL), NULL, &b) == GD_OK);
    static const uint8_t body[] = {104, 2, 97, 1, 106};
    CU_ASSERT(b.len == sizeof body && memcmp(b.data, body, sizeof body) == 0);
    /* a buffer that must grow many times in one term */
    etf_buf_free(&b);
    term_t s = TERM_NIL;
    for (int i = 0; i < 100000; i++)
        CU_ASSERT_FATAL(heap_cons(&cu_heap, heap_atom("abcdefgh"), s, &s) == GD_OK);
    CU_ASSERT(etf_encode_body(s, NULL, &b) == GD_OK && b.len == 5 + 100000 * 11 + 1);
    size_t size;
    CU_ASSERT(etf_encoded_size(s, NULL, &size) == GD_OK && size == b.len);
    etf_buf_free(&b);
    cu_teardown();
}

static void test_unencodable_and_depth(void)
{
    cu_setup();
    etf_buf_t b = {0};
    size_t size;
    CU_ASSERT(etf_encode(TERM_NONE, NULL, &b) == ETF_EUNENCODABLE && b.len == 0);
    CU_ASSERT(etf_encoded_size(TERM_NONE, NULL, &size) == ETF_EUNENCODABLE);
    CU_ASSERT(etf_encode(TUPLE(SMALL(1), TERM_NONE), NULL, &b) == ETF_EUNENCODABLE && b.len == 0);
    CU_ASSERT(etf_encode(heap_make_header(HDR_TUPLE, 0), NULL, &b) == ETF_EUNENCODABLE);
    /* failure leaves earlier content alone */
    CU_ASSERT(etf_encode(SMALL(5), NULL, &b) == GD_OK && b.len == 3);
    CU_ASSERT(etf_encode(LIST(TERM_NONE), NULL, &b) == ETF_EUNENCODABLE && b.len == 3);
    /* depth counted as the decoder counts it */
    etf_encode_opts_t o = opts_release(25);
    o.max_depth = 2;
    term_t t2 = TUPLE(TUPLE(SMALL(1)));
    term_t t3 = TUPLE(TUPLE(TUPLE(SMALL(1))));
    b.len = 0;
    CU_ASSERT(etf_encode(t2, &o, &b) == GD_OK);
    CU_ASSERT(etf_encode(t3, &o, &b) == ETF_EDEPTH);
    CU_ASSERT(etf_encoded_size(t3, &o, &size) == ETF_EDEPTH);
    CU_ASSERT(etf_encode(TUPLE(TUPLE(cu_tuple(0, NULL))), &o, &b) == GD_OK);
    /* a byte list is a STRING_EXT, no deeper */
    CU_ASSERT(etf_encode(TUPLE(TUPLE(LIST(SMALL(1)))), &o, &b) == GD_OK);
    CU_ASSERT(etf_encode(TUPLE(TUPLE(LIST(heap_atom("a")))), &o, &b) == ETF_EDEPTH);
    /* a million nested tuples */
    term_t deep = SMALL(0);
    bool built = true;
    for (int i = 0; i < 1000000 && built; i++) {
        term_t *el, t;
        built = heap_make_tuple(&cu_heap, 1, &el, &t) == GD_OK;
        if (built) {
            el[0] = deep;
            deep = t;
        }
    }
    CU_ASSERT_FATAL(built);
    CU_ASSERT(etf_encode(deep, NULL, &b) == ETF_EDEPTH);
    o.max_depth = 1000000;
    b.len = 0;
    CU_ASSERT(etf_encode(deep, &o, &b) == GD_OK && b.len == 1 + 2 * 1000000 + 2);
    etf_decode_opts_t d = {0};
    d.max_depth = 1000000;
    term_t back;
    CU_ASSERT(etf_decode(&cu_heap, b.data, b.len, &d, &back, NULL, NULL) == GD_OK &&
              tg_equal_exact(back, deep));
    etf_buf_free(&b);
    cu_teardown();
}

/* encode -> decode gives an equal term; encoding that gives the same bytes. */
static bool roundtrip(term_t t, const etf_encode_opts_t *o, uint64_t seed, int i)
{
    etf_buf_t a = {0}, b = {0};
    term_t back = TERM_NONE;
    size_t size = 0;
    etf_error_t err = {0, 0};
    bool ok = etf_encode(t, o, &a) == GD_OK;
    ok = ok && etf_decode(&cu_heap, a.data, a.len, NULL, &back, NULL, &err) == GD_OK;
    ok = ok && tg_equal_exact(back, t);
    ok = ok && etf_encode(back, o, &b) == GD_OK && a.len == b.len &&
         memcmp(a.data, b.data, a.len) == 0;
    if (ok && (o == NULL || o->compressed <= 0))
        ok = etf_encoded_size(t, o, &size) == GD_OK && size == a.len - 1;
    if (!ok) {
        fprintf(stderr, "\nround trip failed: seed %llu term %d (decode err %d at %zu)\n",
                (unsigned long long)seed, i, err.code, err.offset);
        cu_dump("  first", a.data, a.len > 200 ? 200 : a.len);
    }
    etf_buf_free(&a);
    etf_buf_free(&b);
    return ok;
}

static void test_random_roundtrip(void)
{
    uint64_t seed0 = termgen_seed_from_env(0x5eed1234);
    uint64_t seed = seed0;
    etf_encode_opts_t variants[5];
    for (int k = 0; k < 5; k++)
        variants[k] = opts_release(k == 1 ? 26 : 25);
    variants[2].deterministic = true;
    variants[3].compressed = 6;
    variants[4].minor_version = 0;
    int failures = 0;
    for (int i = 0; i < 1000 && failures < 5; i++) {
        cu_setup();
        term_t t = cu_random_term(&cu_heap, &seed, 5);
        CU_ASSERT_FATAL(t != TERM_NONE);
        for (int k = 0; k < 5; k++)
            if (!roundtrip(t, &variants[k], seed0, i))
                failures++;
        cu_teardown();
    }
    CU_ASSERT(failures == 0);
}

static const gd_test_case_t gd_tests[] = {
    {"integers", test_integers},
    {"floats", test_floats},
    {"atoms_by_release", test_atoms_by_release},
    {"lists", test_lists},
    {"tuples", test_tuples},
    {"binaries", test_binaries},
    {"maps", test_maps},
    {"maps_deterministic", test_maps_deterministic},
    {"pids_ports_refs", test_pids_ports_refs},
    {"funs_exports", test_funs_exports},
    {"compressed", test_compressed},
    {"buffers_and_body", test_buffers_and_body},
    {"unencodable_and_depth", test_unencodable_and_depth},
    {"random_roundtrip", test_random_roundtrip},
    {NULL, NULL},
};

GD_TEST_MAIN("etf_encode", gd_tests)
