/*
 * coro.h — stackful coroutines for coroutine processes (private to sched/).
 *
 * A coroutine runs a C function on its own stack and can suspend itself
 * anywhere in its call chain (sched_coro_yield), which is what lets a
 * coroutine process block in `receive` deep inside ordinary C code.  The
 * scheduler drives it asymmetrically: sched_coro_resume switches from the
 * scheduler's stack into the coroutine and returns when the coroutine
 * yields or its function returns.
 *
 * Stacks are anonymous mappings reserved without commitment
 * (MAP_NORESERVE): only the pages a coroutine touches cost memory.  Below
 * each stack lies a guard region that faults on any access, so an overflow
 * dies with SIGSEGV instead of writing into a neighbour.  Freed stacks go to
 * a small per-thread cache because mapping and unmapping cost more than the
 * rest of a spawn; the cache's pages go back to the kernel (madvise) when
 * the owner calls sched_coro_cache_trim, e.g. when its scheduler idles.
 *
 * The switch is hand-written assembly for x86-64 (SysV) and aarch64 (AAPCS64)
 * and saves only the callee-saved state; there is no signal-mask syscall as
 * in swapcontext.  Other architectures do not build.
 *
 * Threads: a coroutine belongs to no thread.  It may yield on one scheduler
 * thread and be resumed on another, provided the handoff synchronises (the
 * run-queue lock or a release/acquire pair) and it is never resumed twice at
 * once.  Code running inside a coroutine must not keep the address of a
 * thread-local variable across a yield: the compiler computes it once per
 * function, and glibc declares pthread_self() and errno's location
 * (__errno_location) const, so a function that yields may reuse the old
 * thread's values after a migration (tests/sched/test_coro.c saw exactly
 * that).  Read such things in a function that does not yield.
 *
 * Sanitizers: ASan and TSan builds tell the sanitizer about every stack
 * switch (__sanitizer_*_switch_fiber, __tsan_*_fiber), so those builds run
 * clean (checked with GCC 12; clang 14's TSan fails an internal CHECK in
 * __tsan_destroy_fiber).  TSan keeps ~770 KB per fiber: keep coroutine
 * counts small in TSan tests.
 */
#ifndef GIRDER_SCHED_CORO_H
#define GIRDER_SCHED_CORO_H

#include <stdbool.h>
#include <stddef.h>

#include "heap.h"

/* Virtual size of a stack when sched_coro_create is given 0.  Only touched
 * pages are committed, so this is address space, not memory. */
#define SCHED_CORO_DEFAULT_STACK ((size_t)256 << 10)
/* Smallest and largest stack sizes sched_coro_create accepts. */
#define SCHED_CORO_MIN_STACK ((size_t)16 << 10)
#define SCHED_CORO_MAX_STACK ((size_t)1 << 30)
/* Size of the faulting region below every stack.  Larger than one page so a
 * frame with a big local array cannot step over it. */
#define SCHED_CORO_GUARD ((size_t)64 << 10)
/* Freed stacks kept per thread for reuse (only stacks of the default size). */
#define SCHED_CORO_CACHE_SLOTS 64
/* Bytes at the top of a cached stack that sched_coro_cache_trim leaves
 * committed: the part every coroutine touches at once, so reuse takes no
 * page fault there. */
#define SCHED_CORO_CACHE_KEEP ((size_t)16 << 10)

typedef struct sched_coro sched_coro_t;

/*
 * Creates a suspended coroutine that will run fn(arg) on a fresh stack of
 * stack_size bytes (0 for SCHED_CORO_DEFAULT_STACK; rounded up to whole
 * pages).  Nothing runs until the first sched_coro_resume.  On success *out
 * is owned by the caller, who frees it with sched_coro_destroy.  Errors:
 * GD_EINVAL (fn NULL, or stack_size outside [SCHED_CORO_MIN_STACK,
 * SCHED_CORO_MAX_STACK]), GD_ENOMEM (the stack could not be mapped); *out is
 * untouched then.  Work: a cache pop, or two system calls on a cache miss.
 */
int sched_coro_create(sched_coro_t **out, size_t stack_size, void (*fn)(void *),
                      void *arg) GD_MUST_CHECK;

/*
 * Runs c until it yields or its function returns, then returns to the
 * caller (normally a scheduler loop, which may itself be a coroutine).  c
 * must be suspended: not finished, not running here or on another thread.
 * Work: one stack switch each way.
 */
void sched_coro_resume(sched_coro_t *c);

/*
 * Suspends the calling coroutine and returns to whoever resumed it; returns
 * when the coroutine is next resumed (maybe on another thread).  Must be
 * called from inside a coroutine.
 */
void sched_coro_yield(void);

/*
 * The stack c has used: from the top of its mapping (its control block
 * included) down to the deepest stack pointer it was suspended at, in
 * whole pages: the pages it has certainly touched, which are committed
 * memory.  A deeper excursion between two suspensions is not seen.  Call
 * it while c is suspended (or from its resumer's thread).  O(1).
 */
size_t sched_coro_stack_bytes(const sched_coro_t *c);

/* True once c's function has returned (c can then only be destroyed). */
bool sched_coro_done(const sched_coro_t *c);

/* The coroutine running on this thread, or NULL on a thread's own stack. */
sched_coro_t *sched_coro_current(void);

/*
 * Frees c and its stack (the stack goes to this thread's cache when it has
 * the default size and the cache has room).  c must not be running.  A
 * suspended, unfinished c is discarded without unwinding: the caller must
 * know its function holds nothing that needs releasing.  NULL is ignored.
 */
void sched_coro_destroy(sched_coro_t *c);

/*
 * Gives back to the kernel the pages of this thread's cached stacks, except
 * the top SCHED_CORO_CACHE_KEEP bytes of each (RSS drops at once).  Meant
 * for a scheduler about to sleep.  Work: one madvise per stack cached since
 * the last trim (~1.5 µs each on the VMs measured), none for the others.
 */
void sched_coro_cache_trim(void);

/* Unmaps every stack in this thread's cache (it is also drained when the
 * thread exits).  Work: one munmap per cached stack. */
void sched_coro_cache_drain(void);

/* Number of stacks in this thread's cache (for tests and statistics). */
size_t sched_coro_cache_count(void);

/* Test hook: when non-zero, counts down at every stack mapping on this
 * thread and makes the mapping at which it reaches zero fail (GD_ENOMEM). */
extern _Thread_local unsigned sched_coro_fail_countdown;

#endif
