/*
 * bench_etf.c — ETF encode/decode throughput of girder and of libei
 * (erl_interface) on exactly the corpus of BEAM's side, beam_etf.erl in
 * this directory, measured the way that program measures BEAM, so tests/bench/etf/run.sh can put
 * the three side by side.
 *
 *   bench_etf CORPUS.etf girder|libei [RUN]
 *
 * (girder mode reports impls "girder" and "girder_nogc", see below.)
 *
 * CORPUS.etf is what beam_etf.erl writes with BENCH_DUMP_DIR set:
 * term_to_binary([{Kind, [Term]}]).  Each term's encoding is sliced out of
 * that file (ETF is compositional, so the slice, behind a 131 byte, is
 * byte for byte what term_to_binary(Term) gave BEAM — maps of more than 32
 * keys included, in BEAM's hash order); those slices are the decode inputs
 * for every implementation.  Method, as beam_etf.erl:
 * - every term is encoded (decoded) by a separate call, default options
 *   (OTP 25 encoding, no compression), and the results are consumed
 *   (encode: sum of sizes, checked; decode: a type check summed);
 * - throughput = MiB (2^20 bytes) of the corpus encoding / seconds of one
 *   repetition over all terms, timed with CLOCK_MONOTONIC around the whole
 *   repetition; 5 repetitions for the whole corpus, 3 per kind; the value
 *   is the median (nearest rank, as bench_beam:pct/2) and every sample is
 *   listed.
 * Memory, the choices that have to be made in C (documented in the JSON
 * params too):
 * - girder decode ("girder", the headline): one heap_t per repetition,
 *   heap_init before the first term and heap_destroy after the last, both
 *   inside the timed region, and a GC safe point (heap_ensure_free, no
 *   roots) after every term, as a girder process dropping each decoded term
 *   runs: the same work as BEAM's repetition, whose process collects the
 *   dropped terms as it goes (freeing the heap is paid for, while BEAM's
 *   repetition ends with the process exiting, outside its timer);
 * - girder decode without collecting (impl "girder_nogc", decode only, for
 *   information): the heap then holds every term of the repetition (42 MB
 *   for the whole corpus), which BEAM never does;
 * - libei decode: ei_decode_* into a tree of nodes (atom text, binary bytes,
 *   string bytes and bignum digits copied) in a bump arena, emptied inside
 *   the timed region at the end of every repetition but keeping its chunks,
 *   as girder's heap keeps its areas (a freed arena went back to the kernel
 *   and was faulted in again by every whole-corpus repetition);
 * - encode, both: one growable output buffer reused for every term (its
 *   length reset before each call; it grows to the largest term once, in
 *   the first repetition), as a C caller would.  libei encodes from the
 *   tree that libei decoded once before timing; girder from the terms
 *   girder decoded once.
 * libei always writes atoms as UTF-8 (SMALL_ATOM_UTF8_EXT, one byte
 * shorter than OTP 25's ATOM_EXT); its rates still count the corpus's
 * bytes, as every implementation's do, and its own output size is listed
 * in params.
 *
 * Output: JSON lines on stdout (keys bench, impl, params, value, unit,
 * samples, run); progress on stderr.  Exit 0, or 1 with a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ei.h>

#include "etf.h"
#include "heap.h"

#define REPS_CORPUS 5
#define REPS_KIND 3
#define MAX_KINDS 32
#define KIND_NAME_MAX 64
#define MIB (1024.0 * 1024.0)

/* ------------------------------------------------------------------------ */
/* The corpus                                                               */

typedef struct kind {
    char name[KIND_NAME_MAX];
    size_t first; /* index of its first term */
    size_t count;
    size_t bytes; /* sum of its terms' encodings (with the 131 byte) */
} kind_t;

typedef struct corpus {
    heap_t heap; /* girder's decoded terms */
    size_t nterms;
    term_t *terms;
    uint8_t *enc; /* all term encodings back to back, each with a 131 */
    size_t *off;  /* term i is enc[off[i] .. off[i + 1]) */
    size_t nkinds;
    kind_t kinds[MAX_KINDS];
    size_t bytes; /* sum over all terms */
} corpus_t;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_etf: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static uint8_t *read_whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0)
        die("cannot read %s", path);
    long size = ftell(f);
    if (size <= 0 || fseek(f, 0, SEEK_SET) != 0)
        die("cannot read %s", path);
    uint8_t *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size)
        die("cannot read %s", path);
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* A bounds-checked cursor over the outer structure of the corpus file. */
typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor_t;

