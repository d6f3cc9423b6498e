/*
 * termgen_util.c — deterministic random terms for tests (see the header).
 */
#include "termgen_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t termgen_next(uint64_t *seed)
{
    uint64_t z = (*seed += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

uint64_t termgen_below(uint64_t *seed, uint64_t n)
{
    return termgen_next(seed) % n;
}

void termgen_shuffle_pairs(term_t *k, term_t *v, size_t n, uint64_t *seed)
{
    for (size_t j = n; j > 1; j--) {
        size_t r = termgen_below(seed, j);
        term_t x = k[j - 1];
        k[j - 1] = k[r];
        k[r] = x;
        x = v[j - 1];
        v[j - 1] = v[r];
        v[r] = x;
    }
}

uint64_t termgen_seed_from_env(uint64_t fallback)
{
    const char *s = getenv("GD_TEST_SEED");
    if (s == NULL || *s == '\0')
        return fallback;
    return strtoull(s, NULL, 0);
}

static const char *const atom_pool[] = {
    "a",   "b",        "ab",           "abc",           "ok",         "error",      "",
    "z",   "\xc3\xa4", "\xe2\x82\xac", "nonode@nohost", "node1@host", "node2@host", "m",
    "mod", "f",
};
#define ATOM_POOL_N (sizeof atom_pool / sizeof atom_pool[0])

static term_t pool_atom(uint64_t *seed)
{
    return heap_atom(atom_pool[termgen_below(seed, ATOM_POOL_N)]);
}

static term_t pool_node(uint64_t *seed)
{
    static const char *const nodes[] = {"nonode@nohost", "node1@host", "node2@host", "a@b"};
    return heap_atom(nodes[termgen_below(seed, 4)]);
}

static term_t gen_integer(heap_t *h, uint64_t *seed)
{
    term_t t;
    switch (termgen_below(seed, 6)) {
    case 0:
        return term_make_small((int64_t)termgen_below(seed, 7) - 3);
    case 1:
        return term_make_small((int64_t)termgen_below(seed, 2001) - 1000);
    case 2: {
        int64_t v = termgen_below(seed, 2) ? SMALL_MAX : SMALL_MIN;
        v += termgen_below(seed, 2) ? -(int64_t)termgen_below(seed, 3) : 0;
        if (heap_make_int64(h, v, &t) != GD_OK)
            return TERM_NONE;
        return t;
    }
    case 3: {
        int64_t v = SMALL_MAX + 1 + (int64_t)termgen_below(seed, 3);
        if (termgen_below(seed, 2))
            v = -v - 1;
        if (heap_make_int64(h, v, &t) != GD_OK)
            return TERM_NONE;
        return t;
    }
    default: {
        uint64_t d[4];
        size_t n = 1 + termgen_below(seed, 4);
        for (size_t i = 0; i < n; i++)
            d[i] = termgen_below(seed, 3) == 0 ? termgen_below(seed, 3) : termgen_next(seed);
        if (heap_make_integer_digits(h, termgen_below(seed, 2), d, n, &t) != GD_OK)
            return TERM_NONE;
        return t;
    }
    }
}

term_t termgen_float(heap_t *h, uint64_t *seed, const double *special, size_t n_special)
{
    double d;
    if (termgen_below(seed, 2)) {
        d = special[termgen_below(seed, n_special)];
    } else {
        do {
            uint64_t bits = termgen_next(seed);
            memcpy(&d, &bits, sizeof d);
        } while (!isfinite(d));
    }
    term_t t;
    return heap_make_float(h, d, &t) == GD_OK ? t : TERM_NONE;
}

static term_t gen_float(heap_t *h, uint64_t *seed)
{
    static const double special[] = {
        0.0, -0.0, 1.0,   -1.0, 0.5, 1e300, -1e300, 9007199254740992.0, 1152921504606846976.0,
        2.0, 3.5,  1e-300};
    return termgen_float(h, seed, special, sizeof special / sizeof special[0]);
}

static term_t gen_bitstring(heap_t *h, uint64_t *seed)
{
    static const size_t sizes[] = {0, 1, 3, 8, 16, 64, 65, 100};
    size_t nbytes = sizes[termgen_below(seed, sizeof sizes / sizeof sizes[0])];
    size_t bits = nbytes * 8;
    if (termgen_below(seed, 4) == 0 && nbytes > 0)
        bits -= 1 + termgen_below(seed, 7);
    uint8_t *data;
    term_t t;
    if (heap_make_bitstring_uninit(h, bits, &data, &t) != GD_OK)
        return TERM_NONE;
    size_t len = (bits + 7) / 8;
    /* Mostly a few distinct bytes so that binaries tie often. */
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(termgen_below(seed, 4) == 0 ? termgen_next(seed) : 'a');
    if (bits % 8 != 0)
        data[len - 1] &= (uint8_t)(0xFF << (8 - bits % 8));
    return t;
}

term_t termgen_leaf(heap_t *h, uint64_t *seed)
{
    term_t t;
    switch (termgen_below(seed, 12)) {
    case 0:
    case 1:
        return gen_integer(h, seed);
    case 2:
        return gen_float(h, seed);
    case 3:
    case 4:
        return pool_atom(seed);
    case 5: {
        uint32_t w[HEAP_REF_MAX_WORDS];
        term_t node = pool_node(seed);
        uint32_t creation = (uint32_t)termgen_below(seed, 3);
        /* Only references a real OTP 25 node takes everywhere: it refuses
         * ones of its own identity without 1..3 words, and a reference with
         * no words as a map key (binary_to_term fails, or crashes the VM
         * inside a large map).  Explicit tests cover the other shapes. */
        size_t n = 1 + termgen_below(seed, HEAP_REF_MAX_WORDS);
        if (node == ATOM_NONODE && creation == 0)
            n = 1 + termgen_below(seed, 3);
        for (size_t i = 0; i < n; i++)
            w[i] = (uint32_t)termgen_below(seed, 3);
        /* OTP 25 (erts 13.1) crashes when a hash map holds two different
         * 4- or 5-word references that share their first three words; a
         * random first word keeps such pairs out of generated maps. */
        if (n >= 4)
            w[0] = (uint32_t)termgen_next(seed);
        if (heap_make_ref(h, node, creation, w, n, &t) != GD_OK)
            return TERM_NONE;
        return t;
    }
    case 6:
        if (termgen_below(seed, 2))
            return term_make_local_pid((uint32_t)termgen_below(seed, 4),
                                       (uint32_t)termgen_below(seed, 3));
        if (heap_make_ext_pid(h, pool_node(seed), (uint32_t)termgen_below(seed, 4),
                              (uint32_t)termgen_below(seed, 3), (uint32_t)termgen_below(seed, 2),
                              &t) != GD_OK)
            return TERM_NONE;
        return t;
    case 7:
        if (termgen_below(seed, 2))
            return term_make_local_port(termgen_below(seed, 4));
        if (heap_make_ext_port(h, pool_node(seed), termgen_below(seed, 4),
                               (uint32_t)termgen_below(seed, 2), &t) != GD_OK)
            return TERM_NONE;
        return t;
    case 8:
    case 9:
        return gen_bitstring(h, seed);
    case 10:
        if (heap_make_export(h, pool_atom(seed), pool_atom(seed), (uint8_t)termgen_below(seed, 3),
                             &t) != GD_OK)
            return TERM_NONE;
        return t;
    default:
        return TERM_NIL;
    }
}

static term_t gen_map(heap_t *h, uint64_t *seed, int max_depth)
{
    size_t want =
        termgen_below(seed, 8) == 0 ? 33 + termgen_below(seed, 40) : termgen_below(seed, 6);
    term_t keys[80], vals[80];
    size_t n = 0;
    for (size_t tries = 0; n < want && tries < 4 * want + 8; tries++) {
        term_t k = termgen_below(seed, 3) == 0 ? termgen_random(h, seed, max_depth - 1)
                                               : termgen_leaf(h, seed);
        if (k == TERM_NONE)
            return TERM_NONE;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = tg_equal_exact(keys[i], k);
        if (dup)
            continue;
        term_t v = termgen_random(h, seed, max_depth - 1);
        if (v == TERM_NONE)
            return TERM_NONE;
        keys[n] = k;
        vals[n] = v;
        n++;
    }
    term_t m;
    return heap_make_map(h, keys, vals, n, &m) == GD_OK ? m : TERM_NONE;
}

term_t termgen_random(heap_t *h, uint64_t *seed, int max_depth)
{
    if (max_depth <= 0 || termgen_below(seed, 3) == 0)
        return termgen_leaf(h, seed);
    term_t t;
    switch (termgen_below(seed, 5)) {
    case 0: {
        size_t arity = termgen_below(seed, 4);
        term_t *el;
        term_t items[4];
        for (size_t i = 0; i < arity; i++)
            if ((items[i] = termgen_random(h, seed, max_depth - 1)) == TERM_NONE)
                return TERM_NONE;
        if (heap_make_tuple(h, arity, &el, &t) != GD_OK)
            return TERM_NONE;
        memcpy(el, items, arity * sizeof *el);
        return t;
    }
    case 1: {
        size_t n = termgen_below(seed, 5);
        term_t tail = TERM_NIL;
        if (termgen_below(seed, 5) == 0)
            tail = termgen_random(h, seed, max_depth - 1);
        if (tail == TERM_NONE)
            return TERM_NONE;
        for (size_t i = 0; i < n; i++) {
            term_t x = termgen_random(h, seed, max_depth - 1);
            if (x == TERM_NONE || heap_cons(h, x, tail, &tail) != GD_OK)
                return TERM_NONE;
        }
        return tail;
    }
    case 2:
        return gen_map(h, seed, max_depth);
    case 3: {
        heap_fun_info_t fi;
        memset(&fi, 0, sizeof fi);
        fi.arity = (uint8_t)termgen_below(seed, 3);
        for (int i = 0; i < 16; i++)
            fi.uniq[i] = (uint8_t)termgen_next(seed);
        fi.index = (uint32_t)termgen_below(seed, 3);
        if (termgen_below(seed, 8) == 0)
            fi.index = 0xFFFFFFFFu;
        fi.num_free = (uint32_t)termgen_below(seed, 3);
        fi.module = pool_atom(seed);
        fi.old_index = term_make_small((int64_t)termgen_below(seed, 3));
        fi.old_uniq = term_make_small((int64_t)termgen_below(seed, 3) - 1);
        fi.pid = term_make_local_pid((uint32_t)termgen_below(seed, 3), 0);
        term_t fv[3];
        for (uint32_t i = 0; i < fi.num_free; i++)
            if ((fv[i] = termgen_random(h, seed, max_depth - 1)) == TERM_NONE)
                return TERM_NONE;
        term_t *free_out;
        if (heap_make_fun(h, &fi, &free_out, &t) != GD_OK)
            return TERM_NONE;
        memcpy(free_out, fv, fi.num_free * sizeof *fv);
        return t;
    }
    default:
        return termgen_leaf(h, seed);
    }
}

/* A sub-binary equal to bitstring t, cut from a bigger copy at an offset. */
static term_t variant_bits(heap_t *h, term_t t, uint64_t *seed)
{
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    size_t pre = termgen_below(seed, 20);
    size_t post = termgen_below(seed, 2) ? termgen_below(seed, 9) : 600;
    size_t total = pre + v.bit_size + post;
    uint8_t *data;
    term_t big;
    if (heap_make_bitstring_uninit(h, total, &data, &big) != GD_OK)
        return TERM_NONE;
    size_t nbytes = (total + 7) / 8;
    for (size_t i = 0; i < nbytes; i++)
        data[i] = (uint8_t)termgen_next(seed);
    for (size_t i = 0; i < v.bit_size; i++) {
        size_t sb = v.bit_offset + i;
        unsigned bit = (v.bytes[sb / 8] >> (7 - sb % 8)) & 1;
        size_t db = pre + i;
        data[db / 8] = (uint8_t)((data[db / 8] & ~(0x80u >> (db % 8))) | (bit << (7 - db % 8)));
    }
    if (total % 8 != 0)
        data[nbytes - 1] &= (uint8_t)(0xFF << (8 - total % 8));
    term_t out;
    if (heap_make_sub_binary(h, big, pre, v.bit_size, &out) != GD_OK)
        return TERM_NONE;
    /* Sometimes a sub-binary of a sub-binary. */
    if (termgen_below(seed, 3) == 0 && heap_make_sub_binary(h, out, 0, v.bit_size, &out) != GD_OK)
        return TERM_NONE;
    return out;
}

term_t termgen_variant(heap_t *h, term_t t, uint64_t *seed)
{
    term_t out;
    if (term_is_local_pid(t) && termgen_below(seed, 2)) {
        return heap_make_ext_pid(h, ATOM_NONODE, term_local_pid_id(t), term_local_pid_serial(t), 0,
                                 &out) == GD_OK
                   ? out
                   : TERM_NONE;
    }
    if (term_is_local_port(t) && termgen_below(seed, 2)) {
        return heap_make_ext_port(h, ATOM_NONODE, term_local_port_number(t), 0, &out) == GD_OK
                   ? out
                   : TERM_NONE;
    }
    if (term_is_list(t)) {
        term_t car = termgen_variant(h, term_car(t), seed);
        term_t cdr = termgen_variant(h, term_cdr(t), seed);
        if (car == TERM_NONE || cdr == TERM_NONE || heap_cons(h, car, cdr, &out) != GD_OK)
            return TERM_NONE;
        return out;
    }
    if (!term_is_boxed(t))
        return t;
    term_t *p = term_boxed_ptr(t);
    switch (header_subtag(p[0])) {
    case HDR_TUPLE: {
        size_t n = term_tuple_arity(t);
        term_t *items = n ? malloc(n * sizeof *items) : NULL;
        for (size_t i = 0; i < n; i++)
            items[i] = termgen_variant(h, term_tuple_elems(t)[i], seed);
        term_t *el;
        int rc = heap_make_tuple(h, n, &el, &out);
        if (rc == GD_OK && n > 0)
            memcpy(el, items, n * sizeof *el);
        free(items);
        return rc == GD_OK ? out : TERM_NONE;
    }
    case HDR_HEAP_BIN:
    case HDR_REFC_BIN:
    case HDR_SUB_BIN:
        return termgen_below(seed, 4) ? variant_bits(h, t, seed) : t;
    case HDR_REF: {
        /* A copy.  High zero words would not change the reference (OTP's
         * rule, tested explicitly elsewhere), but OTP 25's map hash treats
         * padded external references as different keys (maps:get misses),
         * and generated terms must stay within what OTP handles
         * consistently. */
        heap_ident_t id;
        heap_ident(t, &id);
        return heap_make_ref(h, id.node, id.creation, id.words, id.nwords, &out) == GD_OK
                   ? out
                   : TERM_NONE;
    }
    case HDR_FUN: {
        heap_fun_info_t fi;
        heap_fun_info(t, &fi);
        /* Fields that take no part in comparison may differ. */
        fi.arity = (uint8_t)(fi.arity + 1);
        fi.uniq[0] ^= 0x5A;
        fi.old_index = term_make_small(77);
        term_t *fv = fi.num_free ? malloc(fi.num_free * sizeof *fv) : NULL;
        for (uint32_t i = 0; i < fi.num_free; i++)
            fv[i] = termgen_variant(h, term_fun_free(t)[i], seed);
        term_t *free_out;
        int rc = heap_make_fun(h, &fi, &free_out, &out);
        if (rc == GD_OK && fi.num_free > 0)
            memcpy(free_out, fv, fi.num_free * sizeof *fv);
        free(fv);
        return rc == GD_OK ? out : TERM_NONE;
    }
    case HDR_MAP_FLAT:
    case HDR_MAP_HASH: {
        size_t n = heap_map_size(t);
        term_t *k = malloc((n + 1) * sizeof *k), *v = malloc((n + 1) * sizeof *v);
        heap_map_iter_t it;
        heap_map_iter_init(&it, t);
        size_t i = 0;
        while (heap_map_next(&it, &k[i], &v[i])) {
            k[i] = termgen_variant(h, k[i], seed);
            v[i] = termgen_variant(h, v[i], seed);
            i++;
        }
        termgen_shuffle_pairs(k, v, n, seed);
        int rc;
        if (termgen_below(seed, 2)) {
            rc = heap_make_map(h, k, v, n, &out);
        } else {
            rc = heap_make_map(h, NULL, NULL, 0, &out);
            for (size_t j = 0; j < n && rc == GD_OK; j++)
                rc = heap_map_put(h, out, k[j], v[j], &out);
        }
        free(k);
        free(v);
        return rc == GD_OK ? out : TERM_NONE;
    }
    default:
        return t;
    }
}

void termgen_dump(FILE *f, term_t t)
{
    if (term_is_small(t)) {
        fprintf(f, "%lld", (long long)term_small_value(t));
    } else if (term_is_atom(t)) {
        size_t len;
        const char *s = heap_atom_text(t, &len);
        fprintf(f, "'%.*s'", (int)len, s);
    } else if (term_is_nil(t)) {
        fputs("[]", f);
    } else if (term_is_local_pid(t)) {
        fprintf(f, "<0.%u.%u>", term_local_pid_id(t), term_local_pid_serial(t));
    } else if (term_is_local_port(t)) {
        fprintf(f, "#Port<0.%llu>", (unsigned long long)term_local_port_number(t));
    } else if (term_is_list(t)) {
        fputc('[', f);
        for (;;) {
            termgen_dump(f, term_car(t));
            t = term_cdr(t);
            if (!term_is_list(t))
                break;
            fputc(',', f);
        }
        if (!term_is_nil(t)) {
            fputc('|', f);
            termgen_dump(f, t);
        }
        fputc(']', f);
    } else if (term_is_boxed(t)) {
        term_t *p = term_boxed_ptr(t);
        switch (header_subtag(p[0])) {
        case HDR_TUPLE:
            fputc('{', f);
            for (size_t i = 0; i < term_tuple_arity(t); i++) {
                if (i)
                    fputc(',', f);
                termgen_dump(f, term_tuple_elems(t)[i]);
            }
            fputc('}', f);
            break;
        case HDR_POS_BIG:
        case HDR_NEG_BIG:
            fprintf(f, "%sbig(", term_big_negative(t) ? "-" : "");
            for (size_t i = term_big_ndigits(t); i-- > 0;)
                fprintf(f, "%016llx", (unsigned long long)term_big_digits(t)[i]);
            fputc(')', f);
            break;
        case HDR_FLOAT:
            fprintf(f, "%.17g", term_float_value(t));
            break;
        case HDR_REF: {
            heap_ident_t id;
            heap_ident(t, &id);
            fputs("#Ref<", f);
            termgen_dump(f, id.node);
            fprintf(f, ".%u", id.creation);
            for (uint32_t i = 0; i < id.nwords; i++)
                fprintf(f, ".%u", id.words[i]);
            fputc('>', f);
            break;
        }
        case HDR_FUN: {
            heap_fun_info_t fi;
            heap_fun_info(t, &fi);
            fputs("#Fun<", f);
            termgen_dump(f, fi.module);
            fprintf(f, ".%d.", (int32_t)fi.index);
            termgen_dump(f, fi.old_uniq);
            for (uint32_t i = 0; i < fi.num_free; i++) {
                fputc(i ? ',' : ':', f);
                termgen_dump(f, term_fun_free(t)[i]);
            }
            fputc('>', f);
            break;
        }
        case HDR_EXPORT:
            fputs("fun ", f);
            termgen_dump(f, p[1]);
            fputc(':', f);
            termgen_dump(f, p[2]);
            fprintf(f, "/%lld", (long long)term_small_value(p[3]));
            break;
        case HDR_EXT_PID:
        case HDR_EXT_PORT: {
            heap_ident_t id;
            heap_ident(t, &id);
            fputs(header_subtag(p[0]) == HDR_EXT_PID ? "<" : "#Port<", f);
            termgen_dump(f, id.node);
            if (header_subtag(p[0]) == HDR_EXT_PID)
                fprintf(f, ".%u.%u.%u>", id.words[0], id.words[1], id.creation);
            else
                fprintf(f, ".%llu.%u>", (unsigned long long)id.port_id, id.creation);
            break;
        }
        case HDR_HEAP_BIN:
        case HDR_REFC_BIN:
        case HDR_SUB_BIN: {
            heap_bin_view_t v;
            heap_bin_view(t, &v);
            fprintf(f, "<<%zu bits:", v.bit_size);
            for (size_t i = 0; i < v.bit_size; i += 8) {
                unsigned o = v.bit_offset;
                size_t k = i / 8;
                unsigned x = (unsigned)(uint8_t)(v.bytes[k] << o);
                if (o && 8 * (k + 1) < o + v.bit_size)
                    x |= v.bytes[k + 1] >> (8 - o);
                fprintf(f, "%02x", x & 0xFF);
            }
            fputs(">>", f);
            break;
        }
        case HDR_MAP_FLAT:
        case HDR_MAP_HASH: {
            heap_map_iter_t it;
            heap_map_iter_init(&it, t);
            term_t k, v;
            bool first = true;
            fputs("#{", f);
            while (heap_map_next(&it, &k, &v)) {
                if (!first)
                    fputc(',', f);
                first = false;
                termgen_dump(f, k);
                fputs("=>", f);
                termgen_dump(f, v);
            }
            fputc('}', f);
            break;
        }
        default:
            fprintf(f, "?hdr%llx", (unsigned long long)p[0]);
        }
    } else {
        fprintf(f, "?%llx", (unsigned long long)t);
    }
}

GD_COLD static void tg_failed(const char *what, int rc)
{
    fprintf(stderr, "%s failed: %s\n", what, gd_strerror(rc));
    exit(3);
}

int tg_compare(term_t a, term_t b, bool exact)
{
    int order = 0;
    int rc = heap_compare_checked(a, b, exact, &order);
    if (rc != GD_OK)
        tg_failed("heap_compare_checked", rc);
    return order;
}

bool tg_equal_exact(term_t a, term_t b)
{
    return a == b || tg_compare(a, b, true) == 0;
}

uint64_t tg_hash(term_t t)
{
    uint64_t h = 0;
    int rc = heap_hash_checked(t, &h);
    if (rc != GD_OK)
        tg_failed("heap_hash_checked", rc);
    return h;
}

term_t tg_map_get(term_t map, term_t key)
{
    term_t v = TERM_NONE;
    int rc = heap_map_find(map, key, &v);
    if (rc != GD_OK)
        tg_failed("heap_map_find", rc);
    return v;
}

void tg_map_sorted(term_t map, term_t *keys, term_t *vals)
{
    int rc = heap_map_sorted(map, keys, vals);
    if (rc != GD_OK)
        tg_failed("heap_map_sorted", rc);
}
