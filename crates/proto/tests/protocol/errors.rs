//! Each way a peer or caller can get it wrong produces its own error.

use fastwire_proto::compress::SnappyEncoder;
use fastwire_proto::driver::{Connection, Flow};
use fastwire_proto::{
    demo_handler, ClientConfig, ClientConn, Compression, CompressionError, Error, HandshakeError, Limits, MessageError,
    MessageKind, ProtocolConfig, Request, ResponseWriter, ServerConfig, ServerConn,
};
use fastwire_testkit::memory::*;

fn server_error(config: &ServerConfig, input: &[u8]) -> Error {
    run_server(config, [input]).error.expect("an error")
}

fn with_protocol(protocol: ProtocolConfig) -> ServerConfig {
    ServerConfig { protocol, ..ServerConfig::default() }
}

#[test]
fn wrong_sniff_header() {
    let config = with_protocol(ProtocolConfig { sniff_header: b"xy".to_vec(), ..ProtocolConfig::default() });
    let err = server_error(&config, b"xz\x00\x01\x00");
    assert_eq!(err, Error::Handshake(HandshakeError::SniffMismatch { expected: b"xy".to_vec(), got: b"xz".to_vec() }));
    assert!(err.to_string().contains("sniff_header"), "{err}");
}

#[test]
fn wrong_version() {
    let config = with_protocol(ProtocolConfig { protocol_version: 7, ..ProtocolConfig::default() });
    let err = server_error(&config, &[0, 1, 0]);
    assert_eq!(err, Error::Handshake(HandshakeError::VersionMismatch { expected: 7, got: 0 }));
    assert!(err.to_string().contains("protocol_version"), "{err}");
}

#[test]
fn unknown_compression() {
    let err = server_error(&ServerConfig::default(), &[0, 3, 0]);
    assert_eq!(err, Error::Handshake(HandshakeError::UnknownCompression(3)));
    assert!(err.to_string().contains("2 = snappy"), "{err}");
}

#[test]
fn tls_requested_gets_a_no_tls_handshake_then_an_error() {
    let run = run_server(&ServerConfig::default(), [&[0u8, 1, 1][..]]);
    assert_eq!(run.error, Some(Error::Handshake(HandshakeError::TlsRequested)));
    // As Go's server does without a TLS config: it answers "no TLS" first.
    assert_eq!(run.output, [0, 1, 0]);
}

#[test]
fn client_checks_the_servers_handshake() {
    let mut conn: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    conn.received(&[5, 1, 0]);
    assert_eq!(conn.process(|_, _| ()), Err(Error::Handshake(HandshakeError::VersionMismatch { expected: 0, got: 5 })));
    let mut conn: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    conn.received(&[0, 9, 0]);
    assert_eq!(conn.process(|_, _| ()), Err(Error::Handshake(HandshakeError::UnknownCompression(9))));
}

fn request_header(id: u32, name_len: u32) -> Vec<u8> {
    let mut v = vec![0, 1, 0];
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&name_len.to_le_bytes());
    v.extend(std::iter::repeat_n(b'n', name_len.min(16) as usize));
    v
}

#[test]
fn oversized_name_and_value_are_refused_from_the_length_field() {
    // Go's limit: 1 MiB. Only the length field has arrived, not the megabyte.
    let err = server_error(&ServerConfig::default(), &request_header(1, 1024 * 1024 + 1));
    assert_eq!(
        err,
        Error::Message(MessageError::NameTooLong { kind: MessageKind::Request, len: 1_048_577, limit: 1_048_576 })
    );
    assert!(err.to_string().contains("limits.max_name_len"), "{err}");

    let mut input = vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    input.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = server_error(&ServerConfig::default(), &input);
    assert_eq!(
        err,
        Error::Message(MessageError::ValueTooLong {
            kind: MessageKind::Request,
            len: u32::MAX as u64,
            limit: 1_048_576
        })
    );
    assert!(err.to_string().contains("limits.max_value_len"), "{err}");
}

