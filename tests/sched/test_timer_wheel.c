/*
 * test_timer_wheel.c — the hierarchical timing wheel: exact firing when
 * advanced every tick, past deadlines, cancel (also from callbacks and of
 * timers due in the same tick), re-arming from callbacks, idle wheels that
 * need no per-tick wakeups, far deadlines (beyond 2^36 ms, the overflow
 * list), a randomized run against a reference heap (inserts, cancels,
 * re-inserts from callbacks, tiny and huge timeouts, advances of one tick
 * and huge jumps), and one million pending timers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "sched/timer_wheel.h"

/* ---- small helpers ---- */

typedef struct rec {
    sched_timer_t timer;
    uint64_t fired_at; /* the advance's now_ms, 0 if never fired */
    int fired;
} rec_t;

#define REC_OF(t) ((rec_t *)(void *)((char *)(t)-offsetof(rec_t, timer)))

typedef struct fire_ctx {
    uint64_t now;
    uint64_t last_expires; /* firing order check */
    size_t n;
} fire_ctx_t;

static void record_fire(sched_timer_wheel_t *w, sched_timer_t *t, void *arg)
{
    (void)w;
    fire_ctx_t *c = arg;
    rec_t *r = REC_OF(t);
    CU_ASSERT_FALSE(sched_timer_pending(t));
    CU_ASSERT(t->expires <= c->now);
    CU_ASSERT(t->expires >= c->last_expires);
    c->last_expires = t->expires;
    r->fired++;
    r->fired_at = c->now;
    c->n++;
}

static size_t advance_to(sched_timer_wheel_t *w, uint64_t now)
{
    fire_ctx_t c = {.now = now};
    size_t n = sched_timer_wheel_advance(w, now, record_fire, &c);
    CU_ASSERT_EQUAL(n, c.n);
    return n;
}

static void test_entry_size(void)
{
    /* The per-timer cost: three words embedded in the owner's struct. */
    CU_ASSERT_EQUAL(sizeof(sched_timer_t), 24);
    CU_ASSERT(sizeof(sched_timer_wheel_t) < 4096);
}

static void test_fires_exactly_when_advanced_every_tick(void)
{
    static sched_timer_wheel_t w;
    sched_timer_wheel_init(&w, 1000);
    static rec_t r[300];
    /* Deadlines across the first three levels and their boundaries. */
    for (int i = 0; i < 300; i++) {
        sched_timer_init(&r[i].timer);
        uint64_t delay = (uint64_t)(i < 100   ? i + 1
                                    : i < 200 ? (i - 100) * 41 + 60
                                              : (i - 200) * 4093 + 4000);
        sched_timer_wheel_insert(&w, &r[i].timer, 1000 + delay);
        CU_ASSERT_TRUE(sched_timer_pending(&r[i].timer));
    }
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), 300);
    for (uint64_t now = 1001; now <= 1000 + 99 * 4093 + 4000; now++)
        advance_to(&w, now);
    for (int i = 0; i < 300; i++) {
        CU_ASSERT_EQUAL(r[i].fired, 1);
        CU_ASSERT_EQUAL(r[i].fired_at, r[i].timer.expires);
    }
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), 0);
    CU_ASSERT_EQUAL(sched_timer_wheel_next_deadline(&w), UINT64_MAX);
}

