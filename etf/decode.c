/*
 * decode.c — External Term Format decoder (binary_to_term).
 *
 * One pass over the bytes, with an explicit work stack instead of C
 * recursion.  Each frame on the stack names the next unfilled slot of a
 * compound term already built on the heap (tuple elements, cons cells, fun
 * free variables, map keys/values in a scratch area), so scalar terms are
 * written straight into their final place.
 *
 * Why one pass and not ERTS's size-then-build two passes (measured, not
 * assumed): allocation on a girder heap is an inline pointer bump
 * (heap_alloc), so reserving the whole term up front saves almost nothing,
 * while a validating first walk alone costs 15-45% of a whole one-pass
 * decode (measured on the benchmark corpora: records 21%, integer lists
 * 44%, mixed 17%) and the build pass would still do all the per-term work
 * done here.  What the first pass buys ERTS — never allocating more
 * than the input can describe — is kept here by *pending-slot accounting*:
 * every unfilled slot on the stack needs at least one more input byte, so a
 * compound of k slots is only allocated if k fits in the bytes that remain
 * after all slots already pending.  Heap use is therefore bounded by a small
 * constant times the (inflated) input length, and a 6-byte input can never
 * allocate 4 GB.
 *
 * Every failure sets a distinct ETF_E* code and the offset of the tag byte
 * of the term found malformed or cut short (for a term missing entirely,
 * the offset where it should start).  Errors inside a compressed term
 * report offsets into
 * the inflated encoding counted as if it followed the version byte, i.e. as
 * the uncompressed `131 Tag ...` form of the same term would.
 */
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

/* Frames the decoder keeps on the C stack before it moves to malloc. */
#define DEC_INLINE_FRAMES 32
/* Words of map scratch kept on the C stack before malloc'ed chunks. */
#define DEC_INLINE_SCRATCH 256
/* Entries of each thread's atom cache. */
#define DEC_ATOM_CACHE_BITS 10
#define DEC_ATOM_CACHE (1u << DEC_ATOM_CACHE_BITS)
/* deflate cannot expand more than this per input byte (258-byte matches
 * coded in 2 bits); a COMPRESSED header claiming more is a lie. */
#define DEC_MAX_INFLATE_RATIO 1032
/* Old tags carry an 8-bit creation; OTP 25 rejects values above 3. */
#define DEC_MAX_OLD_CREATION 3
/* REFERENCE_EXT / NEW_REFERENCE_EXT first id word: OTP 25 accepts 18 bits. */
#define DEC_OLD_REF_WORD0_MAX 0x3FFFFu
/* NEW_FUN_EXT: more free variables than a function can have arguments. */
#define DEC_FUN_MAX_FREE 255
/* Inflate at least this much at a time (a COMPRESSED term is inflated as
 * the decoder reaches it). */
#define DEC_INFLATE_STEP ((size_t)64 << 10)
/* Inflated buffers from this size on are mapped rather than malloc'ed. */
#define DEC_MAP_MIN ((size_t)8 << 20)
/* Heap words charged against max_heap for objects whose exact size the
 * heap decides: a pid, port or reference (at most 6 words with its node),
 * a binary's header (REFC_BIN: 4 words), a bignum's header and sign. */
#define DEC_IDENT_WORDS 8
#define DEC_BIN_HDR_WORDS 4
/* A sub-binary object (header, bit size, bit offset, original). */
#define DEC_SUB_BIN_WORDS 4
#define DEC_BIG_HDR_WORDS 2

enum dec_frame_kind {
    FRAME_SEQ,  /* consecutive slots: tuple elements, fun free variables */
    FRAME_LIST, /* cars of consecutive cons cells, then the last cdr */
    FRAME_MAP,  /* keys[i], vals[i] alternately in a scratch block */
};

typedef struct dec_frame {
    term_t *dest;     /* next slot to fill */
    size_t remaining; /* slots still to fill */
    term_t *aux;      /* FRAME_MAP: its scratch header */
    uint32_t kind;
} dec_frame_t;

/* Map scratch header words (before keys[n], vals[n]). */
enum { MAP_HDR_DEST, MAP_HDR_N, MAP_HDR_TAG_OFF, MAP_HDR_CHUNK, MAP_HDR_USED, MAP_HDR_WORDS };

/*
 * Each thread keeps a direct-mapped cache from atom text (UTF-8) to atom
 * across calls: atoms are never removed and their text never moves, so an
 * entry, once written, stays true.  A hit costs a hash and a memcmp instead
 * of a probe of the shared atom table; typical traffic repeats a small set
 * of atoms (record tags, map keys, node names).
 */
typedef struct dec_atom_entry {
    const char *text; /* the atom's own text (heap_atom_text), stable */
    uint32_t len;
    term_t atom; /* 0 (not an atom) in an empty entry */
} dec_atom_entry_t;

static _Thread_local dec_atom_entry_t atom_cache[DEC_ATOM_CACHE];

/*
 * A COMPRESSED term is inflated as the decoder reaches it, not all at once:
 * buf holds the declared size, of which the first `ready` bytes exist so
 * far.  A term that its first bytes already show to be over the heap budget
 * (a LIST_EXT header claiming 10^9 elements) fails before the rest of the
 * stream is inflated, so a zip bomb costs neither its inflated size in
 * memory nor the time to inflate it.
 */
typedef struct dec_inflate {
    z_stream zs;
    const uint8_t *in; /* compressed bytes not yet given to zlib */
    size_t in_left;
    size_t in_len; /* all compressed bytes, for the consumed count */
    bool ended;    /* zlib reported the end of the stream */
} dec_inflate_t;

typedef struct dec {
    heap_t *h;
    const uint8_t *buf; /* the encoding being walked (input or inflated) */
    size_t len;
    size_t ready;      /* bytes of buf available: len, or what is inflated so far */
    dec_inflate_t *zi; /* the stream filling buf (NULL: not compressed) */
    size_t budget;     /* heap words this decode may still build (max_heap) */
    size_t off_bias;   /* added to offsets in errors */
    bool safe;
    const term_t *cache_refs;
    size_t cache_count;
    size_t max_depth;
    size_t max_decompressed;
    /* opts->input_bin: binaries of the input itself (never of an inflated
     * buffer) become sub-binaries of it, through one REFC_BIN object made
     * on first use (src_refc, TERM_NONE until then). */
    heap_binary_t *src;
    const uint8_t *src_buf;
    term_t src_refc;
    int err;
    size_t err_off;
    /* work stack */
    dec_frame_t *stack;
    size_t stack_cap;
    dec_frame_t inline_stack[DEC_INLINE_FRAMES];
    /* map keys/values until the map is built (LIFO, blocks never move) */
    etf_scratch_t scratch;
    term_t inline_scratch[DEC_INLINE_SCRATCH];
} dec_t;

/* Records the first error (code and offset in the caller's terms). */
static GD_COLD int fail_at(dec_t *d, int code, size_t off)
{
    d->err = code;
    d->err_off = off + d->off_bias;
    return code;
}

