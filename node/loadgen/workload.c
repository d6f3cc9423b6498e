/*
 * workload.c — the workloads of `girder bench`: how one client builds a
 * request and judges the reply.  A new workload is one more row in
 * `workloads` below (the interface is lg_workload_t in loadgen.h).
 *
 * Replies carry the client's sequence number (echo's {Seq, Payload}; the
 * '$gen_call' tag for call, cast and rpc: gen_server replies {Tag, Reply}
 * whatever the tag is), so a reply to an earlier request is told apart
 * from the one awaited.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool tuple_of(term_t t, size_t n)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n;
}

static bool term_eq(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == 0 && order == 0;
}

/* A sequence number in a reply, or -1 for anything else. */
static int64_t seq_of(term_t t)
{
    return term_is_small(t) && term_small_value(t) >= 0 ? term_small_value(t) : -1;
}

/* The verdict on a reply numbered got when c awaits c->seq, judged ok by
 * `right` when it is the awaited one. */
static enum lg_verdict by_seq(const lg_client_t *c, int64_t got, bool right)
{
    if (got < 0)
        return LG_REPLY_UNRELATED;
    if ((uint64_t)got == c->seq && c->outstanding)
        return right ? LG_REPLY_OK : LG_REPLY_WRONG;
    return (uint64_t)got < c->seq ? LG_REPLY_LATE : LG_REPLY_WRONG;
}

int lg_atoms_init(lg_atoms_t *a)
{
    static const char *const names[] = {"timeout",
                                        "girder_bench_stop",
                                        "girder_bench_go",
                                        "echo_reply",
                                        "$gen_call",
                                        "$gen_cast",
                                        "put",
                                        "get",
                                        "ok",
                                        "call",
                                        "user",
                                        "badrpc",
                                        "girder_bench"};
    term_t *slots[] = {&a->timeout,  &a->stop,   &a->go,          &a->echo_reply, &a->gen_call,
                       &a->gen_cast, &a->put,    &a->get,         &a->ok,         &a->call,
                       &a->user,     &a->badrpc, &a->girder_bench};
    _Static_assert(sizeof names / sizeof names[0] == sizeof slots / sizeof slots[0],
                   "one name per atom");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*slots[i] = heap_atom(names[i])) == TERM_NONE)
            return GD_ENOMEM;
    return GD_OK;
}

int lg_send_call(sched_ctx_t *ctx, const lg_atoms_t *a, term_t name, term_t node, uint64_t seq,
                 term_t request)
{
    heap_t *h = sched_heap(ctx);
    term_t *e, from, msg, dest;
    int rc = heap_make_tuple(h, 2, &e, &from);
    if (rc != 0)
        return rc;
    e[0] = sched_self(ctx);
    e[1] = term_make_small((int64_t)seq);
    if ((rc = heap_make_tuple(h, 3, &e, &msg)) != 0)
        return rc;
    e[0] = a->gen_call;
    e[1] = from;
    e[2] = request;
    if ((rc = heap_make_tuple(h, 2, &e, &dest)) != 0)
        return rc;
    e[0] = name;
    e[1] = node;
    return sched_send(ctx, dest, msg);
}

/* ---- echo: {Self, {Seq, Payload}} to {echo, Target} -> {echo_reply, {Seq, Payload}} ---- */

static int echo_send(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload)
{
    heap_t *h = sched_heap(ctx);
    term_t *e, body, msg, dest;
    int rc = heap_make_tuple(h, 2, &e, &body);
    if (rc != 0)
        return rc;
    e[0] = term_make_small((int64_t)c->seq);
    e[1] = payload;
    if ((rc = heap_make_tuple(h, 2, &e, &msg)) != 0)
        return rc;
    e[0] = sched_self(ctx);
    e[1] = body;
    if ((rc = heap_make_tuple(h, 2, &e, &dest)) != 0)
        return rc;
    e[0] = s->p.server;
    e[1] = s->p.target;
    rc = sched_send(ctx, dest, msg);
    return rc < 0 ? rc : 1;
}

static enum lg_verdict echo_check(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                                  term_t msg, uint64_t *missing)
{
    (void)ctx, (void)missing;
    if (!tuple_of(msg, 2) || term_tuple_elems(msg)[0] != s->atom.echo_reply ||
        !tuple_of(term_tuple_elems(msg)[1], 2))
        return LG_REPLY_UNRELATED;
    const term_t *body = term_tuple_elems(term_tuple_elems(msg)[1]);
    int64_t got = seq_of(body[0]);
    return by_seq(c, got, (uint64_t)got == c->seq && term_eq(body[1], payload));
}

/* ---- call: alternately {put, Key, Payload} -> ok and {get, Key} -> {ok, Payload} ---- */

/* The client's key: {girder_bench, Node, Index}, unique across client
 * nodes. */
static term_t self_node_key(sched_ctx_t *ctx, const lg_share_t *s, lg_client_t *c, term_t *key)
{
    term_t *e;
    if (heap_make_tuple(sched_heap(ctx), 3, &e, key) != 0)
        return TERM_NONE;
    e[0] = s->atom.girder_bench;
    e[1] = heap_node_name();
    e[2] = term_make_small(c->index);
    return *key;
}

