/*
 * test_timer.c — timers: send_after (never early, fired in deadline
 * order), cancel_timer before and after the fire and from another process
 * on another scheduler, behaviour timeouts (sched_set_timeout) with and
 * without a selection, a timeout armed on one scheduler and cancelled after
 * the process migrated, and 100k pending timers costing no CPU while idle.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* ---- an event log with times (any thread) ---- */

typedef struct ev {
    term_t self;
    term_t what;  /* an immediate: the message, or `timeout` */
    int64_t a, b; /* cancel: rc, left */
    uint64_t t_ns;
    pthread_t thread;
} ev_t;

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static ev_t evs[4096];
static size_t nev;

static void ev_add(term_t self, term_t what, int64_t a, int64_t b)
{
    pthread_mutex_lock(&ev_lock);
    if (nev < 4096)
        evs[nev++] = (ev_t){self, what, a, b, st_now_ns(), pthread_self()};
    pthread_mutex_unlock(&ev_lock);
}

static size_t ev_count(void)
{
    pthread_mutex_lock(&ev_lock);
    size_t n = nev;
    pthread_mutex_unlock(&ev_lock);
    return n;
}

static ev_t ev_get(size_t i)
{
    pthread_mutex_lock(&ev_lock);
    ev_t e = evs[i];
    pthread_mutex_unlock(&ev_lock);
    return e;
}

static void ev_reset(void)
{
    pthread_mutex_lock(&ev_lock);
    nev = 0;
    pthread_mutex_unlock(&ev_lock);
}

/* Waits up to 5 s for n events. */
static bool ev_wait(size_t n)
{
    uint64_t end = st_now_ns() + 5000000000u;
    while (ev_count() < n) {
        if (st_now_ns() > end)
            return false;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Index of the first event `what` from self, or -1. */
static long ev_find(term_t self, term_t what)
{
    size_t n = ev_count();
    for (size_t i = 0; i < n; i++) {
        ev_t e = ev_get(i);
        if (e.self == self && e.what == what)
            return (long)i;
    }
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the timer process ---- */

static bool pred_go(term_t msg, void *arg)
{
    (void)arg;
    return msg == A("go");
}

static _Atomic bool spin_release;

/*
 * Commands:
 *   {after, Ms, Dest, Msg}  send_after, the tref kept (dictionary key tref)
 *   {cancel, _}             cancels the kept tref; logs cancel with rc, left
 *   {cancel_ref, Ref}       cancels Ref; logs cancel with rc, left
 *   {give_ref, To}          sends {tref, Tref} to To
 *   {timeout, Ms}           sched_set_timeout(Ms)
 *   {select_go, Ms}         only `go` is delivered, with a timeout of Ms
 *   {register, Name}        registers
 *   {spin, _}               loops in C until spin_release
 *   {tref, Ref}             cancels Ref (a tref sent by another process)
 * Anything else immediate is logged.
 */
static int tp_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    (void)state;
    ev_add(sched_self(ctx), A("init"), 0, 0);
    return GD_OK;
}

static int tp_cancel(sched_ctx_t *ctx, term_t ref)
{
    int64_t left = -1;
    int rc = sched_cancel_timer(ctx, ref, &left);
    ev_add(sched_self(ctx), A("cancel"), rc, left);
    return GD_OK;
}

static int tp_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    term_t self = sched_self(ctx);
    if (term_is_tuple(msg) && term_tuple_arity(msg) >= 2) {
        term_t *e = term_tuple_elems(msg);
        size_t n = term_tuple_arity(msg);
        if (e[0] == A("after") && n == 4) {
            term_t tref;
            int rc = sched_send_after(ctx, (uint64_t)term_small_value(e[1]), e[2], e[3], &tref);
            if (rc != GD_OK)
                return rc;
            return sched_dict_put(ctx, A("tref"), tref, NULL);
        }
        if (e[0] == A("cancel"))
            return tp_cancel(ctx, sched_dict_get(ctx, A("tref")));
        if (e[0] == A("cancel_ref") || e[0] == A("tref"))
            return tp_cancel(ctx, e[1]);
        if (e[0] == A("give_ref")) {
            term_t *t, tt;
            int rc = heap_make_tuple(sched_heap(ctx), 2, &t, &tt);
            if (rc != GD_OK)
                return rc;
            t[0] = A("tref");
            t[1] = sched_dict_get(ctx, A("tref"));
            return sched_send(ctx, e[1], tt);
        }
        if (e[0] == A("timeout")) {
            sched_set_timeout(ctx, term_small_value(e[1]));
            ev_add(self, A("armed"), 0, 0);
            return GD_OK;
        }
        if (e[0] == A("select_go")) {
            sched_receive(ctx, pred_go, NULL);
            sched_set_timeout(ctx, term_small_value(e[1]));
            ev_add(self, A("armed"), 0, 0);
            return GD_OK;
        }
        if (e[0] == A("register")) {
            ev_add(self, A("registered"), 0, 0);
            return sched_register(ctx, e[1]);
        }
        if (e[0] == A("spin")) {
            ev_add(self, A("spinning"), 0, 0);
            while (!atomic_load(&spin_release)) {
            }
            return GD_OK;
        }
    }
    ev_add(self, term_is_immediate(msg) ? msg : TERM_NONE, 0, 0);
    return GD_OK;
}

static const sched_behaviour_t tp_beh = {tp_init, tp_handle, NULL, NULL};

static term_t spawn_tp(int scheduler)
{
    sched_spawn_opts_t o = {.scheduler = scheduler};
    term_t pid;
    size_t n = ev_count();
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &tp_beh, TERM_NIL, &o, &pid, NULL) == GD_OK);
    CU_ASSERT_FATAL(ev_wait(n + 1));
    return pid;
}

