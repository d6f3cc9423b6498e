/*
 * test_global.c — cluster/global.c's sync sessions against raw visible
 * peers that speak OTP's global messages by hand (node_peer_util.h), for
 * the orders of events an OTP node produces and a real cluster only hits
 * now and then: a peer that ends its side of a sync session (it learnt of
 * us through another node and sent or got in_sync) answers nothing more
 * of it, and the node must not keep `global` locked for that session, or
 * every registration is refused until the caller gives up (20 s).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cunit_main.h"
#include "node_peer_util.h"

static term_t tuple(heap_t *h, size_t n, const term_t *items)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_tuple_from(h, n, items, &t) == 0);
    return t;
}

static size_t arity(term_t t)
{
    return term_is_tuple(t) ? term_tuple_arity(t) : 0;
}

static term_t elem(term_t t, size_t i)
{
    return term_tuple_elems(t)[i];
}

/* {'$gen_cast', Req} to the node's global_name_server. */
static void cast(np_peer_t *p, term_t req)
{
    term_t items[2] = {heap_atom("$gen_cast"), req};
    CU_ASSERT_FATAL(np_send_named(p, "global_name_server", tuple(&p->h, 2, items)));
}

/* {init_connect, {8, Tag}, Peer, {locker, no_longer_a_pid, #{}, Self}}. */
static void send_init_connect(np_peer_t *p, int tag)
{
    term_t map;
    CU_ASSERT_FATAL(heap_make_map(&p->h, NULL, NULL, 0, &map) == 0);
    term_t vsn[2] = {term_make_small(8), term_make_small(tag)};
    term_t locker[4] = {heap_atom("locker"), heap_atom("no_longer_a_pid"), map, p->self};
    term_t items[4] = {heap_atom("init_connect"), tuple(&p->h, 2, vsn), heap_atom(p->name),
                       tuple(&p->h, 4, locker)};
    cast(p, tuple(&p->h, 4, items));
}

/* The next message from the node whose tag (inside '$gen_cast' /
 * '$gen_call' when wrapped) is tag, within ms: the inner request (for a
 * call, *from gets its From); false when none came.  Others are skipped. */
static bool recv_tagged(np_peer_t *p, const char *tag, int ms, term_t *req, term_t *from)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        dist_msg_t m;
        if (left <= 0 || !np_peer_recv(p, &m, (int)left))
            return false;
        term_t msg = m.payload, inner = msg;
        if (arity(msg) == 2 && elem(msg, 0) == heap_atom("$gen_cast"))
            inner = elem(msg, 1);
        if (arity(msg) == 3 && elem(msg, 0) == heap_atom("$gen_call")) {
            inner = elem(msg, 2);
            if (from != NULL)
                *from = elem(msg, 1);
        }
        if (arity(inner) > 0 && elem(inner, 0) == heap_atom(tag)) {
            *req = inner;
            return true;
        }
    }
}

/* Connects p (visible), takes the node's init_connect and answers with
 * ours (tag 7): the node then locks `global` for the session and sends
 * its lock_set true, which p never answers (as a peer that ended the
 * session).  The node's server pid goes to *server. */
static void session_left_waiting(np_peer_t *p, const char *name, term_t *server)
{
    CU_ASSERT_FATAL(np_peer_connect(p, NP_COOKIE, name, DFLAG_GIRDER_DEFAULT, 0) == 1);
    term_t req;
    CU_ASSERT_FATAL(recv_tagged(p, "init_connect", 3000, &req, NULL));
    CU_ASSERT_FATAL(arity(req) == 4 && arity(elem(req, 3)) == 4);
    *server = elem(elem(req, 3), 3);
    CU_ASSERT_FATAL(term_is_pid(*server));
    send_init_connect(p, 7);
    CU_ASSERT_FATAL(recv_tagged(p, "lock_set", 3000, &req, NULL));
    CU_ASSERT(arity(req) == 5 && elem(req, 2) == heap_atom("true") &&
              elem(req, 4) == term_make_small(7));
}

typedef struct reg_job {
    term_t name, pid;
    int rc;
    long ms;
    atomic_bool done;
} reg_job_t;

static void *reg_thread(void *arg)
{
    reg_job_t *j = arg;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j->rc = cluster_global_register(NULL, j->name, j->pid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    j->ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    atomic_store(&j->done, true);
    return NULL;
}

/* To ! Msg from p->self (SEND_SENDER). */
static void send_to_pid(np_peer_t *p, term_t to, term_t msg)
{
    term_t items[3] = {term_make_small(DOP_SEND_SENDER), p->self, to};
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(tuple(&p->h, 3, items), msg, 1, 0, &b) == 0);
    CU_ASSERT(np_write_all(p->fd, b.data, b.len));
    etf_buf_free(&b);
}

/* Answers the '$gen_call's the node sends peer for a while (ms) as an OTP
 * global_name_server with nothing held does: set_lock / del_lock true,
 * register yes, unregister ok.  The number answered. */
