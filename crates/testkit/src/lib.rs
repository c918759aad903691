//! What the workspace's tests share, so that no test writes its own frame
//! builder, scripted peer or vector reader:
//!
//! * [`frame`]: fastrpc's frames written from the protocol reference
//!   alone, to send and read raw bytes without the code under test.
//! * [`scripted`]: a scripted peer, a listener on 127.0.0.1 that runs a
//!   function over each raw connection it accepts.
//! * [`net`]: raw sockets and bounded waits: connect with a timeout,
//!   expect a close, expect quiet, drain, wait until a condition holds.
//! * [`vectors`]: the connections recorded from Go fastrpc.
//! * [`memory`]: the protocol's state machines driven over in-memory
//!   bytes, and comparisons that fail with a summary.
//!
//! The backend matrix (every backend's server and client) lives with the
//! tool's suite (`tests/suite/kit`), as it needs the tool's backend list.
//! Not published: a development dependency of the workspace's packages.

pub mod frame;
pub mod memory;
pub mod net;
pub mod scripted;
pub mod vectors;

/// A request as owned bytes: (id, name, value).
pub type OwnedRequest = (u32, Vec<u8>, Vec<u8>);
/// A response as owned bytes: (id, value).
pub type OwnedResponse = (u32, Vec<u8>);
