//! The `fastwire` command line.
//!
//! * `fastwire serve`: a fastrpc server on any backend, with the demo
//!   handler (an empty name gets fastrpc's 261-byte benchmark body, any other
//!   name `re:` followed by the value), so that Go fastrpc's benchmark client
//!   and the recorded vectors work against it; it can wait or burn CPU on
//!   each call (`--handler-delay`, `--handler-work`), with a concurrency limit.
//! * `fastwire compare`: every backend through the workloads, server and
//!   load in this process, side by side (the project's main job).
//! * `fastwire load`: the same load against any fastrpc server, Go's
//!   included: closed loop, or open loop at a fixed rate.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fastwire::proto::{Compression, Limits, OverLimit, ProtocolConfig, ServerConfig};
use fastwire_bench::backend::BackendKind;
use fastwire_bench::demo::{start_demo, Demo};
use fastwire_bench::harness::{self, drive, report, Phase, Role, Row, Spec, Timing, Workload};

// Every allocation of the process is counted, for allocs/op.
#[global_allocator]
static ALLOCATOR: harness::alloc::Counting = harness::alloc::Counting;

#[derive(Parser)]
#[command(name = "fastwire", version, about = "fastrpc's wire protocol over several network architectures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo handler until Ctrl-C (or SIGTERM), then shut down gracefully.
    Serve(ServeArgs),
    /// Run backends through the workloads in this process and compare them side by side.
    Compare(CompareArgs),
    /// Load any fastrpc server (Go's included) and report the same figures.
    Load(LoadArgs),
    /// Write a test certificate authority and a server and a client
    /// certificate signed by it (PEM, made now with rcgen), to try `serve
    /// --tls-cert` and `load --tls`. For tests and trials, not production.
    TlsCerts(TlsCertsArgs),
    /// Write the figures the guide and the README quote from the published
    /// run's JSON (docs/src/results/figures.txt, and the README's table).
    Figures(FiguresArgs),
}

#[derive(Args)]
struct FiguresArgs {
    /// The published results: a directory of `<set>/compare.json`.
    #[arg(long, default_value = "docs/src/results")]
    results: std::path::PathBuf,
    /// The README whose generated table to rewrite.
    #[arg(long, default_value = "README.md")]
    readme: std::path::PathBuf,
}

#[derive(Args)]
struct TlsCertsArgs {
    /// Directory to write ca.pem, server.pem, server.key, client.pem and client.key into (created if missing).
    #[arg(long, default_value = "target/tls")]
    dir: std::path::PathBuf,
}

/// Parses `3s`, `500ms`, `5m`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 3s, 500ms, 5m)"))
}

/// A duration, or `off` for none. (A newtype: clap gives `Option` fields a
/// meaning of their own.)
#[derive(Clone, Copy, Debug)]
struct MaybeDuration(Option<Duration>);

