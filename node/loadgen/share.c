/*
 * share.c — a share of a run's clients on one node: the client processes,
 * their recorders, and the master process that reports to the
 * coordinator.
 *
 * Clients are behaviour processes, not coroutines: a million of them must
 * fit (an idle behaviour process costs about 500 bytes, a coroutine about
 * 4.6 KB), and a client has nothing to keep on a stack between a reply and
 * the next request.  Each keeps one request outstanding.  Closed loop: the
 * next request leaves when the reply came.  Open loop: requests are due at
 * fixed intended times (the rate divided over the clients) and latency is
 * measured from the intended time, so a stalled target or client shows as
 * latency instead of being hidden (no coordinated omission).
 *
 * The master (a coroutine process) spawns the clients, sends the
 * coordinator a progress message each interval, and when every client is
 * done (or the grace after the end has passed: then it stops the rest and
 * counts their outstanding requests as lost) sends the merged series.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "internal.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void share_free(lg_share_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < LG_SHARDS; i++) {
        bench_series_free(s->shard[i].series);
        pthread_mutex_destroy(&s->shard[i].lock);
    }
    if (s->bin != NULL)
        heap_binary_unref(s->bin);
    bench_live_free(s->live);
    free(s->window);
    free(s->cl);
    free(s->pids);
    free(s);
}

/* ---- the clients ---- */

static void record(lg_share_t *s, lg_client_t *c, uint64_t done, uint64_t ops, bool ok)
{
    /* A round trip completed after the end is checked (a wrong one still
     * counts as an error) but not counted in the throughput or latency:
     * the run measures [warm-up end, end), as an Erlang load generator
     * counting the round trips that finish in that window does (up to one
     * reply per client would otherwise be added to the duration's ops). */
    if (ok && done >= s->end_ns)
        return;
    unsigned k = c->index % LG_SHARDS;
    pthread_mutex_lock(&s->shard[k].lock);
    for (uint64_t i = 0; i < ops; i++) {
        /* Out of memory drops the sample; the run still ends. */
        int rc = bench_series_record(s->shard[k].series, c->sent_ns, done, ok);
        (void)rc;
        bench_live_record(s->live, k, done > c->sent_ns ? done - c->sent_ns : 0, ok);
    }
    pthread_mutex_unlock(&s->shard[k].lock);
}

/* The client's exit: its figures are final. */
static int client_finish(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c)
{
    if (c->outstanding)
        atomic_fetch_add(&s->lost, c->ops);
    c->outstanding = false;
    atomic_store_explicit(&c->done, true, memory_order_release);
    atomic_fetch_add(&s->exited, 1);
    return sched_exit(ctx, heap_atom("normal"));
}

static int client_send(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload,
                       uint64_t sent_ns)
{
    c->seq++;
    c->sent_ns = sent_ns;
    int n = s->p.workload->send(ctx, s, c, payload);
    if (n < 0)
        return n;
    c->ops = (uint32_t)n;
    c->outstanding = true;
    return 0;
}

/* What a client does when it is free: send now, wait for its next
 * intended time (open loop), or exit once the run's end has passed. */
static int client_next(sched_ctx_t *ctx, lg_share_t *s, lg_client_t *c, term_t payload)
{
    uint64_t now = now_ns();
    if (now >= s->end_ns)
        return client_finish(ctx, s, c);
    if (s->open_interval_ns == 0)
        return client_send(ctx, s, c, payload, now);
    if (c->next_ns <= now) {
        uint64_t intended = c->next_ns;
        c->next_ns += s->open_interval_ns;
        return client_send(ctx, s, c, payload, intended);
    }
    /* Round up: a timer never fires early, and one that fires a little
     * late costs latency, which is measured from the intended time. */
    sched_set_timeout(ctx, (int64_t)((c->next_ns - now + 999999) / 1000000));
    return 0;
}

static lg_share_t *state_share(term_t state, lg_client_t **c, term_t *payload)
{
    const term_t *e = term_tuple_elems(state);
    lg_share_t *s = lg_term_ptr(e[0]);
    *c = &s->cl[term_small_value(e[1])];
    *payload = e[2];
    return s;
}

/* arg {SharePtr, Index}; state {SharePtr, Index, Payload}. */
static int client_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    const term_t *a = term_tuple_elems(arg);
    lg_share_t *s = lg_term_ptr(a[0]);
    term_t payload, *e;
    int rc = lg_payload_build(s, sched_heap(ctx), &payload);
    if (rc == 0)
        rc = heap_make_tuple(sched_heap(ctx), 3, &e, state);
    if (rc != 0)
        return rc;
    e[0] = a[0];
    e[1] = a[1];
    e[2] = payload;
    /* Nothing is sent before the master's go: every client of the share
     * starts at once, after all are spawned (a million take seconds). */
    return 0;
}

