/*
 * series.c — one recorder's time series: per interval, operations, errors
 * and the latency histogram of the operations that completed in it.
 *
 * The open (last) interval records into a full histogram; when a sample
 * opens a later interval, the closed one is packed into its bench_hist
 * encoding (a few hundred bytes instead of 30 KiB), so an hour of 1 s
 * intervals costs megabytes, not a hundred of them.  All latencies also go
 * into one total histogram.
 *
 * Encoding of a whole series (version 1), canonical LEB128 after the magic:
 *   's' 'g' version start interval n warmup errors
 *   total-histogram-length total-histogram
 *   n × (ops errors hist-length hist)      hist-length 0 for an empty interval
 *   CRC-32 of all preceding bytes, 4 bytes little-endian
 * Decoding checks every embedded histogram and that the intervals add up to
 * the totals.
 */
#include "internal.h"

#include <stdlib.h>

#define SERIES_MAGIC0 's'
#define SERIES_MAGIC1 'g'
#define SERIES_VERSION 1

typedef struct slot {
    uint64_t ops, errors;
    uint8_t *packed; /* NULL when empty or for the open interval */
    size_t packed_len;
} slot_t;

struct bench_series {
    uint64_t start_ns, interval_ns;
    size_t n, cap; /* intervals; slots[n - 1] is the open one */
    slot_t *slots;
    uint64_t warmup, errors;
    bench_hist_t open;  /* the open interval's latencies */
    bench_hist_t total; /* every latency */
};

int bench_series_new(uint64_t start_ns, uint64_t interval_ns, bench_series_t **out)
{
    if (interval_ns == 0)
        return GD_EINVAL;
    bench_series_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return GD_ENOMEM;
    s->start_ns = start_ns;
    s->interval_ns = interval_ns;
    *out = s;
    return 0;
}

void bench_series_free(bench_series_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->slots[i].packed);
    free(s->slots);
    free(s);
}

