//! Errors: one typed variant per way a peer or a caller can get it wrong.
//!
//! Every message says what was wrong and, where a setting decides it, which
//! one, so that the log line is enough to fix the configuration. All of them
//! end the connection they happen on, except [`Error::TooManyPending`], which
//! only refuses one call.

use crate::config::Compression;

/// Which kind of message a [`MessageError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A request (client to server).
    Request,
    /// A response (server to client).
    Response,
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        })
    }
}

/// A handshake that does not match this side's configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first bytes differ from the configured sniff header.
    #[error(
        "handshake: the peer's sniff header {got:?} differs from the configured {expected:?} \
         (setting: sniff_header; both sides must use the same)"
    )]
    SniffMismatch {
        /// The configured sniff header.
        expected: Vec<u8>,
        /// The bytes received in its place (up to the first difference).
        got: Vec<u8>,
    },
    /// The peer speaks another protocol version.
    #[error(
        "handshake: the peer speaks protocol version {got}, this side version {expected} \
         (setting: protocol_version; both sides must use the same)"
    )]
    VersionMismatch {
        /// The configured version.
        expected: u8,
        /// The version the peer announced.
        got: u8,
    },
    /// The peer announced a compression type fastrpc does not define.
    #[error(
        "handshake: the peer announced unknown compression type {0} \
         (known: 0 = flate, 1 = none, 2 = snappy)"
    )]
    UnknownCompression(u8),
    /// The client asked for TLS, which this server is not configured to serve.
    #[error(
        "handshake: the client requested TLS, which this server is not configured to serve \
         (setting: the server's TLS certificate and key, ServerConfig::tls, --tls-cert/--tls-key; \
         or connect without TLS)"
    )]
    TlsRequested,
    /// The server requires TLS and the client did not ask for it (seen by
    /// the server, and by a fastwire client from the server's answer).
    #[error(
        "handshake: the server requires TLS and the client did not ask for it \
         (setting: ClientConfig::tls / --tls on the client, or tls_optional / --tls-optional on the server)"
    )]
    TlsRequired,
    /// The client asked for TLS and the server answered without it.
    #[error(
        "handshake: this client asked for TLS and the server does not serve it \
         (setting: the server's TLS certificate, ServerConfig::tls / --tls-cert; or call without TLS)"
    )]
    TlsRefused,
}

/// TLS failed on an established or establishing session (feature `tls`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The peer's certificate is not trusted, not valid for the name, or missing.
    #[error("TLS: the peer's certificate was refused: {reason} (setting: {setting})")]
    Certificate {
        /// rustls's reason.
        reason: String,
        /// The setting that decides it.
        setting: &'static str,
    },
    /// The peer ended the handshake with an alert.
    #[error("TLS: the peer sent alert {alert} ({hint})")]
    AlertReceived {
        /// The alert's name.
        alert: String,
        /// What usually causes it.
        hint: &'static str,
    },
    /// Bytes that are not TLS records where TLS was agreed.
    #[error("TLS: the peer sent bytes that are not valid TLS: {reason} (a peer that does not speak TLS after asking for it?)")]
    NotTls {
        /// rustls's reason.
        reason: String,
    },
    /// Anything else rustls refuses.
    #[error("TLS: {reason}")]
    Other {
        /// rustls's reason.
        reason: String,
    },
}

/// A message whose lengths break the configured [`Limits`](crate::Limits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A name length over `max_name_len`.
    #[error("{kind} name is {len} bytes, over the limit of {limit} bytes (setting: limits.max_name_len)")]
    NameTooLong {
        /// Request or response.
        kind: MessageKind,
        /// The length that was announced or asked for.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A value length over `max_value_len`.
    #[error("{kind} value is {len} bytes, over the limit of {limit} bytes (setting: limits.max_value_len)")]
    ValueTooLong {
        /// Request or response.
        kind: MessageKind,
        /// The length that was announced or asked for.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
}

/// A compressed stream that cannot be decoded (or, for flate, encoded).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The DEFLATE stream is corrupt.
    #[error("flate: corrupt stream from the peer: {0}")]
    FlateCorrupt(String),
    /// The peer ended its DEFLATE stream (a final block) and then sent more.
    #[error("flate: the peer sent data after the end of its DEFLATE stream")]
    FlateDataAfterEnd,
    /// The DEFLATE compressor failed (it cannot on valid use; reported, not panicked).
    #[error("flate: compressor failed: {0}")]
    FlateCompress(String),
    /// A Snappy stream that does not begin with the stream identifier chunk.
    #[error("snappy: stream does not start with the stream identifier chunk (got chunk type {0:#04x})")]
    SnappyMissingStreamIdentifier(u8),
    /// A stream identifier chunk with the wrong body.
    #[error("snappy: malformed stream identifier chunk")]
    SnappyBadStreamIdentifier,
    /// A chunk type reserved as unskippable by the framing format.
    #[error("snappy: reserved unskippable chunk type {0:#04x}")]
    SnappyReservedChunk(u8),
    /// A data chunk whose length is impossible.
    #[error("snappy: chunk type {chunk_type:#04x} has invalid length {len} (data chunks hold at most 65536 bytes)")]
    SnappyBadChunkLength {
        /// The chunk type.
        chunk_type: u8,
        /// The announced length.
        len: usize,
    },
    /// A compressed chunk the Snappy decoder rejects.
    #[error("snappy: corrupt compressed chunk: {0}")]
    SnappyCorrupt(String),
    /// A chunk whose CRC-32C does not match its data.
    #[error("snappy: checksum mismatch (chunk says {expected:#010x}, data gives {actual:#010x})")]
    SnappyChecksum {
        /// The masked CRC the chunk carried.
        expected: u32,
        /// The masked CRC of the decoded data.
        actual: u32,
    },
    /// The Snappy compressor failed (it cannot on valid use; reported, not panicked).
    #[error("snappy: compressor failed: {0}")]
    SnappyCompress(String),
}

impl CompressionError {
    /// Which compression this error belongs to.
    pub fn compression(&self) -> Compression {
        match self {
            CompressionError::FlateCorrupt(_)
            | CompressionError::FlateDataAfterEnd
            | CompressionError::FlateCompress(_) => Compression::Flate,
            _ => Compression::Snappy,
        }
    }
}

/// Any protocol error. All but [`Error::TooManyPending`] end the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A message broke the size limits.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The compressed stream is corrupt.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// TLS failed (certificate, alert, not TLS).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A call was refused because the connection already has `limit` calls
    /// awaiting responses. Only this call fails; the connection is fine.
    #[error(
        "too many pending calls: {limit} calls already await a response on this connection \
         (setting: max_pending)"
    )]
    TooManyPending {
        /// The configured limit.
        limit: usize,
    },
    /// The handler panicked (or gave up on the call with
    /// `Responder::close_connection`) while serving request `id`. The
    /// connection is closed without answering it, so its client sees a
    /// connection error, never a wrong value; the server goes on.
    #[error(
        "the handler panicked while serving request {id}: the connection is closed without a response \
         for it (its client sees a connection error, never a wrong value)"
    )]
    HandlerPanicked {
        /// The request id.
        id: u32,
    },
}

impl Error {
    /// Whether the connection must be closed after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::TooManyPending { .. })
    }
}
