#!/usr/bin/env bash
# tests/bench/etf/run.sh — ETF encode/decode throughput: BEAM, girder and
# libei on the same corpus in the same run, interleaved.
#
#   tests/bench/etf/run.sh [-n ROUNDS] [-o FILE] [BUILD_DIR]
#
# Each round runs BEAM's beam_etf.erl (A: term_to_binary/binary_to_term),
# then bench_etf girder (B) and bench_etf libei (C): A B C A B C ... for
# ROUNDS rounds (default 3; the machine is noisy: one BEAM run moves by up
# to 30% from the next).
# The first BEAM run writes the corpus (BENCH_DUMP_DIR) that girder and libei
# then load, so all three work on exactly the same terms and bytes.  Every
# run does 5 repetitions over the whole corpus and 3 per kind and reports
# medians (MiB/s of encoded corpus bytes).
#
# stdout (and -o FILE, appended) gets JSON lines: every result of every run
# tagged "impl":"beam"|"girder"|"girder_nogc"|"libei" and "run":N, an "env"
# line per run, then "impl":"ratio" lines per bench and kind: value = median
# over rounds of girder's (or girder_nogc's) values / median over rounds of
# the other's, per-round ratios in params.  "girder" is the headline and
# does BEAM's work: its decode collects after every term, as BEAM's process
# does; girder_nogc is girder decoding without ever collecting (the heap
# keeps the whole repetition), for information only (see bench_etf.c).  A
# summary table (and the targets: >= 2x libei, >= 1.5x BEAM) goes to stderr
# with the progress.  BUILD_DIR defaults to build/release (built
# with -DCMAKE_BUILD_TYPE=Release if bench_etf is missing there).  BEAM's
# side is ours: beam_etf.erl here and ../bench_beam.erl.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$here/../lib.sh"
rounds=3
out=/dev/null
while getopts "n:o:" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    o) out=$OPTARG ;;
    *) echo "usage: $0 [-n ROUNDS] [-o FILE] [BUILD_DIR]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
build=${1:-$root/build/release}
bench_check_rounds
bench_for=etf
env_extra='"for":"etf",'

bench_need_beam "$here/beam_etf.erl"

bin="$build/tests/bench/etf/bench_etf"
bench_need_bin "$root" "$build" "$bin" bench_etf "build failed (bench_etf needs erl_interface: package erlang-dev)"
bench_tmpdir bench-etf.XXXXXX "$here/beam_etf.erl"

corpus=$tmp/etf_corpus.etf
for run in $(seq 1 "$rounds"); do
  if [ "$run" -eq 1 ]; then
    BENCH_DUMP_DIR=$tmp run_one beam "$run" erl -noshell -pa "$tmp" -s bench_beam run beam_etf
    [ -s "$corpus" ] || { echo "BEAM did not write $corpus" >&2; exit 1; }
  else
    run_one beam "$run" erl -noshell -pa "$tmp" -s bench_beam run beam_etf
  fi
  run_one girder "$run" "$bin" "$corpus" girder "$run"
  run_one libei "$run" "$bin" "$corpus" libei "$run"
done

