/*
 * text_parse.c — etf_parse: one Erlang term in text syntax (no variables,
 * no expressions) built on a heap.
 *
 * Accepted, as erl_scan/erl_parse:parse_term read it on OTP 25 unless noted:
 *   - integers: 42, -7, +7, 1_000, Base#Digits (2..36, 16#FF, 2#1010),
 *     $c and $\n style character codes, any size (bignums);
 *   - floats: 1.0, 2.5e-3, 1.0E10 (a fraction is required, as in Erlang);
 *   - atoms: bare (abc, a@b, Latin-1 letters) and quoted ('hello world',
 *     '\x{3B1}'); `fun` introduces an export, other reserved words are
 *     accepted as bare atoms (Erlang rejects them; printing quotes them);
 *   - strings with every erl_scan escape (\n \t \e \d \s \^X \OOO \xHH
 *     \x{H...}), adjacent strings concatenated ("ab" "cd");
 *   - lists with an improper tail [1,2|3], tuples, maps #{K => V} (a later
 *     duplicate key wins, as in a map expression);
 *   - binaries: <<"bin">>, <<1,2,3>>, <<1:3>>, <<5:4, 3:4>>, segments with
 *     integer/float/utf8/utf16/utf32 types, signed/unsigned, big/little/
 *     native, unit:N, string segments (<<"ä"/utf8>>, <<"ab":16>>);
 *   - identifiers as text_print.c prints them: <0.42.0>, <'n@h'.42.0.3>,
 *     #Port<0.5>, #Port<'n@h'.5.3>, #Ref<0.1.2.3>, #Ref<'n@h'.1.2.3.3>;
 *     fun M:F/A exports (#Fun<...> closures cannot be rebuilt from text);
 *   - % comments, whitespace, and an optional final '.'.
 *
 * Input is UTF-8.  It is treated as hostile: nesting is walked with
 * explicit stacks (no C recursion), bounded by TEXT_MAX_DEPTH; integer
 * literals in bases that are not powers of two are capped at
 * TEXT_INT_MAX_DIGITS digits (their conversion is quadratic); the binaries
 * of one parse hold at most 16 MiB plus 8 bytes per input byte (so a few
 * bytes of text such as <<0:99999999999>> cannot ask for gigabytes).  Every error
 * reports the byte offset where it was detected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "etf.h"
#include "internal.h"

/* Deepest nesting of lists, tuples and maps accepted. */
#define TEXT_MAX_DEPTH ((size_t)1 << 20)
/* Longest integer literal in a base that is not a power of two (digits). */
#define TEXT_INT_MAX_DIGITS 400000u
/* Longest float literal (characters). */
#define TEXT_FLOAT_MAX_CHARS 4096u
/* Bits all binaries of one parse may hold together: a base plus a share
 * per input byte (plain segments like 255 or "abc" never come near it;
 * only explicit sizes such as <<0:80000000>> amplify the input). */
#define TEXT_BIN_BUDGET_BASE_BITS ((uint64_t)1 << 27)
#define TEXT_BIN_BUDGET_BITS_PER_BYTE 64u

enum token {
    T_EOF,
    T_LBRACE,    /* { */
    T_RBRACE,    /* } */
    T_LBRACK,    /* [ */
    T_RBRACK,    /* ] */
    T_BAR,       /* | */
    T_COMMA,     /* , */
    T_ARROW,     /* => */
    T_MAP_OPEN,  /* #{ */
    T_BIN_OPEN,  /* << */
    T_BIN_CLOSE, /* >> */
    T_LT,        /* < (a pid follows) */
    T_GT,        /* > */
    T_COLON,     /* : */
    T_SLASH,     /* / */
    T_DOT,       /* . followed by whitespace, a comment or the end */
    T_MINUS,     /* - */
    T_PLUS,      /* + */
    T_INT,       /* magnitude in p->mag (also $c) */
    T_FLOAT,     /* p->tok_float (non-negative) */
    T_ATOM,      /* p->tok_term */
    T_STRING,    /* code points in p->chars (adjacent strings joined) */
    T_FUN,       /* the keyword fun */
    T_REF_OPEN,  /* #Ref< */
    T_PORT_OPEN, /* #Port< */
    T_FUN_OPEN,  /* #Fun< */
};

enum frame_kind { FR_LIST, FR_TUPLE, FR_MAP };

typedef struct frame {
    enum frame_kind kind;
    bool tail;     /* lists: after '|' */
    size_t base;   /* first value of this container on the value stack */
    size_t offset; /* where the container opened (for errors) */
} frame_t;

typedef struct parser {
    heap_t *h;
    const uint8_t *s;
    size_t len;
    size_t pos;
    etf_error_t *err;

    /* The current token. */
    enum token tok;
    size_t tok_off;
    term_t tok_term;
    double tok_float;
    uint64_t *mag; /* little-endian magnitude of a T_INT */
    size_t mag_n, mag_cap;
    uint32_t *chars; /* code points of a T_STRING or quoted atom */
    size_t nchars, chars_cap;

    /* Containers being built. */
    frame_t *frames;
    size_t depth, frames_cap;
    term_t *vals;
    size_t nvals, vals_cap;

    /* The binary being built: bits MSB first, bits past nbits kept zero. */
    uint8_t *bin;
    size_t bin_bits, bin_cap;
    uint64_t bin_total_bits;
} parser_t;

/* Records the error and returns its code. */
static GD_COLD int fail(parser_t *p, int code, size_t offset)
{
    if (p->err != NULL) {
        p->err->code = code;
        p->err->offset = offset;
    }
    return code;
}

