/*
 * tls.c — TLS distribution (OTP's `-proto_dist inet_tls`): the options of
 * `-ssl_dist_optfile` / `-ssl_dist_opt`, the OpenSSL contexts they make,
 * and the OpenSSL bufferevent of one connection.
 *
 * What OTP 25's lib/ssl/src/inet_tls_dist.erl does, and girder with it:
 *   - TLS from the first byte on the distribution port; EPMD stays plain;
 *   - inside TLS the handshake messages carry 4-byte lengths ({packet, 4}
 *     from the start, protocol.md 6), then the usual 4-byte frames;
 *   - the client sends the host part of the node name it dials as SNI and,
 *     with verify_peer, checks the server certificate against that host
 *     ({server_name_indication, disable | Host} changes both);
 *   - versions default to TLS 1.2 only in OTP 25 (dist_defaults); girder
 *     offers 1.2 and 1.3 unless `versions` says otherwise — an OTP 25 peer
 *     then settles on 1.2, two girder nodes on 1.3;
 *   - the optfile is one Erlang term [{server, Opts}, {client, Opts}];
 *     without verify the OTP default is verify_none, which girder follows
 *     but reports as a warning when the node starts.
 * The file is read with etf/'s text parser, so strings, binaries, comments
 * and quoted atoms are read as erl_scan reads them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"

/* An optfile larger than this is not a configuration file. */
#define TLS_OPTFILE_MAX ((size_t)1 << 20)
/* Longest string option (a path, a password, a cipher list). */
#define TLS_STRING_MAX 4096

/* Formats a one-line error into err (which may be NULL).  The reasons
 * quote paths, keys and atoms from the file or the command line, which may
 * hold control characters: those print as '?', so the line stays one. */
