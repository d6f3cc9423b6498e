/*
 * supervisor.c — OTP's supervisor as a behaviour process: child specs,
 * the three restart strategies, restart intensity, ordered shutdown, and the
 * supervisor calls (start/terminate/restart/delete_child, which_children,
 * count_children) in OTP's request and reply shapes.
 *
 * Its state is one tuple on its heap (S_* fields); children are 7-tuples
 * (C_* fields) in a list, newest first, so the list order is the shutdown
 * order and its reverse the start order.  A behaviour callback cannot wait,
 * so stopping children is a small state machine: a queue of child ids to
 * stop (S_QUEUE), the one being stopped (S_CUR, S_STAGE), and what to do once
 * the queue is empty (S_THEN).  While a child is being stopped a selective
 * receive admits only its 'DOWN' (and the shutdown timer's `timeout`), so
 * everything else waits in the queue as it would behind OTP's blocking
 * shutdown.
 *
 * Starting is the same kind of machine (S_START_*): OTP starts children one
 * at a time, each start returning only once the child's init has run, so a
 * child may rely on the ones before it.  A child made by girder_gen_start
 * or girder_sup_start from inside a start function acknowledges its init
 * with {'$girder_ack', Pid} (node_ack_*: the supervisor marks its
 * dictionary while it runs a start function, and the start call records
 * the pid that will acknowledge); the supervisor waits for that message or
 * the child's exit before it starts the next one.  A child spawned some
 * other way is taken as started when its start function returns.
 */
#include <time.h>

#include "internal.h"

enum {
    S_STRATEGY, /* one_for_one | one_for_all | rest_for_one */
    S_INTENSITY,
    S_PERIOD,   /* ms */
    S_CHILDREN, /* child tuples, newest first */
    S_RESTARTS, /* restart times (ms), newest first */
    S_QUEUE,    /* ids still to stop, in stop order */
    S_CUR,      /* pid being stopped, or undefined */
    S_STAGE,    /* shutdown (the timer runs), kill or infinity (waiting only) */
    S_THEN,     /* what follows the stops, or undefined */
    S_PARENT,
    S_START_Q,   /* ids still to start, in start order */
    S_START_CUR, /* pid whose init acknowledgement is awaited, or undefined */
    S_START_CTX, /* why it starts: init | restart | {call, From, DeleteOnFailure} */
    S_ACK,       /* the starter to acknowledge once the start-up is done, or [] */
    S_N
};

/* A spec is the first C_PID fields of a child; the child adds its pid
 * (undefined when not running, restarting while a failed restart waits to
 * be retried). */
enum { C_ID, C_START, C_ARG, C_RESTART, C_SHUTDOWN, C_TYPE, C_PID, C_N };

/* Spawn argument: {Strategy, Intensity, Period, Specs (start order), Name,
 * Parent | [], AckTo | []}. */
enum { SA_STRATEGY, SA_INTENSITY, SA_PERIOD, SA_SPECS, SA_NAME, SA_PARENT, SA_ACK, SA_N };

#define SUP_PERIOD_DEFAULT_MS 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- terms ---- */

static term_t *fields(term_t t)
{
    return term_tuple_elems(t);
}

/* A copy of the state tuple with field i set to v (a new tuple: the old
 * one may sit in the old generation, which must not point at young data). */
static int set_field(sched_ctx_t *ctx, term_t *state, size_t i, term_t v)
{
    term_t *e, t;
    int rc = heap_make_tuple(sched_heap(ctx), S_N, &e, &t);
    if (rc != GD_OK)
        return rc;
    for (size_t k = 0; k < S_N; k++)
        e[k] = fields(*state)[k];
    e[i] = v;
    *state = t;
    return GD_OK;
}

/* A child's pid field is written in place: it only ever holds immediates
 * (a local pid or an atom), which a tuple in the old generation may hold
 * without breaking the collector's invariant that old data never points at
 * young data. */
static void child_set_pid(term_t child, term_t pid)
{
    GD_ASSERT(term_is_immediate(pid));
    fields(child)[C_PID] = pid;
}

static bool child_running(term_t child)
{
    return term_is_pid(fields(child)[C_PID]);
}

static term_t find_child(term_t children, term_t id)
{
    for (; term_is_list(children); children = term_cdr(children))
        if (node_term_eq(fields(term_car(children))[C_ID], id))
            return term_car(children);
    return TERM_NONE;
}

static term_t find_child_pid(term_t children, term_t pid)
{
    for (; term_is_list(children); children = term_cdr(children))
        if (fields(term_car(children))[C_PID] == pid)
            return term_car(children);
    return TERM_NONE;
}

static size_t list_len(term_t l)
{
    size_t n = 0;
    for (; term_is_list(l); l = term_cdr(l))
        n++;
    return n;
}

/* The reverse of list l. */
static int list_reverse(heap_t *h, term_t l, term_t *out)
{
    term_t r = TERM_NIL;
    for (; term_is_list(l); l = term_cdr(l)) {
        int rc = heap_cons(h, term_car(l), r, &r);
        if (rc != GD_OK)
            return rc;
    }
    *out = r;
    return GD_OK;
}

