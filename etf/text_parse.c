/*
 * text_parse.c — etf_parse: one Erlang term in text syntax (no variables,
 * no expressions) built on a heap.
 *
 * Accepted, as erl_scan/erl_parse:parse_term read it on OTP 25 unless noted:
 *   - integers: 42, -7, +7, 1_000, Base#Digits (2..36, 16#FF, 2#1010),
 *     $c and $\n style character codes, any size (bignums);
 *   - floats: 1.0, 2.5e-3, 1.0E10 (a fraction is required, as in Erlang);
 *   - atoms: bare (abc, a@b, Latin-1 letters) and quoted ('hello world',
 *     '\x{3B1}'); `fun` introduces an export, other reserved words are
 *     accepted as bare atoms (Erlang rejects them; printing quotes them);
 *   - strings with every erl_scan escape (\n \t \e \d \s \^X \OOO \xHH
 *     \x{H...}), adjacent strings concatenated ("ab" "cd");
 *   - lists with an improper tail [1,2|3], tuples, maps #{K => V} (a later
 *     duplicate key wins, as in a map expression);
 *   - binaries: <<"bin">>, <<1,2,3>>, <<1:3>>, <<5:4, 3:4>>, segments with
 *     integer/float/utf8/utf16/utf32 types, signed/unsigned, big/little/
 *     native, unit:N, string segments (<<"ä"/utf8>>, <<"ab":16>>);
 *   - identifiers as text_print.c prints them: <0.42.0>, <'n@h'.42.0.3>,
 *     #Port<0.5>, #Port<'n@h'.5.3>, #Ref<0.1.2.3>, #Ref<'n@h'.1.2.3.3>;
 *     fun M:F/A exports (#Fun<...> closures cannot be rebuilt from text);
 *   - % comments, whitespace, and an optional final '.'.
 *
 * Input is UTF-8.  It is treated as hostile: nesting is walked with
 * explicit stacks (no C recursion), bounded by TEXT_MAX_DEPTH; integer
 * literals in bases that are not powers of two are capped at
 * TEXT_INT_MAX_DIGITS digits (their conversion is quadratic); the binaries
 * of one parse hold at most 16 MiB plus 8 bytes per input byte (so a few
 * bytes of text such as <<0:99999999999>> cannot ask for gigabytes).  Every error
 * reports the byte offset where it was detected. *
 * The parser is three files sharing text_internal.h: text_scan.c (the
 * lexer), text_bits.c (binaries and bit syntax) and this one (leaves, the
 * container frames and etf_parse).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "text_internal.h"

/* ------------------------------------------------------------------------ */
/* Leaves.                                                                  */

/* The integer term for sign and p->mag. */
static int make_integer(parser_t *p, bool negative, term_t *out)
{
    int rc = heap_make_integer_digits(p->h, negative, p->mag, p->mag_n, out);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, p->tok_off);
}

/* A number after an optional sign that is the current token. */
static int parse_number(parser_t *p, term_t *out)
{
    bool negative = false;
    int rc;
    if (p->tok == T_MINUS || p->tok == T_PLUS) {
        negative = p->tok == T_MINUS;
        if ((rc = etf_text_next_token(p)) != GD_OK)
            return rc;
    }
    if (p->tok == T_INT)
        return make_integer(p, negative, out);
    if (p->tok == T_FLOAT) {
        rc = heap_make_float(p->h, negative ? -p->tok_float : p->tok_float, out);
        return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, p->tok_off);
    }
    return etf_text_fail(p, ETF_EPARSE, p->tok_off);
}

/* The string in p->chars as a list of character codes. */
static int make_string(parser_t *p, term_t *out)
{
    term_t list = TERM_NIL;
    for (size_t i = p->nchars; i-- > 0;) {
        int rc = heap_cons(p->h, term_make_small(p->chars[i]), list, &list);
        if (rc != GD_OK)
            return etf_text_heap_error(p, rc, p->tok_off);
    }
    *out = list;
    return GD_OK;
}

/*
 * Reads ".N.N...>" right after the text at p->pos (no blanks inside, as
 * OTP prints them): between min and max numbers, each at most UINT64_MAX.
 */
