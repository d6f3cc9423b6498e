/*
 * cmd_node.c — `girder node`: starts a distributed node that Erlang nodes
 * talk to as one of their own, and runs it until SIGTERM or SIGINT.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cluster.h"
#include "commands.h"
#include "girder.h"
#include "loadgen.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: girder node (-sname|-name) NAME [-setcookie COOKIE] [-hidden]\n"
                 "                   [-kernel inet_dist_listen_min P inet_dist_listen_max P]\n"
                 "                   [-kernel net_ticktime S] [-schedulers N] [+zdbbl KB]\n"
                 "                   [-proto_dist inet_tls (-ssl_dist_optfile FILE |\n"
                 "                    -ssl_dist_opt server_KEY VALUE client_KEY VALUE ...)]\n"
                 "                   [--metrics [HOST]:PORT] [--connect NODE,...] [--no-reload]\n"
                 "\n"
                 "Starts a girder node that registers with EPMD (an embedded one when none\n"
                 "answers) and serves net_kernel (ping), rex (rpc:call/erpc:call of its C\n"
                 "functions), echo, the girder_kv gen_server and the girder global registry.\n"
                 "--sname/--name/--cookie are accepted too.  The cookie\n"
                 "defaults to ~/.erlang.cookie (created with 150 random bits when missing).\n"
                 "+zdbbl: a connection's output limit (default 1024 KB, as OTP): past it,\n"
                 "sending processes wait until it drains.\n"
                 "-schedulers: scheduler threads (default: the cores the process may run on,\n"
                 "as its CPU affinity mask says, e.g. under taskset; as erl's +S).\n"
                 "Runs until SIGTERM or SIGINT, then closes its connections and leaves EPMD.\n"
                 "--metrics serves Prometheus metrics at http://HOST:PORT/metrics (HOST empty:\n"
                 "every address; PORT 0: a free one, logged): processes, run queues,\n"
                 "reductions, messages, GC pauses, memory, per-connection traffic and busy\n"
                 "time, EPMD registration.\n"
                 "--connect pings each NODE once the node is up (retrying for 30 s), so nodes\n"
                 "started together form a full mesh, as net_adm:ping/1 would.\n"
                 "--no-reload: girder:reload/2 answers {error,reload_disabled}.  Otherwise\n"
                 "reload loads a shared object named by any holder of the cookie, exactly as\n"
                 "OTP's code loading over rpc trusts cookie holders (they can run code here).\n"
                 "\n"
                 "-proto_dist inet_tls runs the distribution over TLS as OTP's inet_tls does;\n"
                 "FILE is the very file an OTP node reads: [{server, [{certfile, \"...\"},\n"
                 "{keyfile, \"...\"}, {cacertfile, \"...\"}, {verify, verify_peer},\n"
                 "{fail_if_no_peer_cert, true}]}, {client, [...]}].\n");
}

typedef struct node_extras {
    const char *metrics_addr; /* --metrics, or NULL */
    const char *connect;      /* --connect, or NULL */
} node_extras_t;

static int run_node(const cluster_config_t *cfg_in, const char *cookie, const node_extras_t *x);

