/*
 * run.c — one target's run: the coordinator process finds out what the
 * target is (girder answers rpc girder:info/0, OTP does not), starts the
 * shares (here, or on client nodes through girder_bench:start/1), prints
 * the progress they report each interval, and merges their series.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "internal.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool tagged(term_t t, size_t n, const char *tag)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n && term_tuple_elems(t)[0] == heap_atom(tag);
}

/* ---- the parameters as a term (girder_bench:start/1's argument) ---- */

enum {
    PT_TAG,
    PT_VERSION,
    PT_WORKLOAD,
    PT_CLIENTS,
    PT_RATE_MILLI,
    PT_DURATION,
    PT_WARMUP,
    PT_INTERVAL,
    PT_SHAPE,
    PT_SIZE,
    PT_TARGET,
    PT_SERVER,
    PT_M,
    PT_F,
    PT_ARITY,
    PT_SHARE_CLIENTS,
    PT_SHARE_INDEX,
    PT_COORD,
    PT_COUNT
};
#define LG_PARAMS_VERSION 1

int lg_params_term(heap_t *h, const lg_params_t *p, uint64_t clients, uint32_t share_index,
                   term_t coordinator, term_t *out)
{
    term_t *e;
    int rc = heap_make_tuple(h, PT_COUNT, &e, out);
    if (rc != 0)
        return rc;
    e[PT_TAG] = heap_atom("girder_bench");
    e[PT_VERSION] = term_make_small(LG_PARAMS_VERSION);
    e[PT_WORKLOAD] = heap_atom(p->workload->name);
    e[PT_CLIENTS] = term_make_small((int64_t)p->clients);
    e[PT_RATE_MILLI] = term_make_small((int64_t)(p->rate_per_s * 1000));
    e[PT_DURATION] = term_make_small((int64_t)p->duration_ms);
    e[PT_WARMUP] = term_make_small((int64_t)p->warmup_ms);
    e[PT_INTERVAL] = term_make_small((int64_t)p->interval_ms);
    e[PT_SHAPE] = term_make_small(p->payload_shape);
    e[PT_SIZE] = term_make_small((int64_t)p->payload_size);
    e[PT_TARGET] = p->target;
    e[PT_SERVER] = p->server;
    e[PT_M] = p->mfa_m;
    e[PT_F] = p->mfa_f;
    e[PT_ARITY] = term_make_small(p->mfa_arity);
    e[PT_SHARE_CLIENTS] = term_make_small((int64_t)clients);
    e[PT_SHARE_INDEX] = term_make_small(share_index);
    e[PT_COORD] = coordinator;
    return 0;
}

/* A small integer element within [lo, hi]. */
static bool num_in(const term_t *e, int i, int64_t lo, int64_t hi, int64_t *out)
{
    if (!term_is_small(e[i]) || term_small_value(e[i]) < lo || term_small_value(e[i]) > hi)
        return false;
    *out = term_small_value(e[i]);
    return true;
}

/* girder_bench:start(Params): a coordinator on another node asks this one
 * to run a share.  Params comes over the network: every field is checked. */