static int fail(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        for (char *p = err; *p != 0; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    return GD_EINVAL;
}

/* ---- reading option values ---- */

static bool atom_is(term_t t, const char *text)
{
    if (!term_is_atom(t))
        return false;
    size_t len;
    const char *s = heap_atom_text(t, &len);
    return len == strlen(text) && memcmp(s, text, len) == 0;
}

/* An atom's text for "%.*s" (atom text is not NUL-terminated). */
#define ATOM_ARG(t) atom_len(t), atom_text(t)
static int atom_len(term_t t)
{
    size_t len = 1;
    if (term_is_atom(t))
        (void)heap_atom_text(t, &len);
    return (int)len;
}
static const char *atom_text(term_t t)
{
    size_t len;
    return term_is_atom(t) ? heap_atom_text(t, &len) : "?";
}

/* Appends code point cp as UTF-8; false when it is not a character. */
static bool put_utf8(char *out, size_t *len, uint64_t cp)
{
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || *len + 4 >= TLS_STRING_MAX)
        return false;
    size_t n = *len;
    if (cp < 0x80) {
        out[n++] = (char)cp;
    } else if (cp < 0x800) {
        out[n++] = (char)(0xC0 | cp >> 6);
        out[n++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[n++] = (char)(0xE0 | cp >> 12);
        out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[n++] = (char)(0xF0 | cp >> 18);
        out[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    }
    *len = n;
    return true;
}

/* A string value as ssl takes it: a (unicode) charlist or a binary, no NUL,
 * non-empty, at most TLS_STRING_MAX bytes.  *out is malloc'ed. */
static int term_string(term_t t, char **out)
{
    char buf[TLS_STRING_MAX];
    size_t len = 0;
    if (term_is_binary(t)) {
        heap_bin_view_t v;
        heap_bin_view(t, &v);
        len = v.bit_size / 8;
        if (len >= TLS_STRING_MAX || memchr(v.bytes, 0, len) != NULL)
            return GD_EBADARG;
        memcpy(buf, v.bytes, len);
    } else {
        for (; term_is_list(t); t = term_cdr(t)) {
            term_t c = term_car(t);
            if (!term_is_small(c) || term_small_value(c) < 0 ||
                !put_utf8(buf, &len, (uint64_t)term_small_value(c)))
                return GD_EBADARG;
        }
        if (!term_is_nil(t))
            return GD_EBADARG;
    }
    if (len == 0)
        return GD_EBADARG;
    buf[len] = 0;
    char *s = strdup(buf);
    if (s == NULL)
        return GD_ENOMEM;
    *out = s;
    return 0;
}

static int term_bool(term_t t, bool *out)
{
    if (atom_is(t, "true"))
        *out = true;
    else if (atom_is(t, "false"))
        *out = false;
    else
        return GD_EBADARG;
    return 0;
}

static int version_code(term_t t)
{
    if (atom_is(t, "tlsv1.2"))
        return TLS1_2_VERSION;
    if (atom_is(t, "tlsv1.3"))
        return TLS1_3_VERSION;
    return 0;
}

/* ---- one option ---- */

/* Options accepted and deliberately ignored, with why:
 *   secure_renegotiate — OpenSSL always does RFC 5746 secure renegotiation
 *     and girder never renegotiates;
 *   reuse_sessions — a distribution connection lives long, so resumption
 *     buys nothing; OpenSSL's server cache stays on;
 *   hibernate_after — an Erlang process setting, girder has no TLS process;
 *   honor_cipher_order — OpenSSL's server preference is set anyway. */
static bool harmless(term_t key)
{
    return atom_is(key, "secure_renegotiate") || atom_is(key, "reuse_sessions") ||
           atom_is(key, "hibernate_after") || atom_is(key, "honor_cipher_order");
}

static int set_string(char **slot, term_t value)
{
    char *s = NULL;
    int rc = term_string(value, &s);
    if (rc < 0)
        return rc;
    free(*slot);
    *slot = s;
    return 0;
}

/* Applies {key, value} to side; GD_EBADARG for a bad value, GD_EINVAL
 * (with err set) for an option girder does not know or support. */
static int side_set(cluster_tls_side_t *side, bool server, term_t key, term_t value, char *err,
                    size_t err_size)
{
    const char *role = server ? "server" : "client";
    if (atom_is(key, "certfile"))
        return set_string(&side->certfile, value);
    if (atom_is(key, "keyfile"))
        return set_string(&side->keyfile, value);
    if (atom_is(key, "cacertfile"))
        return set_string(&side->cacertfile, value);
    if (atom_is(key, "password"))
        return set_string(&side->password, value);
    if (atom_is(key, "ciphers")) {
        /* Only OpenSSL's cipher string form; ssl's list-of-maps form names
         * Erlang's suites. */
        return set_string(&side->ciphers, value);
    }
    if (atom_is(key, "verify")) {
        if (atom_is(value, "verify_peer"))
            side->verify = CLUSTER_TLS_VERIFY_PEER;
        else if (atom_is(value, "verify_none"))
            side->verify = CLUSTER_TLS_VERIFY_NONE;
        else
            return GD_EBADARG;
        return 0;
    }
    if (atom_is(key, "depth")) {
        if (!term_is_small(value) || term_small_value(value) < 0 || term_small_value(value) > 100)
            return GD_EBADARG;
        side->depth = (int)term_small_value(value);
        return 0;
    }
    if (atom_is(key, "versions")) {
        int lo = 0, hi = 0;
        term_t l = value;
        for (; term_is_list(l); l = term_cdr(l)) {
            int v = version_code(term_car(l));
            if (v == 0)
                return fail(err, err_size,
                            "%s option versions: only 'tlsv1.2' and 'tlsv1.3' are supported", role);
            lo = lo == 0 || v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (!term_is_nil(l) || lo == 0)
            return GD_EBADARG;
        side->min_version = lo;
        side->max_version = hi;
        return 0;
    }
    if (atom_is(key, "crl_check")) {
        bool on;
        if (term_bool(value, &on) == 0 && !on)
            return 0;
        return fail(err, err_size, "%s option crl_check: only false is supported", role);
    }
    if (server && atom_is(key, "fail_if_no_peer_cert"))
        return term_bool(value, &side->fail_if_no_peer_cert);
    if (server && atom_is(key, "dhfile"))
        return set_string(&side->dhfile, value);
    if (!server && atom_is(key, "server_name_indication")) {
        if (atom_is(value, "disable")) {
            side->sni_disable = true;
            return 0;
        }
        side->sni_disable = false;
        return set_string(&side->sni, value);
    }
    if (harmless(key))
        return 0;
    if (atom_is(key, "verify_fun") || atom_is(key, "crl_cache"))
        return fail(err, err_size, "%s option %.*s names Erlang code: not supported by girder",
                    role, ATOM_ARG(key));
    return fail(err, err_size, "unknown %s option '%.*s'", role, ATOM_ARG(key));
}

/* Applies side_set and words a bad value. */
static int apply(cluster_tls_side_t *side, bool server, term_t key, term_t value, char *err,
                 size_t err_size)
{
    int rc = side_set(side, server, key, value, err, err_size);
    if (rc == GD_EBADARG)
        return fail(err, err_size, "%s option %.*s: bad value", server ? "server" : "client",
                    ATOM_ARG(key));
    return rc;
}

static int apply_list(cluster_tls_side_t *side, bool server, term_t opts, char *err,
                      size_t err_size)
{
    for (; term_is_list(opts); opts = term_cdr(opts)) {
        term_t o = term_car(opts);
        if (!term_is_tuple(o) || term_tuple_arity(o) != 2 || !term_is_atom(term_tuple_elems(o)[0]))
            return fail(err, err_size, "%s options: every element must be {Key, Value}",
                        server ? "server" : "client");
        int rc = apply(side, server, term_tuple_elems(o)[0], term_tuple_elems(o)[1], err, err_size);
        if (rc < 0)
            return rc;
    }
    if (!term_is_nil(opts))
        return fail(err, err_size, "%s options: not a proper list", server ? "server" : "client");
    return 0;
}

/* ---- the configuration ---- */

void cluster_tls_conf_init(cluster_tls_conf_t *conf)
{
    memset(conf, 0, sizeof *conf);
    conf->server.depth = -1;
    conf->client.depth = -1;
}

static void side_free(cluster_tls_side_t *s)
{
    free(s->certfile);
    free(s->keyfile);
    free(s->cacertfile);
    free(s->password);
    free(s->ciphers);
    free(s->dhfile);
    free(s->sni);
}

void cluster_tls_conf_free(cluster_tls_conf_t *conf)
{
    side_free(&conf->server);
    side_free(&conf->client);
    cluster_tls_conf_init(conf);
}

static int conf_from_term(cluster_tls_conf_t *conf, term_t t, char *err, size_t err_size)
{
    for (; term_is_list(t); t = term_cdr(t)) {
        term_t e = term_car(t);
        if (!term_is_tuple(e) || term_tuple_arity(e) != 2)
            return fail(err, err_size, "expected [{server, Opts}, {client, Opts}]");
        term_t role = term_tuple_elems(e)[0];
        bool server = atom_is(role, "server");
        if (!server && !atom_is(role, "client"))
            return fail(err, err_size, "unknown section '%.*s' (expected server or client)",
                        term_is_atom(role) ? atom_len(role) : 13,
                        term_is_atom(role) ? atom_text(role) : "(not an atom)");
        int rc = apply_list(server ? &conf->server : &conf->client, server, term_tuple_elems(e)[1],
                            err, err_size);
        if (rc < 0)
            return rc;
    }
    if (!term_is_nil(t))
        return fail(err, err_size, "expected [{server, Opts}, {client, Opts}]");
    return 0;
}

int cluster_tls_conf_parse(cluster_tls_conf_t *conf, const char *text, size_t len, char *err,
                           size_t err_size)
{
    heap_t h;
    if (heap_init(&h, 0) != 0)
        return fail(err, err_size, "out of memory");
    term_t t;
    etf_error_t perr = {0};
    int rc = etf_parse(&h, text, len, &t, &perr);
    if (rc == ETF_EPARSE)
        rc = fail(err, err_size, "syntax error at byte %zu", (size_t)perr.offset);
    else if (rc < 0)
        rc = fail(err, err_size, "cannot read the term: %s", etf_strerror(rc));
    else
        rc = conf_from_term(conf, t, err, err_size);
    heap_destroy(&h);
    return rc;
}

int cluster_tls_conf_load(cluster_tls_conf_t *conf, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(err, err_size, "cannot open %s", path);
    char *text = malloc(TLS_OPTFILE_MAX + 1);
    size_t len = text == NULL ? 0 : fread(text, 1, TLS_OPTFILE_MAX + 1, f);
    bool read_err = ferror(f) != 0;
    fclose(f);
    int rc;
    if (text == NULL)
        rc = fail(err, err_size, "out of memory");
    else if (read_err)
        rc = fail(err, err_size, "cannot read %s", path);
    else if (len > TLS_OPTFILE_MAX)
        rc = fail(err, err_size, "%s: larger than %zu bytes", path, TLS_OPTFILE_MAX);
    else {
        char inner[256] = "";
        rc = cluster_tls_conf_parse(conf, text, len, inner, sizeof inner);
        if (rc < 0)
            fail(err, err_size, "%s: %s", path, inner);
    }
    free(text);
    return rc;
}

/* OTP's -ssl_dist_opt converters (inet_tls_dist:ssl_option/2): which keys
 * the flag form takes and whether the value is a string, an atom or an
 * integer. */
enum flag_kind { FLAG_STRING, FLAG_ATOM, FLAG_INTEGER };

static bool flag_kind(bool server, const char *opt, enum flag_kind *kind)
{
    static const struct {
        const char *name;
        enum flag_kind kind;
        bool server_only;
    } table[] = {
        {"certfile", FLAG_STRING, false},
        {"cacertfile", FLAG_STRING, false},
        {"keyfile", FLAG_STRING, false},
        {"password", FLAG_STRING, false},
        {"ciphers", FLAG_STRING, false},
        {"verify", FLAG_ATOM, false},
        {"crl_check", FLAG_ATOM, false},
        {"reuse_sessions", FLAG_ATOM, false},
        {"secure_renegotiate", FLAG_ATOM, false},
        {"depth", FLAG_INTEGER, false},
        {"hibernate_after", FLAG_INTEGER, false},
        {"dhfile", FLAG_STRING, true},
        {"fail_if_no_peer_cert", FLAG_ATOM, true},
        /* Known to OTP, refused by side_set with the reason. */
        {"verify_fun", FLAG_STRING, false},
        {"crl_cache", FLAG_STRING, false},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(opt, table[i].name) == 0 && (server || !table[i].server_only)) {
            *kind = table[i].kind;
            return true;
        }
    return false;
}

int cluster_tls_conf_opt(cluster_tls_conf_t *conf, const char *key, const char *value, char *err,
                         size_t err_size)
{
    bool server = strncmp(key, "server_", 7) == 0;
    if (!server && strncmp(key, "client_", 7) != 0)
        return fail(err, err_size, "-ssl_dist_opt %s: the key must start with server_ or client_",
                    key);
    const char *opt = key + 7;
    enum flag_kind kind;
    if (!flag_kind(server, opt, &kind))
        return fail(err, err_size, "-ssl_dist_opt: unknown option '%s'", key);
    heap_t h;
    if (heap_init(&h, 0) != 0)
        return fail(err, err_size, "out of memory");
    term_t k, v;
    int rc = heap_atom_put(opt, strlen(opt), &k);
    if (rc == 0 && kind == FLAG_STRING) {
        rc = heap_make_binary(&h, value, strlen(value), &v);
    } else if (rc == 0 && kind == FLAG_ATOM) {
        rc = heap_atom_put(value, strlen(value), &v);
    } else if (rc == 0) {
        char *end = NULL;
        long n = strtol(value, &end, 10);
        if (value[0] == 0 || *end != 0 || n < 0 || n > 1000000)
            rc = GD_EBADARG;
        else
            v = term_make_small(n);
    }
    if (rc == 0)
        rc = side_set(server ? &conf->server : &conf->client, server, k, v, err, err_size);
    if (rc < 0 && rc != GD_EINVAL)
        rc = fail(err, err_size, "-ssl_dist_opt %s: bad value '%s'", key, value);
    heap_destroy(&h);
    return rc;
}

/* ---- OpenSSL contexts ---- */

struct cluster_tls {
    SSL_CTX *server;
    SSL_CTX *client;
    bool client_verify;
    bool client_sni_disable;
    char *client_sni;
};

/* The first error on OpenSSL's queue, as text (the queue is cleared). */
static const char *ssl_error_text(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, size, "unknown error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

static int password_cb(char *buf, int size, int rwflag, void *ud)
{
    (void)rwflag;
    const char *pw = ud;
    if (pw == NULL)
        return -1;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pw, n);
    return (int)n;
}

static int load_dh(SSL_CTX *ctx, const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL)
        return -1;
    EVP_PKEY *dh = PEM_read_bio_Parameters(bio, NULL);
    BIO_free(bio);
    if (dh == NULL)
        return -1;
    if (SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
        EVP_PKEY_free(dh);
        return -1;
    }
    return 0;
}

/* Builds one side's context; every file is read now, so a bad one stops
 * the node at start with the file's name. */
static int ctx_new(const cluster_tls_side_t *s, bool server, SSL_CTX **out, char *err,
                   size_t err_size)
{
    const char *role = server ? "server" : "client";
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return fail(err, err_size, "%s: %s", role, ssl_error_text(why, sizeof why));
    int rc = GD_EINVAL;
    if (SSL_CTX_set_min_proto_version(ctx, s->min_version ? s->min_version : TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, s->max_version ? s->max_version : TLS1_3_VERSION) != 1) {
        fail(err, err_size, "%s versions: %s", role, ssl_error_text(why, sizeof why));
        goto free_ctx;
    }
    if (server && s->certfile == NULL) {
        fail(err, err_size, "server: no certfile (a TLS node needs a certificate)");
        goto free_ctx;
    }
    /* Always our callback: without a password OpenSSL's default would
     * prompt on the terminal of a node that may be a daemon. */
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, s->password);
    if (s->certfile != NULL) {
        /* ssl's default: the key is in the certificate file. */
        const char *keyfile = s->keyfile != NULL ? s->keyfile : s->certfile;
        if (SSL_CTX_use_certificate_chain_file(ctx, s->certfile) != 1) {
            fail(err, err_size, "%s certfile %s: %s", role, s->certfile,
                 ssl_error_text(why, sizeof why));
            goto free_ctx;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
            fail(err, err_size, "%s keyfile %s: %s", role, keyfile,
                 ssl_error_text(why, sizeof why));
            goto free_ctx;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            fail(err, err_size, "%s keyfile %s does not match certfile %s", role, keyfile,
                 s->certfile);
            goto free_ctx;
        }
    } else if (s->keyfile != NULL) {
        fail(err, err_size, "%s: keyfile without certfile", role);
        goto free_ctx;
    }
    /* The password is needed only while the key is read. */
    SSL_CTX_set_default_passwd_cb(ctx, NULL);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (s->cacertfile != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, s->cacertfile, NULL) != 1) {
            fail(err, err_size, "%s cacertfile %s: %s", role, s->cacertfile,
                 ssl_error_text(why, sizeof why));
            goto free_ctx;
        }
    } else if (s->verify == CLUSTER_TLS_VERIFY_PEER && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        fail(err, err_size, "%s: no cacertfile and no system CA store", role);
        goto free_ctx;
    }
    if (s->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, s->ciphers) != 1) {
        fail(err, err_size, "%s ciphers \"%s\": no cipher OpenSSL knows", role, s->ciphers);
        goto free_ctx;
    }
    if (s->dhfile != NULL && load_dh(ctx, s->dhfile) != 0) {
        fail(err, err_size, "server dhfile %s: %s", s->dhfile, ssl_error_text(why, sizeof why));
        goto free_ctx;
    }
    int mode = SSL_VERIFY_NONE;
    if (s->verify == CLUSTER_TLS_VERIFY_PEER)
        mode = SSL_VERIFY_PEER |
               (server && s->fail_if_no_peer_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx, mode, NULL);
    /* ssl's default depth is 10 (OpenSSL's 100). */
    SSL_CTX_set_verify_depth(ctx, s->depth >= 0 ? s->depth : 10);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* OTP (and a killed peer) may close without close_notify; OpenSSL 3
     * calls that an error, which libevent 2.1 does not know as a dirty
     * shutdown.  Frames carry their own lengths, so a truncation cannot
     * pass for a message: treat it as the EOF it is. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    *out = ctx;
    return 0;
