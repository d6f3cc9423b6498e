/*
 * cmd_bench.c — `girder bench`: drives load against one or more nodes
 * (girder or OTP) one after the other with the same parameters and
 * reports them together: a summary table, and optionally a JSON file and
 * a self-contained HTML report (node/bench/).  The load comes from this
 * process's client node, or from client nodes: `girder node` processes it
 * starts (--client-nodes N) or existing ones (--client-node NODE).
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "commands.h"
#include "loadgen.h"

#define MAX_TARGETS 64
#define MAX_CLIENT_NODES 256

typedef struct bench_opts {
    lg_client_opts_t client;
    lg_params_t p;
    const char *payload_spec;
    const char *server;
    const char *mfa;
    const char *json, *html;
    bool quiet;
    long read_batch_us; /* --read-batch; -1: not given (see bench_read_batch) */
    unsigned spawn_nodes;
    const char *targets[MAX_TARGETS];
    size_t n_targets;
    const char *client_nodes[MAX_CLIENT_NODES];
    size_t n_client_nodes;
} bench_opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: girder bench [options] TARGET_NODE...\n\n"
            "Load-tests each TARGET_NODE (girder or Erlang/OTP) in turn with the same\n"
            "parameters, checking every reply, and prints one summary table.  A run with\n"
            "errors, lost or misordered replies says so (in red on a terminal) and exits 1.\n\n"
            "options:\n");
    lg_client_flags_help(out);
    fprintf(out, "  --workload W        what each client does (default echo):\n");
    lg_workloads_help(out);
    fprintf(out,
            "  --server NAME       registered server of call/cast (default girder_kv) or echo\n"
            "  --mfa M:F/A         rpc's function, A 0 (no arguments) or 1 ([Payload])\n"
            "                      (default girder:echo/1 on girder, erlang:node/0 on OTP)\n"
            "  --clients N         client processes, 1..1000000 (default 100)\n"
            "  --duration S        measured seconds (default 5)\n"
            "  --warmup S          seconds before measuring (default 1)\n"
            "  --interval S        progress and time-series interval (default 1)\n"
            "  --rate R            open loop: R requests/s in all (latency from the intended\n"
            "                      send time); default: closed loop\n"
            "  --payload SHAPE[:N] binary:N (bytes, default binary:32), list:N, map:N,\n"
            "                      tuple:N (N elements), atom, int\n"
            "  --client-nodes N    start N local girder nodes and run the clients on them\n"
            "  --client-node NODE  run clients on this existing girder node (repeatable)\n"
            "  --json FILE         write the results as JSON\n"
            "  --html FILE         write a self-contained HTML report\n"
            "  -schedulers N       scheduler threads of this process's client node, 1..1024\n"
            "                      (default: available cores - 1, at least 1; the node's I/O\n"
            "                      thread is the other full-time worker)\n"
            "  --read-batch US     read each connection at most every US microseconds,\n"
            "                      0..100000: fewer, fuller reads, CPU left to the target\n"
            "                      (default: 100 in a closed loop of 256 clients or more,\n"
            "                      whose replies wait in line anyway; else 0)\n"
            "  --quiet             no progress line\n\n"
            "Closed loop, each client keeps one request outstanding; a reply not back by\n"
            "the end + 2 s counts lost.  cast's latency runs from a window's first cast to\n"
            "the call that confirms the window.  Every girder node serves\n"
            "girder_bench:start/1, which runs a share of the clients for --client-node(s).\n");
}

static bool parse_seconds(const char *s, double min, uint64_t *ms)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || !(v >= min) || v > 86400)
        return false;
    *ms = (uint64_t)llround(v * 1000);
    return true;
}

