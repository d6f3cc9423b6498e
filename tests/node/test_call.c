/*
 * test_call.c — the blocking client side from coroutine processes:
 * girder_call (reply, noproc, a crash during the call, timeout and a clean
 * mailbox after it, calling itself, from a behaviour), the exact request
 * shape a server receives and the plain {Ref, Reply} it answers with, many
 * concurrent callers, girder_gen_stop, and the supervisor client calls.
 */
#include <time.h>

#include "cunit_main.h"
#include "node_test_util.h"

#define A st_atom
#define S term_make_small

/* ---- a server ---- */

static int s_init(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret)
{
    *state = S(0);
    return GD_OK;
}

static int s_call(sched_ctx_t *ctx, term_t req, term_t from, term_t *state, girder_ret_t *ret)
{
    term_t *e = term_is_tuple(req) ? term_tuple_elems(req) : NULL;
    if (req == A("crash"))
        return GD_EBADARG;
    if (req == A("never"))
        return GD_OK; /* no reply, ever */
    if (req == A("reply_and_stop")) {
        ret->action = GIRDER_STOP;
        ret->reason = A("normal");
        ret->reply = A("bye");
        return GD_OK;
    }
    if (e != NULL && term_tuple_arity(req) == 2 && e[0] == A("add")) {
        *state = S(term_small_value(*state) + term_small_value(e[1]));
        ret->action = GIRDER_REPLY;
        ret->reply = *state;
        return GD_OK;
    }
    ret->action = GIRDER_REPLY;
    ret->reply = req; /* echo */
    return GD_OK;
}

static void s_terminate(sched_ctx_t *ctx, term_t reason, term_t state)
{
    nt_log(A("terminate"), reason);
}

static const girder_gen_server_t server = {s_init, s_call, NULL, NULL, s_terminate, NULL};

static term_t start_server(term_t name)
{
    girder_gen_opts_t o = {.name = name};
    term_t pid;
    CU_ASSERT_FATAL(girder_gen_start(NULL, &server, TERM_NIL, &o, &pid) == GD_OK);
    CU_ASSERT(st_wait_idle(pid));
    return pid;
}

/* ---- callers ---- */

/* Logs rc => Code and, with a term, result => Term. */
static void log_result(int rc, term_t t)
{
    nt_log(A("rc"), S(rc));
    if (t != TERM_NONE)
        nt_log(A("result"), t);
}

static bool pred_check(term_t msg, void *arg)
{
    return msg == A("check");
}

/* arg {Server, Request, Timeout}: one girder_call. */
static int caller(sched_ctx_t *ctx, term_t arg)
{
    term_t *a = term_tuple_elems(arg), reply = TERM_NONE;
    int rc = girder_call(ctx, a[0], a[1], term_small_value(a[2]), &reply);
    log_result(rc, rc == GD_OK || rc == GIRDER_EEXIT ? reply : TERM_NONE);
    if (rc == SCHED_ETIMEOUT) {
        /* Nothing of the call may be left behind, even once the server
         * has gone (the test kills it, then sends check): no 'DOWN'. */
        term_t left;
        int lrc = sched_receive_wait(ctx, pred_check, NULL, -1, &left);
        if (lrc == GD_OK)
            lrc = sched_receive_wait(ctx, NULL, NULL, 0, &left);
        nt_log(A("left"), lrc == GD_OK ? left : A("nothing"));
    }
    return GD_OK;
}

static term_t call(term_t server_ref, term_t req, int64_t timeout)
{
    term_t pid;
    CU_ASSERT_FATAL(
        sched_spawn_coro(NULL, caller, st_tuple(3, server_ref, req, S(timeout)), &pid) == GD_OK);
    return pid;
}

static bool rc_is(size_t i, int rc)
{
    return nt_logged(A("rc"), i, S(rc));
}

