/*
 * text_scan.c — the scanner of the term text parser (etf_parse): UTF-8
 * characters, escapes, quoted atoms and strings, numbers of any size and
 * base, and the tokens they make.  See text_parse.c for the syntax.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "text_internal.h"

/* Records the error and returns its code. */
GD_COLD int etf_text_fail(parser_t *p, int code, size_t offset)
{
    if (p->err != NULL) {
        p->err->code = code;
        p->err->offset = offset;
    }
    return code;
}

/* Maps a heap error to etf/'s codes (the caller's offset applies). */
int etf_text_heap_error(parser_t *p, int rc, size_t offset)
{
    switch (rc) {
    case GD_ENOMEM:
        return etf_text_fail(p, ETF_ENOMEM, offset);
    case GD_EATOM_TABLE_FULL:
        return etf_text_fail(p, ETF_EATOM_TABLE_FULL, offset);
    case GD_EATOM_TOO_LONG:
    case GD_EATOM_BAD_UTF8:
        return etf_text_fail(p, ETF_EATOM, offset);
    case GD_ESYSTEM_LIMIT:
        return etf_text_fail(p, ETF_EBIG, offset);
    default:
        return etf_text_fail(p, rc, offset);
    }
}

/* Grows a malloc'ed array to hold `need` elements of `size` bytes. */
int etf_text_grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return GD_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / size)
            return GD_ENOMEM;
        c *= 2;
    }
    void *n = realloc(*arr, c * size);
    if (n == NULL)
        return GD_ENOMEM;
    *arr = n;
    *cap = c;
    return GD_OK;
}

/* ------------------------------------------------------------------------ */
/* Characters.                                                              */

/* Value of c as a digit in any base up to 36, or 99. */
static unsigned digit_value(int c)
{
    if (c >= '0' && c <= '9')
        return (unsigned)(c - '0');
    if (c >= 'a' && c <= 'z')
        return (unsigned)(c - 'a' + 10);
    if (c >= 'A' && c <= 'Z')
        return (unsigned)(c - 'A' + 10);
    return 99;
}

/*
 * Decodes the UTF-8 character at p->s[at] into *cp and returns its length;
 * 0 for invalid UTF-8 (overlong forms, surrogates, above U+10FFFF, cut off).
 */
static size_t decode_utf8(const parser_t *p, size_t at, uint32_t *cp)
{
    return heap_utf8_decode(p->s + at, p->len - at, cp);
}

/* erl_scan: a character that may start an unquoted atom. */
static bool is_atom_start(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}

/* erl_scan: a character that may continue an unquoted atom. */
static bool is_name_char(uint32_t c)
{
    return is_atom_start(c) || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
           is_digit((int)c) || c == '_' || c == '@';
}

/* The character at `at` if it is a name character (else 0); *n = length. */
static uint32_t name_char_at(const parser_t *p, size_t at, size_t *n)
{
    if (at >= p->len)
        return 0;
    uint32_t c;
    size_t k = decode_utf8(p, at, &c);
    if (k == 0 || !is_name_char(c))
        return 0;
    *n = k;
    return c;
}

static int push_char(parser_t *p, uint32_t c)
{
    if (etf_text_grow((void **)&p->chars, &p->chars_cap, p->nchars + 1, sizeof *p->chars) != GD_OK)
        return etf_text_fail(p, ETF_ENOMEM, p->pos);
    p->chars[p->nchars++] = c;
    return GD_OK;
}

/*
 * Reads the escape sequence after a backslash at p->pos (erl_scan rules)
 * into *cp and advances past it.
 */
