//! TLS on every backend: every client against every server over TLS with
//! each compression, mutual TLS, and the hostile cases (garbage records, a
//! TLS handshake that never finishes, plaintext to a TLS-required server, TLS
//! to a plaintext server, a certificate for the wrong name or from an
//! unknown authority, a TLS client that never reads). Certificates are made
//! at test time (`fastwire_bench::tls::TestPki`); no key is committed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fastwire::proto::driver::Connection;
use fastwire::proto::{
    demo_handler, ClientConfig, ClientConn, Compression, Error, HandshakeError, ProtocolConfig, ServerConfig, TlsError,
};
use fastwire::ClientError;
use fastwire_bench::tls::{TestPki, SERVER_NAME};
use fastwire_bench::BackendKind;

use super::util::*;

/// A TLS server. Its handshake timeout covers the TLS handshake too, which
/// takes a client several scheduling turns (and some crypto): on a loaded
/// machine the suite's 500 ms could end it before the client had said
/// anything, and the client would see the server's close instead of the
/// verdict a test expects. The tests of the timeout itself set their own.
fn tls_server(compression: Compression) -> ServerConfig {
    ServerConfig {
        tls: Some(TestPki::shared().server()),
        handshake_timeout: Duration::from_secs(10),
        ..server_config(protocol(compression))
    }
}

fn tls_client(compression: Compression) -> ClientConfig {
    ClientConfig { tls: Some(TestPki::shared().client(SERVER_NAME)), ..client_config(protocol(compression)) }
}

/// A call's error as the protocol error it carries.
#[track_caller]
fn protocol_error(result: Result<fastwire::Reply, ClientError>, what: &str) -> Error {
    match result {
        Err(ClientError::Protocol(e)) => e,
        other => panic!("{what}: expected a protocol error, got {other:?}"),
    }
}

pub fn every_client_every_compression(kind: BackendKind) {
    let t = Duration::from_secs(20);
    for server_c in Compression::ALL {
        let server = start(kind, tls_server(server_c), demo_handler);
        for client_kind in BackendKind::clients() {
            for client_c in [server_c, Compression::None] {
                let what = format!("{client_kind} client ({client_c}+tls) -> {kind} server ({server_c}+tls)");
                let c = client(client_kind, server.local_addr(), tls_client(client_c));
                assert_eq!(&*c.call_timeout(b"echo", b"hello", t).expect(&what), b"re:hello", "{what}");
                let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
                let reply = c.call_timeout(b"echo", &big, t).expect(&what);
                assert!(reply.len() == big.len() + 3 && reply[3..] == big[..], "{what}: 100 KB echo");
                c.close();
            }
        }
        assert_eq!(server.stats().protocol_errors, 0, "{kind}");
        server.shutdown(Duration::from_secs(5));
    }
}

pub fn mutual(kind: BackendKind) {
    let pki = TestPki::shared();
    let config = ServerConfig { tls: Some(pki.server_mutual()), ..tls_server(Compression::None) };
    let server = start(kind, config, demo_handler);
    for client_kind in BackendKind::clients() {
        let with_identity = ClientConfig { tls: Some(pki.client_mutual(SERVER_NAME)), ..tls_client(Compression::None) };
        let c = client(client_kind, server.local_addr(), with_identity);
        let reply = c.call_timeout(b"echo", b"me", Duration::from_secs(10)).expect("a client with a certificate");
        assert_eq!(&*reply, b"re:me");
        c.close();
        // Without a certificate: the server refuses, and says so in an alert.
        let c = client(client_kind, server.local_addr(), tls_client(Compression::None));
        let e = protocol_error(
            c.call_timeout(b"echo", b"x", Duration::from_secs(10)),
            &format!("{client_kind}: no client certificate"),
        );
        assert!(matches!(e, Error::Tls(TlsError::AlertReceived { .. })), "{client_kind}: {e}");
        assert!(e.to_string().contains("--tls-client-cert"), "{client_kind}: names the setting: {e}");
        c.close();
    }
    assert!(server.stats().protocol_errors >= 1, "{kind}: counted");
    server.shutdown(Duration::from_secs(5));
}

