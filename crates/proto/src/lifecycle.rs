//! A server connection's life, from open to closed, and the timeouts that
//! move it along: the same policy on every backend, written once.
//!
//! ```text
//!  Open ──(end of stream, protocol error, idle, handshake timeout, shutdown)──> Draining
//!  Draining ──(everything written and answered: shut the write side)──> Lingering
//!           (or Closed, if the client already closed its side)
//!  Lingering ──(the client's end of stream, the linger time, LINGER_MAX_BYTES)──> Closed
//!  any ──(an I/O error, a client that stopped reading, a stuck close)──> Closed
//! ```
//!
//! Sans-I/O, like the state machines beside it: a [`Lifecycle`] reads no
//! clock and touches no socket. Its driver (a backend's connection) tells
//! it what happened, handing it the time (`received`, `answered`,
//! `wrote`, `peer_closed`), asks when it next needs to look
//! ([`poll_timeout`](Lifecycle::poll_timeout)) and looks then
//! ([`handle_timeout`](Lifecycle::handle_timeout)); once a closing
//! connection has nothing left to send,
//! [`poll_shutdown`](Lifecycle::poll_shutdown) says to shut the write side.
//! A driver may also look more often than asked (a loop that sweeps all its
//! connections on one timer): a look before a deadline does nothing.
//!
//! The policy:
//!
//! * a handshake not done within `handshake_timeout` starts the close (a
//!   protocol error the driver counts);
//! * a connection with output it cannot write (the client stopped reading)
//!   is closed at once after `idle_timeout` without write progress;
//! * a connection with nothing to do for `idle_timeout` starts closing;
//!   deferred calls waiting for their answers are not idleness;
//! * one quiet for [`IDLE_RELEASE`] gives its buffers back, once per quiet
//!   spell;
//! * a closing connection that moves nothing for `idle_timeout` (or
//!   [`LINGER`], without one) is closed;
//! * a lingering close lasts at most [`LINGER`] and [`LINGER_MAX_BYTES`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::driver::Connection;
use crate::{ServerConfig, ServerConn};

/// After this long without traffic a connection gives its buffers back.
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// How long a closing connection waits for the client to close its side.
///
/// Closing a socket that still has unread input makes the kernel send a
/// reset and throw away output not yet sent: responses already "written"
/// could vanish. So a server closes gracefully ("lingering close", as nginx
/// does): stop serving, flush, `shutdown(Write)` so the client gets every
/// response and then end-of-stream, read and discard until the client closes
/// (or this long, or [`LINGER_MAX_BYTES`]), and only then close.
pub const LINGER: Duration = Duration::from_secs(5);

/// Most bytes a lingering close reads and discards.
pub const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Why a server closed a connection: one typed reason, shown in the logs
/// and compared by the backends (never as a string).
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
    /// Nothing moved while the connection was closing (no output written,
    /// no deferred answer) for `idle_timeout`, or [`LINGER`] without one;
    /// or the shutdown's grace period ended first.
    StuckClosing,
    /// The client did not close its side within [`LINGER`] (or
    /// [`LINGER_MAX_BYTES`]) after the server's own close.
    LingerTimeout,
    /// Reading the socket failed.
    ReadError,
    /// Writing the socket failed.
    WriteError,
    /// The kernel did not take an operation for the connection (a
    /// completion loop's submission failed).
    SubmitFailed,
    /// The client broke the protocol after its handshake.
    ProtocolError,
    /// The client was refused at its handshake (a handshake it sent that
    /// this server does not accept).
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
            CloseReason::StuckClosing => "nothing moved while closing (idle_timeout), or the grace period ended",
            CloseReason::LingerTimeout => "the client did not close within the linger time",
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

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Serving requests.
    Open,
    /// Serving no more requests: the answers of deferred calls still
    /// running and the output still go out, then end-of-stream.
    Draining,
    /// End-of-stream sent: input is read and discarded until the client
    /// closes its side (see [`LINGER`]).
    Lingering,
    /// Over: the driver closes the socket and forgets the connection.
    Closed,
}

/// What a look at the clock ([`Lifecycle::handle_timeout`]) asks of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Nothing is due.
    Nothing,
    /// The connection has been quiet: give its buffers back
    /// ([`Connection::release_buffers`], and the driver's own).
    ReleaseBuffers,
    /// The connection started closing ([`Phase::Draining`]) for this
    /// reason; [`CloseReason::HandshakeTimeout`] is a protocol error to
    /// count.
    Closing(CloseReason),
    /// The connection is over ([`Phase::Closed`]) for this reason.
    Closed(CloseReason),
}

