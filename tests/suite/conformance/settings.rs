//! One case per setting that the other scenarios leave untested, each on
//! every backend: what the setting's documentation promises, seen from
//! the other end of a real connection on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwire::proto::{demo_handler, ClientConfig, Compression, ProtocolConfig, Request, ResponseWriter, ServerConfig};
use fastwire::ClientError;
use fastwire_bench::{backend, BackendKind};

use super::util::*;

/// A listener whose accept queue is full: a connect to it hangs (the
/// kernel drops its SYNs) until the connecting side gives up.
fn full_listener() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&localhost().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (socket, addr, queued)
}

/// `ClientConfig::connect_timeout`: a connect the server never completes
/// fails after it, with a connection error, not after the kernel's retries.
pub fn client_connect_timeout(kind: BackendKind) {
    let (_listener, addr, _queued) = full_listener();
    let config =
        ClientConfig { connect_timeout: Duration::from_millis(300), ..client_config(ProtocolConfig::default()) };
    let c = client(kind.client_kind(), addr, config);
    let start = Instant::now();
    let err = c.call_timeout(b"echo", b"x", Duration::from_secs(20)).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{kind}: {err:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "{kind}: gave up after {:?}", start.elapsed());
    c.close();
}

/// `ClientConfig::handshake_timeout`: a server that accepts and never
/// answers the handshake is given up on after it, and the error says so.
pub fn client_handshake_timeout(kind: BackendKind) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let config =
        ClientConfig { handshake_timeout: Duration::from_millis(300), ..client_config(ProtocolConfig::default()) };
    let c = client(kind.client_kind(), addr, config);
    let start = Instant::now();
    let err = c.call_timeout(b"echo", b"x", Duration::from_secs(20)).unwrap_err();
    assert!(err.to_string().contains("handshake"), "{kind}: {err}");
    assert!(start.elapsed() < Duration::from_secs(5), "{kind}: gave up after {:?}", start.elapsed());
    c.close();
    silent.join().unwrap();
}

/// `ClientConfig::idle_timeout`: a connection with no call for that long
/// is closed by the client (the server sees it go), and the next call
/// connects again.
pub fn client_idle_timeout(kind: BackendKind) {
    let server = start_demo(kind);
    let config = ClientConfig { idle_timeout: Duration::from_millis(200), ..client_config(ProtocolConfig::default()) };
    let c = client(kind.client_kind(), server.local_addr(), config);
    assert_eq!(&*c.call_timeout(b"echo", b"a", Duration::from_secs(10)).unwrap(), b"re:a");
    eventually(Duration::from_secs(10), "the client closes its idle connection", || server.stats().open == 0);
    assert_eq!(&*c.call_timeout(b"echo", b"b", Duration::from_secs(10)).unwrap(), b"re:b");
    assert_eq!(server.stats().accepted, 2, "{kind}: one connection, then a new one");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// `reconnect_backoff` and `max_reconnect_backoff`: after a refused
/// connect, calls fail at once until the backoff is over; each refused
/// attempt doubles the backoff, up to its maximum; once the server is up,
/// a call after the backoff connects.
pub fn client_reconnect_backoff(kind: BackendKind) {
    // A port held by a socket that never listens: connects are refused.
    let (held, addr) = refusing_addr();
    let (first, max) = (Duration::from_millis(200), Duration::from_millis(800));
    let config = ClientConfig {
        reconnect_backoff: first,
        max_reconnect_backoff: max,
        ..client_config(ProtocolConfig::default())
    };
    let c = client(kind.client_kind(), addr, config);
    let call = || c.call_timeout(b"echo", b"x", Duration::from_secs(10));
    // Each attempt is refused; the call right after it fails at once with
    // the backoff's wait: 200 ms, 400 ms, then 800 ms twice (the maximum).
    // Only upper bounds and doubling are asserted: a stall between two
    // calls makes the wait shorter, never longer.
    let mut waits = Vec::new();
    for _ in 0..4 {
        let err = call().unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{kind}: an attempt, refused: {err:?}");
        match call().unwrap_err() {
            ClientError::Backoff { retry_in, .. } => waits.push(retry_in),
            other => panic!("{kind}: a call within the backoff fails at once, with Backoff: {other:?}"),
        }
        std::thread::sleep(waits.last().copied().unwrap_or_default() + Duration::from_millis(20));
    }
    let ms = |n| Duration::from_millis(n);
    assert!(waits[0] <= first, "{kind}: {waits:?}");
    assert!(waits[1] > first && waits[1] <= 2 * first, "{kind}: doubled: {waits:?}");
    assert!(waits[2] > ms(400) && waits[2] <= max, "{kind}: doubled: {waits:?}");
    assert!(waits[3] <= max, "{kind}: held to max_reconnect_backoff: {waits:?}");
    // The server comes up on that port: the next attempt connects.
    drop(held);
    let server = backend::start_server(kind, addr, server_config(ProtocolConfig::default()), demo_handler)
        .expect("a server on the port just freed");
    assert_eq!(&*call().expect("connected after the backoff"), b"re:x");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// `ClientConfig::batch_delay`: calls made within the delay leave in one
/// write, after it.
pub fn client_batch_delay(kind: BackendKind) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let delay = Duration::from_millis(300);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = [0u8; 3];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&[0, 1, 0]).unwrap();
        let mut got = [0u8; 256];
        let n = s.read(&mut got).unwrap();
        got[..n].to_vec()
    });
    let config = ClientConfig { batch_delay: Some(delay), ..client_config(ProtocolConfig::default()) };
    let c = client(kind.client_kind(), addr, config);
    c.send(b"note", b"1").unwrap();
    std::thread::sleep(delay / 3);
    c.send(b"note", b"2").unwrap();
    let got = server.join().unwrap();
    let expected = [frame::request(0, b"note", b"1"), frame::request(0, b"note", b"2")].concat();
    assert_eq!(got, expected, "{kind}: both fire-and-forget requests in one write");
    c.close();
}

