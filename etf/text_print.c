/*
 * text_print.c — etf_print: a term as the one-line text io:format("~p")
 * prints on OTP 25 (latin1 printable range, the default without +pc
 * unicode), in a form etf_parse (text_parse.c) reads back.
 *
 * What it follows, from OTP 25's stdlib (io_lib.erl, io_lib_pretty.erl) and
 * erts (float_to_list(F, [short]), erl_printf_term.c):
 *   - lists whose elements are all printable Latin-1 characters (32..126,
 *     160..255, \n \r \t \v \b \f \e) print as "strings"; everything else
 *     as [a,b|c] with no spaces;
 *   - binaries whose bytes are all printable Latin-1 print as <<"...">>,
 *     others as <<1,2,3>>, a trailing partial byte as Value:Bits;
 *   - atoms are quoted when io_lib:write_atom_as_latin1 quotes them
 *     (reserved words, anything not starting with a lowercase letter or
 *     containing characters outside [a-zA-Z0-9_@] and Latin-1 letters);
 *     quoted atoms escape control characters and write characters above 255
 *     as \x{HEX};
 *   - floats in the shortest form that reads back to the same double, with
 *     OTP's choice between 123.5 and 1.235e10 notation;
 *   - maps as #{K => V,...} with keys in term order (OTP prints maps of more
 *     than 32 keys in hash order; sorted order reparses to the same map and
 *     is reproducible).
 *
 * Output is UTF-8 (OTP returns characters; Latin-1 characters 160..255 in
 * strings and unquoted atoms become two UTF-8 bytes).
 *
 * Identifiers.  OTP prints pids of other nodes as <NodeIndex.Id.Serial>,
 * which cannot be read back (the index is local to the printing node).  We
 * print the node and creation instead:
 *
 *   <0.Id.Serial>                   local pid (immediate), or a pid of
 *                                   'nonode@nohost' with creation 0
 *   <'node@host'.Id.Serial.Creation> pid of another node
 *   #Port<0.Id>                     local port (same rule as pids)
 *   #Port<'node@host'.Id.Creation>  port of another node
 *   #Ref<0.W2.W1.W0>                reference of 'nonode@nohost'/0 (id
 *                                   words highest first, as OTP prints)
 *   #Ref<'node@host'.W2.W1.W0.Creation> reference of another node
 *
 * 'nonode@nohost' with creation 0 is what a node without distribution (and
 * etf_encode's default local node) puts in ETF, so those print exactly like
 * OTP's own local identifiers.  Funs print as OTP does (#Fun<Mod.Index.Uniq>)
 * and cannot be parsed back; exports print as fun M:F/A.
 *
 * Integers print in decimal up to PRINT_BIG_DECIMAL_MAX_DIGITS 64-bit digits
 * (about 79,000 decimal digits; decimal conversion is quadratic, ~50 ms at
 * the limit); larger ones print as 16#HEX, which is valid Erlang and reads
 * back, so that hostile bignums cannot stall the printer (a 2 MB one would
 * take minutes in decimal).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "etf.h"
#include "internal.h"

/* Bignums above this many 64-bit digits print in hexadecimal (see above). */
#define PRINT_BIG_DECIMAL_MAX_DIGITS 4096u

/* Nesting the printer's work stack starts with (it grows on demand). */
#define PRINT_STACK_INITIAL 64

/* ------------------------------------------------------------------------ */
/* Output helpers.  `out` grows geometrically; every helper returns GD_OK or
 * GD_ENOMEM.                                                               */

static int put_bytes(etf_buf_t *out, const void *s, size_t n)
{
    int rc = etf_buf_reserve(out, n);
    if (rc != GD_OK)
        return rc;
    memcpy(out->data + out->len, s, n);
    out->len += n;
    return GD_OK;
}

static int put_str(etf_buf_t *out, const char *s)
{
    return put_bytes(out, s, strlen(s));
}

static int put_char(etf_buf_t *out, char c)
{
    int rc = etf_buf_reserve(out, 1);
    if (rc != GD_OK)
        return rc;
    out->data[out->len++] = (uint8_t)c;
    return GD_OK;
}

