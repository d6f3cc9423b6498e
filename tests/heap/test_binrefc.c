/*
 * test_binrefc.c — off-heap refcounted binaries across heaps: shared by
 * 1,000 heaps through message copies and freed exactly once; dropped
 * binaries (even 1 GB ones, even promoted ones) given back at the next
 * collection; binary pressure alone triggers collections; heap_destroy
 * releases young, old and fragment references; and, on several threads at
 * once (the suite runs under ThreadSanitizer in scripts/test), binaries
 * copied into per-thread heaps by heap_msg_copy and released there, the
 * last reference on a thread other than the creator's, and the atom table
 * filled with overlapping names from several threads.
 */
#include <pthread.h>
#include <stdio.h>
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

/* ------------------------------------------------------------------------ */
/* Several threads                                                          */

enum { NTHREADS = 4, NBINS = 8, SHARED_BIN_BYTES = 1000, ROUNDS = 150 };

typedef struct share_ctx {
    term_t source; /* [bin_0, ..., bin_7] on the creator's heap: read only */
    heap_binary_t *bins[NBINS];
    pthread_barrier_t copied;  /* every worker holds its copy */
    pthread_barrier_t dropped; /* the creator has dropped its own */
    atomic_uint started;
    atomic_uint bad;
} share_ctx_t;

/* True if t is a list of the NBINS binaries with their contents. */
static bool shared_ok(const share_ctx_t *c, term_t t)
{
    for (int i = 0; i < NBINS; i++, t = term_cdr(t)) {
        if (!term_is_list(t))
            return false;
        term_t b = term_car(t);
        if (!term_is_boxed_of(b, HDR_REFC_BIN) || bin_of(b) != c->bins[i])
            return false;
        heap_bin_view_t v;
        heap_bin_view(b, &v);
        for (size_t k = 0; k < SHARED_BIN_BYTES; k += 97)
            if (v.bytes[k] != (uint8_t)(k * 7 + (size_t)i))
                return false;
    }
    return term_is_nil(t);
}

/* A worker: copies the shared list into its own heap (refcounts bumped
 * concurrently with the others), checks the bytes, drops the copy and
 * collects (refcounts dropped concurrently), ROUNDS times; then keeps one
 * copy past the creator's release, so one of the workers frees each
 * binary. */
static void *share_worker(void *arg)
{
    share_ctx_t *c = arg;
    atomic_fetch_add(&c->started, 1);
    heap_t h;
    if (heap_init(&h, 0) != GD_OK) {
        atomic_fetch_add(&c->bad, 1);
        pthread_barrier_wait(&c->copied);
        pthread_barrier_wait(&c->dropped);
        return NULL;
    }
    term_t held = TERM_NIL;
    term_t *roots[] = {&held};
    for (int r = 0; r < ROUNDS; r++) {
        heap_frag_t *f;
        if (heap_msg_copy(c->source, &f, &held) != GD_OK) {
            atomic_fetch_add(&c->bad, 1);
            break;
        }
        heap_attach_frag(&h, f);
        if (!shared_ok(c, held))
            atomic_fetch_add(&c->bad, 1);
        if (r + 1 < ROUNDS)
            held = TERM_NIL;
        if (heap_gc(&h, 0, roots, 1) != GD_OK)
            atomic_fetch_add(&c->bad, 1);
    }
    pthread_barrier_wait(&c->copied);
    pthread_barrier_wait(&c->dropped);
    /* Only the workers' references are left. */
    if (!shared_ok(c, held))
        atomic_fetch_add(&c->bad, 1);
    if (heap_gc(&h, 0, roots, 1) != GD_OK || !shared_ok(c, held))
        atomic_fetch_add(&c->bad, 1);
    heap_destroy(&h);
    return NULL;
}

static void test_shared_across_threads(void)
{
    size_t base = heap_binary_live_bytes();
    static share_ctx_t c;
    memset(&c, 0, sizeof c);
    heap_t creator = fresh();
    term_t list = TERM_NIL;
    for (int i = NBINS; i-- > 0;) {
        uint8_t *data;
        term_t b;
        OK(heap_make_bitstring_uninit(&creator, (size_t)SHARED_BIN_BYTES * 8, &data, &b));
        for (size_t k = 0; k < SHARED_BIN_BYTES; k++)
            data[k] = (uint8_t)(k * 7 + (size_t)i);
        c.bins[i] = bin_of(b);
        OK(heap_cons(&creator, b, list, &list));
    }
    c.source = list;
    CU_ASSERT_EQUAL(heap_binary_live_bytes() - base, NBINS * SHARED_BIN_BYTES);
    CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&c.copied, NULL, NTHREADS + 1), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&c.dropped, NULL, NTHREADS + 1), 0);
    pthread_t tids[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tids[t], NULL, share_worker, &c), 0);
    pthread_barrier_wait(&c.copied);
    /* Every worker holds a copy (older ones may wait in its old generation
     * for a major collection): the creator's release is never the last. */
    for (int i = 0; i < NBINS; i++)
        CU_ASSERT(atomic_load(&c.bins[i]->refc) >= NTHREADS + 1);
    heap_destroy(&creator);
    pthread_barrier_wait(&c.dropped);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&c.copied);
    pthread_barrier_destroy(&c.dropped);
    CU_ASSERT_EQUAL(atomic_load(&c.started), NTHREADS);
    CU_ASSERT_EQUAL(atomic_load(&c.bad), 0);
    /* Freed exactly once each, by a worker. */
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), base);
}

