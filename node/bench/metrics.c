/*
 * metrics.c — the metrics registry and its Prometheus text exposition
 * (format 0.0.4, what `girder node --metrics :PORT` serves).
 *
 * Two sources of samples: metrics registered once and updated by the code
 * that owns them (lock-free atomics: a counter, a gauge's bits, a
 * histogram's bucket counts, sum and count), and collectors that compute
 * values at scrape time (scheduler statistics), whose samples are grouped
 * by name under one HELP and TYPE line like the registered ones.  The
 * registry lock only guards registration and scraping, never an update.
 *
 * Text rules followed (prometheus/docs exposition_formats.md): a family's
 * HELP and TYPE come once, before its samples, and a family's samples are
 * contiguous; HELP text escapes backslash and newline; label values escape
 * backslash, double quote and newline; values are Go floats (NaN, +Inf,
 * -Inf); a histogram has cumulative _bucket samples with ascending le ending
 * at le="+Inf" (equal to _count), then _sum and _count.
 */
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "sched/sched.h"

typedef struct family family_t;

struct bench_metric {
    family_t *fam;
    char *labels; /* rendered: name="escaped",... (no braces), "" without labels */
    struct bench_metric *next;
    /* counter: the count; gauge: the double's bits; histogram: unused.
     * Relaxed everywhere: a scrape reads each value on its own, there is no
     * other memory they publish. */
    _Atomic uint64_t value;
    _Atomic uint64_t *buckets; /* histogram: n_bounds + 1 (the last is +Inf) */
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t count;
};

struct family {
    char *name, *help;
    bench_metric_type_t type;
    double *bounds; /* histogram only */
    size_t n_bounds;
    bench_metric_t *first, *last;
};

typedef struct collector {
    bench_collector_fn fn;
    void *ctx;
} collector_t;

struct bench_metrics {
    pthread_mutex_t lock;
    family_t **fams;
    size_t n_fams, cap_fams;
    collector_t *colls;
    size_t n_colls, cap_colls;
    _Atomic uint64_t collector_errors; /* relaxed: a statistic */
};

/* One sample emitted by a collector during a scrape. */
typedef struct emitted {
    char *name, *help, *labels;
    bench_metric_type_t type;
    double v;
} emitted_t;

struct bench_metrics_emit {
    bench_metrics_t *reg;
    emitted_t *v;
    size_t n, cap;
    bool nomem;
};

#define COLLECTOR_ERRORS "girder_metrics_collector_errors_total"

/* ---- validation and escaping --------------------------------------------- */

static bool valid_metric_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool valid_label_name(const char *s)
{
    if (s == NULL || *s == '\0' || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool valid_utf8(const char *s)
{
    return heap_utf8_validate((const uint8_t *)s, strlen(s), NULL, NULL);
}

/* Appends s with the escapes of a label value (in) or HELP text (!in). */
static void put_escaped(bench_buf_t *b, const char *s, bool label_value)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            bench_buf_puts(b, "\\\\");
        else if (*s == '\n')
            bench_buf_puts(b, "\\n");
        else if (*s == '"' && label_value)
            bench_buf_puts(b, "\\\"");
        else
            bench_buf_put(b, s, 1);
    }
}

/*
 * Renders a label set as name="value",... into a malloc'd string (*out),
 * after checking every name and value.  extra_le: refuse "le" (histograms
 * add their own).  GD_EINVAL, GD_EDUPLICATE_KEY (a name twice), GD_ENOMEM.
 */
static int render_labels(const bench_label_t *labels, size_t n, bool no_le, char **out)
{
    if (n > BENCH_METRIC_MAX_LABELS || (n > 0 && labels == NULL))
        return GD_EINVAL;
    bench_buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        if (!valid_label_name(labels[i].name) || labels[i].value == NULL ||
            !valid_utf8(labels[i].value) || (no_le && strcmp(labels[i].name, "le") == 0)) {
            bench_buf_free(&b);
            return GD_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0) {
                bench_buf_free(&b);
                return GD_EDUPLICATE_KEY;
            }
        bench_buf_printf(&b, "%s%s=\"", i ? "," : "", labels[i].name);
        put_escaped(&b, labels[i].value, true);
        bench_buf_puts(&b, "\"");
    }
    bench_buf_put(&b, "", 0);
    if (b.err != 0 || b.data == NULL) {
        int rc = b.err ? b.err : GD_ENOMEM;
        bench_buf_free(&b);
        return rc;
    }
    *out = b.data;
    return 0;
}

