/*
 * test_gen_server.c — gen_server over behaviour processes, driven by hand-
 * made OTP-shaped calls (node_test_util's client): call/cast/info, names,
 * deferred replies, crashes and stops (terminate, the caller's 'DOWN'),
 * noproc, the exact reply shapes for plain and alias tags, sys messages,
 * the parent's exit, a failing init, and many concurrent callers.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cunit_main.h"
#include "node_test_util.h"

#define A st_atom
#define S term_make_small

/* ---- the counter server ---- */

static int c_init(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret)
{
    if (arg == A("fail_init"))
        return GD_EBADARG;
    if (arg == A("stop_init")) {
        ret->action = GIRDER_STOP;
        ret->reason = A("no_thanks");
        return GD_OK;
    }
    if (arg == A("trap")) {
        sched_trap_exit(ctx, true);
        arg = S(0);
    }
    *state = arg;
    return GD_OK;
}

static int c_call(sched_ctx_t *ctx, term_t req, term_t from, term_t *state, girder_ret_t *ret)
{
    term_t *e = term_is_tuple(req) ? term_tuple_elems(req) : NULL;
    size_t n = e != NULL ? term_tuple_arity(req) : 0;
    if (req == A("get")) {
        ret->action = GIRDER_REPLY;
        ret->reply = *state;
    } else if (n == 2 && e[0] == A("add")) {
        *state = S(term_small_value(*state) + term_small_value(e[1]));
        ret->action = GIRDER_REPLY;
        ret->reply = *state;
    } else if (req == A("defer")) {
        nt_log(A("deferring"), from);
        return sched_dict_put(ctx, A("deferred"), from, NULL);
    } else if (n == 2 && e[0] == A("stop")) {
        ret->action = GIRDER_STOP;
        ret->reason = e[1];
        ret->reply = A("stopping");
    } else if (req == A("crash")) {
        return GD_EBADARG;
    } else if (n == 2 && e[0] == A("timeout")) {
        ret->action = GIRDER_REPLY;
        ret->reply = A("ok");
        ret->timeout_ms = term_small_value(e[1]);
    } else if (n == 2 && e[0] == A("upgrade")) {
        /* Hot reload: code_change(OldVsn, State, Extra) from the server's
         * own callback, then the new state as the reply. */
        int rc = girder_gen_code_change(ctx, A("v1"), e[1]);
        if (rc != GD_OK)
            return rc;
        ret->action = GIRDER_REPLY;
        ret->reply = *state;
    } else if (req == A("echo_from")) {
        ret->action = GIRDER_REPLY;
        ret->reply = from;
    }
    return GD_OK;
}

static int c_cast(sched_ctx_t *ctx, term_t msg, term_t *state, girder_ret_t *ret)
{
    if (term_is_tuple(msg) && term_tuple_arity(msg) == 2 && term_tuple_elems(msg)[0] == A("add")) {
        *state = S(term_small_value(*state) + term_small_value(term_tuple_elems(msg)[1]));
    } else if (msg == A("release")) {
        term_t *e, r;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &r);
        if (rc != GD_OK)
            return rc;
        e[0] = A("released");
        e[1] = *state;
        return girder_reply(ctx, sched_dict_get(ctx, A("deferred")), r);
    }
    return GD_OK;
}

static int c_info(sched_ctx_t *ctx, term_t msg, term_t *state, girder_ret_t *ret)
{
    nt_log(A("info"), msg);
    return GD_OK;
}

static void c_terminate(sched_ctx_t *ctx, term_t reason, term_t state)
{
    nt_log(A("terminate"), reason);
}

/* code_change: from version v1 the new state is State + Extra. */
static int c_code_change(sched_ctx_t *ctx, term_t old_vsn, term_t *state, term_t extra)
{
    if (old_vsn != A("v1"))
        return GD_EINVAL;
    *state = S(term_small_value(*state) + term_small_value(extra));
    return GD_OK;
}

