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
//! trivially; a write that makes no progress for `idle_timeout` (a client
//! that never reads) closes the connection.
//!
//! Deferred responses and `async` handlers answer through the connection's
//! completions, which wake the task through a `Notify`; the task waits for
//! "readable, or answers arrived, or a timeout" in one `select!`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwire_common::{net, CloseReason, ConnTally};
use fastwire_proto::{Connection, Flow, ServerConn, Wake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

use crate::server::{ConnHandler, Shared};

// After this long without traffic a connection gives its buffers back.
use fastwire_common::timeouts::IDLE_RELEASE;

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
pub(crate) async fn serve<H: ConnHandler>(parts: Parts, mut stream: TcpStream, shared: Arc<Shared>, handler: H) {
    let Parts { id, wake, progress } = parts;
    let _guard = Guard { id, shared: &shared };
    let config = &shared.config;
    let mut conn = ServerConn::with_waker(config, shared.limit.clone(), wake.clone(), 0);
    conn.set_peer_addr(stream.peer_addr().ok());
    let mut tally = ConnTally::default();
    let mut last_activity = Instant::now();
    let handshake_deadline = Instant::now() + config.handshake_timeout;
    let write_timeout = config.idle_timeout.unwrap_or(Duration::MAX);
    let mut reading = true;
    let reason = 'conn: loop {
        // Serve everything received so far (and collect deferred answers),
        // writing as the output fills.
        let mut failed = None;
        let mut delayed = false;
        loop {
            let flow = conn.process(&handler);
            tally.sync(&conn, &shared.counters);
            progress.deferred.store(conn.deferred_in_flight(), Ordering::Relaxed);
            if let (Some(delay), false, Ok(Flow::NeedInput), true) = (config.batch_delay, delayed, &flow, reading) {
                if conn.has_output() {
                    // batch_delay: let requests that arrive meanwhile join this batch.
                    delayed = true;
                    tokio::time::sleep(delay).await;
                    if let Ok(n @ 1..) = read(&stream, &mut conn) {
                        last_activity = Instant::now();
                        let _ = n;
                        continue;
                    }
                }
            }
            let wrote = conn.has_output();
            while conn.has_output() {
                progress.unwritten.store(conn.unwritten_responses(), Ordering::Relaxed);
                let output = conn.output();
                match timeout(write_timeout, stream.write(output)).await {
                    Ok(Ok(n)) if n > 0 => conn.advance_output(n),
                    Ok(_) => break 'conn CloseReason::WriteError,
                    Err(_) => break 'conn CloseReason::StoppedReading,
                }
            }
            progress.unwritten.store(0, Ordering::Relaxed);
            match flow {
                Ok(Flow::OutputFull) if wrote => continue,
                Ok(Flow::OutputFull) => {
                    // Full of deferred calls (max_in_flight) or waiting for
                    // a concurrency slot: no reading until answers come.
                    if shared.stopping() {
                        break 'conn CloseReason::Shutdown;
                    }
                    answers(&wake, &handler).await;
                    continue;
                }
                Ok(Flow::NeedInput) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break shared.counters.connection_failed(&conn, &e);
        }
        if !reading {
            // The client closed its side: only deferred answers are awaited.
            if conn.deferred_in_flight() == 0 {
                break CloseReason::ClosedByClient;
            }
            let quiet = config.idle_timeout.unwrap_or(Duration::MAX);
            tokio::select! {
                _ = answers(&wake, &handler) => continue,
                _ = tokio::time::sleep(quiet) => break CloseReason::DeferredStalled,
            }
        }
        if shared.stopping() {
            break CloseReason::Shutdown;
        }
        // Read more, or time out.
        let wait_until = if conn.is_handshake_done() {
            let idle_deadline = config.idle_timeout.map(|t| last_activity + t);
            let release_at = Instant::now() + IDLE_RELEASE;
            idle_deadline.map_or(release_at, |d| d.min(release_at))
        } else {
            handshake_deadline
        };
        // ANCHOR: readable
        // Wait for readability *without* a buffer, then read into one: an
        // idle connection that gave its buffers back does not take them
        // again just to wait. Deferred answers interrupt the wait.
        let readable = std::future::poll_fn(|cx| stream.poll_read_ready(cx));
        let ready = tokio::select! {
            biased;
            _ = answers(&wake, &handler) => continue,
            ready = tokio::time::timeout_at(wait_until, readable) => ready,
        };
        let read = ready.map(|r| r.and_then(|()| read(&stream, &mut conn)));
        // ANCHOR_END: readable
        match read {
            Ok(Ok(0)) => reading = false,
            Ok(Ok(_)) => last_activity = Instant::now(),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {} // a spurious wake-up
            Ok(Err(_)) => break CloseReason::ReadError,
            Err(_) if !conn.is_handshake_done() => {
                shared.counters.handshake_timed_out(&conn);
                break CloseReason::HandshakeTimeout;
            }
            Err(_) if conn.deferred_in_flight() > 0 => last_activity = Instant::now(), // waiting is not idleness
            Err(_) if config.idle_timeout.is_some_and(|t| last_activity.elapsed() >= t) => break CloseReason::Idle,
            // Quiet for a while: an idle connection keeps no large buffers.
            Err(_) => conn.release_buffers(),
        }
    };
    if reason == CloseReason::Shutdown && conn.deferred_in_flight() > 0 {
        // Graceful shutdown: answer the deferred calls still running (the
        // handle aborts this task when the grace period ends).
        while conn.deferred_in_flight() > 0 {
            answers(&wake, &handler).await;
            if conn.collect_deferred().is_err() {
                break;
            }
            progress.deferred.store(conn.deferred_in_flight(), Ordering::Relaxed);
            let output = conn.output();
            if stream.write_all(output).await.is_err() {
                break;
            }
            let len = output.len();
            conn.advance_output(len);
        }
    }
    tally.sync(&conn, &shared.counters);
    tally.finish(&shared.counters);
    tracing::trace!(%reason, "connection done");
    // Everything is written: end-of-stream after the last response, then a
    // lingering close (see `fastwire_common::net::LINGER`) unless the client
    // already closed its side, so no written response is lost to a reset.
    let _ = stream.shutdown().await;
    if reason != CloseReason::ClosedByClient {
        let drain = async {
            let mut discarded = 0;
            // On the heap: an array here would be part of every connection
            // task's future (its state holds the locals of every await
            // point), costing each idle connection 4 KiB.
            let mut scratch = vec![0u8; 4096];
            while discarded < net::LINGER_MAX_BYTES {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => discarded += n,
                }
            }
        };
        let _ = timeout(net::LINGER, drain).await;
    }
}
