//! The conformance suite's own helpers; the rest is the kit's
//! (`crate::kit`), re-exported here so each scenario imports from one place.

use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use fastwire::proto::{ClientConfig, Handler, ServerConfig};
use fastwire_bench::backend::{BlockingClient, RunningServer};
use fastwire_bench::BackendKind;

pub use crate::kit::backends::*;
pub use crate::kit::frame;
pub use crate::kit::net::*;

/// Starts a server under test with a configuration and a handler: a
/// backend's ([`starter`]), or the tokio server serving a `tower::Service`.
pub type Starter<'a> = &'a dyn Fn(ServerConfig, Arc<dyn Handler>) -> Box<dyn RunningServer>;

/// `kind`'s server as a [`Starter`].
pub fn starter(kind: BackendKind) -> impl Fn(ServerConfig, Arc<dyn Handler>) -> Box<dyn RunningServer> {
    move |config, handler| start(kind, config, handler)
}

/// Makes a client of a server at an address.
pub type MakeClient = Box<dyn Fn(SocketAddr, ClientConfig) -> Box<dyn BlockingClient>>;

/// Every client a server must serve: each backend's, and the tokio client
/// called through `tower::Service`, each with its name.
pub fn every_client() -> Vec<(String, MakeClient)> {
    let mut all: Vec<(String, MakeClient)> = BackendKind::clients()
        .map(|kind| (kind.to_string(), Box::new(move |addr, config| client(kind, addr, config)) as MakeClient))
        .collect();
    all.push((
        "tower".into(),
        Box::new(|addr, config| Box::new(super::tower::TowerClient::new(addr, config)) as Box<dyn BlockingClient>),
    ));
    all
}

/// A client that never reads: it sends fastrpc calls until `server` stops
/// reading. Each 18-byte request makes a 269-byte response that is never
/// read; a server that buffered without bound would keep reading forever,
/// one that stops reading makes the writes block once the socket buffers
/// fill. Then the server still serves others, and shuts down.
#[track_caller]
pub fn assert_stops_reading_for_a_client_that_never_reads(kind: BackendKind, server: Box<dyn RunningServer>) {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&frame::PLAIN).unwrap();
    let batch: Vec<u8> = (0..1000).flat_map(|i| frame::request(i + 1, b"", b"foobar")).collect();
    write_until_blocked(&mut s, &batch, kind);
    // Requests accepted before the server stopped reading: bounded by its
    // output limit plus the kernel's socket buffers, far below the total.
    let served = server.stats().requests;
    assert!(served < 2_000_000, "{kind}: served {served}");
    assert_still_serves(kind, &*server);
    drop(s);
    server.shutdown(Duration::from_secs(5));
}
