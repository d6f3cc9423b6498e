/*
 * timer_wheel.c — hierarchical timing wheel with cascading (see
 * timer_wheel.h for the contract).
 *
 * Placement: with the wheel's time `now` (the next tick to process) and a
 * deadline e >= now, the timer goes to level k = (highest bit of e ^ now) / 6,
 * slot (e >> 6k) & 63; level 0 holds exactly the deadlines of the current
 * 64-tick block, one deadline per slot.  Because e and now agree above level
 * k and e's level-k digit is the larger, slot s of level k is only ever
 * reached at the tick (block | s) << 6k, which is <= e: at that tick the slot
 * is emptied and its timers placed again (they land lower), before level 0's
 * slot for the tick fires.  Deadlines that differ from now at bit 36 or above
 * wait in the overflow list, placed again whenever the time reaches a
 * multiple of 2^36.
 *
 * Finding the next tick with work: at each level only the current digit
 * (when the time sits exactly at its start, not yet processed) and digits
 * above it can hold timers, so the earliest candidate over the levels (and
 * the overflow list's epoch) is the next tick with work.  Taking the minimum
 * over all levels matters: right after a jump the time may sit at the start
 * of a higher-level slot that still has to cascade while level 0 already has
 * a later timer.
 */
#include "timer_wheel.h"

#include "heap.h" /* GD_ASSERT */

#include <string.h>

#define LEVEL_MASK ((uint64_t)SCHED_TIMER_SLOTS - 1)
#define SPAN_MASK (((uint64_t)1 << SCHED_TIMER_SPAN_BITS) - 1)
/* The largest time the wheel accepts: now_ms + 1 must not wrap. */
#define TIME_MAX (UINT64_MAX - 1)

void sched_timer_init(sched_timer_t *t)
{
    t->next = NULL;
    t->pprev = NULL;
    t->expires = 0;
}

bool sched_timer_pending(const sched_timer_t *t)
{
    return t->pprev != NULL;
}

void sched_timer_wheel_init(sched_timer_wheel_t *w, uint64_t now_ms)
{
    memset(w, 0, sizeof *w);
    if (now_ms > TIME_MAX - 1)
        now_ms = TIME_MAX - 1;
    w->now = now_ms + 1;
    w->overflow_epoch = UINT64_MAX;
}

size_t sched_timer_wheel_count(const sched_timer_wheel_t *w)
{
    return w->count;
}

