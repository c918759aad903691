//! The client: [`fastwire_common::client::Client`] driven by a ring.
//!
//! Each connection has one thread with a small ring of its own. Callers on
//! any thread encode their call into the connection's output (under the
//! client's lock) and, if the thread is parked, wake it through its
//! `eventfd`; then they wait on their own call slot. The thread keeps
//! three requests in flight: a read of the `eventfd`, one send of the
//! output it took, and either a receive (while it holds the reading role)
//! or a readiness poll (while it does not: a quiet connection is watched
//! for the server's close without consuming the bytes a caller may read).
//!
//! That is the picture under load. A caller that finds the connection
//! quiet writes its call itself, and a caller that finds nobody reading
//! reads until its response is in (leader/follower, in
//! [`fastwire_common::client`]), so a lone call wakes no thread: the ring
//! is for pipelined calls, where one `io_uring_enter` carries a send and
//! the wait for the next receive.
//!
//! Unlike the server, a client receive is a plain one into the driver's
//! own buffer, not a multishot one from a provided buffer ring: the
//! driver reads only while it holds the reading role, and a multishot
//! receive would go on consuming the socket after the role has passed to
//! a caller.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::client::{Driver, Link, Output, ReadWatch, VACANT_WATCH};
use fastwire_common::ClientError;
use io_uring::{opcode, types, IoUring};

use crate::ring::{self, Completion, EventFd, Op, Options};

/// Stack size of the driver thread.
const STACK_SIZE: usize = 128 * 1024;

/// How long a connection that a caller reads goes unwatched after the
/// watch saw bytes (the caller's own): re-arming at once would see the same
/// bytes again and spin until the caller has read them. The same wait as
/// the other blocking clients' watch of a quiet connection.
const REWATCH_AFTER: Duration = fastwire_common::client::QUIET_WATCH;

/// A client for one server address; see [`fastwire_common::client::Client`].
pub type Client = fastwire_common::client::Client<RingThread>;

/// A call sent and awaiting its response (see [`Client::start`]).
pub type PendingCall = fastwire_common::client::PendingCall<RingThread>;

/// The uring driver: a thread with a ring per connection.
#[derive(Debug)]
pub struct RingThread;

/// How callers reach a connection's ring thread.
#[derive(Debug)]
pub struct RingHandle {
    eventfd: EventFd,
    /// The thread is (about to be) waiting in its ring with nothing to
    /// send: callers write the `eventfd` only then (see `mio`'s reactor,
    /// which does the same with its `Waker`).
    parked: AtomicBool,
    stopped: AtomicBool,
    /// A caller handed the reading role to the driver.
    read_requested: AtomicBool,
    /// A clone of the socket: to shut it down, and for callers that read
    /// and write it themselves (leader/follower).
    socket: Arc<TcpStream>,
}

impl Driver for RingThread {
    type Handle = Arc<RingHandle>;

    fn start(link: Link<Self>, stream: TcpStream) -> io::Result<Arc<RingHandle>> {
        let handle = Arc::new(RingHandle {
            eventfd: EventFd::new()?,
            parked: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            read_requested: AtomicBool::new(false),
            socket: Arc::new(stream.try_clone()?),
        });
        let driver = Arc::clone(&handle);
        thread::Builder::new().name("fastwire-uring-client".into()).stack_size(STACK_SIZE).spawn(move || {
            // The ring is made on the thread that submits to it (single issuer).
            match ring::build(&Options { entries: 16, ..Options::default() }) {
                Ok(ring) => DriverLoop::new(link, ring, stream, &driver).run(),
                Err(e) => link.die(ClientError::from_io(e)),
            }
        })?;
        Ok(handle)
    }

    fn wake(handle: &Arc<RingHandle>) {
        // Called with the client's lock held, after queuing output. The
        // thread sets `parked` and then checks for output under that lock:
        // either it sees this output, or this sees `parked` (SeqCst on both
        // sides), so no wake-up is lost.
        if handle.parked.swap(false, Ordering::SeqCst) {
            handle.eventfd.wake();
        }
    }

    fn stop(handle: &Arc<RingHandle>) {
        handle.stopped.store(true, Ordering::Release);
        let _ = handle.socket.shutdown(Shutdown::Both);
        handle.eventfd.wake();
    }

    fn caller_io(handle: &Arc<RingHandle>) -> Option<Arc<TcpStream>> {
        Some(Arc::clone(&handle.socket))
    }

    fn read_needed(handle: &Arc<RingHandle>) {
        handle.read_requested.store(true, Ordering::SeqCst);
        if handle.parked.swap(false, Ordering::SeqCst) {
            handle.eventfd.wake();
        }
    }

