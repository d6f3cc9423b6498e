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
fail() { echo "FAIL: $*"; [ -f "$work/girder.log" ] && cat "$work/girder.log"; exit 1; }
command -v erl >/dev/null && command -v erlc >/dev/null || fail "erl/erlc not installed"
epmd_pid=; node_pid=
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
erlc -o "$work" "$(dirname "$0")/interop_check.erl" "$(dirname "$0")/svc_interop.erl" || fail "erlc"

. "$(dirname "$0")/../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
g=gdsvc$$; cookie=gdcookie$$abcdefghij

"$girder" node -sname "$g" -setcookie "$cookie" >"$work/girder.log" 2>&1 &
node_pid=$!
for i in $(seq 1 100); do
  "$girder" names -port "$port" 2>/dev/null | grep -q "^name $g at port" && break
  kill -0 "$node_pid" 2>/dev/null || fail "girder node exited"
  [ "$i" = 100 ] && fail "girder node did not register"
  sleep 0.1
done

erl -sname "es$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "svc_interop:main([\"$g@$host\", \"$kv_v2\"])" || fail "svc_interop checks"
kill -TERM "$node_pid"; wait "$node_pid"; rc=$?; node_pid=
[ "$rc" = 0 ] || fail "girder node exit status $rc"
echo "svc_interop: all checks passed"
