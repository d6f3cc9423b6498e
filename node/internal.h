/*
 * internal.h — what the behaviour files of node/ share: their atoms and
 * the small term helpers gen_server.c and supervisor.c both use.
 */
#ifndef GIRDER_NODE_INTERNAL_H
#define GIRDER_NODE_INTERNAL_H

#include "girder.h"

/* The atoms node/ uses: name, text. */
#define NODE_ATOMS(X)                                                                              \
    X(gen_call, "$gen_call")                                                                       \
    X(gen_cast, "$gen_cast")                                                                       \
    X(gen_mod, "$girder_gen_mod")                                                                  \
    X(gen_parent, "$girder_gen_parent")                                                            \
    X(system, "system")                                                                            \
    X(terminate, "terminate")                                                                      \
    X(get_state, "get_state")                                                                      \
    X(get_status, "get_status")                                                                    \
    X(suspend, "suspend")                                                                          \
    X(resume, "resume")                                                                            \
    X(suspended, "suspended")                                                                      \
    X(gen_suspended, "$girder_gen_suspended")                                                      \
    X(status, "status")                                                                            \
    X(module, "module")                                                                            \
    X(gen_server, "gen_server")                                                                    \
    X(header, "header")                                                                            \
    X(data, "data")                                                                                \
    X(unknown_system_msg, "unknown_system_msg")                                                    \
    X(alias, "alias")                                                                              \
    X(timeout, "timeout")                                                                          \
    X(callback_error, "callback_error")                                                            \
    X(already_started, "already_started")                                                          \
    X(already_present, "already_present")                                                          \
    X(shutdown, "shutdown")                                                                        \
    X(start_child, "start_child")                                                                  \
    X(terminate_child, "terminate_child")                                                          \
    X(restart_child, "restart_child")                                                              \
    X(delete_child, "delete_child")                                                                \
    X(which_children, "which_children")                                                            \
    X(count_children, "count_children")                                                            \
    X(not_found, "not_found")                                                                      \
    X(running, "running")                                                                          \
    X(restarting, "restarting")                                                                    \
    X(worker, "worker")                                                                            \
    X(supervisor, "supervisor")                                                                    \
    X(specs, "specs")                                                                              \
    X(active, "active")                                                                            \
    X(supervisors, "supervisors")                                                                  \
    X(workers, "workers")                                                                          \
    X(failed_to_start_child, "failed_to_start_child")                                              \
    X(sup_retry, "$girder_sup_retry")                                                              \
    X(permanent, "permanent")                                                                      \
    X(transient, "transient")                                                                      \
    X(temporary, "temporary")                                                                      \
    X(brutal_kill, "brutal_kill")                                                                  \
    X(infinity, "infinity")                                                                        \
    X(one_for_one, "one_for_one")                                                                  \
    X(one_for_all, "one_for_all")                                                                  \
    X(rest_for_one, "rest_for_one")                                                                \
    X(sup_stop, "$girder_sup_stop")                                                                \
    X(sup_restart, "$girder_sup_restart")                                                          \
    X(sup_reply, "$girder_sup_reply")                                                              \
    X(ack, "$girder_ack")                                                                          \
    X(ack_wanted, "$girder_ack_wanted")                                                            \
    X(init_atom, "init")                                                                           \
    X(restart_atom, "restart")                                                                     \
    X(call, "call")                                                                                \
    X(erpc, "erpc")                                                                                \
    X(execute_call, "execute_call")                                                                \
    X(spawn_reply, "spawn_reply")                                                                  \
    X(return_atom, "return")                                                                       \
    X(throw_atom, "throw")                                                                         \
    X(exit_atom, "exit")                                                                           \
    X(exception, "exception")                                                                      \
    X(signal, "signal")                                                                            \
    X(io_request, "io_request")                                                                    \
    X(io_reply, "io_reply")                                                                        \
    X(put_chars, "put_chars")                                                                      \
    X(requests, "requests")                                                                        \
    X(request, "request")

#define NODE_ATOM_FIELD(name, text) term_t name;
typedef struct node_atoms {
    NODE_ATOMS(NODE_ATOM_FIELD)
} node_atoms_t;
#undef NODE_ATOM_FIELD

