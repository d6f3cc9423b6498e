/*
 * gc_util.h — helpers for the collector/copier tests: a seeded PRNG, a
 * structural deep equality that does not depend on heap_compare, a check
 * that every pointer of a term lands inside a given heap, and random term
 * builders.
 */
#ifndef GIRDER_TESTS_HEAP_GC_UTIL_H
#define GIRDER_TESTS_HEAP_GC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"

/* splitmix64: small, seedable, good enough for test shapes. */
typedef struct gcu_rng {
    uint64_t s;
} gcu_rng_t;
uint64_t gcu_next(gcu_rng_t *r);
/* Uniform in [0, n). */
size_t gcu_below(gcu_rng_t *r, size_t n);

/*
 * Structural equality: same shape, same immediates, same raw words (for
 * REFC_BIN: same bit size and same bytes), term fields equal.  Sharing is
 * not compared.  Iterative.  Aborts the test binary if it runs out of
 * memory.
 */
bool gcu_equal(term_t a, term_t b);

/* True if every boxed/list pointer reachable from t points into h's young
 * area (below young_top), old area (below old_top) or a fragment (below its
 * used words), and every header found is a plausible one. */
bool gcu_on_heap(const heap_t *h, term_t t);

/* True if no pointer reachable from t points into h (the copy is detached). */
bool gcu_disjoint(const heap_t *h, term_t t);

/* Number of words reachable from t counted as a tree (sharing expanded),
 * saturating at `cap`. */
size_t gcu_tree_words(term_t t, size_t cap);

/* Count of REFC_BIN objects on a heap's off-heap list (and its fragments'). */
size_t gcu_offheap_count(const heap_t *h);

/* A random leaf term (immediate, bignum, float, heap/refc binary, ext pid,
 * port, ref, export) built with heap_alloc (no collection). */
term_t gcu_leaf(heap_t *h, gcu_rng_t *r);

/*
 * A random term of about `budget` words (tuples, lists, maps laid out by
 * hand, sub-binaries, funs, leaves), with some shared subterms.  Built with
 * heap_alloc only.  Iterative.
 */
term_t gcu_random_term(heap_t *h, gcu_rng_t *r, size_t budget);

/* A flat map object {n, keys..., vals...} built by hand (the layout only:
 * keys are not sorted; the collector and copier do not care). */
term_t gcu_fake_map(heap_t *h, const term_t *keys, const term_t *vals, size_t n);

/* Words the test leaves fit into: an upper bound for gcu_leaf. */
#define GCU_LEAF_MAX_WORDS 12

#endif
