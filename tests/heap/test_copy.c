/*
 * test_copy.c — heap_term_size / heap_copy_term and message fragments
 * (heap_msg_copy, heap_msg_copy_tuple, heap_attach_frag, heap_frag_free).
 */
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_util.h"
#include "termgen_util.h"

#define OK(expr) CU_ASSERT_EQUAL_FATAL((expr), GD_OK)

static heap_t fresh(void)
{
    heap_t h;
    int rc = heap_init(&h, 0);
    CU_ASSERT_EQUAL_FATAL(rc, GD_OK);
    /* These tests count words precisely: never collect behind their back. */
    h.gc_flags &= ~HEAP_GCF_STRESS;
    return h;
}

static term_t tuple2(heap_t *h, term_t a, term_t b)
{
    term_t *el, t;
    OK(heap_make_tuple(h, 2, &el, &t));
    el[0] = a;
    el[1] = b;
    return t;
}

static void test_size_immediates(void)
{
    CU_ASSERT_EQUAL(heap_term_size(term_make_small(-5)), 0);
    CU_ASSERT_EQUAL(heap_term_size(ATOM_OK), 0);
    CU_ASSERT_EQUAL(heap_term_size(TERM_NIL), 0);
    CU_ASSERT_EQUAL(heap_term_size(term_make_local_pid(7, 1)), 0);
    CU_ASSERT_EQUAL(heap_term_size(term_make_local_port(9)), 0);
}

