#!/usr/bin/env bash
# `girder node` against real OTP nodes (tests/interop/dist_interop.erl):
# ping, echo of a set of terms (=:=), 100k ordered messages, a 20 MB binary
# followed by small ones, rpc/erpc of built-ins and unknown functions,
# monitor/link noproc, girder connecting out to a second OTP node; then a
# wrong cookie refused while the node keeps serving, and a clean SIGTERM
# shutdown that releases the EPMD name.  A private EPMD (girder epmd on a
# free port, ERL_EPMD_PORT) and unique names keep parallel runs apart.
# Fails (does not skip) when erl or erlc is missing.
#   dist_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
fail() { echo "FAIL: $*"; [ -f "$work/girder.log" ] && cat "$work/girder.log"; exit 1; }
command -v erl >/dev/null && command -v erlc >/dev/null || fail "erl/erlc not installed"
epmd_pid=; node_pid=; node2_pid=; hidden_pid=
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  [ -n "$node2_pid" ] && kill "$node2_pid" 2>/dev/null && wait "$node2_pid" 2>/dev/null
  [ -n "$hidden_pid" ] && kill "$hidden_pid" 2>/dev/null && wait "$hidden_pid" 2>/dev/null
  [ -n "$epmd_pid" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
erlc -o "$work" "$(dirname "$0")/interop_check.erl" "$(dirname "$0")/dist_interop.erl" || fail "erlc"

. "$(dirname "$0")/../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
g=gdnode$$; g2=gdnodeb$$; gh=gdhidden$$; cookie=gdcookie$$abcdefghij

# wait_registered <name> <pid>
wait_registered() {
  for i in $(seq 1 100); do
    "$girder" names -port "$port" 2>/dev/null | grep -q "^name $1 at port" && return 0
    kill -0 "$2" 2>/dev/null || fail "girder node $1 exited"
    sleep 0.1
  done
  fail "girder node $1 did not register"
}
"$girder" node -sname "$g" -setcookie "$cookie" >"$work/girder.log" 2>&1 &
node_pid=$!
"$girder" node --sname "$g2" --cookie "$cookie" -schedulers 2 +zdbbl 2048 >"$work/girder2.log" 2>&1 &
node2_pid=$!
"$girder" node -sname "$gh" -setcookie "$cookie" -hidden >"$work/hidden.log" 2>&1 &
hidden_pid=$!
wait_registered "$g" "$node_pid"
wait_registered "$g2" "$node2_pid"
wait_registered "$gh" "$hidden_pid"

erl -sname "ea$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "dist_interop:main([\"$g@$host\", \"$g2@$host\", \"$gh@$host\"])" ||
  { cat "$work/girder2.log" "$work/hidden.log"; fail "dist_interop checks"; }

# Wrong cookie: pang, one log line, and the node still answers.
out=$(erl -sname "eb$$" -setcookie wrong$$ -noshell \
        -eval "io:format(\"~p\", [net_adm:ping('$g@$host')]), halt().")
[ "$out" = pang ] || fail "wrong cookie gave $out"
grep -q "connection attempt from node eb$$@$host rejected: invalid challenge reply" \
  "$work/girder.log" || fail "no refusal logged"
out=$(erl -sname "ec$$" -setcookie "$cookie" -noshell \
        -eval "io:format(\"~p\", [net_adm:ping('$g@$host')]), halt().")
[ "$out" = pong ] || fail "after a wrong cookie: $out"

# erl_call, OTP's C client (erl_interface: no atom cache header, no
# SEND_SENDER, no EXIT_PAYLOAD), calling girder:echo/1 through rex.
ei=$(erl -noshell -eval 'io:format("~s", [code:lib_dir(erl_interface)]), halt().')
[ -x "$ei/bin/erl_call" ] || fail "erl_call not found under $ei"
out=$(ERL_EPMD_PORT=$port timeout 20 "$ei/bin/erl_call" -sname "$g" -c "$cookie" \
        -a 'girder echo [{hello,[world],"str"}]')
[ "$out" = '{hello, [world], "str"}' ] || fail "erl_call girder:echo: $out"
out=$(ERL_EPMD_PORT=$port timeout 20 "$ei/bin/erl_call" -sname "$g" -c "$cookie" -a 'nomod nofun []')
[ "$out" = "{badrpc, {'EXIT', {undef, [{nomod, nofun, [], []}]}}}" ] || fail "erl_call undef: $out"

# Long names (-name with an explicit host; this host has no FQDN).
"$girder" node -name "gl$$@127.0.0.1" -setcookie "$cookie" >"$work/long.log" 2>&1 &
long_pid=$!
wait_registered "gl$$" "$long_pid"
out=$(erl -name "el$$@127.0.0.1" -setcookie "$cookie" -noshell \
        -eval "io:format(\"~p\", [{net_adm:ping('gl$$@127.0.0.1'),
                                     rpc:call('gl$$@127.0.0.1', erlang, node, [])}]), halt().")
kill -TERM "$long_pid"; wait "$long_pid"
[ "$out" = "{pong,'gl$$@127.0.0.1'}" ] || fail "long names: $out"

# SIGTERM: clean exit, name gone from EPMD.
kill -TERM "$node_pid"
wait "$node_pid"; rc=$?; node_pid=
[ "$rc" = 0 ] || fail "girder node exit status $rc"
"$girder" names -port "$port" | grep -q "^name $g at port" && fail "name still registered"
grep -q "node $g@$host stopped" "$work/girder.log" || fail "no shutdown line"
for p in "$node2_pid" "$hidden_pid"; do kill -INT "$p"; wait "$p" || fail "SIGINT exit status"; done
node2_pid=; hidden_pid=
echo "dist_interop: all checks passed"
