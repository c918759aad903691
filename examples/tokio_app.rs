//! A tokio application that serves fastwire on its own runtime: one
//! runtime for everything (no second runtime inside the server), Ctrl-C or
//! SIGTERM through `tokio::signal`, and a graceful shutdown that is awaited,
//! not a blocking call from async code.
//!
//! ```sh
//! cargo run --release --example tokio_app            # serves 127.0.0.1:7000 until Ctrl-C
//! cargo run --release --example tokio_app -- 127.0.0.1:0 --self-test
//! ```
//!
//! The service answers `hello` at once and `slow` after 50 ms on a tokio
//! timer (an `async` handler); `--self-test` calls it from a client task on
//! the same runtime, then shuts down as a signal would, while a slow call is
//! still in flight, to show that the call is answered before the close.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use fastwire::proto::{ClientConfig, ServerConfig};
use fastwire_common::OwnedRequest;
use fastwire_tokio::{Client, Server, ShutdownReport};

/// The handler: plain `async` code on the application's runtime.
async fn handle(request: OwnedRequest, responder: fastwire::Responder) {
    match request.name() {
        b"hello" => {
            let _ = responder.respond_with(|out| {
                out.extend_from_slice(b"hello, ");
                out.extend_from_slice(request.value());
            });
        }
        b"slow" => {
            SLOW_STARTED.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = responder.respond(request.value());
        }
        _ => {
            let _ = responder.respond(b"unknown method");
        }
    }
}

/// Serves on `addr` until `shutdown` completes, then shuts down gracefully
/// (5 s of grace). `ready` learns the bound address.
async fn serve(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<ShutdownReport> {
    // `spawn_async` puts the accept loop and the connections on this runtime.
    let server = Server::bind(addr, ServerConfig::default())?.spawn_async(handle)?;
    ready(server.local_addr());
    shutdown.await;
    Ok(server.shutdown(Duration::from_secs(5)).await)
}

/// Ctrl-C or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The self-test: a client task on this runtime calls the service, then
/// the server is told to stop (as a signal would) while a slow call is in
/// flight. Returns the answers and the shutdown report.
async fn self_test(addr: SocketAddr) -> Result<(Vec<u8>, Vec<u8>, ShutdownReport), Box<dyn std::error::Error>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        addr,
        async {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = ready_tx.send(addr);
        },
    ));
    let Ok(addr) = ready_rx.await else {
        return Err(server.await?.expect_err("the server ended before it was ready").into());
    };
    let client = Client::connect(addr, ClientConfig::default()).await?;
    let hello = client.call_timeout(b"hello", b"tokio", Duration::from_secs(5)).await?;
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.call_timeout(b"slow", b"finished", Duration::from_secs(5)).await }
    });
    SLOW_STARTED.notified().await;
    // "Ctrl-C": the server stops accepting and finishes the slow call first.
    let _ = stop_tx.send(());
    let report = server.await??;
    let slow = slow.await??;
    Ok((hello.to_vec(), slow.to_vec(), report))
}

/// Told when a slow call has started (for the self-test's timing only).
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:7000").parse()?;
    if args.any(|a| a == "--self-test") {
        let (hello, slow, report) = self_test(addr).await?;
        println!("hello -> {:?}", String::from_utf8_lossy(&hello));
        println!("slow (in flight at shutdown) -> {:?}", String::from_utf8_lossy(&slow));
        println!("shut down: {report}");
        return Ok(());
    }
    let report = serve(addr, signal(), |addr| println!("serving on {addr}; Ctrl-C to stop")).await?;
    println!("shut down: {report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn serves_on_the_applications_runtime_and_shuts_down_gracefully() {
        let (hello, slow, report) = self_test("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_eq!(hello, b"hello, tokio");
        assert_eq!(slow, b"finished", "the call in flight at shutdown is answered");
        assert_eq!((report.cut_off, report.deferred_cut, report.responses_lost), (0, 0, 0), "{report}");
    }
}
