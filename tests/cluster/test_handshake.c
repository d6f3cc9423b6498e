/*
 * test_handshake.c — cluster/handshake.c without sockets: the captured OTP
 * 25 handshake replayed byte for byte in both roles, girder against itself,
 * every status, v5 and dynamic names, and malformed messages.
 */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cunit_main.h"
#include "hex_util.h"

/* The capture (protocol-captures/handshake-otp25.txt). */
#define CAP_A_NAME "0013 4e 0000000d07df7fbd 6b062fe1 0004 6140766d"
#define CAP_B_OK "0003 73 6f6b"
#define CAP_B_CHALLENGE "0017 4e 0000000d07df7fbd afc1b44c 6b062fe0 0004 6240766d"
#define CAP_A_REPLY "0015 72 f3ee52a2 5fa3f1395547ff4095f18dbf6b3a39ad"
#define CAP_B_ACK "0011 61 0e69182f6ba57864c87edf00fdf5200e"

static dist_hs_config_t cfg_b(void)
{
    dist_hs_config_t c = {0};
    c.role = DIST_ACCEPTOR;
    c.name = "b@vm";
    c.name_len = 4;
    c.creation = 0x6b062fe0;
    c.flags = DFLAG_GIRDER_DEFAULT;
    c.cookie = "secret";
    c.cookie_len = 6;
    c.challenge = 0xafc1b44c;
    return c;
}

static dist_hs_config_t cfg_a(void)
{
    dist_hs_config_t c = {0};
    c.role = DIST_INITIATOR;
    c.name = "a@vm";
    c.name_len = 4;
    c.creation = 0x6b062fe1;
    c.flags = DFLAG_GIRDER_DEFAULT;
    c.cookie = "secret";
    c.cookie_len = 6;
    c.challenge = 0xf3ee52a2;
    c.peer_name = "b@vm";
    c.peer_name_len = 4;
    return c;
}

/* Feeds one whole message given in hex; returns the feed result and checks
 * the message was consumed entirely (when the call did not wait). */
static int feed_hex(dist_hs_t *hs, const char *h)
{
    uint8_t buf[4096];
    size_t n = hex(h, buf), used = 0;
    int rc = dist_hs_feed(hs, buf, n, &used);
    CU_ASSERT(used == n || rc < 0);
    return rc;
}

static int feed_bytes(dist_hs_t *hs, const void *b, size_t n)
{
    size_t used = 0;
    return dist_hs_feed(hs, b, n, &used);
}

static bool out_is_hex(dist_hs_t *hs, const char *h)
{
    uint8_t buf[4096];
    size_t n = hex(h, buf);
    bool ok = hs->out_len == n && memcmp(hs->out, buf, n) == 0;
    hs->out_len = 0;
    return ok;
}

static void test_capture_acceptor(void)
{
    dist_hs_t hs;
    dist_hs_config_t c = cfg_b();
    CU_ASSERT_FATAL(dist_hs_init(&hs, &c) == 0);
    CU_ASSERT(hs.out_len == 0);
    CU_ASSERT(feed_hex(&hs, CAP_A_NAME) == 0);
    CU_ASSERT(out_is_hex(&hs, CAP_B_OK CAP_B_CHALLENGE));
    CU_ASSERT(strcmp(hs.peer_name, "a@vm") == 0);
    CU_ASSERT(hs.peer_creation == 0x6b062fe1);
    CU_ASSERT(feed_hex(&hs, CAP_A_REPLY) == 1);
    CU_ASSERT(out_is_hex(&hs, CAP_B_ACK));
    CU_ASSERT(hs.state == DIST_HS_UP);
    CU_ASSERT(hs.flags == DFLAG_GIRDER_DEFAULT);
}

static void test_capture_initiator(void)
{
    dist_hs_t hs;
    dist_hs_config_t c = cfg_a();
    CU_ASSERT_FATAL(dist_hs_init(&hs, &c) == 0);
    CU_ASSERT(out_is_hex(&hs, CAP_A_NAME));
    CU_ASSERT(feed_hex(&hs, CAP_B_OK) == 0);
    CU_ASSERT(hs.out_len == 0);
    CU_ASSERT(feed_hex(&hs, CAP_B_CHALLENGE) == 0);
    CU_ASSERT(out_is_hex(&hs, CAP_A_REPLY));
    CU_ASSERT(hs.peer_creation == 0x6b062fe0);
    CU_ASSERT(feed_hex(&hs, CAP_B_ACK) == 1);
    CU_ASSERT(hs.state == DIST_HS_UP);
}