static bool parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "M:F/A" with A 0 or 1. */
static bool parse_mfa(const char *s, lg_params_t *p)
{
    const char *colon = strchr(s, ':'), *slash = colon ? strchr(colon, '/') : NULL;
    if (colon == NULL || slash == NULL || colon == s || slash == colon + 1 ||
        (strcmp(slash, "/0") != 0 && strcmp(slash, "/1") != 0) || slash - s > 500)
        return false;
    char m[256], f[256];
    size_t ml = (size_t)(colon - s), fl = (size_t)(slash - colon - 1);
    if (ml >= sizeof m || fl >= sizeof f)
        return false;
    memcpy(m, s, ml);
    m[ml] = '\0';
    memcpy(f, colon + 1, fl);
    f[fl] = '\0';
    p->mfa_m = heap_atom(m);
    p->mfa_f = heap_atom(f);
    p->mfa_arity = slash[1] == '1';
    return p->mfa_m != TERM_NONE && p->mfa_f != TERM_NONE;
}

/* The bench node's read batching (cluster_config_t.read_batch_us):
 * --read-batch, else READ_BATCH_DEFAULT_US when this node runs a closed
 * loop of READ_BATCH_MIN_CLIENTS clients or more.  Their replies queue at
 * the target anyway (1000 clients against an OTP echo: p50 ~9 ms), so
 * 100 us more per reply costs little, and reading each reply as it lands
 * (~2 per read) spent the CPU a target on the same machine needed: with
 * 100 us, ~15 replies per read, the bench node's CPU per round trip down
 * by a third, and 103-138k round trips/s against 103-104k without, in 3
 * interleaved rounds against a fresh OTP target each on 2 cores (where
 * that target's one busy scheduler thread became the limit). */
#define READ_BATCH_DEFAULT_US 100u
#define READ_BATCH_MIN_CLIENTS 256u

static unsigned bench_read_batch(const bench_opts_t *o)
{
    if (o->read_batch_us >= 0)
        return (unsigned)o->read_batch_us;
    bool local_clients = o->spawn_nodes == 0 && o->n_client_nodes == 0;
    return local_clients && o->p.rate_per_s == 0 && o->p.clients >= READ_BATCH_MIN_CLIENTS
               ? READ_BATCH_DEFAULT_US
               : 0;
}

/* Returns 0, or 2 after a one-line error. */
static int parse_args(bench_opts_t *o, int argc, char **argv, bool *help)
{
    o->p.workload = lg_workload_find("echo");
    o->p.clients = 100;
    o->p.duration_ms = 5000;
    o->p.warmup_ms = 1000;
    o->p.interval_ms = 1000;
    o->payload_spec = "binary:32";
    o->read_batch_us = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = true;
            return 0;
        }
        int taken = lg_client_flag(&o->client, "bench", argc, argv, &i);
        if (taken < 0)
            return 2;
        if (taken > 0)
            continue;
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (a[0] != '-') {
            if (o->n_targets == MAX_TARGETS) {
                fprintf(stderr, "girder bench: at most %d targets\n", MAX_TARGETS);
                return 2;
            }
            if (!lg_node_parse(a, NULL)) {
                fprintf(stderr, "girder bench: bad node name '%s' (expected name@host)\n", a);
                return 2;
            }
            o->targets[o->n_targets++] = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "girder bench: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t n;
        bool ok = true;
        if (strcmp(a, "--workload") == 0)
            ok = (o->p.workload = lg_workload_find(v)) != NULL;
        else if (strcmp(a, "--clients") == 0)
            ok = parse_count(v, 1, LG_CLIENTS_MAX, &o->p.clients);
        else if (strcmp(a, "--duration") == 0)
            ok = parse_seconds(v, 0.1, &o->p.duration_ms);
        else if (strcmp(a, "--warmup") == 0)
            ok = parse_seconds(v, 0, &o->p.warmup_ms);
        else if (strcmp(a, "--interval") == 0)
            ok = parse_seconds(v, 0.1, &o->p.interval_ms);
        else if (strcmp(a, "--rate") == 0) {
            char *end = NULL;
            o->p.rate_per_s = strtod(v, &end);
            ok = v[0] != '\0' && *end == '\0' && o->p.rate_per_s > 0 && o->p.rate_per_s <= 1e9;
        } else if (strcmp(a, "--payload") == 0) {
            o->payload_spec = v;
        } else if (strcmp(a, "--server") == 0)
            ok = (o->server = v)[0] != '\0' && strlen(v) < 256;
        else if (strcmp(a, "--mfa") == 0)
            ok = (o->mfa = v) != NULL;
        else if (strcmp(a, "--client-nodes") == 0) {
            ok = parse_count(v, 1, MAX_CLIENT_NODES, &n);
            o->spawn_nodes = (unsigned)n;
        } else if (strcmp(a, "--client-node") == 0) {
            ok = lg_node_parse(v, NULL) && o->n_client_nodes < MAX_CLIENT_NODES;
            if (ok)
                o->client_nodes[o->n_client_nodes++] = v;
        } else if (strcmp(a, "--read-batch") == 0) {
            ok = parse_count(v, 0, CLUSTER_READ_BATCH_MAX_US, &n);
            o->read_batch_us = (long)n;
        } else if (strcmp(a, "-schedulers") == 0 || strcmp(a, "--schedulers") == 0) {
            ok = parse_count(v, 1, 1024, &n);
            o->client.schedulers = (unsigned)n;
        } else if (strcmp(a, "--json") == 0)
            o->json = v;
        else if (strcmp(a, "--html") == 0)
            o->html = v;
        else {
            fprintf(stderr, "girder bench: unknown option '%s' (see girder bench --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "girder bench: bad %s '%s' (see girder bench --help)\n", a, v);
            return 2;
        }
    }
    if (!lg_payload_parse(o->payload_spec, &o->p.payload_shape, &o->p.payload_size)) {
        fprintf(stderr, "girder bench: bad --payload '%s' (see girder bench --help)\n",
                o->payload_spec);
        return 2;
    }
    if (o->n_targets == 0) {
        fprintf(stderr, "girder bench: no TARGET_NODE given (see girder bench --help)\n");
        return 2;
    }
    if (o->spawn_nodes > 0 && o->n_client_nodes > 0) {
        fprintf(stderr, "girder bench: give --client-nodes or --client-node, not both\n");
        return 2;
    }
    return 0;
}

