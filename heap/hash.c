/*
 * hash.c — hashes of terms: heap_hash_checked, the runtime's internal 64-bit
 * hash (map keys, consistent with =:=), and heap_phash2, OTP's portable
 * erlang:phash2/1,2.
 *
 * Both walk terms with an explicit stack, never C recursion.
 */
#include <stdlib.h>

#include "heap.h"
#include "term_internal.h"

/* ------------------------------------------------------------------------ */
/* The internal hash                                                         */

/*
 * The hash absorbs a canonical pre-order serialisation of the term, one
 * 64-bit word at a time (an xxhash64-style round), and finishes with the
 * murmur3 64-bit finaliser.  Canonical means the same for every
 * representation of exactly equal terms: integers by value (a bignum that
 * fits a small hashes as the small), floats with -0.0 as 0.0, bitstrings by
 * their bits whatever the storage and alignment, local pids/ports/refs with
 * this node's name and creation, references without high zero words, funs by the fields that take
 * part in comparison, maps by their storage (which is a function of their contents, see hamt.h).
 */

#define HASH_SEED 0x6a09e667f3bcc908u
#define HP1 0x9E3779B97F4A7C15u
#define HP2 0xC2B2AE3D27D4EB4Fu
#define HP3 0x165667B19E3779F9u

/* Type markers absorbed before the parts of a compound term.  Immediates
 * (small integers, atoms, nil) absorb their own tagged word, so these use
 * low bits (header-like, ..00) no immediate word has. */
enum {
    HM_TUPLE = 0x04,
    HM_CONS = 0x08,
    HM_IMMTAIL = 0x0C,
    HM_BIG = 0x10,
    HM_FLOAT = 0x14,
    HM_REF = 0x18,
    HM_FUN = 0x1C,
    HM_EXPORT = 0x20,
    HM_PID = 0x24,
    HM_PORT = 0x28,
    HM_BITS = 0x2C,
    HM_MAP = 0x30,
    HM_OTHER = 0x34,
};

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t absorb(uint64_t h, uint64_t v)
{
    v *= HP2;
    v = rotl64(v, 31);
    v *= HP1;
    h ^= v;
    return rotl64(h, 27) * HP1 + HP3;
}

static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

static uint64_t absorb_integer(uint64_t h, term_t t)
{
    if (term_is_small(t))
        return absorb(h, t);
    intval_t x;
    int_of(t, &x);
    if (x.n == 0)
        return absorb(h, term_make_small(0));
    if (x.n == 1) {
        if (!x.neg && x.d[0] <= (uint64_t)SMALL_MAX)
            return absorb(h, term_make_small((int64_t)x.d[0]));
        if (x.neg && x.d[0] <= (uint64_t)SMALL_MAX + 1)
            return absorb(h, term_make_small(-(int64_t)(x.d[0] - 1) - 1));
    }
    h = absorb(h, HM_BIG | ((uint64_t)x.neg << 6) | ((uint64_t)x.n << 8));
    for (size_t i = 0; i < x.n; i++)
        h = absorb(h, x.d[i]);
    return h;
}

static uint64_t absorb_ident(uint64_t h, unsigned marker, const ident_t *id)
{
    h = absorb(h, marker | ((uint64_t)id->creation << 8));
    h = absorb(h, id->node);
    return absorb(h, id->data);
}

static uint64_t absorb_bits(uint64_t h, term_t t)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    h = absorb(h, HM_BITS | ((uint64_t)v.bit_size << 8));
    size_t full = v.bit_size / 8;
    unsigned rem = (unsigned)(v.bit_size % 8);
    size_t k = 0;
    if (v.bit_offset == 0) {
        for (; k + 8 <= full; k += 8) {
            uint64_t w;
            memcpy(&w, v.bytes + k, 8);
            h = absorb(h, w);
        }
    } else {
        for (; k + 8 <= full; k += 8) {
            uint64_t w = 0;
            for (unsigned i = 0; i < 8; i++)
                w |= (uint64_t)bit_byte(&v, k + i) << (8 * i);
            h = absorb(h, w);
        }
    }
    /* The last 0..7 whole bytes and the partial byte, zero padded. */
    if (k < full || rem != 0) {
        uint64_t w = 0;
        unsigned i = 0;
        for (; k < full; k++, i++)
            w |= (uint64_t)bit_byte(&v, k) << (8 * i);
        if (rem != 0)
            w |= (uint64_t)(bit_byte(&v, full) & (uint8_t)(0xFF << (8 - rem))) << (8 * i);
        h = absorb(h, w);
    }
    return h;
}

