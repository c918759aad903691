//! Call slots: where a caller waits for its response, reused across calls.
//!
//! A call takes a [`CallSlot`] from a [`SlotPool`] and gives a clone of its
//! `Arc` to the connection as the call's token. The connection completes the
//! slot with the response value (copied into the slot's own buffer, which
//! keeps its capacity between calls) or fails it. The caller then gets a
//! [`Reply`], which derefs to the value and, when dropped, puts the buffer
//! back into the slot and the slot back into the pool. After warm-up, a call
//! allocates nothing: this is fasthttp's `AcquireResponse` /
//! `ReleaseResponse`, made safe by ownership.
//!
//! A slot can be waited on by a blocking thread ([`CallSlot::wait_for`])
//! or polled by an async task ([`CallSlot::poll_done`]).

// The value and error cells (see `outcome` below and `CallSlot`).
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::ClientError;
use crate::Deadline;

// ANCHOR: outcome
// A slot's outcome, in one atomic byte. Whoever moves it into one of the
// passing states (`WRITING`, `TAKING`, `RESETTING`) with a compare-and-swap
// owns the value and error until it moves it on; in the resting states
// nobody touches them, except the caller once the call is `DONE` or
// `FAILED`. So the caller's checks (is it done? take it; reuse the slot)
// are single atomic operations, not locks: under load a pipelining caller
// makes all of them for every call. A waiter that is going to sleep (or
// an async caller registering its waker) first sets `WATCHED`, under the
// lock; only then does the completer take the lock, to publish the outcome
// and wake it. A call whose caller finds it done never costs a lock.
/// No outcome yet.
const WAITING: u8 = 0;
/// A completer is writing the value or error.
const WRITING: u8 = 1;
/// Completed: the value is in.
const DONE: u8 = 2;
/// Failed: the error is in.
const FAILED: u8 = 3;
/// The caller is taking the value or error out.
const TAKING: u8 = 4;
/// Done or failed, and the result was handed to the caller.
const TAKEN: u8 = 5;
/// Being made ready for the next call.
const RESETTING: u8 = 6;
/// A flag beside `WAITING` or `WRITING`: a waiter may sleep, or has a
/// waker registered; publish under the lock and wake it.
const WATCHED: u8 = 0x80;
// ANCHOR_END: outcome

