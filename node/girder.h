/*
 * girder.h — girder's public C API for applications: OTP's behaviours
 * (gen_server, supervisor) and process naming, on top of the runtime core
 * (sched/sched.h, which this header includes: processes, messages, links,
 * monitors and timers are used through it directly).
 *
 * Wire shapes.  Everything a behaviour sends or accepts is OTP 25's message
 * shape, so an Erlang process (local to a future peer, or remote through
 * the distribution layer) talks to a girder gen_server or supervisor with
 * gen_server:call/cast, supervisor:which_children, sys:get_state and
 * gen_server:stop unchanged:
 *   call      {'$gen_call', {FromPid, Tag}, Request}; Tag a reference, or
 *             OTP 25's [alias | Ref] (and [[alias | Ref] | _]) alias tags
 *   reply     {Tag, Reply}, sent to FromPid; for an alias tag to the alias
 *             Ref, as gen:reply/2 does (see girder_reply for the fallback)
 *   cast      {'$gen_cast', Msg}
 *   system    {system, From, get_state | get_status | suspend | resume |
 *             {terminate, Reason}} (sys, gen:stop); while suspended, calls
 *             and casts wait in order (system messages still answer)
 *   info      anything else
 *
 * Function pointers in terms.  A gen_server's callback table and a
 * supervisor's child start functions travel inside terms (as small
 * integers: every user-space code address fits in 60 bits on the 64-bit
 * platforms girder supports; an address that does not is GD_EINVAL).  That
 * way everything a behaviour process owns lives on its own heap and goes
 * with it however it dies: a process killed with `kill` runs no callback,
 * so a malloc'd side table would leak.
 *
 * Blocking.  girder_call, girder_gen_stop (with a ctx) and the supervisor
 * client calls block until the answer comes: they run in coroutine
 * processes only (sched_spawn_coro); from a behaviour callback they return
 * GD_EINVAL.  Casts, replies and starts never block.
 */
#ifndef GIRDER_GIRDER_H
#define GIRDER_GIRDER_H

#include <signal.h>

#include "sched/sched.h"

/* node/ error codes (the range below sched/'s). */
enum {
    GIRDER_EEXIT = -300,     /* girder_call: the server exited during the call; the
                                exit reason is in *reply_out */
    GIRDER_ENODEDOWN = -301, /* girder_call: the server's node went down (noconnection) */
};

/* ------------------------------------------------------------------------ */
/* Naming                                                                   */

/* Registers the calling process under the atom `name` (sched_register).
 * Errors: GD_EBADARG (not an atom, or undefined), SCHED_ENAME_TAKEN. */
int girder_register(sched_ctx_t *ctx, term_t name) GD_MUST_CHECK;
/* Removes the registration of `name`; SCHED_ENOPROC when nobody has it. */
int girder_unregister(term_t name) GD_MUST_CHECK;
/* The pid registered as `name`, or the atom undefined.  Any thread. */
term_t girder_whereis(term_t name);

/*
 * Normalises a server reference as gen_server takes it: a pid (local or
 * remote), a registered-name atom, or {Name, Node}.  {Name, Node} with Node
 * this node becomes Name; the other shapes are returned as they are (sends
 * to a remote pid or {Name, Node} go through the distribution layer).
 * Errors: GD_EBADARG for any other term (no allocation; O(1)).
 */
