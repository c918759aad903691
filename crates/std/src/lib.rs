//! # fastwire-std: a thread per connection
//!
//! The simplest architecture, and the baseline every other one is measured
//! against: blocking `std::net` sockets, and for each connection a *reader*
//! thread and a *writer* thread, so that requests pipeline (the reader keeps
//! decoding while the writer is blocked in `write`). The protocol itself is
//! `fastwire-proto`'s state machine; this crate only moves bytes.
//!
//! What it teaches: threads are easy to reason about and fast with few
//! connections, but each costs a stack and a scheduler entry, every handoff
//! between reader and writer is a lock and a wake-up, and ten thousand
//! connections are twenty thousand threads.
//!
//! Handlers run on the connection's reader thread; one that waits holds up
//! only its own connection, but all of it. To wait without that, a handler
//! defers ([`proto::deferred`]) and the writer thread is woken (unparked)
//! when the answer comes, or the server runs it on a worker pool
//! ([`Server::serve_blocking`]).
//!
//! ## Layout (the same in every fastwire backend)
//!
//! * [`server`]: [`Server`] (`bind`, `from_listener`, then serve: a
//!   thread per connection has nothing to lay out, so no `Options`) and [`ServerHandle`] (stats,
//!   graceful shutdown); the accept loop and the connection limit.
//! * `connection`: one server connection's reader and writer threads.
//! * [`client`]: [`Client`], one reconnecting connection carrying many calls.
//! * [`pool`]: [`Pool`], up to N clients per address.
//!
//! ```no_run
//! use fastwire_std::{Client, Server};
//! use fastwire_std::proto::{ClientConfig, ServerConfig};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?
//!     .serve(fastwire_std::proto::demo_handler)?;
//! let client = Client::new(server.local_addr(), ClientConfig::default());
//! let reply = client.call(b"echo", b"hello")?;
//! assert_eq!(&*reply, b"re:hello");
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
pub use server::{Server, ServerHandle};
