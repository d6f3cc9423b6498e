/*
 * test_binrefc.c — off-heap refcounted binaries across heaps: shared by
 * 1,000 heaps through message copies and freed exactly once; dropped
 * binaries (even 1 GB ones, even promoted ones) given back at the next
 * collection; binary pressure alone triggers collections; heap_destroy
 * releases young, old and fragment references.
 */
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_util.h"

#define OK(expr) CU_ASSERT_EQUAL_FATAL((expr), GD_OK)

static heap_t fresh(void)
{
    heap_t h;
    int rc = heap_init(&h, 0);
    CU_ASSERT_EQUAL_FATAL(rc, GD_OK);
    return h;
}

static heap_binary_t *bin_of(term_t refc)
{
    return (heap_binary_t *)(uintptr_t)term_boxed_ptr(refc)[2];
}

/* A term holding a binary twice: directly and through a sub-binary. */
static term_t holder(heap_t *h, term_t bin)
{
    term_t *el, t, sub;
    OK(heap_make_sub_binary(h, bin, 8 * 100, 8 * 5000, &sub));
    OK(heap_make_tuple(h, 3, &el, &t));
    el[0] = bin;
    el[1] = sub;
    el[2] = ATOM_OK;
    return t;
}

static bool holder_ok(term_t t, const heap_binary_t *b)
{
    if (!term_is_tuple(t) || term_tuple_arity(t) != 3)
        return false;
    term_t bin = term_tuple_elems(t)[0], sub = term_tuple_elems(t)[1];
    heap_bin_view_t v;
    heap_bin_view(sub, &v);
    return term_is_boxed_of(bin, HDR_REFC_BIN) && bin_of(bin) == b &&
           term_boxed_ptr(sub)[3] == bin && v.bytes == b->data + 100 && v.bit_size == 8 * 5000 &&
           v.bytes[0] == (uint8_t)(100 * 13);
}

enum { NHEAPS = 1000, BIN_BYTES = 1 << 20 };

static void test_shared_by_1000_heaps(void)
{
    size_t base = heap_binary_live_bytes();
    static heap_t heaps[NHEAPS];
    static term_t held[NHEAPS];
    term_t *roots[NHEAPS];
    for (int i = 0; i < NHEAPS; i++) {
        heaps[i] = fresh();
        roots[i] = &held[i];
    }
    uint8_t *data;
    term_t bin;
    OK(heap_make_bitstring_uninit(&heaps[0], (size_t)BIN_BYTES * 8, &data, &bin));
    for (size_t k = 0; k < BIN_BYTES; k++)
        data[k] = (uint8_t)(k * 13);
    heap_binary_t *b = bin_of(bin);
    held[0] = holder(&heaps[0], bin);
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, BIN_BYTES);

    /* A chain of sends: heap i gets it from heap i-1, like a relay. */
    for (int i = 1; i < NHEAPS; i++) {
        heap_frag_t *f;
        OK(heap_msg_copy(held[i - 1], &f, &held[i]));
        heap_attach_frag(&heaps[i], f);
        /* the bin and the sub-binary's original: one REFC_BIN, one ref */
        CU_ASSERT_EQUAL(atomic_load(&b->refc), (size_t)i + 1);
    }
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, BIN_BYTES);

    /* Collections move the REFC_BIN objects, never the bytes or the count;
     * every other heap collects twice (its copy goes to the old heap). */
    for (int i = 0; i < NHEAPS; i++) {
        OK(heap_gc(&heaps[i], 0, &roots[i], 1));
        if (i % 2 == 0)
            OK(heap_gc(&heaps[i], 0, &roots[i], 1));
        CU_ASSERT(holder_ok(held[i], b));
    }
    CU_ASSERT_EQUAL(atomic_load(&b->refc), NHEAPS);

    /* Drop in a scrambled order: each drop is given back at that heap's
     * next collection (or its destruction); the last frees the binary. */
    int order[NHEAPS];
    for (int i = 0; i < NHEAPS; i++)
        order[i] = i;
    gcu_rng_t r = {2024};
    for (int i = NHEAPS - 1; i > 0; i--) {
        int j = (int)gcu_below(&r, (size_t)i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (int n = 0; n < NHEAPS; n++) {
        int i = order[n];
        CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, BIN_BYTES);
        CU_ASSERT_EQUAL(atomic_load(&b->refc), (size_t)(NHEAPS - n));
        held[i] = TERM_NIL;
        if (n % 3 == 0) {
            heap_destroy(&heaps[i]);
        } else {
            OK(heap_gc(&heaps[i], 0, &roots[i], 1));
            CU_ASSERT_EQUAL(gcu_offheap_count(&heaps[i]), 0);
            CU_ASSERT_EQUAL(heaps[i].offheap_bytes + heaps[i].old_offheap_bytes, 0);
            heap_destroy(&heaps[i]);
        }
    }
    /* Freed exactly once: the live count fell by exactly its size (a
     * second free would also be caught by ASan). */
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
}

