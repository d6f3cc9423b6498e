/*
 * timer.c — the schedulers' timers: one timing wheel per run queue, under a
 * lock of its own, holding process timeouts (an entry inside the PCB) and
 * send_after timers (a small block that owns the message).
 *
 * A send_after timer is found again from its reference: the reference's id
 * words carry a node-unique counter (the key) and the index of the wheel
 * the timer sits on, in bits no other reference of this node uses (third
 * word >= 2^16; sched_make_ref's stay below 2^14), so cancel_timer locks
 * exactly one wheel and looks the key up in that wheel's hash table.
 *
 * Lock order: a wheel's tlock may be held while taking a run queue's lock
 * or the watchdog's (a fire wakes a process); never the other way round.
 */
#include <stdlib.h>

#include "internal.h"

/* A pending send_after. */
typedef struct send_timer {
    timer_entry_t e; /* kind TK_SEND; first, so the wheel's pointer is ours */
    struct send_timer *hnext;
    uint64_t key;
    term_t dest;
    msg_t *m;
} send_timer_t;

/* Largest send_after delay (erlang:send_after's limit). */
#define SEND_AFTER_MAX_MS 0xFFFFFFFFull

/* The deadline (ms) of a timer armed now for ms: never early. */
static uint64_t deadline_ms(uint64_t ms)
{
    return (sched_now_ns() + 999999u) / 1000000u + ms;
}

