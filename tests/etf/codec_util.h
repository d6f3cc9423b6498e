/*
 * codec_util.h — helpers shared by the ETF codec suites: byte-array
 * literals, decode/encode wrappers that report mismatches in hex, and a
 * deterministic generator of random terms shaped to reach every encoding
 * (byte lists, bignums, unicode atoms, sub-binaries, flat and hash maps,
 * funs, improper lists).
 */
#ifndef GIRDER_TESTS_ETF_CODEC_UTIL_H
#define GIRDER_TESTS_ETF_CODEC_UTIL_H

#include <stdio.h>

#include "cunit_main.h"
#include "etf.h"
/* The random stream (termgen_next/termgen_below) and the test seed
 * (termgen_seed_from_env) are tests/heap's, linked into every etf suite. */
#include "termgen_util.h"

/* A byte array literal and its length: BYTES(131, 97, 1). */
#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

/* Prints a byte string as "[131,97,1]" to stderr (for failure messages). */
void cu_dump(const char *label, const uint8_t *b, size_t n);

/* Decodes buf with opts; returns the code, fills *t / *used / *err. */
int cu_decode(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts, term_t *t,
              size_t *used, etf_error_t *err);

/* True if etf_encode(t, opts) gives exactly expect[0..n) (prints both if not). */
bool cu_encodes_to(term_t t, const etf_encode_opts_t *opts, const uint8_t *expect, size_t n);

/* True if etf_decode fails with `code` at `offset` (prints what it got if not). */
bool cu_decode_fails(const uint8_t *buf, size_t len, const etf_decode_opts_t *opts, int code,
                     size_t offset);

/* Decodes buf and checks that re-encoding (OTP 25 defaults) reproduces it. */
bool cu_roundtrip_bytes(const uint8_t *buf, size_t len);

/* A random term with nesting at most `depth`; TERM_NONE if h cannot grow. */
term_t cu_random_term(heap_t *h, uint64_t *seed, int depth);

/*
 * The heap the term builders below allocate on.  A test calls cu_setup()
 * first and cu_teardown() last; the builders fail the test (fatally) when
 * the heap cannot grow.
 */
extern heap_t cu_heap;
void cu_setup(void);
void cu_teardown(void);
term_t cu_int64(int64_t v);
term_t cu_tuple(size_t n, const term_t *items);
term_t cu_list(size_t n, const term_t *items, term_t tail);
term_t cu_binary(const void *p, size_t n);

#define SMALL(v) term_make_small(v)
#define TUPLE(...)                                                                                 \
    cu_tuple(sizeof((term_t[]){__VA_ARGS__}) / sizeof(term_t), (term_t[]){__VA_ARGS__})
#define LIST(...)                                                                                  \
    cu_list(sizeof((term_t[]){__VA_ARGS__}) / sizeof(term_t), (term_t[]){__VA_ARGS__}, TERM_NIL)

#define CU_ASSERT_DECODE_FAILS(bytes_and_len, opts, code, offset)                                  \
    CU_ASSERT(cu_decode_fails_va(opts, code, offset, bytes_and_len))
static inline bool cu_decode_fails_va(const etf_decode_opts_t *opts, int code, size_t offset,
                                      const uint8_t *buf, size_t len)
{
    return cu_decode_fails(buf, len, opts, code, offset);
}

#endif
