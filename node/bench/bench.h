/*
 * bench.h — the measuring and reporting half of `girder bench` and the
 * metrics endpoint of `girder node --metrics`: the one header of node/bench/
 * (library gd_bench).
 *
 *   histogram   log-linear latency histogram, 0 to 60 s with <= 1% error,
 *               fixed memory, O(1) record, merge, a checked byte encoding
 *               (what a remote client node sends back)
 *   series      per-interval ops, errors and latency histograms of one
 *               recorder (open loop: latency from the intended send time)
 *   live        lock-free per-thread counters the progress line reads while
 *               the recorders run
 *   results     the results model of a run, written as JSON, a terminal
 *               table, a live progress line and a self-contained HTML report
 *   metrics     a registry of counters, gauges and histograms with labels,
 *               rendered in the Prometheus text format and served by evhttp
 *
 * Conventions are the tree's (heap/heap.h): fallible functions return 0 or a
 * negative GD_E* code and are GD_MUST_CHECK; no function aborts on bad input
 * or a failed allocation.  Times are nanoseconds (uint64_t) unless a name
 * says otherwise.
 */
#ifndef GIRDER_BENCH_H
#define GIRDER_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "heap.h"

/* ------------------------------------------------------------------------ */
/* Latency histogram                                                         */

/*
 * Layout: values below 2^(SUB_BITS+1) ns have a bucket each (exact); above,
 * every power of two [2^e, 2^(e+1)) is cut into 2^SUB_BITS equal buckets, so
 * a bucket is at most 1/128 of its lower bound wide and the reported
 * midpoint is within 0.4% of any value in it.  Values above
 * BENCH_HIST_MAX_NS (60 s) are recorded as 60 s and counted in `clamped`.
 */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB_COUNT (1u << BENCH_HIST_SUB_BITS) /* 128 */
#define BENCH_HIST_LINEAR (2u * BENCH_HIST_SUB_COUNT)    /* 256 exact buckets */
#define BENCH_HIST_MAX_NS UINT64_C(60000000000)          /* 60 s */
#define BENCH_HIST_TOP_EXP 35                            /* 2^35 <= 60 s < 2^36 */
/* Buckets up to and including the one holding 60 s (3808). */
#define BENCH_HIST_BUCKETS                                                                         \
    (BENCH_HIST_LINEAR + (BENCH_HIST_TOP_EXP - BENCH_HIST_SUB_BITS - 1) * BENCH_HIST_SUB_COUNT +   \
     (uint32_t)(BENCH_HIST_MAX_NS >> (BENCH_HIST_TOP_EXP - BENCH_HIST_SUB_BITS)) -                 \
     BENCH_HIST_SUB_COUNT + 1)

/* Encoding: magic, version byte, varints, CRC-32 trailer (hist.c). */
#define BENCH_HIST_VERSION 1
/* The longest encoding: header, every bucket with the largest varints, CRC. */
#define BENCH_HIST_MAX_ENCODED (3 + 6 * 10 + BENCH_HIST_BUCKETS * (2 + 10) + 4)

/* One recorder's histogram: owned by one thread at a time (no atomics; each
 * scheduler thread records into its own and the results are merged). */
typedef struct bench_hist {
    uint64_t count;   /* samples recorded */
    uint64_t min_ns;  /* smallest sample (after clamping); 0 when count == 0 */
    uint64_t max_ns;  /* largest sample (after clamping) */
    uint64_t sum_ns;  /* saturates at UINT64_MAX */
    uint64_t clamped; /* samples above BENCH_HIST_MAX_NS */
    uint64_t counts[BENCH_HIST_BUCKETS];
} bench_hist_t;

/* Summary statistics of a histogram, in nanoseconds. */
typedef struct bench_summary {
    uint64_t count;
    uint64_t min_ns, max_ns;
    double mean_ns;
    uint64_t p50_ns, p90_ns, p99_ns, p999_ns;
} bench_summary_t;

