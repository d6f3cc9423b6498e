/*
 * test_coroproc.c — coroutine processes: receive with a predicate and a
 * timeout, ping-pong with behaviour processes, many idle ones (with their
 * measured size), kill while blocked, exits from inside, links and
 * monitors, preemption, and a migration across scheduler threads with
 * rooted terms surviving collections (run under GC stress too).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* The calling thread, read afresh at every call (never folded across a
 * coroutine switch as pthread_self may be: the empty volatile asm keeps the
 * compiler from treating this function as const). */
static GD_NOINLINE pthread_t this_thread(void)
{
    __asm__ volatile("" ::: "memory");
    return pthread_self();
}

static bool tuple_tag(term_t t, size_t n, const char *tag)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n && term_tuple_elems(t)[0] == A(tag);
}

/* {Tag, A} on ctx's heap. */
static int pair(sched_ctx_t *ctx, const char *tag, term_t a, term_t *out)
{
    term_t *e;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, out);
    if (rc == GD_OK) {
        e[0] = A(tag);
        e[1] = a;
    }
    return rc;
}

/* Results reported by coroutine bodies (written before a release store of
 * `reported`). */
static _Atomic int reported;
static int64_t res[8];

static void report(int i, int64_t v)
{
    res[i] = v;
    atomic_fetch_add_explicit(&reported, 1, memory_order_release);
}

static bool wait_reported(int n)
{
    uint64_t end = st_now_ns() + 10000000000u;
    while (atomic_load_explicit(&reported, memory_order_acquire) < n) {
        if (st_now_ns() > end)
            return false;
        st_sleep_us(1 * 1000);
    }
    return true;
}

static void start(unsigned n, uint64_t stuck_ns)
{
    sched_opts_t o = {.schedulers = n, .stuck_ns = stuck_ns};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    st_start_heap_only();
    atomic_store(&reported, 0);
    memset(res, 0, sizeof res);
}

/* ---- ping-pong ---- */

/* The behaviour echo: {ping, From, N} -> From ! {pong, N}. */
static int echo_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

static int echo_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (!tuple_tag(msg, 3, "ping"))
        return GD_OK;
    term_t reply;
    int rc = pair(ctx, "pong", term_tuple_elems(msg)[2], &reply);
    return rc != GD_OK ? rc : sched_send(ctx, term_tuple_elems(msg)[1], reply);
}

static const sched_behaviour_t echo_beh = {echo_init, echo_handle, NULL, NULL};

/* The coroutine echo (same protocol), until `stop`. */
static int coro_echo(sched_ctx_t *ctx, term_t arg)
{
    for (;;) {
        term_t msg, reply;
        int rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
        if (rc != GD_OK)
            return rc;
        if (msg == A("stop"))
            return GD_OK;
        if (!tuple_tag(msg, 3, "ping"))
            continue;
        rc = pair(ctx, "pong", term_tuple_elems(msg)[2], &reply);
        if (rc == GD_OK)
            rc = sched_send(ctx, term_tuple_elems(msg)[1], reply);
        if (rc != GD_OK)
            return rc;
    }
}

static bool pred_pong(term_t msg, void *arg)
{
    return tuple_tag(msg, 2, "pong");
}

/* arg {Echo, N, Slot}: N pings, each answered in order; reports the count
 * of correct replies. */
static int pinger(sched_ctx_t *ctx, term_t arg)
{
    term_t echo = term_tuple_elems(arg)[0];
    int64_t n = term_small_value(term_tuple_elems(arg)[1]);
    int slot = (int)term_small_value(term_tuple_elems(arg)[2]);
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        term_t *e, ping, msg;
        int rc = heap_make_tuple(sched_heap(ctx), 3, &e, &ping);
        if (rc != GD_OK)
            return rc;
        e[0] = A("ping");
        e[1] = sched_self(ctx);
        e[2] = S(i);
        rc = sched_send(ctx, echo, ping);
        if (rc == GD_OK)
            rc = sched_receive_wait(ctx, pred_pong, NULL, 5000, &msg);
        if (rc != GD_OK)
            return rc;
        if (term_tuple_elems(msg)[1] == S(i))
            ok++;
    }
    report(slot, ok);
    return GD_OK;
}