/* The atoms, valid after node_atoms_init succeeded once. */
extern node_atoms_t node_atom;

/* Interns the atoms on first use (thread-safe; later calls cost one
 * acquire load).  Errors: those of heap_atom_put (a full atom table). */
int node_atoms_init(void) GD_MUST_CHECK;

/* True when t is a tuple of arity n whose first element is tag. */
static inline bool node_is_tagged(term_t t, size_t n, term_t tag)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n && term_tuple_elems(t)[0] == tag;
}

/* Exact equality (=:=); a comparison that cannot get memory for its work
 * stack (deep terms only) counts as unequal. */
bool node_term_eq(term_t a, term_t b);

/* A C function or table address as a small integer term, and back
 * (girder.h: "Function pointers in terms").  GD_EINVAL when it does not fit;
 * node_term_addr gives 0 for a term that is not a small integer. */
int node_addr_term(uintptr_t addr, term_t *out) GD_MUST_CHECK;
uintptr_t node_term_addr(term_t t);

/* Builds the tuple elems[0..n) on ctx's heap (or, with ctx NULL, on a
 * scratch heap) and sends it to `to`.  Errors as sched_send. */
int node_send_tuple(sched_ctx_t *ctx, term_t to, const term_t *elems, size_t n) GD_MUST_CHECK;

/*
 * Init acknowledgement (see supervisor.c): a start from ctx with a link
 * returns in *ack_to the process to acknowledge once init has run — ctx
 * when it marked its dictionary as wanting one (a supervisor running a
 * start function), else [] — and node_ack_started records the new pid for
 * it.  node_ack_started's error: GD_ENOMEM.
 */
term_t node_ack_to(sched_ctx_t *ctx, bool link);
int node_ack_started(sched_ctx_t *ctx, term_t ack_to, term_t pid) GD_MUST_CHECK;
/* Sends {'$girder_ack', Self} to ack_to (nothing when it is []). */
int node_ack(sched_ctx_t *ctx, term_t ack_to) GD_MUST_CHECK;

/* Checks a start's options (GD_EINVAL: link without a ctx; GD_EBADARG: a
 * name that is not an atom) and interns the atoms; *name_out is the name
 * or []. */
int node_start_name(sched_ctx_t *ctx, const girder_gen_opts_t *opts,
                    term_t *name_out) GD_MUST_CHECK;

/* Spawns a behaviour process of beh whose argument is the tuple elems[0..n)
 * (built on ctx's heap or a scratch one), with opts' spawn options and
 * link; elems[ack_index] is the node_ack_to value for the new process.
 * Errors: sched_spawn_opt's, GD_ENOMEM. */
int node_start(sched_ctx_t *ctx, const sched_behaviour_t *beh, const girder_gen_opts_t *opts,
               const term_t *elems, size_t n, size_t ack_index, term_t *pid_out) GD_MUST_CHECK;

/* Registers the calling process as name ([]: none).  A name taken ends it
 * with reason {already_started, Pid} (SCHED_EEXIT, to be returned from the
 * callback); other errors as sched_register. */
int node_register_name(sched_ctx_t *ctx, term_t name) GD_MUST_CHECK;

/* The exit reason {callback_error, Code} on ctx's heap (the bare atom if
 * the heap is out of memory). */
term_t node_callback_error(sched_ctx_t *ctx, int code);

/* girder_kv's code (kv_module.c): the gen_server table first, so the
 * table's address is the module's; vsn counts versions from 1.  A
 * reloadable object exports one under the name girder_kv_module. */
typedef struct girder_kv_module {
    girder_gen_server_t gen;
    int vsn;
} girder_kv_module_t;
extern const girder_kv_module_t girder_kv_module;
/* Whether m can take over girder_kv (init, handle_call and code_change
 * present): what a reload hands the running server and a restart runs. */
bool girder_kv_module_usable(const girder_kv_module_t *m);

/* Registers girder:call_out/4 and girder:rpc_out/6 for rpc (remote.c).
 * Errors: cluster_rpc_register's. */
int node_remote_builtins_register(void) GD_MUST_CHECK;

#endif /* GIRDER_NODE_INTERNAL_H */
