//! The rounds: every group of the plan measured `rounds` times, its
//! entrants one after the other in an order that rotates from round to
//! round, then once more each to count allocations; then the rows, each
//! paired round by round with its floor, summarised, and judged.
//!
//! Why rounds, and why in this order (Kalibera and Jones, "Rigorous
//! benchmarking in reasonable time"): on a shared two-core machine the
//! largest source of variation is not within a window but between
//! windows: a neighbour's burst, the host moving a vCPU, the CPU's clock.
//! One long window per row gives each row one draw of that variation, and
//! rows compared with each other different draws. Several short windows
//! per row, taken in turn with the rows they are compared with, give each
//! row many draws, and put each draw on every row of a round alike; the
//! ratio of two rows measured in the same round cancels what the round
//! shared. Rotating the order keeps any row from always running first
//! (cold caches, a freshly idle machine) or last.

use super::env::{self, Machine};
use super::measure::{self, Measured};
use super::plan::{Entrant, Event, Group, Plan};
use super::row::{self, Round, Row};
use super::sample::{Mode, Sample};
use super::workload::{Phase, Role, Spec, Workload};

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
    for spec in &plan.specs {
        if let Some(reason) = super::plan::cannot_hold(spec) {
            progress(Event::Skipped { backend: "every backend", spec: Some(spec), reason: &reason });
        }
    }
    for spec in plan.specs.iter().filter(|s| s.workload == Workload::Sweep) {
        for &kind in &runnable {
            if let Some(reason) = super::sweep::cannot_hold(kind.name(), spec.connections) {
                progress(Event::Skipped { backend: kind.name(), spec: Some(spec), reason: &reason });
            }
        }
    }
    let mut rows = Vec::new();
    for group in plan.groups(&runnable) {
        rows.extend(measure_group(plan, &group, &machine, progress));
    }
    rows
}

/// The configuration an entrant of `group` is measured on: the floors on
/// the plaintext one (they speak plain TCP).
fn spec_of(group: &Group, index: usize, entrant: Entrant) -> Spec {
    let spec = &group.specs[index];
    match entrant {
        Entrant::Floor | Entrant::Ideal => Spec { tls: None, ..spec.clone() },
        _ => spec.clone(),
    }
}

/// What an entrant's runs gave so far.
#[derive(Default)]
struct Runs {
    rounds: Vec<(Round, Measured)>,
    counted: Option<Sample>,
    failed: bool,
}

