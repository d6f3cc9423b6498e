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
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
trap girder_cleanup EXIT
interop_suite_setup dist_interop.erl
g=gdnode$$; g2=gdnodeb$$; gh=gdhidden$$; cookie=gdcookie$$abcdefghij

start_girder_node "$work/girder.log" -sname "$g" -setcookie "$cookie"
node_pid=$girder_node_pid
start_girder_node "$work/girder2.log" --sname "$g2" --cookie "$cookie" -schedulers 2 +zdbbl 2048
node2_pid=$girder_node_pid
start_girder_node "$work/hidden.log" -sname "$gh" -setcookie "$cookie" -hidden
hidden_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"
wait_girder_registered "$g2" "$node2_pid"
wait_girder_registered "$gh" "$hidden_pid"

erl -sname "ea$$" -setcookie "$cookie" -noshell -pa "$work" \
    -eval "dist_interop:main([\"$g@$host\", \"$g2@$host\", \"$gh@$host\"])" ||
  fail "dist_interop checks"

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
start_girder_node "$work/long.log" -name "gl$$@127.0.0.1" -setcookie "$cookie"
long_pid=$girder_node_pid
wait_girder_registered "gl$$" "$long_pid"
out=$(erl -name "el$$@127.0.0.1" -setcookie "$cookie" -noshell \
        -eval "io:format(\"~p\", [{net_adm:ping('gl$$@127.0.0.1'),
                                     rpc:call('gl$$@127.0.0.1', erlang, node, [])}]), halt().")
stop_girder_process "$long_pid" TERM
[ "$out" = "{pong,'gl$$@127.0.0.1'}" ] || fail "long names: $out"

# SIGTERM: clean exit, name gone from EPMD.
stop_girder_process "$node_pid" TERM; rc=$?
[ "$rc" = 0 ] || fail "girder node exit status $rc"
"$girder" names -port "$port" | grep -q "^name $g at port" && fail "name still registered"
grep -q "node $g@$host stopped" "$work/girder.log" || fail "no shutdown line"
for p in "$node2_pid" "$hidden_pid"; do stop_girder_process "$p" INT || fail "SIGINT exit status"; done
echo "dist_interop: all checks passed"
