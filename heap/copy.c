/*
 * copy.c — deep copies of terms between heaps (sends, heap_copy_term) and
 * their exact size.
 *
 * One walker serves both passes: `write` false counts words, `write` true
 * builds the copy into space reserved from that count.  Because the two
 * passes take the same path through the same code, the size cannot drift
 * from what the copy writes.  The walk keeps an explicit stack of pending
 * (source term, destination slot) pairs — no C recursion — and continues
 * straight down list tails and into a tuple's last term field, so flat
 * lists and lists of small tuples need O(1) stack.
 *
 * Sharing: a small direct-mapped cache, keyed by source address, remembers
 * recently copied objects; a hit reuses the copy instead of duplicating it.
 * Only objects that contain terms (plus REFC_BIN objects) and list cells
 * reached from a non-tail slot are looked up, so long lists and leaf data
 * pay nothing.  The cache is thread-local and stamped with an epoch per
 * walk, so starting a walk costs nothing and both passes of one copy see
 * the same hits.
 */
#include <stdlib.h>

#include "gc_internal.h"

#define COPY_CACHE_BITS 9
#define COPY_CACHE_SIZE (1u << COPY_CACHE_BITS)
#define COPY_STACK_INLINE 32

typedef struct copy_cache_entry {
    const term_t *key;
    term_t val;
    uint64_t epoch;
} copy_cache_entry_t;

static _Thread_local copy_cache_entry_t copy_cache[COPY_CACHE_SIZE];
static _Thread_local uint64_t copy_epoch;

/* A pending copy: source term and the slot its copy goes to (write pass).
 * `tail` marks a list tail, which the cache does not look up. */
typedef struct copy_item {
    term_t src;
    term_t *dst;
    bool tail;
} copy_item_t;

typedef struct copy_walk {
    copy_item_t *items;
    size_t n;
    size_t cap;
    size_t words; /* size pass: words counted so far */
    uint64_t epoch;
    heap_copy_dest_t *dest; /* write pass */
    copy_item_t inline_items[COPY_STACK_INLINE];
} copy_walk_t;

static void walk_init(copy_walk_t *w, heap_copy_dest_t *dest)
{
    w->items = w->inline_items;
    w->n = 0;
    w->cap = COPY_STACK_INLINE;
    w->words = 0;
    w->epoch = ++copy_epoch;
    w->dest = dest;
}

static void walk_done(copy_walk_t *w)
{
    if (w->items != w->inline_items)
        free(w->items);
}

static GD_NOINLINE bool grow_stack(copy_walk_t *w)
{
    if (w->cap > SIZE_MAX / 2 / sizeof(copy_item_t))
        return false;
    size_t cap = w->cap * 2;
    copy_item_t *items;
    if (w->items == w->inline_items) {
        items = malloc(cap * sizeof *items);
        if (items != NULL)
            memcpy(items, w->inline_items, w->n * sizeof *items);
    } else {
        items = realloc(w->items, cap * sizeof *items);
    }
    if (items == NULL)
        return false;
    w->items = items;
    w->cap = cap;
    return true;
}

static inline bool push(copy_walk_t *w, term_t src, term_t *dst, bool tail)
{
    if (GD_UNLIKELY(w->n == w->cap) && !grow_stack(w))
        return false;
    w->items[w->n++] = (copy_item_t){src, dst, tail};
    return true;
}

static inline copy_cache_entry_t *cache_slot(const term_t *key)
{
    uint64_t h = ((uint64_t)(uintptr_t)key >> 3) * 0x9E3779B97F4A7C15ull;
    return &copy_cache[h >> (64 - COPY_CACHE_BITS)];
}

static inline bool cache_get(const copy_walk_t *w, const term_t *key, term_t *val)
{
    const copy_cache_entry_t *e = cache_slot(key);
    if (e->epoch == w->epoch && e->key == key) {
        *val = e->val;
        return true;
    }
    return false;
}

static inline void cache_put(const copy_walk_t *w, const term_t *key, term_t val)
{
    copy_cache_entry_t *e = cache_slot(key);
    e->key = key;
    e->val = val;
    e->epoch = w->epoch;
}

/* Reserves n words: counts them (size pass) or takes them from the
 * destination (write pass).  NULL means over the limit / out of space. */
static inline term_t *reserve(copy_walk_t *w, size_t n, const bool write, int *rc)
{
    if (write) {
        heap_copy_dest_t *d = w->dest;
        if (GD_UNLIKELY((size_t)(d->hend - d->hp) < n)) {
            GD_ASSERT(!"copy wrote more than it sized");
            *rc = GD_EINVAL;
            return NULL;
        }
        term_t *p = d->hp;
        d->hp += n;
        return p;
    }
    w->words += n;
    if (GD_UNLIKELY(w->words > HEAP_COPY_MAX_WORDS)) {
        *rc = GD_ESYSTEM_LIMIT;
        return NULL;
    }
    /* Any non-NULL pointer: the size pass never dereferences it. */
    return (term_t *)w;
}

/*
 * Walks (and in the write pass copies) terms[0..n) into outs[0..n).
 * Inlined twice with a constant `write`, so each pass is straight code.
 */
