/*
 * test_maps.c — flat and hash maps: build, lookup, persistent update,
 * iteration, sorted export, duplicate detection, hash collisions (forced
 * with the HAMT hash-mask testing knob) and random operations against a
 * simple reference model.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "hamt.h"
#include "heap.h"
#include "termgen_util.h"

static int sgn(int x)
{
    return (x > 0) - (x < 0);
}

static int cmp_exact(const void *a, const void *b)
{
    return tg_compare(*(const term_t *)a, *(const term_t *)b, true);
}

/* The i-th distinct key: a mix of types so that maps hold every kind. */
static term_t key_of(heap_t *h, size_t i)
{
    term_t t, *el;
    char buf[32];
    switch (i % 6) {
    case 0:
        return term_make_small((int64_t)i * 7 - 1000);
    case 1:
        CU_ASSERT_FATAL(heap_make_tuple(h, 2, &el, &t) == GD_OK);
        el[0] = ATOM_OK;
        el[1] = term_make_small((int64_t)i);
        return t;
    case 2: {
        int n = snprintf(buf, sizeof buf, "key-%zu", i);
        CU_ASSERT_FATAL(heap_make_binary(h, buf, (size_t)n, &t) == GD_OK);
        return t;
    }
    case 3:
        CU_ASSERT_FATAL(heap_make_uint64(h, UINT64_MAX - i, &t) == GD_OK);
        return t;
    case 4:
        CU_ASSERT_FATAL(heap_make_float(h, (double)i + 0.5, &t) == GD_OK);
        return t;
    default:
        if (i < 600) {
            snprintf(buf, sizeof buf, "atom_%zu", i);
            t = heap_atom(buf);
            CU_ASSERT_FATAL(t != TERM_NONE);
            return t;
        }
        CU_ASSERT_FATAL(heap_cons(h, term_make_small((int64_t)i), TERM_NIL, &t) == GD_OK);
        return t;
    }
}

/*
 * Checks that map holds exactly keys[i] => vals[i] (i < n): size, storage
 * kind, every lookup (also through an equal key built elsewhere), absent
 * keys, iteration (each key once), heap_map_sorted (ascending and matching
 * values), comparison and hash against a map built another way.
 */
