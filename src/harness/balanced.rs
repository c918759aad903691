//! A load through the balanced client (`fastwire load --addr a,b,c`):
//! `connections x depth` caller threads, each making one call at a time
//! through one [`Balanced`] client over every server, every reply checked,
//! with calls and latency counted per server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fastwire_common::client::Driver;
use fastwire_common::Balanced;
use hdrhistogram::Histogram;

use super::sample::{histogram, Sample, Timing};
use super::workload::Spec;

/// Threads a balanced load may start: one per call in flight.
pub const MAX_CALLERS: usize = 512;

/// One server's part of a balanced run.
#[derive(Debug)]
pub struct PerServer {
    /// The server.
    pub addr: SocketAddr,
    /// Calls it answered in the window.
    pub calls: u64,
    /// Their latencies, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Whether the client counted it up at the end.
    pub up: bool,
    /// Attempts that failed on it over the run (warm-up included), as the
    /// balanced client counted them: a refused connect whose call then went
    /// to another server counts too.
    pub failed: u64,
    /// Calls that failed on it in the window (`failover` runs only; other
    /// runs end at the first).
    pub failed_in_window: u64,
    /// Calls it answered that started after the run's disruption ended
    /// (a restarted server taking calls again); 0 without one.
    pub after_disruption: u64,
}

/// Something done to the servers in the middle of a run (a server killed,
/// then restarted): called at the window's start with the window's length,
/// it returns once it is over, or why it could not be done.
pub type Disrupt<'a> = &'a (dyn Fn(Duration) -> Result<(), String> + Sync);

/// What one caller saw of one server.
struct Seen {
    addr: Option<SocketAddr>,
    /// Latencies of the calls it answered in the window.
    latency: Histogram<u64>,
    calls: u64,
    failed: u64,
    /// Of `calls`, those started after the disruption ended.
    after: u64,
}

/// The index of `addr`'s entry in `mine`, added if new.
fn slot(mine: &mut Vec<Seen>, addr: Option<SocketAddr>) -> usize {
    match mine.iter().position(|seen| seen.addr == addr) {
        Some(i) => i,
        None => {
            mine.push(Seen { addr, latency: histogram(), calls: 0, failed: 0, after: 0 });
            mine.len() - 1
        }
    }
}

/// Runs `spec`'s calls through `client` for `timing`'s warm-up and window.
/// A failed call ends the run with its error (which names the server), as
/// every load does, unless `failover` (servers are being killed on
/// purpose): then it is counted against its server and the run goes on.
/// A wrong reply always ends it. `disrupt`, if given, runs beside the
/// callers from the window's start.
pub fn run<D: Driver>(
    client: &Balanced<D>,
    spec: &Spec,
    timing: &Timing,
    failover: bool,
    disrupt: Option<Disrupt<'_>>,
) -> Result<(Sample, Vec<PerServer>), String> {
    let callers = spec.connections * spec.depth.max(1);
    if callers > MAX_CALLERS {
        return Err(format!(
            "a balanced load makes one thread per call in flight: {} connections x {} in flight is over {MAX_CALLERS} \
             (give --connections and --depth)",
            spec.connections, spec.depth
        ));
    }
    let (name, value) = spec.request();
    let expected = spec.expected_reply(&name, &value);
    let measuring = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    // Calls started after this instant count as after the disruption.
    let disrupted: OnceLock<Instant> = OnceLock::new();
    let (seconds, joined, disruption) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let (name, value, expected) = (&name, &value, &expected);
                let (measuring, stop, disrupted) = (&measuring, &stop, &disrupted);
                s.spawn(move || -> Result<Vec<Seen>, String> {
                    let mut mine: Vec<Seen> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = client.call_and_server(name, value);
                        let took = started.elapsed();
                        let in_window = measuring.load(Ordering::Relaxed);
                        match outcome {
                            Ok((reply, addr)) => {
                                if let Some(expected) = expected {
                                    if reply[..] != expected[..] {
                                        return Err(format!("a wrong reply from {addr}: {} bytes", reply.len()));
                                    }
                                }
                                if in_window {
                                    let i = slot(&mut mine, Some(addr));
                                    let seen = &mut mine[i];
                                    let _ = seen.latency.record(took.as_nanos().max(1) as u64);
                                    seen.calls += 1;
                                    seen.after += u64::from(disrupted.get().is_some_and(|d| started >= *d));
                                }
                            }
                            Err(_) if stop.load(Ordering::Relaxed) => break,
                            Err(e) if !failover => return Err(format!("a call failed: {e}")),
                            Err(e) => {
                                if in_window {
                                    let i = slot(&mut mine, e.server);
                                    mine[i].failed += 1;
                                }
                            }
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        std::thread::sleep(timing.warmup);
        measuring.store(true, Ordering::Relaxed);
        let opened = Instant::now();
        let disruption = disrupt.map(|disrupt| {
            s.spawn(|| {
                let done = disrupt(timing.measure);
                let _ = disrupted.set(Instant::now());
                done
            })
        });
        std::thread::sleep(timing.measure);
        measuring.store(false, Ordering::Relaxed);
        let seconds = opened.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let joined: Vec<_> = threads.into_iter().map(|t| t.join().expect("a caller thread panicked")).collect();
        let disruption = disruption.map(|d| d.join().expect("the disruption's thread panicked"));
        (seconds, joined, disruption)
    });
    disruption.transpose()?;
    let servers = client.servers();
    let unsolicited = servers.iter().map(|s| s.unsolicited).sum();
    let mut per: Vec<PerServer> = servers
        .into_iter()
        .map(|s| PerServer {
            addr: s.addr,
            calls: 0,
            latency: histogram(),
            up: s.up,
            failed: s.failed,
            failed_in_window: 0,
            after_disruption: 0,
        })
        .collect();
    let mut all = histogram();
    for caller in joined {
        for seen in caller? {
            // A call that found no server up is no server's.
            let Some(server) = per.iter_mut().find(|p| Some(p.addr) == seen.addr) else { continue };
            server.calls += seen.calls;
            server.failed_in_window += seen.failed;
            server.after_disruption += seen.after;
            let _ = server.latency.add(&seen.latency);
            let _ = all.add(&seen.latency);
        }
    }
    let ops: u64 = per.iter().map(|p| p.calls).sum();
    let sample = Sample {
        ops,
        unsolicited,
        seconds,
        bytes: ops * spec.response_size() as u64,
        latency: Some(all),
        allocations: None,
        counted: None,
    };
    Ok((sample, per))
}

/// The per-server table a balanced load prints under its row.
pub fn table(per: &[PerServer]) -> String {
    let total: u64 = per.iter().map(|p| p.calls).sum::<u64>().max(1);
    let us = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1} µs", h.value_at_quantile(q) as f64 / 1e3)
        }
    };
    let mut out = format!(
        "{:<22} {:>10} {:>7} {:>11} {:>11} {:>7} {:>4}\n",
        "server", "calls", "share", "p50", "p99", "errors", "up"
    );
    for p in per {
        out += &format!(
            "{:<22} {:>10} {:>6.1}% {:>11} {:>11} {:>7} {:>4}\n",
            p.addr.to_string(),
            p.calls,
            100.0 * p.calls as f64 / total as f64,
            us(&p.latency, 0.5),
            us(&p.latency, 0.99),
            p.failed,
            if p.up { "yes" } else { "no" }
        );
    }
    out
}