static void test_pingpong(void)
{
    start(2, 0);
    term_t beh_echo, coro_e, p1, p2;
    CU_ASSERT_FATAL(sched_spawn(NULL, &echo_beh, TERM_NIL, &beh_echo) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, coro_echo, TERM_NIL, &coro_e) == GD_OK);
    int64_t n = ST_SCALE(20000, 2000);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, pinger, st_tuple(3, beh_echo, S(n), S(0)), &p1) ==
                    GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, pinger, st_tuple(3, coro_e, S(n), S(1)), &p2) == GD_OK);
    CU_ASSERT_FATAL(wait_reported(2));
    CU_ASSERT_EQUAL(res[0], n);
    CU_ASSERT_EQUAL(res[1], n);
    st_send(coro_e, A("stop"));
    term_t all[] = {p1, p2, coro_e};
    CU_ASSERT(sched_wait_exit(all, 3, 5000) == GD_OK);
    CU_ASSERT(sched_is_alive(beh_echo));
    st_stop();
}

/* ---- receive with a timeout ---- */

static bool pred_go(term_t msg, void *arg)
{
    return msg == A("go");
}

static bool pred_late(term_t msg, void *arg)
{
    return msg == A("late");
}

/* Reports: 0 the first wait's rc and 1 its duration (a non-matching
 * message arrives meanwhile), 2 the second's rc (a match cancels), 6 an
 * infinite wait's, 3 the zero-timeout rc, 4 the skipped message taken
 * afterwards. The first wait's end is reported on its own, so the test
 * sends the match after it and not after a sleep a loaded machine can
 * stretch past the second wait's timeout. */
static int timeouts(sched_ctx_t *ctx, term_t arg)
{
    term_t msg = TERM_NIL;
    uint64_t t0 = st_now_ns();
    int rc = sched_receive_wait(ctx, pred_go, NULL, 40, &msg);
    res[1] = (int64_t)(st_now_ns() - t0);
    report(0, rc);
    res[2] = sched_receive_wait(ctx, pred_go, NULL, 300, &msg);
    /* The match cancelled that timeout: an infinite wait is not cut short
     * by it. */
    res[6] = sched_receive_wait(ctx, pred_late, NULL, -1, &msg);
    res[3] = sched_receive_wait(ctx, pred_go, NULL, 0, &msg);
    rc = sched_receive_wait(ctx, NULL, NULL, 0, &msg);
    res[4] = rc == GD_OK ? msg : S(-1);
    report(5, 0);
    return GD_OK;
}

/* A behaviour may not block. */
static int beh_wait_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t msg;
    report(0, sched_receive_wait(ctx, NULL, NULL, 0, &msg));
    return GD_OK;
}

static const sched_behaviour_t beh_wait = {beh_wait_init, echo_handle, NULL, NULL};

