/*
 * sched.h — girder's runtime core: processes, their mailboxes and signals,
 * and the scheduler threads that run them.
 *
 * Processes.  Two kinds, first-class side by side: a coroutine process (a C
 * function on a stack of its own that blocks in sched_receive_wait; see
 * "coroutine processes" below), and the lighter behaviour process: a
 * behaviour callback set (init, handle_message,
 * terminate, code_change) run once per message on a scheduler thread; its
 * state term and the message are its roots, so it needs no stack of its own
 * while idle (an idle process costs sizeof(PCB) + its heap; see
 * sched_process_info().memory_bytes and tests/sched/test_spawn.c).  Pids are
 * BEAM-style index + serial: a process-table slot index and a serial bumped
 * every time the slot is reused; free slots are reused oldest first, and
 * fresh indices are used before any freed one, so a pid is not reused soon.
 *
 * Messages and signals.  Every process has one lock-free multi-producer
 * inbox (an intrusive Vyukov MPSC queue).  A sender copies the message into
 * a heap fragment on its own thread (heap_msg_copy: refc binaries are
 * shared, not copied) and publishes it with release ordering; the receiver
 * takes it with acquire ordering and, when it accepts the message, moves a
 * small one onto its young area and frees its block at once (as BEAM
 * copies small messages into the heap; heap_msg_take), or attaches a big
 * one's fragment to its heap, merged at its next collection.  So an idle
 * process holds its messages' words, never the 256 KiB slab chunk they
 * came from (tests/sched/test_slabpin.c: 100k idle receivers held 468 MiB
 * of chunks for 13.7 MiB of messages before, 1.8 MiB now).  The queue entry rides in the fragment's
 * block (one allocation per send, as BEAM's combined message); small fragments come from per-thread
 * message slabs pre-faulted in bulk (heap/msgslab.c: fanin's first-touch page faults were ~45% of
 * its CPU; its system time fell from 9.3 s to 3.5 s for 3 reps; a same-run ratio to BEAM is not
 * measured yet).  Signals (exit, link, unlink, monitor, demonitor,
 * down) travel through the same inbox, so between one pair of processes
 * signals and messages arrive in the order sent, as Erlang guarantees.  The
 * receiver handles signals when it takes them from the inbox.
 *
 * Wake-ups.  Each process has an atomic state word with the flags ACTIVE
 * (work was published), RUNNING (a scheduler runs it), IN_RUNQ (it sits in
 * exactly one run queue) and EXITING.  A sender, after publishing, sets
 * ACTIVE with a CAS and also sets IN_RUNQ if neither RUNNING nor IN_RUNQ was
 * set; only the sender whose CAS set IN_RUNQ enqueues the process.  The
 * scheduler that dequeues it swaps IN_RUNQ|ACTIVE for RUNNING, drains the
 * inbox, and when it runs out of work tries to clear RUNNING with a CAS that
 * expects ACTIVE clear: if a sender set ACTIVE meanwhile the CAS fails and
 * the scheduler looks again.  Every transition is a read-modify-write on the
 * one word, so a wake-up is never lost and a process is never queued twice.
 *
 * Reclamation.  A process-table slot holds one atomic word: serial, a LIVE
 * bit and a count of references.  Looking a pid up increments the count with
 * a CAS that checks LIVE and the serial; the process itself holds one
 * reference while alive.  An exiting process clears LIVE (no new lookups
 * succeed, so sends to it are dropped) and drops its reference; whoever drops
 * the last one puts the PCB on a zombie list that schedulers reap at a safe
 * point (answering LINK/MONITOR signals that raced with the exit with
 * noproc), so a sender never touches a freed PCB and freeing never recurses.
 * A process sending to a pid from a scheduler thread takes no reference:
 * it borrows the PCB for the length of the send, and a zombie is freed
 * only after every scheduler has since passed a quiescent state (its loop
 * top, or asleep; one stuck in a long C callback is checked through a
 * process-wide membarrier and a flag it sets while borrowing).  This saves
 * two locked instructions on the target's slot per send (~9% of a ring
 * hop).
 * PCBs come from per-scheduler pools over 2 MiB chunks; a freed PCB goes
 * back to the pool that carved it, and an idling scheduler unmaps its
 * chunks whose PCBs are all free (then malloc_trim): after 1M processes
 * exit, RSS falls back from ~830 MiB to < 100 MiB (test_sched_spawn).
 *
 * Scheduling.  One thread per scheduler (default: one per core), each with a
 * run queue of four priorities: max runs before high before normal; low runs
 * within normal's turns (every 8th normal pick takes a low process if one is
 * waiting).  A process runs until it has no deliverable message or has used
 * SCHED_CONTEXT_REDS reductions (one per message or signal taken, one per
 * 16 words sent, received, allocated or moved by the collector, and
 * sched_bump_reds), checked between callbacks, then goes to the
 * back of its queue.  A normal-priority process woken by a process running
 * on a scheduler goes to that scheduler's run-next slot instead of a queue
 * (as Go's runnext; BEAM runs a woken receiver on the sender's scheduler
 * too): it runs as soon as the current process blocks or its slice ends,
 * without a queue lock or a cross-thread wake-up, so a ping-pong pair or a
 * ring stays on one thread.  A chain of such runs shares one slice's
 * reductions; after that, wake-ups go to the queue's tail, so the queue
 * never waits longer than for one slice.  An idle scheduler steals half of the longest other
 * queue, polls the queue lengths for a few µs and, when its last idle
 * stretch was short (a distribution round trip), up to 100 µs more between
 * sched_yield()s (a futex wake-up costs more than many messages; the
 * yields let the threads that can run have the CPU), then sleeps on a
 * condition variable (signalled after the waker drops the queue lock):
 * no CPU while the node is idle.  A watchdog thread ticks every millisecond while any process
 * is runnable or running and sleeps otherwise; each tick it wakes a sleeping
 * scheduler for any queue holding more than one process (balancing).  Run
 * queues take a mutex each (uncontended in the common case: a scheduler
 * works on its own queue; stealing and cross-scheduler wake-ups lock the
 * other's).
 *
 * Stuck schedulers.  A callback that loops in plain C without calling the
 * runtime cannot be preempted.  The watchdog notices a slice (callback or
 * garbage collection) running longer than stuck_ns (default 2 ms) and marks
 * that scheduler stuck: its whole run queue (and run-next slot) is then
 * taken over by the other schedulers, the busy ones too (each looks after
 * every slice while some scheduler is stuck, so the queue does not wait
 * for one to idle), wake-ups of processes homed there go to another queue,
 * and the idle schedulers are woken.  A merely busy scheduler (slices
 * ending on reductions) is never taken over wholesale: idle ones steal
 * half of its queue.  When every scheduler is stuck and each one's thread
 * burns CPU (stuck_ns / 4 of thread CPU time since first seen stuck; or its
 * slice has lasted 50 x stuck_ns, a callback blocked in a system call) the
 * watchdog starts an extra scheduler thread (at most
 * max_extra_schedulers), so the other processes keep their latency; a
 * thread the OS merely took off its core (a loaded host) still has its
 * queue moved, but no thread is added for it.  A scheduler clears its stuck mark when
 * its slice ends.  Garbage collection runs inside the slice (at the safe
 * point after each callback), so a long collection of a big heap is caught
 * the same way: the others are stolen meanwhile.  Why this design rather
 * than interrupting the callback: C code cannot be preempted safely at an
 * arbitrary point (it may hold locks or half-built terms), while moving the
 * other processes away needs nothing from it.
 *
 * Thread use.  sched_send*, sched_exit_pid, sched_whereis, sched_spawn* with
 * ctx == NULL and sched_process_info may be called from any thread while the
 * node runs (e.g. a test's main thread).  Functions taking a sched_ctx_t act
 * for that process and may only be called from its callbacks.
 */
