/*
 * epmd_test_util.c — see epmd_test_util.h.
 */
#include "epmd_test_util.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t et_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void et_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint16_t et_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof sin;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

int et_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

size_t et_read_until_close(int fd, uint8_t *buf, size_t cap, int timeout_ms, bool *closed)
{
    size_t got = 0;
    int64_t deadline = et_mono_ms() + timeout_ms;
    *closed = false;
    for (;;) {
        int left = (int)(deadline - et_mono_ms());
        if (left <= 0)
            return got;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n <= 0) {
            *closed = true;
            return got;
        }
        got += (size_t)n;
        if (got == cap)
            return got;
    }
}

void et_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

size_t et_alive_body(uint8_t *b, const void *name, size_t nlen, uint16_t port, uint16_t hi,
                     uint16_t lo, const uint8_t *extra, size_t elen)
{
    b[0] = EPMD_ALIVE2_REQ;
    epmd_put16(b + 1, port);
    b[3] = EPMD_NODE_NORMAL;
    b[4] = 0;
    epmd_put16(b + 5, hi);
    epmd_put16(b + 7, lo);
    epmd_put16(b + 9, (uint16_t)nlen);
    memcpy(b + 11, name, nlen);
    epmd_put16(b + 11 + nlen, (uint16_t)elen);
    if (elen)
        memcpy(b + 13 + nlen, extra, elen);
    return 13 + nlen + elen;
}
