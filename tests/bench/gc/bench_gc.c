/*
 * bench_gc.c — girder's side of the gc workload (BEAM's side: beam_gc.erl).
 *
 * One heap plays the worker process.  Each of 200 rounds builds
 * [{N, N} | Acc] for N = 262144 down to 1 (tuple 3 words + cons 2 words =
 * 40 bytes per element, 10 MiB live at the end of the round) with an
 * allocation safe point before every tuple+cons (heap_ensure_free with the
 * accumulator as the only root), walks the list summing the first tuple
 * fields (checked), then drops it.  Default heap settings (233 words,
 * fullsweep_after 65535), a fresh heap per repetition as BEAM spawns a
 * fresh worker.  Every collection is timed with CLOCK_MONOTONIC around the
 * heap_ensure_free call that collects (BEAM: trace timestamps around the
 * GC).  3 repetitions; values are medians of the per-repetition results,
 * percentiles nearest-rank, as bench_beam.erl.
 *
 *   bench_gc [-n ROUNDS] [-e ELEMS] [-r REPS]
 *
 * Output: one JSON line per result on stdout (beam_gc.erl's format plus
 * "impl":"girder"); progress on stderr.  Exit status 1 if a sum is wrong
 * or the heap fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: sort, take element max(1, ceil(P*N/100)). */
static double pct(const double *v, size_t n, double p)
{
    double *s = malloc(n * sizeof *s);
    if (s == NULL) {
        fprintf(stderr, "bench_gc: out of memory\n");
        exit(1);
    }
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    size_t k = (size_t)ceil(p * (double)n / 100.0);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    double r = s[k - 1];
    free(s);
    return r;
}

typedef struct rep_result {
    double p50, p99, max, count, share, round_ms, copy_ms_per_mib, mib_copied, minors, majors;
} rep_result_t;

typedef struct pauses {
    double *us;
    size_t n, cap;
} pauses_t;

static void add_pause(pauses_t *p, double us)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 1024;
        p->us = realloc(p->us, p->cap * sizeof *p->us);
        if (p->us == NULL) {
            fprintf(stderr, "bench_gc: out of memory\n");
            exit(1);
        }
    }
    p->us[p->n++] = us;
}

static int one_rep(int rounds, int elems, rep_result_t *out)
{
    heap_t h;
    int rc = heap_init(&h, 0);
    if (rc != GD_OK)
        return rc;
    pauses_t ps = {0};
    term_t acc = TERM_NIL;
    term_t *roots[] = {&acc};
    int64_t total = 0;
    uint64_t t0 = now_ns();
    for (int r = 0; r < rounds; r++) {
        acc = TERM_NIL;
        for (int n = elems; n >= 1; n--) {
            /* The safe point: heap_ensure_free's own fast-path test, timed
             * only when it is going to collect. */
            if (heap_gc_due(&h, 5)) {
                uint64_t g0 = now_ns();
                rc = heap_ensure_free(&h, 5, roots, 1);
                uint64_t g1 = now_ns();
                if (rc != GD_OK)
                    goto fail;
                add_pause(&ps, (double)(g1 - g0) / 1000.0);
            }
            term_t *el, tup;
            if ((rc = heap_make_tuple(&h, 2, &el, &tup)) != GD_OK)
                goto fail;
            el[0] = el[1] = term_make_small(n);
            if ((rc = heap_cons(&h, tup, acc, &acc)) != GD_OK)
                goto fail;
        }
        int64_t sum = 0;
        for (term_t l = acc; term_is_list(l); l = term_cdr(l))
            sum += term_small_value(term_tuple_elems(term_car(l))[0]);
        if (sum != (int64_t)elems * (elems + 1) / 2) {
            fprintf(stderr, "bench_gc: wrong sum %lld in round %d\n", (long long)sum, r);
            rc = GD_EINVAL;
            goto fail;
        }
        total += sum;
        acc = TERM_NIL; /* dropped */
    }
    uint64_t wall = now_ns() - t0;
    if (total != (int64_t)rounds * ((int64_t)elems * (elems + 1) / 2)) {
        rc = GD_EINVAL;
        goto fail;
    }
    double sum_us = 0;
    double maxp = 0;
    for (size_t i = 0; i < ps.n; i++) {
        sum_us += ps.us[i];
        if (ps.us[i] > maxp)
            maxp = ps.us[i];
    }
    double mib = (double)h.stats.words_copied * 8.0 / (1024.0 * 1024.0);
    out->p50 = ps.n ? pct(ps.us, ps.n, 50) : 0;
    out->p99 = ps.n ? pct(ps.us, ps.n, 99) : 0;
    out->max = maxp;
    out->count = (double)ps.n;
    out->share = 100.0 * sum_us * 1000.0 / (double)wall;
    out->round_ms = (double)wall / 1e6 / rounds;
    out->mib_copied = mib;
    out->copy_ms_per_mib = mib > 0 ? (sum_us / 1000.0) / mib : 0;
    out->minors = (double)h.stats.minor_collections;
    out->majors = (double)h.stats.major_collections;
    fprintf(stderr,
            "  gc #{p50 => %.1f, p99 => %.1f, max => %.1f, count => %zu (minor %llu, major "
            "%llu), share => %.1f, round_ms => %.2f, copied => %.0f MiB, ms/MiB => %.3f}\n",
            out->p50, out->p99, out->max, ps.n, (unsigned long long)h.stats.minor_collections,
            (unsigned long long)h.stats.major_collections, out->share, out->round_ms, mib,
            out->copy_ms_per_mib);
    free(ps.us);
    heap_destroy(&h);
    return GD_OK;
fail:
    fprintf(stderr, "bench_gc: %s\n", gd_strerror(rc));
    free(ps.us);
    heap_destroy(&h);
    return rc;
}

