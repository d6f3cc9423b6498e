/*
 * gen_call.c — the blocking client side of the behaviours: gen_server:call
 * (girder_call), gen_server:stop (girder_gen_stop) and the supervisor's
 * client calls.  They block in sched_receive_ref_wait, so they run in
 * coroutine processes; every term they hold across a runtime call that may
 * collect (sends and receives are preemption points) sits in a registered
 * root slot (sched.h, "Roots").
 */
#include "internal.h"

/* "infinity" for sched_wait_exit, which adds its timeout to a clock in
 * nanoseconds: 2^40 ms (35 years) cannot overflow it. */
#define STOP_FOREVER_MS ((uint64_t)1 << 40)

/* What a request waits for: the reply {Tag, _} (unless only the 'DOWN'
 * ends the wait) or the monitor's 'DOWN'.  The slots are registered roots,
 * so they hold the current addresses whenever the predicate runs. */
typedef struct wait {
    term_t tag, mref;
    /* The process monitored (a local pid: an immediate), or TERM_NONE.  A
     * local one is monitored with an alias (OTP 24's gen:call): Tag is
     * [alias | Mref], so a reply arriving after the wait ended is dropped
     * by the runtime instead of landing in the caller's mailbox. */
    term_t pid;
    bool reply_ends;
} wait_t;

/* The reference whose mark starts the scans (the ref trick): the monitor's
 * alias; for a remote server the alias of its tag [alias | Alias] (or the
 * plain tag before the alias is made). */
static term_t wait_ref(const wait_t *w)
{
    if (w->pid != TERM_NONE)
        return w->mref;
    return term_is_list(w->tag) ? term_cdr(w->tag) : w->tag;
}

static bool is_reply(term_t msg, const wait_t *w)
{
    return term_is_tuple(msg) && term_tuple_arity(msg) == 2 &&
           node_term_eq(term_tuple_elems(msg)[0], w->tag);
}

static bool is_down(term_t msg, const wait_t *w)
{
    return node_is_tagged(msg, 5, ATOM_DOWN) && node_term_eq(term_tuple_elems(msg)[1], w->mref);
}

static bool pred_answer(term_t msg, void *arg)
{
    const wait_t *w = arg;
    return (w->reply_ends && is_reply(msg, w)) || is_down(msg, w);
}

static bool pred_reply(term_t msg, void *arg)
{
    return is_reply(msg, arg);
}

static bool pred_down(term_t msg, void *arg)
{
    return is_down(msg, arg);
}

static bool pred_none(term_t msg, void *arg)
{
    return false;
}

/* Drops the monitor and any 'DOWN' or reply of it already queued
 * (erlang:demonitor(Mref, [flush]) and the late-reply check of gen:call).
 * With want_reply, a reply found is returned in *reply (else TERM_NONE). */
static int finish_wait(sched_ctx_t *ctx, wait_t *w, bool want_reply, term_t *reply)
{
    /*
     * A 'DOWN' can be in the queue only if the monitored process has begun
     * to exit: it is unpublished (sched_is_alive false, an RMW on its slot)
     * before its 'DOWN's are sent, and we take our inbox only in receives.
     * So while it is alive here nothing needs flushing, and every 'DOWN'
     * still to come is voided by the demonitor: the flush, a scan of the
     * whole mailbox, runs only when the server is gone.
     */
    bool flush = w->pid == TERM_NONE || !sched_is_alive(w->pid);
    term_t msg;
    int rc;
    if (want_reply) {
        /* The demonitor (or the unalias) ends the alias: take in a reply
         * that has arrived by now first (a receive that matches nothing
         * and does not wait; the mark keeps it to what is new). */
        rc = sched_receive_ref_wait(ctx, wait_ref(w), pred_none, NULL, 0, &msg);
        if (rc != SCHED_ETIMEOUT)
            return rc == GD_OK ? GD_EINVAL : rc;
    }
    if (w->pid == TERM_NONE && term_is_list(w->tag))
        (void)sched_alias_remove(ctx, term_cdr(w->tag));
    rc = sched_demonitor(ctx, w->mref);
    if (rc != GD_OK)
        return rc;
    if (flush) {
        rc = sched_receive_wait(ctx, pred_down, w, 0, &msg);
        if (rc != GD_OK && rc != SCHED_ETIMEOUT)
            return rc;
    }
    *reply = TERM_NONE;
    if (!want_reply)
        return GD_OK;
    rc = sched_receive_wait(ctx, pred_reply, w, 0, &msg);
    if (rc == GD_OK)
        *reply = term_tuple_elems(msg)[1];
    return rc == SCHED_ETIMEOUT ? GD_OK : rc;
}