/* Empties h (no allocation: a bench_hist_t lives wherever its 30 KiB fit,
 * static, heap or a thread's stack, not a small coroutine stack).
 * O(BENCH_HIST_BUCKETS). */
void bench_hist_reset(bench_hist_t *h);

/* The bucket a value falls in (values above the maximum go to the last
 * bucket), and the smallest and largest values bucket i holds.  O(1). */
uint32_t bench_hist_index(uint64_t ns);
uint64_t bench_hist_bucket_low(uint32_t i);
uint64_t bench_hist_bucket_high(uint32_t i);

/* Records one sample.  O(1): a count-leading-zeros and three adds. */
void bench_hist_record(bench_hist_t *h, uint64_t ns);

/* Adds n samples of the same value (count, sum and buckets as n records). */
void bench_hist_record_n(bench_hist_t *h, uint64_t ns, uint64_t n);

/* Adds every sample of src to dst, as if dst had recorded them (counts
 * saturate rather than wrap).  O(BENCH_HIST_BUCKETS). */
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);

/* The value at quantile q in [0, 1]: the midpoint of the bucket holding the
 * sample of rank ceil(q * count), clamped to [min, max] (so q = 0 gives the
 * min and q = 1 the max exactly).  0 for an empty histogram.
 * O(BENCH_HIST_BUCKETS). */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);

/* count, min, max, mean, p50, p90, p99 and p99.9 in one pass over the
 * buckets. */
void bench_hist_summary(const bench_hist_t *h, bench_summary_t *out);

/* True when a and b hold the same samples (every field equal). */
bool bench_hist_equal(const bench_hist_t *a, const bench_hist_t *b);

/*
 * Encodes h into out (capacity cap bytes; BENCH_HIST_MAX_ENCODED always
 * suffices) and sets *len.  The encoding is canonical: equal histograms give
 * equal bytes.  Typical sizes are a few hundred bytes (only non-empty
 * buckets are written).  GD_EINVAL if cap is too small.  O(BENCH_HIST_BUCKETS).
 */
int bench_hist_encode(const bench_hist_t *h, uint8_t *out, size_t cap, size_t *len) GD_MUST_CHECK;

/* The exact size bench_hist_encode will produce (the same walk, no output). */
size_t bench_hist_encoded_size(const bench_hist_t *h);

/*
 * Decodes len bytes from an untrusted peer into *h.  Every byte is checked
 * against len; the magic, version, CRC-32, canonical varints, bucket indices
 * and the consistency of count, min, max, sum and clamped with the buckets
 * must all hold, else GD_EINVAL and *h is emptied.  Nothing is allocated.
 * O(len + BENCH_HIST_BUCKETS).
 */
int bench_hist_decode(const uint8_t *in, size_t len, bench_hist_t *h) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Time series of one recorder                                               */

/* A bound on intervals per series (a done time far in the future must not
 * make a recorder allocate gigabytes): 10 days of 1 s intervals. */
#define BENCH_SERIES_MAX_INTERVALS (10u * 24u * 3600u)

/* One interval's figures as bench_series_interval reports them. */
typedef struct bench_interval {
    uint64_t start_ns; /* offset from the series start */
    uint64_t ops;      /* completed operations (errors included) */
    uint64_t errors;
    bench_summary_t lat; /* latency of the operations completed in it */
} bench_interval_t;

typedef struct bench_series bench_series_t;

/*
 * Creates an empty series: interval i covers completions in
 * [start_ns + i * interval_ns, start_ns + (i + 1) * interval_ns) on the
 * recorder's clock (CLOCK_MONOTONIC for a local run).  Completions before
 * start_ns (warm-up) are counted in bench_series_warmup and recorded
 * nowhere else.  The caller owns *out (bench_series_free).  GD_EINVAL for
 * interval_ns 0, GD_ENOMEM.
 */
int bench_series_new(uint64_t start_ns, uint64_t interval_ns, bench_series_t **out) GD_MUST_CHECK;

