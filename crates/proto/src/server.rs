//! The server side of a connection, as a state machine.
//!
//! [`ServerConn`] reads the client's handshake, answers with its own, then
//! decodes requests, runs the [`Handler`] on each and encodes its response in
//! place. The backend only moves bytes: see [`Connection`](crate::driver::Connection).
//!
//! ```
//! use fastwire_proto::driver::{Connection, Flow};
//! use fastwire_proto::{Request, ResponseWriter, ServerConfig, ServerConn};
//!
//! let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| resp.extend_from_slice(req.value);
//! let mut conn = ServerConn::new(&ServerConfig::default());
//! // The client's handshake (version 0, no compression, no TLS) and one request, id 7.
//! conn.received(&[0, 1, 0]);
//! conn.received(b"\x07\0\0\0\x04\0\0\0echo\x02\0\0\0hi");
//! assert_eq!(conn.process(&handler), Ok(Flow::NeedInput));
//! // Our handshake, then the response: id 7, length 2, "hi".
//! assert_eq!(conn.output(), b"\0\x01\0\x07\0\0\0\x02\0\0\0hi");
//! ```

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::codec::{check_response_value, decode_request};
use crate::compress::{StreamDecoder, StreamEncoder};
use crate::config::{Compression, Limits, OverLimit, ServerConfig};
use crate::connection::impl_connection;
use crate::deferred::{ConcurrencyLimit, Deferral, NoWake, Wake};
use crate::error::{Error, HandshakeError};
use crate::handler::{Handler, ResponseWriter};
use crate::handshake;
use crate::stream::{Inbound, Outbound};

/// What the backend should do after [`ServerConn::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Every complete request was served: write the output, read more.
    NeedInput,
    /// Output reached `max_output_buffer`, the connection's calls in flight
    /// (unwritten or deferred) reached `max_in_flight`, or the server's
    /// concurrency limit is reached (with [`OverLimit::Backpressure`]): stop
    /// reading from this client until its output drains or the connection is
    /// woken (see [`ServerConn::with_waker`]), then call `process` again
    /// (requests already received are still buffered).
    OutputFull,
}

/// The server side of one connection.
#[derive(Debug)]
pub struct ServerConn {
    inbound: Inbound,
    outbound: Outbound,
    open: bool,
    failed: Option<Error>,
    sniff_header: Box<[u8]>,
    version: u8,
    compression: Compression,
    flate_level: u32,
    limits: Limits,
    max_in_flight: usize,
    max_output_buffer: usize,
    requests: u64,
    /// Deferred requests not answered yet.
    deferred: usize,
    dropped_responders: u64,
    rejected: u64,
    /// Waiting for a slot of the server's concurrency limit.
    limit_blocked: bool,
    deferral: Deferral,
    peer: Option<std::net::SocketAddr>,
    /// Its life and timeouts, from [`start_clock`](Self::start_clock) on.
    pub(crate) life: Option<crate::lifecycle::Lifecycle>,
    /// `handshake_timeout` and `idle_timeout`, for the lifecycle.
    pub(crate) timeouts: (std::time::Duration, Option<std::time::Duration>),
    /// The driver took output ([`Connection::take_output`](crate::driver::Connection::take_output))
    /// it has not reported written ([`written`](Self::written)).
    pub(crate) handed_out: bool,
    /// TLS settings, if this server serves TLS.
    #[cfg(feature = "tls")]
    tls_config: Option<(crate::tls::TlsServer, bool)>,
    /// The TLS session, once a client asked for it.
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::TlsLayer>>,
}

impl ServerConn {
    /// A new connection, waiting for the client's handshake. Handlers can
    /// defer, but nothing wakes the connection when a deferred response
    /// arrives: call [`process`](Self::process) to collect them (for
    /// connections driven by hand; backends use [`with_waker`](Self::with_waker)).
    pub fn new(config: &ServerConfig) -> Self {
        Self::with_waker(config, None, Arc::new(NoWake), 0)
    }

