/*
 * test_decode.c — etf_decode: every tag with the bytes OTP 25 emits
 * (captured from a live node), what binary_to_term accepts beyond
 * that, and every error path (docs/robustness.md §2, D1–D20) with its code and
 * offset.
 */
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

#include "codec_util.h"

/* Decodes bytes that must be a complete term; returns it. */
static term_t dec(const uint8_t *b, size_t n)
{
    term_t t = TERM_NONE;
    size_t used = 0;
    etf_error_t err = {0, 0};
    int rc = etf_decode(&cu_heap, b, n, NULL, &t, &used, &err);
    if (rc != GD_OK || used != n) {
        fprintf(stderr, "\ndecode rc=%d at %zu used=%zu\n", rc, err.offset, used);
        cu_dump("  input", b, n);
        return TERM_NONE;
    }
    return t;
}
#define DEC(...) dec(BYTES(__VA_ARGS__))

static bool eq(term_t a, term_t b)
{
    return a != TERM_NONE && b != TERM_NONE && tg_equal_exact(a, b);
}

/*
 * Off-heap binaries are process-wide (heap_binary_live_bytes counts them
 * all), so a test takes the count before it decodes and, after a
 * collection of h with no roots, expects it back: whatever the decoder
 * built, on success or failure, is owned by h and dies with its last
 * reference, before any teardown frees the heap.
 */
static void assert_binaries_released(heap_t *h, size_t live_before)
{
    CU_ASSERT_FATAL(heap_gc(h, 0, NULL, 0) == GD_OK);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live_before);
}

/* ---- integers ---- */

static void test_integers(void)
{
    cu_setup();
    CU_ASSERT(DEC(131, 97, 0) == SMALL(0));
    CU_ASSERT(DEC(131, 97, 255) == SMALL(255));
    CU_ASSERT(DEC(131, 98, 0, 0, 1, 0) == SMALL(256));
    CU_ASSERT(DEC(131, 98, 255, 255, 255, 255) == SMALL(-1));
    CU_ASSERT(DEC(131, 98, 7, 255, 255, 255) == SMALL((1 << 27) - 1));
    CU_ASSERT(DEC(131, 98, 127, 255, 255, 255) == SMALL(INT32_MAX));
    CU_ASSERT(DEC(131, 98, 128, 0, 0, 0) == SMALL(INT32_MIN));
    CU_ASSERT(DEC(131, 110, 4, 0, 0, 0, 0, 128) == SMALL((int64_t)1 << 31));
    CU_ASSERT(DEC(131, 110, 4, 1, 1, 0, 0, 128) == SMALL(-((int64_t)1 << 31) - 1));
    CU_ASSERT(DEC(131, 98, 255, 255, 255, 0) == SMALL(-256));
    /* 2^64 and -(2^64): two digits */
    term_t t = DEC(131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    CU_ASSERT(term_is_big(t) && !term_big_negative(t) && term_big_ndigits(t) == 2 &&
              term_big_digits(t)[0] == 0 && term_big_digits(t)[1] == 1);
    t = DEC(131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    CU_ASSERT(term_is_big(t) && term_big_negative(t) && term_big_ndigits(t) == 2);
    /* small/big boundary of the 60-bit small */
    CU_ASSERT(DEC(131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 7) == SMALL(SMALL_MAX));
    CU_ASSERT(eq(DEC(131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 8), cu_int64(SMALL_MAX + 1)));
    CU_ASSERT(DEC(131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 8) == SMALL(SMALL_MIN));
    CU_ASSERT(
        eq(DEC(131, 110, 8, 1, 255, 255, 255, 255, 255, 255, 255, 127), cu_int64(INT64_MIN + 1)));
    /* 2^2040: LARGE_BIG_EXT with 256 digit bytes */
    uint8_t b[6 + 1 + 256];
    memset(b, 0, sizeof b);
    b[0] = 131;
    b[1] = 111;
    b[4] = 1; /* n = 256 */
    b[6] = 0; /* sign */
    b[6 + 256] = 1;
    t = dec(b, sizeof b);
    CU_ASSERT(term_is_big(t) && term_big_ndigits(t) == 32 &&
              term_big_digits(t)[31] == (uint64_t)1 << 56);
    /* non-canonical forms OTP 25 accepts */
    CU_ASSERT(DEC(131, 110, 0, 0) == SMALL(0));
    CU_ASSERT(DEC(131, 110, 0, 1) == SMALL(0));       /* negative zero */
    CU_ASSERT(DEC(131, 110, 1, 0, 5) == SMALL(5));    /* fits a small */
    CU_ASSERT(DEC(131, 110, 2, 0, 5, 0) == SMALL(5)); /* leading zero byte */
    CU_ASSERT(DEC(131, 110, 1, 2, 5) == SMALL(-5));   /* any non-zero sign is negative */
    CU_ASSERT(DEC(131, 111, 0, 0, 0, 1, 0, 5) == SMALL(5));
    CU_ASSERT(DEC(131, 110, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0) == SMALL(1));
    cu_teardown();
}

/* ---- floats ---- */

static void test_floats(void)
{
    cu_setup();
    term_t t = DEC(131, 70, 63, 248, 0, 0, 0, 0, 0, 0);
    CU_ASSERT(term_is_float(t) && term_float_value(t) == 1.5);
    t = DEC(131, 70, 0, 0, 0, 0, 0, 0, 0, 0);
    CU_ASSERT(term_is_float(t) && term_float_value(t) == 0.0 && !signbit(term_float_value(t)));
    t = DEC(131, 70, 128, 0, 0, 0, 0, 0, 0, 0);
    CU_ASSERT(term_is_float(t) && term_float_value(t) == 0.0 && signbit(term_float_value(t)));
    t = DEC(131, 70, 126, 55, 228, 60, 136, 0, 117, 156);
    CU_ASSERT(term_is_float(t) && term_float_value(t) == 1.0e300);
    /* FLOAT_EXT (minor_version 0) */
    t = DEC(131, 99, 49, 46, 53, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48,
            48, 48, 101, 43, 48, 48, 0, 0, 0, 0, 0);
    CU_ASSERT(term_is_float(t) && term_float_value(t) == 1.5);
    cu_teardown();
}

/* FLOAT_EXT text rules, as probed on OTP 25. */
static void test_float_ext_text(void)
{
    cu_setup();
    static const struct {
        const char *text;
        bool ok;
        double value;
    } cases[] = {
        {"1.5e+5", true, 1.5e5},
        {"1.5E5", true, 1.5e5},
        {"-1.5", true, -1.5},
        {"+1.5", true, 1.5},
        {"00001.5", true, 1.5},
        {"1.0e-400", true, 0.0},
        {"-0.0", true, -0.0},
        {"4.9e-324", true, 4.9e-324},
        {"1e5", false, 0},
        {"1.e5", false, 0},
        {"1.5e", false, 0},
        {"1.5e+", false, 0},
        {"15", false, 0},
        {"1.", false, 0},
        {"-.5", false, 0},
        {".5", false, 0},
        {"1.5x", false, 0},
        {" 1.5", false, 0},
        {"1.5 ", false, 0},
        {"1..5", false, 0},
        {"--1.5", false, 0},
        {"inf", false, 0},
        {"nan", false, 0},
        {"", false, 0},
        {"1.8e308", false, 0},
        {"0x10", false, 0},
        {"1.0e99999999999999999999", false, 0},
        /* ',' is a radix point too (erl: 1.5, -0.015) */
        {"1,5", true, 1.5},
        {"-1,5E-2", true, -0.015},
        {"1,5e", false, 0},
        {"1,,5", false, 0},
        {"1.5,", false, 0},
        {"1.5e-310", true, 1.5e-310},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[2 + ETF_FLOAT_EXT_LEN];
        memset(b, 0, sizeof b);
        b[0] = 131;
        b[1] = 99;
        memcpy(b + 2, cases[i].text, strlen(cases[i].text));
        term_t t;
        etf_error_t err;
        int rc = etf_decode(&cu_heap, b, sizeof b, NULL, &t, NULL, &err);
        if (cases[i].ok) {
            CU_ASSERT(rc == GD_OK && term_is_float(t) && term_float_value(t) == cases[i].value);
        } else {
            CU_ASSERT(rc == ETF_EFLOAT && err.offset == 1);
        }
        if ((rc == GD_OK) != cases[i].ok)
            fprintf(stderr, "\nFLOAT_EXT \"%s\": rc=%d\n", cases[i].text, rc);
    }
    /* text after the first NUL is ignored */
    uint8_t b[2 + ETF_FLOAT_EXT_LEN] = {131, 99, '1', '.', '5', 0, 'a', 'b', 'c'};
    term_t t;
    CU_ASSERT(etf_decode(&cu_heap, b, sizeof b, NULL, &t, NULL, NULL) == GD_OK &&
              term_float_value(t) == 1.5);
    /*
     * 31 bytes without a NUL: OTP's scan runs on into the bytes after the
     * field, the term still ending 31 bytes on (erl: "1." + 29 zeros alone
     * is badarg; followed by "e5\0" it is 100000.0, by "5\0" or "\0" 1.0, by
     * "x\0" badarg).  At the input's end girder fails where OTP reads past
     * the binary.
     */
    uint8_t run[2 + ETF_FLOAT_EXT_LEN + 3] = {131, 99, '1', '.'};
    memset(run + 4, '0', ETF_FLOAT_EXT_LEN - 2);
    size_t used = 0;
    CU_ASSERT(cu_decode_fails(run, 2 + ETF_FLOAT_EXT_LEN, NULL, ETF_EFLOAT, 1));
    memcpy(run + 2 + ETF_FLOAT_EXT_LEN, "e5", 3);
    CU_ASSERT(etf_decode(&cu_heap, run, sizeof run, NULL, &t, &used, NULL) == GD_OK &&
              term_float_value(t) == 1e5 && used == 2 + ETF_FLOAT_EXT_LEN);
    memcpy(run + 2 + ETF_FLOAT_EXT_LEN, "5", 2);
    CU_ASSERT(etf_decode(&cu_heap, run, sizeof run - 1, NULL, &t, NULL, NULL) == GD_OK &&
              term_float_value(t) == 1.0);
    CU_ASSERT(etf_decode(&cu_heap, run, sizeof run - 2, NULL, &t, NULL, NULL) == ETF_EFLOAT);
    memcpy(run + 2 + ETF_FLOAT_EXT_LEN, "x", 2);
    CU_ASSERT(etf_decode(&cu_heap, run, sizeof run - 1, NULL, &t, NULL, NULL) == ETF_EFLOAT);
    run[2 + ETF_FLOAT_EXT_LEN] = 0;
    CU_ASSERT(etf_decode(&cu_heap, run, 3 + ETF_FLOAT_EXT_LEN, NULL, &t, NULL, NULL) == GD_OK &&
              term_float_value(t) == 1.0);
    cu_teardown();
}

/* ---- atoms ---- */

static void test_atoms(void)
{
    cu_setup();
    CU_ASSERT(DEC(131, 100, 0, 1, 97) == heap_atom("a"));
    CU_ASSERT(DEC(131, 119, 2, 206, 177) == heap_atom("\xce\xb1"));
    /* 'ö' as Latin-1 ATOM_EXT, SMALL_ATOM_EXT and UTF-8: one atom */
    term_t o = heap_atom("\xc3\xb6");
    CU_ASSERT(DEC(131, 100, 0, 1, 246) == o);
    CU_ASSERT(DEC(131, 115, 1, 246) == o);
    CU_ASSERT(DEC(131, 119, 2, 195, 182) == o);
    CU_ASSERT(DEC(131, 118, 0, 2, 195, 182) == o);
    CU_ASSERT(DEC(131, 100, 0, 0) == ATOM_EMPTY);
    CU_ASSERT(DEC(131, 119, 1, 0) == heap_atom("\0") || heap_atom_chars(DEC(131, 119, 1, 0)) == 1);
    /* 255 characters: the longest atom, in both encodings */
    uint8_t b[4 + 4 * 255];
    b[0] = 131;
    b[1] = 100;
    b[2] = 0;
    b[3] = 255;
    memset(b + 4, 'x', 255);
    term_t t = dec(b, 4 + 255);
    CU_ASSERT(term_is_atom(t) && heap_atom_chars(t) == 255);
    b[1] = 118;
    b[2] = 1;
    b[3] = 254; /* 510 bytes: 255 x 'α' */
    for (int i = 0; i < 255; i++) {
        b[4 + 2 * i] = 0xCE;
        b[5 + 2 * i] = 0xB1;
    }
    t = dec(b, 4 + 510);
    CU_ASSERT(term_is_atom(t) && heap_atom_chars(t) == 255 && !heap_atom_is_latin1(t));
    /* repeated atoms hit the per-call cache: same term every time */
    t = DEC(131, 104, 3, 100, 0, 2, 111, 107, 100, 0, 2, 111, 107, 119, 2, 111, 107);
    CU_ASSERT(term_is_tuple(t) && term_tuple_elems(t)[0] == ATOM_OK &&
              term_tuple_elems(t)[1] == ATOM_OK && term_tuple_elems(t)[2] == ATOM_OK);
    cu_teardown();
}

static void test_atom_cache_ref(void)
{
    cu_setup();
    term_t refs[2] = {heap_atom("cached"), ATOM_TRUE};
    etf_decode_opts_t o = {0};
    o.atom_cache_refs = refs;
    o.atom_cache_count = 2;
    term_t t;
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 104, 2, 82, 0, 82, 1), &o, &t, NULL, NULL) == GD_OK);
    CU_ASSERT(term_is_tuple(t) && term_tuple_elems(t)[0] == refs[0] &&
              term_tuple_elems(t)[1] == ATOM_TRUE);
    /* in a pid node */
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 88, 82, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3), &o,
                         &t, NULL, NULL) == GD_OK);
    heap_ident_t id;
    heap_ident(t, &id);
    CU_ASSERT(id.node == refs[0] && id.words[0] == 1 && id.words[1] == 2 && id.creation == 3);
    /* index beyond the table, or no table (outside dist) */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 1, 82, 2), &o, ETF_EATOM_CACHE, 3);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 82, 0), NULL, ETF_EATOM_CACHE, 1);
    cu_teardown();
}

