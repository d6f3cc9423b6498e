/*
 * process.c — the process table, PCBs, inboxes, signals, the behaviour run
 * loop and process exit.
 */
#include <stdlib.h>

#include "coro.h"
#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Identity: the one place sched/ makes pids and refs from heap/'s API.      */

/*
 * A local pid carries 28 bits of data, as OTP's (its ETF number field holds
 * the low 15, the serial field the high 13; binary_to_term refuses more).
 * As in BEAM, the low idx_bits of the data index the process table and the
 * bits above count reuses of that slot, so a pid is reused only after
 * 2^(28 - idx_bits) lives of its slot (and the free list is FIFO).
 */
static uint32_t pid_data(term_t pid)
{
    return term_local_pid_id(pid) | term_local_pid_serial(pid) << 15;
}
static uint32_t pid_index(term_t pid)
{
    return pid_data(pid) & ((1u << sched_node.idx_bits) - 1);
}
static uint32_t pid_serial(term_t pid)
{
    return pid_data(pid) >> sched_node.idx_bits;
}

/* The pid term of table slot idx with serial `serial` (< serial_mask + 1). */
static term_t make_pid(uint32_t idx, uint32_t serial)
{
    uint32_t data = idx | serial << sched_node.idx_bits;
    return term_make_local_pid(data & HEAP_LOCAL_PID_NUMBER_MAX, data >> 15);
}

bool sched_pid_slot(term_t pid, uint32_t *index, uint32_t *serial)
{
    if (!term_is_local_pid(pid) || pid_index(pid) >= sched_node.max_procs)
        return false;
    *index = pid_index(pid);
    *serial = pid_serial(pid);
    return true;
}

uint64_t proc_ref_counter(void)
{
    /* Relaxed: uniqueness needs only the atomicity of the increment. */
    return atomic_fetch_add_explicit(&sched_node.ref_counter, 1, memory_order_relaxed);
}

/* A fresh reference id (unique for the node's life).  Its third word stays
 * below 2^14: timer references (timer.c) use the bits above. */
static sched_ref_t new_ref(void)
{
    uint64_t c = proc_ref_counter();
    sched_ref_t r = {{(uint32_t)(c & 0x3FFFF), (uint32_t)(c >> 18), (uint32_t)(c >> 50)}};
    return r;
}

/* The ref term for r on heap h. */
static int ref_term(heap_t *h, sched_ref_t r, term_t *out)
{
    return heap_make_local_ref(h, r.w, out);
}

/* The id words of a ref term made by ref_term; false for any other term. */
static bool ref_words(term_t t, sched_ref_t *r)
{
    if (!term_is_local_ref(t))
        return false;
    heap_ident_t id;
    heap_ident(t, &id);
    for (int i = 0; i < 3; i++)
        r->w[i] = id.words[i];
    return true;
}

static bool ref_eq(sched_ref_t a, sched_ref_t b)
{
    return a.w[0] == b.w[0] && a.w[1] == b.w[1] && a.w[2] == b.w[2];
}

/* A fresh alias reference owned by pid: the owner's 28 data bits in word
 * 1, REF_W2_ALIAS in word 2, and 48 bits of the node's counter spread
 * over the rest (word 0's 18 bits, word 1's top 4, word 2's bits 0-14
 * below the flag and 16-31 above it), so aliases are unique. */
static sched_ref_t new_alias_ref(term_t owner)
{
    uint64_t c = proc_ref_counter();
    sched_ref_t r = {
        {(uint32_t)(c & 0x3FFFF), pid_data(owner) | (uint32_t)((c >> 18) & 0xF) << 28,
         (uint32_t)((c >> 22) & 0x7FFF) | REF_W2_ALIAS | (uint32_t)((c >> 37) & 0xFFFF) << 16}};
    return r;
}

/* The owner's pid of an alias reference's words; false for other refs. */
static bool alias_pid(sched_ref_t r, term_t *pid)
{
    if (!(r.w[2] & REF_W2_ALIAS))
        return false;
    uint32_t data = r.w[1] & REF_W1_PID_MASK;
    *pid = term_make_local_pid(data & HEAP_LOCAL_PID_NUMBER_MAX, data >> 15);
    return true;
}

bool sched_alias_owner(term_t ref, term_t *pid_out)
{
    sched_ref_t r;
    return ref_words(ref, &r) && alias_pid(r, pid_out);
}

/* ------------------------------------------------------------------------ */
/* Process table                                                            */

static int slot_alloc(uint32_t *idx_out)
{
    node_t *n = &sched_node;
    int rc = GD_OK;
    pthread_mutex_lock(&n->free_lock);
    /* Fresh indices first, then the oldest freed: a pid comes back only
     * after every other slot was used since (BEAM's index + serial). */
    if (n->fresh < n->max_procs) {
        *idx_out = n->fresh++;
    } else if (n->free_count > 0) {
        *idx_out = n->free_ring[n->free_head];
        n->free_head = (n->free_head + 1) % n->max_procs;
        n->free_count--;
    } else {
        rc = SCHED_ETOO_MANY;
    }
    pthread_mutex_unlock(&n->free_lock);
    return rc;
}

static void slot_free(uint32_t idx)
{
    node_t *n = &sched_node;
    pthread_mutex_lock(&n->free_lock);
    n->free_ring[(n->free_head + n->free_count) % n->max_procs] = idx;
    n->free_count++;
    pthread_mutex_unlock(&n->free_lock);
}

/* Whether slot word w names pid's process alive (LIVE, pid's serial). */
static inline bool slot_names(uint64_t w, term_t pid)
{
    return (w & SLOT_LIVE) &&
           ((w >> SLOT_SERIAL_SHIFT) & sched_node.serial_mask) == pid_serial(pid);
}

sched_proc_t *proc_get(term_t pid)
{
    if (!term_is_local_pid(pid))
        return NULL;
    uint32_t idx = pid_index(pid);
    if (idx >= sched_node.max_procs)
        return NULL;
    slot_t *s = &sched_node.slots[idx];
    /* Acquire pairs with the spawner's release store of LIVE (and the
     * release sequence of later RMWs): s->proc and the PCB are visible. */
    uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
    for (;;) {
        if (!slot_names(w, pid))
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&s->word, &w, w + 1, memory_order_acquire,
                                                  memory_order_acquire))
            return s->proc;
    }
}

/* The live process pid names, borrowed: no reference, valid until this
 * scheduler's next quiescent state (scheduler.c, "Borrowed PCBs").  Only
 * on a scheduler thread, between borrow_begin and borrow_end, and never
 * kept past borrow_end. */
static sched_proc_t *proc_peek(term_t pid)
{
    uint32_t idx = pid_index(pid);
    if (idx >= sched_node.max_procs)
        return NULL;
    slot_t *s = &sched_node.slots[idx];
    /* Seq_cst (acquire for s->proc and the PCB, as proc_get's): a
     * scheduler back from sleep must see the clearing a reaper relied
     * on (qs_online). */
    uint64_t w = atomic_load_explicit(&s->word, memory_order_seq_cst);
    return slot_names(w, pid) ? s->proc : NULL;
}

void proc_put(sched_proc_t *p)
{
    slot_t *s = &sched_node.slots[pid_index(p->pid)];
    /* acq_rel: the release half orders this holder's accesses to the PCB
     * before the drop; the acquire half lets the last dropper (who queues
     * the zombie) see all of them. */
    uint64_t w = atomic_fetch_sub_explicit(&s->word, 1, memory_order_acq_rel);
    if ((w & SLOT_REFS_MASK) != 1)
        return;
    GD_ASSERT(!(w & SLOT_LIVE));
    /* Relaxed: only the CAS below publishes. */
    sched_proc_t *head = atomic_load_explicit(&sched_node.zombies, memory_order_relaxed);
    do {
        p->rq_next = head;
        /* Release: the reaper's exchange (acquire) sees p->rq_next and the
         * PCB as this thread left it. */
    } while (!atomic_compare_exchange_weak_explicit(&sched_node.zombies, &head, p,
                                                    memory_order_release, memory_order_relaxed));
    /* Off the schedulers (a foreign sender dropped the last reference):
     * make sure a scheduler comes round to reap it. */
    if (sched_this_rq() == NULL)
        sched_kick_reaper();
}

bool proc_exit_done(term_t pid)
{
    if (!term_is_local_pid(pid) || pid_index(pid) >= sched_node.max_procs)
        return true;
    /* Acquire: pairs with the exiting process's acq_rel drop in proc_put,
     * which comes after its exit signals were sent. */
    uint64_t w = atomic_load_explicit(&sched_node.slots[pid_index(pid)].word, memory_order_acquire);
    if (((w >> SLOT_SERIAL_SHIFT) & sched_node.serial_mask) != pid_serial(pid))
        return true; /* reaped (or never spawned) */
    return !(w & SLOT_LIVE) && (w & SLOT_REFS_MASK) == 0;
}

bool sched_is_alive(term_t pid)
{
    sched_proc_t *p = proc_get(pid);
    if (p == NULL)
        return false;
    proc_put(p);
    return true;
}

uint32_t sched_process_count(void)
{
    /* Acquire pairs with the exit's seq_cst decrement. */
    return atomic_load_explicit(&sched_node.nprocs, memory_order_acquire);
}

/* ------------------------------------------------------------------------ */
/* Inbox: Vyukov's intrusive multi-producer single-consumer queue.          */

static void inbox_init(sched_proc_t *p)
{
    atomic_init(&p->in_sentinel.next, NULL);
    atomic_init(&p->in_tail, &p->in_sentinel);
    p->in_head = &p->in_sentinel;
}

/* A push in two steps: claim the tail (returns the node n goes after),
 * then link.  deliver reads the receiver's state between the two. */
static msg_link_t *inbox_claim(sched_proc_t *p, msg_link_t *n)
{
    /* Relaxed: n is not reachable yet; the exchange below publishes it. */
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* acq_rel: orders n's contents before other producers link after it;
     * seq_cst: deliver may skip its wake-up CAS on the strength of this
     * exchange preceding its load of the state word (see there). */
    return atomic_exchange_explicit(&p->in_tail, n, memory_order_seq_cst);
}

