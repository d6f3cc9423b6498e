/*
 * services.c — what every node answers (docs/protocol.md §5):
 * the control messages arriving from peers (cluster_dispatch, on the loop
 * thread), the net_kernel, rex and echo processes, erpc's spawn_request,
 * and the table of C functions rpc:call and erpc:call may run.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- small term helpers ---- */

static term_t el(term_t tuple, size_t i)
{
    return term_boxed_ptr(tuple)[i + 1];
}

static size_t arity(term_t t)
{
    return term_is_boxed_of(t, HDR_TUPLE) ? (size_t)header_arity(*term_boxed_ptr(t)) : 0;
}

static bool is_atom(term_t t, const char *name)
{
    /* The text compared, not heap_atom(name): that hashes and probes the
     * table, and a controller's dispatch asks this a dozen times a
     * message. */
    if (!term_is_atom(t))
        return false;
    size_t len;
    const char *text = heap_atom_text(t, &len);
    return strlen(name) == len && memcmp(text, name, len) == 0;
}

/* Length of a proper list, or -1. */
static long list_length(term_t l)
{
    long n = 0;
    while (term_is_list(l)) {
        n++;
        l = term_cdr(l);
    }
    return term_is_nil(l) ? n : -1;
}

/* ---- the rpc function table ---- */

typedef struct rpc_entry {
    term_t module, function;
    unsigned arity;
    cluster_rpc_fn fn;
} rpc_entry_t;

static pthread_mutex_t rpc_lock = PTHREAD_MUTEX_INITIALIZER;
static rpc_entry_t rpc_table[CLUSTER_RPC_MAX];
static size_t rpc_count;

int cluster_rpc_register(const char *module, const char *function, unsigned arity_,
                         cluster_rpc_fn fn)
{
    if (module == NULL || function == NULL || fn == NULL || arity_ > 255)
        return GD_EINVAL;
    term_t m = heap_atom(module), f = heap_atom(function);
    if (m == TERM_NONE || f == TERM_NONE)
        return GD_ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&rpc_lock);
    size_t i;
    for (i = 0; i < rpc_count; i++)
        if (rpc_table[i].module == m && rpc_table[i].function == f && rpc_table[i].arity == arity_)
            break;
    if (i == CLUSTER_RPC_MAX)
        rc = GD_ESYSTEM_LIMIT;
    else {
        rpc_table[i] = (rpc_entry_t){m, f, arity_, fn};
        if (i == rpc_count)
            rpc_count++;
    }
    pthread_mutex_unlock(&rpc_lock);
    return rc;
}

static cluster_rpc_fn rpc_find(term_t m, term_t f, long arity_)
{
    cluster_rpc_fn fn = NULL;
    pthread_mutex_lock(&rpc_lock);
    for (size_t i = 0; i < rpc_count && fn == NULL; i++)
        if (rpc_table[i].module == m && rpc_table[i].function == f &&
            (long)rpc_table[i].arity == arity_)
            fn = rpc_table[i].fn;
    pthread_mutex_unlock(&rpc_lock);
    return fn;
}

/*
 * Runs M:F(Args) from the table.  *kind is return / error (as erpc's
 * result tuple names them) and *value the value or the error reason;
 * *stack the stack OTP would show: [{M, F, Args, []}] for undef.
 */
static int rpc_run(heap_t *h, term_t m, term_t f, term_t args, term_t *kind, term_t *value,
                   term_t *stack)
{
    long n = list_length(args);
    cluster_rpc_fn fn = n >= 0 && term_is_atom(m) && term_is_atom(f) ? rpc_find(m, f, n) : NULL;
    *stack = TERM_NIL;
    if (fn != NULL) {
        int rc = fn(h, args, value);
        if (rc == GD_ENOMEM)
            return rc;
        if (rc == 0) {
            *kind = heap_atom("return");
            return 0;
        }
        *value = heap_atom("badarg");
    } else {
        *value = heap_atom("undef");
    }
    *kind = heap_atom("error");
    term_t frame, items[4] = {m, f, n >= 0 ? args : TERM_NIL, TERM_NIL};
    int rc = heap_make_tuple_from(h, 4, items, &frame);
    if (rc == 0)
        rc = heap_cons(h, frame, TERM_NIL, stack);
    return rc;
}

/* ---- the processes ---- */

/* gen:reply: {Tag, Reply} to the alias when Tag is [alias | Ref] (or
 * [[alias | Ref] | _]), else to the pid (docs/protocol.md 5.3). */
static int gen_reply(sched_ctx_t *ctx, term_t from, term_t reply)
{
    if (arity(from) != 2)
        return 0;
    term_t pid = el(from, 0), tag = el(from, 1), to = pid;
    term_t t = tag;
    if (term_is_list(t) && term_is_list(term_car(t)))
        t = term_car(t);
    if (term_is_list(t) && is_atom(term_car(t), "alias") && term_is_ref(term_cdr(t)))
        to = term_cdr(t);
    term_t msg, items[2] = {tag, reply};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &msg);
    if (rc == 0)
        rc = sched_send(ctx, to, msg);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* init for every service: register under the name given as the argument. */
static int service_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)state;
    return term_is_atom(arg) ? sched_register(ctx, arg) : 0;
}

/* net_kernel: answers {is_auth, Node} with yes (net_adm:ping). */
static int net_kernel_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    if (arity(msg) == 3 && is_atom(el(msg, 0), "$gen_call") && arity(el(msg, 2)) == 2 &&
        is_atom(el(el(msg, 2), 0), "is_auth"))
        return gen_reply(ctx, el(msg, 1), heap_atom("yes"));
    return 0;
}

/* rpc's {call | block_call, M, F, A, GL} request: the value, or
 * {badrpc, {'EXIT', {Reason, Stack}}} as rpc:call returns errors.
 * GD_EBADARG for any other request. */
static int rex_call(heap_t *h, term_t req, term_t *out)
{
    if (arity(req) < 4 || !(is_atom(el(req, 0), "call") || is_atom(el(req, 0), "block_call")))
        return GD_EBADARG;
    term_t kind, value, stack;
    int rc = rpc_run(h, el(req, 1), el(req, 2), el(req, 3), &kind, &value, &stack);
    if (rc < 0 || !is_atom(kind, "error")) {
        *out = value;
        return rc;
    }
    term_t a[2] = {value, stack}, b[2], c[2];
    rc = heap_make_tuple_from(h, 2, a, &b[1]);
    b[0] = heap_atom("EXIT");
    if (rc == 0)
        rc = heap_make_tuple_from(h, 2, b, &c[1]);
    c[0] = heap_atom("badrpc");
    return rc == 0 ? heap_make_tuple_from(h, 2, c, out) : rc;
}

/* rex: the feature probe, and the gen_server and plain-message forms of
 * rpc that older callers and C nodes use. */
static int rex_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    heap_t *h = sched_heap(ctx);
    if (arity(msg) == 2 && term_is_pid(el(msg, 0)) && is_atom(el(msg, 1), "features_request")) {
        term_t feats, reply;
        int rc = heap_cons(h, heap_atom("erpc"), TERM_NIL, &feats);
        term_t items[3] = {heap_atom("features_reply"), heap_node_name(), feats};
        if (rc == 0)
            rc = heap_make_tuple_from(h, 3, items, &reply);
        return rc == 0 ? sched_send(ctx, el(msg, 0), reply) : rc;
    }
    if (arity(msg) == 3 && is_atom(el(msg, 0), "$gen_call")) {
        term_t value;
        int rc = rex_call(h, el(msg, 2), &value);
        return rc == 0 ? gen_reply(ctx, el(msg, 1), value) : rc == GD_EBADARG ? 0 : rc;
    }
    if (arity(msg) == 2 && term_is_pid(el(msg, 0))) {
        /* {From, {call, M, F, A, GL}}: what hidden C nodes send (ei_rpc,
         * erl_call); the answer is From ! {rex, Result}. */
        term_t value, reply;
        int rc = rex_call(h, el(msg, 1), &value);
        if (rc < 0)
            return rc == GD_EBADARG ? 0 : rc;
        term_t items[2] = {heap_atom("rex"), value};
        rc = heap_make_tuple_from(h, 2, items, &reply);
        return rc == 0 ? sched_send(ctx, el(msg, 0), reply) : rc;
    }
    return 0;
}

