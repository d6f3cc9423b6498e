/*
 * util.c — node/'s atoms, the term helpers its behaviours share, and the
 * signal set-up of a program that runs a node.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "internal.h"

node_atoms_t node_atom;

static pthread_once_t atoms_once = PTHREAD_ONCE_INIT;
/* Written once inside pthread_once (which orders it for every caller). */
static int atoms_rc;

static void atoms_intern(void)
{
#define NODE_ATOM_PUT(name, text)                                                                  \
    if (atoms_rc == GD_OK)                                                                         \
        atoms_rc = heap_atom_put(text, sizeof(text) - 1, &node_atom.name);
    NODE_ATOMS(NODE_ATOM_PUT)
#undef NODE_ATOM_PUT
}

int node_atoms_init(void)
{
    pthread_once(&atoms_once, atoms_intern);
    return atoms_rc;
}

bool node_term_eq(term_t a, term_t b)
{
    int order;
    return a == b || (heap_compare_checked(a, b, true, &order) == GD_OK && order == 0);
}

int node_addr_term(uintptr_t addr, term_t *out)
{
    if (addr > (uintptr_t)SMALL_MAX)
        return GD_EINVAL;
    *out = term_make_small((int64_t)addr);
    return GD_OK;
}

uintptr_t node_term_addr(term_t t)
{
    if (!term_is_small(t) || term_small_value(t) < 0)
        return 0;
    return (uintptr_t)term_small_value(t);
}

/*
 * Builds the tuple elems[0..n) on ctx's heap (or, with ctx NULL, on a
 * scratch heap freed afterwards) and hands it to use(ctx, tuple, arg): the
 * one place that knows where a term built for another process may live.
 */
static int with_tuple(sched_ctx_t *ctx, const term_t *elems, size_t n,
                      int (*use)(sched_ctx_t *, term_t, void *), void *arg)
{
    heap_t scratch, *h = ctx != NULL ? sched_heap(ctx) : &scratch;
    int rc;
    if (ctx == NULL) {
        rc = heap_init(&scratch, n + 1);
        if (rc != GD_OK)
            return rc;
    }
    term_t *e, t;
    rc = heap_make_tuple(h, n, &e, &t);
    if (rc == GD_OK) {
        for (size_t i = 0; i < n; i++)
            e[i] = elems[i];
        rc = use(ctx, t, arg);
    }
    if (ctx == NULL)
        heap_destroy(&scratch);
    return rc;
}

static int send_to(sched_ctx_t *ctx, term_t t, void *arg)
{
    return sched_send(ctx, *(const term_t *)arg, t);
}

int node_send_tuple(sched_ctx_t *ctx, term_t to, const term_t *elems, size_t n)
{
    return with_tuple(ctx, elems, n, send_to, &to);
}

term_t node_callback_error(sched_ctx_t *ctx, int code)
{
    term_t *e, t;
    if (heap_make_tuple(sched_heap(ctx), 2, &e, &t) != GD_OK)
        return node_atom.callback_error;
    e[0] = node_atom.callback_error;
    e[1] = term_make_small(code);
    return t;
}

term_t node_ack_to(sched_ctx_t *ctx, bool link)
{
    if (ctx == NULL || !link || sched_dict_get(ctx, node_atom.ack_wanted) != ATOM_TRUE)
        return TERM_NIL;
    return sched_self(ctx);
}

int node_ack_started(sched_ctx_t *ctx, term_t ack_to, term_t pid)
{
    if (ack_to == TERM_NIL)
        return GD_OK;
    /* The key exists (its value was true): replacing it allocates nothing. */
    return sched_dict_put(ctx, node_atom.ack_wanted, pid, NULL);
}

int node_ack(sched_ctx_t *ctx, term_t ack_to)
{
    if (ack_to == TERM_NIL)
        return GD_OK;
    term_t elems[2] = {node_atom.ack, sched_self(ctx)};
    return node_send_tuple(ctx, ack_to, elems, 2);
}

int node_register_name(sched_ctx_t *ctx, term_t name)
{
    if (name == TERM_NIL)
        return GD_OK;
    int rc = sched_register(ctx, name);
    if (rc != SCHED_ENAME_TAKEN)
        return rc;
    /* gen: {error, {already_started, Pid}}; with a start that does not wait
     * for init it is the exit reason the starter's link reports. */
    term_t *e, why;
    rc = heap_make_tuple(sched_heap(ctx), 2, &e, &why);
    if (rc != GD_OK)
        return rc;
    e[0] = node_atom.already_started;
    e[1] = sched_whereis(name);
    return sched_exit(ctx, why);
}

typedef struct start_args {
    const sched_behaviour_t *beh;
    const girder_gen_opts_t *opts;
    term_t ack_to, *pid_out;
} start_args_t;

static int spawn_with(sched_ctx_t *ctx, term_t arg, void *varg)
{
    start_args_t *a = varg;
    sched_spawn_opts_t so = a->opts->spawn;
    so.link = a->opts->link;
    so.monitor = false;
    int rc = sched_spawn_opt(ctx, a->beh, arg, &so, a->pid_out, NULL);
    return rc != GD_OK ? rc : node_ack_started(ctx, a->ack_to, *a->pid_out);
}

int node_start(sched_ctx_t *ctx, const sched_behaviour_t *beh, const girder_gen_opts_t *opts,
               const term_t *elems, size_t n, size_t ack_index, term_t *pid_out)
{
    start_args_t a = {beh, opts, elems[ack_index], pid_out};
    return with_tuple(ctx, elems, n, spawn_with, &a);
}

int node_start_name(sched_ctx_t *ctx, const girder_gen_opts_t *opts, term_t *name_out)
{
    if (opts->link && ctx == NULL)
        return GD_EINVAL;
    term_t name = opts->name == 0 ? TERM_NIL : opts->name;
    if (name != TERM_NIL && (!term_is_atom(name) || name == ATOM_UNDEFINED))
        return GD_EBADARG;
    *name_out = name;
    return node_atoms_init();
}

void girder_block_stop_signals(sigset_t *set_out)
{
    sigemptyset(set_out);
    sigaddset(set_out, SIGTERM);
    sigaddset(set_out, SIGINT);
    pthread_sigmask(SIG_BLOCK, set_out, NULL);
    signal(SIGPIPE, SIG_IGN);
}
