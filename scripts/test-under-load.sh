#!/usr/bin/env bash
# The whole test suite, several times in a row, while busy loops compete
# for the cores: the flakiness check. A test that passes alone and fails
# here depends on timing it does not control (a deadline too tight for a
# loaded machine, a race with a timer); fix its cause, not its timeout.
#
# Usage: scripts/test-under-load.sh [runs] [hogs]   (default: 5 runs, 2 hogs)
# Stops at the first failed run; the hogs stop with the script.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
hogs=${2:-2}
logs=${CARGO_TARGET_DIR:-target}
mkdir -p "$logs"
cargo test --workspace --no-run --quiet
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$hogs"); do
    (while :; do :; done) &
    pids+=($!)
done
for run in $(seq "$runs"); do
    start=$(date +%s)
    log="$logs/test-under-load-$run.log"
    if ! cargo test --workspace --quiet >"$log" 2>&1; then
        echo "run $run of $runs failed under $hogs hogs: $log" >&2
        grep -E "panicked|FAILED|failures:" "$log" | head -20 >&2
        exit 1
    fi
    echo "run $run of $runs passed under $hogs hogs in $(( $(date +%s) - start )) s"
done
