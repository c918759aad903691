//! What a backend does with any connection, server or client side.
//!
//! A backend's connection loop is the same shape on every architecture:
//!
//! ```text
//! loop {
//!     read from the socket into conn.read_buffer()   (or conn.received(bytes))
//!     conn.process(...)                               (server: run the handler; client: complete calls)
//!     write conn.output() to the socket, then conn.advance_output(n)
//! }
//! ```
//!
//! The methods for reading and writing bytes are this trait, implemented by
//! [`ServerConn`](crate::ServerConn) and [`ClientConn`](crate::ClientConn),
//! so that I/O code can be written once for both.

use bytes::BytesMut;

/// The byte-moving side of a connection state machine.
pub trait Connection {
    /// The buffer to read socket bytes into (append at its end). It always
    /// has some spare capacity; read into that, then call `process`.
    fn read_buffer(&mut self) -> &mut BytesMut;

    /// Copies bytes that were read elsewhere into the read buffer (which
    /// grows only as much as they need: a backend that reads into a buffer of
    /// its own, as the mio loops do, keeps small connections small).
    fn received(&mut self, bytes: &[u8]);

    /// Bytes to write to the socket, oldest first. Ends the current batch
    /// first (compressing it, with a flush), so everything queued is here.
    fn output(&mut self) -> &[u8];

    /// Marks the first `n` bytes of [`output`](Self::output) as written.
    fn advance_output(&mut self, n: usize);

    // ANCHOR: swap_buffers
    /// Hands over bytes read by a thread that does not own the connection.
    /// If nothing is buffered the two buffers are swapped, no byte copied:
    /// `bytes` comes back empty holding the connection's old allocation, to
    /// read into next time. Otherwise the bytes are appended and `bytes`
    /// cleared.
    fn receive_buffer(&mut self, bytes: &mut BytesMut);

    /// Moves all pending output into `into` (which should be empty; anything
    /// in it is kept in front) by swapping buffers, so that a writer thread
    /// can write without holding the connection. The output then counts as
    /// written as far as the connection's limits are concerned.
    fn take_output(&mut self, into: &mut BytesMut);
    // ANCHOR_END: swap_buffers

    /// Whether anything waits to be written.
    fn has_output(&self) -> bool;

    /// Bytes waiting to be written (compressed or not yet).
    fn buffered_output(&self) -> usize;

    /// Bytes received and not yet decoded.
    fn buffered_input(&self) -> usize;

    /// Usable capacity of this connection's buffers: roughly the buffer
    /// memory it holds (space already consumed at the front of a buffer is
    /// not counted until the buffer is reused or released).
    fn buffer_capacity(&self) -> usize;

    /// Frees the buffers that are empty, so that an idle connection holds no
    /// large allocation. Call it when a connection goes idle, not after every
    /// batch: the next batch has to allocate again.
    fn release_buffers(&mut self);

    /// Whether the peer's handshake has been received and accepted.
    fn is_handshake_done(&self) -> bool;

    /// Wire bytes received and consumed so far (compressed, if the peer
    /// compresses; handshake included).
    fn bytes_in(&self) -> u64;

    /// Wire bytes handed to the socket so far (by `advance_output` or
    /// `take_output`; handshake included).
    fn bytes_out(&self) -> u64;
}

/// Implements [`Connection`] for a type with `inbound`, `outbound`, `failed`,
/// `open` and (feature `tls`) `tls` fields. With an active TLS layer the
/// socket side is its raw buffers; the plaintext side is unchanged.
macro_rules! impl_connection {
    ($ty:ty $(, $generic:ident)?) => {
        impl$(<$generic>)? $crate::connection::Connection for $ty {
            fn read_buffer(&mut self) -> &mut bytes::BytesMut {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut().filter(|t| t.active) {
                    return tls.read_buffer();
                }
                self.inbound.read_buffer()
            }

            fn received(&mut self, bytes: &[u8]) {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut().filter(|t| t.active) {
                    return tls.raw_in.extend_from_slice(bytes);
                }
                self.inbound.wire.extend_from_slice(bytes);
            }

            fn output(&mut self) -> &[u8] {
                if let Err(e) = self.outbound.end_batch() {
                    // Cannot happen on valid use; surfaced by the next `process`.
                    self.failed.get_or_insert($crate::Error::from(e));
                }
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut() {
                    if let Err(e) = tls.seal(&mut self.outbound, &mut self.inbound) {
                        self.failed.get_or_insert(e);
                    }
                    return &tls.raw_out;
                }
                &self.outbound.wire
            }

            fn advance_output(&mut self, n: usize) {
                if n > 0 {
                    self.on_output_advanced();
                }
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.advance(n);
                    if tls.raw_out.is_empty() && self.outbound.buffered() == 0 {
                        self.outbound.unwritten_messages = 0;
                    }
                    return;
                }
                self.outbound.advance(n);
            }

            fn receive_buffer(&mut self, bytes: &mut bytes::BytesMut) {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut().filter(|t| t.active) {
                    return tls.receive_buffer(bytes);
                }
                self.inbound.receive_buffer(bytes);
            }

            fn take_output(&mut self, into: &mut bytes::BytesMut) {
                self.output();
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.take(into);
                    if self.outbound.buffered() == 0 {
                        self.outbound.unwritten_messages = 0;
                    }
                    self.on_output_taken(!into.is_empty());
                    return;
                }
                self.outbound.take(into);
                self.on_output_taken(!into.is_empty());
            }

            fn has_output(&self) -> bool {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    // Plaintext waiting for the TLS handshake is not output yet.
                    return !tls.raw_out.is_empty() || (tls.is_established() && self.outbound.buffered() > 0);
                }
                self.outbound.buffered() > 0
            }

            fn buffered_output(&self) -> usize {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    return self.outbound.buffered() + tls.raw_out.len();
                }
                self.outbound.buffered()
            }

            fn buffered_input(&self) -> usize {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    return self.inbound.buffered() + tls.raw_in.len();
                }
                self.inbound.buffered()
            }

            fn buffer_capacity(&self) -> usize {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    return self.inbound.capacity() + self.outbound.capacity() + tls.capacity();
                }
                self.inbound.capacity() + self.outbound.capacity()
            }

            fn release_buffers(&mut self) {
                self.inbound.release_buffers();
                self.outbound.release_buffers();
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.release_buffers();
                }
            }

            fn is_handshake_done(&self) -> bool {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    return self.open && tls.is_established();
                }
                self.open
            }

            fn bytes_in(&self) -> u64 {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref().filter(|t| t.active) {
                    return tls.bytes_in();
                }
                self.inbound.consumed
            }

            fn bytes_out(&self) -> u64 {
                #[cfg(feature = "tls")]
                if let Some(tls) = self.tls.as_deref() {
                    return self.outbound.written + tls.raw_written;
                }
                self.outbound.written
            }
        }

        impl$(<$generic>)? $ty {
            /// With TLS: decrypts what was read, and once the TLS handshake
            /// is done, encrypts what waited for it (so that it shows as
            /// output at once).
            #[cfg(feature = "tls")]
            fn pump_tls(&mut self) -> Result<(), $crate::Error> {
                let Some(tls) = self.tls.as_deref_mut().filter(|t| t.active) else { return Ok(()) };
                tls.open(&mut self.inbound)?;
                if tls.is_established() && self.outbound.buffered() > 0 {
                    self.outbound.end_batch()?;
                    tls.seal(&mut self.outbound, &mut self.inbound)?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use impl_connection;
