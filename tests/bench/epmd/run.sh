#!/usr/bin/env bash
# PORT_PLEASE2 lookups/s: girder epmd vs OTP epmd, same client, same run,
# interleaved rounds (girder, otp, girder, otp, ...).  Prints one JSON line
# per round and one per implementation with the median.
#   tests/bench/epmd/run.sh [BUILD_DIR] [ROUNDS] [SECONDS] [CONCURRENCY] [THREADS]
# THREADS (default 2) client threads share the in-flight lookups: the
# client pays for most of each lookup's TCP work (its connect runs the
# handshake on both ends, about twice the server's CPU per lookup), so a
# single client thread saturates before either server and both look equal.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${1:-$root/build/release}
rounds=${2:-3}
secs=${3:-3}
conc=${4:-16}
threads=${5:-2}
girder=$build/node/girder
client=$build/tests/bench/epmd/bench_epmd_client
[ -x "$girder" ] && [ -x "$client" ] || { echo "build girder and bench_epmd_client in $build first" >&2; exit 1; }
command -v epmd >/dev/null || { echo "OTP epmd not found" >&2; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_epmd <cmd...>: starts a daemon (in the foreground of a background
# job) on a free port and sets $port to it.  It runs in this shell, not in a
# $(...) subshell, so the pid it adds to $pids is the one cleanup sees.
start_epmd() {
  local pid
  for _ in $(seq 1 20); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    "$@" -port "$port" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      if "$girder" names -port "$port" >/dev/null 2>&1; then
        pids+=("$pid"); return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  return 1
}
start_epmd "$girder" epmd || { echo "girder epmd did not start" >&2; exit 1; }
gport=$port
start_epmd epmd || { echo "OTP epmd did not start" >&2; exit 1; }
oport=$port

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
g=(); o=()
for r in $(seq 1 "$rounds"); do
  read -r v err _ < <("$client" "$gport" "$secs" "$conc" "$threads")
  g+=("$v")
  echo "{\"bench\":\"epmd_port_please\",\"impl\":\"girder\",\"round\":$r,\"value\":$v,\"errors\":$err,\"threads\":$threads,\"unit\":\"lookups/s\"}"
  read -r v err _ < <("$client" "$oport" "$secs" "$conc" "$threads")
  o+=("$v")
  echo "{\"bench\":\"epmd_port_please\",\"impl\":\"otp\",\"round\":$r,\"value\":$v,\"errors\":$err,\"threads\":$threads,\"unit\":\"lookups/s\"}"
done
gm=$(printf '%s\n' "${g[@]}" | median)
om=$(printf '%s\n' "${o[@]}" | median)
echo "{\"bench\":\"epmd_port_please\",\"impl\":\"girder\",\"stat\":\"median\",\"rounds\":$rounds,\"value\":$gm,\"unit\":\"lookups/s\"}"
echo "{\"bench\":\"epmd_port_please\",\"impl\":\"otp\",\"stat\":\"median\",\"rounds\":$rounds,\"value\":$om,\"unit\":\"lookups/s\"}"
