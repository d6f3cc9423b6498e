/*
 * maps.c — Erlang maps: flat maps (at most HEAP_MAP_FLAT_MAX pairs, keys
 * sorted in exact term order) and hash array mapped tries above that (layout
 * in hamt.h).  Maps are persistent: heap_map_put returns a new map sharing
 * every unchanged part with the old one.
 *
 * Flat layout: [hdr HDR_MAP_FLAT, arity 1+2n][n small][keys[n]][values[n]].
 *
 * Building a hash map sorts the pairs by their position in the trie (their
 * hashes compared chunk by chunk from level 0, hamt_hash_order), bucketing
 * one level at a time; every subtree is then a contiguous run, and the trie
 * is written in one allocation whose size is computed first, so a failed
 * build leaves nothing behind.  The builder recurses once per trie level, which the 64-bit hash
 * bounds to HAMT_LEVELS + 1 frames whatever the input.
 */
#include <stdlib.h>

#include "hamt.h"
#include "heap.h"

/* All ones except while a test narrows it (hamt.h). */
uint64_t heap_hamt_hash_mask = ~(uint64_t)0;

static inline bool is_flat(const term_t *p)
{
    return header_subtag(p[0]) == HDR_MAP_FLAT;
}

static inline size_t flat_size(const term_t *p)
{
    return (size_t)term_small_value(p[1]);
}

/* Exact equality with the cheap cases first: two different immediates are
 * never equal (local pids/ports compare equal only to boxed external ones). */
/*
 * Exact order of two keys for the searches and sorts below.  They run to
 * completion whatever the comparisons say, so a comparison that fails for
 * lack of memory answers 0 ("equal": every loop below still ends) and
 * records GD_ENOMEM in *err, which the public entry points check before
 * they trust or publish a result.
 */
static inline int key_cmp(term_t a, term_t b, int *err)
{
    int order;
    int rc = heap_compare_checked(a, b, true, &order);
    if (GD_UNLIKELY(rc != GD_OK)) {
        *err = rc;
        return 0;
    }
    return order;
}

static inline bool keys_equal(term_t a, term_t b, int *err)
{
    if (a == b)
        return true;
    if (term_is_immediate(a) && term_is_immediate(b))
        return false;
    return key_cmp(a, b, err) == 0;
}

/* hamt_key_hash with the error recorded in *err (the hash is 0 then). */
static inline uint64_t key_hash(term_t key, int *err)
{
    uint64_t h = 0;
    int rc = hamt_key_hash(key, &h);
    if (GD_UNLIKELY(rc != GD_OK))
        *err = rc;
    return h;
}

/* Immediates whose only exactly equal term is themselves. */
static inline bool is_plain_immediate(term_t t)
{
    return term_is_immediate(t) && !term_is_local_pid(t) && !term_is_local_port(t);
}

/*
 * Binary search of a sorted key array: returns true with *pos the index of
 * `key`, or false with *pos where it would be inserted.
 */
static bool flat_find(const term_t *keys, size_t n, term_t key, size_t *pos, int *err)
{
    size_t lo = 0, hi = n;
    /* Keys often arrive in order (decoding a map girder or OTP sorted):
     * one comparison settles "after the last". */
    if (n > 0) {
        int c = key_cmp(key, keys[n - 1], err);
        if (c > 0) {
            *pos = n;
            return false;
        }
        if (c == 0) {
            *pos = n - 1;
            return true;
        }
        hi = n - 1;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(key, keys[mid], err);
        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Sorting pairs in place (heap_map_sorted, collision runs)                  */

static inline void swap_pair(term_t *k, term_t *v, size_t i, size_t j)
{
    term_t t = k[i];
    k[i] = k[j];
    k[j] = t;
    t = v[i];
    v[i] = v[j];
    v[j] = t;
}

static void insertion_sort_pairs(term_t *k, term_t *v, size_t lo, size_t hi, int *err)
{
    for (size_t i = lo + 1; i < hi; i++) {
        term_t kk = k[i], vv = v[i];
        size_t j = i;
        while (j > lo && key_cmp(kk, k[j - 1], err) < 0) {
            k[j] = k[j - 1];
            v[j] = v[j - 1];
            j--;
        }
        k[j] = kk;
        v[j] = vv;
    }
}

static void sift_down_pairs(term_t *k, term_t *v, size_t base, size_t root, size_t n, int *err)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && key_cmp(k[base + child], k[base + child + 1], err) < 0)
            child++;
        if (key_cmp(k[base + root], k[base + child], err) >= 0)
            return;
        swap_pair(k, v, base + root, base + child);
        root = child;
    }
}

