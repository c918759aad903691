//! The interface between the state machines and the I/O drivers that move
//! their bytes: for people writing a backend, not a service. A service
//! needs the crate root (settings, [`Handler`](crate::Handler),
//! [`Responder`](crate::Responder)) or a backend crate; everything here is
//! what a loop around [`ServerConn`] or [`ClientConn`] calls, in the order
//! the backends call it:
//!
//! 1. Bytes in and out through [`Connection`]: `received`, then `process`
//!    (a server's answers a [`Flow`]: go on, or stop reading until the
//!    output drains), then `output` and `advance_output` for what the
//!    socket took.
//! 2. Time and the close through the [`ServerConn`] itself, which owns
//!    its life (the policy is in `lifecycle.rs`): `start_clock` when
//!    accepted, `arrived` for bytes in, `written` for output taken and sent,
//!    `end_of_stream`; its [`Phase`] from open to closed, the deadline it
//!    next needs the time at (`poll_timeout`), what [`Expired`] when
//!    handed the time (`handle_timeout`), when to shut the write side
//!    (`poll_shutdown`), and the [`CloseReason`] it ends with.
//!    [`IDLE_RELEASE`], [`LINGER`] and [`LINGER_MAX_BYTES`] are its fixed
//!    bounds.
//! 3. Answers from other threads or tasks through [`Completions`]: a
//!    [`Responder`](crate::Responder) completes a deferred call there and
//!    wakes the loop through the backend's [`Wake`] ([`NoWake`] where the
//!    loop polls anyway); a [`CallGuard`] holds a slot of the server-wide
//!    [`ConcurrencyLimit`](crate::ConcurrencyLimit) for the call's life.
//! 4. A client's calls in flight live in a [`PendingTable`], keyed by
//!    request id, holding whatever token the driver gives each call.
//! 5. A client's time through its [`ClientConn`]: each call's deadline,
//!    the handshakes' deadline and the idle close (`poll_timeout`, then
//!    `handle_timeout`, which hands back the calls past their deadline and
//!    says what [`ClientExpired`]); [`MAX_QUEUED_OUTPUT`] bounds what it
//!    queues. Across connections, [`Reconnect`] decides when a client may
//!    connect again and how long an attempt may take.
//!
//! `crates/mio/src/connection.rs` is the shortest complete driver to read
//! beside this list; `examples/sans_io.rs` drives both machines with no
//! socket at all.

pub use crate::client::{ClientConn, ClientExpired, MAX_QUEUED_OUTPUT};
pub use crate::connection::Connection;
pub use crate::deferred::{CallGuard, Completions, NoWake, Wake};
pub use crate::lifecycle::{CloseReason, Expired, Phase, IDLE_RELEASE, LINGER, LINGER_MAX_BYTES};
pub use crate::pending::PendingTable;
pub use crate::reconnect::{Reconnect, MIN_CONNECT_TIMEOUT};
pub use crate::server::{Flow, ServerConn};
