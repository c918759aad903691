//! The server: one completion loop per core, each with its own ring and
//! its own `SO_REUSEPORT` listener.
//!
//! A loop's turn: submit what the previous turn queued and wait for at
//! least one completion (one `io_uring_enter`, bounded by the earliest
//! connection deadline);
//! handle every completion (a new connection, data in a provided buffer, a
//! finished send, a wake-up from another thread); drive the connections
//! that had news, which queues their next operations; repeat. There is no
//! "would block" anywhere: an operation that cannot finish now simply
//! completes later.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fastwire_common::net::Listeners;
use fastwire_common::{
    net, take_due, Batching, Blocking, CloseReason, Cut, Deadlines, LoopsRunning, ReadyKeys, ServerCounters, Serving,
    ShutdownReport, WokenKeys,
};
use fastwire_proto::driver::Wake;
use fastwire_proto::{Handler, ServerConfig};
use io_uring::{opcode, types, IoUring};
use slab::Slab;

use crate::connection::{Conn, Ctx, Step};
use crate::ring::{self, Accept, BufRing, Completion, EventFd, Op, Options};

/// The provided-buffer group every server loop uses (one per ring).
const BUFFER_GROUP: u16 = 0;

/// How long a loop that is stopping waits for the kernel to return the
/// operations of the connections it cut off.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Bound listeners, not yet serving.
#[derive(Debug)]
pub struct Server {
    listeners: Listeners,
    config: ServerConfig,
    options: Options,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`Options`]: one loop per available core.
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        Self::bind_with(addr, config, Options::default())
    }

    /// Binds `addr` with loops and rings set up as `options` say.
    pub fn bind_with(addr: impl ToSocketAddrs, config: ServerConfig, options: Options) -> io::Result<Server> {
        crate::probe()?;
        Ok(Server { listeners: Listeners::bind(addr, options.loops, options.accept)?, config, options })
    }

    /// A server on a listener the application bound itself (options it set
    /// on the socket are kept), with the default [`Options`].
    pub fn from_listener(listener: TcpListener, config: ServerConfig) -> io::Result<Server> {
        Self::from_listener_with(listener, config, Options::default())
    }

    /// A server with `options.loops` loops on a listener the application
    /// bound itself: the first loop keeps a multishot accept on it and
    /// hands connections to the loops in turn. One listener cannot be a
    /// listener per loop: [`Accept::ReusePort`] is refused (`InvalidInput`);
    /// bind with [`bind_with`](Server::bind_with) for it.
    pub fn from_listener_with(listener: TcpListener, config: ServerConfig, options: Options) -> io::Result<Server> {
        crate::probe()?;
        Ok(Server { listeners: Listeners::adopt(listener, options.loops, options.accept)?, config, options })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners.local_addr()
    }

    /// Starts the loops, serving `handler` inline on them (a handler that
    /// waits must defer: see [`fastwire_proto::deferred`]).
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr()?;
        let shared = Shared::new(self.config);
        let handler = Arc::new(handler);
        let mut loops = Vec::new();
        let running = Arc::new(LoopsRunning::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        // Every loop's wake-up (and inbox), so that a round-robin acceptor can reach them.
        let mut wakes = Vec::new();
        for _ in 0..self.listeners.loops {
            let eventfd = Arc::new(EventFd::new()?);
            wakes.push(Arc::new(LoopWake { keys: WokenKeys::default(), inbox: Mutex::new(Vec::new()), eventfd }));
        }
        let mut listeners = self.listeners.sockets.into_iter();
        for (i, woken) in wakes.iter().cloned().enumerate() {
            let listener = listeners.next();
            let eventfd = Arc::clone(&woken.eventfd);
            let round_robin = listener.is_some() && self.options.accept == Accept::RoundRobin;
            let peers = if round_robin { wakes.clone() } else { Vec::new() };
            let (shared, handler, options, ready) =
                (Arc::clone(&shared), Arc::clone(&handler), self.options, ready_tx.clone());
            let entered = running.enter();
            let thread = thread::Builder::new().name(format!("fastwire-uring-loop{i}")).spawn(move || {
                let _running = entered;
                if options.pin {
                    if let Err(e) = ring::pin_to(i) {
                        tracing::warn!(error = %e, "cannot pin the loop to a core");
                    }
                }
                // The ring is made on the thread that uses it: with
                // single-issuer rings, only the creating thread may submit.
                match EventLoop::new(listener, woken, peers, i, shared, handler, &options) {
                    Ok(event_loop) => {
                        let _ = ready.send(Ok(()));
                        event_loop.run()
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        Cut::default()
                    }
                }
            })?;
            loops.push((eventfd, thread));
        }
        drop(ready_tx);
        let mut server = Running { shared, loops, running };
        for _ in 0..server.loops.len() {
            if let Ok(Err(e)) | Err(e) = ready_rx.recv().map_err(io::Error::other) {
                server.stop(Duration::ZERO);
                return Err(io::Error::new(e.kind(), format!("an io_uring loop could not start: {e}")));
            }
        }
        tracing::info!(%local_addr, backend = "uring", loops = server.loops.len(), "serving");
        Ok(ServerHandle::new(local_addr, server))
    }

    /// Starts the loops, running `handler` on a pool of
    /// `config.blocking_threads` worker threads instead of the loops, so
    /// that it may block without stalling a loop (see [`fastwire_common::Blocking`]).
    pub fn serve_blocking<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let threads = self.config.blocking_threads;
        self.serve(Blocking::new(handler, threads)?)
    }
}