/// `ClientConfig::buffer_size`: what a client's reads reserve and its
/// protocol buffers grow by, seen in its buffer capacity after small
/// calls: within a few times `buffer_size`, at 4 KiB as at the default.
pub fn client_buffer_size(kind: BackendKind) {
    let server = start_demo(kind);
    let mut peaks = Vec::new();
    for buffer_size in [4096, 64 * 1024] {
        let config = ClientConfig { buffer_size, ..client_config(ProtocolConfig::default()) };
        let c = client(kind.client_kind(), server.local_addr(), config);
        for i in 0..200 {
            let value = format!("{i:0100}");
            let reply = c.call_timeout(b"echo", value.as_bytes(), Duration::from_secs(10)).unwrap();
            assert_eq!(reply[3..], *value.as_bytes(), "{kind}");
        }
        peaks.push((buffer_size, c.stats().peak_buffer_capacity));
        c.close();
    }
    // The read buffer and the protocol's input buffer, each about one `buffer_size`.
    for (buffer_size, peak) in peaks {
        assert!(
            (buffer_size..=3 * buffer_size).contains(&peak),
            "{kind}: buffer_size {buffer_size}, peak capacity {peak}"
        );
    }
    server.shutdown(Duration::from_secs(5));
}

/// `ProtocolConfig::flate_level`: the server compresses its output at the
/// level it is given: stored at 0, small at 9.
pub fn flate_level(kind: BackendKind) {
    let value = vec![0u8; 200_000];
    let mut out = Vec::new();
    for level in [0, 9] {
        let protocol =
            ProtocolConfig { compression: Compression::Flate, flate_level: level, ..ProtocolConfig::default() };
        let server = start(kind, server_config(protocol.clone()), demo_handler);
        let c = client(kind.client_kind(), server.local_addr(), client_config(protocol));
        let reply = c.call_timeout(b"echo", &value, Duration::from_secs(20)).unwrap();
        assert_eq!(reply.len(), value.len() + 3);
        c.close();
        // Closed: the connection's last counts are in.
        eventually(Duration::from_secs(10), "the connection closes", || server.stats().open == 0);
        out.push(server.stats().bytes_out);
        server.shutdown(Duration::from_secs(5));
    }
    assert!(out[0] >= 200_000, "{kind}: level 0 stores ({} bytes out)", out[0]);
    assert!(out[1] < 20_000, "{kind}: level 9 compresses ({} bytes out)", out[1]);
}

