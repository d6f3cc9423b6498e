/*
 * test_metrics.c — the metrics registry and endpoint of node/bench/:
 * registration rules, the exposition text checked line by line by a strict
 * parser of the Prometheus text format (python3), the endpoint on an
 * ephemeral port scraped with a plain socket and with python3 urllib, and
 * malformed HTTP requests answered with an error (or closed) while the
 * server keeps serving.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cunit_main.h"
#include "internal.h"
#include "sched/sched.h"

/* The strict reader of the text format 0.0.4, tests/bench_lib/prom_check.py
 * (shared with the `girder node --metrics` test): argv[1] a file or an
 * http:// URL, argv[2..] names that must be present. */
#ifndef GD_PROM_CHECK_PY
#error "GD_PROM_CHECK_PY (the path of tests/bench_lib/prom_check.py) must be defined"
#endif

/* Runs the strict parser on text (or a URL when url is set). */
static int check_prom(const char *text, const char *url, const char *names)
{
    char file[64] = "";
    if (text != NULL) {
        snprintf(file, sizeof file, "/tmp/gd_prom_text_XXXXXX");
        int fd = mkstemp(file);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 %s '%s' %s", GD_PROM_CHECK_PY, text != NULL ? file : url,
             names);
    printf("\n  ");
    fflush(stdout);
    int st = system(cmd);
    if (st != 0 && text != NULL)
        printf("  --- text was:\n%s---\n", text);
    if (file[0] != '\0')
        unlink(file);
    return st;
}

static const double lat_bounds[] = {0.0001, 0.001, 0.01, 0.1, 1};

/* A registry with one of everything, escapes included. */
static bench_metrics_t *make_registry(bench_metric_t **ctr, bench_metric_t **gauge,
                                      bench_metric_t **hist)
{
    bench_metrics_t *reg;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_new(&reg), 0);
    bench_label_t l1[] = {{"peer", "otp1@host"}, {"dir", "out"}};
    bench_label_t l2[] = {{"peer", "we\"ird\\name\nx"}, {"dir", "in"}};
    bench_metric_t *c2;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_COUNTER,
                                                 "girder_dist_bytes_total",
                                                 "Bytes sent and received per connection.\n"
                                                 "Back\\slash in help.",
                                                 l1, 2, NULL, 0, ctr),
                          0);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_COUNTER,
                                                 "girder_dist_bytes_total",
                                                 "Bytes sent and received per connection.\n"
                                                 "Back\\slash in help.",
                                                 l2, 2, NULL, 0, &c2),
                          0);
    bench_metric_add(c2, 7);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, "girder_memory_bytes",
                                                 "Memory by kind.", NULL, 0, NULL, 0, gauge),
                          0);
    bench_label_t lk[] = {{"kind", "heap"}};
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM,
                                                 "girder_gc_pause_seconds", "GC pauses.", lk, 1,
                                                 lat_bounds, 5, hist),
                          0);
    return reg;
}

