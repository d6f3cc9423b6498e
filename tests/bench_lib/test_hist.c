/*
 * test_hist.c — the latency histogram of node/bench/: bucket layout,
 * percentiles against a sorted array of 1M random samples (<= 1% error),
 * merge equal to recording everything, the byte encoding round trip, and
 * decode rejecting every truncation and corruption.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_lib_util.h"
#include "cunit_main.h"
#include "internal.h"

#define N_SAMPLES 1000000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every bucket is contiguous with the next, indexes its own bounds, and is
 * at most 1/128 of its lower bound wide. */
static void test_layout(void)
{
    CU_ASSERT_EQUAL(bench_hist_bucket_low(0), 0);
    CU_ASSERT_EQUAL(BENCH_HIST_BUCKETS, 3808);
    CU_ASSERT(bench_hist_bucket_low(BENCH_HIST_BUCKETS - 1) <= BENCH_HIST_MAX_NS);
    CU_ASSERT(bench_hist_bucket_high(BENCH_HIST_BUCKETS - 1) >= BENCH_HIST_MAX_NS);
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        uint64_t lo = bench_hist_bucket_low(i), hi = bench_hist_bucket_high(i);
        CU_ASSERT_FATAL(lo <= hi);
        CU_ASSERT_EQUAL_FATAL(bench_hist_index(lo), i);
        if (hi <= BENCH_HIST_MAX_NS)
            CU_ASSERT_EQUAL_FATAL(bench_hist_index(hi), i);
        if (i + 1 < BENCH_HIST_BUCKETS) /* the last bucket holds 60 s */
            CU_ASSERT_EQUAL_FATAL(bench_hist_bucket_low(i + 1), hi + 1);
        if (hi > lo) /* below 256 ns every bucket is one value: exact */
            CU_ASSERT_FATAL((double)(hi - lo + 1) / (double)lo <= 1.0 / 128.0);
    }
    CU_ASSERT_EQUAL(bench_hist_index(BENCH_HIST_MAX_NS), BENCH_HIST_BUCKETS - 1);
    CU_ASSERT_EQUAL(bench_hist_index(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
    CU_ASSERT(sizeof(bench_hist_t) < 32 * 1024);
}

/* Percentiles of 1M log-uniform samples from 1 us to 60 s (and a few
 * sub-microsecond ones) are within 1% of the exact order statistics. */
static void test_percentiles_vs_sorted(void)
{
    uint64_t seed = 0x9E3779B97F4A7C15u;
    tb_rng_t rng = {seed};
    uint64_t *v = malloc(N_SAMPLES * sizeof *v);
    bench_hist_t *h = malloc(sizeof *h);
    CU_ASSERT_FATAL(v != NULL && h != NULL);
    bench_hist_reset(h);
    double sum = 0;
    for (size_t i = 0; i < N_SAMPLES; i++) {
        v[i] = i % 100 == 0 ? tb_next(&rng) % 1000 : tb_log_uniform(&rng, 1000, BENCH_HIST_MAX_NS);
        sum += (double)v[i];
        bench_hist_record(h, v[i]);
    }
    qsort(v, N_SAMPLES, sizeof *v, cmp_u64);
    CU_ASSERT_EQUAL(h->count, N_SAMPLES);
    CU_ASSERT_EQUAL(h->min_ns, v[0]);
    CU_ASSERT_EQUAL(h->max_ns, v[N_SAMPLES - 1]);
    CU_ASSERT(fabs((double)h->sum_ns - sum) / sum < 1e-9);
    double worst = 0;
    for (int k = 0; k <= 10000; k++) {
        double q = k / 10000.0;
        size_t rank = (size_t)ceil(q * N_SAMPLES);
        if (rank < 1)
            rank = 1;
        uint64_t exact = v[rank - 1], got = bench_hist_quantile(h, q);
        double err = exact == 0 ? (double)got : fabs((double)got - (double)exact) / (double)exact;
        if (err > worst)
            worst = err;
        if (err > 0.01) {
            printf("\nseed %llx q %.4f exact %llu got %llu\n", (unsigned long long)seed, q,
                   (unsigned long long)exact, (unsigned long long)got);
            CU_FAIL_FATAL("percentile error above 1%");
        }
    }
    printf("\n  worst relative error over 10001 quantiles: %.4f%%\n", worst * 100);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999, 0.9999};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        uint64_t exact = v[(size_t)ceil(qs[k] * N_SAMPLES) - 1];
        CU_ASSERT(fabs((double)bench_hist_quantile(h, qs[k]) - (double)exact) <=
                  0.01 * (double)exact);
    }
    bench_summary_t s;
    bench_hist_summary(h, &s);
    CU_ASSERT_EQUAL(s.p50_ns, bench_hist_quantile(h, 0.5));
    CU_ASSERT_EQUAL(s.p90_ns, bench_hist_quantile(h, 0.9));
    CU_ASSERT_EQUAL(s.p99_ns, bench_hist_quantile(h, 0.99));
    CU_ASSERT_EQUAL(s.p999_ns, bench_hist_quantile(h, 0.999));
    CU_ASSERT_EQUAL(s.max_ns, v[N_SAMPLES - 1]);
    CU_ASSERT(fabs(s.mean_ns - sum / N_SAMPLES) / (sum / N_SAMPLES) < 1e-9);
    free(h);
    free(v);
}

