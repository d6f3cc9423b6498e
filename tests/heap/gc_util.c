/*
 * gc_util.c — see gc_util.h.
 */
#include "gc_util.h"
#include "termgen_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same splitmix64 stream as termgen's (one copy of the generator). */
uint64_t gcu_next(gcu_rng_t *r)
{
    return termgen_next(&r->s);
}

size_t gcu_below(gcu_rng_t *r, size_t n)
{
    return n == 0 ? 0 : (size_t)(gcu_next(r) % n);
}

/* ---- a growable stack of term pairs ---- */

typedef struct pair_stack {
    term_t *v;
    size_t n, cap;
} pair_stack_t;

static void ps_push(pair_stack_t *s, term_t a, term_t b)
{
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = realloc(s->v, s->cap * sizeof(term_t));
        if (s->v == NULL) {
            fprintf(stderr, "gc_util: out of memory\n");
            abort();
        }
    }
    s->v[s->n++] = a;
    s->v[s->n++] = b;
}

static bool ps_pop(pair_stack_t *s, term_t *a, term_t *b)
{
    if (s->n == 0)
        return false;
    *b = s->v[--s->n];
    *a = s->v[--s->n];
    return true;
}

bool gcu_equal(term_t a, term_t b)
{
    pair_stack_t s = {0};
    bool ok = true;
    ps_push(&s, a, b);
    while (ok && ps_pop(&s, &a, &b)) {
        if (a == b)
            continue;
        if (term_primary(a) != term_primary(b) || term_is_immediate(a)) {
            ok = false;
            break;
        }
        if (term_is_list(a)) {
            ps_push(&s, term_cdr(a), term_cdr(b));
            ps_push(&s, term_car(a), term_car(b));
            continue;
        }
        const term_t *pa = term_boxed_ptr(a), *pb = term_boxed_ptr(b);
        if (pa[0] != pb[0]) {
            ok = false;
            break;
        }
        size_t arity = (size_t)header_arity(pa[0]);
        size_t raw = (size_t)heap_boxed_raw_words(pa[0]);
        if (header_subtag(pa[0]) == HDR_REFC_BIN) {
            const heap_binary_t *ba = (const heap_binary_t *)(uintptr_t)pa[2];
            const heap_binary_t *bb = (const heap_binary_t *)(uintptr_t)pb[2];
            ok = pa[1] == pb[1] && ba->size == bb->size &&
                 (ba == bb || memcmp(ba->data, bb->data, ba->size) == 0);
            continue;
        }
        for (size_t i = 1; i <= raw && ok; i++)
            ok = pa[i] == pb[i];
        for (size_t i = arity; i > raw && ok; i--)
            ps_push(&s, pa[i], pb[i]);
    }
    free(s.v);
    return ok;
}

static bool in_words(const term_t *p, size_t n, const term_t *base, size_t used)
{
    return p >= base && p + n <= base + used;
}

static bool points_into(const heap_t *h, const term_t *p, size_t n)
{
    if (in_words(p, n, h->young_start, (size_t)(h->young_top - h->young_start)))
        return true;
    if (h->old_start != NULL && in_words(p, n, h->old_start, (size_t)(h->old_top - h->old_start)))
        return true;
    for (const heap_frag_t *f = h->frags; f != NULL; f = f->next)
        if (in_words(p, n, f->words, f->used))
            return true;
    return false;
}

/* Walks t's tree; calls check(ctx, ptr, words) on every object/cell before
 * reading it.  Stops when check says false. */
static bool walk_objects(term_t t, bool (*check)(const void *, const term_t *, size_t),
                         const void *ctx)
{
    pair_stack_t s = {0};
    bool ok = true;
    ps_push(&s, t, 0);
    term_t dummy;
    while (ok && ps_pop(&s, &t, &dummy)) {
        if (term_is_immediate(t))
            continue;
        if (term_is_list(t)) {
            const term_t *c = term_list_ptr(t);
            if (!(ok = check(ctx, c, 2)))
                break;
            ps_push(&s, c[1], 0);
            ps_push(&s, c[0], 0);
            continue;
        }
        if (!term_is_boxed(t)) {
            ok = false;
            break;
        }
        const term_t *p = term_boxed_ptr(t);
        if (!(ok = check(ctx, p, 1)))
            break;
        if (term_primary(p[0]) != TAG_PRIMARY_HEADER || header_subtag(p[0]) >= HDR_SUBTAG_COUNT) {
            ok = false;
            break;
        }
        size_t arity = (size_t)header_arity(p[0]);
        if (!(ok = check(ctx, p, 1 + arity)))
            break;
        size_t raw = (size_t)heap_boxed_raw_words(p[0]);
        for (size_t i = arity; i > raw; i--)
            ps_push(&s, p[i], 0);
    }
    free(s.v);
    return ok;
}

