/*
 * test_erpc.c — girder_erpc_call (node/remote.c) against a raw peer
 * (node_peer_util.c) that plays the remote node: it reads the SPAWN_REQUEST
 * off the wire, checks its shape against OTP 25's (docs/protocol.md 5.4),
 * and answers with whatever a case needs, so every branch of erpc's result
 * mapping is reached: return/throw/exit/error, erpc's own errors, a killed
 * process, spawn refusals, a timeout with a late answer that must not
 * reach the caller's queue, the connection lost mid-call, an unreachable
 * node, and 1000 calls in flight at once.  The calling processes are
 * coroutines in the in-process node; they report through call_slot_t.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "cunit_main.h"
#include "girder.h"
#include "node_peer_util.h"

#define MANY 1000

/* One call made by a coroutine process, and what came of it. */
typedef struct call_slot {
    term_t node, module, function;
    int64_t arg; /* Args is [arg] */
    int64_t timeout_ms;
    int leak_wait_ms; /* > 0: afterwards wait this long for any message */
    int state;        /* 0 running, 1 result in, 2 leak check done */
    int rc;
    int cls;
    etf_buf_t value, stack; /* the result's terms, encoded */
    bool leaked;
} call_slot_t;

static call_slot_t slots[MANY];
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cv = PTHREAD_COND_INITIALIZER;

static void slot_publish(call_slot_t *s, int state)
{
    pthread_mutex_lock(&slots_mu);
    s->state = state;
    pthread_cond_broadcast(&slots_cv);
    pthread_mutex_unlock(&slots_mu);
}

static int caller_main(sched_ctx_t *ctx, term_t arg)
{
    call_slot_t *s = &slots[term_small_value(arg)];
    term_t args;
    int rc = heap_cons(sched_heap(ctx), term_make_small(s->arg), TERM_NIL, &args);
    girder_erpc_result_t r = {0};
    if (rc == 0)
        rc = girder_erpc_call(ctx, s->node, s->module, s->function, args, s->timeout_ms, &r);
    s->rc = rc;
    if (rc == 0) {
        s->cls = (int)r.cls;
        if (etf_encode(r.value, NULL, &s->value) != 0 || etf_encode(r.stack, NULL, &s->stack) != 0)
            s->rc = GD_ENOMEM;
    }
    slot_publish(s, 1);
    if (s->leak_wait_ms > 0) {
        term_t msg;
        s->leaked = sched_receive_wait(ctx, NULL, NULL, s->leak_wait_ms, &msg) == 0;
    }
    slot_publish(s, 2);
    return 0;
}

/* Starts slot i's call. */
static void start_call(int i, term_t node, const char *m, const char *f, int64_t arg,
                       int64_t timeout_ms, int leak_wait_ms)
{
    call_slot_t *s = &slots[i];
    etf_buf_free(&s->value);
    etf_buf_free(&s->stack);
    memset(s, 0, sizeof *s);
    s->node = node;
    s->module = heap_atom(m);
    s->function = heap_atom(f);
    s->arg = arg;
    s->timeout_ms = timeout_ms;
    s->leak_wait_ms = leak_wait_ms;
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, caller_main, term_make_small(i), &pid) == 0);
}

/* Waits until slot i reaches state; false after 10 s. */
static bool wait_slot(int i, int state)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&slots_mu);
    int rc = 0;
    while (slots[i].state < state && rc == 0)
        rc = pthread_cond_timedwait(&slots_cv, &slots_mu, &dl);
    bool ok = slots[i].state >= state;
    pthread_mutex_unlock(&slots_mu);
    return ok;
}

static bool same(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == 0 && order == 0;
}

/* Slot i's value (or stack) decoded onto h. */
static term_t slot_term(heap_t *h, const etf_buf_t *b)
{
    term_t t = TERM_NONE;
    size_t used;
    etf_error_t err;
    CU_ASSERT_FATAL(etf_decode(h, b->data, b->len, NULL, &t, &used, &err) == 0);
    return t;
}

static term_t el(term_t t, size_t i)
{
    return term_tuple_elems(t)[i];
}

/* The request as the peer sees it. */
typedef struct request {
    term_t req_id, from, res, module, function, args;
} request_t;

/* Reads the next SPAWN_REQUEST and checks it is erpc's: {29, ReqId, From,
 * GL, {erpc, execute_call, 4}, [monitor]} + [Res, M, F, Args]. */
