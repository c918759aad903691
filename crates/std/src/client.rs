//! The client: one TCP connection (reconnected on demand) carrying many
//! calls at once, shareable by any number of threads.
//!
//! ```text
//!  caller threads                 writer thread              reader thread
//!  lock; encode call; unlock      wait for output            read(socket)
//!  wake writer                    lock; take output; unlock  lock; decode responses;
//!  wait on the call's slot        write_all(socket)          complete slots; unlock
//! ```
//!
//! Calls queue up in the connection's output buffer while the writer is busy
//! in `write`, so under load many calls share one system call: batching
//! happens by itself, without a timer. Each call waits on its own pooled
//! slot until its response, its deadline, or the death of the connection
//! (every pending call then fails at once: a dead server never makes a
//! caller hang). The next call reconnects, after a backoff if the last
//! attempt failed.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::{net, Backoff, CallSlot, ClientError, Reply, SlotPool};
use fastwire_proto::{ClientConfig, ClientConn, Connection};

/// Stack size of the connection threads.
const STACK_SIZE: usize = 128 * 1024;

/// A client for one server address. Cheap to clone: clones share the
/// connection. `Send + Sync`: call it from any number of threads.
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
    /// Wakes the writer: output is ready (or the connection changed).
    output_ready: Condvar,
    /// Wakes senders waiting for output to drain (fire-and-forget backpressure).
    output_drained: Condvar,
    slots: Arc<SlotPool>,
    /// Calls in progress: sent and awaiting a response, or about to be sent.
    in_progress: AtomicUsize,
}

struct State {
    active: Option<Active>,
    generation: u64,
    backoff: Backoff,
    closed: bool,
    last_used: Instant,
}

struct Active {
    conn: ClientConn<Arc<CallSlot>>,
    generation: u64,
    stream: TcpStream,
    /// False once a write failed: no new call is queued, but responses
    /// already on their way are still read (the reader ends the connection).
    writable: bool,
}

/// Output waiting to be written beyond which fire-and-forget sends wait.
const MAX_QUEUED_OUTPUT: usize = 4 * 1024 * 1024;

impl Client {
    /// A client for `addr`. It connects on the first call.
    pub fn new(addr: SocketAddr, config: ClientConfig) -> Client {
        let backoff = Backoff::new(config.reconnect_backoff, config.max_reconnect_backoff);
        Client {
            inner: Arc::new(Inner {
                addr,
                config,
                state: Mutex::new(State {
                    active: None,
                    generation: 0,
                    backoff,
                    closed: false,
                    last_used: Instant::now(),
                }),
                output_ready: Condvar::new(),
                output_drained: Condvar::new(),
                slots: SlotPool::new(),
                in_progress: AtomicUsize::new(0),
            }),
        }
    }

    /// Resolves `addr`, connects, and waits for the server's handshake, so
    /// that a wrong address or configuration shows up here.
    pub fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Client, ClientError> {
        let addr = net::resolve(addr)
            .map_err(|e| ClientError::Connect { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source: Arc::new(e) })?;
        let client = Client::new(addr, config);
        client.wait_connected()?;
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
        self.inner.in_progress.load(Ordering::Relaxed)
    }

