//! One entrant on one configuration, once: its server started (in this
//! process or a child of its own), one timed or counted run of the load,
//! the server stopped. [`rounds`](super::rounds) calls this once per
//! entrant per round, and once more to count allocations.

use std::net::SocketAddr;
use std::time::Duration;

use fastwire_proto::demo_handler;

use super::child::ChildServer;
use super::drive;
use super::floor;
use super::floor_pair::{self, FloorServer};
use super::plan::{Entrant, Plan};
use super::sample::{Mode, Sample};
use super::sweep;
use super::workload::{Role, Spec, Workload};
use crate::backend::{self, BackendKind};

/// What one run gives: its sample, and the server process's resident
/// memory after the load when the server had a process of its own.
pub struct Measured {
    /// The run's sample (for a server in a process of its own, `counted`
    /// is its CPU nanoseconds over the window).
    pub sample: Sample,
    /// `Some` when the server ran in a child process: its memory, if read.
    pub process: Option<Option<u64>>,
    /// A spread run's servers, each with its calls, latency and failures.
    pub servers: Option<Vec<super::balanced::PerServer>>,
}

impl From<Sample> for Measured {
    fn from(sample: Sample) -> Measured {
        Measured { sample, process: None, servers: None }
    }
}

/// Starts `kind`'s server for `spec`: the plain demo handler (inline, as it
/// always was), or for the workloads whose handlers wait or work, the demo
/// service with that behaviour (see [`crate::demo`]).
pub fn start(kind: BackendKind, addr: SocketAddr, spec: &Spec) -> std::io::Result<Box<dyn backend::RunningServer>> {
    match spec.workload {
        Workload::Wait | Workload::Cpu | Workload::Mixed | Workload::MixedBase => {
            crate::demo::start_demo(kind, addr, spec.server_config(), spec.demo())
        }
        _ => backend::start_server(kind, addr, spec.server_config(), demo_handler),
    }
}

/// The ideal of `wait` and `cpu`, computed rather than measured: every
/// call's wait overlapped with all the others (connections x depth calls
/// per wait), or every core busy with handler work and nothing else.
pub fn ideal(spec: &Spec) -> Option<Sample> {
    let seconds_per_op = match spec.workload {
        Workload::Wait => Workload::WAIT.as_secs_f64() / (spec.connections * spec.depth.max(1)) as f64,
        Workload::Cpu => {
            let cores = fastwire_common::net::available_cores();
            Workload::WORK.as_secs_f64() / cores as f64
        }
        _ => return None,
    };
    let ops = (1.0 / seconds_per_op).round() as u64;
    Some(Sample {
        ops,
        unsolicited: 0,
        seconds: 1.0,
        bytes: ops * spec.response_size() as u64,
        latency: None,
        allocations: Some(0),
        counted: None,
    })
}

