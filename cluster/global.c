/*
 * global.c — the global registry (design.md, "global registry"), spoken as
 * OTP's `global` (protocol version 8, OTP 25's kernel global.erl): every
 * node runs a registered `global_name_server`, and girder and OTP nodes
 * keep one replica of the names each, synchronised the way OTP nodes
 * synchronise among themselves (docs/protocol.md, "global").
 *
 * One registry per node: the struct below hangs off the node's own
 * struct (node.c, cluster_global_slot) and lives from cluster_start to
 * cluster_stop.  The name table is read by any thread (whereis, send:
 * no messaging); everything else (sync sessions, locks, transactions) is
 * the server process's alone.
 *
 * What the server answers and sends (global.erl's names in brackets):
 * - a visible node comes up [handle_nodeup]: init_connect {8, MyTag} with
 *   the server itself as "the locker" (OTP only uses the locker pid as a
 *   lock requester id and to find the node; vsn >= 6 sends lock_set via
 *   the server);
 * - init_connect from the peer: init_connect_ack, then a spontaneous
 *   lock_set true [select_node]: the `global` lock on this node under
 *   the id {global, sort([OurLocker, HisLocker])}; a peer's lock_set true
 *   is our answer, or its own spontaneous one (answered true unless the
 *   lock here is held by someone else, then false); a false answer frees
 *   our lock and retries after a random pause;
 * - lock set on both sides: exchange (all our names as {Name, Pid,
 *   Method}); the peer's exchange is resolved as exchange_names does (a
 *   clash is decided by the smaller node, with the default method
 *   random_exit_name: the pid on the smaller node keeps the name, the
 *   other is killed), then resolved with the peer's share of the
 *   operations and our known nodes [{Node, 8}];
 * - both resolved: the operations run here, new_nodes goes to the nodes
 *   known before, the peer and its known nodes become known, and in_sync
 *   goes to the nodes we learnt of through it [sync_others], which is
 *   what lets global:sync() on those nodes return;
 * - '$gen_call' register / unregister / register_ext / set_lock / del_lock
 *   / get_known / get_synced / get_protocol_version / get_names_ext, and
 *   '$gen_cast' new_nodes / in_sync / async_del_*, as handle_call and
 *   handle_cast do;
 * - registration here (C API, rpc global:register_name/2, ...) runs as
 *   trans_all_known: the `global` lock {global, Server} on every known
 *   node, then the register / unregister calls, then del_lock; a refused
 *   lock retries after a random pause.  The caller waits for the answer.
 * - every registered pid is monitored: its DOWN (death, or noconnection
 *   when its node goes) removes its names, here as on OTP nodes, which
 *   monitor our pids themselves.
 *
 * Names are any terms, as in OTP (global:register_name({a, 1}, Pid)): the
 * table keys them by their encoding (etf_encode is canonical: terms that
 * are =:= encode alike), so any thread compares them without a heap.
 *
 * Peers are untrusted: a malformed message is dropped with a log line, a
 * name's encoding is capped (GLOBAL_NAME_MAX_BYTES) and so is the table.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

/* Caps the table: names come from peers too. */
#define GLOBAL_NAMES_MAX 1000000
/* Caps one name's encoding (a name is a key, not a payload). */
#define GLOBAL_NAME_MAX_BYTES 65536
/* Caps the sync sessions and known nodes a peer can make us hold. */
#define GLOBAL_NODES_MAX 65536
#define GLOBAL_VSN 8
/* How long a registration waits for the cluster-wide lock and answer. */
#define GLOBAL_CALL_WAIT_MS 20000
/* A lock round whose answers have not all come in by then is retried. */
#define GLOBAL_TRANS_TIMEOUT_MS 3000
/* How long a known node gets to connect to us before we connect to it. */
#define GLOBAL_CONNECT_DELAY_MS 1000

/* A term kept in C memory: its 131-prefixed encoding. */
typedef struct blob {
    uint8_t *data;
    size_t len;
} blob_t;

typedef struct gname {
    blob_t name; /* the name's encoding: the key */
    term_t node; /* the pid's node */
    blob_t pid, method;
} gname_t;

typedef struct glock_holder {
    blob_t pid;
    term_t node;
} glock_holder_t;

/* One locked resource [global_locks]: its requester id and the pids that
 * hold it. */
typedef struct glock {
    blob_t res, req;
    glock_holder_t *v;
    size_t n, cap;
} glock_t;

/* One sync session with a peer that came up [the resolver's state]. */
typedef struct gsession {
    term_t node;
    int64_t my_tag;
    bool have_his; /* its init_connect arrived */
    blob_t his_tag, lock_id;
    bool awaiting; /* our lock_set true went out, no answer yet */
    bool locked;   /* the lock is set on both sides */
    bool resolved_sent;
    bool have_his_resolved;
    blob_t his_names; /* its exchange before our lock was set */
    blob_t ops;       /* our resolver's operations */
    blob_t his_resolved, his_known;
} gsession_t;

/* A registration or unregistration from this node, waiting for its
 * transaction.  Shared by the caller and the server: freed by the last of
 * the two (refs). */
typedef struct greq {
    struct greq *next;
    bool is_register;
    blob_t name;
    blob_t pid;
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
    int result; /* 0 yes / ok, SCHED_ENAME_TAKEN no */
    atomic_int refs;
} greq_t;

struct cluster_global {
    pthread_mutex_t lock; /* names and the request queue */
    gname_t *names;
    size_t n, cap;
    greq_t *queue_head, *queue_tail;
    term_t server; /* the global_name_server pid */
    /* The server's own (no lock). */
    glock_t *locks;
    size_t nlocks, locks_cap;
    gsession_t *sess;
    size_t nsess, sess_cap;
    term_t *known;
    size_t nknown, known_cap;
    term_t *up; /* the nodes whose nodeup came, without their nodedown */
    size_t nup, up_cap;
    int64_t next_tag;
    bool retry_armed, connect_armed;
    greq_t *trans;    /* the request whose transaction runs */
    blob_t trans_ref; /* the set_lock calls' tag */
    term_t *trans_nodes;
    size_t trans_n, trans_waiting;
    bool trans_refused;
};

/* ---- small helpers ---- */

static cluster_global_t *G(void)
{
    return *cluster_global_slot();
}

static bool is(term_t t, const char *name)
{
    return term_is_atom(t) && t == heap_atom(name);
}

static size_t tarity(term_t t)
{
    return term_is_tuple(t) ? term_tuple_arity(t) : 0;
}

