//! # fastwire-proto: fastrpc's wire protocol, sans I/O
//!
//! Everything that is *protocol* in fastwire lives here, once: the handshake,
//! stream compression, the tlv message codec, request-id bookkeeping, limits
//! and the handler interface. This crate never touches a socket, a thread,
//! a runtime or a clock. It consumes bytes that were read and produces bytes
//! to write, like `httparse`, `rustls` or `quinn-proto`. Each fastwire
//! backend (blocking threads, a mio reactor, tokio, glommio) is then only an
//! I/O driver around it, so the protocol behaves identically everywhere and
//! benchmarks compare architectures and nothing else.
//!
//! It speaks Go's `github.com/valyala/fastrpc` protocol with `tlv` messages
//! byte for byte, checked against exchanges recorded from the Go
//! implementation (`tests/data/fastrpc/`).
//!
//! ## Layout
//!
//! Read from the bottom up:
//!
//! * [`config`]: settings shared by every backend ([`ProtocolConfig`],
//!   [`Limits`], [`ServerConfig`], [`ClientConfig`]), each with its default.
//! * [`error`]: one typed error per way a peer or a caller can get it wrong.
//! * [`handshake`]: the bytes each side sends first; checked as they arrive.
//! * [`codec`]: request and response encoding and incremental decoding
//!   (`Ok(None)` means "need more bytes").
//! * [`compress`]: none, flate and snappy as stream transforms, per direction.
//! * [`handler`]: the [`Handler`] trait and the [`ResponseWriter`] a handler
//!   writes its response value into, in place.
//! * [`deferred`]: answering later from any thread or task (a [`Responder`]),
//!   and the server-wide [`ConcurrencyLimit`].
//! * [`server`] and [`client`]: the two state machines, [`ServerConn`] and
//!   [`ClientConn`]. A backend's loop is read, `process`, write.
//! * [`driver`]: for people writing a backend, not a service: how a loop
//!   moves bytes in and out of either machine (`Connection`), a server
//!   connection's phases, timeouts and close (its own, handed the time), the
//!   wake-up of a loop when a deferred call is answered, and the table of
//!   a client's calls in flight, so that every backend closes the same
//!   connections at the same moments.
//! * [`demo`]: the demo service of `fastwire serve`, the tests and the
//!   benchmarks (fastrpc's own benchmark call, and an echo).
//! * `tls` (feature `tls`): TLS as fastrpc negotiates it, with rustls, as
//!   one more stream transform inside both state machines, so that every
//!   backend serves and calls over TLS without TLS code of its own.
//! * `tokio_codec` (feature `tokio-util`): `Decoder`/`Encoder` for
//!   tokio-util's `Framed`, for tokio users who write their own loops.
//!
//! ## Guarantees
//!
//! * No input panics: every malformed input is an [`Error`] whose message
//!   says what was wrong and which setting applies. (Tested by feeding
//!   arbitrary bytes, and fuzzed: see `fuzz/`.)
//! * A partial message is never an error: bytes may arrive split anywhere.
//! * Nothing is allocated or copied per message in steady state: buffers are
//!   reused, requests are borrowed from the read buffer, responses are written
//!   in place, pending calls live in a fixed table.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

pub mod client;
pub mod codec;
pub mod compress;
pub mod config;
mod connection;
pub mod deferred;
pub mod demo;
pub mod driver;
pub mod error;
pub mod handler;
pub mod handshake;
mod lifecycle;
mod pending;
mod reconnect;
pub mod server;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tokio-util")]
pub mod tokio_codec;

pub use client::{ClientConn, HandshakeStage, Rejected};
pub use codec::{Request, Response};
pub use config::{ClientConfig, Compression, Limits, OverLimit, ProtocolConfig, ServerConfig};
pub use deferred::{ConcurrencyLimit, RespondError, Responder};
pub use error::{CompressionError, Error, HandshakeError, MessageError, MessageKind, TlsError};
pub use handler::{Handler, ResponseWriter};
pub use lifecycle::CloseReason;
pub use server::ServerConn;

#[doc(hidden)]
pub use demo::{demo_handler, FASTRPC_BENCH_BODY, FASTRPC_BENCH_VALUE};
