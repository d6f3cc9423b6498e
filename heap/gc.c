/*
 * gc.c — per-heap generational copying collection (Cheney), BEAM-style.
 *
 * A heap has a young area [young_start, young_end) bump-allocated up to
 * young_top, an optional old area holding promoted terms, and fragments
 * (overflow allocations and attached messages).  Words of the young area
 * below high_water survived the previous collection.
 *
 * Minor collection: terms reachable from the roots that live in the young
 * area below high_water ("mature") are promoted into the old area; other
 * young or fragment terms are copied into a fresh young area.  The old area
 * is not traced: terms are immutable, so an old term never points to a
 * younger one, and everything a mature term points to is mature or old.
 * Major collection (full sweep): every reachable term is copied into a
 * fresh young area and the old area is freed.
 *
 * Both copy breadth-first: the to-spaces themselves are the work queue
 * (Cheney), so there is no recursion and no side stack.  A moved cons cell
 * gets TERM_MOVED in its car and the new cell in its cdr; a moved boxed
 * object gets a boxed pointer to its copy in place of its header (a header
 * word has primary tag 00, so the two cannot be confused).
 *
 * Off-heap binaries: h->offheap_first lists every REFC_BIN object of the
 * heap, young and fragment ones first, old ones after (new objects are
 * prepended; the collector appends promoted ones in front of the old
 * part).  A minor collection therefore walks only the young part; an entry
 * whose object was not moved is dead and drops its binary reference.
 *
 * Sizing follows BEAM (erl_gc.c): sizes from heap_next_size, a young area
 * at least as big as what it may have to hold, shrink when the live data
 * uses under a quarter of it, grow at the next full sweep when it uses
 * over three quarters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gc_internal.h"

/* ------------------------------------------------------------------------ */
/* Heap size sequence                                                       */

/* Fibonacci-plus-one steps up to here, then +20% (BEAM's heap_sizes). */
#define GC_FIB_STEPS 23

size_t heap_next_size(size_t words, unsigned offset)
{
    size_t prev2 = 0, prev = 0;
    bool found = false;
    for (unsigned i = 0;; i++) {
        size_t cur;
        if (i == 0)
            cur = 12;
        else if (i == 1)
            cur = 38;
        else if (i < GC_FIB_STEPS)
            cur = prev + prev2 + 1;
        else
            cur = prev + prev / 5;
        if (cur > GC_MAX_HEAP_WORDS)
            return 0;
        if (found)
            return cur;
        if (cur >= words) {
            if (offset == 0)
                return cur;
            found = true;
        }
        prev2 = prev;
        prev = cur;
    }
}

size_t heap_size_words(const heap_t *h)
{
    /* O(1): the scheduler publishes it after every slice, and walking a
     * process's message fragments there cost 27% of a 100-caller call load. */
    return (size_t)(h->young_end - h->young_start) + (size_t)(h->old_end - h->old_start) +
           h->frag_capacity;
}

/* ------------------------------------------------------------------------ */
/* Stress mode and statistics                                               */

/* -1 until decided from the build flag and the environment. */
static atomic_int gc_stress_mode = -1;

bool heap_gc_stress_enabled(void)
{
    /* relaxed: a plain flag; racing first readers compute the same value. */
    int mode = atomic_load_explicit(&gc_stress_mode, memory_order_relaxed);
    if (mode < 0) {
#ifdef GD_GC_STRESS
        mode = 1;
#else
        const char *env = getenv("GIRDER_GC_STRESS");
        mode = env != NULL && env[0] != '\0' && strcmp(env, "0") != 0;
#endif
        atomic_store_explicit(&gc_stress_mode, mode, memory_order_relaxed);
    }
    return mode != 0;
}

