# fastwire's recipes. `just` is a convenience: every recipe is a plain cargo
# command you can run yourself (install: `cargo install just` or `pip install rust-just`).

# List the recipes.
default:
    @just --list

# Run the whole test suite (the README's test command).
test:
    cargo test --workspace

# Run every benchmark (criterion; HTML reports in target/criterion/).
bench:
    cargo bench

# The protocol crate's codec alone: ns per message and MB/s.
bench-codec:
    cargo bench --bench codec

# A short benchmark run, to check they work.
bench-quick:
    cargo bench --bench codec -- --warm-up-time 0.2 --measurement-time 0.5

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

# Serve the demo handler (backend: std, tokio, tokio-per-core, mio, mio-acceptor, glommio).
serve backend="tokio" addr="127.0.0.1:7000":
    cargo run --release -- serve --backend {{backend}} --addr {{addr}}

# Server memory per idle connection, server and clients in separate processes.
idle-memory backends="mio,glommio,tokio,tokio-per-core" connections="10000":
    cargo build --release --examples
    cargo run --release --example idle_memory -- {{backends}} {{connections}}

# A connection storm against each accept strategy of the mio backend.
accept-storm backends="mio,mio-acceptor" threads="4" per_thread="2500":
    cargo build --release --examples
    cargo run --release --example accept_storm -- {{backends}} {{threads}} {{per_thread}}

# The conformance suite only (every backend).
conformance:
    cargo test --test conformance

# Everything CI runs.
ci:
    bash .ci/run

# The sans-I/O example: a client and server state machine over in-memory bytes.
example-sans-io:
    cargo run --example sans_io