static int put_u64(etf_buf_t *out, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    return put_bytes(out, tmp, (size_t)n);
}

static int put_i64(etf_buf_t *out, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return put_bytes(out, tmp, (size_t)n);
}

/* Appends code point cp (< 0x110000) as UTF-8. */
static int put_utf8(etf_buf_t *out, uint32_t cp)
{
    uint8_t b[4];
    return put_bytes(out, b, heap_utf8_encode(b, cp));
}

/* ------------------------------------------------------------------------ */
/* Characters, strings and atoms (io_lib:string_char/4 rules).              */

/* io_lib's printable Latin-1 character (printable_latin1_list/1). */
static bool is_printable_latin1(int64_t c)
{
    if ((c >= 32 && c <= 126) || (c >= 160 && c <= 255))
        return true;
    return c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\b' || c == '\f' ||
           c == 27 /* \e */;
}

/*
 * Appends character c as it appears inside a quoted atom or string whose
 * quote is q (io_lib:string_char(unicode_as_latin1, ...)): the quote and
 * backslash escaped, printable ASCII and Latin-1 as is, the usual control
 * escapes, other control characters in octal, characters above 255 as
 * \x{HEX}.
 */
static int put_quoted_char(etf_buf_t *out, uint32_t c, char q)
{
    if (c == (uint32_t)q || c == '\\') {
        char e[2] = {'\\', (char)c};
        return put_bytes(out, e, 2);
    }
    if (c >= 32 && c <= 126)
        return put_char(out, (char)c);
    if (c >= 160 && c <= 255)
        return put_utf8(out, c);
    if (c > 255) {
        char tmp[16];
        int n = snprintf(tmp, sizeof tmp, "\\x{%X}", (unsigned)c);
        return put_bytes(out, tmp, (size_t)n);
    }
    static const char from[] = "\n\r\t\v\b\f\x1b\x7f", to[] = "nrtvbfed";
    for (size_t i = 0; from[i] != '\0'; i++) {
        if (c == (uint8_t)from[i]) {
            char e[2] = {'\\', to[i]};
            return put_bytes(out, e, 2);
        }
    }
    char oct[4] = {'\\', (char)('0' + (c >> 6)), (char)('0' + ((c >> 3) & 7)),
                   (char)('0' + (c & 7))};
    return put_bytes(out, oct, 4);
}

/* Decodes one UTF-8 sequence of atom text (valid by the atom table's
 * invariant); returns its length (1 for a byte that is not, so a walk
 * always advances). */
static size_t utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
    size_t n = heap_utf8_decode(s, len, cp);
    if (n == 0) {
        *cp = s[0];
        return 1;
    }
    return n;
}

/* erl_scan:reserved_word/1 on OTP 25 (no optional features enabled). */
static const char *const reserved_words[] = {
    "after", "and",  "andalso", "band",   "begin",   "bnot", "bor", "bsl",  "bsr",
    "bxor",  "case", "catch",   "cond",   "div",     "end",  "fun", "if",   "let",
    "not",   "of",   "or",      "orelse", "receive", "rem",  "try", "when", "xor",
};

static bool is_reserved_word(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof reserved_words / sizeof reserved_words[0]; i++)
        if (strlen(reserved_words[i]) == len && memcmp(reserved_words[i], s, len) == 0)
            return true;
    return false;
}

/* io_lib: a lowercase letter that may start an unquoted atom. */
static bool is_atom_start(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}

/* io_lib:name_char/1. */
static bool is_name_char(uint32_t c)
{
    return is_atom_start(c) || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
           (c >= '0' && c <= '9') || c == '_' || c == '@';
}

/* True if an atom with this UTF-8 text must be quoted (io_lib:quote_atom). */
static bool atom_needs_quotes(const uint8_t *s, size_t len)
{
    if (len == 0 || is_reserved_word((const char *)s, len))
        return true;
    size_t i = 0;
    bool first = true;
    while (i < len) {
        uint32_t c;
        i += utf8_next(s + i, len - i, &c);
        if (first ? !is_atom_start(c) : !is_name_char(c))
            return true;
        first = false;
    }
    return false;
}

