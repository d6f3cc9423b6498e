/*
 * test_node_malformed.c — a node started in-process, fed bad and heavy
 * input over real sockets by raw peers (node_peer_util.h): malformed
 * handshakes and frames (robustness.md D21-D30, issue 14's list), 100
 * idle half-open connections, and a peer that stops reading while a
 * girder process sends it 100 MB (back-pressure).  Each bad case runs on
 * a connection of its own and must close only that connection with a log
 * line; a good peer connected before them is served after them, and the
 * node's processes, connections and binaries are back where they were.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cunit_main.h"
#include "node_peer_util.h"
#include "sched/sched.h"

#if defined(__SANITIZE_ADDRESS__)
#define NP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_ASAN 1
#endif
#endif

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the node's log: stderr goes to a file so cases can read it ---- */

static char log_path[64];

static int saved_stderr = -1;

/* At exit the captured log (the node's lines, and a sanitizer's report)
 * goes to the real stderr, then the file is removed. */
static void log_remove(void)
{
    FILE *f = fopen(log_path, "r");
    char buf[4096];
    size_t n;
    while (f != NULL && saved_stderr >= 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (write(saved_stderr, buf, n) < 0)
            break;
    if (f != NULL)
        fclose(f);
    unlink(log_path);
}

static void log_capture(void)
{
    if (log_path[0] != 0)
        return;
    snprintf(log_path, sizeof log_path, "/tmp/gd_malformed_%d.log", (int)getpid());
    saved_stderr = dup(2);
    CU_ASSERT_FATAL(freopen(log_path, "w", stderr) != NULL);
    setvbuf(stderr, NULL, _IONBF, 0);
    atexit(log_remove);
}

static long log_mark(void)
{
    struct stat st;
    return stat(log_path, &st) == 0 ? (long)st.st_size : 0;
}

/* True when a line written after mark holds needle (waits up to 1 s: the
 * loop thread logs just before it closes). */
static bool log_has_since(long mark, const char *needle)
{
    for (int t = 0; t < 1000; t += 50) {
        FILE *f = fopen(log_path, "r");
        if (f == NULL)
            return false;
        bool found = false;
        if (fseek(f, mark, SEEK_SET) == 0) {
            char line[2048];
            while (!found && fgets(line, sizeof line, f) != NULL)
                found = strstr(line, needle) != NULL;
        }
        fclose(f);
        if (found)
            return true;
        nap_ms(50);
    }
    return false;
}

/* ---- what "back where it was" means ---- */

typedef struct footprint {
    uint32_t processes;
    size_t conns;
    size_t binary_bytes;
} footprint_t;

static footprint_t footprint(void)
{
    return (footprint_t){sched_process_count(), cluster_conn_stats(NULL, 0),
                         heap_binary_live_bytes()};
}

/* Waits (up to 3 s) for the node to be back at fp or below (a process
 * of an earlier test may still have been ending when fp was taken). */
static bool back_to(footprint_t fp)
{
    for (int t = 0; t < 3000; t += 50) {
        footprint_t now = footprint();
        if (now.processes <= fp.processes && now.conns <= fp.conns &&
            now.binary_bytes <= fp.binary_bytes)
            return true;
        nap_ms(50);
    }
    footprint_t now = footprint();
    fprintf(stdout, "footprint: processes %u -> %u, connections %zu -> %zu, binaries %zu -> %zu\n",
            fp.processes, now.processes, fp.conns, now.conns, fp.binary_bytes, now.binary_bytes);
    return false;
}

/* ---- malformed handshakes ---- */

/* A v6 'N' message: flags, creation, name (name_len may lie). */
static size_t name_msg(uint8_t *out, uint64_t flags, const char *name, size_t name_len_field)
{
    size_t nlen = strlen(name), len = 1 + 8 + 4 + 2 + nlen;
    uint8_t *w = out;
    *w++ = (uint8_t)(len >> 8);
    *w++ = (uint8_t)len;
    *w++ = 'N';
    for (int i = 7; i >= 0; i--)
        *w++ = (uint8_t)(flags >> (8 * i));
    memcpy(w, "\0\0\0\x4d", 4);
    w += 4;
    *w++ = (uint8_t)(name_len_field >> 8);
    *w++ = (uint8_t)name_len_field;
    memcpy(w, name, nlen);
    return 2 + len;
}

/* Sends bytes on a fresh connection; the node must close it and log. */
static void expect_hs_refused(const char *what, const uint8_t *bytes, size_t len)
{
    long mark = log_mark();
    int fd = np_tcp_connect(0);
    CU_ASSERT(np_write_all(fd, bytes, len));
    bool closed = np_closed_within(fd, 3000);
    CU_ASSERT(closed);
    bool logged = log_has_since(mark, "refused") || log_has_since(mark, "connection closed") ||
                  log_has_since(mark, "rejected");
    CU_ASSERT(logged);
    if (!closed || !logged)
        fprintf(stdout, "handshake case '%s': closed %d logged %d\n", what, closed, logged);
    close(fd);
}

static int handshake_cases(void)
{
    uint8_t b[512];
    size_t n;
    int count = 0;
#define HS_CASE(what, bytes, len) (expect_hs_refused(what, bytes, len), count++)
    HS_CASE("zero-length message", (const uint8_t *)"\x00\x00", 2);
    HS_CASE("64 KiB length", (const uint8_t *)"\xff\xffN", 3);
    HS_CASE("unknown tag", (const uint8_t *)"\x00\x05X1234", 7);
    HS_CASE("'N' too short", (const uint8_t *)"\x00\x05N\x00\x00\x00\x00", 7);
    n = name_msg(b, DFLAG_GIRDER_DEFAULT, "liar@localhost", 200);
    HS_CASE("name length past the message", b, n);
    n = name_msg(b, DFLAG_GIRDER_DEFAULT, "no-at-sign", 10);
    HS_CASE("name without @", b, n);
    n = name_msg(b, DFLAG_GIRDER_DEFAULT, "@localhost", 10);
    HS_CASE("empty alive part", b, n);
    n = name_msg(b, DFLAG_GIRDER_DEFAULT, "\xff\xfe@localhost", 12);
    HS_CASE("name not UTF-8", b, n);
    n = name_msg(b, 0, "noflags@localhost", 17);
    HS_CASE("mandatory flags missing", b, n);
    n = name_msg(b, DFLAG_MANDATORY_25 & ~DFLAG_HANDSHAKE_23, "old@localhost", 13);
    HS_CASE("HANDSHAKE_23 missing", b, n);
    HS_CASE("v5 'n' too short", (const uint8_t *)"\x00\x03n\x00\x05", 5);
    HS_CASE("HTTP request", (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18);
    /* A complete name message, then an 'r' that is not one. */
    n = name_msg(b, DFLAG_GIRDER_DEFAULT, "tamper@localhost", 16);
    memcpy(b + n, "\x00\x03r\x00\x00", 5);
    HS_CASE("status answered with a short 'r'", b, n + 5);
#undef HS_CASE
    /* Wrong cookie: the digest is refused (logged as OTP does). */
    long mark = log_mark();
    np_peer_t p;
    CU_ASSERT(np_peer_connect(&p, "not-the-cookie-at-all", NULL, 0, 0) == DIST_ECLOSED);
    CU_ASSERT(log_has_since(mark, "invalid challenge reply"));
    np_peer_close(&p);
    count++;
    return count;
}

/* ---- malformed frames ---- */

/* Connects a raw peer, sends bytes (framed: as one frame, the 4-byte
 * length added; else as they are, e.g. a lying length) and expects the
 * node to close that connection with a "nodedown" line. */
static void expect_sent_refused(const char *what, const uint8_t *bytes, size_t len, bool framed)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    long mark = log_mark();
    CU_ASSERT(framed ? np_write_frame(p.fd, bytes, len) : np_write_all(p.fd, bytes, len));
    bool closed = np_closed_within(p.fd, 3000);
    char needle[96];
    snprintf(needle, sizeof needle, "nodedown %s:", p.name);
    bool logged = log_has_since(mark, needle);
    CU_ASSERT(closed && logged);
    if (!closed || !logged)
        fprintf(stdout, "%s case '%s': closed %d logged %d\n", framed ? "frame" : "bytes", what,
                closed, logged);
    np_peer_close(&p);
}

static void expect_frame_refused(const char *what, const uint8_t *body, size_t len)
{
    expect_sent_refused(what, body, len, true);
}

static void expect_bytes_refused(const char *what, const uint8_t *bytes, size_t len)
{
    expect_sent_refused(what, bytes, len, false);
}

/* A control (and payload) well encoded but wrong for its op. */
static void expect_control_refused(const char *what, term_t ctl, term_t payload)
{
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 1, 0, &b) == 0);
    expect_frame_refused(what, b.data + 4, b.len - 4);
    etf_buf_free(&b);
}

