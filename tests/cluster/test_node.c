/*
 * test_node.c — a node started in-process (embedded EPMD on a free port),
 * driven over real sockets by a raw peer that uses the handshake state
 * machine as initiator: echo round trips, a wrong cookie, half-open
 * connections, ticks and the tick timeout, and malformed frames
 * (docs/robustness.md D21-D30) each closing only its own connection while the
 * node keeps serving.  Also the cookie file.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "cunit_main.h"
#include "epmd.h"
#include "sched/sched.h"

#define COOKIE "test-cookie-0123456789"

static uint16_t epmd_port, dist_port;
static char node_name[64];
static int conn_serial;

static void start_node(void)
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
    epmd_port = ntohs(sin.sin_port);
    snprintf(node_name, sizeof node_name, "gdtest%d@localhost", (int)getpid());
    cluster_config_t cfg = {0};
    cfg.name = node_name;
    cfg.cookie = COOKIE;
    cfg.epmd_port = epmd_port;
    cfg.ticktime_s = 2;
    cfg.setuptime_s = 1;
    cfg.schedulers = 2;
    CU_ASSERT_FATAL(cluster_start(&cfg) == 0);
    epmd_client_opts_t eo = {.port = epmd_port, .timeout_ms = 2000};
    epmd_node_info_t info;
    char alive[64];
    snprintf(alive, sizeof alive, "gdtest%d", (int)getpid());
    CU_ASSERT_FATAL(epmd_client_port_please(&eo, alive, &info) == 0);
    dist_port = info.port;
}

static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(dist_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    return fd;
}

/* Reads what arrives within ms milliseconds into buf (appending at *len);
 * returns false once the peer closed. */
static bool read_some(int fd, uint8_t *buf, size_t cap, size_t *len, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return true;
    ssize_t n = read(fd, buf + *len, cap - *len);
    if (n <= 0)
        return false;
    *len += (size_t)n;
    return true;
}

/* True when the node closes fd within ms (anything it sends first is
 * read and discarded). */
static bool closed_within(int fd, int ms)
{
    uint8_t buf[4096];
    for (int t = 0; t < ms; t += 50) {
        size_t len = 0;
        if (!read_some(fd, buf, sizeof buf, &len, 50))
            return true;
    }
    return false;
}

typedef struct peer {
    int fd;
    char name[64];
    uint8_t in[1 << 16];
    size_t in_len;
    dist_rx_t rx;
    heap_t h;
} peer_t;

/* Connects as "rawN@localhost" and runs the handshake; returns the
 * handshake result (1: up). */
static int peer_connect_as(peer_t *p, const char *cookie, const char *name)
{
    memset(p, 0, sizeof *p);
    start_node();
    if (name != NULL)
        snprintf(p->name, sizeof p->name, "%s", name);
    else
        snprintf(p->name, sizeof p->name, "raw%d@localhost", ++conn_serial);
    p->fd = tcp_connect();
    dist_hs_config_t c = {0};
    c.role = DIST_INITIATOR;
    c.name = p->name;
    c.name_len = strlen(p->name);
    c.creation = 77;
    c.flags = DFLAG_GIRDER_DEFAULT;
    c.cookie = cookie;
    c.cookie_len = strlen(cookie);
    c.challenge = 0x12345678;
    c.peer_name = node_name;
    c.peer_name_len = strlen(node_name);
    dist_hs_t hs;
    CU_ASSERT_FATAL(dist_hs_init(&hs, &c) == 0);
    int rc = 0;
    for (int rounds = 0; rounds < 100 && rc == 0; rounds++) {
        if (hs.out_len > 0) {
            CU_ASSERT(write(p->fd, hs.out, hs.out_len) == (ssize_t)hs.out_len);
            hs.out_len = 0;
        }
        size_t used = 0;
        rc = dist_hs_feed(&hs, p->in, p->in_len, &used);
        if (used > 0) {
            memmove(p->in, p->in + used, p->in_len - used);
            p->in_len -= used;
            continue;
        }
        if (rc == 0 && !read_some(p->fd, p->in, sizeof p->in, &p->in_len, 100))
            return DIST_ECLOSED;
    }
    if (rc == 1) {
        CU_ASSERT_FATAL(dist_rx_init(&p->rx, NULL) == 0);
        CU_ASSERT_FATAL(heap_init(&p->h, 0) == 0);
    }
    return rc;
}

