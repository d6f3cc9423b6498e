/*
 * test_remote_call.c — girder_call (node/gen_call.c) to a server on
 * another node, against a raw peer (node_peer_util.c) that plays the
 * remote node and reads the frames off the wire: the first call on a
 * connection still in its handshake sends its MONITOR_P ahead of its
 * REG_SEND and gets the peer's noproc (it used to lose the MONITOR_P and
 * time out); a call on an up connection gets its reply (under GC stress
 * every send collects: a moved {Name, Node} once failed it with
 * GD_EBADARG); a node nobody runs answers nodedown after the setup attempt,
 * every time, never a hang.  The callers are coroutine processes of the
 * in-process node; they report through call_slot_t.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "cunit_main.h"
#include "girder.h"
#include "node_peer_util.h"

/* One girder_call({Name, Node}, Request, timeout) made by a coroutine. */
typedef struct call_slot {
    term_t name, node, request;
    int64_t timeout_ms;
    bool done;
    int rc;
    term_t reply; /* an atom (the only replies used here) */
    uint64_t took_ms;
} call_slot_t;

static call_slot_t slot;
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int caller_main(sched_ctx_t *ctx, term_t arg)
{
    (void)arg;
    term_t server, items[2] = {slot.name, slot.node};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &server);
    term_t reply = TERM_NIL;
    uint64_t t0 = mono_ms();
    if (rc == 0)
        rc = girder_call(ctx, server, slot.request, slot.timeout_ms, &reply);
    pthread_mutex_lock(&slot_mu);
    slot.took_ms = mono_ms() - t0;
    slot.rc = rc;
    slot.reply = rc == 0 && term_is_atom(reply) ? reply : TERM_NONE;
    slot.done = true;
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
    return 0;
}

static void start_call(const char *name, const char *node, int64_t timeout_ms)
{
    pthread_mutex_lock(&slot_mu);
    slot = (call_slot_t){.name = heap_atom(name),
                         .node = heap_atom(node),
                         .request = heap_atom("the_request"),
                         .timeout_ms = timeout_ms};
    pthread_mutex_unlock(&slot_mu);
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, caller_main, TERM_NIL, &pid) == 0);
}

/* Waits until *done (set under slot_mu, with slot_cv broadcast); false
 * after ms. */
static bool wait_done(const bool *done, int ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    dl.tv_sec += dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&slot_mu);
    int rc = 0;
    while (!*done && rc == 0)
        rc = pthread_cond_timedwait(&slot_cv, &slot_mu, &dl);
    bool seen = *done;
    pthread_mutex_unlock(&slot_mu);
    return seen;
}

/* Waits for the call's end; false after ms. */
static bool wait_call(int ms)
{
    return wait_done(&slot.done, ms);
}

static term_t el(term_t t, size_t i)
{
    return term_tuple_elems(t)[i];
}

/* The next message other than a tick, ticking the node meanwhile. */
static bool recv_msg(np_peer_t *p, dist_msg_t *m)
{
    static const uint8_t tick[4] = {0};
    CU_ASSERT(np_write_all(p->fd, tick, sizeof tick));
    return np_peer_recv(p, m, 5000);
}

static void send_ctl(np_peer_t *p, const term_t *ctl_items, size_t n, term_t payload)
{
    term_t ctl;
    CU_ASSERT_FATAL(heap_make_tuple_from(&p->h, n, ctl_items, &ctl) == 0);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 1, 0, &b) == 0);
    CU_ASSERT(np_write_all(p->fd, b.data, b.len));
    etf_buf_free(&b);
}

/* Reads the call's two frames, which OTP sends in this order: MONITOR_P
 * {19, Caller, Name, Ref}, then REG_SEND {6, Caller, '', Name} +
 * {'$gen_call', {Caller, Tag}, the_request} (the order is checked, not
 * relied on).  *mon and *call: the MONITOR_P's control and the
 * REG_SEND's payload, on p->h. */
