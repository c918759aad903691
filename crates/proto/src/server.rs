//! The server side of a connection, as a state machine.
//!
//! [`ServerConn`] reads the client's handshake, answers with its own, then
//! decodes requests, runs the [`Handler`] on each and encodes its response in
//! place. The backend only moves bytes: see [`Connection`](crate::Connection).
//!
//! ```
//! use fastwire_proto::{Connection, Flow, Request, ResponseWriter, ServerConfig, ServerConn};
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

use crate::codec::{check_response_value, decode_request};
use crate::compress::{StreamDecoder, StreamEncoder};
use crate::config::{Compression, Limits, ServerConfig};
use crate::connection::impl_connection;
use crate::error::{Error, HandshakeError};
use crate::handler::{Handler, ResponseWriter};
use crate::handshake;
use crate::stream::{Inbound, Outbound};

/// What the backend should do after [`ServerConn::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Every complete request was served: write the output, read more.
    NeedInput,
    /// Output reached `max_output_buffer` or `max_in_flight`: stop reading
    /// from this client until its output drains, then call `process` again
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
}

impl ServerConn {
    /// A new connection, waiting for the client's handshake.
    pub fn new(config: &ServerConfig) -> Self {
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
        }
    }

    /// Requests decoded so far on this connection (fire-and-forget included).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Responses encoded and not yet handed to the socket (see
    /// [`Connection::take_output`](crate::Connection::take_output)).
    pub fn unwritten_responses(&self) -> usize {
        self.outbound.unwritten_messages
    }

    /// Whether output has reached a limit, so no more requests are decoded.
    pub fn is_output_full(&self) -> bool {
        self.outbound.buffered() >= self.max_output_buffer || self.outbound.unwritten_messages >= self.max_in_flight
    }

    /// Serves every complete request received so far, appending responses to
    /// the output.
    ///
    /// An error means the connection must be closed; write whatever
    /// [`output`](crate::Connection::output) holds first (after a TLS request it is
    /// our handshake saying "no TLS", as Go's server does). Calling `process`
    /// again after an error returns the same error.
    pub fn process<H: Handler + ?Sized>(&mut self, handler: &H) -> Result<Flow, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.serve(handler);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn accept_handshake(&mut self) -> Result<bool, Error> {
        let Some((peer, used)) = handshake::decode(&self.inbound.wire, &self.sniff_header, self.version)? else {
            return Ok(false);
        };
        bytes::Buf::advance(&mut self.inbound.wire, used);
        // We never serve TLS: answer "no TLS" (so a Go client gets a clear
        // error) and then fail, as Go's server does without a TLSConfig.
        handshake::encode(&mut self.outbound.wire, &self.sniff_header, self.version, self.compression, false);
        if peer.tls {
            return Err(HandshakeError::TlsRequested.into());
        }
        self.inbound.decoder = StreamDecoder::new(peer.compression);
        self.outbound.encoder = StreamEncoder::new(self.compression, self.flate_level);
        self.open = true;
        Ok(true)
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
                self.requests += 1;
                let out = self.outbound.plain_mut();
                // Reserve the response header, let the handler write the value
                // right after it, then fill the header in: no copy of the value.
                let header_at = out.len();
                out.extend_from_slice(&request.id.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                let mut writer = ResponseWriter::new(out);
                handler.handle(request, &mut writer);
                let id = request.id;
                let value_len = out.len() - header_at - 8;
                if id == 0 {
                    out.truncate(header_at);
                } else {
                    if let Err(e) = check_response_value(value_len, &limits) {
                        out.truncate(header_at);
                        return Err(e.into());
                    }
                    out[header_at + 4..header_at + 8].copy_from_slice(&(value_len as u32).to_le_bytes());
                    self.outbound.unwritten_messages += 1;
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

impl_connection!(ServerConn);
