/*
 * utf8.c — UTF-8 decoding, encoding and validation, and Latin-1 to UTF-8,
 * for every part of girder that reads or writes text: atom names (atoms.c),
 * Latin-1 atoms in ETF (etf/decode.c), the term text parser and printer.
 * Well-formed means RFC 3629: shortest form only, no surrogates, nothing
 * above U+10FFFF.
 */
#include "heap.h"

size_t heap_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t n;
    uint32_t c, min;
    if (b >= 0xC2 && b <= 0xDF) { /* 0xC0, 0xC1 could only start overlongs */
        n = 2;
        c = b & 0x1F;
        min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        c = b & 0x0F;
        min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) { /* 0xF5.. would exceed U+10FFFF */
        n = 4;
        c = b & 0x07;
        min = 0x10000;
    } else {
        return 0; /* a continuation byte, or 0xC0/0xC1/0xF5..0xFF */
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

size_t heap_utf8_encode(uint8_t b[HEAP_UTF8_MAX_BYTES], uint32_t cp)
{
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (cp >> 18));
    b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

bool heap_utf8_validate(const uint8_t *s, size_t len, size_t *chars, bool *latin1)
{
    size_t i = 0, count = 0;
    uint32_t all = 0; /* OR of every code point: < 256 iff all are */
    while (i < len) {
        uint32_t cp;
        size_t n = heap_utf8_decode(s + i, len - i, &cp);
        if (n == 0)
            return false;
        all |= cp;
        i += n;
        count++;
    }
    if (chars != NULL)
        *chars = count;
    if (latin1 != NULL)
        *latin1 = all < 0x100;
    return true;
}

size_t heap_utf8_latin1_len(const uint8_t *s, size_t n)
{
    size_t m = n;
    for (size_t i = 0; i < n; i++)
        m += s[i] >> 7;
    return m;
}

size_t heap_utf8_from_latin1(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out[m++] = c;
        } else {
            out[m++] = (uint8_t)(0xC0 | (c >> 6));
            out[m++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return m;
}
