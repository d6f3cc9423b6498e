/*
 * loadgen.h — the client side of the `girder` command: a short-lived
 * hidden "client node" that ping, rpc, send and bench start in one place,
 * and the load generator behind `girder bench` (library gd_loadgen; the one
 * header of node/loadgen/).
 *
 *   client     flags every client command shares (-setcookie, -sname,
 *              -name, -timeout), a pre-flight EPMD lookup that turns "no
 *              EPMD", "unknown host" and "not running" into one line each,
 *              and running one coroutine process from the main thread with
 *              a deadline (client.c)
 *   workloads  echo, call, cast, rpc: a table of callbacks (workload.c)
 *   shares     a share of the clients running on one node; every girder
 *              node serves girder_bench:start/1 so a remote node can run a
 *              share (share.c)
 *   runs       the coordinator of one target: kind detection, shares on
 *              this node or on client nodes, progress, merged results
 *              (run.c)
 *
 * Conventions are the tree's: 0 or a negative GD_E* code, GD_MUST_CHECK,
 * times in nanoseconds of CLOCK_MONOTONIC unless a name says otherwise.
 */
#ifndef GIRDER_LOADGEN_H
#define GIRDER_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"
#include "sched/sched.h"

/* ------------------------------------------------------------------------ */
/* The client node                                                           */

/* Flags of every client command; zeroed means the defaults. */
typedef struct lg_client_opts {
    const char *cookie;     /* -setcookie; NULL: ~/.erlang.cookie */
    const char *name;       /* -sname/-name; NULL: girder_cli_<pid> */
    bool longnames;         /* -name given (else: the style of the target's host) */
    bool name_given;        /* -sname or -name was given */
    uint64_t timeout_ms;    /* -timeout S; 0: LG_TIMEOUT_DEFAULT_MS */
    unsigned schedulers;    /* scheduler threads; 0: lg_client_schedulers_default() */
    unsigned read_batch_us; /* cluster_config_t.read_batch_us of the client node */
} lg_client_opts_t;

#define LG_TIMEOUT_DEFAULT_MS 5000
#define LG_TIMEOUT_MAX_MS (24ull * 3600 * 1000)

/* Takes argv[*i] (and its value) when it is one of the shared flags:
 * returns 1 and advances *i past what it used, 0 when the flag is not one
 * of them, -1 after printing a one-line error to stderr (prog names the
 * command). */
int lg_client_flag(lg_client_opts_t *o, const char *prog, int argc, char **argv, int *i);

/* The help lines of the shared flags (for each command's --help). */
void lg_client_flags_help(FILE *out);

/* True when node is "name@host" with both parts non-empty; *longnames set
 * when host contains a '.' (erl's -name style). */
bool lg_node_parse(const char *node, bool *longnames);

/*
 * Asks the EPMD on node's host (ERL_EPMD_PORT or 4369) for node's port,
 * without starting anything: 0 when node is registered, else -1 with a
 * one-line reason in err ("no EPMD answers on HOST:PORT", "node X is not
 * running (not registered with EPMD on HOST)", "unknown host").
 */
int lg_preflight(const char *node, uint64_t timeout_ms, char *err, size_t cap);

/*
 * The client node's scheduler threads when not given: one fewer than the
 * online cores (at least 1).  The loop thread is the node's other full-time
 * worker under load (it reads and decodes every reply and wakes the
 * clients), and a client node usually shares the machine with more: on 2
 * cores, 1 scheduler + the loop thread used about 30% less CPU per echo
 * round trip than 2 schedulers + the loop thread (docs/benchmarks.md).
 */
unsigned lg_client_schedulers_default(void);

/*
 * Starts this process's client node: hidden, quiet (the connection log
 * lines are replaced by the command's own one-line errors), named o->name
 * or girder_cli_<pid>[_suffix] in the host style of like_node (long names
 * when its host has a '.'), with the cookie of o or ~/.erlang.cookie and
 * o->schedulers scheduler threads (or the default above).
 * Errors: -1 with a one-line reason in err.
 */
int lg_client_start(const lg_client_opts_t *o, const char *like_node, const char *suffix, char *err,
                    size_t cap);