static void check_map(heap_t *h, term_t map, const term_t *keys, const term_t *vals, size_t n,
                      uint64_t *seed)
{
    CU_ASSERT_FATAL(term_is_map(map));
    CU_ASSERT_EQUAL_FATAL(heap_map_size(map), n);
    CU_ASSERT_EQUAL(term_boxed_subtag(map), n <= HEAP_MAP_FLAT_MAX ? HDR_MAP_FLAT : HDR_MAP_HASH);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (tg_map_get(map, keys[i]) != vals[i])
            bad++;
        if (i % 17 == 0) {
            term_t v = termgen_variant(h, keys[i], seed);
            if (tg_map_get(map, v) != vals[i])
                bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Keys that are not there, including near misses: 1.0 for 1. */
    CU_ASSERT_EQUAL(tg_map_get(map, heap_atom("no_such_key_in_any_map")), TERM_NONE);
    term_t f;
    CU_ASSERT_FATAL(heap_make_float(h, -1000.0, &f) == GD_OK);
    CU_ASSERT_EQUAL(tg_map_get(map, f), TERM_NONE); /* key_of(0) is the integer -1000 */

    /* Iteration: every key once. */
    term_t *it_keys = malloc((n + 1) * sizeof *it_keys);
    term_t *ref_keys = malloc((n + 1) * sizeof *ref_keys);
    heap_map_iter_t it;
    heap_map_iter_init(&it, map);
    size_t count = 0;
    term_t k, v;
    while (count <= n && heap_map_next(&it, &k, &v)) {
        if (tg_map_get(map, k) != v)
            bad++;
        it_keys[count++] = k;
    }
    CU_ASSERT_EQUAL(count, n);
    CU_ASSERT_FALSE(heap_map_next(&it, &k, &v)); /* stays finished */
    CU_ASSERT_EQUAL(bad, 0);
    /* The bulk walk gives the same pairs in the same order as the iterator. */
    term_t *pair_keys = malloc((n + 1) * sizeof *pair_keys);
    term_t *pair_vals = malloc((n + 1) * sizeof *pair_vals);
    CU_ASSERT_FATAL(pair_keys != NULL && pair_vals != NULL);
    heap_map_pairs(map, pair_keys, pair_vals);
    for (size_t i = 0; i < count && i < n; i++)
        if (pair_keys[i] != it_keys[i] || pair_vals[i] != tg_map_get(map, it_keys[i]))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    free(pair_keys);
    free(pair_vals);
    memcpy(ref_keys, keys, n * sizeof *keys);
    qsort(ref_keys, n, sizeof *ref_keys, cmp_exact);
    qsort(it_keys, count, sizeof *it_keys, cmp_exact);
    for (size_t i = 0; i < count && i < n; i++)
        if (tg_compare(it_keys[i], ref_keys[i], true) != 0)
            bad++;
    CU_ASSERT_EQUAL(bad, 0);

    /* Sorted export. */
    term_t *sk = malloc((n + 1) * sizeof *sk), *sv = malloc((n + 1) * sizeof *sv);
    tg_map_sorted(map, sk, sv);
    for (size_t i = 0; i < n; i++) {
        if (tg_compare(sk[i], ref_keys[i], true) != 0 || tg_map_get(map, sk[i]) != sv[i])
            bad++;
        if (i > 0 && tg_compare(sk[i - 1], sk[i], true) >= 0)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);

    /* The same pairs in another order (or by successive puts) make an equal
     * map with the same hash. */
    term_t *k2 = malloc((n + 1) * sizeof *k2), *v2 = malloc((n + 1) * sizeof *v2);
    memcpy(k2, keys, n * sizeof *k2);
    memcpy(v2, vals, n * sizeof *v2);
    termgen_shuffle_pairs(k2, v2, n, seed);
    term_t other;
    CU_ASSERT_FATAL(heap_make_map(h, k2, v2, n, &other) == GD_OK);
    CU_ASSERT_EQUAL(tg_compare(map, other, true), 0);
    CU_ASSERT_EQUAL(tg_compare(other, map, false), 0);
    CU_ASSERT_EQUAL(tg_hash(map), tg_hash(other));
    free(k2);
    free(v2);
    free(sk);
    free(sv);
    free(it_keys);
    free(ref_keys);
}

static void run_sizes(const size_t *sizes, size_t nsizes, uint64_t seed)
{
    for (size_t si = 0; si < nsizes; si++) {
        size_t n = sizes[si];
        heap_t h;
        CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
        term_t *keys = malloc((n + 1) * sizeof *keys), *vals = malloc((n + 1) * sizeof *vals);
        for (size_t i = 0; i < n; i++) {
            keys[i] = key_of(&h, i);
            vals[i] = term_make_small((int64_t)i);
        }
        termgen_shuffle_pairs(keys, vals, n, &seed);
        term_t map;
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n, &map) == GD_OK);
        check_map(&h, map, keys, vals, n, &seed);
        free(keys);
        free(vals);
        heap_destroy(&h);
    }
}

static void test_sizes(void)
{
    static const size_t sizes[] = {0, 1, 2, 31, 32, 33, 34, 64, 1000, 100000};
    run_sizes(sizes, sizeof sizes / sizeof sizes[0], 1);
}

