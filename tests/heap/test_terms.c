/*
 * test_terms.c — term constructors and accessors (heap/terms.c): integers at
 * the small/big boundaries and their normalisation, floats, binaries (heap,
 * refcounted, sub-binaries), pids, ports, references, funs, exports, tuples,
 * lists, type classes, and the refcounts of shared binaries.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "heap.h"
#include "termgen_util.h"

static heap_t H;

static void setup(void)
{
    CU_ASSERT_FATAL(heap_init(&H, 0) == GD_OK);
}
static void teardown(void)
{
    heap_destroy(&H);
}

static void check_int64(int64_t v)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_int64(&H, v, &t) == GD_OK);
    CU_ASSERT(term_is_integer(t));
    CU_ASSERT_EQUAL(term_is_small(t), small_fits(v));
    CU_ASSERT_EQUAL(term_is_big(t), !small_fits(v));
    int64_t back = 0;
    CU_ASSERT_EQUAL(heap_integer_to_int64(t, &back), GD_OK);
    CU_ASSERT_EQUAL(back, v);
    if (term_is_big(t)) {
        CU_ASSERT_EQUAL(term_big_ndigits(t), 1);
        CU_ASSERT_EQUAL(term_big_negative(t), v < 0);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        CU_ASSERT_EQUAL(term_big_digits(t)[0], mag);
    } else {
        CU_ASSERT_EQUAL(term_small_value(t), v);
    }
    CU_ASSERT(heap_type_class(t) == HEAP_CLASS_NUMBER);
}

static void test_integers(void)
{
    setup();
    static const int64_t values[] = {
        0,
        1,
        -1,
        42,
        -42,
        SMALL_MAX,
        SMALL_MAX - 1,
        SMALL_MAX + 1,
        SMALL_MIN,
        SMALL_MIN + 1,
        SMALL_MIN - 1,
        INT64_MAX,
        INT64_MIN,
        INT64_MIN + 1,
        (int64_t)1 << 62,
        -((int64_t)1 << 62),
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        check_int64(values[i]);
    CU_ASSERT(small_fits(SMALL_MAX) && !small_fits(SMALL_MAX + 1));
    CU_ASSERT(small_fits(SMALL_MIN) && !small_fits(SMALL_MIN - 1));
    CU_ASSERT_EQUAL(SMALL_MAX, ((int64_t)1 << 59) - 1);

    term_t t;
    int64_t v;
    CU_ASSERT_FATAL(heap_make_uint64(&H, UINT64_MAX, &t) == GD_OK);
    CU_ASSERT(term_is_big(t) && !term_big_negative(t) && term_big_digits(t)[0] == UINT64_MAX);
    CU_ASSERT_EQUAL(heap_integer_to_int64(t, &v), GD_ESYSTEM_LIMIT);
    CU_ASSERT_FATAL(heap_make_uint64(&H, (uint64_t)INT64_MAX + 1, &t) == GD_OK);
    CU_ASSERT_EQUAL(heap_integer_to_int64(t, &v), GD_ESYSTEM_LIMIT);
    CU_ASSERT_FATAL(heap_make_uint64(&H, (uint64_t)SMALL_MAX, &t) == GD_OK);
    CU_ASSERT(term_is_small(t));
    CU_ASSERT_EQUAL(heap_integer_to_int64(ATOM_OK, &v), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_integer_to_int64(TERM_NIL, &v), GD_EBADARG);

    /* Digits: leading zero digits dropped, -0 = 0, small when it fits. */
    uint64_t d[4] = {5, 0, 0, 0};
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, true, d, 4, &t) == GD_OK);
    CU_ASSERT(term_is_small(t) && term_small_value(t) == -5);
    d[0] = 0;
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, true, d, 4, &t) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(0));
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, false, d, 0, &t) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(0));
    d[0] = (uint64_t)1 << 59; /* -2^59 = SMALL_MIN is small, +2^59 is not */
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, true, d, 2, &t) == GD_OK);
    CU_ASSERT(term_is_small(t) && term_small_value(t) == SMALL_MIN);
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, false, d, 2, &t) == GD_OK);
    CU_ASSERT(term_is_big(t) && term_big_ndigits(t) == 1);
    d[0] = 7;
    d[2] = 9;
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, false, d, 4, &t) == GD_OK);
    CU_ASSERT(term_is_big(t) && term_big_ndigits(t) == 3 && term_big_digits(t)[2] == 9);
    teardown();
}

