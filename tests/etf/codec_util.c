/*
 * codec_util.c — helpers for the ETF codec suites (see codec_util.h).
 */
#include "codec_util.h"

#include <math.h>
#include <stdlib.h>

void cu_dump(const char *label, const uint8_t *b, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): [", label, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%u", i ? "," : "", b[i]);
    fprintf(stderr, "]\n");
}

int cu_decode(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts, term_t *t,
              size_t *used, etf_error_t *err)
{
    return etf_decode(h, buf, len, opts, t, used, err);
}

bool cu_encodes_to(term_t t, const etf_encode_opts_t *opts, const uint8_t *expect, size_t n)
{
    etf_buf_t b = {0};
    int rc = etf_encode(t, opts, &b);
    bool ok = rc == GD_OK && b.len == n && memcmp(b.data, expect, n) == 0;
    if (!ok) {
        fprintf(stderr, "\nencode rc=%d\n", rc);
        cu_dump("  expected", expect, n);
        cu_dump("  got     ", b.data, b.len);
    }
    /* The size function must agree with the writer byte for byte. */
    size_t size = 0;
    if (rc == GD_OK && (etf_encoded_size(t, opts, &size) != GD_OK ||
                        (b.data[1] != ETF_COMPRESSED && size != b.len - 1))) {
        fprintf(stderr, "\nencoded_size %zu != body %zu\n", size, b.len - 1);
        ok = false;
    }
    etf_buf_free(&b);
    return ok;
}

bool cu_decode_fails(const uint8_t *buf, size_t len, const etf_decode_opts_t *opts, int code,
                     size_t offset)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return false;
    size_t live = heap_binary_live_bytes();
    term_t t = TERM_NONE;
    etf_error_t err = {0, 0};
    int rc = etf_decode(&h, buf, len, opts, &t, NULL, &err);
    bool ok = rc == code && err.code == code && err.offset == offset;
    if (!ok) {
        fprintf(stderr, "\nexpected error %d at %zu, got rc=%d err=%d at %zu\n", code, offset, rc,
                err.code, err.offset);
        cu_dump("  input", buf, len);
    }
    /* Nothing a failed decode built may outlive a collection with no
     * roots: off-heap binaries it made are garbage on h, not leaked. */
    if (heap_gc(&h, 0, NULL, 0) != GD_OK || heap_binary_live_bytes() != live) {
        fprintf(stderr,
                "\noff-heap bytes live after a failed decode and a collection: %zu, "
                "were %zu\n",
                heap_binary_live_bytes(), live);
        ok = false;
    }
    heap_destroy(&h);
    return ok;
}

bool cu_roundtrip_bytes(const uint8_t *buf, size_t len)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return false;
    term_t t;
    size_t used = 0;
    etf_error_t err = {0, 0};
    int rc = etf_decode(&h, buf, len, NULL, &t, &used, &err);
    bool ok = rc == GD_OK && used == len;
    if (!ok) {
        fprintf(stderr, "\ndecode rc=%d at %zu used=%zu\n", rc, err.offset, used);
        cu_dump("  input", buf, len);
    } else {
        ok = cu_encodes_to(t, NULL, buf, len);
    }
    heap_destroy(&h);
    return ok;
}

heap_t cu_heap;

void cu_setup(void)
{
    CU_ASSERT_FATAL(heap_init(&cu_heap, 0) == GD_OK);
}
void cu_teardown(void)
{
    heap_destroy(&cu_heap);
}

term_t cu_int64(int64_t v)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_int64(&cu_heap, v, &t) == GD_OK);
    return t;
}

term_t cu_tuple(size_t n, const term_t *items)
{
    term_t *el, t;
    CU_ASSERT_FATAL(heap_make_tuple(&cu_heap, n, &el, &t) == GD_OK);
    if (n > 0)
        memcpy(el, items, n * sizeof *el);
    return t;
}

