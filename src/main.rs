//! The `fastwire` command line.
//!
//! * `fastwire serve`: a fastrpc server on any backend, with the demo
//!   handler (an empty name gets fastrpc's 261-byte benchmark body, any other
//!   name `re:` followed by the value), so that Go fastrpc's benchmark client
//!   and the recorded vectors work against it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fastwire::backend::{self, BackendKind};
use fastwire::proto::{demo_handler, Compression, Limits, ProtocolConfig, ServerConfig};

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
    /// Backend: std, tokio, tokio-per-core, mio, mio-acceptor, glommio.
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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    if let Err(e) = result {
        eprintln!("fastwire: {e}");
        std::process::exit(1);
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
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
        ..ServerConfig::default()
    };
    // Signal handlers first: once the address is printed, a client (or a
    // test) may send SIGINT at once, and it must not find the default action.
    let signals = Signals::install()?;
    let server = backend::start_server(args.backend, args.addr, config, demo_handler)?;
    // The first line of stdout names the address (port 0 picks one), for scripts and tests.
    println!("fastwire: serving on {} (backend {})", server.local_addr(), args.backend);
    signals.wait();
    tracing::info!("shutting down (grace {:?})", args.grace);
    let report = server.shutdown(args.grace);
    println!("fastwire: {report}");
    Ok(())
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