#[test]
fn values_at_the_one_mebibyte_limit_pass_and_one_more_byte_fails() {
    let max = vec![7u8; 1024 * 1024];
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    client.start_call(b"echo", &max, ()).unwrap();
    let rejected = client.start_call(b"", &[0u8; 1024 * 1024 + 1], ()).unwrap_err();
    assert_eq!(
        rejected.error,
        Error::Message(MessageError::ValueTooLong { kind: MessageKind::Request, len: 1_048_577, limit: 1_048_576 })
    );
    assert_eq!(client.pending_len(), 1, "the refused call holds no id");
    let written = client.output().to_vec();
    // The server decodes it; its "re:" answer would be 3 bytes over the limit.
    let run = run_server(&ServerConfig::default(), [&written[..]]);
    assert_eq!(run.requests.len(), 1);
    assert_eq!(run.requests[0].2.len(), 1024 * 1024);
    assert_eq!(
        run.error,
        Some(Error::Message(MessageError::ValueTooLong {
            kind: MessageKind::Response,
            len: 1_048_579,
            limit: 1_048_576
        }))
    );
}

#[test]
fn oversized_response_is_refused_by_the_client() {
    let limits = Limits { max_name_len: 10, max_value_len: 10 };
    let config =
        ClientConfig { protocol: ProtocolConfig { limits, ..ProtocolConfig::default() }, ..ClientConfig::default() };
    let mut client: ClientConn<()> = ClientConn::new(&config);
    client.start_call(b"", b"", ()).unwrap();
    client.received(&[0, 1, 0, 1, 0, 0, 0, 11, 0, 0, 0]);
    assert_eq!(
        client.process(|_, _| ()),
        Err(Error::Message(MessageError::ValueTooLong { kind: MessageKind::Response, len: 11, limit: 10 }))
    );
}

