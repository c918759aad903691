//! The protocol crate's tests, one binary: the state machines driven over
//! in-memory bytes, with no socket and, where time matters, a virtual clock.
//!
//! * [`vectors`]: the exchanges recorded from Go fastrpc, byte for byte.
//! * [`split`]: the same streams cut at every offset and in random chunks.
//! * [`props`]: property tests: round trips, and no panic on any input.
//! * [`errors`]: each way a peer or caller can get it wrong, its own error.
//! * [`deferred`]: deferred responses, panics and the concurrency limit.
//! * [`lifecycle`]: every timeout and close path on a virtual clock.
//! * [`client_time`]: a client's deadlines, idle close and reconnection
//!   policy on a virtual clock.
//! * [`tls`]: TLS inside the state machines (feature `tls`).
//!
//! The per-request spans have a binary of their own (`request_spans`), as
//! they need a feature and install a global subscriber.

mod client_time;
mod deferred;
mod errors;
mod lifecycle;
mod props;
mod split;
mod tls;
mod vectors;
