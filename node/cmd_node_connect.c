/*
 * cmd_node_connect.c — `girder node --connect NODE,...`: once the node is
 * up, one process pings each listed node (net_adm:ping's request to its
 * net_kernel) until it answers, so that a set of nodes started together
 * forms a full mesh, as OTP nodes do after net_adm:ping/1 or with
 * sync_nodes_mandatory.  A node not up yet is retried: nodes of a cluster
 * start in any order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "girder.h"
#include "loadgen.h"

/* How long each listed node is retried, and how often. */
#define CONNECT_DEADLINE_MS 30000
#define CONNECT_RETRY_MS 250
#define CONNECT_CALL_MS 2000

bool node_connect_valid(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    if (copy == NULL)
        return false;
    bool ok = list[0] != '\0';
    for (char *n = strtok_r(copy, ",", &save); ok && n != NULL; n = strtok_r(NULL, ",", &save))
        ok = lg_node_parse(n, NULL);
    free(copy);
    return ok;
}

static bool match_nothing(term_t msg, void *arg)
{
    (void)msg;
    (void)arg;
    return false;
}

/* net_adm:ping(Node) from ctx: true on pong. */
static bool ping_once(sched_ctx_t *ctx, term_t node)
{
    heap_t *h = sched_heap(ctx);
    term_t *e, req, server, reply;
    if (heap_make_tuple(h, 2, &e, &req) != 0)
        return false;
    e[0] = heap_atom("is_auth");
    e[1] = heap_node_name();
    if (heap_make_tuple(h, 2, &e, &server) != 0)
        return false;
    e[0] = heap_atom("net_kernel");
    e[1] = node;
    return girder_call(ctx, server, req, CONNECT_CALL_MS, &reply) == 0 && reply == heap_atom("yes");
}

static int connect_main(sched_ctx_t *ctx, term_t arg)
{
    char *list = lg_term_ptr(arg), *save = NULL;
    for (char *n = strtok_r(list, ",", &save); n != NULL; n = strtok_r(NULL, ",", &save)) {
        term_t node = heap_atom(n);
        int waited = 0;
        while (!ping_once(ctx, node) && waited < CONNECT_DEADLINE_MS) {
            term_t none;
            if (sched_receive_wait(ctx, match_nothing, NULL, CONNECT_RETRY_MS, &none) !=
                SCHED_ETIMEOUT)
                break;
            waited += CONNECT_RETRY_MS;
        }
        if (waited >= CONNECT_DEADLINE_MS)
            fprintf(stderr, "girder node: --connect %s: no answer within %d s\n", n,
                    CONNECT_DEADLINE_MS / 1000);
        else
            fprintf(stderr, "girder node: connected to %s\n", n);
    }
    free(list);
    return 0;
}

int node_connect_start(const char *list)
{
    char *copy = strdup(list);
    if (copy == NULL)
        return GD_ENOMEM;
    term_t pid;
    int rc = sched_spawn_coro(NULL, connect_main, lg_ptr_term(copy), &pid);
    if (rc != 0)
        free(copy);
    return rc;
}