/* echo: {From, T} -> From ! {echo_reply, T}; {stop, Reason} -> exit. */
static int echo_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    if (arity(msg) != 2)
        return 0;
    if (is_atom(el(msg, 0), "stop"))
        return sched_exit(ctx, el(msg, 1));
    if (!term_is_pid(el(msg, 0)))
        return 0;
    term_t reply, items[2] = {heap_atom("echo_reply"), el(msg, 1)};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &reply);
    return rc == 0 ? sched_send(ctx, el(msg, 0), reply) : rc;
}

static int never_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    (void)msg;
    (void)state;
    return 0;
}

static const sched_behaviour_t net_kernel_beh = {service_init, net_kernel_handle, NULL, NULL};
static const sched_behaviour_t rex_beh = {service_init, rex_handle, NULL, NULL};
static const sched_behaviour_t echo_beh = {service_init, echo_handle, NULL, NULL};

/* ---- built-in rpc functions ---- */

static int bif_echo(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    *out = term_car(args);
    return 0;
}

static int bif_node(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    (void)args;
    *out = heap_node_name();
    return 0;
}

/* erlang:whereis/1: the local pid registered as the name, or undefined
 * (a pid is an immediate: nothing to build on h). */
static int bif_whereis(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    term_t name = term_car(args);
    if (!term_is_atom(name))
        return GD_EBADARG;
    term_t pid = sched_whereis(name);
    *out = term_is_pid(pid) ? pid : heap_atom("undefined");
    return 0;
}

static int bif_nodes(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    return cluster_nodes(h, out);
}

/* One erlang:nodes/1 kind as CLUSTER_NODES_* bits (this: NODES_THIS);
 * 0 for anything else.  known is this node and the connected ones (girder
 * keeps no list of nodes once seen). */
enum { NODES_THIS = 4 };
static unsigned nodes_kind(term_t a)
{
    return is_atom(a, "visible")     ? CLUSTER_NODES_VISIBLE
           : is_atom(a, "hidden")    ? CLUSTER_NODES_HIDDEN
           : is_atom(a, "connected") ? CLUSTER_NODES_VISIBLE | CLUSTER_NODES_HIDDEN
           : is_atom(a, "this")      ? NODES_THIS
           : is_atom(a, "known")     ? NODES_THIS | CLUSTER_NODES_VISIBLE | CLUSTER_NODES_HIDDEN
                                     : 0;
}

/* erlang:nodes/1: Arg a kind or a proper list of kinds, as OTP takes
 * them ([] gives []; badarg otherwise); this node first, then the
 * connected ones. */
static int bif_nodes_of(heap_t *h, term_t args, term_t *out)
{
    term_t arg = term_car(args);
    unsigned kinds = 0;
    if (term_is_atom(arg)) {
        if ((kinds = nodes_kind(arg)) == 0)
            return GD_EBADARG;
    } else {
        if (list_length(arg) < 0)
            return GD_EBADARG;
        for (term_t l = arg; term_is_list(l); l = term_cdr(l)) {
            unsigned k = nodes_kind(term_car(l));
            if (k == 0)
                return GD_EBADARG;
            kinds |= k;
        }
    }
    term_t list = TERM_NIL;
    int rc = cluster_nodes_of(h, kinds & (CLUSTER_NODES_VISIBLE | CLUSTER_NODES_HIDDEN), TERM_NIL,
                              &list);
    if (rc == 0 && (kinds & NODES_THIS))
        rc = heap_cons(h, heap_node_name(), list, &list);
    *out = list;
    return rc;
}

static int bif_spawn_echo(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    (void)args;
    return sched_spawn(NULL, &echo_beh, TERM_NIL, out);
}

/* girder:watch(Pid, ReportTo): a process that links to and monitors Pid
 * (any node) and reports to ReportTo: {watch_exit, Pid, Reason} for the
 * link's exit signal and {watch_down, Pid, Reason} for the DOWN; the
 * message `unlink` makes it unlink from Pid ({watch_unlinked, Pid}), and
 * `demonitor` drop its monitor ({watch_demonitored, Pid}).  For
 * tests of links and monitors that girder processes set on others. */
static int watch_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t ref = TERM_NONE;
    (void)sched_trap_exit(ctx, true);
    int rc = sched_link(ctx, el(arg, 0));
    if (rc == 0)
        rc = sched_monitor(ctx, el(arg, 0), &ref);
    /* State {Pid, ReportTo, MonitorRef}. */
    term_t items[3] = {el(arg, 0), el(arg, 1), ref};
    return rc == 0 ? heap_make_tuple_from(sched_heap(ctx), 3, items, state) : rc;
}

static bool eq(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == 0 && order == 0;
}

/* A {'DOWN', *ref, ...} message. */
static bool is_down_of(term_t msg, void *ref)
{
    return arity(msg) == 5 && is_atom(el(msg, 0), "DOWN") && eq(el(msg, 1), *(term_t *)ref);
}

static int watch_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (is_atom(msg, "demonitor")) {
        /* demonitor(Ref, [flush]), then {watch_demonitored, Pid} to
         * ReportTo: no watch_down may follow.  The flush matters: a 'DOWN'
         * taken into the queue with the `demonitor` message stays there
         * after a plain demonitor, in OTP as here. */
        term_t ref = el(*state, 2);
        int rc = sched_demonitor(ctx, ref);
        if (rc == 0)
            (void)sched_flush(ctx, is_down_of, &ref);
        term_t report, items[2] = {heap_atom("watch_demonitored"), el(*state, 0)};
        if (rc == 0)
            rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &report);
        return rc == 0 ? sched_send(ctx, el(*state, 1), report) : rc;
    }
    if (is_atom(msg, "unlink")) {
        /* unlink(Pid), then {watch_unlinked, Pid} to ReportTo. */
        int rc = sched_unlink(ctx, el(*state, 0));
        term_t report, items[2] = {heap_atom("watch_unlinked"), el(*state, 0)};
        if (rc == 0)
            rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &report);
        return rc == 0 ? sched_send(ctx, el(*state, 1), report) : rc;
    }
    const char *kind = arity(msg) == 3 && is_atom(el(msg, 0), "EXIT")   ? "watch_exit"
                       : arity(msg) == 5 && is_atom(el(msg, 0), "DOWN") ? "watch_down"
                                                                        : NULL;
    if (kind == NULL)
        return 0;
    /* The pid the message names (for a remote link's exit: the remote
     * process itself, not a relay). */
    term_t who = el(msg, kind[6] == 'e' ? 1 : 3);
    term_t report, items[3] = {heap_atom(kind), who, el(msg, arity(msg) - 1)};
    int rc = heap_make_tuple_from(sched_heap(ctx), 3, items, &report);
    return rc == 0 ? sched_send(ctx, el(*state, 1), report) : rc;
}

static const sched_behaviour_t watch_beh = {watch_init, watch_handle, NULL, NULL};

static int bif_watch(heap_t *h, term_t args, term_t *out)
{
    term_t pid = term_car(args), report = term_car(term_cdr(args)), arg;
    if (!term_is_pid(pid) || !term_is_pid(report))
        return GD_EBADARG;
    term_t items[2] = {pid, report};
    int rc = heap_make_tuple_from(h, 2, items, &arg);
    return rc == 0 ? sched_spawn(NULL, &watch_beh, arg, out) : rc;
}

/* girder:watch_nodes(ReportTo, Node | all): a process that calls
 * monitor_node(Node, true) (or monitor_nodes(true) for all) and reports
 * each {nodeup, N} / {nodedown, N} it gets as {watch_node, Event}; it
 * stops after a nodedown of a single Node (monitor_node fires once).  For
 * tests of node monitoring from girder processes. */
static int watch_nodes_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = arg;
    term_t node_atom = el(arg, 1);
    return is_atom(node_atom, "all") ? cluster_monitor_nodes(ctx, true)
                                     : cluster_monitor_node(ctx, node_atom, true);
}

static int watch_nodes_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    bool down = arity(msg) == 2 && is_atom(el(msg, 0), "nodedown");
    if (!down && !(arity(msg) == 2 && is_atom(el(msg, 0), "nodeup")))
        return 0;
    term_t report, items[2] = {heap_atom("watch_node"), msg};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &report);
    if (rc == 0)
        rc = sched_send(ctx, el(*state, 0), report);
    if (rc < 0 && rc != SCHED_ENOPROC)
        return rc;
    return down && !is_atom(el(*state, 1), "all") ? sched_exit(ctx, heap_atom("normal")) : 0;
}

