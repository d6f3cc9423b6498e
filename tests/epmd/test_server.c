/*
 * test_server.c — the epmd server and client over loopback sockets, in one
 * process: the server runs in its own libevent loop thread (as it would be
 * embedded in a node), the blocking client and raw sockets drive it from
 * the test thread.  Covers registration lifetime, re-registration, limits
 * (connection cap and eviction, EMFILE without spinning), timeouts, STOP
 * and KILL, thousands of registrations, and the keeper: embedded start and
 * "the system epmd replaces the embedded one".
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "epmd_test_util.h"
#include "internal.h"

#define WAIT_STEP_MS 20
#define CLIENT_TIMEOUT_MS 3000

/* ---- helpers ----------------------------------------------------------------- */

static epmd_node_info_t node_named(const char *name, uint16_t port)
{
    epmd_node_info_t n;
    memset(&n, 0, sizeof n);
    snprintf(n.name, sizeof n.name, "%s", name);
    n.port = port;
    n.node_type = EPMD_NODE_NORMAL;
    n.protocol = EPMD_PROTO_TCP_IPV4;
    n.high_vsn = EPMD_DIST_VSN_HIGH;
    n.low_vsn = EPMD_DIST_VSN_LOW;
    return n;
}

/* A libevent loop running in its own thread. */
typedef struct loop {
    struct event_base *base;
    pthread_t th;
    epmd_server_t *srv;
    uint16_t port;
    bool running;
} loop_t;

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void loop_run(loop_t *l)
{
    CU_ASSERT_FATAL(pthread_create(&l->th, NULL, loop_main, l) == 0);
    l->running = true;
}

static void loop_init(loop_t *l)
{
    memset(l, 0, sizeof *l);
    l->base = event_base_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(l->base);
}

/* loop_server_start starts a server (on a free port unless cfg->port is
 * set) without a loop thread: the test then drives the loop itself. */
static void loop_server_start(loop_t *l, epmd_server_config_t cfg)
{
    loop_init(l);
    int rc = EPMD_EADDRINUSE;
    for (int tries = 0; tries < 20 && rc == EPMD_EADDRINUSE; tries++) {
        if (cfg.port == 0 || tries > 0)
            cfg.port = et_free_port();
        rc = epmd_server_start(l->base, &cfg, &l->srv);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    l->port = epmd_server_port(l->srv);
}

/* loop_server starts a server as loop_server_start does, and the loop
 * thread. */
static void loop_server(loop_t *l, epmd_server_config_t cfg)
{
    loop_server_start(l, cfg);
    loop_run(l);
}

static void loop_join(loop_t *l)
{
    if (l->running) {
        event_base_loopexit(l->base, NULL);
        pthread_join(l->th, NULL);
        l->running = false;
    }
}

static void loop_free(loop_t *l)
{
    loop_join(l);
    epmd_server_stop(l->srv);
    l->srv = NULL;
    event_base_free(l->base);
    l->base = NULL;
}

/* Run fn(arg) inside the loop thread and wait for it. */
typedef struct call {
    void (*fn)(void *);
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} call_t;

static void call_cb(evutil_socket_t fd, short what, void *arg)
{
    call_t *c = arg;
    c->fn(c->arg);
    pthread_mutex_lock(&c->mu);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void loop_call(loop_t *l, void (*fn)(void *), void *arg)
{
    call_t c = {.fn = fn, .arg = arg, .done = false};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    struct timeval tv = {0, 0};
    CU_ASSERT_FATAL(event_base_once(l->base, -1, EV_TIMEOUT, call_cb, &c, &tv) == 0);
    pthread_mutex_lock(&c.mu);
    while (!c.done)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

typedef struct stats_req {
    loop_t *l;
    epmd_server_stats_t st;
} stats_req_t;

static void stats_fn(void *arg)
{
    stats_req_t *r = arg;
    epmd_server_get_stats(r->l->srv, &r->st);
}

static epmd_server_stats_t loop_stats(loop_t *l)
{
    stats_req_t r = {.l = l};
    loop_call(l, stats_fn, &r);
    return r.st;
}

/* wait_lookup polls PORT_PLEASE2 until it returns want (or timeout). */
static int wait_lookup(uint16_t port, const char *name, int want, int timeout_ms)
{
    epmd_client_opts_t o = {.port = port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_node_info_t info;
    int64_t deadline = et_mono_ms() + timeout_ms;
    int rc;
    do {
        rc = epmd_client_port_please(&o, name, &info);
        if (rc == want)
            return rc;
        et_sleep_ms(WAIT_STEP_MS);
    } while (et_mono_ms() < deadline);
    return rc;
}

/* ---- client against the embedded server --------------------------------------- */

static void test_client_basic(void)
{
    loop_t l;
    loop_server(&l, (epmd_server_config_t){0});
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = CLIENT_TIMEOUT_MS};
    CU_ASSERT_EQUAL(epmd_client_probe(&o), 0);

    epmd_node_info_t a = node_named("alpha", 21000);
    a.extra_len = 2;
    a.extra[0] = 0;
    a.extra[1] = 'e';
    uint32_t cr = 0;
    epmd_registration_t *reg = NULL;
    CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &a, &cr, &reg), 0);
    CU_ASSERT(cr >= 4);
    CU_ASSERT_EQUAL(epmd_registration_creation(reg), cr);
    CU_ASSERT(epmd_registration_fd(reg) >= 0);
    CU_ASSERT(epmd_registration_alive(reg));

    epmd_node_info_t info;
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "alpha", &info), 0);
    CU_ASSERT_EQUAL(info.port, 21000);
    CU_ASSERT_EQUAL(info.high_vsn, 6);
    CU_ASSERT_EQUAL(info.low_vsn, 5);
    CU_ASSERT_EQUAL(info.extra_len, 2);
    CU_ASSERT_EQUAL(info.extra[1], 'e');
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "beta", &info), EPMD_ENOTFOUND);
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "", &info), EPMD_EINVAL);

    /* the same name again is refused while alpha lives */
    epmd_registration_t *dup = NULL;
    CU_ASSERT_EQUAL(epmd_client_register(&o, &a, &cr, &dup), EPMD_EREFUSED);
    CU_ASSERT_PTR_NULL(dup);

    epmd_names_t names;
    char *raw = NULL;
    size_t raw_len = 0;
    CU_ASSERT_EQUAL_FATAL(epmd_client_names(&o, &names, &raw, &raw_len), 0);
    CU_ASSERT_EQUAL(names.epmd_port, l.port);
    CU_ASSERT_EQUAL_FATAL(names.count, 1);
    CU_ASSERT_STRING_EQUAL(names.entries[0].name, "alpha");
    CU_ASSERT_EQUAL(names.entries[0].port, 21000);
    CU_ASSERT_STRING_EQUAL(raw, "name alpha at port 21000\n");
    free(raw);
    epmd_names_free(&names);

    uint32_t eport = 0;
    CU_ASSERT_EQUAL_FATAL(epmd_client_dump(&o, &eport, &raw, &raw_len), 0);
    CU_ASSERT_EQUAL(eport, l.port);
    CU_ASSERT(strncmp(raw, "active name     <alpha> at port 21000, fd = ", 44) == 0);
    CU_ASSERT_EQUAL(raw[raw_len - 1], '\0');
    free(raw);

    /* KILL refused with a live node; STOP closed silently (not relaxed) */
    CU_ASSERT_EQUAL(epmd_client_kill(&o), EPMD_ENOTALLOWED);
    char answer[32];
    CU_ASSERT_EQUAL(epmd_client_stop(&o, "alpha", answer, sizeof answer), EPMD_EIO);
    CU_ASSERT_STRING_EQUAL(answer, "");
    CU_ASSERT(epmd_registration_alive(reg));

    /* closing the registration unregisters at once */
    epmd_registration_close(reg);
    CU_ASSERT_EQUAL(wait_lookup(l.port, "alpha", EPMD_ENOTFOUND, 1000), EPMD_ENOTFOUND);
    epmd_server_stats_t st = loop_stats(&l);
    CU_ASSERT_EQUAL(st.registered, 0);
    CU_ASSERT(st.requests >= 8);

    /* nothing listens on a fresh port */
    epmd_client_opts_t none = {.port = et_free_port(), .timeout_ms = 500};
    CU_ASSERT_EQUAL(epmd_client_probe(&none), EPMD_ECONNREFUSED);
    epmd_client_opts_t badhost = {
        .host = "no-such-host.invalid", .port = l.port, .timeout_ms = 500};
    CU_ASSERT_EQUAL(epmd_client_probe(&badhost), EPMD_ERESOLVE);
    loop_free(&l);
}

