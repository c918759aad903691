# fastwire's recipes. `just` is a convenience: every recipe is a plain cargo
# command you can run yourself (install: `cargo install just` or `pip install rust-just`).

# List the recipes.
default:
    @just --list

# Run the whole test suite (the README's test command).
test:
    cargo test --workspace

# The main job: every backend through every workload, side by side, in one
# process (about two minutes: every row in ten rounds, verdicts under the table). Extra arguments go to `fastwire compare`, e.g.
# `just compare --workload fastrpc --rounds 20`.
compare *args:
    cargo run --release -- compare {{args}}

# fastwire beside the stacks a Rust user would pick instead (tarpc, tonic,
# a tokio-util codec echo): builds them too (the `peers` feature).
peers *args:
    cargo run --release --features peers -- compare --workload fastrpc,pingpong --role both --backends tokio,std,mio --peers {{args}}

# Every published result, regenerated on this machine from a clean commit
# (refuses a dirty tree): the compare runs, idle memory, system calls, and the
# figures the guide and the README include.
publish duration="1s":
    bash scripts/publish-results.sh {{duration}}

# Rewrite the guide's figures and the README's table from the published JSON.
figures:
    cargo run --release -- figures

# Each server from 1 to 10,000 connections (several minutes), printed only.
sweep:
    cargo run --release -- compare --workload sweep --rounds 3 --duration 300ms

# TLS inside the state machine against tokio-rustls under a Framed codec, plaintext and TLS.
tls-layers:
    cargo run --release --example tls_layers

# Write a test certificate authority and server and client certificates (to try `serve --tls-cert`).
tls-certs dir="target/tls":
    cargo run --release -- tls-certs --dir {{dir}}

# The key-value service example: async handlers, an error convention, deadlines, a restart.
kv:
    cargo run --release --example kv

# A tokio task per request against a set of futures per connection, for async handlers.
async-spawn-vs-set:
    cargo run --release --example async_spawn_vs_set

# Load any fastrpc server (Go's included). E.g. `just load 127.0.0.1:7000 --rate 50000`.
load addr="127.0.0.1:7000" *args:
    cargo run --release -- load --addr {{addr}} {{args}}

# The conns workload: 10,000 connections from one process against a server in another.
conns backend="mio" connections="10000" rate="20000":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    ./target/release/fastwire serve --backend {{backend}} --addr 127.0.0.1:0 --max-connections 20000 > target/conns-serve.out &
    server=$!
    trap 'kill -INT $server 2>/dev/null || true' EXIT
    until [ -s target/conns-serve.out ]; do sleep 0.1; done
    addr=$(head -1 target/conns-serve.out | awk '{print $4}')
    ./target/release/fastwire load --addr "$addr" --workload conns --connections {{connections}} --rate {{rate}} --duration 5s

# Where pingpong latency goes: each server alone under the blaster, beside the floor pair.
server-latency:
    cargo run --release -- compare --workload pingpong --role server --processes

# Every criterion benchmark: the codec, and the backends end to end (HTML in target/criterion/).
bench:
    cargo bench

# The protocol crate's codec alone: ns per message and MB/s.
bench-codec:
    cargo bench --bench codec

# The backends end to end, one criterion group per workload.
bench-backends:
    cargo bench --bench backends

# A short run of every benchmark, to check they work.
bench-quick:
    cargo bench --bench codec -- --warm-up-time 0.2 --measurement-time 0.5
    cargo bench --bench backends -- --warm-up-time 0.1 --measurement-time 0.3

# Format, lint (warnings are errors), as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Fuzz one decoder (server_decode or client_decode) for `seconds` seconds.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets the
# stable toolchain take the sanitizer flags libFuzzer needs.
fuzz target="server_decode" seconds="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} --fuzz-dir . -- -max_total_time={{seconds}}

# Serve the demo handler (backend: std, tokio, tokio-per-core, mio, glommio, uring; or a variant, e.g. mio-reuseport).
# Extra arguments go to `fastwire serve`, e.g. `just serve mio 127.0.0.1:7000 --handler-delay 5ms`.
serve backend="tokio" addr="127.0.0.1:7000" *args:
    cargo run --release -- serve --backend {{backend}} --addr {{addr}} {{args}}

# Server memory per idle connection, server and clients in separate processes.
idle-memory backends="mio,glommio,tokio,tokio-per-core" connections="10000":
    cargo build --release --examples
    cargo run --release --example idle_memory -- {{backends}} {{connections}}

# A connection storm against each accept strategy of the mio backend.
accept-storm backends="mio,mio-reuseport" threads="4" per_thread="2500":
    cargo build --release --examples
    cargo run --release --example accept_storm -- {{backends}} {{threads}} {{per_thread}}

# The conformance suite only (every backend).
conformance:
    cargo test --test suite conformance::

# The flakiness check: the whole suite `runs` times under `hogs` busy loops.
test-under-load runs="5" hogs="2":
    bash scripts/test-under-load.sh {{runs}} {{hogs}}

# Build the guide (mdBook; installs it with cargo if missing) into docs/book/.
docs:
    bash scripts/build-docs.sh

# Everything CI runs.
ci:
    bash .ci/run

# The sans-I/O example: a client and server state machine over in-memory bytes.
example-sans-io:
    cargo run --example sans_io

# Three servers and the balanced load in network namespaces of their own (root):
# equal, one slowed, one killed and restarted. E.g. `sudo just netns mio 3s`.
netns backend="std" duration="3s":
    bash scripts/netns.sh {{backend}} {{duration}}