static int answer_calls(np_peer_t *peer, int ms)
{
    int answered = 0;
    dist_msg_t m;
    while (np_peer_recv(peer, &m, ms)) {
        term_t msg = m.payload;
        if (arity(msg) != 3 || elem(msg, 0) != heap_atom("$gen_call") || arity(elem(msg, 1)) != 2)
            continue;
        term_t from = elem(msg, 1), req = elem(msg, 2), tag = arity(req) ? elem(req, 0) : req;
        const char *reply = tag == heap_atom("register")     ? "yes"
                            : tag == heap_atom("unregister") ? "ok"
                                                             : "true";
        term_t items[2] = {elem(from, 1), heap_atom(reply)};
        send_to_pid(peer, elem(from, 0), tuple(&peer->h, 2, items));
        answered++;
    }
    return answered;
}

/* Registers name for a new local process while the peers tick (the
 * node's net_tick_timeout would end their connections, and with them the
 * session, in 2 s) and answer the registration's set_lock / register /
 * del_lock calls; the registration's result, *ms its duration. */
static int register_answering(np_peer_t *const *peers, size_t n, const char *name, long *ms)
{
    reg_job_t j = {.name = heap_atom(name), .rc = 1};
    atomic_init(&j.done, false);
    CU_ASSERT_FATAL(sched_spawn(NULL, &np_idle_beh, TERM_NIL, &j.pid) == 0);
    pthread_t t;
    CU_ASSERT_FATAL(pthread_create(&t, NULL, reg_thread, &j) == 0);
    while (!atomic_load(&j.done))
        for (size_t i = 0; i < n; i++) {
            static const uint8_t tick[4] = {0};
            CU_ASSERT(np_write_all(peers[i]->fd, tick, sizeof tick));
            answer_calls(peers[i], 50);
        }
    pthread_join(t, NULL);
    CU_ASSERT(sched_exit_pid(NULL, j.pid, heap_atom("kill")) == 0);
    *ms = j.ms;
    return j.rc;
}

/* The mesh_interop flake: the node's session with Q waits for Q's
 * lock_set with `global` locked here; then a third node (P) tells the
 * node of Q (new_nodes; a resolved's known list does the same).  The node
 * sends Q in_sync, on which an OTP Q ends its side of the session, so
 * ours must end too, freeing `global`: the registration that follows gets
 * the lock at once (it was refused for 20 s). */
static void test_learnt_through_another(void)
{
    np_peer_t q, p;
    term_t server, req;
    session_left_waiting(&q, "gq1@localhost", &server);
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, "gp1@localhost", DFLAG_GIRDER_DEFAULT, 0) == 1);
    CU_ASSERT_FATAL(recv_tagged(&p, "init_connect", 3000, &req, NULL));
    term_t qv[2] = {heap_atom(q.name), term_make_small(8)};
    term_t nodes = TERM_NIL;
    CU_ASSERT_FATAL(heap_cons(&p.h, tuple(&p.h, 2, qv), TERM_NIL, &nodes) == 0);
    term_t items[6] = {
        heap_atom("new_nodes"), heap_atom(p.name), TERM_NIL, TERM_NIL, nodes, TERM_NIL};
    cast(&p, tuple(&p.h, 6, items));
    CU_ASSERT(recv_tagged(&q, "in_sync", 3000, &req, NULL));
    long ms;
    np_peer_t *peers[2] = {&q, &p};
    CU_ASSERT(register_answering(peers, 2, "gd_test_learnt", &ms) == 0);
    CU_ASSERT(ms < 5000);
    np_peer_close(&p);
    np_peer_close(&q);
}

/* The other side of it: Q learnt of the node through another and sends
 * in_sync while the node's session with Q waits for Q's lock_set.  The
 * session ends, `global` is freed, and a later init_connect from Q (its
 * old session's, as an OTP node sends on a restart of it) starts no new
 * session here: that one would send an init_connect Q has no session for,
 * and two girder nodes doing so restart each other's session for ever. */
static void test_in_sync_ends_session(void)
{
    np_peer_t q;
    term_t server, req;
    session_left_waiting(&q, "gq2@localhost", &server);
    term_t items[3] = {heap_atom("in_sync"), heap_atom(q.name), heap_atom("true")};
    cast(&q, tuple(&q.h, 3, items));
    long ms;
    np_peer_t *peers[1] = {&q};
    CU_ASSERT(register_answering(peers, 1, "gd_test_in_sync", &ms) == 0);
    CU_ASSERT(ms < 5000);
    send_init_connect(&q, 9);
    CU_ASSERT(!recv_tagged(&q, "init_connect", 500, &req, NULL));
    np_peer_close(&q);
}

/* In this order: the first leaves no node known (in_sync does not make Q
 * known), so its registration's lock round is this node alone. */
static const gd_test_case_t gd_tests[] = {
    {"in_sync from a node ends our session with it", test_in_sync_ends_session},
    {"a node learnt of through another ends our session with it", test_learnt_through_another},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_global", gd_tests)