/// How deferred responses reach a loop from other threads: the keys of the
/// connections they are for, and the loop's `eventfd`, written only when
/// the list was empty, so a burst of answers costs one wake-up.
struct LoopWake {
    keys: WokenKeys,
    /// With [`Accept::RoundRobin`]: new connections handed to this loop.
    inbox: Mutex<Vec<TcpStream>>,
    eventfd: Arc<EventFd>,
}

impl LoopWake {
    /// Hands a new connection (already counted as open) to this loop.
    fn hand_over(&self, stream: TcpStream) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.push(stream);
        if inbox.len() == 1 {
            drop(inbox);
            self.eventfd.wake();
        }
    }
}

impl Wake for LoopWake {
    fn wake(&self, key: usize) {
        if self.keys.push(key) {
            self.eventfd.wake();
        }
    }
}

/// What every connection and loop of the server shares.
type Shared = fastwire_common::LoopShared;

/// The listener and its multishot accept.
struct Acceptor {
    listener: TcpListener,
    armed: bool,
    /// After running out of descriptors, when to accept again.
    paused_until: Option<Instant>,
}

struct EventLoop<H> {
    // Declared first, so dropped first: the ring ends before the buffers
    // below are freed. That alone is not enough (the kernel cancels a
    // closed ring's requests later): the loop waits for its requests in
    // flight before it ends (`cancel_wake`, `cut_all`).
    ring: IoUring,
    bufs: BufRing,
    acceptor: Option<Acceptor>,
    woken: Arc<LoopWake>,
    /// With [`Accept::RoundRobin`], on the accepting loop: every loop's
    /// wake-up, to hand connections to (this loop's own among them).
    peers: Vec<Arc<LoopWake>>,
    /// This loop's index among them, and where the round robin stands.
    index: usize,
    next_peer: usize,
    /// Where the `eventfd` read lands (the kernel writes it: boxed, so it never moves).
    wake_buf: Box<u64>,
    wake_armed: bool,
    conns: Slab<Conn>,
    /// Size of the registered file table (0: registered files are off).
    fixed_slots: usize,
    /// Connections to drive: with news.
    keys: ReadyKeys,
    completions: Vec<Completion>,
    /// Every connection's next deadline, earliest first.
    deadlines: Deadlines,
    /// The entries due this turn (kept for its allocation).
    due: Vec<usize>,
    shared: Arc<Shared>,
    handler: Arc<H>,
}

