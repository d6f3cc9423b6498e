/*
 * server.c — everything in epmd/ that runs inside a libevent loop: the
 * server (listeners, connections, timeouts, eviction, deferred close) and
 * the keeper that holds a node's registration open and re-registers it.
 * The only file of epmd/ that includes <event2/...>; the protocol itself is
 * in proto.c and registry.c.
 *
 * Connections are never freed inside their own callbacks: closing one
 * unregisters its node, closes its descriptor and queues it for the reaper
 * event, which recycles it at a safe point of the loop.
 *
 * The lookup path is short because a PORT_PLEASE2 connection lives for
 * one request: the request usually arrives with the handshake, so the
 * accept callback reads it at once and answers and closes without ever
 * registering the descriptor with the event loop (accept4, recv, send,
 * close: four system calls).  A connection whose bytes are not there yet
 * gets a read event and the normal path.  Connection structures (with
 * their read event and small input and output buffers inline) are kept on
 * a bounded free list, so a lookup allocates nothing.
 *
 * The debug delays (-delay_accept, -delay_write) are timers, never sleeps:
 * the loop may be a node's, and the server shares it with the node's own
 * work and its keeper.
 */
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Accepts per listener wake-up, so one busy listener cannot starve reads. */
#define ACCEPT_BATCH 64
/* Pause of the listeners after accept() failed for lack of descriptors. */
#define ACCEPT_PAUSE_MS 100
/* Descriptors kept free for the embedding program when sizing the cap. */
#define FD_RESERVE 64
/* How often idle connections are looked at (at most). */
#define SWEEP_MAX_MS 250
#define LISTEN_BACKLOG 1024
#define LOG_LINE_MAX 512
#define KEEPER_DEFAULT_TIMEOUT_MS 2000
#define KEEPER_DEFAULT_RETRY_MS 200
/* Requests up to this size (every PORT_PLEASE2 of a normal name) are read
 * into the connection itself, without a heap buffer. */
#define SMALL_REQUEST 64
/* Answers up to this size (every PORT2_RESP with a short extra, ALIVE2
 * answers, KILL and STOP) are built in the connection itself. */
#define SMALL_ANSWER 128
/* Recycled connection structures kept for reuse; the rest are freed. */
#define FREE_CONN_MAX 256

typedef struct conn conn_t;

typedef struct conn_list {
    conn_t *head;
    conn_t *tail;
    unsigned count;
} conn_list_t;

struct conn {
    epmd_server_t *srv;
    int fd;
    struct event *ev_read;
    struct event *ev_write;
    struct event *ev_delay; /* delay_write_s: the answer's timer */
    conn_t *prev;           /* in srv->idle (request connections, by last
                               activity), srv->alive (registrations) or
                               srv->delayed (answers waiting for delay_write_s) */
    conn_t *next;
    conn_list_t *list;
    conn_t *reap_next;
    bool local;
    bool keep;
    bool closing;
    bool kill_after_write;
    epmd_node_t *node;
    uint64_t last_ms;
    uint8_t *in; /* small[] or a heap buffer of EPMD_INBUF_SIZE */
    uint8_t small[SMALL_REQUEST];
    size_t got;
    size_t want;
    epmd_buf_t out; /* starts over small_out */
    size_t out_off;
    uint8_t small_out[SMALL_ANSWER];
    conn_t *free_next; /* in srv->free_conns */
    /* The read event lives here (event_get_struct_event_size() bytes), so
     * a recycled connection needs no allocation at all. */
    _Alignas(max_align_t) unsigned char ev_read_space[];
};

struct epmd_server {
    struct event_base *base;
    epmd_server_config_t cfg;
    uint16_t port;
    epmd_registry_t *reg;
    int listen_fd[EPMD_MAX_LISTEN_SOCKETS];
    struct event *ev_listen[EPMD_MAX_LISTEN_SOCKETS];
    int nlisten;
    int reserve_fd; /* spare descriptor released when accept() hits EMFILE */
    struct event *ev_resume;
    struct event *ev_sweep;
    struct event *ev_reap;
    struct event *ev_kill;
    struct event *ev_accept_delay; /* delay_accept_s: the pending accept's timer */
    conn_list_t idle;
    conn_list_t alive;
    conn_list_t delayed; /* answered, waiting out delay_write_s: no timeout */
    conn_t *reap;
    conn_t *free_conns;
    unsigned nfree;
    size_t conn_size; /* sizeof(conn_t) + the size of struct event */
    unsigned max_conn;
    uint64_t timeout_ms;
    bool paused;
    bool accept_delayed; /* listeners off until ev_accept_delay fires */
    bool killed;
    epmd_server_stats_t stats;
};

