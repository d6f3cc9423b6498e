/*
 * results.c — a run's results as people and programs read them: machine
 * facts, the JSON document (build/demo/results.json), the terminal summary
 * table and the live progress line.
 */
#include "internal.h"

#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define RED "\033[31m"
#define BOLD "\033[1m"
#define RESET "\033[0m"

const char *bench_kind_name(bench_kind_t k)
{
    return k == BENCH_KIND_OTP ? "otp" : "girder";
}

/* Copies s into dst (cap bytes), truncating, always terminated. */
static void set_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL && *s != '\0' ? s : "unknown");
}

/* The "model name" line of /proc/cpuinfo (x86; other architectures name it
 * differently and get "unknown" or their "Model"/"Hardware" line). */
static void read_cpu_model(char *dst, size_t cap)
{
    set_str(dst, cap, NULL);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) != 0 && strncmp(line, "Model\t", 6) != 0 &&
            strncmp(line, "Hardware", 8) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\r\n")] = '\0';
        set_str(dst, cap, v);
        break;
    }
    fclose(f);
}

void bench_machine_detect(bench_machine_t *m, const char *girder_version)
{
    memset(m, 0, sizeof *m);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (unsigned)n : 0;
    read_cpu_model(m->cpu_model, sizeof m->cpu_model);
    struct utsname u;
    if (uname(&u) == 0) {
        /* bounded fields: an absurdly long release string is cut */
        snprintf(m->kernel, sizeof m->kernel, "%.60s %.64s", u.sysname, u.release);
        set_str(m->hostname, sizeof m->hostname, u.nodename);
    } else {
        set_str(m->kernel, sizeof m->kernel, NULL);
        set_str(m->hostname, sizeof m->hostname, NULL);
    }
    set_str(m->girder_version, sizeof m->girder_version, girder_version);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(m->started_at, sizeof m->started_at, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        set_str(m->started_at, sizeof m->started_at, NULL);
}

void bench_target_figures(const bench_target_t *t, bench_figures_t *out)
{
    memset(out, 0, sizeof *out);
    if (t->duration_s > 0)
        out->ops_per_s = (double)t->ops / t->duration_s;
    if (t->series == NULL)
        return;
    bench_summary_t s;
    bench_hist_summary(bench_series_total(t->series), &s);
    out->mean_us = s.mean_ns / 1e3;
    out->p50_us = (double)s.p50_ns / 1e3;
    out->p90_us = (double)s.p90_ns / 1e3;
    out->p99_us = (double)s.p99_ns / 1e3;
    out->p999_us = (double)s.p999_ns / 1e3;
    out->max_us = (double)s.max_ns / 1e3;
}

static void json_key(bench_buf_t *b, const char *k, bool first)
{
    if (!first)
        bench_buf_puts(b, ", ");
    bench_buf_json_str(b, k);
    bench_buf_puts(b, ": ");
}

static void json_kv_str(bench_buf_t *b, const char *k, const char *v, bool first)
{
    json_key(b, k, first);
    if (v == NULL)
        bench_buf_puts(b, "null");
    else
        bench_buf_json_str(b, v);
}

static void json_kv_num(bench_buf_t *b, const char *k, double v, bool first)
{
    json_key(b, k, first);
    bench_buf_json_num(b, v);
}

static void json_kv_u64(bench_buf_t *b, const char *k, uint64_t v, bool first)
{
    json_key(b, k, first);
    bench_buf_printf(b, "%llu", (unsigned long long)v);
}

/* The per-interval array of one target: seconds from the start, ops/s,
 * errors and p50/p99/max in microseconds. */
static int json_series(bench_buf_t *b, const bench_series_t *s, bench_hist_t *scratch)
{
    bench_buf_puts(b, "[");
    double len_s = (double)bench_series_interval_ns(s) / 1e9;
    for (size_t i = 0; i < bench_series_len(s); i++) {
        bench_interval_t iv;
        int rc = bench_series_interval(s, i, scratch, &iv);
        if (rc != 0)
            return rc;
        bench_buf_puts(b, i == 0 ? "\n      {" : ",\n      {");
        json_kv_num(b, "t_s", (double)iv.start_ns / 1e9, true);
        json_kv_num(b, "ops_per_s", (double)iv.ops / len_s, false);
        json_kv_u64(b, "errors", iv.errors, false);
        json_kv_num(b, "p50_us", (double)iv.lat.p50_ns / 1e3, false);
        json_kv_num(b, "p99_us", (double)iv.lat.p99_ns / 1e3, false);
        json_kv_num(b, "max_us", (double)iv.lat.max_ns / 1e3, false);
        bench_buf_puts(b, "}");
    }
    bench_buf_puts(b, bench_series_len(s) ? "\n    ]" : "]");
    return 0;
}

static int json_target(bench_buf_t *b, const bench_target_t *t, bench_hist_t *scratch)
{
    bench_figures_t f;
    bench_target_figures(t, &f);
    bench_buf_puts(b, "{");
    json_kv_str(b, "node", t->node, true);
    json_kv_str(b, "kind", bench_kind_name(t->kind), false);
    json_kv_str(b, "workload", t->workload, false);
    json_kv_num(b, "ops_per_s", f.ops_per_s, false);
    json_kv_num(b, "p50_us", f.p50_us, false);
    json_kv_num(b, "p99_us", f.p99_us, false);
    json_kv_u64(b, "errors", t->errors, false);
    json_kv_u64(b, "lost", t->lost, false);
    json_kv_u64(b, "misordered", t->misordered, false);
    bench_buf_puts(b, ",\n    ");
    json_kv_u64(b, "ops", t->ops, true);
    json_kv_num(b, "duration_s", t->duration_s, false);
    json_kv_num(b, "mean_us", f.mean_us, false);
    json_kv_num(b, "p90_us", f.p90_us, false);
    json_kv_num(b, "p999_us", f.p999_us, false);
    json_kv_num(b, "max_us", f.max_us, false);
    bench_buf_puts(b, ",\n    ");
    json_key(b, "series", true);
    int rc = 0;
    if (t->series == NULL)
        bench_buf_puts(b, "[]");
    else
        rc = json_series(b, t->series, scratch);
    bench_buf_puts(b, "}");
    return rc;
}

int bench_results_write_json(const bench_results_t *r, FILE *out)
{
    bench_buf_t b = {0};
    bench_hist_t *scratch = malloc(sizeof *scratch);
    int rc = GD_ENOMEM;
    if (scratch == NULL)
        goto free_buf;
    bench_buf_puts(&b, "{\n  ");
    json_kv_str(&b, "title", r->title, true);
    bench_buf_puts(&b, ",\n  \"targets\": [");
    for (size_t i = 0; i < r->n_targets; i++) {
        bench_buf_puts(&b, i == 0 ? "\n    " : ",\n    ");
        if ((rc = json_target(&b, &r->targets[i], scratch)) != 0)
            goto free_buf;
    }
    bench_buf_puts(&b, r->n_targets ? "\n  ],\n  \"params\": {" : "],\n  \"params\": {");
    const bench_params_t *p = &r->params;
    json_kv_str(&b, "workload", p->workload, true);
    json_kv_u64(&b, "clients", p->clients, false);
    json_kv_u64(&b, "client_nodes", p->client_nodes, false);
    if (p->schedulers > 0)
        json_kv_u64(&b, "schedulers", p->schedulers, false);
    json_kv_u64(&b, "read_batch_us", p->read_batch_us, false);
    json_kv_str(&b, "payload", p->payload, false);
    json_kv_u64(&b, "payload_bytes", p->payload_bytes, false);
    json_kv_str(&b, "mode", p->rate_per_s > 0 ? "open" : "closed", false);
    json_kv_num(&b, "rate_per_s", p->rate_per_s, false);
    json_kv_num(&b, "duration_s", p->duration_s, false);
    json_kv_num(&b, "warmup_s", p->warmup_s, false);
    json_kv_num(&b, "interval_s", p->interval_s, false);
    bench_buf_puts(&b, "},\n  \"machine\": {");
    const bench_machine_t *m = &r->machine;
    json_kv_u64(&b, "cores", m->cores, true);
    json_kv_str(&b, "cpu_model", m->cpu_model, false);
    json_kv_str(&b, "kernel", m->kernel, false);
    json_kv_str(&b, "hostname", m->hostname, false);
    json_kv_str(&b, "girder_version", m->girder_version, false);
    json_kv_str(&b, "started_at", m->started_at, false);
    bench_buf_puts(&b, "}\n}\n");
    rc = bench_buf_flush(&b, out);
free_buf:
    free(scratch);
    bench_buf_free(&b);
    return rc;
}

bool bench_is_tty(FILE *out)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(fileno(out)) && (nc == NULL || *nc == '\0');
}

