/*
 * epmd.h — girder's EPMD: an Erlang port-mapper server that real Erlang
 * nodes use unchanged, and the client a node uses to register and to find
 * other nodes.  The one public header of epmd/; it depends on libc and, for
 * the event-loop parts, on libevent (struct event_base is only named here).
 *
 * Wire facts: docs/protocol.md section 2 and OTP's erts/epmd/src.
 * Every request travels on a fresh TCP connection as Length:16 + body; the
 * server reads exactly one request per connection and answers without a
 * length prefix.  An ALIVE2 registration lives as long as its connection.
 *
 * Conventions: fallible functions return 0 or a negative EPMD_E* code and
 * deliver results through out-parameters; they are EPMD_MUST_CHECK.
 */
#ifndef GIRDER_EPMD_H
#define GIRDER_EPMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EPMD_MUST_CHECK __attribute__((warn_unused_result))

/* ---- protocol constants (erts/epmd/src/epmd.h) ------------------------- */

#define EPMD_DEFAULT_PORT 4369
#define EPMD_ALIVE2_REQ 120    /* 'x' */
#define EPMD_ALIVE2_RESP 121   /* 'y' 16-bit creation, HighestVersion < 6 */
#define EPMD_ALIVE2_X_RESP 118 /* 'v' 32-bit creation, HighestVersion >= 6 */
#define EPMD_PORT2_REQ 122     /* 'z' PORT_PLEASE2 */
#define EPMD_PORT2_RESP 119    /* 'w' */
#define EPMD_NAMES_REQ 110     /* 'n' */
#define EPMD_DUMP_REQ 100      /* 'd' */
#define EPMD_KILL_REQ 107      /* 'k' */
#define EPMD_STOP_REQ 115      /* 's' */

#define EPMD_NODE_NORMAL 77 /* 'M' */
#define EPMD_NODE_HIDDEN 72 /* 'H' */
#define EPMD_PROTO_TCP_IPV4 0
#define EPMD_DIST_VSN_HIGH 6 /* OTP 23+ */
#define EPMD_DIST_VSN_LOW 5
#define EPMD_ALIVE2_ERROR_CREATION 99 /* creation field of a refused ALIVE2 */

/* ---- limits (OTP's epmd_int.h values where OTP has one) ---------------- */

#define EPMD_MAX_NAME_CHARS 255                       /* UTF-8 characters */
#define EPMD_MAX_NAME_BYTES (EPMD_MAX_NAME_CHARS * 4) /* MAXSYMLEN */
#define EPMD_MAX_EXTRA_BYTES EPMD_MAX_NAME_BYTES
#define EPMD_INBUF_SIZE (3 * EPMD_MAX_NAME_BYTES) /* OTP INBUF_SIZE */
/* Largest body accepted: OTP closes when Length + 2 >= INBUF_SIZE. */
#define EPMD_MAX_REQUEST_BODY (EPMD_INBUF_SIZE - 3)
#define EPMD_CLOSE_TIMEOUT_S 60   /* OTP CLOSE_TIMEOUT, -packet_timeout default */
#define EPMD_MAX_UNREG_COUNT 1000 /* remembered old names (creation reuse) */
#define EPMD_DEBUG_MAX_UNREG_COUNT 5
#define EPMD_DEFAULT_MAX_CONNECTIONS 8192
#define EPMD_MAX_LISTEN_SOCKETS 16

/* ---- error codes -------------------------------------------------------- */

