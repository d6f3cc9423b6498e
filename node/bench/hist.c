/*
 * hist.c — the log-linear latency histogram and its byte encoding.
 *
 * Bucket layout (bench.h): values below 256 ns each have a bucket; from 256
 * on, [2^e, 2^(e+1)) is split into 128 equal buckets, so the width of a
 * bucket is at most 1/128 of its lower bound and its midpoint is within
 * 1/256 (0.4%) of any value in it: below the 1% the report promises, with
 * 3840 counters (30 KiB) for 0 to 60 s.  Recording is a count-leading-zeros,
 * a shift and an add.
 *
 * Encoding (version 1), everything after the magic as canonical LEB128:
 *   'g' 'h' version count min max sum clamped nonzero
 *   nonzero × (gap count)     gap = index - (previous index + 1), count >= 1
 *   CRC-32 of all preceding bytes, 4 bytes little-endian
 * Decoding trusts nothing: the CRC catches corruption a peer's bug or the
 * wire could cause, and the structural checks (every index in range, the
 * bucket counts adding up to count, min and max in the first and last
 * non-empty buckets, sum between count*min and count*max) reject anything a
 * hostile peer could craft with a correct CRC.  Varints must be minimal, so
 * a decodable buffer is exactly the encoding of what it decodes to.
 */
#include "internal.h"

#include <math.h>
#include <zlib.h>

#define HIST_MAGIC0 'g'
#define HIST_MAGIC1 'h'
#define HIST_HEADER 3
#define HIST_CRC 4

GD_STATIC_ASSERT(BENCH_HIST_MAX_NS >> BENCH_HIST_TOP_EXP == 1,
                 "60 s lies in the top power of two of the layout");

size_t bench_varint_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t byte = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v != 0)
            byte |= 0x80;
        if (out != NULL)
            out[n] = byte;
        n++;
    } while (v != 0);
    return n;
}

int bench_varint_get(const uint8_t *in, size_t len, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    size_t p = *pos;
    for (unsigned i = 0; i < BENCH_VARINT_MAX; i++) {
        if (p >= len)
            return GD_EINVAL;
        uint8_t byte = in[p++];
        /* the 10th byte holds bit 63 only */
        if (i == BENCH_VARINT_MAX - 1 && byte > 1)
            return GD_EINVAL;
        r |= (uint64_t)(byte & 0x7F) << (7 * i);
        if ((byte & 0x80) == 0) {
            /* a zero last byte after the first is a redundant encoding */
            if (byte == 0 && i > 0)
                return GD_EINVAL;
            *pos = p;
            *v = r;
            return 0;
        }
    }
    return GD_EINVAL;
}