static int print_atom(etf_buf_t *out, term_t atom, bool always_quote)
{
    size_t len;
    const uint8_t *s = (const uint8_t *)heap_atom_text(atom, &len);
    int rc;
    if (!always_quote && !atom_needs_quotes(s, len)) {
        /* Unquoted atoms hold only ASCII and Latin-1 letters: copy as is. */
        return put_bytes(out, s, len);
    }
    if ((rc = put_char(out, '\'')) != GD_OK)
        return rc;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        i += utf8_next(s + i, len - i, &c);
        if ((rc = put_quoted_char(out, c, '\'')) != GD_OK)
            return rc;
    }
    return put_char(out, '\'');
}

/* ------------------------------------------------------------------------ */
/* Floats: float_to_list(F, [short]) of OTP 25.                             */

/* Number of decimal digits of v (v > 0). */
static int decimal_length(uint64_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* True if the decimal m * 10^e reads back (round to nearest even) as d. */
static bool decimal_reads_as(uint64_t m, int e, double d)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%llue%d", (unsigned long long)m, e);
    return strtod(tmp, NULL) == d;
}

/*
 * The p-digit decimal m * 10^e nearest the finite, positive double d among
 * those that read back as d, if any.  glibc's exactly rounded "%.*e" gives
 * the p-digit decimal nearest d; if it does not read back, the only other
 * p-digit candidate that can is its neighbour on the other side of d (the
 * rounding interval is convex and contains d).
 */
static bool nearest_digits(double d, int p, uint64_t *m_out, int *e_out)
{
    uint64_t pow10 = 1; /* 10^(p-1) */
    for (int i = 1; i < p; i++)
        pow10 *= 10;
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
    uint64_t m = 0;
    const char *s = tmp;
    for (; *s != 'e'; s++)
        if (*s >= '0' && *s <= '9')
            m = m * 10 + (uint64_t)(*s - '0');
    int e = atoi(s + 1) - (p - 1);
    double back = strtod(tmp, NULL);
    if (back == d) {
        *m_out = m;
        *e_out = e;
        return true;
    }
    uint64_t other_m = m + 1;
    int other_e = e;
    if (back > d) {
        other_m = m - 1;
        /* Just below a power of ten the grid below d is ten times finer. */
        if (m == pow10) {
            other_m = pow10 * 10 - 1;
            other_e = e - 1;
        }
    }
    if (!decimal_reads_as(other_m, other_e, d))
        return false;
    *m_out = other_m;
    *e_out = other_e;
    return true;
}

/*
 * Finds the shortest decimal m * 10^e (m without trailing zeros) that reads
 * back as the finite, positive double d, the one nearest to d when several
 * of that length do: the digits Ryu (and so OTP) produces.  Whether some
 * p-digit decimal reads back is monotone in p (one that does is also a
 * (p+1)-digit decimal), so the length is found by binary search over 1..17;
 * 17 digits always identify a double.
 */
static void shortest_decimal(double d, uint64_t *m_out, int *e_out)
{
    uint64_t m;
    int e;
    nearest_digits(d, 17, m_out, e_out);
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (nearest_digits(d, mid, &m, &e)) {
            hi = mid;
            *m_out = m;
            *e_out = e;
        } else {
            lo = mid + 1;
        }
    }
    while (*m_out % 10 == 0) {
        *m_out /= 10;
        (*e_out)++;
    }
}

/*
 * Writes float_to_list(d, [short]) into buf (at least 32 bytes) and returns
 * its length.  The notation rule is OTP's (erts/emulator/ryu/to_chars.h):
 * fixed notation while it is no longer than the scientific one, ties going
 * to fixed, and scientific for integers of 2^53 and above, whose fixed form
 * would show digits the double does not hold.
 */