static void test_integer_le(void)
{
    setup();
    term_t t;
    /* Zero in every spelling, including negative zero. */
    CU_ASSERT_FATAL(heap_make_integer_le(&H, false, NULL, 0, &t) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(0));
    uint8_t zeros[20] = {0};
    CU_ASSERT_FATAL(heap_make_integer_le(&H, true, zeros, 20, &t) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(0));
    /* Trailing (high) zero bytes do not make a bignum. */
    uint8_t b[24] = {0x34, 0x12};
    CU_ASSERT_FATAL(heap_make_integer_le(&H, true, b, 24, &t) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(-0x1234));
    /* 2^59 - 1 is small, 2^59 is not (positive), -2^59 is. */
    uint8_t m[8];
    uint64_t x = (uint64_t)SMALL_MAX;
    for (int i = 0; i < 8; i++)
        m[i] = (uint8_t)(x >> (8 * i));
    CU_ASSERT_FATAL(heap_make_integer_le(&H, false, m, 8, &t) == GD_OK);
    CU_ASSERT(term_is_small(t) && term_small_value(t) == SMALL_MAX);
    x = (uint64_t)SMALL_MAX + 1;
    for (int i = 0; i < 8; i++)
        m[i] = (uint8_t)(x >> (8 * i));
    CU_ASSERT_FATAL(heap_make_integer_le(&H, false, m, 8, &t) == GD_OK);
    CU_ASSERT(term_is_big(t) && term_big_digits(t)[0] == x);
    CU_ASSERT_FATAL(heap_make_integer_le(&H, true, m, 8, &t) == GD_OK);
    CU_ASSERT(term_is_small(t) && term_small_value(t) == SMALL_MIN);
    /* Multi-digit values: digits assembled little-endian. */
    uint8_t big[17];
    for (int i = 0; i < 17; i++)
        big[i] = (uint8_t)(i + 1);
    CU_ASSERT_FATAL(heap_make_integer_le(&H, true, big, 17, &t) == GD_OK);
    CU_ASSERT(term_is_big(t) && term_big_negative(t) && term_big_ndigits(t) == 3);
    CU_ASSERT_EQUAL(term_big_digits(t)[0], 0x0807060504030201u);
    CU_ASSERT_EQUAL(term_big_digits(t)[1], 0x100f0e0d0c0b0a09u);
    CU_ASSERT_EQUAL(term_big_digits(t)[2], 0x11u);
    /* Random values agree with the digits constructor (compare and hash). */
    uint64_t seed = 7;
    for (int r = 0; r < 2000; r++) {
        size_t n = termgen_below(&seed, 26);
        uint8_t bytes[26];
        for (size_t i = 0; i < n; i++)
            bytes[i] = termgen_below(&seed, 3) ? (uint8_t)termgen_next(&seed) : 0;
        bool neg = termgen_below(&seed, 2);
        uint64_t digits[4] = {0};
        for (size_t i = 0; i < n; i++)
            digits[i / 8] |= (uint64_t)bytes[i] << (8 * (i % 8));
        term_t a, c;
        CU_ASSERT_FATAL(heap_make_integer_le(&H, neg, bytes, n, &a) == GD_OK);
        CU_ASSERT_FATAL(heap_make_integer_digits(&H, neg, digits, 4, &c) == GD_OK);
        CU_ASSERT_EQUAL(tg_compare(a, c, true), 0);
        CU_ASSERT_EQUAL(tg_hash(a), tg_hash(c));
        CU_ASSERT_EQUAL(term_is_small(a), term_is_small(c));
        if (term_is_big(a))
            CU_ASSERT(term_big_digits(a)[term_big_ndigits(a) - 1] != 0);
    }
    /* Beyond HEAP_BIG_MAX_DIGITS: a clear error, nothing allocated. */
    size_t nbytes = HEAP_BIG_MAX_DIGITS * 8 + 1;
    uint8_t *huge = calloc(nbytes, 1);
    CU_ASSERT_FATAL(huge != NULL);
    huge[nbytes - 1] = 1;
    size_t used = heap_used_words(&H);
    CU_ASSERT_EQUAL(heap_make_integer_le(&H, false, huge, nbytes, &t), GD_ESYSTEM_LIMIT);
    CU_ASSERT_EQUAL(heap_used_words(&H), used);
    /* Exactly the maximum is fine. */
    huge[nbytes - 2] = 0x80;
    CU_ASSERT_EQUAL(heap_make_integer_le(&H, false, huge, nbytes - 1, &t), GD_OK);
    CU_ASSERT(term_is_big(t) && term_big_ndigits(t) == HEAP_BIG_MAX_DIGITS);
    CU_ASSERT_EQUAL(term_big_digits(t)[HEAP_BIG_MAX_DIGITS - 1], (uint64_t)0x80 << 56);
    free(huge);
    teardown();
}

