/*
 * heap.h — girder's term model: tagged 64-bit words, the global atom table,
 * heaps that terms live on, off-heap refcounted binaries, and the operations
 * every other directory needs on terms (construction, access, equality,
 * ordering, hashing).
 *
 * This is the one header heap/ exposes to its siblings (etf/, sched/, ...).
 *
 * Word layout (BEAM-like).  The two low bits are the primary tag:
 *
 *   ..00  header word: first word of a boxed object on a heap (never a term)
 *   ..01  list: pointer to a cons cell [car, cdr]            (ptr | 1)
 *   ..10  boxed: pointer to a header word                    (ptr | 2)
 *   ..11  immediate; the next two bits say which kind:
 *           0011  local pid     (payload: number | serial << 32; OTP 25's local
 *                                ranges, 15 and 13 bits)
 *           0111  local port    (28-bit number)
 *           1011  immediate-2; two more bits:
 *                   00 1011  atom (index << 6)
 *                   01 1011  special values (TERM_NONE, TERM_MOVED)
 *                   11 1011  nil, []
 *           1111  small integer (signed 60-bit, value << 4)
 *
 * A header word is (arity << 8) | (subtag << 2): arity is the number of words
 * that follow the header, so every boxed object spans 1 + arity words and a
 * collector can step over any of them.  Each subtag has a fixed number of raw
 * (non-term) words right after the header; all words after those are terms.
 * heap_boxed_raw_words() gives that number for the collector and copier.
 */
#ifndef GIRDER_HEAP_H
#define GIRDER_HEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Conventions shared by every directory that builds on heap/.              */

#define GD_MUST_CHECK __attribute__((warn_unused_result))
#define GD_NOINLINE __attribute__((noinline))
#define GD_COLD __attribute__((cold, noinline))
#define GD_LIKELY(x) __builtin_expect(!!(x), 1)
#define GD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GD_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

#ifdef GD_ASSERTS
void heap_assert_failed(const char *expr, const char *file, int line) __attribute__((noreturn));
#define GD_ASSERT(x) ((x) ? (void)0 : heap_assert_failed(#x, __FILE__, __LINE__))
#else
#define GD_ASSERT(x) ((void)0)
#endif

/*
 * Error codes.  Fallible functions return 0 or one of these (all negative).
 * Directories that need more codes (etf/ for decode errors) take their own
 * ranges below GD_E_RANGE_END and make gd_strerror() aware of them.
 */
enum {
    GD_OK = 0,
    GD_ENOMEM = -1,        /* allocation failed */
    GD_EINVAL = -2,        /* caller passed an invalid argument */
    GD_ESYSTEM_LIMIT = -3, /* a size limit of the runtime was exceeded */
    GD_EATOM_TABLE_FULL = -4,
    GD_EATOM_TOO_LONG = -5,  /* more than 255 characters */
    GD_EATOM_BAD_UTF8 = -6,  /* atom text is not valid UTF-8 */
    GD_EATOM_NOT_FOUND = -7, /* lookup-only: the atom does not exist */
    GD_EDUPLICATE_KEY = -8,  /* map built with the same key twice */
    GD_EBADARG = -9,         /* term of the wrong type */
    GD_EAGAIN = -10,         /* bounded work ran out of budget; call again */
    GD_EHEAP_LIMIT = -11,    /* a collection left the heap above its max_heap_size:
                                the owner is to be killed with reason `killed` */
    GD_EOLD_HEAP_FULL = -12, /* the old generation cannot take what a minor collection
                                would promote (the collector does a major one instead) */
    GD_EALREADY = -13,       /* a set-once setting was already fixed */
    GD_E_RANGE_END = -99,
};

/* Returns a static, human-readable description of any GD_E* code. */
const char *gd_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Tags                                                                     */

typedef uint64_t term_t;

#define TAG_PRIMARY_MASK 0x3u
#define TAG_PRIMARY_HEADER 0x0u
#define TAG_PRIMARY_LIST 0x1u
#define TAG_PRIMARY_BOXED 0x2u
#define TAG_PRIMARY_IMMED1 0x3u

#define TAG_IMMED1_MASK 0xFu
#define TAG_IMMED1_PID 0x3u
#define TAG_IMMED1_PORT 0x7u
#define TAG_IMMED1_IMMED2 0xBu
#define TAG_IMMED1_SMALL 0xFu
#define TAG_IMMED1_SIZE 4

#define TAG_IMMED2_MASK 0x3Fu
#define TAG_IMMED2_ATOM 0x0Bu
#define TAG_IMMED2_SPECIAL 0x1Bu
#define TAG_IMMED2_NIL 0x3Bu
#define TAG_IMMED2_SIZE 6

/* The empty list. */
#define TERM_NIL ((term_t)TAG_IMMED2_NIL)
/* "No term": returned where a term is absent; never stored inside a term. */
#define TERM_NONE ((term_t)TAG_IMMED2_SPECIAL)
/* Written into the car of a cons cell the collector has moved; cdr = new. */
#define TERM_MOVED ((term_t)((1u << TAG_IMMED2_SIZE) | TAG_IMMED2_SPECIAL))

/* Boxed object subtags (6 bits, header bits 2..7). */
enum heap_subtag {
    HDR_TUPLE = 0,         /* elements                                         */
    HDR_POS_BIG = 1,       /* raw: little-endian 64-bit digits, no leading 0   */
    HDR_NEG_BIG = 2,       /* same, negative                                   */
    HDR_FLOAT = 3,         /* raw: one IEEE double                             */
    HDR_REF = 4,           /* raw: creation | nwords<<32, w0|w1<<32, w2|w3<<32, w4; term: node */
    HDR_FUN = 5,           /* raw: arity | numfree<<8, index, uniq[0..7], uniq[8..15];
                              terms: module, old_index, old_uniq, pid, free vars... */
    HDR_EXPORT = 6,        /* terms: module, function, arity                   */
    HDR_EXT_PID = 7,       /* raw: id | serial<<32, creation; term: node       */
    HDR_EXT_PORT = 8,      /* raw: id (64 bits), creation; term: node          */
    HDR_HEAP_BIN = 9,      /* raw: bit size, then the bytes                    */
    HDR_REFC_BIN = 10,     /* raw: bit size, heap_binary_t *, next on off-heap list */
    HDR_SUB_BIN = 11,      /* raw: bit size, bit offset; term: original binary */
    HDR_MAP_FLAT = 12,     /* terms: n (small), keys[n] sorted, values[n]      */
    HDR_MAP_HASH = 13,     /* HAMT root:  terms: size (small), bitmap (small), children */
    HDR_HAMT_NODE = 14,    /* HAMT inner: terms: bitmap (small), children       */
    HDR_HAMT_COLLIDE = 15, /* leaves whose 64-bit hashes are all equal       */
    HDR_LOCAL_REF = 16,    /* raw: w0 | w1<<32, w2: a reference of the local node */
    HDR_SUBTAG_COUNT
};

#define HEADER_SUBTAG_SHIFT 2
#define HEADER_ARITY_SHIFT 8
#define HEADER_ARITY_MAX (((uint64_t)1 << 56) - 1)

static inline unsigned term_primary(term_t t)
{
    return (unsigned)(t & TAG_PRIMARY_MASK);
}
static inline bool term_is_list(term_t t)
{
    return term_primary(t) == TAG_PRIMARY_LIST;
}
static inline bool term_is_boxed(term_t t)
{
    return term_primary(t) == TAG_PRIMARY_BOXED;
}
static inline bool term_is_immediate(term_t t)
{
    return term_primary(t) == TAG_PRIMARY_IMMED1;
}
static inline bool term_is_nil(term_t t)
{
    return t == TERM_NIL;
}
static inline bool term_is_none(term_t t)
{
    return t == TERM_NONE;
}