/* ---- client nodes this command starts ---- */

typedef struct children {
    pid_t pids[MAX_CLIENT_NODES];
    char names[MAX_CLIENT_NODES][400];
    size_t n;
} children_t;

static void children_stop(children_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        kill(c->pids[i], SIGTERM);
    for (size_t i = 0; i < c->n; i++) {
        /* A node shuts down in well under a second; then it is killed. */
        int status;
        bool gone = false;
        for (int tries = 0; tries < 100 && !gone; tries++) {
            gone = waitpid(c->pids[i], &status, WNOHANG) == c->pids[i];
            if (!gone) {
                struct timespec ts = {0, 20000000};
                nanosleep(&ts, NULL);
            }
        }
        if (!gone) {
            kill(c->pids[i], SIGKILL);
            waitpid(c->pids[i], &status, 0);
        }
    }
    c->n = 0;
}

/* Starts n `girder node` processes named like the target's host style and
 * waits until each has registered with EPMD. */
static int children_start(children_t *c, unsigned n, const bench_opts_t *o, char *err, size_t cap)
{
    bool longnames = false;
    (void)lg_node_parse(o->targets[0], &longnames);
    char host[256];
    const char *at = strchr(o->targets[0], '@');
    snprintf(host, sizeof host, "%s", at + 1);
    for (unsigned i = 0; i < n; i++) {
        char alive[64];
        snprintf(alive, sizeof alive, "girder_bench_%ld_%u", (long)getpid(), i + 1);
        /* The same host as the target's name: EPMD on that host knows it
         * (and the local name style matches). */
        snprintf(c->names[c->n], sizeof c->names[c->n], "%s@%s", alive, host);
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, cap, "could not start client node %u: %s", i + 1, strerror(errno));
            return -1;
        }
        if (pid == 0) {
            /* Dies with us, whatever way we end (Ctrl-C included). */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() == 1)
                _exit(1);
            FILE *null = freopen("/dev/null", "w", stdout);
            null = freopen("/dev/null", "w", stderr);
            (void)null;
            const char *args[12];
            int k = 0;
            args[k++] = "girder";
            args[k++] = "node";
            args[k++] = longnames ? "-name" : "-sname";
            args[k++] = c->names[c->n];
            args[k++] = "-hidden";
            if (o->client.cookie != NULL) {
                args[k++] = "-setcookie";
                args[k++] = o->client.cookie;
            }
            args[k] = NULL;
            execv("/proc/self/exe", (char *const *)args);
            _exit(127);
        }
        c->pids[c->n++] = pid;
    }
    for (size_t i = 0; i < c->n; i++) {
        bool up = false;
        char why[256];
        for (int tries = 0; tries < 100 && !up; tries++) {
            up = lg_preflight(c->names[i], 1000, why, sizeof why) == 0;
            int status;
            if (!up && waitpid(c->pids[i], &status, WNOHANG) == c->pids[i]) {
                c->pids[i] = c->pids[--c->n]; /* already reaped */
                snprintf(err, cap, "client node %s exited at start", c->names[i]);
                return -1;
            }
            if (!up) {
                struct timespec ts = {0, 100000000};
                nanosleep(&ts, NULL);
            }
        }
        if (!up) {
            snprintf(err, cap, "client node %s did not come up: %s", c->names[i], why);
            return -1;
        }
    }
    return 0;
}

