//! Server counters, the report of a graceful shutdown, and a client's counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use fastwire_proto::driver::{Connection, Expired};
use fastwire_proto::{Error, HandshakeError, ServerConn};

use crate::CloseReason;

/// Why a server refused a connection before serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open.
    ConnectionLimit,
    /// The client's handshake (fastrpc's, or TLS's) did not finish within
    /// `handshake_timeout`.
    HandshakeTimeout,
    /// The client's fastrpc handshake did not match this server's settings
    /// (sniff header, protocol version, compression).
    Handshake,
    /// A plaintext client on a server that requires TLS.
    TlsRequired,
    /// A client asked for TLS, which this server does not serve.
    TlsNotServed,
    /// The TLS handshake failed: a certificate refused (by either side), or
    /// bytes that are not TLS.
    Tls,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::ConnectionLimit,
        Refusal::HandshakeTimeout,
        Refusal::Handshake,
        Refusal::TlsRequired,
        Refusal::TlsNotServed,
        Refusal::Tls,
    ];

    /// The refusal a connection's error before its handshake was done stands for.
    pub fn of(error: &Error) -> Option<Refusal> {
        match error {
            Error::Handshake(HandshakeError::TlsRequired) => Some(Refusal::TlsRequired),
            Error::Handshake(HandshakeError::TlsRequested) => Some(Refusal::TlsNotServed),
            Error::Handshake(_) => Some(Refusal::Handshake),
            Error::Tls(_) => Some(Refusal::Tls),
            _ => None,
        }
    }

    /// A few words for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "max_connections open",
            Refusal::HandshakeTimeout => "no handshake within handshake_timeout",
            Refusal::Handshake => "handshake mismatch",
            Refusal::TlsRequired => "plaintext client, TLS required",
            Refusal::TlsNotServed => "TLS asked, not served",
            Refusal::Tls => "TLS handshake failed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connections a server refused, by reason (see [`Refusal`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// `max_connections` were open.
    pub connection_limit: u64,
    /// No handshake within `handshake_timeout`.
    pub handshake_timeout: u64,
    /// A fastrpc handshake that did not match (sniff header, version, compression).
    pub handshake: u64,
    /// Plaintext clients on a server that requires TLS.
    pub tls_required: u64,
    /// Clients that asked for TLS, which the server does not serve.
    pub tls_not_served: u64,
    /// Failed TLS handshakes (a certificate refused, not TLS at all).
    pub tls: u64,
}

impl Refusals {
    /// All of them.
    pub fn total(&self) -> u64 {
        Refusal::ALL.iter().map(|r| self.get(*r)).sum()
    }

    /// The count of one reason.
    pub fn get(&self, reason: Refusal) -> u64 {
        match reason {
            Refusal::ConnectionLimit => self.connection_limit,
            Refusal::HandshakeTimeout => self.handshake_timeout,
            Refusal::Handshake => self.handshake,
            Refusal::TlsRequired => self.tls_required,
            Refusal::TlsNotServed => self.tls_not_served,
            Refusal::Tls => self.tls,
        }
    }
}