pub fn plaintext_client_to_tls_server(kind: BackendKind) {
    let server = start(kind, tls_server(Compression::None), demo_handler);
    // On the wire: "this server speaks TLS", then the close.
    let mut s = raw(server.local_addr());
    s.write_all(&[0, 1, 0]).unwrap();
    assert_eq!(expect_closed(s, Duration::from_secs(10)), [0, 1, 1]);
    // A fastwire client is told why.
    for client_kind in BackendKind::clients() {
        let c = client(client_kind, server.local_addr(), client_config(ProtocolConfig::default()));
        let e = protocol_error(c.call_timeout(b"echo", b"x", Duration::from_secs(10)), "plaintext to TLS");
        assert_eq!(e, HandshakeError::TlsRequired.into(), "{client_kind}");
        c.close();
    }
    eventually(Duration::from_secs(5), "the refused connections are gone", || server.stats().open == 0);
    let stats = server.stats();
    assert!(stats.protocol_errors >= 1, "{kind}: counted as a protocol error");
    let refused = stats.refused;
    assert!(refused.tls_required >= 1 && refused.tls_required == refused.total(), "{kind}: {refused}");
    // tls_optional: plaintext served as Go's server does, TLS still served.
    server.shutdown(Duration::from_secs(5));
    let optional = ServerConfig { tls_optional: true, ..tls_server(Compression::None) };
    let server = start(kind, optional, demo_handler);
    assert_still_serves(kind, &*server);
    let c = client(kind.client_kind(), server.local_addr(), tls_client(Compression::None));
    assert_eq!(&*c.call_timeout(b"echo", b"tls", Duration::from_secs(10)).unwrap(), b"re:tls");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

pub fn tls_client_to_plaintext_server(kind: BackendKind) {
    let server = start_demo(kind);
    for client_kind in BackendKind::clients() {
        let c = client(client_kind, server.local_addr(), tls_client(Compression::None));
        let e = protocol_error(c.call_timeout(b"echo", b"x", Duration::from_secs(10)), "TLS to plaintext");
        assert_eq!(e, HandshakeError::TlsRefused.into(), "{client_kind}");
        c.close();
    }
    assert_still_serves(kind, &*server);
    server.shutdown(Duration::from_secs(5));
}

pub fn wrong_name_or_unknown_authority(kind: BackendKind) {
    let server = start(kind, tls_server(Compression::None), demo_handler);
    let stranger = TestPki::generate(); // another authority, same names
    let wrong_name =
        ClientConfig { tls: Some(TestPki::shared().client("elsewhere.test")), ..tls_client(Compression::None) };
    let unknown_ca = ClientConfig { tls: Some(stranger.client(SERVER_NAME)), ..tls_client(Compression::None) };
    for client_kind in BackendKind::clients() {
        for (config, what, setting) in
            [(&wrong_name, "wrong name", "--tls-server-name"), (&unknown_ca, "unknown authority", "--tls-ca")]
        {
            let c = client(client_kind, server.local_addr(), config.clone());
            let e = protocol_error(c.call_timeout(b"echo", b"secret", Duration::from_secs(10)), what);
            assert!(matches!(e, Error::Tls(TlsError::Certificate { .. })), "{client_kind}, {what}: {e}");
            assert!(e.to_string().contains(setting), "{client_kind}, {what}: the message names {setting}: {e}");
            c.close();
        }
    }
    // A refused handshake backs the client off: the next call within the
    // backoff is not another handshake, and still says why.
    for client_kind in BackendKind::clients() {
        let config = ClientConfig { reconnect_backoff: Duration::from_secs(30), ..unknown_ca.clone() };
        let c = client(client_kind, server.local_addr(), config);
        protocol_error(c.call_timeout(b"echo", b"x", Duration::from_secs(10)), "first call");
        let accepted = server.stats().accepted;
        match c.call_timeout(b"echo", b"x", Duration::from_secs(10)) {
            Err(e @ ClientError::Backoff { .. }) => {
                assert!(e.to_string().contains("certificate"), "{client_kind}: {e}")
            }
            other => panic!("{client_kind}: expected a backoff, got {other:?}"),
        }
        assert_eq!(server.stats().accepted, accepted, "{client_kind}: no second connection");
        c.close();
        // Refused again after the wait: the next wait is longer (a
        // connection counts as made only once its handshake is done).
        let config = ClientConfig { reconnect_backoff: Duration::from_millis(300), ..unknown_ca.clone() };
        let c = client(client_kind, server.local_addr(), config);
        protocol_error(c.call_timeout(b"echo", b"x", Duration::from_secs(10)), "first call");
        std::thread::sleep(Duration::from_millis(350));
        protocol_error(c.call_timeout(b"echo", b"x", Duration::from_secs(10)), "after the backoff");
        match c.call_timeout(b"echo", b"x", Duration::from_secs(10)) {
            Err(ClientError::Backoff { retry_in, .. }) => {
                assert!(retry_in > Duration::from_millis(300), "{client_kind}: the backoff doubled: {retry_in:?}")
            }
            other => panic!("{client_kind}: expected a backoff, got {other:?}"),
        }
        c.close();
    }
    // Each refused handshake is the server's protocol error too (the
    // client's alert), and nothing was served.
    eventually(Duration::from_secs(5), "the refused connections are gone", || server.stats().open == 0);
    let stats = server.stats();
    assert_eq!(stats.requests, 0, "{kind}: no call reached the handler");
    assert!(stats.protocol_errors >= 2, "{kind}: {stats:?}");
    assert!(stats.refused.tls >= 2 && stats.refused.tls == stats.refused.total(), "{kind}: {}", stats.refused);
    server.shutdown(Duration::from_secs(5));
}

pub fn garbage_records(kind: BackendKind) {
    let server = start(kind, tls_server(Compression::None), demo_handler);
    for garbage in
        [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..], &[0x17; 64][..]]
    {
        let mut s = raw(server.local_addr());
        let mut bytes = vec![0, 1, 1];
        bytes.extend_from_slice(garbage);
        s.write_all(&bytes).unwrap();
        let got = expect_closed(s, Duration::from_secs(10));
        assert_eq!(got[..3], [0, 1, 1], "{kind}: our handshake first");
        assert!(got.len() == 3 || got[3] == 0x15, "{kind}: then at most an alert record: {got:?}");
    }
    // A real handshake, then garbage inside the session.
    let pki = TestPki::shared();
    let mut s = raw(server.local_addr());
    let _session =
        handshake_by_hand(&mut s, ClientConfig { tls: Some(pki.client(SERVER_NAME)), ..ClientConfig::default() });
    s.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20]).unwrap();
    s.write_all(&[0xAB; 32]).unwrap(); // an application-data record no key made
    expect_closed(s, Duration::from_secs(10));
    eventually(Duration::from_secs(5), "the bad connections are gone", || server.stats().open == 0);
    assert!(server.stats().protocol_errors >= 4, "{kind}: counted");
    let c = client(kind.client_kind(), server.local_addr(), tls_client(Compression::None));
    assert_eq!(&*c.call_timeout(b"echo", b"ok", Duration::from_secs(10)).unwrap(), b"re:ok");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

