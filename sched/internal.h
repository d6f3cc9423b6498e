/*
 * internal.h — what the files of sched/ share: the PCB, the inbox, the
 * process table, run queues and the node.
 */
#ifndef GIRDER_SCHED_INTERNAL_H
#define GIRDER_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "sched.h"
#include "timer_wheel.h"

/* ---- messages and signals ---- */

enum msg_kind {
    MSG_MESSAGE = 0,   /* term: the message */
    SIG_EXIT = 1,      /* from, term: reason; linked: from a link */
    SIG_LINK = 2,      /* from */
    SIG_UNLINK = 3,    /* from */
    SIG_MONITOR = 4,   /* from, ref, name: the name monitored or NONE */
    SIG_DEMONITOR = 5, /* from, ref */
    SIG_DOWN = 6,      /* from, ref, name, term: reason */
    MSG_ALIAS = 7,     /* a message sent to alias ref (term); becomes MSG_MESSAGE if active */
    SIG_RESUME = 8,    /* sched_resume: ends a sched_suspend */
    /* from (the monitored pid, or NONE for an unregistered name), ref,
     * name: a monitor another thread set up for this process
     * (sched_monitor_for, spawn's watcher): it joins its monitors. */
    SIG_MONITOR_ADD = 9,
};

/* A local reference's id words (all refs the runtime makes are local). */
typedef struct sched_ref {
    uint32_t w[3];
} sched_ref_t;

/*
 * Alias references carry their owner's pid data, so a send to one finds
 * the owner without a global table (as OTP's pid-refs): word 1 holds the
 * pid's 28 data bits, and bit 15 of word 2 marks the ref as an alias (no
 * other ref the runtime makes sets it: plain refs keep word 2 below 2^14,
 * timer refs use bits 0-13 and 16-31).  Whether the alias is still active
 * is the owner's to decide, when the message reaches it.
 */
#define REF_W2_ALIAS 0x8000u
#define REF_W1_PID_MASK 0x0FFFFFFFu

/* The inbox link: first in every queued item, and the inbox's sentinel. */
typedef struct msg_link {
    /* Written by the producer that queued the next item (release), read by
     * the consumer (acquire) in inbox_take. */
    _Atomic(struct msg_link *) next;
} msg_link_t;

/* A message or signal.  Owned by the queue it is in; the fragment holds
 * its terms until the receiver attaches it. */
typedef struct msg {
    msg_link_t link;
    struct msg *qnext; /* private queue (owner only) */
    heap_frag_t *frag; /* NULL when term is immediate or absent */
    term_t term;       /* message or reason */
    term_t from;       /* sender pid (signals) */
    term_t name;       /* monitor by name: the atom; else TERM_NONE */
    sched_ref_t ref;   /* monitors */
    uint8_t kind;
    bool linked;
    /* This msg_t lives in its fragment's block (heap_msg_copy_carry): freed
     * with the fragment, which the receiver's heap owns once accepted. */
    bool in_frag;
} msg_t;

/* ---- timers ---- */

/* What a wheel holds: a timer and what it is for.  `gen` is the arming's
 * generation (process timeouts). */
enum { TK_PROC = 0, TK_SEND = 1 };
typedef struct timer_entry {
    sched_timer_t t;
    uint32_t kind; /* TK_* */
    uint32_t gen;
} timer_entry_t;

/* ---- PCB ---- */

/* Process state word flags (sched_proc.state). */
#define PS_ACTIVE 0x1u  /* work was published since the runner last looked */
#define PS_RUNNING 0x2u /* a scheduler runs it now */
#define PS_IN_RUNQ 0x4u /* it is in a run queue (exactly one) */
#define PS_EXITING 0x8u /* exiting or dead: never queued again */

/* PCB flags (owner only). */
#define PF_TRAP_EXIT 0x1u
#define PF_INITED 0x2u
#define PF_EXIT_PENDING 0x4u /* a signal decided the process dies; act after the callback */
#define PF_SUSPENDED 0x8u    /* sched_suspend: no callback runs until SIG_RESUME */

