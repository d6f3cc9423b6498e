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
 * the same control and payload.
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
    if (heap_init(&h, 0) != 0 || dist_rx_init(&rx, &lim) != 0 || dist_rx_init(&rx2, NULL) != 0)
        abort();
    size_t pos = 0, n;
    while (pos < size) {
        int rc = dist_frame_split(in + pos, size - pos, lim.max_message, &n);
        if (rc != 1)
            break;
        dist_msg_t m;
        rc = dist_rx_frame(&rx, &h, in + pos + 4, n, &m);
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
        pos += 4 + n;
    }
    dist_rx_free(&rx);
    dist_rx_free(&rx2);
    heap_destroy(&h);
    free(in);
    return 0;
}
