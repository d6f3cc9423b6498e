/*
 * bench_dist.c — girder's side of the distribution benchmark (run.sh, next
 * to beam_dist.erl: the same workloads, the same result names).
 *
 *   bench_dist peer  NAME COOKIE        a peer node: registers
 *                                       bench_dist_spawner, runs until SIGTERM
 *   bench_dist drive NAME COOKIE PEER   the driver: measures against PEER
 *
 * The peer answers {spawn, ponger, From} and {spawn, counter, From, N}
 * with {spawned, Pid}, as beam_dist:spawner/0 does, so either driver
 * (girder's or Erlang's) runs against either peer.  The driver's
 * workloads (3 repetitions each, the median is the value):
 *   dist_pingpong_rate/_rtt_p50/_rtt_p99   1 pair, K = 10,000 round trips
 *   dist_pingpong_100_*                    100 pairs, K = 500 each
 *       ({Pid, ping} -> pong; every round trip timed)
 *   dist_oneway_small (msgs/s)  200,000 {msg, I} to one remote counter
 *   dist_oneway_1mib (MiB/s)    1000 {bin, I, Bin}, Bin a 1 MiB binary
 *   dist_rpc_call (calls/s)     10,000 sequential calls of erlang:node/0
 *       through the peer's rex ({'$gen_call', From, {call, erlang, node,
 *       [], user}}: rpc's gen_server form)
 *   dist_erpc_call (calls/s)    10,000 sequential erpc:call(Peer, erlang,
 *       node, []) (girder_erpc_call: spawn_request + the DOWN)
 * JSON lines on stdout ("impl":"girder"), progress on stderr.  EPMD:
 * ERL_EPMD_PORT (run.sh starts a private one).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "girder.h"

#define REPS 3

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static term_t atom(const char *s)
{
    term_t a;
    if (heap_atom_put(s, strlen(s), &a) != GD_OK)
        abort();
    return a;
}

static term_t tuple(sched_ctx_t *ctx, size_t n, const term_t *items)
{
    term_t *e, t;
    if (heap_make_tuple(sched_heap(ctx), n, &e, &t) != GD_OK)
        return TERM_NONE;
    memcpy(e, items, n * sizeof *e);
    return t;
}

static size_t arity(term_t t)
{
    return term_is_tuple(t) ? term_tuple_arity(t) : 0;
}

/* ---- the peer ---- */

static int keep_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    *state = arg;
    return GD_OK;
}

/* {From, ping} -> From ! pong; stop -> exit. */
static int ponger_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    if (msg == atom("stop"))
        return sched_exit(ctx, atom("normal"));
    if (arity(msg) != 2)
        return GD_OK;
    return sched_send(ctx, term_tuple_elems(msg)[0], atom("pong"));
}

static const sched_behaviour_t ponger_beh = {keep_init, ponger_handle, NULL, NULL};

/* State {Parent, Left}: answers the first {From, ping}, then counts
 * {msg, _} and {bin, _, _} and tells Parent {counted, self()} at 0. */
static int counter_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    if (arity(msg) == 2 && term_is_pid(term_tuple_elems(msg)[0]))
        return sched_send(ctx, term_tuple_elems(msg)[0], atom("pong"));
    int64_t left = term_small_value(st[1]) - 1;
    st[1] = term_make_small(left);
    if (left > 0)
        return GD_OK;
    term_t items[2] = {atom("counted"), sched_self(ctx)};
    term_t done = tuple(ctx, 2, items);
    if (done == TERM_NONE)
        return GD_ENOMEM;
    int rc = sched_send(ctx, st[0], done);
    return rc < 0 ? rc : sched_exit(ctx, atom("normal"));
}

static const sched_behaviour_t counter_beh = {keep_init, counter_handle, NULL, NULL};

static int spawner_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    (void)state;
    return sched_register(ctx, atom("bench_dist_spawner"));
}

static int spawner_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    size_t n = arity(msg);
    if (n < 3 || term_tuple_elems(msg)[0] != atom("spawn"))
        return GD_OK;
    const term_t *e = term_tuple_elems(msg);
    term_t pid;
    int rc;
    if (e[1] == atom("ponger")) {
        rc = sched_spawn(ctx, &ponger_beh, TERM_NIL, &pid);
    } else if (e[1] == atom("counter") && n == 4) {
        term_t st = tuple(ctx, 2, (term_t[]){e[2], e[3]});
        if (st == TERM_NONE)
            return GD_ENOMEM;
        rc = sched_spawn(ctx, &counter_beh, st, &pid);
    } else {
        return GD_OK;
    }
    if (rc < 0)
        return rc;
    e = term_tuple_elems(msg);
    term_t reply = tuple(ctx, 2, (term_t[]){atom("spawned"), pid});
    return reply == TERM_NONE ? GD_ENOMEM : sched_send(ctx, e[2], reply);
}