/* Maps a heap error to etf/'s codes (the caller's offset applies). */
static int heap_error(parser_t *p, int rc, size_t offset)
{
    switch (rc) {
    case GD_ENOMEM:
        return fail(p, ETF_ENOMEM, offset);
    case GD_EATOM_TABLE_FULL:
        return fail(p, ETF_EATOM_TABLE_FULL, offset);
    case GD_EATOM_TOO_LONG:
    case GD_EATOM_BAD_UTF8:
        return fail(p, ETF_EATOM, offset);
    case GD_ESYSTEM_LIMIT:
        return fail(p, ETF_EBIG, offset);
    default:
        return fail(p, rc, offset);
    }
}

/* Grows a malloc'ed array to hold `need` elements of `size` bytes. */
static int grow(void **arr, size_t *cap, size_t need, size_t size)
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

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

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

static int peek_byte(const parser_t *p, size_t at)
{
    return at < p->len ? p->s[at] : -1;
}

/*
 * Decodes the UTF-8 character at p->s[at] into *cp and returns its length;
 * 0 for invalid UTF-8 (overlong forms, surrogates, above U+10FFFF, cut off).
 */
static size_t decode_utf8(const parser_t *p, size_t at, uint32_t *cp)
{
    const uint8_t *s = p->s + at;
    size_t left = p->len - at;
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t n;
    uint32_t c, min;
    if ((b & 0xE0) == 0xC0) {
        n = 2;
        c = b & 0x1F;
        min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        n = 3;
        c = b & 0x0F;
        min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        n = 4;
        c = b & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (left < n)
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
    if (grow((void **)&p->chars, &p->chars_cap, p->nchars + 1, sizeof *p->chars) != GD_OK)
        return fail(p, ETF_ENOMEM, p->pos);
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
        return fail(p, ETF_EPARSE, start);
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
                    return fail(p, ETF_EPARSE, start);
                ndig++;
            }
            if (ndig == 0 || peek_byte(p, p->pos) != '}')
                return fail(p, ETF_EPARSE, start);
            p->pos++;
        } else {
            for (int i = 0; i < 2; i++) {
                if (digit_value(peek_byte(p, p->pos)) >= 16)
                    return fail(p, ETF_EPARSE, start);
                v = v * 16 + digit_value(p->s[p->pos++]);
            }
        }
        if (v >= 0xD800 && v <= 0xDFFF)
            return fail(p, ETF_EPARSE, start);
        *cp = v;
        return GD_OK;
    }
    if (c == '^') {
        int k = peek_byte(p, p->pos + 1);
        if (k < 0 || k >= 0x80)
            return fail(p, ETF_EPARSE, start);
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
        return fail(p, ETF_EPARSE, p->pos);
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
        return fail(p, ETF_EPARSE, p->pos);
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
            return fail(p, ETF_EPARSE, open);
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
    if (grow((void **)&p->mag, &p->mag_cap, n, sizeof *p->mag) != GD_OK)
        return fail(p, ETF_ENOMEM, p->tok_off);
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
        return fail(p, ETF_EBIG, p->tok_off);
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
            return fail(p, ETF_EPARSE, start);
        p->pos++;
        size_t dstart = p->pos;
        size_t dn = scan_digit_run(p, base);
        if (dn == 0)
            return fail(p, ETF_EPARSE, p->pos);
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
            return fail(p, ETF_ETOO_LARGE, start);
        char tmp[TEXT_FLOAT_MAX_CHARS + 1];
        size_t k = 0;
        for (size_t i = start; i < p->pos; i++)
            if (p->s[i] != '_')
                tmp[k++] = (char)p->s[i];
        tmp[k] = '\0';
        double d = strtod(tmp, NULL);
        if (!isfinite(d))
            return fail(p, ETF_EPARSE, start);
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
        return fail(p, ETF_EATOM, offset);
    uint8_t utf8[HEAP_ATOM_MAX_BYTES];
    size_t n = 0;
    for (size_t i = 0; i < p->nchars; i++)
        n += etf_utf8_put(utf8 + n, p->chars[i]);
    int rc = heap_atom_put((const char *)utf8, n, &p->tok_term);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, offset);
}

/* Reads the next token into p->tok (and its value). */
static int next_token(parser_t *p)
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
            return fail(p, ETF_EPARSE, at);
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
            return fail(p, ETF_EPARSE, at);
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
        return fail(p, ETF_EPARSE, at);
    }
    case '$': {
        uint32_t cp;
        if (p->pos >= p->len)
            return fail(p, ETF_EPARSE, at);
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
        return fail(p, ETF_EPARSE, at);
    if (!is_atom_start(cp)) {
        /* Variables (uppercase, _) and anything else cannot start a term. */
        return fail(p, ETF_EPARSE, at);
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
    return rc == GD_OK ? GD_OK : heap_error(p, rc, at);
}

/* Reads the next token and checks it is `want`. */
static int expect(parser_t *p, enum token want)
{
    int rc = next_token(p);
    if (rc != GD_OK)
        return rc;
    return p->tok == want ? GD_OK : fail(p, ETF_EPARSE, p->tok_off);
}

/* ------------------------------------------------------------------------ */
/* Leaves.                                                                  */

/* The integer term for sign and p->mag. */
static int make_integer(parser_t *p, bool negative, term_t *out)
{
    int rc = heap_make_integer_digits(p->h, negative, p->mag, p->mag_n, out);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, p->tok_off);
}

/* p->mag as an unsigned value no larger than max, or an error. */
static int mag_to_u64(parser_t *p, uint64_t max, uint64_t *out)
{
    if (p->mag_n > 1 || (p->mag_n == 1 && p->mag[0] > max))
        return fail(p, ETF_EPARSE, p->tok_off);
    *out = p->mag_n ? p->mag[0] : 0;
    return GD_OK;
}

