/*
 * test_probes.c — `girder epmd` against OTP's real `epmd`, side by side:
 * both daemons run as processes (-packet_timeout 1) and get the same byte
 * probes — the malformed requests of docs/robustness.md (E1-E27: OTP's epmd_SUITE cases and ours)
 * and the good ones.  Every answer from girder must equal OTP's (creation and fd numbers masked) or
 * be a closed connection where OTP answers with a close too, and after every probe both daemons
 * must still answer a PORT_PLEASE2 promptly.  Also: our client library against both daemons, and
 * `girder epmd -names` / `girder names` output against `epmd -names`.
 *
 * usage: test_epmd_probes <path-to-girder>
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cunit_main.h"
#include "epmd_test_util.h"
#include "internal.h"

#define ANSWER_MAX 65536
#define ANSWER_WAIT_MS 2000
#define LIVENESS_MS 250 /* docs/robustness.md asks <= 100 ms; margin for loaded CI */
#define IDLE_FLOOD 3000

static const char *girder_path;

typedef struct daemon {
    const char *label;
    pid_t pid;
    uint16_t port;
    bool otp;
} daemon_t;

static daemon_t d_otp, d_gd; /* strict (no -relaxed_command_check) */
static epmd_registration_t *keeper[2];

/* ---- process and socket helpers ---------------------------------------------------------- */

#define DAEMON_ARGS_MAX 8
static const char *const strict_args[] = {"-packet_timeout", "1", NULL};
static const char *const relaxed_args[] = {"-relaxed_command_check", "-packet_timeout", "1", NULL};

/* start_daemon starts OTP's epmd or girder epmd on a free port with the
 * flags of args (NULL-terminated, at most DAEMON_ARGS_MAX) after -port. */
static bool start_daemon(daemon_t *d, bool otp, const char *const *args)
{
    memset(d, 0, sizeof d[0]);
    d->otp = otp;
    d->label = otp ? "otp" : "girder";
    for (int attempt = 0; attempt < 5; attempt++) {
        d->port = et_free_port();
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)d->port);
        pid_t pid = fork();
        if (pid < 0)
            return false;
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1);
            dup2(null, 2);
            const char *argv[DAEMON_ARGS_MAX + 5];
            int n = 0;
            argv[n++] = otp ? "epmd" : "girder";
            if (!otp)
                argv[n++] = "epmd";
            argv[n++] = "-port";
            argv[n++] = port;
            for (int i = 0; args[i] != NULL && i < DAEMON_ARGS_MAX; i++)
                argv[n++] = args[i];
            argv[n] = NULL;
            execvp(otp ? "epmd" : girder_path, (char *const *)argv);
            _exit(127);
        }
        d->pid = pid;
        /* long enough for an answer held back by -delay_write 1 */
        epmd_client_opts_t o = {.port = d->port, .timeout_ms = 2500};
        int64_t deadline = et_mono_ms() + 5000;
        while (et_mono_ms() < deadline) {
            if (epmd_client_probe(&o) == 0)
                return true;
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break; /* port taken by someone else: try another */
            et_sleep_ms(20);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return false;
}

static void stop_daemon(daemon_t *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

/* exited_within reports whether the daemon exited (e.g. after KILL). */
static bool exited_within(daemon_t *d, int ms)
{
    int64_t deadline = et_mono_ms() + ms;
    while (et_mono_ms() < deadline) {
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            return true;
        }
        et_sleep_ms(20);
    }
    return false;
}

typedef struct answer {
    uint8_t data[ANSWER_MAX];
    size_t len;
    bool closed;
} answer_t;

/* collect reads until EOF/RST or wait_ms (or max bytes, max > 0). */
static void collect(int fd, answer_t *a, int wait_ms, size_t max)
{
    a->len = et_read_until_close(fd, a->data, max, wait_ms, &a->closed);
}

/* exchange sends bytes on a fresh connection and collects the answer. */
static void exchange(uint16_t port, const uint8_t *bytes, size_t len, answer_t *a)
{
    int fd = et_connect(port);
    CU_ASSERT_FATAL(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the daemon may close before we finish: fine */
        off += (size_t)n;
    }
    collect(fd, a, ANSWER_WAIT_MS, ANSWER_MAX);
    close(fd);
}