static term_t el(term_t t, size_t i)
{
    return term_tuple_elems(t)[i];
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 8;
    void *p = realloc(*v, c * size);
    if (p == NULL)
        return GD_ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

static void blob_free(blob_t *b)
{
    free(b->data);
    *b = (blob_t){0};
}

static int blob_set(blob_t *b, term_t t)
{
    etf_buf_t buf = {0};
    int rc = etf_encode(t, NULL, &buf);
    if (rc < 0) {
        etf_buf_free(&buf);
        return rc;
    }
    free(b->data);
    b->data = buf.data;
    b->len = buf.len;
    return 0;
}

static bool blob_eq(const blob_t *a, const blob_t *b)
{
    return a->data != NULL && b->data != NULL && a->len == b->len &&
           memcmp(a->data, b->data, a->len) == 0;
}

/* A name's key: its encoding.  GD_EBADARG past GLOBAL_NAME_MAX_BYTES. */
static int name_key(blob_t *key, term_t name)
{
    *key = (blob_t){0};
    int rc = blob_set(key, name);
    if (rc == 0 && key->len > GLOBAL_NAME_MAX_BYTES) {
        blob_free(key);
        rc = GD_EBADARG;
    }
    return rc;
}

/* Decodes b onto h (an empty blob: []). */
static term_t blob_term(heap_t *h, const blob_t *b, int *rc)
{
    term_t t = TERM_NIL;
    size_t used;
    if (*rc == 0 && b->data != NULL)
        *rc = etf_decode(h, b->data, b->len, NULL, &t, &used, NULL);
    return t;
}

static term_t mk(heap_t *h, int *rc, size_t n, const term_t *items)
{
    term_t t = TERM_NIL;
    if (*rc == 0)
        *rc = heap_make_tuple_from(h, n, items, &t);
    return t;
}

static term_t cons(heap_t *h, int *rc, term_t car, term_t cdr)
{
    term_t t = cdr;
    if (*rc == 0)
        *rc = heap_cons(h, car, cdr, &t);
    return t;
}

static term_t pid_node(term_t pid)
{
    heap_ident_t id;
    heap_ident(pid, &id);
    return id.node;
}

static int order_of(term_t a, term_t b)
{
    int order = 0;
    if (heap_compare_checked(a, b, true, &order) < 0)
        return 0;
    return order;
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
    return v;
}

/* One log line for a dropped message: what, and the start of the term. */
static void log_dropped(const char *what, term_t t)
{
    etf_buf_t text = {0};
    if (etf_print(t, &text) == 0)
        cluster_log("global: %s dropped: %.*s", what, text.len > 200 ? 200 : (int)text.len,
                    (const char *)text.data);
    else
        cluster_log("global: %s dropped", what);
    etf_buf_free(&text);
}

/* ---- the name table (any thread, under g->lock) ---- */

static size_t find_locked(const cluster_global_t *g, const blob_t *key)
{
    for (size_t i = 0; i < g->n; i++)
        if (blob_eq(&g->names[i].name, key))
            return i;
    return g->n;
}

static void remove_at_locked(cluster_global_t *g, size_t i)
{
    blob_free(&g->names[i].name);
    blob_free(&g->names[i].pid);
    blob_free(&g->names[i].method);
    g->names[i] = g->names[--g->n];
}

/* ins_name: Name -> Pid (replacing any holder).  GD_ESYSTEM_LIMIT past
 * the cap. */
static int table_put(cluster_global_t *g, term_t name, term_t pid, term_t method)
{
    gname_t e = {{0}, pid_node(pid), {0}, {0}};
    int rc = name_key(&e.name, name);
    if (rc == 0)
        rc = blob_set(&e.pid, pid);
    if (rc == 0)
        rc = blob_set(&e.method, method);
    if (rc < 0) {
        blob_free(&e.name);
        blob_free(&e.pid);
        blob_free(&e.method);
        return rc;
    }
    pthread_mutex_lock(&g->lock);
    size_t i = find_locked(g, &e.name);
    if (i < g->n) {
        remove_at_locked(g, i);
        g->names[g->n++] = e; /* remove_at_locked freed a slot */
    } else if (g->n == GLOBAL_NAMES_MAX) {
        rc = GD_ESYSTEM_LIMIT;
    } else if ((rc = grow((void **)&g->names, &g->cap, g->n, sizeof e)) == 0) {
        g->names[g->n++] = e;
    }
    pthread_mutex_unlock(&g->lock);
    if (rc < 0) {
        blob_free(&e.name);
        blob_free(&e.pid);
        blob_free(&e.method);
    }
    return rc;
}

/* Removes name; with pid set, only if pid holds it.  True if removed. */
static bool table_drop(cluster_global_t *g, term_t name, const blob_t *pid)
{
    bool removed = false;
    blob_t key;
    if (name_key(&key, name) < 0)
        return false; /* too big (or no memory): not in the table */
    pthread_mutex_lock(&g->lock);
    size_t i = find_locked(g, &key);
    if (i < g->n && (pid == NULL || blob_eq(pid, &g->names[i].pid))) {
        remove_at_locked(g, i);
        removed = true;
    }
    pthread_mutex_unlock(&g->lock);
    blob_free(&key);
    return removed;
}

static void table_drop_pid(cluster_global_t *g, const blob_t *pid)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n;)
        if (blob_eq(pid, &g->names[i].pid))
            remove_at_locked(g, i);
        else
            i++;
    pthread_mutex_unlock(&g->lock);
}

static void table_drop_node(cluster_global_t *g, term_t node_atom)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n;)
        if (g->names[i].node == node_atom)
            remove_at_locked(g, i);
        else
            i++;
    pthread_mutex_unlock(&g->lock);
}

static bool table_has(cluster_global_t *g, term_t name)
{
    blob_t key;
    if (name_key(&key, name) < 0)
        return false;
    pthread_mutex_lock(&g->lock);
    bool has = find_locked(g, &key) < g->n;
    pthread_mutex_unlock(&g->lock);
    blob_free(&key);
    return has;
}

/* [{Name, Pid, Method}] (triples) or [{Name, Pid}] / [Name] of every name,
 * on h. */
enum list_form { LIST_TRIPLES, LIST_PAIRS, LIST_NAMES };
static int table_list(cluster_global_t *g, heap_t *h, enum list_form form, term_t *out)
{
    int rc = 0;
    term_t list = TERM_NIL;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n && rc == 0; i++) {
        const gname_t *e = &g->names[i];
        term_t name = blob_term(h, &e->name, &rc);
        term_t items[3] = {name, blob_term(h, &e->pid, &rc), blob_term(h, &e->method, &rc)};
        term_t item = form == LIST_NAMES ? name : mk(h, &rc, form == LIST_TRIPLES ? 3 : 2, items);
        list = cons(h, &rc, item, list);
    }
    pthread_mutex_unlock(&g->lock);
    *out = list;
    return rc;
}

/* ---- the server's sends ---- */

static int gns_send(sched_ctx_t *ctx, term_t node_atom, term_t msg)
{
    int rc = 0;
    term_t to_items[2] = {heap_atom("global_name_server"), node_atom};
    term_t to = mk(sched_heap(ctx), &rc, 2, to_items);
    if (rc == 0)
        rc = sched_send(ctx, to, msg);
    return rc == SCHED_ENOPROC || rc == DIST_ENOCONNECTION || rc == DIST_ECLOSED ? 0 : rc;
}

static int gns_cast(sched_ctx_t *ctx, term_t node_atom, term_t req)
{
    int rc = 0;
    term_t items[2] = {heap_atom("$gen_cast"), req};
    term_t msg = mk(sched_heap(ctx), &rc, 2, items);
    return rc == 0 ? gns_send(ctx, node_atom, msg) : rc;
}

/* '$gen_call' with From {Server, Ref}: the answer {Ref, Reply} comes back
 * as a message. */
static int gns_call(sched_ctx_t *ctx, term_t node_atom, term_t ref, term_t req)
{
    int rc = 0;
    heap_t *h = sched_heap(ctx);
    term_t from_items[2] = {sched_self(ctx), ref};
    term_t items[3] = {heap_atom("$gen_call"), mk(h, &rc, 2, from_items), req};
    term_t msg = mk(h, &rc, 3, items);
    return rc == 0 ? gns_send(ctx, node_atom, msg) : rc;
}

/* gen:reply to From = {Pid, Tag}: {Tag, Reply} to the alias when Tag is
 * [alias | Ref] (or [[alias | Ref] | _]), else to Pid (protocol.md 5.3). */
static int gen_reply(sched_ctx_t *ctx, term_t from, term_t reply)
{
    if (tarity(from) != 2)
        return 0;
    term_t to = el(from, 0), tag = el(from, 1), t = tag;
    if (term_is_list(t) && term_is_list(term_car(t)))
        t = term_car(t);
    if (term_is_list(t) && is(term_car(t), "alias") && term_is_ref(term_cdr(t)))
        to = term_cdr(t);
    int rc = 0;
    term_t items[2] = {tag, reply};
    term_t msg = mk(sched_heap(ctx), &rc, 2, items);
    if (rc == 0)
        rc = sched_send(ctx, to, msg);
    return rc == SCHED_ENOPROC || rc == GD_EBADARG ? 0 : rc;
}

/* ---- locks [global_locks] (server only) ---- */

static glock_t *lock_find(cluster_global_t *g, const blob_t *res)
{
    for (size_t i = 0; i < g->nlocks; i++)
        if (blob_eq(&g->locks[i].res, res))
            return &g->locks[i];
    return NULL;
}

static void lock_remove(cluster_global_t *g, glock_t *l)
{
    blob_free(&l->res);
    blob_free(&l->req);
    for (size_t i = 0; i < l->n; i++)
        blob_free(&l->v[i].pid);
    free(l->v);
    *l = g->locks[--g->nlocks];
}