/* A number after an optional sign that is the current token. */
static int parse_number(parser_t *p, term_t *out)
{
    bool negative = false;
    int rc;
    if (p->tok == T_MINUS || p->tok == T_PLUS) {
        negative = p->tok == T_MINUS;
        if ((rc = next_token(p)) != GD_OK)
            return rc;
    }
    if (p->tok == T_INT)
        return make_integer(p, negative, out);
    if (p->tok == T_FLOAT) {
        rc = heap_make_float(p->h, negative ? -p->tok_float : p->tok_float, out);
        return rc == GD_OK ? GD_OK : heap_error(p, rc, p->tok_off);
    }
    return fail(p, ETF_EPARSE, p->tok_off);
}

/* The string in p->chars as a list of character codes. */
static int make_string(parser_t *p, term_t *out)
{
    term_t list = TERM_NIL;
    for (size_t i = p->nchars; i-- > 0;) {
        int rc = heap_cons(p->h, term_make_small(p->chars[i]), list, &list);
        if (rc != GD_OK)
            return heap_error(p, rc, p->tok_off);
    }
    *out = list;
    return GD_OK;
}

/*
 * Reads ".N.N...>" right after the text at p->pos (no blanks inside, as
 * OTP prints them): between min and max numbers, each at most UINT64_MAX.
 */
static int scan_dotted(parser_t *p, size_t min, size_t max, uint64_t *nums, size_t *count)
{
    size_t n = 0;
    while (peek_byte(p, p->pos) == '.') {
        p->pos++;
        if (n == max || !is_digit(peek_byte(p, p->pos)))
            return fail(p, ETF_EPARSE, p->pos);
        uint64_t v = 0;
        while (is_digit(peek_byte(p, p->pos))) {
            unsigned d = (unsigned)(p->s[p->pos] - '0');
            if (v > (UINT64_MAX - d) / 10)
                return fail(p, ETF_EPARSE, p->pos);
            v = v * 10 + d;
            p->pos++;
        }
        nums[n++] = v;
    }
    if (n < min || peek_byte(p, p->pos) != '>')
        return fail(p, ETF_EPARSE, p->pos);
    p->pos++;
    *count = n;
    return GD_OK;
}

/*
 * After "<", "#Port<" or "#Ref<": either "0" (the local node) or a node
 * atom.  *node gets TERM_NONE for the local form.
 */
static int scan_ident_node(parser_t *p, term_t *node)
{
    size_t at = p->pos;
    int c = peek_byte(p, at);
    if (c == '0' && !is_digit(peek_byte(p, at + 1))) {
        p->pos++;
        *node = TERM_NONE;
        return GD_OK;
    }
    if (is_digit(c)) {
        /* <NodeIndex.Id.Serial> with another index: OTP's local view of a
         * remote node; the node it means is not in the text. */
        return fail(p, ETF_EPARSE, at);
    }
    int rc = next_token(p);
    if (rc != GD_OK)
        return rc;
    if (p->tok != T_ATOM || p->tok_off != at)
        return fail(p, ETF_EPARSE, p->tok_off);
    *node = p->tok_term;
    return GD_OK;
}

static int parse_pid(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[3];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 2, 2, v, &n)) != GD_OK)
            return rc;
        if (v[0] > UINT32_MAX || v[1] > UINT32_MAX)
            return fail(p, ETF_EPARSE, open);
        /* <0.Id.Serial> is a pid of this node (out of the local ranges:
         * badarg, as list_to_pid). */
        node = heap_node_name();
        v[2] = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 3, 3, v, &n)) != GD_OK)
            return rc;
        if (v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > UINT32_MAX)
            return fail(p, ETF_EPARSE, open);
    }
    rc = heap_make_ext_pid(p->h, node, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], out);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, open);
}

static int parse_port(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[2];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 1, 1, v, &n)) != GD_OK)
            return rc;
        node = heap_node_name(); /* #Port<0.N>: a port of this node */
        v[1] = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 2, 2, v, &n)) != GD_OK)
            return rc;
        if (v[1] > UINT32_MAX)
            return fail(p, ETF_EPARSE, open);
    }
    rc = heap_make_ext_port(p->h, node, v[0], (uint32_t)v[1], out);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, open);
}

static int parse_ref(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[HEAP_REF_MAX_WORDS + 1];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    uint32_t creation = 0;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 0, HEAP_REF_MAX_WORDS, v, &n)) != GD_OK)
            return rc;
        node = heap_node_name(); /* #Ref<0.W2.W1.W0>: a reference of this node */
        creation = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 1, HEAP_REF_MAX_WORDS + 1, v, &n)) != GD_OK)
            return rc;
        if (v[n - 1] > UINT32_MAX)
            return fail(p, ETF_EPARSE, open);
        creation = (uint32_t)v[--n];
    }
    /* Printed highest word first. */
    uint32_t words[HEAP_REF_MAX_WORDS];
    for (size_t i = 0; i < n; i++) {
        if (v[i] > UINT32_MAX)
            return fail(p, ETF_EPARSE, open);
        words[n - 1 - i] = (uint32_t)v[i];
    }
    rc = heap_make_ref(p->h, node, creation, words, n, out);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, open);
}