/* Appends a value as Prometheus reads it: the shortest of %.15g/%.17g
 * that reads back exactly, NaN, +Inf, -Inf. */
static void put_value(bench_buf_t *b, double v)
{
    if (isnan(v)) {
        bench_buf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        bench_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char s[40];
    snprintf(s, sizeof s, "%.15g", v);
    if (strtod(s, NULL) != v)
        snprintf(s, sizeof s, "%.17g", v);
    bench_buf_puts(b, s);
}

/* ---- registry ------------------------------------------------------------ */

int bench_metrics_new(bench_metrics_t **out)
{
    bench_metrics_t *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return GD_ENOMEM;
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return GD_ENOMEM;
    }
    *out = reg;
    return 0;
}

static void free_metric(bench_metric_t *m)
{
    free(m->labels);
    free(m->buckets);
    free(m);
}

static void free_family(family_t *f)
{
    for (bench_metric_t *m = f->first, *next; m != NULL; m = next) {
        next = m->next;
        free_metric(m);
    }
    free(f->name);
    free(f->help);
    free(f->bounds);
    free(f);
}

void bench_metrics_free(bench_metrics_t *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->n_fams; i++)
        free_family(reg->fams[i]);
    free(reg->fams);
    free(reg->colls);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static family_t *find_family(const bench_metrics_t *reg, const char *name)
{
    for (size_t i = 0; i < reg->n_fams; i++)
        if (strcmp(reg->fams[i]->name, name) == 0)
            return reg->fams[i];
    return NULL;
}

/* True when `name` ends with suffix and the rest names a histogram family:
 * its _bucket, _sum or _count series would clash. */
static bool is_histogram_part(const bench_metrics_t *reg, const char *name)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    size_t n = strlen(name);
    for (size_t k = 0; k < 3; k++) {
        size_t s = strlen(sfx[k]);
        if (n <= s || strcmp(name + n - s, sfx[k]) != 0)
            continue;
        for (size_t i = 0; i < reg->n_fams; i++) {
            const family_t *f = reg->fams[i];
            if (f->type == BENCH_METRIC_HISTOGRAM && strlen(f->name) == n - s &&
                strncmp(f->name, name, n - s) == 0)
                return true;
        }
    }
    return false;
}

/* True when a histogram called `name` would produce a series name that a
 * registered family already has. */
static bool histogram_clashes(const bench_metrics_t *reg, const char *name)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    char buf[512];
    for (size_t k = 0; k < 3; k++) {
        snprintf(buf, sizeof buf, "%s%s", name, sfx[k]);
        if (find_family(reg, buf) != NULL)
            return true;
    }
    return false;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static bool valid_bounds(const double *bounds, size_t n)
{
    if (n > BENCH_METRIC_MAX_BUCKETS || (n > 0 && bounds == NULL))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return false;
    return true;
}

/* Finds or creates the family for a registration (lock held). */
static int get_family(bench_metrics_t *reg, bench_metric_type_t type, const char *name,
                      const char *help, const double *bounds, size_t n_bounds, family_t **out)
{
    family_t *f = find_family(reg, name);
    if (f != NULL) {
        if (f->type != type || strcmp(f->help, help) != 0 || f->n_bounds != n_bounds ||
            (n_bounds > 0 && memcmp(f->bounds, bounds, n_bounds * sizeof *bounds) != 0))
            return GD_EINVAL;
        *out = f;
        return 0;
    }
    if (is_histogram_part(reg, name) ||
        (type == BENCH_METRIC_HISTOGRAM && histogram_clashes(reg, name)) ||
        strcmp(name, COLLECTOR_ERRORS) == 0)
        return GD_EDUPLICATE_KEY;
    if (reg->n_fams == reg->cap_fams) {
        size_t cap = reg->cap_fams ? reg->cap_fams * 2 : 16;
        family_t **p = realloc(reg->fams, cap * sizeof *p);
        if (p == NULL)
            return GD_ENOMEM;
        reg->fams = p;
        reg->cap_fams = cap;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL)
        return GD_ENOMEM;
    f->type = type;
    f->name = dup_str(name);
    f->help = dup_str(help);
    f->n_bounds = n_bounds;
    f->bounds = n_bounds ? malloc(n_bounds * sizeof *bounds) : NULL;
    if (f->name == NULL || f->help == NULL || (n_bounds > 0 && f->bounds == NULL)) {
        free_family(f);
        return GD_ENOMEM;
    }
    if (n_bounds > 0)
        memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
    reg->fams[reg->n_fams++] = f;
    *out = f;
    return 0;
}

