/*
 * registry.c — naming for the C API: a thin layer over sched/'s local name
 * table (which owns the table and drops a name when its process exits), and
 * the server-reference shapes gen_server accepts.
 */
#include "internal.h"

int girder_register(sched_ctx_t *ctx, term_t name)
{
    return sched_register(ctx, name);
}

int girder_unregister(term_t name)
{
    return sched_unregister(name);
}

term_t girder_whereis(term_t name)
{
    return sched_whereis(name);
}

int girder_server_ref(term_t server, term_t *dest_out)
{
    if (term_is_pid(server) || (term_is_atom(server) && server != ATOM_UNDEFINED)) {
        *dest_out = server;
        return GD_OK;
    }
    if (term_is_tuple(server) && term_tuple_arity(server) == 2) {
        term_t name = term_tuple_elems(server)[0], node = term_tuple_elems(server)[1];
        if (!term_is_atom(name) || !term_is_atom(node) || name == ATOM_UNDEFINED)
            return GD_EBADARG;
        /* Our own node: the plain name, which sched/ resolves. */
        *dest_out = node == heap_node_name() ? name : server;
        return GD_OK;
    }
    return GD_EBADARG;
}