/* ---- lists, strings, tuples ---- */

static void test_lists(void)
{
    cu_setup();
    CU_ASSERT(DEC(131, 106) == TERM_NIL);
    CU_ASSERT(eq(DEC(131, 107, 0, 3, 97, 98, 99), LIST(SMALL('a'), SMALL('b'), SMALL('c'))));
    CU_ASSERT(DEC(131, 107, 0, 0) == TERM_NIL); /* STRING_EXT of length 0 */
    term_t items[] = {SMALL(1), SMALL(2)};
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3), cu_list(2, items, SMALL(3))));
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 1, 98, 0, 0, 1, 0, 106), LIST(SMALL(256))));
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 1, 100, 0, 1, 97, 106), LIST(heap_atom("a"))));
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 100, 0, 1, 120),
                 cu_list(2, items, heap_atom("x"))));
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 3, 97, 97, 97, 98, 98, 0, 0, 1, 44, 106),
                 LIST(SMALL('a'), SMALL('b'), SMALL(300))));
    /* LIST_EXT of length 0 is its tail (OTP 25) */
    CU_ASSERT(DEC(131, 108, 0, 0, 0, 0, 106) == TERM_NIL);
    CU_ASSERT(DEC(131, 108, 0, 0, 0, 0, 100, 0, 1, 120) == heap_atom("x"));
    /* a LIST_EXT tail that is itself a LIST_EXT makes one list */
    CU_ASSERT(eq(DEC(131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106),
                 LIST(SMALL(1), SMALL(2))));
    /* 65535 bytes as STRING_EXT */
    size_t n = 65535;
    uint8_t *b = malloc(4 + n);
    b[0] = 131;
    b[1] = 107;
    b[2] = 0xFF;
    b[3] = 0xFF;
    for (size_t i = 0; i < n; i++)
        b[4 + i] = (uint8_t)i;
    term_t t = dec(b, 4 + n);
    size_t count = 0;
    bool ok = true;
    for (; term_is_list(t); t = term_cdr(t), count++)
        ok = ok && term_car(t) == SMALL((uint8_t)count);
    CU_ASSERT(ok && count == n && t == TERM_NIL);
    free(b);
    cu_teardown();
}

static void test_tuples(void)
{
    cu_setup();
    term_t t = DEC(131, 104, 0);
    CU_ASSERT(term_is_tuple(t) && term_tuple_arity(t) == 0);
    CU_ASSERT(eq(DEC(131, 104, 2, 100, 0, 1, 97, 97, 1), TUPLE(heap_atom("a"), SMALL(1))));
    /* LARGE_TUPLE_EXT, including a small arity in the large form */
    CU_ASSERT(eq(DEC(131, 105, 0, 0, 0, 2, 97, 1, 97, 2), TUPLE(SMALL(1), SMALL(2))));
    uint8_t b[6 + 2 * 300];
    b[0] = 131;
    b[1] = 105;
    b[2] = 0;
    b[3] = 0;
    b[4] = 1;
    b[5] = 44;
    for (int i = 0; i < 300; i++) {
        b[6 + 2 * i] = 97;
        b[7 + 2 * i] = (uint8_t)i;
    }
    t = dec(b, sizeof b);
    CU_ASSERT(term_is_tuple(t) && term_tuple_arity(t) == 300 &&
              term_tuple_elems(t)[299] == SMALL(299 & 0xFF));
    cu_teardown();
}

/* ---- binaries ---- */

static void test_binaries(void)
{
    cu_setup();
    CU_ASSERT(eq(DEC(131, 109, 0, 0, 0, 3, 1, 2, 3), cu_binary("\1\2\3", 3)));
    CU_ASSERT(eq(DEC(131, 109, 0, 0, 0, 0), cu_binary("", 0)));
    heap_bin_view_t v;
    term_t t = DEC(131, 77, 0, 0, 0, 1, 3, 32);
    heap_bin_view(t, &v);
    CU_ASSERT(v.bit_size == 3 && v.bytes[0] == 32);
    t = DEC(131, 77, 0, 0, 0, 2, 4, 1, 32);
    heap_bin_view(t, &v);
    CU_ASSERT(v.bit_size == 12 && v.bytes[0] == 1 && v.bytes[1] == 32);
    t = DEC(131, 77, 0, 0, 0, 2, 1, 1, 128);
    heap_bin_view(t, &v);
    CU_ASSERT(v.bit_size == 9);
    /* bits 0 with length 0 is <<>>; bits 8 is a whole binary */
    CU_ASSERT(eq(DEC(131, 77, 0, 0, 0, 0, 0), cu_binary("", 0)));
    CU_ASSERT(eq(DEC(131, 77, 0, 0, 0, 1, 8, 5), cu_binary("\5", 1)));
    /* dirty tail bits are masked: <<7:3>> */
    t = DEC(131, 77, 0, 0, 0, 1, 3, 0xFF);
    heap_bin_view(t, &v);
    CU_ASSERT(v.bit_size == 3 && v.bytes[0] == 0xE0);
    /* > 64 bytes lives off-heap, released when no term refers to it */
    size_t live = heap_binary_live_bytes();
    uint8_t b[6 + 1000];
    b[0] = 131;
    b[1] = 109;
    b[2] = 0;
    b[3] = 0;
    b[4] = 3;
    b[5] = 232;
    for (int i = 0; i < 1000; i++)
        b[6 + i] = (uint8_t)(i * 7);
    t = dec(b, sizeof b);
    CU_ASSERT(term_is_boxed_of(t, HDR_REFC_BIN));
    CU_ASSERT(eq(t, cu_binary(b + 6, 1000)));
    CU_ASSERT(heap_binary_live_bytes() == live + 2000);
    assert_binaries_released(&cu_heap, live);
    cu_teardown();
}

