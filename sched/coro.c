/*
 * coro.c — stackful coroutines: stacks, the stack switch, sanitizer hooks.
 *
 * Layout of one mapping (low addresses first):
 *
 *   [guard: SCHED_CORO_GUARD, faults][stack, grows down ...][sched_coro_t]
 *
 * The coroutine's control block lives at the top of its own mapping, so a
 * spawn is one mapping (or one cache pop) and no malloc.  The guard is
 * installed with MADV_GUARD_INSTALL where the kernel has it (Linux 6.13+):
 * that keeps the mapping one VMA, so neighbouring stacks merge and a million
 * coroutines do not exhaust vm.max_map_count (65,530 by default); older
 * kernels get mprotect(PROT_NONE), which costs one more VMA per stack.
 *
 * The switch saves the callee-saved registers on the stack being left,
 * stores its stack pointer through the first argument and pops the same
 * frame from the second.  A new coroutine's stack is prepared with such a
 * frame whose return address is sched_coro_start_, which passes the
 * control block to sched_coro_entry_ (the "trampoline").
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro.h"

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CORO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORO_TSAN 1
#endif
#endif

#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CORO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

struct sched_coro {
    void *sp;           /* the coroutine's stack pointer while it is suspended */
    void *caller_sp;    /* the resumer's stack pointer while the coroutine runs */
    sched_coro_t *prev; /* what sched_coro_current said before the resume */
    void (*fn)(void *);
    void *arg;
    char *map; /* the whole mapping, guard included */
    size_t map_len;
    char *stack_lo;   /* lowest usable stack byte (just above the guard) */
    size_t stack_len; /* usable bytes, from stack_lo up to this block */
    char *low_sp;     /* the deepest sp seen at a suspension (stack use) */
    bool done;
#ifdef CORO_ASAN
    void *asan_fake;           /* the coroutine's fake stack while suspended */
    const void *caller_bottom; /* the resumer's stack, reported by ASan */
    size_t caller_size;
#endif
#ifdef CORO_TSAN
    void *tsan_fiber;
    void *tsan_caller;
#endif
};

/* The block takes whole cache lines at the top of the mapping. */
#define CORO_BLOCK_BYTES ((sizeof(sched_coro_t) + 63) & ~(size_t)63)

/* Declared for the assembly below (hidden: not part of any interface). */
void sched_coro_switch_(void **save_sp, void *new_sp) __attribute__((visibility("hidden")));
void sched_coro_start_(void) __attribute__((visibility("hidden")));
void sched_coro_entry_(sched_coro_t *c) __attribute__((visibility("hidden"), noreturn, used));

#if defined(__x86_64__)
/*
 * Frame (8-byte slots from the saved sp): MXCSR and x87 control word, r15,
 * r14, r13, r12, rbx, rbp, return address.  The SysV ABI makes MXCSR's
 * control bits and the x87 control word callee-saved, so they travel with
 * the coroutine like the registers.
 */
__asm__(".text\n"
        ".globl sched_coro_switch_\n"
        ".hidden sched_coro_switch_\n"
        ".type sched_coro_switch_, @function\n"
        ".p2align 4\n"
        "sched_coro_switch_:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size sched_coro_switch_, .-sched_coro_switch_\n"
        ".globl sched_coro_start_\n"
        ".hidden sched_coro_start_\n"
        ".type sched_coro_start_, @function\n"
        ".p2align 4\n"
        "sched_coro_start_:\n"
        "    movq %r12, %rdi\n"
        "    jmp sched_coro_entry_\n"
        ".size sched_coro_start_, .-sched_coro_start_\n");

enum { FRAME_WORDS = 9 };

/* Builds the first frame below `top` (16-byte aligned) and returns its sp. */
static void *initial_frame(char *top, sched_coro_t *c)
{
    uint64_t *f = (uint64_t *)(void *)(top - FRAME_WORDS * 8);
    /* MXCSR 0x1F80 (all exceptions masked, round to nearest) and x87
     * control word 0x037F: the values a new thread starts with. */
    f[0] = 0x1F80u | ((uint64_t)0x037Fu << 32);
    for (int i = 1; i <= 6; i++)
        f[i] = 0;
    f[4] = (uint64_t)(uintptr_t)c; /* r12 */
    f[7] = (uint64_t)(uintptr_t)sched_coro_start_;
    /* sched_coro_start_ runs with rsp at f + 8 (≡ 8 mod 16, as after a
     * call) and jumps to the entry, which sees this zero return address:
     * backtraces end here. */
    f[8] = 0;
    return f;
}
#elif defined(__aarch64__)
/*
 * Frame (from the saved sp): x19..x28, x29 (fp), x30 (lr), d8..d15; 160
 * bytes, keeping sp 16-byte aligned.
 */
