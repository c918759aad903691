//! A row: one backend (or floor, or peer) on one configuration, made from
//! its rounds. The rounds are kept whole (the JSON has every one); the
//! row's headline figures are their medians, each with its interval
//! ([`stats`]), its ratio to the floor of the same round,
//! and its verdict against the best of its workload and role.

use serde::{Deserialize, Serialize};

use super::env::Env;
use super::sample::Sample;
use super::stats::{self, Interval, Spread, Verdict};
use super::workload::Spec;

/// One measurement: a backend (or a floor) on one workload configuration,
/// over several rounds. Serialised with exactly the keys `fastwire compare
/// --json` promises.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Backend name, or `floor` for a reference without protocol.
    pub backend: String,
    /// Workload name.
    pub workload: String,
    /// `both` (a backend's client and server together), `server` (its
    /// server, loaded by the blaster) or `client` (its client, against the
    /// floor server).
    pub role: String,
    /// Client connections.
    pub connections: usize,
    /// Calls in flight per connection.
    pub depth: usize,
    /// Bytes of each request's value.
    pub value_size: usize,
    /// Compression: none, flate or snappy; `+tls` when the run used TLS.
    pub compress: String,
    /// Operations in all the timed windows together.
    pub ops: u64,
    /// Responses the server sent for no call in progress, over the timed
    /// runs (a correct server sends none; `fastwire load` fails on any).
    pub unsolicited: u64,
    /// The timed windows' length, together.
    pub seconds: f64,
    /// Inverse throughput, window / operations: the median over rounds.
    pub ns_per_op: f64,
    /// Response value megabytes (1e6) per second: the median over rounds.
    pub mb_per_s: f64,
    /// Whole-process allocations per operation, from a separate counted run.
    pub allocs_per_op: Option<f64>,
    /// Median call latency: the median over rounds of each round's.
    pub p50_ns: Option<u64>,
    /// 99th percentile call latency, likewise.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile call latency, likewise.
    pub p999_ns: Option<u64>,
    /// The slowest call of any round (in the table, not in the JSON's fixed key set).
    #[serde(skip)]
    pub max_ns: Option<u64>,
    /// The server's own CPU time per call, when it ran in a process of its
    /// own (`--processes`): the median over rounds.
    pub server_cpu_ns_per_op: Option<f64>,
    /// The server process's resident memory after its load (`--processes`),
    /// the largest of its rounds.
    pub server_rss_bytes: Option<u64>,
    /// Each round, in the order measured.
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// Medians and intervals over the rounds (`None` in results published
    /// before rounds existed).
    #[serde(default)]
    pub summary: Option<Summary>,
    /// Where it stands against the best of its configuration (`None` for
    /// the floors).
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// A `spread` row's servers: each one's part, calls, share and
    /// failures (`None` for other workloads).
    #[serde(default)]
    pub servers: Option<Vec<super::spread::Share>>,
    /// Where, when and how it was measured.
    pub env: Env,
}

/// One round of a row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Round {
    /// Its place in the round's order (0: measured first).
    pub position: usize,
    /// Operations in the window.
    pub ops: u64,
    /// The window's length.
    pub seconds: f64,
    /// Window over operations.
    pub ns_per_op: f64,
    /// Response value megabytes (1e6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles of this round's calls.
    pub p50_ns: Option<u64>,
    /// 99th percentile.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile.
    pub p999_ns: Option<u64>,
    /// This round's figure over the floor's figure of the same round.
    pub vs_floor: Option<f64>,
    /// The server process's CPU time per call, when it had a process.
    pub server_cpu_ns_per_op: Option<f64>,
}

/// A row's rounds, summarised.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Which figure the floor ratio, the spread and the verdict are about:
    /// `p50` (pingpong), `p99` (conns, mixed, spread) or `ns/op`.
    pub figure: String,
    /// ns/op over rounds.
    pub ns_per_op: Interval,
    /// p50 over rounds.
    pub p50_ns: Option<Interval>,
    /// p99 over rounds.
    pub p99_ns: Option<Interval>,
    /// p99.9 over rounds.
    pub p999_ns: Option<Interval>,
    /// The paired ratio to the floor over rounds.
    pub vs_floor: Option<Interval>,
    /// Whether the figure's interval is narrow enough to rank on.
    pub spread: Spread,
}

