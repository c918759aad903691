//! The server: one event loop per core, each with its own listener.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fastwire_common::net::Listeners;
use fastwire_common::{
    net, take_due, Batching, Blocking, CloseReason, Cut, Deadlines, LoopsRunning, ReadyKeys, ServerCounters, Serving,
    ShutdownReport, WokenKeys,
};
use fastwire_proto::driver::Wake;
use fastwire_proto::{Handler, ServerConfig};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::connection::{Conn, Ctx, Step};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// Size of each loop's read buffer.
const SCRATCH: usize = 64 * 1024;

pub use fastwire_common::Accept;

/// How the server is laid out: its event loops and how connections reach
/// them. The default is one loop per available core, one acceptor thread
/// handing connections to the loops in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Event loops, one thread each (at least one).
    pub loops: usize,
    /// How new connections reach the loops (see [`Accept`]).
    pub accept: Accept,
}

impl Default for Options {
    fn default() -> Options {
        Options { loops: net::available_cores(), accept: Accept::default() }
    }
}

/// Bound listeners, not yet serving.
#[derive(Debug)]
pub struct Server {
    listeners: Listeners,
    config: ServerConfig,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`Options`]: one event loop per available core.
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        Self::bind_with(addr, config, Options::default())
    }

    /// Binds `addr` laid out as `options` say.
    pub fn bind_with(addr: impl ToSocketAddrs, config: ServerConfig, options: Options) -> io::Result<Server> {
        Ok(Server { listeners: Listeners::bind(addr, options.loops, options.accept)?, config })
    }

    /// A server on a listener the application bound itself (options it set
    /// on the socket are kept), with the default [`Options`].
    pub fn from_listener(listener: std::net::TcpListener, config: ServerConfig) -> io::Result<Server> {
        Self::from_listener_with(listener, config, Options::default())
    }

    /// A server with `options.loops` event loops on a listener the
    /// application bound itself: an acceptor thread accepts on it and hands
    /// connections to the loops in turn. One listener cannot be a listener
    /// per loop: [`Accept::ReusePort`] is refused (`InvalidInput`); bind
    /// with [`bind_with`](Server::bind_with) for it.
    pub fn from_listener_with(
        listener: std::net::TcpListener,
        config: ServerConfig,
        options: Options,
    ) -> io::Result<Server> {
        Ok(Server { listeners: Listeners::adopt(listener, options.loops, options.accept)?, config })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners.local_addr()
    }

    /// Starts the event loops, serving `handler` inline on them (a handler
    /// that waits must defer: see [`fastwire_proto::deferred`]).
    pub fn serve<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr()?;
        let shared = Shared::new(self.config);
        let handler = Arc::new(handler);
        let mut loops = Vec::new();
        let running = Arc::new(LoopsRunning::default());
        let mut inboxes = Vec::new();
        let accept = self.listeners.accept;
        let mut listeners = self.listeners.sockets.into_iter();
        let acceptor_listener = match accept {
            Accept::RoundRobin => listeners.next(),
            Accept::ReusePort => None,
        };
        for i in 0..self.listeners.loops {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let listener = match listeners.next() {
                Some(listener) => {
                    listener.set_nonblocking(true)?;
                    let mut listener = TcpListener::from_std(listener);
                    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
                    Some(listener)
                }
                None => None,
            };
            let inbox = Arc::new(Mutex::new(Vec::new()));
            inboxes.push((Arc::clone(&inbox), Arc::clone(&waker)));
            let woken = Arc::new(LoopWake { keys: WokenKeys::default(), waker: Arc::clone(&waker) });
            let event_loop = EventLoop {
                poll,
                listener,
                inbox,
                woken,
                conns: Slab::new(),
                keys: ReadyKeys::default(),
                shared: Arc::clone(&shared),
                handler: Arc::clone(&handler),
                scratch: vec![0; SCRATCH],
                accept_paused_until: None,
                deadlines: Deadlines::default(),
                due: Vec::new(),
            };
            let entered = running.enter();
            let thread = thread::Builder::new().name(format!("fastwire-mio-loop{i}")).spawn(move || {
                let _running = entered;
                event_loop.run()
            })?;
            loops.push((waker, thread));
        }
        let acceptor = match acceptor_listener {
            Some(listener) => {
                let wake_with = listener.try_clone()?;
                let shared = Arc::clone(&shared);
                let thread = thread::Builder::new()
                    .name("fastwire-mio-accept".into())
                    .spawn(move || acceptor(listener, &shared, &inboxes))?;
                Some((wake_with, thread))
            }
            None => None,
        };
        tracing::info!(%local_addr, backend = "mio", loops = loops.len(), accept = ?accept, "serving");
        Ok(ServerHandle::new(local_addr, Running { shared, loops, running, acceptor }))
    }
}

