#!/usr/bin/env bash
# girder's erpc client (girder_erpc_call, driven through the built-in
# girder:erpc_out/6) against real OTP (tests/interop/erpc_interop.erl):
# girder -> OTP and girder -> girder, every outcome compared with what
# OTP's own erpc:call gives for the same call (corpus terms round-trip,
# throw, exit, error with OTP's stack, too many arguments, timeout, a node
# that does not exist, a node that goes down during the call, 1000 calls in
# flight).  Two girder nodes, the OTP driver and an OTP victim node; a
# private EPMD and names with the pid keep parallel runs apart.  Fails
# (does not skip) when erl or erlc is missing.
#   erpc_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
victim_pid=
cleanup() {
  [ -n "$victim_pid" ] && kill "$victim_pid" 2>/dev/null && wait "$victim_pid" 2>/dev/null
  girder_cleanup
}
trap cleanup EXIT
interop_suite_setup erpc_interop.erl
# The ETF corpus's edge terms (etf_gen:edge_terms/0, not exported by the
# module itself).
erlc +export_all -o "$work" "$girder_tests_dir/interop/etf_gen.erl" || fail "erlc etf_gen"
g1=gderpc1x$$; g2=gderpc2x$$; victim=everpcv$$; cookie=gdcookie$$abcdefghij

start_girder_node "$work/girder1.log" -sname "$g1" -setcookie "$cookie"
g1_pid=$girder_node_pid
start_girder_node "$work/girder2.log" -sname "$g2" -setcookie "$cookie"
g2_pid=$girder_node_pid
wait_girder_registered "$g1" "$g1_pid"
wait_girder_registered "$g2" "$g2_pid"
erl -sname "$victim" -setcookie "$cookie" -noshell >"$work/victim.log" 2>&1 &
victim_pid=$!

erl -sname "eerpc$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "erpc_interop:main([\"$g1@$host\", \"$g2@$host\", \"$victim@$host\"])" ||
  fail "erpc_interop checks"
for p in "$g1_pid" "$g2_pid"; do
  stop_girder_process "$p" TERM; rc=$?
  [ "$rc" = 0 ] || fail "girder node exit status $rc"
done
echo "erpc_interop: all checks passed"
