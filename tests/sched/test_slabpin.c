/*
 * test_slabpin.c — received messages must not pin message-slab chunks
 * (heap/msgslab.c).
 *
 * The scenario: many processes each receive a message, keep it, and go
 * idle for good (a load test's clients after the run, servers between
 * bursts).  Their messages were carved from the senders' 256 KiB slab
 * chunks interleaved with traffic to others (a sink that drops what it
 * gets), from several schedulers.  A chunk goes back only when its last
 * block is freed, so if a received message stayed in its slab block until
 * the receiver's next collection (which an idle process never does), every
 * chunk holding one kept message would stay mapped: ~(traffic / kept) times
 * the live data.  BEAM holds the kept message's words on each process's
 * heap; so must girder, within a small factor, plus a few chunks per thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cunit_main.h"
#include "heap/gc_internal.h"
#include "sched_test_util.h"

enum { DRIVERS = 4, SCHEDULERS = 2, TRAFFIC = 16, BATCH = 500 };
#define HOLDERS ST_SCALE(100000, 4000)
#define ROUNDS 2

/* Counters the processes bump, read by the test thread. */
static atomic_size_t received, sunk, checked, bad;
static size_t nholders; /* this case's */
static term_t *holder_pids;
static term_t sink_pid;

static term_t mk3(heap_t *h, term_t a, term_t b, term_t c, int *rc)
{
    term_t *e, t = TERM_NIL;
    *rc = heap_make_tuple(h, 3, &e, &t);
    if (*rc == GD_OK) {
        e[0] = a;
        e[1] = b;
        e[2] = c;
    }
    return t;
}

/* A holder allocates its state (so it has a heap, as a process that has
 * handled traffic), then keeps the last message it got. */
static int holder_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    int rc;
    *state = mk3(sched_heap(ctx), arg, TERM_NIL, TERM_NIL, &rc);
    return rc;
}

/* {data, I, Round} with I a holder's index. */
static bool data_ok(term_t t)
{
    if (!term_is_tuple(t) || term_tuple_arity(t) != 3)
        return false;
    const term_t *e = term_tuple_elems(t);
    return e[0] == st_atom("data") && term_is_small(e[1]) && term_small_value(e[1]) >= 0 &&
           (size_t)term_small_value(e[1]) < nholders && term_is_small(e[2]);
}

static int holder_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    if (msg == st_atom("check")) {
        /* The kept message, long after it was received. */
        if (!data_ok(*state))
            atomic_fetch_add(&bad, 1);
        atomic_fetch_add(&checked, 1);
        return GD_OK;
    }
    if (!data_ok(msg))
        atomic_fetch_add(&bad, 1);
    *state = msg;
    atomic_fetch_add(&received, 1);
    return GD_OK;
}

static const sched_behaviour_t holder = {holder_init, holder_handle, NULL, NULL};

static int sink_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    *state = arg;
    return GD_OK;
}

static int sink_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    (void)msg;
    (void)state;
    atomic_fetch_add(&sunk, 1);
    return GD_OK;
}

static const sched_behaviour_t sink = {sink_init, sink_handle, NULL, NULL};

/* A driver, on {go, Lo, Round}: to each holder of [Lo, Lo + BATCH) one
 * {data, I, Round}, each followed by TRAFFIC messages to the sink. */
static int driver_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    const term_t *e = term_tuple_elems(msg);
    int64_t lo = term_small_value(e[1]);
    term_t round = e[2];
    heap_t *h = sched_heap(ctx);
    for (int64_t i = lo; i < lo + BATCH && (size_t)i < nholders; i++) {
        int rc;
        term_t m = mk3(h, st_atom("data"), term_make_small(i), round, &rc);
        if (rc != GD_OK)
            return rc;
        if ((rc = sched_send(ctx, holder_pids[i], m)) != GD_OK)
            return rc;
        for (int k = 0; k < TRAFFIC; k++)
            if ((rc = sched_send(ctx, sink_pid, m)) != GD_OK)
                return rc;
    }
    return GD_OK;
}

static const sched_behaviour_t driver = {sink_init, driver_handle, NULL, NULL};

/* The holder as a coroutine process: it keeps the last {data, ...} it
 * got (in a root slot) and idles in receive. */
