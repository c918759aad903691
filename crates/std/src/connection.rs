//! One server connection: a reader thread and a writer thread around a
//! `ServerConn` behind a mutex.
//!
//! ```text
//!  reader thread                          writer thread
//!  read(socket) into its own buffer       wait until output is ready
//!  lock; hand the buffer over (swap)      lock; take the output (swap)
//!  process: decode, handler, encode       unlock
//!  unlock; wake the writer                write_all(socket)
//! ```
//!
//! Deferred responses (a handler that answers later, from any thread) wake
//! the writer thread (an unpark), which collects them into the output and
//! writes them; the reader goes on reading meanwhile.
//!
//! Neither thread holds the lock during a system call, and the buffers are
//! swapped, not copied. While the writer is blocked in `write`, the reader
//! keeps decoding: that is pipelining. If the output reaches the limits
//! (`max_output_buffer`, `max_in_flight`) the reader waits for the writer to
//! drain it, so a client that never reads cannot grow the server's memory;
//! and a write that makes no progress for `idle_timeout` closes the connection.
//! After a second without traffic, both threads drop their buffers.
//!
//! Closing is graceful whatever the reason (the client left, a protocol
//! error, idle, shutdown): the reader stops, the writer flushes and sends
//! end-of-stream, and the reader drains the client's input until it closes
//! (the connection's lingering close, see `ServerConn::shut_write`), so no
//! written response is lost to a reset.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_common::{net, CloseReason, ConnTally, ServerCounters};
use fastwire_proto::driver::{Connection, Expired, Flow, Wake};
use fastwire_proto::{ConcurrencyLimit, Error, Handler, ServerConfig, ServerConn};

use crate::server::Shared;

/// Thread stack size: connection threads need little, and ten thousand of
/// them at the default 2 MiB would reserve 20 GiB of address space.
const STACK_SIZE: usize = 128 * 1024;

/// The first read's size; it doubles while reads fill it.
const MIN_CHUNK: usize = 4096;

pub(crate) struct ConnShared {
    state: Mutex<ConnState>,
    /// The writer thread, woken (unparked) when output or deferred
    /// responses are ready. An unpark is never lost: one that comes before
    /// the writer parks makes its next park return at once.
    writer: Arc<WriterWake>,
    output_drained: Condvar,
    /// The writer sent bytes since the reader last looked at the clock:
    /// the reader tells the connection (its rule closes a connection whose
    /// output makes no progress for `idle_timeout`: a client that stopped
    /// reading). The writer writes without the lock, so it notes progress
    /// here rather than in the connection.
    wrote: AtomicBool,
}

/// Wakes the connection's writer thread; the [`Wake`] of its deferred responses.
#[derive(Default)]
struct WriterWake(OnceLock<Thread>);

impl Wake for WriterWake {
    fn wake(&self, _key: usize) {
        if let Some(thread) = self.0.get() {
            thread.unpark();
        }
    }
}

struct ConnState {
    conn: ServerConn,
    /// The reader is done: the writer flushes what is left, then closes.
    closing: bool,
    /// The socket failed: both threads stop.
    broken: bool,
    /// The writer flushed everything after `closing` and sent end-of-stream.
    flushed: bool,
    /// Responses in the batch the writer is writing now.
    in_writer: usize,
    /// The writer took output and is writing it: nobody else may write
    /// until it is done (bytes of two writers must not interleave).
    writing: bool,
    /// The state machine failed (a protocol error, a handler panic); counted once.
    failed: bool,
    /// What this connection already added to the server's counters (either
    /// thread may serve or collect, so both update it).
    tally: ConnTally,
    /// The reader waits on `output_drained` for the limits to allow more.
    reader_waiting: bool,
    /// The connection said it has been quiet: the writer gives
    /// its buffer back too (the reader's look at the clock wakes it).
    release_writer: bool,
    /// The server is stopping and found the connection quiet: its
    /// end-of-stream went out at once (see [`ConnShared::close_if_quiet`]);
    /// nothing more is served, and the reader lingers.
    shut_by_stop: bool,
}

impl ConnState {
    /// Counts a failure of the state machine the first time either thread sees it.
    fn sync(&mut self, counters: &ServerCounters) {
        self.tally.sync(&self.conn, counters);
    }

