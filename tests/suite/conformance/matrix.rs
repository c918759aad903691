//! Every fastwire client against every fastwire server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwire::proto::codec::{decode_request, encode_response};
use fastwire::proto::{
    demo_handler, ClientConfig, Compression, Limits, ProtocolConfig, Request, ResponseWriter, ServerConfig,
    FASTRPC_BENCH_BODY,
};
use fastwire::ClientError;
use fastwire_bench::BackendKind;
use fastwire_common::client::{Client as BlockingClientOf, Driver};

use super::util::*;

const ONE_MIB: usize = 1024 * 1024;

/// The demo handler, plus `len` (answers the value's length) for values
/// whose echo would exceed the limit.
fn handler(req: Request<'_>, resp: &mut ResponseWriter<'_>) {
    if req.name == b"len" {
        resp.extend_from_slice(req.value.len().to_string().as_bytes());
    } else {
        demo_handler(req, resp);
    }
}

/// A few calls that cover the workload shapes: the fastrpc benchmark request,
/// an echo, an empty value, a large value.
fn exercise(c: &dyn fastwire_bench::backend::BlockingClient, what: &str) {
    let t = Duration::from_secs(20);
    assert_eq!(&*c.call_timeout(b"", b"foobar", t).expect(what), FASTRPC_BENCH_BODY, "{what}");
    assert_eq!(&*c.call_timeout(b"echo", b"hello", t).expect(what), b"re:hello", "{what}");
    assert_eq!(&*c.call_timeout(b"echo", b"", t).expect(what), b"re:", "{what}");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let reply = c.call_timeout(b"echo", &big, t).expect(what);
    assert!(reply.len() == big.len() + 3 && reply[3..] == big[..], "{what}: 100 KB echo");
}

pub fn every_client_every_compression(kind: BackendKind) {
    every_client_every_compression_on(kind.name(), &starter(kind))
}

/// Every client, in each compression, against the server `start` makes.
pub fn every_client_every_compression_on(kind: &str, start: Starter<'_>) {
    for server_c in Compression::ALL {
        let server = start(server_config(protocol(server_c)), Arc::new(handler));
        for (client_kind, make) in every_client() {
            // The client compresses differently from the server: the two
            // directions are independent.
            for client_c in [server_c, Compression::None] {
                let what = format!("{client_kind} client ({client_c}) -> {kind} server ({server_c})");
                let c = make(server.local_addr(), client_config(protocol(client_c)));
                exercise(&*c, &what);
                c.close();
            }
        }
        server.shutdown(Duration::from_secs(5));
    }
}

pub fn sniff_header_and_version(kind: BackendKind) {
    let p = ProtocolConfig {
        sniff_header: b"fastwire-sniff".to_vec(),
        protocol_version: 7,
        compression: Compression::Snappy,
        ..ProtocolConfig::default()
    };
    let server = start(kind, server_config(p.clone()), handler);
    for client_kind in BackendKind::clients() {
        let c = client(client_kind, server.local_addr(), client_config(p.clone()));
        exercise(&*c, &format!("{client_kind} client, sniff header and version 7"));
        c.close();
        // A client with another version is refused at the handshake.
        let wrong = ProtocolConfig { protocol_version: 6, ..p.clone() };
        let c = client(client_kind, server.local_addr(), client_config(wrong));
        let err = c.call_timeout(b"echo", b"x", Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(err, ClientError::ConnectionLost(_) | ClientError::Protocol(_)),
            "{client_kind}: version mismatch gives {err:?}"
        );
        c.close();
    }
    server.shutdown(Duration::from_secs(5));
}

pub fn values_up_to_the_limit(kind: BackendKind) {
    values_up_to_the_limit_on(kind.name(), &starter(kind))
}