/* ---- results ---- */

static bool target_failed(const lg_target_run_t *t)
{
    return t->error[0] != '\0' || t->result.errors > 0 || t->result.lost > 0 ||
           t->result.misordered > 0 || t->result.ops == 0;
}

static int write_file(const char *path, const bench_results_t *r, bool html)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "girder bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = html ? bench_results_write_html(r, f) : bench_results_write_json(r, f);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "girder bench: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static const char *shape_name(enum lg_payload_shape s)
{
    static const char *const names[] = {"binary", "list", "map", "tuple", "atom", "int"};
    return names[s];
}

static int report(const bench_opts_t *o, lg_target_run_t *runs, size_t n, size_t client_nodes)
{
    bench_target_t targets[MAX_TARGETS];
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (runs[i].error[0] == '\0')
            targets[nt++] = runs[i].result;
    bench_results_t r = {.title = "girder bench",
                         .params = {.workload = o->p.workload->name,
                                    .clients = o->p.clients,
                                    .client_nodes = (uint32_t)client_nodes,
                                    .schedulers = o->client.schedulers,
                                    .read_batch_us = o->client.read_batch_us,
                                    .payload = shape_name(o->p.payload_shape),
                                    .payload_bytes = o->p.payload_size,
                                    .rate_per_s = o->p.rate_per_s,
                                    .duration_s = (double)o->p.duration_ms / 1000,
                                    .warmup_s = (double)o->p.warmup_ms / 1000,
                                    .interval_s = (double)o->p.interval_ms / 1000},
                         .targets = targets,
                         .n_targets = nt};
    bench_machine_detect(&r.machine, GIRDER_VERSION);
    int status = 0;
    bool color = bench_is_tty(stdout);
    if (nt > 0 && bench_results_write_table(&r, stdout, color) != 0)
        status = 1;
    for (size_t i = 0; i < n; i++) {
        if (!target_failed(&runs[i]))
            continue;
        status = 1;
        const lg_target_run_t *t = &runs[i];
        char why[800];
        if (t->error[0] != '\0')
            snprintf(why, sizeof why, "%s", t->error);
        else
            snprintf(why, sizeof why,
                     "%llu errors, %llu lost, %llu misordered, %llu completed operations",
                     (unsigned long long)t->result.errors, (unsigned long long)t->result.lost,
                     (unsigned long long)t->result.misordered, (unsigned long long)t->result.ops);
        fprintf(color ? stdout : stderr, "%sFAILED %s: %s%s\n", color ? "\033[31m" : "", t->node,
                why, color ? "\033[0m" : "");
    }
    if (o->json != NULL && write_file(o->json, &r, false) != 0)
        status = 1;
    if (o->html != NULL && write_file(o->html, &r, true) != 0)
        status = 1;
    if (!o->quiet && o->json != NULL && status == 0)
        printf("results: %s\n", o->json);
    if (!o->quiet && o->html != NULL && status == 0)
        printf("report:  %s\n", o->html);
    return status;
}