/* handle_set_lock({Res, Req}, Pid): true when granted. */
static int lock_set(cluster_global_t *g, term_t id, term_t pid, bool *granted)
{
    *granted = false;
    if (tarity(id) != 2 || !term_is_pid(pid))
        return 0;
    blob_t res = {0}, req = {0}, p = {0};
    int rc = blob_set(&res, el(id, 0));
    if (rc == 0)
        rc = blob_set(&req, el(id, 1));
    if (rc == 0)
        rc = blob_set(&p, pid);
    glock_t *l = rc == 0 ? lock_find(g, &res) : NULL;
    if (rc == 0 && l == NULL) {
        if (g->nlocks == GLOBAL_NODES_MAX)
            rc = GD_ESYSTEM_LIMIT;
        else if ((rc = grow((void **)&g->locks, &g->locks_cap, g->nlocks, sizeof *l)) == 0) {
            l = &g->locks[g->nlocks++];
            *l = (glock_t){res, req, NULL, 0, 0};
            res = req = (blob_t){0};
        }
    } else if (rc == 0 && !blob_eq(&l->req, &req)) {
        l = NULL; /* held under another requester id */
    }
    if (rc == 0 && l != NULL) {
        bool holds = false;
        for (size_t i = 0; i < l->n && !holds; i++)
            holds = blob_eq(&l->v[i].pid, &p);
        if (!holds && (rc = grow((void **)&l->v, &l->cap, l->n, sizeof *l->v)) == 0) {
            l->v[l->n++] = (glock_holder_t){p, pid_node(pid)};
            p = (blob_t){0};
        }
        *granted = rc == 0;
    }
    blob_free(&res);
    blob_free(&req);
    blob_free(&p);
    return rc == GD_ESYSTEM_LIMIT ? 0 : rc;
}

/* handle_del_lock({Res, Req}, Pid). */
static int lock_del(cluster_global_t *g, term_t id, term_t pid)
{
    if (tarity(id) != 2 || !term_is_pid(pid))
        return 0;
    blob_t res = {0}, req = {0}, p = {0};
    int rc = blob_set(&res, el(id, 0));
    if (rc == 0)
        rc = blob_set(&req, el(id, 1));
    if (rc == 0)
        rc = blob_set(&p, pid);
    glock_t *l = rc == 0 ? lock_find(g, &res) : NULL;
    if (l != NULL && blob_eq(&l->req, &req)) {
        for (size_t i = 0; i < l->n; i++)
            if (blob_eq(&l->v[i].pid, &p)) {
                blob_free(&l->v[i].pid);
                l->v[i] = l->v[--l->n];
                break;
            }
        if (l->n == 0)
            lock_remove(g, l);
    }
    blob_free(&res);
    blob_free(&req);
    blob_free(&p);
    return rc;
}

/* A node went: its pids hold no locks any more (the monitors' DOWNs). */
static void locks_drop_node(cluster_global_t *g, term_t node_atom)
{
    for (size_t k = 0; k < g->nlocks;) {
        glock_t *l = &g->locks[k];
        for (size_t i = 0; i < l->n;)
            if (l->v[i].node == node_atom) {
                blob_free(&l->v[i].pid);
                l->v[i] = l->v[--l->n];
            } else {
                i++;
            }
        if (l->n == 0)
            lock_remove(g, l);
        else
            k++;
    }
}

/* ---- known nodes, nodes up ---- */

static bool node_list_has(const term_t *v, size_t n, term_t node_atom)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == node_atom)
            return true;
    return false;
}

static bool known_has(const cluster_global_t *g, term_t node_atom)
{
    return node_list_has(g->known, g->nknown, node_atom);
}

static int up_add(cluster_global_t *g, term_t node_atom)
{
    if (node_list_has(g->up, g->nup, node_atom) || g->nup == GLOBAL_NODES_MAX)
        return 0;
    int rc = grow((void **)&g->up, &g->up_cap, g->nup, sizeof *g->up);
    if (rc == 0)
        g->up[g->nup++] = node_atom;
    return rc;
}

static void up_remove(cluster_global_t *g, term_t node_atom)
{
    for (size_t i = 0; i < g->nup; i++)
        if (g->up[i] == node_atom) {
            g->up[i] = g->up[--g->nup];
            return;
        }
}

/* add_to_known; true when node_atom is new. */
static int known_add(cluster_global_t *g, term_t node_atom, bool *added)
{
    *added = false;
    if (!term_is_atom(node_atom) || node_atom == heap_node_name() || known_has(g, node_atom) ||
        g->nknown == GLOBAL_NODES_MAX)
        return 0;
    int rc = grow((void **)&g->known, &g->known_cap, g->nknown, sizeof *g->known);
    if (rc == 0) {
        g->known[g->nknown++] = node_atom;
        *added = true;
    }
    return rc;
}

static void known_remove(cluster_global_t *g, term_t node_atom)
{
    for (size_t i = 0; i < g->nknown; i++)
        if (g->known[i] == node_atom) {
            g->known[i] = g->known[--g->nknown];
            return;
        }
}

/* mk_known_list for vsn >= 7: [{Node, Vsn}]. */
static term_t known_list(cluster_global_t *g, heap_t *h, term_t except, int *rc)
{
    term_t list = TERM_NIL;
    for (size_t i = 0; i < g->nknown; i++) {
        if (g->known[i] == except)
            continue;
        term_t items[2] = {g->known[i], term_make_small(GLOBAL_VSN)};
        list = cons(h, rc, mk(h, rc, 2, items), list);
    }
    return list;
}

/* ---- names and their monitors ---- */

static int ins_name(sched_ctx_t *ctx, cluster_global_t *g, term_t name, term_t pid, term_t method)
{
    if (!term_is_pid(pid)) {
        cluster_log("global: pid malformed in a registration, dropped");
        return 0;
    }
    int rc = table_put(g, name, pid, method);
    if (rc == GD_ESYSTEM_LIMIT || rc == GD_EBADARG) {
        cluster_log(rc == GD_EBADARG ? "global: name over %d bytes, a registration dropped"
                                     : "global: name table full, a registration dropped",
                    GLOBAL_NAME_MAX_BYTES);
        return 0;
    }
    term_t ref;
    if (rc == 0)
        rc = sched_monitor(ctx, pid, &ref);
    return rc == SCHED_ENOPROC || rc == DIST_ENOCONNECTION ? 0 : rc;
}

/* do_ops: [{insert, {Name, Pid, Method}} | {delete, Name}]. */
static int do_ops(sched_ctx_t *ctx, cluster_global_t *g, term_t ops)
{
    int rc = 0;
    for (term_t l = ops; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        term_t op = term_car(l);
        if (tarity(op) == 2 && is(el(op, 0), "insert") && tarity(el(op, 1)) == 3)
            rc = ins_name(ctx, g, el(el(op, 1), 0), el(el(op, 1), 1), el(el(op, 1), 2));
        else if (tarity(op) == 2 && is(el(op, 0), "delete"))
            table_drop(g, el(op, 1), NULL);
        else
            log_dropped("malformed name operation", op);
    }
    return rc;
}

/* ---- sync sessions ---- */

static gsession_t *session_find(cluster_global_t *g, term_t node_atom)
{
    for (size_t i = 0; i < g->nsess; i++)
        if (g->sess[i].node == node_atom)
            return &g->sess[i];
    return NULL;
}

static void session_remove(cluster_global_t *g, gsession_t *s)
{
    blob_t *blobs[] = {&s->his_tag, &s->lock_id,      &s->his_names,
                       &s->ops,     &s->his_resolved, &s->his_known};
    for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++)
        blob_free(blobs[i]);
    *s = g->sess[--g->nsess];
}

/* handle_nodeup: a session and our init_connect. */
static int session_start(sched_ctx_t *ctx, cluster_global_t *g, term_t node_atom, gsession_t **out)
{
    *out = NULL;
    if (g->nsess == GLOBAL_NODES_MAX)
        return 0;
    int rc = grow((void **)&g->sess, &g->sess_cap, g->nsess, sizeof *g->sess);
    if (rc < 0)
        return rc;
    gsession_t *s = &g->sess[g->nsess++];
    *s = (gsession_t){.node = node_atom, .my_tag = ++g->next_tag};
    heap_t *h = sched_heap(ctx);
    term_t known_map;
    rc = heap_make_map(h, NULL, NULL, 0, &known_map);
    term_t vsn_items[2] = {term_make_small(GLOBAL_VSN), term_make_small(s->my_tag)};
    term_t locker_items[4] = {heap_atom("locker"), heap_atom("no_longer_a_pid"), known_map,
                              sched_self(ctx)};
    term_t items[4] = {heap_atom("init_connect"), mk(h, &rc, 2, vsn_items), heap_node_name(),
                       mk(h, &rc, 4, locker_items)};
    term_t msg = mk(h, &rc, 4, items);
    if (rc == 0)
        rc = gns_cast(ctx, node_atom, msg);
    *out = s;
    return rc;
}

