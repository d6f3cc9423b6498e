/*
 * sched_test_util.h — what the sched/ suites share: a test-thread heap for
 * building messages, and the "observer" behaviour, a process driven by
 * command tuples that records what it receives into a log the test reads.
 */
#ifndef GIRDER_TESTS_SCHED_TEST_UTIL_H
#define GIRDER_TESTS_SCHED_TEST_UTIL_H

#include <stdarg.h>

#include "sched/sched.h"

#ifdef SCHED_TEST_SMALL
#define ST_SCALE(release, small) (small)
#else
#define ST_SCALE(release, small) (release)
#endif

/* Starts a node with n schedulers (CUnit assert) and the test heap. */
void st_start(unsigned schedulers);
/* Only the test heap and log, for a node started by hand. */
void st_start_heap_only(void);
/* Waits for every process to exit (no assert), stops the node, frees the
 * test heap. */
void st_stop(void);

/* The atom for text. */
term_t st_atom(const char *text);
/* Exact equality (=:=) of two terms; a comparison that fails for want of
 * memory counts as unequal (the test then fails on its record, never aborts
 * on a scheduler thread, where CUnit's asserts must not run). */
bool st_term_eq(term_t a, term_t b);
/* A tuple of n terms on the test heap. */
term_t st_tuple(size_t n, ...);
/* Sends from outside any process (asserts success). */
void st_send(term_t to, term_t msg);

/* What the observer logs. */
enum st_kind { ST_MSG, ST_EXIT, ST_DOWN, ST_VALUE, ST_TERMINATE };
typedef struct st_rec {
    term_t self;
    enum st_kind kind;
    term_t a, b; /* MSG: the message if immediate / tag and arg of a 2-tuple of immediates;
                    EXIT: from, reason; DOWN: item (pid or name), reason;
                    VALUE: key, value; TERMINATE: -, reason */
    bool ref_ok; /* DOWN: the ref equals the one the observer stored last */
} st_rec_t;

/* Clears the log. */
void st_log_reset(void);
/* Waits until the log holds at least n records (false on timeout, 5 s). */
bool st_log_wait(size_t n);
/* Copies record i (asserts i is in range). */
st_rec_t st_log_get(size_t i);
size_t st_log_len(void);
/* Waits (5 s) for the i-th record logged by self and copies it. */
bool st_log_of(term_t self, size_t i, st_rec_t *out);
/* The first record of `kind` from `self` (false if none). */
bool st_log_find(term_t self, enum st_kind kind, st_rec_t *out);

/*
 * The observer.  Its messages: immediates and other terms are logged (ST_MSG);
 * {'EXIT', From, R} and {'DOWN', Ref, process, Item, R} are logged as EXIT
 * and DOWN.  Commands (2- or 3-tuples):
 *   {link, P} {unlink, P} {monitor, P} {demonitor, last} {trap, Bool}
 *   {exit_to, P, R} {die, R} {register, Name} {send, To, Msg}
 *   {put, K, V} {get, K} {erase, K}  (logs VALUE: key, result)
 *   {spawn_link, _} {spawn_monitor, _} (child: an observer; logs MSG {child, Pid})
 *   {grow, N} (conses N words onto its state) crash (returns GD_EBADARG)
 * The last monitor ref is kept in the process dictionary (key last_ref).
 */
extern const sched_behaviour_t st_observer;
/* Spawns an observer from the test thread. */
term_t st_spawn_observer(void);
/* Spawns an observer with spawn options. */
term_t st_spawn_observer_opt(const sched_spawn_opts_t *opts);

/* Waits for pid to exit (asserts it does within 5 s). */
void st_wait_dead(term_t pid);
/* Polls cond-like: waits until process_info(pid) shows a waiting process
 * with an empty inbox taken (status waiting), up to 5 s. */
bool st_wait_idle(term_t pid);

/* Monotonic ns. */
uint64_t st_now_ns(void);
/* Sleeps us microseconds (the test thread's waits and pauses). */
void st_sleep_us(long us);

/*
 * The probe: a process that records, for every {ping, SentNs} it handles,
 * the send time and its latency (now - SentNs), for the latency-under-load
 * tests.  The first ST_PROBE_MAX pings are kept.  st_probe_spawn starts
 * one (opts may be NULL) and clears the records; st_probe_ping sends it a
 * ping stamped now; st_probe_wait waits (5 s) until n pings were handled;
 * st_probe_latencies copies the latencies of the pings sent in [from_ns,
 * to_ns) to out (ST_PROBE_MAX entries), sorted, and returns their count.
 */
#define ST_PROBE_MAX 20000
term_t st_probe_spawn(const sched_spawn_opts_t *opts);
void st_probe_ping(term_t probe);
bool st_probe_wait(size_t n);
size_t st_probe_latencies(uint64_t from_ns, uint64_t to_ns, uint64_t *out);

#endif
