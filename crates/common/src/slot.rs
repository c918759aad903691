//! Call slots: where a caller waits for its response, reused across calls.
//!
//! A call is lent a [`CallSlot`] by its client's [`SlotPool`], with the
//! call's one [`SlotToken`], which it gives to the connection. The
//! connection completes the slot through the token with the response value
//! (copied into the slot's own buffer, which keeps its capacity between
//! calls, or for a large value shared with the read buffer) or fails it.
//! The caller then gets a [`Reply`], which derefs to the value where it
//! lies, in the slot (so nothing moves out and back); the pool takes the
//! slot back, its buffer still in it, once nobody else holds it. After
//! warm-up, a call allocates nothing: this is fasthttp's `AcquireResponse`
//! / `ReleaseResponse`, made safe by ownership.
//!
//! A slot can be waited on by a blocking thread ([`CallSlot::wait_for`])
//! or polled by an async task ([`CallSlot::poll_done`]).

// The value and error cells (see `outcome` below and `CallSlot`).
#![allow(unsafe_code)]

use std::cell::UnsafeCell;

use bytes::Bytes;
use std::collections::VecDeque;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::ClientError;
use crate::Deadline;

// ANCHOR: outcome
// A slot's outcome, in one atomic byte. While it is `WAITING`, the value
// and error belong to the call's one completer: whoever holds its
// `SlotToken`, which the connection keeps in its pending table and uses
// up in completing or failing the call (there is one token per call, so
// there is nothing to race for). Publishing `DONE` or `FAILED` (a swap,
// Release) hands them to the caller, who alone holds the call (its
// `PendingCall`, then its `Reply`), so taking the error and reading the
// value are plain reads and writes. Only the pool resets a slot, once
// nobody else holds it (see `SlotPool::lend`). So the caller's checks (is
// it done? take it) cost an atomic load each, not a lock: under load a
// pipelining caller makes them for every call. A thread that is going to
// sleep first sets `WATCHED`, under the lock; a completer whose swap finds it takes the lock to wake
// it. A call whose caller finds it done never costs a lock.
//
// An async caller does without the lock (see `CallSlot::poll_done`): it
// claims the waker cell by setting `REGISTERING`, stores its waker, and
// swaps `REGISTERING` for `ASYNC_WAKER`; the completer whose swap finds
// `ASYNC_WAKER` takes the waker from the cell and wakes it. One whose swap
// finds `REGISTERING` leaves the cell alone: the caller is polling right
// then, and its second compare-and-swap fails on the outcome.
/// No outcome yet.
const WAITING: u8 = 0;
/// Completed: the value is in.
const DONE: u8 = 1;
/// Failed: the error is in.
const FAILED: u8 = 2;
/// Done or failed, and the result was handed to the caller.
const TAKEN: u8 = 3;
/// A flag beside `WAITING`: a waiter may sleep, or has a waker
/// registered; the completer wakes it.
const WATCHED: u8 = 0x80;
/// A flag beside `WAITING`: an async caller's waker is in its cell; the
/// completer takes it and wakes it.
const ASYNC_WAKER: u8 = 0x40;
/// A flag beside `WAITING`: an async caller is writing its waker; the
/// completer must not touch the cell.
const REGISTERING: u8 = 0x20;
/// Every flag that may sit beside `WAITING`.
const FLAGS: u8 = WATCHED | ASYNC_WAKER | REGISTERING;
// ANCHOR_END: outcome

/// Who waits, and how: kept under the slot's lock.
#[derive(Debug, Default)]
struct Waiters {
    /// A thread is blocked on `done`. Notifying a condition variable is a
    /// system call even when nobody waits (a futex wake), so the completer
    /// only notifies when this is set: under load the caller usually finds
    /// its call already done and never sleeps.
    sleeping: bool,
    /// The caller waits as a follower ([`CallSlot::wait_following`]): it
    /// may be handed the connection's reading role.
    following: bool,
    /// The reading role was handed to this slot's caller.
    promoted: bool,
}

#[doc(hidden)]
/// How [`CallSlot::wait_following`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowEnd {
    /// The call is done (completed or failed).
    Done,
    /// The deadline passed first.
    TimedOut,
    /// The leader left and handed this caller the reading role: it now
    /// reads for everyone (and must hand the role on when it leaves).
    Promoted,
}