static term_t lock_id_term(heap_t *h, const gsession_t *s, int *rc)
{
    return blob_term(h, &s->lock_id, rc);
}

static int send_lock_set(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s, bool set)
{
    int rc = 0;
    heap_t *h = sched_heap(ctx);
    term_t items[5] = {heap_atom("lock_set"), sched_self(ctx), heap_atom(set ? "true" : "false"),
                       known_list(g, h, TERM_NONE, &rc), blob_term(h, &s->his_tag, &rc)};
    term_t msg = mk(h, &rc, 5, items);
    return rc == 0 ? gns_cast(ctx, s->node, msg) : rc;
}

/* Takes (or confirms) the session's lock here: false when another
 * requester holds `global`. */
static int session_lock_here(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s, bool *ok)
{
    int rc = 0;
    term_t id = lock_id_term(sched_heap(ctx), s, &rc);
    if (rc < 0)
        return rc;
    return lock_set(g, id, sched_self(ctx), ok);
}

static int session_unlock_here(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s)
{
    int rc = 0;
    term_t id = lock_id_term(sched_heap(ctx), s, &rc);
    return rc == 0 ? lock_del(g, id, sched_self(ctx)) : rc;
}

static int arm_retry(sched_ctx_t *ctx, cluster_global_t *g)
{
    if (g->retry_armed)
        return 0;
    g->retry_armed = true;
    /* random_sleep's spirit: apart in time, so that two nodes asking at
     * once do not keep colliding. */
    uint64_t ms = 100 + random_u64() % 900;
    return sched_send_after(ctx, ms, sched_self(ctx), heap_atom("$gd_global_retry"), NULL);
}

static int session_resolve(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s, term_t names);
static int trans_start(sched_ctx_t *ctx, cluster_global_t *g);

/* Lock set on both sides [lock_is_set]: our names go to the peer. */
static int session_locked(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s)
{
    s->locked = true;
    s->awaiting = false;
    int rc = 0;
    heap_t *h = sched_heap(ctx);
    term_t names;
    rc = table_list(g, h, LIST_TRIPLES, &names);
    term_t items[5] = {heap_atom("exchange"), heap_node_name(), names, TERM_NIL,
                       blob_term(h, &s->his_tag, &rc)};
    term_t msg = mk(h, &rc, 5, items);
    if (rc == 0)
        rc = gns_cast(ctx, s->node, msg);
    if (rc == 0 && s->his_names.data != NULL) {
        term_t his = blob_term(h, &s->his_names, &rc);
        if (rc == 0)
            rc = session_resolve(ctx, g, s, his);
    }
    return rc;
}

/* A spontaneous lock_set true [select_node] when nothing stands in the
 * way. */
static int session_try_lock(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s)
{
    if (!s->have_his || s->locked || s->awaiting)
        return 0;
    bool ok;
    int rc = session_lock_here(ctx, g, s, &ok);
    if (rc < 0)
        return rc;
    if (!ok)
        return arm_retry(ctx, g);
    s->awaiting = true;
    return send_lock_set(ctx, g, s, true);
}

static int sessions_try_lock(sched_ctx_t *ctx, cluster_global_t *g)
{
    int rc = 0;
    for (size_t i = 0; i < g->nsess && rc == 0; i++)
        rc = session_try_lock(ctx, g, &g->sess[i]);
    return rc;
}

static bool tag_is_mine(const gsession_t *s, term_t tag)
{
    return term_is_small(tag) && term_small_value(tag) == s->my_tag;
}

/* {init_connect, {Vsn, HisTag}, Node, {locker, _, _, HisLocker}}. */
static int on_init_connect(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    term_t vsn = el(m, 1), node_atom = el(m, 2), init = el(m, 3);
    if (tarity(vsn) < 2 || !term_is_atom(node_atom) || tarity(init) != 4 ||
        !term_is_pid(el(init, 3)) || pid_node(el(init, 3)) != node_atom ||
        node_atom == heap_node_name()) {
        log_dropped("malformed init_connect", m);
        return 0;
    }
    int rc = 0;
    gsession_t *s = session_find(g, node_atom);
    if (s == NULL && (known_has(g, node_atom) || node_list_has(g->up, g->nup, node_atom)))
        /* No session: its nodeup came and the session ended (it
         * finished, or we learnt of the node through another and sent
         * it in_sync, which ends its side too), or we know the node and
         * send it in_sync on nodeup.  OTP acts on no init_connect but
         * through its nodeup's resolver either.  A new session here
         * would send an init_connect its side has no session for, and
         * two such sessions restart each other for ever. */
        return 0;
    if (s != NULL && s->have_his) {
        /* A new attempt while one runs: start over [restart_connect]. */
        rc = session_unlock_here(ctx, g, s);
        session_remove(g, s);
        s = NULL;
    }
    if (rc == 0 && s == NULL) /* before its nodeup, or a restart */
        rc = session_start(ctx, g, node_atom, &s);
    if (rc < 0 || s == NULL)
        return rc;
    heap_t *h = sched_heap(ctx);
    s->have_his = true;
    rc = blob_set(&s->his_tag, el(vsn, 1));
    /* locker_lock_id: {global, lists:sort([OurLocker, HisLocker])}. */
    term_t self = sched_self(ctx), his = el(init, 3);
    bool self_first = order_of(self, his) <= 0;
    term_t pair[2] = {self_first ? self : his, self_first ? his : self}, lockers = TERM_NIL;
    if (rc == 0)
        rc = heap_make_list(h, pair, 2, &lockers);
    term_t id_items[2] = {heap_atom("global"), lockers};
    term_t id = mk(h, &rc, 2, id_items);
    if (rc == 0)
        rc = blob_set(&s->lock_id, id);
    term_t ack_items[4] = {heap_atom("init_connect_ack"), heap_node_name(), el(vsn, 1),
                           term_make_small(s->my_tag)};
    term_t ack = mk(h, &rc, 4, ack_items);
    if (rc == 0)
        rc = gns_send(ctx, node_atom, ack);
    return rc == 0 ? session_try_lock(ctx, g, s) : rc;
}

/* {lock_set, Pid, Set, HisKnown, MyTag}. */
static int on_lock_set(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    if (!term_is_pid(el(m, 1)))
        return 0;
    gsession_t *s = session_find(g, pid_node(el(m, 1)));
    if (s == NULL || !s->have_his || !tag_is_mine(s, el(m, 4)) || s->locked)
        return 0; /* an old session's, or a "not there" answer (tag 0) */
    if (is(el(m, 2), "true")) {
        if (s->awaiting)
            return session_locked(ctx, g, s);
        bool ok;
        int rc = session_lock_here(ctx, g, s, &ok);
        if (rc == 0)
            rc = send_lock_set(ctx, g, s, ok);
        return rc == 0 && ok ? session_locked(ctx, g, s) : rc;
    }
    if (!s->awaiting)
        return 0;
    s->awaiting = false;
    int rc = session_unlock_here(ctx, g, s);
    return rc == 0 ? arm_retry(ctx, g) : rc;
}

static int session_finish(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s);

