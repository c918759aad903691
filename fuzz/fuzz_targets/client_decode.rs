//! Arbitrary bytes from a server: the client state machine must return an
//! error or complete calls, never panic, and never complete a call twice.
#![no_main]

use fastwire_proto::driver::Connection;
use fastwire_proto::{ClientConfig, ClientConn, Limits, ProtocolConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let config = ClientConfig {
        protocol: ProtocolConfig {
            limits: Limits { max_name_len: 1024, max_value_len: 64 * 1024 },
            ..ProtocolConfig::default()
        },
        max_pending: 64,
        ..ClientConfig::default()
    };
    let mut conn: ClientConn<u32> = ClientConn::new(&config);
    let mut completed = [false; 64];
    for i in 0..64 {
        conn.start_call(b"fuzz", b"", i).unwrap();
    }
    for chunk in input.chunks(usize::from(split).max(1)) {
        conn.received(chunk);
        let result = conn.process(|_, token| {
            assert!(!completed[token as usize], "a call completed twice");
            completed[token as usize] = true;
        });
        if result.is_err() {
            break;
        }
    }
});
