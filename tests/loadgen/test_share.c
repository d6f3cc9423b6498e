/*
 * test_share.c — a share of `girder bench` clients inside one node, with
 * no distribution: the target is this node itself ({echo, Node} naming
 * this node is a local send), served by a local echo process that can be
 * told to drop, duplicate or change every Nth reply.  Checks the counts
 * the share reports: completed operations, lost, misordered and errors,
 * closed and open loop, and the payload parser.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "loadgen.h"

/* ---- the echo server ---- */

/* FAULT_HOLD: every request is held and answered only after
 * HOLD_QUIET_MS without a new one, past the end of a run whose warm-up
 * and duration are shorter. */
enum fault { FAULT_NONE = 0, FAULT_DROP, FAULT_DUP, FAULT_CHANGE, FAULT_HOLD };
#define HOLD_QUIET_MS 600
#define FAULT_EVERY 50

/* state: {Fault, Count, Held} (Held: the requests FAULT_HOLD keeps) */
static int echo_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t *e;
    int rc = heap_make_tuple(sched_heap(ctx), 3, &e, state);
    if (rc != 0)
        return rc;
    e[0] = arg;
    e[1] = term_make_small(0);
    e[2] = TERM_NIL;
    return sched_register(ctx, heap_atom("echo"));
}

static int reply_to(sched_ctx_t *ctx, term_t from, term_t body)
{
    term_t *e, reply;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &reply);
    if (rc != 0)
        return rc;
    e[0] = heap_atom("echo_reply");
    e[1] = body;
    return sched_send(ctx, from, reply);
}

/* FAULT_HOLD: keeps msg, or answers every kept request on the timeout. */
static int echo_hold(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t *st = term_tuple_elems(*state);
    if (msg == heap_atom("timeout")) {
        for (term_t l = st[2]; term_is_list(l); l = term_cdr(l)) {
            const term_t *req = term_tuple_elems(term_car(l));
            int rc = reply_to(ctx, req[0], req[1]);
            if (rc != 0)
                return rc;
        }
        st[2] = TERM_NIL;
        return 0;
    }
    /* A new state tuple: an older one must not be made to point at a
     * younger term (the generational collector relies on it). */
    term_t held, *e, next;
    int rc = heap_cons(sched_heap(ctx), msg, st[2], &held);
    if (rc == 0)
        rc = heap_make_tuple(sched_heap(ctx), 3, &e, &next);
    if (rc != 0)
        return rc;
    const term_t *old = term_tuple_elems(*state);
    e[0] = old[0];
    e[1] = old[1];
    e[2] = held;
    *state = next;
    sched_set_timeout(ctx, HOLD_QUIET_MS);
    return 0;
}

static int echo_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (term_small_value(term_tuple_elems(*state)[0]) == FAULT_HOLD &&
        (msg == heap_atom("timeout") || (term_is_tuple(msg) && term_tuple_arity(msg) == 2 &&
                                         term_is_pid(term_tuple_elems(msg)[0]))))
        return echo_hold(ctx, msg, state);
    if (!term_is_tuple(msg) || term_tuple_arity(msg) != 2 || !term_is_pid(term_tuple_elems(msg)[0]))
        return 0;
    term_t *st = term_tuple_elems(*state);
    int64_t n = term_small_value(st[1]);
    st[1] = term_make_small(n + 1);
    enum fault f = (enum fault)term_small_value(st[0]);
    bool hit = n % FAULT_EVERY == FAULT_EVERY - 1;
    term_t from = term_tuple_elems(msg)[0], body = term_tuple_elems(msg)[1];
    if (hit && f == FAULT_DROP)
        return 0;
    term_t *e, reply;
    if (hit && f == FAULT_CHANGE) {
        term_t changed;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &changed);
        if (rc != 0)
            return rc;
        e[0] = term_tuple_elems(body)[0];
        e[1] = heap_atom("changed");
        body = changed;
    }
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &reply);
    if (rc != 0)
        return rc;
    e[0] = heap_atom("echo_reply");
    e[1] = body;
    rc = sched_send(ctx, from, reply);
    if (rc == 0 && hit && f == FAULT_DUP)
        rc = sched_send(ctx, from, reply);
    return rc;
}

