//! The blocking client, for every backend whose callers are threads.
//!
//! One TCP connection (reconnected on demand) carries many calls at once,
//! and any number of threads share it. The caller-facing logic is the same
//! whatever moves the bytes, so it lives here once; a backend supplies only a
//! [`Driver`]: what runs the connection's I/O (two threads for
//! `fastwire-std`, a reactor thread for `fastwire-mio`). Drivers talk to the
//! client through a [`Link`].
//!
//! ```text
//!  caller threads (under load)              the driver (I/O)
//!  lock; encode the call; unlock            take the output; write it
//!  wake the driver; wait on the call's slot read; lock; decode responses; complete slots
//! ```
//!
//! Calls queue up in the connection's output buffer while the driver is
//! busy writing, so under load many calls share one system call: batching
//! happens by itself.
//!
//! **Leader/follower.** On a connection used one call at a time, handing
//! each call to the driver and each response back costs two thread
//! wake-ups per round trip. So where the driver allows it
//! ([`Driver::caller_io`]: std and mio), a caller whose call is alone on a
//! quiet connection writes it itself (one non-blocking `send` under the
//! lock), and a waiting caller that finds nobody reading the socket reads
//! it itself (it *leads*), completing other callers' calls on the way,
//! until its own response is in or its deadline passes. Callers arriving
//! meanwhile *follow* (they wait on their slot). When the leader leaves it
//! hands the reading role to a follower, or to the driver if calls are
//! pending with nobody waiting, or to nobody. The driver reads only when
//! handed the role or when nobody reads; with many calls in flight
//! (pipelining) it keeps the role and the writing, as before. A quiet
//! connection nobody reads is peeked at before use, so a close by the
//! server meanwhile is noticed and the call goes out on a new connection.
//!
//! **Pipelining callers.** With many calls in flight, a caller's turn as
//! leader ends when its own response is in while others are still
//! pending. Handing the role to the driver then (a wake-up, and the
//! driver's thread racing the caller's next wait for the socket) costs a
//! context switch per batch. With a driver that allows it
//! ([`Driver::KEEPS_CALLERS_READING`]: std, mio) the role is left
//! *vacant* instead: the next caller to wait on a call not yet done leads
//! (it writes the calls queued meanwhile in one batch, then reads), and
//! calls started while the role is vacant do not wake the driver to write,
//! since that caller will. A connection driven by one pipelining thread
//! then runs as a single thread that writes a batch and reads a batch, the
//! shape of the floor's client. The driver takes a vacancy only once it
//! has lasted [`VACANT_WATCH`] (calls started and then left unwaited, a
//! server's close while nobody waits), and a driver that reads hands the
//! role back to a caller waiting for it after each read.
//!
//! Each call waits on its own pooled slot until its response, its deadline (then it is cancelled and its id freed), or the
//! death of the connection (every pending call then fails at once: a dead
//! server never makes a caller hang). The next call reconnects, after a
//! backoff if the last attempt failed. A connection unused for
//! `idle_timeout` is closed.

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_proto::driver::{ClientExpired, Connection, Reconnect};
use fastwire_proto::{ClientConfig, ClientConn};

use crate::deadline::coarse_instant;
use crate::{
    net, sys, CallSlot, ClientError, ClientStats, Deadline, FollowEnd, Reply, SlotPool, SlotToken, LARGE_VALUE,
};

/// A connection read this recently is not peeked at before a call (see
/// `closed_while_quiet`): a server's close of an idle connection comes
/// after seconds, not milliseconds after its last response.
const RECENTLY_READ: Duration = Duration::from_millis(10);

/// How many socket reads of `buffer_size` (at most 64 KiB) a leading
/// caller makes before it hands what it read to the connection: a server
/// that keeps the socket full (a flood) never makes the read buffer hold
/// more than this plus one partial message, and the leader looks at its
/// own call between rounds.
const READS_PER_ROUND: usize = 4;

/// What runs one connection's I/O.
pub trait Driver: Sized + Send + Sync + 'static {
    /// Kept with the connection: how to wake and stop the driver.
    type Handle: Send;

    /// Starts the I/O of a freshly connected stream (blocking mode, tuned).
    /// Called with the client's lock held: the driver's threads must not
    /// expect the connection to be visible before this returns.
    fn start(link: Link<Self>, stream: TcpStream) -> io::Result<Self::Handle>;

    /// Output is waiting to be written.
    fn wake(handle: &Self::Handle);

    /// The connection is over (closed, failed, idle): stop the I/O.
    fn stop(handle: &Self::Handle);

    /// The connection's socket, if callers may read and write it themselves
    /// (leader/follower, see the module docs); `None` (the default) keeps
    /// every byte on the driver. Called once per connection, after `start`.
    fn caller_io(_handle: &Self::Handle) -> Option<Arc<TcpStream>> {
        None
    }

    /// The reading role was handed to the driver (calls are pending and no
    /// caller reads): read, even if the socket signals nothing new.
    fn read_needed(_handle: &Self::Handle) {}

    /// Whether callers keep the reading role of a pipelined connection
    /// (see "Pipelining callers" in the module docs): a leader that leaves
    /// with calls still pending and no follower leaves the role *vacant*
    /// for the next caller that waits, instead of handing it to the driver,
    /// and the driver takes a vacancy only once it has lasted
    /// [`VACANT_WATCH`] ([`Link::wait_read_turn`] does this for drivers that
    /// block; reactors call [`Link::read_watch`] on a timer of that
    /// period). A driver that says yes also hands the role back to a
    /// waiting caller after each read, and must not be woken by readiness
    /// while callers read. `false` (the default): the driver reads
    /// whenever no caller waits.
    const KEEPS_CALLERS_READING: bool = false;

    /// A caller left the reading role vacant (or queued a call on a vacant
    /// role) while the driver had announced a long sleep
    /// ([`Link::announce_sleep`]): wake it, so that it watches the vacancy
    /// ([`Link::read_watch`]). The default wakes it as for output.
    fn watch_vacancy(handle: &Self::Handle) {
        Self::wake(handle);
    }
}

/// A client for one server address. Cheap to clone: clones share the
/// connection. `Send + Sync`: call it from any number of threads.
pub struct Client<D: Driver> {
    inner: Arc<Inner<D>>,
}

impl<D: Driver> Clone for Client<D> {
    fn clone(&self) -> Self {
        Client { inner: Arc::clone(&self.inner) }
    }
}

impl<D: Driver> std::fmt::Debug for Client<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.inner.addr).field("pending", &self.pending()).finish()
    }
}

struct Inner<D: Driver> {
    addr: SocketAddr,
    config: ClientConfig,
    state: Mutex<State<D>>,
    /// Wakes drivers that block on the client's lock (output is ready, or the connection changed).
    output_ready: Condvar,
    /// Wakes senders waiting for output to drain (fire-and-forget backpressure).
    output_drained: Condvar,
    /// Threads blocked on `output_ready` and on `output_drained`, counted
    /// under the lock. Notifying a condition variable is a futex system call
    /// even when nobody waits; on the hot path (a call queued, a batch
    /// taken) it is skipped when the count is zero.
    output_waiters: AtomicUsize,
    drain_waiters: AtomicUsize,
    /// Wakes a driver thread waiting to be handed the reading role.
    read_role: Condvar,
    /// Wakes threads waiting for the handshake ([`Client::wait_connected`]):
    /// it is in, or the connection ended. Counted, like the others.
    connected: Condvar,
    connect_waiters: AtomicUsize,
    /// Whether the driver holds the reading role of the current connection:
    /// a copy of `Active::reader == Driver`, written under the lock, so
    /// that a driver that reads on finds out without taking the lock.
    driver_reads: AtomicBool,
    role_waiters: AtomicUsize,
    /// The driver looks at the role at least every [`VACANT_WATCH`] (it is
    /// awake, or sleeps no longer), so a vacancy needs no wake-up: set by
    /// drivers that wait for their turn (under the lock) and by reactors
    /// before they sleep ([`Link::announce_sleep`]).
    driver_watching: AtomicBool,
    /// Calls in progress: sent and awaiting a response, or about to be sent.
    in_progress: AtomicUsize,
    driver: PhantomData<D>,
}

