/*
 * test_allocfail.c — allocation failures fail the operation, never the
 * node: the atom table whose creation runs out of memory (the first test,
 * before anything in this process has touched the table), and the work
 * stacks of the comparison and the hash, and the map operations built on
 * them, failing at each growth step (heap_malloc_fail_countdown, the
 * heap-internal failure injection).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_internal.h" /* heap_malloc_fail_countdown */
#include "heap.h"

#define OK(call) CU_ASSERT_EQUAL_FATAL((call), GD_OK)

/* ------------------------------------------------------------------------ */
/* The atom table                                                           */

static void test_atom_table_init_fails(void)
{
    /* The table is created by the first atom operation: make its first
     * allocation fail.  The failure is permanent for this OS process. */
    heap_malloc_fail_countdown = 1;
    term_t a = TERM_NONE;
    CU_ASSERT_EQUAL(heap_atom_put("foo", 3, &a), GD_ENOMEM);
    heap_malloc_fail_countdown = 0;
    CU_ASSERT_EQUAL(heap_atom_put("foo", 3, &a), GD_ENOMEM);
    CU_ASSERT_EQUAL(heap_atom_lookup("ok", 2, &a), GD_ENOMEM);
    CU_ASSERT_EQUAL(heap_atom(("bar")), TERM_NONE);
    CU_ASSERT_EQUAL(heap_atom_count(), 0);

    /* The fixed atoms are constants and still have their names. */
    size_t len = 0;
    const char *t = heap_atom_text(ATOM_OK, &len);
    CU_ASSERT_EQUAL_FATAL(len, 2);
    CU_ASSERT_NSTRING_EQUAL(t, "ok", 2);
    t = heap_atom_text(ATOM_NONODE, &len);
    CU_ASSERT_EQUAL_FATAL(len, 13);
    CU_ASSERT_NSTRING_EQUAL(t, "nonode@nohost", 13);
    t = heap_atom_text(ATOM_EMPTY, &len);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT_EQUAL(heap_atom_chars(ATOM_UNDEFINED), 9);
    CU_ASSERT(heap_atom_is_latin1(ATOM_TRUE));

    /* Comparing fixed atoms reads their text. */
    int order = 0;
    OK(heap_compare_checked(ATOM_FALSE, ATOM_TRUE, true, &order));
    CU_ASSERT_EQUAL(order, -1);
    OK(heap_compare_checked(ATOM_NONODE, ATOM_OK, true, &order));
    CU_ASSERT_EQUAL(order, -1);
}

/* ------------------------------------------------------------------------ */
/* Walks that need their stack to grow                                      */

#define DEPTH 200

/* T(0) = {}, T(n+1) = {T(n), 1.5}: every level leaves a boxed element
 * pending, so a walk of T(DEPTH) needs DEPTH frames (the inline stacks hold
 * 32).  A fresh copy each call, so two of them share no pointer. */
static term_t branching(heap_t *h, int depth, double leaf)
{
    term_t *e;
    term_t t;
    OK(heap_make_tuple(h, 0, &e, &t));
    for (int i = 0; i < depth; i++) {
        term_t f, u;
        OK(heap_make_float(h, i == 0 ? leaf : 1.5, &f));
        OK(heap_make_tuple(h, 2, &e, &u));
        e[0] = t;
        e[1] = f;
        t = u;
    }
    return t;
}

static void test_compare_stack(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t a = branching(&h, DEPTH, 1.0), b = branching(&h, DEPTH, 1.0);
    term_t c = branching(&h, DEPTH, 2.0);
    /* Fail the first growth, then the second, ...: each fails the
     * comparison with GD_ENOMEM and leaks nothing (ASan). */
    for (unsigned n = 1; n <= 3; n++) {
        int order = 7;
        heap_malloc_fail_countdown = n;
        CU_ASSERT_EQUAL(heap_compare_checked(a, b, true, &order), GD_ENOMEM);
        CU_ASSERT_EQUAL(order, 7); /* not set on failure */
        heap_malloc_fail_countdown = n;
        CU_ASSERT_EQUAL(heap_compare_checked(a, c, false, &order), GD_ENOMEM);
    }
    heap_malloc_fail_countdown = 0;
    int order = 7;
    OK(heap_compare_checked(a, b, true, &order));
    CU_ASSERT_EQUAL(order, 0);
    OK(heap_compare_checked(a, c, true, &order));
    CU_ASSERT_EQUAL(order, -1);
    OK(heap_compare_checked(c, a, false, &order));
    CU_ASSERT_EQUAL(order, 1);
    heap_destroy(&h);
}

