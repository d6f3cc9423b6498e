/*
 * internal.h — what node/loadgen/'s files share: a share's state and one
 * client's.
 */
#ifndef GIRDER_LOADGEN_INTERNAL_H
#define GIRDER_LOADGEN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "loadgen.h"

/* Recorders per share: clients record into shard index % LG_SHARDS under
 * its lock, so scheduler threads rarely meet on one lock (a series has a
 * single owner at a time). */
#define LG_SHARDS 64

/* How the rpc workload judges a result. */
enum lg_rpc_check {
    LG_RPC_ANY = 0,     /* anything but {badrpc, _} */
    LG_RPC_PAYLOAD = 1, /* the payload itself (girder:echo/1) */
    LG_RPC_TARGET = 2,  /* the target's node name (erlang:node/0) */
};

/* One client process's C side (the process's state term holds its
 * index).  Written only by that process; `done` is read by the share's
 * master. */
struct lg_client {
    uint64_t seq;     /* requests sent (the outstanding one's number) */
    uint64_t sent_ns; /* the outstanding request's send time (open loop: intended) */
    uint64_t next_ns; /* open loop: the next intended send time */
    uint32_t ops;     /* operations the outstanding request stands for */
    uint32_t index;
    bool outstanding;
    atomic_bool done; /* exited (or about to): its figures are final */
};

/* The atoms a client compares or builds per message, looked up once per
 * share: heap_atom hashes its text on every call, four times a round
 * trip on the hot path otherwise. */
typedef struct lg_atoms {
    term_t timeout, stop, go, echo_reply, gen_call, gen_cast, put, get, ok, call, user, badrpc,
        girder_bench;
} lg_atoms_t;

struct lg_share {
    lg_params_t p;
    lg_atoms_t atom;
    enum lg_rpc_check rpc_check;
    uint64_t clients; /* in this share */
    uint32_t index;
    uint64_t start_ns;         /* clients start */
    uint64_t measure_ns;       /* warm-up over: the series start */
    uint64_t end_ns;           /* no request is sent after this */
    uint64_t stop_ns;          /* past it, outstanding requests count lost (LG_GRACE_MS) */
    uint64_t open_interval_ns; /* open loop: between one client's sends */
    lg_client_t *cl;
    term_t *pids;
    heap_binary_t *bin; /* the binary payload over 64 bytes, shared by every client */
    bench_live_t *live;
    bench_hist_t *window; /* the master's progress scratch */
    struct {
        pthread_mutex_t lock;
        bench_series_t *series;
    } shard[LG_SHARDS];
    atomic_uint_fast64_t lost, misordered, exited;
};

/* Fills a (GD_ENOMEM when the atom table is full). */
int lg_atoms_init(lg_atoms_t *a) GD_MUST_CHECK;

/* Builds the payload of s on h (a binary over 64 bytes shares s->bin). */
int lg_payload_build(lg_share_t *s, heap_t *h, term_t *out) GD_MUST_CHECK;

/* Sends a '$gen_call' with tag Seq from ctx to dest ({Name, Node}). */
int lg_send_call(sched_ctx_t *ctx, const lg_atoms_t *a, term_t name, term_t node, uint64_t seq,
                 term_t request) GD_MUST_CHECK;

#endif
