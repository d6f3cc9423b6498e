/*
 * sched_test_util.c — shared test helpers for tests/sched (see the header).
 */
#include "sched_test_util.h"

#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static heap_t test_heap;
static bool test_heap_ready;

uint64_t st_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void st_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

void st_start_heap_only(void)
{
    CU_ASSERT_FATAL(heap_init(&test_heap, 0) == GD_OK);
    test_heap_ready = true;
    st_log_reset();
}

void st_start(unsigned schedulers)
{
    sched_opts_t o = {.schedulers = schedulers};
    CU_ASSERT_FATAL(sched_start(&o) == GD_OK);
    st_start_heap_only();
}

void st_stop(void)
{
    sched_stop();
    if (test_heap_ready)
        heap_destroy(&test_heap);
    test_heap_ready = false;
}

term_t st_atom(const char *text)
{
    /* No CUnit assert: callbacks call this on scheduler threads. */
    term_t a;
    if (heap_atom_put(text, strlen(text), &a) != GD_OK)
        abort();
    return a;
}

term_t st_tuple(size_t n, ...)
{
    term_t *e, t;
    CU_ASSERT_FATAL(heap_make_tuple(&test_heap, n, &e, &t) == GD_OK);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        e[i] = va_arg(ap, term_t);
    va_end(ap);
    return t;
}

void st_send(term_t to, term_t msg)
{
    CU_ASSERT_FATAL(sched_send(NULL, to, msg) == GD_OK);
}

/* ---- the log ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    st_rec_t *recs;
    size_t n, cap;
} lg = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

void st_log_reset(void)
{
    pthread_mutex_lock(&lg.lock);
    free(lg.recs);
    lg.recs = NULL;
    lg.n = lg.cap = 0;
    pthread_mutex_unlock(&lg.lock);
}

static void log_add(st_rec_t r)
{
    pthread_mutex_lock(&lg.lock);
    if (lg.n == lg.cap) {
        size_t cap = lg.cap ? lg.cap * 2 : 64;
        st_rec_t *nr = realloc(lg.recs, cap * sizeof *nr);
        if (nr == NULL) {
            pthread_mutex_unlock(&lg.lock);
            abort();
        }
        lg.recs = nr;
        lg.cap = cap;
    }
    lg.recs[lg.n++] = r;
    pthread_cond_broadcast(&lg.cond);
    pthread_mutex_unlock(&lg.lock);
}

bool st_log_wait(size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    bool ok = true;
    pthread_mutex_lock(&lg.lock);
    while (lg.n < n)
        if (pthread_cond_timedwait(&lg.cond, &lg.lock, &ts) != 0) {
            ok = lg.n >= n;
            break;
        }
    pthread_mutex_unlock(&lg.lock);
    return ok;
}

st_rec_t st_log_get(size_t i)
{
    pthread_mutex_lock(&lg.lock);
    CU_ASSERT_FATAL(i < lg.n);
    st_rec_t r = lg.recs[i];
    pthread_mutex_unlock(&lg.lock);
    return r;
}

size_t st_log_len(void)
{
    pthread_mutex_lock(&lg.lock);
    size_t n = lg.n;
    pthread_mutex_unlock(&lg.lock);
    return n;
}

bool st_log_of(term_t self, size_t i, st_rec_t *out)
{
    uint64_t end = st_now_ns() + 5000000000u;
    for (;;) {
        size_t seen = 0;
        pthread_mutex_lock(&lg.lock);
        for (size_t k = 0; k < lg.n; k++)
            if (lg.recs[k].self == self && seen++ == i) {
                *out = lg.recs[k];
                pthread_mutex_unlock(&lg.lock);
                return true;
            }
        pthread_mutex_unlock(&lg.lock);
        if (st_now_ns() > end)
            return false;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

bool st_log_find(term_t self, enum st_kind kind, st_rec_t *out)
{
    bool found = false;
    pthread_mutex_lock(&lg.lock);
    for (size_t i = 0; i < lg.n && !found; i++)
        if (lg.recs[i].self == self && lg.recs[i].kind == kind) {
            *out = lg.recs[i];
            found = true;
        }
    pthread_mutex_unlock(&lg.lock);
    return found;
}

/* ---- the observer ---- */

static bool is_tuple_of(term_t t, size_t n)
{
    return term_is_tuple(t) && term_tuple_arity(t) == n;
}

