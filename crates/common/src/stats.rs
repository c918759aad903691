//! Server counters and the report of a graceful shutdown.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Live counters of a server, updated by its connections.
#[derive(Debug, Default)]
pub struct ServerCounters {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicUsize,
    requests: AtomicU64,
    protocol_errors: AtomicU64,
}

/// A snapshot of [`ServerCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections accepted and closed at once because `max_connections` were open.
    pub refused: u64,
    /// Connections open now.
    pub open: usize,
    /// Requests served (fire-and-forget included).
    pub requests: u64,
    /// Connections closed because the client broke the protocol (or timed out its handshake).
    pub protocol_errors: u64,
}

impl ServerCounters {
    /// Takes a connection slot if fewer than `max` are open.
    pub fn try_open(&self, max: usize) -> bool {
        let mut open = self.open.load(Relaxed);
        loop {
            if open >= max {
                self.refused.fetch_add(1, Relaxed);
                return false;
            }
            match self.open.compare_exchange_weak(open, open + 1, Relaxed, Relaxed) {
                Ok(_) => {
                    self.accepted.fetch_add(1, Relaxed);
                    return true;
                }
                Err(now) => open = now,
            }
        }
    }

    /// Gives a connection slot back.
    pub fn close(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// Counts served requests.
    pub fn add_requests(&self, n: u64) {
        if n > 0 {
            self.requests.fetch_add(n, Relaxed);
        }
    }

    /// Counts a connection closed for a protocol error.
    pub fn protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ServerStats {
        ServerStats {
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            open: self.open.load(Relaxed),
            requests: self.requests.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
        }
    }
}

/// What a graceful shutdown had to cut off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that finished their work and closed within the grace period.
    pub closed_gracefully: usize,
    /// Connections still busy when the grace period ended, closed by force.
    pub cut_off: usize,
    /// Responses that were produced but not yet written on cut-off
    /// connections (their requests were served; the clients never heard).
    pub responses_lost: u64,
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections closed gracefully, {} cut off ({} responses not delivered)",
            self.closed_gracefully, self.cut_off, self.responses_lost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit() {
        let c = ServerCounters::default();
        assert!(c.try_open(2));
        assert!(c.try_open(2));
        assert!(!c.try_open(2));
        c.close();
        assert!(c.try_open(2));
        let s = c.snapshot();
        assert_eq!((s.accepted, s.refused, s.open), (3, 1, 2));
    }
}
