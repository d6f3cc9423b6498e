/*
 * global.c — girder's global registry (design.md, "global registry"):
 * names registered on any girder node resolve on every connected girder
 * node, and a send to a name goes to its pid wherever it lives.
 *
 * Not OTP's global protocol (protocol.md 5.1: locker, exchange, resolve):
 * girder nodes replicate among themselves through a `girder_global`
 * process on each node, and OTP nodes reach the registry through rpc
 * (girder:global_register/2, global_whereis/1, global_send/2, ...).
 *
 * Replication.  Every node keeps a full replica (the table below, read
 * without messaging by whereis and send).  A registration is checked and
 * made locally, then announced to every connected node's girder_global;
 * a node that comes up is sent every name whose pid lives here (global's
 * exchange), and a node that goes down takes its pids' names with it.
 * The local girder_global monitors the local pids that hold names and
 * announces their unregistration when they die.  Two nodes registering
 * one name at once keep, everywhere, the registration whose pid is the
 * smallest in term order (global would kill one of them; here the other
 * simply loses the name), so the replicas converge.
 *
 * The table holds each pid as its ETF encoding (a remote pid is a boxed
 * term and has no heap of its own here), decoded onto the reader's heap.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct global_entry {
    term_t name;      /* atom */
    term_t node;      /* the pid's node atom */
    uint8_t *pid_etf; /* 131-prefixed encoding of the pid */
    size_t pid_len;
} global_entry_t;

