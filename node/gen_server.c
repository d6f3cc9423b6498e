/*
 * gen_server.c — OTP's gen_server on a behaviour process: the server loop
 * (message decoding, callbacks, replies, system messages, the parent's exit)
 * and the client operations that never block (cast, reply, start).
 *
 * The process is a sched behaviour whose state is the user's state itself;
 * the callback table and the parent ride in the process dictionary (an
 * address as a small integer, a pid), so they are roots like the state and
 * nothing outside the heap needs freeing when the process dies.
 */
#include "internal.h"

/* Spawn argument of a server: {ModAddr, Name | [], Parent | [], UserArg,
 * AckTo | []}. */
enum { GA_MOD, GA_NAME, GA_PARENT, GA_ARG, GA_ACK, GA_N };

static const girder_gen_server_t *server_mod(sched_ctx_t *ctx)
{
    return (const girder_gen_server_t *)node_term_addr(sched_dict_get(ctx, node_atom.gen_mod));
}

static girder_ret_t ret_default(void)
{
    return (girder_ret_t){GIRDER_NOREPLY, TERM_NONE, TERM_NONE, -1};
}

/* Ends the server with reason after its terminate callback (OTP's
 * terminate/8: the callback runs, then the process exits). */
static int stop_server(sched_ctx_t *ctx, const girder_gen_server_t *mod, term_t reason,
                       term_t state)
{
    if (mod->terminate != NULL)
        mod->terminate(ctx, reason, state);
    return sched_exit(ctx, reason);
}

/* A reply whose failure does not end the server: as gen:reply/2, a reply
 * that cannot be delivered is dropped; only a lack of memory (or a stopped
 * node) is the server's problem. */
static int reply_quiet(sched_ctx_t *ctx, term_t from, term_t reply)
{
    int rc = girder_reply(ctx, from, reply);
    return rc == GD_ENOMEM || rc == SCHED_ESTOPPED ? rc : GD_OK;
}

/*
 * Acts on a callback's result.  rc is the callback's return code; `from`
 * is the caller for handle_call, else TERM_NONE.  Crashes (rc < 0) call
 * terminate with {callback_error, rc}, as OTP calls terminate after a
 * callback raised; SCHED_EEXIT (the callback used sched_exit) passes
 * through untouched.
 */
static int finish(sched_ctx_t *ctx, const girder_gen_server_t *mod, int rc, term_t from,
                  term_t *state, const girder_ret_t *ret)
{
    if (rc == SCHED_EEXIT)
        return rc;
    if (rc == GD_OK && ret->action == GIRDER_REPLY && from == TERM_NONE)
        rc = GD_EINVAL; /* {reply, ...} outside handle_call: OTP's bad_return_value */
    if (rc == GD_OK && (unsigned)ret->action > GIRDER_STOP)
        rc = GD_EINVAL;
    if (rc != GD_OK)
        return stop_server(ctx, mod, node_callback_error(ctx, rc), *state);
    switch (ret->action) {
    case GIRDER_REPLY:
        rc = reply_quiet(ctx, from, ret->reply);
        if (rc != GD_OK)
            return stop_server(ctx, mod, node_callback_error(ctx, rc), *state);
        break;
    case GIRDER_STOP: {
        /* gen_server: terminate first, then the reply (its `after`). */
        if (mod->terminate != NULL)
            mod->terminate(ctx, ret->reason, *state);
        if (from != TERM_NONE && ret->reply != TERM_NONE) {
            /* The server exits either way: a reply it cannot send changes
             * nothing (the caller's monitor reports the exit). */
            int ignored = girder_reply(ctx, from, ret->reply);
            (void)ignored;
        }
        return sched_exit(ctx, ret->reason);
    }
    case GIRDER_NOREPLY:
        break;
    }
    if (ret->timeout_ms >= 0)
        sched_set_timeout(ctx, ret->timeout_ms);
    return GD_OK;
}

/* The tuple items[0..n) on h; after a failure (*rc < 0) nothing is built. */
static term_t tuple_of(heap_t *h, int *rc, size_t n, const term_t *items)
{
    term_t t = TERM_NIL;
    if (*rc == GD_OK)
        *rc = heap_make_tuple_from(h, n, items, &t);
    return t;
}

