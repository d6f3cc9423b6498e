#!/usr/bin/env bash
# ETF interop test against real erl, both directions (CTest: interop_etf).
#
#   etf_interop.sh DRIVER WORKDIR [SEED] [NGEN]
#
# 1. etf_gen.erl (compiled here with erlc) writes >= 5,000 terms from SEED as
#    term_to_binary records: default, [compressed], [{minor_version,0}],
#    [deterministic] and OTP 26's default ({minor_version,2}) forms.
# 2. DRIVER (etf_interop.c) decodes each with girder and re-encodes it: the
#    bytes must be identical (maps > 32 keys included; only those whose keys
#    hold atoms, pids, ports, refs or funs, ordered by a hash only the
#    emitting VM knows, need just decode to equal terms); it writes every
#    girder encoding, plus NGEN girder-built terms.
# 3. etf_gen.erl decodes girder's bytes with binary_to_term and compares them
#    with the original terms.
# Both directions always run; the test fails if either does.  SEED defaults
# to $ETF_INTEROP_SEED or a fixed value, and is printed for replay.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 DRIVER WORKDIR [SEED] [NGEN]" >&2; exit 2; }
driver=$1
work=$2
seed=${3:-${ETF_INTEROP_SEED:-20251125}}
ngen=${4:-2000}

for tool in erl erlc; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (Erlang/OTP is required; run scripts/setup)"; exit 1; }
done

mkdir -p "$work/ebin" || exit 2
corpus=$work/etf_corpus.bin
girder=$work/etf_girder.bin
rm -f "$corpus" "$girder"

erlc -o "$work/ebin" "$here/etf_gen.erl" || { echo "FAIL: erlc etf_gen.erl"; exit 1; }
echo "seed $seed (set ETF_INTEROP_SEED to replay another)"
erl -noshell -pa "$work/ebin" -run etf_gen main gen "$seed" "$corpus" ||
  { echo "FAIL: etf_gen could not write the corpus"; exit 1; }

status=0
if "$driver" "$corpus" "$girder" "$seed" "$ngen"; then
  echo "forward OK"
else
  rc=$?
  echo "forward FAILED (exit $rc)"
  status=1
  # A usage/I/O error leaves no girder file to check.
  [ "$rc" -eq 1 ] || exit 1
fi

if erl -noshell -pa "$work/ebin" -run etf_gen main check "$corpus" "$girder"; then
  echo "reverse OK"
else
  echo "reverse FAILED"
  status=1
fi
exit $status