static size_t frame(uint8_t *out, const uint8_t *body, size_t len)
{
    epmd_put16(out, (uint16_t)len);
    memcpy(out + 2, body, len);
    return len + 2;
}

/* alive_body builds an ALIVE2 body as the probes send it: node port 30000,
 * lowest version 5. */
static size_t alive_body(uint8_t *b, const uint8_t *name, size_t nlen, uint16_t hi,
                         const uint8_t *extra, size_t elen)
{
    return et_alive_body(b, name, nlen, 30000, hi, 5, extra, elen);
}

/* alive_lookup_ms times a PORT_PLEASE2 of the keeper name (-1: failed). */
static int alive_lookup_ms(uint16_t port)
{
    epmd_client_opts_t o = {.port = port, .timeout_ms = 2000};
    epmd_node_info_t info;
    int64_t t0 = et_mono_ms();
    int rc = epmd_client_port_please(&o, "keeper", &info);
    int ms = (int)(et_mono_ms() - t0);
    return rc == 0 && info.port == 4242 ? ms : -1;
}

/* register_node registers name for node port node_port (type 77, versions
 * 6/5) at the daemon on port; *reg is then the caller's to close. */
static int register_node(uint16_t port, const char *name, uint16_t node_port,
                         epmd_registration_t **reg)
{
    epmd_client_opts_t o = {.port = port, .timeout_ms = 2000};
    epmd_node_info_t n = {.port = node_port, .node_type = 77, .high_vsn = 6, .low_vsn = 5};
    snprintf(n.name, sizeof n.name, "%s", name);
    uint32_t cr;
    return epmd_client_register(&o, &n, &cr, reg);
}

static void assert_both_alive(const char *after)
{
    int a = alive_lookup_ms(d_otp.port);
    int b = alive_lookup_ms(d_gd.port);
    if (b < 0 || b > LIVENESS_MS || a < 0)
        fprintf(stderr, "liveness after %s: otp %d ms, girder %d ms\n", after, a, b);
    CU_ASSERT(a >= 0);
    CU_ASSERT(b >= 0 && b <= LIVENESS_MS);
}

/* mask_fds collapses the number after "fd = " (DUMP) to one '#', and
 * mask_port blanks the epmd port that starts NAMES and DUMP answers, so
 * both daemons compare. */
static void mask_fds(answer_t *a)
{
    for (size_t i = 0; i + 5 < a->len; i++) {
        if (memcmp(a->data + i, "fd = ", 5) != 0)
            continue;
        size_t k = i + 5, end = k;
        while (end < a->len && a->data[end] >= '0' && a->data[end] <= '9')
            end++;
        if (end == k)
            continue;
        a->data[k] = '#';
        memmove(a->data + k + 1, a->data + end, a->len - end);
        a->len -= end - k - 1;
    }
}

static void mask_port(answer_t *a)
{
    if (a->len >= 4)
        memset(a->data, 0, 4);
}

/* same: equal bytes, and girder closed whenever OTP did.  OTP keeps a
 * connection open after refusing an ALIVE2 (it marks every answered
 * ALIVE2 socket "keep"); girder closes it: same answer, then a close. */
static bool same(const answer_t *otp, const answer_t *gd)
{
    return otp->len == gd->len && (otp->closed == gd->closed || gd->closed) &&
           (otp->len == 0 || memcmp(otp->data, gd->data, otp->len) == 0);
}

/* probe runs one request on both daemons, checks girder == OTP and, when
 * expect is given, girder == expect, then checks both still serve. */