/* Removes the child `id` from the children list. */
static int delete_child(sched_ctx_t *ctx, term_t *state, term_t id)
{
    heap_t *h = sched_heap(ctx);
    term_t kept = TERM_NIL, out;
    for (term_t l = fields(*state)[S_CHILDREN]; term_is_list(l); l = term_cdr(l)) {
        if (node_term_eq(fields(term_car(l))[C_ID], id))
            continue;
        int rc = heap_cons(h, term_car(l), kept, &kept);
        if (rc != GD_OK)
            return rc;
    }
    int rc = list_reverse(h, kept, &out);
    return rc != GD_OK ? rc : set_field(ctx, state, S_CHILDREN, out);
}

/* The ids of the children that run, in stop order (newest first), among
 * the first `limit` children of the list (SIZE_MAX: all). */
static int running_ids(sched_ctx_t *ctx, term_t children, size_t limit, term_t *out)
{
    heap_t *h = sched_heap(ctx);
    term_t rev = TERM_NIL;
    for (size_t i = 0; i < limit && term_is_list(children); i++, children = term_cdr(children))
        if (child_running(term_car(children))) {
            int rc = heap_cons(h, fields(term_car(children))[C_ID], rev, &rev);
            if (rc != GD_OK)
                return rc;
        }
    return list_reverse(h, rev, out);
}

static int tuple2(heap_t *h, term_t a, term_t b, term_t *out)
{
    return heap_make_tuple_from(h, 2, (const term_t[]){a, b}, out);
}

static int tuple3(heap_t *h, term_t a, term_t b, term_t c, term_t *out)
{
    return heap_make_tuple_from(h, 3, (const term_t[]){a, b, c}, out);
}

/* True for a spec tuple every field of which is well formed (requests may
 * come from anywhere, so the supervisor checks before it keeps one). */
static bool spec_ok(term_t spec)
{
    if (!term_is_tuple(spec) || term_tuple_arity(spec) != C_PID)
        return false;
    term_t *f = fields(spec);
    term_t r = f[C_RESTART], s = f[C_SHUTDOWN], t = f[C_TYPE];
    return node_term_addr(f[C_START]) != 0 &&
           (r == node_atom.permanent || r == node_atom.transient || r == node_atom.temporary) &&
           ((term_is_small(s) && term_small_value(s) >= 0) || s == node_atom.brutal_kill ||
            s == node_atom.infinity) &&
           (t == node_atom.worker || t == node_atom.supervisor);
}

/* ---- starting ---- */

/* Starts child (its spec's start function) and records its pid; *acks
 * tells whether the child will acknowledge its init (see the top). */
static int start_child_proc(sched_ctx_t *ctx, term_t child, bool *acks)
{
    girder_start_fn start = (girder_start_fn)node_term_addr(fields(child)[C_START]);
    term_t pid;
    int rc = sched_dict_put(ctx, node_atom.ack_wanted, ATOM_TRUE, NULL);
    if (rc != GD_OK)
        return rc;
    rc = start(ctx, fields(child)[C_ARG], &pid);
    term_t acker = sched_dict_erase(ctx, node_atom.ack_wanted);
    if (rc != GD_OK)
        return rc;
    if (!term_is_local_pid(pid))
        return GD_EBADARG;
    /* Our own link besides the one the start function made (a no-op
     * then): an exit is seen even from a child spawned without one. */
    rc = sched_link(ctx, pid);
    if (rc != GD_OK)
        return rc;
    child_set_pid(child, pid);
    *acks = acker == pid;
    return GD_OK;
}

/* ---- stopping ---- */

/* Selective receive: the 'DOWN' of the child being stopped (its pid, an
 * immediate, is the argument). */
static bool is_down_of(term_t msg, void *arg)
{
    return node_is_tagged(msg, 5, ATOM_DOWN) && term_tuple_elems(msg)[3] == (term_t)(uintptr_t)arg;
}

static int run_then(sched_ctx_t *ctx, term_t *state, term_t then);

/* What queue_step found. */
enum queue_step { QS_BUSY, QS_EMPTY, QS_CHILD };

/*
 * One step of one of the supervisor's work queues (the stop queue S_QUEUE
 * with S_CUR the child being stopped; the start queue S_START_Q with
 * S_START_CUR the start awaiting its acknowledgement): QS_BUSY while the
 * current one is in progress, QS_EMPTY when the queue is done, else
 * QS_CHILD with the next id taken off the queue and *child its record
 * (TERM_NONE when it names no child any more).
 */
static int queue_step(sched_ctx_t *ctx, term_t *state, unsigned queue_field, unsigned cur_field,
                      enum queue_step *step, term_t *child)
{
    *step = QS_BUSY;
    if (fields(*state)[cur_field] != ATOM_UNDEFINED)
        return GD_OK;
    term_t queue = fields(*state)[queue_field];
    *step = QS_EMPTY;
    if (!term_is_list(queue))
        return GD_OK;
    *step = QS_CHILD;
    int rc = set_field(ctx, state, queue_field, term_cdr(queue));
    if (rc == GD_OK)
        *child = find_child(fields(*state)[S_CHILDREN], term_car(queue));
    return rc;
}