static bool recv_request(np_peer_t *p, request_t *r)
{
    dist_msg_t m;
    do {
        /* A tick each time: a peer that only reads for longer than the
         * node's tick timeout (2 s here; 1000 requests under TSan) would
         * be dropped as silent. */
        static const uint8_t tick[4] = {0};
        CU_ASSERT(np_write_all(p->fd, tick, sizeof tick));
        if (!np_peer_recv(p, &m, 5000))
            return false;
    } while (m.op != DOP_SPAWN_REQUEST);
    term_t ctl = m.control, mfa = el(ctl, 4), opts = el(ctl, 5), a = m.payload;
    CU_ASSERT(term_is_ref(el(ctl, 1)) && term_is_pid(el(ctl, 2)) && term_is_pid(el(ctl, 3)));
    CU_ASSERT(term_is_tuple(mfa) && term_tuple_arity(mfa) == 3 && el(mfa, 0) == heap_atom("erpc") &&
              el(mfa, 1) == heap_atom("execute_call") && el(mfa, 2) == term_make_small(4));
    CU_ASSERT(term_is_list(opts) && term_car(opts) == heap_atom("monitor") &&
              term_is_nil(term_cdr(opts)));
    term_t items[4];
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_FATAL(term_is_list(a));
        items[i] = term_car(a);
        a = term_cdr(a);
    }
    CU_ASSERT(term_is_nil(a) && term_is_ref(items[0]));
    *r = (request_t){el(ctl, 1), el(ctl, 2), items[0], items[1], items[2], items[3]};
    return true;
}

static void send_ctl(np_peer_t *p, const term_t *ctl_items, size_t n, term_t payload)
{
    term_t ctl, *e;
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, n, &e, &ctl) == 0);
    memcpy(e, ctl_items, n * sizeof *e);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 1, 0, &b) == 0);
    CU_ASSERT(np_write_all(p->fd, b.data, b.len));
    etf_buf_free(&b);
}

/* The remote process <peer.9.0>: SPAWN_REPLY with it, flag 2 (monitor). */
static term_t spawn_ok(np_peer_t *p, const request_t *r)
{
    term_t pid;
    CU_ASSERT_FATAL(heap_make_ext_pid(&p->h, heap_atom(p->name), 9, 0, 77, &pid) == 0);
    term_t reply[5] = {term_make_small(DOP_SPAWN_REPLY), r->req_id, r->from, term_make_small(2),
                       pid};
    send_ctl(p, reply, 5, TERM_NONE);
    return pid;
}

/* SPAWN_REPLY then the DOWN {28, Pid, From, ReqId} + reason. */
static void answer(np_peer_t *p, const request_t *r, term_t reason)
{
    term_t pid = spawn_ok(p, r);
    term_t down[4] = {term_make_small(DOP_PAYLOAD_MONITOR_P_EXIT), pid, r->from, r->req_id};
    send_ctl(p, down, 4, reason);
}

static term_t tup(heap_t *h, size_t n, const term_t *items)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_tuple_from(h, n, items, &t) == 0);
    return t;
}

/* One call answered with `reason` (a function of the request's Res);
 * checks class, value and stack. */
typedef term_t (*reason_fn)(heap_t *h, term_t res, term_t payload);

static void check_call(reason_fn make, term_t payload, int cls, term_t want, term_t want_stack)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    start_call(0, heap_atom(p.name), "mymod", "myfun", 42, 5000, 0);
    request_t r;
    CU_ASSERT_FATAL(recv_request(&p, &r));
    CU_ASSERT(r.module == heap_atom("mymod") && r.function == heap_atom("myfun"));
    CU_ASSERT(term_is_list(r.args) && term_car(r.args) == term_make_small(42));
    answer(&p, &r, make(&p.h, r.res, payload));
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == 0);
    CU_ASSERT(slots[0].cls == cls);
    if (slots[0].rc == 0) {
        CU_ASSERT(same(slot_term(&p.h, &slots[0].value), want));
        CU_ASSERT(same(slot_term(&p.h, &slots[0].stack), want_stack));
    }
    np_peer_close(&p);
}

