/*
 * scheduler.c — scheduler threads, run queues, stealing, the watchdog that
 * balances and rescues stuck schedulers, and node start/stop.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "coro.h"
#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

node_t sched_node;
_Thread_local runq_t *sched_current_rq;

/* True between sched_start and sched_stop.  Release in start/stop pairs
 * with the acquire in node_running: a caller that sees true sees the node
 * initialised. */
static _Atomic bool node_up;

bool node_running(void)
{
    return atomic_load_explicit(&node_up, memory_order_acquire);
}

GD_NOINLINE runq_t *sched_this_rq(void)
{
    return sched_current_rq;
}

uint64_t sched_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* TSC cycles between two reads of the real clock by a scheduler (~30 µs
 * at 3 GHz): timers are in whole milliseconds and the watchdog's stuck
 * threshold is 2 ms, so a slice start stamped up to that much early, or a
 * timer fired that much late, changes nothing that matters. */
#define CLOCK_TSC_REFRESH 100000u

/* The time for rq's scheduler (owner only): its cached clock, refreshed
 * when due (every call where no TSC is available). */
static uint64_t rq_clock_ns(runq_t *rq)
{
#if defined(__x86_64__) || defined(__i386__)
    uint64_t tsc = __rdtsc();
    /* Unsigned: a TSC that went backwards (another core's) refreshes. */
    if (tsc - rq->clock_tsc < CLOCK_TSC_REFRESH)
        return rq->clock_ns;
    rq->clock_tsc = tsc;
#endif
    rq->clock_ns = sched_now_ns();
    return rq->clock_ns;
}

/* Brings rq's cached clock up to now, a fresh sched_now_ns() reading. */
static void rq_clock_set(runq_t *rq, uint64_t now)
{
#if defined(__x86_64__) || defined(__i386__)
    rq->clock_tsc = __rdtsc();
#endif
    rq->clock_ns = now;
}

/* Forgets rq's cached clock (after a sleep): the next read is real. */
static void rq_clock_reset(runq_t *rq)
{
#if defined(__x86_64__) || defined(__i386__)
    rq->clock_tsc = __rdtsc() - CLOCK_TSC_REFRESH;
#endif
}

/* Every 8th pick from normal's turns takes a low-priority process. */
#define LOW_EVERY 8
/* Watchdog tick while work is queued. */
#define WATCHDOG_TICK_NS 1000000
/* How long the watchdog goes on ticking after the schedulers fell idle
 * before it waits to be kicked.  Kicked at once, it was woken by the push
 * that ended every idle gap: in a sequential erpc benchmark ~12k futex
 * wake-ups a second, each taking a core from a spinning scheduler (the
 * calls fell from ~36k/s to ~20k/s whenever that mode set in). */
#define WATCHDOG_IDLE_GRACE_NS 50000000
/* The watchdog's sleep while spinning schedulers make its passes
 * (spin_watchdog_pass): their spin is idle time anyway, and its own tick
 * took a core from a scheduler in mid round trip (on 2 cores: 1-pair
 * ping-pong p99 ~40 -> ~55 us at 1,000 ticks a second).  Once no
 * scheduler spins, it ticks again within this. */
#define WATCHDOG_DELEGATED_NS 10000000
#define STUCK_NS_DEFAULT 2000000
#define MAX_EXTRA_DEFAULT 2
/* An extra scheduler needs the stuck ones to burn CPU (slice_burns), or a
 * slice this many times stuck_ns long (a callback blocked in a system
 * call: rescued, only later). */
#define EXTRA_BLOCKED_FACTOR 50
/* Before a scheduler sleeps (spin_for_work): polls with a pause
 * (~2-5 µs), then polls between yields for this long. */
#define SPIN_PAUSE_ROUNDS 100
#define SPIN_YIELD_NS 300000

/* ---- run queues ---- */

/* Appends p at priority prio (locked). */
static void rq_append(runq_t *rq, sched_proc_t *p)
{
    unsigned q = p->prio;
    p->rq_next = NULL;
    if (rq->tail[q] != NULL)
        rq->tail[q]->rq_next = p;
    else
        rq->head[q] = p;
    rq->tail[q] = p;
    /* Under the lock: a plain load and store (metrics read it relaxed). */
    atomic_store_explicit(&rq->plen[q],
                          atomic_load_explicit(&rq->plen[q], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* Seq_cst: pairs with the watchdog's seq_cst store of wd_idle before
     * it reads the lengths (either it sees this or we see it idle). */
    atomic_fetch_add_explicit(&rq->len, 1, memory_order_seq_cst);
}

static sched_proc_t *rq_take(runq_t *rq, unsigned q)
{
    sched_proc_t *p = rq->head[q];
    rq->head[q] = p->rq_next;
    if (rq->head[q] == NULL)
        rq->tail[q] = NULL;
    atomic_store_explicit(&rq->plen[q],
                          atomic_load_explicit(&rq->plen[q], memory_order_relaxed) - 1,
                          memory_order_relaxed);
    /* Relaxed: the queue itself is under the lock; lock-free readers use
     * the length only as a hint (a stale value costs a wasted look). */
    atomic_fetch_sub_explicit(&rq->len, 1, memory_order_relaxed);
    return p;
}

/* The next process by priority (locked), or NULL. */
static sched_proc_t *rq_pick(runq_t *rq)
{
    if (rq->head[SCHED_PRIO_MAX] != NULL)
        return rq_take(rq, SCHED_PRIO_MAX);
    if (rq->head[SCHED_PRIO_HIGH] != NULL)
        return rq_take(rq, SCHED_PRIO_HIGH);
    bool normal = rq->head[SCHED_PRIO_NORMAL] != NULL, low = rq->head[SCHED_PRIO_LOW] != NULL;
    if (!normal && !low)
        return NULL;
    if (low && (!normal || ++rq->normal_picks % LOW_EVERY == 0))
        return rq_take(rq, SCHED_PRIO_LOW);
    return rq_take(rq, SCHED_PRIO_NORMAL);
}

/* Wakes rq's scheduler if it sleeps; true if it did. */
/* Wakes rq's sleeping scheduler after its wake_pending was set under
 * rq->lock; called with the lock released.  Signalling under the lock
 * made the woken thread, often run at once on a busy CPU, block on that
 * very lock and switch back: three context switches per wake-up instead
 * of one (perf: __pthread_mutex_cond_lock under scheduler_main).  A
 * signal after the unlock cannot be lost: the sleeper rechecks
 * wake_pending under the lock before each wait. */
static void rq_signal(runq_t *rq)
{
    pthread_cond_signal(&rq->wake);
}

static bool rq_wake(runq_t *rq)
{
    bool woke = false;
    pthread_mutex_lock(&rq->lock);
    if (rq->sleeping && !rq->wake_pending) {
        rq->wake_pending = true;
        woke = true;
    }
    pthread_mutex_unlock(&rq->lock);
    /* Signalled after the unlock (see rq_signal). */
    if (woke)
        rq_signal(rq);
    return woke;
}

/* Wakes one sleeping scheduler other than `except` (to steal). */
static void wake_one_sleeper(const runq_t *except)
{
    node_t *n = &sched_node;
    /* Relaxed hint: a sleeper missed here is found by the watchdog's next
     * balancing pass. */
    if (atomic_load_explicit(&n->sleepers, memory_order_relaxed) == 0)
        return;
    /* Acquire pairs with the release that published a new queue (start,
     * watchdog_pass). */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    for (unsigned i = 0; i < nrqs; i++)
        if (&n->rqs[i] != except && rq_wake(&n->rqs[i]))
            return;
}

bool rq_wake_sleeper(runq_t *rq)
{
    return rq_wake(rq);
}

void sched_kick_reaper(void)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    if (atomic_load_explicit(&n->nrqs, memory_order_acquire) != 0)
        (void)rq_wake(&n->rqs[0]);
}

static bool rq_stuck(runq_t *rq)
{
    /* Acquire pairs with the watchdog's release store. */
    return atomic_load_explicit(&rq->stuck, memory_order_acquire);
}

void runq_push(sched_proc_t *p)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    unsigned i = p->home < nrqs ? p->home : 0;
    if (rq_stuck(&n->rqs[i])) {
        /* Its home scheduler is stuck in a long slice: run it elsewhere,
         * preferably here. */
        if (sched_current_rq != NULL && !rq_stuck(sched_current_rq)) {
            i = sched_current_rq->index;
        } else {
            for (unsigned k = 1; k < nrqs; k++)
                if (!rq_stuck(&n->rqs[(i + k) % nrqs])) {
                    i = (i + k) % nrqs;
                    break;
                }
        }
    }
    p->home = (uint16_t)i;
    runq_t *rq = &n->rqs[i];
    pthread_mutex_lock(&rq->lock);
    rq_append(rq, p);
    bool asleep = rq->sleeping, signal = asleep && !rq->wake_pending;
    if (signal)
        rq->wake_pending = true;
    uint32_t len = atomic_load_explicit(&rq->len, memory_order_relaxed); /* under the lock */
    pthread_mutex_unlock(&rq->lock);
    if (signal)
        rq_signal(rq);
    if (!asleep && len > 1)
        wake_one_sleeper(rq);
    watchdog_kick();
}