/// The figure a workload is about, by name: latency at one call in flight
/// (`pingpong`), the tail for the workloads about waiting (`conns`, open
/// loop at a fixed rate, `mixed`, head-of-line blocking, and `spread`, a
/// slow or dead server's calls), inverse throughput for the rest.
pub fn figure_name(workload: &str) -> &'static str {
    match workload {
        "pingpong" => "p50",
        "conns" | "mixed" => "p99",
        w if super::workload::Phase::is_phase(w) => "p99",
        _ => "ns/op",
    }
}

impl Round {
    /// This round's value of `figure` (see [`figure_name`]).
    pub fn figure(&self, figure: &str) -> f64 {
        let ns = |n: Option<u64>| n.map_or(f64::NAN, |n| n as f64);
        match figure {
            "p50" => ns(self.p50_ns),
            "p99" => ns(self.p99_ns),
            _ => self.ns_per_op,
        }
    }
}

fn percentile(sample: &Sample, q: f64) -> Option<u64> {
    sample.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q))
}

impl Round {
    /// A round from its timed sample, measured at `position` in its round
    /// (its server's CPU time, when it had a process, is the caller's to add).
    ///
    /// A window in which no call completed (the machine or the backend
    /// stalled for all of it) has no figure of its own, but it says that
    /// every call in flight took longer than the window: the round keeps
    /// the window's length as its time per call and its percentiles, a
    /// lower bound, so that it counts as the row's slowest round instead of
    /// being left out ([`Round::stalled`]).
    pub fn new(position: usize, timed: &Sample) -> Round {
        let window_ns = (timed.seconds * 1e9).round();
        let (ns_per_op, bound) = match timed.ops {
            0 => (window_ns, Some(window_ns as u64)),
            _ => (timed.ns_per_op(), None),
        };
        let at = |q: f64| percentile(timed, q).or(bound);
        Round {
            position,
            ops: timed.ops,
            seconds: timed.seconds,
            ns_per_op,
            mb_per_s: timed.mb_per_s(),
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            p999_ns: at(0.999),
            vs_floor: None,
            server_cpu_ns_per_op: None,
        }
    }

    /// Whether no call completed in the round's window: its figures are
    /// the window's length, a lower bound (see [`Round::new`]).
    pub fn stalled(&self) -> bool {
        self.ops == 0
    }
}

impl Row {
    /// A row from its rounds, their timed samples and, if there was one,
    /// a counted sample. Its medians and summary wait for
    /// [`Row::summarize`], once the floor's rounds have given each round
    /// its ratio.
    pub fn from_rounds(
        backend: &str,
        spec: &Spec,
        rounds: Vec<Round>,
        timed: &[&Sample],
        counted: Option<&Sample>,
        env: Env,
    ) -> Row {
        Row {
            backend: backend.to_owned(),
            workload: spec.workload_name().to_owned(),
            role: spec.role.name().to_owned(),
            connections: spec.connections,
            depth: spec.depth,
            value_size: spec.value_size,
            compress: if spec.tls.is_some() {
                format!("{}+tls", spec.compress.name())
            } else {
                spec.compress.name().to_owned()
            },
            ops: rounds.iter().map(|r| r.ops).sum(),
            unsolicited: timed.iter().map(|s| s.unsolicited).sum(),
            seconds: rounds.iter().map(|r| r.seconds).sum(),
            ns_per_op: f64::NAN,
            mb_per_s: f64::NAN,
            allocs_per_op: counted.and_then(Sample::allocs_per_op),
            p50_ns: None,
            p99_ns: None,
            p999_ns: None,
            max_ns: timed.iter().filter_map(|s| s.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.max())).max(),
            server_cpu_ns_per_op: None,
            server_rss_bytes: None,
            rounds,
            summary: None,
            verdict: None,
            servers: None,
            env,
        }
    }

    /// The figure this row's floor ratio and verdict are about.
    pub fn figure_name(&self) -> &'static str {
        figure_name(&self.workload)
    }

    /// Each round's value of the row's figure.
    pub fn figures(&self) -> Vec<f64> {
        let figure = self.figure_name();
        self.rounds.iter().map(|r| r.figure(figure)).collect()
    }

    /// Gives each round its ratio to `floor`'s round of the same index.
    pub fn pair_with(&mut self, floor: &Row) {
        let figure = self.figure_name();
        for (round, f) in self.rounds.iter_mut().zip(&floor.rounds) {
            round.vs_floor = Some(round.figure(figure) / f.figure(figure)).filter(|r| r.is_finite());
        }
    }

    /// The rounds' medians (the row's headline figures) and intervals.
    pub fn summarize(&mut self) {
        let of = |f: &dyn Fn(&Round) -> Option<f64>| {
            Interval::of(&self.rounds.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect::<Vec<_>>())
        };
        let ns_per_op = of(&|r| Some(r.ns_per_op));
        let (p50_ns, p99_ns, p999_ns) = (
            of(&|r| r.p50_ns.map(|n| n as f64)),
            of(&|r| r.p99_ns.map(|n| n as f64)),
            of(&|r| r.p999_ns.map(|n| n as f64)),
        );
        let median = |i: Option<Interval>| i.map_or(f64::NAN, |i| i.median);
        let median_ns = |i: Option<Interval>| i.map(|i| i.median.round() as u64);
        self.ns_per_op = median(ns_per_op);
        self.mb_per_s = median(of(&|r| Some(r.mb_per_s)));
        (self.p50_ns, self.p99_ns, self.p999_ns) = (median_ns(p50_ns), median_ns(p99_ns), median_ns(p999_ns));
        self.server_cpu_ns_per_op = of(&|r| r.server_cpu_ns_per_op).map(|i| i.median);
        let Some(ns_per_op) = ns_per_op else { return };
        let vs_floor = of(&|r| r.vs_floor);
        let figures = self.figures();
        let spread = match Interval::of(&figures) {
            Some(i) => Spread::of(&figures, &i, vs_floor.as_ref()),
            None => Spread::Steady,
        };
        self.summary = Some(Summary {
            figure: self.figure_name().to_owned(),
            ns_per_op,
            p50_ns,
            p99_ns,
            p999_ns,
            vs_floor,
            spread,
        });
    }

    /// The median ratio to the floor, if the row has a floor.
    pub fn vs_floor(&self) -> Option<f64> {
        self.summary.as_ref()?.vs_floor.map(|i| i.median)
    }

    /// Whether `self` and `other` are the same configuration and role.
    pub fn same_configuration(&self, other: &Row) -> bool {
        (&self.workload, &self.role, &self.compress) == (&other.workload, &other.role, &other.compress)
            && (self.connections, self.depth, self.value_size) == (other.connections, other.depth, other.value_size)
    }
}

