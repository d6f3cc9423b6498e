/*
 * encode.c — External Term Format encoder (term_to_binary).
 *
 * One walker, enc_walk(), both measures and writes: it is instantiated
 * twice with a compile-time `write` flag (always_inline), once counting
 * bytes (etf_encoded_size) and once storing them (etf_encode_body), so the
 * size and the bytes cannot drift apart — AtomVM's serialize_term(NULL, …)
 * idea without a run-time test per byte.  Writing does not need the size
 * first: the output buffer is grown as the walk goes, checked once per
 * term, so a term is walked once to be encoded.
 *
 * Terms are walked with an explicit stack (no C recursion); a frame stays
 * until all its children are written, so the stack height is the nesting
 * depth the decoder counts too (a term the decoder accepted under a
 * max_depth is always encodable under the same max_depth).
 *
 * The encodings are those of OTP's term_to_binary (erts external.c), probed
 * on OTP 25 (docs/protocol.md §1.3): minimal integers, NEW_FLOAT
 * (FLOAT_EXT for minor_version 0), Latin-1 ATOM_EXT for minor_version <= 1
 * else UTF-8 atoms, STRING_EXT for proper byte lists up to 65535 long,
 * NEW_PORT_EXT for port numbers of up to 28 bits else V4_PORT_EXT, and
 * compression only when the compressed form is not longer.
 */
#include <stdio.h>
#include <zlib.h>

#include "internal.h"

#define ENC_INLINE_FRAMES 32
#define ENC_INLINE_SCRATCH 128
#define ENC_ATOM_CACHE 1024
/* OTP uses NEW_PORT_EXT while the port number fits in 28 bits (probed on
 * OTP 25; erl_interface's ei_encode_port uses the same limit). */
#define ENC_PORT_V3_MAX 0x0FFFFFFFu

enum enc_frame_kind {
    EF_SEQ,  /* consecutive terms: tuple elements */
    EF_FUN,  /* fun free variables; patches the fun's Size when done */
    EF_LIST, /* cars of a list, then its tail */
    EF_MAP,  /* keys[i], vals[i] alternately */
};

/* A frame of the walk.  For the open (top) frame, p, cur, remaining and
 * kind live in the walker's locals and its slot holds only aux, mark and
 * scratch; they are written to the slot when a child frame is pushed. */
typedef struct enc_frame {
    const term_t *p;         /* EF_SEQ/EF_FUN: next term; EF_MAP: current key */
    term_t cur;              /* EF_LIST: remaining list; EF_MAP: n */
    size_t remaining;        /* children still to write */
    size_t aux;              /* EF_FUN: offset of the Size field */
    etf_scratch_mark_t mark; /* EF_MAP from scratch: what to release */
    uint32_t kind;
    bool scratch;
} enc_frame_t;

/*
 * Each thread caches what encoding an atom needs (its text, length,
 * characters, Latin-1-ness), keyed by atom index, across calls: atoms never
 * change once created, so an entry stays true.
 */
typedef struct enc_atom_entry {
    term_t atom; /* 0 (not an atom) in an empty entry */
    const char *text;
    uint32_t len;   /* UTF-8 bytes */
    uint32_t chars; /* code points */
    bool latin1;
} enc_atom_entry_t;

static _Thread_local enc_atom_entry_t atom_cache[ENC_ATOM_CACHE];

typedef struct enc {
    etf_buf_t *buf; /* output (write mode) */
    /* options */
    bool latin1_atoms;
    bool float_ext;
    bool deterministic;
    term_t local_node;
    uint32_t local_creation;
    size_t max_depth;
    etf_bin_refs_t *refs; /* opts->bin_refs (write mode only) */
    unsigned fun_depth;   /* funs being written: their Size counts every byte */
    /* work stack: frames below the top one (whose hot fields the walker
     * keeps in locals) */
    enc_frame_t *stack;
    size_t stack_cap;
    enc_frame_t inline_stack[ENC_INLINE_FRAMES];
    etf_scratch_t scratch;
    term_t inline_scratch[ENC_INLINE_SCRATCH];
} enc_t;

/*
 * The output cursor.  The walker keeps it in a local whose address never
 * escapes (helpers are always_inline; out-of-line ones get a copy, see
 * COLD), so the compiler holds it in registers: through e->..., every byte
 * store (a char store may alias anything) would force a reload of the
 * cursor and of the frame.  In counting mode out is NULL and only pos moves.
 */
typedef struct enc_out {
    uint8_t *out;
    size_t pos; /* bytes written or counted so far */
    size_t cap;
} enc_out_t;

#define ENC_INLINE __attribute__((always_inline)) static inline

/* ---- output ---- */