/* Maps a heap/atom-table error to the decoder's code. */
static int map_heap_error(int rc)
{
    switch (rc) {
    case GD_EATOM_BAD_UTF8:
    case GD_EATOM_TOO_LONG:
        return ETF_EATOM;
    case GD_EATOM_NOT_FOUND:
        return ETF_EATOM_UNSAFE;
    case GD_EATOM_TABLE_FULL:
        return ETF_EATOM_TABLE_FULL;
    case GD_EDUPLICATE_KEY:
        return ETF_EDUPLICATE_KEY;
    case GD_ESYSTEM_LIMIT:
        return ETF_ETOO_LARGE;
    case GD_ENOMEM:
        return ETF_ENOMEM;
    default:
        return rc;
    }
}

/* ---- input availability (inflating on demand) and the heap budget ---- */

/* Fails a broken or lying zlib stream: reported at the 80 of `131 80`. */
static GD_COLD int fail_compressed(dec_t *d)
{
    d->err = ETF_ECOMPRESSED;
    d->err_off = 1;
    return ETF_ECOMPRESSED;
}

/* Hands zlib the next piece of compressed input once it has used the last
 * (zlib counts in uInt: pieces of at most UINT32_MAX bytes). */
static void feed_input(dec_inflate_t *zi)
{
    if (zi->zs.avail_in != 0 || zi->in_left == 0)
        return;
    uInt piece = zi->in_left > UINT32_MAX ? UINT32_MAX : (uInt)zi->in_left;
    zi->zs.next_in = (Bytef *)(uintptr_t)zi->in;
    zi->zs.avail_in = piece;
    zi->in += piece;
    zi->in_left -= piece;
}

/*
 * Inflates until buf[0..end) exists (end <= len), DEC_INFLATE_STEP bytes
 * at least at a time.  Returns 0, or ETF_ECOMPRESSED (recorded) when the
 * stream is corrupt or ends before the size its header declared.
 */
static GD_NOINLINE int inflate_to(dec_t *d, size_t end)
{
    dec_inflate_t *zi = d->zi;
    if (zi == NULL || zi->ended)
        return fail_compressed(d); /* unreachable: end <= len == ready then */
    size_t want = d->ready + DEC_INFLATE_STEP;
    if (want < end)
        want = end;
    if (want > d->len)
        want = d->len;
    uint8_t *out = (uint8_t *)(uintptr_t)d->buf;
    while (d->ready < want) {
        feed_input(zi);
        zi->zs.next_out = out + d->ready;
        zi->zs.avail_out = (uInt)(want - d->ready); /* len < 2^32: a 32-bit field */
        int zr = inflate(&zi->zs, Z_NO_FLUSH);
        d->ready = want - zi->zs.avail_out;
        if (zr == Z_STREAM_END) {
            zi->ended = true;
            break;
        }
        if (zr == Z_OK || (zr == Z_BUF_ERROR && zi->zs.avail_in == 0 && zi->in_left > 0))
            continue;
        return fail_compressed(d);
    }
    return d->ready >= end ? GD_OK : fail_compressed(d);
}

/* Makes buf[0..end) available; end must not exceed len (callers check the
 * declared length first, so a short input still reports ETRUNCATED). */
static inline int need(dec_t *d, size_t end)
{
    return GD_LIKELY(end <= d->ready) ? GD_OK : inflate_to(d, end);
}

/*
 * After the term: inflates what is left and checks that the stream ends
 * exactly at the declared size (bytes after the term inside it are allowed,
 * as OTP 25 allows them; a stream longer or shorter than declared is not).
 */
static int finish_inflate(dec_t *d)
{
    if (need(d, d->len) != GD_OK)
        return d->err;
    dec_inflate_t *zi = d->zi;
    uint8_t extra;
    while (!zi->ended) {
        feed_input(zi);
        zi->zs.next_out = &extra;
        zi->zs.avail_out = 1;
        int zr = inflate(&zi->zs, Z_NO_FLUSH);
        if (zi->zs.avail_out == 0)
            return fail_compressed(d); /* inflates past the declared size */
        if (zr == Z_STREAM_END)
            zi->ended = true;
        else if (!(zr == Z_OK || (zr == Z_BUF_ERROR && zi->zs.avail_in == 0 && zi->in_left > 0)))
            return fail_compressed(d);
    }
    return GD_OK;
}

/* Takes `words` heap words from the decode's budget (opts->max_heap), or
 * fails with ETF_EHEAP_LIMIT before anything that large is allocated. */
static inline int charge(dec_t *d, size_t words, size_t off)
{
    if (GD_UNLIKELY(words > d->budget))
        return fail_at(d, ETF_EHEAP_LIMIT, off);
    d->budget -= words;
    return GD_OK;
}

/* n bytes from `at` exist (inflating them if needed), or the error `code`
 * at `off` (ETRUNCATED for fixed fields, ETOO_LARGE for a length). */
static inline int have(dec_t *d, size_t at, size_t n, int code, size_t off)
{
    if (GD_UNLIKELY(d->len - at < n))
        return fail_at(d, code, off);
    return need(d, at + n);
}

/* ---- atoms ---- */

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* a[0..n) == b[0..n), with word loads that never pass either end (atoms
 * are short: this beats a call to memcmp). */
static inline bool bytes_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (load64(a + i) != load64(b + i))
                return false;
        return load64(a + n - 8) == load64(b + n - 8);
    }
    if (n >= 4)
        return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
    if (n > 0)
        return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1];
    return true;
}

/*
 * Hashes atom text for the cache slot and ORs all its bytes into *bits (so
 * the caller learns whether a Latin-1 atom has bytes >= 0x80) in one pass
 * of word loads; the tail is read as an overlapping word, never past n.
 */
static inline unsigned atom_cache_slot(const uint8_t *p, size_t n, uint64_t *bits)
{
    const uint64_t k = 0x9E3779B97F4A7C15u;
    uint64_t x = (uint64_t)n * k, all = 0, w;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            w = load64(p + i);
            all |= w;
            x = (x ^ w) * k;
        }
        w = load64(p + n - 8);
    } else if (n >= 4) {
        w = load32(p) | (uint64_t)load32(p + n - 4) << 32;
    } else if (n > 0) {
        w = p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
    } else {
        w = 0;
    }
    all |= w;
    x = (x ^ w) * k;
    *bits = all;
    return (unsigned)(x >> (64 - DEC_ATOM_CACHE_BITS));
}

/* Looks up or creates (unless safe) the atom with UTF-8 text p[0..n) and
 * caches it.  Returns 0 or an ETF_E* code (offset set by the caller). */
static GD_NOINLINE int resolve_atom_slow(dec_t *d, dec_atom_entry_t *e, const uint8_t *p, size_t n,
                                         term_t *out)
{
    int rc = d->safe ? heap_atom_lookup((const char *)p, n, out)
                     : heap_atom_put((const char *)p, n, out);
    if (rc != GD_OK)
        return map_heap_error(rc);
    size_t len;
    e->text = heap_atom_text(*out, &len);
    e->len = (uint32_t)len;
    e->atom = *out;
    return GD_OK;
}

