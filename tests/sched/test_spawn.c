/*
 * test_spawn.c — spawning and collecting many idle behaviour processes
 * (1M in release builds), their size (PCB + heap, and the resident memory
 * they add), that their memory goes back to the OS once they exited, and
 * pid reuse (index + serial: a dead pid does not name the next process in
 * its slot).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

static _Atomic uint64_t inited;

/* An idle behaviour process: a small tuple as state, waits for messages. */
static int idle_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t *e;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, state);
    if (rc != GD_OK)
        return rc;
    e[0] = A("idle");
    e[1] = S(0);
    atomic_fetch_add_explicit(&inited, 1, memory_order_release);
    return GD_OK;
}

static int idle_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    return msg == A("stop") ? sched_exit(ctx, A("normal")) : GD_OK;
}

static const sched_behaviour_t idle_beh = {idle_init, idle_handle, NULL, NULL};

static void wait_inited(uint64_t n)
{
    uint64_t end = st_now_ns() + 120000000000ull;
    while (atomic_load_explicit(&inited, memory_order_acquire) < n && st_now_ns() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(atomic_load(&inited) == n);
}

static void test_spawn_exit_many(void)
{
    size_t n = ST_SCALE(1000000, 20000);
    atomic_store(&inited, 0);
    st_start(2);
    term_t *pids = malloc(n * sizeof *pids);
    CU_ASSERT_FATAL(pids != NULL);
    size_t rss0 = sched_os_rss_bytes();
    uint64_t t0 = st_now_ns();
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(sched_spawn(NULL, &idle_beh, TERM_NIL, &pids[i]) == GD_OK);
    uint64_t t1 = st_now_ns();
    wait_inited(n);
    uint64_t t2 = st_now_ns();
    size_t rss1 = sched_os_rss_bytes();
    CU_ASSERT(sched_process_count() == n);
    sched_process_info_t info;
    CU_ASSERT_FATAL(sched_process_info(pids[n / 2], &info) == GD_OK);
    double per = (double)(rss1 - rss0) / (double)n;
    printf("\nspawn: %zu processes, %.0f spawns/s, %.0f ready/s, %.0f resident bytes/process "
           "(process_info memory %zu bytes, heap %zu words)\n",
           n, n / ((t1 - t0) / 1e9), n / ((t2 - t0) / 1e9), per, info.memory_bytes,
           info.heap_size_words);
    /* The idle process is at most 1 KB by its own account... */
    CU_ASSERT(info.memory_bytes <= 1024);
    CU_ASSERT(info.heap_size_words <= SCHED_MIN_HEAP_DEFAULT);
#ifndef SCHED_TEST_SMALL
    /* ...and by the memory it really adds (allocator overhead and the
     * table slot included). */
    CU_ASSERT(per <= 1024.0);
#endif
    /* Kill them all. */
    uint64_t t3 = st_now_ns();
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(sched_exit_pid(NULL, pids[i], A("kill")) == GD_OK);
    CU_ASSERT(sched_wait_count(0, 120000) == GD_OK);
    uint64_t t4 = st_now_ns();
    printf("spawn: %.0f kills/s\n", n / ((t4 - t3) / 1e9));
    for (size_t i = 0; i < n; i += n / 100)
        CU_ASSERT(!sched_is_alive(pids[i]));
    free(pids);
    st_stop();
}

/* A spawner process: fills tree_pids with idle children, 1000 per
 * callback (then `go` to itself), so the PCBs come from the schedulers'
 * own pools, as in a node whose processes spawn processes. */
static term_t *tree_pids;
static size_t tree_n;
static size_t tree_next; /* the spawner's only */

static int spawner_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    for (int k = 0; k < 1000 && tree_next < tree_n; k++, tree_next++) {
        int rc = sched_spawn(ctx, &idle_beh, TERM_NIL, &tree_pids[tree_next]);
        if (rc != GD_OK)
            return rc;
    }
    return tree_next < tree_n ? sched_send(ctx, sched_self(ctx), A("go")) : GD_OK;
}

static int spawner_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    return GD_OK;
}

static const sched_behaviour_t spawner_beh = {spawner_init, spawner_handle, NULL, NULL};

/* Waits up to 10 s for the resident size to fall to `target` or below
 * (schedulers give memory back when they idle); returns the last reading. */
static size_t wait_rss_below(size_t target)
{
    size_t rss = sched_os_rss_bytes();
    for (int i = 0; i < 1000 && rss > target; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        rss = sched_os_rss_bytes();
    }
    return rss;
}

/* Half the processes spawned from outside (the shared pool), half by a
 * process (the schedulers' pools); all exit; the PCB chunks and heaps
 * must go back to the OS, not stay mapped until the node stops. */