/* Makes room for `want` slots (new ones zeroed); nothing else changes. */
static int reserve_slots(bench_series_t *s, size_t want)
{
    if (want > BENCH_SERIES_MAX_INTERVALS)
        return GD_ESYSTEM_LIMIT;
    if (want <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 16;
    while (cap < want)
        cap *= 2;
    slot_t *p = realloc(s->slots, cap * sizeof *p);
    if (p == NULL)
        return GD_ENOMEM;
    memset(p + s->cap, 0, (cap - s->cap) * sizeof *p);
    s->slots = p;
    s->cap = cap;
    return 0;
}

/* Packs h into a new exact-size buffer (NULL, 0 for an empty histogram). */
static int pack(const bench_hist_t *h, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (h->count == 0)
        return 0;
    size_t need = bench_hist_encoded_size(h);
    uint8_t *p = malloc(need);
    if (p == NULL)
        return GD_ENOMEM;
    if (bench_hist_encode(h, p, need, len) != 0) {
        free(p);
        return GD_EINVAL;
    }
    *out = p;
    return 0;
}

/* Packs the open interval into its slot and empties `open`. */
static int close_open(bench_series_t *s)
{
    if (s->n == 0)
        return 0;
    slot_t *sl = &s->slots[s->n - 1];
    int rc = pack(&s->open, &sl->packed, &sl->packed_len);
    if (rc != 0)
        return rc;
    bench_hist_reset(&s->open);
    return 0;
}

int bench_series_record(bench_series_t *s, uint64_t intended_ns, uint64_t done_ns, bool ok)
{
    if (done_ns < s->start_ns) {
        s->warmup++;
        return 0;
    }
    uint64_t idx = (done_ns - s->start_ns) / s->interval_ns;
    if (idx >= BENCH_SERIES_MAX_INTERVALS)
        return GD_ESYSTEM_LIMIT;
    if (s->n == 0 || idx >= s->n) {
        int rc = reserve_slots(s, (size_t)idx + 1);
        if (rc == 0)
            rc = close_open(s);
        if (rc != 0)
            return rc;
        s->n = (size_t)idx + 1;
    }
    uint64_t lat = done_ns > intended_ns ? done_ns - intended_ns : 0;
    bench_hist_record(&s->open, lat);
    bench_hist_record(&s->total, lat);
    slot_t *sl = &s->slots[s->n - 1];
    sl->ops++;
    if (!ok) {
        sl->errors++;
        s->errors++;
    }
    return 0;
}

size_t bench_series_len(const bench_series_t *s)
{
    return s->n;
}

uint64_t bench_series_interval_ns(const bench_series_t *s)
{
    return s->interval_ns;
}

uint64_t bench_series_start_ns(const bench_series_t *s)
{
    return s->start_ns;
}

uint64_t bench_series_warmup(const bench_series_t *s)
{
    return s->warmup;
}

const bench_hist_t *bench_series_total(const bench_series_t *s)
{
    return &s->total;
}

uint64_t bench_series_errors(const bench_series_t *s)
{
    return s->errors;
}

/* Unpacks interval i's histogram into h. */
static int unpack(const bench_series_t *s, size_t i, bench_hist_t *h)
{
    if (i == s->n - 1) {
        memcpy(h, &s->open, sizeof *h);
        return 0;
    }
    const slot_t *sl = &s->slots[i];
    if (sl->packed == NULL) {
        bench_hist_reset(h);
        return 0;
    }
    return bench_hist_decode(sl->packed, sl->packed_len, h);
}

int bench_series_interval(const bench_series_t *s, size_t i, bench_hist_t *scratch,
                          bench_interval_t *out)
{
    if (i >= s->n)
        return GD_EINVAL;
    int rc = unpack(s, i, scratch);
    if (rc != 0)
        return rc;
    out->start_ns = (uint64_t)i * s->interval_ns;
    out->ops = s->slots[i].ops;
    out->errors = s->slots[i].errors;
    bench_hist_summary(scratch, &out->lat);
    return 0;
}

int bench_series_merge(bench_series_t *dst, const bench_series_t *src)
{
    if (dst->interval_ns != src->interval_ns)
        return GD_EINVAL;
    if (dst == src)
        return GD_EINVAL;
    bench_hist_t *a = NULL, *b = NULL;
    int rc = GD_ENOMEM;
    a = malloc(sizeof *a);
    b = malloc(sizeof *b);
    if (a == NULL || b == NULL)
        goto free_scratch;
    size_t n = src->n > dst->n ? src->n : dst->n;
    if ((rc = reserve_slots(dst, n)) != 0)
        goto free_scratch;
    if (n > dst->n) {
        /* the result's open interval is src's last: pack dst's open one */
        if ((rc = close_open(dst)) != 0)
            goto free_scratch;
        dst->n = n;
    }
    for (size_t i = 0; i < src->n; i++) {
        slot_t *sl = &dst->slots[i];
        if ((rc = unpack(src, i, a)) != 0)
            goto free_scratch;
        if (i == n - 1) {
            bench_hist_merge(&dst->open, a);
        } else if (a->count > 0) {
            if (sl->packed == NULL)
                bench_hist_reset(b);
            else if ((rc = bench_hist_decode(sl->packed, sl->packed_len, b)) != 0)
                goto free_scratch;
            bench_hist_merge(b, a);
            uint8_t *p;
            size_t len;
            if ((rc = pack(b, &p, &len)) != 0)
                goto free_scratch;
            free(sl->packed);
            sl->packed = p;
            sl->packed_len = len;
        }
        sl->ops = bench_sat_add(sl->ops, src->slots[i].ops);
        sl->errors = bench_sat_add(sl->errors, src->slots[i].errors);
    }
    bench_hist_merge(&dst->total, &src->total);
    dst->errors = bench_sat_add(dst->errors, src->errors);
    dst->warmup = bench_sat_add(dst->warmup, src->warmup);
    rc = 0;
free_scratch:
    free(b);
    free(a);
    return rc;
}

/* The walk shared by sizing and writing the encoding (out NULL: size only);
 * `open_packed` is the open interval's encoding, made by the caller. */
static size_t encode_series(const bench_series_t *s, const uint8_t *open_packed, size_t open_len,
                            const uint8_t *total, size_t total_len, uint8_t *out)
{
    size_t n = 3;
    if (out != NULL) {
        out[0] = SERIES_MAGIC0;
        out[1] = SERIES_MAGIC1;
        out[2] = SERIES_VERSION;
    }
#define PUT_VARINT(v) (n += bench_varint_put(out ? out + n : NULL, (v)))
#define PUT_BYTES(p, l)                                                                            \
    do {                                                                                           \
        PUT_VARINT(l);                                                                             \
        if (out != NULL && (l) > 0)                                                                \
            memcpy(out + n, (p), (l));                                                             \
        n += (l);                                                                                  \
    } while (0)
    PUT_VARINT(s->start_ns);
    PUT_VARINT(s->interval_ns);
    PUT_VARINT(s->n);
    PUT_VARINT(s->warmup);
    PUT_VARINT(s->errors);
    PUT_BYTES(total, total_len);
    for (size_t i = 0; i < s->n; i++) {
        const slot_t *sl = &s->slots[i];
        PUT_VARINT(sl->ops);
        PUT_VARINT(sl->errors);
        if (i == s->n - 1)
            PUT_BYTES(open_packed, open_len);
        else
            PUT_BYTES(sl->packed, sl->packed_len);
    }
#undef PUT_BYTES
#undef PUT_VARINT
    if (out != NULL)
        bench_put32(out + n, bench_crc32(out, n));
    return n + 4;
}

int bench_series_encode(const bench_series_t *s, uint8_t **out, size_t *len)
{
    uint8_t *open = NULL, *total = NULL, *buf = NULL;
    size_t open_len = 0, total_len = 0;
    int rc;
    if ((rc = pack(&s->open, &open, &open_len)) != 0)
        goto free_parts;
    if ((rc = pack(&s->total, &total, &total_len)) != 0)
        goto free_parts;
    size_t need = encode_series(s, open, open_len, total, total_len, NULL);
    buf = malloc(need);
    if (buf == NULL) {
        rc = GD_ENOMEM;
        goto free_parts;
    }
    encode_series(s, open, open_len, total, total_len, buf);
    *out = buf;
    *len = need;
free_parts:
    free(total);
    free(open);
    return rc;
}

/* Reads a length-prefixed histogram at *pos into h (empty for length 0). */
static int get_hist(const uint8_t *in, size_t len, size_t *pos, bench_hist_t *h,
                    const uint8_t **bytes, size_t *blen)
{
    uint64_t l;
    if (bench_varint_get(in, len, pos, &l) != 0 || l > len - *pos)
        return GD_EINVAL;
    *bytes = in + *pos;
    *blen = (size_t)l;
    *pos += (size_t)l;
    if (l == 0) {
        bench_hist_reset(h);
        return 0;
    }
    /* an empty histogram is written as length 0, never as an encoding */
    int rc = bench_hist_decode(*bytes, *blen, h);
    if (rc == 0 && h->count == 0)
        rc = GD_EINVAL;
    return rc;
}

static int decode_series(const uint8_t *in, size_t len, bench_series_t *s, bench_hist_t *h,
                         bench_hist_t *sum)
{
    if (len < 3 + 4 || in[0] != SERIES_MAGIC0 || in[1] != SERIES_MAGIC1 || in[2] != SERIES_VERSION)
        return GD_EINVAL;
    size_t body = len - 4, pos = 3;
    if (bench_get32(in + body) != bench_crc32(in, body))
        return GD_EINVAL;
    uint64_t n;
    if (bench_varint_get(in, body, &pos, &s->start_ns) != 0 ||
        bench_varint_get(in, body, &pos, &s->interval_ns) != 0 ||
        bench_varint_get(in, body, &pos, &n) != 0 ||
        bench_varint_get(in, body, &pos, &s->warmup) != 0 ||
        bench_varint_get(in, body, &pos, &s->errors) != 0)
        return GD_EINVAL;
    /* each interval takes at least 3 bytes: bound n by the input first */
    if (s->interval_ns == 0 || n > BENCH_SERIES_MAX_INTERVALS || n > (body - pos) / 3)
        return GD_EINVAL;
    const uint8_t *bytes;
    size_t blen;
    int rc;
    if ((rc = get_hist(in, body, &pos, &s->total, &bytes, &blen)) != 0)
        return rc;
    if ((rc = reserve_slots(s, (size_t)n)) != 0)
        return rc;
    bench_hist_reset(sum);
    uint64_t errors = 0;
    for (size_t i = 0; i < n; i++) {
        slot_t *sl = &s->slots[i];
        if (bench_varint_get(in, body, &pos, &sl->ops) != 0 ||
            bench_varint_get(in, body, &pos, &sl->errors) != 0)
            return GD_EINVAL;
        s->n = i + 1; /* slots up to here are freed by bench_series_free */
        if ((rc = get_hist(in, body, &pos, h, &bytes, &blen)) != 0)
            return rc;
        if (h->count != sl->ops || sl->errors > sl->ops)
            return GD_EINVAL;
        errors += sl->errors;
        bench_hist_merge(sum, h);
        if (i == n - 1) {
            memcpy(&s->open, h, sizeof *h);
        } else if (blen > 0) {
            sl->packed = malloc(blen);
            if (sl->packed == NULL)
                return GD_ENOMEM;
            memcpy(sl->packed, bytes, blen);
            sl->packed_len = blen;
        }
    }
    if (pos != body || errors != s->errors || !bench_hist_equal(sum, &s->total))
        return GD_EINVAL;
    /* a series has no interval before its first sample's */
    if (n > 0 && s->slots[n - 1].ops == 0)
        return GD_EINVAL;
    return 0;
}

int bench_series_decode(const uint8_t *in, size_t len, bench_series_t **out)
{
    bench_series_t *s = calloc(1, sizeof *s);
    bench_hist_t *h = malloc(sizeof *h), *sum = malloc(sizeof *sum);
    int rc = GD_ENOMEM;
    if (s == NULL || h == NULL || sum == NULL)
        goto fail;
    if ((rc = decode_series(in, len, s, h, sum)) != 0)
        goto fail;
    free(sum);
    free(h);
    *out = s;
    return 0;
fail:
    free(sum);
    free(h);
    bench_series_free(s);
    return rc;
}
