/*
 * services.c — what every node answers (docs/protocol.md §5):
 * the control messages arriving from peers (cluster_dispatch, on the loop
 * thread), the net_kernel, rex and echo processes, erpc's spawn_request,
 * and the table of C functions rpc:call and erpc:call may run.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

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
    return term_is_atom(t) && t == heap_atom(name);
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

static int tuple(heap_t *h, term_t *out, size_t n, const term_t *items)
{
    term_t *e;
    int rc = heap_make_tuple(h, n, &e, out);
    if (rc == 0)
        memcpy(e, items, n * sizeof *items);
    return rc;
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
    int rc = tuple(h, &frame, 4, items);
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
    int rc = tuple(sched_heap(ctx), &msg, 2, items);
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
    rc = tuple(h, &b[1], 2, a);
    b[0] = heap_atom("EXIT");
    if (rc == 0)
        rc = tuple(h, &c[1], 2, b);
    c[0] = heap_atom("badrpc");
    return rc == 0 ? tuple(h, out, 2, c) : rc;
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
            rc = tuple(h, &reply, 3, items);
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
        rc = tuple(h, &reply, 2, items);
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
    int rc = tuple(sched_heap(ctx), &reply, 2, items);
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

static int bif_nodes(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    return cluster_nodes(h, out);
}

static int bif_spawn_echo(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    (void)args;
    return sched_spawn(NULL, &echo_beh, TERM_NIL, out);
}

/* girder:watch(Pid, ReportTo): a process that links to and monitors Pid
 * (any node) and reports to ReportTo: {watch_exit, Pid, Reason} for the
 * link's exit signal and {watch_down, Pid, Reason} for the DOWN.  For
 * tests of links and monitors that girder processes set on others. */
static int watch_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    term_t ref;
    (void)sched_trap_exit(ctx, true);
    *state = arg;
    int rc = sched_link(ctx, el(arg, 0));
    if (rc == 0)
        rc = sched_monitor(ctx, el(arg, 0), &ref);
    return rc;
}

static int watch_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    const char *kind = arity(msg) == 3 && is_atom(el(msg, 0), "EXIT")   ? "watch_exit"
                       : arity(msg) == 5 && is_atom(el(msg, 0), "DOWN") ? "watch_down"
                                                                        : NULL;
    if (kind == NULL)
        return 0;
    term_t report, items[3] = {heap_atom(kind), el(*state, 0), el(msg, arity(msg) - 1)};
    int rc = tuple(sched_heap(ctx), &report, 3, items);
    return rc == 0 ? sched_send(ctx, el(*state, 1), report) : rc;
}

static const sched_behaviour_t watch_beh = {watch_init, watch_handle, NULL, NULL};

static int bif_watch(heap_t *h, term_t args, term_t *out)
{
    term_t pid = term_car(args), report = term_car(term_cdr(args)), arg;
    if (!term_is_pid(pid) || !term_is_pid(report))
        return GD_EBADARG;
    term_t items[2] = {pid, report};
    int rc = tuple(h, &arg, 2, items);
    return rc == 0 ? sched_spawn(NULL, &watch_beh, arg, out) : rc;
}

/* erlang:system_info/1 for the keys girder has: process_count,
 * schedulers, schedulers_online, atom_count, atom_limit; other keys raise
 * badarg, as unknown keys do in OTP. */
