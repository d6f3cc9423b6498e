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

/* A strict reader of the text format 0.0.4: every line is a HELP, a TYPE
 * or a sample; HELP/TYPE once per family and before its samples; samples of
 * a family contiguous; names and label names valid; label values with only
 * the three escapes; values Go floats; histogram buckets ascending in le,
 * cumulative, ending at +Inf equal to _count, with _sum.  argv[1] is a file
 * or an http:// URL (fetched with urllib); argv[2..] are names that must be
 * present.  Prints the number of samples. */
static const char *const prom_py =
    "import re, sys, urllib.request\n"
    "src = sys.argv[1]\n"
    "if src.startswith('http://'):\n"
    "    with urllib.request.urlopen(src, timeout=10) as r:\n"
    "        assert r.status == 200, r.status\n"
    "        ct = r.headers['Content-Type']\n"
    "        assert ct.startswith('text/plain; version=0.0.4'), ct\n"
    "        text = r.read().decode('utf-8')\n"
    "else:\n"
    "    text = open(src, encoding='utf-8').read()\n"
    "assert text.endswith('\\n'), 'no final newline'\n"
    "NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'\n"
    "LNAME = r'[a-zA-Z_][a-zA-Z0-9_]*'\n"
    "LVAL = r'\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\"'\n"
    "SAMPLE = re.compile(r'^(' + NAME + r')(\\{(' + LNAME + '=' + LVAL + r'(?:,' + LNAME + '=' + "
    "LVAL + r')*)?\\})? (\\S+)( -?\\d+)?$')\n"
    "LABEL = re.compile('(' + LNAME + ')=(' + LVAL + ')')\n"
    "def num(s):\n"
    "    if s in ('NaN', '+Inf', '-Inf'): return float(s.replace('+', ''))\n"
    "    assert re.match(r'^[-+]?(\\d+\\.?\\d*|\\.\\d+)([eE][-+]?\\d+)?$', s), 'bad value ' + s\n"
    "    return float(s)\n"
    "def unesc(v):\n"
    "    return re.sub(r'\\\\(.)', lambda m: {'n': '\\n', '\\\\': '\\\\', '\"': '\"'}[m.group(1)], "
    "v[1:-1])\n"
    "types, helps, done, cur, samples = {}, {}, set(), None, []\n"
    "for line in text.split('\\n')[:-1]:\n"
    "    if line.startswith('# HELP '):\n"
    "        name = line.split(' ', 3)[2]\n"
    "        assert re.fullmatch(NAME, name) and name not in helps, line\n"
    "        assert re.fullmatch(r'(?:[^\\\\]|\\\\[\\\\n])*', line.split(' ', 3)[3]), line\n"
    "        helps[name] = 1\n"
    "    elif line.startswith('# TYPE '):\n"
    "        _, _, name, t = line.split(' ')\n"
    "        assert name not in types and t in ('counter', 'gauge', 'histogram', 'summary', "
    "'untyped'), line\n"
    "        assert name not in done, 'TYPE after samples: ' + line\n"
    "        types[name] = t\n"
    "        if cur is not None: done.add(cur)\n"
    "        cur = name\n"
    "    elif line.startswith('#'):\n"
    "        continue\n"
    "    else:\n"
    "        m = SAMPLE.match(line)\n"
    "        assert m, 'bad sample line: ' + repr(line)\n"
    "        name, labels, value = m.group(1), m.group(3) or '', m.group(4)\n"
    "        fam = name\n"
    "        for sfx in ('_bucket', '_sum', '_count'):\n"
    "            if name.endswith(sfx) and types.get(name[:-len(sfx)]) == 'histogram': fam = "
    "name[:-len(sfx)]\n"
    "        assert fam == cur, 'sample outside its family: ' + line\n"
    "        ls = [(k, unesc(v)) for k, v in LABEL.findall(labels)]\n"
    "        assert len(set(k for k, _ in ls)) == len(ls), 'duplicate label ' + line\n"
    "        samples.append((fam, name, ls, num(value)))\n"
    "for fam, t in types.items():\n"
    "    if t != 'histogram': continue\n"
    "    series = {}\n"
    "    for f, name, ls, v in samples:\n"
    "        if f != fam: continue\n"
    "        key = tuple(x for x in ls if x[0] != 'le')\n"
    "        s = series.setdefault(key, {'b': [], 'sum': None, 'count': None})\n"
    "        if name.endswith('_bucket'): s['b'].append((num(dict(ls)['le']), v))\n"
    "        elif name.endswith('_sum'): s['sum'] = v\n"
    "        else: s['count'] = v\n"
    "    for key, s in series.items():\n"
    "        les = [b[0] for b in s['b']]; cs = [b[1] for b in s['b']]\n"
    "        assert les == sorted(les) and les[-1] == float('inf'), (fam, les)\n"
    "        assert cs == sorted(cs), (fam, cs)\n"
    "        assert s['sum'] is not None and s['count'] == cs[-1], (fam, s)\n"
    "for want in sys.argv[2:]:\n"
    "    assert any(n == want for _, n, _, _ in samples) or want in types, 'missing ' + want\n"
    "print('%d samples in %d families: ok' % (len(samples), len(types)))\n";

static char py_path[64];

static void write_py(void)
{
    if (py_path[0] != '\0')
        return;
    snprintf(py_path, sizeof py_path, "/tmp/gd_prom_XXXXXX");
    int fd = mkstemp(py_path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, prom_py, strlen(prom_py)) == (ssize_t)strlen(prom_py));
    close(fd);
}

/* Runs the strict parser on text (or a URL when url is set). */
static int check_prom(const char *text, const char *url, const char *names)
{
    write_py();
    char file[64] = "";
    if (text != NULL) {
        snprintf(file, sizeof file, "/tmp/gd_prom_text_XXXXXX");
        int fd = mkstemp(file);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 %s '%s' %s", py_path, text != NULL ? file : url, names);
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
    unlink(py_path);
}

static const gd_test_case_t gd_tests[] = {
    {"registration rules", test_register_rules},
    {"exposition text parsed strictly", test_render},
    {"scheduler figures", test_sched_values},
    {"address parsing", test_parse_addr},
    {"updates from many threads during scrapes", test_concurrent_updates},
    {"endpoint: socket, urllib, malformed requests", test_endpoint},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_metrics", gd_tests)
