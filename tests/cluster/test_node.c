/*
 * test_node.c — a node started in-process (embedded EPMD on a free port),
 * driven over real sockets by a raw peer that uses the handshake state
 * machine as initiator (node_peer_util.c): echo round trips, a wrong cookie, half-open
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
#include "node_peer_util.h"
#include "sched/sched.h"

static void test_echo(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("hello")));
    term_t l;
    CU_ASSERT_FATAL(
        heap_make_list(&p.h, (term_t[]){term_make_small(1), term_make_small(2)}, 2, &l) == 0);
    CU_ASSERT(np_echo_round_trip(&p, l));
    np_peer_close(&p);
}

static void test_wrong_cookie(void)
{
    np_peer_t p;
    CU_ASSERT(np_peer_connect(&p, "not-the-cookie-at-all", NULL, 0, 0) == DIST_ECLOSED);
    np_peer_close(&p);
    np_peer_t q;
    CU_ASSERT_FATAL(np_peer_connect(&q, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&q, heap_atom("still_serving")));
    np_peer_close(&q);
}

static void test_half_open(void)
{
    np_start_node(0);
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = np_tcp_connect(0);
    /* net_setuptime is 1 s here. */
    for (int i = 0; i < 20; i++) {
        CU_ASSERT(np_closed_within(fds[i], 3000));
        close(fds[i]);
    }
    /* A handshake message cut short waits, then times out too (D22). */
    int fd = np_tcp_connect(0);
    CU_ASSERT(write(fd, "\x00\x13N\x00", 4) == 4);
    CU_ASSERT(np_closed_within(fd, 3000));
    close(fd);
    /* A 64 KiB handshake length is refused at once (D21 for handshakes). */
    fd = np_tcp_connect(0);
    CU_ASSERT(write(fd, "\xff\xffN", 3) == 3);
    CU_ASSERT(np_closed_within(fd, 500));
    close(fd);
}

