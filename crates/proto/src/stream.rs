//! The two byte streams of a connection, with their buffers and compression.
//!
//! ```text
//!  socket -> [wire in] -(StreamDecoder)-> [plain in] -> codec -> handler / pending calls
//!  socket <- [wire out] <-(StreamEncoder)- [plain out] <- codec <- handler / new calls
//! ```
//!
//! Without compression the plain buffer *is* the wire buffer (no copy). All
//! buffers are `BytesMut`s that keep their allocation between batches:
//! consuming from the front is `advance` (O(1)), and a later `reserve` moves
//! a leftover partial message to the front instead of allocating.

use bytes::{Buf, BytesMut};

use crate::compress::{StreamDecoder, StreamEncoder};
use crate::error::CompressionError;

/// Spare room below which a read reserves another `buffer_size` bytes.
const MIN_READ_ROOM: usize = 4096;

/// Incoming bytes: raw from the socket, and decompressed.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) wire: BytesMut,
    plain: BytesMut,
    pub(crate) decoder: StreamDecoder,
    buffer_size: usize,
    /// Wire bytes consumed so far (handshake included).
    pub(crate) consumed: u64,
}

impl Inbound {
    pub(crate) fn new(buffer_size: usize) -> Self {
        Inbound {
            wire: BytesMut::new(),
            plain: BytesMut::new(),
            decoder: StreamDecoder::None,
            buffer_size,
            consumed: 0,
        }
    }

    /// The socket read buffer, with room for at least one more read.
    ///
    /// It starts small and doubles while reads keep filling it, up to
    /// `buffer_size` of room per read: a busy connection reaches full-size
    /// reads within a few, and an idle one never holds more than 4 KiB.
    pub(crate) fn read_buffer(&mut self) -> &mut BytesMut {
        reserve_read_room(&mut self.wire, self.buffer_size);
        &mut self.wire
    }

    /// Decoded bytes the codec has not consumed yet.
    #[inline]
    pub(crate) fn plain(&self) -> &[u8] {
        if self.decoder.is_identity() {
            &self.wire
        } else {
            &self.plain
        }
    }

    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        if self.decoder.is_identity() {
            self.wire.advance(n);
            self.consumed += n as u64;
        } else {
            self.plain.advance(n);
        }
    }

    /// [`consume`](Self::consume), handing the bytes out: the first `n`
    /// plain bytes, split off their buffer (no copy).
    pub(crate) fn take_front(&mut self, n: usize) -> bytes::Bytes {
        if self.decoder.is_identity() {
            self.consumed += n as u64;
            self.wire.split_to(n).freeze()
        } else {
            self.plain.split_to(n).freeze()
        }
    }

    /// Decompresses one step; `false` when there is nothing more to do until
    /// more wire bytes arrive.
    pub(crate) fn decompress(&mut self) -> Result<bool, CompressionError> {
        if self.decoder.is_identity() {
            return Ok(false);
        }
        let before = self.wire.len();
        let result = self.decoder.decode(&mut self.wire, &mut self.plain, self.buffer_size);
        self.consumed += before.saturating_sub(self.wire.len()) as u64;
        result
    }

    /// Consumes `n` wire bytes that are not messages (the handshake).
    pub(crate) fn skip(&mut self, n: usize) {
        self.wire.advance(n);
        self.consumed += n as u64;
    }

    /// The configured socket read size.
    #[cfg(feature = "tls")]
    pub(crate) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    pub(crate) fn receive_buffer(&mut self, bytes: &mut BytesMut) {
        move_all(bytes, &mut self.wire);
    }

    pub(crate) fn buffered(&self) -> usize {
        self.wire.len() + self.plain.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.wire.capacity() + self.plain.capacity()
    }

    pub(crate) fn release_buffers(&mut self) {
        release(&mut self.wire);
        release(&mut self.plain);
    }
}

/// Outgoing bytes: encoded plain, and compressed for the socket.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) wire: BytesMut,
    plain: BytesMut,
    pub(crate) encoder: StreamEncoder,
    /// Responses (or calls) added since the output was last fully written.
    pub(crate) unwritten_messages: usize,
    buffer_size: usize,
    /// Wire bytes handed to the socket so far (handshake included).
    pub(crate) written: u64,
}

impl Outbound {
    pub(crate) fn new(buffer_size: usize) -> Self {
        Outbound {
            wire: BytesMut::new(),
            plain: BytesMut::new(),
            encoder: StreamEncoder::None,
            unwritten_messages: 0,
            buffer_size,
            written: 0,
        }
    }

    /// Where the codec appends messages.
    #[inline]
    pub(crate) fn plain_mut(&mut self) -> &mut BytesMut {
        if self.encoder.is_identity() {
            &mut self.wire
        } else {
            &mut self.plain
        }
    }

    /// Compresses what was encoded since the last batch (with a flush).
    pub(crate) fn end_batch(&mut self) -> Result<(), CompressionError> {
        if self.encoder.is_identity() || self.plain.is_empty() {
            return Ok(());
        }
        let result = self.encoder.encode(&self.plain, &mut self.wire);
        self.plain.clear();
        result
    }

    /// Ends the batch early once a compressed batch reaches the buffer size,
    /// so compressed chunks stay bounded, as Go's 64 KiB writer does.
    #[inline]
    pub(crate) fn end_batch_if_large(&mut self) -> Result<(), CompressionError> {
        if !self.encoder.is_identity() && self.plain.len() >= self.buffer_size {
            self.end_batch()?;
        }
        Ok(())
    }

    /// Moves the (already batched) wire output into `into`, swapping buffers.
    pub(crate) fn take(&mut self, into: &mut BytesMut) {
        self.written += self.wire.len() as u64;
        move_all(&mut self.wire, into);
        self.unwritten_messages = 0;
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.wire.advance(n);
        self.written += n as u64;
        if self.wire.is_empty() {
            self.unwritten_messages = 0;
        }
    }

    pub(crate) fn buffered(&self) -> usize {
        self.wire.len() + self.plain.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.wire.capacity() + self.plain.capacity()
    }

    pub(crate) fn release_buffers(&mut self) {
        release(&mut self.wire);
        release(&mut self.plain);
    }
}

/// Moves every byte of `from` to the end of `into`, leaving `from` empty:
/// by swapping the two buffers when `into` is empty (no byte copied; `from`
/// gets `into`'s allocation to fill next time), by copying otherwise.
pub(crate) fn move_all(from: &mut BytesMut, into: &mut BytesMut) {
    if into.is_empty() {
        std::mem::swap(from, into);
    } else {
        into.extend_from_slice(from);
        from.clear();
    }
}

/// Gives a socket read buffer room for one more read: it starts small and
/// doubles while reads keep filling it, up to `buffer_size` of room.
pub(crate) fn reserve_read_room(buf: &mut BytesMut, buffer_size: usize) {
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        let room = buf.capacity().clamp(MIN_READ_ROOM, buffer_size.max(MIN_READ_ROOM));
        buf.reserve(room);
    }
}

/// Frees an empty buffer's allocation (an idle connection holds none).
///
/// Unconditionally when empty: after `advance` to its end a `BytesMut`
/// reports zero capacity yet still holds its whole allocation.
pub(crate) fn release(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}
