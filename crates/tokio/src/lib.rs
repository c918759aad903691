//! # fastwire-tokio: a task per connection
//!
//! Each connection is one async task that reads, lets `fastwire-proto`'s
//! state machine serve what arrived, and writes the responses. Tasks are
//! cheap (a few hundred bytes, no stack of their own), so ten thousand
//! connections are ten thousand tasks, not twenty thousand threads.
//!
//! Two runtime layouts, so that the runtime and the architecture can be
//! compared apart ([`Flavor`]):
//!
//! * **multi-thread** (the default): tokio's work-stealing scheduler; one
//!   listener; any worker may run any connection's task.
//! * **per-core**: one current-thread runtime per core, each with its own
//!   `SO_REUSEPORT` listener; the kernel spreads connections over the
//!   listeners and a connection never leaves its thread. No work stealing,
//!   no cross-thread wake-ups: the thread-per-core design of glommio, on tokio.
//!
//! Handlers that wait are `async` ([`Server::serve_async`]): each
//! connection keeps its requests' futures in a set that its task polls
//! beside the socket, answering each as it completes. Deferred answers from
//! other threads wake the task through a `Notify`.
//!
//! ## Layout (the same in every fastwire backend)
//!
//! * [`server`]: [`Server`] (`bind`, `bind_with` and its [`Options`],
//!   `from_listener`, `from_listener_with`, then serve) and [`ServerHandle`] (stats,
//!   graceful shutdown); the accept loop and the connection limit.
//! * `connection`: one server connection's task.
//! * [`client`]: [`Client`], one reconnecting connection carrying many
//!   calls (`Clone + Send + Sync`, `async fn call`).
//! * [`pool`]: [`Pool`], up to N clients per address.
//! * [`timer`]: [`Timer`], sleeps with the operating system's precision for
//!   handlers that wait less than tokio's millisecond wheel can time.
//! * `tower` (the `tower` feature): the client as a `tower::Service`, and
//!   a server that serves any `tower::Service`.
//!
//! ```no_run
//! use fastwire_tokio::proto::{demo_handler, ClientConfig, ServerConfig};
//! use fastwire_tokio::{Client, Server};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The server runs on runtime threads of its own.
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(demo_handler)?;
//! let addr = server.local_addr();
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let client = Client::connect(addr, ClientConfig::default()).await?;
//!     let reply = client.call(b"echo", b"hello").await?;
//!     assert_eq!(&*reply, b"re:hello");
//!     Ok::<_, fastwire_tokio::ClientError>(())
//! })?;
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

pub mod client;
mod connection;
pub mod pool;
pub mod server;
pub mod timer;
#[cfg(feature = "tower")]
pub mod tower;

pub use client::{Client, PendingCall};
pub use fastwire_common::{ClientError, OwnedRequest, Reply, ServerStats, ShutdownReport};
pub use fastwire_proto as proto;
// The service's face at the root, the same on every backend.
pub use fastwire_proto::{
    ClientConfig, Compression, Handler, Limits, OverLimit, ProtocolConfig, Request, RespondError, Responder,
    ResponseWriter, ServerConfig,
};
pub use pool::Pool;
pub use server::{Accept, Flavor, Options, Server, ServerHandle, SpawnedServer};
pub use timer::Timer;
