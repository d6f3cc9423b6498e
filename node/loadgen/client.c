/*
 * client.c — the client node every client command (ping, rpc, send,
 * bench) starts: shared flags, the pre-flight EPMD lookup, starting a
 * hidden quiet node, and calls from coroutine processes with errors a
 * person can act on.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "epmd.h"
#include "girder.h"
#include "loadgen.h"

int lg_client_flag(lg_client_opts_t *o, const char *prog, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool has_arg = *i + 1 < argc;
    bool sname = strcmp(a, "-sname") == 0 || strcmp(a, "--sname") == 0;
    bool lname = strcmp(a, "-name") == 0 || strcmp(a, "--name") == 0;
    bool cookie = strcmp(a, "-setcookie") == 0 || strcmp(a, "--cookie") == 0;
    bool timeout = strcmp(a, "-timeout") == 0 || strcmp(a, "--timeout") == 0;
    if (!sname && !lname && !cookie && !timeout)
        return 0;
    if (!has_arg) {
        fprintf(stderr, "girder %s: %s needs a value\n", prog, a);
        return -1;
    }
    const char *v = argv[++*i];
    if (cookie) {
        if (v[0] == '\0') {
            fprintf(stderr, "girder %s: empty cookie\n", prog);
            return -1;
        }
        o->cookie = v;
    } else if (timeout) {
        char *end = NULL;
        double s = strtod(v, &end);
        if (v[0] == '\0' || *end != '\0' || !(s > 0) || s * 1000 > (double)LG_TIMEOUT_MAX_MS) {
            fprintf(stderr, "girder %s: bad -timeout '%s' (seconds, > 0)\n", prog, v);
            return -1;
        }
        o->timeout_ms = (uint64_t)ceil(s * 1000);
    } else {
        if (v[0] == '\0' || strlen(v) > 255) {
            fprintf(stderr, "girder %s: bad node name '%s'\n", prog, v);
            return -1;
        }
        o->name = v;
        o->longnames = lname;
        o->name_given = true;
    }
    return 1;
}

void lg_client_flags_help(FILE *out)
{
    fprintf(out, "  -setcookie C        the cookie (default: ~/.erlang.cookie)\n"
                 "  -sname N, -name N   this client's own node name (default girder_cli_<pid>,\n"
                 "                      short or long like the target's host)\n"
                 "  -timeout S          give up on a node that does not answer after S seconds\n"
                 "                      (default 5)\n");
}

bool lg_node_parse(const char *node, bool *longnames)
{
    const char *at = strchr(node, '@');
    if (at == NULL || at == node || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        strlen(node) > DIST_NAME_MAX || !dist_name_valid(node, strlen(node)))
        return false;
    if (longnames != NULL)
        *longnames = strchr(at + 1, '.') != NULL;
    return true;
}

int lg_preflight(const char *node, uint64_t timeout_ms, char *err, size_t cap)
{
    char alive[256], host[DIST_NAME_MAX + 1];
    const char *at = strchr(node, '@');
    size_t alive_len = at != NULL ? (size_t)(at - node) : 0;
    if (at == NULL || alive_len >= sizeof alive || strlen(at + 1) >= sizeof host) {
        snprintf(err, cap, "bad node name '%s' (expected name@host)", node);
        return -1;
    }
    memcpy(alive, node, alive_len);
    alive[alive_len] = '\0';
    strcpy(host, at + 1);
    epmd_client_opts_t eo = {
        .host = host, .port = 0, .timeout_ms = (int)(timeout_ms < 5000 ? timeout_ms : 5000)};
    epmd_node_info_t info;
    int rc = epmd_client_port_please(&eo, alive, &info);
    if (rc == 0)
        return 0;
    unsigned port = epmd_default_port();
    switch (rc) {
    case EPMD_ENOTFOUND:
        snprintf(err, cap, "node %s is not running (not registered with EPMD on %s:%u)", node, host,
                 port);
        break;
    case EPMD_ERESOLVE:
        snprintf(err, cap, "cannot reach %s: unknown host '%s'", node, host);
        break;
    case EPMD_ECONNREFUSED:
        snprintf(err, cap, "cannot reach %s: no EPMD answers on %s:%u", node, host, port);
        break;
    case EPMD_ETIMEDOUT:
        snprintf(err, cap, "cannot reach %s: EPMD on %s:%u did not answer in time", node, host,
                 port);
        break;
    default:
        snprintf(err, cap, "cannot reach %s: EPMD on %s:%u: %s", node, host, port,
                 epmd_strerror(rc));
    }
    return -1;
}

/* The cookie from ~/.erlang.cookie (malloc'd), as erl reads it. */
static char *home_cookie(char *err, size_t cap)
{
    const char *home = getenv("HOME");
    char path[PATH_MAX];
    if (home == NULL ||
        snprintf(path, sizeof path, "%s/.erlang.cookie", home) >= (int)sizeof path) {
        snprintf(err, cap, "HOME is not set: give -setcookie");
        return NULL;
    }
    char *cookie = NULL;
    bool created = false;
    if (cluster_cookie_load(path, &cookie, &created) != 0) {
        snprintf(err, cap, "cannot read %s (it must be readable by its owner only)", path);
        return NULL;
    }
    return cookie;
}