static void heapsort_pairs(term_t *k, term_t *v, size_t lo, size_t hi, int *err)
{
    size_t n = hi - lo;
    for (size_t i = n / 2; i-- > 0;)
        sift_down_pairs(k, v, lo, i, n, err);
    for (size_t end = n; end-- > 1;) {
        swap_pair(k, v, lo, lo + end);
        sift_down_pairs(k, v, lo, 0, end, err);
    }
}

/*
 * Sorts keys[lo..hi) ascending in exact term order, moving vals alongside.
 * Introsort without recursion: quicksort (median of three) whose larger part
 * waits on a stack of at most log2(n) ranges, heapsort for a range that
 * partitions badly, insertion sort for short ranges.  O(n log n) compares.
 */
static void sort_pairs(term_t *k, term_t *v, size_t lo, size_t hi, int *err)
{
    struct range {
        size_t lo, hi;
        unsigned budget;
    } stack[64];
    size_t sp = 0;
    unsigned budget = 2;
    for (size_t n = hi - lo; n > 1; n >>= 1)
        budget += 2;
    for (;;) {
        while (hi - lo > 16) {
            if (budget == 0) {
                heapsort_pairs(k, v, lo, hi, err);
                break;
            }
            budget--;
            size_t mid = lo + (hi - lo) / 2;
            if (key_cmp(k[mid], k[lo], err) < 0)
                swap_pair(k, v, mid, lo);
            if (key_cmp(k[hi - 1], k[lo], err) < 0)
                swap_pair(k, v, hi - 1, lo);
            if (key_cmp(k[hi - 1], k[mid], err) < 0)
                swap_pair(k, v, hi - 1, mid);
            /* k[lo] <= pivot <= k[hi-1]: sentinels for both scans. */
            swap_pair(k, v, mid, hi - 2);
            term_t pivot = k[hi - 2];
            size_t i = lo, j = hi - 2;
            for (;;) {
                while (key_cmp(k[++i], pivot, err) < 0)
                    ;
                while (key_cmp(pivot, k[--j], err) < 0)
                    ;
                if (i >= j)
                    break;
                swap_pair(k, v, i, j);
            }
            swap_pair(k, v, i, hi - 2);
            /* [lo, i) < pivot = k[i] < (i, hi): continue with the smaller
             * part, keep the larger one, so the stack stays logarithmic. */
            if (i - lo < hi - (i + 1)) {
                stack[sp++] = (struct range){i + 1, hi, budget};
                hi = i;
            } else {
                stack[sp++] = (struct range){lo, i, budget};
                lo = i + 1;
            }
        }
        if (hi - lo <= 16)
            insertion_sort_pairs(k, v, lo, hi, err);
        if (sp == 0)
            return;
        sp--;
        lo = stack[sp].lo;
        hi = stack[sp].hi;
        budget = stack[sp].budget;
    }
}

/* ------------------------------------------------------------------------ */
/* Flat maps                                                                 */

/*
 * make_flat's sort when every key is an atom (records-like maps, the common
 * case): each atom's text is fetched once instead of twice per comparison,
 * and two atoms are the same key exactly when their words are equal.
 */
static int sort_atom_keys(const term_t *keys, size_t n, uint8_t *order, term_t *sorted)
{
    const char *text[HEAP_MAP_FLAT_MAX];
    size_t len[HEAP_MAP_FLAT_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t pos = i;
        const char *t = heap_atom_text(keys[i], &len[i]);
        text[i] = t;
        /* Backwards from the end: sorted input costs one comparison. */
        while (pos > 0) {
            size_t o = order[pos - 1];
            if (keys[o] == keys[i])
                return GD_EDUPLICATE_KEY;
            if (atom_text_order(text[o], len[o], t, len[i]) < 0)
                break;
            pos--;
        }
        /* Equal keys are adjacent in the order; check the one we stopped at
         * from the other side too. */
        if (pos < i && keys[order[pos]] == keys[i])
            return GD_EDUPLICATE_KEY;
        memmove(order + pos + 1, order + pos, i - pos);
        order[pos] = (uint8_t)i;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = keys[order[i]];
    return GD_OK;
}

static int make_flat(heap_t *h, const term_t *keys, const term_t *vals, size_t n, term_t *out)
{
    /* Sort a permutation first, so a duplicate is found before anything is
     * allocated. */
    uint8_t order[HEAP_MAP_FLAT_MAX];
    term_t sorted[HEAP_MAP_FLAT_MAX];
    bool all_atoms = true;
    for (size_t i = 0; i < n && all_atoms; i++)
        all_atoms = term_is_atom(keys[i]);
    if (all_atoms) {
        int rc = sort_atom_keys(keys, n, order, sorted);
        if (rc != GD_OK)
            return rc;
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t pos;
            int err = GD_OK;
            bool dup = flat_find(sorted, i, keys[i], &pos, &err);
            if (err != GD_OK)
                return err;
            if (dup)
                return GD_EDUPLICATE_KEY;
            memmove(order + pos + 1, order + pos, i - pos);
            memmove(sorted + pos + 1, sorted + pos, (i - pos) * sizeof *sorted);
            order[pos] = (uint8_t)i;
            sorted[pos] = keys[i];
        }
    }
    term_t *p = heap_alloc(h, 2 + 2 * n);
    if (p == NULL)
        return GD_ENOMEM;
    p[0] = heap_make_header(HDR_MAP_FLAT, 1 + 2 * n);
    p[1] = term_make_small((int64_t)n);
    for (size_t i = 0; i < n; i++) {
        p[2 + i] = sorted[i];
        p[2 + n + i] = vals[order[i]];
    }
    *out = term_make_boxed(p);
    return GD_OK;
}

