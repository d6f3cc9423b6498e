/*
 * cmd_term.c — `girder term encode` (Erlang term text on stdin → External
 * Term Format bytes on stdout, as term_to_binary/2 produces them) and
 * `girder term decode` (ETF on stdin → the term printed like io:format("~p")
 * on one line), and `girder term hash` (term text → erlang:phash2/1,2 of
 * each term).  A thin shell over etf_parse/etf_encode,
 * etf_decode/etf_print and heap_phash2: every failure is one line on stderr naming the byte
 * offset, with exit status 1; usage errors exit 2.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "etf.h"

/* Default zlib level of term_to_binary(T, [compressed]). */
#define TERM_COMPRESS_DEFAULT_LEVEL 6

static void usage(FILE *out)
{
    fprintf(out,
            "usage: girder term encode [--otp 25|26|27|28] [--compressed[=LEVEL]]\n"
            "                          [--deterministic] [--minor-version 0|1|2]\n"
            "                          [--hex] [--lines]\n"
            "       girder term decode [--safe] [--max-heap BYTES] [--hex] [--lines]\n"
            "       girder term hash [--range N] [--hex] [--lines]\n"
            "\n"
            "encode reads one Erlang term in text syntax on stdin (no variables; an\n"
            "optional final '.') and writes the bytes term_to_binary/2 produces on\n"
            "that OTP release (default 25) to stdout.\n"
            "decode reads External Term Format bytes (starting with 131) on stdin and\n"
            "prints the term like io:format(\"~p\") on one line.\n"
            "hash reads term text like encode (with --hex: ETF in hex digits, like\n"
            "decode) and prints erlang:phash2(Term) (or phash2(Term, N) with\n"
            "--range N, 1..4294967296) in decimal.\n"
            "\n"
            "  --otp N             release whose encoding to reproduce (26+ encodes\n"
            "                      every atom as UTF-8)\n"
            "  --compressed[=L]    zlib level L, 0..9 (default %d), used only when it\n"
            "                      makes the result smaller, as OTP does\n"
            "  --deterministic     maps of any size in key order ([deterministic])\n"
            "  --minor-version N   term_to_binary's {minor_version, N}\n"
            "  --hex               encode: write hex digits and a newline instead of\n"
            "                      bytes; decode and hash: read ETF as hex digits\n"
            "                      (blanks ignored)\n"
            "  --lines             one term per input line, converted separately;\n"
            "                      ETF as one hex line each (implies --hex for\n"
            "                      encode and decode; hash reads text lines\n"
            "                      unless --hex is given)\n"
            "  --range N           hash: phash2/2's range\n"
            "  --safe              decode: refuse to create atoms (binary_to_term\n"
            "                      [safe])\n"
            "  --max-heap BYTES    decode: most memory one term may build (its heap\n"
            "                      words, binaries, and a compressed term's inflated\n"
            "                      bytes); larger terms fail at once (default %zu)\n"
            "\n"
            "Pids, ports and references of other nodes print as\n"
            "<'node@host'.Id.Serial.Creation>, #Port<'node@host'.Id.Creation> and\n"
            "#Ref<'node@host'.W2.W1.W0.Creation>, which encode reads back; this\n"
            "node's ('nonode@nohost', creation 0) print as OTP's local <0.Id.Serial>,\n"
            "#Port<0.N> and #Ref<0.W2.W1.W0>; numbers outside OTP's local ranges\n"
            "for this node are refused, as binary_to_term does.\n",
            TERM_COMPRESS_DEFAULT_LEVEL, ETF_MAX_HEAP_DEFAULT);
}

/* Reads all of stdin into a malloc'ed buffer; false on a read error. */
static bool read_all(FILE *in, uint8_t **data, size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return false;
    for (;;) {
        if (n == cap) {
            uint8_t *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                return false;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) {
            if (ferror(in)) {
                free(buf);
                return false;
            }
            break;
        }
    }
    *data = buf;
    *len = n;
    return true;
}