typedef struct link_set {
    uint32_t n, cap;
    term_t pids[];
} link_set_t;

typedef struct mon_entry {
    sched_ref_t ref;
    term_t pid;  /* the other process */
    term_t name; /* monitored by name: the atom; else TERM_NONE */
} mon_entry_t;

typedef struct mon_set {
    uint32_t n, cap;
    mon_entry_t e[];
} mon_set_t;

/* Coroutine process states (sched_proc.cstate). */
enum {
    CS_RUN = 0,  /* running, or preempted: resume it when it is picked */
    CS_WAIT = 1, /* blocked in sched_receive_wait: resume when it may go on */
    CS_DONE = 2, /* its function returned */
    CS_DEAD = 3, /* parked for good: it is exiting (never resumed) */
};

/* Root slots a coroutine registered (sched_root_push), allocated on first
 * use. */
typedef struct root_stack {
    uint32_t n, cap;
    term_t *slot[];
} root_stack_t;

/* An active alias (sched_alias_create_opt, sched_monitor_alias). */
typedef struct alias_entry {
    sched_ref_t ref;
    uint32_t mode; /* enum sched_alias_mode */
} alias_entry_t;

typedef struct alias_set {
    uint32_t n, cap;
    alias_entry_t e[];
} alias_set_t;

typedef struct dict {
    uint32_t n, cap;
    term_t kv[]; /* key, value pairs */
} dict_t;

/*
 * The PCB.  Everything a process owns that is not always needed is a
 * pointer to a table allocated on first use (links, monitors, dictionary,
 * root slots), so an idle behaviour process is this struct plus its heap;
 * a coroutine process adds its coroutine (the stack mapping, with the
 * coroutine's control block at its top).  The timeout is an intrusive
 * timer-wheel entry (next to `sel_pred`).
 */
struct sched_proc {
    heap_t heap;
    /* The wake-up state word (PS_*); see sched.h.  Every change is an RMW. */
    _Atomic uint32_t state;
    uint8_t prio;
    uint8_t flags; /* PF_* */
    uint16_t home; /* run queue index it was last queued on */
    term_t pid;
    /* Inbox (Vyukov intrusive MPSC): producers exchange tail, the owner
     * takes from head; the sentinel keeps it non-empty. */
    _Atomic(msg_link_t *) in_tail;
    msg_link_t *in_head;
    msg_link_t in_sentinel;
    /* message_queue_len is qlen_in - qlen_out (proc_qlen).  Senders add
     * to qlen_in (relaxed RMW); the owner counts what it handled in
     * qlen_out with a plain relaxed load and store, so taking a message
     * costs no locked instruction (a fetch_sub there was ~7% of a ring
     * hop).  A statistic: read relaxed. */
    _Atomic uint32_t qlen_in, qlen_out;
    int32_t reds; /* left in this slice */
    /* Private queue: messages taken from the inbox, in order. */
    msg_t *q_first;
    msg_t **q_last;
    msg_t **save; /* selective receive: next link to scan */
    msg_t **mark; /* queue end when mark_ref was made; NULL if none */
    sched_ref_t mark_ref;
    sched_pred_fn sel_pred; /* selection in force, or NULL */
    void *sel_arg;
    /* The process's own timeout (sched_set_timeout, receive_wait): armed,
     * cancelled and fired only under the lock of wheel tmo_wheel - 1 (0:
     * not armed), so a process that migrated cancels it safely.  Each arm
     * and cancel bumps tmo.gen; a fire stores the generation it was armed
     * with in tmo_fired and wakes the process, which acts on it only while
     * tmo_fired == tmo.gen (a stale fire is ignored). */
    timer_entry_t tmo;
    _Atomic uint32_t tmo_fired;
    uint16_t tmo_wheel;
    bool tmo_on;                  /* a timeout is in force (armed, or due at once) */
    const sched_behaviour_t *beh; /* behaviour processes; NULL for coroutines */
    /* Coroutine processes: the body, its coroutine (made at the first run),
     * where it stands (CS_*), its result, and the registered root slots. */
    sched_coro_fn cfn;
    struct sched_coro *coro;
    struct root_stack *roots;
    int cresult;
    uint8_t cstate;
    term_t st;             /* behaviour state (root) */
    term_t reason;         /* exit reason once decided (root) */
    heap_frag_t *arg_frag; /* spawn argument until init */
    term_t arg;
    link_set_t *links;
    mon_set_t *monitors;     /* processes this one monitors */
    mon_set_t *monitored_by; /* processes monitoring this one */
    dict_t *dict;
    alias_set_t *aliases; /* active aliases (owner only) */
    term_t name;          /* registered name or TERM_NIL */
    struct sched_proc *rq_next;
    /* Published by the owner at the end of each slice for process_info
     * (relaxed: statistics, read from any thread). */
    _Atomic uint64_t pub_reds;
    _Atomic uint32_t pub_heap_words;
    _Atomic uint16_t pub_links;
    _Atomic uint16_t pub_monitors;
    _Atomic uint16_t pub_monitored_by;
    _Atomic uint16_t pub_pad;
    _Atomic uint32_t pub_dict_bytes;
};
typedef struct sched_proc sched_proc_t;