struct State<D: Driver> {
    active: Option<Active<D>>,
    generation: u64,
    /// When the next connection may be attempted (the backoff).
    reconnect: Reconnect<Arc<io::Error>>,
    closed: bool,
    /// The leading caller's read buffer: taken by whoever leads, given back
    /// when it leaves, so that it keeps its capacity across calls.
    read_buf: BytesMut,
    /// Why the last connection ended (a refused TLS certificate, a close
    /// by the server), for `wait_connected` to report.
    failure: Option<ClientError>,
    /// The counters over every connection (see [`Client::stats`]).
    stats: ClientStats,
    /// The call slots, under this lock (which every call takes anyway):
    /// a call's slot costs no lock of its own.
    /// Declared after `active`, so that the pending calls' tokens are
    /// dropped before the slots they point at.
    slots: SlotPool,
}

impl<D: Driver> State<D> {
    /// Takes the connection away (it ends), adding its counts to the client's.
    fn end(&mut self) -> Option<Active<D>> {
        let active = self.active.take()?;
        self.stats.connection_ended(active.conn.unknown_responses());
        Some(active)
    }
}

struct Active<D: Driver> {
    conn: ClientConn<SlotToken>,
    generation: u64,
    handle: D::Handle,
    /// False once a write failed: no new call is queued, but responses
    /// already on their way are still read (the reader ends the connection).
    writable: bool,
    /// The socket, when callers may do this connection's I/O themselves.
    io: Option<Arc<TcpStream>>,
    /// Who reads the socket now.
    reader: Reader,
    /// The driver took output it has not finished writing: nobody else
    /// may write until it has (bytes of two writers must not interleave).
    writing: bool,
    /// The driver skipped readiness because a caller was reading: whoever
    /// leads must not leave without making sure it is read.
    missed_read: bool,
    /// Callers waiting for a leading caller to read their responses, in
    /// arrival order. Entries whose call is over are dropped lazily.
    followers: VecDeque<Arc<CallSlot>>,
    /// The last call was alone on the connection (no other call pending
    /// when it was queued): the connection is used one call at a time, as
    /// in a request-response exchange. Only while it is does a caller write
    /// its own call, and a reading driver give the role up when no call is
    /// pending. Pipelining (many calls in flight) is better served by a
    /// driver that reads on, blocked in its read or poll, and writes in big
    /// batches, than by handing the role back and forth with a wake-up and
    /// a system call under the lock each time.
    one_at_a_time: bool,
    /// Counts the times the role was left vacant: a driver takes a vacancy
    /// only if it sees the same one on two looks [`VACANT_WATCH`] apart.
    vacancies: u64,
    /// When responses were last read (the coarse clock, see `deadline`).
    last_read: u64,
}

/// Who reads a connection's socket (leader/follower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// Nobody: no response is expected. The next caller to wait leads.
    Idle,
    /// A caller, for itself and the others.
    Caller,
    /// The driver's thread or reactor: calls are pending and no caller
    /// waits to read them (or the handshake is not in yet).
    Driver,
    /// Calls are pending and the last leading caller left with nobody
    /// following: the next caller to wait leads; the driver takes the role
    /// only if it stays vacant for [`VACANT_WATCH`] (drivers with
    /// [`Driver::KEEPS_CALLERS_READING`] only).
    Vacant,
}

#[doc(hidden)]
/// What a driver's read did (see [`Link::received_by_driver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The server's handshake is in.
    pub handshake_done: bool,
    /// The driver gave up the reading role (no call is pending, or it
    /// handed it to a waiting caller): it must not read again before
    /// [`Link::wait_read_turn`], [`Link::may_read`] or [`Link::read_watch`]
    /// says so.
    pub released: bool,
    /// The role went to a waiting caller ([`Driver::KEEPS_CALLERS_READING`]):
    /// until [`Link::read_watch`] says otherwise, a reactor must not be
    /// woken by the socket's readiness (it is the caller's to serve).
    pub handed_back: bool,
}

/// How a pending call gets its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// It reads the socket itself (and others' responses on the way).
    Lead,
    /// A leading caller reads; it may be handed the role.
    Follow,
    /// Somebody else reads (the driver, or a leading caller it does not
    /// follow): it waits on its slot alone.
    Undecided,
    /// Started alone on a quiet connection that nobody reads: it leads when
    /// it waits, unless someone has started reading meanwhile.
    MayLead,
}