__asm__(".text\n"
        ".globl sched_coro_switch_\n"
        ".hidden sched_coro_switch_\n"
        ".type sched_coro_switch_, %function\n"
        ".p2align 4\n"
        "sched_coro_switch_:\n"
        "    sub sp, sp, #160\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mov x9, sp\n"
        "    str x9, [x0]\n"
        "    mov sp, x1\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #160\n"
        "    ret\n"
        ".size sched_coro_switch_, .-sched_coro_switch_\n"
        ".globl sched_coro_start_\n"
        ".hidden sched_coro_start_\n"
        ".type sched_coro_start_, %function\n"
        ".p2align 4\n"
        "sched_coro_start_:\n"
        "    mov x0, x19\n"
        "    mov x29, xzr\n"
        "    mov x30, xzr\n"
        "    b sched_coro_entry_\n"
        ".size sched_coro_start_, .-sched_coro_start_\n");

enum { FRAME_WORDS = 20 };

static void *initial_frame(char *top, sched_coro_t *c)
{
    uint64_t *f = (uint64_t *)(void *)(top - FRAME_WORDS * 8);
    for (int i = 0; i < FRAME_WORDS; i++)
        f[i] = 0;
    f[0] = (uint64_t)(uintptr_t)c;                  /* x19 */
    f[11] = (uint64_t)(uintptr_t)sched_coro_start_; /* x30 */
    return f;
}
#else
#error "sched/coro.c: no stack switch for this architecture (x86-64 and aarch64 only)"
#endif

_Thread_local unsigned sched_coro_fail_countdown;

/* The coroutine running on this thread.  Read before a switch only: after
 * a switch inside a coroutine the code may be on another thread. */
static _Thread_local sched_coro_t *coro_current;

/* ---- sanitizer hooks, empty in other builds ---- */

/* Called by the resumer just before switching into c. */
static inline void hook_enter(sched_coro_t *c, void **fake)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(fake, c->stack_lo, c->stack_len);
#else
    (void)fake;
#endif
#ifdef CORO_TSAN
    c->tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#else
    (void)c;
#endif
}

/* Called by the resumer once c switched back. */
static inline void hook_entered_back(void *fake)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)fake;
#endif
}

/* Called by c right after it was switched to: records where its resumer's
 * stack is (it differs from one resume to the next when c migrates). */
static inline void hook_arrived(sched_coro_t *c)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake, &c->caller_bottom, &c->caller_size);
#else
    (void)c;
#endif
}

/* Called by c just before it switches back to its resumer; `final` when it
 * will never run again (ASan then drops its fake stack). */
static inline void hook_leave(sched_coro_t *c, bool final)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &c->asan_fake, c->caller_bottom, c->caller_size);
#else
    (void) final;
#endif
#ifdef CORO_TSAN
    __tsan_switch_to_fiber(c->tsan_caller, 0);
#else
    (void)c;
#endif
}

/* ---- stacks ---- */

/* Relaxed: racing first callers store the same value. */
static atomic_size_t page_bytes;

static size_t page_size(void)
{
    size_t page = atomic_load_explicit(&page_bytes, memory_order_relaxed);
    if (page == 0) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page_bytes, page, memory_order_relaxed);
    }
    return page;
}

typedef struct stack_cache {
    char *map[SCHED_CORO_CACHE_SLOTS];
    uint64_t dirty; /* bit i: map[i] may hold pages below the kept top */
    size_t n;
    bool registered;
} stack_cache_t;

GD_STATIC_ASSERT(SCHED_CORO_CACHE_SLOTS <= 64, "the dirty mask has one bit per slot");

static _Thread_local stack_cache_t stack_cache;
static pthread_key_t stack_cache_key;
static pthread_once_t stack_cache_once = PTHREAD_ONCE_INIT;

static size_t default_map_len(void)
{
    return SCHED_CORO_GUARD + SCHED_CORO_DEFAULT_STACK;
}

static void drain_at_exit(void *unused)
{
    (void)unused;
    sched_coro_cache_drain();
}

static void make_cache_key(void)
{
    /* Without the key the cache is only drained explicitly: no failure. */
    (void)pthread_key_create(&stack_cache_key, drain_at_exit);
}

/* Maps len bytes whose lowest SCHED_CORO_GUARD fault; NULL on failure. */
static char *map_stack(size_t len)
{
    if (GD_UNLIKELY(sched_coro_fail_countdown != 0) && --sched_coro_fail_countdown == 0)
        return NULL;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (madvise(p, SCHED_CORO_GUARD, MADV_GUARD_INSTALL) != 0 &&
        mprotect(p, SCHED_CORO_GUARD, PROT_NONE) != 0) {
        (void)munmap(p, len);
        return NULL;
    }
    return p;
}

/* Gives a stack back: into the cache (as it is: its pages are returned by
 * sched_coro_cache_trim, not here) when it has the default size and there
 * is room, else to the kernel. */
