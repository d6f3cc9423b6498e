/*
 * test_basic.c — processes, messages and signals one at a time: order of a
 * single sender, exits (normal, kill → killed, other reasons, trap_exit),
 * links, monitors, noproc, registered names, the process dictionary,
 * spawn_link/spawn_monitor, failing callbacks, max_heap_size, process_info,
 * the idle poller.
 */
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "cunit_main.h"
#include "sched_test_util.h"

#define A st_atom
#define S term_make_small

static void test_order_one_sender(void)
{
    st_start(2);
    term_t o = st_spawn_observer();
    for (int i = 0; i < 1000; i++)
        st_send(o, S(i));
    CU_ASSERT_FATAL(st_log_wait(1000));
    for (size_t i = 0; i < 1000; i++) {
        st_rec_t r = st_log_get(i);
        CU_ASSERT(r.kind == ST_MSG && r.a == S((int64_t)i));
    }
    /* A boxed message arrives intact (copied into a fragment). */
    st_send(o, st_tuple(2, A("hello"), S(42)));
    CU_ASSERT_FATAL(st_log_wait(1001));
    st_rec_t r = st_log_get(1000);
    CU_ASSERT(r.a == A("hello") && r.b == S(42));
    st_stop();
}

static void test_exit_reasons(void)
{
    st_start(2);
    term_t watcher = st_spawn_observer();
    term_t t1 = st_spawn_observer(), t2 = st_spawn_observer(), t3 = st_spawn_observer();
    st_send(watcher, st_tuple(2, A("monitor"), t1));
    st_send(watcher, st_tuple(2, A("monitor"), t2));
    st_send(watcher, st_tuple(2, A("monitor"), t3));
    st_send(t2, st_tuple(2, A("trap"), A("true")));
    st_send(t3, st_tuple(2, A("trap"), A("true")));
    CU_ASSERT(st_wait_idle(t2));
    CU_ASSERT(st_wait_idle(t3));
    CU_ASSERT(st_wait_idle(watcher));

    /* normal from outside: ignored by a non-trapping process. */
    CU_ASSERT(sched_exit_pid(NULL, t1, A("normal")) == GD_OK);
    CU_ASSERT(st_wait_idle(t1));
    CU_ASSERT(sched_is_alive(t1));
    /* Other reasons kill it. */
    CU_ASSERT(sched_exit_pid(NULL, t1, A("boom")) == GD_OK);
    st_wait_dead(t1);
    /* A trapping process gets {'EXIT', From, Reason} for boom... */
    CU_ASSERT(sched_exit_pid(NULL, t2, A("boom")) == GD_OK);
    CU_ASSERT(st_wait_idle(t2));
    st_rec_t r;
    CU_ASSERT_FATAL(st_log_find(t2, ST_EXIT, &r));
    CU_ASSERT(r.a == A("undefined") && r.b == A("boom"));
    CU_ASSERT(sched_is_alive(t2));
    /* ...but kill is untrappable and becomes killed. */
    CU_ASSERT(sched_exit_pid(NULL, t2, A("kill")) == GD_OK);
    st_wait_dead(t2);
    /* A process ending itself. */
    st_send(t3, st_tuple(2, A("die"), A("done")));
    st_wait_dead(t3);
    /* t2's EXIT, t1's and t3's terminate, three DOWNs. */
    CU_ASSERT_FATAL(st_log_wait(6));
    CU_ASSERT(st_wait_idle(watcher));
    term_t want[3][2] = {{t1, A("boom")}, {t2, A("killed")}, {t3, A("done")}};
    for (int i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < st_log_len(); k++) {
            r = st_log_get(k);
            if (r.self == watcher && r.kind == ST_DOWN && r.a == want[i][0]) {
                CU_ASSERT(r.b == want[i][1]);
                found = true;
            }
        }
        CU_ASSERT(found);
    }
    /* terminate runs with the reason, except for killed. */
    CU_ASSERT(st_log_find(t3, ST_TERMINATE, &r) && r.b == A("done"));
    CU_ASSERT(!st_log_find(t2, ST_TERMINATE, &r));
    st_stop();
}

