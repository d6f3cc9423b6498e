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
# lines; from the middle of each side's measured window (durations of 3 s
# or more) loadgen_target_cpu (the target's CPU seconds per wall second:
# at ~1.0 the target's one busy scheduler thread is the limit, not the
# client), loadgen_client_cpu and loadgen_client_cpu_per_rt (the client's
# CPU µs per round trip: what one round trip costs the generator).  Then
# ratio lines (girder's median / BEAM's): loadgen_echo is the throughput
# ratio (issue 15's target: >= 2), loadgen_client_cpu_per_rt the cost
# ratio, with "target":"girder" in params for the girder target.  CLIENTS,
# DURATION_S, WARMUP_S and PAYLOAD_BYTES in the environment change the
# workload (defaults 1000, 5, 1, 32).
#
# Placement: with two cores or more, the targets run on the first core this
# script may use and each client side on the others (taskset), so both
# generators get the same CPU and neither takes it from the target: a
# client sharing the target's cores is measured by how much CPU it leaves
# the target, not by what it can send.  Each side's runtime sees only its
# cores (BEAM and girder size their schedulers by the affinity mask).
# PLACEMENT=shared runs everything on every core instead; the "env" lines
# say which ("placement").
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
placement=${PLACEMENT:-split}
# The cores this script may use (its affinity list, e.g. "0-3,6").
cores=()
for part in $(taskset -cp $$ 2>/dev/null | sed 's/.*: *//' | tr ',' ' '); do
  if [[ $part == *-* ]]; then cores+=($(seq "${part%-*}" "${part#*-}")); else cores+=("$part"); fi
