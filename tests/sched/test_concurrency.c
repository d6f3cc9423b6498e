/*
 * test_concurrency.c — the multi-threaded paths, meant for TSan too: many
 * senders (processes and foreign threads) to one receiver with per-sender
 * sequence numbers (nothing lost, duplicated or reordered), messages with
 * shared refc binaries built on several threads and attached on a
 * scheduler, ping-pong wake-up races, and link/monitor storms.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "cunit_main.h"
#include "sched/internal.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* ---- many senders -> one receiver ---- */

#define MAX_SENDERS 64

static struct {
    int64_t next[MAX_SENDERS]; /* receiver-owned */
    _Atomic uint64_t received;
    _Atomic uint64_t errors;
    _Atomic uint64_t bytes_ok;
} rx;

/* Messages {SenderIdx, Seq} or {SenderIdx, Seq, Payload}. */
static int rx_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

static int rx_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (!term_is_tuple(msg) || term_tuple_arity(msg) < 2) {
        atomic_fetch_add(&rx.errors, 1);
        return GD_OK;
    }
    term_t *e = term_tuple_elems(msg);
    int64_t who = term_small_value(e[0]), seq = term_small_value(e[1]);
    if (who < 0 || who >= MAX_SENDERS || rx.next[who] != seq)
        atomic_fetch_add(&rx.errors, 1);
    else
        rx.next[who] = seq + 1;
    if (term_tuple_arity(msg) == 3) {
        /* Payload: [Bin, Bin2 | Seq]: a shared refc binary and a heap one. */
        heap_bin_view_t v;
        term_t l = e[2];
        heap_bin_view(term_car(l), &v);
        bool ok = v.bit_size == 8 * 200;
        for (size_t i = 0; ok && i < 200; i++)
            ok = v.bytes[i] == (uint8_t)i;
        if (ok)
            atomic_fetch_add(&rx.bytes_ok, 1);
        /* Keep some messages in the state so collections move them. */
        if (seq % 7 == 0) {
            term_t cell;
            if (heap_cons(sched_heap(ctx), e[2], *state, &cell) == GD_OK)
                *state = cell;
            if (seq % 70 == 0)
                *state = TERM_NIL;
        }
    }
    atomic_fetch_add_explicit(&rx.received, 1, memory_order_release);
    return GD_OK;
}

static const sched_behaviour_t rx_beh = {rx_init, rx_handle, NULL, NULL};

/* A sender process: arg {Idx, Count, Target}; sends in chunks of 50 and
 * sends itself `next` in between, so it is preempted and migrates. */
static int tx_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    return sched_send(ctx, sched_self(ctx), A("next"));
}

static int tx_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *e = term_tuple_elems(*state);
    int64_t idx = term_small_value(e[0]), left = term_small_value(e[1]);
    term_t target = e[2];
    int64_t sent = term_small_value(e[3]);
    for (int i = 0; i < 50 && left > 0; i++, left--, sent++) {
        term_t *m, t;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &m, &t);
        if (rc != GD_OK)
            return rc;
        m[0] = S(idx);
        m[1] = S(sent);
        rc = sched_send(ctx, target, t);
        if (rc != GD_OK)
            return rc;
    }
    term_t *n, ns;
    int rc = heap_make_tuple(sched_heap(ctx), 4, &n, &ns);
    if (rc != GD_OK)
        return rc;
    n[0] = e[0];
    n[1] = S(left);
    n[2] = target;
    n[3] = S(sent);
    *state = ns;
    if (left == 0)
        return sched_exit(ctx, A("normal"));
    return sched_send(ctx, sched_self(ctx), A("next"));
}

static const sched_behaviour_t tx_beh = {tx_init, tx_handle, NULL, NULL};

typedef struct ext_sender {
    pthread_t th;
    int idx;
    int count;
    term_t target;
    bool payload;
} ext_sender_t;