/* Merging per-recorder histograms equals recording every sample in one. */
static void test_merge_equals_all(void)
{
    tb_rng_t rng = {42};
    bench_hist_t *all = malloc(sizeof *all), *parts = malloc(4 * sizeof *parts),
                 *merged = malloc(sizeof *merged);
    CU_ASSERT_FATAL(all && parts && merged);
    bench_hist_reset(all);
    bench_hist_reset(merged);
    for (int p = 0; p < 4; p++)
        bench_hist_reset(&parts[p]);
    for (int i = 0; i < 200000; i++) {
        uint64_t x = tb_log_uniform(&rng, 1, UINT64_C(100000000000));
        bench_hist_record(all, x);
        bench_hist_record(&parts[tb_next(&rng) % 3], x); /* parts[3] stays empty */
    }
    for (int p = 3; p >= 0; p--)
        bench_hist_merge(merged, &parts[p]);
    CU_ASSERT(bench_hist_equal(merged, all));
    CU_ASSERT(all->clamped > 0);
    CU_ASSERT_EQUAL(all->max_ns, BENCH_HIST_MAX_NS);
    /* record_n is n records */
    bench_hist_t *a = &parts[0], *b = &parts[1];
    bench_hist_reset(a);
    bench_hist_reset(b);
    bench_hist_record_n(a, 12345, 7);
    for (int i = 0; i < 7; i++)
        bench_hist_record(b, 12345);
    CU_ASSERT(bench_hist_equal(a, b));
    free(merged);
    free(parts);
    free(all);
}

static void test_empty_and_edges(void)
{
    bench_hist_t h;
    bench_hist_reset(&h);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, 0.5), 0);
    bench_summary_t s;
    bench_hist_summary(&h, &s);
    CU_ASSERT_EQUAL(s.count, 0);
    bench_hist_record(&h, 0);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, 1.0), 0);
    bench_hist_record(&h, UINT64_C(3600000000000)); /* an hour: clamped */
    CU_ASSERT_EQUAL(h.clamped, 1);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, 1.0), BENCH_HIST_MAX_NS);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, 0.0), 0);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, 0.5), 0);
    CU_ASSERT_EQUAL(bench_hist_quantile(&h, NAN), 0);
}