static int scan_dotted(parser_t *p, size_t min, size_t max, uint64_t *nums, size_t *count)
{
    size_t n = 0;
    while (peek_byte(p, p->pos) == '.') {
        p->pos++;
        if (n == max || !is_digit(peek_byte(p, p->pos)))
            return etf_text_fail(p, ETF_EPARSE, p->pos);
        uint64_t v = 0;
        while (is_digit(peek_byte(p, p->pos))) {
            unsigned d = (unsigned)(p->s[p->pos] - '0');
            if (v > (UINT64_MAX - d) / 10)
                return etf_text_fail(p, ETF_EPARSE, p->pos);
            v = v * 10 + d;
            p->pos++;
        }
        nums[n++] = v;
    }
    if (n < min || peek_byte(p, p->pos) != '>')
        return etf_text_fail(p, ETF_EPARSE, p->pos);
    p->pos++;
    *count = n;
    return GD_OK;
}

/*
 * After "<", "#Port<" or "#Ref<": either "0" (the local node) or a node
 * atom.  *node gets TERM_NONE for the local form.
 */
static int scan_ident_node(parser_t *p, term_t *node)
{
    size_t at = p->pos;
    int c = peek_byte(p, at);
    if (c == '0' && !is_digit(peek_byte(p, at + 1))) {
        p->pos++;
        *node = TERM_NONE;
        return GD_OK;
    }
    if (is_digit(c)) {
        /* <NodeIndex.Id.Serial> with another index: OTP's local view of a
         * remote node; the node it means is not in the text. */
        return etf_text_fail(p, ETF_EPARSE, at);
    }
    int rc = etf_text_next_token(p);
    if (rc != GD_OK)
        return rc;
    if (p->tok != T_ATOM || p->tok_off != at)
        return etf_text_fail(p, ETF_EPARSE, p->tok_off);
    *node = p->tok_term;
    return GD_OK;
}

static int parse_pid(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[3];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 2, 2, v, &n)) != GD_OK)
            return rc;
        if (v[0] > UINT32_MAX || v[1] > UINT32_MAX)
            return etf_text_fail(p, ETF_EPARSE, open);
        /* <0.Id.Serial> is a pid of this node (out of the local ranges:
         * badarg, as list_to_pid). */
        node = heap_node_name();
        v[2] = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 3, 3, v, &n)) != GD_OK)
            return rc;
        if (v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > UINT32_MAX)
            return etf_text_fail(p, ETF_EPARSE, open);
    }
    rc = heap_make_ext_pid(p->h, node, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], out);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, open);
}

static int parse_port(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[2];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 1, 1, v, &n)) != GD_OK)
            return rc;
        node = heap_node_name(); /* #Port<0.N>: a port of this node */
        v[1] = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 2, 2, v, &n)) != GD_OK)
            return rc;
        if (v[1] > UINT32_MAX)
            return etf_text_fail(p, ETF_EPARSE, open);
    }
    rc = heap_make_ext_port(p->h, node, v[0], (uint32_t)v[1], out);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, open);
}

static int parse_ref(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t node;
    uint64_t v[HEAP_REF_MAX_WORDS + 1];
    size_t n;
    int rc = scan_ident_node(p, &node);
    if (rc != GD_OK)
        return rc;
    uint32_t creation = 0;
    if (node == TERM_NONE) {
        if ((rc = scan_dotted(p, 0, HEAP_REF_MAX_WORDS, v, &n)) != GD_OK)
            return rc;
        node = heap_node_name(); /* #Ref<0.W2.W1.W0>: a reference of this node */
        creation = heap_node_creation();
    } else {
        if ((rc = scan_dotted(p, 1, HEAP_REF_MAX_WORDS + 1, v, &n)) != GD_OK)
            return rc;
        if (v[n - 1] > UINT32_MAX)
            return etf_text_fail(p, ETF_EPARSE, open);
        creation = (uint32_t)v[--n];
    }
    /* Printed highest word first. */
    uint32_t words[HEAP_REF_MAX_WORDS];
    for (size_t i = 0; i < n; i++) {
        if (v[i] > UINT32_MAX)
            return etf_text_fail(p, ETF_EPARSE, open);
        words[n - 1 - i] = (uint32_t)v[i];
    }
    rc = heap_make_ref(p->h, node, creation, words, n, out);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, open);
}

