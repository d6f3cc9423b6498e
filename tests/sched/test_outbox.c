/*
 * test_outbox.c — a process's messages to one receiver in a row leave in
 * batches (runq_t.outbox): they still arrive in order, before any signal
 * the sender sends after them, before a message from a child it spawns
 * after them, counted by process_info at once, and a long C loop that
 * charges reductions hands them over without ending its callback.
 */
#include <stdatomic.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* Messages the sender sends in a row: more than one outbox's worth, with
 * a part left over (the outbox holds up to 64). */
#define BURST 200

static _Atomic int64_t qlen_seen;
static _Atomic int sender_done;

/* Sends {n, 0..count-1} to `to`. */
static int burst(sched_ctx_t *ctx, term_t to, int count)
{
    for (int i = 0; i < count; i++) {
        term_t *e, m;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &m);
        if (rc != GD_OK)
            return rc;
        e[0] = A("n");
        e[1] = S(i);
        rc = sched_send(ctx, to, m);
        if (rc != GD_OK)
            return rc;
    }
    return GD_OK;
}

/* Starts `schedulers` schedulers, an observer R (on the last scheduler;
 * trapping exits when trap) with an empty log, and a sender running beh
 * on scheduler 1, then sends the sender {tag, R}.  Returns R; *sender
 * gets the sender's pid. */
static term_t start_burst(unsigned schedulers, const sched_behaviour_t *beh, const char *tag,
                          bool trap, term_t *sender)
{
    st_start(schedulers);
    atomic_store(&sender_done, 0);
    sched_spawn_opts_t on_first = {.scheduler = 1}, on_last = {.scheduler = (int)schedulers};
    term_t r = st_spawn_observer_opt(&on_last);
    if (trap)
        st_send(r, st_tuple(2, A("trap"), A("true")));
    CU_ASSERT_FATAL(st_wait_idle(r));
    st_log_reset();
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, beh, TERM_NIL, &on_first, sender, NULL) == GD_OK);
    st_send(*sender, st_tuple(2, A(tag), r));
    return r;
}

/* Waits for BURST + 1 log records, asserts that the first BURST are
 * {n, 0..BURST-1} and returns the one after them. */
static st_rec_t record_after_burst(void)
{
    CU_ASSERT_FATAL(st_log_wait(BURST + 1));
    for (size_t i = 0; i < BURST; i++) {
        st_rec_t rec = st_log_get(i);
        CU_ASSERT(rec.kind == ST_MSG && rec.a == A("n") && rec.b == S((int64_t)i));
    }
    return st_log_get(BURST);
}

static int sender_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    *state = arg;
    return GD_OK;
}

/* {burst_exit, R}: BURST messages, then an exit signal to R. */
static int burst_exit_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    term_t r = term_tuple_elems(msg)[1];
    int rc = burst(ctx, r, BURST);
    if (rc == GD_OK)
        rc = sched_exit_pid(ctx, r, A("after_burst"));
    atomic_store(&sender_done, 1);
    return rc;
}

static const sched_behaviour_t burst_exit_beh = {sender_init, burst_exit_handle, NULL, NULL};

static void test_signal_after_burst(void)
{
    term_t s;
    start_burst(2, &burst_exit_beh, "burst_exit", true, &s);
    st_rec_t last = record_after_burst();
    CU_ASSERT(last.kind == ST_EXIT && last.a == s && last.b == A("after_burst"));
    st_stop();
}

/* {burst_info, R}: 10 messages, then R's message_queue_len (R cannot run
 * meanwhile: one scheduler). */
static int burst_info_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    term_t r = term_tuple_elems(msg)[1];
    int rc = burst(ctx, r, 10);
    sched_process_info_t info;
    if (rc == GD_OK)
        rc = sched_process_info(r, &info);
    if (rc == GD_OK)
        atomic_store(&qlen_seen, info.message_queue_len);
    atomic_store(&sender_done, 1);
    return rc;
}

static const sched_behaviour_t burst_info_beh = {sender_init, burst_info_handle, NULL, NULL};

static void test_process_info_counts_burst(void)
{
    atomic_store(&qlen_seen, -1);
    term_t s;
    start_burst(1, &burst_info_beh, "burst_info", false, &s);
    CU_ASSERT_FATAL(st_log_wait(10));
    CU_ASSERT(atomic_load(&sender_done) == 1);
    CU_ASSERT_EQUAL(atomic_load(&qlen_seen), 10);
    st_stop();
}

/* The child: sends `child` to the receiver in its arg. */
static int child_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)state;
    return sched_send(ctx, arg, A("child"));
}

static int child_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx, (void)msg, (void)state;
    return GD_OK;
}

static const sched_behaviour_t child_beh = {child_init, child_handle, NULL, NULL};

/* {burst_spawn, R}: BURST messages, a child on the other scheduler that
 * sends R `child`, then 50 ms of plain C before the callback returns (so
 * the child runs while the sender's slice lasts). */
static int burst_spawn_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    term_t r = term_tuple_elems(msg)[1];
    int rc = burst(ctx, r, BURST);
    sched_spawn_opts_t on2 = {.scheduler = 2};
    term_t child;
    if (rc == GD_OK)
        rc = sched_spawn_opt(ctx, &child_beh, r, &on2, &child, NULL);
    uint64_t until = st_now_ns() + 50000000u;
    while (st_now_ns() < until) {
    }
    atomic_store(&sender_done, 1);
    return rc;
}

static const sched_behaviour_t burst_spawn_beh = {sender_init, burst_spawn_handle, NULL, NULL};

static void test_child_after_burst(void)
{
    term_t s;
    start_burst(2, &burst_spawn_beh, "burst_spawn", false, &s);
    st_rec_t last = record_after_burst();
    CU_ASSERT(last.kind == ST_MSG && last.a == A("child"));
    st_stop();
}

/* {burst_loop, R}: 10 messages, one sched_bump_reds, then a C loop that
 * waits (up to 2 s) for R to have logged all 10 before returning. */
static int burst_loop_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    term_t r = term_tuple_elems(msg)[1];
    int rc = burst(ctx, r, 10);
    (void)sched_bump_reds(ctx, 1);
    uint64_t until = st_now_ns() + 2000000000u;
    while (st_log_len() < 10 && st_now_ns() < until) {
    }
    atomic_store(&sender_done, st_log_len() >= 10 ? 1 : 2);
    return rc;
}

static const sched_behaviour_t burst_loop_beh = {sender_init, burst_loop_handle, NULL, NULL};

static void test_charged_loop_hands_over(void)
{
    term_t s;
    start_burst(2, &burst_loop_beh, "burst_loop", false, &s);
    uint64_t until = st_now_ns() + 5000000000u;
    while (atomic_load(&sender_done) == 0 && st_now_ns() < until) {
    }
    /* 1: the receiver had all ten while the sender's callback still ran. */
    CU_ASSERT_EQUAL(atomic_load(&sender_done), 1);
    CU_ASSERT(st_log_wait(10));
    st_stop();
}

static const gd_test_case_t cases[] = {
    {"a signal after a burst comes after all of it", test_signal_after_burst},
    {"process_info counts a burst at once", test_process_info_counts_burst},
    {"a child spawned after a burst is heard after it", test_child_after_burst},
    {"a C loop that charges reductions hands its burst over", test_charged_loop_hands_over},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_outbox", cases)
