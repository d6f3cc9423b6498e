/*
 * html.c — the HTML report: one self-contained file, inline CSS and SVG
 * drawn here (no script, no fonts or libraries from the network), so it
 * opens anywhere, offline, years later.
 *
 * Charts: throughput of every target over time; p50/p99/max latency over
 * time, one chart per target; the latency distribution of every target as a
 * percentile spectrum (x = percentile on the 1/(1-q) log scale load testers
 * use, so 99.9% and 99.99% get as much room as 50% to 90%).  Latency axes
 * are logarithmic (decades) because tails are orders of magnitude above
 * medians.  Every plot area is a rectangle of class "plot" filled with
 * PLOT_BG, a colour used nowhere else, so a screenshot test can find the
 * plot areas and count what was drawn inside them.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

#define CHART_W 820
#define CHART_H 330
#define M_LEFT 86
#define M_RIGHT 24
#define M_TOP 16
#define M_BOTTOM 56
#define PLOT_BG "#f3f6fc"
#define SPECTRUM_POINTS 240
#define SPECTRUM_MAX_X 5.0 /* 99.999% */

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define PALETTE_N (sizeof palette / sizeof palette[0])

typedef struct line {
    const char *name;
    const char *color;
    double *x, *y;
    size_t n;
} line_t;

typedef enum { AXIS_LINEAR, AXIS_LOG, AXIS_PERCENTILE } axis_kind_t;

typedef struct axis {
    axis_kind_t kind;
    double lo, hi; /* in axis units: values, or log10 of values */
    const char *label;
} axis_t;

/* Formats a latency given in microseconds for a tick label. */
static void fmt_latency(char *out, size_t cap, double us)
{
    if (us >= 1e6)
        snprintf(out, cap, "%g s", us / 1e6);
    else if (us >= 1e3)
        snprintf(out, cap, "%g ms", us / 1e3);
    else if (us >= 1)
        snprintf(out, cap, "%g \xc2\xb5s", us);
    else
        snprintf(out, cap, "%g ns", us * 1e3);
}

/* Formats a plain number compactly (12k, 1.5M) for a tick label. */
static void fmt_number(char *out, size_t cap, double v)
{
    double a = fabs(v);
    if (a >= 1e6)
        snprintf(out, cap, "%gM", v / 1e6);
    else if (a >= 1e4)
        snprintf(out, cap, "%gk", v / 1e3);
    else
        snprintf(out, cap, "%g", v);
}

