//! Handlers that wait, panic or hit the concurrency limit: deferred
//! responses out of order, a thousand waiting calls on one connection,
//! clients that leave with work pending, the limit in both modes, shutdown
//! with deferred work in flight, responders that outlive their connection,
//! and panics on every path (inline, worker pool, async).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastwire::proto::{ProtocolConfig, Request, RespondError, Responder, ResponseWriter, ServerConfig};
use fastwire::OverLimit;
use fastwire_bench::backend::{self, RunningServer};
use fastwire_bench::demo::{start_demo, Demo};
use fastwire_bench::BackendKind;
use fastwire_common::Timer;

use super::util::*;

fn config() -> ServerConfig {
    server_config(ProtocolConfig::default())
}

fn demo(kind: BackendKind, config: ServerConfig) -> Box<dyn RunningServer> {
    start_demo(kind, localhost(), config, Demo::default()).expect("server starts")
}

fn wait_request(id: u32, micros: u64) -> Vec<u8> {
    frame::request(id, format!("wait/{micros}").as_bytes(), format!("v{id}").as_bytes())
}

fn connect(server: &dyn RunningServer) -> TcpStream {
    let mut s = raw(server.local_addr());
    frame::handshake(&mut s);
    s
}

/// Calls that wait less are answered first, on one connection, each with its own value.
pub fn deferred_out_of_order(kind: BackendKind) {
    let server = demo(kind, config());
    let mut s = connect(&*server);
    let delays = [400_000u64, 300_000, 200_000, 100_000, 0];
    let mut batch = Vec::new();
    for (i, d) in delays.iter().enumerate() {
        batch.extend(wait_request(i as u32 + 1, *d));
    }
    s.write_all(&batch).unwrap();
    let got: Vec<(u32, Vec<u8>)> = (0..delays.len()).map(|_| frame::read_response(&mut s)).collect();
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [5, 4, 3, 2, 1], "answered as their waits end, not in request order");
    for (id, value) in got {
        assert_eq!(value, format!("re:v{id}").into_bytes());
    }
}

/// 1,000 calls in flight on one connection, each waiting 0–5 ms: all answered, each correctly.
pub fn thousand_waiting_calls(kind: BackendKind) {
    let server = demo(kind, config());
    let mut s = connect(&*server);
    let mut batch = Vec::new();
    let mut seed = 0x9e37_79b9_u32;
    for id in 1..=1000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        batch.extend(wait_request(id, u64::from(seed % 5001)));
    }
    s.write_all(&batch).unwrap();
    let mut seen = vec![false; 1001];
    for _ in 0..1000 {
        let (id, value) = frame::read_response(&mut s);
        assert!(!std::mem::replace(&mut seen[id as usize], true), "id {id} answered twice");
        assert_eq!(value, format!("re:v{id}").into_bytes());
    }
    assert!(seen[1..].iter().all(|&s| s));
    eventually(Duration::from_secs(5), "nothing deferred left", || server.stats().deferred_in_flight == 0);
}

/// Open descriptors of this process that are sockets on the server's side
/// of `port`: its accepted connections, not listening. (Counting every
/// descriptor of the process would count the other tests running beside
/// this one.) Read from `/proc/net/tcp{,6}`; `None` where that is missing.
fn server_sockets(port: u16) -> Option<usize> {
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            let local_port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN: the listener itself stays.
            if local_port == Some(port) && *state != "0A" && ours.contains(*inode) {
                count += 1;
            }
        }
    }
    Some(count)
}

/// A client that leaves with deferred work pending: the connection, its
/// descriptor and the in-flight count go back to where they were.
pub fn disconnect_with_deferred_pending(kind: BackendKind) {
    let server = demo(kind, config());
    // Warm up (executors, timer thread) before counting descriptors.
    assert_still_serves(kind, &*server);
    eventually(Duration::from_secs(5), "warm-up connection closed", || server.stats().open == 0);
    let port = server.local_addr().port();
    for round in 0..3 {
        let mut s = connect(&*server);
        let batch: Vec<u8> = (1..=100).flat_map(|id| wait_request(id, 50_000 + u64::from(id) * 100)).collect();
        s.write_all(&batch).unwrap();
        eventually(Duration::from_secs(5), "the calls are deferred", || server.stats().requests >= 100 * (round + 1));
        // The probe sees the server's side of this connection while it is open.
        assert!(server_sockets(port).is_none_or(|n| n >= 1), "{kind}: the accepted socket is counted");
        drop(s);
    }
    eventually(Duration::from_secs(10), "connections and deferred calls back to zero", || {
        let stats = server.stats();
        stats.open == 0 && stats.deferred_in_flight == 0
    });
    eventually(Duration::from_secs(5), "no descriptor left for the closed connections", || {
        server_sockets(port).is_none_or(|n| n == 0)
    });
    assert_still_serves(kind, &*server);
}