/* ---- maps ---- */

static void test_maps(void)
{
    cu_setup();
    term_t t = DEC(131, 116, 0, 0, 0, 0);
    CU_ASSERT(term_is_map(t) && heap_map_size(t) == 0);
    t = DEC(131, 116, 0, 0, 0, 2, 100, 0, 1, 97, 97, 2, 100, 0, 1, 98, 97, 1);
    CU_ASSERT(term_is_map(t) && heap_map_size(t) == 2 &&
              tg_map_get(t, heap_atom("a")) == SMALL(2) &&
              tg_map_get(t, heap_atom("b")) == SMALL(1));
    t = DEC(131, 116, 0, 0, 0, 2, 97, 1, 100, 0, 1, 97, 100, 0, 1, 97, 97, 1);
    CU_ASSERT(tg_map_get(t, SMALL(1)) == heap_atom("a") &&
              tg_map_get(t, heap_atom("a")) == SMALL(1));
    /* unsorted keys are accepted */
    t = DEC(131, 116, 0, 0, 0, 2, 97, 2, 97, 1, 97, 1, 97, 2);
    CU_ASSERT(heap_map_size(t) == 2 && tg_map_get(t, SMALL(1)) == SMALL(2));
    /* 1 and 1.0 are different keys */
    t = DEC(131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 70, 63, 240, 0, 0, 0, 0, 0, 0, 97, 2);
    CU_ASSERT(heap_map_size(t) == 2);
    /* nested maps as keys and values, and a 40-key (hash) map */
    t = DEC(131, 116, 0, 0, 0, 1, 116, 0, 0, 0, 1, 97, 1, 97, 2, 116, 0, 0, 0, 1, 97, 3, 116, 0, 0,
            0, 0);
    CU_ASSERT(term_is_map(t) && heap_map_size(t) == 1);
    uint8_t b[6 + 40 * 4];
    b[0] = 131;
    b[1] = 116;
    b[2] = b[3] = b[4] = 0;
    b[5] = 40;
    for (int i = 0; i < 40; i++) {
        b[6 + 4 * i] = 97;
        b[7 + 4 * i] = (uint8_t)(40 - i);
        b[8 + 4 * i] = 97;
        b[9 + 4 * i] = (uint8_t)i;
    }
    t = dec(b, sizeof b);
    CU_ASSERT(term_is_map(t) && heap_map_size(t) == 40 && tg_map_get(t, SMALL(40)) == SMALL(0) &&
              tg_map_get(t, SMALL(1)) == SMALL(39));
    cu_teardown();
}

/* ---- pids, ports, references ---- */

static void test_pids_ports_refs(void)
{
    cu_setup();
    heap_ident_t id;
    term_t t = DEC(131, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115,
                   116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0);
    /* This node ('nonode@nohost', creation 0 by default): the local form. */
    CU_ASSERT_FATAL(term_is_local_pid(t));
    heap_ident(t, &id);
    CU_ASSERT(id.node == ATOM_NONODE && id.words[0] == 9 && id.words[1] == 0 && id.creation == 0);
    /* full 32-bit id/serial/creation */
    t = DEC(131, 88, 100, 0, 1, 97, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255);
    heap_ident(t, &id);
    CU_ASSERT(id.words[0] == UINT32_MAX && id.words[1] == UINT32_MAX && id.creation == UINT32_MAX);
    /* old PID_EXT (creation 8 bits, at most 3) */
    t = DEC(131, 103, 100, 0, 1, 97, 0, 0, 0, 1, 0, 0, 0, 0, 3);
    heap_ident(t, &id);
    CU_ASSERT(term_is_ext_pid(t) && id.words[0] == 1 && id.creation == 3);

    t = DEC(131, 89, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0,
            0, 0, 0, 0, 0, 0, 0);
    CU_ASSERT_FATAL(term_is_local_port(t)); /* this node's */
    heap_ident(t, &id);
    CU_ASSERT(id.node == ATOM_NONODE && id.port_id == 0 && id.creation == 0);
    t = DEC(131, 120, 100, 0, 1, 97, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7);
    heap_ident(t, &id);
    CU_ASSERT(term_is_ext_port(t) && id.port_id == ((uint64_t)1 << 32) && id.creation == 7);
    t = DEC(131, 102, 100, 0, 1, 97, 0, 0, 0, 1, 3);
    heap_ident(t, &id);
    CU_ASSERT(term_is_ext_port(t) && id.port_id == 1 && id.creation == 3);

    t = DEC(131, 90, 0, 3, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115,
            116, 0, 0, 0, 0, 0, 3, 215, 144, 219, 124, 0, 2, 52, 252, 159, 146);
    CU_ASSERT_FATAL(term_is_local_ref(t));
    heap_ident(t, &id);
    CU_ASSERT(id.node == ATOM_NONODE && id.nwords == 3 && id.words[0] == 0x0003D790 &&
              id.words[1] == 0xDB7C0002 && id.words[2] == 0x34FC9F92);
    t = DEC(131, 90, 0, 5, 100, 0, 1, 97, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0,
            4, 0, 0, 0, 5);
    heap_ident(t, &id);
    CU_ASSERT(id.nwords == 5 && id.words[4] == 5 && id.creation == 9);
    t = DEC(131, 90, 0, 0, 100, 0, 1, 97, 0, 0, 0, 1); /* NEWER_REFERENCE len 0 */
    heap_ident(t, &id);
    CU_ASSERT(term_is_ref(t) && id.nwords == 0);
    t = DEC(131, 114, 0, 3, 100, 0, 1, 97, 1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1);
    heap_ident(t, &id);
    CU_ASSERT(term_is_ref(t) && id.nwords == 3 && id.creation == 1 && id.words[0] == 3);
    t = DEC(131, 101, 100, 0, 1, 97, 0, 3, 255, 255, 1); /* REFERENCE_EXT, 18-bit id */
    heap_ident(t, &id);
    CU_ASSERT(term_is_ref(t) && id.nwords == 1 && id.words[0] == 0x3FFFF && id.creation == 1);
    cu_teardown();
}

/* ---- funs and exports ---- */

/* fun() -> 42 end from module probe3 (term_to_binary on OTP 25). */
static const uint8_t FUN_BYTES[] = {
    131, 112, 0,   0,   0,   74,  0,   72,  109, 129, 235, 234, 231, 28,  78,  240, 236, 181, 105,
    119, 255, 33,  13,  0,   0,   0,   0,   0,   0,   0,   0,   100, 0,   6,   112, 114, 111, 98,
    101, 51,  97,  0,   98,  2,   67,  108, 15,  88,  100, 0,   13,  110, 111, 110, 111, 100, 101,
    64,  110, 111, 104, 111, 115, 116, 0,   0,   0,   9,   0,   0,   0,   0,   0,   0,   0,   0};

/* fun() -> Y end with Y = self() (one free variable). */
static const uint8_t FUN1_BYTES[] = {
    131, 112, 0,   0,   0,   103, 0,   125, 196, 28,  99,  126, 23,  171, 151, 232, 120, 250,
    148, 116, 184, 199, 209, 0,   0,   0,   0,   0,   0,   0,   1,   100, 0,   6,   112, 114,
    111, 98,  101, 52,  97,  0,   98,  3,   238, 32,  227, 88,  100, 0,   13,  110, 111, 110,
    111, 100, 101, 64,  110, 111, 104, 111, 115, 116, 0,   0,   0,   9,   0,   0,   0,   0,
    0,   0,   0,   0,   88,  100, 0,   13,  110, 111, 110, 111, 100, 101, 64,  110, 111, 104,
    111, 115, 116, 0,   0,   0,   9,   0,   0,   0,   0,   0,   0,   0,   0};

static void test_funs_exports(void)
{
    cu_setup();
    term_t t = DEC(131, 113, 100, 0, 5, 108, 105, 115, 116, 115, 100, 0, 3, 109, 97, 112, 97, 2);
    CU_ASSERT_FATAL(term_is_export(t));
    CU_ASSERT(term_boxed_ptr(t)[1] == heap_atom("lists") &&
              term_boxed_ptr(t)[2] == heap_atom("map") && term_boxed_ptr(t)[3] == SMALL(2));
    /* arity given as INTEGER_EXT or a (small) bignum: OTP accepts both */
    t = DEC(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 98, 0, 0, 0, 1);
    CU_ASSERT(term_is_export(t) && term_boxed_ptr(t)[3] == SMALL(1));
    t = DEC(131, 113, 115, 1, 109, 119, 1, 102, 110, 1, 0, 5);
    CU_ASSERT(term_is_export(t) && term_boxed_ptr(t)[3] == SMALL(5));

    t = dec(FUN_BYTES, sizeof FUN_BYTES);
    CU_ASSERT_FATAL(term_is_fun(t));
    heap_fun_info_t fi;
    heap_fun_info(t, &fi);
    CU_ASSERT(fi.arity == 0 && fi.index == 0 && fi.num_free == 0 &&
              fi.module == heap_atom("probe3") && fi.old_index == SMALL(0) &&
              fi.old_uniq == SMALL(0x02436C0F) && fi.uniq[0] == 72 && fi.uniq[15] == 13 &&
              term_is_pid(fi.pid));
    t = dec(FUN1_BYTES, sizeof FUN1_BYTES);
    CU_ASSERT_FATAL(term_is_fun(t));
    heap_fun_info(t, &fi);
    CU_ASSERT(fi.num_free == 1 && term_is_pid(term_fun_free(t)[0]));
    cu_teardown();
}

