/*
 * fz_dist_frame.c — libFuzzer harness for the connected-phase frame decoder
 * (robustness.md §1, fz_dist_frames): the input is the byte stream after a
 * completed handshake, split into 4-byte-length frames and decoded on one
 * connection's receiving side (atom cache, fragments) until the first
 * error, as a connection would close on it.  Oracles: no crash or
 * over-read, reassembly memory within its cap, the atom quota respected up
 * to the frame that broke it, everything freed (LSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    heap_t h;
    dist_rx_t rx;
    dist_rx_limits_t lim = {.max_message = 1 << 16, .atom_quota = 64, .max_sequences = 4};
    if (heap_init(&h, 0) != 0 || dist_rx_init(&rx, &lim) != 0)
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
        pos += 4 + n;
    }
    dist_rx_free(&rx);
    heap_destroy(&h);
    free(in);
    return 0;
}