/*
 * Stops the next queued child, or, with the queue empty, runs S_THEN.
 * OTP's shutdown: monitor, unlink (an exit signal from the child is then
 * void), exit(Child, shutdown) — or kill for brutal_kill — and wait for the
 * 'DOWN'; after the child's shutdown time, kill and wait again.
 */
static int advance(sched_ctx_t *ctx, term_t *state)
{
    for (;;) {
        enum queue_step step;
        term_t child;
        int rc = queue_step(ctx, state, S_QUEUE, S_CUR, &step, &child);
        if (rc != GD_OK || step == QS_BUSY)
            return rc;
        if (step == QS_EMPTY) {
            term_t then = fields(*state)[S_THEN];
            if (then == ATOM_UNDEFINED)
                return GD_OK;
            rc = set_field(ctx, state, S_THEN, ATOM_UNDEFINED);
            return rc != GD_OK ? rc : run_then(ctx, state, then);
        }
        if (child == TERM_NONE || !child_running(child))
            continue;
        term_t pid = fields(child)[C_PID], shutdown = fields(child)[C_SHUTDOWN], ref;
        rc = sched_monitor(ctx, pid, &ref);
        if (rc == GD_OK)
            rc = sched_unlink(ctx, pid);
        if (rc == GD_OK)
            rc = sched_exit_pid(ctx, pid,
                                shutdown == node_atom.brutal_kill ? ATOM_KILL : node_atom.shutdown);
        term_t stage = term_is_small(shutdown)          ? node_atom.shutdown
                       : shutdown == node_atom.infinity ? node_atom.infinity
                                                        : ATOM_KILL;
        if (rc == GD_OK)
            rc = set_field(ctx, state, S_CUR, pid);
        if (rc == GD_OK)
            rc = set_field(ctx, state, S_STAGE, stage);
        if (rc != GD_OK)
            return rc;
        if (term_is_small(shutdown))
            sched_set_timeout(ctx, term_small_value(shutdown));
        sched_receive(ctx, is_down_of, (void *)(uintptr_t)pid);
        return GD_OK;
    }
}

/* Queues the stop of `ids` (stop order), then `then`. */
static int begin_stop(sched_ctx_t *ctx, term_t *state, term_t ids, term_t then)
{
    int rc = set_field(ctx, state, S_QUEUE, ids);
    if (rc == GD_OK)
        rc = set_field(ctx, state, S_THEN, then);
    return rc != GD_OK ? rc : advance(ctx, state);
}

/* Stops every child, then exits with reason. */
static int stop_all_then_exit(sched_ctx_t *ctx, term_t *state, term_t reason)
{
    term_t ids, then;
    int rc = running_ids(ctx, fields(*state)[S_CHILDREN], SIZE_MAX, &ids);
    if (rc == GD_OK)
        rc = tuple2(sched_heap(ctx), node_atom.sup_stop, reason, &then);
    return rc != GD_OK ? rc : begin_stop(ctx, state, ids, then);
}

/* The child being stopped is down. */
static int stopped(sched_ctx_t *ctx, term_t *state)
{
    term_t child = find_child_pid(fields(*state)[S_CHILDREN], fields(*state)[S_CUR]);
    if (child != TERM_NONE)
        child_set_pid(child, ATOM_UNDEFINED);
    int rc = set_field(ctx, state, S_CUR, ATOM_UNDEFINED);
    return rc != GD_OK ? rc : advance(ctx, state);
}

/* The shutdown timer ran out: kill the child and wait for its 'DOWN'. */
static int shutdown_timeout(sched_ctx_t *ctx, term_t *state)
{
    term_t pid = fields(*state)[S_CUR];
    if (pid == ATOM_UNDEFINED || fields(*state)[S_STAGE] != node_atom.shutdown)
        return GD_OK; /* a stale timeout */
    int rc = sched_exit_pid(ctx, pid, ATOM_KILL);
    if (rc == GD_OK)
        rc = set_field(ctx, state, S_STAGE, ATOM_KILL);
    if (rc != GD_OK)
        return rc;
    sched_receive(ctx, is_down_of, (void *)(uintptr_t)pid);
    return GD_OK;
}

/* ---- restarting ---- */

/* Asks for another try at starting child `id` later (OTP's
 * try_again_restart): a message to itself, handled like an exit of the
 * child, so each try counts towards the intensity. */
static int retry_later(sched_ctx_t *ctx, term_t child)
{
    child_set_pid(child, node_atom.restarting);
    term_t elems[2] = {node_atom.sup_retry, fields(child)[C_ID]};
    return node_send_tuple(ctx, sched_self(ctx), elems, 2);
}

/* Selective receive while a start waits: the child's acknowledgement or
 * its exit (its pid is the argument). */
static bool is_ack_or_exit_of(term_t msg, void *arg)
{
    term_t pid = (term_t)(uintptr_t)arg;
    return (node_is_tagged(msg, 2, node_atom.ack) && term_tuple_elems(msg)[1] == pid) ||
           (node_is_tagged(msg, 3, ATOM_EXIT) && term_tuple_elems(msg)[1] == pid);
}