static int coro_holder(sched_ctx_t *ctx, term_t arg)
{
    (void)arg;
    term_t kept = TERM_NIL;
    int rc = sched_root_push(ctx, &kept);
    for (term_t msg; rc == GD_OK;) {
        rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
        if (rc != GD_OK)
            break;
        if (msg == st_atom("check")) {
            if (!data_ok(kept))
                atomic_fetch_add(&bad, 1);
            atomic_fetch_add(&checked, 1);
            continue;
        }
        if (!data_ok(msg))
            atomic_fetch_add(&bad, 1);
        kept = msg;
        atomic_fetch_add(&received, 1);
    }
    return rc;
}

static bool wait_count(atomic_size_t *c, size_t n)
{
    for (int i = 0; i < 60000; i++) {
        if (atomic_load(c) >= n)
            return true;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return false;
}

/* n holders (callback or coroutine processes) fed and checked. */
static void idle_receivers(bool coro, size_t n_holders)
{
    nholders = n_holders;
    st_start(SCHEDULERS);
    atomic_store(&received, 0);
    atomic_store(&sunk, 0);
    atomic_store(&checked, 0);
    atomic_store(&bad, 0);
    holder_pids = calloc(nholders, sizeof *holder_pids);
    CU_ASSERT_FATAL(holder_pids != NULL);
    for (size_t i = 0; i < nholders; i++)
        CU_ASSERT_FATAL((coro ? sched_spawn_coro(NULL, coro_holder, TERM_NIL, &holder_pids[i])
                              : sched_spawn(NULL, &holder, term_make_small((int64_t)i),
                                            &holder_pids[i])) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn(NULL, &sink, TERM_NIL, &sink_pid) == GD_OK);
    term_t drivers[DRIVERS];
    for (int d = 0; d < DRIVERS; d++)
        CU_ASSERT_FATAL(sched_spawn(NULL, &driver, TERM_NIL, &drivers[d]) == GD_OK);
    size_t rss0 = sched_os_rss_bytes();

    for (int r = 0; r < ROUNDS; r++)
        for (int64_t lo = 0, d = 0; (size_t)lo < nholders; lo += BATCH, d = (d + 1) % DRIVERS)
            st_send(drivers[d],
                    st_tuple(3, st_atom("go"), term_make_small(lo), term_make_small(r)));
    size_t n = nholders * ROUNDS;
    CU_ASSERT_FATAL(wait_count(&received, n));
    CU_ASSERT_FATAL(wait_count(&sunk, n * TRAFFIC));
    /* Quiet: the schedulers idle (and trim the pool of empty chunks). */
    nanosleep(&(struct timespec){0, 300000000}, NULL);

    /* What the holders keep: one {data, I, Round} each, with its message
     * fragment's bookkeeping (the heap_frag_t, a queue entry's worth). */
    size_t live = nholders * (sizeof(heap_frag_t) + 4 * sizeof(term_t) + 64);
    size_t mapped = heap_msg_slab_mapped_bytes();
    size_t rss = sched_os_rss_bytes();
    printf("\n  %zu idle %s, %d messages each (+%d to a sink per message): slab mapped "
           "%.1f MiB, kept messages %.1f MiB (BEAM: %zu words each on the heap); RSS +%.1f MiB\n",
           nholders, coro ? "coroutines" : "processes", ROUNDS, TRAFFIC, (double)mapped / (1 << 20),
           (double)live / (1 << 20), (size_t)4, ((double)rss - (double)rss0) / (1 << 20));
    /* Bounded: twice the kept messages, plus each thread's current chunk
     * and the pool (16 chunks at most). */
    size_t bound = 2 * live + (SCHEDULERS + 2 + HEAP_MSG_SLAB_POOL_MAX) * HEAP_MSG_SLAB_CHUNK_BYTES;
    CU_ASSERT(mapped <= bound);

    /* The kept messages are intact. */
    for (size_t i = 0; i < nholders; i++)
        st_send(holder_pids[i], st_atom("check"));
    CU_ASSERT(wait_count(&checked, nholders));
    CU_ASSERT_EQUAL(atomic_load(&bad), 0);
    st_stop();
    free(holder_pids);
    holder_pids = NULL;
}

static void test_idle_receivers_do_not_pin_chunks(void)
{
    idle_receivers(false, HOLDERS);
}

static void test_idle_coroutines_do_not_pin_chunks(void)
{
    idle_receivers(true, ST_SCALE(20000, 1000));
}

static const gd_test_case_t cases[] = {
    {"idle receivers do not pin message-slab chunks", test_idle_receivers_do_not_pin_chunks},
    {"idle coroutine receivers do not pin message-slab chunks",
     test_idle_coroutines_do_not_pin_chunks},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_slabpin", cases)
