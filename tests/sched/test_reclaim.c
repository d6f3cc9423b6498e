/*
 * test_reclaim.c — borrowed PCBs (scheduler.c, "Borrowed PCBs"): a process
 * on a scheduler sends without taking a reference on its target, so a
 * zombie's PCB is freed only after every scheduler passed a quiescent
 * state.  A send stalled inside the delivery to a process that exits and
 * is reaped meanwhile must never write into a freed PCB (ASan sees the
 * write: under it every PCB is a malloc block of its own), and a scheduler
 * stuck in a C loop must not stop the others from reclaiming.
 */
#include <stdatomic.h>

#include "cunit_main.h"
#include "sched/internal.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* ---- a send racing its target's exit and reaping ---- */

/* Victims the senders cycle through; each exits after VICTIM_LIFE
 * messages and the test thread puts a new one in its place. */
#define VICTIMS 4
#define VICTIM_LIFE 20

static _Atomic term_t victims[VICTIMS];
static _Atomic int senders_stop, senders_done, sender_errors;
/* Sends per callback: with few, the senders' schedulers come round their
 * loops (run the victims, reap) between them. */
static _Atomic int sends_per_call;

static int victim_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    (void)arg;
    *state = S(0);
    return GD_OK;
}

static int victim_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)msg;
    int64_t n = term_small_value(*state) + 1;
    *state = S(n);
    return n < VICTIM_LIFE ? GD_OK : sched_exit(ctx, A("normal"));
}

static const sched_behaviour_t victim_beh = {victim_init, victim_handle, NULL, NULL};

static int sender_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    *state = S(0);
    return sched_send(ctx, sched_self(ctx), A("tick"));
}

/* tick: sends_per_call sends round the victims, then the next tick. */
static int sender_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)msg;
    if (atomic_load(&senders_stop)) {
        atomic_fetch_add(&senders_done, 1);
        return GD_OK;
    }
    int64_t i = term_small_value(*state);
    for (int k = 0, n = atomic_load(&sends_per_call); k < n; k++, i++)
        if (sched_send(ctx, atomic_load(&victims[i % VICTIMS]), A("hit")) != GD_OK)
            atomic_fetch_add(&sender_errors, 1);
    *state = S(i % VICTIMS);
    return sched_send(ctx, sched_self(ctx), A("tick"));
}

static const sched_behaviour_t sender_beh = {sender_init, sender_handle, NULL, NULL};

static term_t spawn_victim(void)
{
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn(NULL, &victim_beh, TERM_NIL, &pid) == GD_OK);
    return pid;
}

/* Runs the senders against dying victims for ms, pushes stalling every
 * `every` for stall_us (0: 20 µs) after the target was looked up: time
 * for it to exit and be reaped on the other scheduler. */
static void race_senders(uint32_t every, uint32_t stall_us, unsigned ms, int per_call)
{
    st_start(2);
    /* Schedulers look targets up borrowed only with the process-wide
     * barrier: on a kernel without it this suite would test nothing. */
    CU_ASSERT_FATAL(sched_node.borrow_ok);
    atomic_store(&senders_stop, 0);
    atomic_store(&senders_done, 0);
    atomic_store(&sender_errors, 0);
    atomic_store(&sends_per_call, per_call);
    for (int i = 0; i < VICTIMS; i++)
        atomic_store(&victims[i], spawn_victim());
    atomic_store(&sched_test_push_stall_us, stall_us);
    atomic_store(&sched_test_push_stall_every, every);
    term_t senders[2];
    for (int s = 0; s < 2; s++) {
        sched_spawn_opts_t on = {.scheduler = s + 1};
        CU_ASSERT_FATAL(sched_spawn_opt(NULL, &sender_beh, TERM_NIL, &on, &senders[s], NULL) ==
                        GD_OK);
    }
    unsigned replaced = 0;
    uint64_t end = st_now_ns() + ms * 1000000ull;
    while (st_now_ns() < end) {
        for (int i = 0; i < VICTIMS; i++)
            if (!sched_is_alive(atomic_load(&victims[i]))) {
                atomic_store(&victims[i], spawn_victim());
                replaced++;
            }
        st_sleep_us(50);
    }
    atomic_store(&senders_stop, 1);
    for (int i = 0; i < 5000 && atomic_load(&senders_done) < 2; i++)
        st_sleep_us(1000);
    atomic_store(&sched_test_push_stall_every, 0);
    atomic_store(&sched_test_push_stall_us, 0);
    CU_ASSERT(atomic_load(&senders_done) == 2);
    CU_ASSERT(atomic_load(&sender_errors) == 0);
    /* The race was run: victims died under the senders many times. */
    CU_ASSERT(replaced >= 50);
    st_stop();
}

/* Stalls of 20 µs: the reaper waits for the sender's scheduler to come
 * round its loop. */
static void test_send_racing_exit(void)
{
    race_senders(3, 0, ST_SCALE(400, 800), 64);
}

/* ---- a send stalled past the forced grace period ---- */

