/*
 * area.c — memory for young and old heap areas.
 *
 * Small areas (most processes) come from malloc.  Large ones are mapped
 * directly and recycled through a small per-thread cache: on this class of
 * machine first-touch page faults cost 2-4 µs per 4 KiB page (16 MiB:
 * ~10 ms) and unmapping 16 MiB 1-5 ms, far more than copying the live data,
 * so a collector that takes a fresh to-space and drops the from-space
 * every time would spend its pauses in the kernel.  A process that
 * collects repeatedly at a stable size reuses the block it freed at its
 * previous collection.  Areas of 4 MiB and more are 2 MiB-aligned; with
 * GIRDER_GC_HUGEPAGES=1 in the environment they are also offered
 * transparent huge pages (madvise: 512 times fewer faults, 16 MiB in
 * ~0.3 ms, but a fault may stall 30 ms in the kernel's direct compaction
 * when memory is fragmented, so it is not the default).
 *
 * Bounds.  A thread's cache holds at most AREA_CACHE_SLOTS blocks and
 * AREA_CACHE_MAX_BYTES (128 MiB), and blocks over half of that are never
 * cached (a to-space that big is rare, and its faults are a small part of
 * copying it).  128 MiB is what one process cycling a 10 MiB live heap
 * through its growth sizes reuses (tests/bench/gc peaks at 130 MiB).  All
 * caches together hold at most the larger of AREA_NODE_CACHE_MIN_BYTES
 * (128 MiB) and half the mapped areas in use: a node whose heaps are big
 * may keep a to-space per collecting thread, and when the node shrinks
 * (its big heaps freed or collected smaller) the excess goes back to the
 * OS at once, oldest blocks first, from whichever thread's cache holds
 * them, so an idle thread cannot sit on freed memory (before: up to 192
 * MiB per thread, for as long as the thread lived).
 * Each cache has a mutex (uncontended except while another thread trims
 * it: only mapped areas of 256 KiB and more come here, so the lock is noise
 * next to the memory traffic), and the caches are linked in one list for
 * the trimming and drained when their thread exits.
 *
 * ASan builds use malloc for every size, so a stale read of a collected
 * area is reported as a use after free.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gc_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define AREA_ALWAYS_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AREA_ALWAYS_MALLOC 1
#endif
#endif

/* Below this, malloc (glibc keeps such chunks in its own free lists). */
#define AREA_MAP_BYTES ((size_t)256 << 10)
/* From this size on, align to and advise huge pages. */
#define AREA_HUGE_BYTES ((size_t)4 << 20)
#define AREA_HUGE_ALIGN ((size_t)2 << 20)
/* Per-thread cache of freed mapped blocks. */
#define AREA_CACHE_SLOTS 24
#define AREA_CACHE_MAX_BYTES ((size_t)128 << 20)
/* Node-wide: the caches together may hold the larger of this and half the
 * mapped bytes in use. */
#define AREA_NODE_CACHE_MIN_BYTES ((size_t)128 << 20)

/* True if an area of `words` is mapped (and cached) rather than malloc'd. */
static bool is_mapped(size_t words)
{
#ifdef AREA_ALWAYS_MALLOC
    (void)words;
    return false;
#else
    return words * sizeof(term_t) >= AREA_MAP_BYTES;
#endif
}

/* Bytes in every thread's cache.  Relaxed: it steers the trimming policy
 * only; the blocks themselves are handed over under the cache mutexes. */
static atomic_size_t area_cached_bytes;

size_t heap_area_cached_bytes(void)
{
    return atomic_load_explicit(&area_cached_bytes, memory_order_relaxed);
}

#ifndef AREA_ALWAYS_MALLOC
/* Bytes of mapped areas handed out and not freed (relaxed, as above). */
static atomic_size_t area_live_bytes;

/* Freed mapped blocks, in the order they were freed (seq: a node-wide
 * stamp, for trimming the oldest first). */
typedef struct area_cache {
    pthread_mutex_t lock;
    void *block[AREA_CACHE_SLOTS];
    size_t len[AREA_CACHE_SLOTS];
    uint64_t seq[AREA_CACHE_SLOTS];
    int n;
    size_t total;
    struct area_cache *next; /* under caches_lock */
    bool registered;         /* owner only */
} area_cache_t;

static _Thread_local area_cache_t area_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_key_t area_cache_key;
static bool area_cache_key_ok;
static pthread_once_t area_cache_once = PTHREAD_ONCE_INIT;
/* Every registered cache; lock order: caches_lock, then a cache's lock. */
static area_cache_t *caches;
static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
/* Relaxed: a stamp only needs to be unique and increasing. */
static atomic_uint_fast64_t area_seq;

