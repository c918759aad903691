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
//! * [`slot`]: the [`Reply`] a call returns. It reads the value in the
//!   call's pooled slot, and once it is dropped the slot (its buffer still
//!   in it) is lent to a later call, so a call allocates nothing in steady
//!   state (a large value is shared with the read buffer rather than copied).
//! * [`handle`]: the [`ServerHandle`] every backend's server returns.
//! * [`stats`]: [`ServerStats`], [`ClientStats`], the [`Refusals`] of
//!   clients refused at their handshake, and the [`ShutdownReport`] of a
//!   graceful shutdown.
//! * [`Accept`]: how new connections reach a server's loops.
//! * [`pool`]: [`Pool`], up to N clients per address, for any backend's client.
//! * [`balance`]: [`Balanced`], one blocking client over many servers (power
//!   of two choices, failover, servers found by name).
//! * [`limits`]: the process's limit on open files, and
//!   [`raise_open_files_limit`](limits::raise_open_files_limit) to lift it
//!   to the hard limit at the start of `main`, as Go's runtime does.
//! * [`work`]: handlers that wait: [`OwnedRequest`], the worker pool for
//!   blocking handlers ([`Blocking`]) and a [`Timer`] thread, all answering
//!   through deferred responses.
//!
//! The rest is wiring between fastwire's crates (a driver's hooks into the
//! client, call slots, a server loop's scaffolding and counters, socket
//! setup, the reconnect backoff): public because the backends are crates of
//! their own, hidden from these docs because it is not an API and changes
//! with them.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
// Unsafe code is denied, and allowed in three places: `sys`, three socket
// calls std does not offer (each with its reason), `limits`, the two
// resource-limit calls std does not offer, and `slot`, a call's
// value handed from the completer to the caller under an atomic state
// instead of a lock (the rule is written at `CallSlot`'s fields).
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod balance;
pub mod client;
#[doc(hidden)]
pub mod deadline;
pub mod error;
pub mod handle;
pub mod limits;
#[doc(hidden)]
pub mod net;
pub mod pool;
#[doc(hidden)]
pub mod registry;
pub mod slot;
pub mod stats;
mod sys;
pub mod work;

pub use balance::{BalanceConfig, BalanceError, Balanced, RetryBudget, ServerState};
pub use error::ClientError;
pub use fastwire_proto::CloseReason;
pub use handle::ServerHandle;
pub use net::Accept;
pub use pool::{Pool, PoolClient, Pooled};
pub use slot::{Reply, LARGE_VALUE};
pub use stats::{ClientStats, Refusal, Refusals, ServerStats, ShutdownReport};
pub use work::{Blocking, OwnedRequest, Timer};

// The wiring between fastwire's crates: public because the backends are
// separate crates, hidden because it is not an API (see the crate docs).
#[doc(hidden)]
#[doc(hidden)]
pub use deadline::Deadline;
#[doc(hidden)]
pub use handle::{take_due, Batching, Deadlines, LoopShared, ReadyKeys, Serving, WokenKeys};
#[doc(hidden)]
pub use registry::Registry;
#[doc(hidden)]
pub use slot::{CallSlot, FollowEnd, SlotPool, SlotToken};
#[doc(hidden)]
pub use stats::{stop_loops, ConnTally, Cut, LoopRunning, LoopsRunning, ServerCounters};