/* ------------------------------------------------------------------------ */
/* Building hash maps                                                        */

typedef struct hent {
    uint64_t hash; /* the key's HAMT hash: its position in the trie */
    uint64_t idx;  /* index into the caller's arrays */
} hent_t;
GD_STATIC_ASSERT(sizeof(hent_t) == 2 * sizeof(term_t), "collision runs are sorted in hent scratch");

/* Insertion sort of a short run by trie position. */
static void trie_insertion_sort(hent_t *e, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        hent_t x = e[i];
        size_t j = i;
        while (j > 0 && hamt_hash_order(e[j - 1].hash, x.hash) > 0) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = x;
    }
}

/*
 * Sorts e[0..n) by trie position, most significant chunk first: one
 * counting pass per trie level that still has more than a handful of
 * entries in a bucket, so about log32(n) passes instead of eight byte
 * passes.  tmp has room for n entries.  Recursion depth is bounded by
 * HAMT_LEVELS, not by the input.
 */
static void trie_sort(hent_t *e, hent_t *tmp, size_t n, unsigned level)
{
    if (n <= 24 || level >= HAMT_LEVELS) {
        trie_insertion_sort(e, n);
        return;
    }
    size_t start[HAMT_FANOUT + 1] = {0};
    for (size_t i = 0; i < n; i++)
        start[hamt_chunk(e[i].hash, level) + 1]++;
    for (unsigned b = 0; b < HAMT_FANOUT; b++)
        start[b + 1] += start[b];
    size_t fill[HAMT_FANOUT];
    memcpy(fill, start, sizeof fill);
    for (size_t i = 0; i < n; i++)
        tmp[fill[hamt_chunk(e[i].hash, level)]++] = e[i];
    memcpy(e, tmp, n * sizeof *e);
    for (unsigned b = 0; b < HAMT_FANOUT; b++) {
        size_t len = start[b + 1] - start[b];
        if (len > 1)
            trie_sort(e + start[b], tmp + start[b], len, level + 1);
    }
}

/* Words of the subtree for entries [lo, hi) at `level` (a leaf for one
 * entry unless it is the root). */
static size_t trie_words(const hent_t *e, size_t lo, size_t hi, unsigned level, bool root)
{
    if (hi - lo == 1 && !root)
        return 2;
    if (level == HAMT_LEVELS)
        return 1 + 3 * (hi - lo); /* collision node and its leaves */
    size_t words = root ? 3 : 2;
    size_t i = lo;
    while (i < hi) {
        unsigned c = hamt_chunk(e[i].hash, level);
        size_t g = i + 1;
        while (g < hi && hamt_chunk(e[g].hash, level) == c)
            g++;
        words += 1 + trie_words(e, i, g, level + 1, false);
        i = g;
    }
    return words;
}