static term_t kind3(heap_t *h, term_t res, const char *kind, term_t v)
{
    return tup(h, 3, (term_t[]){res, heap_atom(kind), v});
}
static term_t r_return(heap_t *h, term_t res, term_t v)
{
    return kind3(h, res, "return", v);
}
static term_t r_throw(heap_t *h, term_t res, term_t v)
{
    return kind3(h, res, "throw", v);
}
static term_t r_exit(heap_t *h, term_t res, term_t v)
{
    return kind3(h, res, "exit", v);
}
static term_t r_error(heap_t *h, term_t res, term_t v)
{
    /* {Res, error, undef, [{mymod, myfun, [42], []}]}: v is the stack */
    return tup(h, 4, (term_t[]){res, heap_atom("error"), heap_atom("undef"), v});
}
static term_t r_erpc_error(heap_t *h, term_t res, term_t v)
{
    return kind3(h, res, "error", tup(h, 2, (term_t[]){heap_atom("erpc"), v}));
}
static term_t r_plain(heap_t *h, term_t res, term_t v)
{
    (void)h;
    (void)res;
    return v;
}
static term_t r_other_ref(heap_t *h, term_t res, term_t v)
{
    (void)res;
    term_t other;
    CU_ASSERT_FATAL(
        heap_make_ref(h, heap_atom("other@host"), 1, (uint32_t[]){7, 8, 9}, 3, &other) == 0);
    return kind3(h, other, "return", v);
}

static void test_return_values(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t terms[6], list, bin, map;
    uint8_t bytes[300];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)i;
    CU_ASSERT_FATAL(heap_make_binary(&h, bytes, sizeof bytes, &bin) == 0);
    CU_ASSERT_FATAL(
        heap_make_list(&h, (term_t[]){term_make_small(1), heap_atom("two"), bin}, 3, &list) == 0);
    term_t k[2] = {heap_atom("a"), term_make_small(1)}, v[2] = {list, heap_atom("b")};
    CU_ASSERT_FATAL(heap_make_map(&h, k, v, 2, &map) == 0);
    terms[0] = heap_atom("ok");
    terms[1] = term_make_small(-123456789);
    terms[2] = list;
    terms[3] = map;
    terms[4] = tup(&h, 2, (term_t[]){map, TERM_NIL});
    terms[5] = TERM_NIL;
    for (size_t i = 0; i < 6; i++)
        check_call(r_return, terms[i], GIRDER_ERPC_RETURN, terms[i], TERM_NIL);
    heap_destroy(&h);
}

static void test_exceptions(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t frame =
        tup(&h, 4, (term_t[]){heap_atom("mymod"), heap_atom("myfun"), TERM_NIL, TERM_NIL});
    term_t stack;
    CU_ASSERT_FATAL(heap_cons(&h, frame, TERM_NIL, &stack) == 0);
    check_call(r_throw, heap_atom("thrown"), GIRDER_ERPC_THROW, heap_atom("thrown"), TERM_NIL);
    check_call(r_exit, heap_atom("bye"), GIRDER_ERPC_EXIT, heap_atom("bye"), TERM_NIL);
    check_call(r_error, stack, GIRDER_ERPC_ERROR, heap_atom("undef"), stack);
    check_call(r_erpc_error, heap_atom("system_limit"), GIRDER_ERPC_ERPC, heap_atom("system_limit"),
               TERM_NIL);
    /* Killed before answering, and an answer tagged with another Res:
     * erpc's exit({signal, Reason}). */
    check_call(r_plain, heap_atom("killed"), GIRDER_ERPC_SIGNAL, heap_atom("killed"), TERM_NIL);
    term_t other = r_other_ref(&h, TERM_NIL, term_make_small(1));
    check_call(r_other_ref, term_make_small(1), GIRDER_ERPC_SIGNAL, other, TERM_NIL);
    heap_destroy(&h);
}

/* A refused spawn: SPAWN_REPLY with an error atom -> erpc's {erpc, R}. */
static void test_spawn_refused(void)
{
    const char *reasons[] = {"notsup", "badarg", "system_limit"};
    for (size_t i = 0; i < 3; i++) {
        np_peer_t p;
        CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
        start_call(0, heap_atom(p.name), "m", "f", 1, 5000, 300);
        request_t r;
        CU_ASSERT_FATAL(recv_request(&p, &r));
        term_t reply[5] = {term_make_small(DOP_SPAWN_REPLY), r.req_id, r.from, term_make_small(0),
                           heap_atom(reasons[i])};
        send_ctl(&p, reply, 5, TERM_NONE);
        CU_ASSERT_FATAL(wait_slot(0, 2));
        CU_ASSERT(slots[0].rc == 0 && slots[0].cls == GIRDER_ERPC_ERPC);
        CU_ASSERT(same(slot_term(&p.h, &slots[0].value), heap_atom(reasons[i])));
        CU_ASSERT(!slots[0].leaked);
        np_peer_close(&p);
    }
}

/* No answer within the timeout: {erpc, timeout}; the answer that comes
 * afterwards (spawn reply and DOWN) never reaches the caller's queue. */