/* The table's columns: header, right-aligned, and the cell text. */
enum {
    COL_TARGET,
    COL_KIND,
    COL_WORKLOAD,
    COL_OPS,
    COL_P50,
    COL_P99,
    COL_ERR,
    COL_LOST,
    COL_MIS,
    NCOLS
};
static const char *const col_head[NCOLS] = {"target", "kind",   "workload", "ops/s",     "p50 us",
                                            "p99 us", "errors", "lost",     "misordered"};

static void cell_text(const bench_target_t *t, const bench_figures_t *f, int c, char *out,
                      size_t cap)
{
    switch (c) {
    case COL_TARGET:
        snprintf(out, cap, "%s", t->node ? t->node : "?");
        break;
    case COL_KIND:
        snprintf(out, cap, "%s", bench_kind_name(t->kind));
        break;
    case COL_WORKLOAD:
        snprintf(out, cap, "%s", t->workload ? t->workload : "?");
        break;
    case COL_OPS:
        snprintf(out, cap, "%.0f", f->ops_per_s);
        break;
    case COL_P50:
        snprintf(out, cap, "%.1f", f->p50_us);
        break;
    case COL_P99:
        snprintf(out, cap, "%.1f", f->p99_us);
        break;
    case COL_ERR:
        snprintf(out, cap, "%llu", (unsigned long long)t->errors);
        break;
    case COL_LOST:
        snprintf(out, cap, "%llu", (unsigned long long)t->lost);
        break;
    default:
        snprintf(out, cap, "%llu", (unsigned long long)t->misordered);
        break;
    }
}

