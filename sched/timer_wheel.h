/*
 * timer_wheel.h — a hierarchical timing wheel (private to sched/) for
 * receive timeouts and send_after.
 *
 * Time is in milliseconds (one tick = 1 ms) on whatever monotonic clock the
 * owner uses.  Timers are intrusive: the owner embeds a sched_timer_t in its
 * own struct (a process, a pending send) and gets it back in the firing
 * callback (container_of), so arming a timer allocates nothing and a pending
 * timer costs sizeof(sched_timer_t) = 24 bytes.  Insert and cancel are O(1).
 *
 * Six levels of 64 slots cover 2^36 ms (2.2 years) ahead of the wheel's
 * time; a timer further out waits in an overflow list that is looked at
 * once every 2^36 ms.  A timer sits at the level of the highest bit in
 * which its deadline differs from the wheel's time and moves down
 * (cascades) when the wheel's time reaches the start of its slot, so it
 * fires exactly at its deadline: never early, and when the owner advances
 * every tick, never late (a deadline already past when armed fires at the
 * next tick).  Occupancy bitmaps let advance jump over empty stretches and
 * let next_deadline find the next event without scanning: an idle wheel
 * costs nothing, however far away its timers are.
 *
 * One wheel per scheduler thread: a wheel is not thread-safe, by design.
 * Insert, cancel and advance only on the owning thread; another thread
 * wanting to cancel sends the owner a signal instead.
 */
#ifndef GIRDER_SCHED_TIMER_WHEEL_H
#define GIRDER_SCHED_TIMER_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_TIMER_LEVEL_BITS 6
#define SCHED_TIMER_SLOTS (1u << SCHED_TIMER_LEVEL_BITS)
#define SCHED_TIMER_LEVELS 6
/* Deadlines this far ahead of the wheel's time or more wait in overflow. */
#define SCHED_TIMER_SPAN_BITS (SCHED_TIMER_LEVEL_BITS * SCHED_TIMER_LEVELS)

/* An intrusive timer.  Opaque to its owner except through the functions
 * below; zero-initialised (or sched_timer_init) means not pending. */
typedef struct sched_timer {
    struct sched_timer *next;
    struct sched_timer **pprev; /* NULL when not pending */
    uint64_t expires;           /* absolute deadline, ms */
} sched_timer_t;

typedef struct sched_timer_wheel {
    uint64_t now;                        /* every tick < now has been processed */
    size_t count;                        /* pending timers */
    uint64_t bitmap[SCHED_TIMER_LEVELS]; /* bit s: slot s non-empty */
    sched_timer_t *slot[SCHED_TIMER_LEVELS][SCHED_TIMER_SLOTS];
    sched_timer_t *overflow;  /* deadlines beyond the levels' span */
    uint64_t overflow_epoch;  /* lower bound of overflow deadlines >> SPAN_BITS */
    uint64_t ticks_processed; /* ticks advance stopped at (statistics, tests) */
} sched_timer_wheel_t;

/* Called by sched_timer_wheel_advance for each timer due.  The timer is no
 * longer pending when called; the callback may re-arm it, arm or cancel any
 * other timer of the same wheel. */
typedef void sched_timer_fire_fn(sched_timer_wheel_t *w, sched_timer_t *t, void *ctx);

/* Marks t as not pending (equivalent to zeroing it). */
void sched_timer_init(sched_timer_t *t);

/* True while t is armed and has not fired or been cancelled. */
bool sched_timer_pending(const sched_timer_t *t);

/* Initialises an empty wheel whose time is now_ms: ticks up to and
 * including now_ms count as past.  Work: clears about 3 KiB. */
void sched_timer_wheel_init(sched_timer_wheel_t *w, uint64_t now_ms);

/*
 * Arms t (re-arms it if pending) to fire at expires_ms: at the first
 * sched_timer_wheel_advance whose now_ms is >= expires_ms, and never before.
 * A deadline at or before the wheel's time fires at the next tick.  t stays
 * owned by the caller and must stay valid until it fires or is cancelled.
 * Work: O(1).
 */
void sched_timer_wheel_insert(sched_timer_wheel_t *w, sched_timer_t *t, uint64_t expires_ms);

/* Disarms t; returns whether it was pending (false if it already fired or
 * was never armed).  Safe from inside a firing callback.  Work: O(1). */
bool sched_timer_wheel_cancel(sched_timer_wheel_t *w, sched_timer_t *t);

/*
 * Moves the wheel's time to now_ms (a smaller value than a previous call is
 * ignored) and calls fire(w, t, ctx) for every timer whose deadline is
 * <= now_ms, in deadline order (timers with the same deadline in no
 * particular order).  Timers armed by the callbacks for a deadline <= now_ms
 * fire in this same call, except those due at the tick being fired, which
 * wait for the next tick (so a timer re-armed for "now" cannot loop).
 * Returns the number of timers fired.  Work: O(fired + cascaded + 6 per
 * non-empty slot reached), independent of the time elapsed.
 */
size_t sched_timer_wheel_advance(sched_timer_wheel_t *w, uint64_t now_ms, sched_timer_fire_fn *fire,
                                 void *ctx);

/*
 * The time until which the owner can sleep: no timer fires before the
 * returned tick, and advancing to it either fires a timer or moves timers
 * closer (at most one such extra wakeup per level for a far deadline).
 * UINT64_MAX when no timer is pending.  Work: O(levels).
 */
uint64_t sched_timer_wheel_next_deadline(const sched_timer_wheel_t *w);

/* Number of pending timers. */
size_t sched_timer_wheel_count(const sched_timer_wheel_t *w);

#endif
