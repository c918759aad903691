//! Helpers: servers on 127.0.0.1:0, raw sockets, a client written from the
//! wire specification alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwire::proto::{demo_handler, ClientConfig, Compression, Handler, ProtocolConfig, ServerConfig};
use fastwire_bench::backend::{self, BlockingClient, RunningServer};
use fastwire_bench::BackendKind;

/// Server settings for tests: short handshake timeout, so hostile cases end quickly.
pub fn server_config(protocol: ProtocolConfig) -> ServerConfig {
    ServerConfig { protocol, handshake_timeout: Duration::from_millis(500), ..ServerConfig::default() }
}

pub fn client_config(protocol: ProtocolConfig) -> ClientConfig {
    ClientConfig { protocol, call_timeout: Duration::from_secs(20), ..ClientConfig::default() }
}

pub fn protocol(compression: Compression) -> ProtocolConfig {
    ProtocolConfig { compression, ..ProtocolConfig::default() }
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn start<H: Handler + 'static>(kind: BackendKind, config: ServerConfig, handler: H) -> Box<dyn RunningServer> {
    backend::start_server(kind, localhost(), config, handler).expect("server starts")
}

/// Starts a server under test with a configuration and a handler: a
/// backend's ([`starter`]), or the tokio server serving a `tower::Service`.
pub type Starter<'a> = &'a dyn Fn(ServerConfig, Arc<dyn Handler>) -> Box<dyn RunningServer>;

/// `kind`'s server as a [`Starter`].
pub fn starter(kind: BackendKind) -> impl Fn(ServerConfig, Arc<dyn Handler>) -> Box<dyn RunningServer> {
    move |config, handler| start(kind, config, handler)
}

/// Makes a client of a server at an address.
pub type MakeClient = Box<dyn Fn(SocketAddr, ClientConfig) -> Box<dyn BlockingClient>>;

/// Every client a server must serve: each backend's, and the tokio client
/// called through `tower::Service`, each with its name.
pub fn every_client() -> Vec<(String, MakeClient)> {
    let mut all: Vec<(String, MakeClient)> = BackendKind::clients()
        .map(|kind| (kind.to_string(), Box::new(move |addr, config| client(kind, addr, config)) as MakeClient))
        .collect();
    all.push((
        "tower".into(),
        Box::new(|addr, config| Box::new(crate::tower::TowerClient::new(addr, config)) as Box<dyn BlockingClient>),
    ));
    all
}

pub fn start_demo(kind: BackendKind) -> Box<dyn RunningServer> {
    start(kind, server_config(ProtocolConfig::default()), demo_handler)
}

pub fn client(kind: BackendKind, addr: SocketAddr, config: ClientConfig) -> Box<dyn BlockingClient> {
    backend::blocking_client(kind, addr, config).expect("client")
}

/// A well-behaved client still gets served.
#[track_caller]
pub fn assert_still_serves(kind: BackendKind, server: &dyn RunningServer) {
    assert_still_serves_with(kind, server, ProtocolConfig::default())
}

/// A well-behaved client speaking `protocol` still gets served.
#[track_caller]
pub fn assert_still_serves_with(kind: BackendKind, server: &dyn RunningServer, protocol: ProtocolConfig) {
    let c = client(kind.client_kind(), server.local_addr(), client_config(protocol));
    let reply = c.call_timeout(b"echo", b"still here", Duration::from_secs(10)).expect("the server still serves");
    assert_eq!(&*reply, b"re:still here");
    c.close();
}

/// A raw connection with a read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset); returns what
/// it sent first, and closes our side too (as a real client does, which ends
/// the server's lingering close). Panics if it is still open after `within`.
#[track_caller]
pub fn expect_closed(mut stream: TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the server did not close the connection within {within:?}");
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

// A client written from the protocol reference alone (docs/src/wire-protocol.md),
// without the protocol crate: little-endian u32 lengths.

pub fn spec_request(id: u32, name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(name.len() as u32).to_le_bytes());
    v.extend_from_slice(name);
    v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// Reads one response (id, value) from an uncompressed stream.
pub fn spec_read_response(stream: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).unwrap();
    let id = u32::from_le_bytes(header[..4].try_into().unwrap());
    let len = u32::from_le_bytes(header[4..].try_into().unwrap()) as usize;
    let mut value = vec![0; len];
    stream.read_exact(&mut value).unwrap();
    (id, value)
}

/// Handshake (no sniff header, version 0, no compression, no TLS) and check the server's.
pub fn spec_handshake(stream: &mut TcpStream) {
    stream.write_all(&[0, 1, 0]).unwrap();
    let mut theirs = [0u8; 3];
    stream.read_exact(&mut theirs).unwrap();
    assert_eq!(theirs, [0, 1, 0], "version 0, no compression, no TLS");
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

/// Writes `batch` over and over without reading, until the server stops
/// reading (our writes block for 500 ms); returns the bytes written. Panics
/// if the server closes on us or keeps reading past 256 MiB (it would be
/// buffering without bound).
#[track_caller]
pub fn write_until_blocked(s: &mut TcpStream, batch: &[u8], kind: BackendKind) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut written = 0usize;
    loop {
        match s.write(batch) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return written
            }
            Err(e) => panic!("{kind}: the server closed on us: {e}"),
        }
        assert!(
            written < 256 * 1024 * 1024,
            "{kind}: the server kept reading {written} bytes from a client that never reads"
        );
    }
}

/// A client that never reads: it sends fastrpc calls until `server` stops
/// reading. Each 18-byte request makes a 269-byte response that is never
/// read; a server that buffered without bound would keep reading forever,
/// one that stops reading makes the writes block once the socket buffers
/// fill. Then the server still serves others, and shuts down.
#[track_caller]
pub fn assert_stops_reading_for_a_client_that_never_reads(kind: BackendKind, server: Box<dyn RunningServer>) {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&[0, 1, 0]).unwrap();
    let batch: Vec<u8> = (0..1000).flat_map(|i| spec_request(i + 1, b"", b"foobar")).collect();
    write_until_blocked(&mut s, &batch, kind);
    // Requests accepted before the server stopped reading: bounded by its
    // output limit plus the kernel's socket buffers, far below the total.
    let served = server.stats().requests;
    assert!(served < 2_000_000, "{kind}: served {served}");
    assert_still_serves(kind, &*server);
    drop(s);
    server.shutdown(Duration::from_secs(5));
}
