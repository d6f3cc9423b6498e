/*
 * text_bits.c — binaries and bit syntax for the term text parser
 * (etf_parse): <<...>> with integer, float and utf8/16/32 segments, sizes,
 * units, signedness and endianness, built bit by bit under the per-parse
 * budget (TEXT_BIN_BUDGET_*).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "text_internal.h"

/* ------------------------------------------------------------------------ */
/* Binaries.                                                                */

/* Makes room for nbits more bits (plus a spill byte); new bytes are zero. */
static int bin_reserve(parser_t *p, size_t nbits)
{
    size_t need = (p->bin_bits + nbits + 7) / 8 + 1;
    if (need > p->bin_cap) {
        size_t old = p->bin_cap;
        if (etf_text_grow((void **)&p->bin, &p->bin_cap, need, 1) != GD_OK)
            return etf_text_fail(p, ETF_ENOMEM, p->tok_off);
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
        return etf_text_fail(p, ETF_ETOO_LARGE, offset);
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
            return etf_text_fail(p, ETF_EPARSE, offset);
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
        return etf_text_fail(p, ETF_EPARSE, offset);
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
        return etf_text_fail(p, ETF_EPARSE, seg->offset);
    uint32_t c = v->mag_n ? (uint32_t)v->mag[0] : 0;
    if (c >= 0xD800 && c <= 0xDFFF)
        return etf_text_fail(p, ETF_EPARSE, seg->offset);
    uint8_t b[4];
    size_t n = 0;
    if (seg->type == SEG_UTF8) {
        n = heap_utf8_encode(b, c);
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
        return etf_text_fail(p, ETF_ETOO_LARGE, seg->offset);
    uint64_t bits = size * seg->unit;
    int rc = bin_budget(p, bits, seg->offset);
    if (rc != GD_OK)
        return rc;
    if (seg->type == SEG_FLOAT)
        return put_float_segment(p, v, bits, seg->little, seg->offset);
    if (v->is_float)
        return etf_text_fail(p, ETF_EPARSE, seg->offset);
    return put_int_segment(p, v, bits, seg->little);
}

/* Reads "/type-type-unit:N" after a segment value. */
static int parse_type_spec(parser_t *p, segment_t *seg)
{
    bool have_type = false, have_sign = false, have_endian = false, have_unit = false;
    for (;;) {
        int rc = etf_text_expect(p, T_ATOM);
        if (rc != GD_OK)
            return rc;
        size_t len;
        const char *name = heap_atom_text(p->tok_term, &len);
        size_t off = p->tok_off;
#define IS(s) (len == strlen(s) && memcmp(name, s, len) == 0)
        if (IS("integer") || IS("float") || IS("utf8") || IS("utf16") || IS("utf32")) {
            if (have_type)
                return etf_text_fail(p, ETF_EPARSE, off);
            have_type = true;
            seg->type = IS("integer") ? SEG_INTEGER
                        : IS("float") ? SEG_FLOAT
                        : IS("utf8")  ? SEG_UTF8
                        : IS("utf16") ? SEG_UTF16
                                      : SEG_UTF32;
        } else if (IS("signed") || IS("unsigned")) {
            /* Construction writes two's complement either way. */
            if (have_sign)
                return etf_text_fail(p, ETF_EPARSE, off);
            have_sign = true;
        } else if (IS("big") || IS("little") || IS("native")) {
            if (have_endian)
                return etf_text_fail(p, ETF_EPARSE, off);
            have_endian = true;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            seg->little = IS("little");
#else
            seg->little = !IS("big");
#endif
        } else if (IS("unit")) {
            uint64_t unit = 0;
            if (have_unit || (rc = etf_text_expect(p, T_COLON)) != GD_OK ||
                (rc = etf_text_expect(p, T_INT)) != GD_OK)
                return have_unit ? etf_text_fail(p, ETF_EPARSE, off) : rc;
            if ((rc = etf_text_mag_to_u64(p, 256, &unit)) != GD_OK || unit == 0)
                return etf_text_fail(p, ETF_EPARSE, p->tok_off);
            have_unit = true;
            seg->unit = unit;
        } else {
            /* binary/bytes/bits/bitstring need binary values, which term
             * text cannot hold inside a binary. */
            return etf_text_fail(p, ETF_EPARSE, off);
        }
#undef IS
        if ((rc = etf_text_next_token(p)) != GD_OK)
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
int etf_text_parse_binary(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    uint64_t *mag = NULL;
    uint32_t *chars = NULL;
    size_t mag_cap = 0, chars_cap = 0;
    int rc = etf_text_next_token(p);
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
            if ((rc = etf_text_grow((void **)&chars, &chars_cap, nchars + 1, sizeof *chars)) !=
                GD_OK) {
                rc = etf_text_fail(p, ETF_ENOMEM, p->tok_off);
                break;
            }
            if (nchars > 0)
                memcpy(chars, p->chars, nchars * sizeof *chars);
        } else {
            if (p->tok == T_MINUS || p->tok == T_PLUS) {
                v.negative = p->tok == T_MINUS;
                if ((rc = etf_text_next_token(p)) != GD_OK)
                    break;
            }
            if (p->tok == T_FLOAT) {
                v.is_float = true;
                v.f = v.negative ? -p->tok_float : p->tok_float;
            } else if (p->tok == T_INT) {
                if ((rc = etf_text_grow((void **)&mag, &mag_cap, p->mag_n + 1, sizeof *mag)) !=
                    GD_OK) {
                    rc = etf_text_fail(p, ETF_ENOMEM, p->tok_off);
                    break;
                }
                memcpy(mag, p->mag, p->mag_n * sizeof *mag);
                v.mag = mag;
                v.mag_n = p->mag_n;
                if (v.mag_n == 0)
                    v.negative = false;
            } else {
                rc = etf_text_fail(p, ETF_EPARSE, p->tok_off);
                break;
            }
        }
        if ((rc = etf_text_next_token(p)) != GD_OK)
            break;
        if (p->tok == T_COLON) {
            if ((rc = etf_text_expect(p, T_INT)) != GD_OK)
                break;
            if (p->mag_n > 1) {
                rc = etf_text_fail(p, ETF_ETOO_LARGE, p->tok_off);
                break;
            }
            seg.has_size = true;
            seg.size = p->mag_n ? p->mag[0] : 0;
            if ((rc = etf_text_next_token(p)) != GD_OK)
                break;
        }
        if (p->tok == T_SLASH && (rc = parse_type_spec(p, &seg)) != GD_OK)
            break;
        if ((seg.type == SEG_UTF8 || seg.type == SEG_UTF16 || seg.type == SEG_UTF32) &&
            seg.has_size) {
            rc = etf_text_fail(p, ETF_EPARSE, seg.offset);
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
            if ((rc = etf_text_next_token(p)) != GD_OK)
                break;
            if (p->tok == T_BIN_CLOSE)
                rc = etf_text_fail(p, ETF_EPARSE, p->tok_off);
        } else if (p->tok != T_BIN_CLOSE) {
            rc = etf_text_fail(p, ETF_EPARSE, p->tok_off);
        }
    }
    free(mag);
    free(chars);
    if (rc != GD_OK)
        return rc;
    uint8_t *data;
    rc = heap_make_bitstring_uninit(p->h, p->bin_bits, &data, out);
    if (rc != GD_OK)
        return etf_text_heap_error(p, rc, open);
    if (p->bin_bits > 0)
        memcpy(data, p->bin, (p->bin_bits + 7) / 8);
    return GD_OK;
}