/* The code and term a 'DOWN' reason stands for: noproc, noconnection, or
 * an exit with the reason. */
static int down_result(term_t reason, term_t *out)
{
    if (reason == ATOM_NOPROC)
        return SCHED_ENOPROC;
    if (reason == ATOM_NOCONNECTION)
        return GIRDER_ENODEDOWN;
    *out = reason;
    return GIRDER_EEXIT;
}

/*
 * Sends {Label, {Self, Tag}, Req} to server under a monitor and waits: for
 * the reply or the 'DOWN' (reply_ends), or for the 'DOWN' only.  Returns 0
 * with the answer message in *msg_out (unrooted), SCHED_ETIMEOUT, or an
 * error.  w's slots must be registered roots.
 */
static int request(sched_ctx_t *ctx, term_t label, term_t *server, term_t *req, wait_t *w,
                   int64_t timeout_ms, term_t *msg_out)
{
    term_t msg, probe, dest;
    int rc = girder_server_ref(*server, &dest);
    if (rc != GD_OK)
        return rc;
    /* gen:do_for_proc: a local name is looked up first and the pid is
     * monitored and called; nobody registered is noproc. */
    if (term_is_atom(dest)) {
        dest = sched_whereis(dest);
        if (dest == ATOM_UNDEFINED)
            return SCHED_ENOPROC;
    }
    if (dest == sched_self(ctx))
        return GD_EINVAL; /* gen: exit(calling_self) */
    w->pid = term_is_local_pid(dest) ? dest : TERM_NONE;
    /* The fresh ref first: it marks the queue's end, so the waits below
     * skip everything queued before the request (the ref trick). */
    rc = sched_make_ref(ctx, &w->tag);
    if (rc != GD_OK)
        return rc;
    /* A behaviour process cannot wait: find out before sending, with a
     * receive that matches nothing, does not wait and, thanks to the mark,
     * looks at nothing older (GD_EINVAL from a behaviour). */
    rc = sched_receive_ref_wait(ctx, w->tag, pred_none, NULL, 0, &probe);
    if (rc != SCHED_ETIMEOUT)
        return rc == GD_OK ? GD_EINVAL : rc;
    /* The probe may have collected: a boxed dest ({Name, Node}, a remote
     * pid) is read again from the rooted slot; a local pid is immediate. */
    if (w->pid != TERM_NONE) {
        rc = sched_monitor_alias(ctx, dest, SCHED_ALIAS_DEMONITOR, &w->mref);
        if (rc == GD_OK)
            rc = heap_cons(sched_heap(ctx), node_atom.alias, w->mref, &w->tag);
        if (rc != GD_OK && w->mref != TERM_NIL) {
            term_t ignored;
            (void)finish_wait(ctx, w, false, &ignored);
        }
    } else {
        /* A remote server replies to an alias too ([alias | Alias], an
         * alias of its own since the monitor's ref is the distribution
         * layer's): the peer's ALIAS_SEND reaches it, and once the wait
         * ends a late reply is dropped rather than queued. */
        rc = girder_server_ref(*server, &dest);
        if (rc == GD_OK)
            rc = sched_monitor(ctx, dest, &w->mref);
        term_t alias;
        if (rc == GD_OK) {
            rc = sched_alias_create(ctx, &alias);
            if (rc == GD_OK)
                rc = heap_cons(sched_heap(ctx), node_atom.alias, alias, &w->tag);
            if (rc != GD_OK) {
                term_t ignored;
                (void)finish_wait(ctx, w, false, &ignored);
            }
        }
    }
    if (rc != GD_OK)
        return rc;
    /* The remote monitor told the connection's controller: a send, so a
     * preemption point that may have collected and moved a boxed dest
     * ({Name, Node}, a remote pid).  Read it again from the rooted slot
     * (a local pid is an immediate and needs nothing). */
    if (w->pid == TERM_NONE) {
        rc = girder_server_ref(*server, &dest);
        if (rc != GD_OK) {
            term_t ignored;
            (void)finish_wait(ctx, w, false, &ignored);
            return rc;
        }
    }
    term_t *e, from;
    rc = heap_make_tuple(sched_heap(ctx), 2, &e, &from);
    if (rc == GD_OK) {
        e[0] = sched_self(ctx);
        e[1] = w->tag;
        rc = heap_make_tuple(sched_heap(ctx), 3, &e, &msg);
    }
    if (rc == GD_OK) {
        e[0] = label;
        e[1] = from;
        e[2] = *req;
        rc = sched_send(ctx, dest, msg);
    }
    if (rc != GD_OK) {
        term_t ignored;
        int frc = finish_wait(ctx, w, false, &ignored);
        return frc != GD_OK ? frc : rc;
    }
    return sched_receive_ref_wait(ctx, wait_ref(w), pred_answer, w, timeout_ms, msg_out);
}