#ifndef GIRDER_SCHED_H
#define GIRDER_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"

/* sched/ error codes (the range below etf/'s). */
enum {
    SCHED_EEXIT = -200,       /* returned by sched_exit: the callback ends its process */
    SCHED_ENOPROC = -201,     /* no such process (or no such registered name) */
    SCHED_ENAME_TAKEN = -202, /* register: the name or the process is already registered */
    SCHED_ETOO_MANY = -203,   /* the process table is full */
    SCHED_ESTOPPED = -204,    /* the node is not running */
    SCHED_ENOTIMER = -205,    /* cancel_timer: the timer already fired, or no such timer */
    SCHED_ETIMEOUT = -206,    /* sched_receive_wait: nothing matched within the timeout */
};

/* OTP's CONTEXT_REDS: reductions per slice. */
#define SCHED_CONTEXT_REDS 4000

/* The context of the process a callback runs for (the process itself). */
typedef struct sched_proc sched_ctx_t;

/*
 * A behaviour.  Every callback returns 0 to go on or a negative code to end
 * the process: SCHED_EEXIT after sched_exit (with that reason), any other
 * code with reason {callback_error, Code}.  Terms passed in live on the
 * process heap (sched_heap) and are valid until the callback returns;
 * *state is the process state, kept as a root between callbacks.
 *  - init: the first callback; `arg` is the spawn argument (copied).
 *    *state starts as [].
 *  - handle_message: one message taken from the queue.
 *  - terminate (optional): the process is exiting with `reason` (not called
 *    for `killed`); it may still send.
 *  - code_change (optional): see sched_code_change.
 */
typedef struct sched_behaviour {
    int (*init)(sched_ctx_t *ctx, term_t arg, term_t *state);
    int (*handle_message)(sched_ctx_t *ctx, term_t msg, term_t *state);
    void (*terminate)(sched_ctx_t *ctx, term_t reason, term_t state);
    int (*code_change)(sched_ctx_t *ctx, term_t extra, term_t *state);
} sched_behaviour_t;

/* Priorities; normal is 0 so zeroed options mean normal. */
enum sched_priority {
    SCHED_PRIO_NORMAL = 0,
    SCHED_PRIO_LOW = 1,
    SCHED_PRIO_HIGH = 2,
    SCHED_PRIO_MAX = 3,
};

/* Spawn options; zero-initialised means the defaults. */
typedef struct sched_spawn_opts {
    enum sched_priority priority; /* default normal */
    size_t min_heap_size;         /* words; 0 = SCHED_MIN_HEAP_DEFAULT */
    size_t max_heap_size;         /* words; 0 = unlimited; beyond it: killed */
    uint32_t fullsweep_after;     /* 0 = the heap default (65535) */
    int scheduler;                /* 1-based scheduler hint; 0 = the spawner's */
    bool link;                    /* spawn_link (needs a ctx) */
    bool monitor;                 /* spawn_monitor (needs a ctx) */
} sched_spawn_opts_t;

/* Initial heap of a process (words, on its first allocation).  BEAM uses
 * 233; an idle process here costs at most 38 words of heap. */
#define SCHED_MIN_HEAP_DEFAULT 38

/* The cores this process may run on (its CPU affinity mask, as `taskset`
 * or a container's cpuset sets it; the online count when that cannot be
 * read): the default number of schedulers, as BEAM's.  At least 1. */
unsigned sched_cores_available(void);