static int call_send(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload)
{
    term_t key, *e, req;
    bool put = c->seq % 2 == 1;
    if (self_node_key(ctx, s, c, &key) == TERM_NONE ||
        heap_make_tuple(sched_heap(ctx), put ? 3 : 2, &e, &req) != 0)
        return GD_ENOMEM;
    e[0] = put ? s->atom.put : s->atom.get;
    e[1] = key;
    if (put)
        e[2] = payload;
    int rc = lg_send_call(ctx, &s->atom, s->p.server, s->p.target, c->seq, req);
    return rc < 0 ? rc : 1;
}

static enum lg_verdict call_check(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                                  term_t msg, uint64_t *missing)
{
    (void)ctx, (void)s, (void)missing;
    if (!tuple_of(msg, 2))
        return LG_REPLY_UNRELATED;
    int64_t got = seq_of(term_tuple_elems(msg)[0]);
    term_t reply = term_tuple_elems(msg)[1];
    bool right;
    if (c->seq % 2 == 1) /* put */
        right = reply == s->atom.ok;
    else
        right = tuple_of(reply, 2) && term_tuple_elems(reply)[0] == s->atom.ok &&
                term_eq(term_tuple_elems(reply)[1], payload);
    return by_seq(c, got, right);
}

/* ---- cast: LG_CAST_WINDOW x {'$gen_cast', {put, Key, N}}, then {get, Key} -> {ok, Last} ----
 * The drain check: casts from one process arrive in the order sent, so
 * the call that follows a window finds the window's last value stored only
 * when the casts before it arrived; a smaller value counts the difference
 * as lost.  Cast N of window Seq stores (Seq - 1) * W + N. */

static int cast_send(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload)
{
    (void)payload;
    heap_t *h = sched_heap(ctx);
    for (uint64_t n = 1; n <= LG_CAST_WINDOW; n++) {
        term_t key, *e, put, msg, dest;
        if (self_node_key(ctx, s, c, &key) == TERM_NONE || heap_make_tuple(h, 3, &e, &put) != 0)
            return GD_ENOMEM;
        e[0] = s->atom.put;
        e[1] = key;
        e[2] = term_make_small((int64_t)((c->seq - 1) * LG_CAST_WINDOW + n));
        if (heap_make_tuple(h, 2, &e, &msg) != 0)
            return GD_ENOMEM;
        e[0] = s->atom.gen_cast;
        e[1] = put;
        if (heap_make_tuple(h, 2, &e, &dest) != 0)
            return GD_ENOMEM;
        e[0] = s->p.server;
        e[1] = s->p.target;
        int rc = sched_send(ctx, dest, msg);
        if (rc < 0)
            return rc;
    }
    term_t key, *e, get;
    if (self_node_key(ctx, s, c, &key) == TERM_NONE || heap_make_tuple(h, 2, &e, &get) != 0)
        return GD_ENOMEM;
    e[0] = s->atom.get;
    e[1] = key;
    int rc = lg_send_call(ctx, &s->atom, s->p.server, s->p.target, c->seq, get);
    return rc < 0 ? rc : LG_CAST_WINDOW;
}

static enum lg_verdict cast_check(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                                  term_t msg, uint64_t *missing)
{
    (void)ctx, (void)s, (void)payload;
    if (!tuple_of(msg, 2))
        return LG_REPLY_UNRELATED;
    int64_t got = seq_of(term_tuple_elems(msg)[0]);
    term_t reply = term_tuple_elems(msg)[1];
    enum lg_verdict v = by_seq(c, got, true);
    if (v != LG_REPLY_OK)
        return v;
    int64_t want = (int64_t)(c->seq * LG_CAST_WINDOW);
    int64_t stored = tuple_of(reply, 2) && term_tuple_elems(reply)[0] == s->atom.ok
                         ? seq_of(term_tuple_elems(reply)[1])
                         : -1;
    if (stored == want)
        return LG_REPLY_OK;
    int64_t first = want - LG_CAST_WINDOW;
    if (stored < first || stored > want)
        return LG_REPLY_WRONG; /* nothing of this window, or a foreign value */
    *missing = (uint64_t)(want - stored);
    return LG_REPLY_SHORT;
}

/* ---- rpc: {'$gen_call', {Self, Seq}, {call, M, F, Args, user}} to rex ---- */

static int rpc_send(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload)
{
    heap_t *h = sched_heap(ctx);
    term_t args = TERM_NIL, *e, req;
    if (s->p.mfa_arity == 1 && heap_cons(h, payload, TERM_NIL, &args) != 0)
        return GD_ENOMEM;
    if (heap_make_tuple(h, 5, &e, &req) != 0)
        return GD_ENOMEM;
    e[0] = s->atom.call;
    e[1] = s->p.mfa_m;
    e[2] = s->p.mfa_f;
    e[3] = args;
    e[4] = s->atom.user;
    int rc = lg_send_call(ctx, &s->atom, s->p.server, s->p.target, c->seq, req);
    return rc < 0 ? rc : 1;
}