# Every impl must have measured the same corpus.
sizes=$(sed -n 's/^{"bench":"etf_decode","impl":"[a-z]*","params":{.*"corpus_bytes":\([0-9]*\).*/\1/p' "$tmp"/*.[0-9]* | sort -u)
[ "$(echo "$sizes" | wc -l)" -eq 1 ] || { echo "implementations measured different corpora: $sizes" >&2; status=1; }

kinds=$(sed -n 's/^{"bench":"etf_decode_kind",.*"kind":"\([a-z0-9_]*\)".*/\1/p' "$tmp/beam.1" 2>/dev/null)
# girder mode writes two impls: "girder" (the headline: GC safe point after
# each decoded term, like BEAM's process) and "girder_nogc" (decode only,
# never collecting).
for run in $(seq 1 "$rounds"); do
  grep '"impl":"girder_nogc"' "$tmp/girder.$run" >"$tmp/girder_nogc.$run" 2>/dev/null
done
{
  printf '\nETF throughput, MiB/s: median over %s round(s) of each run'"'"'s median\n' "$rounds"
  printf '(girder collects after every decoded term, like BEAM; girder_nogc never collects)\n'
  printf '%-7s %-11s %9s %9s %9s %9s %8s %8s %8s %8s\n' op kind girder g_nogc libei beam \
    g/libei g/beam ng/libei ng/beam
} >&2
for op in decode encode; do
  for kind in all $kinds; do
    if [ "$kind" = all ]; then b=etf_$op; else b=etf_${op}_kind; fi
    declare -A med=() rat=()
    for impl in girder girder_nogc libei beam; do
      : >"$tmp/vals"
      for run in $(seq 1 "$rounds"); do
        v=$(value "$tmp/$impl.$run" "$b" "$kind")
        [ -n "$v" ] && echo "$v" >>"$tmp/vals"
      done
      med[$impl]=$(median <"$tmp/vals")
    done
    for mine in girder girder_nogc; do
      [ -n "${med[$mine]}" ] || { rat[$mine.libei]=-; rat[$mine.beam]=-; continue; }
      for other in libei beam; do
        p=""
        for run in $(seq 1 "$rounds"); do
          g=$(value "$tmp/$mine.$run" "$b" "$kind"); o=$(value "$tmp/$other.$run" "$b" "$kind")
          [ -n "$g" ] && [ -n "$o" ] && p="$p${p:+,}$(ratio "$g" "$o")"
        done
        if [ -n "${med[$other]}" ]; then
          rat[$mine.$other]=$(ratio "${med[$mine]}" "${med[$other]}")
        else
          rat[$mine.$other]=null; status=1
        fi
        emit "{\"bench\":\"$b\",\"impl\":\"ratio\",\"params\":{\"kind\":\"$kind\",\"of\":\"$mine\",\"vs\":\"$other\",\"rounds\":$rounds,\"${mine}_median\":${med[$mine]},\"${other}_median\":${med[$other]:-null},\"per_round\":[$p]},\"value\":${rat[$mine.$other]},\"unit\":\"$mine/$other\"}"
      done
    done
    [ "$kind" = all ] && [ "$op" = encode ] && [ -z "${med[girder]}" ] && status=1
    printf '%-7s %-11s %9s %9s %9s %9s %8s %8s %8s %8s\n' "$op" "$kind" "${med[girder]:--}" \
      "${med[girder_nogc]:--}" "${med[libei]:--}" "${med[beam]:--}" "${rat[girder.libei]}" \
      "${rat[girder.beam]}" "${rat[girder_nogc.libei]}" "${rat[girder_nogc.beam]}" >&2
    if [ "$kind" = all ]; then
      eval "all_${op}_libei=${rat[girder.libei]} all_${op}_beam=${rat[girder.beam]}"
      [ "$op" = decode ] && eval "all_nogc_libei=${rat[girder_nogc.libei]} all_nogc_beam=${rat[girder_nogc.beam]}"
    fi
    unset med rat
  done
done
verdict() { awk "BEGIN{ if (\"$1\" == \"null\") print \"n/a\"; else if ($1 >= $2) print \"met\"; else print \"NOT met\" }"; }
{
  echo
  echo "targets (whole corpus, ratio of medians):"
  for op in decode encode; do
    eval "l=\$all_${op}_libei b=\$all_${op}_beam"
    echo "  $op: girder/libei ${l}x (>= 2: $(verdict "$l" 2)), girder/beam ${b}x (>= 1.5: $(verdict "$b" 1.5))"
  done
  echo "  (for information, decode never collecting, girder_nogc: /libei ${all_nogc_libei}x, /beam ${all_nogc_beam}x)"
} >&2
exit $status