fn optional_duration(s: &str) -> Result<MaybeDuration, String> {
    if s == "off" || s == "none" {
        Ok(MaybeDuration(None))
    } else {
        duration(s).map(|d| MaybeDuration(Some(d)))
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Serve with one of the guide's small servers written by hand instead
    /// of a backend: threads, mio, tokio or uring (`crates/by-hand`). They
    /// speak plain uncompressed fastrpc with the demo handler's answers, take
    /// only --addr, and stop only when killed.
    #[arg(long, value_name = "MODEL", value_parser = by_hand_model,
          conflicts_with_all = ["backend", "compress", "sniff", "version", "tls_cert", "handler_delay", "handler_work"])]
    by_hand: Option<fastwire_by_hand::Model>,
    /// Backend: std, tokio, tokio-per-core, mio, glommio, uring, or a variant:
    /// tokio-per-core-reuseport, mio-reuseport, glommio-reuseport, uring-reuseport, uring-sqpoll, uring-fixed.
    #[arg(long, default_value = "tokio")]
    backend: BackendKind,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// How the server compresses what it sends: none, flate, snappy.
    #[arg(long, default_value = "none")]
    compress: Compression,
    /// Sniff header both sides send first (must match the clients').
    #[arg(long, default_value = "")]
    sniff: String,
    /// Protocol version byte (must match the clients').
    #[arg(long, default_value_t = 0)]
    version: u8,
    /// Largest name and value, in bytes.
    #[arg(long, default_value_t = fastwire::proto::config::GO_MAX_BYTES)]
    max_message: usize,
    /// Connections beyond this are accepted and closed at once.
    #[arg(long, default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// Responses buffered but unwritten per connection before it stops reading.
    #[arg(long, default_value_t = ServerConfig::default().max_in_flight)]
    max_in_flight: usize,
    /// Bytes of output buffered per connection before it stops reading.
    #[arg(long, default_value_t = ServerConfig::default().max_output_buffer)]
    max_output: usize,
    /// A connection without a complete handshake after this long is closed.
    #[arg(long, default_value = "3s", value_parser = duration)]
    handshake_timeout: Duration,
    /// A connection without traffic for this long is closed (`off`: never).
    #[arg(long, default_value = "5m", value_parser = optional_duration)]
    idle_timeout: MaybeDuration,
    /// Wait this long for more responses before each write (`off`: write at once).
    #[arg(long, default_value = "off", value_parser = optional_duration)]
    batch_delay: MaybeDuration,
    /// Time allowed on shutdown to finish in-flight requests.
    #[arg(long, default_value = "5s", value_parser = duration)]
    grace: Duration,
    /// The demo handler answers each call after this wait, without blocking
    /// (glommio: a local task on glommio's timer; std, mio, uring and tokio: a
    /// deferred answer from a timer thread). Calls named `wait/<µs>` wait that long.
    #[arg(long, value_parser = duration)]
    handler_delay: Option<Duration>,
    /// The demo handler burns this much CPU on each call, inline.
    #[arg(long, value_parser = duration)]
    handler_work: Option<Duration>,
    /// Requests handled at once by the whole server (Go's Server.Concurrency) [default: no limit].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Over the concurrency limit: `backpressure` (stop reading that
    /// connection until a slot frees) or `reject` (answer at once with
    /// "concurrency limit exceeded", as Go fastrpc's servers do).
    #[arg(long, default_value = "backpressure")]
    over_limit: OverLimitArg,
    /// Worker threads for blocking handlers.
    #[arg(long, default_value_t = ServerConfig::default().blocking_threads)]
    blocking_threads: usize,
    /// Serve TLS with this PEM certificate chain (leaf first); needs --tls-key.
    /// Clients that do not ask for TLS are closed (see --tls-optional).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Require client certificates signed by an authority in this PEM file (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Also serve clients that do not ask for TLS, in plaintext (Go's behaviour).
    #[arg(long, requires = "tls_cert")]
    tls_optional: bool,
}

/// `--over-limit`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OverLimitArg {
    Backpressure,
    Reject,
}

/// The value `--over-limit reject` answers with.
const OVER_LIMIT_VALUE: &[u8] = b"concurrency limit exceeded";