static int client_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    lg_client_t *c;
    term_t payload;
    lg_share_t *s = state_share(*state, &c, &payload);
    if (msg == s->atom.timeout)
        return c->outstanding ? 0 : client_next(ctx, s, c, payload);
    if (msg == s->atom.stop)
        return client_finish(ctx, s, c);
    if (msg == s->atom.go) {
        /* Open loop: spread the clients' first sends over one interval. */
        c->next_ns = s->start_ns + s->open_interval_ns * c->index / s->clients;
        return client_next(ctx, s, c, payload);
    }
    uint64_t missing = 0;
    enum lg_verdict v = s->p.workload->check(ctx, s, c, payload, msg, &missing);
    uint64_t done = now_ns();
    switch (v) {
    case LG_REPLY_UNRELATED:
        return 0;
    case LG_REPLY_LATE:
        /* A reply to an earlier request again (a duplicate, or one
         * overtaken): out of order; the awaited one is still due. */
        atomic_fetch_add(&s->misordered, 1);
        return 0;
    case LG_REPLY_OK:
        record(s, c, done, c->ops, true);
        break;
    case LG_REPLY_WRONG:
        record(s, c, done, c->ops, false);
        break;
    case LG_REPLY_SHORT:
        atomic_fetch_add(&s->lost, missing);
        record(s, c, done, c->ops - missing, true);
        break;
    }
    c->outstanding = false;
    return client_next(ctx, s, c, payload);
}

static const sched_behaviour_t client_beh = {client_init, client_handle, NULL, NULL};

/* ---- the master ---- */

static bool pred_none(term_t msg, void *arg)
{
    (void)msg, (void)arg;
    return false;
}

static int sleep_ms(sched_ctx_t *ctx, int64_t ms)
{
    term_t msg;
    int rc = sched_receive_wait(ctx, pred_none, NULL, ms, &msg);
    return rc == SCHED_ETIMEOUT ? 0 : rc;
}

/* A binary of n bytes on h whose bytes the caller writes. */
static int make_bin(heap_t *h, size_t n, uint8_t **data, term_t *out)
{
    return heap_make_bitstring_uninit(h, n * 8, data, out);
}

/* Sends {Tag, Index, A, B, C} to the coordinator (slot rooted). */
static int report(sched_ctx_t *ctx, const term_t *coord, const char *tag, lg_share_t *s, term_t a,
                  term_t b, term_t c)
{
    term_t *e, msg;
    int rc = heap_make_tuple(sched_heap(ctx), 5, &e, &msg);
    if (rc != 0)
        return rc;
    e[0] = heap_atom(tag);
    e[1] = term_make_small(s->index);
    e[2] = a;
    e[3] = b;
    e[4] = c;
    return sched_send(ctx, *coord, msg);
}

static int send_progress(sched_ctx_t *ctx, const term_t *coord, lg_share_t *s)
{
    uint64_t ops, errors;
    bench_live_window(s->live, s->window, &ops, &errors);
    size_t n = bench_hist_encoded_size(s->window), len;
    uint8_t *data;
    term_t bin;
    int rc = make_bin(sched_heap(ctx), n, &data, &bin);
    if (rc == 0)
        rc = bench_hist_encode(s->window, data, n, &len);
    if (rc != 0)
        return rc;
    return report(ctx, coord, "girder_bench_progress", s, term_make_small((int64_t)ops),
                  term_make_small((int64_t)errors), bin);
}

/* Every shard's series in one, encoded as a binary on the heap. */
static int merged_series(sched_ctx_t *ctx, lg_share_t *s, term_t *out)
{
    bench_series_t *all = NULL;
    int rc = bench_series_new(s->measure_ns, s->p.interval_ms * 1000000, &all);
    for (size_t i = 0; rc == 0 && i < LG_SHARDS; i++)
        rc = bench_series_merge(all, s->shard[i].series);
    uint8_t *enc = NULL, *data;
    size_t len = 0;
    if (rc == 0)
        rc = bench_series_encode(all, &enc, &len);
    bench_series_free(all);
    if (rc == 0 && (rc = make_bin(sched_heap(ctx), len, &data, out)) == 0)
        memcpy(data, enc, len);
    free(enc);
    return rc;
}

static bool all_done(lg_share_t *s)
{
    return atomic_load(&s->exited) >= s->clients;
}

/* After the grace: stop the clients still waiting (their outstanding
 * requests count lost), then kill what does not stop; true once every
 * client is gone (only then may the share be freed). */