static void slog(const epmd_server_t *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void slog(const epmd_server_t *srv, int level, const char *fmt, ...)
{
    if (srv->cfg.log_fn == NULL || srv->cfg.debug < level)
        return;
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->cfg.log_fn(srv->cfg.ud, line);
}

static uint64_t now_ms(struct event_base *base)
{
    struct timeval tv;
    if (event_base_gettimeofday_cached(base, &tv) != 0)
        gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static void list_add(conn_list_t *l, conn_t *c)
{
    c->list = l;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
}

static void list_del(conn_t *c)
{
    conn_list_t *l = c->list;
    if (l == NULL)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
    l->count--;
}

/* touch records activity: the connection moves to the young end. */
static void touch(conn_t *c)
{
    c->last_ms = now_ms(c->srv->base);
    if (c->list == &c->srv->idle && c->srv->idle.tail != c) {
        list_del(c);
        list_add(&c->srv->idle, c);
    }
}

/* conn_close unregisters the connection's node, closes the descriptor and
 * queues the memory for the reaper: safe inside the connection's own
 * callbacks. */
static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    epmd_server_t *srv = c->srv;
    c->closing = true;
    if (c->node != NULL) {
        slog(srv, 1, "unregistering node on fd %d", c->fd);
        epmd_registry_unregister(srv->reg, c->node);
        c->node = NULL;
    }
    event_del(c->ev_read);
    if (c->ev_write)
        event_del(c->ev_write);
    if (c->ev_delay)
        event_del(c->ev_delay);
    list_del(c);
    close(c->fd);
    c->fd = -1;
    c->reap_next = srv->reap;
    srv->reap = c;
    event_active(srv->ev_reap, 0, 0);
}

static void release_input(conn_t *c)
{
    if (c->in != c->small)
        free(c->in);
    c->in = NULL;
}

/* conn_recycle releases what a closed connection holds beyond its own
 * structure and puts the structure on the free list (or frees it when the
 * list is full).  Its read event is not pending: conn_close deleted it. */
static void conn_recycle(epmd_server_t *srv, conn_t *c)
{
    if (c->ev_write) {
        event_free(c->ev_write);
        c->ev_write = NULL;
    }
    if (c->ev_delay) {
        event_free(c->ev_delay);
        c->ev_delay = NULL;
    }
    release_input(c);
    epmd_buf_free(&c->out);
    if (srv->nfree >= FREE_CONN_MAX) {
        free(c);
        return;
    }
    c->free_next = srv->free_conns;
    srv->free_conns = c;
    srv->nfree++;
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    conn_t *c = srv->reap;
    srv->reap = NULL;
    while (c) {
        conn_t *next = c->reap_next;
        conn_recycle(srv, c);
        c = next;
    }
}

/* close_all closes every connection (unregistering every node). */
static void close_all(epmd_server_t *srv)
{
    while (srv->idle.head)
        conn_close(srv->idle.head);
    while (srv->alive.head)
        conn_close(srv->alive.head);
    while (srv->delayed.head)
        conn_close(srv->delayed.head);
}

static void kill_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    if (srv->cfg.on_kill != NULL) {
        srv->cfg.on_kill(srv->cfg.kill_ud); /* may free srv: touch nothing after */
        return;
    }
    /* No owner hook: stop serving; epmd_server_stop frees later. */
    for (int i = 0; i < srv->nlisten; i++) {
        event_del(srv->ev_listen[i]);
        close(srv->listen_fd[i]);
        srv->listen_fd[i] = -1;
    }
    close_all(srv);
    event_del(srv->ev_sweep);
    event_del(srv->ev_resume);
    event_del(srv->ev_accept_delay);
}

static void write_cb(evutil_socket_t fd, short what, void *arg);

/* flush writes what is pending; returns false when the connection closed. */
static bool flush(conn_t *c)
{
    /* An answer that ends the connection is sent with MSG_MORE: the bytes
     * wait in the socket until close(), which sends them with the FIN in
     * one segment.  The client sees the same bytes and the same orderly
     * end of stream, and one packet fewer crosses the loopback per lookup
     * (with its wake-up of the client and its ACK).  A registration's
     * answer must go out at once: the node waits for it. */
    int flags = MSG_NOSIGNAL | (c->keep ? 0 : MSG_MORE);
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, flags);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->ev_write == NULL)
                c->ev_write = event_new(c->srv->base, c->fd, EV_WRITE | EV_PERSIST, write_cb, c);
            if (c->ev_write == NULL || event_add(c->ev_write, NULL) != 0) {
                conn_close(c);
                return false;
            }
            touch(c);
            return true;
        }
        slog(c->srv, 1, "write error on fd %d: %s", c->fd, strerror(errno));
        conn_close(c);
        return false;
    }
    if (c->ev_write)
        event_del(c->ev_write);
    epmd_buf_free(&c->out);
    c->out_off = 0;
    if (c->keep)
        return true;
    /* One request per connection: done. */
    bool kill = c->kill_after_write;
    conn_close(c);
    if (kill && !c->srv->killed) {
        c->srv->killed = true;
        event_active(c->srv->ev_kill, 0, 0);
    }
    return false;
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    if (!c->closing)
        (void)flush(c);
}