/// A handler that defers every call to a timer thread and records how many
/// are pending at once (the deferred path every backend has).
struct Counting {
    timer: Timer<Responder>,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Counting {
    fn new() -> (Counting, Arc<AtomicUsize>) {
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let n = Arc::clone(&now);
        let timer = Timer::new(move |responder: Responder| {
            n.fetch_sub(1, Ordering::SeqCst);
            let _ = responder.respond(b"done");
        })
        .unwrap();
        (Counting { timer, now, peak: Arc::clone(&peak) }, peak)
    }
}

impl fastwire::Handler for Counting {
    fn handle(&self, _request: Request<'_>, response: &mut ResponseWriter<'_>) {
        let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(running, Ordering::SeqCst);
        self.timer.after(Duration::from_millis(10), response.defer());
    }
}

/// Backpressure: never more than `concurrency` calls at once over the whole
/// server, and every call answered.
pub fn concurrency_limit_backpressure(kind: BackendKind) {
    let (handler, peak) = Counting::new();
    let config = ServerConfig { concurrency: Some(4), ..config() };
    let server = start(kind, config, handler);
    let conns: Vec<TcpStream> = (0..3).map(|_| connect(&*server)).collect();
    for mut s in &conns {
        let batch: Vec<u8> = (1..=12).flat_map(|id| frame::request(id, b"x", b"")).collect();
        s.write_all(&batch).unwrap();
    }
    for mut s in conns {
        let mut ids: Vec<u32> = (0..12)
            .map(|_| {
                let (id, value) = frame::read_response(&mut s);
                assert_eq!(value, b"done");
                id
            })
            .collect();
        ids.sort();
        assert_eq!(ids, (1..=12).collect::<Vec<_>>());
    }
    assert!(peak.load(Ordering::SeqCst) <= 4, "at most 4 at once, saw {}", peak.load(Ordering::SeqCst));
    assert_eq!(server.stats().rejected, 0);
}

/// Reject: over the limit, the over-limit value at once; counted.
pub fn concurrency_limit_reject(kind: BackendKind) {
    let config = ServerConfig { concurrency: Some(1), over_limit: OverLimit::Reject(b"busy".to_vec()), ..config() };
    let server = demo(kind, config);
    let mut s = connect(&*server);
    let batch: Vec<u8> = (1..=5).flat_map(|id| wait_request(id, 300_000)).collect();
    s.write_all(&batch).unwrap();
    let mut got: Vec<(u32, Vec<u8>)> = (0..5).map(|_| frame::read_response(&mut s)).collect();
    // The four rejected come back first (at once), the one admitted after its wait.
    assert_eq!(got.pop().unwrap(), (1, b"re:v1".to_vec()));
    got.sort();
    assert_eq!(got, (2..=5).map(|id| (id, b"busy".to_vec())).collect::<Vec<_>>());
    assert_eq!(server.stats().rejected, 4);
}

/// Graceful shutdown waits for deferred work within the grace period, then
/// reports what it cut.
pub fn shutdown_with_deferred_in_flight(kind: BackendKind) {
    let server = demo(kind, config());
    let mut s = connect(&*server);
    let mut batch = wait_request(1, 100_000);
    batch.extend(wait_request(2, 30_000_000));
    s.write_all(&batch).unwrap();
    eventually(Duration::from_secs(5), "both calls deferred", || server.stats().deferred_in_flight == 2);
    let stopping = std::thread::spawn(move || server.shutdown(Duration::from_millis(1500)));
    // The short call is answered during the grace period.
    assert_eq!(frame::read_response(&mut s), (1, b"re:v1".to_vec()));
    let report = stopping.join().unwrap();
    assert_eq!(report.cut_off, 1, "{report}");
    assert_eq!(report.deferred_cut, 1, "{report}");
    expect_closed(s, Duration::from_secs(5));
}

/// A responder completed after its connection closed is told so, and costs nothing.
pub fn responder_after_close(kind: BackendKind) {
    let parked: Arc<Mutex<Vec<Responder>>> = Arc::default();
    let p = Arc::clone(&parked);
    let handler = move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        if req.name == b"x" {
            p.lock().unwrap().push(resp.defer());
        } else {
            fastwire::proto::demo_handler(req, resp);
        }
    };
    // Idle timeout: the connection waits that long for deferred answers after the client left.
    let config = ServerConfig { idle_timeout: Some(Duration::from_millis(300)), ..config() };
    let server = start(kind, config, handler);
    let mut s = connect(&*server);
    s.write_all(&frame::request(7, b"x", b"")).unwrap();
    eventually(Duration::from_secs(5), "the call is deferred", || parked.lock().unwrap().len() == 1);
    drop(s);
    eventually(Duration::from_secs(10), "the connection closed", || server.stats().open == 0);
    let responder = parked.lock().unwrap().pop().unwrap();
    assert!(!responder.is_connected());
    assert_eq!(responder.respond(b"late"), Err(RespondError::Gone { id: 7 }));
    assert_still_serves(kind, &*server);
}

