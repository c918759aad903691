//! One plain thread that wakes glommio tasks at their deadlines (or
//! periodically), so that no connection needs a glommio timer of its own
//! while it waits.
//!
//! Why not glommio's timers: glommio 0.9 keeps an executor's timers in a
//! `BTreeMap` and, every time the reactor polls, moves the expired ones out
//! with `split_off`, which allocates a node whenever any timer is
//! registered (`glommio::reactor::Timers::process_timers`). A connection
//! waiting in a read with a read timeout, or a client's idle ticker,
//! therefore made every park and wake-up of its executor allocate (the
//! guide's lab notes tell how it was found). A server connection's
//! deadlines (its `ServerConn::poll_timeout`: the handshake, giving its
//! buffers back, the idle close) are an [`Alarm`] each, which the thread
//! raises through the task's own waker: nothing per call, and no wake-up
//! before a deadline. A shutdown wakes every target at once ([`tick_all`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Something the clock wakes.
pub(crate) trait Tick: Send + Sync {
    /// Called from the clock's thread every period.
    fn tick(&self);
}

struct Entry {
    target: Weak<dyn Tick>,
    when: When,
}

/// When an entry is due.
enum When {
    /// Every period, from the last time.
    Every { every: Duration, next: Instant },
    /// At the alarm's time, once ([`NEVER`]: off).
    Alarm(Arc<AtomicU64>),
}

/// An alarm that is off.
const NEVER: u64 = u64::MAX;

/// Instants as nanoseconds since the clock started, for an alarm's atomic.
fn nanos(at: Instant) -> u64 {
    let base = clock().base;
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(NEVER - 1).min(NEVER - 1)
}

struct Clock {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
    base: Instant,
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires what is due (all of it with `all`), forgets what is gone, and
    /// returns when the next entry is due.
    fn fire(&self, entries: &mut Vec<Entry>, all: bool) -> Option<Instant> {
        let now = Instant::now();
        let now_nanos = nanos(now);
        let mut next_due: Option<Instant> = None;
        entries.retain_mut(|entry| {
            let Some(target) = entry.target.upgrade() else { return false };
            let next = match &mut entry.when {
                When::Every { every, next } => {
                    if all || *next <= now {
                        target.tick();
                        *next = now + *every;
                    }
                    Some(*next)
                }
                When::Alarm(at) => {
                    let due = at.load(Ordering::Acquire);
                    if due <= now_nanos {
                        // Off once raised (unless set again meanwhile).
                        let _ = at.compare_exchange(due, NEVER, Ordering::AcqRel, Ordering::Acquire);
                    }
                    if all || due <= now_nanos {
                        target.tick();
                    }
                    let due = at.load(Ordering::Acquire);
                    (due != NEVER).then(|| self.base + Duration::from_nanos(due))
                }
            };
            next_due = next_due.into_iter().chain(next).min();
            true
        });
        next_due
    }

    fn run(&self) {
        let mut entries = self.lock();
        loop {
            entries = match self.fire(&mut entries, false) {
                None => self.changed.wait(entries).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.changed.wait_timeout(entries, wait).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

/// The process's clock, started on first use (one thread for every glommio
/// server and client of the process; it sleeps while nothing is registered).
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock = Box::leak(Box::new(Clock {
            entries: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            base: Instant::now(),
        }));
        std::thread::Builder::new()
            .name("fastwire-glommio-clock".into())
            .spawn(move || clock.run())
            .expect("spawning the glommio backend's clock thread");
        clock
    })
}

/// Wakes `target` every `every` until it is dropped.
pub(crate) fn every(target: Weak<dyn Tick>, every: Duration) {
    let clock = clock();
    clock.lock().push(Entry { target, when: When::Every { every, next: Instant::now() + every } });
    clock.changed.notify_one();
}

/// Wakes `target` when every target is woken ([`tick_all`]: a shutdown),
/// and otherwise not.
pub(crate) fn on_tick_all(target: Weak<dyn Tick>) {
    Alarm::new(target);
}

/// Wakes its target at the time it is set to, once; and on [`tick_all`].
/// Forgotten by the clock once the target is dropped.
pub(crate) struct Alarm {
    at: Arc<AtomicU64>,
}

impl Alarm {
    /// An alarm for `target`, off.
    pub(crate) fn new(target: Weak<dyn Tick>) -> Alarm {
        let at = Arc::new(AtomicU64::new(NEVER));
        clock().lock().push(Entry { target, when: When::Alarm(Arc::clone(&at)) });
        Alarm { at }
    }

    /// Raises the alarm at `at`, unless it is set for an earlier time
    /// already: a deadline that moves later (the idle close, with each
    /// call) leaves it be, it goes off early, its target finds nothing due
    /// and arms it again. Raised, it is off, and any time sets it. A time
    /// earlier than before wakes the clock to say so.
    pub(crate) fn arm(&self, at: Instant) {
        let at = nanos(at);
        // Set for no later already (the usual case, a call at a time): no
        // write. Should it have been raised meanwhile, its tick wakes the
        // target, which arms it again.
        if at >= self.at.load(Ordering::Acquire) {
            return;
        }
        let before = self.at.fetch_min(at, Ordering::AcqRel);
        if at < before {
            let clock = clock();
            // Under the clock's lock: the thread either waits already (and
            // is woken) or has yet to look at the alarms (and sees it).
            drop(clock.lock());
            clock.changed.notify_one();
        }
    }
}

/// Wakes every registered target now (a shutdown began: let them see it).
pub(crate) fn tick_all() {
    let clock = clock();
    clock.fire(&mut clock.lock(), true);
    clock.changed.notify_one();
}