/// Values up to the 1 MiB limit, from every client in each compression,
/// against the server `start` makes.
pub fn values_up_to_the_limit_on(kind: &str, start: Starter<'_>) {
    for compression in Compression::ALL {
        let server = start(server_config(protocol(compression)), Arc::new(handler));
        for (client_kind, make) in every_client() {
            let what = format!("{client_kind} client -> {kind} server, {compression}");
            let c = make(server.local_addr(), client_config(protocol(compression)));
            let t = Duration::from_secs(30);
            // A value of exactly 1 MiB (the limit) goes through.
            let value: Vec<u8> = (0..ONE_MIB as u32).map(|i| (i % 253) as u8).collect();
            assert_eq!(&*c.call_timeout(b"len", &value, t).expect(&what), ONE_MIB.to_string().as_bytes(), "{what}");
            // The largest echo whose answer ("re:" + value) fits the limit.
            let reply = c.call_timeout(b"echo", &value[..ONE_MIB - 3], t).expect(&what);
            assert!(reply.len() == ONE_MIB && reply[3..] == value[..ONE_MIB - 3], "{what}: 1 MiB echo");
            // One byte over the limit is refused by the client itself.
            let over = vec![0u8; ONE_MIB + 1];
            match c.call_timeout(b"echo", &over, t) {
                Err(ClientError::Protocol(e)) => assert!(e.to_string().contains("max_value_len"), "{what}: {e}"),
                other => panic!("{what}: expected a limit error, got {other:?}"),
            }
            // And the connection is still fine.
            assert_eq!(&*c.call_timeout(b"echo", b"ok", t).expect(&what), b"re:ok");
            c.close();
        }
        server.shutdown(Duration::from_secs(5));
    }
}

pub fn fire_and_forget(kind: BackendKind) {
    fire_and_forget_on(&starter(kind))
}

/// Fire-and-forget requests from every client to the server `start` makes.
pub fn fire_and_forget_on(start: Starter<'_>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let server = start(
        server_config(ProtocolConfig::default()),
        Arc::new(move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
            if req.name == b"note" {
                assert_eq!(req.id, 0, "fire-and-forget requests carry id 0");
                counter.fetch_add(1, Ordering::Relaxed);
            }
            handler(req, resp);
        }),
    );
    let mut expected = 0;
    for (client_kind, make) in every_client() {
        let c = make(server.local_addr(), client_config(ProtocolConfig::default()));
        for i in 0..500 {
            c.send(b"note", format!("{i}").as_bytes()).unwrap();
        }
        expected += 500;
        // A call after them: the server answers it only after serving the
        // notes (one connection, in order), and sends nothing for the notes.
        assert_eq!(&*c.call_timeout(b"echo", b"after", Duration::from_secs(10)).unwrap(), b"re:after");
        assert_eq!(seen.load(Ordering::Relaxed), expected, "{client_kind}: every note was handled");
        assert_eq!(c.pending(), 0);
        c.close();
    }
    server.shutdown(Duration::from_secs(5));
}

pub fn ten_thousand_in_flight(kind: BackendKind) {
    let server = start(kind, server_config(ProtocolConfig::default()), handler);
    let addr = server.local_addr();
    let config = ClientConfig { max_pending: 4096, ..client_config(ProtocolConfig::default()) };

    // The thread-based clients (std, mio, glommio, uring): each of 4 threads has its own
    // connection and 2,500 calls in flight on it before waiting for any.
    ten_thousand_blocking::<fastwire::fastwire_std::client::ThreadPair>(addr, &config);
    ten_thousand_blocking::<fastwire::fastwire_mio::client::ReactorThread>(addr, &config);
    if BackendKind::Glommio.unavailable().is_none() {
        ten_thousand_blocking::<fastwire::fastwire_glommio::client::ExecutorThread>(addr, &config);
    }
    if BackendKind::Uring.unavailable().is_none() {
        ten_thousand_blocking::<fastwire::fastwire_uring::client::RingThread>(addr, &config);
    }

    // The tokio client: 10,000 tasks over 4 connections.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let clients: Vec<_> = (0..4).map(|_| fastwire::fastwire_tokio::Client::new(addr, config.clone())).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..10_000 {
            let c = clients[i % 4].clone();
            tasks.spawn(async move {
                let value = format!("call {i}");
                let reply = c.call(b"echo", value.as_bytes()).await.expect("a response");
                assert_eq!(&*reply, format!("re:{value}").as_bytes());
            });
        }
        let mut done = 0;
        while let Some(result) = tasks.join_next().await {
            result.expect("task ok");
            done += 1;
        }
        assert_eq!(done, 10_000);
    });
    assert!(server.stats().requests >= 30_000);
    server.shutdown(Duration::from_secs(5));
}

fn ten_thousand_blocking<D: Driver>(addr: std::net::SocketAddr, config: &ClientConfig) {
    std::thread::scope(|s| {
        for t in 0..4 {
            let config = config.clone();
            s.spawn(move || {
                let c = BlockingClientOf::<D>::new(addr, config);
                let calls: Vec<_> = (0..2500)
                    .map(|i| (i, c.start(b"echo", format!("{t}-{i}").as_bytes()).expect("under the pending limit")))
                    .collect();
                for (i, call) in calls {
                    let reply = call.wait().expect("a response");
                    assert_eq!(&*reply, format!("re:{t}-{i}").as_bytes());
                }
            });
        }
    });
}