int bench_metrics_register(bench_metrics_t *reg, bench_metric_type_t type, const char *name,
                           const char *help, const bench_label_t *labels, size_t n_labels,
                           const double *bounds, size_t n_bounds, bench_metric_t **out)
{
    if (!valid_metric_name(name) || help == NULL || !valid_utf8(help) ||
        (type != BENCH_METRIC_COUNTER && type != BENCH_METRIC_GAUGE &&
         type != BENCH_METRIC_HISTOGRAM) ||
        (type != BENCH_METRIC_HISTOGRAM && n_bounds > 0) || !valid_bounds(bounds, n_bounds))
        return GD_EINVAL;
    char *rendered = NULL;
    int rc = render_labels(labels, n_labels, type == BENCH_METRIC_HISTOGRAM, &rendered);
    if (rc != 0)
        return rc;
    bench_metric_t *m = calloc(1, sizeof *m);
    if (m == NULL) {
        free(rendered);
        return GD_ENOMEM;
    }
    m->labels = rendered;
    if (type == BENCH_METRIC_HISTOGRAM) {
        m->buckets = calloc(n_bounds + 1, sizeof *m->buckets);
        if (m->buckets == NULL) {
            free_metric(m);
            return GD_ENOMEM;
        }
    }
    pthread_mutex_lock(&reg->lock);
    family_t *f = NULL;
    rc = get_family(reg, type, name, help, bounds, n_bounds, &f);
    if (rc == 0)
        for (const bench_metric_t *o = f->first; o != NULL; o = o->next)
            if (strcmp(o->labels, m->labels) == 0)
                rc = GD_EDUPLICATE_KEY;
    if (rc == 0) {
        m->fam = f;
        if (f->last != NULL)
            f->last->next = m;
        else
            f->first = m;
        f->last = m;
    }
    pthread_mutex_unlock(&reg->lock);
    if (rc != 0) {
        free_metric(m);
        return rc;
    }
    *out = m;
    return 0;
}

