/*
 * kv_module.c — girder_kv's code, the key-value gen_server every girder
 * node runs (design.md, "The node contract"), as a hot-reloadable module:
 * linked into gd_node as version 1 and built again as a shared object
 * (girder_kv_v2, GIRDER_KV_VSN=2) that girder:reload(girder_kv, Path)
 * swaps in at run time (kv.c).  Everything here is static except the
 * module table, so a loaded copy never binds to the linked-in one.
 * Requests:
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
#include <msgpack.h>
#include <stdlib.h>

#include "etf.h"
#include "internal.h"

#ifndef GIRDER_KV_VSN
#define GIRDER_KV_VSN 1
#endif

/* Past this many entries, compaction is worth its O(n log n). */
#define KV_COMPACT_MIN HEAP_MAP_FLAT_MAX

typedef struct kv_atoms {
    term_t put, get, del, ok, error, deleted, badrequest, name, version, reload;
} kv_atoms_t;

static int kv_atoms(kv_atoms_t *a)
{
    static const char *const names[] = {
        "put",     "get",        "delete",    "ok",      "error",
        "deleted", "badrequest", "girder_kv", "version", "$girder_kv_reload"};
    term_t *slots[] = {&a->put,     &a->get,        &a->del,  &a->ok,      &a->error,
                       &a->deleted, &a->badrequest, &a->name, &a->version, &a->reload};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        *slots[i] = heap_atom(names[i]);
        if (*slots[i] == TERM_NONE)
            return GD_ENOMEM;
    }
    return GD_OK;
}

static int kv_state(heap_t *h, term_t map, int64_t dead, term_t *state)
{
    term_t items[2] = {map, term_make_small(dead)};
    return heap_make_tuple_from(h, 2, items, state);
}

static int kv_init(sched_ctx_t *ctx, term_t arg, term_t *state, girder_ret_t *ret)
{
    (void)arg;
    (void)ret;
    term_t map;
    int rc = heap_make_map(sched_heap(ctx), NULL, NULL, 0, &map);
    return rc == GD_OK ? kv_state(sched_heap(ctx), map, 0, state) : rc;
}

/* map's keys and values in one allocation (free the keys; vals points
 * into it); NULL when out of memory.  The +1 keeps an empty map's from
 * being malloc(0), which may be NULL. */
static term_t *kv_pairs(term_t map, size_t *n, term_t **vals)
{
    *n = heap_map_size(map);
    term_t *keys = malloc((2 * *n + 1) * sizeof *keys);
    if (keys != NULL) {
        *vals = keys + *n;
        heap_map_pairs(map, keys, *vals);
    }
    return keys;
}

/* The map without its tombstones. */
static int kv_compact(heap_t *h, term_t map, term_t deleted, term_t *out)
{
    size_t n;
    term_t *vals;
    term_t *keys = kv_pairs(map, &n, &vals);
    if (keys == NULL)
        return GD_ENOMEM;
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
        rc = heap_make_tuple_from(h, 1, &r[2], &boxed);
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
        return heap_make_tuple_from(h, 2, items, &ret->reply);
    } else if (req == a.version) {
        ret->reply = term_make_small(GIRDER_KV_VSN);
        return GD_OK;
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
        rc = heap_make_tuple_from(h, 2, items, &inner);
        term_t outer[2] = {a.error, inner};
        return rc == GD_OK ? heap_make_tuple_from(h, 2, outer, &ret->reply) : rc;
    }
    return rc == GD_OK ? kv_state(h, map, dead, state) : rc;
}

/* ---- hot code reload ----
 * State crosses versions as msgpack (design.md: state serialization for
 * reload): an array of 2n bins, each key's and value's ETF encoding, live
 * entries only.  The old code exports (it alone knows its layout), the
 * new code's code_change imports. */

