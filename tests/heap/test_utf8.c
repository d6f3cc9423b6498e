/*
 * test_utf8.c — heap/utf8.c: the one UTF-8 decoder/encoder/validator and
 * Latin-1 converter of the atom table, the ETF codec and the term text
 * parser and printer.  Every code point round-trips; every malformed form
 * RFC 3629 names (overlongs, surrogates, > U+10FFFF, stray and missing
 * continuation bytes, cut-off sequences) is refused.
 */
#include <string.h>

#include "cunit_main.h"
#include "heap.h"

/* Every scalar value encodes to its shortest form and decodes back; the
 * length is 1/2/3/4 at the RFC 3629 boundaries. */
static void test_all_code_points(void)
{
    size_t bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        uint8_t b[HEAP_UTF8_MAX_BYTES];
        size_t n = heap_utf8_encode(b, cp);
        size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        uint32_t back = 0xFFFFFFFF;
        size_t m = heap_utf8_decode(b, n, &back);
        if (n != want || m != n || back != cp)
            bad++;
        /* cut short by one byte: refused */
        if (n > 1 && heap_utf8_decode(b, n - 1, &back) != 0)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static size_t dec(const char *s, size_t n)
{
    uint32_t cp;
    return heap_utf8_decode((const uint8_t *)s, n, &cp);
}

static void test_malformed(void)
{
    /* overlong forms of '/', U+007F, U+07FF, U+FFFF, and NUL */
    CU_ASSERT_EQUAL(dec("\xC0\xAF", 2), 0);
    CU_ASSERT_EQUAL(dec("\xC1\xBF", 2), 0);
    CU_ASSERT_EQUAL(dec("\xC0\x80", 2), 0);
    CU_ASSERT_EQUAL(dec("\xE0\x80\xAF", 3), 0);
    CU_ASSERT_EQUAL(dec("\xE0\x9F\xBF", 3), 0);
    CU_ASSERT_EQUAL(dec("\xF0\x80\x80\xAF", 4), 0);
    CU_ASSERT_EQUAL(dec("\xF0\x8F\xBF\xBF", 4), 0);
    /* the shortest forms next to them are fine */
    CU_ASSERT_EQUAL(dec("\xC2\x80", 2), 2);
    CU_ASSERT_EQUAL(dec("\xE0\xA0\x80", 3), 3);
    CU_ASSERT_EQUAL(dec("\xF0\x90\x80\x80", 4), 4);
    /* surrogates U+D800, U+DBFF, U+DC00, U+DFFF; their neighbours are fine */
    CU_ASSERT_EQUAL(dec("\xED\xA0\x80", 3), 0);
    CU_ASSERT_EQUAL(dec("\xED\xAF\xBF", 3), 0);
    CU_ASSERT_EQUAL(dec("\xED\xB0\x80", 3), 0);
    CU_ASSERT_EQUAL(dec("\xED\xBF\xBF", 3), 0);
    CU_ASSERT_EQUAL(dec("\xED\x9F\xBF", 3), 3);
    CU_ASSERT_EQUAL(dec("\xEE\x80\x80", 3), 3);
    /* beyond U+10FFFF: F4 90.., F5..F7 lead bytes, and F8..FF */
    CU_ASSERT_EQUAL(dec("\xF4\x8F\xBF\xBF", 4), 4);
    CU_ASSERT_EQUAL(dec("\xF4\x90\x80\x80", 4), 0);
    CU_ASSERT_EQUAL(dec("\xF5\x80\x80\x80", 4), 0);
    CU_ASSERT_EQUAL(dec("\xF7\xBF\xBF\xBF", 4), 0);
    CU_ASSERT_EQUAL(dec("\xF8\x88\x80\x80\x80", 5), 0);
    CU_ASSERT_EQUAL(dec("\xFF", 1), 0);
    CU_ASSERT_EQUAL(dec("\xFE", 1), 0);
    /* stray continuation bytes, and a lead byte followed by a non-continuation */
    CU_ASSERT_EQUAL(dec("\x80", 1), 0);
    CU_ASSERT_EQUAL(dec("\xBF\x80", 2), 0);
    CU_ASSERT_EQUAL(dec("\xE2\x28\xA1", 3), 0);
    CU_ASSERT_EQUAL(dec("\xE2\x82\x28", 3), 0);
    CU_ASSERT_EQUAL(dec("\xC3\x41", 2), 0);
    CU_ASSERT_EQUAL(dec("\xF0\x90\x80\xC0", 4), 0);
    /* truncated: each multi-byte sequence with 1..n-1 bytes available */
    CU_ASSERT_EQUAL(dec("\xC3", 1), 0);
    CU_ASSERT_EQUAL(dec("\xE2\x82", 2), 0);
    CU_ASSERT_EQUAL(dec("\xE2", 1), 0);
    CU_ASSERT_EQUAL(dec("\xF0\x9F\x98", 3), 0);
    CU_ASSERT_EQUAL(dec("\xF0\x9F", 2), 0);
    CU_ASSERT_EQUAL(dec("\xF0", 1), 0);
    /* a decode reads only its own bytes: what follows does not matter */
    CU_ASSERT_EQUAL(dec("\xC3\xA9\xFF", 3), 2);
}

static void test_validate(void)
{
    size_t chars = 99;
    bool latin1 = false;
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"", 0, &chars, &latin1) && chars == 0 && latin1);
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"abc", 3, &chars, &latin1) && chars == 3 &&
              latin1);
    /* "é" is Latin-1, "αβ" and U+1F600 are not */
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"a\xC3\xA9", 3, &chars, &latin1) && chars == 2 &&
              latin1);
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"\xC3\xBF\xC4\x80", 4, &chars, &latin1) &&
              chars == 2 && !latin1);
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"\xCE\xB1\xCE\xB2", 4, &chars, &latin1) &&
              chars == 2 && !latin1);
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"\xF0\x9F\x98\x80", 4, NULL, NULL));
    /* one bad sequence anywhere fails the whole, including at the end */
    CU_ASSERT(!heap_utf8_validate((const uint8_t *)"ab\xED\xA0\x80", 5, &chars, &latin1));
    CU_ASSERT(!heap_utf8_validate((const uint8_t *)"ab\xC3", 3, &chars, &latin1));
    CU_ASSERT(!heap_utf8_validate((const uint8_t *)"\xC0\x80x", 3, &chars, &latin1));
    /* NUL is a code point like any other */
    CU_ASSERT(heap_utf8_validate((const uint8_t *)"a\0b", 3, &chars, &latin1) && chars == 3);
}