impl<D: Driver> Client<D> {
    /// A client for `addr`. It connects on the first call.
    pub fn new(addr: SocketAddr, config: ClientConfig) -> Self {
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
                    read_buf: BytesMut::new(),
                    failure: None,
                    stats: ClientStats::default(),
                    slots: SlotPool::default(),
                }),
                output_ready: Condvar::new(),
                output_drained: Condvar::new(),
                output_waiters: AtomicUsize::new(0),
                drain_waiters: AtomicUsize::new(0),
                read_role: Condvar::new(),
                connected: Condvar::new(),
                connect_waiters: AtomicUsize::new(0),
                driver_reads: AtomicBool::new(false),
                role_waiters: AtomicUsize::new(0),
                driver_watching: AtomicBool::new(false),
                driver: PhantomData,
                in_progress: AtomicUsize::new(0),
            }),
        }
    }

    /// Resolves `addr`, connects, and waits for the server's handshake, so
    /// that a wrong address or configuration shows up here.
    pub fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Self, ClientError> {
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
        self.inner.ensure_connected(&mut state, self.inner.config.connect_timeout)?;
        // The reader says when the handshake is in (or the connection ends).
        loop {
            match &state.active {
                Some(a) if a.conn.is_handshake_done() => return Ok(()),
                Some(_) => {}
                None => {
                    // The connection died (its error says why and when),
                    // or was never made (the backoff's error).
                    return Err(state.failure.clone().unwrap_or_else(|| {
                        state.reconnect.backing_off(Instant::now()).map_or(ClientError::Closed, |(e, _)| {
                            ClientError::Connect { addr: self.inner.addr, source: e }
                        })
                    }));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout(self.inner.config.handshake_timeout));
            }
            self.inner.connect_waiters.fetch_add(1, Ordering::Relaxed);
            state = self.inner.connected.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            self.inner.connect_waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The client's counters: connections made, unsolicited responses
    /// dropped, the buffers' capacity now and at most.
    pub fn stats(&self) -> ClientStats {
        let state = self.inner.lock();
        state.stats.with_live(state.active.as_ref().map_or(0, |a| a.conn.unknown_responses()))
    }

    /// Calls `name` with `value` and waits for the response, at most
    /// `call_timeout`.
    pub fn call(&self, name: &[u8], value: &[u8]) -> Result<Reply, ClientError> {
        self.call_timeout(name, value, self.inner.config.call_timeout)
    }

    /// Calls with a deadline of its own.
    pub fn call_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<Reply, ClientError> {
        self.begin(name, value, timeout, true)?.wait()
    }

    /// Sends a call without waiting for it: many calls can be in flight from
    /// one thread. [`PendingCall::wait`] gets the response; the deadline
    /// (`call_timeout`) runs from now.
    pub fn start(&self, name: &[u8], value: &[u8]) -> Result<PendingCall<D>, ClientError> {
        self.start_timeout(name, value, self.inner.config.call_timeout)
    }

    /// [`start`](Self::start) with a deadline of its own.
    pub fn start_timeout(&self, name: &[u8], value: &[u8], timeout: Duration) -> Result<PendingCall<D>, ClientError> {
        self.begin(name, value, timeout, false)
    }

    /// Queues a call (written at once by this caller if the connection is
    /// quiet) and decides, under the same lock, how its response will be
    /// read if the caller `waits` right away: by this caller (it leads), by
    /// a leading caller (it follows), or by the driver.
    fn begin(&self, name: &[u8], value: &[u8], timeout: Duration, waits: bool) -> Result<PendingCall<D>, ClientError> {
        let inner = &self.inner;
        // One coarse clock read per call (see `deadline`): a precise one is
        // a visible share of a call's cost on a VM.
        let deadline = Deadline::after(timeout);
        inner.in_progress.fetch_add(1, Ordering::Relaxed);
        // From here the call owns one count of `in_progress`: PendingCall
        // gives it back when waited or dropped; the error paths below do.
        let failed = |e: ClientError| {
            inner.in_progress.fetch_sub(1, Ordering::Relaxed);
            Err(e)
        };
        let mut state = inner.lock();
        if let Err(e) = inner.ensure_connected(&mut state, timeout) {
            return failed(e);
        }
        if inner.closed_while_quiet(&mut state) {
            // The server closed the connection while nobody was reading it
            // (its idle timeout, a restart): use a new one.
            if let Err(e) = inner.ensure_connected(&mut state, timeout) {
                return failed(e);
            }
        }
        let active = state.active.as_mut().expect("connected above");
        if !active.writable {
            return failed(ClientError::lost(io::ErrorKind::BrokenPipe, "the connection is closing"));
        }
        let (slot, token) = state.slots.lend();
        let active = state.active.as_mut().expect("connected above");
        let first = !active.conn.has_output();
        match active.conn.start_call_until(name, value, token, deadline.to_instant()) {
            Ok(id) => {
                let generation = active.generation;
                // Alone now, and the previous call was alone too: the
                // connection is used one call at a time (see `one_at_a_time`).
                let alone = active.conn.pending_len() == 1;
                let quiet = alone && active.one_at_a_time;
                active.one_at_a_time = alone;
                // A vacant role (or one about to be, see `choose_role`):
                // the caller who takes it next writes this call together
                // with the others queued meanwhile.
                let leader_writes = D::KEEPS_CALLERS_READING
                    && inner.config.batch_delay.is_none()
                    && (active.reader == Reader::Vacant
                        || (active.reader == Reader::Idle && !quiet && active.conn.is_handshake_done()));
                if leader_writes {
                    // Once per batch: a driver that announced a long sleep
                    // before this batch's first call is woken by that call
                    // (and then sees the calls in progress); one announcing
                    // it later sees them (or the output) before it sleeps.
                    if first {
                        inner.keep_driver_watching(active);
                    }
                } else if first && !(quiet && inner.write_now(active)) {
                    inner.notify_output(active);
                }
                let role = inner.choose_role(active, &slot, waits, quiet);
                // Only a leader needs the socket now; a caller that leads
                // later gets it then (`decide`, `follow`), saving an atomic
                // increment and decrement per pipelined call.
                let io = if role == Role::Lead { active.io.clone() } else { None };
                drop(state);
                Ok(PendingCall {
                    inner: Arc::clone(inner),
                    slot: Some(slot),
                    id,
                    generation,
                    deadline,
                    timeout,
                    role,
                    io,
                })
            }
            Err(rejected) => {
                drop(state);
                drop((rejected.token, slot));
                failed(rejected.error.into())
            }
        }
    }

    /// Sends a fire-and-forget request (id 0): no response, no deadline. It
    /// is queued for the writer; if 4 MiB of output is already waiting (the
    /// server is not reading), waits for room up to `call_timeout`.
    pub fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let inner = &self.inner;
        // The clock is read only if the send has to wait (for the
        // connection, or for room in the output).
        let mut deadline_at = None;
        let deadline = |d: &mut Option<Instant>| *d.get_or_insert_with(|| Instant::now() + inner.config.call_timeout);
        let mut state = inner.lock();
        loop {
            if state.active.is_none() {
                let within = deadline(&mut deadline_at).saturating_duration_since(Instant::now());
                inner.ensure_connected(&mut state, within)?;
            }
            let active = state.active.as_mut().expect("connected above");
            if !active.writable {
                return Err(ClientError::lost(io::ErrorKind::BrokenPipe, "the connection is closing"));
            }
            if !active.conn.is_output_full() {
                break;
            }
            let until = deadline(&mut deadline_at);
            let now = Instant::now();
            if now >= until {
                return Err(ClientError::Timeout(inner.config.call_timeout));
            }
            inner.drain_waiters.fetch_add(1, Ordering::Relaxed);
            state = inner.output_drained.wait_timeout(state, until - now).unwrap_or_else(|p| p.into_inner()).0;
            inner.drain_waiters.fetch_sub(1, Ordering::Relaxed);
        }
        let active = state.active.as_mut().expect("connected above");
        let first = !active.conn.has_output();
        active.conn.send_fire_and_forget(name, value)?;
        if first {
            inner.notify_output(active);
        }
        Ok(())
    }

    /// Closes the connection; pending and future calls fail with `Closed`.
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        if let Some(active) = state.end() {
            self.inner.fail_all(active, ClientError::Closed);
        }
        drop(state);
        self.inner.output_ready.notify_all();
    }
}

/// A call that was sent and awaits its response (see [`Client::start`]).
/// Dropping it forgets the call: a late response is dropped.
pub struct PendingCall<D: Driver> {
    inner: Arc<Inner<D>>,
    slot: Option<Arc<CallSlot>>,
    id: u32,
    generation: u64,
    deadline: Deadline,
    timeout: Duration,
    role: Role,
    /// The socket, for a caller that leads (or may be promoted to).
    io: Option<Arc<TcpStream>>,
}

impl<D: Driver> std::fmt::Debug for PendingCall<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").field("id", &self.id).finish()
    }
}

impl<D: Driver> PendingCall<D> {
    /// The call's request id on its connection.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the response (or an error) is already in.
    pub fn is_done(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.is_done())
    }

    /// Blocks until the response, the deadline, or the death of the
    /// connection. A caller that finds nobody reading the connection reads
    /// it itself, completing other callers' calls on the way, and hands the
    /// reading on when it leaves (see the module docs).
    pub fn wait(mut self) -> Result<Reply, ClientError> {
        let slot = self.slot.take().expect("present until waited");
        let done = match self.role {
            Role::Lead => {
                let (buf, alone) = lead_share(self.inner.lock());
                self.lead(&slot, buf, alone)
            }
            Role::Follow => self.follow(&slot),
            // A call started earlier and waited on now. While it is
            // pending somebody reads (a caller, or the driver: a started call
            // is handed to it when nobody reads), so it waits for them, on
            // its slot alone: no client lock on this path, which pipelining
            // callers take for every call. Where callers keep the reading
            // role, one whose call is not done yet decides again (it may
            // lead, or follow the reader until handed the role).
            Role::Undecided if D::KEEPS_CALLERS_READING => slot.is_done() || self.decide(&slot),
            Role::Undecided => slot.wait_for(self.deadline),
            Role::MayLead => slot.is_done() || self.decide(&slot),
        };
        // Borrowed, not cloned (an atomic increment and decrement per call).
        let inner = &self.inner;
        let _done = InProgress(inner);
        if !done {
            // Its deadline passed on the clock the connection keeps it by:
            // the connection fails it (and any other call past its own).
            inner.handle_timeout(self.generation, coarse_instant());
            if !slot.is_done() {
                // Not the connection's call any more (it ended, and failed
                // its calls) or not yet due by a clock read apart: give up.
                drop(inner.cancel(self.id, self.generation));
                return Err(ClientError::Timeout(self.timeout));
            }
        }
        CallSlot::finish_call(slot, self.timeout)
    }
}