static term_t tup(heap_t *h, size_t n, const term_t *items)
{
    term_t *e, t;
    CU_ASSERT_FATAL(heap_make_tuple(h, n, &e, &t) == 0);
    memcpy(e, items, n * sizeof *e);
    return t;
}

/* A fragment header: 131, 69 (start) or 70, sequence, id. */
static size_t frag_head(uint8_t *w, bool start, uint64_t seq, uint64_t id)
{
    w[0] = 131;
    w[1] = start ? 69 : 70;
    for (int i = 0; i < 8; i++) {
        w[2 + i] = (uint8_t)(seq >> (56 - 8 * i));
        w[10 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    if (start)
        w[18] = 0; /* no atom cache refs */
    return start ? 19 : 18;
}

/* Two frames on one fresh connection, the second of which makes the node
 * close it as "bad data" (fragment sequences that do not add up). */
static void expect_frame_pair_refused(const uint8_t *first, size_t first_len, const uint8_t *second,
                                      size_t second_len)
{
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    long mark = log_mark();
    CU_ASSERT(np_write_frame(p.fd, first, first_len));
    CU_ASSERT(np_write_frame(p.fd, second, second_len));
    CU_ASSERT(np_closed_within(p.fd, 3000));
    CU_ASSERT(log_has_since(mark, "bad data"));
    np_peer_close(&p);
}

static int frame_cases(void)
{
    int count = 0;
    /* Raw bodies. */
    static const struct {
        const char *what;
        const char *body;
        size_t len;
    } raw[] = {
        {"version byte alone", "\x83", 1},
        {"not 131", "\x84\x44\x00\x68\x01\x61\x01", 7},
        {"unknown header tag", "\x83\x47\x00", 3},
        {"atom cache header truncated", "\x83\x44\x03\x00", 4},
        {"atom cache ref count, no flags", "\x83\x44\xff", 3},
        {"reference to an empty cache slot", "\x83\x44\x01\x00\x05\x68\x01\x52\x00", 9},
        {"new cache entry longer than the frame", "\x83\x44\x01\x08\x00\xc8\x61\x62", 8},
        {"cache ref index past the refs", "\x83\x44\x00\x68\x01\x52\x07", 7},
        {"control {1} (arity)", "\x83\x44\x00\x68\x01\x61\x01", 7},
        {"control {99} (unknown op)", "\x83\x44\x00\x68\x01\x61\x63", 7},
        {"control {} (empty)", "\x83\x44\x00\x68\x00", 5},
        {"control an integer", "\x83\x44\x00\x61\x01", 5},
        {"control an atom", "\x83\x44\x00\x77\x02hi", 6},
        {"control {foo, 1}", "\x83\x44\x00\x68\x02\x77\x03\x66\x6f\x6f\x61\x01", 12},
        {"control op negative", "\x83\x44\x00\x68\x01\x62\xff\xff\xff\xff", 10},
        {"list of 4G elements", "\x70\x83\x6c\xff\xff\xff\xff", 7},
        {"binary of 4G bytes", "\x83\x44\x00\x68\x01\x6d\xff\xff\xff\xff", 10},
        {"pass-through garbage", "\x70\x01\x02\x03", 4},
        {"atom text not UTF-8", "\x83\x44\x00\x68\x02\x61\x06\x77\x02\xff\xfe", 11},
        {"fragment header truncated", "\x83\x45\x00\x00\x00", 5},
        {"garbage after the handshake", "hello, node", 11},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++, count++)
        expect_frame_refused(raw[i].what, (const uint8_t *)raw[i].body, raw[i].len);

    /* Lengths. */
    expect_bytes_refused("4 GB length", (const uint8_t *)"\xff\xff\xff\xff", 4);
    expect_bytes_refused("length past the message cap", (const uint8_t *)"\x10\x00\x00\x01", 4);
    expect_bytes_refused("text as a length", (const uint8_t *)"hello world, I am no node", 25);
    count += 3;

    /* Fragments: continuation without a start, out of order, duplicate
     * starts, id 0, and more unfinished sequences than the cap. */
    uint8_t f[128];
    size_t n = frag_head(f, false, 7, 1);
    f[n++] = 0x61;
    expect_frame_refused("continuation without a start", f, n);
    count++;
    uint8_t g[128];
    n = frag_head(f, true, 9, 3);
    memcpy(f + n, "\x68\x02", 2);
    size_t gn = frag_head(g, false, 9, 1); /* id 2 skipped */
    g[gn++] = 0x61;
    expect_frame_pair_refused(f, n + 2, g, gn);
    count++;
    n = frag_head(f, true, 11, 3);
    memcpy(f + n, "\x68\x02", 2);
    expect_frame_pair_refused(f, n + 2, f, n + 2); /* the same start again */
    count++;
    n = frag_head(f, true, 12, 0);
    memcpy(f + n, "\x68\x01\x61\x01", 4);
    expect_frame_refused("fragment id 0", f, n + 4);
    count++;
    {
        /* Never finished: 16 sequences are held (bounded), the 17th is
         * refused; closing frees the 16 (LSan). */
        np_peer_t p;
        CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
        long mark = log_mark();
        for (uint64_t seq = 100; seq < 100 + DIST_MAX_SEQUENCES_DEFAULT; seq++) {
            n = frag_head(f, true, seq, 5);
            memcpy(f + n, "\x68\x02", 2);
            CU_ASSERT(np_write_frame(p.fd, f, n + 2));
        }
        CU_ASSERT(!np_closed_within(p.fd, 300)); /* within the cap: kept */
        n = frag_head(f, true, 999, 5);
        memcpy(f + n, "\x68\x02", 2);
        CU_ASSERT(np_write_frame(p.fd, f, n + 2));
        CU_ASSERT(np_closed_within(p.fd, 3000));
        CU_ASSERT(log_has_since(mark, "bad data"));
        np_peer_close(&p);
        count++;
    }

    /* Well-encoded controls with the wrong arity or types for their op. */
    heap_t h;
    CU_ASSERT_FATAL(heap_init(&h, 0) == 0);
    term_t pid, ref;
    CU_ASSERT_FATAL(heap_make_ext_pid(&h, heap_atom("x@localhost"), 1, 0, 77, &pid) == 0);
    CU_ASSERT_FATAL(
        heap_make_ref(&h, heap_atom("x@localhost"), 77, (const uint32_t[]){1, 2, 3}, 3, &ref) == 0);
    term_t S[40];
    for (int i = 0; i < 40; i++)
        S[i] = term_make_small(i);
    term_t a = heap_atom("a"), empty = heap_atom("");
#define CTL(...) tup(&h, sizeof((term_t[]){__VA_ARGS__}) / sizeof(term_t), (term_t[]){__VA_ARGS__})
    expect_control_refused("LINK with atoms", CTL(S[DOP_LINK], a, a), TERM_NONE);
    expect_control_refused("LINK arity 2", CTL(S[DOP_LINK], pid), TERM_NONE);
    expect_control_refused("SEND to an integer", CTL(S[DOP_SEND], empty, S[5]), a);
    expect_control_refused("SEND without its payload", CTL(S[DOP_SEND], empty, pid), TERM_NONE);
    expect_control_refused("SEND_SENDER arity 2", CTL(S[DOP_SEND_SENDER], pid), a);
    expect_control_refused("REG_SEND to an integer", CTL(S[DOP_REG_SEND], pid, empty, S[3]), a);
    expect_control_refused("REG_SEND without its payload",
                           CTL(S[DOP_REG_SEND], pid, empty, heap_atom("echo")), TERM_NONE);
    expect_control_refused("LINK with a payload", CTL(S[DOP_LINK], pid, pid), a);
    expect_control_refused("MONITOR_P with no ref", CTL(S[DOP_MONITOR_P], pid, pid, a), TERM_NONE);
    expect_control_refused("MONITOR_P_EXIT arity 2", CTL(S[DOP_MONITOR_P_EXIT], a), TERM_NONE);
    expect_control_refused("EXIT2 to an atom", CTL(S[DOP_EXIT2], pid, a, a), TERM_NONE);
    expect_control_refused("UNLINK_ID arity 3", CTL(S[DOP_UNLINK_ID], S[1], pid), TERM_NONE);
    expect_control_refused("ALIAS_SEND arity 2", CTL(S[DOP_ALIAS_SEND], pid), a);
    expect_control_refused("SPAWN_REQUEST without an MFA",
                           CTL(S[DOP_SPAWN_REQUEST], ref, pid, pid, a, TERM_NIL), TERM_NIL);
    expect_control_refused("SPAWN_REQUEST with improper options",
                           CTL(S[DOP_SPAWN_REQUEST], ref, pid, pid,
                               CTL(heap_atom("erpc"), heap_atom("execute_call"), S[4]), a),
                           TERM_NIL);
    count += 15;
#undef CTL
    heap_destroy(&h);
    return count;
}

/* Unknown capability flags are ignored, as OTP does: the connection comes
 * up and works. */
static void test_unknown_flags(void)
{
    np_peer_t p;
    CU_ASSERT_FATAL(
        np_peer_connect(&p, NP_COOKIE, NULL,
                        (DFLAG_GIRDER_DEFAULT & ~DFLAG_PUBLISHED) | (1ull << 40) | (1ull << 55),
                        0) == 1);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("odd_flags")));
    np_peer_close(&p);
}