static void test_register_rules(void)
{
    bench_metric_t *c, *g, *h, *x;
    bench_metrics_t *reg = make_registry(&c, &g, &h);
    bench_label_t l1[] = {{"peer", "otp1@host"}, {"dir", "out"}};
    /* same series twice, type or help mismatch */
    CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_COUNTER, "girder_dist_bytes_total",
                                           "Bytes sent and received per connection.\n"
                                           "Back\\slash in help.",
                                           l1, 2, NULL, 0, &x),
                    GD_EDUPLICATE_KEY);
    CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, "girder_dist_bytes_total", "x",
                                           NULL, 0, NULL, 0, &x),
                    GD_EINVAL);
    CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, "girder_memory_bytes",
                                           "other help", l1, 1, NULL, 0, &x),
                    GD_EINVAL);
    /* names */
    static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "é", "a\n"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, bad_names[i], "h", NULL, 0,
                                               NULL, 0, &x),
                        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "ns:sub_name9", "h", NULL, 0, NULL, 0, &x),
        0);
    /* label names and values */
    bench_label_t bad1[] = {{"__reserved", "v"}};
    bench_label_t bad2[] = {{"9x", "v"}};
    bench_label_t bad3[] = {{"a", "\xff\xfe"}};
    bench_label_t bad4[] = {{"a", "1"}, {"a", "2"}};
    bench_label_t le[] = {{"le", "1"}};
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g2", "h", bad1, 1, NULL, 0, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g2", "h", bad2, 1, NULL, 0, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g2", "h", bad3, 1, NULL, 0, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g2", "h", bad4, 2, NULL, 0, &x),
        GD_EDUPLICATE_KEY);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM, "h2", "h", le, 1, lat_bounds, 5, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g_le", "h", le, 1, NULL, 0, &x), 0);
    /* histogram bounds: ascending, finite; and the suffix clashes */
    const double desc[] = {1, 0.5};
    const double inf[] = {1, 1.0 / 0.0};
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM, "h3", "h", NULL, 0, desc, 2, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM, "h3", "h", NULL, 0, inf, 2, &x),
        GD_EINVAL);
    CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, "girder_gc_pause_seconds_sum",
                                           "h", NULL, 0, NULL, 0, &x),
                    GD_EDUPLICATE_KEY);
    CU_ASSERT_EQUAL(bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM, "ns:sub", "h", NULL, 0,
                                           lat_bounds, 5, &x),
                    0);
    CU_ASSERT_EQUAL(
        bench_metrics_register(reg, BENCH_METRIC_GAUGE, "g3", "h", NULL, 0, lat_bounds, 5, &x),
        GD_EINVAL);
    bench_metrics_free(reg);
}

/* A collector that also tries invalid samples: they are skipped and
 * counted, never rendered. */
static void test_collector(bench_metrics_emit_t *e, void *ctx)
{
    (void)ctx;
    bench_label_t q[] = {{"scheduler", "1"}, {"priority", "normal"}};
    bench_label_t q2[] = {{"scheduler", "2"}, {"priority", "normal"}};
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_run_queue_length", "Run queue lengths.", q, 2,
                       3);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_other", "Other.", NULL, 0, 0.0 / 0.0);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_run_queue_length", "Run queue lengths.", q2,
                       2, 1.0 / 0.0);
    /* invalid: bad name, clash with a registered family, type change,
     * duplicate series */
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "bad name", "x", NULL, 0, 1);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_memory_bytes", "Memory by kind.", NULL, 0, 1);
    bench_metrics_emit(e, BENCH_METRIC_COUNTER, "girder_run_queue_length", "Run queue lengths.",
                       NULL, 0, 1);
    bench_metrics_emit(e, BENCH_METRIC_GAUGE, "girder_run_queue_length", "Run queue lengths.", q, 2,
                       4);
}

static void test_render(void)
{
    bench_metric_t *c, *g, *h;
    bench_metrics_t *reg = make_registry(&c, &g, &h);
    bench_metric_add(c, 12345678901234ull);
    bench_metric_set(g, 1.5e9);
    static const double obs[] = {0.00005, 0.0002, 0.0002, 0.003, 0.5, 7, 0.1};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        bench_metric_observe(h, obs[i]);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_add_collector(reg, test_collector, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_add_sched(reg), 0);
    char *text;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_render(reg, &text, &len), 0);
    CU_ASSERT_EQUAL(strlen(text), len);
    CU_ASSERT(strstr(text, "girder_dist_bytes_total{peer=\"otp1@host\",dir=\"out\"} "
                           "12345678901234\n") != NULL);
    CU_ASSERT(strstr(text, "{peer=\"we\\\"ird\\\\name\\nx\",dir=\"in\"} 7\n") != NULL);
    CU_ASSERT(strstr(text, "# HELP girder_dist_bytes_total Bytes sent and received per "
                           "connection.\\nBack\\\\slash in help.\n") != NULL);
    CU_ASSERT(strstr(text, "girder_memory_bytes 1500000000\n") != NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_bucket{kind=\"heap\",le=\"0.0001\"} 1\n") !=
              NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_bucket{kind=\"heap\",le=\"0.001\"} 3\n") !=
              NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_bucket{kind=\"heap\",le=\"0.1\"} 5\n") != NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_bucket{kind=\"heap\",le=\"1\"} 6\n") != NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_bucket{kind=\"heap\",le=\"+Inf\"} 7\n") !=
              NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_count{kind=\"heap\"} 7\n") != NULL);
    CU_ASSERT(strstr(text, "girder_gc_pause_seconds_sum{kind=\"heap\"} 7.60345\n") != NULL);
    CU_ASSERT(strstr(text, "girder_other NaN\n") != NULL);
    CU_ASSERT(strstr(text, "priority=\"normal\"} +Inf\n") != NULL);
    CU_ASSERT_EQUAL(strstr(text, "bad name"), NULL);
    CU_ASSERT(strstr(text, "girder_metrics_collector_errors_total 4\n") != NULL);
    CU_ASSERT(strstr(text, "# TYPE girder_processes gauge\ngirder_processes 0\n") != NULL);
    CU_ASSERT(strstr(text, "girder_scheduler_steals_total 0\n") != NULL);
    CU_ASSERT_EQUAL(check_prom(text, NULL,
                               "girder_gc_pause_seconds_bucket girder_run_queue_length "
                               "girder_processes girder_schedulers"),
                    0);
    free(text);
    bench_metrics_free(reg);
}