static inline term_t *term_list_ptr(term_t t)
{
    return (term_t *)(uintptr_t)(t - TAG_PRIMARY_LIST);
}
static inline term_t term_make_list(const term_t *cell)
{
    return (term_t)(uintptr_t)cell | TAG_PRIMARY_LIST;
}
static inline term_t term_car(term_t t)
{
    return term_list_ptr(t)[0];
}
static inline term_t term_cdr(term_t t)
{
    return term_list_ptr(t)[1];
}

static inline term_t *term_boxed_ptr(term_t t)
{
    return (term_t *)(uintptr_t)(t - TAG_PRIMARY_BOXED);
}
static inline term_t term_make_boxed(const term_t *obj)
{
    return (term_t)(uintptr_t)obj | TAG_PRIMARY_BOXED;
}

static inline term_t heap_make_header(enum heap_subtag subtag, uint64_t arity)
{
    return (arity << HEADER_ARITY_SHIFT) | ((term_t)subtag << HEADER_SUBTAG_SHIFT);
}
static inline enum heap_subtag header_subtag(term_t hdr)
{
    return (enum heap_subtag)((hdr >> HEADER_SUBTAG_SHIFT) & 0x3F);
}
static inline uint64_t header_arity(term_t hdr)
{
    return hdr >> HEADER_ARITY_SHIFT;
}

/* Subtag of a boxed term. */
static inline enum heap_subtag term_boxed_subtag(term_t t)
{
    return header_subtag(*term_boxed_ptr(t));
}
static inline bool term_is_boxed_of(term_t t, enum heap_subtag s)
{
    return term_is_boxed(t) && term_boxed_subtag(t) == s;
}

/*
 * Number of raw (non-term) words after the header of a boxed object with the
 * given header.  Everything after them up to the arity is a term.
 */
static inline uint64_t heap_boxed_raw_words(term_t hdr)
{
    switch (header_subtag(hdr)) {
    case HDR_POS_BIG:
    case HDR_NEG_BIG:
    case HDR_FLOAT:
    case HDR_HEAP_BIN:
    case HDR_REFC_BIN:
    case HDR_LOCAL_REF:
        return header_arity(hdr);
    case HDR_REF:
        return 4;
    case HDR_FUN:
        return 4;
    case HDR_EXT_PID:
    case HDR_EXT_PORT:
    case HDR_SUB_BIN:
        return 2;
    default:
        return 0;
    }
}

/* ---- small integers ---- */

#define SMALL_BITS 60
#define SMALL_MAX ((int64_t)(((uint64_t)1 << (SMALL_BITS - 1)) - 1))
#define SMALL_MIN (-SMALL_MAX - 1)

static inline bool term_is_small(term_t t)
{
    return (t & TAG_IMMED1_MASK) == TAG_IMMED1_SMALL;
}
static inline bool small_fits(int64_t v)
{
    return v >= SMALL_MIN && v <= SMALL_MAX;
}
static inline term_t term_make_small(int64_t v)
{
    return ((uint64_t)v << TAG_IMMED1_SIZE) | TAG_IMMED1_SMALL;
}
static inline int64_t term_small_value(term_t t)
{
    return (int64_t)t >> TAG_IMMED1_SIZE;
}

/* ---- atoms ---- */

static inline bool term_is_atom(term_t t)
{
    return (t & TAG_IMMED2_MASK) == TAG_IMMED2_ATOM;
}
static inline term_t term_make_atom(uint32_t index)
{
    return ((term_t)index << TAG_IMMED2_SIZE) | TAG_IMMED2_ATOM;
}
static inline uint32_t term_atom_index(term_t t)
{
    return (uint32_t)(t >> TAG_IMMED2_SIZE);
}

/*
 * Atoms every runtime has, at fixed indices (created when the table is made,
 * in this order).  The table has them before any other atom.
 */
#define HEAP_FIXED_ATOMS(X)                                                                        \
    X(FALSE, "false")                                                                              \
    X(TRUE, "true")                                                                                \
    X(UNDEFINED, "undefined")                                                                      \
    X(OK, "ok")                                                                                    \
    X(ERROR, "error")                                                                              \
    X(NONODE, "nonode@nohost")                                                                     \
    X(NORMAL, "normal")                                                                            \
    X(KILL, "kill")                                                                                \
    X(KILLED, "killed")                                                                            \
    X(NOPROC, "noproc")                                                                            \
    X(NOCONNECTION, "noconnection")                                                                \
    X(BADARG, "badarg")                                                                            \
    X(EXIT, "EXIT")                                                                                \
    X(DOWN, "DOWN")                                                                                \
    X(PROCESS, "process")                                                                          \
    X(SYSTEM_LIMIT, "system_limit")                                                                \
    X(EMPTY, "")

enum heap_fixed_atom {
#define HEAP_ATOM_ENUM(name, text) HEAP_ATOM_INDEX_##name,
    HEAP_FIXED_ATOMS(HEAP_ATOM_ENUM)
#undef HEAP_ATOM_ENUM
        HEAP_FIXED_ATOM_COUNT
};
#define ATOM_FALSE term_make_atom(HEAP_ATOM_INDEX_FALSE)
#define ATOM_TRUE term_make_atom(HEAP_ATOM_INDEX_TRUE)
#define ATOM_UNDEFINED term_make_atom(HEAP_ATOM_INDEX_UNDEFINED)
#define ATOM_OK term_make_atom(HEAP_ATOM_INDEX_OK)
#define ATOM_ERROR term_make_atom(HEAP_ATOM_INDEX_ERROR)
#define ATOM_NONODE term_make_atom(HEAP_ATOM_INDEX_NONODE)
#define ATOM_NORMAL term_make_atom(HEAP_ATOM_INDEX_NORMAL)
#define ATOM_KILL term_make_atom(HEAP_ATOM_INDEX_KILL)
#define ATOM_KILLED term_make_atom(HEAP_ATOM_INDEX_KILLED)
#define ATOM_NOPROC term_make_atom(HEAP_ATOM_INDEX_NOPROC)
#define ATOM_NOCONNECTION term_make_atom(HEAP_ATOM_INDEX_NOCONNECTION)
#define ATOM_BADARG term_make_atom(HEAP_ATOM_INDEX_BADARG)
#define ATOM_EXIT term_make_atom(HEAP_ATOM_INDEX_EXIT)
#define ATOM_DOWN term_make_atom(HEAP_ATOM_INDEX_DOWN)
#define ATOM_PROCESS term_make_atom(HEAP_ATOM_INDEX_PROCESS)
#define ATOM_SYSTEM_LIMIT term_make_atom(HEAP_ATOM_INDEX_SYSTEM_LIMIT)
#define ATOM_EMPTY term_make_atom(HEAP_ATOM_INDEX_EMPTY)

#define HEAP_ATOM_MAX_CHARS 255
#define HEAP_ATOM_MAX_BYTES (4 * HEAP_ATOM_MAX_CHARS)
#define HEAP_ATOM_LIMIT_DEFAULT 1048576u
#define HEAP_ATOM_LIMIT_MAX (1u << 26)

/*
 * Sets the atom table's capacity.  Only effective before the first atom
 * operation (the table is created lazily, once, on first use); afterwards
 * returns GD_EINVAL.  `limit` must be in [HEAP_FIXED_ATOM_COUNT + 1,
 * HEAP_ATOM_LIMIT_MAX].
 */
int heap_atoms_configure(uint32_t limit) GD_MUST_CHECK;

