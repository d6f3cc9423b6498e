/*
 * kv.c — starting girder_kv (its code: kv_module.c) and reloading it:
 * girder:reload(girder_kv, Path) loads a shared object exporting
 * `girder_kv_module` (dlopen), and the running server hands its state
 * over to the new code (kv_module.c's kv_info).  Loaded objects are never
 * closed: like OTP's old code, nothing proves no process still runs it.
 * The path comes from a peer that holds the cookie, which can run code
 * here anyway (design.md, security defaults).
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "internal.h"

/* The code a (re)started girder_kv runs: the built-in module until a
 * reload (bif_reload), after which a restart starts the loaded one, as
 * OTP's supervisors restart a child with the code loaded last.  Part of
 * the node's runtime state, shared by the supervisor's scheduler and the
 * rpc thread that reloads. */
static _Atomic(const girder_kv_module_t *) kv_current = &girder_kv_module;

/* girder_kv_sup's child start: girder_kv, linked to the supervisor. */
static int kv_child_start(sched_ctx_t *ctx, term_t arg, term_t *pid_out)
{
    (void)arg;
    term_t name = heap_atom("girder_kv");
    if (name == TERM_NONE)
        return GD_ENOMEM;
    girder_gen_opts_t opts = {.name = name, .link = true};
    const girder_kv_module_t *mod = atomic_load_explicit(&kv_current, memory_order_acquire);
    return girder_gen_start(ctx, &mod->gen, TERM_NIL, &opts, pid_out);
}

int girder_kv_start(term_t *pid_out)
{
    term_t name = heap_atom("girder_kv"), sup_name = heap_atom("girder_kv_sup");
    if (name == TERM_NONE || sup_name == TERM_NONE)
        return GD_ENOMEM;
    /* Permanent under a one_for_one supervisor: the node contract's
     * girder_kv is served again (empty) after it dies, up to 10 restarts
     * in 5 s (then the supervisor gives up, as OTP's would). */
    girder_child_spec_t child = {.id = name,
                                 .start = kv_child_start,
                                 .arg = TERM_NIL,
                                 .restart = GIRDER_PERMANENT,
                                 .shutdown = 5000,
                                 .type = GIRDER_WORKER};
    girder_sup_flags_t flags = {.strategy = GIRDER_ONE_FOR_ONE, .intensity = 10, .period_ms = 5000};
    girder_gen_opts_t opts = {.name = sup_name};
    return girder_sup_start(NULL, &flags, &child, 1, &opts, pid_out);
}

/* girder:reload(girder_kv, Path) -> {ok, Vsn} | {error, Why}. */
static int bif_reload(heap_t *h, term_t args, term_t *out)
{
    term_t mod = term_car(args), path = term_car(term_cdr(args));
    if (mod != heap_atom("girder_kv"))
        return GD_EBADARG;
    char buf[4096];
    size_t len = 0;
    /* Path as a string (list of bytes) or a binary. */
    if (term_is_binary(path)) {
        heap_bin_view_t v;
        heap_bin_view(path, &v);
        len = v.bit_size / 8;
        if (len >= sizeof buf)
            return GD_EBADARG;
        memcpy(buf, v.bytes, len);
    } else {
        for (term_t l = path; term_is_list(l); l = term_cdr(l)) {
            term_t c = term_car(l);
            if (!term_is_small(c) || term_small_value(c) < 1 || term_small_value(c) > 255 ||
                len + 1 >= sizeof buf)
                return GD_EBADARG;
            buf[len++] = (char)term_small_value(c);
        }
    }
    buf[len] = 0;
    term_t items[2] = {ATOM_ERROR, TERM_NIL}, *e;
    void *so = dlopen(buf, RTLD_NOW | RTLD_LOCAL);
    const girder_kv_module_t *next = so != NULL ? dlsym(so, "girder_kv_module") : NULL;
    int rc = GD_OK;
    if (next == NULL) {
        const char *why = dlerror();
        rc = heap_make_binary(h, why ? why : "no girder_kv_module",
                              strlen(why ? why : "no girder_kv_module"), &items[1]);
    } else {
        term_t addr, msg;
        rc = node_addr_term((uintptr_t)next, &addr);
        if (rc == GD_OK)
            rc = heap_make_tuple(h, 2, &e, &msg);
        if (rc == GD_OK) {
            e[0] = heap_atom("$girder_kv_reload");
            e[1] = addr;
            rc = sched_send(NULL, mod, msg);
        }
        items[0] = ATOM_OK;
        items[1] = term_make_small(next->vsn);
        /* As the running server takes it (kv_module.c's kv_info). */
        if (rc == GD_OK && girder_kv_module_usable(next))
            atomic_store_explicit(&kv_current, next, memory_order_release);
    }
    if (rc == GD_OK)
        rc = heap_make_tuple(h, 2, &e, out);
    if (rc == GD_OK) {
        e[0] = items[0];
        e[1] = items[1];
    }
    return rc;
}
int girder_services_start(void)
{
    term_t pid;
    int rc = girder_kv_start(&pid);
    if (rc == GD_OK)
        rc = node_remote_builtins_register();
    if (rc == GD_OK)
        rc = cluster_rpc_register("girder", "reload", 2, bif_reload);
    if (rc != GD_OK)
        return rc;
    /* The name is the new process's to register: wait for it, since a
     * peer may call girder_kv as soon as the node accepts connections. */
    term_t name = heap_atom("girder_kv");
    for (int tries = 0; tries < 1000; tries++) {
        if (term_is_pid(sched_whereis(name)))
            return GD_OK;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return GD_ESYSTEM_LIMIT;
}