static void test_receive_timeout(void)
{
    start(2, 0);
    term_t p;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, timeouts, TERM_NIL, &p) == GD_OK);
    st_sleep_us(5 * 1000);
    st_send(p, S(1)); /* does not match: the timeout still fires */
    CU_ASSERT_FATAL(wait_reported(1));
    st_send(p, A("go"));
    /* Past the second wait's 300 ms: had the match left its timer armed,
     * it would cut the infinite wait short. */
    st_sleep_us(400 * 1000);
    st_send(p, A("late"));
    CU_ASSERT_FATAL(wait_reported(2));
    CU_ASSERT_EQUAL(res[6], GD_OK);
    CU_ASSERT_EQUAL(res[0], SCHED_ETIMEOUT);
    CU_ASSERT(res[1] >= 40000000);
    CU_ASSERT_EQUAL(res[2], GD_OK);
    CU_ASSERT_EQUAL(res[3], SCHED_ETIMEOUT);
    CU_ASSERT_EQUAL((term_t)res[4], S(1));
    st_wait_dead(p);
    atomic_store(&reported, 0);
    CU_ASSERT_FATAL(sched_spawn(NULL, &beh_wait, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(wait_reported(1));
    CU_ASSERT_EQUAL(res[0], GD_EINVAL);
    st_stop();
}

/* ---- the reference trick ---- */

/* Sends itself 1000 messages and takes them in, then makes a ref, sends
 * {Ref, unused} to itself and receives it with the ref: reports how many
 * messages the predicate was offered (1: only those after the mark). */
static _Atomic int ref_pred_calls;

static bool pred_ref(term_t msg, void *arg)
{
    atomic_fetch_add(&ref_pred_calls, 1);
    return term_is_tuple(msg) && term_tuple_arity(msg) == 2 &&
           st_term_eq(term_tuple_elems(msg)[0], *(term_t *)arg);
}

static bool pred_none(term_t msg, void *arg)
{
    return false;
}

static int ref_trick(sched_ctx_t *ctx, term_t arg)
{
    for (int i = 0; i < 1000; i++) {
        int rc = sched_send(ctx, sched_self(ctx), S(i));
        if (rc != GD_OK)
            return rc;
    }
    term_t ref, msg, m;
    /* Takes the 1000 into the queue (none matches). */
    int rc = sched_receive_wait(ctx, pred_none, NULL, 0, &msg);
    if (rc != SCHED_ETIMEOUT)
        return GD_EINVAL;
    rc = sched_make_ref(ctx, &ref);
    if (rc == GD_OK)
        rc = sched_root_push(ctx, &ref);
    if (rc == GD_OK)
        rc = pair(ctx, "unused", TERM_NIL, &m);
    if (rc != GD_OK)
        return rc;
    term_tuple_elems(m)[0] = ref;
    rc = sched_send(ctx, sched_self(ctx), m);
    if (rc == GD_OK)
        rc = sched_receive_ref_wait(ctx, ref, pred_ref, &ref, 1000, &msg);
    sched_root_pop(ctx, 1);
    report(0, rc);
    report(1, atomic_load(&ref_pred_calls));
    return GD_OK;
}

static void test_ref_trick(void)
{
    start(1, 0);
    atomic_store(&ref_pred_calls, 0);
    term_t p;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, ref_trick, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(wait_reported(2));
    CU_ASSERT_EQUAL(res[0], GD_OK);
    CU_ASSERT_EQUAL(res[1], 1);
    st_stop();
}

/* ---- many idle ones ---- */

static _Atomic int after_receive;

static int blocker(sched_ctx_t *ctx, term_t arg)
{
    term_t msg;
    int rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
    atomic_fetch_add(&after_receive, 1);
    if (rc != GD_OK)
        return rc;
    if (tuple_tag(msg, 2, "exit"))
        return sched_exit(ctx, term_tuple_elems(msg)[1]);
    if (msg == A("fail"))
        return GD_EBADARG;
    return GD_OK;
}

static void test_many_idle(void)
{
    start(2, 0);
    atomic_store(&after_receive, 0);
    size_t n = ST_SCALE(10000, 200);
    term_t *pids = malloc(n * sizeof *pids);
    CU_ASSERT_FATAL(pids != NULL);
    long rss0 = (long)sched_os_rss_bytes();
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(sched_spawn_coro(NULL, blocker, TERM_NIL, &pids[i]) == GD_OK);
    /* All blocked: waiting, nothing queued. */
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_FATAL(st_wait_idle(pids[i]));
    long per = ((long)sched_os_rss_bytes() - rss0) / (long)n;
    sched_process_info_t info;
    CU_ASSERT_FATAL(sched_process_info(pids[0], &info) == GD_OK);
    CU_ASSERT_EQUAL(info.status, SCHED_STATUS_WAITING);
    printf("\n  %zu idle coroutine processes: %ld bytes each (RSS; process_info memory %zu)\n", n,
           per, info.memory_bytes);
    /* process_info's memory counts the stack page the body touched. */
    CU_ASSERT(info.memory_bytes >= 4096);
    CU_ASSERT_EQUAL(sched_process_count(), n);
    for (size_t i = 0; i < n; i++)
        st_send(pids[i], S(1));
    CU_ASSERT(sched_wait_exit(pids, n, 20000) == GD_OK);
    CU_ASSERT_EQUAL(atomic_load(&after_receive), (int)n);
    CU_ASSERT_EQUAL(sched_process_count(), 0);
    free(pids);
    st_stop();
}

/* ---- the stack in process_info's memory ---- */

/* Recurses `depth` frames of 16 KiB of locals each, then blocks in a
 * receive at the bottom (so the deep stack is what it is suspended on). */
static GD_NOINLINE int deep_receive(sched_ctx_t *ctx, int depth)
{
    volatile char pad[16384];
    pad[0] = (char)depth;
    pad[sizeof pad - 1] = (char)depth;
    if (depth > 0)
        return deep_receive(ctx, depth - 1) + pad[0] - depth;
    term_t msg;
    return sched_receive_wait(ctx, NULL, NULL, -1, &msg);
}

static int deep_blocker(sched_ctx_t *ctx, term_t arg)
{
    return deep_receive(ctx, (int)term_small_value(arg));
}

static void test_stack_memory(void)
{
    start(2, 0);
    term_t shallow, deep;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, deep_blocker, S(0), &shallow) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, deep_blocker, S(6), &deep) == GD_OK);
    CU_ASSERT_FATAL(st_wait_idle(shallow));
    CU_ASSERT_FATAL(st_wait_idle(deep));
    sched_process_info_t si, di;
    CU_ASSERT_FATAL(sched_process_info(shallow, &si) == GD_OK);
    CU_ASSERT_FATAL(sched_process_info(deep, &di) == GD_OK);
    /* Seven frames of 16 KiB: at least 112 KiB more than the shallow one,
     * whose one 16 KiB frame keeps it within a few pages of that. */
    printf("\n  process_info memory: shallow %zu, deep %zu bytes\n", si.memory_bytes,
           di.memory_bytes);
    CU_ASSERT(si.memory_bytes >= 16384 && si.memory_bytes < 16384 + 16384);
    CU_ASSERT(di.memory_bytes >= si.memory_bytes + 6 * 16384);
    st_send(shallow, S(1));
    st_send(deep, S(1));
    st_wait_dead(shallow);
    st_wait_dead(deep);
    st_stop();
}