static inline int walk(copy_walk_t *w, const term_t *terms, size_t n, term_t *outs,
                       const bool write)
{
    int rc = GD_OK;
    for (size_t i = n; i-- > 0;)
        if (!push(w, terms[i], write ? &outs[i] : NULL, false))
            return GD_ENOMEM;

    while (w->n > 0) {
        copy_item_t it = w->items[--w->n];
        term_t t = it.src;
        term_t *dst = it.dst;
        bool tail = it.tail;
        for (;;) {
            if (term_is_list(t)) {
                const term_t *cell = term_list_ptr(t);
                term_t hit;
                if (!tail && cache_get(w, cell, &hit)) {
                    if (write)
                        *dst = hit;
                    break;
                }
                term_t *d = reserve(w, 2, write, &rc);
                if (d == NULL)
                    return rc;
                term_t nt = write ? term_make_list(d) : TERM_NIL;
                if (!tail)
                    cache_put(w, cell, nt);
                if (write)
                    *dst = nt;
                term_t car = cell[0], cdr = cell[1];
                if (term_is_immediate(car)) {
                    if (write)
                        d[0] = car;
                    t = cdr;
                    dst = write ? &d[1] : NULL;
                    tail = true;
                    continue;
                }
                if (term_is_immediate(cdr)) {
                    if (write)
                        d[1] = cdr;
                } else if (!push(w, cdr, write ? &d[1] : NULL, true)) {
                    return GD_ENOMEM;
                }
                t = car;
                dst = write ? &d[0] : NULL;
                tail = false;
                continue;
            }
            if (term_is_boxed(t)) {
                const term_t *obj = term_boxed_ptr(t);
                term_t hdr = obj[0];
                size_t arity = (size_t)header_arity(hdr);
                size_t raw = (size_t)heap_boxed_raw_words(hdr);
                bool refc = header_subtag(hdr) == HDR_REFC_BIN;
                bool cacheable = arity > raw || refc;
                term_t hit;
                if (cacheable && cache_get(w, obj, &hit)) {
                    if (write)
                        *dst = hit;
                    break;
                }
                term_t *d = reserve(w, 1 + arity, write, &rc);
                if (d == NULL)
                    return rc;
                term_t nt = TERM_NIL;
                if (write) {
                    memcpy(d, obj, (1 + raw) * sizeof(term_t));
                    nt = term_make_boxed(d);
                    *dst = nt;
                    if (refc) {
                        heap_binary_t *bin = offheap_binary(d);
                        heap_binary_ref(bin);
                        offheap_set_next(d, *w->dest->offheap_first);
                        *w->dest->offheap_first = d;
                        *w->dest->offheap_bytes += bin->size;
                    }
                }
                if (cacheable)
                    cache_put(w, obj, nt);
                /* Immediates are copied now; boxed/list fields are pushed,
                 * except the last, which the loop continues with. */
                term_t next = TERM_NONE;
                term_t *next_dst = NULL;
                for (size_t k = 1 + raw; k <= arity; k++) {
                    term_t e = obj[k];
                    if (term_is_immediate(e)) {
                        if (write)
                            d[k] = e;
                        continue;
                    }
                    if (next != TERM_NONE && !push(w, next, next_dst, false))
                        return GD_ENOMEM;
                    next = e;
                    next_dst = write ? &d[k] : NULL;
                }
                if (next == TERM_NONE)
                    break;
                t = next;
                dst = next_dst;
                tail = false;
                continue;
            }
            if (write)
                *dst = t;
            break;
        }
    }
    return GD_OK;
}

static GD_NOINLINE int walk_size(copy_walk_t *w, const term_t *terms, size_t n)
{
    return walk(w, terms, n, NULL, false);
}

static GD_NOINLINE int walk_write(copy_walk_t *w, const term_t *terms, size_t n, term_t *outs)
{
    return walk(w, terms, n, outs, true);
}

int heap_copy_size_n(const term_t *terms, size_t n, size_t *words)
{
    copy_walk_t w;
    walk_init(&w, NULL);
    int rc = walk_size(&w, terms, n);
    if (rc == GD_OK)
        *words = w.words;
    walk_done(&w);
    return rc;
}

int heap_copy_write_n(const term_t *terms, size_t n, term_t *outs, heap_copy_dest_t *dest)
{
    copy_walk_t w;
    walk_init(&w, dest);
    int rc = walk_write(&w, terms, n, outs);
    walk_done(&w);
    return rc;
}

size_t heap_term_size(term_t t)
{
    if (term_is_immediate(t))
        return 0;
    size_t words;
    if (heap_copy_size_n(&t, 1, &words) != GD_OK)
        return SIZE_MAX;
    return words;
}

int heap_copy_term(heap_t *h, term_t t, term_t *out)
{
    if (term_is_immediate(t)) {
        *out = t;
        return GD_OK;
    }
    size_t words;
    int rc = heap_copy_size_n(&t, 1, &words);
    if (rc != GD_OK)
        return rc;
    term_t *p = heap_alloc(h, words);
    if (p == NULL)
        return GD_ENOMEM;
    heap_copy_dest_t dest = {p, p + words, &h->offheap_first, &h->offheap_bytes};
    term_t copy;
    rc = heap_copy_write_n(&t, 1, &copy, &dest);
    if (rc != GD_OK)
        return rc;
    GD_ASSERT(dest.hp == dest.hend);
    *out = copy;
    return GD_OK;
}