/* A foreign thread sending with its own heap: {Idx, Seq, [Bin | Seq]}. */
static void *ext_send_main(void *arg)
{
    ext_sender_t *s = arg;
    heap_t h;
    if (heap_init(&h, 0) != GD_OK)
        abort();
    uint8_t bytes[200];
    for (int i = 0; i < 200; i++)
        bytes[i] = (uint8_t)i;
    term_t bin;
    if (heap_make_binary(&h, bytes, sizeof bytes, &bin) != GD_OK)
        abort();
    for (int i = 0; i < s->count; i++) {
        term_t *m, t, cell;
        if (heap_make_tuple(&h, s->payload ? 3 : 2, &m, &t) != GD_OK)
            abort();
        m[0] = S(s->idx);
        m[1] = S(i);
        if (s->payload) {
            if (heap_cons(&h, bin, S(i), &cell) != GD_OK)
                abort();
            m[2] = cell;
        }
        if (sched_send(NULL, s->target, t) != GD_OK)
            abort();
        if (i % 256 == 255) {
            term_t *roots[] = {&bin};
            if (heap_gc(&h, 0, roots, 1) != GD_OK)
                abort();
        }
    }
    heap_destroy(&h);
    return NULL;
}

static bool wait_received(uint64_t n)
{
    uint64_t end = st_now_ns() + 60000000000ull;
    while (atomic_load_explicit(&rx.received, memory_order_acquire) < n) {
        if (st_now_ns() > end)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static void many_senders(int nproc, int nthreads, int count, bool payload)
{
    memset(rx.next, 0, sizeof rx.next);
    atomic_store(&rx.received, 0);
    atomic_store(&rx.errors, 0);
    atomic_store(&rx.bytes_ok, 0);
    size_t bin_before = heap_binary_live_bytes();
    st_start(2);
    term_t target;
    CU_ASSERT_FATAL(sched_spawn(NULL, &rx_beh, TERM_NIL, &target) == GD_OK);
    for (int i = 0; i < nproc; i++) {
        term_t pid;
        term_t arg = st_tuple(4, S(i), S(count), target, S(0));
        CU_ASSERT_FATAL(sched_spawn(NULL, &tx_beh, arg, &pid) == GD_OK);
    }
    ext_sender_t th[16];
    for (int i = 0; i < nthreads; i++) {
        th[i] =
            (ext_sender_t){.idx = nproc + i, .count = count, .target = target, .payload = payload};
        CU_ASSERT_FATAL(pthread_create(&th[i].th, NULL, ext_send_main, &th[i]) == 0);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i].th, NULL);
    uint64_t total = (uint64_t)(nproc + nthreads) * (uint64_t)count;
    CU_ASSERT(wait_received(total));
    CU_ASSERT(sched_wait_count(1, 10000) == GD_OK);
    CU_ASSERT(atomic_load(&rx.errors) == 0);
    CU_ASSERT(atomic_load(&rx.received) == total);
    if (payload)
        CU_ASSERT(atomic_load(&rx.bytes_ok) == (uint64_t)nthreads * (uint64_t)count);
    /* Nothing duplicated: the receiver's inbox is empty now. */
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(target, &info) == GD_OK && info.message_queue_len == 0);
    st_stop();
    /* Every shared binary reference was dropped. */
    CU_ASSERT(heap_binary_live_bytes() == bin_before);
}

static void test_many_senders(void)
{
    many_senders(16, 4, ST_SCALE(20000, 2000), false);
}

static void test_fragments_across_threads(void)
{
    /* Fragments with a shared refc binary built on four foreign threads,
     * attached and collected on the schedulers. */
    many_senders(0, 4, ST_SCALE(20000, 2000), true);
}

/* ---- ping-pong: the wake-up race, thousands of times a second ---- */

static _Atomic uint64_t pp_done;

/* arg: {Peer | [], Rounds}.  A process with a peer starts the exchange
 * once the peer sends it `{peer, P}`. */
static int pp_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    return GD_OK;
}

static int pp_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    if (term_is_tuple(msg)) { /* {peer, P}: learn the peer, serve first */
        term_t *e = term_tuple_elems(msg);
        st[0] = e[1];
        return sched_send(ctx, e[1], S(0));
    }
    int64_t n = term_small_value(msg);
    if (n >= term_small_value(st[1])) {
        atomic_fetch_add(&pp_done, 1);
        if (n == term_small_value(st[1])) {
            int rc = sched_send(ctx, st[0], S(n + 1));
            if (rc != GD_OK)
                return rc;
        }
        return sched_exit(ctx, A("normal"));
    }
    return sched_send(ctx, st[0], S(n + 1));
}

static const sched_behaviour_t pp_beh = {pp_init, pp_handle, NULL, NULL};

