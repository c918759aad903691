//! # fastwire
//!
//! fastrpc's wire protocol in Rust, over several network architectures
//! measured side by side. This facade crate re-exports the pieces, so that
//! one dependency is enough, and holds what spans backends:
//!
//! * [`proto`]: the sans-I/O protocol crate every backend is built on
//!   (handshake, compression, codec, request ids, handler interface).
//! * [`fastwire_std`] (feature `std`): blocking sockets, a thread per connection.
//! * [`fastwire_tokio`] (feature `tokio`): a task per connection, on the
//!   multi-threaded runtime or on a current-thread runtime per core.
//! * [`fastwire_mio`] (feature `mio`): a hand-written edge-triggered reactor,
//!   one event loop per core.
//! * [`fastwire_glommio`] (feature `glommio`): io_uring, one pinned executor
//!   per core (Linux 5.8 or later).
//! * [`backend`]: every backend behind one run-time interface, by name
//!   ([`BackendKind`]), for the command line, the conformance suite and the
//!   benchmarks.
//! * [`demo`]: the demo service on every backend, with handlers that wait
//!   (through each backend's own waiting path) or burn CPU, as
//!   `fastwire serve` and the `wait`, `cpu` and `mixed` workloads use it.
//! * [`harness`]: the benchmark harness: workloads, load generation, floors,
//!   figures and reports, behind `fastwire compare`, `fastwire load` and
//!   the criterion benches.
//!
//! Each backend crate can also be used on its own: `fastwire-std` pulls in
//! neither tokio nor any other backend.

#![deny(missing_docs)]

pub mod backend;
pub mod demo;
pub mod harness;

pub use backend::BackendKind;
pub use fastwire_common::{ClientError, Reply, ServerStats, ShutdownReport};
#[cfg(feature = "glommio")]
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
