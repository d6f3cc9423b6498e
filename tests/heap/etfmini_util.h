/*
 * etfmini_util.h — a small, test-only External Term Format writer, so heap/
 * tests can hand terms to a real `erl` and check girder's term order
 * against OTP's without depending on etf/ (which builds on heap/).
 * Not the codec: no compression, no atom cache, recursion over depth (test
 * terms only).
 */
#ifndef GIRDER_TESTS_ETFMINI_UTIL_H
#define GIRDER_TESTS_ETFMINI_UTIL_H

#include <stdio.h>

#include "heap.h"

/* Appends the ETF encoding of t (without the 131 version byte) to f.
 * Returns 0, or -1 on a write error. */
int etfmini_write(FILE *f, term_t t);

/* True if an `erl` executable is on PATH. */
bool etfmini_have_erl(void);

#endif