static void test_ticks(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    /* ticktime 2 s: a tick every 0.5 s of write silence. */
    size_t len = 0;
    uint8_t buf[64];
    for (int t = 0; t < 1500 && len < 4; t += 50)
        CU_ASSERT(np_read_some(p.fd, buf, sizeof buf, &len, 50));
    CU_ASSERT(len >= 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
    /* Silence from us: dropped after the ticktime (net_tick_timeout). */
    CU_ASSERT(np_closed_within(p.fd, 4000));
    np_peer_close(&p);
    /* Answering with ticks keeps it up. */
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    for (int i = 0; i < 30; i++) {
        CU_ASSERT(write(p.fd, "\0\0\0\0", 4) == 4);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after_ticks")));
    np_peer_close(&p);
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
        np_peer_t p;
        CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
        uint8_t b[64] = {0, 0, 0, (uint8_t)lens[i]};
        memcpy(b + 4, frames[i], lens[i]);
        CU_ASSERT(write(p.fd, b, 4 + lens[i]) == (ssize_t)(4 + lens[i]));
        bool closed = np_closed_within(p.fd, 2000);
        CU_ASSERT(closed);
        if (!closed)
            fprintf(stderr, "frame %zu did not close the connection\n", i);
        np_peer_close(&p);
    }
    /* D21: a 4 GB length closes at once, before any of it arrives. */
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(write(p.fd, "\xff\xff\xff\xff", 4) == 4);
    CU_ASSERT(np_closed_within(p.fd, 1000));
    np_peer_close(&p);
    /* A good connection opened before a bad one keeps working after it. */
    np_peer_t good, bad;
    CU_ASSERT_FATAL(np_peer_connect(&good, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT_FATAL(np_peer_connect(&bad, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(write(bad.fd, "\x00\x00\x00\x01\x83", 5) == 5);
    CU_ASSERT(np_closed_within(bad.fd, 2000));
    CU_ASSERT(np_echo_round_trip(&good, heap_atom("unharmed")));
    np_peer_close(&bad);
    np_peer_close(&good);
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
    /* Contents read as OTP 25's auth:check_cookie reads them: the
     * printable bytes up to the first other one, then only newlines,
     * returns and spaces; a long file whole. */
    static char big[3001];
    memset(big, 'q', 3000);
    const struct {
        const char *text, *cookie; /* NULL: refused */
    } files[] = {
        {"abc \n", "abc "},      {"  abc\r\n\n  ", "  abc"}, {"abc", "abc"},
        {"abc\ndef\n", NULL},    {"ab\tc\n", NULL},          {"\n", NULL},
        {"caf\xc3\xa9\n", NULL}, {"abc\n\t", NULL},          {big, big},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT(write(fd, files[i].text, strlen(files[i].text)) ==
                  (ssize_t)strlen(files[i].text));
        close(fd);
        c1 = NULL;
        int rc = cluster_cookie_load(path, &c1, &created);
        if (files[i].cookie == NULL) {
            CU_ASSERT(rc == GD_EINVAL);
        } else {
            CU_ASSERT(rc == 0 && c1 != NULL && strcmp(c1, files[i].cookie) == 0);
        }
        if ((rc == 0) != (files[i].cookie != NULL))
            fprintf(stderr, "cookie file %zu: rc %d\n", i, rc);
        free(c1);
        unlink(path);
    }
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

/* A name registered in the node's EPMD for a listening socket of ours
 * that accepts and never answers (the node's own attempt stalls there). */
typedef struct {
    int lfd;
    char full[64];
    uint32_t creation;
    epmd_registration_t *reg;
} silent_peer_t;

static void silent_peer_start(silent_peer_t *sp, const char *alive)
{
    np_start_node(0);
    uint16_t port;
    sp->lfd = listen_any(&port);
    epmd_client_opts_t eo = {.port = np_epmd_port(), .timeout_ms = 2000};
    epmd_node_info_t info = {
        .port = port, .node_type = EPMD_NODE_NORMAL, .high_vsn = 6, .low_vsn = 5};
    snprintf(info.name, sizeof info.name, "%s", alive);
    sp->reg = NULL;
    CU_ASSERT_FATAL(epmd_client_register(&eo, &info, &sp->creation, &sp->reg) == 0);
    snprintf(sp->full, sizeof sp->full, "%s@localhost", alive);
}

static void silent_peer_stop(silent_peer_t *sp)
{
    close(sp->lfd);
    epmd_registration_close(sp->reg);
}

static bool read_full(int fd, uint8_t *buf, size_t n)
{
    while (n > 0) {
        struct pollfd pl = {.fd = fd, .events = POLLIN};
        if (poll(&pl, 1, 3000) != 1)
            return false;
        ssize_t r = read(fd, buf, n);
        if (r <= 0)
            return false;
        buf += r;
        n -= (size_t)r;
    }
    return true;
}

static void simultaneous(const char *alive, bool peer_wins, bool peer_answers_nok)
{
    silent_peer_t sp;
    silent_peer_start(&sp, alive);
    int lfd = sp.lfd;
    const char *full = sp.full;
    uint32_t creation = sp.creation;
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t to;
    CU_ASSERT_FATAL(heap_make_ext_pid(&h, heap_atom(full), 5, 0, creation, &to) == 0);
    CU_ASSERT(sched_send(NULL, to, heap_atom("queued_while_connecting")) == 0);
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    CU_ASSERT_FATAL(poll(&pl, 1, 3000) == 1);
    int node_side = accept(lfd, NULL, NULL);
    CU_ASSERT_FATAL(node_side >= 0);
    if (peer_answers_nok) {
        /* Our accepting side answers the node's name message with "nok"
         * and hangs up before our own attempt arrives. */
        uint8_t hdr[2], body[512];
        CU_ASSERT_FATAL(read_full(node_side, hdr, 2));
        size_t blen = (size_t)hdr[0] << 8 | hdr[1];
        CU_ASSERT_FATAL(blen <= sizeof body && read_full(node_side, body, blen));
        CU_ASSERT(body[0] == 'N');
        CU_ASSERT(write(node_side, "\x00\x04snok", 6) == 6);
        close(node_side);
        node_side = -1;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    np_peer_t p;
    int rc = np_peer_connect(&p, NP_COOKIE, full, 0, 0);
    if (peer_wins) {
        CU_ASSERT_FATAL(rc == 1);
        dist_msg_t m;
        CU_ASSERT(np_peer_recv(&p, &m, 3000));
        CU_ASSERT(m.op == DOP_SEND_SENDER && m.payload == heap_atom("queued_while_connecting"));
        if (node_side >= 0)
            CU_ASSERT(np_closed_within(node_side, 2000)); /* its own attempt is dropped */
        np_peer_close(&p);
    } else {
        CU_ASSERT(rc == DIST_ENOK);
        if (rc != DIST_ENOK)
            fprintf(stderr, "simultaneous: got %d, %zu bytes buffered\n", rc, p.in_len);
        np_peer_close(&p);
    }
    if (node_side >= 0)
        close(node_side);
    silent_peer_stop(&sp);
    heap_destroy(&h);
}

static void test_simultaneous(void)
{
    simultaneous("zzsim", true, false);
    simultaneous("aasim", false, false);
    /* The peer answers the node's own attempt "nok" (it wins) before its
     * attempt arrives: the node keeps what it queued for the peer's
     * connection (dist_util waits to be taken over), nothing is lost. */
    simultaneous("zznok", true, true);
}

/* A 512 KiB binary sent while the connection is still being set up (a
 * name registered for a socket of ours that accepts and never answers,
 * then the peer dials in under that name and wins, as in D38) is held by
 * reference until the connection is up, not copied into the pending
 * queue: the binary's count says the queue holds it.  It then arrives
 * whole, between the small messages sent before and after it, from the
 * fragment writer (peer with fragments) or framed whole (peer without),
 * and every reference the connection took is dropped once it went out. */
static void big_send_while_connecting(const char *alive, uint64_t peer_flags)
{
    silent_peer_t sp;
    silent_peer_start(&sp, alive);
    int lfd = sp.lfd;
    const char *full = sp.full;
    uint32_t creation = sp.creation;
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t to, big;
    CU_ASSERT_FATAL(heap_make_ext_pid(&h, heap_atom(full), 5, 0, creation, &to) == 0);
    const size_t size = (size_t)512 << 10; /* the raw peer reads frames up to 1 MiB */
    heap_binary_t *bin = heap_binary_new(size);
    CU_ASSERT_FATAL(bin != NULL);
    for (size_t i = 0; i < size; i++)
        bin->data[i] = (uint8_t)(i * 7 + i / 251);
    CU_ASSERT_FATAL(heap_make_refc_binary(&h, bin, size * 8, &big) == 0);
    size_t refc_before = atomic_load(&bin->refc); /* ours and h's */
    CU_ASSERT(sched_send(NULL, to, heap_atom("before_big")) == 0);
    CU_ASSERT(sched_send(NULL, to, big) == 0);
    CU_ASSERT(sched_send(NULL, to, heap_atom("after_big")) == 0);
    CU_ASSERT(atomic_load(&bin->refc) == refc_before + 1);
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    CU_ASSERT_FATAL(poll(&pl, 1, 3000) == 1);
    int node_side = accept(lfd, NULL, NULL);
    CU_ASSERT_FATAL(node_side >= 0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, full, peer_flags, 0) == 1);
    dist_msg_t m;
    CU_ASSERT(np_peer_recv(&p, &m, 3000) && m.op == DOP_SEND_SENDER &&
              m.payload == heap_atom("before_big"));
    CU_ASSERT_FATAL(np_peer_recv(&p, &m, 5000));
    CU_ASSERT(m.op == DOP_SEND_SENDER && term_is_binary(m.payload));
    if (term_is_binary(m.payload)) {
        heap_bin_view_t v;
        heap_bin_view(m.payload, &v);
        CU_ASSERT(v.bit_size == size * 8 && v.bit_offset == 0 &&
                  memcmp(v.bytes, bin->data, size) == 0);
    }
    CU_ASSERT(np_peer_recv(&p, &m, 3000) && m.op == DOP_SEND_SENDER &&
              m.payload == heap_atom("after_big"));
    for (int t = 0; t < 2000 && atomic_load(&bin->refc) != refc_before; t += 10)
        usleep(10000);
    CU_ASSERT(atomic_load(&bin->refc) == refc_before);
    np_peer_close(&p);
    if (node_side >= 0)
        close(node_side);
    silent_peer_stop(&sp);
    heap_destroy(&h);
    heap_binary_unref(bin);
}

static void test_big_send_while_connecting(void)
{
    big_send_while_connecting("zzbigfrag", 0);
    big_send_while_connecting("zzbigwhole", DFLAG_GIRDER_DEFAULT & ~DFLAG_FRAGMENTS);
}

static void test_stop(void)
{
    np_start_node(0);
    cluster_stop();
    epmd_client_opts_t eo = {.port = np_epmd_port(), .timeout_ms = 500};
    epmd_node_info_t info;
    char alive[64];
    snprintf(alive, sizeof alive, "%.*s", (int)strcspn(np_node_name(), "@"), np_node_name());
    CU_ASSERT(epmd_client_port_please(&eo, alive, &info) != 0);
}

/* ---- the global registry through its C API ---- */

/* Polls (up to 3 s) until name resolves to want. */
static bool global_resolves(heap_t *h, term_t name, term_t want)
{
    for (int t = 0; t < 3000; t += 20) {
        term_t got;
        if (cluster_global_whereis(h, name, &got) == 0 && got == want)
            return true;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A node with no visible peer: register (the lock round is this node
 * alone), a taken name, send by name, unregister, and a holder's death
 * taking its name. */
static void test_global_local(void)
{
    np_start_node(0);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t pid, other, got, name = heap_atom("gd_test_global"), undef = heap_atom("undefined");
    CU_ASSERT_FATAL(sched_spawn(NULL, &np_idle_beh, TERM_NIL, &pid) == 0);
    CU_ASSERT_FATAL(sched_spawn(NULL, &np_idle_beh, TERM_NIL, &other) == 0);
    CU_ASSERT(cluster_global_register(&h, name, pid) == 0);
    CU_ASSERT(global_resolves(&h, name, pid));
    CU_ASSERT(cluster_global_register(&h, name, other) == SCHED_ENAME_TAKEN);
    CU_ASSERT(cluster_global_send(NULL, &h, name, heap_atom("hi"), &got) == 0 && got == pid);
    CU_ASSERT(cluster_global_unregister(&h, name) == 0);
    CU_ASSERT(global_resolves(&h, name, undef));
    CU_ASSERT(cluster_global_send(NULL, &h, name, heap_atom("hi"), &got) == SCHED_ENOPROC);
    CU_ASSERT(cluster_global_register(&h, name, other) == 0);
    CU_ASSERT(global_resolves(&h, name, other));
    CU_ASSERT(sched_exit_pid(NULL, other, heap_atom("kill")) == 0);
    CU_ASSERT(global_resolves(&h, name, undef));
    CU_ASSERT(sched_exit_pid(NULL, pid, heap_atom("kill")) == 0);
    heap_destroy(&h);
}

/* Names of any term, as OTP's global takes them: a tuple, a string, a
 * binary, an integer (1 and 1.0 are two names); a name over 64 KiB
 * encoded is refused. */
static void test_global_term_names(void)
{
    np_start_node(0);
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t pid, other, got, undef = heap_atom("undefined"), names[5];
    CU_ASSERT_FATAL(sched_spawn(NULL, &np_idle_beh, TERM_NIL, &pid) == 0);
    CU_ASSERT_FATAL(sched_spawn(NULL, &np_idle_beh, TERM_NIL, &other) == 0);
    CU_ASSERT_FATAL(heap_make_tuple_from(&h, 2, (term_t[]){heap_atom("svc"), term_make_small(7)},
                                         &names[0]) == 0);
    CU_ASSERT_FATAL(heap_make_list(&h, (term_t[]){term_make_small('a'), term_make_small('b')}, 2,
                                   &names[1]) == 0);
    CU_ASSERT_FATAL(heap_make_binary(&h, "bin name", 8, &names[2]) == 0);
    names[3] = term_make_small(1);
    CU_ASSERT_FATAL(heap_make_float(&h, 1.0, &names[4]) == 0);
    for (size_t i = 0; i < 5; i++) {
        CU_ASSERT(cluster_global_register(&h, names[i], i % 2 ? other : pid) == 0);
        CU_ASSERT(cluster_global_register(&h, names[i], i % 2 ? pid : other) == SCHED_ENAME_TAKEN);
    }
    for (size_t i = 0; i < 5; i++)
        CU_ASSERT(global_resolves(&h, names[i], i % 2 ? other : pid));
    /* the same name built again (another copy) finds the entry */
    term_t again;
    CU_ASSERT_FATAL(
        heap_make_tuple_from(&h, 2, (term_t[]){heap_atom("svc"), term_make_small(7)}, &again) == 0);
    CU_ASSERT(cluster_global_send(NULL, &h, again, heap_atom("hi"), &got) == 0 && got == pid);
    CU_ASSERT(cluster_global_unregister(&h, again) == 0);
    CU_ASSERT(global_resolves(&h, names[0], undef));
    CU_ASSERT(global_resolves(&h, names[4], pid));
    CU_ASSERT(sched_exit_pid(NULL, pid, heap_atom("kill")) == 0);
    CU_ASSERT(global_resolves(&h, names[2], undef));
    CU_ASSERT(global_resolves(&h, names[1], other));
    /* a name over 64 KiB encoded */
    static char big[70000];
    term_t huge;
    CU_ASSERT_FATAL(heap_make_binary(&h, big, sizeof big, &huge) == 0);
    CU_ASSERT(cluster_global_register(&h, huge, other) == GD_EBADARG);
    CU_ASSERT(cluster_global_whereis(&h, huge, &got) == 0 && got == undef);
    CU_ASSERT(sched_exit_pid(NULL, other, heap_atom("kill")) == 0);
    CU_ASSERT(global_resolves(&h, names[1], undef));
    heap_destroy(&h);
}

/* True when t is the list of the characters of text. */
static bool is_string(term_t t, const char *text)
{
    for (; *text; text++, t = term_cdr(t))
        if (!term_is_list(t) || term_car(t) != term_make_small((unsigned char)*text))
            return false;
    return term_is_nil(t);
}

static bool list_has(term_t l, term_t x)
{
    for (; term_is_list(l); l = term_cdr(l))
        if (term_car(l) == x)
            return true;
    return false;
}

/* {badrpc, {'EXIT', {badarg, _}}} */
static bool is_badarg(term_t t)
{
    if (!term_is_tuple(t) || term_tuple_arity(t) != 2 ||
        term_tuple_elems(t)[0] != heap_atom("badrpc"))
        return false;
    term_t e = term_tuple_elems(t)[1];
    if (!term_is_tuple(e) || term_tuple_arity(e) != 2 ||
        term_tuple_elems(e)[0] != heap_atom("EXIT"))
        return false;
    e = term_tuple_elems(e)[1];
    return term_is_tuple(e) && term_tuple_arity(e) == 2 &&
           term_tuple_elems(e)[0] == heap_atom("badarg");
}

static term_t list1(heap_t *h, term_t x)
{
    term_t l;
    CU_ASSERT_FATAL(heap_cons(h, x, TERM_NIL, &l) == 0);
    return l;
}

/* erlang:nodes/1 and system_info(otp_release) over rpc, from a hidden
 * raw peer. */
static void test_rpc_nodes_release(void)
{
    np_start_node(0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, "rpcpeer@localhost", 0, 0) == 1);
    heap_t *h = &p.h;
    term_t me = heap_atom("rpcpeer@localhost"), self = heap_node_name(), r;
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, heap_atom("hidden")), &r));
    CU_ASSERT(list_has(r, me));
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, heap_atom("connected")), &r));
    CU_ASSERT(list_has(r, me));
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, heap_atom("visible")), &r));
    CU_ASSERT(!list_has(r, me));
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", TERM_NIL, &r));
    CU_ASSERT(!list_has(r, me)); /* nodes/0: the visible ones */
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, heap_atom("this")), &r));
    CU_ASSERT(term_is_list(r) && term_car(r) == self && term_is_nil(term_cdr(r)));
    term_t kinds;
    CU_ASSERT_FATAL(
        heap_make_list(h, (term_t[]){heap_atom("this"), heap_atom("hidden")}, 2, &kinds) == 0);
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, kinds), &r));
    CU_ASSERT(term_is_list(r) && term_car(r) == self && list_has(term_cdr(r), me));
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, TERM_NIL), &r));
    CU_ASSERT(term_is_nil(r));
    term_t bad[3], improper;
    CU_ASSERT_FATAL(heap_cons(h, heap_atom("visible"), heap_atom("hidden"), &improper) == 0);
    bad[0] = heap_atom("bogus");
    bad[1] = improper;
    CU_ASSERT_FATAL(
        heap_make_list(h, (term_t[]){heap_atom("visible"), term_make_small(1)}, 2, &bad[2]) == 0);
    for (size_t i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(np_rpc(&p, "erlang", "nodes", list1(h, bad[i]), &r));
        CU_ASSERT(is_badarg(r));
    }
    CU_ASSERT_FATAL(np_rpc(&p, "erlang", "system_info", list1(h, heap_atom("otp_release")), &r));
    CU_ASSERT(is_string(r, "25"));
    np_peer_close(&p);
}

