/*
 * test_series.c — per-interval recording of node/bench/: open-loop latency
 * from the intended send time, warm-up, empty and late intervals, merge of
 * recorders equal to one recorder of everything, and the series encoding
 * (round trip, truncation and corruption rejected).
 */
#include <stdlib.h>

#include "bench_lib_util.h"
#include "cunit_main.h"
#include "internal.h"

#define SEC UINT64_C(1000000000)
#define US UINT64_C(1000)

/* Encodes s (the canonical bytes two equal series share). */
static uint8_t *enc(const bench_series_t *s, size_t *len)
{
    uint8_t *b = NULL;
    CU_ASSERT_EQUAL_FATAL(bench_series_encode(s, &b, len), 0);
    return b;
}

static bool series_equal(const bench_series_t *a, const bench_series_t *b)
{
    size_t la, lb;
    uint8_t *ea = enc(a, &la), *eb = enc(b, &lb);
    bool eq = la == lb && memcmp(ea, eb, la) == 0;
    free(ea);
    free(eb);
    return eq;
}

static void test_intervals(void)
{
    bench_series_t *s;
    CU_ASSERT_EQUAL(bench_series_new(0, 0, &s), GD_EINVAL);
    CU_ASSERT_EQUAL_FATAL(bench_series_new(10 * SEC, SEC, &s), 0);
    static bench_hist_t scratch;
    bench_interval_t iv;
    /* warm-up completions count nowhere else */
    CU_ASSERT_EQUAL(bench_series_record(s, 9 * SEC, 9 * SEC + 5 * US, true), 0);
    CU_ASSERT_EQUAL(bench_series_warmup(s), 1);
    CU_ASSERT_EQUAL(bench_series_len(s), 0);
    /* interval 1: open loop, intended long before done (a stall) */
    CU_ASSERT_EQUAL(bench_series_record(s, 11 * SEC, 11 * SEC + 100 * US, true), 0);
    CU_ASSERT_EQUAL(bench_series_record(s, 11 * SEC, 11 * SEC + 500 * 1000 * US, false), 0);
    CU_ASSERT_EQUAL(bench_series_len(s), 2);
    /* interval 3 (2 stays empty) */
    CU_ASSERT_EQUAL(bench_series_record(s, 13 * SEC, 13 * SEC + 20 * US, true), 0);
    /* a done time before the open interval counts in it; done before
     * intended is latency 0 */
    CU_ASSERT_EQUAL(bench_series_record(s, 12 * SEC, 11 * SEC, true), 0);
    CU_ASSERT_EQUAL(bench_series_len(s), 4);
    CU_ASSERT_EQUAL(bench_series_interval(s, 4, &scratch, &iv), GD_EINVAL);

    CU_ASSERT_EQUAL_FATAL(bench_series_interval(s, 0, &scratch, &iv), 0);
    CU_ASSERT_EQUAL(iv.ops, 0);
    CU_ASSERT_EQUAL(iv.lat.count, 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_interval(s, 1, &scratch, &iv), 0);
    CU_ASSERT_EQUAL(iv.start_ns, SEC);
    CU_ASSERT_EQUAL(iv.ops, 2);
    CU_ASSERT_EQUAL(iv.errors, 1);
    CU_ASSERT_EQUAL(iv.lat.min_ns, 100 * US);
    CU_ASSERT_EQUAL(iv.lat.max_ns, 500 * 1000 * US);
    CU_ASSERT_EQUAL_FATAL(bench_series_interval(s, 2, &scratch, &iv), 0);
    CU_ASSERT_EQUAL(iv.ops, 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_interval(s, 3, &scratch, &iv), 0);
    CU_ASSERT_EQUAL(iv.ops, 2);
    CU_ASSERT_EQUAL(iv.lat.min_ns, 0);
    CU_ASSERT_EQUAL(iv.lat.max_ns, 20 * US);
    const bench_hist_t *t = bench_series_total(s);
    CU_ASSERT_EQUAL(t->count, 4);
    CU_ASSERT_EQUAL(bench_series_errors(s), 1);
    /* far in the future: refused, nothing changed */
    CU_ASSERT_EQUAL(
        bench_series_record(s, 0, 10 * SEC + (uint64_t)BENCH_SERIES_MAX_INTERVALS * SEC, true),
        GD_ESYSTEM_LIMIT);
    CU_ASSERT_EQUAL(bench_series_len(s), 4);
    CU_ASSERT_EQUAL(bench_series_total(s)->count, 4);
    bench_series_free(s);
}

/* Four recorders (as four scheduler threads) merged equal one recorder of
 * every sample, whatever the order of merging and whoever ran longest. */