static void roundtrip(const bench_hist_t *h)
{
    static uint8_t buf[BENCH_HIST_MAX_ENCODED], buf2[BENCH_HIST_MAX_ENCODED];
    static bench_hist_t back;
    size_t len = 0, len2 = 0;
    CU_ASSERT_EQUAL_FATAL(bench_hist_encode(h, buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(len, bench_hist_encoded_size(h));
    CU_ASSERT_EQUAL(bench_hist_encode(h, buf, len - 1, &len2), GD_EINVAL);
    CU_ASSERT_EQUAL_FATAL(bench_hist_decode(buf, len, &back), 0);
    CU_ASSERT(bench_hist_equal(&back, h));
    CU_ASSERT_EQUAL_FATAL(bench_hist_encode(&back, buf2, sizeof buf2, &len2), 0);
    CU_ASSERT(len2 == len && memcmp(buf, buf2, len) == 0);
}

static void test_encode_roundtrip(void)
{
    static bench_hist_t h;
    bench_hist_reset(&h);
    roundtrip(&h);
    bench_hist_record(&h, 0);
    roundtrip(&h);
    tb_rng_t rng = {7};
    for (int i = 0; i < 100000; i++)
        bench_hist_record(&h, tb_log_uniform(&rng, 1, UINT64_C(90000000000)));
    roundtrip(&h);
    /* every bucket at the largest count: the worst-case size fits */
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        h.counts[i] = UINT64_MAX;
    h.count = h.sum_ns = UINT64_MAX;
    size_t n = bench_hist_encoded_size(&h);
    printf("\n  100k-sample encoding ok; worst case %zu bytes (bound %d)\n", n,
           (int)BENCH_HIST_MAX_ENCODED);
    CU_ASSERT(n <= BENCH_HIST_MAX_ENCODED);
}

/* Re-seals a mutated buffer with a correct CRC, so only the structural
 * checks stand between it and acceptance. */
static void reseal(uint8_t *b, size_t len)
{
    bench_put32(b + len - 4, bench_crc32(b, len - 4));
}

static void test_decode_rejects(void)
{
    static bench_hist_t h, out;
    static uint8_t buf[BENCH_HIST_MAX_ENCODED], mut[BENCH_HIST_MAX_ENCODED + 16];
    bench_hist_reset(&h);
    tb_rng_t rng = {99};
    for (int i = 0; i < 3000; i++)
        bench_hist_record(&h, tb_log_uniform(&rng, 100, UINT64_C(5000000000)));
    size_t len;
    CU_ASSERT_EQUAL_FATAL(bench_hist_encode(&h, buf, sizeof buf, &len), 0);

    /* every truncation */
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(mut, buf, cut);
        if (bench_hist_decode(mut, cut, &out) != GD_EINVAL) {
            printf("\ntruncation to %zu accepted\n", cut);
            CU_FAIL("truncation accepted");
        }
    }
    /* every single-byte corruption, with several patterns */
    static const uint8_t flips[] = {0x01, 0x02, 0x10, 0x80, 0xFF};
    size_t accepted = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(mut, buf, len);
            mut[pos] ^= flips[f];
            if (bench_hist_decode(mut, len, &out) == 0)
                accepted++;
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    /* an extra byte */
    memcpy(mut, buf, len);
    mut[len] = 0;
    CU_ASSERT_EQUAL(bench_hist_decode(mut, len + 1, &out), GD_EINVAL);
    /* failed decodes leave an empty histogram */
    CU_ASSERT_EQUAL(out.count, 0);

    /* structural corruptions with a valid CRC: every single-byte change of
     * the body, re-sealed, is either rejected or decodes to a consistent
     * histogram that re-encodes to exactly those bytes */
    size_t structural_ok = 0;
    for (size_t pos = 0; pos < len - 4; pos++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(mut, buf, len);
            mut[pos] ^= flips[f];
            reseal(mut, len);
            if (bench_hist_decode(mut, len, &out) == 0) {
                static uint8_t again[BENCH_HIST_MAX_ENCODED];
                size_t alen;
                CU_ASSERT_EQUAL_FATAL(bench_hist_encode(&out, again, sizeof again, &alen), 0);
                CU_ASSERT_FATAL(alen == len && memcmp(again, mut, len) == 0);
                bench_summary_t s;
                bench_hist_summary(&out, &s);
                CU_ASSERT_FATAL(s.min_ns <= s.p50_ns && s.p50_ns <= s.max_ns);
                structural_ok++;
            }
        }
    }
    printf("\n  %zu re-sealed single-byte changes decode consistently; the rest rejected\n",
           structural_ok);
}

/* Hand-made encodings that a hostile peer could send with a valid CRC. */
static size_t build(uint8_t *b, const uint64_t *fields, size_t n_fields)
{
    size_t n = 0;
    b[n++] = 'g';
    b[n++] = 'h';
    b[n++] = BENCH_HIST_VERSION;
    for (size_t i = 0; i < n_fields; i++)
        n += bench_varint_put(b + n, fields[i]);
    bench_put32(b + n, bench_crc32(b, n));
    return n + 4;
}

