/*
 * terms.c — constructors and accessors for every term type except maps
 * (maps.c): tuples, lists, integers, floats, binaries, pids, ports,
 * references, funs and exports.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

static inline int alloc_words(heap_t *h, size_t words, term_t **out)
{
    term_t *p = heap_alloc(h, words);
    if (GD_UNLIKELY(p == NULL))
        return GD_ENOMEM;
    *out = p;
    return GD_OK;
}

/* Builds the boxed object {subtag header of arity 3, w1, w2, w3}: the
 * layout of sub-binaries, external pids and ports, and exports. */
static inline int make_boxed3(heap_t *h, enum heap_subtag subtag, term_t w1, term_t w2, term_t w3,
                              term_t *out)
{
    term_t *p;
    int rc = alloc_words(h, 4, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(subtag, 3);
    p[1] = w1;
    p[2] = w2;
    p[3] = w3;
    *out = term_make_boxed(p);
    return GD_OK;
}

int heap_make_tuple(heap_t *h, size_t arity, term_t **elems_out, term_t *out)
{
    if (arity > HEADER_ARITY_MAX)
        return GD_ESYSTEM_LIMIT;
    term_t *p;
    int rc = alloc_words(h, 1 + arity, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_TUPLE, arity);
    *elems_out = p + 1;
    *out = term_make_boxed(p);
    return GD_OK;
}

int heap_make_tuple_from(heap_t *h, size_t arity, const term_t *items, term_t *out)
{
    term_t *e;
    int rc = heap_make_tuple(h, arity, &e, out);
    if (rc == GD_OK && arity > 0)
        memcpy(e, items, arity * sizeof *items);
    return rc;
}

int heap_cons(heap_t *h, term_t car, term_t cdr, term_t *out)
{
    term_t *p;
    int rc = alloc_words(h, 2, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = car;
    p[1] = cdr;
    *out = term_make_list(p);
    return GD_OK;
}

int heap_make_list(heap_t *h, const term_t *items, size_t n, term_t *out)
{
    if (n == 0) {
        *out = TERM_NIL;
        return GD_OK;
    }
    if (n > SIZE_MAX / 2)
        return GD_ESYSTEM_LIMIT;
    term_t *p;
    int rc = alloc_words(h, 2 * n, &p);
    if (rc != GD_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = items[i];
        p[2 * i + 1] = (i + 1 < n) ? term_make_list(p + 2 * i + 2) : TERM_NIL;
    }
    *out = term_make_list(p);
    return GD_OK;
}

/* ---- integers ---- */

/* Allocates a bignum of `ndigits` (> 1 or not small-representable) digits
 * and returns where its digits go; the caller writes them. */
static int alloc_big(heap_t *h, bool negative, size_t ndigits, uint64_t **digits_out, term_t *out)
{
    if (ndigits > HEAP_BIG_MAX_DIGITS)
        return GD_ESYSTEM_LIMIT;
    term_t *p;
    int rc = alloc_words(h, 1 + ndigits, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(negative ? HDR_NEG_BIG : HDR_POS_BIG, ndigits);
    *digits_out = p + 1;
    *out = term_make_boxed(p);
    return GD_OK;
}

int heap_make_integer_digits(heap_t *h, bool negative, const uint64_t *digits, size_t ndigits,
                             term_t *out)
{
    while (ndigits > 0 && digits[ndigits - 1] == 0)
        ndigits--;
    if (ndigits == 0) {
        *out = term_make_small(0);
        return GD_OK;
    }
    if (ndigits == 1) {
        uint64_t mag = digits[0];
        if (!negative && mag <= (uint64_t)SMALL_MAX) {
            *out = term_make_small((int64_t)mag);
            return GD_OK;
        }
        if (negative && mag <= (uint64_t)SMALL_MAX + 1) {
            *out = term_make_small(-(int64_t)(mag - 1) - 1);
            return GD_OK;
        }
    }
    uint64_t *big;
    int rc = alloc_big(h, negative, ndigits, &big, out);
    if (rc == GD_OK)
        memcpy(big, digits, ndigits * sizeof(uint64_t));
    return rc;
}

int heap_make_uint64(heap_t *h, uint64_t v, term_t *out)
{
    return heap_make_integer_digits(h, false, &v, 1, out);
}

int heap_make_int64(heap_t *h, int64_t v, term_t *out)
{
    if (small_fits(v)) {
        *out = term_make_small(v);
        return GD_OK;
    }
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return heap_make_integer_digits(h, v < 0, &mag, 1, out);
}

int heap_make_integer_le(heap_t *h, bool negative, const uint8_t *le, size_t nbytes, term_t *out)
{
    while (nbytes > 0 && le[nbytes - 1] == 0)
        nbytes--;
    size_t ndigits = (nbytes + 7) / 8;
    if (ndigits <= 1) {
        uint64_t d = 0;
        for (size_t i = 0; i < nbytes; i++)
            d |= (uint64_t)le[i] << (8 * i);
        return heap_make_integer_digits(h, negative, &d, ndigits, out);
    }
    uint64_t *digits;
    int rc = alloc_big(h, negative, ndigits, &digits, out);
    if (rc != GD_OK)
        return rc;
    for (size_t d = 0; d < ndigits; d++) {
        uint64_t v = 0;
        size_t base = d * 8;
        size_t take = nbytes - base < 8 ? nbytes - base : 8;
        for (size_t i = 0; i < take; i++)
            v |= (uint64_t)le[base + i] << (8 * i);
        digits[d] = v;
    }
    return GD_OK;
}

int heap_integer_to_int64(term_t t, int64_t *out)
{
    if (term_is_small(t)) {
        *out = term_small_value(t);
        return GD_OK;
    }
    if (!term_is_big(t))
        return GD_EBADARG;
    if (term_big_ndigits(t) != 1)
        return GD_ESYSTEM_LIMIT;
    uint64_t mag = term_big_digits(t)[0];
    if (term_big_negative(t)) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return GD_ESYSTEM_LIMIT;
        *out = (int64_t)(0 - mag);
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return GD_ESYSTEM_LIMIT;
        *out = (int64_t)mag;
    }
    return GD_OK;
}

/* ---- floats ---- */

int heap_make_float(heap_t *h, double d, term_t *out)
{
    if (!isfinite(d))
        return GD_EBADARG;
    term_t *p;
    int rc = alloc_words(h, 2, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_FLOAT, 1);
    memcpy(p + 1, &d, sizeof d);
    *out = term_make_boxed(p);
    return GD_OK;
}

/* ---- binaries ---- */

void heap_bin_view(term_t t, heap_bin_view_t *view)
{
    term_t *p = term_boxed_ptr(t);
    size_t offset_bits = 0;
    if (header_subtag(p[0]) == HDR_SUB_BIN) {
        view->bit_size = (size_t)p[1];
        offset_bits = (size_t)p[2];
        p = term_boxed_ptr(p[3]);
    } else {
        view->bit_size = (size_t)p[1];
    }
    const uint8_t *base;
    if (header_subtag(p[0]) == HDR_HEAP_BIN)
        base = (const uint8_t *)(p + 2);
    else
        base = ((heap_binary_t *)(uintptr_t)p[2])->data;
    view->bytes = base + offset_bits / 8;
    view->bit_offset = (unsigned)(offset_bits % 8);
}

bool term_is_binary(term_t t)
{
    if (!term_is_bitstring(t))
        return false;
    return term_boxed_ptr(t)[1] % 8 == 0;
}

int heap_make_bitstring_uninit(heap_t *h, size_t bit_size, uint8_t **data_out, term_t *out)
{
    size_t bytes = bit_size / 8 + (bit_size % 8 != 0);
    if (bytes > HEAP_BINARY_MAX_BYTES)
        return GD_ESYSTEM_LIMIT;
    term_t *p;
    int rc;
    if (bytes <= HEAP_BIN_MAX_BYTES) {
        size_t data_words = (bytes + 7) / 8;
        rc = alloc_words(h, 2 + data_words, &p);
        if (rc != GD_OK)
            return rc;
        p[0] = heap_make_header(HDR_HEAP_BIN, 1 + data_words);
        p[1] = bit_size;
        if (data_words > 0)
            p[1 + data_words] = 0; /* no uninitialised padding bytes */
        *data_out = (uint8_t *)(p + 2);
        *out = term_make_boxed(p);
        return GD_OK;
    }
    heap_binary_t *bin = heap_binary_new(bytes);
    if (bin == NULL)
        return GD_ENOMEM;
    rc = heap_make_refc_binary(h, bin, bit_size, out);
    heap_binary_unref(bin); /* the REFC_BIN object holds the only reference */
    if (rc != GD_OK)
        return rc;
    *data_out = bin->data;
    return GD_OK;
}

int heap_make_refc_binary(heap_t *h, heap_binary_t *bin, size_t bit_size, term_t *out)
{
    term_t *p;
    int rc = alloc_words(h, 4, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_REFC_BIN, 3);
    p[1] = bit_size;
    p[2] = (term_t)(uintptr_t)bin;
    heap_binary_ref(bin);
    heap_offheap_link(h, p);
    *out = term_make_boxed(p);
    return GD_OK;
}

int heap_make_binary(heap_t *h, const void *bytes, size_t n, term_t *out)
{
    if (n > HEAP_BINARY_MAX_BYTES / 8)
        return GD_ESYSTEM_LIMIT;
    uint8_t *data;
    int rc = heap_make_bitstring_uninit(h, n * 8, &data, out);
    if (rc == GD_OK && n > 0)
        memcpy(data, bytes, n);
    return rc;
}

int heap_make_sub_binary(heap_t *h, term_t orig, size_t bit_offset, size_t bit_size, term_t *out)
{
    if (!term_is_bitstring(orig))
        return GD_EBADARG;
    term_t *o = term_boxed_ptr(orig);
    size_t orig_bits = (size_t)o[1];
    if (bit_offset > orig_bits || bit_size > orig_bits - bit_offset)
        return GD_EBADARG;
    if (header_subtag(o[0]) == HDR_SUB_BIN) {
        bit_offset += (size_t)o[2];
        orig = o[3];
    }
    return make_boxed3(h, HDR_SUB_BIN, bit_size, bit_offset, orig, out);
}

/* ---- pids, ports, references ---- */

int heap_make_ext_pid(heap_t *h, term_t node, uint32_t id, uint32_t serial, uint32_t creation,
                      term_t *out)
{
    if (!term_is_atom(node))
        return GD_EBADARG;
    if (heap_node_is_local(node, creation))
        return heap_make_local_pid(id, serial, out);
    return make_boxed3(h, HDR_EXT_PID, (uint64_t)id | ((uint64_t)serial << 32), creation, node,
                       out);
}

int heap_make_ext_port(heap_t *h, term_t node, uint64_t id, uint32_t creation, term_t *out)
{
    if (!term_is_atom(node))
        return GD_EBADARG;
    if (heap_node_is_local(node, creation))
        return heap_make_local_port(id, out);
    return make_boxed3(h, HDR_EXT_PORT, id, creation, node, out);
}

int heap_make_local_ref(heap_t *h, const uint32_t w[HEAP_LOCAL_REF_WORDS], term_t *out)
{
    if (w[0] > HEAP_LOCAL_REF_W0_MAX)
        return GD_EBADARG;
    term_t *p;
    int rc = alloc_words(h, 3, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_LOCAL_REF, 2);
    p[1] = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
    p[2] = w[2];
    *out = term_make_boxed(p);
    return GD_OK;
}

int heap_make_ref(heap_t *h, term_t node, uint32_t creation, const uint32_t *words, size_t nwords,
                  term_t *out)
{
    if (!term_is_atom(node) || nwords > HEAP_REF_MAX_WORDS)
        return GD_EBADARG;
    uint32_t w[HEAP_REF_MAX_WORDS] = {0};
    for (size_t i = 0; i < nwords; i++)
        w[i] = words[i];
    if (heap_node_is_local(node, creation)) {
        /* OTP widens a shorter reference of its own node to 3 words and
         * refuses a longer one, and one without words. */
        if (nwords == 0 || nwords > HEAP_LOCAL_REF_WORDS)
            return GD_EBADARG;
        return heap_make_local_ref(h, w, out);
    }
    term_t *p;
    int rc = alloc_words(h, 6, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_REF, 5);
    p[1] = (uint64_t)creation | ((uint64_t)nwords << 32);
    p[2] = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
    p[3] = (uint64_t)w[2] | ((uint64_t)w[3] << 32);
    p[4] = w[4];
    p[5] = node;
    *out = term_make_boxed(p);
    return GD_OK;
}

void heap_ident(term_t t, heap_ident_t *out)
{
    memset(out, 0, sizeof *out);
    if (term_is_local_pid(t) || term_is_local_port(t)) {
        out->node = heap_node_name();
        out->creation = heap_node_creation();
        if (term_is_local_port(t)) {
            out->port_id = term_local_port_number(t);
        } else {
            out->words[0] = term_local_pid_id(t);
            out->words[1] = term_local_pid_serial(t);
            out->nwords = 2;
        }
        return;
    }
    term_t *p = term_boxed_ptr(t);
    switch (header_subtag(p[0])) {
    case HDR_LOCAL_REF:
        out->node = heap_node_name();
        out->creation = heap_node_creation();
        out->nwords = HEAP_LOCAL_REF_WORDS;
        out->words[0] = (uint32_t)p[1];
        out->words[1] = (uint32_t)(p[1] >> 32);
        out->words[2] = (uint32_t)p[2];
        break;
    case HDR_EXT_PID:
        out->words[0] = (uint32_t)p[1];
        out->words[1] = (uint32_t)(p[1] >> 32);
        out->nwords = 2;
        out->creation = (uint32_t)p[2];
        out->node = p[3];
        break;
    case HDR_EXT_PORT:
        out->port_id = p[1];
        out->creation = (uint32_t)p[2];
        out->node = p[3];
        break;
    case HDR_REF:
        out->creation = (uint32_t)p[1];
        out->nwords = (uint32_t)(p[1] >> 32);
        out->words[0] = (uint32_t)p[2];
        out->words[1] = (uint32_t)(p[2] >> 32);
        out->words[2] = (uint32_t)p[3];
        out->words[3] = (uint32_t)(p[3] >> 32);
        out->words[4] = (uint32_t)p[4];
        out->node = p[5];
        break;
    default:
        GD_ASSERT(!"heap_ident on a term without node identity");
        break;
    }
}

/* ---- funs and exports ---- */

int heap_make_fun(heap_t *h, const heap_fun_info_t *info, term_t **free_out, term_t *out)
{
    if (info->num_free > HEAP_FUN_MAX_FREE || !term_is_atom(info->module))
        return GD_EBADARG;
    term_t *p;
    int rc = alloc_words(h, 1 + 8 + (size_t)info->num_free, &p);
    if (rc != GD_OK)
        return rc;
    p[0] = heap_make_header(HDR_FUN, 8 + (uint64_t)info->num_free);
    p[1] = (uint64_t)info->arity | ((uint64_t)info->num_free << 8);
    p[2] = info->index;
    memcpy(&p[3], info->uniq, 16);
    p[5] = info->module;
    p[6] = info->old_index;
    p[7] = info->old_uniq;
    p[8] = info->pid;
    *free_out = p + 9;
    *out = term_make_boxed(p);
    return GD_OK;
}

void heap_fun_info(term_t fun, heap_fun_info_t *info)
{
    term_t *p = term_boxed_ptr(fun);
    info->arity = (uint8_t)p[1];
    info->num_free = (uint32_t)(p[1] >> 8);
    info->index = (uint32_t)p[2];
    memcpy(info->uniq, &p[3], 16);
    info->module = p[5];
    info->old_index = p[6];
    info->old_uniq = p[7];
    info->pid = p[8];
}

int heap_make_export(heap_t *h, term_t module, term_t function, uint8_t arity, term_t *out)
{
    if (!term_is_atom(module) || !term_is_atom(function))
        return GD_EBADARG;
    return make_boxed3(h, HDR_EXPORT, module, function, term_make_small(arity), out);
}
