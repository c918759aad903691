//! What `compare` will measure: the plan, and the groups of entrants that
//! are measured side by side in each round.
//!
//! A group is every configuration that shares a floor: one workload, role,
//! connection count, depth, value size and compression, in plaintext and
//! over TLS (or a `spread`'s phases, which share their reference). Its
//! entrants (the floor, the ideal, each backend, each peer) are measured
//! one after the other in every round, so that the floor a row is divided
//! by was measured minutes, not a run, away.

use super::workload::{Role, Spec, Workload};
use crate::backend::BackendKind;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The backends, in report order.
    pub backends: Vec<BackendKind>,
    /// The workload configurations, in report order.
    pub specs: Vec<Spec>,
    /// Warm-up and window lengths of one round.
    pub timing: super::Timing,
    /// How many rounds each configuration is measured in.
    pub rounds: usize,
    /// Whether to measure the floors (pingpong and fastrpc, uncompressed).
    pub floors: bool,
    /// Run servers under the blaster (`--role server`) as child processes,
    /// to report their own CPU time per call and memory.
    pub processes: bool,
    /// Add the peers (tarpc, tonic, the codec echo) where they apply; a build
    /// without the `peers` feature measures none.
    pub peers: bool,
    /// Add the small servers written by hand (`fastwire_by_hand`) to the
    /// server rows they can serve (uncompressed plaintext, default handshake).
    pub by_hand: bool,
    /// The `fastwire` binary, for servers in processes of their own
    /// (`processes`, and the sweep's largest points). `None`: none can run.
    pub server_exe: Option<std::path::PathBuf>,
}

/// One thing measured in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entrant {
    /// The floor of the configuration: for `both`, the hand-written
    /// exchange with no protocol; for `server` and `client`, the floor
    /// pair (blaster against floor server).
    Floor,
    /// The computed ideal of `wait` and `cpu` (shown as their floor).
    Ideal,
    /// A backend (its client and server, its server alone or its client alone).
    Backend(BackendKind),
    /// A peer stack, client and server.
    #[cfg(feature = "peers")]
    Peer(super::peers::Peer),
    /// A small server written by hand, alone under the blaster, in a
    /// process of its own.
    ByHand(fastwire_by_hand::Model),
}

impl Entrant {
    /// The row's backend name.
    pub fn name(&self) -> &'static str {
        match self {
            Entrant::Floor | Entrant::Ideal => super::row::FLOOR,
            Entrant::Backend(kind) => kind.name(),
            #[cfg(feature = "peers")]
            Entrant::Peer(peer) => peer.name(),
            Entrant::ByHand(model) => model.row_name(),
        }
    }

    /// Whether it has a separate run that counts allocations.
    pub fn counts_allocations(&self, spec: &Spec) -> bool {
        !matches!(self, Entrant::Ideal) && !matches!(spec.workload, Workload::Sweep | Workload::Spread)
    }
}

/// Configurations measured together, round by round.
#[derive(Clone, Debug)]
pub struct Group {
    /// The configurations, in report order (plaintext before TLS).
    pub specs: Vec<Spec>,
    /// Each entrant with the index of its configuration in `specs`; the
    /// floor's is the group's plaintext configuration.
    pub entrants: Vec<(usize, Entrant)>,
}

/// The floor that goes with a configuration, if any: the measured one of
/// `pingpong` and `fastrpc` (uncompressed; a TLS row is divided by the
/// plaintext floor: the floor is plain TCP, the machine's limit either way).
pub fn floor_of(spec: &Spec) -> Option<Workload> {
    match spec.workload {
        Workload::Pingpong | Workload::Fastrpc if spec.compress == fastwire_proto::Compression::None => {
            Some(spec.workload)
        }
        _ => None,
    }
}

/// Why this process cannot hold `spec`'s connections under its limit on
/// open files, if it cannot: a descriptor per connection on each end when
/// the server is in this process (on the load's end only from the sweep's
/// [`PROCESS_FROM`](super::sweep::PROCESS_FROM), whose server has a process
/// of its own), and some to spare.
pub fn cannot_hold(spec: &Spec) -> Option<String> {
    let ends = if spec.workload == Workload::Sweep && spec.connections >= super::sweep::PROCESS_FROM { 1 } else { 2 };
    let needed = (ends * spec.connections + 64) as u64;
    let limit = fastwire_common::limits::open_files_limit().ok()?;
    limit.fits(needed, &format!("{} with {} connections", spec.workload, spec.connections)).err()
}

/// Whether the small servers by hand can serve `spec`: its server alone,
/// plain uncompressed fastrpc with the default handshake.
fn by_hand_serves(spec: &Spec) -> bool {
    let protocol = spec.protocol();
    spec.role == Role::Server
        && spec.workload != Workload::Sweep
        && spec.tls.is_none()
        && protocol.compression == fastwire_proto::Compression::None
        && protocol.sniff_header.is_empty()
        && protocol.protocol_version == 0
}