static inline uint64_t absorb_immediate(uint64_t h, term_t t)
{
    ident_t id;
    if (term_is_local_pid(t)) {
        pid_ident(t, &id);
        return absorb_ident(h, HM_PID, &id);
    }
    if (term_is_local_port(t)) {
        port_ident(t, &id);
        return absorb_ident(h, HM_PORT, &id);
    }
    return absorb(h, t);
}

typedef struct hash_frame {
    const term_t *p;
    size_t n;
} hash_frame_t;

#define HASH_INLINE_FRAMES 32

static int hash_slow(term_t t, uint64_t *out)
{
    hash_frame_t st_inline[HASH_INLINE_FRAMES];
    hash_frame_t *st = st_inline;
    size_t len = 0, cap = HASH_INLINE_FRAMES;
    uint64_t h = HASH_SEED;
    const term_t *arr = NULL;
    size_t arr_n = 0;
    int rc;

#define HASH_PUSH(P, N)                                                                            \
    do {                                                                                           \
        if (GD_UNLIKELY(len == cap)) {                                                             \
            hash_frame_t *ns_ = walk_grow_stack(st, st_inline, &cap, sizeof *st);                  \
            if (ns_ == NULL)                                                                       \
                goto out_of_memory;                                                                \
            st = ns_;                                                                              \
        }                                                                                          \
        st[len].p = (P);                                                                           \
        st[len].n = (N);                                                                           \
        len++;                                                                                     \
    } while (0)

term:
    switch (term_primary(t)) {
    case TAG_PRIMARY_IMMED1:
        h = absorb_immediate(h, t);
        goto next;
    case TAG_PRIMARY_LIST:
        for (;;) {
            const term_t *cell = term_list_ptr(t);
            term_t car = cell[0], cdr = cell[1];
            h = absorb(h, HM_CONS);
            if (term_is_list(cdr)) {
                if (term_is_immediate(car)) {
                    h = absorb_immediate(h, car);
                } else {
                    HASH_PUSH(cell + 1, 1);
                    t = car;
                    goto term;
                }
                t = cdr;
                continue;
            }
            if (walk_plain_immediate(cdr)) {
                /* The tail first, so the car is processed without a push
                 * (deeply nested cars with [] tails).  Not for local pids
                 * and ports: they equal boxed external ones, which take the
                 * other path, and the order must not depend on storage. */
                h = absorb(h, HM_IMMTAIL);
                h = absorb_immediate(h, cdr);
            } else {
                HASH_PUSH(cell + 1, 1);
            }
            t = car;
            goto term;
        }
    default: /* TAG_PRIMARY_BOXED */
        break;
    }
    {
        term_t *p = term_boxed_ptr(t);
        term_t hdr = p[0];
        size_t arity = (size_t)header_arity(hdr);
        ident_t id;
        switch (header_subtag(hdr)) {
        case HDR_TUPLE:
            h = absorb(h, HM_TUPLE | ((uint64_t)arity << 8));
            if (arity == 0)
                goto next;
            arr = p + 1;
            arr_n = arity;
            goto array;
        case HDR_POS_BIG:
        case HDR_NEG_BIG:
            h = absorb_integer(h, t);
            goto next;
        case HDR_FLOAT: {
            double d = term_float_value(t);
            uint64_t bits;
            if (d == 0.0)
                d = 0.0; /* -0.0 =:= 0.0 */
            memcpy(&bits, &d, sizeof bits);
            h = absorb(h, HM_FLOAT);
            h = absorb(h, bits);
            goto next;
        }
        case HDR_REF:
        case HDR_LOCAL_REF: {
            ref_ident_t r;
            ref_ident(t, &r);
            h = absorb(h, HM_REF | ((uint64_t)r.creation << 8) | ((uint64_t)r.n << 40));
            h = absorb(h, r.node);
            for (size_t i = 0; i < r.n; i++)
                h = absorb(h, r.w[i]);
            goto next;
        }
        case HDR_FUN: {
            size_t nfree = (size_t)(p[1] >> 8);
            h = absorb(h, HM_FUN | ((uint64_t)nfree << 8));
            h = absorb(h, p[5]);
            h = absorb(h, (uint32_t)p[2]);
            if (term_is_integer(p[7]))
                h = absorb_integer(h, p[7]);
            else
                h = absorb(h, p[7]);
            if (nfree == 0)
                goto next;
            arr = term_fun_free(t);
            arr_n = nfree;
            goto array;
        }
        case HDR_EXPORT:
            h = absorb(h, HM_EXPORT);
            h = absorb(h, p[1]);
            h = absorb(h, p[2]);
            h = absorb(h, p[3]);
            goto next;
        case HDR_EXT_PID:
            pid_ident(t, &id);
            h = absorb_ident(h, HM_PID, &id);
            goto next;
        case HDR_EXT_PORT:
            port_ident(t, &id);
            h = absorb_ident(h, HM_PORT, &id);
            goto next;
        case HDR_HEAP_BIN:
        case HDR_REFC_BIN:
        case HDR_SUB_BIN:
            h = absorb_bits(h, t);
            goto next;
        case HDR_MAP_FLAT: {
            size_t n = map_size_of(p);
            h = absorb(h, HM_MAP | ((uint64_t)n << 8));
            if (n == 0)
                goto next;
            arr = p + 2; /* keys then values */
            arr_n = 2 * n;
            goto array;
        }
        case HDR_MAP_HASH:
            h = absorb(h, HM_MAP | ((uint64_t)map_size_of(p) << 8));
            arr = p + 3;
            arr_n = arity - 2;
            goto array;
        case HDR_HAMT_NODE:
            arr = p + 2;
            arr_n = arity - 1;
            goto array;
        case HDR_HAMT_COLLIDE:
            arr = p + 1;
            arr_n = arity;
            goto array;
        default:
            /* Not a term (a header subtag out of range): hash the word so
             * the result is at least deterministic. */
            h = absorb(h, HM_OTHER);
            h = absorb(h, hdr);
            goto next;
        }
    }

array:
    while (arr_n > 0) {
        term_t x = *arr++;
        arr_n--;
        if (arr_n == 0) {
            t = x;
            goto term;
        }
        if (term_is_immediate(x)) {
            h = absorb_immediate(h, x);
            continue;
        }
        HASH_PUSH(arr, arr_n);
        t = x;
        goto term;
    }
    goto next;

next:
    if (len > 0) {
        len--;
        arr = st[len].p;
        arr_n = st[len].n;
        goto array;
    }
#undef HASH_PUSH
    *out = fmix64(h);
    rc = GD_OK;
    goto free_stack;
out_of_memory:
    rc = GD_ENOMEM;
free_stack:
    if (st != st_inline)
        free(st);
    return rc;
}

