/*
 * client.c — the blocking EPMD client: one fresh connection per request,
 * every step bounded by the caller's timeout (poll on a non-blocking
 * socket), answers parsed by the pure parsers in proto.c.  A registration
 * keeps its connection open and never writes on it again.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_DEFAULT_TIMEOUT_MS 5000
/* Largest answer accepted (NAMES/DUMP with many thousands of nodes). */
#define CLIENT_MAX_RESPONSE (16u << 20)
#define CLIENT_READ_CHUNK 4096
#define STOP_NAME_MAX 1000 /* as OTP's epmd -stop */

struct epmd_registration {
    int fd;
    epmd_client_opts_t opts;
    char *host;
    epmd_node_info_t node;
    uint32_t creation;
};

uint16_t epmd_default_port(void)
{
    const char *s = getenv("ERL_EPMD_PORT");
    if (s != NULL && *s != '\0') {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        if (end != NULL && *end == '\0' && v > 0 && v <= 65535)
            return (uint16_t)v;
    }
    return EPMD_DEFAULT_PORT;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    return left < 0 ? 0 : (int)left;
}

/* wait_fd polls fd for events until deadline; 0, EPMD_ETIMEDOUT or EIO. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, remaining(deadline));
        if (n > 0)
            return 0;
        if (n == 0)
            return EPMD_ETIMEDOUT;
        if (errno != EINTR)
            return EPMD_EIO;
    }
}

static int connect_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline, int *out)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return EPMD_ESYS;
    int rc = 0;
    if (connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS) {
            rc = errno == ECONNREFUSED ? EPMD_ECONNREFUSED : EPMD_EIO;
            goto close_fd;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc != 0)
            goto close_fd;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            rc = err == ECONNREFUSED ? EPMD_ECONNREFUSED : EPMD_EIO;
            goto close_fd;
        }
    }
    *out = fd;
    return 0;
close_fd:
    close(fd);
    return rc;
}

/* connect_epmd connects to opts' epmd: host NULL tries 127.0.0.1 then ::1. */
static int connect_epmd(const epmd_client_opts_t *opts, int64_t deadline, int *out)
{
    uint16_t port = opts->port ? opts->port : epmd_default_port();
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    const char *host = opts->host;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    if (host == NULL) {
        hints.ai_flags = AI_NUMERICHOST;
        host = "127.0.0.1";
    }
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL)
        return EPMD_ERESOLVE;
    int rc = EPMD_ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_addr(ai->ai_addr, ai->ai_addrlen, deadline, out);
        if (rc == 0 || rc == EPMD_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (rc != 0 && opts->host == NULL && rc != EPMD_ETIMEDOUT) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        s6.sin6_addr = in6addr_loopback;
        if (connect_addr((struct sockaddr *)&s6, sizeof s6, deadline, out) == 0)
            rc = 0;
    }
    return rc;
}

static int send_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        return EPMD_EIO;
    }
    return 0;
}

/* recv_some reads what is there (waiting until deadline); returns bytes,
 * 0 at EOF, or a negative EPMD_E* code. */
static ssize_t recv_some(int fd, uint8_t *p, size_t n, int64_t deadline)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno == ECONNRESET ? 0 : EPMD_EIO;
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc != 0)
            return rc;
    }
}

/* recv_to_eof collects the whole answer of a request epmd closes after. */
static int recv_to_eof(int fd, int64_t deadline, epmd_buf_t *out)
{
    uint8_t chunk[CLIENT_READ_CHUNK];
    for (;;) {
        ssize_t r = recv_some(fd, chunk, sizeof chunk, deadline);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return 0;
        if (out->len + (size_t)r > CLIENT_MAX_RESPONSE)
            return EPMD_EPROTO;
        int rc = epmd_buf_append(out, chunk, (size_t)r);
        if (rc != 0)
            return rc;
    }
}

/* request sends the body with its length prefix on a fresh connection and
 * collects the answer until epmd closes. */
static int request(const epmd_client_opts_t *opts, const uint8_t *body, size_t len,
                   epmd_buf_t *answer)
{
    int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    int64_t deadline = mono_ms() + timeout;
    if (len == 0 || len > EPMD_MAX_REQUEST_BODY)
        return EPMD_EINVAL;
    int fd = -1;
    int rc = connect_epmd(opts, deadline, &fd);
    if (rc != 0)
        return rc;
    uint8_t frame[2 + EPMD_MAX_REQUEST_BODY];
    epmd_put16(frame, (uint16_t)len);
    memcpy(frame + 2, body, len);
    rc = send_all(fd, frame, len + 2, deadline);
    if (rc == 0)
        rc = recv_to_eof(fd, deadline, answer);
    if (rc == 0 && answer->len == 0) /* closed without a word */
        rc = EPMD_EIO;
    close(fd);
    return rc;
}