/*
 * NEW_FUN_EXT's Pid slot holding [] (issue 12's reproducer, from OTP 25's
 * differential run): binary_to_term/1 accepts it (fun_info(F, pid) is []),
 * girder keeps the term and writes it back, so OTP 26's form of the same
 * fun (SMALL_ATOM_UTF8_EXT module) re-encodes to the identical bytes; a
 * nested term in the slot round-trips too.
 */
static void test_fun_any_creator(void)
{
    cu_setup();
    static const uint8_t repro[] = {
        0x83, 0x70, 0x00, 0x00, 0x00, 0x4c, 0x00, 0x20, 0x59, 0xb3, 0x82, 0x2d, 0x2f,
        0xab, 0xe4, 0x85, 0xc3, 0xbe, 0x84, 0x95, 0x38, 0x0a, 0x01, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x77, 0x0a, 0x67, 0x65, 0x6e, 0x5f, 0x63, 0x6f,
        0x72, 0x70, 0x75, 0x73, 0x61, 0x14, 0x62, 0x01, 0x02, 0xcd, 0x9c, 0x6a};
    term_t t = dec(repro, sizeof repro);
    CU_ASSERT_FATAL(term_is_fun(t));
    heap_fun_info_t fi;
    heap_fun_info(t, &fi);
    CU_ASSERT(fi.pid == TERM_NIL && fi.index == 20 && fi.num_free == 0);
    etf_encode_opts_t eo;
    etf_encode_opts_init(&eo);
    eo.otp_release = 26;
    etf_buf_t out = {0};
    CU_ASSERT_FATAL(etf_encode(t, &eo, &out) == GD_OK);
    /* The mutated input's Size (76) is a lie OTP does not check; the
     * re-encoding has the true one, 49 bytes from the Size field on. */
    uint8_t canonical[sizeof repro];
    memcpy(canonical, repro, sizeof repro);
    canonical[5] = sizeof repro - 2;
    CU_ASSERT(out.len == sizeof repro && memcmp(out.data, canonical, sizeof repro) == 0);
    /* {[], [1]} in the slot, then one free variable (the atom a) */
    uint8_t nested[sizeof repro + 16];
    memcpy(nested, repro, sizeof repro - 1);
    nested[30] = 1; /* NumFree */
    static const uint8_t tail[] = {0x68, 0x02, 0x6a, 0x6b, 0x00, 0x01, 0x01, 0x77, 0x01, 0x61};
    memcpy(nested + sizeof repro - 1, tail, sizeof tail);
    size_t n = sizeof repro - 1 + sizeof tail;
    nested[5] = (uint8_t)(n - 2); /* Size: from the Size field to the end */
    t = dec(nested, n);
    CU_ASSERT_FATAL(term_is_fun(t));
    heap_fun_info(t, &fi);
    CU_ASSERT(term_is_tuple(fi.pid) && fi.num_free == 1 && term_fun_free(t)[0] == heap_atom("a"));
    out.len = 0;
    CU_ASSERT_FATAL(etf_encode(t, &eo, &out) == GD_OK);
    CU_ASSERT(out.len == n && memcmp(out.data, nested, n) == 0);
    size_t size = 0;
    CU_ASSERT(etf_encoded_size(t, &eo, &size) == GD_OK && size == n - 1);
    etf_buf_free(&out);
    cu_teardown();
}

/* The deviations from binary_to_term that etf.h documents, one by one. */
static void test_documented_deviations(void)
{
    cu_setup();
    /* trailing bytes: accepted with *used (binary_to_term/1 and [used]) */
    static const uint8_t two[] = {131, 97, 1, 97, 2};
    term_t t;
    size_t used = 0;
    CU_ASSERT(etf_decode(&cu_heap, two, sizeof two, NULL, &t, &used, NULL) == GD_OK &&
              t == SMALL(1) && used == 3);
    etf_decode_opts_t o = {0};
    o.no_trailing = true;
    CU_ASSERT(cu_decode_fails(two, sizeof two, &o, ETF_ETRAILING, 3));
    /* OTP's internal atom-index tags are unknown here */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 73, 0, 0, 0, 1), NULL, ETF_EUNKNOWN_TAG, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 75, 0, 0, 0, 1), NULL, ETF_EUNKNOWN_TAG, 1);
    /* EXPORT_EXT arity 255 is the most (OTP takes 256) */
    t = DEC(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 97, 255);
    CU_ASSERT(term_is_export(t) && term_boxed_ptr(t)[3] == SMALL(255));
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 98, 0, 0, 1, 0), NULL,
                           ETF_EEXPORT, 1);
    /* nesting beyond max_depth */
    o = (etf_decode_opts_t){.max_depth = 2};
    CU_ASSERT(etf_decode(&cu_heap, (const uint8_t[]){131, 104, 1, 104, 1, 106}, 6, &o, &t, NULL,
                         NULL) == GD_OK);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 1, 104, 1, 104, 1, 106), &o, ETF_EDEPTH, 5);
    cu_teardown();
}

/* NEW_FUN_EXT fields as OTP 25 checks them. */
static void test_fun_fields(void)
{
    cu_setup();
    /* A fun of module 'nomod' with the given OldIndex/OldUniq/pid/free bytes. */
    uint8_t b[2048];
    const uint8_t pid[] = {88, 100, 0, 1, 'n', 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0};
    struct {
        uint8_t oi[12], oi_n, ou[12], ou_n;
        uint32_t num_free;
        int expect;
        int64_t oi_val, ou_val;
    } cases[] = {
        {{97, 0}, 2, {97, 0}, 2, 0, GD_OK, 0, 0},
        /* OldIndex/OldUniq are kept as signed 32-bit values, as OTP re-encodes them */
        {{110, 6, 0, 0, 0, 0, 0, 0, 1}, 9, {97, 0}, 2, 0, GD_OK, 0, 0},
        {{98, 255, 255, 255, 255}, 5, {110, 4, 0, 0, 0, 0, 128}, 7, 0, GD_OK, -1, INT32_MIN},
        {{110, 5, 0, 7, 0, 0, 0, 1}, 8, {97, 0}, 2, 0, GD_OK, 7, 0},
        /* 2^59 is not a small: rejected */
        {{110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 8}, 11, {97, 0}, 2, 0, ETF_EFUN, 0, 0},
        {{100, 0, 1, 'a'}, 4, {97, 0}, 2, 0, ETF_EFUN, 0, 0},
        {{97, 0}, 2, {70, 0, 0, 0, 0, 0, 0, 0, 0}, 9, 0, ETF_EFUN, 0, 0},
        {{97, 0}, 2, {97, 0}, 2, 255, GD_OK, 0, 0},
        {{97, 0}, 2, {97, 0}, 2, 256, ETF_EFUN, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 0;
        b[n++] = 131;
        b[n++] = 112;
        memset(b + n, 0, 4 + 1 + 16 + 4);
        n += 4 + 1 + 16 + 4;
        uint32_t nf = cases[c].num_free;
        b[n++] = (uint8_t)(nf >> 24);
        b[n++] = (uint8_t)(nf >> 16);
        b[n++] = (uint8_t)(nf >> 8);
        b[n++] = (uint8_t)nf;
        memcpy(b + n, (const uint8_t[]){100, 0, 5, 'n', 'o', 'm', 'o', 'd'}, 8);
        n += 8;
        memcpy(b + n, cases[c].oi, cases[c].oi_n);
        n += cases[c].oi_n;
        memcpy(b + n, cases[c].ou, cases[c].ou_n);
        n += cases[c].ou_n;
        memcpy(b + n, pid, sizeof pid);
        n += sizeof pid;
        for (uint32_t i = 0; i < cases[c].num_free; i++) {
            b[n++] = 97;
            b[n++] = (uint8_t)i;
        }
        term_t t;
        etf_error_t err;
        int rc = etf_decode(&cu_heap, b, n, NULL, &t, NULL, &err);
        CU_ASSERT(rc == cases[c].expect);
        if (rc != cases[c].expect)
            fprintf(stderr, "\nfun case %zu: rc=%d at %zu\n", c, rc, err.offset);
        if (rc == GD_OK) {
            heap_fun_info_t fi;
            heap_fun_info(t, &fi);
            CU_ASSERT(fi.old_index == SMALL(cases[c].oi_val) &&
                      fi.old_uniq == SMALL(cases[c].ou_val));
            CU_ASSERT(fi.num_free == cases[c].num_free);
        }
    }
    /* The creator slot: old PID_EXT is fine, and so is any other term
     * (OTP 25 decodes and keeps whatever is there), kept as it is. */
    uint8_t head[] = {131, 112, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   0, 0, 0,   0,  0, 0,  0, 0,
                      0,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 1, 'm', 97, 0, 97, 0};
    memcpy(b, head, sizeof head);
    memcpy(b + sizeof head, (const uint8_t[]){103, 100, 0, 1, 'a', 0, 0, 0, 1, 0, 0, 0, 0, 1}, 14);
    term_t t;
    CU_ASSERT(etf_decode(&cu_heap, b, sizeof head + 14, NULL, &t, NULL, NULL) == GD_OK);
    memcpy(b + sizeof head, (const uint8_t[]){100, 0, 1, 'a'}, 4);
    CU_ASSERT(etf_decode(&cu_heap, b, sizeof head + 4, NULL, &t, NULL, NULL) == GD_OK);
    heap_fun_info_t slot;
    heap_fun_info(t, &slot);
    CU_ASSERT(slot.pid == heap_atom("a"));
    /* the slot is a term like any other: missing or malformed there fails */
    CU_ASSERT(cu_decode_fails(b, sizeof head, NULL, ETF_ETOO_LARGE, 1));
    b[sizeof head] = 0;
    CU_ASSERT(cu_decode_fails(b, sizeof head + 4, NULL, ETF_EUNKNOWN_TAG, sizeof head));
    /* the Size field is not checked (OTP 25 ignores it): 0 and a lie are accepted */
    uint8_t lie[sizeof FUN_BYTES];
    memcpy(lie, FUN_BYTES, sizeof lie);
    lie[5] = 0;
    CU_ASSERT(etf_decode(&cu_heap, lie, sizeof lie, NULL, &t, NULL, NULL) == GD_OK);
    lie[5] = 200;
    CU_ASSERT(etf_decode(&cu_heap, lie, sizeof lie, NULL, &t, NULL, NULL) == GD_OK);
    cu_teardown();
}

/* ---- envelopes: trailing bytes, compression ---- */

static void test_trailing_and_used(void)
{
    cu_setup();
    term_t t;
    size_t used = 0;
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 97, 1, 0, 0), NULL, &t, &used, NULL) == GD_OK);
    CU_ASSERT(t == SMALL(1) && used == 3);
    etf_decode_opts_t o = {0};
    o.no_trailing = true;
    CU_ASSERT_DECODE_FAILS(BYTES(131, 97, 1, 0), &o, ETF_ETRAILING, 3);
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 97, 1), &o, &t, &used, NULL) == GD_OK && used == 3);
    /* etf_decode_body: no version byte */
    CU_ASSERT(etf_decode_body(&cu_heap, BYTES(104, 1, 97, 7, 9), NULL, &t, &used, NULL) == GD_OK);
    CU_ASSERT(used == 4 && term_is_tuple(t) && term_tuple_elems(t)[0] == SMALL(7));
    cu_teardown();
}

