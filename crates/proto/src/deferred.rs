//! Deferred responses: answering a request later, from any thread or task.
//!
//! A [`Handler`](crate::Handler) that cannot answer at once (it waits on a
//! timer, a database, another RPC) calls
//! [`ResponseWriter::defer`](crate::ResponseWriter::defer) and gets a
//! [`Responder`]: `Send + 'static`, it can go to another thread or task and
//! answer from there. The connection goes on decoding and serving the next
//! requests meanwhile, and writes each deferred response when it arrives, out
//! of order (fastrpc matches responses to calls by id, so order never
//! mattered on the wire).
//!
//! ```text
//!  connection (owner thread/task)            anywhere else
//!  handler: resp.defer() ──Responder──────>  ... later: responder.respond(value)
//!                                              │ lock the connection's Completions,
//!                                              │ encode the response frame there,
//!                                              │ wake the connection (once per batch)
//!  process(): collect the frames  <───────────┘
//!  (appended to the output, written)
//! ```
//!
//! The protocol crate owns no thread or runtime, so *how* the connection is
//! woken is the backend's: it hands [`ServerConn::with_waker`](crate::ServerConn::with_waker)
//! a [`Wake`] (an `eventfd` write for the mio loop, an unpark for the std
//! writer thread, a task wake-up for tokio and glommio) and calls
//! [`process`](crate::ServerConn::process) when woken.
//!
//! Costs: deferring takes a reference count on the connection's
//! [`Completions`] (created the first time a request of the connection is
//! deferred, so a connection that never defers pays nothing); answering
//! takes one uncontended lock and encodes the response once into a buffer
//! that is reused, and the connection copies each batch of frames once into
//! its output. No allocation per call in steady state.
//!
//! What a client sees:
//!
//! * answered: its response, whenever it comes;
//! * a [`Responder`] dropped without answering (a handler bug): no response
//!   for that call (the client's deadline ends it); the connection and its
//!   other calls go on, and the server counts it
//!   ([`ServerConn::dropped_responders`](crate::ServerConn::dropped_responders));
//! * a handler that panicked while holding the responder, or called
//!   [`Responder::close_connection`]: the connection is closed, so that every
//!   call on it fails with a connection error, never a wrong value.
//!
//! A server-wide [`ConcurrencyLimit`] bounds how many requests are being
//! handled at once (inline or deferred), as Go fastrpc's `Server.Concurrency`.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;

use crate::codec::check_response_value;
use crate::config::{Limits, OverLimit, ServerConfig};
use crate::error::{Error, MessageError};
use crate::handler::ResponseWriter;

/// How a backend is told that deferred responses are waiting for a
/// connection: `wake(key)` with the key it gave
/// [`ServerConn::with_waker`](crate::ServerConn::with_waker). It is called
/// from the thread that completed a [`Responder`] (any thread), at most once
/// per batch (until the connection collects it), and must not block.
pub trait Wake: Send + Sync + 'static {
    /// Deferred responses (or a free concurrency slot) wait for connection `key`.
    fn wake(&self, key: usize);
}

/// A [`Wake`] that does nothing: for connections driven by hand, which call
/// `process` when they choose (tests, the sans-I/O example).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWake;

impl Wake for NoWake {
    fn wake(&self, _key: usize) {}
}

/// Why a [`Responder`] could not deliver its response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// The connection is closed (or this responder was never attached to a
    /// pending call): nothing will be written. Completing was a no-op.
    #[error("request {id}: its connection is closed, so the response was discarded")]
    Gone {
        /// The request id.
        id: u32,
    },
    /// The value broke `limits.max_value_len`: the connection is closed
    /// (as when an inline handler writes too much), so the client sees a
    /// connection error rather than a truncated value.
    #[error(transparent)]
    TooLarge(MessageError),
}

/// Where a connection's deferred responses gather until the connection
/// collects them. One per connection, shared by its [`Responder`]s.
pub struct Completions {
    state: Mutex<State>,
    /// In the concurrency limit's waiter list (at most once).
    slot_waiter: std::sync::atomic::AtomicBool,
    waker: Arc<dyn Wake>,
    key: usize,
    limits: Limits,
    limit: Option<Arc<ConcurrencyLimit>>,
}