int gd_cmd_bench(int argc, char **argv)
{
    bench_opts_t *o = calloc(1, sizeof *o);
    children_t *kids = calloc(1, sizeof *kids);
    lg_target_run_t *runs = calloc(MAX_TARGETS, sizeof *runs);
    int status = 2;
    bool help = false, started = false;
    char err[512];
    if (o == NULL || kids == NULL || runs == NULL) {
        fprintf(stderr, "girder bench: out of memory\n");
        status = 1;
        goto out;
    }
    o->p.mfa_m = o->p.mfa_f = TERM_NONE;
    if ((status = parse_args(o, argc, argv, &help)) != 0)
        goto out;
    if (help) {
        usage(stdout);
        goto out;
    }
    if (o->mfa != NULL && !parse_mfa(o->mfa, &o->p)) {
        fprintf(stderr, "girder bench: bad --mfa '%s' (expected M:F/0 or M:F/1)\n", o->mfa);
        status = 2;
        goto out;
    }
    o->p.server = heap_atom(o->server ? o->server : o->p.workload->default_server);
    status = 1;
    signal(SIGPIPE, SIG_IGN);
    uint64_t timeout = o->client.timeout_ms ? o->client.timeout_ms : LG_TIMEOUT_DEFAULT_MS;
    o->p.connect_timeout_ms = timeout;
    for (size_t i = 0; i < o->n_targets + o->n_client_nodes; i++) {
        const char *node = i < o->n_targets ? o->targets[i] : o->client_nodes[i - o->n_targets];
        if (lg_preflight(node, timeout, err, sizeof err) != 0) {
            fprintf(stderr, "girder bench: %s\n", err);
            goto out;
        }
    }
    if (o->client.schedulers == 0) /* the figure the results report */
        o->client.schedulers = lg_client_schedulers_default();
    o->client.read_batch_us = bench_read_batch(o);
    if (lg_client_start(&o->client, o->targets[0], NULL, err, sizeof err) != 0) {
        fprintf(stderr, "girder bench: %s\n", err);
        goto out;
    }
    started = true;
    /* Keep more freed memory than the runtime's policy does (sched_start
     * set it): each message is allocated on one thread and freed on
     * another, so the next burst would grow an arena again and fault its
     * pages back in (perf on the echo bench: sysmalloc and _int_free ~13%
     * of this process's samples with glibc's default 128 KiB).  A bench
     * is short-lived: its peak is what it would reach anyway. */
    (void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
    if (o->spawn_nodes > 0) {
        if (children_start(kids, o->spawn_nodes, o, err, sizeof err) != 0) {
            fprintf(stderr, "girder bench: %s\n", err);
            goto out;
        }
        for (size_t i = 0; i < kids->n; i++)
            o->client_nodes[o->n_client_nodes++] = kids->names[i];
    }
    for (size_t i = 0; i < o->n_targets; i++) {
        lg_target_run_t *t = &runs[i];
        t->node = o->targets[i];
        t->client_nodes = o->client_nodes;
        t->n_client_nodes = o->n_client_nodes;
        t->quiet = o->quiet;
        if (!o->quiet)
            printf("%s: %s, %llu clients%s, %.1f s (+%.1f s warm-up)\n", t->node,
                   o->p.workload->name, (unsigned long long)o->p.clients,
                   o->p.rate_per_s > 0 ? ", open loop" : "", (double)o->p.duration_ms / 1000,
                   (double)o->p.warmup_ms / 1000);
        fflush(stdout);
        lg_params_t p = o->p;
        /* A failure is reported with the summary (FAILED NODE: why). */
        (void)lg_run_target(&p, t);
    }
    children_stop(kids);
    status = report(o, runs, o->n_targets, o->n_client_nodes);
out:
    if (kids != NULL)
        children_stop(kids);
    if (started)
        lg_client_stop();
    if (runs != NULL && o != NULL)
        for (size_t i = 0; i < o->n_targets; i++)
            lg_target_run_free(&runs[i]);
    fflush(stdout);
    free(runs);
    free(kids);
    free(o);
    return status;
}