/* Node options; zero-initialised means the defaults. */
typedef struct sched_opts {
    unsigned schedulers;           /* 0 = sched_cores_available() */
    uint32_t max_processes;        /* 0 = SCHED_MAX_PROCESSES_DEFAULT */
    uint64_t stuck_ns;             /* slice length that marks a scheduler stuck; 0 = 2 ms */
    unsigned max_extra_schedulers; /* threads added when all are stuck; 0 = 2 */
    unsigned dirty_threads;        /* dirty-call pool size; 0 = SCHED_DIRTY_THREADS_DEFAULT */
    /* An idle scheduler sleeps after its short pause spin, without the
     * phase of polls between sched_yield()s (up to 300 us) that catches
     * a distribution reply or the idle poller's reads: for a node whose
     * work comes in batches a known while apart (cluster's read
     * batching), where that phase only spins between the batches. */
    bool no_yield_spin;
} sched_opts_t;

#define SCHED_MAX_PROCESSES_DEFAULT ((uint32_t)1 << 21)
#define SCHED_MAX_PROCESSES_LIMIT ((uint32_t)1 << 27)

/*
 * Starts the node: the process table, the scheduler threads, the watchdog
 * and the dirty threads.  One node per OS process.  Errors: GD_EINVAL (already running or
 * max_processes above SCHED_MAX_PROCESSES_LIMIT), GD_ENOMEM, GD_ESYSTEM_LIMIT
 * (a thread could not be created).
 */
int sched_start(const sched_opts_t *opts) GD_MUST_CHECK;

/*
 * Stops the node: stops and joins every thread, kills the remaining
 * processes without running their callbacks, and frees everything.  Must
 * not race with other sched_* calls.  No-op when not running.
 */
void sched_stop(void);

/* Number of live processes. */
uint32_t sched_process_count(void);

/*
 * Waits until every one of the n pids has exited completely (its links and
 * monitors signalled), or timeout_ms passes.  Returns 0, or GD_EAGAIN on
 * timeout.  Any thread; O(n) per wake-up.
 */
int sched_wait_exit(const term_t *pids, size_t n, uint64_t timeout_ms) GD_MUST_CHECK;

/* Waits until at most `count` processes are alive (0 or GD_EAGAIN). */
int sched_wait_count(uint32_t count, uint64_t timeout_ms) GD_MUST_CHECK;

/* True when pid names a live local process. */
bool sched_is_alive(term_t pid);

/* The process-table slot and the slot's reuse count a local pid names
 * (false for other terms, or a slot beyond the table).  A pid's 28 data
 * bits (OTP's local range) hold the slot in their low bits and the reuse
 * count above, so a slot's pids repeat only after 2^(28 - slot bits) lives. */
bool sched_pid_slot(term_t pid, uint32_t *index, uint32_t *serial);

/*
 * Spawns a behaviour process.  `arg` (on any heap the caller may read, or
 * an immediate) is copied for the child's init.  ctx is the spawning process
 * or NULL from outside any process (then link/monitor are GD_EINVAL).  On
 * success *pid_out is the child's pid and, with opts->monitor, *ref_out the
 * monitor reference (on ctx's heap; may be NULL otherwise).  Errors:
 * GD_ENOMEM, GD_EINVAL, SCHED_ETOO_MANY, SCHED_ESTOPPED.  O(size of arg).
 */
int sched_spawn_opt(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg,
                    const sched_spawn_opts_t *opts, term_t *pid_out, term_t *ref_out) GD_MUST_CHECK;
int sched_spawn(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg,
                term_t *pid_out) GD_MUST_CHECK;
int sched_spawn_link(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg,
                     term_t *pid_out) GD_MUST_CHECK;
int sched_spawn_monitor(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg, term_t *pid_out,
                        term_t *ref_out) GD_MUST_CHECK;

/* ---- acting as a process (callbacks only) ---- */

/* The process's pid. */
term_t sched_self(const sched_ctx_t *ctx);

/* The process heap: build terms here (allocation never collects; the
 * runtime collects between callbacks with the state as root). */
heap_t *sched_heap(sched_ctx_t *ctx);

/* Charges n reductions; returns true when the slice is used up (a long C
 * loop should then return from its callback to let others run).  In a
 * coroutine process a preemption point: it then yields, resumes with a
 * fresh slice and returns true. */
bool sched_bump_reds(sched_ctx_t *ctx, uint32_t n);

/*
 * Sends msg (copied) to `to`: a local pid, a registered-name atom or a
 * local reference (an alias; see sched_alias_create).  A send
 * to a dead pid is dropped silently (0), as in Erlang; a name nobody has
 * registered is SCHED_ENOPROC (Erlang's badarg).  ctx may be NULL from
 * outside any process.  Errors: GD_ENOMEM, GD_ESYSTEM_LIMIT (message too
 * large), GD_EBADARG (to is neither), SCHED_ESTOPPED.
 * O(size of msg).
 *
 * From a process, the second and later messages in a row to one other
 * local process are handed over in chains of up to 64: each is delivered
 * before the sender's next signal or send elsewhere, spawn, process_info
 * or sched_bump_reds, and before it stops running (slice used up, a wait
 * in receive, exit), so the pair's order and every causal chain through
 * this sender hold; only a C loop that never calls the runtime again
 * holds its last messages until it returns.  Small messages to other nodes
 * are held the same way (sched_dist_cork) and leave in one write at the
 * run's end or at sched_bump_reds.
 */
int sched_send(sched_ctx_t *ctx, term_t to, term_t msg) GD_MUST_CHECK;

/*
 * Suspends the calling behaviour process once its current callback
 * returns: no further callback runs (its messages stay queued, signals
 * are still handled, so it can be killed) until sched_resume(its pid).
 * No CPU is used meanwhile: the process is not queued.  Each suspension
 * must be matched by exactly one sched_resume (the distribution layer's
 * back-pressure: a behaviour that sent past a connection's output limit
 * waits for the output to drain).  GD_EINVAL for a coroutine process
 * (which waits in a receive instead).
 */