int girder_call(sched_ctx_t *ctx, term_t server, term_t req, int64_t timeout_ms, term_t *reply_out)
{
    if (ctx == NULL || reply_out == NULL)
        return GD_EINVAL;
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    wait_t w = {TERM_NIL, TERM_NIL, TERM_NONE, true};
    term_t answer = TERM_NIL;
    term_t *slots[] = {&server, &req, &w.tag, &w.mref, &answer};
    size_t pushed = 0;
    for (; pushed < sizeof slots / sizeof slots[0]; pushed++) {
        rc = sched_root_push(ctx, slots[pushed]);
        if (rc != GD_OK)
            goto out;
    }
    rc = request(ctx, node_atom.gen_call, &server, &req, &w, timeout_ms, &answer);
    if (rc == GD_OK) {
        bool got_reply = is_reply(answer, &w);
        answer = term_tuple_elems(answer)[got_reply ? 1 : 4];
        if (!got_reply) {
            rc = down_result(answer, reply_out);
            goto out;
        }
        term_t none;
        rc = finish_wait(ctx, &w, false, &none);
        if (rc == GD_OK)
            *reply_out = answer;
    } else if (rc == SCHED_ETIMEOUT) {
        /* gen:call after a timeout: a reply that made it meanwhile wins. */
        term_t late;
        rc = finish_wait(ctx, &w, true, &late);
        if (rc == GD_OK && late != TERM_NONE)
            *reply_out = late;
        else if (rc == GD_OK)
            rc = SCHED_ETIMEOUT;
    }
out:
    sched_root_pop(ctx, pushed);
    return rc;
}

