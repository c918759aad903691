//! The client: one TCP connection (reconnected on demand) carrying many
//! calls at once; `Clone + Send + Sync`, with `async fn call`, and `start`
//! for a call in flight as a [`PendingCall`] future (many from one task).
//!
//! ```text
//!  caller tasks                   writer task                reader task
//!  lock; encode call; unlock      wait for output            read(socket)
//!  wake the writer                lock; take output; unlock  lock; decode responses;
//!  await the call's slot          write_all(socket)          complete slots; unlock
//! ```
//!
//! The lock is a `std::sync::Mutex` held for microseconds and never across
//! an `.await`, which is cheaper than an async mutex. Calls queue up in the
//! connection's output buffer while the writer is busy in `write`, so under
//! load many calls share one system call. A call waits on its own pooled
//! slot until its response, its deadline, or the death of the connection
//! (every pending call then fails at once). The connection's state machine
//! keeps the deadlines (each call's, the handshakes', the idle close), and
//! the reader task has one timer per connection, set to the machine's
//! `poll_timeout`, not a timer per call: registering a call in tokio's
//! timer wheel and removing it again would cost more than the rest of the
//! call's bookkeeping. The next call reconnects, after a backoff if the
//! last attempt failed (the machine's `Reconnect` policy). Must be used inside a tokio runtime:
//! the connection's reader and writer are tasks on it.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fastwire_common::{net, CallSlot, ClientError, ClientStats, Deadline, Reply, SlotPool, SlotToken};
use fastwire_proto::driver::{ClientExpired, Connection, Reconnect};
use fastwire_proto::{ClientConfig, ClientConn};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A client for one server address. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.inner.addr).field("pending", &self.pending()).finish()
    }
}

struct Inner {
    addr: SocketAddr,
    config: ClientConfig,
    state: Mutex<State>,
    /// Serialises connection attempts, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    /// Calls waiting for a connection to be made (the rest of the calls in
    /// progress are the connection's pending calls). Touched only on that
    /// slow path: a counter every call moved would cost two atomic
    /// operations per call, for a figure only a pool reads.
    connecting_calls: AtomicUsize,
}

struct State {
    active: Option<Active>,
    generation: u64,
    /// When the next connection may be attempted (the backoff).
    reconnect: Reconnect<Arc<io::Error>>,
    closed: bool,
    /// Why the last connection ended (a refused TLS certificate, a close
    /// by the server), for `wait_connected` and calls to report.
    failure: Option<ClientError>,
    /// The counters over every connection (see [`Client::stats`]).
    stats: ClientStats,
    /// The call slots, under this lock (which every call takes anyway).
    /// Declared after `active`, so that the pending calls' tokens are
    /// dropped before the slots they point at.
    slots: SlotPool,
    /// Tasks that found the client full or without a connection
    /// ([`Client::poll_ready`]), to wake once it has room or a connection.
    waiting_for_room: Vec<std::task::Waker>,
    /// A task is connecting (or waiting out the backoff) for `poll_ready`.
    readying: bool,
}

impl State {
    /// Whether a call started now would find the connection full: its
    /// pending calls at `max_pending`, or its queued output at the
    /// machine's bound. Without a connection there is room (a call
    /// connects).
    fn full(&self, config: &ClientConfig) -> bool {
        self.active.as_ref().is_some_and(|a| a.conn.pending_len() >= config.max_pending || a.conn.is_output_full())
    }

    /// The tasks to wake because the client has room again (none while it
    /// is full, or when nobody waits): wake them once the lock is let go.
    fn room(&mut self, config: &ClientConfig) -> Vec<std::task::Waker> {
        if self.waiting_for_room.is_empty() || (self.full(config) && !self.closed) {
            return Vec::new();
        }
        std::mem::take(&mut self.waiting_for_room)
    }

    /// Takes the connection away (it ends), adding its counts to the client's.
    fn end(&mut self) -> Option<Active> {
        let active = self.active.take()?;
        self.stats.connection_ended(active.conn.unknown_responses());
        Some(active)
    }
}

