/*
 * etf_float_interop.c — checks girder's FLOAT_EXT decoding against OTP's
 * binary_to_term/1 verdicts (CTest: interop_etf_float, driven by
 * etf_float_interop.sh).  Input: the records etf_float_gen.escript writes,
 * <<Len:16, Bin:Len/binary, Ok:8, Bits:64>> (Ok = 0: badarg; 1: a float
 * with those IEEE bits).  Each Bin is decoded with etf_decode (trailing
 * bytes allowed, as binary_to_term/1 allows them): an accepted float must
 * have exactly those bits and end 33 bytes in; a badarg must be refused.
 * Prints every disagreement; exit 0 if none, 1 if any, 2 on a usage or I/O
 * error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etf.h"

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASES\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (in == NULL) {
        perror(argv[1]);
        return 2;
    }
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return 2;
    uint8_t bin[65535 + 9], hdr[2];
    size_t cases = 0, bad = 0, accepted = 0;
    while (fread(hdr, 1, 2, in) == 2) {
        size_t n = (size_t)hdr[0] << 8 | hdr[1];
        if (fread(bin, 1, n + 9, in) != n + 9) {
            fprintf(stderr, "record %zu cut short\n", cases + 1);
            return 2;
        }
        cases++;
        bool otp_ok = bin[n] != 0;
        uint64_t want = get_be64(bin + n + 1), got = 0;
        term_t t;
        size_t used = 0;
        int rc = etf_decode(&h, bin, n, NULL, &t, &used, NULL);
        bool is_float = rc == GD_OK && term_is_float(t);
        if (is_float) {
            double v = term_float_value(t);
            memcpy(&got, &v, sizeof got);
        }
        bool agree =
            otp_ok ? is_float && got == want && used == 2 + ETF_FLOAT_EXT_LEN : rc != GD_OK;
        accepted += otp_ok;
        if (!agree) {
            bad++;
            fprintf(stderr, "disagree: ");
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "%02x", bin[i]);
            fprintf(stderr, " OTP %s %016llx, girder %s", otp_ok ? "float" : "badarg",
                    (unsigned long long)want, rc == GD_OK ? "ok" : etf_strerror(rc));
            if (is_float)
                fprintf(stderr, " %016llx (%.17g)", (unsigned long long)got, term_float_value(t));
            fprintf(stderr, "\n");
        }
        if (cases % 256 == 0 && heap_gc(&h, 0, NULL, 0) != GD_OK)
            return 2;
    }
    fclose(in);
    heap_destroy(&h);
    printf("%zu FLOAT_EXT cases, %zu accepted by OTP, %zu disagreements\n", cases, accepted, bad);
    return cases == 0 ? 2 : bad != 0;
}
