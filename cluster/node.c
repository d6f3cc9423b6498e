/*
 * node.c — the running node: the libevent loop thread, the distribution
 * listener, EPMD registration (epmd_keeper), connections (handshake, then
 * frames), ticks, and the sched/ hooks that carry sends to other nodes.
 * With TLS (tls.c) a connection's bufferevent is an OpenSSL one and its
 * handshake messages carry 4-byte lengths; the rest is the same.
 * node.c and tls.c are the files of cluster/ that include <event2/...>.
 *
 * Threads and locking.  One loop thread runs every socket callback and
 * timer, and reads the up TCP connections unless an idle scheduler does
 * (idle_poll): whoever reads them holds node.rd_lock, which covers their
 * receive state (rxq, decoder, sinks).  Scheduler threads reach
 * connections otherwise only through the send hook, under node.lock:
 * they encode the message on their own thread (no lock held), then under
 * the lock find (or create) the connection and append the bytes to its
 * bufferevent (thread-safe, and never blocking: it only appends to a
 * buffer) or, while the connection is being set up, to its pending
 * buffer.  Bufferevents run their callbacks deferred and unlocked,
 * so the lock order is always node.lock, then a bufferevent's own lock.
 * Connections are freed only on the loop thread, after being unlinked
 * under the lock (Redis' freeClientAsync: never inside their own
 * callback), so the loop may use a connection without the lock for the
 * fields only it touches (handshake, timers), and a reader the receive
 * state under rd_lock (conn_free takes it before freeing).
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "epmd.h"
#include "internal.h"

enum conn_state {
    CONN_CONNECTING = 0, /* initiator: the connect thread is looking it up */
    CONN_HANDSHAKE,
    CONN_UP,
    CONN_CLOSING, /* flushing a last message (a refusal status), then closed */
    CONN_DEAD,    /* unlinked; freed by the loop */
};

typedef struct conn {
    struct conn *next;
    enum conn_state state;
    bool initiator;
    bool connect_job;     /* a connect thread still holds it: it schedules the release */
    bool await_peer;      /* our attempt lost a simultaneous connect ("nok"): it waits,
                             queue and all, for the peer's attempt to take it over */
    bool tls;             /* an OpenSSL bufferevent: never write to its socket directly */
    uint8_t hs_len_bytes; /* handshake length header: 2 (TCP), 4 (TLS), 0 (TLS, not seen yet) */
    struct bufferevent *bev;
    struct event *timer; /* setup timer during the handshake, tick timer after */
    dist_hs_t hs;
    dist_rx_t rx;
    bool rx_ready;
    /* Received bytes of an up connection, moved out of the bufferevent's
     * input (loop thread only, no lock): frames are split and decoded
     * here without the bufferevent's lock, which senders on the
     * schedulers take for every write (see read_up). */
    struct evbuffer *rxq;
    /* An up TCP connection's socket is read by us rather than by the
     * bufferevent (see conn_read), by whoever holds node.rd_lock: the
     * loop thread, woken by rd_evc (an event of the socket's own), or a
     * scheduler that polls node.rd_ep; in_rd_ep (set under both locks)
     * says it is there.  rd_parked: rd_evc is off while a scheduler reads
     * (node.parked, rd_mode_lock; see conn_loop_read_cb).  rx_want: bytes
     * the frame at the head of rxq still lacks (0: none known). */
    int rd_fd;
    bool in_rd_ep;
    bool rd_parked;
    struct event *rd_evc;
    struct conn *parked_next;
    size_t rx_want;
    /* A frame read on a scheduler thread needed the controller to act
     * before the frames after it (to_ctrl_sync): the reader stops there
     * and the connection waits on node.deferred until the controller has
     * acknowledged sync_seq (rd_lock; see conn_defer). */
    bool deferred;
    uint64_t sync_seq;
    struct conn *deferred_next;
    /* A big frame's bytes go from the socket straight to where they end
     * up (conn_read): a continuation fragment's into its sequence's
     * buffer, another big frame's into a binary of its own.  sink_left:
     * bytes still to come (0: no sink). */
    uint8_t *sink_dst;
    size_t sink_left, sink_frame_len;
    heap_binary_t *sink_frame;                /* a big frame's binary, or NULL */
    uint8_t sink_hdr[DIST_FRAG_CONT_HDR_LEN]; /* a fragment's header */
    bool sink_last;                           /* that fragment ends its message */
    term_t node;                              /* the peer's node atom (initiator: from the start) */
    char peer[DIST_NAME_MAX + 1];
    uint64_t flags;
    etf_buf_t pending; /* messages sent before it came up, unframed (see queue_body) */
    /* Big bodies sent before it came up, kept whole with their binaries
     * referenced rather than copied into pending (queue_held_body): each
     * has a record in pending, taken in order (held_next); held_bytes is
     * their length for back-pressure. */
    dist_body_t *held;
    size_t nheld, held_cap, held_next, held_bytes;
    dist_tx_t tx;                  /* the atom cache of what we send */
    uint64_t id;                   /* unique per connection: tells a reused address apart */
    bool wrote;                    /* anything written since the last tick check */
    _Atomic uint64_t last_read_ns; /* relaxed: the tick reads it on the loop thread */
    term_t ctrl;                   /* the controller process (TERM_NONE before up) */
    uint64_t ctrl_seq;             /* last sequence sent to the controller (the reader) */
    uint64_t ctrl_acked;           /* last it acknowledged (node.lock) */
    /* Back-pressure and statistics (node.lock).  busy: more than the
     * node's dist_buf_busy_limit bytes wait for the socket (or, before
     * the handshake ends, in pending); sending coroutine processes then
     * wait in waiters until it drains below half of it: a coroutine in
     * a receive, a behaviour suspended (sched_suspend). */
    bool busy;
    uint64_t busy_since_ns, busy_ns, suspends;
    struct waiter {
        term_t pid;
        bool coroutine;
    } * waiters;
    size_t nwaiters, waiters_cap;
    /* Frames sent while the bufferevent still holds output for the loop
     * thread to write (TCP only; see conn_write_locked): appended here
     * under node.lock alone, without the bufferevent's lock and the base
     * lock its output callback takes, and moved behind that output in one
     * step when the loop thread has written it (write_cb).  An evbuffer
     * without a lock of its own; outq_bytes: its length, also read
     * (relaxed) by write_cb before it takes node.lock. */
    struct evbuffer *outq;
    _Atomic size_t outq_bytes;
    size_t out_seen;         /* the output's length when last seen (node.lock) */
    uint64_t last_direct_ns; /* when the current group of direct writes began */
    unsigned direct_burst;   /* direct writes made since (direct_write_ok) */
    /* Written by the loop thread alone, read by statistics from any thread
     * (relaxed load and store). */
    _Atomic uint64_t bytes_in, msgs_in;
    uint64_t bytes_out, msgs_out; /* node.lock */
    /* Writes on c (relaxed: the loop thread's read reads it to tell a
     * stream from round trips, see conn_loop_read_cb), and their number
     * at the loop thread's last read (rd_lock). */
    _Atomic uint32_t writes;
    uint32_t writes_at_read;
} conn_t;

static struct node {
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct event_base *base;
    pthread_t loop_thread;
    bool loop_started;
    struct evconnlistener *listener;
    uint16_t port;
    epmd_keeper_t *keeper;
    bool registered;
    int register_err;
    uint32_t creation;
    cluster_config_t cfg;
    char name[DIST_NAME_MAX + 1]; /* full name */
    size_t name_len;
    char *cookie;
    size_t cookie_len;
    conn_t *conns;
    unsigned connect_threads; /* detached connect threads still running */
    uint64_t conn_ids;
    sched_dist_hooks_t hooks;
    term_t events;             /* the node events process (monitor_nodes) */
    cluster_traffic_t retired; /* traffic of the connections closed so far */
    uint64_t epmd_registrations;
    bool epmd_registered_now;
    /* Connections over their output limit: while none is, a send takes
     * no lock for back-pressure. */
    _Atomic unsigned busy_conns;
    _Atomic uint64_t sequences; /* sequence ids handed out (next_sequence_id) */
    cluster_global_t *global;   /* the global registry (global.c), while running */
    _Atomic bool loop_stop;
    _Atomic uint64_t loop_read_ns;   /* when the loop thread last read (relaxed) */
    _Atomic uint64_t loop_stream_ns; /* until when it reads a stream (relaxed; loop_read) */
    /* Reading the up TCP connections: the loop thread through an event
     * per socket (conn_loop_read_cb) while rd_poller is 0, a spinning
     * scheduler through rd_ep, which holds every socket, while it is the
     * scheduler's number (see idle_poll).  rd_lock: held by whoever reads,
     * it covers the connections' receive state and `deferred`.
     * rd_mode_lock: the switches between the two, and `parked` (the
     * connections whose loop event is off meanwhile).  rd_ev: the loop
     * thread's call to take the reading back (rd_cb). */
    int rd_ep;
    struct event *rd_ev;
    pthread_mutex_t rd_lock, rd_mode_lock;
    _Atomic unsigned rd_poller; /* the reading scheduler's number, 0: the loop, RD_CLOSED */
    _Atomic unsigned rd_deferred;
    conn_t *deferred;
    conn_t *parked;
    bool rd_got; /* conns_read_locked: a read got bytes (rd_lock) */
    /* The connections in rd_ep, and the one when there is one (rd_lock;
     * see conns_read_locked). */
    unsigned rd_count;
    conn_t *rd_only;
} node = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .cond = PTHREAD_COND_INITIALIZER,
          .rd_lock = PTHREAD_MUTEX_INITIALIZER,
          .rd_mode_lock = PTHREAD_MUTEX_INITIALIZER,
          .rd_ep = -1};

cluster_global_t **cluster_global_slot(void)
{
    return &node.global;
}

/* A sequence id for a message that may go out fragmented: never 0 (OTP
 * reads a fragment with id 0 as a whole message, see
 * dist_frame_fragments) and never one another message has: a message's
 * fragments are written back to back, so ids only have to differ, and a
 * 64-bit count does not come round. */
static uint64_t next_sequence_id(void)
{
    return atomic_fetch_add_explicit(&node.sequences, 1, memory_order_relaxed) + 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cluster_log(const char *fmt, ...)
{
    if (node.cfg.quiet)
        return;
    char msg[1024], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "girder: %s: %s\n", ts, msg);
}

const char *cluster_node_name(size_t *len)
{
    if (len != NULL)
        *len = node.name_len;
    return node.name;
}

/* ---- connections ---- */

/* Drops c from the parked list (rd_mode_lock held). */
static void conn_unpark_locked(conn_t *c)
{
    for (conn_t **pp = &node.parked; *pp != NULL; pp = &(*pp)->parked_next)
        if (*pp == c) {
            *pp = c->parked_next;
            break;
        }
    c->rd_parked = false;
}

/* c left rd_ep (rd_lock held): the count, and the one left if one is
 * (in_rd_ep is set under node.lock, which follows rd_lock). */
static void rd_count_dropped(conn_t *c)
{
    node.rd_count--;
    node.rd_only = NULL;
    if (node.rd_count != 1)
        return;
    pthread_mutex_lock(&node.lock);
    for (conn_t *o = node.conns; o != NULL && node.rd_only == NULL; o = o->next)
        if (o != c && o->in_rd_ep)
            node.rd_only = o;
    pthread_mutex_unlock(&node.lock);
}

/* Drops c from the readers' set (and from the deferred and parked lists),
 * waiting out a reader that may be using it.  The loop thread or the
 * stopping one (so no callback of rd_evc runs). */
