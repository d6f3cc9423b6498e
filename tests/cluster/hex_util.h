/*
 * hex_util.h — hex text to bytes for the cluster/ suites, which write
 * captured frames as "0013 4e 0000000d07df7fbd ...".
 */
#ifndef GIRDER_TESTS_CLUSTER_HEX_UTIL_H
#define GIRDER_TESTS_CLUSTER_HEX_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes the bytes of the hex digits in s to out (anything else, such as
 * spaces, is skipped; digits are lower case) and returns how many. */
size_t hex(const char *s, uint8_t *out);

#endif
