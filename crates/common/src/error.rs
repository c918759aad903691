//! The error of a client call, the same on every backend.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a call did not get its response. Cloneable, because one lost
/// connection fails every call that was pending on it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// No response before the call's deadline. The call is forgotten: a late
    /// response is dropped.
    #[error("no response within {0:?} (setting: call_timeout, or the call's own deadline)")]
    Timeout(Duration),
    /// The connection could not be established (or its handshake failed).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// What went wrong.
        source: Arc<io::Error>,
    },
    /// A recent connection attempt failed and the client is waiting before
    /// the next one, so the call fails at once instead of hanging.
    #[error("{addr} is unreachable (last error: {last_error}); next attempt in {retry_in:?}")]
    Backoff {
        /// The server's address.
        addr: SocketAddr,
        /// The error of the last attempt.
        last_error: Arc<io::Error>,
        /// Time until the next attempt is allowed.
        retry_in: Duration,
    },
    /// The connection died while the call was pending (the request may or
    /// may not have been served).
    #[error("connection lost: {0}")]
    ConnectionLost(Arc<io::Error>),
    /// The peer broke the protocol, or the call itself was refused (too many
    /// pending calls, a value over the limits).
    #[error(transparent)]
    Protocol(#[from] fastwire_proto::Error),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// A lost connection with an error of this kind and message.
    pub fn lost(kind: io::ErrorKind, message: impl Into<String>) -> Self {
        ClientError::ConnectionLost(Arc::new(io::Error::new(kind, message.into())))
    }

    /// The server closed the connection at `stage` of its handshakes (the
    /// same words on every backend).
    pub fn closed_by_server(stage: fastwire_proto::HandshakeStage) -> Self {
        Self::lost(io::ErrorKind::UnexpectedEof, stage.closed_by_server())
    }

    /// The server's handshake (fastrpc's, or TLS's at `stage`) did not
    /// finish within `timeout` (the client's `handshake_timeout`).
    pub fn handshake_timeout(stage: fastwire_proto::HandshakeStage, timeout: Duration) -> Self {
        Self::lost(io::ErrorKind::TimedOut, stage.handshake_timed_out(timeout))
    }

    /// The error to fail pending calls with when a connection ends with `error`.
    pub fn from_io(error: io::Error) -> Self {
        ClientError::ConnectionLost(Arc::new(error))
    }
}
