//! The workloads of `measuring.md` and one measurement's parameters.

use std::fmt;
use std::str::FromStr;

use fastwire_proto::{ClientConfig, Compression, Limits, ProtocolConfig, ServerConfig};

/// One of the workloads every backend is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// fastrpc's own benchmark: empty name, value `foobar`, the 261-byte
    /// body back; many calls in flight on few connections.
    Fastrpc,
    /// One connection, one caller, one call in flight: latency.
    Pingpong,
    /// Echo of values of 16 B, 1 KiB, 64 KiB and 1 MiB.
    Sizes,
    /// Fire-and-forget requests (id 0), counted when the server handled them.
    Nowait,
    /// Many mostly idle connections, called at a fixed total rate (open loop).
    Conns,
    /// Each call waits 1 ms on a timer in the server (without blocking it):
    /// 2 connections x 100 in flight, so the ideal is 200,000 calls/s.
    Wait,
    /// Each call burns 20 µs of CPU in the handler: the ideal is one call
    /// per 20 µs per core.
    Cpu,
    /// 1% of calls wait 10 ms in the server, the rest are instant; latency
    /// is the instant calls' alone, to show head-of-line blocking.
    Mixed,
    /// The same load as `mixed` without the slow calls: its baseline.
    MixedBase,
    /// Each server under an event-driven load at 1 to 10,000 connections,
    /// one 100-byte echo call in flight on each (not in the default run).
    Sweep,
    /// New connections: connect, handshake (TLS too, with `--tls`), one
    /// call, close; `connections` dialers at once. An operation is a whole
    /// connection, so ops/s is handshakes per second.
    Handshakes,
    /// The balanced client over three servers of its backend, each in a
    /// process of its own, in the [`Phase`]s of a fleet's life: all equal,
    /// one ten times slower, one killed and restarted mid-run; beside the
    /// same client over the two fast servers alone (not in the default run).
    Spread,
}

