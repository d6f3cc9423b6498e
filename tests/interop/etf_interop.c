/*
 * etf_interop.c — girder's side of the ETF interop test against real erl.
 *
 *   etf_interop CORPUS GIRDER_OUT SEED NGEN
 *
 * tests/interop/etf_interop.sh runs it between two steps of etf_gen.erl:
 *
 * 1. OTP -> girder.  CORPUS holds term_to_binary/1,2 records written by OTP
 *    25 (format in etf_gen.erl).  Each is decoded with etf_decode and
 *    re-encoded with etf_encode under the options that made it; the bytes
 *    must be identical.  The one allowed difference: a term holding a map of
 *    more than 32 keys, encoded without [deterministic], whose keys hold
 *    atoms, pids, ports, references or funs: OTP 25 orders its pairs by a
 *    hash of the atoms' indices in its atom table and of node-entry
 *    addresses, which only the emitting VM knows (etf.h); there both byte
 *    strings must decode to exactly equal terms (heap_compare exact).  Every
 *    other map of more than 32 keys must come out in OTP's exact order.
 * 2. girder -> OTP.  Every girder encoding from step 1, plus several
 *    encodings of NGEN terms built by girder itself (tests/heap/termgen_util,
 *    seeded by SEED), goes to GIRDER_OUT; etf_gen.erl's `check` step then
 *    decodes each with binary_to_term and compares with the original.  The
 *    girder-built terms are also decoded back here and must compare equal.
 *
 * Prints the counts and exits 0 only if every record passed (1 if any
 * failed, 2 on a usage or I/O error).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etf.h"
#include "heap.h"
#include "termgen_util.h"

#define CORPUS_MAGIC "GDETFC01"
#define GIRDER_MAGIC "GDETFG01"
#define MAGIC_LEN 8
#define OPT_NONE 255
/* Records of crafted (non-canonical) inputs have ids from here on. */
#define CRAFTED_ID_BASE 10000000u
#define MAX_REPORTED_FAILURES 10
#define GEN_MAX_DEPTH 4

/* The options a record was made with, as stored in both files. */
typedef struct rec_opts {
    uint8_t otp;   /* 25, or 26: OTP 26's default encoding */
    uint8_t minor; /* explicit minor_version, or OPT_NONE */
    uint8_t det;   /* [deterministic] */
    uint8_t level; /* zlib level, or OPT_NONE */
} rec_opts_t;

/* One record of the corpus: In is decoded, Exp is what encoding must give. */
typedef struct corpus_rec {
    uint32_t id;
    rec_opts_t opts;
    const uint8_t *in;
    size_t in_len;
    const uint8_t *exp;
    size_t exp_len;
} corpus_rec_t;

/* Counts per option set ("variant"). */
enum variant {
    V_DEFAULT,
    V_COMPRESSED,
    V_MINOR0,
    V_DETERMINISTIC,
    V_DET_COMPRESSED,
    V_OTP26,
    V_CRAFTED,
    V_COUNT
};
static const char *const variant_names[V_COUNT] = {
    "default",
    "compressed",
    "minor_version 0",
    "deterministic",
    "deterministic+compressed",
    "otp 26 (minor_version 2)",
    "crafted non-canonical input",
};

typedef struct tally {
    size_t records;
    size_t identical;
    size_t map_equal;
    size_t failed;
} tally_t;

typedef struct run {
    tally_t by_variant[V_COUNT];
    tally_t total;
    size_t reported;
    FILE *out;
    etf_buf_t enc;
} run_t;

static enum variant variant_of(const corpus_rec_t *r)
{
    if (r->id >= CRAFTED_ID_BASE)
        return V_CRAFTED;
    if (r->opts.otp >= 26)
        return V_OTP26;
    if (r->opts.minor == 0)
        return V_MINOR0;
    if (r->opts.det)
        return r->opts.level != OPT_NONE ? V_DET_COMPRESSED : V_DETERMINISTIC;
    if (r->opts.level != OPT_NONE)
        return V_COMPRESSED;
    return V_DEFAULT;
}

