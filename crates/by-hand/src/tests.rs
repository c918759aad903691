//! Each small server over real TCP on loopback, through the std backend's
//! client and through raw bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use fastwire_proto::{ClientConfig, Compression, ProtocolConfig, FASTRPC_BENCH_BODY};
use fastwire_std::Client;

use super::Model;

/// Starts `model` on a loopback port. The server has no shutdown: its
/// threads end with the test process.
fn start(model: Model) -> Option<SocketAddr> {
    if let Some(why) = model.unavailable() {
        eprintln!("skipping the {} server: {why}", model.name());
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || model.serve(listener));
    Some(addr)
}

fn config() -> ClientConfig {
    ClientConfig { call_timeout: Duration::from_secs(5), ..ClientConfig::default() }
}

#[test]
fn every_model_answers_pipelined_calls_from_many_threads() {
    for model in Model::ALL {
        let Some(addr) = start(model) else { continue };
        let client = Client::connect(addr, config()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let client = &client;
                s.spawn(move || {
                    for i in 0..200 {
                        let value = format!("{} {t} {i}", model.name());
                        let reply = client.call(b"echo", value.as_bytes()).unwrap();
                        assert_eq!(&reply[..], [&b"re:"[..], value.as_bytes()].concat(), "{}", model.name());
                    }
                });
            }
        });
        // The fastrpc benchmark's call, after a fire-and-forget request
        // that must get no answer of its own.
        client.send(b"log", b"no reply").unwrap();
        assert_eq!(&client.call(b"", b"foobar").unwrap()[..], FASTRPC_BENCH_BODY, "{}", model.name());
        // A value far larger than one read.
        let big = vec![7u8; 300_000];
        assert_eq!(client.call(b"big", &big).unwrap().len(), 3 + big.len(), "{}", model.name());
    }
}

#[test]
fn every_model_joins_requests_cut_anywhere() {
    for model in Model::ALL {
        let Some(addr) = start(model) else { continue };
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Handshake (version 0, no compression, no TLS), then request id 9,
        // name "ab", value "xyz": written one byte at a time.
        let mut wire = vec![0, 1, 0];
        wire.extend_from_slice(&9u32.to_le_bytes());
        wire.extend_from_slice(&2u32.to_le_bytes());
        wire.extend_from_slice(b"ab");
        wire.extend_from_slice(&3u32.to_le_bytes());
        wire.extend_from_slice(b"xyz");
        for byte in &wire {
            stream.write_all(&[*byte]).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut expected = vec![0, 1, 0];
        expected.extend_from_slice(&9u32.to_le_bytes());
        expected.extend_from_slice(&6u32.to_le_bytes());
        expected.extend_from_slice(b"re:xyz");
        let mut got = vec![0; expected.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, expected, "{}", model.name());
    }
}

#[test]
fn every_model_closes_a_peer_it_cannot_serve_and_serves_the_next() {
    for model in Model::ALL {
        let Some(addr) = start(model) else { continue };
        // A client that compresses: refused, and its call fails, not hangs.
        let protocol = ProtocolConfig { compression: Compression::Flate, ..ProtocolConfig::default() };
        let flate = Client::connect(addr, ClientConfig { protocol, ..config() });
        assert!(flate.and_then(|c| c.call(b"x", b"y")).is_err(), "{}", model.name());
        // A peer that sends garbage is closed: its read ends.
        let mut garbage = TcpStream::connect(addr).unwrap();
        garbage.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        garbage.write_all(&[9, 9, 9, 9]).unwrap();
        let mut rest = Vec::new();
        assert!(garbage.read_to_end(&mut rest).is_ok_and(|_| rest.is_empty()), "{}", model.name());
        // The server goes on serving.
        let client = Client::connect(addr, config()).unwrap();
        assert_eq!(&client.call(b"k", b"v").unwrap()[..], b"re:v", "{}", model.name());
    }
}
