/*
 * node_peer_util.h — a node started in-process and a raw peer that talks
 * to it over real sockets (the handshake state machine as initiator, the
 * frame decoder for what comes back), for the suites that feed the node
 * bad or heavy input (test_node.c, test_node_malformed.c).  CUnit asserts inside.
 */
#ifndef GIRDER_TESTS_NODE_PEER_UTIL_H
#define GIRDER_TESTS_NODE_PEER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

#define NP_COOKIE "test-cookie-0123456789"

/* Starts the node once per process (embedded EPMD on a port from the
 * kernel, name "np<pid>@localhost", ticktime 2 s, setuptime 1 s, 2
 * schedulers, output limit busy_limit bytes, 0: the default). */
void np_start_node(size_t busy_limit);
/* The same with read batching (cluster_config_t.read_batch_us). */
void np_start_node_batched(size_t busy_limit, unsigned read_batch_us);
const char *np_node_name(void);
/* The embedded EPMD's port (after np_start_node). */
uint16_t np_epmd_port(void);
/* A TCP connection to the node's distribution port (rcvbuf > 0 sets
 * SO_RCVBUF first); the fd. */
int np_tcp_connect(int rcvbuf);
/* Reads what arrives within ms into buf (appending at *len, at most
 * cap); false once the peer closed. */
bool np_read_some(int fd, uint8_t *buf, size_t cap, size_t *len, int ms);
/* True when the node closes fd within ms (what it sends first is
 * discarded). */
bool np_closed_within(int fd, int ms);
/* Writes all of p[0..n). */
bool np_write_all(int fd, const void *p, size_t n);
/* Writes p[0..n) as one frame (4-byte length first). */
bool np_write_frame(int fd, const void *p, size_t n);

typedef struct np_peer {
    int fd;
    char name[64];
    uint8_t *in;
    size_t in_len, in_cap;
    dist_rx_t rx;
    heap_t h;
    term_t self; /* <name.1.0>, on h */
} np_peer_t;

/* Connects as name (NULL: "rawN@localhost") with the cookie and flags
 * (0: DFLAG_GIRDER_DEFAULT, hidden) and runs the handshake; returns its result
 * (1: up, the peer's rx and heap ready), or DIST_ECLOSED when the node
 * closed first. */
int np_peer_connect(np_peer_t *p, const char *cookie, const char *name, uint64_t flags, int rcvbuf);
/* np_peer_connect in two steps: the handshake stops once it reaches
 * state pause_at (a dist_hs_state; DIST_HS_RECV_ACK: the node has taken
 * the name and waits for the challenge reply, held in hs->out), returning
 * 0 then; np_peer_connect_resume sends what was held and runs it to its
 * end (its result as np_peer_connect's). */
int np_peer_connect_paused(np_peer_t *p, const char *cookie, const char *name, uint64_t flags,
                           int rcvbuf, dist_hs_t *hs, int pause_at);
int np_peer_connect_resume(np_peer_t *p, dist_hs_t *hs);
void np_peer_close(np_peer_t *p);
/* The next non-tick message from the node within ms (terms on p->h). */
bool np_peer_recv(np_peer_t *p, dist_msg_t *m, int ms);
/* {Name, Node} ! Msg from the peer's pid; false when the write failed. */
bool np_send_named(np_peer_t *p, const char *name, term_t msg);
/* rpc:call(Node, M, F, Args) in the plain form C nodes use ({Self, {call,
 * M, F, Args, user}} to rex); *out the result (on p->h); false when no
 * {rex, Result} came within 3 s. */
bool np_rpc(np_peer_t *p, const char *m, const char *f, term_t args, term_t *out);
/* {echo, Node} ! {Self, T}; true when {echo_reply, T} comes back. */
bool np_echo_round_trip(np_peer_t *p, term_t t);

/* A process that does nothing: a pid to register, link or monitor. */
extern const sched_behaviour_t np_idle_beh;

#endif
