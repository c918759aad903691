//! One server connection: a task on its core's executor that reads, serves
//! and writes in turn, like the tokio backend's, but every read and write is
//! an io_uring request that the executor submits in batches with others.
//!
//! When to give buffers back or close is the state machine's own decision
//! ([`ServerConn::poll_timeout`](fastwire_proto::ServerConn::poll_timeout)),
//! handed the time when the task wakes. Reads have no timeout: the
//! process's clock thread (`clock`) wakes the task at that deadline (an [`Alarm`](crate::clock::Alarm)),
//! and a shutdown wakes every task at once, so that no glommio timer is
//! registered while connections wait (each makes every reactor wake-up of
//! the executor allocate).
//!
//! Deferred responses (from `async` handlers on this executor, or from any
//! other thread) wake the task through a [`Signal`]; a pending read is
//! raced against it. Dropping glommio's read future is safe: glommio polls
//! for readability and only then receives, so no byte is lost with it.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use fastwire_common::{net, CloseReason, ConnTally};
use fastwire_proto::driver::{Connection, Expired, Flow, Wake};
use fastwire_proto::{Handler, ServerConn};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWriteExt};
use futures_util::task::AtomicWaker;
use glommio::net::TcpStream;

use crate::clock::Alarm;
use crate::server::{Local, Shared};

/// The smallest read, whatever `buffer_size` says.
const MIN_READ: usize = 4096;

/// Counts the connection out of its executor and the server when it ends.
struct Guard<'a> {
    shared: &'a Shared,
    local: &'a Local,
    unwritten: &'a Cell<u64>,
    deferred: &'a Cell<u64>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.local.open.set(self.local.open.get() - 1);
        if self.local.open.get() == 0 {
            // The executor's wind-down waits for this.
            self.local.winding.wake(0);
        }
        self.local.unwritten.set(self.local.unwritten.get() - self.unwritten.get());
        self.local.deferred.set(self.local.deferred.get() - self.deferred.get());
        self.shared.counters.close();
    }
}

/// A wake-up that any thread can send to one task: a flag and the task's
/// waker. A signal sent before the task waits is kept (the flag).
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Waits until signalled (at once if it already was), and clears it.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.set.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.set.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

