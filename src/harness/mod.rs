//! The benchmark harness: the workloads of `measuring.md`, run against any
//! backend, with the figures it defines. `fastwire compare`, `fastwire load`
//! and the criterion benches in `benches/` are all built on it.
//!
//! * [`workload`]: the workloads ([`Workload`]) and one measurement's
//!   parameters ([`Spec`]): connections, in-flight depth, value size,
//!   compression, request rate.
//! * [`drive`]: the load itself, through each backend's own client: closed
//!   loop (every connection keeps `depth` calls in flight), open loop (calls
//!   sent at a fixed rate, latency counted from the intended send time) and
//!   fire-and-forget, over a warm-up and a measured window.
//! * [`floor`]: the references measured in the same run: a blocking 1-byte
//!   ping-pong and a minimal pipelined exchange of the fastrpc bytes, with
//!   no protocol at all.
//! * [`alloc`]: the counting global allocator behind allocs/op.
//! * [`env`](mod@env): the environment recorded beside every result.
//! * [`live`]: a server and its clients kept running for criterion, which
//!   times a fixed number of operations per sample.
//! * [`floor_pair`]: the blaster and the floor server, the peers that
//!   load a server alone or answer a client alone.
//! * `peers` (feature `peers`): tarpc, tonic and a tokio-util codec echo, raced
//!   beside the backends by `compare --peers`.
//! * [`compare`](mod@compare): runs backends × workloads in one process, server and
//!   client side by side, one [`Row`] per measurement.
//! * [`report`]: the table, Markdown and JSON.
//! * [`chart`]: SVG charts (plotters) for the guide.
//! * [`figures`]: the published run as the figures the guide includes.
//!
//! Why these figures: ns/op is wall time over all operations of all callers
//! (inverse throughput, as Go prints it), never latency; latency is per call,
//! in an HDR histogram (hdrhistogram: fixed memory, no allocation per sample,
//! percentiles with bounded relative error); allocs/op is counted in a run
//! of its own, so that counting never slows a timed run.

pub mod alloc;
pub mod chart;
pub mod child;
pub mod compare;
pub mod drive;
pub mod env;
pub mod figures;
pub mod floor;
pub mod floor_pair;
pub mod live;
#[cfg(feature = "peers")]
pub mod peers;
pub mod report;
pub mod sweep;
pub mod workload;

pub use compare::{compare, Plan};
pub use drive::{Sample, Timing};
pub use env::Env;
pub use report::Row;
pub use workload::{Role, Spec, Workload};