static void test_exited_memory_returned(void)
{
    size_t n = ST_SCALE(1000000, 20000);
    atomic_store(&inited, 0);
    st_start(2);
    tree_n = n / 2;
    tree_next = 0;
    tree_pids = malloc(tree_n * sizeof *tree_pids);
    term_t *pids = malloc((n - tree_n) * sizeof *pids);
    CU_ASSERT_FATAL(tree_pids != NULL && pids != NULL);
    size_t rss0 = sched_os_rss_bytes();
    for (size_t i = 0; i < n - tree_n; i++)
        CU_ASSERT_FATAL(sched_spawn(NULL, &idle_beh, TERM_NIL, &pids[i]) == GD_OK);
    term_t spawner;
    CU_ASSERT_FATAL(sched_spawn(NULL, &spawner_beh, TERM_NIL, &spawner) == GD_OK);
    CU_ASSERT_FATAL(sched_send(NULL, spawner, A("go")) == GD_OK);
    wait_inited(n);
    size_t peak = sched_os_rss_bytes();
    /* The spawner is done once every child ran its init. */
    CU_ASSERT_FATAL(sched_exit_pid(NULL, spawner, A("kill")) == GD_OK);
    for (size_t i = 0; i < n - tree_n; i++)
        CU_ASSERT_FATAL(sched_exit_pid(NULL, pids[i], A("kill")) == GD_OK);
    for (size_t i = 0; i < tree_n; i++)
        CU_ASSERT_FATAL(sched_exit_pid(NULL, tree_pids[i], A("kill")) == GD_OK);
    CU_ASSERT(sched_wait_count(0, 120000) == GD_OK);
    size_t grown = peak > rss0 ? peak - rss0 : 0;
    size_t after = wait_rss_below(rss0 + grown / 8);
    printf("\nexited memory: %zu processes, resident %.1f MiB before, %.1f MiB with them, "
           "%.1f MiB after they exited\n",
           n, rss0 / 1048576.0, peak / 1048576.0, after / 1048576.0);
#ifndef SCHED_TEST_SMALL
    /* At most an eighth of what the processes added stays resident (the
     * process table's slots stay, as BEAM's do, and each arena's kept
     * top, SCHED_MALLOC_KEEP; measured: 4-7%). */
    CU_ASSERT(after <= rss0 + grown / 8);
#endif
    free(pids);
    free(tree_pids);
    st_stop();
}

static void test_pid_reuse(void)
{
    /* A small table: slots are reused, oldest first, with a new serial. */
    sched_opts_t o = {.schedulers = 1, .max_processes = 8};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    term_t first[8];
    for (int i = 0; i < 8; i++)
        CU_ASSERT_FATAL(sched_spawn(NULL, &idle_beh, TERM_NIL, &first[i]) == GD_OK);
    term_t extra;
    CU_ASSERT(sched_spawn(NULL, &idle_beh, TERM_NIL, &extra) == SCHED_ETOO_MANY);
    CU_ASSERT(sched_send(NULL, first[3], A("stop")) == GD_OK);
    CU_ASSERT(sched_send(NULL, first[5], A("stop")) == GD_OK);
    CU_ASSERT(sched_wait_exit(&first[3], 1, 5000) == GD_OK);
    CU_ASSERT(sched_wait_exit(&first[5], 1, 5000) == GD_OK);
    /* The slots come back once their PCBs are reaped. */
    term_t again;
    uint64_t end = st_now_ns() + 5000000000u;
    int rc;
    while ((rc = sched_spawn(NULL, &idle_beh, TERM_NIL, &again)) == SCHED_ETOO_MANY &&
           st_now_ns() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT_FATAL(rc == GD_OK);
    uint32_t idx_old, ser_old, idx_new, ser_new;
    CU_ASSERT_FATAL(sched_pid_slot(first[3], &idx_old, &ser_old));
    CU_ASSERT_FATAL(sched_pid_slot(again, &idx_new, &ser_new));
    CU_ASSERT(idx_new == idx_old);
    CU_ASSERT(ser_new == ser_old + 1);
    CU_ASSERT(again != first[3]);
    /* The old pid is dead: sends to it are dropped, the new one lives. */
    CU_ASSERT(!sched_is_alive(first[3]));
    CU_ASSERT(sched_is_alive(again));
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(first[3], &info) == SCHED_ENOPROC);
    sched_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"spawn and kill many idle processes", test_spawn_exit_many},
    {"exited processes' memory goes back to the OS", test_exited_memory_returned},
    {"pid index reuse with a new serial", test_pid_reuse},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_spawn", gd_tests)