static size_t format_float(double d, char *buf)
{
    size_t pos = 0;
    if (signbit(d)) {
        buf[pos++] = '-';
        d = -d;
    }
    if (d == 0.0) {
        memcpy(buf + pos, "0.0", 4);
        return pos + 3;
    }
    uint64_t m;
    int e;
    shortest_decimal(d, &m, &e);
    int olength = decimal_length(m);
    int sci_exp = e + olength - 1;
    int lower, upper;
    if (olength == 1) {
        lower = -4;
        upper = 2;
    } else if (sci_exp >= 10) {
        lower = -(olength + 2);
        upper = 2;
    } else {
        lower = -(olength + 2);
        upper = 1;
    }
    bool fixed = lower <= e && e <= upper;
    if (fixed && ((m >= ((uint64_t)1 << 53) && e == 0) || (m > ((uint64_t)1 << 52) / 5 && e == 1) ||
                  (m > ((uint64_t)1 << 51) / 25 && e == 2)))
        fixed = false;
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)m);
    if (fixed) {
        int whole = olength + e;
        if (e >= 0) {
            memcpy(buf + pos, digits, (size_t)olength);
            pos += (size_t)olength;
            memset(buf + pos, '0', (size_t)e);
            pos += (size_t)e;
            memcpy(buf + pos, ".0", 2);
            pos += 2;
        } else if (whole > 0) {
            memcpy(buf + pos, digits, (size_t)whole);
            pos += (size_t)whole;
            buf[pos++] = '.';
            memcpy(buf + pos, digits + whole, (size_t)(olength - whole));
            pos += (size_t)(olength - whole);
        } else {
            memcpy(buf + pos, "0.", 2);
            pos += 2;
            memset(buf + pos, '0', (size_t)-whole);
            pos += (size_t)-whole;
            memcpy(buf + pos, digits, (size_t)olength);
            pos += (size_t)olength;
        }
    } else {
        buf[pos++] = digits[0];
        buf[pos++] = '.';
        if (olength > 1) {
            memcpy(buf + pos, digits + 1, (size_t)(olength - 1));
            pos += (size_t)(olength - 1);
        } else {
            buf[pos++] = '0';
        }
        pos += (size_t)snprintf(buf + pos, 8, "e%d", sci_exp);
    }
    buf[pos] = '\0';
    return pos;
}

/* ------------------------------------------------------------------------ */
/* Integers.                                                                */

#define TEN19 UINT64_C(10000000000000000000)

/*
 * Divides the little-endian magnitude x[0..n) by 10^19 in place and returns
 * the remainder.  10^19 has its top bit set, so the 2-by-1 division with a
 * precomputed reciprocal (Möller & Granlund, "Improved division by invariant
 * integers", 2011) applies without normalising: two multiplications per
 * digit instead of a hardware 128/64 division.
 */
static uint64_t divide_ten19(uint64_t *x, size_t n, uint64_t inv)
{
    uint64_t r = 0;
    for (size_t i = n; i-- > 0;) {
        uint64_t u1 = r, u0 = x[i];
        unsigned __int128 p = (unsigned __int128)inv * u1;
        p += ((unsigned __int128)(u1 + 1) << 64) | u0;
        uint64_t q1 = (uint64_t)(p >> 64), q0 = (uint64_t)p;
        r = u0 - q1 * TEN19;
        if (r > q0) {
            q1--;
            r += TEN19;
        }
        if (r >= TEN19) {
            q1++;
            r -= TEN19;
        }
        x[i] = q1;
    }
    return r;
}

/*
 * Prints a bignum: decimal by repeated division by 10^19 (O(n^2) in the
 * digit count n), or 16#HEX above PRINT_BIG_DECIMAL_MAX_DIGITS digits.
 */
