//! Reconnect backoff: after a failed connection attempt, wait before the
//! next one, doubling the wait up to a maximum; reset on success. Calls made
//! while waiting fail at once (an error, never a hang). Pure: the caller
//! passes the time.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The reconnect state of one client connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next_wait: Duration,
    retry_at: Option<Instant>,
    last_error: Option<Arc<io::Error>>,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), next_wait: initial, retry_at: None, last_error: None }
    }

    /// If an attempt is not allowed yet: the last error and the time left.
    pub fn check(&self, now: Instant) -> Option<(Arc<io::Error>, Duration)> {
        match (&self.retry_at, &self.last_error) {
            (Some(at), Some(e)) if *at > now => Some((Arc::clone(e), *at - now)),
            _ => None,
        }
    }

    /// Records a failed attempt at `now`.
    pub fn failed(&mut self, now: Instant, error: Arc<io::Error>) {
        self.retry_at = Some(now + self.next_wait);
        self.next_wait = (self.next_wait * 2).min(self.max);
        self.last_error = Some(error);
    }

    /// Whether the last attempt failed (and no success was recorded since).
    pub fn is_failing(&self) -> bool {
        self.last_error.is_some()
    }

    /// Records a successful connection.
    pub fn succeeded(&mut self) {
        self.next_wait = self.initial;
        self.retry_at = None;
        self.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_resets() {
        let t = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(25));
        assert!(b.check(t).is_none());
        let e = Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        b.failed(t, e.clone());
        assert_eq!(b.check(t).unwrap().1, Duration::from_millis(10));
        assert!(b.check(t + Duration::from_millis(10)).is_none());
        b.failed(t, e.clone());
        assert_eq!(b.check(t).unwrap().1, Duration::from_millis(20));
        b.failed(t, e);
        assert_eq!(b.check(t).unwrap().1, Duration::from_millis(25), "capped");
        b.succeeded();
        assert!(b.check(t).is_none());
    }
}
