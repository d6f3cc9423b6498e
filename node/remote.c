/*
 * remote.c — girder calling into other nodes (OTP or girder): rpc:call
 * through the peer's rex (girder_rpc_call), erpc:call through
 * spawn_request (girder_erpc_call), and the rpc built-ins that let a peer
 * make a girder node call out (girder:call_out/4, girder:rpc_out/6,
 * girder:erpc_out/6), which is how the interop tests drive girder -> OTP
 * calls from Erlang.
 */
#include <time.h>

#include "cluster.h"
#include "internal.h"

/* {badrpc, Reason} on h. */
static int badrpc(heap_t *h, term_t reason, term_t *out)
{
    term_t items[2] = {heap_atom("badrpc"), reason};
    return heap_make_tuple_from(h, 2, items, out);
}

int girder_rpc_call(sched_ctx_t *ctx, term_t node, term_t module, term_t function, term_t args,
                    int64_t timeout_ms, term_t *result_out)
{
    if (ctx == NULL || result_out == NULL)
        return GD_EINVAL;
    if (!term_is_atom(node) || !term_is_atom(module) || !term_is_atom(function) ||
        !(term_is_nil(args) || term_is_list(args)))
        return GD_EBADARG;
    heap_t *h = sched_heap(ctx);
    /* rex's handle_call({call, M, F, A, GroupLeader}, ...) (kernel's
     * rpc.erl, kept by OTP 25-28 for C nodes and old releases): the group
     * leader `user` is what C nodes send, output goes to the node's user. */
    term_t server, req;
    term_t sitems[2] = {heap_atom("rex"), node};
    term_t ritems[5] = {heap_atom("call"), module, function, args, heap_atom("user")};
    int rc = heap_make_tuple_from(h, 2, sitems, &server);
    if (rc == GD_OK)
        rc = heap_make_tuple_from(h, 5, ritems, &req);
    if (rc != GD_OK)
        return rc;
    term_t reply = TERM_NIL;
    rc = girder_call(ctx, server, req, timeout_ms, &reply);
    /* rpc:call's shapes for what went wrong on the way. */
    switch (rc) {
    case GD_OK:
        *result_out = reply;
        return GD_OK;
    case SCHED_ETIMEOUT:
        return badrpc(h, heap_atom("timeout"), result_out);
    case GIRDER_ENODEDOWN:
    case SCHED_ENOPROC: /* no rex there: rpc:call says nodedown too */
        return badrpc(h, heap_atom("nodedown"), result_out);
    case GIRDER_EEXIT: {
        term_t items[2] = {heap_atom("EXIT"), reply}, inner;
        rc = heap_make_tuple_from(h, 2, items, &inner);
        return rc == GD_OK ? badrpc(h, inner, result_out) : rc;
    }
    default:
        return rc;
    }
}

/* ---- erpc:call (girder_erpc_call) ---- */

/* The one answer of request *req (a rooted slot): the spawn error or the
 * DOWN (cluster_spawn_request). */
static bool pred_erpc_answer(term_t msg, void *arg)
{
    term_t req = *(const term_t *)arg;
    if (node_is_tagged(msg, 4, node_atom.spawn_reply))
        return term_tuple_elems(msg)[2] == ATOM_ERROR &&
               node_term_eq(term_tuple_elems(msg)[1], req);
    return node_is_tagged(msg, 5, ATOM_DOWN) && node_term_eq(term_tuple_elems(msg)[1], req);
}

/* {io_request, From, ReplyAs, Request}: the remote function printing to
 * its group leader, which spawn_request made the caller. */
static bool is_io_request(term_t msg)
{
    return node_is_tagged(msg, 4, node_atom.io_request) && term_is_pid(term_tuple_elems(msg)[1]);
}

static bool pred_erpc_answer_or_io(term_t msg, void *arg)
{
    return is_io_request(msg) || pred_erpc_answer(msg, arg);
}

