/*
 * test_stats.c — node-wide statistics kept per thread (heap/stats.c): the
 * sums heap_gc_stats_node and heap_binary_live_bytes give are those of
 * every heap and binary, whatever thread did the work and whether that
 * thread still runs; binaries freed on another thread than the one that
 * made them balance; an exited thread's block is taken over by the next
 * thread (the list follows the most threads alive at once); a thread whose
 * block cannot be allocated still counts (the shared block).
 *
 * Threads never call CUnit (it is not thread-safe): they record what they
 * did and the main thread checks it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "gc_internal.h" /* heap_stats_block_count, heap_malloc_fail_countdown */
#include "heap.h"

#define OK(expr) CU_ASSERT_EQUAL_FATAL((expr), GD_OK)

enum { PAIRS = 3000, KEPT_BINS = 3, THREADS = 6, SEQUENTIAL = 40 };

/* What one worker did. */
typedef struct work {
    int ok;                  /* every heap call succeeded */
    unsigned fail_countdown; /* heap_malloc_fail_countdown at the start */
    bool had_block;          /* the thread owned a block at its end */
    heap_gc_stats_t stats;   /* its heap's own statistics */
    heap_binary_t *kept[KEPT_BINS];
    size_t kept_bytes;
    pthread_barrier_t *barrier; /* or NULL */
} work_t;

/* Collects a heap a few times (minor and major) and makes binaries: some
 * freed here, KEPT_BINS handed to the main thread to free. */
static void *worker(void *arg)
{
    work_t *w = arg;
    heap_malloc_fail_countdown = w->fail_countdown;
    w->ok = 0;
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return NULL;
    h.gc_flags &= ~HEAP_GCF_STRESS; /* count only the collections made here */
    term_t acc = TERM_NIL;
    term_t *roots[] = {&acc};
    for (int i = 0; i < PAIRS; i++) {
        term_t *el, t;
        if (heap_ensure_free(&h, 3, roots, 1) != GD_OK || heap_make_tuple(&h, 1, &el, &t) != GD_OK)
            goto out;
        el[0] = term_make_small(i);
        if (heap_cons(&h, t, i % 3 == 0 ? acc : TERM_NIL, &t) != GD_OK)
            goto out;
        if (i % 3 == 0)
            acc = t;
    }
    if (heap_collect(&h, 0, &(heap_roots_t){roots, 1, NULL, NULL}, HEAP_GC_MAJOR) != GD_OK)
        goto out;
    for (int i = 0; i < 10; i++) {
        heap_binary_t *b = heap_binary_new(100 + (size_t)i);
        if (b == NULL)
            goto out;
        if (i < KEPT_BINS) {
            w->kept[i] = b;
            w->kept_bytes += b->size;
        } else {
            heap_binary_unref(b);
        }
    }
    if (w->barrier != NULL)
        (void)pthread_barrier_wait(w->barrier);
    w->ok = 1;
out:
    w->stats = h.stats;
    w->had_block = heap_stats_mine != NULL;
    heap_destroy(&h);
    heap_malloc_fail_countdown = 0;
    return NULL;
}

/* Node-wide deltas from `before` must equal the sum of the workers'
 * heaps (pause max: the largest of the old max and theirs). */
static void check_sums(const heap_gc_stats_t *before, const work_t *w, size_t n)
{
    heap_gc_stats_t sum = *before;
    for (size_t i = 0; i < n; i++) {
        sum.minor_collections += w[i].stats.minor_collections;
        sum.major_collections += w[i].stats.major_collections;
        sum.words_reclaimed += w[i].stats.words_reclaimed;
        sum.words_copied += w[i].stats.words_copied;
        sum.pause_ns_total += w[i].stats.pause_ns_total;
        if (w[i].stats.pause_ns_max > sum.pause_ns_max)
            sum.pause_ns_max = w[i].stats.pause_ns_max;
    }
    heap_gc_stats_t now;
    heap_gc_stats_node(&now);
    CU_ASSERT_EQUAL(now.minor_collections, sum.minor_collections);
    CU_ASSERT_EQUAL(now.major_collections, sum.major_collections);
    CU_ASSERT_EQUAL(now.words_reclaimed, sum.words_reclaimed);
    CU_ASSERT_EQUAL(now.words_copied, sum.words_copied);
    CU_ASSERT_EQUAL(now.pause_ns_total, sum.pause_ns_total);
    CU_ASSERT_EQUAL(now.pause_ns_max, sum.pause_ns_max);
}

