//! Configuration shared by every backend.
//!
//! The protocol crate owns the settings that change what goes on the wire
//! ([`ProtocolConfig`], [`Limits`]) and enforces them itself. The settings that
//! need a clock or a socket (timeouts, connection counts, batch delay) live
//! here too, so that every backend reads the same names with the same
//! defaults, but it is the backends that enforce them: this crate never looks
//! at a clock.
//!
//! All types are plain structs with public fields and a documented
//! [`Default`]; change what you need with struct update syntax:
//!
//! ```
//! use fastwire_proto::{ClientConfig, Compression, ProtocolConfig};
//!
//! let config = ClientConfig {
//!     protocol: ProtocolConfig {
//!         compression: Compression::Snappy,
//!         sniff_header: b"xy".to_vec(),
//!         ..ProtocolConfig::default()
//!     },
//!     max_pending: 10_000,
//!     ..ClientConfig::default()
//! };
//! assert_eq!(config.protocol.protocol_version, 0);
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The largest name or value Go's fastrpc accepts: 1 MiB (`tlv.maxBytesSize`).
pub const GO_MAX_BYTES: usize = 1024 * 1024;

/// How a side compresses the stream it *sends*.
///
/// The byte values are the wire values of fastrpc's `CompressType`. Each
/// direction is independent: a side announces in its handshake how it
/// compresses its own output, and decompresses its input as the peer announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// One raw DEFLATE stream (RFC 1951) for the life of the connection, with
    /// a sync flush after each batch. Wire value 0: Go's default (its zero value).
    Flate,
    /// Raw bytes. Wire value 1. fastwire's default: on loopback and fast
    /// networks compression costs more CPU than it saves, and because the
    /// directions are independent a Go peer that compresses still interoperates.
    #[default]
    None,
    /// The Snappy framing format (stream identifier, CRC-checked chunks).
    /// Wire value 2.
    Snappy,
}

impl Compression {
    /// All compression types, in wire order.
    pub const ALL: [Compression; 3] = [Compression::Flate, Compression::None, Compression::Snappy];

    /// The byte this type is announced with in the handshake.
    pub const fn wire_value(self) -> u8 {
        match self {
            Compression::Flate => 0,
            Compression::None => 1,
            Compression::Snappy => 2,
        }
    }

    /// The type a handshake byte announces, or `None` for an unknown value.
    pub const fn from_wire_value(byte: u8) -> Option<Compression> {
        match byte {
            0 => Some(Compression::Flate),
            1 => Some(Compression::None),
            2 => Some(Compression::Snappy),
            _ => None,
        }
    }

