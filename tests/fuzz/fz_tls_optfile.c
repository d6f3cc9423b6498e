/*
 * fz_tls_optfile.c — libFuzzer harness for the TLS distribution options
 * (cluster/tls.c): the -ssl_dist_optfile reader and the -ssl_dist_opt
 * pairs.  First byte even: the rest is an optfile's text; odd: the rest is
 * NUL-separated key, value, key, value ... pairs.  Oracles: no crash, leak
 * or over-read (exact-size copy); every call answers 0 or GD_EINVAL (the
 * options and the atoms they name are small: memory never runs out), a
 * refusal comes with a one-line reason, and what was accepted holds
 * NUL-free strings within the cap and sane versions and depth.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_side(const cluster_tls_side_t *s)
{
    const char *strings[] = {s->certfile, s->keyfile, s->cacertfile, s->password,
                             s->ciphers,  s->dhfile,  s->sni};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (strings[i] != NULL && (strings[i][0] == 0 || strlen(strings[i]) >= 4096))
            abort();
    if (s->depth < -1 || s->depth > 100 || s->min_version > s->max_version)
        abort();
}

static void check_refusal(int rc, const char *err)
{
    if (rc != 0 && rc != GD_EINVAL)
        abort();
    if (rc == GD_EINVAL && (err[0] == 0 || strchr(err, '\n') != NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t len = size - 1;
    char *in = malloc(len + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 1, len);
    in[len] = 0;
    cluster_tls_conf_t conf;
    cluster_tls_conf_init(&conf);
    char err[512] = "";
    if ((data[0] & 1) == 0) {
        check_refusal(cluster_tls_conf_parse(&conf, in, len, err, sizeof err), err);
    } else {
        /* Up to 16 pairs, each key and value NUL-terminated in turn. */
        const char *p = in, *end = in + len;
        for (int n = 0; n < 16 && p < end; n++) {
            const char *key = p;
            p += strlen(p) + 1;
            if (p >= end)
                break;
            const char *value = p;
            p += strlen(p) + 1;
            err[0] = 0;
            check_refusal(cluster_tls_conf_opt(&conf, key, value, err, sizeof err), err);
        }
    }
    check_side(&conf.server);
    check_side(&conf.client);
    cluster_tls_conf_free(&conf);
    free(in);
    return 0;
}
