//! Servers that die, come back, or shut down under load.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwire::proto::{demo_handler, ProtocolConfig, Request, ResponseWriter, ServerConfig};
use fastwire::ClientError;
use fastwire_bench::backend::BlockingClient;
use fastwire_bench::BackendKind;

use super::util::*;

pub fn server_dies_mid_call(kind: BackendKind) {
    // A server that takes the calls and then dies without answering.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dying = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&[0, 1, 0]).unwrap();
        let mut buf = [0u8; 1024];
        let mut got = 0;
        while got < 3 + 5 * 18 {
            got += s.read(&mut buf).unwrap();
        }
        drop(s);
    });
    let c: Arc<dyn BlockingClient> =
        Arc::from(client(kind.client_kind(), addr, client_config(ProtocolConfig::default())));
    let start = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.call_timeout(b"", b"foobar", Duration::from_secs(60)))
        })
        .collect();
    for call in calls {
        let err = call.join().unwrap().unwrap_err();
        assert!(matches!(err, ClientError::ConnectionLost(_)), "{kind}: {err:?}");
    }
    // Promptly: on the connection's death, not at the 60 s deadline.
    assert!(start.elapsed() < Duration::from_secs(30), "{kind}: took {:?}", start.elapsed());
    dying.join().unwrap();
}

pub fn server_comes_back(kind: BackendKind) {
    let server = start_demo(kind);
    let addr = server.local_addr();
    let c = client(kind.client_kind(), addr, client_config(ProtocolConfig::default()));
    assert_eq!(&*c.call_timeout(b"echo", b"1", Duration::from_secs(10)).unwrap(), b"re:1");
    server.shutdown(Duration::from_secs(5));
    // Down: an error, not a hang.
    let err = c.call_timeout(b"echo", b"2", Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionLost(_) | ClientError::Connect { .. } | ClientError::Backoff { .. }),
        "{kind}: {err:?}"
    );
    // Back on the same address: the client reconnects by itself (after its backoff).
    let server =
        fastwire_bench::backend::start_server(kind, addr, server_config(ProtocolConfig::default()), demo_handler)
            .expect("rebind the same port");
    let mut reply = None;
    eventually(Duration::from_secs(10), "the client reconnects", || {
        reply = c.call_timeout(b"echo", b"3", Duration::from_secs(5)).ok().map(|r| r.to_vec());
        reply.is_some()
    });
    assert_eq!(reply.unwrap(), b"re:3");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

pub fn graceful_shutdown_under_load(kind: BackendKind) {
    let handled = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&handled);
    let server = start(
        kind,
        server_config(ProtocolConfig::default()),
        move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
            seen.lock().unwrap().insert(req.value.to_vec());
            demo_handler(req, resp);
        },
    );
    let addr = server.local_addr();
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let failures = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (answered, stop, failures) = (Arc::clone(&answered), Arc::clone(&stop), Arc::clone(&failures));
            let c = fastwire::fastwire_std::Client::new(addr, client_config(ProtocolConfig::default()));
            std::thread::spawn(move || {
                let mut i = 0u64;
                let mut refused = false;
                while !refused && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // 50 calls in flight at a time on each connection.
                    let mut calls = Vec::new();
                    for _ in 0..50 {
                        let value = format!("{t}-{i}").into_bytes();
                        i += 1;
                        match c.start(b"echo", &value) {
                            Ok(call) => calls.push((value, call)),
                            Err(_) => {
                                // The server is going away; still wait for the calls already sent.
                                refused = true;
                                break;
                            }
                        }
                    }
                    for (value, call) in calls {
                        match call.wait() {
                            Ok(reply) => {
                                assert_eq!(&reply[3..], &value[..]);
                                answered.lock().unwrap().insert(value);
                            }
                            Err(e) => {
                                failures.lock().unwrap().insert(value, e.to_string());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(10), "load is flowing", || server.stats().requests > 2_000);
    let report = server.shutdown(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(report.cut_off, 0, "{kind}: {report}");
    assert_eq!(report.responses_lost, 0, "{kind}: {report}");
    let handled = handled.lock().unwrap();
    let answered = answered.lock().unwrap();
    assert!(answered.len() > 2_000);
    // Every request the server served was answered: none lost in the shutdown.
    let failures = failures.lock().unwrap();
    let lost: Vec<_> = handled
        .difference(&answered)
        .take(3)
        .map(|v| (String::from_utf8_lossy(v).into_owned(), failures.get(v).cloned()))
        .collect();
    assert!(lost.is_empty(), "{kind}: served but never answered: {lost:?} ({} in all)", handled.len() - answered.len());
}

pub fn idle_timeout(kind: BackendKind) {
    let config =
        ServerConfig { idle_timeout: Some(Duration::from_millis(300)), ..server_config(ProtocolConfig::default()) };
    let server = start(kind, config, demo_handler);
    let mut s = raw(server.local_addr());
    frame::handshake(&mut s);
    s.write_all(&frame::request(1, b"echo", b"x")).unwrap();
    assert_eq!(frame::read_response(&mut s), (1, b"re:x".to_vec()));
    let start = Instant::now();
    assert!(expect_closed(s, Duration::from_secs(10)).is_empty());
    assert!(start.elapsed() >= Duration::from_millis(250), "closed after about idle_timeout");
    server.shutdown(Duration::from_secs(5));
}

/// A quiet client that never closes its side, at a graceful shutdown: the
/// server sends its end-of-stream, lingers no longer than its bound
/// (`LINGER`), then closes, well inside a longer grace period: closed
/// gracefully, not cut off at the grace period's end (the connection has
/// no deadline of its own to wake its driver at: the shutdown must).
pub fn shutdown_with_a_client_that_never_closes(kind: BackendKind) {
    let server = start_demo(kind);
    let mut s = raw(server.local_addr());
    s.write_all(&[0, 1, 0]).unwrap();
    s.write_all(&frame::request(1, b"echo", b"x")).unwrap();
    let mut answer = [0u8; 3 + 8 + 4];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[11..], b"re:x", "{kind}");
    // Quiet long enough to give its buffers back: no deadline of its own
    // is near (the idle timeout is minutes away).
    std::thread::sleep(fastwire::proto::driver::IDLE_RELEASE * 2 + Duration::from_millis(500));
    let grace = fastwire::proto::driver::LINGER + Duration::from_secs(20);
    let report = server.shutdown(grace);
    assert_eq!((report.cut_off, report.closed_gracefully), (0, 1), "{kind}: {report}");
    // The client was told: end of stream after the answer.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(s.read(&mut answer), Ok(0) | Err(_)), "{kind}");
}
