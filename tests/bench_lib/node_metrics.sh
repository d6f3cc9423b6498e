#!/usr/bin/env bash
# node_metrics.sh GIRDER PROM_CHECK_PY — `girder node --metrics 127.0.0.1:0`
# scraped over HTTP and parsed strictly as the Prometheus text format
# (prom_check.py) with every metric family issue 15 lists present; then a
# real erl node pings it and makes 500 echo round trips, and a second
# scrape must show the traffic: distribution messages and bytes in and out
# (node-wide and for the erl peer), messages delivered, reductions, the
# connection count.  Then a third erl node stops reading (SIGSTOP) while
# 24 MiB of echo replies are sent to it: its connection must show the
# queued output and busy time, and once it reads again every reply is
# delivered (the echo process, suspended meanwhile, answers the sender).
# A bad --metrics address is refused with exit 2.
set -u
girder=$1
checker=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/gd_node_metrics.XXXXXX)
node_pid=
fail() { echo "FAIL: $*" >&2; [ -f "$work/node.log" ] && sed 's/^/  node: /' "$work/node.log" >&2; exit 1; }
erl_pid=
ex_pid=
ex_beam=
eb_pid=
cleanup() {
  [ -n "$ex_beam" ] && kill -CONT $ex_beam 2>/dev/null
  for p in $erl_pid $ex_pid $eb_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  [ -n "${epmd_pid:-}" ] && kill "$epmd_pid" 2>/dev/null && wait "$epmd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
command -v erl >/dev/null || fail "erl not found (scripts/setup installs Erlang/OTP)"
command -v python3 >/dev/null || fail "python3 not found (scripts/setup installs it)"
command -v curl >/dev/null || fail "curl not found (scripts/setup installs it)"
# shellcheck source=../girder_epmd.sh
. "$here/../girder_epmd.sh"

"$girder" node -sname "bad$$" --metrics 127.0.0.1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--metrics without a port was not refused with exit 2"

start_girder_epmd "$girder"
cookie=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
gname="gm$$"
"$girder" node -sname "$gname" -setcookie "$cookie" --metrics 127.0.0.1:0 2>"$work/node.log" &
node_pid=$!
url=
for _ in $(seq 1 100); do
  url=$(sed -n 's/.*metrics on \(http:[^ ]*\).*/\1/p' "$work/node.log")
  [ -n "$url" ] && break
  kill -0 "$node_pid" 2>/dev/null || fail "girder node exited"
  sleep 0.1
done
[ -n "$url" ] || fail "no 'metrics on' line in the node's log"

families="girder_processes girder_run_queue_length girder_reductions_total
  girder_scheduler_reductions_total girder_messages_delivered_total
  girder_dist_messages_in_total girder_dist_messages_out_total
  girder_dist_bytes_in_total girder_dist_bytes_out_total girder_dist_busy_seconds_total
  girder_gc_collections_total girder_gc_pause_seconds_count girder_memory_bytes
  girder_dist_connections girder_epmd_registered girder_epmd_registrations_total"
# shellcheck disable=SC2086
python3 "$checker" "$url" $families || fail "first scrape is not valid exposition text"
curl -sf "$url" >"$work/before.txt" || fail "curl $url"

# value NAME{LABELS} FILE: the sample's value (empty when absent).
value() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
# await_file TEST FILE PID TENTHS DIED_MSG LATE_MSG: waits up to TENTHS
# tenths of a second for `test TEST FILE` (-f: exists, -s: not empty),
# failing with DIED_MSG as soon as erl PID (which writes FILE) has ended.
await_file() {
  for _ in $(seq 1 "$4"); do
    test "$1" "$2" && return 0
    kill -0 "$3" 2>/dev/null || fail "$5"
    sleep 0.1
  done
  test "$1" "$2" || fail "$6"
}
grep -q '^girder_epmd_registered 1$' "$work/before.txt" || fail "not registered with EPMD"
grep -q '^girder_run_queue_length{scheduler="1",priority="normal"} ' "$work/before.txt" ||
  fail "no run queue length of scheduler 1, priority normal"
for kind in processes binary total; do
  grep -q "^girder_memory_bytes{kind=\"$kind\"} " "$work/before.txt" || fail "no memory of kind $kind"
done

host=$(hostname -s)
# The erl nodes connect only to girder: without connect_all, OTP's global
# does not mesh them through girder (it would try to reach the stopped ex
# below and disconnect nodes to prevent overlapping partitions).
noconnect="-kernel connect_all false"
# erl stays connected (until killed) so that its connection's series exist
# at the second scrape; it writes $work/done after the round trips.
erl -sname "em$$" -setcookie "$cookie" $noconnect -noshell -eval "
  G = list_to_atom(\"$gname@$host\"),
  pong = net_adm:ping(G),
  [begin {echo, G} ! {self(), I}, receive {echo_reply, I} -> ok after 5000 -> halt(3) end end
   || I <- lists:seq(1, 500)],
  ok = file:write_file(\"$work/done\", <<>>),
  receive after 60000 -> halt(0) end." &
erl_pid=$!
await_file -f "$work/done" "$erl_pid" 300 "erl could not ping and echo 500 times" \
  "erl did not finish 500 echo round trips in 30 s"
python3 "$checker" "$url" $families >/dev/null || fail "second scrape is not valid exposition text"
curl -sf "$url" >"$work/after.txt" || fail "curl $url"

# grew NAME: the sample went up by at least MIN between the scrapes.
grew() {
  local b a
  b=$(value "$1" "$work/before.txt")
  a=$(value "$1" "$work/after.txt")
  [ -n "$a" ] || fail "$1 missing after traffic"
  awk -v a="$a" -v b="${b:-0}" -v m="$2" 'BEGIN { exit !(a - b >= m) }' ||
    fail "$1 went from ${b:-absent} to $a, expected at least +$2"
}
grew girder_dist_messages_in_total 500
grew girder_dist_messages_out_total 500
grew girder_dist_bytes_in_total 5000
grew girder_dist_bytes_out_total 5000
grew girder_messages_delivered_total 500
grew girder_reductions_total 500
grew "girder_dist_connection_messages_in_total{peer=\"em$$@$host\"}" 500
grew "girder_dist_connection_messages_out_total{peer=\"em$$@$host\"}" 500
grep -q "^girder_dist_connection_busy_seconds_total{peer=\"em$$@$host\"} " "$work/after.txt" ||
  fail "no busy time of the erl connection"

# ---- back-pressure: a peer that stops reading.  ex connects, then is
# stopped (SIGSTOP); eb sends 24 echo requests of 1 MiB whose replies go to
# a process on ex, so girder's output to ex piles up past the socket
# buffers: that connection must show more than 1 MiB queued and busy time.
erl -sname "ex$$" -setcookie "$cookie" $noconnect -noshell -eval "
  pong = net_adm:ping(list_to_atom(\"$gname@$host\")),
  ok = file:write_file(\"$work/sink\", term_to_binary(self())),
  receive after 120000 -> halt(0) end." &
ex_pid=$!
await_file -s "$work/sink" "$ex_pid" 300 "erl ex could not ping" \
  "erl ex did not connect in 30 s"
ex_beam=$(pgrep -f -- "-sname ex$$ ") || fail "no beam process of ex"
kill -STOP $ex_beam
erl -sname "eb$$" -setcookie "$cookie" $noconnect -noshell -eval "
  G = list_to_atom(\"$gname@$host\"),
  {ok, SinkBin} = file:read_file(\"$work/sink\"),
  Sink = binary_to_term(SinkBin),
  Big = binary:copy(<<7>>, 1048576),
  [{echo, G} ! {Sink, Big} || _ <- lists:seq(1, 24)],
  {echo, G} ! {self(), flushed},
  receive {echo_reply, flushed} -> ok after 120000 -> halt(3) end,
  ok = file:write_file(\"$work/blasted\", <<>>),
  receive after 60000 -> halt(0) end." &
eb_pid=$!
# girder's echo is suspended once its output to ex passes the limit (as a
# BEAM process sending to a busy distribution port is), so eb's `flushed`
# is answered only after ex reads again: watch the queue grow first.
queued=0
for _ in $(seq 1 600); do
  kill -0 "$eb_pid" 2>/dev/null || fail "erl eb could not send its 24 MiB"
  if curl -sf "$url" >"$work/busy.txt"; then
    queued=$(value "girder_dist_connection_output_queue_bytes{peer=\"ex$$@$host\"}" "$work/busy.txt")
    awk -v q="${queued:-0}" 'BEGIN { exit !(q > 1048576) }' && break
  fi
  sleep 0.1
done
python3 "$checker" "$url" $families >/dev/null || fail "third scrape is not valid exposition text"
busy=$(value "girder_dist_connection_busy_seconds_total{peer=\"ex$$@$host\"}" "$work/busy.txt")
total_busy=$(value girder_dist_busy_seconds_total "$work/busy.txt")
awk -v q="${queued:-0}" 'BEGIN { exit !(q > 1048576) }' ||
  fail "output queued to the stopped peer: ${queued:-absent} bytes, expected > 1 MiB"
awk -v b="${busy:-0}" -v t="${total_busy:-0}" 'BEGIN { exit !(b > 0 && t >= b) }' ||
  fail "busy time of the stopped peer ${busy:-absent} s (node-wide ${total_busy:-absent} s), expected > 0"
# Once ex reads again, the queue drains, echo resumes and answers eb.
kill -CONT $ex_beam
await_file -f "$work/blasted" "$eb_pid" 600 "erl eb got no echo_reply after ex resumed" \
  "erl eb got no echo_reply within 60 s of ex resuming"
echo "node metrics: both scrapes valid, traffic counted; $queued bytes queued to a stopped peer, busy $busy s"