static void need(cursor_t *c, size_t n)
{
    if (c->left < n)
        die("%s: corpus file truncated", "etf_corpus.etf");
}

static uint8_t take_u8(cursor_t *c)
{
    need(c, 1);
    c->left--;
    return *c->p++;
}

static uint32_t take_u32(cursor_t *c)
{
    need(c, 4);
    uint32_t v =
        (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
    c->p += 4;
    c->left -= 4;
    return v;
}

static void expect(cursor_t *c, uint8_t tag, const char *what)
{
    if (take_u8(c) != tag)
        die("corpus file: expected %s", what);
}

/* The kind's atom: ATOM_EXT (OTP 25) or SMALL_ATOM_UTF8_EXT (OTP 26+). */
static void take_kind_name(cursor_t *c, char *name)
{
    uint8_t tag = take_u8(c);
    size_t len;
    if (tag == ETF_ATOM_EXT) {
        need(c, 2);
        len = (size_t)c->p[0] << 8 | c->p[1];
        c->p += 2;
        c->left -= 2;
    } else if (tag == ETF_SMALL_ATOM_UTF8_EXT) {
        len = take_u8(c);
    } else {
        die("corpus file: expected %s", "a kind atom");
        return;
    }
    need(c, len);
    if (len >= KIND_NAME_MAX)
        die("corpus file: %s", "kind name too long");
    memcpy(name, c->p, len);
    name[len] = '\0';
    c->p += len;
    c->left -= len;
}

/*
 * Reads [{Kind, [Term]}]: decodes every term onto the corpus heap and keeps
 * a copy of its bytes (behind a 131) as the decode input.
 */
static void load_corpus(corpus_t *c, const uint8_t *data, size_t len)
{
    memset(c, 0, sizeof *c);
    if (heap_init(&c->heap, 0) != GD_OK)
        die("%s", "out of memory");
    cursor_t cur = {data, len};
    expect(&cur, ETF_VERSION_MAGIC, "the version byte");
    expect(&cur, ETF_LIST_EXT, "a list of kinds");
    uint32_t nkinds = take_u32(&cur);
    if (nkinds == 0 || nkinds > MAX_KINDS)
        die("corpus file: %s", "bad number of kinds");
    size_t cap_terms = 1024, cap_bytes = len + 65536;
    c->terms = malloc(cap_terms * sizeof *c->terms);
    c->off = malloc((cap_terms + 1) * sizeof *c->off);
    c->enc = malloc(cap_bytes);
    if (c->terms == NULL || c->off == NULL || c->enc == NULL)
        die("%s", "out of memory");
    size_t pos = 0;
    for (uint32_t k = 0; k < nkinds; k++) {
        kind_t *kd = &c->kinds[c->nkinds++];
        expect(&cur, ETF_SMALL_TUPLE_EXT, "{Kind, Terms}");
        expect(&cur, 2, "a 2-tuple");
        take_kind_name(&cur, kd->name);
        expect(&cur, ETF_LIST_EXT, "a list of terms");
        uint32_t n = take_u32(&cur);
        kd->first = c->nterms;
        kd->count = n;
        for (uint32_t i = 0; i < n; i++) {
            term_t t;
            size_t used = 0;
            etf_error_t err;
            if (etf_decode_body(&c->heap, cur.p, cur.left, NULL, &t, &used, &err) != GD_OK)
                die("corpus file: a term does not decode: %s", etf_strerror(err.code));
            if (c->nterms == cap_terms) {
                cap_terms *= 2;
                c->terms = realloc(c->terms, cap_terms * sizeof *c->terms);
                c->off = realloc(c->off, (cap_terms + 1) * sizeof *c->off);
                if (c->terms == NULL || c->off == NULL)
                    die("%s", "out of memory");
            }
            if (pos + 1 + used > cap_bytes) {
                cap_bytes = 2 * (pos + 1 + used);
                c->enc = realloc(c->enc, cap_bytes);
                if (c->enc == NULL)
                    die("%s", "out of memory");
            }
            c->terms[c->nterms] = t;
            c->off[c->nterms] = pos;
            c->enc[pos] = ETF_VERSION_MAGIC;
            memcpy(c->enc + pos + 1, cur.p, used);
            pos += 1 + used;
            kd->bytes += 1 + used;
            c->nterms++;
            cur.p += used;
            cur.left -= used;
        }
        expect(&cur, ETF_NIL_EXT, "the end of a term list");
        c->bytes += kd->bytes;
    }
    expect(&cur, ETF_NIL_EXT, "the end of the kind list");
    c->off[c->nterms] = pos;
}

static const uint8_t *term_bytes(const corpus_t *c, size_t i, size_t *len)
{
    *len = c->off[i + 1] - c->off[i];
    return c->enc + c->off[i];
}

/*
 * Checks once, before timing, that girder encodes every term to OTP's bytes
 * (maps of more than 32 keys: the same size, OTP's order being its hash
 * order).  Returns the number of terms whose bytes differ that way.
 */
static size_t check_girder_bytes(const corpus_t *c)
{
    etf_buf_t b = {0};
    etf_encode_opts_t o;
    etf_encode_opts_init(&o);
    size_t reordered = 0;
    for (size_t i = 0; i < c->nterms; i++) {
        size_t len;
        const uint8_t *otp = term_bytes(c, i, &len);
        b.len = 0;
        if (etf_encode(c->terms[i], &o, &b) != GD_OK)
            die("%s", "etf_encode failed on a corpus term");
        if (b.len != len)
            die("%s", "girder's encoding of a corpus term has another size than OTP's");
        if (memcmp(b.data, otp, len) != 0) {
            if (!(term_is_map(c->terms[i]) && heap_map_size(c->terms[i]) > HEAP_MAP_FLAT_MAX))
                die("%s", "girder's encoding of a corpus term differs from OTP's");
            reordered++;
        }
    }
    etf_buf_free(&b);
    return reordered;
}

/* ------------------------------------------------------------------------ */
/* Timing and output                                                        */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank median, as bench_beam:median/1. */
static double median(const double *v, size_t n)
{
    double s[16];
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    size_t k = (50 * n + 99) / 100;
    if (k < 1)
        k = 1;
    return s[k - 1];
}

static void emit(const char *bench, const char *impl, const char *params, const double *samples,
                 size_t n, int run)
{
    printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"params\":{%s},\"value\":%.3f,\"unit\":\"MiB/s\","
           "\"samples\":[",
           bench, impl, params, median(samples, n));
    for (size_t i = 0; i < n; i++)
        printf("%s%.3f", i ? "," : "", samples[i]);
    printf("]");
    if (run > 0)
        printf(",\"run\":%d", run);
    printf("}\n");
    fflush(stdout);
}

