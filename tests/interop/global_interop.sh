#!/usr/bin/env bash
# OTP's global registry across OTP and girder nodes
# (tests/interop/global_interop.erl): two visible OTP nodes and two girder
# nodes in a full mesh, plus two girder/OTP pairs for the partition
# clashes, driven from a hidden OTP node.  A private EPMD (girder epmd on
# a free port) and names with the pid keep parallel runs apart.  Fails
# (does not skip) when erl or erlc is missing.
#   global_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
erl_pids=()
cleanup() {
  local p
  for p in "${erl_pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  girder_cleanup
}
trap cleanup EXIT
interop_suite_setup global_interop.erl
cookie=gdcookie$$globalxyz

# The clash pairs' names order the nodes: gca (girder) < gcb (OTP) lets
# girder decide the first clash, gcc (OTP) < gcd (girder) lets OTP decide
# the second.
girder_names=(ggi1_$$ ggi2_$$ gca_$$ gcd_$$)
otp_names=(ogi2_$$ ogi3_$$ gcb_$$ gcc_$$)
declare -A os_pid
for n in "${girder_names[@]}"; do
  start_girder_node "$work/$n.log" -sname "$n" -setcookie "$cookie"
  os_pid[$n]=$girder_node_pid
done
for n in "${otp_names[@]}"; do
  erl -sname "$n" -setcookie "$cookie" -noshell -pa "$work" >"$work/$n.log" 2>&1 &
  erl_pids+=($!)
done
for n in "${girder_names[@]}"; do wait_girder_registered "$n" "${os_pid[$n]}"; done
for n in "${otp_names[@]}"; do
  for i in $(seq 1 100); do
    "$girder" names -port "$port" 2>/dev/null | grep -q "^name $n at port" && break
    [ "$i" = 100 ] && fail "OTP node $n did not register"
    sleep 0.1
  done
done

node() { echo "\"$1@$host\""; }
erl -hidden -sname "dgi_$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "global_interop:main([$(node ogi2_$$), $(node ogi3_$$), $(node ggi1_$$),
                                $(node ggi2_$$), \"${os_pid[ggi2_$$]}\",
                                $(node gca_$$), $(node gcb_$$), $(node gcd_$$),
                                $(node gcc_$$)])" ||
  fail "global_interop checks"
echo "global_interop: all checks passed"