/// A dropped responder: no answer for that call, the rest of the connection goes on.
pub fn dropped_responder(kind: BackendKind) {
    let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        if req.name == b"drop" {
            drop(resp.defer());
        } else {
            resp.extend_from_slice(b"ok");
        }
    };
    let server = start(kind, config(), handler);
    let mut s = connect(&*server);
    let mut batch = frame::request(1, b"drop", b"");
    batch.extend(frame::request(2, b"x", b""));
    s.write_all(&batch).unwrap();
    assert_eq!(frame::read_response(&mut s), (2, b"ok".to_vec()));
    eventually(Duration::from_secs(5), "counted", || server.stats().dropped_responders == 1);
    assert!(quiet_for(&mut s, Duration::from_millis(100)), "nothing for the dropped call, and still open");
}

fn panicking(req: Request<'_>, resp: &mut ResponseWriter<'_>) {
    if req.name == b"panic" {
        panic!("a handler bug (this panic is part of a test)");
    }
    resp.extend_from_slice(b"re:");
    resp.extend_from_slice(req.value);
}

/// One connection's call panics; another connection, mid-conversation, is untouched.
fn panic_harms_nobody_else(kind: BackendKind, server: Box<dyn RunningServer>) {
    let mut bystander = connect(&*server);
    bystander.write_all(&frame::request(1, b"echo", b"before")).unwrap();
    assert_eq!(frame::read_response(&mut bystander), (1, b"re:before".to_vec()));
    let mut victim = connect(&*server);
    let mut batch = frame::request(1, b"echo", b"a");
    batch.extend(frame::request(2, b"panic", b""));
    victim.write_all(&batch).unwrap();
    // Its client gets what was answered before, then the connection closes:
    // no response (and so no wrong value) for the call that panicked.
    let rest = expect_closed(victim, Duration::from_secs(10));
    let mut expected = 1u32.to_le_bytes().to_vec();
    expected.extend(4u32.to_le_bytes());
    expected.extend(b"re:a");
    assert!(rest.is_empty() || rest == expected, "only the first answer may arrive: {rest:?}");
    eventually(Duration::from_secs(5), "the panic is counted", || server.stats().handler_panics == 1);
    bystander.write_all(&frame::request(2, b"echo", b"after")).unwrap();
    assert_eq!(frame::read_response(&mut bystander), (2, b"re:after".to_vec()));
    // Panic again, many times: the loop, pool or executor is still there.
    for _ in 0..5 {
        let mut c = connect(&*server);
        c.write_all(&frame::request(9, b"panic", b"")).unwrap();
        expect_closed(c, Duration::from_secs(10));
    }
    assert_still_serves(kind, &*server);
    // A fastwire client sees a connection error, never a value.
    let c = client(kind.client_kind(), server.local_addr(), client_config(ProtocolConfig::default()));
    let err = c.call_timeout(b"panic", b"", Duration::from_secs(10)).expect_err("no value for a panicked call");
    assert!(!matches!(err, fastwire::ClientError::Timeout(_)), "a connection error, not a hang: {err}");
    c.close();
}

/// Inline handlers.
pub fn inline_handler_panics(kind: BackendKind) {
    panic_harms_nobody_else(kind, start(kind, config(), panicking));
}

/// Handlers on the worker pool.
pub fn pool_handler_panics(kind: BackendKind) {
    let server = backend::start_blocking(kind, localhost(), config(), panicking).expect("server starts");
    panic_harms_nobody_else(kind, server);
}