/* Writes the subtree for entries [lo, hi) at *cursor (advancing it). */
static term_t trie_fill(const hent_t *e, size_t lo, size_t hi, unsigned level, bool root,
                        const term_t *keys, const term_t *vals, term_t **cursor)
{
    if (hi - lo == 1 && !root) {
        term_t *c = *cursor;
        *cursor += 2;
        c[0] = keys[e[lo].idx];
        c[1] = vals[e[lo].idx];
        return term_make_list(c);
    }
    if (level == HAMT_LEVELS) {
        size_t k = hi - lo;
        term_t *node = *cursor;
        *cursor += 1 + k;
        node[0] = heap_make_header(HDR_HAMT_COLLIDE, k);
        for (size_t i = 0; i < k; i++) {
            term_t *c = *cursor;
            *cursor += 2;
            c[0] = keys[e[lo + i].idx];
            c[1] = vals[e[lo + i].idx];
            node[1 + i] = term_make_list(c);
        }
        return term_make_boxed(node);
    }
    uint32_t bitmap = 0;
    size_t k = 0;
    for (size_t i = lo; i < hi; i++) {
        uint32_t bit = (uint32_t)1 << hamt_chunk(e[i].hash, level);
        if (!(bitmap & bit)) {
            bitmap |= bit;
            k++;
        }
    }
    term_t *node = *cursor;
    size_t head = root ? 3 : 2;
    *cursor += head + k;
    if (root) {
        node[0] = heap_make_header(HDR_MAP_HASH, 2 + k);
        node[1] = term_make_small((int64_t)(hi - lo));
        node[2] = term_make_small(bitmap);
    } else {
        node[0] = heap_make_header(HDR_HAMT_NODE, 1 + k);
        node[1] = term_make_small(bitmap);
    }
    size_t i = lo, slot = 0;
    while (i < hi) {
        unsigned c = hamt_chunk(e[i].hash, level);
        size_t g = i + 1;
        while (g < hi && hamt_chunk(e[g].hash, level) == c)
            g++;
        node[head + slot++] = trie_fill(e, i, g, level + 1, false, keys, vals, cursor);
        i = g;
    }
    return term_make_boxed(node);
}

/*
 * Orders a run e[lo..hi) of entries with equal hashes in exact key order
 * (the order of a collision node) and reports a duplicate key.  `scratch`
 * holds at least 2 * (hi - lo) words.  O(k log k): the run may be long when
 * an input is crafted to collide.
 */
static int order_collisions(hent_t *e, size_t lo, size_t hi, const term_t *keys, term_t *scratch)
{
    size_t k = hi - lo;
    term_t *tk = scratch, *ti = scratch + k;
    for (size_t i = 0; i < k; i++) {
        tk[i] = keys[e[lo + i].idx];
        ti[i] = e[lo + i].idx;
    }
    int err = GD_OK;
    sort_pairs(tk, ti, 0, k, &err);
    for (size_t i = 1; i < k && err == GD_OK; i++)
        if (key_cmp(tk[i - 1], tk[i], &err) == 0 && err == GD_OK)
            return GD_EDUPLICATE_KEY;
    if (err != GD_OK)
        return err;
    for (size_t i = 0; i < k; i++)
        e[lo + i].idx = ti[i];
    return GD_OK;
}

#define HAMT_BUILD_INLINE 64

static int make_hamt(heap_t *h, const term_t *keys, const term_t *vals, size_t n, term_t *out)
{
    if (n > (size_t)SMALL_MAX / 4)
        return GD_ESYSTEM_LIMIT;
    hent_t inline_buf[2 * HAMT_BUILD_INLINE];
    hent_t *e = inline_buf;
    if (n > HAMT_BUILD_INLINE) {
        e = malloc(2 * n * sizeof *e);
        if (e == NULL)
            return GD_ENOMEM;
    }
    hent_t *tmp = e + n;
    int rc = GD_OK;
    for (size_t i = 0; i < n && rc == GD_OK; i++) {
        e[i].hash = key_hash(keys[i], &rc);
        e[i].idx = i;
    }
    if (rc != GD_OK)
        goto free_entries;
    trie_sort(e, tmp, n, 0);
    for (size_t i = 0; i < n;) {
        size_t g = i + 1;
        while (g < n && e[g].hash == e[i].hash)
            g++;
        if (g - i > 1) {
            rc = order_collisions(e, i, g, keys, (term_t *)tmp);
            if (rc != GD_OK)
                goto free_entries;
        }
        i = g;
    }
    size_t words = trie_words(e, 0, n, 0, true);
    term_t *p = heap_alloc(h, words);
    rc = GD_ENOMEM;
    if (p == NULL)
        goto free_entries;
    term_t *cursor = p;
    *out = trie_fill(e, 0, n, 0, true, keys, vals, &cursor);
    GD_ASSERT(cursor == p + words);
    rc = GD_OK;
free_entries:
    if (e != inline_buf)
        free(e);
    return rc;
}

/*
 * Builds the map of keys[i] => vals[i] on h (arrays only read): flat with
 * keys sorted for n <= HEAP_MAP_FLAT_MAX, a hash map above.  Duplicates under
 * =:= give GD_EDUPLICATE_KEY and no allocation; GD_ENOMEM when h cannot grow
 * (or, for a hash map, the O(n) scratch cannot be malloc'd); nothing is left
 * on h on failure.  O(n log n) comparisons for flat maps (one per key when
 * the keys come sorted), O(n) hashing plus O(n log32 n) for hash maps.
 */
