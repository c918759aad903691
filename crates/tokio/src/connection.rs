//! One server connection: a task that reads, serves and writes in turn.
//!
//! ```text
//! loop {
//!     process what has arrived (decode, handler, encode)
//!     write all the output
//!     read more (until: the handshake timeout, idle timeout, shutdown)
//! }
//! ```
//!
//! One task, one buffer set, no lock: the task owns its `ServerConn`. The
//! task waits for readability with no buffer in hand, then reads into its
//! worker thread's read buffer and hands the connection a copy of only the
//! bytes that came (see [`read`]), so a connection between calls holds no
//! buffer sized for a batch. Reading and writing alternate: while the
//! task writes a batch, new requests wait in the kernel's socket buffer, and
//! the next read takes them all at once, so batches grow with load. Output
//! is always written before reading more, so the output limit holds
//! trivially. When to give buffers back or close (the handshake, idle and
//! stopped-reading timeouts) is the state machine's own decision
//! ([`ServerConn::poll_timeout`](fastwire_proto::ServerConn::poll_timeout)):
//! the task sleeps until the deadline it names, and hands it the time.
//!
//! Deferred responses and `async` handlers answer through the connection's
//! completions, which wake the task through a `Notify`; the task waits for
//! "readable, or answers arrived, or a timeout" in one `select!`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fastwire_common::{net, CloseReason, ConnTally};
use fastwire_proto::driver::Expired;
use fastwire_proto::driver::{Connection, Flow, Wake};
use fastwire_proto::ServerConn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::server::{ConnHandler, Shared};

/// Deregisters the connection when its task ends (or is aborted).
struct Guard<'a> {
    id: u64,
    shared: &'a Shared,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.shared.registry.deregister(self.id, &self.shared.counters);
    }
}

/// Wakes the connection's task when deferred answers arrive or shutdown
/// starts. A `Notify` keeps one permit, so a wake-up before the task waits
/// is not lost.
#[derive(Default)]
pub(crate) struct TaskWake(Notify);

impl TaskWake {
    /// Wakes the task, or its next wait if it is not waiting.
    pub(crate) fn notify(&self) {
        self.0.notify_one();
    }
}

impl Wake for TaskWake {
    fn wake(&self, _key: usize) {
        self.notify();
    }
}

/// Waits until deferred answers (or a free concurrency slot) wake the
/// connection, polling an async handler's request futures meanwhile: they
/// run here, beside the socket, and answer through the wake-up.
async fn answers<H: ConnHandler>(wake: &TaskWake, handler: &H) {
    tokio::select! {
        _ = wake.0.notified() => {}
        _ = std::future::poll_fn(|cx| handler.poll_requests(cx)), if handler.has_requests() => {}
    }
}

/// Bytes of each worker thread's read buffer.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    /// The read buffer of the connections this thread runs, one at a time
    /// (nothing is awaited while it is borrowed), as a mio loop has one.
    static SCRATCH_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Reads what the socket holds without waiting. A connection in the middle
/// of a message reads straight into its own buffer, which already holds
/// the message's start (a large value arrives in place, never copied);
/// otherwise it reads into the thread's buffer and keeps a copy of only the
/// bytes received. A connection reading into a buffer of its own each time
/// would take a batch-sized allocation for a call of a few bytes, and
/// allocations interleaved with the connections' tasks leave holes the
/// allocator cannot give back once they are released: resident memory per
/// idle connection stays as high as if they were never released.
fn read(stream: &TcpStream, conn: &mut ServerConn) -> std::io::Result<usize> {
    if conn.buffered_input() > 0 {
        return stream.try_read_buf(conn.read_buffer());
    }
    SCRATCH_BUFFER.with_borrow_mut(|scratch| {
        let n = stream.try_read(scratch)?;
        conn.received(&scratch[..n]);
        Ok(n)
    })
}

/// What shutdown can read of a connection from outside its task.
#[derive(Default)]
pub(crate) struct Progress {
    /// Responses produced and not yet written.
    pub(crate) unwritten: AtomicUsize,
    /// Deferred calls not answered yet.
    pub(crate) deferred: AtomicUsize,
}

