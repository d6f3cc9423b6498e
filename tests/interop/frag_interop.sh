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
fail() { echo "FAIL: $*"; [ -f "$work/girder.log" ] && cat "$work/girder.log"; exit 1; }
command -v erl >/dev/null && command -v erlc >/dev/null || fail "erl/erlc not installed"
epmd_pid=; node_pid=
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
erlc -o "$work" "$(dirname "$0")/interop_check.erl" "$(dirname "$0")/frag_interop.erl" || fail "erlc"

. "$(dirname "$0")/../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
g=gdfrag$$; cookie=gdcookie$$abcdefghij

"$girder" node -sname "$g" -setcookie "$cookie" >"$work/girder.log" 2>&1 &
node_pid=$!
for i in $(seq 1 100); do
  "$girder" names -port "$port" 2>/dev/null | grep -q "^name $g at port" && break
  kill -0 "$node_pid" 2>/dev/null || fail "girder node exited"
  sleep 0.1
done
"$girder" names -port "$port" 2>/dev/null | grep -q "^name $g at port" || fail "girder node did not register"

erl -sname "ef$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "frag_interop:main([\"$g@$host\"])"
rc=$?
# 139 = SIGSEGV: the crash this test guards against.
[ "$rc" -eq 0 ] || fail "frag_interop checks (erl exit status $rc)"
kill -0 "$node_pid" 2>/dev/null || fail "girder node died"
echo "frag_interop: all checks passed"