/* fun Module:Function/Arity (the keyword already read). */
static int parse_export(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t mod, fn;
    uint64_t arity = 0;
    int rc;
    if ((rc = expect(p, T_ATOM)) != GD_OK)
        return rc;
    mod = p->tok_term;
    if ((rc = expect(p, T_COLON)) != GD_OK || (rc = expect(p, T_ATOM)) != GD_OK)
        return rc;
    fn = p->tok_term;
    if ((rc = expect(p, T_SLASH)) != GD_OK || (rc = expect(p, T_INT)) != GD_OK ||
        (rc = mag_to_u64(p, 255, &arity)) != GD_OK)
        return rc;
    rc = heap_make_export(p->h, mod, fn, (uint8_t)arity, out);
    return rc == GD_OK ? GD_OK : heap_error(p, rc, open);
}

/* ------------------------------------------------------------------------ */
/* Binaries.                                                                */

/* Makes room for nbits more bits (plus a spill byte); new bytes are zero. */
static int bin_reserve(parser_t *p, size_t nbits)
{
    size_t need = (p->bin_bits + nbits + 7) / 8 + 1;
    if (need > p->bin_cap) {
        size_t old = p->bin_cap;
        if (grow((void **)&p->bin, &p->bin_cap, need, 1) != GD_OK)
            return fail(p, ETF_ENOMEM, p->tok_off);
        memset(p->bin + old, 0, p->bin_cap - old);
    }
    return GD_OK;
}

/* Appends the first nbits bits of src (MSB first) to the binary. */
static int bin_append(parser_t *p, const uint8_t *src, size_t nbits)
{
    int rc = bin_reserve(p, nbits);
    if (rc != GD_OK)
        return rc;
    unsigned shift = (unsigned)(p->bin_bits % 8);
    uint8_t *dst = p->bin + p->bin_bits / 8;
    size_t nbytes = (nbits + 7) / 8;
    for (size_t i = 0; i < nbytes; i++) {
        uint8_t b = src[i];
        if (i == nbytes - 1 && nbits % 8 != 0)
            b &= (uint8_t)(0xFF << (8 - nbits % 8));
        dst[i] |= (uint8_t)(b >> shift);
        if (shift != 0)
            dst[i + 1] |= (uint8_t)(b << (8 - shift));
    }
    p->bin_bits += nbits;
    return GD_OK;
}

/* Counts bits against the per-parse budget. */
static int bin_budget(parser_t *p, uint64_t bits, size_t offset)
{
    uint64_t budget = TEXT_BIN_BUDGET_BASE_BITS + (uint64_t)p->len * TEXT_BIN_BUDGET_BITS_PER_BYTE;
    if (bits > budget - p->bin_total_bits)
        return fail(p, ETF_ETOO_LARGE, offset);
    p->bin_total_bits += bits;
    return GD_OK;
}

enum seg_type { SEG_INTEGER, SEG_FLOAT, SEG_UTF8, SEG_UTF16, SEG_UTF32 };

typedef struct segment {
    enum seg_type type;
    bool little;
    bool has_size;
    uint64_t size;
    uint64_t unit;
    size_t offset;
} segment_t;

/* A segment value: an integer (sign + magnitude limbs) or a float. */
typedef struct seg_value {
    bool is_float;
    double f;
    bool negative;
    const uint64_t *mag;
    size_t mag_n;
    uint64_t small; /* storage for single characters of a string segment */
} seg_value_t;

/* Byte i (little-endian) of the two's complement of an integer segment
 * value, sign-extended without limit; `z` is the index of its magnitude's
 * lowest non-zero byte (SIZE_MAX for zero). */
static uint8_t tc_byte(const seg_value_t *v, size_t z, size_t i)
{
    size_t limb = i / 8;
    uint8_t b = limb < v->mag_n ? (uint8_t)(v->mag[limb] >> (8 * (i % 8))) : 0;
    if (!v->negative || i < z)
        return b;
    return i == z ? (uint8_t)-b : (uint8_t)~b;
}

/* Appends `count` copies of byte b (0x00 or 0xFF) to the binary. */
static int bin_append_fill(parser_t *p, uint8_t b, size_t count)
{
    if (b == 0) {
        /* Bits past bin_bits are kept zero: only move the end. */
        int rc = bin_reserve(p, 8 * count);
        if (rc == GD_OK)
            p->bin_bits += 8 * count;
        return rc;
    }
    uint8_t chunk[1024];
    memset(chunk, b, sizeof chunk);
    while (count > 0) {
        size_t n = count < sizeof chunk ? count : sizeof chunk;
        int rc = bin_append(p, chunk, 8 * n);
        if (rc != GD_OK)
            return rc;
        count -= n;
    }
    return GD_OK;
}

/*
 * Appends an integer of `bits` bits (two's complement, truncated), big- or
 * little-endian as Erlang defines them for sizes that are not whole bytes:
 * big puts the value's low `bits` bits MSB first; little writes whole bytes
 * lowest first and the remaining top bits last.  Bytes are generated on
 * the fly, and the sign extension of a long segment is written as a run,
 * so no temporary of the segment's size is needed.
 */
