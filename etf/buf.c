/*
 * buf.c — the growable output buffer shared by the encoder and printer, and
 * the descriptions of etf/'s error codes.
 */
#include <stdlib.h>

#include "etf.h"

int etf_buf_reserve(etf_buf_t *b, size_t more)
{
    if (b->cap - b->len >= more)
        return GD_OK;
    if (more > SIZE_MAX / 2 - b->len)
        return GD_ENOMEM;
    size_t need = b->len + more;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return GD_ENOMEM;
    b->data = p;
    b->cap = cap;
    return GD_OK;
}

void etf_buf_free(etf_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *etf_strerror(int code)
{
    switch (code) {
    case ETF_EVERSION:
        return "missing or wrong version byte (expected 131)";
    case ETF_ETRUNCATED:
        return "input ends inside a term";
    case ETF_EUNKNOWN_TAG:
        return "unknown tag";
    case ETF_EATOM:
        return "invalid atom (longer than 255 characters or bad UTF-8)";
    case ETF_EATOM_UNSAFE:
        return "safe decoding: atom does not exist";
    case ETF_EATOM_TABLE_FULL:
        return "atom table full";
    case ETF_EATOM_CACHE:
        return "atom cache reference without a cache entry";
    case ETF_EDEPTH:
        return "term nested too deeply";
    case ETF_ETOO_LARGE:
        return "length larger than the input or a size limit";
    case ETF_EFLOAT:
        return "invalid float (NaN, infinity or bad text)";
    case ETF_EBITS:
        return "bit binary with an invalid bit count";
    case ETF_EDUPLICATE_KEY:
        return "map with a duplicate key";
    case ETF_ENODE:
        return "node name is not an atom";
    case ETF_EREF_LEN:
        return "reference with more than 5 id words";
    case ETF_EFUN:
        return "malformed fun";
    case ETF_EEXPORT:
        return "malformed export";
    case ETF_ECOMPRESSED:
        return "bad compressed data or size mismatch";
    case ETF_EBIG:
        return "integer too large";
    case ETF_ELOCAL:
        return "LOCAL_EXT term from another node instance";
    case ETF_EOLD_FUN:
        return "FUN_EXT is no longer supported";
    case ETF_ENOMEM:
        return "out of memory";
    case ETF_ETRAILING:
        return "trailing bytes after the term";
    case ETF_EUNENCODABLE:
        return "term cannot be encoded";
    case ETF_ETYPE:
        return "field of the wrong type";
    case ETF_EPARSE:
        return "syntax error";
    case ETF_EHEAP_LIMIT:
        return "the term would exceed the decode's memory limit (max_heap)";
    default:
        return gd_strerror(code);
    }
}
