# tests/bench/lib.sh — shell functions shared by the bench run.sh scripts
# that run girder next to BEAM (tests/bench/etf, gc, sched): the same
# interleaved rounds, the same JSON tagging and the same medians, so that
# every comparison is made by one piece of code.  Source it; it runs nothing.
#
# The caller sets, before calling these:
#   rounds     number of rounds (checked by bench_check_rounds)
#   out        file that emit appends to (/dev/null for none)
#   bench_for  the bench's name: the "bench" of a failed run's line
#   env_extra  JSON members put first in every "env" line's params, each
#              followed by a comma (may be empty)
# and reads back `status` (1 once any run failed) and `tmp` (the scratch
# directory made by bench_tmpdir, removed at exit).

# bench_check_rounds: exits 2 unless $rounds is a whole number >= 1.
bench_check_rounds() {
  case $rounds in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
  [ "$rounds" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }
}

# The BEAM side of every bench is ours: tests/bench/<name>/beam_<name>.erl
# with the shared helpers of tests/bench/bench_beam.erl, run as
# `erl -noshell -pa DIR -s bench_beam run beam_<name>`.
bench_beam_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench_beam.erl

# bench_need_beam <beam_name.erl>: exits 1 unless erl, erlc and the BEAM
# side of the bench (with bench_beam.erl) are there.
bench_need_beam() {
  command -v erl >/dev/null && command -v erlc >/dev/null || { echo "erl/erlc not found" >&2; exit 1; }
  [ -f "$1" ] && [ -f "$bench_beam_lib" ] ||
    { echo "missing $1 or $bench_beam_lib" >&2; exit 1; }
}

# bench_need_bin <root> <build> <bin> <target> <failure text>: builds <target>
# in <build> (Release) unless <bin> is already an executable; exits 1 with
# the failure text if that build fails.
bench_need_bin() {
  if [ ! -x "$3" ]; then
    echo "building $4 in $2" >&2
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
      cmake --build "$2" --target "$4" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null ||
      { echo "$5" >&2; exit 1; }
  fi
}

# bench_tmpdir <template> <erl files...>: makes $tmp (removed on exit) and
# compiles the BEAM side (the files and bench_beam.erl) into it; exits 1 if
# erlc fails.
bench_tmpdir() {
  tmp=$(mktemp -d -t "$1")
  shift
  trap 'rm -rf "$tmp"' EXIT
  erlc -o "$tmp" "$@" "$bench_beam_lib" || { echo "erlc failed" >&2; exit 1; }
}

# bench_prepare <name>: the start every girder-vs-BEAM bench in
# tests/bench/<name>/ shares (the caller sets here, root and build):
# needs erl, erlc and beam_<name>.erl, builds bench_<name> in $build unless
# it is there (bin is set to it), and compiles the BEAM side into $tmp.
bench_prepare() {
  bench_need_beam "$here/beam_$1.erl"
  bin="$build/tests/bench/$1/bench_$1"
  bench_need_bin "$root" "$build" "$bin" "bench_$1" "build failed"
  bench_tmpdir "bench-$1.XXXXXX" "$here/beam_$1.erl"
}

emit() { echo "$1"; echo "$1" >>"$out"; }

# run_one <impl> <run> <command...>: runs it, tags and emits its JSON lines
# (kept in $tmp/<impl>.<run>, or $tmp/$run_stem.<run> when run_stem is set).
status=0
run_one() {
  local impl=$1 run=$2; shift 2
  local load t0 t1 rc f="$tmp/${run_stem:-$impl}.$run"
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== run $run: $impl" >&2
  t0=$(date +%s.%N)
  BENCH_RUN=$run timeout 300 "$@" >"$f" 2>"$tmp/err"
  rc=$?
  t1=$(date +%s.%N)
  cat "$tmp/err" >&2
  emit "{\"bench\":\"env\",\"impl\":\"$impl\",\"params\":{$env_extra\"loadavg_before\":$load},\"value\":$(awk "BEGIN{printf \"%.1f\", $t1-$t0}"),\"unit\":\"s\",\"run\":$run}"
  if [ $rc -ne 0 ]; then
    status=1
    emit "{\"bench\":\"$bench_for\",\"impl\":\"$impl\",\"params\":{},\"value\":null,\"unit\":null,\"error\":\"exit $rc\",\"run\":$run}"
    : >"$f"
    return
  fi
  # BEAM's lines carry no impl: add it after the bench name.
  sed -i '/"impl":/!s/^{"bench":"\([^"]*\)",/{"bench":"\1","impl":"'"$impl"'",/' "$f"
  while IFS= read -r line; do emit "$line"; done <"$f"
}