static void test_compressed(void)
{
    cu_setup();
    term_t t;
    size_t used;
    /* 100 zeros, level 6 and level 1, as OTP 25 emits them */
    static const uint8_t l6[] = {131, 80, 0,   0, 0, 103, 120, 156, 203, 102,
                                 72,  97, 160, 3, 0, 0,   82,  232, 0,   208};
    static const uint8_t l1[] = {131, 80, 0,   0, 0, 103, 120, 1,   203, 102,
                                 72,  97, 160, 3, 0, 0,   82,  232, 0,   208};
    for (int k = 0; k < 2; k++) {
        const uint8_t *b = k ? l1 : l6;
        CU_ASSERT_FATAL(etf_decode(&cu_heap, b, sizeof l6, NULL, &t, &used, NULL) == GD_OK);
        CU_ASSERT(used == sizeof l6);
        size_t n = 0;
        bool zeros = true;
        for (; term_is_list(t); t = term_cdr(t), n++)
            zeros = zeros && term_car(t) == SMALL(0);
        CU_ASSERT(n == 100 && zeros && t == TERM_NIL);
    }
    /* bytes after the zlib stream: reported by *used */
    uint8_t tr[sizeof l6 + 2];
    memcpy(tr, l6, sizeof l6);
    tr[sizeof l6] = 9;
    tr[sizeof l6 + 1] = 9;
    CU_ASSERT(etf_decode(&cu_heap, tr, sizeof tr, NULL, &t, &used, NULL) == GD_OK &&
              used == sizeof l6);
    cu_teardown();
}

/* A COMPRESSED term with the given declared size and inflated body. */
static size_t make_compressed(uint8_t *out, size_t cap, uint32_t declared, const uint8_t *body,
                              size_t n)
{
    uLongf zlen = (uLongf)(cap - 6);
    if (compress2(out + 6, &zlen, body, n, 6) != Z_OK)
        return 0;
    out[0] = 131;
    out[1] = 80;
    out[2] = (uint8_t)(declared >> 24);
    out[3] = (uint8_t)(declared >> 16);
    out[4] = (uint8_t)(declared >> 8);
    out[5] = (uint8_t)declared;
    return 6 + zlen;
}

static void test_compressed_errors(void)
{
    cu_setup();
    uint8_t buf[4096];
    uint8_t body[5 + 2 * 999];
    /* a tuple of 999 zeros (LARGE_TUPLE_EXT) */
    body[0] = 105;
    body[1] = 0;
    body[2] = 0;
    body[3] = 3;
    body[4] = 231;
    for (int i = 0; i < 999; i++) {
        body[5 + 2 * i] = 97;
        body[6 + 2 * i] = 0;
    }
    size_t bl = 5 + 2 * 999;
    term_t t;
    size_t n = make_compressed(buf, sizeof buf, (uint32_t)bl, body, bl);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT(etf_decode(&cu_heap, buf, n, NULL, &t, NULL, NULL) == GD_OK &&
              term_tuple_arity(t) == 999);
    /* D10: claims more than it inflates to */
    n = make_compressed(buf, sizeof buf, (uint32_t)bl + 1, body, bl);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ECOMPRESSED, 1));
    /* D9: claims less than it inflates to: the term inside the claim
     * decodes, the stream going on past it is refused ... */
    uint8_t small_int[100] = {97, 7};
    n = make_compressed(buf, sizeof buf, 2, small_int, sizeof small_int);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ECOMPRESSED, 1));
    /* ... and a term claiming more than the claim fails as it is met
     * (inflating stops there), the tuple of 999 in 100 bytes */
    n = make_compressed(buf, sizeof buf, 100, body, bl);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ETOO_LARGE, 1));
    /* size 0 */
    n = make_compressed(buf, sizeof buf, 0, body, 0);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ECOMPRESSED, 1));
    /* D8: a claim above the cap is refused before inflating */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 80, 255, 255, 255, 255, 120, 156, 1, 2, 3), NULL,
                           ETF_ETOO_LARGE, 1);
    etf_decode_opts_t o = {0};
    o.max_decompressed = 1000;
    n = make_compressed(buf, sizeof buf, (uint32_t)bl, body, bl);
    CU_ASSERT(cu_decode_fails(buf, n, &o, ETF_ETOO_LARGE, 1));
    o.max_decompressed = bl;
    CU_ASSERT(etf_decode(&cu_heap, buf, n, &o, &t, NULL, NULL) == GD_OK);
    /* a claim no zlib stream of this length could inflate to */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 80, 0, 16, 0, 0, 120, 156, 3, 0), NULL, ETF_ECOMPRESSED, 1);
    /* truncated zlib stream, corrupted checksum, raw deflate */
    n = make_compressed(buf, sizeof buf, (uint32_t)bl, body, bl);
    CU_ASSERT(cu_decode_fails(buf, n - 4, NULL, ETF_ECOMPRESSED, 1));
    buf[n - 1] ^= 1;
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ECOMPRESSED, 1));
    CU_ASSERT_DECODE_FAILS(BYTES(131, 80, 0, 0, 0, 2, 99, 76, 100, 4, 0), NULL, ETF_ECOMPRESSED, 1);
    /* truncated envelope */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 80, 0, 0), NULL, ETF_ETRUNCATED, 1);
    /* nested compression, and compression inside a term */
    uint8_t inner[64];
    size_t in = make_compressed(inner, sizeof inner, 2, (const uint8_t[]){97, 1}, 2);
    CU_ASSERT_FATAL(in > 0);
    n = make_compressed(buf, sizeof buf, (uint32_t)(in - 1), inner + 1, in - 1);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_ECOMPRESSED, 1));
    uint8_t tupled[80] = {131, 104, 1};
    memcpy(tupled + 3, inner + 1, in - 1);
    CU_ASSERT(cu_decode_fails(tupled, in + 2, NULL, ETF_ECOMPRESSED, 3));
    /* an error inside the inflated data is reported as if uncompressed:
     * {0, <bad tag>} fails at offset 4 of 131 104 2 97 0 63 */
    n = make_compressed(buf, sizeof buf, 5, (const uint8_t[]){104, 2, 97, 0, 63}, 5);
    CU_ASSERT(cu_decode_fails(buf, n, NULL, ETF_EUNKNOWN_TAG, 5));
    /* D9 again with a real zip bomb: 1 MiB of zeros claiming 100 bytes */
    size_t big_n = 1 << 20;
    uint8_t *zeros = calloc(1, big_n);
    uint8_t *bomb = malloc(big_n);
    zeros[0] = 107; /* STRING_EXT header with garbage after: never reached */
    n = make_compressed(bomb, big_n, 100, zeros, big_n);
    CU_ASSERT(n > 0 && n < 4096);
    CU_ASSERT(cu_decode_fails(bomb, n, NULL, ETF_ECOMPRESSED, 1));
    free(zeros);
    free(bomb);
    cu_teardown();
}

