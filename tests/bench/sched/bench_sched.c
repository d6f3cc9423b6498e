/*
 * bench_sched.c — girder's side of the process benchmarks
 * (docs/benchmarks.md; BEAM's side is beam_sched.erl): spawn, pingpong (1 and 100 pairs),
 * ring, fanin, bigmsg and fairness, with the same workloads, repetitions and
 * medians (fairness also as fairness_cloop_*, which BEAM cannot run).
 *
 *   bench_sched [-s SCALE_DIVISOR] [spawn|pingpong|ring|fanin|bigmsg|fairness ...]
 *
 * Prints one JSON line per result on stdout ("impl":"girder"); progress on
 * stderr.  SCALE_DIVISOR (default 1) shrinks every count for quick runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "sched/sched.h"

#define S term_make_small

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void start_node(void)
{
    sched_opts_t o = {0};
    if (sched_start(&o) != GD_OK) {
        fprintf(stderr, "sched_start failed\n");
        exit(1);
    }
}

/* Waits until every run queue is empty (all set-up work has run). */
static void wait_quiet(uint32_t count)
{
    while (sched_process_count() > count)
        nap_us(1000);
}

static _Atomic uint64_t done;

static int nop_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    return GD_OK;
}

/* ---- spawn ---- */

static _Atomic uint64_t ready;

static int waiter_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    atomic_fetch_add_explicit(&ready, 1, memory_order_relaxed);
    return GD_OK;
}

static int waiter_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return GD_OK;
}

static const sched_behaviour_t waiter_beh = {waiter_init, waiter_handle, NULL, NULL};

/* The spawner: one process spawning all N (as bench_spawn.erl), 1000 per
 * callback then `next` to itself so its slice ends between chunks. */
static term_t *spawn_pids;
static size_t spawn_n;
static _Atomic size_t spawned;
static _Atomic uint64_t spawn_end_ns;

static int spawner_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    size_t i = atomic_load_explicit(&spawned, memory_order_relaxed);
    for (size_t k = 0; k < 1000 && i < spawn_n; k++, i++) {
        int rc = sched_spawn(ctx, &waiter_beh, TERM_NIL, &spawn_pids[i]);
        if (rc != GD_OK)
            return rc;
    }
    atomic_store_explicit(&spawned, i, memory_order_release);
    if (i == spawn_n) {
        atomic_store_explicit(&spawn_end_ns, bench_now_ns(), memory_order_release);
        return GD_OK;
    }
    return sched_send(ctx, sched_self(ctx), bench_atom("next"));
}

static const sched_behaviour_t spawner_beh = {nop_init, spawner_handle, NULL, NULL};

static void bench_spawn(size_t n)
{
    double rate[3], ready_rate[3], mem[3], kill[3];
    term_t *pids = malloc(n * sizeof *pids);
    spawn_pids = pids;
    spawn_n = n;
    for (int r = 0; r < 3; r++) {
        start_node();
        atomic_store(&ready, 0);
        atomic_store(&spawned, 0);
        atomic_store(&spawn_end_ns, 0);
        term_t spawner;
        if (sched_spawn(NULL, &spawner_beh, TERM_NIL, &spawner) != GD_OK)
            abort();
        wait_quiet(1);
        size_t rss0 = sched_os_rss_bytes();
        uint64_t t0 = bench_now_ns();
        if (sched_send(NULL, spawner, bench_atom("go")) != GD_OK)
            abort();
        while (atomic_load_explicit(&spawn_end_ns, memory_order_acquire) == 0)
            nap_us(200);
        uint64_t t1 = atomic_load_explicit(&spawn_end_ns, memory_order_acquire);
        while (atomic_load_explicit(&ready, memory_order_relaxed) < n)
            nap_us(200);
        uint64_t t2 = bench_now_ns();
        mem[r] = (double)(sched_os_rss_bytes() - rss0) / (double)n;
        rate[r] = n / ((t1 - t0) / 1e9);
        ready_rate[r] = n / ((t2 - t0) / 1e9);
        uint64_t t3 = bench_now_ns();
        for (size_t i = 0; i < n; i++)
            if (sched_exit_pid(NULL, pids[i], bench_atom("kill")) != GD_OK)
                abort();
        wait_quiet(1);
        kill[r] = n / ((bench_now_ns() - t3) / 1e9);
        sched_stop();
        fprintf(stderr, "spawn %d: %.0f/s ready %.0f/s %.0f B/proc kill %.0f/s\n", r, rate[r],
                ready_rate[r], mem[r], kill[r]);
    }
    free(pids);
    char params[64];
    snprintf(params, sizeof params, "\"n\":%zu", n);
    bench_emit("spawn_rate", params, rate, 3, "procs/s");
    bench_emit("spawn_ready_rate", params, ready_rate, 3, "procs/s");
    bench_emit("spawn_mem_per_proc", params, mem, 3, "bytes");
    bench_emit("spawn_kill_rate", params, kill, 3, "procs/s");
}

