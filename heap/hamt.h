/*
 * hamt.h — private to heap/: the layout of hash maps (HAMT) shared by
 * maps.c (build, lookup, update, iteration) and compare.c (ordering and
 * hashing of maps), and the atom text order both use.  Not part of heap/'s
 * interface; other directories use heap.h only.
 *
 * A hash map stores a pair under the 64-bit hash of its key, consumed
 * HAMT_BITS bits per level from the least significant end: level l indexes
 * its children by bits [5l, 5l+5).  13 levels cover all 64 bits (level 12
 * uses the top 4).  Objects (every word a valid term, so the collector can
 * copy them generically):
 *
 *   root      [hdr HDR_MAP_HASH, arity 2+k][size small][bitmap small][k children]
 *   inner     [hdr HDR_HAMT_NODE, arity 1+k][bitmap small][k children]
 *   collision [hdr HDR_HAMT_COLLIDE, arity k][k leaves, ascending exact key order]
 *
 * A child is a leaf, the cons cell [Key | Value], or a boxed pointer to an
 * inner or collision node.  A collision node appears only below a level-12
 * node, for keys whose 64-bit hashes are all equal.  Children are in
 * ascending order of their 5-bit chunk (bit position in the bitmap).
 *
 * Invariants every map function relies on: a map with at most
 * HEAP_MAP_FLAT_MAX pairs is flat, a larger one is a hash map (there is no
 * delete yet; one that shrinks a hash map must convert it back to flat); the
 * layout of a hash map is a function of its key set (so equal maps have
 * identical shapes, which hashing and comparison use).  The deepest path is
 * root + 12 inner nodes + one collision node = 14 nodes, within the 16 slots
 * of heap_map_iter_t.
 */
#ifndef GIRDER_HEAP_HAMT_H
#define GIRDER_HEAP_HAMT_H

#include "heap.h"

#define HAMT_BITS 5
#define HAMT_FANOUT (1u << HAMT_BITS)
#define HAMT_LEVELS 13 /* ceil(64 / HAMT_BITS) */
#define HAMT_MAX_PATH (HAMT_LEVELS + 1)

GD_STATIC_ASSERT(HAMT_BITS *HAMT_LEVELS >= 64 && HAMT_BITS * (HAMT_LEVELS - 1) < 64,
                 "HAMT_LEVELS must cover the 64-bit hash exactly");
GD_STATIC_ASSERT(HAMT_MAX_PATH <= 16, "a HAMT path must fit heap_map_iter_t");
GD_STATIC_ASSERT(HAMT_FANOUT <= SMALL_BITS - 1, "a bitmap must fit a small integer");

/*
 * Testing knob (style practice 17: make rare paths common): the hash maps use
 * heap_hash_checked(key) & heap_hamt_hash_mask.  Tests narrow the mask so that full
 * hash collisions (collision nodes) happen with a handful of keys.  Only set
 * it while no hash map exists: maps built under one mask are invalid under
 * another.  Defaults to all ones.
 */
extern uint64_t heap_hamt_hash_mask;

/* The hash a key is stored under in a hash map, in *out; GD_ENOMEM when
 * hashing a deeply branching key ran out of memory. */
static inline int hamt_key_hash(term_t key, uint64_t *out)
{
    uint64_t h;
    int rc = heap_hash_checked(key, &h);
    if (rc != GD_OK)
        return rc;
    *out = h & heap_hamt_hash_mask;
    return GD_OK;
}

/* The child index bits of `hash` at `level`. */
static inline unsigned hamt_chunk(uint64_t hash, unsigned level)
{
    return (unsigned)((hash >> (HAMT_BITS * level)) & (HAMT_FANOUT - 1));
}

/*
 * Orders two hashes the way a HAMT walk visits them: by the chunk of the
 * lowest level where they differ.  Returns <0, 0 (equal hashes), >0.
 */
static inline int hamt_hash_order(uint64_t ha, uint64_t hb)
{
    uint64_t x = ha ^ hb;
    if (x == 0)
        return 0;
    unsigned level = (unsigned)__builtin_ctzll(x) / HAMT_BITS;
    return hamt_chunk(ha, level) < hamt_chunk(hb, level) ? -1 : 1;
}

/* The children of a root, inner or collision node, and (not for collision
 * nodes) its bitmap. */
static inline term_t *hamt_children(term_t *node, size_t *count, uint32_t *bitmap)
{
    term_t hdr = node[0];
    size_t arity = (size_t)header_arity(hdr);
    switch (header_subtag(hdr)) {
    case HDR_MAP_HASH:
        *bitmap = (uint32_t)term_small_value(node[2]);
        *count = arity - 2;
        return node + 3;
    case HDR_HAMT_NODE:
        *bitmap = (uint32_t)term_small_value(node[1]);
        *count = arity - 1;
        return node + 2;
    default: /* HDR_HAMT_COLLIDE */
        *bitmap = 0;
        *count = arity;
        return node + 1;
    }
}

GD_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                 "atom_text_order byte-swaps little-endian loads");

/* Orders two atoms by their fetched texts (UTF-8 byte order), eight bytes
 * at a time: atom names are short and often share long prefixes, where a
 * libc memcmp call costs more than the comparison. */
static inline int atom_text_order(const char *ta, size_t la, const char *tb, size_t lb)
{
    size_t n = la < lb ? la : lb, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, ta + i, 8);
        memcpy(&y, tb + i, 8);
        if (x != y) {
            x = __builtin_bswap64(x); /* most significant byte first */
            y = __builtin_bswap64(y);
            return x < y ? -1 : 1;
        }
    }
    for (; i < n; i++)
        if (ta[i] != tb[i])
            return (uint8_t)ta[i] < (uint8_t)tb[i] ? -1 : 1;
    return (la > lb) - (la < lb);
}

#endif /* GIRDER_HEAP_HAMT_H */
