/*
 * heap.c — heap objects: the young area, overflow fragments, the off-heap
 * list of refcounted binaries, and the error-code table.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gc_internal.h"
#include "heap.h"

_Thread_local unsigned heap_malloc_fail_countdown;

const char *gd_strerror(int code)
{
    switch (code) {
    case GD_OK:
        return "ok";
    case GD_ENOMEM:
        return "out of memory";
    case GD_EINVAL:
        return "invalid argument";
    case GD_ESYSTEM_LIMIT:
        return "system limit exceeded";
    case GD_EATOM_TABLE_FULL:
        return "atom table full";
    case GD_EATOM_TOO_LONG:
        return "atom longer than 255 characters";
    case GD_EATOM_BAD_UTF8:
        return "atom text is not valid UTF-8";
    case GD_EATOM_NOT_FOUND:
        return "atom does not exist";
    case GD_EDUPLICATE_KEY:
        return "duplicate map key";
    case GD_EBADARG:
        return "bad argument";
    case GD_EAGAIN:
        return "work budget exhausted; call again";
    case GD_EHEAP_LIMIT:
        return "process heap exceeds its max_heap_size";
    case GD_EOLD_HEAP_FULL:
        return "old heap generation full";
    case GD_EALREADY:
        return "already set";
    default:
        return "unknown error";
    }
}

#ifdef GD_ASSERTS
void heap_assert_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "girder: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
#endif

heap_binary_t *heap_binary_new(size_t size)
{
    if (size > HEAP_BINARY_MAX_BYTES)
        return NULL;
    heap_binary_t *b = malloc(sizeof *b + size);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refc, 1);
    b->size = size;
    heap_thread_stats_t *t = heap_stats_self();
    heap_stat_add(t, &t->bin_bytes, size);
    return b;
}

heap_binary_t *heap_binary_resize(heap_binary_t *b, size_t size)
{
    GD_ASSERT(atomic_load_explicit(&b->refc, memory_order_relaxed) == 1);
    if (size > HEAP_BINARY_MAX_BYTES)
        return NULL;
    size_t old = b->size;
    heap_binary_t *n = realloc(b, sizeof *n + size);
    if (n == NULL)
        return NULL;
    n->size = size;
    heap_thread_stats_t *t = heap_stats_self();
    heap_stat_add(t, &t->bin_bytes, size - old); /* wraps to a decrement when shrinking */
    return n;
}

void heap_binary_unref(heap_binary_t *b)
{
    /* acq_rel: the release half orders this owner's reads/writes of the
     * data before the count drops; the acquire half lets the thread that
     * frees see every other owner's accesses as complete. */
    if (atomic_fetch_sub_explicit(&b->refc, 1, memory_order_acq_rel) == 1) {
        heap_thread_stats_t *t = heap_stats_self();
        heap_stat_add(t, &t->bin_bytes, -(uint64_t)b->size);
        free(b);
    }
}

/* The young area of a heap that has not allocated yet: zero words, so
 * heap_alloc takes the slow path, which creates the real area.  Never
 * written, never freed. */
term_t heap_no_young_area[1];

int heap_init(heap_t *h, size_t min_words)
{
    memset(h, 0, sizeof *h);
    if (min_words == 0)
        min_words = HEAP_MIN_WORDS_DEFAULT;
    min_words = heap_next_size(min_words, 0);
    if (min_words == 0)
        return GD_ESYSTEM_LIMIT;
    /* The young area comes with the first allocation: a process that
     * never allocates (a fresh waiter) costs no heap words. */
    h->young_start = h->young_top = h->young_end = h->high_water = heap_no_young_area;
    h->min_words = min_words;
    h->fullsweep_after = HEAP_FULLSWEEP_AFTER_DEFAULT;
    h->vheap_limit = GC_VHEAP_MIN_BYTES;
    h->old_vheap_limit = GC_VHEAP_MIN_BYTES;
    if (heap_gc_stress_enabled())
        h->gc_flags |= HEAP_GCF_STRESS;
    return GD_OK;
}

heap_frag_t *heap_frag_new(size_t capacity)
{
    return heap_frag_new_carry(capacity, 0);
}

static void frag_init(heap_frag_t *f, size_t capacity, size_t carry, uint32_t storage)
{
    f->carry_words = (uint32_t)carry;
    f->storage = storage;
    f->next = NULL;
    f->used = 0;
    f->capacity = capacity;
    f->offheap_first = NULL;
    f->offheap_bytes = 0;
}