static int scan_escape(parser_t *p, uint32_t *cp)
{
    size_t start = p->pos - 1;
    int c = peek_byte(p, p->pos);
    if (c < 0)
        return etf_text_fail(p, ETF_EPARSE, start);
    if (c >= '0' && c <= '7') {
        uint32_t v = 0;
        for (int i = 0; i < 3 && peek_byte(p, p->pos) >= '0' && peek_byte(p, p->pos) <= '7'; i++)
            v = v * 8 + (uint32_t)(p->s[p->pos++] - '0');
        *cp = v;
        return GD_OK;
    }
    if (c == 'x') {
        p->pos++;
        uint32_t v = 0;
        if (peek_byte(p, p->pos) == '{') {
            p->pos++;
            size_t ndig = 0;
            while (digit_value(peek_byte(p, p->pos)) < 16) {
                v = v * 16 + digit_value(p->s[p->pos++]);
                if (v > 0x10FFFF)
                    return etf_text_fail(p, ETF_EPARSE, start);
                ndig++;
            }
            if (ndig == 0 || peek_byte(p, p->pos) != '}')
                return etf_text_fail(p, ETF_EPARSE, start);
            p->pos++;
        } else {
            for (int i = 0; i < 2; i++) {
                if (digit_value(peek_byte(p, p->pos)) >= 16)
                    return etf_text_fail(p, ETF_EPARSE, start);
                v = v * 16 + digit_value(p->s[p->pos++]);
            }
        }
        if (v >= 0xD800 && v <= 0xDFFF)
            return etf_text_fail(p, ETF_EPARSE, start);
        *cp = v;
        return GD_OK;
    }
    if (c == '^') {
        int k = peek_byte(p, p->pos + 1);
        if (k < 0 || k >= 0x80)
            return etf_text_fail(p, ETF_EPARSE, start);
        p->pos += 2;
        *cp = (uint32_t)k & 31u;
        return GD_OK;
    }
    static const char from[] = "bdefnrstv";
    static const uint8_t to[] = {8, 127, 27, 12, 10, 13, 32, 9, 11};
    for (size_t i = 0; from[i] != '\0'; i++) {
        if (c == from[i]) {
            p->pos++;
            *cp = to[i];
            return GD_OK;
        }
    }
    /* Any other character stands for itself (\\, \', \", \q ...). */
    size_t n = decode_utf8(p, p->pos, cp);
    if (n == 0)
        return etf_text_fail(p, ETF_EPARSE, p->pos);
    p->pos += n;
    return GD_OK;
}

/* Reads one character of a quoted sequence or of a $c literal at p->pos
 * (p->pos < p->len): an escape sequence or one UTF-8 character. */
static int scan_char(parser_t *p, uint32_t *cp)
{
    if (p->s[p->pos] == '\\') {
        p->pos++;
        return scan_escape(p, cp);
    }
    size_t n = decode_utf8(p, p->pos, cp);
    if (n == 0)
        return etf_text_fail(p, ETF_EPARSE, p->pos);
    p->pos += n;
    return GD_OK;
}

/* Reads a quoted sequence closed by q (the opening quote already consumed),
 * appending its characters to p->chars. */
static int scan_quoted(parser_t *p, int q)
{
    size_t open = p->pos - 1;
    for (;;) {
        if (p->pos >= p->len)
            return etf_text_fail(p, ETF_EPARSE, open);
        if (p->s[p->pos] == q) {
            p->pos++;
            return GD_OK;
        }
        uint32_t cp;
        int rc = scan_char(p, &cp);
        if (rc != GD_OK)
            return rc;
        rc = push_char(p, cp);
        if (rc != GD_OK)
            return rc;
    }
}

