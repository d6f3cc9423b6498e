/*
 * test_results.c — the results writers of node/bench/: results.json parsed
 * back by python3's json module (shape of issue 15, escaping, null for
 * non-finite numbers), the aligned terminal table (red only when asked,
 * lost/misordered flagged), the progress line on a tty and in a log, and
 * the machine facts.
 */
#include <stdlib.h>
#include <unistd.h>

#include "bench_lib_util.h"
#include "cunit_main.h"
#include "internal.h"

/* Reads a whole stream from the start into a malloc'd string. */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    CU_ASSERT_FATAL(n >= 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT_FATAL(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    return s;
}

static const char *const nasty_node = "we\"ird\\node\n\t\x01@h\xc3\xa9st";

typedef struct fixture {
    bench_series_t *s1, *s2;
    bench_target_t targets[2];
    bench_results_t r;
} fixture_t;

static void fixture_init(fixture_t *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->s1 = tb_synthetic_series(1, 5, 3000, 50.0);
    fx->s2 = tb_synthetic_series(2, 5, 1000, 400.0);
    CU_ASSERT_FATAL(fx->s1 && fx->s2);
    fx->targets[0] = (bench_target_t){.node = "g1@localhost",
                                      .kind = BENCH_KIND_GIRDER,
                                      .workload = "echo",
                                      .duration_s = 5.0,
                                      .ops = 15000,
                                      .errors = bench_series_errors(fx->s1),
                                      .series = fx->s1};
    fx->targets[1] = (bench_target_t){.node = nasty_node,
                                      .kind = BENCH_KIND_OTP,
                                      .workload = "call",
                                      .duration_s = 5.0,
                                      .ops = 5000,
                                      .errors = 0,
                                      .lost = 3,
                                      .misordered = 1,
                                      .series = fx->s2};
    fx->r.title = "girder bench <test> & \"friends\"";
    fx->r.params = (bench_params_t){.workload = "echo",
                                    .clients = 100,
                                    .client_nodes = 2,
                                    .payload = "binary",
                                    .payload_bytes = 64,
                                    .rate_per_s = 0.0 / 0.0, /* not finite: null */
                                    .duration_s = 5,
                                    .warmup_s = 1,
                                    .interval_s = 1};
    bench_machine_detect(&fx->r.machine, "0.1.0-test");
    fx->r.targets = fx->targets;
    fx->r.n_targets = 2;
}

static void fixture_free(fixture_t *fx)
{
    bench_series_free(fx->s1);
    bench_series_free(fx->s2);
}

static const char *const check_py =
    "import json, sys\n"
    "d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
    "t = d['targets']\n"
    "assert len(t) == 2, t\n"
    "for x in t:\n"
    "    for k in ('node','kind','workload','ops_per_s','p50_us','p99_us','errors','lost',"
    "'misordered'):\n"
    "        assert k in x, k\n"
    "    assert x['kind'] in ('girder', 'otp')\n"
    "    assert x['ops_per_s'] > 0 and x['p50_us'] > 0 and x['p99_us'] >= x['p50_us']\n"
    "    assert len(x['series']) == 5, len(x['series'])\n"
    "    assert all(s['ops_per_s'] > 0 for s in x['series'])\n"
    "assert t[0]['node'] == 'g1@localhost' and t[0]['kind'] == 'girder'\n"
    "assert t[1]['node'] == 'we\"ird\\\\node\\n\\t\\x01@h\\u00e9st', repr(t[1]['node'])\n"
    "assert t[1]['kind'] == 'otp' and t[1]['lost'] == 3 and t[1]['misordered'] == 1\n"
    "assert t[0]['ops_per_s'] == 3000, t[0]['ops_per_s']\n"
    "assert 40 < t[0]['p50_us'] < 80, t[0]['p50_us']\n"
    "assert d['params']['rate_per_s'] is None and d['params']['clients'] == 100\n"
    "m = d['machine']\n"
    "assert m['cores'] >= 1 and m['girder_version'] == '0.1.0-test' and m['kernel']\n"
    "assert d['title'] == 'girder bench <test> & \"friends\"'\n";

static void test_json_parses(void)
{
    fixture_t fx;
    fixture_init(&fx);
    char path[] = "/tmp/gd_bench_json_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_json(&fx.r, f), 0);
    fclose(f);
    char py[] = "/tmp/gd_bench_check_XXXXXX";
    int pfd = mkstemp(py);
    CU_ASSERT_FATAL(pfd >= 0);
    CU_ASSERT_FATAL(write(pfd, check_py, strlen(check_py)) == (ssize_t)strlen(check_py));
    close(pfd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 %s %s", py, path);
    int st = system(cmd);
    if (st != 0)
        printf("\n  %s failed (kept %s)\n", cmd, path);
    CU_ASSERT_EQUAL(st, 0);
    if (st == 0)
        unlink(path);
    unlink(py);
    fixture_free(&fx);
}

/* No targets and no strings: still a document python3 reads. */
static void test_json_empty(void)
{
    bench_results_t r = {0};
    bench_machine_detect(&r.machine, "v");
    char path[] = "/tmp/gd_bench_json_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_json(&r, f), 0);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
             "assert d[\"targets\"] == [] and d[\"title\"] is None "
             "and d[\"params\"][\"mode\"] == \"closed\"' %s",
             path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    unlink(path);
}

static void test_table(void)
{
    fixture_t fx;
    fixture_init(&fx);
    fx.targets[1].node = "otp1@localhost";
    FILE *f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_table(&fx.r, f, false), 0);
    char *s = slurp(f);
    fclose(f);
    printf("\n%s", s);
    CU_ASSERT(strchr(s, '\033') == NULL);
    /* header and rows end in the same column (aligned) */
    char *lines[4] = {0};
    int n = 0;
    for (char *save = NULL, *l = strtok_r(s, "\n", &save); l && n < 4;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_EQUAL(strlen(lines[0]), strlen(lines[1]));
    CU_ASSERT_EQUAL(strlen(lines[0]), strlen(lines[2]));
    CU_ASSERT(strstr(lines[0], "ops/s") != NULL && strstr(lines[0], "misordered") != NULL);
    CU_ASSERT(strstr(lines[1], "g1@localhost") == lines[1]);
    CU_ASSERT(strstr(lines[1], "3000") != NULL);
    CU_ASSERT(strstr(lines[3], "lost or misordered") != NULL);
    /* the ops/s column is right-aligned: its last digit under the "s" */
    const char *h = strstr(lines[0], "ops/s");
    size_t col = (size_t)(h - lines[0]) + 4;
    CU_ASSERT(lines[1][col] == '0' && lines[1][col + 1] == ' ');
    free(s);

    f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_table(&fx.r, f, true), 0);
    s = slurp(f);
    fclose(f);
    /* lost 3 and misordered 1 are red; the clean target has no colour */
    CU_ASSERT(strstr(s, "\033[31m\033[1m3\033[0m") != NULL);
    CU_ASSERT(strstr(s, "\033[31m\033[1m1\033[0m") != NULL);
    char *row1 = strstr(s, "g1@localhost");
    CU_ASSERT_FATAL(row1 != NULL);
    size_t row1_len = strcspn(row1, "\n");
    bool colored = memchr(row1, '\033', row1_len) != NULL;
    CU_ASSERT_EQUAL(colored, fx.targets[0].errors > 0);
    free(s);

    /* a clean run has no warning line */
    fx.targets[1].lost = fx.targets[1].misordered = 0;
    f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_table(&fx.r, f, true), 0);
    s = slurp(f);
    fclose(f);
    CU_ASSERT(strstr(s, "lost or misordered") == NULL);
    free(s);
    fixture_free(&fx);
}