/* Resolves atom text, Latin-1 (ATOM_EXT, SMALL_ATOM_EXT) or UTF-8. */
static inline int resolve_atom(dec_t *d, const uint8_t *p, size_t n, bool latin1, term_t *out)
{
    if (GD_UNLIKELY(n > (latin1 ? HEAP_ATOM_MAX_CHARS : HEAP_ATOM_MAX_BYTES)))
        return ETF_EATOM;
    uint64_t bits;
    unsigned slot = atom_cache_slot(p, n, &bits);
    char utf8[2 * HEAP_ATOM_MAX_CHARS];
    if (latin1 && GD_UNLIKELY(bits & 0x8080808080808080u)) {
        /* Latin-1 beyond ASCII: the atom's text is its UTF-8 form. */
        n = heap_utf8_from_latin1(p, n, (uint8_t *)utf8);
        p = (const uint8_t *)utf8;
        slot = atom_cache_slot(p, n, &bits);
    }
    dec_atom_entry_t *e = &atom_cache[slot];
    if (GD_LIKELY(e->atom != 0 && e->len == n && bytes_equal((const uint8_t *)e->text, p, n))) {
        *out = e->atom;
        return GD_OK;
    }
    return resolve_atom_slow(d, e, p, n, out);
}

/*
 * Reads an atom term (ATOM_EXT, SMALL_ATOM_EXT, the UTF-8 forms, or an
 * ATOM_CACHE_REF) at *pos; `wrong_tag` is the error for any other tag (the
 * field that wanted an atom decides: ENODE for node names, EFUN, EEXPORT).
 */