/* Charges ctx (may be NULL: nobody to charge) for sending m: a reduction,
 * plus one per 16 words copied. */
static inline void proc_charge_send(sched_proc_t *ctx, const msg_t *m)
{
    if (ctx != NULL)
        ctx->reds -= 1 + (int32_t)(m->frag != NULL ? m->frag->used / 16 : 0);
}

/* ---- process table ---- */

/* Slot word: refs:32 | serial << 32 (at most 28 bits: sched_node.serial_mask)
 * | LIVE << 62. */
#define SLOT_REFS_MASK 0xFFFFFFFFull
#define SLOT_SERIAL_SHIFT 32
#define SLOT_LIVE (1ull << 62)

typedef struct slot {
    /* Lookups CAS refs+1 (acquire: see the PCB published with it); the
     * spawner stores LIVE with release after filling the PCB; drops are
     * acq_rel so the last one sees every holder's accesses. */
    _Atomic uint64_t word;
    sched_proc_t *proc; /* written before the release store of LIVE */
} slot_t;

/* Looks pid up and takes a reference (NULL: not a live local process). */
sched_proc_t *proc_get(term_t pid);
/* Drops a reference taken by proc_get (or the process's own). */
void proc_put(sched_proc_t *p);
/* True once pid's exit is complete (its exit signals sent, its own
 * reference dropped), or pid never named a process. */
bool proc_exit_done(term_t pid);

/* ---- PCB memory (pcb_pool.c) ---- */

/* The PCBs of the chunks a pool carved: free ones (linked through
 * rq_next), the chunk being carved, and the ones other threads freed (a
 * stack they push to, the owner takes whole). */
typedef struct pcb_pool {
    sched_proc_t *free;
    size_t nfree;
    char *bump, *bump_end;
    _Atomic(sched_proc_t *) remote;
    /* PCBs pushed on `remote` since the owner last took them (signed: a
     * take can count a PCB before its pusher does).  Relaxed: a wake-up
     * hint, see pcb_pool_trim_due. */
    _Atomic int64_t remote_count;
    size_t chunks;    /* chunks this pool carved and still holds */
    size_t trim_mark; /* nfree after the last trim (lowered as PCBs are reused) */
} pcb_pool_t;

/* A zeroed PCB, from this scheduler's pool (or the shared one off the
 * schedulers); NULL when memory is short. */
sched_proc_t *pcb_alloc(void);
/* Gives a PCB back to the pool that carved it. */
void pcb_free(sched_proc_t *p);
/* Unmaps the chunks of this scheduler's pool (and the shared pool's) whose
 * PCBs are all free; called when the scheduler idles.  Returns how many. */
struct runq;
size_t pcb_pool_trim(struct runq *rq);
/* Whether other threads gave rq's pool back a chunk's worth of PCBs that
 * it has not taken yet: an idling scheduler checks it under its lock
 * before it sleeps, as pcb_free wakes a sleeping owner when the count
 * gets there, so the chunks those PCBs free are unmapped (the reaper of
 * another scheduler's zombies is not their pool's owner). */