/* Growing one key at a time: flat -> hash at 33; every version persists. */
static void test_put_grow(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    enum { N = 300 };
    term_t keys[N], versions[N + 1];
    for (size_t i = 0; i < N; i++)
        keys[i] = key_of(&h, (i * 37) % N);
    CU_ASSERT_FATAL(heap_make_map(&h, NULL, NULL, 0, &versions[0]) == GD_OK);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        CU_ASSERT_FATAL(heap_map_put(&h, versions[i], keys[i], term_make_small((int64_t)i),
                                     &versions[i + 1]) == GD_OK);
        if (heap_map_size(versions[i + 1]) != i + 1)
            bad++;
        for (size_t j = 0; j <= i; j++)
            if (tg_map_get(versions[i + 1], keys[j]) != term_make_small((int64_t)j))
                bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(term_boxed_subtag(versions[32]), HDR_MAP_FLAT);
    CU_ASSERT_EQUAL(term_boxed_subtag(versions[33]), HDR_MAP_HASH);
    /* Old versions are untouched. */
    for (size_t v = 0; v <= N; v++) {
        if (heap_map_size(versions[v]) != v)
            bad++;
        for (size_t j = 0; j < N; j++) {
            term_t got = tg_map_get(versions[v], keys[j]);
            if ((j < v) != (got != TERM_NONE))
                bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    uint64_t seed = 5;
    term_t vals[N];
    for (size_t i = 0; i < N; i++)
        vals[i] = term_make_small((int64_t)i);
    check_map(&h, versions[N], keys, vals, N, &seed);
    heap_destroy(&h);
}

static void test_put_replace(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    for (size_t n = 1; n <= 200; n += (n < 40 ? 1 : 53)) {
        term_t keys[200], vals[200], map;
        for (size_t i = 0; i < n; i++) {
            keys[i] = key_of(&h, i);
            vals[i] = term_make_small((int64_t)i);
        }
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n, &map) == GD_OK);
        for (size_t i = 0; i < n; i += 1 + n / 7) {
            term_t m2, m3, same;
            /* Same value: the very same map comes back, nothing allocated. */
            size_t used = heap_used_words(&h);
            CU_ASSERT_FATAL(heap_map_put(&h, map, keys[i], vals[i], &same) == GD_OK);
            CU_ASSERT_EQUAL(same, map);
            CU_ASSERT_EQUAL(heap_used_words(&h), used);
            /* New value through an equal key built elsewhere. */
            uint64_t seed = i;
            term_t kv = termgen_variant(&h, keys[i], &seed);
            CU_ASSERT_FATAL(heap_map_put(&h, map, kv, ATOM_TRUE, &m2) == GD_OK);
            CU_ASSERT_EQUAL(heap_map_size(m2), n);
            CU_ASSERT_EQUAL(tg_map_get(m2, keys[i]), ATOM_TRUE);
            CU_ASSERT_EQUAL(tg_map_get(map, keys[i]), vals[i]);
            CU_ASSERT(tg_compare(map, m2, true) < 0); /* small int < atom */
            CU_ASSERT_FATAL(heap_map_put(&h, m2, keys[i], vals[i], &m3) == GD_OK);
            CU_ASSERT_EQUAL(tg_compare(map, m3, true), 0);
            CU_ASSERT_EQUAL(tg_hash(map), tg_hash(m3));
            /* Replacing with an arithmetically equal value: == but not =:=. */
            term_t fl;
            CU_ASSERT_FATAL(heap_make_float(&h, (double)i, &fl) == GD_OK);
            CU_ASSERT_FATAL(heap_map_put(&h, map, keys[i], fl, &m2) == GD_OK);
            CU_ASSERT_EQUAL(tg_compare(map, m2, false), 0);
            CU_ASSERT_EQUAL(tg_compare(map, m2, true), -1);
        }
    }
    term_t out, notmap;
    CU_ASSERT_FATAL(heap_make_binary(&h, "x", 1, &notmap) == GD_OK);
    CU_ASSERT_EQUAL(heap_map_put(&h, notmap, ATOM_OK, ATOM_OK, &out), GD_EBADARG);
    CU_ASSERT_EQUAL(heap_map_put(&h, ATOM_OK, ATOM_OK, ATOM_OK, &out), GD_EBADARG);
    heap_destroy(&h);
}