/* exchange_names: the peer's [{Name, Pid, Method}] against ours. */
static int session_resolve(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s, term_t names)
{
    heap_t *h = sched_heap(ctx);
    int rc = 0;
    term_t ops = TERM_NIL, res = TERM_NIL;
    bool we_decide = order_of(heap_node_name(), s->node) < 0;
    for (term_t l = names; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        term_t e = term_car(l);
        blob_t key = {0};
        if (tarity(e) != 3 || !term_is_pid(el(e, 1)) || name_key(&key, el(e, 0)) < 0) {
            log_dropped("malformed name in an exchange", e);
            continue;
        }
        term_t name = el(e, 0), pid = el(e, 1), mine = TERM_NONE, mine_method = TERM_NIL;
        pthread_mutex_lock(&g->lock);
        size_t i = find_locked(g, &key);
        if (i < g->n) {
            mine = blob_term(h, &g->names[i].pid, &rc);
            mine_method = blob_term(h, &g->names[i].method, &rc);
        }
        pthread_mutex_unlock(&g->lock);
        blob_free(&key);
        term_t op_items[2] = {heap_atom("insert"), e};
        if (mine == TERM_NONE) {
            ops = cons(h, &rc, mk(h, &rc, 2, op_items), ops);
        } else if (order_of(mine, pid) != 0 && we_decide && rc == 0) {
            /* random_exit_name: the pid on the smaller node keeps it. */
            bool theirs = order_of(pid_node(pid), pid_node(mine)) < 0;
            term_t loser = theirs ? mine : pid;
            cluster_log("global: name conflict, terminating the loser");
            rc = sched_exit_pid(ctx, loser, heap_atom("kill"));
            if (rc == SCHED_ENOPROC || rc == DIST_ENOCONNECTION)
                rc = 0;
            if (theirs) {
                ops = cons(h, &rc, mk(h, &rc, 2, op_items), ops);
            } else {
                term_t kept[3] = {name, mine, mine_method};
                term_t keep_items[2] = {heap_atom("insert"), mk(h, &rc, 3, kept)};
                res = cons(h, &rc, mk(h, &rc, 2, keep_items), res);
            }
        }
    }
    if (rc == 0)
        rc = blob_set(&s->ops, ops);
    term_t items[7] = {heap_atom("resolved"),          heap_node_name(),    res,
                       known_list(g, h, s->node, &rc), heap_atom("unused"), TERM_NIL,
                       blob_term(h, &s->his_tag, &rc)};
    term_t msg = mk(h, &rc, 7, items);
    if (rc == 0)
        rc = gns_cast(ctx, s->node, msg);
    s->resolved_sent = true;
    return rc == 0 && s->have_his_resolved ? session_finish(ctx, g, s) : rc;
}

/* {exchange, Node, Names, _Ext, MyTag}. */
static int on_exchange(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    gsession_t *s = term_is_atom(el(m, 1)) ? session_find(g, el(m, 1)) : NULL;
    if (s == NULL || !tag_is_mine(s, el(m, 4)) || s->resolved_sent)
        return 0;
    if (s->locked)
        return session_resolve(ctx, g, s, el(m, 2));
    return blob_set(&s->his_names, el(m, 2));
}

/* The node names of [Node | {Node, Vsn}]. */
static term_t node_of(term_t e)
{
    if (tarity(e) == 2)
        e = el(e, 0);
    return term_is_atom(e) ? e : TERM_NONE;
}

/* sync_other: in_sync tells a node we learnt of through another that we
 * are in sync with it (its global:sync() waits for that).  Sent at once
 * to a node connected already, else when its connection comes up (as
 * OTP's sync_other, which connects first). */
static int send_in_sync(sched_ctx_t *ctx, term_t node_atom)
{
    int rc = 0;
    term_t items[3] = {heap_atom("in_sync"), heap_node_name(), heap_atom("true")};
    term_t msg = mk(sched_heap(ctx), &rc, 3, items);
    return rc == 0 ? gns_cast(ctx, node_atom, msg) : rc;
}

static bool is_connected(sched_ctx_t *ctx, term_t node_atom)
{
    term_t nodes;
    if (cluster_nodes(sched_heap(ctx), &nodes) < 0)
        return false;
    for (term_t l = nodes; term_is_list(l); l = term_cdr(l))
        if (term_car(l) == node_atom)
            return true;
    return false;
}

/* A known node we are not connected to is connected to later, and only
 * by the smaller of the two names: the other side (an OTP node's
 * sync_others at once, a girder node after the same pause) usually
 * connects too, and two attempts crossing cost one of them its queued
 * messages.  Its nodeup then sends in_sync. */
static int arm_connect(sched_ctx_t *ctx, cluster_global_t *g)
{
    if (g->connect_armed)
        return 0;
    g->connect_armed = true;
    return sched_send_after(ctx, GLOBAL_CONNECT_DELAY_MS, sched_self(ctx),
                            heap_atom("$gd_global_connect"), NULL);
}

static int connect_known(sched_ctx_t *ctx, cluster_global_t *g)
{
    g->connect_armed = false;
    int rc = 0;
    for (size_t i = 0; i < g->nknown && rc == 0; i++)
        if (order_of(heap_node_name(), g->known[i]) < 0 && !is_connected(ctx, g->known[i]))
            rc = send_in_sync(ctx, g->known[i]);
    return rc;
}

/* Ends our sync session with node_atom, if any, without a result
 * [cancel_locker]: its lock here is freed. */
static int session_cancel(sched_ctx_t *ctx, cluster_global_t *g, term_t node_atom)
{
    gsession_t *s = session_find(g, node_atom);
    if (s == NULL)
        return 0;
    int rc = s->awaiting || s->locked ? session_unlock_here(ctx, g, s) : 0;
    session_remove(g, s);
    return rc;
}

/* Adds the nodes of a peer's known list (or new_nodes) to ours.  A sync
 * session of ours with a node learnt of this way ends: the in_sync we
 * send makes an OTP node end its side of it (handle_cast in_sync), after
 * which it drops that session's lock_set and exchange unanswered, so a
 * session that went on would hold `global` here for good and every
 * registration would be refused (OTP ends its own side likewise:
 * cancel_resolved_locker on resolved, and its locker skips known nodes). */
static int add_known_nodes(sched_ctx_t *ctx, cluster_global_t *g, term_t nodes, term_t except)
{
    int rc = 0;
    for (term_t l = nodes; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        term_t n = node_of(term_car(l));
        bool added;
        if (n == TERM_NONE || n == except)
            continue;
        rc = known_add(g, n, &added);
        if (rc == 0 && added)
            rc = session_cancel(ctx, g, n);
        if (rc == 0 && added && is_connected(ctx, n))
            rc = send_in_sync(ctx, n);
        else if (rc == 0 && added)
            rc = arm_connect(ctx, g);
    }
    return rc;
}

/* resolved: the operations run here, new_nodes to the nodes known
 * before, the peer (and what it knows) becomes known. */
static int session_finish(sched_ctx_t *ctx, cluster_global_t *g, gsession_t *s)
{
    heap_t *h = sched_heap(ctx);
    int rc = 0;
    term_t ops = blob_term(h, &s->ops, &rc);
    term_t his_res = blob_term(h, &s->his_resolved, &rc);
    term_t his_known = blob_term(h, &s->his_known, &rc);
    for (term_t l = his_res; rc == 0 && term_is_list(l); l = term_cdr(l))
        ops = cons(h, &rc, term_car(l), ops);
    if (rc == 0)
        rc = do_ops(ctx, g, ops);
    term_t peer_items[2] = {s->node, term_make_small(GLOBAL_VSN)};
    term_t new_nodes = cons(h, &rc, mk(h, &rc, 2, peer_items), TERM_NIL);
    for (term_t l = his_known; rc == 0 && term_is_list(l); l = term_cdr(l)) {
        term_t n = node_of(term_car(l));
        if (n == TERM_NONE || n == heap_node_name())
            continue;
        term_t nv[2] = {n, term_make_small(GLOBAL_VSN)};
        new_nodes = cons(h, &rc, mk(h, &rc, 2, nv), new_nodes);
    }
    term_t vsn_items[2] = {heap_atom("vsn"), term_make_small(GLOBAL_VSN)};
    term_t lock_items[2] = {heap_atom("lock"), lock_id_term(h, s, &rc)};
    term_t extra = cons(h, &rc, mk(h, &rc, 2, lock_items), TERM_NIL);
    extra = cons(h, &rc, mk(h, &rc, 2, vsn_items), extra);
    term_t items[6] = {heap_atom("new_nodes"), heap_node_name(), ops, TERM_NIL, new_nodes, extra};
    term_t msg = mk(h, &rc, 6, items);
    for (size_t i = 0; i < g->nknown && rc == 0; i++)
        if (g->known[i] != s->node)
            rc = gns_cast(ctx, g->known[i], msg);
    bool added;
    term_t node_atom = s->node;
    if (rc == 0)
        rc = known_add(g, node_atom, &added);
    if (rc == 0)
        rc = session_unlock_here(ctx, g, s);
    session_remove(g, s);
    if (rc == 0)
        rc = add_known_nodes(ctx, g, his_known, node_atom);
    return rc == 0 ? sessions_try_lock(ctx, g) : rc;
}

