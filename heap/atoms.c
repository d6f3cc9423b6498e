/*
 * atoms.c — the global atom table.
 *
 * Atoms are indices into a chunked entry array.  Lookup by name goes through
 * an open-addressing hash index of fixed capacity (twice the configured
 * limit, so probes stay short even when full).  Readers never lock: an entry
 * is fully written before its index is published into the hash slot with a
 * release store, and readers load slots with acquire.  Writers (creating a
 * new atom) serialise on one mutex.  Entries are never removed, so a pointer
 * to an atom's text stays valid for the life of the process.
 */
#include <pthread.h>
#include <stdlib.h>

#include "gc_internal.h"
#include "heap.h"

#define CHUNK_BITS 12
#define CHUNK_SIZE (1u << CHUNK_BITS)

typedef struct atom_entry {
    uint64_t hash;
    uint16_t len;   /* UTF-8 bytes */
    uint16_t chars; /* code points */
    bool latin1;    /* every code point < 256 */
    char *text;     /* not NUL-terminated */
} atom_entry_t;

typedef struct atom_table {
    uint32_t limit;
    uint32_t slot_mask;
    _Atomic uint32_t *slots;         /* atom index + 1, 0 = empty */
    _Atomic(atom_entry_t *) *chunks; /* limit / CHUNK_SIZE (rounded up) */
    atomic_uint_fast32_t count;
    pthread_mutex_t write_lock;
} atom_table_t;

static atom_table_t table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static uint32_t configured_limit = HEAP_ATOM_LIMIT_DEFAULT;
static atomic_bool table_started;
/* Set (release) once init_table succeeded: the accessors' fast path loads it
 * (acquire, pairing with that store) instead of entering pthread_once, and
 * never store to shared memory, so atom reads on every scheduler thread
 * keep the line shared. */
static atomic_bool table_ready;
static int table_init_error;

static const char *const fixed_atom_names[] = {
#define HEAP_ATOM_NAME(name, text) text,
    HEAP_FIXED_ATOMS(HEAP_ATOM_NAME)
#undef HEAP_ATOM_NAME
};

