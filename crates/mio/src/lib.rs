//! # fastwire-mio: a hand-written reactor
//!
//! The architecture under every event-driven server (nginx, Netty, tokio
//! itself), written out by hand so that nothing is hidden:
//!
//! * **One event loop per core**, each a thread with its own `epoll`
//!   instance (`mio::Poll`); a connection never leaves its loop, so loops
//!   share nothing but counters. By default ([`Accept::RoundRobin`]) one
//!   acceptor thread hands each new connection to the next loop through
//!   the loop's inbox and `Waker`, so that two busy connections never share
//!   a loop while another core idles. The alternative,
//!   [`Accept::ReusePort`], gives each loop its own `SO_REUSEPORT` listener
//!   and lets the kernel hash connections to loops: no extra thread and no
//!   hand-off, but with few connections several can land on one loop.
//!   Under a storm of short connections (`examples/accept_storm.rs`) the
//!   two accept at the same rate, since TCP set-up dominates.
//! * **Non-blocking sockets, edge-triggered readiness.** `epoll` reports a
//!   socket once when it *becomes* readable or writable. So on each event the
//!   loop reads until `WouldBlock` (or until its per-turn budget, then it
//!   comes back to the socket by itself: no event will remind it), and
//!   writes until `WouldBlock`; it retries on `Interrupted`; and it treats an
//!   event as a hint, not a promise: spurious wake-ups are normal.
//! * **Write first, ask later**: a connection writes as soon as it has
//!   output and hears about writability only after a write said
//!   `WouldBlock`. Its read and write interest are registered once:
//!   edge-triggered, a writable edge comes only when a full send buffer
//!   drains, so the standing interest costs nothing while writes succeed.
//! * **A slab of connections per loop**, indexed by the event's token.
//! * **The handler runs inline** on the loop: no hand-off, no lock. A slow
//!   handler delays every connection of its loop, which is the price. A
//!   handler that waits defers instead ([`proto::deferred`]): its answer
//!   comes back through the loop's `Waker` and a list of woken connections;
//!   a blocking one runs on a worker pool ([`Server::serve_blocking`]). A
//!   handler that panics closes its connection, never the loop.
//! * **One read buffer per loop**: a socket is read into the loop's buffer
//!   and only what arrived is copied to the connection, so an idle
//!   connection holds a few hundred bytes, not a 64 KiB buffer.
//!
//! The client is a reactor too: a thread per connection running a small
//! event loop, to which callers on any thread hand their calls through the
//! connection's queue and a `mio::Waker`; they wait for their response on
//! their own call slot (no thread per call).
//!
//! ## Layout (the same in every fastwire backend)
//!
//! * [`server`]: [`Server`] (`bind`, `bind_with` and its [`Options`],
//!   `from_listener`, `from_listener_with`, then serve) and [`ServerHandle`] (stats,
//!   graceful shutdown), and the event loop.
//! * `connection`: one server connection's state and how it reacts to readiness.
//! * [`client`]: [`Client`], one reconnecting connection carrying many calls,
//!   driven by a reactor thread.
//! * [`pool`]: [`Pool`], up to N clients per address.
//!
//! ```no_run
//! use fastwire_mio::proto::{demo_handler, ClientConfig, ServerConfig};
//! use fastwire_mio::{Client, Server};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(demo_handler)?;
//! let client = Client::connect(server.local_addr(), ClientConfig::default())?;
//! assert_eq!(&*client.call(b"echo", b"hello")?, b"re:hello");
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

pub mod client;
mod connection;
pub mod pool;
pub mod server;

pub use client::{Client, PendingCall};
pub use fastwire_common::{ClientError, Reply, ServerStats, ShutdownReport};
pub use fastwire_proto as proto;
// The service's face at the root, the same on every backend.
pub use fastwire_proto::{
    ClientConfig, Compression, Handler, Limits, OverLimit, ProtocolConfig, Request, RespondError, Responder,
    ResponseWriter, ServerConfig,
};
pub use pool::{Balanced, Pool};
pub use server::{Accept, Options, Server, ServerHandle};