impl Wake for Signal {
    fn wake(&self, _key: usize) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl crate::clock::Tick for Signal {
    fn tick(&self) {
        self.wake(0);
    }
}

/// What woke the connection.
enum Event {
    Read(io::Result<usize>),
    Woken,
}

/// Waits for the signal (a deferred answer, the alarm, a shutdown); false
/// once a forced shutdown began. Waiting forever is not an option: this
/// task's waker sits in the signal, which its own deferred responders
/// hold, so a task parked here at the end of the executor would never be
/// freed (nor its socket closed). A forced shutdown signals every
/// connection (`clock::tick_all`, after raising the flag), and the flag is
/// read after every wake-up.
async fn woken(signal: &Signal, shared: &Shared) -> bool {
    if shared.forced.load(Ordering::Acquire) {
        return false;
    }
    signal.wait().await;
    !shared.forced.load(Ordering::Acquire)
}

/// Reads once into the executor's scratch buffer and hands what came to the
/// connection (a copy, as the mio loops make). `AsyncRead` writes into the
/// buffer only within `poll_read`, so the scratch is borrowed only while the
/// read is polled: one buffer serves every connection of the executor, and
/// a connection waiting for bytes holds no read buffer of its own (reading
/// into the connection's buffer would keep one zeroed and waiting in every
/// idle connection).
async fn read_some(stream: &mut TcpStream, local: &Local, conn: &mut ServerConn, size: usize) -> Event {
    let result = std::future::poll_fn(|cx| {
        let mut scratch = local.scratch.borrow_mut();
        if scratch.len() < size {
            scratch.resize(size, 0);
        }
        match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut scratch[..size]) {
            Poll::Ready(Ok(n)) => {
                conn.received(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
    .await;
    Event::Read(result)
}

pub(crate) async fn serve<H: Handler + 'static>(
    stream: TcpStream,
    shared: Arc<Shared>,
    handler: Arc<H>,
    local: Rc<Local>,
) {
    let unwritten = Cell::new(0);
    let deferred = Cell::new(0);
    let _guard = Guard { shared: &shared, local: &local, unwritten: &unwritten, deferred: &deferred };
    let mut task = Task::new(stream, &shared, &*handler, &local, (&unwritten, &deferred));
    let reason = loop {
        if let Err(reason) = task.serve_received().await {
            break reason;
        }
        if let Some(reason) = task.await_input().await {
            break reason;
        }
    };
    task.close(reason).await;
}

/// One connection's task: the socket, the protocol state machine, and what
/// the I/O around it needs between awaits.
struct Task<'a, H> {
    stream: TcpStream,
    conn: ServerConn,
    shared: &'a Shared,
    handler: &'a H,
    local: &'a Local,
    /// Its responses unwritten and deferred calls unanswered, as counted in
    /// `local` (the guard takes them back out if the task is dropped).
    unwritten: &'a Cell<u64>,
    deferred: &'a Cell<u64>,
    signal: Arc<Signal>,
    tally: ConnTally,
    /// Wakes the task at the connection's deadline.
    alarm: Alarm,
    /// Each read takes up to this much (the scratch buffer's size).
    read_size: usize,
}

impl<'a, H: Handler + 'static> Task<'a, H> {
    fn new(
        stream: TcpStream,
        shared: &'a Shared,
        handler: &'a H,
        local: &'a Local,
        (unwritten, deferred): (&'a Cell<u64>, &'a Cell<u64>),
    ) -> Self {
        let config = &shared.config;
        let signal = Arc::new(Signal::default());
        let alarm = Alarm::new(Arc::downgrade(&signal) as std::sync::Weak<dyn crate::clock::Tick>);
        let conn = shared.new_conn(stream.peer_addr().ok(), signal.clone(), 0, Instant::now());
        Task {
            stream,
            conn,
            shared,
            handler,
            local,
            unwritten,
            deferred,
            signal,
            tally: ConnTally::default(),
            alarm,
            read_size: config.buffer_size.max(MIN_READ),
        }
    }

    /// Sets the alarm for the connection's next deadline (see `Alarm::arm`).
    fn arm(&self) {
        if let Some(next) = self.conn.poll_timeout() {
            self.alarm.arm(next);
        }
    }

    /// Serves everything received so far (and collects deferred answers),
    /// writing as the output fills, until the connection needs input; or
    /// why it closes.
    async fn serve_received(&mut self) -> Result<(), CloseReason> {
        // `batch_delay`: until when the output waits for more responses.
        let mut hold_until: Option<Instant> = None;
        loop {
            let flow = self.conn.process(self.handler);
            self.tally.sync(&self.conn, &self.shared.counters);
            let d = self.conn.deferred_in_flight() as u64;
            self.local.deferred.set(self.local.deferred.get() + d - self.deferred.get());
            self.deferred.set(d);
            let batch_delay =
                self.shared.config.batch_delay.filter(|_| self.conn.is_serving() && self.conn.has_output());
            if let (Some(delay), Ok(Flow::NeedInput)) = (batch_delay, &flow) {
                // Requests that arrive before the delay is out join this batch.
                let until = *hold_until.get_or_insert_with(|| Instant::now() + delay);
                if let Some(n) = self.read_until(until).await {
                    self.conn.arrived(n);
                    continue;
                }
            }
            let wrote = self.write_output().await?;
            match flow {
                Ok(Flow::OutputFull) if wrote => {}
                Ok(Flow::OutputFull) => {
                    // Full of deferred calls (max_in_flight) or waiting for
                    // a concurrency slot: no reading until answers come.
                    if !woken(&self.signal, self.shared).await {
                        return Err(CloseReason::Shutdown);
                    }
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

    /// Reads what comes before `until`: its length, or `None` if nothing
    /// came (an end of stream or an error is seen by the next read).
    async fn read_until(&mut self, until: Instant) -> Option<usize> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let (stream, local, conn, size) = (&mut self.stream, self.local, &mut self.conn, self.read_size);
        future::or(
            async {
                match read_some(stream, local, conn, size).await {
                    Event::Read(Ok(n)) if n > 0 => Some(n),
                    _ => None,
                }
            },
            async {
                glommio::timer::sleep(left).await;
                None
            },
        )
        .await
    }

    /// Writes all the output; whether there was any.
    async fn write_output(&mut self) -> Result<bool, CloseReason> {
        if !self.conn.has_output() {
            return Ok(false);
        }
        let n = self.conn.unwritten_responses() as u64;
        self.local.unwritten.set(self.local.unwritten.get() + n - self.unwritten.get());
        self.unwritten.set(n);
        let written = self.write_watched().await;
        self.local.unwritten.set(self.local.unwritten.get() - self.unwritten.get());
        self.unwritten.set(0);
        written.map(|()| true)
    }

    /// Writes all the output (each step of progress noted by the
    /// connection). While the client takes none, the task also waits for
    /// its signal: the alarm at the connection's deadline cuts off a client that
    /// stopped reading (no socket write timeout, which would hold a glommio
    /// timer while the write waits). Dropping the write to look is safe:
    /// glommio sends at once or waits for writability, never half a send.
    async fn write_watched(&mut self) -> Result<(), CloseReason> {
        while self.conn.has_output() {
            let (stream, conn, signal) = (&mut self.stream, &mut self.conn, &self.signal);
            let write = async { Some(stream.write(conn.output()).await) };
            let woken = async {
                signal.wait().await;
                None
            };
            match future::or(write, woken).await {
                Some(Ok(0)) | Some(Err(_)) => return Err(CloseReason::WriteError),
                Some(Ok(n)) => self.conn.advance_output(n),
                None => {
                    // The alarm, a deferred answer (collected after the
                    // write), or a shutdown.
                    if self.shared.forced.load(Ordering::Acquire) {
                        return Err(CloseReason::Shutdown);
                    }
                    if let Some(reason) = self.expired() {
                        return Err(reason);
                    }
                    self.arm();
                }
            }
        }
        Ok(())
    }

    /// Waits for more input or a wake-up (a deferred answer, the clock),
    /// and reads what came; `Some` when the connection closes.
    async fn await_input(&mut self) -> Option<CloseReason> {
        if self.shared.stopping.load(Ordering::Acquire) {
            self.conn.begin_close(CloseReason::Shutdown);
        }
        if !self.conn.is_serving() {
            return self.await_answers().await;
        }
        self.arm();
        let signal = &self.signal;
        let event = future::or(read_some(&mut self.stream, self.local, &mut self.conn, self.read_size), async {
            signal.wait().await;
            Event::Woken
        })
        .await;
        // A deferred answer, the alarm, or a shutdown.
        let Event::Read(read) = event else { return self.expired() };
        match read {
            Ok(0) => self.conn.end_of_stream(),
            Ok(n) => {
                self.conn.arrived(n);
            }
            Err(_) => return Some(CloseReason::ReadError),
        }
        None
    }

    /// Hands the connection the time; why it closes, if it does.
    fn expired(&mut self) -> Option<CloseReason> {
        let now = Instant::now();
        let expired = self.conn.handle_timeout(now);
        self.shared.counters.saw(&self.conn, expired);
        match expired {
            Expired::Nothing | Expired::ReleaseBuffers => None,
            Expired::Closing(reason) | Expired::Closed(reason) => Some(reason),
        }
    }

    /// Closing (the client closed its side, or shutdown): only the answers
    /// of deferred calls are awaited, until the connection's deadline (on
    /// shutdown, or until the grace period ends: the executor then drops us).
    async fn await_answers(&mut self) -> Option<CloseReason> {
        if self.conn.deferred_in_flight() == 0 {
            return self.conn.close_reason();
        }
        if let Some(reason) = self.expired() {
            return Some(reason);
        }
        self.arm();
        if !woken(&self.signal, self.shared).await {
            return Some(CloseReason::Shutdown);
        }
        // An answer (served next), or the alarm.
        self.expired()
    }

    /// Counts the connection out, then closes it: end-of-stream after the
    /// last response, then a lingering close (the connection's: see
    /// `ServerConn::shut_write`) unless the client already closed its side.
    async fn close(&mut self, reason: CloseReason) {
        let (conn, local) = (&self.conn, self.local);
        if self.shared.forced.load(Ordering::Acquire) && (conn.deferred_in_flight() > 0 || conn.has_output()) {
            // It ends because the grace period is over: a cut, even if it
            // leaves before the executor counts what is still open.
            local.cut.set(local.cut.get() + 1);
            local.cut_deferred.set(local.cut_deferred.get() + conn.deferred_in_flight() as u64);
            local.cut_responses.set(local.cut_responses.get() + conn.unwritten_responses() as u64);
        }
        self.tally.sync(&self.conn, &self.shared.counters);
        self.tally.finish(&self.shared.counters);
        tracing::trace!(%reason, "connection done");
        let _ = self.stream.shutdown(Shutdown::Write).await;
        if !self.conn.shut_write(reason, Instant::now()) {
            return;
        }
        // Read and discard until the connection says the linger is over.
        let mut scratch = vec![0u8; 4096];
        while let Some(until) = self.conn.linger_deadline() {
            let now = Instant::now();
            let left = until.saturating_duration_since(now).max(std::time::Duration::from_millis(1));
            // A timeout of zero is refused: hence the floor.
            let _ = self.stream.set_read_timeout(Some(left));
            // (glommio's read timeout is a `TimedOut` error.)
            let read = self.stream.read(&mut scratch).await;
            net::lingered(&mut self.conn, read, Instant::now());
        }
    }
}