static void test_floats(void)
{
    setup();
    term_t t;
    static const double ok[] = {0.0, -0.0, 1.5, -2.25, DBL_MAX, -DBL_MAX, DBL_MIN, 4.9e-324};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CU_ASSERT_FATAL(heap_make_float(&H, ok[i], &t) == GD_OK);
        CU_ASSERT(term_is_float(t) && term_is_number(t));
        double back = term_float_value(t);
        CU_ASSERT(memcmp(&back, &ok[i], sizeof back) == 0); /* bit-exact, -0.0 kept */
    }
    size_t used = heap_used_words(&H);
    CU_ASSERT_EQUAL(heap_make_float(&H, NAN, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_float(&H, -NAN, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_float(&H, INFINITY, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_float(&H, -INFINITY, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_used_words(&H), used);
    teardown();
}

/* The byte at bit position `bit` of a view, for checking views. */
static unsigned view_bit(const heap_bin_view_t *v, size_t bit)
{
    size_t b = v->bit_offset + bit;
    return (v->bytes[b / 8] >> (7 - b % 8)) & 1;
}

static void test_binaries(void)
{
    setup();
    uint8_t data[200];
    for (int i = 0; i < 200; i++)
        data[i] = (uint8_t)(i * 3 + 1);
    term_t b0, b64, b65;
    CU_ASSERT_FATAL(heap_make_binary(&H, NULL, 0, &b0) == GD_OK);
    CU_ASSERT_FATAL(heap_make_binary(&H, data, 64, &b64) == GD_OK);
    CU_ASSERT_FATAL(heap_make_binary(&H, data, 65, &b65) == GD_OK);
    CU_ASSERT_EQUAL(term_boxed_subtag(b0), HDR_HEAP_BIN);
    CU_ASSERT_EQUAL(term_boxed_subtag(b64), HDR_HEAP_BIN);
    CU_ASSERT_EQUAL(term_boxed_subtag(b65), HDR_REFC_BIN);
    heap_bin_view_t v;
    heap_bin_view(b64, &v);
    CU_ASSERT(v.bit_size == 512 && v.bit_offset == 0 && memcmp(v.bytes, data, 64) == 0);
    heap_bin_view(b65, &v);
    CU_ASSERT(v.bit_size == 520 && v.bit_offset == 0 && memcmp(v.bytes, data, 65) == 0);
    heap_bin_view(b0, &v);
    CU_ASSERT_EQUAL(v.bit_size, 0);
    CU_ASSERT(term_is_binary(b0) && term_is_binary(b64) && term_is_binary(b65));
    CU_ASSERT(heap_type_class(b65) == HEAP_CLASS_BITSTRING);
    CU_ASSERT_FALSE(term_is_binary(ATOM_OK));
    CU_ASSERT_FALSE(term_is_bitstring(TERM_NIL));

    /* Bitstrings: padding bytes are zeroed by the constructor. */
    uint8_t *d;
    term_t bits;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&H, 13, &d, &bits) == GD_OK);
    d[0] = 0xAB;
    d[1] = 0xF8;
    CU_ASSERT(term_is_bitstring(bits) && !term_is_binary(bits));
    CU_ASSERT_EQUAL(term_boxed_subtag(bits), HDR_HEAP_BIN);
    term_t *p = term_boxed_ptr(bits);
    CU_ASSERT_EQUAL(p[2] >> 16, 0); /* bytes 2..7 of the data word */
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&H, 65 * 8 + 3, &d, &bits) == GD_OK);
    CU_ASSERT_EQUAL(term_boxed_subtag(bits), HDR_REFC_BIN);
    CU_ASSERT_FALSE(term_is_binary(bits));
    term_t t;
    CU_ASSERT_EQUAL(heap_make_bitstring_uninit(&H, (HEAP_BINARY_MAX_BYTES + 1) * 8, &d, &t),
                    GD_ESYSTEM_LIMIT);

    /* Sub-binaries: bounds, offsets, and a sub of a sub points at the
     * original with the offsets added. */
    term_t s1, s2, s3;
    CU_ASSERT_FATAL(heap_make_sub_binary(&H, b65, 13, 400, &s1) == GD_OK);
    heap_bin_view(s1, &v);
    CU_ASSERT(v.bit_size == 400 && v.bit_offset == 5);
    heap_bin_view_t vb;
    heap_bin_view(b65, &vb);
    CU_ASSERT_PTR_EQUAL(v.bytes, vb.bytes + 1);
    for (size_t i = 0; i < 400; i++)
        if (view_bit(&v, i) != view_bit(&vb, 13 + i)) {
            CU_FAIL("sub-binary bits differ");
            break;
        }
    CU_ASSERT_FATAL(heap_make_sub_binary(&H, s1, 100, 200, &s2) == GD_OK);
    p = term_boxed_ptr(s2);
    CU_ASSERT_EQUAL(p[3], b65); /* points at the original, not at s1 */
    CU_ASSERT_EQUAL(p[2], 113);
    heap_bin_view(s2, &v);
    CU_ASSERT(v.bit_size == 200 && v.bit_offset == 1 && v.bytes == vb.bytes + 14);
    CU_ASSERT_FATAL(heap_make_sub_binary(&H, s2, 200, 0, &s3) == GD_OK); /* empty at the end */
    heap_bin_view(s3, &v);
    CU_ASSERT_EQUAL(v.bit_size, 0);
    CU_ASSERT(term_is_binary(s3));
    /* Out of range or not a bitstring. */
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, s2, 201, 0, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, s2, 100, 101, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, b64, 0, 513, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, b64, SIZE_MAX, 2, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, ATOM_OK, 0, 0, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_sub_binary(&H, TERM_NIL, 0, 0, &t), GD_EBADARG);
    /* Sub-binary of a heap binary. */
    CU_ASSERT_FATAL(heap_make_sub_binary(&H, b64, 8, 16, &s3) == GD_OK);
    heap_bin_view(s3, &v);
    CU_ASSERT(v.bit_size == 16 && v.bit_offset == 0 && v.bytes[0] == data[1] &&
              v.bytes[1] == data[2]);
    teardown();
}

