/*
 * otp_map_order.c — the pair order of OTP's term_to_binary for maps of more
 * than 32 keys (OTP "hashmaps").
 *
 * OTP stores such a map as a HAMT keyed by its internal term hash
 * (erts/emulator/beam/utils.c make_internal_hash, salt 0) and external.c's
 * encoder walks the HAMT with a stack: it pushes a node's children in slot
 * order and pops them, so children come out from slot 15 down to slot 0.
 * Slot i of a node at depth d holds the keys whose hash has nibble d equal
 * to i (the lowest nibble at the root), so the encoded order is the keys in
 * descending order of their hash with its eight nibbles reversed.  Because
 * this depends only on the hashes, not on how the map was built, a decode
 * followed by an encode reproduces OTP's bytes exactly when we compute the
 * same hashes.
 *
 * The hash, as OTP 25 (erts 13) computes it on a 64-bit little-endian
 * emulator, verified against a live OTP 25.2.3 (tests/interop): Bob
 * Jenkins' 96-bit mix folded over the term in pre-order, starting from the
 * salt 3432918353; immediates (small integers, atoms, []) by their 64-bit
 * tagged word; floats by their two 32-bit halves (-0.0 as 0.0); bignums by
 * their 64-bit digits; binaries with Jenkins' lookup2 block hash; lists with
 * four bytes per step for byte runs; tuples by arity then elements; maps by
 * size then their pairs in their own storage order.
 *
 * What only the emitting VM knows, and is therefore approximated here
 * (documented in etf.h): an atom's tagged word holds its index in that VM's
 * atom table (we use girder's index); external pids, ports, references and
 * export funs mix the address of a VM-internal structure (we use the node
 * atom and numbers instead); keys whose full 32-bit hashes collide are
 * rehashed by OTP with a rule not reproduced here (we order them by term
 * order).  Keys made of integers, floats, binaries, bitstrings, lists,
 * tuples and maps of those come out exactly as OTP 25 emits them.
 */
#include "internal.h"

#define OTP_HCONST 0x9e3779b9u /* the golden ratio, as in erts */
/* erts' HCONST_n is HCONST * n modulo 2^32. */
#define OTP_HC(n) ((uint32_t)(OTP_HCONST * (uint32_t)(n)))
#define OTP_INTERNAL_HASH_SALT 3432918353u

/* Tagged 64-bit words of OTP's immediates (erl_term.h). */
#define OTP_TAG_SMALL 0xFu
#define OTP_TAG_ATOM 0x0Bu
#define OTP_NIL UINT64_C(0x3B) /* probed on OTP 25: the bare immediate-2 tag */
#define OTP_SMALL_MIN (-(INT64_C(1) << 59))
#define OTP_SMALL_MAX ((INT64_C(1) << 59) - 1)

/* Nesting of >32-key maps inside keys of >32-key maps that is hashed as OTP
 * does (each level needs its own order, computed by a nested call). */
#define OTP_KEY_MAP_NEST_MAX 4

/* Maps of up to this many keys are ordered without malloc. */
#define ORDER_STACK_KEYS 64

#define OTP_MIX(a, b, c)                                                                           \
    do {                                                                                           \
        a -= b;                                                                                    \
        a -= c;                                                                                    \
        a ^= (c >> 13);                                                                            \
        b -= c;                                                                                    \
        b -= a;                                                                                    \
        b ^= (a << 8);                                                                             \
        c -= a;                                                                                    \
        c -= b;                                                                                    \
        c ^= (b >> 13);                                                                            \
        a -= b;                                                                                    \
        a -= c;                                                                                    \
        a ^= (c >> 12);                                                                            \
        b -= c;                                                                                    \
        b -= a;                                                                                    \
        b ^= (a << 16);                                                                            \
        c -= a;                                                                                    \
        c -= b;                                                                                    \
        c ^= (b >> 5);                                                                             \
        a -= b;                                                                                    \
        a -= c;                                                                                    \
        a ^= (c >> 3);                                                                             \
        b -= c;                                                                                    \
        b -= a;                                                                                    \
        b ^= (a << 10);                                                                            \
        c -= a;                                                                                    \
        c -= b;                                                                                    \
        c ^= (b >> 15);                                                                            \
    } while (0)