static const sched_behaviour_t watch_nodes_beh = {watch_nodes_init, watch_nodes_handle, NULL, NULL};

static int bif_watch_nodes(heap_t *h, term_t args, term_t *out)
{
    term_t report = term_car(args), node_atom = term_car(term_cdr(args)), arg;
    if (!term_is_pid(report) || !term_is_atom(node_atom))
        return GD_EBADARG;
    term_t items[2] = {report, node_atom};
    int rc = heap_make_tuple_from(h, 2, items, &arg);
    return rc == 0 ? sched_spawn(NULL, &watch_nodes_beh, arg, out) : rc;
}

/* girder:send(Dest, Msg) -> ok: Dest ! Msg from this node (a pid, a
 * registered name, or {Name, Node}: REG_SEND for another node), as
 * erlang:send/2; for making girder send to other nodes in tests. */
static int bif_send(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    term_t dest = term_car(args), msg = term_car(term_cdr(args));
    bool name_node = arity(dest) == 2 && term_is_atom(el(dest, 0)) && term_is_atom(el(dest, 1));
    if (!term_is_pid(dest) && !term_is_atom(dest) && !name_node)
        return GD_EBADARG;
    int rc = sched_send(NULL, dest, msg);
    if (rc == SCHED_ENOPROC && term_is_atom(dest))
        return GD_EBADARG; /* erlang:send/2 to a name nobody has: badarg */
    if (rc < 0 && rc != SCHED_ENOPROC)
        return rc;
    *out = heap_atom("ok");
    return 0;
}

/* erlang:system_info/1 for the keys girder has: process_count,
 * schedulers, schedulers_online, atom_count, atom_limit, otp_release; other keys raise
 * badarg, as unknown keys do in OTP. */
static int bif_system_info(heap_t *h, term_t args, term_t *out)
{
    term_t key = term_car(args);
    sched_stats_t st;
    if (is_atom(key, "process_count")) {
        *out = term_make_small(sched_process_count());
    } else if (is_atom(key, "schedulers") || is_atom(key, "schedulers_online")) {
        sched_stats(&st);
        *out = term_make_small(st.schedulers);
    } else if (is_atom(key, "atom_count")) {
        *out = term_make_small(heap_atom_count());
    } else if (is_atom(key, "atom_limit")) {
        *out = term_make_small(heap_atom_limit());
    } else if (is_atom(key, "otp_release")) {
        /* The release whose distribution and term encoding girder speaks
         * (etf/'s default otp_release), as OTP's string: "25". */
        term_t s = TERM_NIL;
        int rc = heap_cons(h, term_make_small('5'), s, &s);
        if (rc == 0)
            rc = heap_cons(h, term_make_small('2'), s, &s);
        if (rc < 0)
            return rc;
        *out = s;
    } else {
        return GD_EBADARG;
    }
    return 0;
}

/* girder:info/0: #{node, processes, schedulers, atoms, nodes}. */
static int bif_info(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    sched_stats_t st;
    sched_stats(&st);
    term_t nodes;
    int rc = cluster_nodes(h, &nodes);
    if (rc < 0)
        return rc;
    term_t keys[5] = {heap_atom("node"), heap_atom("processes"), heap_atom("schedulers"),
                      heap_atom("atoms"), heap_atom("nodes")};
    term_t vals[5] = {heap_node_name(), term_make_small(sched_process_count()),
                      term_make_small(st.schedulers), term_make_small(heap_atom_count()), nodes};
    return heap_make_map(h, keys, vals, 5, out);
}

/* ---- the connection controller ----
 * One process per connection stands, on this node, for the peer's
 * processes in links and monitors (OTP's distribution entry): it monitors
 * and links the local processes that remote ones monitor or link, turns
 * their DOWNs and exits into control messages to the peer, passes link
 * exits from the peer on, and ends with reason noconnection when the
 * connection goes, which every local process linked across it then gets.
 * Its state: a list of {mon, LocalRef, RemotePid, RemoteRef, Target} and
 * {link, LocalPid, RemotePid}. */

static term_t ctrl_atom(const char *name)
{
    return heap_atom(name);
}

/* Sends {op, a, b, [d]} + payload to the controller's peer (no
 * reconnecting: a dead connection drops it). */
static int ctrl_send(sched_ctx_t *ctx, int op, term_t a, term_t b, term_t d, term_t payload)
{
    term_t node_atom = sched_dict_get(ctx, ctrl_atom("$gd_node"));
    term_t ctl[5] = {heap_make_header(HDR_TUPLE, d == TERM_NONE ? 3 : 4), term_make_small(op), a, b,
                     d};
    return cluster_send_control(node_atom, term_make_boxed(ctl), payload);
}

static int ctrl_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)sched_trap_exit(ctx, true);
    *state = TERM_NIL;
    term_t old;
    return sched_dict_put(ctx, ctrl_atom("$gd_node"), arg, &old);
}

/* Removes the entries matching pred from the state list. */
typedef bool (*entry_pred)(term_t entry, term_t a, term_t b);

static int state_remove(heap_t *h, term_t *state, entry_pred pred, term_t a, term_t b,
                        term_t *found)
{
    term_t keep = TERM_NIL;
    *found = TERM_NONE;
    for (term_t l = *state; term_is_list(l); l = term_cdr(l)) {
        term_t e = term_car(l);
        if (*found == TERM_NONE && pred(e, a, b)) {
            *found = e;
            continue;
        }
        int rc = heap_cons(h, e, keep, &keep);
        if (rc < 0)
            return rc;
    }
    *state = keep;
    return 0;
}

static bool mon_by_lref(term_t e, term_t lref, term_t unused)
{
    (void)unused;
    return is_atom(el(e, 0), "mon") && eq(el(e, 1), lref);
}
static bool mon_by_remote(term_t e, term_t from, term_t ref)
{
    return is_atom(el(e, 0), "mon") && eq(el(e, 2), from) && eq(el(e, 3), ref);
}
static bool link_by_local(term_t e, term_t local, term_t unused)
{
    (void)unused;
    return is_atom(el(e, 0), "link") && eq(el(e, 1), local);
}
static bool link_pair(term_t e, term_t local, term_t remote)
{
    return is_atom(el(e, 0), "link") && eq(el(e, 1), local) && eq(el(e, 2), remote);
}

/* {unlinking, Local, Remote, Id}: our unlink awaiting the peer's ack. */
static bool unlinking_of(term_t e, term_t local, term_t remote)
{
    return is_atom(el(e, 0), "unlinking") && eq(el(e, 1), local) && eq(el(e, 2), remote);
}

/* The same by the unlink's id (unique per node: one counter). */
static bool unlinking_by_id(term_t e, term_t id, term_t unused)
{
    (void)unused;
    return is_atom(el(e, 0), "unlinking") && eq(el(e, 3), id);
}

static bool out_mon_by_ref(term_t e, term_t ref, term_t unused)
{
    (void)unused;
    return is_atom(el(e, 0), "out_mon") && eq(el(e, 1), ref);
}
static bool out_mon_by_owner(term_t e, term_t owner, term_t ref)
{
    return is_atom(el(e, 0), "out_mon") && eq(el(e, 2), owner) && eq(el(e, 1), ref);
}

/* {'DOWN', Ref, process, Item, Reason} to the local owner of out_mon
 * entry {out_mon, Ref, Owner, Item}. */