/* fun Module:Function/Arity (the keyword already read). */
static int parse_export(parser_t *p, term_t *out)
{
    size_t open = p->tok_off;
    term_t mod, fn;
    uint64_t arity = 0;
    int rc;
    if ((rc = etf_text_expect(p, T_ATOM)) != GD_OK)
        return rc;
    mod = p->tok_term;
    if ((rc = etf_text_expect(p, T_COLON)) != GD_OK || (rc = etf_text_expect(p, T_ATOM)) != GD_OK)
        return rc;
    fn = p->tok_term;
    if ((rc = etf_text_expect(p, T_SLASH)) != GD_OK || (rc = etf_text_expect(p, T_INT)) != GD_OK ||
        (rc = etf_text_mag_to_u64(p, 255, &arity)) != GD_OK)
        return rc;
    rc = heap_make_export(p->h, mod, fn, (uint8_t)arity, out);
    return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, open);
}

/* ------------------------------------------------------------------------ */
/* Containers.                                                              */

/* Fails a container nested one level deeper than the codec allows, at its
 * opening bracket.  An empty container there is fine ({} and [] are
 * leaves to the codec): only putting something in it fails. */
static int fail_depth(parser_t *p)
{
    return etf_text_fail(p, ETF_EDEPTH, p->frames[p->depth - 1].offset);
}

static int push_frame(parser_t *p, enum frame_kind kind)
{
    if (p->depth > TEXT_MAX_DEPTH)
        return fail_depth(p);
    if (etf_text_grow((void **)&p->frames, &p->frames_cap, p->depth + 1, sizeof *p->frames) !=
        GD_OK)
        return etf_text_fail(p, ETF_ENOMEM, p->tok_off);
    p->frames[p->depth++] = (frame_t){.kind = kind, .base = p->nvals, .offset = p->tok_off};
    return GD_OK;
}

static int push_value(parser_t *p, term_t t)
{
    if (p->depth > TEXT_MAX_DEPTH)
        return fail_depth(p);
    if (p->depth == TEXT_MAX_DEPTH && p->deepest_off == 0)
        p->deepest_off = p->frames[p->depth - 1].offset + 1;
    if (etf_text_grow((void **)&p->vals, &p->vals_cap, p->nvals + 1, sizeof *p->vals) != GD_OK)
        return etf_text_fail(p, ETF_ENOMEM, p->tok_off);
    p->vals[p->nvals++] = t;
    return GD_OK;
}

/* Orders pair indices by key (exact term order), then by position.  qsort
 * has no context argument, so the keys come through a thread-local (callers
 * may parse on several threads at once). */
static _Thread_local const term_t *sort_keys;
/* Set when a key comparison ran out of memory (the sort then finishes in
 * some order and make_map fails). */
static _Thread_local int sort_err;
static int compare_pair_index(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c;
    if (heap_compare_checked(sort_keys[i], sort_keys[j], true, &c) != GD_OK) {
        sort_err = GD_ENOMEM;
        c = 0;
    }
    if (c != 0)
        return c;
    return i < j ? -1 : 1;
}

/*
 * Builds a map from the n key/value pairs keys[i] => vals[i]; when a key
 * appears more than once the last pair wins, as in a map expression.
 */
