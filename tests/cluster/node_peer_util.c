/*
 * node_peer_util.c — see node_peer_util.h.
 */
#include "node_peer_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cunit_main.h"
#include "epmd.h"

static uint16_t np_epmd_port_number, np_dist_port;
static char np_name[64];
static int np_serial;

void np_start_node(size_t busy_limit)
{
    np_start_node_batched(busy_limit, 0);
}

void np_start_node_batched(size_t busy_limit, unsigned read_batch_us)
{
    static bool started;
    if (started)
        return;
    started = true;
    /* A port the kernel just handed out is free now; one derived from the
     * pid was not always (CI: another test's listener answered on it). */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t slen = sizeof sin;
    CU_ASSERT_FATAL(probe >= 0 && bind(probe, (struct sockaddr *)&sin, sizeof sin) == 0 &&
                    getsockname(probe, (struct sockaddr *)&sin, &slen) == 0);
    close(probe);
    uint16_t epmd_port = ntohs(sin.sin_port);
    np_epmd_port_number = epmd_port;
    snprintf(np_name, sizeof np_name, "np%d@localhost", (int)getpid());
    cluster_config_t cfg = {0};
    cfg.name = np_name;
    cfg.cookie = NP_COOKIE;
    cfg.epmd_port = epmd_port;
    cfg.ticktime_s = 2;
    cfg.setuptime_s = 1;
    cfg.schedulers = 2;
    cfg.dist_buf_busy_limit = busy_limit;
    cfg.read_batch_us = read_batch_us;
    CU_ASSERT_FATAL(cluster_start(&cfg) == 0);
    epmd_client_opts_t eo = {.port = epmd_port, .timeout_ms = 2000};
    epmd_node_info_t info;
    char alive[64];
    snprintf(alive, sizeof alive, "np%d", (int)getpid());
    CU_ASSERT_FATAL(epmd_client_port_please(&eo, alive, &info) == 0);
    np_dist_port = info.port;
}

const char *np_node_name(void)
{
    return np_name;
}

uint16_t np_epmd_port(void)
{
    return np_epmd_port_number;
}

int np_tcp_connect(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    if (rcvbuf > 0)
        CU_ASSERT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(np_dist_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    return fd;
}

bool np_read_some(int fd, uint8_t *buf, size_t cap, size_t *len, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (*len >= cap || poll(&p, 1, ms) != 1)
        return true;
    ssize_t n = read(fd, buf + *len, cap - *len);
    if (n <= 0)
        return false;
    *len += (size_t)n;
    return true;
}

bool np_closed_within(int fd, int ms)
{
    uint8_t buf[4096];
    for (int t = 0; t < ms; t += 50) {
        size_t len = 0;
        if (!np_read_some(fd, buf, sizeof buf, &len, 50))
            return true;
    }
    return false;
}

bool np_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

bool np_write_frame(int fd, const void *p, size_t n)
{
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    return np_write_all(fd, len, 4) && np_write_all(fd, p, n);
}

/* Runs the handshake until it ends or reaches pause_at (with what it
 * would send next still in hs->out); its result as dist_hs_feed's (0
 * while paused), or DIST_ECLOSED when the node closed first. */
static int hs_run(np_peer_t *p, dist_hs_t *hs, int pause_at)
{
    int rc = 0;
    for (int rounds = 0; rounds < 100 && rc == 0 && (int)hs->state != pause_at; rounds++) {
        if (hs->out_len > 0) {
            CU_ASSERT(np_write_all(p->fd, hs->out, hs->out_len));
            hs->out_len = 0;
        }
        size_t used = 0;
        rc = dist_hs_feed(hs, p->in, p->in_len, &used);
        if (used > 0) {
            memmove(p->in, p->in + used, p->in_len - used);
            p->in_len -= used;
            continue;
        }
        if (rc == 0 && !np_read_some(p->fd, p->in, p->in_cap, &p->in_len, 100))
            return DIST_ECLOSED;
    }
    return rc;
}

int np_peer_connect_paused(np_peer_t *p, const char *cookie, const char *name, uint64_t flags,
                           int rcvbuf, dist_hs_t *hs, int pause_at)
{
    memset(p, 0, sizeof *p);
    np_start_node(0);
    if (name != NULL)
        snprintf(p->name, sizeof p->name, "%s", name);
    else
        snprintf(p->name, sizeof p->name, "raw%d@localhost", ++np_serial);
    p->in_cap = (size_t)1 << 20;
    p->in = malloc(p->in_cap);
    CU_ASSERT_FATAL(p->in != NULL);
    p->fd = np_tcp_connect(rcvbuf);
    dist_hs_config_t c = {0};
    c.role = DIST_INITIATOR;
    c.name = p->name;
    c.name_len = strlen(p->name);
    c.creation = 77;
    /* Hidden unless asked: every visible node runs global, so a visible
     * raw peer would get global_name_server's init_connect first. */
    c.flags = flags ? flags : DFLAG_GIRDER_DEFAULT & ~DFLAG_PUBLISHED;
    c.cookie = cookie;
    c.cookie_len = strlen(cookie);
    c.challenge = 0x12345678;
    c.peer_name = np_name;
    c.peer_name_len = strlen(np_name);
    CU_ASSERT_FATAL(dist_hs_init(hs, &c) == 0);
    CU_ASSERT_FATAL(dist_rx_init(&p->rx, NULL) == 0);
    CU_ASSERT_FATAL(heap_init(&p->h, 0) == 0);
    CU_ASSERT_FATAL(heap_make_ext_pid(&p->h, heap_atom(p->name), 1, 0, 77, &p->self) == 0);
    return hs_run(p, hs, pause_at);
}

int np_peer_connect_resume(np_peer_t *p, dist_hs_t *hs)
{
    return hs_run(p, hs, -1);
}

int np_peer_connect(np_peer_t *p, const char *cookie, const char *name, uint64_t flags, int rcvbuf)
{
    dist_hs_t hs;
    return np_peer_connect_paused(p, cookie, name, flags, rcvbuf, &hs, -1);
}

void np_peer_close(np_peer_t *p)
{
    close(p->fd);
    dist_rx_free(&p->rx);
    heap_destroy(&p->h);
    free(p->in);
    p->in = NULL;
}

bool np_peer_recv(np_peer_t *p, dist_msg_t *m, int ms)
{
    for (int t = 0; t < ms; t += 20) {
        size_t n;
        while (dist_frame_split(p->in, p->in_len, p->in_cap - 4, &n) == 1 && 4 + n <= p->in_len) {
            int rc = dist_rx_frame(&p->rx, &p->h, p->in + 4, n, m);
            memmove(p->in, p->in + 4 + n, p->in_len - 4 - n);
            p->in_len -= 4 + n;
            CU_ASSERT(rc == 0);
            if (rc == 0 && m->op != 0)
                return true;
        }
        if (!np_read_some(p->fd, p->in, p->in_cap, &p->in_len, 20))
            return false;
    }
    return false;
}

/* {Name, Node} ! Msg from p->self (REG_SEND). */
static bool reg_send(np_peer_t *p, const char *name, term_t msg)
{
    term_t ctl, *e;
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 4, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_REG_SEND);
    e[1] = p->self;
    e[2] = heap_atom("");
    e[3] = heap_atom(name);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, msg, 1, 0, &b) == 0);
    bool sent = np_write_all(p->fd, b.data, b.len);
    etf_buf_free(&b);
    return sent;
}

