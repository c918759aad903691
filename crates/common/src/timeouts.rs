//! The timeout policy of the hand-written loops (mio's reactors, uring's
//! completion loops), which check their connections by sweeping every
//! 100 ms instead of arming a timer per connection. One policy, so that
//! both loops close the same connections at the same moments:
//!
//! * a handshake not done within `handshake_timeout` is a protocol error,
//!   and the connection starts closing;
//! * a connection with output it cannot write (the client stopped reading)
//!   is removed after `idle_timeout` without write progress;
//! * a connection with nothing to do for `idle_timeout` starts closing
//!   (deferred calls waiting for their answers are not idleness);
//! * one quiet for [`IDLE_RELEASE`] gives its buffers back;
//! * a closing connection that moves nothing for `idle_timeout` (or the
//!   linger time, without one) is removed.

use std::time::{Duration, Instant};

use fastwire_proto::ServerConfig;

use crate::{net, CloseReason};

/// After this long without traffic a connection gives its buffers back (on
/// every backend: the sweeping loops through [`Timeouts`], the others by
/// their own timers).
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// A connection's clocks, kept by its loop.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    handshake_deadline: Instant,
    last_activity: Instant,
    last_write_progress: Instant,
    released: bool,
}

/// What a sweep of an open connection decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Keep,
    /// Give the buffers back (done once per quiet spell).
    ReleaseBuffers,
    /// Start a graceful close; `protocol_error` if the handshake timed out
    /// (the caller counts it).
    BeginClose {
        /// The handshake did not finish in time.
        protocol_error: bool,
    },
    /// Remove the connection, for this reason.
    Remove(CloseReason),
}

/// What an open connection's sweep needs to know of it.
#[derive(Clone, Copy, Debug)]
pub struct OpenState {
    /// The peer's handshake is in.
    pub handshake_done: bool,
    /// Deferred calls are waiting for their answers.
    pub deferred_in_flight: bool,
    /// Output waits to be written (or is being written).
    pub unsent: bool,
    /// Bytes received and not yet decoded.
    pub buffered_input: bool,
}

impl Timeouts {
    /// The clocks of a connection accepted at `now`.
    pub fn new(config: &ServerConfig, now: Instant) -> Timeouts {
        Timeouts {
            handshake_deadline: now + config.handshake_timeout,
            last_activity: now,
            last_write_progress: now,
            released: false,
        }
    }

    /// Bytes arrived (or a deferred answer did): not idle.
    pub fn active(&mut self, now: Instant) {
        self.last_activity = now;
        self.released = false;
    }

    /// Some output was written.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write_progress = now;
    }

    /// The periodic check of an open connection.
    pub fn sweep_open(&mut self, config: &ServerConfig, now: Instant, state: OpenState) -> Verdict {
        if !state.handshake_done && now >= self.handshake_deadline {
            return Verdict::BeginClose { protocol_error: true };
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if state.deferred_in_flight {
            // Waiting for deferred answers is not idleness.
            self.last_activity = now;
        }
        if state.unsent {
            // A client that stopped reading: its output cannot drain.
            if config.idle_timeout.is_some_and(|t| now.saturating_duration_since(self.last_write_progress) >= t) {
                return Verdict::Remove(CloseReason::StoppedReading);
            }
        } else if config.idle_timeout.is_some_and(|t| quiet >= t) {
            return Verdict::BeginClose { protocol_error: false };
        } else if quiet >= IDLE_RELEASE && !self.released && !state.buffered_input {
            self.released = true;
            return Verdict::ReleaseBuffers;
        }
        Verdict::Keep
    }

    /// The periodic check of a connection that is closing: the reason to
    /// remove it, if it is stuck (no write progress and no deferred answer
    /// for `idle_timeout`, or the linger time without one).
    pub fn sweep_draining(&self, config: &ServerConfig, now: Instant) -> Option<CloseReason> {
        let stuck = config.idle_timeout.unwrap_or(net::LINGER);
        let last = self.last_write_progress.max(self.last_activity);
        (now.saturating_duration_since(last) >= stuck).then_some(CloseReason::StuckClosing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig {
            handshake_timeout: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(10)),
            ..ServerConfig::default()
        }
    }

    const QUIET: OpenState =
        OpenState { handshake_done: true, deferred_in_flight: false, unsent: false, buffered_input: false };

    #[test]
    fn each_deadline_in_turn() {
        let (config, t0) = (config(), Instant::now());
        let mut t = Timeouts::new(&config, t0);
        let early = OpenState { handshake_done: false, ..QUIET };
        assert_eq!(t.sweep_open(&config, t0 + Duration::from_millis(100), early), Verdict::Keep);
        assert_eq!(
            t.sweep_open(&config, t0 + Duration::from_millis(500), early),
            Verdict::BeginClose { protocol_error: true }
        );
        // Quiet for a second: buffers back, once.
        assert_eq!(t.sweep_open(&config, t0 + IDLE_RELEASE, QUIET), Verdict::ReleaseBuffers);
        assert_eq!(t.sweep_open(&config, t0 + IDLE_RELEASE * 2, QUIET), Verdict::Keep);
        t.active(t0 + IDLE_RELEASE * 3);
        assert_eq!(t.sweep_open(&config, t0 + IDLE_RELEASE * 4, QUIET), Verdict::ReleaseBuffers);
        // Idle for idle_timeout: close.
        let idle = t0 + IDLE_RELEASE * 3 + Duration::from_secs(10);
        assert_eq!(t.sweep_open(&config, idle, QUIET), Verdict::BeginClose { protocol_error: false });
    }

    #[test]
    fn waiting_output_and_deferred_calls() {
        let (config, t0) = (config(), Instant::now());
        let mut t = Timeouts::new(&config, t0);
        let stuck = OpenState { unsent: true, ..QUIET };
        assert_eq!(t.sweep_open(&config, t0 + Duration::from_secs(9), stuck), Verdict::Keep);
        t.wrote(t0 + Duration::from_secs(9));
        assert_eq!(t.sweep_open(&config, t0 + Duration::from_secs(18), stuck), Verdict::Keep);
        assert!(matches!(t.sweep_open(&config, t0 + Duration::from_secs(19), stuck), Verdict::Remove(_)));
        // Deferred calls in flight keep a connection from being idle: each
        // sweep (every 100 ms in the loops) counts the wait as activity.
        let mut t = Timeouts::new(&config, t0);
        let waiting = OpenState { deferred_in_flight: true, ..QUIET };
        for s in 1..=25 {
            let verdict = t.sweep_open(&config, t0 + Duration::from_secs(s), waiting);
            assert!(matches!(verdict, Verdict::Keep | Verdict::ReleaseBuffers), "{verdict:?} at {s} s");
        }
        // The answers are in: idle from the last sweep that saw them wait.
        assert_eq!(t.sweep_open(&config, t0 + Duration::from_secs(34), QUIET), Verdict::Keep);
        assert_eq!(
            t.sweep_open(&config, t0 + Duration::from_secs(35), QUIET),
            Verdict::BeginClose { protocol_error: false }
        );
        // Closing, and nothing moves for idle_timeout: removed.
        assert_eq!(t.sweep_draining(&config, t0 + Duration::from_secs(34)), None);
        assert!(t.sweep_draining(&config, t0 + Duration::from_secs(35)).is_some());
    }
}