static void emit(const char *bench, int rounds, int elems, int reps, const rep_result_t *rs,
                 size_t off, const char *unit)
{
    double v[16] = {0};
    for (int i = 0; i < reps; i++)
        v[i] = *(const double *)((const char *)&rs[i] + off);
    double med = pct(v, (size_t)reps, 50);
    printf("{\"bench\":\"%s\",\"impl\":\"girder\",\"params\":{\"elems\":%d,\"live_bytes\":%lld,"
           "\"rounds\":%d,\"reps\":%d,\"elem\":\"{I, I}\"},\"value\":%.3f,\"unit\":\"%s\","
           "\"samples\":[",
           bench, elems, (long long)elems * 40, rounds, reps, med, unit);
    for (int i = 0; i < reps; i++)
        printf("%s%.3f", i ? "," : "", v[i]);
    const char *run = getenv("BENCH_RUN");
    if (run != NULL && *run != '\0')
        printf("],\"run\":%d}\n", atoi(run));
    else
        printf("]}\n");
}

int main(int argc, char **argv)
{
    int rounds = 200, elems = 262144, reps = 3, opt;
    while ((opt = getopt(argc, argv, "n:e:r:")) != -1) {
        switch (opt) {
        case 'n':
            rounds = atoi(optarg);
            break;
        case 'e':
            elems = atoi(optarg);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-n ROUNDS] [-e ELEMS] [-r REPS]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || elems < 1 || reps < 1 || reps > 16) {
        fprintf(stderr, "bench_gc: bad arguments\n");
        return 2;
    }
    if (heap_gc_stress_enabled())
        fprintf(stderr, "bench_gc: warning: GC stress mode is on; figures are meaningless\n");
    rep_result_t rs[16];
    for (int i = 0; i < reps; i++)
        if (one_rep(rounds, elems, &rs[i]) != GD_OK)
            return 1;
#define EMIT(name, field, unit)                                                                    \
    emit(name, rounds, elems, reps, rs, offsetof(rep_result_t, field), unit)
    EMIT("gc_pause_p50", p50, "us");
    EMIT("gc_pause_p99", p99, "us");
    EMIT("gc_pause_max", max, "us");
    EMIT("gc_count", count, "gcs");
    EMIT("gc_time_share", share, "%");
    EMIT("gc_round_time", round_ms, "ms");
    EMIT("gc_copy_rate", copy_ms_per_mib, "ms/MiB");
#undef EMIT
    /* Heap words of an idle process: none until its first allocation, the
     * minimum young area after it, its live words after heap_hibernate. */
    heap_t idle;
    if (heap_init(&idle, 0) != GD_OK)
        return 1;
    size_t before = heap_size_words(&idle);
    term_t t = TERM_NIL;
    term_t *roots[] = {&t};
    if (heap_ensure_free(&idle, 1, roots, 1) != GD_OK)
        return 1;
    size_t after = heap_size_words(&idle);
    printf(
        "{\"bench\":\"gc_idle_heap_words\",\"impl\":\"girder\",\"params\":{\"before_first_alloc\":"
        "%zu,\"heap_t_bytes\":%zu,\"after_hibernate\":\"live words\"},\"value\":%zu,"
        "\"unit\":\"words\"}\n",
        before, sizeof(heap_t), after);
    heap_destroy(&idle);
    return 0;
}