static void test_duplicates(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t bin1, big, sub, f0, fm0, one, onef, pid_ext, m;
    uint8_t bytes[100];
    memset(bytes, 'q', sizeof bytes);
    CU_ASSERT_FATAL(heap_make_binary(&h, bytes, 10, &bin1) == GD_OK);
    CU_ASSERT_FATAL(heap_make_binary(&h, bytes, 100, &big) == GD_OK);
    CU_ASSERT_FATAL(heap_make_sub_binary(&h, big, 80, 80, &sub) == GD_OK); /* =:= bin1 */
    CU_ASSERT_FATAL(heap_make_float(&h, 0.0, &f0) == GD_OK);
    CU_ASSERT_FATAL(heap_make_float(&h, -0.0, &fm0) == GD_OK);
    CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &onef) == GD_OK);
    one = term_make_small(1);
    CU_ASSERT_FATAL(heap_make_ext_pid(&h, ATOM_NONODE, 4, 5, 0, &pid_ext) == GD_OK);
    term_t pairs[][2] = {
        {ATOM_OK, ATOM_OK},
        {bin1, sub},
        {f0, fm0},
        {term_make_local_pid(4, 5), pid_ext},
    };
    for (size_t base = 0; base <= 60; base += 30) {
        /* base filler keys, then each duplicate pair at both ends */
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            term_t keys[70], vals[70];
            size_t n = 0;
            keys[n++] = pairs[p][0];
            for (size_t i = 0; i < base; i++)
                keys[n++] = term_make_small(100 + (int64_t)i);
            keys[n++] = pairs[p][1];
            for (size_t i = 0; i < n; i++)
                vals[i] = term_make_small((int64_t)i);
            size_t used = heap_used_words(&h);
            CU_ASSERT_EQUAL(heap_make_map(&h, keys, vals, n, &m), GD_EDUPLICATE_KEY);
            CU_ASSERT_EQUAL(heap_used_words(&h), used); /* nothing left behind */
            /* Without the duplicate it builds, and put replaces instead. */
            CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n - 1, &m) == GD_OK);
            term_t m2;
            CU_ASSERT_FATAL(heap_map_put(&h, m, pairs[p][1], ATOM_TRUE, &m2) == GD_OK);
            CU_ASSERT_EQUAL(heap_map_size(m2), n - 1);
            CU_ASSERT_EQUAL(tg_map_get(m2, pairs[p][0]), ATOM_TRUE);
        }
        /* 1 and 1.0 are different keys. */
        term_t keys[70], vals[70];
        size_t n = 0;
        keys[n++] = one;
        for (size_t i = 0; i < base; i++)
            keys[n++] = term_make_small(100 + (int64_t)i);
        keys[n++] = onef;
        for (size_t i = 0; i < n; i++)
            vals[i] = term_make_small((int64_t)i);
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n, &m) == GD_OK);
        CU_ASSERT_EQUAL(heap_map_size(m), n);
        CU_ASSERT_EQUAL(tg_map_get(m, one), term_make_small(0));
        CU_ASSERT_EQUAL(tg_map_get(m, onef), term_make_small((int64_t)n - 1));
        /* Key order: every integer before every float. */
        term_t sk[70], sv[70];
        tg_map_sorted(m, sk, sv);
        CU_ASSERT_EQUAL(sk[n - 1], onef);
    }
    heap_destroy(&h);
}

