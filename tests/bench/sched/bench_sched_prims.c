/*
 * bench_sched_prims.c — micro-benchmarks of the scheduler's two primitives,
 * with no BEAM counterpart: the coroutine switch and the timer wheel.
 *
 *   bench_sched_prims [-n MILLIONS_OF_SWITCHES] [-t TIMERS] [-r REPS]
 *
 * Prints one JSON line per figure (median of REPS repetitions, each value in
 * "samples"; times are the thread's CPU time), tagged "impl":"girder":
 *   coro_switch          ns per stack switch: two coroutines resumed in
 *                        turn, each resume + yield being two switches
 *   coro_spawn           ns per create + run to completion + destroy
 *                        (stack from the per-thread cache)
 *   timer_insert_cancel  ns per insert + cancel pair, TIMERS timers with
 *                        random deadlines up to 10 min, all pending at once
 *   timer_advance_fire   ns per timer fired, advancing one tick at a time
 *                        through TIMERS deadlines spread over 60 s
 *   timer_advance_idle   ns per advance of a wheel whose TIMERS timers are
 *                        all an hour away (the per-tick cost when idle)
 *   timer_bytes          bytes per pending timer (the intrusive entry)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "sched/coro.h"
#include "sched/timer_wheel.h"

/* CPU time of this thread, not wall time: the machines these run on are
 * shared, and time spent preempted is not the primitive's cost. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void emit(const char *bench, const char *params, const double *v, int reps, const char *unit)
{
    double sorted[64];
    memcpy(sorted, v, (size_t)reps * sizeof *v);
    qsort(sorted, (size_t)reps, sizeof *sorted, bench_cmp_double);
    printf("{\"bench\":\"%s\",\"impl\":\"girder\",\"params\":{%s},\"value\":%.3f,\"unit\":\"%s\","
           "\"samples\":[",
           bench, params, sorted[(reps - 1) / 2], unit);
    for (int i = 0; i < reps; i++)
        printf("%s%.3f", i ? "," : "", v[i]);
    const char *run = getenv("BENCH_RUN");
    if (run != NULL)
        printf("],\"run\":%d}\n", atoi(run));
    else
        printf("]}\n");
    fflush(stdout);
}

/* ---- coroutines ---- */

static void spin_yield(void *arg)
{
    volatile uint64_t *count = arg;
    for (;;) {
        (*count)++;
        sched_coro_yield();
    }
}

static int bench_switch(long iters, double *ns_per_switch)
{
    uint64_t ca = 0, cb = 0;
    sched_coro_t *a = NULL, *b = NULL;
    if (sched_coro_create(&a, 0, spin_yield, (void *)&ca) != GD_OK ||
        sched_coro_create(&b, 0, spin_yield, (void *)&cb) != GD_OK)
        return -1;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        sched_coro_resume(a);
        sched_coro_resume(b);
    }
    double t1 = now_ns();
    /* The coroutines never finish: destroyed suspended, as allowed. */
    sched_coro_destroy(a);
    sched_coro_destroy(b);
    if (ca != (uint64_t)iters || cb != (uint64_t)iters)
        return -1;
    *ns_per_switch = (t1 - t0) / ((double)iters * 4);
    return 0;
}

static void finish_at_once(void *arg)
{
    (*(volatile int *)arg)++;
}

static int bench_spawn(long iters, double *ns)
{
    volatile int ran = 0;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        sched_coro_t *c = NULL;
        if (sched_coro_create(&c, 0, finish_at_once, (void *)&ran) != GD_OK)
            return -1;
        sched_coro_resume(c);
        sched_coro_destroy(c);
    }
    double t1 = now_ns();
    if (ran != (int)iters)
        return -1;
    *ns = (t1 - t0) / (double)iters;
    return 0;
}