void bench_metric_add(bench_metric_t *m, uint64_t n)
{
    atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

static uint64_t double_bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

void bench_metric_set(bench_metric_t *m, double v)
{
    atomic_store_explicit(&m->value, double_bits(v), memory_order_relaxed);
}

void bench_metric_observe(bench_metric_t *m, double v)
{
    const family_t *f = m->fam;
    if (f->type != BENCH_METRIC_HISTOGRAM || isnan(v))
        return;
    size_t i = 0;
    while (i < f->n_bounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&m->sum_bits, &old,
                                                  double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

int bench_metric_hist_set(bench_metric_t *m, const uint64_t *counts, size_t n_counts, double sum)
{
    const family_t *f = m->fam;
    if (f->type != BENCH_METRIC_HISTOGRAM || n_counts != f->n_bounds + 1 || isnan(sum))
        return GD_EINVAL;
    uint64_t total = 0;
    for (size_t i = 0; i < n_counts; i++) {
        atomic_store_explicit(&m->buckets[i], counts[i], memory_order_relaxed);
        total += counts[i];
    }
    atomic_store_explicit(&m->sum_bits, double_bits(sum), memory_order_relaxed);
    atomic_store_explicit(&m->count, total, memory_order_relaxed);
    return 0;
}

int bench_metrics_add_collector(bench_metrics_t *reg, bench_collector_fn fn, void *ctx)
{
    if (fn == NULL)
        return GD_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&reg->lock);
    if (reg->n_colls == reg->cap_colls) {
        size_t cap = reg->cap_colls ? reg->cap_colls * 2 : 4;
        collector_t *p = realloc(reg->colls, cap * sizeof *p);
        if (p == NULL) {
            rc = GD_ENOMEM;
            goto unlock;
        }
        reg->colls = p;
        reg->cap_colls = cap;
    }
    reg->colls[reg->n_colls++] = (collector_t){fn, ctx};
unlock:
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

void bench_metrics_emit(bench_metrics_emit_t *e, bench_metric_type_t type, const char *name,
                        const char *help, const bench_label_t *labels, size_t n_labels, double v)
{
    char *rendered = NULL;
    bool bad = !valid_metric_name(name) || help == NULL || !valid_utf8(help) ||
               (type != BENCH_METRIC_COUNTER && type != BENCH_METRIC_GAUGE) ||
               find_family(e->reg, name) != NULL || is_histogram_part(e->reg, name) ||
               strcmp(name, COLLECTOR_ERRORS) == 0;
    /* a name emitted before must keep its type and help */
    for (size_t i = 0; !bad && i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0 &&
            (e->v[i].type != type || strcmp(e->v[i].help, help) != 0))
            bad = true;
    int rc = bad ? GD_EINVAL : render_labels(labels, n_labels, false, &rendered);
    for (size_t i = 0; rc == 0 && i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0 && strcmp(e->v[i].labels, rendered) == 0)
            rc = GD_EDUPLICATE_KEY;
    if (rc == GD_ENOMEM) {
        e->nomem = true;
        return;
    }
    if (rc != 0) {
        free(rendered);
        atomic_fetch_add_explicit(&e->reg->collector_errors, 1, memory_order_relaxed);
        return;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 32;
        emitted_t *p = realloc(e->v, cap * sizeof *p);
        if (p == NULL) {
            free(rendered);
            e->nomem = true;
            return;
        }
        e->v = p;
        e->cap = cap;
    }
    emitted_t *s = &e->v[e->n];
    s->name = dup_str(name);
    s->help = dup_str(help);
    s->labels = rendered;
    s->type = type;
    s->v = v;
    if (s->name == NULL || s->help == NULL) {
        free(s->name);
        free(s->help);
        free(rendered);
        e->nomem = true;
        return;
    }
    e->n++;
}

static const char *type_name(bench_metric_type_t t)
{
    return t == BENCH_METRIC_COUNTER ? "counter" : t == BENCH_METRIC_GAUGE ? "gauge" : "histogram";
}

static void put_header(bench_buf_t *b, const char *name, const char *help, bench_metric_type_t t)
{
    bench_buf_printf(b, "# HELP %s ", name);
    put_escaped(b, help, false);
    bench_buf_printf(b, "\n# TYPE %s %s\n", name, type_name(t));
}

/* name{labels[,extra]} (braces only when there is a label). */
static void put_series(bench_buf_t *b, const char *name, const char *suffix, const char *labels,
                       const char *extra)
{
    bench_buf_printf(b, "%s%s", name, suffix);
    bool any = *labels != '\0' || extra != NULL;
    if (!any)
        return;
    bench_buf_printf(b, "{%s%s%s}", labels, *labels != '\0' && extra != NULL ? "," : "",
                     extra != NULL ? extra : "");
}

static void render_family(bench_buf_t *b, const family_t *f)
{
    if (f->first == NULL)
        return;
    put_header(b, f->name, f->help, f->type);
    for (const bench_metric_t *m = f->first; m != NULL; m = m->next) {
        uint64_t v = atomic_load_explicit(&m->value, memory_order_relaxed);
        if (f->type == BENCH_METRIC_COUNTER) {
            put_series(b, f->name, "", m->labels, NULL);
            bench_buf_printf(b, " %llu\n", (unsigned long long)v);
            continue;
        }
        if (f->type == BENCH_METRIC_GAUGE) {
            put_series(b, f->name, "", m->labels, NULL);
            bench_buf_puts(b, " ");
            put_value(b, bits_double(v));
            bench_buf_puts(b, "\n");
            continue;
        }
        /* cumulative buckets; +Inf is the sum of all, reported as _count
         * too, so the two agree even while observations race the scrape */
        uint64_t cum = 0;
        char le[64];
        for (size_t i = 0; i <= f->n_bounds; i++) {
            cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
            if (i < f->n_bounds) {
                bench_buf_t lb = {0};
                put_value(&lb, f->bounds[i]);
                snprintf(le, sizeof le, "le=\"%s\"", lb.data ? lb.data : "0");
                bench_buf_free(&lb);
            } else {
                snprintf(le, sizeof le, "le=\"+Inf\"");
            }
            put_series(b, f->name, "_bucket", m->labels, le);
            bench_buf_printf(b, " %llu\n", (unsigned long long)cum);
        }
        put_series(b, f->name, "_sum", m->labels, NULL);
        bench_buf_puts(b, " ");
        put_value(b, bits_double(atomic_load_explicit(&m->sum_bits, memory_order_relaxed)));
        bench_buf_puts(b, "\n");
        put_series(b, f->name, "_count", m->labels, NULL);
        bench_buf_printf(b, " %llu\n", (unsigned long long)cum);
    }
}

static void free_emitted(bench_metrics_emit_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].name);
        free(e->v[i].help);
        free(e->v[i].labels);
    }
    free(e->v);
}