static int print_big(etf_buf_t *out, term_t t)
{
    size_t n = term_big_ndigits(t);
    const uint64_t *digits = term_big_digits(t);
    int rc = GD_OK;
    if (term_big_negative(t) && (rc = put_char(out, '-')) != GD_OK)
        return rc;
    if (n > PRINT_BIG_DECIMAL_MAX_DIGITS) {
        char tmp[24];
        if ((rc = put_str(out, "16#")) != GD_OK)
            return rc;
        int len = snprintf(tmp, sizeof tmp, "%llX", (unsigned long long)digits[n - 1]);
        if ((rc = put_bytes(out, tmp, (size_t)len)) != GD_OK)
            return rc;
        for (size_t i = n - 1; i-- > 0;) {
            len = snprintf(tmp, sizeof tmp, "%016llX", (unsigned long long)digits[i]);
            if ((rc = put_bytes(out, tmp, (size_t)len)) != GD_OK)
                return rc;
        }
        return GD_OK;
    }
    /* A 64n-bit number has at most 64n * log10(2) / 19 + 1 < 1.0139n + 1
     * limbs of 19 decimal digits. */
    size_t max_limbs = n + n / 64 + 2;
    uint64_t *work = malloc(n * sizeof *work);
    uint64_t *limbs = malloc(max_limbs * sizeof *limbs);
    if (work == NULL || limbs == NULL) {
        rc = GD_ENOMEM;
        goto free_buffers;
    }
    memcpy(work, digits, n * sizeof *work);
    uint64_t inv = (uint64_t)(~(unsigned __int128)0 / TEN19);
    size_t nlimbs = 0, len = n;
    do {
        limbs[nlimbs++] = divide_ten19(work, len, inv);
        while (len > 0 && work[len - 1] == 0)
            len--;
    } while (len > 0);
    if ((rc = put_u64(out, limbs[nlimbs - 1])) != GD_OK)
        goto free_buffers;
    for (size_t i = nlimbs - 1; i-- > 0;) {
        char tmp[24];
        int w = snprintf(tmp, sizeof tmp, "%019llu", (unsigned long long)limbs[i]);
        if ((rc = put_bytes(out, tmp, (size_t)w)) != GD_OK)
            goto free_buffers;
    }
free_buffers:
    free(limbs);
    free(work);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Binaries.                                                                */

/* Byte i of a bitstring view (its bits may start mid-byte). */
static uint8_t view_byte(const heap_bin_view_t *v, size_t i)
{
    if (v->bit_offset == 0)
        return v->bytes[i];
    unsigned s = v->bit_offset;
    return (uint8_t)((v->bytes[i] << s) | (v->bytes[i + 1] >> (8 - s)));
}

/* The last `bits` (1..7) bits of a bitstring, as an unsigned value. */
static unsigned view_tail_bits(const heap_bin_view_t *v, size_t nbytes, unsigned bits)
{
    size_t bitpos = (size_t)v->bit_offset + nbytes * 8;
    unsigned value = 0;
    for (unsigned k = 0; k < bits; k++, bitpos++) {
        unsigned bit = (v->bytes[bitpos / 8] >> (7 - bitpos % 8)) & 1u;
        value = (value << 1) | bit;
    }
    return value;
}

static int print_bitstring(etf_buf_t *out, term_t t)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    size_t nbytes = v.bit_size / 8;
    unsigned tail = (unsigned)(v.bit_size % 8);
    int rc;
    if ((rc = put_str(out, "<<")) != GD_OK)
        return rc;
    bool printable = tail == 0 && nbytes > 0;
    for (size_t i = 0; printable && i < nbytes; i++)
        printable = is_printable_latin1(view_byte(&v, i));
    if (printable) {
        if ((rc = put_char(out, '"')) != GD_OK)
            return rc;
        for (size_t i = 0; i < nbytes; i++)
            if ((rc = put_quoted_char(out, view_byte(&v, i), '"')) != GD_OK)
                return rc;
        if ((rc = put_char(out, '"')) != GD_OK)
            return rc;
    } else {
        for (size_t i = 0; i < nbytes; i++) {
            if (i > 0 && (rc = put_char(out, ',')) != GD_OK)
                return rc;
            if ((rc = put_u64(out, view_byte(&v, i))) != GD_OK)
                return rc;
        }
        if (tail != 0) {
            if (nbytes > 0 && (rc = put_char(out, ',')) != GD_OK)
                return rc;
            if ((rc = put_u64(out, view_tail_bits(&v, nbytes, tail))) != GD_OK)
                return rc;
            if ((rc = put_char(out, ':')) != GD_OK)
                return rc;
            if ((rc = put_u64(out, tail)) != GD_OK)
                return rc;
        }
    }
    return put_str(out, ">>");
}