/// What the server keeps of a connection beside its task: its id in the
/// registry, its wake-up, what shutdown reads of it.
pub(crate) struct Parts {
    pub(crate) id: u64,
    pub(crate) wake: Arc<TaskWake>,
    pub(crate) progress: Arc<Progress>,
}

// The task's future is most of an idle connection's memory: its state
// holds every local live across an await, and the largest set of futures
// awaited at once (the read wait: answers, and readiness under a timeout).
// Shutdown wakes the task through `wake` rather than a watch future of its
// own, and readiness is polled (`poll_read_ready`, a waker slot in the
// socket's registration) rather than awaited through `readable()` (a waiter
// node in the future).
pub(crate) async fn serve<H: ConnHandler>(parts: Parts, stream: TcpStream, shared: Arc<Shared>, handler: H) {
    let _guard = Guard { id: parts.id, shared: &shared };
    let mut task = Task::new(parts, stream, &shared, &handler);
    let reason = loop {
        if let Err(reason) = task.serve_received().await {
            break reason;
        }
        if let Some(reason) = task.await_input().await {
            break reason;
        }
    };
    if reason == CloseReason::Shutdown {
        task.answer_deferred().await;
    }
    task.close(reason).await;
}

/// One connection's task: the socket, the protocol state machine, and what
/// the I/O around it needs between awaits.
struct Task<'a, H> {
    stream: TcpStream,
    conn: ServerConn,
    shared: &'a Shared,
    handler: &'a H,
    wake: Arc<TaskWake>,
    progress: Arc<Progress>,
    tally: ConnTally,
}

impl<'a, H: ConnHandler> Task<'a, H> {
    fn new(parts: Parts, stream: TcpStream, shared: &'a Shared, handler: &'a H) -> Self {
        let config = &shared.config;
        let mut conn = ServerConn::with_waker(config, shared.limit.clone(), parts.wake.clone(), 0);
        conn.set_peer_addr(stream.peer_addr().ok());
        conn.start_clock(Instant::now());
        Task { stream, conn, shared, handler, wake: parts.wake, progress: parts.progress, tally: ConnTally::default() }
    }

    /// Serves everything received so far (and collects deferred answers),
    /// writing as the output fills, until the connection needs input; or
    /// why it closes.
    async fn serve_received(&mut self) -> Result<(), CloseReason> {
        let mut delayed = false;
        loop {
            let flow = self.conn.process(self.handler);
            self.tally.sync(&self.conn, &self.shared.counters);
            self.progress.deferred.store(self.conn.deferred_in_flight(), Ordering::Relaxed);
            let batch_delay = self.shared.config.batch_delay.filter(|_| !delayed && self.conn.is_serving());
            if let (Some(delay), Ok(Flow::NeedInput)) = (batch_delay, &flow) {
                if self.conn.has_output() {
                    // batch_delay: let requests that arrive meanwhile join this batch.
                    delayed = true;
                    tokio::time::sleep(delay).await;
                    if let Ok(n @ 1..) = read(&self.stream, &mut self.conn) {
                        self.conn.arrived(n);
                        continue;
                    }
                }
            }
            let wrote = self.write_output().await?;
            match flow {
                Ok(Flow::OutputFull) if wrote => {}
                Ok(Flow::OutputFull) => {
                    // Full of deferred calls (max_in_flight) or waiting for
                    // a concurrency slot: no reading until answers come.
                    if self.shared.stopping() {
                        return Err(CloseReason::Shutdown);
                    }
                    answers(&self.wake, self.handler).await;
                }
                Ok(Flow::NeedInput) => return Ok(()),
                Err(e) => {
                    // It began its close; the counters read why.
                    self.shared.counters.connection_failed(&self.conn, &e);
                    return Err(self.conn.close_reason().unwrap_or(CloseReason::ProtocolError));
                }
            }
        }
    }