    /// The lowercase name used on command lines and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::Flate => "flate",
            Compression::None => "none",
            Compression::Snappy => "snappy",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Compression`] from text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?}: expected one of none, flate, snappy")]
pub struct ParseCompressionError(pub String);

impl FromStr for Compression {
    type Err = ParseCompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "flate" | "deflate" => Ok(Compression::Flate),
            "snappy" => Ok(Compression::Snappy),
            _ => Err(ParseCompressionError(s.to_owned())),
        }
    }
}

/// Size limits on decoded and encoded messages.
///
/// A length field over a limit is an error as soon as its four bytes arrive,
/// before any of the payload is buffered, so a hostile peer cannot make a
/// connection buffer more than one maximum-size message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request name, in bytes. Default 1 MiB, as Go's fastrpc.
    pub max_name_len: usize,
    /// Largest request or response value, in bytes. Default 1 MiB, as Go's fastrpc.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_name_len: GO_MAX_BYTES, max_value_len: GO_MAX_BYTES }
    }
}

impl Limits {
    /// The largest request that fits these limits, on the wire (uncompressed).
    pub const fn max_request_len(&self) -> usize {
        12 + self.max_name_len + self.max_value_len
    }
}

/// The settings that shape the bytes on the wire; both sides of a connection
/// must agree on the sniff header and protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Bytes each side sends first and expects first from its peer, byte for
    /// byte. Default: empty (Go's default).
    pub sniff_header: Vec<u8>,
    /// The protocol version byte; the peer's must be equal. Default 0.
    pub protocol_version: u8,
    /// How this side compresses what it sends. Default [`Compression::None`].
    pub compression: Compression,
    /// DEFLATE level (0 to 9) when [`compression`](Self::compression) is
    /// flate. Default 6, Go's `flate.DefaultCompression`.
    pub flate_level: u32,
    /// Message size limits, on read and on write.
    pub limits: Limits,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            sniff_header: Vec::new(),
            protocol_version: 0,
            compression: Compression::None,
            flate_level: 6,
            limits: Limits::default(),
        }
    }
}

/// Server settings. Those marked *backend* are enforced by the I/O backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Wire settings.
    pub protocol: ProtocolConfig,
    /// *Backend.* A connection whose handshake is not complete after this
    /// long is closed. Default 3 s, as in Go.
    pub handshake_timeout: Duration,
    /// *Backend.* A connection with no traffic for this long is closed.
    /// `None` keeps idle connections forever. Default 5 minutes: Go clients
    /// reconnect transparently, and a dead peer must not hold a slot forever.
    pub idle_timeout: Option<Duration>,
    /// *Backend.* Connections beyond this many are accepted and closed at once
    /// (so the listen queue does not fill). Default 10,000.
    pub max_connections: usize,
    /// Requests whose responses are buffered but not yet written; at this many
    /// the connection stops decoding until output drains. Default 10,000
    /// (Go's `DefaultConcurrency`).
    pub max_in_flight: usize,
    /// Bytes of output buffered but not yet written; at this many the
    /// connection stops decoding until output drains, so a client that sends
    /// but never reads cannot grow server memory. Default 4 MiB (it must
    /// exceed one maximum response). Answers of deferred calls are written
    /// whenever they arrive, so the output can pass it by the answers of the
    /// calls already in flight (at most `max_in_flight` of them).
    pub max_output_buffer: usize,
    /// The step by which a connection's protocol buffers grow (the room
    /// reserved for input not yet decoded), and the batch size at which
    /// compressed output is flushed early. Default 64 KiB, as Go. Buffers are
    /// released while a connection is idle. How a backend reads its sockets
    /// is its own: std's reads grow up to this size and glommio's take it
    /// whole; mio's loops and tokio's threads read through one 64 KiB buffer
    /// each (tokio straight into the connection's buffer inside a message);
    /// io_uring's loops into provided buffers of its `Options::buffer_size`.
    pub buffer_size: usize,
    /// *Backend.* How long a writer may wait for more responses to join a
    /// batch before it writes: the first response of a batch waits out the
    /// delay, and the responses to requests that arrive meanwhile leave in
    /// the same write (every backend; the loops wait on a deadline, never a
    /// sleep). `None` (the default, as Go): write as soon as no more input
    /// is ready.
    pub batch_delay: Option<Duration>,
    /// Requests handled at once by the whole server (running inline, or
    /// deferred and not yet answered), as Go fastrpc's `Server.Concurrency`.
    /// `None` (the default): no server-wide limit, and no cost; each
    /// connection is still bounded by `max_in_flight`.
    pub concurrency: Option<usize>,
    /// What a connection does with a request over `concurrency`.
    pub over_limit: OverLimit,
    /// *Backend.* Threads of the worker pool that runs blocking handlers
    /// (`serve_blocking`) off the connections' threads and loops. Default 16.
    pub blocking_threads: usize,
    /// Serve TLS to clients that ask for it (feature `tls`). Default `None`:
    /// a client asking for TLS is answered "no TLS" and closed, as Go does.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsServer>,
    /// With [`tls`](Self::tls) set, also serve clients that do not ask for
    /// TLS, in plaintext, as Go's server does. Default `false`: such a
    /// client is closed with [`HandshakeError::TlsRequired`](crate::HandshakeError::TlsRequired)
    /// (a protocol error), since a server that bothers with certificates
    /// rarely means to talk in the clear as well.
    #[cfg(feature = "tls")]
    pub tls_optional: bool,
}

/// What happens to a request over the server's `concurrency` limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OverLimit {
    /// Stop decoding that connection's requests until a slot frees (the
    /// default: nothing is lost, and TCP flow control slows the client).
    #[default]
    Backpressure,
    /// Answer at once with this value, without running the handler (Go
    /// fastrpc's behaviour, whose servers answer with an over-limit
    /// handler): the client sees it as the call's response, so pick a value
    /// your clients recognise, such as `b"concurrency limit exceeded"`.
    Reject(Vec<u8>),
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            protocol: ProtocolConfig::default(),
            handshake_timeout: Duration::from_secs(3),
            idle_timeout: Some(Duration::from_secs(300)),
            max_connections: 10_000,
            max_in_flight: 10_000,
            max_output_buffer: 4 * 1024 * 1024,
            buffer_size: 64 * 1024,
            batch_delay: None,
            concurrency: None,
            over_limit: OverLimit::Backpressure,
            blocking_threads: 16,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_optional: false,
        }
    }
}

/// Client settings. Those marked *backend* are enforced by the I/O backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Wire settings.
    pub protocol: ProtocolConfig,
    /// *Backend.* Time allowed to establish the TCP connection. Default 3 s.
    pub connect_timeout: Duration,
    /// *Backend.* Time allowed for the server's handshake. Default 3 s, as in Go.
    pub handshake_timeout: Duration,
    /// *Backend.* Default deadline of a call, from the moment it is made to
    /// its response; a call can set its own. Default 10 s.
    pub call_timeout: Duration,
    /// Calls awaiting a response on one connection; one more is a
    /// [`TooManyPending`](crate::Error::TooManyPending) error. Default 1,000
    /// (Go's `DefaultMaxPendingRequests`).
    pub max_pending: usize,
    /// Bytes reserved for each socket read (every client reads at most
    /// 64 KiB at a time and at least 4 KiB), the step by which the
    /// connection's protocol buffers grow, and the batch size at which
    /// compressed output is flushed early. Default 64 KiB, as Go.
    pub buffer_size: usize,
    /// *Backend.* How long the writer may wait for more calls to join a batch.
    /// `None` (the default, as Go): write as soon as the queue is empty.
    pub batch_delay: Option<Duration>,
    /// *Backend.* A pooled connection unused for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// *Backend.* First wait before reconnecting after a failure; it doubles
    /// on each further failure. Default 10 ms.
    pub reconnect_backoff: Duration,
    /// *Backend.* Longest wait between reconnection attempts. Default 1 s.
    pub max_reconnect_backoff: Duration,
    /// Ask the server for TLS and verify it with these settings (feature
    /// `tls`). Default `None`: plaintext. A server that answers without TLS
    /// fails the connection with [`HandshakeError::TlsRefused`](crate::HandshakeError::TlsRefused).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsClient>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            protocol: ProtocolConfig::default(),
            connect_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(10),
            max_pending: 1000,
            buffer_size: 64 * 1024,
            batch_delay: None,
            idle_timeout: Duration::from_secs(60),
            reconnect_backoff: Duration::from_millis(10),
            max_reconnect_backoff: Duration::from_secs(1),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_wire_values_round_trip() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_wire_value(c.wire_value()), Some(c));
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        assert_eq!(Compression::from_wire_value(3), None);
        assert!("lz4".parse::<Compression>().is_err());
        // Go's zero value is flate.
        assert_eq!(Compression::from_wire_value(0), Some(Compression::Flate));
    }
}