/// Every round of one group, then its rows.
fn measure_group(plan: &Plan, group: &Group, machine: &Machine, progress: &mut dyn FnMut(Event<'_>)) -> Vec<Row> {
    let n = group.entrants.len();
    let specs: Vec<Spec> = group.entrants.iter().map(|&(i, e)| spec_of(group, i, e)).collect();
    let mut runs: Vec<Runs> = (0..n).map(|_| Runs::default()).collect();
    let remaining = |e: usize, spec: &Spec, done: usize| {
        plan.rounds.saturating_sub(done) + usize::from(group.entrants[e].1.counts_allocations(spec))
    };
    for round in 0..=plan.rounds {
        // The last pass counts allocations, in the rotated order too.
        let mode = if round < plan.rounds { Mode::Timed } else { Mode::Counted };
        for position in 0..n {
            let e = (round + position) % n;
            let (entrant, spec) = (group.entrants[e].1, &specs[e]);
            if runs[e].failed || (mode == Mode::Counted && !entrant.counts_allocations(spec)) {
                continue;
            }
            let backend = entrant.name();
            progress(Event::Start { backend, spec, round: (mode == Mode::Timed).then_some(round) });
            match measure::once(plan, spec, entrant, mode) {
                Ok(measured) if mode == Mode::Counted => runs[e].counted = Some(measured.sample),
                Ok(measured) => {
                    let mut r = Round::new(position, &measured.sample);
                    if measured.process.is_some() {
                        r.server_cpu_ns_per_op =
                            measured.sample.counted.map(|ns| ns as f64 / measured.sample.ops.max(1) as f64);
                    }
                    runs[e].rounds.push((r, measured));
                }
                Err(reason) => {
                    runs[e].failed = true;
                    let runs = remaining(e, spec, round).saturating_sub(1);
                    progress(Event::Failed { backend, spec, reason: &reason, runs });
                    continue;
                }
            }
            if !matches!(entrant, Entrant::Ideal) {
                progress(Event::Measured);
            }
        }
    }
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for (e, run) in runs.into_iter().enumerate() {
        if run.failed || run.rounds.is_empty() {
            continue;
        }
        let (index, entrant) = group.entrants[e];
        let spec = &specs[e];
        let (rounds, measured): (Vec<Round>, Vec<Measured>) = run.rounds.into_iter().unzip();
        let process = measured.iter().any(|m| m.process.is_some());
        let env = machine.env(layout(entrant, spec), !process);
        let timed: Vec<&Sample> = measured.iter().map(|m| &m.sample).collect();
        let mut row = Row::from_rounds(entrant.name(), spec, rounds, &timed, run.counted.as_ref(), env);
        row.server_rss_bytes = measured.iter().filter_map(|m| m.process.flatten()).max();
        if let Some(phase) = spec.phase {
            let servers: Vec<&[_]> = measured.iter().filter_map(|m| m.servers.as_deref()).collect();
            row.servers = Some(super::spread::shares(phase, &servers));
        }
        rows.push((index, row));
    }
    if let Some(floor) = rows.iter().find(|(_, r)| r.backend == row::FLOOR).map(|(_, r)| r.clone()) {
        for (_, row) in rows.iter_mut().filter(|(_, r)| r.backend != row::FLOOR) {
            row.pair_with(&floor);
        }
    }
    // A spread row's reference is its own client over the two fast
    // servers alone, measured in the same rounds.
    let two = Phase::Two.name();
    let references: Vec<Row> = rows.iter().filter(|(_, r)| r.workload == two).map(|(_, r)| r.clone()).collect();
    for (_, row) in rows.iter_mut().filter(|(_, r)| Phase::is_phase(&r.workload) && r.workload != two) {
        if let Some(reference) = references.iter().find(|r| r.backend == row.backend) {
            row.pair_with(reference);
        }
    }
    for (_, row) in &mut rows {
        row.summarize();
    }
    for index in 0..group.specs.len() {
        let mut same: Vec<&mut Row> = rows.iter_mut().filter(|(i, _)| *i == index).map(|(_, r)| r).collect();
        row::judge(&mut same);
    }
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    rows.iter().for_each(|r| progress(Event::Done(r)));
    rows
}

/// The thread layout of an entrant's rows.
fn layout(entrant: Entrant, spec: &Spec) -> String {
    match entrant {
        Entrant::Floor | Entrant::Ideal if spec.role == Role::Both => env::floor_layout(spec.workload),
        Entrant::Floor | Entrant::Ideal => env::floor_pair_layout(spec.depth),
        Entrant::Backend(kind) if spec.workload == Workload::Spread => format!(
            "servers: {}, each in a process of its own; load: {} balanced client, a thread per call in flight",
            env::server_layout(kind),
            kind.client_kind()
        ),
        Entrant::Backend(kind) if spec.workload == Workload::Sweep => {
            format!("server: {}; load: one thread, an event loop (mio) over every connection", env::server_layout(kind))
        }
        Entrant::Backend(kind) if spec.role == Role::Both => env::layout(kind, spec.workload),
        Entrant::Backend(kind) => env::role_layout(kind, spec.role),
        #[cfg(feature = "peers")]
        Entrant::Peer(peer) => format!("{}; load: {}", peer.layout(), env::async_load(&format!("{peer} client"))),
        Entrant::ByHand(model) => {
            format!(
                "server: {}, in a process of its own; load: the blaster, a thread per connection",
                env::by_hand_layout(model)
            )
        }
    }
}