/* Keeps a peer alive while the test thread is busy elsewhere: a tick
 * every 250 ms (the node drops a peer silent for its 2 s ticktime). */
typedef struct ticker {
    int fd;
    _Atomic bool stop;
    pthread_t thread;
} ticker_t;

static void *ticker_main(void *arg)
{
    ticker_t *t = arg;
    while (!atomic_load(&t->stop)) {
        if (!np_write_all(t->fd, "\0\0\0\0", 4))
            break;
        nap_ms(250);
    }
    return NULL;
}

static void ticker_start(ticker_t *t, int fd)
{
    t->fd = fd;
    atomic_store(&t->stop, false);
    CU_ASSERT_FATAL(pthread_create(&t->thread, NULL, ticker_main, t) == 0);
}

static void ticker_stop(ticker_t *t)
{
    atomic_store(&t->stop, true);
    pthread_join(t->thread, NULL);
}

/* Waits (up to 3 s) until no connection is up: a test's connections are
 * gone before the next one counts. */
static void wait_no_conns(void)
{
    for (int t = 0; t < 3000 && cluster_conn_stats(NULL, 0) > 0; t += 50)
        nap_ms(50);
    CU_ASSERT(cluster_conn_stats(NULL, 0) == 0);
}

static void test_malformed(void)
{
    log_capture();
    np_start_node(0);
    np_peer_t good;
    CU_ASSERT_FATAL(np_peer_connect(&good, NP_COOKIE, "good@localhost", 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&good, heap_atom("before")));
    ticker_t ticker;
    ticker_start(&ticker, good.fd);
    footprint_t fp = footprint();
    size_t rss0 = sched_os_rss_bytes();
    int cases = handshake_cases() + frame_cases();
    ticker_stop(&ticker);
    fprintf(stdout, "%d malformed handshakes and frames\n", cases);
    CU_ASSERT(cases >= 30);
    /* The good connection was never disturbed; a new one works too. */
    CU_ASSERT(np_echo_round_trip(&good, heap_atom("after")));
    np_peer_t fresh;
    CU_ASSERT_FATAL(np_peer_connect(&fresh, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&fresh, heap_atom("fresh")));
    np_peer_close(&fresh);
    CU_ASSERT(back_to(fp));
    size_t rss1 = sched_os_rss_bytes();
    fprintf(stdout, "RSS %zu KiB -> %zu KiB over the cases\n", rss0 >> 10, rss1 >> 10);
    CU_ASSERT(rss1 < rss0 + ((size_t)32 << 20));
    np_peer_close(&good);
}