    /// Connects if needed and waits until the server's handshake is in.
    pub fn wait_connected(&self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.inner.config.connect_timeout + self.inner.config.handshake_timeout;
        let mut state = self.inner.lock();
        self.inner.ensure_connected(&mut state, deadline)?;
        drop(state);
        // The handshake is only visible through the reader; poll briefly.
        loop {
            let state = self.inner.lock();
            match &state.active {
                Some(a) if a.conn.is_handshake_done() => return Ok(()),
                Some(_) => {}
                None => {
                    return Err(state.backoff.check(Instant::now()).map_or_else(
                        || ClientError::lost(io::ErrorKind::ConnectionAborted, "connection closed during handshake"),
                        |(e, _)| ClientError::Connect { addr: self.inner.addr, source: e },
                    ))
                }
            }
            drop(state);
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(self.inner.config.handshake_timeout));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Calls `name` with `value` and waits for the response, at most
    /// `call_timeout`.
    pub fn call(&self, name: &[u8], value: &[u8]) -> Result<Reply, ClientError> {
        self.call_timeout(name, value, self.inner.config.call_timeout)
    }

    /// Calls with a deadline of its own.
    pub fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError> {
        self.start_timeout(name, value, timeout)?.wait()
    }

    /// Sends a call without waiting for it: many calls can be in flight from
    /// one thread. [`PendingCall::wait`] gets the response; the deadline
    /// (`call_timeout`) runs from now.
    pub fn start(&self, name: &[u8], value: &[u8]) -> Result<PendingCall, ClientError> {
        self.start_timeout(name, value, self.inner.config.call_timeout)
    }

    /// [`start`](Self::start) with a deadline of its own.
    pub fn start_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<PendingCall, ClientError> {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        inner.in_progress.fetch_add(1, Ordering::Relaxed);
        // From here the call owns one count of `in_progress`: PendingCall
        // gives it back when waited or dropped; the error paths below do.
        let failed = |e: ClientError| {
            inner.in_progress.fetch_sub(1, Ordering::Relaxed);
            Err(e)
        };
        let mut state = inner.lock();
        if let Err(e) = inner.ensure_connected(&mut state, deadline) {
            return failed(e);
        }
        state.last_used = Instant::now();
        let active = state.active.as_mut().expect("connected above");
        if !active.writable {
            return failed(ClientError::lost(io::ErrorKind::BrokenPipe, "the connection is closing"));
        }
        let slot = inner.slots.acquire();
        let first = !active.conn.has_output();
        match active.conn.start_call(name, value, Arc::clone(&slot)) {
            Ok(id) => {
                let generation = active.generation;
                drop(state);
                if first {
                    inner.output_ready.notify_all();
                }
                Ok(PendingCall { inner: Arc::clone(inner), slot: Some(slot), id, generation, deadline, timeout })
            }
            Err(rejected) => {
                drop(state);
                drop(rejected.token);
                inner.slots.release(slot);
                failed(rejected.error.into())
            }
        }
    }

    /// Sends a fire-and-forget request (id 0): no response, no deadline. It
    /// is queued for the writer; if 4 MiB of output is already waiting (the
    /// server is not reading), waits for room up to `call_timeout`.
    pub fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.config.call_timeout;
        let mut state = inner.lock();
        loop {
            inner.ensure_connected(&mut state, deadline)?;
            let active = state.active.as_mut().expect("connected above");
            if !active.writable {
                return Err(ClientError::lost(io::ErrorKind::BrokenPipe, "the connection is closing"));
            }
            if active.conn.buffered_output() < MAX_QUEUED_OUTPUT {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout(inner.config.call_timeout));
            }
            state = inner.output_drained.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        state.last_used = Instant::now();
        let active = state.active.as_mut().expect("connected above");
        let first = !active.conn.has_output();
        active.conn.send_fire_and_forget(name, value)?;
        drop(state);
        if first {
            inner.output_ready.notify_all();
        }
        Ok(())
    }

    /// Closes the connection; pending and future calls fail with `Closed`.
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        if let Some(active) = state.active.take() {
            fail_all(active, ClientError::Closed);
        }
        drop(state);
        self.inner.output_ready.notify_all();
    }
}

/// A call that was sent and awaits its response (see [`Client::start`]).
/// Dropping it forgets the call: a late response is dropped.
pub struct PendingCall {
    inner: Arc<Inner>,
    slot: Option<Arc<CallSlot>>,
    id: u32,
    generation: u64,
    deadline: Instant,
    timeout: Duration,
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").field("id", &self.id).finish()
    }
}

impl PendingCall {
    /// The call's request id on its connection.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the response (or an error) is already in.
    pub fn is_done(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.is_done())
    }

    /// Blocks until the response, the deadline, or the death of the connection.
    pub fn wait(mut self) -> Result<Reply, ClientError> {
        let slot = self.slot.take().expect("present until waited");
        let inner = &self.inner;
        let _done = InProgress(inner);
        if !slot.wait_until(self.deadline) {
            if let Some(token) = inner.cancel(self.id, self.generation) {
                drop(token);
                inner.slots.release(slot);
                return Err(ClientError::Timeout(self.timeout));
            }
            // Not pending any more: completed or failed just now, under the
            // lock `cancel` took, so the slot is already done.
        }
        inner.slots.finish(slot)
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if self.slot.take().is_some() {
            let _done = InProgress(&self.inner);
            drop(self.inner.cancel(self.id, self.generation));
        }
    }
}