/// The backend name of floor rows.
pub const FLOOR: &str = "floor";

/// Gives every row of one configuration (floors aside) its verdict
/// against the best of them, from their rounds paired by index.
pub fn judge(rows: &mut [&mut Row]) {
    let (names, figures): (Vec<String>, Vec<Vec<f64>>) =
        rows.iter().filter(|r| r.backend != FLOOR).map(|r| (r.backend.clone(), r.figures())).unzip();
    let entries: Vec<(&str, &[f64])> =
        names.iter().map(String::as_str).zip(figures.iter().map(Vec::as_slice)).collect();
    let mut verdicts = stats::verdicts(&entries).into_iter();
    for row in rows.iter_mut().filter(|r| r.backend != FLOOR) {
        row.verdict = verdicts.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::sample::histogram;

    fn sample(ops: u64, latency_ns: u64) -> Sample {
        let mut latency = histogram();
        for _ in 0..ops {
            latency.record(latency_ns).expect("in bounds");
        }
        Sample {
            ops,
            unsolicited: 0,
            seconds: 0.04,
            bytes: ops * 4,
            latency: Some(latency),
            allocations: None,
            counted: None,
        }
    }

    #[test]
    fn a_round_without_a_completed_call_counts_as_the_slowest() {
        let stalled = Round::new(1, &sample(0, 0));
        assert!(stalled.stalled());
        assert_eq!(stalled.ns_per_op, 40e6);
        assert_eq!(
            (stalled.p50_ns, stalled.p99_ns, stalled.p999_ns),
            (Some(40_000_000), Some(40_000_000), Some(40_000_000))
        );
        let rounds = [Round::new(0, &sample(2000, 15_000)), stalled, Round::new(2, &sample(2500, 14_000))];
        assert!(!rounds[0].stalled());
        for figure in ["p50", "ns/op"] {
            let values: Vec<f64> = rounds.iter().map(|r| r.figure(figure)).collect();
            let interval = Interval::of(&values).expect("three rounds");
            // Kept, and ranked last: the middle round is the slower of the other two.
            assert_eq!(interval.n, 3, "{figure}");
            assert_eq!(interval.high, rounds[1].figure(figure), "{figure}");
            assert_eq!(interval.median, rounds[0].figure(figure), "{figure}");
        }
    }
}