/* Deflates in[0..n) onto *out with `flush`; false on a zlib error. */
static bool deflate_piece(z_stream *zs, const uint8_t *in, size_t n, int flush, etf_buf_t *out)
{
    zs->next_in = (Bytef *)(uintptr_t)in;
    zs->avail_in = (uInt)n;
    do {
        if (etf_buf_reserve(out, 1 << 16) != GD_OK)
            return false;
        zs->next_out = out->data + out->len;
        zs->avail_out = 1 << 16;
        int zr = deflate(zs, flush);
        out->len += (1 << 16) - zs->avail_out;
        if (zr == Z_STREAM_ERROR)
            return false;
    } while (zs->avail_out == 0 || zs->avail_in != 0);
    return true;
}

/*
 * Issue 12's zip bomb: 131 80 Size + zlib of LIST_EXT with 10^9 NILs (1 GB
 * inflated) in about 1.6 MB.  Deflating 1 GB here would take seconds, so
 * the stream is assembled: after Z_FULL_FLUSH deflate's output for a chunk
 * depends on that chunk alone, so the output for 64 KiB of NILs is repeated
 * and the Adler-32 trailer recomputed for the whole.  The result is a valid
 * stream (inflating it all gives the 1 GB).
 */
static bool make_list_bomb(etf_buf_t *out, uint32_t *declared)
{
    const uint64_t nils = 1000000000ull + 1; /* the elements and the tail */
    const size_t chunk = 1 << 16;
    uint8_t hdr[5] = {ETF_LIST_EXT, 0x3B, 0x9A, 0xCA, 0x00}; /* 10^9 */
    uint8_t *js = malloc(chunk);
    if (js == NULL)
        return false;
    memset(js, ETF_NIL_EXT, chunk);
    uint64_t reps = nils / chunk, rest = nils % chunk;
    etf_buf_t a = {0}, b = {0}, c = {0};
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    bool ok = deflateInit(&zs, 9) == Z_OK;
    ok = ok && deflate_piece(&zs, hdr, sizeof hdr, Z_FULL_FLUSH, &a) &&
         deflate_piece(&zs, js, chunk, Z_FULL_FLUSH, &b) &&
         deflate_piece(&zs, js, (size_t)rest, Z_FINISH, &c);
    deflateEnd(&zs);
    uLong adler = adler32(adler32(0, NULL, 0), hdr, sizeof hdr);
    uLong chunk_adler = adler32(adler32(0, NULL, 0), js, (uInt)chunk);
    for (uint64_t i = 0; i < reps; i++)
        adler = adler32_combine(adler, chunk_adler, (z_off_t)chunk);
    adler = adler32_combine(adler, adler32(adler32(0, NULL, 0), js, (uInt)rest), (z_off_t)rest);
    size_t total = 6 + a.len + (size_t)reps * b.len + c.len;
    ok = ok && c.len >= 4 && etf_buf_reserve(out, total) == GD_OK;
    if (ok) {
        uint64_t size = sizeof hdr + nils;
        uint8_t env[6] = {ETF_VERSION_MAGIC,     ETF_COMPRESSED,       (uint8_t)(size >> 24),
                          (uint8_t)(size >> 16), (uint8_t)(size >> 8), (uint8_t)size};
        *declared = (uint32_t)size;
        memcpy(out->data, env, 6);
        out->len = 6;
        memcpy(out->data + out->len, a.data, a.len);
        out->len += a.len;
        for (uint64_t i = 0; i < reps; i++, out->len += b.len)
            memcpy(out->data + out->len, b.data, b.len);
        memcpy(out->data + out->len, c.data, c.len);
        out->len += c.len;
        for (int i = 0; i < 4; i++) /* the trailer: big-endian Adler-32 */
            out->data[out->len - 4 + i] = (uint8_t)(adler >> (24 - 8 * i));
    }
    etf_buf_free(&a);
    etf_buf_free(&b);
    etf_buf_free(&c);
    free(js);
    return ok;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/*
 * The bomb fails with ETF_EHEAP_LIMIT at once: the LIST_EXT header in the
 * first inflated bytes claims 2 * 10^9 heap words, beyond the 1 GiB
 * default budget, so the rest of the stream is never inflated.  Before the
 * budget it ran two minutes and peaked at 18 GB.  Bounded growth is
 * checked on the heap (words used) and on the process's peak RSS.
 */
static void test_zip_bomb_budget(void)
{
    cu_setup();
    etf_buf_t bomb = {0};
    uint32_t declared = 0;
    CU_ASSERT_FATAL(make_list_bomb(&bomb, &declared));
    CU_ASSERT(declared == 1000000006u);
    CU_ASSERT(bomb.len > 900000 && bomb.len < (size_t)4 << 20);
    size_t words_before = heap_used_words(&cu_heap);
    long rss_before = max_rss_kib();
    double t0 = now_seconds();
    term_t t;
    etf_error_t err;
    int rc = etf_decode(&cu_heap, bomb.data, bomb.len, NULL, &t, NULL, &err);
    double took = now_seconds() - t0;
    CU_ASSERT(rc == ETF_EHEAP_LIMIT && err.code == ETF_EHEAP_LIMIT && err.offset == 1);
    CU_ASSERT(took < 0.5);
    CU_ASSERT(heap_used_words(&cu_heap) - words_before < 4096);
    CU_ASSERT(max_rss_kib() - rss_before < 64 * 1024);
    if (rc != ETF_EHEAP_LIMIT || took >= 0.5)
        fprintf(stderr, "\nzip bomb: rc=%d in %.3f s, peak RSS +%ld KiB\n", rc, took,
                max_rss_kib() - rss_before);
    /* A budget below the declared inflated size refuses it before inflating. */
    etf_decode_opts_t o = {0};
    o.max_heap = (size_t)declared - 1;
    CU_ASSERT(cu_decode_fails(bomb.data, bomb.len, &o, ETF_EHEAP_LIMIT, 1));
    etf_buf_free(&bomb);

    /* The budget is the caller's: [1,2,...] of 1000 elements needs 2000
     * heap words (16000 bytes) and fits 16000 bytes but not one word less. */
    uint8_t list[6 + 2 * 1000 + 1] = {ETF_VERSION_MAGIC, ETF_LIST_EXT, 0, 0, 0x03, 0xE8};
    size_t n = 6;
    for (int i = 0; i < 1000; i++) {
        list[n++] = ETF_SMALL_INTEGER_EXT;
        list[n++] = (uint8_t)i;
    }
    list[n++] = ETF_NIL_EXT;
    o.max_heap = 16000;
    CU_ASSERT(etf_decode(&cu_heap, list, n, &o, &t, NULL, NULL) == GD_OK);
    o.max_heap = 16000 - 8;
    CU_ASSERT(cu_decode_fails(list, n, &o, ETF_EHEAP_LIMIT, 1));
    cu_teardown();
}

/* ---- the bad-input list, docs/robustness.md §2 ---- */

static void test_bad_inputs_d1_d7(void)
{
    cu_setup();
    size_t before = heap_used_words(&cu_heap);
    /* D1 */
    CU_ASSERT_DECODE_FAILS(BYTES(131), NULL, ETF_ETRUNCATED, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(0), NULL, ETF_EVERSION, 0);
    CU_ASSERT(cu_decode_fails(NULL, 0, NULL, ETF_EVERSION, 0));
    CU_ASSERT_DECODE_FAILS(BYTES(130, 97, 1), NULL, ETF_EVERSION, 0);
    CU_ASSERT_DECODE_FAILS(BYTES(97, 1), NULL, ETF_EVERSION, 0);
    /* D2 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 100, 255, 255), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 100, 0), NULL, ETF_ETRUNCATED, 1);
    /* D3 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 107, 0, 5, 97), NULL, ETF_ETOO_LARGE, 1);
    /* D4: no allocation before the length is checked */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 108, 255, 255, 255, 255), NULL, ETF_ETOO_LARGE, 1);
    /* D5 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 255), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 3, 97, 1), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 2, 97, 1), NULL, ETF_ETRUNCATED, 5);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 2, 97, 1, 97), NULL, ETF_ETRUNCATED, 5);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104), NULL, ETF_ETRUNCATED, 1);
    /* D6 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 109, 255, 255, 255, 255), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 77, 255, 255, 255, 255, 3), NULL, ETF_ETOO_LARGE, 1);
    /* D7 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 111, 127, 255, 255, 255, 0), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 110, 5, 0, 1, 2), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT(heap_used_words(&cu_heap) == before);
    /* a nest of lengths each just fitting the remaining bytes cannot
     * multiply allocations: every pending slot is backed by a byte */
    uint8_t nest[5 * 2000 + 1];
    for (int i = 0; i < 2000; i++) {
        nest[5 * i] = 105;
        uint32_t left = (uint32_t)(sizeof nest - 5 * (size_t)(i + 1));
        nest[5 * i + 1] = (uint8_t)(left >> 24);
        nest[5 * i + 2] = (uint8_t)(left >> 16);
        nest[5 * i + 3] = (uint8_t)(left >> 8);
        nest[5 * i + 4] = (uint8_t)left;
    }
    heap_t h2;
    CU_ASSERT_FATAL(heap_init(&h2, 0) == GD_OK);
    term_t t;
    uint8_t *v = malloc(sizeof nest + 1);
    v[0] = 131;
    memcpy(v + 1, nest, sizeof nest - 1);
    CU_ASSERT(etf_decode(&h2, v, sizeof nest, NULL, &t, NULL, NULL) == ETF_ETOO_LARGE);
    CU_ASSERT(heap_used_words(&h2) < 8 * sizeof nest + 8192);
    heap_destroy(&h2);
    free(v);
    cu_teardown();
}