struct Active {
    conn: ClientConn<SlotToken>,
    generation: u64,
    signals: Arc<Signals>,
    tasks: [AbortHandle; 2],
    /// False once a write failed: no new call is queued, but responses
    /// already on their way are still read (the reader ends the connection).
    writable: bool,
    /// The socket's write half, shared by the writer task and callers that
    /// write their own call on a quiet connection (`try_write`).
    write_half: Arc<OwnedWriteHalf>,
    /// The writer task took output it has not finished writing: nobody
    /// else may write until it has (two writers' bytes must not interleave).
    writing: bool,
    /// The last call was alone on the connection (see the blocking client
    /// in fastwire-common): only on a connection used one call at a time
    /// does a caller write its own call.
    one_at_a_time: bool,
    /// The time the reader task's timer is set to (`None`: off). When the
    /// machine's `poll_timeout` comes earlier (a call with an earlier
    /// deadline, say) it is set and the reader woken (`Signals::deadline`)
    /// to reset the timer (see [`arm`]).
    armed: Option<std::time::Instant>,
}

/// Makes sure the reader's timer goes off no later than the connection's
/// next deadline. A later one leaves it be: the timer goes off early, the
/// machine finds nothing due, and the reader sets it to the true next
/// deadline (so a call, whose deadline is later than those before it,
/// costs no timer reset).
fn arm(active: &mut Active) {
    if let Some(next) = active.conn.poll_timeout() {
        if active.armed.is_none_or(|at| next < at) {
            active.armed = Some(next);
            active.signals.deadline.notify_one();
        }
    }
}

/// Wake-ups for one connection's writer and for senders waiting on it.
#[derive(Default)]
struct Signals {
    output_ready: Notify,
    output_drained: Notify,
    handshake_done: Notify,
    /// The connection's next deadline came earlier than the reader's timer.
    deadline: Notify,
}

impl Client {
    /// A client for `addr`. It connects on the first call.
    pub fn new(addr: SocketAddr, config: ClientConfig) -> Client {
        let reconnect = Reconnect::new(&config);
        Client {
            inner: Arc::new(Inner {
                addr,
                config,
                state: Mutex::new(State {
                    active: None,
                    generation: 0,
                    reconnect,
                    closed: false,
                    failure: None,
                    stats: ClientStats::default(),
                    slots: SlotPool::default(),
                    waiting_for_room: Vec::new(),
                    readying: false,
                }),
                connecting: tokio::sync::Mutex::new(()),
                connecting_calls: AtomicUsize::new(0),
            }),
        }
    }