static bool stop_stragglers(sched_ctx_t *ctx, lg_share_t *s)
{
    term_t stop = heap_atom("girder_bench_stop");
    for (uint64_t i = 0; i < s->clients; i++)
        if (!atomic_load_explicit(&s->cl[i].done, memory_order_acquire) &&
            sched_send(ctx, s->pids[i], stop) != 0)
            return false;
    for (int tries = 0; tries < 200 && !all_done(s); tries++)
        if (sleep_ms(ctx, 10) != 0)
            return false;
    if (all_done(s))
        return true;
    for (uint64_t i = 0; i < s->clients; i++)
        if (!atomic_load_explicit(&s->cl[i].done, memory_order_acquire) &&
            sched_exit_pid(ctx, s->pids[i], heap_atom("kill")) != 0)
            return false;
    for (int tries = 0; tries < 500; tries++) {
        bool alive = false;
        for (uint64_t i = 0; i < s->clients && !alive; i++)
            alive = !atomic_load(&s->cl[i].done) && sched_is_alive(s->pids[i]);
        if (!alive) {
            /* Killed ones never finished: their outstanding requests are
             * lost. */
            for (uint64_t i = 0; i < s->clients; i++)
                if (!atomic_load(&s->cl[i].done) && s->cl[i].outstanding)
                    atomic_fetch_add(&s->lost, s->cl[i].ops);
            return true;
        }
        if (sleep_ms(ctx, 10) != 0)
            return false;
    }
    return false;
}