/* Frees s and everything it holds; NULL is a no-op. */
void bench_series_free(bench_series_t *s);

/*
 * Records one operation intended to be sent at intended_ns (the open-loop
 * schedule; for a closed loop, the actual send time) and completed at
 * done_ns: its latency is done_ns - intended_ns (0 if done precedes
 * intended), so a stalled sender's delay counts (no coordinated omission).
 * ok false counts an error (its latency is still recorded).  The sample
 * lands in the interval of done_ns; a done_ns before the open interval
 * (out-of-order use) counts in the open interval.  O(1), except when
 * done_ns opens a new interval: then the closed interval's histogram is
 * packed (O(BENCH_HIST_BUCKETS), one allocation).  On GD_ENOMEM or
 * GD_ESYSTEM_LIMIT (beyond BENCH_SERIES_MAX_INTERVALS) nothing changed.
 */
int bench_series_record(bench_series_t *s, uint64_t intended_ns, uint64_t done_ns,
                        bool ok) GD_MUST_CHECK;

/* Number of intervals (the open one included; 0 before the first sample). */
size_t bench_series_len(const bench_series_t *s);

/* The interval length and start time it was created with. */
uint64_t bench_series_interval_ns(const bench_series_t *s);
uint64_t bench_series_start_ns(const bench_series_t *s);

/* Completions before start_ns (not recorded anywhere else). */
uint64_t bench_series_warmup(const bench_series_t *s);

/* Every latency of the series in one histogram (borrowed; valid until the
 * next call on s), plus the error total. */
const bench_hist_t *bench_series_total(const bench_series_t *s);
uint64_t bench_series_errors(const bench_series_t *s);

/*
 * The figures of interval i < bench_series_len(s).  `scratch` is caller
 * space to unpack the interval's histogram into (the caller may then read
 * it: the interval's full distribution).  GD_EINVAL for i out of range.
 * O(BENCH_HIST_BUCKETS).
 */
int bench_series_interval(const bench_series_t *s, size_t i, bench_hist_t *scratch,
                          bench_interval_t *out) GD_MUST_CHECK;

/*
 * Adds src's samples into dst, interval i of src into interval i of dst,
 * as if dst had recorded them; both must have the same interval length
 * (GD_EINVAL), and dst keeps its start.  Aligning by index is what lets
 * series from other machines merge: each client node starts its series at
 * its own run start on its own monotonic clock, which no other machine
 * can compare with.  Used to combine the recorders of one node's scheduler
 * threads and the series decoded from remote client nodes.  GD_ENOMEM
 * leaves dst with some intervals merged: the caller discards it.
 * O(intervals * BENCH_HIST_BUCKETS).
 */
int bench_series_merge(bench_series_t *dst, const bench_series_t *src) GD_MUST_CHECK;

/*
 * Encodes s into a malloc'd buffer (*out, *len; the caller frees it): the
 * series parameters, totals and every interval's histogram in the
 * bench_hist encoding, with a version byte and a CRC-32.  GD_ENOMEM.
 */
int bench_series_encode(const bench_series_t *s, uint8_t **out, size_t *len) GD_MUST_CHECK;

/* Decodes an untrusted bench_series_encode buffer into a new series (the
 * caller frees it).  GD_EINVAL on any malformation, GD_ENOMEM.  O(len +
 * intervals * BENCH_HIST_BUCKETS). */
