//! One server connection on a completion loop: its state, what it does when
//! one of its operations completes, and which operations it keeps in flight.
//!
//! ```text
//!  Open ──(peer closed / protocol error / idle / shutdown)──> Draining ──(output sent, FIN)──> Lingering ──> Closing ──> freed
//! ```
//!
//! The readiness loop (`fastwire-mio`) asks the kernel "is it readable?"
//! and then reads. This one never asks: it keeps up to two requests in
//! flight per connection and reacts to their results.
//!
//! * **A multishot receive**, armed once, completing every time data
//!   arrives, each time in a buffer the kernel took from the loop's
//!   provided buffer ring. The bytes are copied into the protocol state
//!   and the buffer goes straight back. While the output is over its
//!   bound the receive is cancelled (backpressure), and armed again once
//!   it has drained.
//! * **One send at a time**, from `sending`, which nothing touches until
//!   the send completes. Responses made meanwhile wait in the protocol
//!   state's output; when the send completes the two buffers are swapped
//!   again (no copy), so under load each send carries every response made
//!   during the previous one: batching by itself.
//!
//! The phases and their timeouts are the protocol crate's
//! [`Lifecycle`](fastwire_proto::driver::Lifecycle). Removing a connection takes
//! one more step here: its socket is shut down, its receive cancelled, and
//! its memory kept until the kernel has returned both requests.

use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use bytes::BytesMut;
use fastwire_common::{Batching, CloseReason, ConnTally, ServerCounters};
use fastwire_proto::driver::Connection;
use fastwire_proto::driver::{Expired, Phase};
use fastwire_proto::{Handler, ServerConn};
use io_uring::{opcode, squeue, types, IoUring};

use crate::ring::{self, BufRing, Completion, Op};

/// The multishot receive's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Recv {
    Idle,
    Armed,
    /// A cancellation was asked for; the final completion is still to come.
    Cancelling,
}

/// What the loop does with a connection after driving it.
pub(crate) enum Step {
    /// Keep it.
    Keep,
    /// Start removing it (the loop frees it once [`Conn::is_done`]).
    Remove(CloseReason),
}

/// What a connection's loop lends it while driving it.
pub(crate) struct Ctx<'a, H: ?Sized> {
    pub(crate) handler: &'a H,
    pub(crate) counters: &'a ServerCounters,
    pub(crate) ring: &'a mut IoUring,
    pub(crate) bufs: &'a mut BufRing,
    pub(crate) now: Instant,
}

pub(crate) struct Conn {
    stream: TcpStream,
    /// Its index in the ring's file table, with registered files.
    fixed: Option<u32>,
    key: usize,
    proto: ServerConn,
    /// Being removed: waiting for the kernel to return its operations.
    removing: bool,
    recv: Recv,
    /// What the send in flight (if any) sends: the kernel reads it until
    /// the send completes, so it is not touched before.
    sending: BytesMut,
    /// Bytes of `sending` already sent.
    sent: usize,
    send_in_flight: bool,
    tally: ConnTally,
    /// Deferred responses (or a free concurrency slot) wait: see `wake`.
    woken: bool,
    /// Why it is being removed (logged when freed).
    close_reason: CloseReason,
    /// The deadline this connection has in its loop's `Deadlines`.
    pub(crate) armed: Option<Instant>,
    /// `batch_delay`: when the output held for more responses is sent.
    batching: Batching,
}

/// Builds an operation on the connection's socket, by descriptor or by its
/// index in the registered file table.
macro_rules! on_socket {
    ($conn:expr, $op:ident :: new ( $($arg:expr),* ) $(. $m:ident ( $($marg:expr),* ))* ) => {
        match $conn.fixed {
            Some(index) => opcode::$op::new(types::Fixed(index) $(, $arg)*)$(.$m($($marg),*))*.build(),
            None => opcode::$op::new(types::Fd($conn.stream.as_raw_fd()) $(, $arg)*)$(.$m($($marg),*))*.build(),
        }
    };
}

impl Conn {
    /// A connection in slot `key` of its loop, on `stream` (or its index
    /// `fixed` in the registered file table), with its state machine and
    /// lifecycle (see `LoopShared::new_conn`).
    pub(crate) fn new(
        stream: TcpStream,
        fixed: Option<u32>,
        key: usize,
        proto: ServerConn,
        batching: Batching,
    ) -> Conn {
        Conn {
            stream,
            fixed,
            key,
            proto,
            removing: false,
            recv: Recv::Idle,
            sending: BytesMut::new(),
            sent: 0,
            send_in_flight: false,
            tally: ConnTally::default(),
            woken: false,
            close_reason: CloseReason::ClosedByClient,
            armed: None,
            batching,
        }
    }

    /// Its index in the registered file table, if it has one.
    pub(crate) fn fixed(&self) -> Option<u32> {
        self.fixed
    }