static void test_past_deadline_and_cancel(void)
{
    static sched_timer_wheel_t w;
    sched_timer_wheel_init(&w, 50);
    rec_t a = {0}, b = {0}, c = {0};
    sched_timer_wheel_insert(&w, &a.timer, 10); /* already past: next tick */
    CU_ASSERT_EQUAL(a.timer.expires, 51);
    sched_timer_wheel_insert(&w, &b.timer, 60);
    sched_timer_wheel_insert(&w, &c.timer, 60);
    CU_ASSERT_FALSE(sched_timer_wheel_cancel(&w, &(sched_timer_t){0})); /* never armed */
    CU_ASSERT_TRUE(sched_timer_wheel_cancel(&w, &b.timer));
    CU_ASSERT_FALSE(sched_timer_wheel_cancel(&w, &b.timer)); /* already cancelled */
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), 2);
    CU_ASSERT_EQUAL(advance_to(&w, 50), 0); /* the wheel's time already: nothing */
    CU_ASSERT_EQUAL(advance_to(&w, 51), 1);
    CU_ASSERT_EQUAL(a.fired, 1);
    CU_ASSERT_FALSE(sched_timer_wheel_cancel(&w, &a.timer)); /* already fired */
    /* Re-arming a pending timer moves it. */
    sched_timer_wheel_insert(&w, &c.timer, 70);
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), 1);
    CU_ASSERT_EQUAL(advance_to(&w, 69), 0);
    CU_ASSERT_EQUAL(advance_to(&w, 75), 1);
    CU_ASSERT_EQUAL(c.fired_at, 75);
    CU_ASSERT_EQUAL(b.fired, 0);
    /* Going back in time is ignored. */
    CU_ASSERT_EQUAL(advance_to(&w, 3), 0);
}

/* ---- callbacks that change the wheel ---- */

typedef struct cb_world {
    rec_t self_rearm; /* re-arms itself for "now" three times */
    rec_t same_tick;  /* due in the same tick as the canceller */
    rec_t later;      /* cancelled by the canceller before its tick */
    rec_t canceller;
    rec_t spawned; /* armed by the canceller for a deadline inside this advance */
    int rearms;
    uint64_t tick_seen[4];
} cb_world_t;

static cb_world_t *world;

static void world_fire(sched_timer_wheel_t *w, sched_timer_t *t, void *arg)
{
    fire_ctx_t *c = arg;
    rec_t *r = REC_OF(t);
    r->fired++;
    r->fired_at = c->now;
    if (r == &world->self_rearm && world->rearms < 3) {
        world->tick_seen[world->rearms++] = t->expires;
        sched_timer_wheel_insert(w, t, t->expires); /* "now": waits for the next tick */
    } else if (r == &world->canceller) {
        /* Which one of same_tick/canceller runs first is unspecified. */
        if (sched_timer_pending(&world->same_tick.timer))
            CU_ASSERT_TRUE(sched_timer_wheel_cancel(w, &world->same_tick.timer));
        CU_ASSERT_TRUE(sched_timer_wheel_cancel(w, &world->later.timer));
        sched_timer_wheel_insert(w, &world->spawned.timer, t->expires + 5);
    }
}

static void test_callbacks_insert_and_cancel(void)
{
    static sched_timer_wheel_t w;
    static cb_world_t cw;
    memset(&cw, 0, sizeof cw);
    world = &cw;
    sched_timer_wheel_init(&w, 0);
    sched_timer_wheel_insert(&w, &cw.self_rearm.timer, 100);
    sched_timer_wheel_insert(&w, &cw.same_tick.timer, 200);
    sched_timer_wheel_insert(&w, &cw.canceller.timer, 200);
    sched_timer_wheel_insert(&w, &cw.later.timer, 203);
    fire_ctx_t c = {.now = 1000};
    size_t n = sched_timer_wheel_advance(&w, 1000, world_fire, &c);
    /* self_rearm 4 times (100, 101, 102, 103), canceller, spawned, and
     * same_tick only if it ran before the canceller. */
    CU_ASSERT_EQUAL(cw.self_rearm.fired, 4);
    CU_ASSERT_EQUAL(cw.tick_seen[0], 100);
    CU_ASSERT_EQUAL(cw.tick_seen[1], 101);
    CU_ASSERT_EQUAL(cw.tick_seen[2], 102);
    CU_ASSERT_EQUAL(cw.self_rearm.timer.expires, 103);
    CU_ASSERT_EQUAL(cw.canceller.fired, 1);
    CU_ASSERT_EQUAL(cw.spawned.fired, 1);
    CU_ASSERT_EQUAL(cw.spawned.timer.expires, 205);
    CU_ASSERT_EQUAL(cw.later.fired, 0);
    CU_ASSERT_EQUAL(n, 6u + (unsigned)cw.same_tick.fired);
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), 0);
}

/* ---- idle: no per-tick wakeups ---- */