static enum lg_verdict rpc_check(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                                 term_t msg, uint64_t *missing)
{
    (void)ctx, (void)missing;
    if (!tuple_of(msg, 2))
        return LG_REPLY_UNRELATED;
    int64_t got = seq_of(term_tuple_elems(msg)[0]);
    term_t r = term_tuple_elems(msg)[1];
    bool right;
    switch (s->rpc_check) {
    case LG_RPC_PAYLOAD:
        right = term_eq(r, payload);
        break;
    case LG_RPC_TARGET:
        right = r == s->p.target;
        break;
    default:
        right = !(tuple_of(r, 2) && term_tuple_elems(r)[0] == s->atom.badrpc);
    }
    return by_seq(c, got, right);
}

static const lg_workload_t workloads[] = {
    {"echo", "{Self, {Seq, Payload}} to the registered echo process, awaits {echo_reply, _}",
     "echo", echo_send, echo_check},
    {"call", "gen_server:call: {put, Key, Payload} -> ok, {get, Key} -> {ok, Payload}", "girder_kv",
     call_send, call_check},
    {"cast", "16 x gen_server:cast {put, Key, N}, then a call {get, Key} checks the last",
     "girder_kv", cast_send, cast_check},
    {"rpc", "rpc:call through rex (girder:echo(Payload) on girder, erlang:node() on OTP)", "rex",
     rpc_send, rpc_check},
};

const lg_workload_t *lg_workload_find(const char *name)
{
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(workloads[i].name, name) == 0)
            return &workloads[i];
    return NULL;
}

void lg_workloads_help(FILE *out)
{
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        fprintf(out, "    %-5s %s\n", workloads[i].name, workloads[i].summary);
}

/* ---- payloads ---- */

bool lg_payload_parse(const char *spec, enum lg_payload_shape *shape, uint64_t *size)
{
    static const struct {
        const char *name;
        enum lg_payload_shape shape;
        bool sized;
    } shapes[] = {{"binary", LG_PAYLOAD_BINARY, true}, {"list", LG_PAYLOAD_LIST, true},
                  {"map", LG_PAYLOAD_MAP, true},       {"tuple", LG_PAYLOAD_TUPLE, true},
                  {"atom", LG_PAYLOAD_ATOM, false},    {"int", LG_PAYLOAD_INT, false}};
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (strlen(shapes[i].name) != name_len || strncmp(spec, shapes[i].name, name_len) != 0)
            continue;
        *shape = shapes[i].shape;
        *size = 0;
        if (!shapes[i].sized)
            return colon == NULL;
        if (colon == NULL) {
            *size = 32;
            return true;
        }
        char *end = NULL;
        const char *v = colon + 1;
        unsigned long long n = strtoull(v, &end, 10);
        uint64_t cap = *shape == LG_PAYLOAD_BINARY ? LG_PAYLOAD_MAX : 1000000;
        if (v[0] < '0' || v[0] > '9' || *end != '\0' || n > cap)
            return false;
        *size = n;
        return true;
    }
    return false;
}

int lg_payload_build(lg_share_t *s, heap_t *h, term_t *out)
{
    uint64_t n = s->p.payload_size;
    switch (s->p.payload_shape) {
    case LG_PAYLOAD_BINARY: {
        if (s->bin != NULL)
            return heap_make_refc_binary(h, s->bin, (size_t)n * 8, out);
        uint8_t bytes[HEAP_BIN_MAX_BYTES];
        for (uint64_t i = 0; i < n && i < sizeof bytes; i++)
            bytes[i] = (uint8_t)('a' + i % 26);
        return heap_make_binary(h, bytes, (size_t)n, out);
    }
    case LG_PAYLOAD_LIST: {
        term_t list = TERM_NIL;
        for (uint64_t i = n; i > 0; i--) {
            int rc = heap_cons(h, term_make_small((int64_t)i), list, &list);
            if (rc != 0)
                return rc;
        }
        *out = list;
        return 0;
    }
    case LG_PAYLOAD_TUPLE: {
        term_t *e;
        int rc = heap_make_tuple(h, (size_t)n, &e, out);
        for (uint64_t i = 0; rc == 0 && i < n; i++)
            e[i] = term_make_small((int64_t)i + 1);
        return rc;
    }
    case LG_PAYLOAD_MAP: {
        term_t *kv = malloc(sizeof *kv * (size_t)(n ? n : 1));
        if (kv == NULL)
            return GD_ENOMEM;
        for (uint64_t i = 0; i < n; i++)
            kv[i] = term_make_small((int64_t)i + 1);
        int rc = heap_make_map(h, kv, kv, (size_t)n, out);
        free(kv);
        return rc;
    }
    case LG_PAYLOAD_ATOM:
        *out = heap_atom("payload");
        return 0;
    case LG_PAYLOAD_INT:
        *out = term_make_small(42);
        return 0;
    }
    return GD_EINVAL;
}
