//! Clients that break the protocol or the rules. Each time the server must
//! close that connection (or hold it within its limits) and keep serving a
//! well-behaved client.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fastwire::proto::compress::SnappyEncoder;
use fastwire::proto::{demo_handler, ProtocolConfig, ServerConfig};
use fastwire::Refusal;
use fastwire_bench::BackendKind;

use super::util::*;

const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Sends `bytes` to a new server of `kind`, which must close the
/// connection (counted as a protocol error, and as `refusal` if it was
/// refused at its handshake) and still serve others; returns what it sent.
fn closes_on(kind: BackendKind, config: ServerConfig, bytes: &[u8], refusal: Option<Refusal>) -> Vec<u8> {
    let protocol = config.protocol.clone();
    let server = start(kind, config, demo_handler);
    let mut s = raw(server.local_addr());
    s.write_all(bytes).unwrap();
    let got = expect_closed(s, CLOSE_WITHIN);
    assert_still_serves_with(kind, &*server, protocol);
    eventually(Duration::from_secs(5), "the bad connection is gone", || server.stats().open == 0);
    let stats = server.stats();
    assert!(stats.protocol_errors >= 1, "{kind}: counted as a protocol error");
    match refusal {
        Some(reason) => assert_eq!(stats.refused.get(reason), 1, "{kind}: counted as {reason}: {}", stats.refused),
        None => assert_eq!(stats.refused.total(), 0, "{kind}: an error after the handshake is no refusal"),
    }
    server.shutdown(Duration::from_secs(5));
    got
}

fn demo_config() -> ServerConfig {
    server_config(ProtocolConfig::default())
}

pub fn garbage(kind: BackendKind) {
    // An HTTP request: 'G' is not protocol version 0.
    assert!(closes_on(kind, demo_config(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(Refusal::Handshake)).is_empty());
    // A valid handshake, then noise whose first length field is enormous.
    let mut noise = vec![0, 1, 0];
    noise.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80));
    assert_eq!(closes_on(kind, demo_config(), &noise, None), [0, 1, 0], "our handshake, then close");
}

pub fn wrong_version(kind: BackendKind) {
    assert!(
        closes_on(kind, demo_config(), &[7, 1, 0], Some(Refusal::Handshake)).is_empty(),
        "nothing is answered to a wrong version"
    );
}

pub fn wrong_sniff(kind: BackendKind) {
    let config = server_config(ProtocolConfig { sniff_header: b"xy".to_vec(), ..ProtocolConfig::default() });
    assert!(closes_on(kind, config, b"xz\0\x01\0", Some(Refusal::Handshake)).is_empty());
}

pub fn unknown_compression(kind: BackendKind) {
    assert!(closes_on(kind, demo_config(), &[0, 9, 0], Some(Refusal::Handshake)).is_empty());
}

pub fn tls_requested(kind: BackendKind) {
    // As Go's server without TLS: answer "no TLS", then close.
    assert_eq!(closes_on(kind, demo_config(), &[0, 1, 1], Some(Refusal::TlsNotServed)), [0, 1, 0]);
}

pub fn oversized_name(kind: BackendKind) {
    let mut bytes = vec![0, 1, 0];
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&(1024 * 1024 + 1u32).to_le_bytes());
    // Only the length: the server refuses without waiting for a megabyte.
    assert_eq!(closes_on(kind, demo_config(), &bytes, None), [0, 1, 0]);
}

pub fn oversized_value(kind: BackendKind) {
    let mut bytes = vec![0, 1, 0];
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(closes_on(kind, demo_config(), &bytes, None), [0, 1, 0]);
}

