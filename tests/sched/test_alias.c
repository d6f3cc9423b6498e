/*
 * test_alias.c — process aliases (OTP's alias/unalias and monitor's alias
 * option): a message sent to an active alias reaches its owner, one sent
 * after the alias was removed (explicitly, by its first reply, or with its
 * monitor) is dropped; sends from outside any process (cluster/'s
 * ALIAS_SEND path); refs that are no alias.  Each scenario runs in a
 * coroutine process (the owner) that drives a peer process and checks what
 * reaches its own mailbox: a dropped alias message is detected because a
 * marker the peer sends afterwards to the owner's pid arrives first (the
 * signal order of one pair of processes).
 */
#include <stdio.h>
#include <string.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

/* Checks made inside the owner: checks[i] holds 1 when check i held, 2
 * when it failed; `reported` counts finished owners (release). */
#define MAX_CHECKS 16
static int checks[MAX_CHECKS];
static int nchecks;
static _Atomic int reported;

static void check(bool ok)
{
    if (nchecks < MAX_CHECKS)
        checks[nchecks++] = ok ? 1 : 2;
}

static void start(void)
{
    sched_opts_t o = {.schedulers = 2};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    st_start_heap_only();
    memset(checks, 0, sizeof checks);
    nchecks = 0;
    atomic_store(&reported, 0);
}

/* Waits for the owner to report, then asserts every check it made. */
static void finish(int want_checks)
{
    uint64_t end = st_now_ns() + 10000000000u;
    while (atomic_load_explicit(&reported, memory_order_acquire) < 1 && st_now_ns() < end)
        st_sleep_us(1 * 1000);
    CU_ASSERT_FATAL(atomic_load_explicit(&reported, memory_order_acquire) == 1);
    CU_ASSERT(nchecks == want_checks);
    for (int i = 0; i < nchecks; i++) {
        if (checks[i] != 1)
            fprintf(stderr, "alias check %d failed\n", i);
        CU_ASSERT(checks[i] == 1);
    }
    st_stop();
}

static bool is_tagged(term_t t, size_t n, const char *tag)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n && term_tuple_elems(t)[0] == A(tag);
}

/* The peer: {send_to, Target, Msg} -> Target ! Msg; stop -> exits. */
static int peer(sched_ctx_t *ctx, term_t arg)
{
    for (;;) {
        term_t msg;
        int rc = sched_receive_wait(ctx, NULL, NULL, -1, &msg);
        if (rc != GD_OK)
            return rc;
        if (msg == A("stop"))
            return GD_OK;
        if (is_tagged(msg, 3, "send_to")) {
            rc = sched_send(ctx, term_tuple_elems(msg)[1], term_tuple_elems(msg)[2]);
            if (rc != GD_OK)
                return rc;
        }
    }
}

/* Asks peer p to send msg (an immediate) to target (a rooted slot). */
static int tell(sched_ctx_t *ctx, term_t p, const term_t *target, term_t msg)
{
    term_t *e, t;
    int rc = heap_make_tuple(sched_heap(ctx), 3, &e, &t);
    if (rc != GD_OK)
        return rc;
    e[0] = A("send_to");
    e[1] = *target;
    e[2] = msg;
    return sched_send(ctx, p, t);
}

/* Has peer p send `via` through the alias and then `done` to the owner's
 * pid, and checks what the owner gets: `via` then `done` when the alias
 * must be active, else `done` alone (the alias message was dropped). */
static int probe(sched_ctx_t *ctx, term_t p, const term_t *alias, term_t via, bool active)
{
    term_t self = sched_self(ctx);
    int rc = tell(ctx, p, alias, via);
    if (rc == GD_OK)
        rc = tell(ctx, p, &self, A("done"));
    term_t got = TERM_NONE;
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, NULL, NULL, 2000, &got);
    check(rc == GD_OK && got == (active ? via : A("done")));
    if (rc == GD_OK && got != A("done")) {
        rc = sched_receive_wait(ctx, NULL, NULL, 2000, &got);
        check(rc == GD_OK && got == A("done"));
    }
    return rc;
}

static bool pred_down(term_t msg, void *arg)
{
    return is_tagged(msg, 5, "DOWN");
}

static int spawn_peer(sched_ctx_t *ctx, term_t *pid)
{
    return sched_spawn_coro(ctx, peer, TERM_NIL, pid);
}

