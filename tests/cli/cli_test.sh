#!/usr/bin/env bash
# `girder ping|rpc|send|reload|bench` end to end: a girder EPMD on a free
# port, a `girder node` and an `erl` node serving cli_peer.erl, and every
# command against both: results, help texts, bad arguments, unreachable
# nodes, a node that accepts TCP but never answers the handshake
# (silent_node.py: -timeout bounds every command), a wrong cookie, bad
# terms, reload (and a --no-reload node refusing it), bench runs (JSON
# checked), client nodes (none left behind) and an open-loop run; `girder
# demo`'s help and bad arguments (tests/demo runs it).
#   cli_test.sh <path-to-girder> <work-dir> <girder_kv_v2.so>
set -u
girder=$1
work=$2
kv_v2=$3
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*"; exit 1; }
epmd_pid=; g_pid=; e_pid=; nr_pid=; silent_pid=
cleanup() {
  for p in $g_pid $e_pid $nr_pid $silent_pid $epmd_pid; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
}
trap cleanup EXIT
command -v erl >/dev/null && command -v erlc >/dev/null || fail "erl and erlc are needed (scripts/setup installs them)"
command -v python3 >/dev/null || fail "python3 is needed"
rm -rf "$work" && mkdir -p "$work" || fail "cannot make $work"
erlc -o "$work" "$here/cli_peer.erl" || fail "erlc cli_peer.erl"

. "$here/../girder_epmd.sh"
start_girder_epmd "$girder"
host=$(erl -noshell -eval 'io:format("~s", [net_adm:localhost()]), halt().')
cookie=gdcli_cookie_$$_0123456789
g=gdcli_g$$@$host
e=gdcli_e$$@$host

"$girder" node -sname "gdcli_g$$" -setcookie "$cookie" 2>"$work/g.log" &
g_pid=$!
erl -noshell -pa "$work" -sname "gdcli_e$$" -setcookie "$cookie" -eval 'ok = cli_peer:start()' \
    >"$work/e.log" 2>&1 &
e_pid=$!
for i in $(seq 1 100); do
  "$girder" names | grep -q "^name gdcli_g$$ " && "$girder" names | grep -q "^name gdcli_e$$ " && break
  sleep 0.1
done
"$girder" names | grep -q "^name gdcli_e$$ " || fail "the nodes did not register"
# cli_peer registers its processes right after the node is up.
for i in $(seq 1 50); do
  out=$("$girder" rpc -setcookie "$cookie" "$e" erlang whereis '[girder_kv]' 2>&1)
  case $out in '<'*) break;; esac
  sleep 0.1
done