static void probe(const char *name, const uint8_t *bytes, size_t len, const void *expect,
                  size_t expect_len)
{
    static answer_t a, b;
    exchange(d_otp.port, bytes, len, &a);
    exchange(d_gd.port, bytes, len, &b);
    mask_fds(&a);
    mask_fds(&b);
    if (len == 3 && (bytes[2] == EPMD_NAMES_REQ || bytes[2] == EPMD_DUMP_REQ)) {
        CU_ASSERT(a.len >= 4 && epmd_get32(a.data) == d_otp.port);
        CU_ASSERT(b.len >= 4 && epmd_get32(b.data) == d_gd.port);
        mask_port(&a);
        mask_port(&b);
    }
    if (!same(&a, &b))
        fprintf(stderr, "probe %s: otp %zu bytes closed=%d, girder %zu bytes closed=%d\n", name,
                a.len, a.closed, b.len, b.closed);
    CU_ASSERT(same(&a, &b));
    CU_ASSERT(b.closed);
    if (expect != NULL) {
        CU_ASSERT_EQUAL(b.len, expect_len);
        CU_ASSERT(b.len == expect_len && memcmp(b.data, expect, expect_len) == 0);
    }
    assert_both_alive(name);
}

/* ---- probes ------------------------------------------------------------------------ */

static void test_malformed(void)
{
    uint8_t buf[70000], body[4096];
    size_t n;
    /* E5 zero length */
    memset(buf, 0, 10);
    probe("zero_length", buf, 10, "", 0);
    /* E6 too large (63000) */
    epmd_put16(buf, 63000);
    memset(buf + 2, 'z', 63000);
    probe("too_large", buf, 63002, "", 0);
    /* E21 PORT2 with a 65533-byte name */
    epmd_put16(buf, 0xFFFE);
    buf[2] = 'z';
    memset(buf + 3, 'a', 0xFFFD);
    probe("port2_huge_name", buf, 0x10000, "", 0);
    /* E19 unknown opcode, and the old R3 requests */
    probe("unknown_51", (const uint8_t *)"\x00\x01\x51", 3, "", 0);
    probe("old_alive_a",
          (const uint8_t *)"\x00\x03"
                           "a\x01\x02",
          5, "", 0);
    probe("old_port_p", (const uint8_t *)"\x00\x04pabc", 6, "", 0);
    /* E20 PORT2 with empty name, or just a NUL */
    probe("port2_empty", (const uint8_t *)"\x00\x01z", 3, "", 0);
    probe("port2_nul", (const uint8_t *)"\x00\x02z\x00", 4, "", 0);
    probe("port2_nul_inside",
          (const uint8_t *)"\x00\x04z"
                           "a\x00"
                           "b",
          6, "", 0);
    probe("port2_bad_utf8", (const uint8_t *)"\x00\x03z\xff\xfe", 5, "", 0);
    body[0] = 'z';
    memset(body + 1, 'k', 255);
    n = frame(buf, body, 256);
    probe("port2_255_chars", buf, n, "", 0);
    n = frame(buf, body, 255);
    probe("port2_254_chars", buf, n, "\x77\x01", 2);
    probe("port2_unknown", (const uint8_t *)"\x00\x03zzz", 5, "\x77\x01", 2);
    /* two requests in one packet */
    probe("two_in_one", (const uint8_t *)"\x00\x01n\x00\x01n", 6, "", 0);
    /* A7/A8 ALIVE2 too small */
    n = alive_body(body, (const uint8_t *)"small", 5, 6, NULL, 0);
    probe("alive_too_small_1", buf, frame(buf, body, n - 2), "", 0);
    probe("alive_too_small_2", buf, frame(buf, body, 9), "", 0);
    probe("alive_13_bytes", buf, frame(buf, body, 13), "", 0);
    /* A9 600-byte name with HighestVersion 5: y 01 0063 */
    uint8_t nm[1100];
    memset(nm, 'L', sizeof nm);
    n = alive_body(body, nm, 600, 5, NULL, 0);
    probe("alive_too_large", buf, frame(buf, body, n), "\x79\x01\x00\x63", 4);
    /* 1021-byte name, v6: v 01 00000063 */
    n = alive_body(body, nm, 1021, 6, NULL, 0);
    probe("alive_name_1021", buf, frame(buf, body, n), "\x76\x01\x00\x00\x00\x63", 6);
    /* A10/A11 NUL in name */
    n = alive_body(body, (const uint8_t *)"foo\0bar", 7, 6, NULL, 0);
    probe("name_with_null_inside", buf, frame(buf, body, n), "", 0);
    n = alive_body(body, (const uint8_t *)"foo\0", 4, 6, NULL, 0);
    probe("name_null_terminated", buf, frame(buf, body, n), "", 0);
    /* invalid UTF-8 and 256 characters: error answers */
    n = alive_body(body, (const uint8_t *)"\xc0\x80x", 3, 6, NULL, 0);
    probe("alive_bad_utf8", buf, frame(buf, body, n), "\x76\x01\x00\x00\x00\x63", 6);
    n = alive_body(body, nm, 256, 6, NULL, 0);
    probe("alive_256_chars", buf, frame(buf, body, n), "\x76\x01\x00\x00\x00\x63", 6);
    /* A13 buffer_overrun_1: extra length claimed, no bytes */
    for (int claim = 1; claim <= 10000; claim *= 10) {
        n = alive_body(body, (const uint8_t *)"ovr", 3, 6, NULL, 0);
        epmd_put16(body + 14, (uint16_t)claim);
        probe("buffer_overrun_1", buf, frame(buf, body, n), "", 0);
    }
    /* A14 buffer_overrun_2: 1021 bytes of 0xFF extra: error; 3000: too big */
    uint8_t ff[3000];
    memset(ff, 0xFF, sizeof ff);
    n = alive_body(body, (const uint8_t *)"ovr2", 4, 6, ff, 1021);
    probe("buffer_overrun_2", buf, frame(buf, body, n), "\x76\x01\x00\x00\x00\x63", 6);
    epmd_put16(buf, 3100);
    buf[2] = 'x';
    memset(buf + 3, 0xFF, 3099);
    probe("buffer_overrun_2_big", buf, 3102, "", 0);
    /* A16 KILL with live nodes: NO; STOP without relaxed: closed */
    probe("no_live_killing", (const uint8_t *)"\x00\x01k", 3, "NO", 2);
    probe("stop_not_relaxed", (const uint8_t *)"\x00\x07skeeper", 9, "", 0);
    /* the good requests answer identically */
    probe("names", (const uint8_t *)"\x00\x01n", 3, NULL, 0);
    probe("dump",
          (const uint8_t *)"\x00\x01"
                           "d",
          3, NULL, 0);
    probe("port2_keeper", (const uint8_t *)"\x00\x07zkeeper", 9, NULL, 0);
    probe("port2_keeper_nul", (const uint8_t *)"\x00\x08zkeeper\x00", 10, NULL, 0);
}