static void test_pingpong_pairs(void)
{
    atomic_store(&pp_done, 0);
    st_start(2);
    int pairs = 20, rounds = ST_SCALE(20000, 2000);
    for (int i = 0; i < pairs; i++) {
        term_t a, b;
        CU_ASSERT_FATAL(sched_spawn(NULL, &pp_beh, st_tuple(2, TERM_NIL, S(rounds)), &a) == GD_OK);
        CU_ASSERT_FATAL(sched_spawn(NULL, &pp_beh, st_tuple(2, a, S(rounds)), &b) == GD_OK);
        st_send(a, st_tuple(2, A("peer"), b));
    }
    CU_ASSERT(sched_wait_count(0, 60000) == GD_OK);
    CU_ASSERT(atomic_load(&pp_done) == (uint64_t)(2 * pairs));
    st_stop();
}

/* ---- wake-up storm: foreign threads doing round trips to one process ---- */

#define STORM_THREADS 4
static _Atomic uint64_t acks[STORM_THREADS];

/* On N (a thread index): acknowledges; the process goes idle between most
 * messages, so its RUNNING -> waiting CAS races with the next senders. */
static int ack_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    atomic_fetch_add_explicit(&acks[term_small_value(msg)], 1, memory_order_release);
    return GD_OK;
}

static const sched_behaviour_t ack_beh = {rx_init, ack_handle, NULL, NULL};

typedef struct storm_thread {
    pthread_t th;
    int idx;
    int rounds;
    term_t target;
    bool yield; /* waits yielding the CPU (so a stalled sender gets one) */
    bool ok;
} storm_thread_t;

static void *storm_main(void *arg)
{
    storm_thread_t *t = arg;
    t->ok = true;
    for (int i = 0; i < t->rounds && t->ok; i++) {
        if (sched_send(NULL, t->target, S(t->idx)) != GD_OK)
            abort();
        /* A lost wake-up leaves the message unhandled: give up after 5 s. */
        uint64_t end = st_now_ns() + 5000000000u;
        while (atomic_load_explicit(&acks[t->idx], memory_order_acquire) < (uint64_t)i + 1)
            if (st_now_ns() > end) {
                t->ok = false;
                break;
            } else if (t->yield) {
                sched_yield();
            }
    }
    return NULL;
}

static void wakeup_storm(int rounds, uint32_t stall_every)
{
    st_start(2);
    atomic_store(&sched_test_push_stall_every, stall_every);
    term_t target;
    CU_ASSERT_FATAL(sched_spawn(NULL, &ack_beh, TERM_NIL, &target) == GD_OK);
    storm_thread_t th[STORM_THREADS];
    for (int i = 0; i < STORM_THREADS; i++) {
        atomic_store(&acks[i], 0);
        th[i] = (storm_thread_t){
            .idx = i, .rounds = rounds, .target = target, .yield = stall_every != 0};
        CU_ASSERT_FATAL(pthread_create(&th[i].th, NULL, storm_main, &th[i]) == 0);
    }
    for (int i = 0; i < STORM_THREADS; i++) {
        pthread_join(th[i].th, NULL);
        CU_ASSERT(th[i].ok);
        CU_ASSERT(atomic_load(&acks[i]) == (uint64_t)th[i].rounds);
    }
    atomic_store(&sched_test_push_stall_every, 0);
    st_stop();
}

static void test_wakeup_storm(void)
{
    wakeup_storm(ST_SCALE(20000, 2000), 0);
}

/* A sender that read the state word (ACTIVE, running) and skipped the
 * wake-up is slow to link its message: the runner must not idle past it.
 * Goes red (a thread's round trip times out) when proc_run stops looking
 * at in_tail before it idles. */
static void test_wakeup_storm_stalled_pushes(void)
{
    wakeup_storm(ST_SCALE(5000, 1000), 3);
}

/* ---- link and monitor storms ---- */

static _Atomic uint64_t downs, downs_bad;

/* Watcher: arg {Targets (list), DemonitorOdd}.  Monitors every target;
 * with DemonitorOdd, demonitors every other one at once. */
static int w_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t *e = term_tuple_elems(arg);
    bool demon = e[1] == A("true");
    int i = 0;
    for (term_t l = e[0]; term_is_list(l); l = term_cdr(l), i++) {
        term_t ref;
        int rc = sched_monitor(ctx, term_car(l), &ref);
        if (rc != GD_OK)
            return rc;
        if (demon && i % 2 == 1) {
            rc = sched_demonitor(ctx, ref);
            if (rc != GD_OK)
                return rc;
        }
    }
    return GD_OK;
}

static int w_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (term_is_tuple(msg) && term_tuple_arity(msg) == 5 && term_tuple_elems(msg)[4] == A("killed"))
        atomic_fetch_add(&downs, 1);
    else
        atomic_fetch_add(&downs_bad, 1);
    return GD_OK;
}