static void rd_remove(conn_t *c)
{
    pthread_mutex_lock(&node.rd_mode_lock);
    if (c->rd_parked)
        conn_unpark_locked(c);
    pthread_mutex_unlock(&node.rd_mode_lock);
    if (c->rd_evc != NULL)
        event_free(c->rd_evc);
    c->rd_evc = NULL;
    pthread_mutex_lock(&node.rd_lock);
    (void)epoll_ctl(node.rd_ep, EPOLL_CTL_DEL, c->rd_fd, NULL);
    rd_count_dropped(c);
    if (c->deferred) {
        for (conn_t **pp = &node.deferred; *pp != NULL; pp = &(*pp)->deferred_next)
            if (*pp == c) {
                *pp = c->deferred_next;
                break;
            }
        c->deferred = false;
        atomic_fetch_sub_explicit(&node.rd_deferred, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&node.rd_lock);
    c->in_rd_ep = false;
}

/* Drops the bodies c still holds for pending (and their binaries). */
static void held_free(conn_t *c)
{
    for (size_t i = 0; i < c->nheld; i++)
        dist_body_free(&c->held[i]);
    free(c->held);
    c->held = NULL;
    c->nheld = c->held_cap = c->held_next = c->held_bytes = 0;
}

static void conn_free(conn_t *c)
{
    if (c->in_rd_ep)
        rd_remove(c); /* before the bufferevent closes the socket */
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->rx_ready)
        dist_rx_free(&c->rx);
    if (c->rxq != NULL)
        evbuffer_free(c->rxq);
    if (c->outq != NULL)
        evbuffer_free(c->outq);
    if (c->sink_frame != NULL)
        heap_binary_unref(c->sink_frame);
    etf_buf_free(&c->pending);
    held_free(c);
    free(c->waiters);
    free(c);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

/* Frees c on the loop thread, which alone touches its bufferevent. */
static void conn_schedule_free(conn_t *c)
{
    const struct timeval zero = {0, 0};
    if (event_base_once(node.base, -1, EV_TIMEOUT, reap_cb, c, &zero) != 0)
        cluster_log("could not schedule a connection's release (leaked)");
}

/* The output limit in bytes (cluster_config_t.dist_buf_busy_limit) and
 * the level below which suspended senders resume. */
static size_t busy_limit(void)
{
    return node.cfg.dist_buf_busy_limit;
}
static size_t busy_low_water(void)
{
    return node.cfg.dist_buf_busy_limit / 2;
}

/* Marks c busy once queued bytes pass the limit (lock held). */
static void conn_note_queued_locked(conn_t *c, size_t queued)
{
    if (!c->busy && queued > busy_limit()) {
        c->busy = true;
        c->busy_since_ns = now_ns();
        atomic_fetch_add_explicit(&node.busy_conns, 1, memory_order_relaxed);
    }
}

/* Ends a busy period: every suspended sender is told to go on (lock held;
 * a local send takes no lock of ours). */
static void conn_unbusy_locked(conn_t *c)
{
    if (!c->busy)
        return;
    c->busy = false;
    c->busy_ns += now_ns() - c->busy_since_ns;
    atomic_fetch_sub_explicit(&node.busy_conns, 1, memory_order_relaxed);
    for (size_t i = 0; i < c->nwaiters; i++) {
        const struct waiter *w = &c->waiters[i];
        int rc = w->coroutine ? sched_send(NULL, w->pid, heap_atom("$gd_drained"))
                              : sched_resume(w->pid);
        if (rc < 0 && rc != SCHED_ENOPROC && rc != SCHED_ESTOPPED)
            cluster_log("%s: a suspended sender could not be resumed (%s)", c->peer,
                        dist_strerror(rc));
    }
    c->nwaiters = 0;
}

/* c's counters (lock held; a busy stretch still running included). */
static void conn_stats_fill_locked(const conn_t *c, uint64_t now, cluster_conn_stats_t *s)
{
    snprintf(s->node, sizeof s->node, "%s", c->peer);
    s->traffic.bytes_in = atomic_load_explicit(&c->bytes_in, memory_order_relaxed);
    s->traffic.bytes_out = c->bytes_out;
    s->traffic.msgs_in = atomic_load_explicit(&c->msgs_in, memory_order_relaxed);
    s->traffic.msgs_out = c->msgs_out;
    s->busy = c->busy;
    s->traffic.busy_ns = c->busy_ns + (c->busy ? now - c->busy_since_ns : 0);
    s->suspends = c->suspends;
    s->writes = atomic_load_explicit(&c->writes, memory_order_relaxed);
    s->out_queued = c->bev != NULL ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
    s->out_queued += atomic_load_explicit(&c->outq_bytes, memory_order_relaxed);
}

static void traffic_add(cluster_traffic_t *sum, const cluster_traffic_t *t)
{
    sum->bytes_in += t->bytes_in;
    sum->bytes_out += t->bytes_out;
    sum->msgs_in += t->msgs_in;
    sum->msgs_out += t->msgs_out;
    sum->busy_ns += t->busy_ns;
}

/* Unlinks c (lock held) and schedules its freeing on the loop (or leaves
 * that to its connect thread, which still reads it). */
static void conn_kill_locked(conn_t *c)
{
    if (c->state == CONN_DEAD)
        return;
    cluster_conn_stats_t st;
    conn_stats_fill_locked(c, now_ns(), &st);
    traffic_add(&node.retired, &st.traffic);
    for (conn_t **pp = &node.conns; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    /* Local sends: they take no lock of ours. */
    if (term_is_pid(c->ctrl) && sched_send(NULL, c->ctrl, heap_atom("$gd_nodedown")) < 0)
        cluster_log("%s: could not tell its links and monitors (out of memory)", c->peer);
    if (c->state == CONN_UP && (c->flags & DFLAG_PUBLISHED) &&
        cluster_node_event(node.events, c->node, false) < 0)
        cluster_log("%s: could not tell node monitors (out of memory)", c->peer);
    c->state = CONN_DEAD;
    conn_unbusy_locked(c); /* nothing will drain now: let its senders go */
    if (c->bev != NULL)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    /* Silenced, not removed: a reader may be reading c now (it then
     * finds it dead); conn_free removes it under rd_lock. */
    if (c->in_rd_ep) {
        struct epoll_event none = {.events = 0, .data.ptr = c};
        (void)epoll_ctl(node.rd_ep, EPOLL_CTL_MOD, c->rd_fd, &none);
        event_del_noblock(c->rd_evc);
    }
    /* Not blocking: a scheduler that reads c may kill it while the loop
     * thread runs this very timer's callback, which waits for node.lock
     * (tick_cb); the callback then finds c dead. */
    if (c->timer != NULL)
        event_del_noblock(c->timer);
    if (!c->connect_job)
        conn_schedule_free(c);
}

/* Ends a connection, logging why (once) and telling the services. */
static void conn_close(conn_t *c, const char *why)
{
    pthread_mutex_lock(&node.lock);
    bool was_up = c->state == CONN_UP;
    if (c->state != CONN_DEAD) {
        if (c->peer[0] != 0)
            cluster_log("%s %s: %s", was_up ? "nodedown" : "connection to", c->peer, why);
        else
            cluster_log("connection closed: %s", why);
    }
    conn_kill_locked(c);
    pthread_mutex_unlock(&node.lock);
}

/* A sender writes straight to the socket only when nothing is queued,
 * fewer than DIRECT_WRITE_QUEUE_MAX other processes wait to run on its
 * scheduler, and fewer than DIRECT_WRITE_BURST direct writes were made in
 * the last DIRECT_WRITE_GAP_NS: a lone message (a ping, a reply) or a short
 * group (a call's MONITOR_P and REG_SEND) then leaves without waking the
 * loop thread, which halves a round trip, while a burst is appended and
 * leaves in few large writes from the loop (one syscall for many frames).
 * With a burst of 1, a call's REG_SEND waited for the loop thread.  A
 * scheduler with many senders queued (girder bench's 1000 clients) would
 * make a syscall for nearly every message otherwise, their turns spreading
 * the bursts out in time: with 1000 echo clients against an erl node,
 * 0.5-0.8 send(2) per round trip before, ~0.25 after, +5-8% round
 * trips/s.  The queue must be long: with "any other process runnable" a
 * call's requests and replies, which a helper process or two run beside,
 * went through the loop thread and girder<->girder rpc:call fell from
 * 1.4x to 0.65x erl<->erl's calls/s. */
#define DIRECT_WRITE_QUEUE_MAX 8
#define DIRECT_WRITE_GAP_NS 20000
#define DIRECT_WRITE_BURST 3

/* Whether a sender may write to c's socket itself now (see above); counts
 * the write when it may.  Under node.lock. */
static bool direct_write_ok(conn_t *c)
{
    if (sched_runnable_here() >= DIRECT_WRITE_QUEUE_MAX)
        return false;
    uint64_t now = now_ns();
    if (now - c->last_direct_ns >= DIRECT_WRITE_GAP_NS) {
        c->last_direct_ns = now;
        c->direct_burst = 0;
    }
    return c->direct_burst++ < DIRECT_WRITE_BURST;
}
/* Below this, the rest of a frame buffer is copied into the output buffer;
 * above, the buffer itself is handed over (no copy). */
#define HANDOVER_MIN 16384

static void free_handed_over(const void *data, size_t len, void *base)
{
    (void)data;
    (void)len;
    free(base);
}

/* Appends p[0..n) to b; when owned is given, p lies in owned->data,
 * whose buffer a big piece hands over instead of being copied (owned is
 * then emptied). */
static int out_append(struct evbuffer *b, const uint8_t *p, size_t n, etf_buf_t *owned)
{
    int rc;
    if (owned != NULL && n >= HANDOVER_MIN) {
        rc = evbuffer_add_reference(b, p, n, free_handed_over, owned->data);
        if (rc == 0)
            *owned = (etf_buf_t){0};
    } else {
        rc = evbuffer_add(b, p, n);
    }
    return rc != 0 ? GD_ENOMEM : 0;
}

/* Moves c's outq behind the bufferevent's output (node.lock held). */
static void outq_move_locked(conn_t *c)
{
    if (atomic_load_explicit(&c->outq_bytes, memory_order_relaxed) == 0)
        return;
    if (evbuffer_add_buffer(bufferevent_get_output(c->bev), c->outq) != 0) {
        cluster_log("%s: cannot queue output (out of memory); closing", c->peer);
        conn_kill_locked(c);
        return;
    }
    atomic_store_explicit(&c->outq_bytes, 0, memory_order_relaxed);
}

/* Appends frames to outq (node.lock held, outq in use or the output
 * seen non-empty under the bufferevent's lock); queued_seen: what the
 * output held when last seen. */
static int outq_append_locked(conn_t *c, const uint8_t *p, size_t n, etf_buf_t *owned,
                              size_t queued_seen)
{
    if (c->outq == NULL && (c->outq = evbuffer_new()) == NULL)
        return GD_ENOMEM;
    int rc = out_append(c->outq, p, n, owned);
    if (rc < 0)
        return rc;
    size_t waiting = atomic_load_explicit(&c->outq_bytes, memory_order_relaxed) + n;
    atomic_store_explicit(&c->outq_bytes, waiting, memory_order_relaxed);
    c->out_seen = queued_seen;
    conn_note_queued_locked(c, queued_seen + waiting);
    return 0;
}

/* Writes frames p[0..n) on an up connection (lock held).  When owned is
 * given, p lies in owned->data and the buffer may be handed over to the
 * output buffer (owned is then emptied).  node.lock orders every append;
 * the bufferevent's lock keeps the order with the loop's own writes.
 * While the loop thread has output of a TCP connection to write, what
 * follows waits in outq: appended without the bufferevent's lock, which
 * the loop thread wants for each write, nor libevent's base lock, which
 * an append to the output takes (perf, 100-pair ping-pong: half the lock
 * waits were there). */
static int conn_write_locked(conn_t *c, const uint8_t *p, size_t n, etf_buf_t *owned)
{
    if (c->state != CONN_UP)
        return DIST_ECLOSED;
    c->wrote = true;
    c->bytes_out += n;
    atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
    if (atomic_load_explicit(&c->outq_bytes, memory_order_relaxed) != 0)
        return outq_append_locked(c, p, n, owned, c->out_seen);
    size_t off = 0;
    int rc = 0;
    bufferevent_lock(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t queued = evbuffer_get_length(out);
    if (queued > 0 && !c->tls) {
        /* Under the bufferevent's lock, with output the loop thread has
         * yet to write: its write_cb, after that write, sees outq. */
        rc = outq_append_locked(c, p, n, owned, queued);
        bufferevent_unlock(c->bev);
        return rc;
    }
    /* TLS bytes must go through OpenSSL, never the raw socket: a small
     * frame is encrypted and written here, under the bufferevent's lock
     * (the loop reads through the same SSL object under it), instead of
     * waking the loop thread to do it. */
    if (queued == 0 && c->tls && n <= CLUSTER_TLS_DIRECT_MAX) {
        if (direct_write_ok(c)) {
            off = cluster_tls_write_direct(c->bev, p, n);
            /* What is left goes in one piece (see cluster_tls_write_direct). */
            if (off < n && evbuffer_expand(out, n - off) != 0)
                rc = GD_ENOMEM;
        }
    } else if (queued == 0 && !c->tls) {
        if (direct_write_ok(c)) {
            /* The send runs without the bufferevent's lock: it wakes the
             * peer, which on a busy CPU often preempts us here, and the
             * loop thread (reading this connection) must not wait for us
             * meanwhile (perf: evbuffer_drain blocked in __lll_lock_wait).
             * Order holds: every append to the output buffer happens
             * under node.lock, which we hold, and it was empty. */
            int fd = bufferevent_getfd(c->bev);
            bufferevent_unlock(c->bev);
            ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off = (size_t)w;
            bufferevent_lock(c->bev);
        }
    }
    if (off < n && rc == 0) {
        rc = out_append(out, p + off, n - off, owned);
        queued += n - off;
    }
    /* Marked busy before the bufferevent's lock is released: the loop
     * drains the buffer under that lock, so its write_cb then sees
     * busy_conns and does not skip the unbusy. */
    conn_note_queued_locked(c, queued);
    bufferevent_unlock(c->bev);
    return rc;
}

/* A big body's bytes, shared by the output buffer's references to its
 * fragments' pieces: freed when the last of them has been written (on
 * the loop thread) or by the sender if none was left over. */
typedef struct shared_bytes {
    atomic_size_t refs;
    uint8_t *data;
    etf_bin_refs_t bins; /* the body's referenced binaries */
} shared_bytes_t;

static void shared_bytes_release(shared_bytes_t *sb)
{
    if (atomic_fetch_sub_explicit(&sb->refs, 1, memory_order_acq_rel) == 1) {
        free(sb->data);
        etf_bin_refs_free(&sb->bins);
        free(sb);
    }
}

static void shared_piece_written(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    shared_bytes_release(arg);
}

/* Fragments written straight to the socket per sendmsg. */
#define DIRECT_FRAGS 16

/* Queues segment p[from..n) (the bufferevent's lock held): a small one
 * copied, a big one referenced where it lies (no copy into a frame
 * buffer). */
static int queue_segment(struct evbuffer *out, const uint8_t *p, size_t n, size_t from,
                         shared_bytes_t *sb)
{
    if (from >= n)
        return 0;
    if (n - from < HANDOVER_MIN)
        return evbuffer_add(out, p + from, n - from) != 0 ? GD_ENOMEM : 0;
    atomic_fetch_add_explicit(&sb->refs, 1, memory_order_relaxed);
    if (evbuffer_add_reference(out, p + from, n - from, shared_piece_written, sb) != 0) {
        shared_bytes_release(sb);
        return GD_ENOMEM;
    }
    return 0;
}

/* Writes a big body's fragments (it) on an up connection (lock held),
 * without framing them into a buffer of their own: as much as the socket
 * takes at once goes out by sendmsg from the body itself when nothing is
 * queued, the rest is queued as references into the body (sb). */
static int conn_write_fragments_locked(conn_t *c, dist_frag_iter_t *it, shared_bytes_t *sb)
{
    if (c->state != CONN_UP)
        return DIST_ECLOSED;
    c->wrote = true;
    atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
    int rc = 0;
    bufferevent_lock(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    outq_move_locked(c); /* what waits there goes first */
    if (c->state != CONN_UP) {
        bufferevent_unlock(c->bev);
        return DIST_ECLOSED;
    }
    bool direct = evbuffer_get_length(out) == 0 && !c->tls;
    uint8_t hdrs[DIRECT_FRAGS][4 + DIST_FRAG_HDR_MAX];
    /* Per fragment: its header, then its pieces. */
    struct iovec iov[DIRECT_FRAGS * (1 + DIST_FRAG_SEGS)];
    for (;;) {
        size_t k = 0, niov = 0, hdr_len, nsegs;
        dist_seg_t segs[DIST_FRAG_SEGS];
        while (k < DIRECT_FRAGS && dist_frag_next(it, hdrs[k], &hdr_len, segs, &nsegs)) {
            iov[niov++] = (struct iovec){hdrs[k], hdr_len};
            c->bytes_out += hdr_len;
            for (size_t i = 0; i < nsegs; i++) {
                iov[niov++] = (struct iovec){(void *)segs[i].p, segs[i].len};
                c->bytes_out += segs[i].len;
            }
            k++;
        }
        if (k == 0)
            break;
        size_t written = 0;
        if (direct) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = niov};
            ssize_t w = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
            written = w > 0 ? (size_t)w : 0;
            c->last_direct_ns = now_ns(); /* a big write: a group of its own */
            c->direct_burst = DIRECT_WRITE_BURST;
        }
        for (size_t i = 0; i < niov && rc == 0; i++) {
            size_t done = written < iov[i].iov_len ? written : iov[i].iov_len;
            written -= done;
            if (done < iov[i].iov_len) {
                direct = false; /* the socket is full: the loop writes the rest */
                rc = queue_segment(out, iov[i].iov_base, iov[i].iov_len, done, sb);
            }
        }
        if (rc < 0)
            break;
    }
    /* Marked busy before the bufferevent's lock is released, as in
     * conn_write_locked: a drain after the unlock must see busy_conns, or
     * its write_cb skips the unbusy and suspended senders wait forever. */
    conn_note_queued_locked(c, evbuffer_get_length(out));
    bufferevent_unlock(c->bev);
    return rc;
}

/* Sends a big body (over one fragment) to the up connection c of a peer
 * with fragments: its bytes are moved into a shared holder (b->bytes is
 * emptied) that the output buffer references.  1 when done here (rc in
 * *rc), 0 when the body must take the framing path (a peer that needs
 * its control rewritten, or no fragments). */
static bool send_big_body_locked(conn_t *c, dist_body_t *b, uint64_t seq, int *rc)
{
    uint64_t need = DFLAG_DIST_HDR_ATOM_CACHE | DFLAG_FRAGMENTS;
    if ((c->flags & need) != need || dist_body_len(b) <= DIST_FRAGMENT_SIZE)
        return false;
    dist_body_t adapted = {0};
    bool changed;
    if (dist_body_for_flags(b, c->flags, &adapted, &changed) != 0 || changed) {
        etf_buf_free(&adapted.bytes);
        return false;
    }
    dist_frag_iter_t it;
    shared_bytes_t *sb = malloc(sizeof *sb);
    if (sb == NULL || dist_frag_iter_init(&it, b, seq, DIST_FRAGMENT_SIZE) != 0) {
        free(sb);
        return false;
    }
    atomic_init(&sb->refs, 1);
    sb->data = b->bytes.data;
    sb->bins = b->refs;
    *rc = conn_write_fragments_locked(c, &it, sb);
    b->bytes = (etf_buf_t){0}; /* sb's now */
    b->refs = (etf_bin_refs_t){0};
    shared_bytes_release(sb);
    c->msgs_out++;
    return true;
}

/* A message for a connection still being set up is kept unframed, as
 * seq:64 ctl_len:64 has_payload:8 len:64 bytes, and framed when the
 * handshake has told which flags the peer has (lock held). */
#define PENDING_HDR 25

/* Writes a record's header at w; returns where its bytes go. */
static uint8_t *pending_put_hdr(uint8_t *w, uint64_t seq, uint64_t ctl_len, uint8_t payload,
                                uint64_t len)
{
    w = put64(w, seq);
    w = put64(w, ctl_len);
    *w++ = payload;
    return put64(w, len);
}

/* Writes body b (seq) as a record at w (PENDING_HDR + its length). */
static void pending_put(uint8_t *w, const dist_body_t *b, uint64_t seq)
{
    w = pending_put_hdr(w, seq, b->ctl_len, b->has_payload, b->bytes.len);
    memcpy(w, b->bytes.data, b->bytes.len);
}

/* The body record r holds (its bytes left where they lie). */
static dist_body_t pending_body(const uint8_t *r)
{
    return (dist_body_t){
        {(uint8_t *)r + PENDING_HDR, get64(r + 17), get64(r + 17)}, get64(r + 8), r[16] != 0, {0}};
}

static int queue_body(conn_t *c, const dist_body_t *b, uint64_t seq)
{
    size_t len = b->bytes.len;
    int rc = etf_buf_reserve(&c->pending, PENDING_HDR + len);
    if (rc < 0)
        return rc;
    pending_put(c->pending.data + c->pending.len, b, seq);
    c->pending.len += PENDING_HDR + len;
    conn_note_queued_locked(c, c->pending.len + c->held_bytes);
    return 0;
}

/* In a pending record's payload byte: the body is the next of c->held
 * (the record has no bytes of its own). */
#define PENDING_HELD 2

/* Queues a body with referenced binaries for a connection still being set
 * up, moving it (b is emptied) instead of copying it into pending: a big
 * binary sent while connecting is then written from where it lies once
 * the connection is up, as it would be on an up one (lock held). */
static int queue_held_body(conn_t *c, dist_body_t *b, uint64_t seq)
{
    if (c->nheld == c->held_cap) {
        size_t cap = c->held_cap ? 2 * c->held_cap : 4;
        dist_body_t *v = realloc(c->held, cap * sizeof *v);
        if (v == NULL)
            return GD_ENOMEM;
        c->held = v;
        c->held_cap = cap;
    }
    int rc = etf_buf_reserve(&c->pending, PENDING_HDR);
    if (rc < 0)
        return rc;
    pending_put_hdr(c->pending.data + c->pending.len, seq, b->ctl_len,
                    (uint8_t)(PENDING_HELD | (b->has_payload ? 1 : 0)), 0);
    c->pending.len += PENDING_HDR;
    c->held_bytes += dist_body_len(b);
    c->held[c->nheld++] = *b;
    *b = (dist_body_t){0};
    conn_note_queued_locked(c, c->pending.len + c->held_bytes);
    return 0;
}

/* True when body goes out through the atom cache: small messages to
 * peers that have it (a big one is framed without the lock held, and its
 * atoms are few next to its bytes). */
static bool use_cache(const conn_t *c, const dist_body_t *b)
{
    return (c->flags & DFLAG_DIST_HDR_ATOM_CACHE) && b->bytes.len <= DIST_FRAGMENT_SIZE;
}

/* Frames body for the up connection c (lock held: the atom cache's state
 * must follow the order of the writes). */
static int frame_locked(conn_t *c, const dist_body_t *b, uint64_t seq, etf_buf_t *frames)
{
    return use_cache(c, b) ? dist_frame_cached(b, c->flags, &c->tx, frames)
                           : dist_frame_body(b, c->flags, seq, frames);
}

/* Writes the next held body (see queue_held_body) under sequence seq on
 * the just-up connection c (lock held): from its binaries when the peer
 * takes fragments, else copied in and framed as any other. */
static int flush_held_locked(conn_t *c, uint64_t seq)
{
    if (c->held_next >= c->nheld)
        return DIST_EPROTO; /* a record without its body: cannot happen */
    dist_body_t *b = &c->held[c->held_next++];
    int rc = 0;
    if (!send_big_body_locked(c, b, seq, &rc)) {
        rc = dist_body_flatten(b);
        etf_buf_t frames = {0};
        if (rc == 0)
            rc = frame_locked(c, b, seq, &frames);
        if (rc == 0)
            rc = conn_write_locked(c, frames.data, frames.len, &frames);
        etf_buf_free(&frames);
        c->msgs_out++;
    }
    dist_body_free(b);
    return rc;
}

/* Frames and writes what was queued while connecting (lock held, state
 * just set to up). */
static int flush_pending(conn_t *c)
{
    int rc = 0;
    etf_buf_t frames = {0};
    for (size_t pos = 0; pos < c->pending.len && rc == 0;) {
        const uint8_t *r = c->pending.data + pos;
        if (r[16] & PENDING_HELD) {
            rc = flush_held_locked(c, get64(r));
            pos += PENDING_HDR;
            continue;
        }
        dist_body_t b = pending_body(r);
        frames.len = 0;
        rc = frame_locked(c, &b, get64(r), &frames);
        if (rc == 0)
            rc = conn_write_locked(c, frames.data, frames.len, &frames);
        c->msgs_out++;
        pos += PENDING_HDR + b.bytes.len;
    }
    etf_buf_free(&frames);
    etf_buf_free(&c->pending);
    c->pending = (etf_buf_t){0};
    held_free(c);
    return rc;
}

/* Sends body on c: framed for its flags once up, queued before (lock
 * held). */
static int conn_send_body_locked(conn_t *c, const dist_body_t *b, uint64_t seq)
{
    if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE)
        return queue_body(c, b, seq);
    if (c->state != CONN_UP)
        return DIST_ECLOSED;
    etf_buf_t frames = {0};
    int rc = frame_locked(c, b, seq, &frames);
    if (rc == 0)
        rc = conn_write_locked(c, frames.data, frames.len, &frames);
    c->msgs_out++;
    etf_buf_free(&frames);
    if (rc < 0 && use_cache(c, b)) {
        /* The cache may now say more than the peer was told. */
        cluster_log("%s: cannot send (%s); closing", c->peer, dist_strerror(rc));
        conn_kill_locked(c);
    }
    return rc;
}

int cluster_conn_send(conn_t *c, term_t control, term_t payload)
{
    dist_body_t b = {0};
    int rc = dist_encode_body(control, payload, &b);
    if (rc == 0) {
        pthread_mutex_lock(&node.lock);
        rc = conn_send_body_locked(c, &b, next_sequence_id());
        pthread_mutex_unlock(&node.lock);
    }
    etf_buf_free(&b.bytes);
    return rc;
}

static conn_t *find_conn_locked(term_t node_atom)
{
    for (conn_t *c = node.conns; c != NULL; c = c->next)
        if (c->node == node_atom && c->state != CONN_CLOSING)
            return c;
    return NULL;
}

static conn_t *find_conn_by_name_locked(const char *name, size_t len, conn_t *except)
{
    for (conn_t *c = node.conns; c != NULL; c = c->next)
        if (c != except && strlen(c->peer) == len && memcmp(c->peer, name, len) == 0 &&
            c->state != CONN_CLOSING)
            return c;
    return NULL;
}

/* ---- the connected phase ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    uint64_t ticktime_ns = (uint64_t)node.cfg.ticktime_s * 1000000000u;
    if (now_ns() - atomic_load_explicit(&c->last_read_ns, memory_order_relaxed) > ticktime_ns) {
        conn_close(c, "not responding (net_tick_timeout)");
        return;
    }
    static const uint8_t tick[4] = {0};
    pthread_mutex_lock(&node.lock);
    if (c->state == CONN_UP && !c->wrote)
        (void)conn_write_locked(c, tick, sizeof tick, NULL);
    c->wrote = false;
    pthread_mutex_unlock(&node.lock);
}

/* Bytes one read or write of an up connection may move. */
#define CONN_MAX_SINGLE_IO (256 * 1024)

/* The handshake is over: switch to frames, send what was queued. */
static int conn_up(conn_t *c)
{
    term_t atom;
    int rc = heap_atom_put(c->hs.peer_name, c->hs.peer_name_len, &atom);
    if (rc < 0)
        return rc;
    rc = dist_rx_init(&c->rx, NULL);
    if (rc < 0)
        return rc;
    c->rx_ready = true;
    atomic_store_explicit(&c->last_read_ns, now_ns(), memory_order_relaxed);
    pthread_mutex_lock(&node.lock);
    /* Under the lock: a sender may have started it (find_accepting_locked). */
    if (!term_is_pid(c->ctrl)) {
        rc = cluster_controller_start(atom, &c->ctrl);
        if (rc < 0) {
            pthread_mutex_unlock(&node.lock);
            return rc;
        }
    }
    if (c->hs.replaces_old) {
        conn_t *old = find_conn_by_name_locked(c->hs.peer_name, c->hs.peer_name_len, c);
        if (old != NULL)
            conn_kill_locked(old);
    }
    memcpy(c->peer, c->hs.peer_name, c->hs.peer_name_len + 1);
    c->node = atom;
    c->flags = c->hs.flags;
    c->state = CONN_UP;
    c->wrote = true;
    rc = flush_pending(c);
    if (rc >= 0 && (c->flags & DFLAG_PUBLISHED))
        rc = cluster_node_event(node.events, c->node, true);
    pthread_mutex_unlock(&node.lock);
    cluster_log("nodeup %s (%s, %s, flags %#llx)", c->peer, c->initiator ? "outgoing" : "incoming",
                (c->flags & DFLAG_PUBLISHED) ? "visible" : "hidden", (unsigned long long)c->flags);
    /* Ticks: every ticktime/4 (OTP's net_tickintensity 4). */
    event_del(c->timer);
    event_free(c->timer);
    c->timer = event_new(node.base, -1, EV_PERSIST, tick_cb, c);
    if (c->timer == NULL)
        return GD_ENOMEM;
    uint64_t us = (uint64_t)node.cfg.ticktime_s * 1000000u / 4;
    struct timeval tv = {(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
    if (event_add(c->timer, &tv) != 0)
        return GD_ENOMEM;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    /* write_cb runs once the output is down to the low-water mark: the
     * moment suspended senders may go on. */
    bufferevent_setwatermark(c->bev, EV_WRITE, busy_low_water(), 0);
    /* libevent moves at most 16 KiB per read or write by default: a
     * burst of frames then costs a syscall and a loop pass per 16 KiB. */
    bufferevent_set_max_single_read(c->bev, CONN_MAX_SINGLE_IO);
    bufferevent_set_max_single_write(c->bev, CONN_MAX_SINGLE_IO);
    return rc;
}

/* Frames from this size on are read into a binary of their own and
 * decoded into message fragments for their target: the message's
 * binaries then reference the bytes where they landed (one copy from the
 * input buffer, none after), and its terms are not copied again by the
 * send.  Smaller ones take the scratch heap (their copy is cheap, and a
 * fragment sized for a big message would waste memory in a mailbox). */
#define BIG_FRAME_MIN ((size_t)64 << 10)

/* Handles a decoded message (op 0: none) and ends h.  rc: the decode's. */
static int frame_done(conn_t *c, heap_t *h, int rc, const dist_msg_t *m)
{
    if (rc == 0 && m->op != 0) {
        atomic_fetch_add_explicit(&c->msgs_in, 1, memory_order_relaxed);
        rc = cluster_dispatch(c, h, m);
    }
    heap_destroy(h);
    return rc;
}

/* The last fragment of a message is in (its header hdr): decodes the
 * message from the sequence's buffer and hands it on. */
static int last_fragment_done(conn_t *c, const uint8_t *hdr)
{
    heap_t h;
    dist_msg_t m;
    int rc = heap_msg_build_init(&h);
    return rc == 0 ? frame_done(c, &h, dist_rx_frag_complete(&c->rx, &h, hdr, &m), &m) : rc;
}

/* A big frame of n bytes is in frame->data: decodes it (its binaries
 * referencing the frame) and hands it on; drops our reference. */
static int big_frame_done(conn_t *c, heap_binary_t *frame, size_t n)
{
    heap_t h;
    dist_msg_t m;
    int rc = heap_msg_build_init(&h);
    if (rc == 0)
        rc = frame_done(c, &h, dist_rx_frame_in(&c->rx, &h, frame, n, &m), &m);
    heap_binary_unref(frame); /* the message's binaries hold their own references */
    return rc;
}

/* A continuation fragment goes from the input buffer straight into the
 * sequence's buffer: no pullup copy for the bulk of a big message; the
 * last one then decodes the message into fragments for its target.
 * False when the frame is not one (*rc then untouched); else *rc is 0 or
 * the error that closes c. */
static bool read_fragment_data(conn_t *c, struct evbuffer *in, size_t n, int *rc)
{
    const uint8_t *p = evbuffer_pullup(in, 4 + DIST_FRAG_CONT_HDR_LEN);
    uint8_t hdr[DIST_FRAG_CONT_HDR_LEN], *dst;
    if (p != NULL)
        memcpy(hdr, p + 4, sizeof hdr);
    int r = p == NULL ? GD_ENOMEM : dist_rx_frag_room(&c->rx, hdr, n, &dst);
    if (r == 0)
        return false;
    *rc = r < 0 ? r : 0;
    if (r < 0)
        return true;
    size_t data = n - DIST_FRAG_CONT_HDR_LEN;
    evbuffer_drain(in, 4 + DIST_FRAG_CONT_HDR_LEN);
    if (evbuffer_remove(in, dst, data) != (int)data)
        *rc = GD_ENOMEM; /* cannot happen: all n bytes are there */
    atomic_fetch_add_explicit(&c->bytes_in, 4 + n, memory_order_relaxed);
    if (r == 2 && *rc == 0)
        *rc = last_fragment_done(c, hdr);
    return true;
}

/* A big frame, read into a binary of its own (see BIG_FRAME_MIN). */
static int read_big_frame(conn_t *c, struct evbuffer *in, size_t n)
{
    heap_binary_t *frame = heap_binary_new(n);
    if (frame == NULL)
        return GD_ENOMEM;
    evbuffer_drain(in, 4);
    atomic_fetch_add_explicit(&c->bytes_in, 4 + n, memory_order_relaxed);
    if (evbuffer_remove(in, frame->data, n) != (int)n) {
        heap_binary_unref(frame);
        return GD_ENOMEM; /* cannot happen: all n bytes are there */
    }
    return big_frame_done(c, frame, n);
}

/* Frames that still lack this many bytes are read into place by a sink. */
#define SINK_MIN ((size_t)16 << 10)

/*
 * The frame at the head of `in` (n bytes, of which only have = all of
 * `in` less the length are there) is big: when it is a continuation
 * fragment (its header is in) or a big frame, what is in moves to where
 * the frame's bytes belong and the rest will be read there directly
 * (c->sink_*).  Else nothing happens: the frame is split from `in` once
 * complete.  Returns 0 or the error that closes c.
 */
static int sink_start(conn_t *c, struct evbuffer *in, size_t n, size_t have)
{
    if (n > DIST_FRAG_CONT_HDR_LEN && have >= DIST_FRAG_CONT_HDR_LEN) {
        uint8_t *dst;
        const uint8_t *p = evbuffer_pullup(in, 4 + DIST_FRAG_CONT_HDR_LEN);
        if (p == NULL)
            return GD_ENOMEM;
        memcpy(c->sink_hdr, p + 4, DIST_FRAG_CONT_HDR_LEN);
        int r = dist_rx_frag_room(&c->rx, c->sink_hdr, n, &dst);
        if (r < 0)
            return r;
        if (r > 0) {
            size_t data = have - DIST_FRAG_CONT_HDR_LEN;
            evbuffer_drain(in, 4 + DIST_FRAG_CONT_HDR_LEN);
            if (evbuffer_remove(in, dst, data) != (int)data)
                return GD_ENOMEM;
            c->sink_dst = dst + data;
            c->sink_last = r == 2;
            c->sink_frame = NULL;
            c->sink_frame_len = n;
            c->sink_left = n - have;
            return 0;
        }
    } else if (n > DIST_FRAG_CONT_HDR_LEN) {
        return 0; /* maybe a fragment: wait for its header */
    }
    if (n < BIG_FRAME_MIN)
        return 0;
    heap_binary_t *frame = heap_binary_new(n);
    if (frame == NULL)
        return GD_ENOMEM;
    evbuffer_drain(in, 4);
    if (evbuffer_remove(in, frame->data, have) != (int)have) {
        heap_binary_unref(frame);
        return GD_ENOMEM;
    }
    c->sink_frame = frame;
    c->sink_frame_len = n;
    c->sink_dst = frame->data + have;
    c->sink_left = n - have;
    return 0;
}

/* The sink's frame is complete: hands it on.  0 or the error that closes c. */
static int sink_finish(conn_t *c)
{
    atomic_fetch_add_explicit(&c->bytes_in, 4 + c->sink_frame_len, memory_order_relaxed);
    heap_binary_t *frame = c->sink_frame;
    c->sink_frame = NULL;
    if (frame != NULL)
        return big_frame_done(c, frame, c->sink_frame_len);
    return c->sink_last ? last_fragment_done(c, c->sink_hdr) : 0;
}

/* Closes c over a frame that could not be taken in (error rc). */
static void conn_close_bad_data(conn_t *c, int rc)
{
    char why[128];
    snprintf(why, sizeof why, "bad data on the connection: %s", dist_strerror(rc));
    conn_close(c, why);
}

/* Decodes and handles every complete frame in the input buffer. */
static void read_frames(conn_t *c, struct evbuffer *in)
{
    c->rx_want = 0;
    for (;;) {
        /* The frame before needs its controller first (conn_defer). */
        if (c->deferred)
            return;
        size_t avail = evbuffer_get_length(in), n;
        if (avail < 4)
            return;
        /* Only the length first: a big frame is not made contiguous
         * until all of it is there. */
        const uint8_t *p = evbuffer_pullup(in, 4);
        int rc = p == NULL ? GD_ENOMEM : dist_frame_split(p, avail, DIST_MAX_MESSAGE_DEFAULT, &n);
        if (rc < 0) {
            conn_close(c, dist_strerror(rc));
            return;
        }
        if (rc == 0) {
            /* What the frame still lacks: the next read asks for it. */
            c->rx_want = 4 + n - avail;
            if (c->in_rd_ep && c->rx_want >= SINK_MIN)
                rc = sink_start(c, in, n, avail - 4);
            if (rc == 0) {
                if (c->sink_left > 0)
                    c->rx_want = 0;
                return;
            }
        } else if (n > DIST_FRAG_CONT_HDR_LEN && read_fragment_data(c, in, n, &rc)) {
            /* handled: rc says how */
        } else if (n >= BIG_FRAME_MIN) {
            rc = read_big_frame(c, in, n);
        } else {
            p = evbuffer_pullup(in, (ev_ssize_t)(4 + n));
            heap_t h;
            if (p == NULL || heap_init(&h, 0) != 0) {
                conn_close(c, "out of memory");
                return;
            }
            dist_msg_t m;
            rc = frame_done(c, &h, dist_rx_frame(&c->rx, &h, p + 4, n, &m), &m);
            atomic_fetch_add_explicit(&c->bytes_in, 4 + n, memory_order_relaxed);
            evbuffer_drain(in, 4 + n);
        }
        if (rc < 0) {
            conn_close_bad_data(c, rc);
            return;
        }
    }
}

/* Takes what an up connection received: all of the input moves (its
 * chains, no copy) into c->rxq under one hold of the bufferevent's lock,
 * then the frames are decoded from there without it.  Decoding straight
 * from the input took that lock four times per frame (length, pullup,
 * drain), and each scheduler sending on the connection takes it per
 * write: perf showed ~20% of the loadgen client's futex calls waiting
 * on it from both sides. */
static void read_up(conn_t *c, struct evbuffer *in)
{
    if (c->rxq == NULL)
        c->rxq = evbuffer_new();
    if (c->rxq == NULL || evbuffer_add_buffer(c->rxq, in) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    read_frames(c, c->rxq);
}

/* Bytes one read of an up TCP connection asks for: RX_READ_MIN, or what
 * the frame being received still lacks, up to RX_READ_MAX. */
#define RX_READ_MIN ((size_t)64 << 10)
#define RX_READ_MAX ((size_t)1 << 20)
#define RX_SINK_PEEK ((size_t)512)
#define LOOP_SPIN_NS 20000

/*
 * Reads an up TCP connection straight into rxq and decodes its frames
 * (rd_lock held).  libevent 2.1's bufferevent reads at most 4 KiB per
 * readv (its EVBUFFER_MAX_READ caps whatever FIONREAD reports, and it
 * makes that ioctl before every read): a 1 MiB message took 256 reads
 * and loop passes.  One readv here takes 64 KiB, or the rest of a big
 * frame.  Level-triggered: a read that fills its room is followed by
 * another, a short one ends the pass (rd_ep reports what arrives later).
 */
static void conn_read(conn_t *c)
{
    for (int pass = 0; pass < 4 && c->state == CONN_UP && !c->deferred; pass++) {
        size_t want = c->rx_want > RX_READ_MIN ? c->rx_want : RX_READ_MIN;
        if (want > RX_READ_MAX)
            want = RX_READ_MAX;
        /* The sink's bytes first, then room in rxq for what follows: only
         * a little while sinking, so that the next big frame's bytes land
         * in its own sink rather than in rxq (to be copied from there). */
        bool sinking = c->sink_left > 0;
        struct iovec iov[3];
        int k = 0;
        if (sinking) {
            want = RX_SINK_PEEK;
            iov[k++] = (struct iovec){c->sink_dst, c->sink_left};
        }
        struct evbuffer_iovec vec[2];
        int nvec = evbuffer_reserve_space(c->rxq, (ev_ssize_t)want, vec, 2);
        if (nvec <= 0) {
            conn_close(c, "out of memory");
            return;
        }
        size_t room = 0, offer = want;
        for (int i = 0; i < nvec; i++) {
            size_t len = vec[i].iov_len < offer ? vec[i].iov_len : offer;
            iov[k++] = (struct iovec){vec[i].iov_base, len};
            offer -= len;
        }
        for (int i = 0; i < k; i++)
            room += iov[i].iov_len;
        ssize_t got = readv(c->rd_fd, iov, k);
        if (got <= 0) {
            evbuffer_commit_space(c->rxq, vec, 0);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;
            conn_close(c, got == 0 ? "connection closed by peer" : "socket error");
            return;
        }
        atomic_store_explicit(&c->last_read_ns, now_ns(), memory_order_relaxed);
        node.rd_got = true;
        size_t left = (size_t)got;
        if (sinking) {
            size_t take = left < c->sink_left ? left : c->sink_left;
            c->sink_dst += take;
            c->sink_left -= take;
            left -= take;
        }
        for (int i = 0; i < nvec; i++) {
            vec[i].iov_len = left < vec[i].iov_len ? left : vec[i].iov_len;
            left -= vec[i].iov_len; /* (never more than offered) */
        }
        evbuffer_commit_space(c->rxq, vec, nvec);
        if (sinking && c->sink_left == 0) {
            int rc = sink_finish(c);
            if (rc < 0) {
                conn_close_bad_data(c, rc);
                return;
            }
        }
        read_frames(c, c->rxq);
        if ((size_t)got < room)
            return;
    }
}

/* A frame of c read on a scheduler asked its controller to act before the
 * frames after it (to_ctrl_sync): c waits on node.deferred, its reader
 * stopping at once (read_frames, conn_read), until the controller has
 * acknowledged seq.  A scheduler must not wait for that: the controller
 * may be queued on it.  rd_lock held. */
static void conn_defer(conn_t *c, uint64_t seq)
{
    c->sync_seq = seq;
    if (c->deferred)
        return;
    c->deferred = true;
    c->deferred_next = node.deferred;
    node.deferred = c;
    atomic_fetch_add_explicit(&node.rd_deferred, 1, memory_order_relaxed);
}

/* The connection's controller has acted on c->sync_seq (or never will: c
 * or the node is going).  The loop thread waits for it, up to
 * CLUSTER_CTRL_WAIT_MS; a scheduler only looks. */
static bool conn_sync_done(conn_t *c)
{
    if (!sched_on_scheduler()) {
        cluster_ctrl_wait(c, c->sync_seq);
        return true;
    }
    pthread_mutex_lock(&node.lock);
    bool done = c->ctrl_acked >= c->sync_seq || c->state != CONN_UP || !node.running;
    pthread_mutex_unlock(&node.lock);
    return done;
}

/*
 * Reads what the up TCP connections have for us (rd_lock held): first
 * the frames left in the deferred connections' rxq once their controller
 * has acted, then every socket rd_ep reports.  True when a read got bytes
 * or a connection resumed (a socket reported but empty does not count:
 * the loop thread spins only after real reads).
 */
#define RD_EVENTS 32

/* The first half: resumes the deferred connections whose controller has
 * acted (the loop thread waits for it).  True when one resumed. */
static bool deferred_resume_locked(void)
{
    bool any = false;
    conn_t *waiting = node.deferred;
    node.deferred = NULL;
    while (waiting != NULL) {
        conn_t *c = waiting;
        waiting = c->deferred_next;
        c->deferred = false;
        atomic_fetch_sub_explicit(&node.rd_deferred, 1, memory_order_relaxed);
        if (c->state != CONN_UP)
            continue;
        if (!conn_sync_done(c)) {
            conn_defer(c, c->sync_seq);
            continue;
        }
        c->sync_seq = 0;
        read_frames(c, c->rxq);
        any = true;
    }
    return any;
}

static bool conns_read_locked(void)
{
    node.rd_got = false;
    bool any = deferred_resume_locked();
    conn_t *only = node.rd_only;
    if (only != NULL) {
        /* One connection (a node talking to one peer): its socket is
         * read at once, an empty one answering EAGAIN, instead of asking
         * rd_ep first.  A frame on the way to a spinning scheduler takes
         * one system call less, a round trip two (~1 us each here). */
        if (only->state == CONN_UP && !only->deferred)
            conn_read(only);
        return any || node.rd_got;
    }
    struct epoll_event ev[RD_EVENTS];
    int n = epoll_wait(node.rd_ep, ev, RD_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        conn_t *c = ev[i].data.ptr;
        if (c->state == CONN_UP && !c->deferred)
            conn_read(c);
    }
    return any || node.rd_got;
}

/* rd_poller while the node is stopped: no scheduler has that number. */
#define RD_CLOSED UINT_MAX

/* A stream, to the loop thread: two reads of a connection less than
 * LOOP_STREAM_GAP_NS apart with nothing written to it in between (round
 * trips, ping-pong or rpc, write a reply between their reads).  It then
 * keeps the reading for LOOP_STREAM_NS: a spinning scheduler that took it
 * in the stream's gaps read it in small bites between running what it
 * read, and switched back and forth with the loop thread ~20k times a
 * second (an erl sender's one-way stream: 145k msgs/s, 185-200k with the
 * loop thread reading alone; ~40k reads/s, as many as a ping-pong's, so
 * the time between reads does not tell the two apart). */
#define LOOP_STREAM_GAP_NS 200000
#define LOOP_STREAM_NS 1000000

/* The loop thread read at `now` (loop thread only); stream: see above. */
static void loop_read_at(uint64_t now, bool stream)
{
    if (stream)
        atomic_store_explicit(&node.loop_stream_ns, now + LOOP_STREAM_NS, memory_order_relaxed);
    atomic_store_explicit(&node.loop_read_ns, now, memory_order_relaxed);
}

/* True while the loop thread reads: it read within LOOP_SPIN_NS (and
 * spins, see loop_main), or it reads a stream. */
static bool loop_reading(uint64_t now)
{
    return now - atomic_load_explicit(&node.loop_read_ns, memory_order_relaxed) < LOOP_SPIN_NS ||
           now < atomic_load_explicit(&node.loop_stream_ns, memory_order_relaxed);
}

/* Turns c's loop event off until the loop thread reads again (rd_cb);
 * rd_mode_lock held, on the loop thread. */
static void conn_park_locked(conn_t *c)
{
    if (c->rd_parked)
        return;
    event_del(c->rd_evc);
    c->rd_parked = true;
    c->parked_next = node.parked;
    node.parked = c;
}

/* Read batching (cluster_config_t.read_batch_us): the loop thread, the
 * only reader then, waits until read_batch_us passed since c's last read,
 * so that its read takes what accumulated meanwhile.  Outside rd_lock:
 * only the loop thread frees c (rd_remove). */
static void read_batch_wait(const conn_t *c)
{
    uint64_t batch = (uint64_t)node.cfg.read_batch_us * 1000u;
    if (batch == 0)
        return;
    uint64_t since = now_ns() - atomic_load_explicit(&c->last_read_ns, memory_order_relaxed);
    if (since >= batch)
        return;
    struct timespec ts = {(time_t)((batch - since) / 1000000000u),
                          (long)((batch - since) % 1000000000u)};
    (void)nanosleep(&ts, NULL);
}

/*
 * The loop thread's read of one socket (its event rd_evc, level-
 * triggered).  The sockets are watched by libevent one by one, not
 * through rd_ep nested in the loop's epoll: a nested epoll set made an
 * erl sender's one-way stream ~30% slower (200k -> 145k msgs/s on the
 * loaded 2-core box; the extra epoll_wait alone was not it).  While a
 * scheduler reads (rd_poller), the event is parked instead, so that
 * what arrives wakes the loop thread at most once per socket per
 * scheduler's turn; idle_done calls rd_cb, which puts them back.
 */
static void conn_loop_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *c = arg;
    read_batch_wait(c);
    /* Relaxed: a hint; the decision to park is taken under
     * rd_mode_lock, which idle_done holds to hand the reading back. */
    if (atomic_load_explicit(&node.rd_poller, memory_order_relaxed) != 0) {
        pthread_mutex_lock(&node.rd_mode_lock);
        bool park = atomic_load_explicit(&node.rd_poller, memory_order_relaxed) != 0;
        if (park)
            conn_park_locked(c);
        pthread_mutex_unlock(&node.rd_mode_lock);
        if (park)
            return;
    }
    pthread_mutex_lock(&node.rd_lock);
    if (c->state != CONN_UP) {
        /* Killed (conn_kill_locked, maybe on a scheduler, whose
         * event_del_noblock can lose to rd_cb putting the event back):
         * level-triggered, it would fire until conn_free. */
        event_del(c->rd_evc);
        pthread_mutex_unlock(&node.rd_lock);
        return;
    }
    node.rd_got = false;
    if (c->deferred)
        (void)deferred_resume_locked();
    uint64_t last = atomic_load_explicit(&c->last_read_ns, memory_order_relaxed);
    uint32_t writes = atomic_load_explicit(&c->writes, memory_order_relaxed);
    if (c->state == CONN_UP && !c->deferred)
        conn_read(c);
    if (node.rd_got) {
        uint64_t now = now_ns();
        loop_read_at(now, now - last < LOOP_STREAM_GAP_NS && writes == c->writes_at_read);
        c->writes_at_read = writes;
    }
    pthread_mutex_unlock(&node.rd_lock);
}

/* The loop thread takes the reading back from a scheduler (idle_done):
 * the parked events go back on (level-triggered: a socket with bytes
 * waiting fires at once), and the connections the scheduler left
 * deferred resume (the loop thread may wait for their controller). */
static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pthread_mutex_lock(&node.rd_mode_lock);
    if (atomic_load_explicit(&node.rd_poller, memory_order_relaxed) == 0) {
        conn_t *c = node.parked;
        node.parked = NULL;
        for (; c != NULL; c = c->parked_next) {
            c->rd_parked = false;
            if (c->state == CONN_UP && event_add(c->rd_evc, NULL) != 0)
                cluster_log("%s: could not watch the socket again", c->peer);
        }
    }
    pthread_mutex_unlock(&node.rd_mode_lock);
    pthread_mutex_lock(&node.rd_lock);
    if (deferred_resume_locked())
        loop_read_at(now_ns(), false);
    pthread_mutex_unlock(&node.rd_lock);
}

/*
 * The schedulers' idle poller (sched_set_idle_poller).  A scheduler
 * that spins becomes the reader (rd_poller) and polls rd_ep each round;
 * what it delivers runs on it at once.  The loop thread, woken once by
 * what arrives on a socket meanwhile, parks that socket's event
 * (conn_loop_read_cb), so it is not woken again for it.  The scheduler
 * keeps the role while it runs that work (polling between slices), and
 * other schedulers leave the sockets to it.  When the holder gives it up
 * (idle_done: asleep, or busy for long) the loop thread puts the parked
 * events back (rd_cb) and reads again.  Before, every frame of a round trip
 * woke the loop thread and then its process's scheduler: two wake-ups on
 * each node, which on two cores also fought the spinning schedulers for
 * the CPU.
 */
static bool idle_poll(void *ud, unsigned who, bool idle)
{
    (void)ud;
    /* Relaxed: a hint; the switch and the check below are under locks. */
    unsigned cur = atomic_load_explicit(&node.rd_poller, memory_order_relaxed);
    if (cur != who) {
        /* Not while the loop thread reads a steady stream (it spins then,
         * see loop_main): it reads in parallel with the schedulers that
         * run what it delivers.  Only a spinning scheduler takes the
         * role (a busy one that gave it up does not take it back). */
        if (!idle || cur != 0 || loop_reading(now_ns()))
            return false;
        pthread_mutex_lock(&node.rd_mode_lock);
        bool mine = atomic_load_explicit(&node.rd_poller, memory_order_relaxed) == 0;
        if (mine)
            atomic_store_explicit(&node.rd_poller, who, memory_order_relaxed);
        pthread_mutex_unlock(&node.rd_mode_lock);
        if (!mine)
            return false;
    }
    if (pthread_mutex_trylock(&node.rd_lock) != 0)
        return false;
    /* Rechecked under rd_lock: cluster_stop closes the readers' set
     * (RD_CLOSED) before it takes this lock and frees connections. */
    bool any =
        atomic_load_explicit(&node.rd_poller, memory_order_relaxed) == who && conns_read_locked();
    pthread_mutex_unlock(&node.rd_lock);
    return any;
}

static void idle_done(void *ud, unsigned who)
{
    (void)ud;
    if (atomic_load_explicit(&node.rd_poller, memory_order_relaxed) != who)
        return;
    pthread_mutex_lock(&node.rd_mode_lock);
    if (atomic_load_explicit(&node.rd_poller, memory_order_relaxed) == who) {
        atomic_store_explicit(&node.rd_poller, 0, memory_order_relaxed);
        /* Parked sockets (under this lock, so none is parked after this
         * look), and connections left waiting for their controller: the
         * loop thread takes them back (it may wait). */
        if (node.parked != NULL ||
            atomic_load_explicit(&node.rd_deferred, memory_order_relaxed) != 0)
            event_active(node.rd_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&node.rd_mode_lock);
}

static const sched_idle_poller_t idle_poller = {idle_poll, idle_done, NULL};

/* Sets up the readers' set before the loop thread starts. */
static int readers_start(void)
{
    node.rd_count = 0;
    node.rd_only = NULL;
    node.rd_ep = epoll_create1(EPOLL_CLOEXEC);
    if (node.rd_ep < 0)
        return GD_ESYSTEM_LIMIT;
    /* No socket: only made active (idle_done). */
    node.rd_ev = event_new(node.base, -1, 0, rd_cb, NULL);
    if (node.rd_ev == NULL)
        return GD_ENOMEM;
    node.deferred = NULL;
    node.parked = NULL;
    atomic_store_explicit(&node.rd_deferred, 0, memory_order_relaxed);
    atomic_store_explicit(&node.rd_poller, 0, memory_order_relaxed);
    return 0;
}

/* No scheduler reads from now on (the loop thread has stopped). */
static void readers_close(void)
{
    sched_set_idle_poller(NULL);
    pthread_mutex_lock(&node.rd_mode_lock);
    atomic_store_explicit(&node.rd_poller, RD_CLOSED, memory_order_relaxed);
    pthread_mutex_unlock(&node.rd_mode_lock);
    /* Waits out a scheduler reading now. */
    pthread_mutex_lock(&node.rd_lock);
    pthread_mutex_unlock(&node.rd_lock);
}

/* After the connections are freed. */
static void readers_free(void)
{
    if (node.rd_ev != NULL)
        event_free(node.rd_ev);
    node.rd_ev = NULL;
    if (node.rd_ep >= 0)
        close(node.rd_ep);
    node.rd_ep = -1;
}

/* An up connection: a TCP one's reads move from the bufferevent to the
 * readers' set (TLS stays with OpenSSL's bufferevent), and what came
 * with the end of the handshake (in) is decoded. */
static int own_reads_start(conn_t *c, struct evbuffer *in)
{
    if (c->tls) {
        read_up(c, in);
        return 0;
    }
    if (c->rxq == NULL)
        c->rxq = evbuffer_new();
    if (c->rxq == NULL)
        return GD_ENOMEM;
    c->rd_fd = bufferevent_getfd(c->bev);
    bufferevent_disable(c->bev, EV_READ);
    c->rd_evc = event_new(node.base, c->rd_fd, EV_READ | EV_PERSIST, conn_loop_read_cb, c);
    if (c->rd_evc == NULL)
        return GD_ENOMEM;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    /* Under rd_lock: a scheduler may read c as soon as it is in rd_ep,
     * and the bytes that came with the handshake go first. */
    pthread_mutex_lock(&node.rd_lock);
    int rc = epoll_ctl(node.rd_ep, EPOLL_CTL_ADD, c->rd_fd, &ev) == 0 ? 0 : GD_ESYSTEM_LIMIT;
    if (rc == 0 && event_add(c->rd_evc, NULL) != 0) {
        (void)epoll_ctl(node.rd_ep, EPOLL_CTL_DEL, c->rd_fd, NULL);
        rc = GD_ENOMEM;
    }
    if (rc == 0) {
        pthread_mutex_lock(&node.lock);
        c->in_rd_ep = true;
        pthread_mutex_unlock(&node.lock);
        node.rd_only = ++node.rd_count == 1 ? c : NULL;
        read_up(c, in);
    }
    pthread_mutex_unlock(&node.rd_lock);
    if (rc != 0) {
        event_free(c->rd_evc);
        c->rd_evc = NULL;
    }
    return rc;
}

/* Sends what the handshake wrote (4-byte lengths inside TLS). */
static void hs_send_out(conn_t *c)
{
    if (c->hs.out_len > 0 && c->hs_len_bytes == 2) {
        bufferevent_write(c->bev, c->hs.out, c->hs.out_len);
    } else if (c->hs.out_len > 0) {
        uint8_t framed[2 * DIST_HS_OUT_MAX];
        bufferevent_write(c->bev, framed, dist_hs_reframe4(c->hs.out, c->hs.out_len, framed));
    }
    c->hs.out_len = 0;
}

/* Feeds the next handshake message at in[0..avail) to c's state machine;
 * *drain is what to take off the input.  A TLS acceptor follows the
 * peer's framing (protocol.md 6: OTP 25 uses 4 bytes; a 2-byte length is
 * never 0, so "00 00" tells them apart). */
static int hs_feed_framed(conn_t *c, const uint8_t *p, size_t avail, size_t *drain)
{
    *drain = 0;
    if (c->hs_len_bytes == 0) {
        if (avail < 2)
            return 0;
        c->hs_len_bytes = p[0] == 0 && p[1] == 0 ? 4 : 2;
    }
    size_t used = 0;
    if (c->hs_len_bytes == 2) {
        size_t n = avail < DIST_HS_MSG_MAX + 2 ? avail : DIST_HS_MSG_MAX + 2;
        int rc = dist_hs_feed(&c->hs, p, n, &used);
        *drain = used;
        return rc;
    }
    uint8_t msg[DIST_HS_MSG_MAX + 2];
    size_t msg_len, in_used;
    int rc = dist_hs_unframe4(p, avail, msg, &msg_len, &in_used);
    if (rc <= 0)
        return rc;
    rc = dist_hs_feed(&c->hs, msg, msg_len, &used);
    *drain = used == msg_len ? in_used : 0;
    return rc;
}

/* The peer answered our attempt "nok": its own attempt to us wins.  As
 * dist_util does ("wait to be killed by net_kernel"), the attempt stays
 * pending under the peer's name, silent, until decide() hands its queued
 * frames and controller to the peer's incoming connection; if that never
 * comes, the setup timer (still armed) ends it like any stalled setup.  So
 * sends and calls made meanwhile are delivered, not failed. */
static void await_peer_attempt(conn_t *c)
{
    pthread_mutex_lock(&node.lock);
    if (c->state == CONN_HANDSHAKE) {
        c->await_peer = true;
        /* The peer closes its end after "nok": no EOF to report now. */
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    }
    pthread_mutex_unlock(&node.lock);
}

/* Handshake input: one message at a time. */
static void read_handshake(conn_t *c, struct evbuffer *in)
{
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < DIST_HS_MSG_MAX + 4 ? avail : DIST_HS_MSG_MAX + 4;
        if (n == 0)
            return;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        size_t used = 0;
        pthread_mutex_lock(&node.lock);
        int rc = hs_feed_framed(c, p, n, &used);
        hs_send_out(c);
        pthread_mutex_unlock(&node.lock);
        evbuffer_drain(in, used);
        if (rc == DIST_ENOK && c->initiator) {
            await_peer_attempt(c);
            return;
        }
        if (rc < 0) {
            const char *who = c->hs.peer_name[0] ? c->hs.peer_name : "an unnamed peer";
            if (rc == DIST_EDIGEST)
                cluster_log("connection attempt %s node %s rejected: invalid challenge reply "
                            "(wrong cookie)",
                            c->initiator ? "to" : "from", who);
            else
                cluster_log("connection attempt %s %s refused: %s", c->initiator ? "to" : "from",
                            who, dist_strerror(rc));
            pthread_mutex_lock(&node.lock);
            c->peer[0] = 0;
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 && c->state != CONN_DEAD) {
                /* Let a refusal status reach the peer, then close. */
                c->state = CONN_CLOSING;
                bufferevent_disable(c->bev, EV_READ);
                pthread_mutex_unlock(&node.lock);
                return;
            }
            conn_kill_locked(c);
            pthread_mutex_unlock(&node.lock);
            return;
        }
        if (rc == 1) {
            rc = conn_up(c);
            if (rc >= 0)
                rc = own_reads_start(c, in);
            if (rc < 0)
                conn_close(c, dist_strerror(rc));
            return;
        }
        if (used == 0) {
            /* Restart the setup timer for the next step. */
            return;
        }
        struct timeval tv = {(time_t)node.cfg.setuptime_s, 0};
        event_add(c->timer, &tv);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == CONN_HANDSHAKE) {
        read_handshake(c, in);
    } else if (c->state == CONN_UP) {
        atomic_store_explicit(&c->last_read_ns, now_ns(), memory_order_relaxed);
        read_up(c, in);
    } else {
        evbuffer_drain(in, evbuffer_get_length(in));
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    if (c->state == CONN_UP) {
        /* No connection busy and nothing in outq: nothing to resume or
         * move, and no node.lock taken after every drain of a burst.
         * Relaxed: a connection marks itself busy (conn_write_locked),
         * and outq's first bytes are counted, under the bufferevent lock
         * this drain took and released, which orders them before us. */
        if (atomic_load_explicit(&node.busy_conns, memory_order_relaxed) == 0 &&
            atomic_load_explicit(&c->outq_bytes, memory_order_relaxed) == 0)
            return;
        pthread_mutex_lock(&node.lock);
        if (c->state == CONN_UP)
            outq_move_locked(c);
        if (c->busy && c->state == CONN_UP &&
            evbuffer_get_length(bufferevent_get_output(bev)) <= busy_low_water())
            conn_unbusy_locked(c);
        pthread_mutex_unlock(&node.lock);
        return;
    }
    /* Deferred callbacks can report an earlier drain: close only once the
     * refusal itself has gone out. */
    if (c->state == CONN_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        pthread_mutex_lock(&node.lock);
        conn_kill_locked(c);
        pthread_mutex_unlock(&node.lock);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn_t *c = arg;
    char why[320];
    if (c->await_peer)
        return;
    /* A TLS peer that refuses us may close before our own verdict is
     * reported: an EOF during the handshake is described as well. */
    if (c->tls && ((what & BEV_EVENT_ERROR) || ((what & BEV_EVENT_EOF) && c->state != CONN_UP))) {
        cluster_tls_describe(bev, c->state != CONN_UP, why, sizeof why);
        conn_close(c, why);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        conn_close(c, (what & BEV_EVENT_EOF) ? "connection closed by peer" : "socket error");
    }
}

static void setup_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_close(arg, "handshake timed out (net_setuptime)");
}

/* Moves the held bodies of from to to (which holds none: it is new). */
static void held_move(conn_t *to, conn_t *from)
{
    held_free(to);
    to->held = from->held;
    to->nheld = from->nheld;
    to->held_cap = from->held_cap;
    to->held_next = from->held_next;
    to->held_bytes = from->held_bytes;
    from->held = NULL;
    from->nheld = from->held_cap = from->held_next = from->held_bytes = 0;
}

/* Acceptor's answer to a peer's name (dist_util's mark_pending): a live
 * connection to that name → alive; our own attempt to it → the greater
 * name wins (ok_simultaneous when the peer's is greater: ours is then
 * abandoned, its queued messages move to this connection). */
static enum dist_status decide(void *ud, const char *name, size_t len)
{
    conn_t *self = ud;
    conn_t *c = find_conn_by_name_locked(name, len, self);
    if (c == NULL)
        return DIST_STATUS_OK;
    if (c->state == CONN_UP)
        return DIST_STATUS_ALIVE;
    size_t ours = node.name_len;
    int cmp = memcmp(name, node.name, len < ours ? len : ours);
    bool peer_greater = cmp > 0 || (cmp == 0 && len > ours);
    if (!peer_greater)
        return DIST_STATUS_NOK;
    /* The peer's connection carries on what ours had started: the queued
     * frames and the controller (links and monitors set meanwhile). */
    etf_buf_t moved = c->pending;
    c->pending = (etf_buf_t){0};
    self->pending = moved;
    held_move(self, c);
    self->ctrl = c->ctrl;
    c->ctrl = TERM_NONE;
    conn_kill_locked(c);
    return DIST_STATUS_OK_SIMULTANEOUS;
}

/* Sets up the bufferevent and handshake of a new connection (lock held
 * for the initiator, whose conn is already linked). */
static int conn_start(conn_t *c, evutil_socket_t fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE | BEV_OPT_DEFER_CALLBACKS |
                     BEV_OPT_UNLOCK_CALLBACKS;
    c->tls = node.cfg.tls != NULL;
    c->hs_len_bytes = !c->tls ? 2 : c->initiator ? 4 : 0;
    if (c->tls) {
        const char *at = strchr(c->peer, '@');
        c->bev = cluster_tls_bev_new(node.cfg.tls, node.base, fd, !c->initiator,
                                     at != NULL ? at + 1 : NULL, opts);
    } else {
        c->bev = bufferevent_socket_new(node.base, fd, opts);
    }
    if (c->bev == NULL) {
        close(fd);
        return GD_ENOMEM;
    }
    c->timer = evtimer_new(node.base, setup_timeout_cb, c);
    if (c->timer == NULL)
        return GD_ENOMEM;
    uint32_t challenge;
    uint64_t seed;
    if (getrandom(&challenge, sizeof challenge, 0) != sizeof challenge ||
        getrandom(&seed, sizeof seed, 0) != sizeof seed)
        return GD_ESYSTEM_LIMIT;
    dist_hs_config_t hc = {0};
    hc.role = c->initiator ? DIST_INITIATOR : DIST_ACCEPTOR;
    hc.name = node.name;
    hc.name_len = node.name_len;
    hc.creation = node.creation;
    hc.flags = node.cfg.hidden ? DFLAG_GIRDER_DEFAULT & ~DFLAG_PUBLISHED : DFLAG_GIRDER_DEFAULT;
    hc.cookie = node.cookie;
    hc.cookie_len = node.cookie_len;
    hc.challenge = challenge;
    hc.peer_name = c->peer;
    hc.peer_name_len = strlen(c->peer);
    hc.decide = decide;
    hc.decide_ud = c;
    hc.dynamic_seed = seed;
    int rc = dist_hs_init(&c->hs, &hc);
    if (rc < 0)
        return rc;
    c->state = CONN_HANDSHAKE;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    /* An unauthenticated peer gets at most this much buffered per read. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, 4 * (DIST_HS_MSG_MAX + 2));
    hs_send_out(c);
    struct timeval tv = {(time_t)node.cfg.setuptime_s, 0};
    if (event_add(c->timer, &tv) != 0 || bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0)
        return GD_ENOMEM;
    return 0;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    (void)l;
    (void)addr;
    (void)socklen;
    (void)arg;
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->node = TERM_NONE;
    c->ctrl = TERM_NONE;
    pthread_mutex_lock(&node.lock);
    c->id = ++node.conn_ids;
    dist_tx_init(&c->tx);
    int rc = conn_start(c, fd);
    if (rc < 0) {
        pthread_mutex_unlock(&node.lock);
        cluster_log("connection refused: %s", dist_strerror(rc));
        conn_free(c);
        return;
    }
    c->next = node.conns;
    node.conns = c;
    pthread_mutex_unlock(&node.lock);
}

/* ---- initiating connections ---- */

typedef struct connect_job {
    conn_t *conn;
    char name[DIST_NAME_MAX + 1];
} connect_job_t;

/* Blocking TCP connect with a timeout; -1 on failure. */
static int tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t elen = sizeof err;
            if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The connect thread: EPMD lookup on the peer's host and the TCP connect
 * (blocking, so neither a scheduler nor the loop waits for them); the
 * socket then joins the loop. */
static void *connect_main(void *arg)
{
    connect_job_t *job = arg;
    (void)pthread_setname_np(pthread_self(), "gd-connect");
    char *at = strchr(job->name, '@');
    *at = 0;
    const char *host = at + 1;
    epmd_client_opts_t eo = {.host = host, .port = node.cfg.epmd_port, .timeout_ms = 5000};
    epmd_node_info_t info;
    int fd = -1;
    int rc = epmd_client_port_please(&eo, job->name, &info);
    if (rc == 0 && info.high_vsn >= 6)
        fd = tcp_connect(host, info.port, 5000);
    *at = '@';
    pthread_mutex_lock(&node.lock);
    conn_t *c = job->conn;
    if (c->state != CONN_CONNECTING) {
        /* Abandoned meanwhile (simultaneous connect, shutdown). */
        if (fd >= 0)
            close(fd);
    } else if (fd < 0) {
        cluster_log("connection to %s failed: %s", job->name,
                    rc != 0 ? epmd_strerror(rc) : "connect failed");
        c->peer[0] = 0;
        conn_kill_locked(c);
    } else if ((rc = conn_start(c, fd)) < 0) {
        cluster_log("connection to %s failed: %s", job->name, dist_strerror(rc));
        conn_kill_locked(c);
    }
    /* A connection abandoned or failed while this thread ran was not
     * freed (the thread still read it): release it now. */
    c->connect_job = false;
    if (c->state == CONN_DEAD)
        conn_schedule_free(c);
    node.connect_threads--;
    pthread_cond_broadcast(&node.cond);
    pthread_mutex_unlock(&node.lock);
    free(job);
    return NULL;
}

/* An incoming connection from node_atom still in its handshake, its name
 * accepted (lock held).  A send to node_atom waits on it: a second,
 * outgoing attempt would cross it (global's in_sync casts make both ends
 * of a pair connect at once), and both came up, then one was closed,
 * taking a nodedown and the calls in flight with it.  Its controller
 * starts now, for the links and monitors queued meanwhile. */
static conn_t *find_accepting_locked(term_t node_atom)
{
    size_t len;
    const char *name = heap_atom_text(node_atom, &len);
    for (conn_t *c = node.conns; c != NULL; c = c->next) {
        /* Up to and including the moment its handshake is done and
         * conn_up has not yet made it CONN_UP: missing it then made a
         * send start an attempt of our own, which the peer, already up
         * with us, answered "alive" and took as a new incarnation of
         * ours, dropping the connection (interop_mesh's
         * restart_new_creation, 1 run in 10: {badrpc, nodedown}). */
        if (c->initiator || c->state != CONN_HANDSHAKE || c->hs.state <= DIST_HS_RECV_NAME ||
            c->hs.state > DIST_HS_UP || c->hs.peer_name_len != len ||
            memcmp(c->hs.peer_name, name, len) != 0)
            continue;
        if (!term_is_pid(c->ctrl) && cluster_controller_start(node_atom, &c->ctrl) < 0)
            return NULL;
        return c;
    }
    return NULL;
}

/* The connection to node_atom, creating an outgoing one if none (lock
 * held).  NULL when the name is not a valid node name or memory ran out. */
static conn_t *get_conn_locked(term_t node_atom)
{
    conn_t *c = find_conn_locked(node_atom);
    if (c == NULL)
        c = find_accepting_locked(node_atom);
    if (c != NULL || !node.running)
        return c;
    size_t len;
    const char *name = heap_atom_text(node_atom, &len);
    if (!dist_name_valid(name, len) || node_atom == heap_node_name())
        return NULL;
    c = calloc(1, sizeof *c);
    connect_job_t *job = malloc(sizeof *job);
    if (c == NULL || job == NULL) {
        free(c);
        free(job);
        return NULL;
    }
    c->initiator = true;
    c->node = node_atom;
    c->ctrl = TERM_NONE;
    c->id = ++node.conn_ids;
    dist_tx_init(&c->tx);
    /* Its controller exists from now on: links and monitors set while
     * connecting are queued with the messages. */
    if (cluster_controller_start(node_atom, &c->ctrl) < 0) {
        free(c);
        free(job);
        return NULL;
    }
    c->state = CONN_CONNECTING;
    c->connect_job = true;
    memcpy(c->peer, name, len);
    c->peer[len] = 0;
    job->conn = c;
    memcpy(job->name, name, len); /* len <= DIST_NAME_MAX: dist_name_valid */
    job->name[len] = 0;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, connect_main, job) != 0) {
        pthread_attr_destroy(&attr);
        free(c);
        free(job);
        return NULL;
    }
    pthread_attr_destroy(&attr);
    node.connect_threads++;
    c->next = node.conns;
    node.conns = c;
    return c;
}

/* ---- the sched/ hooks ---- */

/* The node a remote target lives on, or TERM_NONE. */
static term_t target_node(term_t to, term_t *name)
{
    *name = TERM_NONE;
    if (term_is_ext_pid(to) || term_is_boxed_of(to, HDR_REF)) {
        heap_ident_t id;
        heap_ident(to, &id);
        return id.node;
    }
    const term_t *e = term_boxed_ptr(to);
    *name = e[1];
    return e[2];
}

/* A pid to stand as the sender when a send comes from outside any
 * process (control messages need one): net_kernel's. */
static term_t sender_or_kernel(term_t from)
{
    if (term_is_pid(from))
        return from;
    term_t k = sched_whereis(heap_atom("net_kernel"));
    return term_is_pid(k) ? k : from;
}

/*
 * Corking.  A process that sends several signals to one node in a run
 * (a call: MONITOR_P then REG_SEND, and the DEMONITOR_P of the call
 * before) would make a write for each, the peer a read for each; a
 * round trip's worth of syscalls per signal where OTP's port batches
 * them.  So while a process runs on a scheduler, the small bodies it
 * sends to a node are kept here, encoded but not framed (the atom cache
 * must follow the order of the writes: framing happens under node.lock
 * at the flush), and leave in one write when its run ends (sched/'s
 * run_end hook: it yields, waits in a receive, is suspended or exits),
 * before anything else of the process's goes out another way, before a
 * controller is told to act for it, and when the next body is for
 * another node or would not fit.  Per scheduler thread: a run belongs
 * to one thread, and only the process running there sends into it.
 */
#define CORK_MAX 16384
/* Bodies longer than this go out at once (after the cork). */
#define CORK_BODY_MAX 4096

typedef struct cork {
    term_t node;  /* where the held bodies go (meaningless when n is 0) */
    bool connect; /* one of them may open the connection (a message) */
    size_t len;   /* bytes used in buf: records as in pending (PENDING_HDR) */
    size_t n;
    uint8_t buf[CORK_MAX];
} cork_t;

static _Thread_local cork_t cork;

/* Writes what this thread holds (see above): framed in order under
 * node.lock, as one write on an up connection, queued on one being set
 * up, dropped when the node cannot be reached (as an immediate send
 * would have been). */
static void cork_flush(void)
{
    if (cork.n == 0)
        return;
    etf_buf_t frames = {0};
    int rc = 0;
    pthread_mutex_lock(&node.lock);
    conn_t *c = cork.connect ? get_conn_locked(cork.node) : find_conn_locked(cork.node);
    for (size_t pos = 0; c != NULL && pos < cork.len && rc == 0;) {
        const uint8_t *r = cork.buf + pos;
        dist_body_t b = pending_body(r);
        if (c->state == CONN_UP) {
            rc = frame_locked(c, &b, get64(r), &frames);
            c->msgs_out++;
        } else {
            rc = conn_send_body_locked(c, &b, get64(r));
        }
        pos += PENDING_HDR + b.bytes.len;
    }
    if (c != NULL && c->state == CONN_UP && rc == 0)
        rc = conn_write_locked(c, frames.data, frames.len, &frames);
    if (rc < 0 && rc != DIST_ECLOSED && c != NULL && c->state == CONN_UP) {
        /* The process has gone on: nobody to tell, and the cache may now
         * say more than the peer was told. */
        cluster_log("%s: cannot send (%s); closing", c->peer, dist_strerror(rc));
        conn_kill_locked(c);
    }
    pthread_mutex_unlock(&node.lock);
    etf_buf_free(&frames);
    cork.n = 0;
    cork.len = 0;
    cork.connect = false;
}

static void hook_run_end(void *ud)
{
    (void)ud;
    cork_flush();
}

void cluster_cork_flush(void)
{
    cork_flush();
}

/* Holds body b (seq) for node_atom when the caller is a process in a run
 * and b is small (see above); false when it must go out now (whatever
 * this thread held has been written first then).  connect: b may open
 * the connection. */
static bool cork_add(term_t node_atom, const dist_body_t *b, uint64_t seq, bool connect)
{
    size_t need = PENDING_HDR + b->bytes.len;
    if (b->refs.n > 0 || b->bytes.len > CORK_BODY_MAX || !sched_dist_in_run()) {
        cork_flush();
        return false;
    }
    if (cork.n > 0 && (cork.node != node_atom || cork.len + need > CORK_MAX))
        cork_flush();
    pending_put(cork.buf + cork.len, b, seq);
    cork.node = node_atom;
    cork.connect |= connect;
    cork.len += need;
    cork.n++;
    sched_dist_cork();
    return true;
}

/* How send_to_node finds the connection: creating it (a process's
 * signal) or only a live one, and then whether the body may be corked
 * (a process's own signal, not a controller's answer: those die with
 * their connection, and a corked one could outlive it). */
enum send_how { SEND_CONNECT, SEND_LIVE, SEND_LIVE_CORK };

/* Encodes control + payload and sends them to node_atom, creating the
 * connection if asked.  Encoding and framing (O(size)) happen without the
 * lock; a message for an unreachable or dead connection is dropped, as
 * Erlang does.  Every message, exit and DOWN signals too (their reason is
 * a payload OTP fragments like a message's), gets its own sequence id. */
static int send_to_node(term_t node_atom, term_t control, term_t payload, enum send_how how)
{
    bool connect = how == SEND_CONNECT;
    uint64_t seq = next_sequence_id();
    dist_body_t b = {0};
    etf_buf_t frames = {0};
    /* Big binaries referenced, not copied, for the fragment writer. */
    int rc = dist_encode_body_refs(control, payload, &b);
    if (rc < 0)
        goto out;
    if (how == SEND_LIVE)
        cork_flush(); /* held bodies leave before this one */
    else if (cork_add(node_atom, &b, seq, connect))
        goto out;
    pthread_mutex_lock(&node.lock);
    conn_t *c = connect ? get_conn_locked(node_atom) : find_conn_locked(node_atom);
    if (c != NULL && c->state == CONN_UP && send_big_body_locked(c, &b, seq, &rc))
        goto unlock; /* written (or queued) from the body and its binaries */
    if (c != NULL && b.refs.n > 0 && (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE)) {
        rc = queue_held_body(c, &b, seq); /* kept whole until it is up */
        goto unlock;
    }
    if (b.refs.n > 0) {
        /* Any other way copies them in (a peer without fragments, a
         * control to rewrite). */
        pthread_mutex_unlock(&node.lock);
        rc = dist_body_flatten(&b);
        if (rc < 0)
            goto out;
        pthread_mutex_lock(&node.lock);
        c = connect ? get_conn_locked(node_atom) : find_conn_locked(node_atom);
    }
    if (c != NULL && c->state == CONN_UP && !use_cache(c, &b)) {
        uint64_t id = c->id, flags = c->flags;
        pthread_mutex_unlock(&node.lock);
        rc = dist_frame_body(&b, flags, seq, &frames);
        if (rc < 0)
            goto out;
        pthread_mutex_lock(&node.lock);
        c = find_conn_locked(node_atom);
        if (c != NULL && c->id == id && c->state == CONN_UP) {
            rc = conn_write_locked(c, frames.data, frames.len, &frames);
            c->msgs_out++;
        } else if (c != NULL) /* replaced meanwhile by a connection being set up */
            rc = conn_send_body_locked(c, &b, seq);
    } else if (c != NULL) {
        rc = conn_send_body_locked(c, &b, seq);
    }
unlock:
    pthread_mutex_unlock(&node.lock);
    if (rc == DIST_ECLOSED)
        rc = 0;
out:
    etf_buf_free(&frames);
    dist_body_free(&b);
    return rc;
}

int cluster_send_remote(term_t from, term_t to, term_t msg)
{
    term_t name;
    term_t node_atom = target_node(to, &name);
    term_t ctl[5];
    if (name != TERM_NONE) {
        ctl[0] = heap_make_header(HDR_TUPLE, 4);
        ctl[1] = term_make_small(DOP_REG_SEND);
        ctl[2] = sender_or_kernel(from);
        ctl[3] = heap_atom("");
        ctl[4] = name;
    } else {
        ctl[0] = heap_make_header(HDR_TUPLE, 3);
        ctl[1] = term_make_small(term_is_ext_pid(to) ? DOP_SEND_SENDER : DOP_ALIAS_SEND);
        ctl[2] = sender_or_kernel(from);
        ctl[3] = to;
    }
    if (!term_is_pid(ctl[2]))
        return 0; /* no process to name as the sender: nothing can be sent */
    return send_to_node(node_atom, term_make_boxed(ctl), msg, SEND_CONNECT);
}

static int hook_send(void *ud, term_t from, term_t to, term_t msg)
{
    (void)ud;
    return cluster_send_remote(from, to, msg);
}

static bool pred_drained(term_t msg, void *arg)
{
    (void)arg;
    return msg == heap_atom("$gd_drained");
}

static bool pred_none(term_t msg, void *arg)
{
    (void)msg;
    (void)arg;
    return false;
}

/* Back-pressure (OTP's busy_dist_port): after a process's send to `to`,
 * when that connection has more than the limit queued, a coroutine
 * process waits (in a receive that only '$gd_drained' ends, so its other
 * messages stay queued and it takes no CPU) until write_cb sees the
 * output below the low-water mark, or the connection ends.  The message
 * itself was queued before: nothing is dropped and the order holds.  A
 * behaviour process cannot wait inside its callback: it is suspended
 * once the callback returns (sched_suspend: its next message does not
 * run, it is not queued) and resumed by the same drain. */
static int hook_sent(void *ud, sched_ctx_t *ctx, term_t to)
{
    (void)ud;
    /* Relaxed is enough: the flag is set under node.lock by the send that
     * this process just made (program order), and one missed by a race
     * with another sender only delays the suspension to the next send. */
    if (atomic_load_explicit(&node.busy_conns, memory_order_relaxed) == 0)
        return 0;
    term_t name, msg;
    term_t node_atom = target_node(to, &name);
    pthread_mutex_lock(&node.lock);
    conn_t *c = find_conn_locked(node_atom);
    bool busy = c != NULL && c->busy;
    pthread_mutex_unlock(&node.lock);
    if (!busy)
        return 0;
    /* Probe: a behaviour process gets GD_EINVAL from a receive. */
    bool coroutine = sched_receive_wait(ctx, pred_none, NULL, 0, &msg) != GD_EINVAL;
    pthread_mutex_lock(&node.lock);
    c = find_conn_locked(node_atom);
    busy = c != NULL && c->busy;
    if (busy && c->nwaiters == c->waiters_cap) {
        size_t cap = c->waiters_cap ? 2 * c->waiters_cap : 8;
        struct waiter *w = realloc(c->waiters, cap * sizeof *w);
        if (w == NULL) {
            pthread_mutex_unlock(&node.lock);
            return GD_ENOMEM;
        }
        c->waiters = w;
        c->waiters_cap = cap;
    }
    int rc = 0;
    if (busy && !coroutine)
        rc = sched_suspend(ctx); /* before the drain can resume it: under the lock */
    if (busy && rc == 0) {
        c->waiters[c->nwaiters++] = (struct waiter){sched_self(ctx), coroutine};
        c->suspends++;
    }
    pthread_mutex_unlock(&node.lock);
    return busy && coroutine ? sched_receive_wait(ctx, pred_drained, NULL, -1, &msg) : rc;
}

static int hook_exit(void *ud, term_t from, term_t to, term_t reason)
{
    (void)ud;
    term_t ctl[4] = {heap_make_header(HDR_TUPLE, 3), term_make_small(DOP_PAYLOAD_EXIT2),
                     sender_or_kernel(from), to};
    if (!term_is_pid(ctl[2]))
        return 0;
    heap_ident_t id;
    heap_ident(to, &id);
    return send_to_node(id.node, term_make_boxed(ctl), reason, SEND_CONNECT);
}

/* The controller of the connection to node_atom (connecting if needed),
 * or TERM_NONE when the node cannot be reached. */
static term_t controller_for(term_t node_atom)
{
    pthread_mutex_lock(&node.lock);
    conn_t *c = get_conn_locked(node_atom);
    term_t ctrl = c != NULL ? c->ctrl : TERM_NONE;
    pthread_mutex_unlock(&node.lock);
    return ctrl;
}

/* {Tag, A, B[, D]} (D omitted when TERM_NONE), built on the caller's heap. */
static int make_tell(sched_ctx_t *ctx, const char *tag, term_t a, term_t b, term_t d, term_t *msg)
{
    term_t *e;
    int rc = heap_make_tuple(sched_heap(ctx), d == TERM_NONE ? 3 : 4, &e, msg);
    if (rc < 0)
        return rc;
    e[0] = heap_atom(tag);
    e[1] = a;
    e[2] = b;
    if (d != TERM_NONE)
        e[3] = d;
    return 0;
}

/* {Tag, A, B[, D]} to a controller. */
static int tell(sched_ctx_t *ctx, term_t ctrl, const char *tag, term_t a, term_t b, term_t d)
{
    /* The controller may write for the caller (a LINK, a DEMONITOR_P):
     * after what the caller sent before. */
    cork_flush();
    term_t msg;
    int rc = make_tell(ctx, tag, a, b, d, &msg);
    return rc < 0 ? rc : sched_send(ctx, ctrl, msg);
}

/*
 * {Tag, A, B[, D]} to the controller of the connection to node_atom
 * (connecting if needed), built on the caller's heap and handed over under
 * node.lock as a copy from no process (no preemption point, so nothing the
 * caller holds moves).  Under the lock it lands in the controller's queue
 * before any '$gd_nodedown' of the connection (conn_kill_locked sends that
 * under the lock too): a monitor or spawn request told while the
 * connection is being set up is answered by noconnection if the setup
 * fails, never lost to a controller that already exited.  link_first:
 * the caller links to the controller first, under the same lock (a remote
 * link then breaks with noconnection, never with noproc).  *told: false
 * when the node cannot be reached (nothing sent).
 */
static int tell_controller_of(sched_ctx_t *ctx, term_t node_atom, const char *tag, term_t a,
                              term_t b, term_t d, bool link_first, bool *told)
{
    term_t msg;
    int rc = make_tell(ctx, tag, a, b, d, &msg);
    *told = false;
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&node.lock);
    conn_t *c = get_conn_locked(node_atom);
    if (c != NULL && term_is_pid(c->ctrl)) {
        rc = link_first ? sched_link(ctx, c->ctrl) : 0;
        if (rc == 0)
            rc = sched_send(NULL, c->ctrl, msg);
        *told = rc == 0;
    }
    pthread_mutex_unlock(&node.lock);
    return rc;
}