int bench_series_decode(const uint8_t *in, size_t len, bench_series_t **out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Live figures while a run goes on (the progress line)                      */

/*
 * Each recording thread owns one slot and adds every completion to it as
 * well as to its own series; the thread that draws the progress line asks
 * for the window since its previous call.  Slots are single-writer
 * (relaxed atomic load and store, no read-modify-write, no shared cache
 * line between writers), so recording costs a few nanoseconds and never
 * contends; the reader sums the slots and subtracts what it saw last time.
 */
typedef struct bench_live bench_live_t;

/* Creates a live view with `slots` writer slots (one per recording thread,
 * at most 4096).  The caller frees it with bench_live_free.  GD_EINVAL,
 * GD_ENOMEM. */
int bench_live_new(unsigned slots, bench_live_t **out) GD_MUST_CHECK;

/* Frees l; NULL is a no-op.  No writer or reader may still use it. */
void bench_live_free(bench_live_t *l);

/* Adds one completion to slot `slot` (only ever written by one thread;
 * out-of-range slots are ignored).  O(1), lock-free, wait-free. */
void bench_live_record(bench_live_t *l, unsigned slot, uint64_t latency_ns, bool ok);

/*
 * The completions recorded since the previous call (since creation for the
 * first): their latency histogram (min and max are the bounds of the
 * outermost non-empty buckets), operations and errors.  One reader thread
 * at a time.  A completion being recorded during the call may show in this
 * window or the next, never in both and never in neither.
 * O(slots * BENCH_HIST_BUCKETS).
 */
void bench_live_window(bench_live_t *l, bench_hist_t *window, uint64_t *ops, uint64_t *errors);

/* ------------------------------------------------------------------------ */
/* Results of a run                                                          */

typedef enum bench_kind { BENCH_KIND_GIRDER, BENCH_KIND_OTP } bench_kind_t;

/* One target node's results.  Strings and the series are borrowed: they
 * must outlive every writer call that uses the results. */
typedef struct bench_target {
    const char *node;             /* "name@host" */
    bench_kind_t kind;            /* girder or OTP */
    const char *workload;         /* "echo", "call", "cast", "rpc", ... */
    double duration_s;            /* measured time (after warm-up) */
    uint64_t ops;                 /* completed operations */
    uint64_t errors;              /* failed or wrong replies */
    uint64_t lost;                /* requests never answered */
    uint64_t misordered;          /* replies out of per-pair order */
    const bench_series_t *series; /* latency and per-interval figures, or NULL */
} bench_target_t;

/* The run's parameters as the user gave them (or defaulted). */
typedef struct bench_params {
    const char *workload;
    uint64_t clients;       /* client processes */
    uint32_t client_nodes;  /* girder nodes generating load */
    unsigned schedulers;    /* scheduler threads of the bench's own node; 0: not told */
    unsigned read_batch_us; /* the bench node's read batching (cluster_config_t); 0: none */
    const char *payload;    /* payload shape, e.g. "binary" */
    uint64_t payload_bytes;
    double rate_per_s; /* open-loop arrivals per second; 0 = closed loop */
    double duration_s;
    double warmup_s;
    double interval_s; /* time-series interval */
} bench_params_t;

/* Facts about the machine the report was made on. */
typedef struct bench_machine {
    unsigned cores;
    char cpu_model[128];
    char kernel[128]; /* uname -sr */
    char hostname[128];
    char girder_version[32];
    char started_at[32]; /* UTC, ISO 8601 */
} bench_machine_t;

typedef struct bench_results {
    const char *title;
    bench_params_t params;
    bench_machine_t machine;
    const bench_target_t *targets;
    size_t n_targets;
} bench_results_t;

/*
 * Fills *m from the running machine: online cores, "model name" of
 * /proc/cpuinfo (or "unknown"), uname, hostname, the current UTC time, and
 * the given girder version string (truncated to fit).  Never fails: a fact
 * it cannot read is "unknown".
 */
void bench_machine_detect(bench_machine_t *m, const char *girder_version);

/* A target's derived figures (the "targets" entries of results.json). */
typedef struct bench_figures {
    double ops_per_s;
    double mean_us, p50_us, p90_us, p99_us, p999_us, max_us;
} bench_figures_t;

/* Computes ops/s (ops / duration_s; 0 for a zero duration) and latency
 * percentiles in microseconds from t's series (zeros without one). */
void bench_target_figures(const bench_target_t *t, bench_figures_t *out);

/*
 * Writes r as one JSON document to out: {"targets": [{"node", "kind",
 * "workload", "ops_per_s", "p50_us", "p99_us", "errors", "lost",
 * "misordered", ...,"series": [...]}, ...], "params": {...}, "machine":
 * {...}} (the shape of build/demo/results.json).  Strings are escaped per
 * RFC 8259; non-finite numbers become null.  GD_ENOMEM, GD_EINVAL for a
 * write error (errno kept).
 */
int bench_results_write_json(const bench_results_t *r, FILE *out) GD_MUST_CHECK;

/* True when out is a terminal and NO_COLOR is unset (colours and \r lines
 * are for people, not for logs and pipes). */
bool bench_is_tty(FILE *out);

/* Writes the aligned summary table (one row per target); with color, lost
 * and misordered counts above zero are red and a failed run's row says so.
 * GD_EINVAL for a write error. */
int bench_results_write_table(const bench_results_t *r, FILE *out, bool color) GD_MUST_CHECK;

/* The live progress line. */
typedef struct bench_progress {
    FILE *out;
    bool tty;   /* \r-updated single line, else one line per update */
    bool dirty; /* a tty line is open (bench_progress_end ends it) */
} bench_progress_t;

/* Starts a progress display on out (tty decided by bench_is_tty). */
void bench_progress_init(bench_progress_t *p, FILE *out);

/* Shows elapsed time, ops/s, p50/p99 (µs) and errors: on a tty it rewrites
 * the current line, else it prints one line (the caller calls this once per
 * interval). */
void bench_progress_update(bench_progress_t *p, double elapsed_s, double ops_per_s, double p50_us,
                           double p99_us, uint64_t errors);

/* Ends an open tty progress line with a newline. */
void bench_progress_end(bench_progress_t *p);

/*
 * Writes the HTML report: one self-contained file (inline CSS and SVG, no
 * script, no network) with, for all targets, throughput over time, latency
 * percentiles (p50/p99/max) over time per target, the latency distribution
 * (percentile spectrum) per target, the summary table, the run's parameters
 * and machine facts.  GD_ENOMEM, GD_EINVAL for a write error.  O(targets *
 * intervals * BENCH_HIST_BUCKETS).
 */
int bench_results_write_html(const bench_results_t *r, FILE *out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Metrics (Prometheus text format)                                          */

#define BENCH_METRIC_MAX_LABELS 8
#define BENCH_METRIC_MAX_BUCKETS 32

typedef enum bench_metric_type {
    BENCH_METRIC_COUNTER,
    BENCH_METRIC_GAUGE,
    BENCH_METRIC_HISTOGRAM,
} bench_metric_type_t;

typedef struct bench_metrics bench_metrics_t;
typedef struct bench_metric bench_metric_t;
typedef struct bench_metrics_emit bench_metrics_emit_t;

/* One label: both strings are copied by the call that takes them. */
typedef struct bench_label {
    const char *name;
    const char *value;
} bench_label_t;

/* Creates an empty registry (the caller frees it with bench_metrics_free,
 * after stopping any server using it).  GD_ENOMEM. */
int bench_metrics_new(bench_metrics_t **out) GD_MUST_CHECK;

/* Frees the registry and every metric handle it gave out; NULL is a no-op. */
void bench_metrics_free(bench_metrics_t *reg);

/*
 * Registers one series of a metric family: name and label names must be
 * valid Prometheus identifiers (label names not starting "__", "le" not on
 * a histogram), help any text; a family's type and help must agree across
 * its series, and one label set may appear once.  For a histogram, bounds
 * are the n_bounds ascending finite upper bounds (le); +Inf is implicit.
 * The returned handle lives as long as the registry; updates through it
 * are lock-free and safe from any thread.  GD_EINVAL, GD_EDUPLICATE_KEY,
 * GD_ENOMEM.
 */
int bench_metrics_register(bench_metrics_t *reg, bench_metric_type_t type, const char *name,
                           const char *help, const bench_label_t *labels, size_t n_labels,
                           const double *bounds, size_t n_bounds,
                           bench_metric_t **out) GD_MUST_CHECK;

/* Counter: adds n (relaxed atomics; a scrape may see any recent value). */
void bench_metric_add(bench_metric_t *m, uint64_t n);
/* Gauge: sets the value. */
void bench_metric_set(bench_metric_t *m, double v);
/* Histogram: records one observation. */
void bench_metric_observe(bench_metric_t *m, double v);

/* Histogram: replaces every bucket (counts[n_bounds + 1], per bucket, not
 * cumulative, the last for +Inf) and the sum, to mirror a histogram kept
 * elsewhere (the collector's pauses kept per thread by heap/).  Call it
 * from a collector so a scrape sees one consistent copy.  GD_EINVAL (and
 * nothing changed) for a metric that is not a histogram, a wrong n_counts
 * or a NaN sum: mistakes of the caller, not of the data. */
int bench_metric_hist_set(bench_metric_t *m, const uint64_t *counts, size_t n_counts, double sum);

/*
 * A collector computes values at scrape time (scheduler statistics,
 * process counts): it calls bench_metrics_emit for each sample.  Collectors
 * run on the scraping thread with the registry locked, before the
 * registered metrics are rendered (so they may update those); they must
 * not register metrics.
 */
typedef void (*bench_collector_fn)(bench_metrics_emit_t *e, void *ctx);
int bench_metrics_add_collector(bench_metrics_t *reg, bench_collector_fn fn,
                                void *ctx) GD_MUST_CHECK;

/* Emits one counter or gauge sample from a collector (name and labels are
 * validated; an invalid sample is skipped and counted in the exposition's
 * girder_metrics_collector_errors_total). */
void bench_metrics_emit(bench_metrics_emit_t *e, bench_metric_type_t type, const char *name,
                        const char *help, const bench_label_t *labels, size_t n_labels, double v);

/* Registers the collector of sched/ figures that exist today: processes
 * alive, scheduler threads, steals, stuck marks, extra schedulers started. */
int bench_metrics_add_sched(bench_metrics_t *reg) GD_MUST_CHECK;

/*
 * Renders every metric and collector sample in the Prometheus text
 * exposition format 0.0.4 into a malloc'd, NUL-terminated string (*out,
 * *len; the caller frees it).  Families are grouped under one HELP and TYPE
 * line each.  GD_ENOMEM.
 */
int bench_metrics_render(bench_metrics_t *reg, char **out, size_t *len) GD_MUST_CHECK;

/* Parses "[HOST]:PORT" (as in --metrics :9100 or 127.0.0.1:9100; an empty
 * host means every address) into host (NUL-terminated, cap bytes) and
 * port.  GD_EINVAL. */
int bench_metrics_parse_addr(const char *spec, char *host, size_t cap,
                             uint16_t *port) GD_MUST_CHECK;

struct event_base;
typedef struct bench_metrics_http bench_metrics_http_t;

/*
 * Serves GET /metrics (and /) from reg over HTTP on base with libevent's
 * evhttp, bound to host ("" or NULL: 0.0.0.0) and port (0: an ephemeral
 * port, reported in *bound_port).  Other paths get 404, other methods 405
 * (501 from evhttp for methods it does not know); malformed requests are
 * answered 400 or closed by evhttp; headers are capped at 8 KiB and bodies
 * at 0 (413).  The caller frees *out with
 * bench_metrics_http_stop on the loop's thread (or after the loop ended).
 * GD_EINVAL (bad host, port in use), GD_ENOMEM.
 */
int bench_metrics_http_start(struct event_base *base, bench_metrics_t *reg, const char *host,
                             uint16_t port, bench_metrics_http_t **out,
                             uint16_t *bound_port) GD_MUST_CHECK;

/* Closes the listener and every open scrape connection and frees srv (on
 * the loop's thread, or after the loop ended); NULL is a no-op. */
void bench_metrics_http_stop(bench_metrics_http_t *srv);

#endif /* GIRDER_BENCH_H */