/* The length actually mapped for an area of `bytes`. */
static size_t mapped_length(size_t bytes)
{
    size_t align = bytes >= AREA_HUGE_BYTES ? AREA_HUGE_ALIGN : (size_t)4096;
    return (bytes + align - 1) & ~(align - 1);
}

static void unmap_block(void *p, size_t len)
{
    (void)munmap(p, len);
}

/* -1 until read from the environment; then 0 or 1.  Relaxed: a flag whose
 * racing first readers compute the same value. */
static atomic_int area_hugepages = -1;

static bool want_hugepages(void)
{
    int v = atomic_load_explicit(&area_hugepages, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("GIRDER_GC_HUGEPAGES");
        v = env != NULL && env[0] == '1';
        atomic_store_explicit(&area_hugepages, v, memory_order_relaxed);
    }
    return v != 0;
}

/* Takes entry i out of cache c (locked). */
static void cache_remove(area_cache_t *c, int i)
{
    c->total -= c->len[i];
    atomic_fetch_sub_explicit(&area_cached_bytes, c->len[i], memory_order_relaxed);
    for (int k = i + 1; k < c->n; k++) {
        c->block[k - 1] = c->block[k];
        c->len[k - 1] = c->len[k];
        c->seq[k - 1] = c->seq[k];
    }
    c->n--;
}