/*
 * Returns the atom whose text is the UTF-8 string `utf8[0..len)`, creating
 * it if needed.  Errors: GD_EATOM_BAD_UTF8, GD_EATOM_TOO_LONG (> 255
 * characters), GD_EATOM_TABLE_FULL (the configured limit is reached; the
 * table stays usable for existing atoms), GD_ENOMEM.  Lock-free when the atom
 * exists; creation takes the table's writer lock.  O(len).
 */
int heap_atom_put(const char *utf8, size_t len, term_t *out) GD_MUST_CHECK;

/* As heap_atom_put, but the bytes are Latin-1 (each byte one character). */
int heap_atom_put_latin1(const uint8_t *latin1, size_t len, term_t *out) GD_MUST_CHECK;

/*
 * Looks up an existing atom without creating one (binary_to_term's `safe`).
 * Returns GD_EATOM_NOT_FOUND when absent; other errors as heap_atom_put.
 * Lock-free.
 */
int heap_atom_lookup(const char *utf8, size_t len, term_t *out) GD_MUST_CHECK;

/* The UTF-8 text of an atom (not NUL-terminated) and its byte length.  The
 * pointer stays valid for the life of the process. */
const char *heap_atom_text(term_t atom, size_t *len);

/* Number of characters (code points) in the atom's name. */
size_t heap_atom_chars(term_t atom);

/* True if every character of the atom is below 256 (OTP 25 emits ATOM_EXT). */
bool heap_atom_is_latin1(term_t atom);

/* Number of atoms in the table, and its configured capacity. */
uint32_t heap_atom_count(void);
uint32_t heap_atom_limit(void);

/* Convenience for C literals: the atom for a NUL-terminated ASCII/UTF-8
 * string.  Returns TERM_NONE if it cannot be created. */
term_t heap_atom(const char *name);

/* ---- the local node's identity ---- */

/*
 * The local node's name (an atom) and creation, read by everything that
 * gives local pids, ports and references their node: the codec (a decoded
 * identifier naming this node and creation becomes the local form, the
 * encoder writes ours with them), term order and the internal hash.
 *
 * Set once, before the first process runs (and before any term holding a
 * local identifier is compared, hashed, encoded or decoded): the first read
 * freezes it, and heap_node_identity_set then returns GD_EALREADY.  Hashes
 * of local identifiers therefore never change under a live map.  A new
 * creation (a new EPMD registration) is a new node incarnation: a new OS
 * process, not a rehash.  Default: 'nonode@nohost', creation 0.
 * Errors: GD_EINVAL (name not an atom), GD_EALREADY.
 */
int heap_node_identity_set(term_t name, uint32_t creation) GD_MUST_CHECK;

/* The local node's name and creation (freezing the identity). */
term_t heap_node_name(void);
uint32_t heap_node_creation(void);

/* True if (node, creation) names this node. */
static inline bool heap_node_is_local(term_t node, uint32_t creation)
{
    return node == heap_node_name() && creation == heap_node_creation();
}

/* ---- local pids and ports (immediates) ---- */

/*
 * OTP 25's local ranges: a pid of this node has a 15-bit number and a
 * 13-bit serial, a port a 28-bit number, a reference 3 id words whose first
 * has 18 bits.  binary_to_term refuses an identifier naming this node and
 * creation with numbers outside them (badarg), and so does the decoder.
 */
#define HEAP_LOCAL_PID_NUMBER_MAX ((1u << 15) - 1)
#define HEAP_LOCAL_PID_SERIAL_MAX ((1u << 13) - 1)
#define HEAP_LOCAL_PORT_MAX ((1u << 28) - 1)
#define HEAP_LOCAL_REF_WORDS 3
#define HEAP_LOCAL_REF_W0_MAX ((1u << 18) - 1)

static inline bool term_is_local_pid(term_t t)
{
    return (t & TAG_IMMED1_MASK) == TAG_IMMED1_PID;
}
static inline bool term_is_local_port(term_t t)
{
    return (t & TAG_IMMED1_MASK) == TAG_IMMED1_PORT;
}
static inline bool heap_local_pid_fits(uint32_t id, uint32_t serial)
{
    return id <= HEAP_LOCAL_PID_NUMBER_MAX && serial <= HEAP_LOCAL_PID_SERIAL_MAX;
}
/* A local pid; id and serial must be in the local ranges (callers with
 * outside numbers use heap_make_local_pid, which checks). */
static inline term_t term_make_local_pid(uint32_t id, uint32_t serial)
{
    GD_ASSERT(heap_local_pid_fits(id, serial));
    uint64_t payload = (uint64_t)id | ((uint64_t)serial << 32);
    return (payload << TAG_IMMED1_SIZE) | TAG_IMMED1_PID;
}
/* The local pid <0.id.serial>; GD_EBADARG outside the local ranges (never
 * truncated, so no outside value aliases a live local pid). */
static inline int heap_make_local_pid(uint32_t id, uint32_t serial, term_t *out)
{
    if (!heap_local_pid_fits(id, serial))
        return GD_EBADARG;
    *out = term_make_local_pid(id, serial);
    return GD_OK;
}
static inline uint32_t term_local_pid_id(term_t t)
{
    return (uint32_t)(t >> TAG_IMMED1_SIZE);
}
static inline uint32_t term_local_pid_serial(term_t t)
{
    return (uint32_t)(t >> (TAG_IMMED1_SIZE + 32));
}
#define LOCAL_PORT_MAX ((uint64_t)HEAP_LOCAL_PORT_MAX)
/* A local port; number must be in the local range (heap_make_local_port
 * checks). */
static inline term_t term_make_local_port(uint64_t number)
{
    GD_ASSERT(number <= LOCAL_PORT_MAX);
    return (number << TAG_IMMED1_SIZE) | TAG_IMMED1_PORT;
}
static inline int heap_make_local_port(uint64_t number, term_t *out)
{
    if (number > LOCAL_PORT_MAX)
        return GD_EBADARG;
    *out = term_make_local_port(number);
    return GD_OK;
}
static inline uint64_t term_local_port_number(term_t t)
{
    return t >> TAG_IMMED1_SIZE;
}

/* ------------------------------------------------------------------------ */
/* Off-heap binaries                                                        */

/* Binaries of more than this many bytes live off-heap and are refcounted. */
#define HEAP_BIN_MAX_BYTES 64
/* Largest binary the runtime creates (bytes); beyond it: GD_ESYSTEM_LIMIT. */
#define HEAP_BINARY_MAX_BYTES ((size_t)1 << 40)

/*
 * An off-heap binary.  Shared by every heap that references it through a
 * HDR_REFC_BIN object; freed when the last reference goes.
 */
typedef struct heap_binary {
    /* Number of REFC_BIN objects (on any heap or fragment) pointing here.
     * Increments are relaxed (the new owner already holds a reference);
     * the decrement is acq_rel so the freeing thread sees every write. */
    atomic_size_t refc;
    size_t size; /* bytes */
    uint8_t data[];
} heap_binary_t;

/* Allocates an off-heap binary of `size` bytes with refc 1; data uninitialised. */
heap_binary_t *heap_binary_new(size_t size);
/* Resizes a binary nobody else references yet (refc 1: e.g. a buffer
 * being filled), keeping its first min(old, size) bytes; it may move.
 * NULL (b untouched) when out of memory or over HEAP_BINARY_MAX_BYTES. */
heap_binary_t *heap_binary_resize(heap_binary_t *b, size_t size);
static inline void heap_binary_ref(heap_binary_t *b)
{
    atomic_fetch_add_explicit(&b->refc, 1, memory_order_relaxed);
}
/* Drops one reference; frees the binary when it was the last. */
void heap_binary_unref(heap_binary_t *b);