static int rpc_start(heap_t *h, term_t args, term_t *result)
{
    (void)h;
    if (!term_is_list(args) || !term_is_nil(term_cdr(args)))
        return GD_EBADARG;
    term_t t = term_car(args);
    if (!tagged(t, PT_COUNT, "girder_bench"))
        return GD_EBADARG;
    const term_t *e = term_tuple_elems(t);
    lg_params_t p = {0};
    int64_t v, rate, dur, warm, ivl, shape, size, arity, share_clients, index;
    size_t len;
    char name[16];
    const char *w = term_is_atom(e[PT_WORKLOAD]) ? heap_atom_text(e[PT_WORKLOAD], &len) : NULL;
    if (w == NULL || len >= sizeof name)
        return GD_EBADARG;
    memcpy(name, w, len);
    name[len] = '\0';
    int64_t day_ms = 24 * 3600 * 1000;
    if (!num_in(e, PT_VERSION, LG_PARAMS_VERSION, LG_PARAMS_VERSION, &v) ||
        (p.workload = lg_workload_find(name)) == NULL ||
        !num_in(e, PT_CLIENTS, 1, LG_CLIENTS_MAX, &v) ||
        !num_in(e, PT_RATE_MILLI, 0, (int64_t)1 << 50, &rate) ||
        !num_in(e, PT_DURATION, 1, day_ms, &dur) || !num_in(e, PT_WARMUP, 0, day_ms, &warm) ||
        !num_in(e, PT_INTERVAL, 1, day_ms, &ivl) ||
        !num_in(e, PT_SHAPE, LG_PAYLOAD_BINARY, LG_PAYLOAD_INT, &shape) ||
        !num_in(e, PT_SIZE, 0, LG_PAYLOAD_MAX, &size) || !term_is_atom(e[PT_TARGET]) ||
        !term_is_atom(e[PT_SERVER]) || !term_is_atom(e[PT_M]) || !term_is_atom(e[PT_F]) ||
        !num_in(e, PT_ARITY, 0, 1, &arity) ||
        !num_in(e, PT_SHARE_CLIENTS, 1, LG_CLIENTS_MAX, &share_clients) ||
        !num_in(e, PT_SHARE_INDEX, 0, 1 << 20, &index) || !term_is_pid(e[PT_COORD]))
        return GD_EBADARG;
    p.clients = (uint64_t)v;
    p.rate_per_s = (double)rate / 1000;
    p.duration_ms = (uint64_t)dur;
    p.warmup_ms = (uint64_t)warm;
    p.interval_ms = (uint64_t)ivl;
    p.payload_shape = (enum lg_payload_shape)shape;
    p.payload_size = (uint64_t)size;
    if (p.payload_shape != LG_PAYLOAD_BINARY && p.payload_size > 1000000)
        return GD_EBADARG;
    p.target = e[PT_TARGET];
    p.server = e[PT_SERVER];
    p.mfa_m = e[PT_M];
    p.mfa_f = e[PT_F];
    p.mfa_arity = (unsigned)arity;
    int rc = lg_share_start(NULL, &p, (uint64_t)share_clients, (uint32_t)index, e[PT_COORD]);
    *result = rc == 0 ? heap_atom("ok") : heap_atom("error");
    return 0;
}

int lg_register_rpc(void)
{
    return cluster_rpc_register("girder_bench", "start", 1, rpc_start);
}

/* ---- the coordinator ---- */

typedef struct coord_job {
    lg_params_t *p;
    lg_target_run_t *t;
    bench_progress_t progress;
    bench_hist_t *window, *scratch; /* malloc'd: 30 KiB each */
    uint64_t window_ops, errors_total;
    uint64_t progress_msgs; /* progress reports received */
    uint64_t last_print_ns;
    bool mfa_given;
} coord_job_t;

/* An atom's text in buf (atom texts are not NUL-terminated). */
typedef struct atom_buf {
    char s[256];
} atom_buf_t;
static const char *atom_text(term_t a, atom_buf_t *buf)
{
    size_t len = 0;
    const char *t = term_is_atom(a) ? heap_atom_text(a, &len) : "?";
    snprintf(buf->s, sizeof buf->s, "%.*s", (int)(len ? len : 1), t);
    return buf->s;
}

/* girder or OTP: only girder nodes answer girder:info/0 with a map.  The
 * workload's server is then looked up with erlang:whereis/1 (both kinds
 * serve it), so a run that could only lose every request is refused up
 * front.  (A monitor's noproc DOWN raced the rpc reply on a girder target:
 * its controller and rex are two processes there.) */
static uint64_t connect_timeout(const lg_params_t *p)
{
    return p->connect_timeout_ms ? p->connect_timeout_ms : LG_TIMEOUT_DEFAULT_MS;
}