static int obs_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    *state = term_make_small(0);
    return GD_OK;
}

static void obs_terminate(sched_ctx_t *ctx, term_t reason, term_t state)
{
    log_add((st_rec_t){sched_self(ctx), ST_TERMINATE, TERM_NIL,
                       term_is_immediate(reason) ? reason : TERM_NONE, false});
}

static int obs_command(sched_ctx_t *ctx, term_t cmd, term_t *e, size_t n, term_t *state,
                       bool *handled)
{
    *handled = true;
    term_t self = sched_self(ctx);
    int rc = GD_OK;
    if (cmd == st_atom("link") && n == 2)
        return sched_link(ctx, e[1]);
    if (cmd == st_atom("unlink") && n == 2)
        return sched_unlink(ctx, e[1]);
    if (cmd == st_atom("monitor") && n == 2) {
        term_t ref;
        rc = sched_monitor(ctx, e[1], &ref);
        if (rc == GD_OK)
            rc = sched_dict_put(ctx, st_atom("last_ref"), ref, NULL);
        return rc;
    }
    if (cmd == st_atom("demonitor") && n == 2)
        return sched_demonitor(ctx, sched_dict_get(ctx, st_atom("last_ref")));
    if (cmd == st_atom("trap") && n == 2) {
        sched_trap_exit(ctx, e[1] == st_atom("true"));
        return GD_OK;
    }
    if (cmd == st_atom("exit_to") && n == 3)
        return sched_exit_pid(ctx, e[1], e[2]);
    if (cmd == st_atom("die") && n == 2)
        return sched_exit(ctx, e[1]);
    if (cmd == st_atom("register") && n == 2)
        return sched_register(ctx, e[1]);
    if (cmd == st_atom("send") && n == 3)
        return sched_send(ctx, e[1], e[2]);
    if (cmd == st_atom("put") && n == 3) {
        term_t old;
        rc = sched_dict_put(ctx, e[1], e[2], &old);
        log_add((st_rec_t){self, ST_VALUE, e[1], old, false});
        return rc;
    }
    if (cmd == st_atom("get") && n == 2) {
        log_add((st_rec_t){self, ST_VALUE, e[1], sched_dict_get(ctx, e[1]), false});
        return GD_OK;
    }
    if (cmd == st_atom("erase") && n == 2) {
        log_add((st_rec_t){self, ST_VALUE, e[1], sched_dict_erase(ctx, e[1]), false});
        return GD_OK;
    }
    if ((cmd == st_atom("spawn_link") || cmd == st_atom("spawn_monitor")) && n == 2) {
        term_t child, ref;
        if (cmd == st_atom("spawn_link")) {
            rc = sched_spawn_link(ctx, &st_observer, TERM_NIL, &child);
        } else {
            rc = sched_spawn_monitor(ctx, &st_observer, TERM_NIL, &child, &ref);
            if (rc == GD_OK)
                rc = sched_dict_put(ctx, st_atom("last_ref"), ref, NULL);
        }
        if (rc == GD_OK)
            log_add((st_rec_t){self, ST_MSG, st_atom("child"), child, false});
        return rc;
    }
    if (cmd == st_atom("grow") && n == 2 && term_is_small(e[1])) {
        for (int64_t i = 0; i < term_small_value(e[1]); i++) {
            term_t cell;
            rc = heap_cons(sched_heap(ctx), term_make_small(i), *state, &cell);
            if (rc != GD_OK)
                return rc;
            *state = cell;
        }
        return GD_OK;
    }
    *handled = false;
    return GD_OK;
}

bool st_term_eq(term_t a, term_t b)
{
    int order;
    return heap_compare_checked(a, b, true, &order) == GD_OK && order == 0;
}

