/*
 * cmd_epmd.c — `girder epmd` (a drop-in for OTP's epmd: the daemon and its
 * -names/-kill/-stop/-dump client actions, same flags, same output) and
 * `girder names [host]` (lists what an epmd knows, printed like
 * `epmd -names`).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "epmd.h"

#define CLI_TIMEOUT_MS 10000
#define STOP_ANSWER_MAX 32

static void usage(FILE *out)
{
    fprintf(out, "usage: girder epmd [-d|-debug] [-address List] [-port No] [-daemon]\n"
                 "                   [-relaxed_command_check] [-packet_timeout Seconds]\n"
                 "                   [-max_connections N] [-delay_accept S] [-delay_write S]\n"
                 "       girder epmd [-d|-debug] [-port No] [-names|-kill|-stop Name|-dump]\n"
                 "\n"
                 "Starts an Erlang port mapper daemon (like OTP's epmd), or talks to the\n"
                 "one running on this host.  ERL_EPMD_PORT, ERL_EPMD_ADDRESS and\n"
                 "ERL_EPMD_RELAXED_COMMAND_CHECK are honoured as by epmd.\n"
                 "  -address List          listen on these addresses (and loopback)\n"
                 "  -port No               listen on / talk to port No (default 4369)\n"
                 "  -daemon                detach once the port is bound\n"
                 "  -relaxed_command_check allow -kill with live nodes, and -stop\n"
                 "  -packet_timeout S      close request connections idle S seconds (60)\n"
                 "  -max_connections N     cap on open connections (idle ones are evicted)\n"
                 "  -delay_accept S        busy-server test: accept each connection S seconds\n"
                 "                         after it is pending (one per S seconds)\n"
                 "  -delay_write S         busy-server test: send each answer S seconds late\n"
                 "                         (both are timers: other connections are still served)\n"
                 "  -names                 list registered names\n"
                 "  -kill                  stop the running epmd\n"
                 "  -stop Name             forcibly unregister Name (relaxed epmd only)\n"
                 "  -dump                  print everything the epmd knows (local only)\n");
}

static void log_line(void *ud, const char *msg)
{
    time_t now = time(NULL);
    char ts[32];
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "epmd: %s: %s\n", ts, msg);
}

/* parse_uint reads a positive decimal number no larger than max. */
static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || end == NULL || *end != '\0' || v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

static int call_names(uint16_t port, bool silent)
{
    epmd_client_opts_t opts = {.port = port, .timeout_ms = CLI_TIMEOUT_MS};
    epmd_names_t names;
    char *raw = NULL;
    size_t raw_len = 0;
    int rc = epmd_client_names(&opts, &names, &raw, &raw_len);
    if (rc == EPMD_ECONNREFUSED || rc == EPMD_ERESOLVE) {
        if (!silent)
            fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        return 1;
    }
    if (rc != 0) {
        if (!silent)
            printf("epmd: no response from local epmd\n");
        return 1;
    }
    if (!silent) {
        printf("epmd: up and running on port %u with data:\n", (unsigned)names.epmd_port);
        fwrite(raw, 1, raw_len, stdout);
    }
    free(raw);
    epmd_names_free(&names);
    return 0;
}

static int call_dump(uint16_t port)
{
    epmd_client_opts_t opts = {.port = port, .timeout_ms = CLI_TIMEOUT_MS};
    uint32_t epmd_port = 0;
    char *raw = NULL;
    size_t raw_len = 0;
    int rc = epmd_client_dump(&opts, &epmd_port, &raw, &raw_len);
    if (rc == EPMD_ECONNREFUSED) {
        fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        return 1;
    }
    if (rc != 0) {
        printf("epmd: no response from local epmd\n");
        return 1;
    }
    printf("epmd: up and running on port %u with data:\n", (unsigned)epmd_port);
    fwrite(raw, 1, raw_len, stdout);
    free(raw);
    return 0;
}

static int call_kill(uint16_t port)
{
    epmd_client_opts_t opts = {.port = port, .timeout_ms = CLI_TIMEOUT_MS};
    int rc = epmd_client_kill(&opts);
    switch (rc) {
    case 0:
        printf("Killed\n");
        return 0;
    case EPMD_ENOTALLOWED:
        printf("Killing not allowed - living nodes in database.\n");
        return 1;
    case EPMD_ECONNREFUSED:
        fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        return 1;
    default:
        printf("epmd: failed to read answer from local epmd\n");
        return 1;
    }
}

static int call_stop(uint16_t port, const char *name)
{
    epmd_client_opts_t opts = {.port = port, .timeout_ms = CLI_TIMEOUT_MS};
    char answer[STOP_ANSWER_MAX];
    int rc = epmd_client_stop(&opts, name, answer, sizeof answer);
    if (rc == EPMD_ECONNREFUSED) {
        fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        return 1;
    }
    if (rc == EPMD_EINVAL) {
        printf("epmd: Name too long!");
        return 1;
    }
    if (rc != 0 || strlen(answer) < 7) {
        printf("epmd: local epmd responded with <%s>\n", answer);
        return 1;
    }
    /* Like OTP's epmd -stop: the first seven bytes. */
    printf("%.7s\n", answer);
    return 0;
}