/* 100 idle half-open connections: a good peer is served meanwhile, and
 * every one of them is closed by the setup timeout (1 s here). */
static void test_half_open_100(void)
{
    log_capture();
    np_start_node(0);
    wait_no_conns();
    footprint_t fp = footprint();
    int fds[100];
    for (int i = 0; i < 100; i++)
        fds[i] = np_tcp_connect(0);
    /* Some with a handshake message cut short. */
    for (int i = 0; i < 100; i += 10)
        CU_ASSERT(np_write_all(fds[i], "\x00\x13N\x00", 4));
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("served")));
    np_peer_close(&p);
    int closed = 0;
    for (int i = 0; i < 100; i++) {
        closed += np_closed_within(fds[i], 4000);
        close(fds[i]);
    }
    CU_ASSERT(closed == 100);
    CU_ASSERT(back_to(fp));
}

/* ---- back-pressure: a peer that stops reading ---- */

#define BP_MESSAGES 100
#define BP_SIZE ((size_t)1 << 20)
static _Atomic int bp_sent;

/* Sends BP_MESSAGES {seq, I, Bin} (Bin 1 MiB) to the pid in arg. */
static int bp_sender(sched_ctx_t *ctx, term_t arg)
{
    term_t bin = TERM_NONE;
    if (sched_root_push(ctx, &arg) != 0 || sched_root_push(ctx, &bin) != 0)
        return GD_ENOMEM;
    uint8_t *data;
    int rc = heap_make_bitstring_uninit(sched_heap(ctx), BP_SIZE * 8, &data, &bin);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < BP_SIZE; i++)
        data[i] = (uint8_t)i;
    for (int i = 1; i <= BP_MESSAGES && rc == 0; i++) {
        term_t *e, msg;
        rc = heap_make_tuple(sched_heap(ctx), 3, &e, &msg);
        if (rc < 0)
            break;
        e[0] = heap_atom("seq");
        e[1] = term_make_small(i);
        e[2] = bin;
        rc = sched_send(ctx, arg, msg);
        atomic_store(&bp_sent, i);
    }
    sched_root_pop(ctx, 2);
    return rc;
}

