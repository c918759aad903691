//! Steady state allocates (almost) nothing: whole-process heap allocations
//! per call, client and server together, stay below 0.01 for every server
//! backend with each thread-based client, at 1 and at 1000 calls in flight.
//!
//! It counts, it does not time: this is behaviour, not speed.

use std::collections::VecDeque;
use std::time::Duration;

use fastwire::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_bench::backend::{start_server, BackendKind};
use fastwire_bench::harness::alloc;
use fastwire_common::client::{Client, Driver};

use crate::alone;

/// `calls` fastrpc benchmark calls with `depth` in flight on one client.
fn calls<D: Driver>(client: &Client<D>, depth: usize, calls: usize) {
    let mut in_flight = VecDeque::with_capacity(depth);
    for _ in 0..depth {
        in_flight.push_back(client.start(b"", b"foobar").unwrap());
    }
    for _ in 0..calls {
        let reply = in_flight.pop_front().unwrap().wait().unwrap();
        assert_eq!(reply.len(), 261);
        drop(reply);
        in_flight.push_back(client.start(b"", b"foobar").unwrap());
    }
    for call in in_flight {
        call.wait().unwrap();
    }
}

/// Allocations per call over two connections, after a warm-up.
fn allocations_per_call<D: Driver>(addr: std::net::SocketAddr, depth: usize) -> f64 {
    let config = ClientConfig { max_pending: 2000, ..ClientConfig::default() };
    let clients: Vec<_> = (0..2).map(|_| Client::<D>::new(addr, config.clone())).collect();
    let measured = 10_000;
    std::thread::scope(|s| clients.iter().for_each(|c| drop(s.spawn(move || calls(c, depth, 5_000)))));
    let before = alloc::count();
    std::thread::scope(|s| clients.iter().for_each(|c| drop(s.spawn(move || calls(c, depth, measured)))));
    let allocations = alloc::count() - before;
    clients.iter().for_each(Client::close);
    allocations as f64 / (2 * measured) as f64
}

/// glommio 0.9 allocates inside its reactor every time an executor parks
/// or wakes: a preemption timer source per park (`Rc::pin` in
/// `prepare_latency_preemption_timer` / `prepare_throughput_preemption_timer`),
/// B-tree nodes for timers and external wake-ups, a growing `SmallVec` in
/// `consume_submission_queue`, a source per read readiness (found with
/// `perf probe -x libc.so.6 malloc` and `perf record --call-graph dwarf`,
/// 2026-11-23). That is about 6 per call on its server and 17 on its client
/// at 1 call in flight (an executor parks once per call), 0.02 to 0.05 at
/// 1000. `spin_before_park` makes it worse (spinning polls allocate too).
/// Not fixable from fastwire without patching glommio: reported here, not
/// asserted.
const KNOWN_TO_ALLOCATE: &[BackendKind] = &[BackendKind::Glommio];

#[test]
fn steady_state_allocates_nothing_per_call() {
    let _turn = alone();
    crate::each_demo_server(|kind, server| {
        let addr = server.local_addr();
        for depth in [1, 1000] {
            let mut measured = vec![
                (
                    "std",
                    allocations_per_call::<fastwire::fastwire_std::client::ThreadPair>(addr, depth),
                    BackendKind::Std,
                ),
                (
                    "mio",
                    allocations_per_call::<fastwire::fastwire_mio::client::ReactorThread>(addr, depth),
                    BackendKind::Mio,
                ),
            ];
            if BackendKind::Glommio.unavailable().is_none() {
                let per_call = allocations_per_call::<fastwire::fastwire_glommio::client::ExecutorThread>(addr, depth);
                measured.push(("glommio", per_call, BackendKind::Glommio));
            }
            if BackendKind::Uring.unavailable().is_none() {
                let per_call = allocations_per_call::<fastwire::fastwire_uring::client::RingThread>(addr, depth);
                measured.push(("uring", per_call, BackendKind::Uring));
            }
            for (client, per_call, client_kind) in measured {
                let what = format!("{kind} server, {client} client, depth {depth}: {per_call} allocations per call");
                if KNOWN_TO_ALLOCATE.contains(&kind) || KNOWN_TO_ALLOCATE.contains(&client_kind) {
                    eprintln!("known to allocate (not asserted): {what}");
                } else {
                    assert!(per_call < 0.01, "{what}");
                }
            }
        }
    });
}