/* Builds 10^6 nested `prefix` headers around a final `leaf` byte string. */
static uint8_t *deep_input(const uint8_t *prefix, size_t plen, const uint8_t *suffix, size_t slen,
                           size_t depth, size_t *len)
{
    size_t n = 1 + depth * (plen + slen) + 1;
    uint8_t *b = malloc(n);
    size_t k = 0;
    b[k++] = 131;
    for (size_t i = 0; i < depth; i++) {
        memcpy(b + k, prefix, plen);
        k += plen;
    }
    b[k++] = 106;
    for (size_t i = 0; i < depth && slen > 0; i++) {
        memcpy(b + k, suffix, slen);
        k += slen;
    }
    *len = k;
    return b;
}

static void test_bad_inputs_d11_deep(void)
{
    cu_setup();
    const size_t depth = 1000000;
    size_t n;
    /* D11: 10^6 nested one-element lists [[[...]]] */
    uint8_t *b =
        deep_input((const uint8_t[]){108, 0, 0, 0, 1}, 5, (const uint8_t[]){106}, 1, depth, &n);
    CU_ASSERT(cu_decode_fails(b, n, NULL, ETF_EDEPTH, 1 + 5 * ETF_MAX_DEPTH_DEFAULT));
    etf_decode_opts_t o = {0};
    o.max_depth = depth;
    term_t t;
    CU_ASSERT(etf_decode(&cu_heap, b, n, &o, &t, NULL, NULL) == GD_OK);
    size_t d = 0;
    bool shape = true;
    while (term_is_list(t)) {
        shape = shape && term_cdr(t) == TERM_NIL;
        t = term_car(t);
        d++;
    }
    CU_ASSERT(shape && d == depth && t == TERM_NIL);
    /* ... and encoded back without a stack overflow */
    etf_encode_opts_t eo;
    etf_encode_opts_init(&eo);
    eo.max_depth = depth;
    term_t root;
    CU_ASSERT(etf_decode(&cu_heap, b, n, &o, &root, NULL, NULL) == GD_OK);
    etf_buf_t out = {0};
    CU_ASSERT(etf_encode(root, &eo, &out) == GD_OK);
    CU_ASSERT(out.len == n && memcmp(out.data, b, n) == 0);
    etf_buf_free(&out);
    /* the default encode depth refuses it cleanly */
    CU_ASSERT(etf_encode(root, NULL, &out) == ETF_EDEPTH && out.len == 0);
    etf_buf_free(&out);
    free(b);
    /* 10^6 nested one-tuples {{{...}}} */
    b = deep_input((const uint8_t[]){104, 1}, 2, NULL, 0, depth, &n);
    CU_ASSERT(cu_decode_fails(b, n, NULL, ETF_EDEPTH, 1 + 2 * ETF_MAX_DEPTH_DEFAULT));
    CU_ASSERT(etf_decode(&cu_heap, b, n, &o, &t, NULL, NULL) == GD_OK);
    free(b);
    /* depth counts nesting exactly: max_depth 2 allows {{1}} not {{{1}}} */
    o.max_depth = 2;
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 104, 1, 104, 1, 97, 1), &o, &t, NULL, NULL) == GD_OK);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 1, 104, 1, 104, 1, 97, 1), &o, ETF_EDEPTH, 5);
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 104, 1, 104, 1, 104, 0), &o, &t, NULL, NULL) ==
              GD_OK);
    cu_teardown();
}

static void test_bad_inputs_d12_d15(void)
{
    cu_setup();
    /* D12 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 77, 0, 0, 0, 3, 0, 11, 22, 33), NULL, ETF_EBITS, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 77, 0, 0, 0, 3, 9, 11, 22, 33), NULL, ETF_EBITS, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 77, 0, 0, 0, 0, 1), NULL, ETF_EBITS, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 77, 0, 0, 0), NULL, ETF_ETRUNCATED, 1);
    /* D13 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 1, 0xC2, 0xA3), NULL, ETF_EATOM, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 2, 0xC3, 0x28), NULL, ETF_EATOM, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 2, 0xC0, 0x80), NULL, ETF_EATOM, 1); /* overlong */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 3, 0xED, 0xA0, 0x80), NULL, ETF_EATOM,
                           1); /* surrogate */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 4, 0xF4, 0x90, 0x80, 0x80), NULL, ETF_EATOM, 1);
    /* atoms longer than 255 characters, in every encoding */
    uint8_t b[4 + 1100];
    b[0] = 131;
    b[1] = 100;
    b[2] = 1;
    b[3] = 0;
    memset(b + 4, 'a', 1100);
    CU_ASSERT(cu_decode_fails(b, 4 + 256, NULL, ETF_EATOM, 1));
    b[1] = 118;
    b[2] = 3;
    b[3] = 253; /* 1021 bytes */
    CU_ASSERT(cu_decode_fails(b, 4 + 1021, NULL, ETF_EATOM, 1));
    b[2] = 1;
    b[3] = 0; /* 256 ASCII characters */
    CU_ASSERT(cu_decode_fails(b, 4 + 256, NULL, ETF_EATOM, 1));
    for (int i = 0; i < 256; i++) { /* 256 two-byte characters */
        b[4 + 2 * i] = 0xC3;
        b[5 + 2 * i] = 0xB6;
    }
    b[2] = 2;
    b[3] = 0;
    CU_ASSERT(cu_decode_fails(b, 4 + 512, NULL, ETF_EATOM, 1));
    /* D14 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 63, 66), NULL, ETF_EUNKNOWN_TAG, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 1, 68), NULL, ETF_EUNKNOWN_TAG, 3);
    /* OTP 25's internal ETS tag ATOM_INTERNAL_REF3 ('K', an index into that
     * VM's atom table): binary_to_term takes it, girder cannot */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 75, 0, 3, 98), NULL, ETF_EUNKNOWN_TAG, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 117, 0, 0, 0, 0), NULL, ETF_EOLD_FUN, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 121, 1, 2, 3, 4, 5, 6, 7, 8, 97, 1), NULL, ETF_ELOCAL, 1);
    /* D15 */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 116, 255, 255, 255, 255), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 116, 0, 0, 0, 3, 97, 1, 97, 1, 97), NULL, ETF_ETOO_LARGE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 116, 0, 0, 0, 2, 97, 1, 97, 1), NULL, ETF_ETRUNCATED, 10);
    cu_teardown();
}

static void test_bad_inputs_d16_d19(void)
{
    cu_setup();
    /* D16: duplicate keys (OTP 25: badarg), also in hash-map size */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2), NULL,
                           ETF_EDUPLICATE_KEY, 1);
    CU_ASSERT_DECODE_FAILS(
        BYTES(131, 104, 2, 97, 0, 116, 0, 0, 0, 2, 100, 0, 1, 97, 106, 119, 1, 97, 106), NULL,
        ETF_EDUPLICATE_KEY, 5);
    /* 40 keys (hash map) with a duplicate; pairs are 3 bytes here */
    uint8_t m[6 + 40 * 3] = {131, 116, 0, 0, 0, 40};
    for (int i = 0; i < 40; i++) {
        m[6 + 3 * i] = 97;
        m[7 + 3 * i] = (uint8_t)(i == 39 ? 3 : i);
        m[8 + 3 * i] = 106;
    }
    CU_ASSERT(cu_decode_fails(m, sizeof m, NULL, ETF_EDUPLICATE_KEY, 1));
    /* D17: NaN, +Inf, -Inf */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 70, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0), NULL, ETF_EFLOAT, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 70, 0x7F, 0xF0, 0, 0, 0, 0, 0, 0), NULL, ETF_EFLOAT, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 70, 0xFF, 0xF0, 0, 0, 0, 0, 0, 0), NULL, ETF_EFLOAT, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 70, 0, 0, 0), NULL, ETF_ETRUNCATED, 1);
    /* D18: node / module not atoms */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 88, 97, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), NULL,
                           ETF_ENODE, 2);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 89, 106, 0, 0, 0, 1, 0, 0, 0, 0), NULL, ETF_ENODE, 2);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 90, 0, 1, 107, 0, 1, 97, 0, 0, 0, 0, 0, 0, 0, 1), NULL,
                           ETF_ENODE, 4);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 97, 1, 100, 0, 1, 102, 97, 1), NULL, ETF_EEXPORT, 2);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 100, 0, 1, 109, 97, 1, 97, 1), NULL, ETF_EEXPORT, 6);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 107, 0, 1, 1), NULL,
                           ETF_EEXPORT, 10);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 98, 255, 255, 255, 255),
                           NULL, ETF_EEXPORT, 1); /* negative arity */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 98, 0, 0, 1, 0), NULL,
                           ETF_EEXPORT, 1); /* 256: beyond what a girder export holds */
    /* old tags: creation above 3, and an 18-bit first reference word */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 103, 100, 0, 1, 97, 0, 0, 0, 1, 0, 0, 0, 0, 4), NULL,
                           ETF_ETYPE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 102, 100, 0, 1, 97, 0, 0, 0, 1, 4), NULL, ETF_ETYPE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 101, 100, 0, 1, 97, 0, 0, 0, 1, 4), NULL, ETF_ETYPE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 101, 100, 0, 1, 97, 0, 4, 0, 0, 1), NULL, ETF_ETYPE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 114, 0, 1, 100, 0, 1, 97, 1, 0, 4, 0, 0), NULL, ETF_ETYPE, 1);
    /* D19: more than 5 reference words; NEW_REFERENCE_EXT with none */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 90, 0, 6, 100, 0, 1, 97, 0, 0, 0, 0), NULL, ETF_EREF_LEN, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 114, 0, 6, 100, 0, 1, 97, 0), NULL, ETF_EREF_LEN, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 114, 0, 0, 100, 0, 1, 97, 1), NULL, ETF_EREF_LEN, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 90, 0, 2, 100, 0, 1, 97, 0, 0, 0, 0, 0, 0, 0, 1), NULL,
                           ETF_ETRUNCATED, 1);
    /* NEW_FUN_EXT: too many free variables for the bytes left, truncated header */
    uint8_t fun[sizeof FUN_BYTES];
    memcpy(fun, FUN_BYTES, sizeof fun);
    fun[30] = 200; /* NumFree = 200 with no free variables following */
    CU_ASSERT(cu_decode_fails(fun, sizeof fun, NULL, ETF_ETOO_LARGE, 1));
    CU_ASSERT(cu_decode_fails(FUN_BYTES, 20, NULL, ETF_ETRUNCATED, 1));
    cu_teardown();
}

