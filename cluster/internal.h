/*
 * internal.h — what cluster/'s files share among themselves: the
 * connection handle the loop passes to the message dispatcher, and the
 * services' entry points.
 */
#ifndef GIRDER_CLUSTER_INTERNAL_H
#define GIRDER_CLUSTER_INTERNAL_H

#include "cluster.h"
#include "sched/sched.h"

/* Big-endian fields of the wire formats (reads check bounds first). */
static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}
static inline uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}
static inline uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}
static inline uint8_t *put64(uint8_t *p, uint64_t v)
{
    return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

typedef struct conn conn_t;

/* One log line on stderr, "girder: <time>: <text>". */
void cluster_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Handles one decoded control message from connection c (loop thread;
 * terms on h, which is freed afterwards).  A negative code closes c. */
int cluster_dispatch(conn_t *c, heap_t *h, const dist_msg_t *m) GD_MUST_CHECK;

/* Sends control + payload (TERM_NONE: none) on c.  Loop thread only (c
 * cannot be freed under it there).  DIST_ECLOSED when c is gone. */
int cluster_conn_send(conn_t *c, term_t control, term_t payload) GD_MUST_CHECK;

/* A send from a local process (or [] from outside one) to an external
 * pid, alias or {Name, Node}: what the sched/ send hook does. */
int cluster_send_remote(term_t from, term_t to, term_t msg) GD_MUST_CHECK;

/* The visible nodes connected now, as a list on h. */
int cluster_nodes(heap_t *h, term_t *out) GD_MUST_CHECK;

/* The nodes connected now whose kind is in `kinds` (CLUSTER_NODES_*, as
 * erlang:nodes/1's visible and hidden), newest first, consed in front of
 * tail on h. */
enum { CLUSTER_NODES_VISIBLE = 1, CLUSTER_NODES_HIDDEN = 2 };
int cluster_nodes_of(heap_t *h, unsigned kinds, term_t tail, term_t *out) GD_MUST_CHECK;

/* The peer's node atom of connection c (loop thread, once up). */
term_t cluster_conn_node(conn_t *c);

/* The controller process of connection c (loop thread). */
term_t cluster_conn_controller(conn_t *c);

/* Controller acknowledgements (the connection's reader: next and wait;
 * controller: ack).  wait returns once the controller ctrl of c
 * acknowledged seq, the connection went, or CLUSTER_CTRL_WAIT_MS passed;
 * on a scheduler thread (node.c's idle poller) it does not wait but
 * stops the connection's reading until then (the reader must return
 * without reading further frames of c). */
#define CLUSTER_CTRL_WAIT_MS 500
uint64_t cluster_ctrl_next(conn_t *c);
void cluster_ctrl_wait(conn_t *c, uint64_t seq);
void cluster_ctrl_ack(term_t node_atom, term_t ctrl, uint64_t seq);

/* Spawns a connection's controller for the peer node_atom. */
int cluster_controller_start(term_t node_atom, term_t *pid) GD_MUST_CHECK;

/* Sends control + payload to node_atom on its live connection only (never
 * connects): a controller's answers die with their connection.  Any
 * thread. */
int cluster_send_control(term_t node_atom, term_t control, term_t payload) GD_MUST_CHECK;
/* As cluster_send_control for a process's own signal (not a
 * controller's answer): it may be held with what the process sends next
 * in its run and leave in the same write (node.c's cork). */
int cluster_send_own_control(term_t node_atom, term_t control, term_t payload) GD_MUST_CHECK;
/* Writes what the calling process's run holds back (node.c's cork) now:
 * before the caller blocks its thread for an answer that may need it. */
void cluster_cork_flush(void);

/* Spawns net_kernel, rex and echo, and the node events process (its pid
 * in *events) (after sched_start). */
int cluster_services_start(term_t *events) GD_MUST_CHECK;

/* Tells the node events process that a visible node came up or went
 * down (node.c, under its lock: events keep the connections' order). */
int cluster_node_event(term_t events, term_t node_atom, bool up) GD_MUST_CHECK;

/* The node's global registry (global.c) hangs off the node's struct
 * (node.c): NULL until cluster_global_start allocates it, after
 * cluster_global_clear (at stop, once the processes are gone) frees it. */
typedef struct cluster_global cluster_global_t;
cluster_global_t **cluster_global_slot(void);
/* Starts global_name_server and the rpc built-ins girder:global_* and
 * global:register_name/2 & co. (global.c). */
int cluster_global_start(void) GD_MUST_CHECK;
void cluster_global_clear(void);

/* The node events process (valid while the node runs). */
term_t cluster_events_process(void);
/* TLS (tls.c): a new OpenSSL bufferevent on fd for one connection, as
 * bufferevent_socket_new with options; the client side sets SNI and the
 * host check for peer_host (the host part of the node name dialled).
 * On success fd belongs to the bufferevent (which may hold it under
 * another number); NULL on failure: fd is still the caller's to close. */
struct event_base;
struct bufferevent;
struct bufferevent *cluster_tls_bev_new(const cluster_tls_t *tls, struct event_base *base, int fd,
                                        bool server, const char *peer_host, int options);
/* Why a TLS bufferevent failed (during the TLS or distribution handshake,
 * or after), as one line: the certificate verdict, or OpenSSL's reason
 * (its error queue is emptied). */
void cluster_tls_describe(struct bufferevent *bev, bool handshaking, char *buf, size_t size);
/* The largest write cluster_tls_write_direct takes: libevent's own
 * writes from the output buffer are at most this long, and a retry of a
 * record OpenSSL could not finish must be at least as long. */
#define CLUSTER_TLS_DIRECT_MAX 16384
/* Encrypts and writes p[0..n) (n <= CLUSTER_TLS_DIRECT_MAX) from the
 * caller's thread, under the bufferevent's lock and with its output
 * buffer empty; returns how much went out.  When that is less than n the
 * caller appends the rest to the output buffer, contiguously: if
 * OpenSSL holds a record it could not finish, libevent's next write from
 * that buffer is the retry OpenSSL requires. */
size_t cluster_tls_write_direct(struct bufferevent *bev, const uint8_t *p, size_t n);

#endif