static bool write_all(const void *data, size_t len)
{
    return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Turns hex text (blanks allowed between digits) into bytes in place.
 * Returns false with *bad_offset at the first byte that is neither a hex
 * digit nor a blank, or at the lone last digit of an odd count.
 */
static bool unhex(uint8_t *data, size_t *len, size_t *bad_offset)
{
    size_t out = 0, last_digit = 0;
    int high = -1;
    for (size_t i = 0; i < *len; i++) {
        uint8_t c = data[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        int v = hex_value(c);
        if (v < 0) {
            *bad_offset = i;
            return false;
        }
        if (high < 0) {
            high = v;
            last_digit = i;
        } else {
            data[out++] = (uint8_t)(high << 4 | v);
            high = -1;
        }
    }
    if (high >= 0) {
        *bad_offset = last_digit;
        return false;
    }
    *len = out;
    return true;
}

/* Reports a failure at a byte offset of text input, with its line and
 * column (`where` names the input line in --lines mode, else ""). */
static void report_text(const char *where, int code, size_t offset, const uint8_t *text, size_t len)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else if ((text[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    if (*where != '\0')
        fprintf(stderr, "girder: term encode: %s%s at offset %zu (column %zu)\n", where,
                etf_strerror(code), offset, col);
    else
        fprintf(stderr, "girder: term encode: %s at offset %zu (line %zu, column %zu)\n",
                etf_strerror(code), offset, line, col);
}

/*
 * Parses one term from text[0..len) and appends its encoding to *out.
 * Returns 0, or 1 after printing the error (prefixed by `where`).
 */
static int encode_text(const uint8_t *text, size_t len, const etf_encode_opts_t *opts,
                       etf_buf_t *out, const char *where)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK) {
        fprintf(stderr, "girder: term encode: %s%s\n", where, etf_strerror(GD_ENOMEM));
        return 1;
    }
    int status = 1;
    term_t t;
    etf_error_t err;
    int rc = etf_parse(&h, (const char *)text, len, &t, &err);
    if (rc != GD_OK) {
        report_text(where, rc, err.offset, text, len);
        goto free_heap;
    }
    rc = etf_encode(t, opts, out);
    if (rc != GD_OK) {
        fprintf(stderr, "girder: term encode: %s%s\n", where, etf_strerror(rc));
        goto free_heap;
    }
    status = 0;
free_heap:
    heap_destroy(&h);
    return status;
}

/* Appends phash2(t) (range 0 = phash2/1) in decimal and a newline to
 * *out.  Returns 0, or 1 after printing the error (prefixed by `where`). */
static int put_hash(term_t t, uint64_t range, etf_buf_t *out, const char *where)
{
    uint32_t hash;
    int rc = heap_phash2(t, range, &hash);
    char num[16];
    int n = snprintf(num, sizeof num, "%u\n", (unsigned)hash);
    if (rc == GD_OK)
        rc = etf_buf_reserve(out, (size_t)n);
    if (rc != GD_OK) {
        fprintf(stderr, "girder: term hash: %s%s\n", where, etf_strerror(rc));
        return 1;
    }
    memcpy(out->data + out->len, num, (size_t)n);
    out->len += (size_t)n;
    return 0;
}

/*
 * Reads one term from in[0..len) -- term text, or ETF bytes when `etf` --
 * and appends its phash2 as put_hash does.  Returns 0, or 1 after printing
 * the error (prefixed by `where`).
 */
static int hash_input(const uint8_t *in, size_t len, bool etf, uint64_t range, etf_buf_t *out,
                      const char *where)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK) {
        fprintf(stderr, "girder: term hash: %s%s\n", where, etf_strerror(GD_ENOMEM));
        return 1;
    }
    int status = 1;
    term_t t;
    etf_error_t err;
    if (etf) {
        etf_decode_opts_t opts = {.no_trailing = true};
        size_t used;
        int rc = etf_decode(&h, in, len, &opts, &t, &used, &err);
        if (rc != GD_OK) {
            fprintf(stderr, "girder: term hash: %s%s at offset %zu\n", where, etf_strerror(rc),
                    err.offset);
            goto free_heap;
        }
    } else {
        int rc = etf_parse(&h, (const char *)in, len, &t, &err);
        if (rc != GD_OK) {
            report_text(where, rc, err.offset, in, len);
            goto free_heap;
        }
    }
    status = put_hash(t, range, out, where);
free_heap:
    heap_destroy(&h);
    return status;
}

/*
 * Decodes one ETF term from data[0..len) (nothing may follow it) and
 * appends its text and a newline to *out.  Returns 0, or 1 after printing
 * the error (prefixed by `where`).
 */
