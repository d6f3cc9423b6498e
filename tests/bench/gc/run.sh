#!/usr/bin/env bash
# tests/bench/gc/run.sh — girder's GC benchmark next to BEAM's, interleaved.
#
#   tests/bench/gc/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench gc runs it as `run.sh BUILD_DIR`.)
# Runs girder's bench_gc (A) and BEAM's beam_gc.erl (B) alternately,
# A B A B ... for ROUNDS rounds (default 2, at least 2 recommended: the
# machine is noisy: one BEAM run moves by up to 30% from the next).  Each run does 3 repetitions
# and reports medians.  stdout (and -o FILE, appended) gets JSON lines: every
# result of every run tagged "impl":"girder" or "impl":"beam" and "run":N,
# an "env" line per run (load average before it, wall time), then per
# metric "impl":"ratio" lines: value = median over rounds of girder's values
# / median over rounds of BEAM's, with the per-round ratios in params.
# Progress goes to stderr.  BUILD_DIR defaults to $GD_BUILD_DIR, else
# build/release (built with -DCMAKE_BUILD_TYPE=Release if bench_gc is
# missing there).  BEAM's side is ours: beam_gc.erl here and
# ../bench_beam.erl.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
bench_args "$@"
bench_for=gc
env_extra=

bench_prepare gc

for run in $(seq 1 "$rounds"); do
  run_one girder "$run" "$bin"
  run_one beam "$run" erl -noshell -pa "$tmp" -s bench_beam run beam_gc
done

bench_ratio_lines "$tmp/girder" "$tmp/beam" \
  gc_pause_p50 gc_pause_p99 gc_pause_max gc_count gc_time_share gc_round_time
exit $status
