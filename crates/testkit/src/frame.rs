//! fastrpc's frames written from the protocol reference alone
//! (`docs/src/wire-protocol.md`), without the protocol crate, so that the
//! suite checks the backends against the specification and not against
//! the code under test: little-endian `u32` lengths, uncompressed streams.

use std::io::{Read, Write};

/// The server's (or client's) half of a plain handshake: no sniff
/// header, version 0, no compression, no TLS.
pub const PLAIN: [u8; 3] = [0, 1, 0];

use crate::OwnedRequest;

/// One request frame: id, name length, name, value length, value.
pub fn request(id: u32, name: &[u8], value: &[u8]) -> Vec<u8> {
    [&id.to_le_bytes()[..], &(name.len() as u32).to_le_bytes(), name, &(value.len() as u32).to_le_bytes(), value]
        .concat()
}

/// One response frame: id, value length, value.
pub fn response(id: u32, value: &[u8]) -> Vec<u8> {
    [&id.to_le_bytes()[..], &(value.len() as u32).to_le_bytes(), value].concat()
}

/// What the demo service answers (`fastwire_proto::demo_handler`): the
/// fastrpc benchmark body for an empty name, `re:` and the value otherwise.
pub fn demo_answer(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        fastwire_proto::FASTRPC_BENCH_BODY.to_vec()
    } else {
        [&b"re:"[..], value].concat()
    }
}

fn le(b: &[u8]) -> usize {
    u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
}

/// Exactly `n` bytes, or `None` if the stream ended, failed or timed out.
pub fn read_n(r: &mut impl Read, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; n];
    r.read_exact(&mut buf).ok().map(|()| buf)
}

/// The peer's handshake when it sends no sniff header (three bytes).
pub fn read_handshake(r: &mut impl Read) -> Option<[u8; 3]> {
    read_n(r, 3).map(|b| [b[0], b[1], b[2]])
}

/// One request, or `None` if the stream ended, failed or timed out first.
pub fn read_request(r: &mut impl Read) -> Option<OwnedRequest> {
    let head = read_n(r, 8)?;
    let name = read_n(r, le(&head[4..]))?;
    let value_len = le(&read_n(r, 4)?);
    let value = read_n(r, value_len)?;
    Some((le(&head[..4]) as u32, name, value))
}

/// One response (id, value); panics if the stream ends or fails first.
#[track_caller]
pub fn read_response(r: &mut impl Read) -> (u32, Vec<u8>) {
    let head = read_n(r, 8).expect("a response header");
    let value = read_n(r, le(&head[4..])).expect("a response value");
    (le(&head[..4]) as u32, value)
}

/// The client's plain handshake, and a check of the server's.
#[track_caller]
pub fn handshake(stream: &mut (impl Read + Write)) {
    stream.write_all(&PLAIN).unwrap();
    assert_eq!(read_handshake(stream), Some(PLAIN), "version 0, no compression, no TLS");
}