/* Waits (3 s) until name is registered to a pid other than old. */
static term_t wait_new_holder(const char *name, term_t old)
{
    for (int t = 0; t < 3000; t += 10) {
        term_t pid = sched_whereis(heap_atom(name));
        if (term_is_pid(pid) && pid != old)
            return pid;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return TERM_NONE;
}

/* echo stopped by a peer ({stop, R}) and rex and net_kernel killed are
 * started again under their names, and serve. */
static void test_services_restarted(void)
{
    np_start_node(0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    term_t echo = sched_whereis(heap_atom("echo")), stop;
    CU_ASSERT_FATAL(term_is_pid(echo));
    CU_ASSERT_FATAL(
        heap_make_tuple_from(&p.h, 2, (term_t[]){heap_atom("stop"), heap_atom("bye")}, &stop) == 0);
    CU_ASSERT(np_send_named(&p, "echo", stop));
    term_t echo2 = wait_new_holder("echo", echo);
    CU_ASSERT(term_is_pid(echo2));
    CU_ASSERT(!sched_is_alive(echo));
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("again")));
    const char *names[] = {"rex", "net_kernel", "echo"};
    for (size_t i = 0; i < 3; i++) {
        term_t old = sched_whereis(heap_atom(names[i]));
        CU_ASSERT_FATAL(term_is_pid(old));
        CU_ASSERT(sched_exit_pid(NULL, old, heap_atom("kill")) == 0);
        CU_ASSERT(term_is_pid(wait_new_holder(names[i], old)));
    }
    term_t r;
    CU_ASSERT(np_rpc(&p, "erlang", "node", TERM_NIL, &r) && r == heap_node_name());
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after_kill")));
    np_peer_close(&p);
}