/* write_delay_cb sends an answer held back by delay_write_s. */
static void write_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    if (c->closing)
        return;
    if (c->list == &c->srv->delayed) {
        list_del(c);
        list_add(&c->srv->idle, c);
    }
    touch(c);
    (void)flush(c);
}

/* delay_answer holds c's answer back for delay_write_s seconds; false when
 * the timer could not be set up (the connection is then closed).  A request
 * connection waits on the delayed list, out of reach of the packet timeout
 * and of eviction, as OTP's epmd, asleep in its write, times nothing out;
 * a registration stays on the alive list and a close still unregisters. */
static bool delay_answer(conn_t *c)
{
    epmd_server_t *srv = c->srv;
    if (c->ev_delay == NULL)
        c->ev_delay = evtimer_new(srv->base, write_delay_cb, c);
    struct timeval tv = {(time_t)srv->cfg.delay_write_s, 0};
    if (c->ev_delay == NULL || evtimer_add(c->ev_delay, &tv) != 0) {
        conn_close(c);
        return false;
    }
    if (!c->keep) {
        list_del(c);
        list_add(&srv->delayed, c);
    }
    slog(srv, 1, "delaying the answer on fd %d by %u s", c->fd, srv->cfg.delay_write_s);
    return true;
}

static void handle_request(conn_t *c, const uint8_t *body, size_t len)
{
    epmd_server_t *srv = c->srv;
    srv->stats.requests++;
    event_del(c->ev_read); /* one request per connection */
    epmd_core_ctx_t ctx = {
        .reg = srv->reg,
        .epmd_port = srv->port,
        .relaxed = srv->cfg.relaxed_command_check,
        .local_peer = c->local,
        .owner = c,
        .fd = c->fd,
        .now = (uint32_t)time(NULL),
    };
    epmd_outcome_t res;
    if (epmd_core_handle(&ctx, body, len, &c->out, &res) != 0) {
        slog(srv, 0, "out of memory answering fd %d", c->fd);
        conn_close(c);
        return;
    }
    slog(srv, 1, "request '%c' (%zu bytes) on fd %d: %zu answer bytes",
         body[0] >= 32 && body[0] < 127 ? body[0] : '?', len, c->fd, c->out.len);
    if (res.stop_owner != NULL) {
        conn_t *victim = res.stop_owner;
        victim->node = NULL; /* already unregistered by STOP */
        conn_close(victim);
    }
    if (res.action == EPMD_ACT_KEEP) {
        c->keep = true;
        c->node = res.node;
        list_del(c);
        list_add(&srv->alive, c);
        release_input(c);
        c->got = c->want = 0;
        event_add(c->ev_read, NULL); /* any byte or EOF now unregisters */
    } else if (res.action == EPMD_ACT_KILL) {
        c->kill_after_write = true;
    }
    if (srv->cfg.delay_write_s > 0 && c->out.len > 0) {
        (void)delay_answer(c);
        return;
    }
    (void)flush(c);
}

/* conn_input reads what the connection has sent and acts on it; false
 * while the request is still incomplete (the caller must keep or start
 * waiting for more bytes), true when the connection was handled or closed
 * or is a registration, whose read event handle_request armed. */
static bool conn_input(conn_t *c)
{
    uint8_t buf[EPMD_INBUF_SIZE];
    if (c->keep) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return true;
        slog(c->srv, 1,
             n > 0 ? "got more than expected on ALIVE socket %d" : "ALIVE socket %d closed", c->fd);
        conn_close(c);
        return true;
    }
    /* Read as OTP does: everything that fits while the length is unknown,
     * then exactly the rest of the announced request. */
    size_t room = c->want ? c->want - c->got : (EPMD_INBUF_SIZE - 1) - c->got;
    ssize_t n = recv(c->fd, buf, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    if (n <= 0) {
        slog(c->srv, 1, "partial request on fd %d (%zu bytes)", c->fd, c->got);
        conn_close(c);
        return true;
    }
    if (c->in == NULL)
        c->in = c->small;
    if (c->in == c->small && c->got + (size_t)n > sizeof c->small) {
        uint8_t *big = malloc(EPMD_INBUF_SIZE);
        if (big == NULL) {
            conn_close(c);
            return true;
        }
        memcpy(big, c->small, c->got);
        c->in = big;
    }
    memcpy(c->in + c->got, buf, (size_t)n);
    c->got += (size_t)n;
    size_t body_len = 0;
    int st = epmd_frame_check(c->in, c->got, &c->want, &body_len);
    if (st == EPMD_EPROTO) {
        slog(c->srv, 1, "invalid request framing on fd %d", c->fd);
        conn_close(c);
        return true;
    }
    touch(c);
    if (st != EPMD_FRAME_COMPLETE)
        return false;
    handle_request(c, c->in + 2, body_len);
    return true;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    if (!c->closing)
        (void)conn_input(c);
}

/* evict_one closes the request connection idle the longest; false when
 * every connection is a registration. */