int heap_make_map(heap_t *h, const term_t *keys, const term_t *vals, size_t n, term_t *out)
{
    if (n <= HEAP_MAP_FLAT_MAX)
        return make_flat(h, keys, vals, n, out);
    return make_hamt(h, keys, vals, n, out);
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */

/* Returns the number of pairs in map (flat and hash maps keep it in word 1). */
size_t heap_map_size(term_t map)
{
    return (size_t)term_small_value(term_boxed_ptr(map)[1]);
}

static term_t flat_get(const term_t *p, term_t key, int *err)
{
    size_t n = flat_size(p);
    const term_t *keys = p + 2;
    if (is_plain_immediate(key)) {
        /* A word scan beats a binary search of compares (atoms compare by
         * text) at this size. */
        for (size_t i = 0; i < n; i++)
            if (keys[i] == key)
                return p[2 + n + i];
        return TERM_NONE;
    }
    size_t pos;
    return flat_find(keys, n, key, &pos, err) ? p[2 + n + pos] : TERM_NONE;
}

/*
 * Binary search of a collision node's leaves (ascending exact key order):
 * true with *pos the leaf holding `key`, or false with *pos where it goes.
 * A crafted input can put many keys under one hash; this keeps them at
 * O(log k) a lookup.
 */
static bool collide_find(const term_t *leaves, size_t count, term_t key, size_t *pos, int *err)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(key, term_car(leaves[mid]), err);
        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return false;
}

static term_t hamt_get(term_t *node, term_t key, int *err)
{
    uint64_t hash = key_hash(key, err);
    if (*err != GD_OK)
        return TERM_NONE;
    for (unsigned level = 0;; level++) {
        size_t count;
        uint32_t bitmap;
        term_t *children = hamt_children(node, &count, &bitmap);
        if (header_subtag(node[0]) == HDR_HAMT_COLLIDE) {
            size_t pos;
            return collide_find(children, count, key, &pos, err) ? term_cdr(children[pos])
                                                                 : TERM_NONE;
        }
        uint32_t bit = (uint32_t)1 << hamt_chunk(hash, level);
        if (!(bitmap & bit))
            return TERM_NONE;
        term_t child = children[__builtin_popcount(bitmap & (bit - 1))];
        if (term_is_list(child))
            return keys_equal(term_car(child), key, err) ? term_cdr(child) : TERM_NONE;
        node = term_boxed_ptr(child);
    }
}

/*
 * Sets *val to the value stored under a key exactly equal to `key`, or to
 * TERM_NONE when there is none.  Flat maps: a word scan for plain immediate
 * keys, else binary search; hash maps: one hash of the key and at most 13
 * levels.  Errors: GD_ENOMEM when comparing or hashing a deeply branching
 * key ran out of memory (*val is not set then).
 */
int heap_map_find(term_t map, term_t key, term_t *val)
{
    term_t *p = term_boxed_ptr(map);
    int err = GD_OK;
    term_t v = is_flat(p) ? flat_get(p, key, &err) : hamt_get(p, key, &err);
    if (err != GD_OK)
        return err;
    *val = v;
    return GD_OK;
}

/* ------------------------------------------------------------------------ */
/* Update                                                                    */

static int flat_put(heap_t *h, term_t map, term_t key, term_t val, term_t *out)
{
    term_t *p = term_boxed_ptr(map);
    size_t n = flat_size(p);
    size_t pos;
    int err = GD_OK;
    bool found = flat_find(p + 2, n, key, &pos, &err);
    if (err != GD_OK)
        return err;
    if (found) {
        if (p[2 + n + pos] == val) {
            *out = map;
            return GD_OK;
        }
        term_t *q = heap_alloc(h, 2 + 2 * n);
        if (q == NULL)
            return GD_ENOMEM;
        memcpy(q, p, (2 + 2 * n) * sizeof *q);
        q[2 + n + pos] = val;
        *out = term_make_boxed(q);
        return GD_OK;
    }
    if (n == HEAP_MAP_FLAT_MAX) {
        term_t keys[HEAP_MAP_FLAT_MAX + 1], vals[HEAP_MAP_FLAT_MAX + 1];
        memcpy(keys, p + 2, n * sizeof *keys);
        memcpy(vals, p + 2 + n, n * sizeof *vals);
        keys[n] = key;
        vals[n] = val;
        return make_hamt(h, keys, vals, n + 1, out);
    }
    size_t m = n + 1;
    term_t *q = heap_alloc(h, 2 + 2 * m);
    if (q == NULL)
        return GD_ENOMEM;
    q[0] = heap_make_header(HDR_MAP_FLAT, 1 + 2 * m);
    q[1] = term_make_small((int64_t)m);
    term_t *qk = q + 2, *qv = q + 2 + m;
    const term_t *pk = p + 2, *pv = p + 2 + n;
    memcpy(qk, pk, pos * sizeof *qk);
    qk[pos] = key;
    memcpy(qk + pos + 1, pk + pos, (n - pos) * sizeof *qk);
    memcpy(qv, pv, pos * sizeof *qv);
    qv[pos] = val;
    memcpy(qv + pos + 1, pv + pos, (n - pos) * sizeof *qv);
    *out = term_make_boxed(q);
    return GD_OK;
}