static int put_int_segment(parser_t *p, const seg_value_t *v, uint64_t bits, bool little)
{
    if (bits == 0)
        return GD_OK;
    size_t nbytes = (size_t)((bits + 7) / 8);
    unsigned partial = (unsigned)(bits % 8);
    size_t z = SIZE_MAX;
    for (size_t i = 0; i < 8 * v->mag_n; i++) {
        if ((v->mag[i / 8] >> (8 * (i % 8))) & 0xFF) {
            z = i;
            break;
        }
    }
    uint8_t fill = v->negative && z != SIZE_MAX ? 0xFF : 0x00;
    /* Bytes at or above `sig` are pure sign extension. */
    size_t sig = 8 * v->mag_n + 1 < nbytes ? 8 * v->mag_n + 1 : nbytes;
    uint8_t chunk[1024];
    size_t used = 0;
    int rc;
    if (partial == 0 && !little && (rc = bin_append_fill(p, fill, nbytes - sig)) != GD_OK)
        return rc;
    size_t from = partial == 0 ? (little ? 0 : nbytes - sig) : 0;
    size_t to = partial == 0 ? (little ? sig : nbytes) : nbytes;
    for (size_t i = from; i < to; i++) {
        uint8_t b;
        if (little) {
            b = tc_byte(v, z, i);
            if (partial != 0 && i == nbytes - 1)
                b = (uint8_t)(b << (8 - partial));
        } else if (partial == 0) {
            b = tc_byte(v, z, nbytes - 1 - i);
        } else {
            /* The value shifted left by 8 - partial bits, so its low
             * `bits` bits start at the top of the first byte. */
            size_t k = nbytes - 1 - i;
            b = (uint8_t)((uint8_t)(tc_byte(v, z, k) << (8 - partial)) |
                          (k > 0 ? tc_byte(v, z, k - 1) >> partial : 0));
        }
        chunk[used++] = b;
        if (used == sizeof chunk || i + 1 == to) {
            size_t nb = 8 * used;
            if (i + 1 == nbytes && partial != 0)
                nb -= 8 - partial;
            if ((rc = bin_append(p, chunk, nb)) != GD_OK)
                return rc;
            used = 0;
        }
    }
    if (partial == 0 && little)
        return bin_append_fill(p, fill, nbytes - sig);
    return GD_OK;
}

/* IEEE binary16 from a double, rounding to nearest even; values beyond the
 * format become infinity, as OTP's float16 segments do. */
static uint16_t double_to_half(double d)
{
    uint16_t sign = signbit(d) ? 0x8000 : 0;
    double a = fabs(d);
    if (a >= 65520.0)
        return sign | 0x7C00;
    if (a < 6.103515625e-05) /* below the smallest normal: multiples of 2^-24 */
        return sign | (uint16_t)nearbyint(a * 16777216.0);
    int e;
    double f = frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    double m = nearbyint(f * 2048.0);
    if (m == 2048.0) {
        m = 1024.0;
        e++;
    }
    return sign | (uint16_t)((unsigned)(e - 1 + 15) << 10) | (uint16_t)((unsigned)m - 1024u);
}

static int put_float_segment(parser_t *p, const seg_value_t *v, uint64_t bits, bool little,
                             size_t offset)
{
    double d = v->f;
    if (!v->is_float) {
        d = 0.0;
        for (size_t i = v->mag_n; i-- > 0;)
            d = d * 18446744073709551616.0 + (double)v->mag[i];
        if (!isfinite(d))
            return fail(p, ETF_EPARSE, offset);
        if (v->negative)
            d = -d;
    }
    uint8_t be[8];
    uint64_t raw;
    if (bits == 64) {
        memcpy(&raw, &d, 8);
    } else if (bits == 32) {
        float f = (float)d;
        uint32_t r32;
        memcpy(&r32, &f, 4);
        raw = r32;
    } else if (bits == 16) {
        raw = double_to_half(d);
    } else {
        return fail(p, ETF_EPARSE, offset);
    }
    size_t nbytes = (size_t)(bits / 8);
    for (size_t i = 0; i < nbytes; i++) {
        uint8_t b = (uint8_t)(raw >> (8 * i));
        be[little ? i : nbytes - 1 - i] = b;
    }
    return bin_append(p, be, (size_t)bits);
}

static int put_utf_segment(parser_t *p, const seg_value_t *v, const segment_t *seg)
{
    if (v->is_float || v->negative || v->mag_n > 1 || (v->mag_n == 1 && v->mag[0] > 0x10FFFF))
        return fail(p, ETF_EPARSE, seg->offset);
    uint32_t c = v->mag_n ? (uint32_t)v->mag[0] : 0;
    if (c >= 0xD800 && c <= 0xDFFF)
        return fail(p, ETF_EPARSE, seg->offset);
    uint8_t b[4];
    size_t n = 0;
    if (seg->type == SEG_UTF8) {
        n = etf_utf8_put(b, c);
    } else if (seg->type == SEG_UTF16) {
        uint16_t u[2];
        size_t k = 0;
        if (c < 0x10000) {
            u[k++] = (uint16_t)c;
        } else {
            u[k++] = (uint16_t)(0xD800 | ((c - 0x10000) >> 10));
            u[k++] = (uint16_t)(0xDC00 | ((c - 0x10000) & 0x3FF));
        }
        for (size_t i = 0; i < k; i++) {
            b[n++] = (uint8_t)(seg->little ? u[i] : u[i] >> 8);
            b[n++] = (uint8_t)(seg->little ? u[i] >> 8 : u[i]);
        }
    } else {
        for (int i = 0; i < 4; i++)
            b[n++] = (uint8_t)(c >> (seg->little ? 8 * i : 8 * (3 - i)));
    }
    int rc = bin_budget(p, 8 * n, seg->offset);
    return rc == GD_OK ? bin_append(p, b, 8 * n) : rc;
}

/* Appends one value under the segment's type specification. */
static int put_segment(parser_t *p, const seg_value_t *v, const segment_t *seg)
{
    if (seg->type == SEG_UTF8 || seg->type == SEG_UTF16 || seg->type == SEG_UTF32)
        return put_utf_segment(p, v, seg);
    uint64_t size = seg->has_size ? seg->size : (seg->type == SEG_FLOAT ? 64 : 8);
    if (seg->unit != 0 && size > UINT64_MAX / seg->unit)
        return fail(p, ETF_ETOO_LARGE, seg->offset);
    uint64_t bits = size * seg->unit;
    int rc = bin_budget(p, bits, seg->offset);
    if (rc != GD_OK)
        return rc;
    if (seg->type == SEG_FLOAT)
        return put_float_segment(p, v, bits, seg->little, seg->offset);
    if (v->is_float)
        return fail(p, ETF_EPARSE, seg->offset);
    return put_int_segment(p, v, bits, seg->little);
}

