/*
 * test_tls_conf.c — cluster/tls.c without sockets: the -ssl_dist_optfile
 * reader (the file OTP's inet_tls_dist reads) and its malformed inputs,
 * the -ssl_dist_opt pairs, the OpenSSL contexts built from certificate
 * files made here (good, missing, mismatched, garbage), and the 4-byte
 * handshake framing used inside TLS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cluster.h"
#include "cunit_main.h"

static int parse(cluster_tls_conf_t *c, const char *text, char *err, size_t size)
{
    cluster_tls_conf_init(c);
    err[0] = 0;
    return cluster_tls_conf_parse(c, text, strlen(text), err, size);
}

static void test_full_file(void)
{
    cluster_tls_conf_t c;
    char err[256];
    const char *text =
        "%% as an OTP node reads it\n"
        "[{server, [{certfile, \"/etc/n.pem\"}, {keyfile, <<\"/etc/n.key\">>},\n"
        "           {cacertfile, \"/etc/ca-\\x{3bb}.pem\"}, {verify, verify_peer},\n"
        "           {fail_if_no_peer_cert, true}, {depth, 3}, {password, \"pw\"},\n"
        "           {versions, ['tlsv1.3', 'tlsv1.2']}, {secure_renegotiate, true},\n"
        "           {reuse_sessions, false}, {hibernate_after, 100},\n"
        "           {ciphers, \"ECDHE-RSA-AES128-GCM-SHA256\"}, {crl_check, false},\n"
        "           {dhfile, \"/etc/dh.pem\"}]},\n"
        " {client, [{certfile, \"/etc/c.pem\"}, {verify, verify_none},\n"
        "           {versions, ['tlsv1.2']}, {server_name_indication, \"other\"}]}].\n";
    CU_ASSERT_EQUAL_FATAL(parse(&c, text, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(c.server.certfile, "/etc/n.pem");
    CU_ASSERT_STRING_EQUAL(c.server.keyfile, "/etc/n.key");
    CU_ASSERT_STRING_EQUAL(c.server.cacertfile, "/etc/ca-\xce\xbb.pem");
    CU_ASSERT_STRING_EQUAL(c.server.password, "pw");
    CU_ASSERT_STRING_EQUAL(c.server.ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
    CU_ASSERT_STRING_EQUAL(c.server.dhfile, "/etc/dh.pem");
    CU_ASSERT_EQUAL(c.server.verify, CLUSTER_TLS_VERIFY_PEER);
    CU_ASSERT_TRUE(c.server.fail_if_no_peer_cert);
    CU_ASSERT_EQUAL(c.server.depth, 3);
    CU_ASSERT_EQUAL(c.server.min_version, TLS1_2_VERSION);
    CU_ASSERT_EQUAL(c.server.max_version, TLS1_3_VERSION);
    CU_ASSERT_STRING_EQUAL(c.client.certfile, "/etc/c.pem");
    CU_ASSERT_PTR_NULL(c.client.keyfile);
    CU_ASSERT_EQUAL(c.client.verify, CLUSTER_TLS_VERIFY_NONE);
    CU_ASSERT_EQUAL(c.client.depth, -1);
    CU_ASSERT_EQUAL(c.client.min_version, TLS1_2_VERSION);
    CU_ASSERT_EQUAL(c.client.max_version, TLS1_2_VERSION);
    CU_ASSERT_STRING_EQUAL(c.client.sni, "other");
    CU_ASSERT_FALSE(c.client.sni_disable);
    /* The client does not verify: the node must say so. */
    CU_ASSERT_PTR_NOT_NULL(cluster_tls_weakness(&c));
    cluster_tls_conf_free(&c);
    CU_ASSERT_PTR_NULL(c.server.certfile);
}

