/*
 * compare.c — Erlang's standard term order (heap_compare) and the term hash
 * (heap_hash).
 *
 * Both walk terms with an explicit stack, never C recursion: a term may be
 * nested a million levels deep.  The walks descend into the last element of
 * a tuple, the tail of a list and a car whose cdr needs no work without
 * pushing anything, so the stack grows only with real branching.
 *
 * The order is OTP's (erts_cmp in erts/emulator/beam/utils.c), checked
 * against OTP 25:
 *   number < atom < reference < fun < port < pid < tuple < map < [] < list
 *   < bitstring.
 * - Numbers compare by exact mathematical value when exact = false (a bignum
 *   and a float never lose precision: 2^53+1 > 9007199254740992.0).  With
 *   exact = true (=:= and map-key order, OTP's "term order") every integer is
 *   below every float whatever the values: erts_internal:cmp_term(2, 1.0) is
 *   -1 in OTP, and maps order their keys that way (#{2 => a} < #{1.0 => a}).
 * - 0.0 and -0.0 are equal in both modes, as in OTP 25 (OTP 27 makes them
 *   differ under =:=); the hash maps -0.0 to 0.0 accordingly.
 * - Atoms by their UTF-8 text (byte order = code point order).
 * - References: node name, creation, then the 32-bit id words from the most
 *   significant (the last); extra high words that are zero do not count.
 * - Ports: node name, creation, then number.  Pids: serial, number, then node
 *   name and creation.  A local (immediate) pid or port is treated as one of
 *   node 'nonode@nohost', creation 0, so it equals an external one with the
 *   same identity.
 * - Funs: module, index (as a signed 32-bit value), old_uniq, number of free
 *   variables, then the free variables; arity, uniq, old_index and the
 *   creator pid take no part (OTP 25 behaves so).  A fun is below an export;
 *   exports compare by module, function, arity.
 * - Tuples by arity, then elements; lists element by element, then the
 *   tails (an improper tail compares as a term); bitstrings bit by bit over
 *   the common length, then by length.
 * - Maps by size, then their keys in ascending exact order, then their values
 *   in that key order (values compare with the caller's exactness, keys
 *   always exactly).  Two hash maps are merged in hash order, as OTP does,
 *   so no sorting or allocation is needed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "hamt.h"
#include "heap.h"

static inline int sign_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}
static inline int sign_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */

/* An integer as sign and magnitude (little-endian digits, no leading zero
 * digit; zero has n = 0).  `one` backs the digit of a small integer, so the
 * struct must stay where it was filled. */
typedef struct intval {
    bool neg;
    size_t n;
    const uint64_t *d;
    uint64_t one;
} intval_t;

static inline void int_of(term_t t, intval_t *v)
{
    if (term_is_small(t)) {
        int64_t x = term_small_value(t);
        v->neg = x < 0;
        v->one = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
        v->d = &v->one;
        v->n = v->one != 0;
        return;
    }
    v->neg = term_big_negative(t);
    v->d = term_big_digits(t);
    v->n = term_big_ndigits(t);
    while (v->n > 0 && v->d[v->n - 1] == 0)
        v->n--;
    if (v->n == 0)
        v->neg = false;
}

