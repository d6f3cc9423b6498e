#!/usr/bin/env bash
# Real Erlang nodes use `girder epmd` unchanged: two `erl -sname` nodes
# register with it (ERL_EPMD_PORT on a free port), one pings the other
# (pong), net_adm:names(), OTP's `epmd -names` and `girder names` list them.
#   interop_erl.sh <path-to-girder>
set -u
girder=$1
fail() { echo "FAIL: $*"; cleanup; exit 1; }
epmd_pid=; a_pid=
cleanup() {
  [ -n "$a_pid" ] && kill "$a_pid" 2>/dev/null && wait "$a_pid" 2>/dev/null
  [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
}
trap cleanup EXIT

# girder epmd on a free port.
. "$(dirname "$0")/../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
a=gdia$$; b=gdib$$; cookie=gdcookie$$

erl -sname "$a" -setcookie "$cookie" -noshell -eval 'timer:sleep(60000), halt().' &
a_pid=$!
for i in $(seq 1 100); do
  "$girder" names | grep -q "^name $a at port" && break
  sleep 0.1
done
"$girder" names | grep -q "^name $a at port" || fail "$a did not register"

out=$(erl -sname "$b" -setcookie "$cookie" -noshell -eval "
  R = net_adm:ping('$a@$host'),
  {ok, Names} = net_adm:names(),
  Ns = lists:sort([N || {N, _} <- Names]),
  io:format(\"~p ~p~n\", [R, Ns]),
  halt(case {R, lists:member(\"$a\", Ns), lists:member(\"$b\", Ns)} of
         {pong, true, true} -> 0; _ -> 1 end).") || fail "ping/names from $b: $out"
echo "erl $b: $out"

otp=$(epmd -names) || fail "epmd -names failed"
echo "$otp" | grep -q "^name $a at port" || fail "epmd -names: $otp"
echo "$otp" | head -1 | grep -q "up and running on port $port" || fail "epmd -names: $otp"
ours=$("$girder" epmd -names)
[ "$ours" = "$otp" ] || fail "girder epmd -names differs: $ours"

# The registration lives as long as the node: stop a, its name goes.
kill "$a_pid"; wait "$a_pid" 2>/dev/null; a_pid=
for i in $(seq 1 50); do
  "$girder" names | grep -q "^name $a at port" || break
  sleep 0.1
done
"$girder" names | grep -q "^name $a at port" && fail "$a still registered after exit"
"$girder" epmd -kill | grep -q '^Killed$' || fail "girder epmd -kill"
wait "$epmd_pid" 2>/dev/null; epmd_pid=
echo "PASS"