/* [car | cdr] on h, as tuple_of. */
static term_t cons_of(heap_t *h, int *rc, term_t car, term_t cdr)
{
    term_t t = TERM_NIL;
    if (*rc == GD_OK)
        *rc = heap_cons(h, car, cdr, &t);
    return t;
}

/* The C string text as an Erlang string (a list of its bytes) on h. */
static term_t string_of(heap_t *h, int *rc, const char *text)
{
    term_t s = TERM_NIL;
    for (size_t i = strlen(text); i > 0; i--)
        s = cons_of(h, rc, term_make_small((unsigned char)text[i - 1]), s);
    return s;
}

/* The answer to sys:get_status, in gen_server's shape (what observer and
 * sys users match): {status, Pid, {module, gen_server}, [PDict, SysState,
 * Parent, Debug, [{header, "Status for generic server Name"}, {data,
 * [{"Status", SysState}, {"Parent", Parent}, {"Logged events", []}]},
 * {data, [{"State", State}]}]]}.  The dictionary shows as [] (girder's
 * holds the callback table's address, nothing of the user's). */
static int status_term(sched_ctx_t *ctx, term_t state, term_t *out)
{
    heap_t *h = sched_heap(ctx);
    int rc = GD_OK;
    term_t self = sched_self(ctx), parent = sched_dict_get(ctx, node_atom.gen_parent);
    term_t sys_state = sched_dict_get(ctx, node_atom.gen_suspended) == ATOM_TRUE
                           ? node_atom.suspended
                           : node_atom.running;
    sched_process_info_t info;
    term_t name = sched_process_info(self, &info) == GD_OK ? info.registered_name : TERM_NIL;
    char header[320] = "Status for generic server ";
    if (term_is_atom(name)) {
        size_t len;
        const char *text = heap_atom_text(name, &len);
        size_t at = strlen(header);
        if (text != NULL && len < sizeof header - at) {
            memcpy(header + at, text, len);
            header[at + len] = 0;
        }
    }
    term_t hdr_items[2] = {node_atom.header, string_of(h, &rc, header)};
    term_t st_items[2] = {string_of(h, &rc, "Status"), sys_state};
    term_t pa_items[2] = {string_of(h, &rc, "Parent"), parent};
    term_t ev_items[2] = {string_of(h, &rc, "Logged events"), TERM_NIL};
    term_t sys_data = cons_of(h, &rc, tuple_of(h, &rc, 2, ev_items), TERM_NIL);
    sys_data = cons_of(h, &rc, tuple_of(h, &rc, 2, pa_items), sys_data);
    sys_data = cons_of(h, &rc, tuple_of(h, &rc, 2, st_items), sys_data);
    term_t state_items[2] = {string_of(h, &rc, "State"), state};
    term_t state_data = cons_of(h, &rc, tuple_of(h, &rc, 2, state_items), TERM_NIL);
    term_t d1[2] = {node_atom.data, sys_data}, d2[2] = {node_atom.data, state_data};
    term_t misc = cons_of(h, &rc, tuple_of(h, &rc, 2, d2), TERM_NIL);
    misc = cons_of(h, &rc, tuple_of(h, &rc, 2, d1), misc);
    misc = cons_of(h, &rc, tuple_of(h, &rc, 2, hdr_items), misc);
    term_t items[5] = {TERM_NIL, sys_state, parent, TERM_NIL, misc}, list = TERM_NIL;
    for (size_t i = 5; i > 0; i--)
        list = cons_of(h, &rc, items[i - 1], list);
    term_t mod_items[2] = {node_atom.module, node_atom.gen_server};
    term_t top[4] = {node_atom.status, self, tuple_of(h, &rc, 2, mod_items), list};
    *out = tuple_of(h, &rc, 4, top);
    return rc;
}

/* While suspended only system messages are taken (sys's suspend loop);
 * the others wait in the queue, in order, until resume. */
static bool is_system_msg(term_t msg, void *arg)
{
    (void)arg;
    return node_is_tagged(msg, 3, node_atom.system);
}