term_t cu_list(size_t n, const term_t *items, term_t tail)
{
    for (size_t i = n; i-- > 0;)
        CU_ASSERT_FATAL(heap_cons(&cu_heap, items[i], tail, &tail) == GD_OK);
    return tail;
}

term_t cu_binary(const void *p, size_t n)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_binary(&cu_heap, p, n, &t) == GD_OK);
    return t;
}

static const char *const atom_pool[] = {
    "a",
    "ok",
    "error",
    "",
    "nonode@nohost",
    "node1@host",
    "\xc3\xb6",         /* ö: Latin-1 */
    "\xce\xb1\xce\xb2", /* αβ: not Latin-1 */
    "with space",
    "Caps",
    "m",
    "f",
};
#define ATOM_POOL_N (sizeof atom_pool / sizeof atom_pool[0])

static term_t gen_atom(uint64_t *seed)
{
    if (termgen_below(seed, 16) == 0) {
        /* Long atoms: 255 characters, Latin-1 or not (UTF-8 > 255 bytes). */
        char text[4 * HEAP_ATOM_MAX_CHARS];
        size_t n = 0;
        bool wide = termgen_below(seed, 2);
        for (int i = 0; i < HEAP_ATOM_MAX_CHARS; i++) {
            if (wide) {
                text[n++] = (char)0xCE;
                text[n++] = (char)0xB1;
            } else {
                text[n++] = (char)('a' + i % 26);
            }
        }
        term_t a;
        return heap_atom_put(text, n, &a) == GD_OK ? a : TERM_NONE;
    }
    return heap_atom(atom_pool[termgen_below(seed, ATOM_POOL_N)]);
}

static term_t gen_node(uint64_t *seed)
{
    static const char *const nodes[] = {"nonode@nohost", "node1@host", "n\xc3\xb6@h"};
    return heap_atom(nodes[termgen_below(seed, 3)]);
}

static term_t gen_integer(heap_t *h, uint64_t *seed)
{
    term_t t;
    switch (termgen_below(seed, 7)) {
    case 0:
        return term_make_small((int64_t)termgen_below(seed, 256));
    case 1:
        return term_make_small((int64_t)termgen_below(seed, 2001) - 1000);
    case 2: { /* around the INTEGER_EXT and small boundaries */
        static const int64_t edges[] = {INT32_MAX,
                                        INT32_MIN,
                                        (int64_t)INT32_MAX + 1,
                                        (int64_t)INT32_MIN - 1,
                                        SMALL_MAX,
                                        SMALL_MIN,
                                        256,
                                        -256};
        int64_t v = edges[termgen_below(seed, sizeof edges / sizeof edges[0])];
        return heap_make_int64(h, v, &t) == GD_OK ? t : TERM_NONE;
    }
    case 3: {
        int64_t v = (int64_t)termgen_next(seed);
        return heap_make_int64(h, v, &t) == GD_OK ? t : TERM_NONE;
    }
    case 4: {
        uint64_t v = termgen_next(seed) | (uint64_t)1 << 63;
        return heap_make_uint64(h, v, &t) == GD_OK ? t : TERM_NONE;
    }
    default: { /* bignums up to 40 digits: SMALL_BIG and LARGE_BIG */
        uint64_t d[40];
        size_t n = 1 + termgen_below(seed, termgen_below(seed, 4) == 0 ? 40 : 4);
        for (size_t i = 0; i < n; i++)
            d[i] = termgen_below(seed, 3) == 0 ? termgen_below(seed, 3) : termgen_next(seed);
        return heap_make_integer_digits(h, termgen_below(seed, 2), d, n, &t) == GD_OK ? t
                                                                                      : TERM_NONE;
    }
    }
}

static term_t gen_float(heap_t *h, uint64_t *seed)
{
    static const double special[] = {0.0, -0.0, 1.5, -1.0, 1e300, -1e-300, 5e-324, 0.1};
    return termgen_float(h, seed, special, sizeof special / sizeof special[0]);
}