/* Bytes of data held by every off-heap binary alive in this OS process (a
 * node-wide statistic; tests use it to prove a binary was given back). */
size_t heap_binary_live_bytes(void);

/* ------------------------------------------------------------------------ */
/* Heaps                                                                    */

/*
 * A block of heap words outside the main heap area: used when the main area
 * is full (allocation never collects) and for messages, whose terms are
 * built in a fragment owned by the message and merged into the receiver's
 * heap at its next collection.
 */
typedef struct heap_frag {
    struct heap_frag *next;
    size_t used;           /* words in use */
    size_t capacity;       /* words */
    term_t *offheap_first; /* REFC_BIN objects in this fragment (list via their next word) */
    size_t offheap_bytes;  /* bytes of the binaries on offheap_first */
    uint32_t carry_words;  /* the sender's words after words[capacity] (heap_msg_copy_carry) */
    uint32_t storage;      /* where the block came from (gc_internal.h: FRAG_AREA, FRAG_SLAB) */
    term_t words[];
} heap_frag_t;

/* Collector statistics of one heap (also summed node-wide by heap_gc_stats_node). */
typedef struct heap_gc_stats {
    uint64_t minor_collections;
    uint64_t major_collections;
    uint64_t words_reclaimed;
    uint64_t pause_ns_total;
    uint64_t pause_ns_max;
    uint64_t words_copied; /* live words the collector moved (young + promoted) */
} heap_gc_stats_t;

/*
 * A heap terms live on.  Until processes exist it is used standalone (tests,
 * the codec, the `girder term` command); each process will own one.
 *
 * Allocation (heap_alloc) bumps a pointer in the young area and, when that
 * is full, takes a fragment: it never collects and never moves a term.
 * Collection happens only at explicit safe points (heap_gc /
 * heap_ensure_free), which take the caller's roots.
 */
typedef struct heap {
    term_t *young_start; /* current young generation area */
    term_t *young_top;   /* next free word */
    term_t *young_end;   /* one past the area */
    term_t *high_water;  /* words below this survived the last minor GC */
    term_t *old_start;   /* old generation (NULL until the first promotion) */
    term_t *old_top;
    term_t *old_end;
    heap_frag_t *frags;       /* overflow and merged message fragments */
    size_t frag_words;        /* words used in frags */
    size_t frag_capacity;     /* words allocated to frags (heap_size_words is O(1)) */
    term_t *offheap_first;    /* REFC_BIN objects on this heap (young + old) */
    size_t offheap_bytes;     /* bytes of off-heap binaries referenced */
    size_t min_words;         /* the young area never shrinks below this */
    size_t max_heap_words;    /* 0 = unlimited (max_heap_size) */
    uint32_t fullsweep_after; /* minors between major collections */
    uint32_t minors_since_major;
    heap_gc_stats_t stats;
    /* Collector state (gc.c).  offheap_bytes above counts the binaries of
     * the young generation and fragments; these count the old one. */
    size_t old_offheap_bytes; /* bytes of off-heap binaries held by the old heap */
    size_t vheap_limit;       /* young off-heap bytes beyond which a GC is due */
    size_t old_vheap_limit;   /* old off-heap bytes beyond which the next GC is major */
    uint32_t gc_flags;        /* HEAP_GCF_* */
} heap_t;

/* heap_t.gc_flags */
#define HEAP_GCF_WANTED 0x1u     /* collect at the next heap_ensure_free */
#define HEAP_GCF_NEED_MAJOR 0x2u /* the next collection is a full sweep */
#define HEAP_GCF_GROW 0x4u       /* live data fills > 75%: grow at the next major */
#define HEAP_GCF_STRESS 0x8u     /* GC stress: every heap_ensure_free collects */
/* A message builder (heap_msg_build_init): no young area, every word in
 * fragments, which heap_msg_build_take hands over as one message. */
#define HEAP_GCF_FRAGS_ONLY 0x10u

#define HEAP_MIN_WORDS_DEFAULT 233
#define HEAP_FULLSWEEP_AFTER_DEFAULT 65535

/* Initialises an empty heap whose young area holds at least `min_words`
 * (0 = HEAP_MIN_WORDS_DEFAULT; rounded up to the heap size sequence, see
 * heap_next_size).  The young area is allocated by the first allocation, so
 * a heap that never held a term costs only sizeof(heap_t) (no
 * heap words); after its first allocation it holds min_words (233 words =
 * 1864 bytes by default) until it grows; heap_hibernate brings an idle one
 * down to its live words.  Picks up GC stress mode (heap_gc_stress_set).
 * Errors: GD_ESYSTEM_LIMIT (min_words beyond the largest heap). */
int heap_init(heap_t *h, size_t min_words) GD_MUST_CHECK;

/* Frees every word of the heap and drops its references to off-heap
 * binaries.  Terms on it are invalid afterwards. */
void heap_destroy(heap_t *h);

/* Slow path of heap_alloc: creates the young area on first use, else puts
 * the request in a (new) fragment. */
term_t *heap_alloc_slow(heap_t *h, size_t words);

/*
 * Returns `words` uninitialised, 8-byte-aligned words on the heap, or NULL
 * when memory is exhausted (the heap is unchanged then).  Never collects,
 * never moves existing terms.  O(1) amortised.
 */
static inline term_t *heap_alloc(heap_t *h, size_t words)
{
    term_t *p = h->young_top;
    if (GD_LIKELY((size_t)(h->young_end - p) >= words)) {
        h->young_top = p + words;
        return p;
    }
    return heap_alloc_slow(h, words);
}

/* Words in use on the heap (young + old + fragments). */
size_t heap_used_words(const heap_t *h);

/* Records a freshly built REFC_BIN object (its header at `obj`) on the heap's
 * off-heap list, so the heap's collector/destroy drops its reference. */
void heap_offheap_link(heap_t *h, term_t *obj);

/* ------------------------------------------------------------------------ */
/* Garbage collection (gc.c)                                                */

/*
 * Roots.  A collection moves every live term, so C code holding a term
 * across a call that may collect must hand the collector the *slot* that
 * holds it; the slot is updated in place.  A term in no listed slot is
 * invalid after the call.  Immediates in slots are left alone.
 *
 * Rules the collector relies on:
 *  - every boxed or list term reachable from the roots lives on this heap
 *    (young area, old area or one of its fragments), never on another heap;
 *  - terms are immutable once a collection may have run after they were
 *    built (fill a tuple's elements before the next heap_gc or
 *    heap_ensure_free), so an old term never points to a younger one.
 *
 * heap_roots_t lists single slots plus, for roots the owner keeps in its own
 * structures (mailbox messages, process dictionary), an enumerator that
 * calls visit(vctx, terms, n) for each array of n term slots.  It may be
 * called twice in one collection (copy, then after a resize) and must
 * report the same slots both times.
 */
typedef void (*heap_root_visit_fn)(void *vctx, term_t *terms, size_t n);
typedef struct heap_roots {
    term_t *const *slots; /* nslots pointers to term slots */
    size_t nslots;
    void (*enumerate)(void *ctx, heap_root_visit_fn visit, void *vctx); /* or NULL */
    void *ctx;
} heap_roots_t;

/* Flags for heap_collect. */
#define HEAP_GC_MAJOR 0x1u /* full sweep: collect the old generation too */