/* ---- exits, links, monitors ---- */

/* Sends arg a message and then kill, in one callback (on a one-scheduler
 * node the target sees both at its next run). */
static int msgkill_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    int rc = sched_send(ctx, arg, S(1));
    return rc != GD_OK ? rc : sched_exit_pid(ctx, arg, A("kill"));
}

static const sched_behaviour_t msgkill_beh = {msgkill_init, echo_handle, NULL, NULL};

static void test_kill_while_blocked(void)
{
    start(1, 0);
    atomic_store(&after_receive, 0);
    term_t obs = st_spawn_observer();
    term_t p;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, blocker, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(st_wait_idle(p));
    st_send(obs, st_tuple(2, A("monitor"), p));
    CU_ASSERT_FATAL(st_wait_idle(obs));
    CU_ASSERT(sched_exit_pid(NULL, p, A("kill")) == GD_OK);
    st_rec_t r;
    CU_ASSERT_FATAL(st_log_of(obs, 0, &r));
    CU_ASSERT_EQUAL(r.kind, ST_DOWN);
    CU_ASSERT_EQUAL(r.b, A("killed"));
    CU_ASSERT(r.ref_ok);
    /* Never returned into its body. */
    CU_ASSERT_EQUAL(atomic_load(&after_receive), 0);
    /* An untrapped exit with another reason kills it the same way. */
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, blocker, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(st_wait_idle(p));
    CU_ASSERT(sched_exit_pid(NULL, p, A("shutdown")) == GD_OK);
    st_wait_dead(p);
    CU_ASSERT_EQUAL(atomic_load(&after_receive), 0);
    /* A message and the kill arrive together: the kill wins, the receive
     * never returns the message. */
    term_t k;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, blocker, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(st_wait_idle(p));
    CU_ASSERT_FATAL(sched_spawn(NULL, &msgkill_beh, p, &k) == GD_OK);
    st_wait_dead(p);
    CU_ASSERT_EQUAL(atomic_load(&after_receive), 0);
    st_stop();
}

static void test_exit_inside(void)
{
    start(2, 0);
    term_t obs = st_spawn_observer();
    const char *cases[] = {"normal", "boom", "fail"};
    for (int i = 0; i < 3; i++) {
        term_t p;
        CU_ASSERT_FATAL(sched_spawn_coro(NULL, blocker, TERM_NIL, &p) == GD_OK);
        CU_ASSERT_FATAL(st_wait_idle(p));
        st_send(obs, st_tuple(2, A("monitor"), p));
        CU_ASSERT_FATAL(st_wait_idle(obs));
        if (i == 0)
            st_send(p, S(0));
        else if (i == 1)
            st_send(p, st_tuple(2, A("exit"), A("boom")));
        else
            st_send(p, A("fail"));
        st_rec_t r;
        CU_ASSERT_FATAL(st_log_of(obs, (size_t)i, &r));
        CU_ASSERT_EQUAL(r.kind, ST_DOWN);
        /* {callback_error, Code} is not immediate: logged as TERM_NONE. */
        CU_ASSERT_EQUAL(r.b, i < 2 ? A(cases[i]) : TERM_NONE);
    }
    st_stop();
}

