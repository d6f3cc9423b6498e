/*
 * gc_internal.h — what the collector (gc.c), the copier (copy.c), messages
 * (message.c), heap.c and the other heap/ files share inside heap/ and
 * nobody else needs (tests reach the failure-injection counters).
 */
#ifndef GIRDER_HEAP_GC_INTERNAL_H
#define GIRDER_HEAP_GC_INTERNAL_H

#include <stdlib.h>

#include "heap.h"

/* Allocation-failure injection for tests: when non-zero, each
 * heap_xmalloc / heap_xcalloc / heap_xrealloc on this thread (the atom
 * table, the compare and hash work stacks) counts it down and the one that
 * brings it to zero fails.  A thread-local load per malloc: free next to
 * the malloc itself, so it is on in every build and tests run it in all. */
extern _Thread_local unsigned heap_malloc_fail_countdown;
static inline bool heap_malloc_injected_failure(void)
{
    return GD_UNLIKELY(heap_malloc_fail_countdown != 0) && --heap_malloc_fail_countdown == 0;
}
static inline void *heap_xmalloc(size_t n)
{
    return heap_malloc_injected_failure() ? NULL : malloc(n);
}
static inline void *heap_xcalloc(size_t n, size_t size)
{
    return heap_malloc_injected_failure() ? NULL : calloc(n, size);
}
static inline void *heap_xrealloc(void *p, size_t n)
{
    return heap_malloc_injected_failure() ? NULL : realloc(p, n);
}

/* ------------------------------------------------------------------------ */
/* Node-wide statistics, per thread (stats.c)                               */

/*
 * One thread's share of the node-wide statistics.  Only the owning thread
 * writes it (relaxed load and store, no RMW: the line stays in the owner's
 * cache); readers on other threads load it relaxed while summing.  On its
 * own cache line so that two threads' blocks never share one.
 */
typedef struct heap_thread_stats {
    _Atomic uint64_t minor, major, reclaimed, copied, pause_total, pause_max;
    /* Binary bytes allocated minus freed by this thread, modulo 2^64. */
    _Atomic uint64_t bin_bytes;
    /* Collections by pause (heap_gc_pause_bounds_ns). */
    _Atomic uint64_t pause_hist[HEAP_GC_PAUSE_BUCKETS];
    struct heap_thread_stats *next; /* every block; under stats.c's lock */
    bool in_use;                    /* owned by a live thread; under the lock */
} __attribute__((aligned(64))) heap_thread_stats_t;

/* The calling thread's block, or NULL before its first update. */
extern _Thread_local heap_thread_stats_t *heap_stats_mine;
/* The block of threads whose own block could not be allocated: updated
 * with atomic RMWs. */
extern heap_thread_stats_t heap_stats_shared;

/* Gives the calling thread a block (a free one or a new one) and returns
 * it; &heap_stats_shared when none can be allocated.  Takes a mutex. */
heap_thread_stats_t *heap_stats_attach(void);

/* Number of blocks allocated so far (tests). */
size_t heap_stats_block_count(void);

/* The calling thread's block, attaching one on first use. */
static inline heap_thread_stats_t *heap_stats_self(void)
{
    heap_thread_stats_t *s = heap_stats_mine;
    return GD_LIKELY(s != NULL) ? s : heap_stats_attach();
}

/* Adds v (modulo 2^64) to counter c of block s.  Relaxed: statistics, no
 * other memory is published through them.  A plain load and store on the
 * thread's own block; an RMW on the shared one. */
static inline void heap_stat_add(heap_thread_stats_t *s, _Atomic uint64_t *c, uint64_t v)
{
    if (GD_UNLIKELY(s == &heap_stats_shared))
        atomic_fetch_add_explicit(c, v, memory_order_relaxed);
    else
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                              memory_order_relaxed);
}

/* Raises counter c of block s to v if v is larger (relaxed, as above). */
/* The pause histogram bucket of a pause of ns nanoseconds: a scan of 11
 * bounds, next to a collection's cost. */
static inline unsigned heap_pause_bucket(uint64_t ns)
{
    unsigned i = 0;
    while (i < HEAP_GC_PAUSE_BUCKETS - 1 && ns > heap_gc_pause_bounds_ns[i])
        i++;
    return i;
}