static void test_call_reply(void)
{
    nt_start(2);
    term_t srv = start_server(A("srv"));
    call(srv, st_tuple(2, A("add"), S(3)), -1);
    CU_ASSERT(rc_is(0, GD_OK));
    CU_ASSERT(nt_logged(A("result"), 0, S(3)));
    /* By name and {Name, Node}, with a timeout; a structured echo. */
    call(A("srv"), st_tuple(2, A("add"), S(4)), 1000);
    CU_ASSERT(rc_is(1, GD_OK));
    CU_ASSERT(nt_logged(A("result"), 1, S(7)));
    term_t req = st_tuple(3, A("echo"), nt_list(2, S(1), A("x")), S(-5));
    call(st_tuple(2, A("srv"), heap_node_name()), req, 1000);
    CU_ASSERT(rc_is(2, GD_OK));
    CU_ASSERT(nt_logged(A("result"), 2, req));
    nt_stop();
}

static void test_call_errors(void)
{
    nt_start(2);
    term_t srv = start_server(TERM_NIL);
    /* A crash during the call: the exit reason. */
    call(srv, A("crash"), -1);
    CU_ASSERT(rc_is(0, GIRDER_EEXIT));
    CU_ASSERT(nt_logged(A("result"), 0, st_tuple(2, A("callback_error"), S(GD_EBADARG))));
    st_wait_dead(srv);
    /* A dead pid, an unregistered name. */
    call(srv, A("get"), -1);
    CU_ASSERT(rc_is(1, SCHED_ENOPROC));
    call(A("nobody"), A("get"), 100);
    CU_ASSERT(rc_is(2, SCHED_ENOPROC));
    /* A server shape that is not one. */
    call(S(12), A("get"), 100);
    CU_ASSERT(rc_is(3, GD_EBADARG));
    /* Another node, before the distribution layer routes to it. */
    call(st_tuple(2, A("srv"), A("elsewhere@host")), A("get"), 100);
    CU_ASSERT(rc_is(4, GD_EBADARG));
    nt_stop();
}

static void test_call_timeout(void)
{
    nt_start(2);
    term_t srv = start_server(TERM_NIL);
    uint64_t t0 = st_now_ns();
    term_t cl = call(srv, A("never"), 50);
    CU_ASSERT(rc_is(0, SCHED_ETIMEOUT));
    CU_ASSERT(st_now_ns() - t0 >= 50000000u);
    CU_ASSERT(sched_is_alive(srv));
    /* The server's exit is complete (its 'DOWN's sent) before check. */
    CU_ASSERT(sched_exit_pid(NULL, srv, ATOM_KILL) == GD_OK);
    st_wait_dead(srv);
    st_send(cl, A("check"));
    CU_ASSERT(nt_logged(A("left"), 0, A("nothing")));
    nt_stop();
}

/* A server that keeps the caller's From and replies only when told to
 * (release), with girder_reply: through the alias of the tag. */
static int late_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

static int late_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (term_is_tuple(msg) && term_tuple_arity(msg) == 3) {
        *state = term_tuple_elems(msg)[1];
        return GD_OK;
    }
    if (msg == A("release"))
        nt_log(A("replied"), S(girder_reply(ctx, *state, A("late"))));
    return GD_OK;
}

static const sched_behaviour_t late_server = {late_init, late_handle, NULL, NULL};

static void test_late_reply_dropped(void)
{
    nt_start(2);
    term_t srv;
    CU_ASSERT_FATAL(sched_spawn(NULL, &late_server, TERM_NIL, &srv) == GD_OK);
    term_t cl = call(srv, A("slow"), 50);
    CU_ASSERT(rc_is(0, SCHED_ETIMEOUT));
    /* The reply goes out after the call gave up: the alias is gone, so
     * the runtime drops it (OTP 24's gen:call), where a plain tag would
     * have left it in the caller's mailbox. */
    st_send(srv, A("release"));
    CU_ASSERT(nt_logged(A("replied"), 0, S(GD_OK)));
    st_send(cl, A("check"));
    CU_ASSERT(nt_logged(A("left"), 0, A("nothing")));
    nt_stop();
}

/* Calls itself: gen's calling_self. */
static int self_caller(sched_ctx_t *ctx, term_t arg)
{
    term_t reply;
    log_result(girder_call(ctx, sched_self(ctx), A("x"), 10, &reply), TERM_NONE);
    return GD_OK;
}

/* A behaviour cannot wait. */
static int beh_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t reply;
    log_result(girder_call(ctx, arg, A("x"), 10, &reply), TERM_NONE);
    return GD_OK;
}