static void test_weakness(void)
{
    cluster_tls_conf_t c;
    char err[256];
    CU_ASSERT_EQUAL(parse(&c,
                          "[{server,[{verify,verify_peer},{fail_if_no_peer_cert,true}]},"
                          "{client,[{verify,verify_peer},{server_name_indication,disable}]}]",
                          err, sizeof err),
                    0);
    CU_ASSERT_PTR_NULL(cluster_tls_weakness(&c));
    CU_ASSERT_TRUE(c.client.sni_disable);
    cluster_tls_conf_free(&c);
    CU_ASSERT_EQUAL(parse(&c, "[{server,[{verify,verify_peer}]},{client,[{verify,verify_peer}]}]",
                          err, sizeof err),
                    0);
    CU_ASSERT_PTR_NOT_NULL(cluster_tls_weakness(&c)); /* no fail_if_no_peer_cert */
    cluster_tls_conf_free(&c);
    CU_ASSERT_EQUAL(parse(&c, "[]", err, sizeof err), 0); /* OTP's defaults: verify_none */
    CU_ASSERT_PTR_NOT_NULL(cluster_tls_weakness(&c));
    cluster_tls_conf_free(&c);
}

/* Each malformed file is refused with a one-line reason naming the
 * problem. */
static void test_malformed(void)
{
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"[{server, [{certfile, \"x\"}", "syntax error"},
        {"", "syntax error"},
        {"[{server, [{certfile, \"x\"}]}]. junk", "syntax error"},
        {"{server, []}", "expected [{server, Opts}, {client, Opts}]"},
        {"[{server, []} | x]", "expected [{server, Opts}, {client, Opts}]"},
        {"[server]", "expected [{server, Opts}, {client, Opts}]"},
        {"[{both, []}]", "unknown section 'both'"},
        {"[{\"server\", []}]", "unknown section '(not an atom)'"},
        {"[{server, [certfile]}]", "every element must be {Key, Value}"},
        {"[{server, [{certfile, \"a\", \"b\"}]}]", "every element must be {Key, Value}"},
        {"[{server, [{certfile, \"a\"} | x]}]", "not a proper list"},
        {"[{server, x}]", "not a proper list"},
        {"[{server, [{frobnicate, 1}]}]", "unknown server option 'frobnicate'"},
        {"[{server, [{'frob\\nnicate', 1}]}]", "unknown server option 'frob?nicate'"},
        {"[{client, [{fail_if_no_peer_cert, true}]}]", "unknown client option"},
        {"[{client, [{dhfile, \"d\"}]}]", "unknown client option 'dhfile'"},
        {"[{server, [{server_name_indication, disable}]}]", "unknown server option"},
        {"[{server, [{verify, maybe}]}]", "server option verify: bad value"},
        {"[{server, [{verify, \"verify_peer\"}]}]", "server option verify: bad value"},
        {"[{server, [{certfile, x}]}]", "server option certfile: bad value"},
        {"[{server, [{certfile, \"\"}]}]", "server option certfile: bad value"},
        {"[{server, [{certfile, [97, 0, 98]}]}]", "server option certfile: bad value"},
        {"[{server, [{certfile, [97 | 98]}]}]", "server option certfile: bad value"},
        {"[{server, [{certfile, [-1]}]}]", "server option certfile: bad value"},
        {"[{server, [{certfile, [16#110000]}]}]", "server option certfile: bad value"},
        {"[{server, [{keyfile, <<1:3>>}]}]", "server option keyfile: bad value"},
        {"[{server, [{fail_if_no_peer_cert, yes}]}]", "fail_if_no_peer_cert: bad value"},
        {"[{server, [{depth, -1}]}]", "server option depth: bad value"},
        {"[{server, [{depth, 1.5}]}]", "server option depth: bad value"},
        {"[{server, [{versions, ['tlsv1.1']}]}]", "only 'tlsv1.2' and 'tlsv1.3'"},
        {"[{server, [{versions, []}]}]", "server option versions: bad value"},
        {"[{server, [{crl_check, peer}]}]", "crl_check: only false is supported"},
        {"[{server, [{verify_fun, {m, f, s}}]}]", "verify_fun names Erlang code"},
        {"[{client, [{server_name_indication, 42}]}]", "server_name_indication: bad value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cluster_tls_conf_t c;
        char err[256];
        int rc = parse(&c, cases[i].text, err, sizeof err);
        if (rc != GD_EINVAL || strstr(err, cases[i].why) == NULL || strchr(err, '\n') != NULL)
            fprintf(stderr, "\ncase %zu (%s): rc %d, err '%s'\n", i, cases[i].text, rc, err);
        CU_ASSERT_EQUAL(rc, GD_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].why));
        cluster_tls_conf_free(&c);
    }
}