static void test_decode_crafted(void)
{
    static bench_hist_t out;
    uint8_t b[256];
    size_t n;
    /* count min max sum clamped nonzero (gap count)* */
    const uint64_t good[] = {2, 1000, 1000, 2000, 0, 1, bench_hist_index(1000), 2};
    n = build(b, good, 8);
    CU_ASSERT_EQUAL(bench_hist_decode(b, n, &out), 0);
    CU_ASSERT_EQUAL(out.count, 2);
    const uint64_t bad_total[] = {3, 1000, 1000, 3000, 0, 1, bench_hist_index(1000), 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, bad_total, 8), &out), GD_EINVAL);
    const uint64_t bad_min[] = {2, 10, 1000, 2000, 0, 1, bench_hist_index(1000), 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, bad_min, 8), &out), GD_EINVAL);
    const uint64_t bad_sum[] = {2, 1000, 1000, 5000, 0, 1, bench_hist_index(1000), 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, bad_sum, 8), &out), GD_EINVAL);
    const uint64_t bad_gap[] = {2, 1000, 1000, 2000, 0, 1, BENCH_HIST_BUCKETS, 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, bad_gap, 8), &out), GD_EINVAL);
    const uint64_t huge_gap[] = {2, 1000, 1000, 2000, 0, 1, UINT64_MAX, 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, huge_gap, 8), &out), GD_EINVAL);
    const uint64_t zero_count[] = {0, 0, 0, 0, 0, 1, 5, 0};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, zero_count, 8), &out), GD_EINVAL);
    const uint64_t too_many[] = {1, 1000, 1000, 1000, 0, BENCH_HIST_BUCKETS + 1};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, too_many, 6), &out), GD_EINVAL);
    const uint64_t bad_clamp[] = {2, 1000, 1000, 2000, 1, 1, bench_hist_index(1000), 2};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, bad_clamp, 8), &out), GD_EINVAL);
    const uint64_t over_max[] = {1,
                                 BENCH_HIST_MAX_NS + 1,
                                 BENCH_HIST_MAX_NS + 1,
                                 BENCH_HIST_MAX_NS + 1,
                                 0,
                                 1,
                                 BENCH_HIST_BUCKETS - 1,
                                 1};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, over_max, 8), &out), GD_EINVAL);
    const uint64_t empty_junk[] = {0, 0, 7, 0, 0, 0};
    CU_ASSERT_EQUAL(bench_hist_decode(b, build(b, empty_junk, 6), &out), GD_EINVAL);
    /* non-canonical varint: 1 written as 0x81 0x00 */
    n = build(b, good, 8);
    uint8_t nc[260] = {'g', 'h', BENCH_HIST_VERSION, 0x82, 0x00};
    memcpy(nc + 5, b + 4, n - 4 - 4);
    size_t ncl = 5 + n - 8;
    bench_put32(nc + ncl, bench_crc32(nc, ncl));
    CU_ASSERT_EQUAL(bench_hist_decode(nc, ncl + 4, &out), GD_EINVAL);
    /* wrong version, wrong magic */
    n = build(b, good, 8);
    b[2] = BENCH_HIST_VERSION + 1;
    reseal(b, n);
    CU_ASSERT_EQUAL(bench_hist_decode(b, n, &out), GD_EINVAL);
    b[2] = BENCH_HIST_VERSION;
    b[0] = 'G';
    reseal(b, n);
    CU_ASSERT_EQUAL(bench_hist_decode(b, n, &out), GD_EINVAL);
    CU_ASSERT_EQUAL(bench_hist_decode(NULL, 0, &out), GD_EINVAL);
}

static void test_varint(void)
{
    uint8_t b[16];
    static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, UINT64_MAX / 3, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = bench_varint_put(b, vals[i]), pos = 0;
        uint64_t v;
        CU_ASSERT_EQUAL(bench_varint_get(b, n, &pos, &v), 0);
        CU_ASSERT_EQUAL(v, vals[i]);
        CU_ASSERT_EQUAL(pos, n);
        pos = 0;
        CU_ASSERT_EQUAL(bench_varint_get(b, n - 1, &pos, &v), GD_EINVAL);
    }
    /* 11 bytes, and bit 64 set in the 10th */
    uint8_t over[11] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0};
    size_t pos = 0;
    uint64_t v;
    CU_ASSERT_EQUAL(bench_varint_get(over, sizeof over, &pos, &v), GD_EINVAL);
}

static const gd_test_case_t gd_tests[] = {
    {"bucket layout", test_layout},
    {"percentiles vs sorted 1M samples", test_percentiles_vs_sorted},
    {"merge equals recording all", test_merge_equals_all},
    {"empty, zero and clamped values", test_empty_and_edges},
    {"encode/decode round trip", test_encode_roundtrip},
    {"decode rejects truncation and corruption", test_decode_rejects},
    {"decode rejects crafted encodings", test_decode_crafted},
    {"varints", test_varint},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_hist", gd_tests)