static void test_reregister_after_restart(void)
{
    loop_t l;
    loop_server(&l, (epmd_server_config_t){0});
    uint16_t port = l.port;
    epmd_client_opts_t o = {.port = port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_node_info_t n = node_named("phoenix", 22000);
    uint32_t cr1 = 0, cr2 = 0;
    epmd_registration_t *reg = NULL;
    CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &n, &cr1, &reg), 0);
    loop_free(&l); /* the epmd goes away: the registration connection closes */
    int64_t t0 = et_mono_ms();
    while (epmd_registration_alive(reg) && et_mono_ms() - t0 < 1000)
        et_sleep_ms(WAIT_STEP_MS);
    CU_ASSERT_FALSE(epmd_registration_alive(reg));
    CU_ASSERT_EQUAL(epmd_registration_fd(reg), -1);
    /* nothing answers: reregister gives up after its attempts */
    CU_ASSERT_EQUAL(epmd_client_reregister(reg, 2, 10, &cr2), EPMD_ECONNREFUSED);
    /* a new epmd on the same port: reregister succeeds */
    epmd_server_config_t cfg = {.port = port};
    loop_init(&l);
    CU_ASSERT_EQUAL_FATAL(epmd_server_start(l.base, &cfg, &l.srv), 0);
    l.port = port;
    loop_run(&l);
    CU_ASSERT_EQUAL(epmd_client_reregister(reg, 5, 50, &cr2), 0);
    CU_ASSERT(epmd_registration_alive(reg));
    CU_ASSERT_EQUAL(wait_lookup(port, "phoenix", 0, 1000), 0);
    epmd_registration_close(reg);
    loop_free(&l);
}

static void test_thousands_of_registrations(void)
{
    enum { COUNT = 2000 };
    et_raise_nofile();
    loop_t l;
    loop_server(&l, (epmd_server_config_t){0});
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_registration_t **regs = calloc(COUNT, sizeof *regs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(regs);
    int ok = 0;
    for (int i = 0; i < COUNT; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%05d", i);
        epmd_node_info_t n = node_named(name, (uint16_t)(10000 + i));
        uint32_t cr;
        if (epmd_client_register(&o, &n, &cr, &regs[i]) == 0)
            ok++;
    }
    CU_ASSERT_EQUAL(ok, COUNT);
    epmd_names_t names;
    CU_ASSERT_EQUAL_FATAL(epmd_client_names(&o, &names, NULL, NULL), 0);
    CU_ASSERT_EQUAL(names.count, COUNT);
    if (names.count == COUNT) { /* newest first */
        CU_ASSERT_STRING_EQUAL(names.entries[0].name, "n01999");
        CU_ASSERT_STRING_EQUAL(names.entries[COUNT - 1].name, "n00000");
    }
    epmd_names_free(&names);
    epmd_node_info_t info;
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "n01234", &info), 0);
    CU_ASSERT_EQUAL(info.port, 11234);
    for (int i = 0; i < COUNT; i++)
        epmd_registration_close(regs[i]);
    free(regs);
    int64_t t0 = et_mono_ms();
    epmd_server_stats_t st;
    do {
        et_sleep_ms(WAIT_STEP_MS);
        st = loop_stats(&l);
    } while (st.registered != 0 && et_mono_ms() - t0 < 3000);
    CU_ASSERT_EQUAL(st.registered, 0);
    loop_free(&l);
}

/* ---- raw-socket behaviour ------------------------------------------------------- */

/* alive_frame writes a framed ALIVE2 of name (node port 30000, versions
 * 6/5, no extra); returns its length. */
static size_t alive_frame(uint8_t *b, const char *name)
{
    size_t n = et_alive_body(b + 2, name, strlen(name), 30000, 6, 5, NULL, 0);
    epmd_put16(b, (uint16_t)n);
    return n + 2;
}

/* wait_acked waits (up to a second) until the peer's kernel has
 * acknowledged everything sent on fd, so the bytes wait in the server's
 * socket before the server looks. */
static void wait_acked(int fd)
{
    int64_t deadline = et_mono_ms() + 1000;
    int outq = 1;
    while (ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0 && et_mono_ms() < deadline)
        et_sleep_ms(1);
    CU_ASSERT_EQUAL(outq, 0);
}