/* gd_cmd_epmd runs `girder epmd [flags]`: the daemon, or with -names,
 * -kill, -stop or -dump a client action against the local epmd.  Flags are
 * taken in order, as OTP's epmd does (so -port must come before -names).
 * Returns the exit status: 0 ok, 1 failure, 2 usage error. */
int gd_cmd_epmd(int argc, char **argv)
{
    epmd_server_config_t cfg = {0};
    cfg.port = epmd_default_port();
    cfg.addresses = getenv("ERL_EPMD_ADDRESS");
    cfg.relaxed_command_check = getenv("ERL_EPMD_RELAXED_COMMAND_CHECK") != NULL;
    bool daemonize = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long v = 0;
        if (strcmp(a, "-d") == 0 || strcmp(a, "-debug") == 0) {
            cfg.debug++;
        } else if (strcmp(a, "-daemon") == 0) {
            daemonize = true;
        } else if (strcmp(a, "-relaxed_command_check") == 0) {
            cfg.relaxed_command_check = true;
        } else if (strcmp(a, "-port") == 0 && val && parse_uint(val, 65535, &v)) {
            cfg.port = (uint16_t)v;
            i++;
        } else if (strcmp(a, "-packet_timeout") == 0 && val && parse_uint(val, 86400, &v)) {
            cfg.packet_timeout_s = (unsigned)v;
            i++;
        } else if (strcmp(a, "-max_connections") == 0 && val && parse_uint(val, 1u << 24, &v)) {
            cfg.max_connections = (unsigned)v;
            i++;
        } else if (strcmp(a, "-delay_accept") == 0 && val && parse_uint(val, 86400, &v)) {
            cfg.delay_accept_s = (unsigned)v;
            i++;
        } else if (strcmp(a, "-delay_write") == 0 && val && parse_uint(val, 86400, &v)) {
            cfg.delay_write_s = (unsigned)v;
            i++;
        } else if (strcmp(a, "-address") == 0 && val) {
            cfg.addresses = val;
            i++;
        } else if (strcmp(a, "-names") == 0 && i + 1 == argc) {
            return call_names(cfg.port, false);
        } else if (strcmp(a, "-started") == 0 && i + 1 == argc) {
            return call_names(cfg.port, true);
        } else if (strcmp(a, "-dump") == 0 && i + 1 == argc) {
            return call_dump(cfg.port);
        } else if (strcmp(a, "-kill") == 0 && i + 1 == argc) {
            return call_kill(cfg.port);
        } else if (strcmp(a, "-stop") == 0 && val && i + 2 == argc) {
            return call_stop(cfg.port, val);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (cfg.debug > 0 && !daemonize)
        cfg.log_fn = log_line;
    bool parent = false;
    int rc = epmd_server_run(&cfg, daemonize, &parent);
    if (rc == EPMD_EADDRINUSE) {
        /* As OTP's epmd: another epmd already serves the port; not an error. */
        if (cfg.debug > 0)
            fprintf(stderr, "epmd: there is already a epmd running at port %u\n",
                    (unsigned)cfg.port);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "girder epmd: %s\n", epmd_strerror(rc));
        return 1;
    }
    return 0;
}

/* gd_cmd_names runs `girder names [host] [-port P]`: asks the epmd on host
 * (default this host) for its registered names and prints them the way
 * `epmd -names` does.  Returns 0, 1 when no epmd answers, 2 on bad usage. */
int gd_cmd_names(int argc, char **argv)
{
    epmd_client_opts_t opts = {.port = epmd_default_port(), .timeout_ms = CLI_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        unsigned long v = 0;
        if (strcmp(argv[i], "-port") == 0 && i + 1 < argc && parse_uint(argv[i + 1], 65535, &v)) {
            opts.port = (uint16_t)v;
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: girder names [host] [-port P]\n"
                   "Lists the node names registered with the epmd on host (default:\n"
                   "this host), like `epmd -names`.  ERL_EPMD_PORT sets the default port.\n");
            return 0;
        } else if (argv[i][0] != '-' && opts.host == NULL) {
            opts.host = argv[i];
        } else {
            fprintf(stderr, "usage: girder names [host] [-port P]\n");
            return 2;
        }
    }
    epmd_names_t names;
    char *raw = NULL;
    size_t raw_len = 0;
    int rc = epmd_client_names(&opts, &names, &raw, &raw_len);
    if (rc != 0) {
        fprintf(stderr, "epmd: Cannot connect to %s epmd (%s)\n", opts.host ? opts.host : "local",
                epmd_strerror(rc));
        return 1;
    }
    printf("epmd: up and running on port %u with data:\n", (unsigned)names.epmd_port);
    fwrite(raw, 1, raw_len, stdout);
    free(raw);
    epmd_names_free(&names);
    return 0;
}
