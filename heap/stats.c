/*
 * stats.c — node-wide statistics kept per thread: collector counters and
 * the bytes held by off-heap binaries.
 *
 * Every collection and every binary allocation or release updates a
 * node-wide sum.  With one global atomic per counter, every scheduler's
 * collections would bounce the same cache lines (five RMWs and a CAS loop
 * per collection, one RMW per binary).  Instead each thread owns a block of
 * counters: it updates them with plain relaxed loads and stores (it is the
 * only writer), and a reader adds up every block under stats_lock.
 *
 * Blocks are allocated on a thread's first update and linked into one list
 * for ever.  When the thread exits (a pthread key destructor) its block is
 * only marked free: the counts stay in the sums, and the next new thread
 * takes the block over and keeps adding to it, so the list is as long as
 * the most threads that ever updated statistics at the same time.  A thread
 * whose block cannot be allocated updates a shared block with atomic RMWs
 * instead, and tries again at its next update.
 */
#include <pthread.h>
#include <stdlib.h>

#include "gc_internal.h"

/* Every block ever allocated (next links written under stats_lock only). */
static heap_thread_stats_t *stats_list;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t stats_key;
static bool stats_key_ok;
static pthread_once_t stats_once = PTHREAD_ONCE_INIT;

heap_thread_stats_t heap_stats_shared;
_Thread_local heap_thread_stats_t *heap_stats_mine;

/* Thread exit: the block keeps its counts and becomes free for the next
 * new thread. */
static void release_block(void *p)
{
    heap_thread_stats_t *s = p;
    pthread_mutex_lock(&stats_lock);
    s->in_use = false;
    pthread_mutex_unlock(&stats_lock);
    heap_stats_mine = NULL;
}

static void make_key(void)
{
    stats_key_ok = pthread_key_create(&stats_key, release_block) == 0;
}

heap_thread_stats_t *heap_stats_attach(void)
{
    (void)pthread_once(&stats_once, make_key);
    pthread_mutex_lock(&stats_lock);
    heap_thread_stats_t *s = stats_list;
    while (s != NULL && s->in_use)
        s = s->next;
    if (s == NULL) {
        s = heap_malloc_injected_failure() ? NULL : aligned_alloc(64, sizeof *s);
        if (s != NULL) {
            memset(s, 0, sizeof *s);
            s->next = stats_list;
            stats_list = s;
        }
    }
    if (s != NULL) {
        s->in_use = true;
        /* Without the key the block is never released at thread exit: it
         * stays correct, a thread leaks one block. */
        if (stats_key_ok && pthread_setspecific(stats_key, s) != 0) {
            s->in_use = false;
            s = NULL;
        }
    }
    pthread_mutex_unlock(&stats_lock);
    if (s == NULL)
        return &heap_stats_shared;
    heap_stats_mine = s;
    return s;
}

/* Adds one block's counters into *out (pause_ns_max: the largest). */
static void add_block(const heap_thread_stats_t *s, heap_gc_stats_t *out, uint64_t *bin_bytes)
{
    /* Relaxed: statistics; nothing else is published through them. */
    out->minor_collections += atomic_load_explicit(&s->minor, memory_order_relaxed);
    out->major_collections += atomic_load_explicit(&s->major, memory_order_relaxed);
    out->words_reclaimed += atomic_load_explicit(&s->reclaimed, memory_order_relaxed);
    out->words_copied += atomic_load_explicit(&s->copied, memory_order_relaxed);
    out->pause_ns_total += atomic_load_explicit(&s->pause_total, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&s->pause_max, memory_order_relaxed);
    if (max > out->pause_ns_max)
        out->pause_ns_max = max;
    *bin_bytes += atomic_load_explicit(&s->bin_bytes, memory_order_relaxed);
}

/* Sums every block; *bin_bytes wraps like the per-block counts do. */
static void sum_blocks(heap_gc_stats_t *out, uint64_t *bin_bytes)
{
    memset(out, 0, sizeof *out);
    *bin_bytes = 0;
    pthread_mutex_lock(&stats_lock);
    add_block(&heap_stats_shared, out, bin_bytes);
    for (const heap_thread_stats_t *s = stats_list; s != NULL; s = s->next)
        add_block(s, out, bin_bytes);
    pthread_mutex_unlock(&stats_lock);
}

/*
 * Adds up every collection so far on every heap of this OS process: the
 * blocks of running threads, of exited ones, and the shared one.  O(blocks)
 * under a mutex; a collection running meanwhile may or may not be counted.
 */
void heap_gc_stats_node(heap_gc_stats_t *out)
{
    uint64_t bin_bytes;
    sum_blocks(out, &bin_bytes);
}

/* Powers of four from 1 µs to 1 s: GC pauses of small process heaps are
 * microseconds, a big major collection can take a second. */
const uint64_t heap_gc_pause_bounds_ns[HEAP_GC_PAUSE_BUCKETS - 1] = {
    1000u,    4000u,     16000u,    64000u,     256000u,    1000000u,
    4000000u, 16000000u, 64000000u, 256000000u, 1000000000u};

void heap_gc_pause_hist_node(uint64_t counts[HEAP_GC_PAUSE_BUCKETS])
{
    for (unsigned i = 0; i < HEAP_GC_PAUSE_BUCKETS; i++)
        counts[i] = atomic_load_explicit(&heap_stats_shared.pause_hist[i], memory_order_relaxed);
    pthread_mutex_lock(&stats_lock);
    for (const heap_thread_stats_t *s = stats_list; s != NULL; s = s->next)
        for (unsigned i = 0; i < HEAP_GC_PAUSE_BUCKETS; i++)
            counts[i] += atomic_load_explicit(&s->pause_hist[i], memory_order_relaxed);
    pthread_mutex_unlock(&stats_lock);
}

/*
 * Bytes of data held by every off-heap binary alive in this OS process:
 * each block counts what its thread allocated minus what it freed (modulo
 * 2^64: a binary may be freed by another thread than the one that made
 * it), so the sum is exact once the threads that touch binaries are quiet.
 * O(blocks) under a mutex.
 */
size_t heap_binary_live_bytes(void)
{
    heap_gc_stats_t ignored;
    uint64_t bin_bytes;
    sum_blocks(&ignored, &bin_bytes);
    return (size_t)bin_bytes;
}

/* Number of statistics blocks allocated so far (tests: it must follow the
 * most threads alive at once, not every thread ever started).  O(blocks). */
size_t heap_stats_block_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&stats_lock);
    for (const heap_thread_stats_t *s = stats_list; s != NULL; s = s->next)
        n++;
    pthread_mutex_unlock(&stats_lock);
    return n;
}
