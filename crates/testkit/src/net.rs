//! Raw sockets and waiting, with every wait bounded.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A local address where connects are refused, held for the caller while
/// the returned socket lives: a socket bound to a free port of 127.0.0.1
/// that never listens. Without `SO_REUSEADDR` nothing else can bind the
/// port meanwhile; binding a listener, noting its port and closing it
/// instead would hand the port back to any test running beside, whose
/// server could then answer the connects that were to be refused.
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind 127.0.0.1");
    let addr = socket.local_addr().expect("its address").as_socket().expect("an IP address");
    (socket, addr)
}

/// A raw connection with a read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the peer closes the connection (EOF or reset); returns what
/// it sent first, and closes our side too (as a real client does, which ends
/// a server's lingering close). Panics if it is still open after `within`.
#[track_caller]
pub fn expect_closed(mut stream: TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the peer did not close the connection within {within:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

/// Whether the connection stays quiet for `wait`: nothing arrives and it is not closed.
pub fn quiet_for(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        // Bytes (any number) or end-of-stream: not quiet.
        Ok(_n) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Reads whatever the peer sends until it is quiet for `quiet` (so that
/// closing then sends a FIN, not a reset for unread bytes).
pub fn drain(s: &mut TcpStream, quiet: Duration) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Keeps the connection open, reading and ignoring, until the peer
/// closes it or `lifetime` passes without a byte.
pub fn hold(mut s: TcpStream, lifetime: Duration) {
    s.set_read_timeout(Some(lifetime)).unwrap();
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Waits until `cond` holds, polling; panics after `within`.
#[track_caller]
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long a write must block before [`write_until_blocked`] takes the
/// peer to have stopped reading.
pub const BLOCKED: Duration = Duration::from_millis(500);

/// Writes `batch` over and over without reading, until the peer stops
/// reading (a write blocks for [`BLOCKED`]); returns the bytes written.
/// Panics if the peer closes on us or keeps reading past 256 MiB (it would
/// be buffering without bound). `who` names the peer in the messages.
#[track_caller]
pub fn write_until_blocked(s: &mut TcpStream, batch: &[u8], who: impl Display) -> usize {
    s.set_write_timeout(Some(BLOCKED)).unwrap();
    let mut written = 0usize;
    loop {
        match s.write(batch) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return written
            }
            Err(e) => panic!("{who}: the server closed on us: {e}"),
        }
        assert!(
            written < 256 * 1024 * 1024,
            "{who}: the server kept reading {written} bytes from a client that never reads"
        );
    }
}