static bool evict_one(epmd_server_t *srv)
{
    conn_t *victim = srv->idle.head;
    if (victim == NULL)
        return false;
    slog(srv, 1, "connection limit: evicting idle fd %d", victim->fd);
    srv->stats.evicted++;
    conn_close(victim);
    return true;
}

/* conn_get takes a structure from the free list or allocates one, zeroed
 * up to its event storage; NULL when out of memory. */
static conn_t *conn_get(epmd_server_t *srv)
{
    conn_t *c = srv->free_conns;
    if (c != NULL) {
        srv->free_conns = c->free_next;
        srv->nfree--;
    } else {
        c = malloc(srv->conn_size);
        if (c == NULL)
            return NULL;
    }
    memset(c, 0, offsetof(conn_t, ev_read_space));
    return c;
}

/* conn_open serves a freshly accepted descriptor: its request is read at
 * once (it usually came with the handshake) and, when complete, answered
 * before this returns; otherwise the connection waits for a read event.
 * peer is the address accept4 reported. */
static void conn_open(epmd_server_t *srv, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    if (srv->idle.count + srv->alive.count + srv->delayed.count >= srv->max_conn &&
        !evict_one(srv)) {
        slog(srv, 0, "connection limit %u reached by registrations", srv->max_conn);
        close(fd);
        return;
    }
    conn_t *c = conn_get(srv);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->ev_read = (struct event *)c->ev_read_space;
    if (event_assign(c->ev_read, srv->base, fd, EV_READ | EV_PERSIST, read_cb, c) != 0) {
        conn_recycle(srv, c);
        close(fd);
        return;
    }
    epmd_buf_init_borrowed(&c->out, c->small_out, sizeof c->small_out);
    /* A loopback peer is local whatever our own address is; only other
     * peers need our end of the socket to compare with. */
    c->local = peer_len > 0 && epmd_addr_is_local(peer, NULL);
    if (!c->local) {
        struct sockaddr_storage self;
        socklen_t sl = sizeof self;
        c->local = peer_len > 0 && getsockname(fd, (struct sockaddr *)&self, &sl) == 0 &&
                   epmd_addr_is_local(peer, (struct sockaddr *)&self);
    }
    c->last_ms = now_ms(srv->base);
    list_add(&srv->idle, c);
    srv->stats.accepted++;
    slog(srv, 2, "%s peer connected on fd %d", c->local ? "local" : "non-local", fd);
    uint64_t before = srv->stats.requests;
    bool handled = conn_input(c);
    if (srv->stats.requests != before)
        srv->stats.answered_at_accept++;
    if (handled)
        return;
    if (event_add(c->ev_read, NULL) != 0)
        conn_close(c);
}

static void listeners_on(epmd_server_t *srv)
{
    for (int i = 0; i < srv->nlisten; i++)
        if (srv->listen_fd[i] >= 0)
            event_add(srv->ev_listen[i], NULL);
}

static void listeners_off(epmd_server_t *srv)
{
    for (int i = 0; i < srv->nlisten; i++)
        event_del(srv->ev_listen[i]);
}

static void pause_listeners(epmd_server_t *srv)
{
    if (srv->paused)
        return;
    srv->paused = true;
    listeners_off(srv);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    event_add(srv->ev_resume, &tv);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    srv->paused = false;
    if (srv->reserve_fd < 0)
        srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!srv->accept_delayed)
        listeners_on(srv);
}

/* accept_some accepts and serves up to max pending connections of the
 * listener lfd (at most ACCEPT_BATCH attempts); returns how many it took. */
static unsigned accept_some(epmd_server_t *srv, int lfd, unsigned max)
{
    unsigned taken = 0;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(srv, fd, (struct sockaddr *)&peer, pl <= sizeof peer ? pl : 0);
            if (++taken >= max)
                return taken;
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return taken;
        srv->stats.accept_errors++;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors: closing the request connection idle the
             * longest frees one, so try again at once. */
            if (evict_one(srv))
                continue;
            /* Only registrations hold descriptors: take the pending client
             * with the spare descriptor and close it, so the listener does
             * not stay readable and spin, then pause briefly. */
            slog(srv, 0, "accept: %s", strerror(errno));
            if (srv->reserve_fd >= 0) {
                close(srv->reserve_fd);
                srv->reserve_fd = -1;
                int drop = accept(lfd, NULL, NULL);
                if (drop >= 0)
                    close(drop);
            }
        } else {
            slog(srv, 0, "accept failed: %s", strerror(errno));
        }
        pause_listeners(srv);
        return taken;
    }
    return taken;
}

/* accept_delay_cb ends a delay_accept_s wait: one pending connection is
 * accepted (from the first listener that has one), then the listeners
 * watch again, so the next pending connection waits a delay of its own. */