/* The victim: `busy` holds its scheduler for 5 ms, `die` ends it. */
static int doomed_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    if (msg == A("busy")) {
        uint64_t end = st_now_ns() + 5000000u;
        while (st_now_ns() < end)
            ;
    }
    return msg == A("die") ? sched_exit(ctx, A("normal")) : GD_OK;
}

static const sched_behaviour_t doomed_beh = {victim_init, doomed_handle, NULL, NULL};

static _Atomic int stalled_sent;

/* {hit, V}: one send to V (the one that stalls), then stalled_sent. */
static int stalled_sender_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    int rc = sched_send(ctx, term_tuple_elems(msg)[1], A("hit"));
    atomic_store(&stalled_sent, rc == GD_OK ? 1 : -1);
    return rc;
}

static const sched_behaviour_t stalled_sender_beh = {victim_init, stalled_sender_handle, NULL,
                                                     NULL};

/* The sender (scheduler 1) looks the victim up and stalls 20 ms inside
 * the delivery.  Meanwhile the victim (scheduler 2) finishes a 5 ms
 * `busy`, takes `die` (linked before the stalled push, with `pad` after
 * it so the stalled link does not hide it) and exits; its scheduler then
 * idles and forces the grace period with the barrier, which must find
 * scheduler 1 borrowing and keep the PCB until the sender is done.  (A
 * reaper that skipped the flag freed the PCB under the stalled sender:
 * ASan saw the write in 4 of 6 runs.) */
static void test_send_stalled_past_force(void)
{
    st_start(2);
    CU_ASSERT_FATAL(sched_node.borrow_ok);
    atomic_store(&stalled_sent, 0);
    sched_spawn_opts_t on_first = {.scheduler = 1}, on_second = {.scheduler = 2};
    term_t sender, victim;
    CU_ASSERT_FATAL(
        sched_spawn_opt(NULL, &stalled_sender_beh, TERM_NIL, &on_first, &sender, NULL) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &doomed_beh, TERM_NIL, &on_second, &victim, NULL) ==
                    GD_OK);
    CU_ASSERT_FATAL(st_wait_idle(victim));
    st_send(victim, A("busy"));
    st_send(victim, A("die"));
    st_send(victim, A("pad"));
    atomic_store(&sched_test_push_stall_from, sender);
    atomic_store(&sched_test_push_stall_us, 20000);
    atomic_store(&sched_test_push_stall_every, 1);
    st_send(sender, st_tuple(2, A("hit"), victim));
    for (int i = 0; i < 5000 && atomic_load(&stalled_sent) == 0; i++)
        st_sleep_us(1000);
    atomic_store(&sched_test_push_stall_every, 0);
    atomic_store(&sched_test_push_stall_us, 0);
    atomic_store(&sched_test_push_stall_from, 0);
    CU_ASSERT(atomic_load(&stalled_sent) == 1);
    st_wait_dead(victim);
    st_stop();
}

/* ---- a stuck scheduler does not hold up reclamation ---- */

#define SMALL_TABLE 512
#define HOG_MS 500

static _Atomic int hog_running, hog_done;

static int hog_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    (void)msg;
    (void)state;
    atomic_store(&hog_running, 1);
    /* A plain C loop: no runtime call, so no quiescent state. */
    uint64_t end = st_now_ns() + HOG_MS * 1000000ull;
    while (st_now_ns() < end)
        ;
    atomic_store(&hog_done, 1);
    return GD_OK;
}

static const sched_behaviour_t hog_beh = {victim_init, hog_handle, NULL, NULL};

static int quitter_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    (void)state;
    return sched_exit(ctx, A("normal"));
}

static const sched_behaviour_t quitter_beh = {quitter_init, victim_handle, NULL, NULL};

static void test_stuck_scheduler(void)
{
    sched_opts_t o = {.schedulers = 2, .max_processes = SMALL_TABLE};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    st_start_heap_only();
    CU_ASSERT_FATAL(sched_node.borrow_ok);
    atomic_store(&hog_running, 0);
    atomic_store(&hog_done, 0);
    term_t hog;
    sched_spawn_opts_t on_first = {.scheduler = 1};
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &hog_beh, TERM_NIL, &on_first, &hog, NULL) == GD_OK);
    st_send(hog, A("go"));
    while (!atomic_load(&hog_running))
        st_sleep_us(100);
    /* Processes that exit at once, spawned while the hog holds scheduler
     * 1: the table has room for SMALL_TABLE, so getting many times that
     * many means the slots came back while the hog still ran. */
    unsigned spawned = 0;
    while (!atomic_load(&hog_done)) {
        term_t pid;
        int rc = sched_spawn(NULL, &quitter_beh, TERM_NIL, &pid);
        if (rc == GD_OK)
            spawned++;
        else if (rc == SCHED_ETOO_MANY)
            st_sleep_us(200);
        else
            CU_FAIL_FATAL("spawn failed");
    }
    CU_ASSERT(spawned >= 4 * SMALL_TABLE);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"a send stalled in a delivery to a process that exits meanwhile", test_send_racing_exit},
    {"the same, stalled past the forced grace period", test_send_stalled_past_force},
    {"a scheduler stuck in a C loop does not hold up reclamation", test_stuck_scheduler},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_reclaim", gd_tests)