/* The same sender as a behaviour process: one message per callback, the
 * next one started by a 'go' it sends itself.  Past the limit it must not
 * run its next callback until the output drains (sched_suspend), so its
 * 'go' waits in its queue and nothing piles up in the output buffer.
 * State: {Peer, Bin, I}. */
static int bpb_init(sched_ctx_t *ctx, term_t arg, term_t *state)
{
    heap_t *h = sched_heap(ctx);
    uint8_t *data;
    term_t bin;
    int rc = heap_make_bitstring_uninit(h, BP_SIZE * 8, &data, &bin);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < BP_SIZE; i++)
        data[i] = (uint8_t)i;
    rc = heap_make_tuple_from(h, 3, (term_t[]){arg, bin, term_make_small(1)}, state);
    return rc < 0 ? rc : sched_send(ctx, sched_self(ctx), heap_atom("go"));
}

static int bpb_handle(sched_ctx_t *ctx, term_t msg, term_t *state)
{
    (void)msg;
    heap_t *h = sched_heap(ctx);
    const term_t *st = term_tuple_elems(*state);
    int64_t i = term_small_value(st[2]);
    term_t m;
    int rc = heap_make_tuple_from(h, 3, (term_t[]){heap_atom("seq"), st[2], st[1]}, &m);
    if (rc == 0)
        rc = sched_send(ctx, st[0], m);
    if (rc < 0)
        return rc;
    atomic_store(&bp_sent, (int)i);
    if (i == BP_MESSAGES)
        return sched_exit(ctx, heap_atom("normal"));
    st = term_tuple_elems(*state);
    rc = heap_make_tuple_from(h, 3, (term_t[]){st[0], st[1], term_make_small(i + 1)}, state);
    return rc < 0 ? rc : sched_send(ctx, sched_self(ctx), heap_atom("go"));
}