/* Starts a node whose watchdog never marks a scheduler stuck unless asked. */
static void start(unsigned n, uint64_t stuck_ns)
{
    sched_opts_t o = {.schedulers = n, .stuck_ns = stuck_ns};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    st_start_heap_only();
    ev_reset();
}

/* ---- tests ---- */

static void test_send_after_fires(void)
{
    start(2, 0);
    term_t tp = spawn_tp(0);
    st_send(tp, st_tuple(2, A("register"), A("tp_name")));
    CU_ASSERT_FATAL(ev_wait(2));
    uint64_t t0 = st_now_ns();
    CU_ASSERT_FATAL(sched_send_after(NULL, 30, tp, S(7), NULL) == GD_OK);
    /* A registered name is looked up when the timer fires. */
    CU_ASSERT_FATAL(sched_send_after(NULL, 10, A("tp_nobody"), S(8), NULL) == GD_OK);
    CU_ASSERT_FATAL(sched_send_after(NULL, 20, A("tp_name"), S(9), NULL) == GD_OK);
    CU_ASSERT_FATAL(ev_wait(4));
    ev_t e9 = ev_get(2), e7 = ev_get(3);
    CU_ASSERT_EQUAL(e9.what, S(9));
    CU_ASSERT_EQUAL(e7.what, S(7));
    CU_ASSERT(e9.t_ns - t0 >= 20000000u); /* never early */
    CU_ASSERT(e7.t_ns - t0 >= 30000000u);
    CU_ASSERT(ev_find(tp, S(8)) < 0); /* nobody was registered */
    /* Bad arguments. */
    term_t ref;
    CU_ASSERT_EQUAL(sched_send_after(NULL, 1, S(1), S(1), NULL), GD_EBADARG);
    CU_ASSERT_EQUAL(sched_send_after(NULL, 1ull << 32, tp, S(1), NULL), GD_EBADARG);
    CU_ASSERT_EQUAL(sched_send_after(NULL, 1, tp, S(1), &ref), GD_EINVAL);
    CU_ASSERT_EQUAL(sched_cancel_timer(NULL, S(1), NULL), GD_EBADARG);
    /* A reference that names no timer. */
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    CU_ASSERT_FATAL(heap_make_local_ref(&h, (uint32_t[3]){1, 2, 3}, &ref) == GD_OK);
    CU_ASSERT_EQUAL(sched_cancel_timer(NULL, ref, NULL), SCHED_ENOTIMER);
    CU_ASSERT_FATAL(heap_make_local_ref(&h, (uint32_t[3]){1, 2, 3u << 16}, &ref) == GD_OK);
    CU_ASSERT_EQUAL(sched_cancel_timer(NULL, ref, NULL), SCHED_ENOTIMER);
    CU_ASSERT_FATAL(heap_make_local_ref(&h, (uint32_t[3]){1, 2, 0xFFFFu << 16}, &ref) == GD_OK);
    CU_ASSERT_EQUAL(sched_cancel_timer(NULL, ref, NULL), SCHED_ENOTIMER);
    heap_destroy(&h);
    st_stop();
    CU_ASSERT_EQUAL(sched_send_after(NULL, 1, tp, S(1), NULL), SCHED_ESTOPPED);
}

