//! Compression of the byte stream, per direction (`docs/src/wire-protocol.md`, "Compression").
//!
//! Compression sits between the message codec and the socket: the codec
//! writes plain bytes, a [`StreamEncoder`] turns a batch of them into wire
//! bytes; a [`StreamDecoder`] turns wire bytes back into plain bytes for the
//! codec. Each direction is independent: a side compresses what it sends as
//! it announced in its handshake, and decompresses what it receives as its
//! peer announced.
//!
//! * [`Compression::None`]: the identity; fastwire then decodes straight from
//!   the socket's read buffer and encodes straight into the write buffer, so
//!   no byte is copied between codec and socket.
//! * [`Compression::Flate`]: one raw DEFLATE stream for the life of the
//!   connection ([`flate2`], backed by the pure-Rust `miniz_oxide`), with a
//!   sync flush after each batch so that the peer can decode everything sent.
//! * [`Compression::Snappy`]: the Snappy framing format. The block codec is
//!   the [`snap`] crate's; the framing around it (a 4-byte chunk header and a
//!   masked CRC-32C from the [`crc32c`] crate) is small enough to do here, and
//!   doing it here is what lets the decoder be incremental: `snap`'s own frame
//!   reader wants a blocking `Read`, which a sans-I/O crate does not have.
//!
//! Decoders never produce much more than asked for (`max_out`), so a small
//! compressed input that expands enormously (a "decompression bomb") cannot
//! grow the plain buffer beyond one message plus one step.

mod flate;
mod snappy;

use bytes::BytesMut;

use crate::config::Compression;
use crate::error::CompressionError;

pub use self::flate::{FlateDecoder, FlateEncoder};
pub use self::snappy::{SnappyDecoder, SnappyEncoder};

/// Compresses batches of plain bytes for one direction of a connection.
#[derive(Debug)]
pub enum StreamEncoder {
    /// No compression: plain bytes are wire bytes.
    None,
    /// A raw DEFLATE stream.
    Flate(Box<FlateEncoder>),
    /// Snappy framing.
    Snappy(Box<SnappyEncoder>),
}

impl StreamEncoder {
    /// An encoder for `compression`; `flate_level` is used for flate only.
    pub fn new(compression: Compression, flate_level: u32) -> Self {
        match compression {
            Compression::None => StreamEncoder::None,
            Compression::Flate => StreamEncoder::Flate(Box::new(FlateEncoder::new(flate_level))),
            Compression::Snappy => StreamEncoder::Snappy(Box::default()),
        }
    }

    /// Whether this encoder copies bytes unchanged (no compression).
    pub fn is_identity(&self) -> bool {
        matches!(self, StreamEncoder::None)
    }

    /// Appends the compressed form of `plain` to `wire`, ending at a point
    /// where the peer can decode everything so far (a flush).
    pub fn encode(&mut self, plain: &[u8], wire: &mut BytesMut) -> Result<(), CompressionError> {
        match self {
            StreamEncoder::None => {
                wire.extend_from_slice(plain);
                Ok(())
            }
            StreamEncoder::Flate(enc) => enc.encode(plain, wire),
            StreamEncoder::Snappy(enc) => {
                enc.encode(plain, wire);
                Ok(())
            }
        }
    }
}

/// Decompresses the byte stream of one direction of a connection.
#[derive(Debug)]
pub enum StreamDecoder {
    /// No compression: wire bytes are plain bytes.
    None,
    /// A raw DEFLATE stream.
    Flate(Box<FlateDecoder>),
    /// Snappy framing.
    Snappy(Box<SnappyDecoder>),
}

impl StreamDecoder {
    /// A decoder for a peer that announced `compression`.
    pub fn new(compression: Compression) -> Self {
        match compression {
            Compression::None => StreamDecoder::None,
            Compression::Flate => StreamDecoder::Flate(Box::default()),
            Compression::Snappy => StreamDecoder::Snappy(Box::default()),
        }
    }

    /// Whether this decoder copies bytes unchanged (no compression).
    pub fn is_identity(&self) -> bool {
        matches!(self, StreamDecoder::None)
    }

    /// Decodes from the front of `wire` (consuming what it used) and appends
    /// to `plain`, stopping once about `max_out` bytes were produced (a
    /// Snappy chunk may overshoot by up to 64 KiB). Returns whether it made
    /// any progress; `false` means it needs more wire bytes.
    pub fn decode(
        &mut self,
        wire: &mut BytesMut,
        plain: &mut BytesMut,
        max_out: usize,
    ) -> Result<bool, CompressionError> {
        match self {
            StreamDecoder::None => {
                let progressed = !wire.is_empty();
                plain.extend_from_slice(wire);
                wire.clear();
                Ok(progressed)
            }
            StreamDecoder::Flate(dec) => dec.decode(wire, plain, max_out),
            StreamDecoder::Snappy(dec) => dec.decode(wire, plain, max_out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(compression: Compression, batches: &[&[u8]]) {
        let mut enc = StreamEncoder::new(compression, 6);
        let mut dec = StreamDecoder::new(compression);
        let mut wire = BytesMut::new();
        let mut plain = BytesMut::new();
        for batch in batches {
            enc.encode(batch, &mut wire).unwrap();
            // Everything sent so far decodes before any more is sent: the
            // flush after each batch is what makes pipelining possible.
            while dec.decode(&mut wire, &mut plain, 1024).unwrap() {}
            assert_eq!(plain.len(), batch.len(), "{compression}: length");
            assert!(plain[..] == **batch, "{compression}: content");
            plain.clear();
        }
        assert!(wire.is_empty());
    }

    #[test]
    fn each_batch_decodes_on_its_own() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in Compression::ALL {
            round_trip(c, &[b"hello", b"", &big, b"x", &[0u8; 70_000]]);
        }
    }
}