    /// A new connection whose deferred responses are announced by
    /// `waker.wake(key)` (see [`deferred`](crate::deferred)), sharing the
    /// server's concurrency limit (from [`ConcurrencyLimit::for_config`],
    /// made once per server).
    pub fn with_waker(
        config: &ServerConfig,
        limit: Option<Arc<ConcurrencyLimit>>,
        waker: Arc<dyn Wake>,
        key: usize,
    ) -> Self {
        let protocol = &config.protocol;
        ServerConn {
            inbound: Inbound::new(config.buffer_size),
            outbound: Outbound::new(config.buffer_size),
            open: false,
            failed: None,
            sniff_header: protocol.sniff_header.clone().into_boxed_slice(),
            version: protocol.protocol_version,
            compression: protocol.compression,
            flate_level: protocol.flate_level,
            limits: protocol.limits,
            max_in_flight: config.max_in_flight.max(1),
            max_output_buffer: config.max_output_buffer,
            requests: 0,
            deferred: 0,
            dropped_responders: 0,
            rejected: 0,
            limit_blocked: false,
            deferral: Deferral::new(waker, key, protocol.limits, limit),
            peer: None,
            life: None,
            timeouts: (config.handshake_timeout, config.idle_timeout),
            handed_out: false,
            #[cfg(feature = "tls")]
            tls_config: config.tls.clone().map(|tls| (tls, config.tls_optional)),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Tells handlers who the client is ([`ResponseWriter::peer_addr`]).
    pub fn set_peer_addr(&mut self, peer: Option<std::net::SocketAddr>) {
        self.peer = peer;
    }

    /// The client's address, if the backend told it ([`set_peer_addr`](Self::set_peer_addr)).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// Deferred requests whose responses have not arrived yet.
    pub fn deferred_in_flight(&self) -> usize {
        self.deferred
    }

    /// Responders dropped without an answer so far (their calls got none).
    pub fn dropped_responders(&self) -> u64 {
        self.dropped_responders
    }

    /// Requests answered at once with the over-limit value
    /// ([`OverLimit::Reject`]) so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Requests decoded so far on this connection (fire-and-forget included).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Responses encoded and not yet handed to the socket (see
    /// [`Connection::take_output`](crate::driver::Connection::take_output)).
    pub fn unwritten_responses(&self) -> usize {
        self.outbound.unwritten_messages
    }

    /// Whether a limit stops decoding: output bytes (`max_output_buffer`),
    /// calls in flight on this connection, written or deferred
    /// (`max_in_flight`), or the server's concurrency limit.
    pub fn is_output_full(&self) -> bool {
        crate::driver::Connection::buffered_output(self) >= self.max_output_buffer
            || self.outbound.unwritten_messages + self.deferred >= self.max_in_flight
            || (self.limit_blocked && !self.limit_has_room())
    }

    /// While blocked on the concurrency limit: whether a slot is free now.
    /// If not, the connection is (still) registered to be woken when one
    /// frees, before the check, so that a slot freed meanwhile is not missed.
    fn limit_has_room(&self) -> bool {
        let Some(limit) = &self.deferral.limit else { return true };
        if let Some(completions) = &self.deferral.completions {
            limit.wait(completions);
        }
        limit.has_room()
    }

    /// Collects the deferred responses that arrived, then serves every
    /// complete request received so far, appending responses to the output.
    ///
    /// An error means the connection must be closed; write whatever
    /// [`output`](crate::driver::Connection::output) holds first (after a TLS request it is
    /// our handshake saying "no TLS", as Go's server does). Calling `process`
    /// again after an error returns the same error.
    pub fn process<H: Handler + ?Sized>(&mut self, handler: &H) -> Result<Flow, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        #[cfg(feature = "tls")]
        let result = self.pump_tls().and_then(|()| self.collect_deferred()).and_then(|()| self.serve(handler));
        #[cfg(not(feature = "tls"))]
        let result = self.collect_deferred().and_then(|()| self.serve(handler));
        match &result {
            Err(e) => self.failed_with(e),
            // The end-of-stream rule, once what came before the end is served.
            Ok(_) if self.peer_closed() => self.close_if_served(),
            Ok(_) => {}
        }
        result
    }

    /// The state machine failed with `e`: it stays failed, and its life
    /// begins the close (see [`CloseReason::of_error`](crate::driver::CloseReason::of_error)).
    fn failed_with(&mut self, e: &Error) {
        self.failed = Some(e.clone());
        let reason = crate::driver::CloseReason::of_error(e, !crate::driver::Connection::is_handshake_done(self));
        self.fail_life(reason);
    }

    /// Moves the deferred responses that arrived into the output, without
    /// serving new requests (for a thread that writes but does not run
    /// handlers). An error (a deferred handler panicked) closes the connection.
    pub fn collect_deferred(&mut self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(completions) = &self.deferral.completions else { return Ok(()) };
        let collected = completions.collect(self.outbound.plain_mut());
        self.deferred -= collected.finished.min(self.deferred);
        self.outbound.unwritten_messages += collected.answered;
        self.dropped_responders += collected.dropped as u64;
        if collected.finished > 0 {
            self.answered();
        }
        if let Some(e) = collected.failure {
            self.failed_with(&e);
            return Err(e);
        }
        if collected.answered > 0 {
            self.outbound.end_batch_if_large()?;
        }
        Ok(())
    }

    fn accept_handshake(&mut self) -> Result<bool, Error> {
        let Some((peer, used)) = handshake::decode(&self.inbound.wire, &self.sniff_header, self.version)? else {
            return Ok(false);
        };
        self.inbound.skip(used);
        // ANCHOR: tls_accept
        #[cfg(feature = "tls")]
        if let Some((tls, optional)) = &self.tls_config {
            if peer.tls {
                // Our handshake says yes, in the clear; TLS follows it.
                let mut ours = bytes::BytesMut::new();
                handshake::encode(&mut ours, &self.sniff_header, self.version, self.compression, true);
                let mut layer = crate::tls::TlsLayer::server(tls, ours, self.inbound.buffer_size())?;
                // A ClientHello that came with the handshake is read now.
                let activated = layer.activate(&mut self.inbound);
                self.tls = Some(Box::new(layer));
                self.start_streams(peer.compression);
                activated?;
                return Ok(true);
            }
            if !optional {
                // Say that this server speaks TLS (a fastwire client reports
                // it; Go's ignores it and sees the close), then close.
                handshake::encode(&mut self.outbound.wire, &self.sniff_header, self.version, self.compression, true);
                return Err(HandshakeError::TlsRequired.into());
            }
        }
        // ANCHOR_END: tls_accept
        // No TLS here: answer "no TLS" (so a Go client gets a clear error)
        // and then fail, as Go's server does without a TLSConfig.
        handshake::encode(&mut self.outbound.wire, &self.sniff_header, self.version, self.compression, false);
        if peer.tls {
            return Err(HandshakeError::TlsRequested.into());
        }
        self.start_streams(peer.compression);
        Ok(true)
    }

    fn start_streams(&mut self, peer_compression: Compression) {
        self.inbound.decoder = StreamDecoder::new(peer_compression);
        self.outbound.encoder = StreamEncoder::new(self.compression, self.flate_level);
        self.open = true;
    }

    fn serve<H: Handler + ?Sized>(&mut self, handler: &H) -> Result<Flow, Error> {
        if !self.open && !self.accept_handshake()? {
            return Ok(Flow::NeedInput);
        }
        let limits = self.limits;
        loop {
            loop {
                if self.is_output_full() {
                    self.outbound.end_batch()?;
                    return Ok(Flow::OutputFull);
                }
                let Some((request, used)) = decode_request(self.inbound.plain(), &limits)? else {
                    break;
                };
                // The server's concurrency limit, if any (no cost without one).
                let admission = match self.deferral.limit {
                    None => Admission::Go { holds_slot: false },
                    Some(_) => admit(&mut self.deferral, &mut self.outbound, &limits, request.id)?,
                };
                let holds_slot = match admission {
                    Admission::Go { holds_slot } => holds_slot,
                    Admission::Rejected => {
                        self.requests += 1;
                        self.rejected += 1;
                        self.inbound.consume(used);
                        self.outbound.end_batch_if_large()?;
                        continue;
                    }
                    Admission::Blocked => {
                        self.limit_blocked = true;
                        self.outbound.end_batch()?;
                        return Ok(Flow::OutputFull);
                    }
                };
                self.limit_blocked = false;
                self.requests += 1;
                let out = self.outbound.plain_mut();
                // Reserve the response header, let the handler write the value
                // right after it, then fill the header in: no copy of the value.
                let header_at = out.len();
                out.extend_from_slice(&request.id.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                let id = request.id;
                // ANCHOR: handler_call
                let mut writer = ResponseWriter::for_request(out, id, &mut self.deferral, holds_slot, self.peer);
                // A panicking handler must not take the thread, loop or task
                // with it: catch it, answer nothing, close this connection.
                #[cfg(feature = "request-spans")]
                let span = tracing::debug_span!(
                    "fastwire.request",
                    id,
                    name = %crate::handler::Lossy(request.name),
                    len = request.value.len(),
                    peer = ?self.peer,
                    deferred = tracing::field::Empty,
                )
                .entered();
                let handled = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request, &mut writer)));
                let deferred = writer.is_deferred();
                #[cfg(feature = "request-spans")]
                {
                    span.record("deferred", deferred);
                    drop(span);
                }
                if handled.is_err() {
                    out.truncate(header_at);
                    if holds_slot && !deferred {
                        self.release_slot();
                    }
                    self.inbound.consume(used);
                    return Err(Error::HandlerPanicked { id });
                }
                if deferred {
                    // The responder answers later (and gives the slot back).
                    out.truncate(header_at);
                    self.deferred += 1;
                    // ANCHOR_END: handler_call
                } else {
                    self.finish_response(header_at, id, holds_slot)?;
                }
                self.inbound.consume(used);
                self.outbound.end_batch_if_large()?;
            }
            if !self.inbound.decompress()? {
                break;
            }
        }
        self.outbound.end_batch()?;
        Ok(Flow::NeedInput)
    }
}