    /// Resolves `addr`, connects, and waits for the server's handshake, so
    /// that a wrong address or configuration shows up here.
    pub async fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Client, ClientError> {
        let addr = net::resolve(addr)
            .map_err(|e| ClientError::Connect { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source: Arc::new(e) })?;
        let client = Client::new(addr, config);
        client.wait_connected().await?;
        Ok(client)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Calls in progress now: sent and awaiting a response, or about to be
    /// sent (waiting for the connection). A pool uses it to pick the least
    /// busy client.
    pub fn pending(&self) -> usize {
        let state = self.inner.lock();
        let sent = state.active.as_ref().map_or(0, |a| a.conn.pending_len());
        sent + self.inner.connecting_calls.load(Ordering::Relaxed)
    }

    /// Whether a call could start now on a live connection that is not
    /// full (`max_pending` calls in flight, or 4 MiB of output queued):
    /// `Ready` if so, `Ready(Err(Closed))` once the client is closed, else
    /// `Pending`, and `cx`'s task is woken once a call ends or the output
    /// drains. Without a connection it connects in a task of its own and
    /// is not ready until that connection is made; after a failed attempt
    /// it stays not ready until the reconnection backoff ends, and then
    /// tries again. So a balancer (tower's `p2c`) sends no call to a server
    /// that is down: it waits, or picks another. This is tower's
    /// `poll_ready` (the `tower` feature); clones racing for the same room
    /// may still find it taken, and such a call fails with `TooManyPending`
    /// rather than waiting.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ClientError>> {
        let mut state = self.inner.lock();
        if state.closed {
            return std::task::Poll::Ready(Err(ClientError::Closed));
        }
        let connected = state.active.is_some();
        if connected && !state.full(&self.inner.config) {
            return std::task::Poll::Ready(Ok(()));
        }
        if !state.waiting_for_room.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiting_for_room.push(cx.waker().clone());
        }
        if !connected && !state.readying {
            // Outside a runtime there is no task to connect with: the call
            // connects itself, as without tower.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return std::task::Poll::Ready(Ok(()));
            };
            state.readying = true;
            let retry_in = state.reconnect.backing_off(std::time::Instant::now()).map(|(_, retry_in)| retry_in);
            let inner = Arc::clone(&self.inner);
            runtime.spawn(async move {
                match retry_in {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {
                        let deadline = Instant::now() + inner.config.connect_timeout;
                        let _ = inner.ensure_connected(deadline).await;
                    }
                }
                let woken = {
                    let mut state = inner.lock();
                    state.readying = false;
                    std::mem::take(&mut state.waiting_for_room)
                };
                woken.into_iter().for_each(std::task::Waker::wake);
            });
        }
        std::task::Poll::Pending
    }

    /// Connects if needed and waits until the server's handshake is in.
    pub async fn wait_connected(&self) -> Result<(), ClientError> {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.connect_timeout + config.handshake_timeout;
        self.inner.ensure_connected(deadline).await?;
        loop {
            let signals = {
                let state = self.inner.lock();
                match &state.active {
                    Some(a) if a.conn.is_handshake_done() => return Ok(()),
                    Some(a) => Arc::clone(&a.signals),
                    // The connection died: its error says why and when.
                    None => return Err(state.failure.clone().unwrap_or(ClientError::Closed)),
                }
            };
            let notified = signals.handshake_done.notified();
            if self.inner.lock().active.as_ref().is_some_and(|a| a.conn.is_handshake_done()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ClientError::Timeout(config.handshake_timeout));
            }
        }
    }

    /// Calls `name` with `value` and awaits the response, at most `call_timeout`.
    pub async fn call(&self, name: &[u8], value: &[u8]) -> Result<Reply, ClientError> {
        self.call_timeout(name, value, self.inner.config.call_timeout).await
    }

    /// Calls with a deadline of its own.
    pub async fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError> {
        self.start_timeout(name, value, timeout).await?.await
    }

    /// Starts a call (connecting first if need be) and returns once it is
    /// queued, without waiting for the response: the returned
    /// [`PendingCall`] is a future of it, and one task may hold many (start
    /// them, then await the oldest), as the blocking clients' `start`. The
    /// deadline is `call_timeout` from now.
    pub async fn start(&self, name: &[u8], value: &[u8]) -> Result<PendingCall<'_>, ClientError> {
        self.start_timeout(name, value, self.inner.config.call_timeout).await
    }

    /// Starts a call with a deadline of its own (see [`start`](Self::start)).
    pub async fn start_timeout(
        &self,
        name: &[u8],
        value: &[u8],
        timeout: Duration,
    ) -> Result<PendingCall<'_>, ClientError> {
        let inner = &self.inner;
        // One coarse clock read per call, as in the blocking clients (see
        // `fastwire_common::Deadline` for why not the precise clock).
        let deadline_at = Deadline::after(timeout).to_instant();
        // One lock for the call when the connection is up; without one,
        // connect (outside the lock) and try once more.
        let mut connected = false;
        let (id, generation, slot) = loop {
            let started = {
                let mut state = inner.lock();
                if state.closed {
                    return Err(ClientError::Closed);
                }
                if state.active.is_none() && !connected {
                    None
                } else {
                    let (slot, token) = state.slots.lend();
                    let Some(active) = state.active.as_mut().filter(|a| a.writable) else {
                        // A connection that died (TLS refused, a close by the
                        // server) between connecting and now: say why.
                        if state.active.is_none() {
                            if let Some(failure) = state.failure.clone() {
                                return Err(failure);
                            }
                        }
                        return Err(ClientError::lost(
                            io::ErrorKind::ConnectionAborted,
                            "connection lost before the call was sent",
                        ));
                    };
                    let first = !active.conn.has_output();
                    match active.conn.start_call_until(name, value, token, deadline_at) {
                        Ok(id) => {
                            arm(active);
                            // Alone now, after a call that was alone too: this task
                            // writes the call itself (no hand-off to the writer
                            // task); what the socket does not take is the writer's.
                            let alone = active.conn.pending_len() == 1;
                            let quiet = alone && active.one_at_a_time;
                            active.one_at_a_time = alone;
                            if first && !(quiet && write_now(active, &inner.config)) {
                                active.signals.output_ready.notify_one();
                            }
                            Some((id, active.generation, slot))
                        }
                        Err(rejected) => {
                            drop(state);
                            drop((rejected.token, slot));
                            return Err(rejected.error.into());
                        }
                    }
                }
            };
            match started {
                Some(started) => break started,
                None => {
                    inner.connecting_calls.fetch_add(1, Ordering::Relaxed);
                    let _counted = ConnectingCall(inner);
                    inner.ensure_connected(Instant::from_std(deadline_at)).await?;
                    connected = true;
                }
            }
        };
        // If the pending call is dropped before it is done (a `select!`, a
        // cancelled task), its guard forgets the call so its id is freed.
        // Its deadline is the reader's to enforce: a call past it is failed
        // with `Timeout` by the next sweep.
        Ok(PendingCall { slot: Some(slot), timeout, cancel: CancelOnDrop { inner, id, generation, armed: true } })
    }

    /// Sends a fire-and-forget request (id 0): no response, no deadline. If
    /// 4 MiB of output is already waiting (the server is not reading), waits
    /// for room up to `call_timeout`.
    pub async fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let inner = &self.inner;
        // The clock is read only if the send has to wait.
        let mut deadline_at = None;
        let mut deadline = || *deadline_at.get_or_insert_with(|| Instant::now() + inner.config.call_timeout);
        loop {
            if !inner.usable()? {
                inner.ensure_connected(deadline()).await?;
            }
            let signals = {
                let mut state = inner.lock();
                let Some(active) = state.active.as_mut() else { continue };
                if !active.writable {
                    return Err(ClientError::lost(io::ErrorKind::BrokenPipe, "the connection is closing"));
                }
                if !active.conn.is_output_full() {
                    let first = !active.conn.has_output();
                    active.conn.send_fire_and_forget(name, value)?;
                    if first {
                        active.signals.output_ready.notify_one();
                    }
                    return Ok(());
                }
                Arc::clone(&active.signals)
            };
            if tokio::time::timeout_at(deadline(), signals.output_drained.notified()).await.is_err() {
                return Err(ClientError::Timeout(inner.config.call_timeout));
            }
        }
    }

    /// The client's counters: connections made, unsolicited responses
    /// dropped, the buffers' capacity now and at most.
    pub fn stats(&self) -> ClientStats {
        let state = self.inner.lock();
        state.stats.with_live(state.active.as_ref().map_or(0, |a| a.conn.unknown_responses()))
    }

    /// Closes the connection; pending and future calls fail with `Closed`.
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        let active = state.end();
        unlock_waking(state, &self.inner.config);
        if let Some(active) = active {
            fail_all(active, ClientError::Closed);
        }
    }
}

