/*
 * msgslab.c — memory for small message fragments (heap_msg_copy*).
 *
 * Why.  A send is one allocation (the fragment, with the queue entry riding
 * in it).  From malloc, a burst of sends (fanin: 1000 senders, 10M messages
 * queued at one receiver) touches fresh memory page by page, and on this
 * class of machine (a VM) a first-touch fault costs 2-36 µs per 4 KiB page
 * (perf: ~45% of fanin's CPU in sysmalloc/_int_malloc faults).  Here each
 * thread carves its messages out of a chunk of its own (SLAB_CHUNK_BYTES,
 * aligned to its size), mapped and pre-faulted in one go
 * (MADV_POPULATE_WRITE: measured 3x cheaper than faulting its 64 pages one
 * by one), bump-allocated without a lock or an atomic.
 *
 * Freeing.  A block is freed by whoever frees its fragment: the receiver
 * (its collector, or an unreceived message dropped), usually on another
 * thread.  The chunk's header (found by aligning the block's address down)
 * counts its live blocks: the owner pre-charges it with SLAB_PRECHARGE when
 * it starts carving, each free subtracts one (atomic, acq_rel), and the
 * owner subtracts what it did not hand out when it moves on to its next
 * chunk (or its thread exits).  Whoever brings the count to zero owns the
 * empty chunk: it goes to a node-wide pool of empty chunks (under a mutex,
 * taken once per chunk, i.e. once per ~1500 small messages), from which any
 * thread's next chunk comes, or, past SLAB_POOL_MAX chunks, back to the OS.
 * So memory freed on another thread is reused safely, and nothing grows
 * without bound: what is mapped is the live messages' chunks, one current
 * chunk per sending thread and at most SLAB_POOL_MAX pooled ones, and an
 * idle scheduler trims the pool to SLAB_POOL_IDLE_KEEP (heap_msg_slab_trim).
 *
 * The cost of the design: a chunk is returned only when its last block is
 * freed, so a message left unreceived for long keeps its whole chunk
 * (256 KiB) mapped.  A received one does not: the receiver moves a small
 * message onto its young area and frees the block at once (heap_msg_take;
 * if the young area is full, the fragment is attached and a collection
 * asked for at the next safe point).  Left to the receiver's next
 * collection, an idle process would pin its last messages' chunks for good:
 * 100k idle receivers, each message carved between others' traffic, held
 * 468 MiB of chunks for 13.7 MiB of messages (tests/sched/test_slabpin.c).  Blocks over
 * SLAB_MAX_BLOCK bytes (big messages) do not come here: they go to the area allocator as before.
 *
 * ASan builds poison freed blocks (and chunks in the pool), so a stale read
 * of a received message is still reported.
 */
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "gc_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_ASAN 1
#endif
#endif
#ifdef SLAB_ASAN
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL: faulted lazily then */
#endif

#define SLAB_CHUNK_BYTES HEAP_MSG_SLAB_CHUNK_BYTES
#define SLAB_MAX_BLOCK ((size_t)4 << 10)
#define SLAB_POOL_MAX HEAP_MSG_SLAB_POOL_MAX
#define SLAB_POOL_IDLE_KEEP HEAP_MSG_SLAB_IDLE_KEEP
/* More than any chunk can hand out, so the count cannot reach zero while
 * its owner still carves it. */
#define SLAB_PRECHARGE ((int64_t)1 << 40)

/* At the start of every chunk, on a cache line of its own: the count is
 * written by the threads that free, the blocks after it by the owner. */
typedef struct slab_chunk {
    _Atomic int64_t live;
    struct slab_chunk *next; /* in the pool (under pool_lock) */
} slab_chunk_t;
#define SLAB_HEADER_BYTES ((size_t)64)
_Static_assert(sizeof(slab_chunk_t) <= SLAB_HEADER_BYTES, "chunk header fits its line");

/* This thread's chunk being carved. */
typedef struct slab_local {
    slab_chunk_t *cur;
    char *top, *end;
    int64_t handed; /* blocks handed out of cur */
    bool registered;
} slab_local_t;
static _Thread_local slab_local_t slab;

/* Empty chunks, node-wide. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static slab_chunk_t *pool;
static size_t pool_len;
/* Chunks mapped now and ever (relaxed: statistics for tests). */
static atomic_size_t slab_mapped;
static atomic_size_t slab_maps_total;

static pthread_key_t slab_key;
static bool slab_key_ok;
static pthread_once_t slab_once = PTHREAD_ONCE_INIT;

static void chunk_unmap(slab_chunk_t *c)
{
    /* The addresses may be mapped again by anyone: no stale poison. */
    SLAB_UNPOISON(c, SLAB_CHUNK_BYTES);
    (void)munmap(c, SLAB_CHUNK_BYTES);
    atomic_fetch_sub_explicit(&slab_mapped, 1, memory_order_relaxed);
}

