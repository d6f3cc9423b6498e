/*
 * term_internal.h — term accessors the comparison (compare.c) and the
 * hashes (hash.c) share inside heap/: integers as sign and magnitude, the
 * identity of pids, ports and references, bitstring bytes, and the growth
 * of their explicit work stacks.
 */
#ifndef GIRDER_HEAP_TERM_INTERNAL_H
#define GIRDER_HEAP_TERM_INTERNAL_H

#include "gc_internal.h"
#include "heap.h"

static inline int sign_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}
static inline int sign_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

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

typedef struct ident {
    term_t node;
    uint32_t creation;
    uint64_t data; /* pid: serial << 32 | number; port: number */
} ident_t;

static inline void pid_ident(term_t t, ident_t *id)
{
    if (term_is_local_pid(t)) {
        id->node = heap_node_name();
        id->creation = heap_node_creation();
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
        id->node = heap_node_name();
        id->creation = heap_node_creation();
        id->data = term_local_port_number(t);
        return;
    }
    const term_t *p = term_boxed_ptr(t);
    id->data = p[1];
    id->creation = (uint32_t)p[2];
    id->node = p[3];
}

/* A reference's node, creation and id words (local ones with this node's
 * identity); n counts the words without high zero words. */
typedef struct ref_ident {
    term_t node;
    uint32_t creation;
    size_t n;
    uint32_t w[HEAP_REF_MAX_WORDS];
} ref_ident_t;

static inline void ref_ident(term_t t, ref_ident_t *r)
{
    const term_t *p = term_boxed_ptr(t);
    size_t n;
    if (header_subtag(p[0]) == HDR_LOCAL_REF) {
        r->node = heap_node_name();
        r->creation = heap_node_creation();
        r->w[0] = (uint32_t)p[1];
        r->w[1] = (uint32_t)(p[1] >> 32);
        r->w[2] = (uint32_t)p[2];
        r->w[3] = r->w[4] = 0;
        n = HEAP_LOCAL_REF_WORDS;
    } else {
        r->node = p[5];
        r->creation = (uint32_t)p[1];
        n = (size_t)(p[1] >> 32);
        if (n > HEAP_REF_MAX_WORDS)
            n = HEAP_REF_MAX_WORDS;
        r->w[0] = (uint32_t)p[2];
        r->w[1] = (uint32_t)(p[2] >> 32);
        r->w[2] = (uint32_t)p[3];
        r->w[3] = (uint32_t)(p[3] >> 32);
        r->w[4] = (uint32_t)p[4];
    }
    while (n > 0 && r->w[n - 1] == 0)
        n--;
    r->n = n;
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

static inline size_t map_size_of(const term_t *p)
{
    /* flat: [hdr][n]...; hash: [hdr][size]... — both keep it in word 1 */
    return (size_t)term_small_value(p[1]);
}

/* Immediates whose only exactly equal term is themselves. */
static inline bool walk_plain_immediate(term_t t)
{
    return term_is_immediate(t) && !term_is_local_pid(t) && !term_is_local_port(t);
}

/*
 * Doubles a walk's work stack, whose storage may still be the caller's
 * inline buffer: returns the new storage (the old contents copied, *cap
 * updated) or NULL when memory is exhausted, the old storage intact then.
 */
static inline void *walk_grow_stack(void *base, const void *inline_buf, size_t *cap, size_t elem)
{
    size_t ncap = *cap * 2;
    void *nb;
    if (base == inline_buf) {
        nb = heap_xmalloc(ncap * elem);
        if (nb != NULL)
            memcpy(nb, base, *cap * elem);
    } else {
        nb = heap_xrealloc(base, ncap * elem);
    }
    if (nb != NULL)
        *cap = ncap;
    return nb;
}

#endif /* GIRDER_HEAP_TERM_INTERNAL_H */
