#!/usr/bin/env bash
# Three `girder node` OS processes and a real OTP node
# (tests/interop/mesh_interop.erl, which starts, kills -9 and restarts the
# girder nodes itself and lists their OS pids in <work>/pids): full mesh,
# monitors and links across girder nodes, noconnection on kill -9, restart
# with a new creation.  A private EPMD (girder epmd on a free port) and
# names with the pid keep parallel runs apart.  Fails (does not skip) when
# erl or erlc is missing.
#   mesh_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
# mesh_interop.erl starts the girder nodes itself and lists their OS pids
# in $work/pids.
cleanup() {
  if [ -f "$work/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null; done <"$work/pids"
  fi
  girder_cleanup
}
trap cleanup EXIT
interop_suite_setup mesh_interop.erl
cookie=gdcookie$$abcdefghij

erl -sname "em$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "mesh_interop:main([\"$girder\", \"$work\", \"$cookie\", \"$port\"])" ||
  fail "mesh_interop checks"
echo "mesh_interop: all checks passed"
