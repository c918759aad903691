//! fastwire against exchanges recorded between Go fastrpc clients and servers
//! (`tests/data/fastrpc/`, see its README).

use fastwire_proto::{Compression, FASTRPC_BENCH_BODY};
use fastwire_testkit::memory::*;
use fastwire_testkit::vectors::*;

#[test]
fn manifests_describe_the_documented_calls() {
    for s in all_scenarios() {
        assert_eq!(s.requests.len(), 6, "{}", s.name);
        assert_eq!(s.responses.len(), 5, "{}", s.name);
        assert_eq!(s.responses[0].1, FASTRPC_BENCH_BODY, "{}: benchmark body", s.name);
        assert_eq!(s.requests[2].2.len(), 70_000, "{}", s.name);
    }
    assert_eq!(scenario("flate-default").compression, Compression::Flate);
    assert_eq!(scenario("none-sniff-xy-v7").sniff_header, b"xy");
}

/// A fastwire server reads exactly the Go client's requests, and answers them
/// with the bytes the Go server wrote (uncompressed scenarios) or with bytes
/// that decode to the same responses (compressed ones).
#[test]
fn server_decodes_go_client_and_answers_like_go_server() {
    for s in all_scenarios() {
        let run = server_run_of(&s);
        assert_eq!(run.error, None, "{}", s.name);
        assert_requests_eq(&run.requests, &s.requests, s.name);
        if s.compression == Compression::None {
            assert_bytes_eq(&run.output, &s.server_to_client, &format!("{}: server output", s.name));
        }
        // Whatever the compression, a client decodes our output to Go's responses.
        let (client, _) = client_with_calls(&s.client_config(), &s.requests);
        let decoded = run_client(client, [&run.output[..]]);
        assert_eq!(decoded.error, None, "{}", s.name);
        assert_responses_eq(&decoded.responses, &s.responses, s.name);
        assert_eq!(decoded.pending_left, 0, "{}", s.name);
    }
}

fn server_run_of(s: &Scenario) -> ServerRun {
    run_server(&s.server_config(), [&s.client_to_server[..]])
}

/// A fastwire client making the same calls writes the Go client's bytes
/// (uncompressed scenarios) or bytes that decode to the same requests, and
/// reads the Go server's responses.
#[test]
fn client_encodes_like_go_client_and_decodes_go_server() {
    for s in all_scenarios() {
        let (client, written) = client_with_calls(&s.client_config(), &s.requests);
        if s.compression == Compression::None {
            assert_bytes_eq(&written, &s.client_to_server, &format!("{}: client output", s.name));
        }
        let server = run_server(&s.server_config(), [&written[..]]);
        assert_eq!(server.error, None, "{}", s.name);
        assert_requests_eq(&server.requests, &s.requests, &format!("{}: our requests", s.name));

        let run = run_client(client, [&s.server_to_client[..]]);
        assert_eq!(run.error, None, "{}", s.name);
        assert_responses_eq(&run.responses, &s.responses, s.name);
        assert_eq!(run.pending_left, 0, "{}", s.name);
    }
}

/// Go's compressed streams, each decoded by itself: the flate stream is raw
/// DEFLATE with sync flushes, the snappy one the framing format.
#[test]
fn compressed_vectors_really_are_compressed() {
    let flate = scenario("flate-default");
    assert!(flate.client_to_server.len() < 1_000, "70 KB of i % 251 compresses well");
    assert_eq!(&flate.client_to_server[..3], &[0, 0, 0], "handshake: version 0, flate, no TLS");
    let snappy = scenario("snappy-default");
    assert_eq!(&snappy.client_to_server[..3], &[0, 2, 0]);
    assert_eq!(&snappy.client_to_server[3..13], b"\xff\x06\0\0sNaPpY");
}
