/*
 * node_test_util.h — what the node/ suites share: a log of whole terms
 * (copied, so a test thread can compare them after the process that logged
 * them moved on), and a client process that makes gen_server calls by hand
 * in OTP's wire shape, for checking servers without girder_call.
 */
#ifndef GIRDER_TESTS_NODE_TEST_UTIL_H
#define GIRDER_TESTS_NODE_TEST_UTIL_H

#include "girder.h"
#include "sched_test_util.h"

/* Starts a node with n schedulers and the test heaps; stops it. */
void nt_start(unsigned schedulers);
void nt_stop(void);

/* The test thread's heap, for expected terms. */
heap_t *nt_heap(void);
/* A list of n terms on the test heap. */
term_t nt_list(size_t n, ...);

/* Logs a copy of t under the atom `tag` (any thread; aborts on ENOMEM:
 * a test without memory cannot report anyway). */
void nt_log(term_t tag, term_t t);
/* Waits (5 s) for the i-th record under tag and returns its term (valid
 * until nt_reset); false on timeout. */
bool nt_wait(term_t tag, size_t i, term_t *out);
/* Records under tag so far. */
size_t nt_count(term_t tag);
/* Drops every record. */
void nt_reset(void);
/* True when the i-th record under tag equals `want` (waits as nt_wait). */
bool nt_logged(term_t tag, size_t i, term_t want);

/*
 * The client: a behaviour process that, on {call, Server, Req}, monitors
 * Server (pid or name), sends {'$gen_call', {Self, Ref}, Req} with a fresh
 * ref and waits for {Ref, Reply} or the monitor's 'DOWN'; it logs
 * reply => Reply or down => Reason.  On {call_tag, Server, Tag, Req} it
 * sends Tag as the tag instead and logs whatever message comes back under
 * `raw` (the whole message); {sys, Server, Req} is a call with the label
 * system (sys's messages).  Calls are answered in order, one at a time.
 * {monitor, Pid}: monitors Pid and logs watch_down => Reason at its 'DOWN'.
 * Anything else is logged under client_other.
 */
extern const sched_behaviour_t nt_client;
term_t nt_spawn_client(void);
void nt_call(term_t client, term_t server, term_t req);

#endif