    /// Writes all the output; whether there was any. While the socket is
    /// full the write waits, until the connection's deadline (a client that
    /// never reads is closed after `idle_timeout`).
    async fn write_output(&mut self) -> Result<bool, CloseReason> {
        let wrote = self.conn.has_output();
        while self.conn.has_output() {
            self.progress.unwritten.store(self.conn.unwritten_responses(), Ordering::Relaxed);
            match self.stream.try_write(self.conn.output()) {
                Ok(n) if n > 0 => {
                    self.conn.advance_output(n);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => return Err(CloseReason::WriteError),
            }
            if tokio::time::timeout_at(self.deadline(), self.stream.writable()).await.is_err() {
                self.expired()?;
            }
        }
        self.progress.unwritten.store(0, Ordering::Relaxed);
        Ok(wrote)
    }

    /// The connection's next deadline.
    fn deadline(&self) -> tokio::time::Instant {
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        self.conn.poll_timeout().map_or_else(far, tokio::time::Instant::from_std)
    }

    /// The deadline came: hands the connection the time; why it closes,
    /// if it does.
    fn expired(&mut self) -> Result<(), CloseReason> {
        let expired = self.conn.handle_timeout(Instant::now());
        self.shared.counters.saw(&self.conn, expired);
        match expired {
            Expired::Nothing | Expired::ReleaseBuffers => Ok(()),
            Expired::Closing(reason) | Expired::Closed(reason) => Err(reason),
        }
    }

    /// Waits for more input, deferred answers or a timeout, and reads what
    /// came; `Some` when the connection closes.
    async fn await_input(&mut self) -> Option<CloseReason> {
        if !self.conn.is_serving() {
            // The client closed its side: only deferred answers are awaited.
            if self.conn.deferred_in_flight() == 0 {
                return self.conn.close_reason();
            }
            let answered = tokio::time::timeout_at(self.deadline(), answers(&self.wake, self.handler)).await;
            return answered.or_else(|_| self.expired()).err();
        }
        if self.shared.stopping() {
            return Some(CloseReason::Shutdown);
        }
        // ANCHOR: readable
        // Wait for readability *without* a buffer, then read into one: an
        // idle connection that gave its buffers back does not take them
        // again just to wait. Deferred answers interrupt the wait.
        let stream = &self.stream;
        let readable = std::future::poll_fn(|cx| stream.poll_read_ready(cx));
        let ready = tokio::select! {
            biased;
            _ = answers(&self.wake, self.handler) => return None,
            ready = tokio::time::timeout_at(self.deadline(), readable) => ready,
        };
        let Ok(ready) = ready else { return self.expired().err() };
        let read = ready.and_then(|()| read(&self.stream, &mut self.conn));
        // ANCHOR_END: readable
        match read {
            Ok(0) => self.conn.end_of_stream(),
            Ok(n) => {
                self.conn.arrived(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {} // a spurious wake-up
            Err(_) => return Some(CloseReason::ReadError),
        }
        None
    }

    /// Graceful shutdown: answers the deferred calls still running (the
    /// handle aborts this task when the grace period ends).
    async fn answer_deferred(&mut self) {
        while self.conn.deferred_in_flight() > 0 {
            answers(&self.wake, self.handler).await;
            if self.conn.collect_deferred().is_err() {
                break;
            }
            self.progress.deferred.store(self.conn.deferred_in_flight(), Ordering::Relaxed);
            let output = self.conn.output();
            if self.stream.write_all(output).await.is_err() {
                break;
            }
            let len = output.len();
            self.conn.advance_output(len);
        }
    }

    /// Counts the connection out, then closes it: end-of-stream after the
    /// last response, then a lingering close (the connection's: see
    /// `ServerConn::shut_write`) unless the client already closed its side,
    /// so no written response is lost to a reset.
    async fn close(&mut self, reason: CloseReason) {
        self.tally.sync(&self.conn, &self.shared.counters);
        self.tally.finish(&self.shared.counters);
        tracing::trace!(%reason, "connection done");
        let _ = self.stream.shutdown().await;
        if !self.conn.shut_write(reason, Instant::now()) {
            return;
        }
        // Read and discard until the connection says the linger is over.
        // On the heap: an array here would be part of every connection
        // task's future (its state holds the locals of every await point).
        let mut scratch = vec![0u8; 4096];
        while let Some(until) = self.conn.linger_deadline() {
            let read = tokio::time::timeout_at(until.into(), self.stream.read(&mut scratch)).await;
            let read = read.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            net::lingered(&mut self.conn, read, Instant::now());
        }
    }
}
