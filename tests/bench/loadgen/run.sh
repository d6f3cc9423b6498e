#!/usr/bin/env bash
# tests/bench/loadgen/run.sh — girder bench's client side against an
# Erlang load generator, both driving the same target, interleaved.
#
#   tests/bench/loadgen/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench loadgen runs it as `run.sh BUILD_DIR`.)
# One erl node (the target) runs beam_loadgen's echo server for the whole
# run.  Each round runs (A) `girder bench --workload echo --clients 1000`
# against it, then (B) beam_loadgen:main() on a fresh erl node: 1000 Erlang
# processes doing the same round trips ({Self, {Seq, Payload}} to echo,
# await {echo_reply, _}, check it) for the same duration and warm-up.
# stdout (and -o FILE) gets JSON lines: loadgen_echo (round trips/s),
# loadgen_echo_p50/_p99 (us) per side and round, "env" lines, then ratio
# lines (girder's median / BEAM's): loadgen_echo is the throughput ratio
# (issue 15's target: >= 2).  CLIENTS, DURATION_S, WARMUP_S and
# PAYLOAD_BYTES in the environment change the workload (defaults 1000, 5,
# 1, 32).
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
target_pid=; epmd_pid=
stop_all() {
  for p in $target_pid $epmd_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap stop_all EXIT
. "$here/../../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
cookie=gdlg_$$_cookie_0123456789
target=gdlg_target_$$@$host
erl -noshell -sname "gdlg_target_$$" -setcookie "$cookie" -pa "$tmp" \
    -eval 'beam_loadgen:target()' >"$tmp/target.log" 2>&1 &
target_pid=$!
for i in $(seq 1 100); do
  "$girder" ping -setcookie "$cookie" -timeout 1 "$target" >/dev/null 2>&1 && break
  sleep 0.1
done
"$girder" ping -setcookie "$cookie" "$target" >/dev/null || fail "the target node did not start"
"$girder" rpc -setcookie "$cookie" "$target" erlang whereis '[echo]' | grep -q '^<' ||
  fail "the target has no echo process"

for run in $(seq 1 "$rounds"); do
  run_one girder "$run" "$here/girder_side.sh" "$girder" "$cookie" "$target" "$clients" \
      "$duration" "$warmup" "$bytes" "$tmp/girder.json"
  run_one beam "$run" erl -noshell -hidden -sname "gdlg_gen_${$}_$run" -setcookie "$cookie" \
      -pa "$tmp" -s bench_beam run beam_loadgen \
      -extra "$target" "$clients" "$((duration * 1000))" "$((warmup * 1000))" "$bytes"
done

bench_ratio_lines "$tmp/girder" "$tmp/beam" loadgen_echo loadgen_echo_p50 loadgen_echo_p99
exit $status