/// Gives a call's count of `in_progress` back when dropped.
struct InProgress<'a>(&'a Inner);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn cancel(&self, id: u32, generation: u64) -> Option<Arc<CallSlot>> {
        match self.lock().active.as_mut() {
            Some(active) if active.generation == generation => active.conn.cancel(id),
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure there is a live connection, connecting if allowed.
    fn ensure_connected(
        self: &Arc<Inner>,
        state: &mut MutexGuard<'_, State>,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        if state.closed {
            return Err(ClientError::Closed);
        }
        if state.active.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some((last_error, retry_in)) = state.backoff.check(now) {
            return Err(ClientError::Backoff { addr: self.addr, last_error, retry_in });
        }
        let timeout =
            self.config.connect_timeout.min(deadline.saturating_duration_since(now)).max(Duration::from_millis(1));
        let stream = match net::connect(self.addr, timeout).and_then(|s| Ok((s.try_clone()?, s.try_clone()?, s))) {
            Ok(streams) => streams,
            Err(e) => {
                let e = Arc::new(e);
                state.backoff.failed(now, Arc::clone(&e));
                return Err(ClientError::Connect { addr: self.addr, source: e });
            }
        };
        let (read_half, write_half, stream) = stream;
        state.generation += 1;
        let generation = state.generation;
        state.active = Some(Active { conn: ClientConn::new(&self.config), generation, stream, writable: true });
        state.backoff.succeeded();
        spawn_threads(Arc::clone(self), generation, read_half, write_half).map_err(|e| {
            if let Some(active) = state.active.take() {
                fail_all(active, ClientError::from_io(io::Error::new(e.kind(), e.to_string())));
            }
            ClientError::Connect { addr: self.addr, source: Arc::new(e) }
        })
    }
}

fn spawn_threads(inner: Arc<Inner>, generation: u64, read_half: TcpStream, write_half: TcpStream) -> io::Result<()> {
    let reader = Arc::clone(&inner);
    thread::Builder::new()
        .name("fastwire-client-writer".into())
        .stack_size(STACK_SIZE)
        .spawn(move || write_loop(&inner, generation, write_half))?;
    thread::Builder::new()
        .name("fastwire-client-reader".into())
        .stack_size(STACK_SIZE)
        .spawn(move || read_loop(&reader, generation, read_half))?;
    Ok(())
}

/// Fails every pending call of a connection and closes its socket.
fn fail_all(mut active: Active, error: ClientError) {
    for (_, slot) in active.conn.drain_pending() {
        slot.fail(error.clone());
    }
    let _ = active.stream.shutdown(Shutdown::Both);
}

/// Ends connection `generation` (if it is still the active one) with `error`.
fn die(inner: &Inner, generation: u64, error: ClientError) {
    let mut state = inner.lock();
    if state.active.as_ref().is_some_and(|a| a.generation == generation) {
        let active = state.active.take().expect("checked");
        tracing::debug!(addr = %inner.addr, %error, "client connection lost");
        fail_all(active, error);
    }
    drop(state);
    inner.output_ready.notify_all();
    inner.output_drained.notify_all();
}

fn read_loop(inner: &Inner, generation: u64, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(inner.config.handshake_timeout));
    let mut handshake_done = false;
    let mut buf = BytesMut::new();
    loop {
        let error = match net::read_some(&mut stream, &mut buf, inner.config.buffer_size) {
            Ok(0) => Some(ClientError::lost(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !handshake_done && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Some(ClientError::lost(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no handshake from the server within {:?} (setting: handshake_timeout)",
                        inner.config.handshake_timeout
                    ),
                ))
            }
            Err(e) => Some(ClientError::from_io(e)),
        };
        if let Some(error) = error {
            return die(inner, generation, error);
        }
        let mut state = inner.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
            return;
        };
        active.conn.receive_buffer(&mut buf);
        if let Err(e) = active.conn.process(|response, slot| slot.complete(response.value)) {
            drop(state);
            return die(inner, generation, e.into());
        }
        if !handshake_done && active.conn.is_handshake_done() {
            handshake_done = true;
            let _ = stream.set_read_timeout(None);
        }
    }
}

fn write_loop(inner: &Inner, generation: u64, mut stream: TcpStream) {
    let mut out = BytesMut::new();
    loop {
        let mut state = inner.lock();
        loop {
            let idle_for = state.last_used.elapsed();
            let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
                return;
            };
            if active.conn.has_output() {
                if let Some(delay) = inner.config.batch_delay {
                    drop(state);
                    thread::sleep(delay);
                    state = inner.lock();
                    continue;
                }
                active.conn.take_output(&mut out);
                break;
            }
            let idle_timeout = inner.config.idle_timeout;
            if active.conn.pending_len() == 0 && idle_for >= idle_timeout {
                // Unused for idle_timeout: close; the next call reconnects.
                let active = state.active.take().expect("checked");
                fail_all(active, ClientError::Closed);
                return;
            }
            let wait = idle_timeout.saturating_sub(idle_for).max(Duration::from_millis(10));
            state = inner.output_ready.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(state);
        inner.output_drained.notify_all();
        if let Err(e) = stream.write_all(&out) {
            // Not `die`: responses may still be on their way, and the reader
            // must get them. No new call is queued; the reader ends the
            // connection when its reads end, which a broken socket soon does.
            tracing::debug!(addr = %inner.addr, error = %e, "client write failed");
            let mut state = inner.lock();
            if let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) {
                active.writable = false;
            }
            return;
        }
        out.clear();
    }
}
