//! TLS inside the state machines, byte for byte in memory: a client and a
//! server connection exchange what each outputs, as two sockets would.
#![cfg(feature = "tls")]

use fastwire_proto::driver::Connection;
use fastwire_proto::tls::{TlsClient, TlsServer};
use fastwire_proto::{
    demo_handler, ClientConfig, ClientConn, Compression, Error, HandshakeError, ProtocolConfig, ServerConfig,
    ServerConn, TlsError,
};

struct Pki {
    cert: String,
    key: String,
}

fn pki(name: &str) -> Pki {
    let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    Pki { cert: made.cert.pem(), key: made.key_pair.serialize_pem() }
}

fn server_config(pki: &Pki, compression: Compression) -> ServerConfig {
    ServerConfig {
        protocol: ProtocolConfig { compression, ..ProtocolConfig::default() },
        tls: Some(TlsServer::from_pem(pki.cert.as_bytes(), pki.key.as_bytes(), None).unwrap()),
        ..ServerConfig::default()
    }
}

fn client_config(ca: &Pki, name: &str, compression: Compression) -> ClientConfig {
    ClientConfig {
        protocol: ProtocolConfig { compression, ..ProtocolConfig::default() },
        tls: Some(TlsClient::from_pem(Some(ca.cert.as_bytes()), name, None).unwrap()),
        ..ClientConfig::default()
    }
}

/// The responses the client got (token, value), and the first error of the
/// server and of the client.
type Exchanged = (Vec<(u32, Vec<u8>)>, Option<Error>, Option<Error>);