    /// The state machine failed with `error` (it began its close by
    /// itself): counted the first time either thread sees it.
    fn fail(&mut self, error: &Error, counters: &ServerCounters) {
        if !std::mem::replace(&mut self.failed, true) {
            counters.connection_failed(&self.conn, error);
        }
    }

    /// Why the failed state machine closes.
    fn failure(&self) -> CloseReason {
        self.conn.close_reason().unwrap_or(CloseReason::ProtocolError)
    }
}

impl ConnShared {
    pub(crate) fn new(
        config: &ServerConfig,
        limit: Option<Arc<ConcurrencyLimit>>,
        peer: Option<std::net::SocketAddr>,
    ) -> Arc<Self> {
        let writer = Arc::new(WriterWake::default());
        let waker: Arc<dyn Wake> = writer.clone();
        let mut conn = ServerConn::with_waker(config, limit, waker, 0);
        conn.set_peer_addr(peer);
        conn.start_clock(Instant::now());
        Arc::new(ConnShared {
            state: Mutex::new(ConnState {
                conn,
                closing: false,
                broken: false,
                flushed: false,
                in_writer: 0,
                writing: false,
                failed: false,
                tally: ConnTally::default(),
                reader_waiting: false,
                release_writer: false,
                shut_by_stop: false,
            }),
            writer,
            output_drained: Condvar::new(),
            wrote: AtomicBool::new(false),
        })
    }

    fn wake_writer(&self) {
        self.writer.wake(0);
    }

    /// Tells the connection of the writer's progress since the last look.
    fn report_writes(&self, state: &mut ConnState) {
        if self.wrote.swap(false, Ordering::Relaxed) {
            state.conn.written(false);
        }
    }

    /// Hands the connection the time `now`, with the writer's progress.
    /// The verdict `Closed` leaves nothing to flush: the socket is shut,
    /// which ends a write blocked on a client that stopped reading.
    fn look(&self, state: &mut ConnState, server: &Shared, socket: &TcpStream, now: Instant) -> Expired {
        self.report_writes(state);
        let expired = state.conn.handle_timeout(now);
        server.counters.saw(&state.conn, expired);
        if let Expired::Closed(_) = expired {
            state.broken = true;
            let _ = socket.shutdown(Shutdown::Both);
            self.output_drained.notify_all();
        }
        expired
    }

