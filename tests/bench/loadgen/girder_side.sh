#!/usr/bin/env bash
# girder's side of tests/bench/loadgen/run.sh: one `girder bench` run whose
# results JSON becomes result lines shaped like beam_loadgen's.
#   girder_side.sh GIRDER COOKIE TARGET CLIENTS DURATION_S WARMUP_S BYTES JSON_FILE
set -u
girder=$1 cookie=$2 target=$3 clients=$4 duration=$5 warmup=$6 bytes=$7 json=$8
"$girder" bench -setcookie "$cookie" --quiet --workload echo --clients "$clients" \
    --duration "$duration" --warmup "$warmup" --payload "binary:$bytes" \
    --json "$json" "$target" >&2 || exit 1
python3 - "$json" "$clients" "$duration" "$warmup" "$bytes" "$target" <<'PY'
import json, sys
f, clients, dur, warm, nbytes, target = sys.argv[1:]
t = json.load(open(f))["targets"][0]
if t["errors"] or t["lost"] or t["misordered"]:
    sys.exit("girder bench: errors %d, lost %d, misordered %d" % (t["errors"], t["lost"], t["misordered"]))
params = {"clients": int(clients), "duration_ms": int(float(dur) * 1000),
          "payload_bytes": int(nbytes), "target": target, "warmup_ms": int(float(warm) * 1000)}
for bench, key, unit in (("loadgen_echo", "ops_per_s", "round_trips/s"),
                         ("loadgen_echo_p50", "p50_us", "us"), ("loadgen_echo_p99", "p99_us", "us")):
    print(json.dumps({"bench": bench, "impl": "girder", "params": params,
                      "value": round(t[key], 3), "unit": unit}, separators=(",", ":")))
PY
