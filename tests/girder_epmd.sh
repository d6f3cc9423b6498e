# Sourced by interop scripts: start_girder_epmd GIRDER starts `girder epmd`
# on a free random port (a taken port makes it exit at once, so it retries),
# sets port, epmd_pid and ERL_EPMD_PORT, and calls the script's fail when
# no port could be taken.
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
  export ERL_EPMD_PORT=$port
}