static const sched_behaviour_t spawner_beh = {spawner_init, spawner_handle, NULL, NULL};

/* ---- the driver ---- */

enum { PP1, PP100 };
static struct results {
    double pp_rate[2][REPS], pp_p50[2][REPS], pp_p99[2][REPS];
    double small[REPS], mib[REPS], rpc[REPS], erpc[REPS];
    bool ok;
} res;

static uint64_t *rtts; /* pairs x k round-trip times of the running pingpong */
static size_t rtt_k;

static bool pred_is(term_t msg, void *arg)
{
    return msg == (term_t)(uintptr_t)arg;
}

static bool pred_tag(term_t msg, void *arg)
{
    return arity(msg) >= 2 && term_tuple_elems(msg)[0] == (term_t)(uintptr_t)arg;
}

#define TAG(name) ((void *)(uintptr_t)atom(name))

/* Asks the peer's spawner for a process: *pid_out on the caller's heap
 * (valid until the next preemption point: the caller roots it). */
static int remote_spawn(sched_ctx_t *ctx, term_t peer, int64_t counter_n, int64_t timeout_ms,
                        term_t *pid_out)
{
    term_t req = counter_n < 0
                     ? tuple(ctx, 3, (term_t[]){atom("spawn"), atom("ponger"), sched_self(ctx)})
                     : tuple(ctx, 4,
                             (term_t[]){atom("spawn"), atom("counter"), sched_self(ctx),
                                        term_make_small(counter_n)});
    term_t to = tuple(ctx, 2, (term_t[]){atom("bench_dist_spawner"), peer});
    if (req == TERM_NONE || to == TERM_NONE)
        return GD_ENOMEM;
    int rc = sched_send(ctx, to, req);
    term_t reply;
    if (rc == 0)
        rc = sched_receive_wait(ctx, pred_tag, TAG("spawned"), timeout_ms, &reply);
    if (rc == 0)
        *pid_out = term_tuple_elems(reply)[1];
    return rc;
}

/* Pinger: arg {Parent, Pong, K, Index}; waits for go, then K timed round
 * trips; tells Parent done. */
static int pinger(sched_ctx_t *ctx, term_t arg)
{
    if (sched_root_push(ctx, &arg) != GD_OK)
        return GD_ENOMEM;
    term_t msg;
    int rc = sched_receive_wait(ctx, pred_is, TAG("go"), -1, &msg);
    int64_t k = term_small_value(term_tuple_elems(arg)[2]);
    uint64_t *out = rtts + (size_t)term_small_value(term_tuple_elems(arg)[3]) * rtt_k;
    for (int64_t i = 0; i < k && rc == 0; i++) {
        uint64_t t0 = now_ns();
        term_t ping = tuple(ctx, 2, (term_t[]){sched_self(ctx), atom("ping")});
        rc = ping == TERM_NONE ? GD_ENOMEM : sched_send(ctx, term_tuple_elems(arg)[1], ping);
        if (rc == 0)
            rc = sched_receive_wait(ctx, pred_is, TAG("pong"), 10000, &msg);
        out[i] = now_ns() - t0;
    }
    if (rc == 0)
        rc = sched_send(ctx, term_tuple_elems(arg)[0], atom("done"));
    sched_root_pop(ctx, 1);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank, as bench_beam:pct/2 (v sorted). */
static double pct_u64(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n / 100.0 + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)v[rank - 1];
}

/* The i-th element of a proper list. */
static term_t nth(term_t list, int i)
{
    while (i-- > 0)
        list = term_cdr(list);
    return term_car(list);
}

