//! One server connection on an event loop: its state, and what it does when
//! the socket becomes readable or writable.
//!
//! ```text
//!  Open ──(peer closed / protocol error / idle / shutdown)──> Draining ──(output flushed, FIN sent)──> Lingering ──> removed
//! ```
//!
//! The phases and their timeouts are the state machine's own (its
//! `Phase`, `poll_timeout` and `handle_timeout`); this file moves the bytes.
//!
//! `drive` does all the work the socket allows right now: write pending
//! output until `WouldBlock`; read (into the loop's shared buffer) until
//! `WouldBlock`, handing what arrived to the protocol state machine, which
//! runs the handler inline and appends responses; repeat while anything
//! moved. Edge-triggered readiness means an unfinished read must be
//! remembered (`readable` stays true) and come back without a new event:
//! the loop keeps such connections on its ready list.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use fastwire_common::{Batching, CloseReason, ConnTally, ServerCounters};
use fastwire_proto::driver::{Connection, Expired, Phase};
use fastwire_proto::{Handler, ServerConn};
use mio::event::Event;
use mio::net::TcpStream;

/// Reads per connection per turn, so that one busy client cannot starve the
/// others of its loop; it continues on the next turn.
const READ_BUDGET: usize = 16;

/// What the loop does with a connection after driving it.
pub(crate) enum Step {
    /// Keep it; `more` if it has work left that no event will announce.
    Keep { more: bool },
    /// Remove and close it.
    Remove(CloseReason),
}

/// What a connection's loop lends it while driving it.
pub(crate) struct Ctx<'a, H: ?Sized> {
    pub(crate) handler: &'a H,
    pub(crate) counters: &'a ServerCounters,
    /// The loop's read buffer, shared by all its connections.
    pub(crate) scratch: &'a mut [u8],
    pub(crate) now: Instant,
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    proto: ServerConn,
    readable: bool,
    /// An event said the peer closed (or the socket failed): read to the end.
    peer_closed: bool,
    /// The socket can take bytes: true until a write says `WouldBlock`,
    /// then false until a writable edge (see `server::EventLoop::adopt`).
    writable: bool,
    tally: ConnTally,
    /// Deferred responses (or a free concurrency slot) wait: see `wake`.
    woken: bool,
    /// The deadline this connection has in its loop's `Deadlines`.
    pub(crate) armed: Option<Instant>,
    /// `batch_delay`: when the output held for more responses is written.
    batching: Batching,
}

impl Conn {
    /// A connection on `stream`, with its state machine (see
    /// `LoopShared::new_conn`).
    pub(crate) fn new(stream: TcpStream, proto: ServerConn, batching: Batching) -> Conn {
        Conn {
            stream,
            proto,
            readable: true, // read once at once: data may have come with the connection
            peer_closed: false,
            // A new socket's send buffer is empty: write at once.
            writable: true,
            tally: ConnTally::default(),
            woken: false,
            armed: None,
            batching,
        }
    }

    /// Deferred responses arrived for it: `drive` collects them.
    pub(crate) fn wake(&mut self) {
        self.woken = true;
    }

    /// It is being removed: its counts leave the server's gauges.
    pub(crate) fn finish(&mut self, counters: &ServerCounters) {
        self.tally.sync(&self.proto, counters);
        self.tally.finish(counters);
    }

    /// Deferred calls not answered yet (reported if it is cut off).
    pub(crate) fn deferred_in_flight(&self) -> usize {
        self.proto.deferred_in_flight()
    }