int bench_metrics_render(bench_metrics_t *reg, char **out, size_t *len)
{
    bench_buf_t b = {0};
    bench_metrics_emit_t e = {.reg = reg};
    pthread_mutex_lock(&reg->lock);
    /* Collectors first: one may mirror a figure kept elsewhere into a
     * registered metric (bench_metric_hist_set) for this very scrape. */
    for (size_t i = 0; i < reg->n_colls; i++)
        reg->colls[i].fn(&e, reg->colls[i].ctx);
    for (size_t i = 0; i < reg->n_fams; i++)
        render_family(&b, reg->fams[i]);
    /* collector samples grouped by name, in order of first appearance */
    for (size_t i = 0; i < e.n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(e.v[j].name, e.v[i].name) == 0;
        if (seen)
            continue;
        put_header(&b, e.v[i].name, e.v[i].help, e.v[i].type);
        for (size_t j = i; j < e.n; j++) {
            if (strcmp(e.v[j].name, e.v[i].name) != 0)
                continue;
            put_series(&b, e.v[j].name, "", e.v[j].labels, NULL);
            bench_buf_puts(&b, " ");
            put_value(&b, e.v[j].v);
            bench_buf_puts(&b, "\n");
        }
    }
    put_header(&b, COLLECTOR_ERRORS, "Samples that metric collectors emitted invalid (skipped).",
               BENCH_METRIC_COUNTER);
    bench_buf_printf(
        &b, COLLECTOR_ERRORS " %llu\n",
        (unsigned long long)atomic_load_explicit(&reg->collector_errors, memory_order_relaxed));
    pthread_mutex_unlock(&reg->lock);
    int rc = e.nomem ? GD_ENOMEM : b.err;
    free_emitted(&e);
    if (rc != 0) {
        bench_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

/* The sched/ figures that exist today (the node wires run queues,
 * reductions, messages and GC as sched/ grows them). */
static void sched_collector(bench_metrics_emit_t *e, void *ctx)
{
    (void)ctx;
    sched_stats_t st;
    sched_stats(&st);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_processes", "Processes alive.", NULL, 0,
                       (double)sched_process_count());
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_schedulers",
                       "Scheduler threads running (extra ones included).", NULL, 0,
                       (double)st.schedulers);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_scheduler_steals_total",
                       "Processes moved between schedulers by stealing.", NULL, 0,
                       (double)st.steals);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_scheduler_stuck_marks_total",
                       "Times a scheduler was marked stuck in one slice.", NULL, 0,
                       (double)st.stuck_marks);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_scheduler_extra_started_total",
                       "Extra scheduler threads started because all were stuck.", NULL, 0,
                       (double)st.extra_started);
}

int bench_metrics_add_sched(bench_metrics_t *reg)
{
    return bench_metrics_add_collector(reg, sched_collector, NULL);
}

int bench_metrics_parse_addr(const char *spec, char *host, size_t cap, uint16_t *port)
{
    if (spec == NULL || cap == 0)
        return GD_EINVAL;
    const char *colon = strrchr(spec, ':');
    if (colon == NULL)
        return GD_EINVAL;
    const char *h = spec;
    size_t hlen = (size_t)(colon - spec);
    /* [v6]:port */
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL) {
        return GD_EINVAL; /* a bare IPv6 address needs brackets */
    }
    if (hlen >= cap)
        return GD_EINVAL;
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return GD_EINVAL;
    unsigned long v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return GD_EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return GD_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}
