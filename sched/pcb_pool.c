/*
 * pcb_pool.c — where PCBs come from: per-scheduler free lists over 2 MiB
 * chunks mapped with transparent huge pages.
 *
 * Why: spawning a million processes touched ~500 MB of fresh malloc memory,
 * one page fault per 4 KiB page, and the faults were half of the spawn
 * benchmark's time (perf: sysmalloc and the kernel's fault path; a fault
 * costs 15-55 µs on the VMs measured, a 2 MiB huge page about as much as
 * eight small ones).  A chunk asked for with MADV_HUGEPAGE takes one fault
 * for 2 MiB where the kernel grants it (THP "madvise" or "always"), and the
 * PCBs are carved from it by bumping a pointer.
 *
 * Each pool carves its own chunks and only its owner allocates from it,
 * without a lock (the shared pool, for threads that are no scheduler: a
 * spawn from outside any process, node stop, is under pool_lock).  A PCB
 * goes back to the pool that carved it: its owner pushes it on its free
 * list, any other thread on the pool's `remote` stack, which the owner
 * takes whole when its free list runs dry or it trims.  So every free PCB
 * of a chunk ends up with one owner, who can tell when all of a chunk's
 * PCBs are free.
 *
 * Returning memory.  After a burst of processes exits (1M spawned, 1M
 * gone), the chunks would otherwise stay mapped until the node stops.
 * When a scheduler idles it trims: if its pool holds at least a chunk's
 * worth more free PCBs than after its last trim, it counts the free PCBs
 * per chunk (two walks of the free list), drops those of fully free chunks
 * from the list and unmaps those chunks (the chunk being carved stays).
 * The walk is O(free PCBs), paid only after at least a chunk's worth of
 * exits and never on a busy scheduler.  A chunk with one live PCB stays
 * mapped: at worst one 2 MiB chunk per live process, but processes spawned
 * together mostly exit together, so most chunks empty whole.
 *
 * ASan builds allocate every PCB with calloc instead, so a use after free
 * is still caught.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define PCB_POOL_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PCB_POOL_MALLOC 1
#endif
#endif

#define CHUNK_BYTES ((size_t)2 << 20)
/* A PCB's slot in a chunk: cache-line multiples, so two processes running
 * on two schedulers never share a line. */
#define PCB_SLOT_BYTES ((sizeof(sched_proc_t) + 63) & ~(size_t)63)
/* PCB slots in a chunk (the first slot holds the chunk's header). */
#define CHUNK_SLOTS (CHUNK_BYTES / PCB_SLOT_BYTES - 1)

/* A chunk's first slot: its links in the node's chunk list (under
 * pool_lock), the pool that carves it, and the owner's counts. */
typedef struct pcb_chunk {
    struct pcb_chunk *next, *prev;
    pcb_pool_t *owner;            /* set before any of its PCBs is handed out */
    uint32_t carved;              /* PCBs carved so far (owner) */
    uint32_t seen;                /* free PCBs counted by a trim (owner) */
    struct pcb_chunk *empty_next; /* a trim's list of chunks to unmap (owner) */
} pcb_chunk_t;

_Static_assert(sizeof(pcb_chunk_t) <= PCB_SLOT_BYTES, "a chunk's header fits its first slot");

/* `seen` of a chunk that a trim has queued for unmapping (above any count). */
#define CHUNK_LISTED UINT32_MAX

size_t pcb_mapped_bytes(void)
{
    return atomic_load_explicit(&sched_node.pcb_chunk_count, memory_order_relaxed) * CHUNK_BYTES;
}

#ifndef PCB_POOL_MALLOC /* the pools themselves (ASan builds use calloc) */
static pcb_chunk_t *chunk_of(const sched_proc_t *p)
{
    return (pcb_chunk_t *)((uintptr_t)p & ~(uintptr_t)(CHUNK_BYTES - 1));
}

/* Maps a chunk for `owner` (2 MiB aligned, so the kernel can back it with
 * one huge page) and links it into the node's list (under pool_lock, which
 * the caller may hold already).  NULL when mapping fails. */
