#!/usr/bin/env bash
# System calls and context switches per call of each server, counted by the
# kernel (perf's raw_syscalls tracepoint and the context-switches software
# event: no hardware counters needed). Each server runs alone in a
# `fastwire serve` process; the same load (`fastwire load`, mio client) is
# put on each; perf counts the server process only, during the middle of
# the measured window, and the calls in that stretch are the load's rate
# times its length.
#
# Usage: scripts/syscalls-per-call.sh [backends] [workload] [seconds]
#   e.g. scripts/syscalls-per-call.sh mio,uring,glommio fastrpc 3
# Needs perf (Debian: linux-perf) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
backends=${1:-mio,uring,glommio}
workload=${2:-fastrpc}
seconds=${3:-3}
bin=target/release/fastwire
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| server | workload | calls/s | syscalls per call | context switches per call |"
echo "| --- | --- | ---: | ---: | ---: |"
for backend in ${backends//,/ }; do
    "$bin" serve --backend "$backend" --addr 127.0.0.1:0 > "$tmp/serve.out" 2>/dev/null &
    server=$!
    until grep -q "serving on" "$tmp/serve.out" 2>/dev/null; do sleep 0.05; done
    addr=$(grep "serving on" "$tmp/serve.out" | awk '{print $4}')
    "$bin" load --addr "$addr" --workload "$workload" --client mio --duration "${seconds}s" --json "$tmp/load.json" > /dev/null 2>&1 &
    load=$!
    # Skip the warm-up (a quarter of the duration) and the first tenth of the window.
    window=$(python3 -c "print($seconds * 0.8)")
    sleep "$(python3 -c "print($seconds * 0.25 + $seconds * 0.1)")"
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$server" -o "$tmp/perf.csv" -- sleep "$window" 2>/dev/null
    wait "$load"
    kill -INT "$server"; wait "$server" || true
    python3 - "$tmp/perf.csv" "$tmp/load.json" "$window" "$backend" "$workload" <<'PY'
import json, sys
perf, load, window, backend, workload = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
counts = {}
for line in open(perf):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[0].replace(".", "").isdigit():
        counts[parts[2]] = float(parts[0])
run = json.load(open(load))[0]
rate = run["ops"] / run["seconds"]
calls = rate * window
print(f"| {backend} | {workload} | {rate:,.0f} | {counts.get('raw_syscalls:sys_enter', 0) / calls:.4f} | {counts.get('context-switches', 0) / calls:.4f} |")
PY
done