/// A raw server that reads `n` requests, then answers them in reverse order.
fn reverse_server(n: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut requests = Vec::new();
        let mut at = 3; // after the client's handshake
        s.write_all(&[0, 1, 0]).unwrap();
        while requests.len() < n {
            let got = s.read(&mut chunk).unwrap();
            assert!(got > 0);
            buf.extend_from_slice(&chunk[..got]);
            while buf.len() > at {
                let Some((req, used)) = decode_request(&buf[at..], &Limits::default()).unwrap() else { break };
                requests.push((req.id, req.value.to_vec()));
                at += used;
            }
        }
        let mut out = Vec::new();
        for (id, value) in requests.iter().rev() {
            encode_response(&mut out, *id, value, &Limits::default()).unwrap();
        }
        // Plus a response for an id never asked for: dropped by the client.
        encode_response(&mut out, 999_999, b"bogus", &Limits::default()).unwrap();
        s.write_all(&out).unwrap();
        let _ = s.read(&mut chunk);
    });
    (addr, thread)
}

pub fn out_of_order_responses(kind: BackendKind) {
    let client_kind = kind.client_kind();
    let n = 50;
    let (addr, server) = reverse_server(n);
    let config = client_config(ProtocolConfig::default());
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("value {i}").into_bytes()).collect();
    match client_kind {
        BackendKind::Std => out_of_order_blocking::<fastwire::fastwire_std::client::ThreadPair>(addr, config, &values),
        BackendKind::Mio => {
            out_of_order_blocking::<fastwire::fastwire_mio::client::ReactorThread>(addr, config, &values)
        }
        BackendKind::Glommio => {
            out_of_order_blocking::<fastwire::fastwire_glommio::client::ExecutorThread>(addr, config, &values)
        }
        BackendKind::Uring => {
            out_of_order_blocking::<fastwire::fastwire_uring::client::RingThread>(addr, config, &values)
        }
        _ => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let c = fastwire::fastwire_tokio::Client::new(addr, config);
                let calls: Vec<_> = values
                    .iter()
                    .map(|v| {
                        let (c, v) = (c.clone(), v.clone());
                        tokio::spawn(async move { c.call(b"x", &v).await.map(|r| r.to_vec()) })
                    })
                    .collect();
                for (call, v) in calls.into_iter().zip(&values) {
                    assert_eq!(call.await.unwrap().unwrap(), *v);
                }
                c.close();
            });
        }
    }
    server.join().unwrap();
}

fn out_of_order_blocking<D: Driver>(addr: std::net::SocketAddr, config: ClientConfig, values: &[Vec<u8>]) {
    let c = BlockingClientOf::<D>::new(addr, config);
    let calls: Vec<_> = values.iter().map(|v| c.start(b"x", v).unwrap()).collect();
    for (call, v) in calls.into_iter().zip(values) {
        assert_eq!(&*call.wait().unwrap(), &v[..]);
    }
    c.close();
}

pub fn pending_limit(kind: BackendKind) {
    // A raw server that reads and never answers: calls stay pending.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let holder = {
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&[0, 1, 0]).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                received.fetch_add(n, Ordering::Relaxed);
            }
        })
    };
    let config = ClientConfig { max_pending: 3, ..client_config(ProtocolConfig::default()) };
    let c = client(kind.client_kind(), addr, config);
    let c: Arc<dyn fastwire_bench::backend::BlockingClient> = Arc::from(c);
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.call_timeout(b"x", b"", Duration::from_secs(20)))
        })
        .collect();
    // Handshake (3 bytes) and three 13-byte requests: all three calls are on the wire.
    eventually(Duration::from_secs(5), "3 calls sent", || received.load(Ordering::Relaxed) >= 3 + 3 * 13);
    match c.call_timeout(b"x", b"", Duration::from_secs(5)) {
        Err(ClientError::Protocol(e)) => assert!(e.to_string().contains("max_pending"), "{e}"),
        other => panic!("expected the pending limit, got {other:?}"),
    }
    c.close();
    for w in waiting {
        assert!(matches!(w.join().unwrap(), Err(ClientError::Closed)), "closing fails pending calls");
    }
    holder.join().unwrap();
}

