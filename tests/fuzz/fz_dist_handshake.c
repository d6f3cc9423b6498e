/*
 * fz_dist_handshake.c — libFuzzer harness for the distribution handshake
 * state machine (docs/robustness.md §1, fz_dist_handshake).  The first input byte
 * picks the role (bit 0: initiator) and how the rest is cut into reads
 * (bits 1..7: chunk size); the rest is the peer's byte stream.  Oracles: no
 * crash or over-read (exact-size copy), output within its buffer, no atom
 * created, and UP only after the peer proved the cookie: an acceptor's last
 * message was 'r' carrying MD5(cookie ++ our challenge), an initiator's was
 * 'a' carrying it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool initiator = data[0] & 1;
    size_t chunk = (size_t)(data[0] >> 1) + 1;
    size_t len = size - 1;
    uint8_t *in = malloc(len ? len : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 1, len);
    uint32_t atoms_before = heap_atom_count();

    dist_hs_config_t c = {0};
    c.role = initiator ? DIST_INITIATOR : DIST_ACCEPTOR;
    c.name = initiator ? "a@vm" : "b@vm";
    c.name_len = 4;
    c.creation = initiator ? 0x6b062fe1 : 0x6b062fe0;
    c.flags = DFLAG_GIRDER_DEFAULT;
    c.cookie = "secret";
    c.cookie_len = 6;
    c.challenge = initiator ? 0xf3ee52a2 : 0xafc1b44c;
    c.peer_name = "b@vm";
    c.peer_name_len = 4;
    c.dynamic_seed = 42;
    dist_hs_t hs;
    if (dist_hs_init(&hs, &c) != 0)
        abort();
    uint8_t want[16];
    dist_digest("secret", 6, c.challenge, want);

    size_t pos = 0, avail = 0;
    int rc = 0;
    while (rc == 0 && pos < len) {
        avail = avail + chunk > len - pos ? len - pos : avail + chunk;
        size_t used;
        rc = dist_hs_feed(&hs, in + pos, avail, &used);
        if (hs.out_len > sizeof hs.out || used > avail)
            abort();
        hs.out_len = 0;
        if (rc == 1) {
            /* The message that brought it UP ends at pos + used. */
            const uint8_t *m = in + pos + 2;
            if (initiator ? (used != 19 || m[0] != 'a' || memcmp(m + 1, want, 16) != 0)
                          : (used != 23 || m[0] != 'r' || memcmp(m + 5, want, 16) != 0))
                abort();
            if (!dist_name_valid(hs.peer_name, hs.peer_name_len) ||
                strlen(hs.peer_name) != hs.peer_name_len)
                abort();
        }
        if (used > 0) {
            pos += used;
            avail = 0;
        } else if (rc == 0 && avail == len - pos) {
            break; /* incomplete message at the end of the input */
        }
    }
    if ((rc == 1) != (hs.state == DIST_HS_UP) || (rc < 0 && hs.state != DIST_HS_FAILED))
        abort();
    if (heap_atom_count() != atoms_before)
        abort();
    free(in);
    return 0;
}
