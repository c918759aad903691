//! The Snappy framing format: chunks around `snap`'s block codec.
//!
//! ```text
//! stream     = stream_id chunk*
//! stream_id  = ff 06 00 00 "sNaPpY"
//! chunk      = u8 type, u24 LE length, body[length]
//! type 0x00  compressed:   u32 LE masked CRC-32C of the uncompressed data, snappy block
//! type 0x01  uncompressed: u32 LE masked CRC-32C, data
//! 0x02-0x7f  reserved, unskippable (an error);  0x80-0xfe  skippable (padding at 0xfe)
//! ```
//!
//! Each data chunk holds at most 64 KiB of uncompressed data.

use bytes::{Buf, BytesMut};

use crate::error::CompressionError;

/// The stream identifier chunk that starts every Snappy stream.
pub(super) const STREAM_IDENTIFIER: [u8; 10] = [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];
/// Most uncompressed bytes in one data chunk.
pub(super) const MAX_CHUNK_DATA: usize = 65_536;
const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_STREAM_ID: u8 = 0xff;
/// Below this, compressing never pays (as in Go's snappy writer).
const MIN_COMPRESS_LEN: usize = 17;

/// The CRC the framing format stores: CRC-32C, rotated and offset so that a
/// CRC of data that contains CRCs does not degenerate.
pub(super) fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Compresses one direction's stream into Snappy frames.
#[derive(Debug)]
pub struct SnappyEncoder {
    encoder: snap::raw::Encoder,
    started: bool,
}

impl Default for SnappyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnappyEncoder {
    /// A new stream; the stream identifier goes out with the first batch.
    pub fn new() -> Self {
        SnappyEncoder { encoder: snap::raw::Encoder::new(), started: false }
    }

    /// Appends `plain` as chunks of at most 64 KiB each. A chunk is sent
    /// compressed only if that saves at least 1/8 of it, as Go's writer does.
    pub fn encode(&mut self, plain: &[u8], wire: &mut BytesMut) {
        if !self.started {
            wire.extend_from_slice(&STREAM_IDENTIFIER);
            self.started = true;
        }
        for data in plain.chunks(MAX_CHUNK_DATA) {
            let crc = masked_crc(data);
            let header_at = wire.len();
            if data.len() >= MIN_COMPRESS_LEN {
                let room = snap::raw::max_compress_len(data.len());
                wire.resize(header_at + 8 + room, 0);
                if let Ok(n) = self.encoder.compress(data, &mut wire[header_at + 8..]) {
                    if n < data.len() - data.len() / 8 {
                        wire.truncate(header_at + 8 + n);
                        write_chunk_header(&mut wire[header_at..], CHUNK_COMPRESSED, n + 4, crc);
                        continue;
                    }
                }
                // Not worth it (or the compressor refused): send it as is.
                wire.truncate(header_at);
            }
            wire.resize(header_at + 8, 0);
            write_chunk_header(&mut wire[header_at..], CHUNK_UNCOMPRESSED, data.len() + 4, crc);
            wire.extend_from_slice(data);
        }
    }
}