impl<D: Driver> PendingCall<D> {
    /// A call started alone, waited on now: lead if still nobody reads,
    /// follow a leading caller, or wait for the driver.
    fn decide(&mut self, slot: &Arc<CallSlot>) -> bool {
        let inner = &self.inner;
        let mut state = inner.lock();
        let role = match state.active.as_mut().filter(|a| a.generation == self.generation) {
            Some(active) => {
                let role = inner.choose_role(active, slot, true, false);
                if role != Role::Undecided && self.io.is_none() {
                    // Started as Undecided, so without the socket.
                    self.io = active.io.clone();
                }
                role
            }
            None => Role::Undecided,
        };
        match role {
            Role::Lead => {
                let (buf, alone) = lead_share(state);
                self.lead(slot, buf, alone)
            }
            Role::Follow => {
                drop(state);
                self.follow(slot)
            }
            _ => {
                drop(state);
                slot.wait_for(self.deadline)
            }
        }
    }

    // ANCHOR: lead
    /// Reads the connection for everyone until this call is done, its
    /// deadline passes or the connection dies; then hands the reading on.
    /// Returns whether the call is done.
    fn lead(&mut self, slot: &CallSlot, mut buf: BytesMut, alone: bool) -> bool {
        let inner = &self.inner;
        let io = self.io.clone().expect("a leading call has the socket");
        let chunk = inner.config.buffer_size.clamp(4096, 64 * 1024);
        // A call alone on its connection, just written: its response cannot
        // be in yet, so the first read would only say so (a system call per
        // round trip); wait for readiness first.
        let mut wait_first = alone;
        loop {
            if D::KEEPS_CALLERS_READING {
                // Calls queued while the role was vacant wait for a leader
                // to write them (see `begin`).
                inner.flush_by_leader(self.generation, &io);
            }
            let mut round = Round::Drained;
            if !std::mem::take(&mut wait_first) {
                round = read_round(inner, self.generation, &io, &mut buf, chunk);
            }
            if round == Round::Over || slot.is_done() {
                break; // over: every pending call has failed
            }
            let Some(left) = self.deadline.remaining() else { break };
            // Bytes still waiting (a full round): read on without asking.
            if round == Round::Drained {
                if let Err(e) = sys::wait_readable(&io, left) {
                    inner.die(self.generation, ClientError::from_io(e));
                    break;
                }
            }
        }
        // Readiness the driver skipped while this caller read is served
        // here (a few rounds at most) rather than by waking the driver.
        let mut rounds = 0;
        while !inner.leave(self.generation, &mut buf, rounds < 4) {
            rounds += 1;
            read_round(inner, self.generation, &io, &mut buf, chunk);
        }
        slot.is_done()
    }
    // ANCHOR_END: lead

    /// Waits while a leading caller reads; takes over if handed the role.
    fn follow(&mut self, slot: &CallSlot) -> bool {
        match slot.wait_following(self.deadline) {
            FollowEnd::Done => true,
            FollowEnd::TimedOut => false,
            FollowEnd::Promoted => {
                let state = self.inner.lock();
                let current = state
                    .active
                    .as_ref()
                    .is_some_and(|a| a.generation == self.generation && a.reader == Reader::Caller);
                if !current {
                    // The connection died after the hand-over: the call has failed.
                    drop(state);
                    return slot.wait_for(self.deadline);
                }
                if self.io.is_none() {
                    self.io = state.active.as_ref().and_then(|a| a.io.clone());
                }
                let (buf, alone) = lead_share(state);
                self.lead(slot, buf, alone)
            }
        }
    }
}

/// A caller writes the connection's output itself, under the client's lock:
/// one non-blocking send of what the socket takes now. Returns whether all
/// of it went out; the rest is the driver's, and so is an error (found and
/// reported on its own write).
fn send_what_fits(io: &TcpStream, conn: &mut ClientConn<SlotToken>) -> bool {
    if let Ok(n) = sys::send(io, conn.output()) {
        conn.advance_output(n);
    }
    !conn.has_output()
}

/// A caller about to lead, with the client's lock (taken to decide): the
/// shared read buffer, for as long as it leads, and whether its call is
/// alone on the connection (then nothing can have come in yet).
fn lead_share<D: Driver>(mut state: MutexGuard<'_, State<D>>) -> (BytesMut, bool) {
    let buf = std::mem::take(&mut state.read_buf);
    let alone = state.active.as_ref().is_some_and(|a| a.conn.pending_len() == 1 && !a.conn.has_output());
    (buf, alone)
}

/// What a leading caller's read round found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// The connection is over: every pending call has failed.
    Over,
    /// The socket is drained for now (a short read, or nothing).
    Drained,
    /// The round's reads were all full: more is likely waiting.
    More,
}

/// A leading caller reads what the socket holds now, up to
/// [`READS_PER_ROUND`] reads (until a short read: drained for now), and
/// hands it to the connection. The budget bounds the read buffer whatever
/// the server sends: a socket that never runs dry is read round after
/// round, each decoded (and its bytes let go) before the next.
fn read_round<D: Driver>(inner: &Inner<D>, generation: u64, io: &TcpStream, buf: &mut BytesMut, chunk: usize) -> Round {
    let mut got = false;
    // Some(None): the server closed the connection.
    let mut broken = None;
    let mut round = Round::More;
    for _ in 0..READS_PER_ROUND {
        match sys::recv(io, buf, chunk) {
            Ok(0) => {
                broken = Some(None);
                break;
            }
            Ok(n) => {
                got = true;
                if n < chunk {
                    round = Round::Drained;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                round = Round::Drained;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                broken = Some(Some(ClientError::from_io(e)));
                break;
            }
        }
    }
    if got && inner.receive(generation, buf).is_err() {
        return Round::Over;
    }
    match broken {
        Some(None) => inner.server_closed(generation),
        Some(Some(error)) => inner.die(generation, error),
        None => return round,
    }
    Round::Over
}

impl<D: Driver> Drop for PendingCall<D> {
    fn drop(&mut self) {
        if self.slot.take().is_some() {
            let _done = InProgress(&self.inner);
            drop(self.inner.cancel(self.id, self.generation));
        }
    }
}

/// Gives a call's count of `in_progress` back when dropped.
struct InProgress<'a, D: Driver>(&'a Inner<D>);