static void test_progress(void)
{
    FILE *f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    bench_progress_t p;
    bench_progress_init(&p, f);
    CU_ASSERT(!p.tty); /* a file is not a terminal */
    bench_progress_update(&p, 1.0, 12345, 10.5, 99.25, 0);
    bench_progress_update(&p, 2.0, 23456, 11.5, 120.0, 2);
    bench_progress_end(&p);
    char *s = slurp(f);
    fclose(f);
    CU_ASSERT(strchr(s, '\r') == NULL && strchr(s, '\033') == NULL);
    CU_ASSERT(strstr(s, "12345 ops/s") != NULL && strstr(s, "p99    120.0 us") != NULL);
    int lines = 0;
    for (char *c = s; *c; c++)
        lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, 2);
    free(s);

    /* on a terminal: one line rewritten in place, ended by progress_end */
    f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    bench_progress_init(&p, f);
    p.tty = true;
    bench_progress_update(&p, 1.0, 100, 1, 2, 0);
    bench_progress_update(&p, 2.0, 200, 1, 2, 5);
    char *mid = slurp(f);
    CU_ASSERT(strchr(mid, '\n') == NULL);
    CU_ASSERT(strncmp(mid, "\r\033[K", 4) == 0);
    CU_ASSERT(strstr(mid + 4, "\r\033[K") != NULL);
    CU_ASSERT(strstr(mid, "\033[31m5\033[0m") != NULL);
    free(mid);
    fseek(f, 0, SEEK_END);
    bench_progress_end(&p);
    s = slurp(f);
    fclose(f);
    CU_ASSERT(s[strlen(s) - 1] == '\n');
    free(s);
}

static void test_machine(void)
{
    bench_machine_t m;
    bench_machine_detect(&m, NULL);
    CU_ASSERT(m.cores >= 1);
    CU_ASSERT(strncmp(m.kernel, "Linux ", 6) == 0);
    CU_ASSERT(m.cpu_model[0] != '\0');
    CU_ASSERT_STRING_EQUAL(m.girder_version, "unknown");
    CU_ASSERT_EQUAL(strlen(m.started_at), 20);
    printf("\n  %u cores, %s, %s\n", m.cores, m.cpu_model, m.kernel);
    char longv[100];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    bench_machine_detect(&m, longv);
    CU_ASSERT_EQUAL(strlen(m.girder_version), sizeof m.girder_version - 1);
}

static void test_buf_escapes(void)
{
    bench_buf_t b = {0};
    bench_buf_html(&b, "<a href=\"x\">&'</a>");
    CU_ASSERT_STRING_EQUAL(b.data, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    bench_buf_free(&b);
    bench_buf_json_num(&b, 1.0 / 0.0);
    bench_buf_puts(&b, " ");
    bench_buf_json_num(&b, 42);
    bench_buf_puts(&b, " ");
    bench_buf_json_num(&b, 0.125);
    bench_buf_puts(&b, " ");
    bench_buf_json_num(&b, 1234567.875);
    CU_ASSERT_STRING_EQUAL(b.data, "null 42 0.125 1234567.875");
    bench_buf_free(&b);
    /* long printf output goes past the small stack buffer */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bench_buf_printf(&b, "[%s]", big);
    CU_ASSERT_EQUAL(b.len, 1001);
    CU_ASSERT(b.data[1000] == ']');
    bench_buf_free(&b);
}

static const gd_test_case_t gd_tests[] = {
    {"results.json parsed by python3", test_json_parses},
    {"results.json without targets", test_json_empty},
    {"summary table aligned, red only when asked", test_table},
    {"progress line on a tty and in a log", test_progress},
    {"machine facts", test_machine},
    {"buffer escapes", test_buf_escapes},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_results", gd_tests)
