#!/usr/bin/env bash
# Regenerates every published result, on this machine, from this commit:
# the comparison tables, JSON and charts under docs/src/results/, the idle
# memory and system-call tables, the figures file the guide's chapters
# include (docs/src/results/figures.txt) and the README's table.
#
# It refuses a working tree with changes: a published figure must name the
# commit that produced it, and a `-dirty` commit names none. Commit the
# results afterwards (`git add docs/src/results README.md`).
#
# Usage: scripts/publish-results.sh [rounds] [duration]   (default: compare's
# own, 10 rounds of 80 ms; the sweep's 10,000-connection points take 5 of 200 ms).
# Needs perf for the system-call table (without it, the last run's table is
# kept, and the script says so).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "publish-results: the working tree has changes; commit or stash them first" >&2
    git status --short --untracked-files=no >&2
    exit 1
fi
rounds=${1:-10}
duration=${2:-80ms}
commit=$(git rev-parse --short=12 HEAD)

# With the peers (tarpc, tonic, the codec echo) for the `peers` set.
cargo build --release --features peers --bin fastwire --examples
bin=target/release/fastwire
stage=target/publish/$commit
rm -rf "$stage"
mkdir -p "$stage"

run() { # set, then compare's arguments
    local set=$1
    shift
    mkdir -p "$stage/$set"
    echo "== $set: fastwire compare $*" >&2
    "$bin" compare --rounds "${set_rounds:-$rounds}" --duration "${set_duration:-$duration}" "$@" \
        --json "$stage/$set/compare.json" --markdown "$stage/$set/compare.md" --svg "$stage/$set"
}

# Every default backend through every workload but the sweep; servers alone
# in processes of their own (their CPU time and memory), clients alone, both.
run main --processes
# The measured settings and the reuse-port layouts beside the defaults
# they vary, and the tokio client loaded by a caller task per call.
run variants --workload fastrpc,pingpong,cpu --processes \
    --backends tokio,tokio-tasks,mio,mio-reuseport,tokio-per-core,tokio-per-core-reuseport,uring,uring-reuseport,uring-sqpoll,uring-fixed,glommio,glommio-reuseport
# The guide's small servers written by hand beside the backends they grow
# into, servers alone under the blaster, each in a process of its own.
run byhand --workload fastrpc,pingpong --role server --backends std,mio,tokio,uring --by-hand
# The stacks a Rust user would pick instead, beside fastwire's tokio
# backends and the fastest by hand.
# The peers are loaded by caller tasks: `tokio-tasks` is fastwire's tokio
# client loaded the same way.
run peers --workload fastrpc,pingpong --role both --backends tokio,tokio-tasks,tokio-per-core,std,mio --peers
# The balanced clients over three server processes: alike, one slowed,
# one killed and restarted (rounds of at least 400 ms).
run spread --workload spread
# TLS beside plaintext.
run tls --workload fastrpc,pingpong,handshakes --tls both --role both
# Each server from 1 to 10,000 connections.
set_rounds=5 set_duration=200ms run sweep --workload sweep

mkdir -p "$stage/idle"
echo "== idle memory per connection" >&2
# std at 5,000: two threads per connection meet vm.max_map_count near 8,000.
target/release/examples/idle_memory tokio,tokio-per-core,mio,glommio,uring 10000 > "$stage/idle/idle-memory.md"
target/release/examples/idle_memory std 5000 | tail -n +3 >> "$stage/idle/idle-memory.md"

mkdir -p "$stage/wakeups"
echo "== a round trip built five ways (what the pingpong floor is)" >&2
target/release/examples/round_trips > "$stage/wakeups/round-trips.md"

if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    mkdir -p "$stage/syscalls"
    echo "== system calls per call" >&2
    servers=std,tokio,mio,glommio,uring
    bash scripts/syscalls-per-call.sh "$servers" fastrpc 3 > "$stage/syscalls/syscalls.md"
    bash scripts/syscalls-per-call.sh "$servers" pingpong 3 | tail -n +3 >> "$stage/syscalls/syscalls.md"
else
    echo "publish-results: perf cannot count system calls here; the system-call table keeps its last run" >&2
    if [ -d docs/src/results/syscalls ]; then cp -r docs/src/results/syscalls "$stage/"; fi
fi

{
    echo "- commit: $commit"
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -srm)"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); open files: $(ulimit -n); locked memory: $(ulimit -l) KiB"
    echo "- toolchain: $(rustc -V)"
    echo "- rounds per row: $rounds, each a window of $duration after a warm-up of a quarter of it (at least 20 ms); the sweep: 5 rounds of 200 ms"
    echo "- command: scripts/publish-results.sh $rounds $duration"
} > "$stage/environment.md"

# Swap the new run in whole: nothing of an older run stays beside it.
rm -rf docs/src/results && mkdir -p docs/src/results

cp -r "$stage"/. docs/src/results/
"$bin" figures --results docs/src/results --readme README.md
echo "publish-results: done; commit docs/src/results and README.md" >&2