/* Links: the coroutine links to arg; trapping or not per the message. */
static int linker(sched_ctx_t *ctx, term_t arg)
{
    term_t msg, to = arg;
    if (sched_root_push(ctx, &to) != GD_OK)
        return GD_ENOMEM;
    int rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
    if (rc != GD_OK)
        return rc;
    sched_trap_exit(ctx, msg == A("trap"));
    rc = sched_link(ctx, to);
    if (rc == GD_OK)
        rc = sched_send(ctx, to, A("linked"));
    if (rc != GD_OK)
        return rc;
    rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
    sched_root_pop(ctx, 1);
    if (rc != GD_OK)
        return rc;
    report(0, tuple_tag(msg, 3, "EXIT") ? term_tuple_elems(msg)[2] : TERM_NONE);
    return GD_OK;
}

static void test_links(void)
{
    start(2, 0);
    atomic_store(&after_receive, 0);
    /* Not trapping: the linked observer's exit kills the coroutine. */
    term_t obs = st_spawn_observer(), p;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, linker, obs, &p) == GD_OK);
    term_t watch = st_spawn_observer();
    st_send(watch, st_tuple(2, A("monitor"), p));
    CU_ASSERT_FATAL(st_wait_idle(watch));
    st_send(p, A("plain"));
    st_rec_t r;
    CU_ASSERT_FATAL(st_log_of(obs, 0, &r)); /* "linked" */
    st_send(obs, st_tuple(2, A("die"), A("boom")));
    CU_ASSERT_FATAL(st_log_of(watch, 0, &r));
    CU_ASSERT_EQUAL(r.kind, ST_DOWN);
    CU_ASSERT_EQUAL(r.b, A("boom"));
    CU_ASSERT_EQUAL(atomic_load(&reported), 0);
    /* Trapping: the exit arrives as a message. */
    obs = st_spawn_observer();
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, linker, obs, &p) == GD_OK);
    st_send(p, A("trap"));
    CU_ASSERT_FATAL(st_log_of(obs, 0, &r));
    st_send(obs, st_tuple(2, A("die"), A("boom")));
    CU_ASSERT_FATAL(wait_reported(1));
    CU_ASSERT_EQUAL((term_t)res[0], A("boom"));
    st_wait_dead(p);
    /* A coroutine spawned linked by a coroutine dies with it. */
    st_stop();
}

/* ---- preemption ---- */

/* Loops on sched_proc_yield, reporting in slot arg how many times it
 * yielded before `stop_spin`. */
static _Atomic bool stop_spin;

static int yielder(sched_ctx_t *ctx, term_t arg)
{
    int64_t yields = 0;
    while (!atomic_load(&stop_spin))
        if (sched_proc_yield(ctx))
            yields++;
    report((int)term_small_value(arg), yields);
    return GD_OK;
}

/* One scheduler, two coroutines that only yield, and a behaviour: all
 * three make progress (preemption at the runtime calls). */
static void test_preemption(void)
{
    start(1, 60000000000ull);
    atomic_store(&stop_spin, false);
    term_t a, b, echo;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, yielder, S(0), &a) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, yielder, S(1), &b) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn(NULL, &st_observer, TERM_NIL, &echo) == GD_OK);
    st_sleep_us(20 * 1000);
    st_send(echo, S(5));
    st_rec_t r;
    CU_ASSERT(st_log_of(echo, 0, &r));
    atomic_store(&stop_spin, true);
    CU_ASSERT_FATAL(wait_reported(2));
    CU_ASSERT(res[0] > 0);
    CU_ASSERT(res[1] > 0);
    st_stop();
}

/* ---- migration with roots and collections ---- */

static _Atomic bool spin_release;

static int spin_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    report(4 + (int)term_small_value(msg), 1);
    while (!atomic_load(&spin_release)) {
    }
    return GD_OK;
}

static const sched_behaviour_t spin_beh = {echo_init, spin_handle, NULL, NULL};

/* Checks that list is [n, n-1, ..., 1]. */
static bool list_ok(term_t list, int64_t n)
{
    for (int64_t i = n; i >= 1; i--) {
        if (!term_is_list(list) || term_list_ptr(list)[0] != S(i))
            return false;
        list = term_list_ptr(list)[1];
    }
    return list == TERM_NIL;
}

/*
 * Builds a rooted list, then rounds of: garbage, a runtime call that may
 * collect (bump_reds past the slice: it yields), a check of the list; then
 * blocks in a receive, resumes (on another thread: the test stuck its
 * schedulers meanwhile), and checks again.  Reports: 0 the rounds whose
 * check passed, 1 whether the thread changed across the receive.
 */