    /// Deferred responses arrived for it: `drive` collects them.
    pub(crate) fn wake(&mut self) {
        self.woken = true;
    }

    /// Responses produced but not written yet (reported if it is cut off).
    pub(crate) fn unwritten_responses(&self) -> usize {
        self.proto.unwritten_responses()
    }

    /// Deferred calls not answered yet (reported if it is cut off).
    pub(crate) fn deferred_in_flight(&self) -> usize {
        self.proto.deferred_in_flight()
    }

    /// Whether it is still serving requests.
    pub(crate) fn is_open(&self) -> bool {
        self.proto.is_serving()
    }

    /// Whether it is being removed.
    pub(crate) fn is_closing(&self) -> bool {
        self.removing
    }

    /// Removed, and the kernel holds nothing of it any more: it may be freed.
    pub(crate) fn is_done(&self) -> bool {
        self.is_closing() && self.recv == Recv::Idle && !self.send_in_flight
    }

    /// Why it was removed.
    pub(crate) fn close_reason(&self) -> CloseReason {
        self.close_reason
    }

    /// Stops serving for `reason`: flush, send end-of-stream, linger.
    pub(crate) fn begin_close(&mut self, reason: CloseReason) {
        self.proto.begin_close(reason);
    }

    /// Starts removing it: its counts leave the server's gauges, its socket
    /// is shut down (which ends a send in flight) and its receive cancelled.
    pub(crate) fn begin_remove(&mut self, reason: CloseReason, ring: &mut IoUring, counters: &ServerCounters) {
        if self.is_closing() {
            return;
        }
        self.tally.sync(&self.proto, counters);
        self.tally.finish(counters);
        self.proto.close(reason);
        self.close_reason = reason;
        self.removing = true;
        let _ = self.stream.shutdown(Shutdown::Both);
        self.cancel_recv(ring);
    }

    fn cancel_recv(&mut self, ring: &mut IoUring) {
        if self.recv == Recv::Armed {
            let cancel = opcode::AsyncCancel::new(Op::Recv.tag(self.key)).build().user_data(Op::Cancel.tag(self.key));
            // SAFETY: a cancellation names no buffer.
            if unsafe { ring::push(ring, &cancel) }.is_ok() {
                self.recv = Recv::Cancelling;
            }
        }
    }

    /// Handles a completion of one of its operations. Returns whether it
    /// has work to do (the loop drives it then).
    pub(crate) fn complete(&mut self, c: &Completion, bufs: &mut BufRing) -> Option<Step> {
        match c.op {
            Op::Recv => {
                if !c.more() {
                    self.recv = Recv::Idle;
                }
                if let Some(id) = c.buffer() {
                    if c.result > 0 {
                        self.received(bufs.get(id, c.result as usize));
                    }
                    bufs.recycle(id);
                }
                match c.result {
                    n if n > 0 => Some(Step::Keep),
                    0 => {
                        // End of stream: the client closed its side. Open,
                        // `drive` serves what came before the end, then
                        // starts the close.
                        self.recv = Recv::Idle;
                        self.proto.end_of_stream();
                        (!self.removing).then_some(Step::Keep)
                    }
                    // Out of provided buffers (they come back as soon as the
                    // loop has copied them), or cancelled: armed again by `drive`.
                    e if e == -libc::ENOBUFS || e == -libc::ECANCELED => Some(Step::Keep),
                    _ if self.is_closing() => None,
                    _ => Some(Step::Remove(CloseReason::ReadError)),
                }
            }
            Op::Send => {
                self.send_in_flight = false;
                if c.result > 0 {
                    self.sent += c.result as usize;
                    let all = self.sent >= self.sending.len();
                    self.proto.written(all);
                    if all {
                        self.sending.clear();
                        self.sent = 0;
                    }
                    Some(Step::Keep)
                } else if self.is_closing() {
                    None
                } else if c.result == -libc::EINTR || c.result == -libc::EAGAIN {
                    Some(Step::Keep)
                } else {
                    Some(Step::Remove(CloseReason::WriteError))
                }
            }
            _ => None,
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        // Served only while open (requests after the close began are not;
        // a lingering close counts and drops them). Copy only what arrived:
        // the connection's own buffer stays as small as its unfinished message.
        if !self.removing && self.proto.arrived(bytes.len()) {
            self.proto.received(bytes);
        }
    }

    /// Does everything its state allows now: runs the handler on what
    /// arrived, starts a send, arms or cancels the receive.
    pub(crate) fn drive<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>) -> Step {
        // Twice at most: a send that took the output makes room for the
        // requests that waited for it.
        for _ in 0..2 {
            if self.removing {
                return Step::Keep;
            }
            match self.proto.phase() {
                Phase::Open => self.serve(ctx),
                Phase::Draining => {
                    if std::mem::take(&mut self.woken) {
                        // Answers of deferred calls still come in.
                        self.tally.collect_deferred(&mut self.proto, ctx.counters);
                    }
                }
                Phase::Lingering => {}
                Phase::Closed => return self.removed(),
            }
            if !self.start_send(ctx.ring, ctx.now) {
                return Step::Remove(CloseReason::SubmitFailed);
            }
            if !(self.proto.buffered_input() > 0 && self.is_open() && !self.proto.is_output_full()) {
                break;
            }
        }
        if self.proto.poll_shutdown(ctx.now) {
            // Everything is written: end-of-stream after the last response.
            let _ = self.stream.shutdown(Shutdown::Write);
            if self.proto.phase() == Phase::Closed {
                return self.removed();
            }
        }
        // Receive while serving (unless the output is over its bound: the
        // client must read first) and while lingering (to see its close).
        let want_recv = !self.proto.peer_closed()
            && match self.proto.phase() {
                Phase::Open => !self.proto.is_output_full(),
                Phase::Draining | Phase::Lingering => true,
                Phase::Closed => false,
            };
        // ANCHOR: uring_recv
        match (want_recv, self.recv) {
            (true, Recv::Idle) => {
                let recv = on_socket!(self, RecvMulti::new(ctx.bufs.group())).user_data(Op::Recv.tag(self.key));
                // SAFETY: a multishot receive names no buffer of ours: the
                // kernel picks from the registered ring, which outlives it.
                if unsafe { ring::push(ctx.ring, &recv) }.is_err() {
                    return Step::Remove(CloseReason::SubmitFailed);
                }
                self.recv = Recv::Armed;
            }
            (false, Recv::Armed) => self.cancel_recv(ctx.ring),
            _ => {}
        }
        // ANCHOR_END: uring_recv
        Step::Keep
    }