static void test_links(void)
{
    st_start(2);
    term_t trapper = st_spawn_observer(), plain = st_spawn_observer();
    term_t a = st_spawn_observer(), b = st_spawn_observer(), watcher = st_spawn_observer();
    st_send(trapper, st_tuple(2, A("trap"), A("true")));
    st_send(trapper, st_tuple(2, A("link"), a));
    st_send(plain, st_tuple(2, A("link"), a));
    st_send(watcher, st_tuple(2, A("monitor"), plain));
    CU_ASSERT(st_wait_idle(trapper) && st_wait_idle(plain) && st_wait_idle(watcher));
    CU_ASSERT(st_wait_idle(a));
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(a, &info) == GD_OK && info.links == 2);
    /* a exits normally: the trapper hears it, the plain one survives. */
    st_send(a, st_tuple(2, A("die"), A("normal")));
    st_wait_dead(a);
    CU_ASSERT(st_wait_idle(trapper) && st_wait_idle(plain));
    st_rec_t r;
    CU_ASSERT(st_log_find(trapper, ST_EXIT, &r) && r.a == a && r.b == A("normal"));
    CU_ASSERT(sched_is_alive(plain));
    /* b exits with boom: linked plain dies with boom, its watcher sees it. */
    st_send(plain, st_tuple(2, A("link"), b));
    CU_ASSERT(st_wait_idle(plain) && st_wait_idle(b));
    st_send(b, st_tuple(2, A("die"), A("boom")));
    st_wait_dead(b);
    st_wait_dead(plain);
    CU_ASSERT(st_wait_idle(watcher));
    CU_ASSERT(st_log_find(watcher, ST_DOWN, &r) && r.a == plain && r.b == A("boom"));
    /* unlink: a later exit does not propagate. */
    term_t c = st_spawn_observer(), d = st_spawn_observer();
    st_send(c, st_tuple(2, A("link"), d));
    st_send(c, st_tuple(2, A("unlink"), d));
    /* Both signals must reach d before it dies: a LINK that reaches a dead
     * d is answered with a noproc exit that kills c (correctly). */
    CU_ASSERT(st_wait_idle(c) && st_wait_idle(d));
    st_send(d, st_tuple(2, A("die"), A("boom")));
    st_wait_dead(d);
    CU_ASSERT(st_wait_idle(c));
    CU_ASSERT(sched_is_alive(c));
    st_stop();
}

static void test_noproc(void)
{
    st_start(2);
    term_t o = st_spawn_observer(), dead = st_spawn_observer();
    st_send(dead, st_tuple(2, A("die"), A("normal")));
    st_wait_dead(dead);
    /* A send to a dead pid is dropped silently. */
    CU_ASSERT(sched_send(NULL, dead, S(1)) == GD_OK);
    st_send(o, st_tuple(2, A("monitor"), dead));
    st_rec_t r;
    CU_ASSERT_FATAL(st_log_of(o, 0, &r));
    CU_ASSERT(r.kind == ST_DOWN && r.a == dead && r.b == A("noproc") && r.ref_ok);
    /* Monitor of an unregistered name: DOWN for {Name, Node}, noproc. */
    st_send(o, st_tuple(2, A("monitor"), A("nobody_here")));
    CU_ASSERT_FATAL(st_log_of(o, 1, &r));
    CU_ASSERT(r.kind == ST_DOWN && r.a == A("nobody_here") && r.b == A("noproc") && r.ref_ok);
    /* link to a dead pid while trapping exits: {'EXIT', Pid, noproc}. */
    st_send(o, st_tuple(2, A("trap"), A("true")));
    st_send(o, st_tuple(2, A("link"), dead));
    CU_ASSERT_FATAL(st_log_of(o, 2, &r));
    CU_ASSERT(r.kind == ST_EXIT && r.a == dead && r.b == A("noproc"));
    /* Not trapping: link to a dead pid kills with noproc. */
    term_t w = st_spawn_observer(), victim = st_spawn_observer();
    st_send(w, st_tuple(2, A("monitor"), victim));
    CU_ASSERT(st_wait_idle(w));
    st_send(victim, st_tuple(2, A("link"), dead));
    st_wait_dead(victim);
    CU_ASSERT(st_wait_idle(w));
    CU_ASSERT(st_log_find(w, ST_DOWN, &r) && r.a == victim && r.b == A("noproc"));
    st_stop();
}