static int kv_export(heap_t *h, term_t state, term_t *bin_out)
{
    size_t n;
    term_t *vals;
    term_t *keys = kv_pairs(term_tuple_elems(state)[0], &n, &vals);
    if (keys == NULL)
        return GD_ENOMEM;
    size_t live = 0;
    for (size_t i = 0; i < n; i++)
        live += term_is_tuple(vals[i]);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_array(&pk, 2 * live) == 0 ? GD_OK : GD_ENOMEM;
    etf_buf_t b = {0};
    for (size_t i = 0; i < n && rc == GD_OK; i++) {
        if (!term_is_tuple(vals[i]))
            continue; /* a tombstone */
        term_t both[2] = {keys[i], term_tuple_elems(vals[i])[0]};
        for (int j = 0; j < 2 && rc == GD_OK; j++) {
            b.len = 0;
            rc = etf_encode(both[j], NULL, &b);
            if (rc == GD_OK && (msgpack_pack_bin(&pk, b.len) != 0 ||
                                msgpack_pack_bin_body(&pk, b.data, b.len) != 0))
                rc = GD_ENOMEM;
        }
    }
    etf_buf_free(&b);
    free(keys);
    if (rc == GD_OK)
        rc = heap_make_binary(h, sb.data, sb.size, bin_out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int kv_import(heap_t *h, term_t bin, term_t *state)
{
    if (!term_is_binary(bin))
        return GD_EBADARG;
    heap_bin_view_t v;
    heap_bin_view(bin, &v);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = msgpack_unpack_next(&up, (const char *)v.bytes, v.bit_size / 8, &off) ==
                     MSGPACK_UNPACK_SUCCESS
                 ? GD_OK
                 : GD_EBADARG;
    const msgpack_object *o = &up.data;
    if (rc == GD_OK && (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size % 2 != 0))
        rc = GD_EBADARG;
    size_t n = rc == GD_OK ? o->via.array.size / 2 : 0;
    term_t *keys = malloc((2 * n + 1) * sizeof *keys);
    if (keys == NULL)
        rc = GD_ENOMEM;
    for (size_t i = 0; rc == GD_OK && i < 2 * n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        size_t used;
        if (e->type != MSGPACK_OBJECT_BIN)
            rc = GD_EBADARG;
        else
            rc = etf_decode(h, (const uint8_t *)e->via.bin.ptr, e->via.bin.size, NULL, &keys[i],
                            &used, NULL);
        if (rc == GD_OK && i % 2 == 1) { /* a value: stored wrapped */
            term_t value = keys[i];
            rc = heap_make_tuple_from(h, 1, &value, &keys[i]);
        }
    }
    /* keys[] holds k0, {v0}, k1, {v1}, ...: split for heap_make_map. */
    term_t *vals = rc == GD_OK ? malloc((n + 1) * sizeof *vals) : NULL;
    if (rc == GD_OK && vals == NULL)
        rc = GD_ENOMEM;
    for (size_t i = 0; rc == GD_OK && i < n; i++) {
        keys[i] = keys[2 * i];
        vals[i] = keys[2 * i + 1];
    }
    term_t map;
    if (rc == GD_OK)
        rc = heap_make_map(h, keys, vals, n, &map);
    if (rc == GD_OK)
        rc = kv_state(h, map, 0, state);
    free(vals);
    free(keys);
    msgpack_unpacked_destroy(&up);
    return rc;
}

bool girder_kv_module_usable(const girder_kv_module_t *m)
{
    return m != NULL && m->gen.init != NULL && m->gen.handle_call != NULL &&
           m->gen.code_change != NULL;
}

/* {'$girder_kv_reload', ModuleAddr} (kv.c, girder:reload/2): the state
 * goes out as msgpack, the new module's table becomes the server's, and
 * its code_change takes the state in. */
static int kv_info(sched_ctx_t *ctx, term_t msg, term_t *state, girder_ret_t *ret)
{
    (void)ret;
    kv_atoms_t a;
    int rc = kv_atoms(&a);
    if (rc != GD_OK || !node_is_tagged(msg, 2, a.reload))
        return rc;
    const girder_kv_module_t *next =
        (const girder_kv_module_t *)node_term_addr(term_tuple_elems(msg)[1]);
    if (!girder_kv_module_usable(next))
        return GD_OK; /* not a kv module: stay as we are */
    term_t bin;
    rc = kv_export(sched_heap(ctx), *state, &bin);
    if (rc != GD_OK)
        return rc;
    term_t addr, old;
    rc = node_addr_term((uintptr_t)&next->gen, &addr);
    if (rc == GD_OK)
        rc = sched_dict_put(ctx, node_atom.gen_mod, addr, &old);
    return rc == GD_OK ? girder_gen_code_change(ctx, term_make_small(GIRDER_KV_VSN), bin) : rc;
}

static int kv_code_change(sched_ctx_t *ctx, term_t old_vsn, term_t *state, term_t extra)
{
    (void)old_vsn;
    return kv_import(sched_heap(ctx), extra, state);
}

const girder_kv_module_t girder_kv_module = {
    .gen = {.init = kv_init,
            .handle_call = kv_call,
            .handle_info = kv_info,
            .code_change = kv_code_change},
    .vsn = GIRDER_KV_VSN,
};