/*
 * Sets *out to the 64-bit hash of t: equal under =:= implies equal hashes,
 * across every representation (see the serialisation notes above).  Atoms
 * hash by their table index, so values are stable within one OS process, not
 * across runs.  O(size of t), no recursion; immediates take a single mixing
 * round.  Errors: GD_ENOMEM when the walk stack (malloc'd only past
 * HASH_INLINE_FRAMES levels of branching) cannot grow; *out is not set then.
 */
int heap_hash_checked(term_t t, uint64_t *out)
{
    if (walk_plain_immediate(t)) {
        *out = fmix64(absorb(HASH_SEED, t));
        return GD_OK;
    }
    return hash_slow(t, out);
}

/* ------------------------------------------------------------------------ */
/* erlang:phash2/1,2                                                         */

/*
 * OTP's make_hash2 (erts/emulator/beam/utils.c; erl_term_hashing.c from
 * OTP 26), which phash2 is defined by and OTP documents as portable across
 * releases and machines.  It is Bob Jenkins' 96-bit mix over 32-bit pieces
 * of the term, in a pre-order walk:
 *  - a top-level atom or [] (hash still 0) takes a fixed value unmixed;
 *  - integers of 28 bits or less mix as signed 32-bit values (negatives
 *    twice), larger ones as 32-bit halves of each 64-bit magnitude digit
 *    with a sign constant (so a small and a bignum agree);
 *  - lists of bytes are packed four to a 32-bit word (string optimisation);
 *  - binaries go through Jenkins' block hash seeded with the hash so far;
 *  - pids hash only their number, ports their number, references their
 *    first id word: the node never takes part;
 *  - maps hash each pair from zero and combine the pairs with xor, so the
 *    result does not depend on the order pairs are stored in;
 *  - atoms hash by hashpjw over their UTF-8 name, with two-byte sequences of
 *    Latin-1 characters folded back to one byte (OTP's "latin1 clutch").
 */