static int detect_kind(sched_ctx_t *ctx, coord_job_t *j)
{
    term_t info = TERM_NIL, where, args;
    char err[600];
    if (sched_root_push(ctx, &info) != 0) {
        snprintf(j->t->error, sizeof j->t->error, "out of memory");
        return -1;
    }
    int64_t wait_ms = (int64_t)connect_timeout(j->p);
    int rc = lg_rpc(ctx, j->p->target, heap_atom("girder"), heap_atom("info"), TERM_NIL, wait_ms,
                    &info, err, sizeof err);
    /* args after the first call: a collection there would move it. */
    if (rc == 0 && heap_cons(sched_heap(ctx), j->p->server, TERM_NIL, &args) != 0) {
        snprintf(err, sizeof err, "out of memory");
        rc = -1;
    }
    if (rc == 0)
        rc = lg_rpc(ctx, j->p->target, heap_atom("erlang"), heap_atom("whereis"), args, wait_ms,
                    &where, err, sizeof err);
    if (rc == 0 && !term_is_pid(where)) {
        snprintf(err, sizeof err, "no process is registered as %s on %s (--server)",
                 atom_text(j->p->server, &(atom_buf_t){0}), j->t->node);
        rc = -1;
    }
    sched_root_pop(ctx, 1);
    if (rc != 0) {
        snprintf(j->t->error, sizeof j->t->error, "%s", err);
        return -1;
    }
    j->t->result.kind = term_is_map(info) ? BENCH_KIND_GIRDER : BENCH_KIND_OTP;
    /* rpc's default call; the other workloads never use it, but every
     * field must be a term for girder_bench:start/1. */
    if (!j->mfa_given) {
        bool girder = j->t->result.kind == BENCH_KIND_GIRDER;
        j->p->mfa_m = heap_atom(girder ? "girder" : "erlang");
        j->p->mfa_f = heap_atom(girder ? "echo" : "node");
        j->p->mfa_arity = girder ? 1 : 0;
    }
    return 0;
}

/* Starts share k of n on this node or on client node k; 1 when it holds
 * clients, 0 when it has none. */
static int start_share(sched_ctx_t *ctx, coord_job_t *j, size_t k, size_t n)
{
    uint64_t clients = j->p->clients / n + (k < j->p->clients % n ? 1 : 0);
    if (clients == 0)
        return 0;
    if (j->t->n_client_nodes == 0) {
        int rc = lg_share_start(ctx, j->p, clients, (uint32_t)k, sched_self(ctx));
        if (rc != 0)
            snprintf(j->t->error, sizeof j->t->error, "could not start %llu clients: %s",
                     (unsigned long long)clients, dist_strerror(rc));
        return rc == 0 ? 1 : -1;
    }
    const char *cn = j->t->client_nodes[k];
    term_t params, args, res, mref, *e, rex;
    heap_t *h = sched_heap(ctx);
    char err[256];
    /* The connection first, within -timeout (net_adm:ping's request):
     * starting the share may then take its time. */
    term_t req, server, pong;
    if (heap_make_tuple(h, 2, &e, &req) != 0)
        return -1;
    e[0] = heap_atom("is_auth");
    e[1] = heap_node_name();
    if (heap_make_tuple(h, 2, &e, &server) != 0)
        return -1;
    e[0] = heap_atom("net_kernel");
    e[1] = heap_atom(cn);
    if (lg_call(ctx, server, req, (int64_t)connect_timeout(j->p), &pong, err, sizeof err) != 0) {
        snprintf(j->t->error, sizeof j->t->error, "client node %s: %s", cn, err);
        return -1;
    }
    if (lg_params_term(h, j->p, clients, (uint32_t)k, sched_self(ctx), &params) != 0 ||
        heap_cons(h, params, TERM_NIL, &args) != 0)
        return -1;
    if (lg_rpc(ctx, heap_atom(cn), heap_atom("girder_bench"), heap_atom("start"), args, 10000, &res,
               err, sizeof err) != 0) {
        snprintf(j->t->error, sizeof j->t->error, "client node %s: %s", cn, err);
        return -1;
    }
    if (res != heap_atom("ok")) {
        snprintf(j->t->error, sizeof j->t->error,
                 "client node %s could not start its share (is it a girder node?)", cn);
        return -1;
    }
    /* Its going down ends the wait at once (a DOWN names it). */
    if (heap_make_tuple(h, 2, &e, &rex) != 0)
        return -1;
    e[0] = heap_atom("rex");
    e[1] = heap_atom(cn);
    return sched_monitor(ctx, rex, &mref) == 0 ? 1 : -1;
}

