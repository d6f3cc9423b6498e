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
 *   name and creation.  A local pid, port or reference is treated as one of
 *   this node's name and creation (heap_node_name); the constructors never
 *   build an external one of this node, so each has one representation.
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
#include <stdlib.h>

#include "hamt.h"
#include "heap.h"
#include "term_internal.h"

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */

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

static int cmp_refs(term_t a, term_t b)
{
    ref_ident_t x, y;
    ref_ident(a, &x);
    ref_ident(b, &y);
    int c = cmp_nodes(x.node, x.creation, y.node, y.creation);
    if (c != 0)
        return c;
    if (x.n != y.n)
        return x.n < y.n ? -1 : 1;
    for (size_t i = x.n; i-- > 0;)
        if (x.w[i] != y.w[i])
            return x.w[i] < y.w[i] ? -1 : 1;
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

/* Pushes a frame; false when the stack cannot grow (memory exhausted). */
static inline bool push_frame(cmp_ctx_t *cx, uint8_t kind, term_t x, term_t y, size_t n, bool exact)
{
    if (GD_UNLIKELY(cx->len == cx->cap)) {
        cmp_frame_t *ns = walk_grow_stack(cx->st, cx->st_inline, &cx->cap, sizeof *cx->st);
        if (ns == NULL)
            return false;
        cx->st = ns;
    }
    cmp_frame_t *f = &cx->st[cx->len++];
    f->x = x;
    f->y = y;
    f->n = n;
    f->kind = kind;
    f->exact = exact;
    return true;
}

/* A new map state on top, or NULL when memory is exhausted. */
static cmp_mapstate_t *push_mapstate(cmp_ctx_t *cx)
{
    if (cx->nms == cx->mscap) {
        cmp_mapstate_t *nm = walk_grow_stack(cx->ms, cx->ms_inline, &cx->mscap, sizeof *cx->ms);
        if (nm == NULL)
            return NULL;
        cx->ms = nm;
    }
    return &cx->ms[cx->nms++];
}

/* The next pair of map A (B) with its key's hash; GD_ENOMEM if hashing the
 * key ran out of memory. */
static inline int ms_advance_a(cmp_mapstate_t *s)
{
    s->has_a = heap_map_next(&s->ia, &s->ka, &s->va);
    return s->has_a ? hamt_key_hash(s->ka, &s->ha) : GD_OK;
}

static inline int ms_advance_b(cmp_mapstate_t *s)
{
    s->has_b = heap_map_next(&s->ib, &s->kb, &s->vb);
    return s->has_b ? hamt_key_hash(s->kb, &s->hb) : GD_OK;
}

/* Both maps one pair on. */
static inline int ms_advance_both(cmp_mapstate_t *s)
{
    int rc = ms_advance_a(s);
    return rc != GD_OK ? rc : ms_advance_b(s);
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

static int compare_slow(term_t a, term_t b, bool exact, int *order)
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
    int rc = GD_OK;

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
                if (ta != tb && !push_frame(&cx, FR_PAIR, ta, tb, 0, exact))
                    goto out_of_memory;
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
        if (!push_frame(&cx, FR_ARRAY, (term_t)(uintptr_t)arr_a, (term_t)(uintptr_t)arr_b, arr_n,
                        exact))
            goto out_of_memory;
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
        if (!push_frame(&cx, FR_ARRAY, (term_t)(uintptr_t)(p + 2 + sa),
                        (term_t)(uintptr_t)(q + 2 + sa), sa, exact))
            goto out_of_memory;
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
    if (s == NULL)
        goto out_of_memory;
    s->was_exact = exact;
    s->cmp_res = 0;
    s->min_key = TERM_NONE;
    heap_map_iter_init(&s->ia, a);
    heap_map_iter_init(&s->ib, b);
    if ((rc = ms_advance_both(s)) != GD_OK)
        goto fail;
    a = s->ka;
    b = s->kb;
    s->op = MOP_P1_KEYS;
    goto nested;
}

    /* Starts the sub-comparison (a, b, exact) of the top map state, which
     * set s->op; its result comes back to map_step. */
nested:
    if (!push_frame(&cx, FR_MAPOP, 0, 0, 0, exact))
        goto out_of_memory;
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
            if ((rc = ms_advance_both(s)) != GD_OK)
                goto fail;
            goto phase2_loop;
        }
        goto phase2_unmatched;
    case MOP_P2_MIN_A:
        if (j < 0) {
            s->min_key = s->ka;
            s->cmp_res = -1;
        }
        if ((rc = ms_advance_a(s)) != GD_OK)
            goto fail;
        goto phase2_loop;
    default: /* MOP_P2_MIN_B */
        if (j < 0) {
            s->min_key = s->kb;
            s->cmp_res = 1;
        }
        if ((rc = ms_advance_b(s)) != GD_OK)
            goto fail;
        goto phase2_loop;
    }

phase1_next:
    if ((rc = ms_advance_both(s)) != GD_OK)
        goto fail;
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
        rc = ms_advance_a(s);
    } else {
        s->min_key = s->kb;
        s->cmp_res = 1;
        rc = ms_advance_b(s);
    }
    if (rc != GD_OK)
        goto fail;
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

out_of_memory:
    rc = GD_ENOMEM;
    goto fail;

done:
    *order = j < 0 ? -1 : (j > 0 ? 1 : 0);
fail:
    if (cx.st != cx.st_inline)
        free(cx.st);
    if (cx.ms != cx.ms_inline)
        free(cx.ms);
    return rc;
}

/*
 * Compares a and b in Erlang's term order (arithmetic number comparison when
 * exact is false, term order when true) and sets *order to -1, 0 or 1.  Both
 * terms are borrowed.  Immediates, atoms and floats are settled inline;
 * everything else walks both terms with an explicit stack, O(size of the
 * smaller term), which mallocs only for terms that branch more than a few
 * dozen levels deep.  Errors: GD_ENOMEM when that stack (or the hash of a
 * map key met on the way) cannot grow; *order is not set then.
 */
int heap_compare_checked(term_t a, term_t b, bool exact, int *order)
{
    if (a == b) {
        *order = 0;
        return GD_OK;
    }
    if (term_is_small(a) && term_is_small(b)) {
        *order = sign_i64(term_small_value(a), term_small_value(b));
        return GD_OK;
    }
    if (term_is_atom(a) && term_is_atom(b)) {
        *order = cmp_atoms(a, b);
        return GD_OK;
    }
    if (term_is_float(a) && term_is_float(b)) {
        *order = cmp_doubles(term_float_value(a), term_float_value(b));
        return GD_OK;
    }
    return compare_slow(a, b, exact, order);
}
