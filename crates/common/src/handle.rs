//! The handle of a running server, the same on every backend.
//!
//! A backend supplies what is its own ([`Serving`]: its counters, and how it
//! stops); the handle around it is shared, so every backend's
//! `ServerHandle` has the same methods and the same drop behaviour.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwire_proto::driver::{Connection, Wake};
use fastwire_proto::{ConcurrencyLimit, ServerConfig, ServerConn};

use crate::{ServerCounters, ServerStats, ShutdownReport};

#[doc(hidden)]
/// What every connection and loop of a server shares, on the backends
/// that run their own loops (mio, uring, glommio): the configuration, the
/// server-wide concurrency limit, the counters, and a shutdown's two flags.
pub struct LoopShared {
    /// The server's configuration.
    pub config: ServerConfig,
    /// The server-wide concurrency limit, if configured.
    pub limit: Option<Arc<ConcurrencyLimit>>,
    /// The server's counters.
    pub counters: ServerCounters,
    /// Graceful shutdown started: stop accepting, close connections gracefully.
    pub stopping: AtomicBool,
    /// The grace period is over: drop whatever is left.
    pub forced: AtomicBool,
}

impl LoopShared {
    /// Shared state for a server with `config`, not stopping.
    pub fn new(config: ServerConfig) -> Arc<LoopShared> {
        Arc::new(LoopShared {
            limit: ConcurrencyLimit::for_config(&config),
            config,
            counters: ServerCounters::default(),
            stopping: AtomicBool::new(false),
            forced: AtomicBool::new(false),
        })
    }

    /// A connection accepted at `now` from `peer`: its state machine, whose
    /// deferred answers are announced by `waker.wake(key)`, its clock started.
    pub fn new_conn(&self, peer: Option<SocketAddr>, waker: Arc<dyn Wake>, key: usize, now: Instant) -> ServerConn {
        let mut conn = ServerConn::with_waker(&self.config, self.limit.clone(), waker, key);
        conn.set_peer_addr(peer);
        conn.start_clock(now);
        conn
    }
}

/// The keys of a loop's connections that deferred answers (or a free
/// concurrency slot) wait for, pushed from any thread and taken by the loop
/// all at once (mio's and uring's loops).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WokenKeys(std::sync::Mutex<Vec<usize>>);

impl WokenKeys {
    /// Adds `key`. Returns whether the list was empty: only then must the
    /// loop be woken, so that a burst of answers costs one wake-up.
    pub fn push(&self, key: usize) -> bool {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.push(key);
        keys.len() == 1
    }

    /// Swaps the list for `into`, which must be empty (its allocation serves
    /// the next swap).
    pub fn take(&self, into: &mut Vec<usize>) {
        std::mem::swap(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()), into);
    }
}

// ANCHOR: ready_keys
/// Which of a loop's connections to drive this turn (mio's and uring's
/// servers): those with news, each once, and those that deferred answers
/// woke. Both lists keep their allocations from turn to turn.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct ReadyKeys {
    ready: Vec<usize>,
    /// The list being driven: driving may mark connections for the next
    /// turn, which go to `ready` meanwhile.
    driving: Vec<usize>,
    /// The list taken from [`WokenKeys`].
    woken: Vec<usize>,
}

impl ReadyKeys {
    /// Marks `key` to be driven (again) this turn or the next.
    pub fn push(&mut self, key: usize) {
        self.ready.push(key);
    }

    /// Whether any connection waits to be driven: the loop must not sleep.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Takes the keys of the connections deferred answers arrived for;
    /// `wake` tells each connection (and says whether it still exists: a
    /// key may have been reused by a newer connection, which is then
    /// driven once for nothing, harmlessly).
    pub fn adopt_woken(&mut self, from: &WokenKeys, mut wake: impl FnMut(usize) -> bool) {
        from.take(&mut self.woken);
        for key in self.woken.drain(..) {
            if wake(key) {
                self.ready.push(key);
            }
        }
    }