/* The io protocol's answer, so that a remote function that prints goes on
 * instead of waiting for its group leader forever: output (put_chars,
 * requests) is taken and dropped (ok), input and the rest are refused as
 * an io server refuses what it does not know ({error, request}). */
static int answer_io_request(sched_ctx_t *ctx, term_t msg)
{
    const term_t *e = term_tuple_elems(msg);
    term_t req = e[3], reply = ATOM_OK;
    size_t n = term_is_tuple(req) ? term_tuple_arity(req) : 0;
    term_t tag = n ? term_tuple_elems(req)[0] : TERM_NIL;
    heap_t *h = sched_heap(ctx);
    int rc = GD_OK;
    if (tag != node_atom.put_chars && tag != node_atom.requests) {
        term_t items[2] = {ATOM_ERROR, node_atom.request};
        rc = heap_make_tuple_from(h, 2, items, &reply);
    }
    term_t from = e[1], out, items[3] = {node_atom.io_reply, e[2], reply};
    if (rc == GD_OK)
        rc = heap_make_tuple_from(h, 3, items, &out);
    if (rc == GD_OK)
        rc = sched_send(ctx, from, out);
    return rc == SCHED_ENOPROC ? GD_OK : rc;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool pred_nothing(term_t msg, void *arg)
{
    (void)msg;
    (void)arg;
    return false;
}

static void erpc_set(girder_erpc_result_t *out, enum girder_erpc_class cls, term_t value,
                     term_t stack)
{
    out->cls = cls;
    out->value = value;
    out->stack = stack;
}

/* erpc.erl's result/4 for the DOWN's reason: {Res, return | throw | exit,
 * V}, {Res, error, R, Stack}, {Res, error, {erpc, R}}, noconnection, or
 * anything else (the process was killed before it answered). */
static void erpc_map_down(term_t res, term_t reason, girder_erpc_result_t *out)
{
    size_t n = term_is_tuple(reason) ? term_tuple_arity(reason) : 0;
    const term_t *e = n ? term_tuple_elems(reason) : NULL;
    erpc_set(out, GIRDER_ERPC_SIGNAL, reason, TERM_NIL);
    if (reason == ATOM_NOCONNECTION)
        erpc_set(out, GIRDER_ERPC_ERPC, reason, TERM_NIL);
    if ((n != 3 && n != 4) || !node_term_eq(e[0], res))
        return;
    if (n == 3 && e[1] == node_atom.return_atom)
        erpc_set(out, GIRDER_ERPC_RETURN, e[2], TERM_NIL);
    else if (n == 3 && e[1] == node_atom.throw_atom)
        erpc_set(out, GIRDER_ERPC_THROW, e[2], TERM_NIL);
    else if (n == 3 && e[1] == node_atom.exit_atom)
        erpc_set(out, GIRDER_ERPC_EXIT, e[2], TERM_NIL);
    else if (n == 4 && e[1] == ATOM_ERROR)
        erpc_set(out, GIRDER_ERPC_ERROR, e[2], e[3]);
    else if (n == 3 && e[1] == ATOM_ERROR && node_is_tagged(e[2], 2, node_atom.erpc))
        erpc_set(out, GIRDER_ERPC_ERPC, term_tuple_elems(e[2])[1], TERM_NIL);
}

/* The answer message of request req (rooted: *req) into *out. */
static void erpc_map_answer(term_t res, term_t msg, girder_erpc_result_t *out)
{
    if (node_is_tagged(msg, 4, node_atom.spawn_reply))
        erpc_set(out, GIRDER_ERPC_ERPC, term_tuple_elems(msg)[3], TERM_NIL);
    else
        erpc_map_down(res, term_tuple_elems(msg)[4], out);
}

/* Sends the request and waits.  *res, *req, *args, *msg are rooted slots;
 * *req is the caller's one-message alias (removed here unless used up). */
static int erpc_request(sched_ctx_t *ctx, term_t node, term_t module, term_t function, term_t *args,
                        term_t *res, term_t *req, int64_t timeout_ms, term_t *msg,
                        girder_erpc_result_t *out)
{
    heap_t *h = sched_heap(ctx);
    /* erpc:execute_call(Res, M, F, Args)'s argument list. */
    term_t payload = TERM_NIL, mfa;
    term_t head[4] = {*args, function, module, *res};
    int rc = GD_OK;
    for (size_t i = 0; i < 4 && rc == GD_OK; i++)
        rc = heap_cons(h, head[i], payload, &payload);
    term_t items[3] = {node_atom.erpc, node_atom.execute_call, term_make_small(4)};
    if (rc == GD_OK)
        rc = heap_make_tuple_from(h, 3, items, &mfa);
    if (rc == GD_OK)
        rc = cluster_spawn_request(ctx, node, *req, mfa, payload);
    if (rc == DIST_ENOCONNECTION) {
        /* OTP: spawn_request's {spawn_reply, ReqId, error, noconnection}. */
        (void)sched_alias_remove(ctx, *req);
        erpc_set(out, GIRDER_ERPC_ERPC, ATOM_NOCONNECTION, TERM_NIL);
        return GD_OK;
    }
    if (rc != GD_OK) {
        /* The controller may know the request already (the send failed
         * after it was told): it forgets it; the first error is the one
         * reported. */
        (void)sched_alias_remove(ctx, *req);
        int abandon_rc = cluster_spawn_abandon(ctx, node, *req);
        (void)abandon_rc;
        return rc;
    }
    uint64_t deadline = timeout_ms < 0 ? 0 : mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int64_t left = timeout_ms;
        if (timeout_ms >= 0) {
            uint64_t now = mono_ms();
            left = now >= deadline ? 0 : (int64_t)(deadline - now);
        }
        rc = sched_receive_ref_wait(ctx, *req, pred_erpc_answer_or_io, req, left, msg);
        if (rc != GD_OK || !is_io_request(*msg))
            break;
        if ((rc = answer_io_request(ctx, *msg)) != GD_OK)
            break;
    }
    if (rc == SCHED_ETIMEOUT) {
        /* erpc's call_abandon: an alias still active means no answer has
         * been taken in, and none will be (the runtime drops it); a used
         * up one means the answer is queued already, and it counts. */
        if (sched_alias_remove(ctx, *req)) {
            erpc_set(out, GIRDER_ERPC_ERPC, node_atom.timeout, TERM_NIL);
            return cluster_spawn_abandon(ctx, node, *req);
        }
        rc = sched_receive_wait(ctx, pred_erpc_answer, req, 0, msg);
    }
    if (rc == GD_OK)
        erpc_map_answer(*res, *msg, out);
    return rc;
}

