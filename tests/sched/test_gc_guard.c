/*
 * test_gc_guard.c — a long garbage collection does not hold up the other
 * processes of its scheduler: a process receives a big list (200 MiB in
 * release builds) and collects it at the safe point after its callback,
 * which takes a long time; a probe homed on the same scheduler, pinged
 * every millisecond meanwhile, keeps its latency, because the watchdog
 * marks the collecting scheduler stuck and the other scheduler takes the
 * probe.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* List cells: 16 bytes each. */
#define BIG_CELLS ST_SCALE((size_t)200 << 16, (size_t)40 << 16)

static _Atomic uint64_t stored_ns, done_ns;
static _Atomic size_t stored_len;

static int big_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx, (void)arg, (void)state;
    return GD_OK;
}

/* A list: kept as the state (live, so the collection copies all of it);
 * the time its callback ended is recorded.  `done`: the first callback
 * after that collection. */
static int big_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    if (msg == A("done")) {
        atomic_store(&done_ns, st_now_ns());
        return GD_OK;
    }
    size_t n = 0;
    for (term_t l = msg; term_is_list(l); l = term_cdr(l))
        n++;
    *state = msg;
    atomic_store(&stored_len, n);
    atomic_store(&stored_ns, st_now_ns());
    return GD_OK;
}

static const sched_behaviour_t big_beh = {big_init, big_handle, NULL, NULL};

static void test_long_gc_probe_latency(void)
{
    atomic_store(&stored_ns, 0);
    atomic_store(&done_ns, 0);
    st_start(2);
    /* Both homed on scheduler 1. */
    sched_spawn_opts_t on1 = {.scheduler = 1};
    term_t big;
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &big_beh, TERM_NIL, &on1, &big, NULL) == GD_OK);
    term_t probe = st_probe_spawn(&on1);

    /* The list, built on the test thread's heap and copied into the
     * message by the send (the receiver's callback only stores it). */
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t list = TERM_NIL;
    term_t *roots[] = {&list};
    CU_ASSERT_FATAL(heap_ensure_free(&h, 2 * BIG_CELLS, roots, 1) == GD_OK);
    int rc = GD_OK;
    for (size_t i = 0; i < BIG_CELLS && rc == GD_OK; i++)
        rc = heap_cons(&h, S((int64_t)(i & 0xFFFF)), list, &list);
    CU_ASSERT_FATAL(rc == GD_OK);
    heap_gc_stats_t gc1;
    CU_ASSERT_FATAL(sched_send(NULL, big, list) == GD_OK);
    heap_destroy(&h);
    st_send(big, A("done"));

    uint64_t end = st_now_ns() + 30000000000u;
    size_t pings = 0;
    while (atomic_load(&done_ns) == 0 && st_now_ns() < end && pings < ST_PROBE_MAX) {
        st_probe_ping(probe);
        pings++;
        st_sleep_us(1000);
    }
    CU_ASSERT_FATAL(atomic_load(&done_ns) != 0);
    CU_ASSERT(st_probe_wait(pings));
    CU_ASSERT_EQUAL(atomic_load(&stored_len), BIG_CELLS);
    heap_gc_stats_node(&gc1);

    /* The pings sent while the big process collected: between the end of
     * its storing callback and the start of the next one. */
    uint64_t lo = atomic_load(&stored_ns), hi = atomic_load(&done_ns);
    static uint64_t in_gc[ST_PROBE_MAX];
    size_t n = st_probe_latencies(lo, hi, in_gc);
    double window_ms = (double)(hi - lo) / 1e6;
    double max_ms = n > 0 ? (double)in_gc[n - 1] / 1e6 : 0;
    double p90_ms = n > 0 ? (double)in_gc[(n * 9) / 10] / 1e6 : 0;
    double pause_ms = (double)gc1.pause_ns_max / 1e6;
    printf("\n  %zu MiB live: collection window %.1f ms (longest pause %.1f ms); %zu pings in it: "
           "p90 %.2f ms, max %.2f ms\n",
           (size_t)(BIG_CELLS * 16 >> 20), window_ms, pause_ms, n, p90_ms, max_ms);
    /* A long collection did happen while the probe was pinged... */
    CU_ASSERT(window_ms >= 20);
    CU_ASSERT(n >= 10);
    /* ...and the probe did not wait for it: held up, its latencies would
     * spread up to the whole window (sanitizer builds are slower at
     * everything the probe's path does). */
    CU_ASSERT(max_ms < window_ms / 2);
    CU_ASSERT(p90_ms < ST_SCALE(10, 25));
    st_stop();
}

static const gd_test_case_t cases[] = {
    {"a long collection does not hold up a probe on its scheduler", test_long_gc_probe_latency},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_gc_guard", cases)