int sched_suspend(sched_ctx_t *ctx) GD_MUST_CHECK;
/* Ends a sched_suspend of the local process pid, from any thread (a
 * signal: it keeps its order with what the caller sent the process
 * before).  Dead pid: 0.  Errors: GD_EBADARG, GD_ENOMEM. */
int sched_resume(term_t pid) GD_MUST_CHECK;

/*
 * As sched_send from outside any process (ctx NULL) for a message already
 * built in a fragment chain (heap_msg_build_take): the chain becomes the
 * message's body as it is, without the copy (the distribution receive
 * path decodes a big frame straight into it).  `to`: a local pid, a
 * registered name or an alias.  frag is consumed (freed when the message
 * is dropped or on error).  Errors as sched_send.  O(1).
 */
int sched_send_built(term_t to, heap_frag_t *frag, term_t msg) GD_MUST_CHECK;

/*
 * Sends exit signal `reason` from ctx (or from no process when ctx is NULL:
 * the sender is then the atom undefined) to `to` (pid or name), as
 * erlang:exit/2: kill is untrappable and kills with reason killed; normal
 * is ignored unless trapped; others kill unless trapped ({'EXIT', From,
 * Reason} message).  Dead targets: 0.  Errors as sched_send.
 */
int sched_exit_pid(sched_ctx_t *ctx, term_t to, term_t reason) GD_MUST_CHECK;

/* Ends the calling process with `reason` (an immediate or a term on the
 * process heap): return what it returns (SCHED_EEXIT) from the callback. */
int sched_exit(sched_ctx_t *ctx, term_t reason) GD_MUST_CHECK;
/* As sched_exit_pid from process ctx to the local process `to`, but the
 * signal's body names `from` (any pid, e.g. a remote one): a trapping
 * target gets {'EXIT', From, Reason}.  For the distribution layer, whose
 * connection controller relays a remote link's exit (the target then
 * sees the remote process, as in Erlang, not the relay).  Errors:
 * GD_EBADARG (no ctx, `to` not local), SCHED_ENOPROC, GD_ENOMEM. */
int sched_exit_pid_from(sched_ctx_t *ctx, term_t to, term_t from, term_t reason) GD_MUST_CHECK;

/* Links to pid (or name).  A dead target sends this process an exit signal
 * with reason noproc (trapped: an {'EXIT', Pid, noproc} message). */
int sched_link(sched_ctx_t *ctx, term_t to) GD_MUST_CHECK;
int sched_unlink(sched_ctx_t *ctx, term_t to) GD_MUST_CHECK;

/* Monitors pid or registered name; *ref_out (on the heap) identifies it.
 * When the target exits (or is dead already) the process receives
 * {'DOWN', Ref, process, Item, Reason} (Item: the pid, or {Name, Node} for a
 * name; Reason noproc for a dead target). */
int sched_monitor(sched_ctx_t *ctx, term_t to, term_t *ref_out) GD_MUST_CHECK;
/* Removes a monitor; no DOWN for it is delivered afterwards.  0 even when
 * the monitor already fired or never existed. */
int sched_demonitor(sched_ctx_t *ctx, term_t ref) GD_MUST_CHECK;

/*
 * Aliases (OTP 24's alias/0,1, unalias/1 and monitor's alias option).  An
 * alias is a reference that names the process that made it: sched_send to
 * it (from any process or thread, or from a peer through cluster/, which
 * decodes the ref of an ALIAS_SEND into the local form and calls
 * sched_send) delivers the message to the owner while the alias is active
 * and drops it silently otherwise, as OTP does.  A send to a local
 * reference that is no alias (or whose owner is dead) is dropped too.  The
 * check happens when the message reaches the owner, so a message that is
 * on its way when the alias is removed is dropped.  Signal order is that
 * of any message between the two processes.
 */
enum sched_alias_mode {
    /* Active until sched_alias_remove (OTP's explicit_unalias). */
    SCHED_ALIAS_EXPLICIT = 0,
    /* Also removed by the first message that arrives through it (OTP's
     * alias([reply])). */
    SCHED_ALIAS_REPLY = 1,
    /* Monitors only: also removed with the monitor (demonitor, or its
     * 'DOWN' arriving; OTP's {alias, demonitor}). */
    SCHED_ALIAS_DEMONITOR = 2,
    /* Monitors only: as DEMONITOR, and the first message through the alias
     * removes both the alias and the monitor ({alias, reply_demonitor}). */
    SCHED_ALIAS_REPLY_DEMONITOR = 3,
};

/* Makes an alias (SCHED_ALIAS_EXPLICIT) on ctx's heap.  Like
 * sched_make_ref it marks the queue's end for sched_receive_ref (the ref
 * trick).  Errors: GD_ENOMEM.  O(1) amortised. */
int sched_alias_create(sched_ctx_t *ctx, term_t *ref_out) GD_MUST_CHECK;
/* As sched_alias_create with a mode (EXPLICIT or REPLY; else GD_EINVAL). */
int sched_alias_create_opt(sched_ctx_t *ctx, enum sched_alias_mode mode,
                           term_t *ref_out) GD_MUST_CHECK;
/* Deactivates the alias ref of ctx (OTP's unalias/1): true when it was
 * active.  A monitor made with an alias stays.  O(active aliases). */
bool sched_alias_remove(sched_ctx_t *ctx, term_t ref);
/* sched_monitor whose reference is also an alias of ctx in `mode` (any of
 * the four).  Local targets only (a pid or a registered name of this
 * node): GD_EINVAL for a remote one.  Errors otherwise as sched_monitor.
 * Marks the queue's end as sched_make_ref does. */
