#!/usr/bin/env bash
# The node contract (design.md) row by row, corners included, from a real
# OTP node (tests/interop/contract_interop.erl): built-ins over rpc and
# erpc with OTP's exact error shapes, echo, girder_kv (sys calls, 1000
# callers), links/monitors/monitor_node with noconnection on
# disconnect_node and kill -9, global both ways with non-atom names,
# hidden and wrong-cookie peers, raw TCP garbage and bad digests, a 64 MB
# echo and 100k ordered messages.  The main node takes its cookie from
# ~/.erlang.cookie in a fresh HOME (created 0400 with >= 128 bits); a
# cookie file others can read is refused.  Private EPMD, names with the
# pid.  Fails (does not skip) without erl or erlc.
#   contract_interop.sh <path-to-girder> <work-dir>
set -u
girder=$1
work=$2
. "$(dirname "$0")/../girder_epmd.sh"
fail() { fail_with_logs "$work" "$@"; }
trap girder_cleanup EXIT
interop_suite_setup contract_interop.erl
g=gdct$$; v=gdctv$$

# The cookie file: made on first start, mode 0400, 32 random letters
# (150 bits; 28 letters would be 131).
home=$work/home
mkdir -p "$home"
HOME=$home start_girder_node "$work/girder.log" -sname "$g"
node_pid=$girder_node_pid
wait_girder_registered "$g" "$node_pid"
[ -f "$home/.erlang.cookie" ] || fail "no cookie file created"
mode=$(stat -c %a "$home/.erlang.cookie")
[ "$mode" = 400 ] || fail "cookie file mode $mode"
cookie=$(cat "$home/.erlang.cookie")
[[ "$cookie" =~ ^[A-Z]{28,}$ ]] || fail "cookie '$cookie' is not >= 28 random letters"
grep -q WARNING "$work/girder.log" && fail "warning for a generated cookie"

# A cookie file group or others can read: refused as OTP refuses it, one
# line, non-zero exit, nothing started.
bad=$work/badhome
mkdir -p "$bad"
echo "readablecookie0123456789" >"$bad/.erlang.cookie"
chmod 644 "$bad/.erlang.cookie"
out=$(HOME=$bad timeout 10 "$girder" node -sname "gdctbad$$" 2>&1); rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "readable cookie file: exit $rc"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "readable cookie file: $out"
printf '%s\n' "$out" | grep -q "cookie" || fail "readable cookie file: $out"

# The cookie file read as erl reads it: a space before the newline is part
# of the cookie, so an erl with the same HOME pings the node.
sphome=$work/sphome
mkdir -p "$sphome"
printf 'gdct space cookie 0123456789 \n' >"$sphome/.erlang.cookie"
chmod 400 "$sphome/.erlang.cookie"
HOME=$sphome start_girder_node "$work/space.log" -sname "gdcts$$"
space_pid=$girder_node_pid
wait_girder_registered "gdcts$$" "$space_pid"
pong=$(HOME=$sphome erl -sname "ects$$" -noshell \
  -eval "io:format(\"~p\", [net_adm:ping('gdcts$$@$host')]), halt()." 2>&1)
[ "$pong" = pong ] || fail "erl with the same cookie file (trailing space) got: $pong"
stop_girder_process "$space_pid" TERM || fail "the trailing-space node's exit status"

start_girder_node "$work/victim.log" --sname "$v" --cookie "$cookie"
victim_pid=$girder_node_pid
wait_girder_registered "$v" "$victim_pid"

# erl takes its cookie from the same file (no -setcookie), as a user's would.
HOME=$home erl -sname "ect$$" -noshell -pa "$work" \
    -eval "contract_interop:main([\"$g@$host\", \"$v@$host\", \"$victim_pid\"])" ||
  fail "contract_interop checks"
wait "$victim_pid" 2>/dev/null
for i in "${!girder_pids[@]}"; do
  [ "${girder_pids[i]}" = "$victim_pid" ] && unset 'girder_pids[i]'
done

# The refusals the OTP side provoked, one log line each.
grep -q "rejected: invalid challenge reply" "$work/girder.log" || fail "no wrong-cookie/digest line"
kill -0 "$node_pid" || fail "node died"
stop_girder_process "$node_pid" TERM; rc=$?
[ "$rc" = 0 ] || fail "girder node exit status $rc"
echo "contract_interop: all checks passed"
