//! The `spread` workload: a backend's balanced client
//! ([`fastwire_common::Balanced`]) over servers of the same backend, each
//! a `fastwire serve` process of its own, in the phases of a fleet's life
//! ([`Phase`]): two fast servers alone (the reference), three alike, one
//! of three ten times slower, one of three killed (SIGKILL) and restarted
//! on its address while the calls go on.
//!
//! Every server's handler waits [`FAST_DELAY`] (the slowed one
//! [`SLOW_DELAY`]) on a timer without blocking, so that "ten times slower"
//! is a property of the service and not of the machine's noise. A row's
//! figure is its p99; its "vs floor" is its p99 over the same client's p99
//! over the two fast servers alone, in the same round. Each row also
//! reports every server's calls, share and failures ([`Share`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::balanced::PerServer;
use super::child::ChildServer;
use super::sample::{histogram, Sample, Timing};
use super::workload::{Phase, Spec};
use crate::backend::{self, BackendKind, Servers};

/// The handler delay of every fast server.
pub const FAST_DELAY: Duration = Duration::from_micros(100);
/// The handler delay of the slowed server: ten times the others'.
pub const SLOW_DELAY: Duration = Duration::from_millis(1);
/// The shortest window a spread round has (`compare --duration` may ask
/// for more): long enough for a killed server to be restarted and to pass
/// its probe within it (the probes back off as `ClientConfig`'s reconnection
/// backoff does, doubling).
pub const MIN_WINDOW: Duration = Duration::from_millis(400);

/// What one server of a phase does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Waits [`FAST_DELAY`] per call.
    Fast,
    /// Waits [`SLOW_DELAY`] per call.
    Slowed,
    /// Waits [`FAST_DELAY`], and is killed and restarted mid-window.
    Killed,
}

impl Part {
    /// `fast`, `slowed` or `killed`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Fast => "fast",
            Part::Slowed => "slowed",
            Part::Killed => "killed",
        }
    }

    fn delay(self) -> Duration {
        if self == Part::Slowed {
            SLOW_DELAY
        } else {
            FAST_DELAY
        }
    }
}

/// The servers of `phase`, in the order the client lists them.
pub fn parts(phase: Phase) -> &'static [Part] {
    match phase {
        Phase::Two => &[Part::Fast, Part::Fast],
        Phase::Equal => &[Part::Fast, Part::Fast, Part::Fast],
        Phase::Slowed => &[Part::Fast, Part::Fast, Part::Slowed],
        Phase::Killed => &[Part::Fast, Part::Fast, Part::Killed],
    }
}

/// A spread round's timing: `plan`'s, with a window of at least
/// [`MIN_WINDOW`] and a quarter of it to warm up.
pub fn timing(plan: &Timing) -> Timing {
    let measure = plan.measure.max(MIN_WINDOW);
    Timing { warmup: plan.warmup.max(measure / 4), measure, count: plan.count }
}

/// The backends whose client is a balanced client (the blocking ones: the
/// tokio client balances through tower instead, see `fastwire_tokio::tower`).
pub fn balances(kind: BackendKind) -> bool {
    kind.client_kind() == kind && matches!(kind.name(), "std" | "mio" | "uring" | "glommio")
}

/// One round of `kind` on `spec`'s phase: its servers started, the
/// balanced load over them (the killed server killed at a quarter of the
/// window and restarted at half), the servers stopped.
pub fn run(exe: &Path, kind: BackendKind, spec: &Spec, plan: &Timing) -> Result<(Sample, Vec<PerServer>), String> {
    let phase = spec.phase.ok_or("a spread configuration names its phase")?;
    let start = |part: Part, addr: &str| {
        let delay = format!("{}us", part.delay().as_micros());
        ChildServer::spawn_at(exe, kind, spec, addr, &["--handler-delay", &delay])
    };
    let mut servers = parts(phase).iter().map(|&part| start(part, "127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    let addrs: Vec<SocketAddr> = servers.iter().map(ChildServer::local_addr).collect();
    let killed = phase == Phase::Killed;
    let victim = Mutex::new(if killed { servers.pop() } else { None });
    let disrupt = |window: Duration| -> Result<(), String> {
        std::thread::sleep(window / 4);
        // Dropping a child server kills it with SIGKILL and reaps it.
        let addr = victim.lock().unwrap_or_else(|p| p.into_inner()).take().map(|s| s.local_addr());
        std::thread::sleep(window / 4);
        if let Some(addr) = addr {
            let restarted = start(Part::Killed, &addr.to_string())?;
            *victim.lock().unwrap_or_else(|p| p.into_inner()) = Some(restarted);
        }
        Ok(())
    };
    let disrupt = killed.then_some(&disrupt as super::balanced::Disrupt<'_>);
    let result = backend::balanced_load(kind, Servers::Addrs(&addrs), spec, &timing(plan), killed, disrupt);
    drop(servers);
    result
}

/// One server of a spread row, over all its rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// What it did: fast, slowed or killed.
    pub part: Part,
    /// Calls it answered in the timed windows.
    pub calls: u64,
    /// Its calls over all servers' calls.
    pub share: f64,
    /// Calls that failed on it in the timed windows.
    pub failed: u64,
    /// Calls it answered that started after its restart (the killed one only).
    pub after_restart: Option<u64>,
    /// The 99th percentile of its calls' latency, over every round.
    pub p99_ns: Option<u64>,
}

/// The shares of `servers` that did `part`, as `33.2%, 33.5%`.
pub fn shares_text(servers: &[Share], part: Part) -> String {
    let shares: Vec<String> =
        servers.iter().filter(|s| s.part == part).map(|s| format!("{:.1}%", 100.0 * s.share)).collect();
    shares.join(", ")
}

/// Calls that failed on any of `servers`.
pub fn failed(servers: &[Share]) -> u64 {
    servers.iter().map(|s| s.failed).sum()
}

/// Calls the killed server answered after its restart, if one was killed.
pub fn after_restart(servers: &[Share]) -> Option<u64> {
    servers.iter().find_map(|s| s.after_restart)
}

/// The shares of a row of `phase` from its rounds' per-server parts.
pub fn shares(phase: Phase, rounds: &[&[PerServer]]) -> Vec<Share> {
    let parts = parts(phase);
    let total: u64 = rounds.iter().flat_map(|r| r.iter()).map(|p| p.calls).sum();
    parts
        .iter()
        .enumerate()
        .map(|(i, &part)| {
            let of = || rounds.iter().filter_map(move |r| r.get(i));
            let mut latency: Histogram<u64> = histogram();
            of().for_each(|p| {
                let _ = latency.add(&p.latency);
            });
            let calls = of().map(|p| p.calls).sum();
            Share {
                part,
                calls,
                share: calls as f64 / total.max(1) as f64,
                failed: of().map(|p| p.failed_in_window).sum(),
                after_restart: (part == Part::Killed).then(|| of().map(|p| p.after_disruption).sum()),
                p99_ns: (!latency.is_empty()).then(|| latency.value_at_quantile(0.99)),
            }
        })
        .collect()
}
