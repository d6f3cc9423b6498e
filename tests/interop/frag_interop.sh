#!/usr/bin/env bash
# Fragmented signals girder sends to a real OTP node
# (tests/interop/frag_interop.erl): rpc:call and erpc:call of girder:echo
# with 70 KB, 1 MB and 20 MB terms, and a remote monitor's DOWN and a
# link's EXIT with a reason of each size, all =:=, one connection throughout, and the OTP VM
# alive at the end (it segfaulted on these before).  A private EPMD
# (girder epmd on a free port) and names with the pid keep parallel runs
# apart.  Fails (does not skip) when erl or erlc is missing.
#   frag_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
trap girder_cleanup EXIT
interop_suite_setup frag_interop.erl
g=gdfrag$$; cookie=gdcookie$$abcdefghij

start_girder_node "$work/girder.log" -sname "$g" -setcookie "$cookie"
node_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"

erl -sname "ef$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "frag_interop:main([\"$g@$host\"])"
rc=$?
# 139 = SIGSEGV: the crash this test guards against.
[ "$rc" -eq 0 ] || fail "frag_interop checks (erl exit status $rc)"
kill -0 "$node_pid" 2>/dev/null || fail "girder node died"
echo "frag_interop: all checks passed"