static struct global_registry {
    pthread_mutex_t lock;
    global_entry_t *v;
    size_t n, cap;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Caps the table: names come from peers too. */
#define GLOBAL_NAMES_MAX 1000000

static size_t find_locked(term_t name)
{
    for (size_t i = 0; i < reg.n; i++)
        if (reg.v[i].name == name)
            return i;
    return reg.n;
}

static int decode_pid(heap_t *h, const global_entry_t *e, term_t *out)
{
    size_t used;
    return etf_decode(h, e->pid_etf, e->pid_len, NULL, out, &used, NULL);
}

static void remove_at_locked(size_t i)
{
    free(reg.v[i].pid_etf);
    reg.v[i] = reg.v[--reg.n];
}

static term_t pid_node(term_t pid)
{
    heap_ident_t id;
    heap_ident(pid, &id);
    return id.node;
}

enum put_result { PUT_ADDED, PUT_SAME, PUT_TAKEN, PUT_REPLACED };

/* Inserts name -> pid.  With resolve, a different holder loses to the
 * smaller pid (term order); without, the name stays taken.  h: scratch
 * room for decoding the current holder. */
static int put(heap_t *h, term_t name, term_t pid, bool resolve, enum put_result *res)
{
    etf_buf_t b = {0};
    int rc = etf_encode(pid, NULL, &b);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&reg.lock);
    size_t i = find_locked(name);
    if (i < reg.n) {
        term_t cur;
        rc = decode_pid(h, &reg.v[i], &cur);
        int order = 0;
        if (rc == 0)
            rc = heap_compare_checked(pid, cur, true, &order);
        if (rc == 0 && order == 0) {
            *res = PUT_SAME;
        } else if (rc == 0 && resolve && order < 0) {
            free(reg.v[i].pid_etf);
            reg.v[i].pid_etf = b.data;
            reg.v[i].pid_len = b.len;
            reg.v[i].node = pid_node(pid);
            b.data = NULL;
            *res = PUT_REPLACED;
        } else if (rc == 0) {
            *res = PUT_TAKEN;
        }
    } else if (reg.n == GLOBAL_NAMES_MAX) {
        rc = GD_ESYSTEM_LIMIT;
    } else {
        if (reg.n == reg.cap) {
            size_t cap = reg.cap ? 2 * reg.cap : 64;
            global_entry_t *v = realloc(reg.v, cap * sizeof *v);
            if (v == NULL)
                rc = GD_ENOMEM;
            else {
                reg.v = v;
                reg.cap = cap;
            }
        }
        if (rc == 0) {
            reg.v[reg.n++] = (global_entry_t){name, pid_node(pid), b.data, b.len};
            b.data = NULL;
            *res = PUT_ADDED;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    etf_buf_free(&b);
    return rc;
}

/* Removes name if pid holds it (pid TERM_NONE: whoever holds it). */
static int drop(heap_t *h, term_t name, term_t pid, bool *removed)
{
    int rc = 0;
    *removed = false;
    pthread_mutex_lock(&reg.lock);
    size_t i = find_locked(name);
    if (i < reg.n) {
        term_t cur;
        int order = 0;
        if (pid != TERM_NONE) {
            rc = decode_pid(h, &reg.v[i], &cur);
            if (rc == 0)
                rc = heap_compare_checked(pid, cur, true, &order);
        }
        if (rc == 0 && order == 0) {
            remove_at_locked(i);
            *removed = true;
        }
    }
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

static void drop_node(term_t node_atom)
{
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n;)
        if (reg.v[i].node == node_atom)
            remove_at_locked(i);
        else
            i++;
    pthread_mutex_unlock(&reg.lock);
}

/* [{Name, Pid}] of the names whose pid is on node_atom (TERM_NONE: all). */
static int names_list(heap_t *h, term_t node_atom, term_t *out)
{
    int rc = 0;
    term_t list = TERM_NIL;
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n && rc == 0; i++) {
        if (node_atom != TERM_NONE && reg.v[i].node != node_atom)
            continue;
        term_t pid, *e, pair;
        rc = decode_pid(h, &reg.v[i], &pid);
        if (rc == 0)
            rc = heap_make_tuple(h, 2, &e, &pair);
        if (rc == 0) {
            e[0] = reg.v[i].name;
            e[1] = pid;
            rc = heap_cons(h, pair, list, &list);
        }
    }
    pthread_mutex_unlock(&reg.lock);
    *out = list;
    return rc;
}

/* ---- the girder_global process ---- */

static term_t tup(heap_t *h, size_t n, const term_t *items, int *rc)
{
    term_t *e, t = TERM_NIL;
    if (*rc == 0)
        *rc = heap_make_tuple(h, n, &e, &t);
    if (*rc == 0)
        memcpy(e, items, n * sizeof *items);
    return t;
}

/* {'$gd_global', Op, Arg1, Arg2} to every connected node's girder_global
 * (OTP nodes have none and drop it). */
static int announce(sched_ctx_t *ctx, const char *op, term_t a, term_t b, term_t only_node)
{
    heap_t *h = sched_heap(ctx);
    term_t nodes = TERM_NIL;
    int rc = only_node != TERM_NONE ? heap_cons(h, only_node, TERM_NIL, &nodes)
                                    : cluster_nodes(h, &nodes);
    term_t items[4] = {heap_atom("$gd_global"), heap_atom(op), a, b};
    term_t msg = tup(h, 4, items, &rc);
    for (term_t l = nodes; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        term_t to_items[2] = {heap_atom("girder_global"), term_car(l)};
        term_t to = tup(h, 2, to_items, &rc);
        if (rc == 0)
            rc = sched_send(ctx, to, msg);
        if (rc == SCHED_ENOPROC)
            rc = 0;
    }
    return rc;
}

static int global_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    *state = TERM_NIL;
    int rc = sched_register(ctx, heap_atom("girder_global"));
    return rc == 0 ? cluster_monitor_nodes(ctx, true) : rc;
}

static bool is(term_t t, const char *name)
{
    return term_is_atom(t) && t == heap_atom(name);
}