/* step runs the stepped loop's ready callbacks without blocking until the
 * server has accepted `accepted` connections and handled `requests`
 * requests in all (up to a second), then once more so that the reaper
 * recycles what closed. */
static void step(loop_t *l, uint64_t accepted, uint64_t requests)
{
    int64_t deadline = et_mono_ms() + 1000;
    epmd_server_stats_t st;
    for (;;) {
        event_base_loop(l->base, EVLOOP_NONBLOCK);
        epmd_server_get_stats(l->srv, &st);
        if ((st.accepted >= accepted && st.requests >= requests) || et_mono_ms() > deadline)
            break;
        et_sleep_ms(1);
    }
    event_base_loop(l->base, EVLOOP_NONBLOCK);
    CU_ASSERT_EQUAL(st.accepted, accepted);
    CU_ASSERT_EQUAL(st.requests, requests);
}

static void test_answer_at_accept(void)
{
    enum { EXTRA = 200 }; /* a PORT2_RESP larger than the inline answer buffer */
    loop_t l;
    loop_server_start(&l, (epmd_server_config_t){0});
    uint8_t b[512], r[512];
    bool closed;

    /* ALIVE2 sent with the connect: registered from the accept callback */
    int reg = et_connect(l.port);
    CU_ASSERT_FATAL(reg >= 0);
    uint8_t extra[EXTRA];
    for (int i = 0; i < EXTRA; i++)
        extra[i] = (uint8_t)i;
    size_t n = et_alive_body(b + 2, "quick", 5, 30000, 6, 5, extra, EXTRA);
    b[5] = EPMD_NODE_HIDDEN; /* the body's node type */
    epmd_put16(b, (uint16_t)n);
    n += 2;
    CU_ASSERT_EQUAL(send(reg, b, n, 0), (ssize_t)n);
    wait_acked(reg);
    step(&l, 1, 1);
    CU_ASSERT_EQUAL(et_read_until_close(reg, r, 6, 1000, &closed), 6);
    CU_ASSERT_FALSE(closed);
    CU_ASSERT(r[0] == EPMD_ALIVE2_X_RESP && r[1] == 0);
    epmd_server_stats_t st;
    epmd_server_get_stats(l.srv, &st);
    CU_ASSERT_EQUAL(st.registered, 1);
    CU_ASSERT_EQUAL(st.requests, 1);
    CU_ASSERT_EQUAL(st.answered_at_accept, 1);

    /* lookups sent with the connect are answered from the accept callback,
     * many times over recycled connections, the answer outgrowing the
     * inline buffer */
    enum { LOOKUPS = 20 };
    const uint8_t req[] = "\x00\x06zquick";
    for (int i = 0; i < LOOKUPS; i++) {
        int fd = et_connect(l.port);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
        wait_acked(fd);
        step(&l, 2 + (uint64_t)i, 2 + (uint64_t)i);
        size_t got = et_read_until_close(fd, r, sizeof r, 1000, &closed);
        close(fd);
        CU_ASSERT(closed);
        epmd_node_info_t info;
        CU_ASSERT_EQUAL_FATAL(epmd_parse_port2_resp(r, got, &info), 0);
        CU_ASSERT_EQUAL(info.port, 30000);
        CU_ASSERT_EQUAL(info.node_type, EPMD_NODE_HIDDEN);
        CU_ASSERT_STRING_EQUAL(info.name, "quick");
        CU_ASSERT_EQUAL(info.extra_len, EXTRA);
        CU_ASSERT_EQUAL(memcmp(info.extra, extra, EXTRA), 0);
    }
    epmd_server_get_stats(l.srv, &st);
    CU_ASSERT_EQUAL(st.requests, 1 + LOOKUPS);
    CU_ASSERT_EQUAL(st.answered_at_accept, 1 + LOOKUPS);
    CU_ASSERT_EQUAL(st.connections, 1);

    /* nothing sent yet when accepted: the connection waits for its bytes,
     * and a request arriving in two parts is answered on the second */
    int fd = et_connect(l.port);
    CU_ASSERT_FATAL(fd >= 0);
    step(&l, 2 + LOOKUPS, 1 + LOOKUPS);
    epmd_server_get_stats(l.srv, &st);
    CU_ASSERT_EQUAL(st.connections, 2);
    CU_ASSERT_EQUAL(send(fd, req, 3, 0), 3);
    wait_acked(fd);
    step(&l, 2 + LOOKUPS, 1 + LOOKUPS);
    CU_ASSERT_EQUAL(send(fd, req + 3, sizeof req - 4, 0), (ssize_t)(sizeof req - 4));
    step(&l, 2 + LOOKUPS, 2 + LOOKUPS);
    size_t got = et_read_until_close(fd, r, sizeof r, 1000, &closed);
    close(fd);
    CU_ASSERT(closed);
    epmd_node_info_t info;
    CU_ASSERT_EQUAL(epmd_parse_port2_resp(r, got, &info), 0);
    CU_ASSERT_EQUAL(info.extra_len, EXTRA);
    /* half a request with the connect: the rest is waited for */
    fd = et_connect(l.port);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(send(fd, "\x00\x04", 2, 0), 2);
    wait_acked(fd);
    step(&l, 3 + LOOKUPS, 2 + LOOKUPS);
    CU_ASSERT_EQUAL(send(fd, "zabc", 4, 0), 4);
    step(&l, 3 + LOOKUPS, 3 + LOOKUPS);
    got = et_read_until_close(fd, r, sizeof r, 1000, &closed);
    close(fd);
    CU_ASSERT(closed);
    CU_ASSERT(got == 2 && r[0] == EPMD_PORT2_RESP && r[1] == 1);
    epmd_server_get_stats(l.srv, &st);
    CU_ASSERT_EQUAL(st.requests, 3 + LOOKUPS);
    CU_ASSERT_EQUAL(st.answered_at_accept, 1 + LOOKUPS);
    CU_ASSERT_EQUAL(st.connections, 1);

    /* the registration still lives until its connection closes */
    close(reg);
    int64_t deadline = et_mono_ms() + 1000;
    do {
        step(&l, 3 + LOOKUPS, 3 + LOOKUPS);
        epmd_server_get_stats(l.srv, &st);
    } while (st.registered > 0 && et_mono_ms() < deadline);
    CU_ASSERT_EQUAL(st.registered, 0);
    CU_ASSERT_EQUAL(st.connections, 0);
    loop_free(&l);
}

