//! The connection handshake (the protocol reference, `docs/src/wire-protocol.md`, "Handshake").
//!
//! Right after connecting, each side sends:
//!
//! ```text
//! sniff header bytes   exactly as configured (empty by default)
//! u8 protocol_version  default 0
//! u8 compress_type     0 = flate, 1 = none, 2 = snappy: how the *sender* compresses
//! u8 tls               1 if the client wants TLS
//! ```
//!
//! A client configured with sniff header `xy`, version 7, no compression and
//! no TLS sends `78 79 07 01 00`:
//!
//! ```
//! use fastwire_proto::handshake::{decode, encode, PeerHandshake};
//! use fastwire_proto::Compression;
//!
//! let mut out = Vec::new();
//! encode(&mut out, b"xy", 7, Compression::None, false);
//! assert_eq!(out, [0x78, 0x79, 0x07, 0x01, 0x00]);
//!
//! // Reading it back: `Ok(None)` until all five bytes are there.
//! assert_eq!(decode(&out[..3], b"xy", 7), Ok(None));
//! let (peer, used) = decode(&out, b"xy", 7).unwrap().unwrap();
//! assert_eq!(used, 5);
//! assert_eq!(peer, PeerHandshake { compression: Compression::None, tls: false });
//! ```
//!
//! The client writes first and then reads; the server reads first and then
//! writes. [`ClientConn`](crate::ClientConn) and
//! [`ServerConn`](crate::ServerConn) run this for you; the functions here are
//! public for tests and tools.

use crate::config::Compression;
use crate::error::HandshakeError;

/// What a peer announced in its handshake, once checked against this side's
/// configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHandshake {
    /// How the peer compresses what it sends (so: how to decompress our input).
    pub compression: Compression,
    /// Whether the peer asked for (client) or agreed to (server) TLS. Any
    /// non-zero byte counts as yes, as in Go.
    pub tls: bool,
}

/// Appends a handshake to `out`.
pub fn encode(out: &mut impl Extend<u8>, sniff_header: &[u8], version: u8, compression: Compression, tls: bool) {
    out.extend(sniff_header.iter().copied());
    out.extend([version, compression.wire_value(), u8::from(tls)]);
}

/// The length of a handshake with this sniff header.
pub const fn len(sniff_header: &[u8]) -> usize {
    sniff_header.len() + 3
}

/// Reads a peer's handshake from the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some((peer, n)))` once
/// the `n` handshake bytes have been read and checked. The sniff header is
/// checked byte by byte as it arrives, so a wrong peer is refused as soon as
/// its first wrong byte is in, without waiting for the rest.
pub fn decode(buf: &[u8], sniff_header: &[u8], version: u8) -> Result<Option<(PeerHandshake, usize)>, HandshakeError> {
    let sniff_seen = buf.len().min(sniff_header.len());
    if buf[..sniff_seen] != sniff_header[..sniff_seen] {
        let first_bad = buf[..sniff_seen].iter().zip(sniff_header).position(|(a, b)| a != b).unwrap_or(sniff_seen);
        return Err(HandshakeError::SniffMismatch { expected: sniff_header.to_vec(), got: buf[..=first_bad].to_vec() });
    }
    let rest = &buf[sniff_seen..];
    if sniff_seen < sniff_header.len() {
        return Ok(None);
    }
    // Check each field as soon as it is in, like the sniff header.
    if let Some(&peer_version) = rest.first() {
        if peer_version != version {
            return Err(HandshakeError::VersionMismatch { expected: version, got: peer_version });
        }
    }
    if let Some(&compress_type) = rest.get(1) {
        if Compression::from_wire_value(compress_type).is_none() {
            return Err(HandshakeError::UnknownCompression(compress_type));
        }
    }
    let [_, compress_type, tls, ..] = *rest else {
        return Ok(None);
    };
    let compression =
        Compression::from_wire_value(compress_type).ok_or(HandshakeError::UnknownCompression(compress_type))?;
    Ok(Some((PeerHandshake { compression, tls: tls != 0 }, len(sniff_header))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_handshake_is_three_bytes() {
        let mut out = Vec::new();
        encode(&mut out, b"", 0, Compression::Flate, false);
        assert_eq!(out, [0, 0, 0]);
        assert_eq!(decode(&out, b"", 0).unwrap().unwrap().0.compression, Compression::Flate);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut out = Vec::new();
        encode(&mut out, b"sniff", 3, Compression::Snappy, true);
        for n in 0..out.len() {
            assert_eq!(decode(&out[..n], b"sniff", 3), Ok(None), "prefix {n}");
        }
        let (peer, used) = decode(&out, b"sniff", 3).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(peer, PeerHandshake { compression: Compression::Snappy, tls: true });
    }

    #[test]
    fn wrong_sniff_fails_at_first_wrong_byte() {
        let err = decode(b"xz", b"xy", 0).unwrap_err();
        assert_eq!(err, HandshakeError::SniffMismatch { expected: b"xy".to_vec(), got: b"xz".to_vec() });
        // Even before the whole header is in.
        assert!(matches!(decode(b"q", b"xy", 0), Err(HandshakeError::SniffMismatch { .. })));
    }

    #[test]
    fn wrong_version_and_unknown_compression() {
        assert_eq!(decode(&[1], b"", 0), Err(HandshakeError::VersionMismatch { expected: 0, got: 1 }));
        assert_eq!(decode(&[0, 9], b"", 0), Err(HandshakeError::UnknownCompression(9)));
    }
}
