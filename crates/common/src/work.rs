//! Handlers that wait, on any backend: owned requests, a worker pool for
//! blocking handlers, and a timer thread for deferred answers.
//!
//! All three are built on the protocol crate's deferred responses
//! ([`fastwire_proto::deferred`]): a handler defers, the work happens
//! somewhere else, the [`Responder`] answers, and the connection's backend is
//! woken to write it. So they work the same on every backend; the std and
//! mio backends offer [`Blocking`] as `serve_blocking`, and tokio and
//! glommio run `async` handlers on their own executors instead.

use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fastwire_proto::driver::CallGuard;
use fastwire_proto::{Handler, Request, Responder, ResponseWriter};
use futures_util::FutureExt;
use smallvec::SmallVec;

/// A request copied out of the connection's read buffer, to be handled
/// elsewhere (a worker thread, a task). Name and value live in one buffer,
/// inline up to 64 bytes, so small requests cost no allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRequest {
    id: u32,
    name_len: usize,
    bytes: SmallVec<[u8; 64]>,
}

impl OwnedRequest {
    /// Copies `request`.
    pub fn new(request: Request<'_>) -> OwnedRequest {
        let mut bytes = SmallVec::with_capacity(request.name.len() + request.value.len());
        bytes.extend_from_slice(request.name);
        bytes.extend_from_slice(request.value);
        OwnedRequest { id: request.id, name_len: request.name.len(), bytes }
    }

    /// The request id (0: fire-and-forget).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The method name.
    pub fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    /// The payload.
    pub fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }

    /// Borrowed, as handlers take it.
    pub fn as_request(&self) -> Request<'_> {
        Request { id: self.id, name: self.name(), value: self.value() }
    }
}

/// Runs an `async` handler's future for one call, catching a panic: the
/// call's connection is then closed (through `guard`, taken from its
/// responder before the responder moved into `answer`), so its client sees a
/// connection error and never a wrong value. What tokio and glommio spawn
/// per request.
pub async fn answer_async(guard: CallGuard, answer: impl Future<Output = ()>) {
    if AssertUnwindSafe(answer).catch_unwind().await.is_err() {
        tracing::error!("an async handler panicked");
        guard.close_connection();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ANCHOR: blocking
/// Runs a blocking handler on a fixed pool of worker threads, off the
/// connection's thread or event loop: each request is deferred, copied
/// ([`OwnedRequest`]) and queued; a worker runs the handler and answers
/// through the [`Responder`], which wakes the connection to write it.
///
/// A handler that panics on a worker closes only its own connection (the
/// worker catches it and goes on). Handlers run here answer inline: a
/// `defer` inside them is not supported (it returns a detached responder).
/// The workers stop when the server that owns the handler is gone.
pub struct Blocking<H> {
    pool: Arc<Pool<H>>,
}

struct Pool<H> {
    handler: H,
    queue: Mutex<Queue>,
    ready: Condvar,
}

struct Queue {
    jobs: VecDeque<(OwnedRequest, Responder)>,
    /// Workers waiting for a job: notify only when one sleeps (a futex
    /// wake-up is a system call even with nobody waiting).
    sleeping: usize,
    closed: bool,
}

impl<H: Handler + 'static> Blocking<H> {
    /// `handler` on `threads` worker threads (at least one).
    pub fn new(handler: H, threads: usize) -> std::io::Result<Blocking<H>> {
        let pool = Arc::new(Pool {
            handler,
            queue: Mutex::new(Queue { jobs: VecDeque::new(), sleeping: 0, closed: false }),
            ready: Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let pool = Arc::clone(&pool);
            thread::Builder::new().name(format!("fastwire-worker{i}")).spawn(move || pool.work())?;
        }
        Ok(Blocking { pool })
    }
}

impl<H: Handler> Pool<H> {
    fn work(&self) {
        let mut value = BytesMut::new();
        loop {
            let (request, responder) = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    if queue.closed {
                        return;
                    }
                    queue.sleeping += 1;
                    queue = self.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                    queue.sleeping -= 1;
                }
            };
            value.clear();
            let mut writer = ResponseWriter::new(&mut value);
            let ran = panic::catch_unwind(AssertUnwindSafe(|| self.handler.handle(request.as_request(), &mut writer)));
            match ran {
                // Gone: the connection closed meanwhile; nothing to do.
                Ok(()) => drop(responder.respond(&value)),
                Err(_) => {
                    tracing::error!(id = request.id(), "a blocking handler panicked on a worker thread");
                    responder.close_connection();
                }
            }
        }
    }
}

