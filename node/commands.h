/*
 * commands.h — the subcommands of the `girder` command.  Each is a
 * main-like function in node/cmd_<name>.c: it gets the arguments after the
 * subcommand name (argv[0] is the subcommand name) and returns the process
 * exit status (0 ok, 1 bad input or failure, 2 usage error).
 *
 * Status (for the next session):
 *   works: epmd, names, node (--connect: a full mesh at start;
 *   --no-reload), term, ping, rpc, send, reload, bench, demo (cmd_demo.c:
 *   the cluster of scripts/demo with every child in its own process
 *   group, stopped on every path; tests/demo, tests/cli); -timeout bounds
 *   every connection wait of the client commands (tests/cli's
 *   silent_node.py: a node that accepts TCP and never answers).
 *   left: girder bench's client side against an Erlang load generator
 *   (tests/bench/loadgen; issue 15 asks >= 2x) measures 1.5x-2.8x with the
 *   box's load; per round trip girder's generator takes 8-12 us of CPU,
 *   BEAM's 14-21 us, the erl target 6-8 us.  What costs girder's side
 *   (perf): a send() per request (cluster/node.c's direct write), 0.2-0.35
 *   context switches (scheduler/loop wakeups), the bufferevent lock shared
 *   by senders and the loop's reads, a malloc per received message
 *   (deliver -> send_copy -> heap_frag_new) and per sent one (frame.c's
 *   rewrite_atoms stack).
 */
#ifndef GIRDER_NODE_COMMANDS_H
#define GIRDER_NODE_COMMANDS_H

#include <stdbool.h>

#define GIRDER_VERSION "0.1.0"

typedef struct gd_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} gd_command_t;

int gd_cmd_epmd(int argc, char **argv);
int gd_cmd_names(int argc, char **argv);
int gd_cmd_node(int argc, char **argv);
int gd_cmd_term(int argc, char **argv);
int gd_cmd_ping(int argc, char **argv);
int gd_cmd_rpc(int argc, char **argv);
int gd_cmd_send(int argc, char **argv);
int gd_cmd_bench(int argc, char **argv);
int gd_cmd_reload(int argc, char **argv);
int gd_cmd_demo(int argc, char **argv);

/* `girder node --metrics` (cmd_node_metrics.c): the Prometheus endpoint on
 * the running node's loop, started after cluster_start ("[HOST]:PORT";
 * GD_EINVAL for a bad address or a port in use, GD_ENOMEM) and stopped
 * before cluster_stop. */
typedef struct node_metrics node_metrics_t;
int node_metrics_start(const char *spec, node_metrics_t **out);
void node_metrics_stop(node_metrics_t *m);

/* `girder node --connect NODE,...` (cmd_node_connect.c): true when every
 * comma-separated name is name@host; node_connect_start spawns the
 * process that pings each one (retrying for 30 s) once the node runs. */
bool node_connect_valid(const char *list);
int node_connect_start(const char *list);

#endif