# expect STATUS CMD...: runs CMD, checks its exit status; output in $out, $err.
expect() {
  local want=$1; shift
  out=$("$@" 2>"$work/stderr"); local rc=$?
  err=$(cat "$work/stderr")
  [ "$rc" = "$want" ] || fail "exit $rc (want $want): $* -> out '$out' err '$err'"
}
one_line() {
  [ -n "$err" ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "$1: not one line on stderr: '$err'"
}

# ---- help texts ----
expect 0 "$girder" --help
for c in ping rpc send reload bench demo; do
  echo "$out" | grep -q "^  $c " || fail "girder --help does not list $c"
done
expect 0 "$girder" demo --help
for f in --duration --out --clients --name-suffix --no-erl -setcookie; do
  echo "$out" | grep -q -- "$f" || fail "girder demo --help does not mention $f"
done
expect 0 "$girder" node --help
for f in --connect --no-reload; do
  echo "$out" | grep -q -- "$f" || fail "girder node --help does not mention $f"
done
expect 0 "$girder" reload --help
echo "$out" | grep -q "cookie" || fail "girder reload --help does not say whom reload trusts"
for c in ping rpc send reload bench; do
  expect 0 "$girder" "$c" --help
  for f in -setcookie -sname -name -timeout; do
    echo "$out" | grep -q -- "$f" || fail "girder $c --help does not mention $f"
  done
done
for f in --workload --clients --duration --warmup --rate --payload --client-nodes --client-node \
         --json --html --quiet --server --mfa -schedulers --read-batch; do
  echo "$out" | grep -q -- "$f" || fail "girder bench --help does not mention $f"
done
echo "help texts: ok"

# ---- bad arguments: exit 2, one line ----
for args in "ping" "ping a@b c@d" "ping nohost" "ping -timeout 0 a@b" "ping -bogus a@b" \
            "rpc $g erlang" "send $g name" "bench" "bench --clients 0 $g" \
            "bench --clients 1000001 $g" "bench --payload bogus:1 $g" "bench --workload nope $g" \
            "bench --duration x $g" "bench --mfa erlang:node $g" "bench --bogus 1 $g" \
            "bench -schedulers 0 $g" "bench -schedulers 1025 $g" "bench -schedulers x $g" \
            "bench --read-batch 100001 $g" "bench --read-batch -1 $g" "bench --read-batch x $g" \
            "reload" "reload $g girder_kv" "reload $g girder_kv a b" "reload nohost m p" \
            "demo --duration 0" "demo --clients x" "demo --name-suffix a-b" "demo --bogus" \
            "demo --out" "node -sname x --connect nohost"; do
  # shellcheck disable=SC2086
  expect 2 "$girder" $args
  one_line "girder $args"
done
echo "bad arguments: ok"

# ---- ping ----
expect 0 "$girder" ping -setcookie "$cookie" "$g"; [ "$out" = pong ] || fail "ping girder: $out"
expect 0 "$girder" ping -setcookie "$cookie" "$e"; [ "$out" = pong ] || fail "ping erl: $out"
expect 1 "$girder" ping -setcookie "$cookie" "nobody$$@$host"
[ "$out" = pang ] || fail "ping nobody: $out"; one_line "ping nobody"
echo "$err" | grep -q "not running" || fail "ping nobody: $err"
for target in "$g" "$e"; do
  expect 1 "$girder" ping -setcookie wrong_cookie_$$ "$target"
  [ "$out" = pang ] || fail "wrong cookie: $out"; one_line "wrong cookie"
  echo "$err" | grep -q "cookie" || fail "wrong cookie on $target: $err"
done
# No EPMD where the target's host says (a port nothing listens on).
expect 1 env ERL_EPMD_PORT=1 "$girder" ping -setcookie "$cookie" "$g"
one_line "no epmd"; echo "$err" | grep -q "no EPMD" || fail "no epmd: $err"
# An address that never answers: bounded by -timeout, never a hang.
start=$(date +%s%N)
expect 1 "$girder" ping -setcookie "$cookie" -timeout 2 "x@10.255.255.1"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
one_line "unreachable"; [ "$ms" -lt 4000 ] || fail "unreachable node took $ms ms (timeout 2 s)"
expect 1 "$girder" ping -setcookie "$cookie" "x@no-such-host.invalid"
one_line "unknown host"; echo "$err" | grep -q "unknown host" || fail "unknown host: $err"
echo "ping: ok (unreachable in $ms ms)"

# ---- rpc ----
expect 0 "$girder" rpc -setcookie "$cookie" "$e" lists reverse '[[1,2,{a,<<"b">>}]]'
[ "$out" = '[{a,<<"b">>},2,1]' ] || fail "rpc lists:reverse: $out"
expect 0 "$girder" rpc -setcookie "$cookie" "$e" erlang node
[ "$out" = "$e" ] || [ "$out" = "'$e'" ] || fail "rpc erlang:node: $out"
expect 0 "$girder" rpc -setcookie "$cookie" "$g" girder echo '[#{k => [1.5,"s"]}]'
[ "$out" = '#{k => [1.5,"s"]}' ] || fail "rpc girder:echo: $out"
expect 1 "$girder" rpc -setcookie "$cookie" "$e" no_such_module f '[1]'
case $out in '{badrpc,'*) ;; *) fail "rpc badrpc: $out";; esac
expect 1 "$girder" rpc -setcookie "$cookie" "$e" lists reverse '[1,'
one_line "rpc bad term"; echo "$err" | grep -q "bad term" || fail "rpc bad term: $err"
expect 1 "$girder" rpc -setcookie "$cookie" "$e" lists reverse 'notalist'
one_line "rpc args not a list"
# girder_bench:start/1 takes its parameters from the network: malformed
# ones are refused (badarg) and the node carries on.
coord='<0.1.0>'
for params in 'x' '{girder_bench,1,echo}' \
    "{girder_bench,1,echo,0,0,1000,0,1000,0,32,'$e',echo,m,f,0,1,0,$coord}" \
    "{girder_bench,1,echo,10,0,1000,0,1000,9,32,'$e',echo,m,f,0,1,0,$coord}" \
    "{girder_bench,1,nope,10,0,1000,0,1000,0,32,'$e',echo,m,f,0,1,0,$coord}" \
    "{girder_bench,2,echo,10,0,1000,0,1000,0,32,'$e',echo,m,f,0,1,0,$coord}" \
    "{girder_bench,1,echo,10,0,1000,0,1000,1,99999999,'$e',echo,m,f,0,1,0,$coord}"; do
  expect 1 "$girder" rpc -setcookie "$cookie" "$g" girder_bench start "[$params]"
  case $out in '{badrpc,'*badarg*) ;; *) fail "girder_bench:start($params): $out";; esac
