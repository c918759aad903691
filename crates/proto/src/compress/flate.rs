//! Raw DEFLATE (RFC 1951) as one stream per direction, via `flate2`.

use bytes::{Buf, BytesMut};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::CompressionError;

/// Output space offered to the decompressor per step when little is asked for.
const MIN_STEP: usize = 4 * 1024;

/// Compresses one direction's stream. Its state (the LZ77 window) lives as
/// long as the connection, which is what makes small messages compress well.
pub struct FlateEncoder {
    compress: Compress,
}

impl std::fmt::Debug for FlateEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlateEncoder").field("total_in", &self.compress.total_in()).finish()
    }
}

impl FlateEncoder {
    /// A raw DEFLATE compressor at `level` (0 to 9; higher values are clamped).
    pub fn new(level: u32) -> Self {
        FlateEncoder { compress: Compress::new(flate2::Compression::new(level.min(9)), false) }
    }

    /// Compresses `plain` onto `wire` and sync-flushes: the output ends with
    /// an empty stored block (`00 00 ff ff`), so the peer can decode it all.
    pub fn encode(&mut self, plain: &[u8], wire: &mut BytesMut) -> Result<(), CompressionError> {
        let mut input = plain;
        loop {
            // DEFLATE can expand incompressible data slightly; leave room.
            let room = input.len() + input.len() / 16 + 64;
            let start = wire.len();
            wire.resize(start + room, 0);
            let (in_before, out_before) = (self.compress.total_in(), self.compress.total_out());
            let result = self.compress.compress(input, &mut wire[start..], FlushCompress::Sync);
            let consumed = (self.compress.total_in() - in_before) as usize;
            let produced = (self.compress.total_out() - out_before) as usize;
            wire.truncate(start + produced);
            result.map_err(|e| CompressionError::FlateCompress(e.to_string()))?;
            input = &input[consumed..];
            // The flush is complete once all input is in and the compressor
            // did not fill the space it was given.
            if input.is_empty() && produced < room {
                return Ok(());
            }
        }
    }
}

/// Decompresses one direction's stream incrementally.
pub struct FlateDecoder {
    decompress: Decompress,
    ended: bool,
}

impl Default for FlateDecoder {
    fn default() -> Self {
        FlateDecoder { decompress: Decompress::new(false), ended: false }
    }
}

impl std::fmt::Debug for FlateDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlateDecoder")
            .field("total_in", &self.decompress.total_in())
            .field("ended", &self.ended)
            .finish()
    }
}

impl FlateDecoder {
    /// See [`StreamDecoder::decode`](super::StreamDecoder::decode).
    pub fn decode(
        &mut self,
        wire: &mut BytesMut,
        plain: &mut BytesMut,
        max_out: usize,
    ) -> Result<bool, CompressionError> {
        // Even with no new input the inflater may hold output it had no room
        // for last time (a long run expands a few bytes into many), so it is
        // asked again; it reports no progress once drained.
        if self.ended {
            return if wire.is_empty() { Ok(false) } else { Err(CompressionError::FlateDataAfterEnd) };
        }
        let step = max_out.max(MIN_STEP);
        let start = plain.len();
        plain.resize(start + step, 0);
        let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
        let result = self.decompress.decompress(wire, &mut plain[start..], FlushDecompress::None);
        let consumed = (self.decompress.total_in() - in_before) as usize;
        let produced = (self.decompress.total_out() - out_before) as usize;
        plain.truncate(start + produced);
        wire.advance(consumed);
        match result {
            Ok(Status::StreamEnd) => self.ended = true,
            Ok(_) => {}
            Err(e) => return Err(CompressionError::FlateCorrupt(e.to_string())),
        }
        Ok(consumed > 0 || produced > 0)
    }
}