free_ctx:
    SSL_CTX_free(ctx);
    return rc;
}

int cluster_tls_new(const cluster_tls_conf_t *conf, cluster_tls_t **out, char *err, size_t err_size)
{
    cluster_tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return fail(err, err_size, "out of memory");
    int rc = ctx_new(&conf->server, true, &t->server, err, err_size);
    if (rc == 0)
        rc = ctx_new(&conf->client, false, &t->client, err, err_size);
    if (rc == 0 && conf->client.sni != NULL && (t->client_sni = strdup(conf->client.sni)) == NULL)
        rc = fail(err, err_size, "out of memory");
    if (rc < 0) {
        cluster_tls_free(t);
        return rc;
    }
    t->client_verify = conf->client.verify == CLUSTER_TLS_VERIFY_PEER;
    t->client_sni_disable = conf->client.sni_disable;
    *out = t;
    return 0;
}

void cluster_tls_free(cluster_tls_t *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->server);
    SSL_CTX_free(tls->client);
    free(tls->client_sni);
    free(tls);
}

const char *cluster_tls_weakness(const cluster_tls_conf_t *conf)
{
    if (conf->server.verify != CLUSTER_TLS_VERIFY_PEER)
        return "the server side does not verify peers (no {verify, verify_peer}): any "
               "certificate, or none, may connect";
    if (!conf->server.fail_if_no_peer_cert)
        return "the server side lets peers without a certificate in (no "
               "{fail_if_no_peer_cert, true})";
    if (conf->client.verify != CLUSTER_TLS_VERIFY_PEER)
        return "the client side does not verify the nodes it connects to (no "
               "{verify, verify_peer})";
    return NULL;
}