impl<H: Handler + 'static> EventLoop<H> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        listener: Option<TcpListener>,
        woken: Arc<LoopWake>,
        peers: Vec<Arc<LoopWake>>,
        index: usize,
        shared: Arc<Shared>,
        handler: Arc<H>,
        options: &Options,
    ) -> io::Result<Self> {
        let ring = ring::build(options)?;
        let bufs = BufRing::new(&ring, options.buffers, options.buffer_size, BUFFER_GROUP)?;
        let fixed_slots = if options.fixed_files { shared.config.max_connections.clamp(64, 65_536) } else { 0 };
        if fixed_slots > 0 {
            ring.submitter().register_files_sparse(fixed_slots as u32)?;
        }
        Ok(EventLoop {
            ring,
            bufs,
            acceptor: listener.map(|listener| Acceptor { listener, armed: false, paused_until: None }),
            woken,
            peers,
            index,
            next_peer: 0,
            wake_buf: Box::new(0),
            wake_armed: false,
            conns: Slab::new(),
            fixed_slots,
            keys: ReadyKeys::default(),
            completions: Vec::with_capacity(512),
            deadlines: Deadlines::default(),
            due: Vec::new(),
            shared,
            handler,
        })
    }

    fn run(mut self) -> Cut {
        let mut closing_started = false;
        loop {
            if let Err(e) = self.arm() {
                tracing::error!(error = %e, "io_uring submission failed; the loop stops");
                return self.cut_all();
            }
            // Wait until the earliest deadline or a paused accept's retry:
            // with neither, until a completion (a shutdown's wake-up too).
            let now = Instant::now();
            let paused = self.acceptor.as_ref().and_then(|a| a.paused_until);
            let wake_at = [self.deadlines.next(), paused].into_iter().flatten().min();
            let mut timeout = wake_at.map(|at| at.saturating_duration_since(now));
            if !self.keys.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            // ANCHOR: uring_turn
            if let Err(e) = ring::submit_and_wait(&self.ring, timeout) {
                tracing::error!(error = %e, "io_uring_enter failed; the loop stops");
                return self.cut_all();
            }
            let now = Instant::now();
            let mut completions = std::mem::take(&mut self.completions);
            ring::reap(&mut self.ring, &mut completions);
            for c in &completions {
                self.complete(c, now);
            }
            self.completions = completions;
            // Drive every connection with news or unfinished work, each
            // once; driving may mark connections for the next turn.
            let driving = self.keys.start_turn();
            for &key in &driving {
                self.drive(key, now);
            }
            self.keys.end_turn(driving);
            // ANCHOR_END: uring_turn
            self.expire(now);
            if self.shared.forced.load(Ordering::Acquire) {
                return self.cut_all();
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                if !closing_started {
                    closing_started = true;
                    // Stop accepting; close every connection gracefully.
                    self.stop_accepting();
                    for (key, conn) in self.conns.iter_mut() {
                        conn.begin_close(CloseReason::Shutdown);
                        self.keys.push(key);
                    }
                }
                if self.conns.is_empty() && self.acceptor.is_none() {
                    self.drop_inbox();
                    self.cancel_wake();
                    return Cut::default();
                }
            }
        }
    }

    /// Keeps the loop's standing requests in flight: the `eventfd` read and
    /// the listener's multishot accept.
    fn arm(&mut self) -> io::Result<()> {
        if !self.wake_armed {
            let read =
                opcode::Read::new(types::Fd(self.woken.eventfd.raw()), (&mut *self.wake_buf as *mut u64).cast(), 8)
                    .build()
                    .user_data(Op::Wake.tag(0));
            // SAFETY: `wake_buf` is boxed and outlives the ring's use of it
            // (`cancel_wake` waits for the read, or leaks it).
            unsafe { ring::push(&mut self.ring, &read) }?;
            self.wake_armed = true;
        }
        let stopping = self.shared.stopping.load(Ordering::Acquire);
        if let Some(acceptor) = &mut self.acceptor {
            let paused = acceptor.paused_until.is_some_and(|at| Instant::now() < at);
            if !acceptor.armed && !paused && !stopping {
                acceptor.paused_until = None;
                let accept = opcode::AcceptMulti::new(types::Fd(acceptor.listener.as_raw_fd()))
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(Op::Accept.tag(0));
                // SAFETY: names only the listener, which stays open while
                // the accept is armed (it is dropped once it has ended).
                unsafe { ring::push(&mut self.ring, &accept) }?;
                acceptor.armed = true;
            }
        }
        Ok(())
    }

    /// Cancels the multishot accept; the listener is closed once it has ended.
    fn stop_accepting(&mut self) {
        match &self.acceptor {
            Some(acceptor) if acceptor.armed => {
                let cancel = opcode::AsyncCancel::new(Op::Accept.tag(0)).build().user_data(Op::Cancel.tag(0));
                // SAFETY: a cancellation names no buffer.
                let _ = unsafe { ring::push(&mut self.ring, &cancel) };
            }
            _ => self.acceptor = None,
        }
    }

    fn complete(&mut self, c: &Completion, now: Instant) {
        match c.op {
            Op::Accept => self.accepted(c, now),
            Op::Wake => {
                self.wake_armed = false;
                self.adopt_woken();
                self.adopt_inbox(now);
            }
            Op::Recv | Op::Send => {
                let Some(conn) = self.conns.get_mut(c.key) else {
                    // Not possible (a connection is freed only once its
                    // operations are done), but a buffer must never leak.
                    if let Some(id) = c.buffer() {
                        self.bufs.recycle(id);
                    }
                    return;
                };
                match conn.complete(c, &mut self.bufs) {
                    Some(Step::Keep) => self.keys.push(c.key),
                    Some(Step::Remove(reason)) => self.remove(c.key, reason),
                    None => self.arm_deadline(c.key),
                }
                if self.conns.get(c.key).is_some_and(Conn::is_done) {
                    self.free(c.key);
                }
            }
            Op::Cancel | Op::Poll => {}
        }
    }

    fn accepted(&mut self, c: &Completion, now: Instant) {
        let stopping = self.shared.stopping.load(Ordering::Acquire);
        let Some(acceptor) = &mut self.acceptor else {
            if c.result >= 0 {
                // SAFETY: a descriptor the kernel just created for us.
                drop(unsafe { TcpStream::from_raw_fd(c.result) });
            }
            return;
        };
        if !c.more() {
            acceptor.armed = false;
            if stopping {
                self.acceptor = None; // the listener closes
            }
        }
        if c.result < 0 {
            let e = ring::error(c.result);
            if net::is_accept_resource_error(&e) {
                // Out of descriptors: accept again a little later.
                tracing::warn!(error = %e, "accept: out of resources");
                if let Some(acceptor) = &mut self.acceptor {
                    acceptor.paused_until = Some(now + Duration::from_millis(10));
                }
            }
            return;
        }
        // SAFETY: a descriptor the kernel just created for us, owned from here.
        let stream = unsafe { TcpStream::from_raw_fd(c.result) };
        if stopping || !self.shared.counters.try_open(self.shared.config.max_connections) {
            return; // dropped: closed at once
        }
        if !self.peers.is_empty() {
            // Round robin: every n-th connection stays, the others go to
            // the other loops in turn.
            let to = self.next_peer % self.peers.len();
            self.next_peer = self.next_peer.wrapping_add(1);
            if to != self.index {
                return self.peers[to].hand_over(stream);
            }
        }
        self.adopt(stream, now);
    }

    /// Adopts the connections the accepting loop handed over.
    fn adopt_inbox(&mut self, now: Instant) {
        let streams = std::mem::take(&mut *self.woken.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for stream in streams {
            if self.shared.stopping.load(Ordering::Acquire) {
                self.shared.counters.close(); // dropped: closed at once
            } else {
                self.adopt(stream, now);
            }
        }
    }

    /// Closes connections handed over but never adopted (the loop is ending).
    fn drop_inbox(&mut self) {
        let streams = std::mem::take(&mut *self.woken.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in streams {
            self.shared.counters.close();
        }
    }

    /// Marks the connections that deferred responses arrived for.
    fn adopt_woken(&mut self) {
        let conns = &mut self.conns;
        self.keys.adopt_woken(&self.woken.keys, |key| conns.get_mut(key).map(Conn::wake).is_some());
    }

    /// Adds a new connection (its slot in the counters already taken).
    fn adopt(&mut self, stream: TcpStream, now: Instant) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if stream.set_nodelay(true).is_err() {
            self.shared.counters.close();
            return;
        }
        // With registered files, the connection's slot in the table is its key.
        let fixed = (key < self.fixed_slots)
            .then(|| self.ring.submitter().register_files_update(key as u32, &[stream.as_raw_fd()]).ok())
            .flatten()
            .map(|_| key as u32);
        let waker: Arc<dyn Wake> = self.woken.clone();
        let peer = stream.peer_addr().ok();
        let batching = Batching::new(self.shared.config.batch_delay);
        entry.insert(Conn::new(stream, fixed, key, self.shared.new_conn(peer, waker, key, now), batching));
        self.keys.push(key);
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let mut ctx = Ctx {
            handler: &*self.handler,
            counters: &self.shared.counters,
            ring: &mut self.ring,
            bufs: &mut self.bufs,
            now,
        };
        match conn.drive(&mut ctx) {
            Step::Remove(reason) => self.remove(key, reason),
            Step::Keep => self.arm_deadline(key),
        }
    }

    /// Arms `key`'s next deadline in the loop's [`Deadlines`].
    fn arm_deadline(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            let at = conn.next_deadline();
            self.deadlines.arm(key, at, &mut conn.armed);
        }
    }

    /// Starts removing a connection; it is freed when the kernel is done with it.
    fn remove(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        conn.begin_remove(reason, &mut self.ring, &self.shared.counters);
        if conn.is_done() {
            self.free(key);
        }
    }

    fn free(&mut self, key: usize) {
        let conn = self.conns.remove(key);
        if let Some(index) = conn.fixed() {
            // The table holds a reference to the socket: let it go.
            let _ = self.ring.submitter().register_files_update(index, &[-1]);
        }
        tracing::trace!(reason = %conn.close_reason(), "connection closed");
        // Closed (socket, and the responders' view of it) before it stops
        // counting as open: whoever sees `open` drop sees a closed connection.
        drop(conn);
        self.shared.counters.close();
    }

    /// Hands the time to the connections whose deadline has come.
    fn expire(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        let conns = &mut self.conns;
        self.deadlines.due(now, &mut due, |key, at| conns.get_mut(key).is_some_and(|c| take_due(&mut c.armed, at)));
        for key in due.drain(..) {
            match self.conns[key].on_timeout(&self.shared.counters, now) {
                // Driven this turn or the next: driving arms it again.
                Some(Step::Keep) => self.keys.push(key),
                Some(Step::Remove(reason)) => self.remove(key, reason),
                None => self.arm_deadline(key),
            }
        }
        self.due = due;
    }

    /// The grace period is over (or the ring failed): cut every connection
    /// left, and wait (briefly) for the kernel to return their operations.
    fn cut_all(&mut self) -> Cut {
        let mut cut = Cut::default();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &self.conns[key];
            if !conn.is_closing() {
                cut.responses += conn.unwritten_responses() as u64;
                cut.deferred += conn.deferred_in_flight() as u64;
                cut.connections += 1;
            }
            self.remove(key, CloseReason::Shutdown);
        }
        self.stop_accepting();
        let deadline = Instant::now() + DRAIN_WAIT;
        while !self.conns.is_empty() && Instant::now() < deadline {
            if ring::submit_and_wait(&self.ring, Some(Duration::from_millis(10))).is_err() {
                break;
            }
            let mut completions = std::mem::take(&mut self.completions);
            ring::reap(&mut self.ring, &mut completions);
            for c in &completions {
                self.complete(c, Instant::now());
            }
            self.completions = completions;
        }
        if !self.conns.is_empty() {
            // The kernel still holds operations of these: leak them rather
            // than free memory it may write (never seen; the ring's end
            // cancels them).
            tracing::warn!(left = self.conns.len(), "io_uring operations still in flight at shutdown");
            for (_, conn) in std::mem::take(&mut self.conns) {
                std::mem::forget(conn);
                self.shared.counters.close();
            }
        }
        self.drop_inbox();
        self.cancel_wake();
        cut
    }

    /// The loop ends: its `eventfd` read is cancelled and waited for
    /// before `wake_buf` goes. Closing the ring does not do it in time:
    /// the kernel cancels its requests later, in a worker of its own, and
    /// a wake-up meanwhile (a deferred answer, the shutdown's) would
    /// complete the read into freed memory. Leaked if it never returns.
    fn cancel_wake(&mut self) {
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.wake_armed && Instant::now() < deadline {
            let cancel = opcode::AsyncCancel::new(Op::Wake.tag(0)).build().user_data(Op::Cancel.tag(0));
            // SAFETY: a cancellation names no buffer.
            let _ = unsafe { ring::push(&mut self.ring, &cancel) };
            if ring::submit_and_wait(&self.ring, Some(Duration::from_millis(10))).is_err() {
                break;
            }
            let mut completions = std::mem::take(&mut self.completions);
            ring::reap(&mut self.ring, &mut completions);
            for c in &completions {
                match c.op {
                    Op::Wake => self.wake_armed = false,
                    // No connection is left, but a buffer must never leak.
                    _ => {
                        if let Some(id) = c.buffer() {
                            self.bufs.recycle(id);
                        }
                    }
                }
            }
            completions.clear();
            self.completions = completions;
        }
        if self.wake_armed {
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }
}

/// A running server's handle (address, stats, graceful shutdown); see
/// [`fastwire_common::ServerHandle`]. Dropping it shuts the server down at once.
pub type ServerHandle = fastwire_common::ServerHandle<Running>;

/// The uring backend's running server: its loops. Use it through [`ServerHandle`].
pub struct Running {
    shared: Arc<Shared>,
    loops: Vec<(Arc<EventFd>, JoinHandle<Cut>)>,
    /// How many loops still run.
    running: Arc<LoopsRunning>,
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        self.shared.stopping.store(true, Ordering::Release);
        let started_with = self.shared.counters.snapshot().open;
        fastwire_common::stop_loops(&mut self.loops, &self.running, &self.shared.forced, started_with, grace, |e| {
            e.wake()
        })
    }
}
