/*
 * bench_node.c — girder's side of the gen_server call benchmark (run.sh,
 * next to BEAM's beam_node.erl with the same workloads and result names).
 *
 *   bench_node [-s SCALE_DIVISOR]
 *
 * gen_call      1 coroutine caller, K = 200,000 sequential girder_calls
 *               ({'$gen_call', ...} under a monitor with an alias, the
 *               reply) to a counter gen_server; every 8th call timed:
 *               gen_call_rate (calls/s), gen_call_rtt_p50/p99 (us).
 * gen_call_100  100 callers x 2,000 calls to one server: gen_call_100_rate.
 * 5 repetitions each; the median is the value, the repetitions the samples.
 * JSON lines on stdout ("impl":"girder"), progress on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "girder.h"

#define REPS 5

/* ---- the server: a counter ---- */

static int c_init(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret)
{
    *state = term_make_small(0);
    return GD_OK;
}

static int c_call(sched_ctx_t *ctx, term_t req, term_t from, term_t *state, girder_ret_t *ret)
{
    *state = term_make_small(term_small_value(*state) + 1);
    ret->action = GIRDER_REPLY;
    ret->reply = *state;
    return GD_OK;
}

static const girder_gen_server_t counter = {c_init, c_call, NULL, NULL, NULL, NULL};

/* ---- callers ---- */

static double *rtt_us; /* caller 0's sampled round trips */
static size_t rtt_n;
static term_t atom_inc;

/* arg {Server, Calls, Sample}: Calls sequential calls; with Sample true
 * every 8th is timed into rtt_us. */
static int caller(sched_ctx_t *ctx, term_t arg)
{
    term_t server = term_tuple_elems(arg)[0];
    int64_t calls = term_small_value(term_tuple_elems(arg)[1]);
    bool sample = term_tuple_elems(arg)[2] == ATOM_TRUE;
    for (int64_t i = 0; i < calls; i++) {
        uint64_t t0 = sample && i % 8 == 0 ? bench_now_ns() : 0;
        term_t reply;
        /* server is a local pid: an immediate, nothing to root. */
        int rc = girder_call(ctx, server, atom_inc, -1, &reply);
        if (rc != GD_OK)
            return rc;
        if (t0 != 0)
            rtt_us[rtt_n++] = (double)(bench_now_ns() - t0) / 1000.0;
    }
    return GD_OK;
}

/* One repetition: `callers` callers of `calls` each; returns calls/s. */
static double run_calls(int callers, int64_t calls, bool sample)
{
    term_t server, *pids = malloc((size_t)callers * sizeof *pids);
    heap_t h;
    if (pids == NULL || heap_init(&h, 0) != GD_OK ||
        girder_gen_start(NULL, &counter, TERM_NIL, NULL, &server) != GD_OK)
        abort();
    rtt_n = 0;
    uint64_t t0 = bench_now_ns();
    for (int c = 0; c < callers; c++) {
        term_t *e, arg;
        if (heap_make_tuple(&h, 3, &e, &arg) != GD_OK)
            abort();
        e[0] = server;
        e[1] = term_make_small(calls);
        e[2] = sample && c == 0 ? ATOM_TRUE : ATOM_FALSE;
        if (sched_spawn_coro(NULL, caller, arg, &pids[c]) != GD_OK)
            abort();
    }
    if (sched_wait_exit(pids, (size_t)callers, 600000) != GD_OK)
        abort();
    double rate = (double)callers * (double)calls / ((double)(bench_now_ns() - t0) / 1e9);
    if (girder_gen_stop(NULL, server, ATOM_NORMAL, 5000) != GD_OK)
        abort();
    heap_destroy(&h);
    free(pids);
    return rate;
}

int main(int argc, char **argv)
{
    int div = 1, opt;
    while ((opt = getopt(argc, argv, "s:")) != -1)
        div = opt == 's' ? atoi(optarg) : 1;
    if (div < 1)
        div = 1;
    sched_opts_t so = {0};
    if (sched_start(&so) != GD_OK)
        return 1;
    atom_inc = bench_atom("inc");
    int64_t k = 200000 / div, k100 = 2000 / div;
    rtt_us = malloc((size_t)(k / 8 + 1) * sizeof *rtt_us);
    if (rtt_us == NULL)
        return 1;
    double rate[REPS], p50[REPS], p99[REPS], rate100[REPS];
    for (int r = 0; r < REPS; r++) {
        rate[r] = run_calls(1, k, true);
        p50[r] = bench_pct(rtt_us, rtt_n, 50);
        p99[r] = bench_pct(rtt_us, rtt_n, 99);
        rate100[r] = run_calls(100, k100, false);
        fprintf(stderr,
                "gen_call: %.0f calls/s p50 %.2f us p99 %.2f us; 100 callers %.0f calls/s\n",
                rate[r], p50[r], p99[r], rate100[r]);
    }
    char params[64];
    snprintf(params, sizeof params, "\"calls\":%lld", (long long)k);
    bench_emit("gen_call_rate", params, rate, REPS, "calls/s");
    bench_emit("gen_call_rtt_p50", params, p50, REPS, "us");
    bench_emit("gen_call_rtt_p99", params, p99, REPS, "us");
    snprintf(params, sizeof params, "\"callers\":100,\"calls\":%lld", (long long)k100);
    bench_emit("gen_call_100_rate", params, rate100, REPS, "calls/s");
    free(rtt_us);
    sched_stop();
    return 0;
}