static int cmp_mag(const uint64_t *a, size_t an, const uint64_t *b, size_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    for (size_t i = an; i-- > 0;)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int cmp_ints(term_t a, term_t b)
{
    intval_t x, y;
    int_of(a, &x);
    int_of(b, &y);
    if (x.neg != y.neg)
        return x.neg ? -1 : 1;
    int c = cmp_mag(x.d, x.n, y.d, y.n);
    return x.neg ? -c : c;
}

/*
 * Compares a magnitude with a finite g > 0 exactly: g = mant * 2^e2 with a
 * 53-bit mantissa is either an integer we can write as digits (e2 >= 0) or
 * an integer part plus a non-zero or zero fraction (e2 < 0).
 */
static int cmp_mag_double(const uint64_t *d, size_t n, double g)
{
    int e;
    double m = frexp(g, &e); /* g = m * 2^e, 0.5 <= m < 1 */
    uint64_t mant = (uint64_t)ldexp(m, 53);
    int e2 = e - 53;
    if (e2 >= 0) {
        /* g < 2^1024, so at most 16 digits; one spare for the shift. */
        uint64_t gd[18] = {0};
        size_t ws = (size_t)e2 / 64;
        unsigned bs = (unsigned)e2 % 64;
        gd[ws] = mant << bs;
        if (bs != 0)
            gd[ws + 1] = mant >> (64 - bs);
        size_t gn = ws + 2;
        while (gn > 0 && gd[gn - 1] == 0)
            gn--;
        return cmp_mag(d, n, gd, gn);
    }
    unsigned sh = (unsigned)-e2;
    uint64_t ipart = sh >= 64 ? 0 : mant >> sh;
    bool frac = sh >= 64 ? mant != 0 : (mant & (((uint64_t)1 << sh) - 1)) != 0;
    if (n > 1)
        return 1;
    uint64_t v = n == 1 ? d[0] : 0;
    if (v != ipart)
        return v < ipart ? -1 : 1;
    return frac ? -1 : 0;
}

/* Sign of (integer a) - (float f), exactly. */
static int cmp_int_double(term_t a, double f)
{
    intval_t x;
    int_of(a, &x);
    if (f == 0.0)
        return x.n == 0 ? 0 : (x.neg ? -1 : 1);
    bool fneg = f < 0;
    if (x.n == 0)
        return fneg ? 1 : -1;
    if (x.neg != fneg)
        return x.neg ? -1 : 1;
    int c = cmp_mag_double(x.d, x.n, fabs(f));
    return x.neg ? -c : c;
}

static inline int cmp_doubles(double a, double b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

static int cmp_numbers(term_t a, term_t b, bool exact)
{
    bool af = term_is_float(a), bf = term_is_float(b);
    if (af && bf)
        return cmp_doubles(term_float_value(a), term_float_value(b));
    if (!af && !bf)
        return cmp_ints(a, b);
    if (exact)
        return af ? 1 : -1; /* term order: every integer < every float */
    if (bf)
        return cmp_int_double(a, term_float_value(b));
    return -cmp_int_double(b, term_float_value(a));
}

/* ------------------------------------------------------------------------ */
/* Atoms, identifiers, funs, bitstrings                                      */

static int cmp_atoms(term_t a, term_t b)
{
    if (a == b)
        return 0;
    size_t la, lb;
    const char *ta = heap_atom_text(a, &la);
    const char *tb = heap_atom_text(b, &lb);
    return atom_text_order(ta, la, tb, lb);
}

static int cmp_nodes(term_t na, uint32_t ca, term_t nb, uint32_t cb)
{
    int c = cmp_atoms(na, nb);
    return c != 0 ? c : sign_u64(ca, cb);
}

typedef struct ident {
    term_t node;
    uint32_t creation;
    uint64_t data; /* pid: serial << 32 | number; port: number */
} ident_t;

static inline void pid_ident(term_t t, ident_t *id)
{
    if (term_is_local_pid(t)) {
        id->node = ATOM_NONODE;
        id->creation = 0;
        id->data = ((uint64_t)term_local_pid_serial(t) << 32) | term_local_pid_id(t);
        return;
    }
    const term_t *p = term_boxed_ptr(t);
    id->data = p[1]; /* id | serial << 32 */
    id->creation = (uint32_t)p[2];
    id->node = p[3];
}

static inline void port_ident(term_t t, ident_t *id)
{
    if (term_is_local_port(t)) {
        id->node = ATOM_NONODE;
        id->creation = 0;
        id->data = term_local_port_number(t);
        return;
    }
    const term_t *p = term_boxed_ptr(t);
    id->data = p[1];
    id->creation = (uint32_t)p[2];
    id->node = p[3];
}

static int cmp_pids(term_t a, term_t b)
{
    ident_t x, y;
    pid_ident(a, &x);
    pid_ident(b, &y);
    /* data = serial << 32 | number: serial first, then number, as OTP */
    if (x.data != y.data)
        return x.data < y.data ? -1 : 1;
    return cmp_nodes(x.node, x.creation, y.node, y.creation);
}

static int cmp_ports(term_t a, term_t b)
{
    ident_t x, y;
    port_ident(a, &x);
    port_ident(b, &y);
    int c = cmp_nodes(x.node, x.creation, y.node, y.creation);
    return c != 0 ? c : sign_u64(x.data, y.data);
}

/* The id words of a reference and their count without high zero words. */
static inline size_t ref_words(const term_t *p, uint32_t w[HEAP_REF_MAX_WORDS])
{
    size_t n = (size_t)(p[1] >> 32);
    if (n > HEAP_REF_MAX_WORDS)
        n = HEAP_REF_MAX_WORDS;
    w[0] = (uint32_t)p[2];
    w[1] = (uint32_t)(p[2] >> 32);
    w[2] = (uint32_t)p[3];
    w[3] = (uint32_t)(p[3] >> 32);
    w[4] = (uint32_t)p[4];
    while (n > 0 && w[n - 1] == 0)
        n--;
    return n;
}

static int cmp_refs(term_t a, term_t b)
{
    const term_t *p = term_boxed_ptr(a), *q = term_boxed_ptr(b);
    int c = cmp_nodes(p[5], (uint32_t)p[1], q[5], (uint32_t)q[1]);
    if (c != 0)
        return c;
    uint32_t wa[HEAP_REF_MAX_WORDS], wb[HEAP_REF_MAX_WORDS];
    size_t na = ref_words(p, wa), nb = ref_words(q, wb);
    if (na != nb)
        return na < nb ? -1 : 1;
    for (size_t i = na; i-- > 0;)
        if (wa[i] != wb[i])
            return wa[i] < wb[i] ? -1 : 1;
    return 0;
}

/* Compares fun fields that are plain integers in practice (old_uniq); any
 * other term falls back to class then word order, which is deterministic
 * and agrees with the hash. */
static int cmp_scalar(term_t a, term_t b)
{
    if (a == b)
        return 0;
    if (term_is_integer(a) && term_is_integer(b))
        return cmp_ints(a, b);
    enum heap_type_class ca = heap_type_class(a), cb = heap_type_class(b);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    return sign_u64(a, b);
}

/* Funs: everything but the free variables; *nfree gets their count when the
 * heads are equal. */
static int cmp_fun_heads(term_t a, term_t b, size_t *nfree)
{
    const term_t *p = term_boxed_ptr(a), *q = term_boxed_ptr(b);
    int c = cmp_atoms(p[5], q[5]);
    if (c != 0)
        return c;
    c = sign_i64((int32_t)(uint32_t)p[2], (int32_t)(uint32_t)q[2]);
    if (c != 0)
        return c;
    c = cmp_scalar(p[7], q[7]);
    if (c != 0)
        return c;
    uint64_t fa = p[1] >> 8, fb = q[1] >> 8;
    if (fa != fb)
        return fa < fb ? -1 : 1;
    *nfree = (size_t)fa;
    return 0;
}

static int cmp_exports(term_t a, term_t b)
{
    const term_t *p = term_boxed_ptr(a), *q = term_boxed_ptr(b);
    int c = cmp_atoms(p[1], q[1]);
    if (c == 0)
        c = cmp_atoms(p[2], q[2]);
    if (c == 0)
        c = sign_i64(term_small_value(p[3]), term_small_value(q[3]));
    return c;
}

/* Byte k of a bitstring's bit sequence (8k < bit_size); bits past the end
 * are unspecified and must be masked by the caller.  Reads no byte outside
 * the bitstring. */
static inline uint8_t bit_byte(const heap_bin_view_t *v, size_t k)
{
    unsigned o = v->bit_offset;
    if (o == 0)
        return v->bytes[k];
    uint8_t x = (uint8_t)(v->bytes[k] << o);
    if (8 * (k + 1) < o + v->bit_size)
        x |= (uint8_t)(v->bytes[k + 1] >> (8 - o));
    return x;
}

static int cmp_bits(term_t a, term_t b)
{
    heap_bin_view_t va, vb;
    heap_bin_view(a, &va);
    heap_bin_view(b, &vb);
    size_t min = va.bit_size < vb.bit_size ? va.bit_size : vb.bit_size;
    size_t full = min / 8;
    unsigned rem = (unsigned)(min % 8);
    if (va.bit_offset == 0 && vb.bit_offset == 0) {
        if (full > 0) {
            int c = memcmp(va.bytes, vb.bytes, full);
            if (c != 0)
                return c < 0 ? -1 : 1;
        }
    } else {
        for (size_t k = 0; k < full; k++) {
            uint8_t x = bit_byte(&va, k), y = bit_byte(&vb, k);
            if (x != y)
                return x < y ? -1 : 1;
        }
    }
    if (rem != 0) {
        uint8_t mask = (uint8_t)(0xFF << (8 - rem));
        uint8_t x = bit_byte(&va, full) & mask, y = bit_byte(&vb, full) & mask;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return sign_u64(va.bit_size, vb.bit_size);
}

/* ------------------------------------------------------------------------ */
/* The comparison engine                                                     */

/* The work stack could only fail to grow when memory is exhausted; the
 * API cannot report that (heap_compare and heap_hash return a result, as
 * OTP's erts_cmp does), and the stack needs at most a few words per level of
 * the terms that already exist, so this is treated like a failed stack
 * allocation: a clear message and abort. */
GD_COLD static void walk_out_of_memory(const char *who)
{
    fprintf(stderr, "girder: out of memory growing the work stack of %s\n", who);
    abort();
}

/* Grows a stack whose storage may still be the caller's inline buffer. */
static void *grow_stack(void *base, const void *inline_buf, size_t *cap, size_t elem,
                        const char *who)
{
    size_t ncap = *cap * 2;
    void *nb;
    if (base == inline_buf) {
        nb = malloc(ncap * elem);
        if (nb != NULL)
            memcpy(nb, base, *cap * elem);
    } else {
        nb = realloc(base, ncap * elem);
    }
    if (nb == NULL)
        walk_out_of_memory(who);
    *cap = ncap;
    return nb;
}

enum { FR_PAIR, FR_ARRAY, FR_MAPOP };

typedef struct cmp_frame {
    term_t x, y; /* FR_PAIR: the terms; FR_ARRAY: pointers to the arrays */
    size_t n;    /* FR_ARRAY: elements left */
    uint8_t kind;
    bool exact;
} cmp_frame_t;

/* What a hash-map comparison waits for from its pending sub-comparison. */
enum {
    MOP_P1_KEYS,  /* phase 1: are the current keys equal? */
    MOP_P1_ISMIN, /* phase 1: is the (common) key below min_key? */
    MOP_P1_VALS,  /* phase 1: do the values differ? */
    MOP_P2_KEYS,  /* phase 2: are the current keys equal? */
    MOP_P2_MIN_A, /* phase 2: is A's unmatched key below min_key? */
    MOP_P2_MIN_B, /* phase 2: is B's unmatched key below min_key? */
};

/*
 * State of one hash map against hash map comparison.  Both maps are walked
 * in hash order (ties between equal hashes in exact key order, as collision
 * nodes store them), a merge of two sorted sequences:
 * phase 1 while the keys match, remembering the smallest key whose values
 * differ (cmp_res, min_key); phase 2 once a key is missing from one map,
 * looking only for the smallest key present in just one map — it decides.
 */
typedef struct cmp_mapstate {
    size_t rollback; /* stack depth just above this state's FR_MAPOP marker */
    int op;
    int cmp_res;
    bool was_exact;
    bool has_a, has_b;
    term_t ka, va, kb, vb;
    uint64_t ha, hb;
    term_t min_key;
    heap_map_iter_t ia, ib;
} cmp_mapstate_t;

#define CMP_INLINE_FRAMES 32
#define CMP_INLINE_MAPS 2

typedef struct cmp_ctx {
    cmp_frame_t *st;
    size_t len, cap;
    cmp_mapstate_t *ms;
    size_t nms, mscap;
    cmp_frame_t st_inline[CMP_INLINE_FRAMES];
    cmp_mapstate_t ms_inline[CMP_INLINE_MAPS];
} cmp_ctx_t;

static inline void push_frame(cmp_ctx_t *cx, uint8_t kind, term_t x, term_t y, size_t n, bool exact)
{
    if (GD_UNLIKELY(cx->len == cx->cap))
        cx->st = grow_stack(cx->st, cx->st_inline, &cx->cap, sizeof *cx->st, "heap_compare");
    cmp_frame_t *f = &cx->st[cx->len++];
    f->x = x;
    f->y = y;
    f->n = n;
    f->kind = kind;
    f->exact = exact;
}

static cmp_mapstate_t *push_mapstate(cmp_ctx_t *cx)
{
    if (cx->nms == cx->mscap)
        cx->ms = grow_stack(cx->ms, cx->ms_inline, &cx->mscap, sizeof *cx->ms, "heap_compare");
    return &cx->ms[cx->nms++];
}

static inline void ms_advance_a(cmp_mapstate_t *s)
{
    s->has_a = heap_map_next(&s->ia, &s->ka, &s->va);
    if (s->has_a)
        s->ha = hamt_key_hash(s->ka);
}

static inline void ms_advance_b(cmp_mapstate_t *s)
{
    s->has_b = heap_map_next(&s->ib, &s->kb, &s->vb);
    if (s->has_b)
        s->hb = hamt_key_hash(s->kb);
}

/* Resolves the cheap cases without the engine: true with *res set, or false. */
static inline bool quick_cmp(term_t a, term_t b, int *res)
{
    if (term_is_small(a) && term_is_small(b)) {
        *res = sign_i64(term_small_value(a), term_small_value(b));
        return true;
    }
    if (term_is_atom(a) && term_is_atom(b)) {
        *res = cmp_atoms(a, b);
        return true;
    }
    return false;
}

static inline size_t map_size_of(const term_t *p)
{
    /* flat: [hdr][n]...; hash: [hdr][size]... — both keep it in word 1 */
    return (size_t)term_small_value(p[1]);
}

static int compare_slow(term_t a, term_t b, bool exact)
{
    cmp_ctx_t cx;
    cx.st = cx.st_inline;
    cx.len = 0;
    cx.cap = CMP_INLINE_FRAMES;
    cx.ms = cx.ms_inline;
    cx.nms = 0;
    cx.mscap = CMP_INLINE_MAPS;

    int j = 0;
    const term_t *arr_a = NULL, *arr_b = NULL;
    size_t arr_n = 0;
    cmp_mapstate_t *s;

pair:
    if (a == b)
        goto pop;
    if (quick_cmp(a, b, &j)) {
        if (j != 0)
            goto not_equal;
        goto pop;
    }
    {
        enum heap_type_class ca = heap_type_class(a), cb = heap_type_class(b);
        if (ca != cb) {
            j = ca < cb ? -1 : 1;
            goto not_equal;
        }
        switch (ca) {
        case HEAP_CLASS_NUMBER:
            j = cmp_numbers(a, b, exact);
            break;
        case HEAP_CLASS_ATOM:
            j = cmp_atoms(a, b);
            break;
        case HEAP_CLASS_REF:
            j = cmp_refs(a, b);
            break;
        case HEAP_CLASS_PORT:
            j = cmp_ports(a, b);
            break;
        case HEAP_CLASS_PID:
            j = cmp_pids(a, b);
            break;
        case HEAP_CLASS_NIL:
            j = 0;
            break;
        case HEAP_CLASS_BITSTRING:
            j = cmp_bits(a, b);
            break;
        case HEAP_CLASS_FUN: {
            bool fa = term_is_fun(a), fb = term_is_fun(b);
            if (fa != fb) {
                j = fa ? -1 : 1; /* a fun is below an export */
                break;
            }
            if (!fa) {
                j = cmp_exports(a, b);
                break;
            }
            size_t nfree = 0;
            j = cmp_fun_heads(a, b, &nfree);
            if (j != 0 || nfree == 0)
                break;
            arr_a = term_fun_free(a);
            arr_b = term_fun_free(b);
            arr_n = nfree;
            goto array;
        }
        case HEAP_CLASS_TUPLE: {
            size_t na = term_tuple_arity(a), nb = term_tuple_arity(b);
            if (na != nb) {
                j = na < nb ? -1 : 1;
                break;
            }
            if (na == 0) {
                j = 0;
                break;
            }
            arr_a = term_tuple_elems(a);
            arr_b = term_tuple_elems(b);
            arr_n = na;
            goto array;
        }
        case HEAP_CLASS_MAP:
            goto map;
        case HEAP_CLASS_LIST:
            goto list;
        }
        if (j != 0)
            goto not_equal;
        goto pop;
    }

list:
    for (;;) {
        term_t xa = term_car(a), xb = term_car(b);
        term_t ta = term_cdr(a), tb = term_cdr(b);
        if (xa != xb) {
            if (quick_cmp(xa, xb, &j)) {
                if (j != 0)
                    goto not_equal;
            } else {
                if (ta != tb)
                    push_frame(&cx, FR_PAIR, ta, tb, 0, exact);
                a = xa;
                b = xb;
                goto pair;
            }
        }
        if (ta == tb)
            goto pop;
        if (!term_is_list(ta) || !term_is_list(tb)) {
            a = ta;
            b = tb;
            goto pair;
        }
        a = ta;
        b = tb;
    }

array:
    for (;;) {
        term_t xa = *arr_a, xb = *arr_b;
        if (arr_n == 1) {
            a = xa;
            b = xb;
            goto pair;
        }
        arr_a++;
        arr_b++;
        arr_n--;
        if (xa == xb)
            continue;
        if (quick_cmp(xa, xb, &j)) {
            if (j != 0)
                goto not_equal;
            continue;
        }
        push_frame(&cx, FR_ARRAY, (term_t)(uintptr_t)arr_a, (term_t)(uintptr_t)arr_b, arr_n, exact);
        a = xa;
        b = xb;
        goto pair;
    }

map : {
    term_t *p = term_boxed_ptr(a), *q = term_boxed_ptr(b);
    size_t sa = map_size_of(p), sb = map_size_of(q);
    if (sa != sb) {
        j = sa < sb ? -1 : 1;
        goto not_equal;
    }
    if (sa == 0)
        goto pop;
    bool fa = header_subtag(p[0]) == HDR_MAP_FLAT, fb = header_subtag(q[0]) == HDR_MAP_FLAT;
    if (fa && fb) {
        /* Keys are stored in ascending exact order: comparing the key arrays
         * exactly, then the value arrays, is OTP's map order. */
        push_frame(&cx, FR_ARRAY, (term_t)(uintptr_t)(p + 2 + sa), (term_t)(uintptr_t)(q + 2 + sa),
                   sa, exact);
        arr_a = p + 2;
        arr_b = q + 2;
        arr_n = sa;
        exact = true;
        goto array;
    }
    if (fa != fb) {
        /* Equal sizes imply equal representations (hamt.h); never reached
         * for maps built by maps.c.  Stay deterministic. */
        GD_ASSERT(!"flat and hash map of the same size");
        j = fa ? -1 : 1;
        goto not_equal;
    }
    s = push_mapstate(&cx);
    s->was_exact = exact;
    s->cmp_res = 0;
    s->min_key = TERM_NONE;
    heap_map_iter_init(&s->ia, a);
    heap_map_iter_init(&s->ib, b);
    ms_advance_a(s);
    ms_advance_b(s);
    a = s->ka;
    b = s->kb;
    s->op = MOP_P1_KEYS;
    goto nested;
}

    /* Starts the sub-comparison (a, b, exact) of the top map state, which
     * set s->op; its result comes back to map_step. */
nested:
    push_frame(&cx, FR_MAPOP, 0, 0, 0, exact);
    s->rollback = cx.len;
    exact = true;
    if (s->op == MOP_P1_VALS)
        exact = s->was_exact;
    goto pair;

pop:
    if (cx.len == 0) {
        j = 0;
        goto done;
    }
    {
        cmp_frame_t *f = &cx.st[--cx.len];
        exact = f->exact;
        switch (f->kind) {
        case FR_PAIR:
            a = f->x;
            b = f->y;
            goto pair;
        case FR_ARRAY:
            arr_a = (const term_t *)(uintptr_t)f->x;
            arr_b = (const term_t *)(uintptr_t)f->y;
            arr_n = f->n;
            goto array;
        default: /* FR_MAPOP */
            j = 0;
            goto map_step;
        }
    }

not_equal:
    if (cx.nms == 0)
        goto done;
    /* The innermost map comparison takes the result: drop the frames its
     * sub-comparison pushed, and its marker. */
    cx.len = cx.ms[cx.nms - 1].rollback - 1;
    goto map_step;

map_step:
    s = &cx.ms[cx.nms - 1];
    switch (s->op) {
    case MOP_P1_KEYS:
        if (j == 0) {
            if (s->cmp_res != 0) {
                a = s->ka;
                b = s->min_key;
                s->op = MOP_P1_ISMIN;
            } else {
                a = s->va;
                b = s->vb;
                s->op = MOP_P1_VALS;
            }
            goto nested;
        }
        goto phase2_enter;
    case MOP_P1_ISMIN:
        if (j < 0) {
            a = s->va;
            b = s->vb;
            s->op = MOP_P1_VALS;
            goto nested;
        }
        goto phase1_next;
    case MOP_P1_VALS:
        if (j != 0) {
            s->cmp_res = j < 0 ? -1 : 1;
            s->min_key = s->ka;
        }
        goto phase1_next;
    case MOP_P2_KEYS:
        if (j == 0) {
            ms_advance_a(s);
            ms_advance_b(s);
            goto phase2_loop;
        }
        goto phase2_unmatched;
    case MOP_P2_MIN_A:
        if (j < 0) {
            s->min_key = s->ka;
            s->cmp_res = -1;
        }
        ms_advance_a(s);
        goto phase2_loop;
    default: /* MOP_P2_MIN_B */
        if (j < 0) {
            s->min_key = s->kb;
            s->cmp_res = 1;
        }
        ms_advance_b(s);
        goto phase2_loop;
    }

phase1_next:
    ms_advance_a(s);
    ms_advance_b(s);
    if (!s->has_a || !s->has_b) {
        GD_ASSERT(s->has_a == s->has_b);
        goto map_done;
    }
    a = s->ka;
    b = s->kb;
    s->op = MOP_P1_KEYS;
    goto nested;

phase2_enter : {
    /* The current keys differ (j is their exact order): the one earlier in
     * the walk is missing from the other map, and from now on only keys
     * decide.  It is the first candidate. */
    int o = hamt_hash_order(s->ha, s->hb);
    if (o == 0)
        o = j;
    if (o < 0) {
        s->min_key = s->ka;
        s->cmp_res = -1;
        ms_advance_a(s);
    } else {
        s->min_key = s->kb;
        s->cmp_res = 1;
        ms_advance_b(s);
    }
    goto phase2_loop;
}

phase2_unmatched : {
    int o = hamt_hash_order(s->ha, s->hb);
    if (o == 0)
        o = j;
    if (o < 0) {
        a = s->ka;
        s->op = MOP_P2_MIN_A;
    } else {
        a = s->kb;
        s->op = MOP_P2_MIN_B;
    }
    b = s->min_key;
    goto nested;
}

phase2_loop:
    if (s->has_a && s->has_b) {
        a = s->ka;
        b = s->kb;
        s->op = MOP_P2_KEYS;
        goto nested;
    }
    if (s->has_a) {
        a = s->ka;
        b = s->min_key;
        s->op = MOP_P2_MIN_A;
        goto nested;
    }
    if (s->has_b) {
        a = s->kb;
        b = s->min_key;
        s->op = MOP_P2_MIN_B;
        goto nested;
    }
    goto map_done;

map_done:
    j = s->cmp_res;
    exact = s->was_exact;
    cx.nms--;
    if (j != 0)
        goto not_equal;
    goto pop;

done:
    if (cx.st != cx.st_inline)
        free(cx.st);
    if (cx.ms != cx.ms_inline)
        free(cx.ms);
    return j < 0 ? -1 : (j > 0 ? 1 : 0);
}

/*
 * Compares a and b in Erlang's term order (arithmetic number comparison when
 * exact is false, term order when true); returns -1, 0 or 1.  Both terms are
 * borrowed.  Immediates, atoms and floats are settled inline; everything else
 * walks both terms with an explicit stack, O(size of the smaller term), which
 * allocates only for terms that branch more than a few dozen levels deep.
 */
int heap_compare(term_t a, term_t b, bool exact)
{
    if (a == b)
        return 0;
    if (term_is_small(a) && term_is_small(b))
        return sign_i64(term_small_value(a), term_small_value(b));
    if (term_is_atom(a) && term_is_atom(b))
        return cmp_atoms(a, b);
    if (term_is_float(a) && term_is_float(b))
        return cmp_doubles(term_float_value(a), term_float_value(b));
    return compare_slow(a, b, exact);
}

/* ------------------------------------------------------------------------ */
/* Hashing                                                                   */

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

static inline bool is_plain_immediate(term_t t)
{
    return term_is_immediate(t) && !term_is_local_pid(t) && !term_is_local_port(t);
}

typedef struct hash_frame {
    const term_t *p;
    size_t n;
} hash_frame_t;

#define HASH_INLINE_FRAMES 32

static uint64_t hash_slow(term_t t)
{
    hash_frame_t st_inline[HASH_INLINE_FRAMES];
    hash_frame_t *st = st_inline;
    size_t len = 0, cap = HASH_INLINE_FRAMES;
    uint64_t h = HASH_SEED;
    const term_t *arr = NULL;
    size_t arr_n = 0;

#define HASH_PUSH(P, N)                                                                            \
    do {                                                                                           \
        if (GD_UNLIKELY(len == cap))                                                               \
            st = grow_stack(st, st_inline, &cap, sizeof *st, "heap_hash");                         \
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
            if (is_plain_immediate(cdr)) {
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
    if (st != st_inline)
        free(st);
    return fmix64(h);
}

/*
 * Returns the 64-bit hash of t: equal under =:= implies equal hashes, across
 * every representation (see the serialisation notes above).  Atoms hash by
 * their table index, so values are stable within one OS process, not across
 * runs.  O(size of t), no recursion; immediates take a single mixing round.
 */
uint64_t heap_hash(term_t t)
{
    if (is_plain_immediate(t))
        return fmix64(absorb(HASH_SEED, t));
    return hash_slow(t);
}