static bool check_on(const void *ctx, const term_t *p, size_t n)
{
    return points_into(ctx, p, n);
}

static bool check_off(const void *ctx, const term_t *p, size_t n)
{
    (void)n;
    return !points_into(ctx, p, 1);
}

bool gcu_on_heap(const heap_t *h, term_t t)
{
    return walk_objects(t, check_on, h);
}

bool gcu_disjoint(const heap_t *h, term_t t)
{
    return walk_objects(t, check_off, h);
}

size_t gcu_tree_words(term_t t, size_t cap)
{
    pair_stack_t s = {0};
    size_t words = 0;
    term_t dummy;
    ps_push(&s, t, 0);
    while (words < cap && ps_pop(&s, &t, &dummy)) {
        if (term_is_list(t)) {
            words += 2;
            ps_push(&s, term_cdr(t), 0);
            ps_push(&s, term_car(t), 0);
        } else if (term_is_boxed(t)) {
            const term_t *p = term_boxed_ptr(t);
            size_t arity = (size_t)header_arity(p[0]);
            words += 1 + arity;
            for (size_t i = arity; i > heap_boxed_raw_words(p[0]); i--)
                ps_push(&s, p[i], 0);
        }
    }
    free(s.v);
    return words < cap ? words : cap;
}

size_t gcu_offheap_count(const heap_t *h)
{
    size_t n = 0;
    for (const term_t *o = h->offheap_first; o != NULL; o = (const term_t *)(uintptr_t)o[3])
        n++;
    for (const heap_frag_t *f = h->frags; f != NULL; f = f->next)
        for (const term_t *o = f->offheap_first; o != NULL; o = (const term_t *)(uintptr_t)o[3])
            n++;
    return n;
}

static void must(int rc)
{
    if (rc != GD_OK) {
        fprintf(stderr, "gc_util: building a term failed: %s\n", gd_strerror(rc));
        abort();
    }
}

term_t gcu_leaf(heap_t *h, gcu_rng_t *r)
{
    term_t t = TERM_NIL;
    switch (gcu_below(r, 12)) {
    case 0:
        return term_make_small((int64_t)(gcu_next(r) % 2000001) - 1000000);
    case 1:
        return term_make_atom((uint32_t)gcu_below(r, HEAP_FIXED_ATOM_COUNT));
    case 2:
        return TERM_NIL;
    case 3: {
        uint64_t digits[3] = {gcu_next(r), gcu_next(r), gcu_next(r) | 1};
        must(heap_make_integer_digits(h, gcu_below(r, 2), digits, 1 + gcu_below(r, 3), &t));
        return t;
    }
    case 4:
        must(heap_make_float(h, (double)(int64_t)gcu_next(r) / 1024.0, &t));
        return t;
    case 5: {
        uint8_t bytes[HEAP_BIN_MAX_BYTES];
        size_t n = gcu_below(r, sizeof bytes + 1);
        for (size_t i = 0; i < n; i++)
            bytes[i] = (uint8_t)gcu_next(r);
        must(heap_make_binary(h, bytes, n, &t));
        return t;
    }
    case 6: {
        size_t n = HEAP_BIN_MAX_BYTES + 1 + gcu_below(r, 300);
        uint8_t *data;
        must(heap_make_bitstring_uninit(h, n * 8, &data, &t));
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)(i * 7 + n);
        return t;
    }
    case 7:
        must(heap_make_ext_pid(h, ATOM_NONODE, (uint32_t)gcu_next(r), (uint32_t)gcu_below(r, 8191),
                               (uint32_t)gcu_next(r), &t));
        return t;
    case 8:
        must(heap_make_ext_port(h, ATOM_NONODE, gcu_next(r), (uint32_t)gcu_next(r), &t));
        return t;
    case 9: {
        uint32_t w[3] = {(uint32_t)gcu_next(r), (uint32_t)gcu_next(r), (uint32_t)gcu_next(r)};
        must(heap_make_ref(h, ATOM_NONODE, (uint32_t)gcu_next(r), w, 3, &t));
        return t;
    }
    case 10:
        must(heap_make_export(h, ATOM_OK, ATOM_ERROR, (uint8_t)gcu_below(r, 5), &t));
        return t;
    default:
        return term_make_local_pid((uint32_t)gcu_below(r, HEAP_LOCAL_PID_NUMBER_MAX + 1), 0);
    }
}