static const sched_behaviour_t bp_behaviour = {.init = bpb_init, .handle_message = bpb_handle};

static bool conn_stats_of(const char *name, cluster_conn_stats_t *out)
{
    cluster_conn_stats_t all[16];
    size_t n = cluster_conn_stats(all, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(all[i].node, name) == 0) {
            *out = all[i];
            return true;
        }
    return false;
}

static void slow_reader(bool behaviour)
{
    log_capture();
    np_start_node(0);
    wait_no_conns();
    size_t rss0 = sched_os_rss_bytes();
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 64 * 1024) == 1);
    atomic_store(&bp_sent, 0);
    term_t sender;
    int spawned = behaviour ? sched_spawn(NULL, &bp_behaviour, p.self, &sender)
                            : sched_spawn_coro(NULL, bp_sender, p.self, &sender);
    CU_ASSERT_FATAL(spawned == 0);
    /* Not reading (ticks only, or the node would drop us): the sender
     * must end up suspended (waiting, its count still for a while) with
     * the output near the limit.  Sanitizer builds encode slowly: up to
     * 20 s to get there. */
    sched_process_info_t info = {0};
    cluster_conn_stats_t st = {0};
    int sent_while_stalled = -1;
    for (int t = 0, still = 0; t < 20000 && still < 4; t += 250) {
        CU_ASSERT(np_write_all(p.fd, "\0\0\0\0", 4));
        nap_ms(250);
        int sent = atomic_load(&bp_sent);
        bool waiting = sched_process_info(sender, &info) == 0 &&
                       info.status == SCHED_STATUS_WAITING && conn_stats_of(p.name, &st) && st.busy;
        still = waiting && sent == sent_while_stalled ? still + 1 : 0;
        sent_while_stalled = sent;
    }
    CU_ASSERT(sched_process_info(sender, &info) == 0 && info.status == SCHED_STATUS_WAITING);
    CU_ASSERT_FATAL(conn_stats_of(p.name, &st));
    size_t rss_stalled = sched_os_rss_bytes();
    fprintf(stdout,
            "stalled: %d of %d sent, busy %d, suspends %llu, queued %zu KiB, RSS +%ld KiB\n",
            sent_while_stalled, BP_MESSAGES, st.busy, (unsigned long long)st.suspends,
            st.out_queued >> 10, ((long)rss_stalled - (long)rss0) / 1024);
    CU_ASSERT(sent_while_stalled < BP_MESSAGES / 4);
    CU_ASSERT(st.busy && st.suspends >= 1);
    CU_ASSERT(st.out_queued <= CLUSTER_DIST_BUF_BUSY_LIMIT_DEFAULT + 2 * BP_SIZE);
#ifndef NP_ASAN /* ASan's quarantine keeps freed blocks resident */
    CU_ASSERT(rss_stalled < rss0 + ((size_t)24 << 20));