static int read_atom(dec_t *d, size_t *pos, int wrong_tag, term_t *out)
{
    const uint8_t *buf = d->buf;
    size_t at = *pos;
    if (have(d, at, 1, ETF_ETRUNCATED, at) != GD_OK)
        return d->err;
    size_t n, hdr;
    bool latin1;
    switch (buf[at]) {
    case ETF_SMALL_ATOM_UTF8_EXT:
    case ETF_SMALL_ATOM_EXT:
        if (have(d, at, 2, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        n = buf[at + 1];
        hdr = 2;
        latin1 = buf[at] == ETF_SMALL_ATOM_EXT;
        break;
    case ETF_ATOM_EXT:
    case ETF_ATOM_UTF8_EXT:
        if (have(d, at, 3, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        n = etf_get16(buf + at + 1);
        hdr = 3;
        latin1 = buf[at] == ETF_ATOM_EXT;
        break;
    case ETF_ATOM_CACHE_REF: {
        if (have(d, at, 2, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        unsigned ix = buf[at + 1];
        if (d->cache_refs == NULL || ix >= d->cache_count || !term_is_atom(d->cache_refs[ix]))
            return fail_at(d, ETF_EATOM_CACHE, at);
        *out = d->cache_refs[ix];
        *pos = at + 2;
        return GD_OK;
    }
    default:
        return fail_at(d, wrong_tag, at);
    }
    if (have(d, at + hdr, n, ETF_ETOO_LARGE, at) != GD_OK)
        return d->err;
    int rc = resolve_atom(d, buf + at + hdr, n, latin1, out);
    if (rc != GD_OK)
        return fail_at(d, rc, at);
    *pos = at + hdr + n;
    return GD_OK;
}

/* ---- small helpers for fixed-layout terms ---- */

/*
 * Reads an integer field (SMALL_INTEGER, INTEGER, SMALL_BIG, LARGE_BIG)
 * whose value must be a small (OTP's is_small: 60-bit signed).  Used for
 * NEW_FUN_EXT OldIndex/OldUniq and EXPORT_EXT arity, which OTP decodes as a
 * term and then requires to be a small integer.
 */
static int read_small_field(dec_t *d, size_t *pos, int wrong, int64_t *out)
{
    const uint8_t *buf = d->buf;
    size_t at = *pos;
    if (have(d, at, 1, ETF_ETRUNCATED, at) != GD_OK)
        return d->err;
    switch (buf[at]) {
    case ETF_SMALL_INTEGER_EXT:
        if (have(d, at, 2, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        *out = buf[at + 1];
        *pos = at + 2;
        return GD_OK;
    case ETF_INTEGER_EXT:
        if (have(d, at, 5, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        *out = (int32_t)etf_get32(buf + at + 1);
        *pos = at + 5;
        return GD_OK;
    case ETF_SMALL_BIG_EXT:
    case ETF_LARGE_BIG_EXT: {
        size_t hdr = buf[at] == ETF_SMALL_BIG_EXT ? 3 : 6;
        if (have(d, at, hdr, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        size_t n = hdr == 3 ? buf[at + 1] : etf_get32(buf + at + 1);
        bool neg = buf[at + hdr - 1] != 0;
        if (have(d, at + hdr, n, ETF_ETOO_LARGE, at) != GD_OK)
            return d->err;
        const uint8_t *p = buf + at + hdr;
        size_t m = n;
        while (m > 0 && p[m - 1] == 0)
            m--;
        if (m > 8)
            return fail_at(d, wrong, at);
        uint64_t mag = 0;
        for (size_t i = 0; i < m; i++)
            mag |= (uint64_t)p[i] << (8 * i);
        if (!neg && mag <= (uint64_t)SMALL_MAX)
            *out = (int64_t)mag;
        else if (neg && mag <= (uint64_t)SMALL_MAX + 1)
            *out = -(int64_t)(mag - 1) - 1;
        else
            return fail_at(d, wrong, at);
        *pos = at + hdr + n;
        return GD_OK;
    }
    default:
        return fail_at(d, wrong, at);
    }
}

/*
 * The node atom of a pid, port or reference at *p (the term's tag at `at`)
 * and the `fixed` bytes that must follow it: moves *p past the atom and
 * returns those bytes, or NULL with the error recorded.
 */
static const uint8_t *read_ident_node(dec_t *d, size_t at, size_t *p, size_t fixed, term_t *node)
{
    if (read_atom(d, p, ETF_ENODE, node) != GD_OK)
        return NULL;
    if (have(d, *p, fixed, ETF_ETRUNCATED, at) != GD_OK)
        return NULL;
    return d->buf + *p;
}

/* Ends a pid, port or reference with its constructor's code rc: the error,
 * or *pos moved to `end`. */
static int end_ident(dec_t *d, int rc, size_t at, size_t *pos, size_t end)
{
    /* The node is an atom here, so GD_EBADARG means the identifier names
     * this node and creation with numbers outside its local ranges (or a
     * reference of more than 3 words): badarg in OTP. */
    if (rc == GD_EBADARG)
        return fail_at(d, ETF_ETYPE, at);
    if (rc != GD_OK)
        return fail_at(d, map_heap_error(rc), at);
    *pos = end;
    return GD_OK;
}

/* Reads the body of NEW_PID_EXT / PID_EXT after the tag at `at`. */
static int read_pid(dec_t *d, size_t *pos, term_t *out)
{
    size_t at = *pos;
    uint8_t tag = d->buf[at];
    size_t p = at + 1;
    term_t node;
    size_t fixed = tag == ETF_NEW_PID_EXT ? 12 : 9;
    const uint8_t *b = read_ident_node(d, at, &p, fixed, &node);
    if (b == NULL)
        return d->err;
    uint32_t id = etf_get32(b), serial = etf_get32(b + 4), creation;
    if (tag == ETF_NEW_PID_EXT) {
        creation = etf_get32(b + 8);
    } else {
        creation = b[8];
        if (creation > DEC_MAX_OLD_CREATION)
            return fail_at(d, ETF_ETYPE, at);
    }
    return end_ident(d, heap_make_ext_pid(d->h, node, id, serial, creation, out), at, pos,
                     p + fixed);
}

/* Ports: NEW_PORT_EXT, V4_PORT_EXT, PORT_EXT. */
static int read_port(dec_t *d, size_t *pos, term_t *out)
{
    size_t at = *pos;
    uint8_t tag = d->buf[at];
    size_t p = at + 1;
    term_t node;
    size_t fixed = tag == ETF_V4_PORT_EXT ? 12 : tag == ETF_NEW_PORT_EXT ? 8 : 5;
    const uint8_t *b = read_ident_node(d, at, &p, fixed, &node);
    if (b == NULL)
        return d->err;
    uint64_t id;
    uint32_t creation;
    if (tag == ETF_V4_PORT_EXT) {
        id = etf_get64(b);
        creation = etf_get32(b + 8);
    } else if (tag == ETF_NEW_PORT_EXT) {
        id = etf_get32(b);
        creation = etf_get32(b + 4);
    } else {
        id = etf_get32(b);
        creation = b[4];
        if (creation > DEC_MAX_OLD_CREATION)
            return fail_at(d, ETF_ETYPE, at);
    }
    return end_ident(d, heap_make_ext_port(d->h, node, id, creation, out), at, pos, p + fixed);
}

/* References: NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT, REFERENCE_EXT. */
static int read_ref(dec_t *d, size_t *pos, term_t *out)
{
    size_t at = *pos;
    uint8_t tag = d->buf[at];
    size_t p = at + 1;
    size_t nwords = 1;
    if (tag != ETF_REFERENCE_EXT) {
        if (have(d, p, 2, ETF_ETRUNCATED, at) != GD_OK)
            return d->err;
        nwords = etf_get16(d->buf + p);
        p += 2;
        /* OTP 25: NEWER_REFERENCE_EXT accepts 0..5 words, NEW_REFERENCE_EXT 1..5. */
        if (nwords > HEAP_REF_MAX_WORDS || (nwords == 0 && tag == ETF_NEW_REFERENCE_EXT))
            return fail_at(d, ETF_EREF_LEN, at);
    }
    term_t node;
    size_t cre_len = tag == ETF_NEWER_REFERENCE_EXT ? 4 : 1;
    size_t fixed = cre_len + 4 * nwords;
    const uint8_t *b = read_ident_node(d, at, &p, fixed, &node);
    if (b == NULL)
        return d->err;
    uint32_t creation, words[HEAP_REF_MAX_WORDS];
    if (tag == ETF_REFERENCE_EXT) {
        /* REFERENCE_EXT: ID before Creation. */
        words[0] = etf_get32(b);
        creation = b[4];
    } else {
        creation = cre_len == 4 ? etf_get32(b) : b[0];
        for (size_t i = 0; i < nwords; i++)
            words[i] = etf_get32(b + cre_len + 4 * i);
    }
    if (tag != ETF_NEWER_REFERENCE_EXT &&
        (creation > DEC_MAX_OLD_CREATION || words[0] > DEC_OLD_REF_WORD0_MAX))
        return fail_at(d, ETF_ETYPE, at);
    return end_ident(d, heap_make_ref(d->h, node, creation, words, nwords, out), at, pos,
                     p + fixed);
}

/*
 * FLOAT_EXT: 31 bytes of text, read as OTP's sys_chars_to_double reads
 * them (erts/emulator/sys/unix/sys_float.c, OTP 25): the text runs to the
 * first NUL, which the 31 bytes need not contain, so the scan goes on into
 * the bytes after the field (within the input; running off its end is a
 * failure here where OTP would read past the binary).  It must be all of
 *     [+-]? digit+ [.,] digit+ ([eE] [+-]? digit+)?
 * (',' is a radix point too: OTP retries strtod with the other character),
 * and the value must be finite; underflow to 0 or a subnormal is accepted.
 * Returns 0, ETF_EFLOAT, or an inflate error (recorded).
 */
static int parse_float_ext(dec_t *d, size_t at, double *out)
{
    const uint8_t *b = d->buf;
    size_t i = at;
#define FLOAT_AT(k) ((k) < d->len && need(d, (k) + 1) == GD_OK ? b[k] : 0)
#define FLOAT_DIGITS(start)                                                                        \
    do {                                                                                           \
        (start) = i;                                                                               \
        while (FLOAT_AT(i) >= '0' && FLOAT_AT(i) <= '9')                                           \
            i++;                                                                                   \
    } while (0)
    size_t start;
    int c = FLOAT_AT(i);
    if (c == '+' || c == '-')
        i++;
    FLOAT_DIGITS(start);
    if (i == start || (FLOAT_AT(i) != '.' && FLOAT_AT(i) != ','))
        goto bad;
    size_t radix = i++;
    FLOAT_DIGITS(start);
    if (i == start)
        goto bad;
    c = FLOAT_AT(i);
    if (c == 'e' || c == 'E') {
        i++;
        c = FLOAT_AT(i);
        if (c == '+' || c == '-')
            i++;
        FLOAT_DIGITS(start);
        if (i == start)
            goto bad;
    }
    /* The text must end in a NUL that is really there. */
    if (i >= d->len || FLOAT_AT(i) != 0)
        goto bad;
#undef FLOAT_DIGITS
#undef FLOAT_AT
    if (d->err != 0)
        return d->err; /* the stream broke while the text was scanned */
    size_t n = i - at;
    char small[64];
    char *text = n < sizeof small ? small : malloc(n + 1);
    if (text == NULL)
        return ETF_ENOMEM;
    memcpy(text, b + at, n);
    text[n] = 0;
    text[radix - at] = '.'; /* strtod in the C locale reads '.' */
    double v = strtod(text, NULL);
    if (text != small)
        free(text);
    if (!isfinite(v))
        return ETF_EFLOAT;
    *out = v;
    return GD_OK;
bad:
    return d->err != 0 ? d->err : ETF_EFLOAT;
}

/* ---- work stack and scratch ---- */

static GD_NOINLINE int grow_stack(dec_t *d)
{
    size_t cap = d->stack_cap * 2;
    dec_frame_t *s;
    if (d->stack == d->inline_stack) {
        s = malloc(cap * sizeof *s);
        if (s != NULL)
            memcpy(s, d->stack, d->stack_cap * sizeof *s);
    } else {
        s = realloc(d->stack, cap * sizeof *s);
    }
    if (s == NULL)
        return ETF_ENOMEM;
    d->stack = s;
    d->stack_cap = cap;
    return GD_OK;
}

/* After a failure: writes [] into every slot still pending, so nothing on
 * the heap holds an uninitialised word that looks like a term. */
static void fill_pending(dec_t *d, size_t sp)
{
    for (size_t i = 0; i < sp; i++) {
        dec_frame_t *f = &d->stack[i];
        switch (f->kind) {
        case FRAME_SEQ:
            for (size_t k = 0; k < f->remaining; k++)
                f->dest[k] = TERM_NIL;
            break;
        case FRAME_LIST:
            /* r slots left: r - 1 cars two words apart, then the last cdr. */
            if (f->remaining == 1) {
                f->dest[0] = TERM_NIL;
            } else if (f->remaining > 1) {
                for (size_t k = 0; k + 1 < f->remaining; k++)
                    f->dest[2 * k] = TERM_NIL;
                f->dest[2 * (f->remaining - 2) + 1] = TERM_NIL;
            }
            break;
        default:
            break; /* map scratch is freed; its destination already holds [] */
        }
    }
}

/* ---- the decoder proper ---- */

#define FAIL(code, off)                                                                            \
    do {                                                                                           \
        fail_at(d, (code), (off));                                                                 \
        goto fail;                                                                                 \
    } while (0)

/* Bytes left after one byte for every slot still pending on the stack
 * (after a header was read, fewer bytes than pending slots may be left). */
#define AVAIL() ((len - pos) > pending ? (len - pos) - pending : 0)
/* Room check for a variable-length part: n bytes (or slots) must fit in
 * what is left after every slot still pending on the stack. */
#define NEED_VAR(n, off)                                                                           \
    do {                                                                                           \
        if (GD_UNLIKELY((size_t)(n) > AVAIL()))                                                    \
            FAIL(ETF_ETOO_LARGE, off);                                                             \
    } while (0)
#define NEED_FIXED(n)                                                                              \
    do {                                                                                           \
        if (GD_UNLIKELY(d->ready - pos < (size_t)(n))) {                                           \
            if (len - pos < (size_t)(n))                                                           \
                FAIL(ETF_ETRUNCATED, pos);                                                         \
            if (inflate_to(d, pos + (n)) != GD_OK)                                                 \
                goto fail;                                                                         \
        }                                                                                          \
    } while (0)
/* The bytes up to `end` (already checked against len by NEED_VAR) exist:
 * inflates them if the term is compressed. */
#define NEED_IN(end)                                                                               \
    do {                                                                                           \
        if (GD_UNLIKELY(need(d, (end)) != GD_OK))                                                  \
            goto fail;                                                                             \
    } while (0)
/* Charges `words` heap words against the budget (max_heap) before they are
 * built. */
#define CHARGE(words)                                                                              \
    do {                                                                                           \
        if (GD_UNLIKELY(charge(d, (words), tag_off) != GD_OK))                                     \
            goto fail;                                                                             \
    } while (0)

/* Makes sure one more frame may be pushed (depth cap, stack room); done
 * before the compound is allocated, so a failure leaves no half-built
 * object whose slots no frame would fill. */
#define CAN_PUSH()                                                                                 \
    do {                                                                                           \
        if (GD_UNLIKELY(sp > d->max_depth))                                                        \
            FAIL(ETF_EDEPTH, tag_off);                                                             \
        if (GD_UNLIKELY(sp == d->stack_cap) && grow_stack(d) != GD_OK)                             \
            FAIL(ETF_ENOMEM, tag_off);                                                             \
    } while (0)

/* Pushes a frame; CAN_PUSH() must have succeeded just before. */
#define PUSH(kind_, dest_, count_, aux_)                                                           \
    do {                                                                                           \
        dec_frame_t *nf = &d->stack[sp++];                                                         \
        nf->dest = (dest_);                                                                        \
        nf->remaining = (count_);                                                                  \
        nf->aux = (aux_);                                                                          \
        nf->kind = (kind_);                                                                        \
        pending += (count_);                                                                       \
    } while (0)

#define HEAP_ALLOC(p, words)                                                                       \
    do {                                                                                           \
        CHARGE(words);                                                                             \
        (p) = heap_alloc(h, (words));                                                              \
        if (GD_UNLIKELY((p) == NULL))                                                              \
            FAIL(ETF_ENOMEM, tag_off);                                                             \
    } while (0)

#define HEAP_CALL(expr)                                                                            \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (GD_UNLIKELY(rc_ != GD_OK))                                                             \
            FAIL(map_heap_error(rc_), tag_off);                                                    \
    } while (0)

/* A sub-binary of the input binary for its bytes p[0..n). */
static int ref_input(dec_t *d, const uint8_t *p, size_t n, term_t *dest)
{
    if (d->src_refc == TERM_NONE) {
        int rc = heap_make_refc_binary(d->h, d->src, d->src->size * 8, &d->src_refc);
        if (rc != GD_OK)
            return rc;
    }
    return heap_make_sub_binary(d->h, d->src_refc, (size_t)(p - d->src->data) * 8, n * 8, dest);
}

/*
 * Decodes the term starting at d->buf[start]; on success *out is the term
 * and *end the offset just past it.  Returns 0 or an ETF_E* code (with
 * d->err/err_off set).
 */
static int decode_term(dec_t *d, size_t start, term_t *out, size_t *end)
{
    heap_t *h = d->h;
    const uint8_t *buf = d->buf;
    const size_t len = d->len;
    size_t pos = start;
    size_t pending = 0; /* slots on the stack still to fill */
    size_t sp = 0;
    term_t result = TERM_NIL;
    size_t tag_off = start;
    term_t *dest = NULL; /* the slot being decoded into */

    /* The root frame: one slot, the result. */
    d->stack[0] = (dec_frame_t){.dest = &result, .remaining = 1, .aux = NULL, .kind = FRAME_SEQ};
    sp = 1;
    pending = 1;

    for (;;) {
        dec_frame_t *f = &d->stack[sp - 1];
        if (f->remaining == 0) {
            if (f->kind == FRAME_MAP) {
                term_t *hdr = f->aux;
                size_t n = (size_t)hdr[MAP_HDR_N];
                term_t *keys = hdr + MAP_HDR_WORDS;
                term_t m;
                size_t before = heap_used_words(h);
                int rc = heap_make_map(h, keys, keys + n, n, &m);
                /* A hash map's size depends on its keys' hashes: charged
                 * once known (it is one allocation, bounded by O(n)). */
                if (rc == GD_OK && heap_used_words(h) - before > d->budget)
                    rc = ETF_EHEAP_LIMIT;
                else if (rc == GD_OK)
                    d->budget -= heap_used_words(h) - before;
                if (rc != GD_OK) {
                    sp--;        /* the map frame holds nothing to fill */
                    dest = NULL; /* and the last slot decoded is complete */
                    tag_off = (size_t)hdr[MAP_HDR_TAG_OFF];
                    FAIL(map_heap_error(rc), tag_off);
                }
                *(term_t *)(uintptr_t)hdr[MAP_HDR_DEST] = m;
                etf_scratch_mark_t mark = {
                    .chunk = (etf_scratch_chunk_t *)(uintptr_t)hdr[MAP_HDR_CHUNK],
                    .used = (size_t)hdr[MAP_HDR_USED],
                };
                etf_scratch_release(&d->scratch, mark);
            }
            if (--sp == 0)
                break;
            continue;
        }

        /* Take the frame's next slot. */
        dest = f->dest;
        f->remaining--;
        pending--;
        switch (f->kind) {
        case FRAME_SEQ:
            f->dest = dest + 1;
            break;
        case FRAME_LIST:
            f->dest = dest + (f->remaining == 1 ? 1 : 2);
            break;
        default: {
            size_t n = (size_t)f->aux[MAP_HDR_N];
            f->dest = (f->remaining & 1) ? dest + n : dest - (n - 1);
            break;
        }
        }

    again:
        tag_off = pos;
        NEED_FIXED(1);
        uint8_t tag = buf[pos];
        switch (tag) {
        case ETF_SMALL_INTEGER_EXT:
            NEED_FIXED(2);
            *dest = term_make_small(buf[pos + 1]);
            pos += 2;
            break;

        case ETF_INTEGER_EXT:
            NEED_FIXED(5);
            *dest = term_make_small((int32_t)etf_get32(buf + pos + 1));
            pos += 5;
            break;

        case ETF_SMALL_ATOM_UTF8_EXT:
        case ETF_SMALL_ATOM_EXT: {
            NEED_FIXED(2);
            size_t n = buf[pos + 1];
            NEED_VAR(n + 2, pos);
            NEED_IN(pos + 2 + n);
            int rc = resolve_atom(d, buf + pos + 2, n, tag == ETF_SMALL_ATOM_EXT, dest);
            if (GD_UNLIKELY(rc != GD_OK))
                FAIL(rc, tag_off);
            pos += 2 + n;
            break;
        }

        case ETF_ATOM_EXT:
        case ETF_ATOM_UTF8_EXT: {
            NEED_FIXED(3);
            size_t n = etf_get16(buf + pos + 1);
            NEED_VAR(n + 3, pos);
            NEED_IN(pos + 3 + n);
            int rc = resolve_atom(d, buf + pos + 3, n, tag == ETF_ATOM_EXT, dest);
            if (GD_UNLIKELY(rc != GD_OK))
                FAIL(rc, tag_off);
            pos += 3 + n;
            break;
        }

        case ETF_ATOM_CACHE_REF:
            if (read_atom(d, &pos, ETF_EATOM_CACHE, dest) != GD_OK)
                goto fail;
            break;

        case ETF_NIL_EXT:
            *dest = TERM_NIL;
            pos += 1;
            break;

        case ETF_SMALL_TUPLE_EXT:
        case ETF_LARGE_TUPLE_EXT: {
            size_t arity;
            if (tag == ETF_SMALL_TUPLE_EXT) {
                NEED_FIXED(2);
                arity = buf[pos + 1];
                pos += 2;
            } else {
                NEED_FIXED(5);
                arity = etf_get32(buf + pos + 1);
                pos += 5;
            }
            NEED_VAR(arity, tag_off);
            if (arity > 0)
                CAN_PUSH();
            term_t *p;
            HEAP_ALLOC(p, 1 + arity);
            p[0] = heap_make_header(HDR_TUPLE, arity);
            *dest = term_make_boxed(p);
            if (arity > 0)
                PUSH(FRAME_SEQ, p + 1, arity, NULL);
            break;
        }

        case ETF_STRING_EXT: {
            NEED_FIXED(3);
            size_t n = etf_get16(buf + pos + 1);
            pos += 3;
            NEED_VAR(n, tag_off);
            NEED_IN(pos + n);
            if (n == 0) {
                *dest = TERM_NIL;
                break;
            }
            term_t *p;
            HEAP_ALLOC(p, 2 * n);
            const uint8_t *s = buf + pos;
            for (size_t i = 0; i < n; i++) {
                p[2 * i] = term_make_small(s[i]);
                p[2 * i + 1] = term_make_list(p + 2 * i + 2);
            }
            p[2 * n - 1] = TERM_NIL;
            *dest = term_make_list(p);
            pos += n;
            break;
        }

        case ETF_LIST_EXT: {
            NEED_FIXED(5);
            size_t n = etf_get32(buf + pos + 1);
            pos += 5;
            if (n == 0)
                goto again; /* LIST_EXT of length 0 is its tail (OTP 25) */
            NEED_VAR(n + 1, tag_off);
            CAN_PUSH();
            term_t *p;
            HEAP_ALLOC(p, 2 * n);
            for (size_t i = 0; i + 1 < n; i++)
                p[2 * i + 1] = term_make_list(p + 2 * i + 2);
            *dest = term_make_list(p);
            PUSH(FRAME_LIST, p, n + 1, NULL);
            break;
        }

        case ETF_BINARY_EXT: {
            NEED_FIXED(5);
            size_t n = etf_get32(buf + pos + 1);
            pos += 5;
            NEED_VAR(n, tag_off);
            NEED_IN(pos + n);
            if (n > HEAP_BIN_MAX_BYTES && buf == d->src_buf) {
                /* Its bytes are in the input already: referenced, not copied. */
                CHARGE(DEC_BIN_HDR_WORDS + DEC_SUB_BIN_WORDS);
                HEAP_CALL(ref_input(d, buf + pos, n, dest));
                pos += n;
                break;
            }
            CHARGE(DEC_BIN_HDR_WORDS + (n + 7) / 8);
            uint8_t *data;
            HEAP_CALL(heap_make_bitstring_uninit(h, n * 8, &data, dest));
            memcpy(data, buf + pos, n);
            pos += n;
            break;
        }

        case ETF_BIT_BINARY_EXT: {
            NEED_FIXED(6);
            size_t n = etf_get32(buf + pos + 1);
            unsigned bits = buf[pos + 5];
            pos += 6;
            if (n == 0 ? bits != 0 : (bits == 0 || bits > 8))
                FAIL(ETF_EBITS, tag_off);
            NEED_VAR(n, tag_off);
            NEED_IN(pos + n);
            CHARGE(DEC_BIN_HDR_WORDS + (n + 7) / 8);
            size_t bit_size = n == 0 ? 0 : (n - 1) * 8 + bits;
            uint8_t *data;
            HEAP_CALL(heap_make_bitstring_uninit(h, bit_size, &data, dest));
            if (n > 0) {
                memcpy(data, buf + pos, n);
                data[n - 1] &= (uint8_t)(0xFF00u >> bits); /* dirty tail bits */
            }
            pos += n;
            break;
        }

        case ETF_NEW_FLOAT_EXT: {
            NEED_FIXED(9);
            uint64_t bits = etf_get64(buf + pos + 1);
            double v;
            memcpy(&v, &bits, sizeof v);
            if (GD_UNLIKELY(!isfinite(v)))
                FAIL(ETF_EFLOAT, tag_off);
            term_t *p;
            HEAP_ALLOC(p, 2);
            p[0] = heap_make_header(HDR_FLOAT, 1);
            memcpy(p + 1, &v, sizeof v);
            *dest = term_make_boxed(p);
            pos += 9;
            break;
        }

        case ETF_FLOAT_EXT: {
            NEED_FIXED(1 + ETF_FLOAT_EXT_LEN);
            double v;
            int rc = parse_float_ext(d, pos + 1, &v);
            if (GD_UNLIKELY(rc != GD_OK)) {
                if (rc != d->err)
                    FAIL(rc, tag_off);
                goto fail; /* inflating failed, already recorded */
            }
            term_t *p;
            HEAP_ALLOC(p, 2);
            p[0] = heap_make_header(HDR_FLOAT, 1);
            memcpy(p + 1, &v, sizeof v);
            *dest = term_make_boxed(p);
            pos += 1 + ETF_FLOAT_EXT_LEN;
            break;
        }

        case ETF_SMALL_BIG_EXT:
        case ETF_LARGE_BIG_EXT: {
            size_t n, hdr;
            if (tag == ETF_SMALL_BIG_EXT) {
                NEED_FIXED(3);
                n = buf[pos + 1];
                hdr = 3;
            } else {
                NEED_FIXED(6);
                n = etf_get32(buf + pos + 1);
                hdr = 6;
            }
            bool neg = buf[pos + hdr - 1] != 0;
            pos += hdr;
            NEED_VAR(n, tag_off);
            NEED_IN(pos + n);
            CHARGE(DEC_BIG_HDR_WORDS + (n + 7) / 8);
            const uint8_t *s = buf + pos;
            if (n <= 8) {
                uint64_t mag = 0;
                for (size_t i = 0; i < n; i++)
                    mag |= (uint64_t)s[i] << (8 * i);
                HEAP_CALL(heap_make_integer_digits(h, neg, &mag, 1, dest));
            } else {
                int rc = heap_make_integer_le(h, neg, s, n, dest);
                if (rc == GD_ESYSTEM_LIMIT)
                    FAIL(ETF_EBIG, tag_off);
                if (rc != GD_OK)
                    FAIL(map_heap_error(rc), tag_off);
            }
            pos += n;
            break;
        }

        case ETF_MAP_EXT: {
            NEED_FIXED(5);
            size_t n = etf_get32(buf + pos + 1);
            pos += 5;
            if (n > AVAIL() / 2)
                FAIL(ETF_ETOO_LARGE, tag_off);
            if (n == 0) {
                HEAP_CALL(heap_make_map(h, NULL, NULL, 0, dest));
                break;
            }
            CAN_PUSH();
            /* The scratch block; the map itself is charged when built. */
            CHARGE(MAP_HDR_WORDS + 2 * n);
            etf_scratch_mark_t mark;
            term_t *hdr = etf_scratch_alloc(&d->scratch, MAP_HDR_WORDS + 2 * n, &mark);
            if (hdr == NULL)
                FAIL(ETF_ENOMEM, tag_off);
            hdr[MAP_HDR_DEST] = (term_t)(uintptr_t)dest;
            hdr[MAP_HDR_N] = n;
            hdr[MAP_HDR_TAG_OFF] = tag_off;
            hdr[MAP_HDR_CHUNK] = (term_t)(uintptr_t)mark.chunk;
            hdr[MAP_HDR_USED] = mark.used;
            *dest = TERM_NIL; /* until the map is built */
            PUSH(FRAME_MAP, hdr + MAP_HDR_WORDS, 2 * n, hdr);
            break;
        }

        case ETF_NEW_PID_EXT:
        case ETF_PID_EXT:
            CHARGE(DEC_IDENT_WORDS);
            if (read_pid(d, &pos, dest) != GD_OK)
                goto fail;
            break;

        case ETF_NEW_PORT_EXT:
        case ETF_V4_PORT_EXT:
        case ETF_PORT_EXT:
            CHARGE(DEC_IDENT_WORDS);
            if (read_port(d, &pos, dest) != GD_OK)
                goto fail;
            break;

        case ETF_NEWER_REFERENCE_EXT:
        case ETF_NEW_REFERENCE_EXT:
        case ETF_REFERENCE_EXT:
            CHARGE(DEC_IDENT_WORDS);
            if (read_ref(d, &pos, dest) != GD_OK)
                goto fail;
            break;

        case ETF_EXPORT_EXT: {
            size_t p = pos + 1;
            term_t mod, fun;
            int64_t arity;
            if (read_atom(d, &p, ETF_EEXPORT, &mod) != GD_OK ||
                read_atom(d, &p, ETF_EEXPORT, &fun) != GD_OK ||
                read_small_field(d, &p, ETF_EEXPORT, &arity) != GD_OK)
                goto fail;
            /* OTP accepts any non-negative small arity; girder's export
             * holds 0..255, the most a function can have. */
            if (arity < 0 || arity > 255)
                FAIL(ETF_EEXPORT, tag_off);
            CHARGE(DEC_IDENT_WORDS);
            HEAP_CALL(heap_make_export(h, mod, fun, (uint8_t)arity, dest));
            pos = p;
            break;
        }

        case ETF_NEW_FUN_EXT: {
            /* Size:32 is not checked: OTP 25 ignores it (probed). */
            NEED_FIXED(1 + 4 + 1 + 16 + 4 + 4);
            heap_fun_info_t info;
            const uint8_t *b = buf + pos + 5;
            info.arity = b[0];
            memcpy(info.uniq, b + 1, 16);
            info.index = etf_get32(b + 17);
            info.num_free = etf_get32(b + 21);
            size_t p = pos + 1 + 4 + 1 + 16 + 4 + 4;
            if (info.num_free > DEC_FUN_MAX_FREE)
                FAIL(ETF_EFUN, tag_off);
            int64_t old_index, old_uniq;
            if (read_atom(d, &p, ETF_EFUN, &info.module) != GD_OK ||
                read_small_field(d, &p, ETF_EFUN, &old_index) != GD_OK ||
                read_small_field(d, &p, ETF_EFUN, &old_uniq) != GD_OK)
                goto fail;
            /* OTP keeps both as 32-bit words and re-encodes them signed. */
            info.old_index = term_make_small((int32_t)(uint32_t)old_index);
            info.old_uniq = term_make_small((int32_t)(uint32_t)old_uniq);
            pos = p;
            /* The Pid slot: OTP 25 decodes any term there (it no longer
             * uses it) and keeps it, so it is decoded as the first of the
             * fun's slots, in the word just before the free variables. */
            info.pid = TERM_NIL;
            NEED_VAR((size_t)info.num_free + 1, tag_off);
            CAN_PUSH();
            CHARGE(1 + 8 + (size_t)info.num_free);
            term_t *free_vars;
            HEAP_CALL(heap_make_fun(h, &info, &free_vars, dest));
            GD_ASSERT(free_vars - 1 == term_boxed_ptr(*dest) + 8); /* heap_make_fun's layout */
            PUSH(FRAME_SEQ, free_vars - 1, (size_t)info.num_free + 1, NULL);
            break;
        }

        case ETF_FUN_EXT:
            FAIL(ETF_EOLD_FUN, tag_off);
        case ETF_LOCAL_EXT:
            FAIL(ETF_ELOCAL, tag_off);
        case ETF_COMPRESSED:
            FAIL(ETF_ECOMPRESSED, tag_off); /* only valid right after 131 */
        default:
            FAIL(ETF_EUNKNOWN_TAG, tag_off);
        }
    }
    *out = result;
    *end = pos;
    return GD_OK;

fail:
    if (dest != NULL)
        *dest = TERM_NIL;
    fill_pending(d, sp);
    return d->err;
}

#undef FAIL

static void dec_init(dec_t *d, heap_t *h, const etf_decode_opts_t *opts)
{
    d->h = h;
    d->off_bias = 0;
    d->safe = opts != NULL && opts->safe;
    d->cache_refs = opts != NULL ? opts->atom_cache_refs : NULL;
    d->cache_count = opts != NULL ? opts->atom_cache_count : 0;
    d->max_depth = opts != NULL && opts->max_depth != 0 ? opts->max_depth : ETF_MAX_DEPTH_DEFAULT;
    d->max_decompressed = opts != NULL && opts->max_decompressed != 0
                              ? opts->max_decompressed
                              : ETF_MAX_DECOMPRESSED_DEFAULT;
    size_t max_heap = opts != NULL && opts->max_heap != 0 ? opts->max_heap : ETF_MAX_HEAP_DEFAULT;
    d->budget = max_heap / sizeof(term_t);
    d->src = opts != NULL ? opts->input_bin : NULL;
    d->src_buf = NULL;
    d->src_refc = TERM_NONE;
    d->zi = NULL;
    d->err = 0;
    d->err_off = 0;
    d->stack = d->inline_stack;
    d->stack_cap = DEC_INLINE_FRAMES;
    etf_scratch_init(&d->scratch, d->inline_scratch, DEC_INLINE_SCRATCH);
}

static void dec_release(dec_t *d)
{
    if (d->stack != d->inline_stack)
        free(d->stack);
    d->stack = d->inline_stack;
    etf_scratch_free(&d->scratch);
}

/*
 * The buffer a compressed term inflates into.  Large ones are mapped, not
 * malloc'ed, so their pages cost memory only once the stream fills them
 * (malloc'ed, a sanitizer build would write shadow for all of a 1 GB
 * claim up front), with an inaccessible page after the end so a stray read
 * faults.  Small ones (every input the fuzzer makes) stay malloc'ed, under
 * the sanitizers' eye.  NULL when out of memory.
 */
static uint8_t *plain_alloc(size_t size, size_t *mapped)
{
    *mapped = 0;
    if (size < DEC_MAP_MIN)
        return malloc(size);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t total = (size + page - 1) / page * page + page;
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (mprotect((uint8_t *)p + total - page, page, PROT_NONE) != 0) {
        munmap(p, total);
        return NULL;
    }
    *mapped = total;
    return p;
}

static void plain_free(uint8_t *p, size_t mapped)
{
    if (mapped != 0)
        munmap(p, mapped);
    else
        free(p);
}

/*
 * COMPRESSED: buf[1] = 80, then Size:32 and a zlib stream.  The inflated
 * bytes must number exactly Size (refusing more, fewer, a Size above the
 * caps or above what the remaining input could inflate to); the term is
 * decoded from them as they are inflated (see dec_inflate_t), the Size
 * bytes charged to the heap budget up front.  Trailing bytes inside the
 * inflated data are accepted as OTP 25 does.  Errors in the envelope are
 * reported at offset 1 (the 80); errors are reported in the order the
 * decoder meets them, so a term found malformed (or over budget) in the
 * first bytes fails before a corrupt stream further on is noticed.
 * *end = bytes of buf consumed, up to the end of the zlib stream.
 */
static int decode_compressed(dec_t *d, const uint8_t *buf, size_t len, term_t *out, size_t *end)
{
    if (len < 6)
        return fail_at(d, ETF_ETRUNCATED, 1);
    size_t size = etf_get32(buf + 2);
    size_t zlen = len - 6;
    if (size > d->max_decompressed)
        return fail_at(d, ETF_ETOO_LARGE, 1);
    if (size == 0 || size / DEC_MAX_INFLATE_RATIO > zlen)
        return fail_at(d, ETF_ECOMPRESSED, 1);
    /* The inflated bytes count against the same budget as the heap. */
    if (charge(d, (size + sizeof(term_t) - 1) / sizeof(term_t), 1) != GD_OK)
        return d->err;
    size_t mapped;
    uint8_t *plain = plain_alloc(size, &mapped);
    if (plain == NULL)
        return fail_at(d, ETF_ENOMEM, 1);
    int rc;
    dec_inflate_t zi;
    memset(&zi, 0, sizeof zi);
    if (inflateInit(&zi.zs) != Z_OK) {
        rc = fail_at(d, ETF_ENOMEM, 1);
        goto free_plain;
    }
    zi.in = buf + 6;
    zi.in_left = zlen;
    zi.in_len = zlen;
    d->buf = plain;
    d->len = size;
    d->ready = 0;
    d->zi = &zi;
    d->off_bias = 1;
    size_t term_end;
    rc = decode_term(d, 0, out, &term_end);
    if (rc == GD_OK)
        rc = finish_inflate(d);
    d->off_bias = 0;
    d->zi = NULL;
    if (rc == GD_OK)
        *end = 6 + (zi.in_len - zi.in_left - zi.zs.avail_in);
    inflateEnd(&zi.zs);
free_plain:
    plain_free(plain, mapped);
    return rc;
}

static int decode_common(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts,
                         bool versioned, term_t *out, size_t *used, etf_error_t *err)
{
    dec_t d;
    dec_init(&d, h, opts);
    d.buf = buf;
    d.len = len;
    d.ready = len;
    if (d.src != NULL && buf >= d.src->data && len <= d.src->size &&
        (size_t)(buf - d.src->data) <= d.src->size - len)
        d.src_buf = buf;
    int rc;
    term_t t = TERM_NIL;
    size_t end = 0;
    if (!versioned) {
        rc = decode_term(&d, 0, &t, &end);
    } else if (len == 0 || buf[0] != ETF_VERSION_MAGIC) {
        rc = fail_at(&d, ETF_EVERSION, 0);
    } else if (len > 1 && buf[1] == ETF_COMPRESSED) {
        rc = decode_compressed(&d, buf, len, &t, &end);
    } else {
        rc = decode_term(&d, 1, &t, &end);
    }
    if (rc == GD_OK && opts != NULL && opts->no_trailing && end < len)
        rc = fail_at(&d, ETF_ETRAILING, end);
    dec_release(&d);
    if (err != NULL) {
        err->code = rc;
        err->offset = rc == GD_OK ? 0 : d.err_off;
    }
    if (rc != GD_OK)
        return rc;
    *out = t;
    if (used != NULL)
        *used = end;
    return GD_OK;
}

/* Decodes `131 Tag ...` (or a compressed `131 80 ...`) from buf[0..len)
 * onto h; see etf.h for the contract.  Borrows buf; the term is owned by h
 * (off-heap binaries on h's off-heap list).  O(len + size of the term). */
int etf_decode(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts,
               term_t *out, size_t *used, etf_error_t *err)
{
    return decode_common(h, buf, len, opts, true, out, used, err);
}

/* As etf_decode for a term without the version byte (terms after a dist
 * header); a COMPRESSED tag is not valid there (ETF_ECOMPRESSED). */
int etf_decode_body(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts,
                    term_t *out, size_t *used, etf_error_t *err)
{
    return decode_common(h, buf, len, opts, false, out, used, err);
}