static void test_merge_equals_one(void)
{
    bench_series_t *all, *part[4], *merged;
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &all), 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &merged), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &part[i]), 0);
    tb_rng_t rng = {12345};
    uint64_t now = SEC / 2; /* starts in warm-up (latencies are below 50 ms) */
    for (int k = 0; k < 40000; k++) {
        now += tb_next(&rng) % (200 * US);
        int p = (int)(tb_next(&rng) % 4);
        if (p == 3 && now > 3 * SEC)
            p = 2; /* recorder 3 stops early: the others run longer */
        uint64_t lat = tb_log_uniform(&rng, 1000, 50 * 1000 * 1000);
        bool ok = tb_next(&rng) % 50 != 0;
        /* completions in time order (each recorder's clock only moves
         * forward); the intended send times are earlier by the latency */
        uint64_t intended = now - lat;
        CU_ASSERT_EQUAL_FATAL(bench_series_record(all, intended, now, ok), 0);
        CU_ASSERT_EQUAL_FATAL(bench_series_record(part[p], intended, now, ok), 0);
    }
    CU_ASSERT(bench_series_warmup(all) > 0);
    CU_ASSERT(bench_series_len(part[3]) < bench_series_len(all));
    /* merge a short one first, then the others, into an empty series */
    static const int order[4] = {3, 0, 2, 1};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(bench_series_merge(merged, part[order[i]]), 0);
    CU_ASSERT(series_equal(merged, all));
    CU_ASSERT(bench_hist_equal(bench_series_total(merged), bench_series_total(all)));
    CU_ASSERT_EQUAL(bench_series_errors(merged), bench_series_errors(all));
    /* a remote node's series starts at its own clock's run start: merged
     * by interval index, it adds the same as a local one */
    bench_series_t *remote, *local2;
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC * 1000, SEC / 4, &remote), 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &local2), 0);
    for (uint64_t k = 0; k < 100; k++) {
        uint64_t off = k * (SEC / 50), lat = 1000 + k * 10;
        CU_ASSERT_EQUAL_FATAL(
            bench_series_record(remote, SEC * 1000 + off, SEC * 1000 + off + lat, true), 0);
        CU_ASSERT_EQUAL_FATAL(bench_series_record(local2, SEC + off, SEC + off + lat, true), 0);
    }
    bench_series_t *m1, *m2;
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &m1), 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC / 4, &m2), 0);
    CU_ASSERT_EQUAL(bench_series_merge(m1, all), 0);
    CU_ASSERT_EQUAL(bench_series_merge(m1, remote), 0);
    CU_ASSERT_EQUAL(bench_series_merge(m2, all), 0);
    CU_ASSERT_EQUAL(bench_series_merge(m2, local2), 0);
    CU_ASSERT(series_equal(m1, m2));
    CU_ASSERT_EQUAL(bench_series_start_ns(m1), SEC);
    bench_series_free(m1);
    bench_series_free(m2);
    bench_series_free(remote);
    bench_series_free(local2);
    /* mismatched interval lengths are refused */
    bench_series_t *other;
    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC, &other), 0);
    CU_ASSERT_EQUAL(bench_series_merge(other, all), GD_EINVAL);
    CU_ASSERT_EQUAL(bench_series_merge(all, all), GD_EINVAL);
    bench_series_free(other);
    for (int i = 0; i < 4; i++)
        bench_series_free(part[i]);
    bench_series_free(merged);
    bench_series_free(all);
}