impl std::fmt::Display for Refusals {
    /// `3 refused (2 TLS handshake failed, 1 no handshake within handshake_timeout)`, or `none refused`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total();
        if total == 0 {
            return f.write_str("none refused");
        }
        write!(f, "{total} refused (")?;
        let mut first = true;
        for reason in Refusal::ALL {
            let n = self.get(reason);
            if n > 0 {
                write!(f, "{}{n} {reason}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// At most this many refusals are logged per second; the rest are counted
/// and the next line logged says how many were not.
const REFUSALS_LOGGED_PER_SECOND: u64 = 10;

#[doc(hidden)]
/// Live counters of a server, updated by its connections.
#[derive(Debug, Default)]
pub struct ServerCounters {
    accepted: AtomicU64,
    refused: [AtomicU64; 6],
    /// The second (since the process's first refusal log) whose log lines
    /// `logged` counts, and the lines not logged since the last one that was.
    log_second: AtomicU64,
    logged: AtomicU64,
    unlogged: AtomicU64,
    open: AtomicUsize,
    requests: AtomicU64,
    protocol_errors: AtomicU64,
    handler_panics: AtomicU64,
    rejected: AtomicU64,
    dropped_responders: AtomicU64,
    deferred: AtomicUsize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A snapshot of [`ServerCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections refused before they were served, by reason (at once
    /// for `max_connections`, or at their handshake).
    pub refused: Refusals,
    /// Connections open now.
    pub open: usize,
    /// Requests served (fire-and-forget included).
    pub requests: u64,
    /// Connections closed because the client broke the protocol (or timed out its handshake).
    pub protocol_errors: u64,
    /// Handlers that panicked (each closed its own connection, nothing else).
    pub handler_panics: u64,
    /// Requests answered with the over-limit value of the concurrency limit.
    pub rejected: u64,
    /// Deferred calls whose responder was dropped without an answer.
    pub dropped_responders: u64,
    /// Deferred calls not answered yet, over open connections (as of each
    /// connection's last batch).
    pub deferred_in_flight: usize,
    /// Bytes received from clients and consumed (on the wire: compressed
    /// where the client compresses), as of each connection's last batch.
    pub bytes_in: u64,
    /// Bytes handed to the sockets for clients, as of each connection's last batch.
    pub bytes_out: u64,
}

impl ServerCounters {
    /// Takes a connection slot if fewer than `max` are open.
    pub fn try_open(&self, max: usize) -> bool {
        let mut open = self.open.load(Relaxed);
        loop {
            if open >= max {
                self.refuse(Refusal::ConnectionLimit, None, &format_args!("max_connections ({max}) are open"));
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

    /// Counts and logs why a connection's state machine failed (a handler
    /// panic or a protocol error); the connection began its close by
    /// itself ([`CloseReason::of_error`]). An error before the handshake
    /// was done is a refusal: counted by its reason and logged (at most
    /// ten lines a second).
    pub fn connection_failed(&self, conn: &ServerConn, error: &Error) {
        match CloseReason::of_error(error, !conn.is_handshake_done()) {
            CloseReason::HandlerPanic => {
                self.handler_panics.fetch_add(1, Relaxed);
                tracing::error!(error = %error, "closing a connection: handler panic");
            }
            reason => {
                self.protocol_error();
                match Refusal::of(error).filter(|_| reason == CloseReason::Refused) {
                    Some(refusal) => self.refuse(refusal, conn.peer_addr(), error),
                    None => {
                        tracing::debug!(peer = ?conn.peer_addr(), error = %error, "closing a connection: protocol error")
                    }
                }
            }
        }
    }

    /// Reads what a connection's look at the clock
    /// ([`ServerConn::handle_timeout`]) gave: a handshake that timed out is
    /// counted (a protocol error, and a refusal).
    pub fn saw(&self, conn: &ServerConn, expired: Expired) {
        if expired == Expired::Closing(CloseReason::HandshakeTimeout) {
            self.handshake_timed_out(conn);
        }
    }

    /// Counts (and logs) a connection whose handshake did not finish
    /// within `handshake_timeout`: a protocol error, and a refusal.
    fn handshake_timed_out(&self, conn: &ServerConn) {
        self.protocol_error();
        let why = "its handshake (fastrpc's, or TLS's) did not finish within handshake_timeout";
        self.refuse(Refusal::HandshakeTimeout, conn.peer_addr(), &why);
    }

    /// Counts a refusal and logs it, at most [`REFUSALS_LOGGED_PER_SECOND`]
    /// lines a second (a flood of bad clients must not flood the log).
    fn refuse(&self, reason: Refusal, peer: Option<SocketAddr>, why: &dyn std::fmt::Display) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
        static START: OnceLock<Instant> = OnceLock::new();
        let Some(unlogged) = self.may_log(START.get_or_init(Instant::now).elapsed().as_secs()) else { return };
        let peer = peer.map_or_else(|| "a client".to_owned(), |p| p.to_string());
        if unlogged > 0 {
            tracing::warn!(%reason, "refused {peer}: {why} ({unlogged} more refusals not logged before this one)");
        } else {
            tracing::warn!(%reason, "refused {peer}: {why}");
        }
    }

    /// Whether a refusal in `second` may be logged: `Some(lines not logged
    /// since the last one that was)`, or `None` if this second's lines are
    /// used up (it is counted as not logged). Approximate under races
    /// between threads, never more than a few lines over.
    fn may_log(&self, second: u64) -> Option<u64> {
        if self.log_second.swap(second, Relaxed) != second {
            self.logged.store(0, Relaxed);
        }
        if self.logged.fetch_add(1, Relaxed) >= REFUSALS_LOGGED_PER_SECOND {
            self.unlogged.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Relaxed))
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ServerStats {
        ServerStats {
            accepted: self.accepted.load(Relaxed),
            refused: Refusals {
                connection_limit: self.refused[Refusal::ConnectionLimit as usize].load(Relaxed),
                handshake_timeout: self.refused[Refusal::HandshakeTimeout as usize].load(Relaxed),
                handshake: self.refused[Refusal::Handshake as usize].load(Relaxed),
                tls_required: self.refused[Refusal::TlsRequired as usize].load(Relaxed),
                tls_not_served: self.refused[Refusal::TlsNotServed as usize].load(Relaxed),
                tls: self.refused[Refusal::Tls as usize].load(Relaxed),
            },
            open: self.open.load(Relaxed),
            requests: self.requests.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            handler_panics: self.handler_panics.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped_responders: self.dropped_responders.load(Relaxed),
            deferred_in_flight: self.deferred.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }
}

/// A client's counters (every backend's `Client::stats`), over all the
/// connections it has made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections made (each one's handshake begun).
    pub connections: u64,
    /// Responses for no call in progress: an id never requested, a second
    /// answer to the same call, or an answer after its call gave up. They
    /// are dropped, never delivered; a server that sends many is broken or
    /// hostile.
    pub unsolicited_responses: u64,
    /// Bytes the current connection's buffers hold allocated now (the
    /// protocol state machine's and the read buffer being filled).
    pub buffer_capacity: usize,
    /// The most any connection's buffers held allocated after a read:
    /// bounded by the settings (`buffer_size`, the limits), whatever the
    /// server sends and however fast.
    pub peak_buffer_capacity: usize,
}

impl ClientStats {
    /// Notes a connection's buffer capacity after a read.
    #[inline]
    pub fn saw_capacity(&mut self, capacity: usize) {
        self.buffer_capacity = capacity;
        if capacity > self.peak_buffer_capacity {
            self.peak_buffer_capacity = capacity;
        }
    }

    /// A connection ended: its unsolicited responses join the total.
    pub fn connection_ended(&mut self, unsolicited: u64) {
        self.unsolicited_responses += unsolicited;
        self.buffer_capacity = 0;
    }

    /// These counters with the live connection's unsolicited responses.
    pub fn with_live(mut self, unsolicited: u64) -> ClientStats {
        self.unsolicited_responses += unsolicited;
        self
    }
}

#[doc(hidden)]
/// A connection's counts already added to the server's [`ServerCounters`],
/// so that each backend adds only what is new after each `process`.
#[derive(Debug, Default)]
pub struct ConnTally {
    requests: u64,
    rejected: u64,
    dropped: u64,
    deferred: usize,
    bytes_in: u64,
    bytes_out: u64,
}

impl ConnTally {
    /// A closing connection's deferred answers: collects them, counts
    /// them, and counts the connection failed on the first error (a
    /// deferred handler panicked), which cuts the rest.
    pub fn collect_deferred(&mut self, conn: &mut ServerConn, counters: &ServerCounters) {
        let failed_before = conn.has_failed();
        let collected = conn.collect_deferred();
        self.sync(conn, counters);
        if let (Err(e), false) = (collected, failed_before) {
            counters.connection_failed(conn, &e);
        }
    }

    /// Adds what `conn` counted since the last call; returns whether any
    /// request was served meanwhile.
    pub fn sync(&mut self, conn: &ServerConn, counters: &ServerCounters) -> bool {
        /// Adds to `counter` what `now` has grown by since `seen`; returns it.
        fn add_new(counter: &AtomicU64, seen: &mut u64, now: u64) -> u64 {
            let new = now.saturating_sub(*seen);
            if new > 0 {
                counter.fetch_add(new, Relaxed);
                *seen = now;
            }
            new
        }
        let requests = add_new(&counters.requests, &mut self.requests, conn.requests());
        add_new(&counters.rejected, &mut self.rejected, conn.rejected());
        let dropped = add_new(&counters.dropped_responders, &mut self.dropped, conn.dropped_responders());
        if dropped > 0 {
            tracing::warn!(dropped, "a handler dropped a Responder without answering");
        }
        add_new(&counters.bytes_in, &mut self.bytes_in, conn.bytes_in());
        add_new(&counters.bytes_out, &mut self.bytes_out, conn.bytes_out());
        // A gauge, not a count: it goes down as well as up.
        let deferred = conn.deferred_in_flight();
        if deferred > self.deferred {
            counters.deferred.fetch_add(deferred - self.deferred, Relaxed);
        } else if deferred < self.deferred {
            counters.deferred.fetch_sub(self.deferred - deferred, Relaxed);
        }
        self.deferred = deferred;
        requests > 0
    }

    /// The connection is gone: its deferred calls leave the server's gauge.
    pub fn finish(&mut self, counters: &ServerCounters) {
        counters.deferred.fetch_sub(std::mem::take(&mut self.deferred), Relaxed);
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
    /// Deferred calls still unanswered on cut-off connections (their
    /// responders' answers are discarded).
    pub deferred_cut: u64,
    /// Connections refused over the server's life, by reason.
    pub refused: Refusals,
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections closed gracefully, {} cut off ({} responses not delivered, {} deferred calls unanswered); \
             over its life, {}",
            self.closed_gracefully, self.cut_off, self.responses_lost, self.deferred_cut, self.refused
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
        assert_eq!((s.accepted, s.refused.connection_limit, s.open), (3, 1, 2));
        assert_eq!(s.refused.to_string(), "1 refused (1 max_connections open)");
    }

    #[test]
    fn refusals_are_logged_at_most_ten_a_second() {
        let c = ServerCounters::default();
        let logged = |second| (0..25).filter(|_| c.may_log(second).is_some()).count();
        assert_eq!(logged(7), 10, "ten lines in a second, the rest counted");
        // The next second's first line says how many were not logged.
        assert_eq!(c.may_log(8), Some(15));
        assert_eq!(c.may_log(8), Some(0));
    }
}

#[doc(hidden)]
/// What one event loop had to cut off when a shutdown's grace period ended
/// (the loop thread returns it; [`stop_loops`] adds them up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// Connections still open.
    pub connections: usize,
    /// Responses produced but not written on them.
    pub responses: u64,
    /// Deferred calls still unanswered on them.
    pub deferred: u64,
}

#[doc(hidden)]
/// How many of a server's loop threads still run: each holds a
/// [`LoopRunning`] until it ends, and a shutdown waits on the count
/// ([`stop_loops`]) instead of looking at the threads on a timer.
#[derive(Debug, Default)]
pub struct LoopsRunning {
    count: std::sync::Mutex<usize>,
    ended: std::sync::Condvar,
}

impl LoopsRunning {
    /// One more loop runs until the guard is dropped (at its thread's end,
    /// a panic included).
    pub fn enter(self: &std::sync::Arc<Self>) -> LoopRunning {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        LoopRunning(std::sync::Arc::clone(self))
    }

    /// Waits until every loop has ended or `deadline` passes.
    fn wait_all(&self, deadline: std::time::Instant) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else { return };
            count = self.ended.wait_timeout(count, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[doc(hidden)]
/// A running loop's place in its [`LoopsRunning`].
#[derive(Debug)]
pub struct LoopRunning(std::sync::Arc<LoopsRunning>);

impl Drop for LoopRunning {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.ended.notify_all();
    }
}

#[doc(hidden)]
/// The rest of a graceful shutdown of a server whose connections live on
/// loop threads (mio's reactors, uring's completion loops), once the caller
/// has raised its stopping flag: wakes every loop (each stops accepting and
/// closes its connections gracefully), waits up to `grace` for them to end
/// (`running` says when they all have), then raises `forced`, wakes those
/// still running (each cuts what is left and returns its [`Cut`]) and
/// joins them. `open_at_start` is the number of connections open when the
/// shutdown began.
pub fn stop_loops<W>(
    loops: &mut Vec<(W, std::thread::JoinHandle<Cut>)>,
    running: &LoopsRunning,
    forced: &std::sync::atomic::AtomicBool,
    open_at_start: usize,
    grace: std::time::Duration,
    wake: impl Fn(&W),
) -> ShutdownReport {
    use std::sync::atomic::Ordering::Release;
    loops.iter().for_each(|(w, _)| wake(w));
    running.wait_all(std::time::Instant::now() + grace);
    forced.store(true, Release);
    // A loop that has ended is not woken: nothing of it waits any more.
    loops.iter().filter(|(_, t)| !t.is_finished()).for_each(|(w, _)| wake(w));
    let mut report = ShutdownReport::default();
    for (_, thread) in loops.drain(..) {
        let cut = thread.join().unwrap_or_default();
        report.cut_off += cut.connections;
        report.responses_lost += cut.responses;
        report.deferred_cut += cut.deferred;
    }
    report.closed_gracefully = open_at_start.saturating_sub(report.cut_off);
    report
}
