/*
 * internal.h — what the files of node/bench/ share and nobody else sees: the
 * varint and CRC helpers of the two byte encodings, and the growing text
 * buffer that the JSON, HTML and Prometheus writers fill.
 */
#ifndef GIRDER_BENCH_INTERNAL_H
#define GIRDER_BENCH_INTERNAL_H

#include "bench.h"

#include <stdarg.h>

/* ---- byte encodings ------------------------------------------------------ */

#define BENCH_VARINT_MAX 10 /* bytes of a 64-bit LEB128 value */

/* Writes v as unsigned LEB128 at out (NULL: only counts); returns the bytes. */
size_t bench_varint_put(uint8_t *out, uint64_t v);

/* Reads a canonical LEB128 value from in[*pos..len): no more than 10 bytes,
 * no bits above 64, no redundant trailing zero byte.  Advances *pos.
 * GD_EINVAL on a truncated or non-canonical value. */
int bench_varint_get(const uint8_t *in, size_t len, size_t *pos, uint64_t *v) GD_MUST_CHECK;

/* CRC-32 (zlib's polynomial) of n bytes. */
uint32_t bench_crc32(const uint8_t *p, size_t n);

/* Little-endian 32-bit store and load. */
static inline void bench_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t bench_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* a + b, saturating at UINT64_MAX (counts and sums never wrap). */
static inline uint64_t bench_sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* ---- text buffer --------------------------------------------------------- */

/* A growing NUL-terminated string.  The first allocation failure is sticky:
 * later appends do nothing and bench_buf_error reports GD_ENOMEM, so writers
 * check once at the end. */
typedef struct bench_buf {
    char *data;
    size_t len, cap;
    int err;
} bench_buf_t;

void bench_buf_put(bench_buf_t *b, const char *s, size_t n);
void bench_buf_puts(bench_buf_t *b, const char *s);
void bench_buf_printf(bench_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bench_buf_free(bench_buf_t *b);

/* Appends s with &, <, >, " and ' as HTML entities. */
void bench_buf_html(bench_buf_t *b, const char *s);

/* Appends s as a JSON string literal (quotes included, RFC 8259 escapes,
 * control characters as \u00XX). */
void bench_buf_json_str(bench_buf_t *b, const char *s);

/* Appends a JSON number (null when not finite). */
void bench_buf_json_num(bench_buf_t *b, double v);

/* Writes the buffer to out; 0, the buffer's sticky error, or GD_EINVAL for
 * a short write. */
int bench_buf_flush(const bench_buf_t *b, FILE *out) GD_MUST_CHECK;

/* ---- results helpers shared by the JSON, table and HTML writers ---------- */

const char *bench_kind_name(bench_kind_t k);

#endif