#define EPMD_OK 0
#define EPMD_ENOMEM (-1)       /* allocation failed */
#define EPMD_EINVAL (-2)       /* bad argument */
#define EPMD_EADDRINUSE (-3)   /* port already bound (another epmd runs) */
#define EPMD_ECONNREFUSED (-4) /* no epmd answers */
#define EPMD_ETIMEDOUT (-5)    /* no complete answer in time */
#define EPMD_EIO (-6)          /* socket error, or connection closed early */
#define EPMD_EPROTO (-7)       /* malformed response */
#define EPMD_ENOTFOUND (-8)    /* PORT_PLEASE2: name not registered */
#define EPMD_EREFUSED (-9)     /* ALIVE2 refused (name taken or invalid) */
#define EPMD_ERESOLVE (-10)    /* host name did not resolve */
#define EPMD_ENOTALLOWED (-11) /* KILL answered "NO" (live nodes) */
#define EPMD_ECLOSED (-12)     /* the registration connection is gone */
#define EPMD_ESYS (-13)        /* another system call failure */
#define EPMD_EAGAIN (-14)      /* parser: more bytes are needed */

/* epmd_strerror returns a static English description of an EPMD_E* code. */
const char *epmd_strerror(int err);

/* ---- node information --------------------------------------------------- */

/* What ALIVE2 registers and PORT2_RESP reports.  name is NUL-terminated
 * (registered names never contain NUL); extra is binary. */
typedef struct epmd_node_info {
    uint16_t port;
    uint8_t node_type; /* EPMD_NODE_NORMAL or EPMD_NODE_HIDDEN */
    uint8_t protocol;  /* EPMD_PROTO_TCP_IPV4 */
    uint16_t high_vsn;
    uint16_t low_vsn;
    char name[EPMD_MAX_NAME_BYTES + 1];
    uint16_t extra_len;
    uint8_t extra[EPMD_MAX_EXTRA_BYTES];
} epmd_node_info_t;

/* One line of a NAMES answer. */
typedef struct epmd_name_entry {
    char name[EPMD_MAX_NAME_BYTES + 1];
    uint32_t port;
} epmd_name_entry_t;

/* A parsed NAMES answer; free with epmd_names_free. */
typedef struct epmd_names {
    uint32_t epmd_port; /* the port the answering epmd listens on */
    size_t count;
    epmd_name_entry_t *entries; /* newest registration first */
} epmd_names_t;

/* ---- pure response parsers (used by the client; fuzzed) ----------------- */

/* epmd_parse_alive2_resp parses an ALIVE2_RESP ('y', 16-bit creation) or
 * ALIVE2_X_RESP ('v', 32-bit creation) held in buf[0..len).  On a complete
 * response it stores the result byte and creation and the bytes it used in
 * *used and returns 0; returns EPMD_EAGAIN when more bytes are needed and
 * EPMD_EPROTO when the bytes cannot be an ALIVE2 response.  Reads nothing
 * past len; O(1). */
EPMD_MUST_CHECK int epmd_parse_alive2_resp(const uint8_t *buf, size_t len, uint8_t *result,
                                           uint32_t *creation, size_t *used);

/* epmd_parse_port2_resp parses a complete PORT2_RESP in buf[0..len) (the
 * server closes after it, so len is everything received).  Returns 0 and
 * fills *info for result 0, EPMD_ENOTFOUND for "w 1", EPMD_EPROTO for any
 * malformed, truncated or over-long response.  O(len). */
EPMD_MUST_CHECK int epmd_parse_port2_resp(const uint8_t *buf, size_t len, epmd_node_info_t *info);

/* epmd_parse_names_resp parses a complete NAMES answer (4-byte port, then
 * "name N at port P\n" lines) into *out, which the caller frees with
 * epmd_names_free.  Lines that do not have that shape are skipped, as OTP's
 * erl_epmd does; a missing port prefix is EPMD_EPROTO.  O(len). */
EPMD_MUST_CHECK int epmd_parse_names_resp(const uint8_t *buf, size_t len, epmd_names_t *out);

/* epmd_names_free releases what epmd_parse_names_resp or epmd_client_names
 * stored in *names and zeroes it; NULL and empty lists are fine. */
void epmd_names_free(epmd_names_t *names);

/* ---- blocking client ---------------------------------------------------- */

/* Where and how long to talk to an epmd.  host NULL means the loopback
 * address (IPv4 127.0.0.1, then ::1); port 0 means ERL_EPMD_PORT or 4369.
 * timeout_ms bounds each whole operation (connect + request + answer). */