/// Who waits, and how: kept under the slot's lock.
#[derive(Debug, Default)]
struct Waiters {
    waker: Option<Waker>,
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
pub struct CallSlot {
    /// See the states above.
    outcome: AtomicU8,
    /// The response value: owned by whoever holds a passing state, or by
    /// the caller once `outcome` is `DONE`.
    value: UnsafeCell<Vec<u8>>,
    /// The error of a failed call, under the same rule.
    error: UnsafeCell<Option<ClientError>>,
    waiters: Mutex<Waiters>,
    done: Condvar,
}

// SAFETY: `value` and `error` are only touched by the thread that moved
// `outcome` into a passing state (a compare-and-swap: one winner), or by
// the caller after it saw `DONE`/`FAILED` (Acquire, pairing with the
// completer's Release) and claimed them (`TAKING`, `RESETTING`).
// Everything else is atomic or behind the mutex.
unsafe impl Sync for CallSlot {}

impl Default for CallSlot {
    fn default() -> Self {
        CallSlot {
            outcome: AtomicU8::new(WAITING),
            value: UnsafeCell::new(Vec::new()),
            error: UnsafeCell::new(None),
            waiters: Mutex::default(),
            done: Condvar::new(),
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

    /// Claims the value and error for writing: only while nothing is in.
    fn claim(&self) -> bool {
        let mut current = self.outcome.load(Ordering::Relaxed);
        loop {
            if current & !WATCHED != WAITING {
                return false;
            }
            let writing = (current & WATCHED) | WRITING;
            match self.outcome.compare_exchange_weak(current, writing, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    // ANCHOR: notify_sleepers
    /// Publishes what the claimer wrote. With nobody watching, one
    /// compare-and-swap: a waiter that comes later sees the outcome before
    /// it would sleep. With a watcher (or one arriving now: the swap fails),
    /// under the lock, so that the waiter either sees the outcome or is
    /// asleep (and flagged) when this looks, and so that nothing of the
    /// waiters' state is touched after the caller may have seen the
    /// outcome and reused the slot.
    fn publish(&self, outcome: u8) {
        if self.outcome.compare_exchange(WRITING, outcome, Ordering::Release, Ordering::Relaxed).is_ok() {
            return;
        }
        let mut waiters = self.lock();
        self.outcome.store(outcome, Ordering::Release);
        let waker = waiters.waker.take();
        let sleeping = std::mem::take(&mut waiters.sleeping);
        drop(waiters);
        if sleeping {
            self.done.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
    // ANCHOR_END: notify_sleepers

    /// Under the lock, before sleeping or registering a waker: flags the
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

    /// Completes the call with its response value (copied into the slot's
    /// buffer). Nothing happens if the call is already done or failed.
    pub fn complete(&self, value: &[u8]) {
        if self.claim() {
            // SAFETY: `WRITING` was claimed by this thread (see `outcome`).
            let buf = unsafe { &mut *self.value.get() };
            buf.clear();
            buf.extend_from_slice(value);
            self.publish(DONE);
        }
    }

    /// Fails the call. Nothing happens if it is already done or failed.
    pub fn fail(&self, error: ClientError) {
        if self.claim() {
            // SAFETY: as in `complete`.
            unsafe { *self.error.get() = Some(error) };
            self.publish(FAILED);
        }
    }

    /// Whether the call was completed or failed (one atomic load).
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

    /// For async callers: ready once the call is done, else registers the waker.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        let mut waiters = self.lock();
        if !self.watch() {
            return Poll::Ready(());
        }
        match &waiters.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => waiters.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes the outcome of a finished call: its value, or its error.
    /// Returns `Err(ClientError::Closed)` if called before the call is
    /// done, or after its outcome was taken.
    fn take(&self) -> Result<Vec<u8>, ClientError> {
        let outcome = self.outcome.load(Ordering::Acquire);
        if !matches!(outcome, DONE | FAILED)
            || self.outcome.compare_exchange(outcome, TAKING, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return Err(ClientError::Closed);
        }
        // SAFETY: `TAKING` was claimed by this thread (see `outcome`).
        let result = unsafe {
            if outcome == DONE {
                Ok(std::mem::take(&mut *self.value.get()))
            } else {
                Err((*self.error.get()).take().unwrap_or(ClientError::Closed))
            }
        };
        self.outcome.store(TAKEN, Ordering::Release);
        result
    }

    /// Makes the slot ready for the next call, with `value` as its buffer.
    /// Returns `false` (the slot must not be reused) if someone is in the
    /// middle of writing or taking its outcome.
    fn reset(&self, mut value: Vec<u8>) -> bool {
        let outcome = self.outcome.load(Ordering::Acquire);
        if !matches!(outcome & !WATCHED, WAITING | DONE | FAILED | TAKEN)
            || self.outcome.compare_exchange(outcome, RESETTING, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return false;
        }
        value.clear();
        // SAFETY: `RESETTING` was claimed by this thread (see `outcome`).
        unsafe {
            *self.value.get() = value;
            *self.error.get() = None;
        }
        // The waiters' flags are left as they are: each is cleared by its
        // own protocol (a completion takes `sleeping` and the waker, a
        // follower clears `following` and consumes `promoted`), and what a
        // call that timed out left behind costs the next one at most a
        // spurious wake-up, which every wait re-checks. Clearing them here
        // would cost a lock per call. `WATCHED` goes: the next call's
        // waiters set it again.
        self.outcome.store(WAITING, Ordering::Release);
        true
    }
}

/// Whether an outcome byte says the call is over.
fn outcome_is_in(outcome: u8) -> bool {
    matches!(outcome & !WATCHED, DONE | FAILED | TAKING | TAKEN)
}

/// Free call slots, shared by all calls of a client.
#[derive(Debug)]
pub struct SlotPool {
    free: Mutex<Vec<Arc<CallSlot>>>,
    /// Reply buffers larger than this are not kept (so one huge response
    /// does not pin memory for the life of the client).
    max_kept_value: usize,
}

impl Default for SlotPool {
    fn default() -> Self {
        SlotPool { free: Mutex::new(Vec::new()), max_kept_value: 64 * 1024 }
    }
}

impl SlotPool {
    /// An empty pool.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A ready slot: a free one if any, else a new one.
    pub fn acquire(&self) -> Arc<CallSlot> {
        let slot = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        slot.unwrap_or_default()
    }

    /// [`acquire`](Self::acquire) for a caller that keeps a cache of free
    /// slots under a lock of its own (a client's state): the pool's lock is
    /// taken only when the cache is empty, to move every free slot into it
    /// at once (the two vectors are swapped: nothing is allocated).
    pub fn acquire_into(&self, cache: &mut Vec<Arc<CallSlot>>) -> Arc<CallSlot> {
        if cache.is_empty() {
            std::mem::swap(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()), cache);
        }
        cache.pop().unwrap_or_default()
    }

    /// Returns a slot whose call is over.
    pub fn release(&self, slot: Arc<CallSlot>) {
        if reusable(&slot) && slot.reset(Vec::new()) {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
        }
    }

    /// Turns a finished slot into the caller's result.
    pub fn finish(self: &Arc<Self>, slot: Arc<CallSlot>) -> Result<Reply, ClientError> {
        let result = slot.take();
        match result {
            Ok(value) => Ok(Reply { value, slot: Some(slot), pool: Arc::clone(self) }),
            Err(e) => {
                self.release(slot);
                Err(e)
            }
        }
    }
}

/// Whether a slot can serve another call: nobody else holds it, or its call
/// is finished. A finished slot is in no connection's pending table, so
/// nothing will write to it again; its completer may still hold a clone for
/// a moment, to notify waiters, which at worst wakes the next call's waiter
/// spuriously (waits re-check their condition). Requiring sole ownership
/// instead would make most calls allocate a new slot: the caller usually
/// finishes before the completer has dropped its clone.
fn reusable(slot: &Arc<CallSlot>) -> bool {
    Arc::strong_count(slot) == 1 || slot.is_done()
}

/// A call's response value. Derefs to the bytes; dropping it returns its
/// buffer to the client's pool for the next call.
pub struct Reply {
    value: Vec<u8>,
    slot: Option<Arc<CallSlot>>,
    pool: Arc<SlotPool>,
}

impl Reply {
    /// The value, as a slice.
    pub fn as_slice(&self) -> &[u8] {
        &self.value
    }

    /// The value as an owned vector (the pooled buffer is given up).
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.value)
    }
}

impl Deref for Reply {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.value
    }
}

impl AsRef<[u8]> for Reply {
    fn as_ref(&self) -> &[u8] {
        &self.value
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("len", &self.value.len()).finish()
    }
}

impl PartialEq<[u8]> for Reply {
    fn eq(&self, other: &[u8]) -> bool {
        self.value == other
    }
}

// ANCHOR: reply_drop
impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let value = std::mem::take(&mut self.value);
            if value.capacity() <= self.pool.max_kept_value && reusable(&slot) && slot.reset(value) {
                self.pool.free.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
            }
        }
    }
}
// ANCHOR_END: reply_drop

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_and_buffers_are_reused() {
        let pool = SlotPool::new();
        let slot = pool.acquire();
        let token = Arc::clone(&slot);
        token.complete(b"hello");
        drop(token);
        let reply = pool.finish(slot).unwrap();
        assert_eq!(&*reply, b"hello");
        let ptr = reply.as_ptr();
        drop(reply);
        let slot = pool.acquire();
        slot.complete(b"again");
        let reply = pool.finish(slot).unwrap();
        assert_eq!(reply.as_ptr(), ptr, "the same buffer serves the next call");
    }