int sched_monitor_alias(sched_ctx_t *ctx, term_t to, enum sched_alias_mode mode,
                        term_t *ref_out) GD_MUST_CHECK;
/* The process a local alias reference names (whether or not the alias is
 * still active): false when ref is no alias.  Any thread. */
bool sched_alias_owner(term_t ref, term_t *pid_out);

/* trap_exit: returns the old value. */
bool sched_trap_exit(sched_ctx_t *ctx, bool on);

/* Registers the process under atom `name`.  Errors: GD_EBADARG (not an
 * atom or the atom undefined), SCHED_ENAME_TAKEN. */
int sched_register(sched_ctx_t *ctx, term_t name) GD_MUST_CHECK;
/* Removes a registration (any process's); SCHED_ENOPROC if none. */
int sched_unregister(term_t name) GD_MUST_CHECK;
/* The pid registered as name, or the atom undefined.  Any thread. */
term_t sched_whereis(term_t name);

/* Process dictionary (keys compared with =:=).  get returns the atom
 * undefined when absent; put sets *old_out (may be NULL) to the previous
 * value or undefined; erase likewise.  Values are kept as roots.  O(size). */
term_t sched_dict_get(sched_ctx_t *ctx, term_t key);
int sched_dict_put(sched_ctx_t *ctx, term_t key, term_t val, term_t *old_out) GD_MUST_CHECK;
term_t sched_dict_erase(sched_ctx_t *ctx, term_t key);

/* A fresh reference on heap h, from any thread (sched_monitor_for). */
int sched_ref_new(heap_t *h, term_t *ref_out) GD_MUST_CHECK;

/*
 * Monitors `to` (a local pid or registered name) for process `watcher`,
 * from any thread, with reference `ref` (from sched_ref_new): as if
 * watcher had called erlang:monitor(process, To) now, except that a dead
 * target's 'DOWN' noproc arrives as a message rather than an error.  The
 * watcher holds the monitor (its 'DOWN', sched_demonitor) before anything
 * this thread sends after the call can reach `to`.  GD_EINVAL for a
 * remote target or a bad watcher or ref, SCHED_ENOPROC when the watcher is
 * gone, GD_ENOMEM.  For the distribution layer, which monitors on behalf
 * of a connection's controller without waiting for it.
 */
int sched_monitor_for(term_t watcher, term_t to, term_t ref) GD_MUST_CHECK;

/* A fresh reference on the process heap.  It also marks the current end of
 * the message queue: sched_receive_ref with this ref skips older messages
 * (OTP's reference trick). */
int sched_make_ref(sched_ctx_t *ctx, term_t *ref_out) GD_MUST_CHECK;

/*
 * Selective receive for behaviours.  After the current callback returns,
 * only the first queued message (in arrival order) for which pred returns
 * true is delivered to handle_message; the others stay queued, in order,
 * and are delivered after it.  Each message is offered to pred at most once
 * per selection (a save pointer remembers how far the queue was scanned), so
 * a wait costs O(messages arriving), not O(queue length) per wake-up.
 * pred == NULL cancels the selection.
 */
typedef bool (*sched_pred_fn)(term_t msg, void *arg);
void sched_receive(sched_ctx_t *ctx, sched_pred_fn pred, void *arg);
/* As sched_receive for a reply tagged with `ref`: when ref is the one the
 * last sched_make_ref made, scanning starts at the queue position marked
 * then. */
void sched_receive_ref(sched_ctx_t *ctx, term_t ref, sched_pred_fn pred, void *arg);

/* Drops every message of the process's queue that pred accepts and returns
 * how many: erlang:demonitor(Ref, [flush])'s flush for a behaviour, after
 * sched_demonitor (which makes the runtime drop a 'DOWN' of Ref that is
 * still in the inbox; this drops one already taken into the queue).
 * O(queue length). */
size_t sched_flush(sched_ctx_t *ctx, sched_pred_fn pred, void *arg);

/* Calls the behaviour's code_change for the process (from one of its own
 * callbacks); errors as the callback's. */
int sched_code_change(sched_ctx_t *ctx, term_t extra) GD_MUST_CHECK;

/* ---- coroutine processes ----
 *
 * A coroutine process runs one C function on a stack of its own
 * (sched/coro.h: 256 KiB reserved, committed as touched, a 64 KiB guard
 * below it; the stack is taken from the scheduler thread's cache at the
 * first run and goes back to it when the process ends), so it can block in
 * sched_receive_wait anywhere in its call chain.  It is scheduled like a
 * behaviour process: every runtime call that charges reductions
 * (sched_send, sched_spawn*, sched_bump_reds, sched_proc_yield, the
 * receives) is
 * a preemption point where, once the slice's SCHED_CONTEXT_REDS are used
 * up, it yields to its scheduler and later resumes, possibly on another
 * scheduler thread (so never keep the address of a thread-local variable,
 * errno's included, across such a call).  A C loop that calls none of them
 * is caught by the stuck-scheduler watchdog like a behaviour's.
 *
 * Signals are handled while it waits: a link's exit or exit/2 that kills it
 * ends it without returning into its function (its stack is simply
 * released; so keep no malloc'd memory or locks only the function itself
 * would free across a receive or a preemption point, or trap exits).  A
 * trapped exit or a DOWN arrives as a message.
 *
 * Roots.  The collector cannot see the coroutine's C locals.  It collects a
 * coroutine process's heap only inside the preemption points above (when
 * the heap needs it, and at each of them under GC stress), and then every
 * term the process holds moves, except those in the slots it registered
 * with sched_root_push (updated in place), its dictionary and its exit
 * reason.  So: a term built on the heap, the spawn argument and a received
 * message are valid until the next such call unless their slot is
 * registered.  Registration is a stack (push the address of a local, pop
 * before the local goes out of scope); its table is allocated on first use.
 *
 * Idle size: an idle coroutine process blocked in a receive costs its PCB,
 * its heap and the stack pages it touched: 4,618 bytes of RSS each for
 * 10,000 of them with a shallow body (test_sched_coroproc, release build:
 * 488 bytes of PCB and heap plus one 4 KiB stack page holding the
 * coroutine's control block and frames), against 2,646 for an idle BEAM
 * process and under 1 KB for an idle behaviour process.
 */

