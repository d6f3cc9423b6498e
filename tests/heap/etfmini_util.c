/*
 * etfmini_util.c — test-only ETF writer (see the header).  Tags as in
 * OTP's external term format documentation (erts/doc/src/erl_ext_dist.xml).
 */
#include "etfmini_util.h"

#include <stdlib.h>
#include <unistd.h>

static int put8(FILE *f, unsigned v)
{
    return fputc((int)(v & 0xFF), f) == EOF ? -1 : 0;
}

static int put16(FILE *f, unsigned v)
{
    return put8(f, v >> 8) | put8(f, v);
}

static int put32(FILE *f, uint32_t v)
{
    return put16(f, v >> 16) | put16(f, v & 0xFFFF);
}

static int put64(FILE *f, uint64_t v)
{
    return put32(f, (uint32_t)(v >> 32)) | put32(f, (uint32_t)v);
}

static int put_bytes(FILE *f, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_atom(FILE *f, term_t a)
{
    size_t len;
    const char *s = heap_atom_text(a, &len);
    return put8(f, 118) | put16(f, (unsigned)len) | put_bytes(f, s, len); /* ATOM_UTF8_EXT */
}

/* An integer from sign and little-endian 64-bit magnitude digits. */
static int put_integer(FILE *f, bool neg, const uint64_t *d, size_t n)
{
    while (n > 0 && d[n - 1] == 0)
        n--;
    if (n == 0)
        return put8(f, 97) | put8(f, 0);
    if (n == 1 && !neg && d[0] < 256)
        return put8(f, 97) | put8(f, (unsigned)d[0]); /* SMALL_INTEGER_EXT */
    if (n == 1 && ((!neg && d[0] <= INT32_MAX) || (neg && d[0] <= (uint64_t)INT32_MAX + 1)))
        return put8(f, 98) | put32(f, (uint32_t)(neg ? 0 - d[0] : d[0])); /* INTEGER_EXT */
    size_t nbytes = n * 8;
    while (nbytes > 0 && ((d[(nbytes - 1) / 8] >> (8 * ((nbytes - 1) % 8))) & 0xFF) == 0)
        nbytes--;
    int rc = nbytes <= 255 ? put8(f, 110) | put8(f, (unsigned)nbytes)
                           : put8(f, 111) | put32(f, (uint32_t)nbytes);
    rc |= put8(f, neg);
    for (size_t i = 0; i < nbytes; i++)
        rc |= put8(f, (unsigned)(d[i / 8] >> (8 * (i % 8))));
    return rc;
}

static int put_int_term(FILE *f, term_t t)
{
    if (term_is_small(t)) {
        int64_t v = term_small_value(t);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        return put_integer(f, v < 0, &mag, 1);
    }
    return put_integer(f, term_big_negative(t), term_big_digits(t), term_big_ndigits(t));
}

static int put_pid(FILE *f, term_t node, uint32_t id, uint32_t serial, uint32_t creation)
{
    return put8(f, 88) | put_atom(f, node) | put32(f, id) | put32(f, serial) | put32(f, creation);
}

int etfmini_write(FILE *f, term_t t)
{
    if (term_is_small(t) || term_is_big(t))
        return put_int_term(f, t);
    if (term_is_atom(t))
        return put_atom(f, t);
    if (term_is_nil(t))
        return put8(f, 106);
    if (term_is_local_pid(t))
        return put_pid(f, ATOM_NONODE, term_local_pid_id(t), term_local_pid_serial(t), 0);
    if (term_is_local_port(t))
        return put8(f, 120) | put_atom(f, ATOM_NONODE) | put64(f, term_local_port_number(t)) |
               put32(f, 0);
    if (term_is_list(t)) {
        uint32_t n = 0;
        term_t x = t;
        for (; term_is_list(x); x = term_cdr(x))
            n++;
        int rc = put8(f, 108) | put32(f, n);
        for (x = t; term_is_list(x); x = term_cdr(x))
            rc |= etfmini_write(f, term_car(x));
        return rc | etfmini_write(f, x);
    }
    if (!term_is_boxed(t))
        return -1;
    term_t *p = term_boxed_ptr(t);
    heap_ident_t id;
    switch (header_subtag(p[0])) {
    case HDR_TUPLE: {
        size_t n = term_tuple_arity(t);
        int rc =
            n < 256 ? put8(f, 104) | put8(f, (unsigned)n) : put8(f, 105) | put32(f, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            rc |= etfmini_write(f, term_tuple_elems(t)[i]);
        return rc;
    }
    case HDR_FLOAT: {
        double d = term_float_value(t);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return put8(f, 70) | put64(f, bits); /* NEW_FLOAT_EXT */
    }
    case HDR_REF: {
        heap_ident(t, &id);
        int rc = put8(f, 90) | put16(f, id.nwords) | put_atom(f, id.node) | put32(f, id.creation);
        for (uint32_t i = 0; i < id.nwords; i++)
            rc |= put32(f, id.words[i]);
        return rc;
    }
    case HDR_EXT_PID:
        heap_ident(t, &id);
        return put_pid(f, id.node, id.words[0], id.words[1], id.creation);
    case HDR_EXT_PORT:
        heap_ident(t, &id);
        return put8(f, 120) | put_atom(f, id.node) | put64(f, id.port_id) | put32(f, id.creation);
    case HDR_EXPORT:
        return put8(f, 113) | put_atom(f, p[1]) | put_atom(f, p[2]) | put8(f, 97) |
               put8(f, (unsigned)term_small_value(p[3]));
    case HDR_FUN: {
        /* NEW_FUN_EXT carries its own size: encode the body to memory. */
        heap_fun_info_t fi;
        heap_fun_info(t, &fi);
        char *body = NULL;
        size_t blen = 0;
        FILE *m = open_memstream(&body, &blen);
        if (m == NULL)
            return -1;
        int rc = put8(m, fi.arity) | put_bytes(m, fi.uniq, 16) | put32(m, fi.index) |
                 put32(m, fi.num_free) | put_atom(m, fi.module) | put_int_term(m, fi.old_index) |
                 put_int_term(m, fi.old_uniq) | etfmini_write(m, fi.pid);
        for (uint32_t i = 0; i < fi.num_free; i++)
            rc |= etfmini_write(m, term_fun_free(t)[i]);
        if (fclose(m) != 0)
            rc = -1;
        if (rc == 0)
            rc = put8(f, 112) | put32(f, (uint32_t)(blen + 4)) | put_bytes(f, body, blen);
        free(body);
        return rc;
    }
    case HDR_HEAP_BIN:
    case HDR_REFC_BIN:
    case HDR_SUB_BIN: {
        heap_bin_view_t v;
        heap_bin_view(t, &v);
        size_t nbytes = (v.bit_size + 7) / 8;
        unsigned tail = (unsigned)(v.bit_size % 8);
        int rc = tail == 0 ? put8(f, 109) | put32(f, (uint32_t)nbytes)
                           : put8(f, 77) | put32(f, (uint32_t)nbytes) | put8(f, tail);
        for (size_t k = 0; k < nbytes; k++) {
            unsigned o = v.bit_offset;
            unsigned x = (unsigned)(uint8_t)(v.bytes[k] << o);
            if (o != 0 && 8 * (k + 1) < o + v.bit_size)
                x |= v.bytes[k + 1] >> (8 - o);
            if (k == nbytes - 1 && tail != 0)
                x &= 0xFFu << (8 - tail);
            rc |= put8(f, x);
        }
        return rc;
    }
    case HDR_MAP_FLAT:
    case HDR_MAP_HASH: {
        int rc = put8(f, 116) | put32(f, (uint32_t)heap_map_size(t));
        heap_map_iter_t it;
        heap_map_iter_init(&it, t);
        term_t k, val;
        while (heap_map_next(&it, &k, &val))
            rc |= etfmini_write(f, k) | etfmini_write(f, val);
        return rc;
    }
    case HDR_POS_BIG:
    case HDR_NEG_BIG:
        return put_int_term(f, t);
    default:
        return -1;
    }
}

bool etfmini_have_erl(void)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    char buf[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < sizeof buf - 5) {
            memcpy(buf, path, n);
            memcpy(buf + n, "/erl", 5);
            if (access(buf, X_OK) == 0)
                return true;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}
