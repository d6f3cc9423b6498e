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
#define AREA_CACHE_SLOTS 16
#define AREA_CACHE_MAX_BYTES ((size_t)192 << 20)

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

#ifndef AREA_ALWAYS_MALLOC
/* Freed mapped blocks, in the order they were freed. */
typedef struct area_cache {
    void *block[AREA_CACHE_SLOTS];
    size_t len[AREA_CACHE_SLOTS];
    int n;
    size_t total;
} area_cache_t;

static _Thread_local area_cache_t area_cache;
static _Thread_local bool area_cache_registered;
static pthread_key_t area_cache_key;
static pthread_once_t area_cache_once = PTHREAD_ONCE_INIT;

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

static void cache_remove(int i)
{
    area_cache.total -= area_cache.len[i];
    for (int k = i + 1; k < area_cache.n; k++) {
        area_cache.block[k - 1] = area_cache.block[k];
        area_cache.len[k - 1] = area_cache.len[k];
    }
    area_cache.n--;
}

/* Thread exit: give the cached blocks back to the system. */
static void drain_cache(void *unused)
{
    (void)unused;
    while (area_cache.n > 0) {
        unmap_block(area_cache.block[0], area_cache.len[0]);
        cache_remove(0);
    }
}

static void make_key(void)
{
    (void)pthread_key_create(&area_cache_key, drain_cache);
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
        for (int i = area_cache.n - 1; i >= 0; i--) {
            if (area_cache.len[i] == len) {
                void *p = area_cache.block[i];
                cache_remove(i);
                return p;
            }
        }
        return map_block(len);
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
        if (len > AREA_CACHE_MAX_BYTES / 2) {
            unmap_block(p, len);
            return;
        }
        if (!area_cache_registered) {
            /* Once per thread: drain the cache when the thread exits. */
            (void)pthread_once(&area_cache_once, make_key);
            (void)pthread_setspecific(area_cache_key, &area_cache);
            area_cache_registered = true;
        }
        /* Full: drop the smallest blocks first.  Faulting a block back in
         * costs in proportion to its size, so the big ones are the ones
         * worth keeping (a process cycling through its growth sizes finds
         * its expensive ones here next time). */
        while (area_cache.n == AREA_CACHE_SLOTS || area_cache.total + len > AREA_CACHE_MAX_BYTES) {
            int smallest = 0;
            for (int i = 1; i < area_cache.n; i++)
                if (area_cache.len[i] < area_cache.len[smallest])
                    smallest = i;
            unmap_block(area_cache.block[smallest], area_cache.len[smallest]);
            cache_remove(smallest);
        }
        area_cache.block[area_cache.n] = p;
        area_cache.len[area_cache.n] = len;
        area_cache.n++;
        area_cache.total += len;
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