typedef struct epmd_client_opts {
    const char *host;
    uint16_t port;
    int timeout_ms;
} epmd_client_opts_t;

/* epmd_default_port returns ERL_EPMD_PORT when it holds a valid port
 * number, else EPMD_DEFAULT_PORT. */
uint16_t epmd_default_port(void);

/* A live registration: the kept-open ALIVE2 connection plus what was
 * registered, so it can be re-registered.  Opaque. */
typedef struct epmd_registration epmd_registration_t;

/* epmd_client_register sends ALIVE2 for *node (node->name, port, type,
 * versions, extra) and, when accepted, returns the open registration in
 * *out (owned by the caller; epmd_registration_close ends it) and the
 * creation in *creation.  EPMD_EREFUSED when epmd answered with an error
 * (name taken, bad name); EPMD_ECONNREFUSED/ETIMEDOUT/EIO/EPROTO otherwise.
 * The connection must never carry another byte: epmd unregisters on any. */
EPMD_MUST_CHECK int epmd_client_register(const epmd_client_opts_t *opts,
                                         const epmd_node_info_t *node, uint32_t *creation,
                                         epmd_registration_t **out);

/* epmd_registration_creation returns the creation of the last successful
 * ALIVE2 of reg. */
uint32_t epmd_registration_creation(const epmd_registration_t *reg);

/* epmd_registration_fd returns the registration socket so a caller can
 * watch it for closure in its own event loop (readable == gone); -1 when
 * the registration is closed. */
int epmd_registration_fd(const epmd_registration_t *reg);

/* epmd_registration_alive checks without blocking whether the epmd still
 * holds the registration connection open.  False once the peer closed it,
 * reset it or sent anything (which epmd never does). */
bool epmd_registration_alive(epmd_registration_t *reg);

/* epmd_client_reregister closes reg's old connection (if still open) and
 * sends the same ALIVE2 again, up to attempts times with delay_ms between
 * tries: right after an epmd restart the old name can still be taken until
 * that epmd notices the old socket closing, so EREFUSED is retried too.
 * On success reg holds the new connection and *creation the new creation;
 * otherwise returns the last error and reg stays closed.  Blocks up to
 * attempts * (timeout + delay_ms). */
EPMD_MUST_CHECK int epmd_client_reregister(epmd_registration_t *reg, int attempts, int delay_ms,
                                           uint32_t *creation);

/* epmd_registration_close closes the connection (which unregisters the
 * name) and frees reg.  NULL is fine. */
void epmd_registration_close(epmd_registration_t *reg);

/* epmd_client_port_please asks for the node named name (name part only,
 * "b", not "b@host") and fills *info.  EPMD_ENOTFOUND when not registered;
 * EPMD_EINVAL for an empty or over-long name. */
EPMD_MUST_CHECK int epmd_client_port_please(const epmd_client_opts_t *opts, const char *name,
                                            epmd_node_info_t *info);

/* epmd_client_names lists the registered names; *out is freed with
 * epmd_names_free.  When raw is non-NULL, the unparsed text after the
 * port prefix is also returned in *raw (malloc'd, NUL-terminated, caller
 * frees) with its length in *raw_len, for printing like `epmd -names`. */
EPMD_MUST_CHECK int epmd_client_names(const epmd_client_opts_t *opts, epmd_names_t *out, char **raw,
                                      size_t *raw_len);

/* epmd_client_dump sends DUMP_REQ (local epmd only) and returns the raw
 * answer text after the port prefix in *raw (malloc'd, NUL-terminated;
 * entries are separated by NUL bytes, so use *raw_len). */
EPMD_MUST_CHECK int epmd_client_dump(const epmd_client_opts_t *opts, uint32_t *epmd_port,
                                     char **raw, size_t *raw_len);