static int peer_connect(peer_t *p, const char *cookie)
{
    return peer_connect_as(p, cookie, NULL);
}

static void peer_close(peer_t *p)
{
    close(p->fd);
    dist_rx_free(&p->rx);
    heap_destroy(&p->h);
}

/* The next non-tick message from the node, within ms. */
static bool peer_recv(peer_t *p, dist_msg_t *m, int ms)
{
    for (int t = 0; t < ms; t += 20) {
        size_t n;
        while (dist_frame_split(p->in, p->in_len, sizeof p->in, &n) == 1) {
            int rc = dist_rx_frame(&p->rx, &p->h, p->in + 4, n, m);
            memmove(p->in, p->in + 4 + n, p->in_len - 4 - n);
            p->in_len -= 4 + n;
            CU_ASSERT(rc == 0);
            if (rc == 0 && m->op != 0)
                return true;
        }
        if (!read_some(p->fd, p->in, sizeof p->in, &p->in_len, 20))
            return false;
    }
    return false;
}

/* {echo, Node} ! {<rawN.1.0>, T} as REG_SEND; checks the echo_reply. */
static bool echo_round_trip(peer_t *p, term_t t)
{
    term_t self, ctl, msg, *e;
    CU_ASSERT_FATAL(heap_make_ext_pid(&p->h, heap_atom(p->name), 1, 0, 77, &self) == 0);
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 4, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_REG_SEND);
    e[1] = self;
    e[2] = heap_atom("");
    e[3] = heap_atom("echo");
    CU_ASSERT_FATAL(heap_make_tuple(&p->h, 2, &e, &msg) == 0);
    e[0] = self;
    e[1] = t;
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, msg, 1, 0, &b) == 0);
    CU_ASSERT(write(p->fd, b.data, b.len) == (ssize_t)b.len);
    etf_buf_free(&b);
    dist_msg_t m;
    if (!peer_recv(p, &m, 3000))
        return false;
    if (m.op != DOP_SEND_SENDER || !term_is_boxed_of(m.payload, HDR_TUPLE))
        return false;
    term_t *r = term_boxed_ptr(m.payload);
    int order = 1;
    return r[1] == heap_atom("echo_reply") && heap_compare_checked(r[2], t, true, &order) == 0 &&
           order == 0;
}

static void test_echo(void)
{
    peer_t p;
    CU_ASSERT_FATAL(peer_connect(&p, COOKIE) == 1);
    CU_ASSERT(echo_round_trip(&p, heap_atom("hello")));
    term_t l;
    CU_ASSERT_FATAL(
        heap_make_list(&p.h, (term_t[]){term_make_small(1), term_make_small(2)}, 2, &l) == 0);
    CU_ASSERT(echo_round_trip(&p, l));
    peer_close(&p);
}

static void test_wrong_cookie(void)
{
    peer_t p;
    CU_ASSERT(peer_connect(&p, "not-the-cookie-at-all") == DIST_ECLOSED);
    close(p.fd);
    peer_t q;
    CU_ASSERT_FATAL(peer_connect(&q, COOKIE) == 1);
    CU_ASSERT(echo_round_trip(&q, heap_atom("still_serving")));
    peer_close(&q);
}

static void test_half_open(void)
{
    start_node();
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = tcp_connect();
    /* net_setuptime is 1 s here. */
    for (int i = 0; i < 20; i++) {
        CU_ASSERT(closed_within(fds[i], 3000));
        close(fds[i]);
    }
    /* A handshake message cut short waits, then times out too (D22). */
    int fd = tcp_connect();
    CU_ASSERT(write(fd, "\x00\x13N\x00", 4) == 4);
    CU_ASSERT(closed_within(fd, 3000));
    close(fd);
    /* A 64 KiB handshake length is refused at once (D21 for handshakes). */
    fd = tcp_connect();
    CU_ASSERT(write(fd, "\xff\xffN", 3) == 3);
    CU_ASSERT(closed_within(fd, 500));
    close(fd);
}