int girder_erpc_call(sched_ctx_t *ctx, term_t node, term_t module, term_t function, term_t args,
                     int64_t timeout_ms, girder_erpc_result_t *result_out)
{
    if (ctx == NULL || result_out == NULL)
        return GD_EINVAL;
    if (!term_is_atom(node) || !term_is_atom(module) || !term_is_atom(function))
        return GD_EBADARG;
    term_t l = args;
    while (term_is_list(l))
        l = term_cdr(l);
    if (!term_is_nil(l))
        return GD_EBADARG;
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    if (node == heap_node_name())
        return GD_EINVAL;
    term_t res = TERM_NIL, req = TERM_NIL, msg = TERM_NIL;
    term_t *slots[] = {&args, &res, &req, &msg};
    size_t pushed = 0;
    for (; pushed < sizeof slots / sizeof slots[0]; pushed++) {
        rc = sched_root_push(ctx, slots[pushed]);
        if (rc != GD_OK)
            goto out;
    }
    /* Res (erpc's result tag) first, then the alias: the alias marks the
     * queue's end, so the waits skip what was queued before the call. */
    rc = sched_make_ref(ctx, &res);
    if (rc == GD_OK)
        rc = sched_alias_create_opt(ctx, SCHED_ALIAS_REPLY, &req);
    if (rc != GD_OK)
        goto out;
    /* A behaviour process cannot wait: a receive that matches nothing and
     * does not wait tells (GD_EINVAL), before anything is sent. */
    term_t probe;
    rc = sched_receive_ref_wait(ctx, req, pred_nothing, NULL, 0, &probe);
    if (rc != SCHED_ETIMEOUT) {
        (void)sched_alias_remove(ctx, req);
        rc = rc == GD_OK ? GD_EINVAL : rc;
        goto out;
    }
    rc = erpc_request(ctx, node, module, function, &args, &res, &req, timeout_ms, &msg, result_out);
out:
    sched_root_pop(ctx, pushed);
    return rc;
}

