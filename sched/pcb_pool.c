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
 * Each scheduler allocates from and frees to its own pool without a lock
 * (reaping runs on schedulers).  Other threads (a spawn from outside any
 * process, node stop) use a shared pool under a mutex.  A pool whose free
 * list grows beyond POOL_FREE_MAX (a scheduler that reaps what another
 * spawns) hands a batch to the shared pool, and an empty one takes a batch
 * from there before it carves new memory, so no pool hoards PCBs while
 * another maps more.  Chunks are unmapped when the node stops; until then
 * PCB memory is kept for reuse (as glibc would keep most of it too).
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
/* Free PCBs a pool keeps before handing POOL_BATCH to the shared pool. */
#define POOL_FREE_MAX 2048
#define POOL_BATCH 1024

/* A chunk's first slot holds its link in the node's chunk list. */
typedef struct pcb_chunk {
    struct pcb_chunk *next;
} pcb_chunk_t;

/* Maps a chunk (2 MiB aligned, so the kernel can back it with one huge
 * page) and links it into the node's list (under pool_lock, which the
 * caller may hold already).  NULL when mapping fails. */
static pcb_chunk_t *chunk_new(bool locked)
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
    if (!locked)
        pthread_mutex_lock(&sched_node.pool_lock);
    c->next = sched_node.pcb_chunks;
    sched_node.pcb_chunks = c;
    if (!locked)
        pthread_mutex_unlock(&sched_node.pool_lock);
    return c;
}

/* Moves up to POOL_BATCH free PCBs from `from` to `to` (both pools held by
 * the caller: its own, and the shared one under pool_lock). */
static void move_batch(pcb_pool_t *from, pcb_pool_t *to)
{
    for (unsigned i = 0; i < POOL_BATCH && from->free != NULL; i++) {
        sched_proc_t *p = from->free;
        from->free = p->rq_next;
        from->nfree--;
        p->rq_next = to->free;
        to->free = p;
        to->nfree++;
    }
}

/* A PCB from pool (the caller's own, or the shared one with pool_lock
 * held), or NULL when memory is short. */
static sched_proc_t *pool_take(pcb_pool_t *pool, bool shared)
{
    if (pool->free == NULL && !shared) {
        pthread_mutex_lock(&sched_node.pool_lock);
        move_batch(&sched_node.shared_pool, pool);
        pthread_mutex_unlock(&sched_node.pool_lock);
    }
    sched_proc_t *p = pool->free;
    if (p != NULL) {
        pool->free = p->rq_next;
        pool->nfree--;
        return p;
    }
    if (pool->bump == NULL || pool->bump_end - pool->bump < (ptrdiff_t)PCB_SLOT_BYTES) {
        pcb_chunk_t *c = chunk_new(shared);
        if (c == NULL)
            return NULL;
        /* The first slot holds the chunk's link. */
        pool->bump = (char *)c + PCB_SLOT_BYTES;
        pool->bump_end = (char *)c + CHUNK_BYTES;
    }
    p = (sched_proc_t *)(void *)pool->bump;
    pool->bump += PCB_SLOT_BYTES;
    return p;
}

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
    runq_t *rq = sched_this_rq();
    if (rq == NULL) {
        pthread_mutex_lock(&sched_node.pool_lock);
        p->rq_next = sched_node.shared_pool.free;
        sched_node.shared_pool.free = p;
        sched_node.shared_pool.nfree++;
        pthread_mutex_unlock(&sched_node.pool_lock);
        return;
    }
    pcb_pool_t *pool = &rq->pcbs;
    p->rq_next = pool->free;
    pool->free = p;
    if (++pool->nfree > POOL_FREE_MAX) {
        pthread_mutex_lock(&sched_node.pool_lock);
        move_batch(pool, &sched_node.shared_pool);
        pthread_mutex_unlock(&sched_node.pool_lock);
    }
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
}
