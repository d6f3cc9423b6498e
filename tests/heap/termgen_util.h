/*
 * termgen_util.h — deterministic random terms for heap/ tests (and any
 * suite that wants them): every term type, edge values, small pools of
 * atoms/nodes so that random terms often coincide (ties and equal subterms
 * matter for ordering tests).
 */
#ifndef GIRDER_TESTS_TERMGEN_UTIL_H
#define GIRDER_TESTS_TERMGEN_UTIL_H

#include <stdio.h>

#include "heap.h"

/* splitmix64: the next pseudo-random word; advances *seed. */
uint64_t termgen_next(uint64_t *seed);

/* A pseudo-random integer in [0, n) (n > 0). */
uint64_t termgen_below(uint64_t *seed, uint64_t n);

/* Shuffles the n pairs k[i] => v[i] in place (Fisher-Yates, the same
 * permutation for keys and values), determined by *seed (which it
 * advances); for building a map from its pairs in another order. */
void termgen_shuffle_pairs(term_t *k, term_t *v, size_t n, uint64_t *seed);

/*
 * A random term on h, nested at most max_depth levels (0 = leaves only),
 * fully determined by *seed (which it advances).  Every term is one a real
 * OTP node accepts (references have 1..5 words, 1..3 for the local identity
 * 'nonode@nohost'/0), so tests can hand them to erl.  Returns TERM_NONE only
 * when h cannot grow.  Recursive in max_depth: keep it modest (< 50).
 */
term_t termgen_random(heap_t *h, uint64_t *seed, int max_depth);

/* A random term that can be a map key or element but is never compound:
 * numbers, atoms, pids, ports, refs, binaries, []. */
term_t termgen_leaf(heap_t *h, uint64_t *seed);

/* A float: half the time one of special[0..n_special), else random finite
 * bits (TERM_NONE when the heap is full). */
term_t termgen_float(heap_t *h, uint64_t *seed, const double *special, size_t n_special);

/*
 * A term exactly equal (=:=) to t but built another way where the model
 * allows one: bitstrings become sub-binaries of a larger (heap or refc)
 * binary at a random bit offset, maps are rebuilt from their pairs in a
 * shuffled order (or by successive puts), local pids/ports may become
 * external ones of 'nonode@nohost' creation 0, funs differ in the fields
 * that take no part in comparison.  Recursive in t's depth (test terms
 * only).
 * TERM_NONE when h cannot grow.
 */
term_t termgen_variant(heap_t *h, term_t t, uint64_t *seed);

/* Writes t in an Erlang-like syntax for failure messages (recursive; test
 * terms only; maps in storage order, bitstrings as hex with a bit count). */
void termgen_dump(FILE *f, term_t t);

/* The seed a suite uses: GD_TEST_SEED from the environment if set, else
 * `fallback`.  Printed by suites on failure so a run can be replayed. */
uint64_t termgen_seed_from_env(uint64_t fallback);

/*
 * The checked comparison, hash and map calls for tests, whose terms are
 * small enough that GD_ENOMEM means a broken machine: each reports failure
 * on stderr and exits the test program (the library itself never aborts).
 */
int tg_compare(term_t a, term_t b, bool exact);
bool tg_equal_exact(term_t a, term_t b);
uint64_t tg_hash(term_t t);
term_t tg_map_get(term_t map, term_t key);
void tg_map_sorted(term_t map, term_t *keys, term_t *vals);

#endif