struct State {
    /// Cleared when the connection closes: later completions are no-ops.
    open: bool,
    /// Encoded response frames (id, length, value), ready for the output.
    frames: BytesMut,
    /// Frames in `frames`.
    answered: usize,
    /// Responders finished since the last collection, however they ended.
    finished: usize,
    /// Of those, dropped without an answer.
    dropped: usize,
    /// A handler panicked or wrote too much: the connection must close.
    failure: Option<Error>,
    /// The backend was woken and has not collected yet.
    notified: bool,
}

impl State {
    /// The handler of call `id` failed: the connection must close (the
    /// first failure is the one reported).
    fn fail(&mut self, id: u32) {
        self.failure.get_or_insert(Error::HandlerPanicked { id });
    }
}

/// What [`Completions::collect`] moved into the output.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) answered: usize,
    pub(crate) finished: usize,
    pub(crate) dropped: usize,
    pub(crate) failure: Option<Error>,
}

impl Completions {
    fn new(waker: Arc<dyn Wake>, key: usize, limits: Limits, limit: Option<Arc<ConcurrencyLimit>>) -> Arc<Self> {
        Arc::new(Completions {
            state: Mutex::new(State {
                open: true,
                frames: BytesMut::new(),
                answered: 0,
                finished: 0,
                dropped: 0,
                failure: None,
                notified: false,
            }),
            slot_waiter: std::sync::atomic::AtomicBool::new(false),
            waker,
            key,
            limits,
            limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens under this lock (user code under it is
        // wrapped in catch_unwind), but never propagate poisoning anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a responder finished; wakes the connection if it is not
    /// already due to collect. Returns whether the connection was open.
    fn finish(&self, record: impl FnOnce(&mut State)) -> bool {
        self.update(|state| {
            record(state);
            state.finished += 1;
        })
    }

    /// Records news for the connection (if it is still open) and wakes it
    /// unless it is already due to collect. Returns whether it was open.
    fn update(&self, record: impl FnOnce(&mut State)) -> bool {
        let mut state = self.lock();
        if !state.open {
            return false;
        }
        record(&mut state);
        let wake = !std::mem::replace(&mut state.notified, true);
        drop(state);
        if wake {
            self.waker.wake(self.key);
        }
        true
    }

    /// Moves the frames gathered so far to the end of `out` (swapping
    /// buffers when `out` is empty, so nothing is copied).
    pub(crate) fn collect(&self, out: &mut BytesMut) -> Collected {
        let mut state = self.lock();
        state.notified = false;
        if out.is_empty() {
            std::mem::swap(out, &mut state.frames);
        } else {
            out.extend_from_slice(&state.frames);
            state.frames.clear();
        }
        Collected {
            answered: std::mem::take(&mut state.answered),
            finished: std::mem::take(&mut state.finished),
            dropped: std::mem::take(&mut state.dropped),
            failure: state.failure.take(),
        }
    }

    /// The connection is gone: completions from now on are no-ops.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        state.frames = BytesMut::new();
    }

    fn wake(&self) {
        self.waker.wake(self.key);
    }
}

impl fmt::Debug for Completions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completions").field("key", &self.key).finish_non_exhaustive()
    }
}

/// A promise to answer one request later. Get one from
/// [`ResponseWriter::defer`](crate::ResponseWriter::defer); complete it from
/// any thread or task with [`respond`](Self::respond) or
/// [`respond_with`](Self::respond_with). Completing consumes it, so a call is
/// answered at most once.
///
/// Dropping it unanswered is a handler bug: the call gets no response (its
/// client's deadline ends it), the connection goes on, and the server counts
/// it. Dropping it while the thread panics closes the connection instead.
#[must_use = "a responder dropped without an answer leaves its call unanswered"]
pub struct Responder {
    id: u32,
    completions: Option<Arc<Completions>>,
    /// Holds a slot of the server's concurrency limit, given back when done.
    holds_slot: bool,
}

impl Responder {
    pub(crate) fn new(id: u32, completions: Arc<Completions>, holds_slot: bool) -> Responder {
        Responder { id, completions: Some(completions), holds_slot }
    }