static void test_timeout_then_late_answer(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    start_call(0, heap_atom(p.name), "timer", "sleep", 5000, 200, 1500);
    request_t r;
    CU_ASSERT_FATAL(recv_request(&p, &r));
    CU_ASSERT_FATAL(wait_slot(0, 1));
    CU_ASSERT(slots[0].rc == 0 && slots[0].cls == GIRDER_ERPC_ERPC);
    CU_ASSERT(same(slot_term(&p.h, &slots[0].value), heap_atom("timeout")));
    answer(&p, &r, r_return(&p.h, r.res, heap_atom("too_late")));
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(!slots[0].leaked);
    /* The connection still serves. */
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after_timeout")));
    np_peer_close(&p);
}

/* The remote function prints: the caller, its group leader, answers the
 * io requests (put_chars: ok; input: {error, request}), and the call
 * goes on to its result. */
static void test_group_leader_io(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    start_call(0, heap_atom(p.name), "io", "format", 1, 5000, 300);
    request_t r;
    CU_ASSERT_FATAL(recv_request(&p, &r));
    term_t gl = r.from; /* the request named the caller as group leader too */
    const char *kinds[2] = {"put_chars", "get_line"};
    for (int i = 0; i < 2; i++) {
        term_t req = tup(&p.h, 2, (term_t[]){heap_atom(kinds[i]), heap_atom("unicode")});
        term_t io =
            tup(&p.h, 4, (term_t[]){heap_atom("io_request"), p.self, term_make_small(70 + i), req});
        term_t send[3] = {term_make_small(DOP_SEND_SENDER), p.self, gl};
        send_ctl(&p, send, 3, io);
        dist_msg_t m;
        bool got = false;
        while (!got && np_peer_recv(&p, &m, 3000))
            got = m.op == DOP_SEND_SENDER;
        CU_ASSERT_FATAL(got);
        term_t want = i == 0 ? heap_atom("ok")
                             : tup(&p.h, 2, (term_t[]){heap_atom("error"), heap_atom("request")});
        CU_ASSERT(
            same(m.payload,
                 tup(&p.h, 3, (term_t[]){heap_atom("io_reply"), term_make_small(70 + i), want})));
    }
    answer(&p, &r, r_return(&p.h, r.res, heap_atom("ok")));
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == 0 && slots[0].cls == GIRDER_ERPC_RETURN);
    CU_ASSERT(!slots[0].leaked);
    np_peer_close(&p);
}

/* The connection goes while the call runs: {erpc, noconnection}. */
static void test_nodedown_during_call(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    start_call(0, heap_atom(p.name), "timer", "sleep", 5000, 8000, 300);
    request_t r;
    CU_ASSERT_FATAL(recv_request(&p, &r));
    (void)spawn_ok(&p, &r);
    np_peer_close(&p);
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == 0 && slots[0].cls == GIRDER_ERPC_ERPC);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    CU_ASSERT(same(slot_term(&h, &slots[0].value), heap_atom("noconnection")));
    CU_ASSERT(!slots[0].leaked);
    heap_destroy(&h);
}

/* A node nobody runs: noconnection once connecting fails (setuptime 1 s);
 * this node itself and bad arguments: errors of the C API. */
static void test_unreachable_and_bad_args(void)
{
    np_start_node(0);
    start_call(0, heap_atom("nobody_here@localhost"), "m", "f", 1, 10000, 0);
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == 0 && slots[0].cls == GIRDER_ERPC_ERPC);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    CU_ASSERT(same(slot_term(&h, &slots[0].value), heap_atom("noconnection")));
    heap_destroy(&h);
    start_call(0, heap_atom(np_node_name()), "m", "f", 1, 1000, 0);
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == GD_EINVAL);
    start_call(0, term_make_small(3), "m", "f", 1, 1000, 0);
    CU_ASSERT_FATAL(wait_slot(0, 2));
    CU_ASSERT(slots[0].rc == GD_EBADARG);
    girder_erpc_result_t res;
    CU_ASSERT(girder_erpc_call(NULL, heap_atom("a@b"), heap_atom("m"), heap_atom("f"), TERM_NIL, 1,
                               &res) == GD_EINVAL);
}

/* A behaviour process cannot wait: GD_EINVAL before anything is sent. */
static int beh_rc = 1;
static int beh_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)state;
    girder_erpc_result_t r;
    int rc = girder_erpc_call(ctx, arg, heap_atom("m"), heap_atom("f"), TERM_NIL, 1000, &r);
    pthread_mutex_lock(&slots_mu);
    beh_rc = rc;
    pthread_cond_broadcast(&slots_cv);
    pthread_mutex_unlock(&slots_mu);
    return 0;
}