static void test_size_each_type(void)
{
    heap_t h = fresh();
    term_t t;
    CU_ASSERT_EQUAL(heap_term_size(tuple2(&h, term_make_small(1), ATOM_OK)), 3);
    OK(heap_cons(&h, term_make_small(1), TERM_NIL, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 2);
    term_t items[3] = {ATOM_OK, ATOM_ERROR, TERM_NIL};
    OK(heap_make_list(&h, items, 3, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 6);
    OK(heap_make_float(&h, 1.5, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 2);
    uint64_t digits[2] = {1, 2};
    OK(heap_make_integer_digits(&h, true, digits, 2, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 3);
    OK(heap_make_binary(&h, "0123456789", 10, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 4);
    uint8_t big[200] = {0};
    term_t refc;
    OK(heap_make_binary(&h, big, sizeof big, &refc));
    CU_ASSERT_EQUAL(heap_term_size(refc), 4);
    OK(heap_make_sub_binary(&h, refc, 8, 64, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 8);
    OK(heap_make_ext_pid(&h, ATOM_NONODE, 1, 2, 3, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 4);
    uint32_t w[3] = {1, 2, 3};
    OK(heap_make_ref(&h, ATOM_NONODE, 1, w, 3, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 6);
    OK(heap_make_export(&h, ATOM_OK, ATOM_ERROR, 2, &t));
    CU_ASSERT_EQUAL(heap_term_size(t), 4);
    heap_fun_info_t info = {.arity = 1,
                            .num_free = 2,
                            .module = ATOM_OK,
                            .old_index = term_make_small(0),
                            .old_uniq = term_make_small(0),
                            .pid = term_make_local_pid(1, 0)};
    term_t *fv;
    OK(heap_make_fun(&h, &info, &fv, &t));
    fv[0] = ATOM_OK;
    fv[1] = refc;
    CU_ASSERT_EQUAL(heap_term_size(t), 11 + 4);
    heap_destroy(&h);
}

static void test_copy_random_terms(void)
{
    gcu_rng_t r = {42};
    size_t base = heap_binary_live_bytes();
    for (int i = 0; i < 150; i++) {
        heap_t src = fresh(), dst = fresh();
        term_t t = gcu_random_term(&src, &r, 20 + gcu_below(&r, 600));
        size_t words = heap_term_size(t);
        size_t before = heap_used_words(&dst);
        term_t c;
        OK(heap_copy_term(&dst, t, &c));
        CU_ASSERT_EQUAL(heap_used_words(&dst) - before, words);
        CU_ASSERT(words <= gcu_tree_words(t, SIZE_MAX));
        CU_ASSERT(gcu_equal(t, c));
        CU_ASSERT(gcu_on_heap(&dst, c));
        CU_ASSERT(gcu_disjoint(&src, c));
        heap_destroy(&src);
        /* The copy stands alone once the source is gone. */
        CU_ASSERT(gcu_on_heap(&dst, c));
        heap_destroy(&dst);
    }
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
}

static void test_copy_termgen_terms(void)
{
    uint64_t seed = termgen_seed_from_env(99);
    for (int i = 0; i < 300; i++) {
        heap_t src = fresh(), dst = fresh();
        uint64_t s0 = seed;
        term_t t = termgen_random(&src, &seed, 1 + i % 6);
        CU_ASSERT_FATAL(t != TERM_NONE);
        size_t words = heap_term_size(t);
        size_t before = heap_used_words(&dst);
        term_t c;
        OK(heap_copy_term(&dst, t, &c));
        CU_ASSERT_EQUAL(heap_used_words(&dst) - before, words);
        CU_ASSERT(gcu_equal(t, c));
        CU_ASSERT(tg_compare(t, c, true) == 0);
        CU_ASSERT(tg_hash(t) == tg_hash(c));
        CU_ASSERT(gcu_disjoint(&src, c));
        if (tg_compare(t, c, true) != 0)
            fprintf(stderr, "copy differs (seed %llu)\n", (unsigned long long)s0);
        heap_destroy(&src);
        heap_destroy(&dst);
    }
}

static void test_copy_shares_refc_binaries(void)
{
    heap_t a = fresh(), b = fresh();
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)i;
    term_t bin, sub;
    OK(heap_make_binary(&a, data, sizeof data, &bin));
    OK(heap_make_sub_binary(&a, bin, 16, 800, &sub));
    heap_binary_t *hb = (heap_binary_t *)(uintptr_t)term_boxed_ptr(bin)[2];
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 1);
    term_t pair = tuple2(&a, bin, sub), c;
    OK(heap_copy_term(&b, pair, &c));
    /* bin and sub's original are one REFC_BIN object: one copy, one ref. */
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 2);
    CU_ASSERT_EQUAL(gcu_offheap_count(&b), 1);
    CU_ASSERT_EQUAL(b.offheap_bytes, sizeof data);
    term_t cbin = term_tuple_elems(c)[0], csub = term_tuple_elems(c)[1];
    CU_ASSERT(term_is_boxed_of(cbin, HDR_REFC_BIN));
    CU_ASSERT_EQUAL(term_boxed_ptr(cbin)[2], (term_t)(uintptr_t)hb);
    CU_ASSERT(term_is_boxed_of(csub, HDR_SUB_BIN));
    CU_ASSERT_EQUAL(term_boxed_ptr(csub)[3], cbin);
    heap_bin_view_t v;
    heap_bin_view(csub, &v);
    CU_ASSERT_EQUAL(v.bit_size, 800);
    CU_ASSERT_PTR_EQUAL(v.bytes, hb->data + 2);
    /* A lone sub-binary drags its REFC_BIN along, sharing the bytes. */
    term_t c2;
    OK(heap_copy_term(&b, sub, &c2));
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 3);
    heap_destroy(&a);
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 2);
    heap_destroy(&b);
}

static void test_copy_preserves_cheap_sharing(void)
{
    heap_t a = fresh(), b = fresh();
    term_t x = tuple2(&a, term_make_small(1), term_make_small(2));
    term_t xx = tuple2(&a, x, x), c;
    CU_ASSERT_EQUAL(heap_term_size(xx), 6);
    OK(heap_copy_term(&b, xx, &c));
    CU_ASSERT_EQUAL(term_tuple_elems(c)[0], term_tuple_elems(c)[1]);

    /* {L, L} with L a list: the list head is looked up, so it is shared. */
    term_t items[4] = {ATOM_OK, x, ATOM_ERROR, x};
    term_t l;
    OK(heap_make_list(&a, items, 4, &l));
    CU_ASSERT_EQUAL(heap_term_size(tuple2(&a, l, l)), 3 + 8 + 3);

    /* T(k+1) = {T(k), T(k)}: 2^60 leaves as a tree, linear as a copy. */
    term_t t = x;
    for (int k = 0; k < 60; k++)
        t = tuple2(&a, t, t);
    size_t words = heap_term_size(t);
    CU_ASSERT_EQUAL(words, 3 * 61);
    OK(heap_copy_term(&b, t, &c));
    for (int k = 0; k < 60; k++) {
        CU_ASSERT_FATAL(term_is_tuple(c) && term_tuple_arity(c) == 2);
        CU_ASSERT_EQUAL_FATAL(term_tuple_elems(c)[0], term_tuple_elems(c)[1]);
        c = term_tuple_elems(c)[0];
    }
    CU_ASSERT(gcu_equal(c, x));
    heap_destroy(&a);
    heap_destroy(&b);
}

static void test_copy_deep_and_long(void)
{
    enum { DEPTH = 300000 };
    heap_t a = fresh(), b = fresh();
    term_t nested = TERM_NIL, tnest = ATOM_OK, longl = TERM_NIL;
    for (int i = 0; i < DEPTH; i++) {
        OK(heap_cons(&a, nested, TERM_NIL, &nested));         /* [[[...]]] */
        tnest = tuple2(&a, term_make_small(i), tnest);        /* {i, {...}} */
        OK(heap_cons(&a, term_make_small(i), longl, &longl)); /* [i | ...] */
    }
    /* Cars nested deep, with something in every tail: no stack growth
     * shortcut applies, the explicit stack takes the depth. */
    term_t deep_car = ATOM_OK;
    for (int i = 0; i < DEPTH; i++) {
        term_t *el, tl;
        OK(heap_make_tuple(&a, 1, &el, &tl));
        el[0] = ATOM_ERROR;
        OK(heap_cons(&a, deep_car, tl, &deep_car));
    }
    term_t all = tuple2(&a, tuple2(&a, nested, tnest), tuple2(&a, longl, deep_car));
    size_t expect = 3 * 3 + 2 * DEPTH + 3 * DEPTH + 2 * DEPTH + 4 * DEPTH;
    CU_ASSERT_EQUAL(heap_term_size(all), expect);
    term_t c;
    OK(heap_copy_term(&b, all, &c));
    CU_ASSERT(gcu_equal(all, c));
    CU_ASSERT(gcu_disjoint(&a, c));
    heap_destroy(&a);
    heap_destroy(&b);
}

static void test_msg_copy_and_attach(void)
{
    gcu_rng_t r = {7};
    heap_t a = fresh(), b = fresh();
    term_t t = gcu_random_term(&a, &r, 400);
    heap_frag_t *f;
    term_t m;
    size_t a_used = heap_used_words(&a), b_used = heap_used_words(&b);
    OK(heap_msg_copy(t, &f, &m));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(f->used, heap_term_size(t));
    /* Building the message touched neither heap. */
    CU_ASSERT_EQUAL(heap_used_words(&a), a_used);
    CU_ASSERT_EQUAL(heap_used_words(&b), b_used);
    CU_ASSERT(gcu_equal(t, m));
    heap_attach_frag(&b, f);
    CU_ASSERT_EQUAL(heap_used_words(&b), b_used + f->used);
    CU_ASSERT(gcu_on_heap(&b, m));
    heap_destroy(&a);
    /* Usable at once on the receiver, merged at its next collection. */
    term_t ref;
    heap_t keep = fresh();
    OK(heap_copy_term(&keep, m, &ref));
    term_t *roots[] = {&m};
    OK(heap_gc(&b, 0, roots, 1));
    CU_ASSERT_PTR_NULL(b.frags);
    CU_ASSERT_EQUAL(b.frag_words, 0);
    CU_ASSERT(gcu_on_heap(&b, m));
    CU_ASSERT(gcu_equal(m, ref));
    heap_destroy(&b);
    heap_destroy(&keep);
}

static void test_msg_immediate_and_tuple(void)
{
    heap_frag_t *f = (heap_frag_t *)1;
    term_t m;
    OK(heap_msg_copy(ATOM_OK, &f, &m));
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT_EQUAL(m, ATOM_OK);
    heap_attach_frag(NULL, NULL); /* both no-ops */
    heap_frag_free(NULL);

    heap_t a = fresh();
    term_t reason = tuple2(&a, ATOM_BADARG, term_make_small(3));
    term_t elems[3] = {ATOM_EXIT, term_make_local_pid(5, 0), reason};
    OK(heap_msg_copy_tuple(elems, 3, &f, &m));
    CU_ASSERT_EQUAL(f->used, 1 + 3 + 3);
    CU_ASSERT(term_is_tuple(m) && term_tuple_arity(m) == 3);
    CU_ASSERT_EQUAL(term_tuple_elems(m)[0], ATOM_EXIT);
    CU_ASSERT(gcu_equal(term_tuple_elems(m)[2], reason));
    CU_ASSERT_PTR_EQUAL(term_boxed_ptr(m), f->words);
    heap_frag_free(f);

    OK(heap_msg_copy_tuple(NULL, 0, &f, &m));
    CU_ASSERT(term_is_tuple(m) && term_tuple_arity(m) == 0);
    heap_frag_free(f);
    heap_destroy(&a);
}

static void test_frag_free_releases_binaries(void)
{
    heap_t a = fresh();
    uint8_t data[500] = {1, 2, 3};
    term_t bin;
    OK(heap_make_binary(&a, data, sizeof data, &bin));
    heap_binary_t *hb = (heap_binary_t *)(uintptr_t)term_boxed_ptr(bin)[2];
    heap_frag_t *f;
    term_t m;
    OK(heap_msg_copy(tuple2(&a, bin, bin), &f, &m));
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 2);
    CU_ASSERT_EQUAL(f->offheap_bytes, sizeof data);
    heap_frag_free(f); /* an undelivered message */
    CU_ASSERT_EQUAL(atomic_load(&hb->refc), 1);
    heap_destroy(&a);
}

static const gd_test_case_t cases[] = {
    {"size of immediates", test_size_immediates},
    {"size of each boxed type", test_size_each_type},
    {"copy random terms: equal, detached, exact size", test_copy_random_terms},
    {"copy termgen terms (real maps): equal, same hash", test_copy_termgen_terms},
    {"copy shares refc binaries and sub-binaries", test_copy_shares_refc_binaries},
    {"copy preserves cheap sharing (DAG of depth 60)", test_copy_preserves_cheap_sharing},
    {"copy deep nesting and long lists without recursion", test_copy_deep_and_long},
    {"message fragment: copy, attach, merge at GC", test_msg_copy_and_attach},
    {"message: immediate and tuple", test_msg_immediate_and_tuple},
    {"unattached fragment frees its binary refs", test_frag_free_releases_binaries},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_copy", cases)