/* With the scheduler running, the sched collector reports its threads. */
static void test_sched_values(void)
{
    sched_opts_t o = {.schedulers = 2};
    CU_ASSERT_EQUAL_FATAL(sched_start(&o), 0);
    bench_metrics_t *reg;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_new(&reg), 0);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_add_sched(reg), 0);
    char *text;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_render(reg, &text, &len), 0);
    CU_ASSERT(strstr(text, "\ngirder_schedulers 2\n") != NULL);
    free(text);
    bench_metrics_free(reg);
    sched_stop();
}

typedef struct hammer {
    bench_metric_t *c, *g, *h;
    int n;
    pthread_barrier_t go; /* all threads update at once, not one after another */
} hammer_t;

static void *hammer_main(void *arg)
{
    hammer_t *hm = arg;
    pthread_barrier_wait(&hm->go);
    for (int i = 0; i < hm->n; i++) {
        bench_metric_add(hm->c, 1);
        bench_metric_set(hm->g, i);
        bench_metric_observe(hm->h, 0.001 * (i % 7));
    }
    return NULL;
}

/* Updates from several threads while another scrapes: no update is lost
 * (the final scrape shows every one) and every scrape parses. */
static void test_concurrent_updates(void)
{
    bench_metric_t *c, *g, *h;
    bench_metrics_t *reg = make_registry(&c, &g, &h);
    enum { THREADS = 3, N = 200000 };
    hammer_t hm = {.c = c, .g = g, .h = h, .n = N};
    CU_ASSERT_FATAL(pthread_barrier_init(&hm.go, NULL, THREADS) == 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, hammer_main, &hm) == 0);
    for (int k = 0; k < 50; k++) {
        char *text;
        size_t len;
        CU_ASSERT_EQUAL_FATAL(bench_metrics_render(reg, &text, &len), 0);
        CU_ASSERT(strstr(text, "le=\"+Inf\"}") != NULL);
        free(text);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&hm.go);
    char *text;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_render(reg, &text, &len), 0);
    char want[160];
    snprintf(want, sizeof want, "girder_dist_bytes_total{peer=\"otp1@host\",dir=\"out\"} %d\n",
             THREADS * N);
    CU_ASSERT(strstr(text, want) != NULL);
    snprintf(want, sizeof want, "girder_gc_pause_seconds_count{kind=\"heap\"} %d\n", THREADS * N);
    CU_ASSERT(strstr(text, want) != NULL);
    free(text);
    bench_metrics_free(reg);
}

/* A collector that mirrors an outside histogram (as `girder node` does
 * with heap/'s GC pauses): bucket i holds i + 1 + the scrape number. */
typedef struct mirror {
    bench_metric_t *h;
    unsigned scrapes;
    int rc_bad_count, rc_not_hist;
    bench_metric_t *gauge;
} mirror_t;

static void mirror_collector(bench_metrics_emit_t *e, void *ctx)
{
    (void)e;
    mirror_t *m = ctx;
    uint64_t counts[6];
    m->scrapes++;
    for (unsigned i = 0; i < 6; i++)
        counts[i] = i + 1 + m->scrapes;
    CU_ASSERT_EQUAL(bench_metric_hist_set(m->h, counts, 6, 2.5 * m->scrapes), 0);
    m->rc_bad_count = bench_metric_hist_set(m->h, counts, 5, 1);
    m->rc_not_hist = bench_metric_hist_set(m->gauge, counts, 6, 1);
}

