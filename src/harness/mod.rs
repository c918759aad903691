//! The benchmark harness: the workloads of `measuring.md`, run against any
//! backend, with the figures it defines. `fastwire compare`, `fastwire load`
//! and the criterion benches in `benches/` are all built on it.
//!
//! Its modules follow the data, from what to measure to what is reported:
//!
//! 1. **Plan.** [`workload`]: the workloads ([`Workload`]) and one
//!    measurement's parameters ([`Spec`]). [`plan`]: what `compare` runs
//!    ([`Plan`]), grouped into the entrants measured side by side.
//! 2. **Rounds.** [`rounds`]: every group measured in several rounds, the
//!    entrants' order rotating from round to round; [`measure`]: one
//!    entrant once (server started, one run of the load, server stopped).
//! 3. **Samples.** [`sample`]: the window every load follows and the
//!    [`Sample`] it yields. The loads: [`drive`] (each backend's own client:
//!    closed loop, open loop, fire-and-forget, handshakes), [`floor`] (the
//!    references with no protocol), [`floor_pair`] (the blaster and the
//!    floor server, to load a server alone or answer a client alone),
//!    [`sweep`] (one event loop over up to 10,000 connections), [`balanced`]
//!    (the balanced client over many servers, per server), [`spread`]
//!    (its servers started, slowed, killed and restarted), `peers`
//!    (feature `peers`: tarpc, tonic, a codec echo), [`live`] (a server and
//!    clients kept running for criterion). `wire`: the handshake and the
//!    one response scanner the hand-written peers share. [`child`]: a
//!    server in a process of its own. [`alloc`]: the counting allocator.
//! 4. **Summaries and verdicts.** [`stats`]: medians, order-statistic
//!    intervals, spreads and verdicts, pure and tested on scripted samples;
//!    [`row`]: a [`Row`] from its rounds, paired with its floor, judged.
//! 5. **Reports.** [`report`]: the table, Markdown, JSON and the verdict
//!    lines; [`chart`]: SVG charts (plotters); [`figures`]: the published
//!    run as the figures the guide includes; [`env`](mod@env): the
//!    environment recorded beside every result.
//!
//! Why these figures: ns/op is wall time over all operations of all callers
//! (inverse throughput, as Go prints it), never latency; latency is per call,
//! in an HDR histogram (hdrhistogram: fixed memory, no allocation per sample,
//! percentiles with bounded relative error); allocs/op is counted in a run
//! of its own, so that counting never slows a timed run.

pub mod alloc;
pub mod balanced;
pub mod chart;
pub mod child;
pub mod drive;
pub mod env;
pub mod figures;
pub mod floor;
pub mod floor_pair;
pub mod live;
pub mod measure;
#[cfg(feature = "peers")]
pub mod peers;
pub mod plan;
pub mod report;
pub mod rounds;
pub mod row;
pub mod sample;
pub mod spread;
pub mod stats;
pub mod sweep;
mod wire;
pub mod workload;

pub use env::Env;
pub use plan::Plan;
pub use rounds::compare;
pub use row::Row;
pub use sample::{Sample, Timing};
pub use workload::{Phase, Role, Spec, Workload};
