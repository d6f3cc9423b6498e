#!/usr/bin/env bash
# demo_test.sh DEMO GIRDER OUTDIR — runs scripts/demo as scripts/test does
# (DEMO_DURATION=3, DEMO_SKIP_SETUP=1: setup has run), with this build's
# girder and node names unique to this run, and checks:
#   - exit 0;
#   - no process of the run is left: none of the pids it recorded (nor
#     anything in their process groups), nothing whose command line holds
#     the run's name suffix;
#   - results.json parses, has a girder and an otp target, and every
#     target has ops_per_s > 0 and lost == 0;
#   - report.html exists, is non-empty and is one HTML document;
#   - the girder nodes form a full mesh: each one's nodes() lists the other
#     two and e1; the cookie file is mode 0600.
# Then `girder demo --no-erl` directly: the girder nodes only (a mesh of
# three), one girder target in results.json, nothing left behind.
# Then runs it again and interrupts it as Ctrl-C would (SIGINT to its
# process group while girder bench runs): it must exit non-zero and leave
# no process either.
set -u
demo=$1
girder=$2
out=$3
suffix=_d$$
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
demo_pid=
out2=$out-int
out3=$out-noerl
# Whatever happens here, nothing the demo started outlives the test.
kill_runs() {
  local f p
  [ -n "$demo_pid" ] && kill -KILL -- "-$demo_pid" 2>/dev/null
  for f in "$out/pids" "$out2/pids" "$out3/pids"; do
    [ -f "$f" ] || continue
    while read -r p; do kill -KILL -- "-$p" 2>/dev/null; done <"$f"
  done
}
trap kill_runs EXIT
command -v python3 >/dev/null || fail "python3 not found (scripts/setup installs it)"
command -v erl >/dev/null || fail "erl not found (scripts/setup installs Erlang/OTP)"
rm -rf "$out" "$out2" "$out3"

# leftovers DIR SUFFIX: fails if a process recorded in DIR/pids, one in
# their groups, or one naming SUFFIX still runs.
leftovers() {
  local p st
  [ -s "$1/pids" ] || fail "the demo recorded no pids in $1/pids"
  while read -r p; do
    st=$(ps -o stat= -p "$p" 2>/dev/null) && [[ $st != Z* ]] && fail "pid $p (recorded by the demo) still runs"
    pgrep -g "$p" >/dev/null && fail "process group $p (started by the demo) still has processes: $(pgrep -ag "$p")"
  done <"$1/pids"
  if pgrep -f -- "$2" >/dev/null; then
    fail "processes of the demo left: $(pgrep -af -- "$2")"
  fi
}

# ---- a whole run
DEMO_DURATION=3 DEMO_SKIP_SETUP=1 DEMO_OUT=$out DEMO_NAME_SUFFIX=$suffix GIRDER=$girder \
  "$demo" >"$out.log" 2>&1
rc=$?
cat "$out.log"
[ $rc -eq 0 ] || fail "scripts/demo exited $rc"
sleep 0.2
leftovers "$out" "$suffix"
grep -q "JSON results: $out/results.json" "$out.log" || fail "the demo did not print the JSON path"
grep -q "HTML report:  $out/report.html" "$out.log" || fail "the demo did not print the report path"
grep -q "g1$suffix@.*pong" "$out.log" || fail "the cluster forming was not shown"
# mesh LOG SUFFIX WITH_ERL: each girder node's nodes() line (the line after
# its `girder rpc gN erlang nodes []`) names every other node.
mesh() {
  local g o line
  for g in 1 2 3; do
    line=$(grep -A1 "girder rpc g$g$2@[^ ]* erlang nodes" "$1" | tail -n 1)
    for o in 1 2 3; do
      [ "$o" = "$g" ] && continue
      grep -q "g$o$2@" <<<"$line" || fail "g$g$2 does not list g$o$2: '$line'"
    done
    if [ "$3" = 1 ]; then
      grep -q "e1$2@" <<<"$line" || fail "g$g$2 does not list e1$2: '$line'"
    fi
  done
}
mesh "$out.log" "$suffix" 1
[ "$(stat -c %a "$out/cookie")" = 600 ] || fail "the cookie file is not mode 0600"
python3 - "$out/results.json" <<'EOF' || fail "results.json does not hold what the demo promises"
import json, sys
r = json.load(open(sys.argv[1]))
targets = r["targets"]
kinds = sorted(t["kind"] for t in targets)
assert kinds == ["girder", "otp"], kinds
for t in targets:
    assert t["workload"] == "echo", t
    assert t["ops_per_s"] > 0, t
    assert t["lost"] == 0, t
    assert t["errors"] == 0, t
    assert t["p50_us"] > 0 and t["p99_us"] >= t["p50_us"], t
print("results.json: %s" % ", ".join("%s %.0f ops/s" % (t["node"], t["ops_per_s"]) for t in targets))
EOF
[ -s "$out/report.html" ] || fail "no report.html"
head -c 512 "$out/report.html" | grep -qi "<!doctype html" || fail "report.html is not an HTML document"
grep -qi "</html>" "$out/report.html" || fail "report.html is truncated"

# ---- Ctrl-C while girder bench runs
# Its own process group, as a terminal gives a foreground job; SIGINT back
# to the default action first (a background job of a script starts with it
# ignored, and bash cannot trap a signal ignored on entry).
DEMO_DURATION=60 DEMO_SKIP_SETUP=1 DEMO_OUT=$out2 DEMO_NAME_SUFFIX=${suffix}i GIRDER=$girder \
  python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' "$demo" >"$out2.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 600); do
  grep -q "ops/s" "$out2.log" && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "ops/s" "$out2.log" || { cat "$out2.log"; fail "the interrupted run never reached the load"; }
kill -INT -- "-$demo_pid"
for _ in $(seq 1 300); do
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$demo_pid" 2>/dev/null && { kill -KILL -- "-$demo_pid"; fail "the demo did not end within 30 s of Ctrl-C"; }
wait "$demo_pid"
rc=$?
cat "$out2.log"
[ $rc -ne 0 ] || fail "an interrupted demo exited 0"
sleep 0.2
leftovers "$out2" "${suffix}i"

# ---- girder demo --no-erl: the girder cluster alone
"$girder" demo --no-erl --duration 2 --clients 50 --out "$out3" --name-suffix "${suffix}n" \
  >"$out3.log" 2>&1
rc=$?
cat "$out3.log"
[ $rc -eq 0 ] || fail "girder demo --no-erl exited $rc"
sleep 0.2
leftovers "$out3" "${suffix}n"
mesh "$out3.log" "${suffix}n" 0
grep -q "e1${suffix}n" "$out3.log" && fail "girder demo --no-erl started an erl node"
python3 - "$out3/results.json" <<'EOF' || fail "--no-erl results.json"
import json, sys
ts = json.load(open(sys.argv[1]))["targets"]
assert [t["kind"] for t in ts] == ["girder"], ts
assert ts[0]["ops_per_s"] > 0 and ts[0]["lost"] == 0 and ts[0]["errors"] == 0, ts
EOF
echo "demo: ran, reported, stopped cleanly (also on Ctrl-C and with --no-erl)"