/* A local process links to (or unlinks from) a remote pid: it links to the
 * connection's controller, which holds the pair, tells the peer, relays
 * exits both ways and ends with noconnection when the connection does.
 * A trapping process therefore sees the controller's pid in the EXIT
 * message of a remote link (the reason is the remote one). */
static int hook_link(void *ud, sched_ctx_t *ctx, term_t to, bool unlink)
{
    (void)ud;
    heap_ident_t id;
    heap_ident(to, &id);
    if (unlink) {
        term_t ctrl = controller_for(id.node);
        return term_is_pid(ctrl) ? tell(ctx, ctrl, "$gd_out_unlink", sched_self(ctx), to, TERM_NONE)
                                 : 0;
    }
    /* The controller writes the LINK: after what the caller sent before. */
    cork_flush();
    bool told = false;
    int rc = tell_controller_of(ctx, id.node, "$gd_out_link", sched_self(ctx), to, TERM_NONE, true,
                                &told);
    if (rc < 0 || told)
        return rc;
    return sched_exit_pid(ctx, sched_self(ctx), heap_atom("noconnection"));
}

/* The process dictionary's key for the latest remote monitor a process
 * set, {Ref, Node, Target} (Target as a DEMONITOR_P names it). */
#define LAST_MONITOR_KEY "$gd_remote_monitor"

