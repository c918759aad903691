//! End-to-end benches: every backend on the same workload, side by side in
//! one criterion group per workload, over loopback TCP.
//!
//! Each backend's server and clients start outside the timed part
//! (`fastwire_bench::harness::live::Live`); a sample times `iters` operations
//! with the workload's depth in flight (`iter_custom`). Throughput is in
//! decimal bytes of response value, as fastrpc counts MB/s. The `conns`
//! workload needs two processes and is left to `fastwire load`; latency
//! percentiles and allocs/op are in `fastwire compare`.
//!
//! `cargo bench --bench backends` (or `just bench`); `just bench-quick`
//! for a short run.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastwire_bench::backend::BackendKind;
use fastwire_bench::harness::live::Live;
use fastwire_bench::harness::{Spec, Workload};

fn group(c: &mut Criterion, name: &str, specs: &[Spec]) {
    let mut group = c.benchmark_group(name);
    for spec in specs {
        for &kind in BackendKind::ALL {
            let live = match Live::start(kind, spec) {
                Ok(live) => live,
                Err(why) => {
                    eprintln!("skipped {kind}: {why}");
                    continue;
                }
            };
            let size = live.response_size();
            group.throughput(if size == 0 { Throughput::Elements(1) } else { Throughput::BytesDecimal(size as u64) });
            let parameter = format!("{}x{}/{}B", spec.connections, spec.depth, spec.value_size);
            group.bench_with_input(BenchmarkId::new(kind.name(), parameter), &live, |b, live| {
                b.iter_custom(|iters| live.run(iters))
            });
        }
    }
    group.finish();
}

fn fastrpc(c: &mut Criterion) {
    group(c, "fastrpc", &[Workload::Fastrpc.defaults()]);
}

fn pingpong(c: &mut Criterion) {
    group(c, "pingpong", &[Workload::Pingpong.defaults()]);
}

/// fastrpc and pingpong over TLS (a certificate authority and server
/// certificate made for the run): the cost of TLS per call, beside the
/// plaintext groups.
fn tls(c: &mut Criterion) {
    let tls = Some(fastwire_bench::tls::SpecTls::for_run());
    group(c, "fastrpc-tls", &[Spec { tls: tls.clone(), ..Workload::Fastrpc.defaults() }]);
    group(c, "pingpong-tls", &[Spec { tls, ..Workload::Pingpong.defaults() }]);
}

fn sizes(c: &mut Criterion) {
    let specs: Vec<Spec> =
        Workload::SIZES.iter().map(|&value_size| Spec { value_size, ..Workload::Sizes.defaults() }).collect();
    group(c, "sizes", &specs);
}

fn nowait(c: &mut Criterion) {
    group(c, "nowait", &[Workload::Nowait.defaults()]);
}

/// Handlers that wait 1 ms on a timer (without blocking), 2 x 100 in flight.
fn wait(c: &mut Criterion) {
    group(c, "wait", &[Workload::Wait.defaults()]);
}

/// Handlers that burn 20 µs of CPU each. (`mixed` is about the instant
/// calls' latency percentiles, which criterion does not report: it lives in
/// `fastwire compare` and `fastwire load`.)
fn cpu(c: &mut Criterion) {
    group(c, "cpu", &[Workload::Cpu.defaults()]);
}

// Short defaults: each sample already runs thousands of calls over live
// connections. Command-line flags (`--measurement-time`, as `just
// bench-quick` passes) override them.
criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = fastrpc, pingpong, tls, sizes, nowait, wait, cpu
}
criterion_main!(benches);