static void push(sched_timer_t **head, sched_timer_t *t)
{
    t->next = *head;
    if (t->next != NULL)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

/* Links t (not pending, expires >= w->now) where its deadline belongs. */
static void place(sched_timer_wheel_t *w, sched_timer_t *t)
{
    uint64_t diff = t->expires ^ w->now;
    if (diff >> SCHED_TIMER_SPAN_BITS) {
        push(&w->overflow, t);
        uint64_t epoch = t->expires >> SCHED_TIMER_SPAN_BITS;
        if (epoch < w->overflow_epoch)
            w->overflow_epoch = epoch;
        return;
    }
    unsigned level =
        diff == 0 ? 0 : (unsigned)(63 - __builtin_clzll(diff)) / SCHED_TIMER_LEVEL_BITS;
    unsigned s = (unsigned)(t->expires >> (level * SCHED_TIMER_LEVEL_BITS)) & LEVEL_MASK;
    push(&w->slot[level][s], t);
    w->bitmap[level] |= (uint64_t)1 << s;
}

/* Unlinks t (pending) from whatever list holds it: a slot (whose bit is
 * cleared when it empties), the overflow list, or advance's local list. */
static void unlink_timer(sched_timer_wheel_t *w, sched_timer_t *t)
{
    sched_timer_t **pprev = t->pprev;
    *pprev = t->next;
    if (t->next != NULL) {
        t->next->pprev = pprev;
    } else {
        /* Integer comparisons: pprev may point outside the slot array. */
        uintptr_t p = (uintptr_t)pprev, base = (uintptr_t)&w->slot[0][0];
        if (p >= base && p < base + sizeof w->slot && *pprev == NULL) {
            size_t i = (p - base) / sizeof(sched_timer_t *);
            w->bitmap[i / SCHED_TIMER_SLOTS] &= ~((uint64_t)1 << (i % SCHED_TIMER_SLOTS));
        } else if (pprev == &w->overflow) {
            /* Emptied: forget the epoch, or a later insert would keep a
             * stale one from the past and advance would step back to it. */
            w->overflow_epoch = UINT64_MAX;
        }
    }
    t->next = NULL;
    t->pprev = NULL;
    w->count--;
}

void sched_timer_wheel_insert(sched_timer_wheel_t *w, sched_timer_t *t, uint64_t expires_ms)
{
    if (t->pprev != NULL)
        unlink_timer(w, t);
    t->expires = expires_ms < w->now ? w->now : expires_ms;
    place(w, t);
    w->count++;
}

bool sched_timer_wheel_cancel(sched_timer_wheel_t *w, sched_timer_t *t)
{
    if (t->pprev == NULL)
        return false;
    unlink_timer(w, t);
    return true;
}

/* The next tick at which advance has work (>= w->now), or UINT64_MAX. */
static uint64_t next_event(const sched_timer_wheel_t *w)
{
    uint64_t now = w->now, best = UINT64_MAX;
    for (unsigned k = 0; k < SCHED_TIMER_LEVELS; k++) {
        unsigned shift = k * SCHED_TIMER_LEVEL_BITS;
        uint64_t digits = now >> shift;
        uint64_t m = w->bitmap[k] & (~(uint64_t)0 << (digits & LEVEL_MASK));
        if (m != 0) {
            uint64_t tick = ((digits & ~LEVEL_MASK) | (uint64_t)__builtin_ctzll(m)) << shift;
            if (tick < best)
                best = tick;
        }
    }
    if (w->overflow != NULL && w->overflow_epoch < (UINT64_MAX >> SCHED_TIMER_SPAN_BITS)) {
        uint64_t tick = w->overflow_epoch << SCHED_TIMER_SPAN_BITS;
        if (tick < best)
            best = tick;
    }
    GD_ASSERT(best >= now);
    return best;
}

uint64_t sched_timer_wheel_next_deadline(const sched_timer_wheel_t *w)
{
    return next_event(w);
}

/* Detaches the list at *head (a slot or the overflow list). */
static sched_timer_t *take_list(sched_timer_t **head)
{
    sched_timer_t *first = *head;
    *head = NULL;
    return first;
}

/* Places again every timer of a detached list (none is freed or fired). */
static void replace_all(sched_timer_wheel_t *w, sched_timer_t *t)
{
    while (t != NULL) {
        sched_timer_t *next = t->next;
        t->next = NULL;
        t->pprev = NULL;
        place(w, t);
        t = next;
    }
}

/* Processes tick w->now: overflow and cascades, then fires level 0's slot.
 * Returns the number fired. */
static size_t process_tick(sched_timer_wheel_t *w, sched_timer_fire_fn *fire, void *ctx)
{
    uint64_t tick = w->now;
    if ((tick & SPAN_MASK) == 0 && w->overflow != NULL) {
        w->overflow_epoch = UINT64_MAX;
        replace_all(w, take_list(&w->overflow));
    }
    for (unsigned k = SCHED_TIMER_LEVELS - 1; k >= 1; k--) {
        unsigned shift = k * SCHED_TIMER_LEVEL_BITS;
        if ((tick & (((uint64_t)1 << shift) - 1)) != 0)
            continue;
        unsigned s = (unsigned)(tick >> shift) & LEVEL_MASK;
        if (w->bitmap[k] & ((uint64_t)1 << s)) {
            w->bitmap[k] &= ~((uint64_t)1 << s);
            replace_all(w, take_list(&w->slot[k][s]));
        }
    }

    unsigned s = (unsigned)tick & LEVEL_MASK;
    if (!(w->bitmap[0] & ((uint64_t)1 << s))) {
        w->now = tick + 1;
        return 0;
    }
    /* Fire from a local list: callbacks may cancel timers still on it
     * (unlink_timer works on any list) or arm new ones; with the time
     * already past this tick, nothing new can join this tick's slot. */
    w->bitmap[0] &= ~((uint64_t)1 << s);
    sched_timer_t *pending = take_list(&w->slot[0][s]);
    pending->pprev = &pending;
    w->now = tick + 1;
    size_t fired = 0;
    while (pending != NULL) {
        sched_timer_t *t = pending;
        unlink_timer(w, t);
        fire(w, t, ctx);
        fired++;
    }
    return fired;
}

size_t sched_timer_wheel_advance(sched_timer_wheel_t *w, uint64_t now_ms, sched_timer_fire_fn *fire,
                                 void *ctx)
{
    if (now_ms > TIME_MAX)
        now_ms = TIME_MAX;
    if (now_ms < w->now)
        return 0;
    size_t fired = 0;
    for (;;) {
        uint64_t tick = next_event(w);
        if (tick > now_ms)
            break;
        /* Nothing lies between w->now and tick: skip there directly. */
        w->now = tick;
        w->ticks_processed++;
        fired += process_tick(w, fire, ctx);
    }
    w->now = now_ms + 1;
    return fired;
}