static void accept_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    srv->accept_delayed = false;
    for (int i = 0; i < srv->nlisten && !srv->paused; i++)
        if (srv->listen_fd[i] >= 0 && accept_some(srv, srv->listen_fd[i], 1) > 0)
            break;
    if (!srv->paused && !srv->killed)
        listeners_on(srv);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    if (srv->cfg.delay_accept_s == 0) {
        (void)accept_some(srv, lfd, ACCEPT_BATCH);
        return;
    }
    if (srv->accept_delayed)
        return;
    struct timeval tv = {(time_t)srv->cfg.delay_accept_s, 0};
    if (evtimer_add(srv->ev_accept_delay, &tv) != 0) {
        (void)accept_some(srv, lfd, 1); /* no timer: do not stall the listener */
        return;
    }
    srv->accept_delayed = true;
    listeners_off(srv);
    slog(srv, 1, "delaying the next accept by %u s", srv->cfg.delay_accept_s);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_server_t *srv = arg;
    uint64_t now = now_ms(srv->base);
    while (srv->idle.head && now - srv->idle.head->last_ms > srv->timeout_ms) {
        slog(srv, 1, "closing fd %d: timed out on receive", srv->idle.head->fd);
        srv->stats.timed_out++;
        conn_close(srv->idle.head);
    }
}

/* add_listener binds one listening socket; returns 0 or an EPMD_E* code. */
static int add_listener(epmd_server_t *srv, const struct sockaddr *sa, socklen_t salen)
{
    if (srv->nlisten >= EPMD_MAX_LISTEN_SOCKETS)
        return EPMD_EINVAL;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return EPMD_ESYS;
    int one = 1;
    int rc = EPMD_ESYS;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto close_fd;
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto close_fd;
    if (bind(fd, sa, salen) != 0) {
        rc = errno == EADDRINUSE ? EPMD_EADDRINUSE : EPMD_ESYS;
        goto close_fd;
    }
    if (listen(fd, LISTEN_BACKLOG) != 0)
        goto close_fd;
    struct event *ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, accept_cb, srv);
    if (ev == NULL) {
        rc = EPMD_ENOMEM;
        goto close_fd;
    }
    if (event_add(ev, NULL) != 0) {
        event_free(ev);
        goto close_fd;
    }
    srv->listen_fd[srv->nlisten] = fd;
    srv->ev_listen[srv->nlisten] = ev;
    srv->nlisten++;
    return 0;
close_fd:
    close(fd);
    return rc;
}

static int listen_v4(epmd_server_t *srv, uint32_t addr_be)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(srv->port)};
    sin.sin_addr.s_addr = addr_be;
    return add_listener(srv, (struct sockaddr *)&sin, sizeof sin);
}

static int listen_v6(epmd_server_t *srv, const struct in6_addr *addr)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(srv->port)};
    sin6.sin6_addr = *addr;
    return add_listener(srv, (struct sockaddr *)&sin6, sizeof sin6);
}

/* open_listeners follows OTP: without -address, any IPv4 and any IPv6;
 * with a list, loopback plus each listed address.  IPv6 wildcard and
 * loopback failures are tolerated (hosts without IPv6). */
static int open_listeners(epmd_server_t *srv)
{
    const char *list = srv->cfg.addresses;
    if (list == NULL || list[strspn(list, " ,")] == '\0') {
        int rc = listen_v4(srv, htonl(INADDR_ANY));
        if (rc != 0)
            return rc;
        if (listen_v6(srv, &in6addr_any) != 0)
            slog(srv, 1, "no IPv6 wildcard listener");
        return 0;
    }
    int rc = listen_v4(srv, htonl(INADDR_LOOPBACK));
    if (rc != 0)
        return rc;
    if (listen_v6(srv, &in6addr_loopback) != 0)
        slog(srv, 1, "no IPv6 loopback listener");
    char *copy = strdup(list);
    if (copy == NULL)
        return EPMD_ENOMEM;
    char *save = NULL;
    rc = 0;
    for (char *tok = strtok_r(copy, ", ", &save); tok && rc == 0;
         tok = strtok_r(NULL, ", ", &save)) {
        struct in_addr a4;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tok, &a6) == 1) {
            if (!IN6_IS_ADDR_LOOPBACK(&a6))
                rc = listen_v6(srv, &a6);
        } else if (inet_pton(AF_INET, tok, &a4) == 1) {
            if (a4.s_addr != htonl(INADDR_LOOPBACK))
                rc = listen_v4(srv, a4.s_addr);
        } else {
            slog(srv, 0, "cannot parse IP address \"%s\"", tok);
            rc = EPMD_EINVAL;
        }
    }
    free(copy);
    return rc;
}

static unsigned default_max_conn(void)
{
    unsigned cap = EPMD_DEFAULT_MAX_CONNECTIONS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        if (rl.rlim_cur <= 2 * FD_RESERVE)
            cap = (unsigned)(rl.rlim_cur / 2);
        else if (rl.rlim_cur - FD_RESERVE < cap)
            cap = (unsigned)(rl.rlim_cur - FD_RESERVE);
    }
    return cap ? cap : 1;
}