impl ServerConn {
    /// Fills in the header reserved at `header_at` for the value the
    /// handler wrote after it (or drops it: a fire-and-forget request gets
    /// no response), and gives the concurrency slot back.
    #[inline]
    fn finish_response(&mut self, header_at: usize, id: u32, holds_slot: bool) -> Result<(), Error> {
        if holds_slot {
            self.release_slot();
        }
        let out = self.outbound.plain_mut();
        let value_len = out.len() - header_at - 8;
        if id == 0 {
            out.truncate(header_at);
            return Ok(());
        }
        if let Err(e) = check_response_value(value_len, &self.limits) {
            out.truncate(header_at);
            return Err(e.into());
        }
        out[header_at + 4..header_at + 8].copy_from_slice(&(value_len as u32).to_le_bytes());
        self.outbound.unwritten_messages += 1;
        Ok(())
    }

    fn release_slot(&self) {
        if let Some(limit) = &self.deferral.limit {
            limit.release();
        }
    }
}

impl_connection!(ServerConn);

impl ServerConn {
    /// Output was taken by the driver (see [`written`](Self::written)).
    #[inline]
    fn on_output_taken(&mut self, taken: bool) {
        self.handed_out |= taken;
    }

    /// Output went out in place.
    #[inline]
    fn on_output_advanced(&mut self) {
        self.progressed();
    }
}

