/*
 * test_frame.c — cluster/frame.c without sockets: the captured OTP 25
 * frames (atom cache header, pre-connect frame), cache reuse across frames,
 * fragments interleaved with other traffic, the encoder against the
 * decoder, and malformed frames (docs/robustness.md D21-D30).
 */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cunit_main.h"
#include "hex_util.h"

#define PID_B "58 77 04 6240766d 00000036 00000000 6b062fe0"
#define PID_B_CACHED "58 52 00 00000036 00000000 6b062fe0"

/* dist-frames-annotated.txt (1): REG_SEND to rex with 4 new cache refs. */
#define CAP_FRAME1                                                                                 \
    "83 44 04 88 dc 00 3c 04 6240766d 05 00 77 03 726578 60 10 "                                   \
    "66656174757265735f72657175657374 "                                                            \
    "68 04 61 06 " PID_B_CACHED " 52 01 52 02 "                                                    \
    "68 02 " PID_B_CACHED " 52 03"
/* (2): MONITOR_P by name, no cache refs, no payload. */
#define CAP_FRAME2                                                                                 \
    "83 44 00 68 04 61 13 58 77 04 6140766d 00000009 00000000 6b062fe1 77 0a "                     \
    "6e65745f6b65726e656c 5a 0003 77 04 6140766d 6b062fe1 000123f7 db790002 709fd15e"

typedef struct fixture {
    heap_t h;
    dist_rx_t rx;
    dist_msg_t m;
} fixture_t;

static void fx_init(fixture_t *f, const dist_rx_limits_t *lim)
{
    CU_ASSERT_FATAL(heap_init(&f->h, 0) == 0);
    CU_ASSERT_FATAL(dist_rx_init(&f->rx, lim) == 0);
}

static void fx_free(fixture_t *f)
{
    dist_rx_free(&f->rx);
    heap_destroy(&f->h);
}

static int feed(fixture_t *f, const char *h)
{
    uint8_t *buf = malloc(strlen(h) / 2 + 1);
    size_t n = hex(h, buf);
    int rc = dist_rx_frame(&f->rx, &f->h, buf, n, &f->m);
    free(buf);
    return rc;
}

static term_t el(term_t tuple, size_t i)
{
    return term_boxed_ptr(tuple)[i + 1];
}

static bool atom_is(term_t t, const char *s)
{
    return term_is_atom(t) && t == heap_atom(s);
}

static void test_capture(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    CU_ASSERT_FATAL(feed(&f, CAP_FRAME1) == 0);
    CU_ASSERT(f.m.op == DOP_REG_SEND);
    CU_ASSERT(atom_is(el(f.m.control, 2), ""));
    CU_ASSERT(atom_is(el(f.m.control, 3), "rex"));
    CU_ASSERT(term_is_ext_pid(el(f.m.control, 1)));
    CU_ASSERT(atom_is(el(f.m.payload, 1), "features_request"));
    heap_ident_t id;
    heap_ident(el(f.m.control, 1), &id);
    CU_ASSERT(atom_is(id.node, "b@vm") && id.words[0] == 0x36 && id.creation == 0x6b062fe0);
    /* The cache now holds slot 4*256+0x77 = rex: a later frame refers to it
     * without the text (nibble 4: segment 4, not new). */
    CU_ASSERT(feed(&f, "83 44 01 04 77 68 03 61 16 " PID_B " " PID_B " 52 00") == 0);
    CU_ASSERT(f.m.op == DOP_SEND_SENDER);
    CU_ASSERT(atom_is(f.m.payload, "rex"));
    CU_ASSERT_FATAL(feed(&f, CAP_FRAME2) == 0);
    CU_ASSERT(f.m.op == DOP_MONITOR_P);
    CU_ASSERT(f.m.payload == TERM_NONE);
    CU_ASSERT(atom_is(el(f.m.control, 2), "net_kernel"));
    CU_ASSERT(term_is_ref(el(f.m.control, 3)));
    /* A tick. */
    CU_ASSERT(dist_rx_frame(&f.rx, &f.h, NULL, 0, &f.m) == 0);
    CU_ASSERT(f.m.op == 0);
    /* Pass-through (112): each term with its own 131. */
    CU_ASSERT(feed(&f, "70 83 68 03 61 16 " PID_B " " PID_B " 83 77 02 6f6b") == 0);
    CU_ASSERT(f.m.op == DOP_SEND_SENDER && atom_is(f.m.payload, "ok"));
    fx_free(&f);
}