int epmd_server_start(struct event_base *base, const epmd_server_config_t *cfg, epmd_server_t **out)
{
    *out = NULL;
    if (base == NULL || cfg == NULL)
        return EPMD_EINVAL;
    epmd_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return EPMD_ENOMEM;
    int rc = EPMD_ENOMEM;
    srv->base = base;
    srv->cfg = *cfg;
    srv->port = cfg->port ? cfg->port : epmd_default_port();
    srv->reserve_fd = -1;
    srv->conn_size = sizeof(conn_t) + event_get_struct_event_size();
    for (int i = 0; i < EPMD_MAX_LISTEN_SOCKETS; i++)
        srv->listen_fd[i] = -1;
    srv->max_conn = cfg->max_connections ? cfg->max_connections : default_max_conn();
    srv->timeout_ms =
        1000ull * (cfg->packet_timeout_s ? cfg->packet_timeout_s : EPMD_CLOSE_TIMEOUT_S);
    unsigned max_unreg = cfg->debug ? EPMD_DEBUG_MAX_UNREG_COUNT : EPMD_MAX_UNREG_COUNT;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)srv;
    rc = epmd_registry_new(max_unreg, srv->max_conn, seed, &srv->reg);
    if (rc != 0)
        goto free_srv;
    rc = EPMD_ENOMEM;
    srv->ev_reap = event_new(base, -1, 0, reap_cb, srv);
    srv->ev_kill = event_new(base, -1, 0, kill_cb, srv);
    srv->ev_resume = event_new(base, -1, 0, resume_cb, srv);
    srv->ev_sweep = event_new(base, -1, EV_PERSIST, sweep_cb, srv);
    srv->ev_accept_delay = evtimer_new(base, accept_delay_cb, srv);
    if (!srv->ev_reap || !srv->ev_kill || !srv->ev_resume || !srv->ev_sweep ||
        !srv->ev_accept_delay)
        goto free_events;
    uint64_t sweep = srv->timeout_ms / 4 < SWEEP_MAX_MS ? srv->timeout_ms / 4 : SWEEP_MAX_MS;
    struct timeval tv = {(time_t)(sweep / 1000), (suseconds_t)(sweep % 1000) * 1000};
    if (event_add(srv->ev_sweep, &tv) != 0)
        goto free_events;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    rc = open_listeners(srv);
    if (rc != 0)
        goto free_events;
    slog(srv, 1, "epmd listening on port %u (%d sockets, max %u connections)", (unsigned)srv->port,
         srv->nlisten, srv->max_conn);
    *out = srv;
    return 0;

free_events:
    for (int i = 0; i < srv->nlisten; i++) {
        event_free(srv->ev_listen[i]);
        close(srv->listen_fd[i]);
    }
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    if (srv->ev_reap)
        event_free(srv->ev_reap);
    if (srv->ev_kill)
        event_free(srv->ev_kill);
    if (srv->ev_resume)
        event_free(srv->ev_resume);
    if (srv->ev_sweep)
        event_free(srv->ev_sweep);
    if (srv->ev_accept_delay)
        event_free(srv->ev_accept_delay);
    epmd_registry_free(srv->reg);
free_srv:
    free(srv);
    return rc;
}

void epmd_server_stop(epmd_server_t *srv)
{
    if (srv == NULL)
        return;
    close_all(srv);
    conn_t *c = srv->reap;
    while (c) {
        conn_t *next = c->reap_next;
        conn_recycle(srv, c);
        c = next;
    }
    while (srv->free_conns) {
        c = srv->free_conns;
        srv->free_conns = c->free_next;
        free(c);
    }
    for (int i = 0; i < srv->nlisten; i++) {
        event_free(srv->ev_listen[i]);
        if (srv->listen_fd[i] >= 0)
            close(srv->listen_fd[i]);
    }
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    event_free(srv->ev_reap);
    event_free(srv->ev_kill);
    event_free(srv->ev_resume);
    event_free(srv->ev_sweep);
    event_free(srv->ev_accept_delay);
    epmd_registry_free(srv->reg);
    free(srv);
}

uint16_t epmd_server_port(const epmd_server_t *srv)
{
    return srv->port;
}

void epmd_server_get_stats(const epmd_server_t *srv, epmd_server_stats_t *st)
{
    *st = srv->stats;
    st->connections = srv->idle.count + srv->alive.count + srv->delayed.count;
    st->registered = epmd_registry_count(srv->reg);
}

static void run_on_kill(void *ud)
{
    event_base_loopexit(ud, NULL);
}

/* detach forks twice around setsid(); returns 0 in the daemon, 1 in the
 * original process, or EPMD_ESYS. */
static int detach(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return EPMD_ESYS;
    if (pid > 0)
        return 1;
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    if (chdir("/") != 0)
        _exit(1);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    return 0;
}