static const girder_gen_server_t counter = {c_init, c_call,      c_cast,
                                            c_info, c_terminate, c_code_change};

static term_t start_counter(term_t arg, term_t name)
{
    girder_gen_opts_t o = {.name = name};
    term_t pid;
    CU_ASSERT_FATAL(girder_gen_start(NULL, &counter, arg, &o, &pid) == GD_OK);
    return pid;
}

static term_t callback_error(int code)
{
    return st_tuple(2, A("callback_error"), S(code));
}

/* ---- tests ---- */

static void test_call_cast_info(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), A("counter")), cl = nt_spawn_client();
    /* The start does not wait for init, which registers the name. */
    CU_ASSERT(st_wait_idle(srv));
    CU_ASSERT(girder_whereis(A("counter")) == srv);
    nt_call(cl, srv, st_tuple(2, A("add"), S(5)));
    CU_ASSERT(nt_logged(A("reply"), 0, S(5)));
    CU_ASSERT(girder_cast(NULL, srv, st_tuple(2, A("add"), S(2))) == GD_OK);
    /* By name, and by {Name, Node} for this node. */
    CU_ASSERT(girder_cast(NULL, st_tuple(2, A("counter"), heap_node_name()),
                          st_tuple(2, A("add"), S(10))) == GD_OK);
    nt_call(cl, A("counter"), A("get"));
    CU_ASSERT(nt_logged(A("reply"), 1, S(17)));
    st_send(srv, st_tuple(2, A("hello"), S(1)));
    CU_ASSERT(nt_logged(A("info"), 0, st_tuple(2, A("hello"), S(1))));
    /* A cast to nobody is not an error (OTP); a bad server shape is. */
    CU_ASSERT(girder_cast(NULL, A("nobody_here"), A("x")) == GD_OK);
    CU_ASSERT(girder_cast(NULL, S(3), A("x")) == GD_EBADARG);
    nt_stop();
}

static void test_deferred_reply(void)
{
    nt_start(2);
    term_t srv = start_counter(S(3), TERM_NIL), cl = nt_spawn_client();
    nt_call(cl, srv, A("defer"));
    term_t from;
    CU_ASSERT_FATAL(nt_wait(A("deferring"), 0, &from));
    CU_ASSERT(st_wait_idle(srv));
    CU_ASSERT(nt_count(A("reply")) == 0);
    CU_ASSERT(girder_cast(NULL, srv, A("release")) == GD_OK);
    CU_ASSERT(nt_logged(A("reply"), 0, st_tuple(2, A("released"), S(3))));
    nt_stop();
}

static void test_crash_during_call(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), TERM_NIL), cl = nt_spawn_client();
    nt_call(cl, srv, A("crash"));
    /* The caller's monitor reports the crash; terminate ran with it. */
    CU_ASSERT(nt_logged(A("down"), 0, callback_error(GD_EBADARG)));
    CU_ASSERT(nt_logged(A("terminate"), 0, callback_error(GD_EBADARG)));
    st_wait_dead(srv);
    nt_stop();
}

static void test_stop_with_reply(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), TERM_NIL), cl = nt_spawn_client();
    nt_call(cl, srv, st_tuple(2, A("stop"), A("bye")));
    CU_ASSERT(nt_logged(A("reply"), 0, A("stopping")));
    CU_ASSERT(nt_logged(A("terminate"), 0, A("bye")));
    st_wait_dead(srv);
    nt_stop();
}

static void test_noproc(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), TERM_NIL), cl = nt_spawn_client();
    CU_ASSERT(sched_exit_pid(NULL, srv, ATOM_KILL) == GD_OK);
    st_wait_dead(srv);
    nt_call(cl, srv, A("get"));
    CU_ASSERT(nt_logged(A("down"), 0, ATOM_NOPROC));
    nt_call(cl, A("not_registered"), A("get"));
    CU_ASSERT(nt_logged(A("down"), 1, ATOM_NOPROC));
    /* Killed by an untrapped signal: no terminate (as OTP). */
    CU_ASSERT(nt_count(A("terminate")) == 0);
    nt_stop();
}