/* One implementation: a repetition over terms [first, first + count). */
typedef struct impl {
    const char *name;
    const char *memory_note;
    /* Each returns the seconds taken and adds its consumed result to *sink. */
    double (*encode)(void *self, size_t first, size_t count, uint64_t *sink);
    double (*decode)(void *self, size_t first, size_t count, uint64_t *sink);
    void *self;
} impl_t;

static void measure(const impl_t *im, const corpus_t *c, int run, size_t extra_bytes)
{
    double enc[REPS_CORPUS], dec[REPS_CORPUS];
    uint64_t sink = 0;
    double mib = (double)c->bytes / MIB;
    for (int r = 0; r < REPS_CORPUS && im->encode != NULL; r++)
        enc[r] = mib / im->encode(im->self, 0, c->nterms, &sink);
    for (int r = 0; r < REPS_CORPUS; r++)
        dec[r] = mib / im->decode(im->self, 0, c->nterms, &sink);
    char params[512];
    snprintf(params, sizeof params,
             "\"corpus_terms\":%zu,\"corpus_bytes\":%zu,\"reps\":%d,\"output_bytes\":%zu,"
             "\"memory\":\"%s\"",
             c->nterms, c->bytes, REPS_CORPUS, extra_bytes, im->memory_note);
    if (im->encode != NULL) {
        fprintf(stderr, "  %s: etf %.2f MiB, encode %.1f decode %.1f MiB/s (medians)\n", im->name,
                mib, median(enc, REPS_CORPUS), median(dec, REPS_CORPUS));
        emit("etf_encode", im->name, params, enc, REPS_CORPUS, run);
    } else {
        fprintf(stderr, "  %s: etf %.2f MiB, decode %.1f MiB/s (median)\n", im->name, mib,
                median(dec, REPS_CORPUS));
    }
    emit("etf_decode", im->name, params, dec, REPS_CORPUS, run);
    for (size_t k = 0; k < c->nkinds; k++) {
        const kind_t *kd = &c->kinds[k];
        double kmib = (double)kd->bytes / MIB;
        double ke[REPS_KIND], kdv[REPS_KIND];
        for (int r = 0; r < REPS_KIND && im->encode != NULL; r++)
            ke[r] = kmib / im->encode(im->self, kd->first, kd->count, &sink);
        for (int r = 0; r < REPS_KIND; r++)
            kdv[r] = kmib / im->decode(im->self, kd->first, kd->count, &sink);
        snprintf(params, sizeof params, "\"kind\":\"%s\",\"terms\":%zu,\"bytes\":%zu,\"reps\":%d",
                 kd->name, kd->count, kd->bytes, REPS_KIND);
        if (im->encode != NULL)
            emit("etf_encode_kind", im->name, params, ke, REPS_KIND, run);
        emit("etf_decode_kind", im->name, params, kdv, REPS_KIND, run);
    }
    /* The sink is printed so that no call can be dropped as dead code. */
    fprintf(stderr, "  %s: results consumed (checksum %" PRIu64 ")\n", im->name, sink);
}