done
on_target=(); on_client=()
if [ "$placement" = split ] && [ ${#cores[@]} -ge 2 ]; then
  on_target=(taskset -c "${cores[0]}")
  on_client=(taskset -c "$(IFS=,; echo "${cores[*]:1}")")
else
  placement=shared
fi
env_extra="\"clients\":$clients,\"duration_s\":$duration,\"warmup_s\":$warmup,\"placement\":\"$placement\","

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
"${on_target[@]}" erl -noshell -sname "gdlg_target_$$" -setcookie "$cookie" -pa "$tmp" \
    -eval 'beam_loadgen:target()' >"$tmp/target.log" 2>&1 &
target_pid=$!
await_node "$target" "the target node"
"$girder" rpc -setcookie "$cookie" "$target" erlang whereis '[echo]' | grep -q '^<' ||
  fail "the target has no echo process"
gtarget=gdlg_gtarget_$$@$host
"${on_target[@]}" "$girder" node -sname "gdlg_gtarget_$$" -setcookie "$cookie" >"$tmp/gtarget.log" 2>&1 &
gtarget_pid=$!
await_node "$gtarget" "the girder target"

# cpu_s <pid>: user + system CPU seconds of that process so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null; }
# window_cpu <client-pattern> <target-pid> <file>: the CPU seconds the
# target and the client (the process pgrep -f finds by the pattern) use
# within the measured window, from 1 s after the warm-up to 1 s before the
# end (start-up and shutdown left out), into file as "TARGET CLIENT WALL".
window_cpu() {
  local cp t0 c0 w0 t1 c1 w1
  sleep "$((warmup + 1))"
  cp=$(pgrep -f -- "$1" | head -n1)
  [ -n "$cp" ] || return
  t0=$(cpu_s "$2"); c0=$(cpu_s "$cp"); w0=$(date +%s.%N)
  sleep "$((duration - 2))"
  t1=$(cpu_s "$2"); c1=$(cpu_s "$cp"); w1=$(date +%s.%N)
  [ -n "$t0" ] && [ -n "$c0" ] && [ -n "$t1" ] && [ -n "$c1" ] &&
    awk "BEGIN{printf \"%.3f %.3f %.3f\", $t1 - $t0, $c1 - $c0, $w1 - $w0}" >"$3"
}
# cpu_lines <impl> <run> <target-node> <stem>: from window_cpu's figures,
# loadgen_target_cpu and loadgen_client_cpu (CPU seconds per wall second)
# and loadgen_client_cpu_per_rt (the client's CPU µs per round trip at the
# rate it reached), also kept in the side's result file for the ratios.
cpu_lines() {
  local f=$tmp/$4.$2 w rate tc cc
  [ -s "$tmp/$4.cpu" ] || return 0
  read -r tc cc w <"$tmp/$4.cpu"
  rate=$(value "$f" loadgen_echo)
  [ -n "$rate" ] || return 0
  cpu_line "$f" "$1" "$2" "$3" loadgen_target_cpu "$(awk "BEGIN{printf \"%.2f\", $tc / $w}")" cpu_s/s
  cpu_line "$f" "$1" "$2" "$3" loadgen_client_cpu "$(awk "BEGIN{printf \"%.2f\", $cc / $w}")" cpu_s/s
  cpu_line "$f" "$1" "$2" "$3" loadgen_client_cpu_per_rt \
    "$(awk "BEGIN{printf \"%.3f\", $cc / $w / $rate * 1e6}")" us
}
# cpu_line <file> <impl> <run> <target-node> <bench> <value> <unit>: one
# such line, emitted and appended to file.
cpu_line() {
  local line="{\"bench\":\"$5\",\"impl\":\"$2\",\"params\":{\"target\":\"$4\"},\"value\":$6,\"unit\":\"$7\",\"run\":$3}"
  emit "$line"
  echo "$line" >>"$1"
}
# side <impl> <run> <target> <stem>: one client side against one target.
side() {
  local impl=$1 run=$2 tgt=$3 stem=$4 tpid=$target_pid sampler= pattern cmd
  [ "$tgt" = "$gtarget" ] && tpid=$gtarget_pid
  rm -f "$tmp/$stem.cpu"
  if [ "$impl" = girder ]; then
    pattern="^[^ ]*/girder bench -setcookie .*$tmp/$stem.json"
    cmd=("$here/girder_side.sh" "$girder" "$cookie" "$tgt" "$clients" "$duration" "$warmup"
         "$bytes" "$tmp/$stem.json")
  else
    pattern="^[^ ]*beam[^ ]* .*gdlg_gen_${$}_${stem}_$run"
    cmd=(erl -noshell -hidden -sname "gdlg_gen_${$}_${stem}_$run" -setcookie "$cookie"
         -pa "$tmp" -s bench_beam run beam_loadgen
         -extra "$tgt" "$clients" "$((duration * 1000))" "$((warmup * 1000))" "$bytes")
  fi
  if [ "$duration" -ge 3 ]; then
    window_cpu "$pattern" "$tpid" "$tmp/$stem.cpu" &
    sampler=$!
  fi
  run_stem=$stem run_one "$impl" "$run" "${on_client[@]}" "${cmd[@]}"
  [ -n "$sampler" ] && wait "$sampler"
  cpu_lines "$impl" "$run" "$tgt" "$stem"
}

for run in $(seq 1 "$rounds"); do
  side girder "$run" "$target" girder
  side beam "$run" "$target" beam
  side girder "$run" "$gtarget" girder_gt
  side beam "$run" "$gtarget" beam_gt
done

bench_ratio_lines "$tmp/girder" "$tmp/beam" loadgen_echo loadgen_echo_p50 loadgen_echo_p99 \
    loadgen_client_cpu_per_rt
# Against the girder target: the same lines, told apart by "target".
real_out=$out; out=$tmp/gt.jsonl; : >"$out"
bench_ratio_lines "$tmp/girder_gt" "$tmp/beam_gt" loadgen_echo loadgen_echo_p50 \
    loadgen_echo_p99 loadgen_client_cpu_per_rt >/dev/null
out=$real_out
while IFS= read -r line; do
  emit "${line/\"params\":\{/\"params\":\{\"target\":\"girder\",}"
done <"$tmp/gt.jsonl"
exit $status