/// Moves bytes both ways until neither side has anything to say.
fn exchange(server: &mut ServerConn, client: &mut ClientConn<u32>) -> Exchanged {
    let mut got = Vec::new();
    let (mut server_error, mut client_error) = (None, None);
    for _ in 0..50 {
        let to_server = client.output().to_vec();
        client.advance_output(to_server.len());
        server.received(&to_server);
        if server_error.is_none() {
            server_error = server.process(&demo_handler).err();
        }
        let to_client = server.output().to_vec();
        server.advance_output(to_client.len());
        client.received(&to_client);
        if client_error.is_none() {
            client_error = client.process(|r, token| got.push((token, r.value.to_vec()))).err();
        }
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
    (got, server_error, client_error)
}

#[test]
fn calls_over_tls_with_every_compression() {
    let pki = pki("fastwire.test");
    for server_c in Compression::ALL {
        for client_c in Compression::ALL {
            let mut server = ServerConn::new(&server_config(&pki, server_c));
            let mut client = ClientConn::new(&client_config(&pki, "fastwire.test", client_c));
            // Calls made before any TLS: they wait for the session.
            client.start_call(b"echo", b"early", 1).unwrap();
            assert_eq!(client.output().len(), 3, "only the handshake goes out before TLS");
            assert_eq!(client.output()[2], 1, "the client asks for TLS");
            let (got, se, ce) = exchange(&mut server, &mut client);
            assert_eq!((se, ce), (None, None));
            assert!(client.is_handshake_done() && server.is_handshake_done());
            assert_eq!(got, [(1, b"re:early".to_vec())], "{server_c}/{client_c}");
            for i in 2..100u32 {
                client.start_call(b"echo", &i.to_le_bytes(), i).unwrap();
            }
            let (got, se, ce) = exchange(&mut server, &mut client);
            assert_eq!((se, ce), (None, None));
            assert_eq!(got.len(), 98);
            assert!(got.iter().all(|(i, v)| v[3..] == i.to_le_bytes()));
            // Both count the bytes on the wire, TLS records included.
            assert_eq!(client.bytes_out(), server.bytes_in());
            assert_eq!(server.bytes_out(), client.bytes_in());
            // What goes on the wire is not the plaintext.
            client.start_call(b"echo", b"secret-value", 500).unwrap();
            let wire = client.output().to_vec();
            assert!(!wire.windows(12).any(|w| w == b"secret-value"));
        }
    }
}

#[test]
fn plaintext_client_to_tls_server_is_refused_both_ways() {
    let pki = pki("fastwire.test");
    let mut server = ServerConn::new(&server_config(&pki, Compression::None));
    let mut client = ClientConn::<u32>::new(&ClientConfig::default());
    client.start_call(b"echo", b"x", 1).unwrap();
    let (got, se, ce) = exchange(&mut server, &mut client);
    assert!(got.is_empty());
    assert_eq!(se, Some(HandshakeError::TlsRequired.into()));
    assert_eq!(ce, Some(HandshakeError::TlsRequired.into()));
}

#[test]
fn tls_optional_serves_plaintext_as_go_does() {
    let pki = pki("fastwire.test");
    let config = ServerConfig { tls_optional: true, ..server_config(&pki, Compression::None) };
    let mut server = ServerConn::new(&config);
    let mut client = ClientConn::<u32>::new(&ClientConfig::default());
    client.start_call(b"echo", b"x", 1).unwrap();
    let (got, se, ce) = exchange(&mut server, &mut client);
    assert_eq!((got, se, ce), (vec![(1, b"re:x".to_vec())], None, None));
}

#[test]
fn tls_client_to_plaintext_server_is_refused() {
    let pki = pki("fastwire.test");
    let mut server = ServerConn::new(&ServerConfig::default());
    let mut client = ClientConn::new(&client_config(&pki, "fastwire.test", Compression::None));
    let (_, se, ce) = exchange(&mut server, &mut client);
    assert_eq!(se, Some(HandshakeError::TlsRequested.into()));
    assert_eq!(ce, Some(HandshakeError::TlsRefused.into()));
}

#[test]
fn wrong_name_and_unknown_authority_fail_with_certificate_errors() {
    let pki_a = pki("fastwire.test");
    let other = pki("fastwire.test");
    for (ca, name) in [(&pki_a, "other.test"), (&other, "fastwire.test")] {
        let mut server = ServerConn::new(&server_config(&pki_a, Compression::None));
        let mut client = ClientConn::new(&client_config(ca, name, Compression::None));
        client.start_call(b"echo", b"x", 1).unwrap();
        let (got, se, ce) = exchange(&mut server, &mut client);
        assert!(got.is_empty());
        let ce = ce.expect("the client refuses the certificate");
        assert!(matches!(ce, Error::Tls(TlsError::Certificate { .. })), "{ce}");
        assert!(ce.to_string().contains("setting"), "{ce}");
        // The client's alert tells the server why.
        let se = se.expect("the server hears the alert");
        assert!(matches!(se, Error::Tls(TlsError::AlertReceived { .. })), "{se}");
    }
}

#[test]
fn garbage_after_asking_for_tls_is_not_tls() {
    let pki = pki("fastwire.test");
    let mut server = ServerConn::new(&server_config(&pki, Compression::None));
    server.received(&[0, 1, 1]);
    server.received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let e = server.process(&demo_handler).unwrap_err();
    assert!(matches!(e, Error::Tls(TlsError::NotTls { .. })), "{e}");
    // Our handshake (yes, TLS) and an alert go out before the close.
    let out = server.output();
    assert_eq!(&out[..3], &[0, 1, 1]);
    assert_eq!(out[3], 0x15, "a TLS alert record follows");
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary bytes where TLS records should be, split anywhere:
        /// an error or more input needed, never a panic, and never a call
        /// reaching the handler.
        #[test]
        fn arbitrary_bytes_after_asking_for_tls(bytes in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..600) {
            let pki = pki("fastwire.test");
            let mut server = ServerConn::new(&server_config(&pki, Compression::None));
            server.received(&[0, 1, 1]);
            let split = split.min(bytes.len());
            for part in [&bytes[..split], &bytes[split..]] {
                server.received(part);
                let _ = server.process(&demo_handler);
                let _ = server.output();
            }
            prop_assert_eq!(server.requests(), 0);
        }

        /// A live handshake and call with one byte changed in transit (in
        /// the client's first flight, the server's answer, or the client's
        /// second flight): whoever notices fails, nobody panics, and the
        /// client never gets a wrong value.
        #[test]
        fn one_byte_changed_in_transit(flight in 0usize..3, at in any::<prop::sample::Index>(), xor in 1u8..=255) {
            let pki = shared_pki();
            let mut server = ServerConn::new(&server_config(pki, Compression::None));
            let mut client = ClientConn::new(&client_config(pki, "fastwire.test", Compression::None));
            client.start_call(b"echo", b"x", 1u32).unwrap();
            let mut got = Vec::new();
            for n in 0..3 {
                let from_client = n != 1;
                let mut bytes = if from_client { client.output().to_vec() } else { server.output().to_vec() };
                if from_client { client.advance_output(bytes.len()) } else { server.advance_output(bytes.len()) }
                // The fastrpc handshake's own bytes are tested elsewhere.
                if n == flight && bytes.len() > 3 {
                    let at = at.index(bytes.len() - 3) + 3;
                    bytes[at] ^= xor;
                }
                if from_client {
                    server.received(&bytes);
                    let _ = server.process(&demo_handler);
                } else {
                    client.received(&bytes);
                    let _ = client.process(|r, token| got.push((token, r.value.to_vec())));
                }
            }
            let answer = server.output().to_vec();
            client.received(&answer);
            let _ = client.process(|r, token| got.push((token, r.value.to_vec())));
            prop_assert!(got.iter().all(|(token, value)| *token == 1 && value == b"re:x"), "{:?}", got);
        }
    }

    fn shared_pki() -> &'static Pki {
        static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
        PKI.get_or_init(|| pki("fastwire.test"))
    }
}