/* Reads "/type-type-unit:N" after a segment value. */
static int parse_type_spec(parser_t *p, segment_t *seg)
{
    bool have_type = false, have_sign = false, have_endian = false, have_unit = false;
    for (;;) {
        int rc = expect(p, T_ATOM);
        if (rc != GD_OK)
            return rc;
        size_t len;
        const char *name = heap_atom_text(p->tok_term, &len);
        size_t off = p->tok_off;
#define IS(s) (len == strlen(s) && memcmp(name, s, len) == 0)
        if (IS("integer") || IS("float") || IS("utf8") || IS("utf16") || IS("utf32")) {
            if (have_type)
                return fail(p, ETF_EPARSE, off);
            have_type = true;
            seg->type = IS("integer") ? SEG_INTEGER
                        : IS("float") ? SEG_FLOAT
                        : IS("utf8")  ? SEG_UTF8
                        : IS("utf16") ? SEG_UTF16
                                      : SEG_UTF32;
        } else if (IS("signed") || IS("unsigned")) {
            /* Construction writes two's complement either way. */
            if (have_sign)
                return fail(p, ETF_EPARSE, off);
            have_sign = true;
        } else if (IS("big") || IS("little") || IS("native")) {
            if (have_endian)
                return fail(p, ETF_EPARSE, off);
            have_endian = true;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            seg->little = IS("little");
#else
            seg->little = !IS("big");
#endif
        } else if (IS("unit")) {
            uint64_t unit = 0;
            if (have_unit || (rc = expect(p, T_COLON)) != GD_OK || (rc = expect(p, T_INT)) != GD_OK)
                return have_unit ? fail(p, ETF_EPARSE, off) : rc;
            if ((rc = mag_to_u64(p, 256, &unit)) != GD_OK || unit == 0)
                return fail(p, ETF_EPARSE, p->tok_off);
            have_unit = true;
            seg->unit = unit;
        } else {
            /* binary/bytes/bits/bitstring need binary values, which term
             * text cannot hold inside a binary. */
            return fail(p, ETF_EPARSE, off);
        }
#undef IS
        if ((rc = next_token(p)) != GD_OK)
            return rc;
        if (p->tok != T_MINUS)
            return GD_OK;
    }
}

/*
 * Reads the segments of a binary after "<<" up to ">>" and builds it.
 * The value of each segment is read into a private copy (the lexer's
 * buffers are reused by the size and type tokens that follow).
 */
static int parse_binary(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    uint64_t *mag = NULL;
    uint32_t *chars = NULL;
    size_t mag_cap = 0, chars_cap = 0;
    int rc = next_token(p);
    /* Only the bytes the previous binary used can be non-zero. */
    if (p->bin_bits > 0)
        memset(p->bin, 0, (p->bin_bits + 7) / 8);
    p->bin_bits = 0;
    while (rc == GD_OK && p->tok != T_BIN_CLOSE) {
        segment_t seg = {.type = SEG_INTEGER, .unit = 1, .offset = p->tok_off};
        seg_value_t v = {0};
        size_t nchars = 0;
        bool is_string = false;
        if (p->tok == T_STRING) {
            is_string = true;
            nchars = p->nchars;
            if ((rc = grow((void **)&chars, &chars_cap, nchars + 1, sizeof *chars)) != GD_OK) {
                rc = fail(p, ETF_ENOMEM, p->tok_off);
                break;
            }
            if (nchars > 0)
                memcpy(chars, p->chars, nchars * sizeof *chars);
        } else {
            if (p->tok == T_MINUS || p->tok == T_PLUS) {
                v.negative = p->tok == T_MINUS;
                if ((rc = next_token(p)) != GD_OK)
                    break;
            }
            if (p->tok == T_FLOAT) {
                v.is_float = true;
                v.f = v.negative ? -p->tok_float : p->tok_float;
            } else if (p->tok == T_INT) {
                if ((rc = grow((void **)&mag, &mag_cap, p->mag_n + 1, sizeof *mag)) != GD_OK) {
                    rc = fail(p, ETF_ENOMEM, p->tok_off);
                    break;
                }
                memcpy(mag, p->mag, p->mag_n * sizeof *mag);
                v.mag = mag;
                v.mag_n = p->mag_n;
                if (v.mag_n == 0)
                    v.negative = false;
            } else {
                rc = fail(p, ETF_EPARSE, p->tok_off);
                break;
            }
        }
        if ((rc = next_token(p)) != GD_OK)
            break;
        if (p->tok == T_COLON) {
            if ((rc = expect(p, T_INT)) != GD_OK)
                break;
            if (p->mag_n > 1) {
                rc = fail(p, ETF_ETOO_LARGE, p->tok_off);
                break;
            }
            seg.has_size = true;
            seg.size = p->mag_n ? p->mag[0] : 0;
            if ((rc = next_token(p)) != GD_OK)
                break;
        }
        if (p->tok == T_SLASH && (rc = parse_type_spec(p, &seg)) != GD_OK)
            break;
        if ((seg.type == SEG_UTF8 || seg.type == SEG_UTF16 || seg.type == SEG_UTF32) &&
            seg.has_size) {
            rc = fail(p, ETF_EPARSE, seg.offset);
            break;
        }
        if (is_string) {
            for (size_t i = 0; i < nchars && rc == GD_OK; i++) {
                v.small = chars[i];
                v.mag = &v.small;
                v.mag_n = chars[i] != 0;
                rc = put_segment(p, &v, &seg);
            }
        } else {
            rc = put_segment(p, &v, &seg);
        }
        if (rc != GD_OK)
            break;
        if (p->tok == T_COMMA) {
            if ((rc = next_token(p)) != GD_OK)
                break;
            if (p->tok == T_BIN_CLOSE)
                rc = fail(p, ETF_EPARSE, p->tok_off);
        } else if (p->tok != T_BIN_CLOSE) {
            rc = fail(p, ETF_EPARSE, p->tok_off);
        }
    }
    free(mag);
    free(chars);
    if (rc != GD_OK)
        return rc;
    uint8_t *data;
    rc = heap_make_bitstring_uninit(p->h, p->bin_bits, &data, out);
    if (rc != GD_OK)
        return heap_error(p, rc, open);
    if (p->bin_bits > 0)
        memcpy(data, p->bin, (p->bin_bits + 7) / 8);
    return GD_OK;
}