/* Thread exit: unlink the cache and give its blocks back to the system. */
static void drain_cache(void *arg)
{
    area_cache_t *c = arg;
    pthread_mutex_lock(&caches_lock);
    for (area_cache_t **link = &caches; *link != NULL; link = &(*link)->next) {
        if (*link == c) {
            *link = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&caches_lock);
    pthread_mutex_lock(&c->lock);
    while (c->n > 0) {
        unmap_block(c->block[0], c->len[0]);
        cache_remove(c, 0);
    }
    c->registered = false;
    pthread_mutex_unlock(&c->lock);
}

static void make_key(void)
{
    area_cache_key_ok = pthread_key_create(&area_cache_key, drain_cache) == 0;
}

/* Once per thread: link the cache into the list and drain it when the
 * thread exits.  False if that cannot be arranged (then nothing is cached:
 * a cache nobody drains would outlive its thread's memory). */
static bool register_cache(void)
{
    (void)pthread_once(&area_cache_once, make_key);
    if (!area_cache_key_ok || pthread_setspecific(area_cache_key, &area_cache) != 0)
        return false;
    pthread_mutex_lock(&caches_lock);
    area_cache.next = caches;
    caches = &area_cache;
    pthread_mutex_unlock(&caches_lock);
    area_cache.registered = true;
    return true;
}

/* What all caches together may hold now. */
static size_t node_cache_limit(void)
{
    size_t half_live = atomic_load_explicit(&area_live_bytes, memory_order_relaxed) / 2;
    return half_live > AREA_NODE_CACHE_MIN_BYTES ? half_live : AREA_NODE_CACHE_MIN_BYTES;
}

/* Unmaps the oldest cached blocks of any thread until the caches are
 * within the node-wide limit.  Each step is O(threads * slots) under
 * caches_lock; the unmapping happens outside every lock. */
static void trim_node(void)
{
    while (atomic_load_explicit(&area_cached_bytes, memory_order_relaxed) > node_cache_limit()) {
        void *victim = NULL;
        size_t victim_len = 0;
        pthread_mutex_lock(&caches_lock);
        area_cache_t *best = NULL;
        uint64_t best_seq = UINT64_MAX;
        for (area_cache_t *c = caches; c != NULL; c = c->next) {
            pthread_mutex_lock(&c->lock);
            if (c->n > 0 && c->seq[0] < best_seq) {
                best = c;
                best_seq = c->seq[0];
            }
            pthread_mutex_unlock(&c->lock);
        }
        if (best != NULL) {
            pthread_mutex_lock(&best->lock);
            /* Entries are in stamp order: [0] is the cache's oldest (it
             * may have been taken meanwhile; then its next one goes). */
            if (best->n > 0) {
                victim = best->block[0];
                victim_len = best->len[0];
                cache_remove(best, 0);
            }
            pthread_mutex_unlock(&best->lock);
        }
        pthread_mutex_unlock(&caches_lock);
        if (best == NULL)
            return;
        if (victim != NULL)
            unmap_block(victim, victim_len);
    }
}

static void *map_block(size_t len)
{
    if (len < AREA_HUGE_BYTES) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* Over-map by the alignment and trim both ends, so the block starts on
     * a huge-page boundary. */
    size_t raw_len = len + AREA_HUGE_ALIGN;
    char *raw = mmap(NULL, raw_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + AREA_HUGE_ALIGN - 1) & ~(uintptr_t)(AREA_HUGE_ALIGN - 1));
    if (p > raw)
        unmap_block(raw, (size_t)(p - raw));
    if (raw + raw_len > p + len)
        unmap_block(p + len, (size_t)(raw + raw_len - (p + len)));
    /* Advice only: without huge pages the block still works. */
    if (want_hugepages())
        (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

/* A cached block of exactly len bytes from this thread's cache, or NULL. */
static void *cache_take(size_t len)
{
    void *p = NULL;
    pthread_mutex_lock(&area_cache.lock);
    for (int i = area_cache.n - 1; i >= 0; i--) {
        if (area_cache.len[i] == len) {
            p = area_cache.block[i];
            cache_remove(&area_cache, i);
            break;
        }
    }
    pthread_mutex_unlock(&area_cache.lock);
    return p;
}

/* Keeps a freed block in this thread's cache (or unmaps it), then brings
 * the node back within its limit. */
static void cache_put(void *p, size_t len)
{
    if (len > AREA_CACHE_MAX_BYTES / 2 || (!area_cache.registered && !register_cache())) {
        unmap_block(p, len);
        trim_node();
        return;
    }
    void *evicted[AREA_CACHE_SLOTS + 1];
    size_t evicted_len[AREA_CACHE_SLOTS + 1];
    int nevicted = 0;
    pthread_mutex_lock(&area_cache.lock);
    /* Full: drop the smallest blocks first.  Faulting a block back in
     * costs in proportion to its size, so the big ones are the ones worth
     * keeping (a process cycling through its growth sizes finds its
     * expensive ones here next time). */
    while (area_cache.n == AREA_CACHE_SLOTS || area_cache.total + len > AREA_CACHE_MAX_BYTES) {
        int smallest = 0;
        for (int i = 1; i < area_cache.n; i++)
            if (area_cache.len[i] < area_cache.len[smallest])
                smallest = i;
        evicted[nevicted] = area_cache.block[smallest];
        evicted_len[nevicted++] = area_cache.len[smallest];
        cache_remove(&area_cache, smallest);
    }
    area_cache.block[area_cache.n] = p;
    area_cache.len[area_cache.n] = len;
    area_cache.seq[area_cache.n] = atomic_fetch_add_explicit(&area_seq, 1, memory_order_relaxed);
    area_cache.n++;
    area_cache.total += len;
    atomic_fetch_add_explicit(&area_cached_bytes, len, memory_order_relaxed);
    pthread_mutex_unlock(&area_cache.lock);
    for (int i = 0; i < nevicted; i++)
        unmap_block(evicted[i], evicted_len[i]);
    trim_node();
}
#endif

_Thread_local unsigned heap_area_fail_countdown;

term_t *heap_area_alloc(size_t words)
{
    if (words == 0 || words > GC_MAX_HEAP_WORDS)
        return NULL;
    if (GD_UNLIKELY(heap_area_fail_countdown != 0) && --heap_area_fail_countdown == 0)
        return NULL;
#ifndef AREA_ALWAYS_MALLOC
    if (is_mapped(words)) {
        size_t len = mapped_length(words * sizeof(term_t));
        void *p = cache_take(len);
        if (p == NULL)
            p = map_block(len);
        if (p != NULL)
            atomic_fetch_add_explicit(&area_live_bytes, len, memory_order_relaxed);
        return p;
    }
#endif
    return malloc(words * sizeof(term_t));
}

void heap_area_free(term_t *p, size_t words)
{
    if (p == NULL || p == heap_no_young_area)
        return;
#ifndef AREA_ALWAYS_MALLOC
    if (is_mapped(words)) {
        size_t len = mapped_length(words * sizeof(term_t));
        atomic_fetch_sub_explicit(&area_live_bytes, len, memory_order_relaxed);
        cache_put(p, len);
        return;
    }
#endif
    free(p);
}
term_t *heap_area_resize(term_t *p, size_t old_words, size_t new_words, size_t keep_words)
{
    if (p == NULL || p == heap_no_young_area)
        return heap_area_alloc(new_words);
    if (new_words == 0 || new_words > GC_MAX_HEAP_WORDS)
        return NULL;
    if (!is_mapped(old_words) && !is_mapped(new_words)) {
        if (GD_UNLIKELY(heap_area_fail_countdown != 0) && --heap_area_fail_countdown == 0)
            return NULL;
        return realloc(p, new_words * sizeof(term_t));
    }
    term_t *q = heap_area_alloc(new_words);
    if (q == NULL)
        return NULL;
    memcpy(q, p, keep_words * sizeof(term_t));
    heap_area_free(p, old_words);
    return q;
}