#define PH_HCONST 0x9e3779b9u
#define PH_HCONST_2 0x3c6ef372u
#define PH_HCONST_3 0xdaa66d2bu
#define PH_HCONST_4 0x78dde6e4u
#define PH_HCONST_5 0x1715609du
#define PH_HCONST_6 0xb54cda56u
#define PH_HCONST_7 0x5384540fu
#define PH_HCONST_9 0x8ff34781u
#define PH_HCONST_10 0x2e2ac13au
#define PH_HCONST_11 0xcc623af3u
#define PH_HCONST_12 0x6a99b4acu
#define PH_HCONST_13 0x08d12e65u
#define PH_HCONST_14 0xa708a81eu
#define PH_HCONST_15 0x454021d7u
#define PH_HCONST_16 0xe3779b90u
#define PH_HCONST_19 0xbe1e08bbu
/* [] at the top of a term, and the word OTP mixes for [] elsewhere. */
#define PH_NIL_TOP 3468870702u
#define PH_NIL_WORD 0x02u /* OTP's NIL_DEF */

/* One step of Jenkins' mix: x - y - z, xored with z shifted right by s
 * (s > 0) or left by -s. */
static inline uint32_t ph_step(uint32_t x, uint32_t y, uint32_t z, int s)
{
    x -= y;
    x -= z;
    return x ^ (s > 0 ? z >> s : z << -s);
}

/* Bob Jenkins' 96-bit mix (OTP's MIX). */
static inline void ph_mix(uint32_t *pa, uint32_t *pb, uint32_t *pc)
{
    uint32_t a = *pa, b = *pb, c = *pc;
    a = ph_step(a, b, c, 13);
    b = ph_step(b, c, a, -8);
    c = ph_step(c, a, b, 13);
    a = ph_step(a, b, c, 12);
    b = ph_step(b, c, a, -16);
    c = ph_step(c, a, b, 5);
    a = ph_step(a, b, c, 3);
    b = ph_step(b, c, a, -10);
    c = ph_step(c, a, b, 15);
    *pa = a;
    *pb = b;
    *pc = c;
}

/* OTP's UINT32_HASH_2 / UINT32_HASH: mixes two 32-bit values into h. */
static inline uint32_t ph_u32x2(uint32_t h, uint32_t x, uint32_t y, uint32_t k)
{
    uint32_t a = k + x, b = k + y;
    ph_mix(&a, &b, &h);
    return h;
}
static inline uint32_t ph_u32(uint32_t h, uint32_t x, uint32_t k)
{
    return ph_u32x2(h, x, 0, k);
}

/* hashpjw over the atom's name, Latin-1 characters as one byte each. */
static uint32_t ph_atom(term_t atom)
{
    size_t len;
    const uint8_t *p = (const uint8_t *)heap_atom_text(atom, &len);
    uint32_t h = 0, g;
    while (len--) {
        uint32_t v = *p++;
        if (len && (v & 0xFE) == 0xC2 && (*p & 0xC0) == 0x80) {
            v = ((v << 6) | (*p & 0x3F)) & 0xFF;
            p++;
            len--;
        }
        h = (h << 4) + v;
        if ((g = h & 0xf0000000u) != 0) {
            h ^= g >> 24;
            h ^= g;
        }
    }
    return h;
}