/// Gives a call's count of `connecting_calls` back when dropped.
struct ConnectingCall<'a>(&'a Inner);

impl Drop for ConnectingCall<'_> {
    fn drop(&mut self) {
        self.0.connecting_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A call in progress (see [`Client::start`]): awaiting it gives its
/// reply. Dropping it before then forgets the call (its id is freed and a
/// late response is counted as unsolicited). Its deadline is the
/// connection's to enforce: a call past it completes with
/// [`ClientError::Timeout`] at the next sweep, awaited or not.
#[must_use = "a call is forgotten when its PendingCall is dropped"]
pub struct PendingCall<'a> {
    /// `None` once the reply was taken.
    slot: Option<Arc<CallSlot>>,
    /// The call's timeout, which a failure at its deadline reports.
    timeout: Duration,
    cancel: CancelOnDrop<'a>,
}

impl PendingCall<'_> {
    /// The call's request id on the wire.
    pub fn id(&self) -> u32 {
        self.cancel.id
    }

    /// Whether its response (or failure) is in: awaiting it now returns at once.
    pub fn is_done(&self) -> bool {
        self.slot.as_ref().is_none_or(|slot| slot.is_done())
    }
}

impl std::fmt::Debug for PendingCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").field("id", &self.cancel.id).field("done", &self.is_done()).finish()
    }
}

