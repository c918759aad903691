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

use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::ClientError;
use crate::Deadline;

#[derive(Debug, Default)]
enum Outcome {
    #[default]
    Waiting,
    Done,
    Failed(ClientError),
    /// Done or failed, and the result was handed to the caller.
    Taken,
}

#[derive(Debug, Default)]
struct SlotState {
    value: Vec<u8>,
    outcome: Outcome,
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
#[derive(Debug, Default)]
pub struct CallSlot {
    state: Mutex<SlotState>,
    done: Condvar,
}

impl CallSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock cannot leave the state invalid
        // (every write is a single assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ANCHOR: notify_sleepers
    fn finish(&self, mut state: MutexGuard<'_, SlotState>, outcome: Outcome) {
        if !matches!(state.outcome, Outcome::Waiting) {
            return;
        }
        state.outcome = outcome;
        let waker = state.waker.take();
        let sleeping = std::mem::take(&mut state.sleeping);
        drop(state);
        if sleeping {
            self.done.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
    // ANCHOR_END: notify_sleepers

    /// Completes the call with its response value (copied into the slot's buffer).
    pub fn complete(&self, value: &[u8]) {
        let mut state = self.lock();
        if matches!(state.outcome, Outcome::Waiting) {
            state.value.clear();
            state.value.extend_from_slice(value);
        }
        self.finish(state, Outcome::Done);
    }

    /// Fails the call.
    pub fn fail(&self, error: ClientError) {
        let state = self.lock();
        self.finish(state, Outcome::Failed(error));
    }

    /// Whether the call was completed or failed.
    pub fn is_done(&self) -> bool {
        !matches!(self.lock().outcome, Outcome::Waiting)
    }

    /// Blocks until the call is done or `deadline` passes; returns whether
    /// it is done. No clock read at all if the call is already done.
    pub fn wait_for(&self, deadline: Deadline) -> bool {
        let mut state = self.lock();
        while matches!(state.outcome, Outcome::Waiting) {
            let Some(left) = deadline.remaining() else { return false };
            state.sleeping = true;
            state = self.done.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Blocks as a follower: until the call is done, the deadline passes,
    /// or the leader hands over the reading role ([`CallSlot::promote`]).
    /// A promotion wins over both (the role must not be dropped).
    pub fn wait_following(&self, deadline: Deadline) -> FollowEnd {
        let mut state = self.lock();
        state.following = true;
        let end = loop {
            if std::mem::take(&mut state.promoted) {
                break FollowEnd::Promoted;
            }
            if !matches!(state.outcome, Outcome::Waiting) {
                break FollowEnd::Done;
            }
            let Some(left) = deadline.remaining() else { break FollowEnd::TimedOut };
            state.sleeping = true;
            state = self.done.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        };
        state.following = false;
        end
    }

    /// Hands the reading role to this slot's caller if it waits as a
    /// follower for a call not yet done; returns whether it took it.
    pub fn promote(&self) -> bool {
        let mut state = self.lock();
        if !state.following || state.promoted || !matches!(state.outcome, Outcome::Waiting) {
            return false;
        }
        state.promoted = true;
        let sleeping = std::mem::take(&mut state.sleeping);
        drop(state);
        if sleeping {
            self.done.notify_all();
        }
        true
    }

    /// Blocks until the call is done.
    pub fn wait(&self) {
        let mut state = self.lock();
        while matches!(state.outcome, Outcome::Waiting) {
            state.sleeping = true;
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// For async callers: ready once the call is done, else registers the waker.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if matches!(state.outcome, Outcome::Waiting) {
            match &state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Takes the outcome of a finished call: its value, or its error.
    /// Returns `Err(ClientError::Closed)` if called before the call is done.
    fn take(&self) -> Result<Vec<u8>, ClientError> {
        let mut state = self.lock();
        match std::mem::replace(&mut state.outcome, Outcome::Taken) {
            Outcome::Done => Ok(std::mem::take(&mut state.value)),
            Outcome::Failed(e) => Err(e),
            Outcome::Waiting => {
                state.outcome = Outcome::Waiting;
                Err(ClientError::Closed)
            }
            Outcome::Taken => Err(ClientError::Closed),
        }
    }

    fn reset(&self, value: Vec<u8>) {
        let mut state = self.lock();
        state.value = value;
        state.value.clear();
        state.outcome = Outcome::Waiting;
        state.waker = None;
        state.sleeping = false;
        state.following = false;
        state.promoted = false;
    }
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

    /// Returns a slot whose call is over.
    pub fn release(&self, slot: Arc<CallSlot>) {
        if reusable(&slot) {
            slot.reset(Vec::new());
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
            if value.capacity() <= self.pool.max_kept_value && reusable(&slot) {
                slot.reset(value);
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