static term_t gen_bits(heap_t *h, uint64_t *seed)
{
    static const size_t sizes[] = {0, 1, 3, 8, 64, 65, 200};
    size_t nbytes = sizes[termgen_below(seed, sizeof sizes / sizeof sizes[0])];
    size_t bits = nbytes * 8;
    if (nbytes > 0 && termgen_below(seed, 3) == 0)
        bits -= 1 + termgen_below(seed, 7);
    /* Sometimes a sub-binary at an odd bit offset of a larger binary. */
    size_t off = termgen_below(seed, 3) == 0 ? termgen_below(seed, 13) : 0;
    uint8_t *data;
    term_t t;
    if (heap_make_bitstring_uninit(h, bits + off + 5, &data, &t) != GD_OK)
        return TERM_NONE;
    size_t len = (bits + off + 5 + 7) / 8;
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)termgen_next(seed);
    unsigned tail = (unsigned)((bits + off + 5) % 8);
    if (tail)
        data[len - 1] &= (uint8_t)(0xFF00u >> tail);
    term_t sub;
    return heap_make_sub_binary(h, t, off, bits, &sub) == GD_OK ? sub : TERM_NONE;
}

static term_t gen_leaf(heap_t *h, uint64_t *seed)
{
    term_t t;
    uint32_t w[HEAP_REF_MAX_WORDS];
    switch (termgen_below(seed, 12)) {
    case 0:
    case 1:
        return gen_integer(h, seed);
    case 2:
        return gen_float(h, seed);
    case 3:
    case 4:
        return gen_atom(seed);
    case 5: {
        size_t n = termgen_below(seed, HEAP_REF_MAX_WORDS + 1);
        for (size_t i = 0; i < n; i++)
            w[i] = (uint32_t)termgen_next(seed);
        return heap_make_ref(h, gen_node(seed), (uint32_t)termgen_next(seed), w, n, &t) == GD_OK
                   ? t
                   : TERM_NONE;
    }
    case 6:
        if (termgen_below(seed, 2))
            return term_make_local_pid(
                (uint32_t)termgen_below(seed, HEAP_LOCAL_PID_NUMBER_MAX + 1),
                (uint32_t)termgen_below(seed, HEAP_LOCAL_PID_SERIAL_MAX + 1));
        return heap_make_ext_pid(h, gen_node(seed), (uint32_t)termgen_next(seed),
                                 (uint32_t)termgen_next(seed), (uint32_t)termgen_next(seed),
                                 &t) == GD_OK
                   ? t
                   : TERM_NONE;
    case 7: {
        uint64_t id = termgen_below(seed, 2) ? termgen_below(seed, 1u << 28) : termgen_next(seed);
        if (termgen_below(seed, 2))
            return term_make_local_port(id % (LOCAL_PORT_MAX + 1));
        return heap_make_ext_port(h, gen_node(seed), id, (uint32_t)termgen_next(seed), &t) == GD_OK
                   ? t
                   : TERM_NONE;
    }
    case 8:
    case 9:
        return gen_bits(h, seed);
    case 10:
        return heap_make_export(h, gen_atom(seed), gen_atom(seed), (uint8_t)termgen_next(seed),
                                &t) == GD_OK
                   ? t
                   : TERM_NONE;
    default:
        return TERM_NIL;
    }
}

static term_t gen_list(heap_t *h, uint64_t *seed, int depth)
{
    size_t n = termgen_below(seed, 6);
    bool bytes = termgen_below(seed, 3) == 0;
    if (bytes && termgen_below(seed, 64) == 0)
        n = 65534 + termgen_below(seed, 3); /* either side of the STRING_EXT limit */
    term_t tail = TERM_NIL;
    if (!bytes && termgen_below(seed, 4) == 0) {
        tail = cu_random_term(h, seed, depth - 1);
        if (tail == TERM_NONE)
            return TERM_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        term_t x = bytes ? term_make_small((int64_t)termgen_below(seed, 256))
                         : cu_random_term(h, seed, depth - 1);
        if (x == TERM_NONE || heap_cons(h, x, tail, &tail) != GD_OK)
            return TERM_NONE;
    }
    return tail;
}