int bench_results_write_table(const bench_results_t *r, FILE *out, bool color)
{
    size_t width[NCOLS];
    char cell[160];
    for (int c = 0; c < NCOLS; c++)
        width[c] = strlen(col_head[c]);
    for (size_t i = 0; i < r->n_targets; i++) {
        bench_figures_t f;
        bench_target_figures(&r->targets[i], &f);
        for (int c = 0; c < NCOLS; c++) {
            cell_text(&r->targets[i], &f, c, cell, sizeof cell);
            size_t w = strlen(cell);
            if (w > width[c])
                width[c] = w;
        }
    }
    bench_buf_t b = {0};
    for (int c = 0; c < NCOLS; c++) {
        int w = (int)width[c];
        /* text columns left-aligned, numbers right-aligned */
        bench_buf_printf(&b, c < COL_OPS ? "%s%-*s" : "%s%*s", c ? "  " : "", w, col_head[c]);
    }
    bench_buf_puts(&b, "\n");
    unsigned bad = 0;
    for (size_t i = 0; i < r->n_targets; i++) {
        const bench_target_t *t = &r->targets[i];
        bench_figures_t f;
        bench_target_figures(t, &f);
        for (int c = 0; c < NCOLS; c++) {
            cell_text(t, &f, c, cell, sizeof cell);
            int w = (int)width[c];
            bool red =
                color && ((c == COL_LOST && t->lost > 0) || (c == COL_MIS && t->misordered > 0) ||
                          (c == COL_ERR && t->errors > 0));
            /* padding outside the colour codes, so they wrap just the number */
            int pad = w - (int)strlen(cell);
            bench_buf_printf(&b, "%s%*s%s%s%s%*s", c ? "  " : "", c < COL_OPS ? 0 : pad, "",
                             red ? RED BOLD : "", cell, red ? RESET : "", c < COL_OPS ? pad : 0,
                             "");
        }
        bench_buf_puts(&b, "\n");
        bad += t->lost > 0 || t->misordered > 0;
    }
    if (bad > 0)
        bench_buf_printf(&b, "%s%u target%s lost or misordered messages%s\n", color ? RED BOLD : "",
                         bad, bad == 1 ? "" : "s", color ? RESET : "");
    int rc = bench_buf_flush(&b, out);
    bench_buf_free(&b);
    return rc;
}

void bench_progress_init(bench_progress_t *p, FILE *out)
{
    p->out = out;
    p->tty = bench_is_tty(out);
    p->dirty = false;
}

void bench_progress_update(bench_progress_t *p, double elapsed_s, double ops_per_s, double p50_us,
                           double p99_us, uint64_t errors)
{
    /* \033[K clears what a longer previous line left on the right */
    fprintf(p->out, "%s%7.1fs  %10.0f ops/s  p50 %8.1f us  p99 %8.1f us  errors %s%llu%s%s",
            p->tty ? "\r\033[K" : "", elapsed_s, ops_per_s, p50_us, p99_us,
            p->tty && errors > 0 ? RED : "", (unsigned long long)errors,
            p->tty && errors > 0 ? RESET : "", p->tty ? "" : "\n");
    fflush(p->out);
    p->dirty = p->tty;
}

void bench_progress_end(bench_progress_t *p)
{
    if (p->dirty) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    p->dirty = false;
}