/* Four 32-bit lanes (GCC/clang vector extension; SSE2/NEON width). */
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline uint32_t mix2(uint32_t hash, uint32_t x, uint32_t y, uint32_t k)
{
    uint32_t a = k + x, b = k + y;
    OTP_MIX(a, b, hash);
    return hash;
}

static inline uint32_t mix_word(uint32_t hash, uint64_t w, uint32_t k)
{
    return mix2(hash, (uint32_t)w, (uint32_t)(w >> 32), k);
}

/* erts' CONST_HASH: a light mix of a type marker. */
static inline uint32_t const_hash(uint32_t hash, uint32_t k)
{
    hash ^= k;
    return (hash << 17) ^ (hash >> 15);
}

/* Jenkins' lookup2 over k[0..len), as erts' block_hash. */
static uint32_t block_hash(const uint8_t *k, size_t length, uint32_t initval)
{
    uint32_t a = OTP_HCONST, b = OTP_HCONST, c = initval;
    size_t len = length;
    while (len >= 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        OTP_MIX(a, b, c);
        k += 12;
        len -= 12;
    }
    c += (uint32_t)length;
    switch (len) { /* every case falls through */
    case 11:
        c += (uint32_t)k[10] << 24;
        /* fall through */
    case 10:
        c += (uint32_t)k[9] << 16;
        /* fall through */
    case 9:
        c += (uint32_t)k[8] << 8;
        /* fall through */
    case 8:
        b += (uint32_t)k[7] << 24;
        /* fall through */
    case 7:
        b += (uint32_t)k[6] << 16;
        /* fall through */
    case 6:
        b += (uint32_t)k[5] << 8;
        /* fall through */
    case 5:
        b += k[4];
        /* fall through */
    case 4:
        a += (uint32_t)k[3] << 24;
        /* fall through */
    case 3:
        a += (uint32_t)k[2] << 16;
        /* fall through */
    case 2:
        a += (uint32_t)k[1] << 8;
        /* fall through */
    case 1:
        a += k[0];
        /* fall through */
    default:
        break;
    }
    OTP_MIX(a, b, c);
    return c;
}

/* An atom's tagged word in an OTP VM whose atom table numbers atoms as
 * girder's does. */
static inline uint64_t otp_atom_word(term_t atom)
{
    return ((uint64_t)term_atom_index(atom) << 6) | OTP_TAG_ATOM;
}

/* The work stack of one hash: terms still to fold in, and markers. */
#define HS_INLINE 64
#define HS_CDR ((term_t)TERM_MOVED) /* marker: fold in erts' HASH_CDR constant */

typedef struct hstack {
    term_t *w;
    size_t n, cap;
    term_t inline_w[HS_INLINE];
} hstack_t;

static int hs_push(hstack_t *s, term_t t)
{
    if (GD_UNLIKELY(s->n == s->cap)) {
        size_t cap = s->cap * 2;
        term_t *w = malloc(cap * sizeof *w);
        if (w == NULL)
            return ETF_ENOMEM;
        memcpy(w, s->w, s->n * sizeof *w);
        if (s->w != s->inline_w)
            free(s->w);
        s->w = w;
        s->cap = cap;
    }
    s->w[s->n++] = t;
    return GD_OK;
}

/* The emitting node's identity: girder's local pids and ports hash as the
 * external ones they decode back to, so that re-encoding is stable. */
typedef struct order_ctx {
    term_t local_node;
    uint32_t local_creation;
} order_ctx_t;