/* A long string option is refused rather than truncated. */
static void test_string_cap(void)
{
    size_t n = 5000;
    char *text = malloc(n + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    int off = sprintf(text, "[{server, [{certfile, \"");
    memset(text + off, 'a', n);
    strcpy(text + off + n, "\"}]}]");
    cluster_tls_conf_t c;
    char err[256];
    CU_ASSERT_EQUAL(parse(&c, text, err, sizeof err), GD_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "certfile: bad value"));
    cluster_tls_conf_free(&c);
    free(text);
}

static void test_flag_pairs(void)
{
    cluster_tls_conf_t c;
    char err[256];
    cluster_tls_conf_init(&c);
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "server_certfile", "/s.pem", err, sizeof err), 0);
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "client_certfile", "/c.pem", err, sizeof err), 0);
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "server_verify", "verify_peer", err, sizeof err), 0);
    CU_ASSERT_EQUAL(
        cluster_tls_conf_opt(&c, "server_fail_if_no_peer_cert", "true", err, sizeof err), 0);
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "client_depth", "7", err, sizeof err), 0);
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "client_secure_renegotiate", "true", err, sizeof err),
                    0);
    CU_ASSERT_STRING_EQUAL(c.server.certfile, "/s.pem");
    CU_ASSERT_STRING_EQUAL(c.client.certfile, "/c.pem");
    CU_ASSERT_EQUAL(c.server.verify, CLUSTER_TLS_VERIFY_PEER);
    CU_ASSERT_TRUE(c.server.fail_if_no_peer_cert);
    CU_ASSERT_EQUAL(c.client.depth, 7);
    /* A later pair replaces an earlier one. */
    CU_ASSERT_EQUAL(cluster_tls_conf_opt(&c, "server_certfile", "/t.pem", err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(c.server.certfile, "/t.pem");

    static const struct {
        const char *key, *value, *why;
    } bad[] = {
        {"certfile", "/x", "must start with server_ or client_"},
        {"server_frobnicate", "1", "unknown option 'server_frobnicate'"},
        {"client_dhfile", "/d", "unknown option 'client_dhfile'"},
        {"client_fail_if_no_peer_cert", "true", "unknown option"},
        {"server_versions", "tlsv1.3", "unknown option"}, /* not in OTP's flag form */
        {"server_depth", "x", "bad value 'x'"},
        {"server_depth", "", "bad value ''"},
        {"server_verify", "maybe", "bad value 'maybe'"},
        {"server_certfile", "", "bad value ''"},
        {"server_verify_fun", "{m,f,s}", "names Erlang code"},
        /* Quoted input cannot break the line. */
        {"bad\nkey", "x", "-ssl_dist_opt bad?key: the key must start"},
        {"server_verify", "a\nb", "bad value 'a?b'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = cluster_tls_conf_opt(&c, bad[i].key, bad[i].value, err, sizeof err);
        if (rc != GD_EINVAL || strstr(err, bad[i].why) == NULL)
            fprintf(stderr, "\npair %s %s: rc %d, err '%s'\n", bad[i].key, bad[i].value, rc, err);
        CU_ASSERT_EQUAL(rc, GD_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].why));
        CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    }
    cluster_tls_conf_free(&c);
}

/* ---- files ---- */