/// Where results go besides the terminal.
#[derive(Args)]
struct Outputs {
    /// Write the results as JSON (an array of objects, one per measurement).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Write the table and its environment as Markdown.
    #[arg(long, value_name = "FILE")]
    markdown: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// Workloads, comma-separated: fastrpc, pingpong, sizes, nowait, conns,
    /// wait, cpu, mixed, mixed-base, sweep, spread [default: all but sweep,
    /// which runs each server at 1 to 10,000 connections: several minutes,
    /// and spread, the balanced client over three server processes: equal,
    /// one ten times slower, one killed and restarted mid-run; rounds of
    /// at least 400 ms].
    #[arg(long, value_delimiter = ',')]
    workload: Vec<Workload>,
    /// Backends, comma-separated [default: every backend of this build].
    #[arg(long, value_delimiter = ',')]
    backends: Vec<BackendKind>,
    /// Connections, comma-separated, for fastrpc, nowait, conns, wait, cpu,
    /// mixed and spread [default: 2, except conns: 1000 and spread: 1].
    #[arg(long, value_delimiter = ',')]
    connections: Vec<usize>,
    /// Calls in flight per connection, comma-separated, for fastrpc, sizes,
    /// wait, cpu, mixed and spread [default: 1000, 8, 100, 8 (a caller
    /// thread each)].
    #[arg(long, value_delimiter = ',')]
    depth: Vec<usize>,
    /// Value sizes in bytes, comma-separated, for pingpong and sizes [default: 1; 16,1024,65536,1048576].
    #[arg(long, value_delimiter = ',')]
    value_size: Vec<usize>,
    /// Compression, comma-separated: none, flate, snappy.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    compress: Vec<Compression>,
    /// The measured window of each round (plus a quarter of it, at least
    /// 20 ms, to warm up; and a third of it, at least 50 ms, in a separate
    /// run after the rounds that counts allocations).
    #[arg(long, default_value = "80ms", value_parser = duration)]
    duration: Duration,
    /// Rounds: each configuration's backends and floor are measured this
    /// many times, in turn, in an order that rotates from round to round;
    /// each row shows the median of its rounds and a 95% interval (from
    /// six rounds on; fewer give the widest interval, smallest to largest,
    /// at a lower confidence; from nine on, the interval leaves out the
    /// most extreme rounds).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: u16,
    /// Calls per second of the conns workload (open loop), over all its connections.
    #[arg(long)]
    rate: Option<f64>,
    /// Roles, comma-separated: both (a backend's client and server
    /// together), server (its server loaded by the blaster), client (its
    /// client against the floor server). server and client apply to
    /// fastrpc and pingpong, uncompressed [default: all three for those, both for the rest].
    #[arg(long, value_delimiter = ',')]
    role: Vec<Role>,
    /// Leave out the floors (the no-protocol references).
    #[arg(long)]
    no_floor: bool,
    /// Run each server under the blaster (`--role server`) as a child
    /// `fastwire serve` process, and report its own CPU time per call and
    /// its memory.
    #[arg(long)]
    processes: bool,
    /// Add the peers, the stacks a Rust user would pick instead: tarpc,
    /// tonic and a hand-written tokio-util codec echo (rows `peer-tarpc`,
    /// `peer-tonic`, `peer-codec`), on fastrpc and pingpong, client and
    /// server together.
    /// Needs the `peers` feature: `cargo run --release --features peers --
    /// compare --peers`.
    #[arg(long)]
    peers: bool,
    /// Add the guide's small servers written by hand (rows `by-hand-threads`,
    /// `by-hand-mio`, `by-hand-tokio`, `by-hand-uring`) to the server rows
    /// (`--role server`) of uncompressed plaintext fastrpc and pingpong.
    /// Each runs as a `fastwire serve --by-hand` process of its own, and so,
    /// for a like-for-like race, does every backend's server (as with
    /// --processes).
    #[arg(long)]
    by_hand: bool,
    /// Draw SVG charts into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
    /// TLS: `on` runs every backend over TLS (a certificate authority and
    /// server certificate made for the run), `both` runs each measurement
    /// in plaintext and over TLS side by side; `--tls` alone is `on`. TLS
    /// rows are `both` only: the floor peers speak plain TCP.
    #[arg(long, value_enum, default_value = "off", num_args = 0..=1, default_missing_value = "on")]
    tls: TlsMode,
    #[command(flatten)]
    outputs: Outputs,
}

/// `compare --tls`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TlsMode {
    Off,
    On,
    Both,
}

#[derive(Args)]
struct LoadArgs {
    /// The server's address; several, comma-separated, load them all
    /// through the balanced client (power of two choices), whose report
    /// shows calls and latency per server.
    #[arg(long)]
    addr: String,
    /// Load every address the host name of --addr resolves to (resolved
    /// again every 30 s) through the balanced client.
    #[arg(long)]
    balance: bool,
    /// Workload: fastrpc, pingpong, sizes, nowait, conns, wait, cpu, mixed
    /// or mixed-base (wait, cpu and mixed expect a server with the demo
    /// service: `fastwire serve --handler-delay 1ms` for wait,
    /// `--handler-work 20us` for cpu, plain for mixed).
    #[arg(long, default_value = "fastrpc")]
    workload: Workload,
    /// The client that makes the calls (closed loop): std, tokio, mio, glommio, uring.
    /// Open-loop runs (--rate, or conns) always use tokio tasks.
    #[arg(long, default_value = "mio")]
    client: BackendKind,
    /// Connections [default: the workload's; 2 for fastrpc].
    #[arg(long)]
    connections: Option<usize>,
    /// Calls in flight per connection (closed loop) or callers per connection (open loop).
    #[arg(long)]
    depth: Option<usize>,
    /// Value size in bytes (pingpong and sizes).
    #[arg(long)]
    value_size: Option<usize>,
    /// Open loop: calls per second over all connections, each call's latency
    /// counted from its intended send time.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to measure (after a quarter of it to warm up).
    #[arg(long, default_value = "3s", value_parser = duration)]
    duration: Duration,
    /// Compression the client asks for: none, flate, snappy.
    #[arg(long, default_value = "none")]
    compress: Compression,
    /// Sniff header (must match the server's).
    #[arg(long, default_value = "")]
    sniff: String,
    /// Protocol version byte (must match the server's).
    #[arg(long, default_value_t = 0)]
    version: u8,
    /// Also count allocations of this process, in a second run.
    #[arg(long)]
    count_allocations: bool,
    /// Each call's deadline: a call not answered within it fails the run.
    #[arg(long, default_value = "30s", value_parser = duration)]
    call_timeout: Duration,
    /// Do not check the replies against the demo service's answers (which
    /// `fastwire serve` gives): for loading another fastrpc service.
    #[arg(long)]
    no_check: bool,
    /// A balanced load while servers are killed on purpose: a failed call
    /// is counted against its server (the table's `errors`) instead of
    /// ending the run; a wrong reply still ends it.
    #[arg(long)]
    failover: bool,
    /// Ask the server for TLS (Mozilla's root authorities are trusted unless --tls-ca is given).
    #[arg(long)]
    tls: bool,
    /// Trust the authorities in this PEM file instead of Mozilla's roots.
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry [default: the host part of --addr].
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_server_name: Option<String>,
    /// Present this PEM certificate chain to servers that require client certificates; needs --tls-client-key.
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    tls_client_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    outputs: Outputs,
}