pub fn truncated_then_closed(kind: BackendKind) {
    let server = start_demo(kind);
    let mut s = raw(server.local_addr());
    let request = frame::request(1, b"echo", b"cut short");
    s.write_all(&[0, 1, 0]).unwrap();
    s.write_all(&request[..request.len() - 4]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // The server answers the handshake and closes: the request never completed.
    assert_eq!(expect_closed(s, CLOSE_WITHIN), [0, 1, 0]);
    assert_still_serves(kind, &*server);
    eventually(Duration::from_secs(5), "the connection is gone", || server.stats().open == 0);
    assert_eq!(server.stats().requests, 1, "only the well-behaved call was served");
    server.shutdown(Duration::from_secs(5));
}

pub fn reset_mid_message(kind: BackendKind) {
    let server = start_demo(kind);
    for _ in 0..20 {
        let mut s = raw(server.local_addr());
        let request = frame::request(1, b"echo", &[7u8; 10_000]);
        s.write_all(&[0, 1, 0]).unwrap();
        s.write_all(&request[..5_000]).unwrap();
        // SO_LINGER 0: closing sends a reset instead of a FIN.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    assert_still_serves(kind, &*server);
    eventually(Duration::from_secs(5), "the reset connections are gone", || server.stats().open == 0);
    server.shutdown(Duration::from_secs(5));
}

pub fn corrupt_flate(kind: BackendKind) {
    // Handshake announcing flate, then a DEFLATE block of the reserved type 3.
    assert_eq!(closes_on(kind, demo_config(), &[0, 0, 0, 0xff, 0xff, 0xff, 0xff], None), [0, 1, 0]);
}

pub fn corrupt_snappy(kind: BackendKind) {
    let mut framed = bytes::BytesMut::new();
    SnappyEncoder::new().encode(&frame::request(1, b"echo", b"crc"), &mut framed);
    let mut bytes = vec![0, 2, 0];
    bytes.extend_from_slice(&framed);
    *bytes.last_mut().unwrap() ^= 0x20; // the CRC no longer matches
    assert_eq!(closes_on(kind, demo_config(), &bytes, None), [0, 1, 0]);
}

pub fn never_finishes_handshake(kind: BackendKind) {
    let server = start_demo(kind); // handshake_timeout: 500 ms
    let mut s = raw(server.local_addr());
    s.write_all(&[0]).unwrap(); // one byte of three
    let start = Instant::now();
    assert!(quiet_for(&mut s, Duration::from_millis(100)), "not closed before the timeout");
    assert!(expect_closed(s, CLOSE_WITHIN).is_empty());
    assert!(start.elapsed() >= Duration::from_millis(400), "closed after about handshake_timeout");
    // And a connection that sends nothing at all.
    let silent = raw(server.local_addr());
    assert!(expect_closed(silent, CLOSE_WITHIN).is_empty());
    assert_still_serves(kind, &*server);
    let refused = server.stats().refused;
    assert_eq!((refused.handshake_timeout, refused.total()), (2, 2), "{kind}: {refused}");
    server.shutdown(Duration::from_secs(5));
}

pub fn never_reads(kind: BackendKind) {
    let config = ServerConfig { max_output_buffer: 256 * 1024, ..demo_config() };
    assert_stops_reading_for_a_client_that_never_reads(kind, start(kind, config, demo_handler));
}

/// `ServerConfig::idle_timeout` for a client that stopped reading: once
/// its answers fill the socket and make no progress for `idle_timeout`, the
/// server closes the connection (it cannot drain, so it does not linger),
/// and not before: its output could not have stopped before it was made.
pub fn stopped_reading_is_cut_off(kind: BackendKind) {
    let idle = Duration::from_millis(800);
    let config = ServerConfig { idle_timeout: Some(idle), max_output_buffer: 256 * 1024, ..demo_config() };
    let server = start(kind, config, demo_handler);
    let connected = Instant::now();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&frame::PLAIN).unwrap();
    // Calls until the server cuts us off (our writes block meanwhile, once
    // its output and the socket buffers are full).
    s.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let batch: Vec<u8> = (0..1000).flat_map(|i| frame::request(i + 1, b"", b"foobar")).collect();
    let cut = loop {
        assert!(connected.elapsed() < Duration::from_secs(10), "{kind}: the stuck connection was not closed");
        match s.write(&batch) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break connected.elapsed(),
        }
    };
    assert!(cut >= idle, "{kind}: cut off after {cut:?}, before idle_timeout ({idle:?})");
    eventually(Duration::from_secs(10), "the connection is counted closed", || server.stats().open == 0);
    drop(s);
    assert_still_serves(kind, &*server);
    server.shutdown(Duration::from_secs(5));
}

pub fn connect_close_cycles(kind: BackendKind) {
    let server = start_demo(kind);
    for _ in 0..1000 {
        drop(TcpStream::connect(server.local_addr()).unwrap());
    }
    eventually(Duration::from_secs(10), "all 1,000 connections accepted and closed", || {
        let stats = server.stats();
        stats.accepted >= 1000 && stats.open == 0
    });
    assert_still_serves(kind, &*server);
    server.shutdown(Duration::from_secs(5));
}

pub fn over_connection_limit(kind: BackendKind) {
    let config = ServerConfig { max_connections: 3, ..demo_config() };
    let server = start(kind, config, demo_handler);
    let mut held: Vec<TcpStream> = (0..3).map(|_| raw(server.local_addr())).collect();
    for s in &mut held {
        frame::handshake(s);
    }
    // The fourth is accepted and closed at once.
    let mut fourth = raw(server.local_addr());
    let _ = fourth.write_all(&[0, 1, 0]);
    assert!(expect_closed(fourth, CLOSE_WITHIN).is_empty());
    assert!(server.stats().refused.connection_limit >= 1);
    // The three held connections still work.
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(&frame::request(i as u32 + 1, b"echo", b"held")).unwrap();
        assert_eq!(frame::read_response(s), (i as u32 + 1, b"re:held".to_vec()));
    }
    drop(held);
    eventually(Duration::from_secs(5), "the slots are free again", || server.stats().open == 0);
    assert_still_serves(kind, &*server);
    server.shutdown(Duration::from_secs(5));
}
