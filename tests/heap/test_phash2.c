/*
 * test_phash2.c — heap_phash2 (erlang:phash2/1,2) on fixed vectors taken
 * from OTP 25 (erl), the range rules, order independence of maps, the
 * equality of local and external pids with one number, and failure of the
 * walk when its stack cannot grow.  The whole interop corpus is checked
 * against live erl by tests/interop/phash2_interop.sh.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_internal.h" /* heap_malloc_fail_countdown */
#include "heap.h"

#define OK(call) CU_ASSERT_EQUAL_FATAL((call), GD_OK)

static uint32_t ph(term_t t, uint64_t range)
{
    uint32_t h = 0;
    OK(heap_phash2(t, range, &h));
    return h;
}

static term_t list_of(heap_t *h, const term_t *items, size_t n)
{
    term_t l;
    OK(heap_make_list(h, items, n, &l));
    return l;
}

/* erl: {erlang:phash2(T), erlang:phash2(T, 4294967296)} for each. */
static void test_vectors(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    CU_ASSERT_EQUAL(ph(heap_atom("abc"), 0), 26499);
    CU_ASSERT_EQUAL(ph(heap_atom("\xc3\xa5\xc3\xa4\xc3\xb6"), 0), 62518); /* 'åäö' */
    CU_ASSERT_EQUAL(ph(TERM_NIL, 0), 113427502);
    CU_ASSERT_EQUAL(ph(TERM_NIL, (uint64_t)1 << 32), 3468870702u);
    term_t a = heap_atom("a");
    CU_ASSERT_EQUAL(ph(list_of(&h, &a, 1), 0), 23864141);
    CU_ASSERT_EQUAL(ph(list_of(&h, &a, 1), (uint64_t)1 << 32), 1634476877u);
    term_t abc[] = {term_make_small('a'), term_make_small('b'), term_make_small('c')};
    CU_ASSERT_EQUAL(ph(list_of(&h, abc, 3), 0), 117343302);
    term_t *e, tup;
    OK(heap_make_tuple(&h, 2, &e, &tup));
    e[0] = a;
    e[1] = heap_atom("b");
    CU_ASSERT_EQUAL(ph(tup, (uint64_t)1 << 32), 1980325998u);
    uint8_t bytes[] = {1, 2, 3};
    term_t bin;
    OK(heap_make_binary(&h, bytes, 3, &bin));
    CU_ASSERT_EQUAL(ph(bin, (uint64_t)1 << 32), 4167228639u);
    uint64_t two64[] = {0, 1};
    term_t big, nbig;
    OK(heap_make_integer_digits(&h, false, two64, 2, &big));
    OK(heap_make_integer_digits(&h, true, two64, 2, &nbig));
    CU_ASSERT_EQUAL(ph(big, 0), 103122609);
    CU_ASSERT_EQUAL(ph(nbig, 0), 13457787);
    term_t mz, pz;
    OK(heap_make_float(&h, -0.0, &mz));
    OK(heap_make_float(&h, 0.0, &pz));
    CU_ASSERT_EQUAL(ph(mz, 0), 20875736);
    CU_ASSERT_EQUAL(ph(pz, 0), 20875736);
    heap_destroy(&h);
}

/* Maps hash their pairs independently of storage order and size class. */
static void test_maps(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t two = term_make_small(2), l2 = list_of(&h, &two, 1);
    term_t keys[] = {heap_atom("a"), heap_atom("b")}, vals[] = {term_make_small(1), l2};
    term_t m;
    OK(heap_make_map(&h, keys, vals, 2, &m));
    CU_ASSERT_EQUAL(ph(m, 0), 103078375);
    CU_ASSERT_EQUAL(ph(m, (uint64_t)1 << 32), 1579473383u);
    /* 40 pairs built in two orders, and grown one put at a time. */
    term_t k[40], v[40], rk[40], rv[40];
    for (int i = 0; i < 40; i++) {
        k[i] = term_make_small(i);
        v[i] = term_make_small(i * i);
        rk[39 - i] = k[i];
        rv[39 - i] = v[i];
    }
    term_t m1, m2, m3;
    OK(heap_make_map(&h, k, v, 40, &m1));
    OK(heap_make_map(&h, rk, rv, 40, &m2));
    OK(heap_make_map(&h, NULL, NULL, 0, &m3));
    for (int i = 0; i < 40; i++)
        OK(heap_map_put(&h, m3, rk[i], rv[i], &m3));
    CU_ASSERT_EQUAL(ph(m1, 0), ph(m2, 0));
    CU_ASSERT_EQUAL(ph(m1, 0), ph(m3, 0));
    heap_destroy(&h);
}

static void test_ranges(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t t = heap_atom("abc");
    uint32_t out = 5;
    CU_ASSERT_EQUAL(heap_phash2(t, ((uint64_t)1 << 32) + 1, &out), GD_EINVAL);
    CU_ASSERT_EQUAL(out, 5);
    CU_ASSERT_EQUAL(ph(t, 1), 0);
    CU_ASSERT_EQUAL(ph(t, 7), 26499 % 7);
    CU_ASSERT_EQUAL(ph(TERM_NIL, 1000003), 3468870702u % 1000003);
    /* phash2/1 keeps 27 bits of the full value. */
    CU_ASSERT_EQUAL(ph(TERM_NIL, 0), 3468870702u & ((1u << 27) - 1));
    heap_destroy(&h);
}

/* Pids hash by number only (OTP: "only the number is hashed"), so a local
 * pid and an external one of another node with that number agree. */
static void test_identifiers(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t ext;
    OK(heap_make_ext_pid(&h, heap_atom("a@bc"), 5, 9, 3, &ext));
    CU_ASSERT_EQUAL(ph(term_make_local_pid(5, 0), 0), 131498469);
    CU_ASSERT_EQUAL(ph(term_make_local_pid(5, 7), 0), 131498469);
    CU_ASSERT_EQUAL(ph(ext, 0), 131498469);
    CU_ASSERT_EQUAL(ph(term_make_local_pid(5, 0), (uint64_t)1 << 32), 1742111205u);
    heap_destroy(&h);
}

static void test_stack_failure(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    /* {{{...{[], 1.5}..., 1.5}, 1.5}: 100 pending elements. */
    term_t t = TERM_NIL;
    for (int i = 0; i < 100; i++) {
        term_t *e, u, f;
        OK(heap_make_float(&h, 1.5, &f));
        OK(heap_make_tuple(&h, 2, &e, &u));
        e[0] = t;
        e[1] = f;
        t = u;
    }
    uint32_t out = 5;
    heap_malloc_fail_countdown = 1;
    CU_ASSERT_EQUAL(heap_phash2(t, 0, &out), GD_ENOMEM);
    heap_malloc_fail_countdown = 0;
    CU_ASSERT_EQUAL(out, 5);
    OK(heap_phash2(t, 0, &out));
    heap_destroy(&h);
}

static const gd_test_case_t cases[] = {
    {"vectors from OTP 25", test_vectors},
    {"maps are order independent", test_maps},
    {"ranges", test_ranges},
    {"pids hash by number", test_identifiers},
    {"walk stack cannot grow", test_stack_failure},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_phash2", cases)