/* ------------------------------------------------------------------------ */
/* Pids, ports, references, funs.                                           */

static int print_ident(etf_buf_t *out, term_t t)
{
    int rc;
    if (term_is_local_pid(t)) {
        if ((rc = put_str(out, "<0.")) != GD_OK ||
            (rc = put_u64(out, term_local_pid_id(t))) != GD_OK ||
            (rc = put_char(out, '.')) != GD_OK ||
            (rc = put_u64(out, term_local_pid_serial(t))) != GD_OK)
            return rc;
        return put_char(out, '>');
    }
    if (term_is_local_port(t)) {
        if ((rc = put_str(out, "#Port<0.")) != GD_OK ||
            (rc = put_u64(out, term_local_port_number(t))) != GD_OK)
            return rc;
        return put_char(out, '>');
    }
    heap_ident_t id;
    heap_ident(t, &id);
    /* Identifiers of this node are always in local form (heap/ builds no
     * external one of it): printed as OTP prints local ones. */
    bool local = term_is_local_ref(t);
    const char *open = term_is_ext_pid(t) ? "<" : term_is_ext_port(t) ? "#Port<" : "#Ref<";
    if ((rc = put_str(out, open)) != GD_OK)
        return rc;
    rc = local ? put_char(out, '0') : print_atom(out, id.node, true);
    if (rc != GD_OK)
        return rc;
    if (term_is_ext_port(t)) {
        if ((rc = put_char(out, '.')) != GD_OK || (rc = put_u64(out, id.port_id)) != GD_OK)
            return rc;
    } else if (term_is_ext_pid(t)) {
        for (unsigned i = 0; i < 2; i++)
            if ((rc = put_char(out, '.')) != GD_OK || (rc = put_u64(out, id.words[i])) != GD_OK)
                return rc;
    } else {
        for (uint32_t i = id.nwords; i-- > 0;)
            if ((rc = put_char(out, '.')) != GD_OK || (rc = put_u64(out, id.words[i])) != GD_OK)
                return rc;
    }
    if (!local && ((rc = put_char(out, '.')) != GD_OK || (rc = put_u64(out, id.creation)) != GD_OK))
        return rc;
    return put_char(out, '>');
}

/* Writes a small or big integer (old_index / old_uniq of a fun). */
static int print_integer(etf_buf_t *out, term_t t)
{
    if (term_is_small(t))
        return put_i64(out, term_small_value(t));
    if (term_is_big(t))
        return print_big(out, t);
    return GD_EBADARG;
}

static int print_fun(etf_buf_t *out, term_t t)
{
    int rc;
    if (term_is_export(t)) {
        const term_t *p = term_boxed_ptr(t);
        if ((rc = put_str(out, "fun ")) != GD_OK || (rc = print_atom(out, p[1], false)) != GD_OK ||
            (rc = put_char(out, ':')) != GD_OK || (rc = print_atom(out, p[2], false)) != GD_OK ||
            (rc = put_char(out, '/')) != GD_OK)
            return rc;
        return print_integer(out, p[3]);
    }
    heap_fun_info_t info;
    heap_fun_info(t, &info);
    if ((rc = put_str(out, "#Fun<")) != GD_OK ||
        (rc = print_atom(out, info.module, false)) != GD_OK || (rc = put_char(out, '.')) != GD_OK ||
        (rc = print_integer(out, info.old_index)) != GD_OK || (rc = put_char(out, '.')) != GD_OK ||
        (rc = print_integer(out, info.old_uniq)) != GD_OK)
        return rc;
    return put_char(out, '>');
}

/* ------------------------------------------------------------------------ */
/* Lists.                                                                   */

/* True if t is a proper, non-empty list of printable Latin-1 characters
 * (io_lib:printable_latin1_list/1).  O(length). */
static bool is_printable_string(term_t t)
{
    while (term_is_list(t)) {
        term_t c = term_car(t);
        if (!term_is_small(c) || !is_printable_latin1(term_small_value(c)))
            return false;
        t = term_cdr(t);
    }
    return term_is_nil(t);
}