/* FNV-1a over the UTF-8 bytes, finalised with a 64-bit mixer. */
static uint64_t hash_text(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3u;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

/*
 * Validates UTF-8 (heap_utf8_validate: no overlong forms, no surrogates,
 * max U+10FFFF) and counts characters; sets *latin1 if all code points are
 * < 256.
 */
static int check_utf8(const char *text, size_t len, size_t *chars_out, bool *latin1)
{
    size_t chars;
    if (!heap_utf8_validate((const uint8_t *)text, len, &chars, latin1))
        return GD_EATOM_BAD_UTF8;
    if (chars > HEAP_ATOM_MAX_CHARS)
        return GD_EATOM_TOO_LONG;
    *chars_out = chars;
    return GD_OK;
}

static atom_entry_t *entry_at(uint32_t index)
{
    /* acquire pairs with the release store that published the chunk */
    atom_entry_t *chunk =
        atomic_load_explicit(&table.chunks[index >> CHUNK_BITS], memory_order_acquire);
    return &chunk[index & (CHUNK_SIZE - 1)];
}

/* Finds `text` in the index: returns the atom index or UINT32_MAX, and the
 * first empty slot it reached in *empty_slot. */
static uint32_t find(const char *text, size_t len, uint64_t hash, uint32_t *empty_slot)
{
    uint32_t slot = (uint32_t)hash & table.slot_mask;
    for (;;) {
        /* acquire pairs with the release store in create(): the entry the
         * slot names is fully written before we read it */
        uint32_t v = atomic_load_explicit(&table.slots[slot], memory_order_acquire);
        if (v == 0) {
            *empty_slot = slot;
            return UINT32_MAX;
        }
        atom_entry_t *e = entry_at(v - 1);
        if (e->hash == hash && e->len == len && memcmp(e->text, text, len) == 0)
            return v - 1;
        slot = (slot + 1) & table.slot_mask;
    }
}

static int create(const char *text, size_t len, uint64_t hash, size_t chars, bool latin1,
                  uint32_t *index_out)
{
    pthread_mutex_lock(&table.write_lock);
    uint32_t slot;
    uint32_t found = find(text, len, hash, &slot);
    if (found != UINT32_MAX) {
        pthread_mutex_unlock(&table.write_lock);
        *index_out = found;
        return GD_OK;
    }
    uint32_t index = (uint32_t)atomic_load_explicit(&table.count, memory_order_relaxed);
    int rc = GD_EATOM_TABLE_FULL;
    if (index >= table.limit)
        goto unlock;
    rc = GD_ENOMEM;
    uint32_t chunk_no = index >> CHUNK_BITS;
    atom_entry_t *chunk = atomic_load_explicit(&table.chunks[chunk_no], memory_order_relaxed);
    if (chunk == NULL) {
        chunk = heap_xcalloc(CHUNK_SIZE, sizeof *chunk);
        if (chunk == NULL)
            goto unlock;
        /* release: readers that find an index in this chunk see it zeroed */
        atomic_store_explicit(&table.chunks[chunk_no], chunk, memory_order_release);
    }
    char *copy = heap_xmalloc(len ? len : 1);
    if (copy == NULL)
        goto unlock;
    memcpy(copy, text, len);
    atom_entry_t *e = &chunk[index & (CHUNK_SIZE - 1)];
    e->hash = hash;
    e->len = (uint16_t)len;
    e->chars = (uint16_t)chars;
    e->latin1 = latin1;
    e->text = copy;
    atomic_store_explicit(&table.count, index + 1, memory_order_release);
    /* release: publishes the entry written above to lock-free readers in find() */
    atomic_store_explicit(&table.slots[slot], index + 1, memory_order_release);
    *index_out = index;
    rc = GD_OK;
unlock:
    pthread_mutex_unlock(&table.write_lock);
    return rc;
}

static void init_table(void)
{
    uint32_t limit = configured_limit;
    uint64_t cap = 1;
    while (cap < 2 * (uint64_t)limit)
        cap <<= 1;
    table.limit = limit;
    table.slot_mask = (uint32_t)(cap - 1);
    table.slots = heap_xcalloc(cap, sizeof *table.slots);
    table.chunks = heap_xcalloc((limit + CHUNK_SIZE - 1) / CHUNK_SIZE, sizeof *table.chunks);
    pthread_mutex_init(&table.write_lock, NULL);
    if (table.slots == NULL || table.chunks == NULL) {
        free(table.slots);
        free(table.chunks);
        table.slots = NULL;
        table.chunks = NULL;
        table_init_error = GD_ENOMEM;
        return;
    }
    for (size_t i = 0; i < HEAP_FIXED_ATOM_COUNT; i++) {
        const char *name = fixed_atom_names[i];
        size_t len = strlen(name), chars;
        bool latin1;
        uint32_t index;
        if (check_utf8(name, len, &chars, &latin1) != GD_OK ||
            create(name, len, hash_text(name, len), chars, latin1, &index) != GD_OK || index != i) {
            table_init_error = GD_ENOMEM;
            return;
        }
    }
    atomic_store_explicit(&table_ready, true, memory_order_release);
}

static int ensure_table(void)
{
    if (GD_LIKELY(atomic_load_explicit(&table_ready, memory_order_acquire)))
        return GD_OK;
    atomic_store_explicit(&table_started, true, memory_order_relaxed);
    pthread_once(&table_once, init_table);
    return table_init_error;
}

int heap_atoms_configure(uint32_t limit)
{
    if (limit <= HEAP_FIXED_ATOM_COUNT || limit > HEAP_ATOM_LIMIT_MAX)
        return GD_EINVAL;
    if (atomic_load_explicit(&table_started, memory_order_relaxed))
        return GD_EINVAL;
    configured_limit = limit;
    return GD_OK;
}

static int lookup_or_create(const char *utf8, size_t len, bool create_missing, term_t *out)
{
    int rc = ensure_table();
    if (rc != GD_OK)
        return rc;
    if (len > HEAP_ATOM_MAX_BYTES)
        return GD_EATOM_TOO_LONG;
    uint64_t hash = hash_text(utf8, len);
    uint32_t slot, index = find(utf8, len, hash, &slot);
    if (index == UINT32_MAX) {
        size_t chars;
        bool latin1;
        rc = check_utf8(utf8, len, &chars, &latin1);
        if (rc != GD_OK)
            return rc;
        if (!create_missing)
            return GD_EATOM_NOT_FOUND;
        rc = create(utf8, len, hash, chars, latin1, &index);
        if (rc != GD_OK)
            return rc;
    }
    *out = term_make_atom(index);
    return GD_OK;
}

int heap_atom_put(const char *utf8, size_t len, term_t *out)
{
    return lookup_or_create(utf8, len, true, out);
}

int heap_atom_lookup(const char *utf8, size_t len, term_t *out)
{
    return lookup_or_create(utf8, len, false, out);
}

/* Converts Latin-1 to UTF-8 in buf (capacity 2 * HEAP_ATOM_MAX_CHARS). */
static int latin1_to_utf8(const uint8_t *latin1, size_t len, char *buf, size_t *out_len)
{
    if (len > HEAP_ATOM_MAX_CHARS)
        return GD_EATOM_TOO_LONG;
    *out_len = heap_utf8_from_latin1(latin1, len, (uint8_t *)buf);
    return GD_OK;
}

int heap_atom_put_latin1(const uint8_t *latin1, size_t len, term_t *out)
{
    char buf[2 * HEAP_ATOM_MAX_CHARS];
    size_t n;
    int rc = latin1_to_utf8(latin1, len, buf, &n);
    return rc != GD_OK ? rc : heap_atom_put(buf, n, out);
}

/*
 * The fixed atoms exist as constants before any table call, so the
 * accessors make sure the table is built.  If it could not be (memory ran
 * out at the first atom operation) no other atom can exist, and the fixed
 * ones are answered from their static names (all ASCII).
 */
static const char *fixed_text(term_t atom, size_t *len)
{
    uint32_t index = term_atom_index(atom);
    if (index >= HEAP_FIXED_ATOM_COUNT) {
        GD_ASSERT(!"an atom index without an atom table");
        *len = 0;
        return "";
    }
    *len = strlen(fixed_atom_names[index]);
    return fixed_atom_names[index];
}

const char *heap_atom_text(term_t atom, size_t *len)
{
    if (GD_UNLIKELY(ensure_table() != GD_OK))
        return fixed_text(atom, len);
    atom_entry_t *e = entry_at(term_atom_index(atom));
    *len = e->len;
    return e->text;
}

size_t heap_atom_chars(term_t atom)
{
    size_t len;
    if (GD_UNLIKELY(ensure_table() != GD_OK)) {
        (void)fixed_text(atom, &len); /* ASCII: one character a byte */
        return len;
    }
    return entry_at(term_atom_index(atom))->chars;
}

bool heap_atom_is_latin1(term_t atom)
{
    if (GD_UNLIKELY(ensure_table() != GD_OK))
        return true;
    return entry_at(term_atom_index(atom))->latin1;
}

uint32_t heap_atom_count(void)
{
    if (ensure_table() != GD_OK)
        return 0;
    return (uint32_t)atomic_load_explicit(&table.count, memory_order_acquire);
}

uint32_t heap_atom_limit(void)
{
    if (ensure_table() != GD_OK)
        return 0;
    return table.limit;
}

term_t heap_atom(const char *name)
{
    term_t a;
    return heap_atom_put(name, strlen(name), &a) == GD_OK ? a : TERM_NONE;
}