impl<D: Driver> Drop for InProgress<'_, D> {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<D: Driver> Inner<D> {
    fn lock(&self) -> MutexGuard<'_, State<D>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self, id: u32, generation: u64) -> Option<SlotToken> {
        match self.lock().active.as_mut() {
            Some(active) if active.generation == generation => active.conn.cancel(id),
            _ => None,
        }
    }

    fn notify_output(&self, active: &Active<D>) {
        if self.output_waiters.load(Ordering::Relaxed) > 0 {
            self.output_ready.notify_all();
        }
        D::wake(&active.handle);
    }

    /// Before a call on a quiet connection that nobody reads: whether the
    /// server has closed it since (a peek finds the end of stream); if so
    /// it is dropped. Without a reader, nobody else would have noticed.
    /// Not on a connection read within [`RECENTLY_READ`]: calls one at a
    /// time, or batches one after the other, would pay a system call each
    /// for a close that servers make after idle seconds.
    fn closed_while_quiet(&self, state: &mut MutexGuard<'_, State<D>>) -> bool {
        let closed = state.active.as_ref().is_some_and(|a| {
            a.reader == Reader::Idle
                && a.conn.pending_len() == 0
                && !a.conn.has_output()
                && sys::coarse_nanos().saturating_sub(a.last_read) >= RECENTLY_READ.as_nanos() as u64
                && a.io.as_ref().is_some_and(|io| sys::peer_closed(io))
        });
        if closed {
            let active = state.end().expect("checked");
            let error = ClientError::closed_by_server(active.conn.handshake_stage());
            state.failure = Some(error.clone());
            self.fail_all(active, error);
        }
        closed
    }

    // ANCHOR: write_now
    /// The caller writes its own call when the connection is quiet (this
    /// call is the only one in flight and no driver is writing): one
    /// non-blocking write under the lock, no wake-up. Returns whether all
    /// output went out; what is left (a full socket buffer) is the driver's.
    fn write_now(&self, active: &mut Active<D>) -> bool {
        let Some(io) = active.io.as_ref() else { return false };
        if active.writing || active.conn.pending_len() != 1 || self.config.batch_delay.is_some() {
            return false;
        }
        send_what_fits(io, &mut active.conn)
    }
    // ANCHOR_END: write_now

    /// Who reads the response of a call queued now: this caller if nobody
    /// reads and it `waits`; a leading caller, whom it follows; or the
    /// driver (a call started without waiting, on a connection nobody
    /// reads, is handed to the driver at once, so that nothing waits unread).
    fn choose_role(&self, active: &mut Active<D>, slot: &Arc<CallSlot>, waits: bool, quiet: bool) -> Role {
        if active.io.is_none() {
            return Role::Undecided;
        }
        match active.reader {
            Reader::Idle if waits => {
                self.set_reader(active, Reader::Caller);
                Role::Lead
            }
            // Started alone on a quiet connection: its caller most likely
            // waits next, and leads then. Left unread until it does (or
            // until another call is queued, which hands the reading to the
            // driver): one response, which the kernel holds meanwhile.
            Reader::Idle if quiet => Role::MayLead,
            // Pipelined calls started on a connection nobody reads: the
            // first of them to be waited on leads (see `Reader::Vacant`).
            Reader::Idle if D::KEEPS_CALLERS_READING && active.conn.is_handshake_done() => {
                self.vacate(active);
                Role::MayLead
            }
            Reader::Idle => {
                self.hand_to_driver(active);
                Role::Undecided
            }
            Reader::Vacant if waits => {
                self.set_reader(active, Reader::Caller);
                Role::Lead
            }
            // Its caller most likely waits next (a pipelining caller), and
            // leads then, unless a caller has started reading meanwhile.
            Reader::Vacant => Role::MayLead,
            Reader::Caller if waits => Self::follow(active, slot),
            // The driver hands the role to a waiting caller after its read.
            Reader::Driver if waits && D::KEEPS_CALLERS_READING && active.conn.is_handshake_done() => {
                Self::follow(active, slot)
            }
            _ => Role::Undecided,
        }
    }

    /// Queues a waiting caller to be handed the reading role.
    fn follow(active: &mut Active<D>, slot: &Arc<CallSlot>) -> Role {
        if active.followers.len() >= 64 {
            active.followers.retain(|f| !f.is_done());
        }
        active.followers.push_back(Arc::clone(slot));
        Role::Follow
    }

    /// A leading caller writes the calls queued while the role was vacant
    /// (see `begin`): one non-blocking write; what the socket does not
    /// take now is the driver's to write.
    fn flush_by_leader(&self, generation: u64, io: &TcpStream) {
        let mut state = self.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else { return };
        if active.writing || !active.conn.has_output() || self.config.batch_delay.is_some() {
            return;
        }
        if !send_what_fits(io, &mut active.conn) {
            self.notify_output(active);
        }
    }

    // ANCHOR: leave
    /// A leading caller leaves: it hands the reading to a follower, or to
    /// the driver while calls are pending (or readiness it skipped is
    /// unread), else to nobody.
    /// Returns `false` (still leading, `buf` kept) when the driver skipped
    /// readiness meanwhile and `may_retry`: the caller reads once more.
    fn leave(&self, generation: u64, buf: &mut BytesMut, may_retry: bool) -> bool {
        let mut guard = self.lock();
        // Disjoint borrows of the connection and the shared read buffer.
        let state = &mut *guard;
        let active = state.active.as_mut().filter(|a| a.generation == generation && a.reader == Reader::Caller);
        if may_retry && active.as_ref().is_some_and(|a| a.missed_read) {
            active.expect("checked").missed_read = false;
            return false;
        }
        state.read_buf = std::mem::take(buf);
        let Some(active) = active else { return true };
        let pending = active.conn.pending_len() > 0;
        // A vacancy is watched by the driver anyway: what it skipped is
        // read by the next leader, or by the driver once the vacancy lasts.
        if std::mem::take(&mut active.missed_read) && !(D::KEEPS_CALLERS_READING && pending) {
            self.hand_to_driver(active);
            return true;
        }
        while let Some(follower) = active.followers.pop_front() {
            if follower.promote() {
                return true; // the role passes on, still a caller's
            }
        }
        if pending && D::KEEPS_CALLERS_READING {
            self.vacate(active);
        } else if pending {
            self.hand_to_driver(active);
        } else {
            self.set_reader(active, Reader::Idle);
        }
        true
    }
    // ANCHOR_END: leave

    /// Leaves the reading role vacant for the next caller that waits (see
    /// [`Driver::KEEPS_CALLERS_READING`]).
    fn vacate(&self, active: &mut Active<D>) {
        self.set_reader(active, Reader::Vacant);
        self.keep_driver_watching(active);
    }

    /// A vacancy was made, or a call queued on one: a driver sleeping
    /// longer than [`VACANT_WATCH`] (it saw the connection quiet when it
    /// last looked) is woken, to watch at the fast pace. The fence pairs
    /// with the one in [`Link::announce_sleep`]: either the driver sees the
    /// calls in progress before it sleeps, or this sees it sleeping long.
    fn keep_driver_watching(&self, active: &Active<D>) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.driver_watching.load(Ordering::Relaxed) {
            if self.role_waiters.load(Ordering::Relaxed) > 0 {
                self.read_role.notify_all();
            }
            D::watch_vacancy(&active.handle);
        }
    }

    /// A driver's look at a vacant role: takes it (the driver reads, and
    /// writes what waits) if it is the vacancy `seen` on the last look.
    fn take_vacancy(&self, active: &mut Active<D>, seen: &mut Option<u64>) -> bool {
        if active.reader != Reader::Vacant {
            *seen = None;
            return false;
        }
        if *seen != Some(active.vacancies) {
            *seen = Some(active.vacancies);
            return false;
        }
        *seen = None;
        self.set_reader(active, Reader::Driver);
        if active.conn.has_output() {
            self.notify_output(active);
        }
        true
    }

    fn set_reader(&self, active: &mut Active<D>, reader: Reader) {
        if reader == Reader::Vacant {
            active.vacancies += 1;
        }
        active.reader = reader;
        self.driver_reads.store(reader == Reader::Driver, Ordering::Release);
    }

    fn hand_to_driver(&self, active: &mut Active<D>) {
        self.set_reader(active, Reader::Driver);
        if self.role_waiters.load(Ordering::Relaxed) > 0 {
            self.read_role.notify_all();
        }
        D::read_needed(&active.handle);
    }

    /// Hands bytes read from the socket to the connection and completes the
    /// calls whose responses are in. `Ok(handshake_done)`, or `Err(())` if
    /// the connection is over.
    fn receive(&self, generation: u64, buf: &mut BytesMut) -> Result<bool, ()> {
        self.receive_as(generation, buf, false).map(|r| r.handshake_done)
    }

    /// [`receive`](Inner::receive); for a driver (`driver`), also gives up
    /// the reading role if no call is pending any more (the driver then
    /// reads no further without taking it again).
    fn receive_as(&self, generation: u64, buf: &mut BytesMut, driver: bool) -> Result<Received, ()> {
        let mut state = self.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == generation) else {
            return Err(());
        };
        active.conn.receive_buffer(buf);
        active.last_read = sys::coarse_nanos();
        // `buf` now holds the connection's previous buffer, to fill next.
        let capacity = active.conn.buffer_capacity() + buf.capacity();
        // Handed over before the responses complete the callers' calls: a
        // caller waits for the oldest pending call, which this read most
        // likely completes; promoted afterwards, it would leave at once.
        let handed_back = driver && self.hand_back(active);
        match active.conn.process(|response, slot| slot.complete_response(response)) {
            Ok(()) => {
                // Reading can make output: with TLS, the handshake's replies
                // and the calls that waited for it.
                if active.conn.has_output() {
                    self.notify_output(active);
                }
                let handshake_done = active.conn.is_handshake_done();
                let released = handed_back || (driver && self.release_if_unneeded(active));
                state.stats.saw_capacity(capacity);
                // A connection counts as made once its handshake is done: one
                // refused at the handshake keeps the backoff growing.
                if handshake_done && state.reconnect.is_failing() {
                    state.reconnect.succeeded();
                }
                if handshake_done && self.connect_waiters.load(Ordering::Relaxed) > 0 {
                    self.connected.notify_all();
                }
                Ok(Received { handshake_done, released, handed_back })
            }
            Err(e) => {
                // Last words, best effort: a TLS alert saying why (an
                // untrusted certificate, say) lets the server log the reason.
                if let Some(io) = active.io.as_ref() {
                    let _ = sys::send(io, active.conn.output());
                }
                self.die_locked(state, generation, |_| e.into());
                Err(())
            }
        }
    }

    /// A reading driver hands the role to a caller waiting for it, if any
    /// (drivers with [`Driver::KEEPS_CALLERS_READING`]): returns whether it did.
    fn hand_back(&self, active: &mut Active<D>) -> bool {
        if !D::KEEPS_CALLERS_READING || active.reader != Reader::Driver || !active.conn.is_handshake_done() {
            return false;
        }
        while let Some(follower) = active.followers.pop_front() {
            if follower.promote() {
                self.set_reader(active, Reader::Caller);
                return true;
            }
        }
        false
    }

    /// The driver reads and no call is pending: nobody needs to read, and
    /// the next caller reads for itself. Returns whether the role was given up.
    fn release_if_unneeded(&self, active: &mut Active<D>) -> bool {
        let unneeded = active.reader == Reader::Driver
            && active.one_at_a_time
            && active.io.is_some()
            && active.conn.pending_len() == 0
            && active.conn.is_handshake_done();
        if unneeded {
            self.set_reader(active, Reader::Idle);
        }
        unneeded
    }

    /// The server closed connection `generation`: ends it, with words for
    /// where its handshakes were.
    fn server_closed(&self, generation: u64) {
        self.die_with(generation, |conn| ClientError::closed_by_server(conn.handshake_stage()));
    }

    /// Until when connection `generation`'s handshakes may take (`None`
    /// once they are done, or the connection is over).
    fn handshake_deadline(&self, generation: u64) -> Option<Instant> {
        let state = self.lock();
        state.active.as_ref().filter(|a| a.generation == generation).and_then(|a| a.conn.handshake_deadline())
    }

    /// Hands connection `generation` the time (see [`Self::look`]). Returns
    /// whether the connection ended.
    fn handle_timeout(&self, generation: u64, now: Instant) -> bool {
        let state = self.lock();
        if state.active.as_ref().is_none_or(|a| a.generation != generation) {
            return false;
        }
        self.look(state, now).is_none()
    }

    /// Hands the current connection the time `now`: calls past their
    /// deadline fail with `Timeout` (their callers say their own timeout);
    /// a handshake that stalled ends the connection (saying which
    /// handshake), and so does an idle one (its calls, none, with
    /// `Closed`). Returns the lock, unless the connection ended.
    fn look<'a>(&self, mut state: MutexGuard<'a, State<D>>, now: Instant) -> Option<MutexGuard<'a, State<D>>> {
        let active = state.active.as_mut()?;
        let generation = active.generation;
        let expired = active.conn.handle_timeout(now, |_, slot| slot.fail(ClientError::Timeout(Duration::ZERO)));
        match expired {
            ClientExpired::Nothing => Some(state),
            ClientExpired::Handshake => {
                let timeout = self.config.handshake_timeout;
                self.die_locked(state, generation, |conn| {
                    ClientError::handshake_timeout(conn.handshake_stage(), timeout)
                });
                None
            }
            ClientExpired::Idle => {
                // Unused for idle_timeout: close; the next call reconnects.
                let active = state.end().expect("checked");
                drop(state);
                self.fail_all(active, ClientError::Closed);
                None
            }
        }
    }

    /// Ends the connection (if it is still `generation`) with `error`:
    /// every pending call fails with it.
    fn die(&self, generation: u64, error: ClientError) {
        self.die_with(generation, |_| error);
    }

    /// [`die`](Inner::die), with the error made from the connection under
    /// the same lock (its handshake stage, say).
    fn die_with(&self, generation: u64, error: impl FnOnce(&ClientConn<SlotToken>) -> ClientError) {
        self.die_locked(self.lock(), generation, error);
    }

    /// [`die_with`](Inner::die_with), under the lock the caller holds: a
    /// connection whose state machine failed is ended before anyone else
    /// takes the lock, so that no call starts on it meanwhile (and is told
    /// the failure without the backoff that goes with it).
    fn die_locked(
        &self,
        mut state: MutexGuard<'_, State<D>>,
        generation: u64,
        error: impl FnOnce(&ClientConn<SlotToken>) -> ClientError,
    ) {
        if state.active.as_ref().is_some_and(|a| a.generation == generation) {
            let active = state.end().expect("checked");
            let error = error(&active.conn);
            if !active.conn.is_handshake_done() {
                // Refused at the handshake (a certificate not trusted, TLS
                // not served): retrying at once would only be refused again.
                state.reconnect.failed(Instant::now(), Arc::new(io::Error::other(error.to_string())));
            }
            state.failure = Some(error.clone());
            drop(state);
            tracing::debug!(addr = %self.addr, %error, "client connection lost");
            self.fail_all(active, error);
        }
    }

    /// Makes sure there is a live connection, connecting if allowed.
    fn ensure_connected(
        self: &Arc<Self>,
        state: &mut MutexGuard<'_, State<D>>,
        within: Duration,
    ) -> Result<(), ClientError> {
        if state.closed {
            return Err(ClientError::Closed);
        }
        if state.active.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        let timeout = match state.reconnect.attempt(now, within) {
            Ok(timeout) => timeout,
            Err((last_error, retry_in)) => return Err(ClientError::Backoff { addr: self.addr, last_error, retry_in }),
        };
        let failed = |state: &mut MutexGuard<'_, State<D>>, e: io::Error| {
            let e = Arc::new(e);
            state.reconnect.failed(now, Arc::clone(&e));
            Err(ClientError::Connect { addr: self.addr, source: e })
        };
        let stream = match net::connect(self.addr, timeout) {
            Ok(stream) => stream,
            Err(e) => return failed(state, e),
        };
        state.generation += 1;
        let generation = state.generation;
        let handle = match D::start(Link { inner: Arc::clone(self), generation }, stream) {
            Ok(handle) => handle,
            Err(e) => return failed(state, e),
        };
        let io = if sys::CALLER_IO { D::caller_io(&handle) } else { None };
        let mut conn = ClientConn::new(&self.config).share_values_from(LARGE_VALUE);
        conn.start_clock(Instant::now());
        let active = state.active.insert(Active {
            conn,
            generation,
            handle,
            writable: true,
            io,
            reader: Reader::Idle,
            writing: false,
            missed_read: false,
            followers: VecDeque::new(),
            one_at_a_time: true,
            vacancies: 0,
            last_read: 0,
        });
        // The driver reads the server's handshake.
        self.set_reader(active, Reader::Driver);
        state.failure = None;
        state.stats.connections += 1;
        // The backoff is reset when the handshake is done (see `receive_as`).
        Ok(())
    }

    /// Fails every pending call of a connection and stops its driver.
    fn fail_all(&self, mut active: Active<D>, error: ClientError) {
        for (_, slot) in active.conn.drain_pending() {
            slot.fail(error.clone());
        }
        D::stop(&active.handle);
        self.output_ready.notify_all();
        self.output_drained.notify_all();
        self.read_role.notify_all();
        self.connected.notify_all();
    }
}