impl Plan {
    /// The groups, in the order of the configurations; `runnable` are the
    /// backends that can run on this machine. A configuration this process
    /// cannot hold ([`cannot_hold`]) is left out.
    pub fn groups(&self, runnable: &[BackendKind]) -> Vec<Group> {
        let key =
            |s: &Spec| (s.workload, s.role, s.connections, s.depth, s.value_size, s.compress, s.rate.map(f64::to_bits));
        let mut groups: Vec<Group> = Vec::new();
        for spec in self.specs.iter().filter(|s| cannot_hold(s).is_none()) {
            match groups.iter_mut().find(|g| key(&g.specs[0]) == key(spec)) {
                Some(g) => g.specs.push(spec.clone()),
                None => groups.push(Group { specs: vec![spec.clone()], entrants: Vec::new() }),
            }
        }
        for group in &mut groups {
            group.specs.sort_by_key(|s| s.tls.is_some());
            let plain = &group.specs[0];
            if self.floors && !matches!(plain.workload, Workload::Sweep | Workload::Spread) {
                if matches!(plain.workload, Workload::Wait | Workload::Cpu) && plain.role == Role::Both {
                    group.entrants.push((0, Entrant::Ideal));
                }
                let measured = match plain.role {
                    Role::Both => floor_of(plain).is_some(),
                    _ => super::floor_pair::check(plain).is_ok(),
                };
                if measured {
                    group.entrants.push((0, Entrant::Floor));
                }
            }
            for (i, spec) in group.specs.iter().enumerate() {
                for &kind in runnable {
                    let takes_part = match spec.role {
                        _ if spec.workload == Workload::Sweep => {
                            super::sweep::cannot_hold(kind.name(), spec.connections).is_none()
                        }
                        _ if spec.workload == Workload::Spread => super::spread::balances(kind),
                        Role::Both => true,
                        // A load shape of a client: its server is the plain backend's.
                        Role::Server => !kind.caller_tasks(),
                        // One row per client and load shape (the per-core and
                        // reuse-port layouts are server layouts).
                        Role::Client => kind.has_client_row(),
                    };
                    if takes_part {
                        group.entrants.push((i, Entrant::Backend(kind)));
                    }
                }
                if self.by_hand && by_hand_serves(spec) {
                    for model in fastwire_by_hand::Model::ALL.into_iter().filter(|m| m.unavailable().is_none()) {
                        group.entrants.push((i, Entrant::ByHand(model)));
                    }
                }
                #[cfg(feature = "peers")]
                if self.peers && super::peers::applies(spec).is_ok() {
                    for peer in super::peers::Peer::ALL {
                        group.entrants.push((i, Entrant::Peer(peer)));
                    }
                }
            }
        }
        groups
    }

    /// The runs this plan makes, for a progress bar: each entrant once a
    /// round, and once more to count allocations.
    pub fn len(&self) -> usize {
        let runnable: Vec<BackendKind> = self.backends.iter().copied().filter(|k| k.unavailable().is_none()).collect();
        self.groups(&runnable)
            .iter()
            .flat_map(|g| g.entrants.iter().map(move |(i, e)| (&g.specs[*i], e)))
            .map(|(spec, e)| match e {
                Entrant::Ideal => 0,
                _ => self.rounds + usize::from(e.counts_allocations(spec)),
            })
            .sum()
    }

    /// Whether the plan measures nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`compare`](super::rounds::compare) reports as it goes.
pub enum Event<'a> {
    /// A run starts.
    Start {
        /// Backend or `floor`.
        backend: &'a str,
        /// Its configuration.
        spec: &'a Spec,
        /// The round (`None`: the run that counts allocations).
        round: Option<usize>,
    },
    /// A run finished.
    Measured,
    /// A row is complete: every round, its summary and verdict.
    Done(&'a super::Row),
    /// A backend cannot run on this machine (`spec: None`), or cannot run
    /// one configuration here (the sweep's largest points for std): not a
    /// failure, and its runs were never counted.
    Skipped {
        /// Backend or `floor`.
        backend: &'a str,
        /// The configuration it cannot run, if it is one.
        spec: Option<&'a Spec>,
        /// Why.
        reason: &'a str,
    },
    /// A measurement failed: the row is left out, and `compare` fails.
    Failed {
        /// Backend or `floor`.
        backend: &'a str,
        /// Its configuration.
        spec: &'a Spec,
        /// Why.
        reason: &'a str,
        /// The runs it will not make (for a progress bar).
        runs: usize,
    },
}
