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
//! Sans-I/O, like the state machine it belongs to: every
//! [`ServerConn`] owns one, started by
//! [`start_clock`](ServerConn::start_clock) when the connection is
//! accepted. It reads no clock and touches no socket. The connection
//! notes what happens without being handed the time (bytes in through
//! [`arrived`](ServerConn::arrived), answers of deferred calls, output
//! written, taken by the driver and reported
//! [`written`](ServerConn::written)), and stamps it at the next look; its
//! own failures and the client's end of stream begin the close by
//! themselves. The driver asks when to look
//! ([`poll_timeout`](ServerConn::poll_timeout)), looks then
//! ([`handle_timeout`](ServerConn::handle_timeout)), and once a closing
//! connection has nothing left to send
//! ([`poll_shutdown`](ServerConn::poll_shutdown)) shuts the write side. A
//! look before a deadline does nothing; an activity noted between looks
//! is stamped at the next, so a close for idleness comes at most one
//! deadline late and no call pays for a clock read.
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
use crate::ServerConn;

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

/// What a look at the clock ([`ServerConn::handle_timeout`]) asks of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Nothing is due.
    Nothing,
    /// The connection has been quiet and gave its buffers back
    /// ([`Connection::release_buffers`]): the driver gives its own back.
    ReleaseBuffers,
    /// The connection started closing ([`Phase::Draining`]) for this
    /// reason; [`CloseReason::HandshakeTimeout`] is a protocol error to
    /// count.
    Closing(CloseReason),
    /// The connection is over ([`Phase::Closed`]) for this reason.
    Closed(CloseReason),
}

/// What the lifecycle needs to know of its connection at a look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    handshake_done: bool,
    /// Output queued, or taken by the driver and not reported written.
    unsent: bool,
    /// Deferred calls whose answers have not arrived.
    deferred: usize,
    /// Bytes received and not yet decoded.
    buffered_input: usize,
}

/// One server connection's phase and clocks, owned by its [`ServerConn`].
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
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
    /// Activity (bytes in, answers) and write progress noted since the
    /// last look, which stamps them with its time.
    active: bool,
    progressed: bool,
    /// While lingering: when it ends, and the bytes discarded so far.
    linger_until: Instant,
    discarded: usize,
    idle_timeout: Option<Duration>,
}

impl Lifecycle {
    /// The life of a connection accepted at `now`.
    fn new(handshake_timeout: Duration, idle_timeout: Option<Duration>, now: Instant) -> Lifecycle {
        Lifecycle {
            phase: Phase::Open,
            reason: None,
            peer_closed: false,
            failed: false,
            released: false,
            handshake_deadline: now + handshake_timeout,
            last_activity: now,
            last_write_progress: now,
            active: false,
            progressed: false,
            linger_until: now,
            discarded: 0,
            idle_timeout,
        }
    }

    /// Stamps what was noted since the last look with the time `now`.
    fn stamp(&mut self, now: Instant) {
        if std::mem::take(&mut self.active) {
            self.last_activity = now;
            self.released = false;
        }
        if std::mem::take(&mut self.progressed) {
            self.last_write_progress = now;
        }
    }

    fn received(&mut self, n: usize) -> bool {
        match self.phase {
            Phase::Open => {
                self.active = true;
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

    fn end_of_stream(&mut self) {
        self.peer_closed = true;
        if self.phase == Phase::Lingering {
            self.phase = Phase::Closed;
        }
    }

    /// The end-of-stream rule: once the client's end of stream came and
    /// every complete request it sent before it is served (none waits in
    /// the input behind a full output), the close begins.
    fn close_if_served(&mut self, facts: Facts, output_full: bool) {
        if self.peer_closed && !(facts.buffered_input > 0 && output_full) {
            self.begin_close(CloseReason::ClosedByClient);
        }
    }

    fn begin_close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
            self.reason = Some(reason);
        }
    }

    fn fail(&mut self, reason: CloseReason) {
        self.failed = true;
        self.begin_close(reason);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.reason = Some(reason);
        }
    }

    fn poll_shutdown(&mut self, facts: Facts, now: Instant) -> bool {
        let waiting = facts.deferred > 0 && !self.failed;
        if self.phase != Phase::Draining || facts.unsent || waiting {
            return false;
        }
        let reason = self.reason.unwrap_or(CloseReason::Shutdown);
        self.shut_write(reason, now);
        true
    }