static int start_failed(sched_ctx_t *ctx, term_t *state, term_t child, term_t reason);
static int reply_error(sched_ctx_t *ctx, term_t from, term_t why);
static int stop_all_then_exit(sched_ctx_t *ctx, term_t *state, term_t reason);

/* The start queue is empty: what its context asked for. */
static int start_done(sched_ctx_t *ctx, term_t *state, term_t child)
{
    term_t why = fields(*state)[S_START_CTX], r;
    int rc = set_field(ctx, state, S_START_CTX, ATOM_UNDEFINED);
    if (rc != GD_OK)
        return rc;
    if (why == node_atom.init_atom && fields(*state)[S_ACK] != TERM_NIL) {
        /* A supervisor is started once its children are. */
        term_t elems[2] = {node_atom.ack, sched_self(ctx)};
        return node_send_tuple(ctx, fields(*state)[S_ACK], elems, 2);
    }
    if (!node_is_tagged(why, 3, node_atom.call))
        return GD_OK;
    if (child == TERM_NONE)
        return reply_error(ctx, fields(why)[1], node_atom.not_found);
    rc = tuple2(sched_heap(ctx), ATOM_OK, fields(child)[C_PID], &r);
    return rc != GD_OK ? rc : girder_reply(ctx, fields(why)[1], r);
}

/*
 * Starts the queued children, one at a time: each start that will be
 * acknowledged waits (selective receive) for the acknowledgement or the
 * child's exit before the next.  Children that run already are skipped;
 * in a restart temporary ones are not restarted but deleted, as OTP does.
 */
static int start_next(sched_ctx_t *ctx, term_t *state)
{
    term_t last = TERM_NONE;
    for (;;) {
        enum queue_step step;
        term_t child;
        int rc = queue_step(ctx, state, S_START_Q, S_START_CUR, &step, &child);
        if (rc != GD_OK || step == QS_BUSY)
            return rc;
        if (step == QS_EMPTY)
            return fields(*state)[S_START_CTX] == ATOM_UNDEFINED ? GD_OK
                                                                 : start_done(ctx, state, last);
        if (child == TERM_NONE || child_running(child))
            continue;
        if (fields(*state)[S_START_CTX] == node_atom.restart_atom &&
            fields(child)[C_RESTART] == node_atom.temporary) {
            rc = delete_child(ctx, state, fields(child)[C_ID]);
            if (rc != GD_OK)
                return rc;
            continue;
        }
        bool acks = false;
        rc = start_child_proc(ctx, child, &acks);
        if (rc == GD_ENOMEM || rc == SCHED_ESTOPPED)
            return rc;
        if (rc != GD_OK)
            return start_failed(ctx, state, child, node_callback_error(ctx, rc));
        last = child;
        if (acks) {
            term_t pid = fields(child)[C_PID];
            rc = set_field(ctx, state, S_START_CUR, pid);
            if (rc != GD_OK)
                return rc;
            sched_receive(ctx, is_ack_or_exit_of, (void *)(uintptr_t)pid);
            return GD_OK;
        }
    }
}

/* Queues the start of `ids` (start order) for reason `why`. */
static int begin_start(sched_ctx_t *ctx, term_t *state, term_t ids, term_t why)
{
    int rc = set_field(ctx, state, S_START_Q, ids);
    if (rc == GD_OK)
        rc = set_field(ctx, state, S_START_CTX, why);
    return rc != GD_OK ? rc : start_next(ctx, state);
}

/* A start failed (its function returned an error, or the child exited
 * before it acknowledged its init): what follows depends on the context. */
static int start_failed(sched_ctx_t *ctx, term_t *state, term_t child, term_t reason)
{
    term_t why = fields(*state)[S_START_CTX], id = fields(child)[C_ID];
    child_set_pid(child, ATOM_UNDEFINED);
    int rc = set_field(ctx, state, S_START_CUR, ATOM_UNDEFINED);
    if (rc != GD_OK)
        return rc;
    if (why == node_atom.restart_atom) {
        /* OTP's try_again_restart; the other queued children go on. */
        rc = retry_later(ctx, child);
        return rc != GD_OK ? rc : start_next(ctx, state);
    }
    /* The start-up or a call: nothing more is started. */
    rc = set_field(ctx, state, S_START_Q, TERM_NIL);
    if (rc == GD_OK)
        rc = set_field(ctx, state, S_START_CTX, ATOM_UNDEFINED);
    if (rc != GD_OK)
        return rc;
    if (why == node_atom.init_atom) {
        /* {shutdown, {failed_to_start_child, Id, Reason}} once the
         * children started so far are stopped. */
        term_t inner, exit_reason;
        heap_t *h = sched_heap(ctx);
        rc = tuple3(h, node_atom.failed_to_start_child, id, reason, &inner);
        if (rc == GD_OK)
            rc = tuple2(h, node_atom.shutdown, inner, &exit_reason);
        return rc != GD_OK ? rc : stop_all_then_exit(ctx, state, exit_reason);
    }
    /* start_child drops the spec of a child that fails; restart_child
     * keeps it. */
    if (fields(why)[2] == ATOM_TRUE) {
        rc = delete_child(ctx, state, id);
        if (rc != GD_OK)
            return rc;
    }
    return reply_error(ctx, fields(why)[1], reason);
}