fn main() {
    let cli = Cli::parse();
    // The guide's test checks that every command it shows parses, without
    // running it (tests/suite/docs.rs).
    if std::env::var_os("FASTWIRE_PARSE_ONLY").is_some() {
        return;
    }
    // Every connection is a descriptor on each end, and many systems start
    // processes with a soft limit of 1,024: lift it to the hard limit, as
    // Go's runtime does (said in the log below).
    let raised = fastwire::raise_open_files_limit();
    // `serve` logs what it does; `compare` and `load` print a table, and the
    // servers they start would only clutter it.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour(&std::io::stderr()))
        .init();
    match raised {
        Ok((before, after)) if after.soft > before.soft => {
            tracing::info!("raised the open-file limit from {} to {} (the hard limit)", before.soft, after.soft)
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not read or raise the open-file limit: {e}"),
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Compare(args) => compare(args),
        Command::Load(args) => load(args),
        Command::TlsCerts(args) => tls_certs(args),
        Command::Figures(args) => figures(args),
    };
    if let Err(e) = result {
        eprintln!("fastwire: {e}");
        std::process::exit(1);
    }
}

/// Whether the log may colour its lines: only on a terminal, and not when
/// `NO_COLOR` is set to anything (no-color.org); a file or a pipe gets
/// plain text.
fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn figures(args: FiguresArgs) -> Result<(), Box<dyn std::error::Error>> {
    use harness::figures;
    let published = figures::load(&args.results)?;
    if published.sets.is_empty() {
        return Err(format!("no <set>/compare.json under {}", args.results.display()).into());
    }
    let all = figures::figures(&published);
    let path = args.results.join(figures::FIGURES_FILE);
    std::fs::write(&path, figures::render(&all)).map_err(|e| format!("{}: {e}", path.display()))?;
    let readme = std::fs::read_to_string(&args.readme).map_err(|e| format!("{}: {e}", args.readme.display()))?;
    let updated = figures::readme_with_table(&readme, &figures::readme_table(&published))?;
    std::fs::write(&args.readme, updated).map_err(|e| format!("{}: {e}", args.readme.display()))?;
    println!("fastwire: wrote {} figures to {} and the table of {}", all.len(), path.display(), args.readme.display());
    Ok(())
}

fn tls_certs(args: TlsCertsArgs) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    let files = fastwire_bench::tls::TestPki::generate().write_to(&args.dir)?;
    println!(
        "fastwire: wrote a test authority ({}), a server certificate for {} and 127.0.0.1 ({}, {}) \
         and a client certificate ({}, {})",
        files.ca_cert.display(),
        fastwire_bench::tls::SERVER_NAME,
        files.server_cert.display(),
        files.server_key.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    Ok(())
}

fn by_hand_model(name: &str) -> Result<fastwire_by_hand::Model, String> {
    fastwire_by_hand::Model::from_name(name)
        .ok_or_else(|| format!("no server by hand called {name:?}: threads, mio, tokio or uring"))
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(model) = args.by_hand {
        if let Some(why) = model.unavailable() {
            return Err(format!("the {} server by hand cannot run: {why}", model.name()).into());
        }
        let listener = std::net::TcpListener::bind(args.addr)?;
        println!("fastwire: serving on {} (by hand: {})", listener.local_addr()?, model.name());
        return Ok(model.serve(listener)?);
    }
    let config = ServerConfig {
        protocol: ProtocolConfig {
            sniff_header: args.sniff.into_bytes(),
            protocol_version: args.version,
            compression: args.compress,
            limits: Limits { max_name_len: args.max_message, max_value_len: args.max_message },
            ..ProtocolConfig::default()
        },
        handshake_timeout: args.handshake_timeout,
        idle_timeout: args.idle_timeout.0,
        max_connections: args.max_connections,
        max_in_flight: args.max_in_flight,
        max_output_buffer: args.max_output,
        batch_delay: args.batch_delay.0,
        concurrency: args.concurrency,
        over_limit: match args.over_limit {
            OverLimitArg::Backpressure => OverLimit::Backpressure,
            OverLimitArg::Reject => OverLimit::Reject(OVER_LIMIT_VALUE.to_vec()),
        },
        blocking_threads: args.blocking_threads,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                Some(fastwire::proto::tls::TlsServer::from_pem_files(cert, key, args.tls_client_ca.as_deref())?)
            }
            _ => None,
        },
        tls_optional: args.tls_optional,
        ..ServerConfig::default()
    };
    // Signal handlers first: once the address is printed, a client (or a
    // test) may send SIGINT at once, and it must not find the default action.
    let signals = Signals::install()?;
    let demo = Demo { delay: args.handler_delay, work: args.handler_work };
    let server = start_demo(args.backend, args.addr, config, demo)?;
    // The first line of stdout names the address (port 0 picks one), for scripts and tests.
    println!("fastwire: serving on {} (backend {})", server.local_addr(), args.backend);
    signals.wait();
    tracing::info!("shutting down (grace {:?})", args.grace);
    let report = server.shutdown(args.grace);
    println!("fastwire: {report}");
    Ok(())
}

