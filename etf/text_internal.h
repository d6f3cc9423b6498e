/*
 * text_internal.h — shared by the three files of the term text parser
 * (etf_parse) only: text_scan.c (characters, numbers, the lexer),
 * text_bits.c (binaries and bit syntax) and text_parse.c (leaves, the
 * container frames and etf_parse).  The parser's state, its limits and the
 * helpers more than one of them calls.
 */
#ifndef GIRDER_ETF_TEXT_INTERNAL_H
#define GIRDER_ETF_TEXT_INTERNAL_H

#include "internal.h"

/* Deepest nesting of lists, tuples and maps accepted: the codec's, so the
 * text parser never builds a term that etf_encode would refuse (see
 * check_codec_depth for the one case brackets undercount). */
#define TEXT_MAX_DEPTH ETF_MAX_DEPTH_DEFAULT
/* Longest integer literal in a base that is not a power of two (digits). */
#define TEXT_INT_MAX_DIGITS 400000u
/* Longest float literal (characters). */
#define TEXT_FLOAT_MAX_CHARS 4096u
/* Bits all binaries of one parse may hold together: a base plus a share
 * per input byte (plain segments like 255 or "abc" never come near it;
 * only explicit sizes such as <<0:80000000>> amplify the input). */
#define TEXT_BIN_BUDGET_BASE_BITS ((uint64_t)1 << 27)
#define TEXT_BIN_BUDGET_BITS_PER_BYTE 64u

enum token {
    T_EOF,
    T_LBRACE,    /* { */
    T_RBRACE,    /* } */
    T_LBRACK,    /* [ */
    T_RBRACK,    /* ] */
    T_BAR,       /* | */
    T_COMMA,     /* , */
    T_ARROW,     /* => */
    T_MAP_OPEN,  /* #{ */
    T_BIN_OPEN,  /* << */
    T_BIN_CLOSE, /* >> */
    T_LT,        /* < (a pid follows) */
    T_GT,        /* > */
    T_COLON,     /* : */
    T_SLASH,     /* / */
    T_DOT,       /* . followed by whitespace, a comment or the end */
    T_MINUS,     /* - */
    T_PLUS,      /* + */
    T_INT,       /* magnitude in p->mag (also $c) */
    T_FLOAT,     /* p->tok_float (non-negative) */
    T_ATOM,      /* p->tok_term */
    T_STRING,    /* code points in p->chars (adjacent strings joined) */
    T_FUN,       /* the keyword fun */
    T_REF_OPEN,  /* #Ref< */
    T_PORT_OPEN, /* #Port< */
    T_FUN_OPEN,  /* #Fun< */
};

enum frame_kind { FR_LIST, FR_TUPLE, FR_MAP };

typedef struct frame {
    enum frame_kind kind;
    bool tail;     /* lists: after '|' */
    size_t base;   /* first value of this container on the value stack */
    size_t offset; /* where the container opened (for errors) */
} frame_t;

typedef struct parser {
    heap_t *h;
    const uint8_t *s;
    size_t len;
    size_t pos;
    etf_error_t *err;

    /* The current token. */
    enum token tok;
    size_t tok_off;
    term_t tok_term;
    double tok_float;
    uint64_t *mag; /* little-endian magnitude of a T_INT */
    size_t mag_n, mag_cap;
    uint32_t *chars; /* code points of a T_STRING or quoted atom */
    size_t nchars, chars_cap;

    /* Containers being built. */
    frame_t *frames;
    size_t depth, frames_cap;
    size_t deepest_off; /* where depth first reached TEXT_MAX_DEPTH (0: never) */
    term_t *vals;
    size_t nvals, vals_cap;

    /* The binary being built: bits MSB first, bits past nbits kept zero. */
    uint8_t *bin;
    size_t bin_bits, bin_cap;
    uint64_t bin_total_bits;
} parser_t;

static inline bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* The byte at `at`, or -1 past the end of the text. */
static inline int peek_byte(const parser_t *p, size_t at)
{
    return at < p->len ? p->s[at] : -1;
}

/* Records the error (code and byte offset) in p->err and returns the code. */
GD_COLD int etf_text_fail(parser_t *p, int code, size_t offset);

/* Records a heap/atom-table error rc as etf/'s code at offset; returns it. */
int etf_text_heap_error(parser_t *p, int rc, size_t offset);

/* Grows the malloc'ed array *arr (capacity *cap elements of `size` bytes)
 * to hold `need`; GD_ENOMEM (array unchanged) on failure. */
int etf_text_grow(void **arr, size_t *cap, size_t need, size_t size) GD_MUST_CHECK;

/* Reads the next token into p->tok (and its value); 0 or an ETF_E* code. */
int etf_text_next_token(parser_t *p) GD_MUST_CHECK;

/* Reads the next token and fails with ETF_EPARSE unless it is `want`. */
int etf_text_expect(parser_t *p, enum token want) GD_MUST_CHECK;

/* The T_INT magnitude p->mag as a value no larger than max, or ETF_EPARSE. */
int etf_text_mag_to_u64(parser_t *p, uint64_t max, uint64_t *out) GD_MUST_CHECK;

/* Parses a binary whose `<<` is the current token into *out; 0 or an
 * ETF_E* code.  Its bits count against the parse's binary budget. */
int etf_text_parse_binary(parser_t *p, term_t *out) GD_MUST_CHECK;

#endif /* GIRDER_ETF_TEXT_INTERNAL_H */