static void test_hash_stack(void)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t a = branching(&h, DEPTH, 1.0), b = branching(&h, DEPTH, 1.0);
    for (unsigned n = 1; n <= 3; n++) {
        uint64_t x = 7;
        heap_malloc_fail_countdown = n;
        CU_ASSERT_EQUAL(heap_hash_checked(a, &x), GD_ENOMEM);
        CU_ASSERT_EQUAL(x, 7);
    }
    heap_malloc_fail_countdown = 0;
    uint64_t ha = 0, hb = 1;
    OK(heap_hash_checked(a, &ha));
    OK(heap_hash_checked(b, &hb));
    CU_ASSERT_EQUAL(ha, hb);
    heap_destroy(&h);
}

/* Maps whose keys need a growing stack to compare or hash: building,
 * looking up, updating and sorting them fail with GD_ENOMEM, and work once
 * memory is back. */
static void check_map_ops(size_t nkeys)
{
    heap_t h;
    OK(heap_init(&h, 0));
    term_t keys[40], vals[40];
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = branching(&h, DEPTH, (double)i);
        vals[i] = term_make_small((int64_t)i);
    }
    term_t m = TERM_NONE, m2 = TERM_NONE, v = TERM_NONE;
    heap_malloc_fail_countdown = 1;
    CU_ASSERT_EQUAL(heap_make_map(&h, keys, vals, nkeys, &m), GD_ENOMEM);
    heap_malloc_fail_countdown = 0;
    OK(heap_make_map(&h, keys, vals, nkeys, &m));
    CU_ASSERT_EQUAL(heap_map_size(m), nkeys);

    term_t probe = branching(&h, DEPTH, 3.0);
    heap_malloc_fail_countdown = 1;
    CU_ASSERT_EQUAL(heap_map_find(m, probe, &v), GD_ENOMEM);
    heap_malloc_fail_countdown = 0;
    OK(heap_map_find(m, probe, &v));
    CU_ASSERT_EQUAL(v, term_make_small(3));

    term_t fresh = branching(&h, DEPTH, 99.0);
    heap_malloc_fail_countdown = 1;
    CU_ASSERT_EQUAL(heap_map_put(&h, m, fresh, ATOM_OK, &m2), GD_ENOMEM);
    heap_malloc_fail_countdown = 0;
    OK(heap_map_put(&h, m, fresh, ATOM_OK, &m2));
    CU_ASSERT_EQUAL(heap_map_size(m2), nkeys + 1);

    term_t sk[41], sv[41];
    heap_malloc_fail_countdown = 1;
    int rc = heap_map_sorted(m2, sk, sv);
    heap_malloc_fail_countdown = 0;
    /* A flat map is already sorted: nothing to compare. */
    CU_ASSERT_EQUAL(rc, nkeys + 1 > HEAP_MAP_FLAT_MAX ? GD_ENOMEM : GD_OK);
    OK(heap_map_sorted(m2, sk, sv));
    for (size_t i = 0; i + 1 < nkeys + 1; i++) {
        int order = 0;
        OK(heap_compare_checked(sk[i], sk[i + 1], true, &order));
        CU_ASSERT_EQUAL(order, -1);
    }
    heap_destroy(&h);
}

static void test_flat_map_ops(void)
{
    check_map_ops(10);
}

static void test_hash_map_ops(void)
{
    check_map_ops(40);
}

static const gd_test_case_t cases[] = {
    {"atom table creation fails", test_atom_table_init_fails}, /* must run first */
    {"compare stack cannot grow", test_compare_stack},
    {"hash stack cannot grow", test_hash_stack},
    {"flat map ops with failing compares", test_flat_map_ops},
    {"hash map ops with failing hashes", test_hash_map_ops},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_allocfail", cases)