/* ---- pingpong ---- */

/* Ponger: {From, ping} -> From ! pong. */
static int ponger_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return sched_send(ctx, term_tuple_elems(msg)[0], bench_atom("pong"));
}

static const sched_behaviour_t ponger_beh = {nop_init, ponger_handle, NULL, NULL};

static double *rtts;
static _Atomic size_t nrtt;
static size_t rtt_cap;

/* Pinger state {Ponger, Left, K, T0}: on go / pong sends the next ping. */
static int pinger_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    int64_t left = term_small_value(st[1]);
    if (msg != bench_atom("go")) {
        int64_t t0 = term_small_value(st[3]);
        if (t0 != 0) {
            size_t i = atomic_fetch_add_explicit(&nrtt, 1, memory_order_relaxed);
            if (i < rtt_cap)
                rtts[i] = (double)(bench_now_ns() - (uint64_t)t0) / 1000.0;
        }
        if (--left == 0) {
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            return GD_OK;
        }
    }
    st[1] = S(left);
    st[3] = S(left % 8 == 0 ? (int64_t)bench_now_ns() : 0);
    term_t *e, t;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &t);
    if (rc != GD_OK)
        return rc;
    e[0] = sched_self(ctx);
    e[1] = bench_atom("ping");
    return sched_send(ctx, st[0], t);
}

static const sched_behaviour_t pinger_beh = {nop_init, pinger_handle, NULL, NULL};

static void bench_pingpong(int pairs, int k)
{
    double rate[5], p50[5], p99[5];
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        abort();
    rtt_cap = (size_t)pairs * (size_t)k / 8 + 16;
    rtts = malloc(rtt_cap * sizeof *rtts);
    term_t *pingers = malloc((size_t)pairs * sizeof *pingers);
    for (int r = 0; r < 5; r++) {
        start_node();
        atomic_store(&done, 0);
        atomic_store(&nrtt, 0);
        for (int i = 0; i < pairs; i++) {
            term_t pong, *e, arg;
            if (sched_spawn(NULL, &ponger_beh, TERM_NIL, &pong) != GD_OK ||
                heap_make_tuple(&h, 4, &e, &arg) != GD_OK)
                abort();
            e[0] = pong;
            e[1] = S(k);
            e[2] = S(k);
            e[3] = S(0);
            if (sched_spawn(NULL, &pinger_beh, arg, &pingers[i]) != GD_OK)
                abort();
        }
        nap_us(20000);
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < pairs; i++)
            if (sched_send(NULL, pingers[i], bench_atom("go")) != GD_OK)
                abort();
        while (atomic_load_explicit(&done, memory_order_acquire) < (uint64_t)pairs)
            nap_us(100);
        uint64_t t1 = bench_now_ns();
        rate[r] = (double)pairs * k / ((t1 - t0) / 1e9);
        size_t n = atomic_load(&nrtt);
        if (n > rtt_cap)
            n = rtt_cap;
        p50[r] = bench_pct(rtts, n, 50);
        p99[r] = bench_pct(rtts, n, 99);
        sched_stop();
        fprintf(stderr, "pingpong %d x %d: %.0f rt/s p50 %.2f us p99 %.2f us\n", pairs, k, rate[r],
                p50[r], p99[r]);
    }
    char params[64];
    snprintf(params, sizeof params, "\"pairs\":%d,\"k\":%d", pairs, k);
    char name[64];
    const char *sfx = pairs == 1 ? "" : "_100";
    snprintf(name, sizeof name, "pingpong%s_rate", sfx);
    bench_emit(name, params, rate, 5, "round_trips/s");
    snprintf(name, sizeof name, "pingpong%s_rtt_p50", sfx);
    bench_emit(name, params, p50, 5, "us");
    snprintf(name, sizeof name, "pingpong%s_rtt_p99", sfx);
    bench_emit(name, params, p99, 5, "us");
    free(pingers);
    free(rtts);
    heap_destroy(&h);
}

