//! # fastwire-bench: the tool around the library
//!
//! The `fastwire` binary (`compare`, `load`, `serve`) and what it is made
//! of. Not published: library users depend on the `fastwire` facade
//! (`crates/fastwire`) or on one backend crate, and never build any of this
//! (clap, plotters, indicatif, serde, hdrhistogram stay out of their tree).
//!
//! * [`backend`]: every backend behind one run-time interface, by name
//!   ([`BackendKind`]), for the command line, the conformance suite and the
//!   benchmarks.
//! * [`demo`]: the demo service on every backend, with handlers that wait
//!   (through each backend's own waiting path) or burn CPU, as
//!   `fastwire serve` and the `wait`, `cpu` and `mixed` workloads use it.
//! * [`harness`]: the benchmark harness: workloads, load generation, floors,
//!   figures and reports, behind `fastwire compare`, `fastwire load` and
//!   the criterion benches.
//! * [`tls`]: certificates made for a run (rcgen), for `compare --tls`,
//!   the handshakes workload and the TLS tests.

#![deny(missing_docs)]

pub mod backend;
pub mod demo;
pub mod harness;
pub mod tls;

pub use backend::BackendKind;
