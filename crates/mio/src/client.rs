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
pub type Client = fastwire_common::client::Client<Reactor>;

/// A call sent and awaiting its response (see [`Client::start`]).
pub type PendingCall = fastwire_common::client::PendingCall<Reactor>;

/// The mio driver: a reactor thread per connection.
#[derive(Debug)]
pub struct Reactor;

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

impl Driver for Reactor {
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

fn run(link: Link<Reactor>, mut poll: Poll, mut stream: TcpStream, handle: &ReactorHandle) {
    let config = link.config().clone();
    let handshake_deadline = Instant::now() + config.handshake_timeout;
    let mut handshake_done = false;
    let mut events = Events::with_capacity(16);
    let mut inbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut written = 0; // of `out`
    let mut write_interest = false;
    let mut readable = true;
    let mut writable = true;
    let mut timeout = Some(Duration::ZERO);
    let mut hold_until: Option<Instant> = None;
    // Whether the socket's readiness is watched (registered for reading):
    // not while callers read it (see `KEEPS_CALLERS_READING`).
    let mut read_interest = true;
    let mut registered = true;
    let mut vacancy_seen = None;
    let read_chunk = config.buffer_size.clamp(4096, 64 * 1024);
    loop {
        // ANCHOR: parked_sleep
        if timeout != Some(Duration::ZERO) {
            // About to sleep: announce it, then look once more for output
            // queued by a caller who saw the reactor busy and did not wake it.
            handle.parked.store(true, Ordering::SeqCst);
            if handle.read_requested.load(Ordering::SeqCst)
                || (link.has_output() && !(write_interest || hold_until.is_some()))
            {
                handle.parked.store(false, Ordering::SeqCst);
                timeout = Some(Duration::ZERO);
            } else if link.announce_sleep(timeout.is_none_or(|t| t > VACANT_WATCH)) {
                // Calls in progress that callers read: look at the role
                // on the fast timer (a vacancy wakes nobody).
                timeout = Some(VACANT_WATCH);
            }
        }
        let polled = poll.poll(&mut events, timeout);
        handle.parked.store(false, Ordering::SeqCst);
        // ANCHOR_END: parked_sleep
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                return link.die(ClientError::from_io(e));
            }
        }
        if handle.stopped.load(Ordering::Acquire) {
            return;
        }
        for event in events.iter() {
            if event.token() == SOCKET {
                readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                writable |= event.is_writable() || event.is_write_closed();
            }
        }
        let mut interest_changed = false;
        let watching_role = !read_interest || link.watch_needed();
        if watching_role {
            match link.read_watch(&mut vacancy_seen) {
                ReadWatch::Gone => return,
                ReadWatch::Callers => {}
                // Watch the socket again: registering reports what arrived
                // unwatched.
                ReadWatch::Quiet => {
                    interest_changed |= !read_interest;
                    read_interest = true;
                }
                // The driver's (a vacancy it took): read, whatever the socket says.
                ReadWatch::Driver => {
                    interest_changed |= !read_interest;
                    read_interest = true;
                    readable = true;
                }
            }
        }
        if handle.read_requested.swap(false, Ordering::SeqCst) {
            // Handed the role: read, and watch the socket again.
            readable = true;
            interest_changed |= !read_interest;
            read_interest = true;
        }
        // Read until WouldBlock, handing responses to the waiting callers,
        // unless a caller is reading (it is told, and serves the readiness):
        // then the socket is left to the callers until `read_watch` says.
        if readable && !link.may_read() {
            readable = false;
            interest_changed |= read_interest;
            read_interest = false;
        }
        let mut released = !readable;
        // A turn reads at most READS_PER_TURN times: a server that keeps
        // the socket full must not keep the reactor from writing, nor make
        // the read buffer grow (each read is decoded before the next).
        let mut reads = 0;
        while readable && reads < READS_PER_TURN {
            reads += 1;
            match net::read_some(&mut stream, &mut inbuf, read_chunk) {
                Ok(0) => return link.server_closed(),
                // No call pending any more: the role is given up and the
                // reading stops (later data raises a new edge).
                Ok(_) => match link.received_by_driver(&mut inbuf) {
                    Err(()) => return,
                    Ok(r) => {
                        handshake_done |= r.handshake_done;
                        if r.released {
                            readable = false;
                            released = true;
                        }
                        if r.handed_back {
                            interest_changed |= read_interest;
                            read_interest = false;
                        }
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return link.die(ClientError::from_io(e)),
            }
        }
        if !released && !readable {
            // Drained (or woken for nothing) while holding the role.
            link.reading_done();
        }
        if !handshake_done && Instant::now() >= handshake_deadline {
            return link.handshake_timed_out();
        }
        // Write until WouldBlock.
        timeout = None;
        loop {
            if let Some(until) = hold_until {
                // batch_delay: the batch waits so that more calls join it.
                let now = Instant::now();
                if now < until {
                    timeout = Some(until - now);
                    break;
                }
                hold_until = None;
                if link.take_output(&mut out) == Output::Gone {
                    return;
                }
            }
            if written == out.len() {
                out.clear();
                written = 0;
                match link.take_output(&mut out) {
                    Output::Gone => return,
                    Output::Empty(wait) => {
                        timeout = Some(wait);
                        break;
                    }
                    Output::Taken => {
                        if let Some(delay) = config.batch_delay {
                            hold_until = Some(Instant::now() + delay);
                            continue;
                        }
                    }
                }
            }
            if !writable {
                break;
            }
            match stream.write(&out[written..]) {
                Ok(0) => return link.write_failed(&io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    link.write_failed(&e);
                    // Keep reading: responses may still come; the read side ends the connection.
                    out.clear();
                    written = 0;
                    break;
                }
            }
        }
        if !handshake_done {
            let left = handshake_deadline.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        // Calls in progress that callers read: look at the role on the fast
        // timer; off the socket (a caller read), on the slow one, to watch
        // the socket again once the connection is quiet.
        let watch = if link.watch_needed() {
            Some(VACANT_WATCH)
        } else if !read_interest {
            Some(QUIET_WATCH)
        } else {
            None
        };
        if let Some(watch) = watch {
            timeout = Some(timeout.map_or(watch, |t| t.min(watch)));
        }
        if readable {
            // The turn's reads ran out before the socket did: come straight
            // back (edge-triggered, no new event would say so).
            timeout = Some(Duration::ZERO);
        }
        // Write interest only while output remains.
        let want_write = hold_until.is_none() && written < out.len();
        if want_write != write_interest || interest_changed {
            let interest = match (read_interest, want_write) {
                (true, false) => Some(Interest::READABLE),
                (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
                (false, true) => Some(Interest::WRITABLE),
                // Nothing to watch: a writable-only registration would
                // report the idle socket writable at once, for nothing.
                (false, false) => None,
            };
            let registry = poll.registry();
            let result = match (interest, registered) {
                (Some(interest), true) => registry.reregister(&mut stream, SOCKET, interest),
                (Some(interest), false) => registry.register(&mut stream, SOCKET, interest),
                (None, true) => registry.deregister(&mut stream),
                (None, false) => Ok(()),
            };
            if let Err(e) = result {
                return link.die(ClientError::from_io(e));
            }
            registered = interest.is_some();
            write_interest = want_write;
        }
    }
}