static void test_long_atoms(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    /* One new ref, LongAtoms set (the nibble after ref 0 is the high
     * nibble of byte 0): 2-byte length. */
    CU_ASSERT(feed(&f, "83 44 01 18 09 0002 6869 68 03 61 16 " PID_B " " PID_B " 52 00") == 0);
    CU_ASSERT(atom_is(f.m.payload, "hi"));
    fx_free(&f);
}

static void test_malformed(void)
{
    static const struct {
        const char *hex;
        int want;
    } cases[] = {
        {"83", DIST_EPROTO},                                                /* no header type */
        {"83 44 ff", DIST_EPROTO},                                          /* D24 */
        {"83 44 01 00 05 68 01 61 01", DIST_ECACHE},                        /* D25 empty slot */
        {"83 44 00 68 01 61 01", DIST_EPROTO},                              /* {1} */
        {"83 44 00 68 01 61 63", DIST_EPROTO},                              /* {99} */
        {"83 44 00 77 01 61", DIST_EPROTO},                                 /* atom control */
        {"83 44 00 68 04 61 06 " PID_B " 77 00 77 03 726578", DIST_EPROTO}, /* no payload */
        {"83 44 00 68 03 61 16 " PID_B " " PID_B " 61 01 00", DIST_EPROTO}, /* trailing */
        {"83 44 00 68 04 61 13 " PID_B " 77 00 5a", DIST_EPROTO},           /* truncated ref */
        {"83 63", DIST_EPROTO},                                             /* unknown type */
        {"00 00", DIST_EPROTO},                                             /* not 131 */
        {"70 83 6c ffffffff", DIST_EPROTO},                                 /* D4 in 112 */
        {"83 46 0000000000000001 0000000000000001 00", DIST_EFRAGMENT},     /* D27 */
        {"83 45 0000000000000001 0000000000000000 00", DIST_EPROTO},        /* id 0 */
        {"83 45 00000000", DIST_EPROTO},                                    /* short */
        {"83 44 01 08 05 05 6869", DIST_EPROTO},                            /* text cut */
        {"83 44 00 68 02 61 1e 61 01", DIST_EPROTO},                        /* {30, 1} */
        {"83 44 00 68 03 61 18 " PID_B " " PID_B " 83", DIST_EPROTO},       /* D30 */
        {"83 44 00 68 01 6d ffffffff", DIST_EPROTO},                        /* D6 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t f;
        fx_init(&f, NULL);
        int rc = feed(&f, cases[i].hex);
        CU_ASSERT(rc == cases[i].want);
        if (rc != cases[i].want)
            fprintf(stderr, "frame case %zu: %d\n", i, rc);
        fx_free(&f);
    }
    size_t n;
    uint8_t big[8] = {0xff, 0xff, 0xff, 0xff, 0};
    CU_ASSERT(dist_frame_split(big, 8, DIST_MAX_MESSAGE_DEFAULT, &n) == DIST_ETOO_LARGE); /* D21 */
    uint8_t part[6] = {0, 0, 0, 5, 1, 2};
    n = 0;
    CU_ASSERT(dist_frame_split(part, 6, 100, &n) == 0 && n == 5); /* D22: waits, length known */
    uint8_t tick[4] = {0};
    CU_ASSERT(dist_frame_split(tick, 4, 100, &n) == 1 && n == 0);
}

static void test_fragments_bad(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    /* D29: a second start for sequence 7. */
    CU_ASSERT(feed(&f, "83 45 0000000000000007 0000000000000003 00 68") == 0);
    CU_ASSERT(feed(&f, "83 45 0000000000000007 0000000000000002 00 68") == DIST_EFRAGMENT);
    fx_free(&f);
    /* A continuation out of order (3 then 1). */
    fx_init(&f, NULL);
    CU_ASSERT(feed(&f, "83 45 0000000000000007 0000000000000003 00 68") == 0);
    CU_ASSERT(feed(&f, "83 46 0000000000000007 0000000000000001 03") == DIST_EFRAGMENT);
    fx_free(&f);
    /* Too many sequences in flight. */
    dist_rx_limits_t lim = {.max_sequences = 2};
    fx_init(&f, &lim);
    CU_ASSERT(feed(&f, "83 45 0000000000000001 0000000000000003 00 68") == 0);
    CU_ASSERT(feed(&f, "83 45 0000000000000002 0000000000000003 00 68") == 0);
    CU_ASSERT(feed(&f, "83 45 0000000000000003 0000000000000003 00 68") == DIST_ETOO_LARGE);
    fx_free(&f); /* D28: partial sequences freed (LSan checks) */
    /* A sequence growing past the message cap. */
    lim = (dist_rx_limits_t){.max_message = 8};
    fx_init(&f, &lim);
    CU_ASSERT(feed(&f, "83 45 0000000000000001 0000000000000003 00 68 01 02 03 04") == 0);
    CU_ASSERT(feed(&f, "83 46 0000000000000001 0000000000000002 01 02 03 04 05") ==
              DIST_ETOO_LARGE);
    fx_free(&f);
}

static void test_atom_quota(void)
{
    dist_rx_limits_t lim = {.atom_quota = 2};
    fixture_t f;
    fx_init(&f, &lim);
    /* Three atoms nobody has made yet, as new cache entries. */
    int rc = feed(&f, "83 44 03 88 08 01 08 717a7170756e6b31 02 08 717a7170756e6b32 03 08 "
                      "717a7170756e6b33 68 01 61 01");
    CU_ASSERT(rc == DIST_EATOM_QUOTA);
    fx_free(&f);
    /* Inline atoms in the terms count too (D37). */
    fx_init(&f, &lim);
    rc = feed(&f, "83 44 00 68 03 61 16 " PID_B " " PID_B
                  " 68 03 77 04 71716131 77 04 71716132 77 04 71716133");
    CU_ASSERT(rc == DIST_EATOM_QUOTA);
    fx_free(&f);
}

static int cmp(term_t a, term_t b)
{
    int order = 1;
    CU_ASSERT(heap_compare_checked(a, b, true, &order) == 0);
    return order;
}

/* Splits the encoder's output into frames and decodes each. */
static int decode_all(fixture_t *f, const etf_buf_t *b, size_t *frames)
{
    size_t pos = 0, n;
    *frames = 0;
    while (pos < b->len) {
        int rc = dist_frame_split(b->data + pos, b->len - pos, DIST_MAX_MESSAGE_DEFAULT, &n);
        if (rc != 1)
            return -1;
        rc = dist_rx_frame(&f->rx, &f->h, b->data + pos + 4, n, &f->m);
        if (rc < 0)
            return rc;
        pos += 4 + n;
        (*frames)++;
    }
    return 0;
}

static void test_encode_roundtrip(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    term_t pid, ctl, *e, bin, payload;
    CU_ASSERT_FATAL(heap_make_ext_pid(&f.h, heap_atom("b@vm"), 54, 0, 7, &pid) == 0);
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_SEND_SENDER);
    e[1] = pid;
    e[2] = pid;
    uint8_t *data;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&f.h, 8 * 1000, &data, &bin) == 0);
    for (int i = 0; i < 1000; i++)
        data[i] = (uint8_t)i;
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 2, &e, &payload) == 0);
    e[0] = heap_atom("echo_reply");
    e[1] = bin;

    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 1, 0, &b) == 0);
    size_t frames;
    CU_ASSERT(decode_all(&f, &b, &frames) == 0);
    CU_ASSERT(frames == 1);
    CU_ASSERT(f.m.op == DOP_SEND_SENDER);
    CU_ASSERT(cmp(f.m.control, ctl) == 0 && cmp(f.m.payload, payload) == 0);

    /* 100-byte fragments: 11+ frames, interleaved with a tick and another
     * message after the first fragment. */
    b.len = 0;
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 42, 100, &b) == 0);
    size_t pos = 0, n, count = 0;
    int rc = 0;
    while (pos < b.len && rc == 0) {
        CU_ASSERT_FATAL(dist_frame_split(b.data + pos, b.len - pos, 1 << 20, &n) == 1);
        CU_ASSERT(b.data[pos + 5] == (count == 0 ? ETF_DIST_FRAG_HEADER : ETF_DIST_FRAG_CONT));
        rc = dist_rx_frame(&f.rx, &f.h, b.data + pos + 4, n, &f.m);
        pos += 4 + n;
        count++;
        if (pos < b.len) {
            CU_ASSERT(f.m.op == 0);
        }
        if (count == 1) {
            CU_ASSERT(feed(&f, CAP_FRAME2) == 0);
            CU_ASSERT(f.m.op == DOP_MONITOR_P);
            CU_ASSERT(dist_rx_frame(&f.rx, &f.h, NULL, 0, &f.m) == 0);
        }
    }
    CU_ASSERT(rc == 0);
    CU_ASSERT(count > 10);
    CU_ASSERT(f.m.op == DOP_SEND_SENDER);
    CU_ASSERT(cmp(f.m.payload, payload) == 0);
    CU_ASSERT(f.rx.frag_bytes == 0);

    /* A control without payload. */
    b.len = 0;
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_LINK);
    e[1] = pid;
    e[2] = pid;
    CU_ASSERT_FATAL(dist_encode_message(ctl, TERM_NONE, 0, DIST_FRAGMENT_SIZE, &b) == 0);
    CU_ASSERT(decode_all(&f, &b, &frames) == 0);
    CU_ASSERT(f.m.op == DOP_LINK && f.m.payload == TERM_NONE);
    etf_buf_free(&b);
    fx_free(&f);
}