static void test_encode_roundtrip_and_rejects(void)
{
    bench_series_t *s = tb_synthetic_series(5, 9, 2000, 80.0), *back = NULL, *empty;
    CU_ASSERT_FATAL(s != NULL);
    size_t len;
    uint8_t *b = enc(s, &len);
    printf("\n  9 intervals, 18000 samples: %zu bytes encoded\n", len);
    CU_ASSERT_EQUAL_FATAL(bench_series_decode(b, len, &back), 0);
    CU_ASSERT(series_equal(s, back));
    /* a decoded series keeps recording and merging like the original */
    CU_ASSERT_EQUAL(bench_series_record(back, 10 * SEC, 10 * SEC + 7 * US, true), 0);
    CU_ASSERT_EQUAL(bench_series_merge(back, s), 0);
    CU_ASSERT_EQUAL(bench_series_total(back)->count, 2 * bench_series_total(s)->count + 1);
    bench_series_free(back);

    uint8_t *mut = malloc(len + 1);
    CU_ASSERT_FATAL(mut != NULL);
    size_t accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(mut, b, cut);
        back = NULL;
        if (bench_series_decode(mut, cut, &back) == 0) {
            accepted++;
            bench_series_free(back);
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    /* every byte, one flip each (a stride of patterns keeps it fast) */
    for (size_t pos = 0; pos < len; pos++) {
        memcpy(mut, b, len);
        mut[pos] ^= (uint8_t)(1u << (pos % 8));
        back = NULL;
        if (bench_series_decode(mut, len, &back) == 0) {
            accepted++;
            bench_series_free(back);
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    /* re-sealed header changes: interval count larger than the input can
     * hold, and totals that disagree with the intervals */
    memcpy(mut, b, len);
    mut[len - 5] ^= 1; /* last interval's histogram CRC, then re-seal */
    bench_put32(mut + len - 4, bench_crc32(mut, len - 4));
    CU_ASSERT_EQUAL(bench_series_decode(mut, len, &back), GD_EINVAL);
    free(mut);
    free(b);

    CU_ASSERT_EQUAL_FATAL(bench_series_new(SEC, SEC, &empty), 0);
    b = enc(empty, &len);
    CU_ASSERT_EQUAL_FATAL(bench_series_decode(b, len, &back), 0);
    CU_ASSERT_EQUAL(bench_series_len(back), 0);
    bench_series_free(back);
    free(b);
    bench_series_free(empty);
    bench_series_free(s);
}

/* Crafted series headers with correct CRCs. */
static void test_decode_crafted(void)
{
    uint8_t b[64];
    bench_series_t *back = NULL;
    /* start interval n warmup errors totallen: n huge */
    const uint64_t f[] = {0, SEC, UINT64_MAX, 0, 0, 0};
    size_t n = 3;
    b[0] = 's';
    b[1] = 'g';
    b[2] = 1;
    for (size_t i = 0; i < 6; i++)
        n += bench_varint_put(b + n, f[i]);
    bench_put32(b + n, bench_crc32(b, n));
    CU_ASSERT_EQUAL(bench_series_decode(b, n + 4, &back), GD_EINVAL);
    /* n = 1 with an empty interval */
    const uint64_t g[] = {0, SEC, 1, 0, 0, 0, 0, 0, 0};
    n = 3;
    for (size_t i = 0; i < 9; i++)
        n += bench_varint_put(b + n, g[i]);
    bench_put32(b + n, bench_crc32(b, n));
    CU_ASSERT_EQUAL(bench_series_decode(b, n + 4, &back), GD_EINVAL);
    /* interval 0 */
    const uint64_t z[] = {0, 0, 0, 0, 0, 0};
    n = 3;
    for (size_t i = 0; i < 6; i++)
        n += bench_varint_put(b + n, z[i]);
    bench_put32(b + n, bench_crc32(b, n));
    CU_ASSERT_EQUAL(bench_series_decode(b, n + 4, &back), GD_EINVAL);
}

/* Builds a one-interval series encoding whose totals are given apart from
 * the interval: total_ns the one sample of the total histogram, errors the
 * header's error count. */
static size_t build_one(uint8_t *b, uint64_t interval_ns_sample, uint64_t total_ns, uint64_t errors)
{
    static bench_hist_t h;
    uint8_t hb[64];
    size_t n = 3, hl;
    b[0] = 's';
    b[1] = 'g';
    b[2] = 1;
    const uint64_t head[] = {0, SEC, 1, 0, errors};
    for (size_t i = 0; i < 5; i++)
        n += bench_varint_put(b + n, head[i]);
    bench_hist_reset(&h);
    bench_hist_record(&h, total_ns);
    CU_ASSERT_EQUAL_FATAL(bench_hist_encode(&h, hb, sizeof hb, &hl), 0);
    n += bench_varint_put(b + n, hl);
    memcpy(b + n, hb, hl);
    n += hl;
    n += bench_varint_put(b + n, 1); /* ops */
    n += bench_varint_put(b + n, 0); /* errors */
    bench_hist_reset(&h);
    bench_hist_record(&h, interval_ns_sample);
    CU_ASSERT_EQUAL_FATAL(bench_hist_encode(&h, hb, sizeof hb, &hl), 0);
    n += bench_varint_put(b + n, hl);
    memcpy(b + n, hb, hl);
    n += hl;
    bench_put32(b + n, bench_crc32(b, n));
    return n + 4;
}

/* Valid pieces that do not add up: the totals must equal the intervals. */
static void test_decode_inconsistent(void)
{
    uint8_t b[256];
    bench_series_t *back = NULL;
    size_t n = build_one(b, 100 * US, 100 * US, 0);
    CU_ASSERT_EQUAL_FATAL(bench_series_decode(b, n, &back), 0);
    bench_series_free(back);
    n = build_one(b, 100 * US, 200 * US, 0);
    CU_ASSERT_EQUAL(bench_series_decode(b, n, &back), GD_EINVAL);
    n = build_one(b, 100 * US, 100 * US, 1);
    CU_ASSERT_EQUAL(bench_series_decode(b, n, &back), GD_EINVAL);
}

static const gd_test_case_t gd_tests[] = {
    {"intervals, warm-up, open loop", test_intervals},
    {"merge of recorders equals one recorder", test_merge_equals_one},
    {"encode round trip, truncation and corruption", test_encode_roundtrip_and_rejects},
    {"decode rejects crafted headers", test_decode_crafted},
    {"decode rejects totals that disagree with the intervals", test_decode_inconsistent},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_series", gd_tests)