/* Runs a against b, offering each side one more received byte per round,
 * so every message is first seen in each of its incomplete prefixes.
 * Sets a's and b's last results. */
static void run_pair(dist_hs_t *a, dist_hs_t *b, int *ra, int *rb)
{
    uint8_t a_in[8192], b_in[8192];
    size_t a_len = 0, b_len = 0, a_fed = 0, b_fed = 0, a_win = 0, b_win = 0, used;
    *ra = *rb = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(b_in + b_len, a->out, a->out_len);
        b_len += a->out_len;
        a->out_len = 0;
        memcpy(a_in + a_len, b->out, b->out_len);
        a_len += b->out_len;
        b->out_len = 0;
        bool progress = false;
        if (*rb == 0 && b_fed + b_win < b_len) {
            b_win++;
            *rb = dist_hs_feed(b, b_in + b_fed, b_win, &used);
            if (used > 0) {
                b_fed += used;
                b_win = 0;
            }
            progress = true;
        }
        if (*ra == 0 && a_fed + a_win < a_len) {
            a_win++;
            *ra = dist_hs_feed(a, a_in + a_fed, a_win, &used);
            if (used > 0) {
                a_fed += used;
                a_win = 0;
            }
            progress = true;
        }
        if (!progress && a->out_len == 0 && b->out_len == 0)
            break;
    }
}

static void test_pair_up(void)
{
    dist_hs_t a, b;
    dist_hs_config_t ca = cfg_a(), cb = cfg_b();
    ca.challenge = 0x80000001; /* >= 2^31: printed unsigned */
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    int ra, rb;
    run_pair(&a, &b, &ra, &rb);
    CU_ASSERT(ra == 1);
    CU_ASSERT(rb == 1);
    CU_ASSERT(strcmp(a.peer_name, "b@vm") == 0);
    CU_ASSERT(strcmp(b.peer_name, "a@vm") == 0);
}

static void test_wrong_cookie(void)
{
    dist_hs_t a, b;
    dist_hs_config_t ca = cfg_a(), cb = cfg_b();
    ca.cookie = "other";
    ca.cookie_len = 5;
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    int ra, rb;
    run_pair(&a, &b, &ra, &rb);
    CU_ASSERT(rb == DIST_EDIGEST);
    CU_ASSERT(ra == 0); /* never got an ack: the caller's setup timer ends it */
    CU_ASSERT(b.state == DIST_HS_FAILED);
    /* The captured reply with one digest bit flipped. */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(feed_hex(&b, "0015 72 f3ee52a2 5fa3f1395547ff4095f18dbf6b3a39ac") == DIST_EDIGEST);
    /* And the initiator refuses a forged ack. */
    dist_hs_config_t none = {0};
    CU_ASSERT_FATAL(dist_hs_init(&a, &none) == GD_EINVAL);
    ca = cfg_a();
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT(feed_hex(&a, CAP_B_OK) == 0);
    CU_ASSERT(feed_hex(&a, CAP_B_CHALLENGE) == 0);
    CU_ASSERT(feed_hex(&a, "0011 61 0e69182f6ba57864c87edf00fdf5200f") == DIST_EDIGEST);
}

static void test_missing_flags(void)
{
    dist_hs_t b;
    dist_hs_config_t cb = cfg_b();
    /* OTP 25 default minus UTF8_ATOMS and minus MANDATORY_25_DIGEST. */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, "0013 4e 0000000d03de7fbd 6b062fe1 0004 6140766d") == DIST_EFLAGS);
    CU_ASSERT(out_is_hex(&b, "000c 73 6e6f745f616c6c6f776564")); /* s not_allowed */
    /* Flags 0 (D33). */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, "0013 4e 0000000000000000 6b062fe1 0004 6140766d") == DIST_EFLAGS);
    /* MANDATORY_25_DIGEST stands for the whole set. */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, "0013 4e 0000000004000001 6b062fe1 0004 6140766d") == 0);
    /* The initiator aborts on a challenge lacking them. */
    dist_hs_t a;
    dist_hs_config_t ca = cfg_a();
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT(feed_hex(&a, CAP_B_OK) == 0);
    CU_ASSERT(feed_hex(&a, "0017 4e 0000000000000001 afc1b44c 6b062fe0 0004 6240766d") ==
              DIST_EFLAGS);
}

