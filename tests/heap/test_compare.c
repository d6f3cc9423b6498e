/*
 * test_compare.c — heap_compare (Erlang term order, exact and arithmetic)
 * and heap_hash.  Expected orders were checked against OTP 25 (erl).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cunit_main.h"
#include "heap.h"
#include "etfmini_util.h"
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

static term_t I(int64_t v)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_int64(&H, v, &t) == GD_OK);
    return t;
}

static term_t U(uint64_t v)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_uint64(&H, v, &t) == GD_OK);
    return t;
}

/* Integer from digits (little-endian 64-bit). */
static term_t BIG(bool neg, size_t n, ...)
{
    uint64_t d[8];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        d[i] = va_arg(ap, uint64_t);
    va_end(ap);
    term_t t;
    CU_ASSERT_FATAL(heap_make_integer_digits(&H, neg, d, n, &t) == GD_OK);
    return t;
}

static term_t F(double d)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_float(&H, d, &t) == GD_OK);
    return t;
}

static term_t A(const char *s)
{
    term_t t = heap_atom(s);
    CU_ASSERT_FATAL(t != TERM_NONE);
    return t;
}

static term_t T(size_t n, ...)
{
    term_t *el, t;
    CU_ASSERT_FATAL(heap_make_tuple(&H, n, &el, &t) == GD_OK);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        el[i] = va_arg(ap, term_t);
    va_end(ap);
    return t;
}

static term_t L(size_t n, ...)
{
    term_t items[16], t;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        items[i] = va_arg(ap, term_t);
    va_end(ap);
    CU_ASSERT_FATAL(heap_make_list(&H, items, n, &t) == GD_OK);
    return t;
}

static term_t CONS(term_t a, term_t b)
{
    term_t t;
    CU_ASSERT_FATAL(heap_cons(&H, a, b, &t) == GD_OK);
    return t;
}

static term_t BIN(const void *p, size_t n)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_binary(&H, p, n, &t) == GD_OK);
    return t;
}

/* A bitstring from a string of '0'/'1'. */
static term_t BITS(const char *s)
{
    size_t n = strlen(s);
    uint8_t *d;
    term_t t;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&H, n, &d, &t) == GD_OK);
    memset(d, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (s[i] == '1')
            d[i / 8] |= (uint8_t)(0x80 >> (i % 8));
    return t;
}

static term_t SUB(term_t orig, size_t off, size_t bits)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_sub_binary(&H, orig, off, bits, &t) == GD_OK);
    return t;
}

static term_t PID(const char *node, uint32_t id, uint32_t ser, uint32_t cr)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_ext_pid(&H, A(node), id, ser, cr, &t) == GD_OK);
    return t;
}

static term_t PORT(const char *node, uint64_t id, uint32_t cr)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_ext_port(&H, A(node), id, cr, &t) == GD_OK);
    return t;
}

static term_t REF(const char *node, uint32_t cr, size_t n, ...)
{
    uint32_t w[5];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        w[i] = va_arg(ap, uint32_t);
    va_end(ap);
    term_t t;
    CU_ASSERT_FATAL(heap_make_ref(&H, A(node), cr, w, n, &t) == GD_OK);
    return t;
}

static term_t FUN(const char *mod, uint32_t index, int64_t old_uniq, uint8_t arity, uint8_t uniq0,
                  int64_t old_index, size_t nfree, ...)
{
    heap_fun_info_t fi;
    memset(&fi, 0, sizeof fi);
    fi.arity = arity;
    fi.uniq[0] = uniq0;
    fi.index = index;
    fi.num_free = (uint32_t)nfree;
    fi.module = A(mod);
    fi.old_index = term_make_small(old_index);
    fi.old_uniq = term_make_small(old_uniq);
    fi.pid = term_make_local_pid(uniq0, 0);
    term_t *fv, t;
    CU_ASSERT_FATAL(heap_make_fun(&H, &fi, &fv, &t) == GD_OK);
    va_list ap;
    va_start(ap, nfree);
    for (size_t i = 0; i < nfree; i++)
        fv[i] = va_arg(ap, term_t);
    va_end(ap);
    return t;
}

static term_t EXP(const char *m, const char *f, uint8_t arity)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_export(&H, A(m), A(f), arity, &t) == GD_OK);
    return t;
}

static term_t MAP(size_t n, const term_t *kv)
{
    term_t keys[64], vals[64], m;
    for (size_t i = 0; i < n; i++) {
        keys[i] = kv[2 * i];
        vals[i] = kv[2 * i + 1];
    }
    CU_ASSERT_FATAL(heap_make_map(&H, keys, vals, n, &m) == GD_OK);
    return m;
}

static int sgn(int x)
{
    return (x > 0) - (x < 0);
}

/* Checks cmp(a, b) == want and cmp(b, a) == -want in the given mode, and
 * that equal terms hash equally. */
