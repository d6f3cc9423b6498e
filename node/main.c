/*
 * main.c — `girder <command> [args]`: dispatches to the subcommands listed
 * in `commands` below.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

/* Prints the girder version and the OTP releases it speaks to. */
static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("girder %s (ETF/distribution compatible with Erlang/OTP 25-28)\n", GIRDER_VERSION);
    return 0;
}

static const gd_command_t commands[] = {
    {"version", cmd_version, "print the girder version"},
    {"epmd", gd_cmd_epmd, "run an Erlang port mapper daemon (like OTP's epmd)"},
    {"names", gd_cmd_names, "list the node names an epmd knows (like epmd -names)"},
    {"node", gd_cmd_node, "start a distributed node (like erl -sname/-name)"},
    {"term", gd_cmd_term, "encode text terms to ETF or decode ETF to text"},
    {"ping", gd_cmd_ping, "ping a node: pong or pang (like net_adm:ping/1)"},
    {"rpc", gd_cmd_rpc, "call M:F(Args) on a node and print the result (like erl_call -a)"},
    {"send", gd_cmd_send, "send a term to a registered process on a node"},
    {"bench", gd_cmd_bench, "load-test nodes (girder or OTP): echo, call, cast, rpc"},
    {"reload", gd_cmd_reload, "hot-reload a module on a running girder node"},
    {"demo", gd_cmd_demo, "a local cluster (girder nodes and erl) under load, with a report"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: girder <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'girder <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "girder: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