int epmd_server_run(const epmd_server_config_t *cfg, bool daemonize, bool *daemon_parent)
{
    *daemon_parent = false;
    struct event_base *base = event_base_new();
    if (base == NULL)
        return EPMD_ENOMEM;
    epmd_server_config_t c = *cfg;
    c.on_kill = run_on_kill;
    c.kill_ud = base;
    epmd_server_t *srv = NULL;
    int rc = epmd_server_start(base, &c, &srv);
    if (rc != 0)
        goto free_base;
    if (daemonize) {
        rc = detach();
        if (rc == 1) { /* the caller's process: the daemon serves */
            *daemon_parent = true;
            rc = 0;
            goto stop_server;
        }
        if (rc != 0)
            goto stop_server;
        if (event_reinit(base) != 0) {
            rc = EPMD_ESYS;
            goto stop_server;
        }
    }
    if (event_base_dispatch(base) < 0)
        rc = EPMD_ESYS;
stop_server:
    epmd_server_stop(srv);
free_base:
    event_base_free(base);
    return rc;
}

/* ---- keeper ------------------------------------------------------------------ */

typedef enum keeper_state {
    K_WAIT,      /* retry timer pending */
    K_CONNECT,   /* non-blocking connect in progress */
    K_ANSWER,    /* ALIVE2 sent, waiting for the answer */
    K_REGISTERED /* connection held open */
} keeper_state_t;

struct epmd_keeper {
    struct event_base *base;
    epmd_keeper_config_t cfg;
    uint16_t port;
    keeper_state_t state;
    int fd;
    struct event *ev_io;
    struct event *ev_timer;
    uint8_t req[EPMD_ALIVE2_FRAME_MAX];
    size_t req_len;
    size_t sent;
    uint8_t resp[8];
    size_t resp_len;
    uint32_t creation;
    epmd_server_t *embedded;
    bool embedded_killed;
};

static void keeper_step(epmd_keeper_t *k);

static void keeper_notify(epmd_keeper_t *k, int err)
{
    if (k->cfg.on_change)
        k->cfg.on_change(k->cfg.ud, err, err == 0 ? k->creation : 0);
}

static void keeper_drop_fd(epmd_keeper_t *k)
{
    event_del(k->ev_io);
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}

/* keeper_retry closes the attempt and waits retry_delay_ms (or not at all). */
static void keeper_retry(epmd_keeper_t *k, int err, bool now)
{
    bool was_registered = k->state == K_REGISTERED;
    keeper_drop_fd(k);
    k->state = K_WAIT;
    int ms = now ? 0 : k->cfg.retry_delay_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_del(k->ev_timer);
    event_add(k->ev_timer, &tv);
    if (was_registered || err != EPMD_ECONNREFUSED || !k->cfg.embedded_fallback)
        keeper_notify(k, err);
}

static void keeper_io_cb(evutil_socket_t fd, short what, void *arg);

/* keeper_arm waits for what on the attempt's socket; with_timeout (re)starts
 * the attempt's deadline. */
static void keeper_arm(epmd_keeper_t *k, short what, bool with_timeout)
{
    event_del(k->ev_io);
    event_assign(k->ev_io, k->base, k->fd, what | EV_PERSIST, keeper_io_cb, k);
    event_add(k->ev_io, NULL);
    if (with_timeout) {
        int ms = k->cfg.timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        event_del(k->ev_timer);
        event_add(k->ev_timer, &tv);
    }
}

static void keeper_io_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_keeper_t *k = arg;
    if (k->state == K_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err != 0) {
            keeper_step(k); /* handled below as a refused connect */
            return;
        }
        k->state = K_ANSWER;
        k->sent = 0;
        k->resp_len = 0;
    }
    if (k->state == K_ANSWER && k->sent < k->req_len) {
        ssize_t n = send(k->fd, k->req + k->sent, k->req_len - k->sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            keeper_arm(k, EV_WRITE, false);
            return;
        }
        if (n <= 0) {
            keeper_retry(k, EPMD_EIO, false);
            return;
        }
        k->sent += (size_t)n;
        keeper_arm(k, k->sent < k->req_len ? EV_WRITE : EV_READ, false);
        return;
    }
    if (k->state == K_ANSWER) {
        ssize_t n = recv(k->fd, k->resp + k->resp_len, sizeof k->resp - k->resp_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            keeper_retry(k, EPMD_EIO, false);
            return;
        }
        k->resp_len += (size_t)n;
        uint8_t result = 0;
        uint32_t creation = 0;
        size_t used = 0;
        int rc = epmd_parse_alive2_resp(k->resp, k->resp_len, &result, &creation, &used);
        if (rc == EPMD_EAGAIN)
            return;
        if (rc != 0 || used != k->resp_len) {
            keeper_retry(k, EPMD_EPROTO, false);
            return;
        }
        if (result != 0) { /* name still taken: the old socket may linger */
            keeper_retry(k, EPMD_EREFUSED, false);
            return;
        }
        event_del(k->ev_timer);
        k->creation = creation;
        k->state = K_REGISTERED;
        keeper_arm(k, EV_READ, false);
        keeper_notify(k, 0);
        return;
    }
    if (k->state == K_REGISTERED) {
        /* epmd never writes on a registration: readable means gone. */
        keeper_retry(k, EPMD_ECLOSED, false);
    }
}