static const sched_behaviour_t echo_beh = {echo_init, echo_handle, NULL, NULL};

/* ---- a coordinator that collects one share's report ---- */

typedef struct outcome {
    lg_params_t p;
    uint64_t clients;
    bool done;
    uint64_t ops, errors, lost, misordered, progress;
} outcome_t;

static int coord(sched_ctx_t *ctx, term_t arg)
{
    outcome_t *o = lg_term_ptr(arg);
    if (lg_share_start(ctx, &o->p, o->clients, 0, sched_self(ctx)) != 0)
        return 0;
    for (;;) {
        term_t msg;
        if (sched_receive_wait(ctx, NULL, NULL, 20000, &msg) != 0)
            return 0;
        if (!term_is_tuple(msg) || term_tuple_arity(msg) != 5)
            continue;
        const term_t *e = term_tuple_elems(msg);
        if (e[0] == heap_atom("girder_bench_progress")) {
            o->progress++;
            continue;
        }
        if (e[0] != heap_atom("girder_bench_done"))
            return 0;
        heap_bin_view_t v;
        heap_bin_view(e[2], &v);
        bench_series_t *s = NULL;
        if (bench_series_decode(v.bytes, v.bit_size / 8, &s) != 0)
            return 0;
        o->ops = bench_series_total(s)->count;
        o->errors = bench_series_errors(s);
        bench_series_free(s);
        o->lost = (uint64_t)term_small_value(e[3]);
        o->misordered = (uint64_t)term_small_value(e[4]);
        o->done = true;
        return 0;
    }
}

static outcome_t run(enum fault f, uint64_t clients, double rate, uint64_t duration_ms)
{
    sched_opts_t so = {.schedulers = 2};
    CU_ASSERT_FATAL(sched_start(&so) == 0);
    term_t echo;
    CU_ASSERT_FATAL(sched_spawn(NULL, &echo_beh, term_make_small(f), &echo) == 0);
    while (!term_is_pid(sched_whereis(heap_atom("echo"))))
        ;
    outcome_t o = {.clients = clients};
    o.p.workload = lg_workload_find("echo");
    o.p.clients = clients;
    o.p.rate_per_s = rate;
    o.p.duration_ms = duration_ms;
    o.p.warmup_ms = 100;
    o.p.interval_ms = 100;
    o.p.payload_shape = LG_PAYLOAD_BINARY;
    o.p.payload_size = 100; /* over 64 bytes: the shared refc binary */
    o.p.target = heap_node_name();
    o.p.server = heap_atom("echo");
    o.p.mfa_m = o.p.mfa_f = heap_atom("undefined");
    CU_ASSERT(lg_run_process(coord, &o, 30000) == 0);
    sched_stop();
    CU_ASSERT(o.done);
    printf(" [ops %llu errors %llu lost %llu misordered %llu progress %llu] ",
           (unsigned long long)o.ops, (unsigned long long)o.errors, (unsigned long long)o.lost,
           (unsigned long long)o.misordered, (unsigned long long)o.progress);
    return o;
}

static void test_closed_loop_clean(void)
{
    /* Every client completed round trips (how many depends on the build
     * and the machine's load: TSan on a busy machine does a few hundred). */
    outcome_t o = run(FAULT_NONE, 50, 0, 500);
    CU_ASSERT(o.ops >= 50);
    CU_ASSERT_EQUAL(o.errors, 0);
    CU_ASSERT_EQUAL(o.lost, 0);
    CU_ASSERT_EQUAL(o.misordered, 0);
    CU_ASSERT(o.progress >= 2); /* ~6 intervals of 100 ms; fewer when starved */
}

