/*
 * bench_common.h — what girder's benchmark executables share (bench_sched,
 * bench_node): the clock, atoms, nearest-rank percentiles and medians as
 * bench-beam computes them, and the JSON result line of
 * /work/shared/bench-beam/README.md.
 */
#ifndef GIRDER_TESTS_BENCH_COMMON_H
#define GIRDER_TESTS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "heap.h"

/* Monotonic wall-clock nanoseconds. */
uint64_t bench_now_ns(void);

/* The atom for text (aborts when the atom table refuses it: a benchmark
 * has no way on without its atoms). */
term_t bench_atom(const char *text);

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* Nearest-rank percentile p (0-100] of v[0..n), as bench_beam:pct/2;
 * sorts v.  n > 0. */
double bench_pct(double *v, size_t n, double p);

/* The median of v[0..n) (the mean of the middle two for even n); v is
 * left as it is.  n > 0. */
double bench_median(const double *v, size_t n);

/* Prints one result line: {"bench":B,"impl":"girder","params":{P},
 * "value":median,"unit":U,"samples":[...]} plus "run" from $BENCH_RUN
 * when set (lib.sh's run_one sets it). */
void bench_emit(const char *bench, const char *params, const double *samples, size_t n,
                const char *unit);

#endif
