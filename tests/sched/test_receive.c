/*
 * test_receive.c — selective receive for behaviours: each queued message is
 * offered to the predicate once however often the process wakes (the save
 * pointer), messages skipped stay queued in order, and a receive for a
 * freshly made reference skips the messages queued before the ref (OTP's
 * reference trick); sched_suspend holds a behaviour's callbacks until
 * sched_resume; sched_flush drops the queued messages a predicate picks.
 */
#include <time.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

static _Atomic uint64_t go_calls, reply_calls;
static int64_t order[4096]; /* messages handled, in order (owner-written) */
static _Atomic size_t norder;

static bool pred_go(term_t msg, void *arg)
{
    atomic_fetch_add(&go_calls, 1);
    return msg == A("go");
}

/* {reply, R} with R the ref kept in the dictionary. */
static bool pred_reply(term_t msg, void *arg)
{
    sched_ctx_t *ctx = arg;
    atomic_fetch_add(&reply_calls, 1);
    return term_is_tuple(msg) && term_tuple_arity(msg) == 2 &&
           term_tuple_elems(msg)[0] == A("reply") &&
           st_term_eq(term_tuple_elems(msg)[1], sched_dict_get(ctx, A("ref")));
}

static void record(int64_t v)
{
    size_t i = atomic_load(&norder);
    if (i < 4096)
        order[i] = v;
    atomic_store(&norder, i + 1);
}

/* arg: the echo observer. */
static int sel_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    sched_receive(ctx, pred_go, NULL);
    return GD_OK;
}

static int sel_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (msg == A("go")) {
        record(-1);
        term_t ref, *e, t, *r, rt;
        int rc = sched_make_ref(ctx, &ref);
        if (rc == GD_OK)
            rc = sched_dict_put(ctx, A("ref"), ref, NULL);
        if (rc == GD_OK)
            rc = heap_make_tuple(sched_heap(ctx), 2, &r, &rt);
        if (rc == GD_OK)
            rc = heap_make_tuple(sched_heap(ctx), 3, &e, &t);
        if (rc != GD_OK)
            return rc;
        r[0] = A("reply");
        r[1] = ref;
        e[0] = A("send");
        e[1] = sched_self(ctx);
        e[2] = rt;
        /* The echo sends {reply, Ref} back. */
        rc = sched_send(ctx, *state, t);
        if (rc != GD_OK)
            return rc;
        sched_receive_ref(ctx, ref, pred_reply, ctx);
        return GD_OK;
    }
    if (term_is_tuple(msg)) {
        record(-2);
        return GD_OK;
    }
    record(term_small_value(msg));
    return GD_OK;
}

static const sched_behaviour_t sel_beh = {sel_init, sel_handle, NULL, NULL};

static bool wait_counter(_Atomic uint64_t *c, uint64_t n)
{
    uint64_t end = st_now_ns() + 10000000000ull;
    while (atomic_load(c) < n && st_now_ns() < end) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(c) == n;
}

static void test_selective_receive(void)
{
    atomic_store(&go_calls, 0);
    atomic_store(&reply_calls, 0);
    atomic_store(&norder, 0);
    st_start(2);
    term_t echo = st_spawn_observer(), sel;
    CU_ASSERT_FATAL(sched_spawn(NULL, &sel_beh, echo, &sel) == GD_OK);
    /* Junk in batches, each batch after the previous one was scanned: the
     * process wakes once per batch at least, and each message is offered
     * to the predicate exactly once. */
    int batches = 5, per = 100;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < per; i++)
            st_send(sel, S(b * per + i));
        CU_ASSERT(wait_counter(&go_calls, (uint64_t)(b + 1) * (uint64_t)per));
    }
    CU_ASSERT(st_wait_idle(sel));
    CU_ASSERT(atomic_load(&go_calls) == (uint64_t)(batches * per));
    CU_ASSERT(atomic_load(&norder) == 0); /* nothing delivered while selecting */
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(sel, &info) == GD_OK &&
              info.message_queue_len == (uint32_t)(batches * per));
    /* go: delivered past the junk; the reply receive starts at the mark
     * made with the ref, so the 500 older messages are not offered again. */
    st_send(sel, A("go"));
    CU_ASSERT(wait_counter(&go_calls, (uint64_t)(batches * per) + 1));
    size_t want = (size_t)(batches * per) + 2;
    uint64_t end = st_now_ns() + 10000000000ull;
    while (atomic_load(&norder) < want && st_now_ns() < end) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT_FATAL(atomic_load(&norder) == want);
    CU_ASSERT(atomic_load(&reply_calls) == 1);
    /* Order: go, the reply, then the junk in arrival order. */
    CU_ASSERT(order[0] == -1);
    CU_ASSERT(order[1] == -2);
    for (int i = 0; i < batches * per; i++)
        CU_ASSERT(order[i + 2] == i);
    st_stop();
}