/// A load's one row (a single window, its environment with `threads`),
/// printed and written where `outputs` says.
fn report_load(
    name: &str,
    spec: &Spec,
    timed: &harness::Sample,
    counted: Option<&harness::Sample>,
    threads: String,
    outputs: &Outputs,
) -> Result<(), Box<dyn std::error::Error>> {
    let env = harness::env::Machine::detect().env(threads, false);
    let round = harness::row::Round::new(0, timed);
    let mut row = Row::from_rounds(name, spec, vec![round], &[timed], counted, env);
    row.summarize();
    let rows = vec![row];
    print!("{}", report::table(&rows));
    write_outputs(&rows, outputs)
}

/// A load is a success only if it was one: calls completed in its window
/// (a failed call ends the run before this), and the servers answered
/// only what was asked. `silent` says what no call completing means.
fn check_load(
    timed: &harness::Sample,
    counted: Option<&harness::Sample>,
    window: Duration,
    silent: &str,
) -> Result<(), String> {
    let unsolicited = timed.unsolicited + counted.map_or(0, |c| c.unsolicited);
    if unsolicited > 0 {
        return Err(format!(
            "the server sent {unsolicited} responses for no call in progress (ids never requested, \
             answers given twice, or answers after their call gave up): it is not a correct fastrpc server"
        ));
    }
    if timed.ops == 0 {
        return Err(format!("no call completed in the {window:?} window: {silent}"));
    }
    Ok(())
}