impl Server {
    /// Starts the event loops, running `handler` on a pool of
    /// `config.blocking_threads` worker threads instead of the loops, so
    /// that it may block (a lock, a file, a synchronous client) without
    /// stalling a loop. Each request costs a hand-off to a worker and back
    /// (see [`fastwire_common::Blocking`]).
    pub fn serve_blocking<H: Handler + 'static>(self, handler: H) -> io::Result<ServerHandle> {
        let threads = self.config.blocking_threads;
        self.serve(Blocking::new(handler, threads)?)
    }
}

// ANCHOR: loop_wake
/// How deferred responses reach a loop from other threads: the keys of the
/// connections they are for, and the loop's `Waker` (an `eventfd`), written
/// only when the list was empty, so a burst of answers costs one wake-up.
struct LoopWake {
    keys: WokenKeys,
    waker: Arc<Waker>,
}

impl Wake for LoopWake {
    fn wake(&self, key: usize) {
        if self.keys.push(key) {
            let _ = self.waker.wake();
        }
    }
}
// ANCHOR_END: loop_wake

/// A loop's inbox: connections handed over by the acceptor thread.
type Inbox = Arc<Mutex<Vec<std::net::TcpStream>>>;

/// [`Accept::RoundRobin`]: accept on one thread, hand connections to the loops in turn.
fn acceptor(listener: std::net::TcpListener, shared: &Shared, loops: &[(Inbox, Arc<Waker>)]) {
    let mut next = 0;
    let max = shared.config.max_connections;
    while let Some(stream) = net::accept_admitted(&listener, &shared.stopping, &shared.counters, max) {
        let (inbox, waker) = &loops[next % loops.len()];
        next += 1;
        inbox.lock().unwrap_or_else(|p| p.into_inner()).push(stream);
        let _ = waker.wake();
    }
}

/// What every connection and loop of the server shares.
type Shared = fastwire_common::LoopShared;

struct EventLoop<H> {
    poll: Poll,
    listener: Option<TcpListener>,
    /// Connections from the acceptor thread ([`Accept::RoundRobin`]).
    inbox: Inbox,
    /// Connections with deferred responses waiting, from other threads.
    woken: Arc<LoopWake>,
    conns: Slab<Conn>,
    /// Connections to drive: with news, or work left that no event will announce (edge-triggered).
    keys: ReadyKeys,
    shared: Arc<Shared>,
    handler: Arc<H>,
    scratch: Vec<u8>,
    /// After running out of descriptors, when to try accepting again.
    accept_paused_until: Option<Instant>,
    /// Every connection's next deadline, earliest first.
    deadlines: Deadlines,
    /// The entries due this turn (kept for its allocation).
    due: Vec<usize>,
}

