/*
 * bench_lib_util.c — seeded PRNG and synthetic series for the node/bench/
 * suites.
 */
#include "bench_lib_util.h"

#include <math.h>

uint64_t tb_next(tb_rng_t *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

uint64_t tb_log_uniform(tb_rng_t *r, uint64_t lo, uint64_t hi)
{
    double u = (double)(tb_next(r) >> 11) / 9007199254740992.0;
    double v = exp(log((double)lo) + u * (log((double)hi) - log((double)lo)));
    uint64_t x = (uint64_t)v;
    return x < lo ? lo : x > hi ? hi : x;
}

bench_series_t *tb_synthetic_series(uint64_t seed, unsigned seconds, unsigned rate, double base_us)
{
    tb_rng_t rng = {seed | 1};
    const uint64_t start = UINT64_C(1000000000);
    bench_series_t *s;
    if (bench_series_new(start, UINT64_C(1000000000), &s) != 0)
        return NULL;
    uint64_t step = UINT64_C(1000000000) / rate;
    uint64_t n = (uint64_t)seconds * rate;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t intended = start + k * step;
        double u = (double)(tb_next(&rng) >> 11) / 9007199254740992.0;
        /* a long tail: most near base, a few 10x, rare 100x */
        double lat_us = base_us * (0.5 + u) * (u > 0.99 ? 10.0 : 1.0);
        if ((k / rate) % 7 == 6 && k % rate < rate / 10)
            lat_us *= 100.0; /* a stall: a tenth of that second is slow */
        uint64_t done = intended + (uint64_t)(lat_us * 1000.0);
        if (bench_series_record(s, intended, done, k % 997 != 0) != 0) {
            bench_series_free(s);
            return NULL;
        }
    }
    return s;
}
