#!/usr/bin/env bash
# The services of `girder node` against a real OTP node
# (tests/interop/svc_interop.erl): girder_kv under 1000 concurrent OTP
# callers and gen_server:call's error shapes, girder calling into OTP
# (REG_SEND, a gen_server, rpc:call).  A private EPMD (girder epmd on a
# free port, ERL_EPMD_PORT) and names with the pid keep parallel runs
# apart.  Fails (does not skip) when erl or erlc is missing.
#   svc_interop.sh <path-to-girder> <work-dir> <girder_kv_v2.so>
set -u
girder=$1
work=$2
kv_v2=$3
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
trap girder_cleanup EXIT
interop_suite_setup svc_interop.erl
g=gdsvc$$; cookie=gdcookie$$abcdefghij

start_girder_node "$work/girder.log" -sname "$g" -setcookie "$cookie"
node_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"

erl -sname "es$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "svc_interop:main([\"$g@$host\", \"$kv_v2\"])" || fail "svc_interop checks"
stop_girder_process "$node_pid" TERM; rc=$?
[ "$rc" = 0 ] || fail "girder node exit status $rc"
echo "svc_interop: all checks passed"
