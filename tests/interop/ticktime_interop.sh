#!/usr/bin/env bash
# net_ticktime against real OTP nodes (tests/interop/ticktime_interop.erl):
# a girder node and erl nodes all at -kernel net_ticktime 4; girder
# stopped with SIGSTOP is reported down by OTP with net_tick_timeout, an
# OTP node stopped the same way is reported down to girder processes and
# logged once as not responding.  Private EPMD, names with the pid.
# Fails (does not skip) without erl or erlc.
#   ticktime_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
node_pid=
# A stopped node must be let run again before it can be stopped for good.
trap '[ -n "$node_pid" ] && kill -CONT "$node_pid" 2>/dev/null; girder_cleanup' EXIT
interop_suite_setup ticktime_interop.erl
g=gdtick$$; cookie=gdtick$$cookie0123456789

start_girder_node "$work/girder.log" -sname "$g" -setcookie "$cookie" -kernel net_ticktime 4
node_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"

erl -sname "etick$$" -setcookie "$cookie" -kernel net_ticktime 4 -noshell -pa "$work" \
    -eval "ticktime_interop:main([\"$g@$host\", \"$node_pid\"])" ||
  fail "ticktime_interop checks"
grep -q "not responding (net_tick_timeout)" "$work/girder.log" ||
  fail "girder logged no net_tick_timeout for the stopped OTP node"
kill -0 "$node_pid" || fail "node died"
stop_girder_process "$node_pid" TERM || fail "girder node exit status"
node_pid=
echo "ticktime_interop: all checks passed"
