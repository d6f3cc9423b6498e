/*
 * etf.h — the External Term Format codec and the text syntax of terms.
 *
 * This is the one header etf/ exposes to its siblings.  Protocol constants
 * (every ETF tag) are named once here; no tag byte appears as a bare number
 * anywhere else.
 *
 * Decoding treats its input as hostile: every length is checked against the
 * bytes that remain before anything is allocated, nesting is walked with an
 * explicit work stack (no C recursion), depth, size and decompressed size are
 * capped, and each failure reports a distinct code and the byte offset.
 *
 * Encoding produces exactly what `term_to_binary/1,2` produces on a chosen
 * OTP release (25 by default; 26+ differs in atom encoding), maps of more
 * than 32 keys included as far as their keys allow (see "Map pair order").
 *
 * Decoding accepts what OTP 25's `binary_to_term/1,2` accepts, with these
 * deliberate deviations, each refusing input OTP would take:
 *   - Trailing bytes.  binary_to_term/1 ignores bytes after the term and
 *     binary_to_term(B, [used]) reports how many it read.  etf_decode does
 *     both by default (*used is the bytes consumed); opts->no_trailing
 *     refuses them (ETF_ETRAILING), as `girder term decode` does.
 *   - Nesting deeper than opts->max_depth (ETF_MAX_DEPTH_DEFAULT, 100,000):
 *     ETF_EDEPTH.  OTP has no cap; girder's printer, encoder, text parser
 *     and copier share this one, so a term that decodes can be printed,
 *     re-encoded and parsed back.
 *   - More memory than opts->max_heap (ETF_MAX_HEAP_DEFAULT, 1 GiB):
 *     ETF_EHEAP_LIMIT.  OTP builds whatever the input describes.
 *   - EXPORT_EXT with an arity above 255: ETF_EEXPORT.  OTP accepts any
 *     non-negative small; no function has more than 255 arguments, and
 *     girder's export keeps the arity in a byte.
 *   - Tags 73 and 75 (ATOM_INTERNAL_REF2/3): ETF_EUNKNOWN_TAG.  OTP uses
 *     them only between its own processes to name an atom by its index in
 *     the local atom table; accepting them from outside would decode atoms
 *     by table position.
 *   - FLOAT_EXT text with no NUL before the end of the input: ETF_EFLOAT.
 *     OTP reads the text up to a NUL wherever it is, past the end of the
 *     binary if need be.
 *   - NEWER_REFERENCE_EXT (and NEW_REFERENCE_EXT) with 0 id words:
 *     ETF_ETYPE.  OTP 25 reads one id word regardless, past the end of the
 *     input if need be, so its answer depends on the memory that follows.
 * Pids, ports and references naming the local node (heap_node_name(),
 * heap_node_creation()) decode to the local forms; numbers outside OTP's
 * local ranges fail as binary_to_term fails (badarg), and a shorter local
 * reference is widened to 3 words as OTP does.
 */
#ifndef GIRDER_ETF_H
#define GIRDER_ETF_H

#include "heap.h"

/* ---- ETF tags (erts/emulator/beam/external.h) ---- */
#define ETF_VERSION_MAGIC 131
#define ETF_COMPRESSED 80
#define ETF_DIST_HEADER 68
#define ETF_DIST_FRAG_HEADER 69
#define ETF_DIST_FRAG_CONT 70
#define ETF_NEW_FLOAT_EXT 70
#define ETF_BIT_BINARY_EXT 77
#define ETF_ATOM_CACHE_REF 82
#define ETF_NEW_PID_EXT 88
#define ETF_NEW_PORT_EXT 89
#define ETF_NEWER_REFERENCE_EXT 90
#define ETF_SMALL_INTEGER_EXT 97
#define ETF_INTEGER_EXT 98
#define ETF_FLOAT_EXT 99
#define ETF_ATOM_EXT 100
#define ETF_REFERENCE_EXT 101
#define ETF_PORT_EXT 102
#define ETF_PID_EXT 103
#define ETF_SMALL_TUPLE_EXT 104
#define ETF_LARGE_TUPLE_EXT 105
#define ETF_NIL_EXT 106
#define ETF_STRING_EXT 107
#define ETF_LIST_EXT 108
#define ETF_BINARY_EXT 109
#define ETF_SMALL_BIG_EXT 110
#define ETF_LARGE_BIG_EXT 111
#define ETF_NEW_FUN_EXT 112
#define ETF_EXPORT_EXT 113
#define ETF_NEW_REFERENCE_EXT 114
#define ETF_SMALL_ATOM_EXT 115
#define ETF_MAP_EXT 116
#define ETF_FUN_EXT 117
#define ETF_ATOM_UTF8_EXT 118
#define ETF_SMALL_ATOM_UTF8_EXT 119
#define ETF_V4_PORT_EXT 120
#define ETF_LOCAL_EXT 121