enum { ATOM_SPAN = 1500, ATOM_STEP = 500, ATOM_NAMES = ATOM_STEP * (NTHREADS - 1) + ATOM_SPAN };

typedef struct atom_ctx {
    unsigned t;
    term_t got[ATOM_SPAN]; /* the atom of name lo + i */
    atomic_uint *started;
    pthread_barrier_t *go;
    int rc;
} atom_ctx_t;

static int atom_name(char *buf, size_t cap, unsigned i)
{
    return snprintf(buf, cap, "binrefc_overlap_%u", i);
}

/* Puts names [t*ATOM_STEP, t*ATOM_STEP + ATOM_SPAN), overlapping the
 * neighbours' ranges, in an order of its own (a stride), so several
 * threads create the same atoms at the same moment. */
static void *atom_worker(void *arg)
{
    atom_ctx_t *a = arg;
    atomic_fetch_add(a->started, 1);
    pthread_barrier_wait(a->go);
    /* Strides coprime to ATOM_SPAN visit every name once. */
    static const unsigned strides[NTHREADS] = {7, 11, 13, 17};
    unsigned lo = a->t * ATOM_STEP;
    for (unsigned n = 0; n < ATOM_SPAN; n++) {
        unsigned i = (n * strides[a->t]) % ATOM_SPAN;
        char name[48];
        int len = atom_name(name, sizeof name, lo + i);
        int rc = heap_atom_put(name, (size_t)len, &a->got[i]);
        if (rc != GD_OK) {
            a->rc = rc;
            return NULL;
        }
    }
    return NULL;
}

static void test_atoms_from_threads(void)
{
    uint32_t before = heap_atom_count();
    static atom_ctx_t ctx[NTHREADS];
    atomic_uint started = 0;
    pthread_barrier_t go;
    CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&go, NULL, NTHREADS), 0);
    pthread_t tids[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        ctx[t] = (atom_ctx_t){.t = t, .started = &started, .go = &go};
        for (unsigned i = 0; i < ATOM_SPAN; i++)
            ctx[t].got[i] = TERM_NONE;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tids[t], NULL, atom_worker, &ctx[t]), 0);
    }
    for (unsigned t = 0; t < NTHREADS; t++)
        pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&go);
    CU_ASSERT_EQUAL(atomic_load(&started), NTHREADS);
    /* Each name maps to one atom whichever thread created it, and each
     * atom has that name; exactly the distinct names were added. */
    term_t seen[ATOM_NAMES];
    for (unsigned i = 0; i < ATOM_NAMES; i++)
        seen[i] = TERM_NONE;
    unsigned mismatches = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        CU_ASSERT_EQUAL(ctx[t].rc, GD_OK);
        for (unsigned i = 0; i < ATOM_SPAN; i++) {
            unsigned name_no = t * ATOM_STEP + i;
            term_t a = ctx[t].got[i];
            if (!term_is_atom(a) || (seen[name_no] != TERM_NONE && seen[name_no] != a))
                mismatches++;
            seen[name_no] = a;
        }
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    for (unsigned i = 0; i < ATOM_NAMES; i++) {
        char name[48];
        int len = atom_name(name, sizeof name, i);
        size_t tl;
        const char *text = heap_atom_text(seen[i], &tl);
        if (tl != (size_t)len || memcmp(text, name, tl) != 0)
            mismatches++;
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT_EQUAL(heap_atom_count(), before + ATOM_NAMES);
}

static const gd_test_case_t cases[] = {
    {"one binary shared by 1,000 heaps, freed exactly once", test_shared_by_1000_heaps},
    {"a dropped 1 GB binary is given back at the next GC", test_1gb_binary_given_back},
    {"binary pressure alone triggers collections", test_binary_pressure_triggers_gc},
    {"heap_destroy releases young, old and fragment binaries", test_destroy_releases_everything},
    {"binaries copied and released on several threads", test_shared_across_threads},
    {"the atom table filled from several threads", test_atoms_from_threads},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_binrefc", cases)