    // The driver receives only while it holds the role; while callers
    // read, its readiness poll is re-armed only after `REWATCH_AFTER`, and
    // it looks at the role on a timer instead (`Link::read_watch`).
    const KEEPS_CALLERS_READING: bool = true;
}

/// One connection's ring thread.
struct DriverLoop<'a> {
    // First, so dropped first: the ring ends before the buffers below.
    // Not enough alone (the kernel cancels a closed ring's requests
    // later): `run` waits for the requests in flight first.
    ring: IoUring,
    link: Link<RingThread>,
    stream: TcpStream,
    handle: &'a RingHandle,
    /// Where the receive in flight writes (its spare capacity, reserved before).
    inbuf: BytesMut,
    /// What the send in flight sends; `written` of it are sent.
    out: BytesMut,
    written: usize,
    wake_buf: Box<u64>,
    wake_armed: bool,
    recv_in_flight: bool,
    send_in_flight: bool,
    poll_in_flight: bool,
    /// The driver holds the reading role.
    reading: bool,
    /// When to watch the quiet connection again.
    rewatch_at: Option<Instant>,
    /// Callers read (or the role is vacant): look at the role every
    /// `VACANT_WATCH` (`Link::read_watch`), with what the last look saw.
    callers_read: bool,
    vacancy_seen: Option<u64>,
    hold_until: Option<Instant>,
    handshake_done: bool,
    read_chunk: usize,
    completions: Vec<Completion>,
}

/// Why the loop ended: the connection is over (`Gone`: it was ended, and
/// told why), the server closed it, or it failed.
enum End {
    Gone,
    Closed,
    Failed(ClientError),
}

impl<'a> DriverLoop<'a> {
    fn new(link: Link<RingThread>, ring: IoUring, stream: TcpStream, handle: &'a RingHandle) -> Self {
        let config = link.config();
        let read_chunk = config.buffer_size.clamp(4096, 64 * 1024);
        DriverLoop {
            ring,
            link,
            stream,
            handle,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            written: 0,
            wake_buf: Box::new(0),
            wake_armed: false,
            recv_in_flight: false,
            send_in_flight: false,
            poll_in_flight: false,
            reading: false,
            rewatch_at: None,
            callers_read: false,
            vacancy_seen: None,
            hold_until: None,
            handshake_done: false,
            read_chunk,
            completions: Vec::with_capacity(16),
        }
    }