/* A "nice" step (1, 2 or 5 times a power of ten) for about 5 ticks. */
static double nice_step(double range)
{
    double raw = range / 5.0;
    double mag = pow(10.0, floor(log10(raw)));
    double norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/* Sets the axis range to cover [lo, hi] (values) with round ends. */
static void axis_fit(axis_t *a, double lo, double hi)
{
    if (!(lo <= hi)) {
        lo = 0;
        hi = 1;
    }
    if (a->kind == AXIS_LOG) {
        if (lo <= 0)
            lo = hi > 0 ? hi / 1000 : 1e-3;
        if (hi <= 0)
            hi = 1;
        a->lo = floor(log10(lo));
        a->hi = ceil(log10(hi));
        if (a->hi <= a->lo)
            a->hi = a->lo + 1;
        return;
    }
    if (a->kind == AXIS_PERCENTILE) {
        a->lo = 0;
        a->hi = ceil(hi);
        if (a->hi < 1)
            a->hi = 1;
        return;
    }
    if (hi == lo)
        hi = lo + 1;
    double step = nice_step(hi - lo);
    a->lo = floor(lo / step) * step;
    a->hi = ceil(hi / step) * step;
}

/* A value's position along an axis, 0 to 1. */
static double axis_frac(const axis_t *a, double v)
{
    double u = v;
    if (a->kind == AXIS_LOG)
        u = log10(v > 0 ? v : pow(10.0, a->lo));
    double f = (u - a->lo) / (a->hi - a->lo);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* Calls tick(v, label) for each tick of the axis. */
typedef struct tick {
    double v;
    char label[32];
} tick_t;

static size_t axis_ticks(const axis_t *a, bool latency, tick_t *t, size_t cap)
{
    size_t n = 0;
    if (a->kind == AXIS_LOG) {
        for (double e = a->lo; e <= a->hi + 1e-9 && n < cap; e += 1) {
            t[n].v = pow(10.0, e);
            fmt_latency(t[n].label, sizeof t[n].label, t[n].v);
            n++;
        }
    } else if (a->kind == AXIS_PERCENTILE) {
        static const char *const names[] = {"0%",     "90%",     "99%",     "99.9%",
                                            "99.99%", "99.999%", "99.9999%"};
        for (int e = 0; e <= (int)a->hi && e < 7 && n < cap; e++) {
            t[n].v = e;
            snprintf(t[n].label, sizeof t[n].label, "%s", names[e]);
            n++;
        }
    } else {
        double step = nice_step(a->hi - a->lo);
        for (double v = a->lo; v <= a->hi + step * 1e-6 && n < cap; v += step) {
            t[n].v = fabs(v) < step * 1e-9 ? 0 : v;
            if (latency)
                fmt_latency(t[n].label, sizeof t[n].label, t[n].v);
            else
                fmt_number(t[n].label, sizeof t[n].label, t[n].v);
            n++;
        }
    }
    return n;
}

/* Draws one chart: plot area, grid, ticks, axis labels, lines, legend. */
static void chart(bench_buf_t *b, const char *title, axis_t *xa, axis_t *ya, bool y_latency,
                  const line_t *lines, size_t n_lines)
{
    double x0 = M_LEFT, y0 = M_TOP, pw = CHART_W - M_LEFT - M_RIGHT,
           ph = CHART_H - M_TOP - M_BOTTOM;
    bench_buf_puts(b, "<figure class=\"chart\"><figcaption>");
    bench_buf_html(b, title);
    bench_buf_puts(b, "</figcaption>\n");
    bench_buf_printf(b,
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                     "viewBox=\"0 0 %d %d\" role=\"img\">\n",
                     CHART_W, CHART_H, CHART_W, CHART_H);
    bench_buf_printf(b,
                     "<rect class=\"plot\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
                     "fill=\"" PLOT_BG "\"/>\n",
                     x0, y0, pw, ph);
    tick_t ticks[64];
    size_t nt = axis_ticks(ya, y_latency, ticks, 64);
    for (size_t i = 0; i < nt; i++) {
        double y = y0 + ph * (1 - axis_frac(ya, ticks[i].v));
        bench_buf_printf(b,
                         "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                         "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
                         x0, y, x0 + pw, y, x0 - 6, y + 4);
        bench_buf_html(b, ticks[i].label);
        bench_buf_puts(b, "</text>\n");
    }
    nt = axis_ticks(xa, false, ticks, 64);
    for (size_t i = 0; i < nt; i++) {
        double x = x0 + pw * axis_frac(xa, ticks[i].v);
        bench_buf_printf(b,
                         "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                         "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
                         x, y0, x, y0 + ph, x, y0 + ph + 18);
        bench_buf_html(b, ticks[i].label);
        bench_buf_puts(b, "</text>\n");
    }
    bench_buf_printf(b,
                     "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                     "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                     x0, y0 + ph, x0 + pw, y0 + ph, x0, y0, x0, y0 + ph);
    bench_buf_printf(b, "<text class=\"axis-label\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">",
                     x0 + pw / 2, CHART_H - 12);
    bench_buf_html(b, xa->label);
    bench_buf_printf(b,
                     "</text>\n<text class=\"axis-label\" x=\"16\" y=\"%.1f\" "
                     "text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">",
                     y0 + ph / 2, y0 + ph / 2);
    bench_buf_html(b, ya->label);
    bench_buf_puts(b, "</text>\n");
    size_t drawn = 0;
    for (size_t l = 0; l < n_lines; l++) {
        if (lines[l].n == 0)
            continue;
        bench_buf_printf(b, "<polyline class=\"series\" stroke=\"%s\" points=\"", lines[l].color);
        for (size_t i = 0; i < lines[l].n; i++)
            bench_buf_printf(b, "%s%.1f,%.1f", i ? " " : "", x0 + pw * axis_frac(xa, lines[l].x[i]),
                             y0 + ph * (1 - axis_frac(ya, lines[l].y[i])));
        /* a single point still shows: a short horizontal stroke */
        if (lines[l].n == 1)
            bench_buf_printf(b, " %.1f,%.1f", x0 + pw * axis_frac(xa, lines[l].x[0]) + 4,
                             y0 + ph * (1 - axis_frac(ya, lines[l].y[0])));
        bench_buf_puts(b, "\"/>\n");
        drawn++;
    }
    if (drawn == 0)
        bench_buf_printf(b,
                         "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
                         "text-anchor=\"middle\">no data</text>\n",
                         x0 + pw / 2, y0 + ph / 2);
    bench_buf_puts(b, "</svg>\n<div class=\"legend\">");
    for (size_t l = 0; l < n_lines; l++) {
        bench_buf_printf(b, "<span><i style=\"background:%s\"></i>", lines[l].color);
        bench_buf_html(b, lines[l].name);
        bench_buf_puts(b, "</span>");
    }
    bench_buf_puts(b, "</div></figure>\n");
}

/* Per-target data for the charts, computed once. */
typedef struct tdata {
    size_t n;                /* intervals */
    double *t;               /* interval start, s */
    double *ops;             /* ops/s */
    double *p50, *p99, *max; /* us */
    double sx[SPECTRUM_POINTS], sy[SPECTRUM_POINTS];
    size_t sn;
} tdata_t;

static void tdata_free(tdata_t *d)
{
    free(d->t);
    free(d->ops);
    free(d->p50);
    free(d->p99);
    free(d->max);
}

static int tdata_fill(tdata_t *d, const bench_series_t *s, bench_hist_t *scratch)
{
    memset(d, 0, sizeof *d);
    if (s == NULL)
        return 0;
    size_t n = bench_series_len(s);
    size_t sz = (n ? n : 1) * sizeof(double);
    d->t = malloc(sz);
    d->ops = malloc(sz);
    d->p50 = malloc(sz);
    d->p99 = malloc(sz);
    d->max = malloc(sz);
    if (!d->t || !d->ops || !d->p50 || !d->p99 || !d->max)
        return GD_ENOMEM;
    double len_s = (double)bench_series_interval_ns(s) / 1e9;
    for (size_t i = 0; i < n; i++) {
        bench_interval_t iv;
        int rc = bench_series_interval(s, i, scratch, &iv);
        if (rc != 0)
            return rc;
        d->t[i] = (double)iv.start_ns / 1e9;
        d->ops[i] = (double)iv.ops / len_s;
        d->p50[i] = (double)iv.lat.p50_ns / 1e3;
        d->p99[i] = (double)iv.lat.p99_ns / 1e3;
        d->max[i] = (double)iv.lat.max_ns / 1e3;
    }
    d->n = n;
    const bench_hist_t *h = bench_series_total(s);
    if (h->count > 0) {
        /* the spectrum reaches as far into the tail as the samples do */
        double xmax = log10((double)h->count);
        if (xmax > SPECTRUM_MAX_X)
            xmax = SPECTRUM_MAX_X;
        if (xmax < 1)
            xmax = 1;
        for (size_t i = 0; i < SPECTRUM_POINTS; i++) {
            double x = xmax * (double)i / (SPECTRUM_POINTS - 1);
            d->sx[i] = x;
            d->sy[i] = (double)bench_hist_quantile(h, 1.0 - pow(10.0, -x)) / 1e3;
        }
        d->sn = SPECTRUM_POINTS;
    }
    return 0;
}

/* Smallest and largest of a set of arrays, skipping non-positive values
 * when positive_only (log axes). */
static void range_of(const line_t *lines, size_t n, bool use_x, bool positive_only, double *lo,
                     double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t l = 0; l < n; l++)
        for (size_t i = 0; i < lines[l].n; i++) {
            double v = use_x ? lines[l].x[i] : lines[l].y[i];
            if (positive_only && v <= 0)
                continue;
            if (v < *lo)
                *lo = v;
            if (v > *hi)
                *hi = v;
        }
}

static void kv_row(bench_buf_t *b, const char *k, const char *v)
{
    bench_buf_puts(b, "<tr><th>");
    bench_buf_html(b, k);
    bench_buf_puts(b, "</th><td>");
    bench_buf_html(b, v != NULL ? v : "");
    bench_buf_puts(b, "</td></tr>\n");
}

static void summary_table(bench_buf_t *b, const bench_results_t *r)
{
    bench_buf_puts(b,
                   "<div class=\"wide\"><table class=\"summary\"><tr><th>target</th><th>kind</th>"
                   "<th>workload</th><th>ops/s</th><th>p50 \xc2\xb5s</th>"
                   "<th>p90 \xc2\xb5s</th><th>p99 \xc2\xb5s</th><th>p99.9 \xc2\xb5s</th>"
                   "<th>max \xc2\xb5s</th><th>errors</th><th>lost</th>"
                   "<th>misordered</th></tr>\n");
    for (size_t i = 0; i < r->n_targets; i++) {
        const bench_target_t *t = &r->targets[i];
        bench_figures_t f;
        bench_target_figures(t, &f);
        bench_buf_puts(b, "<tr><td>");
        bench_buf_html(b, t->node ? t->node : "?");
        bench_buf_printf(b, "</td><td>%s</td><td>", bench_kind_name(t->kind));
        bench_buf_html(b, t->workload ? t->workload : "?");
        bench_buf_printf(b,
                         "</td><td>%.0f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td>"
                         "<td>%.1f</td><td>%.1f</td>",
                         f.ops_per_s, f.p50_us, f.p90_us, f.p99_us, f.p999_us, f.max_us);
        bench_buf_printf(b, "<td%s>%llu</td><td%s>%llu</td><td%s>%llu</td></tr>\n",
                         t->errors ? " class=\"bad\"" : "", (unsigned long long)t->errors,
                         t->lost ? " class=\"bad\"" : "", (unsigned long long)t->lost,
                         t->misordered ? " class=\"bad\"" : "", (unsigned long long)t->misordered);
    }
    bench_buf_puts(b, "</table></div>\n");
}

static void facts_tables(bench_buf_t *b, const bench_results_t *r)
{
    char v[160];
    const bench_params_t *p = &r->params;
    bench_buf_puts(b, "<section class=\"facts\"><div><h2>Run parameters</h2><table>\n");
    kv_row(b, "workload", p->workload);
    snprintf(v, sizeof v, "%llu", (unsigned long long)p->clients);
    kv_row(b, "client processes", v);
    snprintf(v, sizeof v, "%u", p->client_nodes);
    kv_row(b, "client nodes", v);
    if (p->schedulers > 0) {
        snprintf(v, sizeof v, "%u", p->schedulers);
        kv_row(b, "schedulers (bench node)", v);
    }
    if (p->read_batch_us > 0) {
        snprintf(v, sizeof v, "every %u us at most", p->read_batch_us);
        kv_row(b, "socket reads (bench node)", v);
    }
    snprintf(v, sizeof v, "%s, %llu bytes", p->payload ? p->payload : "?",
             (unsigned long long)p->payload_bytes);
    kv_row(b, "payload", v);
    if (p->rate_per_s > 0)
        snprintf(v, sizeof v, "open loop, %g arrivals/s", p->rate_per_s);
    else
        snprintf(v, sizeof v, "closed loop");
    kv_row(b, "load", v);
    snprintf(v, sizeof v, "%g s (after %g s warm-up)", p->duration_s, p->warmup_s);
    kv_row(b, "duration", v);
    snprintf(v, sizeof v, "%g s", p->interval_s);
    kv_row(b, "interval", v);
    bench_buf_puts(b, "</table></div><div><h2>Machine</h2><table>\n");
    const bench_machine_t *m = &r->machine;
    snprintf(v, sizeof v, "%u", m->cores);
    kv_row(b, "cores", v);
    kv_row(b, "CPU", m->cpu_model);
    kv_row(b, "kernel", m->kernel);
    kv_row(b, "host", m->hostname);
    kv_row(b, "girder", m->girder_version);
    kv_row(b, "started (UTC)", m->started_at);
    bench_buf_puts(b, "</table></div></section>\n");
}

static const char *const css =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:900px;color:#222;"
    "background:#fff}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}"
    ".sub{color:#666;margin:0 0 12px}"
    "table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #e4e4e4;"
    "text-align:right}th{background:#f7f7f7}.facts th{text-align:left}"
    ".summary{font-size:13px}.summary th{white-space:nowrap}.wide{overflow-x:auto}"
    ".summary td:nth-child(-n+3),.summary th:nth-child(-n+3){text-align:left}"
    ".facts td{text-align:left}.facts{display:flex;gap:40px;flex-wrap:wrap}"
    ".bad{color:#c00;font-weight:bold}"
    "figure{margin:8px 0 18px}figcaption{font-weight:600;margin-bottom:2px}"
    "svg{display:block}"
    ".grid{stroke:#d9dee8;stroke-width:1}.axis{stroke:#333;stroke-width:1.2}"
    ".tick{font-size:11px;fill:#444}.axis-label{font-size:13px;fill:#222}"
    ".series{fill:none;stroke-width:2;stroke-linejoin:round}"
    ".legend span{margin-right:16px;white-space:nowrap}"
    ".legend i{display:inline-block;width:14px;height:4px;margin:0 5px 3px 0;"
    "vertical-align:middle}";

static void render(bench_buf_t *b, const bench_results_t *r, tdata_t *d)
{
    const char *title = r->title ? r->title : "girder bench";
    bench_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    bench_buf_html(b, title);
    bench_buf_printf(b, "</title>\n<style>%s</style></head>\n<body>\n<h1>", css);
    bench_buf_html(b, title);
    bench_buf_puts(b, "</h1><p class=\"sub\">");
    bench_buf_html(b, r->machine.started_at);
    bench_buf_puts(b, " on ");
    bench_buf_html(b, r->machine.hostname);
    bench_buf_puts(b, "</p>\n<h2>Summary</h2>\n");
    summary_table(b, r);

    size_t nt = r->n_targets;
    line_t *lines = calloc(nt * 3 + 1, sizeof *lines);
    if (lines == NULL) {
        b->err = GD_ENOMEM;
        return;
    }
    bench_buf_puts(b, "<h2>Throughput over time</h2>\n");
    for (size_t i = 0; i < nt; i++)
        lines[i] = (line_t){r->targets[i].node ? r->targets[i].node : "?", palette[i % PALETTE_N],
                            d[i].t, d[i].ops, d[i].n};
    double lo, hi, ylo, yhi;
    axis_t xa = {AXIS_LINEAR, 0, 1, "time since start (s)"};
    axis_t ya = {AXIS_LINEAR, 0, 1, "throughput (operations/s)"};
    range_of(lines, nt, true, false, &lo, &hi);
    axis_fit(&xa, 0, hi);
    range_of(lines, nt, false, false, &ylo, &yhi);
    axis_fit(&ya, 0, yhi * 1.05); /* headroom: a steady line must not sit on the frame */
    chart(b, "Completed operations per second, per target", &xa, &ya, false, lines, nt);

    bench_buf_puts(b, "<h2>Latency over time</h2>\n");
    for (size_t i = 0; i < nt; i++) {
        line_t lt[3] = {{"p50", palette[0], d[i].t, d[i].p50, d[i].n},
                        {"p99", palette[3], d[i].t, d[i].p99, d[i].n},
                        {"max", palette[1], d[i].t, d[i].max, d[i].n}};
        axis_t tx = {AXIS_LINEAR, 0, 1, "time since start (s)"};
        axis_t ly = {AXIS_LOG, 0, 1, "latency (log scale)"};
        range_of(lt, 3, true, false, &lo, &hi);
        axis_fit(&tx, 0, hi);
        range_of(lt, 3, false, true, &ylo, &yhi);
        axis_fit(&ly, ylo, yhi);
        char cap[200];
        snprintf(cap, sizeof cap, "%s (%s): p50, p99 and max latency per interval",
                 r->targets[i].node ? r->targets[i].node : "?",
                 bench_kind_name(r->targets[i].kind));
        chart(b, cap, &tx, &ly, true, lt, 3);
    }

    bench_buf_puts(b, "<h2>Latency distribution</h2>\n");
    for (size_t i = 0; i < nt; i++)
        lines[i] = (line_t){r->targets[i].node ? r->targets[i].node : "?", palette[i % PALETTE_N],
                            d[i].sx, d[i].sy, d[i].sn};
    axis_t px = {AXIS_PERCENTILE, 0, 1, "percentile"};
    axis_t py = {AXIS_LOG, 0, 1, "latency (log scale)"};
    range_of(lines, nt, true, false, &lo, &hi);
    axis_fit(&px, 0, hi);
    range_of(lines, nt, false, true, &ylo, &yhi);
    axis_fit(&py, ylo, yhi);
    chart(b, "Latency by percentile over the whole run, per target", &px, &py, true, lines, nt);
    free(lines);

    facts_tables(b, r);
    bench_buf_puts(b, "</body></html>\n");
}

int bench_results_write_html(const bench_results_t *r, FILE *out)
{
    bench_buf_t b = {0};
    int rc = GD_ENOMEM;
    bench_hist_t *scratch = malloc(sizeof *scratch);
    tdata_t *d = calloc(r->n_targets ? r->n_targets : 1, sizeof *d);
    size_t filled = 0;
    if (scratch == NULL || d == NULL)
        goto free_data;
    for (; filled < r->n_targets; filled++)
        if ((rc = tdata_fill(&d[filled], r->targets[filled].series, scratch)) != 0) {
            filled++; /* its partial arrays are freed below */
            goto free_data;
        }
    render(&b, r, d);
    rc = bench_buf_flush(&b, out);
free_data:
    for (size_t i = 0; d != NULL && i < filled; i++)
        tdata_free(&d[i]);
    free(d);
    free(scratch);
    bench_buf_free(&b);
    return rc;
}