static void test_alive_socket_rules(void)
{
    loop_t l;
    loop_server(&l, (epmd_server_config_t){0});
    uint8_t b[64], r[64];
    bool closed;
    /* a second ALIVE2 on the registration socket: closed, name dropped */
    int fd = et_connect(l.port);
    CU_ASSERT_FATAL(fd >= 0);
    size_t n = alive_frame(b, "twice");
    CU_ASSERT_EQUAL(send(fd, b, n, 0), (ssize_t)n);
    CU_ASSERT_EQUAL(et_read_until_close(fd, r, 6, 1000, &closed), 6);
    CU_ASSERT_EQUAL(r[0], EPMD_ALIVE2_X_RESP);
    CU_ASSERT_EQUAL(r[1], 0);
    CU_ASSERT_EQUAL(wait_lookup(l.port, "twice", 0, 500), 0);
    CU_ASSERT_EQUAL(send(fd, b, n, 0), (ssize_t)n);
    CU_ASSERT_EQUAL(et_read_until_close(fd, r, sizeof r, 1000, &closed), 0);
    CU_ASSERT(closed);
    close(fd);
    CU_ASSERT_EQUAL(wait_lookup(l.port, "twice", EPMD_ENOTFOUND, 1000), EPMD_ENOTFOUND);
    /* a client that resets right after ALIVE2 leaves no zombie */
    fd = et_connect(l.port);
    n = alive_frame(b, "reset");
    CU_ASSERT_EQUAL(send(fd, b, n, 0), (ssize_t)n);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    CU_ASSERT_EQUAL(wait_lookup(l.port, "reset", EPMD_ENOTFOUND, 1000), EPMD_ENOTFOUND);
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_node_info_t node = node_named("reset", 1);
    epmd_registration_t *reg = NULL;
    uint32_t cr;
    CU_ASSERT_EQUAL(epmd_client_register(&o, &node, &cr, &reg), 0);
    epmd_registration_close(reg);
    loop_free(&l);
}

static void test_timeouts_and_dribble(void)
{
    epmd_server_config_t cfg = {.packet_timeout_s = 1};
    loop_t l;
    loop_server(&l, cfg);
    uint8_t r[16];
    bool closed;
    /* connect and send nothing: closed after about a second */
    int idle = et_connect(l.port);
    /* half a request, then silence: closed too */
    int half = et_connect(l.port);
    CU_ASSERT_EQUAL(send(half, "\x00\x05z", 3, 0), 3);
    /* a request dribbled one byte per 100 ms is served */
    int drib = et_connect(l.port);
    const char req[] = "\x00\x04zabc";
    for (size_t i = 0; i < sizeof req - 1; i++) {
        CU_ASSERT_EQUAL(send(drib, req + i, 1, MSG_NOSIGNAL), 1);
        et_sleep_ms(100);
    }
    CU_ASSERT_EQUAL(et_read_until_close(drib, r, sizeof r, 1000, &closed), 2);
    CU_ASSERT(closed);
    CU_ASSERT(r[0] == EPMD_PORT2_RESP && r[1] == 1);
    close(drib);
    int64_t t0 = et_mono_ms();
    CU_ASSERT_EQUAL(et_read_until_close(idle, r, sizeof r, 3000, &closed), 0);
    CU_ASSERT(closed);
    CU_ASSERT_EQUAL(et_read_until_close(half, r, sizeof r, 3000, &closed), 0);
    CU_ASSERT(closed);
    CU_ASSERT(et_mono_ms() - t0 < 3000);
    close(idle);
    close(half);
    /* slower than packet_timeout: closed before the request completes */
    int slow = et_connect(l.port);
    CU_ASSERT_EQUAL(send(slow, "\x00", 1, 0), 1);
    et_sleep_ms(1700);
    (void)send(slow, "\x01n", 2, MSG_NOSIGNAL);
    CU_ASSERT_EQUAL(et_read_until_close(slow, r, sizeof r, 1000, &closed), 0);
    CU_ASSERT(closed);
    close(slow);
    epmd_server_stats_t st = loop_stats(&l);
    CU_ASSERT(st.timed_out >= 3);
    loop_free(&l);
}

static void test_connection_cap_eviction(void)
{
    enum { CAP = 50 };
    epmd_server_config_t cfg = {.max_connections = CAP};
    loop_t l;
    loop_server(&l, cfg);
    int fds[CAP + 10];
    for (int i = 0; i < CAP + 10; i++) {
        fds[i] = et_connect(l.port);
        CU_ASSERT(fds[i] >= 0);
    }
    /* with the cap full of idle connections, a lookup is still served */
    CU_ASSERT_EQUAL(wait_lookup(l.port, "nobody", EPMD_ENOTFOUND, 1000), EPMD_ENOTFOUND);
    epmd_server_stats_t st = loop_stats(&l);
    CU_ASSERT(st.evicted >= 10);
    CU_ASSERT(st.connections <= CAP);
    /* the oldest idle connection was the one evicted */
    uint8_t r[4];
    bool closed;
    CU_ASSERT_EQUAL(et_read_until_close(fds[0], r, sizeof r, 1000, &closed), 0);
    CU_ASSERT(closed);
    for (int i = 0; i < CAP + 10; i++)
        close(fds[i]);
    loop_free(&l);

    /* registrations are never evicted: a full house of them refuses others */
    cfg.max_connections = 3;
    loop_server(&l, cfg);
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = 1000};
    epmd_registration_t *regs[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        epmd_node_info_t n = node_named(name, 1);
        uint32_t cr;
        CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &n, &cr, &regs[i]), 0);
    }
    CU_ASSERT_EQUAL(epmd_client_probe(&o), EPMD_EIO);
    epmd_registration_close(regs[0]);
    CU_ASSERT_EQUAL(wait_lookup(l.port, "r1", 0, 1000), 0);
    CU_ASSERT(epmd_registration_alive(regs[1]));
    epmd_registration_close(regs[1]);
    epmd_registration_close(regs[2]);
    loop_free(&l);
}