static int rooted(sched_ctx_t *ctx, term_t arg)
{
    term_t list = TERM_NIL, msg;
    int64_t n = 500, good = 0, rounds = 40;
    heap_t *h = sched_heap(ctx);
    if (sched_root_push(ctx, &list) != GD_OK)
        return GD_ENOMEM;
    for (int64_t i = 1; i <= n; i++)
        if (heap_cons(h, S(i), list, &list) != GD_OK)
            return GD_ENOMEM;
    uint64_t gcs0 = h->stats.minor_collections + h->stats.major_collections;
    for (int64_t r = 0; r < rounds; r++) {
        term_t junk = TERM_NIL;
        for (int i = 0; i < 2000; i++)
            if (heap_cons(h, S(i), junk, &junk) != GD_OK)
                return GD_ENOMEM;
        (void)sched_bump_reds(ctx, SCHED_CONTEXT_REDS);
        if (list_ok(list, n))
            good++;
    }
    pthread_t before = this_thread();
    report(3, (int64_t)(h->stats.minor_collections + h->stats.major_collections - gcs0));
    int rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
    if (rc != GD_OK)
        return rc;
    report(1, !pthread_equal(before, this_thread()));
    (void)sched_bump_reds(ctx, SCHED_CONTEXT_REDS);
    if (list_ok(list, n))
        good++;
    sched_root_pop(ctx, 1);
    report(0, good);
    return GD_OK;
}

static void test_migration_roots(void)
{
    start(2, 1000000);
    atomic_store(&spin_release, false);
    term_t p, s1, s2;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, rooted, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(wait_reported(1)); /* slot 3: the collections */
    CU_ASSERT_FATAL(st_wait_idle(p));
    CU_ASSERT(res[3] > 0);
    /* Both schedulers stuck in C loops: p's wake-up goes to an extra one. */
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &spin_beh, TERM_NIL,
                                    &(sched_spawn_opts_t){.scheduler = 1}, &s1, NULL) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &spin_beh, TERM_NIL,
                                    &(sched_spawn_opts_t){.scheduler = 2}, &s2, NULL) == GD_OK);
    st_send(s1, S(0));
    st_send(s2, S(1));
    CU_ASSERT_FATAL(wait_reported(3));
    st_sleep_us(10 * 1000);
    st_send(p, A("go"));
    CU_ASSERT_FATAL(wait_reported(5));
    CU_ASSERT_EQUAL(res[0], 41);
    CU_ASSERT_EQUAL(res[1], 1);
    atomic_store(&spin_release, true);
    st_wait_dead(p);
    st_stop();
}

/* Spawning coroutines from coroutines; a linked child dies with its
 * parent. */
static int parent(sched_ctx_t *ctx, term_t arg)
{
    term_t child;
    sched_spawn_opts_t o = {.link = true};
    int rc = sched_spawn_coro_opt(ctx, blocker, TERM_NIL, &o, &child, NULL);
    if (rc != GD_OK)
        return rc;
    report(0, (int64_t)child);
    term_t msg;
    rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
    if (rc != GD_OK)
        return rc;
    return sched_exit(ctx, A("boom"));
}

static void test_spawn_linked(void)
{
    start(2, 0);
    atomic_store(&after_receive, 0);
    term_t p;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, parent, TERM_NIL, &p) == GD_OK);
    CU_ASSERT_FATAL(wait_reported(1));
    term_t child = (term_t)res[0];
    CU_ASSERT_FATAL(st_wait_idle(child));
    sched_process_info_t info;
    CU_ASSERT_FATAL(sched_process_info(child, &info) == GD_OK);
    CU_ASSERT_EQUAL(info.links, 1);
    st_send(p, S(1));
    term_t both[] = {p, child};
    CU_ASSERT(sched_wait_exit(both, 2, 5000) == GD_OK);
    CU_ASSERT_EQUAL(atomic_load(&after_receive), 0);
    st_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"ping-pong with a behaviour and with a coroutine", test_pingpong},
    {"receive with a predicate and a timeout", test_receive_timeout},
    {"receive_ref_wait skips what was queued before the ref", test_ref_trick},
    {"many idle coroutine processes (size), all woken", test_many_idle},
    {"process_info memory counts the coroutine's stack", test_stack_memory},
    {"kill while blocked: never returns into the body", test_kill_while_blocked},
    {"exit inside: normal, sched_exit, error", test_exit_inside},
    {"links: killed untrapped, {'EXIT', ...} trapped", test_links},
    {"preemption at the runtime calls", test_preemption},
    {"migration with rooted terms surviving collections", test_migration_roots},
    {"spawn_link from a coroutine", test_spawn_linked},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_coroproc", gd_tests)
