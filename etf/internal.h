/*
 * internal.h — helpers shared by the files of etf/ only: big-endian byte
 * access and a LIFO scratch allocator whose blocks never move (the codec
 * keeps pointers into them while it walks nested maps).
 */
#ifndef GIRDER_ETF_INTERNAL_H
#define GIRDER_ETF_INTERNAL_H

#include <stdlib.h>

#include "etf.h"

GD_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                 "the codec byte-swaps assuming a little-endian host");

static inline uint16_t etf_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t etf_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint64_t etf_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline void etf_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void etf_put32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}
static inline void etf_put64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

/*
 * Scratch words handed out last-in first-out from a chain of chunks.  The
 * first chunk is supplied by the caller (usually on its C stack); further
 * chunks are malloc'ed on demand and kept for reuse until etf_scratch_free.
 * A block never moves once handed out.
 */
typedef struct etf_scratch_chunk {
    struct etf_scratch_chunk *next;
    size_t cap;  /* words */
    size_t used; /* words */
    term_t *words;
} etf_scratch_chunk_t;

typedef struct etf_scratch {
    etf_scratch_chunk_t first;
    etf_scratch_chunk_t *cur;
} etf_scratch_t;

/* Where to rewind to when a block is released. */
typedef struct etf_scratch_mark {
    etf_scratch_chunk_t *chunk;
    size_t used;
} etf_scratch_mark_t;

static inline void etf_scratch_init(etf_scratch_t *s, term_t *inline_words, size_t n)
{
    s->first.next = NULL;
    s->first.cap = n;
    s->first.used = 0;
    s->first.words = inline_words;
    s->cur = &s->first;
}

/* Returns `words` words (NULL when out of memory) and the mark that
 * releases them and everything handed out after them. */
static inline term_t *etf_scratch_alloc(etf_scratch_t *s, size_t words, etf_scratch_mark_t *mark)
{
    etf_scratch_chunk_t *c = s->cur;
    while (c->cap - c->used < words) {
        etf_scratch_chunk_t *next = c->next;
        if (next == NULL || next->cap < words) {
            size_t cap = c->cap * 2;
            if (cap < words)
                cap = words;
            if (cap > (SIZE_MAX - sizeof *next) / sizeof(term_t))
                return NULL;
            etf_scratch_chunk_t *fresh = malloc(sizeof *fresh + cap * sizeof(term_t));
            if (fresh == NULL)
                return NULL;
            fresh->cap = cap;
            fresh->words = (term_t *)(fresh + 1);
            fresh->next = next; /* a smaller spare stays in the chain, freed at the end */
            c->next = fresh;
            next = fresh;
        }
        next->used = 0;
        c = next;
    }
    s->cur = c;
    mark->chunk = c;
    mark->used = c->used;
    term_t *p = c->words + c->used;
    c->used += words;
    return p;
}

static inline void etf_scratch_release(etf_scratch_t *s, etf_scratch_mark_t mark)
{
    mark.chunk->used = mark.used;
    s->cur = mark.chunk;
}

static inline void etf_scratch_free(etf_scratch_t *s)
{
    etf_scratch_chunk_t *c = s->first.next;
    while (c != NULL) {
        etf_scratch_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    s->first.next = NULL;
    s->cur = &s->first;
}

/* ---- OTP's order of the pairs of maps over 32 keys (otp_map_order.c) ---- */

/* Writes map's pairs to keys[]/vals[] (heap_map_size(map) each, owned by the
 * caller) in OTP 25's term_to_binary order: maps of up to 32 keys sorted by
 * key, larger ones in OTP's hash (HAMT) order; local pids and ports hash as
 * those of local_node/local_creation (what they encode as).  ETF_ENOMEM on
 * allocation failure, ETF_EUNENCODABLE for a key that is not a term.
 * Expected O(n) plus the size of the keys (O(n log n) at worst). */
int etf_otp_map_order(term_t map, term_t *keys, term_t *vals, term_t local_node,
                      uint32_t local_creation) GD_MUST_CHECK;

/* OTP 25's internal term hash of t (make_internal_hash(t, 0)), as the
 * order above uses it.  ETF_ENOMEM on allocation failure. */
int etf_otp_internal_hash(term_t t, uint32_t *hash) GD_MUST_CHECK;

#endif /* GIRDER_ETF_INTERNAL_H */