done
expect 0 "$girder" ping -setcookie "$cookie" "$g"
echo "rpc: ok"

# ---- send ----
expect 0 "$girder" send -setcookie "$cookie" "$e" sink '{hello,[1,2],<<"x">>}'
expect 0 "$girder" rpc -setcookie "$cookie" "$e" cli_peer sink_msgs
[ "$out" = '[{hello,[1,2],<<"x">>}]' ] || fail "sink got: $out"
expect 1 "$girder" send -setcookie "$cookie" "$e" nobody_here hi
one_line "send to nobody"; echo "$err" | grep -q "nobody_here" || fail "send nobody: $err"
expect 1 "$girder" send -setcookie "$cookie" "$e" sink '{unclosed'
one_line "send bad term"; echo "$err" | grep -q "bad term" || fail "send bad term: $err"
expect 0 "$girder" send -setcookie "$cookie" "$g" echo '{stop_not, x}'
echo "send: ok"

# ---- reload ----
expect 0 "$girder" reload -setcookie "$cookie" "$g" girder_kv "$kv_v2"
[ "$out" = '{ok,2}' ] || fail "reload girder_kv: $out"
# The new code answers: gen_server:call({girder_kv, G}, version) from erl.
expect 0 "$girder" rpc -setcookie "$cookie" "$e" gen_server call "[{girder_kv,'$g'},version]"
[ "$out" = 2 ] || fail "girder_kv's version after reload: $out"
expect 1 "$girder" reload -setcookie "$cookie" "$g" girder_kv "$work/no_such.so"
case $out in '{error,'*no_such.so*) ;; *) fail "reload of a missing file: $out";; esac
expect 1 "$girder" reload -setcookie "$cookie" "$g" no_such_module "$kv_v2"
case $out in '{badrpc,'*) ;; *) fail "reload of an unknown module: $out";; esac
# A node started with --no-reload refuses.
"$girder" node -sname "gdcli_nr$$" -setcookie "$cookie" --no-reload 2>"$work/nr.log" &
nr_pid=$!
for i in $(seq 1 100); do
  "$girder" ping -setcookie "$cookie" -timeout 1 "gdcli_nr$$@$host" >/dev/null 2>&1 && break
  sleep 0.1
done
expect 1 "$girder" reload -setcookie "$cookie" "gdcli_nr$$@$host" girder_kv "$kv_v2"
[ "$out" = '{error,reload_disabled}' ] || fail "reload on a --no-reload node: $out"
expect 1 "$girder" reload -setcookie wrong_cookie_$$ "$g" girder_kv "$kv_v2"
one_line "reload wrong cookie"; echo "$err" | grep -q "cookie" || fail "reload wrong cookie: $err"
kill "$nr_pid"; wait "$nr_pid" 2>/dev/null; nr_pid=
echo "reload: ok"

