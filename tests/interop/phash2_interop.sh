#!/usr/bin/env bash
# erlang:phash2/1,2 against real erl (CTest: interop_phash2).
#
#   phash2_interop.sh GIRDER WORKDIR [SEED]
#
# etf_gen.erl writes every term of the ETF interop corpus (edge values of
# every type -- integers, floats incl. -0.0, atoms, binaries, bitstrings,
# lists, tuples, maps small and large, pids, ports and references of this
# and other nodes, funs, exports, deep nesting -- plus random terms from
# SEED) with its phash2/1 and phash2/2 for ranges 1, 1000003 and 2^32.
# `girder term hash` must print the same numbers:
#  - from the ETF of every term (--hex --lines);
#  - from girder's own text of every term that has a text form (all but
#    funs, which print as #Fun<...>), through `girder term decode` and
#    `girder term hash` reading text, as a user would type it.
# Fails (never skips) without erl and erlc.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 GIRDER WORKDIR [SEED]" >&2; exit 2; }
girder=$1
work=$2
seed=${3:-${PHASH2_INTEROP_SEED:-20251205}}

for tool in erl erlc; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (Erlang/OTP is required; run scripts/setup)"; exit 1; }
done
mkdir -p "$work/ebin" || exit 2
erlc -o "$work/ebin" "$here/etf_gen.erl" || { echo "FAIL: erlc etf_gen.erl"; exit 1; }
echo "seed $seed (set PHASH2_INTEROP_SEED to replay another)"
erl -noshell -pa "$work/ebin" -run etf_gen main phash2 "$seed" "$work/phash2.txt" ||
  { echo "FAIL: etf_gen could not write the phash2 corpus"; exit 1; }

n=$(wc -l < "$work/phash2.txt")
[ "$n" -ge 5000 ] || { echo "FAIL: only $n terms in the corpus"; exit 1; }
cut -d' ' -f1 "$work/phash2.txt" > "$work/etf.hex"

status=0
# compare NAME EXPECTED ACTUAL: reports the first difference with its term.
compare() {
  if cmp -s "$2" "$3"; then
    echo "OK: $1 ($(wc -l < "$2") terms)"
  else
    line=$(cmp "$2" "$3" 2>&1 | sed -n 's/.* line \([0-9]*\).*/\1/p')
    echo "FAIL: $1: first difference at term line ${line:-?}: erl $(sed -n "${line:-1}p" "$2"), girder $(sed -n "${line:-1}p" "$3")"
    status=1
  fi
}

col=2
for range in "" 1 1000003 4294967296; do
  name="phash2/1"
  args=()
  if [ -n "$range" ]; then name="phash2/2 range $range"; args=(--range "$range"); fi
  cut -d' ' -f$col "$work/phash2.txt" > "$work/expected.$col"
  if ! "$girder" term hash --hex --lines "${args[@]}" < "$work/etf.hex" > "$work/girder.$col"; then
    echo "FAIL: girder term hash --hex ${args[*]} exited non-zero"
    status=1
  fi
  compare "$name from ETF" "$work/expected.$col" "$work/girder.$col"
  col=$((col + 1))
done

# The text path: girder prints each term, reads the text back and hashes it.
if ! "$girder" term decode --lines < "$work/etf.hex" > "$work/terms.txt"; then
  echo "FAIL: girder term decode --lines exited non-zero"
  exit 1
fi
paste -d'\t' "$work/terms.txt" <(cut -d' ' -f2 "$work/phash2.txt") | grep -v '#Fun<' > "$work/text_pairs"
cut -f1 "$work/text_pairs" > "$work/text_terms"
cut -f2 "$work/text_pairs" > "$work/text_expected"
if ! "$girder" term hash --lines < "$work/text_terms" > "$work/text_girder"; then
  echo "FAIL: girder term hash (text) exited non-zero"
  status=1
fi
compare "phash2/1 from text" "$work/text_expected" "$work/text_girder"
exit $status