static char dir[48];

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static void write_file(const char *name, const char *text)
{
    char p[128];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* A key (encrypted with password unless NULL) and a self-signed
 * certificate (its own CA) as PEM files. */
static void make_cert(const char *key_name, const char *cert_name, const char *password)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(key);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    CU_ASSERT_FATAL(X509_sign(x, key, EVP_sha256()) > 0);
    char p[128];
    path_in(p, sizeof p, key_name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    PEM_write_PrivateKey(f, key, password ? EVP_aes_256_cbc() : NULL,
                         (const unsigned char *)password, password ? (int)strlen(password) : 0,
                         NULL, NULL);
    fclose(f);
    path_in(p, sizeof p, cert_name);
    f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Builds contexts from an optfile text with @ standing for the temp dir. */
static int build(const char *templ, char *err, size_t size)
{
    char text[2048];
    size_t o = 0;
    for (const char *s = templ; *s != 0 && o + 64 < sizeof text; s++)
        o += (size_t)(*s == '@' ? snprintf(text + o, sizeof text - o, "%s", dir)
                                : snprintf(text + o, sizeof text - o, "%c", *s));
    write_file("opt.conf", text);
    char p[128];
    path_in(p, sizeof p, "opt.conf");
    cluster_tls_conf_t c;
    cluster_tls_conf_init(&c);
    err[0] = 0;
    int rc = cluster_tls_conf_load(&c, p, err, size);
    cluster_tls_t *tls = NULL;
    if (rc == 0)
        rc = cluster_tls_new(&c, &tls, err, size);
    cluster_tls_conf_free(&c);
    cluster_tls_free(tls);
    return rc;
}

static void test_contexts(void)
{
    snprintf(dir, sizeof dir, "/tmp/gd_tls_conf_%d", (int)getpid());
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    make_cert("a.key", "a.pem", NULL);
    make_cert("b.key", "b.pem", NULL);
    make_cert("e.key", "e.pem", "sesame");
    write_file("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    char err[512];

    const char *good = "[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"},"
                       "{cacertfile,\"@/b.pem\"},{verify,verify_peer},"
                       "{fail_if_no_peer_cert,true}]},"
                       "{client,[{certfile,\"@/b.pem\"},{keyfile,\"@/b.key\"},"
                       "{cacertfile,\"@/a.pem\"},{verify,verify_peer}]}].";
    CU_ASSERT_EQUAL(build(good, err, sizeof err), 0);
    if (err[0])
        fprintf(stderr, "\n%s\n", err);
    /* An encrypted key opens with its password. */
    CU_ASSERT_EQUAL(build("[{server,[{certfile,\"@/e.pem\"},{keyfile,\"@/e.key\"},"
                          "{password,\"sesame\"}]}]",
                          err, sizeof err),
                    0);
    static const struct {
        const char *templ, *why;
    } bad[] = {
        {"[{server,[{certfile,\"@/none.pem\"}]}]", "server certfile "},
        {"[{server,[{certfile,\"@/garbage.pem\"}]}]", "garbage.pem"},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/b.key\"}]}]", "b.key: "},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/none.key\"}]}]", "none.key"},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"},{cacertfile,\"@/none\"}]}]",
         "cacertfile "},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"},{ciphers,\"NOPE\"}]}]",
         "no cipher OpenSSL knows"},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"},{dhfile,\"@/none\"}]}]",
         "server dhfile "},
        {"[{server,[{keyfile,\"@/a.key\"}]}]", "no certfile"},
        {"[{server,[{certfile,\"@/e.pem\"},{keyfile,\"@/e.key\"},{password,\"wrong\"}]}]",
         "e.key: "},
        {"[{server,[{certfile,\"@/e.pem\"},{keyfile,\"@/e.key\"}]}]", "e.key: "},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"}]},"
         "{client,[{certfile,\"@/none.pem\"}]}]",
         "client certfile "},
        {"[{server,[{certfile,\"@/a.pem\"},{keyfile,\"@/a.key\"}]},"
         "{client,[{keyfile,\"@/a.key\"}]}]",
         "keyfile without certfile"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = build(bad[i].templ, err, sizeof err);
        if (rc != GD_EINVAL || strstr(err, bad[i].why) == NULL)
            fprintf(stderr, "\ncontext case %zu: rc %d, err '%s'\n", i, rc, err);
        CU_ASSERT_EQUAL(rc, GD_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].why));
        CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    }

    /* Files: missing, and larger than the cap. */
    cluster_tls_conf_t c;
    cluster_tls_conf_init(&c);
    char p[128];
    path_in(p, sizeof p, "none.conf");
    CU_ASSERT_EQUAL(cluster_tls_conf_load(&c, p, err, sizeof err), GD_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open"));
    path_in(p, sizeof p, "big.conf");
    FILE *f = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < (1 << 20) + 10; i++)
        fputc(' ', f);
    fclose(f);
    CU_ASSERT_EQUAL(cluster_tls_conf_load(&c, p, err, sizeof err), GD_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "larger than"));
    cluster_tls_conf_free(&c);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ---- handshake framing inside TLS ---- */

