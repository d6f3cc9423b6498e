/*
 * live.c — live figures for the progress line while recorders run on many
 * threads.  Every slot is written by one thread only, so an update is a
 * relaxed load and a relaxed store (no locked instruction); the reader
 * loads every counter of every slot, sums them, and subtracts the sums it
 * saw on its previous call.  Coherence of each atomic object means the
 * reader never sees a counter go backwards, so every difference is the
 * number of completions that landed in between: each completion is counted
 * in exactly one window.  A window's histogram, operations and errors are
 * read at slightly different moments and may disagree by the completions
 * of that instant; the next window makes up for it.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

#define LIVE_MAX_SLOTS 4096

typedef struct slot {
    /* Relaxed: single writer; a counter publishes no other memory. */
    _Atomic uint64_t ops, errors, sum_ns;
    _Atomic uint64_t counts[BENCH_HIST_BUCKETS];
} __attribute__((aligned(64))) live_slot_t;

GD_STATIC_ASSERT(sizeof(_Atomic uint64_t) == sizeof(uint64_t),
                 "bucket counters are addressed as an array of 8-byte words");

struct bench_live {
    unsigned n;
    live_slot_t *slots;
    /* the reader's previous sums */
    uint64_t ops, errors, sum_ns;
    uint64_t counts[BENCH_HIST_BUCKETS];
};

int bench_live_new(unsigned slots, bench_live_t **out)
{
    if (slots == 0 || slots > LIVE_MAX_SLOTS)
        return GD_EINVAL;
    bench_live_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return GD_ENOMEM;
    l->slots = aligned_alloc(64, slots * sizeof *l->slots);
    if (l->slots == NULL) {
        free(l);
        return GD_ENOMEM;
    }
    memset(l->slots, 0, slots * sizeof *l->slots); /* all-zero bits: counters at 0 */
    l->n = slots;
    *out = l;
    return 0;
}

void bench_live_free(bench_live_t *l)
{
    if (l == NULL)
        return;
    free(l->slots);
    free(l);
}

/* One writer per counter: a load and a store make the increment. */
static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

void bench_live_record(bench_live_t *l, unsigned slot, uint64_t latency_ns, bool ok)
{
    if (slot >= l->n)
        return;
    live_slot_t *s = &l->slots[slot];
    bump(&s->counts[bench_hist_index(latency_ns)], 1);
    bump(&s->sum_ns, latency_ns > BENCH_HIST_MAX_NS ? BENCH_HIST_MAX_NS : latency_ns);
    if (!ok)
        bump(&s->errors, 1);
    bump(&s->ops, 1);
}

/* The sum of one counter over all slots. */
static uint64_t sum_slots(const bench_live_t *l, size_t offset)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < l->n; i++) {
        _Atomic uint64_t *c = (_Atomic uint64_t *)((char *)&l->slots[i] + offset);
        t += atomic_load_explicit(c, memory_order_relaxed);
    }
    return t;
}

void bench_live_window(bench_live_t *l, bench_hist_t *w, uint64_t *ops, uint64_t *errors)
{
    bench_hist_reset(w);
    uint64_t now_ops = sum_slots(l, offsetof(live_slot_t, ops));
    uint64_t now_err = sum_slots(l, offsetof(live_slot_t, errors));
    uint64_t now_sum = sum_slots(l, offsetof(live_slot_t, sum_ns));
    *ops = now_ops - l->ops;
    *errors = now_err - l->errors;
    l->ops = now_ops;
    l->errors = now_err;
    /* unsigned differences: the sums only grow (wrapping after 2^64 ns of
     * latency keeps the difference right) */
    w->sum_ns = now_sum - l->sum_ns;
    l->sum_ns = now_sum;
    bool any = false;
    for (uint32_t b = 0; b < BENCH_HIST_BUCKETS; b++) {
        uint64_t c = sum_slots(l, offsetof(live_slot_t, counts) + b * sizeof(uint64_t));
        uint64_t d = c - l->counts[b];
        l->counts[b] = c;
        if (d == 0)
            continue;
        w->counts[b] = d;
        w->count += d;
        if (!any)
            w->min_ns = bench_hist_bucket_low(b);
        any = true;
        uint64_t hi = bench_hist_bucket_high(b);
        w->max_ns = hi > BENCH_HIST_MAX_NS ? BENCH_HIST_MAX_NS : hi;
    }
}