static int map_order(const order_ctx_t *cx, term_t map, term_t *keys, term_t *vals, unsigned nest);

/* A pid, port or reference.  OTP mixes the address of its node entry; here
 * the node atom and creation stand for it, then the numbers as OTP does. */
static uint32_t ident_hash(uint32_t hash, enum heap_subtag st, const heap_ident_t *id)
{
    uint32_t k = st == HDR_EXT_PID ? OTP_HC(5) : st == HDR_EXT_PORT ? OTP_HC(6) : OTP_HC(7);
    hash = mix2(hash, (uint32_t)otp_atom_word(id->node), id->creation, k);
    if (st == HDR_EXT_PID)
        return mix2(hash, id->words[0], id->words[1], k);
    if (st == HDR_EXT_PORT)
        return mix_word(hash, id->port_id, k);
    for (uint32_t i = 0; i < id->nwords; i += 2)
        hash = mix2(hash, id->words[i], i + 1 < id->nwords ? id->words[i + 1] : 0, OTP_HC(8));
    return hash;
}

/* Folds a bitstring into hash as erts does for heap, refc and sub-binaries. */
static int hash_bits(term_t t, uint32_t *hashp)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    size_t sz = v.bit_size / 8;
    unsigned bits = (unsigned)(v.bit_size % 8);
    uint32_t con = OTP_HC(13) + *hashp;
    if (sz == 0 && bits == 0) {
        *hashp = con;
        return GD_OK;
    }
    const uint8_t *bytes = v.bytes;
    uint8_t *copy = NULL;
    if (v.bit_offset != 0) {
        /* OTP copies an unaligned sub-binary to aligned bytes first. */
        copy = malloc(sz + 1);
        if (copy == NULL)
            return ETF_ENOMEM;
        size_t nbytes = sz + (bits != 0);
        for (size_t i = 0; i < nbytes; i++) {
            unsigned hi = (unsigned)v.bytes[i] << v.bit_offset;
            unsigned lo = (i + 1 < (v.bit_offset + v.bit_size + 7) / 8)
                              ? (unsigned)v.bytes[i + 1] >> (8 - v.bit_offset)
                              : 0;
            copy[i] = (uint8_t)(hi | lo);
        }
        bytes = copy;
    }
    uint32_t hash = block_hash(bytes, sz, con);
    if (bits > 0)
        hash = mix2(hash, bits, (uint32_t)(bytes[sz] >> (8 - bits)), OTP_HC(15));
    free(copy);
    *hashp = hash;
    return GD_OK;
}

/* Pushes a >32-key map's pairs so that they pop in OTP's order (key, then
 * value), or in girder's order past OTP_KEY_MAP_NEST_MAX nested levels. */
static int push_hash_map(const order_ctx_t *cx, hstack_t *s, term_t map, unsigned nest)
{
    size_t n = heap_map_size(map);
    if (n > SIZE_MAX / (2 * sizeof(term_t)))
        return ETF_ENOMEM;
    term_t *kv = malloc(2 * n * sizeof *kv);
    if (kv == NULL)
        return ETF_ENOMEM;
    int rc;
    if (nest < OTP_KEY_MAP_NEST_MAX) {
        rc = map_order(cx, map, kv, kv + n, nest + 1);
    } else {
        heap_map_pairs(map, kv, kv + n);
        rc = GD_OK;
    }
    for (size_t i = n; rc == GD_OK && i-- > 0;) {
        rc = hs_push(s, kv[n + i]);
        if (rc == GD_OK)
            rc = hs_push(s, kv[i]);
    }
    free(kv);
    return rc;
}

/*
 * OTP 25's make_internal_hash(t, 0) (see the file comment for what is
 * approximated).  No recursion on t's nesting: an explicit stack, malloc'ed
 * past HS_INLINE entries.  O(size of t).
 */