/* {resolved, Node, HisResolved, HisKnown, _Unused, NamesExt, MyTag}. */
static int on_resolved(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    gsession_t *s = term_is_atom(el(m, 1)) ? session_find(g, el(m, 1)) : NULL;
    if (s == NULL || !tag_is_mine(s, el(m, 6)) || s->have_his_resolved)
        return 0;
    int rc = blob_set(&s->his_resolved, el(m, 2));
    if (rc == 0)
        rc = blob_set(&s->his_known, el(m, 3));
    s->have_his_resolved = true;
    return rc == 0 && s->resolved_sent ? session_finish(ctx, g, s) : rc;
}

/* {new_nodes, Node, Ops, NamesExt, Nodes, ExtraInfo}. */
static int on_new_nodes(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    int rc = add_known_nodes(ctx, g, el(m, 4), TERM_NONE);
    if (rc == 0)
        rc = do_ops(ctx, g, el(m, 2));
    /* A session ended may have freed `global` here. */
    if (rc == 0)
        rc = sessions_try_lock(ctx, g);
    return rc == 0 ? trans_start(ctx, g) : rc;
}

/* ---- this node's registrations: trans_all_known ---- */

static bool queue_empty(cluster_global_t *g)
{
    pthread_mutex_lock(&g->lock);
    bool empty = g->queue_head == NULL;
    pthread_mutex_unlock(&g->lock);
    return empty;
}

static greq_t *queue_pop(cluster_global_t *g)
{
    pthread_mutex_lock(&g->lock);
    greq_t *r = g->queue_head;
    if (r != NULL) {
        g->queue_head = r->next;
        if (g->queue_head == NULL)
            g->queue_tail = NULL;
    }
    pthread_mutex_unlock(&g->lock);
    return r;
}

static void queue_push_front(cluster_global_t *g, greq_t *r)
{
    pthread_mutex_lock(&g->lock);
    r->next = g->queue_head;
    g->queue_head = r;
    if (g->queue_tail == NULL)
        g->queue_tail = r;
    pthread_mutex_unlock(&g->lock);
}

static void req_release(greq_t *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        blob_free(&r->name);
        blob_free(&r->pid);
        pthread_mutex_destroy(&r->m);
        pthread_cond_destroy(&r->cv);
        free(r);
    }
}

static void req_complete(greq_t *r, int result)
{
    pthread_mutex_lock(&r->m);
    r->done = true;
    r->result = result;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->m);
    req_release(r);
}

static term_t trans_lock_id(sched_ctx_t *ctx, int *rc)
{
    term_t items[2] = {heap_atom("global"), sched_self(ctx)};
    return mk(sched_heap(ctx), rc, 2, items);
}

/* Sends {del_lock, {global, Server}} to the transaction's nodes and frees
 * the lock here. */
static int trans_unlock(sched_ctx_t *ctx, cluster_global_t *g)
{
    int rc = 0;
    heap_t *h = sched_heap(ctx);
    term_t id = trans_lock_id(ctx, &rc), ref;
    if (rc == 0)
        rc = sched_make_ref(ctx, &ref);
    term_t items[2] = {heap_atom("del_lock"), id};
    term_t req = mk(h, &rc, 2, items);
    for (size_t i = 0; i < g->trans_n && rc == 0; i++)
        rc = gns_call(ctx, g->trans_nodes[i], ref, req);
    if (rc == 0)
        rc = lock_del(g, id, sched_self(ctx));
    free(g->trans_nodes);
    g->trans_nodes = NULL;
    g->trans_n = 0;
    blob_free(&g->trans_ref);
    return rc;
}

static int trans_start(sched_ctx_t *ctx, cluster_global_t *g);

/* Every node granted the lock: the operation runs everywhere. */
static int trans_commit(sched_ctx_t *ctx, cluster_global_t *g)
{
    heap_t *h = sched_heap(ctx);
    greq_t *r = g->trans;
    int rc = 0, result = 0;
    term_t pid = blob_term(h, &r->pid, &rc), name = blob_term(h, &r->name, &rc), req = TERM_NONE,
           ref;
    if (rc == 0)
        rc = sched_make_ref(ctx, &ref);
    if (rc == 0 && r->is_register) {
        if (table_has(g, name)) {
            result = SCHED_ENAME_TAKEN;
        } else {
            term_t method;
            rc =
                heap_make_export(h, heap_atom("global"), heap_atom("random_exit_name"), 3, &method);
            term_t items[4] = {heap_atom("register"), name, pid, method};
            req = mk(h, &rc, 4, items);
            if (rc == 0)
                rc = ins_name(ctx, g, name, pid, method);
        }
    } else if (rc == 0 && table_has(g, name)) {
        term_t items[2] = {heap_atom("unregister"), name};
        req = mk(h, &rc, 2, items);
        table_drop(g, name, NULL);
    }
    for (size_t i = 0; i < g->trans_n && rc == 0 && req != TERM_NONE; i++)
        rc = gns_call(ctx, g->trans_nodes[i], ref, req);
    if (rc == 0)
        rc = trans_unlock(ctx, g);
    g->trans = NULL;
    req_complete(r, result);
    if (rc == 0)
        rc = sessions_try_lock(ctx, g);
    return rc == 0 ? trans_start(ctx, g) : rc;
}

/* A node refused (or did not answer): free what was granted, wait, try
 * again. */
static int trans_abort(sched_ctx_t *ctx, cluster_global_t *g)
{
    int rc = trans_unlock(ctx, g);
    queue_push_front(g, g->trans);
    g->trans = NULL;
    if (rc == 0)
        rc = sessions_try_lock(ctx, g);
    return rc == 0 ? arm_retry(ctx, g) : rc;
}

/* set_lock_known: {set_lock, {global, Server}} on this node and every
 * known node. */
static int trans_start(sched_ctx_t *ctx, cluster_global_t *g)
{
    if (g->trans != NULL || queue_empty(g))
        return 0;
    int rc = 0;
    heap_t *h = sched_heap(ctx);
    term_t id = trans_lock_id(ctx, &rc);
    bool ok = false;
    if (rc == 0)
        rc = lock_set(g, id, sched_self(ctx), &ok);
    if (rc < 0 || !ok)
        return rc < 0 ? rc : arm_retry(ctx, g);
    g->trans = queue_pop(g);
    g->trans_nodes = malloc((g->nknown + 1) * sizeof *g->trans_nodes);
    if (g->trans_nodes == NULL)
        return GD_ENOMEM;
    if (g->nknown > 0) /* known is NULL until a node becomes known */
        memcpy(g->trans_nodes, g->known, g->nknown * sizeof *g->known);
    g->trans_n = g->trans_waiting = g->nknown;
    g->trans_refused = false;
    term_t ref;
    rc = sched_make_ref(ctx, &ref);
    if (rc == 0)
        rc = blob_set(&g->trans_ref, ref);
    term_t items[2] = {heap_atom("set_lock"), id};
    term_t req = mk(h, &rc, 2, items);
    for (size_t i = 0; i < g->trans_n && rc == 0; i++)
        rc = gns_call(ctx, g->trans_nodes[i], ref, req);
    if (rc < 0)
        return rc;
    if (g->trans_n == 0)
        return trans_commit(ctx, g);
    term_t t_items[2] = {heap_atom("$gd_global_timeout"), ref};
    term_t tmsg = mk(h, &rc, 2, t_items);
    return rc == 0 ? sched_send_after(ctx, GLOBAL_TRANS_TIMEOUT_MS, sched_self(ctx), tmsg, NULL)
                   : rc;
}

/* {Ref, Reply}: an answer to one of our calls. */
static int on_reply(sched_ctx_t *ctx, cluster_global_t *g, term_t ref, term_t reply)
{
    if (g->trans == NULL || g->trans_waiting == 0)
        return 0;
    blob_t b = {0};
    int rc = blob_set(&b, ref);
    bool ours = rc == 0 && blob_eq(&b, &g->trans_ref);
    blob_free(&b);
    if (!ours)
        return rc; /* a register / del_lock answer: nothing to do */
    if (!is(reply, "true"))
        g->trans_refused = true;
    if (--g->trans_waiting > 0)
        return 0;
    return g->trans_refused ? trans_abort(ctx, g) : trans_commit(ctx, g);
}

/* ---- the server process ---- */