static term_t gen_map(heap_t *h, uint64_t *seed, int depth)
{
    size_t want =
        termgen_below(seed, 12) == 0 ? 33 + termgen_below(seed, 60) : termgen_below(seed, 8);
    term_t keys[100], vals[100];
    size_t n = 0;
    for (size_t tries = 0; n < want && tries < 4 * want + 8; tries++) {
        term_t k =
            termgen_below(seed, 4) == 0 ? cu_random_term(h, seed, depth - 2) : gen_leaf(h, seed);
        if (k == TERM_NONE)
            return TERM_NONE;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = tg_equal_exact(keys[i], k);
        if (dup)
            continue;
        term_t v = cu_random_term(h, seed, n < 8 ? depth - 1 : depth - 2);
        if (v == TERM_NONE)
            return TERM_NONE;
        keys[n] = k;
        vals[n] = v;
        n++;
    }
    term_t m;
    return heap_make_map(h, keys, vals, n, &m) == GD_OK ? m : TERM_NONE;
}

static term_t gen_fun(heap_t *h, uint64_t *seed, int depth)
{
    heap_fun_info_t fi;
    memset(&fi, 0, sizeof fi);
    fi.arity = (uint8_t)termgen_next(seed);
    for (int i = 0; i < 16; i++)
        fi.uniq[i] = (uint8_t)termgen_next(seed);
    fi.index = (uint32_t)termgen_next(seed);
    fi.num_free = (uint32_t)termgen_below(seed, 4);
    fi.module = gen_atom(seed);
    fi.old_index = term_make_small((int64_t)termgen_below(seed, 300));
    fi.old_uniq = term_make_small((int32_t)termgen_next(seed));
    if (termgen_below(seed, 2)) {
        fi.pid = term_make_local_pid((uint32_t)termgen_below(seed, 1000), 0);
    } else if (heap_make_ext_pid(h, gen_node(seed), 7, 1, 2, &fi.pid) != GD_OK) {
        return TERM_NONE;
    }
    term_t fv[3];
    for (uint32_t i = 0; i < fi.num_free; i++)
        if ((fv[i] = cu_random_term(h, seed, depth - 1)) == TERM_NONE)
            return TERM_NONE;
    term_t *free_out, t;
    if (heap_make_fun(h, &fi, &free_out, &t) != GD_OK)
        return TERM_NONE;
    memcpy(free_out, fv, fi.num_free * sizeof *fv);
    return t;
}

term_t cu_random_term(heap_t *h, uint64_t *seed, int depth)
{
    if (depth <= 0 || termgen_below(seed, 3) == 0)
        return gen_leaf(h, seed);
    switch (termgen_below(seed, 5)) {
    case 0: {
        size_t arity =
            termgen_below(seed, 20) == 0 ? 256 + termgen_below(seed, 4) : termgen_below(seed, 5);
        term_t items[260];
        for (size_t i = 0; i < arity; i++) {
            items[i] = i < 8 ? cu_random_term(h, seed, depth - 1) : gen_leaf(h, seed);
            if (items[i] == TERM_NONE)
                return TERM_NONE;
        }
        term_t *el, t;
        if (heap_make_tuple(h, arity, &el, &t) != GD_OK)
            return TERM_NONE;
        memcpy(el, items, arity * sizeof *el);
        return t;
    }
    case 1:
        return gen_list(h, seed, depth);
    case 2:
        return gen_map(h, seed, depth);
    case 3:
        return gen_fun(h, seed, depth);
    default:
        return gen_leaf(h, seed);
    }
}