void runq_push_woken(sched_proc_t *p)
{
    runq_t *rq = sched_current_rq;
    if (rq == NULL || p->prio != SCHED_PRIO_NORMAL || rq->chain_reds >= SCHED_CONTEXT_REDS ||
        rq_stuck(rq)) {
        runq_push(p);
        return;
    }
    p->home = (uint16_t)rq->index;
    /* Acq_rel: publishes p to whoever takes it (the owner, or a stealer
     * of a stuck queue); acquires the previous occupant, which goes to the
     * queue (its home is this scheduler already). */
    sched_proc_t *old = atomic_exchange_explicit(&rq->next, p, memory_order_acq_rel);
    if (old != NULL)
        runq_push(old);
}

/* Takes rq's run-next process, or NULL (the relaxed peek spares the
 * exchange when the slot is empty, the common case for a stealer). */
static sched_proc_t *rq_take_next(runq_t *rq)
{
    if (atomic_load_explicit(&rq->next, memory_order_relaxed) == NULL)
        return NULL;
    /* Acq_rel: pairs with the exchange in runq_push_woken. */
    return atomic_exchange_explicit(&rq->next, NULL, memory_order_acq_rel);
}

/* True when rq has a process waiting in its slot (relaxed hint). */
static bool rq_has_next(runq_t *rq)
{
    return atomic_load_explicit(&rq->next, memory_order_relaxed) != NULL;
}

/* Moves processes from victim's queue to self's: all of them (and the
 * run-next slot) when victim is stuck, else half.  Returns the first one,
 * not queued, or NULL. */
static sched_proc_t *steal_from(runq_t *self, runq_t *victim, bool take_all)
{
    node_t *n = &sched_node;
    sched_proc_t *first = NULL, *list = NULL, **tail = &list;
    uint32_t moved = 0;
    /* A stuck scheduler will not come back for its slot either. */
    if (take_all && (first = rq_take_next(victim)) != NULL)
        moved++;
    pthread_mutex_lock(&victim->lock);
    /* Under the lock, once more: a scheduler whose slice ended meanwhile
     * is merely busy, and only half of a busy queue moves. */
    take_all = take_all && rq_stuck(victim);
    uint32_t len = atomic_load_explicit(&victim->len, memory_order_relaxed); /* under the lock */
    uint32_t want = moved + (take_all ? len : (len + 1) / 2);
    for (; moved < want; moved++) {
        sched_proc_t *p = rq_pick(victim);
        if (p == NULL)
            break;
        if (first == NULL) {
            first = p;
        } else {
            *tail = p;
            tail = &p->rq_next;
        }
    }
    *tail = NULL;
    pthread_mutex_unlock(&victim->lock);
    if (first == NULL)
        return NULL;
    first->home = (uint16_t)self->index;
    if (list != NULL) {
        pthread_mutex_lock(&self->lock);
        for (sched_proc_t *p = list, *next; p != NULL; p = next) {
            next = p->rq_next;
            p->home = (uint16_t)self->index;
            rq_append(self, p);
        }
        pthread_mutex_unlock(&self->lock);
    }
    atomic_fetch_add_explicit(&n->steals, moved, memory_order_relaxed); /* statistic */
    return first;
}

/* A busy scheduler's takeover: while some scheduler is stuck, moves the
 * whole queue (and slot) of every stuck one with work to self's queue, so
 * the processes queued there do not wait for an idle scheduler that may
 * never come.  A merely busy scheduler's queue is left alone: idle ones
 * take half of it (steal). */
static void take_over_stuck(runq_t *self)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    for (unsigned k = 1; k < nrqs; k++) {
        runq_t *rq = &n->rqs[(self->index + k) % nrqs];
        /* Relaxed hints; steal_from decides under the lock. */
        if (!rq_stuck(rq) ||
            (atomic_load_explicit(&rq->len, memory_order_relaxed) == 0 && !rq_has_next(rq)))
            continue;
        sched_proc_t *p = steal_from(self, rq, true);
        if (p != NULL) {
            pthread_mutex_lock(&self->lock);
            rq_append(self, p);
            pthread_mutex_unlock(&self->lock);
        }
    }
}

/* Moves work from another queue to `self` and returns one process to run
 * now, or NULL.  A stuck queue is taken whole; otherwise half of the
 * longest queue. */
static sched_proc_t *steal(runq_t *self)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    runq_t *victim = NULL;
    uint32_t best = 0;
    bool take_all = false;
    for (unsigned k = 1; k < nrqs; k++) {
        runq_t *rq = &n->rqs[(self->index + k) % nrqs];
        /* Relaxed hint; the victim's lock decides. */
        uint32_t len = atomic_load_explicit(&rq->len, memory_order_relaxed);
        if (len == 0 && !(rq_has_next(rq) && rq_stuck(rq)))
            continue;
        if (rq_stuck(rq)) {
            victim = rq;
            take_all = true;
            break;
        }
        if (len > best) {
            best = len;
            victim = rq;
        }
    }
    if (victim == NULL)
        return NULL;
    return steal_from(self, victim, take_all);
}

/* True when a pick or steal by self may find work (or the node stops).
 * Acquire on nrqs: as in wake_one_sleeper; the lengths are relaxed hints
 * (the locked pick or steal that follows decides). */
