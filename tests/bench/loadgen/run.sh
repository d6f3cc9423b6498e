#!/usr/bin/env bash
# tests/bench/loadgen/run.sh — girder bench's client side against an
# Erlang load generator, both driving the same target, interleaved.
#
#   tests/bench/loadgen/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench loadgen runs it as `run.sh BUILD_DIR`.)
# Two targets serve the whole run: an erl node running beam_loadgen's echo
# server, and a `girder node` (its echo service, the same contract).  Each
# round runs, against each target in turn, (A) `girder bench --workload
# echo --clients 1000` and (B) beam_loadgen:main() on a fresh erl node:
# 1000 Erlang processes doing the same round trips ({Self, {Seq, Payload}}
# to echo, await {echo_reply, _}, check it) for the same duration and
# warm-up.  stdout (and -o FILE) gets JSON lines: loadgen_echo (round
# trips/s), loadgen_echo_p50/_p99 (us) per side, target and round, "env"
# lines, loadgen_target_cpu (the OTP target's CPU seconds per wall second
# while each side ran: at ~1.0 its one busy scheduler thread is the
# limit, not the client), then ratio lines (girder's median / BEAM's):
# loadgen_echo is the throughput ratio (issue 15's target: >= 2), with
# "target":"girder" in params for the girder target.  CLIENTS,
# DURATION_S, WARMUP_S and PAYLOAD_BYTES in the environment change the
# workload (defaults 1000, 5, 1, 32).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
bench_args "$@"
bench_for=loadgen_echo
clients=${CLIENTS:-1000}
duration=${DURATION_S:-5}
warmup=${WARMUP_S:-1}
bytes=${PAYLOAD_BYTES:-32}
env_extra="\"clients\":$clients,\"duration_s\":$duration,\"warmup_s\":$warmup,"

bench_need_beam "$here/beam_loadgen.erl"
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
girder="$build/node/girder"
bench_need_bin "$root" "$build" "$girder" girder "build failed"
bench_tmpdir bench-loadgen.XXXXXX "$here/beam_loadgen.erl"

fail() { echo "$*" >&2; exit 1; }
target_pid=; gtarget_pid=; epmd_pid=
stop_all() {
  for p in $target_pid $gtarget_pid $epmd_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap stop_all EXIT
. "$here/../../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
cookie=gdlg_$$_cookie_0123456789
# await_node <node> <what>: waits up to 10 s for it to answer a ping.
await_node() {
  for _ in $(seq 1 100); do
    "$girder" ping -setcookie "$cookie" -timeout 1 "$1" >/dev/null 2>&1 && return
    sleep 0.1
  done
  "$girder" ping -setcookie "$cookie" "$1" >/dev/null || fail "$2 did not start"
}
target=gdlg_target_$$@$host
erl -noshell -sname "gdlg_target_$$" -setcookie "$cookie" -pa "$tmp" \
    -eval 'beam_loadgen:target()' >"$tmp/target.log" 2>&1 &
target_pid=$!
await_node "$target" "the target node"
"$girder" rpc -setcookie "$cookie" "$target" erlang whereis '[echo]' | grep -q '^<' ||
  fail "the target has no echo process"
gtarget=gdlg_gtarget_$$@$host
"$girder" node -sname "gdlg_gtarget_$$" -setcookie "$cookie" >"$tmp/gtarget.log" 2>&1 &
gtarget_pid=$!
await_node "$gtarget" "the girder target"

# cpu_s <pid>: user + system CPU seconds of that process so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# target_cpu <impl> <run> <before> <after> <t0> <t1>: the OTP target's
# CPU seconds per wall second while that side ran.
target_cpu() {
  emit "{\"bench\":\"loadgen_target_cpu\",\"impl\":\"$1\",\"params\":{\"target\":\"$target\"},\"value\":$(awk "BEGIN{printf \"%.2f\", ($4 - $3) / ($6 - $5)}"),\"unit\":\"cpu_s/s\",\"run\":$2}"
}
# side <impl> <run> <target> <stem>: one client side against one target.
side() {
  local impl=$1 run=$2 tgt=$3 stem=$4 c0 c1 t0 t1
  c0=$(cpu_s "$target_pid"); t0=$(date +%s.%N)
  if [ "$impl" = girder ]; then
    run_stem=$stem run_one girder "$run" "$here/girder_side.sh" "$girder" "$cookie" "$tgt" "$clients" \
        "$duration" "$warmup" "$bytes" "$tmp/$stem.json"
  else
    run_stem=$stem run_one beam "$run" erl -noshell -hidden -sname "gdlg_gen_${$}_${stem}_$run" \
        -setcookie "$cookie" -pa "$tmp" -s bench_beam run beam_loadgen \
        -extra "$tgt" "$clients" "$((duration * 1000))" "$((warmup * 1000))" "$bytes"
  fi
  c1=$(cpu_s "$target_pid"); t1=$(date +%s.%N)
  [ "$tgt" = "$target" ] && target_cpu "$impl" "$run" "$c0" "$c1" "$t0" "$t1"
}

for run in $(seq 1 "$rounds"); do
  side girder "$run" "$target" girder
  side beam "$run" "$target" beam
  side girder "$run" "$gtarget" girder_gt
  side beam "$run" "$gtarget" beam_gt
done

bench_ratio_lines "$tmp/girder" "$tmp/beam" loadgen_echo loadgen_echo_p50 loadgen_echo_p99
# Against the girder target: the same lines, told apart by "target".
real_out=$out; out=$tmp/gt.jsonl; : >"$out"
bench_ratio_lines "$tmp/girder_gt" "$tmp/beam_gt" loadgen_echo loadgen_echo_p50 \
    loadgen_echo_p99 >/dev/null
out=$real_out
while IFS= read -r line; do
  emit "${line/\"params\":\{/\"params\":\{\"target\":\"girder\",}"
done <"$tmp/gt.jsonl"
exit $status