static size_t tmap_bucket(const runq_t *rq, uint64_t key)
{
    /* Fibonacci hashing: the keys are consecutive counter values. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (rq->tmap_cap - 1);
}

/* Makes room for one more entry (locked).  GD_ENOMEM leaves the table as
 * it was. */
static int tmap_reserve(runq_t *rq)
{
    if (rq->tmap_n < rq->tmap_cap)
        return GD_OK;
    size_t cap = rq->tmap_cap != 0 ? rq->tmap_cap * 2 : 64;
    send_timer_t **nb = calloc(cap, sizeof *nb);
    if (nb == NULL)
        return GD_ENOMEM;
    send_timer_t **ob = rq->tmap;
    size_t ocap = rq->tmap_cap;
    rq->tmap = nb;
    rq->tmap_cap = cap;
    for (size_t i = 0; i < ocap; i++)
        for (send_timer_t *t = ob[i], *next; t != NULL; t = next) {
            next = t->hnext;
            size_t b = tmap_bucket(rq, t->key);
            t->hnext = nb[b];
            nb[b] = t;
        }
    free(ob);
    return GD_OK;
}

/* Removes and returns the timer with key (locked), or NULL. */
static send_timer_t *tmap_take(runq_t *rq, uint64_t key)
{
    if (rq->tmap_cap == 0)
        return NULL;
    for (send_timer_t **link = &rq->tmap[tmap_bucket(rq, key)]; *link != NULL;
         link = &(*link)->hnext) {
        send_timer_t *t = *link;
        if (t->key == key) {
            *link = t->hnext;
            rq->tmap_n--;
            return t;
        }
    }
    return NULL;
}

void timer_rq_init(runq_t *rq, uint64_t now_ms)
{
    pthread_mutex_init(&rq->tlock, NULL);
    sched_timer_wheel_init(&rq->wheel, now_ms);
    atomic_init(&rq->tnext, UINT64_MAX);
    rq->tmap = NULL;
    rq->tmap_cap = rq->tmap_n = 0;
}

void timer_rq_free(runq_t *rq)
{
    for (size_t i = 0; i < rq->tmap_cap; i++)
        for (send_timer_t *t = rq->tmap[i], *next; t != NULL; t = next) {
            next = t->hnext;
            proc_msg_free(t->m);
            free(t);
        }
    free(rq->tmap);
    rq->tmap = NULL;
    rq->tmap_cap = rq->tmap_n = 0;
    pthread_mutex_destroy(&rq->tlock);
}

/* Recomputes rq->tnext from the wheel (locked). */
static void tnext_update(runq_t *rq)
{
    /* Relaxed: a hint (see runq_t.tnext). */
    atomic_store_explicit(&rq->tnext, sched_timer_wheel_next_deadline(&rq->wheel),
                          memory_order_relaxed);
}

/* Arms e on rq for `expires` (locked); true when it is now rq's earliest
 * deadline (a sleeping owner must then be woken). */
static bool arm_locked(runq_t *rq, timer_entry_t *e, uint64_t expires)
{
    sched_timer_wheel_insert(&rq->wheel, &e->t, expires);
    /* Relaxed: see runq_t.tnext; written only under tlock. */
    if (expires < atomic_load_explicit(&rq->tnext, memory_order_relaxed)) {
        atomic_store_explicit(&rq->tnext, expires, memory_order_relaxed);
        return true;
    }
    return false;
}

typedef struct fire_ctx {
    runq_t *rq;
    send_timer_t *fired; /* send timers to deliver once unlocked */
} fire_ctx_t;

static void fire_one(sched_timer_wheel_t *w, sched_timer_t *t, void *vctx)
{
    (void)w;
    fire_ctx_t *fc = vctx;
    timer_entry_t *e = (timer_entry_t *)t;
    if (e->kind == TK_PROC) {
        /* The PCB is alive: its owner cancels under this lock before it
         * exits.  Release: the owner's acquire load of tmo_fired. */
        sched_proc_t *p = (sched_proc_t *)(void *)((char *)e - offsetof(sched_proc_t, tmo));
        atomic_store_explicit(&p->tmo_fired, e->gen, memory_order_release);
        proc_wake(p);
        return;
    }
    send_timer_t *st = (send_timer_t *)e;
    send_timer_t *taken = tmap_take(fc->rq, st->key);
    GD_ASSERT(taken == st);
    (void)taken;
    st->hnext = fc->fired;
    fc->fired = st;
}

void timer_rq_advance(runq_t *rq, uint64_t now_ms)
{
    fire_ctx_t fc = {rq, NULL};
    pthread_mutex_lock(&rq->tlock);
    (void)sched_timer_wheel_advance(&rq->wheel, now_ms, fire_one, &fc);
    tnext_update(rq);
    pthread_mutex_unlock(&rq->tlock);
    /* Deadline order within one advance: the wheel fired them in order and
     * the list is reversed. */
    send_timer_t *list = NULL;
    while (fc.fired != NULL) {
        send_timer_t *st = fc.fired;
        fc.fired = st->hnext;
        st->hnext = list;
        list = st;
    }
    while (list != NULL) {
        send_timer_t *st = list;
        list = st->hnext;
        proc_deliver_to(st->dest, st->m);
        free(st);
    }
}

/* The wheel a timer armed on this thread goes to: this scheduler's, or for
 * a thread off the schedulers one chosen by `spread`. */
static runq_t *pick_rq(uint64_t spread)
{
    runq_t *rq = sched_this_rq();
    if (rq != NULL)
        return rq;
    /* Acquire: pairs with the release that published the queues. */
    unsigned nrqs = atomic_load_explicit(&sched_node.nrqs, memory_order_acquire);
    return &sched_node.rqs[spread % (nrqs != 0 ? nrqs : 1)];
}

/* ---- process timeouts ---- */

void proc_timeout_cancel(sched_proc_t *p)
{
    if (!p->tmo_on)
        return;
    if (p->tmo_wheel != 0) {
        runq_t *rq = &sched_node.rqs[p->tmo_wheel - 1];
        pthread_mutex_lock(&rq->tlock);
        (void)sched_timer_wheel_cancel(&rq->wheel, &p->tmo.t);
        pthread_mutex_unlock(&rq->tlock);
        p->tmo_wheel = 0;
    }
    p->tmo_on = false;
}

void proc_timeout_arm(sched_proc_t *p, int64_t ms)
{
    proc_timeout_cancel(p);
    p->tmo_on = true;
    /* Not pending anywhere now: no fire reads gen concurrently. */
    uint32_t gen = p->tmo.gen + 1;
    p->tmo.kind = TK_PROC;
    if (ms <= 0) {
        p->tmo.gen = gen;
        /* Relaxed: only the owner reads it, on this thread. */
        atomic_store_explicit(&p->tmo_fired, gen, memory_order_relaxed);
        return;
    }
    runq_t *rq = pick_rq(p->home);
    uint64_t expires = deadline_ms((uint64_t)ms);
    pthread_mutex_lock(&rq->tlock);
    p->tmo.gen = gen;
    bool earliest = arm_locked(rq, &p->tmo, expires);
    pthread_mutex_unlock(&rq->tlock);
    p->tmo_wheel = (uint16_t)(rq->index + 1);
    if (earliest && rq != sched_this_rq())
        (void)rq_wake_sleeper(rq);
}

bool proc_timeout_fired(sched_proc_t *p)
{
    /* Acquire pairs with the release store in fire_one. */
    return p->tmo_on && atomic_load_explicit(&p->tmo_fired, memory_order_acquire) == p->tmo.gen;
}

void sched_set_timeout(sched_ctx_t *ctx, int64_t ms)
{
    if (ctx->beh == NULL)
        return; /* coroutine processes time their receives themselves */
    if (ms < 0)
        proc_timeout_cancel(ctx);
    else
        proc_timeout_arm(ctx, ms);
}

/* ---- send_after / cancel_timer ---- */

/* Timer references: key bits 0-17 in word 0, 18-49 in word 1, 50-63 in the
 * low 14 bits of word 2, and the wheel index + 1 from bit 16 of word 2. */
static void tref_words(uint64_t key, unsigned wheel, uint32_t w[3])
{
    w[0] = (uint32_t)(key & 0x3FFFF);
    w[1] = (uint32_t)(key >> 18);
    w[2] = (uint32_t)(key >> 50) | (uint32_t)(wheel + 1) << 16;
}

int sched_send_after(sched_ctx_t *ctx, uint64_t ms, term_t dest, term_t msg, term_t *tref_out)
{
    if (!node_running())
        return SCHED_ESTOPPED;
    if ((!term_is_local_pid(dest) && !term_is_atom(dest)) || ms > SEND_AFTER_MAX_MS)
        return GD_EBADARG;
    if (tref_out != NULL && ctx == NULL)
        return GD_EINVAL;
    send_timer_t *st = malloc(sizeof *st);
    msg_t *m = malloc(sizeof *m);
    int rc = GD_ENOMEM;
    if (st == NULL || m == NULL)
        goto fail;
    *m = (msg_t){.term = TERM_NIL, .from = ctx != NULL ? ctx->pid : TERM_NIL, .name = TERM_NONE};
    m->kind = MSG_MESSAGE;
    rc = heap_msg_copy(msg, &m->frag, &m->term);
    if (rc != GD_OK)
        goto fail;
    st->key = proc_ref_counter();
    st->dest = dest;
    st->m = m;
    st->e.kind = TK_SEND;
    st->e.gen = 0;
    sched_timer_init(&st->e.t);
    runq_t *rq = pick_rq(st->key);
    if (tref_out != NULL) {
        uint32_t w[3];
        tref_words(st->key, rq->index, w);
        rc = heap_make_local_ref(&ctx->heap, w, tref_out);
        if (rc != GD_OK)
            goto fail_frag;
    }
    uint64_t expires = deadline_ms(ms);
    pthread_mutex_lock(&rq->tlock);
    rc = tmap_reserve(rq);
    bool earliest = false;
    if (rc == GD_OK) {
        size_t b = tmap_bucket(rq, st->key);
        st->hnext = rq->tmap[b];
        rq->tmap[b] = st;
        rq->tmap_n++;
        earliest = arm_locked(rq, &st->e, expires);
    }
    pthread_mutex_unlock(&rq->tlock);
    if (rc != GD_OK)
        goto fail_frag;
    if (earliest && rq != sched_this_rq())
        (void)rq_wake_sleeper(rq);
    proc_charge_send(ctx, m);
    return GD_OK;

fail_frag:
    heap_frag_free(m->frag);
fail:
    free(m);
    free(st);
    return rc;
}

int sched_cancel_timer(sched_ctx_t *ctx, term_t tref, int64_t *left_ms)
{
    if (!term_is_local_ref(tref))
        return GD_EBADARG;
    if (!node_running())
        return SCHED_ESTOPPED;
    heap_ident_t id;
    heap_ident(tref, &id);
    uint32_t wheel = id.words[2] >> 16;
    /* An alias's words are no timer key (internal.h). */
    if (wheel == 0 || wheel > sched_node.max_rqs || (id.words[2] & REF_W2_ALIAS))
        return SCHED_ENOTIMER;
    uint64_t key = (uint64_t)id.words[0] | (uint64_t)id.words[1] << 18 |
                   (uint64_t)(id.words[2] & 0x3FFF) << 50;
    runq_t *rq = &sched_node.rqs[wheel - 1];
    pthread_mutex_lock(&rq->tlock);
    send_timer_t *st = tmap_take(rq, key);
    uint64_t expires = 0;
    if (st != NULL) {
        expires = st->e.t.expires;
        (void)sched_timer_wheel_cancel(&rq->wheel, &st->e.t);
    }
    pthread_mutex_unlock(&rq->tlock);
    if (st == NULL)
        return SCHED_ENOTIMER;
    if (left_ms != NULL) {
        /* Rounded up as the deadline was: at most the delay asked for. */
        uint64_t now = (sched_now_ns() + 999999u) / 1000000u;
        *left_ms = expires > now ? (int64_t)(expires - now) : 0;
    }
    if (ctx != NULL)
        ctx->reds--;
    proc_msg_free(st->m);
    free(st);
    return GD_OK;
}