int girder_erpc_result_term(heap_t *h, const girder_erpc_result_t *r, term_t *out)
{
    if (h == NULL || r == NULL || out == NULL)
        return GD_EINVAL;
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t cls, inner[3], reason = r->value;
    switch (r->cls) {
    case GIRDER_ERPC_RETURN:
    case GIRDER_ERPC_THROW:
        cls = r->cls == GIRDER_ERPC_RETURN ? node_atom.return_atom : node_atom.throw_atom;
        break;
    case GIRDER_ERPC_EXIT:
    case GIRDER_ERPC_SIGNAL:
        cls = node_atom.exit_atom;
        inner[0] = r->cls == GIRDER_ERPC_EXIT ? node_atom.exception : node_atom.signal;
        inner[1] = r->value;
        rc = heap_make_tuple_from(h, 2, inner, &reason);
        break;
    case GIRDER_ERPC_ERROR:
        cls = ATOM_ERROR;
        inner[0] = node_atom.exception;
        inner[1] = r->value;
        inner[2] = r->stack;
        rc = heap_make_tuple_from(h, 3, inner, &reason);
        break;
    case GIRDER_ERPC_ERPC:
        cls = ATOM_ERROR;
        inner[0] = node_atom.erpc;
        inner[1] = r->value;
        rc = heap_make_tuple_from(h, 2, inner, &reason);
        break;
    default:
        return GD_EINVAL;
    }
    term_t pair[2] = {cls, reason};
    return rc == GD_OK ? heap_make_tuple_from(h, 2, pair, out) : rc;
}

int girder_monitor_node(sched_ctx_t *ctx, term_t node, bool on)
{
    return ctx == NULL ? GD_EINVAL : cluster_monitor_node(ctx, node, on);
}

int girder_monitor_nodes(sched_ctx_t *ctx, bool on)
{
    return ctx == NULL ? GD_EINVAL : cluster_monitor_nodes(ctx, on);
}

/* ---- girder:call_out/4, girder:rpc_out/6 and girder:erpc_out/6 ----
 * Each spawns a coroutine process that makes the call and sends
 * {girder_out, Result} to ReplyTo, and returns that process's pid at once
 * (an rpc function cannot block).  call_out's Result: {ok, Reply} or
 * {error, timeout | noproc | nodedown | {exit, Reason} | Code}; rpc_out's:
 * what rpc:call would return. */

static int send_out(sched_ctx_t *ctx, term_t to, term_t result)
{
    term_t msg, items[2] = {heap_atom("girder_out"), result};
    int rc = heap_make_tuple_from(sched_heap(ctx), 2, items, &msg);
    if (rc == GD_OK)
        rc = sched_send(ctx, to, msg);
    return rc == SCHED_ENOPROC ? GD_OK : rc;
}