int girder_server_ref(term_t server, term_t *dest_out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* gen_server                                                               */

/* What a callback asks for next (OTP's return tuples). */
enum girder_action {
    GIRDER_NOREPLY = 0, /* {noreply, S} / init's {ok, S} */
    GIRDER_REPLY = 1,   /* {reply, Reply, S}: handle_call only */
    GIRDER_STOP = 2,    /* {stop, Reason, S} / {stop, Reason, Reply, S} */
};

/*
 * A callback's result besides the new state, which it writes to *state.
 * The runtime initialises it to {GIRDER_NOREPLY, TERM_NONE, TERM_NONE, -1}
 * before every callback.  Terms are on the process heap (or immediates).
 *  - reply: the reply for GIRDER_REPLY, and for GIRDER_STOP from
 *    handle_call when not TERM_NONE (sent after terminate, as OTP).
 *  - reason: GIRDER_STOP's exit reason.
 *  - timeout_ms: >= 0: when no message arrives within it, handle_info gets
 *    the atom `timeout` (OTP's {noreply, S, Timeout}); < 0 = infinity.
 */
typedef struct girder_ret {
    enum girder_action action;
    term_t reply;
    term_t reason;
    int64_t timeout_ms;
} girder_ret_t;

/*
 * A gen_server's callbacks.  Each returns 0 (its result in *ret) or a
 * negative code: the server then crashes with reason {callback_error, Code},
 * calling terminate first, as OTP calls terminate after a callback raised.
 * A callback that ends its process with sched_exit (SCHED_EEXIT) exits
 * without terminate.  Terms passed in are on the process heap, valid until
 * the callback returns; *state is kept as a root between callbacks.
 *  - init (required): arg is the start argument (copied); *state starts as
 *    [].  GIRDER_STOP ends the process with ret->reason, without terminate.
 *  - handle_call (required): `from` is {Pid, Tag}: answer now (GIRDER_REPLY)
 *    or later with girder_reply (keep `from` in the state).
 *  - handle_cast, handle_info (optional: absent ones ignore the message).
 *  - terminate (optional): the server stops with `reason` (a stop result, a
 *    crash, a trapped exit from its parent, or a system terminate).  Not
 *    called when an untrapped exit signal kills it (as OTP).
 *  - code_change (optional): see girder_gen_code_change.
 */
typedef struct girder_gen_server {
    int (*init)(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret);
    int (*handle_call)(sched_ctx_t *ctx, term_t request, term_t from, term_t *state,
                       girder_ret_t *ret);
    int (*handle_cast)(sched_ctx_t *ctx, term_t msg, term_t *state, girder_ret_t *ret);
    int (*handle_info)(sched_ctx_t *ctx, term_t msg, term_t *state, girder_ret_t *ret);
    void (*terminate)(sched_ctx_t *ctx, term_t reason, term_t state);
    int (*code_change)(sched_ctx_t *ctx, term_t old_vsn, term_t *state, term_t extra);
} girder_gen_server_t;

/* Start options; zero-initialised means the defaults. */
typedef struct girder_gen_opts {
    term_t name;              /* register under this atom; 0 or TERM_NIL: none */
    bool link;                /* start_link: link to ctx, which becomes the parent */
    sched_spawn_opts_t spawn; /* priority, heap sizes, scheduler (link/monitor ignored) */
} girder_gen_opts_t;

/*
 * Starts a gen_server process running `mod` (which must outlive it: a
 * static table).  `arg` (any readable term) is copied for init.  ctx is the
 * starting process or NULL from outside any process (then opts->link is
 * GD_EINVAL).  The parent is ctx for a linked start, else the server itself
 * (OTP's nolink start): a server that traps exits stops with Reason on
 * {'EXIT', Parent, Reason}.  The call does not wait for init (behaviour
 * callbacks cannot block): a failing init, or a name already registered
 * (reason {already_started, Pid}), ends the new process, which a link or a
 * monitor reports.  Called from a supervisor's start function with .link,
 * the server acknowledges its init to the supervisor, which waits for that
 * before it starts the next child (OTP's synchronous start).  Errors: GD_EINVAL (a required
 * callback missing, bad options), GD_EBADARG (name not an atom), and sched_spawn_opt's.
 */
int girder_gen_start(sched_ctx_t *ctx, const girder_gen_server_t *mod, term_t arg,
                     const girder_gen_opts_t *opts, term_t *pid_out) GD_MUST_CHECK;

/*
 * Sends `reply` to the caller `from` ({Pid, Tag} as handle_call got it),
 * exactly as gen:reply/2: {Tag, Reply} to Pid, or for an alias tag
 * [alias | Ref] (or [[alias | Ref] | _]) to the alias Ref (sched.h's
 * aliases: a local one is delivered while active and dropped after, as
 * OTP; a remote one goes through the distribution layer, and only when no
 * route exists, before it is installed, to Pid instead).  A reply to a dead
 * process, or a `from` of any other shape, is dropped (0), as OTP's
 * catch-all.  ctx may be NULL from outside any process.  Errors: GD_ENOMEM,
 * GD_ESYSTEM_LIMIT, SCHED_ESTOPPED.  O(size of reply).
 */
int girder_reply(sched_ctx_t *ctx, term_t from, term_t reply) GD_MUST_CHECK;

/*
 * gen_server:cast: sends {'$gen_cast', Msg} to server (pid, name or
 * {Name, Node}) and never blocks.  As OTP, a dead or unregistered server is
 * not an error (0).  ctx may be NULL.  Errors: GD_EBADARG (server of another
 * shape), GD_ENOMEM, GD_ESYSTEM_LIMIT, SCHED_ESTOPPED.  O(size of msg).
 */
int girder_cast(sched_ctx_t *ctx, term_t server, term_t msg) GD_MUST_CHECK;

/*
 * gen_server:call.  Monitors server (a pid; a local name or {Name, Node}
 * of this node is looked up first, as gen does, and nobody registered is
 * SCHED_ENOPROC), sends {'$gen_call', {Self, Tag}, Request} with a fresh
 * reference as Tag, and
 * waits (in a coroutine process; GD_EINVAL from anywhere else, or when
 * calling itself) for {Tag, Reply} or the monitor's 'DOWN', at most
 * timeout_ms (< 0: infinity).  Messages queued before the call are not
 * scanned (the ref trick).  Returns 0 with *reply_out on ctx's heap (see
 * sched.h's Roots for how long it stays valid), or: SCHED_ETIMEOUT (a reply
 * that arrived by the time the monitor is dropped still counts, as gen:call;
 * for a local server the tag is OTP 24's [alias | Mref] with the monitor's
 * alias, so one arriving later is dropped; a remote server's tag is
 * [alias | Alias] with an alias of the caller's own, which the peer's
 * ALIAS_SEND reaches, dropped as well once the call is over),
 * SCHED_ENOPROC (no such process or name), GIRDER_EEXIT (the server exited
 * during the call; *reply_out is its exit reason), GIRDER_ENODEDOWN (also
 * when the connection to a remote server's node cannot be set up: the
 * first call to a node goes out, monitor first, once it is up), and
 * the send's errors (tests/node/test_call.c; remote servers:
 * tests/cluster/test_remote_call.c, tests/interop/svc_interop).  Work: O(size of request + reply)
 * plus the messages arriving meanwhile; the caller's older messages are not looked at, except after
 * a timeout or a server exit (the monitor's flush).
 */
int girder_call(sched_ctx_t *ctx, term_t server, term_t request, int64_t timeout_ms,
                term_t *reply_out) GD_MUST_CHECK;

/*
 * gen_server:stop (proc_lib:stop): asks server to stop with `reason` (a
 * system terminate: its terminate runs) and waits for its exit, at most
 * timeout_ms (< 0: infinity).  From a coroutine process: 0 when it exited
 * with `reason`, GIRDER_EEXIT with another reason, SCHED_ENOPROC,
 * SCHED_ETIMEOUT.  With ctx NULL (a thread outside the node's processes;
 * local servers only) it sends the request and waits for the exit without
 * learning its reason: 0, SCHED_ENOPROC, SCHED_ETIMEOUT.  GD_EINVAL from a
 * behaviour callback.
 */
int girder_gen_stop(sched_ctx_t *ctx, term_t server, term_t reason,
                    int64_t timeout_ms) GD_MUST_CHECK;

/*
 * Calls the current server's code_change(OldVsn, State, Extra) from one of
 * its own callbacks (the hot-reload path).  Errors: the callback's.
 */
int girder_gen_code_change(sched_ctx_t *ctx, term_t old_vsn, term_t extra) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* supervisor                                                               */

enum girder_strategy {
    GIRDER_ONE_FOR_ONE = 0, /* restart the child that exited */
    GIRDER_ONE_FOR_ALL = 1, /* stop the others, restart all */
    GIRDER_REST_FOR_ONE = 2 /* stop those started after it, restart it and them */
};

enum girder_restart {
    GIRDER_PERMANENT = 0, /* always restarted */
    GIRDER_TRANSIENT = 1, /* restarted unless it exits normal, shutdown or {shutdown, _} */
    GIRDER_TEMPORARY = 2  /* never restarted; its spec goes when it exits */
};

enum girder_child_type { GIRDER_WORKER = 0, GIRDER_SUPERVISOR = 1 };

/* girder_child_spec_t.shutdown: a timeout in ms (>= 0) or one of these. */
#define GIRDER_SHUTDOWN_BRUTAL_KILL (-1)
#define GIRDER_SHUTDOWN_INFINITY (-2)

/*
 * Starts one child for supervisor ctx and returns its pid: a process
 * linked to ctx (girder_gen_start with .link, sched_spawn_link, ...; the
 * supervisor links to the pid as well, so a start function that forgot
 * still has its child's exit seen).  `arg` is the spec's argument, on the
 * supervisor's heap.  A negative return fails the start with reason
 * {callback_error, Code}.  A child made with girder_gen_start or
 * girder_sup_start (.link) is started once its init has run (a supervisor
 * once all its children are), and an exit before that fails the start with
 * its reason, as OTP's start_link; a child spawned any other way counts as
 * started when the function returns.
 */
typedef int (*girder_start_fn)(sched_ctx_t *ctx, term_t arg, term_t *pid_out);

/* A child specification (OTP's child_spec() map). */
typedef struct girder_child_spec {
    term_t id; /* any term, unique within the supervisor (copied) */
    girder_start_fn start;
    term_t arg; /* passed to start (copied) */
    enum girder_restart restart;
    int64_t shutdown; /* ms after exit(Child, shutdown) before kill, or GIRDER_SHUTDOWN_* */
    enum girder_child_type type;
} girder_child_spec_t;

/* Supervisor flags: more than `intensity` restarts within `period_ms`
 * make the supervisor stop its children and exit with reason shutdown. */
typedef struct girder_sup_flags {
    enum girder_strategy strategy;
    uint32_t intensity;
    uint32_t period_ms; /* 0 = OTP's default, 5 s */
} girder_sup_flags_t;

/*
 * Starts a supervisor process: it traps exits, starts the n children in
 * order, and then supervises them (restarts by strategy and intensity;
 * ordered shutdown: reverse start order, exit(Child, shutdown) then kill
 * after the child's shutdown time, waiting on a monitor).  It answers OTP's
 * supervisor calls, so supervisor:which_children/count_children/
 * terminate_child/restart_child/delete_child from Erlang work unchanged
 * (start_child needs a C start function: girder_sup_start_child).  It stops
 * its children and exits with Reason on {'EXIT', Parent, Reason} (a linked
 * start: the parent is ctx) and on a system terminate (girder_gen_stop).
 * Children start one at a time, in order (see girder_start_fn).  A child
 * that fails to start during the start-up makes the supervisor stop the
 * ones started and exit with {shutdown, {failed_to_start_child, Id,
 * Reason}}.  The call itself does not wait (see girder_gen_start).
 * Errors: GD_EINVAL (bad flags or specs, or a duplicate id), GD_EBADARG,
 * and sched_spawn_opt's.  O(n + size of the specs' terms).
 */
int girder_sup_start(sched_ctx_t *ctx, const girder_sup_flags_t *flags,
                     const girder_child_spec_t *children, size_t n, const girder_gen_opts_t *opts,
                     term_t *pid_out) GD_MUST_CHECK;

/*
 * The request term of supervisor:start_child for a C child spec, on ctx's
 * heap (or h when ctx is NULL): {start_child, Spec}.  Send it with
 * girder_call (or as a '$gen_call' of one's own); the supervisor answers
 * {ok, Pid}, {error, {already_started, Pid}}, {error, already_present} or
 * {error, Reason}.  Errors: GD_EINVAL (a bad spec), GD_ENOMEM.
 */
int girder_sup_child_request(heap_t *h, const girder_child_spec_t *spec,
                             term_t *request_out) GD_MUST_CHECK;

/*
 * supervisor:start_child/terminate_child/restart_child/delete_child/
 * which_children from a coroutine process: girder_call with the request,
 * no timeout.  0 with the supervisor's reply in *result_out ({ok, Pid},
 * ok, {error, Reason}, the children list: OTP's shapes), or girder_call's
 * errors.
 */
int girder_sup_start_child(sched_ctx_t *ctx, term_t sup, const girder_child_spec_t *spec,
                           term_t *result_out) GD_MUST_CHECK;
int girder_sup_terminate_child(sched_ctx_t *ctx, term_t sup, term_t id,
                               term_t *result_out) GD_MUST_CHECK;
int girder_sup_restart_child(sched_ctx_t *ctx, term_t sup, term_t id,
                             term_t *result_out) GD_MUST_CHECK;
int girder_sup_delete_child(sched_ctx_t *ctx, term_t sup, term_t id,
                            term_t *result_out) GD_MUST_CHECK;
int girder_sup_which_children(sched_ctx_t *ctx, term_t sup, term_t *result_out) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Services every girder node runs                                          */

/*
 * For a program that runs a node until SIGTERM or SIGINT: blocks both in
 * the calling thread, so in every thread it starts afterwards (the node's
 * schedulers and loop threads: no handler ever runs inside a library
 * call), and ignores SIGPIPE (a peer that closes mid-write is an error
 * return, not a signal).  Call it before cluster_start; *set_out is the
 * set to sigwait for on the main thread.
 */
void girder_block_stop_signals(sigset_t *set_out);

/*
 * Starts girder_kv (node/kv.c), the registered key-value gen_server of the
 * node contract: {put, K, V} -> ok, {get, K} -> {ok, V} | error,
 * {delete, K} -> ok, any terms as keys (exact match) and values; any other
 * request is answered {error, {badrequest, Req}}.  It runs under the
 * supervisor girder_kv_sup (one_for_one, permanent, 10 restarts in 5 s):
 * killed, it comes back empty, with the code loaded last (girder:reload).
 * *pid_out is the supervisor's pid.  From outside any process, after
 * sched_start; the name is registered by the new process (girder_whereis
 * shows it once its init ran).  Errors: girder_sup_start's.
 */
int girder_kv_start(term_t *pid_out) GD_MUST_CHECK;

/*
 * What `girder node` adds to cluster/'s services (cluster_config_t's
 * start_services): girder_kv, waited for until registered, and the rpc
 * built-ins girder:call_out(ReplyTo, Server, Request, TimeoutMs),
 * girder:rpc_out(ReplyTo, Node, M, F, A, TimeoutMs) and
 * girder:erpc_out(ReplyTo, Node, M, F, A, TimeoutMs), which make this node
 * call out (girder_call / girder_rpc_call / girder_erpc_call from a new
 * process) and send {girder_out, Result} to ReplyTo: call_out's Result is
 * {ok, Reply} or {error, timeout | noproc | nodedown | {exit, Reason}},
 * rpc_out's what rpc:call returns, erpc_out's girder_erpc_result_term's.  After cluster_start's
 * sched_start.  Errors: girder_kv_start's, cluster_rpc_register's, GD_ESYSTEM_LIMIT (girder_kv not
 * registered within a second).
 */
int girder_services_start(void) GD_MUST_CHECK;

/* ------------------------------------------------------------------------ */
/* Calling other nodes                                                      */

/*
 * rpc:call(Node, M, F, Args) from a coroutine process, into an OTP node (or
 * a girder one) through its rex server ({'$gen_call', {Self, Tag}, {call,
 * M, F, Args, user}} to {rex, Node}, which OTP 25-28 answer for C nodes).
 * Returns 0 with *result_out what rpc:call returns: the value, or
 * {badrpc, {'EXIT', ...}} for an exception there, {badrpc, nodedown} (no
 * connection, or the node went down during the call), {badrpc, timeout}
 * after timeout_ms (< 0: infinity).  Errors: GD_EINVAL (no ctx, or not a
 * coroutine process), GD_EBADARG (Node, M, F not atoms or Args not a
 * list), GD_ENOMEM.  A call to a gen_server on another node is
 * girder_call with server {Name, Node}.
 */
int girder_rpc_call(sched_ctx_t *ctx, term_t node, term_t module, term_t function, term_t args,
                    int64_t timeout_ms, term_t *result_out) GD_MUST_CHECK;

/* How an erpc call ended (girder_erpc_result_t.cls), in erpc:call's terms. */
enum girder_erpc_class {
    GIRDER_ERPC_RETURN = 0, /* value: what M:F(Args) returned */
    GIRDER_ERPC_THROW = 1,  /* value: the thrown term (erpc:call throws it again) */
    GIRDER_ERPC_EXIT = 2,   /* value: the exit reason (erpc: exit({exception, R})) */
    GIRDER_ERPC_ERROR = 3,  /* value: the error reason, stack: its stack above
                               erpc's frame (erpc: error({exception, R, Stack})) */
    GIRDER_ERPC_ERPC = 4,   /* value: erpc's own reason (erpc: error({erpc, R})):
                               noconnection, timeout, notsup, badarg, system_limit, ... */
    GIRDER_ERPC_SIGNAL = 5, /* value: the reason the remote process was killed
                               with before it answered (erpc: exit({signal, R})) */
};

/* An erpc call's outcome; the terms are on the caller's heap (see
 * sched.h's Roots for how long they stay valid). */
typedef struct girder_erpc_result {
    enum girder_erpc_class cls;
    term_t value;
    term_t stack; /* GIRDER_ERPC_ERROR's stack; [] for the others */
} girder_erpc_result_t;

/*
 * erpc:call(Node, M, F, Args, Timeout) from a coroutine process, into an
 * OTP node or a girder one: spawn_request of {erpc, execute_call, 4} with
 * [monitor] (docs/protocol.md 5.4), then the wait for the spawn error or
 * the DOWN carrying {Ref, return | throw | exit | error, ...}, mapped as
 * erpc.erl's result/4 into *result_out (see girder_erpc_class):
 * connection lost or none possible -> ERPC noconnection; after timeout_ms
 * (< 0: infinity) -> ERPC timeout, and then nothing of the call reaches
 * the caller's queue (its one-message alias is gone; an answer that
 * arrived by then counts instead, as erpc's call_abandon).  The caller is
 * the remote process's group leader: io requests that arrive during the
 * call are answered (output dropped, ok; input {error, request}), so a
 * function that prints does not hang.  Messages queued before the call
 * are not scanned.  Returns 0 with the outcome, or:
 * GD_EINVAL (no ctx or result_out, not a coroutine process, or Node this
 * node: girder runs no local erpc), GD_EBADARG (Node, M, F not atoms or
 * Args not a proper list), GD_ENOMEM.  Work: O(size of args + result).
 */
int girder_erpc_call(sched_ctx_t *ctx, term_t node, term_t module, term_t function, term_t args,
                     int64_t timeout_ms, girder_erpc_result_t *result_out) GD_MUST_CHECK;

/*
 * What erpc:call's caller sees, as `try erpc:call(...) of V -> {return, V}
 * catch C:R -> {C, R} end` would show it, on h: {return, V}, {throw, V},
 * {exit, {exception, R}}, {error, {exception, R, Stack}}, {error, {erpc,
 * R}}, {exit, {signal, R}}.  Errors: GD_ENOMEM, GD_EINVAL (a bad class).
 */
int girder_erpc_result_term(heap_t *h, const girder_erpc_result_t *result,
                            term_t *out) GD_MUST_CHECK;

/*
 * erlang:monitor_node(Node, On) for the calling process (any process kind):
 * {nodedown, Node} once when the connection goes down, or at once when no
 * connection to Node can be made (it connects, as OTP does); one message
 * per call with On, On false takes one back.  Errors: GD_EBADARG (Node not
 * an atom), GD_ENOMEM.
 */
int girder_monitor_node(sched_ctx_t *ctx, term_t node, bool on) GD_MUST_CHECK;

/*
 * net_kernel:monitor_nodes(On): while on, {nodeup, Node} and {nodedown,
 * Node} for each visible node connecting and disconnecting.  Errors:
 * GD_ENOMEM, SCHED_ESTOPPED.
 */
int girder_monitor_nodes(sched_ctx_t *ctx, bool on) GD_MUST_CHECK;

#endif /* GIRDER_GIRDER_H */
