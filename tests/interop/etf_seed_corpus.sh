#!/usr/bin/env bash
# Writes OTP-made encodings from the ETF interop corpus (etf_gen.erl) as fuzz
# seeds for the decoder, one file per distinct encoding, into DIR:
#
#   tests/interop/etf_seed_corpus.sh DIR [MAXBYTES] [TOTALBYTES] [SEED]
#
# Files are at most MAXBYTES (default 1024) long and TOTALBYTES (default
# 300000) in all: first the crafted non-canonical inputs (old tags, unsorted
# maps, FLOAT_EXT, compressed), then every edge term under each option set
# (every tag OTP 25 emits, compressed and deterministic forms, deep nesting
# that fits), then random nested terms.  Deterministic for a given SEED.
# Needs erl and erlc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 DIR [MAXBYTES] [TOTALBYTES] [SEED]" >&2; exit 2; }
dir=$1
max=${2:-1024}
total=${3:-300000}
seed=${4:-20251125}
tmp=$(mktemp -d -t etf_seeds.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
erlc -o "$tmp" "$here/etf_gen.erl"
mkdir -p "$dir"
erl -noshell -pa "$tmp" -run etf_gen main seeds "$seed" "$dir" "$max" "$total"