#[doc(hidden)]
/// A driver's view of its connection.
pub struct Link<D: Driver> {
    inner: Arc<Inner<D>>,
    generation: u64,
}

#[doc(hidden)]
/// How long a connection nobody reads stays unwatched by its driver (see
/// [`Link::wait_read_turn`]): a server's close is noticed within this.
pub const QUIET_WATCH: Duration = Duration::from_millis(100);

#[doc(hidden)]
/// How long a vacant reading role waits for a caller before the driver
/// takes it (see [`Driver::KEEPS_CALLERS_READING`]): the longest a response
/// nobody waits for stays unread, or a call started while the role was
/// vacant stays unwritten, when no caller comes to wait. Long against a
/// pipelining caller's gaps between waits (microseconds), short against
/// any deadline a caller would set.
pub const VACANT_WATCH: Duration = Duration::from_millis(1);

#[doc(hidden)]
/// What a reactor that stopped watching its socket while callers read
/// should do now (see [`Link::read_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadWatch {
    /// A caller reads, or will soon (the role is vacant): stay off the
    /// socket, and look again within [`VACANT_WATCH`].
    Callers,
    /// Nobody reads (a quiet connection): watch the socket again, without
    /// reading it until it has something (then [`Link::may_read`]).
    Quiet,
    /// The role is the driver's (it was handed it, or took a vacancy that
    /// lasted): watch the socket again, and read it.
    Driver,
    /// The connection is no longer this one: stop.
    Gone,
}