static int otp_hash(const order_ctx_t *cx, term_t t, uint32_t *out, unsigned nest)
{
    uint32_t hash = OTP_INTERNAL_HASH_SALT;
    hstack_t s;
    s.w = s.inline_w;
    s.n = 0;
    s.cap = HS_INLINE;
    int rc = GD_OK;

    for (;;) {
        switch (term_primary(t)) {
        case TAG_PRIMARY_LIST: {
            /* Runs of bytes go four to a step (erts' string optimisation). */
            uint32_t sh = 0, c = 0;
            const term_t *cell = term_list_ptr(t);
            for (;;) {
                term_t car = cell[0];
                if (!term_is_small(car) || term_small_value(car) < 0 || term_small_value(car) > 255)
                    break;
                sh = (sh << 8) + (uint32_t)term_small_value(car);
                if (c == 3) {
                    hash = mix2(hash, sh, 0, OTP_HC(4));
                    c = sh = 0;
                } else {
                    c++;
                }
                t = cell[1];
                if (!term_is_list(t))
                    break;
                cell = term_list_ptr(t);
            }
            if (c > 0)
                hash = mix2(hash, sh, c, OTP_HC(22));
            if (term_is_list(t)) {
                term_t tail = cell[1];
                hash = const_hash(hash, OTP_HC(17));
                rc = hs_push(&s, tail);
                if (rc == GD_OK && !term_is_list(tail))
                    rc = hs_push(&s, HS_CDR);
                if (rc != GD_OK)
                    goto out;
                t = cell[0];
            }
            continue; /* t: the car, or the improper tail after a byte run */
        }
        case TAG_PRIMARY_BOXED: {
            const term_t *p = term_boxed_ptr(t);
            switch (header_subtag(p[0])) {
            case HDR_TUPLE: {
                size_t arity = header_arity(p[0]);
                hash = mix2(hash, (uint32_t)arity, 0, OTP_HC(9));
                if (arity == 0)
                    break;
                for (size_t i = arity; i > 1; i--) {
                    rc = hs_push(&s, p[i]);
                    if (rc != GD_OK)
                        goto out;
                }
                t = p[1];
                continue;
            }
            case HDR_POS_BIG:
            case HDR_NEG_BIG: {
                size_t nd = term_big_ndigits(t);
                const uint64_t *d = term_big_digits(t);
                uint32_t con = term_big_negative(t) ? OTP_HC(10) : OTP_HC(11);
                for (size_t i = 0; i < nd; i++)
                    hash = mix_word(hash, d[i], con);
                break;
            }
            case HDR_FLOAT: {
                double f = term_float_value(t);
                if (f == 0.0)
                    f = 0.0; /* -0.0 hashes as 0.0 */
                uint64_t bits;
                memcpy(&bits, &f, sizeof bits);
                hash = mix_word(hash, bits, OTP_HC(12));
                break;
            }
            case HDR_HEAP_BIN:
            case HDR_REFC_BIN:
            case HDR_SUB_BIN:
                rc = hash_bits(t, &hash);
                if (rc != GD_OK)
                    goto out;
                break;
            case HDR_MAP_FLAT:
            case HDR_MAP_HASH: {
                size_t n = heap_map_size(t);
                hash = mix2(hash, (uint32_t)n, 0, OTP_HC(16));
                if (n == 0)
                    break;
                if (header_subtag(p[0]) == HDR_MAP_FLAT) {
                    /* keys p[2..2+n), values after: pop k0, v0, k1, ... */
                    for (size_t i = n; i-- > 0;) {
                        rc = hs_push(&s, p[2 + n + i]);
                        if (rc == GD_OK)
                            rc = hs_push(&s, p[2 + i]);
                        if (rc != GD_OK)
                            goto out;
                    }
                } else {
                    rc = push_hash_map(cx, &s, t, nest);
                    if (rc != GD_OK)
                        goto out;
                }
                break;
            }
            case HDR_FUN: {
                heap_fun_info_t fi;
                heap_fun_info(t, &fi);
                hash = mix2(hash, fi.num_free, (uint32_t)otp_atom_word(fi.module), OTP_HC(20));
                uint32_t old_uniq =
                    term_is_small(fi.old_uniq) ? (uint32_t)term_small_value(fi.old_uniq) : 0;
                hash = mix2(hash, fi.index, old_uniq, OTP_HC(21));
                const term_t *env = term_fun_free(t);
                if (fi.num_free == 0)
                    break;
                for (size_t i = fi.num_free; i > 1; i--) {
                    rc = hs_push(&s, env[i - 1]);
                    if (rc != GD_OK)
                        goto out;
                }
                t = env[0];
                continue;
            }
            case HDR_EXPORT:
                /* OTP: the address of the export entry; here its parts. */
                hash = mix2(hash, (uint32_t)otp_atom_word(p[1]), (uint32_t)otp_atom_word(p[2]),
                            OTP_HC(14));
                hash = mix_word(hash, (uint64_t)term_small_value(p[3]), OTP_HC(14));
                break;
            case HDR_EXT_PID:
            case HDR_EXT_PORT:
            case HDR_REF:
            case HDR_LOCAL_REF: {
                /* A local ref hashes as the external one it encodes as. */
                heap_ident_t id;
                heap_ident(t, &id);
                enum heap_subtag st = header_subtag(p[0]);
                hash = ident_hash(hash, st == HDR_LOCAL_REF ? HDR_REF : st, &id);
                break;
            }
            default:
                rc = ETF_EUNENCODABLE;
                goto out;
            }
            break;
        }
        default: {
            /* Immediates: OTP hashes its tagged word. */
            uint64_t w;
            if (term_is_small(t)) {
                w = ((uint64_t)term_small_value(t) << 4) | OTP_TAG_SMALL;
            } else if (term_is_atom(t)) {
                w = otp_atom_word(t);
            } else if (term_is_nil(t)) {
                w = OTP_NIL;
            } else {
                /* A local pid or port: as the external one it decodes back
                 * to (OTP hashes its own VM-specific immediate word). */
                heap_ident_t id;
                memset(&id, 0, sizeof id);
                id.node = cx->local_node;
                id.creation = cx->local_creation;
                if (term_is_local_pid(t)) {
                    id.words[0] = term_local_pid_id(t);
                    id.words[1] = term_local_pid_serial(t);
                    hash = ident_hash(hash, HDR_EXT_PID, &id);
                } else {
                    id.port_id = term_local_port_number(t);
                    hash = ident_hash(hash, HDR_EXT_PORT, &id);
                }
                break;
            }
            hash = mix_word(hash, w, OTP_HCONST);
            break;
        }
        }
        /* pop_next */
        for (;;) {
            if (s.n == 0)
                goto out;
            t = s.w[--s.n];
            if (t != HS_CDR)
                break;
            hash = const_hash(hash, OTP_HC(18));
        }
    }
out:
    if (s.w != s.inline_w)
        free(s.w);
    if (rc == GD_OK)
        *out = hash;
    return rc;
}

