/*
 * fz_bench_hist.c — libFuzzer harness for the two byte encodings of
 * node/bench/ that remote client nodes send back: a latency histogram and a
 * whole time series.  The first input byte picks the decoder (bit 1) and
 * whether the harness re-seals the CRC-32 trailer (bit 0), so that most
 * inputs reach the structural checks behind the CRC instead of stopping at
 * it.  Oracle: no crash, over-read or leak (ASan/LSan); a decoded value
 * re-encodes to exactly the input bytes (the encoding is canonical); its
 * percentiles are ordered and within [min, max]; a decoded series keeps
 * working (merge into a fresh series of the same shape).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_summary(const bench_hist_t *h)
{
    bench_summary_t s;
    bench_hist_summary(h, &s);
    if (s.count == 0)
        return;
    if (!(s.min_ns <= s.p50_ns && s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns &&
          s.p99_ns <= s.p999_ns && s.p999_ns <= s.max_ns && s.max_ns <= BENCH_HIST_MAX_NS))
        abort();
}

static void fuzz_hist(const uint8_t *in, size_t len)
{
    static bench_hist_t h;
    static uint8_t again[BENCH_HIST_MAX_ENCODED];
    if (bench_hist_decode(in, len, &h) != 0) {
        if (h.count != 0)
            abort(); /* a failed decode leaves an empty histogram */
        return;
    }
    size_t n;
    if (bench_hist_encode(&h, again, sizeof again, &n) != 0 || n != len ||
        memcmp(again, in, len) != 0)
        abort();
    check_summary(&h);
}

static void fuzz_series(const uint8_t *in, size_t len)
{
    bench_series_t *s = NULL, *fresh = NULL;
    if (bench_series_decode(in, len, &s) != 0)
        return;
    uint8_t *again = NULL;
    size_t n;
    if (bench_series_encode(s, &again, &n) == 0) {
        if (n != len || memcmp(again, in, len) != 0)
            abort();
        free(again);
    }
    check_summary(bench_series_total(s));
    if (bench_series_new(bench_series_start_ns(s), bench_series_interval_ns(s), &fresh) == 0) {
        if (bench_series_merge(fresh, s) == 0 &&
            !bench_hist_equal(bench_series_total(fresh), bench_series_total(s)))
            abort();
        bench_series_free(fresh);
    }
    bench_series_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t len = size - 1;
    uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
    if (copy == NULL)
        return 0;
    memcpy(copy, data + 1, len);
    if ((mode & 1) && len >= 4)
        bench_put32(copy + len - 4, bench_crc32(copy, len - 4));
    if (mode & 2)
        fuzz_series(copy, len);
    else
        fuzz_hist(copy, len);
    free(copy);
    return 0;
}