/* cpu_ms returns the user+system CPU time of pid in milliseconds. */
static long cpu_ms(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    long utime = 0, stime = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
        return -1;
    return (utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

/* spawn_limited_server forks a server process limited to nofile
 * descriptors on port; returns its pid (or -1). */
static pid_t spawn_limited_server(uint16_t port, rlim_t nofile)
{
    int ready[2];
    if (pipe(ready) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct rlimit rl = {nofile, nofile};
        setrlimit(RLIMIT_NOFILE, &rl);
        struct event_base *base = event_base_new();
        epmd_server_config_t cfg = {.port = port, .max_connections = 1000};
        epmd_server_t *srv = NULL;
        char ok = base && epmd_server_start(base, &cfg, &srv) == 0 ? 'y' : 'n';
        (void)write(ready[1], &ok, 1);
        if (ok == 'y')
            event_base_dispatch(base);
        _exit(0);
    }
    close(ready[1]);
    char ok = 'n';
    if (read(ready[0], &ok, 1) != 1 || ok != 'y') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    close(ready[0]);
    return pid;
}

/* Deadline of a lookup at a server out of descriptors: generous, because
 * on a loaded machine the server may get little CPU for seconds; that it
 * does not spin meanwhile is checked from its CPU time instead. */
#define EMFILE_LOOKUP_MS 10000
/* CPU a non-spinning server may use while a lookup waits: a fixed
 * allowance plus a tenth of the wait.  A spinning one gets a share of a
 * core for the whole wait even on a loaded 2-core machine. */
#define EMFILE_CPU_ALLOW_MS 300
#define EMFILE_CPU_PER_WAIT 10

/* lookup_no_spin waits (up to EMFILE_LOOKUP_MS) for a PORT_PLEASE2 of name
 * at the server process pid to give want, and asserts that the server's
 * CPU time during the wait stayed small; returns the last answer. */
static int lookup_no_spin(pid_t pid, uint16_t port, const char *name, int want)
{
    long c0 = cpu_ms(pid);
    int64_t t0 = et_mono_ms();
    int rc = wait_lookup(port, name, want, EMFILE_LOOKUP_MS);
    int64_t waited = et_mono_ms() - t0;
    long c1 = cpu_ms(pid);
    CU_ASSERT(c0 >= 0 && c1 >= 0);
    CU_ASSERT(c1 - c0 < EMFILE_CPU_ALLOW_MS + waited / EMFILE_CPU_PER_WAIT);
    if (rc != want || waited > 2000)
        fprintf(stderr, "lookup of %s: %d after %lld ms, server CPU %ld ms\n", name, rc,
                (long long)waited, c1 - c0);
    return rc;
}

static void test_emfile_does_not_spin(void)
{
    enum { CHILD_NOFILE = 48, CLIENTS = 120 };
    /* 1: the descriptors are taken by idle request connections */
    uint16_t port = et_free_port();
    pid_t pid = spawn_limited_server(port, CHILD_NOFILE);
    CU_ASSERT_FATAL(pid > 0);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        fds[i] = et_connect(port);
    et_sleep_ms(300);
    long c0 = cpu_ms(pid);
    et_sleep_ms(1500);
    long c1 = cpu_ms(pid);
    /* out of descriptors with clients waiting: the loop must stay idle */
    CU_ASSERT(c0 >= 0 && c1 >= 0);
    CU_ASSERT(c1 - c0 < 300);
    /* and it still serves: idle connections are evicted to make room */
    CU_ASSERT_EQUAL(lookup_no_spin(pid, port, "x", EPMD_ENOTFOUND), EPMD_ENOTFOUND);
    for (int i = 0; i < CLIENTS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    CU_ASSERT_EQUAL(lookup_no_spin(pid, port, "x", EPMD_ENOTFOUND), EPMD_ENOTFOUND);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    /* 2: the descriptors are taken by registrations (never evicted): new
     * clients are dropped, slowly, without spinning */
    port = et_free_port();
    pid = spawn_limited_server(port, CHILD_NOFILE);
    CU_ASSERT_FATAL(pid > 0);
    epmd_client_opts_t o = {.port = port, .timeout_ms = 300};
    epmd_registration_t *regs[CHILD_NOFILE];
    int nregs = 0;
    for (int i = 0; i < CHILD_NOFILE; i++) {
        char name[16];
        snprintf(name, sizeof name, "full%d", i);
        epmd_node_info_t n = node_named(name, 1);
        uint32_t cr;
        if (epmd_client_register(&o, &n, &cr, &regs[nregs]) == 0)
            nregs++;
    }
    CU_ASSERT(nregs > 10 && nregs < CHILD_NOFILE);
    for (int i = 0; i < CLIENTS / 2; i++)
        fds[i] = et_connect(port);
    et_sleep_ms(200);
    c0 = cpu_ms(pid);
    et_sleep_ms(1500);
    c1 = cpu_ms(pid);
    CU_ASSERT(c1 - c0 < 300);
    for (int i = 0; i < CLIENTS / 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* a registration leaving frees a descriptor: service resumes */
    epmd_registration_close(regs[0]);
    CU_ASSERT_EQUAL(lookup_no_spin(pid, port, "full1", 0), 0);
    for (int i = 1; i < nregs; i++)
        epmd_registration_close(regs[i]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- STOP and KILL ------------------------------------------------------------------ */

static bool killed_flag;

static void on_kill_flag(void *ud)
{
    loop_t *l = ud;
    killed_flag = true;
    event_base_loopexit(l->base, NULL);
}

static void test_stop_and_kill(void)
{
    epmd_server_config_t cfg = {.relaxed_command_check = true};
    loop_t l;
    loop_server(&l, cfg);
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_node_info_t n = node_named("victim", 1);
    epmd_registration_t *reg = NULL;
    uint32_t cr;
    CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &n, &cr, &reg), 0);
    char answer[32];
    CU_ASSERT_EQUAL(epmd_client_stop(&o, "victim", answer, sizeof answer), 0);
    CU_ASSERT_STRING_EQUAL(answer, "STOPPED");
    int64_t t0 = et_mono_ms();
    while (epmd_registration_alive(reg) && et_mono_ms() - t0 < 1000)
        et_sleep_ms(WAIT_STEP_MS);
    CU_ASSERT_FALSE(epmd_registration_alive(reg));
    epmd_registration_close(reg);
    CU_ASSERT_EQUAL(epmd_client_stop(&o, "victim", answer, sizeof answer), 0);
    CU_ASSERT_STRING_EQUAL(answer, "NOEXISTSTOPPED");
    /* relaxed KILL with a live node: OK; no on_kill: the server stops serving */
    CU_ASSERT_EQUAL(epmd_client_register(&o, &n, &cr, &reg), 0);
    CU_ASSERT_EQUAL(epmd_client_kill(&o), 0);
    t0 = et_mono_ms();
    while (epmd_registration_alive(reg) && et_mono_ms() - t0 < 1000)
        et_sleep_ms(WAIT_STEP_MS);
    CU_ASSERT_FALSE(epmd_registration_alive(reg));
    epmd_registration_close(reg);
    epmd_client_opts_t quick = {.port = l.port, .timeout_ms = 300};
    CU_ASSERT_EQUAL(epmd_client_probe(&quick), EPMD_ECONNREFUSED);
    loop_free(&l);

    /* with on_kill the owner decides (here: leave the loop) */
    killed_flag = false;
    loop_init(&l);
    cfg = (epmd_server_config_t){.on_kill = on_kill_flag, .kill_ud = &l};
    int rc = EPMD_EADDRINUSE;
    for (int i = 0; i < 10 && rc == EPMD_EADDRINUSE; i++) {
        cfg.port = et_free_port();
        rc = epmd_server_start(l.base, &cfg, &l.srv);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    l.port = cfg.port;
    loop_run(&l);
    o.port = l.port;
    CU_ASSERT_EQUAL(epmd_client_kill(&o), 0);
    pthread_join(l.th, NULL);
    l.running = false;
    CU_ASSERT(killed_flag);
    loop_free(&l);
}

static void test_address_list(void)
{
    epmd_server_config_t cfg = {.addresses = "127.0.0.1, ::1"};
    loop_t l;
    loop_server(&l, cfg);
    epmd_client_opts_t o = {.host = "127.0.0.1", .port = l.port, .timeout_ms = 1000};
    CU_ASSERT_EQUAL(epmd_client_probe(&o), 0);
    loop_free(&l);
    loop_init(&l);
    cfg.addresses = "not-an-address";
    cfg.port = et_free_port();
    CU_ASSERT_EQUAL(epmd_server_start(l.base, &cfg, &l.srv), EPMD_EINVAL);
    CU_ASSERT_PTR_NULL(l.srv);
    event_base_free(l.base);
    /* a taken port reports EADDRINUSE (another epmd runs) */
    loop_server(&l, (epmd_server_config_t){0});
    struct event_base *b2 = event_base_new();
    epmd_server_t *s2 = NULL;
    epmd_server_config_t c2 = {.port = l.port};
    CU_ASSERT_EQUAL(epmd_server_start(b2, &c2, &s2), EPMD_EADDRINUSE);
    event_base_free(b2);
    loop_free(&l);
}

/* ---- debug delays (-delay_accept, -delay_write) ------------------------------------ */

enum { DELAY_CONNS = 2 };

/* A request connection of the delay tests: what it got and when it ended. */
typedef struct timed_conn {
    int fd;
    uint8_t buf[256];
    size_t got;
    int64_t closed_ms; /* -1 while open */
} timed_conn_t;

/* read_all_timed reads every connection of cs until each one is closed by
 * the server (or timeout_ms passes), noting when each closed. */
static void read_all_timed(timed_conn_t *cs, int n, int timeout_ms)
{
    int64_t deadline = et_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd p[DELAY_CONNS];
        int open = 0;
        for (int i = 0; i < n; i++) {
            p[i] = (struct pollfd){.fd = cs[i].closed_ms < 0 ? cs[i].fd : -1, .events = POLLIN};
            open += cs[i].closed_ms < 0;
        }
        int left = (int)(deadline - et_mono_ms());
        if (open == 0 || left <= 0)
            return;
        if (poll(p, (nfds_t)n, left) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(cs[i].fd, cs[i].buf + cs[i].got, sizeof cs[i].buf - cs[i].got, 0);
            if (r > 0)
                cs[i].got += (size_t)r;
            else
                cs[i].closed_ms = et_mono_ms();
        }
    }
}

/* send_requests connects n sockets to port and sends each a request at
 * once: NAMES on the first, PORT_PLEASE2 for name on the others. */
static void send_requests(timed_conn_t *cs, int n, uint16_t port, const char *name)
{
    for (int i = 0; i < n; i++) {
        memset(&cs[i], 0, sizeof cs[i]);
        cs[i].closed_ms = -1;
        cs[i].fd = et_connect(port);
        CU_ASSERT_FATAL(cs[i].fd >= 0);
        uint8_t req[64];
        size_t len;
        if (i == 0) {
            req[2] = EPMD_NAMES_REQ;
            len = 1;
        } else {
            len = strlen(name);
            req[2] = EPMD_PORT2_REQ;
            memcpy(req + 3, name, len);
            len++;
        }
        epmd_put16(req, (uint16_t)len);
        CU_ASSERT_EQUAL(send(cs[i].fd, req, len + 2, 0), (ssize_t)(len + 2));
    }
}

/* loop_latency_ms is how long the loop thread takes to run a call: near 0
 * unless something blocks the loop. */
static int64_t loop_latency_ms(loop_t *l)
{
    int64_t t0 = et_mono_ms();
    (void)loop_stats(l);
    return et_mono_ms() - t0;
}

static void test_delay_write(void)
{
    /* answers 2 s late, with a 1 s packet timeout that must not cut them */
    loop_t l;
    loop_server(&l, (epmd_server_config_t){.delay_write_s = 2, .packet_timeout_s = 1});
    epmd_client_opts_t o = {.port = l.port, .timeout_ms = 5000};
    epmd_node_info_t a = node_named("slowpoke", 23456);
    uint32_t cr = 0;
    epmd_registration_t *reg = NULL;
    int64_t t0 = et_mono_ms();
    CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &a, &cr, &reg), 0);
    CU_ASSERT(et_mono_ms() - t0 >= 1900);

    /* two requests at once: both answered after one delay (OTP's epmd
     * sleeps in its only thread: the second would come after two), and
     * the loop serves calls meanwhile */
    timed_conn_t cs[DELAY_CONNS];
    t0 = et_mono_ms();
    send_requests(cs, DELAY_CONNS, l.port, "slowpoke");
    et_sleep_ms(300);
    CU_ASSERT(loop_latency_ms(&l) < 500);
    read_all_timed(cs, DELAY_CONNS, 6000);
    for (int i = 0; i < DELAY_CONNS; i++) {
        CU_ASSERT(cs[i].closed_ms - t0 >= 1900);
        CU_ASSERT(cs[i].closed_ms - t0 < 3500);
        close(cs[i].fd);
    }
    CU_ASSERT(cs[0].got > 4 && epmd_get32(cs[0].buf) == l.port);
    CU_ASSERT(memmem(cs[0].buf + 4, cs[0].got - 4, "name slowpoke at port 23456\n", 28) != NULL);
    epmd_node_info_t info;
    CU_ASSERT_EQUAL(epmd_parse_port2_resp(cs[1].buf, cs[1].got, &info), 0);
    CU_ASSERT_EQUAL(info.port, 23456);

    /* a registration closed while its answer waits is unregistered */
    epmd_registration_close(reg);
    int fd = et_connect(l.port);
    CU_ASSERT_FATAL(fd >= 0);
    uint8_t b[64];
    size_t n = et_alive_body(b + 2, "gone", 4, 23457, 6, 5, NULL, 0);
    epmd_put16(b, (uint16_t)n);
    CU_ASSERT_EQUAL(send(fd, b, n + 2, 0), (ssize_t)(n + 2));
    et_sleep_ms(300);
    CU_ASSERT_EQUAL(loop_stats(&l).registered, 1); /* "gone" only: slowpoke closed */
    close(fd);
    int64_t deadline = et_mono_ms() + 1000;
    while (loop_stats(&l).registered > 0 && et_mono_ms() < deadline)
        et_sleep_ms(WAIT_STEP_MS);
    CU_ASSERT_EQUAL(loop_stats(&l).registered, 0);
    loop_free(&l);
}

static void test_delay_accept(void)
{
    loop_t l;
    loop_server(&l, (epmd_server_config_t){.delay_accept_s = 1});
    /* two connections pending at once: one is accepted per delay, as
     * OTP's epmd sleeps before each accept; the loop runs meanwhile */
    timed_conn_t cs[DELAY_CONNS];
    int64_t t0 = et_mono_ms();
    send_requests(cs, DELAY_CONNS, l.port, "nobody");
    et_sleep_ms(300);
    CU_ASSERT(loop_latency_ms(&l) < 500);
    CU_ASSERT_EQUAL(loop_stats(&l).accepted, 0);
    read_all_timed(cs, DELAY_CONNS, 6000);
    int64_t first = cs[0].closed_ms < cs[1].closed_ms ? cs[0].closed_ms : cs[1].closed_ms;
    int64_t second = cs[0].closed_ms < cs[1].closed_ms ? cs[1].closed_ms : cs[0].closed_ms;
    CU_ASSERT(first - t0 >= 900 && first - t0 < 1800);
    CU_ASSERT(second - t0 >= 1900 && second - t0 < 3000);
    CU_ASSERT(cs[0].got >= 4 && epmd_get32(cs[0].buf) == l.port);
    CU_ASSERT(cs[1].got == 2 && cs[1].buf[0] == EPMD_PORT2_RESP && cs[1].buf[1] == 1);
    for (int i = 0; i < DELAY_CONNS; i++)
        close(cs[i].fd);
    epmd_server_stats_t st = loop_stats(&l);
    CU_ASSERT_EQUAL(st.accepted, 2);
    CU_ASSERT_EQUAL(st.requests, 2);
    loop_free(&l);
}

/* ---- keeper: embedded start and replacement --------------------------------------- */

typedef struct keeper_obs {
    pthread_mutex_t mu;
    int registered;
    int lost;
    uint32_t creation;
} keeper_obs_t;

static void on_change(void *ud, int err, uint32_t creation)
{
    keeper_obs_t *o = ud;
    pthread_mutex_lock(&o->mu);
    if (err == 0) {
        o->registered++;
        o->creation = creation;
    } else {
        o->lost++;
    }
    pthread_mutex_unlock(&o->mu);
}

static int obs_registered(keeper_obs_t *o)
{
    pthread_mutex_lock(&o->mu);
    int n = o->registered;
    pthread_mutex_unlock(&o->mu);
    return n;
}

static bool wait_registered(keeper_obs_t *o, int count, int timeout_ms)
{
    int64_t deadline = et_mono_ms() + timeout_ms;
    while (obs_registered(o) < count && et_mono_ms() < deadline)
        et_sleep_ms(WAIT_STEP_MS);
    return obs_registered(o) >= count;
}

typedef struct keeper_start {
    loop_t *l;
    epmd_keeper_config_t cfg;
    epmd_keeper_t *k;
    int rc;
} keeper_start_t;

static void keeper_start_fn(void *arg)
{
    keeper_start_t *s = arg;
    s->rc = epmd_keeper_start(s->l->base, &s->cfg, &s->k);
}

static void keeper_stop_fn(void *arg)
{
    keeper_start_t *s = arg;
    epmd_keeper_stop(s->k);
    s->k = NULL;
}

static void keeper_embedded_fn(void *arg)
{
    keeper_start_t *s = arg;
    s->rc = epmd_keeper_embedded(s->k) != NULL;
}

/* keeper_start_in starts a keeper for name on loop l (epmd at port, with
 * or without the embedded fallback) and waits until it has registered. */
static void keeper_start_in(loop_t *l, keeper_start_t *s, const char *name, uint16_t port,
                            bool fallback, keeper_obs_t *obs)
{
    memset(s, 0, sizeof *s);
    s->l = l;
    s->cfg.node = node_named(name, 25000);
    s->cfg.epmd_port = port;
    s->cfg.retry_delay_ms = 50;
    s->cfg.timeout_ms = 1000;
    s->cfg.embedded_fallback = fallback;
    s->cfg.on_change = on_change;
    s->cfg.ud = obs;
    loop_call(l, keeper_start_fn, s);
    CU_ASSERT_EQUAL_FATAL(s->rc, 0);
    CU_ASSERT_FATAL(wait_registered(obs, 1, 3000));
}

/* keeper_stop_in stops s's keeper in its loop, then frees the loop. */
static void keeper_stop_in(loop_t *l, keeper_start_t *s)
{
    loop_call(l, keeper_stop_fn, s);
    loop_free(l);
}

/* Two nodes of a keeper test on one epmd port: A and B, each with its own
 * loop thread, observer and keeper. */
typedef struct keeper_pair {
    uint16_t port;
    keeper_obs_t oa, ob;
    loop_t la, lb;
    keeper_start_t ka, kb;
} keeper_pair_t;

/* keeper_pair_start picks a free port, starts both loop threads of p
 * (whose observer mutexes the caller has initialised), and starts node A's keeper (named
 * name_a, with the embedded fallback) until it has registered; B's keeper
 * is the test's to start. */
static void keeper_pair_start(keeper_pair_t *p, const char *name_a)
{
    p->port = et_free_port();
    loop_init(&p->la);
    loop_run(&p->la);
    loop_init(&p->lb);
    loop_run(&p->lb);
    keeper_start_in(&p->la, &p->ka, name_a, p->port, true, &p->oa);
}

static void test_keeper_embedded_then_system(void)
{
    keeper_pair_t p = {.oa = {.mu = PTHREAD_MUTEX_INITIALIZER},
                       .ob = {.mu = PTHREAD_MUTEX_INITIALIZER}};
    /* node A finds no epmd: starts an embedded one and registers with it,
     * from the same loop */
    keeper_pair_start(&p, "nodea");
    loop_call(&p.la, keeper_embedded_fn, &p.ka);
    CU_ASSERT_EQUAL(p.ka.rc, 1);
    epmd_client_opts_t o = {.port = p.port, .timeout_ms = CLIENT_TIMEOUT_MS};
    epmd_node_info_t info;
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "nodea", &info), 0);
    /* node B registers with A's embedded epmd */
    keeper_start_in(&p.lb, &p.kb, "nodeb", p.port, false, &p.ob);
    loop_call(&p.lb, keeper_embedded_fn, &p.kb);
    CU_ASSERT_EQUAL(p.kb.rc, 0);
    CU_ASSERT_EQUAL(wait_lookup(p.port, "nodeb", 0, 1000), 0);
    /* A goes away with its embedded epmd; the system epmd (OTP's) takes the
     * port; B notices and registers there */
    keeper_stop_in(&p.la, &p.ka);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)p.port);
    pid_t sys = fork();
    CU_ASSERT_FATAL(sys >= 0);
    if (sys == 0) {
        int null = open("/dev/null", 0);
        dup2(null, 2);
        execlp("epmd", "epmd", "-port", portstr, (char *)NULL);
        _exit(127);
    }
    CU_ASSERT(wait_registered(&p.ob, 2, 5000));
    CU_ASSERT_EQUAL(wait_lookup(p.port, "nodeb", 0, 2000), 0);
    CU_ASSERT_EQUAL(epmd_client_port_please(&o, "nodea", &info), EPMD_ENOTFOUND);
    epmd_names_t names;
    CU_ASSERT_EQUAL(epmd_client_names(&o, &names, NULL, NULL), 0);
    CU_ASSERT_EQUAL(names.count, 1);
    epmd_names_free(&names);
    keeper_stop_in(&p.lb, &p.kb);
    kill(sys, SIGTERM);
    waitpid(sys, NULL, 0);
}