static bool work_visible(const runq_t *self)
{
    node_t *n = &sched_node;
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    for (unsigned k = 0; k < nrqs; k++) {
        runq_t *rq = &n->rqs[(self->index + k) % nrqs];
        uint32_t len = atomic_load_explicit(&rq->len, memory_order_relaxed);
        if (len > (k == 0 ? 0u : 1u))
            return true;
        /* Its own run-next slot: filled from this thread outside any
         * process (the idle poller's deliveries), it is work too. */
        if (k == 0 && rq_has_next(rq))
            return true;
        /* A stuck queue gives up even its only process (steal): the
         * watchdog wakes sleepers for it, not a spinner, which must look. */
        if (k != 0 && (len > 0 || rq_has_next(rq)) && rq_stuck(rq))
            return true;
    }
    /* Relaxed: the loop re-reads it with acquire. */
    return atomic_load_explicit(&n->stopping, memory_order_relaxed);
}

/* The poller role of a spin that found work is kept while that work
 * runs, up to POLL_HOLD_NS of busy time, the scheduler polling between
 * slices at most every POLL_BUSY_EVERY_NS: handing it back to the loop
 * thread at once cost two epoll_ctl calls per round trip on each node,
 * and a loop wake-up for a frame that came during the run.  A slice
 * longer than the watchdog's tick gives it back from the watchdog
 * (watchdog_pass), so a long callback does not hold up the sockets. */
#define POLL_HOLD_NS 50000
#define POLL_BUSY_EVERY_NS 10000

static void poll_hold(runq_t *rq, const sched_idle_poller_t *ip, uint64_t now)
{
    atomic_store_explicit(&rq->poll_ip, ip, memory_order_relaxed);
    /* The stamps and poll_while_busy's reads from one clock, rq's cache:
     * stamped from a fresh reading while the cache lagged, the busy time
     * came out negative, read as a long stretch, and the role went back
     * after nearly every round trip. */
    rq_clock_set(rq, now);
    rq->poll_since = rq->poll_last = now;
    /* Release: the watchdog that takes the flag (acquire) sees poll_ip. */
    atomic_store_explicit(&rq->poll_held, true, memory_order_release);
}

/* Owes rq's done no more: calls it if it was still owed.  The owner, or
 * the watchdog for a scheduler in a long slice. */
static void poll_release(runq_t *rq)
{
    /* Acquire pairs with poll_hold's release. */
    if (!atomic_exchange_explicit(&rq->poll_held, false, memory_order_acquire))
        return;
    const sched_idle_poller_t *ip = atomic_load_explicit(&rq->poll_ip, memory_order_relaxed);
    ip->done(ip->ud, rq->index + 1);
}

/* After a slice, on a scheduler holding the poller role: polls now and
 * then, and gives the role back once busy for POLL_HOLD_NS. */
static void poll_while_busy(runq_t *rq)
{
    if (!atomic_load_explicit(&rq->poll_held, memory_order_relaxed))
        return;
    uint64_t now = rq_clock_ns(rq);
    if (now - rq->poll_since >= POLL_HOLD_NS) {
        poll_release(rq);
    } else if (now - rq->poll_last >= POLL_BUSY_EVERY_NS) {
        rq->poll_last = now;
        const sched_idle_poller_t *ip = atomic_load_explicit(&rq->poll_ip, memory_order_relaxed);
        (void)ip->poll(ip->ud, rq->index + 1, false);
    }
}

/*
 * Borrowed PCBs.  A process running on a scheduler sends by looking the
 * target up without taking a reference (process.c proc_peek): a CAS and a
 * fetch_sub on the target's slot word per send were ~11% of a ring hop.
 * Such a borrowed pointer is used within one send and never kept, so a
 * PCB whose last reference dropped (a zombie) may be freed once every
 * scheduler has passed a quiescent state, a point where it holds no
 * borrowed pointer, after the PCB's slot stopped naming a live process:
 *
 * - A reaper moves the zombies to limbo and gives the batch the next
 *   epoch E (an acq_rel increment of reclaim_epoch, after the slots were
 *   cleared).
 * - Each scheduler stores the epoch it reads into qs_epoch at the top of
 *   its loop (qs_note: acquire load, release store; no locked
 *   instruction).  One that read E or more looks slots up after seeing
 *   them cleared; its earlier borrowed uses come before the store.
 * - A sleeping scheduler holds nothing: its qs_epoch is UINT64_MAX.  One
 *   that wakes stores its epoch with seq_cst, and borrowed lookups load
 *   slots with seq_cst, so a reaper that still read UINT64_MAX has its
 *   clearing of the slot seen by the waker's lookups.
 * - A scheduler stuck in a long slice (a C loop) does not come round.
 *   After RECLAIM_FORCE_NS, or when the reaper itself is about to sleep,
 *   the reaper issues a process-wide barrier (membarrier) and then reads
 *   the laggard's `borrowing` flag: clear means its borrowed uses are over
 *   and its next lookups see the cleared slots (the barrier orders its
 *   flag store against its slot loads, the asymmetric fence of userspace
 *   RCU).
 *
 * Without the barrier (borrow_ok false) nothing is borrowed and zombies
 * are reaped at once, as before.
 */
#define RECLAIM_FORCE_NS 1000000u

/* A quiescent state of rq's scheduler (its loop top). */
static void qs_note(runq_t *rq)
{
    /* Acquire pairs with the acq_rel increment in limbo_fill. */
    uint64_t e = atomic_load_explicit(&sched_node.reclaim_epoch, memory_order_acquire);
    /* Relaxed: the owner's own field.  Release: the uses before it. */
    if (atomic_load_explicit(&rq->qs_epoch, memory_order_relaxed) != e)
        atomic_store_explicit(&rq->qs_epoch, e, memory_order_release);
}

/* rq's scheduler sleeps (or stops): it holds nothing borrowed. */
static void qs_offline(runq_t *rq)
{
    /* Seq_cst: a scheduler about to sleep after this sees it (grace_passed). */
    atomic_store_explicit(&rq->qs_epoch, UINT64_MAX, memory_order_seq_cst);
}

/* rq's scheduler wakes (or starts). */
static void qs_online(runq_t *rq)
{
    /* Seq_cst, with proc_peek's slot load and grace_passed's loads: see
     * "Borrowed PCBs". */
    uint64_t e = atomic_load_explicit(&sched_node.reclaim_epoch, memory_order_seq_cst);
    atomic_store_explicit(&rq->qs_epoch, e, memory_order_seq_cst);
}

/* The first scheduler but self that has not passed a quiescent state
 * since epoch e began (and, with borrowing, holds a borrowed PCB now),
 * or NULL. */
static const runq_t *grace_laggard(const runq_t *self, uint64_t e, bool borrowing)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    for (unsigned i = 0; i < nrqs; i++) {
        const runq_t *rq = &n->rqs[i];
        /* Acquire on borrowing pairs with borrow_end's release. */
        if (rq != self && atomic_load_explicit(&rq->qs_epoch, memory_order_seq_cst) < e &&
            (!borrowing || atomic_load_explicit(&rq->borrowing, memory_order_acquire)))
            return rq;
    }
    return NULL;
}

/* Whether no scheduler but self (at a quiescent state) can hold a
 * borrowed pointer to a PCB of epoch e's batch.  With force, laggards are
 * checked through the process-wide barrier. */