/* A peer's registration (or our own, made by cluster_global_register). */
static int apply_register(sched_ctx_t *ctx, term_t name, term_t pid, bool from_peer)
{
    heap_t *h = sched_heap(ctx);
    if (!term_is_atom(name) || !term_is_pid(pid))
        return 0;
    enum put_result res = PUT_TAKEN;
    int rc = from_peer ? put(h, name, pid, true, &res) : 0;
    if (rc < 0)
        return rc == GD_ESYSTEM_LIMIT ? 0 : rc;
    if (!from_peer || res == PUT_ADDED || res == PUT_REPLACED) {
        if (term_is_local_pid(pid)) {
            /* A local holder: its death unregisters the name. */
            term_t ref;
            rc = sched_monitor(ctx, pid, &ref);
            if (rc == SCHED_ENOPROC)
                rc = 0;
        }
    }
    return rc;
}

static int global_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    heap_t *h = sched_heap(ctx);
    if (!term_is_tuple(msg))
        return 0;
    size_t n = term_tuple_arity(msg);
    const term_t *e = term_tuple_elems(msg);
    bool removed;
    int rc = 0;
    if (n == 2 && is(e[0], "nodeup")) {
        /* global's exchange: the new node learns the names held here
         * (nothing is sent when there are none: an OTP peer, which has no
         * girder_global, would only drop it). */
        term_t mine;
        rc = names_list(h, heap_node_name(), &mine);
        return rc == 0 && term_is_list(mine) ? announce(ctx, "names", mine, TERM_NIL, e[1]) : rc;
    }
    if (n == 2 && is(e[0], "nodedown")) {
        drop_node(e[1]);
        return 0;
    }
    if (n == 5 && is(e[0], "DOWN")) {
        /* A local holder died: its names go, here and everywhere. */
        term_t mine;
        rc = names_list(h, heap_node_name(), &mine);
        for (term_t l = mine; rc == 0 && term_is_list(l); l = term_cdr(l)) {
            term_t pair = term_car(l), name = term_tuple_elems(pair)[0];
            if (term_tuple_elems(pair)[1] != e[3])
                continue;
            rc = drop(h, name, e[3], &removed);
            if (rc == 0 && removed)
                rc = announce(ctx, "unregister", name, e[3], TERM_NONE);
        }
        return rc;
    }
    if (n != 4 || !is(e[0], "$gd_global"))
        return 0;
    if (is(e[1], "local_register")) {
        /* From cluster_global_register on this node: monitor, announce. */
        rc = apply_register(ctx, e[2], e[3], false);
        return rc == 0 ? announce(ctx, "register", e[2], e[3], TERM_NONE) : rc;
    }
    if (is(e[1], "local_unregister"))
        return announce(ctx, "unregister", e[2], e[3], TERM_NONE);
    if (is(e[1], "register"))
        return apply_register(ctx, e[2], e[3], true);
    if (is(e[1], "unregister")) {
        rc = drop(h, e[2], e[3], &removed);
        return rc;
    }
    if (is(e[1], "names")) {
        /* A peer's names (its answer to our nodeup), [{Name, Pid}]. */
        for (term_t l = e[2]; rc == 0 && term_is_list(l); l = term_cdr(l)) {
            term_t pair = term_car(l);
            if (term_is_tuple(pair) && term_tuple_arity(pair) == 2)
                rc =
                    apply_register(ctx, term_tuple_elems(pair)[0], term_tuple_elems(pair)[1], true);
        }
        return rc;
    }
    return 0;
}

static const sched_behaviour_t global_beh = {global_init, global_handle, NULL, NULL};

/* ---- the API and the rpc built-ins ---- */

static int tell_local(term_t op, term_t name, term_t pid)
{
    term_t body[5] = {heap_make_header(HDR_TUPLE, 4), heap_atom("$gd_global"), op, name, pid};
    int rc = sched_send(NULL, heap_atom("girder_global"), term_make_boxed(body));
    return rc == SCHED_ENOPROC ? 0 : rc;
}

int cluster_global_register(heap_t *h, term_t name, term_t pid)
{
    if (!term_is_atom(name) || !term_is_pid(pid))
        return GD_EBADARG;
    enum put_result res;
    int rc = put(h, name, pid, false, &res);
    if (rc < 0)
        return rc;
    if (res == PUT_TAKEN)
        return SCHED_ENAME_TAKEN;
    return res == PUT_ADDED ? tell_local(heap_atom("local_register"), name, pid) : 0;
}