static void test_idle_wheel_sleeps_until_deadline(void)
{
    static sched_timer_wheel_t w;
    const uint64_t start = 123456789;
    sched_timer_wheel_init(&w, start);
    CU_ASSERT_EQUAL(sched_timer_wheel_next_deadline(&w), UINT64_MAX);
    /* One timer an hour away: a scheduler that sleeps until
     * next_deadline and advances wakes up a handful of times, not 3.6M. */
    rec_t r = {0};
    const uint64_t hour = 3600 * 1000;
    sched_timer_wheel_insert(&w, &r.timer, start + hour);
    int wakeups = 0;
    uint64_t now = start;
    while (r.fired == 0) {
        uint64_t d = sched_timer_wheel_next_deadline(&w);
        CU_ASSERT_FATAL(d > now && d <= start + hour);
        now = d;
        advance_to(&w, now);
        wakeups++;
    }
    CU_ASSERT_EQUAL(r.fired_at, start + hour);
    CU_ASSERT(wakeups <= SCHED_TIMER_LEVELS);
    /* Advancing every tick through an hour with a timer pending a day
     * ahead stops at no tick at all beyond the cascades. */
    sched_timer_wheel_insert(&w, &r.timer, now + 24 * hour);
    uint64_t before = w.ticks_processed;
    for (uint64_t t = now + 1; t <= now + hour; t++)
        advance_to(&w, t);
    CU_ASSERT(w.ticks_processed - before <= 3 * SCHED_TIMER_LEVELS);
    CU_ASSERT_TRUE(sched_timer_pending(&r.timer));
    CU_ASSERT_TRUE(sched_timer_wheel_cancel(&w, &r.timer));
}

static void test_far_deadlines_overflow(void)
{
    static sched_timer_wheel_t w;
    sched_timer_wheel_init(&w, 5);
    static rec_t r[4];
    memset(r, 0, sizeof r);
    const uint64_t span = (uint64_t)1 << SCHED_TIMER_SPAN_BITS;
    uint64_t when[4] = {span - 1, span, 3 * span + 12345, ((uint64_t)1 << 50) + 7};
    for (int i = 0; i < 4; i++)
        sched_timer_wheel_insert(&w, &r[i].timer, when[i]);
    uint64_t now = 5;
    int wakeups = 0;
    while (sched_timer_wheel_count(&w) > 0) {
        uint64_t d = sched_timer_wheel_next_deadline(&w);
        CU_ASSERT_FATAL(d > now);
        now = d;
        advance_to(&w, now);
        CU_ASSERT_FATAL(++wakeups < 200);
    }
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(r[i].fired, 1);
        CU_ASSERT_EQUAL(r[i].fired_at, when[i]);
    }
    /* A jump over everything fires everything, in order, in one call. */
    sched_timer_wheel_init(&w, 5);
    memset(r, 0, sizeof r);
    for (int i = 3; i >= 0; i--)
        sched_timer_wheel_insert(&w, &r[i].timer, when[i]);
    CU_ASSERT_TRUE(sched_timer_wheel_cancel(&w, &r[2].timer)); /* out of the overflow list */
    CU_ASSERT_EQUAL(advance_to(&w, (uint64_t)1 << 51), 3);
    CU_ASSERT_EQUAL(r[2].fired, 0);
}

/* ---- randomized, against a reference ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

typedef struct ref_timer {
    sched_timer_t timer;
    uint64_t expires; /* the reference's idea, valid while pending */
    uint32_t gen;     /* bumped at every arm, cancel and fire */
    bool pending;
} ref_timer_t;

typedef struct heap_ent {
    uint64_t expires;
    uint32_t id, gen;
} heap_ent_t;

typedef struct ref {
    ref_timer_t *t;
    size_t n;
    heap_ent_t *heap;
    size_t heap_len, heap_cap;
    size_t pending;
    uint64_t prev_now; /* the previous advance's now */
    uint64_t now;      /* this advance's now */
    uint64_t cur_tick; /* the deadline being fired (callbacks) */
    uint64_t last_fired;
    sched_timer_wheel_t *w;
    size_t fired;
    bool failed;
} ref_t;