/* ---- ring ---- */

/* State: next pid (set by {next, P}); messages H > 0 -> Next ! H - 1. */
static int ring_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (term_is_tuple(msg)) {
        *state = term_tuple_elems(msg)[1];
        return GD_OK;
    }
    int64_t hops = term_small_value(msg);
    if (hops == 0) {
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
        return GD_OK;
    }
    return sched_send(ctx, *state, S(hops - 1));
}

static const sched_behaviour_t ring_beh = {nop_init, ring_handle, NULL, NULL};

static void bench_ring(int nprocs, int64_t hops)
{
    double rate[3];
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        abort();
    term_t *ring = malloc((size_t)nprocs * sizeof *ring);
    for (int r = 0; r < 3; r++) {
        start_node();
        atomic_store(&done, 0);
        for (int i = 0; i < nprocs; i++)
            if (sched_spawn(NULL, &ring_beh, TERM_NIL, &ring[i]) != GD_OK)
                abort();
        for (int i = 0; i < nprocs; i++) {
            term_t *e, t;
            if (heap_make_tuple(&h, 2, &e, &t) != GD_OK)
                abort();
            e[0] = bench_atom("next");
            e[1] = ring[(i + 1) % nprocs];
            if (sched_send(NULL, ring[i], t) != GD_OK)
                abort();
        }
        nap_us(20000);
        uint64_t t0 = bench_now_ns();
        if (sched_send(NULL, ring[0], S(hops)) != GD_OK)
            abort();
        while (atomic_load_explicit(&done, memory_order_acquire) == 0)
            nap_us(200);
        rate[r] = (double)hops / ((bench_now_ns() - t0) / 1e9);
        sched_stop();
        fprintf(stderr, "ring %d: %.0f hops/s\n", r, rate[r]);
    }
    char params[64];
    snprintf(params, sizeof params, "\"procs\":%d,\"hops\":%lld", nprocs, (long long)hops);
    bench_emit("ring_rate", params, rate, 3, "hops/s");
    free(ring);
    heap_destroy(&h);
}

/* ---- fanin ---- */

/* Sender state {Target, Left}: on go / next sends up to 100 {msg, I},
 * then `next` to itself, so its slice ends between chunks. */
static int fsend_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    int64_t left = term_small_value(st[1]);
    for (int i = 0; i < 100 && left > 0; i++, left--) {
        term_t *e, t;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &t);
        if (rc != GD_OK)
            return rc;
        e[0] = bench_atom("msg");
        e[1] = S(left);
        rc = sched_send(ctx, st[0], t);
        if (rc != GD_OK)
            return rc;
    }
    st[1] = S(left);
    return left > 0 ? sched_send(ctx, sched_self(ctx), bench_atom("next")) : GD_OK;
}

static const sched_behaviour_t fsend_beh = {nop_init, fsend_handle, NULL, NULL};

static _Atomic uint64_t fan_got;
static uint64_t fan_total;

static int frecv_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (atomic_fetch_add_explicit(&fan_got, 1, memory_order_relaxed) + 1 == fan_total)
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
    return GD_OK;
}

static const sched_behaviour_t frecv_beh = {nop_init, frecv_handle, NULL, NULL};

static void bench_fanin(int senders, int per)
{
    double rate[3], maxq[3];
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        abort();
    term_t *tx = malloc((size_t)senders * sizeof *tx);
    fan_total = (uint64_t)senders * (uint64_t)per;
    for (int r = 0; r < 3; r++) {
        start_node();
        atomic_store(&done, 0);
        atomic_store(&fan_got, 0);
        term_t rx;
        if (sched_spawn(NULL, &frecv_beh, TERM_NIL, &rx) != GD_OK)
            abort();
        for (int i = 0; i < senders; i++) {
            term_t *e, arg;
            if (heap_make_tuple(&h, 2, &e, &arg) != GD_OK)
                abort();
            e[0] = rx;
            e[1] = S(per);
            if (sched_spawn(NULL, &fsend_beh, arg, &tx[i]) != GD_OK)
                abort();
        }
        nap_us(20000);
        uint64_t t0 = bench_now_ns(), next_sample = t0;
        for (int i = 0; i < senders; i++)
            if (sched_send(NULL, tx[i], bench_atom("go")) != GD_OK)
                abort();
        maxq[r] = 0;
        uint64_t t_maxq = t0;
        while (atomic_load_explicit(&done, memory_order_acquire) == 0) {
            if (bench_now_ns() >= next_sample) {
                sched_process_info_t info;
                if (sched_process_info(rx, &info) == GD_OK && info.message_queue_len > maxq[r]) {
                    maxq[r] = info.message_queue_len;
                    t_maxq = bench_now_ns();
                }
                next_sample += 10000000;
            }
            nap_us(1000);
        }
        uint64_t t1 = bench_now_ns();
        rate[r] = (double)fan_total / ((t1 - t0) / 1e9);
        sched_stop();
        /* Where the time went: until the queue peaked the senders dominate,
         * after it the receiver drains alone. */
        fprintf(stderr, "fanin %d: %.0f msgs/s max queue %.0f (peak at %.0f ms of %.0f ms)\n", r,
                rate[r], maxq[r], (t_maxq - t0) / 1e6, (t1 - t0) / 1e6);
    }
    char params[64];
    snprintf(params, sizeof params, "\"senders\":%d,\"per_sender\":%d", senders, per);
    bench_emit("fanin_rate", params, rate, 3, "msgs/s");
    bench_emit("fanin_max_queue", params, maxq, 3, "msgs");
    free(tx);
    heap_destroy(&h);
}