/// One server connection's phase and clocks, kept beside its
/// [`ServerConn`] by the backend that drives it.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    phase: Phase,
    /// Why it is closing or closed (set when it leaves `Open`).
    reason: Option<CloseReason>,
    /// The client closed its side.
    peer_closed: bool,
    /// The state machine failed: deferred answers still out are not awaited.
    failed: bool,
    /// The buffers were given back in this quiet spell.
    released: bool,
    handshake_deadline: Instant,
    last_activity: Instant,
    last_write_progress: Instant,
    /// While lingering: when it ends, and the bytes discarded so far.
    linger_until: Instant,
    discarded: usize,
    idle_timeout: Option<Duration>,
}

impl Lifecycle {
    /// The life of a connection accepted at `now`.
    pub fn new(config: &ServerConfig, now: Instant) -> Lifecycle {
        Lifecycle {
            phase: Phase::Open,
            reason: None,
            peer_closed: false,
            failed: false,
            released: false,
            handshake_deadline: now + config.handshake_timeout,
            last_activity: now,
            last_write_progress: now,
            linger_until: now,
            discarded: 0,
            idle_timeout: config.idle_timeout,
        }
    }

    /// Its phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether it still serves requests.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether it is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Why it is closing or closed (`None` while open).
    pub fn reason(&self) -> Option<CloseReason> {
        self.reason
    }

    /// Whether the client has closed its side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether the state machine failed ([`fail`](Self::fail)).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// `n` bytes arrived at `now`. Returns whether to hand them to the
    /// state machine: only while open. While lingering they are counted
    /// and dropped, and more than [`LINGER_MAX_BYTES`] closes the connection.
    pub fn received(&mut self, n: usize, now: Instant) -> bool {
        match self.phase {
            Phase::Open => {
                self.active(now);
                true
            }
            Phase::Lingering => {
                self.discarded = self.discarded.saturating_add(n);
                if self.discarded > LINGER_MAX_BYTES {
                    self.close(CloseReason::LingerTimeout);
                }
                false
            }
            Phase::Draining | Phase::Closed => false,
        }
    }

    /// Answers of deferred calls arrived at `now`: not idle.
    pub fn answered(&mut self, now: Instant) {
        self.active(now);
    }

    fn active(&mut self, now: Instant) {
        self.last_activity = now;
        self.released = false;
    }

    /// Some output was written at `now`.
    pub fn wrote(&mut self, now: Instant) {
        self.last_write_progress = now;
    }

    /// The client's end of stream came. Open, it stays open: the driver
    /// serves what came before it, and
    /// [`close_if_served`](Self::close_if_served) then begins the close.
    /// Closing, there is nothing to linger for; lingering, the close is
    /// done.
    pub fn end_of_stream(&mut self) {
        self.peer_closed = true;
        if self.phase == Phase::Lingering {
            self.phase = Phase::Closed;
        }
    }

    /// The end-of-stream rule, the same on every backend: once the
    /// client's end of stream came ([`end_of_stream`](Self::end_of_stream))
    /// and every complete request it sent before it is served (none waits
    /// in `conn`'s input behind a full output), the close begins
    /// ([`CloseReason::ClosedByClient`]). Drivers call it after serving;
    /// before the end of stream, or while requests wait, it does nothing.
    pub fn close_if_served(&mut self, conn: &ServerConn) {
        if self.peer_closed && !(conn.buffered_input() > 0 && conn.is_output_full()) {
            self.begin_close(CloseReason::ClosedByClient);
        }
    }