static int pingpong_once(sched_ctx_t *ctx, term_t peer, int pairs, int64_t k, int which, int r)
{
    term_t pongs = TERM_NIL, pings = TERM_NIL, msg;
    int rc = sched_root_push(ctx, &pongs);
    if (rc == 0)
        rc = sched_root_push(ctx, &pings);
    if (rc < 0)
        return rc;
    rtt_k = (size_t)k;
    for (int i = 0; i < pairs && rc == 0; i++) {
        term_t pong, ping;
        rc = remote_spawn(ctx, peer, -1, 5000, &pong);
        if (rc == 0)
            rc = heap_cons(sched_heap(ctx), pong, pongs, &pongs);
        term_t arg = rc == 0 ? tuple(ctx, 4,
                                     (term_t[]){sched_self(ctx), term_car(pongs),
                                                term_make_small(k), term_make_small(i)})
                             : TERM_NONE;
        if (rc == 0)
            rc = arg == TERM_NONE ? GD_ENOMEM : sched_spawn_coro(ctx, pinger, arg, &ping);
        if (rc == 0)
            rc = heap_cons(sched_heap(ctx), ping, pings, &pings);
    }
    /* One warm-up round trip per ponger.  Every send and receive may
     * move the lists (a collection at a preemption point): walk them
     * again from their rooted heads each time. */
    for (int i = 0; i < pairs && rc == 0; i++) {
        term_t ping = tuple(ctx, 2, (term_t[]){sched_self(ctx), atom("ping")});
        rc = ping == TERM_NONE ? GD_ENOMEM : sched_send(ctx, nth(pongs, i), ping);
        if (rc == 0)
            rc = sched_receive_wait(ctx, pred_is, TAG("pong"), 5000, &msg);
    }
    uint64_t t0 = now_ns();
    for (int i = 0; i < pairs && rc == 0; i++)
        rc = sched_send(ctx, nth(pings, i), atom("go"));
    for (int i = 0; i < pairs && rc == 0; i++)
        rc = sched_receive_wait(ctx, pred_is, TAG("done"), 60000, &msg);
    uint64_t t1 = now_ns();
    for (int i = 0; i < pairs && rc == 0; i++)
        rc = sched_send(ctx, nth(pongs, i), atom("stop"));
    sched_root_pop(ctx, 2);
    if (rc < 0)
        return rc;
    size_t n = (size_t)pairs * (size_t)k;
    qsort(rtts, n, sizeof *rtts, cmp_u64);
    res.pp_rate[which][r] = (double)n / ((double)(t1 - t0) / 1e9);
    res.pp_p50[which][r] = pct_u64(rtts, n, 50) / 1000.0;
    res.pp_p99[which][r] = pct_u64(rtts, n, 99) / 1000.0;
    fprintf(stderr, "  dist pingpong pairs=%d: %.0f rt/s p50 %.1f us p99 %.1f us\n", pairs,
            res.pp_rate[which][r], res.pp_p50[which][r], res.pp_p99[which][r]);
    return 0;
}

static int oneway_once(sched_ctx_t *ctx, term_t peer, int64_t n, term_t bin, double *rate)
{
    term_t c = TERM_NONE, msg;
    int rc = sched_root_push(ctx, &c);
    if (rc == 0)
        rc = sched_root_push(ctx, &bin);
    if (rc == 0)
        rc = remote_spawn(ctx, peer, n, 5000, &c);
    term_t hello = rc == 0 ? tuple(ctx, 2, (term_t[]){sched_self(ctx), atom("ping")}) : TERM_NONE;
    if (rc == 0)
        rc = hello == TERM_NONE ? GD_ENOMEM : sched_send(ctx, c, hello);
    if (rc == 0)
        rc = sched_receive_wait(ctx, pred_is, TAG("pong"), 5000, &msg);
    uint64_t t0 = now_ns();
    for (int64_t i = n; i > 0 && rc == 0; i--) {
        term_t m = bin == TERM_NONE
                       ? tuple(ctx, 2, (term_t[]){atom("msg"), term_make_small(i)})
                       : tuple(ctx, 3, (term_t[]){atom("bin"), term_make_small(i), bin});
        rc = m == TERM_NONE ? GD_ENOMEM : sched_send(ctx, c, m);
    }
    uint64_t tsent = now_ns();
    if (rc == 0)
        rc = sched_receive_wait(ctx, pred_tag, TAG("counted"), 120000, &msg);
    uint64_t t1 = now_ns();
    fprintf(stderr, "  (sent in %.3f s, counted after %.3f s)\n", (tsent - t0) / 1e9,
            (t1 - t0) / 1e9);
    sched_root_pop(ctx, 2);
    *rate = (double)n / ((double)(t1 - t0) / 1e9);
    fprintf(stderr, "  dist oneway %s: %.1f /s\n", bin == TERM_NONE ? "small" : "1mib", *rate);
    return rc;
}

