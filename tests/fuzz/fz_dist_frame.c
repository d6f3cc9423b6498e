/*
 * fz_dist_frame.c — libFuzzer harness for the connected-phase frame decoder
 * (docs/robustness.md §1, fz_dist_frame): the input is the byte stream after a
 * completed handshake, split into 4-byte-length frames and decoded on one
 * connection's receiving side (atom cache, fragments) until the first
 * error, as a connection would close on it.  Oracles: no crash or
 * over-read, reassembly memory within its cap, the atom quota respected up
 * to the frame that broke it, everything freed (LSan).  Every message
 * decoded is sent back through the encoder with the atom cache
 * (dist_frame_cached, a second connection's caches) and must decode to
 * the same control and payload.  Every other frame goes through the
 * receive path's copy-saving entries (dist_rx_frag_room/_complete,
 * dist_rx_frame_in onto a message builder), whose message must survive
 * being taken as a chain and merged by a collection.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(term_t a, term_t b)
{
    int order = 1;
    return heap_compare_checked(a, b, true, &order) == 0 && order == 0;
}

/* Encodes m again through the send-side atom cache and decodes it. */
static void roundtrip(heap_t *h, dist_rx_t *rx2, dist_tx_t *tx, const dist_msg_t *m)
{
    dist_body_t body = {0};
    etf_buf_t b = {0};
    int rc = dist_encode_body(m->control, m->payload, &body);
    if (rc == ETF_EUNENCODABLE || rc == ETF_EDEPTH)
        goto out; /* decodable but not re-encodable is etf/'s business */
    if (rc != 0 || dist_frame_cached(&body, DFLAG_GIRDER_DEFAULT, tx, &b) != 0)
        abort();
    size_t n;
    dist_msg_t m2;
    if (dist_frame_split(b.data, b.len, b.len, &n) != 1 ||
        dist_rx_frame(rx2, h, b.data + 4, n, &m2) != 0 || m2.op != m->op ||
        !same(m2.control, m->control) || (m->payload != TERM_NONE && !same(m2.payload, m->payload)))
        abort();
out:
    etf_buf_free(&b);
    etf_buf_free(&body.bytes);
}

/* node.c's read_fragment_data / read_big_frame on p[0..n) onto the
 * message builder mh. */
static int copy_saving(dist_rx_t *rx, heap_t *mh, const uint8_t *p, size_t n, dist_msg_t *m)
{
    m->op = 0;
    uint8_t *dst;
    int r = n > DIST_FRAG_CONT_HDR_LEN ? dist_rx_frag_room(rx, p, n, &dst) : 0;
    if (r < 0)
        return r;
    if (r > 0) {
        memcpy(dst, p + DIST_FRAG_CONT_HDR_LEN, n - DIST_FRAG_CONT_HDR_LEN);
        return r == 2 ? dist_rx_frag_complete(rx, mh, p, m) : 0;
    }
    heap_binary_t *frame = heap_binary_new(n);
    if (frame == NULL)
        return GD_ENOMEM;
    if (n > 0)
        memcpy(frame->data, p, n);
    int rc = dist_rx_frame_in(rx, mh, frame, n, m);
    heap_binary_unref(frame);
    return rc;
}

/* The message built on mh, taken as a message chain and merged into a
 * process-like heap by a collection, is still the same term. */
static bool check_built(heap_t *mh, dist_msg_t *m)
{
    heap_t scratch, recv;
    if (heap_init(&scratch, 0) != 0 || heap_init(&recv, 0) != 0)
        abort();
    term_t before, after;
    heap_frag_t *f;
    if (heap_msg_copy(m->payload != TERM_NONE ? m->payload : m->control, &f, &before) != 0)
        abort();
    heap_attach_frag(&scratch, f);
    after = m->payload != TERM_NONE ? m->payload : m->control;
    heap_attach_frag(&recv, heap_msg_build_take(mh));
    term_t *roots[] = {&after};
    bool ok = heap_gc(&recv, 0, roots, 1) == 0 && same(before, after);
    m->control = m->payload = TERM_NONE; /* gone with mh's words */
    heap_destroy(&recv);
    heap_destroy(&scratch);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    heap_t h;
    dist_rx_t rx, rx2;
    dist_tx_t tx;
    dist_tx_init(&tx);
    dist_rx_limits_t lim = {.max_message = 1 << 16, .atom_quota = 64, .max_sequences = 4};
    heap_t mh;
    if (heap_init(&h, 0) != 0 || heap_msg_build_init(&mh) != 0 || dist_rx_init(&rx, &lim) != 0 ||
        dist_rx_init(&rx2, NULL) != 0)
        abort();
    size_t pos = 0, n, frame_no = 0;
    while (pos < size) {
        int rc = dist_frame_split(in + pos, size - pos, lim.max_message, &n);
        if (rc != 1)
            break;
        dist_msg_t m;
        /* Every other frame takes node.c's copy-saving path: a
         * continuation fragment copied into its sequence's buffer (the
         * last one completing the message into message fragments), any
         * other frame read into a binary of its own whose bytes the
         * message's binaries reference. */
        bool built = frame_no++ % 2 == 1;
        rc = built ? copy_saving(&rx, &mh, in + pos + 4, n, &m)
                   : dist_rx_frame(&rx, &h, in + pos + 4, n, &m);
        if (rx.frag_bytes > 2 * lim.max_message)
            abort();
        if (rc < 0)
            break;
        if (m.op != 0 && (!term_is_boxed_of(m.control, HDR_TUPLE) ||
                          (m.payload != TERM_NONE) != dist_op_has_payload(m.op)))
            abort();
        if (rx.atoms_created > lim.atom_quota)
            abort();
        if (m.op != 0)
            roundtrip(&h, &rx2, &tx, &m);
        if (built && m.op != 0 && !check_built(&mh, &m))
            abort();
        pos += 4 + n;
    }
    dist_rx_free(&rx);
    dist_rx_free(&rx2);
    heap_destroy(&mh);
    heap_destroy(&h);
    free(in);
    return 0;
}