void heap_gc_stress_set(bool on)
{
    atomic_store_explicit(&gc_stress_mode, on ? 1 : 0, memory_order_relaxed);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void account(heap_t *h, bool major, size_t before, size_t after, size_t copied,
                    uint64_t pause)
{
    heap_gc_stats_t *s = &h->stats;
    size_t reclaimed = before > after ? before - after : 0;
    if (major)
        s->major_collections++;
    else
        s->minor_collections++;
    s->words_reclaimed += reclaimed;
    s->words_copied += copied;
    s->pause_ns_total += pause;
    if (pause > s->pause_ns_max)
        s->pause_ns_max = pause;
    heap_thread_stats_t *t = heap_stats_self();
    heap_stat_add(t, major ? &t->major : &t->minor, 1);
    heap_stat_add(t, &t->reclaimed, reclaimed);
    heap_stat_add(t, &t->copied, copied);
    heap_stat_add(t, &t->pause_total, pause);
    heap_stat_max(t, &t->pause_max, pause);
    heap_stat_add(t, &t->pause_hist[heap_pause_bucket(pause)], 1);
}

/* ------------------------------------------------------------------------ */
/* From-space release                                                       */

#ifdef GD_ASSERTS
/* A list pointer to a non-canonical address: a stale term read from a
 * collected area faults at its first dereference. */
#define GC_POISON ((term_t)0xDEADDEADDEADDEADull)
#endif

/* Frees a collected area of `capacity` words whose first `used` held
 * terms.  Debug builds first overwrite those so that a term someone kept
 * without registering it as a root crashes at once (ASan builds also catch
 * the read itself: there every area is malloc'd and freed, see area.c). */
static void release_area(term_t *p, size_t capacity, size_t used)
{
    if (p == NULL || p == heap_no_young_area)
        return;
#ifdef GD_ASSERTS
    for (size_t i = 0; i < used; i++)
        p[i] = GC_POISON;
#else
    (void)used;
#endif
    heap_area_free(p, capacity);
}

/* ------------------------------------------------------------------------ */
/* Copying                                                                  */

typedef struct gc {
    term_t *ytop;     /* young to-space: next free word */
    term_t *otop;     /* old area: next free word (minor) */
    uintptr_t old_lo; /* old area [old_lo, old_lo + old_bytes): not copied */
    size_t old_bytes;
    uintptr_t mature_lo; /* survivors from [mature_lo, +mature_bytes) are promoted */
    size_t mature_bytes;
    uintptr_t to_lo; /* young to-space [to_lo, +to_bytes) */
    size_t to_bytes;
#ifdef GD_ASSERTS
    /* What may be evacuated: the young area in use, the old area in use
     * (major collections), the used part of each fragment (sorted by
     * address when the array could be allocated). */
    uintptr_t from_young_lo, from_old_lo;
    size_t from_young_bytes, from_old_bytes;
    const heap_frag_t *frags;
    size_t nfrags;
    struct gc_span {
        uintptr_t lo;
        size_t bytes;
    } * frag_spans; /* NULL: walk `frags` instead */
#endif
} gc_t;

static inline bool in_range(const void *p, uintptr_t lo, size_t bytes)
{
    return (uintptr_t)p - lo < bytes;
}

static inline void copy_words(term_t *d, const term_t *s, size_t n)
{
    if (n <= 8) {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    } else {
        memcpy(d, s, n * sizeof(term_t));
    }
}

#ifdef GD_ASSERTS
static int cmp_span(const void *a, const void *b)
{
    uintptr_t x = ((const struct gc_span *)a)->lo, y = ((const struct gc_span *)b)->lo;
    return (x > y) - (x < y);
}

/* Debug builds: records what the collection of h may evacuate. */
static void from_space_init(gc_t *g, const heap_t *h, bool major)
{
    g->from_young_lo = (uintptr_t)h->young_start;
    g->from_young_bytes = (size_t)(h->young_top - h->young_start) * sizeof(term_t);
    g->from_old_lo = (uintptr_t)h->old_start;
    g->from_old_bytes = major ? (size_t)(h->old_top - h->old_start) * sizeof(term_t) : 0;
    g->frags = h->frags;
    g->nfrags = 0;
    for (const heap_frag_t *f = h->frags; f != NULL; f = f->next)
        g->nfrags++;
    g->frag_spans = g->nfrags == 0 ? NULL : malloc(g->nfrags * sizeof *g->frag_spans);
    if (g->frag_spans != NULL) {
        size_t i = 0;
        for (const heap_frag_t *f = h->frags; f != NULL; f = f->next, i++)
            g->frag_spans[i] = (struct gc_span){(uintptr_t)f->words, f->used * sizeof(term_t)};
        qsort(g->frag_spans, g->nfrags, sizeof *g->frag_spans, cmp_span);
    }
}

static void from_space_free(gc_t *g)
{
    free(g->frag_spans);
    g->frag_spans = NULL;
}

static bool in_frags(const gc_t *g, const void *p)
{
    if (g->frag_spans == NULL) {
        for (const heap_frag_t *f = g->frags; f != NULL; f = f->next)
            if (in_range(p, (uintptr_t)f->words, f->used * sizeof(term_t)))
                return true;
        return false;
    }
    size_t lo = 0, hi = g->nfrags;
    while (lo < hi) { /* the last span starting at or below p */
        size_t mid = lo + (hi - lo) / 2;
        if (g->frag_spans[mid].lo <= (uintptr_t)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && in_range(p, g->frag_spans[lo - 1].lo, g->frag_spans[lo - 1].bytes);
}

/* The collector writes a forwarding pointer into every object it moves:
 * one outside the heap being collected (a literal, another process's
 * heap, a freed area) would be corrupted, so debug builds stop here with
 * the culprit's address. */
static GD_COLD void foreign_term(const gc_t *g, const void *p)
{
    fprintf(stderr,
            "girder: GC: term at %p lies outside the heap being collected (young %p +%zu, old "
            "%p +%zu, %zu fragments): a root or a term on the heap points into a literal, "
            "another heap or freed memory\n",
            p, (void *)g->from_young_lo, g->from_young_bytes, (void *)g->from_old_lo,
            g->from_old_bytes, g->nfrags);
    abort();
}

static inline void check_from_space(const gc_t *g, const void *p)
{
    if (!in_range(p, g->from_young_lo, g->from_young_bytes) &&
        !in_range(p, g->from_old_lo, g->from_old_bytes) && !in_frags(g, p))
        foreign_term(g, p);
}
#define CHECK_FROM_SPACE(g, p) check_from_space((g), (p))
#else
#define CHECK_FROM_SPACE(g, p) ((void)0)
#endif

/*
 * Moves the term in *slot (if it is a from-space term) and updates the
 * slot.  `minor` is a constant at every call site so each collection kind
 * gets its own straight-line copy of this.
 */
static inline void evacuate(gc_t *g, term_t *slot, const bool minor)
{
    term_t t = *slot;
    if (term_is_list(t)) {
        term_t *p = term_list_ptr(t);
        if (minor && in_range(p, g->old_lo, g->old_bytes))
            return;
        CHECK_FROM_SPACE(g, p);
        term_t car = p[0];
        if (car == TERM_MOVED) {
            *slot = p[1];
            return;
        }
        term_t *d;
        if (minor && in_range(p, g->mature_lo, g->mature_bytes)) {
            d = g->otop;
            g->otop = d + 2;
        } else {
            d = g->ytop;
            g->ytop = d + 2;
        }
        d[0] = car;
        d[1] = p[1];
        term_t nt = term_make_list(d);
        p[0] = TERM_MOVED;
        p[1] = nt;
        *slot = nt;
    } else if (term_is_boxed(t)) {
        term_t *p = term_boxed_ptr(t);
        if (minor && in_range(p, g->old_lo, g->old_bytes))
            return;
        CHECK_FROM_SPACE(g, p);
        term_t hdr = p[0];
        if (term_is_boxed(hdr)) {
            *slot = hdr;
            return;
        }
        size_t n = (size_t)header_arity(hdr) + 1;
        term_t *d;
        if (minor && in_range(p, g->mature_lo, g->mature_bytes)) {
            d = g->otop;
            g->otop = d + n;
        } else {
            d = g->ytop;
            g->ytop = d + n;
        }
        copy_words(d, p, n);
        term_t nt = term_make_boxed(d);
        p[0] = nt;
        *slot = nt;
    }
}

/* evacuate() specialised per collection kind, out of line: measured
 * faster than inlining it into the scan loop. */
static GD_NOINLINE void evacuate_minor(gc_t *g, term_t *slot)
{
    evacuate(g, slot, true);
}
static GD_NOINLINE void evacuate_major(gc_t *g, term_t *slot)
{
    evacuate(g, slot, false);
}

/* Scans [scan, *top) of a to-space, evacuating what its terms point to;
 * *top moves while it runs.  Returns where it stopped (== *top). */
static inline term_t *scan_area(gc_t *g, term_t *scan, term_t *const *top, const bool minor)
{
    while (scan < *top) {
        term_t w = *scan;
        switch (term_primary(w)) {
        case TAG_PRIMARY_HEADER:
            scan += 1 + heap_boxed_raw_words(w);
            break;
        case TAG_PRIMARY_LIST:
        case TAG_PRIMARY_BOXED:
            if (minor)
                evacuate_minor(g, scan);
            else
                evacuate_major(g, scan);
            scan++;
            break;
        default:
            scan++;
            break;
        }
    }
    return scan;
}

/* A root slot: skipped if it already points into to-space (the same slot
 * listed twice, or two slots sharing storage). */
static inline void evacuate_root(gc_t *g, term_t *slot, const bool minor)
{
    term_t t = *slot;
    if (term_is_immediate(t))
        return;
    const term_t *p = term_is_list(t) ? term_list_ptr(t) : term_boxed_ptr(t);
    if (in_range(p, g->to_lo, g->to_bytes))
        return;
    evacuate(g, slot, minor);
}

static void visit_minor(void *vctx, term_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        evacuate_root(vctx, &terms[i], true);
}

static void visit_major(void *vctx, term_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        evacuate_root(vctx, &terms[i], false);
}

static void for_each_root(const heap_roots_t *roots, heap_root_visit_fn visit, void *vctx)
{
    if (roots == NULL)
        return;
    for (size_t i = 0; i < roots->nslots; i++)
        visit(vctx, roots->slots[i], 1);
    if (roots->enumerate != NULL)
        roots->enumerate(roots->ctx, visit, vctx);
}

static GD_NOINLINE void copy_minor(gc_t *g, const heap_roots_t *roots, term_t *old_scan)
{
    term_t *yscan = (term_t *)g->to_lo;
    for_each_root(roots, visit_minor, g);
    /* Young terms may point to mature ones, which get promoted; scanning
     * the promoted ones then only promotes more: mature terms point to
     * mature or old ones only (terms are immutable).  A term changed after
     * a collection would break that and leave an old term pointing into the
     * young area, which the next minor would not see: debug builds check. */
    do {
        yscan = scan_area(g, yscan, &g->ytop, true);
#ifdef GD_ASSERTS
        term_t *ytop_before = g->ytop;
#endif
        old_scan = scan_area(g, old_scan, &g->otop, true);
        GD_ASSERT(g->ytop == ytop_before);
    } while (yscan < g->ytop);
}

static GD_NOINLINE void copy_major(gc_t *g, const heap_roots_t *roots)
{
    for_each_root(roots, visit_major, g);
    scan_area(g, (term_t *)g->to_lo, &g->ytop, false);
}

/* ------------------------------------------------------------------------ */
/* Off-heap binaries                                                        */

typedef struct offheap_lists {
    term_t *young_first, *young_last;
    term_t *promoted_first, *promoted_last;
    size_t young_bytes, promoted_bytes;
} offheap_lists_t;

static inline void list_append(term_t **first, term_t **last, term_t *obj)
{
    if (*last == NULL)
        *first = obj;
    else
        offheap_set_next(*last, obj);
    *last = obj;
}

/* One from-space REFC_BIN object: moved ones go on the young or promoted
 * list (by where the copy is), unmoved ones are dead. */
static inline void sweep_one(offheap_lists_t *l, term_t *obj, uintptr_t old_lo, size_t old_bytes)
{
    term_t hdr = obj[0];
    if (!term_is_boxed(hdr)) {
        heap_binary_unref(offheap_binary(obj));
        return;
    }
    term_t *copy = term_boxed_ptr(hdr);
    size_t bytes = offheap_binary(copy)->size;
    if (in_range(copy, old_lo, old_bytes)) {
        list_append(&l->promoted_first, &l->promoted_last, copy);
        l->promoted_bytes += bytes;
    } else {
        list_append(&l->young_first, &l->young_last, copy);
        l->young_bytes += bytes;
    }
}

/*
 * Rebuilds h's off-heap list after a copy.  `old_lo/old_bytes` is the old
 * area that was not collected (empty for a major collection): the list's
 * tail from its first entry there is kept as it is.
 */
static void sweep_offheap(heap_t *h, uintptr_t old_lo, size_t old_bytes)
{
    offheap_lists_t l = {0};
    term_t *obj = h->offheap_first;
    while (obj != NULL && !in_range(obj, old_lo, old_bytes)) {
        term_t *next = offheap_next(obj);
        sweep_one(&l, obj, old_lo, old_bytes);
        obj = next;
    }
    term_t *old_part = obj;
    for (heap_frag_t *f = h->frags; f != NULL; f = f->next) {
        for (term_t *o = f->offheap_first; o != NULL;) {
            term_t *next = offheap_next(o);
            sweep_one(&l, o, old_lo, old_bytes);
            o = next;
        }
        f->offheap_first = NULL;
    }
    /* young ++ promoted ++ old */
    term_t *first = old_part;
    if (l.promoted_last != NULL) {
        offheap_set_next(l.promoted_last, first);
        first = l.promoted_first;
    }
    if (l.young_last != NULL) {
        offheap_set_next(l.young_last, first);
        first = l.young_first;
    }
    h->offheap_first = first;
    h->offheap_bytes = l.young_bytes;
    h->old_offheap_bytes = (old_bytes == 0 ? 0 : h->old_offheap_bytes) + l.promoted_bytes;
}

/* ------------------------------------------------------------------------ */
/* Moving the young area (resize after a collection)                        */

typedef struct reloc {
    uintptr_t lo;
    size_t bytes;
    ptrdiff_t delta; /* bytes */
} reloc_t;

static inline void reloc_word(const reloc_t *r, term_t *w)
{
    term_t t = *w;
    if ((term_is_list(t) || term_is_boxed(t)) &&
        in_range((const void *)(uintptr_t)(t & ~(term_t)TAG_PRIMARY_MASK), r->lo, r->bytes))
        *w = t + (term_t)r->delta;
}

static void visit_reloc(void *vctx, term_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        reloc_word(vctx, &terms[i]);
}

/*
 * Resizes the young area to `words` (>= words in use).  If it moved,
 * rewrites every pointer into it: in the area itself, in the roots, on the
 * off-heap list and high_water (the old area and fragments never point
 * into the young area after a collection).  On allocation failure the heap
 * stays as it was and false is returned.
 */
static bool resize_young(heap_t *h, size_t words, const heap_roots_t *roots)
{
    term_t *old = h->young_start;
    size_t used = (size_t)(h->young_top - old);
    size_t capacity = (size_t)(h->young_end - old);
    GD_ASSERT(words >= used);
    if (words == 0) {
        release_area(old, capacity, used);
        h->young_start = h->young_top = h->young_end = h->high_water = heap_no_young_area;
        return true;
    }
    uintptr_t lo = (uintptr_t)old;
    size_t hw = (size_t)(h->high_water - old);
    term_t *area = heap_area_resize(old, capacity, words, used);
    if (area == NULL)
        return false;
    h->young_start = area;
    h->young_top = area + used;
    h->young_end = area + words;
    h->high_water = area + hw;
    if ((uintptr_t)area == lo)
        return true;
    reloc_t r = {lo, used * sizeof(term_t), (ptrdiff_t)((uintptr_t)area - lo)};
    for (term_t *p = area; p < area + used;) {
        term_t w = *p;
        if (term_primary(w) == TAG_PRIMARY_HEADER) {
            p += 1 + heap_boxed_raw_words(w);
        } else {
            reloc_word(&r, p);
            p++;
        }
    }
    for_each_root(roots, visit_reloc, &r);
    /* The young part of the off-heap list comes first. */
    term_t **link = &h->offheap_first;
    while (*link != NULL && in_range(*link, lo, r.bytes)) {
        *link = (term_t *)((uintptr_t)*link + (uintptr_t)r.delta);
        link = (term_t **)(void *)&(*link)[3];
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Collections                                                              */

static size_t at_least_min(const heap_t *h, size_t words)
{
    return words < h->min_words ? h->min_words : words;
}

/* After a collection: the live data plus `need_after` words do not fit the
 * new young area.  GC_GROW_FAILED: the collection is complete and the
 * roots valid, but the young area could not grow. */
#define GC_GROW_FAILED 1
static int grow_young(heap_t *h, size_t need_after, const heap_roots_t *roots)
{
    size_t size = heap_next_size(need_after, 0);
    if (size == 0 || !resize_young(h, size, roots))
        return GC_GROW_FAILED;
    return GD_OK;
}

/* Frees every fragment (their live terms were copied and their off-heap
 * lists swept), poisoned first in debug builds like any from-space. */
static void free_frags(heap_t *h)
{
    for (heap_frag_t *f = h->frags, *next; f != NULL; f = next) {
        next = f->next;
#ifdef GD_ASSERTS
        for (size_t i = 0; i < f->used; i++)
            f->words[i] = GC_POISON;
#endif
        heap_frag_release_storage(f);
    }
    h->frags = NULL;
    h->frag_words = 0;
    h->frag_capacity = 0;
}

/* Sets the binary-pressure thresholds after a collection: a generation's
 * binaries may double before they force the next one. */
static void set_vheap_limits(heap_t *h, bool major)
{
    size_t y = h->offheap_bytes;
    h->vheap_limit = y > GC_VHEAP_MIN_BYTES / 2 ? 2 * y : GC_VHEAP_MIN_BYTES;
    if (major) {
        /* Everything live is young now and will be promoted: allow the
         * old generation that much before insisting on a full sweep. */
        h->old_vheap_limit = y > GC_VHEAP_MIN_BYTES / 2 ? 2 * y : GC_VHEAP_MIN_BYTES;
    }
}

/*
 * Minor collection.  Returns GD_OK, GD_ENOMEM (nothing changed) or
 * GD_EOLD_HEAP_FULL when the old area cannot take the mature data (the caller
 * does a major collection instead).
 */
static int minor(heap_t *h, size_t need, const heap_roots_t *roots, size_t *copied, size_t *before,
                 size_t *after)
{
    size_t young_used = (size_t)(h->young_top - h->young_start);
    size_t mature = (size_t)(h->high_water - h->young_start);
    bool new_old = false;

    if (h->old_start == NULL && mature > 0) {
        /* Larger than strictly needed, as BEAM: fewer full sweeps. */
        size_t osize = heap_next_size(young_used + h->frag_words, 1);
        h->old_start = osize == 0 ? NULL : heap_area_alloc(osize);
        if (h->old_start == NULL)
            return GD_ENOMEM;
        h->old_top = h->old_start;
        h->old_end = h->old_start + osize;
        new_old = true;
    }
    if (mature > (size_t)(h->old_end - h->old_top))
        return GD_EOLD_HEAP_FULL;

    /* Room for every young and fragment word, as BEAM: survivors always
     * fit; if `need` does not fit next to them, the area grows after. */
    size_t to_size = heap_next_size(at_least_min(h, young_used + h->frag_words), 0);
    term_t *to = to_size == 0 ? NULL : heap_area_alloc(to_size);
    if (to == NULL) {
        if (new_old) {
            heap_area_free(h->old_start, (size_t)(h->old_end - h->old_start));
            h->old_start = h->old_top = h->old_end = NULL;
        }
        return to_size == 0 ? GD_ESYSTEM_LIMIT : GD_ENOMEM;
    }

    term_t *old_top_before = h->old_top;
    gc_t g = {
        .ytop = to,
        .otop = h->old_top,
        .old_lo = (uintptr_t)h->old_start,
        .old_bytes = (size_t)(h->old_end - h->old_start) * sizeof(term_t),
        .mature_lo = (uintptr_t)h->young_start,
        .mature_bytes = mature * sizeof(term_t),
        .to_lo = (uintptr_t)to,
        .to_bytes = to_size * sizeof(term_t),
    };
#ifdef GD_ASSERTS
    from_space_init(&g, h, false);
#endif
    copy_minor(&g, roots, old_top_before);
#ifdef GD_ASSERTS
    from_space_free(&g);
#endif
    sweep_offheap(h, g.old_lo, g.old_bytes);

    *before = young_used + h->frag_words;
    release_area(h->young_start, (size_t)(h->young_end - h->young_start), young_used);
    free_frags(h);

    size_t promoted = (size_t)(g.otop - old_top_before);
    size_t live = (size_t)(g.ytop - to);
    h->young_start = to;
    h->young_top = g.ytop;
    h->young_end = to + to_size;
    h->high_water = g.ytop;
    h->old_top = g.otop;
    h->minors_since_major++;
    *copied = live + promoted;
    *after = live + promoted;

    /* Shrink a young area that is mostly empty after tenuring (BEAM's
     * rule: not for small heaps, not below an eighth of the old area). */
    size_t need_after = live + need;
    size_t old_size = (size_t)(h->old_end - h->old_start);
    set_vheap_limits(h, false);
    if (need_after > to_size)
        return grow_young(h, need_after, roots);
    if (to_size > 3000 && 4 * need_after < to_size && (to_size > 8000 || to_size > old_size)) {
        size_t wanted = 3 * need_after;
        if (wanted * 9 < old_size && old_size / 8 > wanted)
            wanted = old_size / 8;
        wanted = heap_next_size(at_least_min(h, wanted), 0);
        if (wanted != 0 && wanted < to_size)
            (void)resize_young(h, wanted, roots);
    }
    return GD_OK;
}

/* Major collection (full sweep).  `exact`: leave the young area exactly
 * the live size (hibernation). */
static int major(heap_t *h, size_t need, const heap_roots_t *roots, bool exact, size_t *copied,
                 size_t *before, size_t *after)
{
    size_t young_used = (size_t)(h->young_top - h->young_start);
    size_t old_used = (size_t)(h->old_top - h->old_start);
    size_t young_size = (size_t)(h->young_end - h->young_start);
    size_t all = young_used + old_used + h->frag_words;
    if (all + need > GC_MAX_HEAP_WORDS)
        return GD_ESYSTEM_LIMIT;
    size_t to_size = heap_next_size(at_least_min(h, all), 0);
    if (to_size == young_size && (h->gc_flags & HEAP_GCF_GROW))
        to_size = heap_next_size(to_size, 1);
    term_t *to = to_size == 0 ? NULL : heap_area_alloc(to_size);
    if (to == NULL)
        return to_size == 0 ? GD_ESYSTEM_LIMIT : GD_ENOMEM;
    h->gc_flags &= ~(HEAP_GCF_GROW | HEAP_GCF_NEED_MAJOR);

    gc_t g = {
        .ytop = to,
        .to_lo = (uintptr_t)to,
        .to_bytes = to_size * sizeof(term_t),
    };
#ifdef GD_ASSERTS
    from_space_init(&g, h, true);
#endif
    copy_major(&g, roots);
#ifdef GD_ASSERTS
    from_space_free(&g);
#endif
    sweep_offheap(h, 0, 0);

    *before = all;
    release_area(h->young_start, young_size, young_used);
    release_area(h->old_start, (size_t)(h->old_end - h->old_start), old_used);
    free_frags(h);
    h->old_start = h->old_top = h->old_end = NULL;

    size_t live = (size_t)(g.ytop - to);
    h->young_start = to;
    h->young_top = g.ytop;
    h->young_end = to + to_size;
    h->high_water = g.ytop;
    h->minors_since_major = 0;
    *copied = live;
    *after = live;

    size_t need_after = live + need;
    set_vheap_limits(h, true);
    if (exact) {
        (void)resize_young(h, live, roots);
    } else if (need_after > to_size) {
        return grow_young(h, need_after, roots);
    } else if (3 * to_size < 4 * need_after) {
        /* Over 75% full: postpone growing to the next full sweep. */
        h->gc_flags |= HEAP_GCF_GROW;
    } else if (4 * need_after < to_size && to_size > h->min_words) {
        size_t wanted = heap_next_size(at_least_min(h, 2 * need_after), 0);
        if (wanted != 0 && wanted < to_size)
            (void)resize_young(h, wanted, roots);
    }
    return GD_OK;
}

static int collect(heap_t *h, size_t need, const heap_roots_t *roots, unsigned flags, bool exact)
{
    if (need > GC_MAX_HEAP_WORDS)
        return GD_ESYSTEM_LIMIT;
    if (h->max_heap_words != 0 && need > h->max_heap_words)
        return GD_EHEAP_LIMIT;

    uint64_t t0 = now_ns();
    size_t copied = 0, before = 0, after = 0;
    bool is_major =
        (flags & HEAP_GC_MAJOR) || exact || h->minors_since_major >= h->fullsweep_after ||
        (h->gc_flags & HEAP_GCF_NEED_MAJOR) || h->old_offheap_bytes > h->old_vheap_limit;
    int rc = GD_OK;
    if (!is_major) {
        rc = minor(h, need, roots, &copied, &before, &after);
        if (rc == GD_EOLD_HEAP_FULL)
            is_major = true;
    }
    if (is_major)
        rc = major(h, need, roots, exact, &copied, &before, &after);
    if (rc < 0)
        return rc; /* nothing was done */

    h->gc_flags &= ~HEAP_GCF_WANTED;
    account(h, is_major, before, after, copied, now_ns() - t0);
    if (h->max_heap_words != 0 && heap_size_words(h) > h->max_heap_words)
        return GD_EHEAP_LIMIT;
    return rc == GC_GROW_FAILED ? GD_ENOMEM : GD_OK;
}

int heap_collect(heap_t *h, size_t need, const heap_roots_t *roots, unsigned flags)
{
    return collect(h, need, roots, flags, false);
}

int heap_gc(heap_t *h, size_t need, term_t *const roots[], size_t nroots)
{
    heap_roots_t r = {roots, nroots, NULL, NULL};
    return collect(h, need, &r, 0, false);
}

int heap_ensure_free_slow(heap_t *h, size_t need, const heap_roots_t *roots)
{
    /* A heap that never allocated has nothing to collect: create its young
     * area (unless stress mode wants the collection path exercised). */
    if (h->young_start == heap_no_young_area && h->frags == NULL && h->old_start == NULL &&
        !(h->gc_flags & HEAP_GCF_STRESS)) {
        if (need > GC_MAX_HEAP_WORDS)
            return GD_ESYSTEM_LIMIT;
        if (h->max_heap_words != 0 && need > h->max_heap_words)
            return GD_EHEAP_LIMIT;
        size_t size = heap_next_size(at_least_min(h, need), 0);
        if (size == 0)
            return GD_ESYSTEM_LIMIT;
        return resize_young(h, size, roots) ? GD_OK : GD_ENOMEM;
    }
    return collect(h, need, roots, 0, false);
}

int heap_hibernate(heap_t *h, const heap_roots_t *roots)
{
    return collect(h, 0, roots, HEAP_GC_MAJOR, true);
}