/* The payload {bin, 1, Bin} with a 1 MiB Bin, as the dist benchmark sends. */
static term_t big_payload(heap_t *h, term_t *bin)
{
    uint8_t *data;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(h, 8u << 20, &data, bin) == 0);
    for (size_t i = 0; i < (1u << 20); i++)
        data[i] = (uint8_t)(i * 7);
    term_t t, *e;
    CU_ASSERT_FATAL(heap_make_tuple(h, 3, &e, &t) == 0);
    e[0] = heap_atom("bin");
    e[1] = term_make_small(1);
    e[2] = *bin;
    return t;
}

/* The receive path without the double copy (node.c's read_frames): a
 * fragmented 1 MiB binary is copied once, from the input into the
 * sequence's buffer, and the decoded binary references that buffer (the
 * live off-heap bytes grow by one buffer, not two); the message is built
 * straight into fragments that become the target's message as they are.
 * A big unfragmented frame read into a binary of its own decodes the same
 * way (dist_rx_frame_in). */
static void test_big_message_copied_once(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    term_t ctl, *e, bin;
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_SEND);
    e[1] = heap_atom("");
    e[2] = heap_atom("target");
    term_t payload = big_payload(&f.h, &bin);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 9, DIST_FRAGMENT_SIZE, &b) == 0);

    size_t live0 = heap_binary_live_bytes();
    heap_t mh;
    CU_ASSERT_FATAL(heap_msg_build_init(&mh) == 0);
    size_t pos = 0, n, frames = 0;
    int r = 0;
    while (pos < b.len) {
        CU_ASSERT_FATAL(dist_frame_split(b.data + pos, b.len - pos, 1 << 24, &n) == 1);
        const uint8_t *p = b.data + pos + 4;
        uint8_t *dst;
        r = frames == 0 ? 0 : dist_rx_frag_room(&f.rx, p, n, &dst);
        if (frames == 0) {
            CU_ASSERT_FATAL(dist_rx_frame(&f.rx, &mh, p, n, &f.m) == 0 && f.m.op == 0);
        } else {
            CU_ASSERT_FATAL(r == 1 || r == 2);
            memcpy(dst, p + DIST_FRAG_CONT_HDR_LEN, n - DIST_FRAG_CONT_HDR_LEN);
        }
        pos += 4 + n;
        frames++;
        if (r == 2)
            CU_ASSERT_FATAL(dist_rx_frag_complete(&f.rx, &mh, p, &f.m) == 0);
    }
    CU_ASSERT(r == 2 && pos == b.len && frames == 17);
    CU_ASSERT_FATAL(f.m.op == DOP_SEND);
    CU_ASSERT(cmp(f.m.payload, payload) == 0);
    term_t got = term_tuple_elems(f.m.payload)[2];
    CU_ASSERT(term_is_boxed_of(got, HDR_SUB_BIN)); /* referenced, not copied */
    size_t grew = heap_binary_live_bytes() - live0;
    CU_ASSERT(grew >= (1u << 20) && grew < (1u << 20) + 2 * DIST_FRAGMENT_SIZE);
    CU_ASSERT(f.rx.frag_bytes == 0);
    /* Everything the decode built is in the chain a send hands over. */
    heap_frag_t *chain = heap_msg_build_take(&mh);
    CU_ASSERT_PTR_NOT_NULL(chain);
    heap_t recv;
    CU_ASSERT_FATAL(heap_init(&recv, 0) == 0);
    heap_attach_frag(&recv, chain);
    term_t msg = f.m.payload;
    term_t *roots[] = {&msg};
    CU_ASSERT(heap_gc(&recv, 0, roots, 1) == 0);
    CU_ASSERT(cmp(msg, payload) == 0);
    heap_destroy(&recv);
    CU_ASSERT(heap_binary_live_bytes() == live0);

    /* One big frame (no fragments). */
    b.len = 0;
    CU_ASSERT_FATAL(dist_encode_message(ctl, payload, 9, 0, &b) == 0);
    CU_ASSERT_FATAL(dist_frame_split(b.data, b.len, 1 << 24, &n) == 1);
    heap_binary_t *frame = heap_binary_new(n);
    CU_ASSERT_FATAL(frame != NULL);
    memcpy(frame->data, b.data + 4, n);
    CU_ASSERT_FATAL(dist_rx_frame_in(&f.rx, &mh, frame, n, &f.m) == 0);
    CU_ASSERT(f.m.op == DOP_SEND && cmp(f.m.payload, payload) == 0);
    CU_ASSERT(term_is_boxed_of(term_tuple_elems(f.m.payload)[2], HDR_SUB_BIN));
    heap_binary_unref(frame); /* the decoded binary keeps it */
    CU_ASSERT(heap_binary_live_bytes() - live0 == n);
    heap_destroy(&mh);
    CU_ASSERT(heap_binary_live_bytes() == live0);
    etf_buf_free(&b);
    fx_free(&f);
}