static void inbox_link(msg_link_t *prev, msg_link_t *n)
{
    /* Release: publishes n (and the message it heads) to the owner's
     * acquire load of prev->next in inbox_pop. */
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

static void inbox_push(sched_proc_t *p, msg_link_t *n)
{
    inbox_link(inbox_claim(p, n), n);
}

/* Takes the oldest published item or NULL.  May return NULL while a
 * producer is between its exchange and its link store; that producer then
 * sets ACTIVE, so the owner looks again. */
static msg_t *inbox_pop(sched_proc_t *p)
{
    msg_link_t *head = p->in_head;
    /* Acquire pairs with the release store in inbox_link. */
    msg_link_t *next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (head == &p->in_sentinel) {
        if (next == NULL)
            return NULL;
        p->in_head = head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        p->in_head = next;
        return (msg_t *)head;
    }
    /* Acquire pairs with the producers' exchange (pointer comparison only). */
    msg_link_t *tail = atomic_load_explicit(&p->in_tail, memory_order_acquire);
    if (tail != head)
        return NULL;
    inbox_push(p, &p->in_sentinel);
    next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (next != NULL) {
        p->in_head = next;
        return (msg_t *)head;
    }
    return NULL;
}

static void msg_free(msg_t *m)
{
    if (m->in_frag) {
        heap_frag_free(m->frag); /* m with it */
        return;
    }
    heap_frag_free(m->frag);
    free(m);
}

void proc_msg_free(msg_t *m)
{
    msg_free(m);
}

/* Marks p as having work; queues it if it was neither running nor queued. */
static void wake(sched_proc_t *p)
{
    /* Relaxed: a first guess for the CAS, which does the ordering. */
    uint32_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
    uint32_t n;
    do {
        if (s & PS_EXITING)
            return;
        n = s | PS_ACTIVE;
        if (!(s & (PS_RUNNING | PS_IN_RUNQ)))
            n |= PS_IN_RUNQ;
        /* acq_rel: the release half publishes the inbox push before the
         * flag; the runner's RMWs on the word (acquire) pair with it. */
    } while (!atomic_compare_exchange_weak_explicit(&p->state, &s, n, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if ((n & PS_IN_RUNQ) && !(s & PS_IN_RUNQ))
        runq_push_woken(p);
}

void proc_wake(sched_proc_t *p)
{
    wake(p);
}

_Atomic uint32_t sched_test_push_stall_every, sched_test_push_stall_us;
_Atomic term_t sched_test_push_stall_from;

/* Tests: every Nth push of a thread sleeps (~20 µs) between reading the
 * state word and linking the message, the window deliver's skip must
 * survive (a sleep, not a spin: the runner may spin meanwhile). */
static void push_stall(term_t from)
{
    static _Thread_local uint32_t pushes;
    term_t only = atomic_load_explicit(&sched_test_push_stall_from, memory_order_relaxed);
    if (only != 0 && only != from)
        return;
    uint32_t every = atomic_load_explicit(&sched_test_push_stall_every, memory_order_relaxed);
    if (++pushes % every != 0)
        return;
    uint32_t us = atomic_load_explicit(&sched_test_push_stall_us, memory_order_relaxed);
    if (us == 0)
        us = 20;
    struct timespec t = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    nanosleep(&t, NULL);
}

/* Queues m on p (consumed) and wakes p.
 *
 * The wake-up CAS is skipped when p is already flagged ACTIVE and running
 * or queued (it would store the word it holds), so senders flooding one
 * receiver (fanin: 1000 of them on every core) do one locked op less on
 * its contended line per message.  That is safe because the exchange on
 * in_tail, the load of the state word after it, the runner's RMWs that
 * clear ACTIVE and its load of in_tail before it idles (inbox_pending) are
 * all seq_cst: either our exchange comes before the runner's last clear,
 * and its in_tail load sees the push (linked or still being linked), or
 * the clear comes first and our load sees ACTIVE gone (or set again by a
 * sender whose CAS makes the runner's idle CAS fail), and we CAS.  Timer
 * wake-ups keep the plain wake(): the runner looks at no flag of theirs
 * before it idles. */
static void deliver_chain(sched_proc_t *p, msg_t *first, msg_t *last, uint32_t messages)
{
    /* Relaxed: message_queue_len is a statistic. */
    if (messages != 0) {
        atomic_fetch_add_explicit(&p->qlen_in, messages, memory_order_relaxed);
        runq_t *rq = sched_current_rq;
        sched_stat_add(rq != NULL ? &rq->stat_messages : NULL, &sched_node.stat_messages_other,
                       messages);
    }
    /* The chain's inner links were stored before; inbox_link's release
     * publishes them with its head. */
    msg_link_t *prev = inbox_claim(p, &last->link);
    uint32_t s = atomic_load_explicit(&p->state, memory_order_seq_cst);
    if (GD_UNLIKELY(atomic_load_explicit(&sched_test_push_stall_every, memory_order_relaxed)))
        push_stall(first->from);
    inbox_link(prev, &first->link);
    if (!((s & PS_ACTIVE) && (s & (PS_RUNNING | PS_IN_RUNQ))))
        wake(p);
}

/* The outbox (runq_t.outbox).  A process that sends many messages in a
 * row to one receiver (fanin's senders, a producer feeding a consumer)
 * would otherwise do, per message, a CAS and a fetch_sub on the
 * receiver's slot word, an add on its queue length and an exchange on its
 * inbox tail, all on lines that every other sender to it writes too (perf
 * on fanin, 1000 senders on 2 cores: proc_get/proc_put, deliver and the
 * send's stores ~40% of the time).  Delivery stays within the sender's
 * slice, and the order between the pair (and everything else this thread
 * delivers: deliver flushes first) is the order sent. */
#define OUTBOX_MAX 64

/* Delivers the outbox's chain and closes it; nothing when it is closed. */
static void outbox_deliver(runq_t *rq)
{
    sched_proc_t *t = rq->outbox.to;
    if (t == NULL)
        return;
    msg_t *first = rq->outbox.first, *last = rq->outbox.last;
    uint32_t n = rq->outbox.n;
    rq->outbox.to = NULL;
    rq->outbox.first = rq->outbox.last = NULL;
    rq->outbox.n = 0;
    deliver_chain(t, first, last, n);
    proc_put(t);
}

/* The end of a run on rq (or a flush point inside one): delivers the
 * outbox and forgets the last target. */
static inline void outbox_end_run(runq_t *rq)
{
    rq->outbox.last_to = NULL;
    outbox_deliver(rq);
}

void proc_outbox_flush(void)
{
    runq_t *rq = sched_current_rq;
    if (rq != NULL)
        outbox_end_run(rq);
}

/* Whether the outbox is open for `to` (a pid) in ctx's slice: a send may
 * then skip the lookup, the outbox holding a reference. */
static bool outbox_open_for(const sched_ctx_t *ctx, term_t to)
{
    runq_t *rq = sched_current_rq;
    return ctx != NULL && rq != NULL && rq->outbox.to != NULL && rq->outbox.to->pid == to;
}

static void outbox_append(runq_t *rq, msg_t *m)
{
    /* Relaxed: the chain is published by deliver_chain's release. */
    atomic_store_explicit(&m->link.next, NULL, memory_order_relaxed);
    atomic_store_explicit(&rq->outbox.last->link.next, &m->link, memory_order_relaxed);
    rq->outbox.last = m;
    if (++rq->outbox.n >= OUTBOX_MAX)
        outbox_deliver(rq);
}

/* Takes message m that process ctx sends to t (t referenced by the
 * caller) into the outbox, or says no (false: deliver it, the outbox
 * being empty then).  The second message in a row to t opens the outbox
 * with a reference of its own. */
static bool outbox_take(sched_ctx_t *ctx, sched_proc_t *t, msg_t *m)
{
    runq_t *rq = sched_current_rq;
    if (rq == NULL)
        return false; /* off the schedulers: no outbox */
    /* Never open for the sender itself, so t == ctx cannot match. */
    if (rq->outbox.to == t && m->kind == MSG_MESSAGE) {
        outbox_append(rq, m);
        return true;
    }
    outbox_deliver(rq);
    if (ctx == NULL || t == ctx || m->kind != MSG_MESSAGE)
        return false;
    if (rq->outbox.last_to != t) {
        rq->outbox.last_to = t;
        return false;
    }
    /* A reference of its own (t may be borrowed); none when t is on its
     * way out: the message then goes the plain way. */
    if (proc_get(t->pid) == NULL)
        return false;
    rq->outbox.to = t;
    rq->outbox.first = rq->outbox.last = m;
    rq->outbox.n = 1;
    return true;
}

static void deliver(sched_proc_t *p, msg_t *m)
{
    runq_t *rq = sched_current_rq;
    if (rq != NULL)
        outbox_deliver(rq);
    deliver_chain(p, m, m, m->kind == MSG_MESSAGE);
}

/* True when a push reached p's inbox after take_inbox emptied it: a sender
 * between its exchange and its link store, or a whole new message.  The
 * owner calls it before it idles (seq_cst: see deliver). */
static bool inbox_pending(sched_proc_t *p)
{
    return atomic_load_explicit(&p->in_tail, memory_order_seq_cst) != &p->in_sentinel;
}

static void msg_init(msg_t *m, enum msg_kind kind, term_t from)
{
    m->qnext = NULL;
    m->frag = NULL;
    m->term = TERM_NIL;
    m->from = from;
    m->name = TERM_NONE;
    m->ref = (sched_ref_t){{0, 0, 0}};
    m->kind = (uint8_t)kind;
    m->linked = false;
    m->in_frag = false;
}

static msg_t *msg_new(enum msg_kind kind, term_t from)
{
    msg_t *m = malloc(sizeof *m);
    if (m != NULL)
        msg_init(m, kind, from);
    return m;
}

/* Sends signal m (consumed) to pid; dropped when pid is dead. */
static void send_sig(term_t to, msg_t *m)
{
    sched_proc_t *t = proc_get(to);
    if (t == NULL) {
        msg_free(m);
        return;
    }
    deliver(t, m);
    proc_put(t);
}

void proc_deliver_to(term_t to, msg_t *m)
{
    term_t pid = to;
    if (term_is_atom(to)) {
        pid = sched_whereis(to);
        if (!term_is_local_pid(pid)) {
            msg_free(m);
            return;
        }
    }
    send_sig(pid, m);
}

/* ------------------------------------------------------------------------ */
/* Signal bodies                                                            */

static term_t atom_normal, atom_kill, atom_killed, atom_noproc, atom_exit_tag, atom_down,
    atom_process, atom_undefined, atom_callback_error, atom_timeout;

int proc_atoms_init(void)
{
    struct {
        term_t *slot;
        const char *text;
    } atoms[] = {
        {&atom_normal, "normal"},
        {&atom_kill, "kill"},
        {&atom_killed, "killed"},
        {&atom_noproc, "noproc"},
        {&atom_exit_tag, "EXIT"},
        {&atom_down, "DOWN"},
        {&atom_process, "process"},
        {&atom_undefined, "undefined"},
        {&atom_callback_error, "callback_error"},
        {&atom_timeout, "timeout"},
    };
    for (size_t i = 0; i < sizeof atoms / sizeof atoms[0]; i++) {
        int rc = heap_atom_put(atoms[i].text, strlen(atoms[i].text), atoms[i].slot);
        if (rc != GD_OK)
            return rc;
    }
    return GD_OK;
}

/* An exit signal from `from` with `reason` (on any readable heap): its
 * body is the message {'EXIT', From, Reason} a trapping receiver gets. */
static msg_t *exit_sig(term_t from, term_t reason, bool linked)
{
    msg_t *m = msg_new(SIG_EXIT, from);
    if (m == NULL)
        return NULL;
    term_t elems[3] = {atom_exit_tag, from, reason};
    if (heap_msg_copy_tuple(elems, 3, &m->frag, &m->term) != GD_OK) {
        free(m);
        return NULL;
    }
    m->linked = linked;
    return m;
}

/* Queues to watcher a signal that makes it the holder of monitor ref of
 * pid (or of name), before anything that could report the monitor. */
static int monitor_add_to(sched_proc_t *w, sched_ref_t ref, term_t pid, term_t name)
{
    msg_t *add = msg_new(SIG_MONITOR_ADD, pid);
    if (add == NULL)
        return GD_ENOMEM;
    add->ref = ref;
    add->name = name;
    deliver(w, add);
    return GD_OK;
}

/* A DOWN signal for monitor `ref` of `pid` (or of name `name`) with
 * `reason`: its body is {'DOWN', Ref, process, Item, Reason}.  Built on a
 * scratch heap, so any thread (a reaper) can make one. */
static msg_t *down_sig(sched_ref_t ref, term_t pid, term_t name, term_t reason)
{
    msg_t *m = msg_new(SIG_DOWN, pid);
    if (m == NULL)
        return NULL;
    m->ref = ref;
    m->name = name;
    heap_t tmp;
    if (heap_init(&tmp, 12) != GD_OK)
        goto fail_msg;
    term_t elems[5] = {atom_down, TERM_NIL, atom_process, pid, reason};
    if (ref_term(&tmp, ref, &elems[1]) != GD_OK)
        goto fail_heap;
    if (name != TERM_NONE) {
        term_t *e;
        if (heap_make_tuple(&tmp, 2, &e, &elems[3]) != GD_OK)
            goto fail_heap;
        e[0] = name;
        e[1] = heap_node_name();
    }
    if (heap_msg_copy_tuple(elems, 5, &m->frag, &m->term) != GD_OK)
        goto fail_heap;
    heap_destroy(&tmp);
    return m;
fail_heap:
    heap_destroy(&tmp);
fail_msg:
    free(m);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Link, monitor and dictionary tables (allocated on first use)             */

/*
 * The process's tables (links, monitors, aliases, dictionary, root slots)
 * share one layout, {uint32_t n, cap; entries[]}, allocated on first use
 * and doubled when full.  Returns tab itself when it has room for one more
 * entry, else the table reallocated with room (n 0 and cap first_cap for a
 * new one), or NULL when memory is short (tab is then untouched).  hdr is
 * the entries' offset, entry their size.
 */
static void *table_room(void *tab, size_t hdr, size_t entry, uint32_t first_cap)
{
    struct table_head {
        uint32_t n, cap;
    } head = {0, 0};
    if (tab != NULL)
        memcpy(&head, tab, sizeof head);
    if (tab != NULL && head.n < head.cap)
        return tab;
    uint32_t cap = tab == NULL ? first_cap : head.cap * 2;
    void *grown = realloc(tab, hdr + cap * entry);
    if (grown == NULL)
        return NULL;
    head.cap = cap;
    memcpy(grown, &head, sizeof head);
    return grown;
}

static int links_add(sched_proc_t *p, term_t pid)
{
    link_set_t *l = p->links;
    if (l != NULL)
        for (uint32_t i = 0; i < l->n; i++)
            if (l->pids[i] == pid)
                return GD_OK;
    l = table_room(l, offsetof(link_set_t, pids), sizeof l->pids[0], 2);
    if (l == NULL)
        return GD_ENOMEM;
    p->links = l;
    l->pids[l->n++] = pid;
    return GD_OK;
}

static bool links_remove(sched_proc_t *p, term_t pid)
{
    link_set_t *l = p->links;
    if (l == NULL)
        return false;
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->pids[i] == pid) {
            l->pids[i] = l->pids[--l->n];
            return true;
        }
    }
    return false;
}

static int mon_add(mon_set_t **set, sched_ref_t ref, term_t pid, term_t name)
{
    mon_set_t *s = table_room(*set, offsetof(mon_set_t, e), sizeof(mon_entry_t), 2);
    if (s == NULL)
        return GD_ENOMEM;
    *set = s;
    s->e[s->n++] = (mon_entry_t){ref, pid, name};
    return GD_OK;
}

/* Removes the entry for ref; copies it to *out when found. */
static bool mon_remove(mon_set_t *s, sched_ref_t ref, mon_entry_t *out)
{
    if (s == NULL)
        return false;
    for (uint32_t i = 0; i < s->n; i++) {
        if (ref_eq(s->e[i].ref, ref)) {
            if (out != NULL)
                *out = s->e[i];
            s->e[i] = s->e[--s->n];
            return true;
        }
    }
    return false;
}

static int alias_add(sched_proc_t *p, sched_ref_t ref, enum sched_alias_mode mode)
{
    alias_set_t *s = table_room(p->aliases, offsetof(alias_set_t, e), sizeof(alias_entry_t), 2);
    if (s == NULL)
        return GD_ENOMEM;
    p->aliases = s;
    s->e[s->n++] = (alias_entry_t){ref, (uint32_t)mode};
    return GD_OK;
}

/* The index of p's active alias ref, or -1. */
static int64_t alias_find(const sched_proc_t *p, sched_ref_t ref)
{
    const alias_set_t *s = p->aliases;
    if (s != NULL)
        for (uint32_t i = 0; i < s->n; i++)
            if (ref_eq(s->e[i].ref, ref))
                return i;
    return -1;
}

static void alias_drop_at(sched_proc_t *p, int64_t i)
{
    p->aliases->e[i] = p->aliases->e[--p->aliases->n];
}

/* The monitor ref is gone (demonitor or its 'DOWN'): so is an alias made
 * with it in a *_DEMONITOR mode. */
static void alias_monitor_gone(sched_proc_t *p, sched_ref_t ref)
{
    int64_t i = p->aliases != NULL ? alias_find(p, ref) : -1;
    if (i >= 0 && p->aliases->e[i].mode >= SCHED_ALIAS_DEMONITOR)
        alias_drop_at(p, i);
}

/* The roots a process keeps in its tables: the dictionary and the slots
 * registered with sched_root_push. */
static void proc_enumerate(void *ctx, heap_root_visit_fn visit, void *vctx)
{
    sched_proc_t *p = ctx;
    if (p->dict != NULL && p->dict->n > 0)
        visit(vctx, p->dict->kv, 2 * (size_t)p->dict->n);
    if (p->roots != NULL)
        for (uint32_t i = 0; i < p->roots->n; i++)
            visit(vctx, p->roots->slot[i], 1);
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                */

/* Decides that p exits with reason (a term on p's heap or immediate). */
static void die(sched_proc_t *p, term_t reason)
{
    if (p->flags & PF_EXIT_PENDING)
        return;
    p->flags |= PF_EXIT_PENDING;
    p->reason = reason;
}

static void queue_append(sched_proc_t *p, msg_t *m)
{
    m->qnext = NULL;
    *p->q_last = m;
    p->q_last = &m->qnext;
}

/* Takes m's body onto p's heap (heap_msg_take: a small one is moved onto
 * the young area and its slab block freed) and returns the term. */
static term_t accept_body(sched_proc_t *p, msg_t *m)
{
    GD_ASSERT(!m->in_frag); /* else m would go with its fragment: receive_body */
    term_t t = heap_msg_take(&p->heap, m->frag, m->term);
    m->frag = NULL;
    m->term = t;
    return t;
}

/* As accept_body for a message taken from the queue, and frees m: a msg_t
 * carried in its fragment goes with it (now, if the body moved; else at
 * the heap's next collection). */
static term_t receive_body(sched_proc_t *p, msg_t *m)
{
    heap_frag_t *frag = m->frag;
    term_t t = m->term;
    if (!m->in_frag)
        free(m);
    return heap_msg_take(&p->heap, frag, t);
}

static int monitor_drop(sched_proc_t *p, sched_ref_t r, bool *found);

/* A message reached p through alias ref: true when the alias is active (a
 * *REPLY* mode alias is used up by it, and REPLY_DEMONITOR drops the
 * monitor too). */
static bool alias_accept(sched_proc_t *p, sched_ref_t ref)
{
    int64_t i = alias_find(p, ref);
    if (i < 0)
        return false;
    uint32_t mode = p->aliases->e[i].mode;
    if (mode == SCHED_ALIAS_REPLY || mode == SCHED_ALIAS_REPLY_DEMONITOR)
        alias_drop_at(p, i);
    if (mode == SCHED_ALIAS_REPLY_DEMONITOR) {
        bool found;
        /* Out of memory for the demonitor signal: the monitor is gone here
         * and its 'DOWN' will be ignored, which is what counts. */
        (void)monitor_drop(p, ref, &found);
    }
    return true;
}

/* Answers the LINK or MONITOR request m as a dead process does: an exit
 * signal or a 'DOWN' with reason noproc (dropped for want of memory). */
static void answer_noproc(sched_proc_t *p, const msg_t *m)
{
    msg_t *a = m->kind == SIG_LINK ? exit_sig(p->pid, atom_noproc, true)
                                   : down_sig(m->ref, p->pid, m->name, atom_noproc);
    if (a != NULL)
        send_sig(m->from, a);
}

/* The owner changes p's queue length by d: -1 for a message handled, +1
 * for a signal it turned into a message (owner only: no RMW). */
static inline void qlen_owner_add(sched_proc_t *p, int32_t d)
{
    uint32_t out = atomic_load_explicit(&p->qlen_out, memory_order_relaxed);
    atomic_store_explicit(&p->qlen_out, out - (uint32_t)d, memory_order_relaxed);
}

/* p's message_queue_len (any thread).  The two counters are read without
 * order between them, so a reader may see a message handled before its
 * delivery: such a negative count reads as 0. */
static uint32_t proc_qlen(sched_proc_t *p)
{
    uint32_t out = atomic_load_explicit(&p->qlen_out, memory_order_relaxed);
    uint32_t in = atomic_load_explicit(&p->qlen_in, memory_order_relaxed);
    int32_t n = (int32_t)(in - out);
    return n > 0 ? (uint32_t)n : 0;
}

/* Handles one signal taken from the inbox (m consumed). */
static void handle_signal(sched_proc_t *p, msg_t *m)
{
    switch ((enum msg_kind)m->kind) {
    case SIG_EXIT: {
        term_t reason = term_tuple_elems(m->term)[2];
        if (m->linked && !links_remove(p, m->from))
            break; /* unlinked meanwhile: the signal is void */
        if (!m->linked && reason == atom_kill) {
            die(p, atom_killed);
        } else if (p->flags & PF_TRAP_EXIT) {
            m->kind = MSG_MESSAGE;
            qlen_owner_add(p, 1);
            queue_append(p, m);
            return;
        } else if (reason != atom_normal || (!m->linked && m->from == p->pid)) {
            /* The reason read again: the body may have moved. */
            die(p, term_tuple_elems(accept_body(p, m))[2]);
        }
        break;
    }
    case SIG_LINK:
        /* The link cannot be recorded: tell the other side at once, as if
         * this process had gone, rather than lose its exit later. */
        if (links_add(p, m->from) != GD_OK)
            answer_noproc(p, m);
        break;
    case SIG_UNLINK:
        links_remove(p, m->from);
        break;
    case SIG_MONITOR:
        if (mon_add(&p->monitored_by, m->ref, m->from, m->name) != GD_OK)
            answer_noproc(p, m);
        break;
    case SIG_DEMONITOR:
        mon_remove(p->monitored_by, m->ref, NULL);
        break;
    case SIG_MONITOR_ADD:
        /* Out of memory: its 'DOWN' will find no entry and be dropped. */
        (void)mon_add(&p->monitors, m->ref, m->from, m->name);
        break;
    case SIG_DOWN:
        if (mon_remove(p->monitors, m->ref, NULL)) {
            alias_monitor_gone(p, m->ref);
            m->kind = MSG_MESSAGE;
            qlen_owner_add(p, 1);
            queue_append(p, m);
            return;
        }
        break;
    case MSG_ALIAS:
        if (alias_accept(p, m->ref)) {
            m->kind = MSG_MESSAGE;
            qlen_owner_add(p, 1);
            queue_append(p, m);
            return;
        }
        break; /* no such active alias: dropped, as OTP */
    case SIG_RESUME:
        p->flags &= ~PF_SUSPENDED;
        break;
    case MSG_MESSAGE:
        queue_append(p, m);
        return;
    }
    msg_free(m);
}

/* Moves what the inbox holds to the private queue, handling signals. */
static void take_inbox(sched_proc_t *p)
{
    msg_t *m;
    while (!(p->flags & PF_EXIT_PENDING) && (m = inbox_pop(p)) != NULL) {
        p->reds--;
        if (m->kind == MSG_MESSAGE)
            queue_append(p, m);
        else
            handle_signal(p, m);
    }
}

/* Takes the message *link out of the private queue. */
static msg_t *queue_unlink(sched_proc_t *p, msg_t **link)
{
    msg_t *m = *link;
    *link = m->qnext;
    if (p->q_last == &m->qnext)
        p->q_last = link;
    /* Links into the queue may now dangle: drop them. */
    p->save = &p->q_first;
    p->mark = NULL;
    qlen_owner_add(p, -1);
    return m;
}

/* The next message to hand to handle_message, unlinked, or NULL. */
static msg_t *next_deliverable(sched_proc_t *p)
{
    msg_t **link;
    if (p->sel_pred == NULL) {
        link = &p->q_first;
        if (*link == NULL)
            return NULL;
    } else {
        /* Scan only what arrived since the last scan. */
        for (link = p->save; *link != NULL; link = &(*link)->qnext)
            if (p->sel_pred((*link)->term, p->sel_arg))
                break;
        p->save = link;
        if (*link == NULL)
            return NULL;
        p->sel_pred = NULL;
    }
    return queue_unlink(p, link);
}

/* ------------------------------------------------------------------------ */
/* Exit                                                                     */

/* Handles what is left in p's inbox once p is dead: answers link and
 * monitor requests with noproc, drops links/monitors undone meanwhile, and
 * frees the rest.  Used by the exiting process and by the reaper. */
static void drain_dead(sched_proc_t *p)
{
    msg_t *m;
    while ((m = inbox_pop(p)) != NULL) {
        switch ((enum msg_kind)m->kind) {
        case SIG_LINK:
        case SIG_MONITOR:
            answer_noproc(p, m);
            break;
        case SIG_UNLINK:
            links_remove(p, m->from);
            break;
        case SIG_DEMONITOR:
            mon_remove(p->monitored_by, m->ref, NULL);
            break;
        default:
            break;
        }
        msg_free(m);
    }
}

static void free_private_queue(sched_proc_t *p)
{
    for (msg_t *m = p->q_first, *next; m != NULL; m = next) {
        next = m->qnext;
        msg_free(m);
    }
    p->q_first = NULL;
    p->q_last = &p->q_first;
}

/* Frees what a PCB owns besides its inbox and the PCB itself. */
static void release_owned(sched_proc_t *p)
{
    free_private_queue(p);
    heap_frag_free(p->arg_frag);
    p->arg_frag = NULL;
    free(p->links);
    free(p->monitors);
    free(p->monitored_by);
    free(p->dict);
    free(p->aliases);
    free(p->roots);
    p->aliases = NULL;
    p->links = NULL;
    p->monitors = p->monitored_by = NULL;
    p->dict = NULL;
    p->roots = NULL;
    /* Never resumed again: its stack goes back to this thread's cache. */
    sched_coro_destroy(p->coro);
    p->coro = NULL;
    heap_destroy(&p->heap);
}

static void notify_exit(void)
{
    /* Seq_cst with the waiter's increment: a waiter registered before this
     * load is woken; one registering later sees the process gone (and
     * waits in short timed steps besides). */
    if (atomic_load_explicit(&sched_node.exit_waiters, memory_order_seq_cst) == 0)
        return;
    pthread_mutex_lock(&sched_node.exit_lock);
    pthread_cond_broadcast(&sched_node.exit_cond);
    pthread_mutex_unlock(&sched_node.exit_lock);
}

/* Clears the slot's LIVE bit: lookups of p fail from now on. */
static void unpublish(sched_proc_t *p)
{
    slot_t *s = &sched_node.slots[pid_index(p->pid)];
    /* Seq_cst RMW: ordered after the PCB's last use as a live process;
     * lookups that succeeded before it hold references, waited for by the
     * reaper, or borrowed the PCB (seq_cst: see scheduler.c, "Borrowed
     * PCBs"). */
    atomic_fetch_and_explicit(&s->word, ~SLOT_LIVE, memory_order_seq_cst);
}

/* Ends p (running on this scheduler) with p->reason. */
static void do_exit(sched_proc_t *p)
{
    /* First: a pending timeout refers to this PCB. */
    proc_timeout_cancel(p);
    /* Acq_rel RMW: from now on wake() leaves p alone. */
    atomic_fetch_or_explicit(&p->state, PS_EXITING, memory_order_acq_rel);
    unpublish(p);
    if (p->name != TERM_NIL)
        registry_remove_if(p->name, p->pid);
    p->name = TERM_NIL;
    term_t reason = p->reason;
    if ((p->flags & PF_INITED) && p->beh != NULL && p->beh->terminate != NULL &&
        reason != atom_killed) {
        p->beh->terminate(p, reason, p->st);
        /* The run's end has passed: what terminate sent leaves now, not
         * at this scheduler's next run (an erpc process's DOWN waited in
         * the distribution cork while the scheduler slept). */
        proc_outbox_flush();
        sched_dist_run_end();
    }
    drain_dead(p);
    if (p->links != NULL)
        for (uint32_t i = 0; i < p->links->n; i++) {
            msg_t *e = exit_sig(p->pid, reason, true);
            if (e != NULL)
                send_sig(p->links->pids[i], e);
        }
    if (p->monitored_by != NULL)
        for (uint32_t i = 0; i < p->monitored_by->n; i++) {
            mon_entry_t *e = &p->monitored_by->e[i];
            msg_t *d = down_sig(e->ref, p->pid, e->name, reason);
            if (d != NULL)
                send_sig(e->pid, d);
        }
    if (p->monitors != NULL)
        for (uint32_t i = 0; i < p->monitors->n; i++) {
            mon_entry_t *e = &p->monitors->e[i];
            msg_t *d = msg_new(SIG_DEMONITOR, p->pid);
            if (d != NULL) {
                d->ref = e->ref;
                send_sig(e->pid, d);
            }
        }
    release_owned(p);
    /* Seq_cst, as the waiter count notify_exit loads: see sched_wait_exit. */
    atomic_fetch_sub_explicit(&sched_node.nprocs, 1, memory_order_seq_cst);
    /* p may be reaped by another scheduler from here on. */
    proc_put(p);
    notify_exit();
}

void proc_reap(sched_proc_t *p)
{
    drain_dead(p);
    release_owned(p);
    uint32_t idx = pid_index(p->pid);
    slot_t *s = &sched_node.slots[idx];
    uint64_t serial = (pid_serial(p->pid) + 1) & sched_node.serial_mask;
    pcb_free(p);
    /* Relaxed: nobody reads the slot's PCB until a spawner publishes the
     * next one (its release store); the mutex in slot_free orders this. */
    atomic_store_explicit(&s->word, serial << SLOT_SERIAL_SHIFT, memory_order_relaxed);
    slot_free(idx);
}

void proc_reap_list(sched_proc_t *z)
{
    for (sched_proc_t *next; z != NULL; z = next) {
        next = z->rq_next;
        proc_reap(z);
    }
}

void proc_destroy_all(void)
{
    node_t *n = &sched_node;
    for (uint32_t i = 0; i < n->fresh; i++) {
        slot_t *s = &n->slots[i];
        /* Every other thread is joined: the orders below are moot. */
        uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
        if (!(w & SLOT_LIVE))
            continue;
        sched_proc_t *p = s->proc;
        /* No thread runs: free it the way the reaper does, without signals
         * to the others (every process goes). */
        msg_t *m;
        while ((m = inbox_pop(p)) != NULL)
            msg_free(m);
        atomic_store_explicit(&s->word, w & ~SLOT_LIVE & ~SLOT_REFS_MASK, memory_order_relaxed);
        release_owned(p);
        pcb_free(p);
    }
    proc_reap_list(atomic_exchange_explicit(&n->zombies, NULL, memory_order_acquire));
    proc_reap_list(n->limbo);
    n->limbo = NULL;
    atomic_store_explicit(&n->nprocs, 0, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */

/* The collection safe point between callbacks: roots are the state, the
 * exit reason and the dictionary.  Charges the words moved. */
static void safe_point(sched_proc_t *p)
{
    if (!heap_gc_due(&p->heap, 0))
        return;
    uint64_t before = p->heap.stats.words_copied;
    term_t *const slots[] = {&p->st, &p->reason};
    heap_roots_t roots = {slots, 2, proc_enumerate, p};
    int rc = heap_ensure_free_slow(&p->heap, 0, &roots);
    p->reds -= 1 + (int32_t)((p->heap.stats.words_copied - before) / 16);
    if (rc == GD_EHEAP_LIMIT)
        die(p, atom_killed);
    /* GD_ENOMEM: the heap is consistent; the process goes on, and the next
     * allocation that fails is reported to its callback. */
}

/* Charges the words a callback allocated (one reduction per 16 words, as
 * for words sent and collected). */
static void charge_alloc(sched_proc_t *p, size_t used_before)
{
    size_t used = heap_used_words(&p->heap);
    if (used > used_before)
        p->reds -= (int32_t)((used - used_before) / 16 > INT32_MAX / 4 ? INT32_MAX / 4
                                                                       : (used - used_before) / 16);
}

/* Turns a callback's error return into the process's exit. */
static void callback_failed(sched_proc_t *p, int rc)
{
    if (rc == SCHED_EEXIT) {
        die(p, p->reason);
        return;
    }
    term_t *e, t;
    if (heap_make_tuple(&p->heap, 2, &e, &t) != GD_OK) {
        die(p, atom_callback_error);
        return;
    }
    e[0] = atom_callback_error;
    e[1] = term_make_small(rc);
    die(p, t);
}

static void publish_info(sched_proc_t *p)
{
    atomic_store_explicit(&p->pub_heap_words, (uint32_t)heap_size_words(&p->heap),
                          memory_order_relaxed);
    atomic_store_explicit(&p->pub_links, (uint16_t)(p->links ? p->links->n : 0),
                          memory_order_relaxed);
    atomic_store_explicit(&p->pub_monitors, (uint16_t)(p->monitors ? p->monitors->n : 0),
                          memory_order_relaxed);
    atomic_store_explicit(&p->pub_monitored_by,
                          (uint16_t)(p->monitored_by ? p->monitored_by->n : 0),
                          memory_order_relaxed);
    size_t extra = 0;
    if (p->links)
        extra += sizeof *p->links + p->links->cap * sizeof(term_t);
    if (p->monitors)
        extra += sizeof *p->monitors + p->monitors->cap * sizeof(mon_entry_t);
    if (p->monitored_by)
        extra += sizeof *p->monitored_by + p->monitored_by->cap * sizeof(mon_entry_t);
    if (p->dict)
        extra += sizeof *p->dict + p->dict->cap * 2 * sizeof(term_t);
    if (p->aliases)
        extra += sizeof *p->aliases + p->aliases->cap * sizeof(alias_entry_t);
    if (p->roots)
        extra += sizeof *p->roots + p->roots->cap * sizeof(term_t *);
    /* A coroutine process's stack, as OTP's memory item counts the
     * process's stack. */
    if (p->coro != NULL)
        extra += sched_coro_stack_bytes(p->coro);
    atomic_store_explicit(&p->pub_dict_bytes, (uint32_t)extra, memory_order_relaxed);
}

/* ---- coroutine processes ---- */

/* True when the caller runs on p's own coroutine (runtime calls made for a
 * coroutine process from anywhere else never yield). */
static bool on_own_coro(const sched_proc_t *p)
{
    return p->coro != NULL && sched_coro_current() == p->coro;
}

/* Switches from p's coroutine back to its scheduler (proc_run); returns
 * when p is resumed, maybe on another thread.  Not inlined, and nothing
 * thread-local is read around it in this file (sched_this_rq is called
 * afresh each time). */
static GD_NOINLINE void coro_switch_out(sched_proc_t *p)
{
    (void)p;
    sched_coro_yield();
}

/* Parks p's coroutine for good: p is exiting, its scheduler ends it
 * without resuming the coroutine. */
static GD_NOINLINE void coro_park_dead(sched_proc_t *p)
{
    p->cstate = CS_DEAD;
    coro_switch_out(p);
    /* A dead coroutine is never resumed. */
    GD_ASSERT(false);
    abort();
}

/*
 * The preemption point of the runtime calls a coroutine process makes
 * (after the call's work): collects the heap when it needs it (the roots
 * are the registered slots, the dictionary and the reason), parks the
 * coroutine if the process must exit, and yields when the slice is used
 * up.  True when it yielded.  A no-op for behaviours.
 */
static bool coro_point(sched_proc_t *p)
{
    if (p->cfn == NULL || !on_own_coro(p))
        return false;
    safe_point(p);
    if (p->flags & PF_EXIT_PENDING)
        coro_park_dead(p);
    if (p->reds > 0)
        return false;
    p->cstate = CS_RUN;
    coro_switch_out(p);
    return true;
}

/* The coroutine's entry: runs the body and keeps its result. */
static void coro_body(void *arg)
{
    sched_proc_t *p = arg;
    term_t a = p->arg;
    p->arg = TERM_NIL;
    p->cresult = p->cfn(p, a);
    p->cstate = CS_DONE;
}

/* True when a blocked coroutine may go on: a message it has not looked at
 * yet, or its timeout fired. */
static bool coro_wait_ready(sched_proc_t *p)
{
    return *p->save != NULL || proc_timeout_fired(p);
}

/* Runs p's coroutine (made at the first run) until it yields or ends. */
static void run_coro(sched_proc_t *p)
{
    if (p->flags & PF_EXIT_PENDING)
        return;
    if (p->coro == NULL) {
        p->flags |= PF_INITED;
        int rc = sched_coro_create(&p->coro, 0, coro_body, p);
        if (rc != GD_OK) {
            callback_failed(p, rc);
            return;
        }
        heap_attach_frag(&p->heap, p->arg_frag);
        p->arg_frag = NULL;
        p->cstate = CS_RUN;
        p->reds--;
    } else if (p->cstate == CS_WAIT && !coro_wait_ready(p)) {
        return;
    }
    sched_coro_resume(p->coro);
    if (p->cstate == CS_DONE && !(p->flags & PF_EXIT_PENDING)) {
        if (p->cresult != GD_OK)
            callback_failed(p, p->cresult);
        else
            die(p, atom_normal);
    }
}

/* The receive of a coroutine process, scanning from p->save. */
static int coro_receive(sched_proc_t *p, sched_pred_fn pred, void *parg, int64_t timeout_ms,
                        term_t *msg_out)
{
    /* A preemption point first (the scheduler only appends to the queue
     * meanwhile: p->save stays valid). */
    p->reds--;
    (void)coro_point(p);
    if (timeout_ms >= 0)
        proc_timeout_arm(p, timeout_ms);
    for (;;) {
        take_inbox(p);
        if (p->flags & PF_EXIT_PENDING)
            coro_park_dead(p);
        msg_t **link;
        for (link = p->save; *link != NULL; link = &(*link)->qnext)
            if (pred == NULL || pred((*link)->term, parg))
                break;
        p->save = link;
        if (*link != NULL) {
            proc_timeout_cancel(p);
            msg_t *m = queue_unlink(p, link);
            size_t words = m->frag != NULL ? m->frag->used : 0;
            *msg_out = receive_body(p, m);
            p->reds -= (int32_t)(words / 16);
            return GD_OK;
        }
        if (proc_timeout_fired(p)) {
            proc_timeout_cancel(p);
            return SCHED_ETIMEOUT;
        }
        p->cstate = CS_WAIT;
        coro_switch_out(p);
        p->cstate = CS_RUN;
    }
}

int sched_receive_wait(sched_ctx_t *ctx, sched_pred_fn pred, void *parg, int64_t timeout_ms,
                       term_t *msg_out)
{
    if (ctx->cfn == NULL || !on_own_coro(ctx) || msg_out == NULL)
        return GD_EINVAL;
    ctx->save = &ctx->q_first;
    return coro_receive(ctx, pred, parg, timeout_ms, msg_out);
}

int sched_receive_ref_wait(sched_ctx_t *ctx, term_t ref, sched_pred_fn pred, void *parg,
                           int64_t timeout_ms, term_t *msg_out)
{
    if (ctx->cfn == NULL || !on_own_coro(ctx) || msg_out == NULL)
        return GD_EINVAL;
    ctx->save = &ctx->q_first;
    sched_ref_t r;
    if (ctx->mark != NULL && ref_words(ref, &r) && ref_eq(r, ctx->mark_ref))
        ctx->save = ctx->mark;
    return coro_receive(ctx, pred, parg, timeout_ms, msg_out);
}

bool sched_proc_yield(sched_ctx_t *ctx)
{
    ctx->reds--;
    if (ctx->cfn != NULL)
        return coro_point(ctx);
    return ctx->reds <= 0;
}

int sched_root_push(sched_ctx_t *ctx, term_t *slot)
{
    root_stack_t *r = table_room(ctx->roots, offsetof(root_stack_t, slot), sizeof(term_t *), 8);
    if (r == NULL)
        return GD_ENOMEM;
    ctx->roots = r;
    r->slot[r->n++] = slot;
    return GD_OK;
}

void sched_root_pop(sched_ctx_t *ctx, size_t n)
{
    if (ctx->roots != NULL)
        ctx->roots->n = n >= ctx->roots->n ? 0 : ctx->roots->n - (uint32_t)n;
}

/* Runs callbacks while p has deliverable messages and reductions left. */
static void run_callbacks(sched_proc_t *p)
{
    if (!(p->flags & PF_INITED) && !(p->flags & PF_EXIT_PENDING)) {
        p->flags |= PF_INITED;
        heap_attach_frag(&p->heap, p->arg_frag);
        p->arg_frag = NULL;
        p->reds--;
        size_t used = heap_used_words(&p->heap);
        int rc = p->beh->init(p, p->arg, &p->st);
        p->arg = TERM_NIL;
        if (rc != GD_OK)
            callback_failed(p, rc);
        charge_alloc(p, used);
        safe_point(p);
    }
    while (!(p->flags & (PF_EXIT_PENDING | PF_SUSPENDED)) && p->reds > 0) {
        msg_t *m = next_deliverable(p);
        if (m == NULL) {
            take_inbox(p);
            m = next_deliverable(p);
            if (m == NULL && !proc_timeout_fired(p))
                return;
        }
        term_t msg;
        if (m != NULL) {
            /* A delivered message cancels the timeout. */
            proc_timeout_cancel(p);
            size_t words = m->frag != NULL ? m->frag->used : 0;
            msg = receive_body(p, m);
            p->reds -= 1 + (int32_t)(words / 16);
        } else {
            /* The timeout instead of a message; the selection ends. */
            proc_timeout_cancel(p);
            p->sel_pred = NULL;
            p->save = &p->q_first;
            p->reds--;
            msg = atom_timeout;
        }
        size_t used = heap_used_words(&p->heap);
        int rc = p->beh->handle_message(p, msg, &p->st);
        if (rc != GD_OK)
            callback_failed(p, rc);
        charge_alloc(p, used);
        safe_point(p);
    }
}

/* True when p has something to do now (deliverable or unseen messages). */
static bool has_work(sched_proc_t *p, uint32_t s)
{
    if (s & PS_ACTIVE)
        return true;
    if (p->flags & PF_SUSPENDED)
        return false; /* only its resume (a signal: ACTIVE) brings work */
    if (proc_timeout_fired(p))
        return true;
    if (p->cfn != NULL)
        return p->coro == NULL || p->cstate == CS_RUN || (p->cstate == CS_WAIT && *p->save != NULL);
    return p->sel_pred == NULL ? p->q_first != NULL : *p->save != NULL;
}

/* Adds the reductions used since the last call to the published total. */
static void account(sched_proc_t *p, int64_t *counted)
{
    int64_t used = (int64_t)SCHED_CONTEXT_REDS - p->reds;
    /* A statistic for process_info, written only by the thread running p
     * (the state CAS hands p from one run to the next): a relaxed load
     * and store, no locked RMW on the ring's path. */
    atomic_store_explicit(&p->pub_reds,
                          atomic_load_explicit(&p->pub_reds, memory_order_relaxed) +
                              (uint64_t)(used - *counted),
                          memory_order_relaxed);
    runq_t *rq = sched_current_rq;
    sched_stat_add(rq != NULL ? &rq->stat_reductions : NULL, &sched_node.stat_reductions_other,
                   (uint64_t)(used - *counted));
    *counted = used;
}

int32_t proc_run(sched_proc_t *p)
{
    /* Acq_rel: the acquire half pairs with the senders' release CAS in
     * wake(), so their inbox pushes are visible to take_inbox; seq_cst for
     * deliver's skip. */
    uint32_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&p->state, &s,
                                                  (s & ~(PS_IN_RUNQ | PS_ACTIVE)) | PS_RUNNING,
                                                  memory_order_seq_cst, memory_order_relaxed)) {
    }
    /* Exactly one queue held it, and nobody runs it: a double enqueue or a
     * run of a dead process stops debug builds here. */
    GD_ASSERT((s & PS_IN_RUNQ) && !(s & (PS_RUNNING | PS_EXITING)));
    p->reds = SCHED_CONTEXT_REDS;
    int64_t counted = 0;
    for (;;) {
        take_inbox(p);
        if (p->cfn != NULL)
            run_coro(p);
        else
            run_callbacks(p);
        /* Before anything below lets another thread run p (or see it
         * gone): what it sent is delivered by then, remote output too. */
        outbox_end_run(sched_current_rq);
        sched_dist_run_end();
        if (p->flags & PF_EXIT_PENDING) {
            account(p, &counted);
            do_exit(p);
            return (int32_t)counted;
        }
        /* Relaxed: the CASes below validate it. */
        s = atomic_load_explicit(&p->state, memory_order_relaxed);
        /* A push take_inbox missed, whose sender may have skipped setting
         * ACTIVE (deliver): looked at again, a reduction a look, and
         * once the slice is used up back to the queue, so a sender
         * preempted between its two stores holds up no one. */
        bool pending = !(s & PS_ACTIVE) && inbox_pending(p);
        if (pending && p->reds > 0) {
            p->reds--;
            continue;
        }
        if (p->reds <= 0 && (pending || has_work(p, s))) {
            /* Slice used up: to the back of the queue. */
            publish_info(p);
            account(p, &counted);
            /* Acq_rel: hands the PCB over to whichever scheduler dequeues
             * it (the queue lock orders it too). */
            while (!atomic_compare_exchange_weak_explicit(
                &p->state, &s, (s & ~PS_RUNNING) | PS_IN_RUNQ, memory_order_acq_rel,
                memory_order_relaxed)) {
            }
            runq_push(p);
            return (int32_t)counted;
        }
        if (s & PS_ACTIVE) {
            /* A sender published meanwhile: clear the flag (acquire: see
             * its push) and look at the inbox again. */
            atomic_fetch_and_explicit(&p->state, ~PS_ACTIVE, memory_order_seq_cst);
            continue;
        }
        /* Publish before the CAS: once RUNNING is clear another scheduler
         * may run p. */
        publish_info(p);
        account(p, &counted);
        /* Wait unless a sender set ACTIVE since the load: the CAS expects
         * the word without ACTIVE (acq_rel: on failure it reads the
         * sender's release and the loop sees its message). */
        if (atomic_compare_exchange_strong_explicit(&p->state, &s, s & ~PS_RUNNING,
                                                    memory_order_acq_rel, memory_order_relaxed))
            return (int32_t)counted;
    }
}

/* ------------------------------------------------------------------------ */
/* Spawning                                                                 */

static const sched_spawn_opts_t default_opts;

/* Spawns a behaviour process (beh) or a coroutine process (cfn). */
static int spawn(sched_ctx_t *ctx, const sched_behaviour_t *beh, sched_coro_fn cfn, term_t arg,
                 const sched_spawn_opts_t *opts, term_t *pid_out, term_t *ref_out)
{
    /* The child may run on another scheduler at once and act on what the
     * parent sent before. */
    proc_outbox_flush();
    if (!node_running())
        return SCHED_ESTOPPED;
    if (opts == NULL)
        opts = &default_opts;
    if ((beh != NULL) == (cfn != NULL) ||
        (beh != NULL && (beh->init == NULL || beh->handle_message == NULL)) ||
        ((opts->link || opts->monitor) && ctx == NULL) || (opts->monitor && ref_out == NULL) ||
        (unsigned)opts->priority > SCHED_PRIO_MAX)
        return GD_EINVAL;
    int rc;
    runq_t *here;
    sched_proc_t *p = pcb_alloc();
    if (p == NULL)
        return GD_ENOMEM;
    rc = heap_init(&p->heap,
                   opts->min_heap_size != 0 ? opts->min_heap_size : SCHED_MIN_HEAP_DEFAULT);
    if (rc != GD_OK)
        goto fail_pcb;
    p->heap.max_heap_words = opts->max_heap_size;
    if (opts->fullsweep_after != 0)
        p->heap.fullsweep_after = opts->fullsweep_after;
    rc = heap_msg_copy(arg, &p->arg_frag, &p->arg);
    if (rc != GD_OK)
        goto fail_pcb;
    uint32_t idx;
    rc = slot_alloc(&idx);
    if (rc != GD_OK)
        goto fail_arg;
    slot_t *slot = &sched_node.slots[idx];
    /* Relaxed: the slot is ours (from the free list, under its mutex). */
    uint64_t serial =
        (atomic_load_explicit(&slot->word, memory_order_relaxed) >> SLOT_SERIAL_SHIFT) &
        sched_node.serial_mask;
    p->pid = make_pid(idx, (uint32_t)serial);
    inbox_init(p);
    p->q_last = &p->q_first;
    p->save = &p->q_first;
    p->beh = beh;
    p->cfn = cfn;
    p->st = TERM_NIL;
    p->reason = atom_normal;
    p->name = TERM_NIL;
    p->prio = (uint8_t)opts->priority;
    /* Acquire pairs with the release that published the queues. */
    unsigned nrqs = atomic_load_explicit(&sched_node.nrqs, memory_order_acquire);
    if (opts->scheduler > 0)
        p->home = (uint16_t)((unsigned)(opts->scheduler - 1) % sched_node.nsched);
    else if ((here = sched_this_rq()) != NULL)
        p->home = (uint16_t)here->index;
    else
        p->home = (uint16_t)(idx % (nrqs != 0 ? nrqs : 1));
    sched_ref_t mref;
    if (opts->link) {
        if (links_add(p, ctx->pid) != GD_OK || links_add(ctx, p->pid) != GD_OK)
            goto fail_slot;
    }
    if (opts->monitor) {
        mref = new_ref();
        if (ref_term(&ctx->heap, mref, ref_out) != GD_OK)
            goto fail_link;
        if (mon_add(&p->monitored_by, mref, ctx->pid, TERM_NONE) != GD_OK)
            goto fail_link;
        if (mon_add(&ctx->monitors, mref, p->pid, TERM_NONE) != GD_OK)
            goto fail_link;
    }
    atomic_init(&p->state, PS_ACTIVE | PS_IN_RUNQ);
    slot->proc = p;
    /* Relaxed: a count; waiters re-check in timed steps. */
    atomic_fetch_add_explicit(&sched_node.nprocs, 1, memory_order_relaxed);
    /* Release: publishes the PCB (and slot->proc) to proc_get's acquire. */
    atomic_store_explicit(&slot->word, SLOT_LIVE | (serial << SLOT_SERIAL_SHIFT) | 1,
                          memory_order_release);
    *pid_out = p->pid;
    runq_push(p);
    if (ctx != NULL) {
        ctx->reds -= 10;
        coro_point(ctx);
    }
    return GD_OK;

fail_link:
    if (opts->link)
        links_remove(ctx, p->pid);
fail_slot:
    rc = GD_ENOMEM;
    /* Relaxed: never published; the mutex in slot_free orders it. */
    atomic_store_explicit(&slot->word, ((serial + 1) & sched_node.serial_mask) << SLOT_SERIAL_SHIFT,
                          memory_order_relaxed);
    slot_free(idx);
fail_arg:
    heap_frag_free(p->arg_frag);
    p->arg_frag = NULL;
    free(p->links);
    free(p->monitored_by);
fail_pcb:
    heap_destroy(&p->heap);
    pcb_free(p);
    return rc;
}

int sched_spawn_opt(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg,
                    const sched_spawn_opts_t *opts, term_t *pid_out, term_t *ref_out)
{
    if (beh == NULL)
        return GD_EINVAL;
    return spawn(ctx, beh, NULL, arg, opts, pid_out, ref_out);
}

int sched_spawn_coro_opt(sched_ctx_t *ctx, sched_coro_fn fn, term_t arg,
                         const sched_spawn_opts_t *opts, term_t *pid_out, term_t *ref_out)
{
    if (fn == NULL)
        return GD_EINVAL;
    return spawn(ctx, NULL, fn, arg, opts, pid_out, ref_out);
}

int sched_spawn_coro(sched_ctx_t *ctx, sched_coro_fn fn, term_t arg, term_t *pid_out)
{
    return sched_spawn_coro_opt(ctx, fn, arg, NULL, pid_out, NULL);
}

int sched_spawn(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg, term_t *pid_out)
{
    return sched_spawn_opt(ctx, beh, arg, NULL, pid_out, NULL);
}

int sched_spawn_link(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg, term_t *pid_out)
{
    sched_spawn_opts_t o = {.link = true};
    return sched_spawn_opt(ctx, beh, arg, &o, pid_out, NULL);
}

int sched_spawn_monitor(sched_ctx_t *ctx, const sched_behaviour_t *beh, term_t arg, term_t *pid_out,
                        term_t *ref_out)
{
    sched_spawn_opts_t o = {.monitor = true};
    return sched_spawn_opt(ctx, beh, arg, &o, pid_out, ref_out);
}

/* ------------------------------------------------------------------------ */
/* The process API                                                          */

term_t sched_self(const sched_ctx_t *ctx)
{
    return ctx->pid;
}

heap_t *sched_heap(sched_ctx_t *ctx)
{
    return &ctx->heap;
}

bool sched_bump_reds(sched_ctx_t *ctx, uint32_t n)
{
    /* A long C loop calls this: what it sent, to local processes and to
     * other nodes, leaves now, not at the end of its slice. */
    proc_outbox_flush();
    sched_dist_run_end();
    ctx->reds -= (int32_t)(n > INT32_MAX / 2 ? INT32_MAX / 2 : n);
    if (ctx->cfn != NULL)
        return coro_point(ctx);
    return ctx->reds <= 0;
}

/* Resolves a pid or registered name to a pid (TERM_NONE: unregistered). */
static int resolve(term_t to, term_t *pid)
{
    if (term_is_local_pid(to)) {
        *pid = to;
        return GD_OK;
    }
    if (!term_is_atom(to))
        return GD_EBADARG;
    term_t w = sched_whereis(to);
    *pid = w == atom_undefined ? TERM_NONE : w;
    return GD_OK;
}

/* The live process `to` (pid or name) names, with a reference (*out NULL
 * when it is dead: a send is then dropped).  Errors: SCHED_ESTOPPED,
 * GD_EBADARG, SCHED_ENOPROC (an unregistered name). */
static int lookup_target(term_t to, sched_proc_t **out)
{
    if (!node_running())
        return SCHED_ESTOPPED;
    term_t pid;
    int rc = resolve(to, &pid);
    if (rc != GD_OK)
        return rc;
    if (pid == TERM_NONE)
        return SCHED_ENOPROC;
    *out = proc_get(pid);
    return GD_OK;
}

static int send_alias(sched_ctx_t *ctx, term_t to, term_t msg, heap_frag_t **built);
static int send_body(sched_ctx_t *ctx, sched_proc_t *t, enum msg_kind kind, sched_ref_t ref,
                     term_t msg, heap_frag_t **built);

/* The send itself: msg copied into a message of `kind` (for an alias
 * message, with the alias ref) delivered to t, whose reference it drops;
 * ctx (may be NULL) is charged 1 + 1 per 16 words and reaches its
 * preemption point. */
static int send_copy(sched_ctx_t *ctx, sched_proc_t *t, enum msg_kind kind, sched_ref_t ref,
                     term_t msg)
{
    return send_body(ctx, t, kind, ref, msg, NULL);
}

/* The message entry for msg: a copy whose queue entry rides in the body's
 * block, one allocation per send (an immediate body has no block: a msg_t
 * of its own); or, with *built (non-NULL), the fragment chain msg already
 * lies in, taken as the body instead of a copy. */
static int msg_for_body(enum msg_kind kind, term_t from, term_t msg, heap_frag_t **built,
                        msg_t **out)
{
    if (built != NULL) {
        msg_t *m = msg_new(kind, from);
        if (m == NULL)
            return GD_ENOMEM;
        m->frag = *built;
        m->term = msg;
        *built = NULL;
        *out = m;
        return GD_OK;
    }
    heap_frag_t *frag;
    term_t body;
    void *carried;
    int rc = heap_msg_copy_carry(msg, sizeof(msg_t), &frag, &body, &carried);
    if (rc != GD_OK)
        return rc;
    msg_t *m = carried != NULL ? carried : malloc(sizeof *m);
    if (m == NULL)
        return GD_ENOMEM; /* carried is NULL only for an immediate: no frag */
    msg_init(m, kind, from);
    m->in_frag = carried != NULL;
    m->frag = frag;
    m->term = body;
    *out = m;
    return GD_OK;
}

/* send_body's work but the drop and the preemption point: t is the
 * caller's (referenced or borrowed). */
static int send_to(sched_ctx_t *ctx, sched_proc_t *t, enum msg_kind kind, sched_ref_t ref,
                   term_t msg, heap_frag_t **built)
{
    msg_t *m = NULL;
    int rc = msg_for_body(kind, ctx != NULL ? ctx->pid : TERM_NIL, msg, built, &m);
    if (rc == GD_OK)
        m->ref = ref;
    if (built != NULL && *built != NULL) {
        heap_frag_free(*built);
        *built = NULL;
    }
    if (rc == GD_OK) {
        proc_charge_send(ctx, m);
        if (!outbox_take(ctx, t, m))
            deliver_chain(t, m, m, m->kind == MSG_MESSAGE);
    }
    return rc;
}

/* send_copy, or with *built (non-NULL) the fragment chain msg already
 * lies in: taken as the body instead of a copy (freed on failure). */
static int send_body(sched_ctx_t *ctx, sched_proc_t *t, enum msg_kind kind, sched_ref_t ref,
                     term_t msg, heap_frag_t **built)
{
    int rc = send_to(ctx, t, kind, ref, msg, built);
    proc_put(t);
    if (ctx != NULL && rc == GD_OK)
        coro_point(ctx);
    return rc;
}

/* sched_send to local pid `to` from scheduler rq, the target borrowed
 * (no reference taken or dropped: scheduler.c, "Borrowed PCBs"). */
static int send_borrowed(sched_ctx_t *ctx, runq_t *rq, term_t to, term_t msg)
{
    if (!node_running())
        return SCHED_ESTOPPED;
    borrow_begin(rq);
    sched_proc_t *t = proc_peek(to);
    int rc = t != NULL ? send_to(ctx, t, MSG_MESSAGE, (sched_ref_t){{0, 0, 0}}, msg, NULL) : GD_OK;
    borrow_end(rq);
    if (t != NULL && ctx != NULL && rc == GD_OK)
        coro_point(ctx);
    return rc;
}

/* sched_send to the open outbox's target (outbox_open_for): a copy
 * appended without a lookup or a reference of its own. */
static int send_outboxed(sched_ctx_t *ctx, term_t msg)
{
    msg_t *m = NULL;
    int rc = msg_for_body(MSG_MESSAGE, ctx->pid, msg, NULL, &m);
    if (rc != GD_OK)
        return rc;
    proc_charge_send(ctx, m);
    outbox_append(sched_current_rq, m);
    coro_point(ctx);
    return GD_OK;
}

int sched_send(sched_ctx_t *ctx, term_t to, term_t msg)
{
    /* A local pid, the common case, is none of the others. */
    if (!term_is_local_pid(to) && sched_dist_target(to))
        return sched_dist_send(ctx, to, msg);
    if (!term_is_local_pid(to) && term_is_local_ref(to))
        return send_alias(ctx, to, msg, NULL);
    if (outbox_open_for(ctx, to) && node_running())
        return send_outboxed(ctx, msg);
    runq_t *rq = sched_current_rq;
    if (rq != NULL && sched_node.borrow_ok && term_is_local_pid(to))
        return send_borrowed(ctx, rq, to, msg);
    sched_proc_t *t;
    int rc = lookup_target(to, &t);
    if (rc != GD_OK || t == NULL)
        return rc;
    return send_copy(ctx, t, MSG_MESSAGE, (sched_ref_t){{0, 0, 0}}, msg);
}

int sched_suspend(sched_ctx_t *ctx)
{
    if (ctx->cfn != NULL)
        return GD_EINVAL;
    ctx->flags |= PF_SUSPENDED;
    return GD_OK;
}

int sched_resume(term_t pid)
{
    if (!term_is_local_pid(pid))
        return GD_EBADARG;
    msg_t *m = msg_new(SIG_RESUME, TERM_NIL);
    if (m == NULL)
        return GD_ENOMEM;
    send_sig(pid, m);
    return GD_OK;
}

int sched_send_built(term_t to, heap_frag_t *frag, term_t msg)
{
    if (!term_is_local_pid(to) && term_is_local_ref(to))
        return send_alias(NULL, to, msg, &frag);
    int rc = GD_EBADARG;
    sched_proc_t *t = NULL;
    if (term_is_local_pid(to) || term_is_atom(to))
        rc = lookup_target(to, &t);
    if (rc == GD_OK && t != NULL)
        return send_body(NULL, t, MSG_MESSAGE, (sched_ref_t){{0, 0, 0}}, msg, &frag);
    heap_frag_free(frag);
    return rc;
}

int sched_exit_pid(sched_ctx_t *ctx, term_t to, term_t reason)
{
    if (term_is_ext_pid(to))
        return sched_dist_exit(ctx, to, reason);
    sched_proc_t *t;
    int rc = lookup_target(to, &t);
    if (rc != GD_OK || t == NULL)
        return rc;
    msg_t *m = exit_sig(ctx != NULL ? ctx->pid : atom_undefined, reason, false);
    if (m == NULL) {
        rc = GD_ENOMEM;
    } else {
        if (ctx != NULL)
            ctx->reds--;
        deliver(t, m);
    }
    proc_put(t);
    return rc;
}

int sched_exit_pid_from(sched_ctx_t *ctx, term_t to, term_t from, term_t reason)
{
    if (ctx == NULL || !term_is_local_pid(to))
        return GD_EBADARG;
    sched_proc_t *t;
    int rc = lookup_target(to, &t);
    if (rc != GD_OK || t == NULL)
        return rc;
    /* The signal is the caller's (an unlinked exit: nothing in the
     * target's link table is touched); only its body names `from`. */
    msg_t *m = msg_new(SIG_EXIT, ctx->pid);
    term_t elems[3] = {atom_exit_tag, from, reason};
    if (m == NULL) {
        rc = GD_ENOMEM;
    } else if (heap_msg_copy_tuple(elems, 3, &m->frag, &m->term) != GD_OK) {
        free(m);
        rc = GD_ENOMEM;
    } else {
        m->linked = false;
        ctx->reds--;
        deliver(t, m);
    }
    proc_put(t);
    return rc;
}

int sched_exit(sched_ctx_t *ctx, term_t reason)
{
    ctx->reason = reason;
    return SCHED_EEXIT;
}

/* Delivers a signal to the calling process itself. */
static void self_sig(sched_ctx_t *ctx, msg_t *m)
{
    deliver(ctx, m);
}

int sched_link(sched_ctx_t *ctx, term_t to)
{
    if (term_is_ext_pid(to))
        return sched_dist_link(ctx, to, false);
    term_t pid;
    int rc = resolve(to, &pid);
    if (rc != GD_OK)
        return rc;
    if (pid == TERM_NONE)
        return SCHED_ENOPROC;
    if (pid == ctx->pid)
        return GD_OK;
    msg_t *m = msg_new(SIG_LINK, ctx->pid);
    if (m == NULL)
        return GD_ENOMEM;
    rc = links_add(ctx, pid);
    if (rc != GD_OK) {
        free(m);
        return rc;
    }
    ctx->reds--;
    sched_proc_t *t = proc_get(pid);
    if (t == NULL) {
        /* Dead already: the exit signal a dead target answers with. */
        free(m);
        m = exit_sig(pid, atom_noproc, true);
        if (m == NULL) {
            links_remove(ctx, pid);
            return GD_ENOMEM;
        }
        self_sig(ctx, m);
        return GD_OK;
    }
    deliver(t, m);
    proc_put(t);
    return GD_OK;
}

int sched_unlink(sched_ctx_t *ctx, term_t to)
{
    if (term_is_ext_pid(to))
        return sched_dist_link(ctx, to, true);
    term_t pid;
    int rc = resolve(to, &pid);
    if (rc != GD_OK)
        return rc;
    if (pid == TERM_NONE || !links_remove(ctx, pid))
        return GD_OK;
    msg_t *m = msg_new(SIG_UNLINK, ctx->pid);
    if (m == NULL)
        return GD_ENOMEM;
    ctx->reds--;
    send_sig(pid, m);
    return GD_OK;
}

/* How monitor `ref` of `to` by `watcher` starts: sig is the SIG_MONITOR
 * for the live target t (referenced: the caller delivers sig to it, then
 * puts it) or, with t NULL, the watcher's own 'DOWN' noproc.  pid and
 * name are what the watcher's entry records (pid NONE without a live
 * target: the DOWN for an unregistered name names {Name, Node}). */
typedef struct monitor_start {
    sched_proc_t *t;
    msg_t *sig;
    term_t pid, name;
} monitor_start_t;

static int monitor_prepare(term_t watcher, term_t to, sched_ref_t ref, monitor_start_t *ms)
{
    term_t pid;
    int rc = resolve(to, &pid);
    if (rc != GD_OK)
        return rc;
    ms->name = term_is_atom(to) ? to : TERM_NONE;
    ms->t = pid == TERM_NONE ? NULL : proc_get(pid);
    ms->pid = ms->t != NULL ? pid : TERM_NONE;
    ms->sig = ms->t == NULL ? down_sig(ref, pid == TERM_NONE ? watcher : pid, ms->name, atom_noproc)
                            : msg_new(SIG_MONITOR, watcher);
    if (ms->sig == NULL) {
        if (ms->t != NULL)
            proc_put(ms->t);
        return GD_ENOMEM;
    }
    if (ms->t != NULL) {
        ms->sig->ref = ref;
        ms->sig->name = ms->name;
    }
    return GD_OK;
}

/* Monitors the local process `to` (pid or name) with reference ref. */
static int monitor_local(sched_ctx_t *ctx, term_t to, sched_ref_t ref, term_t *ref_out)
{
    monitor_start_t ms;
    int rc = monitor_prepare(ctx->pid, to, ref, &ms);
    if (rc != GD_OK)
        return rc;
    rc = ref_term(&ctx->heap, ref, ref_out);
    if (rc == GD_OK) {
        ctx->reds--;
        rc = mon_add(&ctx->monitors, ref, ms.pid, ms.name);
    }
    if (rc != GD_OK)
        msg_free(ms.sig);
    else if (ms.t == NULL)
        self_sig(ctx, ms.sig);
    else
        deliver(ms.t, ms.sig);
    if (ms.t != NULL)
        proc_put(ms.t);
    return rc;
}

int sched_monitor(sched_ctx_t *ctx, term_t to, term_t *ref_out)
{
    if (sched_dist_target(to))
        return sched_dist_monitor(ctx, to, ref_out);
    return monitor_local(ctx, to, new_ref(), ref_out);
}

int sched_ref_new(heap_t *h, term_t *ref_out)
{
    return ref_term(h, new_ref(), ref_out);
}

int sched_monitor_for(term_t watcher, term_t to, term_t ref)
{
    sched_ref_t r;
    if (!term_is_local_pid(watcher) || !ref_words(ref, &r) || sched_dist_target(to))
        return GD_EINVAL;
    monitor_start_t ms;
    int rc = monitor_prepare(watcher, to, r, &ms);
    if (rc != GD_OK)
        return rc;
    /* The watcher's entry first: the target's 'DOWN' (or the noproc one)
     * comes after it in the watcher's inbox. */
    sched_proc_t *w = proc_get(watcher);
    rc = w == NULL ? SCHED_ENOPROC : monitor_add_to(w, r, ms.pid, ms.name);
    if (rc != GD_OK)
        msg_free(ms.sig);
    else
        deliver(ms.t != NULL ? ms.t : w, ms.sig);
    if (ms.t != NULL)
        proc_put(ms.t);
    if (w != NULL)
        proc_put(w);
    return rc;
}

int sched_monitor_alias(sched_ctx_t *ctx, term_t to, enum sched_alias_mode mode, term_t *ref_out)
{
    if (sched_dist_target(to) || (unsigned)mode > SCHED_ALIAS_REPLY_DEMONITOR)
        return GD_EINVAL;
    sched_ref_t ref = new_alias_ref(ctx->pid);
    /* The alias first: a 'DOWN' for a dead target is queued to ourselves
     * by monitor_local and must find it to drop it. */
    int rc = alias_add(ctx, ref, mode);
    if (rc != GD_OK)
        return rc;
    rc = monitor_local(ctx, to, ref, ref_out);
    if (rc != GD_OK) {
        alias_drop_at(ctx, alias_find(ctx, ref));
        return rc;
    }
    ctx->mark = ctx->q_last;
    ctx->mark_ref = ref;
    return GD_OK;
}

int sched_alias_create_opt(sched_ctx_t *ctx, enum sched_alias_mode mode, term_t *ref_out)
{
    if (mode != SCHED_ALIAS_EXPLICIT && mode != SCHED_ALIAS_REPLY)
        return GD_EINVAL;
    sched_ref_t ref = new_alias_ref(ctx->pid);
    int rc = ref_term(&ctx->heap, ref, ref_out);
    if (rc == GD_OK)
        rc = alias_add(ctx, ref, mode);
    if (rc != GD_OK)
        return rc;
    ctx->mark = ctx->q_last;
    ctx->mark_ref = ref;
    return GD_OK;
}

int sched_alias_create(sched_ctx_t *ctx, term_t *ref_out)
{
    return sched_alias_create_opt(ctx, SCHED_ALIAS_EXPLICIT, ref_out);
}

bool sched_alias_remove(sched_ctx_t *ctx, term_t ref)
{
    sched_ref_t r;
    int64_t i = ref_words(ref, &r) ? alias_find(ctx, r) : -1;
    if (i < 0)
        return false;
    alias_drop_at(ctx, i);
    return true;
}

/* A send to local reference `to`: to its owner when it is an alias (the
 * owner checks that it is active), else dropped. */
static int send_alias(sched_ctx_t *ctx, term_t to, term_t msg, heap_frag_t **built)
{
    int rc = GD_OK;
    sched_ref_t r;
    term_t owner;
    sched_proc_t *t;
    if (!node_running())
        rc = SCHED_ESTOPPED;
    else if (ref_words(to, &r) && alias_pid(r, &owner) && (t = proc_get(owner)) != NULL)
        return send_body(ctx, t, MSG_ALIAS, r, msg, built);
    if (built != NULL)
        heap_frag_free(*built);
    return rc;
}

/* Removes p's monitor r (and an alias tied to it) and tells the target;
 * *found false when p has no such monitor. */
static int monitor_drop(sched_proc_t *p, sched_ref_t r, bool *found)
{
    mon_entry_t e;
    *found = mon_remove(p->monitors, r, &e);
    if (!*found)
        return GD_OK;
    alias_monitor_gone(p, r);
    if (e.pid == TERM_NONE)
        return GD_OK;
    msg_t *m = msg_new(SIG_DEMONITOR, p->pid);
    if (m == NULL)
        return GD_ENOMEM;
    m->ref = r;
    p->reds--;
    send_sig(e.pid, m);
    return GD_OK;
}

int sched_demonitor(sched_ctx_t *ctx, term_t ref)
{
    sched_ref_t r;
    if (!ref_words(ref, &r))
        return GD_EBADARG;
    bool found;
    int rc = monitor_drop(ctx, r, &found);
    if (!found)
        return sched_dist_demonitor(ctx, ref); /* a monitor of another node's process? */
    return rc;
}

bool sched_trap_exit(sched_ctx_t *ctx, bool on)
{
    bool old = (ctx->flags & PF_TRAP_EXIT) != 0;
    if (on)
        ctx->flags |= PF_TRAP_EXIT;
    else
        ctx->flags &= (uint8_t)~PF_TRAP_EXIT;
    return old;
}

/* Exact equality of two dictionary keys.  A comparison that cannot get the
 * memory for its work stack (deeply nested keys only) counts as unequal:
 * the lookup then misses, it never aborts. */
static bool dict_key_eq(term_t a, term_t b)
{
    int order;
    return a == b || (heap_compare_checked(a, b, true, &order) == GD_OK && order == 0);
}

term_t sched_dict_get(sched_ctx_t *ctx, term_t key)
{
    dict_t *d = ctx->dict;
    if (d != NULL)
        for (uint32_t i = 0; i < d->n; i++)
            if (dict_key_eq(d->kv[2 * i], key))
                return d->kv[2 * i + 1];
    return atom_undefined;
}

int sched_dict_put(sched_ctx_t *ctx, term_t key, term_t val, term_t *old_out)
{
    dict_t *d = ctx->dict;
    if (d != NULL)
        for (uint32_t i = 0; i < d->n; i++)
            if (dict_key_eq(d->kv[2 * i], key)) {
                if (old_out != NULL)
                    *old_out = d->kv[2 * i + 1];
                d->kv[2 * i + 1] = val;
                return GD_OK;
            }
    d = table_room(d, offsetof(dict_t, kv), 2 * sizeof(term_t), 4);
    if (d == NULL)
        return GD_ENOMEM;
    ctx->dict = d;
    d->kv[2 * d->n] = key;
    d->kv[2 * d->n + 1] = val;
    d->n++;
    if (old_out != NULL)
        *old_out = atom_undefined;
    return GD_OK;
}

term_t sched_dict_erase(sched_ctx_t *ctx, term_t key)
{
    dict_t *d = ctx->dict;
    if (d != NULL)
        for (uint32_t i = 0; i < d->n; i++)
            if (dict_key_eq(d->kv[2 * i], key)) {
                term_t old = d->kv[2 * i + 1];
                d->n--;
                d->kv[2 * i] = d->kv[2 * d->n];
                d->kv[2 * i + 1] = d->kv[2 * d->n + 1];
                return old;
            }
    return atom_undefined;
}

int sched_make_ref(sched_ctx_t *ctx, term_t *ref_out)
{
    sched_ref_t r = new_ref();
    int rc = ref_term(&ctx->heap, r, ref_out);
    if (rc != GD_OK)
        return rc;
    ctx->mark = ctx->q_last;
    ctx->mark_ref = r;
    return GD_OK;
}

void sched_receive(sched_ctx_t *ctx, sched_pred_fn pred, void *arg)
{
    ctx->sel_pred = pred;
    ctx->sel_arg = arg;
    ctx->save = &ctx->q_first;
}

void sched_receive_ref(sched_ctx_t *ctx, term_t ref, sched_pred_fn pred, void *arg)
{
    sched_receive(ctx, pred, arg);
    sched_ref_t r;
    if (pred != NULL && ctx->mark != NULL && ref_words(ref, &r) && ref_eq(r, ctx->mark_ref))
        ctx->save = ctx->mark;
}

size_t sched_flush(sched_ctx_t *ctx, sched_pred_fn pred, void *arg)
{
    size_t dropped = 0;
    msg_t **link = &ctx->q_first;
    while (*link != NULL) {
        if (!pred((*link)->term, arg)) {
            link = &(*link)->qnext;
            continue;
        }
        msg_free(queue_unlink(ctx, link));
        dropped++;
    }
    return dropped;
}

int sched_code_change(sched_ctx_t *ctx, term_t extra)
{
    if (ctx->beh->code_change == NULL)
        return GD_OK;
    return ctx->beh->code_change(ctx, extra, &ctx->st);
}

/* What process_info reports as memory: PCB, heap and dictionary, from the
 * figures published at the end of p's last slice. */
static size_t proc_memory_bytes(sched_proc_t *p)
{
    return sizeof *p +
           atomic_load_explicit(&p->pub_heap_words, memory_order_relaxed) * sizeof(term_t) +
           atomic_load_explicit(&p->pub_dict_bytes, memory_order_relaxed);
}

uint32_t sched_message_queue_len(term_t pid)
{
    sched_proc_t *p = proc_get(pid);
    if (p == NULL)
        return 0;
    /* Relaxed: a statistic, as in sched_process_info. */
    uint32_t n = proc_qlen(p);
    proc_put(p);
    return n;
}

int sched_process_info(term_t pid, sched_process_info_t *out)
{
    /* message_queue_len counts what the caller sent. */
    proc_outbox_flush();
    sched_proc_t *p = proc_get(pid);
    if (p == NULL)
        return SCHED_ENOPROC;
    /* Acquire: a snapshot; the rest are relaxed statistics. */
    uint32_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    out->status = (s & PS_EXITING)   ? SCHED_STATUS_EXITING
                  : (s & PS_RUNNING) ? SCHED_STATUS_RUNNING
                  : (s & PS_IN_RUNQ) ? SCHED_STATUS_RUNNABLE
                                     : SCHED_STATUS_WAITING;
    out->priority = (enum sched_priority)p->prio;
    out->message_queue_len = proc_qlen(p);
    out->heap_size_words = atomic_load_explicit(&p->pub_heap_words, memory_order_relaxed);
    out->reductions = atomic_load_explicit(&p->pub_reds, memory_order_relaxed);
    out->links = atomic_load_explicit(&p->pub_links, memory_order_relaxed);
    out->monitors = atomic_load_explicit(&p->pub_monitors, memory_order_relaxed);
    out->monitored_by = atomic_load_explicit(&p->pub_monitored_by, memory_order_relaxed);
    out->memory_bytes = proc_memory_bytes(p);
    out->registered_name = sched_registered_name(pid);
    proc_put(p);
    return GD_OK;
}

size_t sched_process_memory(void)
{
    node_t *n = &sched_node;
    if (!node_running())
        return 0;
    pthread_mutex_lock(&n->free_lock);
    uint32_t used = n->fresh;
    pthread_mutex_unlock(&n->free_lock);
    size_t total = 0;
    for (uint32_t i = 0; i < used; i++) {
        slot_t *s = &n->slots[i];
        /* A reference as proc_get takes one (acquire: the PCB is visible),
         * by index rather than by pid. */
        uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
        while ((w & SLOT_LIVE) &&
               !atomic_compare_exchange_weak_explicit(&s->word, &w, w + 1, memory_order_acquire,
                                                      memory_order_acquire)) {
        }
        if (!(w & SLOT_LIVE))
            continue;
        sched_proc_t *p = s->proc;
        total += proc_memory_bytes(p);
        proc_put(p);
    }
    return total;
}

/* ------------------------------------------------------------------------ */
/* Prepared messages (dirty.c)                                              */

/* Builds the message {Tag, 0} in a fragment of its own (tag copied from
 * the caller's heap), owned by the caller until sent.  Errors: GD_ENOMEM,
 * GD_ESYSTEM_LIMIT.  O(size of tag). */
int proc_msg_prepare(term_t tag, msg_t **out)
{
    msg_t *m = msg_new(MSG_MESSAGE, TERM_NIL);
    if (m == NULL)
        return GD_ENOMEM;
    term_t elems[2] = {tag, term_make_small(0)};
    int rc = heap_msg_copy_tuple(elems, 2, &m->frag, &m->term);
    if (rc != GD_OK) {
        free(m);
        return rc;
    }
    *out = m;
    return GD_OK;
}