/* The child being started acknowledged its init. */
static int start_acked(sched_ctx_t *ctx, term_t *state)
{
    term_t child = find_child_pid(fields(*state)[S_CHILDREN], fields(*state)[S_START_CUR]);
    int rc = set_field(ctx, state, S_START_CUR, ATOM_UNDEFINED);
    if (rc != GD_OK)
        return rc;
    if (!term_is_list(fields(*state)[S_START_Q]) && child != TERM_NONE)
        return start_done(ctx, state, child);
    return start_next(ctx, state);
}

/* Records a restart; true in *exceeded when there were more than
 * intensity restarts within the period (OTP's add_restart). */
static int add_restart(sched_ctx_t *ctx, term_t *state, bool *exceeded)
{
    heap_t *h = sched_heap(ctx);
    int64_t now = now_ms(), threshold = now - term_small_value(fields(*state)[S_PERIOD]);
    term_t kept = TERM_NIL, r;
    size_t n = 1;
    for (term_t l = fields(*state)[S_RESTARTS]; term_is_list(l); l = term_cdr(l)) {
        if (term_small_value(term_car(l)) < threshold)
            break; /* newest first: the rest are older */
        int rc = heap_cons(h, term_car(l), kept, &kept);
        if (rc != GD_OK)
            return rc;
        n++;
    }
    int rc = list_reverse(h, kept, &r);
    if (rc == GD_OK)
        rc = heap_cons(h, term_make_small(now), r, &r);
    if (rc == GD_OK)
        rc = set_field(ctx, state, S_RESTARTS, r);
    *exceeded = n > (size_t)term_small_value(fields(*state)[S_INTENSITY]);
    return rc;
}

/* Child `child` (not running now) must be restarted: by the strategy,
 * unless the intensity is exceeded. */
static int restart(sched_ctx_t *ctx, term_t *state, term_t child)
{
    bool exceeded;
    int rc = add_restart(ctx, state, &exceeded);
    if (rc != GD_OK)
        return rc;
    if (exceeded)
        return stop_all_then_exit(ctx, state, node_atom.shutdown);
    heap_t *h = sched_heap(ctx);
    term_t id = fields(child)[C_ID], strategy = fields(*state)[S_STRATEGY];
    term_t children = fields(*state)[S_CHILDREN];
    if (strategy == node_atom.one_for_one) {
        term_t ids;
        rc = heap_cons(h, id, TERM_NIL, &ids);
        return rc != GD_OK ? rc : begin_start(ctx, state, ids, node_atom.restart_atom);
    }
    /* one_for_all: every child; rest_for_one: the child and those started
     * after it, which precede it in the newest-first list. */
    size_t group = 0;
    if (strategy == node_atom.rest_for_one) {
        for (term_t l = children; term_is_list(l) && term_car(l) != child; l = term_cdr(l))
            group++;
        group++;
    } else {
        group = list_len(children);
    }
    term_t to_stop, to_start = TERM_NIL, then;
    rc = running_ids(ctx, children, group, &to_stop);
    size_t i = 0;
    for (term_t l = children; rc == GD_OK && i < group && term_is_list(l); l = term_cdr(l), i++)
        rc = heap_cons(h, fields(term_car(l))[C_ID], to_start, &to_start);
    if (rc == GD_OK)
        rc = tuple2(h, node_atom.sup_restart, to_start, &then);
    return rc != GD_OK ? rc : begin_stop(ctx, state, to_stop, then);
}

static bool is_shutdown_reason(term_t reason)
{
    return reason == ATOM_NORMAL || reason == node_atom.shutdown ||
           node_is_tagged(reason, 2, node_atom.shutdown);
}

/* A child exited with reason. */
static int child_exited(sched_ctx_t *ctx, term_t *state, term_t child, term_t reason)
{
    child_set_pid(child, ATOM_UNDEFINED);
    term_t restart_type = fields(child)[C_RESTART];
    if (restart_type == node_atom.temporary)
        return delete_child(ctx, state, fields(child)[C_ID]);
    if (restart_type == node_atom.transient && is_shutdown_reason(reason))
        return GD_OK;
    return restart(ctx, state, child);
}

static int run_then(sched_ctx_t *ctx, term_t *state, term_t then)
{
    term_t *f = fields(then);
    if (f[0] == node_atom.sup_restart)
        return begin_start(ctx, state, f[1], node_atom.restart_atom);
    if (f[0] == node_atom.sup_reply) {
        /* terminate_child done: a temporary child's spec goes too. */
        term_t child = find_child(fields(*state)[S_CHILDREN], f[2]);
        if (child != TERM_NONE && fields(child)[C_RESTART] == node_atom.temporary) {
            int rc = delete_child(ctx, state, f[2]);
            if (rc != GD_OK)
                return rc;
        }
        return girder_reply(ctx, f[1], ATOM_OK);
    }
    return sched_exit(ctx, f[1]); /* sup_stop */
}

