//! Backends side by side: every chosen backend through every chosen
//! workload configuration, server and load in one process.
//!
//! The loop is configuration-major: for each configuration, its floor (if
//! it has one) and then each backend, one after the other. Rows that are
//! compared with each other are thus measured minutes apart at most, which
//! on a shared, noisy machine matters more than any other choice here.

use std::net::SocketAddr;
use std::time::Duration;

use fastwire_proto::demo_handler;

use super::child::ChildServer;
use super::drive::{self, Mode, Sample, Timing};
use super::env::{self, Machine};
use super::floor;
use super::floor_pair::{self, FloorServer};
use super::report;
use super::report::Row;
use super::sweep;
use super::workload::{Role, Spec, Workload};
use crate::backend::{self, BackendKind};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The backends, in report order.
    pub backends: Vec<BackendKind>,
    /// The workload configurations, in report order.
    pub specs: Vec<Spec>,
    /// Warm-up and window lengths.
    pub timing: Timing,
    /// Whether to measure the floors (pingpong and fastrpc, uncompressed).
    pub floors: bool,
    /// Run servers under the blaster (`--role server`) as child processes,
    /// to report their own CPU time per call and memory.
    pub processes: bool,
    /// Add the peers (tarpc, tonic, the codec echo) where they apply; a build
    /// without the `peers` feature measures none.
    pub peers: bool,
    /// The `fastwire` binary, for servers in processes of their own
    /// (`processes`, and the sweep's largest points). `None`: none can run.
    pub server_exe: Option<std::path::PathBuf>,
}

impl Plan {
    /// The measurements this plan makes (for a progress bar).
    pub fn len(&self) -> usize {
        let clients = self.backends.iter().filter(|k| k.has_client_row()).count();
        let servers = self.backends.iter().filter(|k| !k.caller_tasks()).count();
        self.specs
            .iter()
            .map(|s| match s.role {
                _ if s.workload == Workload::Sweep => self.backends.len(),
                Role::Both => {
                    self.backends.len() + usize::from(self.floors && floor_of(s).is_some()) + self.peers_on(s)
                }
                Role::Server => servers + usize::from(self.floors),
                Role::Client => clients + usize::from(self.floors),
            })
            .sum()
    }

    /// How many peers race on `spec`.
    fn peers_on(&self, spec: &Spec) -> usize {
        #[cfg(feature = "peers")]
        if self.peers && super::peers::applies(spec).is_ok() {
            return super::peers::Peer::ALL.len();
        }
        let _ = spec;
        0
    }

