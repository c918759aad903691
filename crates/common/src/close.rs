//! Why a server closed a connection: one typed reason, shown in the logs
//! and compared by the backends (never as a string).

use std::fmt;

/// Why a server closed (or removed) a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed its side, and everything it asked was answered.
    ClosedByClient,
    /// The server is shutting down.
    Shutdown,
    /// The client's handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// Nothing happened for `idle_timeout`.
    Idle,
    /// The client stopped reading: its output made no progress for `idle_timeout`.
    StoppedReading,
    /// Deferred calls' answers stopped coming for `idle_timeout` (or the
    /// shutdown's grace period ended first).
    DeferredStalled,
    /// Nothing moved while the connection was closing, for `idle_timeout`
    /// (or the linger time, without one).
    StuckClosing,
    /// The client did not close its side within the linger time after the
    /// server's own close.
    LingerTimeout,
    /// The close finished: the client closed its side after the server's.
    Closed,
    /// Reading the socket failed.
    ReadError,
    /// Writing the socket failed.
    WriteError,
    /// The kernel did not take an operation for the connection (a
    /// completion loop's submission failed).
    SubmitFailed,
    /// The client broke the protocol after its handshake.
    ProtocolError,
    /// The client was refused at its handshake (see [`crate::Refusal`]).
    Refused,
    /// A handler panicked (its connection alone is closed).
    HandlerPanic,
}

impl CloseReason {
    /// A few words for the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClosedByClient => "closed by the client",
            CloseReason::Shutdown => "shutdown",
            CloseReason::HandshakeTimeout => "no handshake within handshake_timeout",
            CloseReason::Idle => "idle for idle_timeout",
            CloseReason::StoppedReading => "the client stopped reading (idle_timeout)",
            CloseReason::DeferredStalled => "deferred answers stopped coming (idle_timeout), or the grace period ended",
            CloseReason::StuckClosing => "nothing moved while closing (idle_timeout)",
            CloseReason::LingerTimeout => "the client did not close within the linger time",
            CloseReason::Closed => "closed",
            CloseReason::ReadError => "read error",
            CloseReason::WriteError => "write error",
            CloseReason::SubmitFailed => "an operation could not be submitted",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::Refused => "refused at the handshake",
            CloseReason::HandlerPanic => "handler panic",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