static term_t test_ref(uint32_t w)
{
    uint32_t words[3] = {w, 7, 9};
    term_t r;
    CU_ASSERT_FATAL(heap_make_local_ref(nt_heap(), words, &r) == GD_OK);
    return r;
}

static term_t cons(term_t h, term_t t)
{
    term_t c;
    CU_ASSERT_FATAL(heap_cons(nt_heap(), h, t, &c) == GD_OK);
    return c;
}

/* The i-th raw answer is {Tag, 4} with Tag [alias | Ref] (multi: as the
 * head of [_ | extra]) and Ref an alias of client cl. */
static bool reply_through_alias(size_t i, term_t cl, bool multi)
{
    term_t raw, owner;
    if (!nt_wait(A("raw"), i, &raw) || !term_is_tuple(raw) || term_tuple_arity(raw) != 2 ||
        term_tuple_elems(raw)[1] != S(4))
        return false;
    term_t tag = term_tuple_elems(raw)[0];
    if (multi) {
        if (!term_is_list(tag) || term_cdr(tag) != A("extra"))
            return false;
        tag = term_car(tag);
    }
    return term_is_list(tag) && term_car(tag) == A("alias") &&
           sched_alias_owner(term_cdr(tag), &owner) && owner == cl;
}

static void test_reply_shapes(void)
{
    nt_start(2);
    term_t srv = start_counter(S(4), TERM_NIL), cl = nt_spawn_client();
    /* A plain ref tag: {Ref, Reply}, and handle_call saw From = {Pid, Ref}. */
    term_t ref = test_ref(1);
    st_send(cl, st_tuple(4, A("call_tag"), srv, ref, A("echo_from")));
    CU_ASSERT(nt_logged(A("raw"), 0, st_tuple(2, ref, st_tuple(2, cl, ref))));
    /* OTP 25's alias tag [alias | Ref] (the client makes the alias): the
     * reply, sent to the alias, carries the whole tag. */
    term_t alias = cons(A("alias"), A("new_alias"));
    st_send(cl, st_tuple(4, A("call_tag"), srv, alias, A("get")));
    CU_ASSERT(reply_through_alias(1, cl, false));
    /* And the multi-request form [[alias | Ref] | Extra]. */
    term_t multi = cons(cons(A("alias"), A("new_alias")), A("extra"));
    st_send(cl, st_tuple(4, A("call_tag"), srv, multi, A("get")));
    CU_ASSERT(reply_through_alias(2, cl, true));
    /* A malformed From is dropped, the server lives on. */
    st_send(srv, st_tuple(3, A("$gen_call"), A("nonsense"), A("get")));
    st_send(srv, st_tuple(3, A("$gen_call"), st_tuple(2, S(1), S(2)), A("get")));
    nt_call(cl, srv, A("get"));
    CU_ASSERT(nt_logged(A("reply"), 0, S(4)));
    CU_ASSERT(sched_is_alive(srv));
    nt_stop();
}

static void test_sys_messages(void)
{
    nt_start(2);
    term_t srv = start_counter(S(9), TERM_NIL), cl = nt_spawn_client();
    st_send(cl, st_tuple(3, A("sys"), srv, A("get_state")));
    CU_ASSERT(nt_logged(A("reply"), 0, S(9)));
    st_send(cl, st_tuple(3, A("sys"), srv, A("suspend_me")));
    CU_ASSERT(
        nt_logged(A("reply"), 1,
                  st_tuple(2, A("error"), st_tuple(2, A("unknown_system_msg"), A("suspend_me")))));
    /* gen_server:stop's message: ok, then terminate with the reason. */
    st_send(cl, st_tuple(3, A("sys"), srv, st_tuple(2, A("terminate"), A("enough"))));
    CU_ASSERT(nt_logged(A("reply"), 2, A("ok")));
    CU_ASSERT(nt_logged(A("terminate"), 0, A("enough")));
    st_wait_dead(srv);
    nt_stop();
}