impl<H: Handler + 'static> EventLoop<H> {
    fn run(mut self) -> Cut {
        let mut events = Events::with_capacity(1024);
        let mut closing_started = false;
        loop {
            // Sleep until the earliest deadline or a paused accept's retry:
            // with neither, until an event (a shutdown wakes the loop too).
            let now = Instant::now();
            let wake_at = [self.deadlines.next(), self.accept_paused_until].into_iter().flatten().min();
            let mut timeout = wake_at.map(|at| at.saturating_duration_since(now));
            if !self.keys.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; the loop stops");
                    return self.cut_all();
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {
                        self.adopt_inbox(now);
                        self.adopt_woken();
                    }
                    Token(key) => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.on_event(event);
                            self.keys.push(key);
                        }
                    }
                }
            }
            if self.accept_paused_until.is_some_and(|at| now >= at) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            // ANCHOR: ready_list
            // Drive every connection with news or unfinished work, each
            // once; driving may mark connections for the next turn.
            let driving = self.keys.start_turn();
            for &key in &driving {
                self.drive(key, now);
            }
            self.keys.end_turn(driving);
            // ANCHOR_END: ready_list
            self.expire(now);
            if self.shared.forced.load(Ordering::Acquire) {
                return self.cut_all();
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                if !closing_started {
                    closing_started = true;
                    // Stop accepting; close every connection gracefully.
                    if let Some(mut listener) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut listener);
                    }
                    for (key, conn) in self.conns.iter_mut() {
                        conn.begin_close(CloseReason::Shutdown);
                        self.keys.push(key);
                    }
                }
                if self.conns.is_empty() {
                    return Cut::default();
                }
            }
        }
    }

    /// Takes the connections the acceptor thread handed over.
    fn adopt_inbox(&mut self, now: Instant) {
        let streams = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for stream in streams {
            match stream.set_nonblocking(true) {
                Ok(()) => self.adopt(mio::net::TcpStream::from_std(stream), now),
                Err(_) => self.shared.counters.close(),
            }
        }
    }

    /// Marks the connections that deferred responses arrived for.
    fn adopt_woken(&mut self) {
        let conns = &mut self.conns;
        self.keys.adopt_woken(&self.woken.keys, |key| conns.get_mut(key).map(Conn::wake).is_some());
    }

    /// Registers a new connection (its slot in the counters already taken).
    fn adopt(&mut self, mut stream: mio::net::TcpStream, now: Instant) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // ANCHOR: interest
        // Read and write interest, registered once and never changed:
        // edge-triggered, a writable edge comes only after a write has
        // filled the send buffer (`WouldBlock`) and it drains, so the
        // interest costs nothing while writes succeed; toggling it per
        // response instead costs two `epoll_ctl` calls and a wake-up.
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered =
            stream.set_nodelay(true).and_then(|()| self.poll.registry().register(&mut stream, Token(key), interest));
        // ANCHOR_END: interest
        if registered.is_err() {
            self.shared.counters.close();
            return;
        }
        let waker: Arc<dyn Wake> = self.woken.clone();
        let peer = stream.peer_addr().ok();
        let batching = Batching::new(self.shared.config.batch_delay);
        entry.insert(Conn::new(stream, self.shared.new_conn(peer, waker, key, now), batching));
        self.keys.push(key);
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else { return };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if net::is_accept_resource_error(&e) => {
                    // Out of descriptors. Edge-triggered: the pending
                    // connections will not be announced again, so retry by timer.
                    tracing::warn!(error = %e, "accept: out of resources");
                    self.accept_paused_until = Some(now + Duration::from_millis(10));
                    return;
                }
                Err(_) => continue,
            };
            let shared = &self.shared;
            if !shared.counters.try_open(shared.config.max_connections) {
                continue; // dropped: closed at once
            }
            self.adopt(stream, now);
        }
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let mut ctx = Ctx { handler: &*self.handler, counters: &self.shared.counters, scratch: &mut self.scratch, now };
        let step = conn.drive(&mut ctx);
        self.settle(key, step);
    }

    /// Applies what driving a connection decided, and arms its next deadline.
    fn settle(&mut self, key: usize, step: Step) {
        match step {
            Step::Keep { more } => {
                if more {
                    self.keys.push(key);
                }
                self.arm(key);
            }
            Step::Remove(reason) => self.remove(key, reason),
        }
    }

    /// Arms `key`'s next deadline in the loop's [`Deadlines`].
    fn arm(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            let at = conn.next_deadline();
            self.deadlines.arm(key, at, &mut conn.armed);
        }
    }

    fn remove(&mut self, key: usize, reason: CloseReason) {
        let mut conn = self.conns.remove(key);
        conn.finish(&self.shared.counters);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // Closed (socket, and the responders' view of it) before it stops
        // counting as open: whoever sees `open` drop sees a closed connection.
        drop(conn);
        self.shared.counters.close();
        tracing::trace!(%reason, "connection closed");
    }

    /// Hands the time to the connections whose deadline has come.
    fn expire(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        let conns = &mut self.conns;
        self.deadlines.due(now, &mut due, |key, at| conns.get_mut(key).is_some_and(|c| take_due(&mut c.armed, at)));
        for key in due.drain(..) {
            match self.conns[key].on_timeout(&self.shared.counters, now) {
                // Driven this turn or the next: driving arms it again.
                Some(Step::Keep { .. }) => self.keys.push(key),
                Some(remove) => self.settle(key, remove),
                None => self.arm(key),
            }
        }
        self.due = due;
    }

    /// The grace period is over: drop every connection left.
    fn cut_all(&mut self) -> Cut {
        let mut cut = Cut::default();
        for (_, conn) in self.conns.iter() {
            if conn.is_open() || conn.unwritten_responses() > 0 {
                cut.responses += conn.unwritten_responses() as u64;
            }
            cut.deferred += conn.deferred_in_flight() as u64;
            cut.connections += 1;
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(key, CloseReason::Shutdown);
        }
        cut
    }
}

/// A running server's handle (address, stats, graceful shutdown); see
/// [`fastwire_common::ServerHandle`]. Dropping it shuts the server down at once.
pub type ServerHandle = fastwire_common::ServerHandle<Running>;

/// The mio backend's running server: its event loops (and acceptor thread). Use it through [`ServerHandle`].
pub struct Running {
    shared: Arc<Shared>,
    loops: Vec<(Arc<Waker>, JoinHandle<Cut>)>,
    /// How many loops still run.
    running: Arc<LoopsRunning>,
    /// [`Accept::RoundRobin`]: its listener (to wake it) and thread.
    acceptor: Option<(std::net::TcpListener, JoinHandle<()>)>,
}

impl Serving for Running {
    fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    fn stop(&mut self, grace: Duration) -> ShutdownReport {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some((listener, thread)) = self.acceptor.take() {
            net::wake_acceptor(&listener);
            let _ = thread.join();
        }
        let started_with = self.shared.counters.snapshot().open;
        fastwire_common::stop_loops(&mut self.loops, &self.running, &self.shared.forced, started_with, grace, |waker| {
            let _ = waker.wake();
        })
    }
}