static void to_encode_opts(const rec_opts_t *ro, etf_encode_opts_t *eo)
{
    etf_encode_opts_init(eo);
    eo->otp_release = ro->otp;
    eo->minor_version = ro->minor == OPT_NONE ? -1 : ro->minor;
    eo->deterministic = ro->det != 0;
    eo->compressed = ro->level == OPT_NONE ? -1 : ro->level;
}

static int read_whole_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "etf_interop: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto close_file;
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto close_file;
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size)
        goto close_file;
    *data = buf;
    *len = (size_t)size;
    buf = NULL;
    rc = 0;
close_file:
    if (rc != 0)
        fprintf(stderr, "etf_interop: cannot read %s\n", path);
    free(buf);
    fclose(f);
    return rc;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Parses the record at *pos; returns 1 for a record, 0 at the end, -1 if
 * the file is malformed. */
static int next_record(const uint8_t *data, size_t len, size_t *pos, corpus_rec_t *r)
{
    size_t p = *pos;
    if (p == len)
        return 0;
    if (len - p < 12)
        return -1;
    r->id = get_u32(data + p);
    r->opts.otp = data[p + 4];
    r->opts.minor = data[p + 5];
    r->opts.det = data[p + 6];
    r->opts.level = data[p + 7];
    r->in_len = get_u32(data + p + 8);
    p += 12;
    if (len - p < r->in_len || len - p - r->in_len < 4)
        return -1;
    r->in = data + p;
    p += r->in_len;
    r->exp_len = get_u32(data + p);
    p += 4;
    if (len - p < r->exp_len)
        return -1;
    r->exp = data + p;
    p += r->exp_len;
    if (r->exp_len == 0) {
        r->exp = r->in;
        r->exp_len = r->in_len;
    }
    *pos = p;
    return 1;
}

/* A term to visit and whether it sits inside a key of a hash map. */
typedef struct walk_item {
    term_t t;
    bool in_hash_key;
} walk_item_t;

/* Called for every subterm; returning true stops the walk. */
typedef bool (*walk_fn)(term_t t, bool in_hash_key, void *ctx);

static int push_item(walk_item_t **stack, size_t *n, size_t *cap, term_t t, bool in_key)
{
    if (*n == *cap) {
        walk_item_t *bigger = realloc(*stack, 2 * *cap * sizeof **stack);
        if (bigger == NULL)
            return GD_ENOMEM;
        *stack = bigger;
        *cap *= 2;
    }
    (*stack)[(*n)++] = (walk_item_t){t, in_key};
    return GD_OK;
}

/*
 * Calls visit for t and every subterm (list cells, tuple elements, map keys
 * and values, fun environments) until it returns true; *stopped says
 * whether it did.  Walks with an explicit stack: t may be nested as deep as
 * the decoder allows.
 */