    /// This turn's connections, each once and in key order; hand the list
    /// back with [`end_turn`](Self::end_turn).
    pub fn start_turn(&mut self) -> Vec<usize> {
        std::mem::swap(&mut self.ready, &mut self.driving);
        let mut driving = std::mem::take(&mut self.driving);
        driving.sort_unstable();
        driving.dedup();
        driving
    }

    /// Gives the turn's list back (its allocation serves the next turn).
    pub fn end_turn(&mut self, mut driving: Vec<usize>) {
        driving.clear();
        self.driving = driving;
    }
}
// ANCHOR_END: ready_keys

// ANCHOR: deadlines
/// When a loop's connections next need the time (mio's and uring's
/// servers): each connection's [`ServerConn::poll_timeout`] in a min-heap,
/// so that the loop sleeps until the earliest and then hands the time only
/// to the connections that are due, instead of visiting every connection
/// on a fixed period.
///
/// A heap, not a timer wheel: these deadlines are per connection
/// (handshake, idle, buffer release, a close's linger), not per call, and
/// an entry is pushed only when a connection's deadline comes *earlier*
/// than the one it has armed. The idle deadline moves later with every
/// call and pushes nothing: the armed entry comes due, the connection
/// finds nothing expired, and arms its later deadline then. So the heap
/// holds about one entry per connection, a push costs O(log n), and the
/// time is exact, with no tick to round it to. Entries are never removed:
/// one that went stale (its connection armed an earlier one, or is gone)
/// is recognised when it comes due, by the connection's own `armed`, and
/// skipped.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
}

impl Deadlines {
    /// Arms connection `key` for `at` (its `poll_timeout`), unless what it
    /// has armed already (`armed`, kept by the connection) comes no later.
    pub fn arm(&mut self, key: usize, at: Option<Instant>, armed: &mut Option<Instant>) {
        let Some(at) = at else { return };
        if armed.is_none_or(|a| at < a) {
            self.heap.push(std::cmp::Reverse((at, key)));
            *armed = Some(at);
        }
    }

    /// The earliest deadline armed, if any: until when the loop may sleep.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0 .0)
    }

    /// Takes every entry due at `now` and puts into `due` the keys of the
    /// connections it is still for: `mine(key, at)` says whether the
    /// connection `key` armed `at` and disarms it (see [`take_due`]); the
    /// loop then hands each the time and arms its next deadline.
    pub fn due(&mut self, now: Instant, due: &mut Vec<usize>, mut mine: impl FnMut(usize, Instant) -> bool) {
        while let Some(&std::cmp::Reverse((at, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if mine(key, at) {
                due.push(key);
            }
        }
    }
}

/// Whether a connection whose armed deadline is `armed` is the one an
/// entry due `at` was pushed for; if so, it is disarmed (the caller hands
/// it the time, then arms its next deadline).
#[doc(hidden)]
pub fn take_due(armed: &mut Option<Instant>, at: Instant) -> bool {
    let mine = *armed == Some(at);
    if mine {
        *armed = None;
    }
    mine
}
// ANCHOR_END: deadlines

/// [`ServerConfig::batch_delay`] on a loop's connection (mio's and
/// uring's servers): the first response of a batch waits out the delay,
/// so that responses made meanwhile leave in the same write. The wait is a
/// deadline of the connection's (see [`Deadlines`]), never a sleep: the
/// loop serves its other connections meanwhile.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Batching {
    delay: Option<Duration>,
    /// The batch held is written from then on.
    flush_at: Option<Instant>,
}

impl Batching {
    /// With `delay` (`None`: every batch is written at once).
    pub fn new(delay: Option<Duration>) -> Batching {
        Batching { delay, flush_at: None }
    }

