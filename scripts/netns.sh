#!/usr/bin/env bash
# Three servers and a load on network stacks of their own, as on separate
# hosts: Linux network namespaces (fw-s1, fw-s2, fw-s3, fw-load) joined by
# veth pairs to a bridge (fw-br0, 10.77.0.0/24). The balanced client then
# crosses real (virtual) links with their own queues, instead of loopback.
# Runs the spread scenario across them, each phase a `fastwire load` of the
# three servers through the balanced client (per-server calls, share, p50,
# p99 and failures under each row):
#
#   1. equal: three equal servers;
#   2. one slowed: server 3 answers after a 1 ms handler delay;
#   3. one killed: server 2 is SIGKILLed a third into the run and restarted
#      at two thirds (--failover: its calls in flight fail, counted, and it
#      takes calls again once its probe finds it).
#
# Usage: sudo bash scripts/netns.sh [backend] [duration]   (default: std 3s)
# Needs root (creating namespaces needs CAP_NET_ADMIN): without it, says so
# and exits without doing anything. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-std}
duration=${2:-3s}

if [ "$(id -u)" -ne 0 ]; then
    echo "netns.sh: skipped: network namespaces need root (run it with sudo); nothing was changed" >&2
    exit 0
fi
if ! ip netns add fw-probe 2>/dev/null; then
    echo "netns.sh: skipped: this machine does not let root create network namespaces (a container without CAP_NET_ADMIN?)" >&2
    exit 0
fi
ip netns del fw-probe

bin=target/release/fastwire
if [ ! -x "$bin" ]; then
    cargo build --release --bin fastwire
fi

hosts=(fw-load fw-s1 fw-s2 fw-s3)
declare -A ip=([fw-load]=10.77.0.10 [fw-s1]=10.77.0.11 [fw-s2]=10.77.0.12 [fw-s3]=10.77.0.13)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for h in "${hosts[@]}"; do ip netns del "$h" 2>/dev/null || true; done
    ip link del fw-br0 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip link add fw-br0 type bridge
ip link set fw-br0 up
for h in "${hosts[@]}"; do
    ip netns add "$h"
    ip link add "v-$h" type veth peer name eth0 netns "$h"
    ip link set "v-$h" master fw-br0 up
    ip -n "$h" addr add "${ip[$h]}/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
done

# serve HOST [ARGS...]: a server in HOST's namespace, its pid in $server_pid.
serve() {
    local host=$1
    shift
    ip netns exec "$host" "$bin" serve --backend "$backend" --addr "${ip[$host]}:7000" "$@" >/dev/null 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    # Listening once a connection from the load's namespace is accepted.
    for _ in $(seq 100); do
        if ip netns exec fw-load bash -c "exec 3<>/dev/tcp/${ip[$host]}/7000" 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "netns.sh: the server in $host did not start" >&2
    exit 1
}

servers="${ip[fw-s1]}:7000,${ip[fw-s2]}:7000,${ip[fw-s3]}:7000"
load() {
    ip netns exec fw-load "$bin" load --addr "$servers" --client "$backend" --workload pingpong --duration "$duration" "$@"
}

echo "== 1. three equal servers ($backend), each in a namespace of its own" >&2
serve fw-s1; s1=$server_pid
serve fw-s2; s2=$server_pid
serve fw-s3; s3=$server_pid
load

echo "== 2. server 3 slowed: a 1 ms handler delay" >&2
kill "$s3"; wait "$s3" 2>/dev/null || true
serve fw-s3 --handler-delay 1ms; s3=$server_pid
load

echo "== 3. server 2 killed (SIGKILL) a third into the run, restarted at two thirds" >&2
kill "$s3"; wait "$s3" 2>/dev/null || true
serve fw-s3; s3=$server_pid
seconds=$(awk -v d="$duration" 'BEGIN { n = d + 0; if (d ~ /ms$/) n /= 1000; print n }')
# The load warms up for a quarter of the window first.
load --failover &
load_pid=$!
sleep "$(awk -v s="$seconds" 'BEGIN { print s / 4 + s / 3 }')"
kill -9 "$s2"; wait "$s2" 2>/dev/null || true
echo "netns.sh: killed the server in fw-s2" >&2
sleep "$(awk -v s="$seconds" 'BEGIN { print s / 3 }')"
serve fw-s2; s2=$server_pid
echo "netns.sh: restarted the server in fw-s2" >&2
wait "$load_pid"