#[doc(hidden)]
/// For drivers that watch a quiet connection themselves (see
/// [`QUIET_WATCH`]): whether its socket has bytes waiting or has ended,
/// without consuming anything and without blocking (a peek).
pub fn socket_has_news(socket: &TcpStream) -> bool {
    sys::has_news(socket)
}

#[doc(hidden)]
/// Whose turn it is to read (see [`Link::wait_read_turn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTurn {
    /// The driver holds the reading role: read.
    Driver,
    /// Nobody reads (a quiet connection): wait for bytes or the end of the
    /// stream without consuming them, then ask [`Link::may_read`].
    Nobody,
    /// The connection is no longer this one: stop.
    Gone,
}

#[doc(hidden)]
/// What [`Link::take_output`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Output was moved into the buffer: write it.
    Taken,
    /// Nothing to write; take output again within this long, when the
    /// connection next needs the time (a call's deadline, the idle close).
    Empty(Duration),
    /// The connection is over: stop.
    Gone,
}

impl<D: Driver> Link<D> {
    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Hands over bytes read from the socket and completes the calls whose
    /// responses are complete. `Ok(handshake_done)`, or `Err(())` if the
    /// connection is over (it was replaced, closed, or the server broke the
    /// protocol, in which case every pending call was failed).
    #[allow(clippy::result_unit_err)]
    pub fn received(&self, buf: &mut BytesMut) -> Result<bool, ()> {
        self.inner.receive(self.generation, buf)
    }

    /// [`received`](Link::received) for drivers that take part in
    /// leader/follower (those whose `caller_io` gives callers the socket):
    /// in the same lock, the driver gives up the reading role if no call is
    /// pending any more, so that the next caller reads for itself.
    #[allow(clippy::result_unit_err)]
    pub fn received_by_driver(&self, buf: &mut BytesMut) -> Result<Received, ()> {
        self.inner.receive_as(self.generation, buf, true)
    }

    /// For drivers that block in `read` (their own thread): waits while a
    /// caller reads, and says whose turn it is: the driver's (it holds the
    /// reading role: read), nobody's (the connection is quiet: wait for
    /// bytes or the server's end of stream *without consuming them*, a
    /// blocking peek, then ask [`Link::may_read`]), or the connection is
    /// gone. Without caller I/O it is always the driver's.
    ///
    /// A quiet connection must still be watched: a server that closes it
    /// (idle timeout, graceful shutdown) waits for the client to close its
    /// side too (a lingering close), so a client that noticed nothing would
    /// hold the server's shutdown up until its linger ends.
    pub fn wait_read_turn(&self) -> ReadTurn {
        if self.inner.driver_reads.load(Ordering::Acquire) {
            // Reading on (under load, every time): no lock. Should this be a
            // connection that has since ended, its read fails and it stops.
            return ReadTurn::Driver;
        }
        let mut state = self.inner.lock();
        // Nobody's turn only once the connection has been seen so after a
        // wait of `QUIET_WATCH`: a connection in use goes quiet between
        // calls for moments and is read by its callers or handed back at
        // once; watching it each time would cost a system call and a
        // thread wake-up per call (and per round trip, one at a time).
        // The wait is not woken when the
        // connection goes quiet, only when the role comes to the driver.
        // While calls are pending the driver looks every `VACANT_WATCH`,
        // and takes a vacancy it sees twice (see `KEEPS_CALLERS_READING`).
        let mut seen = None;
        loop {
            let watch = match state.active.as_mut().filter(|a| a.generation == self.generation) {
                None => return ReadTurn::Gone,
                Some(a) if a.reader == Reader::Driver || a.io.is_none() => return ReadTurn::Driver,
                Some(a) if D::KEEPS_CALLERS_READING => {
                    if self.inner.take_vacancy(a, &mut seen) {
                        return ReadTurn::Driver;
                    }
                    // Pipelined calls (see `watch_needed`), or a vacancy.
                    if a.conn.pending_len() > 1 || a.reader == Reader::Vacant {
                        VACANT_WATCH
                    } else {
                        QUIET_WATCH
                    }
                }
                Some(_) => QUIET_WATCH,
            };
            self.inner.driver_watching.store(watch == VACANT_WATCH, Ordering::Relaxed);
            self.inner.role_waiters.fetch_add(1, Ordering::Relaxed);
            let (next, waited) = self.inner.read_role.wait_timeout(state, watch).unwrap_or_else(|p| p.into_inner());
            self.inner.role_waiters.fetch_sub(1, Ordering::Relaxed);
            state = next;
            if waited.timed_out()
                && watch == QUIET_WATCH
                && state.active.as_ref().is_some_and(|a| a.generation == self.generation && a.reader == Reader::Idle)
            {
                return ReadTurn::Nobody;
            }
        }
    }

    /// For reactors of drivers with [`Driver::KEEPS_CALLERS_READING`]:
    /// whether to look at the role ([`Link::read_watch`]) every
    /// [`VACANT_WATCH`]: calls are in progress (more than one: pipelined
    /// calls, which leave the role vacant between their callers' waits)
    /// and the driver does not hold the reading role. A single call in
    /// progress, one at a time, needs no watch: should it leave the role
    /// vacant, its caller wakes a driver that sleeps long (see
    /// [`Link::announce_sleep`]). Two atomic loads.
    pub fn watch_needed(&self) -> bool {
        !self.inner.driver_reads.load(Ordering::Acquire) && self.inner.in_progress.load(Ordering::Relaxed) > 1
    }