/* An explicit alias: active until removed, then sends are dropped. */
static int owner_explicit(sched_ctx_t *ctx, term_t arg)
{
    term_t alias = TERM_NIL, b;
    int rc = sched_root_push(ctx, &alias);
    if (rc == GD_OK)
        rc = sched_alias_create(ctx, &alias);
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &b);
    if (rc != GD_OK)
        return rc;
    term_t owner;
    check(sched_alias_owner(alias, &owner) && owner == sched_self(ctx));
    rc = probe(ctx, b, &alias, S(1), true);
    if (rc == GD_OK)
        rc = probe(ctx, b, &alias, S(2), true);
    term_t self = sched_self(ctx);
    check(rc == GD_OK);
    check(sched_alias_remove(ctx, alias));
    check(!sched_alias_remove(ctx, alias));
    rc = probe(ctx, b, &alias, S(3), false);
    sched_process_info_t info;
    check(sched_process_info(self, &info) == GD_OK && info.message_queue_len == 0);
    if (rc == GD_OK)
        rc = sched_send(ctx, b, A("stop"));
    return rc;
}

/* alias([reply]): the first message through it uses it up. */
static int owner_reply(sched_ctx_t *ctx, term_t arg)
{
    term_t alias = TERM_NIL, b;
    int rc = sched_root_push(ctx, &alias);
    if (rc == GD_OK)
        rc = sched_alias_create_opt(ctx, SCHED_ALIAS_REPLY, &alias);
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &b);
    if (rc == GD_OK)
        rc = probe(ctx, b, &alias, S(1), true);
    if (rc == GD_OK)
        rc = probe(ctx, b, &alias, S(2), false);
    check(rc == GD_OK);
    check(!sched_alias_remove(ctx, alias));
    check(sched_alias_create_opt(ctx, SCHED_ALIAS_DEMONITOR, &alias) == GD_EINVAL);
    if (rc == GD_OK)
        rc = sched_send(ctx, b, A("stop"));
    return rc;
}

/* monitor(process, B, [{alias, demonitor}]) and {alias, explicit_unalias}:
 * the alias goes with the monitor (demonitor, or its 'DOWN') or stays. */
static int owner_monitor(sched_ctx_t *ctx, term_t arg)
{
    term_t mref = TERM_NIL, b, c, down;
    int rc = sched_root_push(ctx, &mref);
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &b);
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &c);
    /* Demonitor removes the alias. */
    if (rc == GD_OK)
        rc = sched_monitor_alias(ctx, b, SCHED_ALIAS_DEMONITOR, &mref);
    if (rc == GD_OK)
        rc = probe(ctx, b, &mref, S(1), true);
    if (rc == GD_OK)
        rc = sched_demonitor(ctx, mref);
    if (rc == GD_OK)
        rc = probe(ctx, b, &mref, S(2), false);
    /* So does the 'DOWN'. */
    if (rc == GD_OK)
        rc = sched_monitor_alias(ctx, b, SCHED_ALIAS_DEMONITOR, &mref);
    if (rc == GD_OK)
        rc = sched_send(ctx, b, A("stop"));
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, pred_down, NULL, 2000, &down);
    check(rc == GD_OK);
    if (rc == GD_OK)
        rc = probe(ctx, c, &mref, S(3), false);
    /* explicit_unalias: the alias outlives the monitor. */
    term_t d;
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &d);
    if (rc == GD_OK)
        rc = sched_monitor_alias(ctx, d, SCHED_ALIAS_EXPLICIT, &mref);
    if (rc == GD_OK)
        rc = sched_send(ctx, d, A("stop"));
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, pred_down, NULL, 2000, &down);
    if (rc == GD_OK)
        rc = probe(ctx, c, &mref, S(4), true);
    check(rc == GD_OK && sched_alias_remove(ctx, mref));
    /* A dead target: the immediate noproc 'DOWN' takes the alias along. */
    if (rc == GD_OK)
        rc = sched_monitor_alias(ctx, d, SCHED_ALIAS_DEMONITOR, &mref);
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, pred_down, NULL, 2000, &down);
    check(rc == GD_OK && term_tuple_elems(down)[4] == A("noproc"));
    check(!sched_alias_remove(ctx, mref));
    /* A mode beyond the four is refused. */
    check(sched_monitor_alias(ctx, c, 7, &mref) == GD_EINVAL);
    if (rc == GD_OK)
        rc = sched_send(ctx, c, A("stop"));
    return rc;
}

/* {alias, reply_demonitor}: the first reply removes alias and monitor, so
 * no 'DOWN' follows when the target exits. */
