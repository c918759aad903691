//! The RPC stacks a Rust user would pick instead of fastwire, served and
//! called the way their own documentation shows, so that `fastwire compare
//! --peers` can race them beside the backends on the same calls.
//!
//! Every peer serves the demo service's two calls ([`answer`]: an empty
//! name gets fastrpc's 261-byte benchmark body, any other name `re:` and the
//! value), so the harness checks their replies exactly as it checks
//! fastwire's. None of them speaks fastwire's wire protocol: a peer's client
//! only calls its own server, so peers race as client and server together.
//!
//! * [`with_tarpc`]: tarpc's generated client and server over its serde
//!   transport (bincode in tokio-util's length-delimited frames), each
//!   request answered in a task of its own, as tarpc's examples do.
//! * [`with_tonic`]: tonic's generated gRPC client and server (HTTP/2,
//!   prost messages), generated without `protoc` (see `build.rs`).
//! * [`with_codec`]: the echo people write by hand on tokio: a
//!   `LengthDelimitedCodec`, a request id in each frame, a map of pending
//!   calls to oneshot channels, a writer task fed by a channel.
//!
//! Both servers run on a multi-thread tokio runtime of their own (a worker
//! per core, tokio's default); both clients are `Clone` and `Send`, and
//! callers await them from as many tasks as they like.
//!
//! This crate is part of the tool, never of the library: only the
//! `fastwire-bench` package's `peers` feature depends on it, and turns on
//! its `stacks` feature, without which the crate is empty: so neither a
//! default build nor `cargo test --workspace` compiles tarpc or tonic.

// The stacks (and the items the docs above link to) exist only with the
// `stacks` feature; without it the crate is empty and the links dangle.
#![cfg_attr(not(feature = "stacks"), allow(rustdoc::broken_intra_doc_links))]
#![cfg(feature = "stacks")]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub mod with_codec;
pub mod with_tarpc;
pub mod with_tonic;

/// One of the stacks in the race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// tarpc: see [`with_tarpc`].
    Tarpc,
    /// tonic (gRPC): see [`with_tonic`].
    Tonic,
    /// A hand-written tokio-util codec echo: see [`with_codec`].
    Codec,
}

impl Peer {
    /// Every peer, in report order.
    pub const ALL: [Peer; 3] = [Peer::Tarpc, Peer::Tonic, Peer::Codec];