static void heap_push(ref_t *r, heap_ent_t e)
{
    if (r->heap_len == r->heap_cap) {
        r->heap_cap = r->heap_cap ? 2 * r->heap_cap : 1024;
        r->heap = realloc(r->heap, r->heap_cap * sizeof *r->heap);
        CU_ASSERT_FATAL(r->heap != NULL);
    }
    size_t i = r->heap_len++;
    while (i > 0 && r->heap[(i - 1) / 2].expires > e.expires) {
        r->heap[i] = r->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    r->heap[i] = e;
}

static heap_ent_t heap_pop(ref_t *r)
{
    heap_ent_t top = r->heap[0], last = r->heap[--r->heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->heap_len)
            break;
        if (c + 1 < r->heap_len && r->heap[c + 1].expires < r->heap[c].expires)
            c++;
        if (r->heap[c].expires >= last.expires)
            break;
        r->heap[i] = r->heap[c];
        i = c;
    }
    if (r->heap_len > 0)
        r->heap[i] = last;
    return top;
}

/* A delay drawn from tiny to beyond the wheel's span. */
static uint64_t random_delay(void)
{
    switch (rnd() % 10) {
    case 0:
        return 0;
    case 1:
    case 2:
        return rnd() % 64;
    case 3:
    case 4:
        return rnd() % 4096;
    case 5:
        return rnd() % (1u << 20);
    case 6:
        return rnd() % ((uint64_t)1 << 32);
    case 7:
        return rnd() % ((uint64_t)1 << 38); /* beyond 2^36: overflow */
    default:
        return 1 + rnd() % 200;
    }
}

/* The time a timer armed now gets clamped to: the next tick to process. */
static uint64_t arm_floor(const ref_t *r, bool in_callback)
{
    return in_callback ? r->cur_tick + 1 : r->prev_now + 1;
}

static void ref_arm(ref_t *r, uint32_t id, uint64_t expires, bool in_callback)
{
    ref_timer_t *t = &r->t[id];
    uint64_t floor = arm_floor(r, in_callback);
    if (!t->pending)
        r->pending++;
    t->pending = true;
    t->gen++;
    t->expires = expires < floor ? floor : expires;
    sched_timer_wheel_insert(r->w, &t->timer, expires);
    if (t->timer.expires != t->expires) {
        fprintf(stderr, "armed id %u for %llu: wheel says %llu, reference %llu\n", id,
                (unsigned long long)expires, (unsigned long long)t->timer.expires,
                (unsigned long long)t->expires);
        r->failed = true;
    }
    heap_push(r, (heap_ent_t){t->expires, id, t->gen});
}

static void ref_cancel(ref_t *r, uint32_t id)
{
    ref_timer_t *t = &r->t[id];
    bool was = sched_timer_wheel_cancel(r->w, &t->timer);
    if (was != t->pending) {
        fprintf(stderr, "cancel id %u: wheel says %d, reference %d\n", id, was, t->pending);
        r->failed = true;
    }
    if (t->pending) {
        r->pending--;
        t->pending = false;
        t->gen++;
    }
}

static void ref_fire(sched_timer_wheel_t *w, sched_timer_t *timer, void *arg)
{
    (void)w;
    ref_t *r = arg;
    ref_timer_t *t = (ref_timer_t *)(void *)((char *)timer - offsetof(ref_timer_t, timer));
    uint32_t id = (uint32_t)(t - r->t);
    /* Pending in the reference, at its deadline: not early (<= now), not
     * late (a previous advance covered it otherwise), in deadline order. */
    if (!t->pending || t->expires > r->now || t->expires <= r->prev_now ||
        t->expires < r->last_fired || timer->expires != t->expires) {
        if (!r->failed)
            fprintf(stderr,
                    "bad fire: id %u pending %d expires %llu wheel %llu now %llu prev %llu\n", id,
                    t->pending, (unsigned long long)t->expires, (unsigned long long)timer->expires,
                    (unsigned long long)r->now, (unsigned long long)r->prev_now);
        r->failed = true;
    }
    r->last_fired = t->expires;
    r->cur_tick = t->expires;
    t->pending = false;
    t->gen++;
    r->pending--;
    r->fired++;
    /* Callbacks change the wheel: re-arm this one, cancel or arm others. */
    uint64_t dice = rnd() % 8;
    if (dice == 0)
        ref_arm(r, id, t->expires + random_delay(), true);
    else if (dice == 1)
        ref_cancel(r, (uint32_t)(rnd() % r->n));
    else if (dice == 2)
        ref_arm(r, (uint32_t)(rnd() % r->n), r->cur_tick + rnd() % 70, true);
}