static GD_NOINLINE int enc_grow(enc_t *e, enc_out_t *w, size_t n)
{
    size_t saved = e->buf->len;
    e->buf->len = w->pos;
    int rc = etf_buf_reserve(e->buf, n);
    e->buf->len = saved;
    if (rc != GD_OK)
        return ETF_ENOMEM;
    w->out = e->buf->data;
    w->cap = e->buf->cap;
    return GD_OK;
}

/* Makes room for n more bytes (write mode only). */
ENC_INLINE int room(enc_t *e, enc_out_t *w, size_t n, const bool write)
{
    if (!write || GD_LIKELY(w->cap - w->pos >= n))
        return GD_OK;
    enc_out_t tmp = *w; /* keeps *w's address from escaping */
    int rc = enc_grow(e, &tmp, n);
    *w = tmp;
    return rc;
}

ENC_INLINE void put8(enc_out_t *w, unsigned v, const bool write)
{
    if (write)
        w->out[w->pos] = (uint8_t)v;
    w->pos += 1;
}
ENC_INLINE void put16(enc_out_t *w, unsigned v, const bool write)
{
    if (write)
        etf_put16(w->out + w->pos, (uint16_t)v);
    w->pos += 2;
}
ENC_INLINE void put32(enc_out_t *w, uint32_t v, const bool write)
{
    if (write)
        etf_put32(w->out + w->pos, v);
    w->pos += 4;
}
ENC_INLINE void put64(enc_out_t *w, uint64_t v, const bool write)
{
    if (write)
        etf_put64(w->out + w->pos, v);
    w->pos += 8;
}
ENC_INLINE void put_bytes(enc_out_t *w, const void *p, size_t n, const bool write)
{
    if (write && n > 0)
        memcpy(w->out + w->pos, p, n);
    w->pos += n;
}

/* ---- scalars ---- */