/* How the bottom of a hash-map update changes the node it stops at. */
enum put_kind {
    PUT_SLOT_INSERT,  /* empty slot of an inner/root node: add a leaf */
    PUT_LEAF_REPLACE, /* same key in a leaf: new leaf */
    PUT_LEAF_SPLIT,   /* other key in a leaf: a subtree of both leaves */
    PUT_COLLIDE_REPLACE,
    PUT_COLLIDE_INSERT,
};

/* A copy of node (1 + arity words) at dst with children[idx] = child. */
static void copy_node_with(term_t *dst, const term_t *node, size_t idx, term_t child)
{
    memcpy(dst, node, (1 + (size_t)header_arity(node[0])) * sizeof *dst);
    size_t count;
    uint32_t bitmap;
    term_t *children = hamt_children(dst, &count, &bitmap);
    children[idx] = child;
}

static int hamt_put(heap_t *h, term_t map, term_t key, term_t val, term_t *out)
{
    int err = GD_OK;
    uint64_t hash = key_hash(key, &err);
    if (err != GD_OK)
        return err;
    struct {
        term_t *node;
        size_t idx;
    } path[HAMT_MAX_PATH];
    size_t depth = 0;
    term_t *node = term_boxed_ptr(map);
    unsigned level = 0;
    enum put_kind kind;
    size_t idx = 0, count = 0;
    uint32_t bitmap = 0, bit = 0;
    term_t *children;
    term_t old_leaf = TERM_NONE;
    for (;;) {
        children = hamt_children(node, &count, &bitmap);
        if (header_subtag(node[0]) == HDR_HAMT_COLLIDE) {
            kind = collide_find(children, count, key, &idx, &err) ? PUT_COLLIDE_REPLACE
                                                                  : PUT_COLLIDE_INSERT;
            break;
        }
        bit = (uint32_t)1 << hamt_chunk(hash, level);
        idx = (size_t)__builtin_popcount(bitmap & (bit - 1));
        if (!(bitmap & bit)) {
            kind = PUT_SLOT_INSERT;
            break;
        }
        term_t child = children[idx];
        if (term_is_list(child)) {
            old_leaf = child;
            kind = keys_equal(term_car(child), key, &err) ? PUT_LEAF_REPLACE : PUT_LEAF_SPLIT;
            break;
        }
        GD_ASSERT(depth < HAMT_MAX_PATH);
        path[depth].node = node;
        path[depth].idx = idx;
        depth++;
        node = term_boxed_ptr(child);
        level++;
    }
    if (err != GD_OK)
        return err;
    if ((kind == PUT_LEAF_REPLACE && term_cdr(old_leaf) == val) ||
        (kind == PUT_COLLIDE_REPLACE && term_cdr(children[idx]) == val)) {
        *out = map;
        return GD_OK;
    }

    /* Size everything first: one allocation, nothing left behind on failure. */
    size_t node_words = 1 + (size_t)header_arity(node[0]);
    size_t words = 2; /* the new leaf */
    uint64_t old_hash = 0;
    unsigned split_level = 0;
    switch (kind) {
    case PUT_SLOT_INSERT:
    case PUT_COLLIDE_INSERT:
        words += node_words + 1;
        break;
    case PUT_LEAF_REPLACE:
    case PUT_COLLIDE_REPLACE:
        words += node_words;
        break;
    case PUT_LEAF_SPLIT:
        words += node_words;
        old_hash = key_hash(term_car(old_leaf), &err);
        split_level = level + 1;
        while (split_level < HAMT_LEVELS &&
               hamt_chunk(hash, split_level) == hamt_chunk(old_hash, split_level)) {
            words += 3; /* single-child inner node */
            split_level++;
        }
        words += split_level < HAMT_LEVELS ? 4 : 3; /* two-child node or collision node */
        break;
    }
    for (size_t d = 0; d < depth; d++)
        words += 1 + (size_t)header_arity(path[d].node[0]);
    bool new_first = false;
    if (kind == PUT_LEAF_SPLIT && split_level >= HAMT_LEVELS)
        new_first = key_cmp(key, term_car(old_leaf), &err) < 0;
    if (err != GD_OK)
        return err; /* nothing allocated yet */

    term_t *w = heap_alloc(h, words);
    if (w == NULL)
        return GD_ENOMEM;
    term_t *cursor = w;
    term_t *leaf = cursor;
    cursor += 2;
    leaf[0] = key;
    leaf[1] = val;
    term_t new_leaf = term_make_list(leaf);
    bool inserted = kind == PUT_SLOT_INSERT || kind == PUT_COLLIDE_INSERT || kind == PUT_LEAF_SPLIT;

    term_t sub; /* the replacement for `node` */
    term_t *nn = cursor;
    switch (kind) {
    case PUT_SLOT_INSERT:
    case PUT_COLLIDE_INSERT: {
        size_t head = (size_t)(children - node);
        cursor += node_words + 1;
        memcpy(nn, node, head * sizeof *nn);
        nn[0] = heap_make_header(header_subtag(node[0]), header_arity(node[0]) + 1);
        if (kind == PUT_SLOT_INSERT)
            nn[head - 1] = term_make_small(bitmap | bit);
        memcpy(nn + head, children, idx * sizeof *nn);
        nn[head + idx] = new_leaf;
        memcpy(nn + head + idx + 1, children + idx, (count - idx) * sizeof *nn);
        break;
    }
    case PUT_LEAF_REPLACE:
    case PUT_COLLIDE_REPLACE:
        cursor += node_words;
        copy_node_with(nn, node, idx, new_leaf);
        break;
    case PUT_LEAF_SPLIT: {
        cursor += node_words;
        /* Build the subtree bottom-up: the node where the hashes part (or
         * the collision node), then single-child nodes up to level+1. */
        term_t below;
        term_t *t = cursor;
        if (split_level < HAMT_LEVELS) {
            cursor += 4;
            unsigned cn = hamt_chunk(hash, split_level), co = hamt_chunk(old_hash, split_level);
            t[0] = heap_make_header(HDR_HAMT_NODE, 3);
            t[1] = term_make_small(((uint32_t)1 << cn) | ((uint32_t)1 << co));
            t[2] = cn < co ? new_leaf : old_leaf;
            t[3] = cn < co ? old_leaf : new_leaf;
        } else {
            cursor += 3;
            t[0] = heap_make_header(HDR_HAMT_COLLIDE, 2);
            t[1] = new_first ? new_leaf : old_leaf;
            t[2] = new_first ? old_leaf : new_leaf;
        }
        below = term_make_boxed(t);
        for (unsigned l = split_level; l-- > level + 1;) {
            t = cursor;
            cursor += 3;
            t[0] = heap_make_header(HDR_HAMT_NODE, 2);
            t[1] = term_make_small((uint32_t)1 << hamt_chunk(hash, l));
            t[2] = below;
            below = term_make_boxed(t);
        }
        copy_node_with(nn, node, idx, below);
        break;
    }
    }
    sub = term_make_boxed(nn);
    if (depth == 0 && inserted)
        nn[1] = term_make_small(term_small_value(nn[1]) + 1); /* nn is the root */

    /* Copy the path, bottom-up. */
    for (size_t d = depth; d-- > 0;) {
        term_t *pn = path[d].node;
        term_t *c = cursor;
        cursor += 1 + (size_t)header_arity(pn[0]);
        copy_node_with(c, pn, path[d].idx, sub);
        if (d == 0 && inserted)
            c[1] = term_make_small(term_small_value(c[1]) + 1);
        sub = term_make_boxed(c);
    }
    GD_ASSERT(cursor == w + words);
    *out = sub;
    return GD_OK;
}