/* {order, Obs}: arms timers to Obs in a scrambled order from one process. */
static int ord_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)state;
    static const int ms[] = {50, 10, 40, 20, 60, 30, 15, 45};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        int rc = sched_send_after(ctx, (uint64_t)ms[i], arg, S(ms[i]), NULL);
        if (rc != GD_OK)
            return rc;
    }
    return GD_OK;
}

static int ord_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    (void)msg;
    (void)state;
    return GD_OK;
}

static const sched_behaviour_t ord_beh = {ord_init, ord_handle, NULL, NULL};

static void test_fire_order(void)
{
    start(2, 0);
    term_t tp = spawn_tp(1);
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn(NULL, &ord_beh, tp, &pid) == GD_OK);
    CU_ASSERT_FATAL(ev_wait(9));
    int64_t prev = 0;
    for (size_t i = 1; i < 9; i++) {
        ev_t e = ev_get(i);
        CU_ASSERT(term_is_small(e.what));
        CU_ASSERT(term_small_value(e.what) > prev);
        prev = term_small_value(e.what);
    }
    st_stop();
}

static void test_cancel(void)
{
    start(2, 0);
    term_t tp = spawn_tp(1);
    /* Before the fire: 0 and the time left; the message never comes. */
    st_send(tp, st_tuple(4, A("after"), S(300), tp, S(1)));
    st_send(tp, st_tuple(2, A("cancel"), S(0)));
    CU_ASSERT_FATAL(ev_wait(2));
    ev_t e = ev_get(1);
    CU_ASSERT_EQUAL(e.what, A("cancel"));
    CU_ASSERT_EQUAL(e.a, GD_OK);
    CU_ASSERT(e.b > 250 && e.b <= 300);
    /* Twice: gone. */
    st_send(tp, st_tuple(2, A("cancel"), S(0)));
    CU_ASSERT_FATAL(ev_wait(3));
    CU_ASSERT_EQUAL(ev_get(2).a, SCHED_ENOTIMER);
    /* After the fire: ENOTIMER. */
    st_send(tp, st_tuple(4, A("after"), S(5), tp, S(2)));
    CU_ASSERT_FATAL(ev_wait(4));
    CU_ASSERT_EQUAL(ev_get(3).what, S(2));
    st_send(tp, st_tuple(2, A("cancel"), S(0)));
    CU_ASSERT_FATAL(ev_wait(5));
    CU_ASSERT_EQUAL(ev_get(4).a, SCHED_ENOTIMER);
    sleep_ms(350);
    CU_ASSERT(ev_find(tp, S(1)) < 0);
    CU_ASSERT_EQUAL(ev_count(), 5);
    st_stop();
}

/* Another process on another scheduler cancels the timer. */
static void test_cancel_cross_scheduler(void)
{
    start(2, 0);
    term_t a = spawn_tp(1), b = spawn_tp(2);
    st_send(a, st_tuple(4, A("after"), S(200), a, S(1)));
    st_send(a, st_tuple(2, A("give_ref"), b));
    CU_ASSERT_FATAL(ev_wait(3));
    ev_t e = ev_get(2);
    CU_ASSERT_EQUAL(e.self, b);
    CU_ASSERT_EQUAL(e.what, A("cancel"));
    CU_ASSERT_EQUAL(e.a, GD_OK);
    sleep_ms(250);
    CU_ASSERT(ev_find(a, S(1)) < 0);
    st_stop();
}

static void test_behaviour_timeout(void)
{
    start(2, 0);
    term_t tp = spawn_tp(1);
    /* Fires when nothing comes. */
    uint64_t t0 = st_now_ns();
    st_send(tp, st_tuple(2, A("timeout"), S(20)));
    CU_ASSERT_FATAL(ev_wait(3));
    ev_t e = ev_get(2);
    CU_ASSERT_EQUAL(e.what, A("timeout"));
    CU_ASSERT(e.t_ns - t0 >= 20000000u);
    /* A delivered message cancels it. */
    st_send(tp, st_tuple(2, A("timeout"), S(50)));
    st_send(tp, S(1));
    CU_ASSERT_FATAL(ev_wait(5));
    CU_ASSERT_EQUAL(ev_get(4).what, S(1));
    sleep_ms(80);
    CU_ASSERT_EQUAL(ev_count(), 5);
    /* ms < 0 cancels; 0 fires at once. */
    st_send(tp, st_tuple(2, A("timeout"), S(20)));
    st_send(tp, st_tuple(2, A("timeout"), S(-1)));
    sleep_ms(50);
    CU_ASSERT_EQUAL(ev_count(), 7);
    st_send(tp, st_tuple(2, A("timeout"), S(0)));
    CU_ASSERT_FATAL(ev_wait(9));
    CU_ASSERT_EQUAL(ev_get(8).what, A("timeout"));
    st_stop();
}