    /// Open: runs the handler on what arrived (and collects deferred
    /// answers); once the client's end of stream came and what it sent is
    /// served, starts the close.
    fn serve<H: Handler + ?Sized>(&mut self, ctx: &mut Ctx<'_, H>) {
        let woken = std::mem::take(&mut self.woken);
        if woken || (self.proto.buffered_input() > 0 && !self.proto.is_output_full()) {
            let result = self.proto.process(ctx.handler);
            self.tally.sync(&self.proto, ctx.counters);
            if let Err(e) = result {
                // It began its close; the counters read why.
                ctx.counters.connection_failed(&self.proto, &e);
            }
        }
    }

    /// Why a closed connection is removed.
    fn removed(&self) -> Step {
        Step::Remove(self.proto.close_reason().unwrap_or(CloseReason::ClosedByClient))
    }

    // ANCHOR: uring_send
    /// Starts a send if none is in flight and there is something to send.
    /// Returns false if it could not be submitted.
    fn start_send(&mut self, ring: &mut IoUring, now: Instant) -> bool {
        if self.send_in_flight {
            return true;
        }
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            if !self.proto.has_output() {
                return true;
            }
            // Held for more responses (`batch_delay`): its deadline drives it out.
            if !self.batching.may_write(&self.proto, now) {
                return true;
            }
            self.batching.written();
            // Swap buffers: the output made so far becomes what is sent; the
            // connection goes on appending into the old `sending`.
            self.proto.take_output(&mut self.sending);
        }
        let rest = &self.sending[self.sent..];
        let send: squeue::Entry = on_socket!(
            self,
            Send::new(rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32).flags(libc::MSG_NOSIGNAL)
        )
        .user_data(Op::Send.tag(self.key));
        // SAFETY: `sending` is neither written, moved nor freed while the
        // send is in flight: `start_send` returns early until it completes,
        // and a connection is freed only once `is_done`.
        if unsafe { ring::push(ring, &send) }.is_err() {
            return false;
        }
        self.send_in_flight = true;
        true
    }
    // ANCHOR_END: uring_send

    /// When the connection next needs the time (its lifecycle's deadline;
    /// none once it is being removed).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.removing {
            return None;
        }
        self.batching.next_deadline(&self.proto)
    }

    /// Its deadline came: timeouts, and giving idle buffers back. Returns
    /// whether the connection must be driven (it started closing) or removed.
    pub(crate) fn on_timeout(&mut self, counters: &ServerCounters, now: Instant) -> Option<Step> {
        if self.removing {
            return None;
        }
        let held_due = self.batching.is_due(now);
        let expired = self.proto.handle_timeout(now);
        counters.saw(&self.proto, expired);
        match expired {
            // A batch held for `batch_delay` is due: drive it out.
            Expired::Nothing => held_due.then_some(Step::Keep),
            Expired::ReleaseBuffers => {
                self.sending = BytesMut::new();
                held_due.then_some(Step::Keep)
            }
            Expired::Closing(_) => Some(Step::Keep),
            Expired::Closed(reason) => Some(Step::Remove(reason)),
        }
    }
}