static int beh_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    nt_log(A("beh_msg"), msg);
    return GD_OK;
}

static const sched_behaviour_t beh = {beh_init, beh_handle, NULL, NULL};

static void test_call_misuse(void)
{
    nt_start(2);
    term_t srv = start_server(TERM_NIL), pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, self_caller, TERM_NIL, &pid) == GD_OK);
    CU_ASSERT(rc_is(0, GD_EINVAL));
    CU_ASSERT_FATAL(sched_spawn(NULL, &beh, srv, &pid) == GD_OK);
    CU_ASSERT(rc_is(1, GD_EINVAL));
    /* Nothing was sent: no reply lands in the behaviour's mailbox. */
    CU_ASSERT(st_wait_idle(srv));
    CU_ASSERT(st_wait_idle(pid));
    CU_ASSERT(nt_count(A("beh_msg")) == 0);
    term_t reply;
    CU_ASSERT(girder_call(NULL, srv, A("x"), 10, &reply) == GD_EINVAL);
    nt_stop();
}

/* arg: the server.  Waits for go (junk queued before it stays), calls,
 * then takes the junk: logs junk_ok => true when it is all there, in
 * order. */
static bool pred_go(term_t msg, void *arg)
{
    return msg == A("go");
}

static int junk_caller(sched_ctx_t *ctx, term_t srv)
{
    term_t msg, reply;
    int rc = sched_root_push(ctx, &srv);
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, pred_go, NULL, -1, &msg);
    if (rc == GD_OK)
        rc = girder_call(ctx, srv, st_atom("ping"), 1000, &reply);
    log_result(rc, rc == GD_OK ? reply : TERM_NONE);
    bool ok = rc == GD_OK;
    for (int64_t i = 0; ok && i < 1000; i++)
        ok = sched_receive_wait(ctx, NULL, NULL, 0, &msg) == GD_OK && msg == S(i);
    ok = ok && sched_receive_wait(ctx, NULL, NULL, 0, &msg) == SCHED_ETIMEOUT;
    nt_log(A("junk_ok"), ok ? ATOM_TRUE : ATOM_FALSE);
    sched_root_pop(ctx, 1);
    return GD_OK;
}

static void test_call_with_queued_junk(void)
{
    nt_start(2);
    term_t srv = start_server(TERM_NIL), pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, junk_caller, srv, &pid) == GD_OK);
    for (int64_t i = 0; i < 1000; i++)
        st_send(pid, S(i));
    st_send(pid, A("go"));
    CU_ASSERT(rc_is(0, GD_OK));
    CU_ASSERT(nt_logged(A("result"), 0, A("ping")));
    CU_ASSERT(nt_logged(A("junk_ok"), 0, ATOM_TRUE));
    nt_stop();
}

/* arg: the server.  Calls reply_and_stop, then waits for check (sent once
 * the server is gone) and logs what else is queued: the call's monitor
 * must leave no 'DOWN' behind. */
static int stop_caller(sched_ctx_t *ctx, term_t srv)
{
    term_t msg, reply;
    int rc = girder_call(ctx, srv, st_atom("reply_and_stop"), 1000, &reply);
    log_result(rc, rc == GD_OK ? reply : TERM_NONE);
    rc = sched_receive_wait(ctx, pred_check, NULL, -1, &msg);
    if (rc == GD_OK)
        rc = sched_receive_wait(ctx, NULL, NULL, 0, &msg);
    nt_log(A("left"), rc == GD_OK ? msg : A("nothing"));
    return GD_OK;
}

static void test_call_server_stops(void)
{
    nt_start(2);
    for (size_t i = 0; i < ST_SCALE(50, 10); i++) {
        term_t srv = start_server(TERM_NIL), pid;
        CU_ASSERT_FATAL(sched_spawn_coro(NULL, stop_caller, srv, &pid) == GD_OK);
        CU_ASSERT(rc_is(i, GD_OK));
        CU_ASSERT(nt_logged(A("result"), i, A("bye")));
        st_wait_dead(srv);
        st_send(pid, A("check"));
        CU_ASSERT(nt_logged(A("left"), i, A("nothing")));
    }
    nt_stop();
}

/* ---- the exact shape ---- */