/// `load` over many servers through the balanced client of `--client`'s
/// blocking backend.
fn load_balanced(args: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    use fastwire_bench::backend::Servers;
    if args.tls || args.rate.is_some() || args.count_allocations {
        return Err("a balanced load (several addresses, or --balance) runs a closed loop in plaintext: \
                    leave out --tls, --rate and --count-allocations"
            .into());
    }
    let d = args.workload.defaults();
    let spec = Spec {
        // One thread per call in flight: a few of them, unless told.
        connections: args.connections.unwrap_or(1),
        depth: args.depth.unwrap_or(8),
        value_size: args.value_size.unwrap_or(d.value_size),
        compress: args.compress,
        sniff: args.sniff.into_bytes(),
        version: args.version,
        check_replies: !args.no_check,
        call_timeout: args.call_timeout,
        rate: None,
        ..d
    };
    let timing = Timing::new(args.duration);
    eprintln!(
        "fastwire: loading {} through the balanced {} client with {} ({} callers) for {:?}",
        args.addr,
        args.client,
        spec.workload,
        spec.connections * spec.depth,
        args.duration
    );
    let addrs: Vec<std::net::SocketAddr>;
    let servers = if args.balance && !args.addr.contains(',') {
        Servers::Name(&args.addr)
    } else {
        addrs = args
            .addr
            .split(',')
            .map(|a| fastwire_common::net::resolve(a.trim()).map_err(|e| format!("resolving {a}: {e}")))
            .collect::<Result<_, _>>()?;
        Servers::Addrs(&addrs)
    };
    let (timed, per) =
        fastwire_bench::backend::balanced_load(args.client, servers, &spec, &timing, args.failover, None)?;
    let name = format!("{} balanced", args.client.client_kind());
    let threads =
        format!("servers: external, at {}; load: {name} client, closed loop, a thread per call in flight", args.addr);
    report_load(&name, &spec, &timed, None, threads, &args.outputs)?;
    print!("\n{}", harness::balanced::table(&per));
    let failed: u64 = per.iter().map(|p| p.failed_in_window).sum();
    if failed > 0 {
        eprintln!("fastwire: {failed} calls failed in the window (--failover counts them per server)");
    }
    Ok(check_load(&timed, None, args.duration, &format!("no server at {} answered", args.addr))?)
}

/// The configurations `compare` runs: each workload's defaults, varied
/// along the axes given on the command line.
fn specs(args: &CompareArgs) -> Vec<Spec> {
    // The sweep takes a while (10,000 connections per backend) and the
    // spread starts, kills and restarts server processes: asked for by name only.
    let workloads = if args.workload.is_empty() {
        Workload::ALL.into_iter().filter(|w| !matches!(w, Workload::Sweep | Workload::Spread)).collect()
    } else {
        args.workload.clone()
    };
    let or = |given: &[usize], default: usize| if given.is_empty() { vec![default] } else { given.to_vec() };
    let mut specs = Vec::new();
    let tls_modes: &[bool] = match args.tls {
        TlsMode::Off => &[false],
        TlsMode::On => &[true],
        TlsMode::Both => &[false, true],
    };
    // Every workload in each compression, plaintext and/or over TLS.
    let axes = args
        .compress
        .iter()
        .flat_map(|c| workloads.iter().flat_map(move |w| tls_modes.iter().map(move |t| (*c, *w, *t))));
    for (compress, workload, tls) in axes {
        let tls = tls.then(fastwire_bench::tls::SpecTls::for_run);
        let d = Spec { compress, tls: tls.clone(), ..workload.defaults() };
        let (connections, depths, sizes) = match workload {
            Workload::Fastrpc
            | Workload::Wait
            | Workload::Cpu
            | Workload::Mixed
            | Workload::MixedBase
            | Workload::Spread => (or(&args.connections, d.connections), or(&args.depth, d.depth), vec![d.value_size]),
            Workload::Pingpong => (vec![1], vec![1], or(&args.value_size, d.value_size)),
            Workload::Sizes => (
                vec![d.connections],
                or(&args.depth, d.depth),
                if args.value_size.is_empty() { Workload::SIZES.to_vec() } else { args.value_size.clone() },
            ),
            Workload::Nowait | Workload::Conns | Workload::Handshakes => {
                (or(&args.connections, d.connections), vec![d.depth], vec![d.value_size])
            }
            Workload::Sweep => (
                if args.connections.is_empty() { harness::sweep::POINTS.to_vec() } else { args.connections.clone() },
                vec![1],
                vec![d.value_size],
            ),
        };
        // The blaster and the floor server speak fastrpc and pingpong,
        // in plaintext.
        let roles: Vec<Role> = match workload {
            Workload::Sweep => vec![Role::Server],
            // Its servers are `fastwire serve` processes, in plaintext.
            Workload::Spread if tls.is_some() => Vec::new(),
            _ if tls.is_some() => {
                if args.role.is_empty() || args.role.contains(&Role::Both) {
                    vec![Role::Both]
                } else {
                    Vec::new()
                }
            }
            // The blaster and the floor server speak uncompressed streams:
            // a compressed run measures both sides together unless asked.
            Workload::Fastrpc | Workload::Pingpong if args.role.is_empty() && compress == Compression::None => {
                Role::ALL.to_vec()
            }
            Workload::Fastrpc | Workload::Pingpong if args.role.is_empty() => vec![Role::Both],
            Workload::Fastrpc | Workload::Pingpong => args.role.clone(),
            _ if args.role.is_empty() || args.role.contains(&Role::Both) => vec![Role::Both],
            _ => Vec::new(),
        };
        for &role in &roles {
            for &connections in &connections {
                for &depth in &depths {
                    for &value_size in &sizes {
                        let rate = if workload == Workload::Conns { args.rate.or(d.rate) } else { None };
                        let spec = Spec { connections, depth, value_size, rate, role, ..d.clone() };
                        if workload == Workload::Spread {
                            specs.extend(Phase::ALL.map(|phase| Spec { phase: Some(phase), ..spec.clone() }));
                        } else {
                            specs.push(spec);
                        }
                    }
                }
            }
        }
    }
    specs
}