uint32_t bench_crc32(const uint8_t *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > 0x40000000u ? 0x40000000u : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

void bench_hist_reset(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

uint32_t bench_hist_index(uint64_t ns)
{
    if (ns > BENCH_HIST_MAX_NS)
        ns = BENCH_HIST_MAX_NS;
    if (ns < BENCH_HIST_LINEAR)
        return (uint32_t)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* >= SUB_BITS + 1 */
    unsigned shift = e - BENCH_HIST_SUB_BITS;
    uint32_t sub = (uint32_t)(ns >> shift) - BENCH_HIST_SUB_COUNT;
    return BENCH_HIST_LINEAR + (e - BENCH_HIST_SUB_BITS - 1) * BENCH_HIST_SUB_COUNT + sub;
}

uint64_t bench_hist_bucket_low(uint32_t i)
{
    if (i < BENCH_HIST_LINEAR)
        return i;
    uint32_t k = i - BENCH_HIST_LINEAR;
    unsigned shift = k / BENCH_HIST_SUB_COUNT + 1; /* e - SUB_BITS */
    uint64_t sub = k % BENCH_HIST_SUB_COUNT;
    return (BENCH_HIST_SUB_COUNT + sub) << shift;
}

uint64_t bench_hist_bucket_high(uint32_t i)
{
    if (i < BENCH_HIST_LINEAR)
        return i;
    uint32_t k = i - BENCH_HIST_LINEAR;
    unsigned shift = k / BENCH_HIST_SUB_COUNT + 1;
    return bench_hist_bucket_low(i) + (UINT64_C(1) << shift) - 1;
}

void bench_hist_record_n(bench_hist_t *h, uint64_t ns, uint64_t n)
{
    if (n == 0)
        return;
    if (ns > BENCH_HIST_MAX_NS) {
        ns = BENCH_HIST_MAX_NS;
        h->clamped = bench_sat_add(h->clamped, n);
    }
    uint32_t i = bench_hist_index(ns);
    h->counts[i] = bench_sat_add(h->counts[i], n);
    if (h->count == 0 || ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
    uint64_t add;
    if (__builtin_mul_overflow(ns, n, &add))
        add = UINT64_MAX;
    h->sum_ns = bench_sat_add(h->sum_ns, add);
    h->count = bench_sat_add(h->count, n);
}

void bench_hist_record(bench_hist_t *h, uint64_t ns)
{
    bench_hist_record_n(h, ns, 1);
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
    dst->count = bench_sat_add(dst->count, src->count);
    dst->sum_ns = bench_sat_add(dst->sum_ns, src->sum_ns);
    dst->clamped = bench_sat_add(dst->clamped, src->clamped);
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] = bench_sat_add(dst->counts[i], src->counts[i]);
}

/* The value reported for bucket i: its midpoint, within [min, max]. */
static uint64_t bucket_value(const bench_hist_t *h, uint32_t i)
{
    uint64_t lo = bench_hist_bucket_low(i), hi = bench_hist_bucket_high(i);
    uint64_t v = lo + (hi - lo) / 2;
    if (v < h->min_ns)
        v = h->min_ns;
    if (v > h->max_ns)
        v = h->max_ns;
    return v;
}

/* The rank (1-based) of quantile q among count samples. */
static uint64_t quantile_rank(uint64_t count, double q)
{
    if (!(q > 0.0))
        return 1;
    if (q >= 1.0)
        return count;
    double r = ceil(q * (double)count);
    if (r < 1.0)
        return 1;
    if (r >= (double)count)
        return count;
    return (uint64_t)r;
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (!(q > 0.0))
        return h->min_ns;
    if (q >= 1.0)
        return h->max_ns;
    uint64_t rank = quantile_rank(h->count, q), seen = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return bucket_value(h, i);
    }
    return h->max_ns; /* saturated counts: the walk fell short */
}

void bench_hist_summary(const bench_hist_t *h, bench_summary_t *out)
{
    memset(out, 0, sizeof *out);
    if (h->count == 0)
        return;
    out->count = h->count;
    out->min_ns = h->min_ns;
    out->max_ns = h->max_ns;
    out->mean_ns = (double)h->sum_ns / (double)h->count;
    static const double qs[4] = {0.50, 0.90, 0.99, 0.999};
    uint64_t *dst[4] = {&out->p50_ns, &out->p90_ns, &out->p99_ns, &out->p999_ns};
    uint64_t ranks[4];
    for (int k = 0; k < 4; k++) {
        ranks[k] = quantile_rank(h->count, qs[k]);
        *dst[k] = h->max_ns;
    }
    uint64_t seen = 0;
    int k = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS && k < 4; i++) {
        seen += h->counts[i];
        while (k < 4 && seen >= ranks[k])
            *dst[k++] = bucket_value(h, i);
    }
}

bool bench_hist_equal(const bench_hist_t *a, const bench_hist_t *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* The single walk behind both bench_hist_encoded_size and bench_hist_encode
 * (out NULL: only the size), so the two cannot drift apart. */
static size_t encode_into(const bench_hist_t *h, uint8_t *out)
{
    size_t n = 0;
    uint8_t *p = out;
#define PUT_VARINT(v) (n += bench_varint_put(p ? p + n : NULL, (v)))
    if (p != NULL) {
        p[0] = HIST_MAGIC0;
        p[1] = HIST_MAGIC1;
        p[2] = BENCH_HIST_VERSION;
    }
    n = HIST_HEADER;
    uint64_t nonzero = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        nonzero += h->counts[i] != 0;
    PUT_VARINT(h->count);
    PUT_VARINT(h->min_ns);
    PUT_VARINT(h->max_ns);
    PUT_VARINT(h->sum_ns);
    PUT_VARINT(h->clamped);
    PUT_VARINT(nonzero);
    uint32_t next = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        PUT_VARINT(i - next);
        PUT_VARINT(h->counts[i]);
        next = i + 1;
    }
#undef PUT_VARINT
    if (p != NULL)
        bench_put32(p + n, bench_crc32(p, n));
    return n + HIST_CRC;
}