static int beh_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)msg;
    (void)state;
    return sched_exit(ctx, heap_atom("normal"));
}

static const sched_behaviour_t beh = {beh_init, beh_handle, NULL, NULL};

static void test_behaviour_process(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn(NULL, &beh, heap_atom(p.name), &pid) == 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&slots_mu);
    while (beh_rc == 1 && pthread_cond_timedwait(&slots_cv, &slots_mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&slots_mu);
    CU_ASSERT(beh_rc == GD_EINVAL);
    /* Nothing went out: the next frame is the echo's reply. */
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("nothing_before_me")));
    CU_ASSERT(sched_send(NULL, pid, heap_atom("stop")) == 0);
    np_peer_close(&p);
}

/* 1000 calls in flight on one connection, answered in arrival order with
 * each call's own argument: each caller gets its own value back. */
static void test_many_concurrent(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    for (int i = 0; i < MANY; i++)
        start_call(i, heap_atom(p.name), "lists", "hd", 1000 + i, 30000, 0);
    static request_t reqs[MANY];
    int got = 0;
    while (got < MANY && recv_request(&p, &reqs[got]))
        got++;
    CU_ASSERT_FATAL(got == MANY);
    for (int i = 0; i < MANY; i++)
        answer(&p, &reqs[i], r_return(&p.h, reqs[i].res, term_car(reqs[i].args)));
    int right = 0;
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    for (int i = 0; i < MANY; i++) {
        CU_ASSERT_FATAL(wait_slot(i, 2));
        right += slots[i].rc == 0 && slots[i].cls == GIRDER_ERPC_RETURN &&
                 slot_term(&h, &slots[i].value) == term_make_small(1000 + i);
    }
    CU_ASSERT(right == MANY);
    heap_destroy(&h);
    np_peer_close(&p);
}

/* girder_erpc_result_term: the {Class, Reason} a catch in Erlang shows. */
static void test_result_term(void)
{
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t t, x = heap_atom("x");
    girder_erpc_result_t r = {GIRDER_ERPC_ERROR, heap_atom("undef"), TERM_NIL};
    CU_ASSERT_FATAL(girder_erpc_result_term(&h, &r, &t) == 0);
    term_t exc = tup(&h, 3, (term_t[]){heap_atom("exception"), heap_atom("undef"), TERM_NIL});
    CU_ASSERT(same(t, tup(&h, 2, (term_t[]){heap_atom("error"), exc})));
    r = (girder_erpc_result_t){GIRDER_ERPC_ERPC, heap_atom("timeout"), TERM_NIL};
    CU_ASSERT_FATAL(girder_erpc_result_term(&h, &r, &t) == 0);
    term_t e2 = tup(&h, 2, (term_t[]){heap_atom("erpc"), heap_atom("timeout")});
    CU_ASSERT(same(t, tup(&h, 2, (term_t[]){heap_atom("error"), e2})));
    r = (girder_erpc_result_t){GIRDER_ERPC_SIGNAL, x, TERM_NIL};
    CU_ASSERT_FATAL(girder_erpc_result_term(&h, &r, &t) == 0);
    term_t s = tup(&h, 2, (term_t[]){heap_atom("signal"), x});
    CU_ASSERT(same(t, tup(&h, 2, (term_t[]){heap_atom("exit"), s})));
    r = (girder_erpc_result_t){GIRDER_ERPC_THROW, x, TERM_NIL};
    CU_ASSERT_FATAL(girder_erpc_result_term(&h, &r, &t) == 0);
    CU_ASSERT(same(t, tup(&h, 2, (term_t[]){heap_atom("throw"), x})));
    r.cls = (enum girder_erpc_class)99;
    CU_ASSERT(girder_erpc_result_term(&h, &r, &t) == GD_EINVAL);
    heap_destroy(&h);
}

static const gd_test_case_t gd_tests[] = {
    {"return values", test_return_values},
    {"throw, exit, error, erpc errors, signals", test_exceptions},
    {"spawn refused", test_spawn_refused},
    {"timeout, then the late answer is dropped", test_timeout_then_late_answer},
    {"nodedown during a call", test_nodedown_during_call},
    {"the remote function prints", test_group_leader_io},
    {"unreachable node, bad arguments", test_unreachable_and_bad_args},
    {"1000 concurrent calls", test_many_concurrent},
    {"from a behaviour process", test_behaviour_process},
    {"result terms", test_result_term},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_erpc", gd_tests)