/* Latin-1 -> UTF-8 of all 256 bytes agrees with encoding each code point. */
static void test_latin1(void)
{
    uint8_t all[256], out[512], want[512];
    size_t wn = 0;
    for (int i = 0; i < 256; i++) {
        all[i] = (uint8_t)i;
        wn += heap_utf8_encode(want + wn, (uint32_t)i);
    }
    CU_ASSERT_EQUAL(heap_utf8_latin1_len(all, 256), 128 + 2 * 128);
    CU_ASSERT_EQUAL(heap_utf8_from_latin1(all, 256, out), wn);
    CU_ASSERT(memcmp(out, want, wn) == 0);
    size_t chars;
    bool latin1;
    CU_ASSERT(heap_utf8_validate(out, wn, &chars, &latin1) && chars == 256 && latin1);
    CU_ASSERT_EQUAL(heap_utf8_latin1_len(all, 0), 0);
    CU_ASSERT_EQUAL(heap_utf8_from_latin1((const uint8_t *)"\xE9t\xE9", 3, out), 5);
    CU_ASSERT(memcmp(out, "\xC3\xA9t\xC3\xA9", 5) == 0);
}

static const gd_test_case_t cases[] = {
    {"all code points", test_all_code_points},
    {"malformed", test_malformed},
    {"validate", test_validate},
    {"latin1", test_latin1},
    {NULL, NULL},
};

GD_TEST_MAIN("heap_utf8", cases)