/* epmd_client_kill sends KILL_REQ: 0 when epmd answered "OK" (it exits),
 * EPMD_ENOTALLOWED for "NO" (live nodes and no -relaxed_command_check),
 * EPMD_EPROTO for anything else. */
EPMD_MUST_CHECK int epmd_client_kill(const epmd_client_opts_t *opts);

/* epmd_client_stop sends STOP_REQ for name and copies the raw answer
 * ("STOPPED", or "NOEXISTSTOPPED" from OTP-compatible servers) into
 * answer[0..answer_size) NUL-terminated.  An epmd without
 * -relaxed_command_check closes silently: EPMD_EIO with an empty answer.
 * (Every request closed without any answer byte gives EPMD_EIO.) */
EPMD_MUST_CHECK int epmd_client_stop(const epmd_client_opts_t *opts, const char *name, char *answer,
                                     size_t answer_size);

/* epmd_client_probe reports whether an epmd answers at opts: 0 when a
 * NAMES request is answered with the 4-byte port prefix, else the error. */
EPMD_MUST_CHECK int epmd_client_probe(const epmd_client_opts_t *opts);

/* ---- server (inside a caller's libevent loop) ---------------------------- */

struct event_base;
typedef struct epmd_server epmd_server_t;

/* Server configuration; zero-initialise and set what you need. */
typedef struct epmd_server_config {
    uint16_t port;              /* 0: epmd_default_port() */
    const char *addresses;      /* NULL: any address (IPv4 + IPv6); else a
                                   comma/space list, loopback always added */
    bool relaxed_command_check; /* allow KILL with live nodes, and STOP */
    unsigned packet_timeout_s;  /* 0: EPMD_CLOSE_TIMEOUT_S */
    unsigned max_connections;   /* 0: min(EPMD_DEFAULT_MAX_CONNECTIONS,
                                   RLIMIT_NOFILE - reserve) */
    int debug;                  /* 0 quiet; >= 1 log through log_fn; debug
                                   mode also keeps only 5 old names, as OTP */
    /* epmd(1)'s "busy server" test options, in seconds (0: off).
     * delay_accept_s: a pending connection is accepted delay_accept_s
     * seconds after the listener reported it, one connection per delay,
     * as OTP's epmd sleeps before each accept.  delay_write_s: every
     * answer goes out delay_write_s seconds after its request was handled
     * (a registration is made at once; its ALIVE2 answer waits), out of
     * reach of the packet timeout, as OTP sleeps before writing.
     * Deliberate differences: OTP's epmd sleep()s in its only thread, so
     * while it sleeps it serves nothing, and its -delay_accept sleeps after
     * every select() wake-up (a request whose bytes arrive after its accept
     * waits twice); here both are timers: the loop, which may be a node's
     * own with its keeper in it, keeps running, requests handled together
     * are answered together, closed registrations are still noticed, and
     * only the accept is delayed.  OTP sleeps before each write() of an
     * answer (NAMES: one per line); here an answer is one write, delayed
     * once. */
    unsigned delay_accept_s;
    unsigned delay_write_s;
    void (*log_fn)(void *ud, const char *msg); /* NULL: no logging */
    /* Called (from the loop) after KILL was answered "OK".  NULL: the
     * server stops itself and the loop keeps running. */
    void (*on_kill)(void *kill_ud);
    void *ud;      /* passed to log_fn */
    void *kill_ud; /* passed to on_kill */
} epmd_server_config_t;

/* Counters, for tests and girder's metrics. */
typedef struct epmd_server_stats {
    unsigned connections;        /* open client connections now */
    unsigned registered;         /* live registrations now */
    uint64_t accepted;           /* connections accepted so far */
    uint64_t requests;           /* complete requests handled */
    uint64_t answered_at_accept; /* of those, complete when accepted and answered
                                    without waiting for a read event */
    uint64_t evicted;            /* idle connections closed to make room */
    uint64_t timed_out;          /* connections closed by packet_timeout */
    uint64_t accept_errors;      /* EMFILE/ENFILE/ENOBUFS from accept() */
} epmd_server_stats_t;