/*
 * Collects h (generational Cheney copying) and leaves at least `need` free
 * words in the young area, so the next heap_alloc calls totalling `need`
 * words cannot fail or spill into a fragment.  Minor collections copy the
 * young generation and fragments, promoting terms that survived the
 * previous collection into the old heap; a major one (HEAP_GC_MAJOR, every
 * fullsweep_after minors, or when the old heap or its binaries would
 * overflow) copies everything into one new young area and frees the old
 * heap.  Fragments (overflow and attached messages) are merged and freed;
 * off-heap binaries no longer referenced are released.  The young area
 * grows along heap_next_size and shrinks when mostly empty.
 *
 * Errors: GD_ENOMEM (memory ran out before or after collecting: the heap
 * is consistent and the roots valid, but `need` words are not guaranteed),
 * GD_ESYSTEM_LIMIT (need too large for any heap; nothing done),
 * GD_EHEAP_LIMIT (max_heap_words is set and
 * the heap is larger after the collection, or need alone exceeds it: the
 * heap is consistent and the roots valid, but the owner must be killed).
 * Work: O(live words of the collected generations + fragments + young
 * off-heap binaries); no recursion.
 */
int heap_collect(heap_t *h, size_t need, const heap_roots_t *roots, unsigned flags) GD_MUST_CHECK;

/* heap_collect with `nroots` single root slots and no flags. */
int heap_gc(heap_t *h, size_t need, term_t *const roots[], size_t nroots) GD_MUST_CHECK;

/* Out-of-line part of heap_ensure_free / heap_ensure_free_roots. */
int heap_ensure_free_slow(heap_t *h, size_t need, const heap_roots_t *roots) GD_MUST_CHECK;

/* True when heap_ensure_free(h, need, ...) would collect: the young area has
 * fewer than `need` free words, a collection is due (fragments or off-heap
 * binaries piled up) or GC stress is on. */
static inline bool heap_gc_due(const heap_t *h, size_t need)
{
    return (size_t)(h->young_end - h->young_top) < need ||
           (h->gc_flags & (HEAP_GCF_WANTED | HEAP_GCF_STRESS)) != 0 ||
           h->offheap_bytes > h->vheap_limit;
}

/*
 * The allocation safe point: returns GD_OK at once when `need` words are
 * free in the young area and no collection is due, else collects as
 * heap_collect (roots as `nroots` slots).  Errors as heap_collect.
 */
static inline int heap_ensure_free(heap_t *h, size_t need, term_t *const roots[], size_t nroots)
{
    if (GD_LIKELY(!heap_gc_due(h, need)))
        return GD_OK;
    heap_roots_t r = {roots, nroots, NULL, NULL};
    return heap_ensure_free_slow(h, need, &r);
}

/* heap_ensure_free with a full root set. */
static inline int heap_ensure_free_roots(heap_t *h, size_t need, const heap_roots_t *roots)
{
    if (GD_LIKELY(!heap_gc_due(h, need)))
        return GD_OK;
    return heap_ensure_free_slow(h, need, roots);
}

/*
 * Full sweep into a young area of exactly the live size (erlang:hibernate):
 * an idle process keeps only its live words.  The next allocation grows the
 * heap again.  Errors: GD_ENOMEM (heap unchanged), GD_EHEAP_LIMIT (as heap_collect).
 */
int heap_hibernate(heap_t *h, const heap_roots_t *roots) GD_MUST_CHECK;

/*
 * The heap size sequence (BEAM's): 12, 38, 51, 90, 142, 233, 376, 610, 987,
 * ... (Fibonacci plus one) up to 833026 words, then +20% per step.  Returns
 * the smallest size >= `words` (offset 0) or the next one above it (offset
 * 1); 0 when past the largest heap (2^50 words).
 */
size_t heap_next_size(size_t words, unsigned offset);

/* Words allocated to the heap: young area + old area + fragments (what
 * max_heap_words limits; OTP's total_heap_size). */
size_t heap_size_words(const heap_t *h);

/* Adds up every collection so far on every heap of this OS process. */
void heap_gc_stats_node(heap_gc_stats_t *out);

/* The collector pause histogram (metrics): bucket i counts pauses of at
 * most heap_gc_pause_bounds_ns[i] nanoseconds and more than the bound
 * before it; the last bucket has no upper bound. */
#define HEAP_GC_PAUSE_BUCKETS 12
extern const uint64_t heap_gc_pause_bounds_ns[HEAP_GC_PAUSE_BUCKETS - 1];

/* Every collection so far on every heap of this OS process, by pause
 * (counts per bucket, not cumulative).  O(threads) under a mutex. */
void heap_gc_pause_hist_node(uint64_t counts[HEAP_GC_PAUSE_BUCKETS]);

/*
 * GC stress: every heap_ensure_free collects.  On when built with
 * GD_GC_STRESS or when GIRDER_GC_STRESS=1 is in the environment at the
 * first heap_init; heap_gc_stress_set overrides both for heaps initialised
 * afterwards (tests).  heap_gc_stress_enabled says what new heaps get.
 */
void heap_gc_stress_set(bool on);
bool heap_gc_stress_enabled(void);

/* ------------------------------------------------------------------------ */
/* Messages (message.c)                                                     */

/*
 * Copies t (on any heap the caller may read) into a new fragment owned by
 * the caller, for a message: the receiver's heap is not touched.  Refc
 * binaries are shared (count bumped), never copied.  *frag_out is NULL when
 * t is immediate (nothing to copy).  Errors: GD_ENOMEM, GD_ESYSTEM_LIMIT
 * (larger than HEAP_COPY_MAX_WORDS); nothing is allocated then.  O(size).
 */
int heap_msg_copy(term_t t, heap_frag_t **frag_out, term_t *out) GD_MUST_CHECK;

/*
 * As heap_msg_copy, and the fragment's memory block also carries
 * `carry_bytes` for the caller (*carry_out, word-aligned, after the
 * fragment's words and outside its capacity), freed with the fragment: a
 * message's queue entry rides in its body's block, one allocation per send
 * instead of two (as BEAM's combined message + heap fragment).  Nothing is
 * carried when t is immediate (*frag_out NULL, *carry_out NULL).
 */
int heap_msg_copy_carry(term_t t, size_t carry_bytes, heap_frag_t **frag_out, term_t *out,
                        void **carry_out) GD_MUST_CHECK;

/*
 * As heap_msg_copy for the tuple {elems[0], ..., elems[n-1]}, built only in
 * the fragment (e.g. {'EXIT', From, Reason} without allocating on the
 * sender's heap).
 */
int heap_msg_copy_tuple(const term_t *elems, size_t n, heap_frag_t **frag_out,
                        term_t *out) GD_MUST_CHECK;

/*
 * A heap that builds one message in place (the distribution receive path
 * decodes a big frame straight into what its target gets): every
 * allocation goes to fragments, never to a young area, so the terms built
 * can be handed over as they are by heap_msg_build_take, without the copy
 * heap_msg_copy would make.  Never collected; heap_destroy frees what was
 * not taken.  Errors as heap_init.
 */
int heap_msg_build_init(heap_t *h) GD_MUST_CHECK;

/*
 * Takes every word built on a heap_msg_build_init heap as a message body:
 * a chain of fragments (through ->next; NULL when nothing was allocated)
 * whose first one holds the off-heap binary list, for heap_attach_frag or
 * heap_frag_free.  The terms keep their addresses; the heap is empty
 * afterwards (and may build again).  O(fragments).
 */
heap_frag_t *heap_msg_build_take(heap_t *h);

/*
 * Hands a message fragment (or a chain of them, from heap_msg_build_take)
 * to its receiver's heap (consumed; NULL is a
 * no-op).  Its terms are usable at once and are merged into the heap at
 * its next collection, so from now on the message term must be held in a
 * root slot (e.g. reported by the mailbox enumerator of heap_roots_t) to
 * survive it; an unreferenced one is simply collected.  Called by the
 * heap's owner only.  O(fragments in the chain).
 */