pub fn call_deadline(kind: BackendKind) {
    // A server that never answers "slow" calls: the handler cannot hold a
    // response back, so a raw server plays that part.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&[0, 1, 0]).unwrap();
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let c = client(kind.client_kind(), addr, client_config(ProtocolConfig::default()));
    let start = Instant::now();
    let err = c.call_timeout(b"x", b"", Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(200));
    // The timed-out call no longer counts against the pending limit.
    assert_eq!(c.pending(), 0);
    c.close();
    holder.join().unwrap();
}

fn pool_blocking<D: Driver>(addr: std::net::SocketAddr) {
    let pool: fastwire_common::Pool<BlockingClientOf<D>> =
        fastwire_common::Pool::new(client_config(ProtocolConfig::default()), 3);
    // Idle: one connection is enough.
    for _ in 0..10 {
        assert_eq!(&*pool.client(addr).call(b"echo", b"p").unwrap(), b"re:p");
    }
    assert_eq!(pool.len(addr), 1);
    // Busy: it grows, up to 3.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..200 {
                    let calls: Vec<_> = (0..20).map(|_| pool.client(addr).start(b"echo", b"q").unwrap()).collect();
                    calls.into_iter().for_each(|c| assert_eq!(&*c.wait().unwrap(), b"re:q"));
                }
            });
        }
    });
    assert!((2..=3).contains(&pool.len(addr)), "{} connections", pool.len(addr));
    pool.close();
}

pub fn pool(kind: BackendKind) {
    let server = start(kind, server_config(ProtocolConfig::default()), handler);
    let addr = server.local_addr();
    match kind.client_kind() {
        BackendKind::Std => pool_blocking::<fastwire::fastwire_std::client::ThreadPair>(addr),
        BackendKind::Mio => pool_blocking::<fastwire::fastwire_mio::client::ReactorThread>(addr),
        BackendKind::Glommio => pool_blocking::<fastwire::fastwire_glommio::client::ExecutorThread>(addr),
        BackendKind::Uring => pool_blocking::<fastwire::fastwire_uring::client::RingThread>(addr),
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async {
                let pool = fastwire::fastwire_tokio::Pool::new(client_config(ProtocolConfig::default()), 3);
                for _ in 0..10 {
                    assert_eq!(&*pool.client(addr).call(b"echo", b"p").await.unwrap(), b"re:p");
                }
                assert_eq!(pool.len(addr), 1);
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..2000 {
                    // Pick the connection at call time, when the others' calls are pending.
                    let pool = pool.clone();
                    tasks.spawn(
                        async move { assert_eq!(&*pool.client(addr).call(b"echo", b"q").await.unwrap(), b"re:q") },
                    );
                }
                while let Some(r) = tasks.join_next().await {
                    r.unwrap();
                }
                assert!((2..=3).contains(&pool.len(addr)), "{} connections", pool.len(addr));
                pool.close();
            });
        }
    }
    // The pool never opened more than its 3 connections.
    assert!(server.stats().accepted <= 3, "{} connections accepted", server.stats().accepted);
    server.shutdown(Duration::from_secs(5));
}

/// `ServerConfig::batch_delay`: the first response of a batch waits out
/// the delay, and the response to a request that arrives meanwhile leaves
/// with it, in the same write.
pub fn batch_delay(kind: BackendKind) {
    let delay = Duration::from_millis(300);
    let config = ServerConfig { batch_delay: Some(delay), ..server_config(ProtocolConfig::default()) };
    let server = start(kind, config, handler);
    let mut s = raw(server.local_addr());
    frame::handshake(&mut s);
    s.write_all(&frame::request(1, b"echo", b"a")).unwrap();
    assert!(quiet_for(&mut s, delay / 3), "{kind}: a response left before batch_delay");
    s.write_all(&frame::request(2, b"echo", b"b")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Two responses of 8 + 4 bytes, in one read: one write carried both.
    let mut got = [0u8; 64];
    let n = s.read(&mut got).unwrap();
    let mut expected = Vec::new();
    for (id, value) in [(1u32, b"re:a"), (2, b"re:b")] {
        expected.extend_from_slice(&id.to_le_bytes());
        expected.extend_from_slice(&(value.len() as u32).to_le_bytes());
        expected.extend_from_slice(value);
    }
    assert_eq!(&got[..n], &expected[..], "{kind}: both responses in one batch");
    drop(s);
    server.shutdown(Duration::from_secs(5));
}