/* A key's position among its map's keys in OTP's encoding: the hash with its
 * nibbles reversed, complemented so that ascending order is OTP's order. */
static inline uint32_t order_key(uint32_t h)
{
    h = ((h & 0x0F0F0F0Fu) << 4) | ((h >> 4) & 0x0F0F0F0Fu);
    h = ((h & 0x00FF00FFu) << 8) | ((h >> 8) & 0x00FF00FFu);
    h = (h << 16) | (h >> 16);
    return ~h;
}

/* Buckets for n keys: about four keys per bucket, 2^3 .. 2^16 of them. */
static unsigned bucket_bits(size_t n)
{
    unsigned bits = 3;
    while (bits < 16 && ((size_t)4 << bits) < n)
        bits++;
    return bits;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/*
 * Sorts a[0..n) (distinct values) into out[0..n): scattered into 2^bits
 * buckets by their top bits (count[] has 2^bits + 1 entries), then each
 * bucket sorted, by insertion when small and by qsort when keys crowd into
 * one bucket (crafted hashes cannot make it quadratic).  O(n) expected.
 */
static void bucket_sort(const uint64_t *a, uint64_t *out, size_t n, size_t *count, unsigned bits)
{
    size_t nb = (size_t)1 << bits;
    unsigned shift = 64 - bits;
    memset(count, 0, (nb + 1) * sizeof *count);
    for (size_t i = 0; i < n; i++)
        count[(a[i] >> shift) + 1]++;
    for (size_t b = 1; b <= nb; b++)
        count[b] += count[b - 1];
    for (size_t i = 0; i < n; i++)
        out[count[a[i] >> shift]++] = a[i];
    /* count[b] is now the end of bucket b, and the start of bucket b + 1. */
    size_t start = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t end = count[b];
        if (end - start > 16) {
            qsort(out + start, end - start, sizeof *out, u64_cmp);
        } else {
            for (size_t x = start + 1; x < end; x++) {
                uint64_t v = out[x];
                size_t y = x;
                while (y > start && out[y - 1] > v) {
                    out[y] = out[y - 1];
                    y--;
                }
                out[y] = v;
            }
        }
        start = end;
    }
}