/* ------------------------------------------------------------------------ */
/* girder                                                                   */

typedef struct girder_ctx {
    const corpus_t *c;
    etf_encode_opts_t opts;
    etf_buf_t out;
    /* Decode like a process that drops each term: a GC safe point
     * (heap_ensure_free, no roots) after every term, so the heap stays at
     * its working size instead of holding the whole repetition. */
    bool gc_each;
} girder_ctx_t;

static double girder_encode(void *self, size_t first, size_t count, uint64_t *sink)
{
    girder_ctx_t *g = self;
    const corpus_t *c = g->c;
    uint64_t total = 0;
    double t0 = now_s();
    for (size_t i = first; i < first + count; i++) {
        g->out.len = 0;
        if (etf_encode(c->terms[i], &g->opts, &g->out) != GD_OK)
            die("%s", "etf_encode failed");
        total += g->out.len;
    }
    double t = now_s() - t0;
    if (total != c->off[first + count] - c->off[first])
        die("%s", "girder encoded another number of bytes than the corpus holds");
    *sink += total;
    return t;
}

static double girder_decode(void *self, size_t first, size_t count, uint64_t *sink)
{
    girder_ctx_t *g = self;
    const corpus_t *c = g->c;
    uint64_t kinds = 0;
    double t0 = now_s();
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        die("%s", "out of memory");
    for (size_t i = first; i < first + count; i++) {
        size_t len, used;
        const uint8_t *b = term_bytes(c, i, &len);
        term_t t;
        if (etf_decode(&h, b, len, NULL, &t, &used, NULL) != GD_OK)
            die("%s", "etf_decode failed");
        kinds += term_is_list(t) ? 1 : term_is_map(t) ? 2 : 3;
        if (g->gc_each && heap_ensure_free(&h, 0, NULL, 0) != GD_OK)
            die("%s", "heap_ensure_free failed");
    }
    heap_destroy(&h);
    double t = now_s() - t0;
    *sink += kinds;
    return t;
}

/* ------------------------------------------------------------------------ */
/* libei: a tree of nodes decoded with ei_decode_*, encoded with ei_x_*     */

/* A bump allocator: chunks of at least ARENA_CHUNK bytes.  arena_reset
 * empties it but keeps its chunks for reuse (their pages stay mapped), the
 * way a C program reuses one decode arena; arena_free returns them. */
#define ARENA_CHUNK ((size_t)1 << 20)
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
} arena_chunk_t;

typedef struct arena {
    arena_chunk_t *head;  /* chunks in use, the current one first */
    arena_chunk_t *spare; /* chunks emptied by arena_reset */
} arena_t;

static void *arena_alloc(arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_chunk_t *ch = a->head;
    if (ch == NULL || ch->cap - ch->used < n) {
        if (a->spare != NULL && a->spare->cap >= n) {
            ch = a->spare;
            a->spare = ch->next;
        } else {
            size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
            ch = malloc(sizeof *ch + cap);
            if (ch == NULL)
                die("%s", "out of memory");
            ch->cap = cap;
        }
        ch->used = 0;
        ch->next = a->head;
        a->head = ch;
    }
    void *p = ch->mem + ch->used;
    ch->used += n;
    return p;
}