/// The paths for handlers that wait: deferred answers (std, mio, uring) and the
/// worker pool allocate nothing per call (small requests are copied
/// inline); an `async` handler on tokio one object per call (its future's
/// node in the connection's set), measured 1.00 at 1 call in flight and
/// 1.10 at 1,000 (2026-11-24; a profile of the server process alone,
/// `perf record -e probe_libc:malloc --call-graph dwarf`, shows nothing but
/// that node, so the extra tenth is the in-process client's, meeting
/// responses in bigger bursts). Each handler answers at once, so only the path's own cost
/// is counted. glommio's local task per call is reported, not asserted (its
/// executor allocates, see `KNOWN_TO_ALLOCATE`).
#[test]
fn waiting_paths_allocate_at_most_one_per_call() {
    let _turn = alone();
    use fastwire::proto::{Request, ResponseWriter};
    use fastwire_bench::backend::{start_async, start_blocking};
    use fastwire_common::Timer;

    let any = "127.0.0.1:0".parse().unwrap();
    let config = ServerConfig::default;
    // Deferred: every call answered from a timer thread, at once.
    let deferred = |kind: BackendKind| {
        let timer = Timer::new(|responder: fastwire::Responder| {
            let _ = responder.respond_with(|out| out.extend_from_slice(fastwire::proto::FASTRPC_BENCH_BODY));
        })
        .unwrap();
        let handler = move |_: Request<'_>, resp: &mut ResponseWriter<'_>| timer.after(Duration::ZERO, resp.defer());
        start_server(kind, any, config(), handler).unwrap()
    };
    let mut servers: Vec<(String, Box<dyn fastwire_bench::backend::RunningServer>, f64)> = vec![
        ("std deferred".into(), deferred(BackendKind::Std), 0.01),
        ("mio deferred".into(), deferred(BackendKind::Mio), 0.01),
        ("std pool".into(), start_blocking(BackendKind::Std, any, config(), demo_handler).unwrap(), 0.01),
        ("mio pool".into(), start_blocking(BackendKind::Mio, any, config(), demo_handler).unwrap(), 0.01),
    ];
    if BackendKind::Uring.unavailable().is_none() {
        servers.push(("uring deferred".into(), deferred(BackendKind::Uring), 0.01));
        let pool = start_blocking(BackendKind::Uring, any, config(), demo_handler).unwrap();
        servers.push(("uring pool".into(), pool, 0.01));
    }
    for kind in [BackendKind::Tokio, BackendKind::TokioPerCore, BackendKind::Glommio] {
        if kind.unavailable().is_some() {
            continue;
        }
        let server = start_async(kind, any, config(), |request, responder| async move {
            let _ = responder.respond_with(|out| demo_handler(request.as_request(), out));
        })
        .unwrap();
        // Measured 1.00 and 1.10 (see above); the bound guards against a
        // regression (a second allocation per call would show as 2), with
        // room for how the client meets the responses on a busy machine.
        let limit = if kind == BackendKind::Glommio { f64::INFINITY } else { 1.5 };
        servers.push((format!("{kind} async"), server, limit));
    }
    for (what, server, limit) in servers {
        for depth in [1, 1000] {
            let per_call =
                allocations_per_call::<fastwire::fastwire_mio::client::ReactorThread>(server.local_addr(), depth);
            let what = format!("{what}, mio client, depth {depth}: {per_call} allocations per call");
            eprintln!("{what}");
            assert!(per_call < limit, "{what}");
        }
        server.shutdown(Duration::from_secs(5));
    }
}
