/*
 * test_coro.c — stackful coroutines: resume/yield/return, state kept across
 * switches (callee-saved registers, floating-point control), nesting,
 * thousands alive at once, migration between threads, lazily committed
 * stacks whose pages go back to the kernel, the stack cache, argument and
 * allocation errors, and the guard page (a forked child that overflows must
 * die by SIGSEGV at the guard, never write below it).
 */
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sched/coro.h"
#include "cunit_main.h"

#define OK(expr) CU_ASSERT_EQUAL_FATAL((expr), GD_OK)

/* ---- basic resume / yield / return ---- */

typedef struct counter {
    int steps;
    int yields;
} counter_t;

static void count_and_yield(void *arg)
{
    counter_t *k = arg;
    for (int i = 0; i < k->steps; i++) {
        k->yields++;
        sched_coro_yield();
    }
}

static void test_resume_yield_return(void)
{
    counter_t k = {.steps = 5};
    sched_coro_t *c = NULL;
    OK(sched_coro_create(&c, 0, count_and_yield, &k));
    CU_ASSERT_EQUAL(k.yields, 0); /* nothing runs before the first resume */
    for (int i = 1; i <= 5; i++) {
        sched_coro_resume(c);
        CU_ASSERT_EQUAL(k.yields, i);
        CU_ASSERT_FALSE(sched_coro_done(c));
    }
    sched_coro_resume(c); /* returns from the function */
    CU_ASSERT_TRUE(sched_coro_done(c));
    CU_ASSERT_EQUAL(k.yields, 5);
    CU_ASSERT_PTR_NULL(sched_coro_current());
    sched_coro_destroy(c);
}

static void return_at_once(void *arg)
{
    *(int *)arg = 42;
}

static void test_returns_without_yield(void)
{
    int v = 0;
    sched_coro_t *c = NULL;
    OK(sched_coro_create(&c, 0, return_at_once, &v));
    sched_coro_resume(c);
    CU_ASSERT_EQUAL(v, 42);
    CU_ASSERT_TRUE(sched_coro_done(c));
    sched_coro_destroy(c);
    sched_coro_destroy(NULL); /* ignored */
}

/* ---- state across switches ---- */

/* Yields from deep in a call chain, with many live values in registers on
 * both sides: any callee-saved register the switch forgot shows up as a
 * wrong sum. */
static __attribute__((noinline)) uint64_t deep(int depth, uint64_t seed)
{
    uint64_t a = seed * 3 + 1, b = seed ^ 0x5555, c = seed + 7, d = seed * seed, e = ~seed;
    if (depth == 0) {
        sched_coro_yield();
        return a + b + c + d + e;
    }
    uint64_t r = deep(depth - 1, seed + 1);
    sched_coro_yield();
    return r + a * 2 + b * 3 + c * 5 + d * 7 + e * 11;
}

static uint64_t deep_reference(int depth, uint64_t seed)
{
    uint64_t a = seed * 3 + 1, b = seed ^ 0x5555, c = seed + 7, d = seed * seed, e = ~seed;
    if (depth == 0)
        return a + b + c + d + e;
    return deep_reference(depth - 1, seed + 1) + a * 2 + b * 3 + c * 5 + d * 7 + e * 11;
}

typedef struct deep_arg {
    int depth;
    uint64_t seed;
    uint64_t result;
} deep_arg_t;

static void run_deep(void *arg)
{
    deep_arg_t *d = arg;
    d->result = deep(d->depth, d->seed);
}

