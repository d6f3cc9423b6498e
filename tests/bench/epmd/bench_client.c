/*
 * bench_client.c — PORT_PLEASE2 load generator for comparing epmd
 * implementations.  Registers one node (kept open for the run), then keeps
 * `concurrency` lookups in flight, each on a fresh connection as real
 * nodes do, for `seconds`, and prints the completed lookups per second,
 * the failed lookups and the completed lookups.
 *   bench_client <port> <seconds> <concurrency>
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epmd.h"

#define MAX_CONCURRENCY 256
#define BENCH_NAME "benchnode"

typedef struct slot {
    int fd;
    size_t got;
    uint8_t buf[64];
} slot_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int start_lookup(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    static const uint8_t req[] = {
        0, 1 + sizeof BENCH_NAME - 1, EPMD_PORT2_REQ, 'b', 'e', 'n', 'c', 'h', 'n', 'o', 'd', 'e'};
    if (send(fd, req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s <port> <seconds> <concurrency>\n", argv[0]);
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[1]);
    double secs = atof(argv[2]);
    int conc = atoi(argv[3]);
    if (conc < 1 || conc > MAX_CONCURRENCY || secs <= 0)
        return 2;
    epmd_client_opts_t o = {.port = port, .timeout_ms = 2000};
    epmd_node_info_t n = {.port = 4242, .node_type = EPMD_NODE_NORMAL, .high_vsn = 6, .low_vsn = 5};
    strcpy(n.name, BENCH_NAME);
    uint32_t creation;
    epmd_registration_t *reg = NULL;
    int rc = epmd_client_register(&o, &n, &creation, &reg);
    if (rc != 0) {
        fprintf(stderr, "register: %s\n", epmd_strerror(rc));
        return 1;
    }
    slot_t slots[MAX_CONCURRENCY];
    struct pollfd pfd[MAX_CONCURRENCY];
    for (int i = 0; i < conc; i++) {
        slots[i].fd = start_lookup(port);
        slots[i].got = 0;
    }
    unsigned long done = 0, errors = 0;
    double t0 = now_s(), end = t0 + secs;
    while (now_s() < end) {
        for (int i = 0; i < conc; i++) {
            if (slots[i].fd < 0) {
                slots[i].fd = start_lookup(port);
                slots[i].got = 0;
            }
            pfd[i].fd = slots[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)conc, 100) <= 0)
            continue;
        for (int i = 0; i < conc; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            slot_t *s = &slots[i];
            ssize_t r = recv(s->fd, s->buf + s->got, sizeof s->buf - s->got, 0);
            if (r > 0) {
                s->got += (size_t)r;
                continue;
            }
            epmd_node_info_t info;
            if (r == 0 && epmd_parse_port2_resp(s->buf, s->got, &info) == 0 && info.port == 4242)
                done++;
            else
                errors++;
            close(s->fd);
            s->fd = -1;
        }
    }
    double elapsed = now_s() - t0;
    for (int i = 0; i < conc; i++)
        if (slots[i].fd >= 0)
            close(slots[i].fd);
    epmd_registration_close(reg);
    printf("%.0f %lu %lu\n", done / elapsed, errors, done);
    return 0;
}