static void recv_call(np_peer_t *p, const char *name, term_t *mon, term_t *call)
{
    dist_msg_t m[2];
    CU_ASSERT_FATAL(recv_msg(p, &m[0]));
    CU_ASSERT_FATAL(recv_msg(p, &m[1]));
    CU_ASSERT(m[0].op == DOP_MONITOR_P);
    int mi = m[0].op == DOP_MONITOR_P ? 0 : 1;
    CU_ASSERT_FATAL(m[mi].op == DOP_MONITOR_P);
    *mon = m[mi].control;
    CU_ASSERT(term_is_pid(el(*mon, 1)) && el(*mon, 2) == heap_atom(name) &&
              term_is_ref(el(*mon, 3)));
    CU_ASSERT_FATAL(m[1 - mi].op == DOP_REG_SEND || m[1 - mi].op == DOP_REG_SEND_TT);
    CU_ASSERT(el(m[1 - mi].control, 3) == heap_atom(name));
    *call = m[1 - mi].payload;
    CU_ASSERT_FATAL(term_is_tuple(*call) && term_tuple_arity(*call) == 3 &&
                    el(*call, 0) == heap_atom("$gen_call") &&
                    el(*call, 2) == heap_atom("the_request"));
}

/* The first call on a connection still in its handshake (the node has
 * taken the peer's name and waits for its challenge reply): the call is
 * queued with the connection, its MONITOR_P first, and the peer's
 * MONITOR_P_EXIT (no process of that name) ends it with noproc.  The
 * MONITOR_P used to be sent by the connection's controller, which found
 * no connection to send it on while the handshake ran: it was dropped,
 * and the call waited for its timeout. */
static void test_first_call_while_connecting(void)
{
    np_peer_t p;
    dist_hs_t hs;
    CU_ASSERT_FATAL(np_peer_connect_paused(&p, NP_COOKIE, NULL, 0, 0, &hs, DIST_HS_RECV_ACK) == 0);
    start_call("nosuch", p.name, 5000);
    /* The call's frames wait with the connection. */
    CU_ASSERT(!wait_call(200));
    CU_ASSERT_FATAL(np_peer_connect_resume(&p, &hs) == 1);
    term_t mon, call;
    recv_call(&p, "nosuch", &mon, &call);
    /* {21, FromProc, ToPid, Ref, noproc} */
    term_t exit_ctl[5] = {term_make_small(DOP_MONITOR_P_EXIT), heap_atom("nosuch"), el(mon, 1),
                          el(mon, 3), heap_atom("noproc")};
    send_ctl(&p, exit_ctl, 5, TERM_NONE);
    CU_ASSERT_FATAL(wait_call(10000));
    CU_ASSERT(slot.rc == SCHED_ENOPROC);
    CU_ASSERT(slot.took_ms < 4000);
    np_peer_close(&p);
}

/* A call on an up connection: the reply {Tag, Reply} to the caller. */
static void test_call_reply(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    for (int i = 0; i < 20; i++) {
        start_call("server", p.name, 5000);
        term_t mon, call;
        recv_call(&p, "server", &mon, &call);
        term_t from = el(call, 1), reply, items[2] = {el(from, 1), heap_atom("the_reply")};
        CU_ASSERT_FATAL(heap_make_tuple_from(&p.h, 2, items, &reply) == 0);
        /* {2, '', To} + Msg (SEND) */
        term_t send_ctl_items[3] = {term_make_small(DOP_SEND), heap_atom(""), el(from, 0)};
        send_ctl(&p, send_ctl_items, 3, reply);
        CU_ASSERT_FATAL(wait_call(10000));
        CU_ASSERT(slot.rc == 0 && slot.reply == heap_atom("the_reply"));
        if (slot.rc != 0)
            break;
        /* The caller's demonitor follows: DEMONITOR_P with the same ref. */
        dist_msg_t m;
        CU_ASSERT_FATAL(recv_msg(&p, &m));
        CU_ASSERT(m.op == DOP_DEMONITOR_P);
    }
    np_peer_close(&p);
}