    #[test]
    fn a_finished_slot_is_reused_even_while_its_completer_holds_it() {
        let pool = SlotPool::new();
        let slot = pool.acquire();
        let completer = Arc::clone(&slot);
        completer.complete(b"done");
        // The caller is faster than the completer's last step (dropping its clone).
        let reply = pool.finish(slot).unwrap();
        let ptr = Arc::as_ptr(&completer);
        drop(reply);
        let next = pool.acquire();
        assert_eq!(Arc::as_ptr(&next), ptr, "recycled, not allocated anew");
        assert!(!next.is_done(), "reset for the next call");
        // The completer's last step (each token is completed once, then dropped).
        drop(completer);
        assert!(!next.wait_for(Deadline::after(Duration::from_millis(5))), "still waiting");
        next.complete(b"mine");
        assert_eq!(&*pool.finish(next).unwrap(), b"mine");
    }

    #[test]
    fn failures_and_timeouts() {
        let pool = SlotPool::new();
        let slot = pool.acquire();
        assert!(!slot.wait_for(Deadline::after(Duration::from_millis(10))));
        let worker = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || slot.fail(ClientError::Closed))
        };
        slot.wait();
        worker.join().unwrap();
        assert!(matches!(pool.finish(slot), Err(ClientError::Closed)));
        // Completing after a failure changes nothing.
        let slot = pool.acquire();
        slot.fail(ClientError::Closed);
        slot.complete(b"late");
        assert!(pool.finish(slot).is_err());
    }
}