static int decode_bytes(const uint8_t *data, size_t len, bool safe, size_t max_heap, etf_buf_t *out,
                        const char *where)
{
    heap_t h;
    if (heap_init(&h, 0) != GD_OK) {
        fprintf(stderr, "girder: term decode: %s%s\n", where, etf_strerror(GD_ENOMEM));
        return 1;
    }
    int status = 1;
    etf_decode_opts_t opts = {.safe = safe, .no_trailing = true, .max_heap = max_heap};
    term_t t;
    size_t used;
    etf_error_t err;
    int rc = etf_decode(&h, data, len, &opts, &t, &used, &err);
    if (rc != GD_OK) {
        /* With --hex the offset counts decoded bytes, not hex digits. */
        fprintf(stderr, "girder: term decode: %s%s at offset %zu\n", where, etf_strerror(rc),
                err.offset);
        goto free_heap;
    }
    rc = etf_print(t, out);
    if (rc == GD_OK)
        rc = etf_buf_reserve(out, 1);
    if (rc != GD_OK) {
        fprintf(stderr, "girder: term decode: %s%s\n", where, etf_strerror(rc));
        goto free_heap;
    }
    out->data[out->len++] = '\n';
    status = 0;
free_heap:
    heap_destroy(&h);
    return status;
}

/* Appends data as lowercase hex digits and a newline to *out. */
static int append_hex(etf_buf_t *out, const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    if (len > (SIZE_MAX - 1) / 2 || etf_buf_reserve(out, 2 * len + 1) != GD_OK)
        return GD_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        out->data[out->len++] = (uint8_t)digits[data[i] >> 4];
        out->data[out->len++] = (uint8_t)digits[data[i] & 15];
    }
    out->data[out->len++] = '\n';
    return GD_OK;
}

/* Parses "N" in [min, max]; false if it is not such a number. */
static bool parse_int_arg(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || end == NULL || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Reports a usage error in one line (plus where to find help); exit 2. */
static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "girder: term: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'girder term --help')\n");
    return 2;
}

typedef struct term_args {
    bool encode;
    bool hash;
    uint64_t range; /* hash: 0 = phash2/1 */
    bool hex;
    bool lines;
    bool safe;
    size_t max_heap; /* decode: 0 = ETF_MAX_HEAP_DEFAULT */
    etf_encode_opts_t opts;
} term_args_t;

/* One conversion of in[0..len) (a whole input, or one line), output
 * appended to *out. */
static int convert(const term_args_t *a, uint8_t *in, size_t len, etf_buf_t *out, const char *where)
{
    if (a->hash && !a->hex)
        return hash_input(in, len, false, a->range, out, where);
    if (a->encode) {
        if (!a->hex)
            return encode_text(in, len, &a->opts, out, where);
        etf_buf_t bytes = {0};
        int status = encode_text(in, len, &a->opts, &bytes, where);
        if (status == 0 && append_hex(out, bytes.data, bytes.len) != GD_OK) {
            fprintf(stderr, "girder: term encode: %s%s\n", where, etf_strerror(GD_ENOMEM));
            status = 1;
        }
        etf_buf_free(&bytes);
        return status;
    }
    size_t bad;
    if (a->hex && !unhex(in, &len, &bad)) {
        fprintf(stderr, "girder: term decode: %sbad hex digit at offset %zu\n", where, bad);
        return 1;
    }
    if (a->hash)
        return hash_input(in, len, true, a->range, out, where);
    return decode_bytes(in, len, a->safe, a->max_heap, out, where);
}

static int run(const term_args_t *a)
{
    const char *mode = a->hash ? "hash" : (a->encode ? "encode" : "decode");
    uint8_t *in = NULL;
    size_t len = 0;
    etf_buf_t out = {0};
    int status = 0;
    if (!read_all(stdin, &in, &len)) {
        fprintf(stderr, "girder: term %s: cannot read stdin: %s\n", mode, strerror(errno));
        return 1;
    }
    if (!a->lines) {
        status = convert(a, in, len, &out, "");
    } else {
        /* One term per line; output is flushed per line so a failure
         * still leaves the results before it. */
        size_t start = 0, lineno = 1;
        while (status == 0 && start < len) {
            size_t end = start;
            while (end < len && in[end] != '\n')
                end++;
            char where[48];
            snprintf(where, sizeof where, "line %zu: ", lineno);
            status = convert(a, in + start, end - start, &out, where);
            if (status == 0 && !write_all(out.data, out.len))
                status = 2;
            out.len = 0;
            start = end + 1;
            lineno++;
        }
    }
    if (status == 0 && !a->lines && !write_all(out.data, out.len))
        status = 2;
    if (status == 2) {
        fprintf(stderr, "girder: term %s: cannot write stdout: %s\n", mode, strerror(errno));
        status = 1;
    }
    etf_buf_free(&out);
    free(in);
    return status;
}