#endif
    /* Reading again: every message, in order, whole. */
    int next = 1;
    uint64_t last_tick = 0;
    for (int idle = 0; next <= BP_MESSAGES && idle < 100;) {
        dist_msg_t m;
        if (!np_peer_recv(&p, &m, 100)) {
            idle++;
            CU_ASSERT(np_write_all(p.fd, "\0\0\0\0", 4));
            continue;
        }
        idle = 0;
        if (++last_tick % 16 == 0)
            CU_ASSERT(np_write_all(p.fd, "\0\0\0\0", 4));
        if (m.op != DOP_SEND_SENDER && m.op != DOP_SEND)
            continue;
        const term_t *e = term_tuple_elems(m.payload);
        heap_bin_view_t v = {0};
        bool ok = term_is_tuple(m.payload) && term_tuple_arity(m.payload) == 3 &&
                  e[0] == heap_atom("seq") && e[1] == term_make_small(next) && term_is_binary(e[2]);
        if (ok)
            heap_bin_view(e[2], &v);
        ok = ok && v.bit_size == BP_SIZE * 8 && v.bytes[BP_SIZE - 1] == (uint8_t)(BP_SIZE - 1);
        CU_ASSERT(ok);
        if (!ok)
            break;
        next++;
        heap_destroy(&p.h); /* the peer keeps nothing: 100 MB would pile up */
        CU_ASSERT_FATAL(heap_init(&p.h, 0) == 0);
    }
    CU_ASSERT(next == BP_MESSAGES + 1);
    if (next != BP_MESSAGES + 1) {
        int got = sched_process_info(sender, &info);
        fprintf(stdout, "read %d; sender: info %d status %d, %d sent\n", next - 1, got,
                (int)info.status, atomic_load(&bp_sent));
    }
    CU_ASSERT(sched_wait_exit(&sender, 1, 5000) == 0);
    CU_ASSERT(atomic_load(&bp_sent) == BP_MESSAGES);
    CU_ASSERT(conn_stats_of(p.name, &st) && !st.busy && st.traffic.busy_ns > 0);
    np_peer_close(&p);
}

/* ---- malformed global messages ---- */

/* REG_SEND of msg to global_name_server from peer p. */
static void send_to_global(np_peer_t *p, term_t msg)
{
    term_t ctl = tup(&p->h, 4,
                     (term_t[]){term_make_small(DOP_REG_SEND), p->self, heap_atom(""),
                                heap_atom("global_name_server")});
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, msg, 1, 0, &b) == 0);
    CU_ASSERT(np_write_all(p->fd, b.data, b.len));
    etf_buf_free(&b);
}

/* Peers' global messages are untrusted: malformed ones are dropped with a
 * log line, the connection stays, and global_name_server still answers
 * (its get_protocol_version reply comes after every bad message: in
 * order, so each was handled without harm). */
static void test_global_malformed(void)
{
    log_capture();
    np_start_node(0);
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    heap_t *h = &p.h;
    long mark = log_mark();
    term_t cast = heap_atom("$gen_cast"), call = heap_atom("$gen_call"), x = heap_atom("x");
    term_t one = term_make_small(1), bad_triple = tup(h, 3, (term_t[]){one, one, one});
    term_t bad_list;
    CU_ASSERT_FATAL(heap_cons(h, bad_triple, x, &bad_list) == 0); /* improper */
    term_t bad_ops;
    CU_ASSERT_FATAL(heap_cons(h, tup(h, 2, (term_t[]){heap_atom("insert"), bad_triple}), bad_list,
                              &bad_ops) == 0);
    const term_t msgs[] = {
        x,
        tup(h, 2, (term_t[]){cast, x}),
        tup(h, 2, (term_t[]){cast, tup(h, 4, (term_t[]){heap_atom("init_connect"), x, x, x})}),
        tup(h, 2,
            (term_t[]){cast,
                       tup(h, 4,
                           (term_t[]){heap_atom("init_connect"), tup(h, 2, (term_t[]){one, one}),
                                      heap_atom(p.name), tup(h, 4, (term_t[]){x, x, x, one})})}),
        tup(h, 2, (term_t[]){cast, tup(h, 5, (term_t[]){heap_atom("lock_set"), x, x, x, x})}),
        tup(h, 2,
            (term_t[]){cast,
                       tup(h, 6, (term_t[]){heap_atom("new_nodes"), x, bad_ops, x, bad_list, x})}),
        tup(h, 3, (term_t[]){call, x, x}),
        tup(h, 3, (term_t[]){call, tup(h, 2, (term_t[]){one, one}), heap_atom("get_known")}),
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        send_to_global(&p, msgs[i]);
    /* A good call last: {'$gen_call', {Self, 42}, get_protocol_version}. */
    term_t from = tup(h, 2, (term_t[]){p.self, term_make_small(42)});
    send_to_global(&p, tup(h, 3, (term_t[]){call, from, heap_atom("get_protocol_version")}));
    dist_msg_t m;
    bool answered = np_peer_recv(&p, &m, 3000) && m.op == DOP_SEND_SENDER &&
                    term_is_boxed_of(m.payload, HDR_TUPLE) &&
                    term_boxed_ptr(m.payload)[1] == term_make_small(42) &&
                    term_boxed_ptr(m.payload)[2] == term_make_small(8);
    CU_ASSERT(answered);
    CU_ASSERT(log_has_since(mark, "global: malformed init_connect dropped"));
    CU_ASSERT(log_has_since(mark, "global: malformed name operation dropped"));
    CU_ASSERT(log_has_since(mark, "global: malformed $gen_call dropped"));
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("still_here")));
    CU_ASSERT(term_is_pid(sched_whereis(heap_atom("global_name_server"))));
    np_peer_close(&p);
}