/* White-box invariants after every operation: a slot's bit is set iff it
 * holds timers, and every timer sits where its deadline says relative to
 * the wheel's time (same block above its level, its digit at its level, and
 * not in the current digit's slot of a higher level unless the time is at
 * that slot's first tick).  Returns 1 (after saying why) if one fails. */
static int check_wheel(const sched_timer_wheel_t *w, const char *where)
{
    uint64_t now = w->now;
    for (unsigned k = 0; k < SCHED_TIMER_LEVELS; k++) {
        unsigned shift = k * 6;
        for (unsigned s = 0; s < 64; s++) {
            const sched_timer_t *t = w->slot[k][s];
            if (((w->bitmap[k] >> s) & 1) != (t != NULL)) {
                fprintf(stderr, "%s: bitmap mismatch k %u s %u\n", where, k, s);
                return 1;
            }
            for (; t; t = t->next) {
                uint64_t e = t->expires;
                bool ok = e >= now && (e >> (shift + 6)) == (now >> (shift + 6)) &&
                          ((e >> shift) & 63) == s;
                if (k > 0 && (e >> shift) == (now >> shift) && (now & ((1ull << shift) - 1)) != 0)
                    ok = false;
                if (!ok) {
                    fprintf(stderr, "%s: bad timer k %u s %u e %llu now %llu\n", where, k, s,
                            (unsigned long long)e, (unsigned long long)now);
                    return 1;
                }
            }
        }
    }
    return 0;
}

static void run_random(uint64_t seed, size_t ntimers, size_t steps)
{
    static sched_timer_wheel_t w;
    ref_t r = {.n = ntimers, .w = &w};
    rng_state = seed;
    r.t = calloc(ntimers, sizeof *r.t);
    CU_ASSERT_FATAL(r.t != NULL);
    uint64_t start = rnd() % ((uint64_t)1 << 40);
    sched_timer_wheel_init(&w, start);
    r.prev_now = start;
    for (size_t step = 0; step < steps && !r.failed; step++) {
        /* A few operations between advances. */
        int ops = (int)(rnd() % 6);
        for (int i = 0; i < ops; i++) {
            uint32_t id = (uint32_t)(rnd() % ntimers);
            if (rnd() % 4 == 0)
                ref_cancel(&r, id);
            else
                ref_arm(&r, id, r.prev_now + random_delay(), false);
            /* After every operation only in the small runs: the check
             * walks every pending timer. */
            if (ntimers <= 64 && check_wheel(&w, "after insert or cancel"))
                r.failed = true;
        }
        /* Mostly one tick; sometimes a jump, small or huge. */
        uint64_t jump;
        switch (rnd() % 16) {
        case 0:
            jump = rnd() % 5000;
            break;
        case 1:
            jump = rnd() % ((uint64_t)1 << 34);
            break;
        case 2:
            jump = 0;
            break;
        default:
            jump = 1;
        }
        r.now = r.prev_now + jump;
        r.last_fired = 0;
        size_t before = r.fired;
        size_t n = sched_timer_wheel_advance(&w, r.now, ref_fire, &r);
        if (n != r.fired - before)
            r.failed = true;
        /* Nothing due may be left pending. */
        while (r.heap_len > 0 && r.heap[0].expires <= r.now) {
            heap_ent_t e = heap_pop(&r);
            if (r.t[e.id].gen == e.gen && r.t[e.id].pending) {
                fprintf(stderr, "missed: id %u expires %llu now %llu\n", e.id,
                        (unsigned long long)e.expires, (unsigned long long)r.now);
                r.failed = true;
            }
        }
        if (sched_timer_wheel_count(&w) != r.pending) {
            fprintf(stderr, "count %zu, reference %zu\n", sched_timer_wheel_count(&w), r.pending);
            r.failed = true;
        }
        if ((ntimers <= 64 || step % 16 == 0) && check_wheel(&w, "after advance"))
            r.failed = true;
        /* next_deadline: in the future, never after the earliest pending. */
        while (r.heap_len > 0 &&
               (r.t[r.heap[0].id].gen != r.heap[0].gen || !r.t[r.heap[0].id].pending))
            (void)heap_pop(&r);
        uint64_t nd = sched_timer_wheel_next_deadline(&w);
        if (nd <= r.now || (r.heap_len > 0 ? nd > r.heap[0].expires : nd != UINT64_MAX)) {
            fprintf(stderr, "next deadline %llu at now %llu\n", (unsigned long long)nd,
                    (unsigned long long)r.now);
            r.failed = true;
        }
        r.prev_now = r.now;
    }
    if (r.failed)
        fprintf(stderr, "randomized timer wheel run failed, seed %llu\n", (unsigned long long)seed);
    CU_ASSERT_FALSE(r.failed);
    CU_ASSERT(r.fired > steps / 10); /* the run did fire timers */
    free(r.heap);
    free(r.t);
}

