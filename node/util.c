/*
 * util.c — node/'s atoms and the term helpers its behaviours share.
 */
#include <pthread.h>
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

int node_send_tuple(sched_ctx_t *ctx, term_t to, const term_t *elems, size_t n)
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
        rc = sched_send(ctx, to, t);
    }
    if (ctx == NULL)
        heap_destroy(&scratch);
    return rc;
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
