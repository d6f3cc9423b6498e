#!/usr/bin/env bash
# tests/bench/dist/run.sh — the distribution benchmark on loopback:
# girder<->girder, erl<->erl and erl<->girder side by side, interleaved.
#
#   tests/bench/dist/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench dist runs it as `run.sh BUILD_DIR`.)  A private EPMD
# (girder epmd on a free port, ERL_EPMD_PORT) serves every node.  Each
# round runs, each pair on fresh nodes:
#   girder       bench_dist drive -> bench_dist peer      (girder<->girder)
#   beam         beam_dist driver -> beam_dist peer       (erl<->erl)
#   erl_girder   beam_dist driver -> bench_dist peer      (an OTP node against girder)
# stdout (and -o FILE, appended) gets every result line tagged with its
# impl and "run":N, an "env" line per run, then "impl":"ratio" lines named
# after the dist_* results: girder<->girder's median over erl<->erl's, and
# the same for erl<->girder with "pair":"erl_girder" in params (girder's
# driver makes its erpc calls with girder_erpc_call).  BUILD_DIR defaults
# to $GD_BUILD_DIR, else build/release.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
bench_args "$@"
bench_for=dist
env_extra=

bench_prepare dist
girder="$build/node/girder"
bench_need_bin "$root" "$build" "$girder" girder "build failed"

peer_pid=
epmd_pid=
cleanup() {
  [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
  [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$here/../../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
cookie=benchdist$$cookie

# start_peer <girder|beam> <name>: a peer node in the background.
start_peer() {
  if [ "$1" = girder ]; then
    "$bin" peer "$2" "$cookie" 2>"$tmp/peer.log" &
  else
    erl -sname "$2" -setcookie "$cookie" -noshell -pa "$tmp" -s beam_dist peer \
      2>"$tmp/peer.log" &
  fi
  peer_pid=$!
}
stop_peer() {
  kill "$peer_pid" 2>/dev/null; wait "$peer_pid" 2>/dev/null; peer_pid=
}

n=0
for run in $(seq 1 "$rounds"); do
  for pair in girder beam erl_girder; do
    n=$((n + 1))
    p=bdp$$_$n; d=bdd$$_$n
    case $pair in
      girder) start_peer girder "$p"
              run_one girder "$run" "$bin" drive "$d" "$cookie" "$p@$host" ;;
      beam) start_peer beam "$p"
            BENCH_DIST_PEER="$p@$host" run_one beam "$run" \
              erl -sname "$d" -setcookie "$cookie" -noshell -pa "$tmp" -s bench_beam run beam_dist ;;
      erl_girder) start_peer girder "$p"
                  BENCH_DIST_PEER="$p@$host" run_one erl_girder "$run" \
                    erl -sname "$d" -setcookie "$cookie" -noshell -pa "$tmp" -s bench_beam run beam_dist ;;
    esac
    stop_peer
  done
done

metrics="dist_pingpong_rate dist_pingpong_rtt_p50 dist_pingpong_rtt_p99
  dist_pingpong_100_rate dist_pingpong_100_rtt_p50 dist_pingpong_100_rtt_p99
  dist_oneway_small dist_oneway_1mib dist_rpc_call dist_erpc_call"
# shellcheck disable=SC2086
bench_ratio_lines "$tmp/girder" "$tmp/beam" $metrics
# erl<->girder against erl<->erl: the same lines, told apart by "pair".
real_out=$out; out=$tmp/mixed.jsonl; : >"$out"
# shellcheck disable=SC2086
bench_ratio_lines "$tmp/erl_girder" "$tmp/beam" $metrics >/dev/null
out=$real_out
while IFS= read -r line; do
  emit "${line/\"params\":\{/\"params\":\{\"pair\":\"erl_girder\",}"
done <"$tmp/mixed.jsonl"
exit $status