static void test_demonitor(void)
{
    st_start(2);
    term_t o = st_spawn_observer(), t = st_spawn_observer();
    st_send(o, st_tuple(2, A("monitor"), t));
    st_send(o, st_tuple(2, A("demonitor"), A("last")));
    CU_ASSERT(st_wait_idle(o) && st_wait_idle(t));
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(t, &info) == GD_OK && info.monitored_by == 0);
    st_send(t, st_tuple(2, A("die"), A("boom")));
    st_wait_dead(t);
    CU_ASSERT(st_wait_idle(o));
    st_rec_t r;
    CU_ASSERT(!st_log_find(o, ST_DOWN, &r));
    st_stop();
}

/* sched_monitor_for: a monitor set for another process, from a thread
 * that is no process.  The target's exit right after the call reports its
 * real reason (the monitor is in place before anything sent later), and
 * the watcher receives the 'DOWN' as its own; dead targets and unknown
 * names give noproc. */
static void test_monitor_for(void)
{
    st_start(2);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == GD_OK);
    term_t w = st_spawn_observer(), t = st_spawn_observer(), ref;
    CU_ASSERT_FATAL(sched_ref_new(&h, &ref) == GD_OK);
    CU_ASSERT_FATAL(sched_monitor_for(w, t, ref) == GD_OK);
    st_send(t, st_tuple(2, A("die"), A("boom")));
    st_rec_t r;
    CU_ASSERT_FATAL(st_log_of(w, 0, &r));
    CU_ASSERT(r.kind == ST_DOWN && r.a == t && r.b == A("boom"));
    sched_process_info_t info;
    CU_ASSERT(st_wait_idle(w) && sched_process_info(w, &info) == GD_OK && info.monitors == 0);
    /* A dead target, an unregistered name. */
    CU_ASSERT(sched_ref_new(&h, &ref) == GD_OK && sched_monitor_for(w, t, ref) == GD_OK);
    CU_ASSERT_FATAL(st_log_of(w, 1, &r));
    CU_ASSERT(r.kind == ST_DOWN && r.a == t && r.b == A("noproc"));
    CU_ASSERT(sched_ref_new(&h, &ref) == GD_OK &&
              sched_monitor_for(w, A("nobody_here"), ref) == GD_OK);
    CU_ASSERT_FATAL(st_log_of(w, 2, &r));
    CU_ASSERT(r.kind == ST_DOWN && r.a == A("nobody_here") && r.b == A("noproc"));
    /* Held by the watcher: it shows in both process_infos. */
    term_t t2 = st_spawn_observer();
    CU_ASSERT(sched_ref_new(&h, &ref) == GD_OK && sched_monitor_for(w, t2, ref) == GD_OK);
    CU_ASSERT(st_wait_idle(w) && st_wait_idle(t2));
    CU_ASSERT(sched_process_info(w, &info) == GD_OK && info.monitors == 1);
    CU_ASSERT(sched_process_info(t2, &info) == GD_OK && info.monitored_by == 1);
    /* Errors: a gone watcher, a watcher or ref that is none. */
    CU_ASSERT(sched_monitor_for(t, t2, ref) == SCHED_ENOPROC);
    CU_ASSERT(sched_monitor_for(A("w"), t2, ref) == GD_EINVAL);
    CU_ASSERT(sched_monitor_for(w, t2, A("ref")) == GD_EINVAL);
    heap_destroy(&h);
    st_stop();
}

