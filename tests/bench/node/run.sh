#!/usr/bin/env bash
# tests/bench/node/run.sh — girder's gen_server call benchmark next to
# BEAM's, interleaved.
#
#   tests/bench/node/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench node runs it as `run.sh BUILD_DIR`.)  Each round runs
# girder's bench_node (A) then beam_node.erl (B) in a fresh VM; stdout (and
# -o FILE, appended) gets their JSON lines tagged "impl":"girder"/"beam" and
# "run":N, an "env" line per run, then per metric an "impl":"ratio" line
# (median of girder's values / median of BEAM's).  BUILD_DIR defaults to
# $GD_BUILD_DIR, else build/release.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
bench_args "$@"
bench_for=node
env_extra=

bench_prepare node

for run in $(seq 1 "$rounds"); do
  run_one girder "$run" "$bin"
  run_one beam "$run" erl -noshell -pa "$tmp" -s bench_beam run beam_node
done

bench_ratio_lines "$tmp/girder" "$tmp/beam" \
  gen_call_rate gen_call_rtt_p50 gen_call_rtt_p99 gen_call_100_rate
exit $status
