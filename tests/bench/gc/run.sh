#!/usr/bin/env bash
# tests/bench/gc/run.sh — girder's GC benchmark next to BEAM's, interleaved.
#
#   tests/bench/gc/run.sh [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]
#
# (scripts/bench gc runs it as `run.sh BUILD_DIR`.)
# Runs girder's bench_gc (A) and BEAM's bench_gc.erl (B) alternately,
# A B A B ... for ROUNDS rounds (default 2, at least 2 recommended: the
# machine is noisy, see bench-beam/README.md).  Each run does 3 repetitions
# and reports medians.  stdout (and -o FILE, appended) gets JSON lines: every
# result of every run tagged "impl":"girder" or "impl":"beam" and "run":N,
# an "env" line per run (load average before it, wall time), then per
# metric "impl":"ratio" lines: value = median over rounds of girder's values
# / median over rounds of BEAM's, with the per-round ratios in params.
# Progress goes to stderr.  BUILD_DIR defaults to $GD_BUILD_DIR, else
# build/release (built with -DCMAKE_BUILD_TYPE=Release if bench_gc is
# missing there); BEAM's sources come from $BENCH_BEAM_DIR (default
# /work/shared/bench-beam).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
rounds=2
build="${GD_BUILD_DIR:-$root/build/release}"
out=/dev/null
while getopts "n:b:o:" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    b) build=$OPTARG ;;
    o) out=$OPTARG ;;
    *) echo "usage: $0 [-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] && build=$1
case $rounds in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
[ "$rounds" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }

beam_dir=${BENCH_BEAM_DIR:-/work/shared/bench-beam}
command -v erl >/dev/null && command -v erlc >/dev/null || { echo "erl/erlc not found" >&2; exit 1; }
[ -f "$beam_dir/bench_gc.erl" ] && [ -f "$beam_dir/ba.erl" ] ||
  { echo "no bench_gc.erl/ba.erl in $beam_dir" >&2; exit 1; }

bin="$build/tests/bench/gc/bench_gc"
if [ ! -x "$bin" ]; then
  echo "building bench_gc in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$build" --target bench_gc -j "$(nproc 2>/dev/null || echo 2)" >/dev/null ||
    { echo "build failed" >&2; exit 1; }
fi

tmp=$(mktemp -d -t bench-gc.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
erlc -o "$tmp" "$beam_dir/bench_gc.erl" "$beam_dir/ba.erl" || { echo "erlc failed" >&2; exit 1; }

emit() { echo "$1"; echo "$1" >>"$out"; }

# run_one <impl> <run> <command...>: runs it, tags and emits its JSON lines.
status=0
run_one() {
  local impl=$1 run=$2; shift 2
  local load t0 t1 rc
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== run $run: $impl" >&2
  t0=$(date +%s.%N)
  BENCH_RUN=$run timeout 300 "$@" >"$tmp/$impl.$run" 2>"$tmp/err"
  rc=$?
  t1=$(date +%s.%N)
  cat "$tmp/err" >&2
  emit "{\"bench\":\"env\",\"impl\":\"$impl\",\"params\":{\"loadavg_before\":$load},\"value\":$(awk "BEGIN{printf \"%.1f\", $t1-$t0}"),\"unit\":\"s\",\"run\":$run}"
  if [ $rc -ne 0 ]; then
    status=1
    emit "{\"bench\":\"gc\",\"impl\":\"$impl\",\"params\":{},\"value\":null,\"unit\":null,\"error\":\"exit $rc\",\"run\":$run}"
    : >"$tmp/$impl.$run"
    return
  fi
  # BEAM's lines carry no impl: add it after the bench name.
  sed -i '/"impl":/!s/^{"bench":"\([^"]*\)",/{"bench":"\1","impl":"'"$impl"'",/' "$tmp/$impl.$run"
  while IFS= read -r line; do emit "$line"; done <"$tmp/$impl.$run"
}

for run in $(seq 1 "$rounds"); do
  run_one girder "$run" "$bin"
  run_one beam "$run" erl -noshell -pa "$tmp" -s ba run bench_gc
done

# value <file> <bench>: the "value" of that bench's line, or nothing.
value() {
  sed -n 's/^{"bench":"'"$2"'",.*"value":\([-0-9.e+]*\),.*/\1/p' "$1" 2>/dev/null | head -n1
}

# median of the numbers on stdin (nearest rank, as ba:pct/2)
median() {
  sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit; k = int((50 * NR + 99) / 100); if (k < 1) k = 1; print v[k]}'
}

for b in gc_pause_p50 gc_pause_p99 gc_pause_max gc_count gc_time_share gc_round_time; do
  per=""
  : >"$tmp/g.vals"; : >"$tmp/b.vals"
  for run in $(seq 1 "$rounds"); do
    g=$(value "$tmp/girder.$run" "$b"); e=$(value "$tmp/beam.$run" "$b")
    [ -n "$g" ] && echo "$g" >>"$tmp/g.vals"
    [ -n "$e" ] && echo "$e" >>"$tmp/b.vals"
    if [ -n "$g" ] && [ -n "$e" ]; then
      per="$per${per:+,}$(awk "BEGIN{ if ($e == 0) print \"null\"; else printf \"%.3f\", $g / $e }")"
    fi
  done
  gm=$(median <"$tmp/g.vals"); bm=$(median <"$tmp/b.vals")
  if [ -n "$gm" ] && [ -n "$bm" ]; then
    ratio=$(awk "BEGIN{ if ($bm == 0) print \"null\"; else printf \"%.3f\", $gm / $bm }")
  else
    ratio=null; status=1
  fi
  emit "{\"bench\":\"$b\",\"impl\":\"ratio\",\"params\":{\"rounds\":$rounds,\"girder_median\":${gm:-null},\"beam_median\":${bm:-null},\"per_round\":[$per]},\"value\":$ratio,\"unit\":\"girder/beam\"}"
done
exit $status