    /// A responder attached to nothing: completing it reports
    /// [`RespondError::Gone`]. What `defer` returns where deferring is not
    /// possible (a second `defer` for the same request, or a writer made
    /// with [`ResponseWriter::new`](crate::ResponseWriter::new)).
    pub fn detached(id: u32) -> Responder {
        Responder { id, completions: None, holds_slot: false }
    }

    /// The id of the request this answers (0: fire-and-forget, whose answer
    /// is discarded).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the connection is still there to write an answer. (It may
    /// close right after; [`respond`](Self::respond) tells for sure.)
    pub fn is_connected(&self) -> bool {
        self.completions.as_ref().is_some_and(|c| c.lock().open)
    }

    /// Answers with `value`.
    pub fn respond(self, value: &[u8]) -> Result<(), RespondError> {
        self.respond_with(|w| w.extend_from_slice(value))
    }

    /// Answers with whatever `write` appends, written straight into the
    /// connection's completion buffer (no intermediate copy). `write` runs
    /// under that buffer's lock: keep it to formatting the value.
    pub fn respond_with(mut self, write: impl FnOnce(&mut ResponseWriter<'_>)) -> Result<(), RespondError> {
        let Some(completions) = self.completions.take() else {
            return Err(RespondError::Gone { id: self.id });
        };
        let id = self.id;
        let limits = completions.limits;
        let mut panicked = None;
        let mut too_large = None;
        let open = completions.finish(|state| {
            if id == 0 {
                return; // fire-and-forget: nothing to write
            }
            let at = state.frames.len();
            state.frames.extend_from_slice(&id.to_le_bytes());
            state.frames.extend_from_slice(&[0; 4]);
            let mut writer = ResponseWriter::new(&mut state.frames);
            // User code under our lock: a panic must not leave a half frame.
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| write(&mut writer))) {
                state.frames.truncate(at);
                state.fail(id);
                panicked = Some(payload);
                return;
            }
            let len = state.frames.len() - at - 8;
            if let Err(e) = check_response_value(len, &limits) {
                state.frames.truncate(at);
                state.failure.get_or_insert(e.clone().into());
                too_large = Some(e);
                return;
            }
            state.frames[at + 4..at + 8].copy_from_slice(&(len as u32).to_le_bytes());
            state.answered += 1;
        });
        self.release(&completions);
        if let Some(payload) = panicked {
            panic::resume_unwind(payload);
        }
        match (open, too_large) {
            (false, _) => Err(RespondError::Gone { id }),
            (true, Some(e)) => Err(RespondError::TooLarge(e)),
            (true, None) => Ok(()),
        }
    }

    /// Gives up on this call and closes its connection: every call on it
    /// fails with a connection error (never a wrong value). For a handler
    /// that failed in a way its caller must not mistake for an answer, such
    /// as a panic caught on a worker thread.
    pub fn close_connection(mut self) {
        if let Some(completions) = self.completions.take() {
            let id = self.id;
            completions.finish(|state| state.fail(id));
            self.release(&completions);
        }
    }

    /// A handle that can close this call's connection even after the
    /// responder has moved into code that may panic (an `async` handler's
    /// future): what a wrapper that catches the panic uses, since the
    /// responder itself is then dropped outside the unwinding. Holds the
    /// connection's completions alive, nothing more.
    pub fn guard(&self) -> CallGuard {
        CallGuard { id: self.id, completions: self.completions.clone() }
    }

