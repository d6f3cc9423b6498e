/*
 * test_live.c — the live figures of node/bench/: writer threads record into
 * their own slots while a reader takes windows; across all windows every
 * completion is counted exactly once (operations, errors, and every
 * histogram bucket agree with a reference recorded directly).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench_lib_util.h"
#include "cunit_main.h"
#include "internal.h"

#ifdef SCHED_TEST_SMALL
#define PER_THREAD 20000
#else
#define PER_THREAD 400000
#endif
#define WRITERS 3

typedef struct writer {
    bench_live_t *live;
    unsigned slot;
    pthread_barrier_t *go;
    _Atomic unsigned *done;    /* relaxed: only ends the reader's loop */
    _Atomic unsigned *windows; /* relaxed: windows the reader has taken */
} writer_t;

static uint64_t latency_of(unsigned slot, uint64_t i)
{
    return (i % 1000) * 1000 + slot * 7 + (i % 13 == 0 ? UINT64_C(70000000000) : 0);
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    pthread_barrier_wait(w->go);
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        /* halfway, wait for a few windows taken from now on: they surely
         * cut through writes (counting from 0 instead, a reader that ran
         * ahead of late-started writers let them through without one) */
        if (i == PER_THREAD / 2) {
            unsigned from = atomic_load_explicit(w->windows, memory_order_relaxed);
            while (atomic_load_explicit(w->windows, memory_order_relaxed) < from + 3)
                sched_yield();
        }
        bench_live_record(w->live, w->slot, latency_of(w->slot, i), i % 10 != 0);
    }
    atomic_fetch_add_explicit(w->done, 1, memory_order_relaxed);
    return NULL;
}

static void test_windows_conserve(void)
{
    bench_live_t *live;
    CU_ASSERT_EQUAL_FATAL(bench_live_new(WRITERS, &live), 0);
    static bench_hist_t ref, win, sum;
    bench_hist_reset(&ref);
    bench_hist_reset(&sum);
    for (unsigned s = 0; s < WRITERS; s++)
        for (uint64_t i = 0; i < PER_THREAD; i++)
            bench_hist_record(&ref, latency_of(s, i));
    pthread_barrier_t go;
    CU_ASSERT_FATAL(pthread_barrier_init(&go, NULL, WRITERS + 1) == 0);
    _Atomic unsigned done = 0, taken = 0;
    writer_t w[WRITERS];
    pthread_t th[WRITERS];
    for (unsigned s = 0; s < WRITERS; s++) {
        w[s] = (writer_t){live, s, &go, &done, &taken};
        CU_ASSERT_FATAL(pthread_create(&th[s], NULL, writer_main, &w[s]) == 0);
    }
    pthread_barrier_wait(&go);
    uint64_t ops = 0, errors = 0, o, e;
    unsigned windows = 0, nonempty = 0;
    /* windows as fast as the reader can, for as long as writers run */
    for (; atomic_load_explicit(&done, memory_order_relaxed) < WRITERS; windows++) {
        bench_live_window(live, &win, &o, &e);
        atomic_fetch_add_explicit(&taken, 1, memory_order_relaxed);
        ops += o;
        errors += e;
        nonempty += o > 0;
        /* a window's own figures are sane while writers run */
        if (win.count > 0)
            CU_ASSERT(win.min_ns <= bench_hist_quantile(&win, 0.5) &&
                      bench_hist_quantile(&win, 0.5) <= win.max_ns);
        for (uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++)
            sum.counts[b] += win.counts[b];
        sum.count += win.count;
        sum.sum_ns += win.sum_ns;
    }
    for (unsigned s = 0; s < WRITERS; s++)
        pthread_join(th[s], NULL);
    pthread_barrier_destroy(&go);
    bench_live_window(live, &win, &o, &e);
    ops += o;
    errors += e;
    for (uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++)
        sum.counts[b] += win.counts[b];
    sum.count += win.count;
    sum.sum_ns += win.sum_ns;
    printf("\n  %u of %u windows saw completions while writers ran\n", nonempty, windows);
    CU_ASSERT(windows >= 3 && nonempty >= 1);
    CU_ASSERT_EQUAL(ops, (uint64_t)WRITERS * PER_THREAD);
    CU_ASSERT_EQUAL(errors, (uint64_t)WRITERS * (PER_THREAD / 10));
    CU_ASSERT_EQUAL(sum.count, ref.count);
    CU_ASSERT_EQUAL(sum.sum_ns, ref.sum_ns);
    CU_ASSERT(memcmp(sum.counts, ref.counts, sizeof ref.counts) == 0);
    /* nothing new: an empty window */
    bench_live_window(live, &win, &o, &e);
    CU_ASSERT(o == 0 && e == 0 && win.count == 0 && win.max_ns == 0);
    bench_live_free(live);
}

static void test_window_figures(void)
{
    bench_live_t *live;
    CU_ASSERT_EQUAL(bench_live_new(0, &live), GD_EINVAL);
    CU_ASSERT_EQUAL(bench_live_new(5000, &live), GD_EINVAL);
    CU_ASSERT_EQUAL_FATAL(bench_live_new(2, &live), 0);
    for (int i = 1; i <= 100; i++)
        bench_live_record(live, (unsigned)i % 2, (uint64_t)i * 10000, i != 50);
    bench_live_record(live, 2, 5, true); /* no such slot: ignored */
    static bench_hist_t win;
    uint64_t ops, errors;
    bench_live_window(live, &win, &ops, &errors);
    CU_ASSERT_EQUAL(ops, 100);
    CU_ASSERT_EQUAL(errors, 1);
    bench_summary_t s;
    bench_hist_summary(&win, &s);
    CU_ASSERT(s.p50_ns >= 495000 && s.p50_ns <= 505000);
    CU_ASSERT(s.p99_ns >= 980000 && s.p99_ns <= 1000000);
    CU_ASSERT(s.mean_ns == 505000.0);
    CU_ASSERT(s.min_ns <= 10000 && s.max_ns >= 1000000);
    bench_live_record(live, 0, 3, true);
    bench_live_window(live, &win, &ops, &errors);
    CU_ASSERT(ops == 1 && errors == 0 && win.count == 1 && win.min_ns == 3 && win.max_ns == 3);
    bench_live_free(live);
}

static const gd_test_case_t gd_tests[] = {
    {"windows count every completion once", test_windows_conserve},
    {"window figures", test_window_figures},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_live", gd_tests)