void heap_attach_frag(heap_t *h, heap_frag_t *frag);

/*
 * Takes a received message's body (fragment chain `frag`, term t) onto h,
 * as BEAM copies a small message into the receiver's heap: a single slab
 * fragment (a small heap_msg_copy* body) whose words fit the young area
 * (or the young area still to be created) is moved there (its words copied
 * and their pointers shifted, O(its words)) and its slab block freed at
 * once, so a process that then idles holds the message's words, not the
 * 256 KiB slab chunk they were carved from.  Anything else is attached as
 * by heap_attach_frag, a slab fragment then asking for a collection at the
 * next safe point (the young area is full).  Returns the message term to
 * use from now on; `frag` is consumed (and t's old address invalid).
 * Called by the heap's owner only.
 */
term_t heap_msg_take(heap_t *h, heap_frag_t *frag, term_t t);

/*
 * Small message fragments come from per-thread slabs (heap/msgslab.c):
 * chunks pre-faulted in bulk, freed from any thread, an empty one pooled
 * node-wide (at most 16) or unmapped.  The bytes mapped for them now
 * (live messages' chunks, each sending thread's current chunk, the pool):
 * for tests and statistics.
 */
size_t heap_msg_slab_mapped_bytes(void);
/* Unmaps the pooled empty chunks but two (an idle scheduler calls it). */
void heap_msg_slab_trim(void);
/* The calling thread stops carving its current chunk, so the chunk goes
 * when its messages do (as at thread exit; for a thread that sent and now
 * idles for long). */
void heap_msg_slab_thread_release(void);

/* Frees a fragment (or a message's chain of them) that was never attached
 * (an undelivered message), dropping its binary references.  NULL is a
 * no-op. */
void heap_frag_free(heap_frag_t *frag);

/* ------------------------------------------------------------------------ */
/* Construction.  Functions taking a heap allocate on it and return GD_ENOMEM
 * when it cannot grow; nothing is allocated on failure unless stated.      */

/* A tuple of `arity` elements; the caller fills *elems_out[0..arity). */
int heap_make_tuple(heap_t *h, size_t arity, term_t **elems_out, term_t *out) GD_MUST_CHECK;
/* A tuple of the `arity` terms items[0..arity) (NULL when arity is 0). */
int heap_make_tuple_from(heap_t *h, size_t arity, const term_t *items, term_t *out) GD_MUST_CHECK;
static inline term_t *term_tuple_elems(term_t t)
{
    return term_boxed_ptr(t) + 1;
}
static inline size_t term_tuple_arity(term_t t)
{
    return (size_t)header_arity(*term_boxed_ptr(t));
}
static inline bool term_is_tuple(term_t t)
{
    return term_is_boxed_of(t, HDR_TUPLE);
}

/* A cons cell [car | cdr]. */
int heap_cons(heap_t *h, term_t car, term_t cdr, term_t *out) GD_MUST_CHECK;

/* A proper list of the n terms in items[]. */
int heap_make_list(heap_t *h, const term_t *items, size_t n, term_t *out) GD_MUST_CHECK;

/* ---- integers ---- */

static inline bool term_is_big(term_t t)
{
    return term_is_boxed(t) &&
           (term_boxed_subtag(t) == HDR_POS_BIG || term_boxed_subtag(t) == HDR_NEG_BIG);
}
static inline bool term_is_integer(term_t t)
{
    return term_is_small(t) || term_is_big(t);
}

/* Largest bignum the runtime builds, in 64-bit digits (OTP's limit is
 * similar: about 2^24 bits). */
#define HEAP_BIG_MAX_DIGITS ((size_t)1 << 18)

/* An integer term for v (small if it fits, else a bignum). */
int heap_make_int64(heap_t *h, int64_t v, term_t *out) GD_MUST_CHECK;
int heap_make_uint64(heap_t *h, uint64_t v, term_t *out) GD_MUST_CHECK;

/*
 * An integer from a sign and a magnitude given as `nbytes` little-endian
 * bytes (the ETF bignum layout).  Leading zero bytes are allowed; the result
 * is normalised (small if it fits, no leading zero digits, -0 = 0).
 * Errors: GD_ESYSTEM_LIMIT above HEAP_BIG_MAX_DIGITS, GD_ENOMEM.
 */
int heap_make_integer_le(heap_t *h, bool negative, const uint8_t *le, size_t nbytes,
                         term_t *out) GD_MUST_CHECK;

/*
 * A normalised integer from `ndigits` little-endian 64-bit digits (copied).
 */
int heap_make_integer_digits(heap_t *h, bool negative, const uint64_t *digits, size_t ndigits,
                             term_t *out) GD_MUST_CHECK;

/* Bignum accessors: digit count, digits (little-endian), sign. */
static inline size_t term_big_ndigits(term_t t)
{
    return (size_t)header_arity(*term_boxed_ptr(t));
}
static inline const uint64_t *term_big_digits(term_t t)
{
    return (const uint64_t *)(term_boxed_ptr(t) + 1);
}
static inline bool term_big_negative(term_t t)
{
    return term_boxed_subtag(t) == HDR_NEG_BIG;
}

/* The value of an integer term if it fits in int64_t; GD_ESYSTEM_LIMIT if not,
 * GD_EBADARG if t is not an integer. */
int heap_integer_to_int64(term_t t, int64_t *out) GD_MUST_CHECK;

/* ---- floats ---- */

static inline bool term_is_float(term_t t)
{
    return term_is_boxed_of(t, HDR_FLOAT);
}
static inline double term_float_value(term_t t)
{
    double d;
    memcpy(&d, term_boxed_ptr(t) + 1, sizeof d);
    return d;
}
/* A float term.  NaN and infinities are not Erlang terms: GD_EBADARG. */
int heap_make_float(heap_t *h, double d, term_t *out) GD_MUST_CHECK;

static inline bool term_is_number(term_t t)
{
    return term_is_integer(t) || term_is_float(t);
}

/* ---- binaries and bitstrings ---- */

static inline bool term_is_bitstring(term_t t)
{
    if (!term_is_boxed(t))
        return false;
    enum heap_subtag s = term_boxed_subtag(t);
    return s == HDR_HEAP_BIN || s == HDR_REFC_BIN || s == HDR_SUB_BIN;
}

/* A read-only view of a binary's bits: `bit_size` bits starting `bit_offset`
 * bits (0..7) into bytes[0]. */
typedef struct heap_bin_view {
    const uint8_t *bytes;
    size_t bit_size;
    unsigned bit_offset;
} heap_bin_view_t;

/* Fills *view for a bitstring term (heap, refc or sub-binary). */
void heap_bin_view(term_t t, heap_bin_view_t *view);

/* True if t is a bitstring with a whole number of bytes (an Erlang binary). */
bool term_is_binary(term_t t);

/*
 * A new bitstring of `bit_size` bits (heap binary when it fits in
 * HEAP_BIN_MAX_BYTES, else off-heap refcounted) whose bytes the caller writes
 * through *data_out ((bit_size + 7) / 8 bytes; unused low bits of the last
 * byte must be written as zero).  Errors: GD_ESYSTEM_LIMIT, GD_ENOMEM.
 */
int heap_make_bitstring_uninit(heap_t *h, size_t bit_size, uint8_t **data_out,
                               term_t *out) GD_MUST_CHECK;

/* A binary holding a copy of bytes[0..n). */
int heap_make_binary(heap_t *h, const void *bytes, size_t n, term_t *out) GD_MUST_CHECK;

/*
 * A sub-binary of `bit_size` bits starting `bit_offset` bits into the
 * bitstring `orig` (bounds are the caller's promise; GD_EBADARG if out of
 * range).  Shares orig's bytes; a sub-binary of a sub-binary points at the
 * underlying original.
 */
