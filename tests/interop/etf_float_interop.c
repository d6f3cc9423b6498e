/*
 * etf_float_interop.c — checks girder's FLOAT_EXT decoding against OTP's
 * binary_to_term/1 verdicts (CTest: interop_etf_float, driven by
 * etf_float_interop.sh).  Input: lines "<hex of 131 99 ...> <verdict>" from
 * etf_float_gen.escript, the verdict "badarg" or the float's 16 hex IEEE
 * bits.  Each binary is decoded with etf_decode (trailing bytes allowed,
 * as binary_to_term/1 allows them): an accepted float must have exactly
 * those bits and end 33 bytes in; a badarg must be refused.  Prints every
 * disagreement; exit 0 if none, 1 if any, 2 on a usage or I/O error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etf.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the hex digits of s[0..n) into out; false if malformed. */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
    if (n % 2 != 0)
        return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASES\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (in == NULL) {
        perror(argv[1]);
        return 2;
    }
    char line[4096];
    uint8_t bin[2048];
    size_t cases = 0, bad = 0, accepted = 0;
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return 2;
    while (fgets(line, sizeof line, in) != NULL) {
        char *sp = strchr(line, ' ');
        if (sp == NULL) {
            fprintf(stderr, "malformed line %zu\n", cases + 1);
            return 2;
        }
        size_t hexlen = (size_t)(sp - line);
        char *verdict = sp + 1;
        verdict[strcspn(verdict, "\r\n")] = 0;
        if (hexlen / 2 > sizeof bin || !unhex(line, hexlen, bin)) {
            fprintf(stderr, "malformed hex on line %zu\n", cases + 1);
            return 2;
        }
        cases++;
        term_t t;
        size_t used = 0;
        etf_error_t err;
        int rc = etf_decode(&h, bin, hexlen / 2, NULL, &t, &used, &err);
        bool otp_ok = strcmp(verdict, "badarg") != 0;
        bool agree;
        if (!otp_ok) {
            agree = rc != GD_OK;
        } else {
            uint64_t want = strtoull(verdict, NULL, 16), got = 0;
            if (rc == GD_OK && term_is_float(t)) {
                double v = term_float_value(t);
                memcpy(&got, &v, sizeof got);
            }
            agree = rc == GD_OK && term_is_float(t) && got == want && used == 2 + ETF_FLOAT_EXT_LEN;
            accepted++;
        }
        if (!agree) {
            bad++;
            fprintf(stderr, "disagree: %.*s OTP %s, girder rc=%d (%s)", (int)hexlen, line, verdict,
                    rc, rc == GD_OK ? "ok" : etf_strerror(rc));
            if (rc == GD_OK && term_is_float(t))
                fprintf(stderr, " value %.17g", term_float_value(t));
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