/* ---- timer wheel ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t fired_total;

static void count_fire(sched_timer_wheel_t *w, sched_timer_t *t, void *ctx)
{
    (void)w;
    (void)t;
    (void)ctx;
    fired_total++;
}

static void bench_insert_cancel(sched_timer_wheel_t *w, sched_timer_t *t, uint64_t *when, size_t n,
                                double *ns)
{
    sched_timer_wheel_init(w, 1000);
    for (size_t i = 0; i < n; i++)
        sched_timer_init(&t[i]);
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        sched_timer_wheel_insert(w, &t[i], when[i]);
    for (size_t i = 0; i < n; i++)
        (void)sched_timer_wheel_cancel(w, &t[i]);
    double t1 = now_ns();
    *ns = (t1 - t0) / (double)n;
}

static int bench_advance_fire(sched_timer_wheel_t *w, sched_timer_t *t, size_t n, double *ns)
{
    sched_timer_wheel_init(w, 0);
    for (size_t i = 0; i < n; i++)
        sched_timer_wheel_insert(w, &t[i], 1 + rnd() % 60000);
    fired_total = 0;
    double t0 = now_ns();
    for (uint64_t now = 1; now <= 60000; now++)
        (void)sched_timer_wheel_advance(w, now, count_fire, NULL);
    double t1 = now_ns();
    if (fired_total != n)
        return -1;
    *ns = (t1 - t0) / (double)n;
    return 0;
}

static int bench_advance_idle(sched_timer_wheel_t *w, sched_timer_t *t, size_t n, double *ns)
{
    const uint64_t hour = 3600 * 1000, ticks = 1000000;
    sched_timer_wheel_init(w, 0);
    for (size_t i = 0; i < n; i++)
        sched_timer_wheel_insert(w, &t[i], hour + rnd() % hour);
    fired_total = 0;
    double t0 = now_ns();
    for (uint64_t now = 1; now <= ticks; now++)
        (void)sched_timer_wheel_advance(w, now, count_fire, NULL);
    double t1 = now_ns();
    if (fired_total != 0)
        return -1;
    *ns = (t1 - t0) / (double)ticks;
    return 0;
}

int main(int argc, char **argv)
{
    long millions = 10;
    size_t ntimers = 1000000;
    int reps = 5, opt;
    while ((opt = getopt(argc, argv, "n:t:r:")) != -1) {
        switch (opt) {
        case 'n':
            millions = atol(optarg);
            break;
        case 't':
            ntimers = (size_t)atol(optarg);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-n MILLIONS_OF_SWITCHES] [-t TIMERS] [-r REPS]\n", argv[0]);
            return 2;
        }
    }
    if (millions < 1 || ntimers < 1 || reps < 1 || reps > 64) {
        fprintf(stderr, "bench_sched_prims: bad arguments\n");
        return 2;
    }
    double v[64];
    char params[128];

    long iters = millions * 1000000 / 4;
    for (int r = 0; r < reps; r++)
        if (bench_switch(iters, &v[r]) != 0)
            goto fail;
    snprintf(params, sizeof params, "\"switches\":%ld", iters * 4);
    emit("coro_switch", params, v, reps, "ns");

    for (int r = 0; r < reps; r++)
        if (bench_spawn(1000000, &v[r]) != 0)
            goto fail;
    emit("coro_spawn", "\"spawns\":1000000", v, reps, "ns");

    sched_timer_wheel_t *w = malloc(sizeof *w);
    sched_timer_t *t = malloc(ntimers * sizeof *t);
    uint64_t *when = malloc(ntimers * sizeof *when);
    if (w == NULL || t == NULL || when == NULL)
        goto fail;
    for (size_t i = 0; i < ntimers; i++)
        when[i] = 1001 + rnd() % (10 * 60 * 1000);
    snprintf(params, sizeof params, "\"timers\":%zu", ntimers);
    for (int r = 0; r < reps; r++)
        bench_insert_cancel(w, t, when, ntimers, &v[r]);
    emit("timer_insert_cancel", params, v, reps, "ns");
    for (int r = 0; r < reps; r++)
        if (bench_advance_fire(w, t, ntimers, &v[r]) != 0)
            goto fail;
    emit("timer_advance_fire", params, v, reps, "ns");
    for (int r = 0; r < reps; r++)
        if (bench_advance_idle(w, t, ntimers, &v[r]) != 0)
            goto fail;
    emit("timer_advance_idle", params, v, reps, "ns");
    for (int r = 0; r < reps; r++)
        v[r] = (double)sizeof(sched_timer_t);
    emit("timer_bytes", params, v, reps, "B");
    free(when);
    free(t);
    free(w);
    return 0;
fail:
    fprintf(stderr, "bench_sched_prims: a benchmark failed (out of memory or a wrong count)\n");
    return 1;
}