/* Flat maps whose keys are all atoms take their own sorting path. */
static void test_atom_keys(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t atoms[40];
    for (int i = 0; i < 40; i++) {
        /* Names that share prefixes and differ in length, some non-ASCII. */
        char buf[32];
        snprintf(buf, sizeof buf, "%s%d", i % 3 == 0 ? "k" : (i % 3 == 1 ? "key" : "\xc3\xa9"),
                 i / 2);
        atoms[i] = heap_atom(buf);
        CU_ASSERT_FATAL(atoms[i] != TERM_NONE);
    }
    uint64_t seed = termgen_seed_from_env(0xA70);
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + termgen_below(&seed, HEAP_MAP_FLAT_MAX);
        term_t keys[HEAP_MAP_FLAT_MAX], vals[HEAP_MAP_FLAT_MAX], map;
        /* n distinct atoms in random order (or sorted / reversed) */
        term_t pool[40];
        memcpy(pool, atoms, sizeof pool);
        for (size_t i = 0; i < n; i++) {
            size_t r = i + termgen_below(&seed, 40 - i);
            term_t x = pool[i];
            pool[i] = pool[r];
            pool[r] = x;
            keys[i] = pool[i];
            vals[i] = term_make_small((int64_t)i);
        }
        if (round % 3 != 0) {
            qsort(keys, n, sizeof *keys, cmp_exact);
            if (round % 3 == 2)
                for (size_t i = 0; i < n / 2; i++) {
                    term_t x = keys[i];
                    keys[i] = keys[n - 1 - i];
                    keys[n - 1 - i] = x;
                }
        }
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n, &map) == GD_OK);
        check_map(&h, map, keys, vals, n, &seed);
        if (n >= 2) {
            size_t a = termgen_below(&seed, n), b = termgen_below(&seed, n - 1);
            if (b >= a)
                b++;
            keys[b] = keys[a];
            size_t used = heap_used_words(&h);
            CU_ASSERT_EQUAL(heap_make_map(&h, keys, vals, n, &map), GD_EDUPLICATE_KEY);
            CU_ASSERT_EQUAL(heap_used_words(&h), used);
        }
    }
    heap_destroy(&h);
}

/* Maps whose keys collide under a narrowed hash (hamt.h testing knob). */
static void test_collisions(void)
{
    static const uint64_t masks[] = {
        0,                   /* everything in one collision node, 12 levels down */
        0x7,                 /* 8 collision nodes under the root */
        0x3FF,               /* two levels then collisions */
        0xF000000000000000u, /* differ only at the last level */
        0x8000000000000421u, /* sparse bits */
    };
    uint64_t seed = 99;
    for (size_t mi = 0; mi < sizeof masks / sizeof masks[0]; mi++) {
        heap_hamt_hash_mask = masks[mi];
        static const size_t sizes[] = {33, 40, 100, 700};
        run_sizes(sizes, sizeof sizes / sizeof sizes[0], seed + mi);
        heap_t h;
        CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
        /* Grow by puts through the flat -> hash conversion and collision
         * inserts, compare with a bulk-built map. */
        enum { N = 120 };
        term_t keys[N], vals[N], map;
        CU_ASSERT_FATAL(heap_make_map(&h, NULL, NULL, 0, &map) == GD_OK);
        for (size_t i = 0; i < N; i++) {
            keys[i] = key_of(&h, i);
            vals[i] = term_make_small((int64_t)i);
            CU_ASSERT_FATAL(heap_map_put(&h, map, keys[i], vals[i], &map) == GD_OK);
        }
        check_map(&h, map, keys, vals, N, &seed);
        if (masks[mi] == 0) {
            /* One collision node below a chain of 12 single-child nodes:
             * the deepest path the iterator has to hold. */
            heap_map_iter_t it;
            heap_map_iter_init(&it, map);
            term_t k, v;
            CU_ASSERT_FATAL(heap_map_next(&it, &k, &v));
            CU_ASSERT_EQUAL(it.depth, HAMT_MAX_PATH);
            term_t last = it.path_node[it.depth - 1];
            CU_ASSERT_EQUAL(term_boxed_subtag(last), HDR_HAMT_COLLIDE);
            CU_ASSERT_EQUAL(header_arity(*term_boxed_ptr(last)), N);
        }
        /* Replace inside collision nodes. */
        for (size_t i = 0; i < N; i += 7) {
            term_t m2;
            CU_ASSERT_FATAL(heap_map_put(&h, map, keys[i], ATOM_UNDEFINED, &m2) == GD_OK);
            CU_ASSERT_EQUAL(tg_map_get(m2, keys[i]), ATOM_UNDEFINED);
            CU_ASSERT_EQUAL(heap_map_size(m2), N);
            CU_ASSERT_EQUAL(sgn(tg_compare(map, m2, true)), -1);
        }
        /* Duplicates inside a collision run. */
        term_t dk[40], dv[40], m;
        for (size_t i = 0; i < 40; i++) {
            dk[i] = keys[i];
            dv[i] = vals[i];
        }
        dk[39] = dk[3];
        CU_ASSERT_EQUAL(heap_make_map(&h, dk, dv, 40, &m), GD_EDUPLICATE_KEY);
        heap_destroy(&h);
    }
    heap_hamt_hash_mask = ~(uint64_t)0;
}