#define CHECK_CMP(a, b, exact, want)                                                               \
    do {                                                                                           \
        term_t a_ = (a), b_ = (b);                                                                 \
        int got_ = sgn(tg_compare(a_, b_, (exact)));                                               \
        int rev_ = sgn(tg_compare(b_, a_, (exact)));                                               \
        if (got_ != (want) || rev_ != -(want))                                                     \
            fprintf(stderr, "\n%s:%d: compare(%s, %s, %d) = %d / reverse %d, want %d\n", __FILE__, \
                    __LINE__, #a, #b, (int)(exact), got_, rev_, (want));                           \
        CU_ASSERT_EQUAL(got_, (want));                                                             \
        CU_ASSERT_EQUAL(rev_, -(want));                                                            \
        if ((exact) && (want) == 0)                                                                \
            CU_ASSERT_EQUAL(tg_hash(a_), tg_hash(b_));                                             \
    } while (0)

/* Both modes agree. */
#define CHECK_BOTH(a, b, want)                                                                     \
    do {                                                                                           \
        CHECK_CMP(a, b, false, want);                                                              \
        CHECK_CMP(a, b, true, want);                                                               \
    } while (0)

/* ------------------------------------------------------------------------ */

static void test_class_order(void)
{
    setup();
    term_t kv[2] = {A("k"), I(1)};
    /* number < atom < reference < fun < port < pid < tuple < map < nil <
     * list < bitstring, each class represented by tricky members. */
    term_t order[] = {
        /* numbers: in term order every integer is below every float, so
         * only these three agree in both modes */
        I(-5),
        U(UINT64_MAX),
        F(1e300),
        A(""),
        A("zzz"),
        REF("a@b", 1, 1, 5u),
        FUN("m", 1, 1, 0, 0, 0, 0),
        EXP("a", "b", 1),
        PORT("a@b", 1, 1),
        term_make_local_port(3),
        PID("a@b", 1, 0, 1),
        term_make_local_pid(7, 0),
        T(0),
        T(2, I(1), I(2)),
        MAP(0, NULL),
        MAP(1, kv),
        TERM_NIL,
        CONS(I(1), I(2)), /* [1|2] < [1]: the tail 2 is below [] */
        L(1, I(1)),
        BITS(""),
        BIN("abc", 3), /* 'a' starts with a 0 bit */
        BITS("1"),
    };
    size_t n = sizeof order / sizeof order[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int want = (i > j) - (i < j);
            if (sgn(tg_compare(order[i], order[j], false)) != want ||
                sgn(tg_compare(order[i], order[j], true)) != want)
                fprintf(stderr, "\nclass order broken at %zu vs %zu\n", i, j);
            CU_ASSERT_EQUAL(sgn(tg_compare(order[i], order[j], false)), want);
            CU_ASSERT_EQUAL(sgn(tg_compare(order[i], order[j], true)), want);
        }
    /* heap_type_class agrees on the class order. */
    CU_ASSERT(heap_type_class(order[0]) == HEAP_CLASS_NUMBER);
    CU_ASSERT(heap_type_class(order[n - 1]) == HEAP_CLASS_BITSTRING);
    teardown();
}

static void test_numbers(void)
{
    setup();
    /* Arithmetic equality across int and float, not exact. */
    CHECK_CMP(I(1), F(1.0), false, 0);
    CHECK_CMP(I(1), F(1.0), true, -1);
    CHECK_CMP(I(0), F(-0.0), false, 0);
    /* Term order: every integer below every float (erts_internal:cmp_term). */
    CHECK_CMP(I(2), F(1.0), true, -1);
    CHECK_CMP(I(2), F(1.0), false, 1);
    CHECK_CMP(U(UINT64_MAX), F(-1e300), true, -1);
    CHECK_CMP(U(UINT64_MAX), F(-1e300), false, 1);
    /* OTP 25: 0.0 =:= -0.0. */
    CHECK_BOTH(F(0.0), F(-0.0), 0);
    CHECK_BOTH(F(-1.5), F(-0.0), -1);

    /* Small against float with fractions. */
    CHECK_CMP(I(3), F(3.5), false, -1);
    CHECK_CMP(I(-3), F(-3.5), false, 1);
    CHECK_CMP(I(4), F(3.5), false, 1);
    CHECK_CMP(I(-4), F(-3.5), false, -1);
    CHECK_CMP(I(0), F(1e-300), false, -1);
    CHECK_CMP(I(0), F(-1e-300), false, 1);
    CHECK_CMP(I(SMALL_MAX), F(1152921504606846976.0), false, -1); /* 2^60 */
    CHECK_CMP(I(SMALL_MIN), F(-576460752303423488.0), false, 0);  /* -2^59 */
    CHECK_CMP(I(SMALL_MIN), F(-576460752303423488.0), true, -1);

    /* Beyond 2^53 the float grid is coarse; the integer is exact. */
    int64_t p53 = (int64_t)1 << 53;
    CHECK_CMP(I(p53 + 1), F(9007199254740992.0), false, 1);
    CHECK_CMP(I(p53), F(9007199254740992.0), false, 0);
    CHECK_CMP(I(p53 - 1), F(9007199254740992.0), false, -1);
    CHECK_CMP(I(-(p53 + 1)), F(-9007199254740992.0), false, -1);
    CHECK_CMP(I(SMALL_MAX), F((double)SMALL_MAX), false, -1); /* rounds up to 2^59 */

    /* Bignums against floats. */
    CHECK_CMP(U((uint64_t)1 << 63), F(9223372036854775808.0), false, 0);
    CHECK_CMP(U(((uint64_t)1 << 63) + 1), F(9223372036854775808.0), false, 1);
    CHECK_CMP(U(UINT64_MAX), F(18446744073709551616.0), false, -1);
    CHECK_CMP(BIG(false, 2, (uint64_t)0, (uint64_t)1), F(18446744073709551616.0), false, 0);
    CHECK_CMP(BIG(false, 2, (uint64_t)1, (uint64_t)1), F(18446744073709551616.0), false, 1);
    CHECK_CMP(BIG(true, 2, (uint64_t)1, (uint64_t)1), F(-18446744073709551616.0), false, -1);
    CHECK_CMP(BIG(true, 2, (uint64_t)0, (uint64_t)1), F(-18446744073709551616.0), false, 0);
    /* 2^1023 is the largest power of two a double holds. */
    {
        uint64_t d[16] = {0};
        d[15] = (uint64_t)1 << 63;
        term_t p1023;
        CU_ASSERT_FATAL(heap_make_integer_digits(&H, false, d, 16, &p1023) == GD_OK);
        CHECK_CMP(p1023, F(ldexp(1.0, 1023)), false, 0);
        CHECK_CMP(p1023, F(ldexp(1.0, 1022)), false, 1);
        CHECK_CMP(p1023, F(1.7976931348623157e308), false, -1);
        d[0] = 1;
        CU_ASSERT_FATAL(heap_make_integer_digits(&H, false, d, 16, &p1023) == GD_OK);
        CHECK_CMP(p1023, F(ldexp(1.0, 1023)), false, 1);
        /* Larger than any double. */
        uint64_t e[17] = {0};
        e[16] = 1;
        term_t p1024;
        CU_ASSERT_FATAL(heap_make_integer_digits(&H, true, e, 17, &p1024) == GD_OK);
        CHECK_CMP(p1024, F(-1.7976931348623157e308), false, -1);
        CHECK_CMP(p1024, F(1.0), false, -1);
    }
    /* A bignum with a fraction on the float side. */
    CHECK_CMP(U(UINT64_MAX), F(1e19), false, 1);

    /* Integers among themselves. */
    CHECK_BOTH(I(-1), I(0), -1);
    CHECK_BOTH(I(SMALL_MAX), U((uint64_t)SMALL_MAX + 1), -1);
    CHECK_BOTH(I(SMALL_MIN), I(SMALL_MIN - 1), 1);
    CHECK_BOTH(BIG(true, 2, (uint64_t)5, (uint64_t)1), BIG(true, 1, (uint64_t)UINT64_MAX), -1);
    CHECK_BOTH(BIG(false, 2, (uint64_t)5, (uint64_t)1), BIG(false, 2, (uint64_t)6, (uint64_t)1),
               -1);
    CHECK_BOTH(BIG(false, 2, (uint64_t)5, (uint64_t)1), BIG(false, 2, (uint64_t)5, (uint64_t)1), 0);
    CHECK_BOTH(BIG(true, 2, (uint64_t)5, (uint64_t)1), I(SMALL_MIN), -1);
    /* Floats among themselves. */
    CHECK_BOTH(F(1e-300), F(2e-300), -1);
    CHECK_BOTH(F(-1e300), F(1e300), -1);
    teardown();
}

static void test_atoms(void)
{
    setup();
    CHECK_BOTH(A("a"), A("b"), -1);
    CHECK_BOTH(A("a"), A("aa"), -1);
    CHECK_BOTH(A(""), A("a"), -1);
    CHECK_BOTH(A("Z"), A("a"), -1);
    /* UTF-8 byte order is code point order: z < ä (U+E4) < € (U+20AC). */
    CHECK_BOTH(A("z"), A("\xc3\xa4"), -1);
    CHECK_BOTH(A("\xc3\xa4"), A("\xe2\x82\xac"), -1);
    CHECK_BOTH(A("\xc3\xbf"), A("\xc4\x80"), -1); /* U+FF < U+100 */
    /* Creation order does not matter. */
    term_t late = A("aaaa_created_late");
    CHECK_BOTH(late, A("b"), -1);
    CHECK_BOTH(A("ok"), A("ok"), 0);
    /* Long shared prefixes, differences at every position around the
     * 8-byte steps of the comparison, bytes above 0x7F. */
    static const char *const ladder[] = {
        "abcdefg",
        "abcdefgh",
        "abcdefgh\x7f",
        "abcdefgh\xc3\xa4",
        "abcdefgi",
        "abcdefghijklmnop",
        "abcdefghijklmnoq",
        "abcdefghijklmnopq",
        "abcdefghijklmnpa",
        "abcdefg\xc3\xa4",
        "abcdefh",
        "\xc3\xa4"
        "bcdefghij",
    };
    size_t nl = sizeof ladder / sizeof ladder[0];
    for (size_t i = 0; i < nl; i++)
        for (size_t j = 0; j < nl; j++) {
            int want = strcmp(ladder[i], ladder[j]); /* byte order, unsigned */
            want = (want > 0) - (want < 0);
            CU_ASSERT_EQUAL(sgn(tg_compare(A(ladder[i]), A(ladder[j]), true)), want);
        }
    teardown();
}

static void test_pids_ports_refs(void)
{
    setup();
    /* Pids: serial first, then number, then node name, then creation. */
    CHECK_BOTH(term_make_local_pid(2, 1), term_make_local_pid(1, 2), -1);
    CHECK_BOTH(term_make_local_pid(1, 0), term_make_local_pid(2, 0), -1);
    CHECK_BOTH(PID("a@b", 2, 1, 1), PID("a@b", 1, 2, 1), -1);
    CHECK_BOTH(PID("b@a", 1, 0, 1), PID("a@b", 5, 0, 1), -1);
    CHECK_BOTH(PID("a@b", 1, 0, 1), PID("a@b", 1, 0, 2), -1);
    CHECK_BOTH(PID("b@a", 1, 0, 1), PID("a@b", 1, 0, 2), 1);
    CHECK_BOTH(PID("a@b", (1u << 28) + 1, 0, 1), PID("a@b", 0, 1, 1), -1);
    CHECK_BOTH(PID("a@b", 5, 0, 1), PID("a@b", 1u << 31, 0, 1), -1);
    /* A local pid is one of nonode@nohost creation 0. */
    CHECK_BOTH(PID("a@b", 5, 0, 1), term_make_local_pid(5, 0), -1);
    CHECK_BOTH(term_make_local_pid(5, 0), PID("nonode@nohost", 5, 0, 0), 0);
    CHECK_BOTH(term_make_local_pid(5, 0), PID("nonode@nohost", 5, 0, 1), -1);
    CHECK_BOTH(term_make_local_pid(5, 0), PID("zzz@b", 4, 0, 0), 1);

    /* Ports: node name, creation, then number. */
    CHECK_BOTH(PORT("a@b", 1, 1), PORT("b@a", 0, 1), -1);
    CHECK_BOTH(PORT("a@b", 2, 1), PORT("a@b", 1, 2), -1);
    CHECK_BOTH(PORT("a@b", 1, 1), PORT("a@b", 2, 1), -1);
    CHECK_BOTH(term_make_local_port(3), PORT("nonode@nohost", 3, 0), 0);
    CHECK_BOTH(term_make_local_port(3), term_make_local_port(4), -1);
    CHECK_BOTH(PORT("a@b", 9, 9), term_make_local_port(0), -1);

    /* References: node, creation, then id words from the last. */
    CHECK_BOTH(REF("a@b", 1, 3, 1u, 2u, 3u), REF("a@b", 1, 3, 2u, 1u, 3u), 1);
    CHECK_BOTH(REF("a@b", 1, 3, 1u, 2u, 0u), REF("a@b", 1, 2, 1u, 2u), 0);
    CHECK_BOTH(REF("a@b", 1, 3, 1u, 2u, 1u), REF("a@b", 1, 2, 1u, 2u), 1);
    CHECK_BOTH(REF("a@b", 1, 5, 9u, 0u, 0u, 0u, 0u), REF("a@b", 1, 1, 9u), 0);
    CHECK_BOTH(REF("a@b", 1, 0), REF("a@b", 1, 2, 0u, 0u), 0);
    CHECK_BOTH(REF("a@b", 2, 1, 0u), REF("b@a", 1, 1, 1u), -1);
    CHECK_BOTH(REF("a@b", 2, 1, 1u), REF("a@b", 1, 1, 5u), 1);
    CHECK_BOTH(REF("a@b", 1, 1, 0xFFFFFFFFu), REF("a@b", 1, 2, 0u, 1u), -1);
    /* This node's references (local form, widened to 3 words) against
     * external ones of the same name, another creation (erl: the 2-word
     * local ref =:= its widened form; creation 0 < 1 before any word). */
    CHECK_BOTH(REF("nonode@nohost", 0, 2, 1u, 2u), REF("nonode@nohost", 0, 3, 1u, 2u, 0u), 0);
    CHECK_BOTH(REF("nonode@nohost", 0, 3, 1u, 2u, 3u), REF("nonode@nohost", 1, 3, 1u, 2u, 3u), -1);
    CHECK_BOTH(REF("nonode@nohost", 0, 3, 9u, 9u, 9u), REF("nonode@nohost", 1, 1, 1u), -1);
    teardown();
}

static void test_funs_exports(void)
{
    setup();
    term_t base = FUN("m", 1, 1, 0, 1, 1, 0);
    /* Arity, uniq, old_index and creator pid take no part. */
    CHECK_BOTH(base, FUN("m", 1, 1, 2, 9, 5, 0), 0);
    CHECK_BOTH(base, FUN("m", 2, 1, 0, 1, 1, 0), -1); /* index */
    CHECK_BOTH(base, FUN("m", 1, 2, 0, 1, 1, 0), -1); /* old_uniq */
    CHECK_BOTH(FUN("m", 1, 9, 0, 1, 1, 0), FUN("m", 2, 1, 0, 1, 1, 0), -1);
    CHECK_BOTH(FUN("m", 1, -1, 0, 1, 1, 0), base, -1);          /* old_uniq is signed */
    CHECK_BOTH(FUN("m", 0xFFFFFFFFu, 1, 0, 1, 1, 0), base, -1); /* index as int32 */
    CHECK_BOTH(FUN("b", 9, 1, 0, 1, 1, 0), FUN("c", 1, 1, 0, 1, 1, 0), -1);
    /* Number of free variables before their values. */
    CHECK_BOTH(FUN("m", 1, 1, 0, 1, 1, 2, A("x"), A("y")), FUN("m", 1, 2, 0, 1, 1, 1, A("x")), -1);
    CHECK_BOTH(FUN("m", 1, 1, 0, 1, 1, 1, A("x")), FUN("m", 1, 1, 0, 1, 1, 2, A("a"), A("a")), -1);
    CHECK_BOTH(FUN("m", 1, 1, 0, 1, 1, 1, A("a")), FUN("m", 1, 1, 0, 1, 1, 1, A("b")), -1);
    CHECK_CMP(FUN("m", 1, 1, 0, 1, 1, 1, I(1)), FUN("m", 1, 1, 0, 1, 1, 1, F(1.0)), false, 0);
    CHECK_CMP(FUN("m", 1, 1, 0, 1, 1, 1, I(1)), FUN("m", 1, 1, 0, 1, 1, 1, F(1.0)), true, -1);
    /* A fun is below an export; exports by module, function, arity. */
    CHECK_BOTH(FUN("zzz", 1, 1, 0, 1, 1, 0), EXP("a", "a", 0), -1);
    CHECK_BOTH(EXP("a", "b", 2), EXP("a", "c", 1), -1);
    CHECK_BOTH(EXP("a", "b", 2), EXP("a", "b", 3), -1);
    CHECK_BOTH(EXP("a", "z", 2), EXP("b", "a", 0), -1);
    CHECK_BOTH(EXP("a", "b", 2), EXP("a", "b", 2), 0);
    teardown();
}

static void test_tuples_lists(void)
{
    setup();
    CHECK_BOTH(T(0), T(1, I(0)), -1);
    CHECK_BOTH(T(2, I(9), I(9)), T(3, I(0), I(0), I(0)), -1);
    CHECK_BOTH(T(2, I(1), A("a")), T(2, I(1), A("b")), -1);
    CHECK_BOTH(T(2, T(1, I(2)), A("a")), T(2, T(1, I(1)), A("b")), 1);
    CHECK_CMP(T(2, I(1), F(2.0)), T(2, F(1.0), I(2)), false, 0);
    CHECK_CMP(T(2, I(1), F(2.0)), T(2, F(1.0), I(2)), true, -1);
    CHECK_BOTH(L(2, I(1), I(2)), L(3, I(1), I(2), I(0)), -1);
    CHECK_BOTH(L(2, I(1), I(3)), L(3, I(1), I(2), I(0)), 1);
    CHECK_BOTH(L(1, L(1, I(1))), L(1, L(1, I(2))), -1);
    /* Improper tails compare as terms: [1|2] < [1,2] (number < list). */
    CHECK_BOTH(CONS(I(1), I(2)), L(2, I(1), I(2)), -1);
    CHECK_BOTH(CONS(I(1), A("a")), CONS(I(1), I(2)), 1);
    CHECK_BOTH(CONS(I(1), BIN("", 0)), L(2, I(1), I(2)), 1);
    CHECK_BOTH(L(3, I(1), I(2), I(3)), L(3, I(1), I(2), I(3)), 0);
    CHECK_CMP(L(2, I(1), F(2.0)), L(2, F(1.0), I(2)), false, 0);
    CHECK_CMP(L(2, I(1), F(2.0)), L(2, F(1.0), I(2)), true, -1);
    /* Strings: [] < "a" < "ab" < "b". */
    CHECK_BOTH(TERM_NIL, L(1, I('a')), -1);
    CHECK_BOTH(L(1, I('a')), L(2, I('a'), I('b')), -1);
    CHECK_BOTH(L(2, I('a'), I('b')), L(1, I('b')), -1);
    teardown();
}

static void test_bitstrings(void)
{
    setup();
    CHECK_BOTH(BIN("", 0), BIN("a", 1), -1);
    CHECK_BOTH(BIN("ab", 2), BIN("b", 1), -1);
    CHECK_BOTH(BIN("ab", 2), BIN("abc", 3), -1);
    CHECK_BOTH(BIN("\x80", 1), BIN("\x7f\xff", 2), 1);
    /* <<1:1>> < <<128>> < <<1:1, 0:8>>: bits first, then length. */
    CHECK_BOTH(BITS("1"), BIN("\x80", 1), -1);
    CHECK_BOTH(BIN("\x80", 1), BITS("100000000"), -1);
    CHECK_BOTH(BITS("0111"), BITS("1"), -1);
    CHECK_BOTH(BITS("101"), BITS("101"), 0);
    CHECK_BOTH(BITS("101"), BITS("1010"), -1);
    /* Storage does not matter: heap, refc, sub-binaries at any offset. */
    uint8_t big[200];
    for (int i = 0; i < 200; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    term_t refc = BIN(big, 200), refc2 = BIN(big, 200), heap64 = BIN(big + 10, 64);
    CU_ASSERT(term_boxed_subtag(refc) == HDR_REFC_BIN);
    CU_ASSERT(term_boxed_subtag(heap64) == HDR_HEAP_BIN);
    CHECK_BOTH(refc, refc2, 0);
    CHECK_BOTH(SUB(refc, 80, 64 * 8), heap64, 0);
    CHECK_BOTH(SUB(refc, 80, 63 * 8), heap64, -1);
    CHECK_BOTH(SUB(SUB(refc, 8, 100 * 8), 72, 64 * 8), heap64, 0);
    /* Unaligned: the same bits at offsets 3 and 5 of different bytes. */
    term_t b1 = BITS("0001011001110001111"), b2 = BITS("000001011001110001111");
    CHECK_BOTH(SUB(b1, 3, 16), SUB(b2, 5, 16), 0);
    CHECK_BOTH(SUB(b1, 3, 15), SUB(b2, 5, 16), -1);
    CHECK_BOTH(SUB(b1, 3, 16), BITS("1011001110001111"), 0);
    CHECK_BOTH(SUB(b1, 3, 16), BITS("1011001110001110"), 1);
    CHECK_BOTH(SUB(b1, 4, 12), BITS("011001110001"), 0);
    /* Hash ignores the bits past the end of a sub-binary. */
    CU_ASSERT_EQUAL(tg_hash(SUB(BITS("10111"), 0, 3)), tg_hash(SUB(BITS("10100"), 0, 3)));
    CHECK_BOTH(SUB(BIN("abcdefghijklmnopqrstuvwxyz", 26), 8, 200),
               SUB(BIN("Xbcdefghijklmnopqrstuvwxyz0", 27), 8, 200), 0);
    teardown();
}

/* Reference map order: size, then sorted keys (exact), then values in key
 * order; built on heap_map_sorted and element compares. */
static int ref_map_cmp(term_t a, term_t b, bool exact)
{
    size_t na = heap_map_size(a), nb = heap_map_size(b);
    if (na != nb)
        return na < nb ? -1 : 1;
    term_t *ka = malloc(na * sizeof *ka + 1), *va = malloc(na * sizeof *va + 1);
    term_t *kb = malloc(na * sizeof *kb + 1), *vb = malloc(na * sizeof *vb + 1);
    tg_map_sorted(a, ka, va);
    tg_map_sorted(b, kb, vb);
    int r = 0;
    for (size_t i = 0; i < na && r == 0; i++)
        r = sgn(tg_compare(ka[i], kb[i], true));
    for (size_t i = 0; i < na && r == 0; i++)
        r = sgn(tg_compare(va[i], vb[i], exact));
    free(ka);
    free(va);
    free(kb);
    free(vb);
    return r;
}

static void test_maps_order(void)
{
    setup();
    term_t m0[] = {A("a"), I(1)};
    term_t m1[] = {A("a"), F(1.0)};
    term_t m2[] = {I(1), A("a")};
    term_t m3[] = {F(1.0), A("a")};
    term_t m4[] = {I(2), A("a")};
    term_t m5[] = {A("a"), I(2), A("b"), I(1)};
    term_t m6[] = {A("a"), I(1), A("b"), I(2)};
    term_t m7[] = {A("b"), I(1), A("a"), I(2)};
    CHECK_CMP(MAP(1, m0), MAP(1, m1), false, 0); /* values arithmetically */
    CHECK_CMP(MAP(1, m0), MAP(1, m1), true, -1);
    CHECK_BOTH(MAP(1, m2), MAP(1, m3), -1); /* keys always exactly */
    CHECK_BOTH(MAP(1, m4), MAP(1, m3), -1); /* #{2 => a} < #{1.0 => a} */
    CHECK_BOTH(MAP(2, m5), MAP(2, m6), 1);  /* first differing value in key order */
    CHECK_BOTH(MAP(2, m5), MAP(2, m7), 0);  /* input order does not matter */
    CHECK_BOTH(MAP(0, NULL), MAP(1, m0), -1);
    CHECK_BOTH(MAP(1, m4), MAP(2, m5), -1); /* size first */

    /* Hash maps against each other, in the cases the merge distinguishes,
     * against the reference order. */
    uint64_t seed = 42;
    for (int round = 0; round < 300; round++) {
        size_t n = 33 + termgen_below(&seed, 30);
        term_t keys[64], vals[64], k2[64], v2[64];
        for (size_t i = 0; i < n; i++) {
            keys[i] = I((int64_t)(i * 3));
            vals[i] = I((int64_t)termgen_below(&seed, 2));
        }
        memcpy(k2, keys, sizeof keys);
        memcpy(v2, vals, sizeof vals);
        switch (round % 5) {
        case 0: /* one value differs */
            v2[termgen_below(&seed, n)] = F(0.5);
            break;
        case 1: /* one key differs */
            k2[termgen_below(&seed, n)] = I(1000 + (int64_t)termgen_below(&seed, 3) - 1);
            break;
        case 2: /* several keys and values differ */
            for (int j = 0; j < 4; j++) {
                k2[termgen_below(&seed, n)] = I(-1 - (int64_t)termgen_below(&seed, 200));
                v2[termgen_below(&seed, n)] = I(5);
            }
            break;
        case 3: /* a value equal only arithmetically */
            v2[termgen_below(&seed, n)] = F(1.0);
            break;
        default: /* a key that is an int in one, a float in the other */
        {
            size_t i = termgen_below(&seed, n);
            k2[i] = F((double)term_small_value(keys[i]));
            break;
        }
        }
        term_t a, b;
        int rc = heap_make_map(&H, keys, vals, n, &a);
        CU_ASSERT_FATAL(rc == GD_OK);
        rc = heap_make_map(&H, k2, v2, n, &b);
        if (rc == GD_EDUPLICATE_KEY)
            continue;
        CU_ASSERT_FATAL(rc == GD_OK);
        for (int ex = 0; ex < 2; ex++) {
            int want = ref_map_cmp(a, b, ex);
            int got = sgn(tg_compare(a, b, ex)), rev = sgn(tg_compare(b, a, ex));
            if (got != want || rev != -want)
                fprintf(stderr, "\nround %d exact %d: got %d rev %d want %d\n", round, ex, got, rev,
                        want);
            CU_ASSERT_EQUAL(got, want);
            CU_ASSERT_EQUAL(rev, -want);
        }
    }
    teardown();
}

/* ------------------------------------------------------------------------ */
/* Deep terms: no C recursion.                                               */

#define DEEP 1000000

static void test_deep_nesting(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    /* [[[...[1]...]]] built twice, independently. */
    term_t a = TERM_NIL, b = TERM_NIL, c = TERM_NIL;
    CU_ASSERT_FATAL(heap_cons(&h, term_make_small(1), TERM_NIL, &a) == GD_OK);
    CU_ASSERT_FATAL(heap_cons(&h, term_make_small(1), TERM_NIL, &b) == GD_OK);
    CU_ASSERT_FATAL(heap_cons(&h, term_make_small(2), TERM_NIL, &c) == GD_OK);
    for (int i = 0; i < DEEP; i++) {
        CU_ASSERT_FATAL(heap_cons(&h, a, TERM_NIL, &a) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, b, TERM_NIL, &b) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, c, TERM_NIL, &c) == GD_OK);
    }
    CU_ASSERT_EQUAL(tg_compare(a, b, true), 0);
    CU_ASSERT(tg_compare(a, c, false) < 0);
    CU_ASSERT_EQUAL(tg_hash(a), tg_hash(b));
    CU_ASSERT_NOT_EQUAL(tg_hash(a), tg_hash(c));

    heap_destroy(&h);

    /* Branching at every level: {Deeper, 1} and [Deeper | 1] make the walk
     * push a frame per level, so the work stack grows to a million. */
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t x = term_make_small(0), y = term_make_small(0), z = term_make_small(0);
    term_t lx = TERM_NIL, ly = TERM_NIL, lz = TERM_NIL;
    for (int i = 0; i < DEEP; i++) {
        term_t *ex, *ey, *ez;
        term_t px = x, py = y, pz = z;
        CU_ASSERT_FATAL(heap_make_tuple(&h, 2, &ex, &x) == GD_OK);
        ex[0] = px;
        ex[1] = term_make_small(1);
        CU_ASSERT_FATAL(heap_make_tuple(&h, 2, &ey, &y) == GD_OK);
        ey[0] = py;
        ey[1] = term_make_small(1);
        CU_ASSERT_FATAL(heap_make_tuple(&h, 2, &ez, &z) == GD_OK);
        ez[0] = pz;
        ez[1] = term_make_small(i == 0 ? 2 : 1); /* differs at the bottom only */
        /* Tails are distinct boxed floats, so neither walk can skip them. */
        term_t cx, cy, cz, fx, fy, fz;
        CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &fx) == GD_OK);
        CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &fy) == GD_OK);
        CU_ASSERT_FATAL(heap_make_float(&h, i == 0 ? 2.0 : 1.0, &fz) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, lx, fx, &cx) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, ly, fy, &cy) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, lz, fz, &cz) == GD_OK);
        lx = cx;
        ly = cy;
        lz = cz;
    }
    CU_ASSERT_EQUAL(tg_compare(x, y, true), 0);
    CU_ASSERT_EQUAL(tg_compare(x, z, true), -1);
    CU_ASSERT_EQUAL(tg_compare(z, x, false), 1);
    CU_ASSERT_EQUAL(tg_hash(x), tg_hash(y));
    CU_ASSERT_NOT_EQUAL(tg_hash(x), tg_hash(z));
    CU_ASSERT_EQUAL(tg_compare(lx, ly, true), 0);
    CU_ASSERT_EQUAL(tg_compare(lx, lz, true), -1);
    CU_ASSERT_EQUAL(tg_hash(lx), tg_hash(ly));
    CU_ASSERT_NOT_EQUAL(tg_hash(lx), tg_hash(lz));

    /* Deep single-element tuples and a long flat list. */
    term_t d1 = term_make_small(3), d2 = term_make_small(3), d3 = term_make_small(4);
    for (int i = 0; i < DEEP; i++) {
        term_t *e1, *e2, *e3, p1 = d1, p2 = d2, p3 = d3;
        CU_ASSERT_FATAL(heap_make_tuple(&h, 1, &e1, &d1) == GD_OK);
        e1[0] = p1;
        CU_ASSERT_FATAL(heap_make_tuple(&h, 1, &e2, &d2) == GD_OK);
        e2[0] = p2;
        CU_ASSERT_FATAL(heap_make_tuple(&h, 1, &e3, &d3) == GD_OK);
        e3[0] = p3;
    }
    CU_ASSERT_EQUAL(tg_compare(d1, d2, true), 0);
    CU_ASSERT_EQUAL(tg_compare(d1, d3, true), -1);
    CU_ASSERT_EQUAL(tg_hash(d1), tg_hash(d2));
    term_t long1 = TERM_NIL, long2 = TERM_NIL;
    for (int i = 0; i < DEEP; i++) {
        CU_ASSERT_FATAL(heap_cons(&h, term_make_small(i), long1, &long1) == GD_OK);
        CU_ASSERT_FATAL(heap_cons(&h, term_make_small(i), long2, &long2) == GD_OK);
    }
    CU_ASSERT_EQUAL(tg_compare(long1, long2, true), 0);
    CU_ASSERT_EQUAL(tg_hash(long1), tg_hash(long2));
    heap_destroy(&h);
}