static const sched_behaviour_t watcher_beh = {w_init, w_handle, NULL, NULL};

/* Chain link: arg = pid to link to, or []. */
static int chain_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return term_is_local_pid(arg) ? sched_link(ctx, arg) : GD_OK;
}

static int idle_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return GD_OK;
}

static const sched_behaviour_t chain_beh = {chain_init, idle_handle, NULL, NULL};

static void test_monitor_storm(void)
{
    atomic_store(&downs, 0);
    atomic_store(&downs_bad, 0);
    st_start(2);
    int ntargets = ST_SCALE(200, 50), nwatchers = ST_SCALE(100, 20);
    term_t *targets = calloc((size_t)ntargets, sizeof *targets);
    term_t list = TERM_NIL;
    for (int i = 0; i < ntargets; i++) {
        CU_ASSERT_FATAL(sched_spawn(NULL, &chain_beh, TERM_NIL, &targets[i]) == GD_OK);
        list = st_tuple(1, list); /* keep the test heap busy */
    }
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    list = TERM_NIL;
    for (int i = ntargets - 1; i >= 0; i--)
        CU_ASSERT_FATAL(heap_cons(&h, targets[i], list, &list) == GD_OK);
    for (int w = 0; w < nwatchers; w++) {
        term_t *e, arg, pid;
        CU_ASSERT_FATAL(heap_make_tuple(&h, 2, &e, &arg) == GD_OK);
        e[0] = list;
        e[1] = w % 2 ? A("true") : A("false");
        CU_ASSERT_FATAL(sched_spawn(NULL, &watcher_beh, arg, &pid) == GD_OK);
    }
    /* Kill the targets while the watchers may still be setting up: a
     * monitor that arrives late gets noproc (counted as bad), so wait for
     * the monitors first. */
    uint64_t want_monitors = (uint64_t)nwatchers / 2 * (uint64_t)ntargets +
                             (uint64_t)(nwatchers - nwatchers / 2) * (uint64_t)ntargets / 2;
    uint64_t end = st_now_ns() + 30000000000ull, have = 0;
    while (st_now_ns() < end) {
        have = 0;
        for (int i = 0; i < ntargets; i++) {
            sched_process_info_t info;
            if (sched_process_info(targets[i], &info) == GD_OK)
                have += info.monitored_by;
        }
        if (have == want_monitors)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(have == want_monitors);
    for (int i = 0; i < ntargets; i++)
        CU_ASSERT(sched_exit_pid(NULL, targets[i], A("kill")) == GD_OK);
    CU_ASSERT(sched_wait_exit(targets, (size_t)ntargets, 30000) == GD_OK);
    end = st_now_ns() + 30000000000ull;
    while (atomic_load(&downs) < want_monitors && st_now_ns() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(atomic_load(&downs) == want_monitors);
    CU_ASSERT(atomic_load(&downs_bad) == 0);
    heap_destroy(&h);
    free(targets);
    st_stop();
}

static void test_link_chain(void)
{
    st_start(2);
    int n = ST_SCALE(5000, 500);
    term_t prev = TERM_NIL, first = TERM_NIL;
    for (int i = 0; i < n; i++) {
        term_t pid;
        CU_ASSERT_FATAL(sched_spawn(NULL, &chain_beh, prev, &pid) == GD_OK);
        if (i == 0)
            first = pid;
        prev = pid;
    }
    /* Let every link settle, then kill the first: the exit runs down the
     * whole chain (no process traps). */
    uint64_t end = st_now_ns() + 30000000000ull;
    sched_process_info_t info;
    while (st_now_ns() < end && sched_process_info(prev, &info) == GD_OK && info.links != 1) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(sched_process_count() == (uint32_t)n);
    CU_ASSERT(sched_exit_pid(NULL, first, A("boom")) == GD_OK);
    CU_ASSERT(sched_wait_count(0, 30000) == GD_OK);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"many senders to one receiver", test_many_senders},
    {"fragments built on threads, attached on schedulers", test_fragments_across_threads},
    {"ping-pong pairs", test_pingpong_pairs},
    {"wake-up storm from foreign threads", test_wakeup_storm},
    {"wake-up storm, pushes stalled before their link", test_wakeup_storm_stalled_pushes},
    {"monitor storm", test_monitor_storm},
    {"link chain", test_link_chain},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_concurrency", gd_tests)