    fn run(mut self) {
        match self.turns() {
            Ok(()) | Err(End::Gone) => {}
            Err(End::Closed) => self.link.server_closed(),
            Err(End::Failed(e)) => self.link.die(e),
        }
        // Let the kernel return what it holds before the buffers go. Closing
        // the ring does not: its requests are cancelled later, by the
        // kernel's own worker, and a read that completes meanwhile (the
        // eventfd's, when a caller wakes a driver that has ended) would
        // write into freed memory.
        let _ = self.stream.shutdown(Shutdown::Both);
        let deadline = Instant::now() + Duration::from_millis(200);
        let in_flight = |d: &Self| d.recv_in_flight || d.send_in_flight || d.poll_in_flight || d.wake_armed;
        while in_flight(&self) && Instant::now() < deadline {
            for (op, armed) in [(Op::Poll, self.poll_in_flight), (Op::Wake, self.wake_armed)] {
                if armed {
                    let cancel = opcode::AsyncCancel::new(op.tag(0)).build().user_data(Op::Cancel.tag(0));
                    // SAFETY: a cancellation names no buffer.
                    let _ = unsafe { ring::push(&mut self.ring, &cancel) };
                }
            }
            if ring::submit_and_wait(&self.ring, Some(Duration::from_millis(10))).is_err() {
                break;
            }
            ring::reap(&mut self.ring, &mut self.completions);
            for c in &self.completions {
                match c.op {
                    Op::Recv => self.recv_in_flight = false,
                    Op::Send => self.send_in_flight = false,
                    Op::Poll => self.poll_in_flight = false,
                    Op::Wake => self.wake_armed = false,
                    _ => {}
                }
            }
        }
        if in_flight(&self) {
            // Never seen: the socket is shut down and the rest cancelled.
            // Leak the buffers rather than free memory the kernel may still use.
            std::mem::forget(std::mem::take(&mut self.inbuf));
            std::mem::forget(std::mem::take(&mut self.out));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }

    fn turns(&mut self) -> Result<(), End> {
        // The handshake is the driver's to read.
        self.take_role()?;
        let mut timeout = Some(Duration::ZERO);
        loop {
            self.arm_wake()?;
            if timeout != Some(Duration::ZERO) {
                // About to sleep: announce it, then look once more for
                // output or a hand-over that came without a wake-up.
                self.handle.parked.store(true, Ordering::SeqCst);
                if self.handle.read_requested.load(Ordering::SeqCst)
                    || (!self.send_in_flight && self.hold_until.is_none() && self.link.has_output())
                {
                    self.handle.parked.store(false, Ordering::SeqCst);
                    timeout = Some(Duration::ZERO);
                } else if self.link.announce_sleep(timeout.is_none_or(|t| t > VACANT_WATCH)) {
                    // Calls in progress that callers read: look at the
                    // role on the fast timer (a vacancy wakes nobody).
                    timeout = Some(VACANT_WATCH);
                }
            }
            let waited = ring::submit_and_wait(&self.ring, timeout);
            self.handle.parked.store(false, Ordering::SeqCst);
            waited.map_err(|e| End::Failed(ClientError::from_io(e)))?;
            if self.handle.stopped.load(Ordering::Acquire) {
                return Err(End::Gone);
            }
            let mut completions = std::mem::take(&mut self.completions);
            ring::reap(&mut self.ring, &mut completions);
            let handled = completions.iter().try_for_each(|c| self.complete(c));
            self.completions = completions;
            handled?;
            if self.handle.read_requested.swap(false, Ordering::SeqCst) && !self.recv_in_flight {
                self.take_role()?;
            }
            if !self.reading && (self.callers_read || self.link.watch_needed()) {
                match self.link.read_watch(&mut self.vacancy_seen) {
                    ReadWatch::Gone => return Err(End::Gone),
                    ReadWatch::Callers => {}
                    // Nobody's (a quiet connection): watch it.
                    ReadWatch::Quiet => {
                        self.callers_read = false;
                        self.rewatch_at = None;
                        self.watch()?;
                    }
                    // The driver's now (a vacancy it took): receive.
                    ReadWatch::Driver => {
                        self.callers_read = false;
                        self.rewatch_at = None;
                        self.reading = true;
                        self.recv()?;
                    }
                }
            }
            let now = Instant::now();
            if self.rewatch_at.is_some_and(|at| now >= at) {
                self.rewatch_at = None;
                self.watch()?;
            }
            if !self.handshake_done && self.link.handle_timeout(now) {
                return Err(End::Gone); // ended: its handshakes took too long
            }
            timeout = self.write()?;
            if let Some(at) = self.rewatch_at {
                let left = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            // Calls in progress that callers read: look at the role on the
            // fast timer (a caller reading alone is watched by the poll,
            // re-armed after `REWATCH_AFTER`).
            if !self.reading && self.link.watch_needed() {
                timeout = Some(timeout.map_or(VACANT_WATCH, |t| t.min(VACANT_WATCH)));
            }
            if !self.handshake_done {
                if let Some(deadline) = self.link.handshake_deadline() {
                    let left = deadline.saturating_duration_since(now);
                    timeout = Some(timeout.map_or(left, |t| t.min(left)));
                }
            }
        }
    }

    fn arm_wake(&mut self) -> Result<(), End> {
        if !self.wake_armed {
            let read =
                opcode::Read::new(types::Fd(self.handle.eventfd.raw()), (&mut *self.wake_buf as *mut u64).cast(), 8)
                    .build()
                    .user_data(Op::Wake.tag(0));
            // SAFETY: `wake_buf` is boxed and outlives the ring's use of it
            // (`run` cancels and waits for the requests in flight, or leaks it).
            unsafe { ring::push(&mut self.ring, &read) }.map_err(|e| End::Failed(ClientError::from_io(e)))?;
            self.wake_armed = true;
        }
        Ok(())
    }

    fn complete(&mut self, c: &Completion) -> Result<(), End> {
        match c.op {
            Op::Wake => self.wake_armed = false,
            Op::Recv => {
                self.recv_in_flight = false;
                match c.result {
                    0 => return Err(End::Closed),
                    n if n > 0 => {
                        // SAFETY: the kernel wrote `n` bytes into the spare
                        // capacity the receive was given.
                        unsafe { self.inbuf.set_len(self.inbuf.len() + n as usize) };
                        let r = self.link.received_by_driver(&mut self.inbuf).map_err(|()| End::Gone)?;
                        self.handshake_done |= r.handshake_done;
                        if r.handed_back {
                            // A waiting caller reads now: stay off the
                            // socket (its bytes would wake the poll) and
                            // look at the role on the timer.
                            self.reading = false;
                            self.callers_read = true;
                            self.rewatch_at = Some(Instant::now() + REWATCH_AFTER);
                        } else if r.released {
                            // No call pending: the next caller reads for itself.
                            self.reading = false;
                            self.watch()?;
                        } else {
                            self.recv()?;
                        }
                    }
                    e if e == -libc::EINTR || e == -libc::EAGAIN => self.recv()?,
                    e => return Err(End::Failed(ClientError::from_io(ring::error(e)))),
                }
            }
            Op::Poll => {
                self.poll_in_flight = false;
                if c.result == -libc::ECANCELED || self.recv_in_flight {
                    return Ok(());
                }
                // Bytes or the end of the stream on a connection the driver
                // does not read: read them if nobody else does.
                if c.result >= 0 && self.link.may_read() {
                    self.reading = true;
                    self.recv()?;
                } else {
                    // A caller reads them (it was told to make sure they are
                    // read before it leaves), or will (a vacancy): watch
                    // again later, and look at the role meanwhile.
                    self.rewatch_at = Some(Instant::now() + REWATCH_AFTER);
                    self.callers_read = true;
                }
            }
            Op::Send => {
                self.send_in_flight = false;
                if c.result > 0 {
                    self.written += c.result as usize;
                } else if c.result != -libc::EINTR && c.result != -libc::EAGAIN {
                    self.link.write_failed(&ring::error(c.result));
                    // Keep reading: responses may still come; the read side ends the connection.
                    self.out.clear();
                    self.written = 0;
                }
            }
            Op::Accept | Op::Cancel => {}
        }
        Ok(())
    }

    /// Takes the reading role if it is free, and reads; watches otherwise.
    fn take_role(&mut self) -> Result<(), End> {
        if self.link.may_read() {
            self.reading = true;
            self.recv()
        } else {
            self.watch()
        }
    }

    fn recv(&mut self) -> Result<(), End> {
        if self.recv_in_flight {
            return Ok(());
        }
        self.inbuf.reserve(self.read_chunk);
        let spare = self.inbuf.spare_capacity_mut();
        let len = spare.len().min(self.read_chunk) as u32;
        let recv = opcode::Recv::new(types::Fd(self.stream.as_raw_fd()), spare.as_mut_ptr().cast(), len)
            .build()
            .user_data(Op::Recv.tag(0));
        // SAFETY: `inbuf` is not touched until the receive completes (only
        // the completion handler reads or grows it), and outlives the ring's
        // use of it (see `run`).
        unsafe { ring::push(&mut self.ring, &recv) }.map_err(|e| End::Failed(ClientError::from_io(e)))?;
        self.recv_in_flight = true;
        Ok(())
    }

    /// Watches the socket for bytes or its end without reading it.
    fn watch(&mut self) -> Result<(), End> {
        if self.poll_in_flight || self.recv_in_flight {
            return Ok(());
        }
        let events = (libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
        let poll = opcode::PollAdd::new(types::Fd(self.stream.as_raw_fd()), events).build().user_data(Op::Poll.tag(0));
        // SAFETY: a poll names no buffer.
        unsafe { ring::push(&mut self.ring, &poll) }.map_err(|e| End::Failed(ClientError::from_io(e)))?;
        self.poll_in_flight = true;
        Ok(())
    }

    /// Starts sending output if no send is in flight. Returns how long the
    /// loop may sleep (`None`: until a completion).
    fn write(&mut self) -> Result<Option<Duration>, End> {
        if self.send_in_flight {
            return Ok(None);
        }
        if let Some(until) = self.hold_until {
            // batch_delay: the batch waits so that more calls join it.
            let now = Instant::now();
            if now < until {
                return Ok(Some(until - now));
            }
            self.hold_until = None;
            if self.link.take_output(&mut self.out) == Output::Gone {
                return Err(End::Gone);
            }
        }
        let mut wait = None;
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
            match self.link.take_output(&mut self.out) {
                Output::Gone => return Err(End::Gone),
                Output::Empty(idle) => wait = Some(idle),
                Output::Taken => {
                    if let Some(delay) = self.link.config().batch_delay {
                        self.hold_until = Some(Instant::now() + delay);
                        return Ok(Some(delay));
                    }
                }
            }
        }
        if self.written < self.out.len() {
            let rest = &self.out[self.written..];
            let send = opcode::Send::new(types::Fd(self.stream.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(Op::Send.tag(0));
            // SAFETY: `out` is not touched until the send completes (`write`
            // returns early while it is in flight), and outlives the ring's
            // use of it (see `run`).
            unsafe { ring::push(&mut self.ring, &send) }.map_err(|e| End::Failed(ClientError::from_io(e)))?;
            self.send_in_flight = true;
        }
        Ok(wait)
    }
}