typedef struct pair {
    term_t k, v;
} pair_t;

/* Set when a key comparison in pair_cmp ran out of memory (qsort has no
 * way to stop; the caller checks it after the sort). */
static _Thread_local int pair_cmp_err;
static int pair_cmp(const void *a, const void *b)
{
    int order;
    if (heap_compare_checked(((const pair_t *)a)->k, ((const pair_t *)b)->k, true, &order) !=
        GD_OK) {
        pair_cmp_err = ETF_ENOMEM;
        return 0;
    }
    return order;
}

static int map_order(const order_ctx_t *cx, term_t map, term_t *keys, term_t *vals, unsigned nest)
{
    size_t n = heap_map_size(map);
    if (n <= HEAP_MAP_FLAT_MAX) {
        /* OTP keeps maps of up to 32 keys flat, sorted by key. */
        return heap_map_sorted(map, keys, vals) == GD_OK ? GD_OK : ETF_ENOMEM;
    }
    unsigned bits = bucket_bits(n);
    size_t nb = (size_t)1 << bits;
    if (n > UINT32_MAX || n > (SIZE_MAX / sizeof(uint64_t) - nb - 1) / 4)
        return ETF_ENOMEM;
    /* ord[n], sorted[n], kv[2n], count[nb + 1]: on the stack for small maps. */
    uint64_t stack_words[4 * ORDER_STACK_KEYS + (ORDER_STACK_KEYS * 2) + 1];
    size_t words = 4 * n + nb + 1;
    uint64_t *mem = words <= sizeof stack_words / sizeof *stack_words ? stack_words
                                                                      : malloc(words * sizeof *mem);
    if (mem == NULL)
        return ETF_ENOMEM;
    uint64_t *ord = mem, *sorted = mem + n;
    term_t *kv = (term_t *)(mem + 2 * n);
    size_t *count = (size_t *)(mem + 4 * n);
    int rc = GD_OK;
    heap_map_pairs(map, kv, kv + n);
    /* Pass 1: the tagged words of immediate keys go to ord[] (hashed four at
     * a time below); other keys are hashed now, sorted[i] marking them. */
    for (size_t i = 0; i < n; i++) {
        term_t k = kv[i];
        sorted[i] = 0;
        if (term_is_small(k)) {
            ord[i] = ((uint64_t)term_small_value(k) << 4) | OTP_TAG_SMALL;
        } else if (term_is_atom(k)) {
            ord[i] = otp_atom_word(k);
        } else {
            uint32_t h;
            rc = otp_hash(cx, k, &h, nest);
            if (rc != GD_OK)
                goto out;
            ord[i] = h;
            sorted[i] = 1;
        }
    }
    /* Pass 2: hash the words, four lanes per step (the mix is adds, xors and
     * shifts: plain SIMD), and make the sort keys. */
    size_t q = 0;
    for (; q + 4 <= n; q += 4) {
        v4u a, b,
            c = {OTP_INTERNAL_HASH_SALT, OTP_INTERNAL_HASH_SALT, OTP_INTERNAL_HASH_SALT,
                 OTP_INTERNAL_HASH_SALT};
        for (int l = 0; l < 4; l++) {
            a[l] = OTP_HCONST + (uint32_t)ord[q + l];
            b[l] = OTP_HCONST + (uint32_t)(ord[q + l] >> 32);
        }
        OTP_MIX(a, b, c);
        for (int l = 0; l < 4; l++) {
            uint32_t h = sorted[q + l] ? (uint32_t)ord[q + l] : c[l];
            ord[q + l] = ((uint64_t)order_key(h) << 32) | (q + l);
        }
    }
    for (; q < n; q++) {
        uint32_t h =
            sorted[q] ? (uint32_t)ord[q] : mix_word(OTP_INTERNAL_HASH_SALT, ord[q], OTP_HCONST);
        ord[q] = ((uint64_t)order_key(h) << 32) | q;
    }
    bucket_sort(ord, sorted, n, count, bits);
    ord = sorted;
    bool ties = false;
    for (size_t i = 0; i < n; i++) {
        size_t j = (uint32_t)ord[i];
        keys[i] = kv[j];
        vals[i] = kv[n + j];
        ties |= i > 0 && (ord[i] >> 32) == (ord[i - 1] >> 32);
    }
    /* Keys whose 32-bit hashes are equal: term order (see the file comment). */
    pair_t *pairs = (pair_t *)kv; /* kv is free again: n pairs fit in its 2n words */
    for (size_t i = 0; ties && i + 1 < n;) {
        size_t j = i + 1;
        while (j < n && (ord[j] >> 32) == (ord[i] >> 32))
            j++;
        if (j - i > 1) {
            for (size_t a = i; a < j; a++) {
                pairs[a - i].k = keys[a];
                pairs[a - i].v = vals[a];
            }
            pair_cmp_err = GD_OK;
            qsort(pairs, j - i, sizeof *pairs, pair_cmp);
            if (pair_cmp_err != GD_OK) {
                rc = pair_cmp_err;
                break;
            }
            for (size_t a = i; a < j; a++) {
                keys[a] = pairs[a - i].k;
                vals[a] = pairs[a - i].v;
            }
        }
        i = j;
    }
out:
    if (mem != stack_words)
        free(mem);
    return rc;
}

/* Writes map's pairs to keys[]/vals[] (heap_map_size(map) each, owned by the
 * caller) in the order OTP 25's term_to_binary emits them, local pids and
 * ports standing for local_node/local_creation.  Errors: ETF_ENOMEM,
 * ETF_EUNENCODABLE (a key that is not a term); nothing to free.  Expected
 * O(n) for n keys plus the size of the keys (hashed once each), O(n log n)
 * at worst; temporary arrays of about 4n words (on the stack up to 64 keys). */
int etf_otp_map_order(term_t map, term_t *keys, term_t *vals, term_t local_node,
                      uint32_t local_creation)
{
    order_ctx_t cx = {local_node, local_creation};
    return map_order(&cx, map, keys, vals, 0);
}

/* OTP 25's internal hash of t (make_internal_hash(t, 0)), local pids and
 * ports as 'nonode@nohost' with creation 0.  For tests. */
int etf_otp_internal_hash(term_t t, uint32_t *hash)
{
    order_ctx_t cx = {ATOM_NONODE, 0};
    return otp_hash(&cx, t, hash, 0);
}