/// What the servers of one `spread` configuration do (see
/// [`super::spread`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Two servers, both fast: the reference of the other phases.
    Two,
    /// Three servers, all alike.
    Equal,
    /// Three servers, one with a handler delay ten times the others'.
    Slowed,
    /// Three servers, one killed (SIGKILL) a quarter into the window and
    /// restarted on its address at half of it.
    Killed,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 4] = [Phase::Two, Phase::Equal, Phase::Slowed, Phase::Killed];

    /// Whether `workload`, a row's, is a phase's (`spread-...`).
    pub fn is_phase(workload: &str) -> bool {
        Phase::ALL.iter().any(|p| p.name() == workload)
    }

    /// The phase's name in a row's workload (`spread-slowed`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Two => "spread-two",
            Phase::Equal => "spread-equal",
            Phase::Slowed => "spread-slowed",
            Phase::Killed => "spread-killed",
        }
    }
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 12] = [
        Workload::Fastrpc,
        Workload::Pingpong,
        Workload::Sizes,
        Workload::Nowait,
        Workload::Conns,
        Workload::Wait,
        Workload::Cpu,
        Workload::Mixed,
        Workload::MixedBase,
        Workload::Sweep,
        Workload::Handshakes,
        Workload::Spread,
    ];

    /// The time a `wait` call waits in the server.
    pub const WAIT: std::time::Duration = std::time::Duration::from_millis(1);
    /// The CPU time a `cpu` call burns in the server.
    pub const WORK: std::time::Duration = std::time::Duration::from_micros(20);
    /// One `mixed` call in this many is slow.
    pub const SLOW_EVERY: u64 = 100;
    /// How long a slow `mixed` call waits in the server.
    pub const SLOW: std::time::Duration = std::time::Duration::from_millis(10);

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fastrpc => "fastrpc",
            Workload::Pingpong => "pingpong",
            Workload::Sizes => "sizes",
            Workload::Nowait => "nowait",
            Workload::Conns => "conns",
            Workload::Wait => "wait",
            Workload::Cpu => "cpu",
            Workload::Mixed => "mixed",
            Workload::MixedBase => "mixed-base",
            Workload::Sweep => "sweep",
            Workload::Handshakes => "handshakes",
            Workload::Spread => "spread",
        }
    }

    /// The value size of the sweep's calls.
    pub const SWEEP_VALUE: usize = 100;

    /// The value sizes of the `sizes` workload.
    pub const SIZES: [usize; 4] = [16, 1024, 64 * 1024, 1024 * 1024];

    /// The default connections, depth, value sizes and rate of this workload
    /// (`measuring.md`; `conns` in one process is held to 1,000 connections:
    /// client and server each need a descriptor per connection, and the
    /// limit here is 20,000 per process. Use `fastwire load` for 10,000).
    pub fn defaults(self) -> Spec {
        let base = Spec {
            workload: self,
            connections: 2,
            depth: 1000,
            value_size: FASTRPC_VALUE.len(),
            compress: Compression::None,
            rate: None,
            sniff: Vec::new(),
            version: 0,
            role: Role::Both,
            tls: None,
            check_replies: true,
            call_timeout: std::time::Duration::from_secs(30),
            phase: None,
        };
        match self {
            Workload::Fastrpc => base,
            Workload::Pingpong => Spec { connections: 1, depth: 1, value_size: 1, ..base },
            Workload::Sizes => Spec { connections: 1, depth: 8, value_size: Workload::SIZES[0], ..base },
            Workload::Nowait => Spec { depth: 1, ..base },
            Workload::Conns => Spec { connections: 1000, depth: 1, rate: Some(20_000.0), ..base },
            Workload::Wait | Workload::Cpu | Workload::Mixed | Workload::MixedBase => Spec { depth: 100, ..base },
            Workload::Sweep => {
                Spec { connections: 1, depth: 1, value_size: Workload::SWEEP_VALUE, role: Role::Server, ..base }
            }
            Workload::Handshakes => Spec { connections: 2, depth: 1, value_size: 1, ..base },
            // One caller thread per call in flight (the balanced client is
            // the blocking backends').
            Workload::Spread => Spec { connections: 1, depth: 8, phase: Some(Phase::Equal), ..base },
        }
    }

    /// Whether calls are fire-and-forget (no response, no latency).
    pub fn is_fire_and_forget(self) -> bool {
        self == Workload::Nowait
    }

    /// For `mixed`: one call in this many is slow (`None`: all are alike).
    pub fn slow_every(self) -> Option<u64> {
        (self == Workload::Mixed).then_some(Workload::SLOW_EVERY)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload {s:?}: the workloads are {}", names.join(", "))
        })
    }
}

/// What a measurement measures: a backend's server and client together, or
/// one of them against a floor peer (see [`super::floor_pair`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The backend's client against its own server (one row each, as always).
    #[default]
    Both,
    /// The backend's server, loaded by the blaster.
    Server,
    /// The backend's client, against the floor server.
    Client,
}

impl Role {
    /// Every role, in report order.
    pub const ALL: [Role; 3] = [Role::Both, Role::Server, Role::Client];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Both => "both",
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role {s:?}: the roles are both, server, client"))
    }
}

/// The value of fastrpc's benchmark request.
pub const FASTRPC_VALUE: &[u8] = b"foobar";

/// The name the demo handler answers with the value it was sent, prefixed
/// by `re:` (any non-empty name does).
pub const ECHO_NAME: &[u8] = b"echo";

/// One measurement's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The workload.
    pub workload: Workload,
    /// Client connections.
    pub connections: usize,
    /// Calls in flight per connection (closed loop), or callers per
    /// connection (open loop).
    pub depth: usize,
    /// Bytes of each request's value.
    pub value_size: usize,
    /// Compression both sides use.
    pub compress: Compression,
    /// Open loop: calls per second over all connections. `None`: closed loop.
    pub rate: Option<f64>,
    /// The sniff header both sides send first (fastrpc's default: none).
    pub sniff: Vec<u8>,
    /// The protocol version byte (fastrpc's default: 0).
    pub version: u8,
    /// Server and client together, or one of them against a floor peer.
    pub role: Role,
    /// TLS on both sides (`None`: plaintext).
    pub tls: Option<crate::tls::SpecTls>,
    /// Check every reply against the demo service's answer (on by default;
    /// off to load a service other than fastwire's demo).
    pub check_replies: bool,
    /// Each call's deadline: a call not answered within it fails the run.
    pub call_timeout: std::time::Duration,
    /// The phase of a `spread` configuration (`None` for the others).
    pub phase: Option<Phase>,
}