static int walk_term(term_t t, walk_fn visit, void *ctx, bool *stopped)
{
    size_t cap = 256, n = 0;
    walk_item_t *stack = malloc(cap * sizeof *stack);
    if (stack == NULL)
        return GD_ENOMEM;
    int rc = GD_OK;
    *stopped = false;
    stack[n++] = (walk_item_t){t, false};
    while (n > 0 && rc == GD_OK) {
        walk_item_t it = stack[--n];
        term_t x = it.t;
        if (visit(x, it.in_hash_key, ctx)) {
            *stopped = true;
            break;
        }
        if (term_is_list(x)) {
            rc = push_item(&stack, &n, &cap, term_car(x), it.in_hash_key);
            if (rc == GD_OK)
                rc = push_item(&stack, &n, &cap, term_cdr(x), it.in_hash_key);
        } else if (term_is_tuple(x)) {
            for (size_t i = 0; i < term_tuple_arity(x) && rc == GD_OK; i++)
                rc = push_item(&stack, &n, &cap, term_tuple_elems(x)[i], it.in_hash_key);
        } else if (term_is_fun(x)) {
            heap_fun_info_t fi;
            heap_fun_info(x, &fi);
            for (uint32_t i = 0; i < fi.num_free && rc == GD_OK; i++)
                rc = push_item(&stack, &n, &cap, term_fun_free(x)[i], it.in_hash_key);
        } else if (term_is_map(x)) {
            bool hash = heap_map_size(x) > HEAP_MAP_FLAT_MAX;
            heap_map_iter_t mi;
            heap_map_iter_init(&mi, x);
            term_t k, v;
            while (rc == GD_OK && heap_map_next(&mi, &k, &v)) {
                rc = push_item(&stack, &n, &cap, k, it.in_hash_key || hash);
                if (rc == GD_OK)
                    rc = push_item(&stack, &n, &cap, v, it.in_hash_key);
            }
        }
    }
    free(stack);
    return rc;
}

static bool is_big_map(term_t t, bool in_hash_key, void *ctx)
{
    return term_is_map(t) && heap_map_size(t) > HEAP_MAP_FLAT_MAX;
}

/* Sets *found if t holds a map of more than HEAP_MAP_FLAT_MAX keys. */
static int has_big_map(term_t t, bool *found)
{
    return walk_term(t, is_big_map, NULL, found);
}

/*
 * True for a subterm of a key of a map of more than 32 keys whose OTP 25
 * internal hash depends on the emitting VM (etf.h): an atom (hashed by its
 * index in that VM's atom table), a pid, port or reference, a fun or an
 * export (node entries and export entries hashed by address).  Such maps are
 * in an order girder cannot know; every other map of more than 32 keys must
 * re-encode to OTP's exact bytes.
 */
static bool vm_specific_key(term_t t, bool in_hash_key, void *ctx)
{
    (void)ctx;
    return in_hash_key && (term_is_atom(t) || term_is_pid(t) || term_is_port(t) || term_is_ref(t) ||
                           term_is_fun(t) || term_is_export(t));
}

/*
 * True for a subterm that OTP 25 cannot hold as it is, so that its
 * term_to_binary of the decoded term cannot equal girder's bytes:
 * - a reference of the local identity ('nonode@nohost', creation 0) with
 *   other than 3 id words: binary_to_term makes it a local reference,
 *   padded to 3 words;
 * - a reference of fewer than 2 words inside a key of a hash map: OTP
 *   25.2.3 (erts 13.1.5) hashes it inconsistently after binary_to_term
 *   (maps:get misses it, and the map is not =:= to an equal one).
 */
static bool outside_otp25(term_t t, bool in_hash_key, void *ctx)
{
    if (!term_is_ref(t))
        return false;
    heap_ident_t id;
    heap_ident(t, &id);
    if (id.node == ATOM_NONODE && id.creation == 0 && id.nwords != 3)
        return true;
    return in_hash_key && id.nwords < 2;
}

static void hex_around(const char *label, const uint8_t *b, size_t len, size_t at)
{
    size_t from = at > 16 ? at - 16 : 0;
    size_t to = at + 16 < len ? at + 16 : len;
    fprintf(stderr, "    %-6s (%zu bytes) @%zu:", label, len, from);
    for (size_t i = from; i < to; i++)
        fprintf(stderr, i == at ? " [%02x]" : " %02x", b[i]);
    fputc('\n', stderr);
}

static void report_mismatch(run_t *run, const corpus_rec_t *r, size_t index, const char *why,
                            const uint8_t *got, size_t got_len)
{
    if (run->reported++ >= MAX_REPORTED_FAILURES)
        return;
    fprintf(stderr, "FAIL record %zu (term %" PRIu32 ", %s; otp %u minor %u det %u level %u): %s\n",
            index, r->id, variant_names[variant_of(r)], r->opts.otp, r->opts.minor, r->opts.det,
            r->opts.level, why);
    if (got != NULL) {
        size_t at = 0;
        while (at < got_len && at < r->exp_len && got[at] == r->exp[at])
            at++;
        hex_around("otp", r->exp, r->exp_len, at);
        hex_around("girder", got, got_len, at);
    }
}