/* The send side: a big binary is referenced by the encoding, not copied
 * (dist_encode_body_refs), the fragments carry its bytes from where they
 * lie and decode to the same message, and flattening gives exactly the
 * plain encoding's bytes. */
static void test_big_binary_sent_by_reference(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    term_t ctl, *e, bin;
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_SEND);
    e[1] = heap_atom("");
    e[2] = heap_atom("target");
    term_t payload = big_payload(&f.h, &bin), two, *t2;
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &t2, &two) == 0);
    t2[0] = payload;
    t2[1] = heap_atom("between");
    t2[2] = bin; /* the same binary twice: two references */
    dist_body_t plain = {0}, refd = {0};
    CU_ASSERT_FATAL(dist_encode_body(ctl, two, &plain) == 0);
    CU_ASSERT_FATAL(dist_encode_body_refs(ctl, two, &refd) == 0);
    CU_ASSERT(refd.refs.n == 2 && refd.refs.bytes == 2u << 20);
    CU_ASSERT(refd.bytes.len < 1024);
    heap_bin_view_t v;
    heap_bin_view(bin, &v);
    CU_ASSERT(refd.refs.v[0].data == v.bytes && refd.refs.v[1].data == v.bytes);
    CU_ASSERT(dist_body_len(&refd) == plain.bytes.len);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(dist_frame_fragments(&refd, 5, DIST_FRAGMENT_SIZE, &b) == 0);
    size_t frames;
    CU_ASSERT(decode_all(&f, &b, &frames) == 0);
    CU_ASSERT(frames > 32 && f.m.op == DOP_SEND && cmp(f.m.payload, two) == 0);
    etf_buf_t b2 = {0};
    CU_ASSERT_FATAL(dist_frame_fragments(&plain, 5, DIST_FRAGMENT_SIZE, &b2) == 0);
    CU_ASSERT(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
    CU_ASSERT_FATAL(dist_body_flatten(&refd) == 0);
    CU_ASSERT(refd.refs.n == 0 && refd.bytes.len == plain.bytes.len &&
              memcmp(refd.bytes.data, plain.bytes.data, plain.bytes.len) == 0);
    dist_body_free(&plain);
    dist_body_free(&refd);
    etf_buf_free(&b);
    etf_buf_free(&b2);
    fx_free(&f);
}