static void test_refcounts(void)
{
    heap_t h1, h2;
    CU_ASSERT_FATAL(heap_init(&h1, 0) == GD_OK);
    CU_ASSERT_FATAL(heap_init(&h2, 0) == GD_OK);
    uint8_t data[300];
    memset(data, 0x5C, sizeof data);
    term_t b;
    CU_ASSERT_FATAL(heap_make_binary(&h1, data, sizeof data, &b) == GD_OK);
    heap_binary_t *bin = (heap_binary_t *)(uintptr_t)term_boxed_ptr(b)[2];
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 1);
    CU_ASSERT_EQUAL(bin->size, 300);
    CU_ASSERT_EQUAL(h1.offheap_first, term_boxed_ptr(b));
    CU_ASSERT(h1.offheap_bytes >= 300);
    /* Two more REFC_BIN objects for the same binary: one on each heap. */
    term_t b2, b3;
    CU_ASSERT_FATAL(heap_make_refc_binary(&h1, bin, 300 * 8, &b2) == GD_OK);
    CU_ASSERT_FATAL(heap_make_refc_binary(&h2, bin, 100 * 8, &b3) == GD_OK);
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 3);
    CU_ASSERT_EQUAL(tg_compare(b, b2, true), 0);
    heap_bin_view_t v;
    heap_bin_view(b3, &v);
    CU_ASSERT(v.bit_size == 800 && v.bytes == bin->data);
    /* A sub-binary is no new reference (it points at the REFC_BIN object). */
    term_t s;
    CU_ASSERT_FATAL(heap_make_sub_binary(&h2, b3, 8, 8, &s) == GD_OK);
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 3);
    /* Keep our own reference so we can watch the count fall. */
    heap_binary_ref(bin);
    heap_destroy(&h1);
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 2);
    heap_destroy(&h2);
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 1);
    heap_binary_unref(bin); /* freed here: ASan reports a leak or double free otherwise */

    /* Bitstrings made uninitialised off-heap start with one reference. */
    CU_ASSERT_FATAL(heap_init(&h1, 0) == GD_OK);
    uint8_t *d;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&h1, 1000, &d, &b) == GD_OK);
    bin = (heap_binary_t *)(uintptr_t)term_boxed_ptr(b)[2];
    CU_ASSERT_EQUAL(atomic_load(&bin->refc), 1);
    CU_ASSERT_PTR_EQUAL(d, bin->data);
    heap_destroy(&h1);
}