/* sys messages: {system, From, Request}. */
static int handle_system(sched_ctx_t *ctx, const girder_gen_server_t *mod, term_t from, term_t req,
                         term_t *state)
{
    /* A selection lasts one delivery: renewed after each system message
     * taken while suspended. */
    if (sched_dict_get(ctx, node_atom.gen_suspended) == ATOM_TRUE && req != node_atom.resume)
        sched_receive(ctx, is_system_msg, NULL);
    if (req == node_atom.get_state)
        return reply_quiet(ctx, from, *state);
    if (req == node_atom.get_status) {
        term_t status;
        int rc = status_term(ctx, *state, &status);
        return rc == GD_OK ? reply_quiet(ctx, from, status) : rc;
    }
    if (req == node_atom.suspend || req == node_atom.resume) {
        bool suspend = req == node_atom.suspend;
        int rc =
            sched_dict_put(ctx, node_atom.gen_suspended, suspend ? ATOM_TRUE : ATOM_FALSE, NULL);
        if (rc != GD_OK)
            return rc;
        sched_receive(ctx, suspend ? is_system_msg : NULL, NULL);
        return reply_quiet(ctx, from, ATOM_OK);
    }
    if (node_is_tagged(req, 2, node_atom.terminate)) {
        /* sys:handle_system_msg: the reply `ok` first, then terminate. */
        term_t reason = term_tuple_elems(req)[1];
        int rc = reply_quiet(ctx, from, ATOM_OK);
        if (rc != GD_OK)
            return rc;
        return stop_server(ctx, mod, reason, *state);
    }
    /* {error, {unknown_system_msg, Req}} as sys:do_cmd answers. */
    term_t *e, inner, outer;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &inner);
    if (rc != GD_OK)
        return rc;
    e[0] = node_atom.unknown_system_msg;
    e[1] = req;
    rc = heap_make_tuple(sched_heap(ctx), 2, &e, &outer);
    if (rc != GD_OK)
        return rc;
    e[0] = ATOM_ERROR;
    e[1] = inner;
    return reply_quiet(ctx, from, outer);
}

static int gen_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t *a = term_tuple_elems(arg);
    const girder_gen_server_t *mod = (const girder_gen_server_t *)node_term_addr(a[GA_MOD]);
    rc = node_register_name(ctx, a[GA_NAME]);
    if (rc != GD_OK)
        return rc;
    rc = sched_dict_put(ctx, node_atom.gen_mod, a[GA_MOD], NULL);
    if (rc == GD_OK)
        rc = sched_dict_put(ctx, node_atom.gen_parent,
                            a[GA_PARENT] == TERM_NIL ? sched_self(ctx) : a[GA_PARENT], NULL);
    if (rc != GD_OK)
        return rc;
    girder_ret_t ret = ret_default();
    rc = mod->init(ctx, a[GA_ARG], state, &ret);
    if (rc != GD_OK)
        return rc; /* init_it: a crashing init exits without terminate */
    if (ret.action == GIRDER_STOP)
        return sched_exit(ctx, ret.reason);
    if (ret.action != GIRDER_NOREPLY)
        return GD_EINVAL;
    if (ret.timeout_ms >= 0)
        sched_set_timeout(ctx, ret.timeout_ms);
    return node_ack(ctx, a[GA_ACK]);
}

static int gen_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    const girder_gen_server_t *mod = server_mod(ctx);
    if (mod == NULL)
        return GD_EINVAL; /* the callback table was erased from the dictionary */
    girder_ret_t ret = ret_default();
    int rc;
    if (node_is_tagged(msg, 3, node_atom.gen_call)) {
        term_t from = term_tuple_elems(msg)[1];
        rc = mod->handle_call(ctx, term_tuple_elems(msg)[2], from, state, &ret);
        return finish(ctx, mod, rc, from, state, &ret);
    }
    if (node_is_tagged(msg, 2, node_atom.gen_cast)) {
        if (mod->handle_cast == NULL)
            return GD_OK;
        rc = mod->handle_cast(ctx, term_tuple_elems(msg)[1], state, &ret);
        return finish(ctx, mod, rc, TERM_NONE, state, &ret);
    }
    if (node_is_tagged(msg, 3, node_atom.system))
        return handle_system(ctx, mod, term_tuple_elems(msg)[1], term_tuple_elems(msg)[2], state);
    if (node_is_tagged(msg, 3, ATOM_EXIT) &&
        term_tuple_elems(msg)[1] == sched_dict_get(ctx, node_atom.gen_parent))
        return stop_server(ctx, mod, term_tuple_elems(msg)[2], *state);
    if (mod->handle_info == NULL)
        return GD_OK;
    rc = mod->handle_info(ctx, msg, state, &ret);
    return finish(ctx, mod, rc, TERM_NONE, state, &ret);
}

