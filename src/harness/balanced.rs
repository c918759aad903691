//! A load through the balanced client (`fastwire load --addr a,b,c`):
//! `connections x depth` caller threads, each making one call at a time
//! through one [`Balanced`] client over every server, every reply checked,
//! with calls and latency counted per server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
    /// Calls that failed on it over the run (warm-up included).
    pub failed: u64,
}

/// Runs `spec`'s calls through `client` for `timing`'s warm-up and window.
/// A failed call ends the run with its error (which names the server), as
/// every load does; so does a wrong reply.
pub fn run<D: Driver>(client: &Balanced<D>, spec: &Spec, timing: &Timing) -> Result<(Sample, Vec<PerServer>), String> {
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
    let results = std::thread::scope(|s| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let (name, value, expected) = (&name, &value, &expected);
                let (measuring, stop) = (&measuring, &stop);
                s.spawn(move || -> Result<Vec<(SocketAddr, Histogram<u64>, u64)>, String> {
                    let mut mine: Vec<(SocketAddr, Histogram<u64>, u64)> = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = client.call_and_server(name, value);
                        let took = started.elapsed();
                        let (reply, addr) = match outcome {
                            Ok(done) => done,
                            Err(e) if stop.load(Ordering::Relaxed) => return Err(format!("after the window: {e}")),
                            Err(e) => return Err(format!("a call failed: {e}")),
                        };
                        if let Some(expected) = expected {
                            if reply[..] != expected[..] {
                                return Err(format!("a wrong reply from {addr}: {} bytes", reply.len()));
                            }
                        }
                        if !measuring.load(Ordering::Relaxed) {
                            continue;
                        }
                        let slot = match mine.iter().position(|(a, _, _)| *a == addr) {
                            Some(i) => i,
                            None => {
                                mine.push((addr, histogram(), 0));
                                mine.len() - 1
                            }
                        };
                        let _ = mine[slot].1.record(took.as_nanos().max(1) as u64);
                        mine[slot].2 += 1;
                    }
                    Ok(mine)
                })
            })
            .collect();
        std::thread::sleep(timing.warmup);
        measuring.store(true, Ordering::Relaxed);
        let opened = Instant::now();
        std::thread::sleep(timing.measure);
        measuring.store(false, Ordering::Relaxed);
        let seconds = opened.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let joined: Vec<_> = threads.into_iter().map(|t| t.join().expect("a caller thread panicked")).collect();
        (seconds, joined)
    });
    let (seconds, joined) = results;
    let mut per: Vec<PerServer> = client
        .servers()
        .into_iter()
        .map(|s| PerServer { addr: s.addr, calls: 0, latency: histogram(), up: s.up, failed: s.failed })
        .collect();
    let mut all = histogram();
    for caller in joined {
        // A failure after the window closed does not undo the window.
        let caller = match caller {
            Ok(caller) => caller,
            Err(e) if e.starts_with("after the window") => Vec::new(),
            Err(e) => return Err(e),
        };
        for (addr, latency, calls) in caller {
            let server = per.iter_mut().find(|p| p.addr == addr).expect("a server the client knows");
            server.calls += calls;
            let _ = server.latency.add(&latency);
            let _ = all.add(&latency);
        }
    }
    let ops: u64 = per.iter().map(|p| p.calls).sum();
    let sample = Sample {
        ops,
        unsolicited: 0,
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
        "server", "calls", "share", "p50", "p99", "failed", "up"
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