/// One call's meeting point between the caller and the connection.
// `repr(C)`: the fields every call touches (with the reference count in
// front of them, in the `Arc`) come first, in declaration order, so that
// they share a cache line; the waiters' lock and condition variable, which
// a pipelined call never touches, come last.
#[doc(hidden)]
#[repr(C)]
pub struct CallSlot {
    /// See the states above.
    outcome: AtomicU8,
    /// The call's [`SlotToken`] is alive: the pool must not reuse (or free)
    /// the slot, whatever its reference count says.
    token_alive: AtomicBool,
    /// An async caller's waker: the caller's while it holds `REGISTERING`,
    /// the completer's once `ASYNC_WAKER` is set, the pool's once nobody
    /// else holds the slot (see `outcome`).
    async_waker: UnsafeCell<Option<Waker>>,
    /// The response value: the completer's while `WAITING`, the caller's
    /// once `outcome` is `DONE`.
    value: UnsafeCell<Vec<u8>>,
    /// A large value shared with the read buffer instead (see
    /// [`SlotToken::complete_shared`]), under the same rule.
    shared: UnsafeCell<Option<Bytes>>,
    /// The error of a failed call, under the same rule.
    error: UnsafeCell<Option<ClientError>>,
    waiters: Mutex<Waiters>,
    done: Condvar,
}

// SAFETY: `value`, `shared` and `error` are only touched by the holder of
// the call's one `SlotToken` before it publishes, by the caller after it
// saw `DONE`/`FAILED` (Acquire, pairing with the completer's Release; the
// caller is one owner, its `PendingCall` then its `Reply`), or by the pool
// once nobody else holds the slot. Everything else is atomic or behind the
// mutex.
unsafe impl Sync for CallSlot {}

impl Default for CallSlot {
    fn default() -> Self {
        CallSlot {
            outcome: AtomicU8::new(WAITING),
            async_waker: UnsafeCell::new(None),
            value: UnsafeCell::new(Vec::new()),
            shared: UnsafeCell::new(None),
            error: UnsafeCell::new(None),
            waiters: Mutex::default(),
            done: Condvar::new(),
            token_alive: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for CallSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSlot").field("outcome", &self.outcome.load(Ordering::Relaxed)).finish()
    }
}

impl CallSlot {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave the state invalid
        // (every write is a single assignment), so poisoning is ignored.
        self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ANCHOR: notify_sleepers
    /// Publishes what the completer wrote: one swap. A waiter that comes
    /// later sees the outcome before it would sleep. One that flagged the
    /// slot `WATCHED` did so under the lock and holds it until it sleeps, so
    /// taking the lock here finds it asleep (and says so in `sleeping`). An
    /// async caller's waker is taken without the lock. The slot is not reused while the token
    /// that calls this is alive, so the waiters' state touched after the
    /// caller may have seen the outcome is still this call's.
    fn publish(&self, outcome: u8) {
        // Acquire too: an async caller's waker, written before it set
        // `ASYNC_WAKER` (Release), is read here.
        let before = self.outcome.swap(outcome, Ordering::AcqRel);
        if before & ASYNC_WAKER != 0 {
            // SAFETY: `ASYNC_WAKER` hands the cell to the completer; the
            // caller touches it again only under `REGISTERING`, which it
            // can no longer set (the outcome is in), and the pool not while
            // this token lives.
            if let Some(waker) = unsafe { (*self.async_waker.get()).take() } {
                waker.wake();
            }
        }
        if before & WATCHED == 0 {
            return;
        }
        let mut waiters = self.lock();
        let sleeping = std::mem::take(&mut waiters.sleeping);
        drop(waiters);
        if sleeping {
            self.done.notify_all();
        }
    }
    // ANCHOR_END: notify_sleepers