static void test_registered_names(void)
{
    st_start(2);
    term_t o = st_spawn_observer(), w = st_spawn_observer();
    st_send(o, st_tuple(2, A("register"), A("reg_a")));
    CU_ASSERT(st_wait_idle(o));
    CU_ASSERT(sched_whereis(A("reg_a")) == o);
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(o, &info) == GD_OK && info.registered_name == A("reg_a"));
    /* A second process cannot take the name. */
    term_t o2 = st_spawn_observer();
    st_send(o2, st_tuple(2, A("register"), A("reg_a")));
    st_wait_dead(o2); /* its callback failed with SCHED_ENAME_TAKEN */
    st_send(A("reg_a"), S(7));
    CU_ASSERT(st_wait_idle(o));
    st_rec_t r;
    CU_ASSERT(st_log_find(o, ST_MSG, &r) && r.a == S(7));
    /* Monitor by name: the DOWN names {reg_a, Node}; exit by name. */
    st_send(w, st_tuple(2, A("monitor"), A("reg_a")));
    CU_ASSERT(st_wait_idle(w));
    CU_ASSERT(sched_exit_pid(NULL, A("reg_a"), A("kill")) == GD_OK);
    st_wait_dead(o);
    CU_ASSERT(st_wait_idle(w));
    CU_ASSERT(st_log_find(w, ST_DOWN, &r) && r.a == A("reg_a") && r.b == A("killed") && r.ref_ok);
    CU_ASSERT(sched_whereis(A("reg_a")) == A("undefined"));
    CU_ASSERT(sched_send(NULL, A("reg_a"), S(1)) == SCHED_ENOPROC);
    CU_ASSERT(sched_unregister(A("reg_a")) == SCHED_ENOPROC);
    st_stop();
}

static void test_dictionary(void)
{
    st_start(1);
    term_t o = st_spawn_observer();
    st_send(o, st_tuple(3, A("put"), A("k1"), S(1)));
    st_send(o, st_tuple(3, A("put"), S(99), A("v2")));
    st_send(o, st_tuple(3, A("put"), A("k1"), S(3)));
    /* Garbage between: the dictionary survives collections. */
    st_send(o, st_tuple(2, A("grow"), S(2000)));
    st_send(o, st_tuple(2, A("get"), A("k1")));
    st_send(o, st_tuple(2, A("erase"), S(99)));
    st_send(o, st_tuple(2, A("get"), S(99)));
    st_send(o, st_tuple(2, A("get"), A("nokey")));
    CU_ASSERT_FATAL(st_log_wait(7));
    term_t want[7][2] = {{A("k1"), A("undefined")},
                         {S(99), A("undefined")},
                         {A("k1"), S(1)},
                         {A("k1"), S(3)},
                         {S(99), A("v2")},
                         {S(99), A("undefined")},
                         {A("nokey"), A("undefined")}};
    for (size_t i = 0; i < 7; i++) {
        st_rec_t r = st_log_get(i);
        CU_ASSERT(r.kind == ST_VALUE && r.a == want[i][0] && r.b == want[i][1]);
    }
    st_stop();
}

static void test_spawn_link_monitor(void)
{
    st_start(2);
    term_t parent = st_spawn_observer();
    st_send(parent, st_tuple(2, A("trap"), A("true")));
    st_send(parent, st_tuple(2, A("spawn_link"), S(0)));
    st_send(parent, st_tuple(2, A("spawn_monitor"), S(0)));
    CU_ASSERT_FATAL(st_log_wait(2));
    term_t linked = st_log_get(0).b, monitored = st_log_get(1).b;
    CU_ASSERT(term_is_local_pid(linked) && term_is_local_pid(monitored));
    CU_ASSERT(st_wait_idle(parent));
    sched_process_info_t info;
    CU_ASSERT(sched_process_info(parent, &info) == GD_OK && info.links == 1 && info.monitors == 1);
    st_send(linked, st_tuple(2, A("die"), A("bye")));
    st_send(monitored, A("crash"));
    CU_ASSERT_FATAL(st_log_wait(6));
    CU_ASSERT(st_wait_idle(parent));
    st_rec_t r;
    CU_ASSERT(st_log_find(parent, ST_EXIT, &r) && r.a == linked && r.b == A("bye"));
    /* A failing callback kills only its process: {callback_error, Code}. */
    CU_ASSERT(st_log_find(parent, ST_DOWN, &r) && r.a == monitored && r.ref_ok);
    CU_ASSERT(r.b == TERM_NONE); /* a tuple */
    CU_ASSERT(sched_is_alive(parent));
    st_stop();
}

