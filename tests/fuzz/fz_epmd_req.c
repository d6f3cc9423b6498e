/*
 * fz_epmd_req.c — libFuzzer harness for the epmd server's request path
 * without sockets: the input is a byte stream of connections.  Each
 * connection starts with a control byte (bit 0: local peer, bit 1: relaxed,
 * bits 2-3: which earlier connection to close first) and a 2-byte count of
 * the bytes it sends; those bytes go through the framer exactly as the
 * server feeds them, and a complete frame through the protocol core.
 * Oracle: the registry invariants hold after every step (unique names,
 * hash and lists agree, limits kept), answers have the shape OTP's epmd
 * gives, nothing reads past a frame (ASan), nothing leaks (LSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FZ_MAX_CONNS 64
#define FZ_MAX_NODES 16
#define FZ_MAX_UNREG 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_conn {
    epmd_node_t *node; /* registration held by this connection */
    bool open;
} fz_conn_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    epmd_registry_t *reg = NULL;
    if (epmd_registry_new(FZ_MAX_UNREG, FZ_MAX_NODES, 1, &reg) != 0)
        return 0;
    fz_conn_t conns[FZ_MAX_CONNS];
    memset(conns, 0, sizeof conns);
    epmd_buf_t out = {0};
    size_t pos = 0;
    for (int c = 0; c < FZ_MAX_CONNS && size - pos >= 3; c++) {
        uint8_t ctl = data[pos];
        size_t n = epmd_get16(data + pos + 1);
        pos += 3;
        if (n > size - pos)
            n = size - pos;
        /* the connection chosen by ctl closes (its node unregisters) */
        int victim = (ctl >> 2) & 3;
        if (c > victim && conns[c - 1 - victim].open) {
            epmd_registry_unregister(reg, conns[c - 1 - victim].node);
            conns[c - 1 - victim] = (fz_conn_t){0};
        }
        /* feed the bytes through the framer in two reads, like recv() */
        size_t want = 0, body = 0;
        size_t first = n / 2;
        int st = epmd_frame_check(data + pos, first, &want, &body);
        if (st == EPMD_FRAME_NEED_MORE)
            st = epmd_frame_check(data + pos, n, &want, &body);
        if (st == EPMD_FRAME_COMPLETE) {
            uint8_t *copy = malloc(body ? body : 1); /* exact size: ASan sees overreads */
            if (copy == NULL)
                break;
            memcpy(copy, data + pos + 2, body);
            epmd_core_ctx_t ctx = {
                .reg = reg,
                .epmd_port = 4369,
                .relaxed = (ctl & 2) != 0,
                .local_peer = (ctl & 1) != 0,
                .owner = &conns[c],
                .fd = c,
                .now = 0x6b062fe0u + (uint32_t)c,
            };
            epmd_outcome_t res;
            out.len = 0;
            if (epmd_core_handle(&ctx, copy, body, &out, &res) == 0) {
                if (res.stop_owner != NULL) {
                    fz_conn_t *v = res.stop_owner;
                    if (v < conns || v >= conns + FZ_MAX_CONNS || !v->open)
                        abort();
                    *v = (fz_conn_t){0};
                }
                if (res.action == EPMD_ACT_KEEP) {
                    if (res.node == NULL || out.len < 4 || out.data[1] != 0)
                        abort();
                    conns[c].open = true;
                    conns[c].node = res.node;
                }
                /* answer shapes */
                if (out.len > 0 && copy[0] == EPMD_PORT2_REQ) {
                    epmd_node_info_t info;
                    int rc = epmd_parse_port2_resp(out.data, out.len, &info);
                    if (rc != 0 && rc != EPMD_ENOTFOUND)
                        abort();
                }
                if (out.len > 0 && copy[0] == EPMD_NAMES_REQ) {
                    epmd_names_t names;
                    if (epmd_parse_names_resp(out.data, out.len, &names) == 0) {
                        if (names.count > epmd_registry_count(reg))
                            abort();
                        epmd_names_free(&names);
                    }
                }
                if (out.len > 0 && copy[0] == EPMD_ALIVE2_REQ) {
                    uint8_t result;
                    uint32_t creation;
                    size_t used;
                    if (epmd_parse_alive2_resp(out.data, out.len, &result, &creation, &used) != 0 ||
                        used != out.len)
                        abort();
                }
            }
            free(copy);
        }
        if (epmd_registry_check(reg) != 0 || epmd_registry_count(reg) > FZ_MAX_NODES)
            abort();
        pos += n;
    }
    epmd_buf_free(&out);
    epmd_registry_free(reg);
    return 0;
}