term_t gcu_fake_map(heap_t *h, const term_t *keys, const term_t *vals, size_t n)
{
    term_t *p = heap_alloc(h, 2 + 2 * n);
    if (p == NULL)
        must(GD_ENOMEM);
    p[0] = heap_make_header(HDR_MAP_FLAT, 1 + 2 * n);
    p[1] = term_make_small((int64_t)n);
    for (size_t i = 0; i < n; i++) {
        p[2 + i] = keys[i];
        p[2 + n + i] = vals[i];
    }
    return term_make_boxed(p);
}

/*
 * Builds bottom-up from a pool of recent terms: each step makes a leaf or
 * combines pool entries into a tuple, list, cons, map, fun or sub-binary.
 * Reusing a pool entry twice creates sharing.
 */
term_t gcu_random_term(heap_t *h, gcu_rng_t *r, size_t budget)
{
    enum { POOL = 16 };
    term_t pool[POOL];
    size_t tree[POOL]; /* tree size of each entry: sharing must not make the
                          expanded tree (what equality walks) explode */
    size_t tree_cap = 8 * budget + 64;
    for (size_t i = 0; i < POOL; i++) {
        pool[i] = gcu_leaf(h, r);
        tree[i] = GCU_LEAF_MAX_WORDS;
    }
    size_t used = 0;
    while (used < budget) {
        term_t t;
        size_t k = 1 + gcu_below(r, 5);
        term_t parts[5];
        size_t tree_words = 12;
        for (size_t i = 0; i < k; i++) {
            size_t j = gcu_below(r, POOL);
            parts[i] = pool[j];
            tree_words += 2 * tree[j]; /* maps may use a part twice */
        }
        unsigned kind = (unsigned)gcu_below(r, 8);
        if (tree_words > tree_cap) {
            kind = 7;
            tree_words = GCU_LEAF_MAX_WORDS;
        }
        switch (kind) {
        case 0: {
            term_t *el;
            must(heap_make_tuple(h, k, &el, &t));
            memcpy(el, parts, k * sizeof(term_t));
            used += 1 + k;
            break;
        }
        case 1:
            must(heap_make_list(h, parts, k, &t));
            used += 2 * k;
            break;
        case 2:
            must(heap_cons(h, parts[0], parts[k - 1], &t));
            used += 2;
            break;
        case 3: {
            size_t n = k / 2 + 1;
            term_t keys[3], vals[3];
            for (size_t i = 0; i < n; i++) {
                keys[i] = parts[i % k];
                vals[i] = parts[(i + 1) % k];
            }
            t = gcu_fake_map(h, keys, vals, n);
            used += 2 + 2 * n;
            break;
        }
        case 4: {
            heap_fun_info_t info = {0};
            info.arity = 1;
            info.index = 3;
            info.num_free = (uint32_t)k;
            info.module = ATOM_OK;
            info.old_index = term_make_small(1);
            info.old_uniq = term_make_small(2);
            info.pid = term_make_local_pid(1, 0);
            term_t *fv;
            must(heap_make_fun(h, &info, &fv, &t));
            memcpy(fv, parts, k * sizeof(term_t));
            used += 9 + k;
            break;
        }
        case 5: {
            term_t b = parts[0];
            if (term_is_bitstring(b)) {
                heap_bin_view_t v;
                heap_bin_view(b, &v);
                size_t off = gcu_below(r, v.bit_size + 1);
                must(heap_make_sub_binary(h, b, off, gcu_below(r, v.bit_size - off + 1), &t));
                used += 4;
            } else {
                t = gcu_leaf(h, r);
                used += 4;
            }
            break;
        }
        default:
            t = gcu_leaf(h, r);
            used += 4;
            break;
        }
        size_t j = gcu_below(r, POOL);
        pool[j] = t;
        tree[j] = tree_words;
    }
    /* Tie the pool together so the result holds most of what was built. */
    term_t *el;
    term_t out;
    must(heap_make_tuple(h, POOL, &el, &out));
    memcpy(el, pool, sizeof pool);
    return out;
}