/// `ServerConfig::buffer_size`: the batch at which a server that
/// compresses flushes its output early. A raw client sends 200 calls of
/// 1 KiB of noise in one write; the server's flate stream carries a sync
/// flush (`00 00 ff ff`) at least every `buffer_size` of answers at 4 KiB
/// (about 200 KiB of them: at least 35 flushes), and fewer at the
/// default 64 KiB, however the backend happened to read the batch.
pub fn server_buffer_size(kind: BackendKind) {
    const CALLS: u32 = 200;
    let noise = |id: u32| -> Vec<u8> {
        let mut x = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let answers: usize = (1..=CALLS).map(|id| 8 + frame::demo_answer(b"echo", &noise(id)).len()).sum();
    let mut flushes = Vec::new();
    for buffer_size in [4096, 64 * 1024] {
        let protocol = ProtocolConfig { compression: Compression::Flate, ..ProtocolConfig::default() };
        let server = start(kind, ServerConfig { buffer_size, ..server_config(protocol) }, demo_handler);
        let mut s = raw(server.local_addr());
        s.write_all(&frame::PLAIN).unwrap();
        assert_eq!(frame::read_handshake(&mut s), Some([0, 0, 0]), "{kind}: flate, no TLS");
        let batch: Vec<u8> = (1..=CALLS).flat_map(|id| frame::request(id, b"echo", &noise(id))).collect();
        s.write_all(&batch).unwrap();
        // Read until the stream inflates to every answer.
        let (mut wire, mut chunk) = (Vec::new(), vec![0u8; 64 * 1024]);
        let plain = loop {
            let n = s.read(&mut chunk).expect("the answers within the read timeout");
            assert!(n > 0, "{kind}: the server closed before answering");
            wire.extend_from_slice(&chunk[..n]);
            let mut plain = Vec::with_capacity(2 * answers);
            let mut inflate = flate2::Decompress::new(false);
            inflate.decompress_vec(&wire, &mut plain, flate2::FlushDecompress::Sync).expect("a valid flate stream");
            if plain.len() >= answers {
                break plain;
            }
        };
        assert_eq!(plain.len(), answers, "{kind}: every answer, nothing more");
        let mut at = 0;
        for id in 1..=CALLS {
            let (got, value) = frame::read_response(&mut &plain[at..]);
            assert_eq!((got, value.as_slice()), (id, frame::demo_answer(b"echo", &noise(id)).as_slice()), "{kind}");
            at += 8 + value.len();
        }
        flushes.push(wire.windows(4).filter(|w| *w == [0, 0, 0xff, 0xff]).count());
        drop(s);
        server.shutdown(Duration::from_secs(5));
    }
    assert!(flushes[0] >= 35, "{kind}: {} flushes at 4 KiB", flushes[0]);
    assert!(flushes[0] > flushes[1], "{kind}: flushes at 4 KiB and 64 KiB: {flushes:?}");
}

/// `ServerConfig::blocking_threads`: a blocking handler runs on that many
/// worker threads at most, and on all of them when calls wait.
pub fn blocking_threads(kind: BackendKind) {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (Arc::clone(&now), Arc::clone(&most));
    let handler = move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        let running = n.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(running, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        n.fetch_sub(1, Ordering::SeqCst);
        resp.extend_from_slice(req.value);
    };
    let config = ServerConfig { blocking_threads: 2, ..server_config(ProtocolConfig::default()) };
    let server = backend::start_blocking(kind, localhost(), config, handler).expect("server starts");
    let mut s = raw(server.local_addr());
    frame::handshake(&mut s);
    let batch: Vec<u8> = (1..=6u32).flat_map(|id| frame::request(id, b"work", &id.to_le_bytes())).collect();
    s.write_all(&batch).unwrap();
    let mut ids: Vec<u32> = (0..6).map(|_| frame::read_response(&mut s).0).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(most.load(Ordering::SeqCst), 2, "{kind}: two worker threads, both busy");
    drop(s);
    server.shutdown(Duration::from_secs(5));
}