impl Spec {
    /// The workload's name in rows and reports: a `spread` configuration's
    /// is its phase's (`spread-slowed`).
    pub fn workload_name(&self) -> &'static str {
        self.phase.map_or(self.workload.name(), Phase::name)
    }

    /// The request this workload sends: fastrpc's benchmark request for
    /// `fastrpc`, `nowait` and `conns`; an echo of `value_size` bytes for
    /// `pingpong` and `sizes`.
    pub fn request(&self) -> (Vec<u8>, Vec<u8>) {
        match self.workload {
            Workload::Pingpong | Workload::Sizes | Workload::Sweep | Workload::Handshakes => {
                (ECHO_NAME.to_vec(), vec![b'x'; self.value_size])
            }
            _ => (Vec::new(), FASTRPC_VALUE.to_vec()),
        }
    }

    /// What every reply to a call of `name` with `value` must be when
    /// replies are checked ([`check_replies`](Self::check_replies)): the
    /// demo service's answer (see [`fastwire_proto::demo_handler`]).
    pub fn expected_reply(&self, name: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        self.check_replies.then(|| {
            if name.is_empty() {
                fastwire_proto::FASTRPC_BENCH_BODY.to_vec()
            } else {
                [&b"re:"[..], value].concat()
            }
        })
    }

    /// Limits that let the largest `sizes` value (1 MiB, echoed with a
    /// 3-byte prefix) through on both sides.
    pub fn limits() -> Limits {
        Limits { max_name_len: 1024, max_value_len: 2 * 1024 * 1024 }
    }

    /// The protocol settings of both sides.
    pub fn protocol(&self) -> ProtocolConfig {
        ProtocolConfig {
            compression: self.compress,
            limits: Spec::limits(),
            sniff_header: self.sniff.clone(),
            protocol_version: self.version,
            ..ProtocolConfig::default()
        }
    }

    /// The request of a slow `mixed` call: it asks the demo service to wait
    /// [`Workload::SLOW`] (see [`crate::demo`]).
    pub fn slow_request(&self) -> (Vec<u8>, Vec<u8>) {
        let name = [crate::demo::WAIT_PREFIX, Workload::SLOW.as_micros().to_string().as_bytes()].concat();
        (name, FASTRPC_VALUE.to_vec())
    }

    /// How the demo service behaves for this workload (waits for `wait`,
    /// work for `cpu`; slow `mixed` calls ask for their own wait).
    pub fn demo(&self) -> crate::demo::Demo {
        match self.workload {
            Workload::Wait => crate::demo::Demo { delay: Some(Workload::WAIT), work: None },
            Workload::Cpu => crate::demo::Demo { delay: None, work: Some(Workload::WORK) },
            _ => crate::demo::Demo::default(),
        }
    }

    /// The server's configuration for this measurement.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            protocol: self.protocol(),
            // Enough room for every connection of the `conns` workload and
            // for 1000 calls in flight per connection without pausing reads.
            max_connections: 20_000,
            max_in_flight: self.depth.max(1000) * 2,
            tls: self.tls.as_ref().and_then(|tls| tls.server.clone()),
            ..ServerConfig::default()
        }
    }

    /// The clients' configuration for this measurement.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            protocol: self.protocol(),
            max_pending: self.depth.max(1000) * 2,
            call_timeout: self.call_timeout,
            tls: self.tls.as_ref().map(|tls| tls.client.clone()),
            ..ClientConfig::default()
        }
    }

    /// Bytes of the response value each call brings back (what MB/s counts),
    /// for a server running the demo handler.
    pub fn response_size(&self) -> usize {
        match self.workload {
            Workload::Pingpong | Workload::Sizes | Workload::Sweep | Workload::Handshakes => 3 + self.value_size,
            Workload::Nowait => 0,
            _ => fastwire_proto::FASTRPC_BENCH_BODY.len(),
        }
    }
}
