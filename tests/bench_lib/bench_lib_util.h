/*
 * bench_lib_util.h — what the node/bench/ suites share: a seeded PRNG and
 * synthetic latency data.
 */
#ifndef GIRDER_TESTS_BENCH_LIB_UTIL_H
#define GIRDER_TESTS_BENCH_LIB_UTIL_H

#include <stdint.h>

#include "bench.h"

/* xorshift64*: deterministic, seeded, good enough for test data. */
typedef struct tb_rng {
    uint64_t s;
} tb_rng_t;

uint64_t tb_next(tb_rng_t *r);

/* A latency in ns, log-uniform between lo and hi. */
uint64_t tb_log_uniform(tb_rng_t *r, uint64_t lo, uint64_t hi);

/*
 * Fills a series as one open-loop client would over `seconds` of 1 s
 * intervals: `rate` operations per second with latencies around base_us
 * (log-normal-ish spread, a stall every 7 s), errors every 997th.  Returns
 * the series (caller frees) or NULL on allocation failure.
 */
bench_series_t *tb_synthetic_series(uint64_t seed, unsigned seconds, unsigned rate, double base_us);

#endif