/* Stops the client node (cluster_stop). */
void lg_client_stop(void);

/* The value of a pointer as a small integer term and back, so that C state
 * can ride in a spawn argument (user-space addresses fit in 60 bits). */
term_t lg_ptr_term(const void *p);
void *lg_term_ptr(term_t t);

/*
 * Runs fn(ctx, arg) in a high-priority coroutine process (arg: a pointer, see
 * lg_ptr_term) and waits for it to exit, at most timeout_ms; GD_EAGAIN when
 * it did not exit in time (it is then killed), else 0.  Main thread only.
 */
int lg_run_process(sched_coro_fn fn, void *arg, uint64_t timeout_ms) GD_MUST_CHECK;

/*
 * From a coroutine process: gen_server:call of request to server ({Name,
 * Node}, a pid) with timeout_ms.  0 and *reply, or -1 with err set to why:
 * "timed out", "the connection to NODE failed (refused during the
 * handshake: wrong cookie?)", "no process NAME on NODE".
 */
int lg_call(sched_ctx_t *ctx, term_t server, term_t request, int64_t timeout_ms, term_t *reply,
            char *err, size_t cap);

/* rpc:call(Node, M, F, Args) through the node's rex from a coroutine
 * process: 0 with the result (possibly {badrpc, _}) or lg_call's -1. */
int lg_rpc(sched_ctx_t *ctx, term_t node, term_t m, term_t f, term_t args, int64_t timeout_ms,
           term_t *result, char *err, size_t cap);

/* ------------------------------------------------------------------------ */
/* Workloads                                                                 */

typedef struct lg_share lg_share_t;
typedef struct lg_client lg_client_t;

/* What a reply meant to lg_workload_t.check. */
enum lg_verdict {
    LG_REPLY_OK = 0,    /* the reply to the outstanding request, correct */
    LG_REPLY_WRONG,     /* the reply to the outstanding request, wrong content */
    LG_REPLY_LATE,      /* a reply to an earlier request again: misordered */
    LG_REPLY_SHORT,     /* cast: the count shows casts missing (lost) */
    LG_REPLY_UNRELATED, /* not a reply of this workload: ignored */
};

/*
 * A workload: how a client builds and sends one request and judges its
 * reply.  Clients keep one request outstanding; a request may stand for
 * several operations (cast sends a window of casts and one call).
 *  - send: sends the next request for client c (whose seq was just
 *    incremented) and returns the operations it stands for (>= 1) or a
 *    negative code.
 *  - check: judges msg, a message the client received; for
 *    LG_REPLY_SHORT, *missing gets the operations that did not arrive.
 *  - default_server: the registered name the workload talks to.
 */
typedef struct lg_workload {
    const char *name;
    const char *summary;
    const char *default_server;
    int (*send)(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload);
    enum lg_verdict (*check)(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                             term_t msg, uint64_t *missing);
} lg_workload_t;

/* The workload called name, or NULL. */
const lg_workload_t *lg_workload_find(const char *name);
/* Prints "  name  summary" for each workload. */
void lg_workloads_help(FILE *out);

/* Casts per window of the cast workload (each window ends with a call). */
#define LG_CAST_WINDOW 16

/* ------------------------------------------------------------------------ */
/* Run parameters                                                            */

#define LG_CLIENTS_MAX 1000000u
#define LG_PAYLOAD_MAX (64u << 20)

enum lg_payload_shape {
    LG_PAYLOAD_BINARY = 0, /* binary:N  N bytes */
    LG_PAYLOAD_LIST,       /* list:N    [1..N] */
    LG_PAYLOAD_MAP,        /* map:N     #{1 => 1, ..., N => N} */
    LG_PAYLOAD_TUPLE,      /* tuple:N   {1, ..., N} */
    LG_PAYLOAD_ATOM,       /* atom      the atom payload */
    LG_PAYLOAD_INT,        /* int       the integer 42 */
};

/* Parses "SHAPE[:SIZE]" (see enum lg_payload_shape); false on anything
 * else or a size above LG_PAYLOAD_MAX (N counts elements for list, map
 * and tuple, at most 1,000,000). */
