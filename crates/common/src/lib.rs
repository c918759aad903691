//! # fastwire-common: what every backend shares beyond the protocol
//!
//! The protocol itself lives in `fastwire-proto`, which owns no socket,
//! thread or clock. A few things are not protocol but are the same in every
//! backend, and live here so that the backends stay short and alike:
//!
//! * [`error`]: [`ClientError`], what a call can fail with, on every backend.
//! * [`client`]: the blocking [`client::Client`] (calls, deadlines, reconnect,
//!   fire-and-forget) for every backend whose callers are threads; a
//!   backend supplies only its [`client::Driver`].
//! * [`slot`]: pooled call slots and the [`Reply`] a call returns. A caller
//!   waits on a slot (blocking or async); the connection completes it
//!   through the call's [`SlotToken`]; the reply reads the value in the
//!   slot, and once it is dropped the pool lends the slot (its buffer still
//!   in it) to a later call, so a call allocates nothing in steady state (a
//!   large value is shared with the read buffer rather than copied).
//! * [`handle`]: the [`ServerHandle`] every backend's server returns, around
//!   its own [`Serving`] part.
//! * [`stats`]: server counters and the [`ShutdownReport`] of a graceful shutdown.
//! * [`net`]: socket setup through `socket2` (reuse-port listeners, `TCP_NODELAY`),
//!   and [`Accept`], how new connections reach a server's loops.
//! * [`backoff`]: the reconnect backoff of clients.
//! * [`pool`]: [`Pool`], up to N clients per address, for any backend's client.
//! * [`registry`]: a server's open connections, for graceful shutdown.
//! * [`work`]: handlers that wait: [`OwnedRequest`], the worker pool for
//!   blocking handlers ([`Blocking`]) and a [`Timer`] thread, all answering
//!   through deferred responses.

#![deny(missing_docs)]
// Unsafe code is denied, and allowed in two places: `sys`, three socket
// calls std does not offer (each with its reason), and `slot`, a call's
// value handed from the completer to the caller under an atomic state
// instead of a lock (the rule is written at `CallSlot`'s fields).
#![deny(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod deadline;
pub mod error;
pub mod handle;
pub mod net;
pub mod pool;
pub mod registry;
pub mod slot;
pub mod stats;
mod sys;
pub mod work;

pub use backoff::Backoff;
pub use deadline::Deadline;
pub use error::ClientError;
pub use fastwire_proto::lifecycle::CloseReason;
pub use handle::{LoopShared, ServerHandle, Serving};
pub use net::Accept;
pub use pool::{Pool, PoolClient, Pooled};
pub use registry::Registry;
pub use slot::{CallSlot, FollowEnd, Reply, SlotPool, SlotToken, LARGE_VALUE};
pub use stats::{
    stop_loops, ClientStats, ConnTally, Cut, Refusal, Refusals, ServerCounters, ServerStats, ShutdownReport,
};
pub use work::{Blocking, OwnedRequest, Timer};