static bool grace_passed(const runq_t *self, uint64_t e, bool force)
{
    if (grace_laggard(self, e, false) == NULL)
        return true;
    return force && sched_os_membarrier() && grace_laggard(self, e, true) == NULL;
}

/* Moves the zombies to limbo as a new epoch's batch (under limbo_lock,
 * limbo empty). */
static void limbo_fill(node_t *n)
{
    /* Acquire pairs with the release CAS in proc_put. */
    n->limbo = atomic_exchange_explicit(&n->zombies, NULL, memory_order_acquire);
    if (n->limbo == NULL)
        return;
    /* Seq_cst (acq_rel at least): after the slots' clearing, which the
     * zombies' push carried here; before the schedulers' epoch loads. */
    n->limbo_epoch = atomic_fetch_add_explicit(&n->reclaim_epoch, 1, memory_order_seq_cst) + 1;
    n->limbo_since = sched_now_ns();
}

/* Frees a list of zombies; their heaps go back to malloc, so a trim is
 * owed (trim_free_memory). */
static void reap_list(sched_proc_t *z)
{
    if (z == NULL)
        return;
    proc_reap_list(z);
    atomic_store_explicit(&sched_node.malloc_trim_owed, true, memory_order_relaxed);
}

/* Frees the PCBs whose last reference dropped and whose grace period
 * passed; rq is the caller's scheduler, at a quiescent state.  `idle`:
 * the caller is about to sleep, so limbo is settled now (with the
 * barrier) rather than left to schedulers that may all be asleep. */
static void reap_zombies(runq_t *rq, bool idle)
{
    node_t *n = &sched_node;
    /* Relaxed peeks; the exchange and the lock order.  Not before a sleep,
     * where a stale limbo_full would leave a batch to schedulers that may
     * all be asleep. */
    if (!idle && atomic_load_explicit(&n->zombies, memory_order_relaxed) == NULL &&
        !atomic_load_explicit(&n->limbo_full, memory_order_relaxed))
        return;
    if (!n->borrow_ok) {
        /* Acquire pairs with the release CAS in proc_put. */
        reap_list(atomic_exchange_explicit(&n->zombies, NULL, memory_order_acquire));
        return;
    }
    if (pthread_mutex_trylock(&n->limbo_lock) != 0)
        return; /* another scheduler is at it */
    sched_proc_t *ripe = NULL, *ripe_new = NULL;
    if (n->limbo != NULL &&
        grace_passed(rq, n->limbo_epoch,
                     idle || sched_now_ns() - n->limbo_since >= RECLAIM_FORCE_NS)) {
        ripe = n->limbo;
        n->limbo = NULL;
    }
    if (n->limbo == NULL) {
        limbo_fill(n);
        if (idle && n->limbo != NULL && grace_passed(rq, n->limbo_epoch, true)) {
            ripe_new = n->limbo;
            n->limbo = NULL;
        }
    }
    atomic_store_explicit(&n->limbo_full, n->limbo != NULL, memory_order_relaxed);
    pthread_mutex_unlock(&n->limbo_lock);
    reap_list(ripe);
    reap_list(ripe_new);
}

static void spin_watchdog_pass(uint64_t now);

/* Spins for work before sleeping, as BEAM's schedulers busy-wait: a
 * wake-up through the condition variable costs a futex call on the
 * waker's side and a context switch on ours (tens of µs on a loaded VM),
 * more than a message; a scheduler that is spinning is not marked
 * sleeping, so a push to it skips the futex.  A few polls with a pause
 * first, then polls between sched_yield()s for up to SPIN_YIELD_NS: a
 * reply crossing the network (a distribution round trip, ~50 µs here)
 * then finds its scheduler awake, and the yields hand the CPU to any
 * thread that can run (the loop thread reading that reply, on a machine
 * with fewer cores than threads), where a pause-only spin that long
 * delayed them (measured: 400 pauses gave p50 ~100 µs, 200 yields ~50 µs
 * on the 1-pair distribution ping-pong).  The yield phase runs only when
 * the last idle stretch was that short (yield_phase, see scheduler_main):
 * a scheduler whose work comes every few ms (the guard tests' probes)
 * would only take CPU from the threads that run, as a node idle for long
 * pays nothing.  SPIN_YIELD_NS is 300 µs: a sequential caller's
 * distribution calls (rpc, erpc: a request every ~100-150 µs) found the
 * scheduler asleep with 100 µs, each call paying a futex wake-up
 * (dist_rpc_call girder<->girder median 7.6k -> 11.5k calls/s, erpc 8.2k
 * -> 13.9k, 3 interleaved rounds on the loaded box).  In the yield
 * phase each round also calls the idle poller, if one is installed
 * (sched_set_idle_poller: the distribution layer reads its sockets
 * there) and makes the watchdog's pass once a tick (spin_watchdog_pass).
 * True when work appeared. */