/*
 * Returns in *out a map equal to `map` with key => val; `map` is unchanged
 * and shares everything but the copied path (flat maps are copied whole,
 * O(n) words; hash maps copy the nodes from the root to the key, O(log n)
 * nodes).  If key is present with the very same value word, *out = map and
 * nothing is allocated.  A flat map growing past HEAP_MAP_FLAT_MAX becomes a
 * hash map.  Errors: GD_EBADARG (not a map), GD_ENOMEM (nothing allocated).
 */
int heap_map_put(heap_t *h, term_t map, term_t key, term_t val, term_t *out)
{
    if (!term_is_map(map))
        return GD_EBADARG;
    if (is_flat(term_boxed_ptr(map)))
        return flat_put(h, map, key, val, out);
    return hamt_put(h, map, key, val, out);
}

/* ------------------------------------------------------------------------ */
/* Iteration                                                                 */

/* Prepares *it to walk map from its first pair (map must stay reachable). */
void heap_map_iter_init(heap_map_iter_t *it, term_t map)
{
    it->map = map;
    it->pos = 0;
    it->depth = 0;
}

/*
 * Returns the next pair of the walk in storage order (sorted keys for flat
 * maps, trie order for hash maps) through *key and *val, or false at the end
 * (and on every later call).  A walk restarts whenever it->pos is 0, so a
 * caller may set only map and pos.  O(1) amortised, no allocation.
 */