static void test_framing(void)
{
    /* Two messages, as one handshake step may write (status + challenge). */
    const uint8_t two[] = {0, 3, 's', 'o', 'k', 0, 2, 'a', 'b'};
    uint8_t four[2 * sizeof two];
    size_t n = dist_hs_reframe4(two, sizeof two, four);
    const uint8_t want[] = {0, 0, 0, 3, 's', 'o', 'k', 0, 0, 0, 2, 'a', 'b'};
    CU_ASSERT_EQUAL_FATAL(n, sizeof want);
    CU_ASSERT_EQUAL(memcmp(four, want, n), 0);

    uint8_t msg[DIST_HS_MSG_MAX + 2];
    size_t len = 0, used = 0;
    /* Partial header, partial body, then whole. */
    CU_ASSERT_EQUAL(dist_hs_unframe4(want, 3, msg, &len, &used), 0);
    CU_ASSERT_EQUAL(dist_hs_unframe4(want, 6, msg, &len, &used), 0);
    CU_ASSERT_EQUAL(dist_hs_unframe4(want, sizeof want, msg, &len, &used), 1);
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT_EQUAL(used, 7);
    CU_ASSERT_EQUAL(memcmp(msg, two, 5), 0);
    /* Longer than any handshake message: refused from the header alone. */
    const uint8_t huge[] = {0, 0, 0x04, 0x4d, 'N'};
    CU_ASSERT_EQUAL(dist_hs_unframe4(huge, sizeof huge, msg, &len, &used), DIST_ETOO_LARGE);
    const uint8_t giant[] = {0xff, 0xff, 0xff, 0xff};
    CU_ASSERT_EQUAL(dist_hs_unframe4(giant, sizeof giant, msg, &len, &used), DIST_ETOO_LARGE);
    /* The largest accepted message passes whole. */
    static uint8_t max[4 + DIST_HS_MSG_MAX];
    max[2] = DIST_HS_MSG_MAX >> 8;
    max[3] = DIST_HS_MSG_MAX & 0xff;
    max[4] = 'N';
    max[3 + DIST_HS_MSG_MAX] = 0x5a;
    CU_ASSERT_EQUAL(dist_hs_unframe4(max, sizeof max, msg, &len, &used), 1);
    CU_ASSERT_EQUAL(len, DIST_HS_MSG_MAX + 2);
    CU_ASSERT_EQUAL(msg[2], 'N');
    CU_ASSERT_EQUAL(msg[len - 1], 0x5a);
    /* A truncated 2-byte message is not reframed. */
    CU_ASSERT_EQUAL(dist_hs_reframe4(two, 4, four), 0);
}

static const gd_test_case_t gd_tests[] = {
    {"optfile: every option OTP's file may hold", test_full_file},
    {"optfile: verification both ways or a warning", test_weakness},
    {"optfile: malformed files refused with one line", test_malformed},
    {"optfile: string options capped", test_string_cap},
    {"-ssl_dist_opt pairs", test_flag_pairs},
    {"contexts: certificate files read at start", test_contexts},
    {"handshake framing inside TLS", test_framing},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_tls_conf", gd_tests)