/* sched_code_change's extra is {OldVsn, Extra} (girder_gen_code_change). */
static int gen_code_change(sched_ctx_t *ctx, term_t extra, term_t *state)
{
    const girder_gen_server_t *mod = server_mod(ctx);
    if (mod == NULL || !term_is_tuple(extra) || term_tuple_arity(extra) != 2)
        return GD_EINVAL;
    if (mod->code_change == NULL)
        return GD_OK;
    return mod->code_change(ctx, term_tuple_elems(extra)[0], state, term_tuple_elems(extra)[1]);
}

static const sched_behaviour_t gen_beh = {gen_init, gen_handle, NULL, gen_code_change};

int girder_gen_start(sched_ctx_t *ctx, const girder_gen_server_t *mod, term_t arg,
                     const girder_gen_opts_t *opts, term_t *pid_out)
{
    static const girder_gen_opts_t defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    if (mod == NULL || mod->init == NULL || mod->handle_call == NULL)
        return GD_EINVAL;
    term_t elems[GA_N];
    int rc = node_start_name(ctx, opts, &elems[GA_NAME]);
    if (rc == GD_OK)
        rc = node_addr_term((uintptr_t)mod, &elems[GA_MOD]);
    if (rc != GD_OK)
        return rc;
    elems[GA_PARENT] = opts->link ? sched_self(ctx) : TERM_NIL;
    elems[GA_ARG] = arg;
    elems[GA_ACK] = node_ack_to(ctx, opts->link);
    return node_start(ctx, &gen_beh, opts, elems, GA_N, GA_ACK, pid_out);
}

/* The alias reference of an OTP 25 alias tag ([alias | Ref] or
 * [[alias | Ref] | _]), or TERM_NONE. */
static term_t tag_alias(term_t tag)
{
    for (int depth = 0; depth < 2 && term_is_list(tag); depth++) {
        term_t head = term_car(tag);
        if (head == node_atom.alias && term_is_ref(term_cdr(tag)))
            return term_cdr(tag);
        tag = head;
    }
    return TERM_NONE;
}

int girder_reply(sched_ctx_t *ctx, term_t from, term_t reply)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    if (!term_is_tuple(from) || term_tuple_arity(from) != 2)
        return GD_OK;
    term_t to = term_tuple_elems(from)[0];
    term_t elems[2] = {term_tuple_elems(from)[1], reply};
    term_t alias = tag_alias(elems[0]);
    if (alias != TERM_NONE) {
        rc = node_send_tuple(ctx, alias, elems, 2);
        if (rc != GD_EBADARG)
            return rc == SCHED_ENOPROC ? GD_OK : rc;
        /* No route to an alias (see girder.h): the process that made it. */
    }
    if (!term_is_pid(to))
        return GD_OK;
    rc = node_send_tuple(ctx, to, elems, 2);
    /* A pid no route reaches (remote, before the distribution layer) is a
     * dead destination as far as gen:reply/2 cares. */
    return rc == GD_EBADARG ? GD_OK : rc;
}

int girder_cast(sched_ctx_t *ctx, term_t server, term_t msg)
{
    int rc = node_atoms_init();
    if (rc != GD_OK)
        return rc;
    term_t dest;
    rc = girder_server_ref(server, &dest);
    if (rc != GD_OK)
        return rc;
    term_t elems[2] = {node_atom.gen_cast, msg};
    rc = node_send_tuple(ctx, dest, elems, 2);
    return rc == SCHED_ENOPROC ? GD_OK : rc;
}

int girder_gen_code_change(sched_ctx_t *ctx, term_t old_vsn, term_t extra)
{
    term_t *e, t;
    int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &t);
    if (rc != GD_OK)
        return rc;
    e[0] = old_vsn;
    e[1] = extra;
    return sched_code_change(ctx, t);
}