/* A v6 name message for `name` (n bytes) with default flags. */
static size_t name_msg(uint8_t *buf, const char *name, size_t n, uint64_t flags)
{
    size_t len = 15 + n;
    buf[0] = (uint8_t)(len >> 8);
    buf[1] = (uint8_t)len;
    buf[2] = 'N';
    for (int i = 0; i < 8; i++)
        buf[3 + i] = (uint8_t)(flags >> (56 - 8 * i));
    memset(buf + 11, 1, 4);
    buf[15] = (uint8_t)(n >> 8);
    buf[16] = (uint8_t)n;
    memcpy(buf + 17, name, n);
    return 17 + n;
}

static void test_bad_names(void)
{
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"a@b@c", 5}, {"ab", 2}, {"@b", 2}, {"a@", 2}, {"a\0@b", 4}, {"a@\xff\xfe", 4}, {"@", 1},
    };
    uint8_t buf[2048];
    dist_hs_config_t cb = cfg_b();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dist_hs_t b;
        CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
        size_t n = name_msg(buf, bad[i].s, bad[i].n, DFLAG_GIRDER_DEFAULT);
        CU_ASSERT(feed_bytes(&b, buf, n) == DIST_ENAME);
        CU_ASSERT(b.out_len == 0);
    }
    /* 256 characters. */
    char longname[300];
    memset(longname, 'x', sizeof longname);
    longname[200] = '@';
    dist_hs_t b;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_bytes(&b, buf, name_msg(buf, longname, 256, DFLAG_GIRDER_DEFAULT)) ==
              DIST_ENAME);
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_bytes(&b, buf, name_msg(buf, longname, 255, DFLAG_GIRDER_DEFAULT)) == 0);
    /* The initiator refuses a challenge naming another node (pitfall 11). */
    dist_hs_t a;
    dist_hs_config_t ca = cfg_a();
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT(feed_hex(&a, CAP_B_OK) == 0);
    CU_ASSERT(feed_hex(&a, "0017 4e 0000000d07df7fbd afc1b44c 6b062fe0 0004 6340766d") ==
              DIST_ENAME);
}

static void test_malformed(void)
{
    static const char *acceptor_bad[] = {
        "ffff 4e",                                         /* over the cap */
        "0000",                                            /* empty message */
        "0001 4e",                                         /* 'N' cut short */
        "0013 4e 0000000d07df7fbd 6b062fe1 0005 6140766d", /* name length past the end */
        "0003 61 6263",                                    /* 'a' first */
        "0007 6e 0006 07df7fbd",                           /* v5 with version 6 */
        "0011 72 00000000 000000000000000000000000",       /* 'r' first */
        "0013 4f 0000000d07df7fbd 6b062fe1 0004 6140766d", /* unknown tag */
        "0013 4e 0000000d07df7fbd 6b062fe1 ffff 6140766d", /* name length 65535 */
    };
    static const int acceptor_want[] = {
        DIST_ETOO_LARGE, DIST_EPROTO, DIST_EPROTO, DIST_EPROTO, DIST_EPROTO,
        DIST_EPROTO,     DIST_EPROTO, DIST_EPROTO, DIST_EPROTO,
    };
    dist_hs_config_t cb = cfg_b();
    for (size_t i = 0; i < sizeof acceptor_bad / sizeof acceptor_bad[0]; i++) {
        dist_hs_t b;
        CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
        int rc = feed_hex(&b, acceptor_bad[i]);
        CU_ASSERT(rc == acceptor_want[i]);
        if (rc != acceptor_want[i])
            fprintf(stderr, "case %zu: %d\n", i, rc);
        /* Once failed, it stays failed. */
        CU_ASSERT(feed_hex(&b, CAP_A_NAME) == DIST_EPROTO);
    }
    /* A reply of the wrong size after a good name. */
    dist_hs_t b;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(feed_hex(&b, "0014 72 f3ee52a2 5fa3f1395547ff4095f18dbf6b3a39") == DIST_EPROTO);

    static const char *initiator_status_bad[] = {
        "0004 73 6e6f6b",                 /* nok */
        "000c 73 6e6f745f616c6c6f776564", /* not_allowed */
        "0003 73 6f6f",                   /* unknown status */
        "000a 73 6e616d65643a 0000 00",   /* named: never asked for */
        "0003 61 6f6b",                   /* not 's' */
    };
    static const int initiator_want[] = {DIST_ENOK, DIST_ENOT_ALLOWED, DIST_EPROTO, DIST_EPROTO,
                                         DIST_EPROTO};
    dist_hs_config_t ca = cfg_a();
    for (size_t i = 0; i < sizeof initiator_status_bad / sizeof initiator_status_bad[0]; i++) {
        dist_hs_t a;
        CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
        CU_ASSERT(feed_hex(&a, initiator_status_bad[i]) == initiator_want[i]);
    }
    dist_hs_t a;
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT(feed_hex(&a, CAP_B_OK) == 0);
    CU_ASSERT(feed_hex(&a, "0010 4e 0000000d07df7fbd afc1b44c 6b062f") == DIST_EPROTO);
}