/* sched_suspend: a behaviour that handles 'pause' suspends itself; the
 * messages sent meanwhile are not run (it waits, not queued: no spin)
 * until sched_resume, then run in order; a suspended process can still be
 * killed. */
static _Atomic uint64_t handled;

static int susp_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    *state = arg;
    return GD_OK;
}

static int susp_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    if (msg == A("pause"))
        return sched_suspend(ctx);
    record(term_small_value(msg));
    atomic_fetch_add(&handled, 1);
    return GD_OK;
}

static const sched_behaviour_t susp_beh = {susp_init, susp_handle, NULL, NULL};

static void test_suspend_resume(void)
{
    atomic_store(&handled, 0);
    atomic_store(&norder, 0);
    st_start(2);
    term_t p;
    CU_ASSERT_FATAL(sched_spawn(NULL, &susp_beh, TERM_NIL, &p) == GD_OK);
    st_send(p, S(0));
    CU_ASSERT(wait_counter(&handled, 1));
    st_send(p, A("pause"));
    for (int i = 1; i <= 100; i++)
        st_send(p, S(i));
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    sched_process_info_t info;
    CU_ASSERT(atomic_load(&handled) == 1);
    CU_ASSERT(sched_process_info(p, &info) == GD_OK && info.status == SCHED_STATUS_WAITING &&
              info.message_queue_len == 100);
    CU_ASSERT(sched_message_queue_len(p) == 100);
    uint64_t reds = info.reductions;
    nanosleep(&ts, NULL);
    CU_ASSERT(sched_process_info(p, &info) == GD_OK && info.reductions == reds); /* no spin */
    CU_ASSERT(sched_resume(p) == GD_OK);
    CU_ASSERT(wait_counter(&handled, 101));
    for (int i = 0; i <= 100; i++)
        CU_ASSERT(order[i] == i);
    /* Killed while suspended. */
    st_send(p, A("pause"));
    st_send(p, S(101));
    nanosleep(&ts, NULL);
    CU_ASSERT(sched_exit_pid(NULL, p, A("kill")) == GD_OK);
    CU_ASSERT(sched_wait_exit(&p, 1, 5000) == GD_OK);
    CU_ASSERT(atomic_load(&handled) == 101);
    CU_ASSERT(sched_resume(p) == GD_OK); /* a dead pid: nothing */
    CU_ASSERT(sched_message_queue_len(p) == 0);
    st_stop();
}

/* Flush: the process sends itself 1 2 1 3 1 in init; all five are in its
 * queue when 1 is handled, which flushes the other 1s (and only them). */
static bool pred_one(term_t msg, void *arg)
{
    (void)arg;
    return msg == S(1);
}

static int flush_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    *state = TERM_NIL;
    static const int64_t sent[] = {1, 2, 1, 3, 1};
    int rc = GD_OK;
    for (size_t i = 0; i < 5 && rc == GD_OK; i++)
        rc = sched_send(ctx, sched_self(ctx), S(sent[i]));
    return rc;
}

static int flush_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    record(term_small_value(msg));
    if (msg == S(1))
        record(100 + (int64_t)sched_flush(ctx, pred_one, NULL));
    atomic_fetch_add(&handled, 1);
    return GD_OK;
}

static const sched_behaviour_t flush_beh = {flush_init, flush_handle, NULL, NULL};

static void test_flush(void)
{
    atomic_store(&handled, 0);
    atomic_store(&norder, 0);
    st_start(2);
    term_t p;
    CU_ASSERT_FATAL(sched_spawn(NULL, &flush_beh, TERM_NIL, &p) == GD_OK);
    CU_ASSERT(wait_counter(&handled, 3));
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    CU_ASSERT(atomic_load(&handled) == 3);
    CU_ASSERT_FATAL(atomic_load(&norder) == 4);
    CU_ASSERT(order[0] == 1 && order[1] == 102 && order[2] == 2 && order[3] == 3);
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(p, &info) == GD_OK && info.message_queue_len == 0);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"selective receive: save pointer and ref trick", test_selective_receive},
    {"suspend until resumed", test_suspend_resume},
    {"flush drops matching queued messages", test_flush},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_receive", gd_tests)