    /// How long the reader may wait from `now`: until the connection's next
    /// deadline (`None`: until something happens). A shutdown needs no
    /// look: it is an event ([`close_if_quiet`](Self::close_if_quiet)).
    fn next_look(&self, state: &ConnState, now: Instant) -> Option<Duration> {
        let next = state.conn.poll_timeout()?;
        Some(next.saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// The server is stopping (called by the stopping thread for every
    /// connection, and by the writer whenever it runs out of work while
    /// the server stops): a connection with nothing to serve (no output
    /// queued or being written, no deferred call running, no request
    /// waiting for room in the output) sends its end-of-stream now, so
    /// that a reader blocked in `read` on a quiet client needs no timer to
    /// notice the shutdown: the client closes its side in reply, the read
    /// returns, and the reader lingers as for any close. Half a request
    /// buffered is no request; bytes that come afterwards are not served.
    pub(crate) fn close_if_quiet(&self, socket: &TcpStream, now: Instant) {
        Self::close_locked_if_quiet(&mut self.lock(), socket, now);
    }

    fn close_locked_if_quiet(state: &mut ConnState, socket: &TcpStream, now: Instant) {
        let quiet = !(state.closing
            || state.broken
            || state.shut_by_stop
            || state.writing
            || state.reader_waiting
            || state.conn.has_output()
            || state.conn.deferred_in_flight() > 0);
        if quiet {
            state.shut_by_stop = true;
            let _ = socket.shutdown(Shutdown::Write);
            // The connection lingers from now, by its own bounds.
            state.conn.shut_write(CloseReason::Shutdown, now);
        }
    }

    /// When a connection the shutdown closed ([`close_if_quiet`](Self::close_if_quiet))
    /// stops lingering: its reader, blocked in `read` with no deadline to
    /// wake at, is handed the time then by the stopping thread
    /// ([`end_linger_if_due`](Self::end_linger_if_due)).
    pub(crate) fn stop_linger_deadline(&self) -> Option<Instant> {
        let state = self.lock();
        state.shut_by_stop.then(|| state.conn.linger_deadline()).flatten()
    }

    /// Hands a connection the shutdown closed the time `now`: once the
    /// connection says its linger is over, the socket is shut, which ends
    /// the reader's `read`.
    pub(crate) fn end_linger_if_due(&self, socket: &TcpStream, now: Instant) {
        let mut state = self.lock();
        if state.shut_by_stop && matches!(state.conn.handle_timeout(now), Expired::Closed(_)) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Deferred calls not answered yet.
    pub(crate) fn deferred_in_flight(&self) -> usize {
        self.lock().conn.deferred_in_flight()
    }

    /// The grace period is over: both threads stop waiting and end.
    pub(crate) fn cut(&self) {
        self.lock().broken = true;
        self.output_drained.notify_all();
        self.wake_writer();
    }

    /// The reader waits for the writer (room in the output, deferred
    /// answers, the flush) at most `wait` (`None`: until woken).
    fn wait_drained<'a>(
        &self,
        mut state: MutexGuard<'a, ConnState>,
        wait: Option<Duration>,
    ) -> MutexGuard<'a, ConnState> {
        state.reader_waiting = true;
        state = match wait {
            Some(wait) => self.output_drained.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0,
            None => self.output_drained.wait(state).unwrap_or_else(|p| p.into_inner()),
        };
        state.reader_waiting = false;
        state
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn unwritten_responses(&self) -> usize {
        let state = self.lock();
        state.conn.unwritten_responses() + state.in_writer
    }
}

/// Deregisters the connection when both of its threads are gone.
struct Guard {
    id: u64,
    server: Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.server.deregister(self.id);
    }
}

pub(crate) fn spawn<H: Handler + 'static>(
    id: u64,
    stream: Arc<TcpStream>,
    conn: Arc<ConnShared>,
    server: Arc<Shared>,
    handler: Arc<H>,
) -> io::Result<()> {
    let guard = Arc::new(Guard { id, server: Arc::clone(&server) });
    let write_stream = Arc::clone(&stream);
    let writer = {
        let (conn, guard) = (Arc::clone(&conn), Arc::clone(&guard));
        thread::Builder::new().name("fastwire-writer".into()).stack_size(STACK_SIZE).spawn(move || {
            write_loop(&write_stream, &conn, &server);
            drop(guard);
        })?
    };
    // Before the reader starts: no handler can defer before the writer can be woken.
    let _ = conn.writer.0.set(writer.thread().clone());
    let spawned = thread::Builder::new().name("fastwire-reader".into()).stack_size(STACK_SIZE).spawn(move || {
        read_loop(&stream, &conn, &guard.server, &*handler);
        drop(guard);
    });
    if let Err(e) = spawned {
        // The writer thread exits once it sees the connection closing.
        drop(writer);
        return Err(e);
    }
    Ok(())
}

fn read_loop(socket: &TcpStream, shared: &ConnShared, server: &Shared, handler: &dyn Handler) {
    let reason = read_until_closed(socket, shared, server, handler);
    tracing::trace!(%reason, "reader done");
    finish(socket, shared, server, reason);
}

