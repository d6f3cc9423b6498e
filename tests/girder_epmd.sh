# Sourced by interop scripts: start_girder_epmd GIRDER starts `girder epmd`
# on a free random port (a taken port makes it exit at once, so it retries),
# sets port, epmd_pid and ERL_EPMD_PORT, and calls the script's fail when
# no port could be taken.  The pid also goes to girder_pids (below).
start_girder_epmd() {
  local girder=$1 try i
  epmd_pid=
  for try in $(seq 1 20); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    "$girder" epmd -port "$port" &
    epmd_pid=$!
    for i in $(seq 1 50); do
      kill -0 "$epmd_pid" 2>/dev/null || break
      "$girder" names -port "$port" >/dev/null 2>&1 && break 2
      sleep 0.1
    done
    wait "$epmd_pid" 2>/dev/null; epmd_pid=
  done
  [ -n "$epmd_pid" ] || fail "could not start girder epmd"
  girder_pids+=("$epmd_pid")
  export ERL_EPMD_PORT=$port
}

# ---- shared by the interop suites (tests/interop/*.sh) ----
#
# girder_pids: the girder processes (the EPMD, nodes) a script started and
# has not stopped itself, oldest first.  girder_cleanup, the script's EXIT
# trap, ends them newest first, so every node goes before the EPMD it
# registered with and a failing script leaves nothing running.
girder_pids=()
girder_tests_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

girder_cleanup() {
  local i
  for ((i = ${#girder_pids[@]} - 1; i >= 0; i--)); do
    kill "${girder_pids[i]}" 2>/dev/null && wait "${girder_pids[i]}" 2>/dev/null
  done
}

# fail_with_logs DIR MESSAGE: the FAIL line, then every DIR/*.log (the
# nodes' own account of what went wrong), and exit 1.  The scripts' fail
# calls it.
fail_with_logs() {
  local dir=$1 log
  shift
  echo "FAIL: $*"
  for log in "$dir"/*.log; do
    [ -f "$log" ] && { echo "== $log"; cat "$log"; }
  done
  exit 1
}

# interop_suite_setup SUITE.erl: the start every OTP-driven suite shares.
# Fails without erl or erlc (never skips), makes $work afresh, compiles
# interop_check.erl (the shared check runner) and SUITE.erl into it,
# starts the private EPMD (start_girder_epmd "$girder") and sets host, the
# short host name OTP puts in node names.
interop_suite_setup() {
  command -v erl >/dev/null && command -v erlc >/dev/null || fail "erl/erlc not installed"
  rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
  erlc -o "$work" "$girder_tests_dir/interop/interop_check.erl" \
    "$girder_tests_dir/interop/$1" || fail "erlc"
  start_girder_epmd "$girder"
  host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
}

# start_girder_node LOG NODE-ARGS...: `$girder node NODE-ARGS` in the
# background, stdout and stderr to LOG; its pid goes to girder_node_pid
# and girder_pids (for girder_cleanup).
start_girder_node() {
  local log=$1
  shift
  "$girder" node "$@" >"$log" 2>&1 &
  girder_node_pid=$!
  girder_pids+=("$girder_node_pid")
}

# wait_girder_registered NAME PID: waits (10 s at most) until NAME is
# registered with the private EPMD; fails if PID exits first.
wait_girder_registered() {
  local i
  for i in $(seq 1 100); do
    "$girder" names -port "$port" 2>/dev/null | grep -q "^name $1 at port" && return 0
    kill -0 "$2" 2>/dev/null || fail "girder node $1 exited"
    sleep 0.1
  done
  fail "girder node $1 did not register"
}

# stop_girder_process PID [SIGNAL]: sends SIGNAL (TERM when not given),
# waits, drops PID from girder_pids and returns its exit status.
stop_girder_process() {
  local pid=$1 rc i
  kill -"${2:-TERM}" "$pid"
  wait "$pid"
  rc=$?
  for i in "${!girder_pids[@]}"; do
    [ "${girder_pids[i]}" = "$pid" ] && unset 'girder_pids[i]'
  done
  girder_pids=("${girder_pids[@]}")
  return "$rc"
}