    /// Whether `conn`'s output may be written at `now`: a closing
    /// connection, or one whose output is full (it must write before it
    /// can read again), writes at once.
    pub fn may_write(&mut self, conn: &ServerConn, now: Instant) -> bool {
        match self.delay {
            Some(delay) if conn.is_serving() && !conn.is_output_full() => {
                now >= *self.flush_at.get_or_insert(now + delay)
            }
            _ => true,
        }
    }

    /// Every byte of the batch is written (or taken to be): the next
    /// response starts a new batch.
    pub fn written(&mut self) {
        self.flush_at = None;
    }

    /// `conn`'s next deadline, or the held batch's if that comes first:
    /// when the connection next needs the time.
    pub fn next_deadline(&self, conn: &ServerConn) -> Option<Instant> {
        let held = self.flush_at.filter(|_| conn.has_output());
        conn.poll_timeout().into_iter().chain(held).min()
    }

    /// Whether the batch held is due at `now` (the connection is to be
    /// driven, to write it).
    pub fn is_due(&self, now: Instant) -> bool {
        self.flush_at.is_some_and(|at| now >= at)
    }
}

/// A backend's running server.
pub trait Serving: Send + 'static {
    /// Its counters.
    fn counters(&self) -> &ServerCounters;

    /// Graceful shutdown: stop accepting; let every connection finish the
    /// requests it has received and flush their responses; close; whatever
    /// is still busy after `grace` is closed by force and reported. Called once.
    fn stop(&mut self, grace: Duration) -> ShutdownReport;
}

/// A running server: its address, its counters, and its shutdown.
/// Dropping the handle shuts the server down at once (no grace period).
pub struct ServerHandle<S: Serving> {
    local_addr: SocketAddr,
    server: Option<S>,
}

impl<S: Serving> ServerHandle<S> {
    /// Wraps a backend's running server.
    pub fn new(local_addr: SocketAddr, server: S) -> Self {
        ServerHandle { local_addr, server: Some(server) }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.server.as_ref().map(|s| s.counters().snapshot()).unwrap_or_default()
    }

    /// Graceful shutdown (see [`Serving::stop`]), with `grace` to finish
    /// what is in flight.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        let Some(mut server) = self.server.take() else { return ShutdownReport::default() };
        let mut report = server.stop(grace);
        report.refused = server.counters().snapshot().refused;
        tracing::info!(local_addr = %self.local_addr, %report, "shut down");
        report
    }
}

impl<S: Serving> Drop for ServerHandle<S> {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

impl<S: Serving> std::fmt::Debug for ServerHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("local_addr", &self.local_addr).field("stats", &self.stats()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two connections on a virtual clock: what comes due, what is stale.
    #[test]
    fn deadlines_wake_only_the_connections_that_are_due() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut deadlines = Deadlines::default();
        let (mut a, mut b) = (None, None);
        deadlines.arm(0, Some(ms(100)), &mut a);
        deadlines.arm(1, Some(ms(50)), &mut b);
        // A later deadline pushes nothing; an earlier one does.
        deadlines.arm(0, Some(ms(200)), &mut a);
        assert_eq!(a, Some(ms(100)));
        deadlines.arm(0, Some(ms(30)), &mut a);
        assert_eq!((a, deadlines.next()), (Some(ms(30)), Some(ms(30))));
        // A connection with no deadline arms nothing.
        let mut c = None;
        deadlines.arm(2, None, &mut c);
        assert_eq!(c, None);

        let mut due = Vec::new();
        let mut armed = [a, b];
        deadlines.due(ms(29), &mut due, |key, at| take_due(&mut armed[key], at));
        assert!(due.is_empty(), "nothing is due before its time");
        // Connection 0's earlier entry is its own; its later one went stale
        // when it armed the earlier, and is skipped.
        deadlines.due(ms(100), &mut due, |key, at| take_due(&mut armed[key], at));
        assert_eq!(due, [0, 1]);
        assert_eq!(armed, [None, None], "disarmed, to be armed again");
        assert_eq!(deadlines.next(), None);
    }
}