/* A 64-bit magnitude digit with its sign constant. */
static inline uint32_t ph_digit(uint32_t h, uint64_t d, uint32_t con)
{
    return ph_u32x2(h, (uint32_t)d, (uint32_t)(d >> 32), con);
}

static uint32_t ph_small(uint32_t h, int64_t v)
{
    if (v >= -((int64_t)1 << 27) && v < ((int64_t)1 << 27)) {
        int32_t y = (int32_t)v;
        if (y < 0)
            h = ph_u32(h, (uint32_t)-y, PH_HCONST);
        return ph_u32(h, (uint32_t)y, PH_HCONST);
    }
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return ph_digit(h, mag, v < 0 ? PH_HCONST_10 : PH_HCONST_11);
}

static uint32_t ph_integer(uint32_t h, term_t t)
{
    if (term_is_small(t))
        return ph_small(h, term_small_value(t));
    intval_t x;
    int_of(t, &x);
    if (x.n == 0)
        return ph_small(h, 0);
    if (x.n == 1 && x.d[0] <= (uint64_t)SMALL_MAX)
        return ph_small(h, x.neg ? -(int64_t)x.d[0] : (int64_t)x.d[0]);
    uint32_t con = x.neg ? PH_HCONST_10 : PH_HCONST_11;
    for (size_t i = 0; i < x.n; i++)
        h = ph_digit(h, x.d[i], con);
    return h;
}

/* Jenkins' block hash over the bitstring's whole bytes, seeded with
 * HCONST_13 + h, then the trailing bits. */
static uint32_t ph_bits(uint32_t h, term_t t)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    /* OTP truncates the byte count to 32 bits (compatibility). */
    size_t sz = (v.bit_size / 8) & 0xFFFFFFFFu;
    unsigned tail = (unsigned)(v.bit_size % 8);
    if (sz == 0 && tail == 0)
        return PH_HCONST_13 + h;
    uint32_t a = PH_HCONST, b = PH_HCONST, c = PH_HCONST_13 + h;
    uint8_t k[12];
    size_t i = 0;
    for (; i + 12 <= sz; i += 12) {
        for (unsigned j = 0; j < 12; j++)
            k[j] = bit_byte(&v, i + j);
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        ph_mix(&a, &b, &c);
    }
    size_t left = sz - i;
    for (unsigned j = 0; j < left; j++)
        k[j] = bit_byte(&v, i + j);
    c += (uint32_t)sz;
    /* Byte j of the rest goes to a, b or c (c's low byte holds the length). */
    for (unsigned j = 0; j < left; j++) {
        if (j < 4)
            a += (uint32_t)k[j] << (8 * j);
        else if (j < 8)
            b += (uint32_t)k[j] << (8 * (j - 4));
        else
            c += (uint32_t)k[j] << (8 * (j - 7));
    }
    ph_mix(&a, &b, &c);
    h = c;
    if (tail > 0)
        h = ph_u32x2(h, tail, (uint32_t)(bit_byte(&v, sz) >> (8 - tail)), PH_HCONST_15);
    return h;
}

/* Work items of the phash2 walk. */
enum {
    PH_TERM,       /* hash p[0]                                       */
    PH_ARRAY,      /* hash p[0..n) in order                           */
    PH_FLAT_PAIRS, /* pairs n.. of the flat map at p (n = next index)  */
    PH_HAMT,       /* the children p[0..n) of a HAMT node             */
    PH_PAIR_END,   /* a pair is hashed: xor it in, restart from 0     */
    PH_MAP_END,    /* all pairs hashed: a = saved hash, b = saved xor  */
};

typedef struct ph_frame {
    const term_t *p;
    size_t n;
    uint32_t a, b;
    uint8_t kind;
} ph_frame_t;

#define PH_INLINE_FRAMES 32