/* Callers may set only map and pos = 0 (heap.h), without iter_init. */
static void test_iter_pos_only(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    for (size_t n = 0; n < 80; n += 11) {
        term_t keys[80], vals[80], map;
        for (size_t i = 0; i < n; i++) {
            keys[i] = key_of(&h, i);
            vals[i] = ATOM_OK;
        }
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, n, &map) == GD_OK);
        heap_map_iter_t it;
        memset(&it, 0xA5, sizeof it);
        it.map = map;
        it.pos = 0;
        term_t k, v;
        size_t count = 0;
        while (heap_map_next(&it, &k, &v))
            count++;
        CU_ASSERT_EQUAL(count, n);
        /* Restarting with pos = 0 walks again. */
        it.pos = 0;
        count = 0;
        while (heap_map_next(&it, &k, &v))
            count++;
        CU_ASSERT_EQUAL(count, n);
    }
    heap_destroy(&h);
}

/* Random operations against a reference: parallel arrays of pairs with
 * linear exact-equality search. */
static void test_random_model(void)
{
    uint64_t seed0 = termgen_seed_from_env(0xA11CE);
    for (int round = 0; round < 30; round++) {
        uint64_t s = seed0 + (uint64_t)round;
        heap_t h;
        CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
        enum { POOL = 150, MAXN = 150 };
        term_t pool[POOL];
        size_t npool = 0;
        while (npool < POOL) {
            term_t k = termgen_random(&h, &s, 2);
            CU_ASSERT_FATAL(k != TERM_NONE);
            bool dup = false;
            for (size_t i = 0; i < npool && !dup; i++)
                dup = tg_equal_exact(pool[i], k);
            if (!dup)
                pool[npool++] = k;
        }
        term_t mk[MAXN], mv[MAXN];
        size_t mn = 0;
        term_t map;
        CU_ASSERT_FATAL(heap_make_map(&h, NULL, NULL, 0, &map) == GD_OK);
        bool ok = true;
        for (int op = 0; op < 400 && ok; op++) {
            term_t k = pool[termgen_below(&s, POOL)];
            if (termgen_below(&s, 4) == 0)
                k = termgen_variant(&h, k, &s);
            term_t v = termgen_random(&h, &s, 1);
            CU_ASSERT_FATAL(k != TERM_NONE && v != TERM_NONE);
            switch (termgen_below(&s, 3)) {
            case 0:
            case 1: { /* put */
                term_t old = map;
                CU_ASSERT_FATAL(heap_map_put(&h, map, k, v, &map) == GD_OK);
                size_t i = 0;
                while (i < mn && !tg_equal_exact(mk[i], k))
                    i++;
                if (i == mn) {
                    mk[mn++] = k;
                }
                mv[i] = v;
                (void)old;
                break;
            }
            default: { /* rebuild from the model, shuffled; must be equal */
                term_t k2[MAXN], v2[MAXN], rebuilt;
                memcpy(k2, mk, mn * sizeof *k2);
                memcpy(v2, mv, mn * sizeof *v2);
                termgen_shuffle_pairs(k2, v2, mn, &s);
                CU_ASSERT_FATAL(heap_make_map(&h, k2, v2, mn, &rebuilt) == GD_OK);
                if (tg_compare(rebuilt, map, true) != 0 || tg_hash(rebuilt) != tg_hash(map))
                    ok = false;
                break;
            }
            }
            if (heap_map_size(map) != mn)
                ok = false;
            for (size_t i = 0; i < mn && ok; i++)
                if (tg_map_get(map, mk[i]) != mv[i])
                    ok = false;
        }
        if (ok) {
            check_map(&h, map, mk, mv, mn, &s);
        } else {
            fprintf(stderr, "\nmap model mismatch: GD_TEST_SEED=%llu (round %d)\n",
                    (unsigned long long)seed0, round);
        }
        CU_ASSERT(ok);
        heap_destroy(&h);
    }
}