impl std::future::Future for PendingCall<'_> {
    type Output = Result<Reply, ClientError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let Some(slot) = this.slot.as_ref() else {
            panic!("PendingCall polled after it returned its reply");
        };
        std::task::ready!(slot.poll_done(cx));
        this.cancel.armed = false;
        std::task::Poll::Ready(CallSlot::finish_call(this.slot.take().expect("checked above"), this.timeout))
    }
}

/// Forgets a call whose future was dropped before it completed.
struct CancelOnDrop<'a> {
    inner: &'a Inner,
    id: u32,
    generation: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            drop(self.inner.cancel(self.id, self.generation));
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self, id: u32, generation: u64) -> Option<SlotToken> {
        let mut state = self.lock();
        let token = match state.active.as_mut() {
            Some(active) if active.generation == generation => active.conn.cancel(id),
            _ => None,
        };
        unlock_waking(state, &self.config);
        token
    }

    /// Makes sure there is a live connection, connecting if allowed.
    async fn ensure_connected(self: &Arc<Inner>, deadline: Instant) -> Result<(), ClientError> {
        if self.usable()? {
            return Ok(());
        }
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected while we waited.
        if self.usable()? {
            return Ok(());
        }
        let now = Instant::now();
        let timeout = match self.lock().reconnect.attempt(now.into_std(), deadline.saturating_duration_since(now)) {
            Ok(timeout) => timeout,
            Err((last_error, retry_in)) => return Err(ClientError::Backoff { addr: self.addr, last_error, retry_in }),
        };
        let connected = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream.set_nodelay(true).map(|()| stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {timeout:?}"))),
        };
        let mut state = self.lock();
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                let e = Arc::new(e);
                state.reconnect.failed(now.into_std(), Arc::clone(&e));
                return Err(ClientError::Connect { addr: self.addr, source: e });
            }
        };
        if state.closed {
            return Err(ClientError::Closed);
        }
        // The backoff is reset when the handshake is done (see `read_loop`).
        state.failure = None;
        state.stats.connections += 1;
        state.generation += 1;
        let generation = state.generation;
        let (read_half, write_half) = stream.into_split();
        let write_half = Arc::new(write_half);
        let signals = Arc::new(Signals::default());
        let reader = tokio::spawn(read_loop(Arc::clone(self), generation, read_half, Arc::clone(&signals)));
        let writer =
            tokio::spawn(write_loop(Arc::clone(self), generation, Arc::clone(&write_half), Arc::clone(&signals)));
        let tasks = [reader.abort_handle(), writer.abort_handle()];
        state.active = Some(Active {
            // Large values are copied, not shared (`share_values_from`): the
            // reader task reads straight into the connection's buffer, and
            // keeps reading while callers still hold the values it shared,
            // so each read would need a new buffer: more allocations per
            // large call than the copy's one.
            conn: {
                let mut conn = ClientConn::new(&self.config);
                conn.start_clock(std::time::Instant::now());
                conn
            },
            generation,
            signals,
            tasks,
            writable: true,
            write_half,
            writing: false,
            one_at_a_time: true,
            armed: None,
        });
        Ok(())
    }

    fn usable(&self) -> Result<bool, ClientError> {
        let state = self.lock();
        if state.closed {
            return Err(ClientError::Closed);
        }
        Ok(state.active.is_some())
    }
}

/// Lets `state`'s lock go, then wakes the tasks that have room again (see
/// [`State::room`]): a task woken under the lock would only wait for it.
fn unlock_waking(mut state: MutexGuard<'_, State>, config: &ClientConfig) {
    let room = state.room(config);
    drop(state);
    room.into_iter().for_each(std::task::Waker::wake);
}