    /// The peer's name in reports: `peer-` and the stack.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Tarpc => "peer-tarpc",
            Peer::Tonic => "peer-tonic",
            Peer::Codec => "peer-codec",
        }
    }

    /// How the peer is built, served and loaded, for the report's
    /// environment.
    pub fn layout(self) -> &'static str {
        match self {
            Peer::Tarpc => {
                "tarpc 0.38 (bincode over tokio-util length-delimited frames, TCP_NODELAY); server: a \
                 multi-thread tokio runtime, a task per connection and a task per request"
            }
            Peer::Tonic => {
                "tonic 0.14 (gRPC over HTTP/2, prost messages, TCP_NODELAY); server: a multi-thread tokio runtime, \
                 tonic's Server::builder() (hyper: a task per connection and per request stream)"
            }
            Peer::Codec => {
                "tokio-util LengthDelimitedCodec echo by hand (a request id per frame, pending calls in a \
                 mutex-guarded map of oneshot channels, a writer task fed by a channel, TCP_NODELAY); server: \
                 a multi-thread tokio runtime, a task per connection answering each read batch in one flush"
            }
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Peer, String> {
        Peer::ALL.into_iter().find(|p| p.name() == s || p.name().strip_prefix("peer-") == Some(s)).ok_or_else(|| {
            let names: Vec<_> = Peer::ALL.iter().map(|p| p.name()).collect();
            format!("unknown peer {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// The demo service's answer to a call of `name` with `value` (the answer
/// of `fastwire_proto::demo_handler`).
pub fn answer(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        fastwire_proto::FASTRPC_BENCH_BODY.to_vec()
    } else {
        [&b"re:"[..], value].concat()
    }
}

/// A peer's server, serving the demo service on a runtime of its own until
/// [`shutdown`](Server::shutdown) or drop.
pub struct Server {
    addr: SocketAddr,
    /// Dropping it ends the accept loop and the runtime with it.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Binds `addr` and serves `peer`'s demo service on a multi-thread tokio
    /// runtime (a worker per core).
    pub fn start(peer: Peer, addr: SocketAddr) -> io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        match peer {
            Peer::Tarpc => runtime.spawn(with_tarpc::serve(listener)),
            Peer::Tonic => runtime.spawn(with_tonic::serve(listener)),
            Peer::Codec => runtime.spawn(with_codec::serve(listener)),
        };
        Ok(Server { addr, runtime: Some(runtime) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops every connection and task, waiting at most
    /// `grace` for the runtime's threads.
    pub fn shutdown(mut self, grace: Duration) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(grace);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// A connection to a peer's server: cheap to clone, every clone calls over
/// the same connection. Made and used inside a tokio runtime (its
/// background tasks are spawned on the current one).
#[derive(Clone, Debug)]
pub enum Client {
    /// See [`with_tarpc::Client`].
    Tarpc(with_tarpc::Client),
    /// See [`with_tonic::Client`].
    Tonic(with_tonic::Client),
    /// See [`with_codec::Client`].
    Codec(with_codec::Client),
}

impl Client {
    /// Connects to `peer`'s server at `addr`, for up to `in_flight` calls
    /// at once; `timeout` is each call's deadline where the stack has one
    /// (tarpc's context deadline, gRPC's; the codec echo has none, its calls
    /// fail only when the connection does).
    pub async fn connect(peer: Peer, addr: SocketAddr, in_flight: usize, timeout: Duration) -> io::Result<Client> {
        Ok(match peer {
            Peer::Tarpc => Client::Tarpc(with_tarpc::Client::connect(addr, in_flight, timeout).await?),
            Peer::Tonic => Client::Tonic(with_tonic::Client::connect(addr, timeout).await?),
            Peer::Codec => Client::Codec(with_codec::Client::connect(addr).await?),
        })
    }

    /// Calls `name` with `value` and returns the reply.
    pub async fn call(&self, name: &[u8], value: &[u8]) -> io::Result<Bytes> {
        match self {
            Client::Tarpc(client) => client.call(name, value).await,
            Client::Tonic(client) => client.call(name, value).await,
            Client::Codec(client) => client.call(name, value).await,
        }
    }

    /// Ends the connection: calls in flight fail, the background tasks stop
    /// (tonic's connection closes when its last clone is dropped).
    pub fn close(&self) {
        match self {
            Client::Tarpc(client) => client.close(),
            Client::Tonic(_) => {}
            Client::Codec(client) => client.close(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Every peer answers both demo calls over loopback, many at once on one
    /// connection, each caller getting its own reply.
    #[test]
    fn every_peer_answers_the_demo_calls_concurrently() {
        for peer in Peer::ALL {
            let server = Server::start(peer, "127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = server.local_addr();
            runtime().block_on(async {
                let client = Client::connect(peer, addr, 64, Duration::from_secs(10)).await.unwrap();
                let reply = client.call(b"", b"foobar").await.unwrap();
                assert_eq!(&reply[..], fastwire_proto::FASTRPC_BENCH_BODY, "{peer}");
                let callers: Vec<_> = (0..50u32)
                    .map(|i| {
                        let client = client.clone();
                        tokio::spawn(async move {
                            let value = i.to_string().into_bytes();
                            (client.call(b"echo", &value).await.unwrap(), value)
                        })
                    })
                    .collect();
                for caller in callers {
                    let (reply, value) = caller.await.unwrap();
                    assert_eq!(reply, [&b"re:"[..], &value].concat(), "{peer}");
                }
                client.close();
            });
            server.shutdown(Duration::from_secs(1));
        }
    }

    /// A call to a server that has gone fails instead of hanging.
    #[test]
    fn a_call_to_a_stopped_server_fails() {
        for peer in Peer::ALL {
            let server = Server::start(peer, "127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = server.local_addr();
            let runtime = runtime();
            let client = runtime.block_on(async {
                let client = Client::connect(peer, addr, 4, Duration::from_secs(5)).await.unwrap();
                client.call(b"echo", b"x").await.unwrap();
                client
            });
            server.shutdown(Duration::from_secs(1));
            runtime.block_on(async {
                let call = tokio::time::timeout(Duration::from_secs(20), client.call(b"echo", b"x"));
                assert!(call.await.expect("the call hung").is_err(), "{peer}");
            });
        }
    }

    #[test]
    fn peers_are_named_as_reports_name_them() {
        for peer in Peer::ALL {
            assert_eq!(peer.name().parse::<Peer>().unwrap(), peer);
            assert_eq!(peer.name().trim_start_matches("peer-").parse::<Peer>().unwrap(), peer);
        }
        let error = "grpc".parse::<Peer>().unwrap_err();
        assert!(error.contains("peer-tarpc, peer-tonic, peer-codec"), "{error}");
    }
}