int heap_phash2(term_t t, uint64_t range, uint32_t *out)
{
    if (range > ((uint64_t)1 << 32))
        return GD_EINVAL;
    ph_frame_t st_inline[PH_INLINE_FRAMES];
    ph_frame_t *st = st_inline;
    size_t len = 0, cap = PH_INLINE_FRAMES;
    uint32_t h = 0, pairs = 0;
    int rc;

#define PH_PUSH(KIND, P, N, A, B)                                                                  \
    do {                                                                                           \
        if (GD_UNLIKELY(len == cap)) {                                                             \
            ph_frame_t *ns_ = walk_grow_stack(st, st_inline, &cap, sizeof *st);                    \
            if (ns_ == NULL)                                                                       \
                goto out_of_memory;                                                                \
            st = ns_;                                                                              \
        }                                                                                          \
        st[len++] = (ph_frame_t){(P), (N), (A), (B), (KIND)};                                      \
    } while (0)

term:
    switch (term_primary(t)) {
    case TAG_PRIMARY_LIST: {
        const term_t *cell = term_list_ptr(t);
        uint32_t sh = 0;
        unsigned c = 0;
        for (;;) {
            term_t car = cell[0];
            if (!term_is_small(car) || (uint64_t)term_small_value(car) > 255)
                break;
            sh = (sh << 8) + (uint32_t)term_small_value(car);
            if (c == 3) {
                h = ph_u32(h, sh, PH_HCONST_4);
                c = 0;
                sh = 0;
            } else {
                c++;
            }
            t = cell[1];
            if (!term_is_list(t)) {
                cell = NULL;
                break;
            }
            cell = term_list_ptr(t);
        }
        if (c > 0)
            h = ph_u32(h, sh, PH_HCONST_4);
        if (cell != NULL) {
            /* A non-byte head: the tail waits, the head goes first. */
            PH_PUSH(PH_TERM, cell + 1, 1, 0, 0);
            t = cell[0];
        }
        goto term;
    }
    case TAG_PRIMARY_IMMED1:
        if (term_is_small(t)) {
            h = ph_small(h, term_small_value(t));
        } else if (term_is_atom(t)) {
            uint32_t hv = ph_atom(t);
            h = h == 0 ? hv : ph_u32(h, hv, PH_HCONST_3);
        } else if (term_is_nil(t)) {
            h = h == 0 ? PH_NIL_TOP : ph_u32(h, PH_NIL_WORD, PH_HCONST_2);
        } else if (term_is_local_pid(t)) {
            h = ph_u32(h, term_local_pid_id(t), PH_HCONST_5);
        } else if (term_is_local_port(t)) {
            uint64_t num = term_local_port_number(t);
            h = ph_u32x2(h, (uint32_t)num, (uint32_t)(num >> 32), PH_HCONST_6);
        }
        goto next;
    default:
        break;
    }
    {
        const term_t *p = term_boxed_ptr(t);
        size_t arity = (size_t)header_arity(p[0]);
        switch (header_subtag(p[0])) {
        case HDR_TUPLE:
            h = ph_u32(h, (uint32_t)arity, PH_HCONST_9);
            if (arity > 0)
                PH_PUSH(PH_ARRAY, p + 1, arity, 0, 0);
            goto next;
        case HDR_POS_BIG:
        case HDR_NEG_BIG:
            h = ph_integer(h, t);
            goto next;
        case HDR_FLOAT: {
            double d = term_float_value(t);
            uint64_t bits;
            if (d == 0.0)
                d = 0.0; /* -0.0 hashes as 0.0 */
            memcpy(&bits, &d, sizeof bits);
            h = ph_u32x2(h, (uint32_t)(bits >> 32), (uint32_t)bits, PH_HCONST_12);
            goto next;
        }
        case HDR_REF:
            h = ph_u32(h, (uint32_t)p[2], PH_HCONST_7);
            goto next;
        case HDR_LOCAL_REF:
            h = ph_u32(h, (uint32_t)p[1], PH_HCONST_7);
            goto next;
        case HDR_FUN: {
            heap_fun_info_t fi;
            heap_fun_info(t, &fi);
            h = ph_u32x2(h, fi.num_free, ph_atom(fi.module), PH_HCONST);
            int64_t old_uniq = 0;
            if (heap_integer_to_int64(fi.old_uniq, &old_uniq) != GD_OK)
                old_uniq = 0;
            h = ph_u32x2(h, fi.index, (uint32_t)old_uniq, PH_HCONST);
            if (fi.num_free > 0)
                PH_PUSH(PH_ARRAY, term_fun_free(t), fi.num_free, 0, 0);
            goto next;
        }
        case HDR_EXPORT:
            h = ph_u32x2(h, (uint32_t)term_small_value(p[3]), ph_atom(p[1]), PH_HCONST);
            h = ph_u32(h, ph_atom(p[2]), PH_HCONST_14);
            goto next;
        case HDR_EXT_PID:
            h = ph_u32(h, (uint32_t)p[1], PH_HCONST_5);
            goto next;
        case HDR_EXT_PORT:
            h = ph_u32x2(h, (uint32_t)p[1], (uint32_t)(p[1] >> 32), PH_HCONST_6);
            goto next;
        case HDR_HEAP_BIN:
        case HDR_REFC_BIN:
        case HDR_SUB_BIN:
            h = ph_bits(h, t);
            goto next;
        case HDR_MAP_FLAT:
        case HDR_MAP_HASH: {
            size_t n = map_size_of(p);
            h = ph_u32(h, (uint32_t)n, PH_HCONST_16);
            if (n == 0)
                goto next;
            PH_PUSH(PH_MAP_END, NULL, 0, h, pairs);
            h = 0;
            pairs = 0;
            if (header_subtag(p[0]) == HDR_MAP_FLAT)
                PH_PUSH(PH_FLAT_PAIRS, p, 0, 0, 0);
            else
                PH_PUSH(PH_HAMT, p + 3, arity - 2, 0, 0);
            goto next;
        }
        default:
            /* HAMT inner nodes are reached only through PH_HAMT. */
            GD_ASSERT(!"phash2 of a non-term");
            goto next;
        }
    }

next:
    while (len > 0) {
        ph_frame_t *f = &st[len - 1];
        switch (f->kind) {
        case PH_TERM:
            len--;
            t = f->p[0];
            goto term;
        case PH_ARRAY:
            t = f->p[0];
            if (--f->n == 0)
                len--;
            else
                f->p++;
            goto term;
        case PH_FLAT_PAIRS: {
            size_t n = map_size_of(f->p), i = f->n;
            if (i == n) {
                len--;
                continue;
            }
            f->n++;
            const term_t *keys = f->p + 2;
            PH_PUSH(PH_PAIR_END, NULL, 0, 0, 0);
            PH_PUSH(PH_TERM, keys + n + i, 1, 0, 0);
            t = keys[i];
            goto term;
        }
        case PH_HAMT: {
            if (f->n == 0) {
                len--;
                continue;
            }
            term_t child = f->p[0];
            f->p++;
            f->n--;
            if (term_is_list(child)) {
                PH_PUSH(PH_PAIR_END, NULL, 0, 0, 0);
                PH_PUSH(PH_TERM, term_list_ptr(child) + 1, 1, 0, 0);
                t = term_car(child);
                goto term;
            }
            const term_t *q = term_boxed_ptr(child);
            size_t qa = (size_t)header_arity(q[0]);
            if (header_subtag(q[0]) == HDR_HAMT_NODE)
                PH_PUSH(PH_HAMT, q + 2, qa - 1, 0, 0);
            else /* HDR_HAMT_COLLIDE */
                PH_PUSH(PH_HAMT, q + 1, qa, 0, 0);
            continue;
        }
        case PH_PAIR_END:
            len--;
            pairs ^= h;
            h = 0;
            continue;
        default: /* PH_MAP_END */
            len--;
            h = ph_u32(f->a, pairs, PH_HCONST_19);
            pairs = f->b;
            continue;
        }
    }
#undef PH_PUSH
    if (range == 0)
        *out = h & ((1u << 27) - 1);
    else if (range == ((uint64_t)1 << 32))
        *out = h;
    else
        *out = (uint32_t)(h % (uint32_t)range);
    rc = GD_OK;
    goto free_stack;
out_of_memory:
    rc = GD_ENOMEM;
free_stack:
    if (st != st_inline)
        free(st);
    return rc;
}