static int do_register(epmd_registration_t *reg)
{
    const epmd_node_info_t *n = &reg->node;
    size_t nlen = strlen(n->name);
    int timeout = reg->opts.timeout_ms > 0 ? reg->opts.timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    int64_t deadline = mono_ms() + timeout;
    uint8_t req[EPMD_ALIVE2_FRAME_MAX];
    size_t req_len = epmd_alive2_frame(n, nlen, req);

    int fd = -1;
    int rc = connect_epmd(&reg->opts, deadline, &fd);
    if (rc != 0)
        return rc;
    rc = send_all(fd, req, req_len, deadline);
    if (rc != 0)
        goto close_fd;
    uint8_t resp[8];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv_some(fd, resp + got, sizeof resp - got, deadline);
        if (r < 0) {
            rc = (int)r;
            goto close_fd;
        }
        if (r == 0) { /* closed without an answer (e.g. non-local peer) */
            rc = EPMD_EIO;
            goto close_fd;
        }
        got += (size_t)r;
        uint8_t result = 0;
        uint32_t creation = 0;
        size_t used = 0;
        rc = epmd_parse_alive2_resp(resp, got, &result, &creation, &used);
        if (rc == EPMD_EAGAIN)
            continue;
        if (rc != 0 || used != got) {
            rc = EPMD_EPROTO;
            goto close_fd;
        }
        if (result != 0) {
            rc = EPMD_EREFUSED;
            goto close_fd;
        }
        reg->creation = creation;
        reg->fd = fd;
        return 0;
    }
close_fd:
    close(fd);
    return rc;
}

int epmd_client_register(const epmd_client_opts_t *opts, const epmd_node_info_t *node,
                         uint32_t *creation, epmd_registration_t **out)
{
    *out = NULL;
    *creation = 0;
    size_t nlen = strnlen(node->name, sizeof node->name);
    if (nlen == 0 || nlen > EPMD_MAX_NAME_BYTES || node->extra_len > EPMD_MAX_EXTRA_BYTES)
        return EPMD_EINVAL;
    epmd_registration_t *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return EPMD_ENOMEM;
    reg->fd = -1;
    reg->opts = *opts;
    if (opts->host != NULL) {
        reg->host = strdup(opts->host);
        if (reg->host == NULL) {
            free(reg);
            return EPMD_ENOMEM;
        }
        reg->opts.host = reg->host;
    }
    reg->node = *node;
    int rc = do_register(reg);
    if (rc != 0) {
        free(reg->host);
        free(reg);
        return rc;
    }
    *creation = reg->creation;
    *out = reg;
    return 0;
}

uint32_t epmd_registration_creation(const epmd_registration_t *reg)
{
    return reg->creation;
}

int epmd_registration_fd(const epmd_registration_t *reg)
{
    return reg->fd;
}

bool epmd_registration_alive(epmd_registration_t *reg)
{
    if (reg->fd < 0)
        return false;
    struct pollfd p = {.fd = reg->fd, .events = POLLIN};
    int n = poll(&p, 1, 0);
    if (n == 0)
        return true;
    if (n < 0 && errno == EINTR)
        return true;
    /* Readable, hung up or in error: epmd closed (or misbehaved). */
    close(reg->fd);
    reg->fd = -1;
    return false;
}