bool lg_payload_parse(const char *spec, enum lg_payload_shape *shape, uint64_t *size);

/* Everything a share needs, as the coordinator sends it to a client node. */
typedef struct lg_params {
    const lg_workload_t *workload;
    uint64_t clients;
    double rate_per_s; /* whole run, all shares; 0: closed loop */
    uint64_t duration_ms, warmup_ms, interval_ms;
    enum lg_payload_shape payload_shape;
    uint64_t payload_size;
    term_t target;       /* the target node's atom */
    term_t server;       /* registered name the workload addresses */
    term_t mfa_m, mfa_f; /* rpc workload; TERM_NONE: the target kind's default */
    unsigned mfa_arity;  /* 0: no arguments; 1: [Payload] */
    /* -timeout: bounds the coordinator's waits for a connection (the
     * target's checks, each client node's ping); 0: LG_TIMEOUT_DEFAULT_MS.
     * Not sent to client nodes. */
    uint64_t connect_timeout_ms;
} lg_params_t;

/* After the run's end, a request still unanswered counts lost once no
 * reply at all came for LG_GRACE_MS (replies still arriving extend the
 * wait: a million queued requests take seconds to drain), and at the
 * latest LG_GRACE_MAX_MS after the end. */
#define LG_GRACE_MS 2000
#define LG_GRACE_MAX_MS 30000
/* How long a coordinator waits for the shares' reports beyond the run's
 * own time and the longest grace: spawning and start-up, plus a
 * per-client allowance (a million clients take seconds to spawn). */
#define LG_REPORT_SLACK_MS 30000
static inline uint64_t lg_report_slack_ms(uint64_t clients)
{
    return LG_REPORT_SLACK_MS + clients / 30;
}

/* ------------------------------------------------------------------------ */
/* Shares: clients on one node                                               */

/*
 * Starts a share of `clients` client processes running p on this node
 * (share_index of share_count; the open-loop rate is divided by the
 * share's part of the clients).  The share reports to coordinator (a pid,
 * local or remote): {girder_bench_progress, Index, Ops, Errors, HistBin}
 * once per interval, then {girder_bench_done, Index, SeriesBin, Lost,
 * Misordered}, or {girder_bench_failed, Index, Reason}.  ctx may be NULL.
 * Errors: GD_EINVAL, GD_ENOMEM, sched_spawn's.
 */
int lg_share_start(sched_ctx_t *ctx, const lg_params_t *p, uint64_t clients, uint32_t share_index,
                   term_t coordinator) GD_MUST_CHECK;

/* Registers girder_bench:start/1 (rpc from a coordinator on another node;
 * the argument is the term lg_params_term builds).  Call before or after
 * cluster_start on every girder node. */
int lg_register_rpc(void) GD_MUST_CHECK;

/* The parameters as a term on h (for girder_bench:start/1), with the
 * share's clients, index and coordinator. */
int lg_params_term(heap_t *h, const lg_params_t *p, uint64_t clients, uint32_t share_index,
                   term_t coordinator, term_t *out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Runs: one target                                                          */

/* One target's run, filled by lg_run_target. */
typedef struct lg_target_run {
    const char *node;          /* the target, "name@host" */
    const char **client_nodes; /* nodes running the shares; none: this node */
    size_t n_client_nodes;
    bool quiet;
    /* results */
    bench_target_t result;  /* node, kind, workload, duration, ops, errors, lost, misordered */
    bench_series_t *series; /* merged (owned; lg_target_run_free) */
    char error[640];        /* why the run failed ("" when it ran) */
} lg_target_run_t;

/*
 * Runs p against t->node from the main thread: starts the shares (here or
 * on t's client nodes), shows progress on stdout (unless t->quiet), waits
 * for every share and merges their results into t.  0 when the run
 * completed (its figures may still show errors or losses), -1 with
 * t->error set when it could not run.
 */
int lg_run_target(lg_params_t *p, lg_target_run_t *t);
void lg_target_run_free(lg_target_run_t *t);

#endif /* GIRDER_LOADGEN_H */