static void test_drops_count_lost(void)
{
    /* Each client loses at most one request: it then waits for it until
     * the grace ends, when the master counts it lost. */
    outcome_t o = run(FAULT_DROP, 20, 0, 300);
    CU_ASSERT(o.lost > 0);
    CU_ASSERT(o.lost <= 20);
    CU_ASSERT_EQUAL(o.errors, 0);
}

static void test_duplicates_count_misordered(void)
{
    outcome_t o = run(FAULT_DUP, 20, 0, 300);
    CU_ASSERT(o.misordered > 0);
    CU_ASSERT_EQUAL(o.lost, 0);
    CU_ASSERT_EQUAL(o.errors, 0);
}

static void test_changed_replies_count_errors(void)
{
    outcome_t o = run(FAULT_CHANGE, 20, 0, 300);
    CU_ASSERT(o.errors > 0);
    /* ops counts the good replies only: one in FAULT_EVERY of all the
     * replies (good and changed) is changed. */
    CU_ASSERT(o.errors * FAULT_EVERY <= o.ops + o.errors + FAULT_EVERY);
    CU_ASSERT_EQUAL(o.lost, 0);
}

static void test_replies_after_the_end_not_counted(void)
{
    /* Every first request is answered HOLD_QUIET_MS after it arrived: past
     * the end (warm-up 100 ms + 300 ms) but well within the grace.  They
     * are checked (no error, none lost) but not counted as operations of
     * the measured window. */
    outcome_t o = run(FAULT_HOLD, 20, 0, 300);
    CU_ASSERT(o.done);
    CU_ASSERT_EQUAL(o.ops, 0);
    CU_ASSERT_EQUAL(o.errors, 0);
    CU_ASSERT_EQUAL(o.lost, 0);
    CU_ASSERT_EQUAL(o.misordered, 0);
}

static void test_open_loop_rate(void)
{
    /* 2000 requests/s over 20 clients for 1 s (after the warm-up): the
     * completions follow the schedule, not the server's speed (a closed
     * loop would do many times more; a slow sanitizer build a little
     * less). */
    outcome_t o = run(FAULT_NONE, 20, 2000, 1000);
    CU_ASSERT(o.ops >= 1500 && o.ops <= 2300);
    CU_ASSERT_EQUAL(o.lost, 0);
}

static void test_payload_parse(void)
{
    enum lg_payload_shape s;
    uint64_t n;
    CU_ASSERT(lg_payload_parse("binary:100", &s, &n) && s == LG_PAYLOAD_BINARY && n == 100);
    CU_ASSERT(lg_payload_parse("binary", &s, &n) && n == 32);
    CU_ASSERT(lg_payload_parse("map:7", &s, &n) && s == LG_PAYLOAD_MAP && n == 7);
    CU_ASSERT(lg_payload_parse("atom", &s, &n) && s == LG_PAYLOAD_ATOM);
    CU_ASSERT(lg_payload_parse("int", &s, &n) && s == LG_PAYLOAD_INT);
    CU_ASSERT(!lg_payload_parse("atom:3", &s, &n));
    CU_ASSERT(!lg_payload_parse("binary:", &s, &n));
    CU_ASSERT(!lg_payload_parse("binary:-1", &s, &n));
    CU_ASSERT(!lg_payload_parse("binary:99999999999", &s, &n));
    CU_ASSERT(!lg_payload_parse("list:1000001", &s, &n));
    CU_ASSERT(!lg_payload_parse("bogus:1", &s, &n));
    CU_ASSERT(!lg_payload_parse("", &s, &n));
}

static const gd_test_case_t gd_tests[] = {
    {"closed loop, clean server", test_closed_loop_clean},
    {"dropped replies count lost", test_drops_count_lost},
    {"duplicated replies count misordered", test_duplicates_count_misordered},
    {"changed replies count errors", test_changed_replies_count_errors},
    {"replies after the end are not counted", test_replies_after_the_end_not_counted},
    {"open loop follows the rate", test_open_loop_rate},
    {"payload specs", test_payload_parse},
    {NULL, NULL},
};

GD_TEST_MAIN("loadgen_share", gd_tests)