/* A coroutine process body.  Returns 0 to exit normally, SCHED_EEXIT after
 * sched_exit, any other negative code to exit with {callback_error, Code}.
 * `arg` is the spawn argument, copied onto the process heap (see Roots). */
typedef int (*sched_coro_fn)(sched_ctx_t *ctx, term_t arg);

/*
 * Spawns a coroutine process running fn(ctx, arg) (arg copied); options,
 * results and errors as sched_spawn_opt (GD_EINVAL for fn NULL).  The stack
 * is mapped at the first run: if that fails the process exits with
 * {callback_error, GD_ENOMEM}.  O(size of arg).
 */
int sched_spawn_coro_opt(sched_ctx_t *ctx, sched_coro_fn fn, term_t arg,
                         const sched_spawn_opts_t *opts, term_t *pid_out,
                         term_t *ref_out) GD_MUST_CHECK;
int sched_spawn_coro(sched_ctx_t *ctx, sched_coro_fn fn, term_t arg, term_t *pid_out) GD_MUST_CHECK;

/*
 * Blocks the calling coroutine process until the first queued message (in
 * arrival order) that pred(msg, parg) accepts (pred NULL: any message),
 * takes it from the queue and returns 0 with *msg_out on the process heap
 * (valid as the Roots rules say).  The other messages stay queued in
 * order.  timeout_ms < 0 waits forever; otherwise after timeout_ms
 * milliseconds without a match it returns SCHED_ETIMEOUT (0: only what is
 * queued now is looked at).  Each message is offered to pred once per call
 * (the save pointer, as sched_receive).  GD_EINVAL from a behaviour
 * process (or off the process's own coroutine).  Does not return when a
 * signal kills the process meanwhile.
 */
int sched_receive_wait(sched_ctx_t *ctx, sched_pred_fn pred, void *parg, int64_t timeout_ms,
                       term_t *msg_out) GD_MUST_CHECK;

/* As sched_receive_wait for a reply tagged with `ref`: when ref is the one
 * the last sched_make_ref made, messages queued before it are skipped
 * (OTP's reference trick, as sched_receive_ref). */
int sched_receive_ref_wait(sched_ctx_t *ctx, term_t ref, sched_pred_fn pred, void *parg,
                           int64_t timeout_ms, term_t *msg_out) GD_MUST_CHECK;

/* A preemption point (POSIX owns the name sched_yield): charges one
 * reduction and, in a coroutine process
 * whose slice is used up, yields to the scheduler.  True when it yielded
 * (behaviour processes: true when the slice is used up; they should return
 * from the callback). */
bool sched_proc_yield(sched_ctx_t *ctx);

/* Registers the term slot *slot as a root of the calling process until the
 * matching sched_root_pop (see Roots).  Errors: GD_ENOMEM.  O(1)
 * amortised. */
int sched_root_push(sched_ctx_t *ctx, term_t *slot) GD_MUST_CHECK;
/* Unregisters the n slots pushed last (all of them if fewer). */
void sched_root_pop(sched_ctx_t *ctx, size_t n);

/* ---- timers ----
 *
 * Every scheduler thread owns a timing wheel (sched/timer_wheel.h: O(1)
 * insert and cancel, 24 bytes of wheel entry per pending timer, nothing
 * done for a timer until it is due), guarded by a mutex of its own so that
 * a timer can be cancelled from any thread: a process that armed one and
 * migrated since cancels it on the wheel it was armed on.  A scheduler
 * fires its due timers between slices and, when idle, sleeps with
 * pthread_cond_timedwait until its next deadline: pending timers cost no
 * CPU.  The watchdog fires the timers of a scheduler stuck in a long slice.
 * Times are whole milliseconds of the monotonic clock, rounded up: a timer
 * never fires early.
 *
 * A process's own timeout (sched_set_timeout, sched_receive_wait) is a
 * wheel entry inside its PCB: arming allocates nothing.  A fire does not
 * queue a message: it stores the arming's generation in the PCB (an atomic
 * word) and wakes the process; the process acts on it only if that
 * generation is still the current one, so a fire that raced a cancel or a
 * re-arm is ignored.
 */

/*
 * erlang:send_after: after `ms` milliseconds (at most 2^32 - 1) sends msg
 * (copied now) to dest, a local pid or a registered name (looked up when
 * the timer fires; nobody registered: nothing is sent).  *tref_out (may be
 * NULL) is the timer's reference, on ctx's heap, for sched_cancel_timer; a
 * tref needs a ctx (GD_EINVAL without).  ctx may be NULL from outside any
 * process.  Errors: GD_EBADARG (dest neither a pid nor an atom, ms too
 * large), GD_EINVAL, GD_ENOMEM, GD_ESYSTEM_LIMIT (msg too large),
 * SCHED_ESTOPPED.  O(size of msg).
 */
int sched_send_after(sched_ctx_t *ctx, uint64_t ms, term_t dest, term_t msg,
                     term_t *tref_out) GD_MUST_CHECK;

/*
 * erlang:cancel_timer: cancels the timer `tref` names (from any process or
 * thread; ctx may be NULL).  0 with *left_ms (may be NULL) set to the
 * milliseconds that were left (0 when due but not yet fired), or
 * SCHED_ENOTIMER when it already fired, was cancelled, or tref names no
 * timer.  GD_EBADARG when tref is not a local reference.  O(1).
 */