heap_frag_t *heap_frag_new_msg(size_t capacity, size_t carry)
{
    if (carry > UINT32_MAX || capacity > SIZE_MAX / sizeof(term_t) - FRAG_HEADER_WORDS - carry)
        return NULL;
    size_t words = FRAG_HEADER_WORDS + capacity + carry;
    if (!heap_msg_slab_fits(words))
        return heap_frag_new_carry(capacity, carry);
    /* The same failure injection as the area allocator's, so tests of a
     * send that runs out of memory reach this path too. */
    if (GD_UNLIKELY(heap_area_fail_countdown != 0) && --heap_area_fail_countdown == 0)
        return NULL;
    heap_frag_t *f = (heap_frag_t *)heap_msg_slab_alloc(words);
    if (f == NULL)
        return heap_frag_new_carry(capacity, carry);
    frag_init(f, capacity, carry, FRAG_SLAB);
    return f;
}

heap_frag_t *heap_frag_new_carry(size_t capacity, size_t carry)
{
    if (carry > UINT32_MAX || capacity > SIZE_MAX / sizeof(term_t) - FRAG_HEADER_WORDS - carry)
        return NULL;
    /* Through the area allocator: large fragments are recycled blocks, so a
     * heap that overflows into fragments again and again (decoding big
     * terms, building large messages) does not page-fault fresh memory
     * each time. */
    heap_frag_t *f = (heap_frag_t *)heap_area_alloc(FRAG_HEADER_WORDS + capacity + carry);
    if (f == NULL)
        return NULL;
    frag_init(f, capacity, carry, FRAG_AREA);
    return f;
}

void heap_frag_release_storage(heap_frag_t *f)
{
    size_t words = FRAG_HEADER_WORDS + f->capacity + f->carry_words;
    if (f->storage == FRAG_SLAB)
        heap_msg_slab_free((term_t *)f, words);
    else
        heap_area_free((term_t *)f, words);
}

void heap_frag_free(heap_frag_t *frag)
{
    /* Every list first: a message chain's off-heap objects may lie in any
     * of its fragments. */
    for (heap_frag_t *f = frag; f != NULL; f = f->next)
        heap_offheap_release(f->offheap_first);
    for (heap_frag_t *f = frag, *next; f != NULL; f = next) {
        next = f->next;
        heap_frag_release_storage(f);
    }
}

void heap_destroy(heap_t *h)
{
    heap_offheap_release(h->offheap_first);
    heap_frag_free(h->frags);
    heap_area_free(h->young_start, (size_t)(h->young_end - h->young_start));
    heap_area_free(h->old_start, (size_t)(h->old_end - h->old_start));
    memset(h, 0, sizeof *h);
}

/* Fragments are at least this big so that many small overflow allocations
 * do not each cost a malloc. */
#define HEAP_FRAG_MIN_WORDS 1024

term_t *heap_alloc_slow(heap_t *h, size_t words)
{
    if (h->young_start == heap_no_young_area && !(h->gc_flags & HEAP_GCF_FRAGS_ONLY)) {
        size_t size = heap_next_size(words > h->min_words ? words : h->min_words, 0);
        term_t *area = size == 0 ? NULL : heap_area_alloc(size);
        if (area == NULL)
            return NULL;
        h->young_start = h->high_water = area;
        h->young_end = area + size;
        h->young_top = area + words;
        return area;
    }
    heap_frag_t *f = h->frags;
    if (f != NULL && f->capacity - f->used >= words) {
        term_t *p = f->words + f->used;
        f->used += words;
        h->frag_words += words;
        return p;
    }
    /* Grow geometrically with what the heap already holds, so building a
     * large term costs O(log n) mallocs. */
    size_t cap = heap_used_words(h) / 2;
    if (cap < HEAP_FRAG_MIN_WORDS)
        cap = HEAP_FRAG_MIN_WORDS;
    if (cap < words)
        cap = words;
    f = heap_frag_new(cap);
    if (f == NULL)
        return NULL;
    f->used = words;
    f->next = h->frags;
    h->frags = f;
    h->frag_words += words;
    h->frag_capacity += cap;
    /* Overflow as large as the young area: merge it at the next safe
     * point even if the young area still has a few words free. */
    if (h->frag_words >= (size_t)(h->young_end - h->young_start))
        h->gc_flags |= HEAP_GCF_WANTED;
    return f->words;
}

size_t heap_used_words(const heap_t *h)
{
    size_t n = (size_t)(h->young_top - h->young_start) + h->frag_words;
    if (h->old_start != NULL)
        n += (size_t)(h->old_top - h->old_start);
    return n;
}

void heap_offheap_link(heap_t *h, term_t *obj)
{
    heap_binary_t *bin = (heap_binary_t *)(uintptr_t)obj[2];
    obj[3] = (term_t)(uintptr_t)h->offheap_first;
    h->offheap_first = obj;
    h->offheap_bytes += bin->size;
}