static void run_one(work_t *w)
{
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, worker, w), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_join(t, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(w->ok, 1);
}

static void free_kept(work_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < KEPT_BINS; k++)
            heap_binary_unref(w[i].kept[k]);
}

/* First in the suite: no block exists yet.  A thread whose block
 * allocation fails counts through the shared block (its first collection)
 * and gets a block at a later update. */
static void test_block_allocation_fails(void)
{
    CU_ASSERT_EQUAL_FATAL(heap_stats_block_count(), 0);
    heap_gc_stats_t before;
    heap_gc_stats_node(&before);
    size_t live = heap_binary_live_bytes();
    work_t w = {.fail_countdown = 1};
    run_one(&w);
    CU_ASSERT_EQUAL(atomic_load(&heap_stats_shared.minor), 1);
    CU_ASSERT(w.had_block);
    CU_ASSERT_EQUAL(heap_stats_block_count(), 1);
    CU_ASSERT(w.stats.minor_collections > 1);
    CU_ASSERT(w.stats.major_collections >= 1);
    check_sums(&before, &w, 1);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live + w.kept_bytes);
    /* Freed here: the main thread takes over the exited thread's block. */
    free_kept(&w, 1);
    CU_ASSERT_EQUAL(heap_stats_block_count(), 1);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live);
}

/* Threads running at once: one block each, sums exact after they exit,
 * their binaries freed by the main thread balance. */
static void test_concurrent_threads(void)
{
    heap_gc_stats_t before;
    heap_gc_stats_node(&before);
    size_t live = heap_binary_live_bytes();
    size_t blocks = heap_stats_block_count();
    pthread_barrier_t barrier;
    CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&barrier, NULL, THREADS), 0);
    work_t w[THREADS] = {0};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].barrier = &barrier;
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    size_t kept = 0;
    for (int i = 0; i < THREADS; i++) {
        CU_ASSERT_EQUAL_FATAL(pthread_join(t[i], NULL), 0);
        CU_ASSERT_EQUAL(w[i].ok, 1);
        CU_ASSERT(w[i].had_block);
        kept += w[i].kept_bytes;
    }
    pthread_barrier_destroy(&barrier);
    /* All were alive at the barrier: each had a block of its own. */
    CU_ASSERT_EQUAL(heap_stats_block_count(), blocks + THREADS);
    check_sums(&before, w, THREADS);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live + kept);
    free_kept(w, THREADS);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live);
}

/* Threads one after the other: each takes over the block the previous one
 * left, whose counts stay in the sums. */
static void test_exited_blocks_reused(void)
{
    heap_gc_stats_t before;
    heap_gc_stats_node(&before);
    size_t live = heap_binary_live_bytes();
    size_t blocks = heap_stats_block_count();
    static work_t w[SEQUENTIAL];
    size_t kept = 0;
    for (int i = 0; i < SEQUENTIAL; i++) {
        run_one(&w[i]);
        kept += w[i].kept_bytes;
    }
    CU_ASSERT_EQUAL(heap_stats_block_count(), blocks);
    check_sums(&before, w, SEQUENTIAL);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live + kept);
    free_kept(w, SEQUENTIAL);
    CU_ASSERT_EQUAL(heap_binary_live_bytes(), live);
}

static const gd_test_case_t cases[] = {
    {"a thread without a block counts in the shared one", test_block_allocation_fails},
    {"threads at once: one block each, exact sums", test_concurrent_threads},
    {"an exited thread's block is reused, its counts kept", test_exited_blocks_reused},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_stats", cases)