static void test_keeper_takes_over(void)
{
    keeper_pair_t p = {.oa = {.mu = PTHREAD_MUTEX_INITIALIZER},
                       .ob = {.mu = PTHREAD_MUTEX_INITIALIZER}};
    keeper_pair_start(&p, "first");
    keeper_start_in(&p.lb, &p.kb, "second", p.port, true, &p.ob);
    /* the hosting node leaves: the other one starts its own embedded epmd */
    keeper_stop_in(&p.la, &p.ka);
    CU_ASSERT(wait_registered(&p.ob, 2, 3000));
    loop_call(&p.lb, keeper_embedded_fn, &p.kb);
    CU_ASSERT_EQUAL(p.kb.rc, 1);
    CU_ASSERT_EQUAL(wait_lookup(p.port, "second", 0, 1000), 0);
    uint32_t c1 = p.ob.creation;
    CU_ASSERT(c1 >= 4);
    keeper_stop_in(&p.lb, &p.kb);
}

/* A keeper whose embedded epmd has both debug delays registers with it
 * from the same loop, which keeps running meanwhile. */
static void test_keeper_embedded_with_delays(void)
{
    keeper_obs_t obs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    loop_t l;
    loop_init(&l);
    loop_run(&l);
    keeper_start_t s;
    memset(&s, 0, sizeof s);
    s.l = &l;
    s.cfg.node = node_named("patient", 25001);
    s.cfg.epmd_port = et_free_port();
    s.cfg.retry_delay_ms = 50;
    s.cfg.timeout_ms = 4000;
    s.cfg.embedded_fallback = true;
    s.cfg.embedded.delay_accept_s = 1;
    s.cfg.embedded.delay_write_s = 1;
    s.cfg.on_change = on_change;
    s.cfg.ud = &obs;
    int64_t t0 = et_mono_ms();
    loop_call(&l, keeper_start_fn, &s);
    CU_ASSERT_EQUAL_FATAL(s.rc, 0);
    et_sleep_ms(500);
    CU_ASSERT_EQUAL(obs_registered(&obs), 0);
    int64_t t1 = et_mono_ms();
    loop_call(&l, keeper_embedded_fn, &s);
    CU_ASSERT(et_mono_ms() - t1 < 500);
    CU_ASSERT_EQUAL(s.rc, 1);
    CU_ASSERT(wait_registered(&obs, 1, 5000));
    CU_ASSERT(et_mono_ms() - t0 >= 1900);
    pthread_mutex_lock(&obs.mu);
    CU_ASSERT_EQUAL(obs.lost, 0);
    pthread_mutex_unlock(&obs.mu);
    keeper_stop_in(&l, &s);
}

static const gd_test_case_t gd_tests[] = {
    {"client_basic", test_client_basic},
    {"reregister_after_restart", test_reregister_after_restart},
    {"thousands_of_registrations", test_thousands_of_registrations},
    {"alive_socket_rules", test_alive_socket_rules},
    {"timeouts_and_dribble", test_timeouts_and_dribble},
    {"connection_cap_eviction", test_connection_cap_eviction},
    {"answer_at_accept", test_answer_at_accept},
    {"emfile_does_not_spin", test_emfile_does_not_spin},
    {"stop_and_kill", test_stop_and_kill},
    {"address_list", test_address_list},
    {"delay_write", test_delay_write},
    {"delay_accept", test_delay_accept},
    {"keeper_embedded_then_system", test_keeper_embedded_then_system},
    {"keeper_takes_over", test_keeper_takes_over},
    {"keeper_embedded_with_delays", test_keeper_embedded_with_delays},
    {NULL, NULL},
};

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0)
        return 2;
    return gd_run_tests("epmd_server", gd_tests);
}
