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

#include "cluster.h"
#include "commands.h"
#include "girder.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: girder node (-sname|-name) NAME [-setcookie COOKIE] [-hidden]\n"
                 "                   [-kernel inet_dist_listen_min P inet_dist_listen_max P]\n"
                 "                   [-kernel net_ticktime S] [-schedulers N]\n"
                 "\n"
                 "Starts a girder node that registers with EPMD (an embedded one when none\n"
                 "answers) and serves net_kernel (ping), rex (rpc:call/erpc:call of its C\n"
                 "functions), echo, the girder_kv gen_server and the girder global registry.\n"
                 "--sname/--name/--cookie are accepted too.  The cookie\n"
                 "defaults to ~/.erlang.cookie (created with 150 random bits when missing).\n"
                 "Runs until SIGTERM or SIGINT, then closes its connections and leaves EPMD.\n");
}

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

int gd_cmd_node(int argc, char **argv)
{
    cluster_config_t cfg = {0};
    const char *cookie = NULL;
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
                return 2;
            }
            i += 2;
        } else if ((strcmp(a, "-schedulers") == 0 || strcmp(a, "--schedulers") == 0) && has_arg) {
            unsigned long v;
            if (!parse_num(argv[++i], 1, 1024, &v)) {
                fprintf(stderr, "girder node: bad -schedulers %s\n", argv[i]);
                return 2;
            }
            cfg.schedulers = (unsigned)v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "girder node: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.name == NULL) {
        usage(stderr);
        return 2;
    }
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

    /* Every thread inherits this mask; the main thread waits for the
     * signals with sigwait, so no handler runs inside a library call. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    cfg.start_services = girder_services_start;
    int rc = cluster_start(&cfg);
    if (rc != 0) {
        fprintf(stderr, "girder node: could not start: %s\n", dist_strerror(rc));
        free(loaded);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "girder node: %s received, shutting down\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    cluster_stop();
    free(loaded);
    return 0;
}
