#!/usr/bin/env bash
# Differential decode test: girder's etf_decode against OTP's
# binary_to_term/1 on valid encodings and hostile mutations (CTest:
# interop_etf_diff, label interop).
#
#   etf_diff.sh DRIVER WORKDIR [NMUT]
#
# 1. etf_gen.erl's `seeds` step writes OTP-made encodings (edge values of
#    every type, crafted non-canonical inputs, random nested terms) from the
#    seed; tests/fuzz/corpus/fz_etf_decode adds the decoder's fuzz seeds.
# 2. etf_diff.erl mutates them (NMUT mutations, default 60000), has DRIVER
#    (etf_diff.c) decode every input with girder in one batch, decodes each
#    with binary_to_term/1 in the same erl process, compares and classifies
#    (the list of allowed differences is deviations/0 in etf_diff.erl), and
#    prints one summary line of counts per class.
# The seed is GD_TEST_SEED (default fixed) and is printed for replay.
# Fails if erl or erlc is missing, or on any unexplained disagreement.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 DRIVER WORKDIR [NMUT]" >&2; exit 2; }
driver=$1
work=$2
nmut=${3:-60000}
seed=${GD_TEST_SEED:-20261205}
case $seed in ''|*[!0-9]*) echo "FAIL: GD_TEST_SEED must be a non-negative integer" >&2; exit 2 ;; esac

for tool in erl erlc; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (Erlang/OTP is required; run scripts/setup)"; exit 1; }
done

rm -rf "$work"
mkdir -p "$work/ebin" "$work/seeds" || exit 2
erlc -o "$work/ebin" "$here/etf_gen.erl" "$here/etf_diff.erl" || { echo "FAIL: erlc"; exit 1; }
echo "seed $seed (set GD_TEST_SEED to replay another)"
erl -noshell -pa "$work/ebin" -run etf_gen main seeds "$seed" "$work/seeds" 2048 600000 ||
  { echo "FAIL: etf_gen could not write the valid encodings"; exit 1; }
exec erl -noshell -pa "$work/ebin" -run etf_diff main "$seed" "$work/seeds" \
  "$root/tests/fuzz/corpus/fz_etf_decode" "$driver" "$work" "$nmut"