static bool spin_for_work(runq_t *self, bool yield_phase)
{
    for (int i = 0; i < SPIN_PAUSE_ROUNDS; i++) {
        if (work_visible(self)) {
            /* Out of work and back at it: a new busy stretch for the
             * role's hold (poll_while_busy). */
            if (atomic_load_explicit(&self->poll_held, memory_order_relaxed))
                self->poll_since = rq_clock_ns(self);
            return true;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (!yield_phase) {
        poll_release(self);
        return false;
    }
    /* Acquire pairs with the release in sched_set_idle_poller. */
    const sched_idle_poller_t *ip =
        atomic_load_explicit(&sched_node.idle_poller, memory_order_acquire);
    unsigned who = self->index + 1;
    bool found = false;
    uint64_t t0 = sched_now_ns(), now = t0;
    do {
        spin_watchdog_pass(now);
        sched_yield();
        qs_note(self);
        /* What the poller delivers lands in this scheduler's run-next
         * slot (runq_push_woken), which work_visible looks at: also when
         * poll says it read nothing (a connection it closed still told
         * its controller, which then waited asleep in the slot). */
        if (ip != NULL)
            (void)ip->poll(ip->ud, who, true);
        if (work_visible(self)) {
            found = true;
            break;
        }
        now = sched_now_ns();
    } while (now - t0 < SPIN_YIELD_NS);
    if (ip != atomic_load_explicit(&self->poll_ip, memory_order_relaxed))
        poll_release(self); /* a role held under another table */
    if (ip == NULL)
        return found;
    if (!found) {
        atomic_store_explicit(&self->poll_held, false, memory_order_relaxed);
        ip->done(ip->ud, who);
        return false;
    }
    poll_hold(self, ip, now);
    return true;
}

void sched_set_idle_poller(const sched_idle_poller_t *poller)
{
    atomic_store_explicit(&sched_node.idle_poller, poller, memory_order_release);
}

bool sched_on_scheduler(void)
{
    return sched_current_rq != NULL;
}

uint32_t sched_runnable_here(void)
{
    const runq_t *rq = sched_current_rq;
    if (rq == NULL)
        return 0;
    /* Relaxed: a hint, as stealers read len. */
    return atomic_load_explicit(&rq->len, memory_order_relaxed) +
           (atomic_load_explicit(&rq->next, memory_order_relaxed) != NULL);
}

/* A scheduler that runs out of work gives the C library's free memory
 * back to the OS, at most once a second node-wide (malloc_trim walks
 * every arena): while busy, each arena keeps up to SCHED_MALLOC_KEEP free
 * for reuse (os.c), which an idle node must not hold on to (a million
 * exited processes left ~100 MiB resident otherwise).  At once, whatever
 * the interval, when its idle pass unmapped PCB chunks (`shrank`: a
 * chunk's worth of processes exited, their heaps and messages went back
 * to malloc; measured: 1M idle processes exited left 108 MiB of 813
 * resident until malloc_trim).  Returns when a trim owed later is due
 * (ms), or UINT64_MAX. */
#define MALLOC_TRIM_INTERVAL_NS 1000000000u

static uint64_t trim_free_memory(bool shrank)
{
    node_t *n = &sched_node;
    uint64_t now = sched_now_ns();
    /* Relaxed: the CAS decides which scheduler trims. */
    uint64_t last = atomic_load_explicit(&n->last_malloc_trim_ns, memory_order_relaxed);
    if (shrank) {
        atomic_store_explicit(&n->last_malloc_trim_ns, now, memory_order_relaxed);
    } else if (now - last < MALLOC_TRIM_INTERVAL_NS) {
        /* Too soon.  Processes reaped since the last trim left their heaps
         * with malloc: without a trim when the interval is up, a node that
         * goes quiet now keeps them resident for good. */
        if (!atomic_load_explicit(&n->malloc_trim_owed, memory_order_relaxed))
            return UINT64_MAX;
        return (last + MALLOC_TRIM_INTERVAL_NS + 999999u) / 1000000u;
    } else if (!atomic_compare_exchange_strong_explicit(&n->last_malloc_trim_ns, &last, now,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed)) {
        return UINT64_MAX;
    }
    atomic_store_explicit(&n->malloc_trim_owed, false, memory_order_relaxed);
    (void)malloc_trim(0);
    return UINT64_MAX;
}

static void *scheduler_main(void *arg)
{
    runq_t *rq = arg;
    node_t *n = &sched_node;
    sched_current_rq = rq;
    /* Named for top -H, perf and gdb: "gd-sched-1" is run queue 0. */
    char name[16];
    snprintf(name, sizeof name, "gd-sched-%u", rq->index + 1);
    (void)pthread_setname_np(pthread_self(), name);
    qs_online(rq);
    rq_clock_reset(rq);
    /* When this scheduler last ran out of work, and whether work came back
     * within SPIN_YIELD_NS then (spin_for_work's yield phase). */
    uint64_t idle_since = 0;
    bool short_idle = false;
    for (;;) {
        qs_note(rq);
        reap_zombies(rq, false);
        uint64_t now = rq_clock_ns(rq);
        /* Relaxed hint: the advance rereads the wheel under its lock. */
        if (now / 1000000u >= atomic_load_explicit(&rq->tnext, memory_order_relaxed))
            timer_rq_advance(rq, now / 1000000u);
        /* Acquire pairs with the release store in stop_threads. */
        if (atomic_load_explicit(&n->stopping, memory_order_acquire))
            break;
        /* The slice's start is stamped before the slot is looked at, so the
         * watchdog (which reads the slot first, with acquire) never sees
         * both empty while a process taken from the slot runs.  Relaxed:
         * a timestamp hint; the slot's exchange (release) orders it. */
        atomic_store_explicit(&rq->slice_start, now, memory_order_relaxed);
        sched_proc_t *p = rq_take_next(rq);
        bool chained = p != NULL;
        if (p == NULL) {
            pthread_mutex_lock(&rq->lock);
            p = rq_pick(rq);
            pthread_mutex_unlock(&rq->lock);
        }
        if (p == NULL)
            p = steal(rq);
        if (p == NULL)
            atomic_store_explicit(&rq->slice_start, 0, memory_order_relaxed);
        if (p == NULL) {
            idle_since = now;
            if (spin_for_work(rq, short_idle && !n->no_yield_spin)) {
                short_idle = true; /* found within the spin: a short stretch */
                continue;
            }
        }
        if (p == NULL) {
            /* Idle: settle limbo first (its PCBs go back to the pools),
             * then give the cached coroutine stacks' pages and the PCB
             * chunks that emptied back. */
            qs_offline(rq);
            reap_zombies(rq, true);
            sched_coro_cache_trim();
            size_t unmapped = pcb_pool_trim(rq);
            heap_msg_slab_trim();
            /* When to wake without work (ms, as the timers): for the C
             * library's trim when it is owed, and in a millisecond when
             * zombies wait (a scheduler borrowing at the barrier kept a
             * batch in limbo, another held limbo_lock, or a thread off
             * the schedulers queued one since the reap above) that no
             * scheduler might otherwise come back to. */
            uint64_t idle_due = trim_free_memory(unmapped != 0);
            pthread_mutex_lock(&rq->lock);
            /* Zombies under the lock: sched_kick_reaper takes it after
             * it queued one, so either the zombie is seen here or the
             * kick sees `sleeping`.  Relaxed: hints; the timeout retries. */
            if (atomic_load_explicit(&n->limbo_full, memory_order_relaxed) ||
                atomic_load_explicit(&n->zombies, memory_order_relaxed) != NULL)
                idle_due = sched_now_ns() / 1000000u + 1u;
            /* len under the lock; stopping as above; pcb_pool_trim_due
             * as the zombies (pcb_free's wake-up of a sleeping owner). */
            if (atomic_load_explicit(&rq->len, memory_order_relaxed) == 0 && !rq->wake_pending &&
                !atomic_load_explicit(&n->stopping, memory_order_acquire) &&
                !pcb_pool_trim_due(rq)) {
                rq->sleeping = true;
                /* Relaxed: a hint for wake_one_sleeper (the watchdog
                 * covers a stale read). */
                atomic_fetch_add_explicit(&n->sleepers, 1, memory_order_relaxed);
                while (!rq->wake_pending) {
                    /* Read under rq->lock after `sleeping` is set: a timer
                     * armed here from elsewhere either is seen now or
                     * wakes us (rq_wake_sleeper takes this lock). */
                    uint64_t due = atomic_load_explicit(&rq->tnext, memory_order_relaxed);
                    if (idle_due < due)
                        due = idle_due;
                    if (due == UINT64_MAX) {
                        pthread_cond_wait(&rq->wake, &rq->lock);
                        continue;
                    }
                    struct timespec ts = {(time_t)(due / 1000u), (long)(due % 1000u) * 1000000L};
                    if (pthread_cond_timedwait(&rq->wake, &rq->lock, &ts) == ETIMEDOUT)
                        break;
                }
                atomic_fetch_sub_explicit(&n->sleepers, 1, memory_order_relaxed);
                rq->sleeping = false;
            }
            rq->wake_pending = false;
            pthread_mutex_unlock(&rq->lock);
            qs_online(rq);
            rq_clock_reset(rq);
            short_idle = sched_now_ns() - idle_since < SPIN_YIELD_NS;
            continue;
        }
        int32_t used = proc_run(p);
        atomic_store_explicit(&rq->slice_start, 0, memory_order_relaxed);
        poll_while_busy(rq);
        rq->chain_reds = chained ? rq->chain_reds + used : used;
        /* Relaxed peek, release clear: pairs with the stealers' acquire
         * loads (they stop taking the whole queue). */
        if (atomic_load_explicit(&rq->stuck, memory_order_relaxed)) {
            atomic_store_explicit(&rq->stuck, false, memory_order_release);
            atomic_fetch_sub_explicit(&n->stuck_now, 1, memory_order_relaxed);
        }
        /* Relaxed hint: a stale zero waits for the next slice's look. */
        if (atomic_load_explicit(&n->stuck_now, memory_order_relaxed) != 0)
            take_over_stuck(rq);
    }
    poll_release(rq);
    qs_offline(rq);
    return NULL;
}

/* ---- watchdog ---- */

void watchdog_kick(void)
{
    node_t *n = &sched_node;
    /* Seq_cst: pairs with the watchdog's store before it re-reads the
     * queue lengths (see rq_append). */
    if (!atomic_load_explicit(&n->wd_idle, memory_order_seq_cst))
        return;
    /* The lock round trip waits out a watchdog between its idle store and
     * its wait; the signal follows the unlock (as rq_signal: a woken
     * watchdog must not block on wd_lock at once). */
    pthread_mutex_lock(&n->wd_lock);
    pthread_mutex_unlock(&n->wd_lock);
    pthread_cond_signal(&n->wd_cond);
}

static int start_scheduler(unsigned i)
{
    runq_t *rq = &sched_node.rqs[i];
    if (pthread_create(&rq->thread, NULL, scheduler_main, rq) != 0)
        return GD_ESYSTEM_LIMIT;
    rq->started = true;
    return GD_OK;
}

/* CPU time (ns) rq's thread has used, or UINT64_MAX when unknown. */
static uint64_t rq_cpu_ns(runq_t *rq)
{
    if (!rq->wd_clock_known) {
        rq->wd_clock_known = true;
        rq->wd_clock_ok = pthread_getcpuclockid(rq->thread, &rq->wd_clock) == 0;
    }
    struct timespec ts;
    if (!rq->wd_clock_ok || clock_gettime(rq->wd_clock, &ts) != 0)
        return UINT64_MAX;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * For a scheduler marked stuck (its slice that started at t0 is past
 * stuck_ns): true when an extra scheduler would help, i.e. its thread has
 * run on a CPU for stuck_ns / 4 since the watchdog first saw the slice
 * long (a callback looping in C burns CPU), or the slice has lasted
 * EXTRA_BLOCKED_FACTOR * stuck_ns (blocked in a system call).  A thread
 * the OS took off its core (a loaded host: more runnable threads than
 * cores) is late, not stuck: moving its queue to the other schedulers
 * helps, but starting threads only makes the OS share the same cores among
 * more of them (the fairness bench on a loaded 2-core VM saw ~550 marks
 * and 6 threads in 2 s, the probe waiting for descheduled threads).  So
 * the wall-time mark still moves work, and this check gates only the
 * extra threads.  An absolute amount of CPU, not a share of the wall
 * time: on a host loaded 8x a stuck thread gets ~12% of a core and must
 * still be found.  One clock_gettime per stuck scheduler per tick.
 */
static bool slice_burns(runq_t *rq, uint64_t t0, uint64_t now)
{
    node_t *n = &sched_node;
    if (now - t0 > EXTRA_BLOCKED_FACTOR * n->stuck_ns)
        return true;
    uint64_t cpu = rq_cpu_ns(rq);
    if (cpu == UINT64_MAX)
        return true; /* no CPU clock: wall time alone, as before */
    if (rq->wd_slice != t0) {
        rq->wd_slice = t0;
        rq->wd_cpu0 = cpu;
        return false;
    }
    return cpu - rq->wd_cpu0 >= n->stuck_ns / 4;
}

/* One watchdog pass; true when something is queued or running.  With
 * may_fire (never under wd_lock: a fire may kick the watchdog) it also
 * fires the due timers of schedulers in a slice longer than a tick, whose
 * owners cannot. */
static bool watchdog_pass(bool may_fire)
{
    node_t *n = &sched_node;
    /* Acquire: as in wake_one_sleeper. */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    uint64_t now = sched_now_ns();
    bool busy = false;
    unsigned stuck = 0, burning = 0;
    for (unsigned i = 0; i < nrqs; i++) {
        runq_t *rq = &n->rqs[i];
        /* The slot first (acquire: see scheduler_main), then the slice
         * start (a timestamp hint).  len seq_cst: see rq_append. */
        bool slotted = atomic_load_explicit(&rq->next, memory_order_acquire) != NULL;
        uint64_t t0 = atomic_load_explicit(&rq->slice_start, memory_order_relaxed);
        uint32_t len = atomic_load_explicit(&rq->len, memory_order_seq_cst);
        if (t0 != 0 || len != 0 || slotted)
            busy = true;
        /* Relaxed hint, as in scheduler_main. */
        bool past_tick = t0 != 0 && now > t0 && now - t0 > WATCHDOG_TICK_NS;
        if (may_fire && past_tick &&
            now / 1000000u >= atomic_load_explicit(&rq->tnext, memory_order_relaxed))
            timer_rq_advance(rq, now / 1000000u);
        /* The sockets wait for no long slice (see POLL_HOLD_NS). */
        if (past_tick)
            poll_release(rq);
        if (t0 != 0 && now > t0 && now - t0 > n->stuck_ns) {
            stuck++;
            if (slice_burns(rq, t0, now))
                burning++;
            if (!atomic_load_explicit(&rq->stuck, memory_order_relaxed)) { /* own flag */
                /* Release: pairs with the stealers' acquire load. */
                atomic_store_explicit(&rq->stuck, true, memory_order_release);
                atomic_fetch_add_explicit(&n->stuck_marks, 1, memory_order_relaxed); /* stat */
                atomic_fetch_add_explicit(&n->stuck_now, 1, memory_order_relaxed);
            }
            if (len != 0 || rq_has_next(rq))
                wake_one_sleeper(rq);
        } else if (len > 1) {
            /* Balancing: an idle scheduler takes half. */
            wake_one_sleeper(rq);
        }
    }
    if (stuck == nrqs && burning == nrqs && nrqs < n->max_rqs) {
        /* Every scheduler is stuck in a callback that burns CPU (or is
         * blocked for long): add one (bounded). */
        bool queued = false;
        for (unsigned i = 0; i < nrqs; i++)
            if (atomic_load_explicit(&n->rqs[i].len, memory_order_relaxed) != 0 || /* hints */
                rq_has_next(&n->rqs[i]))
                queued = true;
        if (queued && start_scheduler(nrqs) == GD_OK) {
            /* Release: the new queue is initialised (start). */
            atomic_store_explicit(&n->nrqs, nrqs + 1, memory_order_release);
            atomic_fetch_add_explicit(&n->extra_started, 1, memory_order_relaxed); /* stat */
        }
    }
    return busy;
}

/* watchdog_pass unless another thread is making one (it reads and keeps
 * per-queue state: slice_burns); -1 when skipped. */
static int watchdog_pass_locked(bool may_fire)
{
    node_t *n = &sched_node;
    if (pthread_mutex_trylock(&n->wd_pass_lock) != 0)
        return -1;
    bool busy = watchdog_pass(may_fire);
    pthread_mutex_unlock(&n->wd_pass_lock);
    return busy;
}

/* A spinning scheduler makes the watchdog's pass once a tick, so that the
 * watchdog itself can sleep (WATCHDOG_DELEGATED_NS).  Relaxed: the time
 * is a hint; two passes in a tick cost nothing but the time. */
static void spin_watchdog_pass(uint64_t now)
{
    node_t *n = &sched_node;
    if (now - atomic_load_explicit(&n->wd_spin_pass_ns, memory_order_relaxed) < WATCHDOG_TICK_NS)
        return;
    if (watchdog_pass_locked(true) >= 0)
        atomic_store_explicit(&n->wd_spin_pass_ns, now, memory_order_relaxed);
}

/* The watchdog's sleep between passes while there is work: a tick, or
 * longer while spinning schedulers make the passes. */
static void watchdog_nap(uint64_t now)
{
    node_t *n = &sched_node;
    uint64_t spun = atomic_load_explicit(&n->wd_spin_pass_ns, memory_order_relaxed);
    bool delegated = now - spun < 2 * WATCHDOG_TICK_NS;
    struct timespec ts = {0, delegated ? WATCHDOG_DELEGATED_NS : WATCHDOG_TICK_NS};
    nanosleep(&ts, NULL);
    atomic_fetch_add_explicit(&n->wd_wakeups, 1, memory_order_relaxed); /* stat */
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    node_t *n = &sched_node;
    (void)pthread_setname_np(pthread_self(), "gd-watchdog");
    /* Acquire pairs with the release store in stop_threads. */
    uint64_t busy_at = sched_now_ns();
    while (!atomic_load_explicit(&n->stopping, memory_order_acquire)) {
        /* A pass a spinning scheduler is making counts as busy. */
        bool busy = watchdog_pass_locked(true) != 0;
        uint64_t now = sched_now_ns();
        if (busy)
            busy_at = now;
        if (busy || now - busy_at < WATCHDOG_IDLE_GRACE_NS) {
            watchdog_nap(now);
            continue;
        }
        /* Idle: sleep until a push kicks us.  Seq_cst store, then re-read
         * (pairs with rq_append / watchdog_kick).  Not waiting for
         * wd_pass_lock under wd_lock: a spinner's pass may kick. */
        pthread_mutex_lock(&n->wd_lock);
        atomic_store_explicit(&n->wd_idle, true, memory_order_seq_cst);
        if (watchdog_pass_locked(false) == 0 &&
            !atomic_load_explicit(&n->stopping, memory_order_acquire)) {
            pthread_cond_wait(&n->wd_cond, &n->wd_lock);
            atomic_fetch_add_explicit(&n->wd_wakeups, 1, memory_order_relaxed); /* stat */
            /* Kicked: work came, whether or not the next pass still sees
             * it (a message handled in microseconds): the grace starts
             * again, or every push of a round trip would kick anew. */
            busy_at = sched_now_ns();
        }
        /* Relaxed: a kicker that still sees true only signals in vain. */
        atomic_store_explicit(&n->wd_idle, false, memory_order_relaxed);
        pthread_mutex_unlock(&n->wd_lock);
    }
    return NULL;
}

/* ---- start / stop ---- */

static void free_node(void)
{
    node_t *n = &sched_node;
    if (n->rqs != NULL)
        for (unsigned i = 0; i < n->max_rqs; i++) {
            pthread_mutex_destroy(&n->rqs[i].lock);
            pthread_cond_destroy(&n->rqs[i].wake);
            timer_rq_free(&n->rqs[i]);
        }
    free(n->rqs);
    free(n->slots);
    free(n->free_ring);
    registry_free();
    pcb_pools_free();
    pthread_mutex_destroy(&n->pool_lock);
    pthread_mutex_destroy(&n->free_lock);
    pthread_mutex_destroy(&n->limbo_lock);
    pthread_mutex_destroy(&n->wd_lock);
    pthread_mutex_destroy(&n->wd_pass_lock);
    pthread_cond_destroy(&n->wd_cond);
    pthread_mutex_destroy(&n->exit_lock);
    pthread_cond_destroy(&n->exit_cond);
    memset(n, 0, sizeof *n);
}

/* Wakes every scheduler thread of the first nrqs queues (wake_pending is
 * read under the same lock before a scheduler sleeps, so none misses it). */
static void wake_all_rqs(node_t *n, unsigned nrqs)
{
    for (unsigned i = 0; i < nrqs; i++) {
        runq_t *rq = &n->rqs[i];
        pthread_mutex_lock(&rq->lock);
        rq->wake_pending = true;
        pthread_cond_signal(&rq->wake);
        pthread_mutex_unlock(&rq->lock);
    }
}

static void stop_threads(void)
{
    node_t *n = &sched_node;
    /* Release: pairs with the threads' acquire loads of stopping. */
    atomic_store_explicit(&n->stopping, true, memory_order_release);
    /* Acquire: as in wake_one_sleeper. */
    wake_all_rqs(n, atomic_load_explicit(&n->nrqs, memory_order_acquire));
    pthread_mutex_lock(&n->wd_lock);
    pthread_cond_signal(&n->wd_cond);
    pthread_mutex_unlock(&n->wd_lock);
    if (n->watchdog_started)
        pthread_join(n->watchdog, NULL);
    n->watchdog_started = false;
    /* The watchdog is gone: nrqs no longer changes.  A scheduler it added
     * after the wake-up above may have read `stopping` as false (its
     * start raced that store: acquire/release does not order a store and
     * a later load on two threads) and gone to sleep: wake them all again
     * (a TSan run of test_sched_basic hung in sched_stop on such a one). */
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    wake_all_rqs(n, nrqs);
    for (unsigned i = 0; i < nrqs; i++)
        if (n->rqs[i].started) {
            pthread_join(n->rqs[i].thread, NULL);
            n->rqs[i].started = false;
        }
}

unsigned sched_cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (unsigned)online : 1;
}

int sched_start(const sched_opts_t *opts)
{
    static const sched_opts_t defaults;
    if (opts == NULL)
        opts = &defaults;
    if (node_running() || opts->max_processes > SCHED_MAX_PROCESSES_LIMIT)
        return GD_EINVAL;
    node_t *n = &sched_node;
    memset(n, 0, sizeof *n);
    sched_os_malloc_policy();
    unsigned nsched = opts->schedulers;
    if (nsched == 0)
        nsched = sched_cores_available();
    if (nsched > 1024)
        return GD_EINVAL;
    n->nsched = nsched;
    n->no_yield_spin = opts->no_yield_spin;
    n->max_rqs =
        nsched + (opts->max_extra_schedulers != 0 ? opts->max_extra_schedulers : MAX_EXTRA_DEFAULT);
    n->max_procs = opts->max_processes != 0 ? opts->max_processes : SCHED_MAX_PROCESSES_DEFAULT;
    n->idx_bits = 0;
    while ((1u << n->idx_bits) < n->max_procs)
        n->idx_bits++;
    /* LIMIT is 2^27: at least one bit of serial remains. */
    n->serial_mask = ((uint64_t)1 << (28 - n->idx_bits)) - 1;
    n->stuck_ns = opts->stuck_ns != 0 ? opts->stuck_ns : STUCK_NS_DEFAULT;
    pthread_mutex_init(&n->free_lock, NULL);
    pthread_mutex_init(&n->limbo_lock, NULL);
    n->borrow_ok = sched_os_membarrier_init();
    pthread_mutex_init(&n->pool_lock, NULL);
    pthread_mutex_init(&n->wd_lock, NULL);
    pthread_mutex_init(&n->wd_pass_lock, NULL);
    pthread_cond_init(&n->wd_cond, NULL);
    pthread_mutex_init(&n->exit_lock, NULL);
    pthread_cond_init(&n->exit_cond, NULL);
    int rc = proc_atoms_init();
    /* Reading the identity freezes it: it must not change once pids and
     * refs of this node exist (heap_node_identity_set before sched_start). */
    (void)heap_node_name();
    if (rc == GD_OK)
        rc = registry_init();
    if (rc == GD_OK)
        rc = dirty_start(opts->dirty_threads);
    if (rc != GD_OK)
        goto fail;
    rc = GD_ENOMEM;
    /* calloc: the table's pages are committed as slots are first used. */
    n->slots = calloc(n->max_procs, sizeof *n->slots);
    n->free_ring = malloc((size_t)n->max_procs * sizeof *n->free_ring);
    n->rqs = aligned_alloc(64, n->max_rqs * sizeof *n->rqs);
    /* Zeroed at once: free_node may see it before the queues are set up. */
    if (n->rqs != NULL)
        memset(n->rqs, 0, n->max_rqs * sizeof *n->rqs);
    if (n->slots == NULL || n->free_ring == NULL || n->rqs == NULL)
        goto fail;
    /* Sleeps wait for timer deadlines on the monotonic clock. */
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    uint64_t now_ms = sched_now_ns() / 1000000u;
    for (unsigned i = 0; i < n->max_rqs; i++) {
        pthread_mutex_init(&n->rqs[i].lock, NULL);
        pthread_cond_init(&n->rqs[i].wake, &cattr);
        n->rqs[i].index = i;
        /* Not started: holds nothing borrowed. */
        atomic_store_explicit(&n->rqs[i].qs_epoch, UINT64_MAX, memory_order_relaxed);
        timer_rq_init(&n->rqs[i], now_ms);
    }
    pthread_condattr_destroy(&cattr);
    atomic_store_explicit(&n->nrqs, nsched, memory_order_release);
    atomic_store_explicit(&node_up, true, memory_order_release);
    for (unsigned i = 0; i < nsched; i++) {
        rc = start_scheduler(i);
        if (rc != GD_OK)
            goto fail_threads;
    }
    if (pthread_create(&n->watchdog, NULL, watchdog_main, NULL) != 0) {
        rc = GD_ESYSTEM_LIMIT;
        goto fail_threads;
    }
    n->watchdog_started = true;
    return GD_OK;

fail_threads:
    atomic_store_explicit(&node_up, false, memory_order_release);
    stop_threads();
fail:
    dirty_stop();
    free_node();
    return rc;
}

void sched_stop(void)
{
    if (!node_running())
        return;
    atomic_store_explicit(&node_up, false, memory_order_release);
    /* Before the schedulers stop: pending dirty calls deliver normally. */
    dirty_stop();
    stop_threads();
    proc_destroy_all();
    free_node();
}

/* ---- waiting for exits ---- */

/* Waits on exit_cond (locked) until fn(arg) or the deadline. */
static int wait_until(bool (*fn)(const void *), const void *arg, uint64_t timeout_ms)
{
    node_t *n = &sched_node;
    uint64_t deadline = sched_now_ns() + timeout_ms * 1000000u;
    /* Seq_cst: pairs with notify_exit's load (see process.c). */
    atomic_fetch_add_explicit(&n->exit_waiters, 1, memory_order_seq_cst);
    int rc = GD_OK;
    pthread_mutex_lock(&n->exit_lock);
    while (!fn(arg)) {
        uint64_t now = sched_now_ns();
        if (now >= deadline) {
            rc = GD_EAGAIN;
            break;
        }
        /* Short steps: a backstop for a notification that raced the
         * check (the condition is read outside the lock's protection). */
        uint64_t step = deadline - now < 10000000u ? deadline - now : 10000000u;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + step;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        (void)pthread_cond_timedwait(&n->exit_cond, &n->exit_lock, &ts);
    }
    pthread_mutex_unlock(&n->exit_lock);
    atomic_fetch_sub_explicit(&n->exit_waiters, 1, memory_order_seq_cst);
    return rc;
}

typedef struct pids_arg {
    const term_t *pids;
    size_t n;
} pids_arg_t;

static bool all_dead(const void *varg)
{
    const pids_arg_t *a = varg;
    for (size_t i = 0; i < a->n; i++)
        if (!proc_exit_done(a->pids[i]))
            return false;
    return true;
}

int sched_wait_exit(const term_t *pids, size_t n, uint64_t timeout_ms)
{
    pids_arg_t a = {pids, n};
    return wait_until(all_dead, &a, timeout_ms);
}

static bool count_at_most(const void *varg)
{
    return sched_process_count() <= *(const uint32_t *)varg;
}

int sched_wait_count(uint32_t count, uint64_t timeout_ms)
{
    return wait_until(count_at_most, &count, timeout_ms);
}

void sched_stats(sched_stats_t *out)
{
    node_t *n = &sched_node;
    /* Statistics: relaxed (nrqs acquire as everywhere). */
    out->schedulers = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    out->steals = atomic_load_explicit(&n->steals, memory_order_relaxed);
    out->stuck_marks = atomic_load_explicit(&n->stuck_marks, memory_order_relaxed);
    out->extra_started = atomic_load_explicit(&n->extra_started, memory_order_relaxed);
    out->watchdog_wakeups = atomic_load_explicit(&n->wd_wakeups, memory_order_relaxed);
    out->reductions = atomic_load_explicit(&n->stat_reductions_other, memory_order_relaxed);
    out->messages = atomic_load_explicit(&n->stat_messages_other, memory_order_relaxed);
    for (unsigned i = 0; n->rqs != NULL && i < out->schedulers; i++) {
        out->reductions += atomic_load_explicit(&n->rqs[i].stat_reductions, memory_order_relaxed);
        out->messages += atomic_load_explicit(&n->rqs[i].stat_messages, memory_order_relaxed);
    }
}

unsigned sched_scheduler_stats(sched_scheduler_stats_t *out, unsigned cap)
{
    node_t *n = &sched_node;
    if (!node_running())
        return 0;
    unsigned nrqs = atomic_load_explicit(&n->nrqs, memory_order_acquire);
    if (nrqs > cap)
        nrqs = cap;
    for (unsigned i = 0; i < nrqs; i++) {
        runq_t *rq = &n->rqs[i];
        /* Relaxed: statistics, read without the queue's lock. */
        for (unsigned q = 0; q < RQ_PRIOS; q++)
            out[i].runq_len[q] = atomic_load_explicit(&rq->plen[q], memory_order_relaxed);
        out[i].reductions = atomic_load_explicit(&rq->stat_reductions, memory_order_relaxed);
        out[i].messages = atomic_load_explicit(&rq->stat_messages, memory_order_relaxed);
    }
    return nrqs;
}
