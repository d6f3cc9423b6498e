#!/usr/bin/env bash
# FLOAT_EXT interop test against real erl (CTest: interop_etf_float).
#
#   etf_float_interop.sh DRIVER WORKDIR [SEED] [N]
#
# etf_float_gen.escript writes FLOAT_EXT binaries with binary_to_term/1's
# verdict on each; DRIVER (etf_float_interop.c) decodes them with girder and
# fails on any disagreement.  Fails (never skips) without escript.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 DRIVER WORKDIR [SEED] [N]" >&2; exit 2; }
driver=$1
work=$2
seed=${3:-${ETF_INTEROP_SEED:-20251205}}
n=${4:-3000}
command -v escript >/dev/null || { echo "FAIL: escript not found (Erlang/OTP is required; run scripts/setup)"; exit 1; }
mkdir -p "$work" || exit 2
cases=$work/float_cases.bin
rm -f "$cases"
escript "$here/etf_float_gen.escript" "$cases" "$seed" "$n" || { echo "FAIL: etf_float_gen"; exit 1; }
"$driver" "$cases"
