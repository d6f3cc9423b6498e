#!/usr/bin/env bash
# tests/bench/sched/run.sh — girder's process benchmarks next to BEAM's,
# interleaved.
#
#   tests/bench/sched/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench sched runs it as `run.sh BUILD_DIR`.)
# For each round and each of spawn, pingpong, ring, fanin, bigmsg
# and fairness,
# runs girder's bench_sched (A) then BEAM's side, beam_sched.erl NAME (B),
# in a fresh VM, the same workloads (the workload specification in docs/benchmarks.md).  stdout
# (and -o FILE, appended) gets JSON lines: every result tagged
# "impl":"girder" or "impl":"beam" and "run":N, an "env" line per run, then
# per metric an "impl":"ratio" line: median over rounds of girder's values
# / median of BEAM's, with the per-round ratios in params; for the fairness
# latenesses also "impl":"diff" lines (girder's median - BEAM's, ms), where
# girder's fairness_cloop_* (busy processes that are plain C loops, which
# BEAM cannot run) is set against BEAM's fairness_*.  BEAM's 100-pair
# pingpong lines are named pingpong_100_* (as girder's) so the two pingpong
# sizes are told apart.  BUILD_DIR defaults to $GD_BUILD_DIR, else build/release.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
bench_args "$@"
bench_for=sched
env_extra=

bench_prepare sched

for run in $(seq 1 "$rounds"); do
  : >"$tmp/girder.all.$run"; : >"$tmp/beam.all.$run"
  for b in spawn pingpong ring fanin bigmsg fairness; do
    bench_for=$b
    run_one girder "$run" "$bin" "$b"
    cat "$tmp/girder.$run" >>"$tmp/girder.all.$run"
    run_one beam "$run" erl -noshell +P 2000000 -pa "$tmp" -s bench_beam run beam_sched -extra "$b"
    cat "$tmp/beam.$run" >>"$tmp/beam.all.$run"
  done
done

bench_ratio_lines "$tmp/girder.all" "$tmp/beam.all" \
  spawn_rate spawn_ready_rate spawn_mem_per_proc spawn_kill_rate \
  pingpong_rate pingpong_rtt_p50 pingpong_rtt_p99 \
  pingpong_100_rate pingpong_100_rtt_p50 pingpong_100_rtt_p99 ring_rate fanin_rate \
  bigmsg_list bigmsg_binary \
  fairness_idle_lateness_p50 fairness_idle_lateness_p99 fairness_idle_wakeups \
  fairness_lateness_p50 fairness_lateness_p99 fairness_lateness_max fairness_wakeups
# Lateness against BEAM's in ms (the target: p99 within BEAM's + 2 ms); the
# C-loop variant, which BEAM cannot run, against BEAM's busy case.
bench_diff_lines "$tmp/girder.all" "$tmp/beam.all" \
  fairness_idle_lateness_p99 fairness_lateness_p50 fairness_lateness_p99 \
  fairness_cloop_lateness_p50:fairness_lateness_p50 \
  fairness_cloop_lateness_p99:fairness_lateness_p99 \
  fairness_cloop_lateness_max:fairness_lateness_max
exit $status