    fn release(&mut self, completions: &Completions) {
        if std::mem::take(&mut self.holds_slot) {
            if let Some(limit) = &completions.limit {
                limit.release();
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let Some(completions) = self.completions.take() else { return };
        let id = self.id;
        if std::thread::panicking() {
            // Unwinding out of the code that held it: treat as a panic.
            completions.finish(|state| state.fail(id));
        } else {
            completions.finish(|state| state.dropped += 1);
        }
        self.release(&completions);
    }
}

/// See [`Responder::guard`].
#[derive(Debug)]
pub struct CallGuard {
    id: u32,
    completions: Option<Arc<Completions>>,
}

impl CallGuard {
    /// The handler of this call failed (panicked): close its connection, so
    /// that its client sees a connection error and never a wrong value.
    pub fn close_connection(self) {
        if let Some(completions) = self.completions {
            let id = self.id;
            // Not counted as a finished responder: the responder does that.
            completions.update(|state| state.fail(id));
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).field("attached", &self.completions.is_some()).finish()
    }
}

/// A server-wide bound on requests being handled at once (running inline,
/// or deferred and not yet answered): Go fastrpc's `Server.Concurrency`.
/// Made once per server by the backend ([`ConcurrencyLimit::for_config`])
/// and shared by its connections. What happens over the limit is
/// [`OverLimit`]'s choice.
pub struct ConcurrencyLimit {
    max: usize,
    used: AtomicUsize,
    /// Connections waiting for a slot (backpressure), woken when one frees.
    waiting: AtomicUsize,
    waiters: Mutex<Vec<Arc<Completions>>>,
    pub(crate) over_limit: OverLimit,
}

impl ConcurrencyLimit {
    /// The limit `config` asks for (`concurrency`), if any.
    pub fn for_config(config: &ServerConfig) -> Option<Arc<ConcurrencyLimit>> {
        config.concurrency.map(|max| {
            Arc::new(ConcurrencyLimit {
                max: max.max(1),
                used: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                waiters: Mutex::new(Vec::new()),
                over_limit: config.over_limit.clone(),
            })
        })
    }

    /// Requests being handled now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn try_acquire(&self) -> bool {
        self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.used.load(Ordering::SeqCst) < self.max
    }

    pub(crate) fn release(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
        // Checked after the release (both SeqCst): a connection registers
        // before it tries again, so either it sees the freed slot or we see
        // it waiting. No lock on the common path.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let waiters = {
                let mut list = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
                self.waiting.store(0, Ordering::SeqCst);
                std::mem::take(&mut *list)
            };
            for waiter in waiters {
                waiter.slot_waiter.store(false, Ordering::SeqCst);
                waiter.wake();
            }
        }
    }

    /// Registers a connection to be woken when a slot frees (once: a
    /// connection already waiting is not added again). A release wakes and
    /// removes every waiter; one that still finds no room registers again.
    pub(crate) fn wait(&self, completions: &Arc<Completions>) {
        if completions.slot_waiter.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut list = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        list.push(Arc::clone(completions));
        self.waiting.store(list.len(), Ordering::SeqCst);
    }
}

impl fmt::Debug for ConcurrencyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit").field("max", &self.max).field("in_use", &self.in_use()).finish()
    }
}

/// A connection's side of deferral: how to wake it, its completions (made
/// on first use), the server's limit.
pub(crate) struct Deferral {
    waker: Arc<dyn Wake>,
    key: usize,
    limits: Limits,
    pub(crate) limit: Option<Arc<ConcurrencyLimit>>,
    pub(crate) completions: Option<Arc<Completions>>,
}

impl Deferral {
    pub(crate) fn new(waker: Arc<dyn Wake>, key: usize, limits: Limits, limit: Option<Arc<ConcurrencyLimit>>) -> Self {
        Deferral { waker, key, limits, limit, completions: None }
    }

    pub(crate) fn completions(&mut self) -> &Arc<Completions> {
        self.completions
            .get_or_insert_with(|| Completions::new(Arc::clone(&self.waker), self.key, self.limits, self.limit.clone()))
    }
}

impl Drop for Deferral {
    fn drop(&mut self) {
        if let Some(completions) = &self.completions {
            completions.close();
        }
    }
}

impl fmt::Debug for Deferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferral").field("key", &self.key).field("limit", &self.limit).finish_non_exhaustive()
    }
}