/* open_alive registers on a kept connection and returns it (-1 on close). */
static int open_alive(uint16_t port, const uint8_t *body, size_t n, answer_t *a)
{
    uint8_t buf[4096];
    int fd = et_connect(port);
    size_t len = frame(buf, body, n);
    CU_ASSERT(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
    collect(fd, a, 500, body[5] == 0 && body[6] < 6 ? 4 : 6);
    return fd;
}

static void test_registrations(void)
{
    static answer_t a, b;
    uint8_t body[4096];
    int fa, fb;
    const daemon_t *ds[2] = {&d_otp, &d_gd};
    /* E22 odd node type / protocol / versions: OTP accepts; so do we */
    size_t n = alive_body(body, (const uint8_t *)"odd", 3, 3, NULL, 0);
    body[3] = 0;
    body[4] = 9;
    fa = open_alive(d_otp.port, body, n, &a);
    fb = open_alive(d_gd.port, body, n, &b);
    CU_ASSERT(a.len == 4 && b.len == 4 && memcmp(a.data, b.data, 2) == 0);
    CU_ASSERT(b.len == 4 && b.data[0] == EPMD_ALIVE2_RESP && b.data[1] == 0);
    /* A12 duplicate name: second refused with creation 99 */
    static answer_t a2, b2;
    int ga = open_alive(d_otp.port, body, n, &a2);
    int gb = open_alive(d_gd.port, body, n, &b2);
    CU_ASSERT(same(&a2, &b2));
    CU_ASSERT(b2.len == 4 && memcmp(b2.data, "\x79\x01\x00\x63", 4) == 0);
    close(ga);
    close(gb);
    /* the lookup answers alike (type 0, protocol 9, versions 3/5) */
    probe("port2_odd", (const uint8_t *)"\x00\x04zodd", 6, NULL, 0);
    close(fa);
    close(fb);
    /* unicode names, 800-byte name, extra with NULs: echoed by PORT2 */
    uint8_t uni[800];
    for (int i = 0; i < 200; i++)
        memcpy(uni + 4 * i, "\xf0\x9f\x90\x98", 4);
    const uint8_t extra[] = {0, 1, 0, 'x', 0};
    n = alive_body(body, uni, 800, 6, extra, sizeof extra);
    fa = open_alive(d_otp.port, body, n, &a);
    fb = open_alive(d_gd.port, body, n, &b);
    CU_ASSERT(a.len == 6 && b.len == 6 && a.data[1] == 0 && b.data[1] == 0);
    uint8_t req[1024];
    req[0] = 'z';
    memcpy(req + 1, uni, 800);
    uint8_t fr[1100];
    probe("port2_long_unicode", fr, frame(fr, req, 801), NULL, 0);
    close(fa);
    close(fb);
    /* E23 a second ALIVE2 on the registration socket: closed, name dropped */
    n = alive_body(body, (const uint8_t *)"twice", 5, 6, NULL, 0);
    for (int i = 0; i < 2; i++) {
        int fd = open_alive(ds[i]->port, body, n, &a);
        CU_ASSERT(a.len == 6 && a.data[1] == 0);
        uint8_t f2[64];
        size_t l2 = frame(f2, body, n);
        (void)send(fd, f2, l2, MSG_NOSIGNAL);
        collect(fd, &a, 1000, ANSWER_MAX);
        CU_ASSERT(a.closed && a.len == 0);
        close(fd);
    }
    probe("port2_twice_gone", (const uint8_t *)"\x00\x06ztwice", 8, "\x77\x01", 2);
    /* A18 reset right after ALIVE2: no zombie, the name is free again */
    n = alive_body(body, (const uint8_t *)"rst", 3, 6, NULL, 0);
    for (int i = 0; i < 2; i++) {
        int fd = et_connect(ds[i]->port);
        uint8_t f2[64];
        size_t l2 = frame(f2, body, n);
        (void)send(fd, f2, l2, MSG_NOSIGNAL);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    et_sleep_ms(300);
    probe("port2_rst_gone", (const uint8_t *)"\x00\x04zrst", 6, "\x77\x01", 2);
}

static void test_timeouts_and_dribble(void)
{
    /* E1-E4 (no data, one byte, length without body, partial packet) and a
     * client that sends one byte and then waits: all closed by
     * -packet_timeout 1, in parallel on both daemons. */
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {{"", 0},
                 {"\x00", 1},
                 {"\x00\x03", 2},
                 {"\x00\x64"
                  "0123456789abcdef",
                  18}};
    enum { NC = sizeof cases / sizeof cases[0] };
    int fds[2][NC];
    const daemon_t *ds[2] = {&d_otp, &d_gd};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NC; i++) {
            fds[d][i] = et_connect(ds[d]->port);
            if (cases[i].len)
                (void)send(fds[d][i], cases[i].bytes, cases[i].len, MSG_NOSIGNAL);
        }
    /* meanwhile E25: a request dribbled 1 byte / 100 ms is served */
    for (int d = 0; d < 2; d++) {
        int fd = et_connect(ds[d]->port);
        const char req[] = "\x00\x07zkeeper";
        for (size_t i = 0; i < sizeof req - 1; i++) {
            (void)send(fd, req + i, 1, MSG_NOSIGNAL);
            et_sleep_ms(100);
        }
        static answer_t a;
        collect(fd, &a, 1000, ANSWER_MAX);
        CU_ASSERT(a.closed && a.len > 2 && a.data[0] == 0x77 && a.data[1] == 0);
        close(fd);
    }
    static answer_t a;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < NC; i++) {
            collect(fds[d][i], &a, 8000, ANSWER_MAX);
            if (!a.closed)
                fprintf(stderr, "%s: timeout case %d not closed\n", ds[d]->label, i);
            CU_ASSERT(a.closed && a.len == 0);
            close(fds[d][i]);
        }
    assert_both_alive("timeouts");
}