static pcb_chunk_t *chunk_new(pcb_pool_t *owner, bool locked)
{
    char *raw =
        mmap(NULL, 2 * CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *start = (char *)(((uintptr_t)raw + CHUNK_BYTES - 1) & ~(uintptr_t)(CHUNK_BYTES - 1));
    if (start > raw)
        (void)munmap(raw, (size_t)(start - raw));
    if (start + CHUNK_BYTES < raw + 2 * CHUNK_BYTES)
        (void)munmap(start + CHUNK_BYTES, (size_t)(raw + 2 * CHUNK_BYTES - start - CHUNK_BYTES));
    /* Advice only: without THP the chunk simply takes small pages. */
    (void)madvise(start, CHUNK_BYTES, MADV_HUGEPAGE);
    pcb_chunk_t *c = (pcb_chunk_t *)(void *)start;
    c->owner = owner;
    c->carved = 0;
    c->seen = 0;
    c->empty_next = NULL;
    c->prev = NULL;
    if (!locked)
        pthread_mutex_lock(&sched_node.pool_lock);
    c->next = sched_node.pcb_chunks;
    if (c->next != NULL)
        c->next->prev = c;
    sched_node.pcb_chunks = c;
    if (!locked)
        pthread_mutex_unlock(&sched_node.pool_lock);
    owner->chunks++;
    atomic_fetch_add_explicit(&sched_node.pcb_chunk_count, 1, memory_order_relaxed);
    return c;
}

/* Unlinks and unmaps chunk c of owner (pool_lock held by the caller if
 * `locked`). */
static void chunk_release(pcb_pool_t *owner, pcb_chunk_t *c, bool locked)
{
    if (!locked)
        pthread_mutex_lock(&sched_node.pool_lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        sched_node.pcb_chunks = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (!locked)
        pthread_mutex_unlock(&sched_node.pool_lock);
    owner->chunks--;
    atomic_fetch_sub_explicit(&sched_node.pcb_chunk_count, 1, memory_order_relaxed);
    (void)munmap(c, CHUNK_BYTES);
}

/* Moves the PCBs other threads gave back onto the owner's free list. */
static void take_remote(pcb_pool_t *pool)
{
    /* Relaxed peek; the acquire exchange pairs with the pushers' release
     * CAS (their last writes to a PCB happen before it is reused here). */
    if (atomic_load_explicit(&pool->remote, memory_order_relaxed) == NULL)
        return;
    sched_proc_t *p = atomic_exchange_explicit(&pool->remote, NULL, memory_order_acquire);
    int64_t taken = 0;
    while (p != NULL) {
        sched_proc_t *next = p->rq_next;
        p->rq_next = pool->free;
        pool->free = p;
        pool->nfree++;
        taken++;
        p = next;
    }
    atomic_fetch_sub_explicit(&pool->remote_count, taken, memory_order_relaxed);
}

/* A PCB from pool (the caller's own, or the shared one with pool_lock
 * held), or NULL when memory is short. */
static sched_proc_t *pool_take(pcb_pool_t *pool, bool shared)
{
    if (pool->free == NULL)
        take_remote(pool);
    sched_proc_t *p = pool->free;
    if (p != NULL) {
        pool->free = p->rq_next;
        pool->nfree--;
        if (pool->nfree < pool->trim_mark)
            pool->trim_mark = pool->nfree;
        return p;
    }
    if (pool->bump == NULL || pool->bump_end - pool->bump < (ptrdiff_t)PCB_SLOT_BYTES) {
        pcb_chunk_t *c = chunk_new(pool, shared);
        if (c == NULL)
            return NULL;
        /* The first slot holds the chunk's header. */
        pool->bump = (char *)c + PCB_SLOT_BYTES;
        pool->bump_end = (char *)c + CHUNK_BYTES;
    }
    p = (sched_proc_t *)(void *)pool->bump;
    pool->bump += PCB_SLOT_BYTES;
    chunk_of(p)->carved++;
    return p;
}

/* Unmaps pool's fully free chunks (see the top of the file) and returns
 * how many.  The caller owns pool (the shared one: with pool_lock held,
 * `locked`). */
static size_t pool_trim(pcb_pool_t *pool, bool locked)
{
    take_remote(pool);
    if (pool->nfree < pool->trim_mark + CHUNK_SLOTS)
        return 0;
    /* The chunk being carved stays: its uncarved slots are not counted. */
    pcb_chunk_t *carving =
        pool->bump != NULL ? chunk_of((sched_proc_t *)(void *)(pool->bump - 1)) : NULL;
    for (sched_proc_t *p = pool->free; p != NULL; p = p->rq_next)
        chunk_of(p)->seen = 0;
    for (sched_proc_t *p = pool->free; p != NULL; p = p->rq_next)
        chunk_of(p)->seen++;
    /* Keep the PCBs of chunks that stay; unlink those of empty chunks and
     * queue each empty chunk once. */
    sched_proc_t **link = &pool->free;
    pcb_chunk_t *empty = NULL;
    while (*link != NULL) {
        sched_proc_t *p = *link;
        pcb_chunk_t *c = chunk_of(p);
        bool listed = c->seen == CHUNK_LISTED;
        if (c == carving || (!listed && c->seen != c->carved)) {
            link = &p->rq_next;
            continue;
        }
        *link = p->rq_next;
        pool->nfree--;
        if (!listed) {
            c->seen = CHUNK_LISTED;
            c->empty_next = empty;
            empty = c;
        }
    }
    size_t released = 0;
    while (empty != NULL) {
        pcb_chunk_t *next = empty->empty_next;
        chunk_release(pool, empty, locked);
        empty = next;
        released++;
    }
    pool->trim_mark = pool->nfree;
    return released;
}
#endif

sched_proc_t *pcb_alloc(void)
{
#ifdef PCB_POOL_MALLOC
    return calloc(1, sizeof(sched_proc_t));
#else
    runq_t *rq = sched_this_rq();
    sched_proc_t *p;
    if (rq != NULL) {
        p = pool_take(&rq->pcbs, false);
    } else {
        pthread_mutex_lock(&sched_node.pool_lock);
        p = pool_take(&sched_node.shared_pool, true);
        pthread_mutex_unlock(&sched_node.pool_lock);
    }
    if (p != NULL)
        memset(p, 0, sizeof *p);
    return p;
#endif
}

void pcb_free(sched_proc_t *p)
{
#ifdef PCB_POOL_MALLOC
    free(p);
#else
    pcb_pool_t *owner = chunk_of(p)->owner;
    runq_t *rq = sched_this_rq();
    if (rq != NULL && owner == &rq->pcbs) {
        p->rq_next = owner->free;
        owner->free = p;
        owner->nfree++;
        return;
    }
    if (owner == &sched_node.shared_pool) {
        pthread_mutex_lock(&sched_node.pool_lock);
        p->rq_next = owner->free;
        owner->free = p;
        owner->nfree++;
        pthread_mutex_unlock(&sched_node.pool_lock);
        return;
    }
    /* Another scheduler's PCB: onto its remote stack (relaxed first guess;
     * release publishes p's last writes to the owner's acquire exchange). */
    sched_proc_t *head = atomic_load_explicit(&owner->remote, memory_order_relaxed);
    do
        p->rq_next = head;
    while (!atomic_compare_exchange_weak_explicit(&owner->remote, &head, p, memory_order_release,
                                                  memory_order_relaxed));
    /* A chunk's worth waiting: an owner asleep would never take them (it
     * trims when it idles), so it is woken once, as the count gets there;
     * one about to sleep sees the count under its lock (trim_due). */
    if (atomic_fetch_add_explicit(&owner->remote_count, 1, memory_order_relaxed) + 1 ==
        (int64_t)CHUNK_SLOTS)
        (void)rq_wake_sleeper((runq_t *)(void *)((char *)owner - offsetof(runq_t, pcbs)));
#endif
}

bool pcb_pool_trim_due(runq_t *rq)
{
#ifdef PCB_POOL_MALLOC
    (void)rq;
    return false;
#else
    return atomic_load_explicit(&rq->pcbs.remote_count, memory_order_relaxed) >=
           (int64_t)CHUNK_SLOTS;
#endif
}

size_t pcb_pool_trim(runq_t *rq)
{
#ifndef PCB_POOL_MALLOC
    size_t released = pool_trim(&rq->pcbs, false);
    /* The shared pool has no owner to come back to it: whoever idles
     * waits its turn (a trylock let a scheduler that freed the last PCBs
     * of a chunk there while another trimmed skip it, the chunk mapped
     * until some scheduler idled again). */
    pthread_mutex_lock(&sched_node.pool_lock);
    released += pool_trim(&sched_node.shared_pool, true);
    pthread_mutex_unlock(&sched_node.pool_lock);
    return released;
#else
    (void)rq;
    return 0;
#endif
}

void pcb_pools_free(void)
{
    pcb_chunk_t *c = sched_node.pcb_chunks;
    while (c != NULL) {
        pcb_chunk_t *next = c->next;
        (void)munmap(c, CHUNK_BYTES);
        c = next;
    }
    sched_node.pcb_chunks = NULL;
    atomic_store_explicit(&sched_node.pcb_chunk_count, 0, memory_order_relaxed);
}
