/*
 * fz_etf_text.c — libFuzzer harness for the term text parser and printer
 * (etf/text_parse.c, etf/text_print.c).
 *
 * Input: text handed to etf_parse as is.
 *
 * Oracles (abort on violation):
 *   - on failure the error struct carries the returned code and an offset
 *     inside the input;
 *   - on success the term (if it encodes to at most 1 MiB) prints, the text parses back to an
 * exactly equal term (=:=), and printing that gives the identical text (the parser never builds
 * closures, the one thing that does not print back);
 *   - the term encodes to ETF (unless nested deeper than the encoder's
 *     limit) and that decodes to an exactly equal term.
 */
#include <stdio.h>
#include <stdlib.h>

#include "etf.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fz_etf_text: check failed: %s (line %d)\n", #cond, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Terms larger than this (encoded) skip the print/reparse oracle. */
#define FZ_PRINT_MAX_BYTES ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return 0;
    term_t t;
    etf_error_t err;
    int rc = etf_parse(&h, (const char *)data, size, &t, &err);
    if (rc != GD_OK) {
        CHECK(err.code == rc);
        CHECK(err.offset <= size);
        heap_destroy(&h);
        return 0;
    }
    CHECK(err.code == 0);
    etf_buf_t text = {0}, again = {0}, bytes = {0};
    /* The print/reparse oracle costs O(size of the term) three times over;
     * a few bytes of text can legitimately build a binary of megabytes
     * (<<"ab":352370>>), which under the sanitizers takes longer than the
     * fuzzer's hang timeout.  Such terms still go through parse and the
     * ETF round trip below. */
    size_t encoded;
    bool small_term = etf_encoded_size(t, NULL, &encoded) != GD_OK || encoded <= FZ_PRINT_MAX_BYTES;
    if (small_term && etf_print(t, &text) == GD_OK) {
        term_t u;
        CHECK(etf_parse(&h, (const char *)text.data, text.len, &u, &err) == GD_OK);
        {
            int order_ = 1;
            CHECK(heap_compare_checked(t, u, true, &order_) == GD_OK && order_ == 0);
        }
        CHECK(etf_print(u, &again) == GD_OK);
        CHECK(again.len == text.len && memcmp(again.data, text.data, text.len) == 0);
    }
    rc = etf_encode(t, NULL, &bytes);
    CHECK(rc == GD_OK || rc == ETF_EDEPTH || rc == ETF_ENOMEM || rc == GD_ENOMEM);
    if (rc == GD_OK) {
        term_t v;
        size_t used;
        CHECK(etf_decode(&h, bytes.data, bytes.len, NULL, &v, &used, &err) == GD_OK);
        CHECK(used == bytes.len);
        {
            int order_ = 1;
            CHECK(heap_compare_checked(t, v, true, &order_) == GD_OK && order_ == 0);
        }
    }
    etf_buf_free(&bytes);
    etf_buf_free(&again);
    etf_buf_free(&text);
    heap_destroy(&h);
    return 0;
}