/* ------------------------------------------------------------------------ */
/* Hash consistency and distribution                                         */

static void test_hash_representations(void)
{
    setup();
    /* -0.0 and 0.0 are =:= in OTP 25, so they must hash alike. */
    CU_ASSERT_EQUAL(tg_hash(F(0.0)), tg_hash(F(-0.0)));
    CU_ASSERT_NOT_EQUAL(tg_hash(I(1)), tg_hash(F(1.0)));
    /* A bignum that is not normalised (a zero high digit, or a value that
     * fits a small) hashes as the normalised integer. */
    term_t *p = heap_alloc(&H, 3);
    CU_ASSERT_FATAL(p != NULL);
    p[0] = heap_make_header(HDR_POS_BIG, 2);
    p[1] = 12345;
    p[2] = 0;
    term_t odd = term_make_boxed(p);
    CHECK_BOTH(odd, I(12345), 0);
    p = heap_alloc(&H, 2);
    p[0] = heap_make_header(HDR_NEG_BIG, 1);
    p[1] = (uint64_t)1 << 40;
    CHECK_BOTH(term_make_boxed(p), I(-((int64_t)1 << 40)), 0);
    /* Local vs external pids and ports of the local node. */
    CU_ASSERT_EQUAL(tg_hash(term_make_local_pid(3, 4)), tg_hash(PID("nonode@nohost", 3, 4, 0)));
    CU_ASSERT_EQUAL(tg_hash(term_make_local_port(9)), tg_hash(PORT("nonode@nohost", 9, 0)));
    /* Refs with high zero words. */
    CU_ASSERT_EQUAL(tg_hash(REF("a@b", 3, 1, 7u)), tg_hash(REF("a@b", 3, 4, 7u, 0u, 0u, 0u)));
    /* Maps built in different ways. */
    term_t kv[2 * 40];
    for (int i = 0; i < 40; i++) {
        kv[2 * i] = T(2, A("k"), I(i));
        kv[2 * i + 1] = BIN("v", 1);
    }
    term_t m1 = MAP(40, kv), m2;
    CU_ASSERT_FATAL(heap_make_map(&H, NULL, NULL, 0, &m2) == GD_OK);
    for (int i = 39; i >= 0; i--)
        CU_ASSERT_FATAL(heap_map_put(&H, m2, T(2, A("k"), I(i)), SUB(BIN("xvx", 3), 8, 8), &m2) ==
                        GD_OK);
    CHECK_BOTH(m1, m2, 0);
    teardown();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_hash_distribution(void)
{
    setup();
    /* Consecutive integers, atoms-like tuples and short binaries: no full
     * collisions, and the low 5 bits (the HAMT's first level) close to
     * uniform. */
    enum { N = 60000 };
    uint64_t *hs = malloc(3 * N * sizeof *hs);
    size_t buckets[3][32] = {{0}};
    for (int i = 0; i < N; i++) {
        hs[i] = tg_hash(term_make_small(i));
        char s[16];
        int len = snprintf(s, sizeof s, "k%d", i);
        hs[N + i] = tg_hash(BIN(s, (size_t)len));
        hs[2 * N + i] = tg_hash(T(2, term_make_small(i % 100), term_make_small(i / 100)));
        for (int k = 0; k < 3; k++)
            buckets[k][hs[k * N + i] & 31]++;
    }
    for (int k = 0; k < 3; k++)
        for (int b = 0; b < 32; b++) {
            /* expected N/32 = 1875; allow a wide margin */
            CU_ASSERT(buckets[k][b] > 1500 && buckets[k][b] < 2250);
        }
    /* No two of the 3N hashes are equal. */
    int dups = 0;
    qsort(hs, 3 * N, sizeof *hs, cmp_u64);
    for (size_t i = 1; i < 3 * N; i++)
        dups += hs[i] == hs[i - 1];
    CU_ASSERT_EQUAL(dups, 0);
    free(hs);
    teardown();
}

/* ------------------------------------------------------------------------ */
/* Randomised properties                                                     */

static int cmp_terms_exact(const void *a, const void *b)
{
    return tg_compare(*(const term_t *)a, *(const term_t *)b, true);
}

static int cmp_terms_arith(const void *a, const void *b)
{
    return tg_compare(*(const term_t *)a, *(const term_t *)b, false);
}

/* Reports a failed property with the two terms involved. */
static bool prop_fail(const char *what, term_t x, term_t y)
{
    fprintf(stderr, "\nproperty failed: %s\n  x = ", what);
    termgen_dump(stderr, x);
    fprintf(stderr, "\n  y = ");
    termgen_dump(stderr, y);
    fprintf(stderr, "\n  cmp exact %d, arith %d\n", tg_compare(x, y, true),
            tg_compare(x, y, false));
    return false;
}

static void test_random_properties(void)
{
    uint64_t seed0 = termgen_seed_from_env(0x5eed0001);
    for (int round = 0; round < 40; round++) {
        uint64_t s = seed0 + (uint64_t)round;
        heap_t h;
        CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
        enum { N = 150 };
        term_t terms[N];
        for (int i = 0; i < N; i++) {
            terms[i] = termgen_random(&h, &s, 1 + (int)termgen_below(&s, 4));
            CU_ASSERT_FATAL(terms[i] != TERM_NONE);
        }
        bool ok = true;
        for (int i = 0; i < N && ok; i++) {
            /* A differently built equal term: equal both ways, same hash. */
            term_t v = termgen_variant(&h, terms[i], &s);
            CU_ASSERT_FATAL(v != TERM_NONE);
            if (tg_compare(terms[i], v, true) != 0 || tg_compare(v, terms[i], false) != 0)
                ok = prop_fail("variant equal", terms[i], v);
            else if (tg_hash(terms[i]) != tg_hash(v))
                ok = prop_fail("variant hash", terms[i], v);
            for (int j = 0; j < N && ok; j++) {
                for (int ex = 0; ex < 2 && ok; ex++) {
                    int c = tg_compare(terms[i], terms[j], ex);
                    int r = tg_compare(terms[j], terms[i], ex);
                    if (sgn(c) != -sgn(r) || (i == j && c != 0))
                        ok = prop_fail("antisymmetry", terms[i], terms[j]);
                    /* The variant sits where the original does. */
                    else if (sgn(tg_compare(v, terms[j], ex)) != sgn(c))
                        ok = prop_fail("variant position", v, terms[j]);
                }
                if (!ok)
                    break;
                int ce = tg_compare(terms[i], terms[j], true);
                if (ce == 0 && tg_hash(terms[i]) != tg_hash(terms[j]))
                    ok = prop_fail("equal terms hash alike", terms[i], terms[j]);
                else if (ce == 0 && tg_compare(terms[i], terms[j], false) != 0)
                    ok = prop_fail("exact equality implies arithmetic", terms[i], terms[j]);
            }
        }
        /* Transitivity: after sorting, every pair is in order. */
        for (int ex = 0; ex < 2 && ok; ex++) {
            term_t sorted[N];
            memcpy(sorted, terms, sizeof sorted);
            qsort(sorted, N, sizeof *sorted, ex ? cmp_terms_exact : cmp_terms_arith);
            for (int i = 0; i < N && ok; i++)
                for (int j = i + 1; j < N && ok; j++)
                    if (tg_compare(sorted[i], sorted[j], ex) > 0)
                        ok = prop_fail(ex ? "transitivity (exact)" : "transitivity (arith)",
                                       sorted[i], sorted[j]);
        }
        if (!ok)
            fprintf(stderr, "  replay: GD_TEST_SEED=%llu (round %d)\n", (unsigned long long)seed0,
                    round);
        CU_ASSERT(ok);
        heap_destroy(&h);
    }
}

/* ------------------------------------------------------------------------ */
/* Differential check against OTP: the same random terms ordered by a real
 * `erl` (== / < and erts_internal:cmp_term, the exact term order).          */

static const char erl_order_script[] =
    "#!/usr/bin/env escript\n"
    "%% Reads length-prefixed external terms; writes one validity byte per term\n"
    "%% and, for each pair i < j, (arith order + 1) and (cmp_term + 1).\n"
    "-mode(compile).\n"
    "main([In, Out]) ->\n"
    "    {ok, B} = file:read_file(In),\n"
    "    T = list_to_tuple(split(B, [])),\n"
    "    N = tuple_size(T),\n"
    "    Valid = << <<(case X of {ok, _} -> 1; _ -> 0 end)>> || X <- tuple_to_list(T) >>,\n"
    "    Pairs = [pair(element(I, T), element(J, T)) || I <- lists:seq(1, N),\n"
    "                                                   J <- lists:seq(I + 1, N)],\n"
    "    ok = file:write_file(Out, [Valid | Pairs]).\n"
    "split(<<>>, Acc) -> lists:reverse(Acc);\n"
    "split(<<L:32, E:L/binary, Rest/binary>>, Acc) ->\n"
    "    D = try {ok, binary_to_term(E)} catch _:_ -> bad end,\n"
    "    split(Rest, [D | Acc]).\n"
    "pair({ok, A}, {ok, B}) -> <<(arith(A, B)), (erts_internal:cmp_term(A, B) + 1)>>;\n"
    "pair(_, _) -> <<255, 255>>.\n"
    "arith(A, B) when A < B -> 0;\n"
    "arith(A, B) when A == B -> 1;\n"
    "arith(_, _) -> 2.\n";

/*
 * True if t holds a hash map (more than 32 keys) with a reference among its
 * keys.  OTP 25 hashes external references inconsistently with =:=, so such
 * a map can compare unequal to itself rebuilt in another insertion order
 * (maps:from_list(lists:reverse(maps:to_list(M))) /= M); there OTP's answer
 * is not a reference to check against.
 */
static bool otp25_unstable(term_t t)
{
    if (term_is_list(t))
        return otp25_unstable(term_car(t)) || otp25_unstable(term_cdr(t));
    if (term_is_tuple(t)) {
        for (size_t i = 0; i < term_tuple_arity(t); i++)
            if (otp25_unstable(term_tuple_elems(t)[i]))
                return true;
        return false;
    }
    if (term_is_fun(t)) {
        heap_fun_info_t fi;
        heap_fun_info(t, &fi);
        for (uint32_t i = 0; i < fi.num_free; i++)
            if (otp25_unstable(term_fun_free(t)[i]))
                return true;
        return false;
    }
    if (!term_is_map(t))
        return false;
    heap_map_iter_t it;
    heap_map_iter_init(&it, t);
    term_t k, v;
    bool big = heap_map_size(t) > HEAP_MAP_FLAT_MAX;
    while (heap_map_next(&it, &k, &v))
        if ((big && term_is_ref(k)) || otp25_unstable(k) || otp25_unstable(v))
            return true;
    return false;
}

static void test_order_against_erl(void)
{
    if (!etfmini_have_erl()) {
        /* Interop checks never skip: scripts/setup installs OTP. */
        fprintf(stderr, "\n  erl not on PATH: the differential order check cannot run\n");
        CU_FAIL_FATAL("erl not on PATH (run scripts/setup)");
    }
    uint64_t seed0 = termgen_seed_from_env(0xE71);
    uint64_t s = seed0;
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    enum { N = 240 };
    term_t terms[N];
    for (int i = 0; i < N; i++) {
        do
            terms[i] = termgen_random(&h, &s, (int)termgen_below(&s, 4));
        while (terms[i] != TERM_NONE && otp25_unstable(terms[i]));
        CU_ASSERT_FATAL(terms[i] != TERM_NONE);
        /* Some exact duplicates built differently, to exercise equality. */
        if (i > 0 && termgen_below(&s, 6) == 0) {
            terms[i] = termgen_variant(&h, terms[termgen_below(&s, (uint64_t)i)], &s);
            CU_ASSERT_FATAL(terms[i] != TERM_NONE);
        }
    }
    char dir[] = "/tmp/gd_erl_order_XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    char in[64], out[64], script[64], cmd[256];
    snprintf(in, sizeof in, "%s/terms.bin", dir);
    snprintf(out, sizeof out, "%s/order.bin", dir);
    snprintf(script, sizeof script, "%s/order.escript", dir);
    /* From here on failures go to `cleanup`, so the directory never stays. */
    FILE *f = fopen(script, "w");
    CU_ASSERT(f != NULL);
    if (f == NULL)
        goto cleanup;
    fputs(erl_order_script, f);
    fclose(f);
    f = fopen(in, "wb");
    CU_ASSERT(f != NULL);
    if (f == NULL)
        goto cleanup;
    for (int i = 0; i < N; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        CU_ASSERT(m != NULL);
        if (m == NULL) {
            fclose(f);
            goto cleanup;
        }
        fputc(131, m);
        CU_ASSERT(etfmini_write(m, terms[i]) == 0);
        fclose(m);
        uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                          (uint8_t)len};
        fwrite(hdr, 1, 4, f);
        fwrite(buf, 1, len, f);
        free(buf);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "escript %s %s %s", script, in, out);
    int rc = system(cmd);
    CU_ASSERT_EQUAL(rc, 0);
    f = rc == 0 ? fopen(out, "rb") : NULL;
    CU_ASSERT(f != NULL);
    if (f == NULL)
        goto cleanup;
    static uint8_t res[N + N * N];
    size_t got = fread(res, 1, sizeof res, f);
    fclose(f);
    CU_ASSERT_EQUAL(got, (size_t)N + (size_t)N * (N - 1));
    if (got != (size_t)N + (size_t)N * (N - 1))
        goto cleanup;
    size_t invalid = 0, mismatches = 0, checked = 0;
    for (int i = 0; i < N; i++)
        invalid += res[i] == 0;
    const uint8_t *pr = res + N;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++, pr += 2) {
            if (pr[0] == 255)
                continue;
            checked++;
            int wa = pr[0] - 1, we = pr[1] - 1;
            int ga = sgn(tg_compare(terms[i], terms[j], false));
            int ge = sgn(tg_compare(terms[i], terms[j], true));
            if (ga != wa || ge != we) {
                if (mismatches++ < 5) {
                    fprintf(stderr,
                            "\nOTP order differs (arith %d vs OTP %d, exact %d vs OTP %d)\n"
                            "  a = ",
                            ga, wa, ge, we);
                    termgen_dump(stderr, terms[i]);
                    fprintf(stderr, "\n  b = ");
                    termgen_dump(stderr, terms[j]);
                    fputc('\n', stderr);
                }
            }
        }
    fprintf(stderr, "\n  (OTP order: %zu pairs checked, %zu of %d terms refused by OTP)\n", checked,
            invalid, N);
    if (mismatches || invalid)
        fprintf(stderr, "\n%zu mismatches in %zu pairs, %zu terms OTP refused; GD_TEST_SEED=%llu\n",
                mismatches, checked, invalid, (unsigned long long)seed0);
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT_EQUAL(invalid, 0);
    CU_ASSERT(checked > (size_t)N * (N - 1) / 4);
cleanup:
    if (getenv("GD_KEEP_ERL_FILES") == NULL) {
        remove(in);
        remove(out);
        remove(script);
        rmdir(dir);
    } else {
        fprintf(stderr, "  files kept in %s\n", dir);
    }
    heap_destroy(&h);
}

static const gd_test_case_t cases[] = {
    {"class order", test_class_order},
    {"numbers", test_numbers},
    {"atoms", test_atoms},
    {"pids ports refs", test_pids_ports_refs},
    {"funs exports", test_funs_exports},
    {"tuples lists", test_tuples_lists},
    {"bitstrings", test_bitstrings},
    {"maps order", test_maps_order},
    {"deep nesting", test_deep_nesting},
    {"hash representations", test_hash_representations},
    {"hash distribution", test_hash_distribution},
    {"random properties", test_random_properties},
    {"order against erl", test_order_against_erl},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_compare", cases)