    /// For reactors of drivers with [`Driver::KEEPS_CALLERS_READING`], just
    /// before they sleep, saying whether the sleep is `long` (over
    /// [`VACANT_WATCH`]): returns whether to sleep at most `VACANT_WATCH`
    /// instead ([`Link::watch_needed`]). A caller who leaves the role
    /// vacant, or queues a call on a vacant role, afterwards wakes a
    /// reactor that announced a long sleep ([`Driver::wake`]).
    pub fn announce_sleep(&self, long: bool) -> bool {
        self.inner.driver_watching.store(!long, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        long && self.watch_needed()
    }

    /// For reactors of drivers with [`Driver::KEEPS_CALLERS_READING`]:
    /// call it at least every [`VACANT_WATCH`] while off the socket (on
    /// [`Link::may_read`] saying no, or [`Received::handed_back`]) or while
    /// [`Link::watch_needed`]. `seen` is the reactor's memory between looks
    /// (start with `None`): a vacancy seen on two looks is taken (the
    /// driver reads, and writes what waits).
    pub fn read_watch(&self, seen: &mut Option<u64>) -> ReadWatch {
        let mut state = self.inner.lock();
        match state.active.as_mut().filter(|a| a.generation == self.generation) {
            None => ReadWatch::Gone,
            Some(a) if a.reader == Reader::Driver || a.io.is_none() => ReadWatch::Driver,
            Some(a) if a.reader == Reader::Idle => ReadWatch::Quiet,
            Some(a) => {
                if self.inner.take_vacancy(a, seen) {
                    ReadWatch::Driver
                } else {
                    ReadWatch::Callers
                }
            }
        }
    }

    /// For drivers that await their reads (an executor's task): whether the
    /// driver holds the reading role now (`Some(true)`; always, without
    /// caller I/O), or must wait for [`Driver::read_needed`] (`Some(false)`);
    /// `None` once the connection is no longer this one.
    pub fn try_read_role(&self) -> Option<bool> {
        if self.inner.driver_reads.load(Ordering::Acquire) {
            return Some(true);
        }
        let state = self.inner.lock();
        state
            .active
            .as_ref()
            .filter(|a| a.generation == self.generation)
            .map(|a| a.reader == Reader::Driver || a.io.is_none())
    }

    /// For drivers woken by readiness (a reactor): whether to read now. Yes
    /// if the driver reads or nobody does (it takes the role); no while a
    /// caller reads, which is then told to make sure the readiness is
    /// served before it leaves. Call [`Link::reading_done`] after reading.
    pub fn may_read(&self) -> bool {
        if self.inner.driver_reads.load(Ordering::Acquire) {
            return true;
        }
        let mut state = self.inner.lock();
        match state.active.as_mut().filter(|a| a.generation == self.generation) {
            Some(a) if a.reader == Reader::Caller => {
                a.missed_read = true;
                false
            }
            // The next caller to wait reads it, or the driver once the
            // vacancy lasts (`read_watch`).
            Some(a) if a.reader == Reader::Vacant => false,
            Some(a) => {
                if a.io.is_some() {
                    self.inner.set_reader(a, Reader::Driver);
                }
                true
            }
            // Gone: the read will find out and stop the driver.
            None => true,
        }
    }

    /// The driver has stopped reading (drained the socket, or done one
    /// blocking read): it gives up the reading role if no call is pending,
    /// so that the next caller reads for itself.
    pub fn reading_done(&self) {
        let mut state = self.inner.lock();
        if let Some(a) = state.active.as_mut().filter(|a| a.generation == self.generation) {
            self.inner.release_if_unneeded(a);
        }
    }

    /// Moves the output waiting to be written into `out` (swapping buffers).
    /// With none, hands the connection the time: calls past their deadline
    /// fail, and an idle connection or a stalled handshake ends it.
    pub fn take_output(&self, out: &mut BytesMut) -> Output {
        let mut state = self.inner.lock();
        let Some(active) = state.active.as_mut().filter(|a| a.generation == self.generation) else {
            return Output::Gone;
        };
        if active.conn.has_output() {
            active.conn.take_output(out);
            active.writing = true;
            drop(state);
            if self.inner.drain_waiters.load(Ordering::Relaxed) > 0 {
                self.inner.output_drained.notify_all();
            }
            return Output::Taken;
        }
        active.writing = false;
        let now = coarse_instant();
        let Some(state) = self.inner.look(state, now) else { return Output::Gone };
        // Nothing to write: wait for output, or until the connection next
        // needs the time.
        let next = state.active.as_ref().and_then(|a| a.conn.poll_timeout());
        Output::Empty(next.map_or(self.inner.config.idle_timeout, |at| at.saturating_duration_since(now)))
    }

    /// Whether output is waiting to be taken. A driver about to sleep checks
    /// this after announcing that it sleeps, so that a caller who queued
    /// output just before (and saw no sleeper to wake) is not missed.
    pub fn has_output(&self) -> bool {
        let state = self.inner.lock();
        state.active.as_ref().filter(|a| a.generation == self.generation).is_some_and(|a| a.conn.has_output())
    }

    /// For drivers that block: waits until output may be ready, at most
    /// `timeout`; returns whether the connection is still this one.
    pub fn wait_for_output(&self, timeout: Duration) -> bool {
        let state = self.inner.lock();
        let current = |s: &State<D>| s.active.as_ref().is_some_and(|a| a.generation == self.generation);
        if !current(&state) || state.active.as_ref().is_some_and(|a| a.conn.has_output()) {
            return current(&state);
        }
        self.inner.output_waiters.fetch_add(1, Ordering::Relaxed);
        let state = self.inner.output_ready.wait_timeout(state, timeout).unwrap_or_else(|p| p.into_inner()).0;
        self.inner.output_waiters.fetch_sub(1, Ordering::Relaxed);
        current(&state)
    }

    /// The driver read the end of the stream: the server closed the
    /// connection. Every pending call fails, with words for where its
    /// handshakes were (the same on every backend).
    pub fn server_closed(&self) {
        self.inner.server_closed(self.generation)
    }

    /// Until when the server's handshakes (fastrpc's, then TLS's) may take:
    /// the connection's deadline, `None` once they are done. A driver waits
    /// for the server at most until then, and then hands the connection
    /// the time ([`handle_timeout`](Self::handle_timeout)).
    pub fn handshake_deadline(&self) -> Option<Instant> {
        self.inner.handshake_deadline(self.generation)
    }

    /// Hands the connection the time `now` (after waiting for the server
    /// until [`handshake_deadline`](Self::handshake_deadline)): calls past
    /// their deadline fail; if the handshakes missed theirs (or the
    /// connection went idle), the connection ends, every pending call
    /// fails saying which handshake, and this returns true (the driver stops).
    pub fn handle_timeout(&self, now: Instant) -> bool {
        self.inner.handle_timeout(self.generation, now)
    }

    /// A write failed. Not the end of the connection yet: responses may still
    /// be on their way and the reader must get them; no new call is queued,
    /// and the reader ends the connection when its reads end.
    pub fn write_failed(&self, error: &io::Error) {
        tracing::debug!(addr = %self.inner.addr, %error, "client write failed");
        if let Some(active) = self.inner.lock().active.as_mut().filter(|a| a.generation == self.generation) {
            active.writable = false;
        }
    }

    /// Ends the connection (if it is still this one) with `error`: every
    /// pending call fails with it.
    pub fn die(&self, error: ClientError) {
        self.inner.die(self.generation, error)
    }
}

impl<D: Driver> crate::PoolClient for Client<D> {
    fn create(addr: SocketAddr, config: ClientConfig) -> Self {
        Client::new(addr, config)
    }

    fn pending(&self) -> usize {
        Client::pending(self)
    }

    fn close(&self) {
        Client::close(self)
    }
}