/* ------------------------------------------------------------------------ */
/* Containers.                                                              */

static int push_frame(parser_t *p, enum frame_kind kind)
{
    if (p->depth >= TEXT_MAX_DEPTH)
        return fail(p, ETF_EDEPTH, p->tok_off);
    if (grow((void **)&p->frames, &p->frames_cap, p->depth + 1, sizeof *p->frames) != GD_OK)
        return fail(p, ETF_ENOMEM, p->tok_off);
    p->frames[p->depth++] = (frame_t){.kind = kind, .base = p->nvals, .offset = p->tok_off};
    return GD_OK;
}

static int push_value(parser_t *p, term_t t)
{
    if (grow((void **)&p->vals, &p->vals_cap, p->nvals + 1, sizeof *p->vals) != GD_OK)
        return fail(p, ETF_ENOMEM, p->tok_off);
    p->vals[p->nvals++] = t;
    return GD_OK;
}

/* Orders pair indices by key (exact term order), then by position.  qsort
 * has no context argument, so the keys come through a thread-local (callers
 * may parse on several threads at once). */
static _Thread_local const term_t *sort_keys;
/* Set when a key comparison ran out of memory (the sort then finishes in
 * some order and make_map fails). */
static _Thread_local int sort_err;
static int compare_pair_index(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c;
    if (heap_compare_checked(sort_keys[i], sort_keys[j], true, &c) != GD_OK) {
        sort_err = GD_ENOMEM;
        c = 0;
    }
    if (c != 0)
        return c;
    return i < j ? -1 : 1;
}

/*
 * Builds a map from the n key/value pairs keys[i] => vals[i]; when a key
 * appears more than once the last pair wins, as in a map expression.
 */