/* A node nobody runs: nodedown (noconnection) once the setup attempt
 * fails, each time on a fresh attempt, never the call's timeout: the
 * controller of the failed connection learns the monitor before its
 * nodedown, however quickly the attempt fails. */
static void test_unreachable_node(void)
{
    np_start_node(0);
    for (int i = 0; i < 30; i++) {
        start_call("rex", "nobody_here@localhost", 8000);
        CU_ASSERT_FATAL(wait_call(15000));
        CU_ASSERT(slot.rc == GIRDER_ENODEDOWN);
        CU_ASSERT(slot.took_ms < 4000);
        if (slot.rc != GIRDER_ENODEDOWN) {
            fprintf(stderr, "unreachable call %d: %d after %llu ms\n", i, slot.rc,
                    (unsigned long long)slot.took_ms);
            break;
        }
    }
}

/* What the watcher coroutine saw: rounds that got their nodedown, and
 * the link's exit reason. */
typedef struct watch_slot {
    int rounds, downs;
    term_t link_reason;
    bool done;
} watch_slot_t;

static watch_slot_t watch;

static bool is_nodedown(term_t msg, void *node)
{
    return term_is_tuple(msg) && term_tuple_arity(msg) == 2 &&
           el(msg, 0) == heap_atom("nodedown") && el(msg, 1) == *(term_t *)node;
}

static bool is_exit(term_t msg, void *unused)
{
    (void)unused;
    return term_is_tuple(msg) && term_tuple_arity(msg) == 3 && el(msg, 0) == heap_atom("EXIT");
}

static int watcher_main(sched_ctx_t *ctx, term_t arg)
{
    (void)arg;
    term_t node = heap_atom("nobody_here@localhost"), msg;
    int downs = 0;
    for (int i = 0; i < watch.rounds; i++) {
        if (cluster_monitor_node(ctx, node, true) != 0)
            break;
        if (sched_receive_wait(ctx, is_nodedown, &node, 5000, &msg) != 0)
            break;
        downs++;
    }
    term_t reason = TERM_NONE, remote;
    (void)sched_trap_exit(ctx, true);
    if (heap_make_ext_pid(sched_heap(ctx), node, 40, 0, 7, &remote) == 0 &&
        sched_link(ctx, remote) == 0 && sched_receive_wait(ctx, is_exit, NULL, 5000, &msg) == 0)
        reason = el(msg, 2);
    pthread_mutex_lock(&slot_mu);
    watch.downs = downs;
    watch.link_reason = term_is_atom(reason) ? reason : TERM_NONE;
    watch.done = true;
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
    return 0;
}

/* monitor_node on a node nobody runs: each round starts a connection
 * attempt, and each gets its {nodedown, Node} however quickly the attempt
 * fails (the request used to be sent to the controller after the lock:
 * when the attempt failed in between, the controller had gone with its
 * nodedown and the request was dropped, so no nodedown ever came).  A link
 * to a pid there breaks with noconnection. */
static void test_unreachable_monitor_node(void)
{
    np_start_node(0);
    watch = (watch_slot_t){.rounds = 100};
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, watcher_main, TERM_NIL, &pid) == 0);
    CU_ASSERT_FATAL(wait_done(&watch.done, 60000));
    CU_ASSERT_EQUAL(watch.downs, watch.rounds);
    CU_ASSERT(watch.link_reason == heap_atom("noconnection"));
}

static const gd_test_case_t gd_tests[] = {
    {"first call while the connection is set up", test_first_call_while_connecting},
    {"calls on an up connection", test_call_reply},
    {"unreachable node: nodedown, never a hang", test_unreachable_node},
    {"unreachable node: monitor_node and link", test_unreachable_monitor_node},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_remote_call", gd_tests)