/* A fragmented message needs a non-zero sequence id: OTP reads a fragment
 * with id 0 as a whole message (and OTP 25 crashed on a DOWN sent so).
 * Id 0 is refused, leaving out as it was; a message that fits one frame
 * needs none; the id given is the one in every fragment's header. */
static void test_fragments_need_sequence_id(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    term_t pid, ref, ctl, *e, reason;
    CU_ASSERT_FATAL(heap_make_ext_pid(&f.h, heap_atom("b@vm"), 54, 0, 7, &pid) == 0);
    uint32_t w[3] = {4, 5, 6};
    CU_ASSERT_FATAL(heap_make_ref(&f.h, heap_atom("b@vm"), 54, w, 3, &ref) == 0);
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 4, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_PAYLOAD_MONITOR_P_EXIT);
    e[1] = pid;
    e[2] = pid;
    e[3] = ref;
    uint8_t *data;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&f.h, 8 * 1000, &data, &reason) == 0);
    memset(data, 0xab, 1000);

    etf_buf_t b = {0};
    const uint8_t before[3] = {1, 2, 3};
    CU_ASSERT_FATAL(etf_buf_reserve(&b, 3) == 0);
    memcpy(b.data, before, 3);
    b.len = 3;
    CU_ASSERT(dist_encode_message(ctl, reason, 0, 100, &b) == GD_EINVAL);
    CU_ASSERT(b.len == 3 && memcmp(b.data, before, 3) == 0);

    dist_body_t body = {0};
    CU_ASSERT_FATAL(dist_encode_body(ctl, reason, &body) == 0);
    CU_ASSERT(dist_frame_fragments(&body, 0, 100, &b) == GD_EINVAL);
    CU_ASSERT(b.len == 3);
    /* Small enough for one frame: no sequence, id 0 is fine. */
    uint64_t flags = DFLAG_DIST_HDR_ATOM_CACHE | DFLAG_FRAGMENTS | DFLAG_EXIT_PAYLOAD;
    CU_ASSERT(dist_frame_body(&body, flags, 0, &b) == 0);
    CU_ASSERT(b.len > 3 && b.data[3 + 5] == ETF_DIST_HEADER);

    /* Id 0x0102030405060708 in the header of each of the fragments. */
    b.len = 0;
    CU_ASSERT_FATAL(dist_frame_fragments(&body, 0x0102030405060708u, 100, &b) == 0);
    size_t pos = 0, n, count = 0;
    const uint8_t id[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    while (pos < b.len) {
        CU_ASSERT_FATAL(dist_frame_split(b.data + pos, b.len - pos, 1 << 20, &n) == 1);
        CU_ASSERT(memcmp(b.data + pos + 6, id, 8) == 0);
        CU_ASSERT(dist_rx_frame(&f.rx, &f.h, b.data + pos + 4, n, &f.m) == 0);
        pos += 4 + n;
        count++;
    }
    CU_ASSERT(count > 10);
    CU_ASSERT(f.m.op == DOP_PAYLOAD_MONITOR_P_EXIT);
    CU_ASSERT(cmp(f.m.payload, reason) == 0);
    etf_buf_free(&body.bytes);
    etf_buf_free(&b);
    fx_free(&f);
}