/* The Erlang string s as a C string in buf (false if it is not one or
 * does not fit). */
static bool string_is(term_t s, const char *want)
{
    char buf[256];
    size_t n = 0;
    for (; term_is_list(s) && n + 1 < sizeof buf; s = term_cdr(s)) {
        if (!term_is_small(term_car(s)))
            return false;
        buf[n++] = (char)term_small_value(term_car(s));
    }
    buf[n] = 0;
    return term_is_nil(s) && strcmp(buf, want) == 0;
}

static term_t nth(term_t list, size_t i)
{
    while (i-- > 0 && term_is_list(list))
        list = term_cdr(list);
    return term_is_list(list) ? term_car(list) : TERM_NONE;
}

/* sys:get_status's answer for srv in gen_server's shape, with SysState
 * status and the state `state`. */
static bool status_is(term_t st, term_t srv, term_t status, term_t state)
{
    if (!term_is_tuple(st) || term_tuple_arity(st) != 4)
        return false;
    term_t *e = term_tuple_elems(st);
    term_t misc = nth(e[3], 4);
    term_t hdr = nth(misc, 0), sys_data = nth(misc, 1), st_data = nth(misc, 2);
    if (e[0] != A("status") || e[1] != srv ||
        !st_term_eq(e[2], st_tuple(2, A("module"), A("gen_server"))) || nth(e[3], 1) != status ||
        !term_is_tuple(hdr) || !term_is_tuple(sys_data) || !term_is_tuple(st_data))
        return false;
    term_t status_pair = nth(term_tuple_elems(sys_data)[1], 0);
    term_t state_pair = nth(term_tuple_elems(st_data)[1], 0);
    return term_tuple_elems(hdr)[0] == A("header") &&
           string_is(term_tuple_elems(hdr)[1], "Status for generic server sys_counter") &&
           term_is_tuple(status_pair) && string_is(term_tuple_elems(status_pair)[0], "Status") &&
           term_tuple_elems(status_pair)[1] == status && term_is_tuple(state_pair) &&
           string_is(term_tuple_elems(state_pair)[0], "State") &&
           term_tuple_elems(state_pair)[1] == state;
}

/* sys:get_status in gen_server's shape; sys:suspend holds calls back (in
 * order) while system messages are still answered; sys:resume lets them
 * through. */
static void test_sys_status_suspend(void)
{
    nt_start(2);
    term_t srv = start_counter(S(5), A("sys_counter"));
    term_t cl = nt_spawn_client(), cl2 = nt_spawn_client(), got;
    st_send(cl, st_tuple(3, A("sys"), srv, A("get_status")));
    CU_ASSERT_FATAL(nt_wait(A("reply"), 0, &got));
    CU_ASSERT(status_is(got, srv, A("running"), S(5)));
    st_send(cl, st_tuple(3, A("sys"), srv, A("suspend")));
    CU_ASSERT(nt_logged(A("reply"), 1, A("ok")));
    nt_call(cl2, srv, st_tuple(2, A("add"), S(1)));
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    CU_ASSERT(nt_count(A("reply")) == 2); /* the call waits */
    st_send(cl, st_tuple(3, A("sys"), srv, A("get_status")));
    CU_ASSERT_FATAL(nt_wait(A("reply"), 2, &got));
    CU_ASSERT(status_is(got, srv, A("suspended"), S(5)));
    st_send(cl, st_tuple(3, A("sys"), srv, A("get_state")));
    CU_ASSERT(nt_logged(A("reply"), 3, S(5)));
    nanosleep(&pause, NULL);
    CU_ASSERT(nt_count(A("reply")) == 4);
    st_send(cl, st_tuple(3, A("sys"), srv, A("resume")));
    term_t r4, r5;
    CU_ASSERT_FATAL(nt_wait(A("reply"), 4, &r4) && nt_wait(A("reply"), 5, &r5));
    CU_ASSERT((r4 == A("ok") && r5 == S(6)) || (r4 == S(6) && r5 == A("ok")));
    nt_call(cl2, srv, A("get"));
    CU_ASSERT(nt_logged(A("reply"), 6, S(6)));
    nt_stop();
}