static void test_max_heap_size(void)
{
    st_start(1);
    term_t w = st_spawn_observer();
    sched_spawn_opts_t o = {.max_heap_size = 1000};
    term_t t = st_spawn_observer_opt(&o);
    st_send(w, st_tuple(2, A("monitor"), t));
    CU_ASSERT(st_wait_idle(w));
    st_send(t, st_tuple(2, A("grow"), S(100)));
    CU_ASSERT(st_wait_idle(t));
    CU_ASSERT(sched_is_alive(t));
    st_send(t, st_tuple(2, A("grow"), S(5000)));
    st_wait_dead(t);
    CU_ASSERT(st_wait_idle(w));
    st_rec_t r;
    CU_ASSERT(st_log_find(w, ST_DOWN, &r) && r.a == t && r.b == A("killed"));
    st_stop();
}

static void test_process_info(void)
{
    st_start(1);
    sched_spawn_opts_t o = {.priority = SCHED_PRIO_LOW};
    term_t p = st_spawn_observer_opt(&o);
    st_send(p, st_tuple(2, A("grow"), S(300)));
    CU_ASSERT(st_wait_idle(p));
    sched_process_info_t info;
    CU_ASSERT_FATAL(sched_process_info(p, &info) == GD_OK);
    CU_ASSERT(info.status == SCHED_STATUS_WAITING);
    CU_ASSERT(info.priority == SCHED_PRIO_LOW);
    CU_ASSERT(info.message_queue_len == 0);
    CU_ASSERT(info.heap_size_words >= 600);
    CU_ASSERT(info.reductions > 0);
    CU_ASSERT(info.memory_bytes >= info.heap_size_words * 8);
    CU_ASSERT(info.registered_name == TERM_NIL);
    term_t dead = TERM_NIL;
    CU_ASSERT(sched_process_info(term_make_local_pid(12345, 3), &info) == SCHED_ENOPROC);
    CU_ASSERT(sched_process_info(dead, &info) == SCHED_ENOPROC);
    st_stop();
}

static void test_stop_with_live_processes(void)
{
    /* Processes alive at stop are freed (LSan checks in the asan build). */
    st_start(2);
    for (int i = 0; i < 100; i++) {
        term_t o = st_spawn_observer();
        st_send(o, st_tuple(2, A("grow"), S(50)));
        st_send(o, st_tuple(2, A("hello"), S(i)));
    }
    CU_ASSERT(sched_process_count() == 100);
    st_stop();
    CU_ASSERT(sched_process_count() == 0);
    /* The node starts again after a stop. */
    st_start(1);
    term_t o = st_spawn_observer();
    st_send(o, S(5));
    CU_ASSERT(st_log_wait(1));
    st_stop();
}

/* The default scheduler count follows the CPU affinity mask (taskset, a
 * container's cpuset), as BEAM's does: pinned to one core, one
 * scheduler. */
static void test_default_schedulers_follow_affinity(void)
{
    cpu_set_t old, one;
    CU_ASSERT_FATAL(sched_getaffinity(0, sizeof old, &old) == 0);
    CU_ASSERT(sched_cores_available() == (unsigned)CPU_COUNT(&old));
    int first = 0;
    while (!CPU_ISSET(first, &old))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CU_ASSERT_FATAL(sched_setaffinity(0, sizeof one, &one) == 0);
    CU_ASSERT(sched_cores_available() == 1);
    st_start(0);
    sched_scheduler_stats_t stats[4];
    CU_ASSERT(sched_scheduler_stats(stats, 4) == 1);
    st_stop();
    CU_ASSERT_FATAL(sched_setaffinity(0, sizeof old, &old) == 0);
}

