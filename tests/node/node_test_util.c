/*
 * node_test_util.c — shared helpers of tests/node (see the header).
 */
#include "node_test_util.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

static heap_t heap;
static bool heap_ready;

typedef struct rec {
    term_t tag, term;
    heap_frag_t *frag;
} rec_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rec_t *r;
    size_t n, cap;
} lg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

void nt_start(unsigned schedulers)
{
    st_start(schedulers);
    CU_ASSERT_FATAL(heap_init(&heap, 0) == GD_OK);
    heap_ready = true;
    nt_reset();
}

void nt_stop(void)
{
    st_stop();
    nt_reset();
    if (heap_ready)
        heap_destroy(&heap);
    heap_ready = false;
}

heap_t *nt_heap(void)
{
    return &heap;
}

term_t nt_list(size_t n, ...)
{
    term_t items[16];
    CU_ASSERT_FATAL(n <= 16);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        items[i] = va_arg(ap, term_t);
    va_end(ap);
    term_t l;
    CU_ASSERT_FATAL(heap_make_list(&heap, items, n, &l) == GD_OK);
    return l;
}

void nt_log(term_t tag, term_t t)
{
    rec_t r = {tag, TERM_NIL, NULL};
    if (heap_msg_copy(t, &r.frag, &r.term) != GD_OK)
        abort();
    pthread_mutex_lock(&lg.lock);
    if (lg.n == lg.cap) {
        size_t cap = lg.cap ? 2 * lg.cap : 64;
        rec_t *nr = realloc(lg.r, cap * sizeof *nr);
        if (nr == NULL)
            abort();
        lg.r = nr;
        lg.cap = cap;
    }
    lg.r[lg.n++] = r;
    pthread_cond_broadcast(&lg.cond);
    pthread_mutex_unlock(&lg.lock);
}

/* The i-th record under tag (locked), or NULL. */
static rec_t *find(term_t tag, size_t i)
{
    for (size_t k = 0; k < lg.n; k++)
        if (lg.r[k].tag == tag && i-- == 0)
            return &lg.r[k];
    return NULL;
}

bool nt_wait(term_t tag, size_t i, term_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&lg.lock);
    rec_t *r;
    while ((r = find(tag, i)) == NULL)
        if (pthread_cond_timedwait(&lg.cond, &lg.lock, &ts) != 0)
            break;
    if (r == NULL)
        r = find(tag, i);
    if (r != NULL)
        *out = r->term;
    pthread_mutex_unlock(&lg.lock);
    return r != NULL;
}

size_t nt_count(term_t tag)
{
    size_t n = 0;
    pthread_mutex_lock(&lg.lock);
    for (size_t k = 0; k < lg.n; k++)
        n += lg.r[k].tag == tag;
    pthread_mutex_unlock(&lg.lock);
    return n;
}

void nt_reset(void)
{
    pthread_mutex_lock(&lg.lock);
    for (size_t k = 0; k < lg.n; k++)
        heap_frag_free(lg.r[k].frag);
    free(lg.r);
    lg.r = NULL;
    lg.n = lg.cap = 0;
    pthread_mutex_unlock(&lg.lock);
}

bool nt_logged(term_t tag, size_t i, term_t want)
{
    term_t got;
    return nt_wait(tag, i, &got) && st_term_eq(got, want);
}

/* ---- the client ---- */

#define A st_atom

/* State: [] idle, or {Tag, MonRef, Raw} while a call waits. */
static bool pred_answer(term_t msg, void *arg)
{
    sched_ctx_t *ctx = arg;
    term_t st = sched_dict_get(ctx, A("call"));
    if (!term_is_tuple(st))
        return true;
    term_t *w = term_tuple_elems(st);
    if (!term_is_tuple(msg))
        return false;
    term_t *e = term_tuple_elems(msg);
    size_t n = term_tuple_arity(msg);
    if (n == 2 && st_term_eq(e[0], w[0]))
        return true;
    return n == 5 && e[0] == A("DOWN") && st_term_eq(e[1], w[1]);
}

static int client_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    return GD_OK;
}

/* An alias tag asked for by the test ([alias | new_alias], or that as the
 * head of a list): the same with a fresh alias of ctx in place of the atom
 * new_alias (the test thread cannot make one).  Other tags as they are. */