int cluster_global_unregister(heap_t *h, term_t name)
{
    term_t pid;
    int rc = cluster_global_whereis(h, name, &pid);
    if (rc < 0 || !term_is_pid(pid))
        return rc;
    bool removed;
    rc = drop(h, name, pid, &removed);
    return rc == 0 && removed ? tell_local(heap_atom("local_unregister"), name, pid) : rc;
}

int cluster_global_whereis(heap_t *h, term_t name, term_t *pid_out)
{
    int rc = 0;
    *pid_out = heap_atom("undefined");
    pthread_mutex_lock(&reg.lock);
    size_t i = find_locked(name);
    if (i < reg.n)
        rc = decode_pid(h, &reg.v[i], pid_out);
    pthread_mutex_unlock(&reg.lock);
    return rc;
}

int cluster_global_send(sched_ctx_t *ctx, heap_t *h, term_t name, term_t msg, term_t *pid_out)
{
    int rc = cluster_global_whereis(h, name, pid_out);
    if (rc < 0)
        return rc;
    if (!term_is_pid(*pid_out))
        return SCHED_ENOPROC;
    return sched_send(ctx, *pid_out, msg);
}

/* girder:global_register(Name, Pid) -> yes | no (global:register_name) */
static int bif_register(heap_t *h, term_t args, term_t *out)
{
    int rc = cluster_global_register(h, term_car(args), term_car(term_cdr(args)));
    if (rc < 0 && rc != SCHED_ENAME_TAKEN)
        return rc;
    *out = heap_atom(rc == 0 ? "yes" : "no");
    return 0;
}

/* girder:global_unregister(Name) -> ok */
static int bif_unregister(heap_t *h, term_t args, term_t *out)
{
    if (!term_is_atom(term_car(args)))
        return GD_EBADARG;
    *out = heap_atom("ok");
    return cluster_global_unregister(h, term_car(args));
}

/* girder:global_whereis(Name) -> Pid | undefined */
static int bif_whereis(heap_t *h, term_t args, term_t *out)
{
    return term_is_atom(term_car(args)) ? cluster_global_whereis(h, term_car(args), out)
                                        : GD_EBADARG;
}

/* girder:global_send(Name, Msg) -> Pid; badarg for a name nobody has
 * (global:send/2 exits with {badarg, {Name, Msg}}). */
static int bif_send(heap_t *h, term_t args, term_t *out)
{
    if (!term_is_atom(term_car(args)))
        return GD_EBADARG;
    int rc = cluster_global_send(NULL, h, term_car(args), term_car(term_cdr(args)), out);
    return rc == SCHED_ENOPROC ? GD_EBADARG : rc;
}

/* girder:global_names() -> [{Name, Pid}] */
static int bif_names(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    return names_list(h, TERM_NONE, out);
}

int cluster_global_start(void)
{
    static const struct {
        const char *f;
        unsigned a;
        cluster_rpc_fn fn;
    } bifs[] = {{"global_register", 2, bif_register},
                {"global_unregister", 1, bif_unregister},
                {"global_whereis", 1, bif_whereis},
                {"global_send", 2, bif_send},
                {"global_names", 0, bif_names}};
    for (size_t i = 0; i < sizeof bifs / sizeof bifs[0]; i++) {
        int rc = cluster_rpc_register("girder", bifs[i].f, bifs[i].a, bifs[i].fn);
        if (rc < 0)
            return rc;
    }
    term_t pid;
    return sched_spawn(NULL, &global_beh, TERM_NIL, &pid);
}

void cluster_global_clear(void)
{
    pthread_mutex_lock(&reg.lock);
    while (reg.n > 0)
        remove_at_locked(reg.n - 1);
    free(reg.v);
    reg.v = NULL;
    reg.cap = 0;
    pthread_mutex_unlock(&reg.lock);
}
