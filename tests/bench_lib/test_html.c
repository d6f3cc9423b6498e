/*
 * test_html.c — the HTML report of node/bench/: rendered from synthetic
 * runs, it must be self-contained (no script, no external resource) and
 * carry its axis labels, parameters and machine facts; then headless
 * Chromium screenshots it and a python3 PNG decoder (zlib only) finds every
 * plot area by its background colour and counts the coloured pixels drawn
 * inside.  A missing chromium FAILS the test: scripts/setup installs it.
 */
#include <stdlib.h>
#include <unistd.h>

#include "bench_lib_util.h"
#include "cunit_main.h"
#include "internal.h"

/* Decodes an 8-bit RGB/RGBA PNG (no interlace) with zlib, finds the plot
 * areas (rows and columns of the plot background #f3f6fc, in vertical
 * bands) and prints, per area, its box and how many strongly coloured
 * pixels (the data lines) it holds.  Exits 1 unless there are argv[2]
 * areas with at least 300 coloured pixels each. */
static const char *const png_py =
    "import sys, zlib, struct\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'\n"
    "pos, idat, w = 8, [], 0\n"
    "while pos < len(data):\n"
    "    n, t = struct.unpack('>I4s', data[pos:pos + 8])\n"
    "    body = data[pos + 8:pos + 8 + n]\n"
    "    if t == b'IHDR':\n"
    "        w, h, depth, ctype, _, _, inter = struct.unpack('>IIBBBBB', body)\n"
    "        assert depth == 8 and ctype in (2, 6) and inter == 0, (depth, ctype, inter)\n"
    "    elif t == b'IDAT':\n"
    "        idat.append(body)\n"
    "    pos += 12 + n\n"
    "bpp = 3 if ctype == 2 else 4\n"
    "raw = zlib.decompress(b''.join(idat))\n"
    "stride = w * bpp\n"
    "prev = bytearray(stride)\n"
    "rows = []\n"
    "for y in range(h):\n"
    "    f = raw[y * (stride + 1)]\n"
    "    cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])\n"
    "    if f == 1:\n"
    "        for i in range(bpp, stride): cur[i] = (cur[i] + cur[i - bpp]) & 255\n"
    "    elif f == 2:\n"
    "        cur = bytearray((a + b) & 255 for a, b in zip(cur, prev))\n"
    "    elif f == 3:\n"
    "        for i in range(stride):\n"
    "            left = cur[i - bpp] if i >= bpp else 0\n"
    "            cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255\n"
    "    elif f == 4:\n"
    "        for i in range(stride):\n"
    "            a = cur[i - bpp] if i >= bpp else 0\n"
    "            b = prev[i]; c = prev[i - bpp] if i >= bpp else 0\n"
    "            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)\n"
    "            pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)\n"
    "            cur[i] = (cur[i] + pr) & 255\n"
    "    rows.append(bytes(cur)); prev = cur\n"
    "BG = bytes((0xf3, 0xf6, 0xfc))\n"
    "def px(row, x): return row[x * bpp:x * bpp + 3]\n"
    "bands = []\n"
    "for y, row in enumerate(rows):\n"
    "    xs = [x for x in range(0, w, 2) if px(row, x) == BG]\n"
    "    if len(xs) > 100:\n"
    "        # grid lines cut a plot area into strips: gaps of a few rows join\n"
    "        if not bands or y - bands[-1][1] > 4: bands.append([y, y, xs[0], xs[-1]])\n"
    "        b = bands[-1]; b[1] = y; b[2] = min(b[2], xs[0]); b[3] = max(b[3], xs[-1])\n"
    "bands = [b for b in bands if b[1] - b[0] > 50]\n"
    "ok = 0\n"
    "for (y0, y1, x0, x1) in bands:\n"
    "    ink = 0\n"
    "    for y in range(y0, y1 + 1):\n"
    "        row = rows[y]\n"
    "        for x in range(x0, x1 + 1):\n"
    "            r, g, b = px(row, x)\n"
    "            if max(r, g, b) - min(r, g, b) > 60: ink += 1\n"
    "    print('plot area x %d-%d y %d-%d: %d coloured pixels' % (x0, x1, y0, y1, ink))\n"
    "    ok += ink >= 300\n"
    "want = int(sys.argv[2])\n"
    "print('%d of %d plot areas drawn (image %dx%d)' % (ok, len(bands), w, h))\n"
    "sys.exit(0 if ok == want and len(bands) == want else 1)\n";

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT_FATAL(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

typedef struct report {
    char dir[64];
    char html[96];
    bench_series_t *s[2];
    bench_target_t t[2];
    bench_results_t r;
} report_t;

/* Writes a report of two synthetic targets into a fresh temp directory. */
static void make_report(report_t *rp)
{
    memset(rp, 0, sizeof *rp);
    snprintf(rp->dir, sizeof rp->dir, "/tmp/gd_bench_html_XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(rp->dir) != NULL);
    snprintf(rp->html, sizeof rp->html, "%s/report.html", rp->dir);
    rp->s[0] = tb_synthetic_series(11, 20, 2000, 30.0);
    rp->s[1] = tb_synthetic_series(12, 20, 800, 250.0);
    CU_ASSERT_FATAL(rp->s[0] && rp->s[1]);
    rp->t[0] = (bench_target_t){.node = "girder1@127.0.0.1",
                                .kind = BENCH_KIND_GIRDER,
                                .workload = "echo",
                                .duration_s = 20,
                                .ops = 40000,
                                .series = rp->s[0]};
    rp->t[1] = (bench_target_t){.node = "otp<1>@127.0.0.1",
                                .kind = BENCH_KIND_OTP,
                                .workload = "echo",
                                .duration_s = 20,
                                .ops = 16000,
                                .lost = 2,
                                .series = rp->s[1]};
    rp->r = (bench_results_t){.title = "girder bench: echo, girder vs OTP",
                              .params = {.workload = "echo",
                                         .clients = 100,
                                         .client_nodes = 1,
                                         .payload = "binary",
                                         .payload_bytes = 32,
                                         .rate_per_s = 2000,
                                         .duration_s = 20,
                                         .warmup_s = 2,
                                         .interval_s = 1},
                              .targets = rp->t,
                              .n_targets = 2};
    bench_machine_detect(&rp->r.machine, "0.1.0");
    FILE *f = fopen(rp->html, "w");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL_FATAL(bench_results_write_html(&rp->r, f), 0);
    CU_ASSERT_FATAL(fclose(f) == 0);
}

static void free_report(report_t *rp, bool keep)
{
    bench_series_free(rp->s[0]);
    bench_series_free(rp->s[1]);
    if (keep) {
        printf("\n  kept %s\n", rp->dir);
        return;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rp->dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_html_content(void)
{
    report_t rp;
    make_report(&rp);
    char *s = read_file(rp.html);
    /* self-contained: no script, no external resource of any kind */
    CU_ASSERT(strstr(s, "<script") == NULL);
    CU_ASSERT(strstr(s, "src=") == NULL);
    CU_ASSERT(strstr(s, "href=") == NULL);
    CU_ASSERT(strstr(s, "url(") == NULL);
    CU_ASSERT(strstr(s, "@import") == NULL);
    CU_ASSERT_EQUAL(count_of(s, "http"), count_of(s, "xmlns=\"http://www.w3.org/2000/svg\""));
    /* four charts: throughput, latency over time for each target,
     * distribution; each with its axis labels */
    CU_ASSERT_EQUAL(count_of(s, "<svg "), 4);
    CU_ASSERT_EQUAL(count_of(s, "class=\"plot\""), 4);
    CU_ASSERT_EQUAL(count_of(s, ">time since start (s)</text>"), 3);
    CU_ASSERT_EQUAL(count_of(s, ">throughput (operations/s)</text>"), 1);
    CU_ASSERT_EQUAL(count_of(s, ">latency (log scale)</text>"), 3);
    CU_ASSERT_EQUAL(count_of(s, ">percentile</text>"), 1);
    CU_ASSERT(strstr(s, ">99.9%</text>") != NULL);
    CU_ASSERT(strstr(s, ">1 ms</text>") != NULL);
    CU_ASSERT(strstr(s, ">100 \xc2\xb5s</text>") != NULL);
    CU_ASSERT(count_of(s, "class=\"tick\"") > 30);
    /* 2 throughput lines + 3 per target + 2 spectra */
    CU_ASSERT_EQUAL(count_of(s, "<polyline"), 2 + 3 * 2 + 2);
    /* names escaped; lost messages flagged; parameters and machine facts */
    CU_ASSERT(strstr(s, "otp&lt;1&gt;@127.0.0.1") != NULL);
    CU_ASSERT(strstr(s, "otp<1>") == NULL);
    CU_ASSERT(strstr(s, "<td class=\"bad\">2</td>") != NULL);
    CU_ASSERT(strstr(s, "open loop, 2000 arrivals/s") != NULL);
    CU_ASSERT(strstr(s, rp.r.machine.cpu_model) != NULL);
    CU_ASSERT(strstr(s, rp.r.machine.kernel) != NULL);
    CU_ASSERT(strstr(s, "<th>girder</th><td>0.1.0</td>") != NULL);
    free(s);
    free_report(&rp, false);
}

/* A report with no targets, and one whose target has no samples, still
 * renders (empty charts say "no data"). */
static void test_html_empty(void)
{
    bench_series_t *s;
    CU_ASSERT_EQUAL_FATAL(bench_series_new(0, 1000000000, &s), 0);
    bench_target_t t = {.node = "n@h", .workload = "echo", .series = s};
    bench_results_t r = {.title = "empty", .targets = &t, .n_targets = 1};
    bench_machine_detect(&r.machine, "x");
    FILE *f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(bench_results_write_html(&r, f), 0);
    CU_ASSERT(ftell(f) > 1000);
    fclose(f);
    r.n_targets = 0;
    f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(bench_results_write_html(&r, f), 0);
    fclose(f);
    bench_series_free(s);
}

static void test_chromium_screenshot(void)
{
    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        CU_FAIL("chromium is not installed (scripts/setup installs it)");
        return;
    }
    report_t rp;
    make_report(&rp);
    char py[160], png[160], cmd[1024];
    snprintf(py, sizeof py, "%s/png_plots.py", rp.dir);
    snprintf(png, sizeof png, "%s/shot.png", rp.dir);
    FILE *f = fopen(py, "w");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fputs(png_py, f) >= 0);
    CU_ASSERT_FATAL(fclose(f) == 0);
    /* --no-sandbox: chromium refuses to run as root with its sandbox; a
     * private profile directory keeps runs independent; containers often
     * have a tiny /dev/shm */
    snprintf(cmd, sizeof cmd,
             "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
             "--hide-scrollbars --no-first-run --user-data-dir='%s/profile' "
             "--window-size=940,2400 "
             "--screenshot='%s' 'file://%s' >'%s/chromium.log' 2>&1",
             rp.dir, png, rp.html, rp.dir);
    int st = system(cmd);
    bool ok = st == 0 && access(png, R_OK) == 0;
    if (!ok)
        printf("\n  chromium failed (%d): see %s/chromium.log\n", st, rp.dir);
    CU_ASSERT_FATAL(ok);
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' 4", py, png);
    printf("\n");
    fflush(stdout);
    st = system(cmd);
    CU_ASSERT_EQUAL(st, 0);
    free_report(&rp, st != 0);
}

static const gd_test_case_t gd_tests[] = {
    {"self-contained, labelled report", test_html_content},
    {"empty runs render", test_html_empty},
    {"chromium screenshot shows every plot", test_chromium_screenshot},
    {NULL, NULL},
};

GD_TEST_MAIN("bench_html", gd_tests)