/* A local process monitors a remote pid or {Name, Node}: the controller
 * records it and turns the peer's answer (or the connection's end) into a
 * DOWN message; the caller sends the MONITOR_P itself, so it leaves on the
 * connection ahead of what the caller sends next (rpc's REG_SEND), as in
 * OTP, even while the connection is still being set up (queued with the
 * messages; a controller's own sends find no connection that is still in
 * an incoming handshake). */
static int hook_monitor(void *ud, sched_ctx_t *ctx, term_t to, term_t *ref_out)
{
    (void)ud;
    term_t name;
    term_t node_atom = target_node(to, &name);
    /* The reference is an alias of the caller used up by one message: the
     * DOWN travels through it, so once a demonitor has removed it a DOWN
     * on its way is dropped (Erlang: none arrives after demonitor). */
    int rc = sched_alias_create_opt(ctx, SCHED_ALIAS_REPLY, ref_out);
    if (rc < 0)
        return rc;
    /* The controller knows the monitor before the MONITOR_P leaves, so
     * the peer's answer finds the entry. */
    bool told = false;
    rc = tell_controller_of(ctx, node_atom, "$gd_out_monitor", sched_self(ctx), to, *ref_out, false,
                            &told);
    if (rc < 0)
        return rc;
    if (told) {
        /* Nothing collected since `to` was passed (the tell is no
         * preemption point).  Should the connection have ended meanwhile,
         * the controller answers noconnection and this goes to a new
         * connection whose controller does not know the ref: the peer's
         * answer to it is dropped there. */
        term_t target = name == TERM_NONE ? to : name;
        term_t ctl[5] = {heap_make_header(HDR_TUPLE, 4), term_make_small(DOP_MONITOR_P),
                         sched_self(ctx), target, *ref_out};
        rc = send_to_node(node_atom, term_make_boxed(ctl), TERM_NONE, SEND_CONNECT);
        /* What hook_demonitor needs to write the DEMONITOR_P itself: the
         * process's latest remote monitor (a call has one at a time). */
        term_t rec, items[3] = {*ref_out, node_atom, target};
        if (rc == 0)
            rc = heap_make_tuple_from(sched_heap(ctx), 3, items, &rec);
        return rc == 0 ? sched_dict_put(ctx, heap_atom(LAST_MONITOR_KEY), rec, NULL) : rc;
    }
    term_t *e, down;
    rc = heap_make_tuple(sched_heap(ctx), 5, &e, &down);
    if (rc < 0)
        return rc;
    e[0] = heap_atom("DOWN");
    e[1] = *ref_out;
    e[2] = heap_atom("process");
    e[3] = to;
    e[4] = heap_atom("noconnection");
    return sched_send(ctx, *ref_out, down);
}