static int print_string(etf_buf_t *out, term_t t)
{
    int rc = put_char(out, '"');
    for (; rc == GD_OK && term_is_list(t); t = term_cdr(t))
        rc = put_quoted_char(out, (uint32_t)term_small_value(term_car(t)), '"');
    return rc == GD_OK ? put_char(out, '"') : rc;
}

/* ------------------------------------------------------------------------ */
/* The walk.                                                                */

enum print_kind {
    PK_TERM,       /* print t */
    PK_LIST_TAIL,  /* t is what follows a printed list element */
    PK_TUPLE_NEXT, /* print element i of tuple t (or close it) */
    PK_MAP_NEXT,   /* print pair i of the sorted pairs at pairs[base..] */
    PK_TEXT,       /* emit the literal text */
};

typedef struct print_frame {
    enum print_kind kind;
    term_t t;
    size_t i;
    size_t n;    /* maps: number of pairs */
    size_t base; /* maps: keys at pairs[base..base+n), values after them */
    const char *text;
} print_frame_t;

typedef struct printer {
    etf_buf_t *out;
    print_frame_t *stack;
    size_t depth, cap;
    term_t *pairs; /* sorted map pairs of the maps being printed */
    size_t npairs, pairs_cap;
} printer_t;

static int push(printer_t *p, print_frame_t f)
{
    if (p->depth == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : PRINT_STACK_INITIAL;
        print_frame_t *s = realloc(p->stack, cap * sizeof *s);
        if (s == NULL)
            return GD_ENOMEM;
        p->stack = s;
        p->cap = cap;
    }
    p->stack[p->depth++] = f;
    return GD_OK;
}

static int push_term(printer_t *p, term_t t)
{
    return push(p, (print_frame_t){.kind = PK_TERM, .t = t});
}

static int push_text(printer_t *p, const char *text)
{
    return push(p, (print_frame_t){.kind = PK_TEXT, .text = text});
}

/* Sorts the map's pairs onto the pair stack and pushes the frame that
 * prints them. */
static int open_map(printer_t *p, term_t map)
{
    size_t n = heap_map_size(map);
    if (n == 0)
        return put_str(p->out, "#{}");
    if (n > (SIZE_MAX / sizeof(term_t) - p->npairs) / 2)
        return GD_ENOMEM;
    if (p->pairs_cap - p->npairs < 2 * n) {
        size_t cap = p->pairs_cap ? p->pairs_cap : 64;
        while (cap - p->npairs < 2 * n)
            cap *= 2;
        term_t *np = realloc(p->pairs, cap * sizeof *np);
        if (np == NULL)
            return GD_ENOMEM;
        p->pairs = np;
        p->pairs_cap = cap;
    }
    size_t base = p->npairs;
    int rc = heap_map_sorted(map, p->pairs + base, p->pairs + base + n);
    if (rc != GD_OK)
        return rc;
    p->npairs += 2 * n;
    rc = put_str(p->out, "#{");
    if (rc != GD_OK)
        return rc;
    return push(p, (print_frame_t){.kind = PK_MAP_NEXT, .t = map, .n = n, .base = base});
}