/* ---- limits ---- */
/* Deepest nesting the decoder, encoder and text parser accept (one level
 * per non-empty tuple, list or map; the printer takes any depth). */
#define ETF_MAX_DEPTH_DEFAULT 100000
/* Largest inflated size of a compressed term the decoder accepts (bytes). */
#define ETF_MAX_DECOMPRESSED_DEFAULT ((size_t)1 << 30)
/* Most memory one decode may build, in bytes: heap words of the term,
 * off-heap binary bytes, map scratch, and a compressed term's inflated
 * bytes all count against it. */
#define ETF_MAX_HEAP_DEFAULT ((size_t)1 << 30)
/* Largest STRING_EXT (elements). */
#define ETF_STRING_EXT_MAX 65535
/* Longest FLOAT_EXT text. */
#define ETF_FLOAT_EXT_LEN 31

/* ---- error codes: distinct per failure, in etf/'s range ---- */
enum {
    ETF_EVERSION = -100,     /* missing or wrong version byte (131) */
    ETF_ETRUNCATED = -101,   /* input ends inside a term */
    ETF_EUNKNOWN_TAG = -102, /* tag byte not in the table */
    ETF_EATOM = -103,        /* atom text invalid: > 255 chars or bad UTF-8 */
    ETF_EATOM_UNSAFE = -104, /* safe mode: the atom does not exist */
    ETF_EATOM_TABLE_FULL = -105,
    ETF_EATOM_CACHE = -106,    /* ATOM_CACHE_REF without a cache, or bad index */
    ETF_EDEPTH = -107,         /* nesting deeper than max_depth */
    ETF_ETOO_LARGE = -108,     /* a length exceeds what the input can hold or a cap */
    ETF_EFLOAT = -109,         /* NaN/Inf or an unparsable FLOAT_EXT */
    ETF_EBITS = -110,          /* BIT_BINARY_EXT bits field out of range */
    ETF_EDUPLICATE_KEY = -111, /* MAP_EXT with the same key twice */
    ETF_ENODE = -112,          /* pid/port/ref node is not an atom */
    ETF_EREF_LEN = -113,       /* reference with more than 5 id words */
    ETF_EFUN = -114,           /* malformed NEW_FUN_EXT (size, fields) */
    ETF_EEXPORT = -115,        /* malformed EXPORT_EXT */
    ETF_ECOMPRESSED = -116,    /* bad zlib data or inflated size != declared */
    ETF_EBIG = -117,           /* bignum larger than the runtime's limit */
    ETF_ELOCAL = -118,         /* LOCAL_EXT (only its creating node can decode it) */
    ETF_EOLD_FUN = -119,       /* FUN_EXT, rejected since OTP 23 */
    ETF_ENOMEM = -120,         /* allocation failed */
    ETF_ETRAILING = -121,      /* bytes after the term (only when forbidden) */
    ETF_EUNENCODABLE = -122,   /* encode: the term cannot be expressed in ETF */
    ETF_ETYPE = -123,          /* a field has the wrong type (e.g. EXPORT arity) */
    ETF_EPARSE = -124,         /* text syntax error */
    ETF_EHEAP_LIMIT = -125,    /* the decoded term would exceed max_heap */
};

/* Describes any code: ETF_E* or GD_E*. */
const char *etf_strerror(int code);

/* Where decoding (or parsing) failed. */
typedef struct etf_error {
    int code;      /* ETF_E* (0 on success) */
    size_t offset; /* byte offset into the input where the problem was found */
} etf_error_t;

typedef struct etf_decode_opts {
    /* Refuse to create atoms (like binary_to_term(B, [safe])): unknown atoms
     * fail with ETF_EATOM_UNSAFE and the atom table is not changed. */
    bool safe;
    /* Fail with ETF_ETRAILING if bytes follow the term (binary_to_term/1
     * accepts them; callers that need the consumed length use *used). */
    bool no_trailing;
    size_t max_depth;        /* 0 = ETF_MAX_DEPTH_DEFAULT */
    size_t max_decompressed; /* 0 = ETF_MAX_DECOMPRESSED_DEFAULT */
    /* Bytes the decode may build (0 = ETF_MAX_HEAP_DEFAULT): every heap
     * word, off-heap binary byte and inflated byte counts, charged before
     * it is allocated, so a zip bomb (a few KB claiming a list of 10^9
     * elements) fails with ETF_EHEAP_LIMIT at once instead of building
     * it. */
    size_t max_heap;
    /* Atoms of the current distribution header, for ATOM_CACHE_REF (82).
     * NULL: tag 82 is rejected with ETF_EATOM_CACHE. */
    const term_t *atom_cache_refs;
    size_t atom_cache_count;
    /* The off-heap binary the input lies in (NULL: none).  When buf is
     * inside input_bin->data, a BINARY_EXT of more than HEAP_BIN_MAX_BYTES
     * (not inside a compressed term) decodes to a sub-binary of it, its
     * bytes referenced rather than copied (the distribution receive path:
     * a frame's binaries are copied once, from the socket buffer into the
     * frame's buffer).  The binary must not change while such terms live
     * (refc > 1 once one was made). */
    heap_binary_t *input_bin;
} etf_decode_opts_t;