static void test_bad_inputs_d20_safe(void)
{
    cu_setup();
    etf_decode_opts_t o = {0};
    o.safe = true;
    term_t t;
    /* existing atoms decode in safe mode */
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 100, 0, 2, 111, 107), &o, &t, NULL, NULL) == GD_OK &&
              t == ATOM_OK);
    uint32_t before = heap_atom_count();
    /* D20: an unknown atom; a pid/ref/port of an unknown node; a fun of an unknown module */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 1, 100, 0, 5, 'z', 'q', 'x', 'w', '1'), &o,
                           ETF_EATOM_UNSAFE, 3);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 5, 'z', 'q', 'x', 'w', '2'), &o, ETF_EATOM_UNSAFE, 1);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 115, 3, 'z', 'q', 0xF6), &o, ETF_EATOM_UNSAFE, 1);
    CU_ASSERT_DECODE_FAILS(
        BYTES(131, 88, 119, 5, 'z', 'q', '@', 'h', '3', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), &o,
        ETF_EATOM_UNSAFE, 2);
    CU_ASSERT_DECODE_FAILS(
        BYTES(131, 90, 0, 1, 119, 5, 'z', 'q', '@', 'h', '4', 0, 0, 0, 0, 0, 0, 0, 1), &o,
        ETF_EATOM_UNSAFE, 4);
    CU_ASSERT_DECODE_FAILS(BYTES(131, 89, 119, 5, 'z', 'q', '@', 'h', '5', 0, 0, 0, 1, 0, 0, 0, 0),
                           &o, ETF_EATOM_UNSAFE, 2);
    uint8_t fun[sizeof FUN_BYTES];
    memcpy(fun, FUN_BYTES, sizeof fun);
    memcpy(fun + 34, "zqxw_6", 6); /* module probe3 -> zqxw_6 */
    CU_ASSERT(cu_decode_fails(fun, sizeof fun, &o, ETF_EATOM_UNSAFE, 31));
    /* invalid atoms are still invalid, not merely unknown */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 119, 2, 0xC3, 0x28), &o, ETF_EATOM, 1);
    CU_ASSERT(heap_atom_count() == before);
    /* the same inputs create atoms without safe */
    CU_ASSERT(etf_decode(&cu_heap, BYTES(131, 119, 5, 'z', 'q', 'x', 'w', '2'), NULL, &t, NULL,
                         NULL) == GD_OK);
    CU_ASSERT(heap_atom_count() == before + 1);
    cu_teardown();
}

/* Errors in the middle of big terms leave no half-built term behind and no
 * off-heap binary unreleased: the one built before the failure is garbage
 * the next collection gives back. */
static void test_error_after_partial_build(void)
{
    cu_setup();
    size_t live = heap_binary_live_bytes();
    uint8_t b[3 + 2 * 100 + 6 + 100 + 1];
    size_t n = 0;
    b[n++] = 131;
    b[n++] = 104;
    b[n++] = 4;
    b[n++] = 109; /* a 100-byte (off-heap) binary */
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 100;
    memset(b + n, 7, 100);
    n += 100;
    b[n++] = 108; /* a list of 3, then a bad tag */
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 3;
    b[n++] = 97;
    b[n++] = 1;
    b[n++] = 63;
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 0;
    CU_ASSERT(cu_decode_fails(b, n, NULL, ETF_EUNKNOWN_TAG, 115));
    term_t t = TERM_NONE;
    CU_ASSERT(etf_decode(&cu_heap, b, n, NULL, &t, NULL, NULL) == ETF_EUNKNOWN_TAG &&
              t == TERM_NONE);
    CU_ASSERT(heap_binary_live_bytes() == live + 100); /* not yet collected */
    assert_binaries_released(&cu_heap, live);
    /* the same after running out of budget behind the binary: {Bin, List} */
    etf_decode_opts_t o = {0};
    o.max_heap = 4096;
    uint8_t over[3 + 5 + 100 + 5 + 1000 + 1] = {131, 104, 2, 109, 0, 0, 0, 100};
    memset(over + 8, 7, 100);
    memcpy(over + 108, (const uint8_t[]){108, 0, 0, 3, 232}, 5); /* 1000 elements: 16000 bytes */
    memset(over + 113, 106, 1001);
    CU_ASSERT(cu_decode_fails(over, sizeof over, &o, ETF_EHEAP_LIMIT, 108));
    CU_ASSERT(etf_decode(&cu_heap, over, sizeof over, &o, &t, NULL, NULL) == ETF_EHEAP_LIMIT);
    CU_ASSERT(heap_binary_live_bytes() == live + 100);
    assert_binaries_released(&cu_heap, live);
    cu_teardown();
}

/* heap/'s test hook (heap/gc_internal.h): the heap_area_alloc call that
 * counts this down to zero fails, as if memory were exhausted. */
extern _Thread_local unsigned heap_area_fail_countdown;

/* Running out of heap: ETF_ENOMEM at the term that could not be built,
 * nothing leaked, and the heap still usable afterwards. */
static void test_out_of_memory(void)
{
    size_t live = heap_binary_live_bytes();
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t t = TERM_NONE;
    etf_error_t err;
    static const uint8_t tuple[] = {131, 104, 2, 109, 0, 0, 0, 1, 7, 97, 1};
    heap_area_fail_countdown = 1; /* the young area, created by the first allocation */
    CU_ASSERT(etf_decode(&h, tuple, sizeof tuple, NULL, &t, NULL, &err) == ETF_ENOMEM);
    CU_ASSERT(err.code == ETF_ENOMEM && err.offset == 1 && t == TERM_NONE);
    heap_area_fail_countdown = 0;
    CU_ASSERT(etf_decode(&h, tuple, sizeof tuple, NULL, &t, NULL, NULL) == GD_OK &&
              term_is_tuple(t));
    /* a 100-byte (off-heap) binary built, then the young area for the
     * tuple behind it cannot grow: the binary is garbage, not leaked */
    uint8_t big[3 + 5 + 100 + 5 + 4000] = {131, 104, 2, 109, 0, 0, 0, 100};
    memcpy(big + 108, (const uint8_t[]){105, 0, 0, 7, 208}, 5); /* a 2000-tuple */
    for (size_t i = 0; i < 2000; i++)
        memcpy(big + 113 + 2 * i, (const uint8_t[]){97, 1}, 2);
    heap_area_fail_countdown = 1;
    int rc = etf_decode(&h, big, sizeof big, NULL, &t, NULL, &err);
    heap_area_fail_countdown = 0;
    CU_ASSERT(rc == ETF_ENOMEM && err.offset == 108);
    if (rc != ETF_ENOMEM)
        fprintf(stderr, "\nout of memory after a binary: rc=%d at %zu\n", rc, err.offset);
    assert_binaries_released(&h, live);
    heap_destroy(&h);
}

/* Inputs found by fz_etf_decode that once misbehaved. */
static void test_fuzz_regressions(void)
{
    cu_setup();
    /* A BINARY_EXT length checked against the bytes left minus the slots
     * still pending, where fewer bytes than pending slots were left after
     * its header (the subtraction wrapped and a 33 MB read followed). */
    CU_ASSERT_DECODE_FAILS(BYTES(131, 104, 4, 108, 0, 0, 0, 2, 97, 1, 108, 0, 0, 0, 2, 97, 2, 104,
                                 2, 70, 64, 12, 0, 0, 0, 0, 0, 0, 109, 2, 3, 101, 103, 4, 97),
                           NULL, ETF_ETOO_LARGE, 28);
    cu_teardown();
}

static const gd_test_case_t gd_tests[] = {
    {"integers", test_integers},
    {"floats", test_floats},
    {"float_ext_text", test_float_ext_text},
    {"atoms", test_atoms},
    {"atom_cache_ref", test_atom_cache_ref},
    {"lists", test_lists},
    {"tuples", test_tuples},
    {"binaries", test_binaries},
    {"maps", test_maps},
    {"pids_ports_refs", test_pids_ports_refs},
    {"funs_exports", test_funs_exports},
    {"fun_fields", test_fun_fields},
    {"fun_any_creator", test_fun_any_creator},
    {"documented_deviations", test_documented_deviations},
    {"zip_bomb_budget", test_zip_bomb_budget},
    {"trailing_and_used", test_trailing_and_used},
    {"compressed", test_compressed},
    {"compressed_errors", test_compressed_errors},
    {"bad_inputs_d1_d7", test_bad_inputs_d1_d7},
    {"bad_inputs_d11_deep", test_bad_inputs_d11_deep},
    {"bad_inputs_d12_d15", test_bad_inputs_d12_d15},
    {"bad_inputs_d16_d19", test_bad_inputs_d16_d19},
    {"bad_inputs_d20_safe", test_bad_inputs_d20_safe},
    {"error_after_partial_build", test_error_after_partial_build},
    {"out_of_memory", test_out_of_memory},
    {"fuzz_regressions", test_fuzz_regressions},
    {NULL, NULL},
};

GD_TEST_MAIN("etf_decode", gd_tests)