/* Skips whitespace (every byte up to space, as erl_scan) and % comments. */
static void skip_blank(parser_t *p)
{
    while (p->pos < p->len) {
        uint8_t c = p->s[p->pos];
        if (c <= ' ') {
            p->pos++;
        } else if (c == '%') {
            while (p->pos < p->len && p->s[p->pos] != '\n')
                p->pos++;
        } else {
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Numbers.                                                                 */

static int set_mag_len(parser_t *p, size_t n)
{
    if (etf_text_grow((void **)&p->mag, &p->mag_cap, n, sizeof *p->mag) != GD_OK)
        return etf_text_fail(p, ETF_ENOMEM, p->tok_off);
    memset(p->mag, 0, n * sizeof *p->mag);
    p->mag_n = n;
    return GD_OK;
}

static void normalise_mag(parser_t *p)
{
    while (p->mag_n > 0 && p->mag[p->mag_n - 1] == 0)
        p->mag_n--;
}

/* mag = mag * mul + add over the first *used limbs, growing *used. */
static void mag_mul_add(uint64_t *mag, size_t *used, uint64_t mul, uint64_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < *used; i++) {
        unsigned __int128 t = (unsigned __int128)mag[i] * mul + carry;
        mag[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    if (carry != 0)
        mag[(*used)++] = carry;
}

/*
 * Converts the digits s[0..n) (underscores between digits allowed, already
 * checked by the scanner) in `base` into p->mag.  Powers of two are packed
 * in linear time; other bases multiply in chunks (quadratic, hence the
 * digit cap).
 */
static int digits_to_mag(parser_t *p, const uint8_t *s, size_t n, unsigned base)
{
    size_t ndigits = 0;
    for (size_t i = 0; i < n; i++)
        ndigits += s[i] != '_';
    unsigned bits_per = 0;
    while ((1u << bits_per) < base)
        bits_per++;
    bool pow2 = (1u << bits_per) == base;
    if (ndigits > (size_t)64 * HEAP_BIG_MAX_DIGITS / (bits_per - (pow2 ? 0 : 1)) + 1 ||
        (!pow2 && ndigits > TEXT_INT_MAX_DIGITS))
        return etf_text_fail(p, ETF_EBIG, p->tok_off);
    size_t limbs = (ndigits * bits_per) / 64 + 2;
    int rc = set_mag_len(p, limbs);
    if (rc != GD_OK)
        return rc;
    if (pow2) {
        size_t bit = 0;
        for (size_t i = n; i-- > 0;) {
            if (s[i] == '_')
                continue;
            uint64_t d = digit_value(s[i]);
            p->mag[bit / 64] |= d << (bit % 64);
            if (bit % 64 + bits_per > 64)
                p->mag[bit / 64 + 1] |= d >> (64 - bit % 64);
            bit += bits_per;
        }
        normalise_mag(p);
        return GD_OK;
    }
    /* Largest k with base^k < 2^64. */
    unsigned chunk = 0;
    uint64_t chunk_mul = 1;
    while (chunk_mul <= UINT64_MAX / base) {
        chunk_mul *= base;
        chunk++;
    }
    size_t used = 0;
    uint64_t acc = 0, mul = 1;
    unsigned in_chunk = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_')
            continue;
        acc = acc * base + digit_value(s[i]);
        mul *= base;
        if (++in_chunk == chunk) {
            mag_mul_add(p->mag, &used, mul, acc);
            acc = 0;
            mul = 1;
            in_chunk = 0;
        }
    }
    if (in_chunk > 0)
        mag_mul_add(p->mag, &used, mul, acc);
    p->mag_n = used;
    normalise_mag(p);
    return GD_OK;
}

/*
 * Scans digits valid in `base` with single underscores between them from
 * p->pos; returns the count of bytes consumed (0 if none).  An underscore
 * not followed by a digit ends the run before it.
 */
static size_t scan_digit_run(parser_t *p, unsigned base)
{
    size_t start = p->pos;
    while (p->pos < p->len) {
        int c = p->s[p->pos];
        if (digit_value(c) < base) {
            p->pos++;
        } else if (c == '_' && p->pos > start && digit_value(peek_byte(p, p->pos + 1)) < base) {
            p->pos++;
        } else {
            break;
        }
    }
    return p->pos - start;
}

/* Scans a number starting with a digit at p->pos: integer, Base#Digits or
 * float. */
static int scan_number(parser_t *p)
{
    size_t start = p->pos;
    size_t n = scan_digit_run(p, 10);
    if (peek_byte(p, p->pos) == '#') {
        unsigned base = 0;
        for (size_t i = 0; i < n && base <= 36; i++)
            if (p->s[start + i] != '_')
                base = base * 10 + (unsigned)(p->s[start + i] - '0');
        if (base < 2 || base > 36)
            return etf_text_fail(p, ETF_EPARSE, start);
        p->pos++;
        size_t dstart = p->pos;
        size_t dn = scan_digit_run(p, base);
        if (dn == 0)
            return etf_text_fail(p, ETF_EPARSE, p->pos);
        p->tok = T_INT;
        return digits_to_mag(p, p->s + dstart, dn, base);
    }
    if (peek_byte(p, p->pos) == '.' && is_digit(peek_byte(p, p->pos + 1))) {
        p->pos++;
        scan_digit_run(p, 10);
        int e = peek_byte(p, p->pos);
        if (e == 'e' || e == 'E') {
            size_t at = p->pos + 1;
            int sign = peek_byte(p, at);
            if (sign == '+' || sign == '-')
                at++;
            if (is_digit(peek_byte(p, at))) {
                p->pos = at;
                scan_digit_run(p, 10);
            }
        }
        size_t flen = p->pos - start;
        if (flen > TEXT_FLOAT_MAX_CHARS)
            return etf_text_fail(p, ETF_ETOO_LARGE, start);
        char tmp[TEXT_FLOAT_MAX_CHARS + 1];
        size_t k = 0;
        for (size_t i = start; i < p->pos; i++)
            if (p->s[i] != '_')
                tmp[k++] = (char)p->s[i];
        tmp[k] = '\0';
        double d = strtod(tmp, NULL);
        if (!isfinite(d))
            return etf_text_fail(p, ETF_EPARSE, start);
        p->tok = T_FLOAT;
        p->tok_float = d;
        return GD_OK;
    }
    p->tok = T_INT;
    return digits_to_mag(p, p->s + start, n, 10);
}

/* ------------------------------------------------------------------------ */
/* The lexer.                                                               */

static int make_atom_from_chars(parser_t *p, size_t offset)
{
    if (p->nchars > HEAP_ATOM_MAX_CHARS)
        return etf_text_fail(p, ETF_EATOM, offset);
    uint8_t utf8[HEAP_ATOM_MAX_BYTES];
    size_t n = 0;
    for (size_t i = 0; i < p->nchars; i++)
        n += heap_utf8_encode(utf8 + n, p->chars[i]);
    int rc = heap_atom_put((const char *)utf8, n, &p->tok_term);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, offset);
}

/* Reads the next token into p->tok (and its value). */
int etf_text_next_token(parser_t *p)
{
    skip_blank(p);
    p->tok_off = p->pos;
    if (p->pos >= p->len) {
        p->tok = T_EOF;
        return GD_OK;
    }
    size_t at = p->pos;
    int c = p->s[at];
    int c1 = peek_byte(p, at + 1);
    p->pos++;
    switch (c) {
    case '{':
        p->tok = T_LBRACE;
        return GD_OK;
    case '}':
        p->tok = T_RBRACE;
        return GD_OK;
    case '[':
        p->tok = T_LBRACK;
        return GD_OK;
    case ']':
        p->tok = T_RBRACK;
        return GD_OK;
    case '|':
        p->tok = T_BAR;
        return GD_OK;
    case ',':
        p->tok = T_COMMA;
        return GD_OK;
    case ':':
        p->tok = T_COLON;
        return GD_OK;
    case '/':
        p->tok = T_SLASH;
        return GD_OK;
    case '-':
        p->tok = T_MINUS;
        return GD_OK;
    case '+':
        p->tok = T_PLUS;
        return GD_OK;
    case '=':
        if (c1 != '>')
            return etf_text_fail(p, ETF_EPARSE, at);
        p->pos++;
        p->tok = T_ARROW;
        return GD_OK;
    case '<':
        if (c1 == '<') {
            p->pos++;
            p->tok = T_BIN_OPEN;
        } else {
            p->tok = T_LT;
        }
        return GD_OK;
    case '>':
        if (c1 == '>') {
            p->pos++;
            p->tok = T_BIN_CLOSE;
        } else {
            p->tok = T_GT;
        }
        return GD_OK;
    case '.':
        if (c1 >= 0 && c1 > ' ' && c1 != '%')
            return etf_text_fail(p, ETF_EPARSE, at);
        p->tok = T_DOT;
        return GD_OK;
    case '#': {
        static const struct {
            const char *text;
            enum token tok;
        } hashes[] = {
            {"{", T_MAP_OPEN}, {"Ref<", T_REF_OPEN}, {"Port<", T_PORT_OPEN}, {"Fun<", T_FUN_OPEN}};
        for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++) {
            size_t n = strlen(hashes[i].text);
            if (p->len - p->pos >= n && memcmp(p->s + p->pos, hashes[i].text, n) == 0) {
                p->pos += n;
                p->tok = hashes[i].tok;
                return GD_OK;
            }
        }
        return etf_text_fail(p, ETF_EPARSE, at);
    }
    case '$': {
        uint32_t cp;
        if (p->pos >= p->len)
            return etf_text_fail(p, ETF_EPARSE, at);
        int rc = scan_char(p, &cp);
        if (rc != GD_OK)
            return rc;
        rc = set_mag_len(p, 1);
        if (rc != GD_OK)
            return rc;
        p->mag[0] = cp;
        normalise_mag(p);
        p->tok = T_INT;
        return GD_OK;
    }
    case '"': {
        p->nchars = 0;
        for (;;) {
            int rc = scan_quoted(p, '"');
            if (rc != GD_OK)
                return rc;
            /* Adjacent strings are one string: look past blanks for '"'. */
            size_t after = p->pos;
            skip_blank(p);
            if (peek_byte(p, p->pos) != '"') {
                p->pos = after;
                break;
            }
            p->pos++;
        }
        p->tok = T_STRING;
        return GD_OK;
    }
    case '\'': {
        p->nchars = 0;
        int rc = scan_quoted(p, '\'');
        if (rc != GD_OK)
            return rc;
        p->tok = T_ATOM;
        return make_atom_from_chars(p, at);
    }
    default:
        break;
    }
    p->pos = at;
    if (is_digit(c))
        return scan_number(p);
    uint32_t cp;
    size_t n = decode_utf8(p, at, &cp);
    if (n == 0)
        return etf_text_fail(p, ETF_EPARSE, at);
    if (!is_atom_start(cp)) {
        /* Variables (uppercase, _) and anything else cannot start a term. */
        return etf_text_fail(p, ETF_EPARSE, at);
    }
    p->pos += n;
    while (name_char_at(p, p->pos, &n) != 0)
        p->pos += n;
    size_t wlen = p->pos - at;
    if (wlen == 3 && memcmp(p->s + at, "fun", 3) == 0) {
        p->tok = T_FUN;
        return GD_OK;
    }
    p->tok = T_ATOM;
    int rc = heap_atom_put((const char *)p->s + at, wlen, &p->tok_term);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, at);
}

/* Reads the next token and checks it is `want`. */
int etf_text_expect(parser_t *p, enum token want)
{
    int rc = etf_text_next_token(p);
    if (rc != GD_OK)
        return rc;
    return p->tok == want ? GD_OK : etf_text_fail(p, ETF_EPARSE, p->tok_off);
}

/* p->mag as an unsigned value no larger than max, or an error. */
int etf_text_mag_to_u64(parser_t *p, uint64_t max, uint64_t *out)
{
    if (p->mag_n > 1 || (p->mag_n == 1 && p->mag[0] > max))
        return etf_text_fail(p, ETF_EPARSE, p->tok_off);
    *out = p->mag_n ? p->mag[0] : 0;
    return GD_OK;
}