/* Framing for a peer's flags: pass-through without DIST_HDR_ATOM_CACHE,
 * SEND for SEND_SENDER and EXIT/EXIT2/MONITOR_P_EXIT with the reason in
 * the control without EXIT_PAYLOAD (erl_interface's flags), fragments only
 * with FRAGMENTS. */
static void test_frame_for_flags(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    term_t pid, ref, ctl, *e;
    CU_ASSERT_FATAL(heap_make_ext_pid(&f.h, heap_atom("c17@vm"), 5, 1, 9, &pid) == 0);
    uint32_t w[3] = {1, 2, 3};
    CU_ASSERT_FATAL(heap_make_ref(&f.h, heap_atom("c17@vm"), 9, w, 3, &ref) == 0);
    const uint64_t ei_flags = 0x407074f9cull; /* what erl_call offers */
    static const struct {
        int op, want_op;
        size_t arity;
        bool payload_stays;
    } cases[] = {
        {DOP_SEND_SENDER, DOP_SEND, 3, true},
        {DOP_PAYLOAD_EXIT, DOP_EXIT, 4, false},
        {DOP_PAYLOAD_EXIT2, DOP_EXIT2, 4, false},
        {DOP_PAYLOAD_MONITOR_P_EXIT, DOP_MONITOR_P_EXIT, 5, false},
        {DOP_LINK, DOP_LINK, 3, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool has_ref = cases[i].op == DOP_PAYLOAD_MONITOR_P_EXIT;
        bool payload = cases[i].op != DOP_LINK;
        CU_ASSERT_FATAL(heap_make_tuple(&f.h, has_ref ? 4 : 3, &e, &ctl) == 0);
        e[0] = term_make_small(cases[i].op);
        e[1] = pid;
        e[2] = pid;
        if (has_ref)
            e[3] = ref;
        dist_body_t body = {0};
        CU_ASSERT_FATAL(dist_encode_body(ctl, payload ? heap_atom("boom") : TERM_NONE, &body) == 0);
        etf_buf_t b = {0};
        CU_ASSERT_FATAL(dist_frame_body(&body, ei_flags, 1, &b) == 0);
        CU_ASSERT(b.len > 5 && b.data[4] == 112); /* pass-through */
        size_t frames;
        CU_ASSERT(decode_all(&f, &b, &frames) == 0 && frames == 1);
        CU_ASSERT(f.m.op == cases[i].want_op);
        CU_ASSERT(header_arity(*term_boxed_ptr(f.m.control)) == cases[i].arity);
        if (cases[i].op == DOP_SEND_SENDER) {
            CU_ASSERT(el(f.m.control, 1) == heap_atom(""));
            CU_ASSERT(f.m.payload == heap_atom("boom"));
        } else if (payload) {
            CU_ASSERT(f.m.payload == TERM_NONE);
            CU_ASSERT(el(f.m.control, cases[i].arity - 1) == heap_atom("boom"));
        }
        /* With OTP's flags nothing changes. */
        b.len = 0;
        CU_ASSERT_FATAL(dist_frame_body(&body, DFLAG_GIRDER_DEFAULT, 1, &b) == 0);
        CU_ASSERT(b.data[4] == 131 && b.data[5] == 68);
        CU_ASSERT(decode_all(&f, &b, &frames) == 0 && f.m.op == cases[i].op);
        etf_buf_free(&b);
        etf_buf_free(&body.bytes);
    }
    /* A long body: fragments with FRAGMENTS, one frame without. */
    uint8_t *data;
    term_t bin;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&f.h, 8 * 200000, &data, &bin) == 0);
    memset(data, 7, 200000);
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 3, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_SEND_SENDER);
    e[1] = pid;
    e[2] = pid;
    dist_body_t body = {0};
    CU_ASSERT_FATAL(dist_encode_body(ctl, bin, &body) == 0);
    etf_buf_t b = {0};
    size_t frames;
    CU_ASSERT_FATAL(dist_frame_body(&body, DFLAG_GIRDER_DEFAULT, 5, &b) == 0);
    CU_ASSERT(decode_all(&f, &b, &frames) == 0 && frames == 4); /* as OTP: 4 for 200 kB */
    CU_ASSERT(cmp(f.m.payload, bin) == 0);
    b.len = 0;
    CU_ASSERT_FATAL(dist_frame_body(&body, DFLAG_GIRDER_DEFAULT & ~DFLAG_FRAGMENTS, 5, &b) == 0);
    CU_ASSERT(decode_all(&f, &b, &frames) == 0 && frames == 1);
    CU_ASSERT(cmp(f.m.payload, bin) == 0);
    etf_buf_free(&b);
    etf_buf_free(&body.bytes);
    fx_free(&f);
}

