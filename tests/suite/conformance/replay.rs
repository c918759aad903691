//! The connections recorded between Go fastrpc clients and servers, replayed
//! against each server over TCP: it must answer as the Go server did.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use fastwire::proto::driver::Connection;
use fastwire::proto::{demo_handler, ClientConn, Compression};
use fastwire_bench::BackendKind;

use super::util::*;
use fastwire_testkit::memory::{assert_bytes_eq, assert_responses_eq, client_with_calls};
use fastwire_testkit::vectors::all_scenarios;

pub fn recorded_exchanges(kind: BackendKind) {
    recorded_exchanges_on(kind.name(), &starter(kind))
}

/// The recorded exchanges against the server `start` makes.
pub fn recorded_exchanges_on(kind: &str, start: Starter<'_>) {
    for s in all_scenarios() {
        let server = start(server_config(s.protocol()), Arc::new(demo_handler));
        let mut stream = raw(server.local_addr());
        // The Go client's bytes, exactly, in pieces as a network might deliver them.
        for piece in s.client_to_server.chunks(1500) {
            stream.write_all(piece).unwrap();
        }
        if s.compression == Compression::None {
            // Byte for byte what the Go server wrote.
            let mut got = vec![0u8; s.server_to_client.len()];
            stream.read_exact(&mut got).unwrap();
            assert_bytes_eq(&got, &s.server_to_client, &format!("{kind} {}", s.name));
        } else {
            // Compressed output depends on batching; it must decode to Go's responses.
            let (mut client, _): (ClientConn<usize>, _) = client_with_calls(&s.client_config(), &s.requests);
            let mut responses = Vec::new();
            let mut buf = [0u8; 65536];
            while responses.len() < s.responses.len() {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "{kind} {}: closed early", s.name);
                client.received(&buf[..n]);
                client.process(|r, _| responses.push((r.id, r.value.to_vec()))).unwrap();
            }
            assert_responses_eq(&responses, &s.responses, &format!("{kind} {}", s.name));
        }
        // Nothing more comes (the fire-and-forget got no response).
        assert!(quiet_for(&mut stream, Duration::from_millis(50)), "{kind} {}: unexpected bytes", s.name);
        drop(stream);
        server.shutdown(Duration::from_secs(5));
    }
}