int sched_cancel_timer(sched_ctx_t *ctx, term_t tref, int64_t *left_ms) GD_MUST_CHECK;

/*
 * Behaviour processes (gen_server's {noreply, S, Timeout}): if no message
 * is delivered to handle_message within ms after this call (a selection
 * set with sched_receive is respected: messages it skips do not count),
 * handle_message is called with the atom `timeout` instead and the
 * selection is cancelled.  Any message delivered meanwhile cancels the
 * timeout; ms < 0 cancels it; ms == 0 fires as soon as the callback
 * returns if nothing deliverable is queued.  A later call replaces an
 * earlier one.  Ignored in coroutine processes (they pass a timeout to
 * sched_receive_wait).  O(1).
 */
void sched_set_timeout(sched_ctx_t *ctx, int64_t ms);

/* ---- inspection ---- */

enum sched_status {
    SCHED_STATUS_WAITING = 0,
    SCHED_STATUS_RUNNABLE = 1,
    SCHED_STATUS_RUNNING = 2,
    SCHED_STATUS_EXITING = 3,
};

/* process_info.  Values are those published at the end of the process's
 * last slice (exact for a process that is not running). */
typedef struct sched_process_info {
    enum sched_status status;
    enum sched_priority priority;
    uint32_t message_queue_len; /* messages sent and not yet handled */
    size_t heap_size_words;     /* OTP's total_heap_size */
    uint64_t reductions;
    uint32_t links;
    uint32_t monitors; /* processes this one monitors */
    uint32_t monitored_by;
    /* PCB + heap + link/monitor/alias/dictionary/root tables, and for a
     * coroutine process its stack's used pages (sched_coro_stack_bytes:
     * the top of the mapping down to the deepest suspension point), as
     * OTP's memory item includes the stack. */
    size_t memory_bytes;
    term_t registered_name; /* or [] */
} sched_process_info_t;

/* A process's message_queue_len alone, without process_info's registry
 * lookup (a global lock): 0 when it is gone.  Any thread, O(1). */
uint32_t sched_message_queue_len(term_t pid);
/* Fills *out for pid.  SCHED_ENOPROC for a dead pid.  Any thread. */
int sched_process_info(term_t pid, sched_process_info_t *out) GD_MUST_CHECK;

/* Bytes all live processes use (the sum of their process_info memory:
 * PCB, heap, dictionary, as published at the end of each one's last
 * slice).  Walks every slot of the process table used so far (up to
 * max_procs: a few ms for a million), for metrics scrapes, not hot paths.
 * 0 when the node is not running. */
size_t sched_process_memory(void);

/* Resident set size of this OS process in bytes (/proc/self/statm), 0
 * when unreadable.  Any thread, node running or not; a file read. */
size_t sched_os_rss_bytes(void);
/* The C library's memory policy, set by sched_start (process-wide):
 * blocks below SCHED_MALLOC_MMAP_MIN come from glibc's arenas, and each
 * arena keeps up to SCHED_MALLOC_KEEP bytes of free memory for reuse
 * instead of handing it back to the OS at once (see os.c).  A program
 * that wants another policy calls mallopt after sched_start. */
#define SCHED_MALLOC_MMAP_MIN ((int)4 << 20)
#define SCHED_MALLOC_KEEP ((int)16 << 20)
void sched_os_malloc_policy(void);

/* Node statistics for tests and benchmarks. */
typedef struct sched_stats {
    unsigned schedulers;       /* threads running now (extra included) */
    uint64_t steals;           /* processes moved by stealing */
    uint64_t stuck_marks;      /* times a scheduler was marked stuck */
    uint64_t extra_started;    /* extra scheduler threads started */
    uint64_t reductions;       /* used by every process so far (all schedulers) */
    uint64_t messages;         /* delivered to local processes so far (any sender) */
    uint64_t watchdog_wakeups; /* times the watchdog thread woke (ticks and kicks) */
} sched_stats_t;
void sched_stats(sched_stats_t *out);

/* One scheduler's figures (metrics): processes queued by enum
 * sched_priority, and its share of sched_stats_t's reductions and messages
 * (counted by the thread that did the work; what other threads did is only
 * in the node's sums). */
typedef struct sched_scheduler_stats {
    uint32_t runq_len[4];
    uint64_t reductions;
    uint64_t messages;
} sched_scheduler_stats_t;

/* Fills out[0..] for the schedulers started (at most cap) and returns how
 * many; 0 when the node is not running.  Any thread, no lock. */
unsigned sched_scheduler_stats(sched_scheduler_stats_t *out, unsigned cap);

/* ---- dirty threads: blocking C calls off the schedulers (dirty.c) ---- */

/* Dirty threads when sched_opts_t.dirty_threads is 0 (BEAM starts ten
 * dirty I/O schedulers), and the most sched_start accepts. */
#define SCHED_DIRTY_THREADS_DEFAULT 10
#define SCHED_DIRTY_THREADS_MAX 1024

/* A blocking C function run on a dirty thread; its result becomes Code. */
typedef int (*sched_dirty_fn)(void *arg);

/*
 * Runs fn(arg) on a dirty thread, off the schedulers; the callback returns
 * at once.  When fn returns, the calling process receives the message
 * {Tag, Code} (Tag copied at the call, Code fn's result; dropped if the
 * process has exited).  arg is the caller's to keep valid until then.
 * Calls start in the order made, at most sched_opts_t.dirty_threads at
 * once (threads started by sched_start, asleep while idle).  sched_stop
 * waits for every queued and running call to finish (so a call that never
 * returns blocks it).  Errors: GD_ENOMEM, GD_ESYSTEM_LIMIT (Tag too large),
 * GD_EINVAL (ctx or fn NULL), SCHED_ESTOPPED (the node is stopping).
 * O(size of Tag).
 */