/* ---- calls ---- */

static int reply_error(sched_ctx_t *ctx, term_t from, term_t why)
{
    term_t r;
    int rc = tuple2(sched_heap(ctx), ATOM_ERROR, why, &r);
    return rc != GD_OK ? rc : girder_reply(ctx, from, r);
}

/* Adds a spec (from a start_child request or the start-up list) as the
 * newest child; *child_out is the new child tuple. */
static int add_child(sched_ctx_t *ctx, term_t *state, term_t spec, term_t *child_out)
{
    term_t *e, children;
    int rc = heap_make_tuple(sched_heap(ctx), C_N, &e, child_out);
    if (rc != GD_OK)
        return rc;
    for (size_t i = 0; i < C_PID; i++)
        e[i] = fields(spec)[i];
    e[C_PID] = ATOM_UNDEFINED;
    rc = heap_cons(sched_heap(ctx), *child_out, fields(*state)[S_CHILDREN], &children);
    return rc != GD_OK ? rc : set_field(ctx, state, S_CHILDREN, children);
}

/* Starts child id for a call; the reply ({ok, Pid} or {error, Reason})
 * goes out once it has started or failed. */
static int start_one(sched_ctx_t *ctx, term_t *state, term_t from, term_t id, term_t delete)
{
    heap_t *h = sched_heap(ctx);
    term_t ids, why;
    int rc = heap_cons(h, id, TERM_NIL, &ids);
    if (rc == GD_OK)
        rc = tuple3(h, node_atom.call, from, delete, &why);
    return rc != GD_OK ? rc : begin_start(ctx, state, ids, why);
}

static int call_start_child(sched_ctx_t *ctx, term_t *state, term_t from, term_t spec)
{
    heap_t *h = sched_heap(ctx);
    if (!spec_ok(spec))
        return reply_error(ctx, from, ATOM_BADARG);
    term_t child = find_child(fields(*state)[S_CHILDREN], fields(spec)[C_ID]), r;
    int rc;
    if (child != TERM_NONE) {
        if (!child_running(child))
            return reply_error(ctx, from, node_atom.already_present);
        rc = tuple2(h, node_atom.already_started, fields(child)[C_PID], &r);
        return rc != GD_OK ? rc : reply_error(ctx, from, r);
    }
    rc = add_child(ctx, state, spec, &child);
    return rc != GD_OK ? rc : start_one(ctx, state, from, fields(spec)[C_ID], ATOM_TRUE);
}

static int call_restart_child(sched_ctx_t *ctx, term_t *state, term_t from, term_t id)
{
    term_t child = find_child(fields(*state)[S_CHILDREN], id);
    if (child == TERM_NONE)
        return reply_error(ctx, from, node_atom.not_found);
    if (child_running(child))
        return reply_error(ctx, from, node_atom.running);
    return start_one(ctx, state, from, id, ATOM_FALSE);
}

static int call_delete_child(sched_ctx_t *ctx, term_t *state, term_t from, term_t id)
{
    term_t child = find_child(fields(*state)[S_CHILDREN], id);
    if (child == TERM_NONE)
        return reply_error(ctx, from, node_atom.not_found);
    if (child_running(child))
        return reply_error(ctx, from, node_atom.running);
    int rc = delete_child(ctx, state, id);
    return rc != GD_OK ? rc : girder_reply(ctx, from, ATOM_OK);
}

static int call_terminate_child(sched_ctx_t *ctx, term_t *state, term_t from, term_t id)
{
    term_t child = find_child(fields(*state)[S_CHILDREN], id), ids, then;
    if (child == TERM_NONE)
        return reply_error(ctx, from, node_atom.not_found);
    heap_t *h = sched_heap(ctx);
    int rc = tuple3(h, node_atom.sup_reply, from, id, &then);
    if (rc != GD_OK)
        return rc;
    if (!child_running(child))
        return run_then(ctx, state, then);
    rc = heap_cons(h, id, TERM_NIL, &ids);
    return rc != GD_OK ? rc : begin_stop(ctx, state, ids, then);
}

/* [{Id, Pid | undefined | restarting, Type, Modules}], newest first as
 * OTP 25 lists them. */
static int call_which_children(sched_ctx_t *ctx, term_t *state, term_t from)
{
    heap_t *h = sched_heap(ctx);
    term_t out = TERM_NIL;
    for (term_t l = fields(*state)[S_CHILDREN]; term_is_list(l); l = term_cdr(l)) {
        term_t *f = fields(term_car(l)), *e, item;
        int rc = heap_make_tuple(h, 4, &e, &item);
        if (rc == GD_OK) {
            e[0] = f[C_ID];
            e[1] = f[C_PID];
            e[2] = f[C_TYPE];
            e[3] = TERM_NIL; /* C children have no modules to name */
            rc = heap_cons(h, item, out, &out);
        }
        if (rc != GD_OK)
            return rc;
    }
    int rc = list_reverse(h, out, &out);
    return rc != GD_OK ? rc : girder_reply(ctx, from, out);
}