static void test_pids_ports_refs(void)
{
    setup();
    term_t node = heap_atom("n1@host"), t;
    heap_ident_t id;
    /* Local pids and ports are immediates. */
    term_t lp = term_make_local_pid(HEAP_LOCAL_PID_NUMBER_MAX, HEAP_LOCAL_PID_SERIAL_MAX);
    CU_ASSERT(term_is_local_pid(lp) && term_is_pid(lp) && term_is_immediate(lp));
    CU_ASSERT_EQUAL(term_local_pid_id(lp), HEAP_LOCAL_PID_NUMBER_MAX);
    CU_ASSERT_EQUAL(term_local_pid_serial(lp), HEAP_LOCAL_PID_SERIAL_MAX);
    /* Outside the local ranges: refused, never truncated. */
    term_t bad = TERM_NONE;
    CU_ASSERT_EQUAL(heap_make_local_pid(HEAP_LOCAL_PID_NUMBER_MAX + 1, 0, &bad), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_local_pid(0, HEAP_LOCAL_PID_SERIAL_MAX + 1, &bad), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_local_port(LOCAL_PORT_MAX + 1, &bad), GD_EBADARG);
    CU_ASSERT_EQUAL(bad, TERM_NONE);
    CU_ASSERT(heap_type_class(lp) == HEAP_CLASS_PID);
    term_t lport = term_make_local_port(LOCAL_PORT_MAX);
    CU_ASSERT(term_is_local_port(lport) && term_is_port(lport));
    CU_ASSERT_EQUAL(term_local_port_number(lport), LOCAL_PORT_MAX);
    CU_ASSERT(heap_type_class(lport) == HEAP_CLASS_PORT);

    CU_ASSERT_FATAL(heap_make_ext_pid(&H, node, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, &t) ==
                    GD_OK);
    CU_ASSERT(term_is_ext_pid(t) && term_is_pid(t));
    heap_ident(t, &id);
    CU_ASSERT(id.node == node && id.creation == 0xFFFFFFFFu && id.nwords == 2 &&
              id.words[0] == 0xFFFFFFFFu && id.words[1] == 0xFFFFFFFFu);
    CU_ASSERT(heap_type_class(t) == HEAP_CLASS_PID);
    CU_ASSERT_FATAL(heap_make_ext_port(&H, node, UINT64_MAX, 7, &t) == GD_OK);
    CU_ASSERT(term_is_ext_port(t) && term_is_port(t));
    heap_ident(t, &id);
    CU_ASSERT(id.node == node && id.creation == 7 && id.port_id == UINT64_MAX);
    CU_ASSERT(heap_type_class(t) == HEAP_CLASS_PORT);
    CU_ASSERT_EQUAL(heap_make_ext_pid(&H, term_make_small(1), 1, 1, 1, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ext_port(&H, TERM_NIL, 1, 1, &t), GD_EBADARG);

    /* References with 0..5 id words. */
    uint32_t words[6] = {11, 22, 33, 44, 55, 66};
    for (size_t n = 0; n <= HEAP_REF_MAX_WORDS; n++) {
        CU_ASSERT_FATAL(heap_make_ref(&H, node, 3, words, n, &t) == GD_OK);
        CU_ASSERT(term_is_ref(t));
        CU_ASSERT(heap_type_class(t) == HEAP_CLASS_REF);
        heap_ident(t, &id);
        CU_ASSERT(id.node == node && id.creation == 3 && id.nwords == n);
        for (size_t i = 0; i < HEAP_REF_MAX_WORDS; i++)
            CU_ASSERT_EQUAL(id.words[i], i < n ? words[i] : 0);
    }
    size_t used = heap_used_words(&H);
    CU_ASSERT_EQUAL(heap_make_ref(&H, node, 3, words, 6, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_ref(&H, term_make_small(0), 3, words, 1, &t), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_used_words(&H), used);
    teardown();
}

static void test_funs_exports(void)
{
    setup();
    heap_fun_info_t fi, back;
    memset(&fi, 0, sizeof fi);
    fi.arity = 255;
    for (int i = 0; i < 16; i++)
        fi.uniq[i] = (uint8_t)(0xF0 + i);
    fi.index = 0xDEADBEEFu;
    fi.num_free = 3;
    fi.module = heap_atom("my_mod");
    fi.old_index = term_make_small(12);
    fi.old_uniq = term_make_small(-77);
    fi.pid = term_make_local_pid(5, 6);
    term_t *fv, f;
    CU_ASSERT_FATAL(heap_make_fun(&H, &fi, &fv, &f) == GD_OK);
    fv[0] = ATOM_OK;
    fv[1] = term_make_small(9);
    fv[2] = TERM_NIL;
    CU_ASSERT(term_is_fun(f) && !term_is_export(f));
    CU_ASSERT(heap_type_class(f) == HEAP_CLASS_FUN);
    heap_fun_info(f, &back);
    CU_ASSERT(back.arity == 255 && back.index == 0xDEADBEEFu && back.num_free == 3);
    CU_ASSERT(memcmp(back.uniq, fi.uniq, 16) == 0);
    CU_ASSERT(back.module == fi.module && back.old_index == fi.old_index &&
              back.old_uniq == fi.old_uniq && back.pid == fi.pid);
    CU_ASSERT_EQUAL(term_fun_free(f)[0], ATOM_OK);
    CU_ASSERT_EQUAL(term_fun_free(f)[2], TERM_NIL);
    /* Layout: 4 raw words, then terms (module, old_index, old_uniq, pid, free). */
    term_t hdr = *term_boxed_ptr(f);
    CU_ASSERT_EQUAL(heap_boxed_raw_words(hdr), 4);
    CU_ASSERT_EQUAL(header_arity(hdr), 8 + 3);
    fi.num_free = HEAP_FUN_MAX_FREE + 1;
    CU_ASSERT_EQUAL(heap_make_fun(&H, &fi, &fv, &f), GD_EBADARG);
    fi.num_free = 0;
    fi.module = term_make_small(1);
    CU_ASSERT_EQUAL(heap_make_fun(&H, &fi, &fv, &f), GD_EBADARG);

    term_t e;
    CU_ASSERT_FATAL(heap_make_export(&H, heap_atom("lists"), heap_atom("map"), 2, &e) == GD_OK);
    CU_ASSERT(term_is_export(e) && !term_is_fun(e));
    CU_ASSERT(heap_type_class(e) == HEAP_CLASS_FUN);
    term_t *p = term_boxed_ptr(e);
    CU_ASSERT(p[1] == heap_atom("lists") && p[2] == heap_atom("map") && p[3] == term_make_small(2));
    CU_ASSERT_EQUAL(heap_make_export(&H, term_make_small(1), ATOM_OK, 0, &e), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_make_export(&H, ATOM_OK, TERM_NIL, 0, &e), GD_EBADARG);
    teardown();
}

static void test_tuples_lists(void)
{
    setup();
    term_t *el, t;
    CU_ASSERT_FATAL(heap_make_tuple(&H, 0, &el, &t) == GD_OK);
    CU_ASSERT(term_is_tuple(t) && term_tuple_arity(t) == 0);
    CU_ASSERT(heap_type_class(t) == HEAP_CLASS_TUPLE);
    CU_ASSERT_FATAL(heap_make_tuple(&H, 3, &el, &t) == GD_OK);
    el[0] = ATOM_OK;
    el[1] = term_make_small(-1);
    el[2] = TERM_NIL;
    CU_ASSERT_EQUAL(term_tuple_arity(t), 3);
    CU_ASSERT_EQUAL(term_tuple_elems(t)[1], term_make_small(-1));
    /* From an array: every item in place, the array not kept. */
    term_t from[3] = {term_make_small(7), t, ATOM_OK}, f;
    CU_ASSERT_FATAL(heap_make_tuple_from(&H, 3, from, &f) == GD_OK);
    from[0] = TERM_NIL;
    CU_ASSERT_EQUAL(term_tuple_arity(f), 3);
    CU_ASSERT_EQUAL(term_tuple_elems(f)[0], term_make_small(7));
    CU_ASSERT_EQUAL(term_tuple_elems(f)[1], t);
    CU_ASSERT_EQUAL(term_tuple_elems(f)[2], ATOM_OK);
    CU_ASSERT_FATAL(heap_make_tuple_from(&H, 0, NULL, &f) == GD_OK);
    CU_ASSERT(term_is_tuple(f) && term_tuple_arity(f) == 0);

    term_t l;
    CU_ASSERT_FATAL(heap_make_list(&H, NULL, 0, &l) == GD_OK);
    CU_ASSERT_EQUAL(l, TERM_NIL);
    CU_ASSERT(heap_type_class(l) == HEAP_CLASS_NIL);
    term_t items[5] = {term_make_small(1), term_make_small(2), t, ATOM_OK, TERM_NIL};
    CU_ASSERT_FATAL(heap_make_list(&H, items, 5, &l) == GD_OK);
    CU_ASSERT(heap_type_class(l) == HEAP_CLASS_LIST);
    size_t n = 0;
    term_t x = l;
    while (term_is_list(x)) {
        CU_ASSERT_EQUAL(term_car(x), items[n]);
        n++;
        x = term_cdr(x);
    }
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(x, TERM_NIL);
    term_t c;
    CU_ASSERT_FATAL(heap_cons(&H, ATOM_OK, term_make_small(3), &c) == GD_OK);
    CU_ASSERT(term_is_list(c) && term_car(c) == ATOM_OK && term_cdr(c) == term_make_small(3));
    /* Immediates and their classes. */
    CU_ASSERT(heap_type_class(term_make_small(0)) == HEAP_CLASS_NUMBER);
    CU_ASSERT(heap_type_class(ATOM_OK) == HEAP_CLASS_ATOM);
    CU_ASSERT(term_is_atom(ATOM_EMPTY) && !term_is_small(ATOM_OK) && !term_is_atom(TERM_NIL));
    CU_ASSERT(term_is_none(TERM_NONE) && !term_is_atom(TERM_NONE) && !term_is_nil(TERM_NONE));
    teardown();
}

static void test_strerror(void)
{
    static const int codes[] = {GD_OK,
                                GD_ENOMEM,
                                GD_EINVAL,
                                GD_ESYSTEM_LIMIT,
                                GD_EATOM_TABLE_FULL,
                                GD_EATOM_TOO_LONG,
                                GD_EATOM_BAD_UTF8,
                                GD_EATOM_NOT_FOUND,
                                GD_EDUPLICATE_KEY,
                                GD_EBADARG,
                                GD_EAGAIN,
                                GD_EHEAP_LIMIT,
                                GD_EOLD_HEAP_FULL,
                                GD_EALREADY};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = gd_strerror(codes[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT(strcmp(s, "unknown error") != 0);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT(strcmp(s, gd_strerror(codes[j])) != 0);
    }
    CU_ASSERT_PTR_NOT_NULL(gd_strerror(-98));
}

static const gd_test_case_t cases[] = {
    {"integers", test_integers},
    {"integer_le normalisation", test_integer_le},
    {"floats", test_floats},
    {"binaries and sub-binaries", test_binaries},
    {"refcounts", test_refcounts},
    {"pids ports refs", test_pids_ports_refs},
    {"funs exports", test_funs_exports},
    {"tuples lists", test_tuples_lists},
    {"error strings", test_strerror},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_terms", cases)
