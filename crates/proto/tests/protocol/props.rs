//! Property tests: round trips of arbitrary messages, and no panic on any input.

use fastwire_proto::codec::{decode_request, decode_response};
use fastwire_proto::compress::StreamDecoder;
use fastwire_proto::driver::Connection;
use fastwire_proto::{
    demo_handler, ClientConfig, ClientConn, Compression, Limits, ProtocolConfig, Request, ResponseWriter, ServerConfig,
    ServerConn,
};
use fastwire_testkit::memory::*;
use proptest::prelude::*;

const SMALL: Limits = Limits { max_name_len: 64, max_value_len: 4096 };

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Flate), Just(Compression::Snappy)]
}

/// (name, value, fire_and_forget), within SMALL's limits, up to them.
fn call() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool)> {
    (
        prop::collection::vec(any::<u8>(), 0..=SMALL.max_name_len),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..=SMALL.max_value_len),
            Just(vec![b'z'; SMALL.max_value_len]),
        ],
        prop::bool::weighted(0.1),
    )
}

/// Echoes the value unchanged (so responses can reach the value limit).
fn echo(req: Request<'_>, resp: &mut ResponseWriter<'_>) {
    resp.extend_from_slice(req.value);
}

fn configs(client_c: Compression, server_c: Compression) -> (ClientConfig, ServerConfig) {
    let p = |compression| ProtocolConfig { compression, limits: SMALL, ..ProtocolConfig::default() };
    (
        ClientConfig { protocol: p(client_c), max_pending: 10_000, ..ClientConfig::default() },
        ServerConfig { protocol: p(server_c), ..ServerConfig::default() },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Client encodes, server decodes and echoes, client matches responses:
    /// every call completes with its own value, whatever the compression of
    /// each direction and however the bytes are chunked.
    #[test]
    fn round_trip(calls in prop::collection::vec(call(), 1..40), cc in compression(), sc in compression(), seed in 1u64.., max_chunk in 1usize..3000) {
        let (client_config, server_config) = configs(cc, sc);
        let mut client: ClientConn<usize> = ClientConn::new(&client_config);
        let mut server = ServerConn::new(&server_config);
        let mut expected = Vec::new();
        let mut seen = std::sync::Mutex::new(Vec::new());
        for (i, (name, value, ff)) in calls.iter().enumerate() {
            if *ff {
                client.send_fire_and_forget(name, value).unwrap();
            } else {
                let id = client.start_call(name, value, i).unwrap();
                expected.push((i, id, value.clone()));
            }
        }
        let to_server = client.output().to_vec();
        let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
            seen.lock().unwrap().push((req.id, req.name.to_vec(), req.value.to_vec()));
            echo(req, resp);
        };
        for chunk in random_chunks(&to_server, seed, max_chunk) {
            server.received(chunk);
            server.process(&handler).unwrap();
        }
        let requests = std::mem::take(seen.get_mut().unwrap());
        prop_assert_eq!(requests.len(), calls.len());
        for ((_, name, value), (name2, value2, _)) in requests.iter().zip(&calls) {
            prop_assert_eq!(name, name2);
            prop_assert_eq!(value, value2);
        }
        let to_client = server.output().to_vec();
        let mut got = Vec::new();
        for chunk in random_chunks(&to_client, seed ^ 0x5555, max_chunk) {
            client.received(chunk);
            client.process(|r, t| got.push((t, r.id, r.value.to_vec()))).unwrap();
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(client.pending_len(), 0);
    }

    /// Arbitrary bytes after a valid handshake never panic either side.
    #[test]
    fn arbitrary_bytes_never_panic(garbage in prop::collection::vec(any::<u8>(), 0..2048), c in compression(), handshake in any::<bool>()) {
        let (client_config, server_config) = configs(c, c);
        let mut input = Vec::new();
        if handshake {
            input.extend_from_slice(&[0, c.wire_value(), 0]);
        }
        input.extend_from_slice(&garbage);
        let mut server = ServerConn::new(&server_config);
        for chunk in input.chunks(97) {
            server.received(chunk);
            if server.process(&demo_handler).is_err() { break; }
        }
        let mut client: ClientConn<()> = ClientConn::new(&client_config);
        client.start_call(b"", b"", ()).unwrap();
        for chunk in input.chunks(97) {
            client.received(chunk);
            if client.process(|_, _| ()).is_err() { break; }
        }
        let _ = decode_request(&garbage, &SMALL);
        let _ = decode_response(&garbage, &SMALL);
        for c in Compression::ALL {
            let mut wire = bytes::BytesMut::from(&garbage[..]);
            let mut plain = bytes::BytesMut::new();
            let mut dec = StreamDecoder::new(c);
            while let Ok(true) = dec.decode(&mut wire, &mut plain, 1024) {
                prop_assert!(plain.len() <= garbage.len() * 1100 + 70_000, "output is bounded");
                plain.clear();
            }
        }
    }

    /// Valid streams with one byte flipped: an error or a (different) decode, never a panic.
    #[test]
    fn flipped_bytes_never_panic(calls in prop::collection::vec(call(), 1..8), c in compression(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (client_config, server_config) = configs(c, c);
        let mut client: ClientConn<usize> = ClientConn::new(&client_config);
        for (i, (name, value, _)) in calls.iter().enumerate() {
            client.start_call(name, value, i).unwrap();
        }
        let mut bytes = client.output().to_vec();
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let mut server = ServerConn::new(&server_config);
        server.received(&bytes);
        let _ = server.process(&echo);
    }
}

/// The round trip at Go's real limit: 1 MiB names and values, each compression.
#[test]
fn round_trip_at_go_limits() {
    let name = vec![b'n'; 1024 * 1024];
    let value: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    for c in Compression::ALL {
        let protocol = ProtocolConfig { compression: c, ..ProtocolConfig::default() };
        let mut client: ClientConn<()> =
            ClientConn::new(&ClientConfig { protocol: protocol.clone(), ..ClientConfig::default() });
        let mut server = ServerConn::new(&ServerConfig { protocol, ..ServerConfig::default() });
        client.start_call(&name, &value, ()).unwrap();
        let to_server = client.output().to_vec();
        let got = std::sync::Mutex::new(None);
        let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
            *got.lock().unwrap() = Some((req.name.len(), req.value == &value[..]));
            resp.extend_from_slice(req.value);
        };
        for chunk in to_server.chunks(65_536) {
            server.received(chunk);
            server.process(&handler).unwrap();
        }
        assert_eq!(*got.lock().unwrap(), Some((1024 * 1024, true)), "{c}");
        client.received(server.output());
        let mut echoed = false;
        client.process(|r, ()| echoed = r.value == &value[..]).unwrap();
        assert!(echoed, "{c}");
    }
}
