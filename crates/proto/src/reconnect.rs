//! When a client may connect again after a failed attempt, and how long
//! an attempt may take: the same policy on every backend, written once.
//!
//! A client connects on demand (its first call, or the first after its
//! connection ended). An attempt that fails (refused, timed out, refused
//! at the handshake) makes the next one wait `reconnect_backoff`; each
//! failure in a row doubles the wait, up to `max_reconnect_backoff`; a
//! call meanwhile fails at once, saying the last error and how long is
//! left, rather than hammering a server that is down. A connection whose
//! handshakes are done resets the wait. Sans-I/O, like the machines beside
//! it: [`Reconnect`] reads no clock, and the driver's own error type `E`
//! (an `Arc<io::Error>`, say) is kept to be told again.

use std::time::{Duration, Instant};

use crate::ClientConfig;

/// The shortest time an attempt to connect is given, whatever the call
/// that asks for it has left: a zero timeout would fail at once, and
/// count as a failure of the server's.
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(1);

/// A client's reconnection policy across its connections (see the module
/// docs); `E` is the error a failed attempt left.
#[derive(Clone, Debug)]
pub struct Reconnect<E> {
    initial: Duration,
    max: Duration,
    connect_timeout: Duration,
    next_wait: Duration,
    retry_at: Option<Instant>,
    last_error: Option<E>,
}

impl<E: Clone> Reconnect<E> {
    /// The policy of `config` (`reconnect_backoff`, `max_reconnect_backoff`,
    /// `connect_timeout`), with no failure yet.
    pub fn new(config: &ClientConfig) -> Self {
        let initial = config.reconnect_backoff;
        Reconnect {
            initial,
            max: config.max_reconnect_backoff.max(initial),
            connect_timeout: config.connect_timeout,
            next_wait: initial,
            retry_at: None,
            last_error: None,
        }
    }

    /// Whether an attempt may start at `now`, for a call with `within`
    /// left: `Ok` with how long the attempt may take (`connect_timeout`,
    /// or what the call has left if less, at least
    /// [`MIN_CONNECT_TIMEOUT`]), or `Err` with the last attempt's error and
    /// how long until the next may start.
    pub fn attempt(&self, now: Instant, within: Duration) -> Result<Duration, (E, Duration)> {
        match self.backing_off(now) {
            Some(refused) => Err(refused),
            None => Ok(self.connect_timeout.min(within).max(MIN_CONNECT_TIMEOUT)),
        }
    }

    /// While an attempt at `now` would be refused: the last attempt's
    /// error and how long until the next may start.
    pub fn backing_off(&self, now: Instant) -> Option<(E, Duration)> {
        match (&self.retry_at, &self.last_error) {
            (Some(at), Some(error)) if *at > now => Some((error.clone(), *at - now)),
            _ => None,
        }
    }

    /// An attempt failed at `now` with `error`: the next waits, twice as
    /// long as the last wait, up to the maximum.
    pub fn failed(&mut self, now: Instant, error: E) {
        self.retry_at = Some(now + self.next_wait);
        self.next_wait = (self.next_wait * 2).min(self.max);
        self.last_error = Some(error);
    }

    /// Whether the last attempt failed.
    pub fn is_failing(&self) -> bool {
        self.last_error.is_some()
    }

    /// A connection's handshakes are done: the next failure waits the
    /// first wait again.
    pub fn succeeded(&mut self) {
        self.next_wait = self.initial;
        self.retry_at = None;
        self.last_error = None;
    }
}