/* A fresh chunk, aligned to its size, its pages faulted in. */
static slab_chunk_t *chunk_map(void)
{
    size_t raw_len = 2 * SLAB_CHUNK_BYTES;
    char *raw = mmap(NULL, raw_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p =
        (char *)(((uintptr_t)raw + SLAB_CHUNK_BYTES - 1) & ~(uintptr_t)(SLAB_CHUNK_BYTES - 1));
    if (p > raw)
        (void)munmap(raw, (size_t)(p - raw));
    if (raw + raw_len > p + SLAB_CHUNK_BYTES)
        (void)munmap(p + SLAB_CHUNK_BYTES, (size_t)(raw + raw_len - (p + SLAB_CHUNK_BYTES)));
    /* Advice: without it the pages fault in as they are used. */
    (void)madvise(p, SLAB_CHUNK_BYTES, MADV_POPULATE_WRITE);
    atomic_fetch_add_explicit(&slab_mapped, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&slab_maps_total, 1, memory_order_relaxed);
    return (slab_chunk_t *)p;
}

/* An empty chunk (its last block freed, its owner gone from it): pooled
 * for the next thread that needs one, or unmapped when the pool is full. */
static void chunk_release(slab_chunk_t *c)
{
    SLAB_POISON((char *)c + SLAB_HEADER_BYTES, SLAB_CHUNK_BYTES - SLAB_HEADER_BYTES);
    pthread_mutex_lock(&pool_lock);
    bool pooled = pool_len < SLAB_POOL_MAX;
    if (pooled) {
        c->next = pool;
        pool = c;
        pool_len++;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!pooled)
        chunk_unmap(c);
}

/* Subtracts n from c's count; the one who empties it releases it.  Acq_rel:
 * every block's last use (by its freers) happens before the release. */
static void chunk_drop(slab_chunk_t *c, int64_t n)
{
    if (atomic_fetch_sub_explicit(&c->live, n, memory_order_acq_rel) == n)
        chunk_release(c);
}

/* This thread stops carving its chunk (it is full, or the thread exits). */
static void retire_current(void)
{
    slab_chunk_t *c = slab.cur;
    if (c == NULL)
        return;
    slab.cur = NULL;
    slab.top = slab.end = NULL;
    chunk_drop(c, SLAB_PRECHARGE - slab.handed);
}

static void thread_exit(void *arg)
{
    (void)arg;
    retire_current();
}

static void make_key(void)
{
    slab_key_ok = pthread_key_create(&slab_key, thread_exit) == 0;
}

/* A new chunk for this thread.  False when none can be had (or its
 * release at thread exit cannot be arranged: the caller falls back). */
static bool refill(void)
{
    if (!slab.registered) {
        (void)pthread_once(&slab_once, make_key);
        if (!slab_key_ok || pthread_setspecific(slab_key, &slab) != 0)
            return false;
        slab.registered = true;
    }
    retire_current();
    pthread_mutex_lock(&pool_lock);
    slab_chunk_t *c = pool;
    if (c != NULL) {
        pool = c->next;
        pool_len--;
    }
    pthread_mutex_unlock(&pool_lock);
    if (c == NULL)
        c = chunk_map();
    if (c == NULL)
        return false;
    atomic_store_explicit(&c->live, SLAB_PRECHARGE, memory_order_relaxed);
    slab.cur = c;
    slab.top = (char *)c + SLAB_HEADER_BYTES;
    slab.end = (char *)c + SLAB_CHUNK_BYTES;
    slab.handed = 0;
    return true;
}

term_t *heap_msg_slab_alloc(size_t words)
{
    size_t bytes = words * sizeof(term_t);
    if (words == 0 || bytes > SLAB_MAX_BLOCK)
        return NULL;
    if ((size_t)(slab.end - slab.top) < bytes && !refill())
        return NULL;
    char *p = slab.top;
    slab.top += bytes;
    slab.handed++;
    SLAB_UNPOISON(p, bytes);
    return (term_t *)p;
}

bool heap_msg_slab_fits(size_t words)
{
    return words != 0 && words <= SLAB_MAX_BLOCK / sizeof(term_t);
}

void heap_msg_slab_free(term_t *p, size_t words)
{
    slab_chunk_t *c = (slab_chunk_t *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK_BYTES - 1));
    SLAB_POISON(p, words * sizeof(term_t));
    chunk_drop(c, 1);
}

size_t heap_msg_slab_mapped_bytes(void)
{
    return atomic_load_explicit(&slab_mapped, memory_order_relaxed) * SLAB_CHUNK_BYTES;
}

size_t heap_msg_slab_maps_total(void)
{
    return atomic_load_explicit(&slab_maps_total, memory_order_relaxed);
}

void heap_msg_slab_trim(void)
{
    slab_chunk_t *c = NULL;
    pthread_mutex_lock(&pool_lock);
    while (pool_len > SLAB_POOL_IDLE_KEEP) {
        slab_chunk_t *t = pool;
        pool = t->next;
        pool_len--;
        t->next = c;
        c = t;
    }
    pthread_mutex_unlock(&pool_lock);
    while (c != NULL) {
        slab_chunk_t *next = c->next;
        chunk_unmap(c);
        c = next;
    }
}

void heap_msg_slab_thread_release(void)
{
    retire_current();
}