#[test]
fn corrupt_flate_stream() {
    // Handshake announcing flate, then a block with the reserved type 3.
    let err = server_error(&ServerConfig::default(), &[0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(err, Error::Compression(CompressionError::FlateCorrupt(_))), "{err:?}");
}

#[test]
fn corrupt_snappy_streams() {
    let mut good = bytes::BytesMut::new();
    SnappyEncoder::new().encode(b"\x01\0\0\0\0\0\0\0\x06\0\0\0foobar", &mut good);
    // A flipped data byte: the CRC catches it.
    let mut input = vec![0, 2, 0];
    input.extend_from_slice(&good);
    *input.last_mut().unwrap() ^= 1;
    let err = server_error(&ServerConfig::default(), &input);
    assert!(matches!(err, Error::Compression(CompressionError::SnappyChecksum { .. })), "{err:?}");
    // No stream identifier.
    let err = server_error(&ServerConfig::default(), &[0, 2, 0, 0x01, 8, 0, 0]);
    assert_eq!(err, Error::Compression(CompressionError::SnappyMissingStreamIdentifier(1)));
    // A compressed chunk that is not valid snappy (its CRC is never reached).
    let mut input = vec![0, 2, 0];
    input.extend_from_slice(&good[..10]);
    input.extend_from_slice(&[0x00, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let err = server_error(&ServerConfig::default(), &input);
    assert!(matches!(err, Error::Compression(CompressionError::SnappyCorrupt(_))), "{err:?}");
    // A data chunk longer than the format allows.
    let mut input = vec![0, 2, 0];
    input.extend_from_slice(&good[..10]);
    input.extend_from_slice(&[0x01, 0xff, 0xff, 0x01]);
    let err = server_error(&ServerConfig::default(), &input);
    assert!(matches!(err, Error::Compression(CompressionError::SnappyBadChunkLength { .. })), "{err:?}");
}

#[test]
fn errors_are_sticky() {
    let mut conn = ServerConn::new(&ServerConfig::default());
    conn.received(&[9, 1, 0]);
    let first = conn.process(&demo_handler).unwrap_err();
    conn.received(&[0, 1, 0]);
    assert_eq!(conn.process(&demo_handler), Err(first));
}

#[test]
fn too_many_pending_refuses_only_that_call() {
    let config = ClientConfig { max_pending: 2, ..ClientConfig::default() };
    let mut client: ClientConn<&str> = ClientConn::new(&config);
    assert_eq!(client.start_call(b"", b"a", "a"), Ok(1));
    assert_eq!(client.start_call(b"", b"b", "b"), Ok(2));
    let rejected = client.start_call(b"", b"c", "c").unwrap_err();
    assert_eq!(rejected.error, Error::TooManyPending { limit: 2 });
    assert_eq!(rejected.token, "c");
    assert!(!rejected.error.is_fatal());
    assert!(rejected.error.to_string().contains("max_pending"));
    // A response frees a place.
    client.received(&[0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    let mut done = Vec::new();
    client.process(|r, t| done.push((r.id, t))).unwrap();
    assert_eq!(done, [(2, "b")]);
    // Id 3 would share its table slot with pending id 1, so it is skipped.
    assert_eq!(client.start_call(b"", b"d", "d"), Ok(4));
    assert_eq!(client.start_call(b"", b"e", "e").unwrap_err().error, Error::TooManyPending { limit: 2 });
}

#[test]
fn unknown_ids_are_dropped_and_out_of_order_responses_matched() {
    let mut client: ClientConn<char> = ClientConn::new(&ClientConfig::default());
    for token in ['a', 'b', 'c'] {
        client.start_call(b"x", b"", token).unwrap();
    }
    let mut input = vec![0, 1, 0];
    for id in [3u32, 99, 1, 1, 2] {
        input.extend_from_slice(&id.to_le_bytes());
        input.extend_from_slice(&1u32.to_le_bytes());
        input.push(b'0' + id as u8);
    }
    client.received(&input);
    let mut done = Vec::new();
    client.process(|r, t| done.push((r.id, t, r.value.to_vec()))).unwrap();
    assert_eq!(done, [(3, 'c', b"3".to_vec()), (1, 'a', b"1".to_vec()), (2, 'b', b"2".to_vec())]);
    assert_eq!(client.unknown_responses(), 2, "id 99, and id 1 a second time");
}

#[test]
fn cancelled_call_response_is_dropped_and_pending_calls_drain() {
    let mut client: ClientConn<u8> = ClientConn::new(&ClientConfig::default());
    let a = client.start_call(b"", b"", 1).unwrap();
    let b = client.start_call(b"", b"", 2).unwrap();
    assert_eq!(client.cancel(a), Some(1));
    client.received(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    client.process(|_, _| panic!("the cancelled call must not complete")).unwrap();
    assert_eq!(client.unknown_responses(), 1);
    assert_eq!(client.drain_pending().collect::<Vec<_>>(), [(b, 2)]);
    assert_eq!(client.pending_len(), 0);
}

#[test]
fn fire_and_forget_runs_the_handler_and_sends_nothing() {
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    client.send_fire_and_forget(b"note", b"fire").unwrap();
    let written = client.output().to_vec();
    let run = run_server(&ServerConfig::default(), [&written[..]]);
    assert_eq!(run.requests, [(0, b"note".to_vec(), b"fire".to_vec())]);
    assert_eq!(run.output, [0, 1, 0], "only the handshake");
}

#[test]
fn output_limit_stops_decoding_until_output_drains() {
    let config = ServerConfig { max_output_buffer: 1000, ..ServerConfig::default() };
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    for _ in 0..10 {
        client.start_call(b"", b"foobar", ()).unwrap();
    }
    let mut server = ServerConn::new(&config);
    server.received(client.output());
    // 269 bytes per response: the fourth reaches 1000 bytes of output.
    assert_eq!(server.process(&demo_handler), Ok(Flow::OutputFull));
    assert_eq!(server.requests(), 4);
    assert!(server.buffered_output() < 1000 + 269);
    // The client never reads: nothing more is decoded, however often we ask.
    assert_eq!(server.process(&demo_handler), Ok(Flow::OutputFull));
    assert_eq!(server.requests(), 4);
    let n = server.output().len();
    server.advance_output(n);
    assert_eq!(server.process(&demo_handler), Ok(Flow::OutputFull));
    assert_eq!(server.requests(), 8);
    let n = server.output().len();
    server.advance_output(n);
    assert_eq!(server.process(&demo_handler), Ok(Flow::NeedInput));
    assert_eq!(server.requests(), 10);
}

#[test]
fn in_flight_limit_counts_unwritten_responses() {
    let config = ServerConfig { max_in_flight: 3, ..ServerConfig::default() };
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    for _ in 0..5 {
        client.start_call(b"e", b"", ()).unwrap();
    }
    let mut server = ServerConn::new(&config);
    server.received(client.output());
    assert_eq!(server.process(&demo_handler), Ok(Flow::OutputFull));
    assert_eq!(server.requests(), 3);
}

#[test]
fn idle_connections_release_their_buffers() {
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    client.start_call(b"echo", &[1u8; 100_000], ()).unwrap();
    let mut server = ServerConn::new(&ServerConfig::default());
    server.received(client.output());
    server.process(&demo_handler).unwrap();
    assert!(server.buffer_capacity() >= 100_000, "the 100 KB response is buffered");
    let n = server.output().len();
    server.advance_output(n);
    server.release_buffers();
    assert_eq!(server.buffer_capacity(), 0);
    // And it still works afterwards.
    let n = client.output().len();
    client.advance_output(n);
    client.start_call(b"echo", b"again", ()).unwrap();
    server.received(client.output());
    server.process(&demo_handler).unwrap();
    assert_eq!(&server.output()[8..], b"re:again");
}

#[test]
fn handler_writes_in_place_for_every_compression() {
    for compression in Compression::ALL {
        let protocol = ProtocolConfig { compression, ..ProtocolConfig::default() };
        let mut client: ClientConn<u32> =
            ClientConn::new(&ClientConfig { protocol: protocol.clone(), ..ClientConfig::default() });
        let mut server = ServerConn::new(&ServerConfig { protocol, ..ServerConfig::default() });
        let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
            use std::fmt::Write;
            write!(resp, "{}:{}", String::from_utf8_lossy(req.name), req.value.len()).unwrap();
        };
        for i in 0..100u32 {
            client.start_call(b"len", &vec![0; i as usize * 100], i).unwrap();
        }
        server.received(client.output());
        server.process(&handler).unwrap();
        client.received(server.output());
        let mut got = Vec::new();
        client.process(|r, t| got.push((t, String::from_utf8(r.value.to_vec()).unwrap()))).unwrap();
        let expected: Vec<_> = (0..100u32).map(|i| (i, format!("len:{}", i * 100))).collect();
        assert_eq!(got, expected, "{compression}");
    }
}

#[test]
fn buffers_are_handed_over_by_swapping() {
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig::default());
    client.start_call(b"echo", b"swap", ()).unwrap();
    let mut wire = bytes::BytesMut::new();
    client.take_output(&mut wire);
    assert!(!client.has_output());
    let mut server = ServerConn::new(&ServerConfig::default());
    server.receive_buffer(&mut wire);
    assert!(wire.is_empty());
    server.process(&demo_handler).unwrap();
    let mut out = bytes::BytesMut::with_capacity(64);
    server.take_output(&mut out);
    assert_eq!(&out[3 + 8..], b"re:swap");
    // A second read while a partial message is buffered is appended, not swapped.
    server.received(&[1, 0, 0]);
    let mut more = bytes::BytesMut::from(&[0u8][..]);
    server.receive_buffer(&mut more);
    assert_eq!(server.buffered_input(), 4);
}