fn compare(args: CompareArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.peers && !cfg!(feature = "peers") {
        return Err("this build has no peers (tarpc, tonic, the codec echo): \
                    cargo run --release --features peers -- compare --peers"
            .into());
    }
    let plan = harness::Plan {
        backends: if args.backends.is_empty() { BackendKind::ALL.to_vec() } else { args.backends.clone() },
        specs: specs(&args),
        timing: Timing::new(args.duration),
        rounds: usize::from(args.rounds),
        floors: !args.no_floor,
        processes: args.processes || args.by_hand,
        peers: args.peers,
        by_hand: args.by_hand,
        server_exe: std::env::current_exe().ok(),
    };
    if cfg!(debug_assertions) {
        eprintln!("fastwire: this is a debug build; its figures mean nothing (use cargo run --release)");
    }
    let bar = indicatif::ProgressBar::new(plan.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let describe = |spec: &Spec| {
        format!(
            "{} {} ({} conns x {}, {})",
            spec.workload,
            spec.role,
            spec.connections,
            spec.depth,
            report::size(spec.value_size)
        )
    };
    use harness::plan::Event;
    let rounds = plan.rounds;
    let mut failed = 0;
    let rows = harness::compare(&plan, &mut |event| match event {
        Event::Start { backend, spec, round } => bar.set_message(match round {
            Some(r) => format!("round {}/{rounds}: {backend}: {}", r + 1, describe(spec)),
            None => format!("allocations: {backend}: {}", describe(spec)),
        }),
        Event::Measured => bar.inc(1),
        Event::Done(row) => {
            for (i, round) in row.rounds.iter().enumerate().filter(|(_, r)| r.stalled()) {
                bar.suspend(|| {
                    eprintln!(
                        "fastwire: {} {} {}: round {} completed no call in its {:.0?} window; \
                         counted at the window's length, a lower bound",
                        row.backend,
                        row.role,
                        row.workload,
                        i + 1,
                        Duration::from_secs_f64(round.seconds)
                    )
                });
            }
        }
        Event::Failed { backend, spec, reason, runs } => {
            // `suspend` prints whether or not the bar is drawn (it is hidden
            // when stderr is not a terminal, and `println` then prints nothing).
            failed += 1;
            bar.inc(1);
            bar.set_length(bar.length().unwrap_or(0).saturating_sub(runs as u64));
            bar.suspend(|| eprintln!("fastwire: {backend}: {} failed: {reason}", describe(spec)));
        }
        // The plan's length left its runs out already.
        Event::Skipped { backend, spec: Some(spec), reason } => {
            bar.suspend(|| eprintln!("fastwire: skipped {backend}: {}: {reason}", describe(spec)))
        }
        Event::Skipped { backend, spec: None, reason } => {
            bar.suspend(|| eprintln!("fastwire: skipped {backend}: {reason}"))
        }
    });
    bar.finish_and_clear();
    print!("{}", report::table(&rows));
    print!("\n{}", report::verdicts(&rows));
    if let Some(first) = rows.first() {
        let e = &first.env;
        let where_ = if rows.iter().any(|r| !r.env.same_process) {
            "the rows with a server CPU time ran their server in a process of its own, the rest in this one"
        } else {
            "server and load in one process"
        };
        println!(
            "\n{} CPUs ({}), kernel {}, {} ({}), commit {}, {}; {where_}",
            e.cpus, e.cpu_model, e.kernel, e.rustc, e.build, e.commit, e.date
        );
    }
    write_outputs(&rows, &args.outputs)?;
    if let Some(dir) = &args.svg {
        let files = harness::chart::draw(&rows, dir)?;
        eprintln!("fastwire: {} charts in {}", files.len(), dir.display());
    }
    if failed > 0 {
        let s = if failed == 1 { "" } else { "s" };
        return Err(format!("{failed} measurement{s} failed (said above); their rows are missing").into());
    }
    Ok(())
}

fn write_outputs(rows: &[Row], outputs: &Outputs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = &outputs.json {
        std::fs::write(path, report::json(rows) + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &outputs.markdown {
        let text = format!("{}\n{}", report::markdown(rows), report::markdown_env(rows));
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn load(args: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.workload == Workload::Spread {
        return Err("spread starts, slows and kills servers of its own: run it with `fastwire compare --workload \
                    spread`; to load servers that are already running, give them all to --addr a,b,c"
            .into());
    }
    if args.balance || args.addr.contains(',') {
        return load_balanced(args);
    }
    let addr = fastwire_common::net::resolve(&args.addr).map_err(|e| format!("resolving {}: {e}", args.addr))?;
    let d = args.workload.defaults();
    let rate = args.rate.or(if args.workload == Workload::Conns { d.rate } else { None });
    let tls = if args.tls {
        // By default the name verified is the one the address was given by.
        let host = args.addr.rsplit_once(':').map_or(args.addr.as_str(), |(host, _)| host);
        let name = args.tls_server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
        let identity = args.tls_client_cert.as_deref().zip(args.tls_client_key.as_deref());
        let client = fastwire::proto::tls::TlsClient::from_pem_files(args.tls_ca.as_deref(), &name, identity)?;
        Some(fastwire_bench::tls::SpecTls { server: None, client })
    } else {
        None
    };
    let spec = Spec {
        tls,
        connections: args.connections.unwrap_or(d.connections),
        depth: args.depth.unwrap_or(d.depth),
        value_size: args.value_size.unwrap_or(d.value_size),
        compress: args.compress,
        rate,
        sniff: args.sniff.into_bytes(),
        version: args.version,
        check_replies: !args.no_check,
        call_timeout: args.call_timeout,
        ..d
    };
    if let Some(why) = args.client.unavailable() {
        return Err(format!("the {} client cannot run here: {why}", args.client).into());
    }
    let timing = Timing::new(args.duration);
    let run = |mode| match spec.rate {
        _ if spec.workload == Workload::Handshakes => drive::handshakes(addr, &spec, &timing, mode),
        Some(_) => drive::open_loop(addr, &spec, &timing, mode),
        None => fastwire_bench::backend::closed_loop(args.client, addr, &spec, &timing, mode, None),
    };
    eprintln!(
        "fastwire: loading {addr} with {} ({} conns x {}{}) for {:?}",
        spec.workload,
        spec.connections,
        spec.depth,
        spec.rate.map_or(String::new(), |r| format!(", open loop at {r} calls/s")),
        args.duration
    );
    let timed = run(harness::sample::Mode::Timed)?;
    let counted = if args.count_allocations { Some(run(harness::sample::Mode::Counted)?) } else { None };
    let (client, shape) = match spec.rate {
        Some(_) => ("tokio", "open loop, a pacing thread and tokio caller tasks on a one-worker runtime"),
        None => (args.client.client_kind().name(), "closed loop"),
    };
    let threads = format!("server: external, at {addr}; load: {client} client, {shape}");
    report_load(&format!("{client} client"), &spec, &timed, counted.as_ref(), threads, &args.outputs)?;
    let silent = format!("the server at {addr} accepted the connections but answered nothing");
    Ok(check_load(&timed, counted.as_ref(), args.duration, &silent)?)
}

/// SIGINT (Ctrl-C) and SIGTERM handlers, registered when installed.
struct Signals {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        #[cfg(unix)]
        let (interrupt, terminate) = {
            let _entered = runtime.enter();
            use tokio::signal::unix::{signal, SignalKind};
            (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
        };
        Ok(Signals {
            runtime,
            #[cfg(unix)]
            interrupt,
            #[cfg(unix)]
            terminate,
        })
    }

    /// Blocks until one of the signals arrives.
    fn wait(mut self) {
        self.runtime.block_on(async {
            #[cfg(unix)]
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