/* A parent: init traps exits and starts a linked counter from its arg
 * {CounterArg, Name | []}; it logs child => Pid and, for each trapped exit,
 * parent_exit => Reason; {die, R} ends it with R. */
static int parent_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    sched_trap_exit(ctx, true);
    girder_gen_opts_t o = {.link = true, .name = term_tuple_elems(arg)[1]};
    term_t pid;
    int rc = girder_gen_start(ctx, &counter, term_tuple_elems(arg)[0], &o, &pid);
    if (rc == GD_OK)
        nt_log(A("child"), pid);
    return rc;
}

static int parent_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (term_tuple_elems(msg)[0] == A("EXIT")) {
        nt_log(A("parent_exit"), term_tuple_elems(msg)[2]);
        return GD_OK;
    }
    return sched_exit(ctx, term_tuple_elems(msg)[1]);
}

static const sched_behaviour_t parent_beh = {parent_init, parent_handle, NULL, NULL};

static term_t spawn_parent(term_t counter_arg, term_t name)
{
    term_t parent;
    CU_ASSERT_FATAL(sched_spawn(NULL, &parent_beh, st_tuple(2, counter_arg, name), &parent) ==
                    GD_OK);
    return parent;
}

static void test_parent_exit(void)
{
    nt_start(2);
    term_t parent = spawn_parent(A("trap"), TERM_NIL), child;
    CU_ASSERT_FATAL(nt_wait(A("child"), 0, &child));
    CU_ASSERT(st_wait_idle(child)); /* its init (which traps exits) ran */
    /* Another process's exit signal is a message for handle_info. */
    CU_ASSERT(sched_exit_pid(NULL, child, A("not_parent")) == GD_OK);
    CU_ASSERT(nt_logged(A("info"), 0, st_tuple(3, A("EXIT"), A("undefined"), A("not_parent"))));
    CU_ASSERT(sched_is_alive(child));
    /* The parent's: terminate with its reason, then exit. */
    st_send(parent, st_tuple(2, A("die"), A("going_down")));
    CU_ASSERT(nt_logged(A("terminate"), 0, A("going_down")));
    st_wait_dead(child);
    nt_stop();
}

static void test_init_failures(void)
{
    nt_start(2);
    /* A crashing init: {callback_error, Code}, no terminate. */
    spawn_parent(A("fail_init"), TERM_NIL);
    CU_ASSERT(nt_logged(A("parent_exit"), 0, callback_error(GD_EBADARG)));
    /* init's stop: its reason. */
    spawn_parent(A("stop_init"), TERM_NIL);
    CU_ASSERT(nt_logged(A("parent_exit"), 1, A("no_thanks")));
    /* A name already taken: {already_started, Pid}. */
    term_t first = start_counter(S(0), A("taken"));
    CU_ASSERT(st_wait_idle(first));
    spawn_parent(S(0), A("taken"));
    CU_ASSERT(nt_logged(A("parent_exit"), 2, st_tuple(2, A("already_started"), first)));
    CU_ASSERT(girder_whereis(A("taken")) == first);
    CU_ASSERT(nt_count(A("terminate")) == 0);
    nt_stop();
}