/* Frames cut anywhere across reads (a few bytes per write, pauses in
 * between) still arrive whole and in order: the node keeps a partial
 * frame's bytes between reads (read_up's buffer) until the rest comes. */
static void test_frames_across_reads(void)
{
    np_start_node(0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    enum { N = 4 };
    etf_buf_t b = {0};
    for (int i = 0; i < N; i++) {
        term_t ctl, msg, *e;
        CU_ASSERT_FATAL(heap_make_tuple(&p.h, 4, &e, &ctl) == 0);
        e[0] = term_make_small(DOP_REG_SEND);
        e[1] = p.self;
        e[2] = heap_atom("");
        e[3] = heap_atom("echo");
        CU_ASSERT_FATAL(heap_make_tuple(&p.h, 2, &e, &msg) == 0);
        e[0] = p.self;
        e[1] = term_make_small(i);
        CU_ASSERT_FATAL(dist_encode_message(ctl, msg, 1, 0, &b) == 0);
    }
    /* 7 bytes a time: every frame header and body is cut somewhere. */
    for (size_t off = 0; off < b.len; off += 7) {
        size_t n = b.len - off < 7 ? b.len - off : 7;
        CU_ASSERT_FATAL(np_write_all(p.fd, b.data + off, n));
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    etf_buf_free(&b);
    for (int i = 0; i < N; i++) {
        dist_msg_t m;
        CU_ASSERT_FATAL(np_peer_recv(&p, &m, 3000));
        CU_ASSERT_FATAL(m.op == DOP_SEND_SENDER && term_is_boxed_of(m.payload, HDR_TUPLE));
        term_t *r = term_boxed_ptr(m.payload);
        CU_ASSERT(r[1] == heap_atom("echo_reply") && r[2] == term_make_small(i));
    }
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after")));
    np_peer_close(&p);
}

/* Replies that queue behind a peer that reads late (a small receive
 * buffer, nothing read until every request is in) come out whole and in
 * order: the first fill the socket, the next wait in the bufferevent's
 * output, the rest in the connection's outq until the loop thread has
 * written what is ahead of them (conn_write_locked), and a big reply in
 * the middle (fragments written from the body) goes behind all of them. */
static void test_queued_output_in_order(void)
{
    /* No back-pressure: the echo service goes on replying while nothing
     * is read, so the big reply finds replies waiting in outq. */
    np_start_node((size_t)64 << 20);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 4096) == 1);
    enum { N = 3000, SMALL = 2000, BIG = 300000, BIG_AT = 1500 };
    static uint8_t bytes[BIG];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    for (int i = 0; i < N; i++) {
        term_t bin, inner, msg;
        CU_ASSERT_FATAL(heap_make_binary(&p.h, bytes, i == BIG_AT ? BIG : SMALL, &bin) == 0);
        term_t in_items[2] = {term_make_small(i), bin};
        CU_ASSERT_FATAL(heap_make_tuple_from(&p.h, 2, in_items, &inner) == 0);
        term_t items[2] = {p.self, inner};
        CU_ASSERT_FATAL(heap_make_tuple_from(&p.h, 2, items, &msg) == 0);
        CU_ASSERT_FATAL(np_send_named(&p, "echo", msg));
    }
    struct timespec settle = {0, 200000000};
    nanosleep(&settle, NULL);
    int in_order = 0;
    for (int i = 0; i < N; i++) {
        dist_msg_t m;
        if (!np_peer_recv(&p, &m, 5000))
            break;
        term_t *r = term_is_boxed_of(m.payload, HDR_TUPLE) ? term_boxed_ptr(m.payload) : NULL;
        term_t *t = r != NULL && term_is_boxed_of(r[2], HDR_TUPLE) ? term_boxed_ptr(r[2]) : NULL;
        size_t want = i == BIG_AT ? BIG : SMALL;
        heap_bin_view_t v = {0};
        if (t != NULL && term_is_binary(t[2]))
            heap_bin_view(t[2], &v);
        if (t == NULL || t[1] != term_make_small(i) || v.bytes == NULL || v.bit_size != want * 8 ||
            memcmp(v.bytes, bytes, want) != 0)
            break;
        in_order++;
    }
    CU_ASSERT(in_order == N);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after")));
    np_peer_close(&p);
}

