/*
 * cmd_client.c — `girder ping`, `girder rpc`, `girder send` and
 * `girder reload`: one
 * request to a running node (girder or OTP) from a short-lived hidden
 * client node (node/loadgen/client.c starts it).  Every failure is one line
 * on stderr and a non-zero exit; every wait has a deadline (-timeout).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "commands.h"
#include "loadgen.h"

enum client_op { OP_PING, OP_RPC, OP_SEND, OP_RELOAD };

/* What the command's process does and what it found (C memory: the
 * process gets a pointer to it, see lg_ptr_term). */
typedef struct client_job {
    enum client_op op;
    const char *prog;
    const char *node;
    const char *m, *f, *args_text; /* rpc */
    const char *name, *term_text;  /* send */
    const char *module, *so_path;  /* reload */
    int64_t timeout_ms;
    int status;    /* the exit status */
    char *out;     /* a line for stdout (malloc'd), or NULL */
    char err[512]; /* a line for stderr, or "" */
} client_job_t;

static void usage(FILE *out, enum client_op op)
{
    switch (op) {
    case OP_PING:
        fprintf(out, "usage: girder ping [-setcookie C] [-sname N|-name N] [-timeout S] NODE\n\n"
                     "Connects to NODE (girder or Erlang) and asks its net_kernel, as\n"
                     "net_adm:ping/1 does: prints pong (exit 0), or pang and why (exit 1).\n\n");
        break;
    case OP_RPC:
        fprintf(
            out,
            "usage: girder rpc [-setcookie C] [-sname N|-name N] [-timeout S] NODE M F [ARGS]\n\n"
            "Calls M:F(ARGS...) on NODE through its rex server (rpc:call/4, like erl_call -a):\n"
            "ARGS is a list in Erlang term syntax (default []), e.g. '[[3,1,2]]'.  Prints the\n"
            "result on one line as ~0p would; a {badrpc, Reason} result is printed and the\n"
            "exit status is 1.\n\n");
        break;
    case OP_SEND:
        fprintf(
            out,
            "usage: girder send [-setcookie C] [-sname N|-name N] [-timeout S] NODE NAME TERM\n\n"
            "Sends TERM (Erlang term syntax) to the process registered as NAME on NODE\n"
            "({NAME, NODE} ! TERM) and waits until NODE has received it.  On an Erlang node\n"
            "a NAME nobody registered is an error (exit 1).\n\n");
        break;
    case OP_RELOAD:
        fprintf(out,
                "usage: girder reload [-setcookie C] [-sname N|-name N] [-timeout S] NODE MODULE "
                "SO_PATH\n\n"
                "Hot-reloads MODULE on the girder node NODE from the shared object SO_PATH (a\n"
                "path on NODE's machine), as rpc girder:reload(MODULE, SO_PATH): the running\n"
                "server hands its state to the new code.  Prints the result on one line:\n"
                "{ok,Vsn} (exit 0), or {error,Why} / {badrpc,Why} (exit 1).  A node started\n"
                "with --no-reload answers {error,reload_disabled}.\n"
                "Reload trusts every holder of the cookie, exactly as OTP's code loading over\n"
                "rpc (code:load_binary/3) does: a cookie holder can run any code on the node.\n\n");
        break;
    }
    fprintf(out, "options:\n");
    lg_client_flags_help(out);
}

/* Parses text into a term on h, one-line error in err. */
static int parse_term(heap_t *h, const char *text, term_t *out, char *err, size_t cap)
{
    etf_error_t e;
    int rc = etf_parse(h, text, strlen(text), out, &e);
    if (rc != 0) {
        snprintf(err, cap, "bad term '%s': %s at byte %zu", text, etf_strerror(rc), e.offset);
        return -1;
    }
    return 0;
}

