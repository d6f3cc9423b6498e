/*
 * bench_common.c — see bench_common.h.
 */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

term_t bench_atom(const char *text)
{
    term_t a;
    if (heap_atom_put(text, strlen(text), &a) != GD_OK)
        abort();
    return a;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    size_t rank = (size_t)(p * (double)n / 100.0 + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return v[rank - 1];
}

double bench_median(const double *v, size_t n)
{
    double *c = malloc(n * sizeof *c);
    if (c == NULL)
        abort();
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, bench_cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

void bench_emit(const char *bench, const char *params, const double *samples, size_t n,
                const char *unit)
{
    printf("{\"bench\":\"%s\",\"impl\":\"girder\",\"params\":{%s},\"value\":%.3f,\"unit\":\"%s\","
           "\"samples\":[",
           bench, params, bench_median(samples, n), unit);
    for (size_t i = 0; i < n; i++)
        printf("%s%.3f", i ? "," : "", samples[i]);
    const char *run = getenv("BENCH_RUN");
    printf("]%s%s}\n", run != NULL && *run ? ",\"run\":" : "", run != NULL && *run ? run : "");
    fflush(stdout);
}