static void arena_reset(arena_t *a)
{
    while (a->head != NULL) {
        arena_chunk_t *next = a->head->next;
        a->head->next = a->spare;
        a->spare = a->head;
        a->head = next;
    }
}

static void chunks_free(arena_chunk_t *ch)
{
    while (ch != NULL) {
        arena_chunk_t *next = ch->next;
        free(ch);
        ch = next;
    }
}

static void arena_free(arena_t *a)
{
    chunks_free(a->head);
    chunks_free(a->spare);
    a->head = a->spare = NULL;
}

/* One decoded term.  type is what ei_get_type reports (all atom tags fold
 * to ERL_ATOM_EXT, both float tags to ERL_FLOAT_EXT, pids/ports/refs to
 * their old tags). */
typedef struct ei_node {
    int type;
    int arity;                /* tuple/map arity, list length, byte length of text/data */
    erlang_char_encoding enc; /* atoms */
    union {
        long long i;
        double d;
        char *bytes;           /* atom text (NUL-terminated), binary, string */
        struct ei_node **kids; /* tuple: arity; list: arity + tail; map: 2 * arity */
        erlang_big *big;
        erlang_pid *pid;
        erlang_port *port;
        erlang_ref *ref;
    } u;
} ei_node_t;

/* Decodes one term at buf[*idx] into a node tree on a.  Recursive: the
 * corpus nests at most ~20 levels (nested(6)); this is a benchmark over a
 * known input, not a decoder for peer data.  NULL on an ei error or a type
 * the corpus does not use. */
static ei_node_t *ei_tree_decode(const char *buf, int *idx, arena_t *a)
{
    int type, size;
    if (ei_get_type(buf, idx, &type, &size) < 0)
        return NULL;
    ei_node_t *n = arena_alloc(a, sizeof *n);
    n->type = type;
    n->arity = size;
    long len;
    switch (type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT:
        return ei_decode_longlong(buf, idx, &n->u.i) < 0 ? NULL : n;
    case ERL_SMALL_BIG_EXT:
    case ERL_LARGE_BIG_EXT:
        n->u.big = arena_alloc(a, sizeof *n->u.big);
        n->u.big->arity = (unsigned)size;
        n->u.big->digits = arena_alloc(a, (size_t)size + 1);
        return ei_decode_big(buf, idx, n->u.big) < 0 ? NULL : n;
    case ERL_FLOAT_EXT:
        return ei_decode_double(buf, idx, &n->u.d) < 0 ? NULL : n;
    case ERL_ATOM_EXT:
        n->u.bytes = arena_alloc(a, (size_t)size + 1);
        return ei_decode_atom_as(buf, idx, n->u.bytes, size + 1, ERLANG_LATIN1 | ERLANG_UTF8,
                                 &n->enc, NULL) < 0
                   ? NULL
                   : n;
    case ERL_BINARY_EXT:
        n->u.bytes = arena_alloc(a, (size_t)size);
        return ei_decode_binary(buf, idx, n->u.bytes, &len) < 0 ? NULL : n;
    case ERL_STRING_EXT:
        n->u.bytes = arena_alloc(a, (size_t)size + 1);
        return ei_decode_string(buf, idx, n->u.bytes) < 0 ? NULL : n;
    case ERL_NIL_EXT:
        return ei_decode_list_header(buf, idx, &n->arity) < 0 ? NULL : n;
    case ERL_LIST_EXT:
        if (ei_decode_list_header(buf, idx, &n->arity) < 0)
            return NULL;
        n->u.kids = arena_alloc(a, ((size_t)n->arity + 1) * sizeof *n->u.kids);
        for (int i = 0; i <= n->arity; i++)
            if ((n->u.kids[i] = ei_tree_decode(buf, idx, a)) == NULL)
                return NULL;
        return n;
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT:
        if (ei_decode_tuple_header(buf, idx, &n->arity) < 0)
            return NULL;
        n->u.kids = arena_alloc(a, (size_t)n->arity * sizeof *n->u.kids);
        for (int i = 0; i < n->arity; i++)
            if ((n->u.kids[i] = ei_tree_decode(buf, idx, a)) == NULL)
                return NULL;
        return n;
    case ERL_MAP_EXT:
        if (ei_decode_map_header(buf, idx, &n->arity) < 0)
            return NULL;
        n->u.kids = arena_alloc(a, 2 * (size_t)n->arity * sizeof *n->u.kids);
        for (int i = 0; i < 2 * n->arity; i++)
            if ((n->u.kids[i] = ei_tree_decode(buf, idx, a)) == NULL)
                return NULL;
        return n;
    case ERL_PID_EXT:
        n->u.pid = arena_alloc(a, sizeof *n->u.pid);
        return ei_decode_pid(buf, idx, n->u.pid) < 0 ? NULL : n;
    case ERL_PORT_EXT:
        n->u.port = arena_alloc(a, sizeof *n->u.port);
        return ei_decode_port(buf, idx, n->u.port) < 0 ? NULL : n;
    case ERL_NEW_REFERENCE_EXT:
        n->u.ref = arena_alloc(a, sizeof *n->u.ref);
        return ei_decode_ref(buf, idx, n->u.ref) < 0 ? NULL : n;
    default:
        return NULL;
    }
}