static int fill_alias(sched_ctx_t *ctx, term_t tag, term_t *out)
{
    *out = tag;
    bool multi = term_is_list(tag) && term_is_list(term_car(tag));
    term_t inner = multi ? term_car(tag) : tag;
    if (!term_is_list(inner) || term_car(inner) != A("alias") || term_cdr(inner) != A("new_alias"))
        return GD_OK;
    term_t alias;
    int rc = sched_alias_create(ctx, &alias);
    if (rc == GD_OK)
        rc = heap_cons(sched_heap(ctx), A("alias"), alias, &inner);
    if (rc == GD_OK)
        *out = inner;
    if (rc == GD_OK && multi)
        rc = heap_cons(sched_heap(ctx), inner, term_cdr(tag), out);
    return rc;
}

/* Sends {Label, {Self, Tag}, Req} (Label '$gen_call' or system). */
static int send_call(sched_ctx_t *ctx, term_t label, term_t server, term_t tag, term_t req,
                     bool raw)
{
    heap_t *h = sched_heap(ctx);
    term_t mref, *e, from, msg, st;
    int rc = sched_monitor(ctx, server, &mref);
    if (rc == GD_OK && tag == TERM_NONE)
        rc = sched_make_ref(ctx, &tag);
    else if (rc == GD_OK)
        rc = fill_alias(ctx, tag, &tag);
    if (rc == GD_OK)
        rc = heap_make_tuple(h, 2, &e, &from);
    if (rc != GD_OK)
        return rc;
    e[0] = sched_self(ctx);
    e[1] = tag;
    rc = heap_make_tuple(h, 3, &e, &msg);
    if (rc != GD_OK)
        return rc;
    e[0] = label;
    e[1] = from;
    e[2] = req;
    rc = heap_make_tuple(h, 3, &e, &st);
    if (rc != GD_OK)
        return rc;
    e[0] = tag;
    e[1] = mref;
    e[2] = raw ? ATOM_TRUE : ATOM_FALSE;
    rc = sched_dict_put(ctx, A("call"), st, NULL);
    if (rc == GD_OK)
        rc = sched_send(ctx, server, msg);
    if (rc == SCHED_ENOPROC)
        rc = GD_OK; /* an unregistered name: the monitor's 'DOWN' says noproc */
    if (rc == GD_OK)
        sched_receive_ref(ctx, tag, pred_answer, ctx);
    return rc;
}

static int client_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t st = sched_dict_get(ctx, A("call"));
    if (term_is_tuple(st)) {
        /* The answer to the call in progress (the selection let only it in). */
        term_t *w = term_tuple_elems(st), *e = term_tuple_elems(msg);
        if (w[2] == ATOM_TRUE)
            nt_log(A("raw"), msg);
        else if (term_tuple_arity(msg) == 2)
            nt_log(A("reply"), e[1]);
        else
            nt_log(A("down"), e[4]);
        if (term_tuple_arity(msg) == 2) {
            int rc = sched_demonitor(ctx, w[1]);
            if (rc != GD_OK)
                return rc;
        }
        (void)sched_dict_erase(ctx, A("call"));
        /* Next command: any message. */
        sched_receive(ctx, NULL, NULL);
        return GD_OK;
    }
    term_t *e = term_is_tuple(msg) ? term_tuple_elems(msg) : NULL;
    size_t n = e != NULL ? term_tuple_arity(msg) : 0;
    if (n == 3 && e[0] == A("call"))
        return send_call(ctx, A("$gen_call"), e[1], TERM_NONE, e[2], false);
    if (n == 3 && e[0] == A("sys"))
        return send_call(ctx, A("system"), e[1], TERM_NONE, e[2], false);
    if (n == 4 && e[0] == A("call_tag"))
        return send_call(ctx, A("$gen_call"), e[1], e[2], e[3], true);
    if (n == 2 && e[0] == A("monitor")) {
        term_t ref;
        return sched_monitor(ctx, e[1], &ref);
    }
    if (n == 5 && e[0] == A("DOWN")) {
        nt_log(A("watch_down"), e[4]);
        return GD_OK;
    }
    nt_log(A("client_other"), msg);
    return GD_OK;
}

const sched_behaviour_t nt_client = {client_init, client_handle, NULL, NULL};

term_t nt_spawn_client(void)
{
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn(NULL, &nt_client, TERM_NIL, &pid) == GD_OK);
    return pid;
}

void nt_call(term_t client, term_t server, term_t req)
{
    st_send(client, st_tuple(3, A("call"), server, req));
}