static void test_selection_timeout(void)
{
    start(2, 0);
    term_t tp = spawn_tp(1);
    /* A message the selection skips does not cancel the timeout. */
    uint64_t t0 = st_now_ns();
    st_send(tp, st_tuple(2, A("select_go"), S(40)));
    st_send(tp, S(5));
    CU_ASSERT_FATAL(ev_wait(3));
    ev_t e = ev_get(2);
    CU_ASSERT_EQUAL(e.what, A("timeout"));
    CU_ASSERT(e.t_ns - t0 >= 40000000u);
    /* The selection ended with the timeout: the skipped message comes. */
    CU_ASSERT_FATAL(ev_wait(4));
    CU_ASSERT_EQUAL(ev_get(3).what, S(5));
    /* A matching message cancels it. */
    st_send(tp, st_tuple(2, A("select_go"), S(40)));
    st_send(tp, S(6));
    st_send(tp, A("go"));
    CU_ASSERT_FATAL(ev_wait(7));
    CU_ASSERT_EQUAL(ev_get(5).what, A("go"));
    CU_ASSERT_EQUAL(ev_get(6).what, S(6));
    sleep_ms(80);
    CU_ASSERT_EQUAL(ev_count(), 7);
    st_stop();
}

/*
 * A timeout armed on one scheduler, then the process moves to another
 * thread (both schedulers are stuck in C loops, so the watchdog starts an
 * extra one, which takes the process's next wake-up) and a message cancels
 * the timeout there: no stale fire.
 */
static void test_timeout_after_migration(void)
{
    start(2, 1000000);
    atomic_store(&spin_release, false);
    term_t tp = spawn_tp(1), s1 = spawn_tp(1), s2 = spawn_tp(2);
    st_send(tp, st_tuple(2, A("timeout"), S(200)));
    CU_ASSERT_FATAL(ev_wait(4));
    ev_t armed = ev_get(3);
    CU_ASSERT_EQUAL(armed.what, A("armed"));
    st_send(s1, st_tuple(2, A("spin"), S(0)));
    st_send(s2, st_tuple(2, A("spin"), S(0)));
    CU_ASSERT_FATAL(ev_wait(6));
    sleep_ms(10); /* the watchdog marks both stuck */
    st_send(tp, S(1));
    CU_ASSERT_FATAL(ev_wait(7));
    ev_t moved = ev_get(6);
    CU_ASSERT_EQUAL(moved.what, S(1));
    CU_ASSERT(!pthread_equal(moved.thread, armed.thread));
    sleep_ms(300);
    CU_ASSERT(ev_find(tp, A("timeout")) < 0);
    /* Armed again on the new scheduler, it fires. */
    st_send(tp, st_tuple(2, A("timeout"), S(10)));
    CU_ASSERT_FATAL(ev_wait(9));
    CU_ASSERT_EQUAL(ev_get(8).what, A("timeout"));
    atomic_store(&spin_release, true);
    st_stop();
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* 100k pending timers: idle schedulers sleep (CPU ~0 over 200 ms); the
 * node stop frees them. */
static void test_many_pending_idle(void)
{
    start(2, 0);
    term_t tp = spawn_tp(1);
    size_t n = ST_SCALE(100000, 10000);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(sched_send_after(NULL, 60000 + i % 1000, tp, S((int64_t)i), NULL) == GD_OK);
    sleep_ms(50); /* let the schedulers settle */
    double c0 = cpu_seconds();
    uint64_t t0 = st_now_ns();
    sleep_ms(200);
    double used = cpu_seconds() - c0;
    double wall = (double)(st_now_ns() - t0) / 1e9;
    printf("\n  %zu pending timers: %.2f ms CPU in %.0f ms idle\n", n, used * 1e3, wall * 1e3);
    CU_ASSERT(used < 0.02 * wall);
    CU_ASSERT_EQUAL(ev_count(), 1);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"send_after: fires, never early; names resolved at the fire", test_send_after_fires},
    {"send_after from one process fires in deadline order", test_fire_order},
    {"cancel_timer before and after the fire", test_cancel},
    {"cancel_timer from a process on another scheduler", test_cancel_cross_scheduler},
    {"behaviour timeout: fires, cancelled by a message, -1, 0", test_behaviour_timeout},
    {"behaviour timeout with a selection", test_selection_timeout},
    {"timeout cancelled after the process migrated", test_timeout_after_migration},
    {"100k pending timers cost no CPU while idle", test_many_pending_idle},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_timer", gd_tests)