/* The atom cache on send: frames made with a connection's tx cache decode
 * on a receiving side (whose cache follows) to the same terms; a second
 * message refers to the cached atoms without their text. */
static void test_send_cache(void)
{
    fixture_t f;
    fx_init(&f, NULL);
    dist_tx_t tx;
    dist_tx_init(&tx);
    term_t pid, ref, exp, map, list, big, ctl, msg, *e;
    CU_ASSERT_FATAL(heap_make_ext_pid(&f.h, heap_atom("peer@vm"), 5, 1, 9, &pid) == 0);
    uint32_t w[3] = {1, 2, 3};
    CU_ASSERT_FATAL(heap_make_ref(&f.h, heap_atom("peer@vm"), 9, w, 3, &ref) == 0);
    CU_ASSERT_FATAL(heap_make_export(&f.h, heap_atom("lists"), heap_atom("map"), 2, &exp) == 0);
    term_t keys[2] = {heap_atom("k1"), heap_atom("k2")}, vals[2] = {heap_atom("v"), pid};
    CU_ASSERT_FATAL(heap_make_map(&f.h, keys, vals, 2, &map) == 0);
    term_t items[3] = {heap_atom("a"), term_make_small(300), heap_atom("\xce\xbb")};
    CU_ASSERT_FATAL(heap_make_list(&f.h, items, 3, &list) == 0);
    CU_ASSERT_FATAL(heap_make_int64(&f.h, INT64_MAX, &big) == 0);
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 8, &e, &msg) == 0);
    e[0] = heap_atom("hello");
    e[1] = list;
    e[2] = map;
    e[3] = ref;
    e[4] = exp;
    e[5] = big;
    e[6] = heap_atom("hello");
    /* 200 characters, 400 bytes: the header's LongAtoms flag. */
    char lambdas[401];
    for (int i = 0; i < 200; i++)
        memcpy(lambdas + 2 * i, "\xce\xbb", 2);
    lambdas[400] = 0;
    e[7] = heap_atom(lambdas);
    CU_ASSERT_FATAL(e[7] != TERM_NONE);
    CU_ASSERT_FATAL(heap_make_tuple(&f.h, 4, &e, &ctl) == 0);
    e[0] = term_make_small(DOP_REG_SEND);
    e[1] = pid;
    e[2] = heap_atom("");
    e[3] = heap_atom("echo");
    dist_body_t body = {0};
    CU_ASSERT_FATAL(dist_encode_body(ctl, msg, &body) == 0);
    for (int round = 0; round < 2; round++) {
        etf_buf_t b = {0};
        CU_ASSERT_FATAL(dist_frame_cached(&body, DFLAG_GIRDER_DEFAULT, &tx, &b) == 0);
        CU_ASSERT(b.data[4] == 131 && b.data[5] == 68 && b.data[6] >= 8);
        /* Round 0: every ref new; round 1: none. */
        size_t nrefs = b.data[6];
        bool any_new = false, all_new = true;
        for (size_t i = 0; i < nrefs; i++) {
            bool is_new = (b.data[7 + i / 2] >> ((i & 1) * 4)) & 8;
            any_new = any_new || is_new;
            all_new = all_new && is_new;
        }
        CU_ASSERT(round == 0 ? all_new : !any_new);
        if (round == 0) {
            /* Each ref's nibble (low first) and index byte name the slot
             * the cache put its atom in (checked against tx, not against
             * our own decoder, which would share a layout mistake). */
            bool long_atoms = (b.data[7 + nrefs / 2] >> ((nrefs & 1) * 4)) & 1;
            size_t pos = 7 + nrefs / 2 + 1;
            for (size_t i = 0; i < nrefs; i++) {
                unsigned nib = (b.data[7 + i / 2] >> ((i & 1) * 4)) & 0xF;
                size_t slot = (size_t)(nib & 7) * 256 + b.data[pos++];
                size_t alen =
                    long_atoms ? (size_t)(b.data[pos] << 8 | b.data[pos + 1]) : b.data[pos];
                pos += long_atoms ? 2 : 1;
                term_t atom;
                CU_ASSERT_FATAL(heap_atom_lookup((const char *)b.data + pos, alen, &atom) == 0);
                CU_ASSERT(tx.cache[slot] == atom);
                pos += alen;
            }
        }
        size_t frames;
        CU_ASSERT(decode_all(&f, &b, &frames) == 0 && frames == 1);
        CU_ASSERT(f.m.op == DOP_REG_SEND);
        CU_ASSERT(cmp(f.m.control, ctl) == 0);
        CU_ASSERT(cmp(f.m.payload, msg) == 0);
        etf_buf_free(&b);
    }
    etf_buf_free(&body.bytes);
    fx_free(&f);
}

static const gd_test_case_t gd_tests[] = {
    {"send cache", test_send_cache},
    {"frame for flags", test_frame_for_flags},
    {"capture", test_capture},
    {"long atoms", test_long_atoms},
    {"malformed", test_malformed},
    {"fragments bad", test_fragments_bad},
    {"atom quota", test_atom_quota},
    {"encode roundtrip", test_encode_roundtrip},
    {"a big message is copied once", test_big_message_copied_once},
    {"a big binary is sent by reference", test_big_binary_sent_by_reference},
    {"fragments need a sequence id", test_fragments_need_sequence_id},
    {NULL, NULL},
};

GD_TEST_MAIN("cluster_frame", gd_tests)