size_t bench_hist_encoded_size(const bench_hist_t *h)
{
    return encode_into(h, NULL);
}

int bench_hist_encode(const bench_hist_t *h, uint8_t *out, size_t cap, size_t *len)
{
    size_t need = encode_into(h, NULL);
    if (need > cap)
        return GD_EINVAL;
    encode_into(h, out);
    *len = need;
    return 0;
}

/* Checks the header fields against the decoded buckets. */
static int check_consistent(const bench_hist_t *h, uint64_t total, uint32_t first, uint32_t last)
{
    if (total != h->count)
        return GD_EINVAL;
    if (h->count == 0)
        return (h->min_ns | h->max_ns | h->sum_ns | h->clamped) == 0 ? 0 : GD_EINVAL;
    if (h->min_ns > h->max_ns || h->max_ns > BENCH_HIST_MAX_NS)
        return GD_EINVAL;
    if (bench_hist_index(h->min_ns) != first || bench_hist_index(h->max_ns) != last)
        return GD_EINVAL;
    /* clamped samples were recorded as exactly 60 s, in the last bucket */
    if (h->clamped > 0 && (h->max_ns != BENCH_HIST_MAX_NS || h->clamped > h->counts[last]))
        return GD_EINVAL;
    uint64_t lo, hi;
    if (__builtin_mul_overflow(h->min_ns, h->count, &lo))
        lo = UINT64_MAX;
    if (__builtin_mul_overflow(h->max_ns, h->count, &hi))
        hi = UINT64_MAX;
    if (h->sum_ns < lo || h->sum_ns > hi)
        return GD_EINVAL;
    return 0;
}

static int decode_fields(const uint8_t *in, size_t len, bench_hist_t *h)
{
    if (len < HIST_HEADER + HIST_CRC || in[0] != HIST_MAGIC0 || in[1] != HIST_MAGIC1 ||
        in[2] != BENCH_HIST_VERSION)
        return GD_EINVAL;
    size_t body = len - HIST_CRC;
    if (bench_get32(in + body) != bench_crc32(in, body))
        return GD_EINVAL;
    size_t pos = HIST_HEADER;
    uint64_t nonzero;
    if (bench_varint_get(in, body, &pos, &h->count) != 0 ||
        bench_varint_get(in, body, &pos, &h->min_ns) != 0 ||
        bench_varint_get(in, body, &pos, &h->max_ns) != 0 ||
        bench_varint_get(in, body, &pos, &h->sum_ns) != 0 ||
        bench_varint_get(in, body, &pos, &h->clamped) != 0 ||
        bench_varint_get(in, body, &pos, &nonzero) != 0)
        return GD_EINVAL;
    if (nonzero > BENCH_HIST_BUCKETS)
        return GD_EINVAL;
    uint64_t next = 0, total = 0;
    uint32_t first = 0, last = 0;
    for (uint64_t k = 0; k < nonzero; k++) {
        uint64_t gap, c;
        if (bench_varint_get(in, body, &pos, &gap) != 0 ||
            bench_varint_get(in, body, &pos, &c) != 0)
            return GD_EINVAL;
        if (gap >= BENCH_HIST_BUCKETS - next || c == 0)
            return GD_EINVAL;
        uint32_t i = (uint32_t)(next + gap);
        if (__builtin_add_overflow(total, c, &total))
            return GD_EINVAL;
        h->counts[i] = c;
        if (k == 0)
            first = i;
        last = i;
        next = (uint64_t)i + 1;
    }
    if (pos != body)
        return GD_EINVAL;
    return check_consistent(h, total, first, last);
}

int bench_hist_decode(const uint8_t *in, size_t len, bench_hist_t *h)
{
    bench_hist_reset(h);
    int rc = decode_fields(in, len, h);
    if (rc != 0)
        bench_hist_reset(h);
    return rc;
}
