//! # fastwire
//!
//! fastrpc's wire protocol in Rust, over four network architectures measured
//! side by side. This facade crate re-exports the pieces, so that one
//! dependency is enough:
//!
//! * [`proto`]: the sans-I/O protocol crate every backend is built on
//!   (handshake, compression, codec, request ids, handler interface).
//!
//! Backends are added behind cargo features as they land.

#![deny(missing_docs)]

pub use fastwire_proto as proto;
pub use fastwire_proto::{ClientConfig, Compression, Handler, Request, ResponseWriter, ServerConfig};