    /// Records what an event says; `drive` acts on it.
    pub(crate) fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.peer_closed = true;
        }
        if event.is_writable() || event.is_write_closed() {
            self.writable = true;
        }
    }

    /// Responses produced but not written yet (reported if it is cut off).
    pub(crate) fn unwritten_responses(&self) -> usize {
        self.proto.unwritten_responses()
    }

    /// Whether it is still serving requests.
    pub(crate) fn is_open(&self) -> bool {
        self.proto.is_serving()
    }

    /// Stops serving for `reason`: flush, send end-of-stream, linger.
    pub(crate) fn begin_close(&mut self, reason: CloseReason) {
        self.proto.begin_close(reason);
    }

    /// Does everything the socket allows now.
    pub(crate) fn drive<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>) -> Step {
        let mut reads = 0;
        loop {
            let mut progress = false;
            if self.writable && self.proto.has_output() && self.batching.may_write(&self.proto, ctx.now) {
                match self.write_out() {
                    Ok(wrote) => progress |= wrote,
                    Err(_) => return Step::Remove(CloseReason::WriteError),
                }
                if !self.proto.has_output() {
                    self.batching.written();
                }
            }
            let step = match self.proto.phase() {
                Phase::Open => self.drive_open(ctx, &mut reads),
                Phase::Draining => self.drive_draining(ctx),
                Phase::Lingering => self.drive_lingering(ctx),
                Phase::Closed => Err(self.removed()),
            };
            match step {
                Ok(more) => progress |= more,
                Err(step) => return step,
            }
            if !progress {
                return Step::Keep { more: false };
            }
        }
    }

    /// Open: reads (at most `READ_BUDGET` times a turn) and serves what
    /// came. Whether it made progress, or the step to return.
    #[inline]
    fn drive_open<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>, reads: &mut usize) -> Result<bool, Step> {
        let mut progress = false;
        if self.readable && !self.proto.is_output_full() {
            if *reads == READ_BUDGET {
                return Err(Step::Keep { more: true });
            }
            *reads += 1;
            // ANCHOR: mio_read
            match self.stream.read(ctx.scratch) {
                Ok(0) => {
                    // The client closed its side: what it sent is served
                    // (it was, as it came), then the connection closes.
                    self.readable = false;
                    self.proto.end_of_stream();
                    progress = true;
                }
                Ok(n) => {
                    // Copy only what arrived: the connection's own
                    // buffer stays as small as its unfinished message.
                    self.proto.arrived(n);
                    self.proto.received(&ctx.scratch[..n]);
                    progress = true;
                    // A short read emptied the receive queue: bytes
                    // that arrive later bring a new edge-triggered
                    // event, so the read that would only say
                    // `WouldBlock` is skipped (a system call per
                    // round trip). Not once the peer has closed: its
                    // end-of-stream may already be queued, with no
                    // event left to announce it.
                    if n < ctx.scratch.len() && !self.peer_closed {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(_) => return Err(Step::Remove(CloseReason::ReadError)),
            }
            // ANCHOR_END: mio_read
        }
        let woken = std::mem::take(&mut self.woken);
        if woken || (self.proto.buffered_input() > 0 && !self.proto.is_output_full()) {
            let before = self.proto.buffered_output();
            let result = self.proto.process(ctx.handler);
            progress |= self.tally.sync(&self.proto, ctx.counters);
            progress |= self.proto.buffered_output() != before;
            if let Err(e) = result {
                // It began its close; the counters read why.
                ctx.counters.connection_failed(&self.proto, &e);
                progress = true;
            }
        }
        Ok(progress)
    }

    /// Draining: collects the answers of deferred calls still running,
    /// and once everything is written sends end-of-stream, then lingers
    /// (or closes, if the client already closed its side).
    fn drive_draining<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>) -> Result<bool, Step> {
        let mut progress = false;
        if std::mem::take(&mut self.woken) {
            let before = self.proto.buffered_output();
            self.tally.collect_deferred(&mut self.proto, ctx.counters);
            progress |= self.proto.buffered_output() != before;
        }
        if self.proto.has_output() && !self.writable {
            return Err(Step::Keep { more: false }); // wait for writability
        }
        if !self.proto.poll_shutdown(ctx.now) {
            // Output to write, or deferred answers to wait for (a wake-up).
            return if progress { Ok(true) } else { Err(Step::Keep { more: false }) };
        }
        // Everything is written: end-of-stream after the last response.
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(true)
    }

    /// Lingering: reads and discards until the client closes, or sends
    /// more than `LINGER_MAX_BYTES`.
    fn drive_lingering<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>) -> Result<bool, Step> {
        if !self.readable {
            return Err(Step::Keep { more: false });
        }
        match self.stream.read(ctx.scratch) {
            Ok(0) => self.proto.end_of_stream(),
            Ok(n) => {
                self.proto.arrived(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(_) => self.proto.end_of_stream(),
        }
        Ok(true)
    }

    /// Why a closed connection is removed.
    fn removed(&self) -> Step {
        Step::Remove(self.proto.close_reason().unwrap_or(CloseReason::ClosedByClient))
    }

    /// Writes until the output is empty or the socket is full.
    fn write_out(&mut self) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let out = self.proto.output();
            if out.is_empty() {
                return Ok(wrote);
            }
            match self.stream.write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.proto.advance_output(n);
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(wrote);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// When the connection next needs the time (its own deadline, or a
    /// held batch's).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.batching.next_deadline(&self.proto)
    }

    /// Its deadline came: timeouts, and giving idle buffers back. Returns
    /// whether the connection must be driven (it started closing) or removed.
    pub(crate) fn on_timeout(&mut self, counters: &ServerCounters, now: Instant) -> Option<Step> {
        let expired = self.proto.handle_timeout(now);
        counters.saw(&self.proto, expired);
        match expired {
            // A batch held for `batch_delay` is due: drive it out.
            Expired::Nothing | Expired::ReleaseBuffers => {
                self.batching.is_due(now).then_some(Step::Keep { more: true })
            }
            Expired::Closing(_) => Some(Step::Keep { more: true }),
            Expired::Closed(reason) => Some(Step::Remove(reason)),
        }
    }
}