/// Fails every pending call of a connection and stops its tasks.
fn fail_all(mut active: Active, error: ClientError) {
    for (_, token) in active.conn.drain_pending() {
        token.fail(error.clone());
    }
    for task in &active.tasks {
        task.abort();
    }
    active.signals.output_drained.notify_waiters();
    active.signals.handshake_done.notify_waiters();
}

/// Ends connection `generation` (if it is still the active one) with
/// `error`, under the lock the caller holds: a connection whose state
/// machine failed is ended before anyone else takes the lock, so that no
/// call starts on it meanwhile (and is told the failure without the
/// backoff that goes with it).
fn die(inner: &Inner, mut state: MutexGuard<'_, State>, generation: u64, error: ClientError) {
    if state.active.as_ref().is_some_and(|a| a.generation == generation) {
        let active = state.end().expect("checked");
        if !active.conn.is_handshake_done() {
            // Refused at the handshake (a certificate not trusted, TLS not
            // served): retrying at once would only be refused again.
            state.reconnect.failed(std::time::Instant::now(), Arc::new(io::Error::other(error.to_string())));
        }
        state.failure = Some(error.clone());
        unlock_waking(state, &inner.config);
        tracing::debug!(addr = %inner.addr, %error, "client connection lost");
        fail_all(active, error);
    }
}

async fn read_loop(inner: Arc<Inner>, generation: u64, mut stream: OwnedReadHalf, signals: Arc<Signals>) {
    // The connection's one timer: its machine's next deadline (the
    // handshakes' first, set by `start_clock`).
    let first = {
        let mut state = inner.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
            return; // already over
        };
        active.armed = active.conn.poll_timeout();
        active.armed
    };
    let expiry = tokio::time::sleep_until(first.map_or_else(Instant::now, Instant::from_std));
    tokio::pin!(expiry);
    let mut armed = first.is_some();
    let mut handshake_done = false;
    let mut buf = BytesMut::new();
    // One read takes at most this much, and is decoded before the next: a
    // buffer left with more room by a swap (see `receive_buffer`) must not
    // let a flooded socket fill all of it.
    let chunk = inner.config.buffer_size.clamp(4096, 64 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(chunk);
        }
        let mut room = (&mut buf).limit(chunk);
        // `read_buf` is cancel-safe: a branch that wins instead read nothing.
        let read = tokio::select! {
            read = stream.read_buf(&mut room) => read,
            _ = &mut expiry, if armed => {
                match look(&inner, generation) {
                    Some(next) => armed = next.map(|at| expiry.as_mut().reset(Instant::from_std(at))).is_some(),
                    None => return, // the connection ended
                }
                continue;
            }
            _ = signals.deadline.notified() => {
                let at = inner.lock().active.as_ref().filter(|a| a.generation == generation).and_then(|a| a.armed);
                armed = at.map(|at| expiry.as_mut().reset(Instant::from_std(at))).is_some();
                continue;
            }
        };
        let mut state = inner.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
            return;
        };
        let error = match read {
            Ok(0) => Some(ClientError::closed_by_server(active.conn.handshake_stage())),
            Ok(_) => None,
            Err(e) => Some(ClientError::from_io(e)),
        };
        if let Some(error) = error {
            return die(&inner, state, generation, error);
        }
        active.conn.receive_buffer(&mut buf);
        // `buf` now holds the connection's previous buffer, to fill next.
        let capacity = active.conn.buffer_capacity() + buf.capacity();
        if let Err(e) = active.conn.process(|response, token| token.complete_response(response)) {
            // Last words, best effort: a TLS alert saying why (an untrusted
            // certificate, say) lets the server log the reason.
            if !active.writing {
                let _ = active.write_half.try_write(active.conn.output());
            }
            return die(&inner, state, generation, e.into());
        }
        // Reading can make output: with TLS, the handshake's replies and
        // the calls that waited for it.
        if active.conn.has_output() {
            signals.output_ready.notify_one();
        }
        // The last call answered: the idle close is the next deadline.
        arm(active);
        let handshake_now = !handshake_done && active.conn.is_handshake_done();
        state.stats.saw_capacity(capacity);
        if handshake_now {
            handshake_done = true;
            // A connection counts as made once its handshake is done: one
            // refused at the handshake keeps the backoff growing.
            state.reconnect.succeeded();
            signals.handshake_done.notify_waiters();
        }
        unlock_waking(state, &inner.config);
    }
}