static void test_idle_flood(void)
{
    /* E26: thousands of idle connections from one address; girder keeps
     * answering lookups at once (OTP's select() epmd stops at 1024 fds, so
     * this one runs against girder only). */
    et_raise_nofile();
    int *fds = calloc(IDLE_FLOOD, sizeof *fds);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fds);
    int opened = 0;
    for (int i = 0; i < IDLE_FLOOD; i++) {
        fds[i] = et_connect(d_gd.port);
        if (fds[i] >= 0)
            opened++;
    }
    CU_ASSERT(opened >= IDLE_FLOOD / 2);
    int ms = alive_lookup_ms(d_gd.port);
    fprintf(stderr, "lookup with %d idle connections: %d ms\n", opened, ms);
    CU_ASSERT(ms >= 0 && ms <= LIVENESS_MS);
    for (int i = 0; i < IDLE_FLOOD; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    assert_both_alive("idle flood");
}

static void test_kill9_registered_node(void)
{
    /* E27: a registered node killed with -9 disappears within a second and
     * its name can be registered again. */
    const daemon_t *ds[2] = {&d_otp, &d_gd};
    for (int d = 0; d < 2; d++) {
        int ready[2];
        CU_ASSERT_FATAL(pipe(ready) == 0);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            epmd_registration_t *reg = NULL;
            char ok = register_node(ds[d]->port, "doomed", 777, &reg) == 0 ? 'y' : 'n';
            (void)write(ready[1], &ok, 1);
            for (;;)
                pause();
        }
        close(ready[1]);
        char ok = 'n';
        CU_ASSERT(read(ready[0], &ok, 1) == 1 && ok == 'y');
        close(ready[0]);
        epmd_client_opts_t o = {.port = ds[d]->port, .timeout_ms = 2000};
        epmd_node_info_t info;
        CU_ASSERT_EQUAL(epmd_client_port_please(&o, "doomed", &info), 0);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        int64_t t0 = et_mono_ms();
        int rc;
        while ((rc = epmd_client_port_please(&o, "doomed", &info)) == 0 && et_mono_ms() - t0 < 1000)
            et_sleep_ms(10);
        CU_ASSERT_EQUAL(rc, EPMD_ENOTFOUND);
        epmd_registration_t *reg = NULL;
        CU_ASSERT_EQUAL(register_node(ds[d]->port, "doomed", 778, &reg), 0);
        epmd_registration_close(reg);
    }
}

