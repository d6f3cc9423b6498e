/*
 * dist.c — the hook table through which sched/ hands signals for other
 * nodes to the distribution layer (cluster/ installs it).  sched/ does not
 * know cluster/: it only recognises a remote target (an external pid, an
 * external reference used as an alias, or {Name, Node} for another node)
 * and calls the hook.
 */
#include <stdatomic.h>

#include "internal.h"

/* The installed table (NULL: none).  Release on store pairs with the
 * acquire load in the send path, so a sender that sees the pointer sees
 * the table's fields. */
static _Atomic(const sched_dist_hooks_t *) dist_hooks;

void sched_set_dist_hooks(const sched_dist_hooks_t *hooks)
{
    atomic_store_explicit(&dist_hooks, hooks, memory_order_release);
}

/* {Name, Node} with two atoms. */
static bool name_node(term_t to, term_t *name, term_t *node)
{
    if (!term_is_boxed_of(to, HDR_TUPLE))
        return false;
    const term_t *e = term_boxed_ptr(to);
    if (header_arity(e[0]) != 2 || !term_is_atom(e[1]) || !term_is_atom(e[2]))
        return false;
    *name = e[1];
    *node = e[2];
    return true;
}

/* The hooks, once the calling process's outbox is delivered: a remote
 * peer acting on what this process sends it must not overtake the local
 * messages the process sent before. */
static const sched_dist_hooks_t *hooks_after_flush(void)
{
    proc_outbox_flush();
    return atomic_load_explicit(&dist_hooks, memory_order_acquire);
}

bool sched_dist_target(term_t to)
{
    term_t name, node;
    return term_is_ext_pid(to) || term_is_boxed_of(to, HDR_REF) || name_node(to, &name, &node);
}

int sched_dist_send(sched_ctx_t *ctx, term_t to, term_t msg)
{
    term_t name, node;
    if (name_node(to, &name, &node) && node == heap_node_name())
        return sched_send(ctx, name, msg);
    const sched_dist_hooks_t *h = hooks_after_flush();
    if (h == NULL || h->send == NULL)
        return GD_EBADARG;
    int rc = h->send(h->ud, ctx != NULL ? sched_self(ctx) : TERM_NIL, to, msg);
    if (rc == 0 && ctx != NULL && h->sent != NULL)
        rc = h->sent(h->ud, ctx, to);
    return rc;
}

int sched_dist_exit(sched_ctx_t *ctx, term_t to, term_t reason)
{
    const sched_dist_hooks_t *h = hooks_after_flush();
    if (h == NULL || h->exit == NULL)
        return GD_EBADARG;
    return h->exit(h->ud, ctx != NULL ? sched_self(ctx) : TERM_NIL, to, reason);
}

int sched_dist_link(sched_ctx_t *ctx, term_t to, bool unlink)
{
    const sched_dist_hooks_t *h = hooks_after_flush();
    if (!term_is_ext_pid(to) || h == NULL || h->link == NULL)
        return GD_EBADARG;
    return h->link(h->ud, ctx, to, unlink);
}

int sched_dist_monitor(sched_ctx_t *ctx, term_t to, term_t *ref_out)
{
    term_t name, node;
    if (name_node(to, &name, &node) && node == heap_node_name())
        return sched_monitor(ctx, name, ref_out);
    const sched_dist_hooks_t *h = hooks_after_flush();
    if (!(term_is_ext_pid(to) || name_node(to, &name, &node)) || h == NULL || h->monitor == NULL)
        return GD_EBADARG;
    return h->monitor(h->ud, ctx, to, ref_out);
}

int sched_dist_demonitor(sched_ctx_t *ctx, term_t ref)
{
    const sched_dist_hooks_t *h = hooks_after_flush();
    return h == NULL || h->demonitor == NULL ? GD_OK : h->demonitor(h->ud, ctx, ref);
}

_Thread_local bool sched_dist_corked;

bool sched_dist_in_run(void)
{
    /* The slice's start is stamped just before a process is picked and
     * cleared right after proc_run returns: between the two, the only
     * sender on this thread is the process proc_run runs, whose run end
     * calls sched_dist_run_end.  Timers and the idle poller send outside
     * that window, where nothing would flush. */
    const runq_t *rq = sched_current_rq;
    return rq != NULL && atomic_load_explicit(&rq->slice_start, memory_order_relaxed) != 0;
}

void sched_dist_cork(void)
{
    sched_dist_corked = true;
}

void sched_dist_run_end_(void)
{
    sched_dist_corked = false;
    const sched_dist_hooks_t *h = atomic_load_explicit(&dist_hooks, memory_order_acquire);
    if (h != NULL && h->run_end != NULL)
        h->run_end(h->ud);
}