/* epmd_server_start binds the listening sockets and serves requests from
 * base's loop (single-threaded; the caller runs the loop).  Returns
 * EPMD_EADDRINUSE when the port is taken on the primary address (another
 * epmd runs: use it), EPMD_EINVAL for a bad address list.  *out is owned
 * by the caller and released with epmd_server_stop. */
EPMD_MUST_CHECK int epmd_server_start(struct event_base *base, const epmd_server_config_t *cfg,
                                      epmd_server_t **out);

/* epmd_server_stop closes every connection (which unregisters every node)
 * and the listeners, and frees srv.  Call it from outside the server's
 * own callbacks (e.g. from on_kill it is fine: that runs deferred).
 * NULL is fine. */
void epmd_server_stop(epmd_server_t *srv);

/* epmd_server_port returns the port srv listens on (useful with port 0
 * ERL_EPMD_PORT lookups and for tests). */
uint16_t epmd_server_port(const epmd_server_t *srv);

/* epmd_server_get_stats copies srv's counters into *st. */
void epmd_server_get_stats(const epmd_server_t *srv, epmd_server_stats_t *st);

/* epmd_server_run is the standalone daemon (`girder epmd`): it creates a
 * loop, binds (EPMD_EADDRINUSE when another epmd holds the port) and serves
 * until a KILL is answered "OK", then returns 0.  With daemonize it detaches
 * after binding, so the port answers once the parent returns: the parent
 * gets 0 with *daemon_parent set and should exit; the daemon runs on with
 * its standard streams on /dev/null.  cfg->on_kill is ignored. */
EPMD_MUST_CHECK int epmd_server_run(const epmd_server_config_t *cfg, bool daemonize,
                                    bool *daemon_parent);

/* ---- keeping a node registered from a libevent loop --------------------- */

typedef struct epmd_keeper epmd_keeper_t;

/* What epmd_keeper_start keeps registered, and how. */
typedef struct epmd_keeper_config {
    epmd_node_info_t node;         /* what to register */
    uint16_t epmd_port;            /* 0: epmd_default_port(); always loopback */
    int timeout_ms;                /* per attempt (0: 2000) */
    int retry_delay_ms;            /* between attempts (0: 200) */
    bool embedded_fallback;        /* start an embedded server in the loop when
                                      no epmd answers on the port */
    epmd_server_config_t embedded; /* its configuration (port is forced) */
    /* Called from the loop on every change: registered (err == 0, with the
     * creation), or lost/failed attempt (err < 0).  May be NULL. */
    void (*on_change)(void *ud, int err, uint32_t creation);
    void *ud;
} epmd_keeper_config_t;

/* epmd_keeper_start registers cfg->node asynchronously from base's loop
 * and keeps it registered: when the registration connection closes (the
 * epmd was stopped or replaced, e.g. an embedded one by the system epmd)
 * it retries every retry_delay_ms, and with embedded_fallback starts an
 * embedded server when nothing answers.  Never blocks the loop, so it can
 * register with an embedded server running in the same loop.  *out is
 * released with epmd_keeper_stop. */
EPMD_MUST_CHECK int epmd_keeper_start(struct event_base *base, const epmd_keeper_config_t *cfg,
                                      epmd_keeper_t **out);

/* epmd_keeper_creation returns the creation of the current registration
 * and true, or false while not registered. */
bool epmd_keeper_creation(const epmd_keeper_t *k, uint32_t *creation);

/* epmd_keeper_embedded returns the embedded server the keeper started, or
 * NULL when it registered with an outside epmd. */
epmd_server_t *epmd_keeper_embedded(const epmd_keeper_t *k);

/* epmd_keeper_stop unregisters (closes the connection), stops an
 * embedded server it started and frees k.  Not from inside on_change. */
void epmd_keeper_stop(epmd_keeper_t *k);

#endif