/* Prints the window once every share has reported it (shares keep their
 * own interval clocks: a line per interval of the coordinator's would
 * show half-filled windows). */
static void show_progress(coord_job_t *j, uint64_t start)
{
    uint64_t now = now_ns();
    double secs = (double)(now - j->last_print_ns) / 1e9;
    j->last_print_ns = now;
    if (j->t->quiet || secs <= 0)
        return;
    bench_progress_update(&j->progress, (double)(now - start) / 1e9, (double)j->window_ops / secs,
                          (double)bench_hist_quantile(j->window, 0.5) / 1e3,
                          (double)bench_hist_quantile(j->window, 0.99) / 1e3, j->errors_total);
    bench_hist_reset(j->window);
    j->window_ops = 0;
}

static const uint8_t *bin_bytes(term_t t, size_t *len)
{
    heap_bin_view_t v;
    if (!term_is_binary(t))
        return NULL;
    heap_bin_view(t, &v);
    if (v.bit_offset != 0)
        return NULL;
    *len = v.bit_size / 8;
    return v.bytes;
}

/* One message from a share: 1 when the share is done, 0 to go on, -1 on
 * failure (j->t->error set). */
static int on_message(coord_job_t *j, term_t msg)
{
    lg_target_run_t *t = j->t;
    size_t len;
    const uint8_t *b;
    if (tagged(msg, 5, "girder_bench_progress")) {
        const term_t *e = term_tuple_elems(msg);
        if ((b = bin_bytes(e[4], &len)) != NULL && bench_hist_decode(b, len, j->scratch) == 0 &&
            term_is_small(e[2]) && term_is_small(e[3])) {
            bench_hist_merge(j->window, j->scratch);
            j->window_ops += (uint64_t)term_small_value(e[2]);
            j->errors_total += (uint64_t)term_small_value(e[3]);
        }
        j->progress_msgs++;
        return 0;
    }
    if (tagged(msg, 5, "girder_bench_done")) {
        const term_t *e = term_tuple_elems(msg);
        bench_series_t *s = NULL;
        if ((b = bin_bytes(e[2], &len)) == NULL || bench_series_decode(b, len, &s) != 0 ||
            !term_is_small(e[3]) || !term_is_small(e[4])) {
            snprintf(t->error, sizeof t->error, "a share sent a malformed report");
            return -1;
        }
        t->result.lost += (uint64_t)term_small_value(e[3]);
        t->result.misordered += (uint64_t)term_small_value(e[4]);
        if (t->series == NULL) {
            t->series = s;
            return 1;
        }
        int rc = bench_series_merge(t->series, s);
        bench_series_free(s);
        if (rc != 0) {
            snprintf(t->error, sizeof t->error, "merging the shares' series: %s",
                     dist_strerror(rc));
            return -1;
        }
        return 1;
    }
    if (tagged(msg, 5, "girder_bench_failed")) {
        snprintf(t->error, sizeof t->error, "a share failed: %s",
                 atom_text(term_tuple_elems(msg)[2], &(atom_buf_t){0}));
        return -1;
    }
    if (tagged(msg, 5, "DOWN")) {
        const term_t *e = term_tuple_elems(msg);
        const char *who = term_is_tuple(e[3]) && term_tuple_arity(e[3]) == 2
                              ? atom_text(term_tuple_elems(e[3])[1], &(atom_buf_t){0})
                              : "a client node";
        snprintf(t->error, sizeof t->error, "client node %s went down (%s)", who,
                 atom_text(e[4], &(atom_buf_t){0}));
        return -1;
    }
    return 0;
}