static int make_map(parser_t *p, term_t *keys, term_t *vals, size_t n, size_t offset, term_t *out)
{
    int rc = heap_make_map(p->h, keys, vals, n, out);
    if (rc != GD_EDUPLICATE_KEY)
        return rc == GD_OK ? GD_OK : heap_error(p, rc, offset);
    size_t *idx = malloc(n * sizeof *idx);
    term_t *k2 = malloc(n * sizeof *k2);
    term_t *v2 = malloc(n * sizeof *v2);
    if (idx == NULL || k2 == NULL || v2 == NULL) {
        rc = fail(p, ETF_ENOMEM, offset);
        goto free_arrays;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_keys = keys;
    sort_err = GD_OK;
    qsort(idx, n, sizeof *idx, compare_pair_index);
    size_t m = 0;
    for (size_t i = 0; i < n && sort_err == GD_OK; i++) {
        int c = 1;
        if (i + 1 < n && heap_compare_checked(keys[idx[i]], keys[idx[i + 1]], true, &c) != GD_OK)
            sort_err = GD_ENOMEM;
        if (c != 0) {
            k2[m] = keys[idx[i]];
            v2[m] = vals[idx[i]];
            m++;
        }
    }
    rc = sort_err != GD_OK ? sort_err : heap_make_map(p->h, k2, v2, m, out);
    if (rc != GD_OK)
        rc = heap_error(p, rc, offset);
free_arrays:
    free(v2);
    free(k2);
    free(idx);
    return rc;
}

/* Builds the container of the top frame from its values and pops it. */
static int close_frame(parser_t *p, term_t *out)
{
    frame_t *f = &p->frames[p->depth - 1];
    size_t n = p->nvals - f->base;
    term_t *items = n > 0 ? p->vals + f->base : NULL; /* vals is NULL before the first push */
    int rc = GD_OK;
    switch (f->kind) {
    case FR_TUPLE: {
        term_t *elems;
        rc = heap_make_tuple(p->h, n, &elems, out);
        if (rc == GD_OK && n > 0)
            memcpy(elems, items, n * sizeof *items);
        break;
    }
    case FR_LIST: {
        term_t tail = TERM_NIL;
        if (f->tail)
            tail = items[--n];
        term_t list = tail;
        for (size_t i = n; i-- > 0 && rc == GD_OK;)
            rc = heap_cons(p->h, items[i], list, &list);
        *out = list;
        break;
    }
    case FR_MAP: {
        size_t pairs = n / 2;
        term_t *keys = malloc((pairs ? pairs : 1) * sizeof *keys);
        term_t *vals = malloc((pairs ? pairs : 1) * sizeof *vals);
        if (keys == NULL || vals == NULL) {
            free(keys);
            free(vals);
            return fail(p, ETF_ENOMEM, f->offset);
        }
        for (size_t i = 0; i < pairs; i++) {
            keys[i] = items[2 * i];
            vals[i] = items[2 * i + 1];
        }
        rc = make_map(p, keys, vals, pairs, f->offset, out);
        free(keys);
        free(vals);
        if (rc != GD_OK)
            return rc;
        break;
    }
    }
    if (rc != GD_OK)
        return heap_error(p, rc, f->offset);
    p->nvals = f->base;
    p->depth--;
    return GD_OK;
}

/* Reads one term that does not open a list, tuple or map (current token). */
static int parse_leaf(parser_t *p, term_t *out)
{
    switch (p->tok) {
    case T_INT:
    case T_FLOAT:
    case T_MINUS:
    case T_PLUS:
        return parse_number(p, out);
    case T_ATOM:
        *out = p->tok_term;
        return GD_OK;
    case T_STRING:
        return make_string(p, out);
    case T_BIN_OPEN:
        return parse_binary(p, out);
    case T_LT:
        return parse_pid(p, out);
    case T_PORT_OPEN:
        return parse_port(p, out);
    case T_REF_OPEN:
        return parse_ref(p, out);
    case T_FUN:
        return parse_export(p, out);
    default:
        /* Includes #Fun<...>: a closure's code cannot be rebuilt from text. */
        return fail(p, ETF_EPARSE, p->tok_off);
    }
}

/* True if the token closes the (empty) container on top of the stack. */
static bool closes_top(const parser_t *p)
{
    if (p->depth == 0)
        return false;
    switch (p->frames[p->depth - 1].kind) {
    case FR_LIST:
        return p->tok == T_RBRACK;
    default:
        return p->tok == T_RBRACE;
    }
}

/* The parse proper: a loop over tokens with explicit container stacks. */
static int parse_term(parser_t *p, term_t *out)
{
    bool may_close = false; /* just opened a container: its closer is fine */
    term_t value;
    int rc;
    for (;;) {
        /* Expect a value. */
        if ((rc = next_token(p)) != GD_OK)
            return rc;
        if (may_close && closes_top(p)) {
            if ((rc = close_frame(p, &value)) != GD_OK)
                return rc;
        } else if (p->tok == T_LBRACE || p->tok == T_LBRACK || p->tok == T_MAP_OPEN) {
            enum frame_kind k = p->tok == T_LBRACE   ? FR_TUPLE
                                : p->tok == T_LBRACK ? FR_LIST
                                                     : FR_MAP;
            if ((rc = push_frame(p, k)) != GD_OK)
                return rc;
            may_close = true;
            continue;
        } else if ((rc = parse_leaf(p, &value)) != GD_OK) {
            return rc;
        }
        may_close = false;
        /* Deliver the value to its container, closing as many as end. */
        for (;;) {
            if (p->depth == 0) {
                *out = value;
                return GD_OK;
            }
            if ((rc = push_value(p, value)) != GD_OK || (rc = next_token(p)) != GD_OK)
                return rc;
            frame_t *f = &p->frames[p->depth - 1];
            size_t count = p->nvals - f->base;
            bool more = false;
            switch (f->kind) {
            case FR_TUPLE:
                if (p->tok == T_COMMA)
                    more = true;
                else if (p->tok != T_RBRACE)
                    return fail(p, ETF_EPARSE, p->tok_off);
                break;
            case FR_LIST:
                if (!f->tail && p->tok == T_COMMA) {
                    more = true;
                } else if (!f->tail && p->tok == T_BAR) {
                    f->tail = true;
                    more = true;
                } else if (p->tok != T_RBRACK) {
                    return fail(p, ETF_EPARSE, p->tok_off);
                }
                break;
            case FR_MAP:
                if (count % 2 == 1) {
                    if (p->tok != T_ARROW)
                        return fail(p, ETF_EPARSE, p->tok_off);
                    more = true;
                } else if (p->tok == T_COMMA) {
                    more = true;
                } else if (p->tok != T_RBRACE) {
                    return fail(p, ETF_EPARSE, p->tok_off);
                }
                break;
            }
            if (more)
                break;
            if ((rc = close_frame(p, &value)) != GD_OK)
                return rc;
        }
    }
}

/*
 * Parses one term from text[0..len) onto h (see the file comment for the
 * syntax).  On success *out is the term and err->code is 0.  Errors:
 * ETF_EPARSE (syntax), ETF_EATOM / ETF_EATOM_TABLE_FULL, ETF_EBIG (integer
 * beyond HEAP_BIG_MAX_DIGITS or TEXT_INT_MAX_DIGITS), ETF_ETOO_LARGE
 * (binary budget, float literal length), ETF_EDEPTH (nesting beyond TEXT_MAX_DEPTH), ETF_ENOMEM;
 * err->offset is the byte where it was detected.  Words allocated on h
 * before a failure stay there as garbage; no term escapes.  Work is linear
 * in len apart from integer conversion (capped as above).
 */
int etf_parse(heap_t *h, const char *text, size_t len, term_t *out, etf_error_t *err)
{
    parser_t p = {.h = h, .s = (const uint8_t *)text, .len = len, .err = err};
    if (err != NULL) {
        err->code = 0;
        err->offset = 0;
    }
    term_t value = TERM_NONE;
    int rc = parse_term(&p, &value);
    if (rc == GD_OK)
        rc = next_token(&p);
    if (rc == GD_OK && p.tok == T_DOT)
        rc = next_token(&p);
    if (rc == GD_OK && p.tok != T_EOF)
        rc = fail(&p, ETF_EPARSE, p.tok_off);
    if (rc == GD_OK)
        *out = value;
    free(p.mag);
    free(p.chars);
    free(p.frames);
    free(p.vals);
    free(p.bin);
    return rc;
}