/* A demonitor of a ref sched does not know: it may be a remote monitor of
 * any connection's controller (the one holding it acts, the rest ignore). */
static int hook_demonitor(void *ud, sched_ctx_t *ctx, term_t ref)
{
    (void)ud;
    /* Ends the monitor's alias: from now on a DOWN for it, on its way or
     * sent later by a controller that has not seen the demonitor yet, is
     * dropped when it reaches this process (OTP's demonitor/1: none
     * arrives after it returns; one the process had already taken into
     * its queue stays, as there: demonitor(Ref, [flush]) is a receive,
     * which girder_call's own flush does). */
    if (term_is_local_ref(ref))
        (void)sched_alias_remove(ctx, ref);
    /* The process's latest remote monitor (a call's): the process writes
     * the DEMONITOR_P itself, corked, so it leaves with what it sends next
     * (the next call's MONITOR_P and REG_SEND: one write for the three
     * instead of the controller's write of its own), and the controller
     * of that node only forgets its entry.  The controller is told after
     * the DEMONITOR_P is queued, so it writes nothing for this monitor
     * meanwhile but a MONITOR_P_EXIT's DOWN, which the alias drops. */
    term_t key = heap_atom(LAST_MONITOR_KEY), rec = sched_dict_get(ctx, key);
    int order = 1;
    if (term_is_tuple(rec) && term_tuple_arity(rec) == 3 &&
        heap_compare_checked(term_tuple_elems(rec)[0], ref, true, &order) == 0 && order == 0) {
        const term_t *r = term_tuple_elems(rec);
        term_t node_atom = r[1];
        term_t ctl[5] = {heap_make_header(HDR_TUPLE, 4), term_make_small(DOP_DEMONITOR_P),
                         sched_self(ctx), r[2], ref};
        int rc = send_to_node(node_atom, term_make_boxed(ctl), TERM_NONE, SEND_LIVE_CORK);
        (void)sched_dict_erase(ctx, key);
        pthread_mutex_lock(&node.lock);
        conn_t *c = find_conn_locked(node_atom);
        term_t ctrl = c != NULL ? c->ctrl : TERM_NONE;
        pthread_mutex_unlock(&node.lock);
        if (rc == 0 && term_is_pid(ctrl)) {
            /* Not tell(): its flush would send the DEMONITOR_P alone. */
            term_t msg;
            rc = make_tell(ctx, "$gd_out_forget", sched_self(ctx), ref, TERM_NONE, &msg);
            if (rc == 0)
                rc = sched_send(ctx, ctrl, msg);
        }
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&node.lock);
    for (conn_t *c = node.conns; c != NULL; c = c->next)
        cap++;
    term_t *ctrls = malloc((cap ? cap : 1) * sizeof *ctrls);
    for (conn_t *c = node.conns; c != NULL && ctrls != NULL; c = c->next)
        if (term_is_pid(c->ctrl))
            ctrls[n++] = c->ctrl;
    pthread_mutex_unlock(&node.lock);
    if (ctrls == NULL)
        return GD_ENOMEM;
    /* Each send is a preemption point where a coroutine's heap may be
     * collected: ref (boxed) must be a root to survive to the next send. */
    int rc = sched_root_push(ctx, &ref);
    if (rc != 0) {
        free(ctrls);
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = tell(ctx, ctrls[i], "$gd_out_demonitor", sched_self(ctx), ref, TERM_NONE);
        if (rc == SCHED_ENOPROC)
            rc = 0;
    }
    sched_root_pop(ctx, 1);
    free(ctrls);
    return rc;
}