static int coord_main(sched_ctx_t *ctx, term_t arg)
{
    coord_job_t *j = lg_term_ptr(arg);
    lg_params_t *p = j->p;
    p->target = heap_atom(j->t->node);
    if (detect_kind(ctx, j) != 0)
        return 0;
    size_t n = j->t->n_client_nodes ? j->t->n_client_nodes : 1, started = 0, done = 0;
    uint64_t start = now_ns();
    for (size_t k = 0; k < n; k++) {
        int rc = start_share(ctx, j, k, n);
        if (rc < 0)
            return 0; /* shares already started finish on their own */
        started += (size_t)rc;
    }
    j->last_print_ns = start;
    uint64_t deadline =
        start + (p->warmup_ms + p->duration_ms + LG_GRACE_MAX_MS + lg_report_slack_ms(p->clients)) *
                    1000000;
    while (done < started) {
        uint64_t now = now_ns();
        if (now >= deadline) {
            snprintf(j->t->error, sizeof j->t->error,
                     "%zu of %zu shares did not report within %d s of the run's end",
                     started - done, started,
                     (int)((LG_GRACE_MAX_MS + lg_report_slack_ms(p->clients)) / 1000));
            return 0;
        }
        term_t msg;
        int rc = sched_receive_wait(ctx, NULL, NULL, (int64_t)((deadline - now + 999999) / 1000000),
                                    &msg);
        if (rc == SCHED_ETIMEOUT)
            continue;
        if (rc != 0) {
            snprintf(j->t->error, sizeof j->t->error, "%s", dist_strerror(rc));
            return 0;
        }
        rc = on_message(j, msg);
        if (rc < 0)
            return 0;
        done += (size_t)rc;
        if (rc == 0 && started > 0 && j->progress_msgs % started == 0)
            show_progress(j, start);
    }
    if (!j->t->quiet)
        bench_progress_end(&j->progress);
    return 0;
}

int lg_run_target(lg_params_t *p, lg_target_run_t *t)
{
    coord_job_t j = {.p = p, .t = t, .mfa_given = p->mfa_m != TERM_NONE};
    t->error[0] = '\0';
    t->series = NULL;
    t->result = (bench_target_t){.node = t->node, .workload = p->workload->name};
    j.window = malloc(sizeof *j.window);
    j.scratch = malloc(sizeof *j.scratch);
    if (j.window == NULL || j.scratch == NULL) {
        free(j.window);
        free(j.scratch);
        snprintf(t->error, sizeof t->error, "out of memory");
        return -1;
    }
    bench_hist_reset(j.window);
    bench_progress_init(&j.progress, stdout);
    uint64_t limit =
        p->warmup_ms + p->duration_ms + LG_GRACE_MAX_MS + lg_report_slack_ms(p->clients) + 30000;
    int rc = lg_run_process(coord_main, &j, limit);
    free(j.window);
    free(j.scratch);
    if (rc != 0 && t->error[0] == '\0')
        snprintf(t->error, sizeof t->error, "the run did not finish in time");
    if (t->error[0] == '\0' && t->series == NULL)
        snprintf(t->error, sizeof t->error, "no share reported");
    if (t->error[0] != '\0')
        return -1;
    const bench_hist_t *all = bench_series_total(t->series);
    t->result.ops = all->count;
    t->result.errors = bench_series_errors(t->series);
    t->result.duration_s = (double)p->duration_ms / 1000;
    t->result.series = t->series;
    return 0;
}

void lg_target_run_free(lg_target_run_t *t)
{
    bench_series_free(t->series);
    t->series = NULL;
}