impl<H: Handler + 'static> Handler for Blocking<H> {
    fn handle(&self, request: Request<'_>, response: &mut ResponseWriter<'_>) {
        let job = (OwnedRequest::new(request), response.defer());
        let mut queue = lock(&self.pool.queue);
        queue.jobs.push_back(job);
        let wake = queue.sleeping > 0;
        drop(queue);
        if wake {
            self.pool.ready.notify_one();
        }
    }
}
// ANCHOR_END: blocking

impl<H> Drop for Blocking<H> {
    fn drop(&mut self) {
        lock(&self.pool.queue).closed = true;
        self.pool.ready.notify_all();
    }
}

impl<H> std::fmt::Debug for Blocking<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking").finish_non_exhaustive()
    }
}

/// A timer thread: items scheduled for a moment are handed to a callback
/// when it comes, in deadline order. What the std and mio backends use for
/// handlers that wait on a timer (they have no timer per connection), and
/// the shape a reactor's own timer wheel would take.
pub struct Timer<T: Send + 'static> {
    shared: Arc<TimerShared<T>>,
}

struct TimerShared<T> {
    state: Mutex<TimerState<T>>,
    changed: Condvar,
}

struct TimerState<T> {
    heap: BinaryHeap<Due<T>>,
    seq: u64,
    closed: bool,
}

/// An item and its moment, ordered soonest first (a max-heap of reversed keys).
struct Due<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T: Send + 'static> Timer<T> {
    /// Starts the timer thread; `fire` runs on it for each item when due.
    /// The thread ends when the timer is dropped (pending items are dropped).
    pub fn new(fire: impl Fn(T) + Send + 'static) -> std::io::Result<Timer<T>> {
        let shared = Arc::new(TimerShared {
            state: Mutex::new(TimerState { heap: BinaryHeap::new(), seq: 0, closed: false }),
            changed: Condvar::new(),
        });
        let run = Arc::clone(&shared);
        thread::Builder::new().name("fastwire-timer".into()).spawn(move || run.run(fire))?;
        Ok(Timer { shared })
    }

    /// Hands `item` to the callback after `delay`.
    pub fn after(&self, delay: Duration, item: T) {
        let at = Instant::now() + delay;
        let mut state = lock(&self.shared.state);
        state.seq += 1;
        let seq = state.seq;
        let sooner = state.heap.peek().is_none_or(|first| at < first.at);
        state.heap.push(Due { at, seq, item });
        drop(state);
        if sooner {
            self.shared.changed.notify_one();
        }
    }
}

impl<T> TimerShared<T> {
    fn run(&self, fire: impl Fn(T)) {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return;
            }
            let now = Instant::now();
            match state.heap.peek() {
                Some(first) if first.at <= now => {
                    let due = state.heap.pop().expect("peeked");
                    drop(state);
                    // The callback is user code: a panic must not stop the timer.
                    let _ = panic::catch_unwind(AssertUnwindSafe(|| fire(due.item)));
                    state = lock(&self.state);
                }
                Some(first) => {
                    let wait = first.at - now;
                    state = self.changed.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0;
                }
                None => state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }
}

impl<T: Send + 'static> Drop for Timer<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        state.heap.clear();
        drop(state);
        self.shared.changed.notify_all();
    }
}

impl<T: Send + 'static> std::fmt::Debug for Timer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("pending", &lock(&self.shared.state).heap.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn owned_request_keeps_name_and_value() {
        let r = OwnedRequest::new(Request { id: 3, name: b"get", value: &[7; 100] });
        assert_eq!((r.id(), r.name(), r.value()), (3, &b"get"[..], &[7u8; 100][..]));
        assert_eq!(r.as_request().value.len(), 100);
    }

    #[test]
    fn timer_fires_in_deadline_order() {
        let (tx, rx) = mpsc::channel();
        let timer = Timer::new(move |n: u32| tx.send(n).unwrap()).unwrap();
        timer.after(Duration::from_millis(30), 3);
        timer.after(Duration::from_millis(10), 1);
        timer.after(Duration::from_millis(20), 2);
        let got: Vec<u32> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
    }
}
