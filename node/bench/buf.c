/*
 * buf.c — the growing text buffer behind the JSON, HTML and Prometheus
 * writers, with the escapes each format needs.  Allocation failure is
 * sticky (internal.h) so a writer checks once, at the end.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static bool reserve(bench_buf_t *b, size_t more)
{
    if (b->err != 0)
        return false;
    if (more < b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (more >= cap - b->len) {
        if (cap > SIZE_MAX / 2) {
            b->err = GD_ENOMEM;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->err = GD_ENOMEM;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void bench_buf_put(bench_buf_t *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void bench_buf_puts(bench_buf_t *b, const char *s)
{
    bench_buf_put(b, s, strlen(s));
}

void bench_buf_printf(bench_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->err == 0)
            b->err = GD_EINVAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        bench_buf_put(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bench_buf_free(bench_buf_t *b)
{
    free(b->data);
    *b = (bench_buf_t){0};
}

void bench_buf_html(bench_buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            bench_buf_puts(b, "&amp;");
            break;
        case '<':
            bench_buf_puts(b, "&lt;");
            break;
        case '>':
            bench_buf_puts(b, "&gt;");
            break;
        case '"':
            bench_buf_puts(b, "&quot;");
            break;
        case '\'':
            bench_buf_puts(b, "&#39;");
            break;
        default:
            bench_buf_put(b, s, 1);
        }
    }
}

void bench_buf_json_str(bench_buf_t *b, const char *s)
{
    bench_buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '"':
            bench_buf_puts(b, "\\\"");
            break;
        case '\\':
            bench_buf_puts(b, "\\\\");
            break;
        case '\n':
            bench_buf_puts(b, "\\n");
            break;
        case '\r':
            bench_buf_puts(b, "\\r");
            break;
        case '\t':
            bench_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7F)
                bench_buf_printf(b, "\\u%04x", *p);
            else
                bench_buf_put(b, (const char *)p, 1);
        }
    }
    bench_buf_put(b, "\"", 1);
}

void bench_buf_json_num(bench_buf_t *b, double v)
{
    if (!isfinite(v)) {
        bench_buf_puts(b, "null");
        return;
    }
    /* integers print without a fraction; others with 10 significant
     * digits: exact enough for any rate or latency, shorter than 17 */
    if (v == floor(v) && fabs(v) < 1e15)
        bench_buf_printf(b, "%.0f", v);
    else
        bench_buf_printf(b, "%.10g", v);
}

int bench_buf_flush(const bench_buf_t *b, FILE *out)
{
    if (b->err != 0)
        return b->err;
    if (b->len > 0 && fwrite(b->data, 1, b->len, out) != b->len)
        return GD_EINVAL;
    if (fflush(out) != 0)
        return GD_EINVAL;
    return 0;
}