static void test_slow_reader(void)
{
    slow_reader(false);
}

/* A behaviour process is held the same way: not run again (no spin: it
 * is waiting, not runnable) until the output drains. */
static void test_slow_reader_behaviour(void)
{
    slow_reader(true);
}

/* A call as girder_call makes it to a remote process, twice in one run:
 * monitor, send, demonitor, monitor, send, then a wait (the run's end). */
static int call_signals(sched_ctx_t *ctx, term_t peer)
{
    term_t ref = TERM_NONE, msg;
    int rc = sched_root_push(ctx, &peer);
    if (rc == 0)
        rc = sched_root_push(ctx, &ref);
    if (rc != 0)
        return rc;
    rc = sched_monitor(ctx, peer, &ref);
    if (rc == 0)
        rc = sched_send(ctx, peer, heap_atom("call1"));
    if (rc == 0)
        rc = sched_demonitor(ctx, ref);
    if (rc == 0)
        rc = sched_monitor(ctx, peer, &ref);
    if (rc == 0)
        rc = sched_send(ctx, peer, heap_atom("call2"));
    if (rc == 0)
        rc = sched_receive_wait(ctx, NULL, NULL, 300, &msg);
    sched_root_pop(ctx, 2);
    return rc == SCHED_ETIMEOUT ? 0 : rc;
}

/* What a process sends to one node in a run leaves in one write (node.c's
 * cork), its own DEMONITOR_P included (not the controller's write after
 * it), in the order sent: the peer reads MONITOR_P, the message, the
 * DEMONITOR_P of the first monitor, then the second call's two.  A tick
 * the node writes meanwhile may add one write. */
static void test_call_one_write(void)
{
    log_capture();
    np_start_node(0);
    wait_no_conns();
    np_peer_t p;
    CU_ASSERT_FATAL(np_peer_connect(&p, NP_COOKIE, NULL, 0, 0) == 1);
    CU_ASSERT(np_echo_round_trip(&p, heap_atom("up")));
    cluster_conn_stats_t st0 = {0}, st1 = {0};
    CU_ASSERT_FATAL(conn_stats_of(p.name, &st0));
    term_t caller;
    CU_ASSERT_FATAL(sched_spawn_coro(NULL, call_signals, p.self, &caller) == 0);
    const int ops[5] = {DOP_MONITOR_P, DOP_SEND_SENDER, DOP_DEMONITOR_P, DOP_MONITOR_P,
                        DOP_SEND_SENDER};
    term_t refs[5] = {TERM_NONE};
    for (int i = 0; i < 5; i++) {
        dist_msg_t m;
        CU_ASSERT_FATAL(np_peer_recv(&p, &m, 3000));
        CU_ASSERT(m.op == ops[i]);
        if (m.op == DOP_MONITOR_P || m.op == DOP_DEMONITOR_P)
            refs[i] = term_tuple_elems(m.control)[3];
        if (m.op == DOP_SEND_SENDER)
            CU_ASSERT(m.payload == heap_atom(i == 1 ? "call1" : "call2"));
    }
    int order = 1;
    CU_ASSERT(heap_compare_checked(refs[0], refs[2], true, &order) == 0 && order == 0);
    CU_ASSERT(heap_compare_checked(refs[0], refs[3], true, &order) == 0 && order != 0);
    CU_ASSERT_FATAL(conn_stats_of(p.name, &st1));
    uint64_t writes = st1.writes - st0.writes;
    fprintf(stdout, "a run's five signals: %llu write(s)\n", (unsigned long long)writes);
    CU_ASSERT(writes >= 1 && writes <= 2);
    np_peer_close(&p);
}

static const gd_test_case_t gd_tests[] = {
    {"malformed handshakes and frames", test_malformed},
    {"unknown flags", test_unknown_flags},
    {"100 half-open connections", test_half_open_100},
    {"a peer that stops reading", test_slow_reader},
    {"malformed global messages", test_global_malformed},
    {"a peer that stops reading a behaviour's sends", test_slow_reader_behaviour},
    {"a run's signals to a node in one write", test_call_one_write},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_node_malformed", gd_tests)