/* The mirrored buckets show in the same scrape (collectors run before the
 * registered families are rendered), cumulative, with _count their sum;
 * wrong calls change nothing. */
static void test_hist_set(void)
{
    bench_metrics_t *reg;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_new(&reg), 0);
    mirror_t m = {0};
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_HISTOGRAM, "mirror_seconds",
                                                 "Mirrored.", NULL, 0, lat_bounds, 5, &m.h),
                          0);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_register(reg, BENCH_METRIC_GAUGE, "mirror_gauge", "G.",
                                                 NULL, 0, NULL, 0, &m.gauge),
                          0);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_add_collector(reg, mirror_collector, &m), 0);
    for (unsigned scrape = 1; scrape <= 2; scrape++) {
        char *text;
        size_t len;
        CU_ASSERT_EQUAL_FATAL(bench_metrics_render(reg, &text, &len), 0);
        /* buckets 2..7 (scrape 1) or 3..8 (scrape 2), cumulative */
        unsigned cum = 0;
        for (unsigned i = 0; i < 6; i++) {
            cum += i + 1 + scrape;
            char want[96];
            if (i < 5)
                snprintf(want, sizeof want, "le=\"%g\"} %u\n", lat_bounds[i], cum);
            else
                snprintf(want, sizeof want, "le=\"+Inf\"} %u\n", cum);
            CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
        }
        char want[96];
        snprintf(want, sizeof want, "mirror_seconds_count %u\n", cum);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
        snprintf(want, sizeof want, "mirror_seconds_sum %g\n", 2.5 * scrape);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
        CU_ASSERT_EQUAL(check_prom(text, NULL, "mirror_seconds_count"), 0);
        free(text);
    }
    CU_ASSERT_EQUAL(m.rc_bad_count, GD_EINVAL);
    CU_ASSERT_EQUAL(m.rc_not_hist, GD_EINVAL);
    bench_metrics_free(reg);
}