/* Prints one term; containers push frames for their contents. */
static int print_one(printer_t *p, term_t t)
{
    etf_buf_t *out = p->out;
    int rc;
    switch (term_primary(t)) {
    case TAG_PRIMARY_LIST:
        if (is_printable_string(t))
            return print_string(out, t);
        if ((rc = put_char(out, '[')) != GD_OK)
            return rc;
        if ((rc = push(p, (print_frame_t){.kind = PK_LIST_TAIL, .t = term_cdr(t)})) != GD_OK)
            return rc;
        return push_term(p, term_car(t));
    case TAG_PRIMARY_BOXED:
        switch (term_boxed_subtag(t)) {
        case HDR_TUPLE:
            if (term_tuple_arity(t) == 0)
                return put_str(out, "{}");
            if ((rc = put_char(out, '{')) != GD_OK)
                return rc;
            return push(p, (print_frame_t){.kind = PK_TUPLE_NEXT, .t = t});
        case HDR_POS_BIG:
        case HDR_NEG_BIG:
            return print_big(out, t);
        case HDR_FLOAT: {
            char buf[40];
            size_t n = format_float(term_float_value(t), buf);
            return put_bytes(out, buf, n);
        }
        case HDR_REF:
        case HDR_LOCAL_REF:
        case HDR_EXT_PID:
        case HDR_EXT_PORT:
            return print_ident(out, t);
        case HDR_FUN:
        case HDR_EXPORT:
            return print_fun(out, t);
        case HDR_HEAP_BIN:
        case HDR_REFC_BIN:
        case HDR_SUB_BIN:
            return print_bitstring(out, t);
        case HDR_MAP_FLAT:
        case HDR_MAP_HASH:
            return open_map(p, t);
        default:
            return GD_EBADARG;
        }
    case TAG_PRIMARY_IMMED1:
        if (term_is_small(t))
            return put_i64(out, term_small_value(t));
        if (term_is_atom(t))
            return print_atom(out, t, false);
        if (term_is_nil(t))
            return put_str(out, "[]");
        if (term_is_local_pid(t) || term_is_local_port(t))
            return print_ident(out, t);
        return GD_EBADARG;
    default:
        return GD_EBADARG;
    }
}

/* Runs the frame on top of the stack one step. */
static int step(printer_t *p)
{
    print_frame_t *f = &p->stack[p->depth - 1];
    etf_buf_t *out = p->out;
    int rc;
    switch (f->kind) {
    case PK_TERM: {
        term_t t = f->t;
        p->depth--;
        return print_one(p, t);
    }
    case PK_TEXT: {
        const char *text = f->text;
        p->depth--;
        return put_str(out, text);
    }
    case PK_LIST_TAIL: {
        term_t t = f->t;
        if (term_is_nil(t)) {
            p->depth--;
            return put_char(out, ']');
        }
        if (term_is_list(t)) {
            f->t = term_cdr(t);
            if ((rc = put_char(out, ',')) != GD_OK)
                return rc;
            return push_term(p, term_car(t));
        }
        f->kind = PK_TEXT;
        f->text = "]";
        if ((rc = put_char(out, '|')) != GD_OK)
            return rc;
        return push_term(p, t);
    }
    case PK_TUPLE_NEXT: {
        term_t t = f->t;
        size_t i = f->i;
        if (i == term_tuple_arity(t)) {
            p->depth--;
            return put_char(out, '}');
        }
        f->i = i + 1;
        if (i > 0 && (rc = put_char(out, ',')) != GD_OK)
            return rc;
        return push_term(p, term_tuple_elems(t)[i]);
    }
    case PK_MAP_NEXT: {
        size_t i = f->i, n = f->n, base = f->base;
        if (i == n) {
            p->depth--;
            p->npairs = base;
            return put_char(out, '}');
        }
        f->i = i + 1;
        if (i > 0 && (rc = put_char(out, ',')) != GD_OK)
            return rc;
        term_t key = p->pairs[base + i], val = p->pairs[base + n + i];
        if ((rc = push_term(p, val)) != GD_OK || (rc = push_text(p, " => ")) != GD_OK)
            return rc;
        return push_term(p, key);
    }
    }
    return GD_EBADARG;
}

/*
 * Appends the one-line ~p text of t to *out (see the file comment for the
 * exact forms).  Nesting is walked with a heap-allocated stack, so any depth
 * the term has is fine; work is linear in the size of t except for bignums
 * (quadratic in their digit count, bounded by PRINT_BIG_DECIMAL_MAX_DIGITS).
 * Errors: GD_ENOMEM, GD_EBADARG for a word that is not a term; on failure
 * out->len is restored.
 */
int etf_print(term_t t, etf_buf_t *out)
{
    printer_t p = {.out = out};
    size_t start = out->len;
    int rc = push_term(&p, t);
    while (rc == GD_OK && p.depth > 0)
        rc = step(&p);
    free(p.stack);
    free(p.pairs);
    if (rc != GD_OK)
        out->len = start;
    return rc;
}