static int send_down(sched_ctx_t *ctx, term_t entry, term_t reason)
{
    term_t down,
        items[5] = {ctrl_atom("DOWN"), el(entry, 1), ctrl_atom("process"), el(entry, 3), reason};
    int rc = heap_make_tuple_from(sched_heap(ctx), 5, items, &down);
    /* To the monitor's ref, an alias of the owner (node.c's hook_monitor):
     * dropped if the owner demonitored meanwhile. */
    if (rc == 0)
        rc = sched_send(ctx, el(entry, 1), down);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* The process or name a remote monitor target stands for on the wire:
 * a pid, or the Name of {Name, Node}. */
static term_t wire_target(term_t item)
{
    return arity(item) == 2 ? el(item, 0) : item;
}

/*
 * The remote end `remote` of local's link is gone with reason (its entry
 * already out of `rest`, the remaining state): the controller drops its
 * own link to local unless another remote link of local still needs it,
 * then sends local the exit signal as from `remote`, so a trapping process
 * reads {'EXIT', RemotePid, Reason} as in Erlang, and the link to the
 * controller does not outlive the remote one.
 */
static int link_exit(sched_ctx_t *ctx, term_t rest, term_t local, term_t remote, term_t reason)
{
    bool shared = false;
    for (term_t l = rest; term_is_list(l) && !shared; l = term_cdr(l))
        shared = link_by_local(term_car(l), local, TERM_NONE);
    int rc = shared ? 0 : sched_unlink(ctx, local);
    if (rc == 0)
        rc = sched_exit_pid_from(ctx, local, remote, reason);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* {nodedown, Node} to pid (gone: nothing to tell). */
static int send_nodedown(sched_ctx_t *ctx, term_t pid, term_t node_atom)
{
    term_t msg, items[2] = {ctrl_atom("nodedown"), node_atom};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &msg);
    if (rc == 0)
        rc = sched_send(ctx, pid, msg);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

static bool node_mon_of(term_t e, term_t pid, term_t unused)
{
    (void)unused;
    return is_atom(el(e, 0), "node_mon") && el(e, 1) == pid;
}

/* monitor_node(Node, true | false) for a local process ({Tag, Pid, []}
 * from cluster_monitor_node): {node_mon, Pid}
 * entries, one per call, each answered by one {nodedown, Node}. */
static int ctrl_node_monitor(sched_ctx_t *ctx, term_t msg, term_t *state, bool *handled)
{
    heap_t *h = sched_heap(ctx);
    term_t found, entry;
    *handled = arity(msg) == 3 && (is_atom(el(msg, 0), "$gd_monitor_node") ||
                                   is_atom(el(msg, 0), "$gd_demonitor_node"));
    if (!*handled)
        return 0;
    if (is_atom(el(msg, 0), "$gd_demonitor_node"))
        return state_remove(h, state, node_mon_of, el(msg, 1), TERM_NONE, &found);
    term_t items[2] = {ctrl_atom("node_mon"), el(msg, 1)};
    int rc = heap_make_tuple_from(h, 2, items, &entry);
    return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
}

/* Messages about monitors and links that local processes set on remote
 * ones (sent by the hooks in node.c from the local process itself). */
static int ctrl_outgoing(sched_ctx_t *ctx, term_t msg, term_t *state, bool *handled)
{
    heap_t *h = sched_heap(ctx);
    size_t n = arity(msg);
    term_t tag = el(msg, 0), found, entry;
    int rc;
    *handled = true;
    if (is_atom(tag, "$gd_out_link") && n == 3) {
        /* {_, Local, Remote}: Local linked itself to us already. */
        term_t items[3] = {ctrl_atom("link"), el(msg, 1), el(msg, 2)};
        rc = heap_make_tuple_from(h, 3, items, &entry);
        if (rc == 0)
            rc = heap_cons(h, entry, *state, state);
        return rc < 0 ? rc : ctrl_send(ctx, DOP_LINK, el(msg, 1), el(msg, 2), TERM_NONE, TERM_NONE);
    }
    if (is_atom(tag, "$gd_out_unlink") && n == 3) {
        rc = state_remove(h, state, link_pair, el(msg, 1), el(msg, 2), &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        /* Any id from 1 up will do: it only pairs the ack with this unlink. */
        static _Atomic uint32_t unlink_ids;
        term_t id = term_make_small(
            (int64_t)atomic_fetch_add_explicit(&unlink_ids, 1, memory_order_relaxed) + 1);
        term_t ctl[5] = {heap_make_header(HDR_TUPLE, 4), term_make_small(DOP_UNLINK_ID), id,
                         el(msg, 1), el(msg, 2)};
        rc = cluster_send_control(sched_dict_get(ctx, ctrl_atom("$gd_node")), term_make_boxed(ctl),
                                  TERM_NONE);
        if (rc < 0)
            return rc;
        /* The link stays known as being unlinked until the peer's
         * UNLINK_ID_ACK with this id: a LINK from it meanwhile is ignored
         * (it crossed our unlink, which its side applies after it). */
        term_t items[4] = {ctrl_atom("unlinking"), el(msg, 1), el(msg, 2), id};
        rc = heap_make_tuple_from(h, 4, items, &entry);
        if (rc == 0)
            rc = heap_cons(h, entry, *state, state);
        if (rc < 0)
            return rc;
        for (term_t l = *state; term_is_list(l); l = term_cdr(l))
            if (link_by_local(term_car(l), el(msg, 1), TERM_NONE))
                return 0;
        return sched_unlink(ctx, el(msg, 1));
    }
    if (is_atom(tag, "$gd_unlink_ack") && n == 4) {
        /* {_, Id, RemotePid, LocalPid}: our unlink is complete. */
        return state_remove(h, state, unlinking_by_id, el(msg, 1), TERM_NONE, &found) < 0
                   ? GD_ENOMEM
                   : 0;
    }
    if (is_atom(tag, "$gd_out_monitor") && n == 4) {
        /* {_, Local, Item, Ref}: node.c's hook_monitor sends the
         * MONITOR_P itself, after this is queued, so that it leaves ahead
         * of the caller's next send (rpc's REG_SEND). */
        term_t items[4] = {ctrl_atom("out_mon"), el(msg, 3), el(msg, 1), el(msg, 2)};
        rc = heap_make_tuple_from(h, 4, items, &entry);
        return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
    }
    if (is_atom(tag, "$gd_out_spawn") && n == 4) {
        /* {_, Local, ReqId, Node} (cluster_spawn_request): an erpc
         * request's monitor, as {out_mon, ReqId, Local, Node}; the peer's
         * DOWN for it (monitor reference ReqId) ends it like any other,
         * and so does the connection's end, with noconnection.  Its item
         * is the node atom: the spawned pid is not known here. */
        term_t items[4] = {ctrl_atom("out_mon"), el(msg, 2), el(msg, 1), el(msg, 3)};
        rc = heap_make_tuple_from(h, 4, items, &entry);
        return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
    }
    if (is_atom(tag, "$gd_out_demonitor") && n == 3) {
        rc = state_remove(h, state, out_mon_by_owner, el(msg, 1), el(msg, 2), &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        /* An abandoned erpc request (item: the node atom) has no pid to
         * name in a DEMONITOR_P: its DOWN, should it come, finds no entry. */
        if (term_is_atom(el(found, 3)))
            return 0;
        return ctrl_send(ctx, DOP_DEMONITOR_P, el(msg, 1), wire_target(el(found, 3)), el(found, 1),
                         TERM_NONE);
    }
    if (is_atom(tag, "$gd_out_forget") && n == 3) {
        /* {_, Local, Ref}: Local demonitored and wrote the DEMONITOR_P
         * itself (node.c's hook_demonitor); only the entry goes. */
        return state_remove(h, state, out_mon_by_owner, el(msg, 1), el(msg, 2), &found);
    }
    if (is_atom(tag, "$gd_down") && n == 3) {
        /* {_, Ref, Reason} from the peer's MONITOR_P_EXIT. */
        rc = state_remove(h, state, out_mon_by_ref, el(msg, 1), TERM_NONE, &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        return send_down(ctx, found, el(msg, 2));
    }
    if (is_atom(tag, "$gd_spawn_reply") && n == 3) {
        /* {_, ReqId, Reason}: the peer refused an erpc spawn; the request
         * ends with {spawn_reply, ReqId, error, Reason} through its alias. */
        rc = state_remove(h, state, out_mon_by_ref, el(msg, 1), TERM_NONE, &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        term_t reply,
            items[4] = {ctrl_atom("spawn_reply"), el(found, 1), ctrl_atom("error"), el(msg, 2)};
        rc = heap_make_tuple_from(h, 4, items, &reply);
        if (rc == 0)
            rc = sched_send(ctx, el(found, 1), reply);
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    *handled = false;
    return 0;
}

static int ctrl_handle_one(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    heap_t *h = sched_heap(ctx);
    size_t n = arity(msg);
    if (n == 0) {
        if (!is_atom(msg, "$gd_nodedown"))
            return 0;
        /* Monitors of the peer's processes fire, monitor_node's
         * {nodedown, Node} go out, and each link breaks with noconnection
         * from the remote pid. */
        for (term_t l = *state; term_is_list(l); l = term_cdr(l)) {
            int rc = 0;
            if (is_atom(el(term_car(l), 0), "link"))
                rc = link_exit(ctx, TERM_NIL, el(term_car(l), 1), el(term_car(l), 2),
                               ctrl_atom("noconnection"));
            else if (is_atom(el(term_car(l), 0), "out_mon"))
                rc = send_down(ctx, term_car(l), ctrl_atom("noconnection"));
            else if (is_atom(el(term_car(l), 0), "node_mon"))
                rc = send_nodedown(ctx, el(term_car(l), 1),
                                   sched_dict_get(ctx, ctrl_atom("$gd_node")));
            if (rc < 0)
                return rc;
        }
        return sched_exit(ctx, ctrl_atom("noconnection"));
    }
    term_t tag = el(msg, 0), found, entry;
    bool handled;
    int rc = ctrl_outgoing(ctx, msg, state, &handled);
    if (handled)
        return rc;
    rc = ctrl_node_monitor(ctx, msg, state, &handled);
    if (handled)
        return rc;
    if (is_atom(tag, "$gd_monitor") && n == 5) {
        /* {_, RemotePid, Target, RemoteRef}: monitor for the peer. */
        term_t lref;
        rc = sched_monitor(ctx, el(msg, 2), &lref);
        if (rc == SCHED_ENOPROC || rc == GD_EBADARG)
            return ctrl_send(ctx, DOP_PAYLOAD_MONITOR_P_EXIT, el(msg, 2), el(msg, 1), el(msg, 3),
                             ctrl_atom("noproc"));
        if (rc < 0)
            return rc;
        term_t items[5] = {ctrl_atom("mon"), lref, el(msg, 1), el(msg, 3), el(msg, 2)};
        rc = heap_make_tuple_from(h, 5, items, &entry);
        return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
    }
    if (is_atom(tag, "$gd_monitor_set") && n == 5) {
        /* {_, RemotePid, Target, RemoteRef, LocalRef}: the reading thread
         * has set the monitor for us (monitor_for_peer). */
        term_t items[5] = {ctrl_atom("mon"), el(msg, 4), el(msg, 1), el(msg, 3), el(msg, 2)};
        rc = heap_make_tuple_from(h, 5, items, &entry);
        return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
    }
    if (is_atom(tag, "$gd_demonitor") && n == 3) {
        rc = state_remove(h, state, mon_by_remote, el(msg, 1), el(msg, 2), &found);
        if (rc == 0 && found != TERM_NONE)
            rc = sched_demonitor(ctx, el(found, 1));
        return rc;
    }
    if (is_atom(tag, "DOWN") && n == 5) {
        rc = state_remove(h, state, mon_by_lref, el(msg, 1), TERM_NONE, &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        return ctrl_send(ctx, DOP_PAYLOAD_MONITOR_P_EXIT, el(found, 4), el(found, 2), el(found, 3),
                         el(msg, 4));
    }
    if (is_atom(tag, "$gd_link") && n == 4) {
        /* {_, RemotePid, LocalPid}: a dead local answers with an exit
         * noproc (through the trapped EXIT below).  Ignored while our
         * unlink of the pair awaits its ack, or when already linked. */
        for (term_t l = *state; term_is_list(l); l = term_cdr(l))
            if (unlinking_of(term_car(l), el(msg, 2), el(msg, 1)) ||
                link_pair(term_car(l), el(msg, 2), el(msg, 1)))
                return 0;
        term_t items[3] = {ctrl_atom("link"), el(msg, 2), el(msg, 1)};
        rc = heap_make_tuple_from(h, 3, items, &entry);
        if (rc == 0)
            rc = heap_cons(h, entry, *state, state);
        if (rc == 0)
            rc = sched_link(ctx, el(msg, 2));
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    if (is_atom(tag, "$gd_unlink") && n == 3) {
        rc = state_remove(h, state, link_pair, el(msg, 2), el(msg, 1), &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        for (term_t l = *state; term_is_list(l); l = term_cdr(l))
            if (link_by_local(term_car(l), el(msg, 2), TERM_NONE))
                return 0;
        return sched_unlink(ctx, el(msg, 2));
    }
    if (is_atom(tag, "$gd_exit") && n == 4) {
        /* {_, RemotePid, LocalPid, Reason}: the remote end of a link died. */
        rc = state_remove(h, state, link_pair, el(msg, 2), el(msg, 1), &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        return link_exit(ctx, *state, el(msg, 2), el(msg, 1), el(msg, 3));
    }
    if (is_atom(tag, "EXIT") && n == 3) {
        /* A local process linked for the peer ended: tell each remote end. */
        for (;;) {
            rc = state_remove(h, state, link_by_local, el(msg, 1), TERM_NONE, &found);
            if (rc < 0 || found == TERM_NONE)
                return rc;
            rc = ctrl_send(ctx, DOP_PAYLOAD_EXIT, el(msg, 1), el(found, 2), TERM_NONE, el(msg, 2));
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Monitors and links from the peer carry a sequence number last: the loop
 * thread waits for its acknowledgement before it delivers the peer's next
 * messages, so a monitor set before a send is in place before the
 * message arrives (Erlang orders signals between two processes). */
static int ctrl_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    size_t n = arity(msg);
    term_t seq = TERM_NONE;
    if ((n == 5 && is_atom(el(msg, 0), "$gd_monitor")) ||
        (n == 4 && is_atom(el(msg, 0), "$gd_link")))
        seq = el(msg, n - 1);
    int rc = ctrl_handle_one(ctx, msg, state);
    if (term_is_small(seq))
        cluster_ctrl_ack(sched_dict_get(ctx, ctrl_atom("$gd_node")), sched_self(ctx),
                         (uint64_t)term_small_value(seq));
    return rc;
}

static const sched_behaviour_t ctrl_beh = {ctrl_init, ctrl_handle, NULL, NULL};

int cluster_controller_start(term_t node_atom, term_t *pid)
{
    return sched_spawn(NULL, &ctrl_beh, node_atom, pid);
}

/* Forwards {Tag, A, B[, C]} to the connection's controller. */
static int to_ctrl(conn_t *c, heap_t *h, const char *tag, term_t a, term_t b, term_t d)
{
    term_t msg, items[4] = {heap_atom(tag), a, b, d};
    int rc = heap_make_tuple_from(h, d == TERM_NONE ? 3 : 4, items, &msg);
    if (rc == 0)
        rc = sched_send(NULL, cluster_conn_controller(c), msg);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* As to_ctrl with a sequence number, waiting until the controller has
 * acted (see ctrl_handle). */
static int to_ctrl_sync(conn_t *c, heap_t *h, const char *tag, term_t a, term_t b, term_t d)
{
    uint64_t seq = cluster_ctrl_next(c);
    term_t msg, items[5] = {heap_atom(tag), a, b, d, term_make_small((int64_t)seq)};
    size_t n = 4;
    if (d == TERM_NONE)
        items[3] = items[4];
    else
        n = 5;
    int rc = heap_make_tuple_from(h, n, items, &msg);
    if (rc == 0)
        rc = sched_send(NULL, cluster_conn_controller(c), msg);
    if (rc == 0)
        cluster_ctrl_wait(c, seq);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

#define CTRL_BACKLOG_MAX 64

/*
 * The peer's process `from` monitors local `target` (a pid or a registered
 * name) with its reference `rref`.  The monitor is set here, on the
 * reading thread, for the connection's controller (sched_monitor_for),
 * after telling the controller which peer monitor the local reference
 * stands for: the target's 'DOWN' then finds that entry, and the frames
 * read after this one reach the target after the monitor, as in OTP,
 * without waiting for the controller (to_ctrl_sync did: a call from the
 * peer cost two more thread wake-ups, and a busy controller held up the
 * reading of every connection).
 */
static int monitor_for_peer(conn_t *c, heap_t *h, term_t from, term_t target, term_t rref)
{
    /* Back-pressure: the reader no longer waits for the controller, so a
     * peer's many callers could run it far behind (1000 OTP callers of
     * girder_kv under ASan: every later call answered seconds late).
     * Past CTRL_BACKLOG_MAX waiting messages the monitor goes through it
     * and the reader waits, as before. */
    term_t ctrl = cluster_conn_controller(c);
    if (sched_message_queue_len(ctrl) > CTRL_BACKLOG_MAX)
        return to_ctrl_sync(c, h, "$gd_monitor", from, target, rref);
    term_t lref, msg;
    int rc = sched_ref_new(h, &lref);
    term_t items[5] = {heap_atom("$gd_monitor_set"), from, target, rref, lref};
    if (rc == 0)
        rc = heap_make_tuple_from(h, 5, items, &msg);
    if (rc == 0)
        rc = sched_send(NULL, ctrl, msg);
    if (rc == 0)
        rc = sched_monitor_for(ctrl, target, lref);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* ---- node events (net_kernel:monitor_nodes) ----
 * One process holds the subscribers ({Pid, MonitorRef} entries; the
 * monitor drops a subscriber that ends) and fans out the node.c events
 * {'$gd_nodeup' | '$gd_nodedown', Node}, which node.c sends under its
 * lock, so they arrive in the order the connections changed. */

static int events_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    (void)arg;
    *state = TERM_NIL;
    return 0;
}

static bool sub_of(term_t e, term_t pid, term_t unused)
{
    (void)unused;
    return el(e, 0) == pid;
}

static bool sub_by_ref(term_t e, term_t ref, term_t unused)
{
    (void)unused;
    return eq(el(e, 1), ref);
}

static int events_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    heap_t *h = sched_heap(ctx);
    size_t n = arity(msg);
    term_t found, entry;
    int rc = 0;
    if (n == 3 && is_atom(el(msg, 0), "$gd_subscribe") && term_is_local_pid(el(msg, 1))) {
        term_t pid = el(msg, 1);
        rc = state_remove(h, state, sub_of, pid, TERM_NONE, &found);
        if (rc == 0 && found != TERM_NONE)
            rc = sched_demonitor(ctx, el(found, 1));
        if (rc < 0 || !is_atom(el(msg, 2), "true"))
            return rc;
        term_t ref;
        rc = sched_monitor(ctx, pid, &ref);
        if (rc == SCHED_ENOPROC)
            return 0;
        term_t items[2] = {pid, ref};
        if (rc == 0)
            rc = heap_make_tuple_from(h, 2, items, &entry);
        return rc == 0 ? heap_cons(h, entry, *state, state) : rc;
    }
    if (n == 5 && is_atom(el(msg, 0), "DOWN"))
        return state_remove(h, state, sub_by_ref, el(msg, 1), TERM_NONE, &found);
    bool up = n == 2 && is_atom(el(msg, 0), "$gd_nodeup");
    if (!up && !(n == 2 && is_atom(el(msg, 0), "$gd_nodedown")))
        return 0;
    term_t event, items[2] = {heap_atom(up ? "nodeup" : "nodedown"), el(msg, 1)};
    rc = heap_make_tuple_from(h, 2, items, &event);
    for (term_t l = *state; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        rc = sched_send(ctx, el(term_car(l), 0), event);
        if (rc == SCHED_ENOPROC)
            rc = 0;
    }
    return rc;
}

static const sched_behaviour_t events_beh = {events_init, events_handle, NULL, NULL};

int cluster_node_event(term_t events, term_t node_atom, bool up)
{
    term_t body[3] = {heap_make_header(HDR_TUPLE, 2), heap_atom(up ? "$gd_nodeup" : "$gd_nodedown"),
                      node_atom};
    int rc = sched_send(NULL, events, term_make_boxed(body));
    return rc == SCHED_ENOPROC || rc == SCHED_ESTOPPED ? 0 : rc;
}

int cluster_monitor_nodes(sched_ctx_t *ctx, bool on)
{
    term_t body[4] = {heap_make_header(HDR_TUPLE, 3), heap_atom("$gd_subscribe"), sched_self(ctx),
                      on ? heap_atom("true") : heap_atom("false")};
    return sched_send(ctx, cluster_events_process(), term_make_boxed(body));
}

/* ---- the service keeper ----
 * net_kernel, rex and echo run under a keeper that monitors them and
 * starts again, under its name, any that exits: a peer stops echo with
 * {stop, R} or kills any of them with exit/2, and the contract still
 * promises them to the next caller (OTP's kernel supervisor restarts its
 * own servers the same way).  A service whose name another process has
 * taken meanwhile is not started again (logged).  Past KEEP_BURST
 * restarts in a second, the next waits KEEP_PAUSE_MS (a service that
 * cannot start does not spin).  State: {Pids, WindowStartMs, Restarts},
 * Pids a tuple in svcs[] order. */

static const struct {
    const char *name;
    const sched_behaviour_t *beh;
} svcs[] = {{"net_kernel", &net_kernel_beh}, {"rex", &rex_beh}, {"echo", &echo_beh}};
#define NSVCS (sizeof svcs / sizeof svcs[0])
#define KEEP_BURST 100
#define KEEP_PAUSE_MS 1000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Spawns service i and monitors it; *pid_out its pid. */
static int keep_start(sched_ctx_t *ctx, size_t i, term_t *pid_out)
{
    term_t name = heap_atom(svcs[i].name), ref;
    if (name == TERM_NONE)
        return GD_ENOMEM;
    int rc = sched_spawn(ctx, svcs[i].beh, name, pid_out);
    if (rc == 0)
        rc = sched_monitor(ctx, *pid_out, &ref);
    return rc == SCHED_ENOPROC ? 0 : rc; /* died at once: its DOWN comes */
}

static int keeper_state(sched_ctx_t *ctx, const term_t *pids, int64_t window, int64_t n,
                        term_t *state)
{
    heap_t *h = sched_heap(ctx);
    term_t t;
    int rc = heap_make_tuple_from(h, NSVCS, pids, &t);
    term_t items[3] = {t, term_make_small(window), term_make_small(n)};
    return rc == 0 ? heap_make_tuple_from(h, 3, items, state) : rc;
}

static int keeper_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    term_t pids[NSVCS];
    for (size_t i = 0; i < NSVCS; i++) {
        int rc = keep_start(ctx, i, &pids[i]);
        if (rc < 0)
            return rc;
    }
    return keeper_state(ctx, pids, now_ms(), 0, state);
}

static int keeper_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    /* {'DOWN', Ref, process, Pid, Reason} of a service, or
     * {'$gd_keep', I} after a pause. */
    term_t pids[NSVCS];
    memcpy(pids, term_tuple_elems(el(*state, 0)), sizeof pids);
    size_t i = NSVCS;
    if (arity(msg) == 5 && is_atom(el(msg, 0), "DOWN")) {
        for (i = 0; i < NSVCS && pids[i] != el(msg, 3); i++)
            ;
    } else if (arity(msg) == 2 && is_atom(el(msg, 0), "$gd_keep") && term_is_small(el(msg, 1))) {
        i = (size_t)term_small_value(el(msg, 1));
    }
    if (i >= NSVCS)
        return 0;
    int64_t window = term_small_value(el(*state, 1)), n = term_small_value(el(*state, 2)) + 1;
    int64_t now = now_ms();
    if (now - window >= 1000) {
        window = now;
        n = 1;
    }
    int rc = 0;
    term_t holder = sched_whereis(heap_atom(svcs[i].name));
    if (term_is_pid(holder)) {
        cluster_log("service %s: its name is another process's now; not restarted", svcs[i].name);
        pids[i] = holder;
    } else if (n > KEEP_BURST) {
        term_t again, items[2] = {heap_atom("$gd_keep"), term_make_small((int64_t)i)};
        rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &again);
        if (rc == 0)
            rc = sched_send_after(ctx, KEEP_PAUSE_MS, sched_self(ctx), again, NULL);
    } else {
        rc = keep_start(ctx, i, &pids[i]);
    }
    return rc == 0 ? keeper_state(ctx, pids, window, n, state) : rc;
}

static const sched_behaviour_t keeper_beh = {keeper_init, keeper_handle, NULL, NULL};

int cluster_services_start(term_t *events)
{
    int erc = sched_spawn(NULL, &events_beh, TERM_NIL, events);
    if (erc == 0)
        erc = cluster_global_start();
    if (erc < 0)
        return erc;
    static const struct {
        const char *m, *f;
        unsigned a;
        cluster_rpc_fn fn;
    } bifs[] = {
        {"girder", "echo", 1, bif_echo},
        {"erlang", "node", 0, bif_node},
        {"erlang", "nodes", 0, bif_nodes},
        {"erlang", "nodes", 1, bif_nodes_of},
        {"erlang", "whereis", 1, bif_whereis},
        {"girder", "spawn_echo", 0, bif_spawn_echo},
        {"girder", "watch", 2, bif_watch},
        {"erlang", "system_info", 1, bif_system_info},
        {"girder", "info", 0, bif_info},
        {"girder", "send", 2, bif_send},
        {"girder", "watch_nodes", 2, bif_watch_nodes},
    };
    for (size_t i = 0; i < sizeof bifs / sizeof bifs[0]; i++) {
        int rc = cluster_rpc_register(bifs[i].m, bifs[i].f, bifs[i].a, bifs[i].fn);
        if (rc < 0)
            return rc;
    }
    term_t keeper;
    int rc = sched_spawn(NULL, &keeper_beh, TERM_NIL, &keeper);
    if (rc < 0)
        return rc;
    /* Wait until the names are registered: a peer may ask for them at once. */
    for (int tries = 0; tries < 1000; tries++) {
        bool all = true;
        for (size_t i = 0; i < NSVCS; i++)
            all = all && term_is_pid(sched_whereis(heap_atom(svcs[i].name)));
        if (all)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return GD_ESYSTEM_LIMIT;
}

/* ---- control messages from peers ---- */

/* Sends control {op, a, b, d} + payload back on c. */
static int reply4(conn_t *c, int op, term_t a, term_t b, term_t d, term_t payload)
{
    term_t ctl[5] = {heap_make_header(HDR_TUPLE, 4), term_make_small(op), a, b, d};
    return cluster_conn_send(c, term_make_boxed(ctl), payload);
}

/* Delivers a message locally; sends to dead pids or unknown names are
 * dropped silently, as in Erlang. */
static int deliver(heap_t *h, term_t to, term_t msg)
{
    if (!term_is_local_pid(to) && !term_is_atom(to) && !term_is_local_ref(to))
        return term_is_pid(to) ? 0 : DIST_EPROTO;
    /* A big frame was decoded straight into message fragments (node.c):
     * they become the message as they are, not copied again. */
    int rc = (h->gc_flags & HEAP_GCF_FRAGS_ONLY) ? sched_send_built(to, heap_msg_build_take(h), msg)
                                                 : sched_send(NULL, to, msg);
    return rc == SCHED_ENOPROC || rc == GD_EBADARG ? 0 : rc;
}

/* The DOWN (monitor, flag 2) or exit (link, flag 1) an erpc process
 * ends with, carrying reason; arg is its spawn argument (erpc_init). */
static int erpc_send_end(sched_ctx_t *ctx, term_t arg, term_t reason)
{
    term_t node_atom = el(arg, 0), req_id = el(arg, 1), from = el(arg, 2);
    int64_t flags = term_small_value(el(arg, 3));
    term_t self = sched_self(ctx);
    if (flags & 2) {
        term_t down[5] = {heap_make_header(HDR_TUPLE, 4),
                          term_make_small(DOP_PAYLOAD_MONITOR_P_EXIT), self, from, req_id};
        return cluster_send_own_control(node_atom, term_make_boxed(down), reason);
    }
    if (flags & 1) {
        term_t ex[4] = {heap_make_header(HDR_TUPLE, 3), term_make_small(DOP_PAYLOAD_EXIT), self,
                        from};
        return cluster_send_own_control(node_atom, term_make_boxed(ex), reason);
    }
    return 0;
}

/* The process erpc's spawn_request creates: it answers SPAWN_REPLY
 * first (nothing from it may precede that), runs the function, and ends;
 * the result travels as its exit reason in the DOWN (or link exit) the
 * caller asked for (docs/protocol.md 5.4).  Its argument is {Node, ReqId, From,
 * Flags, Ref | none, M, F, Args}.  The state holds that argument until the
 * result has gone out (then []): should the process end otherwise (out of
 * memory in the function or here), erpc_terminate sends the DOWN with
 * its exit reason, or the caller, with no timeout, would wait for ever. */
static int erpc_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    heap_t *h = sched_heap(ctx);
    *state = arg;
    term_t node_atom = el(arg, 0), req_id = el(arg, 1), from = el(arg, 2), ref = el(arg, 4);
    term_t reply[6] = {heap_make_header(HDR_TUPLE, 5),
                       term_make_small(DOP_SPAWN_REPLY),
                       req_id,
                       from,
                       el(arg, 3),
                       sched_self(ctx)};
    /* The reply and the DOWN (or exit) below are the process's own: a
     * quick function's leave in one write at the end of its run. */
    int rc = cluster_send_own_control(node_atom, term_make_boxed(reply), TERM_NONE);
    if (rc < 0) {
        *state = TERM_NIL; /* no SPAWN_REPLY: no DOWN may follow */
        return rc;
    }
    term_t kind, value, stack;
    rc = rpc_run(h, el(arg, 5), el(arg, 6), el(arg, 7), &kind, &value, &stack);
    if (rc < 0)
        return rc;
    term_t reason = heap_atom("normal");
    if (!is_atom(ref, "none")) {
        term_t items[4] = {ref, kind, value, stack};
        rc = heap_make_tuple_from(h, is_atom(kind, "error") ? 4 : 3, items, &reason);
        if (rc < 0)
            return rc;
    }
    rc = erpc_send_end(ctx, arg, reason);
    if (rc < 0)
        return rc;
    *state = TERM_NIL;
    return sched_exit(ctx, heap_atom("normal"));
}

static void erpc_terminate(sched_ctx_t *ctx, term_t reason, term_t state)
{
    if (term_is_tuple(state))
        (void)erpc_send_end(ctx, state, reason);
}

static const sched_behaviour_t erpc_beh = {erpc_init, never_handle, erpc_terminate, NULL};

/* Process bodies a peer may start with spawn_request (erlang:spawn/4,
 * spawn_link/4, spawn_monitor/4, spawn_request/5 from OTP): the
 * behaviour's init gets the argument list. */
static const struct spawnable {
    const char *m, *f;
    unsigned arity;
    const sched_behaviour_t *beh;
} spawnables[] = {
    /* girder:echo_loop(): an echo process, as girder:spawn_echo/0 makes */
    {"girder", "echo_loop", 0, &echo_beh},
};

static const sched_behaviour_t *spawnable_find(term_t mfa, long nargs)
{
    for (size_t i = 0; i < sizeof spawnables / sizeof spawnables[0]; i++)
        if (is_atom(el(mfa, 0), spawnables[i].m) && is_atom(el(mfa, 1), spawnables[i].f) &&
            nargs == (long)spawnables[i].arity)
            return spawnables[i].beh;
    return NULL;
}

/* Starts body for a peer's spawn_request: SPAWN_REPLY with the pid first
 * (nothing the peer hears from the new process may precede it), then the
 * link and the monitor it asked for, set up by the connection's
 * controller as for the peer's own LINK and MONITOR_P (the monitor's
 * reference is ReqId, as OTP's spawn_request). */
static int spawn_body(conn_t *c, heap_t *h, const sched_behaviour_t *body, term_t req_id,
                      term_t from, bool link, bool monitor, term_t args)
{
    term_t pid;
    int rc = sched_spawn(NULL, body, args, &pid);
    term_t flags = term_make_small((link ? 1 : 0) | (monitor ? 2 : 0));
    term_t ctl5[6] = {heap_make_header(HDR_TUPLE, 5),
                      term_make_small(DOP_SPAWN_REPLY),
                      req_id,
                      from,
                      rc == 0 ? flags : term_make_small(0),
                      rc == 0 ? pid : heap_atom("system_limit")};
    if (rc < 0 && rc != GD_ENOMEM && rc != SCHED_ETOO_MANY)
        return rc;
    rc = cluster_conn_send(c, term_make_boxed(ctl5), TERM_NONE);
    if (rc < 0 || !term_is_pid(ctl5[5]))
        return rc;
    if (link)
        rc = to_ctrl_sync(c, h, "$gd_link", from, pid, TERM_NONE);
    if (rc == 0 && monitor)
        rc = monitor_for_peer(c, h, from, pid, req_id);
    return rc;
}

/* SPAWN_REQUEST {29, ReqId, From, GL, {M, F, A}, Opts} + Args.  erpc's
 * {erpc, execute_call, 4} and {erpc, execute_cast, 3} run a registered C
 * function; the spawned process's exit reason carries the result
 * (docs/protocol.md 5.4): SPAWN_REPLY with a pid first, then the DOWN (with
 * ReqId as the monitor reference) when monitor was asked. */
static int spawn_request(conn_t *c, heap_t *h, term_t ctl, term_t args)
{
    term_t req_id = el(ctl, 1), from = el(ctl, 2), mfa = el(ctl, 4), opts = el(ctl, 5);
    if (!term_is_pid(from) || arity(mfa) != 3 || list_length(opts) < 0 || list_length(args) < 0)
        return DIST_EPROTO;
    bool monitor = false, link = false;
    for (term_t o = opts; term_is_list(o); o = term_cdr(o)) {
        monitor = monitor || is_atom(term_car(o), "monitor");
        link = link || is_atom(term_car(o), "link");
    }
    bool call = is_atom(el(mfa, 0), "erpc") && is_atom(el(mfa, 1), "execute_call") &&
                list_length(args) == 4;
    bool cast = is_atom(el(mfa, 0), "erpc") && is_atom(el(mfa, 1), "execute_cast") &&
                list_length(args) == 3;
    term_t flags = term_make_small((link ? 1 : 0) | (monitor ? 2 : 0));
    const sched_behaviour_t *body = call || cast ? NULL : spawnable_find(mfa, list_length(args));
    if (body != NULL)
        return spawn_body(c, h, body, req_id, from, link, monitor, args);
    if (!call && !cast) {
        /* Closures and other functions: girder runs no Erlang code. */
        term_t ctl5[6] = {heap_make_header(HDR_TUPLE, 5),
                          term_make_small(DOP_SPAWN_REPLY),
                          req_id,
                          from,
                          term_make_small(0),
                          heap_atom("notsup")};
        return cluster_conn_send(c, term_make_boxed(ctl5), TERM_NONE);
    }
    /* The call runs in the new process, off the loop thread: {Node,
     * ReqId, From, Flags, Ref | none, M, F, Args}. */
    term_t a = args, ref = heap_atom("none");
    if (call) {
        ref = term_car(a);
        a = term_cdr(a);
    }
    term_t arg, pid;
    term_t items[8] = {cluster_conn_node(c),
                       req_id,
                       from,
                       flags,
                       ref,
                       term_car(a),
                       term_car(term_cdr(a)),
                       term_car(term_cdr(term_cdr(a)))};
    int rc = heap_make_tuple_from(h, 8, items, &arg);
    if (rc == 0)
        rc = sched_spawn(NULL, &erpc_beh, arg, &pid);
    if (rc == GD_ENOMEM || rc == SCHED_ETOO_MANY) {
        term_t ctl5[6] = {heap_make_header(HDR_TUPLE, 5),
                          term_make_small(DOP_SPAWN_REPLY),
                          req_id,
                          from,
                          term_make_small(0),
                          heap_atom("system_limit")};
        return cluster_conn_send(c, term_make_boxed(ctl5), TERM_NONE);
    }
    return rc;
}

int cluster_dispatch(conn_t *c, heap_t *h, const dist_msg_t *m)
{
    term_t ctl = m->control;
    switch (m->op) {
    case DOP_SEND:
    case DOP_SEND_TT:
    case DOP_SEND_SENDER:
    case DOP_SEND_SENDER_TT:
        return deliver(h, el(ctl, 2), m->payload);
    case DOP_REG_SEND:
    case DOP_REG_SEND_TT:
        if (!term_is_atom(el(ctl, 3)))
            return DIST_EPROTO;
        return deliver(h, el(ctl, 3), m->payload);
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT:
        /* {33, From, Alias}: sched drops it unless Alias is an active
         * alias of a live process here. */
        if (!term_is_ref(el(ctl, 2)))
            return DIST_EPROTO;
        return term_is_local_ref(el(ctl, 2)) ? deliver(h, el(ctl, 2), m->payload) : 0;
    case DOP_LINK:
        /* {1, From, To} */
        if (!term_is_pid(el(ctl, 1)) || !term_is_pid(el(ctl, 2)))
            return DIST_EPROTO;
        return to_ctrl_sync(c, h, "$gd_link", el(ctl, 1), el(ctl, 2), TERM_NONE);
    case DOP_UNLINK_ID: {
        /* {35, Id, From, To}: acknowledge before anything else. */
        int rc = reply4(c, DOP_UNLINK_ID_ACK, el(ctl, 1), el(ctl, 3), el(ctl, 2), TERM_NONE);
        return rc < 0 ? rc : to_ctrl(c, h, "$gd_unlink", el(ctl, 2), el(ctl, 3), TERM_NONE);
    }
    case DOP_UNLINK_ID_ACK:
        /* {36, Id, From, To}: the peer applied our unlink. */
        return to_ctrl(c, h, "$gd_unlink_ack", el(ctl, 1), el(ctl, 2), el(ctl, 3));
    case DOP_MONITOR_P:
        /* {19, From, ToProc, Ref} */
        if (!term_is_pid(el(ctl, 1)) || !term_is_ref(el(ctl, 3)))
            return DIST_EPROTO;
        if (term_is_local_pid(el(ctl, 2)) || term_is_atom(el(ctl, 2)))
            return monitor_for_peer(c, h, el(ctl, 1), el(ctl, 2), el(ctl, 3));
        return to_ctrl_sync(c, h, "$gd_monitor", el(ctl, 1), el(ctl, 2), el(ctl, 3));
    case DOP_DEMONITOR_P:
        /* {20, From, ToProc, Ref} */
        return to_ctrl(c, h, "$gd_demonitor", el(ctl, 1), el(ctl, 3), TERM_NONE);
    case DOP_EXIT:
    case DOP_EXIT_TT:
    case DOP_PAYLOAD_EXIT:
    case DOP_PAYLOAD_EXIT_TT: {
        /* A link exit: only for a link the controller holds. */
        term_t reason = m->payload != TERM_NONE ? m->payload : el(ctl, arity(ctl) - 1);
        term_t msg, items[4] = {heap_atom("$gd_exit"), el(ctl, 1), el(ctl, 2), reason};
        int rc = heap_make_tuple_from(h, 4, items, &msg);
        if (rc == 0)
            rc = sched_send(NULL, cluster_conn_controller(c), msg);
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    case DOP_EXIT2:
    case DOP_EXIT2_TT:
    case DOP_PAYLOAD_EXIT2:
    case DOP_PAYLOAD_EXIT2_TT: {
        term_t to = el(ctl, 2);
        term_t reason = m->payload != TERM_NONE ? m->payload : el(ctl, arity(ctl) - 1);
        if (!term_is_local_pid(to))
            return term_is_pid(to) ? 0 : DIST_EPROTO;
        int rc = sched_exit_pid(NULL, to, reason);
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    case DOP_SPAWN_REQUEST:
    case DOP_SPAWN_REQUEST_TT:
        return spawn_request(c, h, ctl, m->payload);
    case DOP_SPAWN_REPLY:
    case DOP_SPAWN_REPLY_TT:
        /* {31, ReqId, To, Flags, Result}: a pid is a spawn that worked,
         * which erpc's {reply, error_only} keeps quiet about; an error
         * atom ends the request (cluster_spawn_request).  Replies for no
         * request of ours are dropped by the controller. */
        if (term_is_pid(el(ctl, 4)) || !term_is_local_ref(el(ctl, 1)))
            return 0;
        return to_ctrl(c, h, "$gd_spawn_reply", el(ctl, 1), el(ctl, 4), TERM_NONE);
    case DOP_MONITOR_P_EXIT:
    case DOP_PAYLOAD_MONITOR_P_EXIT: {
        /* {21, FromProc, To, Ref, Reason} / {28, FromProc, To, Ref} + Reason */
        term_t reason = m->payload != TERM_NONE ? m->payload : el(ctl, 4);
        return to_ctrl(c, h, "$gd_down", el(ctl, 3), reason, TERM_NONE);
    }
    default:
        /* Group leaders, the obsolete UNLINK: nothing here depends on
         * them. */
        return 0;
    }
}