static void test_1gb_binary_given_back(void)
{
    const size_t GB = (size_t)1 << 30;
    size_t base = heap_binary_live_bytes();
    heap_t h = fresh();
    h.gc_flags &= ~HEAP_GCF_STRESS;
    term_t acc = TERM_NIL, big;
    term_t *roots[] = {&acc, &big};
    uint8_t *data;

    /* Young: dropped before any collection saw it. */
    OK(heap_ensure_free(&h, 4, roots, 2));
    OK(heap_make_bitstring_uninit(&h, GB * 8, &data, &big));
    data[0] = 1;
    data[GB - 1] = 2;
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, GB);
    big = TERM_NIL;
    OK(heap_gc(&h, 0, roots, 2));
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);

    /* Old: kept across two collections (promoted), then dropped. */
    OK(heap_make_bitstring_uninit(&h, GB * 8, &data, &big));
    OK(heap_gc(&h, 0, roots, 2));
    OK(heap_gc(&h, 0, roots, 2));
    const term_t *p = term_boxed_ptr(big);
    CU_ASSERT(h.old_start != NULL && p >= h.old_start && p < h.old_top);
    CU_ASSERT_EQUAL(h.old_offheap_bytes, GB);
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, GB);
    big = TERM_NIL;
    uint64_t majors = h.stats.major_collections;
    OK(heap_gc(&h, 0, roots, 2)); /* the next collection, whatever kind */
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
    CU_ASSERT_EQUAL(h.stats.major_collections, majors + 1);
    CU_ASSERT_EQUAL(h.old_offheap_bytes, 0);
    heap_destroy(&h);
}

static void test_binary_pressure_triggers_gc(void)
{
    size_t base = heap_binary_live_bytes();
    heap_t h = fresh();
    h.gc_flags &= ~HEAP_GCF_STRESS;
    term_t t = TERM_NIL;
    term_t *roots[] = {&t};
    size_t peak = 0;
    /* 10 KB binaries, one live at a time, 4 heap words each: the young
     * area alone would hold dozens of them before filling up. */
    for (int i = 0; i < 2000; i++) {
        OK(heap_ensure_free(&h, 4, roots, 1));
        uint8_t *data;
        OK(heap_make_bitstring_uninit(&h, 10240 * 8, &data, &t));
        data[0] = (uint8_t)i;
        size_t live = heap_binary_live_bytes() - base;
        if (live > peak)
            peak = live;
    }
    CU_ASSERT(h.stats.minor_collections + h.stats.major_collections > 0);
    /* Bounded by the binary threshold, not by the young area's size. */
    CU_ASSERT(peak <= 2 * ((size_t)46422 * 8) + 10240);
    OK(heap_gc(&h, 0, roots, 1));
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, 10240);
    heap_destroy(&h);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
}

static void test_destroy_releases_everything(void)
{
    size_t base = heap_binary_live_bytes();
    heap_t h = fresh(), other = fresh();
    h.gc_flags &= ~HEAP_GCF_STRESS;
    term_t a = TERM_NIL, b = TERM_NIL, c = TERM_NIL;
    term_t *roots[] = {&a, &b, &c};
    uint8_t bytes[300] = {7};
    OK(heap_ensure_free(&h, 10, roots, 3));
    OK(heap_make_binary(&h, bytes, sizeof bytes, &a));
    OK(heap_gc(&h, 0, roots, 3));
    OK(heap_gc(&h, 0, roots, 3));                      /* a is old now */
    OK(heap_make_binary(&h, bytes, sizeof bytes, &b)); /* young */
    term_t m;
    OK(heap_make_binary(&other, bytes, sizeof bytes, &m));
    heap_frag_t *f;
    OK(heap_msg_copy(m, &f, &c));
    heap_attach_frag(&h, f); /* in a fragment */
    /* overflow fragment holding one more */
    for (int i = 0; i < 300; i++)
        OK(heap_cons(&h, ATOM_OK, TERM_NIL, &m));
    OK(heap_make_binary(&h, bytes, sizeof bytes, &m));
    CU_ASSERT_PTR_NOT_NULL(h.frags);
    CU_ASSERT_EQUAL(gcu_offheap_count(&h), 4);
    /* a, b, the overflow one, and other's (shared with the message) */
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, 4 * sizeof bytes);
    CU_ASSERT_EQUAL(atomic_load(&bin_of(c)->refc), 2);
    heap_destroy(&h);
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, sizeof bytes);
    heap_destroy(&other);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
}

static const gd_test_case_t cases[] = {
    {"one binary shared by 1,000 heaps, freed exactly once", test_shared_by_1000_heaps},
    {"a dropped 1 GB binary is given back at the next GC", test_1gb_binary_given_back},
    {"binary pressure alone triggers collections", test_binary_pressure_triggers_gc},
    {"heap_destroy releases young, old and fragment binaries", test_destroy_releases_everything},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_binrefc", cases)