/* ---- the idle poller (sched_set_idle_poller) ----
 * A spinning scheduler calls poll each round and done once when the spin
 * ends; what poll delivers must run.  The poller below delivers
 * IP_MSGS messages (IP_BASE + n) to ip_target, one per call, and records
 * misuse in ip_errors: a `who` out of range, a call off the schedulers,
 * done without poll. */
#define IP_MSGS 100
#define IP_BASE 100000
#define IP_MAX_WHO 8
static term_t ip_target;
static _Atomic unsigned ip_polls, ip_dones, ip_errors, ip_sent;
static _Atomic bool ip_in_spin[IP_MAX_WHO + 1];

static bool ip_poll(void *ud, unsigned who, bool idle)
{
    (void)ud;
    (void)idle;
    if (who == 0 || who > IP_MAX_WHO || !sched_on_scheduler()) {
        atomic_fetch_add(&ip_errors, 1);
        return false;
    }
    atomic_store(&ip_in_spin[who], true);
    atomic_fetch_add(&ip_polls, 1);
    unsigned n = atomic_fetch_add(&ip_sent, 1);
    if (n >= IP_MSGS)
        return false;
    if (sched_send(NULL, ip_target, S(IP_BASE + (int64_t)n)) != 0)
        atomic_fetch_add(&ip_errors, 1);
    return true;
}

static void ip_done(void *ud, unsigned who)
{
    (void)ud;
    if (who == 0 || who > IP_MAX_WHO || !atomic_exchange(&ip_in_spin[who], false))
        atomic_fetch_add(&ip_errors, 1);
    atomic_fetch_add(&ip_dones, 1);
}

static const sched_idle_poller_t ip_poller = {ip_poll, ip_done, NULL};

static size_t ip_delivered(void)
{
    size_t got = 0;
    for (size_t i = 0; i < st_log_len(); i++) {
        st_rec_t r = st_log_get(i);
        got += r.kind == ST_MSG && term_is_small(r.a) && term_small_value(r.a) >= IP_BASE;
    }
    return got;
}

static void test_idle_poller(void)
{
    st_start(2);
    CU_ASSERT(!sched_on_scheduler());
    ip_target = st_spawn_observer();
    sched_set_idle_poller(&ip_poller);
    /* Work every 50 µs keeps the schedulers' idle stretches short, so
     * that they spin with yields (and poll) rather than sleep at once. */
    uint64_t t0 = st_now_ns();
    for (int i = 0; ip_delivered() < IP_MSGS && st_now_ns() - t0 < 5000000000u; i++) {
        st_send(ip_target, S(i));
        nanosleep(&(struct timespec){0, 50000}, NULL);
    }
    CU_ASSERT(ip_delivered() == IP_MSGS);
    sched_set_idle_poller(NULL);
    st_stop();
    CU_ASSERT(atomic_load(&ip_polls) > 0);
    CU_ASSERT(atomic_load(&ip_dones) > 0);
    CU_ASSERT(atomic_load(&ip_errors) == 0);
    /* Every spin that polled ended with done. */
    for (unsigned w = 0; w <= IP_MAX_WHO; w++)
        CU_ASSERT(!atomic_load(&ip_in_spin[w]));
}

static const gd_test_case_t gd_tests[] = {
    {"idle poller: called while spinning, its deliveries run", test_idle_poller},
    {"monitor set for another process", test_monitor_for},
    {"order of one sender", test_order_one_sender},
    {"exit reasons, kill -> killed, trap_exit", test_exit_reasons},
    {"links", test_links},
    {"noproc for dead targets", test_noproc},
    {"demonitor", test_demonitor},
    {"registered names", test_registered_names},
    {"process dictionary", test_dictionary},
    {"spawn_link, spawn_monitor, failing callback", test_spawn_link_monitor},
    {"max_heap_size kills", test_max_heap_size},
    {"process_info", test_process_info},
    {"stop with live processes", test_stop_with_live_processes},
    {"default schedulers follow the affinity mask", test_default_schedulers_follow_affinity},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_basic", gd_tests)