/* ---- bigmsg ---- */

/* 1 MiB payloads: lists:seq(1, 65536) (131072 heap words, copied into
 * every message) and a 1,048,576-byte refc binary (shared: only its
 * 4-word reference is copied). */
#define BIGMSG_LIST_LEN 65536
#define BIGMSG_BIN_BYTES 1048576

/* Receiver: {From, Payload} -> From ! ack.  The payload is dropped: the
 * message's fragment is garbage at the receiver's next collection. */
static int bigrecv_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return sched_send(ctx, term_tuple_elems(msg)[0], bench_atom("ack"));
}

static const sched_behaviour_t bigrecv_beh = {nop_init, bigrecv_handle, NULL, NULL};

/* Sender: spawned with {Kind, K}; init spawns the receiver (placement
 * follows the spawner: both start on one scheduler, as BEAM's sender
 * spawning its receiver), builds the payload on its own heap and keeps
 * {Recv, Payload, Left} as its state; on go and on every ack sends
 * {self(), Payload} until K were acknowledged. */
static int bigsend_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    heap_t *h = sched_heap(ctx);
    const term_t *a = term_tuple_elems(arg);
    term_t payload = TERM_NIL, recv;
    int rc = sched_spawn(ctx, &bigrecv_beh, TERM_NIL, &recv);
    if (rc != GD_OK)
        return rc;
    if (a[0] == bench_atom("list")) {
        for (int64_t i = BIGMSG_LIST_LEN; i >= 1 && rc == GD_OK; i--)
            rc = heap_cons(h, S(i), payload, &payload);
    } else {
        heap_binary_t *bin = heap_binary_new(BIGMSG_BIN_BYTES);
        if (bin == NULL)
            return GD_ENOMEM;
        for (size_t i = 0; i < BIGMSG_BIN_BYTES; i++)
            bin->data[i] = (uint8_t)i;
        rc = heap_make_refc_binary(h, bin, (size_t)BIGMSG_BIN_BYTES * 8, &payload);
        heap_binary_unref(bin); /* the REFC_BIN object holds its own reference */
    }
    term_t *e;
    if (rc == GD_OK)
        rc = heap_make_tuple(h, 3, &e, state);
    if (rc != GD_OK)
        return rc;
    e[0] = recv;
    e[1] = payload;
    e[2] = a[1];
    return GD_OK;
}

static int bigsend_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    if (msg == bench_atom("ack")) {
        st[2] = S(term_small_value(st[2]) - 1);
        if (st[2] == S(0)) {
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            return GD_OK;
        }
    }
    term_t *e, t;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &t);
    if (rc != GD_OK)
        return rc;
    e[0] = sched_self(ctx);
    e[1] = st[1];
    return sched_send(ctx, st[0], t);
}

static const sched_behaviour_t bigsend_beh = {bigsend_init, bigsend_handle, NULL, NULL};

/* One message in flight, K per repetition, 5 repetitions; MiB/s counts
 * 1 MiB per message (bench_bigmsg.erl). */