/* Encodes a node tree with ei_x_encode_* (recursive, as the decoder). */
static int ei_tree_encode(ei_x_buff *x, const ei_node_t *n)
{
    switch (n->type) {
    case ERL_SMALL_INTEGER_EXT:
    case ERL_INTEGER_EXT:
        return ei_x_encode_longlong(x, n->u.i);
    case ERL_SMALL_BIG_EXT:
    case ERL_LARGE_BIG_EXT:
        return ei_x_encode_big(x, n->u.big);
    case ERL_FLOAT_EXT:
        return ei_x_encode_double(x, n->u.d);
    case ERL_ATOM_EXT:
        return ei_x_encode_atom_len_as(x, n->u.bytes, n->arity, n->enc,
                                       ERLANG_LATIN1 | ERLANG_UTF8);
    case ERL_BINARY_EXT:
        return ei_x_encode_binary(x, n->u.bytes, n->arity);
    case ERL_STRING_EXT:
        return ei_x_encode_string_len(x, n->u.bytes, n->arity);
    case ERL_NIL_EXT:
        return ei_x_encode_empty_list(x);
    case ERL_LIST_EXT:
        if (ei_x_encode_list_header(x, n->arity) < 0)
            return -1;
        for (int i = 0; i < n->arity; i++)
            if (ei_tree_encode(x, n->u.kids[i]) < 0)
                return -1;
        /* The tail: [] for a proper list (list_header leaves it to us). */
        return ei_tree_encode(x, n->u.kids[n->arity]);
    case ERL_SMALL_TUPLE_EXT:
    case ERL_LARGE_TUPLE_EXT:
        if (ei_x_encode_tuple_header(x, n->arity) < 0)
            return -1;
        for (int i = 0; i < n->arity; i++)
            if (ei_tree_encode(x, n->u.kids[i]) < 0)
                return -1;
        return 0;
    case ERL_MAP_EXT:
        if (ei_x_encode_map_header(x, n->arity) < 0)
            return -1;
        for (int i = 0; i < 2 * n->arity; i++)
            if (ei_tree_encode(x, n->u.kids[i]) < 0)
                return -1;
        return 0;
    case ERL_PID_EXT:
        return ei_x_encode_pid(x, n->u.pid);
    case ERL_PORT_EXT:
        return ei_x_encode_port(x, n->u.port);
    case ERL_NEW_REFERENCE_EXT:
        return ei_x_encode_ref(x, n->u.ref);
    default:
        return -1;
    }
}

typedef struct libei_ctx {
    const corpus_t *c;
    arena_t trees_arena; /* the trees encode works from (decoded once) */
    ei_node_t **trees;
    ei_x_buff x;
    /* The decode arena, emptied (not freed) by every repetition: freeing
     * it returned ~70 MB to the kernel after each whole-corpus repetition
     * and the next one page-faulted it all back in (16,000 faults, about
     * three quarters of its time), while girder's heap keeps its areas. */
    arena_t dec_arena;
} libei_ctx_t;

static ei_node_t *libei_decode_one(const corpus_t *c, size_t i, arena_t *a)
{
    size_t len;
    const char *b = (const char *)term_bytes(c, i, &len);
    int idx = 0, version;
    if (ei_decode_version(b, &idx, &version) < 0)
        return NULL;
    ei_node_t *n = ei_tree_decode(b, &idx, a);
    return n != NULL && (size_t)idx == len ? n : NULL;
}