int epmd_client_reregister(epmd_registration_t *reg, int attempts, int delay_ms, uint32_t *creation)
{
    *creation = 0;
    if (reg->fd >= 0) {
        close(reg->fd);
        reg->fd = -1;
    }
    int rc = EPMD_EINVAL;
    for (int i = 0; i < attempts; i++) {
        if (i > 0 && delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
        rc = do_register(reg);
        if (rc == 0) {
            *creation = reg->creation;
            return 0;
        }
    }
    return rc;
}

void epmd_registration_close(epmd_registration_t *reg)
{
    if (reg == NULL)
        return;
    if (reg->fd >= 0)
        close(reg->fd);
    free(reg->host);
    free(reg);
}

int epmd_client_port_please(const epmd_client_opts_t *opts, const char *name,
                            epmd_node_info_t *info)
{
    memset(info, 0, sizeof *info);
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > EPMD_MAX_NAME_BYTES)
        return EPMD_EINVAL;
    uint8_t body[1 + EPMD_MAX_NAME_BYTES];
    body[0] = EPMD_PORT2_REQ;
    memcpy(body + 1, name, nlen);
    epmd_buf_t ans = {0};
    int rc = request(opts, body, nlen + 1, &ans);
    if (rc == 0)
        rc = epmd_parse_port2_resp(ans.data, ans.len, info);
    epmd_buf_free(&ans);
    return rc;
}

/* copy_raw hands out answer bytes from off as a NUL-terminated string. */
static int copy_raw(const epmd_buf_t *ans, size_t off, char **raw, size_t *raw_len)
{
    size_t n = ans->len - off;
    char *s = malloc(n + 1);
    if (s == NULL)
        return EPMD_ENOMEM;
    if (n)
        memcpy(s, ans->data + off, n);
    s[n] = '\0';
    *raw = s;
    *raw_len = n;
    return 0;
}

int epmd_client_names(const epmd_client_opts_t *opts, epmd_names_t *out, char **raw,
                      size_t *raw_len)
{
    memset(out, 0, sizeof *out);
    if (raw != NULL) {
        *raw = NULL;
        *raw_len = 0;
    }
    const uint8_t body = EPMD_NAMES_REQ;
    epmd_buf_t ans = {0};
    int rc = request(opts, &body, 1, &ans);
    if (rc == 0)
        rc = epmd_parse_names_resp(ans.data, ans.len, out);
    if (rc == 0 && raw != NULL) {
        rc = copy_raw(&ans, 4, raw, raw_len);
        if (rc != 0)
            epmd_names_free(out);
    }
    epmd_buf_free(&ans);
    return rc;
}

int epmd_client_dump(const epmd_client_opts_t *opts, uint32_t *epmd_port, char **raw,
                     size_t *raw_len)
{
    *raw = NULL;
    *raw_len = 0;
    const uint8_t body = EPMD_DUMP_REQ;
    epmd_buf_t ans = {0};
    int rc = request(opts, &body, 1, &ans);
    if (rc == 0 && ans.len < 4)
        rc = EPMD_EPROTO;
    if (rc == 0) {
        *epmd_port = epmd_get32(ans.data);
        rc = copy_raw(&ans, 4, raw, raw_len);
    }
    epmd_buf_free(&ans);
    return rc;
}

int epmd_client_kill(const epmd_client_opts_t *opts)
{
    const uint8_t body = EPMD_KILL_REQ;
    epmd_buf_t ans = {0};
    int rc = request(opts, &body, 1, &ans);
    if (rc == 0) {
        if (ans.len == 2 && memcmp(ans.data, "OK", 2) == 0)
            rc = 0;
        else if (ans.len == 2 && memcmp(ans.data, "NO", 2) == 0)
            rc = EPMD_ENOTALLOWED;
        else
            rc = EPMD_EPROTO;
    }
    epmd_buf_free(&ans);
    return rc;
}

int epmd_client_stop(const epmd_client_opts_t *opts, const char *name, char *answer,
                     size_t answer_size)
{
    if (answer_size > 0)
        answer[0] = '\0';
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > STOP_NAME_MAX)
        return EPMD_EINVAL;
    uint8_t body[1 + STOP_NAME_MAX];
    body[0] = EPMD_STOP_REQ;
    memcpy(body + 1, name, nlen);
    epmd_buf_t ans = {0};
    int rc = request(opts, body, nlen + 1, &ans);
    if (answer_size > 0) {
        size_t n = ans.len < answer_size - 1 ? ans.len : answer_size - 1;
        if (n)
            memcpy(answer, ans.data, n);
        answer[n] = '\0';
    }
    epmd_buf_free(&ans);
    return rc;
}

int epmd_client_probe(const epmd_client_opts_t *opts)
{
    const uint8_t body = EPMD_NAMES_REQ;
    epmd_buf_t ans = {0};
    int rc = request(opts, &body, 1, &ans);
    if (rc == 0 && ans.len < 4)
        rc = EPMD_EPROTO;
    epmd_buf_free(&ans);
    return rc;
}
