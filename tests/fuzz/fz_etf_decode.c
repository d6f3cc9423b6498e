/*
 * fz_etf_decode.c — libFuzzer harness for the ETF decoder
 * (docs/robustness.md §1).
 *
 * Input: one control byte, then the bytes to decode.  Control bits:
 *   bit 0  safe mode (no atom may be created)
 *   bit 1  an atom cache table is supplied (tag 82 becomes decodable)
 *   bit 2  decode a body without the version byte (etf_decode_body)
 *   bit 3  no_trailing
 *   bit 4  a small max_depth (64) instead of the default
 *   bit 5  a small max_heap (FZ_SMALL_MAX_HEAP bytes) instead of the default
 *
 * Oracles (abort on violation):
 *   - safe mode never changes the atom count;
 *   - on failure the error struct carries the code and an offset inside
 *     the (inflated) input;
 *   - with a max_heap: the heap never holds more than it (plus the words a
 *     hash map is charged for once built, bounded by its input);
 *   - on success: *used <= input length; heap words used <= 8 per input
 *     byte (inflated size for compressed terms) + 64 KiB; the term encodes
 *     (sizing and writing agree), the encoding decodes to an exactly equal
 *     term, and re-encoding that gives the identical bytes, for OTP 25 and
 *     OTP 26 atom forms, for [deterministic] and for minor_version 0.
 */
#include <stdio.h>
#include <stdlib.h>

#include "etf.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fz_etf_decode: check failed: %s (line %d)\n", #cond, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Largest inflated size the harness lets the decoder accept. */
#define FZ_MAX_DECOMPRESSED ((size_t)4 << 20)
/* The max_heap of control bit 5 (bytes): small enough that ordinary inputs
 * hit it, so every charge and its ETF_EHEAP_LIMIT path runs. */
#define FZ_SMALL_MAX_HEAP ((size_t)16 << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(term_t t, const etf_encode_opts_t *eo, size_t max_depth)
{
    etf_buf_t a = {0}, b = {0};
    size_t size = 0;
    int rc = etf_encode(t, eo, &a);
    CHECK(rc == GD_OK);
    CHECK(etf_encoded_size(t, eo, &size) == GD_OK && size == a.len - 1);
    heap_t h2;
    CHECK(heap_init(&h2, 0) == GD_OK);
    etf_decode_opts_t o = {0};
    o.max_depth = max_depth;
    term_t back;
    size_t used = 0;
    etf_error_t err;
    rc = etf_decode(&h2, a.data, a.len, &o, &back, &used, &err);
    if (rc != GD_OK)
        fprintf(stderr, "re-decode failed: %d at %zu\n", rc, err.offset);
    CHECK(rc == GD_OK && used == a.len);
    {
        int order_ = 1;
        CHECK(heap_compare_checked(t, back, true, &order_) == GD_OK && order_ == 0);
    }
    CHECK(etf_encode(back, eo, &b) == GD_OK);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    heap_destroy(&h2);
    etf_buf_free(&a);
    etf_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    data++;
    size--;

    static term_t cache[4];
    if (cache[0] == 0) {
        cache[0] = heap_atom("cached_a");
        cache[1] = heap_atom("nonode@nohost");
        cache[2] = heap_atom("\xc3\xb6");
        cache[3] = TERM_NONE; /* an empty slot */
    }
    etf_decode_opts_t o = {0};
    o.safe = ctl & 1;
    if (ctl & 2) {
        o.atom_cache_refs = cache;
        o.atom_cache_count = 4;
    }
    o.no_trailing = (ctl & 8) != 0;
    o.max_depth = (ctl & 16) ? 64 : 0;
    /* 64 KiB of zlib can inflate to 64 MiB, whose five round trips take
     * longer than the fuzzer's hang timeout under the sanitizers; a 4 MiB
     * cap keeps every run short and exercises the cap's error path. */
    o.max_decompressed = FZ_MAX_DECOMPRESSED;
    o.max_heap = (ctl & 32) ? FZ_SMALL_MAX_HEAP : 0;

    heap_t h;
    CHECK(heap_init(&h, 0) == GD_OK);
    uint32_t atoms_before = heap_atom_count();
    term_t t = TERM_NONE;
    size_t used = 0;
    etf_error_t err = {1, 1};
    int rc = (ctl & 4) ? etf_decode_body(&h, data, size, &o, &t, &used, &err)
                       : etf_decode(&h, data, size, &o, &t, &used, &err);
    if (o.safe)
        CHECK(heap_atom_count() == atoms_before);
    CHECK(err.code == rc);

    /* What the term may be built from: the input, or the inflated data. */
    size_t budget = size;
    if (!(ctl & 4) && size >= 6 && data[0] == ETF_VERSION_MAGIC && data[1] == ETF_COMPRESSED) {
        size_t inflated =
            ((size_t)data[2] << 24) | ((size_t)data[3] << 16) | ((size_t)data[4] << 8) | data[5];
        if (inflated > budget)
            budget = inflated;
    }
    /* Everything is charged before it is built except a hash map, charged
     * once built (its size depends on its keys' hashes): it may pass the
     * budget by its own words, at most 45 per two keys (a 13-level path of
     * 3-word nodes plus leaves), each key at least one input byte. */
    if (o.max_heap != 0)
        CHECK(heap_used_words(&h) * sizeof(term_t) <= o.max_heap + 8 * 23 * size);
    if (rc != GD_OK) {
        CHECK(rc < 0 && err.offset <= budget + 1);
        CHECK(t == TERM_NONE);
    } else {
        CHECK(used <= size && used > 0);
        CHECK(!o.no_trailing || used == size);
        CHECK(heap_used_words(&h) <= 8 * budget + 8192);
        size_t depth = o.max_depth ? o.max_depth : ETF_MAX_DEPTH_DEFAULT;
        etf_encode_opts_t eo;
        etf_encode_opts_init(&eo);
        eo.max_depth = depth;
        roundtrip(t, &eo, depth);
        eo.otp_release = 26;
        roundtrip(t, &eo, depth);
        eo.otp_release = 25;
        eo.deterministic = true;
        roundtrip(t, &eo, depth);
        eo.deterministic = false;
        eo.minor_version = 0; /* FLOAT_EXT text must round-trip every double */
        roundtrip(t, &eo, depth);
    }
    heap_destroy(&h);
    return 0;
}