/* [{specs, N}, {active, N}, {supervisors, N}, {workers, N}]. */
static int call_count_children(sched_ctx_t *ctx, term_t *state, term_t from)
{
    int64_t n[4] = {0, 0, 0, 0};
    for (term_t l = fields(*state)[S_CHILDREN]; term_is_list(l); l = term_cdr(l)) {
        term_t c = term_car(l);
        n[0]++;
        n[1] += child_running(c);
        n[fields(c)[C_TYPE] == node_atom.supervisor ? 2 : 3]++;
    }
    term_t keys[4] = {node_atom.specs, node_atom.active, node_atom.supervisors, node_atom.workers};
    term_t items[4], list;
    heap_t *h = sched_heap(ctx);
    for (int i = 0; i < 4; i++) {
        int rc = tuple2(h, keys[i], term_make_small(n[i]), &items[i]);
        if (rc != GD_OK)
            return rc;
    }
    int rc = heap_make_list(h, items, 4, &list);
    return rc != GD_OK ? rc : girder_reply(ctx, from, list);
}

static int handle_call(sched_ctx_t *ctx, term_t *state, term_t from, term_t req)
{
    if (req == node_atom.which_children)
        return call_which_children(ctx, state, from);
    if (req == node_atom.count_children)
        return call_count_children(ctx, state, from);
    if (term_is_tuple(req) && term_tuple_arity(req) == 2) {
        term_t op = fields(req)[0], x = fields(req)[1];
        if (op == node_atom.start_child)
            return call_start_child(ctx, state, from, x);
        if (op == node_atom.terminate_child)
            return call_terminate_child(ctx, state, from, x);
        if (op == node_atom.restart_child)
            return call_restart_child(ctx, state, from, x);
        if (op == node_atom.delete_child)
            return call_delete_child(ctx, state, from, x);
    }
    return reply_error(ctx, from, ATOM_BADARG);
}

/* ---- the behaviour ---- */

static int sup_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t *a = fields(arg);
    sched_trap_exit(ctx, true);
    rc = node_register_name(ctx, a[SA_NAME]);
    if (rc != GD_OK)
        return rc;
    term_t *e;
    rc = heap_make_tuple(sched_heap(ctx), S_N, &e, state);
    if (rc != GD_OK)
        return rc;
    e[S_STRATEGY] = a[SA_STRATEGY];
    e[S_INTENSITY] = a[SA_INTENSITY];
    e[S_PERIOD] = a[SA_PERIOD];
    e[S_CHILDREN] = TERM_NIL;
    e[S_RESTARTS] = TERM_NIL;
    e[S_QUEUE] = TERM_NIL;
    e[S_CUR] = ATOM_UNDEFINED;
    e[S_STAGE] = ATOM_UNDEFINED;
    e[S_THEN] = ATOM_UNDEFINED;
    e[S_PARENT] = a[SA_PARENT] == TERM_NIL ? sched_self(ctx) : a[SA_PARENT];
    e[S_START_Q] = TERM_NIL;
    e[S_START_CUR] = ATOM_UNDEFINED;
    e[S_START_CTX] = ATOM_UNDEFINED;
    e[S_ACK] = a[SA_ACK];
    heap_t *h = sched_heap(ctx);
    term_t rev = TERM_NIL, ids;
    for (term_t l = a[SA_SPECS]; term_is_list(l); l = term_cdr(l)) {
        term_t child;
        rc = add_child(ctx, state, term_car(l), &child);
        if (rc == GD_OK)
            rc = heap_cons(h, fields(child)[C_ID], rev, &rev);
        if (rc != GD_OK)
            return rc;
    }
    rc = list_reverse(h, rev, &ids);
    return rc != GD_OK ? rc : begin_start(ctx, state, ids, node_atom.init_atom);
}

static int sup_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    if (msg == node_atom.timeout)
        return shutdown_timeout(ctx, state);
    if (node_is_tagged(msg, 5, ATOM_DOWN)) {
        if (fields(msg)[3] == fields(*state)[S_CUR])
            return stopped(ctx, state);
        return GD_OK;
    }
    if (node_is_tagged(msg, 2, node_atom.ack)) {
        if (fields(msg)[1] == fields(*state)[S_START_CUR])
            return start_acked(ctx, state);
        return GD_OK;
    }
    if (node_is_tagged(msg, 3, ATOM_EXIT)) {
        term_t from = fields(msg)[1], reason = fields(msg)[2];
        if (from == fields(*state)[S_START_CUR]) {
            term_t child = find_child_pid(fields(*state)[S_CHILDREN], from);
            if (child != TERM_NONE)
                return start_failed(ctx, state, child, reason);
        }
        if (from == fields(*state)[S_PARENT])
            return stop_all_then_exit(ctx, state, reason);
        term_t child = find_child_pid(fields(*state)[S_CHILDREN], from);
        return child == TERM_NONE ? GD_OK : child_exited(ctx, state, child, reason);
    }
    if (node_is_tagged(msg, 2, node_atom.sup_retry)) {
        term_t child = find_child(fields(*state)[S_CHILDREN], fields(msg)[1]);
        if (child == TERM_NONE || fields(child)[C_PID] != node_atom.restarting)
            return GD_OK;
        child_set_pid(child, ATOM_UNDEFINED);
        return restart(ctx, state, child);
    }
    if (node_is_tagged(msg, 3, node_atom.gen_call))
        return handle_call(ctx, state, fields(msg)[1], fields(msg)[2]);
    if (node_is_tagged(msg, 3, node_atom.system)) {
        term_t from = fields(msg)[1], req = fields(msg)[2];
        if (req == node_atom.get_state)
            return girder_reply(ctx, from, *state);
        if (node_is_tagged(req, 2, node_atom.terminate)) {
            int rc = girder_reply(ctx, from, ATOM_OK);
            return rc != GD_OK ? rc : stop_all_then_exit(ctx, state, fields(req)[1]);
        }
        term_t why;
        int rc = tuple2(sched_heap(ctx), node_atom.unknown_system_msg, req, &why);
        return rc != GD_OK ? rc : reply_error(ctx, from, why);
    }
    return GD_OK; /* casts and other messages: OTP logs and ignores them */
}