static void test_incremental(void)
{
    dist_hs_t b;
    dist_hs_config_t cb = cfg_b();
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    uint8_t buf[64];
    size_t n = hex(CAP_A_NAME CAP_A_REPLY, buf), used;
    for (size_t k = 0; k < 21; k++) {
        CU_ASSERT(dist_hs_feed(&b, buf, k, &used) == 0);
        CU_ASSERT(used == 0);
    }
    CU_ASSERT(dist_hs_feed(&b, buf, n, &used) == 0);
    CU_ASSERT(used == 21); /* one message per call */
    CU_ASSERT(dist_hs_feed(&b, buf + used, n - used, &used) == 1);
    CU_ASSERT(used == 23);
    CU_ASSERT(out_is_hex(&b, CAP_B_OK CAP_B_CHALLENGE CAP_B_ACK));
}

static enum dist_status decided;
static enum dist_status decide(void *ud, const char *name, size_t len)
{
    (void)ud;
    CU_ASSERT(len == 4 && memcmp(name, "a@vm", 4) == 0);
    return decided;
}

static void test_statuses(void)
{
    dist_hs_config_t cb = cfg_b();
    cb.decide = decide;
    dist_hs_t b;

    decided = DIST_STATUS_NOK;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == DIST_ENOK);
    CU_ASSERT(out_is_hex(&b, "0004 73 6e6f6b"));

    decided = DIST_STATUS_NOT_ALLOWED;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == DIST_ENOT_ALLOWED);
    CU_ASSERT(out_is_hex(&b, "000c 73 6e6f745f616c6c6f776564"));

    decided = DIST_STATUS_OK_SIMULTANEOUS;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(out_is_hex(&b, "0010 73 6f6b5f73696d756c74616e656f7573" CAP_B_CHALLENGE));
    CU_ASSERT(feed_hex(&b, CAP_A_REPLY) == 1);

    decided = DIST_STATUS_ALIVE;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(out_is_hex(&b, "0006 73 616c697665"));
    CU_ASSERT(feed_hex(&b, "0005 73 74727565") == 0);
    CU_ASSERT(b.replaces_old);
    CU_ASSERT(out_is_hex(&b, CAP_B_CHALLENGE));
    CU_ASSERT(feed_hex(&b, CAP_A_REPLY) == 1);

    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(feed_hex(&b, "0006 73 66616c7365") == DIST_EALIVE);
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, CAP_A_NAME) == 0);
    CU_ASSERT(feed_hex(&b, "0004 73 796573") == DIST_EPROTO);

    /* The initiator answers alive with true and goes on. */
    dist_hs_t a;
    dist_hs_config_t ca = cfg_a();
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    a.out_len = 0;
    CU_ASSERT(feed_hex(&a, "0006 73 616c697665") == 0);
    CU_ASSERT(out_is_hex(&a, "0005 73 74727565"));
    CU_ASSERT(feed_hex(&a, CAP_B_CHALLENGE) == 0);
    CU_ASSERT(out_is_hex(&a, CAP_A_REPLY));
    CU_ASSERT(feed_hex(&a, CAP_B_ACK) == 1);
}