static void report_error(run_t *run, const corpus_rec_t *r, size_t index, const char *what,
                         int code, size_t offset)
{
    char why[160];
    snprintf(why, sizeof why, "%s failed: %s (%d) at offset %zu", what, etf_strerror(code), code,
             offset);
    report_mismatch(run, r, index, why, NULL, 0);
}

static int write_girder_record(FILE *out, uint8_t src, uint32_t id, const rec_opts_t *o,
                               const uint8_t *bytes, size_t len)
{
    uint8_t hdr[13];
    hdr[0] = src;
    put_u32(hdr + 1, id);
    hdr[5] = o->otp;
    hdr[6] = o->minor;
    hdr[7] = o->det;
    hdr[8] = o->level;
    put_u32(hdr + 9, (uint32_t)len);
    if (fwrite(hdr, 1, sizeof hdr, out) != sizeof hdr || fwrite(bytes, 1, len, out) != len)
        return -1;
    return 0;
}

/* Decodes bytes (the whole buffer must be one term) onto h. */
static int decode_all(heap_t *h, const uint8_t *bytes, size_t len, term_t *out, etf_error_t *err)
{
    etf_decode_opts_t dopts;
    memset(&dopts, 0, sizeof dopts);
    dopts.no_trailing = true;
    size_t used = 0;
    return etf_decode(h, bytes, len, &dopts, out, &used, err);
}

/*
 * Step 1 for one corpus record: decode, re-encode, compare; the girder
 * bytes go to the output file either way.  Returns -1 only on an output or
 * memory error (a mismatch is counted, not returned).
 */
static int check_record(run_t *run, const corpus_rec_t *r, size_t index)
{
    tally_t *tv = &run->by_variant[variant_of(r)];
    tv->records++;
    run->total.records++;
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        return -1;
    int rc = 0;
    bool ok = false, map_equal = false;
    term_t t;
    etf_error_t err = {0, 0};
    int code = decode_all(&h, r->in, r->in_len, &t, &err);
    if (code != GD_OK) {
        report_error(run, r, index, "etf_decode of OTP's bytes", code, err.offset);
        goto count;
    }
    etf_encode_opts_t eo;
    to_encode_opts(&r->opts, &eo);
    run->enc.len = 0;
    code = etf_encode(t, &eo, &run->enc);
    if (code != GD_OK) {
        report_error(run, r, index, "etf_encode", code, 0);
        goto count;
    }
    if (write_girder_record(run->out, 0, (uint32_t)index, &r->opts, run->enc.data, run->enc.len) !=
        0) {
        rc = -1;
        goto count;
    }
    if (run->enc.len == r->exp_len && memcmp(run->enc.data, r->exp, r->exp_len) == 0) {
        ok = true;
        goto count;
    }
    bool big = false;
    if (has_big_map(t, &big) != GD_OK) {
        rc = -1;
        goto count;
    }
    bool vm_specific = false;
    if (big && walk_term(t, vm_specific_key, NULL, &vm_specific) != GD_OK) {
        rc = -1;
        goto count;
    }
    if (!big || r->opts.det || !vm_specific) {
        report_mismatch(run, r, index, "re-encoding differs", run->enc.data, run->enc.len);
        goto count;
    }
    /* A map of more than 32 keys whose keys hold atoms, pids, ports,
     * references or funs, in OTP's hash order of the emitting VM: the bar is
     * that both encodings decode to exactly equal terms. */
    term_t mine, theirs;
    code = decode_all(&h, run->enc.data, run->enc.len, &mine, &err);
    if (code != GD_OK) {
        report_error(run, r, index, "etf_decode of girder's re-encoding", code, err.offset);
        goto count;
    }
    code = decode_all(&h, r->exp, r->exp_len, &theirs, &err);
    if (code != GD_OK) {
        report_error(run, r, index, "etf_decode of OTP's expected bytes", code, err.offset);
        goto count;
    }
    if (tg_compare(t, mine, true) != 0 || tg_compare(theirs, mine, true) != 0) {
        report_mismatch(run, r, index, "large map: re-encoding decodes to a different term",
                        run->enc.data, run->enc.len);
        goto count;
    }
    ok = map_equal = true;
count:
    if (ok && map_equal) {
        tv->map_equal++;
        run->total.map_equal++;
    } else if (ok) {
        tv->identical++;
        run->total.identical++;
    } else {
        tv->failed++;
        run->total.failed++;
    }
    heap_destroy(&h);
    return rc;
}

