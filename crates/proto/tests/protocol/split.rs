//! Bytes may arrive split anywhere: every recorded stream, cut at every byte
//! offset and in random chunk sizes, decodes exactly as when fed whole.

use fastwire_proto::driver::Connection;
use fastwire_proto::Compression;
use fastwire_testkit::memory::*;
use fastwire_testkit::vectors::*;

/// Checks a server's output: byte for byte where there is no compression;
/// otherwise batching decides where flushes fall, so compare what it decodes to.
fn assert_same_output(s: &Scenario, actual: &[u8], expected: &[u8], what: &str) {
    if s.compression == Compression::None {
        assert_bytes_eq(actual, expected, what);
    } else {
        let decode = |bytes: &[u8]| run_client(client_with_calls(&s.client_config(), &s.requests).0, [bytes]);
        let (a, e) = (decode(actual), decode(expected));
        assert_eq!(a.error, None, "{what}");
        assert_responses_eq(&a.responses, &e.responses, what);
    }
}

#[test]
fn server_side_split_at_every_offset() {
    for s in all_scenarios() {
        let config = s.server_config();
        let whole = run_server(&config, [&s.client_to_server[..]]);
        assert_requests_eq(&whole.requests, &s.requests, s.name);
        for at in 0..=s.client_to_server.len() {
            let (a, b) = s.client_to_server.split_at(at);
            let split = run_server(&config, [a, b]);
            if split != whole {
                assert_eq!(split.error, whole.error, "{} split at {at}", s.name);
                assert_requests_eq(&split.requests, &whole.requests, &format!("{} split at {at}", s.name));
                assert_same_output(&s, &split.output, &whole.output, &format!("{} split at {at}", s.name));
            }
        }
    }
}

#[test]
fn client_side_split_at_every_offset() {
    for s in all_scenarios() {
        let config = s.client_config();
        let whole = run_client(client_with_calls(&config, &s.requests).0, [&s.server_to_client[..]]);
        assert_responses_eq(&whole.responses, &s.responses, s.name);
        for at in 0..=s.server_to_client.len() {
            let (a, b) = s.server_to_client.split_at(at);
            let split = run_client(client_with_calls(&config, &s.requests).0, [a, b]);
            if split != whole {
                assert_eq!(split.error, whole.error, "{} split at {at}", s.name);
                assert_responses_eq(&split.responses, &whole.responses, &format!("{} split at {at}", s.name));
            }
        }
    }
}

#[test]
fn random_chunk_sizes() {
    for s in all_scenarios() {
        let server_whole = run_server(&s.server_config(), [&s.client_to_server[..]]);
        let client_whole = run_client(client_with_calls(&s.client_config(), &s.requests).0, [&s.server_to_client[..]]);
        for seed in 1..=64u64 {
            // Small chunks (byte-level) for some seeds, up to a socket read for others.
            let max = if seed % 2 == 0 { 7 } else { 9000 };
            let server = run_server(&s.server_config(), random_chunks(&s.client_to_server, seed, max));
            assert_eq!(server.error, None, "{} seed {seed}", s.name);
            assert_requests_eq(&server.requests, &server_whole.requests, &format!("{} seed {seed}", s.name));
            assert_same_output(&s, &server.output, &server_whole.output, &format!("{} seed {seed}", s.name));

            let client = run_client(
                client_with_calls(&s.client_config(), &s.requests).0,
                random_chunks(&s.server_to_client, seed, max),
            );
            assert_eq!(client.error, None, "{} seed {seed}", s.name);
            assert_responses_eq(&client.responses, &client_whole.responses, &format!("{} seed {seed}", s.name));
        }
    }
}

/// One byte at a time is the extreme case of splitting.
#[test]
fn one_byte_at_a_time() {
    for s in all_scenarios() {
        let server = run_server(&s.server_config(), s.client_to_server.chunks(1));
        assert_requests_eq(&server.requests, &s.requests, s.name);
        let client = run_client(client_with_calls(&s.client_config(), &s.requests).0, s.server_to_client.chunks(1));
        assert_responses_eq(&client.responses, &s.responses, s.name);
    }
}

/// With every value split off the read buffer and shared
/// (`share_values_from(0)`), every recorded stream, cut at every offset,
/// decodes to the same responses as read in place, and each shared value
/// is the value's bytes (kept past later reads into the buffer).
#[test]
fn shared_values_decode_the_same_at_every_offset() {
    for s in all_scenarios() {
        let config = s.client_config();
        for at in 0..=s.server_to_client.len() {
            let (a, b) = s.server_to_client.split_at(at);
            let mut conn = client_with_calls(&config, &s.requests).0.share_values_from(0);
            let mut kept = Vec::new();
            for chunk in [a, b] {
                conn.received(chunk);
                conn.process(|resp, _token| {
                    let shared = resp.shared.expect("every value shared at 0").clone();
                    assert_eq!(&shared[..], resp.value, "{} split at {at}", s.name);
                    kept.push((resp.id, shared));
                })
                .unwrap_or_else(|e| panic!("{} split at {at}: {e}", s.name));
            }
            let kept: Vec<(u32, Vec<u8>)> = kept.into_iter().map(|(id, v)| (id, v.to_vec())).collect();
            assert_responses_eq(&kept, &s.responses, &format!("{} split at {at}, shared", s.name));
        }
    }
}