int sched_dirty_call(sched_ctx_t *ctx, sched_dirty_fn fn, void *arg, term_t tag) GD_MUST_CHECK;

/* ---- distribution hooks (sched/dist.c) ----
 * sched/ never includes cluster/: the distribution layer installs these
 * and sched_send / sched_exit_pid call them for targets on other nodes
 * (an external pid, an external reference used as an alias, or {Name,
 * Node} naming another node; {Name, Node} naming this node is a local
 * send).  Hooks run on the caller's thread (a scheduler or any thread),
 * must not block on I/O, and must have copied or encoded msg/reason
 * (which live on the caller's heap) before they return.  `from` is the
 * sending process's pid, or [] outside any process.  They return 0 or a
 * negative code (a send to an unreachable node is dropped and returns 0,
 * as in Erlang). */
typedef struct sched_dist_hooks {
    int (*send)(void *ud, term_t from, term_t to, term_t msg);
    int (*exit)(void *ud, term_t from, term_t to, term_t reason);
    /* sched_link / sched_unlink (unlink true) of an external pid, and
     * sched_monitor of an external pid or {Name, Node}, for the calling
     * process; the hook makes *ref_out (on ctx's heap) and delivers the
     * DOWN later as the message {'DOWN', Ref, process, Item, Reason}. */
    int (*link)(void *ud, sched_ctx_t *ctx, term_t to, bool unlink);
    int (*monitor)(void *ud, sched_ctx_t *ctx, term_t to, term_t *ref_out);
    /* sched_demonitor of a ref the process's own table does not hold. */
    int (*demonitor)(void *ud, sched_ctx_t *ctx, term_t ref);
    /* Optional: after a process's successful send to `to` (ctx non-NULL):
     * the distribution layer may suspend the caller there (back-pressure:
     * a coroutine process blocks in a receive) until the connection's
     * output drains.  A preemption point. */
    int (*sent)(void *ud, sched_ctx_t *ctx, term_t to);
    /* Optional: called on the scheduler thread at the end of every run
     * of a process (before another thread may run it, see
     * sched_dist_cork) once the hooks corked output during that run. */
    void (*run_end)(void *ud);
    void *ud;
} sched_dist_hooks_t;

/* Installs hooks (NULL removes them); the table must stay valid until it
 * is removed and no send can still be using it (i.e. after sched_stop). */
void sched_set_dist_hooks(const sched_dist_hooks_t *hooks);
/* True when `to` names a process on another node (or {Name, Node}). */
bool sched_dist_target(term_t to);
/* sched_send / sched_exit_pid for such targets: GD_EBADARG without hooks. */
int sched_dist_send(sched_ctx_t *ctx, term_t to, term_t msg) GD_MUST_CHECK;
int sched_dist_exit(sched_ctx_t *ctx, term_t to, term_t reason) GD_MUST_CHECK;
/* sched_link/unlink, sched_monitor and sched_demonitor for such targets
 * (demonitor: GD_OK without hooks, as for a monitor that already fired). */
int sched_dist_link(sched_ctx_t *ctx, term_t to, bool unlink) GD_MUST_CHECK;
int sched_dist_monitor(sched_ctx_t *ctx, term_t to, term_t *ref_out) GD_MUST_CHECK;
int sched_dist_demonitor(sched_ctx_t *ctx, term_t ref) GD_MUST_CHECK;
/* Corking: while a process runs on a scheduler (sched_dist_in_run), the
 * distribution layer may hold what the process sends and write it in one
 * go; sched_dist_cork asks for the hooks' run_end at the end of this run
 * (when the process yields, waits in a receive, is suspended or exits),
 * so held output never outlives the run that made it. */
bool sched_dist_in_run(void);
void sched_dist_cork(void);

/* ---- idle polling (sched/scheduler.c) ----
 * A scheduler that ran out of work spins a while before it sleeps; when
 * its last idle stretch was short (work comes back quickly, as replies
 * do) it yields the CPU between looks for up to ~300 µs.  In that phase
 * it calls poll(ud, who) once per round: the distribution layer installs
 * a poller that reads its sockets there, so a reply that arrives while a
 * scheduler waits for it is read and delivered on that scheduler, with
 * no other thread to wake (the loop thread's epoll wake-up cost as much
 * as the rest of a round trip).  `who` is the scheduler's number from 1.
 * poll runs outside any process, must not block, and returns true when it
 * delivered or started anything.  A spin that found work keeps polling
 * between the slices of that work for a while (idle false then, see
 * scheduler.c's POLL_HOLD_NS).  done(ud, who) is called once when that
 * ends (the scheduler goes to sleep or stays busy), from the scheduler or
 * from the watchdog for a slice longer than its tick.  Both may still be
 * called once after the poller was removed (a spin that loaded it
 * earlier): they must stay callable. */
typedef struct sched_idle_poller {
    bool (*poll)(void *ud, unsigned who, bool idle);
    void (*done)(void *ud, unsigned who);
    void *ud;
} sched_idle_poller_t;

/* Installs the idle poller (NULL removes it); the table must stay valid
 * for as long as the process runs (see above). */
void sched_set_idle_poller(const sched_idle_poller_t *poller);
/* True on a scheduler thread (inside a process or not): code that may
 * run there must not wait for a process to act. */
bool sched_on_scheduler(void);
/* How many processes wait to run on the calling scheduler after the
 * current one (0 off a scheduler; a hint, read without the queue's lock):
 * I/O code uses it to queue output for one batched write instead of a
 * syscall per message while many processes are sending. */
uint32_t sched_runnable_here(void);

#endif /* GIRDER_SCHED_H */