int heap_make_sub_binary(heap_t *h, term_t orig, size_t bit_offset, size_t bit_size,
                         term_t *out) GD_MUST_CHECK;

/* A REFC_BIN object on h for an existing off-heap binary, bumping its refc. */
int heap_make_refc_binary(heap_t *h, heap_binary_t *bin, size_t bit_size,
                          term_t *out) GD_MUST_CHECK;

/* ---- pids, ports, references ---- */

static inline bool term_is_ext_pid(term_t t)
{
    return term_is_boxed_of(t, HDR_EXT_PID);
}
static inline bool term_is_ext_port(term_t t)
{
    return term_is_boxed_of(t, HDR_EXT_PORT);
}
static inline bool term_is_pid(term_t t)
{
    return term_is_local_pid(t) || term_is_ext_pid(t);
}
static inline bool term_is_port(term_t t)
{
    return term_is_local_port(t) || term_is_ext_port(t);
}
static inline bool term_is_local_ref(term_t t)
{
    return term_is_boxed_of(t, HDR_LOCAL_REF);
}
static inline bool term_is_ref(term_t t)
{
    return term_is_boxed(t) &&
           (term_boxed_subtag(t) == HDR_REF || term_boxed_subtag(t) == HDR_LOCAL_REF);
}

#define HEAP_REF_MAX_WORDS 5

/*
 * The pid <node.id.serial> of creation `creation` (as decoded from ETF).
 * When (node, creation) is this node's identity the result is the local
 * (immediate) form, and numbers outside the local ranges are refused with
 * GD_EBADARG, as binary_to_term does: a pid of this node never exists in
 * external form, so every pid has one representation.  Any other node
 * gets the external (boxed) form with all 32 bits of id and serial.
 * Errors: GD_EBADARG (node not an atom, or local numbers out of range),
 * GD_ENOMEM.
 */
int heap_make_ext_pid(heap_t *h, term_t node, uint32_t id, uint32_t serial, uint32_t creation,
                      term_t *out) GD_MUST_CHECK;
/* A port, by the same rules (local: 28-bit number). */
int heap_make_ext_port(heap_t *h, term_t node, uint64_t id, uint32_t creation,
                       term_t *out) GD_MUST_CHECK;
/*
 * A reference with 0..HEAP_REF_MAX_WORDS 32-bit id words (0 allowed as OTP
 * decodes Len 0), by the same rules: one of this node becomes the local
 * form of HEAP_LOCAL_REF_WORDS words, a shorter one widened with zero words
 * as OTP does; more than 3 words, or a first word above
 * HEAP_LOCAL_REF_W0_MAX, is GD_EBADARG.  GD_EBADARG for more than
 * HEAP_REF_MAX_WORDS words.
 */
int heap_make_ref(heap_t *h, term_t node, uint32_t creation, const uint32_t *words, size_t nwords,
                  term_t *out) GD_MUST_CHECK;

/* A reference of the local node from its three id words (w[0] in the local
 * range, else GD_EBADARG). */
int heap_make_local_ref(heap_t *h, const uint32_t w[HEAP_LOCAL_REF_WORDS],
                        term_t *out) GD_MUST_CHECK;

/* Accessors for the identifiers: node, creation and numbers of any pid,
 * port or reference, local ones with this node's identity (a local ref has
 * 3 words). */
typedef struct heap_ident {
    term_t node;
    uint32_t creation;
    uint32_t nwords;                    /* refs: id words used */
    uint32_t words[HEAP_REF_MAX_WORDS]; /* pid: id, serial; ref: id words */
    uint64_t port_id;                   /* ports */
} heap_ident_t;
void heap_ident(term_t t, heap_ident_t *out);

/* ---- funs and exports ---- */

static inline bool term_is_fun(term_t t)
{
    return term_is_boxed_of(t, HDR_FUN);
}
static inline bool term_is_export(term_t t)
{
    return term_is_boxed_of(t, HDR_EXPORT);
}

/* The parts of a NEW_FUN_EXT closure, kept so it re-encodes exactly. */
typedef struct heap_fun_info {
    uint8_t arity;
    uint8_t uniq[16];
    uint32_t index;
    uint32_t num_free;
    term_t module;    /* atom */
    term_t old_index; /* integer */
    term_t old_uniq;  /* integer */
    term_t pid;       /* creator pid slot: any term (OTP 25 decodes any) */
} heap_fun_info_t;

#define HEAP_FUN_MAX_FREE ((uint32_t)1 << 24)

/* A fun; the caller fills *free_out[0..num_free) with the free variables. */
int heap_make_fun(heap_t *h, const heap_fun_info_t *info, term_t **free_out,
                  term_t *out) GD_MUST_CHECK;
void heap_fun_info(term_t fun, heap_fun_info_t *info);
static inline term_t *term_fun_free(term_t t)
{
    return term_boxed_ptr(t) + 1 + 4 + 4;
}

/* `fun Module:Function/Arity`. */
int heap_make_export(heap_t *h, term_t module, term_t function, uint8_t arity,
                     term_t *out) GD_MUST_CHECK;

/* ---- maps ---- */

/* Maps with at most this many keys are flat (sorted keys); larger ones HAMT. */
#define HEAP_MAP_FLAT_MAX 32

static inline bool term_is_map(term_t t)
{
    return term_is_boxed(t) &&
           (term_boxed_subtag(t) == HDR_MAP_FLAT || term_boxed_subtag(t) == HDR_MAP_HASH);
}

/*
 * A map of the n pairs keys[i] => vals[i] (any order).  Errors:
 * GD_EDUPLICATE_KEY if two keys are exactly equal (=:=), GD_ENOMEM (the heap,
 * the scratch, or a key comparison ran out of memory).  The
 * arrays are only read.  O(n log n).
 */
int heap_make_map(heap_t *h, const term_t *keys, const term_t *vals, size_t n,
                  term_t *out) GD_MUST_CHECK;

/* Number of pairs in a map. */
size_t heap_map_size(term_t map);

/* Sets *val to the value for `key` (exact match), or TERM_NONE if absent.
 * O(log n).  Errors: GD_ENOMEM (comparing or hashing a deeply branching key
 * ran out of memory; *val not set). */
int heap_map_find(term_t map, term_t key, term_t *val) GD_MUST_CHECK;

/*
 * A map equal to `map` with key => val (replacing an existing value).
 * O(log n) words allocated for hash maps, O(n) for flat ones.  Errors:
 * GD_EBADARG, GD_ENOMEM (the heap, or a key comparison, ran out of memory).
 */
int heap_map_put(heap_t *h, term_t map, term_t key, term_t val, term_t *out) GD_MUST_CHECK;

/*
 * Iterates a map's pairs in its storage order (sorted for flat maps, hash
 * order for hash maps): set it->pos = 0 first (and keep the map reachable),
 * then call heap_map_next until it returns false.
 */
typedef struct heap_map_iter {
    term_t map;
    size_t pos;
    /* HAMT walk state: an explicit path (no recursion). */
    uint32_t depth;
    term_t path_node[16];
    uint32_t path_index[16];
} heap_map_iter_t;
void heap_map_iter_init(heap_map_iter_t *it, term_t map);
bool heap_map_next(heap_map_iter_t *it, term_t *key, term_t *val);

/* Writes the map's keys and values to keys[]/vals[] (each heap_map_size()
 * long, owned by the caller) in heap_map_next's order, in one O(n) pass
 * without allocating. */
void heap_map_pairs(term_t map, term_t *keys, term_t *vals);