bool pcb_pool_trim_due(struct runq *rq);
/* Bytes of PCB chunks mapped now (all pools). */
size_t pcb_mapped_bytes(void);
/* Unmaps every chunk (node stop, after the last PCB was freed). */
void pcb_pools_free(void);

/* ---- run queues and schedulers ---- */

#define RQ_PRIOS 4
typedef struct runq {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    sched_proc_t *head[RQ_PRIOS], *tail[RQ_PRIOS]; /* by enum sched_priority */
    uint32_t normal_picks;
    bool sleeping; /* under lock */
    bool wake_pending;
    /* Queued processes: written under lock, read without it (relaxed) by
     * stealers and the watchdog as a hint. */
    _Atomic uint32_t len;
    /* The same by priority, for metrics only (under lock, read relaxed). */
    _Atomic uint32_t plen[RQ_PRIOS];
    /* Reductions used and messages delivered by this scheduler's thread:
     * written by that thread alone with a relaxed load and store (no RMW,
     * no shared cache line bouncing between schedulers), summed on demand
     * by sched_scheduler_stats. */
    _Atomic uint64_t stat_reductions, stat_messages;
    /* Slice start (ns) of the process running now, 0 between slices:
     * stored by the scheduler (relaxed), read by the watchdog. */
    _Atomic uint64_t slice_start;
    /* Set by the watchdog, cleared by the scheduler at the slice end
     * (release/acquire: a stealer that sees it may take the whole queue). */
    _Atomic bool stuck;
    /* The run-next slot (Go's runnext, BEAM's habit of running a woken
     * receiver on the sender's scheduler): a normal-priority process that
     * a process running here woke, run before the queue without taking
     * the queue lock or waking another thread.  The owner fills and empties
     * it; a stealer of a stuck queue empties it too (exchanges, acq_rel:
     * the PCB is handed over as through the queue lock).  Not counted in
     * len. */
    _Atomic(sched_proc_t *) next;
    /* Reductions used by the chain of slot runs since the last pick from
     * the queue (owner only): once a slice's worth, wake-ups go to the
     * queue's tail, so two processes waking each other cannot keep the
     * rest of the queue waiting longer than one slice would. */
    int32_t chain_reds;
    /* The idle poller's role (sched_set_idle_poller), kept while the work
     * a spin found runs: poll_held says its done is still owed (cleared
     * by exchange, by the owner or by the watchdog for a long slice),
     * poll_ip is the table it polled, poll_since when the spin found the
     * work and poll_last the last poll (owner only). */
    _Atomic bool poll_held;
    _Atomic(const sched_idle_poller_t *) poll_ip; /* relaxed: poll_held orders it */
    uint64_t poll_since, poll_last;
    /* The scheduler's cached clock (owner only): refreshed from
     * clock_gettime (50-80 ns in this VM, 10% of a ring hop) only when the
     * TSC says ~30 µs or more passed since the last read. */
    uint64_t clock_ns, clock_tsc;
    pthread_t thread;
    bool started;
    unsigned index;
    /* The watchdog's own record (watchdog only) of the long slice it is
     * watching: its start and the thread's CPU time when first seen past
     * stuck_ns, and the thread's CPU clock (looked up once). */
    uint64_t wd_slice, wd_cpu0;
    clockid_t wd_clock;
    bool wd_clock_known, wd_clock_ok;
    /* This scheduler's timers (timer.c).  Any thread may arm or cancel a
     * timer of any wheel under tlock (a process may have migrated since it
     * armed one; a timer made off the schedulers picks a wheel); the owner
     * advances it between slices and sleeps until tnext, the watchdog
     * advances the wheel of a scheduler stuck in a long slice. */
    pthread_mutex_t tlock;
    sched_timer_wheel_t wheel;
    /* Earliest pending deadline (ms), UINT64_MAX when none: written under
     * tlock, read without it as a hint (relaxed; a late read costs one
     * more look, the owner's sleep re-reads it under rq->lock). */
    _Atomic uint64_t tnext;
    struct send_timer **tmap; /* send_after timers by key (chained hash) */
    size_t tmap_cap, tmap_n;
    pcb_pool_t pcbs; /* this scheduler's PCBs (owner only) */
    /* The outbox (process.c, outbox_*; owner only): messages the running
     * process sent in a row to one other local process, delivered as one
     * chain (one exchange on the receiver's inbox, one reference, one
     * queue-length add) when it sends or signals anything else, asks for
     * process_info, spawns, charges reductions, reaches OUTBOX_MAX or ends
     * its slice.  `to` holds a reference while the outbox is open (NULL:
     * closed); last_to is the target of the slice's last plain send (a
     * pointer to compare, no reference: the second send in a row to it
     * opens the outbox). */
    struct {
        sched_proc_t *to, *last_to;
        struct msg *first, *last;
        uint32_t n;
    } outbox;
    /* Borrowed PCBs (scheduler.c): the reclaim epoch this scheduler saw
     * at its last quiescent state (UINT64_MAX while it sleeps or before it
     * starts), and whether it holds a borrowed PCB now (borrow_begin).
     * The owner writes both; reapers read them. */
    _Atomic uint64_t qs_epoch;
    _Atomic bool borrowing;
} __attribute__((aligned(64))) runq_t;