static void test_registers_survive_switches(void)
{
    enum { N = 8 };
    deep_arg_t args[N];
    sched_coro_t *c[N];
    for (int i = 0; i < N; i++) {
        args[i] = (deep_arg_t){.depth = 20 + i, .seed = (uint64_t)i * 1000003};
        OK(sched_coro_create(&c[i], 0, run_deep, &args[i]));
    }
    /* Interleave them, with the scheduler's own live values around. */
    uint64_t x = 17, y = 19, z = 23;
    bool all_done = false;
    while (!all_done) {
        all_done = true;
        for (int i = 0; i < N; i++) {
            if (!sched_coro_done(c[i])) {
                sched_coro_resume(c[i]);
                x = x * 31 + y;
                y ^= z;
                z += x;
                all_done = false;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(args[i].result, deep_reference(args[i].depth, args[i].seed));
        sched_coro_destroy(c[i]);
    }
    CU_ASSERT_NOT_EQUAL(x + y + z, 0);
}

static void rounding_up(void *arg)
{
    int *seen = arg;
    CU_ASSERT_EQUAL(fegetround(), FE_TONEAREST); /* a new coroutine starts at the default */
    fesetround(FE_UPWARD);
    sched_coro_yield();
    seen[0] = fegetround();
    /* Volatile results: the divisions may not move across fesetround. */
    volatile double one = 1.0, three = 3.0;
    volatile double up = one / three;
    fesetround(FE_DOWNWARD);
    volatile double down = one / three;
    fesetround(FE_UPWARD);
    seen[1] = up > down;
}

static void test_fp_control_travels_with_coroutine(void)
{
    int seen[2] = {-1, -1};
    sched_coro_t *c = NULL;
    OK(sched_coro_create(&c, 0, rounding_up, seen));
    sched_coro_resume(c);
    /* The coroutine's FE_UPWARD must not leak into the scheduler... */
    CU_ASSERT_EQUAL(fegetround(), FE_TONEAREST);
    sched_coro_resume(c);
    /* ...and must come back with the coroutine. */
    CU_ASSERT_EQUAL(seen[0], FE_UPWARD);
    CU_ASSERT_EQUAL(seen[1], 1);
    CU_ASSERT_EQUAL(fegetround(), FE_TONEAREST);
    CU_ASSERT_TRUE(sched_coro_done(c));
    sched_coro_destroy(c);
}

/* ---- nesting: a coroutine that is itself a scheduler ---- */

typedef struct nest {
    sched_coro_t *outer, *inner;
    int trace[8];
    int n;
} nest_t;

static void inner_body(void *arg)
{
    nest_t *t = arg;
    CU_ASSERT_PTR_EQUAL(sched_coro_current(), t->inner);
    t->trace[t->n++] = 2;
    sched_coro_yield();
    t->trace[t->n++] = 4;
}

static void outer_body(void *arg)
{
    nest_t *t = arg;
    CU_ASSERT_PTR_EQUAL(sched_coro_current(), t->outer);
    t->trace[t->n++] = 1;
    sched_coro_resume(t->inner);
    CU_ASSERT_PTR_EQUAL(sched_coro_current(), t->outer);
    t->trace[t->n++] = 3;
    sched_coro_yield(); /* back to the thread, leaving inner suspended */
    sched_coro_resume(t->inner);
    CU_ASSERT_TRUE(sched_coro_done(t->inner));
    t->trace[t->n++] = 5;
}

static void test_nested_resume(void)
{
    nest_t t = {0};
    OK(sched_coro_create(&t.outer, 0, outer_body, &t));
    OK(sched_coro_create(&t.inner, 0, inner_body, &t));
    sched_coro_resume(t.outer);
    CU_ASSERT_PTR_NULL(sched_coro_current());
    CU_ASSERT_EQUAL(t.n, 3);
    sched_coro_resume(t.outer);
    CU_ASSERT_TRUE(sched_coro_done(t.outer));
    CU_ASSERT_EQUAL(t.n, 5);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(t.trace[i], i + 1);
    sched_coro_destroy(t.inner);
    sched_coro_destroy(t.outer);
}

/* ---- many at once ---- */

typedef struct many_arg {
    uint32_t id;
    uint32_t rounds;
    uint64_t sum;
} many_arg_t;

static void many_body(void *arg)
{
    many_arg_t *m = arg;
    uint64_t local = m->id; /* lives on this coroutine's stack */
    for (uint32_t r = 0; r < m->rounds; r++) {
        local += r * (uint64_t)m->id + 1;
        sched_coro_yield();
    }
    m->sum = local;
}

/* TSan keeps ~770 KB of state per fiber (memset at creation): fewer there. */
#if defined(__SANITIZE_THREAD__)
#define MANY_ALIVE 200
#else
#define MANY_ALIVE 5000
#endif

static void test_many_alive(void)
{
    enum { N = MANY_ALIVE, ROUNDS = 10 };
    sched_coro_t **c = calloc(N, sizeof *c);
    many_arg_t *a = calloc(N, sizeof *a);
    CU_ASSERT_FATAL(c != NULL && a != NULL);
    for (uint32_t i = 0; i < N; i++) {
        a[i] = (many_arg_t){.id = i, .rounds = ROUNDS};
        OK(sched_coro_create(&c[i], 32 << 10, many_body, &a[i]));
    }
    for (int r = 0; r <= ROUNDS; r++)
        for (uint32_t i = 0; i < N; i++)
            sched_coro_resume(c[i]);
    for (uint32_t i = 0; i < N; i++) {
        CU_ASSERT_TRUE(sched_coro_done(c[i]));
        uint64_t want = i;
        for (uint32_t r = 0; r < ROUNDS; r++)
            want += r * (uint64_t)i + 1;
        CU_ASSERT_EQUAL(a[i].sum, want);
        sched_coro_destroy(c[i]);
    }
    free(c);
    free(a);
}

/* ---- migration between threads ---- */

/* pthread_self() is declared const, so the compiler may call it once per
 * function and reuse the value across a yield (errno's location likewise):
 * after a migration that value names the old thread.  A call through this
 * opaque helper is made every time. */
static __attribute__((noinline)) pthread_t current_thread(void)
{
    __asm__ volatile("" ::: "memory");
    return pthread_self();
}

typedef struct migrant {
    pthread_t where[3];
    uint64_t local_seen;
} migrant_t;

static void migrant_body(void *arg)
{
    migrant_t *m = arg;
    volatile uint64_t local = 0xC0FFEE; /* on the coroutine's stack */
    m->where[0] = current_thread();
    sched_coro_yield();
    m->where[1] = current_thread();
    local += 1;
    sched_coro_yield();
    m->where[2] = current_thread();
    m->local_seen = local;
}

static void *resume_once(void *arg)
{
    sched_coro_resume(arg);
    return NULL;
}

static void test_resume_on_another_thread(void)
{
    migrant_t m = {0};
    sched_coro_t *c = NULL;
    OK(sched_coro_create(&c, 0, migrant_body, &m));
    pthread_t a, b;
    /* Thread A runs it to its first yield; thread B resumes it (the joins
     * order the handoffs); the main thread finishes it. */
    CU_ASSERT_EQUAL_FATAL(pthread_create(&a, NULL, resume_once, c), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_join(a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&b, NULL, resume_once, c), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_join(b, NULL), 0);
    sched_coro_resume(c);
    CU_ASSERT_TRUE(sched_coro_done(c));
    CU_ASSERT_TRUE(pthread_equal(m.where[0], a));
    CU_ASSERT_TRUE(pthread_equal(m.where[1], b));
    CU_ASSERT_TRUE(pthread_equal(m.where[2], current_thread()));
    CU_ASSERT_EQUAL(m.local_seen, 0xC0FFEE + 1);
    sched_coro_destroy(c);
}

/* Two scheduler threads take turns: in each turn one thread resumes every
 * coroutine once, so every step of every coroutine runs on the other thread
 * than the step before.  No step may be lost or repeated and every
 * coroutine must see its thread change at every step. */
enum { PP_CORO = 16, PP_STEPS = 500 };

typedef struct pp_shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int turn; /* which thread resumes next */
    sched_coro_t *coro[PP_CORO];
    uint64_t steps[PP_CORO];
    uint64_t thread_changes[PP_CORO];
} pp_shared_t;

typedef struct pp_arg {
    pp_shared_t *s;
    int id;
} pp_arg_t;

typedef struct pp_thread {
    pp_shared_t *s;
    int me;
} pp_thread_t;

static void pp_body(void *arg)
{
    pp_arg_t *p = arg;
    pthread_t last = current_thread();
    for (int i = 0; i < PP_STEPS; i++) {
        p->s->steps[p->id]++;
        sched_coro_yield();
        pthread_t now = current_thread();
        if (!pthread_equal(last, now))
            p->s->thread_changes[p->id]++;
        last = now;
    }
}

static void *pp_scheduler(void *arg)
{
    pp_thread_t *t = arg;
    pp_shared_t *s = t->s;
    for (int round = 0; round < (PP_STEPS + 2) / 2; round++) {
        pthread_mutex_lock(&s->lock);
        while (s->turn != t->me)
            pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < PP_CORO; i++)
            if (!sched_coro_done(s->coro[i]))
                sched_coro_resume(s->coro[i]);
        pthread_mutex_lock(&s->lock);
        s->turn = 1 - t->me;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static void test_migrate_between_two_schedulers(void)
{
    static pp_shared_t s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pp_arg_t args[PP_CORO];
    for (int i = 0; i < PP_CORO; i++) {
        args[i] = (pp_arg_t){.s = &s, .id = i};
        OK(sched_coro_create(&s.coro[i], 0, pp_body, &args[i]));
    }
    pthread_t t[2];
    pp_thread_t ta[2] = {{&s, 0}, {&s, 1}};
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, pp_scheduler, &ta[i]), 0);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < PP_CORO; i++) {
        CU_ASSERT_TRUE(sched_coro_done(s.coro[i]));
        CU_ASSERT_EQUAL(s.steps[i], PP_STEPS);
        CU_ASSERT_EQUAL(s.thread_changes[i], PP_STEPS);
        sched_coro_destroy(s.coro[i]);
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
}