static int bif_system_info(heap_t *h, term_t args, term_t *out)
{
    (void)h;
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

int cluster_services_start(void)
{
    static const struct {
        const char *m, *f;
        unsigned a;
        cluster_rpc_fn fn;
    } bifs[] = {
        {"girder", "echo", 1, bif_echo},   {"erlang", "node", 0, bif_node},
        {"erlang", "nodes", 0, bif_nodes}, {"girder", "spawn_echo", 0, bif_spawn_echo},
        {"girder", "watch", 2, bif_watch}, {"erlang", "system_info", 1, bif_system_info},
        {"girder", "info", 0, bif_info},
    };
    for (size_t i = 0; i < sizeof bifs / sizeof bifs[0]; i++) {
        int rc = cluster_rpc_register(bifs[i].m, bifs[i].f, bifs[i].a, bifs[i].fn);
        if (rc < 0)
            return rc;
    }
    static const struct {
        const char *name;
        const sched_behaviour_t *beh;
    } svcs[] = {{"net_kernel", &net_kernel_beh}, {"rex", &rex_beh}, {"echo", &echo_beh}};
    for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++) {
        term_t pid, name = heap_atom(svcs[i].name);
        if (name == TERM_NONE)
            return GD_ENOMEM;
        int rc = sched_spawn(NULL, svcs[i].beh, name, &pid);
        if (rc < 0)
            return rc;
    }
    /* Wait until the names are registered: a peer may ask for them at once. */
    for (int tries = 0; tries < 1000; tries++) {
        bool all = true;
        for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++)
            all = all && term_is_pid(sched_whereis(heap_atom(svcs[i].name)));
        if (all)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return GD_ESYSTEM_LIMIT;
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

static bool eq(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == 0 && order == 0;
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
    int rc = tuple(sched_heap(ctx), &down, 5, items);
    if (rc == 0)
        rc = sched_send(ctx, el(entry, 2), down);
    return rc == SCHED_ENOPROC ? 0 : rc;
}

/* The process or name a remote monitor target stands for on the wire:
 * a pid, or the Name of {Name, Node}. */
static term_t wire_target(term_t item)
{
    return arity(item) == 2 ? el(item, 0) : item;
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
        rc = tuple(h, &entry, 3, items);
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
        for (term_t l = *state; term_is_list(l); l = term_cdr(l))
            if (link_by_local(term_car(l), el(msg, 1), TERM_NONE))
                return 0;
        return sched_unlink(ctx, el(msg, 1));
    }
    if (is_atom(tag, "$gd_out_monitor") && n == 4) {
        /* {_, Local, Item, Ref} */
        term_t items[4] = {ctrl_atom("out_mon"), el(msg, 3), el(msg, 1), el(msg, 2)};
        rc = tuple(h, &entry, 4, items);
        if (rc == 0)
            rc = heap_cons(h, entry, *state, state);
        return rc < 0 ? rc
                      : ctrl_send(ctx, DOP_MONITOR_P, el(msg, 1), wire_target(el(msg, 2)),
                                  el(msg, 3), TERM_NONE);
    }
    if (is_atom(tag, "$gd_out_demonitor") && n == 3) {
        rc = state_remove(h, state, out_mon_by_owner, el(msg, 1), el(msg, 2), &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        return ctrl_send(ctx, DOP_DEMONITOR_P, el(msg, 1), wire_target(el(found, 3)), el(found, 1),
                         TERM_NONE);
    }
    if (is_atom(tag, "$gd_down") && n == 3) {
        /* {_, Ref, Reason} from the peer's MONITOR_P_EXIT. */
        rc = state_remove(h, state, out_mon_by_ref, el(msg, 1), TERM_NONE, &found);
        if (rc < 0 || found == TERM_NONE)
            return rc;
        return send_down(ctx, found, el(msg, 2));
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
        /* Monitors of the peer's processes fire; links go with our exit. */
        for (term_t l = *state; term_is_list(l); l = term_cdr(l))
            if (is_atom(el(term_car(l), 0), "out_mon")) {
                int rc = send_down(ctx, term_car(l), ctrl_atom("noconnection"));
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
        rc = tuple(h, &entry, 5, items);
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
         * noproc (through the trapped EXIT below). */
        term_t items[3] = {ctrl_atom("link"), el(msg, 2), el(msg, 1)};
        rc = tuple(h, &entry, 3, items);
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
        rc = sched_exit_pid(ctx, el(msg, 2), el(msg, 3));
        return rc == SCHED_ENOPROC ? 0 : rc;
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
    int rc = tuple(h, &msg, d == TERM_NONE ? 3 : 4, items);
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
    int rc = tuple(h, &msg, n, items);
    if (rc == 0)
        rc = sched_send(NULL, cluster_conn_controller(c), msg);
    if (rc == 0)
        cluster_ctrl_wait(c, seq);
    return rc == SCHED_ENOPROC ? 0 : rc;
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
static int deliver(term_t to, term_t msg)
{
    if (!term_is_local_pid(to) && !term_is_atom(to))
        return term_is_pid(to) ? 0 : DIST_EPROTO;
    int rc = sched_send(NULL, to, msg);
    return rc == SCHED_ENOPROC || rc == GD_EBADARG ? 0 : rc;
}

/* The process erpc's spawn_request creates: it answers SPAWN_REPLY
 * first (nothing from it may precede that), runs the function, and ends;
 * the result travels as its exit reason in the DOWN (or link exit) the
 * caller asked for (docs/protocol.md 5.4).  Its argument is {Node, ReqId, From,
 * Flags, Ref | none, M, F, Args}. */
static int erpc_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)state;
    heap_t *h = sched_heap(ctx);
    term_t node_atom = el(arg, 0), req_id = el(arg, 1), from = el(arg, 2), ref = el(arg, 4);
    int64_t flags = term_small_value(el(arg, 3));
    term_t self = sched_self(ctx);
    term_t reply[6] = {heap_make_header(HDR_TUPLE, 5),
                       term_make_small(DOP_SPAWN_REPLY),
                       req_id,
                       from,
                       el(arg, 3),
                       self};
    int rc = cluster_send_control(node_atom, term_make_boxed(reply), TERM_NONE);
    if (rc < 0)
        return rc;
    term_t kind, value, stack;
    rc = rpc_run(h, el(arg, 5), el(arg, 6), el(arg, 7), &kind, &value, &stack);
    if (rc < 0)
        return rc;
    term_t reason = heap_atom("normal");
    if (!is_atom(ref, "none")) {
        term_t items[4] = {ref, kind, value, stack};
        rc = tuple(h, &reason, is_atom(kind, "error") ? 4 : 3, items);
        if (rc < 0)
            return rc;
    }
    if (flags & 2) {
        term_t down[5] = {heap_make_header(HDR_TUPLE, 4),
                          term_make_small(DOP_PAYLOAD_MONITOR_P_EXIT), self, from, req_id};
        rc = cluster_send_control(node_atom, term_make_boxed(down), reason);
    } else if (flags & 1) {
        term_t ex[4] = {heap_make_header(HDR_TUPLE, 3), term_make_small(DOP_PAYLOAD_EXIT), self,
                        from};
        rc = cluster_send_control(node_atom, term_make_boxed(ex), reason);
    }
    return rc < 0 ? rc : sched_exit(ctx, heap_atom("normal"));
}

static const sched_behaviour_t erpc_beh = {erpc_init, never_handle, NULL, NULL};

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
    if (!call && !cast) {
        /* Closures and plain spawn/4: girder runs no Erlang code. */
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
    int rc = tuple(h, &arg, 8, items);
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
        return deliver(el(ctl, 2), m->payload);
    case DOP_REG_SEND:
    case DOP_REG_SEND_TT:
        if (!term_is_atom(el(ctl, 3)))
            return DIST_EPROTO;
        return deliver(el(ctl, 3), m->payload);
    case DOP_ALIAS_SEND:
    case DOP_ALIAS_SEND_TT:
        /* girder processes have no aliases yet: nothing can match. */
        return 0;
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
    case DOP_MONITOR_P:
        /* {19, From, ToProc, Ref} */
        if (!term_is_pid(el(ctl, 1)) || !term_is_ref(el(ctl, 3)))
            return DIST_EPROTO;
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
        int rc = tuple(h, &msg, 4, items);
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
    case DOP_MONITOR_P_EXIT:
    case DOP_PAYLOAD_MONITOR_P_EXIT: {
        /* {21, FromProc, To, Ref, Reason} / {28, FromProc, To, Ref} + Reason */
        term_t reason = m->payload != TERM_NONE ? m->payload : el(ctl, 4);
        return to_ctrl(c, h, "$gd_down", el(ctl, 3), reason, TERM_NONE);
    }
    default:
        /* Spawn replies (girder sends no spawn requests), unlink acks
         * (girder forgets a link when it unlinks), group leaders, the
         * obsolete UNLINK: nothing here depends on them. */
        return 0;
    }
}