/* Integers that fit in 64 bits (smalls, and bignums of one digit). */
ENC_INLINE int enc_int64_mag(enc_t *e, enc_out_t *w, bool neg, uint64_t mag, const bool write)
{
    if (!neg && mag <= 255) {
        if (room(e, w, 2, write) != GD_OK)
            return ETF_ENOMEM;
        put8(w, ETF_SMALL_INTEGER_EXT, write);
        put8(w, (unsigned)mag, write);
        return GD_OK;
    }
    if (neg ? mag <= (uint64_t)1 << 31 : mag < (uint64_t)1 << 31) {
        if (room(e, w, 5, write) != GD_OK)
            return ETF_ENOMEM;
        put8(w, ETF_INTEGER_EXT, write);
        put32(w, neg ? (uint32_t)(0 - mag) : (uint32_t)mag, write);
        return GD_OK;
    }
    unsigned nbytes = (unsigned)(64 - __builtin_clzll(mag) + 7) / 8;
    if (room(e, w, 3 + 8, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_SMALL_BIG_EXT, write);
    put8(w, nbytes, write);
    put8(w, neg ? 1 : 0, write);
    if (write)
        memcpy(w->out + w->pos, &mag, 8); /* little-endian digits; extra bytes overwritten later */
    w->pos += nbytes;
    return GD_OK;
}

ENC_INLINE int enc_small(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    int64_t v = term_small_value(t);
    if (v >= 0)
        return enc_int64_mag(e, w, false, (uint64_t)v, write);
    return enc_int64_mag(e, w, true, (uint64_t)0 - (uint64_t)v, write);
}

ENC_INLINE int enc_big(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    size_t nd = term_big_ndigits(t);
    const uint64_t *dig = term_big_digits(t);
    bool neg = term_big_negative(t);
    if (nd == 1)
        return enc_int64_mag(e, w, neg, dig[0], write);
    uint64_t top = dig[nd - 1];
    size_t nbytes = (nd - 1) * 8 + (size_t)(64 - __builtin_clzll(top) + 7) / 8;
    if (nbytes > UINT32_MAX)
        return ETF_EUNENCODABLE;
    /* Whole digits are copied (the host digits are little-endian, the
     * wire's order); the top digit's zero bytes past nbytes land in the
     * spare room and are overwritten by what follows. */
    if (room(e, w, 6 + nd * 8, write) != GD_OK)
        return ETF_ENOMEM;
    if (nbytes <= 255) {
        put8(w, ETF_SMALL_BIG_EXT, write);
        put8(w, (unsigned)nbytes, write);
    } else {
        put8(w, ETF_LARGE_BIG_EXT, write);
        put32(w, (uint32_t)nbytes, write);
    }
    put8(w, neg ? 1 : 0, write);
    if (write) {
        if (nd <= 4) {
            for (size_t i = 0; i < nd; i++)
                memcpy(w->out + w->pos + 8 * i, &dig[i], 8);
        } else {
            memcpy(w->out + w->pos, dig, nd * 8);
        }
    }
    w->pos += nbytes;
    return GD_OK;
}

/* FLOAT_EXT (minor_version 0): the value as "%.20e" text, NUL-padded. */
static GD_NOINLINE void put_float_text(uint8_t *o, double v)
{
    char text[ETF_FLOAT_EXT_LEN + 1];
    memset(text, 0, sizeof text);
    snprintf(text, sizeof text, "%.20e", v);
    memcpy(o, text, ETF_FLOAT_EXT_LEN);
}

ENC_INLINE int enc_float(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    double v = term_float_value(t);
    if (GD_UNLIKELY(e->float_ext)) {
        if (room(e, w, 1 + ETF_FLOAT_EXT_LEN, write) != GD_OK)
            return ETF_ENOMEM;
        put8(w, ETF_FLOAT_EXT, write);
        if (write)
            put_float_text(w->out + w->pos, v);
        w->pos += ETF_FLOAT_EXT_LEN;
        return GD_OK;
    }
    if (room(e, w, 9, write) != GD_OK)
        return ETF_ENOMEM;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put8(w, ETF_NEW_FLOAT_EXT, write);
    put64(w, bits, write);
    return GD_OK;
}

static GD_NOINLINE const enc_atom_entry_t *atom_info_slow(enc_atom_entry_t *en, term_t a)
{
    size_t len;
    en->text = heap_atom_text(a, &len);
    en->len = (uint32_t)len;
    en->chars = (uint32_t)heap_atom_chars(a);
    en->latin1 = heap_atom_is_latin1(a);
    en->atom = a;
    return en;
}

ENC_INLINE const enc_atom_entry_t *atom_info(term_t a)
{
    enc_atom_entry_t *en = &atom_cache[term_atom_index(a) & (ENC_ATOM_CACHE - 1)];
    if (GD_LIKELY(en->atom == a))
        return en;
    return atom_info_slow(en, a);
}

ENC_INLINE int enc_atom(enc_t *e, enc_out_t *w, term_t a, const bool write)
{
    const enc_atom_entry_t *en = atom_info(a);
    if (e->latin1_atoms && en->latin1) {
        /* ATOM_EXT (2-byte length) with one byte per character. */
        if (room(e, w, 3 + en->chars, write) != GD_OK)
            return ETF_ENOMEM;
        put8(w, ETF_ATOM_EXT, write);
        put16(w, en->chars, write);
        if (GD_LIKELY(en->chars == en->len)) {
            put_bytes(w, en->text, en->len, write);
        } else {
            const uint8_t *s = (const uint8_t *)en->text;
            for (size_t i = 0; i < en->len; i++) {
                if (s[i] < 0x80) {
                    put8(w, s[i], write);
                } else {
                    put8(w, (unsigned)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3F)), write);
                    i++;
                }
            }
        }
        return GD_OK;
    }
    if (room(e, w, 3 + en->len, write) != GD_OK)
        return ETF_ENOMEM;
    if (en->len <= 255) {
        put8(w, ETF_SMALL_ATOM_UTF8_EXT, write);
        put8(w, en->len, write);
    } else {
        put8(w, ETF_ATOM_UTF8_EXT, write);
        put16(w, en->len, write);
    }
    put_bytes(w, en->text, en->len, write);
    return GD_OK;
}

/* The rarer terms below are out of line: the walker calls them through
 * COLD with a copy of its cursor. */