/// `async` handlers, where the backend has them.
pub fn async_handler_panics(kind: BackendKind) {
    if !backend::has_async(kind) {
        return eprintln!("{kind} has no async handlers; its deferred and pool paths are tested");
    }
    let server = backend::start_async(kind, localhost(), config(), |req, responder| async move {
        if req.name() == b"panic" {
            panic!("an async handler bug (this panic is part of a test)");
        }
        let _ = responder.respond_with(|out| {
            out.extend_from_slice(b"re:");
            out.extend_from_slice(req.value());
        });
    })
    .expect("server starts");
    panic_harms_nobody_else(kind, server);
}

/// Blocking handlers on the pool answer concurrently: one slow call does
/// not hold up the next on the same connection.
pub fn pool_answers_out_of_order(kind: BackendKind) {
    let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        if req.name == b"slow" {
            std::thread::sleep(Duration::from_millis(300));
        }
        resp.extend_from_slice(req.name);
    };
    let server = backend::start_blocking(kind, localhost(), config(), handler).expect("server starts");
    assert_fast_overtakes_slow(&*server);
}

/// A slow call then a fast one on one connection: the fast one is answered first.
fn assert_fast_overtakes_slow(server: &dyn RunningServer) {
    let mut s = connect(server);
    let mut batch = frame::request(1, b"slow", b"");
    batch.extend(frame::request(2, b"fast", b""));
    s.write_all(&batch).unwrap();
    assert_eq!(frame::read_response(&mut s), (2, b"fast".to_vec()));
    assert_eq!(frame::read_response(&mut s), (1, b"slow".to_vec()));
}

/// `async` handlers run concurrently within a connection.
pub fn async_answers_out_of_order(kind: BackendKind) {
    if !backend::has_async(kind) {
        return eprintln!("{kind} has no async handlers; its deferred path is tested");
    }
    let server = backend::start_async(kind, localhost(), config(), |req, responder| async move {
        if req.name() == b"slow" {
            // A runtime-neutral wait: a thread sleeps, then answers.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let _ = responder.respond(b"slow");
            });
        } else {
            let _ = responder.respond(req.name());
        }
    })
    .expect("server starts");
    assert_fast_overtakes_slow(&*server);
}

/// With deferred calls filling `max_in_flight`, the connection stops
/// decoding and resumes as answers come: every call is still answered.
pub fn in_flight_limit_with_deferred_calls(kind: BackendKind) {
    let config = ServerConfig { max_in_flight: 8, ..config() };
    let server = demo(kind, config);
    let mut s = connect(&*server);
    let batch: Vec<u8> = (1..=100).flat_map(|id| wait_request(id, 2_000)).collect();
    s.write_all(&batch).unwrap();
    let mut ids: Vec<u32> = (0..100).map(|_| frame::read_response(&mut s).0).collect();
    ids.sort();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
}

/// A client that never reads, with every call deferred: the server stops
/// reading once answers pile up (`max_in_flight` counts deferred calls and
/// unwritten answers alike), instead of buffering without bound.
pub fn never_reads_with_deferred_calls(kind: BackendKind) {
    let config = ServerConfig { max_output_buffer: 256 * 1024, max_in_flight: 1000, ..config() };
    let demo = Demo { delay: Some(Duration::from_millis(1)), work: None };
    let server = start_demo(kind, localhost(), config, demo).expect("server starts");
    assert_stops_reading_for_a_client_that_never_reads(kind, server);
}

/// Handlers see who the client is; the stats count bytes in and out.
pub fn peer_address_and_byte_counts(kind: BackendKind) {
    let handler = |_: Request<'_>, resp: &mut ResponseWriter<'_>| {
        let peer = resp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        resp.extend_from_slice(peer.as_bytes());
    };
    let server = start(kind, config(), handler);
    let mut s = connect(&*server);
    let me = s.local_addr().unwrap().to_string();
    let request = frame::request(1, b"who", b"am I");
    s.write_all(&request).unwrap();
    assert_eq!(frame::read_response(&mut s), (1, me.clone().into_bytes()));
    drop(s);
    // Handshake (3 bytes) and the request in; handshake and the response out.
    eventually(Duration::from_secs(5), "bytes counted", || {
        let stats = server.stats();
        stats.bytes_in == (3 + request.len()) as u64 && stats.bytes_out == (3 + 8 + me.len()) as u64
    });
}