term_t cluster_events_process(void)
{
    return node.events;
}

int cluster_monitor_node(sched_ctx_t *ctx, term_t node_atom, bool on)
{
    if (!term_is_atom(node_atom))
        return GD_EBADARG;
    if (node_atom == heap_node_name())
        return 0; /* this node never goes down for its own processes */
    if (!on) {
        pthread_mutex_lock(&node.lock);
        conn_t *c = find_conn_locked(node_atom);
        term_t ctrl = c != NULL ? c->ctrl : TERM_NONE;
        pthread_mutex_unlock(&node.lock);
        int rc = term_is_pid(ctrl)
                     ? tell(ctx, ctrl, "$gd_demonitor_node", sched_self(ctx), TERM_NIL, TERM_NONE)
                     : 0;
        return rc == SCHED_ENOPROC ? 0 : rc;
    }
    /* Connects, as OTP's monitor_node does.  Told under node.lock, so a
     * connection that fails to come up answers it with its nodedown; a
     * send to its controller after that would be dropped unanswered. */
    bool told = false;
    int rc = tell_controller_of(ctx, node_atom, "$gd_monitor_node", sched_self(ctx), TERM_NIL,
                                TERM_NONE, false, &told);
    if (rc < 0 || told)
        return rc;
    /* No connection can be made: down at once. */
    term_t *e, msg;
    rc = heap_make_tuple(sched_heap(ctx), 2, &e, &msg);
    if (rc < 0)
        return rc;
    e[0] = heap_atom("nodedown");
    e[1] = node_atom;
    return sched_send(ctx, sched_self(ctx), msg);
}

