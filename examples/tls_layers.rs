//! Where should TLS sit on tokio? fastwire puts rustls inside the protocol
//! state machine; the usual tokio stack puts `tokio-rustls` under the
//! protocol, as a `TlsStream` wrapping the socket, with a `Framed` codec on
//! top. This measures both, each in plaintext and over TLS, so that the
//! cost of TLS in each is taken apart from the cost of each loop:
//!
//! ```sh
//! cargo run --release --example tls_layers
//! ```
//!
//! * **fastwire**: the tokio backend's server (2 runtime workers), TLS
//!   inside `ServerConn` (`ServerConfig::tls`).
//! * **framed**: a hand-written tokio server, 2 runtime workers, a task per
//!   connection: the 3-byte handshake by hand, then (for TLS)
//!   `tokio_rustls::TlsAcceptor` over the socket, then
//!   `Framed<_, ServerCodec>` (the protocol crate's tokio-util codec),
//!   answering every request that is ready before one flush.
//!
//! The load is the same for all four: fastwire's mio client (plaintext or
//! TLS) through fastrpc's workload (2 connections x 1,000 in flight) and
//! pingpong, three alternating rounds, medians.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fastwire_bench::backend::closed_loop;
use fastwire_bench::backend::{start_server, BackendKind};
use fastwire_bench::harness::sample::Mode;
use fastwire_bench::harness::{Spec, Timing, Workload};
use fastwire_bench::tls::{SpecTls, TestPki};
use fastwire_proto::tokio_codec::ServerCodec;
use fastwire_proto::{demo_handler, handshake, Compression, FASTRPC_BENCH_BODY};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

// Counted, as in `fastwire compare` (the counts are not printed here).
#[global_allocator]
static ALLOCATOR: fastwire_bench::harness::alloc::Counting = fastwire_bench::harness::alloc::Counting;

/// The framed server: returns its address and the runtime that runs it.
fn framed_server(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    runtime.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            stream.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The fastrpc handshake, in the clear: version 0, no compression.
                let mut theirs = [0u8; 3];
                if stream.read_exact(&mut theirs).await.is_err() || theirs[..2] != [0, 1] {
                    return;
                }
                let mut ours = Vec::new();
                handshake::encode(&mut ours, b"", 0, Compression::None, acceptor.is_some());
                if stream.write_all(&ours).await.is_err() {
                    return;
                }
                match &acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve_framed(tls).await
                        }
                    }
                    None => serve_framed(stream).await,
                }
            });
        }
    });
    (addr, runtime)
}

/// Requests in, the demo handler's answers out; everything that is ready
/// is answered before one flush, as fastwire batches.
async fn serve_framed<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let mut framed = Framed::new(stream, ServerCodec::new(Spec::limits()));
    let mut echo = Vec::new(); // reused: no allocation per request
    while let Some(Ok(mut request)) = framed.next().await {
        loop {
            if request.id != 0 {
                let value: &[u8] = if request.name.is_empty() {
                    FASTRPC_BENCH_BODY
                } else {
                    echo.clear();
                    echo.extend_from_slice(b"re:");
                    echo.extend_from_slice(&request.value);
                    &echo
                };
                if framed.feed((request.id, value)).await.is_err() {
                    return;
                }
            }
            match framed.next().now_or_never() {
                Some(Some(Ok(next))) => request = next,
                Some(_) => return,
                None => break,
            }
        }
        if framed.flush().await.is_err() {
            return;
        }
    }
}

/// One of the two servers under test.
enum Server {
    Fastwire(Box<dyn fastwire_bench::backend::RunningServer>),
    Framed(tokio::runtime::Runtime),
}

fn main() {
    let pki = TestPki::shared();
    let tls = SpecTls::for_run();
    let timing = Timing::new(Duration::from_millis(600));
    let layouts = ["fastwire", "framed"];
    let mut results: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for layout in layouts {
        for with_tls in [false, true] {
            results.push((format!("{layout}, {}", if with_tls { "TLS" } else { "plain" }), Vec::new(), Vec::new()));
        }
    }
    for _round in 0..3 {
        let mut row = 0;
        for layout in layouts {
            for with_tls in [false, true] {
                let spec_tls = with_tls.then(|| tls.clone());
                let fastrpc = Spec { tls: spec_tls.clone(), ..Workload::Fastrpc.defaults() };
                let pingpong = Spec { tls: spec_tls.clone(), ..Workload::Pingpong.defaults() };
                let (addr, server) = match layout {
                    "fastwire" => {
                        let server = start_server(
                            BackendKind::Tokio,
                            "127.0.0.1:0".parse().unwrap(),
                            fastrpc.server_config(),
                            demo_handler,
                        )
                        .unwrap();
                        (server.local_addr(), Server::Fastwire(server))
                    }
                    _ => {
                        let config = with_tls.then(|| Arc::clone(pki.server().config()));
                        let (addr, runtime) = framed_server(config);
                        (addr, Server::Framed(runtime))
                    }
                };
                let fast = closed_loop(BackendKind::Mio, addr, &fastrpc, &timing, Mode::Timed, None).unwrap();
                let ping = closed_loop(BackendKind::Mio, addr, &pingpong, &timing, Mode::Timed, None).unwrap();
                results[row].1.push(fast.ns_per_op());
                results[row].2.push(ping.latency.as_ref().unwrap().value_at_quantile(0.5) as f64 / 1e3);
                match server {
                    Server::Fastwire(server) => drop(server.shutdown(Duration::from_secs(2))),
                    Server::Framed(runtime) => runtime.shutdown_timeout(Duration::from_secs(2)),
                }
                row += 1;
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{:<16} {:>16} {:>14}", "server", "fastrpc ns/op", "pingpong p50");
    for (name, fast, ping) in &results {
        println!("{name:<16} {:>16.1} {:>11.1} µs", median(fast), median(ping));
    }
    for (i, layout) in layouts.iter().enumerate() {
        let (plain, tls) = (&results[2 * i], &results[2 * i + 1]);
        println!(
            "{layout}: TLS costs {:.2}x on fastrpc, {:.2}x on pingpong p50",
            median(&tls.1) / median(&plain.1),
            median(&tls.2) / median(&plain.2)
        );
    }
    println!("(medians of 3 rounds; load: fastwire's mio client; both servers on 2 tokio workers)");
}