fn write_chunk_header(at: &mut [u8], chunk_type: u8, len: usize, crc: u32) {
    let len = (len as u32).to_le_bytes();
    at[..4].copy_from_slice(&[chunk_type, len[0], len[1], len[2]]);
    at[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes one direction's Snappy stream incrementally, chunk by chunk.
#[derive(Debug, Default)]
pub struct SnappyDecoder {
    decoder: snap::raw::Decoder,
    started: bool,
    /// Bytes of a skippable chunk still to drop (they may arrive later).
    skipping: usize,
}

impl SnappyDecoder {
    /// See [`StreamDecoder::decode`](super::StreamDecoder::decode).
    pub fn decode(
        &mut self,
        wire: &mut BytesMut,
        plain: &mut BytesMut,
        max_out: usize,
    ) -> Result<bool, CompressionError> {
        let mut progressed = false;
        let mut produced = 0;
        loop {
            if self.skipping > 0 {
                let n = self.skipping.min(wire.len());
                if n == 0 {
                    return Ok(progressed);
                }
                wire.advance(n);
                self.skipping -= n;
                progressed = true;
                continue;
            }
            if produced >= max_out || wire.len() < 4 {
                return Ok(progressed);
            }
            let chunk_type = wire[0];
            let len = usize::from(wire[1]) | usize::from(wire[2]) << 8 | usize::from(wire[3]) << 16;
            if !self.started && chunk_type != CHUNK_STREAM_ID {
                return Err(CompressionError::SnappyMissingStreamIdentifier(chunk_type));
            }
            match chunk_type {
                CHUNK_STREAM_ID => {
                    if len != STREAM_IDENTIFIER.len() - 4 {
                        return Err(CompressionError::SnappyBadStreamIdentifier);
                    }
                    // Check what has arrived of the body, so garbage fails early.
                    let seen = wire.len().min(STREAM_IDENTIFIER.len());
                    if wire[..seen] != STREAM_IDENTIFIER[..seen] {
                        return Err(CompressionError::SnappyBadStreamIdentifier);
                    }
                    if seen < STREAM_IDENTIFIER.len() {
                        return Ok(progressed);
                    }
                    wire.advance(STREAM_IDENTIFIER.len());
                    self.started = true;
                }
                CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                    let max_body = 4 + if chunk_type == CHUNK_COMPRESSED {
                        snap::raw::max_compress_len(MAX_CHUNK_DATA)
                    } else {
                        MAX_CHUNK_DATA
                    };
                    if !(4..=max_body).contains(&len) {
                        return Err(CompressionError::SnappyBadChunkLength { chunk_type, len });
                    }
                    if wire.len() < 4 + len {
                        return Ok(progressed);
                    }
                    let body = &wire[4..4 + len];
                    let expected = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    let start = plain.len();
                    if chunk_type == CHUNK_UNCOMPRESSED {
                        plain.extend_from_slice(data);
                    } else {
                        let n = snap::raw::decompress_len(data)
                            .map_err(|e| CompressionError::SnappyCorrupt(e.to_string()))?;
                        if n > MAX_CHUNK_DATA {
                            return Err(CompressionError::SnappyBadChunkLength { chunk_type, len: n });
                        }
                        plain.resize(start + n, 0);
                        self.decoder
                            .decompress(data, &mut plain[start..])
                            .map_err(|e| CompressionError::SnappyCorrupt(e.to_string()))?;
                    }
                    let actual = masked_crc(&plain[start..]);
                    if actual != expected {
                        plain.truncate(start);
                        return Err(CompressionError::SnappyChecksum { expected, actual });
                    }
                    produced += plain.len() - start;
                    wire.advance(4 + len);
                }
                0x02..=0x7f => return Err(CompressionError::SnappyReservedChunk(chunk_type)),
                _ => {
                    // Skippable (0x80..=0xfe): drop the header, then the body as it comes.
                    wire.advance(4);
                    self.skipping = len;
                }
            }
            progressed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_writes_go_out_uncompressed() {
        let mut enc = SnappyEncoder::new();
        let mut wire = BytesMut::new();
        enc.encode(b"hello", &mut wire);
        assert_eq!(&wire[..10], &STREAM_IDENTIFIER);
        assert_eq!(&wire[10..14], &[0x01, 9, 0, 0]);
        assert_eq!(&wire[18..], b"hello");
    }

    #[test]
    fn skippable_chunks_are_skipped_even_when_split() {
        let mut wire = BytesMut::from(&STREAM_IDENTIFIER[..]);
        wire.extend_from_slice(&[0xfe, 3, 0, 0, 1]);
        let mut dec = SnappyDecoder::default();
        let mut plain = BytesMut::new();
        assert!(dec.decode(&mut wire, &mut plain, 100).unwrap());
        wire.extend_from_slice(&[2, 3]);
        SnappyEncoder { started: true, ..SnappyEncoder::new() }.encode(b"after", &mut wire);
        while dec.decode(&mut wire, &mut plain, 100).unwrap() {}
        assert_eq!(&plain[..], b"after");
    }

    #[test]
    fn reserved_and_missing_identifier_are_errors() {
        let mut dec = SnappyDecoder::default();
        let mut plain = BytesMut::new();
        let mut wire = BytesMut::from(&[0x01u8, 5, 0, 0][..]);
        assert_eq!(dec.decode(&mut wire, &mut plain, 10), Err(CompressionError::SnappyMissingStreamIdentifier(1)));
        let mut wire = BytesMut::from(&STREAM_IDENTIFIER[..]);
        wire.extend_from_slice(&[0x02, 0, 0, 0]);
        assert_eq!(dec.decode(&mut wire, &mut plain, 10), Err(CompressionError::SnappyReservedChunk(2)));
    }
}