/* The map order itself on random maps, against size/sorted-keys/values;
 * returns the number of disagreements. */
static size_t check_random_order(uint64_t seed0)
{
    uint64_t s = seed0;
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    enum { N = 60 };
    term_t maps[N];
    for (size_t i = 0; i < N; i++) {
        /* Few distinct keys and values so that maps share keys and tie. */
        size_t n = termgen_below(&s, 3) == 0 ? 33 + termgen_below(&s, 4) : termgen_below(&s, 4);
        term_t keys[40], vals[40];
        for (size_t j = 0; j < n; j++) {
            keys[j] = termgen_below(&s, 4) ? term_make_small((int64_t)j) : key_of(&h, j);
            vals[j] = term_make_small((int64_t)termgen_below(&s, 2));
        }
        if (n > 0 && termgen_below(&s, 2))
            keys[termgen_below(&s, n)] = term_make_small(100 + (int64_t)termgen_below(&s, 3));
        if (n > 0 && termgen_below(&s, 3) == 0) {
            term_t f;
            CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &f) == GD_OK);
            vals[termgen_below(&s, n)] = f;
        }
        int rc = heap_make_map(&h, keys, vals, n, &maps[i]);
        if (rc == GD_EDUPLICATE_KEY) {
            CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, 0, &maps[i]) == GD_OK);
        } else {
            CU_ASSERT_FATAL(rc == GD_OK);
        }
    }
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++)
            for (int ex = 0; ex < 2; ex++) {
                size_t na = heap_map_size(maps[i]), nb = heap_map_size(maps[j]);
                int want;
                if (na != nb) {
                    want = na < nb ? -1 : 1;
                } else {
                    term_t ka[40], va[40], kb[40], vb[40];
                    tg_map_sorted(maps[i], ka, va);
                    tg_map_sorted(maps[j], kb, vb);
                    want = 0;
                    for (size_t x = 0; x < na && want == 0; x++)
                        want = sgn(tg_compare(ka[x], kb[x], true));
                    for (size_t x = 0; x < na && want == 0; x++)
                        want = sgn(tg_compare(va[x], vb[x], ex));
                }
                if (sgn(tg_compare(maps[i], maps[j], ex)) != want)
                    bad++;
            }
    heap_destroy(&h);
    return bad;
}

/* Reference order of two maps: size, sorted keys (exact), then values in
 * key order with the given exactness. */
static int ref_map_order(term_t a, term_t b, bool exact)
{
    size_t na = heap_map_size(a), nb = heap_map_size(b);
    if (na != nb)
        return na < nb ? -1 : 1;
    term_t *ka = malloc((na + 1) * 4 * sizeof *ka);
    term_t *va = ka + na + 1, *kb = va + na + 1, *vb = kb + na + 1;
    tg_map_sorted(a, ka, va);
    tg_map_sorted(b, kb, vb);
    int want = 0;
    for (size_t x = 0; x < na && want == 0; x++)
        want = sgn(tg_compare(ka[x], kb[x], true));
    for (size_t x = 0; x < na && want == 0; x++)
        want = sgn(tg_compare(va[x], vb[x], exact));
    free(ka);
    return want;
}

/*
 * Hash maps with the same size: a base map against copies that differ in a
 * few values (either sign, or only arithmetically) and/or a few keys.  The
 * answer must come from the smallest differing key, whatever the hash order
 * visits first.
 */
