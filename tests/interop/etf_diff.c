/*
 * etf_diff.c — girder's side of the differential decode test against
 * binary_to_term/1 (tests/interop/etf_diff.erl drives it; etf_diff.sh runs
 * the whole test).
 *
 *   etf_diff INPUTS RESULTS
 *
 * INPUTS is "GDDIFI01" then records Len:32 Bytes (big-endian), one per
 * input, valid OTP encodings and hostile mutations of them alike.  Each is
 * decoded in-process with etf_decode (default options: trailing bytes
 * allowed, as binary_to_term/1 allows them; the default depth cap), on a
 * fresh heap; an accepted term is re-encoded with etf_encode (OTP 25
 * defaults, as term_to_binary/1).  RESULTS gets "GDDIFO01" then per input:
 *   Code:32 (0 or the ETF_E* code, two's complement)  Offset:32  Used:32
 *   EncCode:32 (0, or etf_encode's error)  EncLen:32 Enc
 * Offset is etf_error_t's (inside the inflated form for a compressed
 * input); Used the bytes consumed; Enc the re-encoding (EncLen 0 when
 * decoding or encoding failed).
 * Exit 0 when every input was processed (what the decodes say is the Erlang
 * side's to judge), 2 on a usage or I/O error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etf.h"
#include "heap.h"

#define IN_MAGIC "GDDIFI01"
#define OUT_MAGIC "GDDIFO01"
#define MAGIC_LEN 8

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* read_file returns the whole file in a malloc'ed buffer, or NULL. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *data = NULL;
    long size;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto close_file;
    data = malloc((size_t)size + 1);
    if (data != NULL && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    *len = (size_t)size;
close_file:
    fclose(f);
    return data;
}

/* decode_one decodes in[0..len) and writes its result record to out;
 * false when girder could not even set up a heap (an I/O-level error). */
static bool decode_one(const uint8_t *in, size_t len, etf_buf_t *enc, FILE *out)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return false;
    term_t t;
    size_t used = 0;
    etf_error_t err = {0};
    int rc = etf_decode(&h, in, len, NULL, &t, &used, &err);
    int enc_rc = 0;
    enc->len = 0;
    if (rc == GD_OK) {
        etf_encode_opts_t eo;
        etf_encode_opts_init(&eo);
        enc_rc = etf_encode(t, &eo, enc);
        if (enc_rc != GD_OK)
            enc->len = 0;
    }
    put32(out, (uint32_t)rc);
    put32(out, (uint32_t)(rc == GD_OK ? 0 : err.offset));
    put32(out, (uint32_t)(rc == GD_OK ? used : 0));
    put32(out, (uint32_t)enc_rc);
    put32(out, (uint32_t)enc->len);
    if (enc->len > 0)
        fwrite(enc->data, 1, enc->len, out);
    heap_destroy(&h);
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS RESULTS\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    uint8_t *data = read_file(argv[1], &len);
    if (data == NULL || len < MAGIC_LEN || memcmp(data, IN_MAGIC, MAGIC_LEN) != 0) {
        fprintf(stderr, "etf_diff: cannot read %s\n", argv[1]);
        free(data);
        return 2;
    }
    FILE *out = fopen(argv[2], "wb");
    if (out == NULL) {
        fprintf(stderr, "etf_diff: cannot write %s\n", argv[2]);
        free(data);
        return 2;
    }
    fwrite(OUT_MAGIC, 1, MAGIC_LEN, out);
    etf_buf_t enc = {0};
    int status = 0;
    size_t pos = MAGIC_LEN, count = 0;
    while (pos < len) {
        if (len - pos < 4 || len - pos - 4 < get32(data + pos)) {
            fprintf(stderr, "etf_diff: %s: record %zu truncated\n", argv[1], count);
            status = 2;
            break;
        }
        size_t n = get32(data + pos);
        if (!decode_one(data + pos + 4, n, &enc, out)) {
            fprintf(stderr, "etf_diff: out of memory\n");
            status = 2;
            break;
        }
        pos += 4 + n;
        count++;
    }
    if (fclose(out) != 0)
        status = 2;
    etf_buf_free(&enc);
    free(data);
    if (status == 0)
        fprintf(stderr, "etf_diff: girder decoded %zu inputs\n", count);
    return status;
}