bool np_send_named(np_peer_t *p, const char *name, term_t msg)
{
    return reg_send(p, name, msg);
}

bool np_rpc(np_peer_t *p, const char *m, const char *f, term_t args, term_t *out)
{
    term_t req, msg, *e;
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 5, &e, &req) == 0);
    e[0] = heap_atom("call");
    e[1] = heap_atom(m);
    e[2] = heap_atom(f);
    e[3] = args;
    e[4] = heap_atom("user");
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 2, &e, &msg) == 0);
    e[0] = p->self;
    e[1] = req;
    dist_msg_t r;
    if (!reg_send(p, "rex", msg) || !np_peer_recv(p, &r, 3000))
        return false;
    if (!term_is_tuple(r.payload) || term_tuple_arity(r.payload) != 2 ||
        term_tuple_elems(r.payload)[0] != heap_atom("rex"))
        return false;
    *out = term_tuple_elems(r.payload)[1];
    return true;
}

bool np_echo_round_trip(np_peer_t *p, term_t t)
{
    term_t ctl, msg, *e;
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 4, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_REG_SEND);
    e[1] = p->self;
    e[2] = heap_atom("");
    e[3] = heap_atom("echo");
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 2, &e, &msg) == 0);
    e[0] = p->self;
    e[1] = t;
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, msg, 1, 0, &b) == 0);
    bool sent = np_write_all(p->fd, b.data, b.len);
    etf_buf_free(&b);
    dist_msg_t m;
    if (!sent || !np_peer_recv(p, &m, 3000))
        return false;
    if (m.op != DOP_SEND_SENDER || !term_is_boxed_of(m.payload, HDR_TUPLE))
        return false;
    term_t *r = term_boxed_ptr(m.payload);
    int order = 1;
    return r[1] == heap_atom("echo_reply") && heap_compare_checked(r[2], t, true, &order) == 0 &&
           order == 0;
}

static int idle_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    (void)ctx;
    (void)arg;
    *state = TERM_NIL;
    return 0;
}

static int idle_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)ctx;
    (void)msg;
    (void)state;
    return 0;
}

const sched_behaviour_t np_idle_beh = {idle_init, idle_handle, NULL, NULL};