static void bench_bigmsg_kind(const char *kind, int k)
{
    double rate[5];
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        abort();
    for (int r = 0; r < 5; r++) {
        start_node();
        atomic_store(&done, 0);
        term_t sender, *e, arg;
        if (heap_make_tuple(&h, 2, &e, &arg) != GD_OK)
            abort();
        e[0] = bench_atom(kind);
        e[1] = S(k);
        if (sched_spawn(NULL, &bigsend_beh, arg, &sender) != GD_OK)
            abort();
        /* The sender's init (the receiver, the payload) runs before the
         * clock. */
        nap_us(20000);
        uint64_t t0 = bench_now_ns();
        if (sched_send(NULL, sender, bench_atom("go")) != GD_OK)
            abort();
        while (atomic_load_explicit(&done, memory_order_acquire) < 1)
            nap_us(100);
        uint64_t t1 = bench_now_ns();
        rate[r] = (double)k / ((t1 - t0) / 1e9);
        sched_stop();
        fprintf(stderr, "bigmsg %s x %d: %.1f MiB/s\n", kind, k, rate[r]);
    }
    char params[160];
    snprintf(params, sizeof params,
             "\"payload\":\"%s\",\"payload_bytes\":1048576,\"msgs\":%d,\"reps\":5", kind, k);
    char name[32];
    snprintf(name, sizeof name, "bigmsg_%s", kind);
    bench_emit(name, params, rate, 5, "MiB/s");
    heap_destroy(&h);
}

/* ---- fairness ---- */

/*
 * The fairness workload: 2 x schedulers busy processes run the LCG
 * loop forever while a probe (same priority) does `receive after 1` for
 * 2 s and records how late it wakes (elapsed - 1 ms); the busy processes
 * are then killed.  Also with no busy processes (fairness_idle_*), and,
 * girder only (BEAM cannot run it), with busy processes that are plain C
 * loops never calling the runtime (fairness_cloop_*): the watchdog moves
 * the probe off their schedulers.  The busy processes are coroutine
 * processes whose loop is a preemption point (sched_bump_reds, one
 * reduction per iteration); the probe is a coroutine process.  The node
 * may add one extra scheduler thread per busy process (max_extra_schedulers),
 * which only the C-loop variant uses.
 */
#define FAIR_DURATION_MS 2000
#define FAIR_MAX_SAMPLES 100000

static _Atomic bool fair_stop;
static _Atomic bool probe_done;
static double *fair_late; /* ms */
static size_t fair_n;
static _Atomic uint64_t fair_sink;

static uint64_t lcg(uint64_t x)
{
    return (x * 1103515245u + 12345u) & 0x7fffffffu;
}

static int busy_coro(sched_ctx_t *ctx, term_t arg)
{
    uint64_t x = (uint64_t)term_small_value(arg);
    for (;;) {
        x = lcg(x);
        (void)sched_bump_reds(ctx, 1);
        /* Relaxed: a signal to stop, read once per iteration. */
        if (atomic_load_explicit(&fair_stop, memory_order_relaxed))
            break;
    }
    atomic_fetch_add_explicit(&fair_sink, x, memory_order_relaxed);
    return GD_OK;
}

/* The C-loop variant: init never returns to the runtime until stopped. */
static int cloop_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    uint64_t x = (uint64_t)term_small_value(arg);
    while (!atomic_load_explicit(&fair_stop, memory_order_relaxed))
        x = lcg(x);
    atomic_fetch_add_explicit(&fair_sink, x, memory_order_relaxed);
    return GD_OK;
}

static int nop_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return GD_OK;
}

static const sched_behaviour_t cloop_beh = {cloop_init, nop_handle, NULL, NULL};

static bool pred_never(term_t msg, void *arg)
{
    return false;
}

static int probe_coro(sched_ctx_t *ctx, term_t arg)
{
    uint64_t end = bench_now_ns() + (uint64_t)FAIR_DURATION_MS * 1000000u;
    fair_n = 0;
    for (;;) {
        term_t msg;
        uint64_t t0 = bench_now_ns();
        int rc = sched_receive_wait(ctx, pred_never, NULL, 1, &msg);
        uint64_t t1 = bench_now_ns();
        if (rc != SCHED_ETIMEOUT)
            return rc;
        if (fair_n < FAIR_MAX_SAMPLES)
            fair_late[fair_n++] = ((double)(t1 - t0) - 1e6) / 1e6;
        if (t1 >= end)
            break;
    }
    atomic_store_explicit(&probe_done, true, memory_order_release);
    return GD_OK;
}