static void release_stack(char *map, size_t len)
{
    if (len == default_map_len() && stack_cache.n < SCHED_CORO_CACHE_SLOTS) {
        if (!stack_cache.registered) {
            (void)pthread_once(&stack_cache_once, make_cache_key);
            (void)pthread_setspecific(stack_cache_key, &stack_cache);
            stack_cache.registered = true;
        }
        stack_cache.dirty |= (uint64_t)1 << stack_cache.n;
        stack_cache.map[stack_cache.n++] = map;
        return;
    }
    (void)munmap(map, len);
}

void sched_coro_cache_trim(void)
{
    for (size_t i = 0; i < stack_cache.n; i++) {
        if (!(stack_cache.dirty & ((uint64_t)1 << i)))
            continue;
        /* DONTNEED rather than FREE: RSS drops now, not under memory
         * pressure.  On failure the stack simply stays dirty. */
        if (madvise(stack_cache.map[i] + SCHED_CORO_GUARD,
                    SCHED_CORO_DEFAULT_STACK - SCHED_CORO_CACHE_KEEP, MADV_DONTNEED) == 0)
            stack_cache.dirty &= ~((uint64_t)1 << i);
    }
}

void sched_coro_cache_drain(void)
{
    while (stack_cache.n > 0)
        (void)munmap(stack_cache.map[--stack_cache.n], default_map_len());
    stack_cache.dirty = 0;
}

size_t sched_coro_cache_count(void)
{
    return stack_cache.n;
}

/* ---- coroutines ---- */

int sched_coro_create(sched_coro_t **out, size_t stack_size, void (*fn)(void *), void *arg)
{
    if (fn == NULL || out == NULL)
        return GD_EINVAL;
    if (stack_size == 0)
        stack_size = SCHED_CORO_DEFAULT_STACK;
    if (stack_size < SCHED_CORO_MIN_STACK || stack_size > SCHED_CORO_MAX_STACK)
        return GD_EINVAL;
    size_t page = page_size();
    stack_size = (stack_size + page - 1) & ~(page - 1);
    size_t len = SCHED_CORO_GUARD + stack_size;

    char *map = NULL;
    if (len == default_map_len() && stack_cache.n > 0) {
        map = stack_cache.map[--stack_cache.n];
        stack_cache.dirty &= ~((uint64_t)1 << stack_cache.n);
    } else
        map = map_stack(len);
    if (map == NULL)
        return GD_ENOMEM;

    sched_coro_t *c = (sched_coro_t *)(void *)(map + len - CORO_BLOCK_BYTES);
    *c = (sched_coro_t){
        .fn = fn,
        .arg = arg,
        .map = map,
        .map_len = len,
        .stack_lo = map + SCHED_CORO_GUARD,
        .stack_len = (size_t)((char *)c - (map + SCHED_CORO_GUARD)),
    };
#ifdef CORO_ASAN
    /* A reused stack keeps the poisoned redzones of frames that never
     * returned (a coroutine destroyed while suspended). */
    ASAN_UNPOISON_MEMORY_REGION(c->stack_lo, c->stack_len);
#endif
#ifdef CORO_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
    c->sp = initial_frame((char *)c, c);
    c->low_sp = c->sp;
    *out = c;
    return GD_OK;
}

void sched_coro_entry_(sched_coro_t *c)
{
    hook_arrived(c);
    c->fn(c->arg);
    /* Only c from here on: this may be another thread than the one that
     * started the coroutine. */
    c->done = true;
    hook_leave(c, true);
    sched_coro_switch_(&c->sp, c->caller_sp);
    __builtin_unreachable();
}

void sched_coro_resume(sched_coro_t *c)
{
    GD_ASSERT(c != NULL && !c->done);
    void *fake = NULL;
    c->prev = coro_current;
    coro_current = c;
    hook_enter(c, &fake);
    sched_coro_switch_(&c->caller_sp, c->sp);
    hook_entered_back(fake);
    if ((char *)c->sp < c->low_sp)
        c->low_sp = c->sp;
    /* The resumer's own stack never migrates while it waits here, so this
     * is still the thread that set coro_current above. */
    coro_current = c->prev;
}

void sched_coro_yield(void)
{
    sched_coro_t *c = coro_current;
    GD_ASSERT(c != NULL);
    hook_leave(c, false);
    sched_coro_switch_(&c->sp, c->caller_sp);
    /* Possibly another thread now: touch c only, never coro_current. */
    hook_arrived(c);
}

size_t sched_coro_stack_bytes(const sched_coro_t *c)
{
    size_t page = page_size();
    size_t used = (size_t)(c->map + c->map_len - c->low_sp);
    return (used + page - 1) & ~(page - 1);
}

bool sched_coro_done(const sched_coro_t *c)
{
    return c->done;
}

sched_coro_t *sched_coro_current(void)
{
    return coro_current;
}

void sched_coro_destroy(sched_coro_t *c)
{
    if (c == NULL)
        return;
    GD_ASSERT(c != coro_current);
#ifdef CORO_TSAN
    __tsan_destroy_fiber(c->tsan_fiber);
#endif
    release_stack(c->map, c->map_len);
}