/* ---- connections ---- */

/* The client's peer check: SNI and host name as OTP's client sets them
 * (the host part of the node name dialled, or the configured one). */
static int client_setup(const cluster_tls_t *tls, SSL *ssl, const char *peer_host)
{
    if (tls->client_sni_disable)
        return 0;
    const char *host = tls->client_sni != NULL ? tls->client_sni : peer_host;
    if (host == NULL || host[0] == 0)
        return 0;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    /* RFC 6066: SNI carries DNS names only. */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1)
        return -1;
    if (!tls->client_verify)
        return 0;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                   : X509_VERIFY_PARAM_set1_host(param, host, 0);
    return ok == 1 ? 0 : -1;
}

struct bufferevent *cluster_tls_bev_new(const cluster_tls_t *tls, struct event_base *base, int fd,
                                        bool server, const char *peer_host, int options)
{
    SSL *ssl = SSL_new(server ? tls->server : tls->client);
    if (ssl == NULL)
        return NULL;
    if (!server && client_setup(tls, ssl, peer_host) != 0) {
        SSL_free(ssl);
        return NULL;
    }
    /* libevent 2.1 may or may not have closed the socket and freed ssl
     * when it fails (it depends on which allocation failed), so it gets a
     * duplicate of fd: the caller's fd is never closed twice, and at
     * worst an out-of-memory failure leaks the duplicate and ssl.  On
     * success the bufferevent owns both (BEV_OPT_CLOSE_ON_FREE). */
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, own, ssl, server ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING, options);
    if (bev == NULL)
        return NULL;
    close(fd);
    /* A peer that closes without close_notify (kill -9, OTP's own close)
     * ends the connection as an EOF, not as an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

size_t cluster_tls_write_direct(struct bufferevent *bev, const uint8_t *p, size_t n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl == NULL || n == 0 || n > CLUSTER_TLS_DIRECT_MAX)
        return 0;
    int r = SSL_write(ssl, p, (int)n);
    if (r > 0)
        return (size_t)r;
    /* WANT_WRITE / WANT_READ: libevent retries from the output buffer.
     * Any other failure: its retry fails too and reports it on the loop.
     * Either way this thread's error queue is left empty. */
    ERR_clear_error();
    return 0;
}