static void test_client_against_both(void)
{
    const daemon_t *ds[2] = {&d_otp, &d_gd};
    for (int d = 0; d < 2; d++) {
        epmd_client_opts_t o = {.port = ds[d]->port, .timeout_ms = 2000};
        epmd_node_info_t n = {.port = 5555, .node_type = 72, .high_vsn = 6, .low_vsn = 5};
        strcpy(n.name, "libclient");
        n.extra_len = 3;
        memcpy(n.extra, "a\0b", 3);
        uint32_t cr1 = 0, cr2 = 0;
        epmd_registration_t *reg = NULL;
        CU_ASSERT_EQUAL_FATAL(epmd_client_register(&o, &n, &cr1, &reg), 0);
        CU_ASSERT(cr1 >= 4);
        CU_ASSERT(epmd_registration_alive(reg));
        epmd_node_info_t info;
        CU_ASSERT_EQUAL(epmd_client_port_please(&o, "libclient", &info), 0);
        CU_ASSERT_EQUAL(info.port, 5555);
        CU_ASSERT_EQUAL(info.node_type, 72);
        CU_ASSERT(info.extra_len == 3 && memcmp(info.extra, "a\0b", 3) == 0);
        epmd_names_t names;
        CU_ASSERT_EQUAL_FATAL(epmd_client_names(&o, &names, NULL, NULL), 0);
        CU_ASSERT_EQUAL(names.epmd_port, ds[d]->port);
        bool seen = false;
        for (size_t i = 0; i < names.count; i++)
            seen |=
                strcmp(names.entries[i].name, "libclient") == 0 && names.entries[i].port == 5555;
        CU_ASSERT(seen);
        epmd_names_free(&names);
        /* re-registering the same name gets a new creation */
        CU_ASSERT_EQUAL(epmd_client_reregister(reg, 10, 50, &cr2), 0);
        CU_ASSERT_NOT_EQUAL(cr1, cr2);
        /* v5 registration: 16-bit creation 1..3 */
        epmd_node_info_t old = {.port = 5556, .node_type = 77, .high_vsn = 5, .low_vsn = 5};
        strcpy(old.name, "oldstyle");
        epmd_registration_t *r5 = NULL;
        uint32_t c5 = 0;
        CU_ASSERT_EQUAL(epmd_client_register(&o, &old, &c5, &r5), 0);
        CU_ASSERT(c5 >= 1 && c5 <= 3);
        epmd_registration_close(r5);
        CU_ASSERT_EQUAL(epmd_client_kill(&o), EPMD_ENOTALLOWED);
        epmd_registration_close(reg);
    }
}