static void test_v5(void)
{
    dist_hs_t b;
    dist_hs_config_t cb = cfg_b();
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    /* 'n' Version 5, low flags, "a@vm"; then 'c' high flags and creation. */
    CU_ASSERT(feed_hex(&b, "000b 6e 0005 07df7fbd 6140766d") == 0);
    CU_ASSERT(out_is_hex(&b, CAP_B_OK CAP_B_CHALLENGE));
    CU_ASSERT(b.state == DIST_HS_RECV_COMPLEMENT);
    CU_ASSERT(feed_hex(&b, CAP_A_REPLY) == DIST_EPROTO); /* complement skipped */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    CU_ASSERT(feed_hex(&b, "000b 6e 0005 07df7fbd 6140766d") == 0);
    b.out_len = 0;
    CU_ASSERT(feed_hex(&b, "0009 63 0000000d 6b062fe1") == 0);
    CU_ASSERT(b.peer_flags == DFLAG_GIRDER_DEFAULT);
    CU_ASSERT(b.peer_creation == 0x6b062fe1);
    CU_ASSERT(feed_hex(&b, CAP_A_REPLY) == 1);
    CU_ASSERT(out_is_hex(&b, CAP_B_ACK));
}

static void test_dynamic_name(void)
{
    dist_hs_t b;
    dist_hs_config_t cb = cfg_b();
    cb.dynamic_seed = 0x1234567890abcdefull;
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    uint8_t buf[64];
    size_t n = name_msg(buf, "vm", 2, DFLAG_GIRDER_DEFAULT | DFLAG_NAME_ME);
    CU_ASSERT(feed_bytes(&b, buf, n) == 0);
    /* 's' "named:" Nlen Name Creation, then the challenge. */
    CU_ASSERT(b.out_len > 9 && memcmp(b.out + 2, "snamed:", 7) == 0);
    size_t nlen = (size_t)(b.out[9] << 8 | b.out[10]);
    CU_ASSERT(nlen == b.peer_name_len);
    CU_ASSERT(memcmp(b.out + 11, b.peer_name, nlen) == 0);
    CU_ASSERT(dist_name_valid(b.peer_name, b.peer_name_len));
    CU_ASSERT(strcmp(b.peer_name + b.peer_name_len - 3, "@vm") == 0);
    CU_ASSERT(b.peer_creation != 0);
    /* A NAME_ME peer sends a host, not a full name. */
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    n = name_msg(buf, "a@vm", 4, DFLAG_GIRDER_DEFAULT | DFLAG_NAME_ME);
    CU_ASSERT(feed_bytes(&b, buf, n) == DIST_ENAME);
}

static void test_hidden(void)
{
    dist_hs_t a, b;
    dist_hs_config_t ca = cfg_a(), cb = cfg_b();
    ca.flags &= ~DFLAG_PUBLISHED;
    CU_ASSERT_FATAL(dist_hs_init(&a, &ca) == 0);
    CU_ASSERT_FATAL(dist_hs_init(&b, &cb) == 0);
    int ra, rb;
    run_pair(&a, &b, &ra, &rb);
    CU_ASSERT(ra == 1 && rb == 1);
    CU_ASSERT((a.flags & DFLAG_PUBLISHED) == 0);
    CU_ASSERT((b.flags & DFLAG_PUBLISHED) == 0);
    CU_ASSERT((b.flags & DFLAG_FRAGMENTS) != 0);
}

static void test_digest(void)
{
    uint8_t d[16], want[16];
    dist_digest("secret", 6, 2948707404u, d);
    hex("5fa3f1395547ff4095f18dbf6b3a39ad", want);
    CU_ASSERT(memcmp(d, want, 16) == 0);
}

static const gd_test_case_t gd_tests[] = {
    {"digest", test_digest},
    {"capture acceptor", test_capture_acceptor},
    {"capture initiator", test_capture_initiator},
    {"pair up", test_pair_up},
    {"wrong cookie", test_wrong_cookie},
    {"missing flags", test_missing_flags},
    {"bad names", test_bad_names},
    {"malformed", test_malformed},
    {"incremental", test_incremental},
    {"statuses", test_statuses},
    {"v5", test_v5},
    {"dynamic name", test_dynamic_name},
    {"hidden", test_hidden},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_handshake", gd_tests)
