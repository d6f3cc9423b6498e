/*
 * epmd_test_util.h — helpers shared by the epmd test executables
 * (test_epmd_proto, test_epmd_server, test_epmd_probes): a monotonic clock
 * and sleeps for the polling loops, a free TCP port, loopback connections,
 * a bounded read of a peer's answer and the ALIVE2 request builder.  Prefix `et_` (epmd test).
 */
#ifndef GIRDER_TESTS_EPMD_TEST_UTIL_H
#define GIRDER_TESTS_EPMD_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The monotonic clock in milliseconds, for deadlines of polling loops. */
int64_t et_mono_ms(void);

/* Sleeps ms milliseconds, resuming after signals. */
void et_sleep_ms(int ms);

/*
 * Asks the kernel for a TCP port currently free on every IPv4 address (the
 * servers under test listen on the wildcard by default, and a wildcard bind
 * also rules out loopback); 0 when none could be had.  Racy by nature:
 * callers that start a daemon on it retry with another port.
 */
uint16_t et_free_port(void);

/* Connects a TCP socket to 127.0.0.1:port; the descriptor (owned by the
 * caller), or -1 when the connection is refused. */
int et_connect(uint16_t port);

/*
 * Reads from fd into buf until cap bytes have come, the peer closed
 * (EOF or reset: *closed is set) or timeout_ms passed; returns the count
 * read.  cap must be > 0.
 */
size_t et_read_until_close(int fd, uint8_t *buf, size_t cap, int timeout_ms, bool *closed);

/* Raises this process's descriptor limit to its hard limit, for tests that
 * open thousands of connections (best effort). */
void et_raise_nofile(void);

/*
 * Writes the body (no length prefix) of an ALIVE2_REQ into b: node port
 * port, type normal, protocol TCP/IPv4, versions hi/lo, the nlen bytes of
 * name (taken as they are: NULs and bad UTF-8 included, for probes) and
 * elen bytes of extra; returns its length, 13 + nlen + elen.  b must hold
 * that much.
 */
size_t et_alive_body(uint8_t *b, const void *name, size_t nlen, uint16_t port, uint16_t hi,
                     uint16_t lo, const uint8_t *extra, size_t elen);

#endif