static int make_map(parser_t *p, term_t *keys, term_t *vals, size_t n, size_t offset, term_t *out)
{
    int rc = heap_make_map(p->h, keys, vals, n, out);
    if (rc != GD_EDUPLICATE_KEY)
        return rc == GD_OK ? GD_OK : etf_text_heap_error(p, rc, offset);
    size_t *idx = malloc(n * sizeof *idx);
    term_t *k2 = malloc(n * sizeof *k2);
    term_t *v2 = malloc(n * sizeof *v2);
    if (idx == NULL || k2 == NULL || v2 == NULL) {
        rc = etf_text_fail(p, ETF_ENOMEM, offset);
        goto free_arrays;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_keys = keys;
    sort_err = GD_OK;
    qsort(idx, n, sizeof *idx, compare_pair_index);
    size_t m = 0;
    for (size_t i = 0; i < n && sort_err == GD_OK; i++) {
        int c = 1;
        if (i + 1 < n && heap_compare_checked(keys[idx[i]], keys[idx[i + 1]], true, &c) != GD_OK)
            sort_err = GD_ENOMEM;
        if (c != 0) {
            k2[m] = keys[idx[i]];
            v2[m] = vals[idx[i]];
            m++;
        }
    }
    rc = sort_err != GD_OK ? sort_err : heap_make_map(p->h, k2, v2, m, out);
    if (rc != GD_OK)
        rc = etf_text_heap_error(p, rc, offset);
free_arrays:
    free(v2);
    free(k2);
    free(idx);
    return rc;
}

/* Builds the container of the top frame from its values and pops it. */
static int close_frame(parser_t *p, term_t *out)
{
    frame_t *f = &p->frames[p->depth - 1];
    size_t n = p->nvals - f->base;
    term_t *items = n > 0 ? p->vals + f->base : NULL; /* vals is NULL before the first push */
    int rc = GD_OK;
    switch (f->kind) {
    case FR_TUPLE: {
        term_t *elems;
        rc = heap_make_tuple(p->h, n, &elems, out);
        if (rc == GD_OK && n > 0)
            memcpy(elems, items, n * sizeof *items);
        break;
    }
    case FR_LIST: {
        term_t tail = TERM_NIL;
        if (f->tail)
            tail = items[--n];
        term_t list = tail;
        for (size_t i = n; i-- > 0 && rc == GD_OK;)
            rc = heap_cons(p->h, items[i], list, &list);
        *out = list;
        break;
    }
    case FR_MAP: {
        size_t pairs = n / 2;
        term_t *keys = malloc((pairs ? pairs : 1) * sizeof *keys);
        term_t *vals = malloc((pairs ? pairs : 1) * sizeof *vals);
        if (keys == NULL || vals == NULL) {
            free(keys);
            free(vals);
            return etf_text_fail(p, ETF_ENOMEM, f->offset);
        }
        for (size_t i = 0; i < pairs; i++) {
            keys[i] = items[2 * i];
            vals[i] = items[2 * i + 1];
        }
        rc = make_map(p, keys, vals, pairs, f->offset, out);
        free(keys);
        free(vals);
        if (rc != GD_OK)
            return rc;
        break;
    }
    }
    if (rc != GD_OK)
        return etf_text_heap_error(p, rc, f->offset);
    p->nvals = f->base;
    p->depth--;
    return GD_OK;
}

/* Reads one term that does not open a list, tuple or map (current token). */
static int parse_leaf(parser_t *p, term_t *out)
{
    switch (p->tok) {
    case T_INT:
    case T_FLOAT:
    case T_MINUS:
    case T_PLUS:
        return parse_number(p, out);
    case T_ATOM:
        *out = p->tok_term;
        return GD_OK;
    case T_STRING:
        return make_string(p, out);
    case T_BIN_OPEN:
        return etf_text_parse_binary(p, out);
    case T_LT:
        return parse_pid(p, out);
    case T_PORT_OPEN:
        return parse_port(p, out);
    case T_REF_OPEN:
        return parse_ref(p, out);
    case T_FUN:
        return parse_export(p, out);
    default:
        /* Includes #Fun<...>: a closure's code cannot be rebuilt from text. */
        return etf_text_fail(p, ETF_EPARSE, p->tok_off);
    }
}

/* True if the token closes the (empty) container on top of the stack. */
static bool closes_top(const parser_t *p)
{
    if (p->depth == 0)
        return false;
    switch (p->frames[p->depth - 1].kind) {
    case FR_LIST:
        return p->tok == T_RBRACK;
    default:
        return p->tok == T_RBRACE;
    }
}

/* The parse proper: a loop over tokens with explicit container stacks. */
static int parse_term(parser_t *p, term_t *out)
{
    bool may_close = false; /* just opened a container: its closer is fine */
    term_t value;
    int rc;
    for (;;) {
        /* Expect a value. */
        if ((rc = etf_text_next_token(p)) != GD_OK)
            return rc;
        if (may_close && closes_top(p)) {
            if ((rc = close_frame(p, &value)) != GD_OK)
                return rc;
        } else if (p->tok == T_LBRACE || p->tok == T_LBRACK || p->tok == T_MAP_OPEN) {
            enum frame_kind k = p->tok == T_LBRACE   ? FR_TUPLE
                                : p->tok == T_LBRACK ? FR_LIST
                                                     : FR_MAP;
            if ((rc = push_frame(p, k)) != GD_OK)
                return rc;
            may_close = true;
            continue;
        } else if ((rc = parse_leaf(p, &value)) != GD_OK) {
            return rc;
        }
        may_close = false;
        /* Deliver the value to its container, closing as many as end. */
        for (;;) {
            if (p->depth == 0) {
                *out = value;
                return GD_OK;
            }
            if ((rc = push_value(p, value)) != GD_OK || (rc = etf_text_next_token(p)) != GD_OK)
                return rc;
            frame_t *f = &p->frames[p->depth - 1];
            size_t count = p->nvals - f->base;
            bool more = false;
            switch (f->kind) {
            case FR_TUPLE:
                if (p->tok == T_COMMA)
                    more = true;
                else if (p->tok != T_RBRACE)
                    return etf_text_fail(p, ETF_EPARSE, p->tok_off);
                break;
            case FR_LIST:
                if (!f->tail && p->tok == T_COMMA) {
                    more = true;
                } else if (!f->tail && p->tok == T_BAR) {
                    f->tail = true;
                    more = true;
                } else if (p->tok != T_RBRACK) {
                    return etf_text_fail(p, ETF_EPARSE, p->tok_off);
                }
                break;
            case FR_MAP:
                if (count % 2 == 1) {
                    if (p->tok != T_ARROW)
                        return etf_text_fail(p, ETF_EPARSE, p->tok_off);
                    more = true;
                } else if (p->tok == T_COMMA) {
                    more = true;
                } else if (p->tok != T_RBRACE) {
                    return etf_text_fail(p, ETF_EPARSE, p->tok_off);
                }
                break;
            }
            if (more)
                break;
            if ((rc = close_frame(p, &value)) != GD_OK)
                return rc;
        }
    }
}

/*
 * Parses one term from text[0..len) onto h (see the file comment for the
 * syntax).  On success *out is the term and err->code is 0.  Errors:
 * ETF_EPARSE (syntax), ETF_EATOM / ETF_EATOM_TABLE_FULL, ETF_EBIG (integer
 * beyond HEAP_BIG_MAX_DIGITS or TEXT_INT_MAX_DIGITS), ETF_ETOO_LARGE
 * (binary budget, float literal length), ETF_EDEPTH (nesting beyond TEXT_MAX_DEPTH), ETF_ENOMEM;
 * err->offset is the byte where it was detected.  Words allocated on h
 * before a failure stay there as garbage; no term escapes.  Work is linear
 * in len apart from integer conversion (capped as above).
 */
/*
 * Brackets count the codec's nesting (etf.h: ETF_MAX_DEPTH_DEFAULT, one
 * level per non-empty tuple, list or map) exactly but for one case: a
 * string leaf that encodes as LIST_EXT (longer than 65535 or beyond
 * Latin-1) is one level more than its quotes show.  So a term whose
 * brackets reached the cap is measured as the encoder measures it, and
 * refused if the codec would refuse it.  (The other way, "[a|[b|[c]]]"
 * counts three brackets for one level; such text nested 100,000 deep is
 * refused though its term would encode.)
 */
static int check_codec_depth(parser_t *p, term_t t)
{
    if (p->deepest_off == 0)
        return GD_OK;
    etf_encode_opts_t o;
    etf_encode_opts_init(&o);
    size_t size;
    int rc = etf_encoded_size(t, &o, &size);
    if (rc == ETF_EDEPTH)
        return etf_text_fail(p, ETF_EDEPTH, p->deepest_off - 1);
    return rc == ETF_ENOMEM ? etf_text_fail(p, ETF_ENOMEM, p->deepest_off - 1) : GD_OK;
}

int etf_parse(heap_t *h, const char *text, size_t len, term_t *out, etf_error_t *err)
{
    parser_t p = {.h = h, .s = (const uint8_t *)text, .len = len, .err = err};
    if (err != NULL) {
        err->code = 0;
        err->offset = 0;
    }
    term_t value = TERM_NONE;
    int rc = parse_term(&p, &value);
    if (rc == GD_OK)
        rc = etf_text_next_token(&p);
    if (rc == GD_OK && p.tok == T_DOT)
        rc = etf_text_next_token(&p);
    if (rc == GD_OK && p.tok != T_EOF)
        rc = etf_text_fail(&p, ETF_EPARSE, p.tok_off);
    if (rc == GD_OK)
        rc = check_codec_depth(&p, value);
    if (rc == GD_OK)
        *out = value;
    free(p.mag);
    free(p.chars);
    free(p.frames);
    free(p.vals);
    free(p.bin);
    return rc;
}