static bool parse_num(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* -kernel Key Value (Erlang's spelling; one pair per flag). */
static int kernel_param(cluster_config_t *cfg, const char *key, const char *val)
{
    unsigned long v;
    if (strcmp(key, "inet_dist_listen_min") == 0 && parse_num(val, 1, 65535, &v))
        cfg->listen_min = (uint16_t)v;
    else if (strcmp(key, "inet_dist_listen_max") == 0 && parse_num(val, 1, 65535, &v))
        cfg->listen_max = (uint16_t)v;
    else if (strcmp(key, "net_ticktime") == 0 && parse_num(val, 1, 86400, &v))
        cfg->ticktime_s = (unsigned)v;
    else if (strcmp(key, "net_setuptime") == 0 && parse_num(val, 1, 3600, &v))
        cfg->setuptime_s = (unsigned)v;
    else
        return -1;
    return 0;
}

/* The TLS options given on the command line, and the contexts built from
 * them. */
typedef struct tls_args {
    bool on;             /* -proto_dist inet_tls */
    const char *optfile; /* -ssl_dist_optfile */
    bool have_pairs;     /* at least one -ssl_dist_opt pair */
    cluster_tls_conf_t conf;
} tls_args_t;

/* -ssl_dist_opt Key Value [Key Value ...]: the pairs run up to the next
 * argument that starts with '-' (as init reads Erlang's flags). */
static int ssl_dist_opt(tls_args_t *t, int argc, char **argv, int *i)
{
    int n = 0;
    while (*i + 2 < argc && argv[*i + 1][0] != '-') {
        char err[512];
        if (cluster_tls_conf_opt(&t->conf, argv[*i + 1], argv[*i + 2], err, sizeof err) != 0) {
            fprintf(stderr, "girder node: %s\n", err);
            return -1;
        }
        *i += 2;
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "girder node: -ssl_dist_opt needs Key Value pairs\n");
        return -1;
    }
    t->have_pairs = true;
    return 0;
}

/* Builds the TLS contexts (every file read now): 0, or -1 after one line
 * on stderr. */
static int tls_setup(tls_args_t *t, cluster_tls_t **out)
{
    char err[512];
    if (!t->on) {
        if (t->optfile != NULL || t->have_pairs) {
            fprintf(stderr, "girder node: -ssl_dist_optfile/-ssl_dist_opt need "
                            "-proto_dist inet_tls\n");
            return -1;
        }
        return 0;
    }
    /* OTP reads the optfile and then ignores -ssl_dist_opt; refusing the
     * mix says so instead of dropping options silently. */
    if (t->optfile != NULL && t->have_pairs) {
        fprintf(stderr, "girder node: give -ssl_dist_optfile or -ssl_dist_opt, not both\n");
        return -1;
    }
    if (t->optfile != NULL && cluster_tls_conf_load(&t->conf, t->optfile, err, sizeof err) != 0) {
        fprintf(stderr, "girder node: bad -ssl_dist_optfile: %s\n", err);
        return -1;
    }
    if (cluster_tls_new(&t->conf, out, err, sizeof err) != 0) {
        fprintf(stderr, "girder node: TLS: %s\n", err);
        return -1;
    }
    const char *weak = cluster_tls_weakness(&t->conf);
    if (weak != NULL)
        fprintf(stderr, "girder node: WARNING: TLS %s\n", weak);
    return 0;
}

/* girder:reload/2 on a node started with --no-reload. */
static int bif_reload_disabled(heap_t *h, term_t args, term_t *out)
{
    (void)args;
    term_t *e;
    int rc = heap_make_tuple(h, 2, &e, out);
    if (rc == GD_OK) {
        e[0] = ATOM_ERROR;
        e[1] = heap_atom("reload_disabled");
    }
    return rc;
}

/* The services, with girder:reload/2 replaced before the node accepts its
 * first connection (start_services runs before that). */
static int services_start_no_reload(void)
{
    int rc = girder_services_start();
    if (rc == GD_OK)
        rc = cluster_rpc_register("girder", "reload", 2, bif_reload_disabled);
    return rc;
}

int gd_cmd_node(int argc, char **argv)
{
    cluster_config_t cfg = {0};
    const char *cookie = NULL;
    tls_args_t tls = {0};
    cluster_tls_conf_init(&tls.conf);
    cluster_tls_t *tls_ctx = NULL;
    int status = 2;
    node_extras_t extras = {0};
    bool no_reload = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_arg = i + 1 < argc;
        if ((strcmp(a, "-sname") == 0 || strcmp(a, "--sname") == 0) && has_arg) {
            cfg.name = argv[++i];
            cfg.longnames = false;
        } else if ((strcmp(a, "-name") == 0 || strcmp(a, "--name") == 0) && has_arg) {
            cfg.name = argv[++i];
            cfg.longnames = true;
        } else if ((strcmp(a, "-setcookie") == 0 || strcmp(a, "--cookie") == 0) && has_arg) {
            cookie = argv[++i];
        } else if (strcmp(a, "-hidden") == 0 || strcmp(a, "--hidden") == 0) {
            cfg.hidden = true;
        } else if (strcmp(a, "-kernel") == 0 && i + 2 < argc) {
            if (kernel_param(&cfg, argv[i + 1], argv[i + 2]) != 0) {
                fprintf(stderr, "girder node: bad -kernel %s %s\n", argv[i + 1], argv[i + 2]);
                goto out;
            }
            i += 2;
        } else if (strcmp(a, "-proto_dist") == 0 && has_arg) {
            if (strcmp(argv[++i], "inet_tls") == 0) {
                tls.on = true;
            } else if (strcmp(argv[i], "inet_tcp") != 0) {
                fprintf(stderr, "girder node: -proto_dist %s: only inet_tcp and inet_tls\n",
                        argv[i]);
                goto out;
            }
        } else if (strcmp(a, "-ssl_dist_optfile") == 0 && has_arg) {
            tls.optfile = argv[++i];
        } else if (strcmp(a, "-ssl_dist_opt") == 0) {
            if (ssl_dist_opt(&tls, argc, argv, &i) != 0)
                goto out;
        } else if ((strcmp(a, "-schedulers") == 0 || strcmp(a, "--schedulers") == 0) && has_arg) {
            unsigned long v;
            if (!parse_num(argv[++i], 1, 1024, &v)) {
                fprintf(stderr, "girder node: bad -schedulers %s\n", argv[i]);
                goto out;
            }
            cfg.schedulers = (unsigned)v;
        } else if (strcmp(a, "+zdbbl") == 0 && has_arg) {
            /* OTP's distribution buffer busy limit, KB, same range. */
            unsigned long kb;
            if (!parse_num(argv[++i], 1, 2097151, &kb)) {
                fprintf(stderr, "girder node: bad +zdbbl %s (KB, 1-2097151)\n", argv[i]);
                goto out;
            }
            cfg.dist_buf_busy_limit = (size_t)kb * 1024;
        } else if (strcmp(a, "--metrics") == 0 && has_arg) {
            extras.metrics_addr = argv[++i];
            char host[256];
            uint16_t port;
            if (bench_metrics_parse_addr(extras.metrics_addr, host, sizeof host, &port) != 0) {
                fprintf(stderr, "girder node: bad --metrics %s (want [HOST]:PORT)\n",
                        extras.metrics_addr);
                goto out;
            }
        } else if (strcmp(a, "--connect") == 0 && has_arg) {
            extras.connect = argv[++i];
            if (!node_connect_valid(extras.connect)) {
                fprintf(stderr, "girder node: bad --connect %s (want name@host,...)\n",
                        extras.connect);
                goto out;
            }
        } else if (strcmp(a, "--no-reload") == 0) {
            no_reload = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            status = 0;
            goto out;
        } else {
            fprintf(stderr, "girder node: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            goto out;
        }
    }
    if (cfg.name == NULL) {
        usage(stderr);
        goto out;
    }
    status = 1;
    if (tls_setup(&tls, &tls_ctx) != 0)
        goto out;
    cfg.tls = tls_ctx;
    cfg.start_services = no_reload ? services_start_no_reload : girder_services_start;
    status = run_node(&cfg, cookie, &extras);
out:
    cluster_tls_free(tls_ctx);
    cluster_tls_conf_free(&tls.conf);
    return status;
}

/* Loads the cookie, starts the node (and its metrics endpoint when
 * metrics_addr is set) and runs it until a signal. */
static int run_node(const cluster_config_t *cfg_in, const char *cookie, const node_extras_t *x)
{
    const char *metrics_addr = x->metrics_addr;
    cluster_config_t cfg = *cfg_in;
    char *loaded = NULL;
    if (cookie == NULL) {
        const char *home = getenv("HOME");
        char path[PATH_MAX];
        bool created = false;
        if (home == NULL ||
            snprintf(path, sizeof path, "%s/.erlang.cookie", home) >= (int)sizeof path) {
            fprintf(stderr, "girder node: HOME is not set: give -setcookie\n");
            return 1;
        }
        if (cluster_cookie_load(path, &loaded, &created) != 0) {
            fprintf(stderr, "girder node: cannot read %s (it must be readable by its owner only)\n",
                    path);
            return 1;
        }
        if (created)
            fprintf(stderr, "girder node: created %s (mode 0400, 150 random bits)\n", path);
        cookie = loaded;
    }
    if (cluster_cookie_weak(cookie))
        fprintf(stderr, "girder node: WARNING: the cookie is short or a well-known default; "
                        "anyone who guesses it can run code here. Use >= 16 random "
                        "characters.\n");
    cfg.cookie = cookie;

    sigset_t set;
    girder_block_stop_signals(&set);
    /* Every girder node can run a share of a `girder bench` started
     * elsewhere (girder bench --client-node THIS_NODE). */
    int rc = lg_register_rpc();
    if (rc == 0)
        rc = cluster_start(&cfg);
    if (rc != 0) {
        fprintf(stderr, "girder node: could not start: %s\n", dist_strerror(rc));
        free(loaded);
        return 1;
    }
    node_metrics_t *metrics = NULL;
    if (metrics_addr != NULL && (rc = node_metrics_start(metrics_addr, &metrics)) != 0) {
        fprintf(stderr, "girder node: cannot serve metrics on %s: %s\n", metrics_addr,
                rc == GD_EINVAL ? "bad address or port in use" : "out of memory");
        cluster_stop();
        free(loaded);
        return 1;
    }
    if (x->connect != NULL && (rc = node_connect_start(x->connect)) != 0)
        fprintf(stderr, "girder node: --connect: %s\n", dist_strerror(rc));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "girder node: %s received, shutting down\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    node_metrics_stop(metrics);
    cluster_stop();
    free(loaded);
    return 0;
}
