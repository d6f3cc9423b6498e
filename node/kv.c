/*
 * kv.c — girder_kv, the key-value gen_server every girder node runs
 * (design.md, "The node contract"):
 *   {put, K, V}  -> ok
 *   {get, K}     -> {ok, V} | error
 *   {delete, K}  -> ok
 * Keys and values are any terms; keys match exactly (=:=), as map keys do.
 *
 * State: {Map, Dead}.  Map holds every key ever put and not yet compacted
 * away: a live key maps to the 1-tuple {V}, a deleted one to the atom
 * `deleted` (a tombstone: the heap's maps have no removal, and rebuilding
 * the map on every delete would make deletes O(n)).  Dead counts the
 * tombstones; once they outnumber the live keys (and the map is past the
 * flat size) the map is rebuilt without them, so a delete costs O(log n)
 * amortised and the map never holds more than twice the live keys.
 * Wrapping live values keeps a stored value from ever being mistaken for a
 * tombstone, whatever it is.
 */
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* Past this many entries, compaction is worth its O(n log n). */
#define KV_COMPACT_MIN HEAP_MAP_FLAT_MAX

typedef struct kv_atoms {
    term_t put, get, del, ok, error, deleted, badrequest, name;
} kv_atoms_t;

static int kv_atoms(kv_atoms_t *a)
{
    static const char *const names[] = {"put",   "get",     "delete",     "ok",
                                        "error", "deleted", "badrequest", "girder_kv"};
    term_t *slots[] = {&a->put,   &a->get,     &a->del,        &a->ok,
                       &a->error, &a->deleted, &a->badrequest, &a->name};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        *slots[i] = heap_atom(names[i]);
        if (*slots[i] == TERM_NONE)
            return GD_ENOMEM;
    }
    return GD_OK;
}

static int make_tuple(heap_t *h, term_t *out, size_t n, const term_t *items)
{
    term_t *e;
    int rc = heap_make_tuple(h, n, &e, out);
    if (rc == GD_OK)
        for (size_t i = 0; i < n; i++)
            e[i] = items[i];
    return rc;
}

static int kv_state(heap_t *h, term_t map, int64_t dead, term_t *state)
{
    term_t items[2] = {map, term_make_small(dead)};
    return make_tuple(h, state, 2, items);
}

static int kv_init(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret)
{
    (void)arg;
    (void)ret;
    term_t map;
    int rc = heap_make_map(sched_heap(ctx), NULL, NULL, 0, &map);
    return rc == GD_OK ? kv_state(sched_heap(ctx), map, 0, state) : rc;
}

/* The map without its tombstones. */
static int kv_compact(heap_t *h, term_t map, term_t deleted, term_t *out)
{
    size_t n = heap_map_size(map);
    term_t *keys = malloc(2 * n * sizeof *keys);
    if (keys == NULL)
        return GD_ENOMEM;
    term_t *vals = keys + n;
    heap_map_pairs(map, keys, vals);
    size_t live = 0;
    for (size_t i = 0; i < n; i++)
        if (vals[i] != deleted) {
            keys[live] = keys[i];
            vals[live] = vals[i];
            live++;
        }
    int rc = heap_make_map(h, keys, vals, live, out);
    free(keys);
    return rc;
}

static int kv_call(sched_ctx_t *ctx, term_t req, term_t from, term_t *state, girder_ret_t *ret)
{
    (void)from;
    kv_atoms_t a;
    int rc = kv_atoms(&a);
    if (rc != GD_OK)
        return rc;
    heap_t *h = sched_heap(ctx);
    term_t map = term_tuple_elems(*state)[0];
    int64_t dead = term_small_value(term_tuple_elems(*state)[1]);
    size_t n = term_is_tuple(req) ? term_tuple_arity(req) : 0;
    const term_t *r = n > 0 ? term_tuple_elems(req) : NULL;
    term_t old = TERM_NONE;
    if (n == 2 || n == 3) {
        rc = heap_map_find(map, r[1], &old);
        if (rc != GD_OK)
            return rc;
    }
    bool live = old != TERM_NONE && old != a.deleted;
    ret->action = GIRDER_REPLY;
    ret->reply = a.ok;
    if (n == 3 && r[0] == a.put) {
        term_t boxed;
        rc = make_tuple(h, &boxed, 1, &r[2]);
        if (rc == GD_OK)
            rc = heap_map_put(h, map, r[1], boxed, &map);
        if (old == a.deleted)
            dead--;
    } else if (n == 2 && r[0] == a.get) {
        if (!live) {
            ret->reply = a.error;
            return GD_OK;
        }
        term_t items[2] = {a.ok, term_tuple_elems(old)[0]};
        return make_tuple(h, &ret->reply, 2, items);
    } else if (n == 2 && r[0] == a.del) {
        if (!live)
            return GD_OK;
        rc = heap_map_put(h, map, r[1], a.deleted, &map);
        dead++;
        size_t size = heap_map_size(map);
        if (rc == GD_OK && size > KV_COMPACT_MIN && (size_t)dead * 2 > size) {
            rc = kv_compact(h, map, a.deleted, &map);
            dead = 0;
        }
    } else {
        /* Not a request girder_kv knows: {error, {badrequest, Req}}
         * rather than OTP's crash (a function_clause would take every
         * stored key with it). */
        term_t inner, items[2] = {a.badrequest, req};
        rc = make_tuple(h, &inner, 2, items);
        term_t outer[2] = {a.error, inner};
        return rc == GD_OK ? make_tuple(h, &ret->reply, 2, outer) : rc;
    }
    return rc == GD_OK ? kv_state(h, map, dead, state) : rc;
}

static const girder_gen_server_t kv_mod = {.init = kv_init, .handle_call = kv_call};

int girder_kv_start(term_t *pid_out)
{
    kv_atoms_t a;
    int rc = kv_atoms(&a);
    if (rc != GD_OK)
        return rc;
    girder_gen_opts_t opts = {.name = a.name};
    return girder_gen_start(NULL, &kv_mod, TERM_NIL, &opts, pid_out);
}

int girder_services_start(void)
{
    term_t pid;
    int rc = girder_kv_start(&pid);
    if (rc == GD_OK)
        rc = node_remote_builtins_register();
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