# ---- a weak cookie draws one loud warning at start (design.md) ----
# The nodes above run with a 26-character cookie: no warning.
grep -q "WARNING.*cookie" "$work/g.log" && fail "a 26-character cookie drew a warning: $(cat "$work/g.log")"
"$girder" node -sname "gdcli_nr$$" -setcookie abc 2>"$work/weak.log" &
nr_pid=$!
for i in $(seq 1 100); do
  "$girder" ping -setcookie abc -timeout 1 "gdcli_nr$$@$host" >/dev/null 2>&1 && break
  sleep 0.1
done
[ "$(grep -c "WARNING.*cookie" "$work/weak.log")" = 1 ] ||
  fail "a 3-character cookie: want one warning, got: $(cat "$work/weak.log")"
kill "$nr_pid"; wait "$nr_pid" 2>/dev/null; nr_pid=
echo "weak cookie warning: ok"

# ---- a node that accepts TCP and never answers: -timeout bounds all ----
python3 "$here/silent_node.py" "gdcli_silent$$" >"$work/silent.out" 2>&1 &
silent_pid=$!
for i in $(seq 1 50); do grep -q ready "$work/silent.out" && break; sleep 0.1; done
grep -q ready "$work/silent.out" || fail "silent_node.py did not register: $(cat "$work/silent.out")"
s="gdcli_silent$$@$host"
for args in "ping $s" "rpc $s erlang node" "send $s sink hi" "reload $s girder_kv $kv_v2" \
            "bench --quiet --duration 1 $s" "bench --quiet --duration 1 --client-node $s $g"; do
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  expect 1 "$girder" ${args%% *} -setcookie "$cookie" -timeout 1.5 ${args#* }
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$err" | grep -q "no answer from .* within 1500 ms" || fail "silent node, $args: $err"
  # bench with a client node checks the target first (a real round trip)
  [ "$ms" -lt 4500 ] || fail "silent node, $args: $ms ms (timeout 1.5 s)"
done
kill "$silent_pid"; wait "$silent_pid" 2>/dev/null; silent_pid=
echo "silent node: ok (-timeout bounds ping, rpc, send, reload, bench)"

# ---- bench ----
check_json() { # FILE NTARGETS [extra python condition]
  python3 - "$1" "$2" "${3:-True}" <<'PY' || fail "results JSON $1"
import json, sys
r = json.load(open(sys.argv[1]))
ts = r["targets"]
assert len(ts) == int(sys.argv[2]), ts
for t in ts:
    for k in ("node", "kind", "workload", "ops_per_s", "p50_us", "p99_us", "errors", "lost"):
        assert k in t, (k, t)
    assert t["ops_per_s"] > 0 and t["lost"] == 0 and t["errors"] == 0 and t["misordered"] == 0, t
    assert eval(sys.argv[3]), (sys.argv[3], t)
PY
}
expect 0 "$girder" bench -setcookie "$cookie" --duration 2 --warmup 0.5 --json "$work/echo.json" \
    --html "$work/echo.html" "$g" "$e"
check_json "$work/echo.json" 2
python3 -c "
import json,sys; ts=json.load(open('$work/echo.json'))['targets']
assert [t['kind'] for t in ts] == ['girder','otp'], ts
assert [t['node'] for t in ts] == ['$g','$e'], ts" || fail "kinds/nodes in echo.json"
# The client node's schedulers: one fewer than the cores by default, or -schedulers N.
python3 -c "
import json, os; p = json.load(open('$work/echo.json'))['params']
assert p['schedulers'] == max(1, os.cpu_count() - 1), p
assert p['read_batch_us'] == 0, p" || fail "default schedulers or read batching in echo.json"
[ -s "$work/echo.html" ] && grep -q "<svg" "$work/echo.html" || fail "no HTML report"
echo "bench echo: $(python3 -c "import json; print([(t['kind'], t['ops_per_s']) for t in json.load(open('$work/echo.json'))['targets']])")"
for w in call cast; do
  expect 0 "$girder" bench -setcookie "$cookie" --quiet --workload "$w" --duration 1 --warmup 0.3 \
      --clients 20 -schedulers 3 --json "$work/$w.json" "$e"
  check_json "$work/$w.json" 1 "t['workload'] == '$w'"
  python3 -c "import json; assert json.load(open('$work/$w.json'))['params']['schedulers'] == 3" ||
    fail "bench -schedulers 3: not in $w.json"
done
# Read batching: 100 us by default in a closed loop of 256 clients or more,
# or as --read-batch says; every reply still checked.
for rb in "" "--read-batch 200"; do
  # shellcheck disable=SC2086
  expect 0 "$girder" bench -setcookie "$cookie" --quiet --duration 1 --warmup 0.3 --clients 300 \
      $rb --json "$work/rb.json" "$g"
  check_json "$work/rb.json" 1
  want=$([ -n "$rb" ] && echo 200 || echo 100)
  python3 -c "import json; assert json.load(open('$work/rb.json'))['params']['read_batch_us'] == $want" ||
    fail "bench $rb --clients 300: read_batch_us is not $want"
done
expect 0 "$girder" bench -setcookie "$cookie" --quiet --workload rpc --duration 1 --warmup 0.3 \
    --clients 20 --payload map:5 --json "$work/rpc.json" "$g" "$e"
check_json "$work/rpc.json" 2 "t['workload'] == 'rpc'"
echo "bench call, cast, rpc: ok"

# Open loop: 400 requests/s in all, measured from the intended send times.
expect 0 "$girder" bench -setcookie "$cookie" --quiet --rate 400 --clients 20 --duration 2 \
    --warmup 0.5 --json "$work/open.json" "$e"
check_json "$work/open.json" 1 "300 <= t['ops_per_s'] <= 500"
echo "bench open loop: ok"

# Client nodes: two `girder node` children run the clients; none is left.
"$girder" bench -setcookie "$cookie" --quiet --client-nodes 2 --clients 40 --duration 1 \
    --warmup 0.3 --json "$work/nodes.json" "$g" "$e" >"$work/nodes.out" 2>&1 &
bench_pid=$!
wait "$bench_pid" || fail "bench --client-nodes 2: $(cat "$work/nodes.out")"
check_json "$work/nodes.json" 2
python3 -c "import json; assert json.load(open('$work/nodes.json'))['params']['client_nodes'] == 2" \
    || fail "client_nodes in params"
sleep 0.2
left=$(pgrep -f "girder_bench_${bench_pid}_" || true)
[ -z "$left" ] || fail "client nodes left behind: $left"
echo "bench client nodes: ok"

# Faults are found: a server that drops, duplicates or changes every 50th
# reply makes the run fail (exit 1) with lost, misordered or errors counted.
for fault in lossy:lost dup:misordered bad:errors; do
  server=${fault%%:*}_echo; field=${fault#*:}
  expect 1 "$girder" bench -setcookie "$cookie" --quiet --server "$server" --clients 10 \
      --duration 1 --warmup 0.2 --json "$work/$server.json" "$e"
  echo "$err$out" | grep -q "FAILED" || fail "bench --server $server does not say FAILED: $out $err"
  python3 -c "
import json; t = json.load(open('$work/$server.json'))['targets'][0]
assert t['$field'] > 0, t" || fail "bench --server $server: no $field counted"
done
echo "bench faults found: ok"

# A server nobody registered is refused before any load (girder and erl).
expect 1 "$girder" bench -setcookie "$cookie" --quiet --duration 1 --server nosuch_$$ "$g" "$e"
[ "$(echo "$err" | grep -c "no process is registered as nosuch_$$")" = 2 ] ||
  fail "bench --server nosuch: $err"

# A bench whose target refuses the cookie fails in one line, exit 1.
expect 1 "$girder" bench -setcookie wrong_cookie_$$ --quiet --duration 1 "$e"
echo "$err" | grep -q "cookie" || fail "bench wrong cookie: $err"
echo "PASS"