/* arg: {ReplyTo, Server, Request, Timeout} */
static int call_out_main(sched_ctx_t *ctx, term_t arg)
{
    int rc = sched_root_push(ctx, &arg);
    if (rc != GD_OK)
        return rc;
    const term_t *a = term_tuple_elems(arg);
    int64_t timeout = term_is_small(a[3]) ? term_small_value(a[3]) : -1;
    term_t reply = TERM_NIL;
    rc = girder_call(ctx, a[1], a[2], timeout, &reply);
    heap_t *h = sched_heap(ctx);
    term_t result, items[2] = {ATOM_OK, reply};
    if (rc == GD_OK) {
        rc = heap_make_tuple_from(h, 2, items, &result);
    } else {
        items[0] = ATOM_ERROR;
        if (rc == SCHED_ETIMEOUT)
            items[1] = heap_atom("timeout");
        else if (rc == SCHED_ENOPROC)
            items[1] = ATOM_NOPROC;
        else if (rc == GIRDER_ENODEDOWN)
            items[1] = heap_atom("nodedown");
        else if (rc == GIRDER_EEXIT) {
            term_t ex[2] = {heap_atom("exit"), reply};
            rc = heap_make_tuple_from(h, 2, ex, &items[1]);
            if (rc != GD_OK)
                goto out;
        } else
            items[1] = term_make_small(rc);
        rc = heap_make_tuple_from(h, 2, items, &result);
    }
    if (rc == GD_OK)
        rc = send_out(ctx, term_tuple_elems(arg)[0], result);
out:
    sched_root_pop(ctx, 1);
    return rc;
}

/* arg: {ReplyTo, Node, M, F, A, Timeout} */
static int rpc_out_main(sched_ctx_t *ctx, term_t arg)
{
    int rc = sched_root_push(ctx, &arg);
    if (rc != GD_OK)
        return rc;
    const term_t *a = term_tuple_elems(arg);
    int64_t timeout = term_is_small(a[5]) ? term_small_value(a[5]) : -1;
    term_t result = TERM_NIL;
    rc = girder_rpc_call(ctx, a[1], a[2], a[3], a[4], timeout, &result);
    if (rc == GD_OK)
        rc = send_out(ctx, term_tuple_elems(arg)[0], result);
    sched_root_pop(ctx, 1);
    return rc;
}

/* arg: {ReplyTo, Node, M, F, A, Timeout}; sends what
 * girder_erpc_result_term makes of the outcome. */
static int erpc_out_main(sched_ctx_t *ctx, term_t arg)
{
    int rc = sched_root_push(ctx, &arg);
    if (rc != GD_OK)
        return rc;
    const term_t *a = term_tuple_elems(arg);
    int64_t timeout = term_is_small(a[5]) ? term_small_value(a[5]) : -1;
    girder_erpc_result_t r;
    rc = girder_erpc_call(ctx, a[1], a[2], a[3], a[4], timeout, &r);
    term_t result = TERM_NIL;
    if (rc == GD_OK)
        rc = girder_erpc_result_term(sched_heap(ctx), &r, &result);
    if (rc == GD_OK)
        rc = send_out(ctx, term_tuple_elems(arg)[0], result);
    sched_root_pop(ctx, 1);
    return rc;
}

/* The argument list as a tuple, after checking ReplyTo is a pid. */
static int spawn_out(heap_t *h, term_t args, size_t n, sched_coro_fn fn, term_t *out)
{
    term_t items[6];
    size_t i = 0;
    for (term_t l = args; term_is_list(l) && i < n; l = term_cdr(l))
        items[i++] = term_car(l);
    if (i != n || !term_is_pid(items[0]))
        return GD_EBADARG;
    term_t arg;
    int rc = heap_make_tuple_from(h, n, items, &arg);
    return rc == GD_OK ? sched_spawn_coro(NULL, fn, arg, out) : rc;
}

static int bif_call_out(heap_t *h, term_t args, term_t *out)
{
    return spawn_out(h, args, 4, call_out_main, out);
}

static int bif_rpc_out(heap_t *h, term_t args, term_t *out)
{
    return spawn_out(h, args, 6, rpc_out_main, out);
}

static int bif_erpc_out(heap_t *h, term_t args, term_t *out)
{
    return spawn_out(h, args, 6, erpc_out_main, out);
}

int node_remote_builtins_register(void)
{
    int rc = cluster_rpc_register("girder", "call_out", 4, bif_call_out);
    if (rc == GD_OK)
        rc = cluster_rpc_register("girder", "rpc_out", 6, bif_rpc_out);
    return rc == GD_OK ? cluster_rpc_register("girder", "erpc_out", 6, bif_erpc_out) : rc;
}
