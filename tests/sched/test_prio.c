/*
 * test_prio.c — run queue order on one scheduler: max before high before
 * normal, low taking every 8th of normal's turns; and preemption: a process
 * that keeps itself busy goes to the back of the queue after its slice, so
 * others queued behind it still run.
 */
#include <stdlib.h>
#include <time.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

static _Atomic bool gate_open;
static int order[64]; /* priorities in the order the processes ran init */
static _Atomic int norder;
static _Atomic int ndone; /* incremented after order[] is written (release) */

static int gate_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    while (!atomic_load(&gate_open)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return GD_OK;
}

static int plain_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

static int plain_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return GD_OK;
}

static const sched_behaviour_t gate_beh = {plain_init, gate_handle, NULL, NULL};

static int rec_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    int i = atomic_fetch_add(&norder, 1);
    if (i < 64)
        order[i] = (int)term_small_value(arg);
    atomic_fetch_add_explicit(&ndone, 1, memory_order_release);
    return GD_OK;
}

static const sched_behaviour_t rec_beh = {rec_init, plain_handle, NULL, NULL};

/* One scheduler that never counts as stuck (no rescue threads). */
static void start_one(void)
{
    sched_opts_t o = {.schedulers = 1, .stuck_ns = 60000000000ull};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
}

static void spawn_prio(enum sched_priority prio)
{
    sched_spawn_opts_t o = {.priority = prio};
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &rec_beh, S(prio), &o, &pid, NULL) == GD_OK);
}

static void test_priority_order(void)
{
    atomic_store(&gate_open, false);
    atomic_store(&norder, 0);
    atomic_store(&ndone, 0);
    start_one();
    term_t gate;
    CU_ASSERT_FATAL(sched_spawn(NULL, &gate_beh, TERM_NIL, &gate) == GD_OK);
    CU_ASSERT_FATAL(sched_send(NULL, gate, A("block")) == GD_OK);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL); /* the gate now holds the only scheduler */
    for (int i = 0; i < 10; i++)
        spawn_prio(SCHED_PRIO_LOW);
    for (int i = 0; i < 20; i++)
        spawn_prio(SCHED_PRIO_NORMAL);
    for (int i = 0; i < 3; i++)
        spawn_prio(SCHED_PRIO_HIGH);
    spawn_prio(SCHED_PRIO_MAX);
    atomic_store(&gate_open, true);
    uint64_t end = st_now_ns() + 5000000000u;
    while (atomic_load_explicit(&ndone, memory_order_acquire) < 34 && st_now_ns() < end)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    CU_ASSERT_FATAL(atomic_load_explicit(&ndone, memory_order_acquire) == 34);
    CU_ASSERT(order[0] == SCHED_PRIO_MAX);
    for (int i = 1; i <= 3; i++)
        CU_ASSERT(order[i] == SCHED_PRIO_HIGH);
    /* Low runs within normal's turns: one low per 8 picks while normals
     * wait, never starved until the normals are done. */
    int normals = 0, lows_early = 0;
    for (int i = 4; i < 34; i++) {
        if (order[i] == SCHED_PRIO_NORMAL)
            normals++;
        else if (order[i] == SCHED_PRIO_LOW && normals < 20)
            lows_early++;
    }
    CU_ASSERT(normals == 20);
    CU_ASSERT(lows_early >= 2 && lows_early <= 3);
    CU_ASSERT(order[4 + 7] == SCHED_PRIO_LOW);
    sched_stop();
}

/* Spinner: each `spin` charges 1000 reductions, counts, and sends itself
 * `spin` again: it always has work. */
static _Atomic uint64_t spins[2];

static int spin_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    atomic_fetch_add(&spins[term_small_value(*state)], 1);
    sched_bump_reds(ctx, 1000);
    return sched_send(ctx, sched_self(ctx), A("spin"));
}

static int spin_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    return sched_send(ctx, sched_self(ctx), A("spin"));
}

static const sched_behaviour_t spin_beh = {spin_init, spin_handle, NULL, NULL};

static void test_preemption(void)
{
    atomic_store(&spins[0], 0);
    atomic_store(&spins[1], 0);
    start_one();
    st_start_heap_only();
    term_t a, b;
    CU_ASSERT_FATAL(sched_spawn(NULL, &spin_beh, S(0), &a) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn(NULL, &spin_beh, S(1), &b) == GD_OK);
    term_t o = st_spawn_observer();
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    /* Both spinners progress, and a message to a third process is handled
     * although the spinners never run out of work. */
    uint64_t t0 = st_now_ns();
    st_send(o, S(1));
    CU_ASSERT(st_log_wait(1));
    uint64_t lat = st_now_ns() - t0;
    CU_ASSERT(lat < 100000000u);
    CU_ASSERT(atomic_load(&spins[0]) > 10 && atomic_load(&spins[1]) > 10);
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(a, &info) == GD_OK && info.reductions > 10000);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"priority order: max, high, normal with low every 8th", test_priority_order},
    {"slice used up: back of the queue", test_preemption},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_prio", gd_tests)