/* A fake server: logs what it receives and answers {Tag, got_it} with a
 * plain send, as an Erlang gen_server would. */
static int fake_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

static int fake_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    nt_log(A("fake_got"), msg);
    if (!term_is_tuple(msg) || term_tuple_arity(msg) != 3)
        return GD_OK;
    term_t from = term_tuple_elems(msg)[1];
    if (!term_is_tuple(from) || term_tuple_arity(from) != 2)
        return GD_OK;
    term_t *e, r;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &r);
    if (rc != GD_OK)
        return rc;
    e[0] = term_tuple_elems(from)[1];
    e[1] = A("got_it");
    return sched_send(ctx, term_tuple_elems(from)[0], r);
}

static const sched_behaviour_t fake = {fake_init, fake_handle, NULL, NULL};

/* arg: the fake's pid.  Logs its own pid first. */
static int shape_caller(sched_ctx_t *ctx, term_t arg)
{
    nt_log(A("me"), sched_self(ctx));
    term_t reply = TERM_NONE;
    term_t req = arg; /* the spawn arg is rooted by girder_call */
    int rc = girder_call(ctx, req, A("the_request"), 1000, &reply);
    log_result(rc, rc == GD_OK ? reply : TERM_NONE);
    return GD_OK;
}

static void test_exact_shape(void)
{
    nt_start(2);
    term_t f, pid, me, got;
    CU_ASSERT_FATAL(sched_spawn(NULL, &fake, TERM_NIL, &f) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, shape_caller, f, &pid) == GD_OK);
    CU_ASSERT_FATAL(nt_wait(A("me"), 0, &me));
    CU_ASSERT_FATAL(nt_wait(A("fake_got"), 0, &got));
    /* {'$gen_call', {CallerPid, Ref}, Request}. */
    CU_ASSERT_FATAL(term_is_tuple(got) && term_tuple_arity(got) == 3);
    term_t *e = term_tuple_elems(got);
    CU_ASSERT(e[0] == A("$gen_call"));
    CU_ASSERT(e[2] == A("the_request"));
    CU_ASSERT_FATAL(term_is_tuple(e[1]) && term_tuple_arity(e[1]) == 2);
    CU_ASSERT(term_tuple_elems(e[1])[0] == me);
    /* OTP 24's tag for a local server: [alias | Mref], Mref an alias of
     * the caller. */
    term_t tag = term_tuple_elems(e[1])[1], owner;
    CU_ASSERT_FATAL(term_is_list(tag) && term_car(tag) == A("alias"));
    CU_ASSERT(term_is_ref(term_cdr(tag)));
    CU_ASSERT(sched_alias_owner(term_cdr(tag), &owner) && owner == me);
    /* A {Tag, Reply} sent to the pid (as older OTP does) is the reply. */
    CU_ASSERT(rc_is(0, GD_OK));
    CU_ASSERT(nt_logged(A("result"), 0, A("got_it")));
    nt_stop();
}

/* ---- many callers ---- */

static void test_many_callers(void)
{
    nt_start(4);
    size_t n = ST_SCALE(1000, 200);
    term_t srv = start_server(TERM_NIL);
    for (size_t i = 0; i < n; i++)
        call(srv, st_tuple(2, A("add"), S(1)), 10000);
    static bool seen[1001];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < n; i++) {
        term_t r;
        CU_ASSERT_FATAL(nt_wait(A("result"), i, &r));
        int64_t v = term_small_value(r);
        CU_ASSERT_FATAL(v >= 1 && v <= (int64_t)n && !seen[v]);
        seen[v] = true;
    }
    CU_ASSERT(nt_count(A("rc")) == n);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT(rc_is(i, GD_OK));
    nt_stop();
}

/* ---- stop ---- */

static int stopper(sched_ctx_t *ctx, term_t arg)
{
    term_t *a = term_tuple_elems(arg);
    log_result(girder_gen_stop(ctx, a[0], a[1], 1000), TERM_NONE);
    return GD_OK;
}