int lg_client_start(const lg_client_opts_t *o, const char *like_node, const char *suffix, char *err,
                    size_t cap)
{
    bool longnames = o->longnames;
    if (!o->name_given && like_node != NULL)
        (void)lg_node_parse(like_node, &longnames);
    char name[300];
    if (o->name_given)
        snprintf(name, sizeof name, "%s", o->name);
    else
        snprintf(name, sizeof name, "girder_cli_%ld%s%s", (long)getpid(), suffix ? "_" : "",
                 suffix ? suffix : "");
    /* A long-named target on a loopback address (e1@127.0.0.1) is on this
     * machine: take the same host, which needs no fully qualified host
     * name (many machines have none). */
    const char *at = like_node != NULL ? strchr(like_node, '@') : NULL;
    if (!o->name_given && longnames && at != NULL && strncmp(at + 1, "127.", 4) == 0 &&
        strlen(name) + strlen(at) < sizeof name)
        strcat(name, at);
    char *loaded = NULL;
    const char *cookie = o->cookie;
    if (cookie == NULL && (cookie = loaded = home_cookie(err, cap)) == NULL)
        return -1;
    cluster_config_t cfg = {.name = name,
                            .longnames = longnames,
                            .cookie = cookie,
                            .hidden = true,
                            .quiet = true,
                            .read_batch_us = o->read_batch_us,
                            .schedulers =
                                o->schedulers ? o->schedulers : lg_client_schedulers_default()};
    int rc = cluster_start(&cfg);
    free(loaded); /* cluster_start keeps its own copy */
    if (rc != 0) {
        snprintf(err, cap, "could not start the client node %s: %s", name, dist_strerror(rc));
        return -1;
    }
    return 0;
}

unsigned lg_client_schedulers_default(void)
{
    unsigned cores = sched_cores_available();
    return cores > 2 ? cores - 1 : 1;
}

void lg_client_stop(void)
{
    cluster_stop();
}

term_t lg_ptr_term(const void *p)
{
    return term_make_small((int64_t)(uintptr_t)p);
}

void *lg_term_ptr(term_t t)
{
    return term_is_small(t) ? (void *)(uintptr_t)term_small_value(t) : NULL;
}

int lg_run_process(sched_coro_fn fn, void *arg, uint64_t timeout_ms)
{
    term_t pid;
    /* High priority: it coordinates (progress, reports) while thousands
     * of client processes keep the run queues full. */
    sched_spawn_opts_t so = {.priority = SCHED_PRIO_HIGH};
    int rc = sched_spawn_coro_opt(NULL, fn, lg_ptr_term(arg), &so, &pid, NULL);
    if (rc != 0)
        return rc;
    if (sched_wait_exit(&pid, 1, timeout_ms) == 0)
        return 0;
    /* Past its deadline: end it, so it never touches arg again. */
    if (sched_exit_pid(NULL, pid, heap_atom("kill")) == 0) {
        /* Not gone within 2 s either: the caller's cluster_stop ends it. */
        int gone = sched_wait_exit(&pid, 1, 2000);
        (void)gone;
    }
    return GD_EAGAIN;
}

/* "name" of {name, node} or a pid's text, for messages. */
static void server_text(term_t server, char *out, size_t cap)
{
    etf_buf_t b = {0};
    if (etf_print(server, &b) == 0 && etf_buf_reserve(&b, 1) == 0) {
        b.data[b.len] = 0;
        snprintf(out, cap, "%s", (const char *)b.data);
    } else {
        snprintf(out, cap, "the server");
    }
    etf_buf_free(&b);
}

int lg_call(sched_ctx_t *ctx, term_t server, term_t request, int64_t timeout_ms, term_t *reply,
            char *err, size_t cap)
{
    char who[256];
    server_text(server, who, sizeof who);
    int rc = girder_call(ctx, server, request, timeout_ms, reply);
    switch (rc) {
    case 0:
        return 0;
    case SCHED_ETIMEOUT:
        snprintf(err, cap, "no answer from %s within %lld ms", who, (long long)timeout_ms);
        break;
    case GIRDER_ENODEDOWN: {
        /* The pre-flight found the node registered, so what fails now is
         * mostly the handshake: a peer with another cookie closes it. */
        term_t node = term_is_tuple(server) ? term_tuple_elems(server)[1] : TERM_NONE;
        size_t len = 0;
        const char *text = term_is_atom(node) ? heap_atom_text(node, &len) : "the node";
        snprintf(err, cap,
                 "connection to %.*s refused or closed during the handshake (wrong cookie?)",
                 (int)(len ? len : strlen(text)), text);
        break;
    }
    case SCHED_ENOPROC:
        snprintf(err, cap, "no process %s", who);
        break;
    case GIRDER_EEXIT:
        snprintf(err, cap, "%s exited during the call", who);
        break;
    default:
        snprintf(err, cap, "call to %s failed: %s", who, dist_strerror(rc));
    }
    return -1;
}

int lg_rpc(sched_ctx_t *ctx, term_t node, term_t m, term_t f, term_t args, int64_t timeout_ms,
           term_t *result, char *err, size_t cap)
{
    heap_t *h = sched_heap(ctx);
    term_t *e, req, server;
    int rc = heap_make_tuple(h, 5, &e, &req);
    if (rc == 0) {
        /* rpc.erl's request; group leader `user`: output of the call goes
         * to the remote node's console (erl_call does the same). */
        e[0] = heap_atom("call");
        e[1] = m;
        e[2] = f;
        e[3] = args;
        e[4] = heap_atom("user");
        rc = heap_make_tuple(h, 2, &e, &server);
    }
    if (rc != 0) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    e[0] = heap_atom("rex");
    e[1] = node;
    return lg_call(ctx, server, req, timeout_ms, result, err, cap);
}