int girder_gen_stop(sched_ctx_t *ctx, term_t server, term_t reason, int64_t timeout_ms)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t *e, req;
    if (ctx == NULL) {
        /* From outside any process: the message, then a wait for the exit
         * (the reply goes nowhere: its From names no process). */
        term_t dest;
        rc = girder_server_ref(server, &dest);
        if (rc != GD_OK)
            return rc;
        term_t pid = term_is_atom(dest) ? sched_whereis(dest) : dest;
        if (!term_is_local_pid(pid) || !sched_is_alive(pid))
            return SCHED_ENOPROC;
        heap_t h;
        rc = heap_init(&h, 16);
        if (rc != GD_OK)
            return rc;
        term_t elems[3] = {node_atom.system, TERM_NIL, TERM_NIL};
        rc = heap_make_tuple(&h, 2, &e, &elems[1]);
        if (rc == GD_OK) {
            e[0] = TERM_NIL;
            e[1] = TERM_NIL;
            rc = heap_make_tuple(&h, 2, &e, &elems[2]);
        }
        if (rc == GD_OK) {
            e[0] = node_atom.terminate;
            e[1] = reason;
            rc = heap_make_tuple(&h, 3, &e, &req);
        }
        if (rc == GD_OK) {
            e[0] = elems[0];
            e[1] = elems[1];
            e[2] = elems[2];
            rc = sched_send(NULL, pid, req);
        }
        heap_destroy(&h);
        if (rc != GD_OK)
            return rc;
        rc = sched_wait_exit(&pid, 1, timeout_ms < 0 ? STOP_FOREVER_MS : (uint64_t)timeout_ms);
        return rc == GD_EAGAIN ? SCHED_ETIMEOUT : rc;
    }
    wait_t w = {TERM_NIL, TERM_NIL, TERM_NONE, false};
    term_t answer = TERM_NIL;
    term_t *slots[] = {&server, &reason, &w.tag, &w.mref, &answer, &req};
    size_t pushed = 0;
    for (; pushed < sizeof slots / sizeof slots[0]; pushed++) {
        rc = sched_root_push(ctx, slots[pushed]);
        if (rc != GD_OK)
            goto out;
    }
    rc = heap_make_tuple(sched_heap(ctx), 2, &e, &req);
    if (rc != GD_OK)
        goto out;
    e[0] = node_atom.terminate;
    e[1] = reason;
    /* proc_lib:stop: sys:terminate (answered ok), then the 'DOWN'. */
    rc = request(ctx, node_atom.system, &server, &req, &w, timeout_ms, &answer);
    if (rc == GD_OK) {
        term_t why = term_tuple_elems(answer)[4], ignored;
        if (node_term_eq(why, reason))
            rc = GD_OK;
        else
            rc = down_result(why, &ignored);
        term_t none;
        int frc = finish_wait(ctx, &w, true, &none); /* the `ok` reply */
        if (frc != GD_OK)
            rc = frc;
    } else if (rc == SCHED_ETIMEOUT) {
        term_t none;
        int frc = finish_wait(ctx, &w, true, &none);
        if (frc != GD_OK)
            rc = frc;
    }
out:
    sched_root_pop(ctx, pushed);
    return rc;
}

/* ---- supervisor client calls ---- */

static int sup_call(sched_ctx_t *ctx, term_t sup, term_t req, term_t *result_out)
{
    return girder_call(ctx, sup, req, -1, result_out);
}

int girder_sup_start_child(sched_ctx_t *ctx, term_t sup, const girder_child_spec_t *spec,
                           term_t *result_out)
{
    if (ctx == NULL)
        return GD_EINVAL;
    term_t req;
    int rc = girder_sup_child_request(sched_heap(ctx), spec, &req);
    return rc != GD_OK ? rc : sup_call(ctx, sup, req, result_out);
}

/* {Op, Id} to sup. */
static int sup_id_call(sched_ctx_t *ctx, term_t sup, term_t op, term_t id, term_t *result_out)
{
    if (ctx == NULL)
        return GD_EINVAL;
    term_t *e, req;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &req);
    if (rc != GD_OK)
        return rc;
    e[0] = op;
    e[1] = id;
    return sup_call(ctx, sup, req, result_out);
}

int girder_sup_terminate_child(sched_ctx_t *ctx, term_t sup, term_t id, term_t *result_out)
{
    int rc = node_atoms_init();
    return rc != GD_OK ? rc : sup_id_call(ctx, sup, node_atom.terminate_child, id, result_out);
}

int girder_sup_restart_child(sched_ctx_t *ctx, term_t sup, term_t id, term_t *result_out)
{
    int rc = node_atoms_init();
    return rc != GD_OK ? rc : sup_id_call(ctx, sup, node_atom.restart_child, id, result_out);
}

int girder_sup_delete_child(sched_ctx_t *ctx, term_t sup, term_t id, term_t *result_out)
{
    int rc = node_atoms_init();
    return rc != GD_OK ? rc : sup_id_call(ctx, sup, node_atom.delete_child, id, result_out);
}

int girder_sup_which_children(sched_ctx_t *ctx, term_t sup, term_t *result_out)
{
    int rc = node_atoms_init();
    return rc != GD_OK ? rc : sup_call(ctx, sup, node_atom.which_children, result_out);
}