static void test_parse_addr(void)
{
    char host[64];
    uint16_t port;
    CU_ASSERT_EQUAL(bench_metrics_parse_addr(":9100", host, sizeof host, &port), 0);
    CU_ASSERT(host[0] == '\0' && port == 9100);
    CU_ASSERT_EQUAL(bench_metrics_parse_addr("127.0.0.1:0", host, sizeof host, &port), 0);
    CU_ASSERT(strcmp(host, "127.0.0.1") == 0 && port == 0);
    CU_ASSERT_EQUAL(bench_metrics_parse_addr("[::1]:80", host, sizeof host, &port), 0);
    CU_ASSERT(strcmp(host, "::1") == 0 && port == 80);
    static const char *const bad[] = {"9100", ":", ":65536", ":12a", "::1:80", ":-1", ":123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(bench_metrics_parse_addr(bad[i], host, sizeof host, &port), GD_EINVAL);
    CU_ASSERT_EQUAL(bench_metrics_parse_addr("averyveryverylonghostname:1", host, 8, &port),
                    GD_EINVAL);
}

/* ---- the endpoint --------------------------------------------------------- */

static struct event_base *loop_base;

static void *loop_main(void *arg)
{
    (void)arg;
    event_base_loop(loop_base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* Sends req (n bytes) on a fresh connection, reads until close or 3 s, and
 * returns what came back in resp (NUL-terminated). */
static size_t exchange(uint16_t port, const char *req, size_t n, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(fd >= 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may close on a bad request before it is all sent */
        off += (size_t)w;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, resp + got, cap - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == cap - 1)
            break;
    }
    resp[got] = '\0';
    close(fd);
    return got;
}

static void test_endpoint(void)
{
    CU_ASSERT_EQUAL_FATAL(evthread_use_pthreads(), 0);
    loop_base = event_base_new();
    CU_ASSERT_FATAL(loop_base != NULL);
    bench_metric_t *c, *g, *h;
    bench_metrics_t *reg = make_registry(&c, &g, &h);
    bench_metric_add(c, 5);
    bench_metric_observe(h, 0.02);
    CU_ASSERT_EQUAL_FATAL(bench_metrics_add_sched(reg), 0);
    bench_metrics_http_t *srv;
    uint16_t port = 0;
    CU_ASSERT_EQUAL_FATAL(bench_metrics_http_start(loop_base, reg, "127.0.0.1", 0, &srv, &port), 0);
    CU_ASSERT(port != 0);
    printf("\n  serving on 127.0.0.1:%u", port);
    /* a second server cannot take the same port */
    bench_metrics_http_t *srv2;
    CU_ASSERT_EQUAL(bench_metrics_http_start(loop_base, reg, "127.0.0.1", port, &srv2, NULL),
                    GD_EINVAL);
    CU_ASSERT_EQUAL(bench_metrics_http_start(loop_base, reg, "not-an-address", 0, &srv2, NULL),
                    GD_EINVAL);
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, loop_main, NULL) == 0);

    static char resp[1 << 16];
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(port, get, sizeof get - 1, resp, sizeof resp);
    CU_ASSERT(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CU_ASSERT(strstr(resp, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    char *body = strstr(resp, "\r\n\r\n");
    CU_ASSERT_FATAL(body != NULL);
    CU_ASSERT(strstr(body, "girder_dist_bytes_total{peer=\"otp1@host\",dir=\"out\"} 5\n") != NULL);
    CU_ASSERT_EQUAL(check_prom(body + 4, NULL, "girder_processes girder_gc_pause_seconds_sum"), 0);

    /* python3 urllib, through the URL */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", port);
    CU_ASSERT_EQUAL(check_prom(NULL, url, "girder_dist_bytes_total girder_schedulers"), 0);

    /* malformed and unwelcome requests: an error status or a close, never
     * a crash, and the server keeps serving */
    static char big[20000];
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(big + 26, 'a', sizeof big - 26 - 4);
    memcpy(big + sizeof big - 4, "\r\n\r\n", 4);
    static const struct {
        const char *what, *req;
        size_t len;
        const char *expect; /* status line prefix, or NULL for "error or close" */
    } bad[] = {
        {"garbage", "GARBAGE\r\n\r\n", 11, NULL},
        {"binary junk", "\x00\x01\x02\xff\xfe\r\n\r\n", 9, NULL},
        {"bad version", "GET /metrics HTTP/9.9\r\n\r\n", 25, NULL},
        {"no path", "GET\r\n\r\n", 7, NULL},
        {"POST", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 54,
         "HTTP/1.1 405"},
        {"other path", "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 50,
         "HTTP/1.1 404"},
        {"body on GET", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 58,
         "HTTP/1.1 413"},
        {"bad header", "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 40, NULL},
        {"huge header", big, sizeof big, NULL},
        {"cut short", "GET /met", 8, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        exchange(port, bad[i].req, bad[i].len, resp, sizeof resp);
        bool ok;
        if (bad[i].expect != NULL)
            ok = strncmp(resp, bad[i].expect, strlen(bad[i].expect)) == 0;
        else
            ok = resp[0] == '\0' || (strncmp(resp, "HTTP/1.", 7) == 0 && resp[9] == '4');
        if (!ok)
            printf("\n  %s: got %.60s", bad[i].what, resp);
        CU_ASSERT(ok);
    }
    exchange(port, get, sizeof get - 1, resp, sizeof resp);
    CU_ASSERT(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* HEAD is allowed */
    static const char head[] = "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(port, head, sizeof head - 1, resp, sizeof resp);
    CU_ASSERT(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);

    event_base_loopbreak(loop_base);
    pthread_join(th, NULL);
    bench_metrics_http_stop(srv);
    bench_metrics_free(reg);
    event_base_free(loop_base);
}

static const gd_test_case_t gd_tests[] = {
    {"registration rules", test_register_rules},
    {"exposition text parsed strictly", test_render},
    {"scheduler figures", test_sched_values},
    {"address parsing", test_parse_addr},
    {"a histogram mirrored by a collector, in the same scrape", test_hist_set},
    {"updates from many threads during scrapes", test_concurrent_updates},
    {"endpoint: socket, urllib, malformed requests", test_endpoint},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_metrics", gd_tests)