static void test_gen_stop(void)
{
    nt_start(2);
    term_t srv = start_server(A("to_stop")), pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, stopper, st_tuple(2, A("to_stop"), A("enough")), &pid) ==
                    GD_OK);
    CU_ASSERT(rc_is(0, GD_OK));
    CU_ASSERT(nt_logged(A("terminate"), 0, A("enough")));
    st_wait_dead(srv);
    /* Gone: noproc. */
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, stopper, st_tuple(2, srv, A("enough")), &pid) == GD_OK);
    CU_ASSERT(rc_is(1, SCHED_ENOPROC));
    /* From outside any process. */
    term_t other = start_server(TERM_NIL);
    CU_ASSERT(girder_gen_stop(NULL, other, A("bye"), 5000) == GD_OK);
    CU_ASSERT(nt_logged(A("terminate"), 1, A("bye")));
    CU_ASSERT(!sched_is_alive(other));
    CU_ASSERT(girder_gen_stop(NULL, other, A("bye"), 5000) == SCHED_ENOPROC);
    nt_stop();
}

/* ---- supervisor client calls ---- */

static int w_start(sched_ctx_t *ctx, term_t arg, term_t *pid_out)
{
    girder_gen_opts_t o = {.link = true};
    return girder_gen_start(ctx, &server, arg, &o, pid_out);
}

static int sup_client(sched_ctx_t *ctx, term_t sup)
{
    term_t r = TERM_NONE;
    int rc = sched_root_push(ctx, &sup);
    if (rc != GD_OK)
        return rc;
    girder_child_spec_t s = {A("w2"), w_start, TERM_NIL, GIRDER_PERMANENT, 100, GIRDER_WORKER};
    rc = girder_sup_start_child(ctx, sup, &s, &r);
    log_result(rc, r);
    rc = girder_sup_which_children(ctx, sup, &r);
    log_result(rc, r);
    rc = girder_sup_terminate_child(ctx, sup, A("w2"), &r);
    log_result(rc, r);
    rc = girder_sup_restart_child(ctx, sup, A("w2"), &r);
    log_result(rc, r);
    rc = girder_sup_terminate_child(ctx, sup, A("w2"), &r);
    log_result(rc, r);
    rc = girder_sup_delete_child(ctx, sup, A("w2"), &r);
    log_result(rc, r);
    sched_root_pop(ctx, 1);
    return GD_OK;
}

static void test_sup_client(void)
{
    nt_start(2);
    girder_sup_flags_t f = {GIRDER_ONE_FOR_ONE, 3, 1000};
    term_t sup, pid;
    CU_ASSERT_FATAL(girder_sup_start(NULL, &f, NULL, 0, NULL, &sup) == GD_OK);
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, sup_client, sup, &pid) == GD_OK);
    for (size_t i = 0; i < 6; i++)
        CU_ASSERT(rc_is(i, GD_OK));
    term_t r;
    CU_ASSERT_FATAL(nt_wait(A("result"), 0, &r));
    CU_ASSERT_FATAL(term_is_tuple(r) && term_tuple_elems(r)[0] == A("ok"));
    term_t w2 = term_tuple_elems(r)[1];
    CU_ASSERT(
        nt_logged(A("result"), 1, nt_list(1, st_tuple(4, A("w2"), w2, A("worker"), TERM_NIL))));
    CU_ASSERT(nt_logged(A("result"), 2, A("ok")));
    CU_ASSERT(nt_wait(A("result"), 3, &r) && term_is_tuple(r) && term_tuple_elems(r)[0] == A("ok"));
    CU_ASSERT(nt_logged(A("result"), 4, A("ok")));
    CU_ASSERT(nt_logged(A("result"), 5, A("ok")));
    nt_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"call: reply by pid, name, {Name, Node}", test_call_reply},
    {"call: crash, noproc, bad server", test_call_errors},
    {"call: timeout leaves nothing behind", test_call_timeout},
    {"call: a reply after the timeout is dropped (alias)", test_late_reply_dropped},
    {"call: itself, from a behaviour, without a process", test_call_misuse},
    {"call: the exact request and reply shapes", test_exact_shape},
    {"call: older messages stay queued, in order", test_call_with_queued_junk},
    {"call: the server stops as it replies", test_call_server_stops},
    {"call: many concurrent callers", test_many_callers},
    {"gen_stop", test_gen_stop},
    {"supervisor client calls", test_sup_client},
    {NULL, NULL},
};

GD_TEST_MAIN("node_call", gd_tests)