static void test_ticks(void)
{
    peer_t p;
    CU_ASSERT_FATAL(peer_connect(&p, COOKIE) == 1);
    /* ticktime 2 s: a tick every 0.5 s of write silence. */
    size_t len = 0;
    uint8_t buf[64];
    for (int t = 0; t < 1500 && len < 4; t += 50)
        CU_ASSERT(read_some(p.fd, buf, sizeof buf, &len, 50));
    CU_ASSERT(len >= 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
    /* Silence from us: dropped after the ticktime (net_tick_timeout). */
    CU_ASSERT(closed_within(p.fd, 4000));
    peer_close(&p);
    /* Answering with ticks keeps it up. */
    CU_ASSERT_FATAL(peer_connect(&p, COOKIE) == 1);
    for (int i = 0; i < 30; i++) {
        CU_ASSERT(write(p.fd, "\0\0\0\0", 4) == 4);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(echo_round_trip(&p, heap_atom("after_ticks")));
    peer_close(&p);
}

static void test_malformed_frames(void)
{
    /* Each frame (after its 4-byte length) on a fresh connection. */
    static const char *const frames[] = {
        "\x83",                                 /* D1 */
        "\x83\x44\xff",                         /* D24 */
        "\x83\x44\x01\x00\x05\x68\x01\x61\x01", /* D25 */
        "\x83\x44\x00\x68\x01\x61\x01",         /* D26 {1} */
        "\x83\x44\x00\x68\x01\x61\x63",         /* D26 {99} */
        "\x83\x46\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x61", /* D27 */
        "\x83\x44\x00\x68\x02\x61\x06\x61\x01",     /* REG_SEND arity 2 */
        "\x70\x83\x6c\xff\xff\xff\xff",             /* D4 */
        "\x83\x44\x00\x68\x01\x6d\xff\xff\xff\xff", /* D6 */
        "\x00\x00\x00",                             /* garbage */
    };
    static const size_t lens[] = {1, 3, 9, 7, 7, 19, 9, 7, 10, 3};
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        peer_t p;
        CU_ASSERT_FATAL(peer_connect(&p, COOKIE) == 1);
        uint8_t b[64] = {0, 0, 0, (uint8_t)lens[i]};
        memcpy(b + 4, frames[i], lens[i]);
        CU_ASSERT(write(p.fd, b, 4 + lens[i]) == (ssize_t)(4 + lens[i]));
        bool closed = closed_within(p.fd, 2000);
        CU_ASSERT(closed);
        if (!closed)
            fprintf(stderr, "frame %zu did not close the connection\n", i);
        peer_close(&p);
    }
    /* D21: a 4 GB length closes at once, before any of it arrives. */
    peer_t p;
    CU_ASSERT_FATAL(peer_connect(&p, COOKIE) == 1);
    CU_ASSERT(write(p.fd, "\xff\xff\xff\xff", 4) == 4);
    CU_ASSERT(closed_within(p.fd, 1000));
    peer_close(&p);
    /* A good connection opened before a bad one keeps working after it. */
    peer_t good, bad;
    CU_ASSERT_FATAL(peer_connect(&good, COOKIE) == 1);
    CU_ASSERT_FATAL(peer_connect(&bad, COOKIE) == 1);
    CU_ASSERT(write(bad.fd, "\x00\x00\x00\x01\x83", 5) == 5);
    CU_ASSERT(closed_within(bad.fd, 2000));
    CU_ASSERT(echo_round_trip(&good, heap_atom("unharmed")));
    peer_close(&bad);
    peer_close(&good);
}

static void test_cookie_file(void)
{
    char dir[] = "/tmp/gdcookieXXXXXX", path[64];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/.erlang.cookie", dir);
    char *c1 = NULL, *c2 = NULL;
    bool created;
    CU_ASSERT_FATAL(cluster_cookie_load(path, &c1, &created) == 0);
    CU_ASSERT(created);
    CU_ASSERT(strlen(c1) == 32);
    for (size_t i = 0; i < strlen(c1); i++)
        CU_ASSERT(c1[i] >= 'A' && c1[i] <= 'Z');
    struct stat st;
    CU_ASSERT(stat(path, &st) == 0 && (st.st_mode & 0777) == 0400);
    CU_ASSERT(!cluster_cookie_weak(c1));
    CU_ASSERT_FATAL(cluster_cookie_load(path, &c2, &created) == 0);
    CU_ASSERT(!created && strcmp(c1, c2) == 0);
    free(c1);
    free(c2);
    /* Readable by others: refused, as OTP refuses it. */
    CU_ASSERT(chmod(path, 0644) == 0);
    CU_ASSERT(cluster_cookie_load(path, &c1, &created) == GD_EINVAL);
    unlink(path);
    rmdir(dir);
    CU_ASSERT(cluster_cookie_weak("secret"));
    CU_ASSERT(cluster_cookie_weak("abcdefghijklmno"));
    CU_ASSERT(!cluster_cookie_weak("abcdefghijklmnop"));
}

/* D38: the node dials "alive@localhost" (a name registered in its EPMD
 * for a socket of ours that accepts and never answers) while a peer of
 * that name dials the node.  A peer name greater than the node's wins
 * (ok_simultaneous): the node drops its own attempt and what it queued
 * there arrives over the peer's connection.  A smaller one gets nok. */
static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
                    listen(fd, 4) == 0 && getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void simultaneous(const char *alive, bool peer_wins)
{
    start_node();
    uint16_t port;
    int lfd = listen_any(&port);
    epmd_client_opts_t eo = {.port = epmd_port, .timeout_ms = 2000};
    epmd_node_info_t info = {
        .port = port, .node_type = EPMD_NODE_NORMAL, .high_vsn = 6, .low_vsn = 5};
    snprintf(info.name, sizeof info.name, "%s", alive);
    uint32_t creation;
    epmd_registration_t *reg = NULL;
    CU_ASSERT_FATAL(epmd_client_register(&eo, &info, &creation, &reg) == 0);
    char full[64];
    snprintf(full, sizeof full, "%s@localhost", alive);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t to;
    CU_ASSERT_FATAL(heap_make_ext_pid(&h, heap_atom(full), 5, 0, creation, &to) == 0);
    CU_ASSERT(sched_send(NULL, to, heap_atom("queued_while_connecting")) == 0);
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    CU_ASSERT_FATAL(poll(&pl, 1, 3000) == 1);
    int node_side = accept(lfd, NULL, NULL);
    CU_ASSERT_FATAL(node_side >= 0);
    peer_t p;
    int rc = peer_connect_as(&p, COOKIE, full);
    if (peer_wins) {
        CU_ASSERT_FATAL(rc == 1);
        dist_msg_t m;
        CU_ASSERT(peer_recv(&p, &m, 3000));
        CU_ASSERT(m.op == DOP_SEND_SENDER && m.payload == heap_atom("queued_while_connecting"));
        CU_ASSERT(closed_within(node_side, 2000)); /* its own attempt is dropped */
        peer_close(&p);
    } else {
        CU_ASSERT(rc == DIST_ENOK);
        if (rc != DIST_ENOK)
            fprintf(stderr, "simultaneous: got %d, %zu bytes buffered\n", rc, p.in_len);
        close(p.fd);
    }
    close(node_side);
    close(lfd);
    epmd_registration_close(reg);
    heap_destroy(&h);
}

static void test_simultaneous(void)
{
    simultaneous("zzsim", true);
    simultaneous("aasim", false);
}

static void test_stop(void)
{
    start_node();
    cluster_stop();
    epmd_client_opts_t eo = {.port = epmd_port, .timeout_ms = 500};
    epmd_node_info_t info;
    char alive[64];
    snprintf(alive, sizeof alive, "gdtest%d", (int)getpid());
    CU_ASSERT(epmd_client_port_please(&eo, alive, &info) != 0);
}

static const gd_test_case_t gd_tests[] = {
    {"cookie file", test_cookie_file},
    {"echo", test_echo},
    {"wrong cookie", test_wrong_cookie},
    {"half open", test_half_open},
    {"ticks", test_ticks},
    {"malformed frames", test_malformed_frames},
    {"simultaneous connect", test_simultaneous},
    {"stop", test_stop},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_node", gd_tests)