int cluster_spawn_request(sched_ctx_t *ctx, term_t node_atom, term_t req_id, term_t mfa,
                          term_t args)
{
    if (!term_is_atom(node_atom) || !term_is_local_ref(req_id) || !term_is_tuple(mfa) ||
        term_tuple_arity(mfa) != 3 || !(term_is_nil(args) || term_is_list(args)))
        return GD_EBADARG;
    if (node_atom == heap_node_name())
        return DIST_ENOCONNECTION;
    /* The controller knows the request before the request leaves, so its
     * answer (which the loop thread hands to the controller) and the
     * connection's end always find the entry (tell_controller_of: even
     * when the setup of the connection fails at once).  No preemption
     * point: the boxed arguments stay where they are. */
    bool told = false;
    int rc = tell_controller_of(ctx, node_atom, "$gd_out_spawn", sched_self(ctx), req_id, node_atom,
                                false, &told);
    if (rc == 0 && !told)
        return DIST_ENOCONNECTION;
    if (rc == 0) {
        term_t opts[2] = {heap_atom("monitor"), TERM_NIL}; /* [monitor] */
        term_t ctl[7] = {heap_make_header(HDR_TUPLE, 6),
                         term_make_small(DOP_SPAWN_REQUEST),
                         req_id,
                         sched_self(ctx),
                         sched_self(ctx),
                         mfa,
                         term_make_list(opts)};
        rc = send_to_node(node_atom, term_make_boxed(ctl), args, SEND_CONNECT);
    }
    return rc;
}

int cluster_spawn_abandon(sched_ctx_t *ctx, term_t node_atom, term_t req_id)
{
    pthread_mutex_lock(&node.lock);
    conn_t *c = find_conn_locked(node_atom);
    term_t ctrl = c != NULL ? c->ctrl : TERM_NONE;
    pthread_mutex_unlock(&node.lock);
    /* No controller: the connection has ended and took the entry along. */
    int rc = term_is_pid(ctrl)
                 ? tell(ctx, ctrl, "$gd_out_demonitor", sched_self(ctx), req_id, TERM_NONE)
                 : 0;
    return rc == SCHED_ENOPROC ? 0 : rc;
}