/* A registered function that runs out of memory. */
static int fn_out_of_memory(heap_t *h, term_t args, term_t *result)
{
    (void)h;
    (void)args;
    (void)result;
    return GD_ENOMEM;
}

/* An erpc process whose function fails with GD_ENOMEM after its
 * SPAWN_REPLY: the caller's monitor still gets its DOWN (reason
 * {callback_error, Code}), or an erpc:call with no timeout would wait for
 * ever.  (It used to end with no DOWN at all.)  A call that returns is
 * checked alongside, and the node keeps serving. */
static void test_erpc_down_after_failure(void)
{
    np_start_node(0);
    CU_ASSERT_FATAL(cluster_rpc_register("gdtest", "nomem", 0, fn_out_of_memory) == 0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    heap_t *h = &p.h;
    const char *fns[2] = {"nomem", "no_such_fn"};
    for (int i = 0; i < 2; i++) {
        term_t req, ref, mfa, opts, args, ctl;
        uint32_t w[3] = {1, 2, (uint32_t)i + 10};
        CU_ASSERT_FATAL(heap_make_ref(h, heap_atom(p.name), 77, w, 3, &req) == 0);
        w[2] += 100;
        CU_ASSERT_FATAL(heap_make_ref(h, heap_atom(p.name), 77, w, 3, &ref) == 0);
        CU_ASSERT_FATAL(
            heap_make_tuple_from(
                h, 3, (term_t[]){heap_atom("erpc"), heap_atom("execute_call"), term_make_small(4)},
                &mfa) == 0);
        CU_ASSERT_FATAL(heap_make_list(h, (term_t[]){heap_atom("monitor")}, 1, &opts) == 0);
        CU_ASSERT_FATAL(
            heap_make_list(h, (term_t[]){ref, heap_atom("gdtest"), heap_atom(fns[i]), TERM_NIL}, 4,
                           &args) == 0);
        /* {29, ReqId, From, GroupLeader, MFA, Opts} + Args */
        CU_ASSERT_FATAL(heap_make_tuple_from(h, 6,
                                             (term_t[]){term_make_small(DOP_SPAWN_REQUEST), req,
                                                        p.self, p.self, mfa, opts},
                                             &ctl) == 0);
        etf_buf_t b = {0};
        CU_ASSERT_FATAL(dist_encode_message(ctl, args, 1, 0, &b) == 0);
        CU_ASSERT_FATAL(np_write_all(p.fd, b.data, b.len));
        etf_buf_free(&b);
        dist_msg_t m;
        CU_ASSERT_FATAL(np_peer_recv(&p, &m, 5000));
        CU_ASSERT_FATAL(m.op == DOP_SPAWN_REPLY);
        term_t pid = term_tuple_elems(m.control)[4];
        CU_ASSERT_FATAL(term_is_pid(pid));
        bool down = np_peer_recv(&p, &m, 5000);
        CU_ASSERT(down);
        if (!down)
            break;
        /* {28, FromPid, ToPid, ReqId} + Reason */
        CU_ASSERT(m.op == DOP_PAYLOAD_MONITOR_P_EXIT);
        const term_t *e = term_tuple_elems(m.control);
        int o1 = 1, o2 = 1, o3 = 1;
        CU_ASSERT(heap_compare_checked(e[1], pid, true, &o1) == 0 && o1 == 0);
        CU_ASSERT(heap_compare_checked(e[2], p.self, true, &o2) == 0 && o2 == 0);
        CU_ASSERT(heap_compare_checked(e[3], req, true, &o3) == 0 && o3 == 0);
        CU_ASSERT(term_is_tuple(m.payload));
        if (i == 0) { /* {callback_error, Code} */
            CU_ASSERT(term_tuple_arity(m.payload) == 2 &&
                      term_tuple_elems(m.payload)[0] == heap_atom("callback_error"));
        } else { /* {Ref, error, undef, Stack} */
            CU_ASSERT(term_tuple_arity(m.payload) == 4 &&
                      term_tuple_elems(m.payload)[2] == heap_atom("undef"));
        }
    }
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("after")));
    np_peer_close(&p);
}