/// One run of `entrant` on `spec`.
pub fn once(plan: &Plan, spec: &Spec, entrant: Entrant, mode: Mode) -> Result<Measured, String> {
    let timing = &plan.timing;
    match entrant {
        Entrant::Ideal => ideal(spec).map(Measured::from).ok_or_else(|| format!("{} has no ideal", spec.workload)),
        Entrant::Floor => match spec.role {
            Role::Both if spec.workload == Workload::Pingpong => floor::pingpong(spec.value_size, timing, mode),
            Role::Both => floor::pipelined(spec, timing, mode),
            _ => FloorServer::start(spec)
                .and_then(|floor| floor_pair::blast(floor.local_addr(), spec, timing, mode, None)),
        }
        .map(Measured::from),
        Entrant::Backend(kind) if spec.workload == Workload::Sweep => {
            let own_process = plan.processes || spec.connections >= sweep::PROCESS_FROM;
            match (&plan.server_exe, own_process) {
                (None, true) => {
                    Err(format!("{} connections need the server in a process of its own", spec.connections))
                }
                (exe, own) => under_load(kind, spec, exe.as_deref().filter(|_| own), |addr, cpu| {
                    sweep::run(addr, spec, timing.warmup, timing.measure, cpu)
                }),
            }
        }
        Entrant::Backend(kind) if spec.workload == Workload::Spread => {
            let exe = plan.server_exe.as_deref().ok_or(
                "the spread servers run as `fastwire serve` processes, and this process cannot find the fastwire binary",
            )?;
            let (sample, servers) = super::spread::run(exe, kind, spec, timing)?;
            Ok(Measured { sample, process: Some(None), servers: Some(servers) })
        }
        Entrant::Backend(kind) => match spec.role {
            Role::Both => both(kind, spec, timing, mode).map(Measured::from),
            Role::Server => {
                let exe = plan.server_exe.as_deref().filter(|_| plan.processes);
                under_load(kind, spec, exe, |addr, cpu| blast(addr, spec, timing, mode, cpu))
            }
            Role::Client => FloorServer::start(spec)
                .and_then(|floor| backend::closed_loop(kind, floor.local_addr(), spec, timing, mode, None))
                .map(Measured::from),
        },
        #[cfg(feature = "peers")]
        Entrant::Peer(peer) => super::peers::measure(peer, spec, timing, mode).map(Measured::from),
        Entrant::ByHand(model) => {
            let exe = plan.server_exe.as_deref().ok_or(
                "the servers by hand run as `fastwire serve --by-hand`, and this process cannot find the fastwire binary",
            )?;
            in_child(ChildServer::by_hand(exe, model)?, |addr, cpu| blast(addr, spec, timing, mode, cpu))
        }
    }
}

/// The blaster on a server alone, reading the server process's CPU counter
/// (if it has one) over the timed window only.
fn blast(
    addr: SocketAddr,
    spec: &Spec,
    timing: &super::Timing,
    mode: Mode,
    cpu: Option<&dyn Fn() -> u64>,
) -> Result<Sample, String> {
    floor_pair::blast(addr, spec, timing, mode, cpu.filter(|_| mode == Mode::Timed))
}

/// Runs `load` against a server in a child process, handing it the
/// process's CPU counter, and records the process's memory.
fn in_child(
    server: ChildServer,
    load: impl FnOnce(SocketAddr, Option<&dyn Fn() -> u64>) -> Result<Sample, String>,
) -> Result<Measured, String> {
    let cpu = || server.cpu_ns();
    let sample = load(server.local_addr(), Some(&cpu))?;
    Ok(Measured { sample, process: Some(server.rss_bytes()), servers: None })
}

/// Starts `kind`'s server for `spec` (in a child process of `exe`, if
/// given, else in this one), runs `load` against its address, and stops it.
/// `load` gets a counter of the server process's CPU nanoseconds when there
/// is one (to read over its timed window).
fn under_load(
    kind: BackendKind,
    spec: &Spec,
    exe: Option<&std::path::Path>,
    load: impl FnOnce(SocketAddr, Option<&dyn Fn() -> u64>) -> Result<Sample, String>,
) -> Result<Measured, String> {
    match exe {
        Some(exe) => in_child(ChildServer::spawn(exe, kind, spec)?, load),
        None => {
            let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
            let server = start(kind, any, spec).map_err(|e| format!("starting the {kind} server: {e}"))?;
            let result = load(server.local_addr(), None);
            server.shutdown(Duration::from_secs(2));
            Ok(result?.into())
        }
    }
}

/// One backend's client and server on one configuration: a server of its
/// own, one run against it, then a graceful shutdown.
fn both(kind: BackendKind, spec: &Spec, timing: &super::Timing, mode: Mode) -> Result<Sample, String> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let server = start(kind, any, spec).map_err(|e| format!("starting the {kind} server: {e}"))?;
    let addr = server.local_addr();
    let handled = || server.stats().requests;
    let result = match spec.workload {
        Workload::Conns => drive::open_loop(addr, spec, timing, mode),
        Workload::Nowait => backend::closed_loop(kind, addr, spec, timing, mode, Some(&handled)),
        Workload::Handshakes => drive::handshakes(addr, spec, timing, mode),
        _ => backend::closed_loop(kind, addr, spec, timing, mode, None),
    };
    server.shutdown(Duration::from_secs(2));
    result
}