static inline void heap_stat_max(heap_thread_stats_t *s, _Atomic uint64_t *c, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(c, memory_order_relaxed);
    if (GD_LIKELY(s != &heap_stats_shared)) {
        if (v > cur)
            atomic_store_explicit(c, v, memory_order_relaxed);
        return;
    }
    while (v > cur && !atomic_compare_exchange_weak_explicit(c, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

/* The zero-word young area of a heap that has not allocated yet (heap.c). */
extern term_t heap_no_young_area[1];

/* Largest heap (words): BEAM's 2^53 bytes. */
#define GC_MAX_HEAP_WORDS ((size_t)1 << 50)

/* Off-heap binary bytes a generation may hold before a collection is due
 * (BEAM's default bin_vheap_size, 46422 words). */
#define GC_VHEAP_MIN_BYTES ((size_t)46422 * sizeof(term_t))

/* Where the copier writes: words [hp, hend), REFC_BIN copies linked on
 * *offheap_first with their bytes added to *offheap_bytes. */
typedef struct heap_copy_dest {
    term_t *hp;
    term_t *hend;
    term_t **offheap_first;
    size_t *offheap_bytes;
} heap_copy_dest_t;

/*
 * Sizes the copy of the n terms in terms[] (walked as one copy, so sharing
 * between them is seen as within one term) into *words.  Errors:
 * GD_ESYSTEM_LIMIT past HEAP_COPY_MAX_WORDS, GD_ENOMEM for the walk stack.
 */
int heap_copy_size_n(const term_t *terms, size_t n, size_t *words) GD_MUST_CHECK;

/*
 * Copies the n terms into dest (exactly the words heap_copy_size_n gave),
 * writing the copies to outs[0..n).  Errors: GD_ENOMEM for the walk stack,
 * GD_EINVAL if the terms changed since they were sized (a caller bug).
 */
int heap_copy_write_n(const term_t *terms, size_t n, term_t *outs,
                      heap_copy_dest_t *dest) GD_MUST_CHECK;

/* Heap areas (area.c).  heap_area_alloc returns `words` uninitialised
 * words or NULL; heap_area_free takes the same word count back (NULL and
 * heap_no_young_area are ignored); heap_area_resize moves or resizes an
 * area keeping its first keep_words words (NULL on failure, the old area
 * intact then), returning a new address or the same one. */
term_t *heap_area_alloc(size_t words);
/* Allocation-failure injection for tests: when non-zero, each
 * heap_area_alloc on this thread counts it down and the one that brings it
 * to zero fails. */
extern _Thread_local unsigned heap_area_fail_countdown;
void heap_area_free(term_t *p, size_t words);
term_t *heap_area_resize(term_t *p, size_t old_words, size_t new_words, size_t keep_words);
/* Bytes of freed mapped areas the threads' caches keep for reuse (at most
 * the larger of 128 MiB and half the mapped areas in use; see area.c). */
size_t heap_area_cached_bytes(void);

/* A fragment with room for `capacity` words, none used, from the area
 * allocator (NULL when memory is exhausted); heap_frag_release_storage
 * gives its memory back without touching its off-heap list. */
heap_frag_t *heap_frag_new(size_t capacity);
/* As heap_frag_new with `carry` more words after words[capacity]. */
heap_frag_t *heap_frag_new_carry(size_t capacity, size_t carry);
void heap_frag_release_storage(heap_frag_t *f);
/* As heap_frag_new_carry for a message body: small ones from this
 * thread's message slab (msgslab.c), the others from the area allocator. */
heap_frag_t *heap_frag_new_msg(size_t capacity, size_t carry);

/* heap_frag_t.storage: where the fragment's block came from. */
enum { FRAG_AREA = 0, FRAG_SLAB = 1 };
/* Words of a fragment's header (heap_frag_t before its words[]). */
#define FRAG_HEADER_WORDS ((sizeof(heap_frag_t) + sizeof(term_t) - 1) / sizeof(term_t))

/* msgslab.c: chunk size, how many empty chunks the pool keeps, and how
 * many it keeps after heap_msg_slab_trim (a scheduler waking up to send
 * finds a chunk without mapping and faulting one: ~0.75 ms here). */
#define HEAP_MSG_SLAB_CHUNK_BYTES ((size_t)256 << 10)
#define HEAP_MSG_SLAB_POOL_MAX 16
#define HEAP_MSG_SLAB_IDLE_KEEP 2
/* Chunks mapped since the process started (tests: reuse means few). */
size_t heap_msg_slab_maps_total(void);
/* msgslab.c: a block of `words` from this thread's slab; NULL when it does
 * not fit a slab block (heap_msg_slab_fits) or no chunk can be had.  Freed
 * with heap_msg_slab_free from any thread. */
term_t *heap_msg_slab_alloc(size_t words);
bool heap_msg_slab_fits(size_t words);
void heap_msg_slab_free(term_t *p, size_t words);

/* Drops the binary references of a chain of REFC_BIN objects linked through
 * their next word. */
void heap_offheap_release(term_t *first);

/* The next REFC_BIN object on an off-heap chain. */
static inline term_t *offheap_next(const term_t *obj)
{
    return (term_t *)(uintptr_t)obj[3];
}
static inline void offheap_set_next(term_t *obj, const term_t *next)
{
    obj[3] = (term_t)(uintptr_t)next;
}
static inline heap_binary_t *offheap_binary(const term_t *obj)
{
    return (heap_binary_t *)(uintptr_t)obj[2];
}

#endif /* GIRDER_HEAP_GC_INTERNAL_H */