/* An application's own rpc functions (cluster_rpc_register): Args [N]
 * times k, badarg for anything but a small integer. */
static int times_k(term_t args, int64_t k, term_t *result)
{
    term_t n = term_car(args);
    if (!term_is_small(n))
        return GD_EBADARG;
    *result = term_make_small(k * term_small_value(n));
    return 0;
}

static int fn_double(heap_t *h, term_t args, term_t *result)
{
    (void)h;
    return times_k(args, 2, result);
}

static int fn_triple(heap_t *h, term_t args, term_t *result)
{
    (void)h;
    return times_k(args, 3, result);
}

/* Registered after the node started, a function answers rpc:call; a bad
 * argument is badarg in OTP's shape; registering it again replaces it;
 * the table holds CLUSTER_RPC_MAX functions in all (built-ins included),
 * then GD_ESYSTEM_LIMIT, and a replacement still works when it is full.
 * Runs last but one: it fills the node's table. */
static void test_rpc_register(void)
{
    np_start_node(0);
    CU_ASSERT_FATAL(cluster_rpc_register("app", "double", 1, fn_double) == 0);
    CU_ASSERT(cluster_rpc_register("app", "double", 1, NULL) == GD_EINVAL);
    CU_ASSERT(cluster_rpc_register("app", "double", 256, fn_double) == GD_EINVAL);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    heap_t *h = &p.h;
    term_t r;
    CU_ASSERT_FATAL(np_rpc(&p, "app", "double", list1(h, term_make_small(21)), &r));
    CU_ASSERT(r == term_make_small(42));
    CU_ASSERT_FATAL(np_rpc(&p, "app", "double", list1(h, heap_atom("x")), &r));
    CU_ASSERT(is_badarg(r));
    CU_ASSERT(cluster_rpc_register("app", "double", 1, fn_triple) == 0);
    CU_ASSERT_FATAL(np_rpc(&p, "app", "double", list1(h, term_make_small(21)), &r));
    CU_ASSERT(r == term_make_small(63));
    int added = 0, rc = 0;
    for (int i = 0; i <= CLUSTER_RPC_MAX && rc == 0; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        rc = cluster_rpc_register("appfill", name, 0, fn_double);
        added += rc == 0;
    }
    CU_ASSERT(rc == GD_ESYSTEM_LIMIT);
    CU_ASSERT(added > 0 && added < CLUSTER_RPC_MAX);
    CU_ASSERT(cluster_rpc_register("app", "double", 1, fn_double) == 0);
    CU_ASSERT_FATAL(np_rpc(&p, "app", "double", list1(h, term_make_small(5)), &r));
    CU_ASSERT(r == term_make_small(10));
    np_peer_close(&p);
}

static const gd_test_case_t gd_tests[] = {
    {"cookie file", test_cookie_file},
    {"echo", test_echo},
    {"wrong cookie", test_wrong_cookie},
    {"half open", test_half_open},
    {"ticks", test_ticks},
    {"malformed frames", test_malformed_frames},
    {"simultaneous connect", test_simultaneous},
    {"big send while connecting", test_big_send_while_connecting},
    {"global registry, C API", test_global_local},
    {"global names of any term", test_global_term_names},
    {"rpc nodes/1, otp_release", test_rpc_nodes_release},
    {"services restarted", test_services_restarted},
    {"frames across reads", test_frames_across_reads},
    {"queued output in order", test_queued_output_in_order},
    {"erpc: a DOWN after a failed function", test_erpc_down_after_failure},
    {"rpc: an application's own functions", test_rpc_register},
    {"stop", test_stop},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_node", gd_tests)