static int rpc_once(sched_ctx_t *ctx, term_t peer, int k, double *rate)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < k; i++) {
        term_t req = tuple(
            ctx, 5, (term_t[]){atom("call"), atom("erlang"), atom("node"), TERM_NIL, atom("user")});
        term_t rex = tuple(ctx, 2, (term_t[]){atom("rex"), peer});
        term_t reply;
        if (req == TERM_NONE || rex == TERM_NONE)
            return GD_ENOMEM;
        int rc = girder_call(ctx, rex, req, 5000, &reply);
        if (rc < 0)
            return rc;
        if (reply != peer) {
            fprintf(stderr, "rpc:call(erlang, node, []) answered something else\n");
            return GD_EINVAL;
        }
    }
    *rate = k / ((double)(now_ns() - t0) / 1e9);
    fprintf(stderr, "  dist rpc: %.0f calls/s\n", *rate);
    return 0;
}

static int erpc_once(sched_ctx_t *ctx, term_t peer, int k, double *rate)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < k; i++) {
        girder_erpc_result_t r;
        int rc = girder_erpc_call(ctx, peer, atom("erlang"), atom("node"), TERM_NIL, 5000, &r);
        if (rc < 0)
            return rc;
        if (r.cls != GIRDER_ERPC_RETURN || r.value != peer) {
            fprintf(stderr, "erpc:call(erlang, node, []) answered something else (class %d)\n",
                    (int)r.cls);
            return GD_EINVAL;
        }
    }
    *rate = k / ((double)(now_ns() - t0) / 1e9);
    fprintf(stderr, "  dist erpc: %.0f calls/s\n", *rate);
    return 0;
}

/* BENCH_DIST_ONLY=pingpong,small,1mib,rpc,erpc (any of them, comma
 * separated; pingpong1 or pingpong100 for one of the two ping-pongs;
 * unset: all) runs part of the workloads, for profiling; the results of
 * the others are then 0. */