/* ---- stacks: lazy commit, cache, memory returned ---- */

/* Number of resident pages of [p, p + len). */
static size_t resident_pages(void *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = len / page;
    unsigned char *vec = malloc(n);
    CU_ASSERT_FATAL(vec != NULL);
    CU_ASSERT_EQUAL_FATAL(mincore(p, len, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += vec[i] & 1;
    free(vec);
    return r;
}

typedef struct toucher {
    size_t bytes;
    char *lowest; /* lowest address touched */
} toucher_t;

static __attribute__((noinline)) void touch_stack(toucher_t *t)
{
    char *buf = __builtin_alloca(t->bytes);
    memset(buf, 0xA5, t->bytes);
    t->lowest = buf;
    __asm__ volatile("" : : "r"(buf) : "memory");
    sched_coro_yield();
}

static void touch_body(void *arg)
{
    touch_stack(arg);
}

static void test_stack_lazy_and_returned(void)
{
    sched_coro_cache_drain();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    toucher_t t = {.bytes = 128 << 10};
    sched_coro_t *c = NULL;
    OK(sched_coro_create(&c, 0, touch_body, &t));
    sched_coro_resume(c);
    /* The stack spans [lowest, top): the whole 256 KiB window below the
     * top holds the touched part and untouched pages. */
    char *top = (char *)c;
    char *window = (char *)((uintptr_t)(top - SCHED_CORO_DEFAULT_STACK + page) & ~(page - 1));
    size_t touched = resident_pages(window, (size_t)(top - window) & ~(page - 1));
    CU_ASSERT(touched >= (128 << 10) / page);
    CU_ASSERT(touched <= (128 << 10) / page + 8);
    /* Pages well below the deepest frame were never committed. */
    char *below = (char *)((uintptr_t)(t.lowest - 16 * page) & ~(page - 1));
    CU_ASSERT(below >= window);
    CU_ASSERT_EQUAL(resident_pages(below, 8 * page), 0);

    sched_coro_resume(c);
    CU_ASSERT_TRUE(sched_coro_done(c));
    sched_coro_destroy(c);
    CU_ASSERT_EQUAL(sched_coro_cache_count(), 1);
    /* Cached as it is (a spawn right after reuses the pages)... */
    CU_ASSERT(resident_pages(window, (size_t)(top - window) & ~(page - 1)) >= touched);
    /* ...until a trim gives back everything below the kept top. */
    sched_coro_cache_trim();
    size_t kept = resident_pages(window, (size_t)(top - window) & ~(page - 1));
    CU_ASSERT(kept <= SCHED_CORO_CACHE_KEEP / page + 1);
    CU_ASSERT_EQUAL(sched_coro_cache_count(), 1);
    sched_coro_cache_trim(); /* nothing dirty left: no work, no change */
    CU_ASSERT_EQUAL(resident_pages(window, (size_t)(top - window) & ~(page - 1)), kept);

    /* The next create of the default size reuses that stack. */
    sched_coro_t *again = NULL;
    int v = 0;
    OK(sched_coro_create(&again, 0, return_at_once, &v));
    CU_ASSERT_PTR_EQUAL(again, c);
    CU_ASSERT_EQUAL(sched_coro_cache_count(), 0);
    sched_coro_resume(again);
    CU_ASSERT_EQUAL(v, 42);
    sched_coro_destroy(again);
    sched_coro_cache_drain();
    CU_ASSERT_EQUAL(sched_coro_cache_count(), 0);
}

static void test_cache_is_bounded(void)
{
    enum { N = SCHED_CORO_CACHE_SLOTS + 20 };
    sched_coro_cache_drain();
    sched_coro_t *c[N];
    int v = 0;
    for (int i = 0; i < N; i++)
        OK(sched_coro_create(&c[i], 0, return_at_once, &v));
    for (int i = 0; i < N; i++)
        sched_coro_destroy(c[i]); /* never resumed: destroyed suspended */
    CU_ASSERT_EQUAL(sched_coro_cache_count(), SCHED_CORO_CACHE_SLOTS);
    /* Other sizes are never cached. */
    sched_coro_t *odd = NULL;
    OK(sched_coro_create(&odd, 64 << 10, return_at_once, &v));
    sched_coro_resume(odd);
    sched_coro_destroy(odd);
    CU_ASSERT_EQUAL(sched_coro_cache_count(), SCHED_CORO_CACHE_SLOTS);
    sched_coro_cache_drain();
}

static void *cache_on_thread(void *arg)
{
    (void)arg;
    int v = 0;
    sched_coro_t *c = NULL;
    if (sched_coro_create(&c, 0, return_at_once, &v) != GD_OK)
        return (void *)1;
    sched_coro_resume(c);
    sched_coro_destroy(c); /* cached on this thread, drained at its exit */
    return sched_coro_cache_count() == 1 ? NULL : (void *)1;
}

static void test_cache_drained_at_thread_exit(void)
{
    pthread_t t;
    void *rv = (void *)1;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, cache_on_thread, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_join(t, &rv), 0);
    CU_ASSERT_PTR_NULL(rv);
}

/* ---- errors ---- */

static void test_bad_arguments_and_no_memory(void)
{
    sched_coro_t *c = (sched_coro_t *)(uintptr_t)1;
    int v = 0;
    CU_ASSERT_EQUAL(sched_coro_create(&c, 0, NULL, &v), GD_EINVAL);
    CU_ASSERT_EQUAL(sched_coro_create(&c, SCHED_CORO_MIN_STACK - 1, return_at_once, &v), GD_EINVAL);
    CU_ASSERT_EQUAL(sched_coro_create(&c, SCHED_CORO_MAX_STACK + 1, return_at_once, &v), GD_EINVAL);
    CU_ASSERT_PTR_EQUAL(c, (sched_coro_t *)(uintptr_t)1); /* untouched on error */

    sched_coro_cache_drain(); /* so the next create must map */
    sched_coro_fail_countdown = 1;
    CU_ASSERT_EQUAL(sched_coro_create(&c, 0, return_at_once, &v), GD_ENOMEM);
    CU_ASSERT_EQUAL(sched_coro_fail_countdown, 0);
    CU_ASSERT_PTR_EQUAL(c, (sched_coro_t *)(uintptr_t)1);
    /* And the next one works again. */
    OK(sched_coro_create(&c, SCHED_CORO_MIN_STACK, return_at_once, &v));
    sched_coro_resume(c);
    CU_ASSERT_EQUAL(v, 42);
    sched_coro_destroy(c);
}

/* ---- the guard ---- */

static volatile uintptr_t guard_lo, guard_hi;
static volatile uint64_t *neighbour_canary;

/* Far deeper than any stack here: the recursion ends only by faulting. */
static volatile uint64_t recurse_limit = UINT64_MAX;

static __attribute__((noinline)) uint64_t recurse_deep(uint64_t n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    pad[511] = (char)n;
    if (n >= recurse_limit)
        return 0;
    return recurse_deep(n + 1) + pad[0] + pad[511]; /* not a tail call */
}

static void overflow_body(void *arg)
{
    (void)arg;
    (void)recurse_deep(0);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    /* 42: faulted inside the guard and the memory below it is intact. */
    bool in_guard = a >= guard_lo && a < guard_hi;
    _exit(in_guard && *neighbour_canary == 0x0123456789ABCDEFull ? 42 : 43);
}

/* Runs an overflowing coroutine in a child; with `catch_it` the child's
 * handler (on an alternate stack) checks the faulting address; otherwise
 * the child must simply die of SIGSEGV. */
static int overflow_child(bool catch_it)
{
    /* A block mapped right below the coroutine's mapping stands for a
     * neighbour's memory: an overflow that skipped the guard would hit it. */
    sched_coro_t *c = NULL;
    uint64_t *nb = MAP_FAILED;
    /* The page below may be taken by another mapping (it was, now and
     * then, in the ASan build under load): then another coroutine,
     * mapped elsewhere, is tried (the child ends soon; nothing is freed). */
    for (int tries = 0; nb == MAP_FAILED && tries < 32; tries++) {
        if (sched_coro_create(&c, SCHED_CORO_MIN_STACK, overflow_body, NULL) != GD_OK)
            _exit(50);
        /* The control block sits at the top of the mapping, less than a
         * page above the start of the last stack page: rounding up from
         * (block - stack size) gives the stack's lowest byte, right above
         * the guard. */
        char *lo = (char *)(((uintptr_t)c - SCHED_CORO_MIN_STACK + 4095) & ~(uintptr_t)4095);
        guard_hi = (uintptr_t)lo;
        guard_lo = (uintptr_t)lo - SCHED_CORO_GUARD;
        void *want = (char *)guard_lo - 4096;
        nb = mmap(want, 4096, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    }
    if (nb == MAP_FAILED)
        _exit(51);
    *nb = 0x0123456789ABCDEFull;
    neighbour_canary = nb;
    if (catch_it) {
        static char alt[64 << 10];
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
        struct sigaction sa = {0};
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGSEGV, &sa, NULL) != 0)
            _exit(52);
    } else {
        struct sigaction sa = {0};
        sa.sa_handler = SIG_DFL;
        if (sigaction(SIGSEGV, &sa, NULL) != 0)
            _exit(52);
    }
    sched_coro_resume(c);
    _exit(53); /* the recursion cannot return */
}

