//! The handler interface: the same on every backend.
//!
//! A [`Handler`] sees each request's name and value borrowed from the
//! connection's read buffer, and writes its response value straight into the
//! connection's output buffer through a [`ResponseWriter`], in the spirit of
//! fasthttp's `RequestCtx`. The connection writes the response header around
//! it. So serving a request copies nothing and allocates nothing beyond what
//! the handler itself does.
//!
//! Handlers run inline on the thread or task that owns the connection, one
//! request after another, so an inline handler must be quick: on the
//! event-driven backends a handler that waits stalls every connection of its
//! loop. A handler that has to wait *defers* instead:
//! [`ResponseWriter::defer`] hands it a [`Responder`] to answer from any
//! thread or task later, and the connection serves the next requests
//! meanwhile (see [`deferred`](crate::deferred)). The backends build their
//! worker pools and `async` handlers on that one mechanism.
//!
//! A handler that panics is caught: its call gets no response, and its
//! connection (only it) is closed, so its client sees a connection error and
//! never a wrong value.
//!
//! ```
//! use fastwire_proto::{Handler, Request, ResponseWriter};
//!
//! // Any `Fn(Request, &mut ResponseWriter) + Send + Sync` is a handler.
//! let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
//!     resp.extend_from_slice(b"re:");
//!     resp.extend_from_slice(req.value);
//! };
//! fn assert_handler(_: &impl Handler) {}
//! assert_handler(&echo);
//! ```

use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::Request;
use crate::deferred::{Deferral, Responder};

/// Serves requests. Implemented for closures; shared by all connections of a
/// server (hence `Send + Sync` and `&self`).
pub trait Handler: Send + Sync {
    /// Answers one request by appending the response value to `response`.
    /// For a fire-and-forget request (`request.id == 0`) whatever is written
    /// is discarded.
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>);
}

impl<F> Handler for F
where
    F: Fn(Request<'_>, &mut ResponseWriter<'_>) + Send + Sync,
{
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        self(request, response)
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        (**self).handle(request, response)
    }
}

/// Where a handler writes its response value: the tail of the connection's
/// output buffer, after a reserved header. It can only append to (or
/// truncate) its own response, never touch what is before it.
#[derive(Debug)]
pub struct ResponseWriter<'a> {
    buf: &'a mut BytesMut,
    start: usize,
    /// The connection's deferral, for [`defer`](Self::defer) (none for a
    /// standalone writer).
    deferral: Option<&'a mut Deferral>,
    id: u32,
    holds_slot: bool,
    deferred: bool,
    peer: Option<std::net::SocketAddr>,
}

impl<'a> ResponseWriter<'a> {
    /// A writer appending to `buf`; the value starts at its current end.
    /// It cannot defer (its [`defer`](Self::defer) returns a detached
    /// responder).
    pub fn new(buf: &'a mut BytesMut) -> Self {
        let start = buf.len();
        ResponseWriter { buf, start, deferral: None, id: 0, holds_slot: false, deferred: false, peer: None }
    }

    /// The writer a connection hands its handler for request `id`.
    pub(crate) fn for_request(
        buf: &'a mut BytesMut,
        id: u32,
        deferral: &'a mut Deferral,
        holds_slot: bool,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        let start = buf.len();
        ResponseWriter { buf, start, deferral: Some(deferral), id, holds_slot, deferred: false, peer }
    }

    /// The address of the client that sent the request, where the backend
    /// knows it (every fastwire backend does).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// Answers later: returns the [`Responder`] to complete from any thread
    /// or task, and the connection goes on serving other requests. Whatever
    /// this writer holds is discarded. Call it at most once per request; a
    /// second call returns a detached responder (completing it reports
    /// [`RespondError::Gone`](crate::RespondError::Gone)).
    pub fn defer(&mut self) -> Responder {
        match self.deferral.as_deref_mut() {
            Some(deferral) if !self.deferred => {
                self.deferred = true;
                Responder::new(self.id, std::sync::Arc::clone(deferral.completions()), self.holds_slot)
            }
            _ => Responder::detached(self.id),
        }
    }

    /// Whether [`defer`](Self::defer) was called.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Appends bytes to the response value.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.buf.extend_from_slice(&[byte]);
    }

    /// Reserves room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// Length of the value written so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Shortens the value to `len` bytes (no effect if it is shorter).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(self.start + len);
    }

    /// Discards everything written.
    pub fn clear(&mut self) {
        self.truncate(0);
    }
}

impl std::io::Write for ResponseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for ResponseWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_only_sees_its_own_value() {
        let mut buf = BytesMut::from(&b"header"[..]);
        let mut w = ResponseWriter::new(&mut buf);
        std::fmt::Write::write_fmt(&mut w, format_args!("{}-{}", 1, 2)).unwrap();
        w.push(b'!');
        assert_eq!(w.as_slice(), b"1-2!");
        w.truncate(1);
        assert_eq!(w.len(), 1);
        w.clear();
        assert!(w.is_empty());
        assert_eq!(&buf[..], b"header");
    }
}

/// Shows bytes as text, invalid UTF-8 replaced, without allocating (request
/// names in tracing spans).
#[cfg(feature = "request-spans")]
pub(crate) struct Lossy<'a>(pub(crate) &'a [u8]);

#[cfg(feature = "request-spans")]
impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}