    /// Whether the plan measures nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`compare`] reports as it goes.
pub enum Event<'a> {
    /// A measurement starts.
    Start {
        /// Backend or `floor`.
        backend: &'a str,
        /// Its configuration.
        spec: &'a Spec,
    },
    /// A measurement finished.
    Done(&'a Row),
    /// A backend could not run on this machine, or a measurement failed.
    Skipped {
        /// Backend or `floor`.
        backend: &'a str,
        /// Its configuration, if the failure was of one measurement.
        spec: Option<&'a Spec>,
        /// Why.
        reason: &'a str,
    },
}

/// The floor that goes with a configuration, if any.
fn floor_of(spec: &Spec) -> Option<Workload> {
    match spec.workload {
        // The floors speak plain TCP: a TLS row is compared with its
        // plaintext twin of the same run instead.
        Workload::Pingpong | Workload::Fastrpc
            if spec.compress == fastwire_proto::Compression::None && spec.tls.is_none() =>
        {
            Some(spec.workload)
        }
        _ => None,
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
fn ideal(spec: &Spec) -> Option<Sample> {
    let seconds_per_op = match spec.workload {
        Workload::Wait => Workload::WAIT.as_secs_f64() / (spec.connections * spec.depth.max(1)) as f64,
        Workload::Cpu => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
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

/// Runs the plan, reporting each step to `progress`; returns the rows.
pub fn compare(plan: &Plan, progress: &mut dyn FnMut(Event<'_>)) -> Vec<Row> {
    let machine = Machine::detect();
    let mut runnable = Vec::new();
    for &kind in &plan.backends {
        match kind.unavailable() {
            Some(reason) => progress(Event::Skipped { backend: kind.name(), spec: None, reason: &reason }),
            None => runnable.push(kind),
        }
    }
    let mut rows = Vec::new();
    for spec in &plan.specs {
        if spec.workload == Workload::Sweep {
            measure_sweep(plan, spec, &runnable, &machine, progress, &mut rows);
            continue;
        }
        if spec.role != Role::Both {
            measure_role(plan, spec, &runnable, &machine, progress, &mut rows);
            continue;
        }
        if let (true, Some(ideal)) = (plan.floors, ideal(spec)) {
            let row =
                Row::new("floor", spec, &ideal, Some(&ideal), machine.env(env::floor_layout(spec.workload), true));
            progress(Event::Done(&row));
            rows.push(row);
        }
        if plan.floors {
            if let Some(workload) = floor_of(spec) {
                progress(Event::Start { backend: "floor", spec });
                let run = |mode| match workload {
                    Workload::Pingpong => floor::pingpong(spec.value_size, &plan.timing, mode),
                    _ => floor::pipelined(spec, &plan.timing, mode),
                };
                match run(Mode::Timed).and_then(|timed| Ok((timed, run(Mode::Counted)?))) {
                    Ok((timed, counted)) => {
                        let row = Row::new(
                            "floor",
                            spec,
                            &timed,
                            Some(&counted),
                            machine.env(env::floor_layout(workload), true),
                        );
                        progress(Event::Done(&row));
                        rows.push(row);
                    }
                    Err(reason) => progress(Event::Skipped { backend: "floor", spec: Some(spec), reason: &reason }),
                }
            }
        }
        for &kind in &runnable {
            progress(Event::Start { backend: kind.name(), spec });
            match measure(kind, spec, &plan.timing) {
                Ok((timed, counted)) => {
                    let env = machine.env(env::layout(kind, spec.workload), true);
                    let row = Row::new(kind.name(), spec, &timed, Some(&counted), env);
                    progress(Event::Done(&row));
                    rows.push(row);
                }
                Err(reason) => progress(Event::Skipped { backend: kind.name(), spec: Some(spec), reason: &reason }),
            }
        }
        #[cfg(feature = "peers")]
        if plan.peers_on(spec) > 0 {
            for peer in super::peers::Peer::ALL {
                progress(Event::Start { backend: peer.name(), spec });
                match super::peers::measure(peer, spec, &plan.timing) {
                    Ok((timed, counted)) => {
                        let env = machine.env(
                            format!("{}; load: {}", peer.layout(), env::async_load(&format!("{peer} client"))),
                            true,
                        );
                        let row = Row::new(peer.name(), spec, &timed, Some(&counted), env);
                        progress(Event::Done(&row));
                        rows.push(row);
                    }
                    Err(reason) => progress(Event::Skipped { backend: peer.name(), spec: Some(spec), reason: &reason }),
                }
            }
        }
    }
    rows
}

/// A `server` or `client` configuration: the floor pair first (blaster
/// against floor server), then each backend's server under the blaster, or
/// each backend's client against the floor server.
fn measure_role(
    plan: &Plan,
    spec: &Spec,
    runnable: &[BackendKind],
    machine: &Machine,
    progress: &mut dyn FnMut(Event<'_>),
    rows: &mut Vec<Row>,
) {
    let twice = |run: &dyn Fn(Mode) -> Result<Sample, String>| -> Result<(Sample, Sample), String> {
        Ok((run(Mode::Timed)?, run(Mode::Counted)?))
    };
    let mut record =
        |backend: &str, threads: String, result: Result<((Sample, Sample), ServerProcess), String>| match result {
            Ok(((timed, counted), process)) => {
                let row = Row::new(backend, spec, &timed, Some(&counted), machine.env(threads, process.is_none()));
                let row = with_process_figures(row, &timed, process);
                progress(Event::Done(&row));
                rows.push(row);
            }
            Err(reason) => progress(Event::Skipped { backend, spec: Some(spec), reason: &reason }),
        };
    let in_process = |result: Result<(Sample, Sample), String>| result.map(|samples| (samples, None));
    if plan.floors {
        let result = FloorServer::start(spec)
            .and_then(|floor| twice(&|mode| floor_pair::blast(floor.local_addr(), spec, &plan.timing, mode, None)));
        record(report::FLOOR, env::floor_pair_layout(), in_process(result));
    }
    for &kind in runnable {
        let result = match spec.role {
            // A load shape of a client: its server is the plain backend's.
            Role::Server if kind.caller_tasks() => continue,
            Role::Server => {
                let exe = plan.server_exe.as_deref().filter(|_| plan.processes);
                under_load(kind, spec, exe, |addr, cpu| {
                    // The server's CPU is read over the timed window only.
                    Ok((
                        floor_pair::blast(addr, spec, &plan.timing, Mode::Timed, cpu)?,
                        floor_pair::blast(addr, spec, &plan.timing, Mode::Counted, None)?,
                    ))
                })
            }
            // One row per client and load shape (the per-core and reuse-port
            // layouts are server layouts).
            _ if !kind.has_client_row() => continue,
            _ => in_process(FloorServer::start(spec).and_then(|floor| {
                twice(&|mode| drive::closed_loop(kind, floor.local_addr(), spec, &plan.timing, mode, None))
            })),
        };
        record(kind.name(), env::role_layout(kind, spec.role), result);
    }
}

/// One point of the connection sweep, for every backend.
fn measure_sweep(
    plan: &Plan,
    spec: &Spec,
    runnable: &[BackendKind],
    machine: &Machine,
    progress: &mut dyn FnMut(Event<'_>),
    rows: &mut Vec<Row>,
) {
    let (warmup, measure) = (plan.timing.warmup, plan.timing.measure);
    for &kind in runnable {
        progress(Event::Start { backend: kind.name(), spec });
        if let Some(reason) = sweep::cannot_hold(kind.name(), spec.connections) {
            progress(Event::Skipped { backend: kind.name(), spec: Some(spec), reason: &reason });
            continue;
        }
        let own_process = plan.processes || spec.connections >= sweep::PROCESS_FROM;
        let result = match (&plan.server_exe, own_process) {
            (None, true) => Err(format!("{} connections need the server in a process of its own", spec.connections)),
            (exe, own) => under_load(kind, spec, exe.as_deref().filter(|_| own), |addr, cpu| {
                sweep::run(addr, spec, warmup, measure, cpu)
            }),
        };
        match result {
            Ok((sample, process)) => {
                let threads = format!(
                    "{}; load: one thread, an event loop (mio) over every connection",
                    env::role_layout(kind, Role::Server).split("; load:").next().unwrap_or_default()
                );
                let row = Row::new(kind.name(), spec, &sample, None, machine.env(threads, process.is_none()));
                let row = with_process_figures(row, &sample, process);
                progress(Event::Done(&row));
                rows.push(row);
            }
            Err(reason) => progress(Event::Skipped { backend: kind.name(), spec: Some(spec), reason: &reason }),
        }
    }
}

/// Where a server under load ran: `None` in this process; `Some(rss)` in a
/// child process of its own, with its resident memory after the load.
type ServerProcess = Option<Option<u64>>;

/// Starts `kind`'s server for `spec` (in a child process of `exe`, if
/// given, else in this one), runs `load` against its address, and stops it.
/// `load` gets a counter of the server process's CPU nanoseconds when there
/// is one (to read over its timed window).
fn under_load<T>(
    kind: BackendKind,
    spec: &Spec,
    exe: Option<&std::path::Path>,
    load: impl FnOnce(SocketAddr, Option<&dyn Fn() -> u64>) -> Result<T, String>,
) -> Result<(T, ServerProcess), String> {
    match exe {
        Some(exe) => {
            let server = ChildServer::spawn(exe, kind, spec)?;
            let cpu = || server.cpu_ns();
            let result = load(server.local_addr(), Some(&cpu))?;
            Ok((result, Some(server.rss_bytes())))
        }
        None => {
            let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
            let server = start(kind, any, spec).map_err(|e| format!("starting the {kind} server: {e}"))?;
            let result = load(server.local_addr(), None);
            server.shutdown(Duration::from_secs(2));
            Ok((result?, None))
        }
    }
}

/// A row with its server process's figures, when the server had a process
/// of its own: CPU time per call over `timed`'s window, and memory.
fn with_process_figures(mut row: Row, timed: &Sample, process: ServerProcess) -> Row {
    if let Some(rss) = process {
        row.server_cpu_ns_per_op = timed.counted.map(|ns| ns as f64 / timed.ops.max(1) as f64);
        row.server_rss_bytes = rss;
    }
    row
}

/// One backend on one configuration: a server of its own, a timed run and
/// a counted run against it, then a graceful shutdown.
pub fn measure(kind: BackendKind, spec: &Spec, timing: &Timing) -> Result<(Sample, Sample), String> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let server = start(kind, any, spec).map_err(|e| format!("starting the {kind} server: {e}"))?;
    let addr = server.local_addr();
    let handled = || server.stats().requests;
    let run = |mode| match spec.workload {
        Workload::Conns => drive::open_loop(addr, spec, timing, mode),
        Workload::Nowait => drive::closed_loop(kind, addr, spec, timing, mode, Some(&handled)),
        Workload::Handshakes => drive::handshakes(addr, spec, timing, mode),
        _ => drive::closed_loop(kind, addr, spec, timing, mode, None),
    };
    let result = run(Mode::Timed).and_then(|timed| Ok((timed, run(Mode::Counted)?)));
    server.shutdown(Duration::from_secs(2));
    result
}