/* A borrowed lookup (proc_peek) on scheduler rq starts: a reaper that
 * finds rq lagging behind its epoch and issues a process-wide barrier
 * (sched_os_membarrier) then sees this flag, or this thread's slot loads
 * after it see what the reaper saw.  Only the compiler needs fencing. */
static inline void borrow_begin(runq_t *rq)
{
    atomic_store_explicit(&rq->borrowing, true, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
}

/* The borrowed PCB is no longer used (release: the uses come before a
 * reaper's acquire load that sees the flag clear). */
static inline void borrow_end(runq_t *rq)
{
    atomic_store_explicit(&rq->borrowing, false, memory_order_release);
}

/* Queues p (which the caller just marked IN_RUNQ) on a run queue. */
void runq_push(sched_proc_t *p);
/* As runq_push for a process a wake-up (a message or signal) made
 * runnable: from a process running on a scheduler, into that scheduler's
 * run-next slot when the rules allow (normal priority, scheduler not
 * stuck, chain within a slice). */
void runq_push_woken(sched_proc_t *p);

/* The node. */
typedef struct node {
    /* When a scheduler last gave the C library's free memory back
     * (scheduler.c's trim_free_memory). */
    _Atomic uint64_t last_malloc_trim_ns;
    /* Processes were reaped since that trim (relaxed: a hint); an idling
     * scheduler that finds the trim due later sleeps until then. */
    _Atomic bool malloc_trim_owed;
    /* The idle poller (sched_set_idle_poller), NULL when none: release on
     * store, acquire on load, as the distribution hooks. */
    _Atomic(const sched_idle_poller_t *) idle_poller;
    slot_t *slots;
    uint32_t max_procs;
    pthread_mutex_t free_lock;
    uint32_t *free_ring; /* freed slot indices, FIFO */
    uint32_t free_head, free_count;
    uint32_t fresh; /* next never-used index */
    _Atomic uint32_t nprocs;
    /* Zombies: PCBs whose last reference dropped, reaped by schedulers
     * (Treiber stack: push CAS release, take exchange acquire). */
    _Atomic(sched_proc_t *) zombies;
    /* Borrowed PCBs (scheduler.c): schedulers may look pids up without a
     * reference (borrow_ok: the process-wide barrier is available), so a
     * zombie waits in limbo until every scheduler passed a quiescent
     * state after the epoch its batch was given.  limbo, limbo_epoch and
     * limbo_since (ns) are under limbo_lock; limbo_full is a hint. */
    bool borrow_ok;
    _Atomic uint64_t reclaim_epoch;
    pthread_mutex_t limbo_lock;
    sched_proc_t *limbo;
    uint64_t limbo_epoch, limbo_since;
    _Atomic bool limbo_full;
    runq_t *rqs;
    unsigned nsched;       /* base schedulers */
    unsigned max_rqs;      /* base + extra */
    bool no_yield_spin;    /* sched_opts_t's, for spin_for_work */
    _Atomic unsigned nrqs; /* started (release after the queue is ready) */
    _Atomic unsigned sleepers;
    _Atomic bool stopping;
    uint64_t stuck_ns;
    pthread_t watchdog;
    bool watchdog_started;
    pthread_mutex_t wd_lock;
    pthread_cond_t wd_cond;
    /* True while the watchdog sleeps waiting for work (seq_cst: see
     * rq_append and watchdog_kick). */
    _Atomic bool wd_idle;
    /* One watchdog pass at a time, by the watchdog or a spinning
     * scheduler (watchdog_pass_locked), and when a spinning scheduler
     * last made one (relaxed: the watchdog's hint to sleep longer). */
    pthread_mutex_t wd_pass_lock;
    _Atomic uint64_t wd_spin_pass_ns;
    pthread_mutex_t exit_lock; /* exit waiters */
    pthread_cond_t exit_cond;
    _Atomic uint32_t exit_waiters;
    _Atomic uint64_t ref_counter;
    _Atomic uint64_t steals, stuck_marks, extra_started, wd_wakeups;
    /* Schedulers marked stuck now (the watchdog adds, a scheduler whose
     * slice ended subtracts; relaxed: a hint that makes busy schedulers
     * look for a stuck queue to take over after each slice). */
    _Atomic unsigned stuck_now;
    /* PCB memory (pcb_pool.c): the pool of threads that are no scheduler
     * and the chunks, under pool_lock. */
    pthread_mutex_t pool_lock;
    pcb_pool_t shared_pool;
    struct pcb_chunk *pcb_chunks;   /* every pool's, doubly linked */
    _Atomic size_t pcb_chunk_count; /* relaxed: a statistic */
    /* Reductions and delivered messages counted off the schedulers (the
     * distribution loop thread, foreign threads): RMWs, rarer than the
     * per-scheduler ones. */
    _Atomic uint64_t stat_reductions_other, stat_messages_other;
    /* A pid's 28 data bits: the low idx_bits index the table, the rest
     * (serial_mask) count the slot's reuses. */
    unsigned idx_bits;
    uint64_t serial_mask;
} node_t;

extern node_t sched_node;
/* True while the node runs (acquire: pairs with the release in start). */
bool node_running(void);

/* Per-thread: the scheduler (run queue) this thread runs, or NULL. */
extern _Thread_local runq_t *sched_current_rq;

/* Tests only (0 in production): every Nth message push of a thread stalls
 * ~20 µs between reading the receiver's state word and linking the
 * message (process.c deliver), to show the wake-up protocol survives it. */
extern _Atomic uint32_t sched_test_push_stall_every;
/* Tests only: the stall's length in µs (0: 20 µs), and the one sender
 * whose pushes stall (0: every sender). */
extern _Atomic uint32_t sched_test_push_stall_us;
extern _Atomic term_t sched_test_push_stall_from;

/* Runs one slice of p on the current scheduler (process.c); returns the
 * reductions it used (p may be gone by then). */
int32_t proc_run(sched_proc_t *p);
/* Delivers what the running process's outbox holds (see runq_t.outbox);
 * nothing off the schedulers.  Before anything that lets another thread
 * see the sender act (its signals, a spawn, a remote send). */
void proc_outbox_flush(void);
/* Set by sched_dist_cork: the running process's distribution output is
 * held until its run ends (sched_dist_run_end, called by proc_run). */
extern _Thread_local bool sched_dist_corked;
void sched_dist_run_end_(void);
static inline void sched_dist_run_end(void)
{
    if (sched_dist_corked)
        sched_dist_run_end_();
}

/* Adds v to one of the current scheduler's statistics (own: the field of
 * sched_current_rq) or, off the schedulers, to the node's (other). */
static inline void sched_stat_add(_Atomic uint64_t *own, _Atomic uint64_t *other, uint64_t v)
{
    if (own != NULL)
        atomic_store_explicit(own, atomic_load_explicit(own, memory_order_relaxed) + v,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(other, v, memory_order_relaxed);
}
/* Frees a zombie: answers signals that raced its exit, frees the PCB and
 * returns the slot (process.c). */
void proc_reap(sched_proc_t *p);
/* proc_reap for each PCB of a list linked through rq_next. */
void proc_reap_list(sched_proc_t *z);
/* The process-wide memory barrier (os.c): registers for it (false when
 * the kernel refuses) and issues one (false on failure). */
bool sched_os_membarrier_init(void);
bool sched_os_membarrier(void);
/* Frees every live process and zombie at node stop (process.c). */
void proc_destroy_all(void);
/* Interns the atoms sched/ uses (process.c; at node start). */
int proc_atoms_init(void) GD_MUST_CHECK;
/* The registry (registry.c): a mutex-protected open-addressing table from
 * name atom to pid. */
int registry_init(void) GD_MUST_CHECK;
void registry_free(void);
/* Removes name if it is registered to pid (process exit). */
void registry_remove_if(term_t name, term_t pid);
/* The name pid is registered under, or [] (O(names)). */
term_t sched_registered_name(term_t pid);
/* Wakes a sleeping scheduler so that it reaps the zombies. */
void sched_kick_reaper(void);
/* Wakes the watchdog (it sleeps while no process is runnable). */
void watchdog_kick(void);

/* Monotonic nanoseconds. */
uint64_t sched_now_ns(void);

/* ---- timers (timer.c) ---- */

/* Initialises rq's wheel and its lock (node start). */
void timer_rq_init(runq_t *rq, uint64_t now_ms);
/* Frees the pending send_after timers and the lock (node stop, threads
 * joined). */
void timer_rq_free(runq_t *rq);
/* Fires rq's timers due at now_ms (any thread; takes rq's tlock). */
void timer_rq_advance(runq_t *rq, uint64_t now_ms);
/* Arms p's timeout (owner only) to fire `ms` from now; ms == 0 means due at
 * once.  Cancels a previous one. */
void proc_timeout_arm(sched_proc_t *p, int64_t ms);
/* Cancels p's timeout (owner only; no-op when none). */
void proc_timeout_cancel(sched_proc_t *p);
/* True when p's timeout in force has fired (owner only). */
bool proc_timeout_fired(sched_proc_t *p);
/* Frees a message never delivered (process.c). */
void proc_msg_free(struct msg *m);
/* Wakes p after one of its timers fired (process.c). */
void proc_wake(sched_proc_t *p);
/* Delivers message m (consumed) to the process `to` names (a pid or a
 * registered name, resolved now); dropped when there is none (process.c). */
void proc_deliver_to(term_t to, struct msg *m);
/* The scheduler this thread runs, or NULL.  Not inlined: code inside a
 * coroutine must re-read the thread-local after each yield. */
runq_t *sched_this_rq(void);
/* A fresh unique counter value for references (process.c). */
uint64_t proc_ref_counter(void);
/* Wakes rq's scheduler if it sleeps (scheduler.c). */
bool rq_wake_sleeper(runq_t *rq);

/* ---- dirty threads (dirty.c) ---- */

/* Starts the pool's max_threads threads (0 = the default) at node start.
 * Errors: GD_EINVAL (above SCHED_DIRTY_THREADS_MAX), GD_ENOMEM,
 * GD_ESYSTEM_LIMIT (dirty_stop cleans up after a failure). */
int dirty_start(unsigned max_threads) GD_MUST_CHECK;
/* At node stop, before the schedulers stop: refuses new calls, waits for
 * the queued and running ones to finish and deliver, joins the threads.
 * A no-op when the pool was not started. */
void dirty_stop(void);

/* The message {Tag, 0} (tag copied) in a fragment of its own, ready for
 * proc_deliver_to once element 2 holds the real code (process.c).
 * Errors: GD_ENOMEM, GD_ESYSTEM_LIMIT (tag too large). */
int proc_msg_prepare(term_t tag, msg_t **out) GD_MUST_CHECK;

#endif /* GIRDER_SCHED_INTERNAL_H */