static int enc_pid(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    term_t node;
    uint32_t id, serial, creation;
    if (term_is_local_pid(t)) {
        node = e->local_node;
        id = term_local_pid_id(t);
        serial = term_local_pid_serial(t);
        creation = e->local_creation;
    } else {
        heap_ident_t ident;
        heap_ident(t, &ident);
        node = ident.node;
        id = ident.words[0];
        serial = ident.words[1];
        creation = ident.creation;
    }
    if (room(e, w, 1, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_NEW_PID_EXT, write);
    int rc = enc_atom(e, w, node, write);
    if (rc != GD_OK)
        return rc;
    if (room(e, w, 12, write) != GD_OK)
        return ETF_ENOMEM;
    put32(w, id, write);
    put32(w, serial, write);
    put32(w, creation, write);
    return GD_OK;
}

static int enc_port(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    term_t node;
    uint64_t id;
    uint32_t creation;
    if (term_is_local_port(t)) {
        node = e->local_node;
        id = term_local_port_number(t);
        creation = e->local_creation;
    } else {
        heap_ident_t ident;
        heap_ident(t, &ident);
        node = ident.node;
        id = ident.port_id;
        creation = ident.creation;
    }
    bool v4 = id > ENC_PORT_V3_MAX;
    if (room(e, w, 1, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, v4 ? ETF_V4_PORT_EXT : ETF_NEW_PORT_EXT, write);
    int rc = enc_atom(e, w, node, write);
    if (rc != GD_OK)
        return rc;
    if (room(e, w, 12, write) != GD_OK)
        return ETF_ENOMEM;
    if (v4)
        put64(w, id, write);
    else
        put32(w, (uint32_t)id, write);
    put32(w, creation, write);
    return GD_OK;
}

static int enc_ref(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    heap_ident_t ident;
    heap_ident(t, &ident);
    if (room(e, w, 3, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_NEWER_REFERENCE_EXT, write);
    put16(w, ident.nwords, write);
    int rc = enc_atom(e, w, ident.node, write);
    if (rc != GD_OK)
        return rc;
    if (room(e, w, 4 + 4 * (size_t)ident.nwords, write) != GD_OK)
        return ETF_ENOMEM;
    put32(w, ident.creation, write);
    for (uint32_t i = 0; i < ident.nwords; i++)
        put32(w, ident.words[i], write);
    return GD_OK;
}

static int enc_export(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    const term_t *p = term_boxed_ptr(t);
    if (room(e, w, 1, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_EXPORT_EXT, write);
    int rc = enc_atom(e, w, p[1], write);
    if (rc == GD_OK)
        rc = enc_atom(e, w, p[2], write);
    if (rc != GD_OK)
        return rc;
    if (room(e, w, 2, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_SMALL_INTEGER_EXT, write);
    put8(w, (unsigned)term_small_value(p[3]), write);
    return GD_OK;
}

/* Writes a fun up to its Pid slot; *size_at gets the offset of its Size
 * field, patched once the Pid slot and the free variables are written. */
static int enc_fun_head(enc_t *e, enc_out_t *w, term_t t, heap_fun_info_t *info, size_t *size_at,
                        const bool write)
{
    heap_fun_info(t, info);
    if (room(e, w, 1 + 4 + 1 + 16 + 4 + 4, write) != GD_OK)
        return ETF_ENOMEM;
    put8(w, ETF_NEW_FUN_EXT, write);
    *size_at = w->pos;
    put32(w, 0, write); /* Size, patched once the fun is written */
    put8(w, info->arity, write);
    put_bytes(w, info->uniq, 16, write);
    put32(w, info->index, write);
    put32(w, info->num_free, write);
    int rc = enc_atom(e, w, info->module, write);
    if (rc != GD_OK)
        return rc;
    if (!term_is_small(info->old_index) || !term_is_small(info->old_uniq))
        return ETF_EUNENCODABLE;
    rc = enc_small(e, w, info->old_index, write);
    if (rc == GD_OK)
        rc = enc_small(e, w, info->old_uniq, write);
    return rc;
}

void etf_bin_refs_clear(etf_bin_refs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        heap_binary_unref(r->v[i].bin);
    r->n = 0;
    r->bytes = 0;
}

void etf_bin_refs_free(etf_bin_refs_t *r)
{
    etf_bin_refs_clear(r);
    free(r->v);
    r->v = NULL;
    r->cap = 0;
}

/* The off-heap binary t's bytes lie in (a REFC_BIN, or a sub-binary of
 * one), or NULL. */
static heap_binary_t *backing_binary(term_t t)
{
    const term_t *p = term_boxed_ptr(t);
    if (header_subtag(p[0]) == HDR_SUB_BIN)
        p = term_boxed_ptr(p[3]);
    return header_subtag(p[0]) == HDR_REFC_BIN ? (heap_binary_t *)(uintptr_t)p[2] : NULL;
}

/* Appends a reference to bin's bytes data[0..len), to be inserted at at. */
static int ref_add(etf_bin_refs_t *r, size_t at, const uint8_t *data, size_t len,
                   heap_binary_t *bin)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        etf_bin_ref_t *v = realloc(r->v, cap * sizeof *v);
        if (v == NULL)
            return ETF_ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    heap_binary_ref(bin);
    r->v[r->n++] = (etf_bin_ref_t){at, data, len, bin};
    r->bytes += len;
    return GD_OK;
}

static int enc_bitstring(enc_t *e, enc_out_t *w, term_t t, const bool write)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    size_t nbytes = v.bit_size / 8 + (v.bit_size % 8 != 0);
    unsigned tail_bits = (unsigned)(v.bit_size % 8);
    if (nbytes > UINT32_MAX)
        return ETF_EUNENCODABLE;
    heap_binary_t *bin;
    if (write && e->refs != NULL && e->fun_depth == 0 && tail_bits == 0 && v.bit_offset == 0 &&
        nbytes >= e->refs->min_len && (bin = backing_binary(t)) != NULL) {
        if (room(e, w, 5, write) != GD_OK)
            return ETF_ENOMEM;
        put8(w, ETF_BINARY_EXT, write);
        put32(w, (uint32_t)nbytes, write);
        return ref_add(e->refs, w->pos, v.bytes, nbytes, bin);
    }
    if (room(e, w, 6 + nbytes, write) != GD_OK)
        return ETF_ENOMEM;
    if (tail_bits == 0) {
        put8(w, ETF_BINARY_EXT, write);
        put32(w, (uint32_t)nbytes, write);
    } else {
        put8(w, ETF_BIT_BINARY_EXT, write);
        put32(w, (uint32_t)nbytes, write);
        put8(w, tail_bits, write);
    }
    if (write && nbytes > 0) {
        uint8_t *o = w->out + w->pos;
        if (v.bit_offset == 0) {
            memcpy(o, v.bytes, nbytes);
        } else {
            /* A sub-binary starting inside a byte: shift into place, never
             * reading past the last source byte that holds its bits. */
            unsigned sh = v.bit_offset;
            size_t src_bytes = (v.bit_offset + v.bit_size + 7) / 8;
            for (size_t i = 0; i < nbytes; i++) {
                unsigned hi = (unsigned)v.bytes[i] << sh;
                unsigned lo = i + 1 < src_bytes ? v.bytes[i + 1] >> (8 - sh) : 0;
                o[i] = (uint8_t)(hi | lo);
            }
        }
        if (tail_bits != 0)
            o[nbytes - 1] &= (uint8_t)(0xFF00u >> tail_bits);
    }
    w->pos += nbytes;
    return GD_OK;
}

/* ---- the walker ---- */

static GD_NOINLINE int enc_grow_stack(enc_t *e)
{
    size_t cap = e->stack_cap * 2;
    enc_frame_t *s;
    if (e->stack == e->inline_stack) {
        s = malloc(cap * sizeof *s);
        if (s != NULL)
            memcpy(s, e->stack, e->stack_cap * sizeof *s);
    } else {
        s = realloc(e->stack, cap * sizeof *s);
    }
    if (s == NULL)
        return ETF_ENOMEM;
    e->stack = s;
    e->stack_cap = cap;
    return GD_OK;
}

/* True if t is a small integer 0..255 (STRING_EXT material). */
static inline bool is_byte(term_t t)
{
    return (t & ~((term_t)0xFF << TAG_IMMED1_SIZE)) == TAG_IMMED1_SMALL;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (GD_UNLIKELY(rc != GD_OK))                                                              \
            goto fail;                                                                             \
    } while (0)
#define ROOM(n) TRY(room(e, &w, (n), write))
/* Calls an out-of-line helper on a copy of the cursor, so the walker's own
 * cursor never has its address taken. */
#define COLD(fn, ...)                                                                              \
    do {                                                                                           \
        enc_out_t cold_w = w;                                                                      \
        rc = fn(e, &cold_w, __VA_ARGS__, write);                                                   \
        w = cold_w;                                                                                \
        if (GD_UNLIKELY(rc != GD_OK))                                                              \
            goto fail;                                                                             \
    } while (0)

/*
 * Opens a frame (kind k; first child pointer p_, list/map word cur_, n_
 * children): the open frame's hot fields are saved to its stack slot and
 * the new one's go to the locals; f points at the new slot for the cold
 * fields.  The stack height sp is the nesting depth.
 */
#define PUSH(k, p_, cur_, n_)                                                                      \
    do {                                                                                           \
        if (GD_UNLIKELY(sp >= e->max_depth)) {                                                     \
            rc = ETF_EDEPTH;                                                                       \
            goto fail;                                                                             \
        }                                                                                          \
        if (GD_UNLIKELY(sp == e->stack_cap))                                                       \
            TRY(enc_grow_stack(e));                                                                \
        if (sp > 0) {                                                                              \
            enc_frame_t *parent = &e->stack[sp - 1];                                               \
            parent->kind = kind;                                                                   \
            parent->p = fp;                                                                        \
            parent->cur = fcur;                                                                    \
            parent->remaining = frem;                                                              \
        }                                                                                          \
        f = &e->stack[sp++];                                                                       \
        kind = (k);                                                                                \
        fp = (p_);                                                                                 \
        fcur = (cur_);                                                                             \
        frem = (n_);                                                                               \
    } while (0)

/*
 * Walks t, counting (write = false) or writing (write = true) its encoding
 * from *posp on; *posp gets the end.  Returns 0 or ETF_EUNENCODABLE /
 * ETF_EDEPTH / ETF_ENOMEM.
 */
ENC_INLINE int enc_walk(enc_t *e, term_t root, size_t *posp, const bool write)
{
    enc_out_t w = {NULL, *posp, 0};
    if (write) {
        w.out = e->buf->data;
        w.cap = e->buf->cap;
    }
    /* The open frame's hot fields (its slot e->stack[sp - 1] keeps the
     * cold ones: aux, scratch, mark). */
    size_t sp = 0;
    uint32_t kind = EF_SEQ;
    const term_t *fp = NULL;
    term_t fcur = 0;
    size_t frem = 0;
    enc_frame_t *f = NULL;
    int rc = GD_OK;
    term_t t = root;
    goto encode;

    for (;;) {
        if (frem == 0) {
            if (sp == 0)
                break;
            f = &e->stack[sp - 1];
            if (kind == EF_FUN) {
                e->fun_depth--;
                if (write)
                    etf_put32(w.out + f->aux, (uint32_t)(w.pos - f->aux));
            } else if (kind == EF_MAP && f->scratch) {
                etf_scratch_release(&e->scratch, f->mark);
            }
            if (--sp == 0)
                break;
            f--;
            kind = f->kind;
            fp = f->p;
            fcur = f->cur;
            frem = f->remaining;
            continue;
        }
        frem--;
        switch (kind) {
        case EF_SEQ:
        case EF_FUN:
            t = *fp++;
            break;
        case EF_LIST:
            if (frem > 0) {
                const term_t *cell = term_list_ptr(fcur);
                t = cell[0];
                fcur = cell[1];
            } else {
                t = fcur; /* the tail */
            }
            break;
        default:
            /* keys[i] then vals[i] = keys[i + n]; odd remaining = a key */
            if (frem & 1) {
                t = *fp;
            } else {
                t = fp[fcur];
                fp++;
            }
            break;
        }

    encode:
        /* Small integers first: the commonest leaf, one mask test. */
        if ((t & TAG_IMMED1_MASK) == TAG_IMMED1_SMALL) {
            TRY(enc_small(e, &w, t, write));
            continue;
        }
        switch (term_primary(t)) {
        case TAG_PRIMARY_IMMED1:
            switch (t & TAG_IMMED1_MASK) {
            case TAG_IMMED1_SMALL:
                TRY(enc_small(e, &w, t, write));
                break;
            case TAG_IMMED1_PID:
                COLD(enc_pid, t);
                break;
            case TAG_IMMED1_PORT:
                COLD(enc_port, t);
                break;
            default:
                if (term_is_atom(t)) {
                    TRY(enc_atom(e, &w, t, write));
                } else if (t == TERM_NIL) {
                    ROOM(1);
                    put8(&w, ETF_NIL_EXT, write);
                } else {
                    rc = ETF_EUNENCODABLE;
                    goto fail;
                }
                break;
            }
            break;

        case TAG_PRIMARY_LIST: {
            /* One walk decides STRING_EXT and, when writing, copies the
             * bytes as it goes (speculatively, past the 3-byte header, room
             * made 256 bytes at a time); if the list is not a string the
             * walk just goes on counting LIST_EXT elements and the copied
             * bytes are overwritten.  n counts the cells before c. */
            size_t n = 0;
            term_t c = t;
            for (;;) {
                size_t lim = n + 256; /* 65536 = 256 * 256: one past the longest string */
                uint8_t *s = NULL;
                if (write) {
                    ROOM(3 + lim);
                    s = w.out + w.pos + 3;
                }
                do {
                    const term_t *cell = term_list_ptr(c);
                    term_t car = cell[0];
                    if (!is_byte(car))
                        goto not_string;
                    if (write)
                        s[n] = (uint8_t)(car >> TAG_IMMED1_SIZE);
                    n++;
                    c = cell[1];
                    if (!term_is_list(c))
                        goto list_end;
                } while (n < lim);
                if (n > ETF_STRING_EXT_MAX)
                    goto not_string;
            }
        list_end:
            if (c == TERM_NIL && n <= ETF_STRING_EXT_MAX) {
                put8(&w, ETF_STRING_EXT, write);
                put16(&w, (unsigned)n, write);
                w.pos += n;
                break;
            }
        not_string:
            while (term_is_list(c)) {
                n++;
                c = term_cdr(c);
            }
            if (n > UINT32_MAX) {
                rc = ETF_EUNENCODABLE;
                goto fail;
            }
            ROOM(5);
            put8(&w, ETF_LIST_EXT, write);
            put32(&w, (uint32_t)n, write);
            PUSH(EF_LIST, NULL, t, n + 1);
            break;
        }

        case TAG_PRIMARY_BOXED: {
            const term_t *p = term_boxed_ptr(t);
            switch (header_subtag(p[0])) {
            case HDR_TUPLE: {
                size_t arity = (size_t)header_arity(p[0]);
                if (arity > UINT32_MAX) {
                    rc = ETF_EUNENCODABLE;
                    goto fail;
                }
                ROOM(5);
                if (arity <= 255) {
                    put8(&w, ETF_SMALL_TUPLE_EXT, write);
                    put8(&w, (unsigned)arity, write);
                } else {
                    put8(&w, ETF_LARGE_TUPLE_EXT, write);
                    put32(&w, (uint32_t)arity, write);
                }
                if (arity > 0)
                    PUSH(EF_SEQ, p + 1, 0, arity);
                break;
            }
            case HDR_POS_BIG:
            case HDR_NEG_BIG:
                TRY(enc_big(e, &w, t, write));
                break;
            case HDR_FLOAT:
                TRY(enc_float(e, &w, t, write));
                break;
            case HDR_HEAP_BIN:
            case HDR_REFC_BIN:
            case HDR_SUB_BIN:
                COLD(enc_bitstring, t);
                break;
            case HDR_EXT_PID:
                COLD(enc_pid, t);
                break;
            case HDR_EXT_PORT:
                COLD(enc_port, t);
                break;
            case HDR_REF:
            case HDR_LOCAL_REF:
                COLD(enc_ref, t);
                break;
            case HDR_EXPORT:
                COLD(enc_export, t);
                break;
            case HDR_FUN: {
                heap_fun_info_t info;
                size_t size_at;
                COLD(enc_fun_head, t, &info, &size_at);
                /* The Pid slot (any term: OTP 25 decodes any, see
                 * decode.c) is the word before the free variables. */
                PUSH(EF_FUN, term_fun_free(t) - 1, 0, (size_t)info.num_free + 1);
                f->aux = size_at;
                e->fun_depth++;
                break;
            }
            case HDR_MAP_FLAT:
            case HDR_MAP_HASH: {
                size_t n = heap_map_size(t);
                if (n > UINT32_MAX) {
                    rc = ETF_EUNENCODABLE;
                    goto fail;
                }
                ROOM(5);
                put8(&w, ETF_MAP_EXT, write);
                put32(&w, (uint32_t)n, write);
                if (n == 0)
                    break;
                if (header_subtag(p[0]) == HDR_MAP_FLAT) {
                    /* Flat maps store their keys in term order (OTP's
                     * flatmap order, which is also [deterministic]'s):
                     * p[2..2+n) keys, then the values. */
                    PUSH(EF_MAP, p + 2, n, 2 * n);
                    f->scratch = false;
                    break;
                }
                etf_scratch_mark_t mark;
                term_t *kv = etf_scratch_alloc(&e->scratch, 2 * n, &mark);
                if (kv == NULL) {
                    rc = ETF_ENOMEM;
                    goto fail;
                }
                if (!write) {
                    /* Sizes do not depend on the order: counting skips it. */
                    heap_map_pairs(t, kv, kv + n);
                } else if (e->deterministic) {
                    if (heap_map_sorted(t, kv, kv + n) != GD_OK) {
                        rc = ETF_ENOMEM;
                        goto fail;
                    }
                } else {
                    /* OTP's hash (HAMT) order for maps over 32 keys. */
                    rc = etf_otp_map_order(t, kv, kv + n, e->local_node, e->local_creation);
                    if (rc != GD_OK) {
                        etf_scratch_release(&e->scratch, mark);
                        goto fail;
                    }
                }
                PUSH(EF_MAP, kv, n, 2 * n);
                f->scratch = true;
                f->mark = mark;
                break;
            }
            default:
                rc = ETF_EUNENCODABLE;
                goto fail;
            }
            break;
        }

        default: /* a header word is not a term */
            rc = ETF_EUNENCODABLE;
            goto fail;
        }
    }
    *posp = w.pos;
    return GD_OK;

fail:
    return rc;
}

#undef TRY
#undef ROOM
#undef COLD
#undef PUSH

/* GCC's SLP vectoriser pairs the open frame's locals into one vector
 * register for the two adjacent stores of PUSH, which puts a vector-to-
 * integer move on the list walk's loop-carried chain (small-integer lists
 * encoded ~40% slower); the walker is scalar code. */
#if defined(__GNUC__) && !defined(__clang__)
#define ENC_WALK_ATTR __attribute__((optimize("no-tree-slp-vectorize")))
#else
#define ENC_WALK_ATTR
#endif

static GD_NOINLINE ENC_WALK_ATTR int enc_walk_size(enc_t *e, term_t t, size_t *pos)
{
    return enc_walk(e, t, pos, false);
}
static GD_NOINLINE ENC_WALK_ATTR int enc_walk_write(enc_t *e, term_t t, size_t *pos)
{
    return enc_walk(e, t, pos, true);
}

/* Fills *o with OTP 25's term_to_binary/1 defaults: no compression, no
 * deterministic ordering, the release's minor version, the default depth
 * cap.  (Local pids, ports and refs are written with heap_node_name and
 * heap_node_creation.) */
void etf_encode_opts_init(etf_encode_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->otp_release = 25;
    o->compressed = -1;
    o->deterministic = false;
    o->minor_version = -1;
    o->max_depth = 0;
}

static void enc_init(enc_t *e, const etf_encode_opts_t *opts)
{
    etf_encode_opts_t dflt;
    if (opts == NULL) {
        etf_encode_opts_init(&dflt);
        opts = &dflt;
    }
    int release = opts->otp_release == 0 ? 25 : opts->otp_release;
    int minor = opts->minor_version >= 0 ? opts->minor_version : (release >= 26 ? 2 : 1);
    e->buf = NULL;
    e->latin1_atoms = minor <= 1;
    e->float_ext = minor == 0;
    e->deterministic = opts->deterministic;
    /* Local pids, ports and refs carry the node identity heap/ holds (the
     * one place it lives, so a decoded echo becomes local again). */
    e->local_node = heap_node_name();
    e->local_creation = heap_node_creation();
    e->max_depth = opts->max_depth != 0 ? opts->max_depth : ETF_MAX_DEPTH_DEFAULT;
    e->refs = opts->bin_refs != NULL && opts->bin_refs->min_len > 0 ? opts->bin_refs : NULL;
    e->fun_depth = 0;
    e->stack = e->inline_stack;
    e->stack_cap = ENC_INLINE_FRAMES;
    etf_scratch_init(&e->scratch, e->inline_scratch, ENC_INLINE_SCRATCH);
}

static void enc_release(enc_t *e)
{
    if (e->stack != e->inline_stack)
        free(e->stack);
    e->stack = e->inline_stack;
    etf_scratch_free(&e->scratch);
}

/* Counts the bytes etf_encode_body would append for t, with the same walk
 * that writes them (never compressed).  Borrows t; allocates only its work
 * stack and map scratch, freed before returning.  O(size of t). */
int etf_encoded_size(term_t t, const etf_encode_opts_t *opts, size_t *size)
{
    enc_t e;
    enc_init(&e, opts);
    size_t pos = 0;
    int rc = enc_walk_size(&e, t, &pos);
    enc_release(&e);
    if (rc == GD_OK)
        *size = pos;
    return rc;
}

/* Writes the body of t at out->len onward; on success out->len grows. */
static int encode_body_at(term_t t, enc_t *e, etf_buf_t *out)
{
    e->buf = out;
    size_t pos = out->len;
    int rc = enc_walk_write(e, t, &pos);
    if (rc == GD_OK)
        out->len = pos;
    return rc;
}

/* Appends the encoding of t without the version byte to *out (grown as
 * needed; out->len unchanged on failure).  Borrows t.  O(size of t). */
int etf_encode_body(term_t t, const etf_encode_opts_t *opts, etf_buf_t *out)
{
    enc_t e;
    enc_init(&e, opts);
    int rc = encode_body_at(t, &e, out);
    enc_release(&e);
    return rc;
}

/*
 * Replaces the plain body at out->data[body..out->len) by 80 Size:32 zlib
 * when, as in OTP's term_to_binary, the compressed form is not longer than
 * the plain one (zlib must fit in Size - 5 bytes).  Level 0 never
 * compresses (OTP: {compressed, 0} is the plain encoding).
 */
static int maybe_compress(etf_buf_t *out, size_t body, int level)
{
    size_t plain = out->len - body;
    if (level <= 0 || plain <= 5 || plain > UINT32_MAX)
        return GD_OK;
    if (level > 9)
        level = 9;
    uLongf zlen = (uLongf)(plain - 5);
    uint8_t *z = malloc(zlen);
    if (z == NULL)
        return ETF_ENOMEM;
    int zr = compress2(z, &zlen, out->data + body, (uLong)plain, level);
    if (zr == Z_OK) {
        out->data[body] = ETF_COMPRESSED;
        etf_put32(out->data + body + 1, (uint32_t)plain);
        memcpy(out->data + body + 5, z, zlen);
        out->len = body + 5 + zlen;
    }
    free(z);
    /* Z_BUF_ERROR: the compressed form would be longer; keep the plain one. */
    return zr == Z_OK || zr == Z_BUF_ERROR ? GD_OK : ETF_ENOMEM;
}

/* Appends 131 and the encoding of t to *out, compressed as OTP would when
 * opts->compressed is 1..9 (out->len unchanged on failure).  Borrows t.
 * O(size of t), plus zlib's work when compressing. */
int etf_encode(term_t t, const etf_encode_opts_t *opts, etf_buf_t *out)
{
    size_t start = out->len;
    int rc = etf_buf_reserve(out, 1);
    if (rc != GD_OK)
        return ETF_ENOMEM;
    out->data[out->len++] = ETF_VERSION_MAGIC;
    enc_t e;
    enc_init(&e, opts);
    e.refs = NULL; /* a binary_to_term-able whole, maybe compressed */
    rc = encode_body_at(t, &e, out);
    enc_release(&e);
    if (rc == GD_OK && opts != NULL && opts->compressed > 0)
        rc = maybe_compress(out, start + 1, opts->compressed);
    if (rc != GD_OK)
        out->len = start;
    return rc;
}