static bool wanted(const char *workload)
{
    const char *only = getenv("BENCH_DIST_ONLY");
    if (only == NULL)
        return true;
    size_t n = strlen(workload);
    for (const char *p = only; (p = strstr(p, workload)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return true;
    return false;
}

static int driver(sched_ctx_t *ctx, term_t peer)
{
    /* The peer is up once its spawner answers. */
    int rc = SCHED_ETIMEOUT;
    for (int tries = 0; tries < 100 && rc == SCHED_ETIMEOUT; tries++) {
        term_t p;
        rc = remote_spawn(ctx, peer, -1, 200, &p);
        if (rc == 0)
            rc = sched_send(ctx, p, atom("stop"));
    }
    if (rc < 0) {
        fprintf(stderr, "peer not up: %d\n", rc);
        return rc;
    }
    /* Answers to the attempts that timed out may still come: take them
     * (and stop their pongers) so no later request gets a stale one. */
    term_t stale;
    while (sched_receive_wait(ctx, pred_tag, TAG("spawned"), 500, &stale) == 0)
        if ((rc = sched_send(ctx, term_tuple_elems(stale)[1], atom("stop"))) < 0)
            return rc;
    for (int r = 0; r < REPS && rc == 0 && (wanted("pingpong") || wanted("pingpong1")); r++)
        rc = pingpong_once(ctx, peer, 1, 10000, PP1, r);
    for (int r = 0; r < REPS && rc == 0 && (wanted("pingpong") || wanted("pingpong100")); r++)
        rc = pingpong_once(ctx, peer, 100, 500, PP100, r);
    for (int r = 0; r < REPS && rc == 0 && wanted("small"); r++)
        rc = oneway_once(ctx, peer, 200000, TERM_NONE, &res.small[r]);
    term_t bin = TERM_NONE;
    uint8_t *bytes = malloc((size_t)1 << 20);
    if (bytes == NULL)
        return GD_ENOMEM;
    for (size_t i = 0; i < (size_t)1 << 20; i++)
        bytes[i] = (uint8_t)i;
    if (rc == 0)
        rc = heap_make_binary(sched_heap(ctx), bytes, (size_t)1 << 20, &bin);
    free(bytes);
    if (rc == 0)
        rc = sched_root_push(ctx, &bin); /* it must survive every repetition */
    for (int r = 0; r < REPS && rc == 0 && wanted("1mib"); r++)
        rc = oneway_once(ctx, peer, 1000, bin, &res.mib[r]);
    sched_root_pop(ctx, 1);
    for (int r = 0; r < REPS && rc == 0 && wanted("rpc"); r++)
        rc = rpc_once(ctx, peer, 10000, &res.rpc[r]);
    for (int r = 0; r < REPS && rc == 0 && wanted("erpc"); r++)
        rc = erpc_once(ctx, peer, 10000, &res.erpc[r]);
    if (rc < 0)
        fprintf(stderr, "driver failed: %d\n", rc);
    res.ok = rc == 0;
    return rc;
}

static void emit(const char *bench, const char *params, const double *samples, const char *unit)
{
    double sorted[REPS];
    memcpy(sorted, samples, sizeof sorted);
    for (int i = 1; i < REPS; i++)
        for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    printf("{\"bench\":\"%s\",\"impl\":\"girder\",\"params\":{%s},\"value\":%.3f,\"unit\":\"%s\","
           "\"samples\":[",
           bench, params, sorted[(REPS * 50 + 99) / 100 - 1], unit);
    for (int i = 0; i < REPS; i++)
        printf("%s%.3f", i ? "," : "", samples[i]);
    const char *run = getenv("BENCH_RUN");
    printf("]%s%s}\n", run != NULL && *run ? ",\"run\":" : "", run != NULL && *run ? run : "");
    fflush(stdout);
}

static void emit_all(void)
{
    static const char *sfx[2] = {"", "_100"};
    static const char *pp_params[2] = {"\"pairs\":1,\"round_trips_per_pair\":10000",
                                       "\"pairs\":100,\"round_trips_per_pair\":500"};
    char name[64];
    for (int w = 0; w < 2; w++) {
        snprintf(name, sizeof name, "dist_pingpong%s_rate", sfx[w]);
        emit(name, pp_params[w], res.pp_rate[w], "round_trips/s");
        snprintf(name, sizeof name, "dist_pingpong%s_rtt_p50", sfx[w]);
        emit(name, pp_params[w], res.pp_p50[w], "us");
        snprintf(name, sizeof name, "dist_pingpong%s_rtt_p99", sfx[w]);
        emit(name, pp_params[w], res.pp_p99[w], "us");
    }
    emit("dist_oneway_small", "\"msgs\":200000", res.small, "msgs/s");
    emit("dist_oneway_1mib", "\"msgs\":1000", res.mib, "MiB/s");
    emit("dist_rpc_call", "\"calls\":10000,\"call\":\"rex $gen_call {call,erlang,node,[],user}\"",
         res.rpc, "calls/s");
    emit("dist_erpc_call", "\"calls\":10000,\"call\":\"erpc:call(Peer, erlang, node, [])\"",
         res.erpc, "calls/s");
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "peer") != 0 && strcmp(argv[1], "drive") != 0) ||
        (strcmp(argv[1], "drive") == 0 && argc < 5)) {
        fprintf(stderr, "usage: bench_dist peer NAME COOKIE | drive NAME COOKIE PEER\n");
        return 2;
    }
    bool peer_mode = strcmp(argv[1], "peer") == 0;
    sigset_t set;
    girder_block_stop_signals(&set);
    cluster_config_t cfg = {.name = argv[2], .cookie = argv[3], .schedulers = 2};
    if (cluster_start(&cfg) != 0) {
        fprintf(stderr, "bench_dist: cluster_start failed\n");
        return 1;
    }
    int status = 0;
    if (peer_mode) {
        term_t pid;
        if (sched_spawn(NULL, &spawner_beh, TERM_NIL, &pid) != GD_OK) {
            fprintf(stderr, "bench_dist: cannot spawn the spawner\n");
            status = 1;
        } else {
            int sig;
            sigwait(&set, &sig);
        }
    } else {
        rtts = malloc(100 * 10000 * sizeof *rtts);
        term_t pid;
        if (rtts == NULL || sched_spawn_coro(NULL, driver, atom(argv[4]), &pid) != GD_OK ||
            sched_wait_exit(&pid, 1, 600000) != GD_OK || !res.ok) {
            fprintf(stderr, "bench_dist: the driver failed\n");
            status = 1;
        } else {
            emit_all();
        }
    }
    cluster_stop();
    free(rtts);
    return status;
}