    /// Stops serving requests, for `reason` (no effect unless open).
    pub fn begin_close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
            self.reason = Some(reason);
        }
    }

    /// The state machine failed for `reason` (counted by the driver): the
    /// close begins, and deferred answers still out are not awaited.
    pub fn fail(&mut self, reason: CloseReason) {
        self.failed = true;
        self.begin_close(reason);
    }

    /// Ends the connection now for `reason` (an I/O error, say), unless it
    /// is already over. (A close that ends normally keeps the reason it
    /// began with: [`poll_shutdown`](Self::poll_shutdown),
    /// [`end_of_stream`](Self::end_of_stream).)
    pub fn close(&mut self, reason: CloseReason) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.reason = Some(reason);
        }
    }

    /// Draining, with nothing left to send (`unsent`: the driver holds no
    /// output either) and no deferred answer to wait for: returns true,
    /// and the driver shuts the socket's write side (end-of-stream after
    /// the last response). The connection then lingers, or is over if the
    /// client already closed its side.
    pub fn poll_shutdown(&mut self, conn: &ServerConn, unsent: bool, now: Instant) -> bool {
        let waiting = conn.deferred_in_flight() > 0 && !self.failed;
        if self.phase != Phase::Draining || unsent || conn.has_output() || waiting {
            return false;
        }
        let reason = self.reason.unwrap_or(CloseReason::Shutdown);
        self.shut_write(reason, now);
        true
    }

    /// The driver shut the socket's write side at `now`, closing for
    /// `reason` (unless it was closing already) and having flushed the
    /// output its own way (a task that closes once it has written
    /// everything, rather than asking [`poll_shutdown`](Self::poll_shutdown)):
    /// the connection lingers, or is over if the client already closed its
    /// side. Returns whether it lingers. While it does, the driver reads
    /// and hands the bytes to [`received`](Self::received), the end of
    /// the stream to [`end_of_stream`](Self::end_of_stream), and waits no
    /// longer than [`linger_deadline`](Self::linger_deadline), then
    /// [`handle_timeout`](Self::handle_timeout): the linger's bounds
    /// ([`LINGER`], [`LINGER_MAX_BYTES`]) are the lifecycle's alone.
    pub fn shut_write(&mut self, reason: CloseReason, now: Instant) -> bool {
        self.begin_close(reason);
        if self.phase == Phase::Closed {
            return false;
        }
        if self.peer_closed {
            self.phase = Phase::Closed;
            return false;
        }
        self.phase = Phase::Lingering;
        self.linger_until = now + LINGER;
        self.discarded = 0;
        true
    }

    /// Until when a lingering connection waits for the client's end of
    /// stream (`None` unless it lingers).
    pub fn linger_deadline(&self) -> Option<Instant> {
        (self.phase == Phase::Lingering).then_some(self.linger_until)
    }

    // ANCHOR: poll_timeout
    /// When [`handle_timeout`](Self::handle_timeout) must next run, given
    /// the state machine and whether the driver holds output not yet
    /// written (`unsent`); `None`: not until something happens.
    pub fn poll_timeout(&self, conn: &ServerConn, unsent: bool) -> Option<Instant> {
        match self.phase {
            Phase::Open => {
                let unsent = unsent || conn.has_output();
                let handshake = (!conn.is_handshake_done()).then_some(self.handshake_deadline);
                let quiet = if unsent {
                    self.idle_timeout.map(|t| self.last_write_progress + t)
                } else {
                    let idle = self.idle_timeout.filter(|_| conn.deferred_in_flight() == 0);
                    let release = (!self.released && conn.buffered_input() == 0).then_some(IDLE_RELEASE);
                    earliest(idle, release).map(|t| self.last_activity + t)
                };
                earliest(handshake, quiet)
            }
            Phase::Draining => Some(self.stuck_at()),
            Phase::Lingering => Some(self.linger_until),
            Phase::Closed => None,
        }
    }

    /// Applies what is due at `now` (see the module's policy).
    pub fn handle_timeout(&mut self, conn: &ServerConn, unsent: bool, now: Instant) -> Expired {
        match self.phase {
            Phase::Open => self.open_timeout(conn, unsent || conn.has_output(), now),
            Phase::Draining if now >= self.stuck_at() => {
                self.close(CloseReason::StuckClosing);
                Expired::Closed(CloseReason::StuckClosing)
            }
            Phase::Lingering if now >= self.linger_until => {
                self.close(CloseReason::LingerTimeout);
                Expired::Closed(CloseReason::LingerTimeout)
            }
            Phase::Draining | Phase::Lingering | Phase::Closed => Expired::Nothing,
        }
    }
    // ANCHOR_END: poll_timeout

    fn open_timeout(&mut self, conn: &ServerConn, unsent: bool, now: Instant) -> Expired {
        if !conn.is_handshake_done() && now >= self.handshake_deadline {
            self.begin_close(CloseReason::HandshakeTimeout);
            return Expired::Closing(CloseReason::HandshakeTimeout);
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if conn.deferred_in_flight() > 0 {
            // Waiting for deferred answers is not idleness.
            self.last_activity = now;
        }
        let over = |since: Instant| self.idle_timeout.is_some_and(|t| now.saturating_duration_since(since) >= t);
        if unsent {
            // A client that stopped reading: its output cannot drain.
            if over(self.last_write_progress) {
                self.close(CloseReason::StoppedReading);
                return Expired::Closed(CloseReason::StoppedReading);
            }
        } else if conn.deferred_in_flight() == 0 && self.idle_timeout.is_some_and(|t| quiet >= t) {
            self.begin_close(CloseReason::Idle);
            return Expired::Closing(CloseReason::Idle);
        } else if quiet >= IDLE_RELEASE && !self.released && conn.buffered_input() == 0 {
            self.released = true;
            return Expired::ReleaseBuffers;
        }
        Expired::Nothing
    }

    /// When a closing connection that moves nothing (no output written, no
    /// deferred answer) is stuck: `idle_timeout` after it last moved, or
    /// [`LINGER`] without one.
    fn stuck_at(&self) -> Instant {
        self.last_write_progress.max(self.last_activity) + self.idle_timeout.unwrap_or(LINGER)
    }
}

/// The earlier of two optional times (or durations); `None` if neither.
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.into_iter().chain(b).min()
}
