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
 * their bits whatever the storage and alignment, local pids/ports as the
 * external ones of 'nonode@nohost' creation 0, references without high zero
 * words, funs by the fields that take part in comparison, maps by their
 * storage (which is a function of their contents, see hamt.h).
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
        case HDR_REF: {
            uint32_t w[HEAP_REF_MAX_WORDS];
            size_t n = ref_words(p, w);
            h = absorb(h, HM_REF | ((uint64_t)(uint32_t)p[1] << 8) | ((uint64_t)n << 40));
            h = absorb(h, p[5]);
            for (size_t i = 0; i < n; i++)
                h = absorb(h, w[i]);
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