static int on_call(sched_ctx_t *ctx, cluster_global_t *g, term_t from, term_t req)
{
    if (tarity(from) != 2 || !term_is_pid(el(from, 0))) {
        log_dropped("malformed $gen_call", from);
        return 0;
    }
    heap_t *h = sched_heap(ctx);
    term_t caller = el(from, 0), reply = TERM_NONE, tag = tarity(req) ? el(req, 0) : req;
    size_t n = tarity(req);
    int rc = 0;
    if (n == 4 && is(tag, "register")) {
        rc = ins_name(ctx, g, el(req, 1), el(req, 2), el(req, 3));
        reply = heap_atom("yes");
    } else if (n == 5 && is(tag, "register_ext")) {
        rc = ins_name(ctx, g, el(req, 1), el(req, 2), el(req, 3));
        reply = heap_atom("yes");
    } else if (n == 2 && is(tag, "unregister")) {
        table_drop(g, el(req, 1), NULL);
        reply = heap_atom("ok");
    } else if (n == 2 && is(tag, "set_lock")) {
        bool ok;
        rc = lock_set(g, el(req, 1), caller, &ok);
        reply = heap_atom(ok ? "true" : "false");
    } else if (n == 2 && is(tag, "del_lock")) {
        rc = lock_del(g, el(req, 1), caller);
        reply = heap_atom("true");
        if (rc == 0)
            rc = sessions_try_lock(ctx, g);
        if (rc == 0)
            rc = trans_start(ctx, g);
    } else if (is(tag, "get_known") || is(tag, "get_synced")) {
        /* mk_known_list(0): plain node names. */
        reply = TERM_NIL;
        for (size_t i = 0; i < g->nknown; i++)
            reply = cons(h, &rc, g->known[i], reply);
    } else if (is(tag, "get_protocol_version")) {
        reply = term_make_small(GLOBAL_VSN);
    } else if (is(tag, "get_names_ext")) {
        reply = TERM_NIL;
    } else {
        log_dropped("unknown $gen_call", req);
        return 0;
    }
    return rc == 0 ? gen_reply(ctx, from, reply) : rc;
}

/* {in_sync, Node, _}: the node learnt of us through another and ended
 * its side of our sync session (OTP's handle_cast in_sync cancels its
 * locker and forgets the session's tags), so it will answer nothing of
 * ours: our side ends too, freeing `global` here if it held it. */
static int on_in_sync(sched_ctx_t *ctx, cluster_global_t *g, term_t node_atom)
{
    if (session_find(g, node_atom) == NULL)
        return 0;
    int rc = session_cancel(ctx, g, node_atom);
    if (rc == 0)
        rc = sessions_try_lock(ctx, g);
    return rc == 0 ? trans_start(ctx, g) : rc;
}

static int on_cast(sched_ctx_t *ctx, cluster_global_t *g, term_t m)
{
    size_t n = tarity(m);
    term_t tag = n ? el(m, 0) : m;
    if (n == 4 && is(tag, "init_connect"))
        return on_init_connect(ctx, g, m);
    if (n == 5 && is(tag, "lock_set"))
        return on_lock_set(ctx, g, m);
    if (n == 5 && is(tag, "exchange"))
        return on_exchange(ctx, g, m);
    if (n == 7 && is(tag, "resolved"))
        return on_resolved(ctx, g, m);
    if (n == 6 && is(tag, "new_nodes"))
        return on_new_nodes(ctx, g, m);
    if (n == 3 && is(tag, "in_sync") && term_is_atom(el(m, 1)))
        return on_in_sync(ctx, g, el(m, 1));
    if ((n == 3 && is(tag, "async_del_name")) || (n == 3 && is(tag, "async_del_lock")) ||
        (n == 4 && is(tag, "lock_set")))
        return 0; /* pre-R14 */
    log_dropped("unknown or malformed $gen_cast", m);
    return 0;
}

static int on_nodedown(sched_ctx_t *ctx, cluster_global_t *g, term_t node_atom)
{
    gsession_t *s = session_find(g, node_atom);
    int rc = 0;
    if (s != NULL && (s->awaiting || s->locked))
        rc = session_unlock_here(ctx, g, s); /* else `global` stays locked here */
    if (s != NULL)
        session_remove(g, s);
    if (rc < 0)
        return rc;
    known_remove(g, node_atom);
    up_remove(g, node_atom);
    table_drop_node(g, node_atom);
    locks_drop_node(g, node_atom);
    for (size_t i = 0; g->trans != NULL && i < g->trans_n; i++)
        if (g->trans_nodes[i] == node_atom) {
            /* It will not answer: the round counts it as granted. */
            g->trans_nodes[i] = g->trans_nodes[--g->trans_n];
            if (g->trans_waiting > 0 && --g->trans_waiting == 0)
                return g->trans_refused ? trans_abort(ctx, g) : trans_commit(ctx, g);
            break;
        }
    rc = sessions_try_lock(ctx, g);
    return rc == 0 ? trans_start(ctx, g) : rc;
}

static int global_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)arg;
    *state = TERM_NIL;
    int rc = sched_register(ctx, heap_atom("global_name_server"));
    return rc == 0 ? cluster_monitor_nodes(ctx, true) : rc;
}

static int global_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)state;
    cluster_global_t *g = G();
    size_t n = tarity(msg);
    term_t tag = n ? el(msg, 0) : msg;
    if (n == 2 && is(tag, "$gen_cast"))
        return on_cast(ctx, g, el(msg, 1));
    if (n == 3 && is(tag, "$gen_call"))
        return on_call(ctx, g, el(msg, 1), el(msg, 2));
    if (n == 2 && is(tag, "nodeup") && term_is_atom(el(msg, 1))) {
        gsession_t *s;
        int rc = up_add(g, el(msg, 1));
        if (rc < 0)
            return rc;
        if (known_has(g, el(msg, 1)))
            return send_in_sync(ctx, el(msg, 1));
        if (session_find(g, el(msg, 1)) != NULL)
            return 0;
        return session_start(ctx, g, el(msg, 1), &s);
    }
    if (n == 2 && is(tag, "nodedown") && term_is_atom(el(msg, 1)))
        return on_nodedown(ctx, g, el(msg, 1));
    if (n == 5 && is(tag, "DOWN")) {
        /* A registered pid ended (or its node went): its names go. */
        blob_t p = {0};
        int rc = blob_set(&p, el(msg, 3));
        if (rc == 0)
            table_drop_pid(g, &p);
        blob_free(&p);
        return rc;
    }
    if (n == 4 && is(tag, "init_connect_ack"))
        return 0; /* our init_connect went first on the connection: in order */
    if ((n == 5 && is(tag, "lost_connection")) || (n == 2 && is(tag, "remove_connection")) ||
        (n == 3 && is(tag, "cancel_connect")))
        return 0; /* prevent_overlapping_partitions: not applied here, as
                     with the kernel parameter false */
    if (n == 2 && is(tag, "$gd_global_timeout") && g->trans != NULL) {
        blob_t b = {0};
        int rc = blob_set(&b, el(msg, 1));
        bool ours = rc == 0 && blob_eq(&b, &g->trans_ref) && g->trans_waiting > 0;
        blob_free(&b);
        return ours ? trans_abort(ctx, g) : rc;
    }
    if (is(msg, "$gd_global_retry")) {
        g->retry_armed = false;
        int rc = sessions_try_lock(ctx, g);
        return rc == 0 ? trans_start(ctx, g) : rc;
    }
    if (is(msg, "$gd_global_connect"))
        return connect_known(ctx, g);
    if (is(msg, "$gd_global_request"))
        return trans_start(ctx, g);
    if (n == 2 && term_is_ref(tag))
        return on_reply(ctx, g, tag, el(msg, 1));
    if (n == 2 && is(tag, "$gd_global_timeout"))
        return 0; /* a finished round's */
    log_dropped("unexpected message", msg);
    return 0;
}

static const sched_behaviour_t global_beh = {global_init, global_handle, NULL, NULL};

/* ---- the API and the rpc built-ins ---- */