pub fn handshake_never_finishes(kind: BackendKind) {
    let config = ServerConfig { handshake_timeout: Duration::from_millis(500), ..tls_server(Compression::None) };
    let server = start(kind, config, demo_handler);
    // Asks for TLS, then sends half a ClientHello and waits.
    let mut s = raw(server.local_addr());
    let mut conn = ClientConn::<()>::new(&tls_client(Compression::None));
    s.write_all(conn.output()).unwrap();
    let mut theirs = [0u8; 3];
    s.read_exact(&mut theirs).unwrap();
    assert_eq!(theirs, [0, 1, 1]);
    conn.advance_output(3);
    conn.received(&theirs);
    conn.process(|_, ()| {}).unwrap();
    let hello = conn.output().to_vec();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    let start = Instant::now();
    assert!(quiet_for(&mut s, Duration::from_millis(100)), "{kind}: not closed before the timeout");
    expect_closed(s, Duration::from_secs(10));
    assert!(start.elapsed() >= Duration::from_millis(350), "{kind}: closed after about handshake_timeout");
    eventually(Duration::from_secs(5), "the connection is gone", || server.stats().open == 0);
    let refused = server.stats().refused;
    assert_eq!((refused.handshake_timeout, refused.total()), (1, 1), "{kind}: {refused}");
    server.shutdown(Duration::from_secs(5));
}

pub fn never_reads(kind: BackendKind) {
    let config = ServerConfig { max_output_buffer: 256 * 1024, ..tls_server(Compression::None) };
    let server = start(kind, config, demo_handler);
    let mut s = raw(server.local_addr());
    let config = ClientConfig { max_pending: 2000, ..tls_client(Compression::None) };
    let mut conn = handshake_by_hand(&mut s, config);
    // Calls whose responses are never read; each batch is new ciphertext.
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut written = 0usize;
    'writing: loop {
        for _ in 0..1000 {
            let id = conn.start_call(b"", b"foobar", ()).unwrap();
            conn.cancel(id);
        }
        while conn.has_output() {
            match s.write(conn.output()) {
                Ok(n) => {
                    conn.advance_output(n);
                    written += n;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    break 'writing
                }
                Err(e) => panic!("{kind}: the server closed on us: {e}"),
            }
        }
        assert!(written < 256 * 1024 * 1024, "{kind}: the server kept reading {written} bytes");
    }
    let served = server.stats().requests;
    assert!(served < 2_000_000, "{kind}: served {served}");
    let c = client(kind.client_kind(), server.local_addr(), tls_client(Compression::None));
    assert_eq!(&*c.call_timeout(b"echo", b"others", Duration::from_secs(10)).unwrap(), b"re:others");
    c.close();
    drop(s);
    server.shutdown(Duration::from_secs(5));
}

/// A client connection driven by hand over a blocking socket, up to an
/// established TLS session.
fn handshake_by_hand(s: &mut TcpStream, config: ClientConfig) -> ClientConn<()> {
    let mut conn = ClientConn::new(&config);
    let mut buf = [0u8; 16 * 1024];
    while !conn.is_handshake_done() {
        while conn.has_output() {
            let n = s.write(conn.output()).unwrap();
            conn.advance_output(n);
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during the handshake");
        conn.received(&buf[..n]);
        conn.process(|_, ()| {}).unwrap();
    }
    while conn.has_output() {
        let n = s.write(conn.output()).unwrap();
        conn.advance_output(n);
    }
    conn
}