bool heap_map_next(heap_map_iter_t *it, term_t *key, term_t *val)
{
    term_t *p = term_boxed_ptr(it->map);
    if (is_flat(p)) {
        size_t n = flat_size(p);
        if (it->pos >= n)
            return false;
        *key = p[2 + it->pos];
        *val = p[2 + n + it->pos];
        it->pos++;
        return true;
    }
    if (it->pos == 0) {
        /* (Re)start: callers may set only map and pos. */
        it->depth = 1;
        it->path_node[0] = it->map;
        it->path_index[0] = 0;
    }
    while (it->depth > 0) {
        uint32_t d = it->depth - 1;
        size_t count;
        uint32_t bitmap;
        term_t *children = hamt_children(term_boxed_ptr(it->path_node[d]), &count, &bitmap);
        uint32_t i = it->path_index[d];
        if (i >= count) {
            it->depth--;
            if (it->depth > 0)
                it->path_index[it->depth - 1]++;
            continue;
        }
        term_t child = children[i];
        if (term_is_list(child)) {
            *key = term_car(child);
            *val = term_cdr(child);
            it->path_index[d]++;
            it->pos++;
            return true;
        }
        GD_ASSERT(it->depth < HAMT_MAX_PATH);
        it->path_node[it->depth] = child;
        it->path_index[it->depth] = 0;
        it->depth++;
    }
    return false;
}

/*
 * Writes map's pairs to keys[]/vals[] (heap_map_size(map) entries each,
 * owned by the caller) in storage order, the order heap_map_next visits,
 * in one pass: O(n), no allocation.  A hash map is walked with an explicit
 * path of at most HAMT_MAX_PATH nodes, without the per-pair restart of the
 * iterator (the encoder's hot path for maps of more than 32 keys).
 */
void heap_map_pairs(term_t map, term_t *keys, term_t *vals)
{
    term_t *p = term_boxed_ptr(map);
    if (is_flat(p)) {
        size_t n = flat_size(p);
        memcpy(keys, p + 2, n * sizeof *keys);
        memcpy(vals, p + 2 + n, n * sizeof *vals);
        return;
    }
    const term_t *path_next[HAMT_MAX_PATH];
    const term_t *path_end[HAMT_MAX_PATH];
    size_t depth = 0, i = 0, count;
    uint32_t bitmap;
    const term_t *c = hamt_children(p, &count, &bitmap);
    const term_t *end = c + count;
    for (;;) {
        while (c < end) {
            term_t child = *c++;
            if (term_is_list(child)) {
                const term_t *cell = term_list_ptr(child);
                keys[i] = cell[0];
                vals[i] = cell[1];
                i++;
                continue;
            }
            GD_ASSERT(depth < HAMT_MAX_PATH);
            path_next[depth] = c;
            path_end[depth] = end;
            depth++;
            c = hamt_children(term_boxed_ptr(child), &count, &bitmap);
            end = c + count;
        }
        if (depth == 0)
            break;
        depth--;
        c = path_next[depth];
        end = path_end[depth];
    }
    GD_ASSERT(i == heap_map_size(map));
}

/*
 * Writes map's pairs to keys[]/vals[] (heap_map_size(map) entries each,
 * owned by the caller) in ascending exact order of the keys.  Flat maps are
 * copied; hash maps are walked and sorted in place (introsort, O(n log n)
 * comparisons, no allocation but the comparisons' own).  Errors: GD_ENOMEM
 * when a comparison of deeply branching keys ran out of memory (the arrays
 * hold the pairs in an unspecified order then).
 */
int heap_map_sorted(term_t map, term_t *keys, term_t *vals)
{
    term_t *p = term_boxed_ptr(map);
    size_t n = heap_map_size(map);
    if (is_flat(p)) {
        memcpy(keys, p + 2, n * sizeof *keys);
        memcpy(vals, p + 2 + n, n * sizeof *vals);
        return GD_OK;
    }
    heap_map_pairs(map, keys, vals);
    int err = GD_OK;
    sort_pairs(keys, vals, 0, n, &err);
    return err;
}