    /// Under the lock, before sleeping: flags the
    /// slot as watched. Returns `false` if the outcome is already in (do
    /// not sleep).
    fn watch(&self) -> bool {
        let mut current = self.outcome.load(Ordering::Acquire);
        loop {
            if outcome_is_in(current) {
                return false;
            }
            if current & WATCHED != 0 {
                return true;
            }
            match self.outcome.compare_exchange_weak(current, current | WATCHED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Whether the call was completed or failed (one atomic load).
    #[inline]
    pub fn is_done(&self) -> bool {
        outcome_is_in(self.outcome.load(Ordering::Acquire))
    }

    /// Blocks until the call is done or `deadline` passes; returns whether
    /// it is done. No lock and no clock read if the call is already done.
    pub fn wait_for(&self, deadline: Deadline) -> bool {
        if self.is_done() {
            return true;
        }
        let mut waiters = self.lock();
        while self.watch() {
            let Some(left) = deadline.remaining() else { return false };
            waiters.sleeping = true;
            waiters = self.done.wait_timeout(waiters, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Blocks as a follower: until the call is done, the deadline passes,
    /// or the leader hands over the reading role ([`CallSlot::promote`]).
    /// A promotion wins over both (the role must not be dropped).
    pub fn wait_following(&self, deadline: Deadline) -> FollowEnd {
        let mut waiters = self.lock();
        waiters.following = true;
        let end = loop {
            if std::mem::take(&mut waiters.promoted) {
                break FollowEnd::Promoted;
            }
            if !self.watch() {
                break FollowEnd::Done;
            }
            let Some(left) = deadline.remaining() else { break FollowEnd::TimedOut };
            waiters.sleeping = true;
            waiters = self.done.wait_timeout(waiters, left).unwrap_or_else(|p| p.into_inner()).0;
        };
        waiters.following = false;
        end
    }

    /// Hands the reading role to this slot's caller if it waits as a
    /// follower for a call not yet done; returns whether it took it.
    pub fn promote(&self) -> bool {
        let mut waiters = self.lock();
        if !waiters.following || waiters.promoted || self.is_done() {
            return false;
        }
        waiters.promoted = true;
        let sleeping = std::mem::take(&mut waiters.sleeping);
        drop(waiters);
        if sleeping {
            self.done.notify_all();
        }
        true
    }

    /// Blocks until the call is done.
    pub fn wait(&self) {
        if self.is_done() {
            return;
        }
        let mut waiters = self.lock();
        while self.watch() {
            waiters.sleeping = true;
            waiters = self.done.wait(waiters).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// For async callers: ready once the call is done, else registers the
    /// waker. Two compare-and-swaps and no lock when it registers; one load
    /// when the call is done (see `outcome`).
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut current = self.outcome.load(Ordering::Acquire);
        let claimed = loop {
            if outcome_is_in(current) {
                return Poll::Ready(());
            }
            let claimed = (current & !ASYNC_WAKER) | REGISTERING;
            match self.outcome.compare_exchange_weak(current, claimed, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break claimed,
                Err(now) => current = now,
            }
        };
        // SAFETY: `REGISTERING` is set: the cell is this caller's.
        let cell = unsafe { &mut *self.async_waker.get() };
        match cell {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *cell = Some(cx.waker().clone()),
        }
        let registered = (claimed & !REGISTERING) | ASYNC_WAKER;
        match self.outcome.compare_exchange(claimed, registered, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Poll::Pending,
            // The completer published meanwhile and left the cell alone.
            Err(_) => {
                *cell = None;
                Poll::Ready(())
            }
        }
    }
}

/// Asks the CPU to bring the memory of `slot`, and of its `Arc`'s
/// reference counts just before it, into the cache, without waiting for it
/// (a hint: it changes nothing else, and does nothing on other CPUs).
#[inline]
fn prefetch(slot: *const CallSlot) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = slot.cast::<i8>();
        // SAFETY: a prefetch never faults and reads nothing the program
        // sees; the address need not even be valid.
        unsafe {
            _mm_prefetch(at.wrapping_sub(16), _MM_HINT_T0);
            _mm_prefetch(at.wrapping_add(48), _MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Whether an outcome byte says the call is over.
#[inline]
fn outcome_is_in(outcome: u8) -> bool {
    matches!(outcome & !FLAGS, DONE | FAILED | TAKEN)
}

// ANCHOR: lend
#[doc(hidden)]
/// A client's call slots: the free ones, and the ones lent to calls. It is
/// not shared: it lives under the client's own lock, which every call takes
/// anyway to queue its request, so lending a slot costs no lock and no
/// reference count of its own, and returning one costs nothing at all. A
/// call's slot is owned by its [`PendingCall`](crate::client::PendingCall),
/// then its [`Reply`]; the connection's pending table holds its
/// [`SlotToken`] until the response is in; a clone stays here, in `lent`.
/// Once this clone is the only one left and the token is gone, nobody can
/// touch the slot any more: the next
/// [`lend`](Self::lend) finds it at the front of `lent` (calls mostly end
/// in the order they started) and resets it with plain writes. A slot still
/// in use at the front (a reply kept, a slow call) goes to the back, so
/// one long-lived reply never stops the others from being reused.
#[derive(Debug, Default)]
pub struct SlotPool {
    free: Vec<Arc<CallSlot>>,
    lent: VecDeque<Arc<CallSlot>>,
}

impl SlotPool {
    /// How many of the oldest lent slots a `lend` looks at, at most: it
    /// stops at the first it takes back (calls mostly end in the order they
    /// started, so the next is most likely still in progress, and looking
    /// is a cache miss: the slot was last touched a thousand calls ago), and
    /// moves on past one still in use. Each `lend` adds one slot and takes
    /// back or moves on at least one, so the lent slots cannot outgrow the
    /// calls in progress.
    const LOOKS: usize = 2;

    /// A ready slot for a new call (a free one if any, else a new one),
    /// and the call's one token, for the connection that completes it.
    pub fn lend(&mut self) -> (Arc<CallSlot>, SlotToken) {
        for _ in 0..Self::LOOKS {
            let Some(oldest) = self.lent.front() else { break };
            if Arc::strong_count(oldest) == 1 && !oldest.token_alive.load(Ordering::Relaxed) {
                // Pairs with the Release of the last other owner's drop (of
                // its `Arc`, or of the token): everything it wrote to the
                // slot happened before this.
                fence(Ordering::Acquire);
                let slot = self.lent.pop_front().expect("looked at");
                slot.reset_unshared();
                self.free.push(slot);
                break;
            } else if self.lent.len() > 1 {
                // Still in use (a reply kept, a slow call): moved on, so
                // that it does not hide the slots behind it.
                self.lent.rotate_left(1);
            } else {
                break;
            }
        }
        let slot = self.free.pop().unwrap_or_default();
        slot.token_alive.store(true, Ordering::Relaxed);
        let token = SlotToken { slot: NonNull::from(&*slot) };
        self.lent.push_back(Arc::clone(&slot));
        // The next lend looks at the slot now in front, last touched many
        // calls ago and most likely out of the cache: a load that would
        // stall this function. Asked for now, it arrives while the caller
        // does the rest of its call.
        if let Some(next) = self.lent.front() {
            prefetch(Arc::as_ptr(next));
        }
        (slot, token)
    }

    /// Slots lent and not yet seen back (a test's view of the bound).
    #[cfg(test)]
    fn lent(&self) -> usize {
        self.lent.len()
    }
}
// ANCHOR_END: lend

impl Drop for SlotPool {
    fn drop(&mut self) {
        // A token that outlives its pool (none does: a client's connection,
        // with its pending table, is dropped or drained before its slots)
        // would point at freed memory; its slot is leaked instead.
        for slot in self.lent.drain(..) {
            if slot.token_alive.load(Ordering::Acquire) {
                std::mem::forget(slot);
            }
        }
    }
}

// ANCHOR: token
#[doc(hidden)]
/// The connection's handle on one call's slot: what completes or fails it,
/// used up in doing so. There is one per call (made by [`SlotPool::lend`]),
/// so the completer writes the value without a compare-and-swap, and it is
/// not a reference count: the pool that made it keeps the slot alive, and
/// does not reuse it, until the token is gone (`token_alive`). That saves
/// an atomic increment and decrement per call over an `Arc` clone.
pub struct SlotToken {
    slot: NonNull<CallSlot>,
}
// ANCHOR_END: token

// SAFETY: a token is the slot's one writer while the call is waiting (see
// `outcome`); `CallSlot` is `Sync`. (Not `Sync`: nothing is done through a
// shared token, and the connection that holds it sits behind a lock.)
unsafe impl Send for SlotToken {}

impl SlotToken {
    fn slot(&self) -> &CallSlot {
        // SAFETY: the pool keeps the slot (a clone of its `Arc` in `lent`)
        // until `token_alive` is cleared, which only this token's drop does.
        unsafe { self.slot.as_ref() }
    }

    /// Writes the call's outcome with `write` and publishes it, unless the
    /// call already has one. `write` may touch the value, shared value and
    /// error cells: while `WAITING` they are this token's (see `outcome`).
    fn settle(self, outcome: u8, write: impl FnOnce(&CallSlot)) {
        let slot = self.slot();
        if slot.outcome.load(Ordering::Relaxed) & !FLAGS == WAITING {
            write(slot);
            slot.publish(outcome);
        }
    }

    /// Completes the call with its response value (copied into the slot's
    /// buffer). Nothing happens if the call already has an outcome.
    pub fn complete(self, value: &[u8]) {
        self.settle(DONE, |slot| {
            // SAFETY: the token's while `WAITING` (`settle`).
            let buf = unsafe { &mut *slot.value.get() };
            buf.clear();
            buf.extend_from_slice(value);
        });
    }

    /// Completes the call with a value that shares the connection's read
    /// buffer ([`Response::shared`](fastwire_proto::Response::shared)): a
    /// large value is handed over without a copy.
    pub fn complete_shared(self, value: Bytes) {
        // SAFETY: the token's while `WAITING` (`settle`).
        self.settle(DONE, |slot| unsafe { *slot.shared.get() = Some(value) });
    }

    /// Completes the call with a decoded response: shared if the
    /// connection split it off for sharing (see [`LARGE_VALUE`]), else
    /// copied into the slot's buffer.
    #[inline]
    pub fn complete_response(self, response: fastwire_proto::Response<'_>) {
        match response.shared {
            Some(shared) => self.complete_shared(shared.clone()),
            None => self.complete(response.value),
        }
    }

    /// Fails the call. Nothing happens if it already has an outcome.
    pub fn fail(self, error: ClientError) {
        // SAFETY: the token's while `WAITING` (`settle`).
        self.settle(FAILED, |slot| unsafe { *slot.error.get() = Some(error) });
    }
}

impl std::fmt::Debug for SlotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SlotToken").field(self.slot()).finish()
    }
}

impl Drop for SlotToken {
    fn drop(&mut self) {
        // The token's last touch of the slot: the pool may reuse it from
        // here on (Release: what the token wrote happened before).
        self.slot().token_alive.store(false, Ordering::Release);
    }
}

/// Reply buffers larger than this are not kept (so one huge response does
/// not pin memory for the life of the client).
const MAX_KEPT_VALUE: usize = 64 * 1024;

/// Values longer than this are handed to the caller sharing the read
/// buffer (`ClientConn::share_values_from`), not copied into the slot: a
/// buffer that large would not be kept anyway (`MAX_KEPT_VALUE`), so the
/// copy would come with an allocation of its own (and its page faults).
pub const LARGE_VALUE: usize = MAX_KEPT_VALUE + 1;

impl CallSlot {
    /// Turns a finished call's slot into the caller's result: its value
    /// (a [`Reply`], which reads it where the completer wrote it), or its
    /// error. `Err(ClientError::Closed)` if the call is not done, or its
    /// outcome was already taken. One load and one store: the value stays
    /// in the slot, so nothing is moved out of it (or back in later).
    pub fn finish(slot: Arc<CallSlot>) -> Result<Reply, ClientError> {
        let outcome = slot.outcome.load(Ordering::Acquire);
        let result = match outcome {
            DONE => Ok(()),
            // SAFETY: published (Acquire, pairing with the completer's
            // Release), so the error is the caller's (see `outcome`).
            FAILED => Err(unsafe { (*slot.error.get()).take() }.unwrap_or(ClientError::Closed)),
            _ => return Err(ClientError::Closed),
        };
        // Read only by this caller (a second `finish`) and by the pool, which
        // sees it through the reference count (Release on drop, Acquire there).
        slot.outcome.store(TAKEN, Ordering::Relaxed);
        result.map(|()| Reply { slot })
    }

    /// [`finish`](Self::finish) for a call with `timeout`: a failure at its
    /// deadline (the connection's verdict, whoever handed it the time)
    /// reports the call's own timeout.
    pub fn finish_call(slot: Arc<CallSlot>, timeout: std::time::Duration) -> Result<Reply, ClientError> {
        CallSlot::finish(slot).map_err(|e| match e {
            ClientError::Timeout(_) => ClientError::Timeout(timeout),
            e => e,
        })
    }

    /// Makes a slot nobody else holds ready for the next call.
    fn reset_unshared(&self) {
        // SAFETY: the caller holds the only reference (see `SlotPool::lend`),
        // so nobody else can read or write any of the slot's fields.
        unsafe {
            (*self.value.get()).clear();
            // A taken outcome left nothing behind (`finish` moved the error
            // out, the reply's drop let go of a shared value): not touching
            // those fields keeps the reuse of a slot to its first cache line.
            if self.outcome.load(Ordering::Relaxed) != TAKEN {
                *self.shared.get() = None;
                *self.error.get() = None;
                // A call cancelled with its waker registered.
                *self.async_waker.get() = None;
            }
        }
        // The waiters' flags are left as they are: each is cleared by its
        // own protocol (a completion takes `sleeping` and the waker, a
        // follower clears `following` and consumes `promoted`), and what a
        // call that timed out left behind costs the next one at most a
        // spurious wake-up, which every wait re-checks. Clearing them here
        // would cost a lock per call. `WATCHED` goes: the next call's
        // waiters set it again.
        self.outcome.store(WAITING, Ordering::Relaxed);
    }
}

/// A call's response value. Derefs to the bytes, which stay where the
/// connection wrote them, in the call's slot; dropping the reply lets the
/// slot (and its buffer) serve a later call.
///
/// From the blocking clients, a value of more than 64 KiB ([`LARGE_VALUE`])
/// is not copied: it shares the memory it was read into
/// ([`Reply::shared`]), which stays allocated while the reply lives.
// ANCHOR: reply
pub struct Reply {
    // The value is read in place: a reply is one pointer, returned in a
    // register, and neither taking the outcome nor dropping the reply moves
    // the buffer (three words each way, and a reply of its own 64 bytes
    // returned through memory, on every call).
    slot: Arc<CallSlot>,
}
// ANCHOR_END: reply

impl Reply {
    /// The value, as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self.shared() {
            Some(shared) => shared,
            // SAFETY: see "The reply's cells" below `Reply::shared`.
            None => unsafe { &*self.slot.value.get() },
        }
    }

    /// The value as an owned vector (the pooled buffer is given up; a
    /// shared value is copied out unless nothing else holds its memory).
    pub fn into_vec(self) -> Vec<u8> {
        // SAFETY: see "The reply's cells" below `Reply::shared`; the reply
        // is ours to consume, and its drop sees the cells emptied.
        unsafe {
            match (*self.slot.shared.get()).take() {
                Some(shared) => Vec::from(shared),
                None => std::mem::take(&mut *self.slot.value.get()),
            }
        }
    }

    /// The value as [`Bytes`], if it was handed over sharing the memory it
    /// was read into (values over 64 KiB): keep or pass it on without a
    /// copy. `None` for a value in the pooled buffer.
    #[inline]
    pub fn shared(&self) -> Option<&Bytes> {
        // SAFETY: see "The reply's cells" below `Reply::shared`.
        unsafe { (*self.slot.shared.get()).as_ref() }
    }

    // The reply's cells: the slot's value and shared value are the reply's
    // while it lives. Its slot's outcome is `TAKEN`, so a token still alive
    // writes nothing (it writes only while `WAITING`); the pool resets the
    // slot only once this reference is gone; and only the reply's owner
    // writes them, in `into_vec` and `drop` (a shared `&Reply` only reads).
    // See `outcome` and `SlotPool::lend`.
}

impl Deref for Reply {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Reply {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("len", &self.len()).field("shared", &self.shared().is_some()).finish()
    }
}

impl PartialEq<[u8]> for Reply {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

// ANCHOR: reply_drop
impl Drop for Reply {
    fn drop(&mut self) {
        // SAFETY: see "The reply's cells" below `Reply::shared`.
        unsafe {
            let value = &mut *self.slot.value.get();
            if value.capacity() > MAX_KEPT_VALUE {
                *value = Vec::new();
            }
            // A shared value's memory goes now, not when the slot is reused.
            let shared = &mut *self.slot.shared.get();
            if shared.is_some() {
                *shared = None;
            }
        }
        // Dropping the reference is the whole release: the pool sees the
        // slot unshared when it next lends one, with the buffer still in it.
    }
}
// ANCHOR_END: reply_drop

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A call on a slot from `pool`, answered with `value`, and its reply.
    fn answered(pool: &mut SlotPool, value: &[u8]) -> Reply {
        let (slot, token) = pool.lend();
        token.complete(value);
        CallSlot::finish(slot).unwrap()
    }

    #[test]
    fn slots_and_buffers_are_reused() {
        let mut pool = SlotPool::default();
        let reply = answered(&mut pool, b"hello");
        assert_eq!(&*reply, b"hello");
        let ptr = reply.as_ptr();
        drop(reply);
        let reply = answered(&mut pool, b"again");
        assert_eq!(&*reply, b"again");
        assert_eq!(reply.as_ptr(), ptr, "the same buffer serves the next call");
    }

    #[test]
    fn replies_read_their_value_in_place_and_let_go_of_what_is_not_kept() {
        let mut pool = SlotPool::default();
        // A shared value: read where it is, its memory let go with the reply.
        let (slot, token) = pool.lend();
        let memory = Bytes::from(vec![7u8; 1000]);
        token.complete_shared(memory.clone());
        let reply = CallSlot::finish(slot).unwrap();
        assert_eq!(reply.shared().map(|b| b.as_ptr()), Some(memory.as_ptr()), "not copied");
        assert_eq!(&*reply, &[7u8; 1000][..]);
        drop(reply);
        assert!(memory.is_unique(), "the reply's drop let go of the shared memory");
        // A copied value too large to keep: its buffer goes with the reply.
        let (slot, token) = pool.lend();
        token.complete(&vec![1u8; MAX_KEPT_VALUE + 1]);
        let held = Arc::clone(&slot);
        drop(CallSlot::finish(slot).unwrap());
        // SAFETY: the reply is gone and nothing else touches the slot.
        assert_eq!(unsafe { (*held.value.get()).capacity() }, 0, "not kept");
        drop(held);
        // `into_vec` hands the buffer out, and the slot serves the next call.
        let owned = answered(&mut pool, b"mine").into_vec();
        assert_eq!(owned, b"mine");
        assert_eq!(&*answered(&mut pool, b"next"), b"next");
    }

    #[test]
    fn a_slot_is_reused_only_once_nobody_else_holds_it() {
        let mut pool = SlotPool::default();
        let (slot, token) = pool.lend();
        let ptr = Arc::as_ptr(&slot);
        // A caller that gave up (dropped its call) while the connection
        // still holds the token: not reused, whatever the reference count.
        drop(slot);
        let (next, next_token) = pool.lend();
        assert_ne!(Arc::as_ptr(&next), ptr, "its token is alive: not reused yet");
        // The late response completes the old call, not the next one.
        token.complete(b"late");
        assert!(!next.is_done());
        let (third, third_token) = pool.lend();
        assert_eq!(Arc::as_ptr(&third), ptr, "reused once its token was used up");
        assert!(!third.is_done(), "reset for the next call");
        third_token.complete(b"mine");
        assert_eq!(&*CallSlot::finish(third).unwrap(), b"mine");
        drop((next, next_token));
    }

    #[test]
    fn a_kept_reply_does_not_stop_reuse_and_lent_slots_stay_bounded() {
        let mut pool = SlotPool::default();
        let kept = answered(&mut pool, b"kept");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (slot, token) = pool.lend();
            seen.insert(Arc::as_ptr(&slot) as usize);
            token.complete(b"x");
            drop(CallSlot::finish(slot).unwrap());
        }
        assert!(seen.len() <= 3, "the others were reused around the kept one: {} slots", seen.len());
        assert!(pool.lent() <= 3, "lent slots bounded by the calls in progress: {}", pool.lent());
        assert_eq!(&*kept, b"kept", "untouched by the calls after it");
        // Many in progress at once, then all done: every one comes back.
        let calls: Vec<_> = (0..100).map(|_| pool.lend()).collect();
        drop(calls);
        for _ in 0..100 {
            drop(pool.lend());
        }
        assert!(pool.lent() <= 102, "{}", pool.lent());
    }

    #[test]
    fn completions_on_another_thread_race_the_reuse_soundly() {
        // Under Miri (`cargo +nightly miri test -p fastwire-common --lib
        // slot::`) this checks the unsafe parts for data races: the
        // completer writes and publishes on its thread, the caller takes,
        // reads the reply in place and lets it go, and the pool resets on this one.
        let mut pool = SlotPool::default();
        let (calls, done) = std::sync::mpsc::channel::<SlotToken>();
        let completer = std::thread::spawn(move || {
            for (n, token) in done.into_iter().enumerate() {
                token.complete(format!("reply {n}").as_bytes());
            }
        });
        for n in 0..20 {
            let (slot, token) = pool.lend();
            calls.send(token).unwrap();
            slot.wait();
            assert_eq!(&*CallSlot::finish(slot).unwrap(), format!("reply {n}").as_bytes());
        }
        drop(calls);
        completer.join().unwrap();
    }

    #[test]
    fn failures_and_timeouts() {
        let mut pool = SlotPool::default();
        let (slot, token) = pool.lend();
        assert!(!slot.wait_for(Deadline::after(Duration::from_millis(10))));
        let worker = std::thread::spawn(move || token.fail(ClientError::Closed));
        slot.wait();
        worker.join().unwrap();
        assert!(matches!(CallSlot::finish(slot), Err(ClientError::Closed)));
        // Completing after a failure changes nothing.
        let (slot, token) = pool.lend();
        token.fail(ClientError::Closed);
        assert!(CallSlot::finish(slot).is_err());
    }

    /// A waker that counts its wake-ups; its `Arc`'s count says how many
    /// clones of it are alive.
    struct CountingWake(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWake>, Waker) {
        let wake = Arc::new(CountingWake(Default::default()));
        (Arc::clone(&wake), Waker::from(Arc::clone(&wake)))
    }

    #[test]
    fn an_async_caller_is_woken_once_by_the_latest_waker_it_registered() {
        let mut pool = SlotPool::default();
        let (slot, token) = pool.lend();
        let (first, first_waker) = counting_waker();
        let (second, second_waker) = counting_waker();
        assert!(slot.poll_done(&mut Context::from_waker(&first_waker)).is_pending());
        // Polled again by another task: only that one is woken.
        assert!(slot.poll_done(&mut Context::from_waker(&second_waker)).is_pending());
        assert_eq!(Arc::strong_count(&first), 2, "the first waker's clone was let go");
        token.complete(b"done");
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&second), 2, "the completer used up the clone it woke");
        assert!(slot.poll_done(&mut Context::from_waker(&second_waker)).is_ready());
        assert_eq!(&*CallSlot::finish(slot).unwrap(), b"done");
    }

    #[test]
    fn a_cancelled_async_call_does_not_keep_its_waker_past_the_slots_reuse() {
        let mut pool = SlotPool::default();
        let (slot, token) = pool.lend();
        let (wake, waker) = counting_waker();
        assert!(slot.poll_done(&mut Context::from_waker(&waker)).is_pending());
        // Cancelled: the connection forgets the call, the caller goes away.
        drop((token, slot));
        assert_eq!(Arc::strong_count(&wake), 3, "registered, until the slot is reused");
        drop(answered(&mut pool, b"next"));
        drop(answered(&mut pool, b"and the next"));
        assert_eq!(Arc::strong_count(&wake), 2, "the reused slot let go of the old waker");
        assert_eq!(wake.0.load(Ordering::SeqCst), 0);
    }

    /// Completions racing registrations on two threads: every call is seen
    /// done, by its wake-up or by its next poll; none is lost.
    #[test]
    fn async_registration_racing_completion_loses_no_wake_up() {
        let mut pool = SlotPool::default();
        for _ in 0..2000 {
            let (slot, token) = pool.lend();
            let (wake, waker) = counting_waker();
            let completer = std::thread::spawn(move || token.complete(b"x"));
            let pending = slot.poll_done(&mut Context::from_waker(&waker)).is_pending();
            completer.join().unwrap();
            if pending {
                assert_eq!(wake.0.load(Ordering::SeqCst), 1, "registered before the outcome: woken");
            }
            assert!(slot.poll_done(&mut Context::from_waker(&waker)).is_ready());
            assert_eq!(&*CallSlot::finish(slot).unwrap(), b"x");
        }
    }
}