/// The stage a driver words a close or a timeout by: the fastrpc
/// handshake, then TLS's (with or without a client certificate), then done.
#[test]
fn handshake_stages_in_order() {
    use fastwire_proto::HandshakeStage;
    let pki = pki("localhost");
    let mut server = ServerConn::new(&server_config(&pki, Compression::None));
    let mut client = ClientConn::<u32>::new(&client_config(&pki, "localhost", Compression::None));
    assert_eq!(client.handshake_stage(), HandshakeStage::Fastrpc);
    // Our handshake out, the server's (agreeing to TLS) in: TLS is under way.
    let ours = client.output().to_vec();
    client.advance_output(ours.len());
    server.received(&ours);
    server.process(&demo_handler).unwrap();
    let theirs = server.output().to_vec();
    server.advance_output(theirs.len());
    client.received(&theirs[..3]);
    client.process(|_, _| {}).unwrap();
    assert_eq!(client.handshake_stage(), HandshakeStage::Tls { client_certificate: false });
    assert!(client.handshake_stage().closed_by_server().contains("may require a client certificate"));
    let timeout = std::time::Duration::from_millis(500);
    assert!(client.handshake_stage().handshake_timed_out(timeout).starts_with("the TLS handshake"));
    // The rest of the exchange: done.
    client.received(&theirs[3..]);
    let (_, server_error, client_error) = exchange(&mut server, &mut client);
    assert_eq!((server_error, client_error), (None, None));
    assert_eq!(client.handshake_stage(), HandshakeStage::Done);
    assert_eq!(HandshakeStage::Done.closed_by_server(), "the server closed the connection");
    // Without TLS, the fastrpc handshake alone.
    let mut plain = ClientConn::<()>::new(&ClientConfig::default());
    assert!(plain.handshake_stage().handshake_timed_out(timeout).starts_with("no handshake from the server"));
    plain.received(&[0, 1, 0]);
    plain.process(|_, ()| {}).unwrap();
    assert_eq!(plain.handshake_stage(), HandshakeStage::Done);
}

#[test]
fn a_server_requiring_a_client_certificate_says_so_in_an_alert() {
    // The server trusts `authority` for client certificates; the client
    // presents none. Its last flight (Certificate, Finished, then its first
    // call) reaches the server split at every byte: the server's refusal is
    // an alert wherever the split falls.
    let server_pki = pki("fastwire.test");
    let authority = pki("clients.test");
    let tls =
        TlsServer::from_pem(server_pki.cert.as_bytes(), server_pki.key.as_bytes(), Some(authority.cert.as_bytes()))
            .unwrap();
    let mutual = ServerConfig { tls: Some(tls), ..ServerConfig::default() };
    let client_config = client_config(&server_pki, "fastwire.test", Compression::None);
    // Up to the client's last flight, which `flight` returns.
    let start = || {
        let mut server = ServerConn::new(&mutual);
        let mut client = ClientConn::new(&client_config);
        client.start_call(b"echo", b"x", 1).unwrap();
        loop {
            let to_server = client.output().to_vec();
            client.advance_output(to_server.len());
            server.received(&to_server);
            server.process(&demo_handler).unwrap();
            let to_client = server.output().to_vec();
            server.advance_output(to_client.len());
            client.received(&to_client);
            client.process(|_, _| {}).unwrap();
            if client.is_handshake_done() {
                let flight = client.output().to_vec();
                client.advance_output(flight.len());
                return (server, client, flight);
            }
        }
    };
    let (_, _, flight) = start();
    for at in 0..=flight.len() {
        let (mut server, mut client, flight) = start();
        let mut server_error = None;
        for part in [&flight[..at], &flight[at..]] {
            server.received(part);
            if server_error.is_none() {
                server_error = server.process(&demo_handler).err();
            }
        }
        let se = server_error.unwrap_or_else(|| panic!("split at {at}: the server refuses the client"));
        let to_client = server.output().to_vec();
        client.received(&to_client);
        let ce = client.process(|_, _| {}).expect_err("the client hears why");
        assert!(matches!(ce, Error::Tls(TlsError::AlertReceived { .. })), "split at {at}: {ce} (server: {se})");
        // The client is told what it lacks, and which setting gives it.
        assert!(ce.to_string().contains("--tls-client-cert"), "split at {at}: {ce}");
    }
}