int cluster_send_control(term_t node_atom, term_t control, term_t payload)
{
    return send_to_node(node_atom, control, payload, SEND_LIVE);
}

int cluster_send_own_control(term_t node_atom, term_t control, term_t payload)
{
    return send_to_node(node_atom, control, payload, SEND_LIVE_CORK);
}

uint64_t cluster_ctrl_next(conn_t *c)
{
    return ++c->ctrl_seq;
}

void cluster_ctrl_wait(conn_t *c, uint64_t seq)
{
    if (c->in_rd_ep && sched_on_scheduler()) {
        conn_defer(c, seq);
        return;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += (long)CLUSTER_CTRL_WAIT_MS * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&node.lock);
    while (c->ctrl_acked < seq && c->state == CONN_UP && node.running)
        if (pthread_cond_timedwait(&node.cond, &node.lock, &deadline) == ETIMEDOUT) {
            cluster_log("%s: controller slow to acknowledge (%d ms)", c->peer,
                        CLUSTER_CTRL_WAIT_MS);
            break;
        }
    pthread_mutex_unlock(&node.lock);
}

void cluster_ctrl_ack(term_t node_atom, term_t ctrl, uint64_t seq)
{
    pthread_mutex_lock(&node.lock);
    conn_t *c = find_conn_locked(node_atom);
    if (c != NULL && c->ctrl == ctrl && seq > c->ctrl_acked) {
        c->ctrl_acked = seq;
        pthread_cond_broadcast(&node.cond);
    }
    pthread_mutex_unlock(&node.lock);
}

term_t cluster_conn_node(conn_t *c)
{
    return c->node;
}

term_t cluster_conn_controller(conn_t *c)
{
    return c->ctrl;
}

size_t cluster_conn_stats(cluster_conn_stats_t *out, size_t max)
{
    size_t n = 0;
    uint64_t now = now_ns();
    pthread_mutex_lock(&node.lock);
    for (conn_t *c = node.conns; c != NULL; c = c->next) {
        if (c->state != CONN_UP)
            continue;
        if (n < max)
            conn_stats_fill_locked(c, now, &out[n]);
        n++;
    }
    pthread_mutex_unlock(&node.lock);
    return n;
}

int cluster_nodes(heap_t *h, term_t *out)
{
    return cluster_nodes_of(h, CLUSTER_NODES_VISIBLE, TERM_NIL, out);
}

int cluster_nodes_of(heap_t *h, unsigned kinds, term_t tail, term_t *out)
{
    term_t list = tail;
    int rc = 0;
    pthread_mutex_lock(&node.lock);
    for (conn_t *c = node.conns; c != NULL && rc == 0; c = c->next) {
        unsigned kind = (c->flags & DFLAG_PUBLISHED) ? CLUSTER_NODES_VISIBLE : CLUSTER_NODES_HIDDEN;
        if (c->state == CONN_UP && (kinds & kind))
            rc = heap_cons(h, c->node, list, &list);
    }
    pthread_mutex_unlock(&node.lock);
    *out = list;
    return rc;
}

/* ---- start and stop ---- */

/*
 * The loop thread.  After reading from a connection it polls without
 * blocking for LOOP_SPIN_NS (yielding the CPU between polls) before it
 * blocks in epoll again: under steady traffic the next frame then finds
 * it awake instead of costing a wake-up (dist_pingpong_100: ~1.7x the
 * rate with 20 us, 3 interleaved rounds on the loaded 2-core box).  100 us
 * made the 1-pair ping-pong slower (25%): with a reply every ~50 us the
 * spinning threads of both nodes competed for the two cores.  (A lone
 * round trip is now read by the spinning scheduler instead: idle_poll.)
 */
static void *loop_main(void *arg)
{
    (void)arg;
    (void)pthread_setname_np(pthread_self(), "gd-io");
    while (!atomic_load_explicit(&node.loop_stop, memory_order_acquire)) {
        uint64_t last = atomic_load_explicit(&node.loop_read_ns, memory_order_relaxed);
        bool spin = now_ns() - last < LOOP_SPIN_NS;
        event_base_loop(node.base, EVLOOP_ONCE | (spin ? EVLOOP_NONBLOCK : 0));
        if (spin && atomic_load_explicit(&node.loop_read_ns, memory_order_relaxed) == last)
            sched_yield();
    }
    return NULL;
}

static void keeper_changed(void *ud, int err, uint32_t creation)
{
    (void)ud;
    pthread_mutex_lock(&node.lock);
    if (err == 0) {
        node.epmd_registrations++;
        node.epmd_registered_now = true;
    } else {
        node.epmd_registered_now = false;
    }
    if (err == 0 && !node.registered) {
        node.registered = true;
        node.creation = creation;
    } else if (err != 0) {
        node.register_err = err;
        if (node.registered)
            cluster_log("EPMD registration lost (%s); retrying", epmd_strerror(err));
    }
    pthread_cond_broadcast(&node.cond);
    pthread_mutex_unlock(&node.lock);
}

/* The host part for -sname (short) or -name (fully qualified). */
static int host_name(bool longnames, char *out, size_t size)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        return GD_EINVAL;
    host[sizeof host - 1] = 0;
    if (!longnames) {
        char *dot = strchr(host, '.');
        if (dot != NULL)
            *dot = 0;
        snprintf(out, size, "%s", host);
        return 0;
    }
    if (strchr(host, '.') == NULL) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_flags = AI_CANONNAME;
        if (getaddrinfo(host, NULL, &hints, &res) == 0 && res != NULL && res->ai_canonname &&
            strchr(res->ai_canonname, '.') != NULL)
            snprintf(host, sizeof host, "%s", res->ai_canonname);
        if (res != NULL)
            freeaddrinfo(res);
    }
    if (strchr(host, '.') == NULL) {
        cluster_log("cannot set a long node name: the host name '%s' is not fully qualified "
                    "(use -name name@host.domain or -sname)",
                    host);
        return GD_EINVAL;
    }
    snprintf(out, size, "%s", host);
    return 0;
}

static int listen_on(void)
{
    uint16_t lo = node.cfg.listen_min, hi = node.cfg.listen_max ? node.cfg.listen_max : lo;
    if (hi < lo)
        hi = lo;
    for (uint32_t p = lo;; p++) {
        struct sockaddr_in sin = {0};
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)p);
        node.listener = evconnlistener_new_bind(node.base, accept_cb, NULL,
                                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                    LEV_OPT_THREADSAFE | LEV_OPT_DISABLED,
                                                128, (struct sockaddr *)&sin, sizeof sin);
        if (node.listener != NULL)
            break;
        if (p >= hi) {
            cluster_log("cannot listen for distribution on ports %u-%u", lo, hi);
            return GD_ESYSTEM_LIMIT;
        }
    }
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (getsockname(evconnlistener_get_fd(node.listener), (struct sockaddr *)&bound, &blen) != 0)
        return GD_ESYSTEM_LIMIT;
    node.port = ntohs(bound.sin_port);
    return 0;
}

int cluster_start(const cluster_config_t *cfg)
{
    if (node.running || cfg->name == NULL || cfg->cookie == NULL ||
        cfg->read_batch_us > CLUSTER_READ_BATCH_MAX_US)
        return GD_EINVAL;
    node.cfg = *cfg;
    if (node.cfg.ticktime_s == 0)
        node.cfg.ticktime_s = CLUSTER_TICKTIME_DEFAULT;
    if (node.cfg.setuptime_s == 0)
        node.cfg.setuptime_s = CLUSTER_SETUPTIME_DEFAULT;
    if (node.cfg.epmd_port == 0)
        node.cfg.epmd_port = epmd_default_port();
    if (node.cfg.dist_buf_busy_limit == 0)
        node.cfg.dist_buf_busy_limit = CLUSTER_DIST_BUF_BUSY_LIMIT_DEFAULT;
    atomic_store(&node.busy_conns, 0); /* cluster_stop frees busy connections as they are */
    node.cookie = strdup(cfg->cookie);
    if (node.cookie == NULL)
        return GD_ENOMEM;
    node.cookie_len = strlen(node.cookie);

    /* The full name: "name@host" as given, or with this host's name. */
    int rc;
    if (strchr(cfg->name, '@') != NULL) {
        snprintf(node.name, sizeof node.name, "%s", cfg->name);
    } else {
        char host[256];
        rc = host_name(cfg->longnames, host, sizeof host);
        if (rc < 0)
            goto fail;
        snprintf(node.name, sizeof node.name, "%s@%s", cfg->name, host);
    }
    node.name_len = strlen(node.name);
    if (!dist_name_valid(node.name, node.name_len)) {
        cluster_log("invalid node name '%s'", node.name);
        rc = GD_EINVAL;
        goto fail;
    }

    if (evthread_use_pthreads() != 0 || (node.base = event_base_new()) == NULL) {
        rc = GD_ENOMEM;
        goto fail;
    }
    rc = listen_on();
    if (rc == 0)
        rc = readers_start();
    if (rc < 0)
        goto fail;

    epmd_keeper_config_t kc = {0};
    size_t alive_len = (size_t)(strchr(node.name, '@') - node.name);
    memcpy(kc.node.name, node.name, alive_len);
    kc.node.name[alive_len] = 0;
    kc.node.port = node.port;
    kc.node.node_type = cfg->hidden ? EPMD_NODE_HIDDEN : EPMD_NODE_NORMAL;
    kc.node.protocol = EPMD_PROTO_TCP_IPV4;
    kc.node.high_vsn = 6;
    kc.node.low_vsn = 5;
    kc.epmd_port = node.cfg.epmd_port;
    kc.embedded_fallback = true;
    kc.on_change = keeper_changed;
    rc = epmd_keeper_start(node.base, &kc, &node.keeper);
    if (rc != 0) {
        cluster_log("EPMD registration failed: %s", epmd_strerror(rc));
        rc = GD_ESYSTEM_LIMIT;
        goto fail;
    }
    atomic_store_explicit(&node.loop_stop, false, memory_order_relaxed);
    if (pthread_create(&node.loop_thread, NULL, loop_main, NULL) != 0) {
        rc = GD_ESYSTEM_LIMIT;
        goto fail;
    }
    node.loop_started = true;

    /* Wait for the creation: the node's identity needs it. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&node.lock);
    while (!node.registered &&
           pthread_cond_timedwait(&node.cond, &node.lock, &deadline) != ETIMEDOUT) {
    }
    bool ok = node.registered;
    int err = node.register_err;
    pthread_mutex_unlock(&node.lock);
    if (!ok) {
        cluster_log("could not register '%s' with EPMD on port %u: %s", kc.node.name,
                    node.cfg.epmd_port, err ? epmd_strerror(err) : "timed out");
        rc = GD_ESYSTEM_LIMIT;
        goto fail;
    }
    term_t self;
    rc = heap_atom_put(node.name, node.name_len, &self);
    if (rc == 0)
        rc = heap_node_identity_set(self, node.creation);
    if (rc < 0)
        goto fail;
    /* With read batching the schedulers' work comes in batches read_batch_us
     * apart: spinning with sched_yield between them only burned the CPU
     * the batching saves (~80k yields/s on the bench node). */
    sched_opts_t so = {.schedulers = cfg->schedulers, .no_yield_spin = cfg->read_batch_us != 0};
    rc = sched_start(&so);
    if (rc < 0)
        goto fail;
    node.hooks = (sched_dist_hooks_t){.send = hook_send,
                                      .sent = hook_sent,
                                      .exit = hook_exit,
                                      .link = hook_link,
                                      .monitor = hook_monitor,
                                      .demonitor = hook_demonitor,
                                      .run_end = hook_run_end};
    sched_set_dist_hooks(&node.hooks);
    /* (sched_start cleared it.)  Not with read batching, where the loop
     * thread reads alone. */
    if (node.cfg.read_batch_us == 0)
        sched_set_idle_poller(&idle_poller);
    node.running = true;
    rc = cluster_services_start(&node.events);
    if (rc == 0 && cfg->start_services != NULL)
        rc = cfg->start_services();
    if (rc < 0) {
        cluster_stop();
        return rc;
    }
    if (evconnlistener_enable(node.listener) != 0) {
        cluster_stop();
        return GD_ESYSTEM_LIMIT;
    }
    cluster_log("node %s up: distribution port %u%s, creation %u%s%s", node.name, node.port,
                cfg->tls != NULL ? " (TLS)" : "", node.creation, cfg->hidden ? ", hidden" : "",
                epmd_keeper_embedded(node.keeper) ? ", embedded EPMD" : "");
    return 0;
fail:
    node.running = true;
    cluster_stop();
    return rc;
}

void cluster_stop(void)
{
    if (!node.running)
        return;
    /* The loop thread first: it hands frames and nodedowns to processes
     * (sched_send), so it must be gone before sched_stop frees them (TSan
     * saw a connection's '$gd_nodedown' sent to a controller while the
     * scheduler was being torn down).  Then processes (no more sends),
     * then connections, then EPMD.  Sends made meanwhile only queue on
     * the bufferevents, which are freed below. */
    if (node.loop_started) {
        atomic_store_explicit(&node.loop_stop, true, memory_order_release);
        event_base_loopbreak(node.base);
        pthread_join(node.loop_thread, NULL);
        node.loop_started = false;
    }
    readers_close();
    sched_stop();
    cluster_global_clear();
    sched_set_dist_hooks(NULL);
    pthread_mutex_lock(&node.lock);
    node.running = false;
    while (node.connect_threads > 0)
        pthread_cond_wait(&node.cond, &node.lock);
    pthread_mutex_unlock(&node.lock);
    unsigned n = 0;
    while (node.conns != NULL) {
        conn_t *c = node.conns;
        node.conns = c->next;
        if (c->state == CONN_UP)
            n++;
        conn_free(c);
    }
    /* Deferred releases still queued on the loop. */
    if (node.base != NULL)
        event_base_loop(node.base, EVLOOP_NONBLOCK);
    readers_free();
    if (node.listener != NULL)
        evconnlistener_free(node.listener);
    node.listener = NULL;
    epmd_keeper_stop(node.keeper);
    node.keeper = NULL;
    if (node.base != NULL)
        event_base_free(node.base);
    node.base = NULL;
    free(node.cookie);
    node.cookie = NULL;
    if (node.registered)
        cluster_log("node %s stopped (%u connection%s closed, EPMD name released)", node.name, n,
                    n == 1 ? "" : "s");
    node.registered = false;
    node.epmd_registered_now = false;
}

/* ---- statistics ---- */

struct event_base *cluster_event_base(void)
{
    return node.running ? node.base : NULL;
}

bool cluster_stats(cluster_stats_t *out, cluster_conn_fn each, void *ud)
{
    memset(out, 0, sizeof *out);
    if (!node.running || !pthread_equal(pthread_self(), node.loop_thread))
        return false;
    pthread_mutex_lock(&node.lock);
    out->total = node.retired;
    uint64_t now = now_ns();
    for (const conn_t *c = node.conns; c != NULL; c = c->next) {
        cluster_conn_stats_t cs;
        conn_stats_fill_locked(c, now, &cs);
        out->connections++;
        traffic_add(&out->total, &cs.traffic);
        if (each != NULL && c->state == CONN_UP)
            each(&cs, ud);
    }
    out->epmd_registered = node.epmd_registered_now;
    out->epmd_registrations = node.epmd_registrations;
    pthread_mutex_unlock(&node.lock);
    /* The keeper and an embedded EPMD live on this (the loop) thread. */
    epmd_server_t *srv = node.keeper != NULL ? epmd_keeper_embedded(node.keeper) : NULL;
    if (srv != NULL) {
        epmd_server_stats_t es;
        epmd_server_get_stats(srv, &es);
        out->epmd_embedded = true;
        out->epmd_embedded_names = es.registered;
    }
    return true;
}