static const sched_behaviour_t sup_beh = {sup_init, sup_handle, NULL, NULL};

/* The spec tuple of a C child spec on h. */
static int spec_term(heap_t *h, const girder_child_spec_t *s, term_t *out)
{
    if (s->start == NULL || (unsigned)s->restart > GIRDER_TEMPORARY ||
        (unsigned)s->type > GIRDER_SUPERVISOR ||
        (s->shutdown < 0 && s->shutdown != GIRDER_SHUTDOWN_BRUTAL_KILL &&
         s->shutdown != GIRDER_SHUTDOWN_INFINITY) ||
        s->shutdown > SMALL_MAX)
        return GD_EINVAL;
    term_t *e;
    int rc = heap_make_tuple(h, C_PID, &e, out);
    if (rc != GD_OK)
        return rc;
    e[C_ID] = s->id;
    rc = node_addr_term((uintptr_t)s->start, &e[C_START]);
    if (rc != GD_OK)
        return rc;
    e[C_ARG] = s->arg;
    const term_t restarts[] = {node_atom.permanent, node_atom.transient, node_atom.temporary};
    e[C_RESTART] = restarts[s->restart];
    e[C_SHUTDOWN] = s->shutdown == GIRDER_SHUTDOWN_BRUTAL_KILL ? node_atom.brutal_kill
                    : s->shutdown == GIRDER_SHUTDOWN_INFINITY  ? node_atom.infinity
                                                               : term_make_small(s->shutdown);
    e[C_TYPE] = s->type == GIRDER_SUPERVISOR ? node_atom.supervisor : node_atom.worker;
    return GD_OK;
}

int girder_sup_child_request(heap_t *h, const girder_child_spec_t *spec, term_t *request_out)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t s;
    rc = spec_term(h, spec, &s);
    return rc != GD_OK ? rc : tuple2(h, node_atom.start_child, s, request_out);
}

int girder_sup_start(sched_ctx_t *ctx, const girder_sup_flags_t *flags,
                     const girder_child_spec_t *children, size_t n, const girder_gen_opts_t *opts,
                     term_t *pid_out)
{
    static const girder_gen_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    if (flags == NULL || (unsigned)flags->strategy > GIRDER_REST_FOR_ONE ||
        (children == NULL && n > 0))
        return GD_EINVAL;
    term_t elems[SA_N];
    int rc = node_start_name(ctx, opts, &elems[SA_NAME]);
    if (rc != GD_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (node_term_eq(children[i].id, children[j].id))
                return GD_EINVAL;
    heap_t scratch, *h = ctx != NULL ? sched_heap(ctx) : &scratch;
    if (ctx == NULL) {
        rc = heap_init(&scratch, 0);
        if (rc != GD_OK)
            return rc;
    }
    /* The specs as a list in start order, built from the last. */
    term_t specs = TERM_NIL;
    for (size_t i = n; rc == GD_OK && i-- > 0;) {
        term_t s;
        rc = spec_term(h, &children[i], &s);
        if (rc == GD_OK)
            rc = heap_cons(h, s, specs, &specs);
    }
    if (rc == GD_OK) {
        const term_t strategies[] = {node_atom.one_for_one, node_atom.one_for_all,
                                     node_atom.rest_for_one};
        elems[SA_STRATEGY] = strategies[flags->strategy];
        elems[SA_INTENSITY] = term_make_small(flags->intensity);
        elems[SA_PERIOD] =
            term_make_small(flags->period_ms != 0 ? flags->period_ms : SUP_PERIOD_DEFAULT_MS);
        elems[SA_SPECS] = specs;
        elems[SA_PARENT] = opts->link ? sched_self(ctx) : TERM_NIL;
        elems[SA_ACK] = node_ack_to(ctx, opts->link);
        /* node_start builds the argument tuple on ctx's heap: with ctx NULL
         * the specs on the scratch heap stay readable until it is freed. */
        rc = node_start(ctx, &sup_beh, opts, elems, SA_N, SA_ACK, pid_out);
    }
    if (ctx == NULL)
        heap_destroy(&scratch);
    return rc;
}