static void test_randomized_against_reference(void)
{
    const char *env = getenv("GD_TEST_SEED");
    uint64_t base = env ? strtoull(env, NULL, 10) : 0x7133E1;
    for (uint64_t s = 0; s < 6; s++)
        run_random(base + s * 7919, s % 2 ? 64 : 4000, 60000);
}

/* ---- a million pending timers ---- */

static void test_million_timers(void)
{
    enum { N = 1000000 };
    static sched_timer_wheel_t w;
    rec_t *r = calloc(N, sizeof *r);
    CU_ASSERT_FATAL(r != NULL);
    rng_state = 99;
    sched_timer_wheel_init(&w, 0);
    for (size_t i = 0; i < N; i++)
        sched_timer_wheel_insert(&w, &r[i].timer, 1 + rnd() % (10 * 60 * 1000));
    CU_ASSERT_EQUAL(sched_timer_wheel_count(&w), N);
    /* Cancel a tenth. */
    size_t cancelled = 0;
    for (size_t i = 0; i < N; i += 10)
        cancelled += sched_timer_wheel_cancel(&w, &r[i].timer);
    CU_ASSERT_EQUAL(cancelled, N / 10);
    /* Advance in uneven jumps; every timer must fire in the first advance
     * that reaches its deadline. */
    uint64_t prev = 0, now = 0;
    size_t fired = 0;
    while (sched_timer_wheel_count(&w) > 0) {
        now = prev + 1 + rnd() % 300;
        fire_ctx_t c = {.now = now};
        fired += sched_timer_wheel_advance(&w, now, record_fire, &c);
        prev = now;
    }
    CU_ASSERT_EQUAL(fired, N - N / 10);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        if (i % 10 == 0) {
            bad += r[i].fired != 0;
            continue;
        }
        /* Fired once, at or after its deadline, and by the first advance
         * past it (advances are at most 300 ms apart). */
        bad += r[i].fired != 1 || r[i].fired_at < r[i].timer.expires ||
               r[i].fired_at >= r[i].timer.expires + 300;
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(r);
}

static const gd_test_case_t gd_tests[] = {
    {"entry size", test_entry_size},
    {"fires exactly when advanced every tick", test_fires_exactly_when_advanced_every_tick},
    {"past deadline and cancel", test_past_deadline_and_cancel},
    {"callbacks insert and cancel", test_callbacks_insert_and_cancel},
    {"idle wheel sleeps until the deadline", test_idle_wheel_sleeps_until_deadline},
    {"far deadlines (overflow)", test_far_deadlines_overflow},
    {"randomized against a reference heap", test_randomized_against_reference},
    {"a million timers", test_million_timers},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_timer_wheel", gd_tests)