/*
 * `girder term encode|decode|hash [options]`: converts between term text and
 * ETF through stdin/stdout, or prints the phash2 of term text.  Returns 0, 1 for bad input or I/O
 * failure (one line on stderr with the offset), 2 for usage errors.
 */
int gd_cmd_term(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "--help") == 0 || strcmp(mode, "-h") == 0 || strcmp(mode, "help") == 0) {
        usage(stdout);
        return 0;
    }
    term_args_t a = {.encode = strcmp(mode, "encode") == 0, .hash = strcmp(mode, "hash") == 0};
    if (!a.encode && !a.hash && strcmp(mode, "decode") != 0)
        return usage_error("unknown mode '%s' (expected encode, decode or hash)", mode);
    etf_encode_opts_init(&a.opts);
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        long v;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(arg, "--hex") == 0) {
            a.hex = true;
        } else if (strcmp(arg, "--lines") == 0) {
            a.lines = true;
            a.hex = a.hex || !a.hash;
        } else if (a.hash && (strcmp(arg, "--range") == 0 || strncmp(arg, "--range=", 8) == 0)) {
            const char *val = arg[7] == '=' ? arg + 8 : (i + 1 < argc ? argv[++i] : "");
            char *end = NULL;
            errno = 0;
            unsigned long long r = strtoull(val, &end, 10);
            if (val[0] < '1' || val[0] > '9' || *end != '\0' || errno != 0 ||
                r > ((unsigned long long)1 << 32))
                return usage_error("bad range '%s' (1..4294967296)", val);
            a.range = r;
        } else if (!a.encode && strcmp(arg, "--safe") == 0) {
            a.safe = true;
        } else if (!a.encode &&
                   (strcmp(arg, "--max-heap") == 0 || strncmp(arg, "--max-heap=", 11) == 0)) {
            const char *val = arg[10] == '=' ? arg + 11 : (i + 1 < argc ? argv[++i] : "");
            if (!parse_int_arg(val, 1, LONG_MAX, &v))
                return usage_error("bad --max-heap '%s' (a number of bytes, 1 or more)", val);
            a.max_heap = (size_t)v;
        } else if (a.encode && strcmp(arg, "--deterministic") == 0) {
            a.opts.deterministic = true;
        } else if (a.encode && strcmp(arg, "--compressed") == 0) {
            a.opts.compressed = TERM_COMPRESS_DEFAULT_LEVEL;
        } else if (a.encode && strncmp(arg, "--compressed=", 13) == 0) {
            if (!parse_int_arg(arg + 13, 0, 9, &v))
                return usage_error("bad compression level '%s' (0..9)", arg + 13);
            a.opts.compressed = (int)v;
        } else if (a.encode && (strcmp(arg, "--otp") == 0 || strncmp(arg, "--otp=", 6) == 0)) {
            const char *val = arg[5] == '=' ? arg + 6 : (i + 1 < argc ? argv[++i] : "");
            if (!parse_int_arg(val, 25, 28, &v))
                return usage_error("bad OTP release '%s' (25..28)", val);
            a.opts.otp_release = (int)v;
        } else if (a.encode && (strcmp(arg, "--minor-version") == 0 ||
                                strncmp(arg, "--minor-version=", 16) == 0)) {
            const char *val = arg[15] == '=' ? arg + 16 : (i + 1 < argc ? argv[++i] : "");
            if (!parse_int_arg(val, 0, 2, &v))
                return usage_error("bad minor version '%s' (0..2)", val);
            a.opts.minor_version = (int)v;
        } else {
            return usage_error("unknown option '%s'", arg);
        }
    }
    return run(&a);
}
