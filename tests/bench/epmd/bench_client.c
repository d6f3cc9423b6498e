/*
 * bench_client.c — PORT_PLEASE2 load generator for comparing epmd
 * implementations.  Registers one node (kept open for the run), then keeps
 * `concurrency` lookups in flight, each on a fresh connection as real
 * nodes do, for `seconds`, and prints the completed lookups per second,
 * the failed lookups and the completed lookups.
 *   bench_client <port> <seconds> <concurrency> [threads]
 * The lookups are split over `threads` threads (default 1): the client
 * pays for most of each lookup's TCP work (connect runs the handshake on
 * both ends), so one client thread can be slower than the server it
 * measures and hide the difference between servers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epmd.h"

#define MAX_CONCURRENCY 256
#define MAX_THREADS 16
#define BENCH_NAME "benchnode"
#define BENCH_NODE_PORT 4242

typedef struct slot {
    int fd;
    size_t got;
    uint8_t buf[64];
} slot_t;

typedef struct worker {
    pthread_t th;
    uint16_t port;
    int conc;
    double end;
    unsigned long done;
    unsigned long errors;
} worker_t;

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

/* run_lookups keeps w->conc lookups in flight until w->end. */
static void *run_lookups(void *arg)
{
    worker_t *w = arg;
    slot_t slots[MAX_CONCURRENCY];
    struct pollfd pfd[MAX_CONCURRENCY];
    for (int i = 0; i < w->conc; i++) {
        slots[i].fd = start_lookup(w->port);
        slots[i].got = 0;
    }
    while (now_s() < w->end) {
        for (int i = 0; i < w->conc; i++) {
            if (slots[i].fd < 0) {
                slots[i].fd = start_lookup(w->port);
                slots[i].got = 0;
            }
            pfd[i].fd = slots[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)w->conc, 100) <= 0)
            continue;
        for (int i = 0; i < w->conc; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            slot_t *s = &slots[i];
            ssize_t r = recv(s->fd, s->buf + s->got, sizeof s->buf - s->got, 0);
            if (r > 0) {
                s->got += (size_t)r;
                continue;
            }
            epmd_node_info_t info;
            if (r == 0 && epmd_parse_port2_resp(s->buf, s->got, &info) == 0 &&
                info.port == BENCH_NODE_PORT)
                w->done++;
            else
                w->errors++;
            close(s->fd);
            s->fd = -1;
        }
    }
    for (int i = 0; i < w->conc; i++)
        if (slots[i].fd >= 0)
            close(slots[i].fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s <port> <seconds> <concurrency> [threads]\n", argv[0]);
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[1]);
    double secs = atof(argv[2]);
    int conc = atoi(argv[3]);
    int nthreads = argc == 5 ? atoi(argv[4]) : 1;
    if (conc < 1 || conc > MAX_CONCURRENCY || secs <= 0 || nthreads < 1 || nthreads > MAX_THREADS ||
        nthreads > conc)
        return 2;
    epmd_client_opts_t o = {.port = port, .timeout_ms = 2000};
    epmd_node_info_t n = {
        .port = BENCH_NODE_PORT, .node_type = EPMD_NODE_NORMAL, .high_vsn = 6, .low_vsn = 5};
    strcpy(n.name, BENCH_NAME);
    uint32_t creation;
    epmd_registration_t *reg = NULL;
    int rc = epmd_client_register(&o, &n, &creation, &reg);
    if (rc != 0) {
        fprintf(stderr, "register: %s\n", epmd_strerror(rc));
        return 1;
    }
    worker_t w[MAX_THREADS];
    double t0 = now_s();
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        /* the in-flight lookups split as evenly as they go */
        w[i] = (worker_t){
            .port = port, .conc = conc / nthreads + (i < conc % nthreads), .end = t0 + secs};
        if (pthread_create(&w[i].th, NULL, run_lookups, &w[i]) != 0)
            break;
        started++;
    }
    unsigned long done = 0, errors = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].th, NULL);
        done += w[i].done;
        errors += w[i].errors;
    }
    double elapsed = now_s() - t0;
    epmd_registration_close(reg);
    if (started < nthreads) {
        fprintf(stderr, "could not start %d threads\n", nthreads);
        return 1;
    }
    printf("%.0f %lu %lu\n", done / elapsed, errors, done);
    return 0;
}