/* keeper_embedded_killed runs when the embedded server answered KILL "OK":
 * it is stopped from the keeper's timer (outside the server's callbacks)
 * and not restarted. */
static void keeper_embedded_killed(void *ud)
{
    epmd_keeper_t *k = ud;
    k->embedded_killed = true;
    struct timeval tv = {0, 0};
    event_del(k->ev_timer);
    event_add(k->ev_timer, &tv);
}

static void keeper_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    epmd_keeper_t *k = arg;
    if (k->embedded_killed) {
        k->embedded_killed = false;
        k->cfg.embedded_fallback = false;
        epmd_server_stop(k->embedded);
        k->embedded = NULL;
        if (k->state == K_REGISTERED)
            return; /* the closed registration shows up as readable */
    }
    if (k->state == K_WAIT)
        keeper_step(k);
    else if (k->state != K_REGISTERED)
        keeper_retry(k, EPMD_ETIMEDOUT, false);
}

/* keeper_step starts one registration attempt; a refused connect may
 * start the embedded server and retry at once. */
static void keeper_step(epmd_keeper_t *k)
{
    bool refused = false;
    if (k->state == K_CONNECT) {
        refused = true; /* called from keeper_io_cb after a failed connect */
    } else {
        keeper_drop_fd(k);
        k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (k->fd < 0) {
            keeper_retry(k, EPMD_ESYS, false);
            return;
        }
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(k->port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        k->state = K_CONNECT;
        if (connect(k->fd, (struct sockaddr *)&sin, sizeof sin) == 0 || errno == EINPROGRESS) {
            keeper_arm(k, EV_WRITE, true);
            return;
        }
        refused = true;
    }
    if (refused && k->cfg.embedded_fallback && k->embedded == NULL) {
        epmd_server_config_t ec = k->cfg.embedded;
        ec.port = k->port;
        if (ec.on_kill == NULL) {
            ec.on_kill = keeper_embedded_killed;
            ec.kill_ud = k;
        }
        int rc = epmd_server_start(k->base, &ec, &k->embedded);
        if (rc != 0)
            k->embedded = NULL;
        keeper_retry(k, EPMD_ECONNREFUSED, rc == 0 || rc == EPMD_EADDRINUSE);
        return;
    }
    keeper_retry(k, EPMD_ECONNREFUSED, false);
}

int epmd_keeper_start(struct event_base *base, const epmd_keeper_config_t *cfg, epmd_keeper_t **out)
{
    *out = NULL;
    size_t nlen = strnlen(cfg->node.name, sizeof cfg->node.name);
    if (base == NULL || nlen == 0 || nlen > EPMD_MAX_NAME_BYTES ||
        cfg->node.extra_len > EPMD_MAX_EXTRA_BYTES)
        return EPMD_EINVAL;
    epmd_keeper_t *k = calloc(1, sizeof *k);
    if (k == NULL)
        return EPMD_ENOMEM;
    k->base = base;
    k->cfg = *cfg;
    if (k->cfg.timeout_ms <= 0)
        k->cfg.timeout_ms = KEEPER_DEFAULT_TIMEOUT_MS;
    if (k->cfg.retry_delay_ms <= 0)
        k->cfg.retry_delay_ms = KEEPER_DEFAULT_RETRY_MS;
    k->port = cfg->epmd_port ? cfg->epmd_port : epmd_default_port();
    k->fd = -1;
    k->ev_io = event_new(base, -1, 0, keeper_io_cb, k);
    k->ev_timer = event_new(base, -1, 0, keeper_timer_cb, k);
    if (k->ev_io == NULL || k->ev_timer == NULL) {
        if (k->ev_io)
            event_free(k->ev_io);
        if (k->ev_timer)
            event_free(k->ev_timer);
        free(k);
        return EPMD_ENOMEM;
    }
    /* The ALIVE2 request, built once. */
    const epmd_node_info_t *n = &cfg->node;
    k->req_len = epmd_alive2_frame(n, nlen, k->req);
    k->state = K_WAIT;
    struct timeval tv = {0, 0};
    event_add(k->ev_timer, &tv);
    *out = k;
    return 0;
}

bool epmd_keeper_creation(const epmd_keeper_t *k, uint32_t *creation)
{
    if (k->state != K_REGISTERED)
        return false;
    *creation = k->creation;
    return true;
}

epmd_server_t *epmd_keeper_embedded(const epmd_keeper_t *k)
{
    return k->embedded;
}

void epmd_keeper_stop(epmd_keeper_t *k)
{
    if (k == NULL)
        return;
    keeper_drop_fd(k);
    event_free(k->ev_io);
    event_free(k->ev_timer);
    epmd_server_stop(k->embedded);
    free(k);
}
