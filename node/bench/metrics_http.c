/*
 * metrics_http.c — the Prometheus scrape endpoint over libevent's evhttp
 * (the one file of node/bench/ that includes <event2/...>).  evhttp parses
 * the requests: malformed ones get its 400 (or the connection closed), over
 * long headers 400 and bodies 413; methods it does not know its 501.  We
 * answer GET and HEAD of /metrics and / with the registry's text, other
 * paths with 404 and other methods with 405.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#define METRICS_MAX_HEADERS 8192
#define METRICS_TIMEOUT_S 10
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct bench_metrics_http {
    struct evhttp *http;
    bench_metrics_t *reg;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (out != NULL)
        evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, out);
    if (out != NULL)
        evbuffer_free(out);
}

/* evbuffer cleanup of a rendered exposition text. */
static void free_text(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

static void handle(struct evhttp_request *req, void *arg)
{
    bench_metrics_http_t *srv = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "only GET and HEAD\n");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || (strcmp(path, "/metrics") != 0 && strcmp(path, "/") != 0)) {
        reply_text(req, HTTP_NOTFOUND, "Not Found", "not found: try /metrics\n");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (bench_metrics_render(srv->reg, &text, &len) != 0) {
        reply_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    /* the reference moves with the chain into the connection's output
     * buffer: the text is freed by free_text once written, not here */
    struct evbuffer *out = evbuffer_new();
    if (out == NULL || evbuffer_add_reference(out, text, len, free_text, NULL) != 0) {
        if (out != NULL)
            evbuffer_free(out);
        free(text);
        reply_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", METRICS_CONTENT_TYPE);
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

int bench_metrics_http_start(struct event_base *base, bench_metrics_t *reg, const char *host,
                             uint16_t port, bench_metrics_http_t **out, uint16_t *bound_port)
{
    if (base == NULL || reg == NULL)
        return GD_EINVAL;
    bench_metrics_http_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return GD_ENOMEM;
    srv->reg = reg;
    srv->http = evhttp_new(base);
    if (srv->http == NULL) {
        free(srv);
        return GD_ENOMEM;
    }
    evhttp_set_max_headers_size(srv->http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(srv->http, 0);
    evhttp_set_timeout(srv->http, METRICS_TIMEOUT_S);
    /* every method evhttp knows reaches handle(), which answers 405 to all
     * but GET and HEAD (evhttp itself would say 501) */
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, handle, srv);
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(srv->http, host && *host ? host : "0.0.0.0", port);
    if (sock == NULL) {
        evhttp_free(srv->http);
        free(srv);
        return GD_EINVAL;
    }
    if (bound_port != NULL) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        *bound_port = port;
        if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET)
                *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else if (ss.ss_family == AF_INET6)
                *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    *out = srv;
    return 0;
}

void bench_metrics_http_stop(bench_metrics_http_t *srv)
{
    if (srv == NULL)
        return;
    evhttp_free(srv->http);
    free(srv);
}
