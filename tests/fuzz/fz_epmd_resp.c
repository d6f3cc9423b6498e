/*
 * fz_epmd_resp.c — libFuzzer harness for the epmd client's response
 * parsers (what a hostile or broken epmd could send back): ALIVE2_RESP /
 * ALIVE2_X_RESP fed byte by byte, PORT2_RESP and NAMES answers whole.
 * Oracle: no crash, no read past the buffer (the input is copied to an
 * exact-size allocation), parsed fields within the protocol's limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    for (size_t i = 0; i <= size && i <= 8; i++) {
        uint8_t result;
        uint32_t creation;
        size_t used;
        int rc = epmd_parse_alive2_resp(buf, i, &result, &creation, &used);
        if (rc == 0 && (used > i || result > 1))
            abort();
    }
    epmd_node_info_t info;
    if (epmd_parse_port2_resp(buf, size, &info) == 0) {
        size_t nlen = strlen(info.name);
        if (nlen == 0 || nlen > EPMD_MAX_NAME_BYTES || info.extra_len > EPMD_MAX_EXTRA_BYTES)
            abort();
    }
    epmd_names_t names;
    if (epmd_parse_names_resp(buf, size, &names) == 0) {
        for (size_t i = 0; i < names.count; i++)
            if (names.entries[i].port > 65535 || strlen(names.entries[i].name) == 0)
                abort();
        epmd_names_free(&names);
    }
    free(buf);
    return 0;
}