static void test_overflow_hits_guard(void)
{
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer installs its own deadly-signal handling in the forked
     * child (on a fresh Debian box it ended the child with its own code
     * instead of SIGSEGV): the guard is checked in the release, ASan and
     * GC-stress runs. */
    return;
#endif
    for (int catch_it = 0; catch_it <= 1; catch_it++) {
        fflush(NULL);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0)
            overflow_child(catch_it);
        int status = 0;
        CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) != 42)
            fprintf(stderr, "overflow child (catch %d) exited with %d\n", catch_it,
                    WEXITSTATUS(status));
        if (catch_it) {
            CU_ASSERT_TRUE(WIFEXITED(status));
            CU_ASSERT_EQUAL(WEXITSTATUS(status), 42);
        } else {
            CU_ASSERT_TRUE(WIFSIGNALED(status));
            CU_ASSERT_EQUAL(WTERMSIG(status), SIGSEGV);
        }
    }
}

static const gd_test_case_t gd_tests[] = {
    {"resume, yield, return", test_resume_yield_return},
    {"returns without yielding", test_returns_without_yield},
    {"registers survive switches", test_registers_survive_switches},
    {"fp control travels with the coroutine", test_fp_control_travels_with_coroutine},
    {"nested resume", test_nested_resume},
    {"thousands alive at once", test_many_alive},
    {"resume on another thread", test_resume_on_another_thread},
    {"migrate between two schedulers", test_migrate_between_two_schedulers},
    {"stack lazily committed and returned", test_stack_lazy_and_returned},
    {"stack cache bounded", test_cache_is_bounded},
    {"stack cache drained at thread exit", test_cache_drained_at_thread_exit},
    {"bad arguments and no memory", test_bad_arguments_and_no_memory},
    {"overflow hits the guard", test_overflow_hits_guard},
    {NULL, NULL},
};

GD_TEST_MAIN("sched_coro", gd_tests)