/// Reads and serves until the connection closes; why it closed. The
/// socket's read timeout wakes the reader at the connection's deadlines;
/// a shutdown wakes it through the client (see `ConnShared::close_if_quiet`).
fn read_until_closed(socket: &TcpStream, shared: &ConnShared, server: &Shared, handler: &dyn Handler) -> CloseReason {
    let mut stream = socket;
    let config = &server.config;
    let _ = stream.set_read_timeout(shared.next_look(&shared.lock(), Instant::now()));
    let mut buf = BytesMut::new();
    let mut chunk = MIN_CHUNK;
    loop {
        if server.stopping.load(Ordering::Acquire) {
            return CloseReason::Shutdown;
        }
        match net::read_some(&mut stream, &mut buf, chunk) {
            Ok(0) => {
                // The reader reads only once what came before is served.
                let mut state = shared.lock();
                state.conn.end_of_stream();
                if state.shut_by_stop {
                    // The client's answer to the shutdown's end-of-stream.
                    return CloseReason::Shutdown;
                }
                return state.conn.close_reason().unwrap_or(CloseReason::ClosedByClient);
            }
            Ok(n) => {
                // Reads that fill the chunk double it, up to buffer_size: busy
                // connections read in big gulps, idle ones touch little memory.
                if n == chunk {
                    chunk = (chunk * 2).min(config.buffer_size.max(MIN_CHUNK));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let mut state = shared.lock();
                let now = Instant::now();
                match shared.look(&mut state, server, socket, now) {
                    Expired::Nothing => {}
                    Expired::ReleaseBuffers => {
                        // An idle connection keeps no large buffers, the
                        // writer's included.
                        buf = BytesMut::new();
                        chunk = MIN_CHUNK;
                        state.release_writer = true;
                        shared.wake_writer();
                    }
                    Expired::Closing(reason) | Expired::Closed(reason) => return reason,
                }
                let _ = stream.set_read_timeout(shared.next_look(&state, now));
                continue;
            }
            Err(_) => return CloseReason::ReadError,
        }
        if let Err(reason) = serve_read(socket, &mut buf, shared, server, handler) {
            return reason;
        }
    }
}

/// Hands what was read to the connection and serves it, writing what the
/// socket takes now; or why the connection closes.
fn serve_read(
    socket: &TcpStream,
    buf: &mut BytesMut,
    shared: &ConnShared,
    server: &Shared,
    handler: &dyn Handler,
) -> Result<(), CloseReason> {
    let mut state = shared.lock();
    state.conn.arrived(buf.len());
    if state.shut_by_stop {
        // Came after the shutdown's end-of-stream: not served (counted
        // against the linger's bound, above).
        buf.clear();
        return Err(CloseReason::Shutdown);
    }
    state.conn.receive_buffer(buf);
    let result = loop {
        match state.conn.process(handler) {
            Ok(Flow::NeedInput) => break Ok(()),
            // ANCHOR: backpressure
            Ok(Flow::OutputFull) => {
                // Backpressure: wait for the writer (or deferred answers,
                // which it collects) instead of reading more.
                shared.wake_writer();
                while state.conn.is_output_full() && !state.broken && !state.failed {
                    let now = Instant::now();
                    if let Expired::Closed(reason) = shared.look(&mut state, server, socket, now) {
                        return Err(reason);
                    }
                    let wait = shared.next_look(&state, now);
                    state = shared.wait_drained(state, wait);
                }
                if state.broken {
                    break Ok(());
                }
            }
            // ANCHOR_END: backpressure
            Err(e) => break Err(e),
        }
    };
    state.sync(&server.counters);
    // ANCHOR: reader_writes
    if state.conn.has_output() && !state.writing && server.config.batch_delay.is_none() {
        // The writer is idle: the reader writes what the socket takes
        // now itself (non-blocking), saving the writer's wake-up and a
        // switch to its thread per batch. What is left (a full socket
        // buffer: a slow client) is the writer's, which blocks on it.
        if let Ok(n) = net::send_now(socket, state.conn.output()) {
            state.conn.advance_output(n);
        }
    }
    if state.conn.has_output() {
        shared.wake_writer();
    }
    // ANCHOR_END: reader_writes
    if let Err(e) = result {
        state.fail(&e, &server.counters);
        return Err(state.failure());
    }
    if state.failed {
        return Err(state.failure()); // the writer saw a deferred handler panic
    }
    if state.broken {
        return Err(CloseReason::WriteError);
    }
    Ok(())
}

/// Reading is over, but deferred calls still running are answered (unless
/// the connection failed), until the connection says the close is stuck; a
/// forced shutdown cuts them (`cut`). Then the writer flushes and sends
/// end-of-stream, and the socket lingers (the connection's linger: see
/// `ServerConn::shut_write`) unless the client already closed its side.
fn finish(socket: &TcpStream, shared: &ConnShared, server: &Shared, reason: CloseReason) {
    let mut state = shared.lock();
    state.conn.begin_close(reason);
    while state.conn.deferred_in_flight() > 0 && !state.failed && !state.broken {
        shared.report_writes(&mut state);
        if let Expired::Closed(_) = state.conn.handle_timeout(Instant::now()) {
            break;
        }
        let wait = shared.next_look(&state, Instant::now());
        state = shared.wait_drained(state, wait);
    }
    state.sync(&server.counters);
    state.tally.finish(&server.counters);
    state.closing = true;
    shared.wake_writer();
    // The flush: a client that stopped reading meanwhile is cut off once
    // the output makes no progress for the connection's stuck time.
    while !state.flushed && !state.broken {
        let now = Instant::now();
        if let Expired::Closed(_) = shared.look(&mut state, server, socket, now) {
            break;
        }
        let wait = shared.next_look(&state, now);
        state = shared.wait_drained(state, wait);
    }
    let lingers = state.flushed && state.conn.shut_write(reason, Instant::now());
    drop(state);
    if lingers {
        linger(socket, shared);
    }
}

/// Reads and discards until the connection says the linger is over (the
/// client's end of stream, or its bounds: see `ServerConn::shut_write`).
fn linger(socket: &TcpStream, shared: &ConnShared) {
    let mut reader = socket;
    let mut scratch = [0u8; 8192];
    loop {
        let Some(until) = shared.lock().conn.linger_deadline() else { return };
        let left = until.saturating_duration_since(Instant::now());
        let read = match left.is_zero() {
            true => Err(io::ErrorKind::TimedOut.into()),
            false => socket.set_read_timeout(Some(left)).and_then(|()| io::Read::read(&mut reader, &mut scratch)),
        };
        net::lingered(&mut shared.lock().conn, read, Instant::now());
    }
}

fn write_loop(socket: &TcpStream, shared: &ConnShared, server: &Shared) {
    let config = &server.config;
    // A client that stops reading makes `write` block: the reader's look
    // at the connection cuts it off (it shuts the socket) once the output
    // makes no progress for idle_timeout.
    let mut out = BytesMut::new();
    loop {
        let mut state = shared.lock();
        loop {
            // Deferred answers that arrived (the reader may be waiting for
            // the in-flight count to drop, so tell it).
            let deferred = state.conn.deferred_in_flight();
            if let Err(e) = state.conn.collect_deferred() {
                if !state.failed {
                    state.fail(&e, &server.counters);
                    // Wake the reader from `read`: the connection closes.
                    let _ = socket.shutdown(Shutdown::Read);
                }
            }
            if state.conn.deferred_in_flight() != deferred && !state.closing {
                state.sync(&server.counters);
            }
            // Woken for answers or a free concurrency slot: the reader may be
            // waiting for either.
            if state.reader_waiting {
                shared.output_drained.notify_all();
            }
            if state.conn.has_output() {
                if let Some(delay) = config.batch_delay {
                    // Let more responses join this batch.
                    drop(state);
                    thread::sleep(delay);
                    state = shared.lock();
                }
                state.in_writer = state.conn.unwritten_responses();
                state.conn.take_output(&mut out);
                state.writing = true;
                break;
            }
            if state.broken {
                return;
            }
            if state.closing {
                // Everything is written: end-of-stream after the last response.
                let _ = socket.shutdown(Shutdown::Write);
                state.flushed = true;
                drop(state);
                shared.output_drained.notify_all();
                return;
            }
            if std::mem::take(&mut state.release_writer) {
                out = BytesMut::new();
            }
            if server.stopping.load(Ordering::Acquire) {
                // Out of work while the server stops: maybe quiet now.
                ConnShared::close_locked_if_quiet(&mut state, socket, Instant::now());
            }
            // Until output, answers, the close or a release wake it.
            drop(state);
            thread::park();
            state = shared.lock();
        }
        // ANCHOR: writer
        // Room in the output for a reader held back by the limits (a
        // notify is a system call even when nobody waits: only then).
        let notify = state.reader_waiting;
        drop(state);
        if notify {
            shared.output_drained.notify_all();
        }
        let written = write_progressing(socket, &out, shared);
        out.clear();
        let mut state = shared.lock();
        state.in_writer = 0;
        state.writing = false;
        state.conn.written(written.is_ok());
        if written.is_err() {
            state.broken = true;
            drop(state);
            shared.output_drained.notify_all();
            // Wake the reader if it is blocked in `read`.
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
        // ANCHOR_END: writer
    }
}

/// Writes all of `out`, noting each step of progress for the connection's
/// rule on a client that stopped reading.
fn write_progressing(mut stream: &TcpStream, out: &[u8], shared: &ConnShared) -> io::Result<()> {
    let mut rest = out;
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                rest = &rest[n..];
                shared.wrote.store(true, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