static int spawn_clients(sched_ctx_t *ctx, lg_share_t *s)
{
    sched_stats_t st;
    sched_stats(&st);
    unsigned nsched = st.schedulers ? st.schedulers : 1;
    for (uint64_t i = 0; i < s->clients; i++) {
        term_t *e, arg;
        int rc = heap_make_tuple(sched_heap(ctx), 2, &e, &arg);
        if (rc != 0)
            return rc;
        e[0] = lg_ptr_term(s);
        e[1] = term_make_small((int64_t)i);
        /* Spread over the schedulers from the start (stealing would get
         * there, after the warm-up has begun). */
        sched_spawn_opts_t so = {.scheduler = (int)(i % nsched) + 1};
        rc = sched_spawn_opt(ctx, &client_beh, arg, &so, &s->pids[i], NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The run's times, counted from now, the recorders, and the go to every
 * client. */
static int start_clock(sched_ctx_t *ctx, lg_share_t *s)
{
    uint64_t now = now_ns();
    s->start_ns = now;
    s->measure_ns = now + s->p.warmup_ms * 1000000;
    s->end_ns = s->measure_ns + s->p.duration_ms * 1000000;
    s->stop_ns = s->end_ns + (uint64_t)LG_GRACE_MS * 1000000;
    for (size_t i = 0; i < LG_SHARDS; i++) {
        int rc = bench_series_new(s->measure_ns, s->p.interval_ms * 1000000, &s->shard[i].series);
        if (rc != 0)
            return rc;
    }
    term_t go = heap_atom("girder_bench_go");
    for (uint64_t i = 0; i < s->clients; i++) {
        int rc = sched_send(ctx, s->pids[i], go);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* arg {SharePtr, Coordinator}. */
static int master_main(sched_ctx_t *ctx, term_t arg)
{
    lg_share_t *s = lg_term_ptr(term_tuple_elems(arg)[0]);
    term_t coord = term_tuple_elems(arg)[1];
    int rc = sched_root_push(ctx, &coord);
    if (rc != 0)
        return rc; /* the coordinator's deadline reports it */
    rc = spawn_clients(ctx, s);
    if (rc == 0)
        rc = start_clock(ctx, s);
    if (rc != 0) {
        /* The clients spawned wait for a go that never comes: stop them. */
        bool gone = stop_stragglers(ctx, s);
        (void)report(ctx, &coord, "girder_bench_failed", s, heap_atom("start_failed"),
                     term_make_small(rc), TERM_NIL);
        sched_root_pop(ctx, 1);
        if (gone)
            share_free(s);
        return 0;
    }
    uint64_t interval = s->p.interval_ms * 1000000, next = s->start_ns + interval;
    uint64_t exited = 0, last_change = 0;
    while (!all_done(s) && now_ns() < s->stop_ns) {
        uint64_t now = now_ns();
        /* Replies still arriving after the end (clients finishing) put
         * the point where the rest count lost further out. */
        uint64_t e = atomic_load(&s->exited);
        if (e != exited) {
            exited = e;
            last_change = now;
        }
        uint64_t latest = s->end_ns + (uint64_t)LG_GRACE_MAX_MS * 1000000;
        if (now > s->end_ns && last_change + (uint64_t)LG_GRACE_MS * 1000000 > s->stop_ns)
            s->stop_ns = last_change + (uint64_t)LG_GRACE_MS * 1000000 < latest
                             ? last_change + (uint64_t)LG_GRACE_MS * 1000000
                             : latest;
        if (now >= next) {
            if ((rc = send_progress(ctx, &coord, s)) != 0)
                break;
            while (next <= now) /* one report for intervals missed (a long spawn) */
                next += interval;
            continue;
        }
        uint64_t wait = next - now < 50000000 ? next - now : 50000000;
        if ((rc = sleep_ms(ctx, (int64_t)((wait + 999999) / 1000000))) != 0)
            break;
    }
    bool gone = all_done(s) || stop_stragglers(ctx, s);
    term_t series = TERM_NIL;
    if (rc == 0 && gone)
        rc = merged_series(ctx, s, &series);
    if (rc == 0 && gone)
        rc = report(ctx, &coord, "girder_bench_done", s, series,
                    term_make_small((int64_t)atomic_load(&s->lost)),
                    term_make_small((int64_t)atomic_load(&s->misordered)));
    else
        (void)report(ctx, &coord, "girder_bench_failed", s,
                     heap_atom(gone ? "report_failed" : "clients_would_not_stop"),
                     term_make_small(rc), TERM_NIL);
    sched_root_pop(ctx, 1);
    if (gone)
        share_free(s);
    return 0;
}

int lg_share_start(sched_ctx_t *ctx, const lg_params_t *p, uint64_t clients, uint32_t share_index,
                   term_t coordinator)
{
    if (p->workload == NULL || clients == 0 || clients > LG_CLIENTS_MAX || p->interval_ms == 0)
        return GD_EINVAL;
    lg_share_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return GD_ENOMEM;
    s->p = *p;
    s->clients = clients;
    s->index = share_index;
    if (lg_atoms_init(&s->atom) != 0) {
        free(s);
        return GD_ENOMEM;
    }
    if (strcmp(p->workload->name, "rpc") == 0) {
        size_t ml, fl;
        const char *m = heap_atom_text(p->mfa_m, &ml), *f = heap_atom_text(p->mfa_f, &fl);
        if (ml == 6 && memcmp(m, "girder", 6) == 0 && fl == 4 && memcmp(f, "echo", 4) == 0 &&
            p->mfa_arity == 1)
            s->rpc_check = LG_RPC_PAYLOAD;
        else if (ml == 6 && memcmp(m, "erlang", 6) == 0 && fl == 4 && memcmp(f, "node", 4) == 0 &&
                 p->mfa_arity == 0)
            s->rpc_check = LG_RPC_TARGET;
    }
    int rc = GD_ENOMEM;
    for (size_t i = 0; i < LG_SHARDS; i++)
        pthread_mutex_init(&s->shard[i].lock, NULL);
    s->cl = calloc(clients, sizeof *s->cl);
    s->pids = calloc(clients, sizeof *s->pids);
    s->window = malloc(sizeof *s->window);
    if (s->cl == NULL || s->pids == NULL || s->window == NULL)
        goto fail;
    if (p->payload_shape == LG_PAYLOAD_BINARY && p->payload_size > HEAP_BIN_MAX_BYTES) {
        if ((s->bin = heap_binary_new(p->payload_size)) == NULL)
            goto fail;
        for (uint64_t i = 0; i < p->payload_size; i++)
            s->bin->data[i] = (uint8_t)('a' + i % 26);
    }
    for (uint64_t i = 0; i < clients; i++)
        s->cl[i].index = (uint32_t)i;
    if (p->rate_per_s > 0) {
        /* Every client of every share sends at the same rate: the total
         * rate over the total clients. */
        double total = p->clients ? (double)p->clients : (double)clients;
        s->open_interval_ns = (uint64_t)fmax(1.0, 1e9 * total / p->rate_per_s);
    }
    if ((rc = bench_live_new(LG_SHARDS, &s->live)) != 0)
        goto fail;
    heap_t scratch;
    if ((rc = heap_init(&scratch, 16)) != 0)
        goto fail;
    term_t *e, arg, pid;
    rc = heap_make_tuple(ctx ? sched_heap(ctx) : &scratch, 2, &e, &arg);
    if (rc == 0) {
        e[0] = lg_ptr_term(s);
        e[1] = coordinator;
        /* High priority: with a million runnable clients a normal
         * process would report progress only after all of them ran. */
        sched_spawn_opts_t so = {.priority = SCHED_PRIO_HIGH};
        rc = sched_spawn_coro_opt(ctx, master_main, arg, &so, &pid, NULL);
    }
    heap_destroy(&scratch);
    if (rc == 0)
        return 0;
fail:
    share_free(s);
    return rc;
}
