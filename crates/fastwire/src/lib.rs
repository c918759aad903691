//! # fastwire
//!
//! Go fastrpc's wire protocol in Rust, over several network architectures
//! that share one protocol crate. This facade re-exports the pieces behind
//! features, so that one dependency is enough, and depends on nothing else:
//!
//! * [`proto`]: the sans-I/O protocol crate every backend is built on
//!   (handshake, compression, codec, request ids, handler interface, deferred
//!   answers; with feature `tokio-util`, codecs for `Framed`; with feature
//!   `tls`, TLS as fastrpc negotiates it, with rustls, on every backend:
//!   `proto::tls`, `ServerConfig::tls`, `ClientConfig::tls`).
//! * [`fastwire_std`] (feature `std`): blocking sockets, a thread per connection.
//! * [`fastwire_tokio`] (feature `tokio`): a task per connection, on a
//!   runtime of the server's own (multi-thread or one per core) or on the
//!   application's.
//! * [`fastwire_mio`] (feature `mio`): a hand-written edge-triggered reactor,
//!   one event loop per core.
//! * `fastwire_glommio` (feature `glommio`, Linux only): io_uring, one
//!   pinned executor per core (Linux 5.8 or later).
//! * `fastwire_uring` (feature `uring`, Linux only): io_uring by hand, one
//!   completion loop per core with multishot accept and receive into a
//!   provided buffer ring (Linux 6.1 or later).
//!
//! All default features but `glommio` and `uring` build on every platform
//! with `std` networking; those two enable nothing off Linux. A service that needs one
//! backend can depend on its crate alone (`fastwire-tokio`, say): each pulls
//! in the protocol crate and its own runtime, nothing more.
//!
//! The benchmark harness, `fastwire compare` and `fastwire load` are not
//! part of the library: they live in the repository's `fastwire-bench`
//! package (`cargo run --release -- compare` from its root).
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use fastwire::fastwire_std::{Client, Server};
//! use fastwire::proto::{demo_handler, ClientConfig, ServerConfig};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(demo_handler)?;
//! let client = Client::connect(server.local_addr(), ClientConfig::default())?;
//! assert_eq!(&*client.call(b"echo", b"hi")?, b"re:hi");
//! server.shutdown(std::time::Duration::from_secs(1));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use fastwire_common::limits::{open_files_limit, raise_open_files_limit, OpenFiles};
pub use fastwire_common::{
    BalanceConfig, BalanceError, ClientError, ClientStats, CloseReason, OwnedRequest, Refusal, Refusals, Reply,
    RetryBudget, ServerState, ServerStats, ShutdownReport,
};
#[cfg(all(feature = "glommio", target_os = "linux"))]
pub use fastwire_glommio;
#[cfg(feature = "mio")]
pub use fastwire_mio;
pub use fastwire_proto as proto;
pub use fastwire_proto::{
    ClientConfig, Compression, Handler, OverLimit, Request, RespondError, Responder, ResponseWriter, ServerConfig,
};
#[cfg(feature = "std")]
pub use fastwire_std;
#[cfg(feature = "tokio")]
pub use fastwire_tokio;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub use fastwire_uring;
