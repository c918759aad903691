//! Arbitrary bytes from a client: the server state machine must return an
//! error or serve, never panic, and never buffer beyond its limits.
#![no_main]

use fastwire_proto::driver::Connection;
use fastwire_proto::{demo_handler, Compression, Limits, ProtocolConfig, ServerConfig, ServerConn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the input is chunked; the handshake is part
    // of the fuzzed input, so every compression is reached.
    let Some((&split, input)) = data.split_first() else { return };
    let config = ServerConfig {
        protocol: ProtocolConfig {
            compression: Compression::from_wire_value(split % 3).unwrap_or_default(),
            limits: Limits { max_name_len: 1024, max_value_len: 64 * 1024 },
            ..ProtocolConfig::default()
        },
        max_output_buffer: 256 * 1024,
        ..ServerConfig::default()
    };
    let mut conn = ServerConn::new(&config);
    for chunk in input.chunks(usize::from(split).max(1)) {
        conn.received(chunk);
        let result = conn.process(&demo_handler);
        assert!(conn.buffered_output() < 256 * 1024 + 64 * 1024 + 1024);
        let n = conn.output().len();
        conn.advance_output(n);
        if result.is_err() {
            break;
        }
    }
});