    fn shut_write(&mut self, reason: CloseReason, now: Instant) -> bool {
        self.begin_close(reason);
        match self.phase {
            Phase::Closed => return false,
            // Shut already: the linger runs from then.
            Phase::Lingering => return true,
            Phase::Open | Phase::Draining => {}
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

    // ANCHOR: poll_timeout
    /// When [`handle_timeout`](Self::handle_timeout) must next run;
    /// `None`: not until something happens.
    fn poll_timeout(&self, facts: Facts) -> Option<Instant> {
        match self.phase {
            Phase::Open => {
                let handshake = (!facts.handshake_done).then_some(self.handshake_deadline);
                let quiet = if facts.unsent {
                    self.idle_timeout.map(|t| self.last_write_progress + t)
                } else {
                    let idle = self.idle_timeout.filter(|_| facts.deferred == 0);
                    let release = (!self.released && facts.buffered_input == 0).then_some(IDLE_RELEASE);
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
    fn handle_timeout(&mut self, facts: Facts, now: Instant) -> Expired {
        self.stamp(now);
        match self.phase {
            Phase::Open => self.open_timeout(facts, now),
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

    fn open_timeout(&mut self, facts: Facts, now: Instant) -> Expired {
        if !facts.handshake_done && now >= self.handshake_deadline {
            self.begin_close(CloseReason::HandshakeTimeout);
            return Expired::Closing(CloseReason::HandshakeTimeout);
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if facts.deferred > 0 {
            // Waiting for deferred answers is not idleness.
            self.last_activity = now;
        }
        let over = |since: Instant| self.idle_timeout.is_some_and(|t| now.saturating_duration_since(since) >= t);
        if facts.unsent {
            // A client that stopped reading: its output cannot drain.
            if over(self.last_write_progress) {
                self.close(CloseReason::StoppedReading);
                return Expired::Closed(CloseReason::StoppedReading);
            }
        } else if facts.deferred == 0 && self.idle_timeout.is_some_and(|t| quiet >= t) {
            self.begin_close(CloseReason::Idle);
            return Expired::Closing(CloseReason::Idle);
        } else if quiet >= IDLE_RELEASE && !self.released && facts.buffered_input == 0 {
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

/// What a driver calls to run a server connection's life (see the
/// module docs): the lifecycle is the connection's own.
impl ServerConn {
    /// The connection was accepted at `now`: its handshakes have until
    /// `now + handshake_timeout`, and its idle time starts. Until this is
    /// called the connection has no clock (it is driven by hand): it is
    /// open, needs no time, and never closes by itself.
    pub fn start_clock(&mut self, now: Instant) {
        self.life = Some(Lifecycle::new(self.timeouts.0, self.timeouts.1, now));
    }

    fn facts(&self) -> Facts {
        Facts {
            handshake_done: self.is_handshake_done(),
            unsent: self.handed_out || self.has_output(),
            deferred: self.deferred_in_flight(),
            buffered_input: self.buffered_input(),
        }
    }

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.life.as_ref().map_or(Phase::Open, |l| l.phase)
    }

    /// Whether it still serves requests ([`Phase::Open`]).
    pub fn is_serving(&self) -> bool {
        self.phase() == Phase::Open
    }

    /// Why it is closing or closed (`None` while open).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.life.as_ref().and_then(|l| l.reason)
    }

    /// Whether the client has closed its side ([`end_of_stream`](Self::end_of_stream)).
    pub fn peer_closed(&self) -> bool {
        self.life.as_ref().is_some_and(|l| l.peer_closed)
    }

    /// `n` bytes arrived from the socket. Returns whether to hand them to
    /// the connection ([`Connection::received`] and the like): only while
    /// it serves. While it lingers they are counted and dropped, and more
    /// than [`LINGER_MAX_BYTES`] closes it.
    pub fn arrived(&mut self, n: usize) -> bool {
        self.life.as_mut().is_none_or(|l| l.received(n))
    }

    /// The client's end of stream came. Serving, the connection serves
    /// what came before it, then begins the close by itself (the
    /// end-of-stream rule, the same on every backend: at once if nothing
    /// is buffered, else after the `process` that serves every complete
    /// request sent before the end, none waiting behind a full output);
    /// closing, there is nothing to linger for; lingering, the close is
    /// done.
    pub fn end_of_stream(&mut self) {
        let facts = self.facts();
        if let Some(life) = self.life.as_mut() {
            life.end_of_stream();
            // Input not served yet is served first: the next `process`
            // applies the rule.
            if facts.buffered_input == 0 {
                life.close_if_served(facts, false);
            }
        }
    }

    /// After serving: the end-of-stream rule (see [`end_of_stream`](Self::end_of_stream)).
    pub(crate) fn close_if_served(&mut self) {
        let (facts, full) = (self.facts(), self.is_output_full());
        if let Some(life) = self.life.as_mut() {
            life.close_if_served(facts, full);
        }
    }

    /// Stops serving requests, for `reason` (no effect unless serving):
    /// what is queued and the answers of deferred calls still go out, then
    /// the write side is shut ([`poll_shutdown`](Self::poll_shutdown)).
    pub fn begin_close(&mut self, reason: CloseReason) {
        if let Some(life) = self.life.as_mut() {
            life.begin_close(reason);
        }
    }

    /// The state machine failed: the close begins, and deferred answers
    /// still out are not awaited.
    pub(crate) fn fail_life(&mut self, reason: CloseReason) {
        if let Some(life) = self.life.as_mut() {
            life.fail(reason);
        }
    }

    /// Ends the connection now for `reason` (an I/O error, say), unless it
    /// is already over. A close that ends normally keeps the reason it
    /// began with.
    pub fn close(&mut self, reason: CloseReason) {
        if let Some(life) = self.life.as_mut() {
            life.close(reason);
        }
    }

    /// Output the driver took ([`Connection::take_output`]) went out: some
    /// of it, or `all` of it. The connection counts it as progress (a
    /// client that reads), and while the driver holds output not written
    /// the connection is not idle and cannot shut its write side.
    pub fn written(&mut self, all: bool) {
        if all {
            self.handed_out = false;
        }
        self.progressed();
    }

    /// Output went out (written in place, or reported `written`).
    pub(crate) fn progressed(&mut self) {
        if let Some(life) = self.life.as_mut() {
            life.progressed = true;
        }
    }

    /// Answers of deferred calls came in: not idle.
    pub(crate) fn answered(&mut self) {
        if let Some(life) = self.life.as_mut() {
            life.active = true;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run: the
    /// handshake's deadline, the idle close or buffer release, the cut of a
    /// client that stopped reading, a stuck close, the linger's end; `None`
    /// until something happens. It may come early (an activity noted
    /// since): the look then finds nothing due and the next is later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.life.as_ref()?.poll_timeout(self.facts())
    }

    /// Hands the connection the time `now` and applies what is due (see
    /// the module's policy). On [`Expired::ReleaseBuffers`] the
    /// connection has given its own buffers back already: the driver
    /// releases its own.
    pub fn handle_timeout(&mut self, now: Instant) -> Expired {
        let facts = self.facts();
        let Some(life) = self.life.as_mut() else { return Expired::Nothing };
        let expired = life.handle_timeout(facts, now);
        if expired == Expired::ReleaseBuffers {
            self.release_buffers();
        }
        expired
    }

    /// Closing, with nothing left to send (none queued, none held by the
    /// driver) and no deferred answer to wait for: returns true, and the
    /// driver shuts the socket's write side at `now` (end-of-stream after
    /// the last response). The connection then lingers, or is over if the
    /// client already closed its side.
    pub fn poll_shutdown(&mut self, now: Instant) -> bool {
        let facts = self.facts();
        self.life.as_mut().is_some_and(|l| l.poll_shutdown(facts, now))
    }

    /// The driver shut the socket's write side at `now`, closing for
    /// `reason` (unless it was closing already), having flushed the output
    /// its own way (a task that closes once it has written everything,
    /// rather than asking [`poll_shutdown`](Self::poll_shutdown)): the
    /// connection lingers, or is over if the client already closed its
    /// side. Returns whether it lingers (shut already, it goes on lingering
    /// from then). While it does, the driver reads
    /// and reports what came ([`arrived`](Self::arrived),
    /// [`end_of_stream`](Self::end_of_stream)) and waits no longer than
    /// [`linger_deadline`](Self::linger_deadline), then
    /// [`handle_timeout`](Self::handle_timeout): the linger's bounds
    /// ([`LINGER`], [`LINGER_MAX_BYTES`]) are the connection's alone.
    pub fn shut_write(&mut self, reason: CloseReason, now: Instant) -> bool {
        self.life.as_mut().is_some_and(|l| l.shut_write(reason, now))
    }

    /// Until when a lingering connection waits for the client's end of
    /// stream (`None` unless it lingers).
    pub fn linger_deadline(&self) -> Option<Instant> {
        self.life.as_ref().filter(|l| l.phase == Phase::Lingering).map(|l| l.linger_until)
    }

    /// Whether the connection failed ([`Phase::Draining`] after an error of
    /// its own): deferred answers still out are not awaited.
    pub fn has_failed(&self) -> bool {
        self.life.as_ref().is_some_and(|l| l.failed)
    }
}

impl CloseReason {
    /// The reason a connection closes after `error` of its state machine,
    /// `before_handshake` or after it: a handler's panic, a refusal at the
    /// handshake (a handshake or TLS error before it was done), or a
    /// protocol error.
    pub fn of_error(error: &crate::Error, before_handshake: bool) -> CloseReason {
        match error {
            crate::Error::HandlerPanicked { .. } => CloseReason::HandlerPanic,
            crate::Error::Handshake(_) | crate::Error::Tls(_) if before_handshake => CloseReason::Refused,
            _ => CloseReason::ProtocolError,
        }
    }
}