static void test_hash_map_order(void)
{
    static const uint64_t masks[] = {~(uint64_t)0, 0, 0x3, 0x3FF, 0xF000000000000000u};
    uint64_t seed0 = termgen_seed_from_env(0x0DE6);
    size_t bad = 0, trials = 0;
    for (size_t mi = 0; mi < sizeof masks / sizeof masks[0]; mi++) {
        heap_hamt_hash_mask = masks[mi];
        uint64_t s = seed0 + mi;
        heap_t h;
        CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
        enum { N = 45 };
        term_t keys[N], vals[N], base;
        for (size_t i = 0; i < N; i++) {
            keys[i] = i % 3 == 0 ? key_of(&h, i) : term_make_small((int64_t)i * 11);
            vals[i] = term_make_small(1);
        }
        CU_ASSERT_FATAL(heap_make_map(&h, keys, vals, N, &base) == GD_OK);
        for (int trial = 0; trial < 300; trial++) {
            term_t k2[N], v2[N], other;
            memcpy(k2, keys, sizeof k2);
            memcpy(v2, vals, sizeof v2);
            size_t nval = termgen_below(&s, 5), nkey = termgen_below(&s, 3);
            for (size_t c = 0; c < nval; c++) {
                term_t nv;
                switch (termgen_below(&s, 3)) {
                case 0:
                    nv = term_make_small(0);
                    break;
                case 1:
                    nv = term_make_small(2);
                    break;
                default:
                    CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &nv) == GD_OK); /* == 1 */
                }
                v2[termgen_below(&s, N)] = nv;
            }
            for (size_t c = 0; c < nkey; c++)
                k2[termgen_below(&s, N)] = term_make_small(-1 - (int64_t)termgen_below(&s, 600));
            if (heap_make_map(&h, k2, v2, N, &other) != GD_OK)
                continue; /* a replaced key collided with another: skip */
            trials++;
            for (int ex = 0; ex < 2; ex++) {
                int want = ref_map_order(base, other, ex);
                if (sgn(tg_compare(base, other, ex)) != want ||
                    sgn(tg_compare(other, base, ex)) != -want)
                    bad++;
            }
        }
        heap_destroy(&h);
    }
    heap_hamt_hash_mask = ~(uint64_t)0;
    if (bad)
        fprintf(stderr, "\nhash map order: %zu wrong of %zu trials, GD_TEST_SEED=%llu\n", bad,
                trials, (unsigned long long)seed0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(trials > 1000);
}

static void test_random_order(void)
{
    uint64_t seed0 = termgen_seed_from_env(0x0DE5);
    /* Also with narrowed hashes: the hash-map merge then meets equal hashes
     * and must fall back on the exact key order (collision nodes). */
    static const uint64_t masks[] = {~(uint64_t)0, 0, 0x3, 0xF000000000000000u};
    for (size_t mi = 0; mi < sizeof masks / sizeof masks[0]; mi++) {
        heap_hamt_hash_mask = masks[mi];
        for (uint64_t r = 0; r < 3; r++) {
            size_t bad = check_random_order(seed0 + r);
            if (bad)
                fprintf(stderr, "\nmap order mismatches: %zu, mask %llx, GD_TEST_SEED=%llu\n", bad,
                        (unsigned long long)masks[mi], (unsigned long long)(seed0 + r));
            CU_ASSERT_EQUAL(bad, 0);
        }
    }
    heap_hamt_hash_mask = ~(uint64_t)0;
}

static const gd_test_case_t cases[] = {
    {"sizes 0..100000", test_sizes},
    {"put grow and persistence", test_put_grow},
    {"put replace", test_put_replace},
    {"duplicates", test_duplicates},
    {"atom keys", test_atom_keys},
    {"hash collisions", test_collisions},
    {"iterator with pos only", test_iter_pos_only},
    {"random model", test_random_model},
    {"random order", test_random_order},
    {"hash map order", test_hash_map_order},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_maps", cases)