static int obs_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    term_t self = sched_self(ctx);
    if (msg == st_atom("crash"))
        return GD_EBADARG;
    if (is_tuple_of(msg, 3) && term_tuple_elems(msg)[0] == st_atom("EXIT")) {
        term_t *e = term_tuple_elems(msg);
        log_add((st_rec_t){self, ST_EXIT, e[1], term_is_immediate(e[2]) ? e[2] : TERM_NONE, false});
        return GD_OK;
    }
    if (is_tuple_of(msg, 5) && term_tuple_elems(msg)[0] == st_atom("DOWN")) {
        term_t *e = term_tuple_elems(msg);
        term_t last = sched_dict_get(ctx, st_atom("last_ref"));
        term_t item = e[3];
        if (is_tuple_of(item, 2))
            item = term_tuple_elems(item)[0];
        log_add((st_rec_t){self, ST_DOWN, item, term_is_immediate(e[4]) ? e[4] : TERM_NONE,
                           st_term_eq(last, e[1])});
        return GD_OK;
    }
    if (term_is_tuple(msg) && term_tuple_arity(msg) >= 2 &&
        term_is_atom(term_tuple_elems(msg)[0])) {
        bool handled;
        int rc = obs_command(ctx, term_tuple_elems(msg)[0], term_tuple_elems(msg),
                             term_tuple_arity(msg), state, &handled);
        if (handled)
            return rc;
        if (is_tuple_of(msg, 2)) {
            log_add((st_rec_t){self, ST_MSG, term_tuple_elems(msg)[0], term_tuple_elems(msg)[1],
                               false});
            return GD_OK;
        }
    }
    log_add((st_rec_t){self, ST_MSG, term_is_immediate(msg) ? msg : TERM_NONE, TERM_NIL, false});
    return GD_OK;
}

const sched_behaviour_t st_observer = {obs_init, obs_handle, obs_terminate, NULL};

term_t st_spawn_observer_opt(const sched_spawn_opts_t *opts)
{
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &st_observer, TERM_NIL, opts, &pid, NULL) == GD_OK);
    return pid;
}

term_t st_spawn_observer(void)
{
    return st_spawn_observer_opt(NULL);
}

void st_wait_dead(term_t pid)
{
    CU_ASSERT(sched_wait_exit(&pid, 1, 5000) == GD_OK);
}

bool st_wait_idle(term_t pid)
{
    uint64_t end = st_now_ns() + 5000000000u;
    while (st_now_ns() < end) {
        sched_process_info_t info;
        if (sched_process_info(pid, &info) != GD_OK)
            return false;
        if (info.status == SCHED_STATUS_WAITING)
            return true;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* ---- the probe ---- */

static uint64_t probe_sent[ST_PROBE_MAX], probe_lat[ST_PROBE_MAX];
/* Pings handled; release after the record is written (st_probe_wait's
 * acquire load then sees it). */
static _Atomic size_t probe_n;

static int probe_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx, (void)arg, (void)state;
    return GD_OK;
}

static int probe_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx, (void)state;
    uint64_t now = st_now_ns();
    uint64_t sent = (uint64_t)term_small_value(term_tuple_elems(msg)[1]);
    size_t i = atomic_load_explicit(&probe_n, memory_order_relaxed); /* one writer */
    if (i < ST_PROBE_MAX) {
        probe_sent[i] = sent;
        probe_lat[i] = now - sent;
    }
    atomic_store_explicit(&probe_n, i + 1, memory_order_release);
    return GD_OK;
}

static const sched_behaviour_t probe_beh = {probe_init, probe_handle, NULL, NULL};

term_t st_probe_spawn(const sched_spawn_opts_t *opts)
{
    atomic_store(&probe_n, 0);
    term_t pid;
    CU_ASSERT_FATAL(sched_spawn_opt(NULL, &probe_beh, TERM_NIL, opts, &pid, NULL) == GD_OK);
    return pid;
}

void st_probe_ping(term_t probe)
{
    st_send(probe, st_tuple(2, st_atom("ping"), term_make_small((int64_t)st_now_ns())));
}

bool st_probe_wait(size_t n)
{
    uint64_t end = st_now_ns() + 5000000000u;
    while (atomic_load_explicit(&probe_n, memory_order_acquire) < n && st_now_ns() < end) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return atomic_load_explicit(&probe_n, memory_order_acquire) >= n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t st_probe_latencies(uint64_t from_ns, uint64_t to_ns, uint64_t *out)
{
    size_t total = atomic_load_explicit(&probe_n, memory_order_acquire), n = 0;
    for (size_t i = 0; i < total && i < ST_PROBE_MAX; i++)
        if (probe_sent[i] >= from_ns && probe_sent[i] < to_ns)
            out[n++] = probe_lat[i];
    qsort(out, n, sizeof *out, cmp_u64);
    return n;
}
