/*
 * remote.c — girder calling into other nodes (OTP or girder): rpc:call
 * through the peer's rex (girder_rpc_call), and the rpc built-ins that let
 * a peer make a girder node call out (girder:call_out/4, girder:rpc_out/6),
 * which is how the interop tests drive girder -> OTP calls from Erlang.
 */
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

int girder_monitor_node(sched_ctx_t *ctx, term_t node, bool on)
{
    return ctx == NULL ? GD_EINVAL : cluster_monitor_node(ctx, node, on);
}

int girder_monitor_nodes(sched_ctx_t *ctx, bool on)
{
    return ctx == NULL ? GD_EINVAL : cluster_monitor_nodes(ctx, on);
}

/* ---- girder:call_out/4 and girder:rpc_out/6 ----
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

int node_remote_builtins_register(void)
{
    int rc = cluster_rpc_register("girder", "call_out", 4, bif_call_out);
    return rc == GD_OK ? cluster_rpc_register("girder", "rpc_out", 6, bif_rpc_out) : rc;
}