static void bench_fairness(const char *name, int nbusy, bool cloop)
{
    enum { REPS = 3 };
    double p50[REPS], p99[REPS], mx[REPS], wakeups[REPS];
    unsigned nsched = sched_cores_available();
    fair_late = malloc(FAIR_MAX_SAMPLES * sizeof *fair_late);
    term_t *busy = malloc((size_t)(nbusy + 1) * sizeof *busy);
    if (fair_late == NULL || busy == NULL)
        abort();
    for (int r = 0; r < REPS; r++) {
        sched_opts_t o = {.schedulers = nsched,
                          .max_extra_schedulers = nbusy > 0 ? (unsigned)nbusy : 1};
        if (sched_start(&o) != GD_OK)
            abort();
        atomic_store(&fair_stop, false);
        atomic_store(&probe_done, false);
        for (int i = 0; i < nbusy; i++) {
            int rc = cloop ? sched_spawn(NULL, &cloop_beh, S(i + 1), &busy[i])
                           : sched_spawn_coro(NULL, busy_coro, S(i + 1), &busy[i]);
            if (rc != GD_OK)
                abort();
        }
        nap_us(100000); /* let the loopers occupy the schedulers */
        term_t probe;
        if (sched_spawn_coro(NULL, probe_coro, TERM_NIL, &probe) != GD_OK)
            abort();
        while (!atomic_load_explicit(&probe_done, memory_order_acquire))
            nap_us(10000);
        for (int i = 0; i < nbusy && !cloop; i++)
            if (sched_exit_pid(NULL, busy[i], bench_atom("kill")) != GD_OK)
                abort();
        atomic_store(&fair_stop, true);
        sched_stats_t st;
        sched_stats(&st);
        size_t n = fair_n;
        double max = 0;
        for (size_t i = 0; i < n; i++)
            max = fair_late[i] > max ? fair_late[i] : max;
        wakeups[r] = (double)n;
        mx[r] = max;
        p50[r] = bench_pct(fair_late, n, 50);
        p99[r] = bench_pct(fair_late, n, 99);
        sched_stop();
        fprintf(stderr,
                "%s busy=%d: p50 %.3f ms p99 %.3f ms max %.3f ms, %zu wakeups, %u threads "
                "(%llu stuck marks)\n",
                name, nbusy, p50[r], p99[r], mx[r], n, st.schedulers,
                (unsigned long long)st.stuck_marks);
    }
    char params[160], bench[64];
    snprintf(params, sizeof params,
             "\"busy_procs\":%d,\"schedulers\":%u,\"sleep_ms\":1,\"duration_ms\":%d,"
             "\"reps\":%d",
             nbusy, nsched, FAIR_DURATION_MS, REPS);
    const char *keys[] = {"p50", "p99", "max"};
    double *vals[] = {p50, p99, mx};
    for (int k = 0; k < 3; k++) {
        snprintf(bench, sizeof bench, "%s_lateness_%s", name, keys[k]);
        bench_emit(bench, params, vals[k], REPS, "ms");
    }
    snprintf(bench, sizeof bench, "%s_wakeups", name);
    bench_emit(bench, params, wakeups, REPS, "count");
    free(busy);
    free(fair_late);
    fair_late = NULL;
}

static void bench_fairness_all(void)
{
    int nbusy = 2 * (int)sched_cores_available();
    bench_fairness("fairness_idle", 0, false);
    bench_fairness("fairness", nbusy, false);
    bench_fairness("fairness_cloop", nbusy, true);
}

int main(int argc, char **argv)
{
    int div = 1, first = 1;
    if (argc > 2 && strcmp(argv[1], "-s") == 0) {
        div = atoi(argv[2]);
        if (div < 1)
            div = 1;
        first = 3;
    }
    bool all = first >= argc;
    for (int i = first; i < argc || all; i++) {
        const char *b = all ? NULL : argv[i];
        if (all || strcmp(b, "spawn") == 0)
            bench_spawn((size_t)1000000 / (size_t)div);
        if (all || strcmp(b, "pingpong") == 0) {
            bench_pingpong(1, 500000 / div);
            bench_pingpong(100, 10000 / div);
        }
        if (all || strcmp(b, "ring") == 0)
            bench_ring(1000, 10000000 / div);
        if (all || strcmp(b, "fanin") == 0)
            bench_fanin(1000, 10000 / div);
        if (all || strcmp(b, "bigmsg") == 0) {
            bench_bigmsg_kind("list", 2000 / div);
            bench_bigmsg_kind("binary", 200000 / div);
        }
        if (all || strcmp(b, "fairness") == 0)
            bench_fairness_all();
        if (all)
            break;
    }
    return 0;
}