# value <file> <bench> [kind]: the "value" of that bench's line (of that
# kind's line when a kind other than "all" is given), or nothing.
value() {
  if [ "${3:-all}" = all ]; then
    sed -n 's/^{"bench":"'"$2"'",.*"value":\([-0-9.e+]*\),.*/\1/p' "$1" 2>/dev/null | head -n1
  else
    sed -n '/"kind":"'"$3"'"/s/^{"bench":"'"$2"'",.*"value":\([-0-9.e+]*\),.*/\1/p' "$1" 2>/dev/null | head -n1
  fi
}

# median of the numbers on stdin (nearest rank, as ba:pct/2)
median() {
  sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit; k = int((50 * NR + 99) / 100); if (k < 1) k = 1; print v[k]}'
}

# ratio <a> <b>: a / b to three decimals, or null when b is 0.
ratio() { awk "BEGIN{ if ($2 == 0) print \"null\"; else printf \"%.3f\", $1 / $2 }"; }

# bench_args "$@": the options the girder-vs-BEAM run.sh scripts share,
# `[-n ROUNDS] [-b BUILD_DIR] [-o FILE] [BUILD_DIR]`; sets rounds (default
# 2), build (default $GD_BUILD_DIR, else $root/build/release: the caller sets
# root) and out (default /dev/null), and checks rounds.  Exits 2 on a bad
# option.
bench_args() {
  rounds=2
  build="${GD_BUILD_DIR:-$root/build/release}"
  out=/dev/null
  local opt OPTIND=1
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
  bench_check_rounds
}

# bench_ratio_lines <girder-stem> <beam-stem> <metric...>: for each metric,
# emits an "impl":"ratio" line: the median over rounds of girder's values
# (read from <girder-stem>.<run>) over the median of BEAM's
# (<beam-stem>.<run>), with both medians and the per-round ratios in params.
# A metric missing on either side gives value null and sets status=1.  A
# metric written GIRDER_NAME:BEAM_NAME compares two differently named
# results (the line is named after girder's).
bench_ratio_lines() {
  bench_compare_lines ratio girder/beam "$@"
}
# bench_diff_lines: as bench_ratio_lines with "impl":"diff" lines, girder's
# median minus BEAM's (same unit as the metric: for latencies, how much
# later girder is).
bench_diff_lines() {
  bench_compare_lines difference "girder-beam" "$@"
}
# difference <a> <b>: a - b to three decimals.
difference() { awk "BEGIN{ printf \"%.3f\", $1 - $2 }"; }
# bench_compare_lines <ratio|difference> <unit> <girder-stem> <beam-stem>
# <metric...>: the lines of bench_ratio_lines and bench_diff_lines.
bench_compare_lines() {
  local op=$1 unit=$2 gstem=$3 bstem=$4 m b bb run g e per gm bm rat impl=ratio other=""
  shift 4
  [ "$op" = difference ] && impl=diff
  for m in "$@"; do
    b=${m%%:*}; bb=${m#*:}
    other=""
    [ "$bb" != "$b" ] && other="\"beam_bench\":\"$bb\","
    per=""
    : >"$tmp/g.vals"; : >"$tmp/b.vals"
    for run in $(seq 1 "$rounds"); do
      g=$(value "$gstem.$run" "$b"); e=$(value "$bstem.$run" "$bb")
      [ -n "$g" ] && echo "$g" >>"$tmp/g.vals"
      [ -n "$e" ] && echo "$e" >>"$tmp/b.vals"
      if [ -n "$g" ] && [ -n "$e" ]; then
        per="$per${per:+,}$($op "$g" "$e")"
      fi
    done
    gm=$(median <"$tmp/g.vals"); bm=$(median <"$tmp/b.vals")
    if [ -n "$gm" ] && [ -n "$bm" ]; then
      rat=$($op "$gm" "$bm")
    else
      rat=null; status=1
    fi
    emit "{\"bench\":\"$b\",\"impl\":\"$impl\",\"params\":{\"rounds\":$rounds,$other\"girder_median\":${gm:-null},\"beam_median\":${bm:-null},\"per_round\":[$per]},\"value\":$rat,\"unit\":\"$unit\"}"
  done
}