/* " with ADDR:PORT" of the socket's peer, or "" when unknown. */
static void peer_address(int fd, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    buf[0] = 0;
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        snprintf(buf, size, " with %s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        snprintf(buf, size, " with [%s]:%u", host, ntohs(sin6->sin6_port));
    }
}

void cluster_tls_describe(struct bufferevent *bev, bool handshaking, char *buf, size_t size)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = bufferevent_get_openssl_error(bev);
    char reason[256] = "", from[80];
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    while (bufferevent_get_openssl_error(bev) != 0) {
    }
    peer_address(bufferevent_getfd(bev), from, sizeof from);
    /* What a plain-TCP distribution peer's first bytes (a 2-byte length,
     * 'N') look like to a TLS server. */
    bool not_tls = e != 0 && (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
                              ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG ||
                              ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST);
    if (handshaking && verify != X509_V_OK)
        snprintf(buf, size, "TLS handshake%s failed: peer certificate refused: %s", from,
                 X509_verify_cert_error_string(verify));
    else if (handshaking && not_tls)
        snprintf(buf, size, "TLS handshake%s failed: the peer does not speak TLS (%s)", from,
                 reason);
    else if (e != 0)
        snprintf(buf, size, "%s%s failed: %s", handshaking ? "TLS handshake" : "TLS connection",
                 from, reason);
    else if (handshaking && (ssl == NULL || !SSL_is_init_finished(ssl)))
        snprintf(buf, size, "TLS handshake%s failed: connection lost", from);
    else
        snprintf(buf, size, "%s%s%s", handshaking ? "connection" : "socket error", from,
                 handshaking ? " closed by peer" : "");
}

/* ---- the handshake's 4-byte framing inside TLS ---- */

int dist_hs_unframe4(const uint8_t *in, size_t len, uint8_t out[DIST_HS_MSG_MAX + 2],
                     size_t *out_len, size_t *in_used)
{
    size_t n;
    int rc = dist_frame_split(in, len, DIST_HS_MSG_MAX, &n);
    if (rc <= 0)
        return rc;
    put16(out, (uint16_t)n);
    memcpy(out + 2, in + 4, n);
    *out_len = n + 2;
    *in_used = n + 4;
    return 1;
}

size_t dist_hs_reframe4(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i + 2 <= len;) {
        size_t n = get16(in + i);
        if (i + 2 + n > len)
            break;
        put32(out + o, (uint32_t)n);
        memcpy(out + o + 4, in + i + 2, n);
        o += 4 + n;
        i += 2 + n;
    }
    return o;
}