static double libei_encode(void *self, size_t first, size_t count, uint64_t *sink)
{
    libei_ctx_t *e = self;
    uint64_t total = 0;
    double t0 = now_s();
    for (size_t i = first; i < first + count; i++) {
        e->x.index = 0;
        if (ei_x_encode_version(&e->x) < 0 || ei_tree_encode(&e->x, e->trees[i]) < 0)
            die("%s", "ei_x_encode failed");
        total += (uint64_t)e->x.index;
    }
    double t = now_s() - t0;
    if (total == 0)
        die("%s", "libei encoded nothing");
    *sink += total;
    return t;
}

static double libei_decode(void *self, size_t first, size_t count, uint64_t *sink)
{
    libei_ctx_t *e = self;
    uint64_t kinds = 0;
    double t0 = now_s();
    arena_t *a = &e->dec_arena;
    for (size_t i = first; i < first + count; i++) {
        ei_node_t *n = libei_decode_one(e->c, i, a);
        if (n == NULL)
            die("%s", "ei_decode failed");
        kinds += n->type == ERL_LIST_EXT || n->type == ERL_STRING_EXT || n->type == ERL_NIL_EXT ? 1
                 : n->type == ERL_MAP_EXT                                                       ? 2
                                                                                                : 3;
    }
    arena_reset(a);
    double t = now_s() - t0;
    *sink += kinds;
    return t;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || (strcmp(argv[2], "girder") != 0 && strcmp(argv[2], "libei") != 0)) {
        fprintf(stderr, "usage: %s CORPUS.etf girder|libei [RUN]\n", argv[0]);
        return 2;
    }
    int run = argc == 4 ? atoi(argv[3]) : 0;
    size_t len;
    uint8_t *data = read_whole_file(argv[1], &len);
    corpus_t c;
    load_corpus(&c, data, len);
    free(data);
    fprintf(stderr, "  corpus: %zu kinds, %zu terms, %zu bytes\n", c.nkinds, c.nterms, c.bytes);

    if (strcmp(argv[2], "girder") == 0) {
        size_t reordered = check_girder_bytes(&c);
        fprintf(stderr,
                "  girder encodes every corpus term to OTP's bytes (%zu maps > 32 keys in "
                "sorted instead of OTP's hash order)\n",
                reordered);
        girder_ctx_t g;
        memset(&g, 0, sizeof g);
        g.c = &c;
        etf_encode_opts_init(&g.opts);
        g.gc_each = true;
        impl_t im = {"girder",
                     "decode: one heap_t per rep, a GC safe point (heap_ensure_free, no roots) "
                     "after every term, heap_init and heap_destroy timed; encode: one etf_buf_t "
                     "reused",
                     girder_encode, girder_decode, &g};
        measure(&im, &c, run, c.bytes);
        g.gc_each = false;
        impl_t im_nogc = {"girder_nogc",
                          "decode only: one heap_t per rep holding every decoded term (never "
                          "collected), heap_init and heap_destroy timed",
                          NULL, girder_decode, &g};
        measure(&im_nogc, &c, run, c.bytes);
        etf_buf_free(&g.out);
    } else {
        if (ei_init() != 0)
            die("%s", "ei_init failed");
        libei_ctx_t e;
        memset(&e, 0, sizeof e);
        e.c = &c;
        e.trees = malloc(c.nterms * sizeof *e.trees);
        if (e.trees == NULL || ei_x_new(&e.x) != 0)
            die("%s", "out of memory");
        size_t out_bytes = 0;
        for (size_t i = 0; i < c.nterms; i++) {
            if ((e.trees[i] = libei_decode_one(&c, i, &e.trees_arena)) == NULL)
                die("%s", "ei_decode failed on a corpus term");
            e.x.index = 0;
            if (ei_x_encode_version(&e.x) < 0 || ei_tree_encode(&e.x, e.trees[i]) < 0)
                die("%s", "ei_x_encode failed on a corpus term");
            out_bytes += (size_t)e.x.index;
        }
        impl_t im = {"libei",
                     "decode: ei_decode_* into a node tree in one arena, emptied (chunks kept) "
                     "at the end of every rep, timed; "
                     "encode: ei_x_encode_* from the tree, one ei_x_buff reused",
                     libei_encode, libei_decode, &e};
        measure(&im, &c, run, out_bytes);
        ei_x_free(&e.x);
        arena_free(&e.trees_arena);
        arena_free(&e.dec_arena);
        free(e.trees);
    }
    heap_destroy(&c.heap);
    free(c.terms);
    free(c.off);
    free(c.enc);
    return 0;
}