/* The text of t as ~0p prints it (malloc'd), or NULL. */
static char *term_text(term_t t)
{
    etf_buf_t b = {0};
    if (etf_print(t, &b) != 0 || etf_buf_reserve(&b, 1) != 0) {
        etf_buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    return (char *)b.data;
}

static bool is_badrpc(term_t t)
{
    return term_is_tuple(t) && term_tuple_arity(t) == 2 &&
           term_tuple_elems(t)[0] == heap_atom("badrpc");
}

static int do_ping(sched_ctx_t *ctx, client_job_t *j, term_t node)
{
    term_t *e, req, server, reply;
    heap_t *h = sched_heap(ctx);
    if (heap_make_tuple(h, 2, &e, &req) != 0)
        return GD_ENOMEM;
    e[0] = heap_atom("is_auth");
    e[1] = heap_node_name();
    if (heap_make_tuple(h, 2, &e, &server) != 0)
        return GD_ENOMEM;
    e[0] = heap_atom("net_kernel");
    e[1] = node;
    if (lg_call(ctx, server, req, j->timeout_ms, &reply, j->err, sizeof j->err) != 0)
        return -1;
    if (reply != heap_atom("yes")) {
        snprintf(j->err, sizeof j->err, "%s answered the ping with something other than yes",
                 j->node);
        return -1;
    }
    return 0;
}

static int do_rpc(sched_ctx_t *ctx, client_job_t *j, term_t node)
{
    heap_t *h = sched_heap(ctx);
    term_t args = TERM_NIL, result;
    if (j->args_text != NULL && parse_term(h, j->args_text, &args, j->err, sizeof j->err) != 0)
        return -1;
    if (lg_rpc(ctx, node, heap_atom(j->m), heap_atom(j->f), args, j->timeout_ms, &result, j->err,
               sizeof j->err) != 0)
        return -1;
    j->out = term_text(result);
    if (j->out == NULL)
        return GD_ENOMEM;
    return is_badrpc(result) ? 1 : 0;
}

static int do_send(sched_ctx_t *ctx, client_job_t *j, term_t node)
{
    heap_t *h = sched_heap(ctx);
    term_t name = heap_atom(j->name), where, args;
    /* An Erlang node can say whether the name exists (girder nodes have no
     * erlang:whereis/1 rpc: {badrpc, _}, and the send goes ahead). */
    if (heap_cons(h, name, TERM_NIL, &args) != 0)
        return GD_ENOMEM;
    if (lg_rpc(ctx, node, heap_atom("erlang"), heap_atom("whereis"), args, j->timeout_ms, &where,
               j->err, sizeof j->err) != 0)
        return -1;
    if (where == heap_atom("undefined")) {
        snprintf(j->err, sizeof j->err, "no process is registered as %s on %s", j->name, j->node);
        return -1;
    }
    term_t msg, *e, dest;
    if (parse_term(h, j->term_text, &msg, j->err, sizeof j->err) != 0)
        return -1;
    if (heap_make_tuple(h, 2, &e, &dest) != 0)
        return GD_ENOMEM;
    e[0] = name;
    e[1] = node;
    if (sched_send(ctx, dest, msg) != 0) {
        snprintf(j->err, sizeof j->err, "could not send to %s on %s", j->name, j->node);
        return -1;
    }
    /* A ping answered over the same connection arrives after the message
     * did: then the node has it. */
    return do_ping(ctx, j, node);
}

/* rpc girder:reload(Module, <<SoPath>>): {ok, Vsn} is success, anything
 * else (an {error, _} or {badrpc, _}) exit 1. */
static int do_reload(sched_ctx_t *ctx, client_job_t *j, term_t node)
{
    heap_t *h = sched_heap(ctx);
    term_t path, args, result;
    if (heap_make_binary(h, j->so_path, strlen(j->so_path), &path) != 0 ||
        heap_cons(h, path, TERM_NIL, &args) != 0 ||
        heap_cons(h, heap_atom(j->module), args, &args) != 0)
        return GD_ENOMEM;
    if (lg_rpc(ctx, node, heap_atom("girder"), heap_atom("reload"), args, j->timeout_ms, &result,
               j->err, sizeof j->err) != 0)
        return -1;
    j->out = term_text(result);
    if (j->out == NULL)
        return GD_ENOMEM;
    bool ok = term_is_tuple(result) && term_tuple_arity(result) == 2 &&
              term_tuple_elems(result)[0] == heap_atom("ok");
    return ok ? 0 : 1;
}

static int client_main(sched_ctx_t *ctx, term_t arg)
{
    client_job_t *j = lg_term_ptr(arg);
    term_t node = heap_atom(j->node);
    int rc = j->op == OP_PING   ? do_ping(ctx, j, node)
             : j->op == OP_RPC  ? do_rpc(ctx, j, node)
             : j->op == OP_SEND ? do_send(ctx, j, node)
                                : do_reload(ctx, j, node);
    if (rc < -1)
        snprintf(j->err, sizeof j->err, "%s", dist_strerror(rc));
    j->status = rc == 0 ? 0 : 1;
    return 0;
}

/* Checks a term argument before any node starts (bad input: exit 1). */
static bool term_ok(const char *prog, const char *text, bool want_list)
{
    heap_t h;
    if (heap_init(&h, 64) != 0)
        return false;
    term_t t;
    char err[512];
    bool ok = parse_term(&h, text, &t, err, sizeof err) == 0;
    if (!ok)
        fprintf(stderr, "girder %s: %s\n", prog, err);
    else if (want_list && !(term_is_nil(t) || term_is_list(t))) {
        fprintf(stderr, "girder %s: ARGS must be a list, e.g. [1,2] (got '%s')\n", prog, text);
        ok = false;
    }
    heap_destroy(&h);
    return ok;
}

static bool atom_ok(const char *prog, const char *what, const char *text)
{
    size_t n = strlen(text);
    if (n == 0 || n > 255) {
        fprintf(stderr, "girder %s: bad %s '%s'\n", prog, what, text);
        return false;
    }
    return true;
}

static int run_client(enum client_op op, int argc, char **argv)
{
    client_job_t j = {.op = op, .prog = argv[0]};
    lg_client_opts_t o = {0};
    const char *pos[4];
    int npos = 0, max_pos = op == OP_PING ? 1 : op == OP_RPC ? 4 : 3;
    int min_pos = op == OP_PING ? 1 : 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, op);
            return 0;
        }
        int taken = lg_client_flag(&o, j.prog, argc, argv, &i);
        if (taken < 0)
            return 2;
        if (taken > 0)
            continue;
        if (a[0] == '-' && a[1] != '\0' && npos == 0) {
            fprintf(stderr, "girder %s: unknown option '%s' (see girder %s --help)\n", j.prog, a,
                    j.prog);
            return 2;
        }
        if (npos == max_pos) {
            fprintf(stderr, "girder %s: unexpected argument '%s' (see girder %s --help)\n", j.prog,
                    a, j.prog);
            return 2;
        }
        pos[npos++] = a;
    }
    if (npos < min_pos) {
        fprintf(stderr, "girder %s: missing %s (see girder %s --help)\n", j.prog,
                npos == 0         ? "NODE"
                : op == OP_RPC    ? "M and F"
                : op == OP_RELOAD ? "MODULE and SO_PATH"
                                  : "NAME and TERM",
                j.prog);
        return 2;
    }
    j.node = pos[0];
    if (!lg_node_parse(j.node, NULL)) {
        fprintf(stderr, "girder %s: bad node name '%s' (expected name@host)\n", j.prog, j.node);
        return 2;
    }
    if (op == OP_RPC) {
        j.m = pos[1];
        j.f = pos[2];
        j.args_text = npos > 3 ? pos[3] : NULL;
        if (!atom_ok(j.prog, "module", j.m) || !atom_ok(j.prog, "function", j.f))
            return 1;
    } else if (op == OP_SEND) {
        j.name = pos[1];
        j.term_text = pos[2];
        if (!atom_ok(j.prog, "name", j.name))
            return 1;
    } else if (op == OP_RELOAD) {
        j.module = pos[1];
        j.so_path = pos[2];
        if (!atom_ok(j.prog, "module", j.module))
            return 1;
        if (j.so_path[0] == '\0' || strlen(j.so_path) >= 4096) {
            fprintf(stderr, "girder %s: bad SO_PATH (empty or over 4095 bytes)\n", j.prog);
            return 1;
        }
    }
    j.timeout_ms = (int64_t)(o.timeout_ms ? o.timeout_ms : LG_TIMEOUT_DEFAULT_MS);

    signal(SIGPIPE, SIG_IGN);
    char err[512];
    if (lg_preflight(j.node, (uint64_t)j.timeout_ms, err, sizeof err) != 0) {
        if (op == OP_PING)
            printf("pang\n");
        fprintf(stderr, "girder %s: %s\n", j.prog, err);
        return 1;
    }
    if (lg_client_start(&o, j.node, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "girder %s: %s\n", j.prog, err);
        return 1;
    }
    /* The terms are checked once the node has its name: a pid in them
     * (<0.42.0>) is this node's, and reading one fixes the identity. */
    if ((j.args_text != NULL && !term_ok(j.prog, j.args_text, true)) ||
        (j.term_text != NULL && !term_ok(j.prog, j.term_text, false))) {
        lg_client_stop();
        return 1;
    }
    j.status = 1;
    int rc = lg_run_process(client_main, &j, (uint64_t)j.timeout_ms + 2000);
    if (rc != 0 && j.err[0] == '\0')
        snprintf(j.err, sizeof j.err, "no answer from %s within %lld ms", j.node,
                 (long long)j.timeout_ms);
    lg_client_stop();
    if (op == OP_PING)
        printf("%s\n", j.status == 0 ? "pong" : "pang");
    else if (j.out != NULL)
        printf("%s\n", j.out);
    if (j.err[0] != '\0')
        fprintf(stderr, "girder %s: %s\n", j.prog, j.err);
    free(j.out);
    fflush(stdout);
    return j.status;
}

int gd_cmd_ping(int argc, char **argv)
{
    return run_client(OP_PING, argc, argv);
}

int gd_cmd_rpc(int argc, char **argv)
{
    return run_client(OP_RPC, argc, argv);
}

int gd_cmd_send(int argc, char **argv)
{
    return run_client(OP_SEND, argc, argv);
}

int gd_cmd_reload(int argc, char **argv)
{
    return run_client(OP_RELOAD, argc, argv);
}