/* The option sets girder-built term number i is encoded with. */
static size_t gen_option_sets(size_t i, rec_opts_t *sets)
{
    static const uint8_t levels[] = {1, 6, 9, 0, 3};
    size_t n = 0;
    sets[n++] = (rec_opts_t){25, OPT_NONE, 0, OPT_NONE};
    sets[n++] = (rec_opts_t){25, OPT_NONE, 1, OPT_NONE};
    if (i % 3 == 0)
        sets[n++] = (rec_opts_t){25, OPT_NONE, (uint8_t)(i % 2), levels[(i / 3) % 5]};
    if (i % 5 == 0)
        sets[n++] = (rec_opts_t){25, 0, 0, OPT_NONE};
    if (i % 4 == 0)
        sets[n++] = (rec_opts_t){26, OPT_NONE, 0, OPT_NONE};
    return n;
}

/*
 * Step 2's own terms: ngen random terms built on girder's heap, each
 * encoded under several option sets into the output file, and each encoding
 * decoded back and compared here too.
 */
static int gen_girder_terms(run_t *run, uint64_t seed, size_t ngen, size_t *records,
                            size_t *roundtrip_ok, size_t *failed, size_t *redrawn)
{
    uint64_t s = seed;
    for (size_t i = 0; i < ngen; i++) {
        heap_t h;
        if (heap_init(&h, 0) != GD_OK)
            return -1;
        /* Draw until the term is one OTP 25 can hold as it is. */
        term_t t;
        bool outside = true;
        do {
            t = termgen_random(&h, &s, GEN_MAX_DEPTH);
            if (t == TERM_NONE || walk_term(t, outside_otp25, NULL, &outside) != GD_OK) {
                heap_destroy(&h);
                return -1;
            }
            if (outside)
                (*redrawn)++;
        } while (outside);
        rec_opts_t sets[5];
        size_t nsets = gen_option_sets(i, sets);
        for (size_t k = 0; k < nsets; k++) {
            etf_encode_opts_t eo;
            to_encode_opts(&sets[k], &eo);
            run->enc.len = 0;
            int code = etf_encode(t, &eo, &run->enc);
            if (code != GD_OK) {
                if ((*failed)++ < MAX_REPORTED_FAILURES) {
                    fprintf(stderr, "FAIL generated term %zu: etf_encode: %s (%d): ", i,
                            etf_strerror(code), code);
                    termgen_dump(stderr, t);
                    fputc('\n', stderr);
                }
                continue;
            }
            (*records)++;
            if (write_girder_record(run->out, 1, (uint32_t)i, &sets[k], run->enc.data,
                                    run->enc.len) != 0) {
                heap_destroy(&h);
                return -1;
            }
            term_t back;
            etf_error_t err = {0, 0};
            code = decode_all(&h, run->enc.data, run->enc.len, &back, &err);
            if (code == GD_OK && tg_compare(t, back, true) == 0) {
                (*roundtrip_ok)++;
            } else if ((*failed)++ < MAX_REPORTED_FAILURES) {
                fprintf(stderr, "FAIL generated term %zu (option set %zu): %s: ", i, k,
                        code != GD_OK ? etf_strerror(code) : "decodes to a different term");
                termgen_dump(stderr, t);
                fputc('\n', stderr);
            }
        }
        heap_destroy(&h);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s CORPUS GIRDER_OUT SEED NGEN\n", argv[0]);
        return 2;
    }
    uint64_t seed = strtoull(argv[3], NULL, 0);
    size_t ngen = (size_t)strtoull(argv[4], NULL, 0);
    int status = 2;
    uint8_t *data = NULL;
    size_t len = 0;
    run_t run;
    memset(&run, 0, sizeof run);
    if (read_whole_file(argv[1], &data, &len) != 0)
        return 2;
    if (len < MAGIC_LEN || memcmp(data, CORPUS_MAGIC, MAGIC_LEN) != 0) {
        fprintf(stderr, "etf_interop: %s is not an etf_gen corpus\n", argv[1]);
        goto free_data;
    }
    run.out = fopen(argv[2], "wb");
    if (run.out == NULL) {
        fprintf(stderr, "etf_interop: %s: %s\n", argv[2], strerror(errno));
        goto free_data;
    }
    if (fwrite(GIRDER_MAGIC, 1, MAGIC_LEN, run.out) != MAGIC_LEN)
        goto close_out;

    size_t pos = MAGIC_LEN, index = 0;
    size_t terms = 0;
    uint32_t last_id = UINT32_MAX;
    corpus_rec_t r;
    int more;
    while ((more = next_record(data, len, &pos, &r)) == 1) {
        if (r.id != last_id && r.id < CRAFTED_ID_BASE)
            terms++;
        last_id = r.id;
        if (check_record(&run, &r, index++) != 0) {
            fprintf(stderr, "etf_interop: out of memory or cannot write %s\n", argv[2]);
            goto close_out;
        }
    }
    if (more < 0) {
        fprintf(stderr, "etf_interop: %s: malformed record at byte %zu\n", argv[1], pos);
        goto close_out;
    }

    printf("forward (OTP -> girder): %zu terms, %zu records checked: %zu byte-identical, "
           "%zu map-equal (maps > %d keys with atom, pid, port, ref or fun keys: the emitting VM's "
           "hash order), %zu failed\n",
           terms, run.total.records, run.total.identical, run.total.map_equal, HEAP_MAP_FLAT_MAX,
           run.total.failed);
    for (int v = 0; v < V_COUNT; v++) {
        const tally_t *tv = &run.by_variant[v];
        printf("  %-28s %6zu records %6zu byte-identical %5zu map-equal %3zu failed\n",
               variant_names[v], tv->records, tv->identical, tv->map_equal, tv->failed);
    }

    size_t gen_records = 0, gen_roundtrip = 0, gen_failed = 0, gen_redrawn = 0;
    if (gen_girder_terms(&run, seed, ngen, &gen_records, &gen_roundtrip, &gen_failed,
                         &gen_redrawn) != 0) {
        fprintf(stderr, "etf_interop: out of memory or cannot write %s\n", argv[2]);
        goto close_out;
    }
    printf("girder-built terms (seed %" PRIu64 "): %zu terms (%zu redrawn: not representable "
           "in OTP 25), %zu encodings written, %zu decode back equal, %zu failed\n",
           seed, ngen, gen_redrawn, gen_records, gen_roundtrip, gen_failed);

    bool passed = run.total.failed == 0 && gen_failed == 0 && run.total.records > 0 &&
                  gen_roundtrip == gen_records;
    status = passed ? 0 : 1;
close_out:
    if (fclose(run.out) != 0 && status == 0) {
        fprintf(stderr, "etf_interop: cannot write %s\n", argv[2]);
        status = 2;
    }
free_data:
    etf_buf_free(&run.enc);
    free(data);
    return status;
}
