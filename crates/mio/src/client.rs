//! The client: [`fastwire_common::client::Client`] driven by a reactor.
//!
//! Each connection has one thread running a small event loop over its
//! socket. Callers on any thread encode their call into the connection's
//! output (under the client's lock) and, if the output was empty, wake the
//! reactor through its `mio::Waker`; then they wait on their own call slot.
//! The reactor writes until `WouldBlock` (asking for write readiness only
//! while output remains), reads until `WouldBlock`, and completes the calls
//! whose responses arrived.
//!
//! That is the picture under load. A caller that finds the connection
//! quiet writes its call itself, and a caller that finds nobody reading
//! runs the reading itself until its response is in (leader/follower, in
//! [`fastwire_common::client`]), so a lone call wakes no reactor. The
//! reactor reads when handed the role or when nobody reads; readiness it
//! skips while a caller reads is handed back when that caller leaves.

use std::io::{self, Write};
use std::net::Shutdown;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::client::{Driver, Link, Output, ReadWatch, QUIET_WATCH, VACANT_WATCH};
use fastwire_common::{net, ClientError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Stack size of the reactor thread.
const STACK_SIZE: usize = 128 * 1024;

/// A client for one server address; see [`fastwire_common::client::Client`].
pub type Client = fastwire_common::client::Client<ReactorThread>;

/// A call sent and awaiting its response (see [`Client::start`]).
pub type PendingCall = fastwire_common::client::PendingCall<ReactorThread>;

/// The mio driver: a reactor thread per connection.
#[derive(Debug)]
pub struct ReactorThread;

/// How callers reach a connection's reactor.
#[derive(Debug)]
pub struct ReactorHandle {
    waker: Waker,
    /// The reactor is in (or about to enter) `poll` with nothing to write.
    /// Callers wake it only then: a wake is an `eventfd` write plus an
    /// `epoll` wake-up, wasted while the reactor is busy anyway (it takes
    /// the output on its next turn).
    parked: AtomicBool,
    stopped: AtomicBool,
    /// A caller handed the reading role to the reactor: read even without
    /// a new readiness event (the caller may have left data it did not
    /// read, and the edge that announced it is gone).
    read_requested: AtomicBool,
    /// A clone of the socket: to shut it down, and for callers that read
    /// and write it themselves (leader/follower).
    socket: Arc<std::net::TcpStream>,
}

impl Driver for ReactorThread {
    type Handle = Arc<ReactorHandle>;

    fn start(link: Link<Self>, stream: std::net::TcpStream) -> io::Result<Arc<ReactorHandle>> {
        let socket = stream.try_clone()?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        let poll = Poll::new()?;
        poll.registry().register(&mut stream, SOCKET, Interest::READABLE)?;
        let handle = Arc::new(ReactorHandle {
            waker: Waker::new(poll.registry(), WAKER)?,
            parked: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            read_requested: AtomicBool::new(false),
            socket: Arc::new(socket),
        });
        let reactor = Arc::clone(&handle);
        thread::Builder::new()
            .name("fastwire-mio-client".into())
            .stack_size(STACK_SIZE)
            .spawn(move || run(link, poll, stream, &reactor))?;
        Ok(handle)
    }

    // ANCHOR: parked_wake
    fn wake(handle: &Arc<ReactorHandle>) {
        // Called with the client's lock held, after queuing output. The
        // reactor sets `parked` and then checks for output under that lock:
        // either it sees this output, or this sees `parked` (SeqCst on both
        // sides, and the lock orders the rest), so no wake-up is lost.
        if handle.parked.swap(false, Ordering::SeqCst) {
            let _ = handle.waker.wake();
        }
    }
    // ANCHOR_END: parked_wake

    fn stop(handle: &Arc<ReactorHandle>) {
        handle.stopped.store(true, Ordering::Release);
        let _ = handle.socket.shutdown(Shutdown::Both);
        let _ = handle.waker.wake();
    }

    fn caller_io(handle: &Arc<ReactorHandle>) -> Option<Arc<std::net::TcpStream>> {
        // Callers run the connection's reading themselves while they wait
        // (a reactor turn of their own on the one socket); the reactor reads
        // when they hand it the role, or when nobody reads.
        Some(Arc::clone(&handle.socket))
    }

    fn read_needed(handle: &Arc<ReactorHandle>) {
        // As `wake`: the flag first, then the reactor if it is parked; it
        // checks the flag after announcing that it parks.
        handle.read_requested.store(true, Ordering::SeqCst);
        if handle.parked.swap(false, Ordering::SeqCst) {
            let _ = handle.waker.wake();
        }
    }

    // While callers read, the reactor takes the socket out of its poll
    // (an edge per arriving segment would wake it for nothing) and looks
    // at the role on a timer instead (`Link::read_watch`).
    const KEEPS_CALLERS_READING: bool = true;
}

/// Reads per turn of the reactor (see `run`).
const READS_PER_TURN: usize = 16;

fn run(link: Link<ReactorThread>, poll: Poll, stream: TcpStream, handle: &ReactorHandle) {
    let mut reactor = ReactorLoop::new(link, poll, stream);
    while reactor.turn(handle).is_continue() {}
}

/// The connection's reactor thread: its socket, its poll, and what one turn
/// leaves for the next. A turn that returns `Break` ended the connection
/// (the link was told why).
struct ReactorLoop {
    link: Link<ReactorThread>,
    poll: Poll,
    stream: TcpStream,
    events: Events,
    handshake_done: bool,
    inbuf: BytesMut,
    out: BytesMut,
    /// Bytes of `out` written.
    written: usize,
    write_interest: bool,
    /// Whether the socket's readiness is watched (registered for reading):
    /// not while callers read it (see `KEEPS_CALLERS_READING`).
    read_interest: bool,
    registered: bool,
    readable: bool,
    writable: bool,
    /// How long the next poll may wait (`None`: until an event).
    timeout: Option<Duration>,
    /// `batch_delay`: the batch taken waits until then for more calls.
    hold_until: Option<Instant>,
    vacancy_seen: Option<u64>,
    read_chunk: usize,
}

impl ReactorLoop {
    fn new(link: Link<ReactorThread>, poll: Poll, stream: TcpStream) -> Self {
        let config = link.config();
        ReactorLoop {
            read_chunk: config.buffer_size.clamp(4096, 64 * 1024),
            link,
            poll,
            stream,
            events: Events::with_capacity(16),
            handshake_done: false,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            written: 0,
            write_interest: false,
            read_interest: true,
            registered: true,
            readable: true,
            writable: true,
            timeout: Some(Duration::ZERO),
            hold_until: None,
            vacancy_seen: None,
        }
    }

    /// One turn: wait for events, look at the reading role, read, write,
    /// and say what to watch and for how long next.
    fn turn(&mut self, handle: &ReactorHandle) -> ControlFlow<()> {
        self.wait(handle)?;
        let mut interest_changed = self.watch_role(handle)?;
        self.read(&mut interest_changed)?;
        if !self.handshake_done && self.link.handle_timeout(Instant::now()) {
            return ControlFlow::Break(());
        }
        self.write()?;
        self.next_timeout();
        self.watch_socket(interest_changed)
    }

    /// Parks in the poll (announcing it, see `Driver::wake`) unless there is
    /// work now; notes the socket's readiness.
    fn wait(&mut self, handle: &ReactorHandle) -> ControlFlow<()> {
        let link = &self.link;
        // ANCHOR: parked_sleep
        if self.timeout != Some(Duration::ZERO) {
            // About to sleep: announce it, then look once more for output
            // queued by a caller who saw the reactor busy and did not wake it.
            handle.parked.store(true, Ordering::SeqCst);
            if handle.read_requested.load(Ordering::SeqCst)
                || (link.has_output() && !(self.write_interest || self.hold_until.is_some()))
            {
                handle.parked.store(false, Ordering::SeqCst);
                self.timeout = Some(Duration::ZERO);
            } else if link.announce_sleep(self.timeout.is_none_or(|t| t > VACANT_WATCH)) {
                // Calls in progress that callers read: look at the role
                // on the fast timer (a vacancy wakes nobody).
                self.timeout = Some(VACANT_WATCH);
            }
        }
        let polled = self.poll.poll(&mut self.events, self.timeout);
        handle.parked.store(false, Ordering::SeqCst);
        // ANCHOR_END: parked_sleep
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                link.die(ClientError::from_io(e));
                return ControlFlow::Break(());
            }
        }
        if handle.stopped.load(Ordering::Acquire) {
            return ControlFlow::Break(());
        }
        for event in self.events.iter() {
            if event.token() == SOCKET {
                self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                self.writable |= event.is_writable() || event.is_write_closed();
            }
        }
        ControlFlow::Continue(())
    }

    /// Looks at the reading role (leader/follower): whether the socket is
    /// watched again, and read now. Whether the interest changed.
    fn watch_role(&mut self, handle: &ReactorHandle) -> ControlFlow<(), bool> {
        let mut interest_changed = false;
        if !self.read_interest || self.link.watch_needed() {
            match self.link.read_watch(&mut self.vacancy_seen) {
                ReadWatch::Gone => return ControlFlow::Break(()),
                ReadWatch::Callers => {}
                // Watch the socket again: registering reports what arrived
                // unwatched.
                ReadWatch::Quiet => {
                    interest_changed |= !self.read_interest;
                    self.read_interest = true;
                }
                // The driver's (a vacancy it took): read, whatever the socket says.
                ReadWatch::Driver => {
                    interest_changed |= !self.read_interest;
                    self.read_interest = true;
                    self.readable = true;
                }
            }
        }
        if handle.read_requested.swap(false, Ordering::SeqCst) {
            // Handed the role: read, and watch the socket again.
            self.readable = true;
            interest_changed |= !self.read_interest;
            self.read_interest = true;
        }
        ControlFlow::Continue(interest_changed)
    }

    /// Reads until `WouldBlock`, handing responses to the waiting callers,
    /// unless a caller is reading (it is told, and serves the readiness):
    /// then the socket is left to the callers until `read_watch` says.
    fn read(&mut self, interest_changed: &mut bool) -> ControlFlow<()> {
        if self.readable && !self.link.may_read() {
            self.readable = false;
            *interest_changed |= self.read_interest;
            self.read_interest = false;
        }
        let mut released = !self.readable;
        // A turn reads at most READS_PER_TURN times: a server that keeps
        // the socket full must not keep the reactor from writing, nor make
        // the read buffer grow (each read is decoded before the next).
        let mut reads = 0;
        while self.readable && reads < READS_PER_TURN {
            reads += 1;
            match net::read_some(&mut self.stream, &mut self.inbuf, self.read_chunk) {
                Ok(0) => {
                    self.link.server_closed();
                    return ControlFlow::Break(());
                }
                // No call pending any more: the role is given up and the
                // reading stops (later data raises a new edge).
                Ok(_) => match self.link.received_by_driver(&mut self.inbuf) {
                    Err(()) => return ControlFlow::Break(()),
                    Ok(r) => {
                        self.handshake_done |= r.handshake_done;
                        if r.released {
                            self.readable = false;
                            released = true;
                        }
                        if r.handed_back {
                            *interest_changed |= self.read_interest;
                            self.read_interest = false;
                        }
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.link.die(ClientError::from_io(e));
                    return ControlFlow::Break(());
                }
            }
        }
        if !released && !self.readable {
            // Drained (or woken for nothing) while holding the role.
            self.link.reading_done();
        }
        ControlFlow::Continue(())
    }

    /// Takes the callers' output and writes until `WouldBlock` (or until a
    /// batch held for `batch_delay` is due); sets the poll's timeout to
    /// when the output next needs a look.
    fn write(&mut self) -> ControlFlow<()> {
        self.timeout = None;
        loop {
            if let Some(until) = self.hold_until {
                // batch_delay: the batch waits so that more calls join it.
                let now = Instant::now();
                if now < until {
                    self.timeout = Some(until - now);
                    break;
                }
                self.hold_until = None;
                if self.link.take_output(&mut self.out) == Output::Gone {
                    return ControlFlow::Break(());
                }
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                match self.link.take_output(&mut self.out) {
                    Output::Gone => return ControlFlow::Break(()),
                    Output::Empty(wait) => {
                        self.timeout = Some(wait);
                        break;
                    }
                    Output::Taken => {
                        if let Some(delay) = self.link.config().batch_delay {
                            self.hold_until = Some(Instant::now() + delay);
                            continue;
                        }
                    }
                }
            }
            if !self.writable {
                break;
            }
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.link.write_failed(&io::ErrorKind::WriteZero.into());
                    return ControlFlow::Break(());
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.link.write_failed(&e);
                    // Keep reading: responses may still come; the read side ends the connection.
                    self.out.clear();
                    self.written = 0;
                    break;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Shortens the poll's timeout to the handshake's deadline and the
    /// reading role's watches, or to nothing when the socket still has
    /// bytes.
    fn next_timeout(&mut self) {
        let mut limit = |t: Duration| self.timeout = Some(self.timeout.map_or(t, |now| now.min(t)));
        if !self.handshake_done {
            if let Some(deadline) = self.link.handshake_deadline() {
                limit(deadline.saturating_duration_since(Instant::now()));
            }
        }
        // Calls in progress that callers read: look at the role on the fast
        // timer; off the socket (a caller read), on the slow one, to watch
        // the socket again once the connection is quiet.
        if self.link.watch_needed() {
            limit(VACANT_WATCH);
        } else if !self.read_interest {
            limit(QUIET_WATCH);
        }
        if self.readable {
            // The turn's reads ran out before the socket did: come straight
            // back (edge-triggered, no new event would say so).
            self.timeout = Some(Duration::ZERO);
        }
    }

    /// Registers the socket for what is worth watching: reading unless
    /// callers read it, writing only while output remains.
    fn watch_socket(&mut self, interest_changed: bool) -> ControlFlow<()> {
        let want_write = self.hold_until.is_none() && self.written < self.out.len();
        if want_write == self.write_interest && !interest_changed {
            return ControlFlow::Continue(());
        }
        let interest = match (self.read_interest, want_write) {
            (true, false) => Some(Interest::READABLE),
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (false, true) => Some(Interest::WRITABLE),
            // Nothing to watch: a writable-only registration would
            // report the idle socket writable at once, for nothing.
            (false, false) => None,
        };
        let registry = self.poll.registry();
        let result = match (interest, self.registered) {
            (Some(interest), true) => registry.reregister(&mut self.stream, SOCKET, interest),
            (Some(interest), false) => registry.register(&mut self.stream, SOCKET, interest),
            (None, true) => registry.deregister(&mut self.stream),
            (None, false) => Ok(()),
        };
        if let Err(e) = result {
            self.link.die(ClientError::from_io(e));
            return ControlFlow::Break(());
        }
        self.registered = interest.is_some();
        self.write_interest = want_write;
        ControlFlow::Continue(())
    }
}