/* Queues a (un)registration for the server and waits for its answer. */
static int request(bool is_register, term_t name, term_t pid)
{
    cluster_global_t *g = G();
    if (g == NULL || !term_is_pid(g->server))
        return SCHED_ESTOPPED;
    greq_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return GD_ENOMEM;
    r->is_register = is_register;
    atomic_init(&r->refs, 2);
    int rc = name_key(&r->name, name);
    if (rc == 0 && is_register)
        rc = blob_set(&r->pid, pid);
    if (rc < 0) {
        blob_free(&r->name);
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->m, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_lock(&g->lock);
    if (g->queue_tail != NULL)
        g->queue_tail->next = r;
    else
        g->queue_head = r;
    g->queue_tail = r;
    pthread_mutex_unlock(&g->lock);
    /* The server's work may wait on what the caller sent before. */
    cluster_cork_flush();
    /* Should the server be gone (stopping), cluster_global_clear answers
     * what is queued. */
    int sent = sched_send(NULL, g->server, heap_atom("$gd_global_request"));
    (void)sent;
    /* In slices: a server that ended (the node stopping) answers nothing,
     * and the caller may be a scheduler thread sched_stop waits for. */
    term_t server = g->server;
    pthread_mutex_lock(&r->m);
    for (int waited = 0; !r->done && waited < GLOBAL_CALL_WAIT_MS; waited += 100) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int wrc = pthread_cond_timedwait(&r->cv, &r->m, &until);
        (void)wrc;
        if (!r->done && !sched_is_alive(server))
            break;
    }
    rc = r->done ? r->result : sched_is_alive(server) ? GD_ESYSTEM_LIMIT : SCHED_ESTOPPED;
    pthread_mutex_unlock(&r->m);
    req_release(r);
    return rc;
}

int cluster_global_register(heap_t *h, term_t name, term_t pid)
{
    (void)h;
    if (!term_is_pid(pid))
        return GD_EBADARG;
    cluster_global_t *g = G();
    if (g != NULL && table_has(g, name))
        return SCHED_ENAME_TAKEN; /* where(Name) =/= undefined: no lock needed */
    return request(true, name, pid);
}

int cluster_global_unregister(heap_t *h, term_t name)
{
    (void)h;
    cluster_global_t *g = G();
    if (g == NULL || !table_has(g, name))
        return 0;
    return request(false, name, TERM_NONE);
}

int cluster_global_whereis(heap_t *h, term_t name, term_t *pid_out)
{
    int rc = 0;
    *pid_out = heap_atom("undefined");
    cluster_global_t *g = G();
    blob_t key;
    if (g == NULL || name_key(&key, name) < 0)
        return 0; /* a name too big to be registered is not */
    pthread_mutex_lock(&g->lock);
    size_t i = find_locked(g, &key);
    if (i < g->n)
        *pid_out = blob_term(h, &g->names[i].pid, &rc);
    pthread_mutex_unlock(&g->lock);
    blob_free(&key);
    return rc;
}

int cluster_global_send(sched_ctx_t *ctx, heap_t *h, term_t name, term_t msg, term_t *pid_out)
{
    int rc = cluster_global_whereis(h, name, pid_out);
    if (rc < 0)
        return rc;
    if (!term_is_pid(*pid_out))
        return SCHED_ENOPROC;
    return sched_send(ctx, *pid_out, msg);
}

/* register_name(Name, Pid) -> yes | no */
static int bif_register(heap_t *h, term_t args, term_t *out)
{
    int rc = cluster_global_register(h, term_car(args), term_car(term_cdr(args)));
    if (rc < 0 && rc != SCHED_ENAME_TAKEN)
        return rc;
    *out = heap_atom(rc == 0 ? "yes" : "no");
    return 0;
}

/* unregister_name(Name) -> ok */
static int bif_unregister(heap_t *h, term_t args, term_t *out)
{
    *out = heap_atom("ok");
    return cluster_global_unregister(h, term_car(args));
}

/* whereis_name(Name) -> Pid | undefined */
static int bif_whereis(heap_t *h, term_t args, term_t *out)
{
    return cluster_global_whereis(h, term_car(args), out);
}

/* send(Name, Msg) -> Pid; badarg for a name nobody has (global:send/2
 * exits with {badarg, {Name, Msg}}). */
static int bif_send(heap_t *h, term_t args, term_t *out)
{
    int rc = cluster_global_send(NULL, h, term_car(args), term_car(term_cdr(args)), out);
    return rc == SCHED_ENOPROC ? GD_EBADARG : rc;
}

/* girder:global_names() -> [{Name, Pid}] */
static int bif_names(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    cluster_global_t *g = G();
    *out = TERM_NIL;
    return g == NULL ? 0 : table_list(g, h, LIST_PAIRS, out);
}

/* global:registered_names() -> [Name] */
static int bif_registered_names(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    cluster_global_t *g = G();
    *out = TERM_NIL;
    return g == NULL ? 0 : table_list(g, h, LIST_NAMES, out);
}

/* global:resolve_it(Method, Name, Pid1, Pid2): what an OTP node's
 * exchange_names asks the node of the name's holder to run on a clash.
 * No Erlang code runs here, so every method acts as the default
 * random_exit_name: the pid on the smaller node keeps the name, the other
 * is killed. */
static int bif_resolve_it(heap_t *h, term_t args, term_t *out)
{
    (void)h;
    term_t p1 = term_car(term_cdr(term_cdr(args))),
           p2 = term_car(term_cdr(term_cdr(term_cdr(args))));
    if (!term_is_pid(p1) || !term_is_pid(p2))
        return GD_EBADARG;
    bool p1_min = order_of(pid_node(p1), pid_node(p2)) < 0;
    int rc = sched_exit_pid(NULL, p1_min ? p2 : p1, heap_atom("kill"));
    if (rc < 0 && rc != SCHED_ENOPROC && rc != DIST_ENOCONNECTION)
        return rc;
    cluster_log("global: name conflict, terminating the loser");
    *out = p1_min ? p1 : p2;
    return 0;
}

int cluster_global_start(void)
{
    static const struct {
        const char *m, *f;
        unsigned a;
        cluster_rpc_fn fn;
    } bifs[] = {{"girder", "global_register", 2, bif_register},
                {"girder", "global_unregister", 1, bif_unregister},
                {"girder", "global_whereis", 1, bif_whereis},
                {"girder", "global_send", 2, bif_send},
                {"girder", "global_names", 0, bif_names},
                {"global", "register_name", 2, bif_register},
                {"global", "unregister_name", 1, bif_unregister},
                {"global", "whereis_name", 1, bif_whereis},
                {"global", "send", 2, bif_send},
                {"global", "registered_names", 0, bif_registered_names},
                {"global", "resolve_it", 4, bif_resolve_it}};
    for (size_t i = 0; i < sizeof bifs / sizeof bifs[0]; i++) {
        int rc = cluster_rpc_register(bifs[i].m, bifs[i].f, bifs[i].a, bifs[i].fn);
        if (rc < 0)
            return rc;
    }
    cluster_global_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return GD_ENOMEM;
    pthread_mutex_init(&g->lock, NULL);
    g->server = TERM_NONE;
    *cluster_global_slot() = g;
    term_t pid;
    int rc = sched_spawn(NULL, &global_beh, TERM_NIL, &pid);
    if (rc == 0)
        g->server = pid; /* before any caller of the API may read it */
    /* A peer may send init_connect as soon as it connects. */
    for (int tries = 0; rc == 0 && tries < 1000; tries++) {
        if (term_is_pid(sched_whereis(heap_atom("global_name_server"))))
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return rc < 0 ? rc : GD_ESYSTEM_LIMIT;
}

void cluster_global_clear(void)
{
    cluster_global_t *g = *cluster_global_slot();
    if (g == NULL)
        return;
    *cluster_global_slot() = NULL;
    while (g->n > 0)
        remove_at_locked(g, g->n - 1);
    free(g->names);
    while (g->nlocks > 0)
        lock_remove(g, &g->locks[g->nlocks - 1]);
    free(g->locks);
    while (g->nsess > 0)
        session_remove(g, &g->sess[g->nsess - 1]);
    free(g->sess);
    free(g->known);
    free(g->up);
    free(g->trans_nodes);
    blob_free(&g->trans_ref);
    if (g->trans != NULL)
        req_complete(g->trans, SCHED_ESTOPPED);
    for (greq_t *r; (r = g->queue_head) != NULL;) {
        g->queue_head = r->next;
        req_complete(r, SCHED_ESTOPPED);
    }
    pthread_mutex_destroy(&g->lock);
    free(g);
}