/// Whether a request may run now (see [`admit`]).
enum Admission {
    /// It runs; `holds_slot` if it took a slot of the concurrency limit.
    Go { holds_slot: bool },
    /// Refused over the limit, its answer written (none for id 0).
    Rejected,
    /// No slot free: the connection reads no more until one is (backpressure).
    Blocked,
}

/// The server's concurrency limit, if any, for the request with `id`: a
/// slot taken, or the request refused with the over-limit answer, or the
/// connection held back until a slot is free.
fn admit(deferral: &mut Deferral, outbound: &mut Outbound, limits: &Limits, id: u32) -> Result<Admission, Error> {
    let Some(limit) = &deferral.limit else {
        return Ok(Admission::Go { holds_slot: false });
    };
    if limit.try_acquire() {
        return Ok(Admission::Go { holds_slot: true });
    }
    match &limit.over_limit {
        OverLimit::Backpressure => {
            // Register, then try once more: a slot freed in between must
            // not go unnoticed.
            let limit = Arc::clone(limit);
            limit.wait(deferral.completions());
            if limit.try_acquire() {
                Ok(Admission::Go { holds_slot: true })
            } else {
                Ok(Admission::Blocked)
            }
        }
        OverLimit::Reject(value) => {
            if id != 0 {
                crate::codec::encode_response(outbound.plain_mut(), id, value, limits)?;
                outbound.unwritten_messages += 1;
            }
            Ok(Admission::Rejected)
        }
    }
}