static int owner_reply_demonitor(sched_ctx_t *ctx, term_t arg)
{
    term_t mref = TERM_NIL, b, msg;
    int rc = sched_root_push(ctx, &mref);
    if (rc == GD_OK)
        rc = spawn_peer(ctx, &b);
    if (rc == GD_OK)
        rc = sched_monitor_alias(ctx, b, SCHED_ALIAS_REPLY_DEMONITOR, &mref);
    if (rc == GD_OK)
        rc = probe(ctx, b, &mref, S(1), true);
    if (rc == GD_OK)
        rc = probe(ctx, b, &mref, S(2), false);
    check(rc == GD_OK);
    if (rc == GD_OK)
        rc = sched_send(ctx, b, A("stop"));
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, NULL, NULL, 200, &msg);
    check(rc == SCHED_ETIMEOUT);
    return rc == SCHED_ETIMEOUT ? GD_OK : rc;
}

/* What owner_outside publishes for the test thread: its alias's words
 * (written before the release increment of `published`). */
static uint32_t outside_words[3];
static _Atomic int published;

/* Refs that are no alias, and the alias used from outside any process. */
static int owner_outside(sched_ctx_t *ctx, term_t arg)
{
    term_t ref, alias, owner, msg;
    int rc = sched_make_ref(ctx, &ref);
    if (rc != GD_OK)
        return rc;
    check(!sched_alias_owner(ref, &owner));
    check(sched_send(ctx, ref, S(9)) == GD_OK);
    rc = sched_alias_create(ctx, &alias);
    if (rc != GD_OK)
        return rc;
    check(sched_cancel_timer(ctx, alias, NULL) == SCHED_ENOTIMER);
    heap_ident_t id;
    heap_ident(alias, &id);
    memcpy(outside_words, id.words, sizeof outside_words);
    atomic_store_explicit(&published, 1, memory_order_release);
    /* The plain ref's message never came: the first is the test's. */
    rc = sched_receive_wait(ctx, NULL, NULL, 5000, &msg);
    check(rc == GD_OK && msg == S(7));
    return rc;
}

static int reporter(sched_ctx_t *ctx, sched_coro_fn body)
{
    int rc = body(ctx, TERM_NIL);
    check(rc == GD_OK);
    atomic_fetch_add_explicit(&reported, 1, memory_order_release);
    return rc;
}

static int run_explicit(sched_ctx_t *ctx, term_t arg)
{
    return reporter(ctx, owner_explicit);
}
static int run_reply(sched_ctx_t *ctx, term_t arg)
{
    return reporter(ctx, owner_reply);
}
static int run_monitor(sched_ctx_t *ctx, term_t arg)
{
    return reporter(ctx, owner_monitor);
}
static int run_reply_demonitor(sched_ctx_t *ctx, term_t arg)
{
    return reporter(ctx, owner_reply_demonitor);
}
static int run_outside(sched_ctx_t *ctx, term_t arg)
{
    return reporter(ctx, owner_outside);
}

static void run(sched_coro_fn fn, int want_checks)
{
    start();
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, fn, TERM_NIL, &pid) == GD_OK);
    finish(want_checks);
}

static void test_explicit(void)
{
    run(run_explicit, 11);
}

static void test_reply(void)
{
    run(run_reply, 7);
}

static void test_monitor(void)
{
    run(run_monitor, 12);
}

static void test_reply_demonitor(void)
{
    run(run_reply_demonitor, 6);
}

static void test_outside(void)
{
    start();
    atomic_store(&published, 0);
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, run_outside, TERM_NIL, &pid) == GD_OK);
    uint64_t end = st_now_ns() + 5000000000u;
    while (!atomic_load_explicit(&published, memory_order_acquire) && st_now_ns() < end)
        st_sleep_us(1 * 1000);
    CU_ASSERT_FATAL(atomic_load_explicit(&published, memory_order_acquire));
    /* The ref as cluster/ would decode it from an ALIAS_SEND. */
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 16) == GD_OK);
    term_t alias, owner;
    CU_ASSERT_FATAL(heap_make_local_ref(&h, outside_words, &alias) == GD_OK);
    CU_ASSERT(sched_alias_owner(alias, &owner) && owner == pid);
    CU_ASSERT(sched_send(NULL, alias, S(7)) == GD_OK);
    st_wait_dead(pid);
    /* The owner is gone: dropped, not an error. */
    CU_ASSERT(sched_send(NULL, alias, S(8)) == GD_OK);
    heap_destroy(&h);
    finish(5);
}

static const gd_test_case_t gd_tests[] = {
    {"explicit alias: delivered until removed", test_explicit},
    {"alias([reply]): used up by the first message", test_reply},
    {"monitor alias: demonitor, DOWN, explicit_unalias, noproc", test_monitor},
    {"monitor alias reply_demonitor: no DOWN after the reply", test_reply_demonitor},
    {"plain refs dropped; alias from outside any process", test_outside},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_alias", gd_tests)