/*
 * Decodes one term from buf[0..len), which starts with the version byte 131
 * (and may be a compressed 131 80 term).  The term is built on h; *used gets
 * the bytes consumed (trailing bytes are allowed unless opts->no_trailing).
 * opts may be NULL (defaults).  On failure returns the ETF_E* code, fills
 * *err (if non-NULL) with it and the offset; words already allocated on h
 * stay there as garbage but no term escapes and nothing off-heap leaks.
 * Work is O(len) plus the size of the decoded term; heap use is bounded by
 * a constant times len (decompressed) and by opts->max_heap, checked before
 * each allocation (ETF_EHEAP_LIMIT).  A compressed term is inflated as it
 * is decoded, so one that fails early (over budget, malformed) inflates
 * only what was read; the zlib stream's own errors (ETF_ECOMPRESSED) are
 * then reported only if met first.
 */
int etf_decode(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts,
               term_t *out, size_t *used, etf_error_t *err) GD_MUST_CHECK;

/* As etf_decode for a term without the version byte (inside dist frames). */
int etf_decode_body(heap_t *h, const uint8_t *buf, size_t len, const etf_decode_opts_t *opts,
                    term_t *out, size_t *used, etf_error_t *err) GD_MUST_CHECK;

/* A growable output buffer (malloc'ed; caller frees data). */
typedef struct etf_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} etf_buf_t;

/* Makes room for `more` bytes; GD_ENOMEM on failure. */
int etf_buf_reserve(etf_buf_t *b, size_t more) GD_MUST_CHECK;
void etf_buf_free(etf_buf_t *b);

/* Binaries an encoding references instead of copying (etf_encode_opts_t
 * .bin_refs): each is data[0..len) of an off-heap binary (a reference
 * held in bin) whose bytes belong at byte `at` of the output, which holds
 * everything else (so the encoding is the output with each binary's bytes
 * inserted at its `at`, in order).  The distribution send path writes a
 * big binary from where it lies, as OTP does, instead of copying it. */
typedef struct etf_bin_ref {
    size_t at;
    const uint8_t *data;
    size_t len;
    heap_binary_t *bin;
} etf_bin_ref_t;
typedef struct etf_bin_refs {
    etf_bin_ref_t *v;
    size_t n, cap;
    size_t min_len; /* binaries of at least this many bytes are referenced (0: none) */
    size_t bytes;   /* sum of the lens */
} etf_bin_refs_t;
/* Drops every reference (n = 0; the array is kept). */
void etf_bin_refs_clear(etf_bin_refs_t *r);
/* Drops them and frees the array. */
void etf_bin_refs_free(etf_bin_refs_t *r);

typedef struct etf_encode_opts {
    /* OTP release whose term_to_binary output to reproduce: 25 (default, if
     * 0) emits ATOM_EXT for Latin-1 atoms; 26 and later emit UTF-8 atoms. */
    int otp_release;
    /* -1 (or any negative) = no compression; 0..9 = zlib level, with OTP's
     * rule that the compressed form is used only if it is smaller. */
    int compressed;
    /* Maps of every size in key term order ([deterministic]); otherwise maps
     * over 32 keys come out in OTP's hash order (see "Map pair order"). */
    bool deterministic;
    /* -1 = the release's default; 0 = FLOAT_EXT and Latin-1 atoms; 1 = NEW_FLOAT
     * and Latin-1 atoms where possible; 2 = UTF-8 atoms. */
    int minor_version;
    /* Deepest nesting accepted (0 = ETF_MAX_DEPTH_DEFAULT), counted as the
     * decoder counts it, so whatever decodes under a limit encodes under it. */
    size_t max_depth;
    /* NULL: every binary is copied.  Else byte-aligned binaries of at least
     * bin_refs->min_len bytes backed by an off-heap binary, outside funs,
     * are appended to it instead of being copied (etf_encode_body only;
     * on failure the caller clears what was appended). */
    etf_bin_refs_t *bin_refs;
} etf_encode_opts_t;