/*
 * Writes the map's keys and values to keys[]/vals[] (each heap_map_size()
 * long) in ascending term order of the keys (the order of `deterministic`
 * encoding and of printing).  O(n log n); no heap allocation.  Errors:
 * GD_ENOMEM when comparing deeply branching keys ran out of memory.
 */
int heap_map_sorted(term_t map, term_t *keys, term_t *vals) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Equality, ordering, hashing                                              */

/*
 * Compares two terms in Erlang's standard order
 * (number < atom < reference < fun < port < pid < tuple < map < nil < list <
 * bitstring).  With exact = false, integers and floats compare by value
 * (1 == 1.0, like ==/<); with exact = true it is OTP's term order, total
 * and consistent with =:=: every integer sorts below every float whatever
 * the values (2 < 1.0, as erts_internal:cmp_term and map key order), and
 * 0.0 =:= -0.0 (OTP 25).  A local pid, port or reference counts as one of
 * this node's name and creation (heap_node_name).  Sets *order to -1, 0 or 1.  No recursion on the
 * C stack; O(size of the smaller term).  Errors: GD_ENOMEM when its work stack (malloc'd only for
 * terms branching deeper than ~32 levels) cannot grow: the comparison fails, never the node.
 */
int heap_compare_checked(term_t a, term_t b, bool exact, int *order) GD_MUST_CHECK;

/* A 64-bit hash consistent with exact equality (=:=), in *out.  No
 * recursion.  Stable only within one OS process: atoms hash by their table
 * index.  Errors: GD_ENOMEM as heap_compare_checked. */
int heap_hash_checked(term_t t, uint64_t *out) GD_MUST_CHECK;

/*
 * erlang:phash2/1,2, bit-exact with OTP (portable across releases and
 * machines; hash.c says how it is computed).  range = 0 is phash2/1 (27
 * bits); 1..2^32 is phash2/2 (a value in [0, range)).  Local pids, ports
 * and references hash as OTP's: by number only, never by node.  No
 * recursion; O(size of t).  Errors: GD_EINVAL (range above 2^32), GD_ENOMEM
 * (the walk stack could not grow); *out is not set then.
 */
int heap_phash2(term_t t, uint64_t range, uint32_t *out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Copying and sizing                                                       */

/*
 * Sharing.  A copy is a tree copy except where sharing is cheap to see: a
 * small cache of recently copied objects (keyed by source address) lets a
 * tuple, map, fun, binary or list reached again through a non-tail slot
 * soon after its first copy be shared, as in {X, X} or a balanced DAG
 * (T(n+1) = {T(n), T(n)} copies in O(n) words).  List cells reached through
 * a tail are never looked up (long lists cost nothing extra) and leaf
 * objects without terms (floats, bignums, heap binaries) are always
 * duplicated.  Sizing and copying walk the term identically, so
 * heap_term_size is exactly what heap_copy_term allocates.
 */

/* Largest copy (words) heap_copy_term / heap_msg_copy attempt: beyond it
 * GD_ESYSTEM_LIMIT (a DAG whose tree is astronomically large). */
#define HEAP_COPY_MAX_WORDS ((size_t)1 << 40)

/* Words needed to copy t onto another heap (refc binaries counted as their
 * REFC_BIN object), saturating at SIZE_MAX past HEAP_COPY_MAX_WORDS or when
 * memory for the walk runs out.  O(size); no recursion. */
size_t heap_term_size(term_t t);

/*
 * Deep-copies t onto h (refc binaries shared, refc bumped; sharing as
 * above).  Allocates with heap_alloc (never collects).  No recursion.
 * Errors: GD_ENOMEM, GD_ESYSTEM_LIMIT (past HEAP_COPY_MAX_WORDS); *out is
 * not set then.
 */
int heap_copy_term(heap_t *h, term_t t, term_t *out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Type order classes (for the codec and printer).                          */

enum heap_type_class {
    HEAP_CLASS_NUMBER = 0,
    HEAP_CLASS_ATOM,
    HEAP_CLASS_REF,
    HEAP_CLASS_FUN,
    HEAP_CLASS_PORT,
    HEAP_CLASS_PID,
    HEAP_CLASS_TUPLE,
    HEAP_CLASS_MAP,
    HEAP_CLASS_NIL,
    HEAP_CLASS_LIST,
    HEAP_CLASS_BITSTRING,
};
/* The order class of a term (the first key of Erlang's term order). */
static inline enum heap_type_class heap_type_class(term_t t)
{
    switch (term_primary(t)) {
    case TAG_PRIMARY_LIST:
        return HEAP_CLASS_LIST;
    case TAG_PRIMARY_BOXED:
        switch (term_boxed_subtag(t)) {
        case HDR_TUPLE:
            return HEAP_CLASS_TUPLE;
        case HDR_POS_BIG:
        case HDR_NEG_BIG:
        case HDR_FLOAT:
            return HEAP_CLASS_NUMBER;
        case HDR_REF:
        case HDR_LOCAL_REF:
            return HEAP_CLASS_REF;
        case HDR_FUN:
        case HDR_EXPORT:
            return HEAP_CLASS_FUN;
        case HDR_EXT_PID:
            return HEAP_CLASS_PID;
        case HDR_EXT_PORT:
            return HEAP_CLASS_PORT;
        case HDR_HEAP_BIN:
        case HDR_REFC_BIN:
        case HDR_SUB_BIN:
            return HEAP_CLASS_BITSTRING;
        default:
            return HEAP_CLASS_MAP;
        }
    default:
        if (term_is_small(t))
            return HEAP_CLASS_NUMBER;
        if (term_is_atom(t))
            return HEAP_CLASS_ATOM;
        if (term_is_local_pid(t))
            return HEAP_CLASS_PID;
        if (term_is_local_port(t))
            return HEAP_CLASS_PORT;
        return HEAP_CLASS_NIL;
    }
}

/* ------------------------------------------------------------------------ */
/* UTF-8 (utf8.c): the one decoder and encoder of the atom table, the ETF    */
/* codec and the term text parser and printer.                               */

/* Longest UTF-8 sequence of one code point. */
#define HEAP_UTF8_MAX_BYTES 4

/*
 * Decodes the code point starting at s[0] (len >= 1 bytes available) into
 * *cp and returns its length, 1..4; returns 0 for anything that is not
 * well-formed UTF-8: a stray continuation byte, an overlong form, a
 * surrogate (U+D800..U+DFFF), a value above U+10FFFF, a sequence cut off
 * by len.  O(1).
 */
size_t heap_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp);

/* Writes code point cp (< 0x110000) as UTF-8 into b and returns its length
 * (1..4).  Surrogates are written like any value; callers that must not
 * produce them check first. */
size_t heap_utf8_encode(uint8_t b[HEAP_UTF8_MAX_BYTES], uint32_t cp);

/*
 * True if s[0..len) is well-formed UTF-8 (as heap_utf8_decode defines it);
 * then *chars gets its number of code points and *latin1 whether all of
 * them are below 256 (either pointer may be NULL).  O(len).
 */
bool heap_utf8_validate(const uint8_t *s, size_t len, size_t *chars, bool *latin1);

/* Bytes the Latin-1 text s[0..n) takes as UTF-8 (n plus one per byte
 * >= 0x80).  O(n). */
size_t heap_utf8_latin1_len(const uint8_t *s, size_t n);

/* Writes the Latin-1 text s[0..n) as UTF-8 into out, which holds
 * heap_utf8_latin1_len(s, n) bytes, and returns that length.  O(n). */
size_t heap_utf8_from_latin1(const uint8_t *s, size_t n, uint8_t *out);

#endif /* GIRDER_HEAP_H */