/// Hands connection `generation` the time: its calls past their deadline
/// fail with `Timeout` (each caller says its own timeout), and a stalled
/// handshake or an idle close ends it. Returns the reader's next wake-up
/// (`Some(None)`: none until a call sets one), or `None` if the connection
/// ended.
fn look(inner: &Inner, generation: u64) -> Option<Option<std::time::Instant>> {
    let mut state = inner.lock();
    let active = state.active.as_mut().filter(|a| a.generation == generation)?;
    let now = std::time::Instant::now();
    match active.conn.handle_timeout(now, |_, token| token.fail(ClientError::Timeout(Duration::ZERO))) {
        ClientExpired::Nothing => {
            active.armed = active.conn.poll_timeout();
            let next = active.armed;
            unlock_waking(state, &inner.config);
            Some(next)
        }
        ClientExpired::Handshake => {
            let error = ClientError::handshake_timeout(active.conn.handshake_stage(), inner.config.handshake_timeout);
            die(inner, state, generation, error);
            None
        }
        ClientExpired::Idle => {
            // Unused for idle_timeout: close; the next call reconnects.
            let active = state.end().expect("checked");
            unlock_waking(state, &inner.config);
            fail_all(active, ClientError::Closed);
            None
        }
    }
}

/// A caller writes its own call on a quiet connection: one non-blocking
/// write under the lock, if the writer task is not writing. Returns whether
/// all output went out.
fn write_now(active: &mut Active, config: &ClientConfig) -> bool {
    if active.writing || config.batch_delay.is_some() {
        return false;
    }
    let out = active.conn.output();
    if let Ok(n) = active.write_half.try_write(out) {
        active.conn.advance_output(n);
    }
    // An error is the writer task's to find on its own write (and report).
    !active.conn.has_output()
}

async fn write_loop(inner: Arc<Inner>, generation: u64, stream: Arc<OwnedWriteHalf>, signals: Arc<Signals>) {
    enum Next {
        /// Write what was taken, after waking the tasks its taking made room for.
        Write(Vec<std::task::Waker>),
        Delay,
        Wait,
    }
    let mut out = BytesMut::new();
    let mut delayed = false;
    loop {
        // Register interest before looking, so a wake-up in between is not lost.
        let notified = signals.output_ready.notified();
        let next = {
            let mut state = inner.lock();
            let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
                return;
            };
            if active.conn.has_output() {
                if inner.config.batch_delay.is_some() && !delayed {
                    Next::Delay
                } else {
                    active.conn.take_output(&mut out);
                    active.writing = true;
                    Next::Write(state.room(&inner.config))
                }
            } else {
                // Everything taken has been written: callers may write now,
                // and the connection may go idle (the reader's timer).
                active.writing = false;
                arm(active);
                Next::Wait
            }
        };
        match next {
            Next::Wait => notified.await,
            Next::Delay => {
                // batch_delay: let more calls join this batch.
                delayed = true;
                tokio::time::sleep(inner.config.batch_delay.unwrap_or_default()).await;
            }
            Next::Write(room) => {
                delayed = false;
                signals.output_drained.notify_waiters();
                room.into_iter().for_each(std::task::Waker::wake);
                if let Err(e) = write_all(&stream, &out).await {
                    // Not `die`: responses may still be on their way, and the
                    // reader must get them. No new call is queued; the reader
                    // ends the connection when its reads end.
                    tracing::debug!(addr = %inner.addr, error = %e, "client write failed");
                    if let Some(active) = inner.lock().active.as_mut().filter(|a| a.generation == generation) {
                        active.writable = false;
                    }
                    return;
                }
                out.clear();
            }
        }
    }
}

/// Writes all of `out` through the shared write half: wait for write
/// readiness, then write what the socket takes, until done.
async fn write_all(stream: &OwnedWriteHalf, out: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < out.len() {
        match stream.try_write(&out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