/* run_capture runs a command and returns its stdout (malloc'd). */
static char *run_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    size_t cap = 65536, len = 0;
    char *out = malloc(cap);
    size_t n;
    while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0)
        len += n;
    pclose(p);
    if (out)
        out[len] = '\0';
    return out;
}

static void test_cli_output(void)
{
    char cmd[1024];
    for (int d = 0; d < 2; d++) {
        uint16_t port = d ? d_gd.port : d_otp.port;
        snprintf(cmd, sizeof cmd, "epmd -port %u -names", (unsigned)port);
        char *otp_out = run_capture(cmd);
        snprintf(cmd, sizeof cmd, "'%s' epmd -port %u -names", girder_path, (unsigned)port);
        char *gd_out = run_capture(cmd);
        snprintf(cmd, sizeof cmd, "'%s' names -port %u", girder_path, (unsigned)port);
        char *gd_names = run_capture(cmd);
        CU_ASSERT_PTR_NOT_NULL_FATAL(otp_out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(gd_out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(gd_names);
        CU_ASSERT(strstr(otp_out, "name keeper at port 4242\n") != NULL);
        CU_ASSERT_STRING_EQUAL(gd_out, otp_out);
        CU_ASSERT_STRING_EQUAL(gd_names, otp_out);
        free(otp_out);
        free(gd_out);
        free(gd_names);
    }
}

static void test_relaxed_stop_kill(void)
{
    daemon_t r[2];
    CU_ASSERT_FATAL(start_daemon(&r[0], true, relaxed_args));
    CU_ASSERT_FATAL(start_daemon(&r[1], false, relaxed_args));
    static answer_t a[2];
    for (int d = 0; d < 2; d++) {
        epmd_registration_t *reg = NULL;
        CU_ASSERT_EQUAL_FATAL(register_node(r[d].port, "victim", 1, &reg), 0);
        static answer_t first;
        exchange(r[d].port, (const uint8_t *)"\x00\x07svictim", 9, &first);
        CU_ASSERT(first.closed && first.len == 7 && memcmp(first.data, "STOPPED", 7) == 0);
        int64_t t0 = et_mono_ms();
        while (epmd_registration_alive(reg) && et_mono_ms() - t0 < 1000)
            et_sleep_ms(10);
        CU_ASSERT_FALSE(epmd_registration_alive(reg));
        epmd_registration_close(reg);
        exchange(r[d].port, (const uint8_t *)"\x00\x07svictim", 9, &a[d]);
    }
    CU_ASSERT(same(&a[0], &a[1]));
    CU_ASSERT(a[1].len == 14 && memcmp(a[1].data, "NOEXISTSTOPPED", 14) == 0);
    /* KILL: "OK" and the daemon exits, with a live node too (relaxed) */
    for (int d = 0; d < 2; d++) {
        epmd_registration_t *reg = NULL;
        CU_ASSERT_EQUAL(register_node(r[d].port, "live", 1, &reg), 0);
        exchange(r[d].port, (const uint8_t *)"\x00\x01k", 3, &a[d]);
        CU_ASSERT(a[d].closed && a[d].len == 2 && memcmp(a[d].data, "OK", 2) == 0);
        CU_ASSERT(exited_within(&r[d], 3000));
        epmd_registration_close(reg);
    }
    stop_daemon(&r[0]);
    stop_daemon(&r[1]);
}

static void test_daemon_flag(void)
{
    /* -daemon returns once the port answers; -kill stops it */
    uint16_t port = et_free_port();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' epmd -daemon -port %u", girder_path, (unsigned)port);
    CU_ASSERT_EQUAL(system(cmd), 0);
    epmd_client_opts_t o = {.port = port, .timeout_ms = 1000};
    CU_ASSERT_EQUAL(epmd_client_probe(&o), 0);
    snprintf(cmd, sizeof cmd, "'%s' epmd -port %u -kill", girder_path, (unsigned)port);
    char *out = run_capture(cmd);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_STRING_EQUAL(out, "Killed\n");
    free(out);
    et_sleep_ms(200);
    CU_ASSERT_EQUAL(epmd_client_probe(&o), EPMD_ECONNREFUSED);
    /* a second daemon on a taken port exits quietly, like epmd */
    CU_ASSERT_FATAL(d_gd.port != 0);
    snprintf(cmd, sizeof cmd, "'%s' epmd -port %u", girder_path, (unsigned)d_gd.port);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* -delay_write S: both daemons answer a NAMES request S seconds late, with
 * the same bytes; a delay of 0 is a usage error, as for epmd. */
static void test_delay_write_flag(void)
{
    static const char *const args[] = {"-delay_write", "1", NULL};
    daemon_t d[2];
    static answer_t a[2];
    CU_ASSERT_FATAL(start_daemon(&d[0], true, args));
    CU_ASSERT_FATAL(start_daemon(&d[1], false, args));
    for (int i = 0; i < 2; i++) {
        int64_t t0 = et_mono_ms();
        exchange(d[i].port, (const uint8_t *)"\x00\x01n", 3, &a[i]);
        int64_t took = et_mono_ms() - t0;
        CU_ASSERT(took >= 900 && took < 2500);
        CU_ASSERT(a[i].closed && a[i].len == 4);
        mask_port(&a[i]);
    }
    CU_ASSERT(same(&a[0], &a[1]));
    stop_daemon(&d[0]);
    stop_daemon(&d[1]);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' epmd -delay_write 0 2>/dev/null", girder_path);
    CU_ASSERT_NOT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s' epmd --help", girder_path);
    char *out = run_capture(cmd);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "-delay_accept S"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "-delay_write S"));
    free(out);
}

static const gd_test_case_t gd_tests[] = {
    {"malformed_requests", test_malformed},
    {"registrations", test_registrations},
    {"timeouts_and_dribble", test_timeouts_and_dribble},
    {"idle_flood", test_idle_flood},
    {"kill9_registered_node", test_kill9_registered_node},
    {"client_against_both", test_client_against_both},
    {"cli_output", test_cli_output},
    {"relaxed_stop_kill", test_relaxed_stop_kill},
    {"daemon_flag", test_daemon_flag},
    {"delay_write_flag", test_delay_write_flag},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <girder>\n", argv[0]);
        return 2;
    }
    girder_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    unsetenv("ERL_EPMD_PORT");
    if (!start_daemon(&d_otp, true, strict_args) || !start_daemon(&d_gd, false, strict_args)) {
        fprintf(stderr, "cannot start the daemons\n");
        stop_daemon(&d_otp);
        return 1;
    }
    epmd_node_info_t k = {.port = 4242, .node_type = 77, .high_vsn = 6, .low_vsn = 5};
    strcpy(k.name, "keeper");
    k.extra_len = 2;
    memcpy(k.extra, "e\0", 2);
    uint32_t cr;
    epmd_client_opts_t oo = {.port = d_otp.port, .timeout_ms = 2000};
    epmd_client_opts_t og = {.port = d_gd.port, .timeout_ms = 2000};
    int rc = 1;
    if (epmd_client_register(&oo, &k, &cr, &keeper[0]) == 0 &&
        epmd_client_register(&og, &k, &cr, &keeper[1]) == 0)
        rc = gd_run_tests("epmd_probes", gd_tests);
    else
        fprintf(stderr, "cannot register the keeper names\n");
    epmd_registration_close(keeper[0]);
    epmd_registration_close(keeper[1]);
    stop_daemon(&d_otp);
    stop_daemon(&d_gd);
    return rc;
}