static void test_code_change(void)
{
    nt_start(2);
    term_t srv = start_counter(S(5), TERM_NIL), cl = nt_spawn_client();
    nt_call(cl, srv, st_tuple(2, A("upgrade"), S(100)));
    CU_ASSERT(nt_logged(A("reply"), 0, S(105)));
    nt_call(cl, srv, A("get"));
    CU_ASSERT(nt_logged(A("reply"), 1, S(105)));
    nt_stop();
}

static void test_server_timeout(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), TERM_NIL), cl = nt_spawn_client();
    /* {reply, ok, S, 30}: handle_info(timeout) about 30 ms later. */
    uint64_t t0 = st_now_ns();
    nt_call(cl, srv, st_tuple(2, A("timeout"), S(30)));
    CU_ASSERT(nt_logged(A("reply"), 0, A("ok")));
    CU_ASSERT(nt_logged(A("info"), 0, A("timeout")));
    CU_ASSERT(st_now_ns() - t0 >= 30000000u);
    /* A message within the timeout cancels it. */
    nt_call(cl, srv, st_tuple(2, A("timeout"), S(300)));
    CU_ASSERT(nt_logged(A("reply"), 1, A("ok")));
    st_send(srv, A("hello"));
    CU_ASSERT(nt_logged(A("info"), 1, A("hello")));
    struct timespec ts = {0, 400000000};
    nanosleep(&ts, NULL);
    CU_ASSERT(nt_count(A("info")) == 2);
    nt_stop();
}

/* An idle gen_server stays within the 1 KB an idle behaviour process may
 * cost (docs/architecture.md): its callback table and parent ride in the dictionary,
 * its state is the user's. */
static void test_idle_size(void)
{
    nt_start(2);
    term_t srv = start_counter(S(0), TERM_NIL);
    CU_ASSERT(st_wait_idle(srv));
    sched_process_info_t info;
    CU_ASSERT_FATAL(sched_process_info(srv, &info) == GD_OK);
    fprintf(stderr, "\n  idle gen_server: %zu bytes (heap %zu words)\n", info.memory_bytes,
            info.heap_size_words);
    CU_ASSERT(info.memory_bytes <= 1024);
    nt_stop();
}

static void test_many_callers(void)
{
    nt_start(4);
    size_t n = ST_SCALE(1000, 200);
    term_t srv = start_counter(S(0), TERM_NIL);
    for (size_t i = 0; i < n; i++)
        nt_call(nt_spawn_client(), srv, st_tuple(2, A("add"), S(1)));
    term_t last;
    CU_ASSERT_FATAL(nt_wait(A("reply"), n - 1, &last));
    /* Every caller got a distinct count: 1..n each once. */
    static bool seen[1001];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < n; i++) {
        term_t r;
        CU_ASSERT_FATAL(nt_wait(A("reply"), i, &r));
        int64_t v = term_small_value(r);
        CU_ASSERT_FATAL(v >= 1 && v <= (int64_t)n && !seen[v]);
        seen[v] = true;
    }
    nt_stop();
}

static const gd_test_case_t gd_tests[] = {
    {"call, cast, info, names", test_call_cast_info},
    {"deferred reply", test_deferred_reply},
    {"crash during a call", test_crash_during_call},
    {"stop with a reply", test_stop_with_reply},
    {"noproc: dead pid, unregistered name", test_noproc},
    {"reply shapes: ref, alias and multi-alias tags", test_reply_shapes},
    {"sys: get_state, unknown, terminate", test_sys_messages},
    {"sys: get_status, suspend, resume", test_sys_status_suspend},
    {"parent exit when trapping", test_parent_exit},
    {"init failures and name clashes", test_init_failures},
    {"code_change from the server's own callback", test_code_change},
    {"server timeout, cancelled by a message", test_server_timeout},
    {"idle size", test_idle_size},
    {"many concurrent callers", test_many_callers},
    {NULL, NULL},
};

GD_TEST_MAIN("node_gen_server", gd_tests)
