/*
 * test_spawn.c — spawning and collecting many idle behaviour processes
 * (1M in release builds), their size (PCB + heap, and the resident memory
 * they add), and pid reuse (index + serial: a dead pid does not name the
 * next process in its slot).
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
    {"pid index reuse with a new serial", test_pid_reuse},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_spawn", gd_tests)