/* Default options: OTP 25, no compression. */
void etf_encode_opts_init(etf_encode_opts_t *o);

/*
 * Map pair order.  Maps of up to 32 keys are emitted sorted by key (OTP's
 * flatmaps).  Larger maps are emitted in OTP 25's order (etf/otp_map_order.c):
 * descending by the nibble-reversed 32-bit internal hash of the key
 * (make_internal_hash(Key, 0), the HAMT order erts' encoder walks), checked
 * byte for byte against OTP 25.2.3 in tests/etf/test_map_order.c and
 * tests/interop.  [deterministic] sorts maps of every size by key instead,
 * as OTP does.
 *
 * Exact for keys made of integers, floats, binaries, bitstrings, lists,
 * tuples and maps of those.  Not reproducible outside the emitting VM, so
 * only deterministic here:
 * - atoms: OTP 25 hashes an atom's tagged word, i.e. its index in that VM's
 *   atom table (probed: the same 40 atom keys encode in different orders
 *   when the atoms were created in a different order); girder uses its own
 *   atom index;
 * - pids, ports, references, funs and exports: OTP mixes in the address of
 *   the node or export entry (local pids and ports: VM-specific words);
 *   girder uses the node atom, creation and numbers, and hashes a local pid
 *   or port as the external one it decodes back to, so that decoding and
 *   re-encoding gives the same bytes;
 * - keys whose full 32-bit hashes are equal (about n^2 / 2^33 pairs in an
 *   n-key map): OTP 25 rehashes them with a rule that neither the salt nor
 *   the cons form of hashmap_restore_hash in the sources we could read
 *   reproduces (probed on 60 colliding integer pairs); girder orders them by
 *   key.
 * OTP 26 and later (otp_release >= 26) get the same order: not checked, as
 * no OTP 26+ node runs here and the captures hold no map over 32 keys.  What
 * the sources say: OTP 26 keeps this hash (salt, Jenkins mix, tagged words)
 * unless the emulator was built with ERL_INTERNAL_HASH_CRC32C (then the mix
 * is the CRC32C instruction: a build option, not a release property), puts
 * fully colliding keys in collision nodes in key order, and changes how
 * refs, pids and funs are hashed; a later release (erl_term_hashing.c,
 * dated 2022-2025, so OTP 28 as far as we can tell) replaces it with a
 * 64-bit MurmurHash3-based map hash over 16 HAMT levels, which girder does
 * not implement.
 */

/*
 * Appends 131 + the encoding of t to *out (compressed if asked and smaller).
 * Errors: ETF_EUNENCODABLE, ETF_EDEPTH, ETF_ENOMEM.  O(size of t); no
 * recursion.  On failure out->len is unchanged.
 */
int etf_encode(term_t t, const etf_encode_opts_t *opts, etf_buf_t *out) GD_MUST_CHECK;

/* As etf_encode without the version byte and never compressed (dist). */
int etf_encode_body(term_t t, const etf_encode_opts_t *opts, etf_buf_t *out) GD_MUST_CHECK;

/* Exact size in bytes of etf_encode_body's output for t. */
int etf_encoded_size(term_t t, const etf_encode_opts_t *opts, size_t *size) GD_MUST_CHECK;

/* ---- text syntax ---- */

/*
 * Appends the text of t to *out as io:format("~p") prints it on one line
 * (printable lists as strings, printable binaries as <<"...">>, atoms quoted
 * when needed, floats in shortest round-trip form, pids as <0.42.0> or
 * <node.id.serial> forms), such that etf_parse reads it back to an equal
 * term (except funs, which print as #Fun<...>).  No recursion.
 */
int etf_print(term_t t, etf_buf_t *out) GD_MUST_CHECK;

/*
 * Parses one Erlang term in text syntax from text[0..len) (no variables):
 * integers of any size (and Base#Digits, $c), floats, atoms (bare and
 * quoted), strings, binaries (<<"bin">>, <<1,2,3>>, <<1:3>>, <<"a"/utf8>>),
 * lists incl. improper tails, tuples, maps #{K => V}, pids <0.42.0>, and
 * an optional final '.'.  Errors: ETF_EPARSE with err->offset at the
 * offending byte; GD_E* / ETF_E* for atoms, limits and memory.
 */
int etf_parse(heap_t *h, const char *text, size_t len, term_t *out, etf_error_t *err) GD_MUST_CHECK;

#endif /* GIRDER_ETF_H */
